"""An end-to-end app with small limits, and subscriptions that report their own cleanup.

Served by dedicated servers in tests/e2e/test_ws_rows.py (the shared app keeps the default
limits). ``forever(tag)`` yields once and then waits forever; when it is cancelled its
``finally`` publishes ``tag`` on the in-memory broadcast, and ``cleanups`` streams those
tags, so a test on another connection sees a generator's ``finally`` run without sleeping.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio

from anyql import Broadcast, GraphQL, Limits, Schema

KIB = 1024
CLEANUPS = "cleanups"

schema = Schema(
    """
    type Query { hello: String! }
    type Subscription {
      forever(tag: String!): Int!
      cleanups: String!
      count(target: Int!, delayMs: Int = 0): Int!
    }
    """
)


@schema.field("Query.hello")
def hello(root: Any, info: Any) -> str:
    return "world"


@schema.field("Subscription.forever")
async def forever(root: Any, info: Any, tag: str) -> AsyncIterator[int]:
    try:
        yield 0
        await anyio.sleep_forever()
    finally:
        with anyio.move_on_after(1, shield=True):
            await info.context.broadcast.publish(CLEANUPS, tag)


@schema.field("Subscription.cleanups")
async def cleanups(root: Any, info: Any) -> AsyncIterator[str]:
    async with info.context.broadcast.subscribe(CLEANUPS) as tags:
        yield "ready"
        async for tag in tags:
            yield tag


@schema.field("Subscription.count")
async def count(root: Any, info: Any, target: int, delayMs: int) -> AsyncIterator[int]:
    for value in range(target):
        yield value
        await anyio.sleep(delayMs / 1000)


app = GraphQL(
    schema,
    broadcast=Broadcast(),
    limits=Limits(
        connection_init_timeout=0.5,
        max_ws_message_bytes=64 * KIB,
        max_operations=2,
        shutdown_grace=2.0,
        cleanup_grace=1.0,  # never longer than the shutdown grace
    ),
)
