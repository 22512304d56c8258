"""Durable Broadcast (event ids, replay, retention; rows D10-D16), in memory and on Redis Streams.

Every test runs on both backends, against the in-memory ring and the shared Redis (each
test on its own key prefix); the fault tests use a private redis-server.
"""

from __future__ import annotations

import base64
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import anyio
import coredis
import orjson
import pytest

from anyql import Event, ResumeError
from anyql.broadcast import Broadcast, DurableSubscription, Retention
from anyql.broadcast._base import ChannelSubscription
from anyql.broadcast._durable import Feed
from anyql.broadcast._ids import _TOKEN_PREFIX, decode_token, encode_token
from anyql.broadcast.memory import MemoryLog
from anyql.broadcast.redis_streams import RedisStreamsBackend
from tests.broadcast.helpers import (
    RedisServer,
    check_a_key_of_another_type_fails_only_its_channel,
    free_port,
    unique,
    wait_until_async,
)
from tests.requirements import unavailable

pytestmark = pytest.mark.anyio

DEADLINE = 10.0


@asynccontextmanager
async def durable(
    url: str | None, retention: Retention | None = None, publish_timeout: float = 2.0
) -> AsyncIterator[Broadcast]:
    prefix = unique("events") + ":"
    broadcast = Broadcast(
        url,
        durable=True,
        retention=retention,
        key_prefix=prefix,
        publish_timeout=publish_timeout,
    )
    async with broadcast:
        yield broadcast


async def take(events: DurableSubscription, count: int) -> list[Event]:
    with anyio.fail_after(DEADLINE):
        return [await events.__anext__() for _ in range(count)]


def numbers(events: list[Event]) -> list[int]:
    return [event.value["n"] for event in events]


async def test_publish_returns_an_id_and_events_after_it_come_in_order(
    broker_url: str | None,
) -> None:
    async with durable(broker_url) as broadcast:
        first = await broadcast.publish("c", {"n": 0})
        assert first is not None
        later = [await broadcast.publish("c", {"n": n}) for n in range(1, 6)]
        async with broadcast.events("c", after=first) as events:
            got = await take(events, 5)
        assert numbers(got) == [1, 2, 3, 4, 5]
        assert all(event.channel == "c" for event in got)
        # Each event's id resumes right after it, and equals what publish returned.
        assert [decode_token(e.id)[1] for e in got] == [decode_token(t)[1] for t in later]


async def test_a_subscription_without_a_resume_point_starts_now(broker_url: str | None) -> None:
    async with durable(broker_url) as broadcast:
        await broadcast.publish("c", {"n": 0})
        async with broadcast.events("c") as events:
            await broadcast.publish("c", {"n": 1})
            assert numbers(await take(events, 1)) == [1]


async def test_a_slow_durable_subscriber_loses_nothing(broker_url: str | None) -> None:
    """Far more than its buffer while it does not read: it catches up from the log."""
    async with durable(broker_url) as broadcast, broadcast.events("c", buffer=2) as events:
        for n in range(60):
            await broadcast.publish("c", {"n": n})
        assert numbers(await take(events, 60)) == list(range(60))
        await broadcast.publish("c", {"n": 60})
        assert numbers(await take(events, 1)) == [60]


async def test_resuming_from_each_event_id_continues_without_gap_or_duplicate(
    broker_url: str | None,
) -> None:
    async with durable(broker_url) as broadcast:
        async with broadcast.events("c") as events:
            for n in range(5):
                await broadcast.publish("c", {"n": n})
            got = await take(events, 5)
        for index, event in enumerate(got):
            async with broadcast.events("c", after=event.id) as resumed:
                await broadcast.publish("c", {"n": 100 + index})
                rest = await take(resumed, 5 - index)
            assert numbers(rest)[: 4 - index] == list(range(index + 1, 5))


async def test_a_composite_token_resumes_each_channel_where_it_stood(
    broker_url: str | None,
) -> None:
    async with durable(broker_url) as broadcast:
        async with broadcast.events("a", "b") as events:
            await broadcast.publish("a", {"n": 1})
            await broadcast.publish("b", {"n": 2})
            middle = (await take(events, 2))[-1].id
            await broadcast.publish("a", {"n": 3})
            await broadcast.publish("b", {"n": 4})
            await broadcast.publish("a", {"n": 5})
        assert set(decode_token(middle)[1]) == {"a", "b"}
        async with broadcast.events("a", "b", after=middle) as resumed:
            got = await take(resumed, 3)
        by_channel = {c: [e.value["n"] for e in got if e.channel == c] for c in "ab"}
        assert by_channel == {"a": [3, 5], "b": [4]}


