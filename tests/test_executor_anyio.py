"""``AnyioExecutor``: graphql-core's execution semantics on anyio, under asyncio and Trio.

Ported in spirit from graphql-core's execution tests: concurrency of async siblings and
list items, non-null propagation, abstract types, serial mutations, cancellation of
siblings, deterministic error order.
"""

from __future__ import annotations

import gc
import warnings
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from anyql.execution import Engine
from anyql.schema import Schema
from anyql.types import OperationRequest

pytestmark = pytest.mark.anyio


def delay_for(backend: str) -> float:
    """A resolver delay: long under Trio's autojump clock, short on asyncio's real clock."""
    return 1.0 if backend == "trio" else 0.05


async def run(engine: Engine, query: str, **variables: Any) -> dict[str, Any]:
    prepared = engine.prepare(OperationRequest(query, variables=variables or None))
    return await engine.execute(prepared, context=None)


# --- concurrency ----------------------------------------------------------------------

PARALLEL_SDL = "type Query { a: Int  b: Int  c: Int }"


@pytest.mark.autojump
async def test_two_resolvers_sleeping_run_side_by_side(anyio_backend_name: str) -> None:
    delay = delay_for(anyio_backend_name)
    schema = Schema(PARALLEL_SDL)
    log: list[str] = []

    def sleeper(name: str, value: int) -> Any:
        async def resolve(root: Any, info: Any) -> int:
            log.append(f"start {name}")
            await anyio.sleep(delay)
            log.append(f"end {name}")
            return value

        return resolve

    schema.field("Query.a")(sleeper("a", 1))
    schema.field("Query.b")(sleeper("b", 2))
    engine = Engine(schema)
    started = anyio.current_time()
    assert await run(engine, "{ a b }") == {"data": {"a": 1, "b": 2}}
    elapsed = anyio.current_time() - started
    assert set(log[:2]) == {"start a", "start b"}  # both started before either finished
    if anyio_backend_name == "trio":
        assert elapsed < 2 * delay


async def test_sync_and_async_siblings_mix_in_document_order() -> None:
    schema = Schema(PARALLEL_SDL)

    @schema.field("Query.a")
    async def a(root: Any, info: Any) -> int:
        await anyio.lowlevel.checkpoint()
        return 1

    @schema.field("Query.b")
    def b(root: Any, info: Any) -> int:
        return 2

    @schema.field("Query.c")
    async def c(root: Any, info: Any) -> int:
        return 3

    result = await run(Engine(schema), "{ c b a }")
    assert list(result["data"].items()) == [("c", 3), ("b", 2), ("a", 1)]


LIST_SDL = """
type Query { numbers: [Int]  strict: [Int!]  nested: [[Int!]]  stream: [Int] }
"""


async def test_lists_of_async_items_complete_concurrently() -> None:
    schema = Schema(LIST_SDL)
    started: list[int] = []
    all_started = anyio.Event()

    async def item(index: int) -> int:
        started.append(index)
        if len(started) == 3:
            all_started.set()
        await all_started.wait()  # deadlocks unless the items run concurrently
        return index * 10

    @schema.field("Query.numbers")
    def numbers(root: Any, info: Any) -> list[Any]:
        return [item(i) for i in range(3)]

    with anyio.fail_after(5):
        assert await run(Engine(schema), "{ numbers }") == {"data": {"numbers": [0, 10, 20]}}


async def test_a_failing_async_item_of_a_nullable_item_type_is_null() -> None:
    schema = Schema(LIST_SDL)

    async def item(index: int) -> int:
        if index == 1:
            raise ValueError("bad item")
        return index

    @schema.field("Query.numbers")
    def numbers(root: Any, info: Any) -> list[Any]:
        return [item(i) for i in range(3)]

    result = await run(Engine(schema), "{ numbers }")
    assert result["data"] == {"numbers": [0, None, 2]}
    assert [e["path"] for e in result["errors"]] == [["numbers", 1]]


