"""GraphQL over HTTP, sans-IO: every graphql-http audit decided in ``anyql.http``, the HTTP
rows of docs/bad-inputs.md (H01, H03-H05, H07-H11, H20), negotiation, and the one-step
``GraphQLHTTP`` (a request in, a response or operations out; results in, a response out).

All synchronous: requests go in as parts, responses come out as exact status, headers and
bytes. The audits that need execution (13EE and friends asserting no ``errors``) run
against real servers through ``tests/node/audit.mjs``. GraphiQL has ``test_graphiql.py``,
CORS ``test_cors.py``, the import rules ``tests/protocols/test_purity.py``.
"""

from __future__ import annotations

import enum
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anyql import http
from anyql._graphiql import graphiql_response, wants_graphiql
from anyql.cors import CORSPolicy
from anyql.errors import HTTPError, RequestError
from anyql.http import GRAPHQL_RESPONSE_JSON, JSON, GraphQLHTTP, ParsedRequest, parse_request
from anyql.types import HTTPRequest, HTTPResponse, OperationRequest, RequestInfo

JSON_TYPE = "application/json; charset=utf-8"
GRJ_TYPE = "application/graphql-response+json; charset=utf-8"
TYPENAME = orjson.dumps({"query": "{ __typename }"})


def post(
    body: bytes | Any,
    *,
    content_type: str | None = "application/json",
    accept: str | None = None,
    **options: Any,
) -> ParsedRequest:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    headers = {}
    if content_type is not None:
        headers["content-type"] = content_type
    if accept is not None:
        headers["accept"] = accept
    return parse_request("POST", b"", headers, raw, **options)


def refused(method: str, query_string: bytes, headers: dict[str, str], body: bytes) -> HTTPError:
    with pytest.raises(HTTPError) as caught:
        parse_request(method, query_string, headers, body)
    return caught.value


def json_body(response: Any) -> Any:
    return orjson.loads(response.body)


# --- the graphql-http audits, request side --------------------------------------------

JSON_POST = {"content-type": "application/json"}
GRJ_ACCEPT = {"content-type": "application/json", "accept": GRAPHQL_RESPONSE_JSON}
JSON_ACCEPT = {"content-type": "application/json", "accept": JSON}
# What node's fetch adds to a string body when the caller gives no Content-Type.
FETCH_DEFAULT = {"content-type": "text/plain;charset=UTF-8", "accept": "*/*"}
TYPE_QUERY = "query Type($name: String!) { __type(name: $name) { name } }"
TYPE_GET = (
    b"query=query+Type%28%24name%3A+String%21%29+%7B+__type%28name%3A+%24name%29+%7B+name+%7D+%7D"
    b"&variables=%7B%22name%22%3A%22sometype%22%7D"
)
INVALID = [{"obj": "ect"}, 0, False, ["array"]]
NOT_OBJECTS = ["string", 0, False, ["array"]]
NULLABLE = ["variables", "operationName", "extensions"]
RUN_SWIM = '{ __type(name: "Run🏃Swim🏊") { name } }'
JSON_UTF8 = {"content-type": "application/json; charset=utf-8"}
MUST_OBJECT = "must be a JSON object or null"
MUST_STR = "must be a string or null"


TYPENAME_OP = OperationRequest(query="{ __typename }")
Q = {"query": "{ __typename }"}
NAMED = {"operationName": "Query", "query": "query Query { __typename }"}
NAMED_OP = OperationRequest("query Query { __typename }", "Query")
TYPE_VARIABLES = {"query": TYPE_QUERY, "variables": {"name": "sometype"}}
TYPE_OP = OperationRequest(TYPE_QUERY, variables={"name": "sometype"})
EXTENDED = {"query": "{ __typename }", "extensions": {"some": "value"}}
EXTENDED_OP = OperationRequest("{ __typename }", extensions={"some": "value"})
COERCE = {"query": "query CoerceFailure($id: ID!){ __typename }", "variables": {"id": None}}


def ok(
    audit: str,
    body: Any = Q,
    headers: dict[str, str] = JSON_POST,
    response_type: str = JSON,
    operation: OperationRequest = TYPENAME_OP,
    *,
    method: str = "POST",
    query_string: bytes = b"",
) -> Any:
    """An audit whose request ``parse_request`` must accept as ``operation``."""
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    expected = (response_type, operation)
    return pytest.param(method, query_string, headers, raw, expected, id=audit)