async def test_plain_subscriptions_still_work_on_a_durable_broadcast(
    broker_url: str | None,
) -> None:
    async with durable(broker_url) as broadcast, broadcast.subscribe("c") as messages:
        await broadcast.publish("c", {"n": 1})
        with anyio.fail_after(DEADLINE):
            assert await messages.__anext__() == {"n": 1}


def forged(epoch: str, pairs: list[list[str]]) -> str:
    """A token in the encoding this server uses, with any content."""
    body = base64.urlsafe_b64encode(orjson.dumps([epoch, pairs])).decode().rstrip("=")
    return _TOKEN_PREFIX + body


async def test_D10_a_malformed_resume_point_is_invalid(broker_url: str | None) -> None:
    async with durable(broker_url) as broadcast:
        token = await broadcast.publish("c", {"n": 0})
        assert token is not None
        epoch = decode_token(token)[0]
        for token in (
            "",
            "nonsense",
            "v1.",
            "v1.!!!",
            encode_token("x", {})[:-2] + "@@",
            encode_token(epoch, {}),  # names no channel: no id this server issues does
            forged(epoch, [["c", "\uff11\uff12-\uff10"]]),  # fullwidth digits
        ):
            with pytest.raises(ResumeError) as caught:
                async with broadcast.events("c", after=token):
                    pass
            assert caught.value.code == "RESUME_POINT_INVALID"


async def test_D11_a_resume_point_of_other_channels_is_invalid(broker_url: str | None) -> None:
    async with durable(broker_url) as broadcast:
        token = await broadcast.publish("other", {"n": 1})
        with pytest.raises(ResumeError) as caught:
            async with broadcast.events("c", after=token):
                pass
        assert caught.value.code == "RESUME_POINT_INVALID"
        assert "other channels" in str(caught.value)


async def test_D12_a_resume_point_from_the_future_is_invalid(broker_url: str | None) -> None:
    async with durable(broker_url) as broadcast:
        token = await broadcast.publish("c", {"n": 1})
        assert token is not None
        epoch, positions = decode_token(token)
        future = encode_token(epoch, {"c": (positions["c"][0] + 10**9, 0)})
        with pytest.raises(ResumeError) as caught:
            async with broadcast.events("c", after=future):
                pass
        assert caught.value.code == "RESUME_POINT_INVALID"


async def test_D13_a_resume_point_past_retention_is_reported_expired(
    broker_url: str | None,
) -> None:
    # Redis trims whole nodes (MAXLEN ~), so publish well past a node of 100 entries.
    async with durable(broker_url, Retention(max_length=10)) as broadcast:
        first = await broadcast.publish("c", {"n": 0})
        for n in range(1, 400):
            await broadcast.publish("c", {"n": n})
        with pytest.raises(ResumeError) as caught:
            async with broadcast.events("c", after=first):
                pass
        assert caught.value.code == "RESUME_POINT_EXPIRED"


async def test_D14_a_resume_point_from_another_event_log_is_reported_expired(
    broker_url: str | None,
) -> None:
    async with durable(broker_url) as broadcast:
        token = await broadcast.publish("c", {"n": 1})
    async with durable(broker_url) as restarted:  # a new ring, or another key prefix
        with pytest.raises(ResumeError) as caught:
            async with restarted.events("c", after=token):
                pass
        assert caught.value.code == "RESUME_POINT_EXPIRED"


async def test_D15_a_durable_subscriber_overtaken_by_retention_gets_an_explicit_error(
    broker_url: str | None,
) -> None:
    async with (
        durable(broker_url, Retention(max_length=10)) as broadcast,
        broadcast.events("c", buffer=2) as events,
    ):
        await broadcast.publish("c", {"n": 0})
        assert numbers(await take(events, 1)) == [0]
        for n in range(1, 400):
            await broadcast.publish("c", {"n": n})
        with pytest.raises(ResumeError) as caught, anyio.fail_after(DEADLINE):
            async for _ in events:
                pass
        assert caught.value.code == "RESUME_POINT_EXPIRED"


async def test_D16_a_resume_point_on_a_channel_that_expired_is_reported_expired() -> None:
    clock = [1_000.0]
    log = MemoryLog(
        Retention(max_length=100, idle_ttl=60), Feed(lambda: None), clock=lambda: clock[0]
    )
    entry_id = log.append("c", b'{"n":1}')
    assert await log.read_after("c", (0, 0), 10) != []
    clock[0] += 61
    assert log.retained("c") == 0
    with pytest.raises(ResumeError) as caught:
        await log.read_after("c", entry_id, 10)
    assert caught.value.code == "RESUME_POINT_EXPIRED"


