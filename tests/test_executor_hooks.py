"""graphql-core's execution hooks (``async_work_finished``), run by ``AnyioExecutor``.

The behaviours of graphql-core 3.3's own hook tests (``test_hooks.py``), with anyql's
executor injected into graphql-core's ``execute`` through ``executor_class``, on asyncio
and Trio. One deliberate difference (see "Concurrency semantics" in docs/design.md): work
graphql-core leaves running after it delivers a result (work given to
``info.async_helpers.track``, orphaned siblings, an async iterator's cleanup after an
abort) is settled before the result or the aborted execution error is delivered, so the
hook has always run by then, and a result with such work pending is delivered by an
awaitable even where graphql-core's is synchronous.

Not ported: the hook after the last ``@defer`` payload (incremental delivery is rejected;
the rejection still runs the hook).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from graphql import (
    ExecutionResult,
    GraphQLField,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLString,
    build_schema,
    parse,
)
from graphql.execution import (
    AbortedGraphQLExecutionError,
    AsyncWorkFinishedInfo,
    ExecutionHooks,
    execute,
    experimental_execute_incrementally,
)
from graphql.pyutils import AbortController, AbortError, is_awaitable

from anyql._executor import AnyioExecutor, run_executor

pytestmark = pytest.mark.anyio


def schema_with(resolve: Any, *, non_null: bool = False) -> GraphQLSchema:
    """``type Query { test: String }`` (or ``String!``), resolved by ``resolve``."""
    field_type = GraphQLNonNull(GraphQLString) if non_null else GraphQLString
    return GraphQLSchema(
        GraphQLObjectType("Query", {"test": GraphQLField(field_type, resolve=resolve)})
    )


OK_SCHEMA = schema_with(lambda *_args: "ok")


def run(schema: GraphQLSchema, query: str = "{ test }", **kwargs: Any) -> Any:
    """graphql-core's ``execute`` with ``AnyioExecutor`` injected."""
    return execute(schema, parse(query), executor_class=AnyioExecutor, **kwargs)


def logging_hook(log: list[str], entry: str = "hook") -> ExecutionHooks:
    return ExecutionHooks(async_work_finished=lambda _info: log.append(entry))


@dataclass
class Settled:
    """What an awaitable run in a task of its own ended with."""

    value: Any = None
    error: BaseException | None = None


async def settle_into(settled: Settled, awaitable: Awaitable[Any], log: list[str]) -> None:
    try:
        settled.value = await awaitable
        log.append("result")
    except Exception as caught:
        settled.error = caught
        log.append("raised")


# --- synchronous execution ------------------------------------------------------------


def test_errors_raised_by_the_hook_are_ignored() -> None:
    calls: list[str] = []

    def hook(_info: AsyncWorkFinishedInfo) -> None:
        calls.append("hook")
        raise RuntimeError("async_work_finished failed")

    result = run(OK_SCHEMA, hooks=ExecutionHooks(async_work_finished=hook))
    assert result == ({"test": "ok"}, None)
    assert calls == ["hook"]


def test_without_async_work_the_hook_runs_before_execute_returns() -> None:
    infos: list[AsyncWorkFinishedInfo] = []
    result = run(OK_SCHEMA, hooks=ExecutionHooks(async_work_finished=infos.append))
    assert not is_awaitable(result)  # still synchronous, as in graphql-core
    assert result == ({"test": "ok"}, None)
    assert len(infos) == 1
    assert isinstance(infos[0], AsyncWorkFinishedInfo)
    assert isinstance(infos[0].executor, AnyioExecutor)


def test_hooks_without_async_work_finished_are_accepted() -> None:
    assert run(OK_SCHEMA, hooks=ExecutionHooks()) == ({"test": "ok"}, None)


def test_the_hook_runs_when_a_synchronous_error_reaches_the_root() -> None:
    calls: list[str] = []

    def fail(*_args: Any) -> str:
        raise RuntimeError("Oops")

    result = run(schema_with(fail, non_null=True), hooks=logging_hook(calls))
    assert isinstance(result, ExecutionResult)
    assert result.data is None
    assert result.errors is not None
    assert result.errors[0].message == "Oops"
    assert calls == ["hook"]


