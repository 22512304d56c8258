"""The Strawberry app ``--compare strawberry`` serves with uvicorn: the same schema as app.py.

Owns ``app`` (``strawberry.asgi.GraphQL``) and ``TopicBroadcast``, a minimal in-process
broadcast (one unbounded ``asyncio.Queue`` per subscriber, so it never drops), standing in
for anyql's in-memory ``Broadcast``. ``Subscription.events`` yields a ready event
(``seq=-2``) first; ``Mutation.publish`` stamps ``sentAt`` just before each publish and
yields to the loop between events, as anyql's publish does. Subscriptions are served over
graphql-transport-ws and over SSE (a ``POST`` with ``Accept: text/event-stream``, which is
what ``fanout.py --transport sse`` sends). Needs the ``bench`` extra (strawberry-graphql,
uvicorn); imports neither anyql nor anyio.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from typing import Any

import strawberry
from strawberry.asgi import GraphQL
from strawberry.subscriptions import (
    GRAPHQL_SSE_PROTOCOL,
    GRAPHQL_TRANSPORT_WS_PROTOCOL,
    GRAPHQL_WS_PROTOCOL,
)

__all__ = ["TopicBroadcast", "app", "schema"]

READY_SEQ = -2
PROBE_SEQ = -1


class TopicBroadcast:
    """Topic -> subscriber queues, in one process."""

    def __init__(self) -> None:
        self.topics: dict[str, set[asyncio.Queue[dict[str, Any]]]] = {}

    async def publish(self, topic: str, message: dict[str, Any]) -> None:
        """Hand ``message`` to every subscriber of ``topic``, then yield to the loop.

        Args:
            topic: the topic.
            message: the event, shared by every subscriber (read-only).
        """
        for queue in self.topics.get(topic, ()):
            queue.put_nowait(message)
        await asyncio.sleep(0)

    def add(self, topic: str) -> asyncio.Queue[dict[str, Any]]:
        """Register a new subscriber queue on ``topic``."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.topics.setdefault(topic, set()).add(queue)
        return queue

    def remove(self, topic: str, queue: asyncio.Queue[dict[str, Any]]) -> None:
        """Unregister ``queue``; forget the topic when it has no subscriber left."""
        queues = self.topics.get(topic)
        if queues is not None:
            queues.discard(queue)
            if not queues:
                del self.topics[topic]


broadcast = TopicBroadcast()


@strawberry.type
class Event:
    seq: int
    sent_at: float
    data: str


@strawberry.type
class Query:
    @strawberry.field
    def ok(self) -> bool:
        return True


@strawberry.type
class Mutation:
    @strawberry.mutation
    async def publish(self, topic: str, count: int = 1, size: int = 16, probe: bool = False) -> int:
        data = "x" * size
        for seq in range(count):
            event = {"seq": PROBE_SEQ if probe else seq, "sent_at": time.time(), "data": data}
            await broadcast.publish(topic, event)
        return count


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def events(self, topic: str) -> AsyncGenerator[Event, None]:
        queue = broadcast.add(topic)
        try:
            yield Event(seq=READY_SEQ, sent_at=time.time(), data="")
            while True:
                yield Event(**await queue.get())
        finally:
            broadcast.remove(topic, queue)


schema = strawberry.Schema(query=Query, mutation=Mutation, subscription=Subscription)
# graphql-sse (distinct connections mode) beside the WebSocket protocols: ``fanout.py
# --transport sse`` (Strawberry serves SSE since 0.320)
app = GraphQL(
    schema,
    graphql_ide=None,
    subscription_protocols=(
        GRAPHQL_TRANSPORT_WS_PROTOCOL,
        GRAPHQL_WS_PROTOCOL,
        GRAPHQL_SSE_PROTOCOL,
    ),
)