async def test_the_memory_ring_keeps_entries_by_age() -> None:
    clock = [1_000.0]
    log = MemoryLog(
        Retention(max_length=None, max_age=10, idle_ttl=None),
        Feed(lambda: None),
        clock=lambda: clock[0],
    )
    old = log.append("c", b"1")
    clock[0] += 5
    log.append("c", b"2")
    clock[0] += 6
    assert log.retained("c") == 1  # the first is 11 s old
    with pytest.raises(ResumeError):
        await log.read_after("c", (0, 0), 10)
    assert [e.data for e in await log.read_after("c", old, 10)] == [b"2"]


async def test_a_channel_with_a_listener_is_not_dropped_while_idle() -> None:
    clock = [1_000.0]
    feed = Feed(lambda: None)
    log = MemoryLog(Retention(max_length=100, idle_ttl=60), feed, clock=lambda: clock[0])

    class Listener:
        channels = ("c",)

        def offer(self, channel: str, entry: object) -> None: ...

        def wake(self) -> None: ...

    feed.attach(Listener())
    first = log.append("c", b"1")
    clock[0] += 120
    second = log.append("c", b"2")
    assert [e.id for e in await log.read_after("c", first, 10)] == [second]


def test_retention_rejects_what_it_cannot_honour() -> None:
    for bad in (
        {"max_length": None, "max_age": None},
        {"max_length": 0},
        {"max_length": True},
        {"max_age": -1.0},
        {"idle_ttl": 0},
        {"idle_ttl": float("inf")},
    ):
        with pytest.raises(ValueError):
            Retention(**bad)
    with pytest.raises(ValueError, match="durable=True"):
        Broadcast(retention=Retention())
    with pytest.raises(ValueError, match="durable"):
        Broadcast().events("c")


# -- Redis only ------------------------------------------------------------------------------


@pytest.mark.redis
async def test_one_reader_per_process_whatever_the_subscribers(redis_url: str) -> None:
    """One SUBSCRIBE per channel and process, however many subscriptions read it."""
    async with (
        durable(redis_url) as broadcast,
        coredis.Redis.from_url(redis_url, decode_responses=True) as admin,
    ):
        subscriptions = [broadcast.events("c", "d") for _ in range(20)]
        for subscription in subscriptions:
            await subscription.__aenter__()
        await broadcast.publish("c", {"n": 1})
        for subscription in subscriptions:
            assert numbers(await take(subscription, 1)) == [1]
        keys = [broadcast._key_prefix + channel for channel in ("c", "d")]
        assert await admin.pubsub_numsub(*keys) == dict.fromkeys(keys, 1)
        for subscription in subscriptions:
            await subscription.__aexit__(None, None, None)


@pytest.mark.redis
async def test_a_channel_left_and_taken_again_at_once_keeps_being_read(redis_url: str) -> None:
    """One subscriber leaves and the next enters before the reader's reconciler runs (a
    version that forgot the position on leaving left the channel unread for good)."""
    async with durable(redis_url) as broadcast:
        async with broadcast.subscribe("c") as first:
            await broadcast.publish("c", {"n": 1})
            with anyio.fail_after(DEADLINE):
                assert await first.__anext__() == {"n": 1}
        async with broadcast.subscribe("c") as second, broadcast.events("c") as third:
            await broadcast.publish("c", {"n": 2})
            with anyio.fail_after(DEADLINE):
                assert await second.__anext__() == {"n": 2}
                assert (await third.__anext__()).value == {"n": 2}


@pytest.mark.redis
async def test_ten_thousand_channels_are_each_read_once_subscribe_returns(redis_url: str) -> None:
    """Per-user channels pile up: each subscription, entered together with 9,999 others on
    other channels, gets what is published once it has entered (the first reader, an XREAD
    over every channel, took seconds to take a new channel in, and past publish_timeout a
    subscription returned before it was read)."""
    async with durable(redis_url, publish_timeout=5.0) as broadcast, AsyncExitStack() as stack:
        subscriptions: dict[int, ChannelSubscription] = {}

        async def enter(n: int) -> None:
            subscriptions[n] = await stack.enter_async_context(broadcast.subscribe(f"u{n}"))

        async with anyio.create_task_group() as group:
            for n in range(10_000):
                group.start_soon(enter, n)
        for n in (0, 4_321, 9_999):
            await broadcast.publish(f"u{n}", {"n": n})
            with anyio.fail_after(DEADLINE):
                assert await subscriptions[n].__anext__() == {"n": n}


