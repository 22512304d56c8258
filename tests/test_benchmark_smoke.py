"""Smoke runs of benchmarks/fanout.py, soak.py, http.py, drain.py and dataloader.py.

fanout: a real native Trio server with shared subscriptions, 20 subscribers, one burst of
10 events, no baseline, no Strawberry, no plot: it needs nothing beyond the core and test
dependencies; the same beside the Node graphql-ws reference server (``--compare node``,
skipped when node or tests/node/node_modules is missing); the same over WebSocket and over
SSE (``--transport ws,sse``) beside the baseline, with the SSE-beside-WebSocket table. The
generator's browser-like handshake and fetch, its permessage-deflate reading, its chunked
and event-stream reading, and which servers run over which transport (the Node server:
WebSocket only) are checked without a server. soak: 20 client
slots for a few seconds, on both backends. http (HTTP queries): the native Trio server
only, every workload, a 1 s warm-up and one 1 s round on 4 connections, no plot; it needs
node and autocannon (``./dev test`` installs it with ``npm ci`` in benchmarks/; skipped
with the reason when missing); without a server, the workloads' field counts, the schema
and data each reference server serves (when the bench extra is installed), the plan column
and the message a missing autocannon gets. drain: 20 connections on a Trio server draining
over 1 s after a 0.2 s delay, each closed with 1001 and reconnected to a second server (the
accept-rate ratio is reported, but 20 connections are too few to judge it). dataloader:
anyql's native Trio server with and without its loader, one 1 s round each, and a micro-
benchmark of 2 scopes x 50 loads (needs autocannon too); without a server, the N+1 apps
(anyql on both backends, Strawberry when installed) answer alike with 2 store calls with
a loader and 1,001 without, and every micro-benchmark implementation samples, alternates
and profiles. Every script
that can be run directly answers ``--help`` from the repository root and from benchmarks/,
where benchmarks/http.py would shadow the standard library's ``http`` without the guard
each script starts with (checked too). Full runs are not part of the suite (see
docs/performance.md and docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import anyio
import pytest
from graphql import build_schema, graphql_sync, lexicographic_sort_schema, print_schema

from anyql.testing import TestClient
from benchmarks import _http_runs
from benchmarks._frames import OP_CONTINUATION, OP_TEXT, FrameParser, Inflater
from benchmarks._generator import browser_handshake, sse_request
from benchmarks._http_report import plan_text
from benchmarks._http_schema import SDL, WORKLOADS, count_fields
from benchmarks._servers import missing
from benchmarks._sse import ChunkedBody, EventStream, encode_chunk
from benchmarks.fanout import _targets, build_parser
from benchmarks.http import main as http_main

ROOT = Path(__file__).resolve().parents[1]
#: The scripts in benchmarks/ that can be run directly (``python benchmarks/<script>.py``).
SCRIPTS = (
    "fanout.py",
    "soak.py",
    "memory_probe.py",
    "baseline_server.py",
    "http.py",
    "drain.py",
    "dataloader.py",
    "forced_shutdown.py",
    "durable_memory.py",
    "zero_loss_deploy.py",
    "durable_channels.py",
)
#: What each of them starts with: benchmarks/ (holding http.py) must not stay on sys.path.
PATH_GUARD = """from __future__ import annotations

import os
import sys

