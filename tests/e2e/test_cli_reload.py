"""Running for development and operations: ``anyql serve --reload`` restarts the server
with changed code; the access log is on by default and ``--no-access-log`` silences it;
under hypercorn anyql's records get timestamps. Real processes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.servers import ROOT, free_port, running_server, wait_until_listening

pytestmark = pytest.mark.e2e

APP = """
from anyql import GraphQL, Schema

schema = Schema("type Query { version: String! }")
schema.field("Query.version")(lambda root, info: "VERSION")
app = GraphQL(schema)
"""


def ask(port: int) -> str | None:
    """The served version, or None while nothing answers (the server is restarting)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=b'{"query": "{ version }"}',
        headers={"content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            version: str = json.load(response)["data"]["version"]
            return version
    except OSError:
        return None


BACKENDS = pytest.mark.parametrize("backend", ["trio", "asyncio"])


def serve(tmp_path: Path, port: int, *options: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    command = [sys.executable, "-m", "anyql", "serve", "reloaded:app", "--port", str(port)]
    return subprocess.Popen([*command, *options], cwd=tmp_path, env=env, stderr=subprocess.PIPE)


def stop(process: subprocess.Popen[bytes]) -> str:
    process.send_signal(signal.SIGINT)
    try:
        _, err = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
    return err.decode(errors="replace")


@BACKENDS
def test_reload_restarts_the_server_with_the_changed_code(tmp_path: Path, backend: str) -> None:
    source = tmp_path / "reloaded.py"
    source.write_text(APP.replace("VERSION", "one"))
    port = free_port()
    process = serve(tmp_path, port, "--reload", "--backend", backend)
    try:
        wait_until_listening(port, process, time.monotonic() + 30)
        assert ask(port) == "one"
        source.write_text(APP.replace("VERSION", "two"))
        deadline = time.monotonic() + 30  # the watcher debounces, then the child restarts
        while (answer := ask(port)) != "two" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert answer == "two"
    finally:
        log = stop(process)
    assert "restarting" in log


@BACKENDS
def test_the_access_log_is_on_by_default_and_can_be_turned_off(
    tmp_path: Path, backend: str
) -> None:
    (tmp_path / "reloaded.py").write_text(APP.replace("VERSION", "one"))
    for options, expected in (((), True), (("--no-access-log",), False)):
        port = free_port()
        process = serve(tmp_path, port, "--backend", backend, *options)
        try:
            wait_until_listening(port, process, time.monotonic() + 30)
            assert ask(port) == "one"
        finally:
            log = stop(process)
        line = '"POST /graphql HTTP/1.1" 200'
        assert (line in log) is expected, log


@pytest.mark.parametrize("kind", ["hypercorn-trio", "hypercorn-asyncio"])
def test_under_hypercorn_anyql_logs_with_timestamps_when_nothing_configured_logging(
    kind: str,
) -> None:
    """hypercorn configures only its own loggers: anyql's records would otherwise reach
    Python's last-resort handler (WARNING and up, no time) or vanish (INFO)."""
    with running_server(kind, "tests.e2e.app_limits:app") as server:
        pass
    lines = [line for line in server.log.splitlines() if "anyql.asgi" in line]
    assert lines, server.log
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING anyql\.asgi: ", lines[0])
