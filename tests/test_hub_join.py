"""A resuming subscriber of a shared field reads its backlog privately, then joins the hub
(row D20): over WebSocket (both subprotocols) and SSE, with a hub already running and with
none, on a durable in-memory broadcast. Every event exactly once and in order; afterwards
one source serves everyone.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from anyql import Broadcast, Event, GraphQL, HTTPStream, Schema, resume_point
from anyql.testing import TestClient
from tests.test_resume_wire import Sink, request, ws_frames

pytestmark = pytest.mark.anyio

PROTOCOLS = pytest.mark.parametrize("subprotocol", ["graphql-transport-ws", "graphql-ws"])
QUERY = "subscription { ticks }"


def make_app() -> tuple[GraphQL, Broadcast, dict[str, Any]]:
    broadcast = Broadcast(durable=True)
    schema = Schema("type Query { hello: String } type Subscription { ticks: Int! }")
    sources: dict[str, Any] = {"open": 0, "started": 0}

    @schema.field("Subscription.ticks", shared=True)
    async def ticks(root: Any, info: Any) -> AsyncIterator[Event]:
        sources["open"] += 1
        sources["started"] += 1
        try:
            async with broadcast.events("ticks", after=resume_point(info)) as events:
                async for event in events:
                    yield event
        finally:
            sources["open"] -= 1
            changed = sources.pop("changed", None)
            if changed is not None:
                changed.set()

    return GraphQL(schema, broadcast=broadcast), broadcast, sources


class Socket:
    """One WebSocket operation's results, by number."""

    def __init__(self, ws: Any, subprotocol: str, id: str) -> None:
        self.ws, self.id = ws, id
        self.start, self.next, _ = ws_frames(subprotocol)

    async def subscribe(self, extensions: dict[str, Any] | None = None) -> None:
        payload: dict[str, Any] = {"query": QUERY}
        if extensions:
            payload["extensions"] = extensions
        await self.ws.send_json({"id": self.id, "type": self.start, "payload": payload})

    async def results(self, count: int) -> list[dict[str, Any]]:
        got = []
        with anyio.fail_after(10):
            while len(got) < count:
                message = await self.ws.receive_json()
                assert message["type"] == self.next, message
                got.append(message["payload"])
        return got


async def until_open(sources: dict[str, Any], count: int) -> None:
    """Wait until ``count`` sources are open (a private one closes once it has joined)."""
    with anyio.fail_after(10):
        while sources["open"] != count:
            await sources.setdefault("changed", anyio.Event()).wait()


def numbers(results: list[dict[str, Any]]) -> list[int]:
    return [result["data"]["ticks"] for result in results]


async def publish(broadcast: Broadcast, *values: int) -> None:
    for value in values:
        await broadcast.publish("ticks", value)


def hub_of(app: GraphQL) -> Any:
    assert app.server is not None
    hubs = list(app.server.fanout.hubs.values())
    assert len(hubs) == 1
    return hubs[0]


@PROTOCOLS
async def test_D20_a_resuming_subscriber_catches_up_then_joins_the_running_hub(
    subprotocol: str,
) -> None:
    app, broadcast, sources = make_app()
    async with (
        TestClient(app) as client,
        client.websocket(subprotocol=subprotocol) as first_ws,
        client.websocket(subprotocol=subprotocol) as second_ws,
    ):
        first = Socket(first_ws, subprotocol, "a")
        await first.subscribe()
        await broadcast.wait_for_subscribers("ticks")
        await publish(broadcast, 1, 2, 3)
        seen = await first.results(3)
        assert numbers(seen) == [1, 2, 3]
        await publish(broadcast, 4, 5)
        await first.results(2)

        second = Socket(second_ws, subprotocol, "b")
        await second.subscribe({"lastEventId": seen[1]["extensions"]["eventId"]})
        assert numbers(await second.results(3)) == [3, 4, 5]  # its backlog, privately
        await publish(broadcast, 6, 7, 8)
        assert numbers(await second.results(3)) == [6, 7, 8]
        assert numbers(await first.results(3)) == [6, 7, 8]
        await until_open(sources, 1)
        assert len(hub_of(app).subscribers) == 2
        await publish(broadcast, 9)
        assert numbers(await second.results(1)) == [9]


@PROTOCOLS
async def test_D20_resuming_subscribers_with_no_hub_start_one_and_join_it(
    subprotocol: str,
) -> None:
    app, broadcast, sources = make_app()
    async with TestClient(app) as client, client.websocket(subprotocol=subprotocol) as ws:
        token = await broadcast.publish("ticks", 0)
        await publish(broadcast, 1, 2)
        resumed = Socket(ws, subprotocol, "r")
        await resumed.subscribe({"lastEventId": token})
        assert numbers(await resumed.results(2)) == [1, 2]
        for n in range(3, 8):
            await publish(broadcast, n)
            assert numbers(await resumed.results(1)) == [n]
        hub = hub_of(app)
        assert list(hub.subscribers) and not hub.joiners
        assert sources["started"] == 2  # its own, and the hub's


