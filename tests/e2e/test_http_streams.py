"""Subscriptions over plain HTTP proven with independent clients on every real server kind.

GraphQL over SSE (graphql-sse protocol) with the npm graphql-sse client in both modes and the
npm EventSource (``tests/node/sse_client.mjs``); Apollo's multipart subscriptions with Apollo
Client's HttpLink and with meros over fetch (``tests/node/multipart_client.mjs``); bad tokens
and bad requests with ``http.client``. Each script runs once per server kind (module-scoped
fixtures) and prints its observations as JSON; the tests below check one part each. Cleanups
are proven by ``Subscription.tracked`` of ``tests/e2e/app.py``, whose ``finally`` is read
back with ``Query.cleanedUp`` from the same server (hypercorn serves it from a worker).

Without node or the npm packages (``npm ci`` in tests/node) the client tests are skipped with
the reason; under CI they fail instead.
"""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Mapping
from typing import Any

import pytest

from tests.e2e.conftest import NODE_DIR
from tests.e2e.servers import RunningServer
from tests.requirements import unavailable

pytestmark = pytest.mark.e2e

TOKEN_HEADER = "x-graphql-event-stream-token"
MULTIPART_TYPE = 'multipart/mixed; boundary="graphql"; subscriptionSpec="1.0"'
UNKNOWN_FIELD = "Cannot query field 'nope' on type 'Subscription'."
SOURCE_FAILED = [{"message": "source failed on purpose"}]
NODE_PACKAGES = ("graphql-sse", "eventsource", "@apollo/client", "meros", "rxjs", "graphql")


# --- helpers -----------------------------------------------------------------------------


def counted(field: str, target: int) -> list[dict[str, Any]]:
    """The results of ``count(target:)`` under the response key ``field``."""
    return [{"data": {field: value}} for value in range(target)]


