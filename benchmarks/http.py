"""HTTP query benchmark: anyql's servers against Strawberry and Ariadne, loaded by autocannon.

Owns the command line (``python benchmarks/http.py --help``) and the run matrix. Every
server serves the same schema over the same prebuilt data (``_http_schema``): anyql's
``benchmarks/http_app.py`` under ``anyql serve`` (``--backend trio,asyncio``; hypercorn too
with ``--anyql-server native,hypercorn``), and with ``--compare strawberry,ariadne``
``benchmarks/http_strawberry_app.py`` and ``benchmarks/http_ariadne_app.py`` on uvicorn.
Three workloads: ``hello`` (1 field), ``list`` (100 objects of 7 fields, 701 fields) and
``nested`` (20 users x 10 posts x 3 comments, 3,261 fields); a request's resolved fields are
every field of its response, counted once per object it is resolved on (a list field once,
plus its objects' fields; ``_http_schema.count_fields``).

The servers start together, each in its own process, pinned to one CPU; autocannon
(``npm ci --prefix benchmarks``) and this driver run on the others (``--pin auto``, the
default, is what ``taskset`` would do: ``sched_setaffinity``, inherited by children).
Each server's answer to each workload is checked against the expected data before any
load (and again after the rounds); a server that answers wrongly is not measured. A
warm-up round (``--warmup`` seconds per server and workload) is discarded; then
``--rounds`` measured rounds, each running every workload on every server in turn,
alternate rounds in reverse server order, so a drift in machine load touches every server
alike. Per server and workload: req/s (median, range), latency p50 and p99, server CPU per
request and per resolved field (``/proc`` ``utime + stime`` of the server's process tree
over the round), the generator's CPU share, errors (connection errors, timeouts, non-2xx;
a server with any is flagged), and for anyql the share of operations and fields that took
the planned execution path (``app.engine.plan_stats()`` read through ``Query.planStats``
before and after each round; ``n/a`` while the engine has no such method). Writes the
results JSON, optionally Markdown tables and a PNG plot, and prints a table per workload.
This file shadows the standard library's ``http`` package for any script run with
benchmarks/ first on its path, so every script here starts by putting the repository root
there instead (see ``benchmarks/__init__.py``). Imports the standard library and the
``benchmarks`` helpers.
"""

from __future__ import annotations

import os
import sys

# Run as a script: the repository root, not benchmarks/ (its http.py shadows http), goes first.
if os.path.realpath(sys.path[0]) == os.path.dirname(os.path.realpath(__file__)):
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))

import argparse
import datetime
import platform
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from benchmarks._http_report import print_summary, summarise, write_markdown, write_plot
from benchmarks._http_runs import (
    ANYQL_BACKENDS,
    ANYQL_RUNNERS,
    REFERENCES,
    HTTPServer,
    Load,
    autocannon_missing,
    autocannon_version,
    read_plan_stats,
    run_round,
    server_missing,
    verify,
)
from benchmarks._http_schema import WORKLOADS
from benchmarks._report import Progress, write_json
from benchmarks._servers import Placement
from benchmarks.fanout import _names, _source_state

__all__ = ["build_parser", "main"]

