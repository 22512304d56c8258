"""Drain benchmark: N subscribed WebSockets on a draining server, reconnecting to another.

Measures the drain of ``anyql serve`` (``ServerHandle.drain``; docs/deployment.md, "Drain
without a reconnect storm"). For each backend (``--backend``, Trio then asyncio by default),
in fresh processes: server A serves ``benchmarks/drain_app.py`` with ``--limit
drain_delay=... --limit drain_window=... --limit shutdown_grace=...``, server B the same app
with the default limits (no drain). Client processes (``_drain_clients``; browser-like
graphql-transport-ws connections) open N connections to A, subscribe, and wait for each
first event; then the driver sends SIGTERM to A. Each client that A closes with 1001 notes
the time and reconnects to B at once (no backoff: the worst case) and subscribes there;
B's 101 marks its accept time as the client sees it. Meanwhile the driver polls A's
readiness path (from 0.1 s after the SIGTERM, every 50 ms during the delay, every 250 ms
after), tries one WebSocket upgrade in the middle of the delay and one in the middle of the
window, samples both servers' CPU time every 0.1 s (they share a CPU), and notes when A
exits and with what status. Times are ``time.monotonic()`` in every process (Linux's
CLOCK_MONOTONIC is one clock for all of them), relative to the SIGTERM.

Reports, per backend: the close times (min, p10, p50, p90, max, a per-second histogram,
the most in any 100 ms), whether every connection was closed with 1001 within
``[drain_delay, drain_delay + drain_window + margin]``, B's accepts in 100 ms bins after
the SIGTERM (the largest bin, the window's mean rate ``N / drain_window / 10`` per 100 ms,
their ratio, which must be at most 2; also the most accepts in any sliding 100 ms), the
readiness answers and upgrade statuses by phase, the time from each close to B's 101, the
CPU seconds A and B used from the SIGTERM to A's exit, and A's exit status and time from
SIGTERM to exit. The ratio is judged only when the mean is at least ``MIN_JUDGED_MEAN`` accepts per
100 ms (fewer are too few to be statistical). With ``--pin auto`` (the default, on 2 or
more CPUs) both servers run on the first CPU and the clients and this driver on the others.
Writes the results JSON (and ``--markdown``) and prints a table; exits 1 when a check
failed. Imports the standard library and the ``benchmarks`` helpers; never anyql.
"""

from __future__ import annotations

import os
import sys

# Run as a script: the repository root, not benchmarks/ (its http.py shadows http), goes first.
if os.path.realpath(sys.path[0]) == os.path.dirname(os.path.realpath(__file__)):
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))

import argparse
import base64
import bisect
import datetime
import http.client
import math
import platform
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from benchmarks._drain_clients import GOING_AWAY, DrainSpec, worker_main
from benchmarks._generator import browser_handshake
from benchmarks._report import Progress, percentiles, write_json
from benchmarks._runs import WorkerPool, shares
from benchmarks._servers import (
    DESCRIPTOR_MARGIN,
    Placement,
    ServerProcess,
    cpu_seconds,
    raise_nofile,
)

__all__ = ["main"]

APP = "benchmarks.drain_app:app"
READINESS_PATH = "/ready"  # drain_app.READINESS_PATH (not imported: that imports anyql)
WS_PATH = "/graphql"
BACKENDS = ("trio", "asyncio")
DEFAULT_RESULTS = Path(__file__).resolve().parent / "results" / "drain.json"
#: Seconds after the SIGTERM of the first readiness probe (at most; half the delay when
#: shorter): the server needs a moment to take the signal, a balancer's probe too.
FIRST_PROBE = 0.1
#: Seconds between readiness probes during the drain delay, and after it.
PROBE_EVERY = (0.05, 0.25)
#: Seconds between samples of the servers' CPU time during the drain.
CPU_EVERY = 0.1
#: Longest one readiness probe or upgrade attempt may take.
PROBE_TIMEOUT = 2.0
#: The largest ratio of B's busiest 100 ms to the window's mean rate that passes.
MAX_RATIO = 2.0
#: Below this many accepts per 100 ms on average, the ratio is reported but not judged.
MIN_JUDGED_MEAN = 5.0
BIN = 0.1


