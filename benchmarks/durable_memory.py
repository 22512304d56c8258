"""Memory per retained entry of a durable Broadcast: the in-memory ring and a Redis stream.

``python benchmarks/durable_memory.py [--entries 10000] [--redis redis://127.0.0.1:6379/0]``
publishes ``--entries`` copies of one chat-sized message (110 bytes of JSON) on one channel
with ``Retention(max_length=entries)`` and reports bytes per retained entry: for the ring,
what ``tracemalloc`` sees allocated by the publishes (after a GC); for Redis, ``MEMORY USAGE``
of the stream (every node sampled) divided by its length. The Redis key is under a prefix
of its own and deleted afterwards. Without a Redis answering, only the ring is measured.
"""

from __future__ import annotations

import os
import sys

# Run as a script: the repository root, not benchmarks/ (its http.py shadows http), goes first.
if os.path.realpath(sys.path[0]) == os.path.dirname(os.path.realpath(__file__)):
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))

import argparse
import gc
import tracemalloc

import anyio
import coredis
import orjson

from anyql.broadcast import Broadcast, Retention

MESSAGE = {"room": "lobby", "text": "x" * 64, "author": "user-123"}
PREFIX = "anyql-benchmark-durable:"


async def ring(entries: int) -> float:
    broadcast = Broadcast(durable=True, retention=Retention(max_length=entries))
    async with broadcast:
        await broadcast.publish("c", MESSAGE)
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        for _ in range(entries):
            await broadcast.publish("c", MESSAGE)
        gc.collect()
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    return grown / entries


async def redis_stream(url: str, entries: int) -> tuple[float, int]:
    broadcast = Broadcast(
        url, durable=True, key_prefix=PREFIX, retention=Retention(max_length=entries)
    )
    async with broadcast, coredis.Redis.from_url(url) as admin:
        await admin.delete([PREFIX + "c"])
        try:
            for _ in range(entries):
                await broadcast.publish("c", MESSAGE)
            usage = await admin.memory_usage(PREFIX + "c", samples=0)
            length = await admin.xlen(PREFIX + "c")
        finally:
            await admin.delete([PREFIX + "c"])
    return (usage or 0) / length, length


async def main(arguments: argparse.Namespace) -> None:
    size = len(orjson.dumps(MESSAGE))
    print(f"message: {size} bytes of JSON; {arguments.entries} entries")
    print(f"in-memory ring: {await ring(arguments.entries):.0f} bytes per entry")
    try:
        per_entry, length = await redis_stream(arguments.redis, arguments.entries)
    except Exception as error:  # no Redis here: report the ring alone
        print(f"Redis stream: not measured ({error})")
        return
    print(f"Redis stream: {per_entry:.0f} bytes per entry ({length} entries retained)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    anyio.run(main, parser.parse_args())
