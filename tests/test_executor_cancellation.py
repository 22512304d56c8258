"""graphql-core's abort signal, honoured by ``AnyioExecutor`` under asyncio and Trio.

The behaviours of graphql-core 3.3's own cancellation tests (``test_cancellation.py``),
with anyql's executor injected into graphql-core's ``execute`` and ``subscribe`` through
``executor_class``: aborting before and during execution, in nested async fields, list
items, async iterators, abstract types and subscriptions, the abort reasons, and pending
siblings of a failed non-null field. Where ``AnyioExecutor`` deliberately differs (see
"Concurrency semantics" in docs/design.md), the test says so: the aborted execution error
is raised once the partial result has settled, and that result is already settled.

Not ported: the ``@defer``/``@stream`` cases (incremental delivery is rejected) and
``AbortSignal.wait()`` (graphql-core's signal waits on an asyncio event, so it cannot be
awaited under Trio; the executor polls ``signal.aborted`` instead).
"""

from __future__ import annotations

import gc
import logging
import warnings
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from graphql import (
    ExecutionResult,
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLString,
    build_schema,
    parse,
)
from graphql.execution import AbortedGraphQLExecutionError, execute, subscribe
from graphql.pyutils import AbortController, AbortError, is_awaitable

from anyql._executor import AnyioExecutor

pytestmark = pytest.mark.anyio

SCHEMA = build_schema(
    """
    type Todo { id: ID  items: [String]  author: User }
    type User { id: ID  name: String }
    type Step { value: String }
    type Query { todo: Todo  nonNullableTodo: Todo!  blocker: String  aborter: String }
    type Mutation { foo: Step  bar: String }
    type Subscription { foo: String }
    """
)

ABORTED = "This operation was aborted"


def run(query: str, schema: GraphQLSchema = SCHEMA, **kwargs: Any) -> Any:
    """graphql-core's ``execute`` with ``AnyioExecutor`` injected."""
    return execute(schema, parse(query), executor_class=AnyioExecutor, **kwargs)


def error(message: str, line: int, column: int, *path: str | int) -> dict[str, Any]:
    return {"message": message, "locations": [{"line": line, "column": column}], "path": list(path)}


@dataclass
class Settled:
    """What an awaitable run in a task of its own ended with."""

    value: Any = None
    error: BaseException | None = None


async def settle_into(settled: Settled, awaitable: Awaitable[Any]) -> None:
    try:
        settled.value = await awaitable
    except Exception as caught:
        settled.error = caught


async def aborted_result(caught: BaseException | None) -> dict[str, Any]:
    """The formatted partial result an ``AbortedGraphQLExecutionError`` carries."""
    assert isinstance(caught, AbortedGraphQLExecutionError)
    partial = caught.aborted_result
    # deviation: already settled when the error is raised, but still an awaitable
    assert is_awaitable(partial)
    result = await partial
    assert isinstance(result, ExecutionResult)
    return result.formatted


