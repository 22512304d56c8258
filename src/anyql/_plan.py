"""Planned execution: an operation's field collection and completion worked out once.

Owns ``OperationPlan`` (what to do for one operation of one cached document), ``plan_for``
(find or build it) and ``PlannedRun`` (one execution walking a plan). Imports ``graphql``,
``anyio`` and ``_executor``; the execution layer (``execution.py``) is its one user.

Theory of operation. graphql-core's executor decides everything anew for every object it
completes: it collects the sub-fields (memoised only within one execution), looks the
field up in the schema, builds a resolve-info object and a ``Path`` for every field, calls
the default resolver through the generic attribute lookup and dispatches every leaf value
through the type's coercion. None of that depends on the data. A plan does it once per
operation, per object type, and is reused by every request with the same document,
operation and ``@skip``/``@include`` variables (the only variables that change which fields
are collected), and by every event of one subscription:

- ``ObjectPlan``: for one object type under one selection, the collected fields in
  response order (graphql-core's own ``collect_fields``/``collect_subfields`` compute
  them, so merging, fragments and directives keep their exact semantics).
- ``FieldPlan``: the field's definition, its resolver (None for the default one), its
  arguments when they are constant, and a ``Completer`` for its type.
- ``Completer``: how a value of one output type is completed: a leaf with a fast path
  for the built-in scalars (a ``str`` for ``String``, an ``int`` in range for ``Int``, ...,
  anything else through the type's own coercion), a list, an object (its plan built on
  first use), an abstract type (one plan per runtime type seen).

The walker (``PlannedRun``) keeps graphql-core's rules: a resolver's error, a null in a
non-null position and a failed coercion become located errors handled by the same rule
(``handle_field_error``: propagate to the nearest nullable parent, or record); default
resolution reads mappings by key and other objects by attribute and calls a callable
value with ``info`` and the arguments; an awaitable result is awaited, siblings
concurrently (``_executor.gather``). It builds a ``Path`` and a resolve-info only where
they can be seen: for a resolver call, a value with a selection set, or an error.

A long synchronous subtree checkpoints: every ``CHECKPOINT_BUDGET`` completed fields or
list items, a list finishes its remaining items after ``anyio.lowlevel.checkpoint()``,
so the operation timeout and a cancellation still reach it. The fields and items after
it wait for it (``_Resume``), so the checkpoint changes neither the errors nor which
resolvers run. No checkpoint is taken where nothing could await it (``execute_sync``'s
``is_awaitable``, no event loop): such an execution stays synchronous.

What a plan does not cover goes through graphql-core's generic path (the executor's own
``complete_value``) from that value down: a list resolved as an async iterable. Whole
operations go the generic way (``plan_for`` returns None) when the executor has
middleware, an abort signal or hooks, when the document uses ``@defer``/``@stream``, or
when planning itself fails (the generic path then reports the error).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterator, Mapping
from types import CoroutineType
from typing import Any, Final, Literal

import anyio
from graphql import ExecutionResult, GraphQLError, located_error
from graphql.execution.collect_fields import (
    FieldDetailsList,
    GroupedFieldSet,
    collect_fields,
    collect_subfields,
)
from graphql.execution.executor import (
    CollectedErrors,
    collect_iterator_awaitables,
    default_field_resolver,
    invalid_return_type_error,
    to_nodes,
)
from graphql.execution.values import get_argument_values
from graphql.language import (
    BooleanValueNode,
    DirectiveNode,
    EnumValueNode,
    FieldNode,
    FloatValueNode,
    IntValueNode,
    ListValueNode,
    NullValueNode,
    ObjectValueNode,
    OperationType,
    StringValueNode,
    ValueNode,
    VariableNode,
)
from graphql.pyutils import Path, Undefined, is_iterable
from graphql.type import (
    GraphQLAbstractType,
    GraphQLBoolean,
    GraphQLField,
    GraphQLFloat,
    GraphQLID,
    GraphQLInt,
    GraphQLLeafType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    GraphQLString,
    is_abstract_type,
    is_leaf_type,
    is_list_type,
    is_non_null_type,
    is_object_type,
)

from ._executor import AnyioExecutor, PlanStats, gather, order_errors
from .schema import _the_event

__all__ = [
    "CHECKPOINT_BUDGET",
    "OperationPlan",
    "PlanStats",
    "PlannedExecutor",
    "PlannedRun",
    "plan_for",
]

#: Fields and list items completed synchronously between two checkpoints.
CHECKPOINT_BUDGET: Final = 2000
#: Plans kept per cached document (one per operation and ``@skip``/``@include`` values);
#: a further one is built for each request that needs it (``PlanStats.plans_uncached``).
MAX_PLANS_PER_DOCUMENT: Final = 32

#: Types whose values are never awaitable, callable, exceptions or async iterables.
_PLAIN: Final = frozenset({str, int, float, bool, type(None), dict, list, tuple})
#: Iterators over items that already exist (a list's, a tuple's).
_MATERIAL_ITERATORS: Final[frozenset[type]] = frozenset({type(iter([])), type(iter(()))})
_MIN_INT: Final = -(2**31)
_MAX_INT: Final = 2**31 - 1

LeafKind = Literal["str", "int", "float", "bool", "other"]
#: Leaf kinds whose every value of one Python type is returned unchanged.
_PASSTHROUGH: Final[dict[LeafKind, type]] = {"str": str, "bool": bool}
CompleterKind = Literal["leaf", "list", "object", "abstract"]


# --- the plan ----------------------------------------------------------------------------


class Completer:
    """How to complete a value of one output type (see the module docstring)."""

    __slots__ = (
        "abstract_plans",
        "direct_object",
        "item",
        "item_type",
        "kind",
        "leaf",
        "leaf_kind",
        "non_null",
        "object_plan",
        "object_type",
        "output_type",
        "selection",
    )

    def __init__(self, output_type: GraphQLOutputType, selection: FieldDetailsList) -> None:
        self.output_type = output_type
        self.selection = selection
        self.non_null = is_non_null_type(output_type)
        nullable: Any = output_type.of_type if self.non_null else output_type  # type: ignore[union-attr]
        self.kind: CompleterKind
        self.leaf_kind: LeafKind = "other"
        self.leaf: GraphQLLeafType | None = None
        self.item: Completer | None = None
        self.item_type: GraphQLOutputType | None = None
        self.object_type: GraphQLObjectType | None = None
        self.object_plan: ObjectPlan | None = None
        self.abstract_plans: dict[str, ObjectPlan] = {}
        #: an object type without ``is_type_of``: a dict value is completed directly
        self.direct_object = False
        if is_leaf_type(nullable):
            self.kind = "leaf"
            self.leaf = nullable
            self.leaf_kind = _leaf_kind(nullable)
        elif is_list_type(nullable):
            self.kind = "list"
            self.item_type = nullable.of_type
            self.item = Completer(nullable.of_type, selection)
        elif is_object_type(nullable):
            self.kind = "object"
            self.object_type = nullable
            self.direct_object = nullable.is_type_of is None
        else:
            assert is_abstract_type(nullable)
            self.kind = "abstract"

    def own_plan(self, executor: AnyioExecutor) -> ObjectPlan:
        """The plan of the selection on this completer's object type, built on first use."""
        plan = self.object_plan
        if plan is None:
            assert self.object_type is not None
            plan = ObjectPlan.of_subfields(executor, self.object_type, self.selection)
            self.object_plan = plan
        return plan

    def plan_of(self, runtime_type: GraphQLObjectType, executor: AnyioExecutor) -> ObjectPlan:
        """The plan of the selection on ``runtime_type``, built on first use."""
        if self.kind == "object":
            return self.own_plan(executor)
        plan = self.abstract_plans.get(runtime_type.name)
        if plan is None:
            plan = ObjectPlan.of_subfields(executor, runtime_type, self.selection)
            self.abstract_plans[runtime_type.name] = plan
        return plan


