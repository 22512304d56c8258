"""DataLoader benchmark: an N+1 query over HTTP with and without a loader, and the loader's
own cost per ``load()``, anyql (Trio, asyncio) beside Strawberry and aiodataloader.

Owns the command line (``python benchmarks/dataloader.py --help``), the run matrix and the
goals check. Two parts, in one run:

``micro``: no server. ``_dataloader_micro`` in a child process pinned to the server CPU
(nothing else runs there then): anyql's ``DataLoader`` on asyncio and on Trio (inside
``anyql.loader_scope()``; also through ``anyql.loader(info, batch)`` on every load),
aiodataloader's and Strawberry's on asyncio, each sample in a fresh event loop, the
implementations alternating (reversed every other repeat). Reported per implementation:
median µs per load, wall and CPU, for loads of distinct keys registered in a row and then
awaited in turn (miss: one batch; hit: the same keys again, all cached), for loads each
awaited in its own task (less the same tasks doing nothing), and the cost of entering and
leaving anyql's scope. ``--profile`` adds, next to the JSON, a cProfile (functions by own
time, file:line, calls per load) and a py-spy line profile (self time per file:line) of
loads awaited in turn, for each anyql implementation and for the reference.

``http``: ``{ posts { id title author { id name } } }`` over 1,000 posts by 100 authors
(``_dataloader_schema``), each post's author from a store that answers a call in 2 ms, 4
calls at a time per process. anyql under ``anyql serve`` (``--backend trio,asyncio``) and,
with ``--compare strawberry`` (the default), Strawberry on uvicorn with its own DataLoader;
each as ``loader`` (authors batched by the framework's DataLoader) and ``naive`` (a store
call per post). As in ``http.py``: every server started together in its own process, on
the first CPU, autocannon and this driver on the others (``--pin auto``); each server's
answer checked first, alone, which also counts the store calls of one request exactly;
a discarded warm-up round (``--warmup`` seconds), then ``--rounds`` rounds of every
server in turn, in reverse order every other round. A measured round is a number of
requests (autocannon ``-a``), the server's last req/s times ``--duration``, so that every
request of the round is answered and the store calls per request are exact (a round of
fixed duration ends with requests in flight, which anyql cancels when autocannon
disconnects: their calls so far would count against too many requests). The naive servers are
loaded with ``--naive-connections`` (1 by default): the store is their limit whatever the
connections (one request's 1,000 calls keep its 4 slots busy), and more connections only
lengthen each request (about 0.5 s per connection) and make the count of requests done
in a round coarser. Per server: req/s
(median, range), latency p50/p99, server CPU per request, the store calls per request
(one request alone, and over the rounds), errors. After each round the driver waits until
the store is idle before the next server is loaded.

Writes the results JSON (``--json``) and prints the tables and the goals: one store call
per level per request (2: the posts, then their authors) with a loader; anyql's CPU per
load no higher than aiodataloader's, on both backends. The machine's other load makes every
figure noisy: the load average is recorded per round. Imports the standard library and the
``benchmarks`` helpers (the servers and the child import anyql, anyio and the bench extra).
"""

from __future__ import annotations

import os
import sys

# Run as a script: the repository root, not benchmarks/ (its http.py shadows http), goes first.
if os.path.realpath(sys.path[0]) == os.path.dirname(os.path.realpath(__file__)):
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))

import argparse
import datetime
import json
import platform
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks import _dataloader_micro as micro_benchmark
from benchmarks._dataloader_micro import KINDS, REFERENCE, line_profile
from benchmarks._dataloader_runs import (
    VARIANTS,
    WORKLOAD,
    LoaderServer,
    missing,
    print_micro,
    print_summary,
    run_round,
    summarise,
    verify,
)
from benchmarks._http_runs import Load, autocannon_missing, autocannon_version
from benchmarks._report import Progress, write_json
from benchmarks._servers import ROOT, Placement
from benchmarks.fanout import _names, _source_state

__all__ = ["build_parser", "goals", "main"]

