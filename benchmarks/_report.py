"""Reporting for the fan-out benchmark: progress bar, percentiles, tables, JSON and the plot.

Owns ``Progress`` (a one-line bar on stderr), ``percentiles``, ``print_table`` (one table
per N and payload), ``ratio_rows`` and ``print_ratios`` (each anyql target over each
reference server: Strawberry, Node, the baseline, from the medians of the repeats),
``transport_rows`` and ``print_transports`` (each server over SSE beside the same server
over WebSocket in the same invocation, from the medians; a run over SSE is labelled
``... sse``, and it is compared only with reference runs over SSE), ``print_failures``
(what broke when connections failed), ``write_markdown`` (the same tables, one per N, for
docs/performance.md), ``write_json`` and ``write_plot`` (matplotlib is optional: without
it the plot is skipped with a message). Imports the standard library,
and matplotlib lazily.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

__all__ = [
    "REFERENCES",
    "Progress",
    "percentiles",
    "plan_share",
    "print_failures",
    "print_ratios",
    "print_table",
    "print_transports",
    "ratio_rows",
    "transport_rows",
    "write_json",
    "write_markdown",
    "write_plot",
]

#: The servers anyql is compared with, in the order the ratio columns show them.
REFERENCES = ("strawberry", "node", "baseline")
#: The figures compared per mode; for each, whether higher is better.
COMPARED: dict[str, tuple[tuple[str, str, bool], ...]] = {
    "fanout": (
        ("deliveries_per_s", "deliv/s", True),
        ("server_cpu_us_per_delivery", "µs cpu/d", False),
        ("rss_per_subscriber_kib", "KiB/sub", False),
    ),
    "latency": (("p99_ms", "p99 ms", False),),
    "churn": (("cycles_per_s", "cycles/s", True),),
}


class Progress:
    """A one-line progress bar on stderr, redrawn at most ten times a second."""

    def __init__(self, enabled: bool = True, stream: TextIO = sys.stderr, width: int = 30) -> None:
        self.enabled = enabled
        self.stream = stream
        self.width = width
        self._drawn = 0.0
        self._shown = False

    def update(self, label: str, done: float, total: float, *, force: bool = False) -> None:
        """Draw ``label [####----] done/total`` unless drawn less than 0.1 s ago.

        Args:
            label: what is being waited for.
            done: how much is done.
            total: how much there is (0 draws an empty bar).
            force: draw even if drawn less than 0.1 s ago.
        """
        now = time.monotonic()
        if not self.enabled or (not force and now - self._drawn < 0.1):
            return
        self._drawn = now
        fraction = min(1.0, done / total) if total else 0.0
        filled = int(fraction * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        line = f"\r{label[:48]:<48} [{bar}] {int(done):>9,}/{int(total):,}"
        self.stream.write(line + "\x1b[K")
        self.stream.flush()
        self._shown = True

    def done(self) -> None:
        """End the bar's line."""
        if self.enabled and self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._shown = False

    def say(self, text: str) -> None:
        """Print ``text`` on its own line, above the bar (also when the bar is disabled)."""
        self.done()
        print(text, file=self.stream, flush=True)


def percentiles(samples: Sequence[float], wanted: Sequence[float] = (50, 99)) -> dict[str, float]:
    """Nearest-rank percentiles of ``samples`` and their maximum.

    Args:
        samples: the values (any order).
        wanted: percentiles to report, 0-100.

    Returns:
        ``{"p50": ..., "p99": ..., "max": ...}``; NaN for every key when there are none.
    """
    keys = [f"p{p:g}" for p in wanted] + ["max"]
    if not samples:
        return dict.fromkeys(keys, math.nan)
    ordered = sorted(samples)
    result = {
        f"p{p:g}": ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]
        for p in wanted
    }
    result["max"] = ordered[-1]
    return result


def _transport(run: dict[str, Any]) -> str:
    return str(run.get("transport") or "ws")  # runs from before --transport were WebSocket


def _server(run: dict[str, Any]) -> str:
    sharing = f"/{run['sharing']}" if run.get("sharing") else ""
    return f"{run['server']}{sharing}"


