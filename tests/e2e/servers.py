"""Start real servers in their own processes: native and hypercorn, Trio and asyncio."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from benchmarks._servers import free_port, wait_until_listening

ROOT = Path(__file__).resolve().parents[2]
SERVER_KINDS = ("native-trio", "native-asyncio", "hypercorn-trio", "hypercorn-asyncio")


@dataclass(frozen=True)
class RunningServer:
    kind: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def log(self) -> str:
        """Everything the server wrote to stderr so far."""
        return self.log_path.read_text(errors="replace")

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/graphql"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/graphql"


def server_command(
    kind: str, target: str, port: int, workers: int = 1, options: Sequence[str] = ()
) -> list[str]:
    server, backend = kind.split("-")
    if server == "native":
        return [
            sys.executable,
            "-m",
            "anyql",
            "serve",
            target,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend",
            backend,
            *options,
        ]
    return [
        sys.executable,
        "-m",
        "hypercorn",
        "--worker-class",
        backend,
        "--workers",
        str(workers),
        "--bind",
        f"127.0.0.1:{port}",
        *options,
        target,
    ]


@contextmanager
def running_server(
    kind: str,
    target: str = "tests.e2e.app:app",
    env: dict[str, str] | None = None,
    workers: int = 1,
    port: int | None = None,
    options: Sequence[str] = (),
) -> Iterator[RunningServer]:
    port = port or free_port()
    # A file, not a pipe: nobody reads a pipe while the server runs, and a full one blocks it.
    # Kept after the server stops, so fixtures can check what it logged.
    fd, log_name = tempfile.mkstemp(prefix=f"anyql-{kind}-", suffix=".log")
    os.close(fd)
    with open(log_name, "wb") as log:
        process = subprocess.Popen(
            server_command(kind, target, port, workers, options),
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            wait_until_listening(port, process, time.monotonic() + 30)
            yield RunningServer(kind, port, process, Path(log_name))
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
