"""What operators see in the log: a WebSocket refused for ``max_connections`` with the
peer's address, and a failing subscription source named by its field (not ``<root>``)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from anyql import GraphQL, Limits, Schema
from anyql.testing import TestClient, WebSocketRejected
from anyql.types import RequestInfo

pytestmark = pytest.mark.anyio


def make_app(**settings: Any) -> GraphQL:
    schema = Schema("type Query { ok: Boolean } type Subscription { broken: Int! }")

    @schema.field("Subscription.broken")
    async def broken(root: Any, info: Any) -> AsyncIterator[int]:
        yield 1
        raise RuntimeError("the feed went away")

    return GraphQL(schema, **settings)


async def test_a_refusal_for_max_connections_is_logged_with_the_peer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = make_app(limits=Limits(max_connections=1))
    with caplog.at_level(logging.WARNING, logger="anyql"):
        async with TestClient(app) as client, client.websocket():
            with pytest.raises(WebSocketRejected):
                async with client.websocket():
                    pass
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1
    assert warned[0].startswith("refused a WebSocket from ")
    assert warned[0].endswith("max_connections (1) reached")


async def test_a_failing_source_is_logged_by_its_field(caplog: pytest.LogCaptureFixture) -> None:
    async with (
        TestClient(make_app()) as client,
        client.websocket() as socket,
        socket.subscribe("subscription { broken }") as results,
    ):
        assert [result async for result in results] == [
            {"data": {"broken": 1}},
            {"errors": [{"message": "Internal server error"}]},
        ]
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert logged == ["RuntimeError at the source of Subscription.broken: the feed went away"]


@pytest.mark.autojump
@pytest.mark.parametrize("transport", ["websocket", "http"])
async def test_an_operation_cancelled_by_the_timeout_is_logged_with_the_peer(
    transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    schema = Schema("type Query { slow: Int }")

    @schema.field("Query.slow")
    async def slow(root: Any, info: Any) -> int:
        await anyio.sleep(3600)
        return 1

    app = GraphQL(schema, limits=Limits(operation_timeout=0.05))
    with caplog.at_level(logging.WARNING, logger="anyql"):
        async with TestClient(app) as client:
            if transport == "http":
                answer = await client.query("query Slow { slow }")
            else:
                async with client.websocket() as socket:
                    answer = await socket.query("query Slow { slow }")
    assert answer == {"data": None, "errors": [{"message": "Operation timed out"}]}
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1
    assert warned[0].startswith("cancelled query 'Slow' from ")
    assert warned[0].endswith("operation_timeout (0.05 s) reached")


async def test_handshakes_that_race_past_max_connections_are_closed_1013(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from tests.memory_socket import PEER, MemorySocket

    app = make_app(limits=Limits(max_connections=1))
    info = RequestInfo(method="GET", path="/graphql", headers=(("host", "t"),), client=PEER)
    async with app.running(), anyio.create_task_group() as tasks:
        # Both pass the handshake's check before either session counts itself.
        assert app.websocket_handshake(info) is None
        assert app.websocket_handshake(info) is None
        sockets = []
        for _ in range(2):
            to_server, server_in = anyio.create_memory_object_stream[str | bytes](10)
            server_out, from_server = anyio.create_memory_object_stream[str](10)
            socket = MemorySocket("graphql-transport-ws", server_in, server_out)
            sockets.append((socket, to_server, from_server))
        first, second = sockets
        tasks.start_soon(app.serve_websocket, first[0], info)
        await anyio.wait_all_tasks_blocked()
        with caplog.at_level(logging.WARNING, logger="anyql"):
            await app.serve_websocket(second[0], info)
        assert second[0].close_frame == (1013, "Too many connections")
        assert first[0].close_frame is None
        await first[1].aclose()  # the first client leaves
    assert any("max_connections (1) reached" in r.getMessage() for r in caplog.records)
