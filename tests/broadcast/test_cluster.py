"""The Broadcast on a Redis Cluster (rows D17-D19): sharded pub/sub and durable streams.

Runs against a private six-node cluster (three masters with a replica each) that the
``redis_cluster`` fixture starts once for this module; the failover tests fail a master
over and leave the cluster ok. Waits poll observable state with a deadline.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import traceback
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from anyql import Event, ResumeError
from anyql.broadcast import Broadcast, BroadcastError, DurableSubscription
from tests.broadcast.helpers import (
    LocalCluster,
    check_a_key_of_another_type_fails_only_its_channel,
    unique,
    wait_until,
)

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

DEADLINE = 20.0


def _from_coredis_pool_statistics(error: BaseException | None) -> bool:
    if not isinstance(error, KeyError):
        return False
    frames = traceback.extract_tb(error.__traceback__)
    return any(frame.filename.endswith("coredis/pool/_statistics.py") for frame in frames)


@pytest.fixture(autouse=True)
async def _coredis_leaked_acquires(anyio_backend_name: str) -> AsyncIterator[None]:
    """coredis 6.9's ``ShardedPubSub.run`` leaves its per-node ``acquire()`` generators to
    the event loop's finaliser, whose pool-statistics update then raises ``KeyError`` after a
    failover (docs/broadcast.md, "Redis Cluster"). asyncio reports that to its exception
    handler, which anyio's test runner turns into a failure of whichever test is running;
    in a server it is one log line. Only that error is let through here; every other
    asynchronous exception still fails the test."""
    if anyio_backend_name != "asyncio":
        yield
        return
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if _from_coredis_pool_statistics(context.get("exception")):
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
    try:
        yield
    finally:
        # Finalise what the test leaked now, while the handler is in place, so that no
        # later test sees it.
        for _ in range(3):  # a finaliser's aclose() is a task, and may leak another
            gc.collect()
            for _ in range(10):
                await asyncio.sleep(0)
        loop.set_exception_handler(previous)


def owner(cluster: LocalCluster, key: str) -> int:
    """The port of the master of ``key``'s slot (the cluster is ok)."""
    port = cluster.master_of(key)
    assert port is not None, f"no master owns {key!r}"
    return port


def on_masters(cluster: LocalCluster, prefix: str, count: int = 3) -> list[str]:
    """``count`` channel names whose ``prefix + name`` keys live on different masters."""
    found: dict[int, str] = {}
    for n in itertools.count():
        name = f"c{n}"
        found.setdefault(owner(cluster, prefix + name), name)
        if len(found) == count:
            return list(found.values())
    raise AssertionError("unreachable")


def shard_subscribers(cluster: LocalCluster, port: int, channel: str) -> int:
    reply = cluster.command(port, "PUBSUB", "SHARDNUMSUB", channel).split()
    return int(reply[1])


def shard_channels(cluster: LocalCluster, port: int) -> set[str]:
    return set(cluster.command(port, "PUBSUB", "SHARDCHANNELS").split())


@asynccontextmanager
async def durable(cluster: LocalCluster, **options: Any) -> AsyncIterator[Broadcast]:
    async with Broadcast(
        cluster.url, cluster=True, durable=True, key_prefix=unique("events") + ":", **options
    ) as broadcast:
        yield broadcast


async def take(events: DurableSubscription, count: int) -> list[Event]:
    with anyio.fail_after(DEADLINE):
        return [await events.__anext__() for _ in range(count)]


async def publish_retrying(broadcast: Broadcast, channel: str, message: Any) -> str | None:
    """Publish until the cluster acknowledges it (a failover makes some attempts fail)."""
    with anyio.fail_after(DEADLINE):
        while True:
            try:
                return await broadcast.publish(channel, message)
            except BroadcastError:
                await anyio.sleep(0.05)  # a retry's pause, not a synchronisation


@pytest.mark.parametrize("url", [None, "memory://", "unix:///tmp/redis.sock"])
def test_D17_cluster_needs_a_redis_url(url: str | None) -> None:
    with pytest.raises(ValueError, match="cluster=True needs"):
        Broadcast(url, cluster=True)


