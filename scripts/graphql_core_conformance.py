"""graphql-core's own execution tests, run with anyql's executors on asyncio and Trio.

Usage::

    .venv/bin/python scripts/graphql_core_conformance.py [--executor planned|anyio|graphql-core]
        [--backend asyncio|trio] [--cache DIR] [--json PATH] [--list-failures]

It obtains graphql-core's source package (the version anyql pins, ``GRAPHQL_CORE``) from the
package registry with ``pip download`` into a cache directory (``--cache``, by default
``anyql-graphql-core-conformance`` under the system's temporary directory), unpacks it into
a fresh temporary directory and runs its ``tests/execution`` with pytest once per executor
and backend (by default ``planned`` and ``anyio`` on both). Nothing of graphql-core's is
copied into this repository. The executor is injected by replacing the default executor
classes of ``graphql.execution.execute`` (what ``execute``, ``execute_sync``, ``graphql``
and ``subscribe`` build when the caller names none): ``planned`` is
``anyql._plan.PlannedExecutor``, ``anyio`` is ``anyql._executor.AnyioExecutor``,
``graphql-core`` leaves graphql-core's own (the baseline). The Trio runs replace the test
suite's ``anyio_backend`` fixture (a ``conftest.py`` written into the unpacked copy).

Every failure must be an expected one (``expected_failure``): a test that uses
``@defer``/``@stream`` (anyql rejects incremental delivery), one of the deviations
docs/design.md lists (errors ordered by path, pending work settled before the result,
pending siblings cancelled, abort raised after the partial result settled, the next serial
mutation field one loop tick later), and under Trio a test that needs asyncio itself
(``asyncio.sleep``, ``asyncio.Event``, graphql-core's ``AbortSignal.wait``, ...). It prints
the counts per run and exits 1 if any other test failed, 0 otherwise, and 3 when the source
package could not be obtained (the registry is unreachable).

The same file is the pytest plugin loaded into those runs (``-p graphql_core_conformance``,
configured by the ``ANYQL_CONFORMANCE_*`` environment variables).
"""

from __future__ import annotations

import argparse
import ast
import ctypes
import importlib
import inspect
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

#: graphql-core's version whose tests are run (the one anyql is tested against).
GRAPHQL_CORE = "3.3.2"
#: graphql-core's tests are written with pytest-describe (``describe_*`` functions).
PYTEST_DESCRIBE = "3.2.0"
EXECUTORS = ("planned", "anyio", "graphql-core")
BACKENDS = ("asyncio", "trio")
#: what ``main`` exits with when the source package cannot be obtained
UNOBTAINABLE = 3

BACKEND_CONFTEST = '''\
"""Written by anyql's scripts/graphql_core_conformance.py: the backend of this run."""

import os

import pytest


@pytest.fixture
def anyio_backend():
    return os.environ["ANYQL_CONFORMANCE_BACKEND"]
'''

# --- which failures are expected --------------------------------------------------------