def test_the_hook_runs_when_aborted_before_execution_starts() -> None:
    controller = AbortController()
    controller.abort()
    calls: list[str] = []
    with pytest.raises(AbortError, match="This operation was aborted"):
        run(OK_SCHEMA, abort_signal=controller.signal, hooks=logging_hook(calls))
    assert calls == ["hook"]


async def test_a_rejected_defer_still_runs_the_hook() -> None:
    schema = build_schema(
        "directive @defer(label: String, if: Boolean! = true) on FRAGMENT_SPREAD | INLINE_FRAGMENT"
        " type Query { test: String }"
    )
    calls: list[str] = []
    result = experimental_execute_incrementally(
        schema,
        parse("{ ... @defer { test } }"),
        root_value={"test": "ok"},
        executor_class=AnyioExecutor,
        hooks=logging_hook(calls),
    )
    assert isinstance(result, ExecutionResult)
    assert result.errors is not None
    assert "@defer or @stream" in result.errors[0].message
    assert calls == ["hook"]


# --- asynchronous execution ------------------------------------------------------------


async def test_the_hook_runs_once_an_asynchronous_execution_finished() -> None:
    started = anyio.Event()
    release = anyio.Event()
    log: list[str] = []

    async def resolve(*_args: Any) -> str:
        started.set()
        await release.wait()
        return "ok"

    result = run(schema_with(resolve), hooks=logging_hook(log))
    assert is_awaitable(result)
    settled = Settled()
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(settle_into, settled, result, log)
        await started.wait()
        assert log == []
        release.set()
    assert settled.value == ({"test": "ok"}, None)
    assert log == ["hook", "result"]


async def test_the_hook_runs_when_an_asynchronous_error_reaches_the_root() -> None:
    calls: list[str] = []

    async def fail(*_args: Any) -> str:
        await anyio.lowlevel.checkpoint()
        raise RuntimeError("Oops")

    result = await run(schema_with(fail, non_null=True), hooks=logging_hook(calls))
    assert result.data is None
    assert result.errors[0].message == "Oops"
    assert calls == ["hook"]


async def test_the_gather_helper_cancels_pending_work_before_the_hook() -> None:
    log: list[str] = []

    async def fail() -> str:
        await anyio.lowlevel.checkpoint()
        raise RuntimeError("bad")

    async def pending() -> str:
        try:
            await anyio.sleep_forever()
        finally:
            log.append("pending cancelled")
        return "never"  # pragma: no cover

    def resolve(_source: Any, info: Any) -> Any:
        return info.async_helpers.gather([fail(), pending()])

    result = await run(schema_with(resolve), hooks=logging_hook(log))
    assert result.data == {"test": None}
    assert result.errors[0].message == "bad"
    assert log == ["pending cancelled", "hook"]


async def test_tracked_work_is_finished_before_the_hook_and_the_result() -> None:
    # deviation: graphql-core returns this result synchronously and runs the hook later,
    # when the tracked work has finished in the background
    cleanup_started = anyio.Event()
    release = anyio.Event()
    log: list[str] = []

    async def cleanup() -> None:
        cleanup_started.set()
        await release.wait()
        log.append("cleanup done")

    def resolve(_source: Any, info: Any) -> str:
        info.async_helpers.track([cleanup()])
        return "ok"

    result = run(schema_with(resolve), hooks=logging_hook(log))
    assert is_awaitable(result)
    settled = Settled()
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(settle_into, settled, result, log)
        await cleanup_started.wait()
        assert log == []
        release.set()
    assert settled.value == ({"test": "ok"}, None)
    assert log == ["cleanup done", "hook", "result"]


async def test_work_tracked_by_tracked_work_is_waited_for_too() -> None:
    first_release = anyio.Event()
    second_started = anyio.Event()
    second_release = anyio.Event()
    log: list[str] = []

    async def second() -> None:
        second_started.set()
        await second_release.wait()
        log.append("second done")

    def resolve(_source: Any, info: Any) -> str:
        async def first() -> None:
            await first_release.wait()
            info.async_helpers.track([second()])
            log.append("first done")

        info.async_helpers.track([first()])
        return "ok"

    result = run(schema_with(resolve), hooks=logging_hook(log))
    settled = Settled()
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(settle_into, settled, result, log)
        first_release.set()
        await second_started.wait()
        assert log == ["first done"]
        second_release.set()
    assert log == ["first done", "second done", "hook", "result"]


