"""Forced shutdown: how long ``anyql serve`` takes to exit when user code will not end.

Reproduces the table of docs/reliability.md ("Forced shutdown"). Serves the app of
``tests/e2e/test_bounded_shutdown.py`` (``tests/e2e/stubborn_app.py``: ``shutdown_grace``
1 s, so with ``--limit drain_window=0`` the budget is 1 + 1.5 = 2.5 s) in a fresh process
per run, starts one of the cases below, sends SIGTERM and measures the seconds from the
signal to the process's exit, and its exit status:

- ``stubborn``: a subscription (over SSE) whose source swallows cancellation and shields an
  hour-long cleanup; one SIGTERM;
- ``second-signal``: the same, with a second SIGTERM 0.5 s after the first;
- ``blocking``: a query whose resolver blocks the event loop with ``time.sleep(3600)``;
- ``thread``: a query whose resolver sleeps an hour in a worker thread it abandons on
  cancel (on asyncio a non-daemon thread Python waits for at exit; Trio's are daemons).

Prints a Markdown table (min-max seconds and the exit statuses seen, per backend); ``--json``
also writes the raw runs. Imports the standard library and ``benchmarks._servers`` only;
never anyql.
"""

from __future__ import annotations

import os
import sys

# Run as a script: the repository root, not benchmarks/ (its http.py shadows http), goes first.
if os.path.realpath(sys.path[0]) == os.path.dirname(os.path.realpath(__file__)):
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))

import argparse
import json
import signal
import socket
import subprocess
import time
from pathlib import Path

from benchmarks._servers import free_port, wait_until_listening

ROOT = Path(__file__).resolve().parents[1]
CASES = ("stubborn", "second-signal", "blocking", "thread")
#: What the resolvers print on stderr once they run (tests/e2e/stubborn_app.py).
MARKERS = {
    "blocking": b"stubborn_app: blocking the event loop",
    "thread": b"stubborn_app: sleeping in a worker thread",
}
#: A run that takes longer than this counts as hung (the watchdog fires at 2.5 s).
HANG = 60.0


def start(backend: str, port: int) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "anyql", "serve", "tests.e2e.stubborn_app:app",
        "--port", str(port), "--backend", backend, "--limit", "drain_window=0",
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE)
    try:
        wait_until_listening(port, process, time.monotonic() + 30)
    except BaseException:
        process.kill()
        raise
    return process


def post(port: int, query: str, accept: str) -> socket.socket:
    client = socket.create_connection(("127.0.0.1", port))
    body = json.dumps({"query": query}).encode()
    client.sendall(
        f"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Accept: {accept}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    return client


def one_run(backend: str, case: str) -> tuple[float, int]:
    """Seconds from the first SIGTERM to the exit, and the exit status."""
    port = free_port()
    process = start(backend, port)
    assert process.stderr is not None
    try:
        if case in MARKERS:
            query = "{ blocking }" if case == "blocking" else "{ threaded }"
            client = post(port, query, "application/json")
            for line in process.stderr:  # until the resolver says it runs
                if MARKERS[case] in line:
                    break
        else:
            client = post(port, "subscription { stubborn }", "text/event-stream")
            received = b""
            while b"event: next" not in received:  # the first event: the source runs
                received += client.recv(65536)
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        if case == "second-signal":
            time.sleep(0.5)  # a person pressing Ctrl-C twice
            process.send_signal(signal.SIGTERM)
        process.communicate(timeout=HANG)
        took = time.monotonic() - signalled
        client.close()
    finally:
        process.kill()
        process.wait()
    return took, process.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per case and backend")
    parser.add_argument("--backend", action="append", choices=("trio", "asyncio"))
    parser.add_argument("--case", action="append", choices=CASES)
    parser.add_argument("--json", type=Path, help="write the raw runs here")
    args = parser.parse_args()
    backends = args.backend or ["trio", "asyncio"]
    cases = args.case or list(CASES)
    runs: dict[str, dict[str, list[tuple[float, int]]]] = {}
    for case in cases:
        for backend in backends:
            runs.setdefault(case, {})[backend] = [one_run(backend, case) for _ in range(args.runs)]
    print(f"| case | {' | '.join(backends)} | exit status |")
    print(f"| --- | {' | '.join('---' for _ in backends)} | --- |")
    for case in cases:
        cells = []
        statuses: set[str] = set()
        for backend in backends:
            times = [took for took, _ in runs[case][backend]]
            cells.append(f"{min(times):.3f}-{max(times):.3f}")
            statuses.update(f"{status} ({backend})" for _, status in runs[case][backend])
        print(f"| {case} | {' | '.join(cells)} | {', '.join(sorted(statuses))} |")
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