async def test_sharded_pubsub_across_shards(redis_cluster: LocalCluster) -> None:
    prefix = unique("pubsub") + ":"
    channels = [prefix + name for name in on_masters(redis_cluster, prefix)]
    owners = {channel: owner(redis_cluster, channel) for channel in channels}
    async with (
        Broadcast(redis_cluster.url, cluster=True) as listener,
        Broadcast(redis_cluster.url, cluster=True) as publisher,
        listener.subscribe(*channels, timeout=DEADLINE) as messages,
    ):
        assert listener.connected and "cluster" in repr(listener)
        for channel, master in owners.items():
            # One SSUBSCRIBE, on the slot's master only: no other master carries it.
            assert shard_subscribers(redis_cluster, master, channel) == 1
            for other in set(owners.values()) - {master}:
                assert channel not in shard_channels(redis_cluster, other)
        for n, channel in enumerate(channels):
            await publisher.publish(channel, {"n": n})
        got = [await messages.__anext__() for _ in channels]
        assert got == [{"n": n} for n in range(len(channels))]
    # Leaving unsubscribes on every shard.
    for channel, master in owners.items():
        assert shard_subscribers(redis_cluster, master, channel) == 0


async def test_durable_events_and_composite_resume_across_slots(
    redis_cluster: LocalCluster,
) -> None:
    async with durable(redis_cluster) as broadcast:
        prefix = broadcast._key_prefix
        channels = on_masters(redis_cluster, prefix)
        assert len({owner(redis_cluster, prefix + c) for c in channels}) == 3
        async with broadcast.events(*channels) as events:
            for n in range(6):
                await broadcast.publish(channels[n % 3], {"n": n})
            got = await take(events, 6)
        assert sorted(e.value["n"] for e in got) == list(range(6))
        for channel in channels:  # in order within each channel
            mine = [e.value["n"] for e in got if e.channel == channel]
            assert mine == sorted(mine)
        # The token after the third event names every channel's position: resuming from
        # it yields exactly the events after it on each channel.
        token = got[2].id
        seen = {e.value["n"] for e in got[:3]}
        for n in range(6, 9):
            await broadcast.publish(channels[n % 3], {"n": n})
        async with broadcast.events(*channels, after=token) as resumed:
            rest = await take(resumed, 9 - len(seen))
        assert sorted(e.value["n"] for e in rest) == sorted(set(range(9)) - seen)


async def test_a_slow_durable_subscriber_catches_up(redis_cluster: LocalCluster) -> None:
    async with durable(redis_cluster, buffer=4) as broadcast:
        channels = on_masters(redis_cluster, broadcast._key_prefix, 2)
        async with broadcast.events(*channels) as events:
            for n in range(60):  # far more than its buffer, while it does not read
                await broadcast.publish(channels[n % 2], {"n": n})
            got = await take(events, 60)
        for channel in channels:
            mine = [e.value["n"] for e in got if e.channel == channel]
            assert mine == [n for n in range(60) if channels[n % 2] == channel]


async def test_the_reader_reads_the_log_when_a_notification_is_missing(
    redis_cluster: LocalCluster,
) -> None:
    """An entry appended without its notification (as when a notification is lost) is
    delivered once the next notification shows the hole, in order, to plain subscribers
    as well (they have no log of their own)."""
    async with durable(redis_cluster) as broadcast:
        channel = "lost"
        key = broadcast._key_prefix + channel
        async with broadcast.subscribe(channel, timeout=DEADLINE) as messages:
            await broadcast.publish(channel, {"n": 0})
            assert await messages.__anext__() == {"n": 0}
            port = owner(redis_cluster, key)
            last = redis_cluster.command(port, "XINFO", "STREAM", key).split("\n")
            prev = last[last.index("last-generated-id") + 1]
            redis_cluster.command(port, "XADD", key, "*", "p", prev, "d", '{"n":1}')
            await broadcast.publish(channel, {"n": 2})
            assert [await messages.__anext__() for _ in range(2)] == [{"n": 1}, {"n": 2}]


async def test_D18_sharded_pubsub_resubscribes_on_the_new_master_after_a_failover(
    redis_cluster: LocalCluster,
) -> None:
    channel = unique("failover")
    async with (
        Broadcast(redis_cluster.url, cluster=True) as listener,
        Broadcast(redis_cluster.url, cluster=True) as publisher,
        listener.subscribe(channel, timeout=DEADLINE) as messages,
    ):
        old = owner(redis_cluster, channel)
        replica = redis_cluster.replica_of(old)
        await anyio.to_thread.run_sync(redis_cluster.fail_over, replica)
        # The old master unsubscribes the channel; the listener subscribes on the new one.
        await wait_until(lambda: redis_cluster.master_of(channel) == replica, deadline=DEADLINE)
        await wait_until(
            lambda: shard_subscribers(redis_cluster, replica, channel) == 1, deadline=DEADLINE
        )
        await wait_until(lambda: listener.connected, deadline=DEADLINE)
        await publish_retrying(publisher, channel, "after")
        assert await messages.__anext__() == "after"
    await anyio.to_thread.run_sync(redis_cluster.wait_ok)


