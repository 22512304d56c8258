"""The DataLoader's regressions found by review, each with the test that failed before its
fix: loads after the operation ended, a re-awaited load, a cancelled ``load_many``, one
loader shared by overlapping scopes, values freed with their operation, exceptions of the
scope's body left unwrapped, bad options that must never fail the whole operation."""

from __future__ import annotations

import gc
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import anyql
from anyql import DataLoader, Schema
from anyql.execution import Engine
from anyql.types import OperationRequest

pytestmark = pytest.mark.anyio


async def names(keys: list[int]) -> list[str]:
    return [f"n{k}" for k in keys]


def run(engine: Engine, query: str) -> Any:
    return engine.execute(engine.prepare(OperationRequest(query)), context=None)


# 1. a load in a scope that has ended (or never got a task group) hangs instead of raising
async def test_a_load_after_the_operation_ended_raises_instead_of_hanging() -> None:
    schema = Schema("type Query { kick: Boolean }")
    outcome: list[Any] = []
    async with anyio.create_task_group() as background:

        @schema.field("Query.kick")
        async def kick(root: Any, info: Any) -> bool:
            async def later() -> None:
                await anyio.sleep(0.02)  # the operation is over
                try:
                    with anyio.fail_after(1):
                        outcome.append(await anyql.loader(info, names).load(1))
                except TimeoutError:
                    outcome.append("hang")
                except RuntimeError:
                    outcome.append("RuntimeError")

            background.start_soon(later)  # copies the context, with the operation's scope
            return True

        await run(Engine(schema), "{ kick }")
    assert outcome == ["RuntimeError"]


async def test_a_load_of_a_sync_only_execution_awaited_later_raises() -> None:
    schema = Schema("type Query { a: Boolean }")
    stash: dict[str, Any] = {}

    @schema.field("Query.a")
    def a(root: Any, info: Any) -> bool:
        stash["pending"] = anyql.loader(info, names).load(1)
        return True

    await run(Engine(schema), "{ a }")
    with anyio.fail_after(1), pytest.raises(RuntimeError):  # today: TimeoutError (hangs)
        await stash["pending"]


# 2. re-awaiting a load after its first await was cancelled counts the leave twice
async def test_reawaiting_a_load_does_not_cancel_the_batch_under_another_waiter() -> None:
    async def slow(keys: list[int]) -> list[int]:
        await anyio.sleep(0.3)
        return [k * 10 for k in keys]

    results: dict[str, Any] = {}
    async with anyql.loader_scope():
        users = DataLoader(slow, idle_checkpoints=1)

        async def patient() -> None:
            try:
                results["B"] = await users.load(1)
            except RuntimeError as error:
                results["B"] = repr(error)

        async def impatient() -> None:
            pending = users.load(1)
            for _ in range(2):
                with anyio.move_on_after(0.05):
                    results["A"] = await pending
                    return

        async with anyio.create_task_group() as tg:
            tg.start_soon(patient)
            tg.start_soon(impatient)
    assert results["B"] == 10


# 3. a cancelled load_many never lets its loads leave: the batch runs on for nobody
async def test_a_cancelled_load_many_cancels_its_batch() -> None:
    cancelled = anyio.Event()

    async def hang(keys: list[int]) -> list[int]:
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()
        raise AssertionError

    async with anyql.loader_scope():
        many = DataLoader(hang, idle_checkpoints=1)
        with anyio.move_on_after(0.05):
            await many.load_many([1, 2, 3])
        with anyio.move_on_after(1):
            await cancelled.wait()
        assert cancelled.is_set(), "the batch still runs though nobody waits for it"


# 4. a user-held loader used by two overlapping scopes stops batching and caching
async def test_a_shared_loader_batches_each_scope_once_under_interleaving() -> None:
    calls: list[list[int]] = []

    async def load(keys: list[int]) -> list[int]:
        calls.append(list(keys))
        await anyio.sleep(0.01)
        return keys

    shared = DataLoader(load, max_delay=1.0)

    async def request(keys: range) -> None:
        async with anyql.loader_scope():

            async def one(k: int) -> None:
                for _ in range(k % 4):
                    await anyio.lowlevel.checkpoint()
                await shared.load(k)

            async with anyio.create_task_group() as tg:
                for k in keys:
                    tg.start_soon(one, k)

    async with anyio.create_task_group() as tg:
        tg.start_soon(request, range(0, 10))
        tg.start_soon(request, range(100, 110))
    assert len(calls) == 2, calls  # today 6-8 calls


async def test_a_shared_loader_loads_a_key_once_per_scope() -> None:
    calls: list[list[int]] = []

    async def load(keys: list[int]) -> list[int]:
        calls.append(list(keys))
        await anyio.sleep(0.02)
        return keys

    shared = DataLoader(load)

    async def scope(delay: float) -> None:
        await anyio.sleep(delay)
        async with anyql.loader_scope():
            await shared.load(7)
            await shared.load(7)  # cached in this scope: no second call

    async with anyio.create_task_group() as tg:
        tg.start_soon(scope, 0)
        tg.start_soon(scope, 0.01)
    assert len(calls) <= 2, calls  # today 4: each scope loads key 7 twice