DEFAULT_RESULTS = Path(__file__).resolve().parent / "results" / "dataloader.json"
PARTS = ("micro", "http")
#: The implementations --profile samples: anyql's and the reference.
PROFILED = ("anyql-trio", "anyql-asyncio", REFERENCE)
#: Seconds py-spy samples each profiled implementation for.
SPIN_SECONDS = 8.0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (every option has a bounded default)."""
    parser = argparse.ArgumentParser(
        prog="dataloader.py",
        description="DataLoader benchmark: an N+1 query over HTTP with and without a loader "
        "(autocannon, 127.0.0.1), and the loader's own cost per load() (no server).",
    )
    add = parser.add_argument
    add(
        "--parts",
        type=lambda t: _names(t, PARTS),
        default=list(PARTS),
        help="comma list of micro, http (default both)",
    )
    add(
        "--backend",
        type=lambda t: _names(t, ("trio", "asyncio")),
        default=["trio", "asyncio"],
        help="comma list of anyql backends served: trio, asyncio (default both)",
    )
    add(
        "--compare",
        type=lambda t: [] if t == "none" else _names(t, ("strawberry",)),
        default=["strawberry"],
        help="strawberry (the default: Strawberry on uvicorn, the bench extra) or none",
    )
    add(
        "--variants",
        type=lambda t: _names(t, VARIANTS),
        default=list(VARIANTS),
        help="comma list of loader (batched by a DataLoader), naive (a store call per post); "
        "default both",
    )
    add("-c", "--connections", type=_count, default=8, help="connections per loader server (8)")
    add(
        "--naive-connections",
        type=_count,
        default=1,
        help="connections per naive server (default 1: the store is the limit at any number)",
    )
    add("--duration", type=_count, default=8, help="seconds per measured round (default 8)")
    add("--warmup", type=_seconds, default=2, help="seconds of the warm-up round (default 2)")
    add("--rounds", type=_count, default=3, help="measured rounds (default 3)")
    add("--timeout", type=_count, default=30, help="autocannon's timeout per request, s (30)")
    add("--loads", type=_count, default=1000, help="micro: distinct keys per scope (1,000)")
    add("--scopes", type=_count, default=10, help="micro: scopes per sample (default 10)")
    add("--repeats", type=_count, default=11, help="micro: samples per implementation (11)")
    add(
        "--implementations",
        type=lambda t: _names(t, tuple(KINDS)),
        default=list(KINDS),
        help=f"micro: comma list of {', '.join(KINDS)} (default all)",
    )
    add(
        "--profile",
        action="store_true",
        help="micro: also profile anyql's implementations and the reference (cProfile and "
        "py-spy), written next to the JSON",
    )
    add(
        "--pin",
        choices=("auto", "off"),
        default="auto",
        help="auto (default): with 2+ CPUs, the servers and the micro-benchmark on the first "
        "CPU, autocannon and this driver on the others; off: let the scheduler place them",
    )
    add(
        "--json",
        type=Path,
        default=DEFAULT_RESULTS,
        help="results file (default benchmarks/results/dataloader.json, which git ignores)",
    )
    add("--quiet", action="store_true", help="no progress bar")
    return parser


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _seconds(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected whole seconds (0 or more), got {text!r}")
    return value


def _child(args: argparse.Namespace, config: dict[str, Any], progress: Progress, label: str) -> str:
    """Run ``_dataloader_micro.child`` with ``config`` in a process on the server CPU; its
    stdout.

    Raises:
        RuntimeError: it failed.
    """
    command = [
        sys.executable,
        "-c",
        "from benchmarks._dataloader_micro import child; raise SystemExit(child())",
        json.dumps(config),
    ]
    return _run_pinned(args, command, progress, label)


def _run_pinned(
    args: argparse.Namespace, command: list[str], progress: Progress, label: str
) -> str:
    cpus = args.placement.server
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
    )
    started = time.monotonic()
    output: tuple[bytes, bytes] | None = None
    while output is None:
        try:
            output = process.communicate(timeout=0.2)
        except subprocess.TimeoutExpired:
            elapsed = time.monotonic() - started
            progress.update(f"{label} ({elapsed:.0f} s)", elapsed, elapsed + 1)
    progress.done()
    out, err = output
    if process.returncode != 0:
        raise RuntimeError(f"{label} failed: {err.decode(errors='replace')[-1500:]}")
    return out.decode()


def _micro(
    args: argparse.Namespace, progress: Progress, document: dict[str, Any]
) -> list[dict[str, Any]]:
    kinds = []
    for kind in args.implementations:
        reason = micro_benchmark.missing(kind)
        if reason is None:
            kinds.append(kind)
        else:
            progress.say(f"skipping {kind}: {reason}")
            document["meta"]["skipped"][kind] = reason
    config = {
        "mode": "run",
        "kinds": kinds,
        "loads": args.loads,
        "scopes": args.scopes,
        "repeats": args.repeats,
    }
    samples: list[dict[str, Any]] = json.loads(_child(args, config, progress, "micro-benchmark"))
    document["micro"] = {
        "loads": args.loads,
        "scopes": args.scopes,
        "repeats": args.repeats,
        "reference": REFERENCE,
        "implementations": {
            kind: {"loop": KINDS[kind][0], "how": KINDS[kind][1]} for kind in kinds
        },
        "versions": _versions(),
        "samples": samples,
    }
    rows = micro_benchmark.summarise(samples)
    document["micro"]["summary"] = rows
    if args.profile:
        document["micro"]["profiles"] = _profile(args, progress, kinds)
    return rows


def _versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in ("anyio", "trio", "aiodataloader", "strawberry-graphql", "uvicorn"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def _profile(args: argparse.Namespace, progress: Progress, kinds: list[str]) -> dict[str, Any]:
    """cProfile and py-spy of each profiled implementation; the files written."""
    written: dict[str, Any] = {}
    stem = args.json.with_suffix("")
    beside = Path(sys.executable).parent / "py-spy"
    py_spy = str(beside) if beside.exists() else shutil.which("py-spy")
    for kind in (k for k in PROFILED if k in kinds):
        slug = kind.replace(" ", "-").replace("()", "")
        config = {"mode": "profile", "kind": kind, "loads": args.loads, "scopes": args.scopes}
        text = _child(args, config, progress, f"cProfile {kind}")
        cprofile = Path(f"{stem}-cprofile-{slug}.txt")
        cprofile.write_text(text)
        written[kind] = {"cprofile": str(cprofile)}
        if py_spy is None:
            written[kind]["py_spy"] = "skipped: py-spy is not installed"
            continue
        spin = {
            "mode": "spin",
            "kind": kind,
            "loads": args.loads,
            "scopes": args.scopes,
            "seconds": SPIN_SECONDS,
            "patterns": ["sequential"],
        }
        with tempfile.TemporaryDirectory() as directory:
            raw = Path(directory) / "raw.txt"
            command = [
                py_spy, "record", "--rate", "500", "--format", "raw", "--output", str(raw),
                "--", sys.executable, "-c",
                "from benchmarks._dataloader_micro import child; raise SystemExit(child())",
                json.dumps(spin),
            ]  # fmt: skip
            try:
                _run_pinned(args, command, progress, f"py-spy {kind}")
            except RuntimeError as error:
                written[kind]["py_spy"] = f"failed: {error}"
                continue
            lines = Path(f"{stem}-pyspy-{slug}.txt")
            parts = [
                f"py-spy record --rate 500 of {kind}: samples of loads awaited in turn for"
                f" {SPIN_SECONDS} s (samples of {5 * args.scopes} scopes x {args.loads:,} keys,"
                " miss and hit passes, the collector on as it is by default)",
                "",
                "== every stack (the scheduler's own time included) ==",
                "",
                line_profile(raw),
                "",
                "== only the stacks through the benchmark's task (_sequential) ==",
                "",
                line_profile(raw, within="_sequential"),
            ]
            lines.write_text("\n".join(parts) + "\n")
            written[kind]["py_spy"] = str(lines)
    return written


def _kinds(args: argparse.Namespace) -> list[str]:
    servers = [f"native-{backend}" for backend in args.backend] + list(args.compare)
    return [f"{server}:{variant}" for server in servers for variant in args.variants]


def _start(
    args: argparse.Namespace, stack: ExitStack, progress: Progress, document: dict[str, Any]
) -> tuple[list[LoaderServer], dict[str, Any]]:
    """Start every server and check its answer; those that answered correctly, and each
    one's check (with the store calls of one request)."""
    started, checks = [], {}
    for kind in _kinds(args):
        reason = missing(kind)
        if reason is not None:
            progress.say(f"skipping {kind}: {reason}")
            document["meta"]["skipped"][kind] = reason
            continue
        progress.say(f"starting {kind}")
        server = LoaderServer(kind, cpus=args.placement.server)
        try:
            stack.enter_context(server)
        except (RuntimeError, TimeoutError) as error:
            progress.say(f"{kind} did not start: {error}")
            document["servers"][kind] = {"failed": f"did not start: {error}"}
            continue
        check = checks[kind] = verify(server)
        document["servers"][kind] = {
            "command": server.command(),
            "verified": check,
            "process": server.placement(),
        }
        if not check["ok"]:
            progress.say(f"{kind} answers wrongly, not measured: {check['problem']}")
            document["servers"][kind]["failed"] = f"wrong answer: {check['problem']}"
            continue
        started.append(server)
    return started, checks


