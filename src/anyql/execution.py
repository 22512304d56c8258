"""The execution layer: the only module that runs graphql-core.

Owns ``Engine`` (limits before parse, the parse/validate cache, operation selection,
execute, subscribe, result formatting and error masking), ``PreparedOperation``,
``SubscriptionContext``, the ``RequestError``/``SourceError`` pair and ``encode_json``. Imports
``graphql``, ``anyio``, ``orjson``, ``limits``, ``schema`` and ``types``; never a
transport, the session driver or the app.

``prepare`` turns a request into a ``PreparedOperation`` or raises ``RequestError``: the
flat pre-scan and the document limits (``_document_limits``) run before graphql-core's
recursive parser and quadratic validation rules, and the outcome is cached per source
text. ``execute`` and ``subscribe`` run the ``AnyioExecutor`` (``_executor``), so both
anyio backends work.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Callable, Hashable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, cast

import anyio
import orjson
from graphql import (
    ASTValidationRule,
    DocumentNode,
    ExecutionResult,
    GraphQLError,
    OperationDefinitionNode,
    OperationType,
)
from graphql.execution import create_source_event_stream
from graphql.language import FieldNode, FragmentDefinitionNode, SelectionSetNode

from ._document_limits import DocumentCache
from ._executor import AnyioExecutor, aclose_within, run_executor, run_work
from ._plan import OperationPlan, PlannedRun, PlanStats, plan_for
from ._resume import read_resume_point, resuming
from .dataloader import LoaderScope
from .errors import FormattedError, RequestError, ResumeError, SourceError
from .limits import Limits
from .schema import Schema, as_schema
from .types import Event, OperationRequest

__all__ = [
    "Engine",
    "FormattedError",
    "PreparedOperation",
    "RequestError",
    "ResultStream",
    "SourceError",
    "SubscriptionContext",
    "encode_json",
    "encode_json_bytes",
]

logger = logging.getLogger("anyql.execution")

OperationKind = Literal["query", "mutation", "subscription"]

TIMED_OUT: FormattedError = {"message": "Operation timed out"}
MASKED_MESSAGE = "Internal server error"


def encode_json(value: Any) -> str:
    """Encode ``value`` as compact JSON text (orjson).

    Raises:
        TypeError: ``value`` holds something JSON cannot represent.
    """
    return orjson.dumps(value).decode("utf-8")


def encode_json_bytes(value: Any) -> bytes:
    """Encode ``value`` as compact JSON, UTF-8 (orjson): what the fan-out path sends.

    Raises:
        TypeError: ``value`` holds something JSON cannot represent.
    """
    return orjson.dumps(value)


@dataclass(frozen=True, slots=True)
class PreparedOperation:
    """A parsed, validated operation, ready to execute with any context."""

    request: OperationRequest
    document: DocumentNode
    operation: OperationDefinitionNode
    operation_type: OperationKind
    #: subscriptions: the coordinate of the single root field, e.g. "Subscription.count".
    root_field: str | None
    #: the document's plan store (``_plan.plan_for``), shared by every request for it.
    plans: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)
    #: the client's resume point (``extensions.lastEventId``, checked), or None.
    resume_point: str | None = None


class Engine:
    """Prepares and runs GraphQL operations against one schema.

    Args:
        schema: the schema (``schema.graphql_schema`` is executed); anything ``as_schema``
            accepts.
        limits: the document limits, ``operation_timeout`` and ``cleanup_grace`` apply.
        introspection: False rejects ``__schema``/``__type`` and hides "Did you mean"
            suggestions.
        mask_errors: replace the message of unexpected resolver exceptions with
            "Internal server error" (a ``GraphQLError`` raised on purpose is kept).
        cache_size: documents kept in the parse/validate cache.
        validation_rules: graphql-core rule classes validated after the built-in rules
            (a cost or list-size rule, say); a document they reject is not executed, and
            the outcome is cached with the document.

    Raises:
        TypeError: ``validation_rules`` holds something that is not an
            ``ASTValidationRule`` subclass.
    """

    def __init__(
        self,
        schema: Schema | Any,
        *,
        limits: Limits = Limits(),  # noqa: B008 - frozen, so sharing the default is safe
        introspection: bool = True,
        mask_errors: bool = False,
        cache_size: int = 1024,
        validation_rules: Sequence[type[ASTValidationRule]] = (),
    ) -> None:
        for rule in validation_rules:
            if not (isinstance(rule, type) and issubclass(rule, ASTValidationRule)):
                raise TypeError(f"not a graphql-core validation rule class: {rule!r}")
        self.schema: Schema = as_schema(schema)
        self.limits = limits
        self.introspection = introspection
        self.mask_errors = mask_errors
        self._plan_stats = PlanStats()
        self._documents = DocumentCache(
            self.schema.graphql_schema,
            limits,
            introspection=introspection,
            size=cache_size,
            extra_rules=tuple(validation_rules),
        )

    # --- prepare ---------------------------------------------------------------------

    def prepare(self, request: OperationRequest) -> PreparedOperation:
        """Check, parse, validate (all cached per source) and select the operation.

        Args:
            request: the operation as the client sent it.

        Returns:
            The prepared operation.

        Raises:
            RequestError: a limit is exceeded, the document does not parse or validate,
                the operation to run cannot be selected, or ``extensions.lastEventId`` is
                not an event id (``anyql._resume.read_resume_point``).
        """
        if not isinstance(request.query, str):
            raise RequestError(({"message": "The query must be a string."},))
        try:
            resume = read_resume_point(request.extensions)
        except ValueError as error:
            raise RequestError(({"message": str(error)},)) from None
        checked = self._documents.get(request.query)
        if checked.document is None:
            raise RequestError(tuple(_formatted(error) for error in checked.errors))
        document = checked.document
        operation = _select_operation(document, request.operation_name)
        kind: OperationKind = operation.operation.value
        root_field = None
        if operation.operation is OperationType.SUBSCRIPTION:
            root_field = self._root_field(document, operation)
        return PreparedOperation(
            request, document, operation, kind, root_field, checked.plans, resume
        )

    def _root_field(self, document: DocumentNode, operation: OperationDefinitionNode) -> str:
        subscription_type = self.schema.graphql_schema.subscription_type
        type_name = subscription_type.name if subscription_type else "Subscription"
        fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        pending: list[SelectionSetNode] = [operation.selection_set]
        while pending:  # validation guarantees a field is found (and no cycles)
            for selection in pending.pop().selections:
                if isinstance(selection, FieldNode):
                    return f"{type_name}.{selection.name.value}"
                spread = getattr(selection, "selection_set", None)
                if spread is None:
                    spread = fragments[selection.name.value].selection_set  # type: ignore[attr-defined]
                pending.append(spread)
        raise AssertionError("a validated subscription has one root field")

    def plan_stats(self) -> dict[str, int]:
        """How many operations and fields took the planned path and how many the generic.

        ``operations_planned``/``operations_unplanned`` count executions (queries,
        mutations and subscription events); ``fields_planned`` counts fields completed by
        a plan, ``fields_unplanned`` those completed by graphql-core's generic path, and
        ``plans_uncached`` the executions whose plan was built for them alone (their
        document already keeps ``_plan.MAX_PLANS_PER_DOCUMENT`` plans); all for this engine.
        """
        return self._plan_stats.as_dict()

    # --- execute ---------------------------------------------------------------------

    def _build(self, prepared: PreparedOperation, context: Any, root_value: Any) -> AnyioExecutor:
        request = prepared.request
        built = AnyioExecutor.build(
            self.schema.graphql_schema,
            prepared.document,
            root_value,
            context,
            dict(request.variables) if request.variables is not None else None,
            request.operation_name,
            hide_suggestions=not self.introspection,
            cleanup_grace=self.limits.cleanup_grace,
            plan_stats=self._plan_stats,
        )
        if isinstance(built, list):
            raise RequestError(tuple(_formatted(error) for error in built))
        assert isinstance(built, AnyioExecutor)
        return built

    async def execute(
        self,
        prepared: PreparedOperation,
        *,
        context: Any,
        root_value: Any = None,
        peer: str = "unknown peer",
    ) -> dict[str, Any]:
        """Run a query or mutation within ``limits.operation_timeout``.

        Args:
            prepared: from ``prepare``; not a subscription.
            context: what resolvers see as ``info.context``.
            root_value: the root value.
            peer: who asked, for the warning logged on timeout.

        Returns:
            The formatted result: ``data``, plus ``errors``/``extensions`` when present.
            On timeout, ``{"data": None, "errors": [{"message": "Operation timed out"}]}``
            after everything running was cancelled.

        Raises:
            RequestError: the variables cannot be coerced, or ``prepared`` is a
                subscription.
        """
        if prepared.operation_type == "subscription":
            raise RequestError(
                ({"message": "Subscription operations must be run as subscriptions."},)
            )
        executor = self._build(prepared, context, root_value)
        plan = plan_for(prepared.plans, executor)
        scope = LoaderScope()  # the operation's loaders (anyql.loader)
        token = scope.activate()
        try:
            if plan is None:
                self._plan_stats.operations_unplanned += 1
                begin: Callable[[], Any] = functools.partial(run_executor, executor)
                executor_of: Callable[[], AnyioExecutor | None] = _no_executor
            else:
                run = PlannedRun(plan, executor, self._plan_stats)
                started = _start(run)
                if type(started) is ExecutionResult and not (
                    executor._tracked or executor._orphans
                ):
                    # completed without awaiting anything: no timeout scope to enter
                    return self.format_result(started)
                begin = functools.partial(_unwrap, started)
                executor_of = run.executor_to_settle
            result: ExecutionResult | None = None
            async with scope.running():
                with anyio.move_on_after(self.limits.operation_timeout):
                    result = await run_work(begin, executor_of)
        finally:
            scope.deactivate(token)
        if result is None:
            operation = prepared.operation.name
            logger.warning(
                "cancelled %s %s from %s: operation_timeout (%s s) reached",
                prepared.operation_type,
                repr(operation.value) if operation else "(anonymous)",
                peer,
                self.limits.operation_timeout,
            )
            return {"data": None, "errors": [dict(TIMED_OUT)]}
        return self.format_result(result)

    async def execute_event(
        self, prepared: PreparedOperation, event: Any, *, context: Any, root_value: Any = None
    ) -> dict[str, Any]:
        """Execute a subscription's selection set once for ``event``.

        Args:
            prepared: a prepared subscription.
            event: a value the subscription's source yielded.
            context: what resolvers see as ``info.context``.
            root_value: unused by the event execution; kept for symmetry.

        Returns:
            The formatted result for this event.

        Raises:
            RequestError: the variables cannot be coerced.
        """
        executor = self._build(prepared, context, root_value)
        plan = plan_for(prepared.plans, executor)
        return await self._run_event(executor, plan, event)

    async def _run_event(
        self, executor: AnyioExecutor, plan: OperationPlan | None, event: Any
    ) -> dict[str, Any]:
        scope = LoaderScope()  # a fresh one per event: no value cached for an earlier one
        token = scope.activate()
        try:
            if plan is None:
                self._plan_stats.operations_unplanned += 1
                per_event = executor.build_per_event_executor(event)
                async with scope.running():
                    result = await run_executor(per_event, serially=False)
            else:
                run = PlannedRun(plan, executor, self._plan_stats, event=event)
                started = _start(run)
                settle = run.executor_to_settle()
                if type(started) is not ExecutionResult or (
                    settle is not None and (settle._tracked or settle._orphans)
                ):
                    async with scope.running():
                        started = await run_work(
                            functools.partial(_unwrap, started), run.executor_to_settle
                        )
                result = started
        finally:
            scope.deactivate(token)
        return self.format_result(result)

    def subscribe(
        self, prepared: PreparedOperation, *, context: Any, root_value: Any = None
    ) -> SubscriptionContext:
        """The subscription's stream: ``async with engine.subscribe(...) as results``.

        Args:
            prepared: a prepared subscription.
            context: what resolvers see as ``info.context``.
            root_value: passed to the source resolver as its root.

        Returns:
            A ``SubscriptionContext`` (an async context manager).
        """
        return SubscriptionContext(self, prepared, context, root_value)

    def share_key(self, prepared: PreparedOperation) -> Hashable | None:
        """The key identical shared subscriptions have in common, or None if unshared.

        It is (root field, document source, operation name, variables as canonical JSON)
        when the root field was bound with ``shared=True``. The resume point is not part of
        it: a request that carries one gets None, so it runs privately and its source can
        read its own backlog (docs/shared-subscriptions.md).
        """
        if prepared.resume_point is not None:
            return None
        return self.hub_key(prepared)

    def hub_key(self, prepared: PreparedOperation) -> Hashable | None:
        """The share key of ``prepared`` whether or not it resumes (a resuming subscriber
        joins this hub once its private backlog has caught up with it); None if unshared."""
        field = prepared.root_field
        if field is None or not self.schema.field_options(field).shared:
            return None
        request = prepared.request
        try:
            variables = orjson.dumps(request.variables or {}, option=orjson.OPT_SORT_KEYS)
        except TypeError:  # orjson.JSONEncodeError is a TypeError
            return None
        return (field, request.query, request.operation_name, variables.decode("utf-8"))

    # --- results ---------------------------------------------------------------------

    def format_result(self, result: ExecutionResult) -> dict[str, Any]:
        """The response dict of ``result``: errors logged once and masked if configured."""
        formatted: dict[str, Any] = {"data": result.data}
        if result.errors:
            formatted["errors"] = [self.format_error(error) for error in result.errors]
        if result.extensions:
            formatted["extensions"] = result.extensions
        return formatted

    def format_error(self, error: GraphQLError, where: str | None = None) -> FormattedError:
        """Format one execution error, logging an unexpected exception behind it.

        ``where`` names the place in the log when the error has no path (a subscription's
        source, say); it does not change what the client gets.
        """
        formatted = _formatted(error)
        original = error.original_error
        if original is None or isinstance(original, GraphQLError):
            return formatted
        if isinstance(original, ResumeError):
            # A refusal meant for the client, never masked: what it says, and its code.
            formatted["message"] = str(original)
            extensions = formatted.get("extensions")
            formatted["extensions"] = {**(extensions or {}), "code": original.code}
            return formatted
        logger.error(
            "%s at %s: %s",
            type(original).__name__,
            ".".join(map(str, error.path or ())) or where or "<root>",
            original,
            exc_info=(type(original), original, original.__traceback__),
        )
        if self.mask_errors:
            formatted["message"] = MASKED_MESSAGE
        return formatted


class _Raised:
    """An exception ``_start`` caught, to be raised where the execution is awaited."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