async def test_non_null_item_error_nulls_the_list_and_cancels_the_other_items() -> None:
    schema = Schema(LIST_SDL)
    cleaned_up: list[int] = []

    async def item(index: int) -> int:
        try:
            if index == 0:
                await anyio.lowlevel.checkpoint()
                raise ValueError("bad item")
            await anyio.sleep_forever()
        finally:
            cleaned_up.append(index)
        return index  # pragma: no cover

    @schema.field("Query.strict")
    def strict(root: Any, info: Any) -> list[Any]:
        return [item(i) for i in range(3)]

    with anyio.fail_after(5):
        result = await run(Engine(schema), "{ strict }")
    assert result["data"] == {"strict": None}
    assert [e["path"] for e in result["errors"]] == [["strict", 0]]
    assert sorted(cleaned_up) == [0, 1, 2]


async def test_nested_non_null_lists_propagate_to_the_nearest_nullable_list() -> None:
    schema = Schema(LIST_SDL)

    async def value(v: int | None) -> int | None:
        await anyio.lowlevel.checkpoint()
        return v

    @schema.field("Query.nested")
    def nested(root: Any, info: Any) -> list[Any]:
        return [[value(1), value(2)], [value(3), value(None)], [value(5)]]

    result = await run(Engine(schema), "{ nested }")
    assert result["data"] == {"nested": [[1, 2], None, [5]]}
    assert result["errors"][0]["path"] == ["nested", 1, 1]
    assert "Cannot return null for non-nullable field" in result["errors"][0]["message"]


async def test_a_list_resolved_as_an_async_generator() -> None:
    schema = Schema(LIST_SDL)
    closed: list[bool] = []

    @schema.field("Query.stream")
    async def stream(root: Any, info: Any) -> Any:
        try:
            for i in range(3):
                await anyio.lowlevel.checkpoint()
                yield i
        finally:
            closed.append(True)

    assert await run(Engine(schema), "{ stream }") == {"data": {"stream": [0, 1, 2]}}
    assert closed == [True]


async def test_an_async_generator_list_is_closed_when_an_item_fails() -> None:
    schema = Schema(LIST_SDL)
    closed: list[bool] = []

    @schema.field("Query.strict")
    async def strict(root: Any, info: Any) -> Any:
        try:
            yield 1
            yield None  # null in [Int!]: the list fails
            yield 3  # pragma: no cover
        finally:
            closed.append(True)

    result = await run(Engine(schema), "{ strict }")
    assert result["data"] == {"strict": None}
    assert closed == [True]


# --- non-null propagation ---------------------------------------------------------------

NULLABILITY_SDL = """
type Query { obj: Obj  strictObj: Obj! }
type Obj { slow: Int  syncBoom: Int!  asyncBoom: Int!  fine: Int  child: Obj }
"""


def nullability_schema(log: list[str]) -> Schema:
    schema = Schema(NULLABILITY_SDL)
    schema.field("Query.obj")(lambda root, info: {})
    schema.field("Query.strictObj")(lambda root, info: {})
    schema.field("Obj.child")(lambda root, info: {})
    schema.field("Obj.fine")(lambda root, info: 7)

    @schema.field("Obj.slow")
    async def slow(root: Any, info: Any) -> int:
        log.append("slow started")
        try:
            await anyio.sleep_forever()
        finally:
            log.append("slow finally")
        return 1  # pragma: no cover

    @schema.field("Obj.syncBoom")
    def sync_boom(root: Any, info: Any) -> int:
        raise ValueError("sync boom")

    @schema.field("Obj.asyncBoom")
    async def async_boom(root: Any, info: Any) -> int:
        await anyio.lowlevel.checkpoint()
        raise ValueError("async boom")

    return schema


async def test_sync_non_null_error_nulls_the_parent_and_cancels_pending_siblings() -> None:
    log: list[str] = []
    engine = Engine(nullability_schema(log))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with anyio.fail_after(5):
            result = await run(engine, "{ obj { slow syncBoom fine } }")
        gc.collect()
    assert result["data"] == {"obj": None}
    assert [(e["message"], e["path"]) for e in result["errors"]] == [
        ("sync boom", ["obj", "syncBoom"])
    ]
    assert log == ["slow started", "slow finally"]
    assert not [w for w in caught if "never awaited" in str(w.message)]