DEFAULT_RESULTS = Path(__file__).resolve().parent / "results" / "http.json"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (every option has a bounded default)."""
    parser = argparse.ArgumentParser(
        prog="http.py",
        description="GraphQL-over-HTTP query benchmark (autocannon, POST application/json, "
        "127.0.0.1).",
    )
    add = parser.add_argument
    add(
        "--workloads",
        type=lambda t: _names(t, tuple(WORKLOADS)),
        default=list(WORKLOADS),
        help=f"comma list of {', '.join(WORKLOADS)} (default all)",
    )
    add(
        "--backend",
        type=lambda t: _names(t, ANYQL_BACKENDS),
        default=list(ANYQL_BACKENDS),
        help="comma list of anyql backends: trio, asyncio (default both)",
    )
    add(
        "--anyql-server",
        type=lambda t: _names(t, ANYQL_RUNNERS),
        default=["native"],
        help="comma list of how anyql is served: native (`anyql serve`, the default), "
        "hypercorn (hypercorn's trio or asyncio worker)",
    )
    add(
        "--compare",
        type=lambda t: _names(t, REFERENCES),
        default=[],
        help="comma list of reference servers on uvicorn: strawberry, ariadne (the bench "
        "extra); default none",
    )
    add("-c", "--connections", type=_count, default=32, help="keep-alive connections (default 32)")
    add("--duration", type=_count, default=10, help="seconds per measured round (default 10)")
    add(
        "--warmup",
        type=_seconds,
        default=3,
        help="seconds of the discarded warm-up round per server and workload (default 3; 0: none)",
    )
    add("--rounds", type=_count, default=3, help="measured rounds (default 3)")
    add(
        "--pin",
        choices=("auto", "off"),
        default="auto",
        help="auto (default): with 2+ CPUs, the servers on the first CPU, autocannon and this "
        "driver on the others; off: let the scheduler place them",
    )
    add(
        "--anyql-src",
        type=Path,
        metavar="DIR",
        help="serve the anyql package found in DIR instead of the installed one",
    )
    add(
        "--before",
        type=Path,
        metavar="DIR",
        help="also serve anyql's servers from the anyql package in DIR (e.g. an older "
        "commit's src/), as KIND@before, alternating with the others in the same run",
    )
    add(
        "--json",
        type=Path,
        default=DEFAULT_RESULTS,
        help="results file (default benchmarks/results/http.json, which git ignores)",
    )
    add("--plot", type=Path, help="PNG plot path (default: the JSON path with .png)")
    add("--no-plot", action="store_true", help="do not draw the plot")
    add("--markdown", type=Path, metavar="FILE", help="also write the tables as Markdown")
    add("--quiet", action="store_true", help="no progress bar")
    return parser


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _seconds(text: str) -> int:
    """Whole seconds, 0 or more (autocannon rounds a fraction up)."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected whole seconds (0 or more), got {text!r}")
    return value


def _kinds(args: argparse.Namespace) -> list[str]:
    anyql = [f"{runner}-{backend}" for runner in args.anyql_server for backend in args.backend]
    before = [f"{kind}@before" for kind in anyql] if args.before else []
    return [*anyql, *before, *args.compare]


def _start(
    args: argparse.Namespace, stack: ExitStack, progress: Progress, document: dict[str, Any]
) -> list[HTTPServer]:
    """Start every server and check its answers; return those that answered correctly."""
    started = []
    for kind in _kinds(args):
        reason = server_missing(kind)
        if reason is not None:
            progress.say(f"skipping {kind}: {reason}")
            document["meta"]["skipped"][kind] = reason
            continue
        progress.say(f"starting {kind}")
        source = args.before if kind.endswith("@before") else args.anyql_src
        server = HTTPServer(kind, source=source, cpus=args.placement.server)
        try:
            stack.enter_context(server)
        except (RuntimeError, TimeoutError) as error:
            progress.say(f"{kind} did not start: {error}")
            document["servers"][kind] = {"failed": f"did not start: {error}"}
            continue
        checks = {name: verify(server, WORKLOADS[name]) for name in args.workloads}
        document["servers"][kind] = {
            "command": server.command(),
            "verified": checks,
            "process": server.placement(),
            "plan_stats_available": read_plan_stats(server) is not None,
        }
        wrong = {name: check["problem"] for name, check in checks.items() if not check["ok"]}
        if wrong:
            for name, problem in wrong.items():
                progress.say(f"{kind} answers {name} wrongly, not measured: {problem}")
            document["servers"][kind]["failed"] = f"wrong answers: {sorted(wrong)}"
            continue
        started.append(server)
    return started


