"""CORS, the preflight-header CSRF guard and the validation-rule hook (rows H21, G10).

The sans-IO rules in ``anyql.cors`` (``CORSPolicy``, ``preflight_response``,
``add_cors_headers``, ``check_preflight_header``) are tested synchronously with exact
headers; the app is then driven through ``anyql.testing.TestClient`` (the native
transport) and through its ASGI entry point, on both backends, with a resolver and a
context factory that record every execution.
"""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from typing import Any

import anyio
import graphql
import pytest

from anyql import GraphQL, Limits, Schema, Settings
from anyql.cors import (
    CORSPolicy,
    add_cors_headers,
    check_preflight_header,
    preflight_response,
)
from anyql.errors import HTTPError
from anyql.execution import Engine, RequestError
from anyql.testing import TestClient
from anyql.testing._wire import Response
from anyql.types import HTTPResponse, OperationRequest
from tests.hardening.clients import request, serving
from tests.in_process import hypercorn_serving

TRUSTED = "https://app.example"
FOREIGN = "https://evil.example"
ALLOW_HEADERS = (
    "accept, authorization, content-type, graphql-require-preflight, "
    "x-graphql-event-stream-token, last-event-id"
)
PREFLIGHT = {
    "origin": TRUSTED,
    "access-control-request-method": "POST",
    "access-control-request-headers": "content-type, graphql-require-preflight",
}
JSON_ANSWER = HTTPResponse(
    200, (("content-type", "application/json; charset=utf-8"), ("vary", "accept")), b"{}"
)


def cors_headers(headers: tuple[tuple[str, str], ...]) -> dict[str, str]:
    return {name: value for name, value in headers if name.startswith("access-control-")}


# --- CORSPolicy ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        (TRUSTED, TRUSTED),
        ("HTTPS://App.Example", "HTTPS://App.Example"),  # scheme and host ignore case
        (FOREIGN, None),
        (TRUSTED + ".evil.example", None),  # no prefix or suffix matching
        ("https://app.example:8443", None),
        ("null", None),  # sandboxed frames and file: pages
        (None, None),  # not a browser
    ],
)
def test_only_listed_origins_are_allowed(origin: str | None, allowed: str | None) -> None:
    assert CORSPolicy((TRUSTED,)).allowed_origin(origin) == allowed


def test_wildcard_allows_every_origin_as_a_literal_star() -> None:
    policy = CORSPolicy(("*",))
    assert [policy.allowed_origin(o) for o in (TRUSTED, "null", None)] == ["*", "*", None]


@pytest.mark.parametrize(
    "settings",
    [
        {"cors_origins": ("*",), "cors_allow_credentials": True},
        {"cors_origins": (TRUSTED, "*"), "cors_allow_credentials": True},
        {"cors_origins": TRUSTED},  # one string, not a tuple of origins
        {"cors_origins": (TRUSTED,), "cors_max_age": -1},
        {"cors_origins": (TRUSTED,), "cors_allow_headers": "x-api-key"},  # one string
        {"cors_origins": (TRUSTED,), "cors_allow_headers": ("x-api-key, evil",)},
        {"cors_origins": (TRUSTED,), "cors_allow_headers": ("x-api-key\r\nset-cookie: a",)},
        {"cors_origins": (TRUSTED,), "cors_allow_headers": ("",)},
    ],
)
def test_H21_dangerous_or_malformed_cors_settings_are_refused(settings: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="cors_"):
        Settings(**settings)
    with pytest.raises(ValueError, match="cors_"):
        GraphQL(make_schema([]), **settings)


def test_cors_is_off_by_default() -> None:
    policy = Settings().cors_policy()
    assert policy == CORSPolicy((), False, 600)
    assert not policy.enabled