def bad(audit: str, body: Any, headers: dict[str, str] = JSON_POST, status: int = 400) -> Any:
    """An audit whose POST ``parse_request`` must refuse with ``status``."""
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return pytest.param("POST", b"", headers, raw, status, id=audit)


GRJ = GRAPHQL_RESPONSE_JSON
AUDIT_REQUESTS = [
    ok("22EB", Q, GRJ_ACCEPT, GRJ),
    ok("4655", Q, JSON_ACCEPT),
    ok("47DE", Q, {**JSON_POST, "accept": "*/*"}),
    ok("80D8"),
    ok("BF61", {"query": RUN_SWIM}, JSON_UTF8, JSON, OperationRequest(RUN_SWIM)),
    ok("78D5"),
    ok("2C94"),
    ok("5A70", b"", {"accept": "*/*"}, method="GET", query_string=b"query=%7B+__typename+%7D"),
    bad("9ABE", Q, FETCH_DEFAULT, 415),
    bad("9ABE-no-header", Q, {}, 415),
    ok("03D4"),
    bad("A5BF", b"", {**JSON_POST, "accept": "*/*"}),
    bad("423L", {"notquery": "{ __typename }"}, GRJ_ACCEPT),
    *[bad(f"LKJ{i}", {"query": value}) for i, value in enumerate(INVALID)],
    ok("34A2", Q, GRJ_ACCEPT, GRJ),
    ok("13EE", Q, JSON_ACCEPT),
    *[bad(f"6C0{i}", {**Q, "operationName": value}) for i, value in enumerate(INVALID)],
    ok("8161", NAMED, GRJ_ACCEPT, GRJ, NAMED_OP),
    ok("B8B3", NAMED, JSON_ACCEPT, JSON, NAMED_OP),
    *[ok(f"94B{i}", {**Q, name: None}, GRJ_ACCEPT, GRJ) for i, name in enumerate(NULLABLE)],
    *[ok(f"022{i}", {**Q, name: None}, JSON_ACCEPT) for i, name in enumerate(NULLABLE)],
    *[bad(f"476{i}", {**Q, "variables": value}) for i, value in enumerate(NOT_OBJECTS)],
    ok("2EA1", TYPE_VARIABLES, GRJ_ACCEPT, GRJ, TYPE_OP),
    ok("28B9", TYPE_VARIABLES, JSON_ACCEPT, JSON, TYPE_OP),
    ok("D6D5", b"", {"accept": GRJ}, GRJ, TYPE_OP, method="GET", query_string=TYPE_GET),
    ok("6A70", b"", {"accept": JSON}, JSON, TYPE_OP, method="GET", query_string=TYPE_GET),
    *[bad(f"58B{i}", {**Q, "extensions": value}) for i, value in enumerate(NOT_OBJECTS)],
    ok("428F", EXTENDED, GRJ_ACCEPT, GRJ, EXTENDED_OP),
    ok("1B7A", EXTENDED, JSON_ACCEPT, JSON, EXTENDED_OP),
    bad("B6DC", b'{ "not a JSON', JSON_ACCEPT),
    bad("BCF8", b'{ "not a JSON', JSON_ACCEPT),
    bad("B7N8", b'{ "not a JSON', GRJ_ACCEPT),
    bad("8764", {"qeury": "{ __typename }"}),
    bad("3E3A", {"qeury": "{ __typename }"}),
    # These documents pass the HTTP layer; execution turns them into request errors.
    ok("572B", {"query": "{"}, JSON_ACCEPT, JSON, OperationRequest("{")),
    ok(
        "7B9B", COERCE, JSON_ACCEPT, JSON, OperationRequest(COERCE["query"], variables={"id": None})
    ),
]


@pytest.mark.parametrize(("method", "query_string", "headers", "body", "expected"), AUDIT_REQUESTS)
def test_audit_requests(
    method: str, query_string: bytes, headers: dict[str, str], body: bytes, expected: Any
) -> None:
    if isinstance(expected, int):
        error = refused(method, query_string, headers, body)
        assert error.status == expected
        response = http.error_response(error, http.negotiate_response_type(headers))
        assert response.status == expected
        assert set(json_body(response)) == {"errors"}
        return
    response_type, operation = expected
    parsed = parse_request(method, query_string, headers, body)
    assert parsed == ParsedRequest((operation,), False, response_type, method)


