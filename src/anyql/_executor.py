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
- ``track_async_work`` (``info.async_helpers.track``) records work that ``run_executor``
  awaits to completion before returning.
- ``with_abort_signal``, ``with_aborted_execution_error``, ``cancellable_iterable``,
  ``cancel_incremental_work``, ``track_incremental_future`` and
  ``run_async_work_finished_hook`` use asyncio only with an ``abort_signal``, ``hooks`` or
  incremental delivery; anyql passes none of these (cancellation is anyio's), and the
  overrides make that explicit. ``@defer``/``@stream`` are rejected, as graphql-core's
  ``ExecutorThrowingOnIncremental`` (the base class) does.
- ``build_response`` orders errors by their position in the response (see
  ``order_errors``), so Trio's randomised scheduling never changes the order.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Iterable, Sequence
from typing import Any, TypeVar

import anyio
from graphql import ExecutionResult, GraphQLError, located_error
from graphql.execution.collect_fields import FieldDetailsList, GroupedFieldSet
from graphql.execution.executor import collect_iterator_awaitables, to_nodes
from graphql.execution.executor_throwing_on_incremental import ExecutorThrowingOnIncremental
from graphql.pyutils import Path, Undefined
from graphql.type import GraphQLObjectType, GraphQLOutputType, GraphQLResolveInfo

__all__ = ["AnyioExecutor", "gather", "order_errors", "run_executor"]

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


class AnyioExecutor(ExecutorThrowingOnIncremental):
    """graphql-core's executor running concurrent work in anyio task groups.

    Build it with ``AnyioExecutor.build(...)`` (graphql-core's own constructor) and run it
    with ``run_executor``. Neither ``abort_signal`` nor ``hooks`` is supported.
    """

    def __init__(self, *args: Any, cleanup_grace: float = 5.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cleanup_grace = cleanup_grace
        self._orphans: list[Awaitable[Any]] = []
        self._tracked: list[Awaitable[Any]] = []

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

    # --- asyncio-only features, never used by anyql -----------------------------------

    async def with_abort_signal(self, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable``; anyio cancel scopes replace graphql-core's abort signal."""
        return await awaitable

    async def with_aborted_execution_error(self, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable`` (only reached with an abort signal, which anyql never sets)."""
        return await awaitable

    def cancellable_iterable(self, iterable: AsyncIterable[T]) -> AsyncIterable[T]:
        """Return ``iterable`` itself: cancel scopes interrupt a pending ``__anext__``."""
        return iterable

    async def cancel_incremental_work(self, reason: BaseException | None = None) -> None:
        """Nothing to cancel: incremental delivery is rejected."""

    def track_incremental_future(self, future: Any) -> None:
        """Never reached: incremental delivery is rejected."""
        raise RuntimeError("incremental delivery is not supported")

    def run_async_work_finished_hook(self) -> None:
        """No hooks: ``run_executor`` settles all work before it returns."""

    # --- results ---------------------------------------------------------------------

    def build_response(self, data: dict[str, Any] | None) -> ExecutionResult:
        """The result with its errors in response order (``order_errors``)."""
        errors = order_errors(self.collected_errors.errors, data)
        return ExecutionResult(data, errors or None)


async def run_executor(executor: AnyioExecutor, *, serially: bool | None = None) -> Any:
    """Run ``executor.execute_operation`` and settle all its work before returning.

    Args:
        executor: a freshly built executor (or a per-event copy).
        serially: as graphql-core's ``execute_operation``; None runs mutations serially.

    Returns:
        graphql-core's ``ExecutionResult``.
    """
    try:
        result = executor.execute_operation(serially)
        if executor.is_awaitable(result):
            result = await result
        await _settle(executor._tracked, cancel=False)
        return result
    finally:
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
