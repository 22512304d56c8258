"""``anyql serve`` exits after SIGTERM however user code behaves: a subscription source
that swallows cancellation and shields an hour-long cleanup cannot keep the process past
``shutdown_grace`` plus two seconds (the watchdog ends it with status 70 and the stacks of
every thread), and a second signal ends it at once; neither can a resolver blocking the
loop, nor a worker thread Python would wait for after the loop ended. The same holds for
``anyql.run(shutdown_watchdog=True)``. Real processes, both backends."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

import pytest

from tests.e2e.raw_ws import connect
from tests.e2e.servers import ROOT, free_port, wait_until_listening
from tests.e2e.stubborn_app import BLOCKING, FLOODING, THREADED

pytestmark = pytest.mark.e2e

BACKENDS = pytest.mark.parametrize("backend", ["trio", "asyncio"])
#: How long a test waits for the process before it counts as hung (never reached when the
#: watchdog works: it fires 1.5 s after shutdown_grace, 1 s in the app).
HANG = 30.0


#: The app's budget: shutdown_grace 1 s, no drain window (``anyql serve`` would otherwise
#: spread the closing over 5 s), plus the watchdog's 1.5 s.
NO_DRAIN = ("--limit", "drain_window=0")


def start(backend: str, port: int, *options: str, script: bool = False) -> subprocess.Popen[bytes]:
    """``anyql serve`` the stubborn app, or (``script``) run it with ``anyql.run``."""
    if script:
        command = [sys.executable, "tests/e2e/stubborn_app.py", str(port), backend, *options]
    else:
        command = [
            sys.executable, "-m", "anyql", "serve", "tests.e2e.stubborn_app:app",
            "--port", str(port), "--backend", backend, *NO_DRAIN, *options,
        ]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE)
    wait_until_listening(port, process, time.monotonic() + 30)
    return process


@contextmanager
def subscribed(port: int) -> Iterator[None]:
    """Keep one stubborn subscription running (its first event received) in the block."""
    with connect(f"ws://127.0.0.1:{port}/graphql") as socket:
        assert socket.init()["type"] == "connection_ack"
        query = {"query": "subscription { stubborn }"}
        socket.send_json({"id": "1", "type": "subscribe", "payload": query})
        assert socket.receive() == {"id": "1", "type": "next", "payload": {"data": {"stubborn": 1}}}
        yield


def signalled(
    backend: str,
    signals: int,
    *options: str,
    signum: signal.Signals = signal.SIGTERM,
    script: bool = False,
) -> tuple[int, str]:
    """Serve with one stubborn subscription running, send ``signum`` ``signals`` times, and
    return the exit status and what the server logged."""
    port = free_port()
    process = start(backend, port, *options, script=script)
    try:
        with subscribed(port):
            for sent in range(signals):
                if sent:
                    time.sleep(0.5)  # a person pressing Ctrl-C twice
                process.send_signal(signum)
            _, err = process.communicate(timeout=HANG)
    finally:
        process.kill()
    return process.returncode, err.decode(errors="replace")


@BACKENDS
def test_F20_a_stubborn_source_cannot_keep_the_process_alive(backend: str) -> None:
    status, log = signalled(backend, 1)
    assert status == 70, log
    assert "shutdown overran 2.5 s; ending the process with status 70" in log
    # what would not end: the field, the connection and how long it ran
    assert "still running: operation '1' (Subscription.stubborn) on a connection from" in log


@BACKENDS
def test_F20_a_second_signal_ends_the_process_at_once(backend: str) -> None:
    status, log = signalled(backend, 2, "--limit", "shutdown_grace=600")  # no overrun soon
    assert status == 70, log
    assert "a second signal; ending the process with status 70" in log


@BACKENDS
def test_F20_a_second_SIGINT_ends_the_process_at_once(backend: str) -> None:
    status, log = signalled(backend, 2, "--limit", "shutdown_grace=600", signum=signal.SIGINT)
    assert status == 70, log
    assert "a second signal; ending the process with status 70" in log


@BACKENDS
def test_F20_run_with_the_watchdog_bounds_a_stubborn_source(backend: str) -> None:
    """``anyql.run(app, shutdown_watchdog=True)`` in a program of its own: the same bound."""
    status, log = signalled(backend, 1, script=True)
    assert status == 70, log
    assert "shutdown overran 2.5 s; ending the process with status 70" in log
    assert "still running: operation '1' (Subscription.stubborn) on a connection from" in log
    assert "run() returned" not in log  # the budget held past run(): the source never ended


def query_then_signal(backend: str, query: bytes, marker: str) -> tuple[int, str, float]:
    """POST ``query``, wait until the resolver prints ``marker``, send SIGTERM, and return the
    exit status, what the server logged and how long it took to exit."""
    port = free_port()
    process = start(backend, port)
    try:
        with socket.create_connection(("127.0.0.1", port)) as client:
            body = b'{"query": "' + query + b'"}'
            client.sendall(
                b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )
            assert process.stderr is not None
            seen = []
            for line in process.stderr:  # until the resolver says it is running
                seen.append(line.decode(errors="replace"))
                if marker in seen[-1]:
                    break
            signalled_at = time.monotonic()
            process.send_signal(signal.SIGTERM)
            _, err = process.communicate(timeout=HANG)
            took = time.monotonic() - signalled_at
    finally:
        process.kill()
    return process.returncode, "".join(seen) + err.decode(errors="replace"), took


@BACKENDS
def test_F20_a_resolver_blocking_the_loop_cannot_keep_the_process_alive(backend: str) -> None:
    status, log, took = query_then_signal(backend, b"{ blocking }", BLOCKING)
    assert status == 70, log
    assert "shutdown overran 2.5 s; ending the process with status 70" in log
    # the HTTP operation that would not end: its field, its client and how long it ran
    assert "still running: HTTP query (Query.blocking) from 127.0.0.1:" in log
    assert took < HANG


@BACKENDS
def test_F20_a_thread_abandoned_on_cancel_cannot_keep_the_process_alive(backend: str) -> None:
    """``to_thread.run_sync(time.sleep, 3600, abandon_on_cancel=True)``: the request is cut
    at the grace and the loop ends, but on asyncio the thread is not a daemon and Python
    waits for it after ``anyio.run`` returned; the watchdog still ends the process."""
    status, log, took = query_then_signal(backend, b"{ threaded }", THREADED)
    if backend == "trio":  # Trio's worker threads are daemons: a clean exit
        assert status == 0, log
    else:
        assert status == 70, log
        assert "shutdown overran 2.5 s; ending the process with status 70" in log
        assert "still running: thread 'AnyIO worker thread'" in log
    assert took < HANG


@BACKENDS
@pytest.mark.parametrize("limit", ["shutdown_grace=1e10", "drain_window=1e10"])
def test_F20_a_second_signal_ends_the_process_whatever_the_budget(backend: str, limit: str) -> None:
    """A budget past what ``select`` takes (about 9.2e9 s) must not kill the watchdog's
    thread at the first signal: the second still ends the process."""
    status, log = signalled(backend, 2, "--limit", limit)
    assert status == 70, log
    assert "a second signal; ending the process with status 70" in log
    assert "OverflowError" not in log


@BACKENDS
def test_F20_a_stalled_stderr_cannot_keep_the_process_alive(backend: str) -> None:
    """stderr is a pipe nobody reads (a stalled log collector): a resolver's log line fills
    it, and the loop blocks in the write holding the logging handler's lock. The watchdog's
    own report cannot be written either; it still ends the process with status 70."""
    port = free_port()
    command = [
        sys.executable, "-m", "anyql", "serve", "tests.e2e.stubborn_app:app",
        "--port", str(port), "--backend", backend, *NO_DRAIN,
    ]  # fmt: skip
    with subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as process:
        try:
            wait_until_listening(port, process, time.monotonic() + 30)
            with socket.create_connection(("127.0.0.1", port)) as client:
                client.sendall(post(b"{ flooding }"))
                assert process.stdout is not None
                for line in process.stdout:  # until the resolver says it logs
                    if FLOODING in line.decode(errors="replace"):
                        break
                process.send_signal(signal.SIGTERM)
                status = process.wait(timeout=HANG)  # stderr is never read
        finally:
            process.kill()
    assert status == 70


@BACKENDS
def test_R06_a_drain_started_by_the_app_is_bounded_by_the_watchdog(backend: str) -> None:
    """``await app.server.drain()`` from a mutation, with a stubborn source running: no
    signal armed the watchdog, yet the shutdown that follows the drain is bounded too.
    (Served by ``anyql.run(shutdown_watchdog=True)``, as ``anyql serve`` does: ``--limit``
    would rebuild the app, and ``app.server`` is the handle of the app being served.)"""
    port = free_port()
    process = start(backend, port, script=True)
    try:
        with subscribed(port), socket.create_connection(("127.0.0.1", port)) as client:
            client.sendall(post(b"mutation { drain }"))
            answer = client.recv(65536)
            _, err = process.communicate(timeout=HANG)
    finally:
        process.kill()
    log = err.decode(errors="replace")
    assert answer.startswith(b"HTTP/1.1 200 "), answer
    assert process.returncode == 70, log
    # the budget of the drain the app asked for (0 + 0) plus shutdown_grace and the margin
    assert "shutdown overran 2.5 s; ending the process with status 70" in log
    assert "still running: operation '1' (Subscription.stubborn) on a connection from" in log


@BACKENDS
def test_F20_without_the_watchdog_a_second_signal_cancels_but_cannot_end_a_shield(
    backend: str,
) -> None:
    """``anyql.run`` without ``shutdown_watchdog``: a second signal cancels everything, but
    a cleanup that shields itself still runs, and the log line says so."""
    port = free_port()
    process = start(backend, port, "--no-watchdog", script=True)
    try:
        with subscribed(port):
            assert process.stderr is not None
            process.send_signal(signal.SIGTERM)
            seen = until_logged(process.stderr, "SIGTERM received")
            process.send_signal(signal.SIGTERM)
            seen += until_logged(process.stderr, "SIGTERM again")
            assert "cancelling everything now; a cleanup that shields itself still runs" in seen
            assert process.poll() is None, seen  # the shielded hour-long cleanup holds it
    finally:
        process.kill()
        process.communicate()


def post(query: bytes) -> bytes:
    """A raw HTTP/1.1 POST of ``query`` to /graphql."""
    body = b'{"query": "' + query + b'"}'
    return (
        b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


def until_logged(stream: IO[bytes], marker: str) -> str:
    """Read ``stream`` up to and including the first line holding ``marker``."""
    seen = []
    for line in stream:
        seen.append(line.decode(errors="replace"))
        if marker in seen[-1]:
            break
    return "".join(seen)