def _start(run: PlannedRun) -> Any:
    """``run.start()``: its result, its awaitable, or what it raised as ``_Raised``."""
    try:
        return run.start()
    except BaseException as error:  # raised again by _unwrap, after the work is settled
        return _Raised(error)


def _no_executor() -> None:
    """Nothing more to settle: ``run_executor`` settles the generic path's work itself."""


def _unwrap(started: Any) -> Any:
    if type(started) is _Raised:
        raise started.error
    return started


def _formatted(error: GraphQLError) -> FormattedError:
    """graphql-core's formatted error (a fresh dict on every call)."""
    return cast(FormattedError, error.formatted)


def _select_operation(
    document: DocumentNode, operation_name: str | None
) -> OperationDefinitionNode:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is not None:
        for operation in operations:
            if operation.name is not None and operation.name.value == operation_name:
                return operation
        raise RequestError(({"message": f"Unknown operation named '{operation_name}'."},))
    if len(operations) == 1:
        return operations[0]
    if not operations:
        raise RequestError(({"message": "Must provide an operation."},))
    raise RequestError(
        ({"message": "Must provide operation name if query contains multiple operations."},)
    )


class SubscriptionContext:
    """One subscription's stream of results, as an async context manager.

    Entering creates the source (runs the field's subscribe resolver); the stream then
    executes the selection set once per event. Leaving closes the source with ``aclose()``
    in the leaving task, shielded and bounded by ``limits.cleanup_grace``; past the bound
    it is abandoned with a warning. Field errors inside an event are data (``errors`` in
    that result); a source that raises ends the stream with ``SourceError``.

    The request's resume point (``PreparedOperation.resume_point``) is what
    ``anyql.resume_point(info)`` returns while the subscribe resolver is called and during
    the source's first ``__anext__`` (an async generator's body up to its first ``yield``);
    a subscription without one sets nothing.
    """

    def __init__(
        self, engine: Engine, prepared: PreparedOperation, context: Any, root_value: Any
    ) -> None:
        self._engine = engine
        self._prepared = prepared
        self._context = context
        self._root_value = root_value
        self._source: AsyncIterator[Any] | None = None
        self._scope: AsyncExitStack | None = None

    async def __aenter__(self) -> ResultStream:
        """Create the source stream.

        Raises:
            RequestError: not a subscription, bad variables, or the subscribe resolver
                raised or returned no async iterable.
        """
        if self._prepared.operation_type != "subscription":
            raise RequestError(({"message": "Only subscription operations can be subscribed."},))
        engine = self._engine
        executor = engine._build(self._prepared, self._context, self._root_value)
        resume = self._prepared.resume_point
        # The source's loads share the operation's scope (each event gets its own).
        scope = LoaderScope()
        stack = AsyncExitStack()
        await stack.enter_async_context(scope.running())
        token = scope.activate()
        stack.callback(scope.deactivate, token)
        try:
            resume_token = None if resume is None else resuming.set(resume)
            try:
                created: Any = create_source_event_stream(executor)
                if executor.is_awaitable(created):
                    created = await created
            finally:
                if resume_token is not None:
                    resuming.reset(resume_token)
            if isinstance(created, ExecutionResult):
                errors = created.errors or [GraphQLError("Could not create the source stream.")]
                raise RequestError(tuple(engine.format_error(error) for error in errors))
            source = created.__aiter__()
            plan = plan_for(self._prepared.plans, executor)
        except BaseException:
            await stack.aclose()
            raise
        self._scope = stack
        self._source = source
        field = self._prepared.root_field
        if resume is None:
            return ResultStream(engine, executor, plan, source, field)
        return _ResumingStream(engine, executor, plan, source, field, resume)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        source, self._source = self._source, None
        scope, self._scope = self._scope, None
        try:
            if source is not None:
                await aclose_within(
                    source, self._engine.limits.cleanup_grace, "a subscription source"
                )
        finally:
            if scope is not None:
                await scope.aclose()


