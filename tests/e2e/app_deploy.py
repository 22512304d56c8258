"""The app of the zero-loss deploy test (tests/e2e/test_zero_loss_deploy.py): a durable
Redis broadcast and one shared subscription that resumes where its client left off.

``ANYQL_TEST_REDIS`` is the Redis URL, ``ANYQL_TEST_PREFIX`` the stream key prefix (each
test run its own), and ``ANYQL_TEST_CLUSTER=1`` makes it a Redis Cluster.
``subscription { ticks }`` yields every number published on ``ticks``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

from anyql import Broadcast, Event, GraphQL, Schema, resume_point
from anyql.broadcast import Retention

broadcast = Broadcast(
    os.environ["ANYQL_TEST_REDIS"],
    durable=True,
    key_prefix=os.environ["ANYQL_TEST_PREFIX"],
    retention=Retention(max_length=100_000, idle_ttl=600),
    publish_timeout=1.0,
    cluster=os.environ.get("ANYQL_TEST_CLUSTER") == "1",
)

schema = Schema(
    """
    type Query { hello: String! }
    type Subscription { ticks: Int! }
    """
)


@schema.field("Query.hello")
def hello(root: Any, info: Any) -> str:
    return "world"


@schema.field("Subscription.ticks", shared=True)
async def ticks(root: Any, info: Any) -> AsyncIterator[Event]:
    async with broadcast.events("ticks", after=resume_point(info)) as events:
        async for event in events:
            yield event


app = GraphQL(schema, broadcast=broadcast)