#: Deviations anyql makes on purpose (docs/design.md, "Concurrency semantics"), by test id
#: below ``tests/execution/``; expected on both backends, with both anyql executors.
SETTLED_FIRST = "deviation: pending work settled before the result, which is then awaitable"
CANCELLED = "deviation: pending siblings cancelled, not left to settle in the background"
ORDERED = "deviation: errors ordered by path (and a sibling's error kept)"
ABORT = "deviation: abort raised once the partial result settled"
SERIAL = "deviation: the next serial mutation field starts one loop tick later"
_CANCELLATION = "test_cancellation.py::describe_execute_cancellation::"
_HOOKS = "test_hooks.py::describe_execute_hooks::"
_NONNULL = "test_nonnull.py::describe_execute_handles_non_nullable_types::"
_MULTIPLE = _NONNULL + "describe_handles_multiple_errors_for_a_single_response_position::"
DEVIATIONS: dict[str, str] = {
    _CANCELLATION + "suppresses_sibling_errors_after_a_non_null_error_bubbles": CANCELLED,
    _CANCELLATION + "stops_the_execution_when_aborted_mid_mutation": SERIAL,
    "test_executor.py::describe_execute_handles_basic_execution_tasks::"
    "handles_sync_errors_combined_with_async_ones": SETTLED_FIRST,
    "test_executor.py::describe_execute_handles_basic_execution_tasks::"
    "handles_sync_errors_combined_with_async_ones_in_async_context": SETTLED_FIRST,
    _HOOKS + "waits_for_track_helper_usage_before_async_work_finished": SETTLED_FIRST,
    _HOOKS + "keeps_waiting_when_tracked_work_is_followed_by_more_tracked_work": SETTLED_FIRST,
    # these two wait for the result before the work it now waits for: they time out
    _HOOKS + "wrapper_resolves_after_async_work_finished_for_tracked_side_effects": (SETTLED_FIRST),
    _HOOKS + "runs_post_execution_hooks_for_aborted_execution": ABORT,
    _HOOKS + "fires_async_work_finished_after_async_iterator_return_cleanup": SETTLED_FIRST,
    "test_lists.py::describe_execute_handles_abrupt_completion_in_synchronous_iterables::"
    "handles_iterator_errors_with_later_pending_awaitables": SETTLED_FIRST,
    "test_lists.py::describe_execute_handles_abrupt_completion_in_synchronous_iterables::"
    "handles_sync_errors_with_later_pending_awaitables": SETTLED_FIRST,
    _NONNULL + "describe_nulls_a_complex_tree_of_nullable_fields_each::throws": ORDERED,
    _MULTIPLE + "nullable_and_non_nullable_root_fields_throw_nested_errors": ORDERED,
    _MULTIPLE + "slower_nullable_after_non_nullable_root_field": ORDERED,
    _MULTIPLE + "nullable_and_non_nullable_nested_fields_throw_nested_errors": ORDERED,
    _MULTIPLE + "slower_nullable_after_non_nullable_nested_field": ORDERED,
    "test_union_interface.py::describe_execute_union_and_intersection_types::"
    "handles_rejections_from_is_type_of_after_an_is_type_of_returns_true": SETTLED_FIRST,
    "test_union_interface.py::describe_execute_union_and_intersection_types::"
    "handles_pending_is_type_of_rejections_when_a_later_one_throws_sync": SETTLED_FIRST,
}

#: Under Trio, whose scheduling order is randomised, these pass in some runs and fail in
#: others (docs/design.md names the first).
TRIO_SCHEDULING: dict[str, str] = {
    _NONNULL + "handles_async_bubbling_errors_combined_with_non_bubbling": ORDERED,
}

#: Under Trio: tests that reach asyncio through a helper of their module (a resolver that
#: awaits ``asyncio.sleep``), which shows in neither the test's code nor the failure.
TRIO_ASYNCIO_HELPERS = frozenset(
    "test_mutations.py::describe_execute_handles_mutation_execution_ordering::" + name
    for name in (
        "evaluates_mutations_serially",
        "evaluates_mutations_correctly_in_presence_of_a_failed_mutation",
        "mutation_inside_of_a_fragment",
    )
)
#: Under Trio, words in a failure that say asyncio was needed (a helper used it).
ASYNCIO_ONLY = re.compile(
    r"asyncio|get_running_loop|current event loop|running event loop|AsyncLibraryNotFoundError"
    r"|TrioInternalError|unrecognized yield message"
)
#: graphql-core's rejection of an operation that would produce incremental results.
REJECTED_INCREMENTAL = "would unexpectedly produce multiple payloads"