async def test_D19_durable_subscriber_across_a_controlled_failover(
    redis_cluster: LocalCluster,
) -> None:
    """``CLUSTER FAILOVER`` waits for the replica to catch up: nothing is lost."""
    async with durable(redis_cluster, publish_timeout=1.0) as broadcast:
        channel = "orders"
        key = broadcast._key_prefix + channel
        async with broadcast.events(channel) as events:
            for n in range(5):
                await broadcast.publish(channel, {"n": n})
            old = owner(redis_cluster, key)
            replica = redis_cluster.replica_of(old)
            await anyio.to_thread.run_sync(redis_cluster.fail_over, replica)  # it took over
            # On a busy machine the cluster may fail over again by itself (a node slow to
            # answer for its 1 s timeout); the promise holds whoever serves the slot.
            await wait_until(lambda: redis_cluster.master_of(key) is not None, deadline=DEADLINE)
            for n in range(5, 15):
                await publish_retrying(broadcast, channel, {"n": n})
            got = await take(events, 15)
        assert [e.value["n"] for e in got] == list(range(15))
    await anyio.to_thread.run_sync(redis_cluster.wait_ok)


async def test_D19_durable_subscriber_across_a_killed_master(
    redis_cluster: LocalCluster,
) -> None:
    """A master killed while events are published: its replica is promoted. Every event
    acknowledged after the promotion arrives, in order, once; an acknowledged event lost
    with the master (asynchronous replication) ends the subscription with
    RESUME_POINT_EXPIRED instead of a silent gap."""
    async with durable(redis_cluster, publish_timeout=1.0) as broadcast:
        channel = "killed"
        key = broadcast._key_prefix + channel
        acknowledged: list[int] = []
        #: A publish that timed out may still have been applied (and replicated).
        attempted: list[int] = []
        error: ResumeError | None = None
        async with broadcast.events(channel) as events:
            for n in range(20):
                await broadcast.publish(channel, {"n": n})
                acknowledged.append(n)
            # A live subscriber, caught up when the master dies.
            got = [event.value["n"] for event in await take(events, 20)]
            old = owner(redis_cluster, key)
            replica = redis_cluster.replica_of(old)
            redis_cluster.kill(old)
            n = 20
            with anyio.fail_after(DEADLINE):
                while redis_cluster.master_of(key) != replica:  # publishing throughout
                    attempted.append(n)
                    try:
                        await broadcast.publish(channel, {"n": n})
                        acknowledged.append(n)
                    except BroadcastError:
                        await anyio.sleep(0.05)  # a retry's pause
                    n += 1
            promoted_at = n
            for n in range(promoted_at, promoted_at + 10):
                await publish_retrying(broadcast, channel, {"n": n})
                acknowledged.append(n)
            try:
                with anyio.fail_after(DEADLINE):
                    while not got or got[-1] != acknowledged[-1]:
                        got.append((await events.__anext__()).value["n"])
            except ResumeError as raised:
                error = raised
        redis_cluster.start_node(old)  # it rejoins as a replica of the promoted node
        await anyio.to_thread.run_sync(redis_cluster.wait_ok)
    assert got == sorted(set(got)), "in order, no duplicates"
    assert set(got) <= set(acknowledged) | set(attempted)
    delivered_acknowledged = [n for n in got if n in set(acknowledged)]
    if error is None:
        # No silent gap: everything acknowledged arrived.
        assert delivered_acknowledged == acknowledged
    else:
        assert error.code == "RESUME_POINT_EXPIRED"
        assert delivered_acknowledged == acknowledged[: len(delivered_acknowledged)]


async def test_D21_a_key_that_is_not_a_stream_fails_its_channel_and_no_other(
    redis_cluster: LocalCluster,
) -> None:
    async def occupy(key: str) -> None:
        redis_cluster.command(owner(redis_cluster, key), "SET", key, "not ours")

    async def free(key: str) -> None:
        redis_cluster.command(owner(redis_cluster, key), "DEL", key)

    async with durable(redis_cluster) as broadcast:
        await check_a_key_of_another_type_fails_only_its_channel(broadcast, occupy, free, DEADLINE)
