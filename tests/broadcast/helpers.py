"""Helpers for the Broadcast tests: polling with a deadline and a private redis-server."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio

from tests.requirements import unavailable

LOCALHOST = "127.0.0.1"
SHARED_REDIS_PORT = 6379


def shared_redis_url() -> str:
    """The shared Redis on 127.0.0.1:6379; skips the test without it (fails it under CI)."""
    if not answers_ping(SHARED_REDIS_PORT):
        unavailable(f"nothing answers PING on {LOCALHOST}:{SHARED_REDIS_PORT}")
    return f"redis://{LOCALHOST}:{SHARED_REDIS_PORT}/0"


def answers_ping(port: int, timeout: float = 0.5) -> bool:
    """True when something on 127.0.0.1:``port`` answers a Redis PING."""
    try:
        with socket.create_connection((LOCALHOST, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind((LOCALHOST, 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """A private redis-server process that tests may kill, pause and restart."""

    def __init__(
        self, executable: str, directory: Path, port: int, *, appendonly: bool = False
    ) -> None:
        self.executable = executable
        #: With the append-only file on and fsynced at every write, a SIGKILL loses
        #: nothing Redis acknowledged, and a restart in the same directory reloads it.
        self.appendonly = appendonly
        self.directory = directory
        self.port = port
        self.url = f"redis://{LOCALHOST}:{port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, deadline: float = 10.0) -> None:
        """Start on ``port`` and return once it answers PING (polling with a deadline)."""
        assert self._process is None, "already running"
        self._process = subprocess.Popen(
            [
                self.executable,
                "--port",
                str(self.port),
                "--bind",
                LOCALHOST,
                "--save",
                "",
                "--appendonly",
                "yes" if self.appendonly else "no",
                "--appendfsync",
                "always",
                "--daemonize",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        give_up = time.monotonic() + deadline
        while not answers_ping(self.port, timeout=0.2):
            if self._process.poll() is not None or time.monotonic() > give_up:
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.01)

    def kill(self) -> None:
        """SIGKILL the server and reap it."""
        process, self._process = self._process, None
        assert process is not None, "not running"
        process.send_signal(signal.SIGCONT)
        process.kill()
        process.wait()

    def pause(self) -> None:
        """SIGSTOP: the server keeps its sockets but answers nothing."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after ``pause``."""
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Kill it if it is running (the fixture's teardown)."""
        if self._process is not None:
            self.kill()


# Polling on purpose: the state observed (a flag, a log record, a Redis counter) has no event.


async def wait_until(predicate: Callable[[], bool], *, deadline: float = 10.0) -> None:
    """Poll ``predicate`` until it holds; fail after ``deadline`` seconds."""
    with anyio.fail_after(deadline):
        while not predicate():  # noqa: ASYNC110
            await anyio.sleep(0.01)


async def wait_until_async(
    predicate: Callable[[], Awaitable[bool]], *, deadline: float = 10.0
) -> None:
    """Poll an async ``predicate`` until it holds; fail after ``deadline`` seconds."""
    with anyio.fail_after(deadline):
        while not await predicate():  # noqa: ASYNC110
            await anyio.sleep(0.01)


def unique(name: str) -> str:
    """A channel or prefix name no other test run uses (the shared Redis is shared)."""
    return f"anyql-test:{uuid.uuid4().hex[:12]}:{name}"
