"""An app whose code refuses to end: a subscription source that swallows cancellation and
shields an hour-long cleanup, and a query resolver that blocks the event loop for an hour
(saying so on stderr first). For the bounded-shutdown tests (``anyql serve`` must still
exit)."""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio

from anyql import GraphQL, Limits, Schema

schema = Schema("type Query { ok: Boolean blocking: Boolean } type Subscription { stubborn: Int! }")

#: What the blocking resolver prints on stderr just before it blocks the loop.
BLOCKING = "stubborn_app: blocking the event loop"


@schema.field("Query.blocking")
def blocking(root: Any, info: Any) -> bool:
    print(BLOCKING, file=sys.stderr, flush=True)
    time.sleep(3600)  # blocks the whole event loop: only a thread can end the process now
    return True


@schema.field("Subscription.stubborn")
async def stubborn(root: Any, info: Any) -> AsyncIterator[int]:
    try:
        yield 1
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.sleep(3600)


app = GraphQL(schema, limits=Limits(shutdown_grace=1.0, cleanup_grace=1.0))
