"""Servers under test: how to start each kind in its own process, and what /proc says of it.

Owns ``SERVER_KINDS``, ``ServerProcess`` (start, wait until listening, stop) and the
process accounting: CPU seconds (``utime + stime`` from ``/proc/<pid>/stat``) and RSS
(``VmRSS`` from ``/proc/<pid>/status``), each summed over the server process and its live
descendants (hypercorn runs its app in a worker child). Linux only. Imports the standard
library only.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

__all__ = [
    "ANYQL_KINDS",
    "SERVER_KINDS",
    "ServerProcess",
    "cpu_seconds",
    "free_port",
    "rss_kib",
    "tree",
]

ROOT = Path(__file__).resolve().parents[1]
ANYQL_KINDS = ("native-trio", "native-asyncio", "hypercorn-trio", "hypercorn-asyncio")
SERVER_KINDS = (*ANYQL_KINDS, "baseline", "strawberry")
_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def command(kind: str, sharing: str, port: int) -> list[str]:
    """The command line that serves ``kind`` on ``port``.

    Args:
        kind: one of ``SERVER_KINDS``.
        sharing: ``"shared"`` or ``"unshared"`` (anyql kinds only).
        port: the port to bind on 127.0.0.1.

    Returns:
        argv for ``subprocess.Popen``.

    Raises:
        ValueError: an unknown kind.
    """
    python = sys.executable
    bind = ["--host", "127.0.0.1", "--port", str(port)]
    target = f"benchmarks.app:{sharing}_app"
    if kind == "baseline":
        return [python, "-m", "benchmarks.baseline_server", *bind]
    if kind == "strawberry":
        return [
            python, "-m", "uvicorn", "benchmarks.strawberry_app:app", *bind,
            "--log-level", "warning", "--no-access-log", "--backlog", "4096", "--ws", "websockets",
        ]  # fmt: skip
    if kind not in ANYQL_KINDS:
        raise ValueError(f"unknown server kind {kind!r}")
    server, backend = kind.split("-")
    if server == "native":
        return [python, "-m", "anyql", "serve", target, *bind, "--backend", backend]
    return [
        python, "-m", "hypercorn", "--worker-class", backend, "--workers", "1",
        "--backlog", "4096", "--bind", f"127.0.0.1:{port}", target,
    ]  # fmt: skip


def tree(pid: int) -> list[int]:
    """``pid`` and its live descendants (found through each process's parent id)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(parents.get(current, ()))
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU seconds of ``pids`` (10 ms resolution), skipping dead ones."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / _TICKS


def rss_kib(pids: list[int]) -> int:
    """Resident set size of ``pids`` in KiB, summed, skipping dead ones."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total


@dataclass
class ServerProcess:
    """A server started in its own process; use as a context manager."""

    kind: str
    sharing: str = "shared"
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    #: A directory holding an ``anyql`` package to serve instead of the installed one.
    source: Path | None = None

    def __enter__(self) -> Self:
        handle, name = tempfile.mkstemp(prefix=f"fanout-{self.kind}-", suffix=".log")
        self.log = Path(name)
        with os.fdopen(handle, "wb") as log:
            self.process = subprocess.Popen(
                self.command(),
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": self._python_path()},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            self._wait_listening(time.monotonic() + 30)
        except BaseException:
            self.__exit__()
            raise
        return self

    def command(self) -> list[str]:
        """The command line that starts this server."""
        return command(self.kind, self.sharing, self.port)

    def _python_path(self) -> str:
        paths = [str(self.source.resolve())] if self.source is not None else []
        return os.pathsep.join([*paths, str(ROOT)])

    def __exit__(self, *exc_info: object) -> None:
        process = self.process
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if self.log is not None:
            self.log.unlink(missing_ok=True)

    def _wait_listening(self, deadline: float) -> None:
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.kind} exited early:\n{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"{self.kind}: nothing listening on port {self.port}")

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines the server printed."""
        if self.log is None or not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    @property
    def pid(self) -> int:
        """The pid of the process this object started."""
        assert self.process is not None
        return self.process.pid

    @property
    def pids(self) -> list[int]:
        """The server's process and its live descendants."""
        assert self.process is not None
        return tree(self.process.pid)

    def cpu(self) -> float:
        """CPU seconds used so far by the server's processes."""
        return cpu_seconds(self.pids)

    def rss(self) -> int:
        """RSS of the server's processes now, in KiB."""
        return rss_kib(self.pids)
