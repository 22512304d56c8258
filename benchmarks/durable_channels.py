"""Durable Broadcast on Redis: what one event costs a process that reads many channels.

Per-user channels pile up: a server may read thousands of channels while events arrive on
a few. A reader process (pinned to one core) subscribes ``N`` plain channels on a durable
``Broadcast``; this process (on the other core) publishes ``--events`` events on one of them
at ``--rate`` per second (0: as fast as it can, which lets a reader batch) and the reader
reports when the last arrived and its own CPU time. Printed per ``N``: deliveries per
second and the reader's CPU microseconds per delivery.

``--compare SRC`` runs the same workload with another checkout's ``src`` directory too (for
example a ``git worktree`` of an earlier commit), alternating the two, so before/after
figures come from one run. Needs Redis (``--redis``, 127.0.0.1:6379 by default).
"""

from __future__ import annotations

import os
import sys

# Run as a script: the repository root, not benchmarks/ (its http.py shadows http), goes first.
if os.path.realpath(sys.path[0]) == os.path.dirname(os.path.realpath(__file__)):
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))

import argparse
import json
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parents[1]


async def read(url: str, prefix: str, channels: int, events: int) -> None:
    """The reader: subscribe ``channels`` channels, say so, then wait for ``events`` events
    on the last one and print the figures as JSON."""
    from contextlib import AsyncExitStack

    from anyql.broadcast import Broadcast

    async with (
        Broadcast(
            url, durable=True, key_prefix=prefix, publish_timeout=30, buffer=events + 1
        ) as broadcast,
        AsyncExitStack() as stack,
    ):
        subscriptions = [
            await stack.enter_async_context(broadcast.subscribe(f"c{n}"))
            for n in range(channels)
        ]
        print("ready", flush=True)
        target = subscriptions[-1]
        first = await target.__anext__()  # the publisher's start
        started, cpu = time.perf_counter(), time.process_time()
        for _ in range(events):
            await target.__anext__()
        elapsed, used = time.perf_counter() - started, time.process_time() - cpu
        print(json.dumps({"start": first, "seconds": elapsed, "cpu_s": used}), flush=True)


async def publish(url: str, prefix: str, channel: str, events: int, rate: float) -> None:
    from anyql.broadcast import Broadcast

    async with Broadcast(url, durable=True, key_prefix=prefix) as broadcast:
        await broadcast.publish(channel, {"start": True})
        started = time.monotonic()
        for n in range(events):
            if rate:
                await anyio.sleep(max(0.0, started + n / rate - time.monotonic()))  # pacing
            await broadcast.publish(channel, {"n": n})


def one_run(src: Path, url: str, channels: int, events: int, rate: float) -> dict[str, Any]:
    prefix = f"anyql-bench:{uuid.uuid4().hex[:8]}:"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), str(ROOT)])}
    command = [sys.executable, __file__, "--role", "reader", "--redis", url, "--prefix", prefix]
    command += ["--channels", str(channels), "--events", str(events)]
    if hasattr(os, "sched_setaffinity"):
        command = ["taskset", "-c", "1", *command]
    reader = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout is not None
        if reader.stdout.readline().strip() != "ready":
            raise RuntimeError("the reader did not start")
        anyio.run(publish, url, prefix, f"c{channels - 1}", events, rate)
        line = reader.stdout.readline()
        reader.wait(timeout=120)
    finally:
        reader.kill()
        reader.wait()
    figures = json.loads(line)
    return {
        "src": str(src),
        "channels": channels,
        "events": events,
        "rate": rate,
        "deliveries_per_s": round(events / figures["seconds"]),
        "reader_cpu_us_per_delivery": round(figures["cpu_s"] / events * 1e6, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--channels", default="1,1000,3000,10000")
    parser.add_argument("--events", type=int, default=2_000)
    parser.add_argument("--rate", type=float, default=500.0, help="events per second; 0: flat out")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--compare", type=Path, help="another checkout's src directory")
    parser.add_argument("--json", type=Path, help="write the raw runs here")
    parser.add_argument("--role", choices=["reader"], help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "reader":
        anyio.run(read, args.redis, args.prefix, int(args.channels), args.events)
        return 0
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    sources = [ROOT / "src", *([args.compare.resolve()] if args.compare else [])]
    runs = []
    for channels in (int(n) for n in args.channels.split(",")):
        for _ in range(args.repeat):
            for src in sources:  # alternating: the machine is shared and noisy
                run = one_run(src, args.redis, channels, args.events, args.rate)
                runs.append(run)
                print(
                    f"{run['src']}: {channels:>6} channels: {run['deliveries_per_s']:>6}/s,"
                    f" {run['reader_cpu_us_per_delivery']:>7} us CPU per delivery",
                    flush=True,
                )
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
