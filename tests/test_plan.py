"""Planned execution (``anyql._plan``) gives what graphql-core's generic path gives.

The differential test draws data trees with hypothesis (right values, nulls, values of the
wrong type, exceptions as values, callables, failing callables, awaitable values, objects
read by attribute, iterators, abstract types resolved well and badly) and runs fixed
documents through the plan and through the generic executor on both backends: the
formatted results (data, error messages, paths and locations) must be the same. The other
tests pin what only the plan does: reuse, ``@skip``/``@include`` variants, checkpoints in
long synchronous lists, fresh per-event state, the counters.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import anyio
import graphql
import pytest
from graphql import ExecutionResult, GraphQLResolveInfo, build_schema, parse
from graphql import execute as graphql_execute
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from anyql import Schema
from anyql._executor import run_executor
from anyql._plan import CHECKPOINT_BUDGET, PlannedExecutor
from anyql.execution import Engine
from anyql.types import OperationRequest

SDL = """
enum Color { RED GREEN }
scalar Custom
interface Node { id: ID! }
type Leaf implements Node {
  id: ID! s: String i: Int f: Float b: Boolean e: Color c: Custom nn: String! ni: Int!
}
type Box implements Node {
  id: ID! leaf: Leaf strictLeaf: Leaf! leaves: [Leaf] strictLeaves: [Leaf!]! nested: [[Int!]]
  box: Box tags: [String!]
}
union Thing = Leaf | Box
type Query {
  box: Box strictBox: Box! things: [Thing] node: Node strictNode: Node!
  arg(x: Int, y: String = "d", z: [Int]): String
  list: [Int]
}
type Mutation { first: Int second: Int! third: Box }
"""

QUERY = """
query Q($skip: Boolean!, $include: Boolean = true, $x: Int, $z: [Int]) {
  box { ...B leaf { ...L } strictLeaf { id ni } leaves { ...L } strictLeaves { id nn }
        nested box { id tags leaf { s } } tags }
  strictBox { id leaf @skip(if: $skip) { i } leaves @include(if: $include) { s } }
  things { __typename ... on Leaf { s nn } ... on Box { id box { id } } }
  node { id ... on Leaf { e c } ... on Box { leaf { b } } }
  strictNode { __typename id }
  arg(x: $x, z: $z)
  a1: arg(x: 1, y: "z")
  a2: arg(z: [1, $x])
  list
}
fragment L on Leaf { s i f b e c nn }
fragment B on Box { id alias: id }
"""

MUTATION = "mutation { first second third { id leaf { s } } again: first }"

STRINGS = st.text(max_size=3)
INTS = st.integers(-(2**31), 2**31 - 1)
FLOATS = st.floats(allow_nan=False, allow_infinity=False, width=32)
WRONG = st.sampled_from(
    ["x", "", 2**40, -(2**40), 1.5, float("nan"), float("inf"), True, [1], {"a": 1}, ()]
)


class _IteratorMarker:
    def __init__(self, items: list[Any]) -> None:
        self.items = items


class _AsyncIteratorMarker(_IteratorMarker):
    """A list drawn as an async iterable: the plan hands it to the generic path."""


async def _async_items(items: list[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item


def thaw(value: Any) -> Any:
    if isinstance(value, _AsyncIteratorMarker):
        return _async_items([thaw(item) for item in value.items])
    if isinstance(value, _IteratorMarker):
        return iter([thaw(item) for item in value.items])
    if isinstance(value, dict):
        return {key: thaw(item) for key, item in value.items()}
    if isinstance(value, SimpleNamespace):
        return SimpleNamespace(**{key: thaw(item) for key, item in vars(value).items()})
    if isinstance(value, list):
        return [thaw(item) for item in value]
    if isinstance(value, tuple):
        return tuple(thaw(item) for item in value)
    return value


def boom(info: GraphQLResolveInfo[Any], **arguments: Any) -> Any:
    raise RuntimeError("boom from a callable")


def returning(value: Any) -> Callable[..., Any]:
    def call(info: GraphQLResolveInfo[Any], **arguments: Any) -> Any:
        return thaw(value)

    return call


def awaiting(value: Any) -> Callable[..., Any]:
    # succeeds only: a failing awaitable's sibling errors depend on scheduling order
    async def call(info: GraphQLResolveInfo[Any], **arguments: Any) -> Any:
        return thaw(value)

    return call


def value_of(good: st.SearchStrategy[Any], *, awaitable: bool = True) -> st.SearchStrategy[Any]:
    """A field's raw value: usually ``good``, sometimes anything a resolver may produce."""
    choices = [
        good,
        good,
        st.none(),
        WRONG,
        st.builds(lambda: ValueError("an error as a value")),
        good.map(returning),
        st.just(boom),
    ]
    if awaitable:
        choices.append(good.map(awaiting))
    return st.one_of(*choices)