def test_H21_preflight_allows_the_configured_request_headers() -> None:
    settings = Settings(cors_origins=(TRUSTED,), cors_allow_headers=("Content-Type", "X-Api-Key"))
    response = preflight_response("OPTIONS", PREFLIGHT, settings.cors_policy())
    assert response is not None
    allowed = cors_headers(response.headers)["access-control-allow-headers"]
    assert allowed == "content-type, x-api-key"


def test_H21_a_resuming_sse_client_may_send_last_event_id_by_default() -> None:
    """A cross-origin SSE client resumes with ``Last-Event-ID``: allowed without settings."""
    asking = {**PREFLIGHT, "access-control-request-headers": "last-event-id"}
    response = preflight_response(
        "OPTIONS", asking, Settings(cors_origins=(TRUSTED,)).cors_policy()
    )
    assert response is not None
    allowed = cors_headers(response.headers)["access-control-allow-headers"]
    assert "last-event-id" in allowed.split(", ")


def test_H21_no_allowed_request_headers_sends_no_allow_headers_header() -> None:
    response = preflight_response("OPTIONS", PREFLIGHT, CORSPolicy((TRUSTED,), allow_headers=()))
    assert response is not None
    assert "access-control-allow-headers" not in dict(response.headers)


# --- preflight_response -----------------------------------------------------------------


def test_H21_preflight_from_a_listed_origin_gets_exact_204() -> None:
    response = preflight_response("OPTIONS", PREFLIGHT, CORSPolicy((TRUSTED,), max_age=60))
    assert response == HTTPResponse(
        204,
        (
            ("access-control-allow-origin", TRUSTED),
            ("access-control-allow-methods", "GET, POST, PUT, DELETE"),
            ("access-control-allow-headers", ALLOW_HEADERS),
            ("access-control-max-age", "60"),
            ("vary", "origin"),
        ),
    )


def test_H21_preflight_with_credentials_names_the_origin_never_a_star() -> None:
    response = preflight_response("OPTIONS", PREFLIGHT, CORSPolicy((TRUSTED,), True))
    assert response is not None
    assert cors_headers(response.headers) == {
        "access-control-allow-origin": TRUSTED,
        "access-control-allow-credentials": "true",
        "access-control-allow-methods": "GET, POST, PUT, DELETE",
        "access-control-allow-headers": ALLOW_HEADERS,
        "access-control-max-age": "600",
    }


@pytest.mark.parametrize(
    ("method", "headers", "policy"),
    [
        ("OPTIONS", {**PREFLIGHT, "origin": FOREIGN}, CORSPolicy((TRUSTED,))),
        ("OPTIONS", {"origin": TRUSTED}, CORSPolicy((TRUSTED,))),  # no request method
        ("OPTIONS", {"access-control-request-method": "POST"}, CORSPolicy(("*",))),  # no Origin
        ("OPTIONS", PREFLIGHT, CORSPolicy()),  # CORS off
        ("POST", PREFLIGHT, CORSPolicy((TRUSTED,))),  # not OPTIONS
    ],
    ids=["foreign", "no-request-method", "no-origin", "cors-off", "not-options"],
)
def test_H21_anything_but_a_listed_preflight_is_left_to_the_405(
    method: str, headers: dict[str, str], policy: CORSPolicy
) -> None:
    assert preflight_response(method, headers, policy) is None


# --- add_cors_headers -------------------------------------------------------------------


def test_cors_off_leaves_responses_untouched() -> None:
    assert add_cors_headers(JSON_ANSWER, {"origin": TRUSTED}, CORSPolicy()) is JSON_ANSWER


def test_listed_origin_gets_allow_origin_credentials_and_vary_merged() -> None:
    response = add_cors_headers(JSON_ANSWER, {"origin": TRUSTED}, CORSPolicy((TRUSTED,), True))
    assert response.headers == (
        ("content-type", "application/json; charset=utf-8"),
        ("vary", "accept, origin"),
        ("access-control-allow-origin", TRUSTED),
        ("access-control-allow-credentials", "true"),
    )
    assert (response.status, response.body) == (200, b"{}")