def test_audit_9C48_mutation_over_get_is_refused_with_405() -> None:
    parsed = parse_request(
        "GET", b"query=mutation+%7B+__typename+%7D", {"accept": GRAPHQL_RESPONSE_JSON}, b""
    )
    with pytest.raises(HTTPError) as caught:
        http.check_method_allows("GET", "mutation")
    response = http.error_response(caught.value, parsed.response_type)
    assert response.status == 405
    assert response.headers == (("content-type", GRJ_TYPE), ("vary", "accept"), ("allow", "POST"))


# --- the graphql-http audits, response side -------------------------------------------


@pytest.mark.parametrize(
    ("response_type", "content_type"), [(JSON, JSON_TYPE), (GRAPHQL_RESPONSE_JSON, GRJ_TYPE)]
)
def test_audits_22EB_4655_result_matches_the_accepted_type(
    response_type: str, content_type: str
) -> None:
    response = http.result_response({"data": {"__typename": "Query"}}, response_type)
    assert response.status == 200
    assert response.headers == (("content-type", content_type), ("vary", "accept"))
    assert response.body == b'{"data":{"__typename":"Query"}}'


def test_audit_82A3_responses_are_utf8_and_say_so() -> None:
    response = http.result_response({"data": {"name": "Run🏃Swim🏊 é"}}, JSON)
    assert response.body.decode("utf-8") == '{"data":{"name":"Run🏃Swim🏊 é"}}'
    assert dict(response.headers)["content-type"].endswith("; charset=utf-8")


ERRORS = [
    {
        "message": "Syntax Error: Expected Name, found <EOF>.",
        "locations": [{"line": 1, "column": 2}],
    }
]


def test_audits_572B_FDE2_7B9B_request_errors_are_200_under_json() -> None:
    response = http.request_error_response(ERRORS, JSON)
    assert response.status == 200
    assert response.headers == (("content-type", JSON_TYPE), ("vary", "accept"))
    assert json_body(response) == {"errors": ERRORS}


def test_audits_865D_556A_51FE_74FF_86EE_D586_5E5B_request_errors_are_400_without_data() -> None:
    response = http.request_error_response(ERRORS, GRAPHQL_RESPONSE_JSON)
    assert response.status == 400
    assert response.headers == (("content-type", GRJ_TYPE), ("vary", "accept"))
    assert json_body(response) == {"errors": ERRORS}
    assert "data" not in json_body(response)


def test_result_without_data_is_400_under_graphql_response_json() -> None:
    assert http.result_response({"errors": ERRORS}, GRAPHQL_RESPONSE_JSON).status == 400
    assert http.result_response({"errors": ERRORS}, JSON).status == 200
    # data: null after a field error bubbled to the root was executed: 200.
    assert (
        http.result_response({"data": None, "errors": ERRORS}, GRAPHQL_RESPONSE_JSON).status == 200
    )


def test_batch_result_is_a_list_with_200() -> None:
    response = http.result_response([{"data": {"a": 1}}, {"errors": ERRORS}], GRAPHQL_RESPONSE_JSON)
    assert response.status == 200
    assert json_body(response) == [{"data": {"a": 1}}, {"errors": ERRORS}]


def test_unknown_response_type_is_a_caller_bug() -> None:
    with pytest.raises(ValueError, match="not a GraphQL response media type"):
        http.result_response({"data": {}}, "text/html")


# --- docs/bad-inputs.md section 1d ------------------------------------------------------------


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "get", "post"])
def test_H01_other_methods_get_405_with_allow(method: str) -> None:
    error = refused(method, b"query=%7Ba%7D", JSON_POST, TYPENAME)
    response = http.error_response(error)
    assert response.status == 405
    assert response.headers == (
        ("content-type", JSON_TYPE),
        ("vary", "accept"),
        ("allow", "GET, POST"),
    )
    assert json_body(response) == {"errors": [{"message": "Method not allowed: use GET or POST"}]}


def test_H03_post_without_content_type_gets_415() -> None:
    error = refused("POST", b"", {}, TYPENAME)
    assert (error.status, error.message) == (
        415,
        "Missing Content-Type: send the request as application/json",
    )


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "application/graphql",
        "application/jsonx",
        "application/json, text/plain",  # two Content-Type headers, joined
        "json",
        "",
    ],
)
def test_H04_simple_request_content_types_get_415_and_nothing_runs(content_type: str) -> None:
    mutation = orjson.dumps({"query": "mutation { deleteEverything }"})
    error = refused("POST", b"", {"content-type": content_type}, mutation)
    assert error.status == 415


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "message/http",
        "application/graphql-response+json",
        "nonsense",
    ],
)
def test_H41_a_get_with_a_content_type_other_than_json_gets_415(content_type: str) -> None:
    error = refused("GET", b"query=%7B__typename%7D", {"content-type": content_type}, b"")
    assert error.status == 415
    assert "must not carry a Content-Type other than application/json" in error.message


