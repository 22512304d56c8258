"""Connection-level resources over the native server, on both backends: R04 (1,000
subscriptions on one connection, one event fanned out to all) and R05 (10,000
subscribe/complete cycles on one connection), counting live tasks with
``anyio.get_running_tasks()`` before, during and after."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from anyql import Limits
from tests.hardening.app import Probe, build_app
from tests.hardening.clients import (
    GraphQLSocket,
    count_tasks,
    eventually,
    serving,
    subscribe,
)

pytestmark = pytest.mark.anyio

SUBSCRIPTIONS = 1_000
CYCLES = 10_000


def session_recorder(sessions: list[Any]) -> Any:
    """A context factory that keeps each WebSocket session (to look at its operations)."""

    def context(default: Any) -> Any:
        if default.connection is not None:
            sessions.append(default.connection)
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