class ResultStream:
    """Iterates a source, executing the selection set once per event.

    A source value that is an ``anyql.Event`` is unwrapped: the selection set runs on its
    ``value`` and the result gets ``extensions.eventId`` (merged into a fresh dict).
    ``event_id`` is the id of the result ``__anext__`` returned last (None for a plain
    value), for framings that carry it outside the payload (the SSE ``id:`` line).
    """

    __slots__ = ("_engine", "_executor", "_plan", "_resume", "_source", "_where", "event_id")

    def __init__(
        self,
        engine: Engine,
        executor: AnyioExecutor,
        plan: OperationPlan | None,
        source: AsyncIterator[Any],
        field: str | None,
    ) -> None:
        self._engine = engine
        self._executor = executor
        self._plan = plan
        self._source = source
        self._where = f"the source of {field}" if field else None
        #: The ``Event.id`` of the latest result, or None.
        self.event_id: str | None = None

    def __aiter__(self) -> ResultStream:
        return self

    async def __anext__(self) -> dict[str, Any]:
        try:
            event = await self._source.__anext__()
        except StopAsyncIteration:
            raise
        except Exception as error:
            formatted = self._engine.format_error(self._locate(error), self._where)
            raise SourceError((formatted,)) from error
        if type(event) is Event:
            self.event_id = event.id
            result = await self._engine._run_event(self._executor, self._plan, event.value)
            return _with_event_id(result, event.id)
        self.event_id = None
        return await self._engine._run_event(self._executor, self._plan, event)

    def _locate(self, error: Exception) -> GraphQLError:
        if isinstance(error, GraphQLError):
            return error
        # no path or location: the error belongs to the stream, not to one event
        # (a ResumeError is shown as it is, with its code: ``Engine.format_error``)
        return GraphQLError(str(error), original_error=error)


