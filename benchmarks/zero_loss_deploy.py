"""A deploy that loses nothing, measured: N subscribers move from a drained server to a new
one while a publisher sends a numbered event every 10 ms; optionally Redis is killed and
restarted in the middle.

``python benchmarks/zero_loss_deploy.py [--subscribers 1000] [--seconds 10] [--drain-at 3]
[--drain-window 2] [--redis-restart-at 6] [--json PATH]``

Two ``anyql serve`` processes (native; the first on Trio, the second on asyncio) run
tests/e2e/app_deploy.py: a durable broadcast on a private redis-server (append-only file on,
``appendfsync always``) and ``subscription { ticks }``, which resumes after the client's
last event. Half the subscribers are npm graphql-ws clients with clients/js/resumable.mjs
over WebSocket, half npm ``eventsource`` over SSE (tests/node/deploy_clients.mjs), all
through a TCP proxy in this process that sends new connections to the first server until
the drain starts and to the second from then on, as a load balancer does. Warm-up events
(negative numbers) go out until every client has one; then 0, 1, ... every 10 ms for
``--seconds``. At ``--drain-at`` seconds the first server gets SIGTERM (its drain closes
every connection, spread over ``--drain-window``); at ``--redis-restart-at`` Redis is
SIGKILLed and started again (0: never). A number Redis did not acknowledge is published
again until it is.

Reported: per kind of client, how many received every number exactly once and in order,
the numbers missing or repeated, reconnects, and the longest wait between two events a
client saw (p50, p99, max over clients): the delivery gap a deploy causes.
"""

from __future__ import annotations

import os
import sys

# Run as a script: the repository root, not benchmarks/ (its http.py shadows http), goes first.
if os.path.realpath(sys.path[0]) == os.path.dirname(os.path.realpath(__file__)):
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))

import argparse
import json
import resource
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

from anyql.broadcast import Broadcast, BroadcastError, Retention
from benchmarks._lines import Lines
from benchmarks._servers import free_port, wait_until_listening
from benchmarks._tcp_proxy import tcp_proxy

ROOT = Path(__file__).resolve().parents[1]
NODE_DIR = ROOT / "tests" / "node"
TARGET = "tests.e2e.app_deploy:app"


async def warm_up_until_ready(
    publisher: Broadcast, next_line: Callable[[], Awaitable[str]], interval: float
) -> None:
    """Publish warm-up numbers (negative: not counted) on ``ticks`` every ``interval``
    seconds until the clients report ``ready`` (each has its first event)."""
    async with anyio.create_task_group() as group:

        async def warm_up() -> None:
            n = -1
            while True:
                await publisher.publish("ticks", n)
                n -= 1
                await anyio.sleep(interval)

        group.start_soon(warm_up)
        line = await next_line()
        if line != "ready":
            raise RuntimeError(f"the clients did not get ready: {line!r}")
        group.cancel_scope.cancel()


class Redis:
    """A private redis-server with the append-only file fsynced at every write."""

    def __init__(self, directory: Path) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise SystemExit("redis-server is not installed")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.command = [
            executable,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--dir",
            str(directory),
        ]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_until_listening(self.port, self.process, time.monotonic() + 30)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


def serve(backend: str, port: int, env: dict[str, str], window: float) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "anyql",
        "serve",
        TARGET,
        "--port",
        str(port),
        "--backend",
        backend,
        "--no-access-log",
        "--limit",
        f"drain_window={window}",
        "--limit",
        "max_connections=20000",
    ]
    if shutil.which("taskset"):
        command = ["taskset", "-c", "0", *command]
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_until_listening(port, process, time.monotonic() + 30)
    return process


