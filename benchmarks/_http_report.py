"""Reporting for the HTTP query benchmark: the summary of the rounds, tables and the plot.

Owns ``summarise`` (one row per server and workload from its measured rounds: median
req/s and its range, median p50 and p99 latency, median server CPU per request and per
resolved field, the generator's busiest round, the errors and warnings of every round,
anyql's plan counters summed over the rounds, and each anyql server's ratios to the
reference servers), ``print_summary`` (a table per workload on stdout), ``write_markdown``
(the same tables for the docs) and ``write_plot`` (req/s per server, a panel per workload;
matplotlib is optional). ``_report`` writes the JSON. Imports the standard library, and
matplotlib lazily.
"""

from __future__ import annotations

import math
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from ._http_runs import REFERENCES
from ._http_schema import WORKLOADS

__all__ = ["plan_text", "print_summary", "summarise", "write_markdown", "write_plot"]


def _median(values: Sequence[Any]) -> float:
    numbers = [v for v in values if isinstance(v, int | float) and not math.isnan(v)]
    return statistics.median(numbers) if numbers else math.nan


def _sum_stats(deltas: Sequence[dict[str, Any] | None]) -> dict[str, Any] | None:
    """The plan counters summed over rounds; None when any round had none."""
    if not deltas or any(d is None for d in deltas):
        return None
    total: dict[str, Any] = {}
    for delta in deltas:
        assert delta is not None
        for key, value in delta.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                total[key] = total.get(key, 0) + value
            else:
                total[key] = value
    return total


