"""``AnyioExecutor``: graphql-core's executor with its asyncio calls replaced by anyio.

Owns ``AnyioExecutor`` and ``run_executor``. Imports ``graphql`` and ``anyio`` only; the
execution layer (``execution.py``) is its one user.

Theory of operation. graphql-core 3.3's ``Executor`` builds results synchronously where it
can and returns coroutine objects where a resolver was asynchronous; it awaits sibling
coroutines with ``gather_with_cancel`` (``asyncio.gather`` plus ``ensure_future``), which
breaks under Trio. This subclass keeps every rule of value completion and error handling
and replaces only the places that touch asyncio:

- ``execute_fields``, ``complete_iterable_value`` and ``complete_async_iterator_value``
  (sibling fields and list items) and ``gather_async_work`` (``info.async_helpers.gather``,
  used for async ``is_type_of``) await through ``gather``: one anyio task group, the first
  error cancels the rest and, once everything settled, the error of the *lowest index*
  among those that failed is raised, so the choice does not depend on scheduling order.
- ``settle_in_background`` (graphql-core's way to dispose of coroutines whose result is no
  longer needed after a synchronous error) only records them; ``run_executor`` runs them
  at the end of the execution in an already-cancelled, shielded scope, so they stop at
  their first checkpoint and their ``finally`` blocks run. Nothing outlives the execution.
- ``track_async_work`` (``info.async_helpers.track``) records work that is started once
  the result is complete and awaited to completion before it is delivered.
- ``run_executor`` (anyql's entry point) and ``execute_operation`` (what graphql-core's
  ``execute`` and ``subscribe`` call when this class is their ``executor_class``) both
  settle that work before delivering: a result or error graphql-core would deliver at once
  while work is pending is delivered by a coroutine that settles it first.
- The abort signal (``abort_signal``: graphql-core's ``AbortSignal``, or anything with
  ``aborted`` and ``reason``) works on both backends. graphql-core's signal waits on an
  ``asyncio.Event``, so the executor polls ``signal.aborted`` instead, every
  ``abort_poll_interval`` seconds, from one task per asynchronous execution: the one
  ``with_aborted_execution_error`` (which wraps the execution) runs beside it. Every
  awaitable graphql-core hands to ``with_abort_signal`` (a resolver's result, a list item,
  an async ``resolve_type``/``is_type_of``, the ``__anext__`` of an async iterator wrapped
  by ``cancellable_iterable``) is awaited in a cancel scope registered with that task,
  which cancels them all when it sees the abort; the aborted field then fails with the
  abort reason, as in graphql-core. Awaits outside an execution (the subscribe resolver,
  a subscription's source stream) poll in a task of their own. graphql-core's synchronous
  checks are kept: before execution, between serial fields, on entering and leaving each
  wrapped await, and when a synchronous execution finishes.
- ``with_aborted_execution_error`` lets the aborted execution settle (the in-flight awaits
  are cancelled at once; iterators are closed) and then raises graphql-core's
  ``AbortedGraphQLExecutionError``; its ``aborted_result`` is an awaitable that is
  already settled.
- The ``async_work_finished`` hook runs once all work of the execution (tracked and
  orphaned) has settled: at once when there is none, else when the delivering coroutine
  has settled it. Its errors are ignored.
- Without an ``abort_signal`` and ``hooks`` none of this costs anything: no task, no
  polling, ``with_abort_signal`` returns its argument and ``cancellable_iterable`` its
  iterable. anyql's server passes neither (its cancellation is anyio's cancel scopes).
- ``@defer``/``@stream`` are rejected, as graphql-core's ``ExecutorThrowingOnIncremental``
  (the base class) does; so ``cancel_incremental_work`` only calls ``abort``.
- ``build_response`` orders errors by their position in the response (see
  ``order_errors``), so Trio's randomised scheduling never changes the order.
"""

from __future__ import annotations

import logging
import math
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Generator,
    Iterable,
    Sequence,
)
from contextlib import suppress
from typing import Any, Generic, TypeVar, cast