# Run as a script: the repository root, not benchmarks/ (its http.py shadows http), goes first.
if os.path.realpath(sys.path[0]) == os.path.dirname(os.path.realpath(__file__)):
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
"""

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
    # the burst's event (one per event: shared) and its mutation took the plan
    assert run["plan_stats"]["operations_planned"] >= 10 + 1
    assert run["plan_stats"]["operations_unplanned"] == 0
    assert run["plan_stats"]["fields_unplanned"] == 0


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


@pytest.mark.e2e
def test_fanout_runs_over_sse_beside_websocket(tmp_path: Path) -> None:
    results = tmp_path / "smoke.json"
    command = [
        sys.executable, str(ROOT / "benchmarks" / "fanout.py"),
        "--servers", "native-trio", "--sharing", "shared", "-n", "20", "-k", "10",
        "--bursts", "1", "--transport", "ws,sse", "--no-plot", "--json", str(results),
    ]  # fmt: skip
    finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=90)
    assert finished.returncode == 0, finished.stdout + finished.stderr

    document = json.loads(results.read_text())
    runs = {(run["server"], run["transport"]): run for run in document["runs"]}
    assert list(runs) == [  # each server over both, back to back
        ("native-trio", "ws"),
        ("native-trio", "sse"),
        ("baseline", "ws"),
        ("baseline", "sse"),
    ]
    for run in runs.values():
        assert run.keys() >= RUN_FIELDS
        assert run["subscribers_live"] == 20
        assert run["deliveries"] == run["expected"] == 200
        assert run["subscribe"]["failed"] == 0
    assert runs["native-trio", "sse"]["subscribe"]["deflated"] == 0
    rows = {row["target"]: row for row in document["transports"]}
    assert rows.keys() == {"native-trio/shared", "baseline"}
    assert rows["native-trio/shared"]["sse_deliveries_per_s"] > 0
    assert rows["native-trio/shared"]["repeats"] == {"ws": 1, "sse": 1}
    compared = {(row["target"], row["transport"]) for row in document["comparisons"]}
    assert compared == {("native-trio/shared", "ws"), ("native-trio/shared sse", "sse")}
    assert document["meta"]["transports"] == ["ws", "sse"]
    assert "SSE beside WebSocket" in finished.stdout
    assert "native-trio/shared sse" in finished.stdout


def test_transports_alternate_and_node_runs_over_websocket_only() -> None:
    args = build_parser().parse_args(
        ["--servers", "native-trio", "--sharing", "shared", "--transport", "ws,sse"]
    )
    args.compare = ["node"]
    first = _targets(args, "fanout", 0)
    assert first == [
        ("native-trio", "shared", "ws"),
        ("native-trio", "shared", "sse"),
        ("node", "unshared", "ws"),
        ("baseline", "shared", "ws"),
        ("baseline", "shared", "sse"),
    ]
    assert _targets(args, "fanout", 1) == first[::-1]
    assert {target[2] for target in _targets(args, "churn", 0)} == {"ws"}
    assert build_parser().parse_args([]).transport == ["ws"]


def test_generator_reads_chunked_event_streams() -> None:
    events = [b":\n\n", b'event: next\ndata: {"a":1}\n\nevent: next\ndata: {"a"', b":2}\n\n"]
    events.append(b"retry: 500\n\ndata: x\ndata: y\n\nevent: complete\ndata: \n\n")
    body = b"".join(encode_chunk(e) for e in events) + b"0\r\n\r\n"
    expected = [(b"next", b'{"a":1}'), (b"next", b'{"a":2}'), (b"message", b"x\ny")]
    expected.append((b"complete", b""))
    for step in (1, 2, 5, len(body)):  # split anywhere, even inside a chunk's size or CRLF
        chunks, stream, seen = ChunkedBody(), EventStream(), []
        for start in range(0, len(body), step):
            seen += stream.feed(chunks.feed(body[start : start + step]))
        assert (seen, chunks.ended) == (expected, True)
    crlf = EventStream()  # Strawberry ends its lines with CRLF
    assert crlf.feed(b'event: next\r\ndata: {"b":2}\r') == []
    assert crlf.feed(b"\n\r\n: ping\r\n\r\n") == [(b"next", b'{"b":2}')]
    with pytest.raises(ValueError):
        ChunkedBody().feed(b"zz\r\n")


def test_generator_sse_request_looks_like_a_browser_fetch() -> None:
    body = b'{"query":"subscription { x }"}'
    request = sse_request("127.0.0.1", 8123, "/graphql", body)
    head, _, sent = request.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {n.lower(): v for n, _, v in (line.partition(": ") for line in lines[1:])}
    assert lines[0] == "POST /graphql HTTP/1.1"
    assert sent == body and headers["content-length"] == str(len(body))
    assert headers["accept"] == "text/event-stream"
    assert headers["content-type"] == "application/json; charset=utf-8"
    assert headers["origin"] == "http://127.0.0.1:8123"
    assert headers["sec-fetch-mode"] == "cors"
    assert "Chrome/" in headers["user-agent"]


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


DRAIN_RUN_FIELDS = {
    "server",
    "n",
    "limits",
    "subscribed",
    "ready_before",
    "closes",
    "reconnects",
    "readiness",
    "upgrades",
    "a_exit",
    "failures",
    "checks",
    "ok",
}


@pytest.mark.e2e
def test_drain_smoke_run_closes_every_connection_1001_and_reconnects_it(tmp_path: Path) -> None:
    results = tmp_path / "drain.json"
    command = [
        sys.executable, str(ROOT / "benchmarks" / "drain.py"),
        "-n", "20", "--drain-delay", "0.2", "--drain-window", "1", "--backend", "trio",
        "--quiet", "--json", str(results),
    ]  # fmt: skip
    document = run_for_json(command, results, timeout=90)

    [run] = document["runs"]
    assert run.keys() >= DRAIN_RUN_FIELDS
    assert (run["server"], run["n"]) == ("native-trio", 20)
    assert run["limits"] == {"drain_delay": 0.2, "drain_window": 1.0, "shutdown_grace": 10.0}
    assert run["subscribed"]["live_a"] == 20
    assert run["ready_before"] == {"a": 200, "b": 200}
    assert set(run["readiness"]["by_phase"]["delay"]) == {"503"}
    assert [u["status"] for u in run["upgrades"]] == [503, 503]
    closes = run["closes"]
    assert closes["codes"] == {"1001": 20}
    assert closes["count"] == 20 and closes["outside_bounds"] == 0
    assert 0.2 <= closes["seconds"]["min"] <= closes["seconds"]["max"] <= 1.7
    assert {"min", "p10", "p50", "p90", "max"} <= closes["seconds"].keys()
    assert sum(closes["per_second"]) == 20
    reconnects = run["reconnects"]
    assert reconnects["accepted"] == reconnects["live"] == 20
    assert sum(reconnects["per_100ms"]) == 20
    assert reconnects["mean_per_100ms"] == pytest.approx(2.0)
    assert reconnects["max_per_100ms"] >= 1
    assert "ratio" in reconnects and reconnects["ratio_judged"] is False  # 2 per 100 ms: too few
    assert run["a_exit"]["code"] == 0
    assert run["a_exit"]["shutdown_s"] <= run["a_exit"]["budget_s"]
    assert run["failures"] == {}
    assert run["ok"] is True
    assert run["checks"]["accept_ratio_at_most_2"] is None
    assert {"started", "pinning", "nofile"} <= document["meta"].keys()


HTTP_SUMMARY_FIELDS = {
    "server",
    "workload",
    "rounds",
    "fields_per_request",
    "req_per_s",
    "latency_ms",
    "server_cpu_us_per_request",
    "server_cpu_us_per_field",
    "generator_cpu_percent",
    "errors",
    "flagged",
    "plan_stats",
}


@pytest.mark.e2e
def test_http_smoke_run_measures_every_workload_with_correct_answers(tmp_path: Path) -> None:
    reason = _http_runs.autocannon_missing()
    if reason is not None:
        pytest.skip(f"the HTTP benchmark needs autocannon: {reason}")
    results = tmp_path / "http.json"
    command = [
        sys.executable, str(ROOT / "benchmarks" / "http.py"),
        "--backend", "trio", "--duration", "1", "--warmup", "1", "--rounds", "1",
        "--connections", "4", "--no-plot", "--quiet", "--json", str(results),
    ]  # fmt: skip
    finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=100)
    assert finished.returncode == 0, finished.stdout + finished.stderr

    document = json.loads(results.read_text())
    server = document["servers"]["native-trio"]
    for name, workload in WORKLOADS.items():
        for check in (server["verified"][name], server["verified_after"][name]):
            assert check["ok"], check["problem"]
            assert check["status"] == 200
            assert check["fields"] == workload.fields
    assert {(r["workload"], r["warmup"]) for r in document["runs"]} == {
        (name, warmup) for name in WORKLOADS for warmup in (True, False)
    }
    rows = {row["workload"]: row for row in document["summary"]}
    assert rows.keys() == WORKLOADS.keys()
    for name, row in rows.items():
        assert row.keys() >= HTTP_SUMMARY_FIELDS
        assert row["server"] == "native-trio"
        assert (row["rounds"], row["errors"], row["flagged"]) == (1, 0, False)
        assert row["fields_per_request"] == WORKLOADS[name].fields
        assert row["req_per_s"]["median"] > 0
        assert row["server_cpu_us_per_request"] > 0
        assert row["server_cpu_us_per_field"] == pytest.approx(
            row["server_cpu_us_per_request"] / row["fields_per_request"]
        )
        assert {"p50", "p99"} <= row["latency_ms"].keys()
        assert row["plan_stats"] is None or isinstance(row["plan_stats"], dict)
    assert document["meta"]["generator"].startswith("autocannon ")
    assert "native-trio" in finished.stdout


def test_workloads_count_every_resolved_field() -> None:
    assert [w.fields for w in WORKLOADS.values()] == [1, 701, 3261]
    # a list field counts once, each of its objects' fields once, a list of scalars once
    assert count_fields({"a": [{"b": 1, "c": ["x", "y"]}, {"b": 2, "c": []}]}) == 5
    nested = WORKLOADS["nested"].expected
    assert len(nested["users"]) == 20
    assert {len(user["posts"]) for user in nested["users"]} == {10}


def test_the_reference_servers_serve_the_same_schema_and_data() -> None:
    for module in ("strawberry", "ariadne"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (the bench extra)")
    from benchmarks import http_ariadne_app, http_strawberry_app

    def printed(schema: object) -> str:
        return print_schema(lexicographic_sort_schema(schema))  # type: ignore[arg-type]

    assert printed(http_strawberry_app.schema._schema) == printed(build_schema(SDL))
    assert printed(http_ariadne_app.schema) == printed(build_schema(SDL))
    for workload in WORKLOADS.values():
        strawberry = http_strawberry_app.schema.execute_sync(workload.query)
        ariadne = graphql_sync(http_ariadne_app.schema, workload.query)
        assert (strawberry.errors, strawberry.data) == (None, workload.expected)
        assert (ariadne.errors, ariadne.data) == (None, workload.expected)


def test_missing_autocannon_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(_http_runs, "AUTOCANNON", ROOT / "benchmarks" / "no-such-autocannon")
    assert http_main(["--quiet", "--no-plot"]) == 2
    error = capsys.readouterr().err
    assert "http.py needs autocannon" in error
    if shutil.which("node") is not None:  # without node, the message asks for node first
        assert _http_runs.INSTALL_AUTOCANNON in error


def test_plan_share_is_na_without_counters() -> None:
    row = {"server": "native-trio", "plan_stats": None}
    assert plan_text(row) == "n/a"
    row["plan_stats"] = {
        "operations_planned": 3,
        "operations_unplanned": 1,
        "fields_planned": 10,
        "fields_unplanned": 0,
    }
    assert plan_text(row) == "ops 75% fields 100%"
    assert plan_text({"server": "strawberry", "plan_stats": None}) == "-"


def test_every_runnable_script_starts_with_the_path_guard() -> None:
    runnable = {
        path.name
        for path in (ROOT / "benchmarks").glob("*.py")
        if 'if __name__ == "__main__":' in path.read_text()
    }
    assert runnable == set(SCRIPTS)
    for name in SCRIPTS:
        text = (ROOT / "benchmarks" / name).read_text()
        docstring_end = text.index('"""', 3) + 3
        assert text[docstring_end:].lstrip("\n").startswith(PATH_GUARD), name


