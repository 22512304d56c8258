"""``Broadcast.wait_for_subscribers``: publish once a subscription is known to listen, with
no retry loop; on memory and on Redis, both backends, directly and through a GraphQL
subscription served by the TestClient.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from anyql import Broadcast, GraphQL, Schema
from anyql.testing import ClientError, TestClient
from tests.broadcast.helpers import unique

pytestmark = pytest.mark.anyio


async def test_returns_once_enough_subscriptions_listen_and_a_publish_then_reaches_them(
    broker_url: str | None,
) -> None:
    channel = unique("wait")
    received: list[Any] = []
    async with Broadcast(broker_url) as broadcast, anyio.create_task_group() as tasks:

        async def listen() -> None:
            async with broadcast.subscribe(channel) as messages:
                received.append(await anext(messages))

        tasks.start_soon(listen)
        tasks.start_soon(listen)
        with anyio.fail_after(10):
            await broadcast.wait_for_subscribers(channel, 2)
        await broadcast.publish(channel, {"n": 1})  # no retry: both already listen
    assert received == [{"n": 1}, {"n": 1}]
    assert broadcast.local_subscribers(channel) == 0


async def test_counts_only_subscriptions_still_listening() -> None:
    returned: list[str] = []
    async with Broadcast() as broadcast:
        async with broadcast.subscribe("a"), broadcast.subscribe("a", "b"):
            await broadcast.wait_for_subscribers("a", 2)
            await broadcast.wait_for_subscribers("b", 1)
        async with anyio.create_task_group() as tasks:

            async def wait() -> None:
                await broadcast.wait_for_subscribers("a", 1)
                returned.append("a")

            tasks.start_soon(wait)
            await anyio.wait_all_tasks_blocked()
            assert returned == []  # both left: nothing listens to "a" any more
            async with broadcast.subscribe("a"):
                await anyio.wait_all_tasks_blocked()
                assert returned == ["a"]


async def test_refuses_when_not_running_and_wakes_waiters_when_stopped() -> None:
    broadcast = Broadcast()
    with pytest.raises(RuntimeError, match="not running"):
        await broadcast.wait_for_subscribers("a")
    refused: list[RuntimeError] = []

    async def wait() -> None:
        try:
            await broadcast.wait_for_subscribers("a")
        except RuntimeError as error:
            refused.append(error)

    async with broadcast, anyio.create_task_group() as tasks:
        tasks.start_soon(wait)
        await anyio.wait_all_tasks_blocked()
        await broadcast.__aexit__(None, None, None)
    assert len(refused) == 1 and "not running" in str(refused[0])


async def test_a_test_publishes_to_a_broadcast_fed_subscription_without_retrying(
    broker_url: str | None,
) -> None:
    channel = unique("room")
    schema = Schema("type Query { ok: Boolean } type Subscription { room: String! }")

    @schema.field("Subscription.room")
    async def room(root: Any, info: Any) -> AsyncIterator[str]:
        async with info.context.broadcast.subscribe(channel) as messages:
            async for message in messages:
                yield message

    broadcast = Broadcast(broker_url)
    app = GraphQL(schema, broadcast=broadcast)
    async with (
        TestClient(app) as client,
        client.websocket() as socket,
        socket.subscribe("subscription { room }") as results,
    ):
        with anyio.fail_after(10):
            await client.wait_for_subscribers(channel)
        await broadcast.publish(channel, "hello")
        assert await anext(results) == {"data": {"room": "hello"}}


async def test_the_test_client_says_when_it_cannot_wait() -> None:
    schema = Schema("type Query { ok: Boolean }")
    async with TestClient(GraphQL(schema)) as client:
        with pytest.raises(ClientError, match="needs an in-process app with a broadcast"):
            await client.wait_for_subscribers("x")
