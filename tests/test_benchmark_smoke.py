"""Smoke runs of benchmarks/fanout.py and benchmarks/soak.py, so they keep working.

fanout: a real native Trio server with shared subscriptions, 20 subscribers, one burst of
10 events, no baseline, no Strawberry, no plot: it needs nothing beyond the core and test
dependencies. soak: 20 client slots for a few seconds, on both backends. Full runs are not
part of the suite (see docs/performance.md and docs/reliability.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]

RUN_FIELDS = {
    "mode",
    "server",
    "sharing",
    "n",
    "k",
    "payload",
    "subscribers_live",
    "deliveries",
    "expected",
    "missed",
    "deliveries_per_s",
    "server_cpu_us_per_delivery",
    "latency_ms",
    "rss_per_subscriber_kib",
}


@pytest.mark.e2e
def test_fanout_smoke_run_delivers_every_event(tmp_path: Path) -> None:
    results = tmp_path / "smoke.json"
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "fanout.py"),
        "--servers", "native-trio",
        "--sharing", "shared",
        "-n", "20",
        "-k", "10",
        "--bursts", "1",
        "--no-baseline",
        "--no-plot",
        "--quiet",
        "--json", str(results),
    ]  # fmt: skip
    finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=90)
    assert finished.returncode == 0, finished.stdout + finished.stderr

    document = json.loads(results.read_text())
    [run] = document["runs"]
    assert run.keys() >= RUN_FIELDS
    assert (run["server"], run["sharing"], run["n"], run["k"]) == ("native-trio", "shared", 20, 10)
    assert run["subscribers_live"] == 20
    assert run["deliveries"] == run["expected"] == 200
    assert run["missed"] == 0
    assert run["deliveries_per_s"] > 0
    assert {"p50", "p99", "max"} <= run["latency_ms"].keys()
    assert {"started", "cpus", "loadavg_at_start"} <= document["meta"].keys()
    assert not (tmp_path / "smoke.png").exists()


def soak_report(tmp_path: Path, backend: str, *options: str) -> dict[str, Any]:
    """Run ``benchmarks/soak.py`` with ``options``; it must exit 0. Returns its report."""
    report = tmp_path / "soak.json"
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "soak.py"),
        *options,
        "--sample-every", "1",
        "--backend", backend,
        "--json", str(report),
    ]  # fmt: skip
    finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    document: dict[str, Any] = json.loads(report.read_text())
    return document


@pytest.mark.e2e
@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_soak_smoke_run_leaks_nothing(tmp_path: Path, backend: str) -> None:
    document = soak_report(
        tmp_path, backend, "--seconds", "6", "--connections", "20", "--lifetime", "2"
    )
    assert document["backend"] == backend
    assert document["leaked_tasks"] == 0
    assert document["server_errors_logged"] == 0
    assert document["end"]["websockets"] == 0
    assert document["clients"]["failure_count"] == 0
    assert document["clients"]["connections"] > 0


@pytest.mark.e2e
@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_long_lived_soak_smoke_run_delivers_every_event(tmp_path: Path, backend: str) -> None:
    document = soak_report(
        tmp_path, backend, "--long-lived", "--subscriptions", "20", "--events", "400",
        "--rate", "0", "--seconds", "60",
    )  # fmt: skip
    assert document["events_delivered"] == document["events_expected"] >= 400
    assert document["leaked_tasks"] == 0
    assert document["server_errors_logged"] == 0
    assert document["clients"]["failure_count"] == 0