@pytest.mark.parametrize("headers", [{}, {"content-type": "application/json"}])
def test_H41_a_get_without_a_content_type_or_with_json_still_works(
    headers: dict[str, str],
) -> None:
    parsed = parse_request("GET", b"query=%7B__typename%7D", headers, b"")
    assert parsed.operations == (OperationRequest("{__typename}"),)


def test_H05_multipart_uploads_get_415() -> None:
    body = b'--x\r\nContent-Disposition: form-data; name="operations"\r\n\r\n{}\r\n--x--\r\n'
    error = refused("POST", b"", {"content-type": "multipart/form-data; boundary=x"}, body)
    assert (error.status, error.message) == (
        415,
        "Unsupported Content-Type: send the request as application/json",
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "The request body is not valid JSON"),
        (b'{"query": "{ a }"', "The request body is not valid JSON"),
        (b"\xff\xfe{}", "The request body is not valid JSON"),
        (b'{"query": 1}', "The 'query' parameter must be a string"),
        (b'{"query": null}', "Missing the 'query' parameter"),
        (b'{"query": "{ a }", "variables": "x"}', f"The 'variables' parameter {MUST_OBJECT}"),
        (b'{"query": "{ a }", "extensions": []}', f"The 'extensions' parameter {MUST_OBJECT}"),
        (b'{"query": "{ a }", "operationName": 1}', f"The 'operationName' parameter {MUST_STR}"),
        (b'"{ a }"', "The request body must be a JSON object"),
        (b"null", "The request body must be a JSON object"),
        (b"  \r\n", "The request body is empty: send a JSON object with a query"),
    ],
)  # fmt: skip
def test_H07_bad_bodies_get_400(body: bytes, message: str) -> None:
    error = refused("POST", b"", JSON_POST, body)
    assert (error.status, error.message) == (400, message)


@pytest.mark.parametrize("accept", ["application/xml", "text/html", "application/json;q=0, text/*"])
def test_H08_unacceptable_accept_gets_406(accept: str) -> None:
    error = refused("POST", b"", {**JSON_POST, "accept": accept}, TYPENAME)
    assert error.status == 406
    response = http.error_response(error, http.negotiate_response_type({"accept": accept}))
    assert response.headers[0] == ("content-type", JSON_TYPE)


@pytest.mark.parametrize(
    "query_string",
    [
        b"query=%7Ba%7D&query=%7Bb%7D",
        b"query=%7Ba%7D&operationName=A&operationName=B",
        b"query=%7Ba%7D&variables=%7B%7D&variables=%7B%7D",
        b"query=%7Ba%7D&extensions=%7B%7D&extensions=%7B%7D",
    ],
)
def test_H09_repeated_query_parameters_get_400(query_string: bytes) -> None:
    error = refused("GET", query_string, {}, b"")
    assert error.status == 400
    assert "given more than once" in error.message


def test_H09_repeated_unknown_parameters_are_ignored() -> None:
    parsed = parse_request("GET", b"query=%7Ba%7D&x=1&x=2", {}, b"")
    assert parsed.operations == (OperationRequest("{a}"),)


def test_H10_batch_when_batching_is_off_gets_400() -> None:
    with pytest.raises(HTTPError) as caught:
        post([{"query": "{ a }"}])
    assert (caught.value.status, caught.value.message) == (
        400,
        "Batching is not enabled: send one operation as a JSON object",
    )


def test_H11_batch_over_max_gets_400_too_many_operations() -> None:
    with pytest.raises(HTTPError) as caught:
        post([{"query": "{ a }"}] * 4, batching=True, max_batch=3)
    assert caught.value.status == 400
    assert caught.value.message.startswith("Too many operations")


H20_BAD_REQUESTS = [
    ("PUT", b"", {}, b""),
    ("POST", b"", {}, b"{}"),
    ("POST", b"", {"content-type": "text/plain"}, b"{}"),
    ("POST", b"", {**JSON_POST, "accept": "image/png"}, b"{}"),
    ("POST", b"", JSON_POST, b"{\x00\xff"),
    ("POST", b"", JSON_POST, b"[" * 5000),
    ("POST", b"", JSON_POST, b'{"query": {"__class__": 1}}'),
    ("GET", b"query=%ff", {}, b""),
    ("GET", b"query=a&variables=%7B", {}, b""),
    ("GET", b"", {}, b""),
]


