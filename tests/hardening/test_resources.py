"""Connection-level resources over the native server, on both backends: R04 (1,000
subscriptions on one connection, one event fanned out to all) and R05 (10,000
subscribe/complete cycles on one connection), counting live tasks with
``anyio.get_running_tasks()`` before, during and after."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from wsproto.events import CloseConnection

from anyql import Limits
from tests.hardening.app import Probe, build_app
from tests.hardening.clients import (
    GraphQLSocket,
    count_tasks,
    eventually,
    serving,
    start,
    subscribe,
)

pytestmark = pytest.mark.anyio

SUBSCRIPTIONS = 1_000
CYCLES = 10_000


def session_recorder(sessions: list[Any]) -> Any:
    """A context factory that keeps each WebSocket session (to look at its operations)."""

    def context(default: Any) -> Any:
        if default.connection is not None:
            sessions.append(default.connection._session)
        return default

    return context


@pytest.mark.parametrize("field", ["room", "sharedRoom"])
async def test_R04_thousand_subscriptions_get_one_event_each_and_leave_no_task(
    field: str,
) -> None:
    probe = Probe()
    # One event for 1,000 operations of one connection: the send buffer must hold them all,
    # or a shared hub (policy "close") would rightly close this connection as slow.
    limits = Limits(max_operations=SUBSCRIPTIONS, send_buffer_messages=2 * SUBSCRIPTIONS)
    app = build_app(probe, limits=limits)
    async with serving(app) as port:
        idle_server = count_tasks()
        socket = await GraphQLSocket.connect(port)
        await socket.init()
        idle_connection = count_tasks()
        query = f'subscription {{ {field}(room: "r04") }}'
        for first in range(0, SUBSCRIPTIONS, 100):  # 100 subscribes per write
            await socket.send_all([subscribe(str(n), query) for n in range(first, first + 100)])
        with anyio.fail_after(20):
            sources = 1 if field == "sharedRoom" else SUBSCRIPTIONS
            await wait_until_all_attached(app, probe, field, sources)
            await app.broadcast.publish("room:r04", "hello all")
            received = [await socket.receive() for _ in range(SUBSCRIPTIONS)]
        assert {m["id"] for m in received} == {str(n) for n in range(SUBSCRIPTIONS)}
        assert all(m["payload"] == {"data": {field: "hello all"}} for m in received)
        if field == "sharedRoom":  # no task per operation: the hub's one task calls them
            assert count_tasks() == idle_connection + 1
        else:  # one task per operation
            assert count_tasks() >= idle_connection + SUBSCRIPTIONS
        for first in range(0, SUBSCRIPTIONS, 100):
            await socket.send_all(
                [{"id": str(n), "type": "complete"} for n in range(first, first + 100)]
            )
        await socket.send({"type": "ping"})
        assert await socket.receive() == {"type": "pong"}  # no complete echoed before it
        await eventually(lambda: count_tasks() == idle_connection, within=10)
        await socket.close()
        await eventually(lambda: count_tasks() == idle_server, within=10)
    assert probe.counts["left:r04"] == sources


async def wait_until_all_attached(app: Any, probe: Probe, field: str, sources: int) -> None:
    await probe.wait_count("subscribed:r04", sources)
    if field == "sharedRoom":  # one source; wait until every subscriber joined its hub
        server = app.server
        await eventually(
            lambda: (
                sum(len(hub.subscribers) for hub in server.fanout.hubs.values()) == SUBSCRIPTIONS
            )
        )


async def test_R05_ten_thousand_subscribe_complete_cycles_leave_nothing_behind() -> None:
    probe = Probe()
    sessions: list[Any] = []
    app = build_app(probe, context=session_recorder(sessions))
    async with serving(app) as port:
        idle_server = count_tasks()
        socket = await GraphQLSocket.connect(port)
        await socket.init()
        idle_connection = count_tasks()
        query = 'subscription { idle(tag: "r05") }'
        batch = 500
        with anyio.fail_after(60):
            for first in range(0, CYCLES, batch):
                cycles: list[dict[str, Any]] = []
                for n in range(first, first + batch):
                    cycles += [subscribe(str(n), query), {"id": str(n), "type": "complete"}]
                await socket.send_all(cycles)
                await socket.send({"type": "ping"})
                assert await socket.receive() == {"type": "pong"}  # nothing else was sent
        (session,) = sessions
        assert session.operations == {}
        await eventually(lambda: count_tasks() == idle_connection, within=10)
        assert probe.counts["started:r05"] == probe.counts["finally:r05"]
        await socket.close()
        await eventually(lambda: count_tasks() == idle_server, within=10)


async def churning_client(port: int, number: int, rounds: int) -> None:
    """Connect ``rounds`` times; each time attach and detach shared subscriptions without
    reading the answers, then leave (half the time by dropping TCP) with frames in flight:
    the server's writer can then fail while its reader still holds unread subscribes."""
    legacy = number % 2 == 1
    protocol = "graphql-ws" if legacy else "graphql-transport-ws"
    begin = start if legacy else subscribe
    end = "stop" if legacy else "complete"
    for round_ in range(rounds):
        socket = await GraphQLSocket.connect(port, subprotocol=protocol)
        await socket.init()
        await socket.send(begin("keep", f'subscription {{ sharedRoom(room: "r{number % 3}") }}'))
        for n in range(2 + (number + round_) % 15):
            cycle = begin(f"c{n}", 'subscription { sharedRoom(room: "churn") }')
            await socket.send_all([cycle, {"id": f"c{n}", "type": end}])
        if round_ % 3 == 0:
            await socket.aclose()
        else:
            await socket.stream.send(socket.ws.send(CloseConnection(code=1000)))
            await anyio.sleep(0.01)
            await socket.aclose()


async def test_R05_shared_subscriptions_on_connections_that_leave_mid_churn_leave_no_hub() -> None:
    app = build_app(Probe())
    async with serving(app) as port:
        idle_server = count_tasks()
        with anyio.fail_after(60):
            async with anyio.create_task_group() as clients:
                for number in range(40):
                    clients.start_soon(churning_client, port, number, 15)
        server = app.server
        assert server is not None
        await eventually(lambda: not server.fanout.hubs and count_tasks() == idle_server)
