"""The anyql app the fan-out benchmark serves, in a shared and an unshared variant.

Owns ``shared_app`` and ``unshared_app``: the same schema, where ``Subscription.events``
reads a topic from the app's in-memory ``Broadcast`` (a ``ready`` event first, ``seq=-2``)
and ``Mutation.publish`` publishes ``count`` events of ``size`` bytes, each stamped with
``sentAt = time.time()`` just before it is published (``probe: true`` sends ``seq=-1``
events that only mark subscribers live). In ``shared_app`` the subscription field is
declared ``shared=True``: one source and one execution per event for all subscribers of a
topic. Limits are the library defaults (what users get) except ``operation_timeout``: a
saturating burst of K events to N unshared subscribers can keep the publishing mutation
running longer than the default 30 s, and ``max_connections`` when the benchmark sets
``ANYQL_BENCH_MAX_CONNECTIONS`` (N above the default 10,000 under hypercorn, which has no
``--limit``). ``Query.planStats`` is the JSON of ``app.engine.plan_stats()`` (how many
operations and fields took the planned path; the benchmark reads it before and after the
bursts). Imports anyql and orjson.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import orjson

from anyql import Broadcast, GraphQL, Limits, Schema

__all__ = ["SDL", "make_app", "shared_app", "unshared_app"]

SDL = """
type Event { seq: Int!  sentAt: Float!  data: String! }
type Query { ok: Boolean!  planStats: String }
type Mutation {
  publish(topic: String!, count: Int! = 1, size: Int! = 16, probe: Boolean! = false): Int!
}
type Subscription { events(topic: String!): Event! }
"""

READY_SEQ = -2
PROBE_SEQ = -1
#: Seconds a publishing mutation may run (the library default is 30).
BURST_TIMEOUT = 600.0


def make_app(*, shared: bool) -> GraphQL:
    """Build the benchmark app.

    Args:
        shared: declare ``Subscription.events`` as a shared subscription.

    Returns:
        A ``GraphQL`` app with its own in-memory ``Broadcast``.
    """
    schema = Schema(SDL)

    @schema.field("Query.ok")
    def ok(root: Any, info: Any) -> bool:
        return True

    @schema.field("Mutation.publish")
    async def publish(root: Any, info: Any, topic: str, count: int, size: int, probe: bool) -> int:
        broadcast = info.context.broadcast
        data = "x" * size
        for seq in range(count):
            event = {"seq": PROBE_SEQ if probe else seq, "sentAt": time.time(), "data": data}
            await broadcast.publish(topic, event)
        return count

    @schema.field("Subscription.events", shared=shared)
    async def events(root: Any, info: Any, topic: str) -> AsyncIterator[dict[str, Any]]:
        async with info.context.broadcast.subscribe(topic) as stream:
            yield {"seq": READY_SEQ, "sentAt": time.time(), "data": ""}
            async for event in stream:
                yield event

    @schema.field("Query.planStats")
    def plan_stats(root: Any, info: Any) -> str | None:
        """The engine's plan counters as JSON, or None when it does not count them."""
        read = getattr(app.engine, "plan_stats", None)
        return None if read is None else orjson.dumps(read()).decode()

    limits = Limits(operation_timeout=BURST_TIMEOUT)
    if "ANYQL_BENCH_MAX_CONNECTIONS" in os.environ:
        limits = replace(limits, max_connections=int(os.environ["ANYQL_BENCH_MAX_CONNECTIONS"]))
    app = GraphQL(schema, broadcast=Broadcast(), graphiql=False, limits=limits)
    return app


shared_app = make_app(shared=True)
unshared_app = make_app(shared=False)