async def test_async_non_null_error_cancels_the_siblings_of_that_gather() -> None:
    log: list[str] = []
    engine = Engine(nullability_schema(log))
    with anyio.fail_after(5):
        result = await run(engine, "{ obj { slow asyncBoom fine } }")
    assert result["data"] == {"obj": None}
    assert [e["path"] for e in result["errors"]] == [["obj", "asyncBoom"]]
    assert log == ["slow started", "slow finally"]


async def test_non_null_errors_propagate_through_non_null_parents_to_data() -> None:
    engine = Engine(nullability_schema([]))
    result = await run(engine, "{ strictObj { asyncBoom } obj { fine } }")
    assert result["data"] is None
    assert [e["path"] for e in result["errors"]] == [["strictObj", "asyncBoom"]]


async def test_nullable_errors_deep_in_the_tree_keep_the_rest() -> None:
    engine = Engine(nullability_schema([]))
    result = await run(engine, "{ obj { fine child { child { asyncBoom } fine } } }")
    assert result["data"] == {"obj": {"fine": 7, "child": {"child": None, "fine": 7}}}
    assert [e["path"] for e in result["errors"]] == [["obj", "child", "child", "asyncBoom"]]


# --- abstract types -----------------------------------------------------------------------

ABSTRACT_SDL = """
interface Pet { name: String }
type Dog implements Pet { name: String  barks: Boolean }
type Cat implements Pet { name: String  meows: Boolean }
union Animal = Dog | Cat
type Query { pets: [Pet]  animals: [Animal] }
"""

PETS = [{"kind": "dog", "name": "Rex"}, {"kind": "cat", "name": "Tom"}]


async def test_async_resolve_type_on_an_interface() -> None:
    schema = Schema(ABSTRACT_SDL)
    schema.field("Query.pets")(lambda root, info: PETS)
    schema.field("Dog.barks")(lambda root, info: True)

    async def resolve_type(value: Any, info: Any, abstract_type: Any) -> str:
        await anyio.lowlevel.checkpoint()
        return "Dog" if value["kind"] == "dog" else "Cat"

    schema.graphql_schema.get_type("Pet").resolve_type = resolve_type  # type: ignore[union-attr]
    result = await run(Engine(schema), "{ pets { __typename name ... on Dog { barks } } }")
    assert result == {
        "data": {
            "pets": [
                {"__typename": "Dog", "name": "Rex", "barks": True},
                {"__typename": "Cat", "name": "Tom"},
            ]
        }
    }


async def test_async_is_type_of_on_union_members() -> None:
    schema = Schema(ABSTRACT_SDL)
    schema.field("Query.animals")(lambda root, info: PETS)

    def is_kind(kind: str) -> Any:
        async def is_type_of(value: Any, info: Any) -> bool:
            await anyio.lowlevel.checkpoint()
            return bool(value["kind"] == kind)

        return is_type_of

    schema.graphql_schema.get_type("Dog").is_type_of = is_kind("dog")  # type: ignore[union-attr]
    schema.graphql_schema.get_type("Cat").is_type_of = is_kind("cat")  # type: ignore[union-attr]
    result = await run(Engine(schema), "{ animals { __typename ... on Cat { name } } }")
    assert result == {
        "data": {"animals": [{"__typename": "Dog"}, {"__typename": "Cat", "name": "Tom"}]}
    }


async def test_async_is_type_of_returning_false_is_a_field_error() -> None:
    schema = Schema(ABSTRACT_SDL)
    schema.field("Query.pets")(lambda root, info: [{"kind": "cat", "name": "Tom"}])

    async def never(value: Any, info: Any) -> bool:
        return False

    schema.graphql_schema.get_type("Pet").resolve_type = lambda v, i, t: "Dog"  # type: ignore[union-attr]
    schema.graphql_schema.get_type("Dog").is_type_of = never  # type: ignore[union-attr]
    result = await run(Engine(schema), "{ pets { name } }")
    assert result["data"] == {"pets": [None]}
    assert result["errors"][0]["message"].startswith("Expected value of type 'Dog'")


# --- mutations ------------------------------------------------------------------------------

MUTATION_SDL = "type Query { a: Int } type Mutation { first: Int  second: Int  third: Int }"


