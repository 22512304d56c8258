"""The DataLoader micro-benchmark: the cost of one ``load()``, with no server.

Owns ``KINDS`` (anyql's ``DataLoader`` on asyncio and on Trio, each inside
``anyql.loader_scope()``, also reached through ``anyql.loader(info, batch)`` on every
load as a resolver does; aiodataloader's and Strawberry's ``DataLoader`` on asyncio),
``sample`` (one measurement), ``run`` (the repeats, implementations alternating),
``summarise``, ``profile`` (cProfile of one kind: where the time goes, file:line, calls
per load) and ``line_profile`` (self time per source line from py-spy's raw output).

One sample runs, ``scopes`` times, two scopes in a fresh event loop, each with a new
loader. Awaited in turn: the miss pass registers ``loads`` distinct keys with
``load(key)`` in a row, then awaits each in turn (what ``load_many`` does); the hit pass
does the same with the same keys (all cached now). In tasks: the same two passes with one
task per key that awaits its load, as the resolvers of a list run (an anyio task group for
anyql, as its executor does; ``asyncio.gather``, as graphql-core does, otherwise), then a
baseline pass of the same tasks storing their key without a load, so a pass less the
baseline is the loader's share. The batch function returns its keys: anyql's is
synchronous (anyql accepts either), aiodataloader's and Strawberry's ``async def`` (both
require it). A miss pass's window includes making the loader, its one dispatch and the
wake-ups; entering and leaving anyql's scope is timed apart (``scope``: the execution
layer pays it for every operation, loader or not). Wall time is ``perf_counter``, CPU
time ``process_time``. The garbage collector is off while a sample runs and collects
before each scope, outside the timed windows: left on, its collections land on
whichever pass crosses its allocation threshold, the same pass every time, which skews
one figure by a few µs per load (allocation itself is still timed). Imports anyio,
anyql, and aiodataloader and Strawberry when their kinds run.
"""

from __future__ import annotations

import asyncio
import cProfile
import gc
import io
import json
import pstats
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio

import anyql

__all__ = [
    "KINDS",
    "REFERENCE",
    "child",
    "line_profile",
    "missing",
    "profile",
    "run",
    "sample",
    "spin",
    "summarise",
]

#: kind -> (event loop, how loads are made)
KINDS: dict[str, tuple[str, str]] = {
    "anyql-asyncio": ("asyncio", "anyql"),
    "anyql-trio": ("trio", "anyql"),
    "anyql-asyncio loader()": ("asyncio", "anyql-lookup"),
    "anyql-trio loader()": ("trio", "anyql-lookup"),
    "aiodataloader-asyncio": ("asyncio", "aiodataloader"),
    "strawberry-asyncio": ("asyncio", "strawberry"),
}
#: The implementation the others are compared with.
REFERENCE = "aiodataloader-asyncio"
#: The timed windows of a sample.
CLOCKS = ("sequential_miss", "sequential_hit", "tasks_base", "tasks_miss", "tasks_hit", "scope")
#: The figures of a sample, each in µs per load (``scope_us``: µs per scope).
FIGURES = (
    *(f"{name}_{clock}_us" for name in CLOCKS[:-1] for clock in ("wall", "cpu")),
    "scope_us",
)
#: Figures computed from the others: a pass in tasks less the baseline's tasks.
NET = {
    f"tasks_{name}_net_{clock}_us": (f"tasks_{name}_{clock}_us", f"tasks_base_{clock}_us")
    for name in ("miss", "hit")
    for clock in ("wall", "cpu")
}
#: The figures set beside the reference's (the loader's own cost per load).
COMPARED = (
    *(f"sequential_{name}_{clock}_us" for name in ("miss", "hit") for clock in ("wall", "cpu")),
    *NET,
)


def missing(kind: str) -> str | None:
    """Why ``kind`` cannot run here (what to install), or None."""
    module = {"aiodataloader": "aiodataloader", "strawberry": "strawberry"}.get(KINDS[kind][1])
    if module is None:
        return None
    try:
        __import__(module)
    except ImportError:
        return f"{module} is not installed: pip install -e '.[bench]'"
    return None


