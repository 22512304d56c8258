"""An app whose code refuses to end: a subscription source that swallows cancellation and
shields an hour-long cleanup, a query resolver that blocks the event loop for an hour
(saying so on stderr first), and one that sleeps an hour in a worker thread it abandons
when cancelled (on asyncio a non-daemon thread Python waits for at exit), one that logs
a megabyte (blocking the loop in the log write when stderr is a pipe nobody reads), and a
mutation that starts a drain from the app's own code. For the bounded-shutdown tests
(``anyql serve`` must still exit). Run as a script
(``python stubborn_app.py PORT BACKEND [--no-watchdog]``) it serves itself with
``anyql.run(shutdown_watchdog=True)`` (or without the watchdog), logging at INFO."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio

from anyql import GraphQL, Limits, Schema

schema = Schema(
    "type Query { ok: Boolean blocking: Boolean threaded: Boolean flooding: Boolean }"
    " type Mutation { drain: Boolean }"
    " type Subscription { stubborn: Int! }"
)

#: What the blocking resolver prints on stderr just before it blocks the loop.
BLOCKING = "stubborn_app: blocking the event loop"
#: What the threaded resolver prints on stderr just before its thread starts sleeping.
THREADED = "stubborn_app: sleeping in a worker thread"
#: What the flooding resolver prints on stdout just before it logs a megabyte to stderr.
FLOODING = "stubborn_app: logging a megabyte"


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


@schema.field("Query.flooding")
def flooding(root: Any, info: Any) -> bool:
    print(FLOODING, flush=True)  # on stdout: the test never reads stderr
    # A stderr pipe nobody reads fills up: the loop blocks in this write, holding the
    # logging handler's lock.
    logging.getLogger("anyql.stubborn_app").warning("%s", "x" * (1 << 20))
    return True


@schema.field("Mutation.drain")
async def drain(root: Any, info: Any) -> bool:
    assert app.server is not None
    await app.server.drain()  # the app's own code starts the shutdown
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

    logging.basicConfig(level=logging.INFO)
    watchdog = "--no-watchdog" not in sys.argv[3:]
    anyql.run(app, port=int(sys.argv[1]), backend=sys.argv[2], shutdown_watchdog=watchdog)
    print("stubborn_app: run() returned", file=sys.stderr, flush=True)