@pytest.mark.parametrize("inside", [False, True], ids=["from-root", "from-benchmarks"])
@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_run_directly_despite_benchmarks_http_py(script: str, inside: bool) -> None:
    # benchmarks/http.py is ``http`` for a script whose directory leads sys.path; without
    # PYTHONPATH, ``benchmarks`` itself is importable only through the guard too.
    cwd, path = (ROOT / "benchmarks", script) if inside else (ROOT, f"benchmarks/{script}")
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PYTHONPATH", "PYTHONSAFEPATH")
    }
    finished = subprocess.run(
        [sys.executable, path, "--help"],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert finished.stdout.startswith(f"usage: {script}")


@pytest.mark.e2e
def test_dataloader_smoke_run_batches_and_measures_the_loaders(tmp_path: Path) -> None:
    reason = _http_runs.autocannon_missing()
    if reason is not None:
        pytest.skip(f"the DataLoader benchmark's http part needs autocannon: {reason}")
    results = tmp_path / "dataloader.json"
    command = [
        sys.executable, str(ROOT / "benchmarks" / "dataloader.py"),
        "--backend", "trio", "--compare", "none", "--duration", "1", "--warmup", "1",
        "--rounds", "1", "--connections", "2", "--loads", "50", "--scopes", "2",
        "--repeats", "1", "--quiet", "--json", str(results),
    ]  # fmt: skip
    document = run_for_json(command, results, timeout=120)

    calls = {"native-trio:loader": 2, "native-trio:naive": 1001}
    assert document["servers"].keys() == calls.keys()
    for kind, server in document["servers"].items():
        for check in (server["verified"], server["verified_after"]):
            assert check["ok"], check["problem"]
            assert check["store_calls"] == calls[kind]
    rows = {row["server"]: row for row in document["summary"]}
    assert rows.keys() == calls.keys()
    for kind, row in rows.items():
        assert (row["rounds"], row["errors"], row["flagged"]) == (1, 0, False)
        assert row["req_per_s"]["median"] > 0
        assert row["store_calls_per_request"] == pytest.approx(calls[kind])
    measured = [run for run in document["runs"] if not run["warmup"]]
    assert all(run["amount"] for run in measured)  # sized from the warm-up: every request ends
    kinds = [row["kind"] for row in document["micro"]["summary"]]
    assert {"anyql-trio", "anyql-asyncio"} <= set(kinds)
    for row in document["micro"]["summary"]:
        assert row["samples"] == 1
        assert row["sequential_miss_cpu_us"]["median"] > 0
        assert row["sequential_hit_cpu_us"]["median"] > 0
        assert (row["scope_us"] is not None) == row["kind"].startswith("anyql")
    goals = {goal["goal"]: goal["met"] for goal in document["goals"]}
    assert goals["native-trio:loader: one store call per level per request (2)"] is True


def test_dataloader_servers_answer_alike_with_one_store_call_per_level() -> None:
    from benchmarks import _dataloader_anyql_app, _dataloader_schema
    from benchmarks._dataloader_schema import EXPECTED, QUERY, STORE
    from benchmarks._http_schema import count_fields

    async def anyql_calls(app: Any) -> int:
        async with TestClient(app) as client:
            before = STORE.calls
            assert await client.query(QUERY) == {"data": EXPECTED}
            return STORE.calls - before

    assert count_fields(EXPECTED) == 5001
    for backend in ("trio", "asyncio"):
        assert anyio.run(anyql_calls, _dataloader_anyql_app.loader, backend=backend) == 2
    assert anyio.run(anyql_calls, _dataloader_anyql_app.naive, backend="trio") == 1001
    if importlib.util.find_spec("strawberry") is None:
        pytest.skip("strawberry is not installed (the bench extra)")
    from benchmarks import _dataloader_strawberry_app as strawberry_app

    def printed(schema: object) -> str:
        return print_schema(lexicographic_sort_schema(schema))  # type: ignore[arg-type]

    sdl = build_schema(_dataloader_schema.SDL)
    assert printed(strawberry_app.schema._schema) == printed(sdl)

    async def strawberry_calls(author: Any) -> int:
        before = STORE.calls
        result = await strawberry_app.schema.execute(QUERY, context_value={"author": author()})
        assert (result.errors, result.data) == (None, EXPECTED)
        return STORE.calls - before

    def batched() -> Any:
        return strawberry_app.DataLoader(load_fn=_dataloader_schema.load_authors).load

    assert asyncio.run(strawberry_calls(batched)) == 2
    assert asyncio.run(strawberry_calls(lambda: STORE.author)) == 1001


def test_dataloader_micro_benchmark_samples_every_implementation() -> None:
    from benchmarks import _dataloader_micro as micro

    kinds = [kind for kind in micro.KINDS if micro.missing(kind) is None]
    assert {"anyql-trio", "anyql-asyncio", "anyql-trio loader()"} <= set(kinds)
    samples = micro.run(kinds, loads=20, scopes=2, repeats=2)
    assert [s["kind"] for s in samples] == kinds + kinds[::-1]  # alternating
    rows = micro.summarise(samples)
    assert [row["kind"] for row in rows] == kinds
    for row in rows:
        for figure in micro.FIGURES[:-1]:
            assert row[figure]["median"] > 0, (row["kind"], figure)
        assert row["tasks_miss_net_cpu_us"] is not None
    if micro.REFERENCE in kinds:
        [reference] = [row for row in rows if row["kind"] == micro.REFERENCE]
        assert reference["vs_reference"]["sequential_miss_cpu_us"] == pytest.approx(1.0)
    text = micro.profile("anyql-trio", loads=20, scopes=1)
    assert "anyql/dataloader.py:" in text and "calls/load" in text


@pytest.mark.redis
def test_durable_channels_smoke_run_measures_every_delivery(tmp_path: Path) -> None:
    from tests.broadcast.helpers import shared_redis_url

    url = shared_redis_url()
    results = tmp_path / "durable.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "durable_channels.py"), "--redis", url]
    command += ["--channels", "1,50", "--events", "30", "--rate", "0", "--repeat", "1"]
    done = subprocess.run(
        [*command, "--json", str(results)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    runs = json.loads(results.read_text())
    assert [(run["channels"], run["events"]) for run in runs] == [(1, 30), (50, 30)]
    assert all(run["deliveries_per_s"] > 0 for run in runs)