import anyio
from graphql import (
    ExecutionResult,
    ExperimentalIncrementalExecutionResults,
    GraphQLError,
    located_error,
)
from graphql.execution.collect_fields import FieldDetailsList, GroupedFieldSet
from graphql.execution.executor import (
    AsyncWorkFinishedInfo,
    collect_iterator_awaitables,
    to_nodes,
)
from graphql.execution.executor_throwing_on_incremental import ExecutorThrowingOnIncremental
from graphql.pyutils import AbortSignal, AwaitableOrValue, Path, Undefined
from graphql.type import (
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    GraphQLResolveInfoHelpers,
)

__all__ = ["AnyioExecutor", "PlanStats", "gather", "order_errors", "run_executor", "run_work"]

logger = logging.getLogger("anyql.execution")

T = TypeVar("T")


async def gather(awaitables: Sequence[Awaitable[Any]]) -> list[Any]:
    """Await ``awaitables`` concurrently in one task group; the first error cancels the rest.

    Args:
        awaitables: coroutines or other awaitables, each awaited exactly once.

    Returns:
        Their results, in order.

    Raises:
        Exception: among the awaitables that raised before being cancelled, the exception
            of the one with the lowest index.
    """
    results: list[Any] = [None] * len(awaitables)
    failures: dict[int, Exception] = {}

    async def settle(index: int, awaitable: Awaitable[Any], scope: anyio.CancelScope) -> None:
        try:
            results[index] = await awaitable
        except Exception as error:
            failures[index] = error
            scope.cancel()

    async with anyio.create_task_group() as task_group:
        for index, awaitable in enumerate(awaitables):
            task_group.start_soon(settle, index, awaitable, task_group.cancel_scope)
    if failures:
        raise failures[min(failures)]
    return results


