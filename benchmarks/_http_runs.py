"""One measured round of the HTTP query benchmark: autocannon against one running server.

Owns the server kinds of the HTTP benchmark (``HTTP_KINDS``: anyql's native server and
hypercorn, each on Trio or asyncio, serving ``benchmarks.http_app:app``; Strawberry and
Ariadne on uvicorn), ``HTTPServer`` (``_servers.ServerProcess`` with these command lines:
access logs off everywhere, uvicorn's log level warning), ``verify`` (one POST of a
workload's query, its response compared with the expected data), ``read_plan_stats``
(anyql's ``Query.planStats``, read outside the measured window) and ``run_round``: one
autocannon run with its JSON output (``-j``; its own progress bar is off then, so
``Progress`` shows the elapsed seconds), POSTing ``application/json`` bodies on a fixed
number of keep-alive connections for a fixed time. Around that run the server's CPU
(``utime + stime`` of its process tree, ``_servers.cpu_seconds``) and the generator's
(``RUSAGE_CHILDREN``: autocannon is the only child this process reaps) are read, so each
round reports server CPU per request and per resolved field, and how busy the generator
was. Imports the standard library and the ``benchmarks`` helpers.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from ._http_schema import HTTPWorkload
from ._report import Progress
from ._servers import ROOT, ServerProcess
from ._servers import missing as fanout_missing

__all__ = [
    "ANYQL_RUNNERS",
    "AUTOCANNON",
    "HTTP_KINDS",
    "INSTALL_AUTOCANNON",
    "REFERENCES",
    "HTTPServer",
    "Load",
    "autocannon_missing",
    "autocannon_version",
    "read_plan_stats",
    "run_round",
    "server_missing",
    "stats_delta",
    "verify",
]

ANYQL_RUNNERS = ("native", "hypercorn")
ANYQL_BACKENDS = ("trio", "asyncio")
REFERENCES = ("strawberry", "ariadne")
HTTP_KINDS = (
    *(f"{runner}-{backend}" for runner in ANYQL_RUNNERS for backend in ANYQL_BACKENDS),
    *REFERENCES,
)
APPS = {
    "anyql": "benchmarks.http_app:app",
    "strawberry": "benchmarks.http_strawberry_app:app",
    "ariadne": "benchmarks.http_ariadne_app:app",
}
PATH = "/graphql"
HEADERS = {"content-type": "application/json", "accept": "application/json"}
AUTOCANNON = ROOT / "benchmarks" / "node_modules" / ".bin" / "autocannon"
INSTALL_AUTOCANNON = "npm ci --prefix benchmarks"
#: Seconds to let the server finish what was in flight before its CPU is read.
SETTLE_SECONDS = 0.2
#: Above this share of its core the generator, not the server, may be the limit.
GENERATOR_BUSY_PERCENT = 90.0
PLAN_STATS_QUERY = "{ planStats }"


def autocannon_missing() -> str | None:
    """Why autocannon cannot run here (with the command that installs it), or None."""
    if shutil.which("node") is None:
        return "node is not on PATH (autocannon needs node 18 or newer)"
    if not AUTOCANNON.exists():
        return f"autocannon is not installed: run `{INSTALL_AUTOCANNON}` (from the repository root)"
    return None


def autocannon_version() -> str | None:
    """The installed autocannon's version, from its package.json."""
    manifest = ROOT / "benchmarks" / "node_modules" / "autocannon" / "package.json"
    try:
        return str(json.loads(manifest.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def server_missing(kind: str) -> str | None:
    """Why ``kind`` cannot be started here (what to install), or None when it can."""
    if kind == "strawberry":
        return fanout_missing("strawberry")
    if kind == "ariadne":
        for module in ("ariadne", "uvicorn"):
            if importlib.util.find_spec(module) is None:
                return f"{module} is not installed: pip install -e '.[bench]'"
    return None


def is_anyql(kind: str) -> bool:
    """True for the kinds that serve ``benchmarks.http_app`` (and so ``planStats``)."""
    return kind not in REFERENCES


def server_command(kind: str, port: int) -> list[str]:
    """The command line that serves ``kind`` on 127.0.0.1:``port``.

    Raises:
        ValueError: an unknown kind.
    """
    python = sys.executable
    if kind in REFERENCES:
        return [
            python, "-m", "uvicorn", APPS[kind], "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "warning", "--no-access-log", "--backlog", "4096",
        ]  # fmt: skip
    base = kind.partition("@")[0]  # "native-trio@before": the same server, older source
    if base not in HTTP_KINDS:
        raise ValueError(f"unknown server kind {kind!r}")
    runner, backend = base.split("-")
    if runner == "native":
        return [
            python, "-m", "anyql", "serve", APPS["anyql"], "--host", "127.0.0.1",
            "--port", str(port), "--backend", backend, "--no-access-log",
        ]  # fmt: skip
    return [
        python, "-m", "hypercorn", "--worker-class", backend, "--workers", "1",
        "--backlog", "4096", "--bind", f"127.0.0.1:{port}", APPS["anyql"],
    ]  # fmt: skip


class HTTPServer(ServerProcess):
    """A server of the HTTP benchmark in its own process; use as a context manager."""

    def command(self) -> list[str]:
        """The command line that starts this server."""
        return server_command(self.kind, self.port)


def post(port: int, query: str, timeout: float = 30.0) -> tuple[int, bytes]:
    """POST ``{"query": query}`` as JSON to 127.0.0.1:``port``; the status and the body."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", PATH, json.dumps({"query": query}), HEADERS)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def verify(server: ServerProcess, workload: HTTPWorkload) -> dict[str, Any]:
    """Send ``workload``'s query once and compare the response with the expected data.

    Returns:
        ``{"ok", "status", "response_bytes", "fields", "problem"}``; ``problem`` says what
        differed (None when ``ok``).
    """
    try:
        status, body = post(server.port, workload.query)
    except OSError as error:
        return {"ok": False, "status": None, "response_bytes": 0, "fields": 0,
                "problem": f"no answer: {error!r}"}  # fmt: skip
    report: dict[str, Any] = {"status": status, "response_bytes": len(body), "fields": 0}
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    if status != 200 or not isinstance(document, dict):
        problem: str | None = f"HTTP {status}: {body[:300]!r}"
    elif document != {"data": workload.expected}:
        problem = f"the response differs from the expected data: {body[:300]!r}"
    else:
        problem = None
        report["fields"] = workload.fields
    return {"ok": problem is None, **report, "problem": problem}


def read_plan_stats(server: ServerProcess) -> dict[str, Any] | None:
    """anyql's ``app.engine.plan_stats()`` through ``Query.planStats``; None when the
    server is not anyql's, the engine has no such method yet, or the query failed."""
    if not is_anyql(server.kind):
        return None
    try:
        status, body = post(server.port, PLAN_STATS_QUERY, timeout=10)
        text = json.loads(body)["data"]["planStats"] if status == 200 else None
        stats = json.loads(text) if isinstance(text, str) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return stats if isinstance(stats, dict) else None


def stats_delta(
    before: dict[str, Any] | None, after: dict[str, Any] | None
) -> dict[str, Any] | None:
    """``after - before`` for every number in ``after`` (other values as ``after`` has them);
    None when either is None."""
    if before is None or after is None:
        return None
    delta: dict[str, Any] = {}
    for key, value in after.items():
        old = before.get(key)
        numbers = isinstance(value, int | float) and isinstance(old, int | float)
        delta[key] = value - old if numbers and not isinstance(value, bool) else value
    return delta


@dataclass(frozen=True)
class Load:
    """How autocannon loads a server: connections and seconds per round."""

    connections: int = 32
    seconds: int = 10
    #: CPUs autocannon runs on (it inherits this process's affinity); for the report.
    cpus: tuple[int, ...] = ()


def autocannon_command(port: int, workload: HTTPWorkload, load: Load) -> list[str]:
    """autocannon's argv: POST the query as JSON on ``load.connections`` connections for
    ``load.seconds`` seconds, one JSON document on stdout, no progress bar."""
    header_options = [word for k, v in HEADERS.items() for word in ("-H", f"{k}={v}")]
    return [
        str(AUTOCANNON), "-c", str(load.connections), "-d", str(load.seconds),
        "-m", "POST", *header_options, "-b", json.dumps({"query": workload.query}),
        "-j", "-n", f"http://127.0.0.1:{port}{PATH}",
    ]  # fmt: skip


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _autocannon(command: list[str], load: Load, label: str, progress: Progress) -> dict[str, Any]:
    """Run autocannon, showing the elapsed seconds; its JSON result.

    Raises:
        RuntimeError: it failed, printed no JSON, or ran far past its duration.
    """
    process = subprocess.Popen(
        command, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    started = time.monotonic()
    deadline = started + load.seconds + 60
    output: tuple[bytes, bytes] | None = None
    while output is None and time.monotonic() < deadline:
        try:
            output = process.communicate(timeout=0.1)
        except subprocess.TimeoutExpired:
            progress.update(label, min(time.monotonic() - started, load.seconds), load.seconds)
    progress.done()
    if output is None:
        process.kill()
        process.communicate()
        raise RuntimeError(f"autocannon still running after {load.seconds + 60} s")
    out, err = output
    lines = [line for line in out.decode(errors="replace").splitlines() if line.startswith("{")]
    if process.returncode != 0 or not lines:
        tail = (err or out).decode(errors="replace").strip()[-500:]
        raise RuntimeError(f"autocannon exited with {process.returncode}: {tail}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def run_round(
    server: ServerProcess,
    workload: HTTPWorkload,
    load: Load,
    progress: Progress,
    label: str,
) -> dict[str, Any]:
    """Load ``server`` with ``workload`` for ``load.seconds`` and measure it.

    Args:
        server: the running server.
        workload: the query and its field count.
        load: connections and duration.
        progress: where the elapsed seconds are shown.
        label: the progress bar's label.

    Returns:
        The round's figures: requests per second, latency percentiles (ms, autocannon's
        1 ms resolution), server CPU per request and per resolved field (µs), the
        generator's CPU share (its start-up included, about 0.3 s of CPU), errors, and
        anyql's plan counters over the round (None when not available; they include the
        one ``planStats`` query read before the round).
    """
    plan_before = read_plan_stats(server)
    loadavg = list(os.getloadavg())
    cpu_before, children_before = server.cpu(), _children_cpu()
    raw = _autocannon(autocannon_command(server.port, workload, load), load, label, progress)
    generator_cpu = _children_cpu() - children_before
    time.sleep(SETTLE_SECONDS)
    server_cpu = server.cpu() - cpu_before
    plan_after = read_plan_stats(server)
    duration = float(raw.get("duration") or 0.0)
    requests = int(raw["requests"]["total"])
    fields = requests * workload.fields
    latency = raw["latency"]
    result: dict[str, Any] = {
        "server": server.kind,
        "workload": workload.name,
        "connections": load.connections,
        "duration_s": duration,
        "requests": requests,
        "requests_2xx": raw.get("2xx", 0),
        "non2xx": raw.get("non2xx", 0),
        "errors": raw.get("errors", 0),
        "timeouts": raw.get("timeouts", 0),
        "resets": raw.get("resets", 0),
        "req_per_s": requests / duration if duration else math.nan,
        "latency_ms": {key: latency.get(key) for key in ("p50", "p90", "p99", "max", "mean")},
        "fields_per_request": workload.fields,
        "server_cpu_s": server_cpu,
        "server_cpu_us_per_request": server_cpu * 1e6 / requests if requests else math.nan,
        "server_cpu_us_per_field": server_cpu * 1e6 / fields if fields else math.nan,
        "generator_cpu_s": generator_cpu,
        "generator_cpu_percent": 100 * generator_cpu / duration if duration else math.nan,
        "plan_stats": stats_delta(plan_before, plan_after),
        "plan_stats_total": plan_after,
        "loadavg_before": loadavg,
        "server_process": server.placement(),
        "generator_cpus": list(load.cpus),
    }
    result["problems"] = problems(result)
    result["warnings"] = warnings(result)
    return result


def problems(run: dict[str, Any]) -> list[str]:
    """What makes a round's figures wrong: errors, timeouts, non-2xx, no requests."""
    found = [f"{run[key]:,} {key}" for key in ("errors", "timeouts", "non2xx") if run.get(key)]
    if not run.get("requests"):
        found.append("no request completed")
    return found


def warnings(run: dict[str, Any]) -> list[str]:
    """What makes a round's figures doubtful: a generator near its core's limit."""
    busy = run.get("generator_cpu_percent")
    if isinstance(busy, float) and busy >= GENERATOR_BUSY_PERCENT:
        return [f"generator {busy:.0f}% busy: req/s may be the generator's limit"]
    return []