# 5. a BaseException of the body comes out in a BaseExceptionGroup (before: bare)
async def test_a_base_exception_of_a_resolver_is_not_wrapped() -> None:
    schema = Schema("type Query { a: Int }")

    @schema.field("Query.a")
    async def a(root: Any, info: Any) -> int:
        await anyio.lowlevel.checkpoint()
        raise SystemExit(3)

    with pytest.raises(SystemExit):
        await run(Engine(schema), "{ a }")


# 6. a non-int max_batch_size is accepted, then raises out of the scope's task group
async def test_a_bad_max_batch_size_never_fails_the_whole_operation() -> None:
    schema = Schema("type Query { a: String  b: String }")

    @schema.field("Query.a")
    async def a(root: Any, info: Any) -> str:
        return await anyql.loader(info, names, max_batch_size=1.5).load(1)

    schema.field("Query.b")(lambda root, info: "b")
    result = await run(Engine(schema), "{ a b }")  # today: ExceptionGroup[TypeError]
    assert result["data"]["b"] == "b"


# 7. loaded values outlive the operation until the cyclic GC runs
async def test_loaded_values_are_freed_when_the_operation_ends() -> None:
    class Row:
        alive = 0

        def __init__(self) -> None:
            Row.alive += 1

        def __del__(self) -> None:
            Row.alive -= 1

    async def load_rows(keys: list[int]) -> list[Row]:
        return [Row() for _ in keys]

    schema = Schema("type Query { a: Boolean }")

    @schema.field("Query.a")
    async def a(root: Any, info: Any) -> bool:
        await anyql.loader(info, load_rows).load(1)
        return True

    engine = Engine(schema)
    gc.disable()
    try:
        for _ in range(5):
            await run(engine, "{ a }")
        await anyio.sleep(0.01)
        assert Row.alive == 0, f"{Row.alive} loaded values of finished operations still alive"
    finally:
        gc.enable()


# --- before the process's first load: no task group, the first awaiting load runs the batch


class _NoLoadsYet:
    """``dataloader._usage`` as in a process that never loaded: scopes get no task group."""

    @property
    def loads_made(self) -> bool:
        return False

    @loads_made.setter
    def loads_made(self, value: bool) -> None:
        del value


@pytest.fixture
def no_loads_yet(monkeypatch: pytest.MonkeyPatch) -> None:
    from anyql import dataloader

    monkeypatch.setattr(dataloader, "_usage", _NoLoadsYet())


@pytest.mark.usefixtures("no_loads_yet")
async def test_before_any_load_an_execution_opens_no_task_group_and_still_batches() -> None:
    calls: list[list[int]] = []

    async def authors(keys: list[int]) -> list[str]:
        calls.append(sorted(keys))
        return [f"a{key}" for key in keys]

    schema = Schema("type Query { posts: [Post!]! } type Post { author: String! }")
    schema.field("Query.posts")(lambda root, info: list(range(20)))

    @schema.field("Post.author")
    async def author(post: int, info: Any) -> str:
        await anyio.lowlevel.checkpoint()
        return await anyql.loader(info, authors).load(post % 5)

    engine = Engine(schema)
    result = await engine.execute(
        engine.prepare(OperationRequest("{ posts { author } }")), context=None
    )
    assert result["data"]["posts"][7] == {"author": "a2"}
    assert calls == [[0, 1, 2, 3, 4]]


@pytest.mark.usefixtures("no_loads_yet")
async def test_before_any_load_a_cancelled_leading_load_hands_the_batch_over() -> None:
    """The load that runs the batch is cancelled while batch_load runs: the other load
    runs it again and gets its value."""
    from anyql.dataloader import LoaderScope

    calls: list[list[int]] = []
    running = anyio.Event()

    async def slow(keys: list[int]) -> list[int]:
        calls.append(sorted(keys))
        running.set()
        await anyio.sleep(0 if len(calls) > 1 else 3600)
        return [key * 10 for key in keys]

    scope = LoaderScope()
    token = scope.activate()
    got: list[int] = []
    try:
        async with scope.running():
            loader = DataLoader(slow)
            first, second = loader.load(1), loader.load(2)
            async with anyio.create_task_group() as tasks:
                leading = anyio.CancelScope()

                async def lead() -> None:
                    with leading:
                        await first

                async def follow() -> None:
                    got.append(await second)

                tasks.start_soon(lead)
                await running.wait()
                tasks.start_soon(follow)
                await anyio.lowlevel.checkpoint()
                leading.cancel()
    finally:
        scope.deactivate(token)
    assert got == [20]
    assert calls == [[1, 2], [1, 2]]
