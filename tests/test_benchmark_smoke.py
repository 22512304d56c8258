"""Smoke runs of benchmarks/fanout.py and benchmarks/soak.py, so they keep working.

fanout: a real native Trio server with shared subscriptions, 20 subscribers, one burst of
10 events, no baseline, no Strawberry, no plot: it needs nothing beyond the core and test
dependencies; the same beside the Node graphql-ws reference server (``--compare node``,
skipped when node or tests/node/node_modules is missing). The generator's browser-like
handshake and its permessage-deflate reading are checked without a server. soak: 20 client
slots for a few seconds, on both backends. Full runs are not part of the suite (see
docs/performance.md and docs/reliability.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest

from benchmarks._frames import OP_CONTINUATION, OP_TEXT, FrameParser, Inflater
from benchmarks._generator import browser_handshake
from benchmarks._servers import missing

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


def fanout_document(tmp_path: Path, *options: str) -> dict[str, Any]:
    """Run a tiny ``benchmarks/fanout.py`` (native Trio, shared, N=20, K=10); it must exit 0."""
    results = tmp_path / "smoke.json"
    command = [
        sys.executable, str(ROOT / "benchmarks" / "fanout.py"),
        "--servers", "native-trio", "--sharing", "shared", "-n", "20", "-k", "10",
        "--bursts", "1", "--no-plot", "--quiet", "--json", str(results), *options,
    ]  # fmt: skip
    return run_for_json(command, results, timeout=90)


def run_for_json(command: list[str], report: Path, *, timeout: float) -> dict[str, Any]:
    """Run a benchmark command line; it must exit 0; return the JSON it wrote to ``report``."""
    finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    document: dict[str, Any] = json.loads(report.read_text())
    return document


@pytest.mark.e2e
def test_fanout_compares_with_the_node_graphql_ws_server(tmp_path: Path) -> None:
    reason = missing("node")
    if reason is not None:
        pytest.skip(f"--compare node needs the Node reference server: {reason}")
    document = fanout_document(tmp_path, "--compare", "node", "--no-baseline")

    runs = {run["server"]: run for run in document["runs"]}
    assert runs.keys() == {"native-trio", "node"}
    node = runs["node"]
    assert node["sharing"] == "unshared"
    assert node["deliveries"] == node["expected"] == 200
    assert node["subscribe"]["failed"] == 0
    [row] = document["comparisons"]
    assert (row["target"], row["versus"]) == ("native-trio/shared", "node")
    assert row["ratio_deliveries_per_s"] > 0
    assert document["meta"]["skipped"] == {}


def test_generator_handshake_looks_like_a_browser() -> None:
    head = browser_handshake("127.0.0.1", 8123, "/graphql", "a2V5a2V5a2V5a2V5a2V5aw==")
    lines = head.decode().split("\r\n")
    headers = {n.lower(): v for n, _, v in (line.partition(": ") for line in lines[1:] if line)}
    assert lines[0] == "GET /graphql HTTP/1.1"
    assert headers["host"] == "127.0.0.1:8123"
    assert headers["origin"] == "http://127.0.0.1:8123"
    assert "Chrome/" in headers["user-agent"]
    assert headers["sec-websocket-extensions"] == "permessage-deflate; client_max_window_bits"
    assert headers["sec-websocket-protocol"] == "graphql-transport-ws"
    assert {"accept-encoding", "accept-language", "cache-control", "pragma"} <= headers.keys()
    assert head.endswith(b"\r\n\r\n")
    plain = browser_handshake("127.0.0.1", 8123, "/graphql", "a2V5", offer_deflate=False)
    assert b"Sec-WebSocket-Extensions" not in plain


def _deflated(compressor: Any, message: bytes) -> bytes:
    data = compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(b"\x00\x00\xff\xff")
    return data[:-4]


def test_generator_inflates_permessage_deflate_messages() -> None:
    inflater = Inflater.from_response("permessage-deflate; client_max_window_bits=15")
    assert inflater is not None and inflater.context_takeover
    assert Inflater.from_response("") is None
    compressor = zlib.compressobj(wbits=-15)
    first, second = b'{"type":"next","id":"1"}', b'{"type":"next","id":"1"}' * 3
    parser = FrameParser(inflater)
    whole = _deflated(compressor, first)
    frames = bytes((0x80 | 0x40 | OP_TEXT, len(whole))) + whole
    split = _deflated(compressor, second)  # fragmented: RSV1 on the first frame only
    frames += bytes((0x40 | OP_TEXT, 3)) + split[:3]
    frames += bytes((0x80 | OP_CONTINUATION, len(split) - 3)) + split[3:]
    frames += bytes((0x80 | OP_TEXT, 2)) + b"{}"  # a message sent uncompressed
    assert parser.feed(frames) == [(OP_TEXT, first), (OP_TEXT, second), (OP_TEXT, b"{}")]
    with pytest.raises(ValueError, match="not agreed"):
        FrameParser().feed(bytes((0x80 | 0x40 | OP_TEXT, len(whole))) + whole)


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
    return run_for_json(command, report, timeout=120)


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