@pytest.mark.parametrize("headers", [{"origin": FOREIGN}, {}], ids=["foreign", "no-origin"])
def test_other_requests_only_vary_on_origin(headers: dict[str, str]) -> None:
    response = add_cors_headers(JSON_ANSWER, headers, CORSPolicy((TRUSTED,)))
    assert response.headers == (
        ("content-type", "application/json; charset=utf-8"),
        ("vary", "accept, origin"),
    )


def test_vary_is_added_once() -> None:
    bare = HTTPResponse(204)
    once = add_cors_headers(bare, {"origin": TRUSTED}, CORSPolicy(("*",)))
    twice = add_cors_headers(once, {"origin": TRUSTED}, CORSPolicy(("*",)))
    assert once.headers == (("access-control-allow-origin", "*"), ("vary", "origin"))
    assert [name for name, _ in twice.headers].count("vary") == 1
    assert dict(twice.headers)["vary"] == "origin"


# --- check_preflight_header --------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"content-type": "text/plain"},
        {"content-type": "TEXT/PLAIN; charset=utf-8"},
        {"content-type": "application/x-www-form-urlencoded"},
        {"content-type": "multipart/form-data; boundary=x"},
        {"content-type": "  "},
        {"apollo-require-preflight": "true"},  # only our header counts
    ],
)
def test_GET_without_the_preflight_header_or_a_non_simple_type_is_400(
    headers: dict[str, str],
) -> None:
    with pytest.raises(HTTPError) as refused:
        check_preflight_header("GET", headers)
    assert refused.value.status == 400
    assert "graphql-require-preflight" in refused.value.message


@pytest.mark.parametrize(
    ("method", "headers"),
    [
        ("GET", {"graphql-require-preflight": ""}),  # any value, even empty
        ("GET", {"graphql-require-preflight": "1", "content-type": "text/plain"}),
        ("GET", {"content-type": "application/json"}),
        ("GET", {"content-type": "text/plain, application/json"}),  # unparsable: preflighted
        ("POST", {}),  # POST needs JSON anyway (415)
        ("OPTIONS", {}),
    ],
)
def test_preflighted_requests_pass_the_check(method: str, headers: dict[str, str]) -> None:
    check_preflight_header(method, headers)


# --- through the app: TestClient (native transport) and ASGI ----------------------------


def make_schema(log: list[str]) -> Schema:
    schema = Schema(
        """
        type Query { hello: String!  items(first: Int!): [Int!]! }
        type Mutation { touch: Boolean! }
        """
    )

    @schema.field("Query.hello")
    def hello(root: Any, info: Any) -> str:
        log.append("hello")
        return "world"

    @schema.field("Query.items")
    def items(root: Any, info: Any, first: int) -> list[int]:
        log.append(f"items:{first}")
        return list(range(first))

    @schema.field("Mutation.touch")
    def touch(root: Any, info: Any) -> bool:
        log.append("touch")
        return True

    return schema


def make_app(log: list[str], **settings: Any) -> GraphQL:
    def context(default: Any) -> Any:
        log.append("context")
        return default

    return GraphQL(make_schema(log), context=context, **settings)


async def post(client: TestClient, origin: str | None, query: str = "{ hello }") -> Response:
    headers = {"content-type": "application/json", **({} if origin is None else {"origin": origin})}
    body = json.dumps({"query": query}).encode()
    return await client.request("POST", headers=headers, body=body)