# --- the servers and the clients ---------------------------------------------------------------


@dataclass
class DrainServer(ServerProcess):
    """``anyql serve benchmarks.drain_app:app`` on one backend, with ``--limit`` overrides."""

    limits: dict[str, float] = field(default_factory=dict)

    def command(self) -> list[str]:
        backend = self.kind.removeprefix("native-")
        limits: dict[str, float] = dict(self.limits)
        if self.max_connections:
            limits["max_connections"] = self.max_connections
        words = [word for k, v in limits.items() for word in ("--limit", f"{k}={v:g}")]
        return [
            sys.executable, "-m", "anyql", "serve", APP, "--host", "127.0.0.1",
            "--port", str(self.port), "--backend", backend, "--no-access-log", *words,
        ]  # fmt: skip


class Clients(WorkerPool):
    """The client processes sharing N connections between them; a context manager."""

    what = "a client process"

    def __init__(self, spec: DrainSpec, processes: int) -> None:
        super().__init__()
        specs = [
            DrainSpec(**{**spec.__dict__, "connections": share})
            for share in shares(spec.connections, processes)
        ]
        self._start(worker_main, specs)

    def status(self) -> dict[str, int]:
        """Every worker's counts, summed."""
        total: Counter[str] = Counter()
        for reply in self.ask("status"):
            total.update(reply)
        return dict(total)


# --- probes --------------------------------------------------------------------------------------


def readiness(port: int) -> int | str:
    """GET the readiness path: the status, or the error's name (refused, timed out)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=PROBE_TIMEOUT)
    try:
        connection.request("GET", READINESS_PATH)
        response = connection.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException) as error:
        return type(error).__name__
    finally:
        connection.close()


def upgrade_status(port: int) -> int | str:
    """Try one WebSocket upgrade: the response's status, or what went wrong."""
    key = base64.b64encode(os.urandom(16)).decode()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=PROBE_TIMEOUT) as sock:
            sock.sendall(browser_handshake("127.0.0.1", port, WS_PATH, key))
            head = b""
            while b"\r\n" not in head:
                chunk = sock.recv(4096)
                if not chunk:
                    return "closed without an answer"
                head += chunk
    except OSError as error:
        return type(error).__name__
    words = head.split(b"\r\n", 1)[0].split()
    return int(words[1]) if len(words) > 1 and words[1].isdigit() else repr(head[:40])


# --- one run -------------------------------------------------------------------------------------


def _subscribe_all(clients: Clients, n: int, label: str, progress: Progress) -> dict[str, int]:
    """Wait until every connection to A is live or failed (bounded)."""
    deadline = time.monotonic() + 60 + n / 50
    status = clients.status()
    while time.monotonic() < deadline:
        status = clients.status()
        if status["live_a"] + status["failed"] >= n:
            break
        progress.update(f"{label}: subscribing on A", status["live_a"], n)
        time.sleep(0.1)
    progress.done()
    return status