def _leaf_kind(leaf: GraphQLLeafType) -> LeafKind:
    if leaf is GraphQLString or leaf is GraphQLID:
        return "str"
    if leaf is GraphQLInt:
        return "int"
    if leaf is GraphQLFloat:
        return "float"
    if leaf is GraphQLBoolean:
        return "bool"
    return "other"


class FieldPlan:
    """One collected field of an ``ObjectPlan``."""

    __slots__ = (
        "arguments",
        "completer",
        "definition",
        "details",
        "name",
        "node",
        "nodes",
        "parent_type",
        "passthrough",
        "resolver",
        "response_name",
    )

    def __init__(
        self,
        executor: AnyioExecutor,
        parent_type: GraphQLObjectType,
        response_name: str,
        details: FieldDetailsList,
        definition: GraphQLField,
    ) -> None:
        self.response_name = response_name
        self.details = details
        self.node: FieldNode = details[0].node
        self.nodes: list[FieldNode] = to_nodes(details)
        self.name = self.node.name.value
        self.parent_type = parent_type
        self.definition = definition
        #: None: graphql-core's default resolution, done inline by the walk
        self.resolver: Callable[..., Any] | None = definition.resolve or (
            None if executor.field_resolver is default_field_resolver else executor.field_resolver
        )
        self.arguments: dict[str, Any] | None = _constant_arguments(executor, definition, details)
        self.completer = Completer(definition.type, details)
        #: the Python type whose values this field returns as they are (str for a String)
        self.passthrough: type | None = _PASSTHROUGH.get(self.completer.leaf_kind)


def _constant_arguments(
    executor: AnyioExecutor, definition: GraphQLField, details: FieldDetailsList
) -> dict[str, Any] | None:
    """The field's arguments if they never change and are immutable, else None."""
    first = details[0]
    node = first.node
    if not definition.args and not node.arguments:
        return {}
    if first.fragment_variable_values is not None:
        return None
    if any(_uses_variables(argument.value) for argument in node.arguments or ()):
        return None
    try:
        values = get_argument_values(
            definition, node, executor.variable_values, None, executor.hide_suggestions
        )
    except Exception:  # reported per call, as located field errors
        return None
    if all(type(value) in _PLAIN and type(value) not in (dict, list) for value in values.values()):
        return values
    return None