@pytest.mark.autojump
async def test_mutation_root_fields_run_serially(anyio_backend_name: str) -> None:
    delay = delay_for(anyio_backend_name)
    schema = Schema(MUTATION_SDL)
    log: list[str] = []

    def step(name: str, sleep: float, value: int) -> Any:
        async def resolve(root: Any, info: Any) -> int:
            log.append(f"start {name}")
            await anyio.sleep(sleep)
            log.append(f"end {name}")
            return value

        return resolve

    schema.field("Mutation.first")(step("first", 2 * delay, 1))
    schema.field("Mutation.second")(step("second", delay, 2))
    schema.field("Mutation.third")(lambda root, info: 3)
    result = await run(Engine(schema), "mutation { first second third }")
    assert result == {"data": {"first": 1, "second": 2, "third": 3}}
    assert log == ["start first", "end first", "start second", "end second"]


# --- incremental delivery ----------------------------------------------------------------------


async def test_defer_is_rejected() -> None:
    schema = Schema(
        "directive @defer(label: String, if: Boolean! = true) on FRAGMENT_SPREAD | INLINE_FRAGMENT"
        " type Query { a: Int }"
    )
    schema.field("Query.a")(lambda root, info: 1)
    result = await run(Engine(schema), "{ ... @defer { a } }")
    assert result["data"] is None
    assert "@defer or @stream" in result["errors"][0]["message"]


# --- error order ------------------------------------------------------------------------------

ORDER_SDL = """
type Query { a: Int  b: Int  c: Int  list: [Item]  obj: Obj }
type Item { v: Int }
type Obj { x: Int  y: Int }
"""
EXPECTED_ERROR_PATHS = [
    ["a"],
    ["b"],
    ["c"],
    ["list", 1, "v"],
    ["list", 3, "v"],
    ["obj", "x"],
    ["obj", "y"],
]


def order_schema() -> Schema:
    schema = Schema(ORDER_SDL)

    def failing(name: str, ticks: int) -> Any:
        async def resolve(root: Any, info: Any) -> int:
            for _ in range(ticks):
                await anyio.lowlevel.checkpoint()
            raise ValueError(f"{name} failed")

        return resolve

    # later fields fail first, several in the same scheduling round
    schema.field("Query.a")(failing("a", 3))
    schema.field("Query.b")(failing("b", 1))
    schema.field("Query.c")(failing("c", 1))
    schema.field("Query.list")(lambda root, info: [{"i": i} for i in range(4)])
    schema.field("Query.obj")(lambda root, info: {})
    schema.field("Obj.x")(failing("x", 2))
    schema.field("Obj.y")(failing("y", 0))

    @schema.field("Item.v")
    async def v(root: Any, info: Any) -> int:
        await anyio.lowlevel.checkpoint()
        if root["i"] % 2:
            raise ValueError(f"item {root['i']} failed")
        return int(root["i"])

    return schema


async def test_errors_order_is_identical_on_every_run_and_backend() -> None:
    engine = Engine(order_schema())
    query = "{ a b c list { v } obj { x y } }"
    for _ in range(20):
        result = await run(engine, query)
        assert [error["path"] for error in result["errors"]] == EXPECTED_ERROR_PATHS
        assert result["data"]["list"] == [{"v": 0}, {"v": None}, {"v": 2}, {"v": None}]


# --- resolver helpers ---------------------------------------------------------------------------


async def test_info_async_helpers_gather_and_track_work_on_both_backends() -> None:
    schema = Schema("type Query { both: [Int]  tracked: Int }")
    side_effects: list[str] = []

    async def double(value: int) -> int:
        await anyio.lowlevel.checkpoint()
        return value * 2

    @schema.field("Query.both")
    async def both(root: Any, info: Any) -> list[int]:
        return list(await info.async_helpers.gather([double(1), double(2)]))

    async def side_effect() -> None:
        await anyio.lowlevel.checkpoint()
        side_effects.append("done")

    @schema.field("Query.tracked")
    def tracked(root: Any, info: Any) -> int:
        info.async_helpers.track([side_effect()])
        return 1

    result = await run(Engine(schema), "{ both tracked }")
    assert result == {"data": {"both": [2, 4], "tracked": 1}}
    assert side_effects == ["done"]  # tracked work finished before execute returned