def _drain(
    args: argparse.Namespace,
    servers: tuple[DrainServer, DrainServer],
    clients: Clients,
    label: str,
    progress: Progress,
) -> dict[str, Any]:
    """SIGTERM to A; probe it until it exits (bounded by its budget plus 5 s), sampling the
    CPU time of A and B (which share a CPU) every ``CPU_EVERY`` seconds."""
    a, b = servers
    delay, window = args.drain_delay, args.drain_window
    process = a.process
    assert process is not None
    exit_at: list[float] = []
    exited = threading.Event()

    def wait_for_exit() -> None:
        process.wait()
        exit_at.append(time.monotonic())
        exited.set()

    waiter = threading.Thread(target=wait_for_exit, daemon=True)
    waiter.start()
    probes: list[tuple[float, int | str]] = []
    upgrades: list[dict[str, Any]] = []
    cpu: list[tuple[float, float, float]] = []
    cpu_a0, cpu_b0 = cpu_seconds([a.pid]), cpu_seconds([b.pid])
    t0 = time.monotonic()
    process.send_signal(signal.SIGTERM)
    due = [("delay", t0 + delay / 2), ("window", t0 + delay + window / 2)]
    next_probe = t0 + min(FIRST_PROBE, delay / 2)
    next_status = next_cpu = t0
    deadline = t0 + delay + window + args.shutdown_grace + 5
    while not exited.is_set() and time.monotonic() < deadline:
        now = time.monotonic()
        if due and now >= due[0][1]:
            phase = due.pop(0)[0]
            status = upgrade_status(a.port)
            upgrades.append({"phase": phase, "at_s": round(now - t0, 4), "status": status})
        elif now >= next_probe:
            probes.append((round(now - t0, 4), readiness(a.port)))
            next_probe = now + PROBE_EVERY[0 if now - t0 < delay else 1]
        if now >= next_cpu:
            used_a, used_b = cpu_seconds([a.pid]) - cpu_a0, cpu_seconds([b.pid]) - cpu_b0
            cpu.append((round(now - t0, 3), round(used_a, 2), round(used_b, 2)))
            next_cpu = now + CPU_EVERY
        if progress.enabled and now >= next_status:
            closed = clients.status()["closed_1001"]
            progress.update(f"{label}: draining A ({now - t0:4.1f} s)", closed, args.connections)
            next_status = now + 0.25
        exited.wait(0.005)
    progress.done()
    forced = not exited.is_set()
    if forced:  # a second signal stops anyql serve at once
        process.send_signal(signal.SIGTERM)
        if not exited.wait(10):
            process.kill()
        exited.wait(10)
    return {
        "t0": t0,
        "exit_code": process.returncode,
        "shutdown_s": exit_at[0] - t0 if exit_at else math.nan,
        "forced": forced,
        "probes": probes,
        "upgrades": upgrades,
        "cpu": cpu,
    }


def _wait_reconnected(clients: Clients, label: str, progress: Progress) -> dict[str, int]:
    """Wait until every client A closed with 1001 is live on B, or nothing moved for 5 s."""
    deadline = time.monotonic() + 30
    last, changed = -1, time.monotonic()
    status = clients.status()
    while time.monotonic() < deadline:
        status = clients.status()
        done = status["live_b"]
        if done >= status["closed_1001"]:
            break
        if done != last:
            last, changed = done, time.monotonic()
        elif time.monotonic() - changed > 5:
            break
        progress.update(f"{label}: live on B", done, status["closed_1001"])
        time.sleep(0.05)
    progress.done()
    return status


def run_backend(args: argparse.Namespace, backend: str, progress: Progress) -> dict[str, Any]:
    """One run: fresh servers A and B on ``backend``, N clients, one drain of A."""
    n = args.connections
    kind = f"native-{backend}"
    cpus = args.placement.server
    limits = {
        "drain_delay": args.drain_delay,
        "drain_window": args.drain_window,
        "shutdown_grace": args.shutdown_grace,
    }
    result: dict[str, Any] = {
        "server": kind,
        "backend": backend,
        "n": n,
        "limits": limits,
        "margin_s": args.margin,
        "loadavg_before": list(os.getloadavg()),
    }
    with (
        DrainServer(kind, cpus=cpus, connections=n) as b,
        DrainServer(kind, cpus=cpus, connections=n, limits=limits) as a,
    ):
        result["commands"] = {"a": a.command(), "b": b.command()}
        result["ready_before"] = {"a": readiness(a.port), "b": readiness(b.port)}
        spec = DrainSpec(
            "127.0.0.1", a.port, b.port, WS_PATH, n, args.placement.generators,
            not args.no_deflate_offer,
        )  # fmt: skip
        with Clients(spec, args.generators) as clients:
            result["subscribed"] = _subscribe_all(clients, n, kind, progress)
            time.sleep(0.5)
            drained = _drain(args, (a, b), clients, kind, progress)
            result["after"] = _wait_reconnected(clients, kind, progress)
            collected = clients.ask("collect")
        result["a_log"] = a.log_tail(30).splitlines()
    result.update(analyse(args, drained, collected))
    return result


# --- analysis ------------------------------------------------------------------------------------


def _merged(collected: Sequence[dict[str, Any]], key: str) -> list[Any]:
    return [value for reply in collected for value in reply[key]]


def _bins(times: Sequence[float], width: float) -> list[int]:
    """Counts of ``times`` (seconds, >= 0) in consecutive bins of ``width`` from 0."""
    if not times:
        return []
    counts = [0] * (int(max(times) / width) + 1)
    for t in times:
        counts[max(0, int(t / width))] += 1
    return counts