def _uses_variables(value: ValueNode) -> bool:
    if isinstance(value, VariableNode):
        return True
    if isinstance(value, ListValueNode):
        return any(_uses_variables(item) for item in value.values)
    if isinstance(value, ObjectValueNode):
        return any(_uses_variables(field.value) for field in value.fields)
    assert isinstance(
        value,
        (
            IntValueNode,
            FloatValueNode,
            StringValueNode,
            BooleanValueNode,
            NullValueNode,
            EnumValueNode,
        ),
    )
    return False


class ObjectPlan:
    """The collected fields of one selection on one object type, in response order."""

    __slots__ = ("fields", "object_type", "serial_parts", "type_name")

    def __init__(
        self, executor: AnyioExecutor, object_type: GraphQLObjectType, grouped: GroupedFieldSet
    ) -> None:
        self.object_type = object_type
        self.type_name = object_type.name
        schema = executor.schema
        fields: list[FieldPlan] = []
        for response_name, details in grouped.items():
            definition = schema.get_field(object_type, details[0].node.name.value)
            if definition is not None:  # graphql-core skips unknown fields the same way
                fields.append(FieldPlan(executor, object_type, response_name, details, definition))
        self.fields = tuple(fields)
        self.serial_parts: tuple[ObjectPlan, ...] | None = None

    @classmethod
    def of_subfields(
        cls, executor: AnyioExecutor, object_type: GraphQLObjectType, selection: FieldDetailsList
    ) -> ObjectPlan:
        """The plan of ``selection``'s sub-fields on ``object_type``."""
        collected = collect_subfields(
            executor.schema,
            executor.fragments,
            executor.variable_values,
            executor.operation,
            object_type,
            selection,
            executor.hide_suggestions,
        )
        if collected.new_defer_usages:
            raise _Unplannable
        return cls(executor, object_type, collected.grouped_field_set)

    def one_field_plans(self) -> tuple[ObjectPlan, ...]:
        """One plan per field, for executing the fields one after another (mutations)."""
        parts = self.serial_parts
        if parts is None:
            parts = self.serial_parts = tuple(self._part((field,)) for field in self.fields)
        return parts

    def fields_after(self, field: FieldPlan) -> ObjectPlan | None:
        """A plan of the fields after ``field`` (None if it is the last one)."""
        rest = self.fields[self.fields.index(field) + 1 :]
        return self._part(rest) if rest else None

    def _part(self, fields: tuple[FieldPlan, ...]) -> ObjectPlan:
        part = object.__new__(ObjectPlan)
        part.object_type = self.object_type
        part.type_name = self.type_name
        part.fields = fields
        part.serial_parts = None
        return part


class _Unplannable(Exception):
    """The operation goes through the generic executor."""


class OperationPlan:
    """The plan of one operation: its root type's plan and whether it runs serially."""

    __slots__ = ("root", "serial")

    def __init__(self, executor: AnyioExecutor) -> None:
        operation = executor.operation
        root_type = executor.schema.get_root_type(operation.operation)
        if root_type is None:
            raise _Unplannable
        collected = collect_fields(
            executor.schema,
            executor.fragments,
            executor.variable_values,
            root_type,
            operation,
            executor.hide_suggestions,
        )
        if collected.new_defer_usages:
            raise _Unplannable
        self.root = ObjectPlan(executor, root_type, collected.grouped_field_set)
        self.serial = operation.operation is OperationType.MUTATION


def plan_for(plans: dict[Any, Any], executor: AnyioExecutor) -> OperationPlan | None:
    """The plan for ``executor``'s operation, from ``plans`` (one cached document's) or new.

    Args:
        plans: the document's plan store (kept with the parse/validate cache entry).
        executor: a freshly built executor; its variables select the plan.

    Returns:
        The plan, or None when the operation must take the generic path.
    """
    if (
        executor.middleware_manager is not None
        or executor.abort_signal is not None
        or executor.hooks is not None
    ):
        return None
    operation = executor.operation
    name = operation.name.value if operation.name else None
    # per operation: each operation of a document has its own directives and variables
    traits_of: dict[str | None, _DocumentTraits] = plans.setdefault(None, {})
    traits = traits_of.get(name)
    if traits is None:
        traits = traits_of[name] = _DocumentTraits(executor)
    if traits.incremental:
        return None
    values = executor.variable_values.coerced
    key = (name, tuple(values.get(variable) for variable in traits.collection_variables))
    plan = plans.get(key)
    if plan is not None or key in plans:
        return plan
    try:
        plan = OperationPlan(executor)
    except (_Unplannable, GraphQLError, RecursionError):
        plan = None
    if len(plans) <= MAX_PLANS_PER_DOCUMENT:
        plans[key] = plan
    elif executor.plan_stats is not None:  # built again by every such request
        executor.plan_stats.plans_uncached += 1
    return plan


