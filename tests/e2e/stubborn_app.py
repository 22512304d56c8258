"""An app whose subscription source refuses to end: it swallows cancellation and shields an
hour-long cleanup. For the bounded-shutdown tests (``anyql serve`` must still exit)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio

from anyql import GraphQL, Limits, Schema

schema = Schema("type Query { ok: Boolean } type Subscription { stubborn: Int! }")


@schema.field("Subscription.stubborn")
async def stubborn(root: Any, info: Any) -> AsyncIterator[int]:
    try:
        yield 1
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.sleep(3600)


app = GraphQL(schema, limits=Limits(shutdown_grace=1.0, cleanup_grace=1.0))