class PlanStats:
    """How many operations and fields took the plan and how many the generic path.

    One per ``Engine`` (``Engine.plan_stats``); an executor built with it
    (``plan_stats=``) adds the fields its generic path completes, and ``_plan.plan_for``
    the plans it could not keep.
    """

    __slots__ = (
        "fields_planned",
        "fields_unplanned",
        "operations_planned",
        "operations_unplanned",
        "plans_uncached",
    )

    def __init__(self) -> None:
        self.operations_planned = 0
        self.operations_unplanned = 0
        self.fields_planned = 0
        self.fields_unplanned = 0
        #: executions whose plan was built for them alone: their document already kept
        #: ``_plan.MAX_PLANS_PER_DOCUMENT`` plans
        self.plans_uncached = 0

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict."""
        return {
            "operations_planned": self.operations_planned,
            "operations_unplanned": self.operations_unplanned,
            "fields_planned": self.fields_planned,
            "fields_unplanned": self.fields_unplanned,
            "plans_uncached": self.plans_uncached,
        }


class AnyioExecutor(ExecutorThrowingOnIncremental):
    """graphql-core's executor running concurrent work in anyio task groups.

    Build it with ``AnyioExecutor.build(...)`` (graphql-core's own constructor) and run it
    with ``run_executor``, or pass it as ``executor_class`` to graphql-core's ``execute``
    or ``subscribe``. ``abort_signal`` and ``hooks`` work on both backends.

    Args (besides graphql-core's):
        cleanup_grace: how long closing an async iterator may take, in seconds.
        abort_poll_interval: how often ``abort_signal.aborted`` is polled while the
            execution waits, in seconds (only with an ``abort_signal``).
        plan_stats: the counters to add the fields completed by the generic path to
            (the engine's); None counts nothing.
    """

    def __init__(
        self,
        *args: Any,
        cleanup_grace: float = 5.0,
        abort_poll_interval: float = 0.01,
        plan_stats: PlanStats | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.cleanup_grace = cleanup_grace
        self.abort_poll_interval = abort_poll_interval
        self.plan_stats = plan_stats
        self._orphans: list[Awaitable[Any]] = []
        self._tracked: list[Awaitable[Any]] = []
        #: while an asynchronous execution with an abort signal runs: its polling task.
        self._abort_watch: _AbortWatch | None = None
        #: the async_work_finished hook waits for pending work to settle.
        self._hook_due = False

    def build_per_event_executor(self, payload: Any) -> AnyioExecutor:
        """A copy for one subscription event, with its own errors, pending work and memo.

        graphql-core's copy shares ``_relevant_sub_fields``, the memo of collected
        sub-fields, with the subscription's executor. That memo is keyed by ``id()`` of the
        field lists, which are built anew for every event, so a shared memo never hits
        across events and keeps every event's entries for the subscription's lifetime (about
        1-2 KiB per event). Each event gets its own memo instead: it still serves the items
        of one list within the event and is dropped with the event.
        """
        executor = super().build_per_event_executor(payload)
        assert isinstance(executor, AnyioExecutor)
        executor._relevant_sub_fields = {}
        executor._orphans = []
        executor._tracked = []
        # graphql-core's copy keeps the helpers bound to the subscription's executor, whose
        # tracked work nobody awaits once it is subscribed
        executor.async_helpers = GraphQLResolveInfoHelpers(
            gather=executor.gather_async_work, track=executor.track_async_work
        )
        executor._abort_watch = None
        executor._hook_due = False
        return executor

    # --- concurrency -----------------------------------------------------------------

    def execute_fields(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        grouped_field_set: GroupedFieldSet,
        position_context: None,
    ) -> Any:
        """Execute sibling fields; asynchronous ones run concurrently (``gather``)."""
        stats = self.plan_stats
        if stats is not None:
            stats.fields_unplanned += len(grouped_field_set)
        results: dict[str, Any] = {}
        pending: list[str] = []
        try:
            for response_name, field_details_list in grouped_field_set.items():
                field_path = Path(path, response_name, parent_type.name)
                result = self.execute_field(
                    parent_type, source_value, field_details_list, field_path, position_context
                )
                if result is Undefined:
                    continue
                results[response_name] = result
                if self.is_awaitable(result):
                    pending.append(response_name)
        except Exception:
            self.settle_in_background([results[name] for name in pending])
            raise
        if not pending:
            return results
        return self._fill_in(results, pending)

    def complete_iterable_value(
        self,
        item_type: GraphQLOutputType,
        field_details_list: FieldDetailsList,
        info: GraphQLResolveInfo[Any],
        path: Path,
        items: Iterable[Any],
        position_context: None,
    ) -> Any:
        """Complete list items; asynchronous ones run concurrently (``gather``)."""
        completed: list[Any] = []
        pending: list[int] = []
        iterator = iter(items)
        try:
            for index, item in enumerate(iterator):
                if self._complete_item(
                    item, completed, item_type, field_details_list, info, path.add_key(index)
                ):
                    pending.append(index)
        except Exception:
            orphans = [completed[index] for index in pending]
            orphans.extend(collect_iterator_awaitables(iterator, self.is_awaitable))
            self.settle_in_background(orphans)
            raise
        if not pending:
            return completed
        return self._fill_in(completed, pending)

    async def complete_async_iterator_value(
        self,
        item_type: GraphQLOutputType,
        field_details_list: FieldDetailsList,
        info: GraphQLResolveInfo[Any],
        path: Path,
        async_iterator: AsyncIterator[Any],
        position_context: None,
    ) -> list[Any]:
        """Complete a list resolved as an async iterator; it is always closed on failure."""
        completed: list[Any] = []
        pending: list[int] = []
        exhausted = False
        try:
            while True:
                try:
                    item = await anext(async_iterator)
                except StopAsyncIteration:
                    exhausted = True
                    break
                except Exception as error:
                    nodes = to_nodes(field_details_list)
                    raise located_error(error, nodes, path.as_list()) from error
                item_path = path.add_key(len(completed))
                if self._complete_item(
                    item, completed, item_type, field_details_list, info, item_path
                ):
                    pending.append(len(completed) - 1)
        except Exception:
            self.settle_in_background([completed[index] for index in pending])
            raise
        finally:
            if not exhausted:
                await aclose_within(
                    async_iterator, self.cleanup_grace, "a list field's async iterator"
                )
        if pending:
            await self._fill_in(completed, pending)
        return completed

    def _complete_item(
        self,
        item: Any,
        completed: list[Any],
        item_type: GraphQLOutputType,
        field_details_list: FieldDetailsList,
        info: GraphQLResolveInfo[Any],
        item_path: Path,
    ) -> bool:
        """Append the completed ``item``; True when what was appended is awaitable."""
        if self.is_awaitable(item):
            completed.append(
                self.complete_awaitable_list_item_value(
                    item, item_type, field_details_list, info, item_path, None
                )
            )
            return True
        return self.complete_list_item_value(
            item, completed, item_type, field_details_list, info, item_path, None
        )

    async def _fill_in(self, container: Any, keys: Sequence[Any]) -> Any:
        """Replace ``container[key]`` awaitables by their values, concurrently."""
        if len(keys) == 1:
            container[keys[0]] = await container[keys[0]]
            return container
        values = await gather([container[key] for key in keys])
        for key, value in zip(keys, values, strict=True):
            container[key] = value
        return container

    def gather_async_work(self, values: Sequence[Awaitable[Any]]) -> Awaitable[list[Any]]:
        """``info.async_helpers.gather``: ``gather`` in an anyio task group."""
        return gather(values)

    def settle_in_background(self, awaitables: list[Awaitable[Any]]) -> None:
        """Record awaitables nobody needs any more; ``run_executor`` cancels them."""
        self._orphans.extend(awaitables)

    def track_async_work(self, values: Sequence[Any]) -> None:
        """``info.async_helpers.track``: ``run_executor`` awaits these before returning."""
        self._tracked.extend(value for value in values if self.is_awaitable(value))

    # --- entry point for graphql-core's execute and subscribe ------------------------

    def begin_operation(
        self, serially: bool | None
    ) -> AwaitableOrValue[ExecutionResult | ExperimentalIncrementalExecutionResults]:
        """Start the execution: graphql-core's generic one (``_plan.PlannedExecutor`` plans)."""
        return super().execute_operation(serially)

    def execute_operation(
        self, serially: bool | None = None
    ) -> AwaitableOrValue[ExecutionResult | ExperimentalIncrementalExecutionResults]:
        """graphql-core's ``execute_operation``, with pending work settled before delivery.

        graphql-core's ``execute`` and ``subscribe`` (for each event) call this when
        ``AnyioExecutor`` is their ``executor_class``. Where graphql-core would deliver a
        result or raise at once while tracked or orphaned work is still pending, this
        returns a coroutine that settles that work (as ``run_executor`` does) and then
        delivers the result or raises. Otherwise the result is graphql-core's, unchanged.
        """
        try:
            result = self.begin_operation(serially)
        except Exception as error:
            if not (self._tracked or self._orphans):
                raise
            return _run(self, serially, _Outcome(error=error))
        if self.is_awaitable(result) or self._tracked or self._orphans:
            return _run(self, serially, _Outcome(result))
        return result

    # --- abort signal ------------------------------------------------------------------

    def with_abort_signal(self, awaitable: Awaitable[T]) -> Awaitable[T]:  # type: ignore[override]
        """``awaitable`` itself without an abort signal, else a wrapper the abort interrupts.

        With a signal already aborted, ``awaitable`` is discarded (a coroutine is closed
        before its body runs) and the abort reason raised. Otherwise ``awaitable`` is
        awaited in a cancel scope that the abort cancels; an abort seen before the value
        is returned raises the abort reason (``abort_error``) instead of the value.
        """
        if self.abort_signal is None:
            return awaitable
        return self._abortable(awaitable)

    async def _abortable(self, awaitable: Awaitable[T]) -> T:
        signal = self.abort_signal
        assert signal is not None
        if signal.aborted:
            _discard(awaitable)
            raise self.abort_error()
        watch = self._abort_watch
        if watch is not None:
            outcome = await watch.guard(awaitable)
        else:  # outside an execution: the subscribe resolver, a subscription's source
            outcome = await _AbortWatch(signal).run(awaitable, self.abort_poll_interval)
        if outcome is None or signal.aborted:
            raise self.abort_error()
        return outcome.unwrap()

    async def with_aborted_execution_error(self, awaitable: Awaitable[T]) -> T:
        """Await the whole execution with the abort signal's polling task beside it.

        On abort the in-flight awaits fail with the abort reason at once, so the
        execution settles into a partial result (closing iterators on the way); then
        ``AbortedGraphQLExecutionError`` is raised, its ``aborted_result`` an awaitable
        that is already settled (graphql-core raises first and lets the partial result
        settle in the background).
        """
        signal = self.abort_signal
        assert signal is not None
        watch = self._abort_watch = _AbortWatch(signal)
        try:
            outcome = await watch.run(awaitable, self.abort_poll_interval, guard=False)
        finally:
            self._abort_watch = None
        assert outcome is not None
        if signal.aborted:
            raise self.create_aborted_execution_error(outcome)
        return outcome.unwrap()

    def cancellable_iterable(self, iterable: AsyncIterable[T]) -> AsyncIterable[T]:
        """``iterable`` itself without an abort signal, else one whose ``__anext__`` is
        wrapped by ``with_abort_signal`` (``aclose`` goes to the iterator, if it has one).
        """
        if self.abort_signal is None:
            return iterable
        return _AbortableIterator(self, iterable.__aiter__())

    async def cancel_incremental_work(self, reason: BaseException | None = None) -> None:
        """Call ``abort``; there is no incremental work (``@defer``/``@stream`` are rejected)."""
        aborted = self.abort(reason)
        if self.is_awaitable(aborted):
            await aborted

    def track_incremental_future(self, future: Any) -> None:
        """Never reached: incremental delivery is rejected."""
        raise RuntimeError("incremental delivery is not supported")

    # --- hooks and results ---------------------------------------------------------------

    def run_async_work_finished_hook(self) -> None:
        """Run ``hooks.async_work_finished`` now, or once the pending work has settled.

        Pending work is what ``track_async_work`` and ``settle_in_background`` recorded;
        the coroutine delivering the result (``run_executor``, ``execute_operation``)
        settles it and then runs the hook. Errors raised by the hook are ignored.
        """
        hooks = self.hooks
        if hooks is None or hooks.async_work_finished is None:
            return
        if self._tracked or self._orphans:
            self._hook_due = True
        else:
            self._run_hook()

    def _run_hook(self) -> None:
        self._hook_due = False
        hook = self.hooks.async_work_finished if self.hooks is not None else None
        if hook is not None:
            with suppress(Exception):
                hook(AsyncWorkFinishedInfo(self))

    def build_response(self, data: dict[str, Any] | None) -> ExecutionResult:
        """The result with its errors in response order (``order_errors``)."""
        if self.hooks is not None:
            self.run_async_work_finished_hook()
        errors = order_errors(self.collected_errors.errors, data)
        return ExecutionResult(data, errors or None)


def run_executor(
    executor: AnyioExecutor, *, serially: bool | None = None
) -> Coroutine[Any, Any, Any]:
    """Run graphql-core's ``execute_operation`` and settle all its work before returning.

    A plain function returning the coroutine to await, so that awaiting it adds no
    coroutine frame to the execution.

    Args:
        executor: a freshly built executor (or a per-event copy).
        serially: as graphql-core's ``execute_operation``; None runs mutations serially.

    Returns:
        A coroutine resolving to graphql-core's ``ExecutionResult``. Work recorded by
        ``track_async_work`` is awaited to completion first (also when the execution
        raised), work recorded by ``settle_in_background`` (and tracked work, when the
        execution is cancelled) runs in an already-cancelled, shielded scope; then the
        ``async_work_finished`` hook runs if it waited for that work.
    """
    return _run(executor, serially, None)


async def _run(
    executor: AnyioExecutor, serially: bool | None, started: _Outcome[Any] | None
) -> Any:
    """``run_executor``'s coroutine; ``started`` is the outcome of an execution begun."""
    try:
        try:
            result = executor.begin_operation(serially) if started is None else started.unwrap()
            if executor.is_awaitable(result):
                result = await result
        except Exception:
            if executor._tracked:
                await _settle(executor._tracked, cancel=False)
            raise
        if executor._tracked:
            await _settle(executor._tracked, cancel=False)
        return result
    finally:
        if executor._orphans or executor._tracked:
            await _settle(executor._orphans, cancel=True)
            await _settle(executor._tracked, cancel=True)
        if executor._hook_due:
            executor._run_hook()


async def run_work(
    start: Callable[[], Any], executor_of: Callable[[], AnyioExecutor | None]
) -> Any:
    """Run ``start()`` (a planned execution) and settle its executor's work, as above.

    Args:
        start: begins the execution; returns the result or an awaitable of it.
        executor_of: the executor whose tracked and orphaned work to settle, asked once
            the execution ended (a planned event makes one only if it needs one).

    Returns:
        What ``start()`` returned, awaited.
    """
    try:
        result = start()
        if not isinstance(result, ExecutionResult):
            result = await result
        executor = executor_of()
        if executor is not None:
            await _settle(executor._tracked, cancel=False)
        return result
    finally:
        executor = executor_of()
        if executor is not None:
            await _settle(executor._orphans, cancel=True)
            await _settle(executor._tracked, cancel=True)


async def _settle(awaitables: list[Awaitable[Any]], *, cancel: bool) -> None:
    """Await every one of ``awaitables`` (emptying the list); errors are only logged.

    With ``cancel`` they run in a shielded, already-cancelled scope: each stops at its first
    checkpoint, with its ``finally`` run, and no coroutine is left un-awaited.
    """
    while awaitables:
        batch = list(awaitables)
        awaitables.clear()
        with anyio.CancelScope(shield=cancel):
            async with anyio.create_task_group() as task_group:
                if cancel:
                    task_group.cancel_scope.cancel()
                for awaitable in batch:
                    task_group.start_soon(_await_logged, awaitable, not cancel)


async def _await_logged(awaitable: Awaitable[Any], log: bool) -> None:
    try:
        await awaitable
    except Exception:
        if log:
            logger.exception("tracked asynchronous work failed")


class _Outcome(Generic[T]):
    """How an awaitable ended: its value or its exception. Awaiting it returns or raises it.

    It is the settled ``aborted_result`` of an aborted execution: unlike a coroutine, one
    nobody awaits leaves no "never awaited" warning.
    """

    __slots__ = ("error", "value")

    def __init__(self, value: T | None = None, error: Exception | None = None) -> None:
        self.value = value
        self.error = error

    def unwrap(self) -> T:
        """The value, or raise the exception."""
        if self.error is not None:
            raise self.error
        return cast(T, self.value)

    def __await__(self) -> Generator[Any, None, T]:
        return self.unwrap()
        yield  # a generator, so that awaiting works  # pragma: no cover


class _AbortWatch:
    """Polls an abort signal and, once it is aborted, cancels every scope guarding an await.

    graphql-core's ``AbortSignal`` can only be awaited under asyncio; polling its
    ``aborted`` flag works on every backend, and so does a duck-typed signal.
    """

    __slots__ = ("scopes", "signal")

    def __init__(self, signal: AbortSignal) -> None:
        self.signal = signal
        self.scopes: set[anyio.CancelScope] = set()

    async def run(
        self, awaitable: Awaitable[T], interval: float, *, guard: bool = True
    ) -> _Outcome[T] | None:
        """Await ``awaitable`` (guarded, or plainly) with the polling task beside it."""
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(self.poll, interval)
            if guard:
                outcome = await self.guard(awaitable)
            else:
                try:
                    outcome = _Outcome(await awaitable)
                except Exception as error:
                    outcome = _Outcome(error=error)
            task_group.cancel_scope.cancel()
        return outcome

    async def poll(self, interval: float) -> None:
        """Wait until the signal is aborted, then cancel the guarding scopes."""
        signal = self.signal
        # polling on purpose: the signal's only backend-neutral interface is this flag
        while not signal.aborted:  # noqa: ASYNC110
            await anyio.sleep(interval)
        for scope in list(self.scopes):
            scope.cancel()

    async def guard(self, awaitable: Awaitable[T]) -> _Outcome[T] | None:
        """Await ``awaitable`` in a scope the abort cancels; None if it was cancelled."""
        scopes = self.scopes
        with anyio.CancelScope() as scope:
            scopes.add(scope)
            try:
                return _Outcome(await awaitable)
            except Exception as error:
                return _Outcome(error=error)
            finally:
                scopes.discard(scope)
        return None


class _AbortableIterator(AsyncIterator[T]):
    """``cancellable_iterable``'s wrapper: ``__anext__`` goes through ``with_abort_signal``."""

    __slots__ = ("_executor", "_iterator")

    def __init__(self, executor: AnyioExecutor, iterator: AsyncIterator[T]) -> None:
        self._executor = executor
        self._iterator = iterator

    def __aiter__(self) -> _AbortableIterator[T]:
        return self

    def __anext__(self) -> Awaitable[T]:
        return self._executor.with_abort_signal(self._iterator.__anext__())

    async def aclose(self) -> None:
        """Close the wrapped iterator, if it can be closed."""
        aclose = getattr(self._iterator, "aclose", None)
        if aclose is not None:
            await aclose()


def _discard(awaitable: Awaitable[Any]) -> None:
    """Drop an awaitable nobody will await: a coroutine is closed before its body runs."""
    if isinstance(awaitable, Coroutine):
        awaitable.close()


async def aclose_within(iterator: AsyncIterator[Any], grace: float, what: str) -> None:
    """``aclose()`` ``iterator`` in this task, shielded and bounded by ``grace`` seconds.

    An error from the iterator's cleanup is logged, never raised; a cleanup still running
    at the bound is cut there and logged as abandoned.
    """
    aclose = getattr(iterator, "aclose", None)
    if aclose is None:
        return
    with anyio.move_on_after(grace, shield=True) as scope:
        try:
            await aclose()
        except Exception:
            logger.exception("closing %s failed", what)
    if scope.cancel_called:
        logger.warning("%s did not close within %s s; abandoned it", what, grace)


def order_errors(errors: Sequence[GraphQLError], data: dict[str, Any] | None) -> list[GraphQLError]:
    """Sort ``errors`` by where they land in the response, independently of scheduling.

    Errors without a path come first; then errors by path, comparing response keys by
    their order in ``data`` (document order) and list indices numerically. Below a value
    that was nulled, the rest of a path is compared by the error's location in the
    document. The sort is stable.

    Args:
        errors: the errors collected during one execution.
        data: the completed data they belong to.

    Returns:
        A new, sorted list.
    """
    if len(errors) < 2:
        return list(errors)
    return sorted(errors, key=lambda error: _error_position(error, data))


def _error_position(error: GraphQLError, data: Any) -> list[tuple[int, Any]]:
    position: list[tuple[int, Any]] = []
    value = data
    for key in error.path or ():
        if isinstance(key, int):
            position.append((0, key))
            value = value[key] if isinstance(value, list) and key < len(value) else None
        elif isinstance(value, dict) and key in value:
            position.append((0, list(value).index(key)))
            value = value[key]
        else:
            location = error.locations[0] if error.locations else None
            where = (location.line, location.column) if location else (math.inf, math.inf)
            position.append((1, where))
            break
    return position
