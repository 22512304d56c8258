"""The in-memory broker: overflow policies (F14), timeouts, configuration and lifecycle."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import anyio.abc
import pytest

from anyql.broadcast import Broadcast, BroadcastError, ChannelSubscription, SubscriberOverflow

pytestmark = pytest.mark.anyio

PUBLISHES = 10_000
BUFFER = 256


def overflow_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "anyql.broadcast"
        and r.levelno == logging.WARNING
        and "slow broadcast subscriber" in r.getMessage()
    ]


async def drain(stream: ChannelSubscription, count: int) -> list[Any]:
    return [await anext(stream) for _ in range(count)]


async def test_F14_drop_oldest_publisher_never_blocks_on_a_subscriber_that_never_reads(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with (
        Broadcast(buffer=BUFFER, overflow="drop_oldest") as broadcast,
        broadcast.subscribe("slow") as slow,
    ):
        with anyio.fail_after(30):
            for i in range(PUBLISHES):
                await broadcast.publish("slow", i)
        assert slow.dropped == PUBLISHES - BUFFER
        assert await drain(slow, BUFFER) == list(range(PUBLISHES - BUFFER, PUBLISHES))
    assert len(overflow_warnings(caplog)) == 1


async def test_F14_drop_newest_keeps_the_first_messages() -> None:
    async with (
        Broadcast(buffer=BUFFER, overflow="drop_newest") as broadcast,
        broadcast.subscribe("slow") as slow,
    ):
        with anyio.fail_after(30):
            for i in range(PUBLISHES):
                await broadcast.publish("slow", i)
        assert slow.dropped == PUBLISHES - BUFFER
        assert await drain(slow, BUFFER) == list(range(BUFFER))
        await broadcast.publish("slow", "room again")
        assert await anext(slow) == "room again"


async def test_F14_close_ends_the_slow_stream_with_an_error_and_unregisters_it() -> None:
    async with (
        Broadcast(buffer=BUFFER, overflow="close") as broadcast,
        broadcast.subscribe("slow") as slow,
    ):
        with anyio.fail_after(30):
            for i in range(PUBLISHES):
                await broadcast.publish("slow", i)
        # The buffered messages and the one that did not fit are lost; later ones never
        # reached the stream because it was unregistered at the overflow.
        assert slow.dropped == BUFFER + 1
        assert broadcast.local_subscribers("slow") == 0
        with pytest.raises(SubscriberOverflow):
            await anext(slow)
        with pytest.raises(SubscriberOverflow):
            await anext(slow)


async def test_F14_a_slow_subscriber_does_not_slow_a_fast_one() -> None:
    received: list[int] = []
    async with Broadcast(buffer=BUFFER) as broadcast, broadcast.subscribe("ch") as slow:

        async def fast_reader(*, task_status: anyio.abc.TaskStatus[None]) -> None:
            async with broadcast.subscribe("ch") as fast:
                task_status.started()
                async for message in fast:
                    received.append(message)
                    if message == PUBLISHES - 1:
                        assert fast.dropped == 0
                        return

        with anyio.fail_after(30):
            async with anyio.create_task_group() as task_group:
                await task_group.start(fast_reader)
                for i in range(PUBLISHES):
                    await broadcast.publish("ch", i)
        assert received == list(range(PUBLISHES))
        assert slow.dropped == PUBLISHES - BUFFER


async def test_F14_overflow_is_logged_once_per_burst(caplog: pytest.LogCaptureFixture) -> None:
    async with Broadcast(buffer=2) as broadcast, broadcast.subscribe("ch") as stream:
        for i in range(5):
            await broadcast.publish("ch", i)
        assert len(overflow_warnings(caplog)) == 1
        assert await drain(stream, 2) == [3, 4]
        for i in range(5, 10):
            await broadcast.publish("ch", i)
        assert stream.dropped == 6
        records = overflow_warnings(caplog)
        assert len(records) == 2
        assert "4 message(s) dropped so far" in records[-1].getMessage()  # at the burst start


@pytest.mark.autojump
async def test_timeout_raises_when_no_message_arrives_and_the_stream_stays_usable() -> None:
    async with Broadcast() as broadcast, broadcast.subscribe("quiet", timeout=0.05) as stream:
        with pytest.raises(TimeoutError):
            await anext(stream)
        await broadcast.publish("quiet", "late")
        assert await anext(stream) == "late"


@pytest.mark.autojump
async def test_timeout_ends_an_async_for_loop_of_a_silent_channel() -> None:
    seen: list[Any] = []
    async with Broadcast() as broadcast, broadcast.subscribe("ch", timeout=0.05) as stream:
        await broadcast.publish("ch", 1)
        with pytest.raises(TimeoutError):
            async for message in stream:
                seen.append(message)
    assert seen == [1]


@pytest.mark.autojump
async def test_timeout_is_per_message_not_per_stream() -> None:
    async with Broadcast() as broadcast, broadcast.subscribe("ch", timeout=0.1) as stream:

        async def publish_slowly() -> None:
            for i in range(4):  # 0.16 s in all: more than one timeout, less than one each
                await anyio.sleep(0.04)
                await broadcast.publish("ch", i)

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(publish_slowly)
            assert await drain(stream, 4) == [0, 1, 2, 3]


async def test_message_that_is_not_json_raises_type_error() -> None:
    async with Broadcast() as broadcast:
        with pytest.raises(TypeError):
            await broadcast.publish("ch", object())
        with pytest.raises(TypeError):
            await broadcast.group_send("g", {1, 2})


async def test_using_a_broadcast_that_is_not_running_raises_runtime_error() -> None:
    broadcast = Broadcast()
    with pytest.raises(RuntimeError, match="not running"):
        await broadcast.publish("ch", 1)
    with pytest.raises(RuntimeError, match="not running"):
        async with broadcast.subscribe("ch"):
            pass
    with pytest.raises(RuntimeError, match="not running"):
        await broadcast.group_add("g", "ch")
    assert not broadcast.connected


async def test_a_broadcast_runs_once_at_a_time_and_can_run_again() -> None:
    broadcast = Broadcast()
    async with broadcast:
        assert broadcast.connected
        with pytest.raises(RuntimeError, match="already running"):
            await broadcast.__aenter__()
    async with broadcast, broadcast.subscribe("ch") as stream:
        await broadcast.publish("ch", "second run")
        assert await anext(stream) == "second run"


async def test_a_subscription_is_entered_once() -> None:
    async with Broadcast() as broadcast:
        subscription = broadcast.subscribe("ch")
        async with subscription:
            with pytest.raises(RuntimeError, match="entered only once"):
                await subscription.__aenter__()


async def test_stream_ends_after_buffered_messages_when_the_broadcast_stops() -> None:
    broadcast = Broadcast()
    async with broadcast:
        subscription = broadcast.subscribe("ch")
        stream = await subscription.__aenter__()
        await broadcast.publish("ch", "kept")
    assert [message async for message in stream] == ["kept"]
    await subscription.__aexit__(None, None, None)


def test_broadcast_error_family() -> None:
    assert issubclass(SubscriberOverflow, BroadcastError)


@pytest.mark.parametrize(
    ("args", "options"),
    [
        (("http://example.com",), {}),
        ((None,), {"buffer": 0}),
        ((None,), {"overflow": "block"}),
        ((None,), {"publish_timeout": 0}),
    ],
)
def test_bad_configuration_is_rejected(args: tuple[Any, ...], options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Broadcast(*args, **options)


def test_subscribe_needs_valid_channels() -> None:
    broadcast = Broadcast()
    with pytest.raises(ValueError):
        broadcast.subscribe()
    with pytest.raises(ValueError):
        broadcast.subscribe("")
    with pytest.raises(TypeError):
        broadcast.subscribe(b"bytes")  # type: ignore[arg-type]


def test_memory_and_redis_urls_are_accepted_without_connecting() -> None:
    assert "memory" in repr(Broadcast("memory://"))
    assert "redis" in repr(Broadcast("redis://127.0.0.1:1/0"))
    assert Broadcast().group_channel("room") == "group:room"
    assert Broadcast(group_prefix="g/").group_channel("room") == "g/room"
