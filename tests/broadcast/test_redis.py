"""The Redis broker on the shared Redis (127.0.0.1:6379): plain pub/sub only.

Two ``Broadcast`` objects stand for two processes. Every channel name is unique to the test
run, so other users of the shared server neither disturb nor see these tests.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import coredis
import pytest
from coredis.patterns.pubsub import PubSub

from anyql.broadcast import Broadcast
from tests.broadcast.helpers import unique, wait_until_async

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

DEADLINE = 10.0


@asynccontextmanager
async def admin_client(url: str) -> AsyncIterator[coredis.Redis[str]]:
    async with coredis.Redis.from_url(url, decode_responses=True) as client:
        yield client


async def numsub(admin: coredis.Redis[str], channel: str) -> int:
    """How many connections Redis has subscribed to ``channel``."""
    return (await admin.pubsub_numsub(channel))[channel]


@pytest.fixture
def subscribe_commands(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts, per channel, the SUBSCRIBE commands coredis sends for any Broadcast."""
    counts: Counter[str] = Counter()
    original = PubSub.subscribe

    async def counting(self: PubSub[Any], *channels: Any, **handlers: Any) -> None:
        counts.update(c.decode() if isinstance(c, bytes) else c for c in channels)
        await original(self, *channels, **handlers)

    monkeypatch.setattr(PubSub, "subscribe", counting)
    return counts


async def test_one_redis_subscribe_per_channel_per_process(
    redis_url: str, subscribe_commands: Counter[str]
) -> None:
    channel, probe = unique("numsub"), unique("probe")
    with anyio.fail_after(DEADLINE):
        async with (
            admin_client(redis_url) as admin,
            Broadcast(redis_url) as process_a,
            Broadcast(redis_url) as process_b,
        ):
            async with AsyncExitStack() as first_two:
                for _ in range(2):
                    await first_two.enter_async_context(process_a.subscribe(channel))
                async with process_a.subscribe(channel) as last:
                    assert process_a.local_subscribers(channel) == 3
                    assert await numsub(admin, channel) == 1
                    async with process_b.subscribe(channel):
                        assert await numsub(admin, channel) == 2
                        await first_two.aclose()
                        # Confirming a later SUBSCRIBE proves the listener has applied the
                        # two departures: the channel must still be subscribed once.
                        async with process_a.subscribe(probe):
                            assert await numsub(admin, channel) == 2
                        await process_a.publish(channel, "still here")
                        assert await anext(last) == "still here"
                    await wait_until_async(lambda: _numsub_is(admin, channel, 1))
            await wait_until_async(lambda: _numsub_is(admin, channel, 0))
    assert subscribe_commands[channel] == 2  # once per Broadcast, however many subscribers


async def _numsub_is(admin: coredis.Redis[str], channel: str, expected: int) -> bool:
    return await numsub(admin, channel) == expected


async def test_messages_cross_between_processes(redis_url: str) -> None:
    channel = unique("cross")
    with anyio.fail_after(DEADLINE):
        async with (
            Broadcast(redis_url) as process_a,
            Broadcast(redis_url) as process_b,
            process_a.subscribe(channel) as in_a,
            process_b.subscribe(channel) as in_b,
        ):
            await process_a.publish(channel, {"from": "a"})
            await process_b.publish(channel, {"from": "b"})
            assert [await anext(in_a) for _ in range(2)] == [{"from": "a"}, {"from": "b"}]
            assert [await anext(in_b) for _ in range(2)] == [{"from": "a"}, {"from": "b"}]


async def test_group_send_from_another_process_reaches_local_members(redis_url: str) -> None:
    member = unique("member")
    prefix = unique("group") + ":"
    with anyio.fail_after(DEADLINE):
        async with (
            admin_client(redis_url) as admin,
            Broadcast(redis_url, group_prefix=prefix) as sender,
            Broadcast(redis_url, group_prefix=prefix) as receiver,
            receiver.subscribe(member) as stream,
        ):
            group_channel = receiver.group_channel("room")
            await receiver.group_add("room", member)
            await receiver.group_add("room", member)
            assert await numsub(admin, group_channel) == 1
            await sender.group_send("room", "hello")
            assert await anext(stream) == "hello"

            await receiver.group_discard("room", member)
            async with receiver.subscribe(unique("probe")):
                assert await numsub(admin, group_channel) == 1
            await receiver.group_discard("room", member)
            await wait_until_async(lambda: _numsub_is(admin, group_channel, 0))


async def test_resolver_generator_aclose_unsubscribes_from_redis(redis_url: str) -> None:
    channel = unique("resolver")

    async def resolver(broadcast: Broadcast) -> AsyncGenerator[Any, None]:
        async with broadcast.subscribe(channel) as stream:
            async for message in stream:
                yield message

    with anyio.fail_after(DEADLINE):
        async with admin_client(redis_url) as admin, Broadcast(redis_url) as broadcast:
            generator = resolver(broadcast)

            async def consume() -> None:
                assert await anext(generator) == "first"
                await generator.aclose()

            async with anyio.create_task_group() as task_group:
                task_group.start_soon(consume)
                # Once Redis counts the subscriber, a publish reaches it.
                await wait_until_async(lambda: _numsub_is(admin, channel, 1))
                await broadcast.publish(channel, "first")
            assert broadcast.local_subscribers(channel) == 0
            await wait_until_async(lambda: _numsub_is(admin, channel, 0))


async def test_a_message_that_is_not_json_is_dropped_with_a_warning(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    channel = unique("foreign")
    with anyio.fail_after(DEADLINE):
        async with (
            admin_client(redis_url) as admin,
            Broadcast(redis_url) as broadcast,
            broadcast.subscribe(channel) as stream,
        ):
            await admin.publish(channel, "not json {")
            await broadcast.publish(channel, "valid")
            assert await anext(stream) == "valid"
    assert any(
        r.levelno == logging.WARNING and "not JSON" in r.getMessage() for r in caplog.records
    )


async def test_a_slow_subscriber_does_not_hold_up_the_listener(redis_url: str) -> None:
    channel = unique("slow")
    count, buffer = 1000, 300
    with anyio.fail_after(DEADLINE):
        async with (
            Broadcast(redis_url, buffer=buffer) as broadcast,
            broadcast.subscribe(channel) as slow,
            broadcast.subscribe(channel) as fast,
        ):
            received: list[int] = []

            async def read_fast() -> None:
                async for message in fast:
                    received.append(message)
                    if message == count - 1:
                        return

            async with anyio.create_task_group() as task_group:
                task_group.start_soon(read_fast)
                for i in range(count):
                    await broadcast.publish(channel, i)
            assert received == list(range(count))
            assert slow.dropped == count - buffer