def _label(run: dict[str, Any]) -> str:
    over = f" {_transport(run)}" if _transport(run) != "ws" else ""
    deflated = "*" if run.get("subscribe", {}).get("deflated") else ""
    return f"{_server(run)}{over}{deflated}"


def _number(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def _by_workload(runs: Sequence[dict[str, Any]]) -> dict[tuple[Any, Any], list[dict[str, Any]]]:
    groups: dict[tuple[Any, Any], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["n"], run["payload"]), []).append(run)
    return dict(sorted(groups.items()))


def print_table(runs: Sequence[dict[str, Any]], stream: TextIO = sys.stdout) -> None:
    """Print one line per run, grouped by mode, fan-out runs in one table per N and payload."""
    fanout = [r for r in runs if r["mode"] == "fanout"]
    for (n, payload), group in _by_workload(fanout).items():
        print(f"\nfan-out, N={n:,}, {payload} B payload", file=stream)
        print(
            f"{'server':<32}{'live':>7}{'deliv/s':>10}{'µs cpu/d':>10}"
            f"{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'missed':>8}{'KiB/sub':>9}",
            file=stream,
        )
        for r in group:
            lat, rate = r["latency_ms"], _number(r["deliveries_per_s"], 0)
            print(
                f"{_label(r):<32}{r['subscribers_live']:>7}{rate:>10}"
                f"{_number(r['server_cpu_us_per_delivery']):>10}{_number(lat['p50']):>9}"
                f"{_number(lat['p99']):>9}{_number(lat['max']):>9}{r['missed']:>8}"
                f"{_number(r['rss_per_subscriber_kib']):>9}",
                file=stream,
            )
        for r in group:
            if r.get("plan_stats"):
                print(f"  plan, {_label(r)}: {plan_share(r['plan_stats'])}", file=stream)
    if any(r.get("subscribe", {}).get("deflated") for r in runs):
        print("* the server agreed to permessage-deflate (the generator inflates)", file=stream)
    for r in (r for r in runs if r["mode"] == "latency"):
        lat, per_event = r["latency_ms"], r["event_completion_ms"]
        print(
            f"latency {_label(r)} N={r['n']}: delivery p50 {_number(lat['p50'])} ms, p99 "
            f"{_number(lat['p99'])} ms, max {_number(lat['max'])} ms; last delivery per event "
            f"p99 {_number(per_event['p99'])} ms over {r['events']} events, missed {r['missed']}",
            file=stream,
        )
    for r in (r for r in runs if r["mode"] == "churn"):
        print(
            f"churn {_label(r)}: {r['cycles']:,} cycles in {_number(r['duration_s'])} s = "
            f"{_number(r['cycles_per_s'], 0)}/s; RSS {r['rss_start_kib']:,} -> "
            f"{r['rss_end_kib']:,} KiB (growth after warm-up {r['rss_growth_kib']:+,} KiB)",
            file=stream,
        )


def plan_share(stats: dict[str, Any]) -> str:
    """How much took anyql's planned path: ``operations 2,000/2,000 (100%), fields ...``."""
    parts = []
    for what in ("operations", "fields"):
        planned, unplanned = stats.get(f"{what}_planned", 0), stats.get(f"{what}_unplanned", 0)
        total = planned + unplanned
        share = f" ({planned / total:.0%})" if total else ""
        parts.append(f"{what} {planned:,}/{total:,}{share}")
    if stats.get("plans_uncached"):
        parts.append(f"{stats['plans_uncached']:,} plans not cached")
    return ", ".join(parts)


