"""An app whose code refuses to end: a subscription source that swallows cancellation and
shields an hour-long cleanup, a query resolver that blocks the event loop for an hour
(saying so on stderr first), and one that sleeps an hour in a worker thread it abandons
when cancelled (on asyncio a non-daemon thread Python waits for at exit). For the
bounded-shutdown tests (``anyql serve`` must still exit). Run as a script
(``python stubborn_app.py PORT BACKEND``) it serves itself with
``anyql.run(shutdown_watchdog=True)``."""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio

from anyql import GraphQL, Limits, Schema

schema = Schema(
    "type Query { ok: Boolean blocking: Boolean threaded: Boolean }"
    " type Subscription { stubborn: Int! }"
)

#: What the blocking resolver prints on stderr just before it blocks the loop.
BLOCKING = "stubborn_app: blocking the event loop"
#: What the threaded resolver prints on stderr just before its thread starts sleeping.
THREADED = "stubborn_app: sleeping in a worker thread"


@schema.field("Query.blocking")
def blocking(root: Any, info: Any) -> bool:
    print(BLOCKING, file=sys.stderr, flush=True)
    time.sleep(3600)  # blocks the whole event loop: only a thread can end the process now
    return True


@schema.field("Query.threaded")
async def threaded(root: Any, info: Any) -> bool:
    print(THREADED, file=sys.stderr, flush=True)
    await anyio.to_thread.run_sync(time.sleep, 3600, abandon_on_cancel=True)
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


if __name__ == "__main__":
    import anyql

    anyql.run(app, port=int(sys.argv[1]), backend=sys.argv[2], shutdown_watchdog=True)
    print("stubborn_app: run() returned", file=sys.stderr, flush=True)