class _DocumentTraits:
    """What of one operation (and the document's fragments) decides how it is planned: the
    variables that change field collection, and whether it uses incremental delivery."""

    __slots__ = ("collection_variables", "incremental")

    def __init__(self, executor: AnyioExecutor) -> None:
        names: set[str] = set()
        incremental = False
        definitions = [executor.operation, *executor.fragment_definitions.values()]
        for directive in _directives(definitions):
            name = directive.name.value
            if name in ("defer", "stream"):
                incremental = True
            if name in ("skip", "include", "defer", "stream"):
                for argument in directive.arguments or ():
                    if isinstance(argument.value, VariableNode):
                        names.add(argument.value.name.value)
        self.collection_variables = tuple(sorted(names))
        self.incremental = incremental


def _directives(definitions: list[Any]) -> Iterator[DirectiveNode]:
    """Every directive used in ``definitions``, found without recursion."""
    pending: list[Any] = list(definitions)
    while pending:
        node = pending.pop()
        yield from getattr(node, "directives", None) or ()
        selection_set = getattr(node, "selection_set", None)
        if selection_set is not None:
            pending.extend(selection_set.selections)


# --- the walk ----------------------------------------------------------------------------


class PlannedRun:
    """One execution of an ``OperationPlan``: a query, a mutation or one subscription event.

    Args:
        plan: the operation's plan.
        executor: the executor built for this request (or the subscription's).
        stats: the counters to add this execution's figures to.
        event: for a subscription event, the event (the root value); the executor's
            ``build_per_event_executor`` copy is then made only if something needs it.
    """

    __slots__ = (
        "_event_executor",
        "budget",
        "caller_awaits",
        "errors",
        "executor",
        "fields",
        "for_event",
        "plan",
        "root_value",
        "stats",
    )

    def __init__(
        self,
        plan: OperationPlan,
        executor: AnyioExecutor,
        stats: PlanStats,
        *,
        event: Any = Undefined,
    ) -> None:
        self.plan = plan
        self.stats = stats
        self.budget = CHECKPOINT_BUDGET
        #: whether the caller can await a checkpoint (``_checkpoint_due``), found out once
        self.caller_awaits: bool | None = None
        self.fields = 0
        self.for_event = event is not Undefined
        self.executor = executor
        self._event_executor: AnyioExecutor | None = None
        if self.for_event:
            self.root_value = event
            self.errors = CollectedErrors()
        else:
            self.root_value = executor.root_value
            self.errors = executor.collected_errors

    # --- the executor this run stands for -------------------------------------------

    def generic_executor(self) -> AnyioExecutor:
        """The executor whose state matches this run (the per-event copy for an event)."""
        if not self.for_event:
            return self.executor
        executor = self._event_executor
        if executor is None:
            executor = self.executor.build_per_event_executor(self.root_value)
            assert isinstance(executor, AnyioExecutor)
            executor.collected_errors = self.errors
            self._event_executor = executor
        return executor

    def executor_to_settle(self) -> AnyioExecutor | None:
        """The executor whose tracked and orphaned work must be settled, if any."""
        return self._event_executor if self.for_event else self.executor

    # --- the operation ---------------------------------------------------------------

    def start(self) -> ExecutionResult | Awaitable[ExecutionResult]:
        """Execute the operation; an awaitable when some of it is asynchronous."""
        stats = self.stats
        stats.operations_planned += 1
        plan = self.plan
        try:
            if plan.serial and not self.for_event:
                data: Any = self._execute_serially(plan.root, self.root_value)
            else:
                data = self.execute_fields(plan.root, self.root_value, None)
        except GraphQLError as error:
            self.errors.add(error, None)
            return self._response(None)
        if type(data) is dict:
            return self._response(data)
        return self._finish(data)

    async def _finish(self, data: Awaitable[dict[str, Any]]) -> ExecutionResult:
        try:
            completed: dict[str, Any] | None = await data
        except GraphQLError as error:
            self.errors.add(error, None)
            completed = None
        return self._response(completed)

    def _response(self, data: dict[str, Any] | None) -> ExecutionResult:
        self.stats.fields_planned += self.fields
        errors = order_errors(self.errors.errors, data)
        return ExecutionResult(data, errors or None)

    def _execute_serially(self, plan: ObjectPlan, source: Any) -> Any:
        results: dict[str, Any] = {}
        parts = iter(plan.one_field_plans())
        for part in parts:
            completed = self.execute_fields(part, source, None)
            if type(completed) is not dict:
                return self._continue_serially(results, completed, parts, source)
            results.update(completed)
        return results

    async def _continue_serially(
        self, results: dict[str, Any], pending: Any, parts: Iterator[ObjectPlan], source: Any
    ) -> dict[str, Any]:
        results.update(await pending)
        for part in parts:
            completed = self.execute_fields(part, source, None)
            if type(completed) is not dict:
                completed = await completed
            results.update(completed)
        return results

    # --- objects ---------------------------------------------------------------------

    def execute_fields(self, plan: ObjectPlan, source: Any, path: Path | None) -> Any:
        """The completed fields of ``source`` (a dict, or an awaitable of it)."""
        fields = plan.fields
        self.fields += len(fields)
        self.budget -= len(fields)
        results: dict[str, Any] = {}
        pending: list[str] | None = None
        type_name = plan.type_name
        is_awaitable = self.executor.is_awaitable
        get = source.get if type(source) is dict or isinstance(source, Mapping) else None
        try:
            for field in fields:
                response_name = field.response_name
                field_path: Path | None = None
                try:
                    resolver = field.resolver
                    if resolver is None:
                        if field.arguments is None:
                            self._arguments(field)  # coerced for its errors, as graphql-core does
                        if get is None:
                            value = getattr(source, field.name, None)
                        else:
                            value = get(field.name)
                        value_type = type(value)
                        if value_type is field.passthrough:  # the common leaf: done
                            results[response_name] = value
                            continue
                        if value_type not in _PLAIN and callable(value):
                            field_path = Path(path, response_name, type_name)
                            value = value(self.info(field, field_path), **self._arguments(field))
                            value_type = type(value)
                    elif resolver is _the_event:
                        value = source
                        value_type = type(value)
                    else:
                        field_path = Path(path, response_name, type_name)
                        value = resolver(
                            source, self.info(field, field_path), **self._arguments(field)
                        )
                        value_type = type(value)
                    completer = field.completer
                    if value_type in _PLAIN and completer.kind == "leaf":
                        results[response_name] = _fast_leaf(completer, field, value, value_type)
                        continue
                    if field_path is None:
                        field_path = Path(path, response_name, type_name)
                    if value_type is dict and completer.direct_object:
                        plan_of = completer.object_plan or completer.own_plan(self.executor)
                        completed = self.execute_fields(plan_of, value, field_path)
                    elif value_type not in _PLAIN and is_awaitable(value):
                        completed = self._await_field(field, value, field_path)
                        results[response_name] = completed
                        pending = _add(pending, response_name)
                        continue
                    else:
                        completed = self.complete(completer, field, value, field_path)
                    completed_type = type(completed)
                    if completed_type in _PLAIN or (
                        completed_type is not CoroutineType
                        and completed_type is not _Resume
                        and not is_awaitable(completed)
                    ):
                        results[response_name] = completed
                        continue
                    if completed_type is _Resume:  # the later siblings run after it
                        results[response_name] = None  # (its place in the response)
                        return _Resume(
                            self._resume_fields(
                                plan, source, path, results, pending, field, field_path, completed
                            )
                        )
                    results[response_name] = self._guard(
                        completed, completer.output_type, field, field_path
                    )
                    pending = _add(pending, response_name)
                except Exception as raw_error:
                    if field_path is None:
                        field_path = Path(path, response_name, type_name)
                    self._field_error(raw_error, field.completer.output_type, field, field_path)
                    results[response_name] = None
        except Exception:
            if pending:
                self.generic_executor().settle_in_background([results[key] for key in pending])
            raise
        if pending is None:
            return results
        return self._fill_in(results, pending)

    async def _resume_fields(
        self,
        plan: ObjectPlan,
        source: Any,
        path: Path | None,
        results: dict[str, Any],
        pending: list[str] | None,
        field: FieldPlan,
        field_path: Path,
        waiting: _Resume,
    ) -> dict[str, Any]:
        """Finish ``field`` (gone on after a checkpoint), then the fields after it."""
        more: Any = None
        try:
            results[field.response_name] = await self._guard(
                waiting, field.completer.output_type, field, field_path
            )
            rest = plan.fields_after(field)
            if rest is not None:
                count = len(rest.fields)  # already counted by the first part
                self.fields -= count
                self.budget += count
                more = self.execute_fields(rest, source, path)
                if type(more) is _Resume:
                    more = await more
        except BaseException:
            if pending:
                self.generic_executor().settle_in_background([results[key] for key in pending])
            raise
        if more is None or type(more) is dict:
            if more:
                results.update(more)
            if pending:
                await self._fill_in(results, pending)
            return results
        # the later fields' own pending work, concurrently with the earlier fields'
        if pending:
            more = (await gather([self._fill_in(results, pending), more]))[1]
        else:
            more = await more
        results.update(more)
        return results

    def info(self, field: FieldPlan, path: Path) -> GraphQLResolveInfo[Any]:
        """The resolve-info graphql-core would pass for ``field`` at ``path``."""
        executor = self.executor
        helpers = (
            self.generic_executor().async_helpers if self.for_event else executor.async_helpers
        )
        return GraphQLResolveInfo(
            field.name,
            field.nodes,
            field.definition.type,
            field.parent_type,
            path,
            executor.schema,
            executor.fragment_definitions,
            self.root_value,
            executor.operation,
            executor.variable_values,
            executor.context_value,
            executor.is_awaitable,
            None,
            helpers,
        )

    def _arguments(self, field: FieldPlan) -> dict[str, Any]:
        arguments = field.arguments
        if arguments is not None:
            return arguments
        executor = self.executor
        return get_argument_values(
            field.definition,
            field.node,
            executor.variable_values,
            field.details[0].fragment_variable_values,
            executor.hide_suggestions,
        )

    def _field_error(
        self, raw_error: Exception, output_type: GraphQLOutputType, field: FieldPlan, path: Path
    ) -> None:
        """graphql-core's rule: locate; propagate from a non-null position, else record."""
        error = located_error(raw_error, field.nodes, path.as_list())
        if self.executor.error_propagation and is_non_null_type(output_type):
            raise error
        self.errors.add(error, path)

    async def _await_field(self, field: FieldPlan, value: Awaitable[Any], path: Path) -> Any:
        try:
            resolved = await value
            completed = self.complete(field.completer, field, resolved, path)
            if type(completed) not in _PLAIN and _awaitable(completed, self.executor.is_awaitable):
                completed = await completed
        except Exception as raw_error:
            self._field_error(raw_error, field.completer.output_type, field, path)
            return None
        return completed

    async def _guard(
        self,
        completed: Awaitable[Any],
        output_type: GraphQLOutputType,
        field: FieldPlan,
        path: Path,
    ) -> Any:
        try:
            return await completed
        except Exception as raw_error:
            self._field_error(raw_error, output_type, field, path)
            return None

    async def _fill_in(self, container: Any, keys: list[Any]) -> Any:
        if len(keys) == 1:
            key = keys[0]
            container[key] = await container[key]
            return container
        values = await gather([container[key] for key in keys])
        for key, value in zip(keys, values, strict=True):
            container[key] = value
        return container

    # --- values ----------------------------------------------------------------------

    def complete(self, completer: Completer, field: FieldPlan, value: Any, path: Path) -> Any:
        """Complete ``value`` (resolved, not awaitable) of ``completer``'s type at ``path``."""
        if isinstance(value, Exception):
            raise value
        if value is None or value is Undefined:
            if completer.non_null:
                raise TypeError(
                    "Cannot return null for non-nullable field"
                    f" {field.parent_type.name}.{field.name}."
                )
            return None
        kind = completer.kind
        if kind == "object":
            object_type = completer.object_type
            assert object_type is not None
            return self._complete_object(completer, object_type, field, value, path)
        if kind == "list":
            return self._complete_list(completer, field, value, path)
        if kind == "leaf":
            return _slow_leaf(completer, value)
        return self._complete_abstract(completer, field, value, path)

    def _complete_object(
        self,
        completer: Completer,
        object_type: GraphQLObjectType,
        field: FieldPlan,
        value: Any,
        path: Path,
    ) -> Any:
        plan = completer.plan_of(object_type, self.executor)
        if object_type.is_type_of is None:
            return self.execute_fields(plan, value, path)
        matches = object_type.is_type_of(value, self.info(field, _field_path(path)))
        if self.executor.is_awaitable(matches):
            return self._complete_object_later(plan, matches, completer, field, value, path)
        if not matches:
            raise invalid_return_type_error(object_type, value, completer.selection)
        return self.execute_fields(plan, value, path)

    async def _complete_object_later(
        self,
        plan: ObjectPlan,
        matches: Awaitable[bool],
        completer: Completer,
        field: FieldPlan,
        value: Any,
        path: Path,
    ) -> Any:
        if not await matches:
            raise invalid_return_type_error(plan.object_type, value, completer.selection)
        completed = self.execute_fields(plan, value, path)
        if type(completed) is not dict:
            completed = await completed
        return completed

    def _complete_abstract(
        self, completer: Completer, field: FieldPlan, value: Any, path: Path
    ) -> Any:
        executor = self.generic_executor()
        output_type = completer.output_type
        abstract: GraphQLAbstractType = (
            output_type.of_type if isinstance(output_type, GraphQLNonNull) else output_type  # type: ignore[assignment]
        )
        info = self.info(field, _field_path(path))
        resolve_type = abstract.resolve_type or executor.type_resolver
        runtime_name = resolve_type(value, info, abstract)
        if executor.is_awaitable(runtime_name):
            return self._complete_abstract_later(
                completer, abstract, runtime_name, field, value, path
            )
        runtime_type = executor.ensure_valid_runtime_type(
            runtime_name, abstract, completer.selection, info, value
        )
        return self._complete_object(completer, runtime_type, field, value, path)

    async def _complete_abstract_later(
        self,
        completer: Completer,
        abstract: GraphQLAbstractType,
        runtime_name: Awaitable[Any],
        field: FieldPlan,
        value: Any,
        path: Path,
    ) -> Any:
        executor = self.generic_executor()
        info = self.info(field, _field_path(path))
        runtime_type = executor.ensure_valid_runtime_type(
            await runtime_name, abstract, completer.selection, info, value
        )
        completed = self._complete_object(completer, runtime_type, field, value, path)
        if type(completed) not in _PLAIN and _awaitable(completed, executor.is_awaitable):
            completed = await completed
        return completed

    # --- lists -----------------------------------------------------------------------

    def _complete_list(self, completer: Completer, field: FieldPlan, value: Any, path: Path) -> Any:
        if type(value) not in (list, tuple):
            executor = self.generic_executor()
            if executor.is_async_iterable(value):
                # the generic path streams it (and closes it) item by item
                return executor.complete_value(
                    _nullable(completer.output_type),
                    completer.selection,
                    self.info(field, _field_path(path)),
                    path,
                    value,
                    None,
                )
            if not is_iterable(value):
                raise GraphQLError(
                    "Expected Iterable, but did not find one for field"
                    f" '{field.parent_type.name}.{field.name}'."
                )
        completed: list[Any] = []
        pending: list[int] = []
        items = iter(value)
        stop = self._fill_list(completer, field, items, completed, pending, path)
        if stop is not False:
            return _Resume(
                self._complete_list_later(completer, field, items, completed, pending, path, stop)
            )
        if pending:
            return self._fill_in(completed, pending)
        return completed

    def _fill_list(
        self,
        completer: Completer,
        field: FieldPlan,
        items: Iterator[Any],
        completed: list[Any],
        pending: list[int],
        path: Path,
    ) -> bool | _Resume:
        """Complete items into ``completed``; False at the end, True when the budget ran
        out before it, the last item's completion when that went on after a checkpoint
        (the items after it are completed once it has finished)."""
        item = completer.item
        item_type = completer.item_type
        assert item is not None and item_type is not None
        leaf = item.kind == "leaf"
        is_awaitable = self.executor.is_awaitable
        append = completed.append
        try:
            for value in items:
                index = len(completed)
                value_type = type(value)
                item_path: Path | None = None
                try:
                    if leaf and value_type in _PLAIN:
                        append(_fast_leaf(item, field, value, value_type))
                    elif value_type is dict and item.direct_object:
                        item_path = Path(path, index, None)
                        done = self.execute_fields(
                            item.object_plan or item.own_plan(self.executor),
                            value,
                            item_path,
                        )
                        if type(done) is dict:
                            append(done)
                        elif type(done) is _Resume:
                            append(None)
                            self.budget -= 1
                            return done
                        else:
                            append(self._guard(done, item_type, field, item_path))
                            pending.append(index)
                    else:
                        item_path = Path(path, index, None)
                        if value_type not in _PLAIN and is_awaitable(value):
                            append(self._await_item(item, item_type, field, value, item_path))
                            pending.append(index)
                        else:
                            done = self.complete(item, field, value, item_path)
                            done_type = type(done)
                            if done_type in _PLAIN:
                                append(done)
                            elif type(done) is _Resume:  # (narrows done for mypy)
                                append(None)
                                self.budget -= 1
                                return done
                            elif done_type is CoroutineType or is_awaitable(done):
                                append(self._guard(done, item_type, field, item_path))
                                pending.append(index)
                            else:
                                append(done)
                except Exception as raw_error:
                    if item_path is None:
                        item_path = Path(path, index, None)
                    self._field_error(raw_error, item_type, field, item_path)
                    append(None)
                self.budget -= 1
                if self.budget <= 0 and self._checkpoint_due():
                    return True
        except Exception:
            self._orphan(completed, pending, items)
            raise
        return False

    def _checkpoint_due(self) -> bool:
        """At the end of the budget: whether the list finishes after a checkpoint.

        Not when nothing could await the checkpoint: a caller whose ``is_awaitable`` says a
        coroutine is not awaitable (``execute_sync``, ``graphql_sync``) or a thread without
        an event loop (``execute_sync(check_sync=True)`` from synchronous code). Nothing
        can cancel such an execution either, so it goes on synchronously, as graphql-core's
        does, with a fresh budget.
        """
        awaits = self.caller_awaits
        if awaits is None:
            awaits = self.caller_awaits = _caller_awaits(self.executor.is_awaitable)
        if awaits and _in_event_loop():
            return True
        self.budget = CHECKPOINT_BUDGET
        return False

    def _orphan(self, completed: list[Any], pending: list[int], items: Iterator[Any]) -> None:
        """Hand the pending items and the awaitables left in ``items`` to be settled."""
        orphans = [completed[index] for index in pending]
        orphans.extend(collect_iterator_awaitables(items, self.executor.is_awaitable))
        if orphans:
            self.generic_executor().settle_in_background(orphans)

    async def _complete_list_later(
        self,
        completer: Completer,
        field: FieldPlan,
        items: Iterator[Any],
        completed: list[Any],
        pending: list[int],
        path: Path,
        stop: bool | _Resume,
    ) -> list[Any]:
        """Finish a list whose budget ran out (``stop`` True), a checkpoint before every
        further share, or whose last item went on after a checkpoint (``stop``)."""
        while True:
            try:
                if stop is True:
                    await anyio.lowlevel.checkpoint()
                    self.budget = CHECKPOINT_BUDGET
                else:
                    assert type(stop) is _Resume and completer.item_type is not None
                    index = len(completed) - 1
                    completed[index] = await self._guard(
                        stop, completer.item_type, field, Path(path, index, None)
                    )
            except Exception:  # a non-null item failed: as in _fill_list
                self._orphan(completed, pending, items)
                raise
            except BaseException:  # cancelled: what was started and what is left settles
                # A generator's items not drawn yet do not exist: drawing them all (as an
                # error does, like graphql-core) would run the very work being cancelled.
                rest = items if type(items) in _MATERIAL_ITERATORS else iter(())
                self._orphan(completed, pending, rest)
                raise
            stop = self._fill_list(completer, field, items, completed, pending, path)
            if stop is False:
                break  # (_fill_list hands its own leftovers over when it raises)
        if pending:
            await self._fill_in(completed, pending)
        return completed

    async def _await_item(
        self,
        item: Completer,
        item_type: GraphQLOutputType,
        field: FieldPlan,
        value: Awaitable[Any],
        path: Path,
    ) -> Any:
        try:
            completed = self.complete(item, field, await value, path)
            if type(completed) not in _PLAIN and _awaitable(completed, self.executor.is_awaitable):
                completed = await completed
        except Exception as raw_error:
            self._field_error(raw_error, item_type, field, path)
            return None
        return completed