@pytest.mark.parametrize(("method", "query_string", "headers", "body"), H20_BAD_REQUESTS)
def test_H20_error_bodies_hold_a_message_and_no_internals(
    method: str, query_string: bytes, headers: dict[str, str], body: bytes
) -> None:
    response = http.error_response(refused(method, query_string, headers, body))
    (error,) = json_body(response)["errors"]
    assert set(error) == {"message"}
    for leak in ("Traceback", 'File "', ".py", "Error", "orjson", "line 1", "column", "char "):
        assert leak not in error["message"]


# --- negotiation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, JSON),
        ("", JSON),
        ("*/*", JSON),
        ("application/*", JSON),
        (JSON, JSON),
        (GRAPHQL_RESPONSE_JSON, GRAPHQL_RESPONSE_JSON),
        ("application/graphql-response+json, application/json;q=0.9", GRAPHQL_RESPONSE_JSON),
        ("application/graphql-response+json, application/json", GRAPHQL_RESPONSE_JSON),
        ("application/json, application/graphql-response+json", JSON),
        ("application/json;q=0.5, application/graphql-response+json;q=0.6", GRAPHQL_RESPONSE_JSON),
        ("application/json;q=0, */*", GRAPHQL_RESPONSE_JSON),
        ("application/graphql-response+json;q=0, application/*", JSON),
        ("Application/JSON; charset=utf-8", JSON),
        ("application/json, multipart/mixed", JSON),  # what GraphiQL's fetcher sends
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", JSON),
        ("application/graphql-response+json;q=2, application/json;q=0.1", JSON),  # bad q skipped
        ("application/xml", None),
        ("nonsense", None),
        ("*/*;q=0", None),
    ],
)
def test_negotiate_response_type(accept: str | None, expected: str | None) -> None:
    headers = {} if accept is None else {"accept": accept}
    assert http.negotiate_response_type(headers) == expected


# --- request parsing details ----------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "Application/JSON",
        "application/json;charset=UTF-8",
        'application/json; charset="utf-8"',
        "application/json; charset=utf8",
        "application/graphql-response+json",
        "application/graphql-response+json; charset=utf-8",
    ],
)
def test_json_content_types_are_accepted(content_type: str) -> None:
    assert post(TYPENAME, content_type=content_type).operations == (TYPENAME_OP,)


@pytest.mark.parametrize("charset", ["latin-1", "utf-16", "iso-8859-1"])
def test_other_charsets_get_415(charset: str) -> None:
    error = refused("POST", b"", {"content-type": f"application/json; charset={charset}"}, TYPENAME)
    assert (error.status, error.message) == (
        415,
        "Unsupported charset: send the request body as UTF-8",
    )


def test_get_ignores_the_body_and_post_ignores_the_query_string() -> None:
    assert parse_request("GET", b"query=%7Ba%7D", JSON_POST, TYPENAME).operations == (
        OperationRequest("{a}"),
    )
    assert parse_request("POST", b"query=%7Ba%7D", JSON_POST, TYPENAME).operations == (TYPENAME_OP,)


@pytest.mark.parametrize(
    ("query_string", "operation"),
    [
        (b"query=%7B+a+%7D", OperationRequest("{ a }")),
        (b"query={+a+}&operationName=", OperationRequest("{ a }")),
        (b"query=q&operationName=null", OperationRequest("q", "null")),
        (b"query=q&variables=&extensions=", OperationRequest("q")),
        (b"query=q&variables=null&extensions=null", OperationRequest("q")),
        (b"query=q&extensions=%7B%22a%22%3A1%7D", OperationRequest("q", extensions={"a": 1})),
        (b"query=%C3%A9%F0%9F%8F%83", OperationRequest("é🏃")),
        (b"query=", OperationRequest("")),
        (b"&&query=q&", OperationRequest("q")),
    ],
)
def test_get_parameters(query_string: bytes, operation: OperationRequest) -> None:
    assert parse_request("GET", query_string, {}, b"").operations == (operation,)