def leaf_values() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {},
        optional={
            "id": value_of(st.one_of(STRINGS, INTS)),
            "s": value_of(STRINGS),
            "i": value_of(INTS),
            "f": value_of(st.one_of(FLOATS, INTS)),
            "b": value_of(st.booleans()),
            "e": value_of(st.sampled_from(["RED", "GREEN", "BLUE"])),
            "c": value_of(st.one_of(STRINGS, INTS)),
            "nn": value_of(STRINGS),
            "ni": value_of(INTS),
            "__typename": st.sampled_from(["Leaf", "Box", "Nope", 3]),
        },
    )


def as_object(values: dict[str, Any]) -> Any:
    return SimpleNamespace(**{key: value for key, value in values.items() if key != "__typename"})


def sources(values: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[Any]:
    """A dict, or the same values as attributes of an object (no ``__typename`` then)."""
    return st.one_of(values, values, values.map(as_object))


def lists_of(items: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    plain = st.lists(items, max_size=3)
    # an iterator is drawn as a marker: each execution consumes a fresh one (``thaw``)
    return st.one_of(
        plain,
        plain.map(tuple),
        plain.map(_IteratorMarker),
        plain.map(_AsyncIteratorMarker),
        st.just("not a list"),
    )


LEAVES = sources(leaf_values())


def box_values(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return sources(
        st.fixed_dictionaries(
            {},
            optional={
                "id": value_of(STRINGS),
                "leaf": value_of(LEAVES),
                "strictLeaf": value_of(LEAVES),
                "leaves": value_of(lists_of(st.one_of(LEAVES, st.none())), awaitable=False),
                "strictLeaves": value_of(lists_of(LEAVES), awaitable=False),
                "nested": value_of(
                    lists_of(st.one_of(st.none(), lists_of(value_of(INTS, awaitable=False)))),
                    awaitable=False,
                ),
                "box": value_of(inner, awaitable=False),
                "tags": value_of(lists_of(value_of(STRINGS)), awaitable=False),
                "__typename": st.sampled_from(["Box", "Leaf", "Nope"]),
            },
        )
    )


BOXES = st.recursive(st.none(), box_values, max_leaves=4)
THINGS = st.one_of(LEAVES, BOXES)


def describe_arguments(info: GraphQLResolveInfo[Any], **arguments: Any) -> str:
    return repr(sorted(arguments.items()))


def mostly(usual: st.SearchStrategy[Any], other: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``usual`` nine times in ten."""
    return st.integers(0, 9).flatmap(lambda n: usual if n else other)


def with_required(
    values: st.SearchStrategy[Any], required: dict[str, st.SearchStrategy[Any]]
) -> st.SearchStrategy[dict[str, Any]]:
    """A dict from ``values`` (a dict or an object) whose ``required`` keys are well formed."""

    def merge(pair: tuple[Any, dict[str, Any]]) -> dict[str, Any]:
        drawn, good = pair
        base = dict(vars(drawn)) if isinstance(drawn, SimpleNamespace) else dict(drawn)
        return {**base, **good}

    return st.tuples(values, st.fixed_dictionaries(required)).map(merge)


GOOD_LEAVES = with_required(
    leaf_values(), {"id": STRINGS, "nn": STRINGS, "ni": INTS, "__typename": st.just("Leaf")}
)
GOOD_BOXES = with_required(
    box_values(BOXES),
    {"id": STRINGS, "strictLeaf": GOOD_LEAVES, "strictLeaves": st.lists(GOOD_LEAVES, max_size=3)},
)

ROOTS = st.fixed_dictionaries(
    {
        "arg": st.just(describe_arguments),
        "list": value_of(lists_of(value_of(INTS)), awaitable=False),
        # mostly well formed: a null in these non-null fields nulls the whole response
        "strictBox": mostly(GOOD_BOXES, value_of(BOXES, awaitable=False)),
        "strictNode": mostly(GOOD_LEAVES, value_of(THINGS, awaitable=False)),
    },
    optional={
        "box": value_of(BOXES, awaitable=False),
        "things": value_of(lists_of(THINGS), awaitable=False),
        "node": value_of(THINGS, awaitable=False),
    },
)

VARIABLES = st.fixed_dictionaries(
    {"skip": st.booleans()},
    optional={
        "include": st.booleans(),
        "x": st.one_of(st.none(), INTS),
        "z": st.one_of(st.none(), st.lists(st.one_of(st.none(), INTS), max_size=2)),
    },
)


def custom_output(value: Any) -> Decimal:
    """``Custom``'s output coercion: a value of no JSON type (raises for most strings)."""
    return Decimal(value) if not isinstance(value, (dict, list, tuple)) else Decimal(len(value))


def make_engine() -> Engine:
    schema = Schema(SDL)
    custom = schema.graphql_schema.type_map["Custom"]
    custom.coerce_output_value = custom_output  # type: ignore[attr-defined]
    return Engine(schema)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(root=ROOTS, variables=VARIABLES)
def test_planned_results_equal_generic_results(
    backend: str, root: dict[str, Any], variables: dict[str, Any]
) -> None:
    engine = make_engine()
    frozen = root

    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        prepared = engine.prepare(OperationRequest(QUERY, variables=variables))
        planned = await engine.execute(prepared, context="ctx", root_value=thaw(frozen))
        executor = engine._build(prepared, "ctx", thaw(frozen))
        generic = engine.format_result(await run_executor(executor))
        return planned, generic

    planned, generic = anyio.run(main, backend=backend)
    assert planned == generic
    assert engine.plan_stats()["operations_planned"] == 1
    event("data" if planned["data"] is not None else "null data")
    event(f"{min(len(planned.get('errors', ())), 5)} errors (5: five or more)")


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(max_examples=60, deadline=None)
@given(
    first=value_of(INTS, awaitable=False),
    second=value_of(INTS, awaitable=False),
    third=value_of(BOXES, awaitable=False),
)
def test_planned_mutations_equal_generic_ones(
    backend: str, first: Any, second: Any, third: Any
) -> None:
    engine = make_engine()
    frozen = {"first": first, "second": second, "third": third}

    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        prepared = engine.prepare(OperationRequest(MUTATION))
        planned = await engine.execute(prepared, context=None, root_value=thaw(frozen))
        generic = engine.format_result(
            await run_executor(engine._build(prepared, None, thaw(frozen)))
        )
        return planned, generic

    planned, generic = anyio.run(main, backend=backend)
    assert planned == generic


# --- what only the plan does -------------------------------------------------------------


@pytest.mark.anyio
async def test_mutation_root_fields_run_one_after_another() -> None:
    schema = Schema("type Query { ok: Int } type Mutation { a: Int b: Int c: Int }")
    order: list[str] = []

    def recorder(name: str, *, asynchronous: bool) -> Callable[..., Any]:
        if asynchronous:

            async def resolve(root: Any, info: Any) -> int:
                order.append(f"{name} start")
                await anyio.lowlevel.checkpoint()
                order.append(f"{name} end")
                return len(order)

            return resolve

        def resolve_now(root: Any, info: Any) -> int:
            order.append(f"{name} start")
            order.append(f"{name} end")
            return len(order)

        return resolve_now

    schema.field("Mutation.a")(recorder("a", asynchronous=True))
    schema.field("Mutation.b")(recorder("b", asynchronous=False))
    schema.field("Mutation.c")(recorder("c", asynchronous=True))
    engine = Engine(schema)
    result = await engine.execute(
        engine.prepare(OperationRequest("mutation { a b c }")), context=None
    )
    assert result == {"data": {"a": 2, "b": 4, "c": 6}}
    assert order == ["a start", "a end", "b start", "b end", "c start", "c end"]
    assert engine.plan_stats()["operations_planned"] == 1


@pytest.mark.anyio
async def test_a_plan_is_built_once_per_document_and_skip_include_values() -> None:
    engine = make_engine()
    query = "query($s: Boolean!) { list box @skip(if: $s) { id } }"
    root = {"list": [1, 2], "box": {"id": "b"}}
    results = []
    for skip in (False, True, False, True):
        prepared = engine.prepare(OperationRequest(query, variables={"s": skip}))
        results.append(await engine.execute(prepared, context=None, root_value=root))
    assert results[0] == results[2] == {"data": {"list": [1, 2], "box": {"id": "b"}}}
    assert results[1] == results[3] == {"data": {"list": [1, 2]}}
    plans = engine.prepare(OperationRequest(query, variables={"s": True})).plans
    built = [plan for key, plan in plans.items() if key is not None]
    assert len(built) == 2  # one per value of $s, each reused
    stats = engine.plan_stats()
    assert stats["operations_planned"] == 4
    assert stats["operations_unplanned"] == 0
    assert stats["fields_planned"] == 2 * 3 + 2 * 1


@pytest.mark.anyio
async def test_resolvers_get_graphql_cores_resolve_info() -> None:
    schema = Schema(
        "type Query { outer(n: Int!): Outer }  type Outer { inner(tag: String): String }"
    )
    seen: list[GraphQLResolveInfo[Any]] = []

    @schema.field("Outer.inner")
    def inner(source: Any, info: GraphQLResolveInfo[Any], tag: str | None = None) -> str:
        seen.append(info)
        return f"{source['n']}:{tag}"

    @schema.field("Query.outer")
    def outer(root: Any, info: GraphQLResolveInfo[Any], n: int) -> dict[str, int]:
        seen.append(info)
        return {"n": n}

    engine = Engine(schema)
    query = "query Q($t: String) { outer(n: 3) { first: inner(tag: $t) } }"
    prepared = engine.prepare(OperationRequest(query, variables={"t": "x"}))
    result = await engine.execute(prepared, context="the context", root_value="the root")
    assert result == {"data": {"outer": {"first": "3:x"}}}
    outer_info, inner_info = seen
    assert inner_info.field_name == "inner"
    assert inner_info.path.as_list() == ["outer", "first"]
    assert inner_info.parent_type.name == "Outer"
    assert str(inner_info.return_type) == "String"
    assert [node.name.value for node in inner_info.field_nodes] == ["inner"]
    assert inner_info.context == "the context"
    assert inner_info.root_value == "the root"
    assert inner_info.variable_values.coerced == {"t": "x"}
    assert inner_info.operation.name is not None and inner_info.operation.name.value == "Q"
    assert outer_info.path.as_list() == ["outer"]


@pytest.mark.anyio
async def test_R07_a_long_synchronous_list_can_be_cancelled_part_way() -> None:
    schema = Schema("type Query { items: [Item!]! } type Item { n: Int! }")
    total = 1_000_000
    produced = 0

    def items() -> Iterator[dict[str, int]]:
        nonlocal produced
        for n in range(total):
            produced += 1
            yield {"n": n}

    schema.field("Query.items")(lambda root, info: items())
    engine = Engine(schema)
    prepared = engine.prepare(OperationRequest("{ items { n } }"))
    finished = False
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as task_group:
            # runs at the execution's first checkpoint: without one, only after the
            # whole list was completed
            task_group.start_soon(_cancel, scope)
            await engine.execute(prepared, context=None)
            finished = True
    assert not finished
    assert produced < total // 10


async def _cancel(scope: anyio.CancelScope) -> None:
    scope.cancel()


@pytest.mark.anyio
async def test_each_subscription_event_has_its_own_errors() -> None:
    schema = Schema(
        "type Query { ok: Int }  type Subscription { tick: Tick! }  type Tick { n: Int v: Int! }"
    )

    @schema.field("Subscription.tick")
    async def tick(root: Any, info: Any) -> Any:
        yield {"n": 1, "v": None}  # v is non-null: the event's data is null, with an error
        yield {"n": 2, "v": 2}
        yield {"n": "three", "v": 3}

    engine = Engine(schema)
    prepared = engine.prepare(OperationRequest("subscription { tick { n v } }"))
    async with engine.subscribe(prepared, context=None) as stream:
        results = [result async for result in stream]
    assert results[0]["data"] is None
    assert results[0]["errors"][0]["message"] == "Cannot return null for non-nullable field Tick.v."
    assert results[1] == {"data": {"tick": {"n": 2, "v": 2}}}
    assert results[2]["data"] == {"tick": {"n": None, "v": 3}}
    assert results[2]["errors"][0]["path"] == ["tick", "n"]
    assert engine.plan_stats()["operations_planned"] == 3


@pytest.mark.anyio
async def test_work_tracked_during_an_event_is_awaited_with_it() -> None:
    schema = Schema(
        "type Query { ok: Int }  type Subscription { tick: Tick! }  type Tick { n: Int }"
    )
    done: list[int] = []

    async def side_effect(n: int) -> None:
        await anyio.lowlevel.checkpoint()
        done.append(n)

    @schema.field("Subscription.tick")
    async def tick(root: Any, info: Any) -> Any:
        for n in range(2):
            yield n

    @schema.field("Tick.n")
    def n(event: int, info: GraphQLResolveInfo[Any]) -> int:
        info.async_helpers.track([side_effect(event)])
        return event

    engine = Engine(schema)
    prepared = engine.prepare(OperationRequest("subscription { tick { n } }"))
    async with engine.subscribe(prepared, context=None) as stream:
        async for result in stream:
            assert done[-1] == result["data"]["tick"]["n"]
    assert done == [0, 1]


@pytest.mark.anyio
async def test_async_siblings_and_items_complete_concurrently() -> None:
    schema = Schema("type Query { a: Int b: Int items: [Int] }")
    both_started = anyio.Event()
    started = 0

    async def waiting(value: int) -> int:
        nonlocal started
        started += 1
        if started == 4:
            both_started.set()
        await both_started.wait()
        return value

    schema.field("Query.a")(lambda root, info: waiting(1))
    schema.field("Query.b")(lambda root, info: waiting(2))
    schema.field("Query.items")(lambda root, info: [waiting(3), waiting(4)])
    engine = Engine(schema)
    result = await engine.execute(engine.prepare(OperationRequest("{ a b items }")), context=None)
    assert result == {"data": {"a": 1, "b": 2, "items": [3, 4]}}


@pytest.mark.anyio
async def test_incremental_delivery_still_takes_the_generic_path() -> None:
    schema = Schema(
        "directive @defer(if: Boolean! = true, label: String) on FRAGMENT_SPREAD | INLINE_FRAGMENT"
        " type Query { list: [Int] box: Box } type Box { id: ID }"
    )
    engine = Engine(schema)
    prepared = engine.prepare(OperationRequest("{ list ... @defer { box { id } } }"))
    result = await engine.execute(prepared, context=None, root_value={"list": [1]})
    assert result["data"] is None
    assert "defer" in result["errors"][0]["message"]
    stats = engine.plan_stats()
    assert stats["operations_unplanned"] == 1
    assert stats["operations_planned"] == 0
    assert stats["fields_planned"] == 0


@pytest.mark.anyio
async def test_graphql_cores_execute_runs_the_plan_with_planned_executor() -> None:
    schema = build_schema("type Query { a: Int b(x: Int): [Int!] c: String! }")
    before = PlannedExecutor.stats.operations_planned

    async def b(root: Any, info: Any, x: int) -> list[Any]:
        await anyio.lowlevel.checkpoint()
        return [x, None]

    result: Any = graphql_execute(
        schema,
        parse("{ a b(x: 2) }"),
        {"a": 1, "b": lambda info, x: b(None, info, x)},
        executor_class=PlannedExecutor,
    )
    if not isinstance(result, ExecutionResult):
        result = await result
    assert result.data == {"a": 1, "b": None}
    assert result.errors is not None
    assert result.errors[0].message == "Cannot return null for non-nullable field Query.b."
    assert result.errors[0].path == ["b", 1]
    assert PlannedExecutor.stats.operations_planned == before + 1


@pytest.mark.anyio
async def test_a_default_field_resolver_given_to_graphql_core_is_used_by_the_plan() -> None:
    schema = build_schema("type Query { a: Int b: Thing } type Thing { c: String }")

    def upper_keys(source: Any, info: GraphQLResolveInfo[Any], **arguments: Any) -> Any:
        return source[info.field_name.upper()]

    result: Any = graphql_execute(
        schema,
        parse("{ a b { c } }"),
        {"A": 1, "B": {"C": "x"}},
        field_resolver=upper_keys,
        executor_class=PlannedExecutor,
    )
    if not isinstance(result, ExecutionResult):
        result = await result
    assert result == ExecutionResult({"a": 1, "b": {"c": "x"}}, None)


@pytest.mark.anyio
async def test_each_operation_of_a_document_is_keyed_by_its_own_skip_variables() -> None:
    engine = Engine(Schema("type Query { a: String b: String }"))
    query = (
        "query A($x: Boolean = true) { a @include(if: $x) }"
        " query B($y: Boolean!) { b @include(if: $y) }"
    )
    root = {"a": "a", "b": "secret"}

    async def run(name: str, variables: dict[str, Any]) -> Any:
        request = OperationRequest(query, operation_name=name, variables=variables)
        return await engine.execute(engine.prepare(request), context=None, root_value=root)

    assert await run("A", {}) == {"data": {"a": "a"}}
    assert await run("B", {"y": True}) == {"data": {"b": "secret"}}
    assert await run("B", {"y": False}) == {"data": {}}


@pytest.mark.anyio
async def test_a_default_resolved_field_still_coerces_its_arguments() -> None:
    engine = Engine(Schema("type Query { f(arg: Int! = 5): Int }"))
    prepared = engine.prepare(
        OperationRequest("query($v: Int) { f(arg: $v) }", variables={"v": None})
    )
    planned = await engine.execute(prepared, context=None, root_value={"f": 1})
    generic = engine.format_result(await run_executor(engine._build(prepared, None, {"f": 1})))
    assert planned == generic
    assert planned["data"] == {"f": None}
    assert "arg" in planned["errors"][0]["message"]


@pytest.mark.anyio
async def test_awaitables_left_in_a_list_cut_by_a_cancellation_are_settled() -> None:
    schema = Schema("type Query { items: [Int] }")
    closed: list[bool] = []

    async def pending_item() -> int:
        try:
            await anyio.sleep_forever()
        finally:
            closed.append(True)
        return 0  # pragma: no cover

    schema.field("Query.items")(lambda root, info: [1] * 2500 + [pending_item()])
    engine = Engine(schema)
    prepared = engine.prepare(OperationRequest("{ items }"))
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(_cancel, scope)  # at the list's first checkpoint
            await engine.execute(prepared, context=None)
    assert closed == [True]


@pytest.mark.anyio
async def test_execute_sync_completes_lists_longer_than_the_checkpoint_budget() -> None:
    # A checkpoint nothing can await is skipped: the caller's is_awaitable says it cannot
    # await (execute_sync), or no event loop runs (execute_sync(check_sync=True) in a thread)
    schema = build_schema(
        "type Query { items: [Int] boxes: [Box] name: String } type Box { items: [Int] }"
    )
    size = CHECKPOINT_BUDGET + 1
    document = parse("{ items boxes { items } name }")

    def root() -> dict[str, Any]:
        return {
            "items": list(range(size)),
            "boxes": [{"items": [1, 2]} for _ in range(size)],
            "name": "n",
        }

    expected = {
        "items": list(range(size)),
        "boxes": [{"items": [1, 2]}] * size,
        "name": "n",
    }
    assert graphql.execute_sync(schema, document, root()).data == expected  # graphql-core's
    result = graphql.execute_sync(schema, document, root(), executor_class=PlannedExecutor)
    assert result.errors is None
    assert result.data == expected

    def checked() -> ExecutionResult:
        return graphql.execute_sync(
            schema, document, root(), executor_class=PlannedExecutor, check_sync=True
        )

    result = await anyio.to_thread.run_sync(checked)
    assert result.errors is None
    assert result.data == expected


@pytest.mark.anyio
async def test_is_type_of_and_resolve_type_of_list_items_see_the_list_fields_path() -> None:
    schema = build_schema(
        """
        interface Pet { name: String }
        type Cat implements Pet { name: String }
        type Dog implements Pet { name: String }
        type Query { pets: [Pet] cats: [Cat] grid: [[Pet]] streamed: [[Pet]] }
        """
    )
    seen: list[tuple[str, list[str | int]]] = []

    def resolve_type(value: Any, info: GraphQLResolveInfo[Any], abstract: Any) -> str:
        seen.append(("resolve_type", info.path.as_list()))
        return str(value["kind"])

    def is_type_of(value: Any, info: GraphQLResolveInfo[Any]) -> bool:
        seen.append(("is_type_of", info.path.as_list()))
        return True

    schema.type_map["Pet"].resolve_type = resolve_type  # type: ignore[attr-defined]
    schema.type_map["Cat"].is_type_of = is_type_of  # type: ignore[attr-defined]
    cat, dog = {"kind": "Cat", "name": "c"}, {"kind": "Dog", "name": "d"}

    def root() -> dict[str, Any]:
        # the inner lists of streamed are async iterables: the generic path completes them
        return {
            "pets": [cat, dog],
            "cats": [cat],
            "grid": [[dog]],
            "streamed": [_async_items([dog])],
        }

    engine = Engine(schema)
    query = "{ pets { name } cats { name } grid { name } streamed { name } }"
    prepared = engine.prepare(OperationRequest(query))
    result = await engine.execute(prepared, context=None, root_value=root())
    assert result["data"] == {
        "pets": [{"name": "c"}, {"name": "d"}],
        "cats": [{"name": "c"}],
        "grid": [[{"name": "d"}]],
        "streamed": [[{"name": "d"}]],
    }
    # graphql-core passes the list field's resolve-info, whose path is the field's
    assert sorted(seen) == sorted(
        [
            ("resolve_type", ["pets"]),
            ("is_type_of", ["pets"]),
            ("resolve_type", ["pets"]),
            ("is_type_of", ["cats"]),
            ("resolve_type", ["grid"]),
            ("resolve_type", ["streamed"]),
        ]
    )
    assert engine.plan_stats()["operations_planned"] == 1


@pytest.mark.anyio
async def test_a_checkpoint_changes_neither_the_errors_nor_which_resolvers_run() -> None:
    schema = build_schema(
        """
        type Query { big: [Int] strict: String! bigStrict: [Int!]! after: String o: O }
        type O { big: [Int] strict: String! }
        """
    )
    calls: list[str] = []

    def after(root: Any, info: Any) -> str:
        calls.append("after")
        raise RuntimeError("after failed")

    schema.query_type.fields["after"].resolve = after  # type: ignore[union-attr]
    past = CHECKPOINT_BUDGET + 200

    def root() -> dict[str, Any]:
        big: list[Any] = list(range(past + 300))
        big[past] = "bad"  # a nullable item's error, past the budget
        big_strict: list[Any] = list(range(past + 300))
        big_strict[past] = None  # a non-null item's error, past the budget
        return {"big": big, "strict": None, "bigStrict": big_strict, "o": {"big": big}}

    engine = Engine(schema)
    for query in ("{ big strict }", "{ bigStrict after }", "{ after o { big strict } }"):
        calls.clear()
        core = graphql_execute(schema, parse(query), root())  # synchronous: any backend
        assert isinstance(core, ExecutionResult)
        core_calls = list(calls)
        calls.clear()
        prepared = engine.prepare(OperationRequest(query))
        planned = await engine.execute(prepared, context=None, root_value=root())
        assert planned == engine.format_result(core), query
        assert calls == core_calls, query
        calls.clear()
        executed: Any = graphql_execute(
            schema, parse(query), root(), executor_class=PlannedExecutor
        )
        assert not isinstance(executed, ExecutionResult)  # it went on after a checkpoint
        assert engine.format_result(await executed) == engine.format_result(core), query
        assert calls == core_calls, query


# --- the generic path inside a plan, and the counters ------------------------------------

ASYNC_LIST_SDL = """
type Item { id: ID! name: String }
type Query { items: [Item] strictItems: [Item!] other: String }
"""
ASYNC_LIST_QUERY = "{ items { id name } strictItems { id } other }"


def _async_list_root() -> dict[str, Any]:
    async def items(info: Any) -> AsyncIterator[Any]:
        yield {"id": "1", "name": "one"}
        yield {"id": None, "name": "no id"}  # a null in a non-null field: the item is null
        yield {"id": "3", "name": 3}

    async def strict_items(info: Any) -> AsyncIterator[Any]:
        yield {"id": "a"}
        raise RuntimeError("the source failed")

    return {"items": items, "strictItems": strict_items, "other": "x"}


@pytest.mark.anyio
async def test_a_list_resolved_as_an_async_iterable_takes_the_generic_path() -> None:
    engine = Engine(Schema(ASYNC_LIST_SDL))
    prepared = engine.prepare(OperationRequest(ASYNC_LIST_QUERY))
    planned = await engine.execute(prepared, context=None, root_value=_async_list_root())

    async def graphql_cores() -> ExecutionResult:
        result: Any = graphql_execute(
            engine.schema.graphql_schema, parse(ASYNC_LIST_QUERY), _async_list_root()
        )
        return result if isinstance(result, ExecutionResult) else await result

    # graphql-core's own executor needs asyncio: on either backend, it runs in a thread
    core = await anyio.to_thread.run_sync(asyncio.run, graphql_cores())
    assert planned == engine.format_result(core)
    assert planned["data"] == {
        "items": [{"id": "1", "name": "one"}, None, {"id": "3", "name": "3"}],
        "strictItems": None,
        "other": "x",
    }
    assert [error["path"] for error in planned["errors"]] == [["items", 1, "id"], ["strictItems"]]
    stats = engine.plan_stats()
    # the operation and its root fields took the plan; the items the generic path
    assert stats["operations_planned"] == 1
    assert stats["fields_planned"] == 3
    assert stats["fields_unplanned"] == 3 * 2 + 1


@pytest.mark.anyio
async def test_generic_fields_are_counted_by_the_engine_that_ran_them() -> None:
    busy, idle = Engine(Schema(ASYNC_LIST_SDL)), Engine(Schema(ASYNC_LIST_SDL))
    prepared = busy.prepare(OperationRequest("{ items { id name } }"))
    await busy.execute(prepared, context=None, root_value=_async_list_root())
    await idle.execute(
        idle.prepare(OperationRequest("{ other }")), context=None, root_value={"other": "x"}
    )
    assert busy.plan_stats()["fields_unplanned"] == 6
    assert idle.plan_stats() == {
        "operations_planned": 1,
        "operations_unplanned": 0,
        "fields_planned": 1,
        "fields_unplanned": 0,
        "plans_uncached": 0,
    }


@pytest.mark.anyio
async def test_plans_past_the_per_document_bound_are_built_each_time_and_counted() -> None:
    from anyql._plan import MAX_PLANS_PER_DOCUMENT

    engine = Engine(Schema("type Query { a: Int }"))
    count = MAX_PLANS_PER_DOCUMENT + 2
    document = " ".join(f"query Q{n} {{ a }}" for n in range(count))

    async def run(n: int) -> Any:
        request = OperationRequest(document, operation_name=f"Q{n}")
        return await engine.execute(engine.prepare(request), context=None, root_value={"a": n})

    for n in range(count):
        assert await run(n) == {"data": {"a": n}}
    assert engine.plan_stats()["plans_uncached"] == 2
    assert await run(count - 1) == {"data": {"a": count - 1}}  # not kept: built again
    assert await run(0) == {"data": {"a": 0}}  # kept
    stats = engine.plan_stats()
    assert stats["plans_uncached"] == 3
    assert stats["operations_planned"] == count + 2