class _Resume:
    """A completion that went on after a checkpoint (``CHECKPOINT_BUDGET``).

    The fields or list items after it are completed once it has finished (see
    ``PlannedRun._resume_fields`` and ``_complete_list_later``), as they would have been
    without the checkpoint: so a checkpoint changes neither which errors are reported nor
    which resolvers run. It is never a pending sibling that an error could abandon.
    """

    __slots__ = ("coroutine",)

    def __init__(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        self.coroutine = coroutine

    def __await__(self) -> Generator[Any, None, Any]:
        return self.coroutine.__await__()


def _add(pending: list[str] | None, key: str) -> list[str]:
    if pending is None:
        return [key]
    pending.append(key)
    return pending


def _awaitable(value: Any, is_awaitable: Callable[[Any], bool]) -> bool:
    """Whether a completed value (not of a ``_PLAIN`` type) is still to be awaited.

    The plan's own awaitables are coroutines and are recognised by their type, whatever
    the caller's ``is_awaitable`` says (``execute_sync`` passes one that says never).
    """
    return type(value) is CoroutineType or type(value) is _Resume or is_awaitable(value)


def _field_path(path: Path) -> Path:
    """The path of the field ``path`` is in: a list item's path without its indices.

    graphql-core passes ``is_type_of`` and ``resolve_type`` of a list item the field's
    resolve-info, whose path is the list field's.
    """
    while type(path.key) is int:
        path = path.prev  # type: ignore[assignment]
    return path


async def _coroutine_probe() -> None:
    """Never run: a coroutine to ask the caller's ``is_awaitable`` about."""


def _caller_awaits(is_awaitable: Callable[[Any], bool]) -> bool:
    """Whether a caller with this ``is_awaitable`` can await a coroutine it is handed."""
    probe = _coroutine_probe()
    try:
        return bool(is_awaitable(probe))
    finally:
        probe.close()


def _in_event_loop() -> bool:
    """Whether this thread runs an async event loop (a checkpoint needs one)."""
    try:
        anyio.get_current_task()
    except RuntimeError:  # anyio's NoEventLoopError (sniffio's error before anyio 4.11)
        return False
    return True


def _fast_leaf(completer: Completer, field: FieldPlan, value: Any, value_type: type) -> Any:
    """Complete a leaf value of a plain Python type: the common cases without coercion."""
    if value is None:
        if completer.non_null:
            raise TypeError(
                f"Cannot return null for non-nullable field {field.parent_type.name}.{field.name}."
            )
        return None
    kind = completer.leaf_kind
    if kind == "str":
        if value_type is str:
            return value
    elif kind == "int":
        if value_type is int and _MIN_INT <= value <= _MAX_INT:
            return value
    elif kind == "float":
        if value_type is float and math.isfinite(value):
            return value
    elif kind == "bool" and value_type is bool:
        return value
    return _slow_leaf(completer, value)


def _slow_leaf(completer: Completer, value: Any) -> Any:
    leaf = completer.leaf
    assert leaf is not None
    return AnyioExecutor.complete_leaf_value(leaf, value)


def _nullable(output_type: GraphQLOutputType) -> GraphQLOutputType:
    if isinstance(output_type, GraphQLNonNull):
        return output_type.of_type
    return output_type


class PlannedExecutor(AnyioExecutor):
    """``AnyioExecutor`` that executes through a plan, for graphql-core's ``executor_class``.

    ``graphql.execute(..., executor_class=PlannedExecutor)`` (and ``subscribe``) run the
    planned path with everything ``AnyioExecutor`` adds around an execution (settled work,
    hooks). Each execution plans anew, having no document cache to keep a plan in: it is
    how graphql-core's own execution tests are run against the plan
    (``scripts/graphql_core_conformance.py``). anyql's ``Engine`` keeps plans with its
    cached documents instead. Counted in ``plan_stats=`` if given, else in ``stats``.
    """

    #: the counters of every execution through this class without its own ``plan_stats``
    stats = PlanStats()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("plan_stats", PlannedExecutor.stats)
        super().__init__(*args, **kwargs)

    def begin_operation(self, serially: bool | None) -> Any:
        """The planned execution when the operation can be planned, else the generic one."""
        plan = plan_for({}, self)
        stats = self.plan_stats or PlannedExecutor.stats
        if plan is None or (serially is not None and serially != plan.serial):
            stats.operations_unplanned += 1
            return super().begin_operation(serially)
        return PlannedRun(plan, self, stats).start()
