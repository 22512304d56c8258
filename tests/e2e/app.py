"""The app every end-to-end test serves (native and hypercorn, Trio and asyncio)."""

from __future__ import annotations

import itertools
import os
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import anyio

from anyql import Broadcast, ConnectionRejected, GraphQL, Schema

schema = Schema(
    """
    type Query {
      hello(name: String = "world"): String!
      whoami: String
      fail: String
      cleanedUp(name: String!): Boolean!
    }
    type Mutation { send(room: String!, text: String!): Boolean! }
    type Subscription {
      count(target: Int!, delayMs: Int = 0): Int!
      messages(room: String!): String!
      shared(room: String!): String!
      boom(after: Int!): Int!
      tracked(name: String!, everyMs: Int = 0): Int!
    }
    """
)


@schema.field("Query.hello")
def hello(root: Any, info: Any, name: str) -> str:
    return f"Hello {name}"


@schema.field("Query.whoami")
def whoami(root: Any, info: Any) -> str | None:
    token = info.context.connection_params.get("token")
    return None if token is None else str(token)


@schema.field("Query.fail")
def fail(root: Any, info: Any) -> str:
    raise ValueError("resolver failed on purpose")


@schema.field("Mutation.send")
async def send(root: Any, info: Any, room: str, text: str) -> bool:
    await info.context.broadcast.publish(f"room:{room}", text)
    return True


@schema.field("Subscription.count")
async def count(root: Any, info: Any, target: int, delayMs: int) -> AsyncIterator[int]:
    for value in range(target):
        yield value
        await anyio.sleep(delayMs / 1000)


@schema.field("Subscription.messages")
async def messages(root: Any, info: Any, room: str) -> AsyncIterator[str]:
    async with info.context.broadcast.subscribe(f"room:{room}") as stream:
        yield "ready"
        async for text in stream:
            yield text


@schema.field("Subscription.shared", shared=True)
async def shared(root: Any, info: Any, room: str) -> AsyncIterator[str]:
    async with info.context.broadcast.subscribe(f"room:{room}") as stream:
        yield "ready"
        async for text in stream:
            yield text


@schema.field("Subscription.boom")
async def boom(root: Any, info: Any, after: int) -> AsyncIterator[int]:
    for value in range(after):
        yield value
    raise RuntimeError("source failed on purpose")


#: How many times each ``tracked`` subscription's ``finally`` ran, by its client-chosen name.
#: Module state: read it back over HTTP (``cleanedUp``) from the process that serves it.
CLEANED_UP: Counter[str] = Counter()


@schema.field("Subscription.tracked")
async def tracked(root: Any, info: Any, name: str, everyMs: int) -> AsyncIterator[int]:
    """Yields 0, then 1, 2, ... every ``everyMs`` (with 0: nothing more) until it is cancelled;
    its ``finally`` records that it ran."""
    try:
        yield 0
        if everyMs <= 0:
            await anyio.sleep_forever()
        for value in itertools.count(1):
            await anyio.sleep(everyMs / 1000)
            yield value
    finally:
        CLEANED_UP[name] += 1


@schema.field("Query.cleanedUp")
def cleaned_up(root: Any, info: Any, name: str) -> bool:
    return CLEANED_UP[name] > 0


async def on_connect(context: Any, params: Any) -> dict[str, Any] | None:
    if params.get("reject"):
        raise ConnectionRejected({"message": "rejected on purpose"})
    return None


app = GraphQL(
    schema,
    broadcast=Broadcast(os.environ.get("ANYQL_TEST_REDIS") or None),
    on_connect=on_connect,
    # The real-client tests check that a source's own message reaches the client (masking,
    # the production default, is proven in tests/hardening).
    mask_errors=False,
)