@pytest.mark.parametrize(
    ("query_string", "message"),
    [
        (b"", "Missing the 'query' parameter"),
        (b"operationName=A", "Missing the 'query' parameter"),
        (b"query=%ff", "The 'query' parameter is not valid UTF-8"),
        (b"query=q&variables=%7B", "The 'variables' parameter is not valid JSON"),
        (b"query=q&variables=%5B1%5D", "The 'variables' parameter must be a JSON object or null"),
        (b"query=q&extensions=1", "The 'extensions' parameter must be a JSON object or null"),
    ],
)
def test_bad_get_parameters_get_400(query_string: bytes, message: str) -> None:
    error = refused("GET", query_string, {}, b"")
    assert (error.status, error.message) == (400, message)


def test_batch_when_enabled() -> None:
    parsed = post([{"query": "{ a }"}, {"query": "{ b }", "variables": {"x": 1}}], batching=True)
    assert parsed == ParsedRequest(
        (OperationRequest("{ a }"), OperationRequest("{ b }", variables={"x": 1})),
        True,
        JSON,
        "POST",
    )
    assert post([{"query": "{ a }"}] * 3, batching=True, max_batch=3).batch is True
    assert post({"query": "{ a }"}, batching=True).batch is False


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        ([], "A batch must hold at least one operation"),
        ([{"query": "{ a }"}, 1], "Operation 1 of the batch must be a JSON object"),
        ([{"query": "{ a }"}, {"query": 2}], "Operation 1: The 'query' parameter must be a string"),
    ],
)
def test_bad_batches_get_400(batch: list[Any], message: str) -> None:
    with pytest.raises(HTTPError) as caught:
        post(batch, batching=True)
    assert (caught.value.status, caught.value.message) == (400, message)


# --- operation type and method --------------------------------------------------------


class OperationType(enum.Enum):
    QUERY = "query"
    MUTATION = "mutation"
    SUBSCRIPTION = "subscription"


@pytest.mark.parametrize(
    ("method", "operation_type"),
    [("GET", "query"), ("POST", "query"), ("POST", "mutation"), ("GET", OperationType.QUERY)],
)
def test_allowed_operations(method: str, operation_type: Any) -> None:
    http.check_method_allows(method, operation_type)


@pytest.mark.parametrize("operation_type", ["mutation", OperationType.MUTATION])
def test_mutation_over_get_gets_405_allow_post(operation_type: Any) -> None:
    with pytest.raises(HTTPError) as caught:
        http.check_method_allows("GET", operation_type)
    assert (caught.value.status, caught.value.headers) == (405, (("allow", "POST"),))


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_subscription_over_http_gets_400_pointing_at_websocket(method: str) -> None:
    with pytest.raises(HTTPError) as caught:
        http.check_method_allows(method, "subscription")
    assert caught.value.status == 400
    assert caught.value.headers == ()
    assert "WebSocket" in caught.value.message


def test_unknown_operation_type_is_a_caller_bug() -> None:
    with pytest.raises(ValueError, match="unknown operation type"):
        http.check_method_allows("POST", "query ")


def test_error_response_lowercases_extra_headers() -> None:
    response = http.error_response(HTTPError(404, "Not Found", (("X-Thing", "1"),)))
    assert response == HTTPResponse(
        404,
        (("content-type", JSON_TYPE), ("vary", "accept"), ("x-thing", "1")),
        b'{"errors":[{"message":"Not Found"}]}',
    )


# --- the one-step API: GraphQLHTTP ----------------------------------------------------

ORIGIN = "https://app.example"
CORS = CORSPolicy((ORIGIN,))
CORS_VARY = ("vary", "accept, origin")
ALLOWED = ("access-control-allow-origin", ORIGIN)


def request(
    method: str = "POST",
    headers: dict[str, str] = JSON_POST,
    body: bytes = TYPENAME,
    query_string: bytes = b"",
) -> HTTPRequest:
    info = RequestInfo(method, "/graphql", query_string, tuple(headers.items()))
    return HTTPRequest(info, body)


def test_receive_hands_back_the_operations_and_what_their_answer_depends_on() -> None:
    received = GraphQLHTTP().receive(request(headers={**GRJ_ACCEPT, "origin": ORIGIN}))
    assert received == ParsedRequest((TYPENAME_OP,), False, GRAPHQL_RESPONSE_JSON, "POST", ORIGIN)
    batch = GraphQLHTTP(batching=True, max_batch=2).receive(
        request(body=b"[%s, %s]" % (TYPENAME, TYPENAME))
    )
    assert batch == ParsedRequest((TYPENAME_OP, TYPENAME_OP), True, JSON, "POST")


