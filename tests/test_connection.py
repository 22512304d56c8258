"""The public connection object resolvers get (``info.context.connection``): who it is,
its parameters, and a synchronous, idempotent ``close`` that server code may call from a
resolver running on that very connection; on both subprotocols and both backends. The
expiry (row P40) and ``close`` also over real TCP, on the native server and under
hypercorn (ASGI).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest
from wsproto.events import CloseConnection

from anyql import Accepted, Connection, ConnectionRejected, GraphQL, Schema
from anyql.testing import TestClient, WebSocketClosed
from tests.hardening.clients import GraphQLSocket, subscribe
from tests.hardening.clients import serving as native_serving
from tests.in_process import hypercorn_serving

pytestmark = pytest.mark.anyio

BOTH = pytest.mark.parametrize("subprotocol", ["graphql-transport-ws", "graphql-ws"])
SDL = """
type Query { whoami: String!  kick(code: Int!, reason: String!): Boolean! }
type Subscription { watch: Int! }
"""


class Probe:
    def __init__(self) -> None:
        self.connections: list[Any] = []
        self.finally_ran = anyio.Event()


def make_app(probe: Probe) -> GraphQL:
    schema = Schema(SDL)

    @schema.field("Query.whoami")
    def whoami(root: Any, info: Any) -> str:
        connection = info.context.connection
        probe.connections.append(connection)
        if connection is None:
            return "http"
        return f"{connection.subprotocol} {dict(connection.connection_params)}"

    @schema.field("Query.kick")
    def kick(root: Any, info: Any, code: int, reason: str) -> bool:
        info.context.connection.close(code, reason)
        info.context.connection.close(4999, "ignored: the first close wins")
        return True

    @schema.field("Subscription.watch")
    async def watch(root: Any, info: Any) -> AsyncIterator[int]:
        try:
            yield 0
            await anyio.sleep_forever()
        finally:
            probe.finally_ran.set()

    return GraphQL(schema)


@BOTH
async def test_resolvers_see_the_connection_and_its_parameters(subprotocol: str) -> None:
    probe = Probe()
    async with TestClient(make_app(probe)) as client:
        assert await client.query("{ whoami }") == {"data": {"whoami": "http"}}
        async with client.websocket(
            subprotocol=subprotocol, connection_params={"token": "t"}
        ) as socket:
            answer = await socket.query("{ whoami }")
            assert await socket.query("{ whoami }") == answer
    assert answer == {"data": {"whoami": f"{subprotocol} {{'token': 't'}}"}}
    http, first, second = probe.connections
    assert http is None
    assert isinstance(first, Connection) and first is second  # one object per connection
    assert first.id.startswith("ws-")
    with pytest.raises(TypeError):
        first.connection_params["token"] = "changed"  # type: ignore[index]


@BOTH
async def test_a_resolver_closes_its_own_connection_and_operations_are_cleaned_up(
    subprotocol: str,
) -> None:
    probe = Probe()
    async with (
        TestClient(make_app(probe)) as client,
        client.websocket(subprotocol=subprotocol) as socket,
        socket.subscribe("subscription { watch }") as watching,
    ):
        assert await anext(watching) == {"data": {"watch": 0}}
        await socket.send_json(
            {
                "id": "kick",
                "type": "start" if subprotocol == "graphql-ws" else "subscribe",
                "payload": {"query": '{ kick(code: 4000, reason: "token expired") }'},
            }
        )
        assert await socket.wait_closed() == (4000, "token expired")
        with pytest.raises(WebSocketClosed):
            await anext(watching)
        await probe.finally_ran.wait()


async def test_close_refuses_codes_a_server_may_not_send() -> None:
    closed: list[tuple[int, str]] = []
    connection = Connection(
        "graphql-transport-ws", {}, lambda code, reason: closed.append((code, reason))
    )
    for code in (999, 1001, 1006, 2999, 5000):
        with pytest.raises(ValueError, match="close code must be 1000 or 3000-4999"):
            connection.close(code)
    connection.close()
    connection.close(3000, "x")
    assert closed == [(1000, ""), (3000, "x")]


@BOTH
async def test_on_disconnect_runs_for_a_refused_connection_too(subprotocol: str) -> None:
    """A deliberate choice (docs/authentication.md): what on_connect took before refusing
    can be given back in one place."""
    seen: list[str] = []

    async def on_connect(context: Any, params: Any) -> None:
        context.state["slot"] = "taken"
        raise ConnectionRejected({"message": "no"})

    async def on_disconnect(context: Any) -> None:
        seen.append(context.state["slot"])

    schema = Schema("type Query { ok: Boolean }")
    app = GraphQL(schema, on_connect=on_connect, on_disconnect=on_disconnect)
    async with TestClient(app) as client:
        with pytest.raises(WebSocketClosed):
            async with client.websocket(subprotocol=subprotocol):
                pass
    assert seen == ["taken"]


@BOTH
@pytest.mark.autojump
async def test_P40_a_connection_whose_credentials_expire_is_closed_4403_and_cleaned_up(
    subprotocol: str, anyio_backend_name: str
) -> None:
    lifetime = 60.0 if anyio_backend_name == "trio" else 0.2  # Trio: the mock clock jumps
    probe = Probe()
    app = make_app(probe)

    async def on_connect(context: Any, params: Any) -> Accepted:
        return Accepted({"user": "ann"}, expires_at=time.time() + lifetime)

    app.on_connect = on_connect
    async with (
        TestClient(app) as client,
        client.websocket(subprotocol=subprotocol) as socket,
    ):
        assert socket.ack_payload == {"user": "ann"}
        started = anyio.current_time()
        async with socket.subscribe("subscription { watch }") as watching:
            assert await anext(watching) == {"data": {"watch": 0}}
            assert await socket.wait_closed() == (4403, "Connection expired")
        assert anyio.current_time() - started >= lifetime * 0.9
        await probe.finally_ran.wait()


@pytest.mark.parametrize(
    ("expires_at", "error"),
    [
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        (datetime.now(UTC), TypeError),  # what a JWT library may hand over
        ("1700000000", TypeError),
        (True, TypeError),
    ],
)
async def test_P40_an_expiry_that_is_not_a_time_is_refused_and_the_connection_closed_4500(
    expires_at: Any, error: type[Exception]
) -> None:
    """A bad ``expires_at`` is an error of ``on_connect`` (4500, logged), raised where it is
    made; it used to crash the session outside its error handling (1011, or an error that
    reached hypercorn)."""
    with pytest.raises(error, match="expires_at"):
        Accepted({}, expires_at=expires_at)
    app = make_app(Probe())

    async def on_connect(context: Any, params: Any) -> Accepted:
        return Accepted({"user": "ann"}, expires_at=expires_at)

    app.on_connect = on_connect
    async with TestClient(app) as client, client.websocket(init=False) as socket:
        await socket.send_json({"type": "connection_init"})
        assert await socket.wait_closed() == (4500, "Internal server error")


async def test_without_an_expiry_accepted_only_carries_the_payload() -> None:
    app = make_app(Probe())

    async def on_connect(context: Any, params: Any) -> Accepted:
        return Accepted({"user": "bob"})

    app.on_connect = on_connect
    async with TestClient(app) as client, client.websocket() as socket:
        assert socket.ack_payload == {"user": "bob"}
        assert await socket.query("{ whoami }") == {"data": {"whoami": "graphql-transport-ws {}"}}


# --- real servers: the native one and hypercorn (ASGI) -----------------------------------

SERVERS = pytest.mark.parametrize("server", ["native", "hypercorn"])


def serving(server: str, app: GraphQL, backend: str) -> Any:
    return native_serving(app) if server == "native" else hypercorn_serving(app, backend)


async def close_after_messages(socket: GraphQLSocket) -> tuple[int, str]:
    """Read until the server's close frame, skipping the messages before it."""
    while True:
        event = await socket.event()
        if isinstance(event, CloseConnection):
            return event.code, event.reason or ""