async def run(args: argparse.Namespace, redis: Redis, env: dict[str, str]) -> dict[str, Any]:
    first_port, second_port = free_port(), free_port()
    first = serve("trio", first_port, env, args.drain_window)
    second = serve("asyncio", second_port, env, args.drain_window)
    current = {"port": first_port}
    events = int(args.seconds * 100)
    try:
        publisher = Broadcast(
            redis.url,
            durable=True,
            key_prefix=env["ANYQL_TEST_PREFIX"],
            retention=Retention(max_length=100_000, idle_ttl=600),
            publish_timeout=1.0,
        )
        async with publisher, tcp_proxy(lambda: current["port"]) as port:
            ws_count = args.subscribers // 2
            command = [
                "node",
                str(NODE_DIR / "deploy_clients.mjs"),
                f"http://127.0.0.1:{port}/graphql",
                f"ws://127.0.0.1:{port}/graphql",
                str(ws_count),
                str(args.subscribers - ws_count),
                str(events - 1),
                str(int(args.seconds + 120)),
            ]
            if shutil.which("taskset"):
                command = ["taskset", "-c", "1", *command]
            async with await anyio.open_process(command, cwd=NODE_DIR) as clients:
                assert clients.stdout is not None
                next_line = Lines(clients.stdout).next

                with anyio.fail_after(120):
                    await warm_up_until_ready(publisher, next_line, 0.1)
                started = time.monotonic()
                drained = restarted = False
                unacknowledged = 0
                for n in range(events):
                    elapsed = time.monotonic() - started
                    if not drained and elapsed >= args.drain_at:
                        drained = True
                        current["port"] = second_port
                        first.send_signal(signal.SIGTERM)
                    if args.redis_restart_at and not restarted and elapsed >= args.redis_restart_at:
                        restarted = True
                        redis.kill()
                        redis.start()
                    while True:
                        try:
                            await publisher.publish("ticks", n)
                            break
                        except BroadcastError:
                            unacknowledged += 1
                            await anyio.sleep(0.05)
                    # the pace: number n goes out at n * 10 ms (no drift from slow publishes)
                    await anyio.sleep(max(0.0, started + (n + 1) / 100 - time.monotonic()))
                with anyio.fail_after(args.seconds + 120):
                    report: list[dict[str, Any]] = json.loads(await next_line())
    finally:
        for process in (first, second):
            if process.poll() is None:
                process.terminate()
            process.wait()
    return analyse(report, events, unacknowledged)


def analyse(report: list[dict[str, Any]], events: int, unacknowledged: int) -> dict[str, Any]:
    by_kind: dict[str, dict[str, Any]] = {}
    for client in report:
        numbers = [n for n in client["numbers"] if n >= 0]
        kind = by_kind.setdefault(
            client["kind"],
            {"clients": 0, "complete": 0, "missing": 0, "repeated": 0, "out_of_order": 0,
             "errors": 0, "reconnects": [], "worst_gap_ms": []},
        )  # fmt: skip
        seen = set(numbers)
        kind["clients"] += 1
        kind["complete"] += numbers == list(range(events))
        kind["missing"] += events - len(seen & set(range(events)))
        kind["repeated"] += len(numbers) - len(seen)
        kind["out_of_order"] += numbers != sorted(numbers)
        kind["errors"] += len(client["errors"])
        kind["reconnects"].append(client["reconnects"])
        kind["worst_gap_ms"].append(client["worstGapMs"])
    for kind in by_kind.values():
        gaps = sorted(kind.pop("worst_gap_ms"))
        kind["worst_gap_ms"] = {
            "p50": statistics.median(gaps),
            "p99": gaps[min(len(gaps) - 1, int(len(gaps) * 0.99))],
            "max": gaps[-1],
        }
        reconnects = kind.pop("reconnects")
        kind["reconnects"] = {"min": min(reconnects), "max": max(reconnects)}
    return {"events": events, "publish_retries": unacknowledged, "kinds": by_kind}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--drain-at", type=float, default=3.0)
    parser.add_argument("--drain-window", type=float, default=2.0)
    parser.add_argument("--redis-restart-at", type=float, default=0.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with tempfile.TemporaryDirectory(prefix="anyql-deploy-") as directory:
        redis = Redis(Path(directory))
        redis.start()
        env = {
            "ANYQL_TEST_REDIS": redis.url,
            "ANYQL_TEST_PREFIX": f"anyql-deploy-{uuid.uuid4().hex[:8]}:",
        }
        try:
            result = anyio.run(run, args, redis, env)
        finally:
            redis.kill()
    result["arguments"] = {k: str(v) for k, v in vars(args).items()}
    print(json.dumps(result, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