def test_receive_answers_a_preflight_before_anything_else() -> None:
    endpoint = GraphQLHTTP(cors=CORS, graphiql=True, require_preflight_header=True)
    preflight = {"origin": ORIGIN, "access-control-request-method": "POST", "accept": "text/html"}
    response = endpoint.receive(request("OPTIONS", preflight, b""))
    assert response == HTTPResponse(
        204,
        (
            ALLOWED,
            ("access-control-allow-methods", "GET, POST, PUT, DELETE"),
            ("access-control-allow-headers", ", ".join(CORS.allow_headers)),
            ("access-control-max-age", "600"),
            ("vary", "origin"),
        ),
    )


def test_receive_refusals_carry_cors_headers_and_the_negotiated_type() -> None:
    endpoint = GraphQLHTTP(cors=CORS)
    response = endpoint.receive(request("PUT", {"origin": ORIGIN, "accept": GRAPHQL_RESPONSE_JSON}))
    assert response == HTTPResponse(
        405,
        (("content-type", GRJ_TYPE), CORS_VARY, ("allow", "GET, POST"), ALLOWED),
        b'{"errors":[{"message":"Method not allowed: use GET or POST"}]}',
    )
    bad = endpoint.receive(request(headers={**GRJ_ACCEPT, "origin": ORIGIN}, body=b"{"))
    assert bad == HTTPResponse(
        400,
        (("content-type", GRJ_TYPE), CORS_VARY, ALLOWED),
        b'{"errors":[{"message":"The request body is not valid JSON"}]}',
    )


BROWSER = {"accept": "text/html,*/*;q=0.8"}


def test_receive_serves_graphiql_to_browsers_only_when_enabled() -> None:
    page = GraphQLHTTP(graphiql=True).receive(request("GET", BROWSER, b""))
    assert page == graphiql_response()
    hosted = GraphQLHTTP(graphiql=True, graphiql_assets_url="/static").receive(
        request("GET", BROWSER, b"")
    )
    assert hosted == graphiql_response(assets_url="/static")
    off = GraphQLHTTP().receive(request("GET", BROWSER, b""))
    assert isinstance(off, HTTPResponse) and off.status == 400  # no query: not a page


def test_receive_calls_a_custom_page_with_the_request() -> None:
    seen: list[RequestInfo] = []

    def page(info: RequestInfo) -> str:
        seen.append(info)
        return "<p>é</p>"

    sent = request("GET", {**BROWSER, "origin": ORIGIN}, b"")
    response = GraphQLHTTP(graphiql=page, cors=CORS).receive(sent)
    assert response == HTTPResponse(
        200, (("content-type", "text/html; charset=utf-8"), CORS_VARY, ALLOWED), "<p>é</p>".encode()
    )
    assert seen == [sent.info]


def test_receive_guards_get_with_the_preflight_header_before_parsing() -> None:
    endpoint = GraphQLHTTP(require_preflight_header=True)
    refused = endpoint.receive(request("GET", {"accept": GRAPHQL_RESPONSE_JSON}, b""))
    assert isinstance(refused, HTTPResponse)
    assert (refused.status, dict(refused.headers)["content-type"]) == (400, GRJ_TYPE)
    assert "graphql-require-preflight" in json_body(refused)["errors"][0]["message"]
    marked = {"graphql-require-preflight": "1"}
    assert endpoint.receive(request("GET", marked, b"", b"query=%7Ba%7D")) == ParsedRequest(
        (OperationRequest("{a}"),), False, JSON, "GET"
    )


def parsed(batch: bool = False, response_type: str = JSON, method: str = "POST") -> ParsedRequest:
    operations = (TYPENAME_OP, TYPENAME_OP) if batch else (TYPENAME_OP,)
    return ParsedRequest(operations, batch, response_type, method, ORIGIN)


def test_respond_to_results() -> None:
    endpoint = GraphQLHTTP(cors=CORS)
    one = endpoint.respond(parsed(), [{"data": {"a": 1}}])
    assert one == HTTPResponse(
        200, (("content-type", JSON_TYPE), CORS_VARY, ALLOWED), b'{"data":{"a":1}}'
    )
    both = endpoint.respond(parsed(batch=True), [{"data": {"a": 1}}, {"errors": ERRORS}])
    assert json_body(both) == [{"data": {"a": 1}}, {"errors": ERRORS}]
    unexecuted = endpoint.respond(parsed(response_type=GRAPHQL_RESPONSE_JSON), [{"errors": ERRORS}])
    assert unexecuted.status == 400