def _rounds(
    args: argparse.Namespace, servers: list[HTTPServer], progress: Progress
) -> list[dict[str, Any]]:
    """The warm-up round, then the measured rounds, servers alternating in order."""
    load = Load(args.connections, args.duration, args.placement.generators)
    plan = [(-1, servers)] if args.warmup > 0 else []
    plan += [(i, servers[::-1] if i % 2 else servers) for i in range(args.rounds)]
    runs: list[dict[str, Any]] = []
    dead: set[str] = set()
    for number, order in plan:
        warmup = number < 0
        this_load = Load(load.connections, args.warmup, load.cpus) if warmup else load
        for name in args.workloads:
            for server in order:
                if server.kind in dead:
                    continue
                which = "warm-up" if warmup else f"round {number + 1}/{args.rounds}"
                label = f"{which} {name} {server.kind}"
                try:
                    run = run_round(server, WORKLOADS[name], this_load, progress, label)
                except (RuntimeError, OSError, ValueError, KeyError) as error:
                    progress.say(f"{label} failed: {error}")
                    run = {"server": server.kind, "workload": name, "failed": str(error)}
                run.update(round=number, warmup=warmup)
                runs.append(run)
                if server.process is not None and server.process.poll() is not None:
                    progress.say(f"{server.kind} exited:\n{server.log_tail()}")
                    dead.add(server.kind)
    return runs


def _meta(args: argparse.Namespace, argv: Sequence[str] | None) -> dict[str, Any]:
    return {
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "argv": list(sys.argv[1:] if argv is None else argv),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": list(os.getloadavg()),
        "anyql_source": _source_state(),
        "anyql_src_override": str(args.anyql_src) if args.anyql_src else None,
        "before_src": str(args.before) if args.before else None,
        "generator": f"autocannon {autocannon_version()}",
        "load": {
            "connections": args.connections,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "rounds": args.rounds,
            "request": "POST /graphql, content-type and accept application/json, "
            'body {"query": ...}, keep-alive',
        },
        "fields_counted": "every field in the response, once per object it is resolved on: "
        "a list field once, plus the fields of each of its objects",
        "skipped": {},
        "note": "loopback only; servers started together and idle while another is loaded; "
        "library defaults (anyql closes a keep-alive connection after "
        "max_requests_per_connection=1000); access logs off; uvicorn with its default "
        "loop and HTTP parser as installed; other processes on the machine make the "
        "figures noisy (see loadavg_before per round)",
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark.

    Returns:
        0 when every server answered correctly and every round was clean; 1 when a server
        answered wrongly or failed, or a round had errors, timeouts or non-2xx answers; 2
        when autocannon is not installed.
    """
    args = build_parser().parse_args(argv)
    progress = Progress(enabled=not args.quiet and sys.stderr.isatty())
    reason = autocannon_missing()
    if reason is not None:
        print(f"http.py needs autocannon: {reason}", file=sys.stderr)
        return 2
    args.placement = Placement.choose(args.pin)
    if args.placement.generators:
        os.sched_setaffinity(0, args.placement.generators)  # the driver and autocannon
    document: dict[str, Any] = {"meta": _meta(args, argv), "servers": {}}
    document["meta"]["pinning"] = args.placement.as_dict()
    document["workloads"] = {
        name: {
            "query": WORKLOADS[name].query,
            "description": WORKLOADS[name].description,
            "fields_per_request": WORKLOADS[name].fields,
        }
        for name in args.workloads
    }
    with ExitStack() as stack:
        servers = _start(args, stack, progress, document)
        time.sleep(0.5)  # let the servers settle before any load
        runs = _rounds(args, servers, progress)
        for server in servers:  # the answers are still right after the load
            after = {name: verify(server, WORKLOADS[name]) for name in args.workloads}
            document["servers"][server.kind]["verified_after"] = after
            if not all(check["ok"] for check in after.values()):
                document["servers"][server.kind]["failed"] = "wrong answers after the rounds"
    summary = summarise(runs)
    print_summary(summary)
    failed = [kind for kind, info in document["servers"].items() if "failed" in info]
    for kind in failed:
        print(f"FAILED {kind}: {document['servers'][kind]['failed']}")
    document["meta"]["loadavg_at_end"] = list(os.getloadavg())
    document.update(runs=runs, summary=summary)
    write_json(args.json, document)
    print(f"results written to {args.json}")
    if args.markdown:
        write_markdown(args.markdown, summary)
        print(f"tables written to {args.markdown}")
    if not args.no_plot:
        print(write_plot(args.plot or args.json.with_suffix(".png"), summary))
    flagged = any(row["flagged"] for row in summary)
    return 1 if failed or flagged or not servers else 0


if __name__ == "__main__":
    raise SystemExit(main())
