"""Servers under test: how to start each kind in its own process, and what /proc says of it.

Owns ``SERVER_KINDS``, ``ServerProcess`` (start, wait until listening, stop), the process
accounting: CPU seconds (``utime + stime`` from ``/proc/<pid>/stat``) and RSS (``VmRSS``
from ``/proc/<pid>/status``), each summed over the server process and its live descendants
(hypercorn runs its app in a worker child), and the process placement: ``Placement`` (the
server on one CPU, the generators on the others, ``sched_setaffinity``; a child inherits
its parent's affinity, so a server's descendants stay with it) and ``raise_nofile`` (the
descriptor limit a large N needs; children inherit it too). A server whose N is above
anyql's default ``max_connections`` gets ``--limit max_connections=...`` (``anyql
serve``) or ``ANYQL_BENCH_MAX_CONNECTIONS`` (hypercorn, read by ``benchmarks/app.py``).
``missing`` says why a reference server cannot run here (no node or node_modules, no bench
extra), ``unsupported`` why a server cannot serve a subscription transport (the Node
server speaks WebSocket only). Linux only. Imports the standard library only.
"""

from __future__ import annotations

import importlib.util
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

__all__ = [
    "ANYQL_KINDS",
    "REFERENCE_KINDS",
    "SERVER_KINDS",
    "Placement",
    "ServerProcess",
    "cpu_seconds",
    "free_port",
    "missing",
    "nofile_of",
    "raise_nofile",
    "rss_kib",
    "tree",
    "unsupported",
]

ROOT = Path(__file__).resolve().parents[1]
ANYQL_KINDS = ("native-trio", "native-asyncio", "hypercorn-trio", "hypercorn-asyncio")
#: Servers that are not anyql: the comparison servers and the pre-encoded-frame floor.
REFERENCE_KINDS = ("strawberry", "node", "baseline")
SERVER_KINDS = (*ANYQL_KINDS, *REFERENCE_KINDS)
NODE_SERVER = ROOT / "benchmarks" / "node_server.mjs"
NODE_MODULES = ROOT / "tests" / "node" / "node_modules"
#: ``Limits.max_connections``'s default: above it anyql refuses handshakes with 503.
ANYQL_DEFAULT_MAX_CONNECTIONS = 10_000
#: Connections a server may need beyond N (the driver's HTTP requests, probes).
CONNECTION_MARGIN = 100
#: Descriptors a process needs beyond its connections (files, pipes, the listener).
DESCRIPTOR_MARGIN = 1024
_TICKS = os.sysconf("SC_CLK_TCK")


def unsupported(kind: str, transport: str) -> str | None:
    """Why ``kind`` cannot serve subscriptions over ``transport``, or None when it can.

    Every anyql kind, Strawberry (0.320 and later) and the baseline serve graphql-sse's
    distinct connections mode beside graphql-transport-ws; the Node server is graphql-ws.

    Args:
        kind: one of ``SERVER_KINDS``.
        transport: ``"ws"`` or ``"sse"``.

    Returns:
        A sentence for the report, or None.
    """
    if transport == "sse" and kind == "node":
        return "graphql-ws on ws (the Node reference server) serves WebSocket only"
    return None


def missing(kind: str) -> str | None:
    """Why ``kind`` cannot be started on this machine, or None when it can.

    Args:
        kind: one of ``SERVER_KINDS``.

    Returns:
        A sentence saying what to install, or None.
    """
    if kind == "node":
        if shutil.which("node") is None:
            return "node is not on PATH (the Node reference server needs node 18 or newer)"
        if not (NODE_MODULES / "graphql-ws").is_dir():
            return "tests/node/node_modules is missing: run `npm ci --prefix tests/node`"
    if kind == "strawberry":
        for module in ("strawberry", "uvicorn", "websockets"):
            if importlib.util.find_spec(module) is None:
                return f"{module} is not installed: pip install -e '.[bench]'"
    return None


@dataclass(frozen=True)
class Placement:
    """Which CPUs the server and the load generators (and the driver) run on."""

    server: tuple[int, ...] = ()
    generators: tuple[int, ...] = ()
    note: str = "not pinned"

    @classmethod
    def choose(cls, mode: str) -> Placement:
        """``"auto"``: the server on the first usable CPU, the rest for the generators.

        Args:
            mode: ``"auto"`` or ``"off"``.

        Returns:
            Empty CPU sets (nothing pinned) when ``mode`` is ``"off"`` or there is one CPU.
        """
        usable = sorted(os.sched_getaffinity(0))
        if mode == "off":
            return cls(note="not pinned (--pin off)")
        if len(usable) < 2:
            return cls(note=f"not pinned: only CPU {usable} usable")
        server, generators = (usable[0],), tuple(usable[1:])
        others = ",".join(map(str, generators))
        return cls(server, generators, f"server on CPU {usable[0]}, generators on CPU {others}")

    def as_dict(self) -> dict[str, Any]:
        """For the results JSON."""
        return {
            "server_cpus": list(self.server),
            "generator_cpus": list(self.generators),
            "note": self.note,
        }


