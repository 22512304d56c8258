"""``anyql serve`` exits after SIGTERM however user code behaves: a subscription source
that swallows cancellation and shields an hour-long cleanup cannot keep the process past
``shutdown_grace`` plus two seconds (the watchdog ends it with status 70 and the stacks of
every thread), and a second signal ends it at once. Real processes, both backends."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.e2e.raw_ws import connect
from tests.e2e.servers import ROOT, free_port, wait_until_listening
from tests.e2e.stubborn_app import BLOCKING

pytestmark = pytest.mark.e2e

BACKENDS = pytest.mark.parametrize("backend", ["trio", "asyncio"])
#: How long a test waits for the process before it counts as hung (never reached when the
#: watchdog works: it fires 1.5 s after shutdown_grace, 1 s in the app).
HANG = 30.0


def start(backend: str, port: int, *options: str) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "anyql", "serve", "tests.e2e.stubborn_app:app",
        "--port", str(port), "--backend", backend, *options,
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


def signalled(backend: str, signals: int, *options: str) -> tuple[int, str]:
    """Serve with one stubborn subscription running, send SIGTERM ``signals`` times, and
    return the exit status and what the server logged."""
    port = free_port()
    process = start(backend, port, *options)
    try:
        with subscribed(port):
            for sent in range(signals):
                if sent:
                    time.sleep(0.5)  # a person pressing Ctrl-C twice
                process.send_signal(signal.SIGTERM)
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
def test_F20_a_resolver_blocking_the_loop_cannot_keep_the_process_alive(backend: str) -> None:
    port = free_port()
    process = start(backend, port)
    try:
        with socket.create_connection(("127.0.0.1", port)) as client:
            body = b'{"query": "{ blocking }"}'
            client.sendall(
                b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )
            assert process.stderr is not None
            seen = []
            for line in process.stderr:  # until the resolver says it blocks the loop
                seen.append(line.decode(errors="replace"))
                if BLOCKING in seen[-1]:
                    break
            signalled_at = time.monotonic()
            process.send_signal(signal.SIGTERM)
            _, err = process.communicate(timeout=HANG)
            took = time.monotonic() - signalled_at
    finally:
        process.kill()
    log = "".join(seen) + err.decode(errors="replace")
    assert process.returncode == 70, log
    assert "shutdown overran 2.5 s; ending the process with status 70" in log
    assert took < HANG