def summarise(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (workload, server) from its measured rounds, in the order they ran.

    Args:
        runs: every round, warm-up rounds (``warmup: true``) and failed ones included.

    Returns:
        Rows with ``req_per_s`` (``median``, ``min``, ``max``), ``latency_ms`` (median
        ``p50`` and ``p99``), ``server_cpu_us_per_request``, ``server_cpu_us_per_field``,
        ``generator_cpu_percent`` (the busiest round), ``errors``, ``problems``,
        ``warnings``, ``flagged``, ``plan_stats`` and ``ratios`` (anyql rows: ``req/s``
        and CPU per field over each reference server's medians).
    """
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in runs:
        if not run.get("warmup"):
            groups.setdefault((run["workload"], run["server"]), []).append(run)
    rows = []
    for (workload, server), group in groups.items():
        measured = [r for r in group if "failed" not in r]
        rates = [r["req_per_s"] for r in measured]
        problems = [f"round {r['round'] + 1}: {r['failed']}" for r in group if "failed" in r]
        problems += [f"round {r['round'] + 1}: {p}" for r in measured for p in r["problems"]]
        rows.append(
            {
                "server": server,
                "workload": workload,
                "rounds": len(measured),
                "fields_per_request": WORKLOADS[workload].fields,
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
                "server_cpu_us_per_field": _median(
                    [r["server_cpu_us_per_field"] for r in measured]
                ),
                "generator_cpu_percent": max(
                    (r["generator_cpu_percent"] for r in measured), default=math.nan
                ),
                "errors": sum(r["errors"] + r["timeouts"] + r["non2xx"] for r in measured),
                "problems": problems,
                "warnings": sorted({w for r in measured for w in r["warnings"]}),
                "flagged": bool(problems) or not measured,
                "plan_stats": _sum_stats([r["plan_stats"] for r in measured]),
            }
        )
    _add_ratios(rows)
    return rows


def _add_ratios(rows: list[dict[str, Any]]) -> None:
    references = {(r["workload"], r["server"]): r for r in rows if r["server"] in REFERENCES}
    for row in rows:
        if row["server"] in REFERENCES:
            continue
        row["ratios"] = {}
        for reference in REFERENCES:
            theirs = references.get((row["workload"], reference))
            if theirs is None:
                continue
            rate, cpu = theirs["req_per_s"]["median"], theirs["server_cpu_us_per_field"]
            row["ratios"][reference] = {
                "req_per_s": row["req_per_s"]["median"] / rate if rate else math.nan,
                "server_cpu_us_per_field": row["server_cpu_us_per_field"] / cpu
                if cpu
                else math.nan,
            }


def plan_text(row: dict[str, Any]) -> str:
    """The share of planned work: ``ops 100% fields 97%``; ``n/a`` without counters.

    Every ``X_planned`` counter with an ``X_unplanned`` beside it gives ``X p%``
    (``operations`` shown as ``ops``); ``-`` for the reference servers.
    """
    if row["server"] in REFERENCES:
        return "-"
    stats = row.get("plan_stats")
    if stats is None:
        return "n/a"
    parts = []
    for key, planned in stats.items():
        if not key.endswith("_planned") or not isinstance(planned, int | float):
            continue
        stem = key.removesuffix("_planned")
        unplanned = stats.get(f"{stem}_unplanned")
        if isinstance(unplanned, int | float) and planned + unplanned:
            name = "ops" if stem == "operations" else stem
            parts.append(f"{name} {100 * planned / (planned + unplanned):.0f}%")
    return " ".join(parts) if parts else "see JSON"


def _number(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def _ratio(row: dict[str, Any], reference: str) -> str:
    value = row.get("ratios", {}).get(reference, {}).get("req_per_s")
    return "" if value is None or math.isnan(value) else f"x{value:.2f}"


def _by_workload(rows: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["workload"], []).append(row)
    return groups


def _cells(row: dict[str, Any], references: Sequence[str]) -> list[str]:
    rate = row["req_per_s"]
    return [
        row["server"] + ("!" if row["flagged"] else "") + ("?" if row["warnings"] else ""),
        _number(rate["median"], 0),
        f"{_number(rate['min'], 0)}-{_number(rate['max'], 0)}",
        _number(row["latency_ms"]["p50"], 0),
        _number(row["latency_ms"]["p99"], 0),
        _number(row["server_cpu_us_per_request"]),
        _number(row["server_cpu_us_per_field"], 2),
        _number(row["generator_cpu_percent"], 0) + "%",
        f"{row['errors']:,}",
        plan_text(row),
        *(_ratio(row, reference) for reference in references),
    ]


HEAD = ["server", "req/s", "range", "p50 ms", "p99 ms", "µs CPU/req", "µs CPU/field"]
HEAD += ["gen CPU", "errors", "planned"]
WIDTHS = [18, 9, 17, 8, 8, 11, 13, 8, 8, 22]


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _heading(workload: str, group: Sequence[dict[str, Any]]) -> str:
    first = next((row for row in group if row["rounds"]), group[0])
    fields = _plural(WORKLOADS[workload].fields, "field")
    rounds = _plural(max(r["rounds"] for r in group), "round")
    return (
        f"{workload}: `{WORKLOADS[workload].query}`, {fields} per request; "
        f"{first['connections']} connections, {rounds} of {_number(first['duration_s'])} s"
    )


def print_summary(rows: Sequence[dict[str, Any]], stream: TextIO = sys.stdout) -> None:
    """Print a table per workload: one line per server (medians of its rounds)."""
    for workload, group in _by_workload(rows).items():
        references = [v for v in REFERENCES if any(r["server"] == v for r in group)]
        print(f"\n{_heading(workload, group)}", file=stream)
        head = HEAD + [f"÷ {v}" for v in references]
        widths = WIDTHS + [14] * len(references)
        print(_line(head, widths), file=stream)
        for row in group:
            print(_line(_cells(row, references), widths), file=stream)
    if any(row["flagged"] for row in rows):
        print("\n! a round failed or had errors, timeouts or non-2xx answers:", file=stream)
        for row in (r for r in rows if r["flagged"]):
            for problem in row["problems"][:5]:
                print(f"    {row['workload']} {row['server']}: {problem}", file=stream)
    for row in (r for r in rows if r["warnings"]):
        for warning in row["warnings"]:
            print(f"? {row['workload']} {row['server']}: {warning}", file=stream)


def _line(cells: Sequence[str], widths: Sequence[int]) -> str:
    first, *rest = zip(cells, widths, strict=True)
    return f"{first[0]:<{first[1]}}" + "".join(f"{cell:>{width}}" for cell, width in rest)


def write_markdown(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Write the tables as Markdown, one per workload, ready to paste into the docs."""
    lines: list[str] = []
    for workload, group in _by_workload(rows).items():
        references = [v for v in REFERENCES if any(r["server"] == v for r in group)]
        head = [*HEAD, *(f"÷ {v} (req/s)" for v in references)]
        lines += [f"### {_heading(workload, group)}", "", "| " + " | ".join(head) + " |"]
        lines.append("|---|" + "---:|" * (len(head) - 1))
        lines += ["| " + " | ".join(_cells(row, references)) + " |" for row in group]
        lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


def write_plot(path: Path, rows: Sequence[dict[str, Any]]) -> str:
    """Plot median req/s per server, one panel per workload, the rounds' range as error bars.

    Returns:
        What happened, for the user: the path written, or why nothing was.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "plot skipped: matplotlib is not installed (pip install 'anyql[bench]')"
    groups = {w: [r for r in g if r["rounds"]] for w, g in _by_workload(rows).items()}
    groups = {w: g for w, g in groups.items() if g}
    if not groups:
        return "plot skipped: no measured rounds"
    figure, panels = plt.subplots(1, len(groups), figsize=(4.5 * len(groups), 4.5), squeeze=False)
    for axes, (workload, group) in zip(panels[0], groups.items(), strict=True):
        names = [r["server"] for r in group]
        medians = [r["req_per_s"]["median"] for r in group]
        below = [m - r["req_per_s"]["min"] for m, r in zip(medians, group, strict=True)]
        above = [r["req_per_s"]["max"] - m for m, r in zip(medians, group, strict=True)]
        colours = ["tab:gray" if n in REFERENCES else "tab:blue" for n in names]
        axes.bar(names, medians, yerr=[below, above], capsize=4, color=colours)
        axes.set_title(f"{workload}: {_plural(WORKLOADS[workload].fields, 'field')} per request")
        axes.set_ylabel("requests per second (median, range)")
        axes.tick_params(axis="x", labelrotation=30)
        axes.grid(True, axis="y", alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return f"plot written to {path}"
