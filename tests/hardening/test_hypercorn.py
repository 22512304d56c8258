"""The transport rows under hypercorn (ASGI), Trio and asyncio workers, in a subprocess
serving ``tests.hardening.app:app`` (the strict profile: masking on, introspection off,
Origin allow-list, 3 connections, 0.2 s operation timeout, a context factory that can be made
to crash). Each test's client runs on the backend of the server it talks to.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from tests.e2e.servers import RunningServer, running_server
from tests.hardening.app import CRASH, SECRET, TRUSTED_ORIGIN
from tests.hardening.clients import GraphQLSocket, Refused, post, start, subscribe
from tests.test_native_http import exchange

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

KINDS = ("hypercorn-trio", "hypercorn-asyncio")
GRAPHQL_RESPONSE = [
    ("content-type", "application/json"),
    ("accept", "application/graphql-response+json"),
]


@pytest.fixture(scope="module", params=KINDS)
def hypercorn(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    with running_server(request.param, target="tests.hardening.app:app") as server:
        yield server


@pytest.fixture
def anyio_backend(hypercorn: RunningServer) -> str:
    return hypercorn.kind.split("-")[1]


@pytest.fixture
def port(hypercorn: RunningServer) -> Iterator[int]:
    yield hypercorn.port
    assert hypercorn.process.poll() is None, "the server process must survive every test"


async def connect(port: int, **options: Any) -> GraphQLSocket:
    """Connect, retrying while the server still counts connections of earlier tests."""
    with anyio.fail_after(5):
        while True:
            try:
                return await GraphQLSocket.connect(port, **options)
            except Refused as refused:
                if refused.status != 503:
                    raise
                await anyio.sleep(0.02)


# --- Origin and connection limits ----------------------------------------------------------------


async def test_foreign_origin_and_cookie_hijack_get_403(port: int) -> None:
    for headers in (
        (("origin", "https://evil.example"),),
        (("origin", "https://evil.example"), ("cookie", "session=victim")),
    ):
        with pytest.raises(Refused) as refused:
            await GraphQLSocket.connect(port, headers=headers)
        assert refused.value.status == 403


@pytest.mark.parametrize("origin", [TRUSTED_ORIGIN, "same-host", None])
async def test_allowed_origins_are_accepted(port: int, origin: str | None) -> None:
    value = f"http://127.0.0.1:{port}" if origin == "same-host" else origin
    socket = await connect(port, headers=() if value is None else (("origin", value),))
    assert await socket.init() == {"type": "connection_ack"}
    await socket.close()


async def test_connections_beyond_the_limit_get_503(port: int) -> None:
    sockets = [await connect(port) for _ in range(3)]
    for socket in sockets:
        await socket.init()
    with pytest.raises(Refused) as refused:
        await GraphQLSocket.connect(port)
    assert refused.value.status == 503
    for socket in sockets:
        await socket.close()
    again = await connect(port)  # room again once the server saw them go
    await again.close()


# --- masking, introspection, timeouts, variables --------------------------------------------------


async def test_masked_errors_over_http_and_both_websocket_protocols(port: int) -> None:
    _s, _h, body = await post(port, {"query": "{ fail hello }"})
    assert json.loads(body)["errors"][0]["message"] == "Internal server error"
    socket = await connect(port)
    await socket.init()
    await socket.send(subscribe("1", "subscription { explode }"))
    frames = [await socket.receive(), await socket.receive()]
    await socket.close()
    legacy = await connect(port, subprotocol="graphql-ws")
    await legacy.init()
    await legacy.send(start("1", "subscription { brokenEvent { text broken } }"))
    events = [await skip_ka(legacy), await skip_ka(legacy)]
    await legacy.close()
    assert frames[1] == {
        "id": "1",
        "type": "error",
        "payload": [{"message": "Internal server error"}],
    }
    assert events[0]["payload"]["errors"][0]["message"] == "Internal server error"
    assert SECRET not in json.dumps([body.decode(), frames, events])


async def skip_ka(socket: GraphQLSocket) -> dict[str, Any]:
    while (message := await socket.receive())["type"] == "ka":
        pass
    return message


async def test_G09_introspection_is_off(port: int) -> None:
    _s, _h, body = await post(port, {"query": "{ __schema { queryType { name } } }"})
    _s, _h, typo = await post(port, {"query": "{ helo }"})
    assert "introspection" in json.loads(body)["errors"][0]["message"]
    assert "Did you mean" not in typo.decode()


async def test_G11_operation_timeout_over_http_and_websocket(port: int) -> None:
    timed_out = {"data": None, "errors": [{"message": "Operation timed out"}]}
    _s, _h, body = await post(port, {"query": "{ sleep(seconds: 30) }"})
    assert json.loads(body) == timed_out
    socket = await connect(port)
    await socket.init()
    await socket.send(subscribe("1", "{ sleep(seconds: 30) }"))
    assert await socket.receive() == {"id": "1", "type": "next", "payload": timed_out}
    await socket.close()


async def test_deeply_nested_variables_are_400(port: int) -> None:
    levels = 5_000
    node = b'{"child":' * levels + b"null" + b"}" * levels
    body = b'{"query":"query($n: Node) { depth(node: $n) }","variables":{"n":%s}}' % node
    status, _h, _b = await post(port, body, GRAPHQL_RESPONSE)
    shallow = b'{"query":"query($n: Node) { depth(node: $n) }","variables":{"n":%s}}' % (
        b'{"child":' * 900 + b"null" + b"}" * 900
    )
    shallow_status, _h, _b = await post(port, shallow, GRAPHQL_RESPONSE)
    assert (status, shallow_status) == (400, 400)


# --- H12, H20, W04, F08 ---------------------------------------------------------------------------


async def test_H12_body_over_the_cap_gets_413(port: int) -> None:
    status, _h, _b = await post(port, b"x" * (1024 * 1024 + 1))
    assert status == 413


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 9\r\nConnection: close\r\n\r\n{not json",
            400,
        ),
        (
            b"PATCH /graphql HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            405,
        ),
        (
            b"DELETE /graphql?operationId=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
            b"X-GraphQL-Event-Stream-Token: forged\r\nConnection: close\r\n\r\n",
            404,
        ),
        (b"GARBAGE\r\n\r\n", 400),  # hypercorn's own answer: anyql never sees it
    ],
    ids=["bad-json", "patch", "forged-token", "garbage"],
)
async def test_H20_error_bodies_carry_no_internals(port: int, raw: bytes, expected: int) -> None:
    responses = await exchange(port, raw)
    assert [status for status, _headers, _body in responses] == [expected]
    body = responses[0][2].decode("utf-8", "replace")
    for marker in ("Traceback", 'File "', ".py", "Error:"):
        assert marker not in body


async def test_W04_message_over_the_cap_closes_1009(port: int) -> None:
    socket = await connect(port)
    await socket.init()
    await socket.send("x" * (1024 * 1024 + 1))
    code, _reason = await socket.close_frame()
    await socket.aclose()
    assert code == 1009


async def test_W04_a_message_over_the_cap_once_inflated_closes_1009(port: int) -> None:
    socket = await connect(port, deflate=True)
    assert socket.extensions == ["permessage-deflate"]  # hypercorn accepts every offer
    await socket.init()
    await socket.send('{"type": "ping"' + " " * (1024 * 1024) + "}")  # ~1 KiB compressed
    code, _reason = await socket.close_frame()
    await socket.aclose()
    assert code == 1009


@pytest.mark.parametrize("subprotocol", ["graphql-ws", "graphql-transport-ws"])
async def test_F08_a_crash_inside_the_websocket_handler_leaves_the_server_serving(
    hypercorn: RunningServer, port: int, subprotocol: str
) -> None:
    logged = hypercorn.log.count(SECRET)
    crashed = await connect(port, subprotocol=subprotocol)
    await crashed.send({"type": "connection_init", "payload": {CRASH: True}})
    if subprotocol == "graphql-ws":  # connection_error, then 1011 (legacy protocol)
        masked = {"type": "connection_error", "payload": {"message": "Internal server error"}}
        assert await crashed.receive() == masked
        assert await crashed.close_frame() == (1011, "")
    else:
        assert await crashed.close_frame() == (4500, "Internal server error")
    await crashed.aclose()
    assert hypercorn.log.count(SECRET) == logged + 1  # the crash goes to the log, not the client
    socket = await connect(port, subprotocol=subprotocol)
    assert await socket.init() == {"type": "connection_ack"}
    await socket.close()