@pytest.mark.parametrize(("response_type", "status"), [(JSON, 200), (GRAPHQL_RESPONSE_JSON, 400)])
def test_respond_to_a_request_error(response_type: str, status: int) -> None:
    error = RequestError(tuple(ERRORS))
    response = GraphQLHTTP().respond(parsed(response_type=response_type), error)
    assert response == http.request_error_response(ERRORS, response_type)
    assert response.status == status


def test_check_operation_and_respond_refuse_a_mutation_over_get() -> None:
    endpoint = GraphQLHTTP(cors=CORS)
    get = parsed(response_type=GRAPHQL_RESPONSE_JSON, method="GET")
    endpoint.check_operation(get, "query")
    endpoint.check_operation(parsed(), "mutation")
    with pytest.raises(HTTPError) as caught:
        endpoint.check_operation(get, "mutation")
    assert endpoint.respond(get, caught.value) == HTTPResponse(
        405,
        (("content-type", GRJ_TYPE), CORS_VARY, ("allow", "POST"), ALLOWED),
        b'{"errors":[{"message":"Mutations need POST: GET must not change state"}]}',
    )


def test_respond_wants_one_result_per_operation() -> None:
    with pytest.raises(ValueError, match="1 results for 2 operations"):
        GraphQLHTTP().respond(parsed(batch=True), [{"data": {}}])


# --- properties -----------------------------------------------------------------------

json_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)  # orjson: no surrogates
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | json_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(json_text, inner, max_size=3),
    max_leaves=8,
)
request_objects = st.fixed_dictionaries(
    {},
    optional={
        "query": json_values,
        "operationName": json_values,
        "variables": json_values,
        "extensions": json_values,
    },
)
bodies = st.one_of(
    st.binary(max_size=64),
    json_values.map(orjson.dumps),
    request_objects.map(orjson.dumps),
    st.lists(request_objects, max_size=4).map(orjson.dumps),
)
media_types = st.sampled_from(
    [
        "application/json",
        GRAPHQL_RESPONSE_JSON,
        "*/*",
        "text/html",
        "text/plain",
        "",
        ";",
        ",",
        "q=1",
    ]
)
header_values = st.one_of(
    st.text(max_size=40),
    st.lists(st.tuples(media_types, st.text(max_size=8)), max_size=3).map(
        lambda parts: ", ".join(f"{media};{extra}" for media, extra in parts)
    ),
)
headers_maps = st.dictionaries(
    st.sampled_from(["accept", "content-type", "x-other"]), header_values, max_size=3
)
query_strings = st.one_of(
    st.binary(max_size=64),
    st.lists(
        st.tuples(
            st.sampled_from([b"query", b"operationName", b"variables", b"extensions", b"q%75ery"]),
            st.binary(max_size=16),
        ),
        max_size=5,
    ).map(lambda pairs: b"&".join(name + b"=" + value for name, value in pairs)),
)


@settings(max_examples=400, deadline=None)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "HEAD", "get", ""]) | st.text(max_size=6),
    query_string=query_strings,
    headers=headers_maps,
    body=bodies,
    batching=st.booleans(),
)
def test_parse_request_returns_a_request_or_raises_http_error(
    method: str, query_string: bytes, headers: dict[str, str], body: bytes, batching: bool
) -> None:
    try:
        parsed = parse_request(method, query_string, headers, body, batching=batching, max_batch=3)
    except HTTPError as error:
        assert error.status in {400, 405, 406, 415}
        response = http.error_response(error, http.negotiate_response_type(headers))
        assert json_body(response) == {"errors": [{"message": error.message}]}
        return
    assert parsed.response_type in {JSON, GRAPHQL_RESPONSE_JSON}
    assert 1 <= len(parsed.operations) <= (3 if parsed.batch else 1)
    for operation in parsed.operations:
        assert isinstance(operation.query, str)
        assert operation.operation_name is None or isinstance(operation.operation_name, str)
        assert operation.variables is None or isinstance(operation.variables, dict)
        assert operation.extensions is None or isinstance(operation.extensions, dict)


@given(method=st.text(max_size=6), headers=headers_maps)
def test_negotiation_never_raises(method: str, headers: dict[str, str]) -> None:
    assert http.negotiate_response_type(headers) in {None, JSON, GRAPHQL_RESPONSE_JSON}
    assert wants_graphiql(method, headers) in {True, False}
