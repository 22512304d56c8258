"""Broadcast behaviour that must hold on every broker: in memory and over Redis.

Each test runs for ``broker_url`` None (memory) and the shared Redis (marked ``redis``), and
on asyncio and Trio through the suite's ``anyio_backend`` fixture.
"""

from __future__ import annotations

import contextlib
import gc
import warnings
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import pytest

from anyql.broadcast import Broadcast, SubscriberOverflow
from tests.broadcast.helpers import unique

pytestmark = pytest.mark.anyio

DEADLINE = 10.0


def make(url: str | None, **options: Any) -> Broadcast:
    """A broadcast whose group channels cannot collide with another test run's."""
    options.setdefault("group_prefix", unique("group") + ":")
    return Broadcast(url, **options)


async def test_publish_reaches_subscriber_as_json(broker_url: str | None) -> None:
    channel = unique("a")
    with anyio.fail_after(DEADLINE):
        async with make(broker_url) as broadcast, broadcast.subscribe(channel) as stream:
            await broadcast.publish(channel, {"n": 1, "pair": (1, 2), "text": "é"})
            assert await anext(stream) == {"n": 1, "pair": [1, 2], "text": "é"}


async def test_several_channels_in_one_subscription(broker_url: str | None) -> None:
    a, b, other = unique("a"), unique("b"), unique("other")
    with anyio.fail_after(DEADLINE):
        async with make(broker_url) as broadcast, broadcast.subscribe(a, b, a) as stream:
            assert stream.channels == (a, b)
            await broadcast.publish(a, "to a")
            await broadcast.publish(other, "to other")
            await broadcast.publish(b, "to b")
            await broadcast.publish(a, "end")
            assert [await anext(stream) for _ in range(3)] == ["to a", "to b", "end"]


async def test_messages_arrive_in_publish_order(broker_url: str | None) -> None:
    channel = unique("ordered")
    with anyio.fail_after(DEADLINE):
        async with make(broker_url) as broadcast, broadcast.subscribe(channel) as stream:
            for i in range(200):
                await broadcast.publish(channel, i)
            assert [await anext(stream) for _ in range(200)] == list(range(200))


async def test_every_subscriber_gets_its_own_copy_of_each_message(
    broker_url: str | None,
) -> None:
    channel = unique("fan")
    with anyio.fail_after(DEADLINE):
        async with (
            make(broker_url) as broadcast,
            broadcast.subscribe(channel) as first,
            broadcast.subscribe(channel) as second,
        ):
            assert broadcast.local_subscribers(channel) == 2
            await broadcast.publish(channel, "x")
            assert await anext(first) == "x"
            assert await anext(second) == "x"


async def test_sibling_leaving_keeps_the_channel_for_the_others(broker_url: str | None) -> None:
    channel = unique("shared")
    with anyio.fail_after(DEADLINE):
        async with make(broker_url) as broadcast, broadcast.subscribe(channel) as staying:
            async with broadcast.subscribe(channel) as leaving:
                await broadcast.publish(channel, 1)
                assert await anext(leaving) == 1
            assert broadcast.local_subscribers(channel) == 1
            await broadcast.publish(channel, 2)
            assert [await anext(staying) for _ in range(2)] == [1, 2]


async def test_group_send_reaches_members_and_group_subscribers(broker_url: str | None) -> None:
    c1, c2, outsider = unique("c1"), unique("c2"), unique("outsider")
    with anyio.fail_after(DEADLINE):
        async with (
            make(broker_url) as broadcast,
            broadcast.subscribe(c1) as s1,
            broadcast.subscribe(c2) as s2,
            broadcast.subscribe(outsider) as s3,
            broadcast.subscribe(broadcast.group_channel("room")) as direct,
        ):
            await broadcast.group_add("room", c1)
            await broadcast.group_add("room", c2)
            await broadcast.group_send("room", "hello")
            await broadcast.publish(outsider, "only for the outsider")
            assert await anext(s1) == "hello"
            assert await anext(s2) == "hello"
            assert await anext(direct) == "hello"
            assert await anext(s3) == "only for the outsider"