def _keys_back(keys: list[Any]) -> list[Any]:
    """anyql's batch function: synchronous, the values are the keys."""
    return keys


async def _keys_back_async(keys: list[Any]) -> list[Any]:
    """aiodataloader's and Strawberry's batch function (they require a coroutine)."""
    return keys


def _factory(how: str) -> Callable[[], Any]:
    if how == "aiodataloader":
        from aiodataloader import DataLoader as AioDataLoader

        return lambda: AioDataLoader(_keys_back_async)
    if how == "strawberry":
        from strawberry.dataloader import DataLoader as StrawberryDataLoader

        return lambda: StrawberryDataLoader(load_fn=_keys_back_async)
    return lambda: anyql.DataLoader(_keys_back)


class _Clock:
    """Wall and CPU seconds summed over timed windows."""

    __slots__ = ("cpu", "wall")

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0

    def add(self, wall: float, cpu: float) -> None:
        self.wall += wall
        self.cpu += cpu


class _Timed:
    """``with _Timed(clock):`` adds the block's wall and CPU time to ``clock``."""

    __slots__ = ("clock", "cpu", "wall")

    def __init__(self, clock: _Clock) -> None:
        self.clock = clock

    def __enter__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def __exit__(self, *exc_info: object) -> None:
        self.clock.add(time.perf_counter() - self.wall, time.process_time() - self.cpu)


def _loads(how: str, make: Callable[[], Any]) -> Callable[[Any], Any]:
    """What a load is: the loader's bound ``load``, or (``anyql-lookup``) the scope's
    loader looked up through ``anyql.loader`` on every load, as a resolver does."""
    if how == "anyql-lookup":
        lookup = anyql.loader
        return lambda key: lookup(None, _keys_back).load(key)
    return make().load  # type: ignore[no-any-return]


async def _sequential(
    how: str, make: Callable[[], Any], keys: list[int], clocks: dict[str, _Clock]
) -> None:
    """Miss then hit pass: every key registered, then each awaited in turn."""
    for name in ("miss", "hit"):
        with _Timed(clocks[f"sequential_{name}"]):
            if name == "miss":
                load = _loads(how, make)
            pending = [load(key) for key in keys]
            values = [await each for each in pending]
        if values != keys:
            raise AssertionError(f"{how}: wrong values after the sequential {name} pass")


async def _in_tasks(
    how: str, make: Callable[[], Any], keys: list[int], clocks: dict[str, _Clock]
) -> None:
    """Baseline, miss and hit pass with one task per key, as resolvers of a list run (an
    anyio task group for anyql, as its executor does; ``asyncio.gather`` otherwise, as
    graphql-core does). The baseline task stores its key without a load."""
    values: list[Any] = [None] * len(keys)
    load = _loads(how, make)

    async def plain(index: int, key: int) -> None:
        values[index] = key

    async def loaded(index: int, key: int) -> None:
        values[index] = await load(key)

    for name, job in (("miss", loaded), ("hit", loaded), ("base", plain)):
        values[:] = [None] * len(keys)
        with _Timed(clocks[f"tasks_{name}"]):
            if how.startswith("anyql"):
                async with anyio.create_task_group() as group:
                    for index, key in enumerate(keys):
                        group.start_soon(job, index, key)
            else:
                await asyncio.gather(*[job(index, key) for index, key in enumerate(keys)])
        if values != keys:
            raise AssertionError(f"{how}: wrong values after the {name} pass in tasks")


PATTERNS = ("sequential", "tasks")


async def _sample_async(
    how: str, loads: int, scopes: int, patterns: Sequence[str], collect: bool
) -> dict[str, float | None]:
    make = _factory(how)
    clocks = {name: _Clock() for name in CLOCKS}
    entered = 0
    for number in range(scopes):
        for pattern, body in (("sequential", _sequential), ("tasks", _in_tasks)):
            if pattern not in patterns:
                continue
            if collect:
                gc.collect()  # outside the timed windows; the collector is off inside them
            entered += 1
            first = (2 * number + (pattern == "tasks")) * loads
            keys = list(range(first, first + loads))
            if how.startswith("anyql"):
                with _Timed(clocks["scope"]):
                    scope = anyql.loader_scope()
                    await scope.__aenter__()
                try:
                    await body(how, make, keys, clocks)
                finally:
                    with _Timed(clocks["scope"]):
                        await scope.__aexit__(None, None, None)
            else:
                await body(how, make, keys, clocks)
    total = loads * scopes
    figures: dict[str, float | None] = {}
    for name, clock in clocks.items():
        if name == "scope":
            anyql_kind = how.startswith("anyql")
            figures["scope_us"] = clock.wall * 1e6 / entered if anyql_kind else None
        else:
            figures[f"{name}_wall_us"] = clock.wall * 1e6 / total
            figures[f"{name}_cpu_us"] = clock.cpu * 1e6 / total
    return figures