def call(
    server: RunningServer,
    method: str,
    target: str = "/graphql",
    *,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request on its own connection: the status, the headers (lower-cased), the body."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        all_headers = dict(headers or {})
        if body is not None:
            all_headers.setdefault("content-type", "application/json")
        connection.request(method, target, None if body is None else json.dumps(body), all_headers)
        response = connection.getresponse()
        answer = {name.lower(): value for name, value in response.getheaders()}
        return response.status, answer, response.read()
    finally:
        connection.close()


def message(body: bytes) -> str:
    errors = json.loads(body)["errors"]
    assert len(errors) == 1, errors
    return str(errors[0]["message"])


# --- running the node clients ------------------------------------------------------------


@pytest.fixture(scope="module")
def node_client() -> str:
    node = shutil.which("node")
    if node is None:
        unavailable("node is not installed")
    missing = [p for p in NODE_PACKAGES if not (NODE_DIR / "node_modules" / p).is_dir()]
    if missing:
        unavailable(f"{', '.join(missing)} not installed: npm ci in tests/node")
    return node


@pytest.fixture(scope="module")
def log_start(server: RunningServer) -> int:
    """Where the server's log stood before this module's scenarios began."""
    return len(server.log)


def run_node(node: str, script: str, server: RunningServer) -> dict[str, Any]:
    """Run ``script`` against ``server``; its observations. Names it gives ``tracked``
    subscriptions start with a fresh prefix."""
    done = subprocess.run(
        [node, str(NODE_DIR / script), server.http_url, uuid.uuid4().hex[:12]],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"{done.stderr}\nserver log:\n{server.log}"
    seen: dict[str, Any] = json.loads(done.stdout)
    assert "crash" not in seen, f"{seen['crash']}\nserver log:\n{server.log}"
    return seen


@pytest.fixture(scope="module")
def sse(server: RunningServer, node_client: str, log_start: int) -> dict[str, Any]:
    return run_node(node_client, "sse_client.mjs", server)


@pytest.fixture(scope="module")
def multipart(server: RunningServer, node_client: str, log_start: int) -> dict[str, Any]:
    return run_node(node_client, "multipart_client.mjs", server)


# --- 1. results in order -----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["distinct", "single"])
def test_graphql_sse_results_in_order(sse: dict[str, Any], mode: str) -> None:
    seen = sse[mode]
    assert seen["subscription"] == {"values": counted("count", 5), "completed": True}
    assert seen["query"] == {"values": [{"data": {"hello": "Hello sse"}}], "completed": True}
    assert seen["mutation"] == {"values": [{"data": {"send": True}}], "completed": True}


def test_eventsource_get_and_token_in_the_url(sse: dict[str, Any]) -> None:
    seen = sse["eventSource"]
    # distinct connections mode over GET: the empty data of `complete` reaches EventSource
    assert seen["distinct"] == {"events": counted("count", 3), "complete": None}
    assert seen["reservation"] == {"status": 201, "contentType": "text/plain; charset=utf-8"}
    assert seen["operationStatus"] == 202
    assert seen["single"] == {
        "events": [{"id": "op-1", "payload": result} for result in counted("count", 3)],
        "complete": {"id": "op-1"},
    }


def test_apollo_client_multipart_results_in_order(multipart: dict[str, Any]) -> None:
    assert multipart["apollo"]["subscription"] == {
        "values": counted("count", 5),
        "completed": True,
    }


def test_meros_multipart_results_in_order(multipart: dict[str, Any]) -> None:
    seen = multipart["meros"]
    assert seen["subscription"] == {
        "status": 200,
        "contentType": MULTIPART_TYPE,
        "parts": [{"payload": result} for result in counted("count", 5)],
        "ended": True,
    }
    # a query under Apollo's Accept (multipart or JSON) is answered as plain JSON
    assert seen["query"]["contentType"].startswith("application/json")
    assert seen["query"]["json"] == {"data": {"hello": "Hello multipart"}}


# --- 2. errors in the right place --------------------------------------------------------


def test_graphql_sse_errors(sse: dict[str, Any]) -> None:
    # distinct: a request error is a `next` on the accepted stream, then `complete`
    (result,) = sse["distinct"]["validationError"]["values"]
    assert [error["message"] for error in result["errors"]] == [UNKNOWN_FIELD]
    assert sse["distinct"]["validationError"]["completed"] is True
    # single connection: the operation's POST is answered as GraphQL over HTTP answers it
    # (the client sends Accept: */*, so JSON with 200); the client reports it as an error
    refused = sse["single"]["validationError"]
    assert refused["values"] == []
    assert refused["error"]["status"] == 200
    (post,) = [r for r in sse["single"]["requests"] if r["method"] == "POST" and r["body"]]
    assert [error["message"] for error in json.loads(post["body"])["errors"]] == [UNKNOWN_FIELD]
    # a source that raises: its results, then its error as a result, then `complete`
    for mode in ("distinct", "single"):
        assert sse[mode]["sourceError"] == {
            "values": [*counted("boom", 2), {"errors": SOURCE_FAILED}],
            "completed": True,
        }


def test_apollo_client_multipart_errors(multipart: dict[str, Any]) -> None:
    seen = multipart["apollo"]
    # Apollo accepts JSON too, so a request error comes back as a plain JSON answer
    assert seen["validationError"] == {
        "values": [{"data": None, "error": UNKNOWN_FIELD}],
        "completed": True,
    }
    assert seen["sourceError"] == {
        "values": [*counted("boom", 2), {"data": None, "error": "source failed on purpose"}],
        "completed": True,
    }


def test_meros_multipart_source_error(multipart: dict[str, Any]) -> None:
    assert multipart["meros"]["sourceError"]["parts"] == [
        *({"payload": result} for result in counted("boom", 2)),
        {"payload": {"errors": SOURCE_FAILED}},
    ]
    assert multipart["meros"]["sourceError"]["ended"] is True


def test_meros_multipart_request_error(multipart: dict[str, Any]) -> None:
    seen = multipart["meros"]["validationError"]
    assert seen["contentType"] == MULTIPART_TYPE
    error = {"message": UNKNOWN_FIELD, "locations": [{"line": 1, "column": 16}]}
    assert seen["parts"] == [{"payload": {"errors": [error]}}]


def test_multipart_request_error_ends_with_the_closing_boundary(server: RunningServer) -> None:
    status, headers, body = call(
        server,
        "POST",
        body={"query": "subscription { nope }"},
        headers={"accept": 'multipart/mixed;subscriptionSpec="1.0"'},
    )
    assert (status, headers["content-type"]) == (200, MULTIPART_TYPE)
    assert b'{"payload":{"errors":' in body
    assert body.endswith(b"\r\n--graphql--\r\n"), body


# --- 3. cancelled on disconnect, the resolver's finally run ------------------------------


def test_graphql_sse_cancels_on_dispose(sse: dict[str, Any]) -> None:
    for mode in ("distinct", "single"):
        assert sse[mode]["disposed"] == {
            "values": [{"data": {"tracked": 0}}],
            "disposed": True,
            "cleanedUp": True,
        }, mode
    # distinct: the client aborted its request, nothing else
    assert {r["method"] for r in sse["distinct"]["requests"]} == {"POST"}
    # single (not lazy, so the stream stayed open): the client's DELETE stopped it
    requests = sse["single"]["requests"]
    assert [r for r in requests if r["method"] == "DELETE"] == [
        {"method": "DELETE", "status": 200, "body": ""}
    ]
    assert [r["method"] for r in requests if r["method"] in ("PUT", "GET")] == ["PUT", "GET"]


def test_closing_the_single_connection_stream_cancels_every_operation(
    sse: dict[str, Any],
) -> None:
    seen = sse["streamClosed"]
    assert seen["firstResults"] == [{"data": {"tracked": 0}}] * 2
    assert seen["cleanedUp"] == [True, True]
    # this client's DELETEs never reached the server: only the stream's end stopped them
    assert [r for r in seen["requests"] if r["method"] == "DELETE"] == [
        {"method": "DELETE", "answeredLocally": True}
    ] * 2


def test_multipart_cancels_on_disconnect(multipart: dict[str, Any]) -> None:
    assert multipart["apollo"]["unsubscribed"] == {
        "values": [{"data": {"tracked": 0}}],
        "unsubscribed": True,
        "cleanedUp": True,
    }
    aborted = multipart["meros"]["aborted"]
    assert aborted["parts"] == [{"payload": {"data": {"tracked": 0}}}]
    assert (aborted["aborted"], aborted["cleanedUp"]) == (True, True)
    # an idle subscription is cancelled as well when the client leaves
    assert multipart["prompt"]["cleanedUp"] == [True, True]


def test_multipart_result_arrives_before_the_next_one(multipart: dict[str, Any]) -> None:
    seen = multipart["prompt"]
    assert seen["apollo"]["values"] == [{"data": {"tracked": 0}}]
    assert seen["meros"]["parts"] == [{"payload": {"data": {"tracked": 0}}}]


# --- 4. many operations on one single-connection stream ---------------------------------


def test_fifty_operations_on_one_stream(sse: dict[str, Any]) -> None:
    seen = sse["concurrent"]
    assert len(seen) == 50
    for i, subscriber in enumerate(seen):
        assert subscriber == {"values": counted(f"c{i}", 1 + i % 5), "completed": True}, i
    # all of them over the one stream the client reserved and opened
    requests = sse["single"]["requests"]
    assert sum(r["method"] == "GET" for r in requests) == 1
    assert sum(r["method"] == "POST" and r["status"] == 202 for r in requests) >= 50


# --- 5. bad tokens and bad requests ------------------------------------------------------


def test_reservation_needs_a_text_answer(server: RunningServer, log_start: int) -> None:
    status, _, body = call(server, "PUT", headers={"accept": "application/json"})
    assert status == 406
    assert "text/plain" in message(body)


@pytest.mark.parametrize(
    ("method", "target", "accept"),
    [
        ("GET", "/graphql", "text/event-stream"),
        ("POST", "/graphql", "application/json"),
        ("DELETE", "/graphql?operationId=x", "application/json"),
    ],
)
def test_unknown_token(
    server: RunningServer, log_start: int, method: str, target: str, accept: str
) -> None:
    body = {"query": "{ hello }", "extensions": {"operationId": "x"}} if method == "POST" else None
    token = f"not-a-token-{uuid.uuid4().hex}"
    status, _, answer = call(
        server, method, target, body=body, headers={"accept": accept, TOKEN_HEADER: token}
    )
    assert status == 404
    assert "sticky" in message(answer)


def test_unknown_token_in_the_url(server: RunningServer, log_start: int) -> None:
    status, _, answer = call(
        server, "GET", "/graphql?token=nope", headers={"accept": "text/event-stream"}
    )
    assert status == 404
    assert "sticky" in message(answer)


def test_bad_requests_on_a_reserved_stream(server: RunningServer, log_start: int) -> None:
    status, headers, token_bytes = call(server, "PUT")
    assert (status, headers["content-type"]) == (201, "text/plain; charset=utf-8")
    token = token_bytes.decode()
    stream = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        stream.request(
            "GET", "/graphql", headers={"accept": "text/event-stream", TOKEN_HEADER: token}
        )
        opened = stream.getresponse()
        assert opened.status == 200
        assert opened.getheader("content-type", "").startswith("text/event-stream")
        assert opened.read1(64) == b":\n\n"  # the stream is open

        by_token = {TOKEN_HEADER: token}
        status, _, answer = call(server, "GET", headers={"accept": "text/event-stream", **by_token})
        assert status == 409
        assert "already open" in message(answer)

        status, _, answer = call(server, "POST", body={"query": "{ hello }"}, headers=by_token)
        assert status == 400
        assert "extensions.operationId" in message(answer)

        status, _, answer = call(server, "DELETE", headers=by_token)
        assert status == 400
        assert "operationId" in message(answer)
    finally:
        stream.close()
    # once the server saw the stream close, the reservation is gone (asked a bounded number
    # of times: the server notices the close on its own schedule)
    for _ in range(100):
        status, _, answer = call(
            server, "GET", headers={"accept": "text/event-stream", TOKEN_HEADER: token}
        )
        if status != 409:
            break
        time.sleep(0.02)
    assert status == 404, answer


# --- 6. nothing leaked -------------------------------------------------------------------


def unexpected_tracebacks(log: str) -> list[str]:
    """Every traceback in ``log`` but those of ``boom``'s source failing on purpose."""
    lines = log.splitlines()
    found = []
    for start, line in enumerate(lines):
        if line.startswith("Traceback (most recent call last)"):
            end = start + 1
            while end < len(lines) and lines[end].startswith(" "):
                end += 1
            block = lines[start : end + 1]
            if block[-1] != "RuntimeError: source failed on purpose":
                found.append("\n".join(block))
    return found


def test_server_log_has_no_unexpected_traceback(
    server: RunningServer, log_start: int, sse: dict[str, Any], multipart: dict[str, Any]
) -> None:
    log = server.log[log_start:]
    assert unexpected_tracebacks(log) == [], log
    errors = [line for line in log.splitlines() if "ERROR" in line and "boom" not in line]
    assert errors == [], log