@pytest.mark.redis
async def test_streams_get_the_idle_expiry_and_are_trimmed(redis_url: str) -> None:
    retention = Retention(max_length=10, idle_ttl=30)
    async with (
        durable(redis_url, retention) as broadcast,
        coredis.Redis.from_url(redis_url, decode_responses=True) as admin,
    ):
        for n in range(500):
            await broadcast.publish("c", {"n": n})
        key = broadcast._key_prefix + "c"
        assert 0 < await admin.pttl(key) <= 30_000
        assert await admin.xlen(key) < 250  # MAXLEN ~ trims whole nodes


@pytest.fixture
def persistent_redis(tmp_path: Path) -> RedisServer:
    executable = shutil.which("redis-server")
    if executable is None:
        unavailable("redis-server is not installed")
    return RedisServer(executable, tmp_path, free_port(), appendonly=True)


@pytest.mark.redis
async def test_the_reader_resumes_from_its_last_id_after_losing_its_connection(
    persistent_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Entries written while the reader is cut off are read when it is back, in order; the
    outage warning does not say they are lost (pub/sub's does)."""
    persistent_redis.start()
    try:
        url = persistent_redis.url
        async with (
            durable(url) as broadcast,
            coredis.Redis.from_url(url, decode_responses=True) as admin,
            broadcast.events("c") as events,
        ):
            await broadcast.publish("c", {"n": 0})
            assert numbers(await take(events, 1)) == [0]
            readers = [c for c in await admin.client_list() if int(c.get("sub", 0)) > 0]
            assert readers
            for reader in readers:
                await admin.client_kill(identifier=int(reader["id"]))
            for n in range(1, 6):
                await broadcast.publish("c", {"n": n})
            assert numbers(await take(events, 5)) == [1, 2, 3, 4, 5]
    finally:
        persistent_redis.stop()
    [warning] = [r.getMessage() for r in caplog.records if "unavailable" in r.getMessage()]
    assert "read from the streams once it is back" in warning
    assert "published during the outage are lost" not in warning


@pytest.mark.redis
async def test_a_channel_left_while_redis_is_down_is_forgotten(
    persistent_redis: RedisServer,
) -> None:
    """A subscriber that comes back once Redis is must start from then: the reader does not
    keep the position of a channel whose last subscriber left during the outage (it would
    hand the newcomer what was published in between, from where the last one left)."""
    persistent_redis.start()
    try:
        async with durable(persistent_redis.url) as broadcast:
            backend = broadcast._backend
            assert isinstance(backend, RedisStreamsBackend)
            async with broadcast.subscribe("c") as first:
                await broadcast.publish("c", {"n": 1})
                with anyio.fail_after(DEADLINE):
                    assert await first.__anext__() == {"n": 1}
                persistent_redis.kill()
                await wait_until_async(_not_connected(broadcast), deadline=DEADLINE)
                assert "c" in backend._positions
            assert "c" not in backend._positions
    finally:
        persistent_redis.stop()


def _not_connected(broadcast: Broadcast) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return not broadcast.connected

    return check


@pytest.mark.redis
async def test_a_redis_restart_with_the_append_only_file_loses_nothing_acknowledged(
    persistent_redis: RedisServer,
) -> None:
    persistent_redis.start()
    try:
        async with (
            durable(persistent_redis.url, publish_timeout=1.0) as broadcast,
            broadcast.events("c") as events,
        ):
            for n in range(3):
                await broadcast.publish("c", {"n": n})
            assert numbers(await take(events, 1)) == [0]
            persistent_redis.kill()
            persistent_redis.start()

            async def published(n: int) -> bool:
                try:
                    await broadcast.publish("c", {"n": n})
                except Exception:
                    return False
                return True

            await wait_until_async(lambda: published(3), deadline=DEADLINE)
            assert numbers(await take(events, 3)) == [1, 2, 3]
    finally:
        persistent_redis.stop()


@pytest.mark.redis
async def test_D16_a_redis_that_lost_its_data_is_reported_to_resumers_and_listeners(
    private_redis: RedisServer,
) -> None:
    async with durable(private_redis.url, publish_timeout=1.0) as broadcast:
        token = await broadcast.publish("c", {"n": 0})
        async with broadcast.events("c", after=token) as events:
            await broadcast.publish("c", {"n": 1})
            assert numbers(await take(events, 1)) == [1]
            private_redis.kill()  # no persistence: the streams are gone
            private_redis.start()

            async def published() -> bool:
                try:
                    await broadcast.publish("c", {"n": 2})
                except Exception:
                    return False
                return True

            await wait_until_async(published, deadline=DEADLINE)
            with pytest.raises(ResumeError) as caught, anyio.fail_after(DEADLINE):
                await events.__anext__()
            assert caught.value.code == "RESUME_POINT_EXPIRED"
        with pytest.raises(ResumeError) as resumed:
            async with broadcast.events("c", after=token):
                pass
        assert resumed.value.code == "RESUME_POINT_EXPIRED"


# -- review findings (each failed before its fix) ---------------------------------------------


async def test_D12_the_largest_id_is_invalid_at_once(broker_url: str | None) -> None:
    async with durable(broker_url) as broadcast:
        token = await broadcast.publish("c", {"n": 1})
        assert token is not None
        hostile = encode_token(decode_token(token)[0], {"c": (2**64 - 1, 2**64 - 1)})
        with anyio.fail_after(DEADLINE), pytest.raises(ResumeError) as caught:
            async with broadcast.events("c", after=hostile):
                pass
        assert caught.value.code == "RESUME_POINT_INVALID"


async def test_too_many_channels_for_one_token_are_refused_on_entering(
    broker_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before anything is read or registered (it used to read each channel's head and make
    the reader take every channel in first)."""
    async with durable(broker_url) as broadcast:
        attached: list[object] = []
        assert broadcast._feed is not None
        monkeypatch.setattr(broadcast._feed, "attach", attached.append)
        channels = [f"a-rather-long-channel-name-{n:04d}" for n in range(80)]
        with pytest.raises(ValueError, match="too many"):
            async with broadcast.events(*channels):
                pass
        assert attached == []


async def test_the_ring_of_a_channel_whose_listener_left_is_kept_for_idle_ttl() -> None:
    clock = [1_000.0]
    broadcast_feed = Feed(lambda: None)
    log = MemoryLog(Retention(max_length=100, idle_ttl=60), broadcast_feed, clock=lambda: clock[0])

    class Listener:
        channels = ("quiet",)

        def offer(self, channel: str, entry: object) -> None: ...

        def wake(self) -> None: ...

    listener = Listener()
    broadcast_feed.attach(listener)  # type: ignore[arg-type]
    entry_id = log.append("quiet", b"1")
    clock[0] += 600  # listened to, quietly, for ten idle TTLs
    broadcast_feed.detach(listener)  # type: ignore[arg-type]
    clock[0] += 1
    log.append("other", b"2")  # a publish elsewhere sweeps
    assert await log.read_after("quiet", entry_id, 10) == []


@pytest.mark.redis
async def test_D16_a_stream_behind_the_resume_point_is_reported_expired(redis_url: str) -> None:
    """Redis lost acknowledged entries (a crash with appendfsync everysec): its last id is
    behind the client's; that is expiry, not a forged id."""
    async with (
        durable(redis_url) as broadcast,
        coredis.Redis.from_url(redis_url, decode_responses=True) as admin,
    ):
        token = await broadcast.publish("c", {"n": 1})
        key = broadcast._key_prefix + "c"
        await admin.delete([key])
        await admin.xadd(key, {"p": "0-0", "d": "1"}, identifier="1-1")
        with pytest.raises(ResumeError) as caught:
            async with broadcast.events("c", after=token):
                pass
        assert caught.value.code == "RESUME_POINT_EXPIRED"


@pytest.mark.redis
async def test_a_subscription_retrying_while_redis_is_down_ends_with_the_broadcast(
    private_redis: RedisServer,
) -> None:
    broadcast = Broadcast(private_redis.url, durable=True, publish_timeout=0.5)
    ended = anyio.Event()
    async with anyio.create_task_group() as group:
        async with broadcast:
            token = await broadcast.publish("c", {"n": 1})
            private_redis.kill()

            async def resume() -> None:
                try:
                    async with broadcast.events("c", after=token) as events:
                        async for _ in events:
                            pass
                except Exception:
                    pass
                ended.set()

            group.start_soon(resume)
            await anyio.sleep(1)  # let it retry a few times against the dead Redis
        with anyio.fail_after(DEADLINE):
            await ended.wait()


@pytest.mark.redis
async def test_D21_a_key_that_is_not_a_stream_fails_its_channel_and_no_other(
    redis_url: str,
) -> None:
    """A ``key_prefix`` shared with other data: the channel whose key holds a string fails
    its listeners with an error naming the key; the reader goes on with the other channels
    (it used to reconnect in a loop, and no channel got anything)."""
    async with (
        durable(redis_url) as broadcast,
        coredis.Redis.from_url(redis_url, decode_responses=True) as admin,
    ):
        await check_a_key_of_another_type_fails_only_its_channel(
            broadcast, lambda key: admin.set(key, "not ours"), lambda key: admin.delete([key])
        )