@pytest.mark.anyio
async def test_H21_preflight_through_the_native_transport_executes_nothing() -> None:
    log: list[str] = []
    app = make_app(log, cors_origins=(TRUSTED,), cors_allow_credentials=True, cors_max_age=30)
    async with TestClient(app) as client:
        allowed = await client.request("OPTIONS", headers=PREFLIGHT)
        foreign = await client.request("OPTIONS", headers={**PREFLIGHT, "origin": FOREIGN})
        plain = await client.request("OPTIONS", headers={"origin": TRUSTED})
    assert (allowed.status, allowed.body) == (204, b"")
    assert cors_headers(allowed.headers) == {
        "access-control-allow-origin": TRUSTED,
        "access-control-allow-credentials": "true",
        "access-control-allow-methods": "GET, POST, PUT, DELETE",
        "access-control-allow-headers": ALLOW_HEADERS,
        "access-control-max-age": "30",
    }
    assert allowed.header("vary") == "origin"
    assert (foreign.status, foreign.header("allow")) == (405, "GET, POST")
    assert cors_headers(foreign.headers) == {}
    assert (plain.status, plain.header("allow")) == (405, "GET, POST")  # not a preflight
    assert log == []  # no context, no resolver


@pytest.mark.anyio
async def test_H21_answers_carry_cors_headers_for_listed_origins_only() -> None:
    log: list[str] = []
    app = make_app(log, cors_origins=(TRUSTED,), cors_allow_credentials=True)
    async with TestClient(app) as client:
        trusted = await post(client, TRUSTED)
        foreign = await post(client, FOREIGN)
        refused = await client.request("PATCH", headers={"origin": TRUSTED})
    assert trusted.json() == foreign.json() == {"data": {"hello": "world"}}
    assert cors_headers(trusted.headers) == {
        "access-control-allow-origin": TRUSTED,
        "access-control-allow-credentials": "true",
    }
    assert cors_headers(foreign.headers) == {}  # executed, but the browser may not read it
    for response in (trusted, foreign, refused):
        assert response.header("vary") == "accept, origin"
    assert refused.status == 405
    assert refused.header("access-control-allow-origin") == TRUSTED


@pytest.mark.anyio
async def test_wildcard_without_credentials_answers_with_a_star() -> None:
    async with TestClient(make_app([], cors_origins=("*",))) as client:
        response = await post(client, FOREIGN)
    assert response.header("access-control-allow-origin") == "*"
    assert response.header("access-control-allow-credentials") is None


@pytest.mark.anyio
async def test_without_cors_settings_no_cors_header_is_sent() -> None:
    log: list[str] = []
    async with TestClient(make_app(log)) as client:
        response = await post(client, TRUSTED)
        preflight = await client.request("OPTIONS", headers=PREFLIGHT)
    assert cors_headers(response.headers) == {} and response.header("vary") == "accept"
    assert (preflight.status, cors_headers(preflight.headers)) == (405, {})
    assert log == ["context", "hello"]


@pytest.mark.anyio
async def test_require_preflight_header_refuses_bare_GET_before_anything_runs() -> None:
    log: list[str] = []
    app = make_app(log, require_preflight_header=True)
    async with TestClient(app) as client:
        bare = await client.request("GET", "/graphql?query=%7Bhello%7D")
        marked = await client.query(
            "{ hello }", method="GET", headers={"graphql-require-preflight": "1"}
        )
        typed = await client.request(
            "GET", "/graphql?query=%7Bhello%7D", headers={"content-type": "application/json"}
        )
        posted = await client.query("{ hello }")
        page = await client.request("GET", headers={"accept": "text/html"})
    assert bare.status == 400
    assert "graphql-require-preflight" in bare.json()["errors"][0]["message"]
    assert marked == posted == typed.json() == {"data": {"hello": "world"}}
    assert page.status == 200 and page.header("content-type") == "text/html; charset=utf-8"
    assert log == ["context", "hello"] * 3  # the bare GET ran nothing


@pytest.mark.anyio
async def test_bare_GET_is_served_when_the_preflight_header_is_not_required() -> None:
    async with TestClient(make_app([])) as client:
        bare = await client.request("GET", "/graphql?query=%7Bhello%7D")
    assert bare.json() == {"data": {"hello": "world"}}