def raise_nofile(wanted: int) -> dict[str, Any]:
    """Raise this process's RLIMIT_NOFILE to ``wanted`` if it is lower (children inherit it).

    The soft limit goes up to the hard one; past that the hard limit is raised too, which
    needs privilege (root) and stops at ``/proc/sys/fs/nr_open``.

    Args:
        wanted: descriptors needed.

    Returns:
        ``{"wanted", "soft", "hard", "before", "error"}``: the limits in force afterwards.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    before, error = [soft, hard], None
    if soft < wanted:
        try:
            if hard < wanted:
                resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            else:
                resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError) as failure:
            error = f"could not raise the hard limit {hard} to {wanted}: {failure}"
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return {"wanted": wanted, "soft": soft, "hard": hard, "before": before, "error": error}


def nofile_of(pid: int) -> int | None:
    """The soft "Max open files" of ``pid`` (from ``/proc/<pid>/limits``), None if unknown."""
    try:
        with open(f"/proc/{pid}/limits") as limits:
            for line in limits:
                if line.startswith("Max open files"):
                    value = line.split()[3]
                    return int(value) if value.isdigit() else None
    except OSError:
        pass
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_listening(port: int, process: subprocess.Popen[bytes], deadline: float) -> None:
    """Return once something accepts on 127.0.0.1:``port``; fail when ``process`` exits
    first or at ``deadline`` (a ``time.monotonic()`` value)."""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process on port {port} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)  # polled: another process's listening socket has no event
    raise TimeoutError(f"nothing listening on port {port}")


def command(kind: str, sharing: str, port: int, max_connections: int | None = None) -> list[str]:
    """The command line that serves ``kind`` on ``port``.

    Args:
        kind: one of ``SERVER_KINDS``.
        sharing: ``"shared"`` or ``"unshared"`` (anyql kinds only).
        port: the port to bind on 127.0.0.1.
        max_connections: passed to ``anyql serve`` as ``--limit`` when given.

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
    if kind == "node":
        return ["node", str(NODE_SERVER), *bind]
    if kind not in ANYQL_KINDS:
        raise ValueError(f"unknown server kind {kind!r}")
    server, backend = kind.split("-")
    if server == "native":
        limit = ["--limit", f"max_connections={max_connections}"] if max_connections else []
        return [python, "-m", "anyql", "serve", target, *bind, "--backend", backend, *limit]
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
    #: CPUs to pin the server (and so its descendants) to; empty: leave it alone.
    cpus: tuple[int, ...] = ()
    #: WebSocket connections the server must accept (N); raises anyql's limit above 10,000.
    connections: int = 0

    def __enter__(self) -> Self:
        handle, name = tempfile.mkstemp(prefix=f"fanout-{self.kind}-", suffix=".log")
        self.log = Path(name)
        with os.fdopen(handle, "wb") as log:
            self.process = subprocess.Popen(
                self.command(),
                cwd=ROOT,
                env=self._environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=self._in_child,
            )
        try:
            self._wait_listening(time.monotonic() + 30)
        except BaseException:
            self.__exit__()
            raise
        return self

    def command(self) -> list[str]:
        """The command line that starts this server."""
        return command(self.kind, self.sharing, self.port, self.max_connections)

    @property
    def max_connections(self) -> int | None:
        """anyql's ``max_connections`` for this run, None when the default is enough."""
        wanted = self.connections + CONNECTION_MARGIN
        return wanted if wanted > ANYQL_DEFAULT_MAX_CONNECTIONS else None

    def _environment(self) -> dict[str, str]:
        paths = [str(self.source.resolve())] if self.source is not None else []
        environment = {**os.environ, "PYTHONPATH": os.pathsep.join([*paths, str(ROOT)])}
        if self.max_connections:  # hypercorn serves the app as built: benchmarks/app.py reads it
            environment["ANYQL_BENCH_MAX_CONNECTIONS"] = str(self.max_connections)
        return environment

    def _in_child(self) -> None:
        """Between fork and exec: pin, and make sure N connections fit the descriptor limit."""
        if self.cpus:
            os.sched_setaffinity(0, self.cpus)
        wanted = self.connections + DESCRIPTOR_MARGIN
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < wanted:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))

    def placement(self) -> dict[str, Any]:
        """What the server's processes run with: the CPUs any of them may use, and the
        descriptor limit of the one this object started."""
        cpus: set[int] = set()
        for pid in self.pids:
            try:
                cpus |= os.sched_getaffinity(pid)
            except OSError:
                continue
        return {
            "processes": len(self.pids),
            "affinity": sorted(cpus),
            "nofile": nofile_of(self.pid),
        }

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
