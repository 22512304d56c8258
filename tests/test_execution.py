"""``anyql.execution.Engine``: execute, timeouts, errors, subscriptions and their cleanup."""

from __future__ import annotations

import gc
import logging
import warnings
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from graphql import GraphQLError

from anyql.execution import (
    Engine,
    PreparedOperation,
    RequestError,
    SourceError,
    encode_json,
)
from anyql.limits import Limits
from anyql.schema import Schema
from anyql.types import OperationRequest

pytestmark = pytest.mark.anyio

SDL = """
type Query { hello(name: String = "world"): String!  fails: String  onPurpose: String
             slow: String  ctx: String  list(of: [Int]): [Int] }
type Tick { n: Int!  bad: Int }
type Subscription { count(to: Int!): Int!  ticks: Tick  shared(room: String!): String
                    broken: Int  notIterable: Int  sourceRaises: Int }
"""


def short(backend: str, trio_seconds: float) -> float:
    """A timeout: long under Trio's autojump clock, short on asyncio's real clock."""
    return trio_seconds if backend == "trio" else 0.05


class Probe:
    """What resolvers report back to the test."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.started = anyio.Event()


def make_schema(probe: Probe) -> Schema:
    schema = Schema(SDL)
    schema.field("Query.hello")(lambda root, info, name: f"Hello {name}")
    schema.field("Query.ctx")(lambda root, info: str(info.context))
    schema.field("Query.list")(lambda root, info, of: of)

    @schema.field("Query.fails")
    def fails(root: Any, info: Any) -> str:
        raise RuntimeError("secret database detail")

    @schema.field("Query.onPurpose")
    def on_purpose(root: Any, info: Any) -> str:
        raise GraphQLError("You may not", extensions={"code": "FORBIDDEN"})

    @schema.field("Query.slow")
    async def slow(root: Any, info: Any) -> str:
        probe.log.append("slow started")
        probe.started.set()
        try:
            await anyio.sleep(60)
        finally:
            probe.log.append("slow finally")
        return "late"  # pragma: no cover

    @schema.field("Subscription.count")
    async def count(root: Any, info: Any, to: int) -> Any:
        try:
            for i in range(to):
                yield i
        finally:
            probe.log.append("count finally")

    @schema.field("Subscription.ticks")
    async def ticks(root: Any, info: Any) -> Any:
        for n in range(3):
            yield {"n": n, "bad": n}

    @schema.field("Tick.bad")
    def bad(root: Any, info: Any) -> int:
        if root["n"] == 1:
            raise ValueError("bad tick")
        return int(root["bad"])

    @schema.field("Subscription.shared", shared=True)
    async def shared(root: Any, info: Any, room: str) -> Any:
        yield room

    @schema.field("Subscription.broken")
    async def broken(root: Any, info: Any) -> Any:
        raise ValueError("cannot subscribe")

    @schema.field("Subscription.notIterable")
    def not_iterable(root: Any, info: Any) -> Any:
        return 42

    @schema.field("Subscription.sourceRaises")
    async def source_raises(root: Any, info: Any) -> Any:
        yield 1
        raise RuntimeError("source exploded")

    schema.check()
    return schema


@pytest.fixture
def probe() -> Probe:
    return Probe()


@pytest.fixture
def engine(probe: Probe) -> Engine:
    return Engine(make_schema(probe))


def prepare(engine: Engine, query: str, **variables: Any) -> PreparedOperation:
    return engine.prepare(OperationRequest(query, variables=variables or None))


# --- execute --------------------------------------------------------------------------------


async def test_execute_returns_data_only_when_there_are_no_errors(engine: Engine) -> None:
    result = await engine.execute(prepare(engine, '{ hello(name: "Ada") }'), context=None)
    assert result == {"data": {"hello": "Hello Ada"}}


async def test_context_reaches_resolvers(engine: Engine) -> None:
    result = await engine.execute(prepare(engine, "{ ctx }"), context="the context")
    assert result == {"data": {"ctx": "the context"}}


async def test_F01_resolver_error_is_data_and_logged_once(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="anyql.execution"):
        result = await engine.execute(prepare(engine, "{ fails hello }"), context=None)
    assert result["data"] == {"fails": None, "hello": "Hello world"}
    assert result["errors"] == [
        {
            "message": "secret database detail",
            "locations": [{"line": 1, "column": 3}],
            "path": ["fails"],
        }
    ]
    records = [r for r in caplog.records if r.name == "anyql.execution"]
    assert len(records) == 1
    assert records[0].levelno == logging.ERROR
    assert records[0].exc_info is not None
    assert isinstance(records[0].exc_info[1], RuntimeError)


async def test_mask_errors_hides_unexpected_messages_but_keeps_graphql_errors(
    probe: Probe, caplog: pytest.LogCaptureFixture
) -> None:
    engine = Engine(make_schema(probe), mask_errors=True)
    with caplog.at_level(logging.ERROR, logger="anyql.execution"):
        result = await engine.execute(prepare(engine, "{ fails onPurpose }"), context=None)
    messages = [(e["message"], e.get("extensions")) for e in result["errors"]]
    assert messages == [
        ("Internal server error", None),
        ("You may not", {"code": "FORBIDDEN"}),
    ]
    assert len([r for r in caplog.records if r.name == "anyql.execution"]) == 1


async def test_variable_coercion_errors_are_request_errors(engine: Engine) -> None:
    prepared = prepare(engine, "query ($name: String!) { hello(name: $name) }")
    with pytest.raises(RequestError) as raised:
        await engine.execute(prepared, context=None)
    assert "$name" in raised.value.errors[0]["message"]


async def test_deeply_nested_list_variable_is_a_request_error(engine: Engine) -> None:
    nested: Any = 1
    for _ in range(3000):
        nested = [nested]
    prepared = prepare(engine, "query ($of: [Int]) { list(of: $of) }", of=nested)
    with pytest.raises(RequestError):
        await engine.execute(prepared, context=None)


async def test_executing_a_subscription_is_a_request_error(engine: Engine) -> None:
    with pytest.raises(RequestError):
        await engine.execute(prepare(engine, "subscription { count(to: 1) }"), context=None)


@pytest.mark.autojump
async def test_G11_operation_timeout_cancels_the_resolver(
    probe: Probe, anyio_backend_name: str
) -> None:
    timeout = short(anyio_backend_name, 10)
    engine = Engine(make_schema(probe), limits=Limits(operation_timeout=timeout))
    started = anyio.current_time()
    result = await engine.execute(prepare(engine, "{ slow hello }"), context=None)
    assert result == {"data": None, "errors": [{"message": "Operation timed out"}]}
    assert probe.log == ["slow started", "slow finally"]
    assert timeout <= anyio.current_time() - started < 60


async def test_cancelled_execution_leaves_no_running_resolver(engine: Engine, probe: Probe) -> None:
    prepared = prepare(engine, "{ slow }")

    async def execute() -> None:
        await engine.execute(prepared, context=None)

    async with anyio.create_task_group() as task_group:
        task_group.start_soon(execute)
        await probe.started.wait()
        task_group.cancel_scope.cancel()
    assert probe.log == ["slow started", "slow finally"]


# --- subscriptions -----------------------------------------------------------------------------


async def collect(engine: Engine, query: str, limit: int | None = None) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    async with engine.subscribe(prepare(engine, query), context=None) as stream:
        async for result in stream:
            results.append(result)
            if limit is not None and len(results) == limit:
                break
    return results


async def test_subscription_yields_one_result_per_event(engine: Engine, probe: Probe) -> None:
    results = await collect(engine, "subscription { count(to: 3) }")
    assert results == [{"data": {"count": i}} for i in range(3)]
    assert probe.log == ["count finally"]


async def test_P25_field_error_inside_an_event_is_data_and_the_stream_continues(
    engine: Engine,
) -> None:
    results = await collect(engine, "subscription { ticks { n bad } }")
    assert [r["data"] for r in results] == [
        {"ticks": {"n": 0, "bad": 0}},
        {"ticks": {"n": 1, "bad": None}},
        {"ticks": {"n": 2, "bad": 2}},
    ]
    assert results[1]["errors"][0]["path"] == ["ticks", "bad"]
    assert "errors" not in results[0] and "errors" not in results[2]


async def test_P24_source_raising_mid_stream_is_a_source_error(engine: Engine) -> None:
    seen: list[dict[str, Any]] = []
    with pytest.raises(SourceError) as raised:
        async with engine.subscribe(
            prepare(engine, "subscription { sourceRaises }"), context=None
        ) as stream:
            async for result in stream:
                seen.append(result)
    assert seen == [{"data": {"sourceRaises": 1}}]
    assert raised.value.errors == ({"message": "source exploded"},)


async def test_subscribe_resolver_raising_is_a_request_error(engine: Engine) -> None:
    with pytest.raises(RequestError) as raised:
        await collect(engine, "subscription { broken }")
    assert raised.value.errors[0]["message"] == "cannot subscribe"
    assert raised.value.errors[0]["path"] == ["broken"]


async def test_subscribe_resolver_returning_no_async_iterable_is_a_request_error(
    engine: Engine,
) -> None:
    with pytest.raises(RequestError) as raised:
        await collect(engine, "subscription { notIterable }")
    assert "must return AsyncIterable" in raised.value.errors[0]["message"]


async def test_subscription_with_bad_variables_is_a_request_error(engine: Engine) -> None:
    with pytest.raises(RequestError):
        await collect(engine, "subscription ($to: Int!) { count(to: $to) }")


async def test_subscribing_to_a_query_is_a_request_error(engine: Engine) -> None:
    with pytest.raises(RequestError):
        await collect(engine, "{ hello }")


def source_schema(body: Any, probe: Probe) -> Schema:
    schema = Schema("type Query { a: Int } type Subscription { events: Int }")
    schema.field("Subscription.events")(body)
    return schema


async def test_stopping_early_closes_the_source_and_runs_its_finally(probe: Probe) -> None:
    async def events(root: Any, info: Any) -> Any:
        try:
            for i in range(100):
                yield i
        finally:
            probe.log.append("finally")

    engine = Engine(source_schema(events, probe))
    assert await collect(engine, "subscription { events }", limit=2) == [
        {"data": {"events": 0}},
        {"data": {"events": 1}},
    ]
    assert probe.log == ["finally"]


async def test_F15_no_source_is_left_for_the_garbage_collector(probe: Probe) -> None:
    async def events(root: Any, info: Any) -> Any:
        try:
            while True:
                yield 1
                await anyio.lowlevel.checkpoint()
        finally:
            probe.log.append("closed")

    engine = Engine(source_schema(events, probe))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        await collect(engine, "subscription { events }", limit=3)
        assert probe.log == ["closed"]  # closed by us, before the generator was dropped
        gc.collect()
        await anyio.lowlevel.checkpoint()
    assert [str(w.message) for w in caught] == []
    assert probe.log == ["closed"]


async def test_a_finally_that_awaits_completes_even_when_the_consumer_is_cancelled(
    probe: Probe,
) -> None:
    async def events(root: Any, info: Any) -> Any:
        try:
            yield 1
            await anyio.sleep_forever()
        finally:
            await anyio.sleep(0.01)  # cleanup that needs the event loop
            probe.log.append("cleaned up")

    engine = Engine(source_schema(events, probe))
    prepared = prepare(engine, "subscription { events }")
    with anyio.CancelScope() as scope:
        async with engine.subscribe(prepared, context=None) as stream:
            async for _ in stream:
                scope.cancel()  # the consumer is cancelled while the source sits at yield
                await anyio.lowlevel.checkpoint()
    assert scope.cancelled_caught
    assert probe.log == ["cleaned up"]


@pytest.mark.autojump
async def test_a_source_that_swallows_cancellation_is_abandoned_after_cleanup_grace(
    probe: Probe, anyio_backend_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    grace = short(anyio_backend_name, 5)

    async def events(root: Any, info: Any) -> Any:
        try:
            yield 1
        finally:
            try:
                await anyio.sleep(100)
            except anyio.get_cancelled_exc_class():
                probe.log.append("swallowed")
            await anyio.sleep(100)  # keeps awaiting: cancelled again
            probe.log.append("never")  # pragma: no cover

    engine = Engine(source_schema(events, probe), limits=Limits(cleanup_grace=grace))
    started = anyio.current_time()
    with caplog.at_level(logging.WARNING, logger="anyql.execution"):
        assert await collect(engine, "subscription { events }", limit=1) == [
            {"data": {"events": 1}}
        ]
    assert grace <= anyio.current_time() - started < 100
    assert probe.log == ["swallowed"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "did not close" in warnings[0].getMessage()


async def test_an_error_in_the_sources_finally_is_logged_not_raised(
    probe: Probe, caplog: pytest.LogCaptureFixture
) -> None:
    async def events(root: Any, info: Any) -> Any:
        try:
            yield 1
        finally:
            raise RuntimeError("cleanup failed")

    engine = Engine(source_schema(events, probe))
    with caplog.at_level(logging.ERROR, logger="anyql.execution"):
        await collect(engine, "subscription { events }", limit=1)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert errors[0].exc_info is not None and "cleanup failed" in str(errors[0].exc_info[1])


async def test_a_sync_function_returning_an_async_iterable_is_a_source(probe: Probe) -> None:
    async def generate() -> Any:
        yield 5

    engine = Engine(source_schema(lambda root, info: generate(), probe))
    assert await collect(engine, "subscription { events }") == [{"data": {"events": 5}}]


async def test_an_async_function_returning_an_async_iterable_is_a_source(probe: Probe) -> None:
    async def generate() -> Any:
        yield 6

    async def events(root: Any, info: Any) -> Any:
        await anyio.lowlevel.checkpoint()
        return generate()

    engine = Engine(source_schema(events, probe))
    assert await collect(engine, "subscription { events }") == [{"data": {"events": 6}}]


# --- shared subscriptions -----------------------------------------------------------------------


async def test_share_key_is_equal_for_identical_shared_operations(engine: Engine) -> None:
    query = "subscription ($room: String!) { shared(room: $room) }"
    first = engine.share_key(prepare(engine, query, room="a", x=1))
    second = engine.share_key(
        engine.prepare(OperationRequest(query, variables={"x": 1, "room": "a"}))
    )
    other = engine.share_key(prepare(engine, query, room="b", x=1))
    assert first is not None and first == second and hash(first) == hash(second)
    assert other != first
    assert first[0] == "Subscription.shared"


async def test_share_key_is_none_when_not_shared(engine: Engine) -> None:
    assert engine.share_key(prepare(engine, "subscription { count(to: 1) }")) is None
    assert engine.share_key(prepare(engine, "{ hello }")) is None


async def test_execute_event_runs_the_selection_set_once(engine: Engine) -> None:
    prepared = prepare(engine, "subscription { ticks { n bad } }")
    result = await engine.execute_event(prepared, {"n": 4, "bad": 8}, context=None)
    assert result == {"data": {"ticks": {"n": 4, "bad": 8}}}


# --- encoding -----------------------------------------------------------------------------------


def test_encode_json_is_compact() -> None:
    assert encode_json({"data": {"a": [1, "é"]}, "errors": None}) == (
        '{"data":{"a":[1,"é"]},"errors":null}'
    )
