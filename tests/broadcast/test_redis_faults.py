"""Redis faults (F09-F12) against a private redis-server that the tests kill and restart.

Nothing here touches the shared Redis on 6379. Waits are polling with a deadline on
observable state (``Broadcast.connected``, log records, ``PUBSUB NUMSUB``), never fixed
sleeps.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import coredis
import pytest

from anyql.broadcast import Broadcast, BroadcastError
from tests.broadcast.helpers import RedisServer, wait_until, wait_until_async

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

DEADLINE = 20.0
SLACK = 1.0  # allowed on top of publish_timeout before "fails fast" counts as failed


@asynccontextmanager
async def admin_client(url: str) -> AsyncIterator[coredis.Redis[str]]:
    async with coredis.Redis.from_url(url, decode_responses=True) as client:
        yield client


async def numsub(url: str, channel: str) -> int:
    async with admin_client(url) as admin:
        return (await admin.pubsub_numsub(channel))[channel]


def log_lines(caplog: pytest.LogCaptureFixture, text: str, level: int) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "anyql.broadcast" and r.levelno == level and text in r.getMessage()
    ]


def outages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return log_lines(caplog, "is unavailable", logging.WARNING)


def recoveries(caplog: pytest.LogCaptureFixture) -> list[str]:
    return log_lines(caplog, "is back", logging.WARNING)


def failed_retries(caplog: pytest.LogCaptureFixture) -> list[str]:
    return log_lines(caplog, "reconnect failed", logging.DEBUG)


async def publish_fails_fast(broadcast: Broadcast, publish_timeout: float) -> BroadcastError:
    with anyio.fail_after(publish_timeout + SLACK), pytest.raises(BroadcastError) as caught:
        await broadcast.publish("anything", "lost")
    return caught.value


async def test_F09_redis_killed_and_restarted_resubscribes_everything(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="anyql.broadcast")
    url, timeout = private_redis.url, 0.5
    with anyio.fail_after(DEADLINE):
        async with (
            Broadcast(url, publish_timeout=timeout) as broadcast,
            broadcast.subscribe("news") as news,
            broadcast.subscribe("member") as member,
        ):
            await broadcast.group_add("room", "member")
            await broadcast.publish("news", "before")
            assert await anext(news) == "before"

            private_redis.kill()
            await wait_until(lambda: not broadcast.connected)
            await publish_fails_fast(broadcast, timeout)
            # Several reconnect attempts fail; the outage is still one warning.
            await wait_until(lambda: len(failed_retries(caplog)) >= 3)
            assert len(outages(caplog)) == 1

            await anyio.to_thread.run_sync(private_redis.start)
            await wait_until(lambda: broadcast.connected)
            assert await numsub(url, "news") == 1
            assert await numsub(url, "member") == 1
            assert await numsub(url, broadcast.group_channel("room")) == 1

            async with Broadcast(url) as other_process:
                await other_process.publish("news", "after")
                await other_process.group_send("room", "room after")
            await broadcast.publish("news", "from the survivor")
            assert [await anext(news) for _ in range(2)] == ["after", "from the survivor"]
            assert await anext(member) == "room after"
    assert len(outages(caplog)) == 1
    assert len(recoveries(caplog)) == 1
    assert "resubscribed 3 channel(s)" in recoveries(caplog)[0]


async def test_F10_redis_hangs_publish_times_out_then_recovers(
    private_redis: RedisServer,
) -> None:
    url, timeout = private_redis.url, 0.3
    with anyio.fail_after(DEADLINE):
        async with (
            Broadcast(url, publish_timeout=timeout) as broadcast,
            broadcast.subscribe("ch") as stream,
        ):
            await broadcast.publish("ch", "before")
            assert await anext(stream) == "before"
            private_redis.pause()
            try:
                for _ in range(3):
                    error = await publish_fails_fast(broadcast, timeout)
                    assert "timed out" in str(error)
            finally:
                private_redis.resume()
            await broadcast.publish("ch", "after")
            # What was sent before the pause timed out may still be delivered after it.
            with anyio.fail_after(5):
                async for message in stream:
                    if message == "after":
                        break
                    assert message == "lost"


async def test_F10_many_publishes_against_a_hung_redis_do_not_wedge_the_publisher(
    private_redis: RedisServer,
) -> None:
    # coredis leaks a pool slot per connection attempt cancelled mid-handshake (64 slots);
    # the broadcast must replace its client so publishing works once Redis answers again.
    url, timeout = private_redis.url, 0.02
    private_redis.pause()
    try:
        async with Broadcast(url, publish_timeout=timeout) as broadcast:
            assert not broadcast.connected
            for _ in range(70):
                await publish_fails_fast(broadcast, timeout)
            private_redis.resume()

            async def publish_succeeds() -> bool:
                try:
                    await broadcast.publish("ch", "ok")
                except BroadcastError:
                    return False
                return True

            await wait_until_async(publish_succeeds, deadline=DEADLINE)
            await wait_until(lambda: broadcast.connected, deadline=DEADLINE)
    finally:
        private_redis.resume()


async def test_F11_subscriber_connection_killed_reconnects_and_resubscribes(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = private_redis.url
    with anyio.fail_after(DEADLINE):
        async with (
            admin_client(url) as admin,
            Broadcast(url) as broadcast,
            broadcast.subscribe("ch") as stream,
        ):
            assert await admin.client_kill(type_=coredis.PureToken.PUBSUB) == 1
            await wait_until(lambda: len(recoveries(caplog)) == 1)
            assert broadcast.connected
            assert await numsub(url, "ch") == 1
            await broadcast.publish("ch", "after")
            assert await anext(stream) == "after"
    assert len(outages(caplog)) == 1


async def test_F12_redis_drops_a_slow_subscriber_and_the_loss_is_logged(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = private_redis.url
    with anyio.fail_after(DEADLINE):
        async with (
            admin_client(url) as admin,
            Broadcast(url) as broadcast,
            broadcast.subscribe("ch") as stream,
        ):
            await admin.config_set({"client-output-buffer-limit": "pubsub 1024 0 0"})
            await broadcast.publish("ch", "x" * 200_000)  # over the limit: Redis drops us
            await wait_until(lambda: len(recoveries(caplog)) == 1)
            await broadcast.publish("ch", "small")
            assert await anext(stream) == "small"
    assert len(outages(caplog)) == 1


async def test_started_while_redis_is_down_then_connects_when_it_comes_up(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    url, timeout = private_redis.url, 0.5
    private_redis.kill()
    with anyio.fail_after(DEADLINE):
        async with Broadcast(url, publish_timeout=timeout) as broadcast:
            assert not broadcast.connected
            assert len(outages(caplog)) == 1
            await publish_fails_fast(broadcast, timeout)
            async with broadcast.subscribe("ch") as stream:  # registered, not yet in Redis
                await anyio.to_thread.run_sync(private_redis.start)
                await wait_until(lambda: broadcast.connected)
                await broadcast.publish("ch", "first after start")
                assert await anext(stream) == "first after start"
    assert len(recoveries(caplog)) == 1


async def test_redis_url_credentials_are_not_logged(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    private_redis.kill()
    url = f"redis://user:s3cret@127.0.0.1:{private_redis.port}/0"
    async with Broadcast(url, publish_timeout=0.5):
        pass
    assert outages(caplog)
    assert all("s3cret" not in r.getMessage() for r in caplog.records)
