"""The ``anyql`` command line: argument errors in-process, one real run in a subprocess."""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from anyql.cli import GC_THRESHOLD, main

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "required"),
        (["serve"], "required"),
        (["serve", "no_colon"], "module:attribute"),
        (["serve", "no_such_module_xyz:app"], "cannot import module 'no_such_module_xyz'"),
        (["serve", "tests.fake_app:missing"], "has no attribute 'missing'"),
        (["serve", "json:dumps"], "is not an anyql app"),
        (["serve", "tests.fake_app:app", "--backend", "curio"], "invalid choice"),
        (["serve", "tests.fake_app:app", "--port", "eighty"], "invalid int value"),
        (["launch", "tests.fake_app:app"], "invalid choice"),
        (["serve", "tests.fake_app:app", "--gc-threshold", "-1"], "whole number >= 0"),
        (["serve", "tests.fake_app:app", "--gc-threshold", "many"], "whole number >= 0"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--help"]) == 0
    assert "--backend" in capsys.readouterr().out


@pytest.fixture
def restore_gc_threshold() -> Iterator[None]:
    saved = gc.get_threshold()
    yield
    gc.set_threshold(*saved)


@pytest.mark.parametrize(
    ("option", "expected"),
    [((), GC_THRESHOLD), (("--gc-threshold", "20000"), 20_000), (("--gc-threshold", "0"), 345)],
)
@pytest.mark.usefixtures("restore_gc_threshold")
def test_serve_sets_the_gc_threshold_of_the_process_it_owns(
    option: tuple[str, ...], expected: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    gc.set_threshold(345, 10, 10)
    seen: list[tuple[int, int, int]] = []
    monkeypatch.setattr("anyql.cli.run", lambda *args, **kwargs: seen.append(gc.get_threshold()))
    assert main(["serve", "tests.fake_app:app", *option]) == 0
    assert seen == [(expected, 10, 10)]


def test_port_in_use_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "tests.fake_app:app", "--port", str(port)]) == 1
    assert f"cannot serve on 127.0.0.1:{port}" in capsys.readouterr().err


def _get(port: int) -> tuple[bytes, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(b"GET /hello?x=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


#: ``python -m anyql``, and the console script (whose sys.path[0] is not the cwd).
MODULE = [sys.executable, "-m", "anyql"]
SCRIPT = [sys.executable, str(Path(sys.executable).parent / "anyql")]


@pytest.mark.parametrize(
    ("command", "backend", "signum"),
    [
        (MODULE, "trio", signal.SIGINT),
        (MODULE, "asyncio", signal.SIGINT),
        (SCRIPT, "trio", signal.SIGTERM),
    ],
)
def test_serve_logs_the_url_answers_and_exits_0_on_signal(
    command: list[str], backend: str, signum: signal.Signals
) -> None:
    process = subprocess.Popen(
        [*command, "serve", "tests.fake_app:app", "--port", "0", "--backend", backend],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": ""},
    )
    watchdog = threading.Timer(30, process.kill)
    watchdog.start()
    try:
        assert process.stderr is not None
        lines = []
        for line in process.stderr:
            lines.append(line)
            match = re.search(r"anyql serving on http://127\.0\.0\.1:(\d+)", line)
            if match:
                break
        assert match, lines
        head, body = _get(int(match.group(1)))
        assert head.startswith(b"HTTP/1.1 200")
        assert json.loads(body)["path"] == "/hello"
        process.send_signal(signum)
        rest = process.stderr.read()
        assert process.wait() == 0, [*lines, rest]
        assert "shutting down" in rest
        assert "Traceback" not in rest
    finally:
        watchdog.cancel()
        process.kill()
        process.wait()


@pytest.mark.parametrize(
    ("options", "window"),
    [
        ((), 5.0),  # SIGTERM drains by default: closing spread over SERVE_DRAIN_WINDOW
        (("--limit", "drain_window=0"), None),  # configured: the app's own (0, at once)
        (("--limit", "drain_window=2"), None),
    ],
)
def test_serve_drains_over_a_default_window_unless_one_is_configured(
    monkeypatch: pytest.MonkeyPatch, options: tuple[str, ...], window: float | None
) -> None:
    import anyql.cli

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(anyql.cli, "run", lambda app, **kwargs: calls.append(kwargs))
    command = ["serve", "tests.e2e.stubborn_app:app", "--port", "0", "--gc-threshold", "0"]
    assert main([*command, *options]) == 0
    [kwargs] = calls
    assert kwargs["shutdown_watchdog"] is True
    assert kwargs["drain_window"] == window
    assert anyql.cli.SERVE_DRAIN_WINDOW == 5.0


def test_serve_keeps_a_drain_window_set_in_code() -> None:
    from anyql import GraphQL, Limits, Schema
    from anyql.cli import serve_drain_window

    app = GraphQL(Schema("type Query { ok: Boolean }"), limits=Limits(drain_window=3.0))
    args = argparse.Namespace(config=None, set=[], limit=[])
    assert serve_drain_window(app, args) is None