@SERVERS
async def test_P40_credentials_expire_on_real_servers(server: str, anyio_backend_name: str) -> None:
    """A real lifetime (the mock clock cannot drive real sockets): 4403, then cleanup."""
    probe = Probe()
    app = make_app(probe)

    async def on_connect(context: Any, params: Any) -> Accepted:
        return Accepted({"user": "ann"}, expires_at=time.time() + 0.3)

    app.on_connect = on_connect
    async with serving(server, app, anyio_backend_name) as port:
        socket = await GraphQLSocket.connect(port)
        with anyio.fail_after(10):
            assert await socket.init() == {"type": "connection_ack", "payload": {"user": "ann"}}
            await socket.send(subscribe("1", "subscription { watch }"))
            assert (await socket.receive())["payload"] == {"data": {"watch": 0}}
            assert await socket.close_frame() == (4403, "Connection expired")
            await probe.finally_ran.wait()
        await socket.aclose()


@SERVERS
async def test_a_resolver_closes_its_connection_on_real_servers(
    server: str, anyio_backend_name: str
) -> None:
    probe = Probe()
    async with serving(server, make_app(probe), anyio_backend_name) as port:
        socket = await GraphQLSocket.connect(port)
        with anyio.fail_after(10):
            assert (await socket.init())["type"] == "connection_ack"
            await socket.send(subscribe("1", "subscription { watch }"))
            assert (await socket.receive())["payload"] == {"data": {"watch": 0}}
            await socket.send(subscribe("kick", '{ kick(code: 4000, reason: "token expired") }'))
            assert await close_after_messages(socket) == (4000, "token expired")
            await probe.finally_ran.wait()
        await socket.aclose()
