"""Connection fan-out benchmark: anyql's servers against Strawberry, Node and a baseline.

Owns the command line (``python benchmarks/fanout.py --help``) and the run matrix: for each
mode, N, payload size and repeat, every target in turn (anyql server kinds x shared and
unshared subscriptions, then the reference servers ``--compare`` names: Strawberry on
uvicorn, the Node graphql-ws server; then the baseline server that encodes each event once
and only addresses it per subscriber, the load generator's ceiling), each in a fresh server
process; alternate repeats run the targets in reverse order so a drift in machine load does
not favour one side. ``--transport ws,sse`` runs each target over graphql-transport-ws and
over graphql-sse (distinct connections mode: one HTTP connection per subscriber) back to
back, in the order of the repeat, and prints SSE's figures beside WebSocket's; a server
that cannot serve a transport (the Node server: WebSocket only) is left out of it with a
note. The clients look like browsers (``_generator``). With ``--pin auto``
(the default, on 2 or more CPUs) the server runs on one CPU and the generators and this
driver on the others. Before the runs it raises the descriptor limit for the largest N,
and anyql's ``max_connections`` follows N (``_servers``). Writes the results JSON, a PNG
plot and optionally Markdown tables, and prints one table per N, the ratios to each
reference server, and what failed first when connections failed. Imports the standard
library and the ``benchmarks`` helpers.
"""

from __future__ import annotations

import os
import sys

# Run as a script: the repository root, not benchmarks/ (its http.py shadows http), goes first.
if os.path.realpath(sys.path[0]) == os.path.dirname(os.path.realpath(__file__)):
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))

import argparse
import dataclasses
import datetime
import platform
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks._generator import TRANSPORTS
from benchmarks._profile import summarise
from benchmarks._report import (
    REFERENCES,
    Progress,
    print_failures,
    print_ratios,
    print_table,
    print_transports,
    ratio_rows,
    transport_rows,
    write_json,
    write_markdown,
    write_plot,
)
from benchmarks._runs import (
    RunAborted,
    Workload,
    notable_lines,
    run_churn,
    run_fanout,
    run_latency,
)
from benchmarks._servers import (
    ANYQL_KINDS,
    DESCRIPTOR_MARGIN,
    Placement,
    ServerProcess,
    missing,
    raise_nofile,
    unsupported,
)

__all__ = ["main"]

MODES = ("fanout", "latency", "churn")
COMPARABLE = ("strawberry", "node")
DEFAULT_RESULTS = Path(__file__).resolve().parent / "results" / "fanout.json"
Runner = Callable[[ServerProcess, Workload, Progress], dict[str, Any]]
RUNNERS: dict[str, Runner] = {"fanout": run_fanout, "latency": run_latency, "churn": run_churn}


def _names(text: str, allowed: Sequence[str]) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in allowed]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(allowed)}; got {text!r}")
    return names


