"""The HTTP half of the DataLoader benchmark: its servers, one measured round, the summary.

Owns ``SERVERS`` and ``VARIANTS`` (a server kind is ``"<server>:<variant>"``: anyql's native
server on Trio or asyncio serving ``benchmarks._dataloader_anyql_app``, Strawberry on
uvicorn serving ``benchmarks._dataloader_strawberry_app``; ``loader`` batches the authors
through the framework's DataLoader, ``naive`` calls the store once per post),
``LoaderServer`` (``_servers.ServerProcess`` with these command lines: access logs off,
uvicorn's log level warning), ``WORKLOAD``, ``read_store_stats`` (``Query.storeStats``,
outside the measured window), ``verify`` (one request alone: its answer against the
expected data, and the store calls it made, exactly), ``run_round`` (one autocannon run,
``_http_runs``' command plus a per-request timeout; afterwards the server's CPU is read,
then the driver waits until the store is idle, so what the server still does for requests
autocannon gave up on does not run into the next server's round) and the report:
``summarise``, ``print_summary`` and ``print_micro``. Imports the standard library and the
``benchmarks`` helpers.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

from ._dataloader_micro import REFERENCE
from ._dataloader_schema import EXPECTED, QUERY
from ._http_runs import (
    SETTLE_SECONDS,
    Load,
    _autocannon,
    _children_cpu,
    autocannon_command,
    post,
    problems,
    stats_delta,
    warnings,
)
from ._http_schema import HTTPWorkload
from ._report import Progress
from ._servers import ServerProcess
from ._servers import missing as server_missing

__all__ = [
    "SERVERS",
    "VARIANTS",
    "WORKLOAD",
    "LoaderServer",
    "http_rows",
    "micro_rows",
    "missing",
    "print_micro",
    "print_summary",
    "read_store_stats",
    "run_round",
    "summarise",
    "verify",
    "wait_idle",
]

SERVERS = ("native-trio", "native-asyncio", "strawberry")
VARIANTS = ("loader", "naive")
APPS = {
    "native": "benchmarks._dataloader_anyql_app",
    "strawberry": "benchmarks._dataloader_strawberry_app",
}
WORKLOAD = HTTPWorkload(
    "posts",
    QUERY,
    EXPECTED,
    "1,000 posts, each with its author (100 distinct), from a store of 4 concurrent 2 ms calls",
)
#: How long the driver waits, after a round, for the store to finish what is left.
IDLE_LIMIT_SECONDS = 60.0


def missing(kind: str) -> str | None:
    """Why ``kind`` cannot be started here (what to install), or None."""
    server = kind.partition(":")[0]
    return server_missing("strawberry") if server == "strawberry" else None


def server_command(kind: str, port: int) -> list[str]:
    """The command line that serves ``kind`` (``"<server>:<variant>"``) on ``port``.

    Raises:
        ValueError: an unknown server or variant.
    """
    server, _, variant = kind.partition(":")
    if server not in SERVERS or variant not in VARIANTS:
        raise ValueError(f"unknown server kind {kind!r}")
    python = sys.executable
    if server == "strawberry":
        return [
            python, "-m", "uvicorn", f"{APPS['strawberry']}:{variant}", "--host", "127.0.0.1",
            "--port", str(port), "--log-level", "warning", "--no-access-log",
            "--backlog", "4096",
        ]  # fmt: skip
    backend = server.partition("-")[2]
    return [
        python, "-m", "anyql", "serve", f"{APPS['native']}:{variant}", "--host", "127.0.0.1",
        "--port", str(port), "--backend", backend, "--no-access-log",
    ]  # fmt: skip


class LoaderServer(ServerProcess):
    """A server of the DataLoader benchmark in its own process; use as a context manager."""

    def command(self) -> list[str]:
        """The command line that starts this server."""
        return server_command(self.kind, self.port)

    @property
    def variant(self) -> str:
        """``loader`` or ``naive``."""
        return self.kind.partition(":")[2]


def read_store_stats(server: ServerProcess) -> dict[str, Any] | None:
    """The store's counters (and anyql's plan counters, ``plan``) from ``Query.storeStats``;
    None when the query failed."""
    try:
        status, body = post(server.port, "{ storeStats }", timeout=10)
        text = json.loads(body)["data"]["storeStats"] if status == 200 else None
        stats = json.loads(text) if isinstance(text, str) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return stats if isinstance(stats, dict) else None


def wait_idle(server: ServerProcess, limit: float = IDLE_LIMIT_SECONDS) -> dict[str, Any]:
    """Wait until no store call is in progress (``active`` 0), at most ``limit`` seconds.

    Returns:
        ``{"idle": bool, "waited_s": float}``.
    """
    started = time.monotonic()
    while True:
        stats = read_store_stats(server)
        idle = stats is not None and stats.get("active") == 0
        waited = time.monotonic() - started
        if idle or waited >= limit:
            return {"idle": idle, "waited_s": waited}
        time.sleep(0.1)


def verify(server: ServerProcess) -> dict[str, Any]:
    """One request alone: its answer against ``EXPECTED``, the store calls and keys it made,
    and how long it took.

    Returns:
        ``{"ok", "status", "problem", "store_calls", "store_keys", "seconds"}``.
    """
    before = read_store_stats(server)
    started = time.monotonic()
    try:
        status, body = post(server.port, QUERY, timeout=60)
    except OSError as error:
        return {"ok": False, "status": None, "problem": f"no answer: {error!r}"}
    seconds = time.monotonic() - started
    after = read_store_stats(server)
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    if status != 200 or not isinstance(document, dict):
        problem: str | None = f"HTTP {status}: {body[:300]!r}"
    elif document != {"data": EXPECTED}:
        problem = f"the response differs from the expected data: {body[:300]!r}"
    elif before is None or after is None:
        problem = "storeStats did not answer"
    else:
        problem = None
    delta = stats_delta(before, after) or {}
    return {
        "ok": problem is None,
        "status": status,
        "problem": problem,
        "store_calls": delta.get("calls"),
        "store_keys": delta.get("keys"),
        "seconds": seconds,
    }


def run_round(
    server: LoaderServer,
    load: Load,
    timeout: int,
    progress: Progress,
    label: str,
    amount: int | None = None,
) -> dict[str, Any]:
    """Load ``server`` with the query on ``load.connections`` connections: ``amount``
    requests (all answered before the round ends), or for ``load.seconds`` without one.

    Returns:
        The round's figures: req/s and latency (autocannon's), server CPU per request (µs,
        the process's CPU over the round and the 0.2 s after it, over the requests
        answered), the store calls and keys per request started (the store's counters over
        the round, read once the store is idle; with ``amount`` every request started is
        answered, so these are exact; in a round of fixed duration the requests autocannon
        gives up on at its end count with the calls they made so far, and anyql cancels
        them), errors, the idle wait.
    """
    before = read_store_stats(server)
    loadavg = list(os.getloadavg())
    cpu_before, children_before = server.cpu(), _children_cpu()
    command = autocannon_command(server.port, WORKLOAD, load)
    if amount is not None:
        at = command.index("-d")
        command[at : at + 2] = ["-a", str(amount)]
    command[-1:-1] = ["-t", str(timeout)]
    raw = _autocannon(command, load, label, progress)
    generator_cpu = _children_cpu() - children_before
    time.sleep(SETTLE_SECONDS)
    server_cpu = server.cpu() - cpu_before
    idle = wait_idle(server)
    after = read_store_stats(server)
    delta = stats_delta(before, after)
    duration = float(raw.get("duration") or 0.0)
    requests = int(raw["requests"]["total"])
    started = (delta or {}).get("requests") or 0
    latency = raw["latency"]
    result: dict[str, Any] = {
        "server": server.kind,
        "variant": server.variant,
        "connections": load.connections,
        "amount": amount,
        "duration_s": duration,
        "requests": requests,
        "requests_2xx": raw.get("2xx", 0),
        "non2xx": raw.get("non2xx", 0),
        "errors": raw.get("errors", 0),
        "timeouts": raw.get("timeouts", 0),
        "req_per_s": requests / duration if duration else math.nan,
        "latency_ms": {key: latency.get(key) for key in ("p50", "p90", "p99", "max", "mean")},
        "server_cpu_s": server_cpu,
        "server_cpu_us_per_request": server_cpu * 1e6 / requests if requests else math.nan,
        "generator_cpu_s": generator_cpu,
        "generator_cpu_percent": 100 * generator_cpu / duration if duration else math.nan,
        "requests_started": started,
        "store_calls_per_request": delta["calls"] / started if delta and started else math.nan,
        "store_keys_per_request": delta["keys"] / started if delta and started else math.nan,
        "store": delta,
        "idle_after": idle,
        "loadavg_before": loadavg,
        "server_process": server.placement(),
        "generator_cpus": list(load.cpus),
    }
    result["problems"] = problems(result)
    if not idle["idle"]:
        result["problems"].append(f"the store was still busy {idle['waited_s']:.0f} s after")
    result["warnings"] = warnings(result)
    return result


def _median(values: Sequence[Any]) -> float:
    numbers = [v for v in values if isinstance(v, int | float) and not math.isnan(v)]
    return statistics.median(numbers) if numbers else math.nan


def summarise(runs: Sequence[dict[str, Any]], checks: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per server kind from its measured rounds, in the order they ran.

    Args:
        runs: every round, warm-up rounds (``warmup: true``) and failed ones included.
        checks: per kind, ``verify``'s answer before the rounds (``store_calls``: the
            exact calls of one request alone).

    Returns:
        Rows with ``req_per_s`` (``median``, ``min``, ``max``), ``latency_ms`` (median
        ``p50``, ``p99``), ``server_cpu_us_per_request``, ``store_calls_one_request``,
        ``store_calls_per_request`` (median over the rounds), ``errors``, ``problems``,
        ``warnings``, ``flagged`` and ``ratios``: req/s over the same server's ``naive``
        (``vs_naive``) and over Strawberry's of the same variant (``vs_strawberry``).
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        if not run.get("warmup"):
            groups.setdefault(run["server"], []).append(run)
    rows = []
    for kind, group in groups.items():
        measured = [r for r in group if "failed" not in r]
        rates = [r["req_per_s"] for r in measured]
        problems_ = [f"round {r['round'] + 1}: {r['failed']}" for r in group if "failed" in r]
        problems_ += [f"round {r['round'] + 1}: {p}" for r in measured for p in r["problems"]]
        rows.append(
            {
                "server": kind,
                "variant": kind.partition(":")[2],
                "rounds": len(measured),
                "connections": measured[0]["connections"] if measured else None,
                "duration_s": _median([r["duration_s"] for r in measured]),
                "req_per_s": {
                    "median": _median(rates),
                    "min": min(rates, default=math.nan),
                    "max": max(rates, default=math.nan),
                },
                "latency_ms": {
                    key: _median([r["latency_ms"][key] for r in measured]) for key in ("p50", "p99")
                },
                "server_cpu_us_per_request": _median(
                    [r["server_cpu_us_per_request"] for r in measured]
                ),
                "store_calls_one_request": (checks.get(kind) or {}).get("store_calls"),
                "store_calls_per_request": _median(
                    [r["store_calls_per_request"] for r in measured]
                ),
                "store_keys_per_request": _median([r["store_keys_per_request"] for r in measured]),
                "generator_cpu_percent": max(
                    (r["generator_cpu_percent"] for r in measured), default=math.nan
                ),
                "errors": sum(r["errors"] + r["timeouts"] + r["non2xx"] for r in measured),
                "problems": problems_,
                "warnings": sorted({w for r in measured for w in r["warnings"]}),
                "flagged": bool(problems_) or not measured,
            }
        )
    by_kind = {row["server"]: row for row in rows}
    for row in rows:
        server, _, variant = row["server"].partition(":")
        rate = row["req_per_s"]["median"]
        naive = by_kind.get(f"{server}:naive")
        strawberry = by_kind.get(f"strawberry:{variant}")
        row["ratios"] = {
            "vs_naive": rate / naive["req_per_s"]["median"]
            if naive and naive is not row and naive["req_per_s"]["median"]
            else None,
            "vs_strawberry": rate / strawberry["req_per_s"]["median"]
            if strawberry and strawberry is not row and strawberry["req_per_s"]["median"]
            else None,
        }
    return rows


def _number(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def _times(value: float | None) -> str:
    return "" if value is None or math.isnan(value) else f"x{value:.2f}"


def _line(cells: Sequence[str], widths: Sequence[int]) -> str:
    first, *rest = zip(cells, widths, strict=True)
    return f"{first[0]:<{first[1]}}" + "".join(f"{cell:>{width}}" for cell, width in rest)


HTTP_HEAD = ["server", "conns", "req/s", "range", "p50 ms", "p99 ms", "µs CPU/req"]
HTTP_HEAD += ["calls/req 1", "calls/req", "errors", "÷ naive", "÷ strawberry"]
HTTP_WIDTHS = [24, 6, 9, 15, 9, 9, 12, 12, 11, 8, 10, 13]


def http_rows(rows: Sequence[dict[str, Any]]) -> list[list[str]]:
    """The cells of the HTTP table, one list per row."""
    table = []
    for row in rows:
        rate = row["req_per_s"]
        table.append(
            [
                row["server"] + ("!" if row["flagged"] else "") + ("?" if row["warnings"] else ""),
                str(row["connections"]),
                _number(rate["median"]),
                f"{_number(rate['min'])}-{_number(rate['max'])}",
                _number(row["latency_ms"]["p50"], 0),
                _number(row["latency_ms"]["p99"], 0),
                _number(row["server_cpu_us_per_request"], 0),
                _number(row["store_calls_one_request"], 0),
                _number(row["store_calls_per_request"], 1),
                f"{row['errors']:,}",
                _times(row["ratios"]["vs_naive"]),
                _times(row["ratios"]["vs_strawberry"]),
            ]
        )
    return table


def print_summary(rows: Sequence[dict[str, Any]], stream: TextIO = sys.stdout) -> None:
    """The HTTP table: one line per server kind (medians of its rounds)."""
    if not rows:
        return
    first = next((row for row in rows if row["rounds"]), rows[0])
    print(
        f"\n{WORKLOAD.name}: `{WORKLOAD.query}`, {WORKLOAD.fields:,} fields per request; "
        f"{first['rounds']} rounds of {_number(first['duration_s'])} s; calls/req 1: one "
        "request alone, calls/req: over the rounds",
        file=stream,
    )
    print(_line(HTTP_HEAD, HTTP_WIDTHS), file=stream)
    for cells in http_rows(rows):
        print(_line(cells, HTTP_WIDTHS), file=stream)
    for row in (r for r in rows if r["flagged"]):
        for problem in row["problems"][:5]:
            print(f"! {row['server']}: {problem}", file=stream)
    for row in (r for r in rows if r["warnings"]):
        for warning in row["warnings"]:
            print(f"? {row['server']}: {warning}", file=stream)


MICRO_HEAD = ["implementation", "miss µs", "(CPU)", "hit µs", "(CPU)"]
MICRO_HEAD += ["tasks miss", "tasks hit", "scope µs", "÷ ref miss", "÷ ref hit"]
MICRO_WIDTHS = [24, 9, 8, 9, 8, 11, 10, 10, 11, 10]


def micro_rows(rows: Sequence[dict[str, Any]]) -> list[list[str]]:
    """The cells of the micro-benchmark table, one list per implementation."""

    def median(row: dict[str, Any], figure: str, digits: int = 2) -> str:
        value = row.get(figure)
        return _number(value["median"] if value else None, digits)

    return [
        [
            row["kind"],
            median(row, "sequential_miss_wall_us"),
            median(row, "sequential_miss_cpu_us"),
            median(row, "sequential_hit_wall_us"),
            median(row, "sequential_hit_cpu_us"),
            median(row, "tasks_miss_net_cpu_us"),
            median(row, "tasks_hit_net_cpu_us"),
            median(row, "scope_us", 0),
            _times(row["vs_reference"].get("sequential_miss_cpu_us")),
            _times(row["vs_reference"].get("sequential_hit_cpu_us")),
        ]
        for row in rows
    ]


def print_micro(
    rows: Sequence[dict[str, Any]], meta: dict[str, Any], stream: TextIO = sys.stdout
) -> None:
    """The micro-benchmark table: µs per load, medians of the repeats."""
    if not rows:
        return
    print(
        f"\nload() overhead, µs per load, median of {meta['repeats']} repeats of"
        f" {meta['scopes']} scopes x {meta['loads']:,} distinct keys; miss/hit: registered in"
        " a row, then awaited in turn; tasks: one task per load, CPU less a task doing"
        f" nothing; ref: {REFERENCE}",
        file=stream,
    )
    print(_line(MICRO_HEAD, MICRO_WIDTHS), file=stream)
    for cells in micro_rows(rows):
        print(_line(cells, MICRO_WIDTHS), file=stream)