async def asgi_request(app: GraphQL, method: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": "/graphql",
        "root_path": "",
        "query_string": b"",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
    }
    incoming = [{"type": "http.request", "body": b"", "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if incoming:
            return incoming.pop(0)
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    await app(scope, receive, send)
    return sent


@pytest.mark.anyio
async def test_H21_preflight_through_asgi() -> None:
    log: list[str] = []
    sent = await asgi_request(make_app(log, cors_origins=(TRUSTED,)), "OPTIONS", PREFLIGHT)
    start, body = sent
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    assert start["status"] == 204 and body["body"] == b""
    assert headers["access-control-allow-origin"] == TRUSTED
    assert headers["access-control-allow-headers"] == ALLOW_HEADERS
    assert log == []


# --- G10: validation_rules ---------------------------------------------------------------


def first_at_most(limit: int, runs: list[str]) -> type[graphql.ValidationRule]:
    class FirstAtMost(graphql.ValidationRule):
        def __init__(self, context: graphql.ValidationContext) -> None:
            super().__init__(context)
            runs.append("validated")

        def enter_argument(self, node: graphql.ArgumentNode, *_args: Any) -> None:
            value = node.value
            literal = value.value if isinstance(value, graphql.IntValueNode) else None
            if node.name.value == "first" and literal is not None and int(literal) > limit:
                self.report_error(graphql.GraphQLError(f"first > {limit}", node))

    return FirstAtMost


def test_G10_validation_rules_run_once_per_source_and_their_verdict_is_cached() -> None:
    log: list[str] = []
    runs: list[str] = []
    engine = Engine(make_schema(log), validation_rules=(first_at_most(10, runs),))
    for _ in range(3):
        with pytest.raises(RequestError) as refused:
            engine.prepare(OperationRequest(query="{ items(first: 11) }"))
        assert [e["message"] for e in refused.value.errors] == ["first > 10"]
    engine.prepare(OperationRequest(query="{ items(first: 10) }"))
    assert runs == ["validated", "validated"]  # one per distinct source: the rest are cached
    assert log == []


def test_G10_custom_rules_run_alongside_the_built_in_ones() -> None:
    runs: list[str] = []
    engine = Engine(
        make_schema([]), introspection=False, validation_rules=(first_at_most(1, runs),)
    )
    with pytest.raises(RequestError) as refused:
        engine.prepare(OperationRequest(query='{ __type(name: "Query") { name } items(first: 2) }'))
    messages = [e["message"] for e in refused.value.errors]
    assert len(messages) == 2 and "introspection" in messages[0] and messages[1] == "first > 1"


@pytest.mark.anyio
async def test_G10_the_app_passes_validation_rules_to_its_engine() -> None:
    log: list[str] = []
    app = make_app(log, validation_rules=(first_at_most(5, []),))
    async with TestClient(app) as client:
        huge = await client.query("{ items(first: 99999999) }")
        fine = await client.query("{ items(first: 5) }")
    assert huge == {"errors": [{"message": "first > 5", "locations": [{"line": 1, "column": 9}]}]}
    assert fine == {"data": {"items": [0, 1, 2, 3, 4]}}
    assert [entry for entry in log if entry != "context"] == ["items:5"]  # no resolver ran


@pytest.mark.parametrize("rule", [object, "FirstAtMost", None, graphql.GraphQLError])
def test_G10_anything_but_a_rule_class_is_refused(rule: Any) -> None:
    with pytest.raises(TypeError, match="validation rule"):
        GraphQL(make_schema([]), validation_rules=(rule,))


# --- H41 through real servers ------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("server", ["native", "hypercorn"])
async def test_H41_a_get_with_a_non_json_content_type_gets_415_from_real_servers(
    server: str, anyio_backend_name: str
) -> None:
    log: list[str] = []
    app = make_app(log)
    serving_app = serving(app) if server == "native" else hypercorn_serving(app, anyio_backend_name)
    target = "/graphql?query=%7B%20hello%20%7D"
    async with serving_app as port:
        refused, _, _ = await request(port, "GET", target, [("content-type", "text/plain")])
        assert log == []  # refused before a context was made: nothing executed
        served, _, body = await request(port, "GET", target, [("accept", "application/json")])
    assert (refused, served) == (415, 200)
    assert json.loads(body) == {"data": {"hello": "world"}}


# --- H43: CORS on the transports' own errors ---------------------------------------------


async def raw_exchange(port: int, data: bytes) -> tuple[int, dict[str, str]]:
    """Send ``data`` on a new connection and read the one response the server sends."""
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(data)
        received = b""
        with anyio.fail_after(10):
            while b"\r\n\r\n" not in received:
                received += await stream.receive()
    head = received.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in head[1:])
    return int(head[0].split()[1]), headers


@pytest.mark.anyio
async def test_H43_a_408_after_the_head_carries_the_cors_headers() -> None:
    """The head (and its Origin) arrived, the body never does: 408 within body_timeout,
    readable by the page that sent it."""
    app = make_app([], cors_origins=(TRUSTED,), limits=Limits(body_timeout=0.2))
    head = (
        b"POST /graphql HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n"
        b"origin: " + TRUSTED.encode() + b"\r\ncontent-length: 100\r\n\r\n{"
    )
    async with serving(app) as port:
        status, headers = await raw_exchange(port, head)
    assert status == 408
    assert headers["access-control-allow-origin"] == TRUSTED
    assert headers["vary"] == "origin"


@pytest.mark.anyio
async def test_H43_a_400_for_a_malformed_body_carries_the_cors_headers() -> None:
    app = make_app([], cors_origins=(TRUSTED,))
    chunked = (
        b"POST /graphql HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n"
        b"origin: " + TRUSTED.encode() + b"\r\ntransfer-encoding: chunked\r\n\r\n"
        b"zz\r\nnot a chunk size\r\n"
    )
    async with serving(app) as port:
        status, headers = await raw_exchange(port, chunked)
    assert status == 400
    assert headers["access-control-allow-origin"] == TRUSTED


@pytest.mark.anyio
async def test_H43_an_error_before_the_origin_is_known_has_no_cors_headers() -> None:
    """A 431 for a head over the cap: the Origin was never read, so nothing can be allowed."""
    app = make_app([], cors_origins=(TRUSTED,), limits=Limits(max_header_bytes=1024))
    head = (
        b"POST /graphql HTTP/1.1\r\nhost: t\r\norigin: " + TRUSTED.encode() + b"\r\n"
        b"x-padding: " + b"x" * 4096 + b"\r\n\r\n"
    )
    async with serving(app) as port:
        status, headers = await raw_exchange(port, head)
    assert status == 431
    assert "access-control-allow-origin" not in headers


@pytest.mark.anyio
async def test_H43_a_413_from_the_native_transport_carries_the_cors_headers() -> None:
    """Sent before the app sees the request, but after the head (and the Origin) arrived:
    a browser page can then read why its request failed."""
    app = make_app([], cors_origins=(TRUSTED,), limits=Limits(max_body_bytes=100))
    async with TestClient(app) as client:
        body = json.dumps({"query": "{ hello }", "pad": "x" * 200}).encode()
        headers = {"content-type": "application/json", "origin": TRUSTED}
        refused = await client.request("POST", headers=headers, body=body)
    assert refused.status == 413
    assert refused.header("access-control-allow-origin") == TRUSTED
    assert refused.header("vary") == "origin"


@pytest.mark.anyio
async def test_H43_a_413_from_the_asgi_adapter_carries_the_cors_headers() -> None:
    app = make_app([], cors_origins=(TRUSTED,), limits=Limits(max_body_bytes=100))
    headers = {"content-type": "application/json", "origin": TRUSTED, "content-length": "500"}
    start, _body = await asgi_request(app, "POST", headers)
    sent = {k.decode(): v.decode() for k, v in start["headers"]}
    assert start["status"] == 413
    assert sent["access-control-allow-origin"] == TRUSTED
