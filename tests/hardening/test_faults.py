"""Faults in subscription sources and dead peers, over the native server on both backends:
F02 (a source that never yields), F05 (slow and quick cleanups run together), F06 (a
cleanup that raises), P38/P39 (WebSocket keep-alive on and off)."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest

from anyql import Limits
from tests.hardening.app import Probe, build_app
from tests.hardening.clients import GraphQLSocket, post, serving, subscribe

pytestmark = pytest.mark.anyio


def disconnect_recorder(probe: Probe) -> Any:
    async def on_disconnect(context: Any) -> None:
        probe.mark("disconnected")

    return on_disconnect


async def test_F02_complete_cancels_a_source_that_never_yields_and_frees_the_id() -> None:
    probe = Probe()
    async with serving(build_app(probe)) as port:
        socket = await GraphQLSocket.connect(port)
        await socket.init()
        await socket.send(subscribe("1", 'subscription { idle(tag: "f02") }'))
        await probe.event("started:f02").wait()
        await socket.send({"id": "1", "type": "complete"})
        with anyio.fail_after(1):
            await probe.event("finally:f02").wait()
        await socket.send(subscribe("1", "{ hello }"))  # the id is free at once: no 4409
        answer = [await socket.receive(), await socket.receive()]
        await socket.close()
    assert answer == [  # nothing for the completed operation, not even a complete
        {"id": "1", "type": "next", "payload": {"data": {"hello": "world"}}},
        {"id": "1", "type": "complete"},
    ]


@pytest.mark.parametrize("abrupt", [True, False], ids=["tcp-reset", "close-frame"])
async def test_F05_slow_and_quick_cleanups_run_concurrently_before_on_disconnect(
    abrupt: bool,
) -> None:
    probe = Probe()
    app = build_app(probe, on_disconnect=disconnect_recorder(probe))
    async with serving(app) as port:
        socket = await GraphQLSocket.connect(port)
        await socket.init()
        for tag, partner in (("a", "b"), ("b", "a"), ("c", "c")):
            query = f'subscription {{ stubborn(tag: "{tag}", partner: "{partner}") }}'
            await socket.send(subscribe(tag, query))
        for _ in range(3):
            assert (await socket.receive())["type"] == "next"
        await (socket.aclose() if abrupt else socket.close())
        with anyio.fail_after(10):
            await probe.event("disconnected").wait()
    # "a" and "b" each wait for the other's cleanup: both finish only if run together
    finals = [entry for entry in probe.log if entry.startswith(("finally", "disconnected"))]
    assert sorted(finals[:3]) == ["finally:a", "finally:b", "finally:c"]
    assert finals[3:] == ["disconnected"]


async def test_F06_a_cleanup_that_raises_is_logged_and_the_rest_is_cleaned_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    probe = Probe()
    app = build_app(probe, on_disconnect=disconnect_recorder(probe))
    async with serving(app) as port:
        socket = await GraphQLSocket.connect(port)
        await socket.init()
        await socket.send(subscribe("bad", "subscription { faulty }"))
        assert (await socket.receive())["type"] == "next"
        await socket.send(subscribe("good", 'subscription { idle(tag: "f06") }'))
        await probe.event("started:f06").wait()
        await socket.aclose()
        with anyio.fail_after(10):
            await probe.event("disconnected").wait()
        status, _h, _b = await post(port, {"query": "{ hello }"})  # the server is fine
        again = await GraphQLSocket.connect(port)
        assert await again.init() == {"type": "connection_ack"}
        await again.close()
    assert status == 200
    assert {"faulty cleanup", "finally:f06", "disconnected"} <= set(probe.log)
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert failures, "the failing cleanup is logged"
    assert all("cleanup failed on purpose" in repr(r.exc_info) for r in failures)


async def test_P38_no_pong_within_the_timeout_drops_the_connection_and_cleans_up() -> None:
    probe = Probe()
    limits = Limits(keep_alive_interval=0.05, pong_timeout=0.05)
    async with serving(build_app(probe, limits=limits)) as port:
        socket = await GraphQLSocket.connect(port, answer_pings=False)
        await socket.init()
        await socket.send(subscribe("1", 'subscription { idle(tag: "p38") }'))
        await probe.event("started:p38").wait()
        with anyio.fail_after(5):
            code, _reason = await socket.close_frame()
            await probe.event("finally:p38").wait()
        await socket.aclose()
    assert socket.pings >= 1
    assert code == 1006  # terminated: no close frame, as graphql-ws does


@pytest.mark.parametrize(("interval", "pinged"), [(0.0, False), (0.05, True)])
async def test_P39_keep_alive_disabled_sends_no_pings(interval: float, pinged: bool) -> None:
    limits = Limits(keep_alive_interval=interval, pong_timeout=1.0)
    async with serving(build_app(limits=limits)) as port:
        socket = await GraphQLSocket.connect(port)
        await socket.init()
        await anyio.sleep(0.3)  # what is measured is what happens during this time
        await socket.send({"type": "ping"})
        assert await socket.receive() == {"type": "pong"}  # reading it also answers pings
        await socket.close()
    assert (socket.pings > 0) is pinged