async def test_orphaned_siblings_are_cancelled_before_the_hook() -> None:
    # deviation: graphql-core returns this synchronously and lets `slow` settle in the
    # background; here `slow` is cancelled (its finally runs) before the result
    schema = build_schema("type Query { slow: String  boom: String! }")
    log: list[str] = []

    async def slow(_info: Any) -> str:
        try:
            await anyio.sleep_forever()
        finally:
            log.append("slow cancelled")
        return "never"  # pragma: no cover

    def boom(_info: Any) -> str:
        raise RuntimeError("boom")

    result = run(
        schema, "{ slow boom }", root_value={"slow": slow, "boom": boom}, hooks=logging_hook(log)
    )
    assert is_awaitable(result)
    result = await result
    assert result.data is None
    assert [error.message for error in result.errors] == ["boom"]
    assert log == ["slow cancelled", "hook"]


async def test_run_executor_runs_the_hook_after_tracked_work() -> None:
    log: list[str] = []

    async def cleanup() -> None:
        await anyio.lowlevel.checkpoint()
        log.append("cleanup done")

    def resolve(_source: Any, info: Any) -> str:
        info.async_helpers.track([cleanup()])
        return "ok"

    executor = AnyioExecutor.build(schema_with(resolve), parse("{ test }"), hooks=logging_hook(log))
    assert isinstance(executor, AnyioExecutor)
    result = await run_executor(executor)
    log.append("result")
    assert result == ({"test": "ok"}, None)
    assert log == ["cleanup done", "hook", "result"]


# --- aborted execution -----------------------------------------------------------------

TODO_SCHEMA = build_schema("type Todo { id: ID  items: [String] }  type Query { todo: Todo }")


async def test_an_aborted_execution_finishes_tracked_cleanup_then_runs_the_hook() -> None:
    # deviation: graphql-core raises at once and runs the hook once the cleanup is done;
    # here the error is raised after the cleanup and the hook
    controller = AbortController()
    hanging_started = anyio.Event()
    cleanup_started = anyio.Event()
    release = anyio.Event()
    log: list[str] = []

    async def hanging() -> dict[str, str]:
        hanging_started.set()
        await anyio.sleep_forever()
        return {"id": "never"}  # pragma: no cover

    async def cleanup() -> None:
        cleanup_started.set()
        await release.wait()
        log.append("cleanup done")

    def todo(info: Any) -> Any:
        info.async_helpers.track([cleanup()])  # must keep running after the abort
        return hanging()

    result = run(
        TODO_SCHEMA,
        "{ todo { id } }",
        root_value={"todo": todo},
        abort_signal=controller.signal,
        hooks=logging_hook(log),
    )
    settled = Settled()
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(settle_into, settled, result, log)
        await hanging_started.wait()
        controller.abort()
        await cleanup_started.wait()
        assert log == []
        release.set()
    assert isinstance(settled.error, AbortedGraphQLExecutionError)
    assert str(settled.error) == "This operation was aborted"
    assert log == ["cleanup done", "hook", "raised"]


async def test_the_hook_waits_for_an_async_iterator_closed_after_an_abort() -> None:
    # deviation: graphql-core raises while the iterator's aclose() still runs; here
    # aclose() finishes first (bounded by cleanup_grace), then the hook runs
    controller = AbortController()
    next_started = anyio.Event()
    close_started = anyio.Event()
    release_close = anyio.Event()
    log: list[str] = []

    class Items:
        def __aiter__(self) -> AsyncIterator[str]:
            return self  # type: ignore[return-value]

        async def __anext__(self) -> str:
            next_started.set()
            await anyio.sleep_forever()
            return "never"  # pragma: no cover

        async def aclose(self) -> None:
            close_started.set()
            await release_close.wait()
            log.append("closed")

    result = run(
        TODO_SCHEMA,
        "{ todo { items } }",
        root_value={"todo": {"items": Items()}},
        abort_signal=controller.signal,
        hooks=logging_hook(log),
    )
    settled = Settled()
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(settle_into, settled, result, log)
        await next_started.wait()
        controller.abort()
        await close_started.wait()
        assert log == []
        release_close.set()
    assert isinstance(settled.error, AbortedGraphQLExecutionError)
    assert log == ["closed", "hook", "raised"]
    partial = await settled.error.aborted_result  # type: ignore[misc]
    assert partial.data == {"todo": {"items": None}}
