"""Where the memory of an idle subscribed connection goes: tracemalloc on the native server.

Owns a small command line: it starts the benchmark app on the native server in a child
process with ``tracemalloc`` on, takes a snapshot after warm-up and another once N
subscribers are live (SIGUSR1 asks the child for each), and prints the RSS and the traced
Python allocations per subscriber, with the source lines that allocated most. Imports the
standard library, anyio and anyql (in the child), and the benchmark helpers.

Run: ``python benchmarks/memory_probe.py -n 1000 --sharing shared --backend trio``.
"""

from __future__ import annotations

import os
import sys

# Run as a script: the repository root, not benchmarks/ (its http.py shadows http), goes first.
if os.path.realpath(sys.path[0]) == os.path.dirname(os.path.realpath(__file__)):
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))

import argparse
import gc
import signal
import time
import tracemalloc
from pathlib import Path

from benchmarks._report import Progress
from benchmarks._runs import Generators, _subscribe_all, publish
from benchmarks._servers import ROOT, ServerProcess, free_port

__all__ = ["main"]

_PACKAGES = ("anyql", "trio", "anyio", "h11", "wsproto", "graphql", "outcome", "benchmarks")


def _serve(port: int, sharing: str, backend: str, snapshots: Path, deflate: bool) -> None:
    import anyio

    from anyql.transports.native import serve
    from benchmarks import app as bench

    tracemalloc.start(8)
    app = bench.shared_app if sharing == "shared" else bench.unshared_app

    async def dump_on_signal() -> None:
        taken = 0
        with anyio.open_signal_receiver(signal.SIGUSR1) as signals:
            async for _ in signals:
                tracemalloc.take_snapshot().dump(str(snapshots / f"{taken}.snapshot"))
                gc.collect()
                (snapshots / f"{taken}.gc").write_text(str(len(gc.get_objects())))
                (snapshots / f"{taken}.done").touch()
                taken += 1

    async def main() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(dump_on_signal)
            await serve(app, host="127.0.0.1", port=port, permessage_deflate=deflate)

    anyio.run(main, backend=backend)


def _snapshot(
    server: ServerProcess, snapshots: Path, index: int
) -> tuple[tracemalloc.Snapshot, int]:
    assert server.process is not None
    server.process.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 120
    while not (snapshots / f"{index}.done").exists():
        if time.monotonic() > deadline:
            raise TimeoutError("the server did not write its snapshot")
        time.sleep(0.1)
    tracked = int((snapshots / f"{index}.gc").read_text())
    return tracemalloc.Snapshot.load(str(snapshots / f"{index}.snapshot")), tracked


class _ProbeServer(ServerProcess):
    def __init__(
        self, sharing: str, backend: str, snapshots: Path, source: Path | None, deflate: bool
    ) -> None:
        super().__init__("native-" + backend, sharing, port=free_port(), source=source)
        self.backend = backend
        self.snapshots = snapshots
        self.deflate = deflate

    def command(self) -> list[str]:
        return [
            sys.executable, str(ROOT / "benchmarks" / "memory_probe.py"), "--serve",
            "--port", str(self.port), "--sharing", self.sharing, "--backend", self.backend,
            "--snapshots", str(self.snapshots), *(["--deflate"] if self.deflate else []),
        ]  # fmt: skip


def _report(
    n: int,
    rss: tuple[int, int],
    before: tracemalloc.Snapshot,
    after: tracemalloc.Snapshot,
    tracked: tuple[int, int],
    top: int,
) -> None:
    traced = sum(s.size for s in after.statistics("filename")) - sum(
        s.size for s in before.statistics("filename")
    )
    print(f"RSS per subscriber: {(rss[1] - rss[0]) / n:.1f} KiB (with tracemalloc's own overhead)")
    print(f"traced Python allocations per subscriber: {traced / n / 1024:.1f} KiB")
    print(f"GC-tracked objects per subscriber: {(tracked[1] - tracked[0]) / n:.1f}")
    packages: dict[str, int] = {}
    for stat in after.compare_to(before, "filename"):
        path = stat.traceback[0].filename
        name = next((p for p in _PACKAGES if f"/{p}/" in path), "other")
        packages[name] = packages.get(name, 0) + stat.size_diff
    rollup = ", ".join(
        f"{k} {v / n / 1024:.1f}" for k, v in sorted(packages.items(), key=lambda i: -i[1])
    )
    print(f"by package, KiB per subscriber: {rollup}")
    print(f"\ntop {top} source lines, bytes per subscriber (allocation counts per subscriber):")
    for stat in after.compare_to(before, "lineno")[:top]:
        frame = stat.traceback[0]
        where = frame.filename.split("site-packages/")[-1].split("/src/")[-1]
        print(f"{stat.size_diff / n:9.0f} B {stat.count_diff / n:6.1f}  {where}:{frame.lineno}")


def main(argv: list[str] | None = None) -> int:
    """Run the probe (or, with ``--serve``, the traced server it starts).

    Args:
        argv: command-line arguments.

    Returns:
        The exit status.
    """
    parser = argparse.ArgumentParser(description="Memory per idle subscribed connection.")
    parser.add_argument("-n", type=int, default=1000, help="subscribers (default 1000)")
    parser.add_argument("--sharing", choices=("shared", "unshared"), default="shared")
    parser.add_argument("--backend", choices=("trio", "asyncio"), default="trio")
    parser.add_argument("--top", type=int, default=25, help="source lines to list")
    parser.add_argument("--anyql-src", type=Path, help="serve the anyql package found here")
    parser.add_argument(
        "--deflate",
        action="store_true",
        help="accept the clients' permessage-deflate offers (reported separately: a "
        "compressing connection keeps zlib state)",
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--snapshots", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        _serve(args.port, args.sharing, args.backend, args.snapshots, args.deflate)
        return 0
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        snapshots = Path(scratch)
        probe = _ProbeServer(args.sharing, args.backend, snapshots, args.anyql_src, args.deflate)
        with probe as server:
            publish(server, 0, 0)
            rss_before, (before, tracked_before) = server.rss(), _snapshot(server, snapshots, 0)
            with Generators(server.port, args.n, 2) as load:
                live = _subscribe_all(server, load, args.n, Progress(enabled=False))
                time.sleep(0.5)
                rss_after, (after, tracked_after) = server.rss(), _snapshot(server, snapshots, 1)
        compression = "with permessage-deflate" if args.deflate else "no compression"
        print(
            f"{live} of {args.n} subscribers live ({args.sharing}, native {args.backend},"
            f" {compression})"
        )
        tracked = (tracked_before, tracked_after)
        _report(args.n, (rss_before, rss_after), before, after, tracked, args.top)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONPATH", str(ROOT))
    raise SystemExit(main())
