"""The anyql app the drain benchmark (``benchmarks/drain.py``) serves, as server A and B.

Owns ``app``: ``Subscription.held`` yields one event (``1``) and then waits forever, so each
subscription lives until the server closes its connection; ``Query.ok`` answers ``true``;
``readiness_path="/ready"``. Limits are the library defaults: the benchmark gives server A
its drain on the command line (``anyql serve --limit drain_delay=... --limit
drain_window=...``) and runs server B with the defaults (no drain). Imports anyio and anyql.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio

from anyql import GraphQL, Schema

__all__ = ["READINESS_PATH", "SDL", "app"]

SDL = "type Query { ok: Boolean! }  type Subscription { held: Int! }"
READINESS_PATH = "/ready"

schema = Schema(SDL)
schema.field("Query.ok")(lambda root, info: True)


@schema.field("Subscription.held")
async def held(root: Any, info: Any) -> AsyncIterator[int]:
    """One event, then nothing until the connection ends."""
    yield 1
    await anyio.sleep_forever()


app = GraphQL(schema, graphiql=False, readiness_path=READINESS_PATH)