class _ResumingStream(ResultStream):
    """A ``ResultStream`` whose first ``__anext__`` runs with the resume point set (so an
    async generator's body sees it up to its first ``yield``). That call turns it into a
    plain ``ResultStream`` (same slots), so later events cost what they cost without one."""

    __slots__ = ()

    def __init__(
        self,
        engine: Engine,
        executor: AnyioExecutor,
        plan: OperationPlan | None,
        source: AsyncIterator[Any],
        field: str | None,
        resume: str,
    ) -> None:
        super().__init__(engine, executor, plan, source, field)
        self._resume = resume

    async def __anext__(self) -> dict[str, Any]:
        self.__class__ = ResultStream  # type: ignore[assignment]  # only the first call
        token = resuming.set(self._resume)
        try:
            event = await self._source.__anext__()
        except StopAsyncIteration:
            raise
        except Exception as error:
            formatted = self._engine.format_error(self._locate(error), self._where)
            raise SourceError((formatted,)) from error
        finally:
            resuming.reset(token)
        if type(event) is Event:
            self.event_id = event.id
            result = await self._engine._run_event(self._executor, self._plan, event.value)
            return _with_event_id(result, event.id)
        self.event_id = None
        return await self._engine._run_event(self._executor, self._plan, event)


def _with_event_id(result: dict[str, Any], id: str) -> dict[str, Any]:
    """``result`` with ``extensions.eventId``: a fresh ``extensions`` dict, since the one it
    has may be shared (graphql-core's result, a middleware's)."""
    extensions = result.get("extensions")
    result["extensions"] = {**extensions, "eventId": id} if extensions else {"eventId": id}
    return result