def expected_failure(test_id: str, backend: str, failure: dict[str, Any]) -> str | None:
    """Why the failure of ``test_id`` (a node id below tests/execution) is expected, or None.

    Args:
        test_id: the pytest node id below ``tests/execution/``.
        backend: ``asyncio`` or ``trio``.
        failure: what the plugin recorded: ``message`` (the failure's text),
            ``incremental`` and ``asyncio`` (whether the test's own code uses ``@defer``/
            ``@stream`` or names imported from asyncio).

    Returns:
        The category of an expected failure, None for one that must not happen.
    """
    base = test_id.split("[", 1)[0]
    if (
        base.startswith("incremental/")
        or failure["incremental"]
        or REJECTED_INCREMENTAL in failure["message"]
    ):
        return "@defer/@stream, which anyql rejects"
    if base in DEVIATIONS:
        return DEVIATIONS[base]
    if backend == "trio":
        if base in TRIO_SCHEDULING:
            return f"{TRIO_SCHEDULING[base]}, under Trio's scheduling"
        if (
            failure["asyncio"]
            or base in TRIO_ASYNCIO_HELPERS
            or ASYNCIO_ONLY.search(failure["message"])
        ):
            return "Trio: the test uses asyncio"
    return None


# --- the pytest plugin (inside each run) -----------------------------------------------


def pytest_configure(config: Any) -> None:
    """Make the chosen executor graphql-core's default."""
    # the module (``graphql.execution.execute`` is also the name of its function)
    execute_module = importlib.import_module("graphql.execution.execute")
    name = os.environ.get("ANYQL_CONFORMANCE_EXECUTOR", "graphql-core")
    if name == "graphql-core":
        return
    if name == "planned":
        from anyql._plan import PlannedExecutor as chosen
    else:
        from anyql._executor import AnyioExecutor as chosen
    execute_module.IncrementalExecutor = chosen  # type: ignore[attr-defined]
    execute_module.ExecutorThrowingOnIncremental = chosen  # type: ignore[attr-defined]
    config._anyql_outcomes = {}  # type: ignore[attr-defined]


_planned_tests: set[str] = set()
_outcomes: dict[str, dict[str, Any]] = {}
_traits: dict[str, dict[str, bool]] = {}


def pytest_collection_modifyitems(items: list[Any]) -> None:
    """Note what each test's own code uses: ``@defer``/``@stream``, names from asyncio."""
    asyncio_names: dict[str, re.Pattern[str] | None] = {}
    for item in items:
        function = getattr(item, "function", None)
        if function is None:
            continue
        # (not ``item.module``: for pytest-describe that is the describe block)
        module = sys.modules.get(function.__module__)
        try:
            source = inspect.getsource(function)
        except (OSError, TypeError):
            source = ""
        if function.__module__ not in asyncio_names:
            asyncio_names[function.__module__] = _asyncio_names(module)
        names = asyncio_names[function.__module__]
        _traits[item.nodeid] = {
            "incremental": "@defer" in source or "@stream" in source,
            "asyncio": names is not None and names.search(source) is not None,
        }


def _asyncio_names(module: Any) -> re.Pattern[str] | None:
    """A pattern matching the names ``module`` imported from asyncio (None: none)."""
    try:
        tree = ast.parse(inspect.getsource(module))
    except (OSError, TypeError, SyntaxError):
        return None
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("asyncio"):
            names.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(
                alias.asname or alias.name
                for alias in node.names
                if alias.name.startswith("asyncio")
            )
    if not names:
        return None
    return re.compile(r"\b(?:" + "|".join(sorted(map(re.escape, names))) + r")\b")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: Any) -> Iterator[None]:
    """Note the tests during which an operation took the plan."""
    from anyql._plan import PlannedExecutor

    before = PlannedExecutor.stats.operations_planned
    try:
        return (yield)
    finally:
        if PlannedExecutor.stats.operations_planned > before:
            _planned_tests.add(item.nodeid)


def pytest_runtest_logreport(report: Any) -> None:
    """Keep each test's outcome: a failure in any phase, else its call's outcome."""
    known = _outcomes.get(report.nodeid)
    traits = _traits.get(report.nodeid, {"incremental": False, "asyncio": False})
    if report.failed:
        if known is None or known["outcome"] != "failed":
            _outcomes[report.nodeid] = {
                "outcome": "failed",
                "message": report.longreprtext,
                **traits,
            }
    elif known is None and (report.when == "call" or report.skipped):
        _outcomes[report.nodeid] = {"outcome": report.outcome, "message": "", **traits}


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    """Write the outcomes where the script asked for them."""
    path = os.environ.get("ANYQL_CONFORMANCE_REPORT")
    if path:
        Path(path).write_text(
            json.dumps({"outcomes": _outcomes, "planned": sorted(_planned_tests)}),
            encoding="utf-8",
        )