async def test_D20_an_sse_subscriber_resumes_then_joins_the_hub() -> None:
    app, broadcast, sources = make_app()
    async with app.running(), anyio.create_task_group() as tasks:
        live = await app.handle_http(request(body={"query": QUERY}))
        assert isinstance(live, HTTPStream)
        live_sink = Sink()
        tasks.start_soon(live.body, live_sink)
        await broadcast.wait_for_subscribers("ticks")
        await publish(broadcast, 1, 2, 3)
        with anyio.fail_after(10):
            await live_sink.wait_for(b'"ticks":3')
        second_id = next(e["id"] for e in live_sink.events() if '"ticks":1' in e["data"])
        resumed = await app.handle_http(
            request(body={"query": QUERY}, headers=(("last-event-id", second_id),))
        )
        assert isinstance(resumed, HTTPStream)
        resumed_sink = Sink()
        tasks.start_soon(resumed.body, resumed_sink)
        with anyio.fail_after(10):
            await resumed_sink.wait_for(b'"ticks":3')
        await publish(broadcast, 4, 5)
        with anyio.fail_after(10):
            await resumed_sink.wait_for(b'"ticks":5')
        await until_open(sources, 1)
        await publish(broadcast, 6)
        with anyio.fail_after(10):
            await resumed_sink.wait_for(b'"ticks":6')
        tasks.cancel_scope.cancel()
    got = [json.loads(e["data"])["data"]["ticks"] for e in resumed_sink.events()]
    assert got == [2, 3, 4, 5, 6]


# -- review finding: a joiner blocked on a full send buffer (failed before its fix) ---------


class _Log:
    """A log of events every reader can read from any id (like a durable broadcast)."""

    def __init__(self) -> None:
        self.items: list[int] = []
        self.changed = anyio.Event()
        self.readers = 0

    def add(self, value: int) -> None:
        self.items.append(value)
        self.changed.set()
        self.changed = anyio.Event()

    async def read(self, after: str | None) -> AsyncIterator[Event]:
        self.readers += 1
        index = len(self.items) if after is None else int(after) + 1
        while True:
            while index < len(self.items):
                yield Event(self.items[index], str(index))
                index += 1
            await self.changed.wait()


async def _blocked_joiner(resume_from: int) -> tuple[list[int], Any] | None:
    """Subscriber A live on the hub, B resuming from ``resume_from`` with a send buffer of
    4 and a client that reads nothing: None unless B's private run is then blocked
    emitting event 19; else what B gets of 20 after reading, and B's close frame."""
    from contextlib import AsyncExitStack

    from anyql import Limits
    from tests.memory_socket import session
    from tests.test_fanout import until

    log = _Log()
    schema = Schema("type Query { h: Int } type Subscription { ticks: Int! }")

    @schema.field("Subscription.ticks", shared=True)
    async def ticks(root: Any, info: Any) -> AsyncIterator[Event]:
        async for event in log.read(resume_point(info)):
            yield event

    app = GraphQL(schema, limits=Limits(send_buffer_messages=4))
    subscribe: dict[str, Any] = {"id": "a", "type": "subscribe", "payload": {"query": QUERY}}
    async with app.running() as handle, AsyncExitStack() as stack:
        a = await stack.enter_async_context(session(app))
        await a.init()
        await a.send(subscribe)
        await until(lambda: log.readers == 1)
        hub = next(iter(handle.fanout.hubs.values()))
        for value in range(20):
            log.add(value)
        for value in range(20):
            assert (await a.receive())["payload"]["data"]["ticks"] == value
        b = await stack.enter_async_context(session(app, client_buffer=0))
        await b.send({"type": "connection_init"})
        assert (await b.receive())["type"] == "connection_ack"
        resuming = {**subscribe["payload"], "extensions": {"lastEventId": str(resume_from)}}
        await b.send({"id": "b", "type": "subscribe", "payload": resuming})
        await until(lambda: bool(hub.joiners))
        joiner = next(iter(hub.joiners))
        for _ in range(500):
            await anyio.lowlevel.checkpoint()
        if (joiner.last, joiner.emitting) != ("19", True):
            b._from_server.close()
            b.socket._outgoing.close()
            return None
        log.add(20)
        assert (await a.receive())["payload"]["data"]["ticks"] == 20
        for _ in range(500):
            await anyio.lowlevel.checkpoint()
        got: list[int] = []
        if b.socket.close_frame is None:
            with anyio.fail_after(10):
                while not got or got[-1] != 20:
                    got.append((await b.receive())["payload"]["data"]["ticks"])
        close = b.socket.close_frame
        b._from_server.close()
        b.socket._outgoing.close()
        return got, close


async def test_D20_a_joiner_blocked_on_a_full_send_buffer_is_not_closed_as_slow() -> None:
    for resume_from in range(18, 0, -1):
        outcome = await _blocked_joiner(resume_from)
        if outcome is not None:
            break
    else:
        pytest.fail("no resume point left the private run blocked on a full buffer")
    got, close = outcome
    assert close is None  # was (1008, "Slow consumer") when it joined mid-emission
    assert got == list(range(resume_from + 1, 21))