async def test_subscriber_of_member_and_group_gets_a_group_message_once(
    broker_url: str | None,
) -> None:
    member = unique("member")
    with anyio.fail_after(DEADLINE):
        async with make(broker_url) as broadcast:
            group_channel = broadcast.group_channel("g")
            async with broadcast.subscribe(member, group_channel) as stream:
                await broadcast.group_add("g", member)
                await broadcast.group_send("g", "once")
                await broadcast.publish(member, "next")
                assert [await anext(stream) for _ in range(2)] == ["once", "next"]


async def test_group_membership_is_reference_counted(broker_url: str | None) -> None:
    member = unique("member")
    with anyio.fail_after(DEADLINE):
        async with make(broker_url) as broadcast, broadcast.subscribe(member) as stream:
            await broadcast.group_add("room", member)
            await broadcast.group_add("room", member)
            await broadcast.group_discard("room", member)
            await broadcast.group_send("room", "still a member")
            assert await anext(stream) == "still a member"

            await broadcast.group_discard("room", member)
            await broadcast.group_discard("room", member)  # not a member: a no-op
            await broadcast.group_send("room", "not delivered")
            await broadcast.publish(member, "direct")
            assert await anext(stream) == "direct"


async def _resolver(
    broadcast: Broadcast, channel: str, ready: anyio.Event
) -> AsyncGenerator[Any, None]:
    """What a subscription resolver looks like."""
    async with broadcast.subscribe(channel) as stream:
        ready.set()
        async for message in stream:
            yield message


async def test_resolver_generator_closed_early_leaves_nothing_behind(
    broker_url: str | None,
) -> None:
    channel = unique("resolver")
    received: list[Any] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with anyio.fail_after(DEADLINE):
            async with make(broker_url) as broadcast:
                ready = anyio.Event()
                generator = _resolver(broadcast, channel, ready)

                async def consume() -> None:
                    async for message in generator:
                        received.append(message)
                        if len(received) == 2:
                            break
                    await generator.aclose()

                async with anyio.create_task_group() as task_group:
                    task_group.start_soon(consume)
                    await ready.wait()
                    for i in range(3):
                        await broadcast.publish(channel, i)
                assert broadcast.local_subscribers(channel) == 0
                await broadcast.publish(channel, "after close")
        gc.collect()
    assert received == [0, 1]
    assert [str(w.message) for w in caught] == []


async def test_consumer_cancelled_while_waiting_unregisters(broker_url: str | None) -> None:
    channel = unique("cancelled")
    with anyio.fail_after(DEADLINE):
        async with make(broker_url) as broadcast:
            ready = anyio.Event()

            async def consume_forever() -> None:
                async with aclosing(_resolver(broadcast, channel, ready)) as generator:
                    async for _ in generator:
                        pass

            async with anyio.create_task_group() as task_group:
                task_group.start_soon(consume_forever)
                await ready.wait()
                await anyio.lowlevel.checkpoint()
                assert broadcast.local_subscribers(channel) == 1
                task_group.cancel_scope.cancel()
            assert broadcast.local_subscribers(channel) == 0


async def test_unsubscribe_racing_publish_never_raises_in_publisher(
    broker_url: str | None,
) -> None:
    channel = unique("churn")
    cycles = 100 if broker_url is None else 15
    published = 0
    with anyio.fail_after(30):
        async with make(broker_url, buffer=1, overflow="close") as broadcast:
            churned = anyio.Event()

            async def publish_until_churned() -> None:
                nonlocal published
                while not churned.is_set():
                    await broadcast.publish(channel, published)
                    published += 1

            async def churn() -> None:
                for _ in range(cycles):
                    async with broadcast.subscribe(channel) as stream:
                        with contextlib.suppress(SubscriberOverflow):
                            await anext(stream)

            async with anyio.create_task_group() as publishers:
                publishers.start_soon(publish_until_churned)
                async with anyio.create_task_group() as churners:
                    for _ in range(5):
                        churners.start_soon(churn)
                churned.set()
            assert broadcast.local_subscribers(channel) == 0
    assert published > 0


async def test_leaving_the_broadcast_ends_open_streams(broker_url: str | None) -> None:
    channel = unique("shutdown")
    broadcast = make(broker_url)
    ended = anyio.Event()

    async def consume(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        async with broadcast.subscribe(channel) as stream:
            task_status.started()
            async for _ in stream:
                pass
        ended.set()

    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as task_group:
            async with broadcast:
                await task_group.start(consume)
            await ended.wait()
    assert not broadcast.connected