def print_failures(runs: Sequence[dict[str, Any]], stream: TextIO = sys.stdout) -> None:
    """For every run where connections failed or events went missing, say what broke first."""
    for r in runs:
        where = f"{r['mode']} {_label(r)} N={r['n']}"
        report = r.get("subscribe", {})
        if "failed" not in r and not report.get("failed"):
            if r.get("missed", 0) > 0:
                print(f"{where}: {r['missed']:,} deliveries missed", file=stream)
            continue
        if "failed" in r:
            print(f"FAILED {where}: {r['failed']}", file=stream)
        if report.get("failed"):
            kinds = ", ".join(f"{kind} x{count}" for kind, count in report["failures"].items())
            print(
                f"{where}: {report['live']:,} of {r['n']:,} live; failures: {kinds}; "
                f"first: {report['first_failure']}",
                file=stream,
            )
        for line in (r.get("server_log") or report.get("server_log") or [])[:3]:
            print(f"    server log: {line.strip()}", file=stream)


def ratio_rows(runs: Sequence[dict[str, Any]], versus: str) -> list[dict[str, Any]]:
    """Pair each anyql run with the ``versus`` runs of the same mode, N, payload and
    transport.

    Args:
        runs: all runs.
        versus: the server kind to compare against (one of ``REFERENCES``).

    Returns:
        One row per anyql target and workload, from the medians of its repeats.
    """
    groups: dict[tuple[Any, ...], dict[str, list[dict[str, Any]]]] = {}
    for run in runs:
        key = (run["mode"], run.get("n"), run.get("payload"), _transport(run))
        if run["server"] in REFERENCES and run["server"] != versus:
            continue
        name = run["server"] if run["server"] == versus else _label(run)
        groups.setdefault(key, {}).setdefault(name, []).append(run)
    rows = []
    for (mode, n, payload, transport), by_target in groups.items():
        reference = by_target.pop(versus, None)
        if not reference:
            continue
        for name, ours in by_target.items():
            row = _ratio(mode, n, payload, name, versus, ours, reference)
            row["transport"] = transport
            rows.append(row)
    return rows