def _rounds(
    args: argparse.Namespace, servers: list[LoaderServer], progress: Progress
) -> list[dict[str, Any]]:
    """The warm-up round, then the measured rounds, servers alternating in order."""
    plan = [(-1, servers)] if args.warmup > 0 else []
    plan += [(i, servers[::-1] if i % 2 else servers) for i in range(args.rounds)]
    runs: list[dict[str, Any]] = []
    dead: set[str] = set()
    rates: dict[str, float] = {}  # the last req/s seen per server: sizes its next round
    for number, order in plan:
        warmup = number < 0
        for server in order:
            if server.kind in dead:
                continue
            connections = args.connections if server.variant == "loader" else args.naive_connections
            seconds = args.warmup if warmup else args.duration
            load = Load(connections, seconds, args.placement.generators)
            rate = rates.get(server.kind)
            amount = None if warmup or not rate else max(connections, round(rate * seconds))
            which = "warm-up" if warmup else f"round {number + 1}/{args.rounds}"
            label = f"{which} {server.kind}"
            try:
                run = run_round(server, load, args.timeout, progress, label, amount)
            except (RuntimeError, OSError, ValueError, KeyError) as error:
                progress.say(f"{label} failed: {error}")
                run = {"server": server.kind, "failed": str(error)}
            else:
                if run["req_per_s"] > 0:
                    rates[server.kind] = run["req_per_s"]
            run.update(round=number, warmup=warmup)
            runs.append(run)
            if server.process is not None and server.process.poll() is not None:
                progress.say(f"{server.kind} exited:\n{server.log_tail()}")
                dead.add(server.kind)
    return runs