@contextmanager
def no_unawaited_coroutines() -> Iterator[None]:
    """Fail if a coroutine was dropped without being awaited or closed."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
        gc.collect()
    assert not [w for w in caught if "never awaited" in str(w.message)]


def must_not_be_called(*_args: Any, **_kwargs: Any) -> Any:
    pytest.fail("must not be called")  # pragma: no cover


# --- execute ------------------------------------------------------------------------


async def test_an_execution_never_aborted_completes_normally() -> None:
    controller = AbortController()

    async def todo(_info: Any) -> dict[str, str]:
        await anyio.lowlevel.checkpoint()
        return {"id": "1"}

    result = run("{ todo { id } }", abort_signal=controller.signal, root_value={"todo": todo})
    assert is_awaitable(result)
    assert (await result).formatted == {"data": {"todo": {"id": "1"}}}


async def test_an_abort_before_the_result_is_awaited_stops_the_pending_resolver() -> None:
    controller = AbortController()
    ran: list[str] = []

    async def todo(_info: Any) -> dict[str, Any]:
        ran.append("todo")  # pragma: no cover
        return {"id": "1", "author": must_not_be_called}  # pragma: no cover

    with no_unawaited_coroutines():
        result = run(
            "{ todo { id author { id } } }",
            abort_signal=controller.signal,
            root_value={"todo": todo},
        )
        assert is_awaitable(result)
        controller.abort()
        with pytest.raises(AbortedGraphQLExecutionError, match=ABORTED) as caught:
            await result
    assert ran == []  # closed before its body ran
    assert isinstance(caught.value.reason, AbortError)
    assert await aborted_result(caught.value) == {
        "data": {"todo": None},
        "errors": [error(ABORTED, 1, 3, "todo")],
    }


async def test_resolvers_see_the_signal_and_a_hanging_one_is_cancelled() -> None:
    controller = AbortController()
    started = anyio.Event()
    seen: list[Any] = []
    log: list[str] = []

    async def hanging() -> str:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            log.append("cancelled")
        return "never"  # pragma: no cover

    def resolve_id(info: Any) -> Any:
        seen.append(info.abort_signal)
        return hanging()

    settled = Settled()
    result = run(
        "{ todo { id } }", abort_signal=controller.signal, root_value={"todo": {"id": resolve_id}}
    )
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(settle_into, settled, result)
        await started.wait()
        controller.abort()
    assert seen == [controller.signal]
    assert log == ["cancelled"]
    assert isinstance(settled.error, AbortedGraphQLExecutionError)
    assert await aborted_result(settled.error) == {
        "data": {"todo": {"id": None}},
        "errors": [error(ABORTED, 1, 10, "todo", "id")],
    }


async def test_any_object_with_aborted_and_reason_can_be_the_signal() -> None:
    class Flag:  # no asyncio event to wait on: only the flag, which is polled
        aborted = False
        reason: Any = None

    signal = Flag()
    started = anyio.Event()

    async def todo(_info: Any) -> dict[str, str]:
        started.set()
        await anyio.sleep_forever()
        return {"id": "never"}  # pragma: no cover

    settled = Settled()
    result = run("{ todo { id } }", abort_signal=signal, root_value={"todo": todo})
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(settle_into, settled, result)
        await started.wait()
        signal.reason = RuntimeError("stop")
        signal.aborted = True
    assert await aborted_result(settled.error) == {
        "data": {"todo": None},
        "errors": [error("stop", 1, 3, "todo")],
    }


async def test_an_exception_as_reason_is_the_cause_and_the_field_error() -> None:
    controller = AbortController()
    reason = RuntimeError("Custom abort error")

    async def todo(_info: Any) -> Any:
        return must_not_be_called()  # pragma: no cover

    result = run("{ todo { id } }", abort_signal=controller.signal, root_value={"todo": todo})
    controller.abort(reason)
    with pytest.raises(AbortedGraphQLExecutionError, match="Custom abort error") as caught:
        await result
    assert caught.value.__cause__ is reason
    partial = await caught.value.aborted_result  # type: ignore[misc]
    assert partial.errors[0].original_error is reason
    assert partial.formatted == {
        "data": {"todo": None},
        "errors": [error("Custom abort error", 1, 3, "todo")],
    }


async def test_an_abort_inside_a_resolver_discards_the_awaitable_it_returns() -> None:
    controller = AbortController()
    reason = RuntimeError("Custom abort error")
    ran: list[str] = []

    async def never() -> str:
        ran.append("never")  # pragma: no cover
        await anyio.sleep_forever()  # pragma: no cover
        return "never"  # pragma: no cover

    def blocker(_info: Any) -> Any:
        controller.abort(reason)
        return never()

    with no_unawaited_coroutines():
        result = run("{ blocker }", abort_signal=controller.signal, root_value={"blocker": blocker})
        assert is_awaitable(result)
        with pytest.raises(AbortedGraphQLExecutionError, match="Custom abort error") as caught:
            await result
    assert caught.value.__cause__ is reason
    assert ran == []
    assert await aborted_result(caught.value) == {
        "data": {"blocker": None},
        "errors": [error("Custom abort error", 1, 3, "blocker")],
    }


async def test_a_reason_that_is_no_exception_is_an_unexpected_error_value() -> None:
    controller = AbortController()
    controller.abort("Custom abort error message")
    with pytest.raises(TypeError, match="Unexpected error value: 'Custom abort error message'"):
        run(
            "{ todo { id } }",
            abort_signal=controller.signal,
            root_value={"todo": must_not_be_called},
        )


async def test_an_abort_while_the_result_is_pending_yields_the_partial_result() -> None:
    controller = AbortController()
    reason = RuntimeError("Custom abort error")
    started = anyio.Event()

    async def blocker(_info: Any) -> str:
        started.set()
        await anyio.sleep_forever()
        return "never"  # pragma: no cover

    settled = Settled()
    result = run(
        "query {\n  blocker\n}", abort_signal=controller.signal, root_value={"blocker": blocker}
    )
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(settle_into, settled, result)
        await started.wait()
        controller.abort(reason)
    assert isinstance(settled.error, AbortedGraphQLExecutionError)
    assert settled.error.__cause__ is reason
    assert await aborted_result(settled.error) == {
        "data": {"blocker": None},
        "errors": [error("Custom abort error", 2, 3, "blocker")],
    }


async def test_an_abort_during_synchronous_execution_raises_with_the_completed_result() -> None:
    controller = AbortController()
    reason = RuntimeError("Custom abort error")

    def aborter(_info: Any) -> str:
        controller.abort(reason)
        return "done"

    with pytest.raises(AbortedGraphQLExecutionError, match="Custom abort error") as caught:
        run("{ aborter }", abort_signal=controller.signal, root_value={"aborter": aborter})
    assert caught.value.__cause__ is reason
    completed = caught.value.aborted_result
    assert not is_awaitable(completed)  # as in graphql-core: a plain, synchronous result
    assert completed == ({"aborter": "done"}, None)


async def test_an_abort_stops_a_nested_async_field() -> None:
    controller = AbortController()

    async def author(_info: Any) -> Any:
        return must_not_be_called  # pragma: no cover

    result = run(
        "{ todo { id author { id } } }",
        abort_signal=controller.signal,
        root_value={"todo": {"id": "1", "author": author}},
    )
    controller.abort()
    with pytest.raises(AbortedGraphQLExecutionError, match=ABORTED) as caught:
        await result
    assert await aborted_result(caught.value) == {
        "data": {"todo": {"id": "1", "author": None}},
        "errors": [error(ABORTED, 1, 13, "todo", "author")],
    }


async def test_a_hanging_list_item_is_cancelled() -> None:
    controller = AbortController()
    log: list[str] = []

    started = anyio.Event()

    async def item() -> str:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            log.append("item cancelled")
        return "never"  # pragma: no cover

    def todo(_info: Any) -> dict[str, Any]:
        return {"id": "1", "items": [item()]}

    settled = Settled()
    result = run("{ todo { id items } }", abort_signal=controller.signal, root_value={"todo": todo})
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(settle_into, settled, result)
        await started.wait()
        controller.abort()
    assert log == ["item cancelled"]
    assert await aborted_result(settled.error) == {
        "data": {"todo": {"id": "1", "items": [None]}},
        "errors": [error(ABORTED, 1, 13, "todo", "items", 0)],
    }


async def test_an_item_resolving_in_the_same_step_as_the_abort_is_discarded() -> None:
    controller = AbortController()
    started = anyio.Event()
    release = anyio.Event()

    async def item() -> str:
        started.set()
        await release.wait()
        return "value"

    settled = Settled()
    result = run(
        "{ todo { items } }",
        abort_signal=controller.signal,
        root_value={"todo": {"items": lambda _info: [item()]}},
    )
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(settle_into, settled, result)
        await started.wait()
        controller.abort()
        release.set()
    assert await aborted_result(settled.error) == {
        "data": {"todo": {"items": [None]}},
        "errors": [error(ABORTED, 1, 10, "todo", "items", 0)],
    }


async def test_an_async_generator_list_is_stopped_before_it_starts() -> None:
    controller = AbortController()
    ran: list[str] = []

    async def items(_info: Any) -> AsyncIterator[str]:
        ran.append("items")  # pragma: no cover
        yield "never"  # pragma: no cover

    with no_unawaited_coroutines():
        result = run(
            "{ todo { id items } }",
            abort_signal=controller.signal,
            root_value={"todo": lambda _info: {"id": "1", "items": items}},
        )
        controller.abort()
        with pytest.raises(AbortedGraphQLExecutionError, match=ABORTED) as caught:
            await result
    assert ran == []
    assert await aborted_result(caught.value) == {
        "data": {"todo": {"id": "1", "items": None}},
        "errors": [error(ABORTED, 1, 13, "todo", "items")],
    }


async def test_a_hanging_iterator_without_aclose_is_interrupted() -> None:
    controller = AbortController()
    started = anyio.Event()
    log: list[str] = []

    class Items:
        def __aiter__(self) -> Items:
            return self

        async def __anext__(self) -> str:
            started.set()
            try:
                await anyio.sleep_forever()
            finally:
                log.append("next cancelled")
            return "never"  # pragma: no cover

    settled = Settled()
    result = run(
        "{ todo { id items } }",
        abort_signal=controller.signal,
        root_value={"todo": {"id": "1", "items": Items()}},
    )
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(settle_into, settled, result)
        await started.wait()
        controller.abort()
    assert log == ["next cancelled"]
    assert await aborted_result(settled.error) == {
        "data": {"todo": {"id": "1", "items": None}},
        "errors": [error(ABORTED, 1, 13, "todo", "items")],
    }


async def test_an_error_closing_the_iterator_after_an_abort_is_only_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    controller = AbortController()
    started = anyio.Event()
    release = anyio.Event()
    closed: list[bool] = []

    class Items:
        def __aiter__(self) -> Items:
            return self

        async def __anext__(self) -> str:
            started.set()
            await release.wait()
            return "value"

        async def aclose(self) -> None:
            closed.append(True)
            raise RuntimeError("Return failed")

    settled = Settled()
    result = run(
        "{ todo { items } }",
        abort_signal=controller.signal,
        root_value={"todo": {"items": Items()}},
    )
    with caplog.at_level(logging.ERROR, logger="anyql.execution"):
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(settle_into, settled, result)
            await started.wait()
            controller.abort()
            release.set()
    assert closed == [True]
    assert "closing a list field's async iterator failed" in caplog.text
    assert await aborted_result(settled.error) == {
        "data": {"todo": {"items": None}},
        "errors": [error(ABORTED, 1, 10, "todo", "items")],
    }


async def test_an_abort_stops_an_async_resolve_type() -> None:
    controller = AbortController()
    started = anyio.Event()
    release = anyio.Event()

    async def resolve_type(_value: Any, _info: Any, _type: Any) -> str:
        started.set()
        await release.wait()
        return "User"

    node = GraphQLInterfaceType(
        "Node", {"id": GraphQLField(GraphQLString)}, resolve_type=resolve_type
    )
    user = GraphQLObjectType(
        "User",
        {"id": GraphQLField(GraphQLString, resolve=must_not_be_called)},
        interfaces=[node],
    )
    schema = GraphQLSchema(
        GraphQLObjectType("Query", {"node": GraphQLField(node, resolve=lambda *_: {"id": "1"})}),
        types=[user],
    )
    settled = Settled()
    result = run("{ node { id } }", schema, abort_signal=controller.signal)
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(settle_into, settled, result)
        await started.wait()
        controller.abort()
        release.set()
    assert await aborted_result(settled.error) == {
        "data": {"node": None},
        "errors": [error(ABORTED, 1, 3, "node")],
    }


async def test_an_abort_stops_an_async_is_type_of() -> None:
    controller = AbortController()
    started = anyio.Event()
    release = anyio.Event()

    async def is_type_of(_value: Any, _info: Any) -> bool:
        started.set()
        await release.wait()
        return True

    todo = GraphQLObjectType(
        "Todo",
        {"id": GraphQLField(GraphQLString, resolve=must_not_be_called)},
        is_type_of=is_type_of,
    )
    schema = GraphQLSchema(
        GraphQLObjectType("Query", {"todo": GraphQLField(todo, resolve=lambda *_: {"id": "1"})})
    )
    settled = Settled()
    result = run("{ todo { id } }", schema, abort_signal=controller.signal)
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(settle_into, settled, result)
        await started.wait()
        controller.abort()
        release.set()
    assert await aborted_result(settled.error) == {
        "data": {"todo": None},
        "errors": [error(ABORTED, 1, 3, "todo")],
    }


async def test_an_aborted_non_null_field_nulls_its_parent() -> None:
    controller = AbortController()

    async def non_nullable_todo(_info: Any) -> Any:
        return must_not_be_called()  # pragma: no cover

    result = run(
        "{ nonNullableTodo { id } }",
        abort_signal=controller.signal,
        root_value={"nonNullableTodo": non_nullable_todo},
    )
    controller.abort()
    with pytest.raises(AbortedGraphQLExecutionError, match=ABORTED) as caught:
        await result
    assert await aborted_result(caught.value) == {
        "data": None,
        "errors": [error(ABORTED, 1, 3, "nonNullableTodo")],
    }


async def test_an_abort_between_serial_mutation_fields_stops_the_next_field() -> None:
    controller = AbortController()

    async def foo(_info: Any) -> dict[str, Any]:
        await anyio.lowlevel.checkpoint()

        def value(_info: Any) -> str:
            controller.abort()  # while the first field completes
            return "baz"

        return {"value": value}

    result = run(
        "mutation { foo { value } bar }",
        abort_signal=controller.signal,
        root_value={"foo": foo, "bar": must_not_be_called},
    )
    with pytest.raises(AbortedGraphQLExecutionError, match=ABORTED) as caught:
        await result
    # the whole operation is rejected; there is no partial result to await
    with pytest.raises(AbortError, match=ABORTED):
        await caught.value.aborted_result  # type: ignore[misc]


async def test_an_aborted_signal_rejects_the_operation_before_any_resolver_runs() -> None:
    controller = AbortController()
    controller.abort()
    with pytest.raises(AbortError, match=ABORTED):
        run(
            "{ todo { id } }",
            abort_signal=controller.signal,
            root_value={"todo": must_not_be_called},
        )


# --- pending siblings of a failed non-null field ---------------------------------------

SIBLINGS_SDL = """
type Side { value: String }
type Parent { boom: String!  side: Side }
type Query { parent: Parent  other: String }
"""


async def test_pending_siblings_of_a_failed_non_null_field_are_cancelled() -> None:
    # deviation: graphql-core lets the sibling settle in the background and drops its
    # error; here it is cancelled, so it never completes (and never errs)
    log: list[str] = []

    async def boom(_info: Any) -> str:
        await anyio.lowlevel.checkpoint()
        raise RuntimeError("boom")

    async def side(_info: Any) -> dict[str, Any]:
        try:
            await anyio.sleep_forever()
        finally:
            log.append("side cancelled")
        return {"value": must_not_be_called}  # pragma: no cover

    result = run(
        "{ parent { boom side { value } } other }",
        build_schema(SIBLINGS_SDL),
        root_value={"parent": {"boom": boom, "side": side}, "other": "ok"},
    )
    completed = await result
    assert completed.formatted == {
        "data": {"parent": None, "other": "ok"},
        "errors": [error("boom", 1, 12, "parent", "boom")],
    }
    assert log == ["side cancelled"]


# --- executor hot path --------------------------------------------------------------------


async def test_without_a_signal_nothing_is_wrapped_and_no_task_is_added() -> None:
    probe_schema = build_schema("type Query { tasks: Int }")

    async def tasks(_info: Any) -> int:
        return len(anyio.get_running_tasks())

    baseline = len(anyio.get_running_tasks())
    result = await run("{ tasks }", probe_schema, root_value={"tasks": tasks})
    assert result.data == {"tasks": baseline}
    controller = AbortController()
    result = await run(
        "{ tasks }", probe_schema, root_value={"tasks": tasks}, abort_signal=controller.signal
    )
    assert result.data == {"tasks": baseline + 1}  # the task polling the signal

    executor = AnyioExecutor.build(probe_schema, parse("{ tasks }"))
    assert isinstance(executor, AnyioExecutor)

    async def value() -> int:
        return 1

    awaitable = value()
    assert executor.with_abort_signal(awaitable) is awaitable
    assert await awaitable == 1

    async def source() -> AsyncIterator[int]:
        yield 1  # pragma: no cover

    iterable = source()
    assert executor.cancellable_iterable(iterable) is iterable


# --- subscriptions ----------------------------------------------------------------------

SUBSCRIPTION = "subscription {\n  foo\n}"


def subscribe_to(root_value: Any, controller: AbortController) -> Any:
    return subscribe(
        SCHEMA,
        parse(SUBSCRIPTION),
        root_value=root_value,
        executor_class=AnyioExecutor,
        abort_signal=controller.signal,
    )


async def test_an_abort_before_the_subscribe_resolver_returns_is_a_field_error() -> None:
    controller = AbortController()

    async def never() -> AsyncIterator[Any]:
        await anyio.sleep_forever()  # pragma: no cover
        raise AssertionError  # pragma: no cover

    with no_unawaited_coroutines():
        pending = subscribe_to({"foo": lambda _info: never()}, controller)
        assert is_awaitable(pending)
        controller.abort()
        result = await pending
    assert isinstance(result, ExecutionResult)
    assert result.formatted == {"data": None, "errors": [error(ABORTED, 2, 3, "foo")]}


async def test_a_subscription_with_a_signal_streams_normally() -> None:
    controller = AbortController()

    async def foo() -> AsyncIterator[dict[str, str]]:
        yield {"foo": "foo"}

    async def resolve_foo(_info: Any) -> AsyncIterator[dict[str, str]]:
        return foo()

    subscription = await subscribe_to({"foo": resolve_foo}, controller)
    assert isinstance(subscription, AsyncIterator)
    assert await anext(subscription) == ({"foo": "foo"}, None)
    with pytest.raises(StopAsyncIteration):
        await anext(subscription)


@pytest.mark.parametrize("async_resolver", [False, True])
async def test_an_abort_during_a_subscription_ends_it_with_the_reason(
    async_resolver: bool,
) -> None:
    controller = AbortController()
    log: list[str] = []

    async def foo() -> AsyncIterator[dict[str, str]]:
        try:
            yield {"foo": "foo"}
            await anyio.sleep_forever()
        finally:
            log.append("source closed")

    async def resolve_foo(_info: Any) -> AsyncIterator[dict[str, str]]:
        return foo()

    subscription = subscribe_to({"foo": resolve_foo if async_resolver else foo()}, controller)
    if async_resolver:
        subscription = await subscription
    assert await anext(subscription) == ({"foo": "foo"}, None)
    controller.abort()
    with pytest.raises(AbortError, match=ABORTED):
        await anext(subscription)
    assert log == ["source closed"]


async def test_an_abort_waiting_for_the_next_event_ends_the_subscription() -> None:
    controller = AbortController()
    waiting = anyio.Event()

    async def foo() -> AsyncIterator[dict[str, str]]:
        yield {"foo": "foo"}
        waiting.set()
        await anyio.sleep_forever()

    subscription = subscribe_to({"foo": foo()}, controller)
    assert await anext(subscription) == ({"foo": "foo"}, None)
    settled = Settled()
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(settle_into, settled, anext(subscription))
        await waiting.wait()
        controller.abort()
    assert isinstance(settled.error, AbortError)


async def test_an_abort_while_an_event_executes_rejects_that_event() -> None:
    controller = AbortController()
    started = anyio.Event()

    async def value(_info: Any) -> str:
        started.set()
        await anyio.sleep_forever()
        return "never"  # pragma: no cover

    async def foo() -> AsyncIterator[dict[str, Any]]:
        yield {"foo": value}

    subscription = subscribe_to({"foo": foo()}, controller)
    settled = Settled()
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(settle_into, settled, anext(subscription))
        await started.wait()
        controller.abort()
    assert await aborted_result(settled.error) == {
        "data": {"foo": None},
        "errors": [error(ABORTED, 2, 3, "foo")],
    }