def _median(runs: Sequence[dict[str, Any]], key: str) -> float:
    values = sorted(r[key] for r in runs if r.get(key) is not None)
    return values[len(values) // 2] if values else math.nan


def _ratio(
    mode: str,
    n: Any,
    payload: Any,
    name: str,
    versus: str,
    ours: Sequence[dict[str, Any]],
    theirs: Sequence[dict[str, Any]],
) -> dict[str, Any]:
    row: dict[str, Any] = {"mode": mode, "n": n, "payload": payload, "target": name}
    row["versus"] = versus
    for key, _, _ in COMPARED[mode]:
        mine, other = _median(ours, key), _median(theirs, key)
        row[key] = mine
        row[f"{versus}_{key}"] = other
        row[f"ratio_{key}"] = mine / other if other else math.nan
    return row


def _ratio_tables(
    rows: Sequence[dict[str, Any]],
) -> dict[tuple[Any, ...], dict[str, dict[str, dict[str, Any]]]]:
    """(mode, n, payload) -> target -> versus -> row."""
    tables: dict[tuple[Any, ...], dict[str, dict[str, dict[str, Any]]]] = {}
    for row in rows:
        key = (row["mode"], row["n"], row["payload"])
        tables.setdefault(key, {}).setdefault(row["target"], {})[row["versus"]] = row
    return tables


def _ratio_text(row: dict[str, Any] | None, key: str) -> str:
    value = row.get(f"ratio_{key}") if row else None
    return "-" if value is None or math.isnan(value) else f"x{value:.2f}"


def print_ratios(rows: Sequence[dict[str, Any]], stream: TextIO = sys.stdout) -> None:
    """Print ``ours / theirs`` per workload: one table per N, a column group per reference."""
    for (mode, n, payload), targets in _ratio_tables(rows).items():
        versus = [v for v in REFERENCES if any(v in by for by in targets.values())]
        compared = COMPARED[mode]
        where = f", N={n:,}, {payload} B" if mode != "churn" else ""
        better = "; ".join(f"{label}: {'higher' if up else 'lower'}" for _, label, up in compared)
        print(f"\n{mode}{where}: ours / theirs (medians; better is {better})", file=stream)
        cell = 10 if len(compared) > 1 else 16
        heads = "".join(f"{'vs ' + v:>{cell * len(compared)}}" for v in versus)
        print(f"{'':<32}{heads}", file=stream)
        labels = "".join(f"{label:>{cell}}" for _, label, _ in compared)
        print(f"{'target':<32}" + labels * len(versus), file=stream)
        for target, by in targets.items():
            cells = "".join(
                f"{_ratio_text(by.get(v), key):>{cell}}" for v in versus for key, _, _ in compared
            )
            print(f"{target:<32}{cells}", file=stream)
    if any(row.get("transport", "ws") != "ws" for row in rows):
        print("(a target over sse is compared with the reference server over sse)", file=stream)


def transport_rows(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each server over SSE beside the same server over WebSocket, same mode, N and payload.

    Args:
        runs: all runs (the failed ones left out).

    Returns:
        One row per server and workload that ran over both: the medians of its repeats
        over each (``ws_<figure>``, ``sse_<figure>``) and ``ratio_<figure>`` (SSE ÷ WS).
    """
    groups: dict[tuple[Any, ...], dict[str, list[dict[str, Any]]]] = {}
    for run in runs:
        workload = (run["mode"], run.get("n"), run.get("payload"), _server(run))
        groups.setdefault(workload, {}).setdefault(_transport(run), []).append(run)
    rows = []
    for (mode, n, payload, target), by_transport in groups.items():
        if mode not in COMPARED or not {"ws", "sse"} <= by_transport.keys():
            continue
        row: dict[str, Any] = {"mode": mode, "n": n, "payload": payload, "target": target}
        row["repeats"] = {t: len(by_transport[t]) for t in ("ws", "sse")}
        for key, _, _ in COMPARED[mode]:
            ws, sse = _median(by_transport["ws"], key), _median(by_transport["sse"], key)
            row[f"ws_{key}"], row[f"sse_{key}"] = ws, sse
            row[f"ratio_{key}"] = sse / ws if ws else math.nan
        rows.append(row)
    return rows


def _digits(key: str) -> int:
    return 0 if key.endswith("_per_s") else 1


def print_transports(rows: Sequence[dict[str, Any]], stream: TextIO = sys.stdout) -> None:
    """Print SSE's figures beside WebSocket's: one table per mode, N and payload."""
    tables: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        tables.setdefault((row["mode"], row["n"], row["payload"]), []).append(row)
    for (mode, n, payload), group in tables.items():
        where = f", N={n:,}, {payload} B" if mode != "churn" else ""
        print(f"\n{mode}{where}: SSE beside WebSocket (medians; sse ÷ ws)", file=stream)
        compared = COMPARED[mode]
        heads = "".join(
            f"{'ws ' + label:>14}{'sse ' + label:>14}{'÷':>7}" for _, label, _ in compared
        )
        print(f"{'target':<28}{heads}", file=stream)
        for row in group:
            cells = "".join(
                f"{_number(row[f'ws_{key}'], _digits(key)):>14}"
                f"{_number(row[f'sse_{key}'], _digits(key)):>14}{_ratio_text(row, key):>7}"
                for key, _, _ in compared
            )
            print(f"{row['target']:<28}{cells}", file=stream)


def write_markdown(
    path: Path, runs: Sequence[dict[str, Any]], rows: Sequence[dict[str, Any]]
) -> None:
    """Write the fan-out results as Markdown: one table per N and payload, ready to paste.

    Each table has a line per server (medians of its repeats): deliveries/s, CPU µs per
    delivery, the latency distribution, RSS per subscribed connection, and for each anyql
    target its ratios to Strawberry, Node and the baseline.
    """
    fanout = [r for r in runs if r["mode"] == "fanout" and "failed" not in r]
    tables = _ratio_tables(rows)
    lines: list[str] = []
    for (n, payload), group in _by_workload(fanout).items():
        by_target: dict[str, list[dict[str, Any]]] = {}
        for run in group:
            by_target.setdefault(_label(run), []).append(run)
        versus = [v for v in REFERENCES if any(r["server"] == v for r in group)]
        ratios = [f"÷ {v} (deliv/s, µs/d, KiB)" for v in versus]
        head = ["server", "deliv/s", "µs CPU/delivery", "p50 ms", "p99 ms", "max ms"]
        head += ["KiB/conn", "missed", *ratios]
        lines += [f"### N = {n:,}, {payload} B events", "", "| " + " | ".join(head) + " |"]
        lines.append("|" + "---|" * len(head))
        for name, runs_of in by_target.items():
            ours = tables.get(("fanout", n, payload), {}).get(name, {})
            p = {k: sorted(r["latency_ms"][k] for r in runs_of) for k in ("p50", "p99", "max")}
            cells = [
                name.removesuffix("*") + (" (permessage-deflate)" if name.endswith("*") else ""),
                _number(_median(runs_of, "deliveries_per_s"), 0),
                _number(_median(runs_of, "server_cpu_us_per_delivery")),
                *(_number(values[len(values) // 2]) for values in p.values()),
                _number(_median(runs_of, "rss_per_subscriber_kib")),
                str(max(r["missed"] for r in runs_of)),
            ]
            for v in versus:
                row = ours.get(v)
                cells.append(
                    " / ".join(_ratio_text(row, key) for key, _, _ in COMPARED["fanout"])
                    if row
                    else ""
                )
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        lines += _markdown_transports(
            [r for r in transport_rows(fanout) if (r["n"], r["payload"]) == (n, payload)]
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


def _markdown_transports(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The SSE-beside-WebSocket table of one workload (no lines when nothing ran over both)."""
    if not rows:
        return []
    head = ["server", "deliv/s ws / sse", "µs CPU/delivery ws / sse", "÷ (µs)", "KiB/conn ws / sse"]
    lines = ["SSE beside WebSocket (medians):", "", "| " + " | ".join(head) + " |"]
    lines.append("|" + "---|" * len(head))
    for row in rows:
        cells = [
            row["target"],
            f"{_number(row['ws_deliveries_per_s'], 0)} / {_number(row['sse_deliveries_per_s'], 0)}",
            f"{_number(row['ws_server_cpu_us_per_delivery'])} / "
            f"{_number(row['sse_server_cpu_us_per_delivery'])}",
            _ratio_text(row, "server_cpu_us_per_delivery"),
            f"{_number(row['ws_rss_per_subscriber_kib'])} / "
            f"{_number(row['sse_rss_per_subscriber_kib'])}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Write the results document (NaN becomes null)."""

    def clean(value: Any) -> Any:
        if isinstance(value, float) and math.isnan(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(clean(document), indent=2) + "\n")


def write_plot(path: Path, runs: Sequence[dict[str, Any]]) -> str:
    """Plot deliveries/s and p99 latency against N, one line per server and payload.

    Args:
        path: the PNG to write.
        runs: all runs (only fan-out runs are plotted).

    Returns:
        What happened, for the user: the path written, or why nothing was.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "plot skipped: matplotlib is not installed (pip install 'anyql[bench]')"
    fanout = [r for r in runs if r["mode"] == "fanout"]
    if not fanout:
        return "plot skipped: no fan-out runs"
    lines: dict[str, dict[int, list[dict[str, Any]]]] = {}
    for run in fanout:
        lines.setdefault(f"{_label(run)} {run['payload']} B", {}).setdefault(run["n"], []).append(
            run
        )
    figure, (rate, tail) = plt.subplots(1, 2, figsize=(12, 5))
    for name, by_n in sorted(lines.items()):
        ns = sorted(by_n)
        rate.plot(ns, [_median(by_n[n], "deliveries_per_s") for n in ns], marker="o", label=name)
        p99 = [sorted(r["latency_ms"]["p99"] for r in by_n[n])[len(by_n[n]) // 2] for n in ns]
        tail.plot(ns, p99, marker="o", label=name)
    for axes, title in ((rate, "deliveries per second"), (tail, "p99 latency in a burst (ms)")):
        axes.set_xscale("log")
        axes.set_xlabel("subscribers (N)")
        axes.set_title(title)
        axes.grid(True, alpha=0.3)
    tail.set_yscale("log")
    rate.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return f"plot written to {path}"
