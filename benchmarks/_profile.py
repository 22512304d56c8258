"""Sampling the server under test with py-spy, and summarising where its time went.

Owns ``Sampler`` (a context manager around ``py-spy record --format raw`` attached to the
server's pid) and ``summarise`` (self and inclusive time per function from the collapsed
stacks). py-spy is optional: without it ``Sampler`` does nothing and says so. Imports the
standard library only.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

__all__ = ["Sampler", "summarise"]


class Sampler:
    """Record ``pid`` (and its children) with py-spy while the ``with`` block runs.

    ``native=True`` also samples C frames (the garbage collector, the interpreter); py-spy
    then pauses the process for each sample, which distorts the run more.
    """

    def __init__(self, pid: int, output: Path, rate: int = 250, native: bool = False) -> None:
        self.pid = pid
        self.native = native
        self.output = output
        self.rate = rate
        self.process: subprocess.Popen[bytes] | None = None
        self.message = ""

    def __enter__(self) -> Sampler:
        beside = Path(sys.executable).parent / "py-spy"
        py_spy = str(beside) if beside.exists() else shutil.which("py-spy")
        if py_spy is None:
            self.message = "profile skipped: py-spy is not installed"
            return self
        self.process = subprocess.Popen(
            [
                py_spy, "record", "--pid", str(self.pid), "--subprocesses", "--rate",
                str(self.rate), "--format", "raw", "--output", str(self.output),
                *(["--native"] if self.native else ["--nonblocking"]),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        return self

    def __exit__(self, *exc_info: object) -> None:
        process = self.process
        if process is None:
            return
        process.send_signal(signal.SIGINT)
        try:
            _, errors = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            _, errors = process.communicate()
        if self.output.exists():
            self.message = f"profile written to {self.output}"
        else:
            self.message = f"profile failed: {errors.decode(errors='replace')[-300:]}"


def _function(frame: str) -> str:
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path, _, _line = where.rpartition(":")
    for marker in ("site-packages/", "src/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})"


def summarise(raw: Path, top: int = 25) -> str:
    """Self and inclusive sample shares per function, from py-spy's raw output.

    Args:
        raw: a file of ``frame;frame;... count`` lines (py-spy ``--format raw``).
        top: how many functions to list in each table.

    Returns:
        Two plain-text tables.
    """
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_function(frame) for frame in stack.split(";")]
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    if not total:
        return "no samples"
    lines = [f"{total} samples", "", "self time:"]
    lines += [f"{100 * c / total:6.1f}%  {name}" for name, c in own.most_common(top)]
    lines += ["", "inclusive time:"]
    lines += [f"{100 * c / total:6.1f}%  {name}" for name, c in inclusive.most_common(top)]
    return "\n".join(lines)