def _http(
    args: argparse.Namespace, progress: Progress, document: dict[str, Any]
) -> list[dict[str, Any]]:
    document["workload"] = {
        "query": WORKLOAD.query,
        "description": WORKLOAD.description,
        "fields_per_request": WORKLOAD.fields,
        "store": "4 concurrent calls per process (anyio.Semaphore(4)), each anyio.sleep(0.002)",
    }
    with ExitStack() as stack:
        servers, checks = _start(args, stack, progress, document)
        time.sleep(0.5)  # let the servers settle before any load
        runs = _rounds(args, servers, progress)
        for server in servers:  # the answer is still right after the load
            after = verify(server)
            document["servers"][server.kind]["verified_after"] = after
            if not after["ok"]:
                document["servers"][server.kind]["failed"] = "wrong answer after the rounds"
    rows = summarise(runs, checks)
    document["runs"] = runs
    document["summary"] = rows
    return rows


def goals(micro: Sequence[dict[str, Any]], http: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's goals against the figures: ``{"goal", "met" (None: not measured),
    "detail"}``."""
    found = []
    loaders = [row for row in http if row["variant"] == "loader"]
    for row in loaders:
        one, rounds = row["store_calls_one_request"], row["store_calls_per_request"]
        met = None if one is None else one == 2 and abs(rounds - 2) < 0.05
        found.append(
            {
                "goal": f"{row['server']}: one store call per level per request (2)",
                "met": met,
                "detail": f"{one} calls for one request alone, {rounds:.2f} per request over "
                "the rounds",
            }
        )
    reference = next((row for row in micro if row["kind"] == REFERENCE), None)
    for row in micro:
        if not row["kind"].startswith("anyql") or reference is None:
            continue
        ratios = row["vs_reference"]
        for figure, name in (
            ("sequential_miss_cpu_us", "a load of a new key"),
            ("sequential_hit_cpu_us", "a cached load"),
        ):
            ratio = ratios.get(figure)
            found.append(
                {
                    "goal": f"{row['kind']}: CPU per load no higher than {REFERENCE}'s, {name}",
                    "met": None if ratio is None else ratio <= 1.0,
                    "detail": f"{row[figure]['median']:.2f} µs against "
                    f"{reference[figure]['median']:.2f} µs (x{ratio:.2f})"
                    if ratio is not None
                    else "not measured",
                }
            )
    return found


def _meta(args: argparse.Namespace, argv: Sequence[str] | None) -> dict[str, Any]:
    return {
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "argv": list(sys.argv[1:] if argv is None else argv),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": list(os.getloadavg()),
        "anyql_source": _source_state(),
        "generator": f"autocannon {autocannon_version()}" if "http" in args.parts else None,
        "load": {
            "connections_loader": args.connections,
            "connections_naive": args.naive_connections,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "rounds": args.rounds,
            "timeout_s": args.timeout,
            "request": "POST /graphql, content-type and accept application/json, "
            'body {"query": ...}, keep-alive',
        },
        "skipped": {},
        "note": "loopback only; servers started together and idle while another is loaded; "
        "library defaults (anyql's loader: idle_checkpoints=3, max_delay=5 ms); uvicorn with "
        "its default loop (asyncio) and HTTP parser (h11) as installed; the machine is "
        "shared with other work, so the figures are noisy (see loadavg per round)",
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark.

    Returns:
        0 when every server answered correctly and every round was clean; 1 when a server
        answered wrongly or failed, or a round had errors, timeouts or non-2xx answers; 2
        when the http part is asked for and autocannon is not installed.
    """
    args = build_parser().parse_args(argv)
    progress = Progress(enabled=not args.quiet and sys.stderr.isatty())
    if "http" in args.parts:
        reason = autocannon_missing()
        if reason is not None:
            print(f"dataloader.py needs autocannon for its http part: {reason}", file=sys.stderr)
            return 2
    args.placement = Placement.choose(args.pin)
    if args.placement.generators:
        os.sched_setaffinity(0, args.placement.generators)  # the driver and autocannon
    document: dict[str, Any] = {"meta": _meta(args, argv), "servers": {}}
    document["meta"]["pinning"] = args.placement.as_dict()
    micro = _micro(args, progress, document) if "micro" in args.parts else []
    http = _http(args, progress, document) if "http" in args.parts else []
    document["goals"] = goals(micro, http)
    document["meta"]["loadavg_at_end"] = list(os.getloadavg())
    print_micro(micro, document.get("micro", {}))
    print_summary(http)
    print()
    for goal in document["goals"]:
        verdict = {True: "met", False: "MISSED", None: "n/a"}[goal["met"]]
        print(f"{verdict:>6}  {goal['goal']}: {goal['detail']}")
    failed = [kind for kind, info in document["servers"].items() if "failed" in info]
    for kind in failed:
        print(f"FAILED {kind}: {document['servers'][kind]['failed']}")
    write_json(args.json, document)
    print(f"results written to {args.json}")
    for kind, files in document.get("micro", {}).get("profiles", {}).items():
        print(f"profiles of {kind}: {', '.join(str(v) for v in files.values())}")
    flagged = any(row["flagged"] for row in http)
    return 1 if failed or flagged or ("http" in args.parts and not http) else 0


if __name__ == "__main__":
    raise SystemExit(main())
