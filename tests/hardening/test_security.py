"""Security switches over the native server, on both backends: error bodies (H20), CORS
preflight (H21), the WebSocket Origin check, introspection off (G09) and error masking.

Hypercorn runs the same checks in ``test_hypercorn.py``.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import quote

import pytest

from tests.hardening.app import SECRET, TRUSTED_ORIGIN, Probe, build_app
from tests.hardening.clients import (
    JSON_HEADERS,
    GraphQLSocket,
    Refused,
    post,
    request,
    serving,
    start,
    subscribe,
)
from tests.test_native_http import exchange

pytestmark = pytest.mark.anyio

#: What must never appear in a body sent to a client (debug is off).
INTERNALS = ("Traceback", 'File "', ".py", "RuntimeError", "ValueError", "KeyError", "anyql.")


def assert_no_internals(body: bytes) -> None:
    text = body.decode("utf-8", "replace")
    for marker in (*INTERNALS, SECRET):
        assert marker not in text, f"{marker!r} leaked in {text!r}"


# --- H20: no traceback, path or class name in any error body ------------------------------


BAD_HTTP = [
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n",
    b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Content-Length: 9\r\n\r\n{not json",
    b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n{}",
    b"PATCH /graphql HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    b"DELETE /graphql?operationId=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    b"GET /graphql HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n"
    b"X-GraphQL-Event-Stream-Token: forged\r\n\r\n",
    b"GET /graphql?query=%7B HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /graphql?query=%7Bnope%7D HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /graphql?query=mutation%7Bpublish(room:%22a%22,text:%22b%22)%7D HTTP/1.1\r\n"
    b"Host: x\r\n\r\n",
    b"GET /graphql HTTP/1.1\r\nHost: x\r\nAccept: application/xml\r\n\r\n",
    b"GET /graphql HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Version: 12\r\n\r\n",
]


@pytest.mark.parametrize("raw", BAD_HTTP, ids=range(len(BAD_HTTP)))
async def test_H20_error_bodies_from_the_server_carry_no_internals(raw: bytes) -> None:
    if b"Upgrade" not in raw:  # not kept alive: the answer is followed by EOF at once
        raw = raw.replace(b"\r\n", b"\r\nConnection: close\r\n", 1)
    async with serving(build_app()) as port:
        responses = await exchange(port, raw)
    assert responses, "every bad request gets an answer"
    for status, _headers, body in responses:
        assert status >= 400 or b'"errors"' in body
        assert_no_internals(body)


async def test_H20_a_crashing_context_factory_is_a_bare_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def context(default: Any) -> Any:
        raise RuntimeError(SECRET)

    async with serving(build_app(context=context)) as port:
        status, _headers, body = await post(port, {"query": "{ hello }"})
    assert status == 500
    assert_no_internals(body)
    assert [r for r in caplog.records if SECRET in str(r.exc_info)]  # logged, not shown


async def test_H20_masked_resolver_error_shows_no_message_path_or_class() -> None:
    async with serving(build_app(mask_errors=True)) as port:
        status, _headers, body = await post(port, {"query": "{ fail hello }"})
    assert status == 200
    assert json.loads(body)["data"] == {"fail": None, "hello": "world"}
    assert_no_internals(body)


# --- H21: CORS preflight --------------------------------------------------------------------

PREFLIGHT = [
    ("origin", TRUSTED_ORIGIN),
    ("access-control-request-method", "POST"),
    ("access-control-request-headers", "content-type, graphql-require-preflight"),
]
#: Origins a credentialed CORS policy listing only TRUSTED_ORIGIN must not admit.
FOREIGN_ORIGINS = ("https://evil.example", "null", TRUSTED_ORIGIN + ".evil.example")


async def test_H21_preflight_never_executes_nor_allows_any_origin_with_credentials() -> None:
    with pytest.raises(ValueError, match="cors_allow_credentials"):
        build_app(cors_origins=("*",), cors_allow_credentials=True)
    probe = Probe()

    def context(default: Any) -> Any:
        probe.mark("executed")  # made once for every request that runs an operation
        return default

    app = build_app(
        probe, context=context, cors_origins=(TRUSTED_ORIGIN,), cors_allow_credentials=True
    )
    # A preflight carries no body in a browser; this one carries the mutation it announces.
    mutation = json.dumps({"query": 'mutation { publish(room: "h21", text: "x") }'}).encode()
    answers: dict[str, tuple[int, dict[str, str]]] = {}
    async with serving(app) as port:
        for origin in (TRUSTED_ORIGIN, *FOREIGN_ORIGINS):
            headers = [("origin", origin), *PREFLIGHT[1:], ("content-type", "application/json")]
            status, got, _ = await request(port, "OPTIONS", "/graphql", headers, mutation)
            answers[origin] = (status, got)
        executed_by_preflights = probe.counts["executed"]
        # The control: the request the preflight announced does run, and is counted.
        status, post_headers, body = await post(port, mutation, [*JSON_HEADERS, PREFLIGHT[0]])
    assert executed_by_preflights == 0
    assert (status, json.loads(body)) == (200, {"data": {"publish": True}})
    assert probe.counts["executed"] == 1
    allowed_status, allowed = answers.pop(TRUSTED_ORIGIN)
    assert allowed_status == 204
    for answer in (allowed, post_headers):
        assert answer["access-control-allow-origin"] == TRUSTED_ORIGIN  # echoed, never "*"
        assert answer["access-control-allow-credentials"] == "true"
    for origin, (status, answer) in answers.items():
        assert status == 405, origin
        assert not [name for name in answer if name.startswith("access-control-")], origin


async def test_H21_preflight_from_an_allowlisted_origin_gets_204_with_allow_headers() -> None:
    async with serving(build_app(cors_origins=(TRUSTED_ORIGIN,))) as port:
        status, headers, _body = await request(port, "OPTIONS", "/graphql", PREFLIGHT)
        foreign = [(n, "https://evil.example" if n == "origin" else v) for n, v in PREFLIGHT]
        foreign_status, foreign_headers, _ = await request(port, "OPTIONS", "/graphql", foreign)
    assert (status, foreign_status) == (204, 405)
    assert headers["access-control-allow-origin"] == TRUSTED_ORIGIN
    assert "POST" in headers["access-control-allow-methods"]
    allowed = headers["access-control-allow-headers"].lower()
    assert "content-type" in allowed and "graphql-require-preflight" in allowed
    assert "origin" in headers.get("vary", "").lower()
    assert "access-control-allow-origin" not in foreign_headers


# --- WebSocket Origin (docs/limits.md; cross-site WebSocket hijacking) ---------------------


@pytest.mark.parametrize(
    "origin",
    ["https://evil.example", "null", "http://127.0.0.1:1", "https://trusted.example.evil.com"],
)
async def test_foreign_origin_is_refused_403_at_the_handshake(origin: str) -> None:
    probe = Probe()
    async with serving(build_app(probe, allowed_origins=(TRUSTED_ORIGIN,))) as port:
        with pytest.raises(Refused) as refused:
            await GraphQLSocket.connect(port, headers=(("origin", origin),))
    assert refused.value.status == 403
    assert probe.log == []


async def test_cross_site_websocket_hijacking_with_a_session_cookie_is_refused() -> None:
    seen: list[Any] = []

    async def on_connect(context: Any, params: Any) -> None:
        seen.append(context.request.header("cookie"))  # would authenticate by cookie

    app = build_app(on_connect=on_connect)
    hijack = (("origin", "https://evil.example"), ("cookie", "session=victim"))
    async with serving(app) as port:
        with pytest.raises(Refused) as refused:
            await GraphQLSocket.connect(port, headers=hijack)
        # the victim's own page (same host) with the same cookie is fine
        own = (("origin", f"http://127.0.0.1:{port}"), ("cookie", "session=victim"))
        socket = await GraphQLSocket.connect(port, headers=own)
        assert await socket.init() == {"type": "connection_ack"}
        await socket.close()
    assert refused.value.status == 403
    assert seen == ["session=victim"]  # only the same-origin connection got that far


@pytest.mark.parametrize("origin", [None, TRUSTED_ORIGIN, "same-host"])
async def test_same_host_allowlisted_or_absent_origin_is_accepted(origin: str | None) -> None:
    async with serving(build_app(allowed_origins=(TRUSTED_ORIGIN,))) as port:
        value = f"http://127.0.0.1:{port}" if origin == "same-host" else origin
        headers = () if value is None else (("origin", value),)
        socket = await GraphQLSocket.connect(port, headers=headers)
        assert await socket.init() == {"type": "connection_ack"}
        await socket.close()


async def test_origin_check_can_be_switched_off() -> None:
    async with serving(build_app(check_origin=False)) as port:
        socket = await GraphQLSocket.connect(port, headers=(("origin", "https://evil.example"),))
        assert await socket.init() == {"type": "connection_ack"}
        await socket.close()


# --- G09: one switch turns introspection and suggestions off ---------------------------------

INTROSPECTION = "{ __schema { queryType { name } } }"
TYPO = "{ helo }"


async def test_G09_introspection_off_over_http_rejects_and_hides_suggestions() -> None:
    async with serving(build_app(introspection=False)) as port:
        _s, _h, schema_body = await post(port, {"query": INTROSPECTION})
        _s, _h, typo_body = await post(port, {"query": TYPO})
        _s, _h, type_body = await post(port, {"query": '{ __type(name: "Query") { name } }'})
    for body in (schema_body, type_body):
        answer = json.loads(body)
        assert "data" not in answer and "introspection" in answer["errors"][0]["message"]
    assert "Did you mean" not in typo_body.decode()


async def test_G09_introspection_on_by_default_with_suggestions() -> None:
    async with serving(build_app()) as port:
        _s, _h, schema_body = await post(port, {"query": INTROSPECTION})
        _s, _h, typo_body = await post(port, {"query": TYPO})
    assert json.loads(schema_body) == {"data": {"__schema": {"queryType": {"name": "Query"}}}}
    assert "Did you mean" in typo_body.decode()


@pytest.mark.parametrize("subprotocol", ["graphql-transport-ws", "graphql-ws"])
async def test_G09_introspection_off_over_websocket(subprotocol: str) -> None:
    async with serving(build_app(introspection=False)) as port:
        socket = await GraphQLSocket.connect(port, subprotocol=subprotocol)
        await socket.init()
        message = subscribe if subprotocol == "graphql-transport-ws" else start
        await socket.send(message("1", INTROSPECTION))
        answer = await next_non_ka(socket)
        await socket.send(message("2", TYPO))
        typo = await next_non_ka(socket)
        await socket.close()
    assert answer["type"] == "error" and "introspection" in json.dumps(answer)
    assert typo["type"] == "error" and "Did you mean" not in json.dumps(typo)


async def next_non_ka(socket: GraphQLSocket) -> dict[str, Any]:
    while (message := await socket.receive())["type"] == "ka":
        pass
    return message


# --- error masking: HTTP, both WebSocket protocols, subscription events ----------------------


def secret_logs(caplog: pytest.LogCaptureFixture) -> int:
    return sum(1 for r in caplog.records if r.levelno >= logging.ERROR and SECRET in r.message)


async def test_mask_errors_over_http_hides_the_message_logs_it_once_keeps_graphql_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with serving(build_app(mask_errors=True)) as port:
        _s, _h, body = await post(port, {"query": "{ fail failOnPurpose }"})
    errors = {e["path"][0]: e for e in json.loads(body)["errors"]}
    assert errors["fail"]["message"] == "Internal server error"
    assert errors["failOnPurpose"]["message"] == "You may not"  # raised on purpose: kept
    assert errors["failOnPurpose"]["extensions"] == {"code": "FORBIDDEN"}
    assert SECRET not in body.decode()
    assert secret_logs(caplog) == 1


@pytest.mark.parametrize(
    ("settings", "shown"),
    [
        ({}, "Internal server error"),  # production mode is the default: masked
        ({"debug": True}, SECRET),
        ({"mask_errors": False}, SECRET),
        ({"debug": True, "mask_errors": True}, "Internal server error"),
    ],
)
async def test_messages_are_masked_unless_debug_or_masking_is_off(
    settings: dict[str, bool], shown: str
) -> None:
    async with serving(build_app(**settings)) as port:
        _s, _h, body = await post(port, {"query": "{ fail }"})
    assert json.loads(body)["errors"][0]["message"] == shown


async def test_mask_errors_over_graphql_transport_ws_query_event_and_source(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with serving(build_app(mask_errors=True)) as port:
        socket = await GraphQLSocket.connect(port)
        await socket.init()
        await socket.send(subscribe("q", "{ fail }"))
        query = await socket.receive()
        assert await socket.receive() == {"id": "q", "type": "complete"}
        await socket.send(subscribe("e", "subscription { brokenEvent { text broken } }"))
        events = [await socket.receive(), await socket.receive(), await socket.receive()]
        await socket.send(subscribe("s", "subscription { explode }"))
        source = [await socket.receive(), await socket.receive()]
        await socket.send({"type": "ping"})
        assert await socket.receive() == {"type": "pong"}  # no complete after the error
        await socket.close()
    assert query["payload"]["errors"][0]["message"] == "Internal server error"
    assert [e["type"] for e in events] == ["next", "next", "complete"]
    for event in events[:2]:
        assert event["payload"]["errors"][0]["message"] == "Internal server error"
    assert source[0] == {"id": "s", "type": "next", "payload": {"data": {"explode": 1}}}
    assert source[1] == {
        "id": "s",
        "type": "error",
        "payload": [{"message": "Internal server error"}],
    }
    assert SECRET not in json.dumps([query, events, source])
    assert secret_logs(caplog) == 4  # one query, two events, one source: each logged once


async def test_mask_errors_over_legacy_graphql_ws_query_event_and_source(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with serving(build_app(mask_errors=True)) as port:
        socket = await GraphQLSocket.connect(port, subprotocol="graphql-ws")
        await socket.init()
        await socket.send(start("q", "{ fail }"))
        query = await next_non_ka(socket)
        assert await next_non_ka(socket) == {"id": "q", "type": "complete"}
        await socket.send(start("e", "subscription { brokenEvent { text broken } }"))
        events = [await next_non_ka(socket) for _ in range(3)]
        await socket.send(start("s", "subscription { explode }"))
        source = [await next_non_ka(socket) for _ in range(2)]
        await socket.close()
    assert query["type"] == "data"
    assert query["payload"]["errors"][0]["message"] == "Internal server error"
    assert [e["type"] for e in events] == ["data", "data", "complete"]
    assert source[1]["type"] == "error"
    assert source[1]["payload"]["message"] == "Internal server error"
    assert SECRET not in json.dumps([query, events, source])
    assert secret_logs(caplog) == 4


async def test_on_connect_crash_is_masked_as_4500_unless_debug() -> None:
    async def on_connect(context: Any, params: Any) -> None:
        raise RuntimeError(SECRET)

    for debug, reason in ((False, "Internal server error"), (True, SECRET[:60])):
        async with serving(build_app(on_connect=on_connect, debug=debug)) as port:
            socket = await GraphQLSocket.connect(port)
            await socket.send({"type": "connection_init"})
            code, text = await socket.close_frame()
            await socket.aclose()
        assert code == 4500
        assert text.startswith(reason)


async def test_csrf_simple_content_types_and_mutation_over_get_do_not_execute() -> None:
    probe = Probe()
    mutation = {"query": 'mutation { publish(room: "r", text: "t") }'}
    async with serving(build_app(probe)) as port:
        for content_type in ("text/plain", "application/x-www-form-urlencoded"):
            status, _h, _b = await post(port, mutation, [("content-type", content_type)])
            assert status == 415
        target = "/graphql?query=" + quote('mutation { publish(room: "r", text: "t") }')
        status, answer_headers, _b = await request(port, "GET", target, JSON_HEADERS[1:])
        assert (status, answer_headers["allow"]) == (405, "POST")
    assert probe.log == []