# --- the script -------------------------------------------------------------------------


def default_cache() -> Path:
    """Where the downloaded packages are kept between runs."""
    return Path(tempfile.gettempdir()) / "anyql-graphql-core-conformance"


def obtain(cache: Path) -> tuple[Path, Path]:
    """graphql-core's source package and pytest-describe's wheel, downloaded if missing.

    Raises:
        RuntimeError: pip could not download one of them.
    """
    cache.mkdir(parents=True, exist_ok=True)
    wanted = [
        (f"graphql_core-{GRAPHQL_CORE}.tar.gz", f"graphql-core=={GRAPHQL_CORE}", True),
        (
            f"pytest_describe-{PYTEST_DESCRIBE}-py3-none-any.whl",
            f"pytest-describe=={PYTEST_DESCRIBE}",
            False,
        ),
    ]
    found: list[Path] = []
    for filename, requirement, source in wanted:
        path = cache / filename
        if not path.exists():
            command = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(cache)]
            # only graphql-core from source: its build backend may come as a wheel
            command += ["--no-binary", "graphql-core"] if source else ["--only-binary", ":all:"]
            done = subprocess.run(
                [*command, requirement], capture_output=True, text=True, timeout=300, check=False
            )
            if done.returncode != 0 or not path.exists():
                raise RuntimeError(f"pip download {requirement} failed:\n{done.stderr[-2000:]}")
        found.append(path)
    return found[0], found[1]


def unpack(sdist: Path, into: Path) -> Path:
    """Unpack the source package's ``tests/`` and configuration into ``into``."""
    with tarfile.open(sdist) as archive:
        members = [
            member
            for member in archive.getmembers()
            if "/tests/" in member.name or member.name.endswith("/pyproject.toml")
        ]
        archive.extractall(into, members=members, filter="data")
    root = into / f"graphql_core-{GRAPHQL_CORE}"
    (root / "tests" / "execution" / "conftest.py").write_text(BACKEND_CONFTEST, encoding="utf-8")
    return root


def run_once(
    root: Path, wheel: Path, executor: str, backend: str, report: Path
) -> subprocess.Popen[str]:
    """Start pytest on graphql-core's execution tests with ``executor`` on ``backend``."""
    env = dict(os.environ)
    env.pop("CI", None)  # graphql-core's suite has no CI-only behaviour; keep ours out
    env.update(
        PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parent), str(wheel)]),
        PYTEST_DISABLE_PLUGIN_AUTOLOAD="1",
        PYTHONDONTWRITEBYTECODE="1",  # no __pycache__ beside this script
        ANYQL_CONFORMANCE_EXECUTOR=executor,
        ANYQL_CONFORMANCE_BACKEND=backend,
        ANYQL_CONFORMANCE_REPORT=str(report),
    )
    command = [
        sys.executable,
        "-m",
        "pytest",
        "tests/execution",
        "-q",
        "--no-header",
        "-p",
        "no:cacheprovider",
        "-p",
        "anyio",
        "-p",
        "pytest_describe.plugin",
        "-p",
        "graphql_core_conformance",
        "-p",
        "pytest_timeout",
        # a test runs in milliseconds; the two that wait for what anyql now does first
        # would otherwise hang (signal: the test fails, the run goes on)
        "--timeout=5",
        "--timeout-method=signal",
        # Python's own traceback text: pytest's default style re-parses the source, and
        # after a timeout's signal CPython 3.11 can fail that ("AST constructor recursion
        # depth mismatch"), which ends the whole run as an internal error.
        "--tb=native",
        "-o",
        "addopts=",
        "-W",
        "ignore::pytest.PytestConfigWarning",
    ]
    return subprocess.Popen(
        command,
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_die_with_this_script if sys.platform == "linux" else None,
    )