def most_in_any(times: Sequence[float], width: float) -> int:
    """The most of ``times`` in any half-open interval ``[t, t + width)``."""
    ordered = sorted(times)
    return max(
        (bisect.bisect_left(ordered, t + width) - i for i, t in enumerate(ordered)), default=0
    )


def _spread(closes: Sequence[float], start: float, window: float) -> float:
    """Kolmogorov-Smirnov distance of the close times from an even spread over the window."""
    ordered = sorted(closes)
    count = len(ordered)
    if not count or window <= 0:
        return math.nan
    distance = 0.0
    for i, t in enumerate(ordered):
        even = min(1.0, max(0.0, (t - start) / window))
        distance = max(distance, abs(even - i / count), abs(even - (i + 1) / count))
    return distance


def _summary(values: Sequence[float]) -> dict[str, float]:
    wanted = percentiles(values, (10, 50, 90))
    return {"min": min(values, default=math.nan), **wanted}


def _phase(at: float, delay: float, window: float) -> str:
    return "delay" if at < delay else "window" if at < delay + window else "after"


def analyse(
    args: argparse.Namespace, drained: dict[str, Any], collected: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """The figures and checks of one run from the driver's and the clients' records."""
    delay, window, t0 = args.drain_delay, args.drain_window, drained["t0"]
    live_a = sum(_merged(collected, "live_a"))
    codes = _merged(collected, "code")
    closed_at = _merged(collected, "closed_at")
    accepted = _merged(collected, "accepted_b")
    live_b = _merged(collected, "live_b")
    closes = sorted(t - t0 for t, c in zip(closed_at, codes, strict=True) if c == GOING_AWAY)
    accepts = sorted(t - t0 for t in accepted if not math.isnan(t))
    latency = [
        (b - c) * 1000
        for c, b, code in zip(closed_at, accepted, codes, strict=True)
        if code == GOING_AWAY and not math.isnan(b)
    ]
    low, high = delay, delay + window + args.margin
    outside = [t for t in closes if not low <= t <= high]
    failures: Counter[str] = Counter()
    for reply in collected:
        failures.update(reply["failures"])
    seconds = _bins(closes, 1.0)
    accept_seconds = _bins(accepts, 1.0)
    per_bin = _bins(accepts, BIN)
    mean = live_a / window * BIN if window > 0 else math.nan
    most = max(per_bin, default=0)
    most_any = most_in_any(accepts, BIN)
    judged = mean >= MIN_JUDGED_MEAN
    ratio = most / mean if mean else math.nan
    by_phase: dict[str, Counter[str]] = {p: Counter() for p in ("delay", "window", "after")}
    for at, status in drained["probes"]:
        by_phase[_phase(at, delay, window)][str(status)] += 1
    upgrades = {u["phase"]: u["status"] for u in drained["upgrades"]}
    budget = delay + window + args.shutdown_grace
    checks = {
        "every_connection_subscribed": live_a == args.connections,
        "readiness_503_during_delay": set(by_phase["delay"]) == {"503"},
        "upgrade_503_during_delay": upgrades.get("delay") == 503,
        "upgrade_503_during_window": upgrades.get("window") == 503,
        "every_connection_closed_1001": len(closes) == live_a == len(codes),
        "closes_within_window": not outside and len(closes) == live_a,
        "every_connection_reconnected": len(accepts) == live_a
        and sum(not math.isnan(t) for t in live_b) == live_a,
        "accept_ratio_at_most_2": ratio <= MAX_RATIO if judged else None,
        "a_exit_status_0": drained["exit_code"] == 0,
        "a_exit_within_budget": drained["shutdown_s"] <= budget,
    }
    return {
        "closes": {
            "count": len(closes),
            "codes": {str(code): count for code, count in sorted(Counter(codes).items())},
            "seconds": _summary(closes),
            "per_second": seconds,
            "bounds_s": [low, high],
            "outside_bounds": len(outside),
            "outside_examples_s": [round(t, 4) for t in outside[:10]],
            "max_in_any_100ms": most_in_any(closes, BIN),
            "spread_ks": _spread(closes, delay, window),
        },
        "reconnects": {
            "accepted": len(accepts),
            "live": sum(not math.isnan(t) for t in live_b),
            "latency_ms": percentiles(latency, (50, 99)),
            "per_second": accept_seconds,
            "per_100ms": per_bin,
            "max_per_100ms": most,
            "max_bin_start_s": round(per_bin.index(most) * BIN, 1) if per_bin else None,
            "mean_per_100ms": mean,
            "ratio": ratio,
            "max_in_any_100ms": most_any,
            "ratio_any_100ms": most_any / mean if mean else math.nan,
            "ratio_judged": judged,
        },
        "readiness": {
            "probes": drained["probes"],
            "by_phase": {phase: dict(counts) for phase, counts in by_phase.items()},
        },
        "upgrades": drained["upgrades"],
        "a_exit": {
            "code": drained["exit_code"],
            "shutdown_s": drained["shutdown_s"],
            "budget_s": budget,
            "forced": drained["forced"],
        },
        "cpu": {
            "note": "CPU seconds since the SIGTERM, sampled every 0.1 s until A exited "
            "(A's last moments are not in it)",
            "a_s": drained["cpu"][-1][1] if drained["cpu"] else math.nan,
            "b_s": drained["cpu"][-1][2] if drained["cpu"] else math.nan,
            "series": drained["cpu"],
        },
        "failures": dict(failures),
        "errors": [e for reply in collected for e in reply["errors"]][:20],
        "checks": checks,
        "close_times_s": [round(t, 4) for t in closes],
        "accept_times_s": [round(t, 4) for t in accepts],
    }


def _finish(run: dict[str, Any]) -> None:
    """Add the checks only the whole run knows, and the verdict."""
    ready = run.get("ready_before", {})
    run["checks"]["ready_before_sigterm"] = ready.get("a") == 200 and ready.get("b") == 200
    run["ok"] = all(value is not False for value in run["checks"].values())


# --- report --------------------------------------------------------------------------------------


def _f(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{status} x{count}" for status, count in counts.items()) or "none"


def _ratio_text(run: dict[str, Any]) -> str:
    r = run["reconnects"]
    verdict = ("ok" if r["ratio"] <= MAX_RATIO else "FAIL") if r["ratio_judged"] else "not judged"
    return f"{_f(r['ratio'], 2)} ({verdict})"


def _yes(value: bool | None) -> str:
    return "n/a" if value is None else "yes" if value else "NO"


Row = tuple[str, Callable[[dict[str, Any]], str]]
ROWS: list[Row] = [
    ("subscribed on A", lambda r: f"{r['subscribed']['live_a']}/{r['n']}"),
    ("readiness before SIGTERM (A, B)", lambda r: f"{r['ready_before']['a']}, "
     f"{r['ready_before']['b']}"),
    ("readiness during delay", lambda r: _counts(r["readiness"]["by_phase"]["delay"])),
    ("readiness during window", lambda r: _counts(r["readiness"]["by_phase"]["window"])),
    ("readiness after window", lambda r: _counts(r["readiness"]["by_phase"]["after"])),
    ("upgrade during delay / window", lambda r: " / ".join(
        str(u["status"]) for u in r["upgrades"])),
    ("close codes", lambda r: _counts(r["closes"]["codes"])),
    ("close time min (s)", lambda r: _f(r["closes"]["seconds"]["min"])),
    ("close time p10 (s)", lambda r: _f(r["closes"]["seconds"]["p10"])),
    ("close time p50 (s)", lambda r: _f(r["closes"]["seconds"]["p50"])),
    ("close time p90 (s)", lambda r: _f(r["closes"]["seconds"]["p90"])),
    ("close time max (s)", lambda r: _f(r["closes"]["seconds"]["max"])),
    ("closes in bounds", lambda r: f"{_yes(r['checks']['closes_within_window'])} "
     f"([{r['closes']['bounds_s'][0]:g}, {r['closes']['bounds_s'][1]:g}] s, "
     f"{r['closes']['outside_bounds']} outside)"),
    ("closes: most in any 100 ms", lambda r: str(r["closes"]["max_in_any_100ms"])),
    ("closes: KS distance from even", lambda r: _f(r["closes"]["spread_ks"], 4)),
    ("B accepted (101) / live", lambda r: f"{r['reconnects']['accepted']} / "
     f"{r['reconnects']['live']}"),
    ("close to B's 101, p50 / p99 / max (ms)", lambda r: " / ".join(
        _f(r["reconnects"]["latency_ms"][k], 1) for k in ("p50", "p99", "max"))),
    ("B accepts: max per 100 ms bin", lambda r: f"{r['reconnects']['max_per_100ms']} "
     f"(at {_f(r['reconnects']['max_bin_start_s'], 1)} s)"),
    ("B accepts: mean per 100 ms", lambda r: _f(r["reconnects"]["mean_per_100ms"], 1)),
    ("B accepts: ratio (<= 2)", _ratio_text),
    ("B accepts: most in any 100 ms", lambda r: f"{r['reconnects']['max_in_any_100ms']} "
     f"(ratio {_f(r['reconnects']['ratio_any_100ms'], 2)})"),
    ("A exit status", lambda r: str(r["a_exit"]["code"])),
    ("A shutdown, SIGTERM to exit (s)", lambda r: f"{_f(r['a_exit']['shutdown_s'])} "
     f"(budget {r['a_exit']['budget_s']:g})"),
    ("A / B CPU s, SIGTERM to A's exit", lambda r: f"{_f(r['cpu']['a_s'], 2)} / "
     f"{_f(r['cpu']['b_s'], 2)}"),
    ("client failures", lambda r: _counts(r["failures"])),
    ("verdict", lambda r: "ok" if r["ok"] else "FAILED: " + ", ".join(
        k for k, v in r["checks"].items() if v is False)),
]  # fmt: skip


def _histogram_rows(runs: Sequence[dict[str, Any]]) -> list[list[str]]:
    length = max(
        (len(r[k]["per_second"]) for r in runs for k in ("closes", "reconnects")), default=0
    )
    rows = []
    for second in range(length):
        cells = [f"{second}-{second + 1} s"]
        for run in runs:
            for key in ("closes", "reconnects"):
                counts = run[key]["per_second"]
                cells.append(str(counts[second] if second < len(counts) else 0))
        rows.append(cells)
    return rows


def _title(args: argparse.Namespace) -> str:
    return (
        f"drain: N={args.connections:,}, drain_delay {args.drain_delay:g} s, drain_window "
        f"{args.drain_window:g} s, shutdown_grace {args.shutdown_grace:g} s; "
        f"{args.placement.note}"
    )


def print_report(
    args: argparse.Namespace, runs: Sequence[dict[str, Any]], stream: TextIO = sys.stdout
) -> None:
    """The summary table (a column per backend) and the per-second histogram."""
    print(_title(args), file=stream)
    width = max(len(label) for label, _ in ROWS) + 2
    table = [(label, [show(r) for r in runs]) for label, show in ROWS]
    cell = max([16, *(len(r["server"]) + 2 for r in runs)])
    cell = max([cell, *(len(text) + 2 for _, texts in table for text in texts[:-1])])
    head = f"{'':<{width}}" + "".join(f"{r['server']:<{cell}}" for r in runs)
    print(head.rstrip(), file=stream)
    for label, texts in table:
        print(f"{label:<{width}}" + "".join(f"{t:<{cell}}" for t in texts).rstrip(), file=stream)
    print("\ncloses by A / accepts by B, per second after SIGTERM", file=stream)
    head = ["second"] + [f"{r['server']} {k}" for r in runs for k in ("closes", "accepts")]
    print("".join(f"{h:>24}" for h in head), file=stream)
    for cells in _histogram_rows(runs):
        print("".join(f"{c:>24}" for c in cells), file=stream)


def write_markdown(path: Path, args: argparse.Namespace, runs: Sequence[dict[str, Any]]) -> None:
    """The same tables as Markdown."""
    lines = [f"### {_title(args)}", "", "| | " + " | ".join(r["server"] for r in runs) + " |"]
    lines.append("|---|" + "---|" * len(runs))
    for label, show in ROWS:
        lines.append(f"| {label} | " + " | ".join(show(r) for r in runs) + " |")
    head = ["second"] + [f"{r['server']} {k}" for r in runs for k in ("closes", "accepts")]
    lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cells) + " |" for cells in _histogram_rows(runs)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


# --- command line --------------------------------------------------------------------------------


def _backends(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names or any(name not in BACKENDS for name in names):
        raise argparse.ArgumentTypeError(f"choose from {', '.join(BACKENDS)}; got {text!r}")
    return names


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (every option has a bounded default)."""
    parser = argparse.ArgumentParser(
        prog="drain.py",
        description="Drain benchmark: N subscribed WebSockets on a draining anyql server "
        "reconnecting to a second one (graphql-transport-ws, 127.0.0.1).",
    )
    add = parser.add_argument
    add("-n", "--connections", type=int, default=2000, help="subscribed connections (2000)")
    add(
        "--backend",
        type=_backends,
        default=list(BACKENDS),
        help="comma list of trio, asyncio: one run each, in order (default both)",
    )
    add("--drain-delay", type=float, default=1.0, help="A's drain_delay in seconds (1)")
    add("--drain-window", type=_positive, default=10.0, help="A's drain_window in seconds (10)")
    add("--shutdown-grace", type=float, default=10.0, help="A's shutdown_grace in seconds (10)")
    add(
        "--margin",
        type=float,
        default=0.5,
        help="seconds a close may come after drain_delay + drain_window (0.5)",
    )
    add("--generators", type=int, default=2, help="client processes (2)")
    add(
        "--pin",
        choices=("auto", "off"),
        default="auto",
        help="auto (default): with 2+ CPUs, both servers on the first CPU, the clients and "
        "this driver on the others; off: let the scheduler place them",
    )
    add(
        "--no-deflate-offer",
        action="store_true",
        help="clients do not offer permessage-deflate (browsers do; anyql serve declines "
        "it unless --permessage-deflate)",
    )
    add(
        "--json",
        type=Path,
        default=DEFAULT_RESULTS,
        help="results file (default benchmarks/results/drain.json, which git ignores)",
    )
    add("--markdown", type=Path, metavar="FILE", help="also write the tables as Markdown")
    add("--quiet", action="store_true", help="no progress bar")
    return parser


def _commit() -> str:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parents[1],
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.decode(errors="replace").strip()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark.

    Args:
        argv: arguments after the program name; ``sys.argv[1:]`` when None.

    Returns:
        0 when every check of every run passed, 1 otherwise.
    """
    args = build_parser().parse_args(argv)
    progress = Progress(enabled=not args.quiet)
    args.placement = Placement.choose(args.pin)
    if args.placement.generators:
        os.sched_setaffinity(0, args.placement.generators)  # the driver stays off the servers
    wanted = args.connections + DESCRIPTOR_MARGIN
    nofile = raise_nofile(wanted)
    if nofile["soft"] < wanted:
        progress.say(f"warning: descriptor limit {nofile['soft']}: {nofile['error']}")
    meta = {
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "argv": list(sys.argv[1:] if argv is None else argv),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": list(os.getloadavg()),
        "commit": _commit(),
        "pinning": args.placement.as_dict(),
        "nofile": nofile,
        "clock": "time.monotonic() in every process (CLOCK_MONOTONIC), relative to the SIGTERM",
    }
    runs = []
    for backend in args.backend:
        progress.say(f"run: native-{backend}, N={args.connections:,}")
        try:
            run = run_backend(args, backend, progress)
        except Exception as error:  # one failed run must not lose the other
            progress.say(f"run failed: native-{backend}: {error!r}")
            runs.append({"server": f"native-{backend}", "failed": repr(error), "ok": False})
            continue
        _finish(run)
        runs.append(run)
    good = [run for run in runs if "failed" not in run]
    if good:
        print_report(args, good)
    for run in runs:
        if "failed" in run:
            print(f"{run['server']}: run failed: {run['failed']}")
    meta["loadavg_at_end"] = list(os.getloadavg())
    write_json(args.json, {"meta": meta, "runs": runs})
    print(f"results written to {args.json}")
    if args.markdown:
        write_markdown(args.markdown, args, good)
        print(f"tables written to {args.markdown}")
    return 0 if all(run["ok"] for run in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