def sample(
    kind: str,
    loads: int,
    scopes: int,
    patterns: Sequence[str] = PATTERNS,
    collect: bool = True,
) -> dict[str, float | None]:
    """One sample of ``kind``: ``scopes`` times, a scope of ``loads`` loads awaited in turn
    and a scope of ``loads`` loads each in its own task (``patterns``), in a new event loop.
    ``collect``: the collector off, and a collection before each scope (as measured);
    without it, the collector as it is (as profiled).

    Returns:
        ``FIGURES``: µs per load of each pass (wall and CPU), and µs per scope entered and
        left (anyql only; None otherwise).
    """
    loop, how = KINDS[kind]
    arguments = (how, loads, scopes, patterns, collect)
    if collect:
        gc.disable()
    try:
        if loop == "trio":
            return anyio.run(_sample_async, *arguments, backend="trio")
        if how.startswith("anyql"):
            return anyio.run(_sample_async, *arguments, backend="asyncio")
        return asyncio.run(_sample_async(*arguments))  # plain asyncio, as they run
    finally:
        if collect:
            gc.enable()


def run(
    kinds: Sequence[str],
    loads: int,
    scopes: int,
    repeats: int,
    report: Callable[[str, int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """A discarded warm-up sample of every kind, then ``repeats`` rounds of one sample of
    each, in reverse order every other round. Returns every measured sample."""
    for kind in kinds:
        sample(kind, loads, max(1, scopes // 4))
    samples: list[dict[str, Any]] = []
    steps = repeats * len(kinds)
    for repeat in range(repeats):
        order = list(kinds) if repeat % 2 == 0 else list(kinds)[::-1]
        for kind in order:
            if report is not None:
                report(kind, len(samples), steps)
            figures = sample(kind, loads, scopes)
            samples.append({"kind": kind, "repeat": repeat, **figures})
    return samples


def summarise(samples: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per kind: the median, min and max of each figure (``NET`` figures computed per
    sample first), and each compared median over the reference's (``REFERENCE``)."""
    kinds = list(dict.fromkeys(s["kind"] for s in samples))
    rows = []
    for kind in kinds:
        mine = [dict(s) for s in samples if s["kind"] == kind]
        for each in mine:
            for net, (gross, base) in NET.items():
                each[net] = each[gross] - each[base]
        row: dict[str, Any] = {"kind": kind, "samples": len(mine), "loop": KINDS[kind][0]}
        for figure in (*FIGURES, *NET):
            values = [s[figure] for s in mine if s.get(figure) is not None]
            row[figure] = (
                {"median": statistics.median(values), "min": min(values), "max": max(values)}
                if values
                else None
            )
        rows.append(row)
    reference = next((row for row in rows if row["kind"] == REFERENCE), None)
    for row in rows:
        row["vs_reference"] = {
            figure: row[figure]["median"] / reference[figure]["median"]
            for figure in COMPARED
            if reference is not None and reference[figure] and row[figure]
            if reference[figure]["median"] > 0
        }
    return rows


def spin(
    kind: str, loads: int, scopes: int, seconds: float, patterns: Sequence[str] = PATTERNS
) -> int:
    """Run samples of ``kind`` for about ``seconds`` (for a sampling profiler), each of 5 x
    ``scopes`` scopes, with the collector left on and no collection between scopes; how
    many samples."""
    deadline = time.monotonic() + seconds
    count = 0
    while time.monotonic() < deadline:
        sample(kind, loads, 5 * scopes, patterns, collect=False)
        count += 1
    return count


def profile(kind: str, loads: int, scopes: int, top: int = 30) -> str:
    """cProfile of one sample of ``kind``, loads awaited in turn only (the figures the
    goal compares): functions by own time, with calls per ``load()`` call.

    cProfile's own cost per call inflates every figure; read the shares and the calls per
    load, not the absolute times. A coroutine counts a call each time it is resumed.
    """
    sample(kind, loads, scopes, ("sequential",))  # warm
    profiler = cProfile.Profile()
    profiler.enable()
    sample(kind, loads, scopes, ("sequential",))
    profiler.disable()
    stats = pstats.Stats(profiler)
    total_loads = 2 * loads * scopes  # the miss and the hit pass
    entries = stats.stats  # type: ignore[attr-defined]
    own_total = sum(entry[2] for entry in entries.values()) or 1.0
    ranked = sorted(entries.items(), key=lambda item: item[1][2], reverse=True)[:top]
    lines = [
        f"cProfile of one sample of {kind}: {scopes} scopes x {loads} loads, miss and hit"
        f" passes ({total_loads:,} load() calls); own time share, calls per load() call",
        "",
        f"{'own %':>6} {'cum s':>7} {'calls/load':>10}  function (file:line)",
    ]
    for (path, line, name), (_, calls, own, cumulative, _) in ranked:
        where = _short(path)
        lines.append(
            f"{100 * own / own_total:6.1f} {cumulative:7.3f} {calls / total_loads:10.3f}"
            f"  {name} ({where}:{line})"
        )
    buffer = io.StringIO()
    pstats.Stats(profiler, stream=buffer).sort_stats("cumulative").print_stats(25)
    return "\n".join(lines) + "\n\nby cumulative time:\n" + _shorten(buffer.getvalue())


def _short(path: str) -> str:
    for marker in ("site-packages/", "src/", "lib/python3.", "benchmarks/"):
        if marker in path:
            tail = path.split(marker, 1)[1]
            return tail if marker != "benchmarks/" else f"benchmarks/{tail}"
    return path


def _shorten(text: str) -> str:
    return "\n".join(
        " ".join(_short(word) if "/" in word else word for word in line.split(" "))
        for line in text.splitlines()
    )


def line_profile(raw: Path, within: str | None = None, top: int = 40) -> str:
    """Self samples per source line (file:line, function) from py-spy's raw output, and
    inclusive samples per function. ``within``: only the stacks through a function of that
    name (a task's own frames: the scheduler's own time is outside them)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for text in raw.read_text().splitlines():
        stack, _, count_text = text.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        if within is not None and not any(f.startswith(f"{within} (") for f in frames):
            continue
        total += count
        own[_frame(frames[-1])] += count
        for name in {_frame(frame, lines=False) for frame in frames}:
            inclusive[name] += count
    if not total:
        return "no samples"
    lines = [f"{total} samples", "", "self time per line:"]
    lines += [f"{100 * c / total:6.1f}%  {name}" for name, c in own.most_common(top)]
    lines += ["", "inclusive time per function:"]
    lines += [f"{100 * c / total:6.1f}%  {name}" for name, c in inclusive.most_common(top)]
    return "\n".join(lines)


def _frame(frame: str, lines: bool = True) -> str:
    name, _, where = frame.partition(" (")
    path, _, line = where.rstrip(")").rpartition(":")
    return f"{_short(path)}:{line} {name}" if lines else f"{name} ({_short(path)})"


def child(argv: Sequence[str] | None = None) -> int:
    """The entry point of the child process the driver runs this in (pinned to a CPU of its
    own): ``argv[1]`` is a JSON object with ``mode`` (``run``: the samples as JSON on
    stdout; ``profile``: ``profile``'s text; ``spin``: run for a sampling profiler) and
    the arguments of that function."""
    config = json.loads((sys.argv if argv is None else argv)[1])
    mode = config.pop("mode")
    if mode == "run":
        print(json.dumps(run(**config)))
    elif mode == "profile":
        print(profile(**config))
    elif mode == "spin":
        print(spin(**config))
    else:
        raise ValueError(f"unknown mode {mode!r}")
    return 0