def _integers(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (every option has a bounded default)."""
    parser = argparse.ArgumentParser(
        prog="fanout.py",
        description="GraphQL subscription fan-out benchmark (graphql-transport-ws or "
        "graphql-sse, 127.0.0.1).",
    )
    add = parser.add_argument
    add(
        "--mode",
        type=lambda t: _names(t, MODES),
        default=["fanout"],
        help="comma list of fanout (saturating bursts), latency (single events to idle "
        "subscribers), churn (subscribe/complete cycles on one connection); default fanout",
    )
    add(
        "--servers",
        type=lambda t: _names(t, ANYQL_KINDS),
        default=list(ANYQL_KINDS),
        help=f"comma list of anyql server kinds (default all: {','.join(ANYQL_KINDS)})",
    )
    add(
        "--transport",
        type=lambda t: _names(t, TRANSPORTS),
        default=["ws"],
        help="comma list of ws (graphql-transport-ws), sse (graphql-sse, distinct "
        "connections mode: one HTTP connection per subscriber); with ws,sse each target runs "
        "over both back to back, alternating with the repeats, and the report sets SSE's "
        "figures beside WebSocket's; churn runs over ws only; default ws",
    )
    add(
        "--sharing",
        type=lambda t: _names(t, ("shared", "unshared")),
        default=["shared", "unshared"],
        help="shared,unshared subscriptions (default both)",
    )
    add(
        "-n",
        "--subscribers",
        type=_integers,
        default=[100, 1000],
        help="comma list of subscriber counts N (default 100,1000)",
    )
    add("-k", "--events", type=int, default=100, help="events per burst, K (default 100)")
    add("--bursts", type=int, default=2, help="bursts per fan-out run (default 2)")
    add(
        "--payload",
        type=_integers,
        default=[16],
        help="comma list of payload sizes in bytes (default 16; e.g. 16,1024)",
    )
    add("--generators", type=int, default=2, help="load-generator processes (default 2)")
    add("--repeats", type=int, default=1, help="runs of each target, alternating (default 1)")
    _add_comparison_and_output_options(parser)
    return parser


def _add_comparison_and_output_options(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add(
        "--compare",
        type=lambda t: _names(t, COMPARABLE),
        default=[],
        help="comma list of reference servers to run beside anyql: strawberry (Strawberry on "
        "uvicorn, the bench extra), node (graphql-ws 6 on ws 8, benchmarks/node_server.mjs; "
        "needs node and `npm ci --prefix tests/node`)",
    )
    add(
        "--no-baseline",
        action="store_true",
        help="skip the baseline server (encodes each event once, no GraphQL: the floor of "
        "CPU per delivery and the generator's ceiling)",
    )
    add("--latency-events", type=int, default=50, help="single events per latency run (default 50)")
    add(
        "--churn-cycles",
        type=int,
        default=100_000,
        help="subscribe/complete cycles per churn run (default 100000)",
    )
    add(
        "--max-seconds",
        type=float,
        default=120.0,
        help="time bound of each latency or churn run (default 120)",
    )
    add(
        "--json",
        type=Path,
        default=DEFAULT_RESULTS,
        help="results file (default benchmarks/results/fanout.json, which git ignores)",
    )
    add("--plot", type=Path, help="PNG plot path (default: the JSON path with .png)")
    add("--no-plot", action="store_true", help="do not draw the plot")
    add(
        "--profile",
        type=Path,
        metavar="DIR",
        help="sample each anyql fan-out run's server with py-spy; stacks and a summary go here",
    )
    add(
        "--profile-native",
        action="store_true",
        help="with --profile: sample C frames too (garbage collector, interpreter)",
    )
    add(
        "--anyql-src",
        type=Path,
        metavar="DIR",
        help="serve the anyql package found in DIR (e.g. `git archive HEAD src | tar -x`) "
        "instead of the installed one, to measure a fixed version",
    )
    add(
        "--pin",
        choices=("auto", "off"),
        default="auto",
        help="auto (default): with 2+ CPUs, the server on the first CPU, the load generators "
        "and this driver on the others; off: let the scheduler place them",
    )
    add(
        "--no-deflate-offer",
        action="store_true",
        help="clients do not offer permessage-deflate (browsers do, and uvicorn and "
        "hypercorn accept it by default): measures every server without compression",
    )
    add(
        "--markdown",
        type=Path,
        metavar="FILE",
        help="also write the fan-out results as Markdown tables, one per N",
    )
    add("--quiet", action="store_true", help="no progress bar")


def _targets(args: argparse.Namespace, mode: str, repeat: int) -> list[tuple[str, str, str]]:
    """(kind, sharing, transport) of every run of one workload and repeat, in run order: each
    server and sharing over each transport it serves, back to back (reversed on odd repeats,
    so the transports alternate too)."""
    servers = [(kind, sharing) for kind in args.servers for sharing in args.sharing]
    servers += [(reference, "unshared") for reference in args.compare]
    if not args.no_baseline:
        servers.append(("baseline", "shared"))
    transports = args.transport if mode != "churn" else ["ws"]
    targets = [
        (kind, sharing, transport)
        for kind, sharing in servers
        for transport in transports
        if unsupported(kind, transport) is None
    ]
    return targets[::-1] if repeat % 2 else targets


def _one_run(
    args: argparse.Namespace,
    mode: str,
    kind: str,
    sharing: str,
    workload: Workload,
    progress: Progress,
) -> dict[str, Any]:
    """One run in a fresh server process.

    Raises:
        RunAborted: the run failed; its details hold the server's last warnings and errors.
    """
    placement: Placement = args.placement
    server = ServerProcess(
        kind, sharing, source=args.anyql_src, cpus=placement.server, connections=workload.n
    )
    with server:
        try:
            return _measure(args, mode, server, workload, progress)
        except Exception as error:
            details = dict(getattr(error, "details", {}))
            details["server_log"] = notable_lines(server.log_tail(500).splitlines())
            details["server_exit_code"] = server.process.poll() if server.process else None
            text = str(error) if isinstance(error, RunAborted) else repr(error)
            raise RunAborted(text, details) from error


def _measure(
    args: argparse.Namespace,
    mode: str,
    server: ServerProcess,
    workload: Workload,
    progress: Progress,
) -> dict[str, Any]:
    if mode == "fanout" and args.profile and server.kind not in REFERENCES:
        args.profile.mkdir(parents=True, exist_ok=True)
        stem = (
            f"{server.kind}-{server.sharing}-{workload.transport}-n{workload.n}-{workload.payload}b"
        )
        raw = args.profile / f"{stem}.txt"
        result = run_fanout(server, workload, progress, raw, args.profile_native)
        if raw.exists():
            (args.profile / f"{stem}.summary.txt").write_text(summarise(raw) + "\n")
        return result
    return RUNNERS[mode](server, workload, progress)


def _matrix(args: argparse.Namespace, progress: Progress) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    for mode in args.mode:
        sizes = args.subscribers if mode != "churn" else [1]
        payloads = args.payload if mode != "churn" else [16]
        for n in sizes:
            for payload in payloads:
                workload = Workload(
                    n=n, k=args.events, bursts=args.bursts, payload=payload,
                    generators=args.generators, latency_events=args.latency_events,
                    churn_cycles=args.churn_cycles, max_seconds=args.max_seconds,
                    generator_cpus=args.placement.generators,
                    offer_deflate=not args.no_deflate_offer,
                )  # fmt: skip
                for repeat in range(args.repeats):
                    for kind, sharing, transport in _targets(args, mode, repeat):
                        over = dataclasses.replace(workload, transport=transport)
                        label = (
                            f"{mode} {kind}/{sharing} {transport} N={n} {payload} B #{repeat + 1}"
                        )
                        progress.say(f"run: {label}")
                        try:
                            result = _one_run(args, mode, kind, sharing, over, progress)
                        except Exception as error:  # one failed run must not lose the others
                            progress.say(f"run failed: {label}: {error}")
                            result = {"mode": mode, "server": kind, "sharing": sharing, "n": n}
                            result.update(payload=payload, transport=transport, failed=str(error))
                            result.update(getattr(error, "details", {}))
                        result["repeat"] = repeat
                        runs.append(result)
    return runs


def _source_state() -> dict[str, Any]:
    """The commit the server code came from and the files changed since (read-only git)."""
    root = Path(__file__).resolve().parents[1]

    def git(*words: str) -> str:
        try:
            done = subprocess.run(["git", *words], cwd=root, capture_output=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return done.stdout.decode(errors="replace").strip()

    changed = git("status", "--porcelain", "--", "src")
    return {"commit": git("rev-parse", "HEAD"), "changed": changed.splitlines()}


def _prepare(args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    """Drop the reference servers that cannot run here, pin this driver, raise the fd limit.

    Returns:
        What was done, for the results' ``meta``.
    """
    skipped = {}
    for reference in list(args.compare):
        reason = missing(reference)
        if reason is not None:
            progress.say(f"skipping --compare {reference}: {reason}")
            skipped[reference] = reason
            args.compare.remove(reference)
    references = [*args.compare, *([] if args.no_baseline else ["baseline"])]
    for kind in references:
        for transport in args.transport:
            reason = unsupported(kind, transport)
            if reason is not None:
                progress.say(f"{kind} runs over {transport} skipped: {reason}")
                skipped[f"{kind} over {transport}"] = reason
    args.placement = Placement.choose(args.pin)
    if args.placement.generators:
        os.sched_setaffinity(0, args.placement.generators)  # the driver stays off the server
    nofile = raise_nofile(max(args.subscribers) + DESCRIPTOR_MARGIN)
    if nofile["soft"] < max(args.subscribers) + DESCRIPTOR_MARGIN:
        progress.say(f"warning: descriptor limit {nofile['soft']}: {nofile['error']}")
    return {"skipped": skipped, "pinning": args.placement.as_dict(), "nofile": nofile}


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
        "clients": "browser-like: Chrome's upgrade headers (Origin, User-Agent, "
        "permessage-deflate offered), a UUID4 operation id per connection",
        "transports": list(args.transport),
        "sse_clients": "graphql-sse distinct connections mode as Chrome's fetch sends it: one "
        "HTTP/1.1 connection per subscriber, a POST with Accept: text/event-stream; event: "
        "next deliveries counted",
        "deflate_offered": not args.no_deflate_offer,
        "note": "loopback only; see pinning for which cores the server and the generators "
        "had; other processes on the machine make the figures noisy (see loadavg_before "
        "per run)",
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark.

    Args:
        argv: arguments after the program name; ``sys.argv[1:]`` when None.

    Returns:
        0 when every run completed with every delivery, 1 when a run failed or missed events.
    """
    args = build_parser().parse_args(argv)
    progress = Progress(enabled=not args.quiet)
    meta = _meta(args, argv)
    meta.update(_prepare(args, progress))
    runs = _matrix(args, progress)
    good = [r for r in runs if "failed" not in r]
    print_table(good)
    comparisons = [row for versus in REFERENCES for row in ratio_rows(good, versus)]
    print_ratios(comparisons)
    transports = transport_rows(good)
    print_transports(transports)
    print_failures(runs)
    meta["loadavg_at_end"] = list(os.getloadavg())
    document = {"meta": meta, "runs": runs, "comparisons": comparisons, "transports": transports}
    write_json(args.json, document)
    print(f"results written to {args.json}")
    if args.markdown:
        write_markdown(args.markdown, good, comparisons)
        print(f"tables written to {args.markdown}")
    if not args.no_plot:
        print(write_plot(args.plot or args.json.with_suffix(".png"), good))
    failed = len(runs) - len(good) + sum(1 for r in good if r.get("missed", 0) > 0)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