def _die_with_this_script() -> None:
    """In the child, before pytest starts: the kernel kills it when this script dies, even
    by SIGKILL (a caller's timeout), so no run is left behind."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def summarise(executor: str, backend: str, data: dict[str, Any]) -> dict[str, Any]:
    """Counts of one run and its failures sorted into expected and unexpected ones."""
    outcomes: dict[str, dict[str, Any]] = data["outcomes"]
    counts: dict[str, int] = {}
    expected: dict[str, str] = {}
    unexpected: dict[str, str] = {}
    for node_id, outcome in sorted(outcomes.items()):
        counts[outcome["outcome"]] = counts.get(outcome["outcome"], 0) + 1
        if outcome["outcome"] != "failed":
            continue
        test_id = node_id.removeprefix("tests/execution/")
        why = expected_failure(test_id, backend, outcome) if executor != "graphql-core" else None
        if why is None:
            unexpected[test_id] = outcome["message"]
        else:
            expected[test_id] = why
    categories: dict[str, int] = {}
    for why in expected.values():
        categories[why] = categories.get(why, 0) + 1
    return {
        "executor": executor,
        "backend": backend,
        "counts": counts,
        "planned_tests": len(data["planned"]),
        "expected_failures": categories,
        "expected": expected,
        "unexpected": unexpected,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the conformance check; see the module docstring for the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--executor", action="append", choices=EXECUTORS)
    parser.add_argument("--backend", action="append", choices=BACKENDS)
    parser.add_argument("--cache", type=Path, default=default_cache())
    parser.add_argument("--json", type=Path, help="write the summaries here")
    parser.add_argument("--list-failures", action="store_true", help="print expected ones too")
    args = parser.parse_args(argv)
    executors = args.executor or ["planned", "anyio"]
    backends = args.backend or list(BACKENDS)

    import graphql

    if graphql.__version__ != GRAPHQL_CORE:
        print(
            f"graphql-core {graphql.__version__} is installed; the expectations are for"
            f" {GRAPHQL_CORE}: update GRAPHQL_CORE and the expected failures",
            file=sys.stderr,
        )
        return 1
    try:
        sdist, wheel = obtain(args.cache)
    except (RuntimeError, subprocess.TimeoutExpired, OSError) as error:
        print(f"could not obtain graphql-core's source package: {error}", file=sys.stderr)
        return UNOBTAINABLE
    started = time.monotonic()
    summaries: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="anyql-conformance-") as temporary:
        root = unpack(sdist, Path(temporary))
        runs = []
        for executor in executors:
            for backend in backends:
                report = Path(temporary) / f"{executor}-{backend}.json"
                runs.append(
                    (executor, backend, report, run_once(root, wheel, *(executor, backend), report))
                )
        try:
            for executor, backend, report, process in runs:
                _, stderr = process.communicate(timeout=900)
                if process.returncode not in (0, 1) or not report.exists():
                    print(
                        f"{executor} on {backend}: pytest ended with status"
                        f" {process.returncode}\n{stderr}",
                        file=sys.stderr,
                    )
                    return 1
                summaries.append(summarise(executor, backend, json.loads(report.read_text())))
        finally:
            for *_, process in runs:  # none outlives this run (a timeout, an interrupt)
                if process.poll() is None:
                    process.kill()
                    process.wait()
    failed = False
    for summary in summaries:
        counts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(summary["counts"].items()))
        print(
            f"{summary['executor']:>12} on {summary['backend']:<7}: {counts};"
            f" {summary['planned_tests']} tests took the plan"
        )
        for why, n in sorted(summary["expected_failures"].items()):
            print(f"{'':>24}expected: {n} {why}")
        if args.list_failures:
            for test_id, why in summary["expected"].items():
                print(f"{'':>26}{test_id}: {why}")
        for test_id, message in summary["unexpected"].items():
            failed = True
            print(f"{'':>24}UNEXPECTED failure: {test_id}\n{message[-3000:]}\n")
    print(f"({time.monotonic() - started:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(summaries, indent=2), encoding="utf-8")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
