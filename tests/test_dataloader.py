"""``anyql.DataLoader``, ``anyql.loader`` and their scopes, on asyncio and Trio.

Batching (a list level is one ``batch_load`` call, nested levels one call each), chunks
and their concurrency, deduplication and caching, errors (a wrong number of values, an
``Exception`` value, a raising ``batch_load``) with graphql-core's paths, sync and async
batch functions, cancellation, nothing outliving the request, the scopes (one per HTTP
request and per WebSocket operation; a subscription's source in the operation's scope and
each event in a fresh one, shared subscriptions included; none outside an execution),
loader identity and the on-the-fly warning, ``prime``/``clear``/``clear_all``/``load_many``.

Through ``anyql.testing.TestClient`` (HTTP, WebSocket, SSE) and ``Engine`` directly; the
real servers are in ``tests/e2e/test_dataloader_servers.py``. Synchronisation is events
and checkpoints, never sleeps; ``fail_after`` only bounds a wait that would otherwise hang.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from graphql import GraphQLError

import anyql
from anyql import DataLoader, GraphQL, Limits, Schema, loader_scope
from anyql import dataloader as dataloader_module
from anyql.execution import Engine
from anyql.testing import TestClient
from anyql.types import OperationRequest

pytestmark = pytest.mark.anyio

#: Posts ``p`` are written by user ``p % AUTHORS``; user ``u``'s friends are ``u + 50`` and
#: ``u + 51``: so the levels posts -> author -> friends -> friends load disjoint users.
AUTHORS = 10
#: Generous: the level tests check the idle-checkpoint rule, not the wall clock (asyncio has
#: no mock clock, and 5 ms of a loaded machine would split a level on its own).
NO_DEADLINE = {"max_delay": 60.0}

SDL = """
type Query {
  posts(n: Int!): [Post!]!
  user(id: Int!): User
  users(ids: [Int!]!): [User]
  fireAndForget(id: Int!): Boolean!
  batchStarted: Boolean!
  hang(id: Int!): String
  onTheFly(ids: [Int!]!, keyed: Boolean!): [Named]
  contextType: String
}
type Post { id: Int!  title: String  author: User  reader: User }
type User { id: Int!  name: String  friends: [User!] }
type Watched { id: Int!  name: String  stuck: String }
type Named { name: String }
type Subscription { watch(id: Int!): Watched  sharedWatch(id: Int!): Watched }
"""


class World:
    """The store behind the schema, what its batch functions did, and the test's levers."""

    def __init__(self) -> None:
        self.names = {key: f"user{key}" for key in range(200)}
        #: (batch function, keys) for every call, in call order
        self.calls: list[tuple[str, list[Any]]] = []
        #: user ids whose value is an Exception
        self.missing: set[int] = set()
        #: user ids whose value is a GraphQLError
        self.private: set[int] = set()
        #: the users batch returns one value too few
        self.short = False
        #: the users batch raises
        self.explode = False
        #: options for the users and titles loaders (given when the loader is made)
        self.options: dict[str, Any] = dict(NO_DEADLINE)
        #: checkpoints an async resolver awaits before it loads
        self.checkpoints = 2
        #: the hanging batch function started, and its ``finally`` ran
        self.hang_started = anyio.Event()
        self.hang_cleanups = 0
        self.hang_cleaned = anyio.Event()
        #: after their first event, the subscription sources wait for one message per event
        self.go_in, self.go = anyio.create_memory_object_stream[None](100)
        #: what the subscription sources saw when loading in the operation's scope
        self.source_saw: list[str] = []

    def keys_of(self, name: str) -> list[list[Any]]:
        return [keys for called, keys in self.calls if called == name]


def make_schema(world: World) -> Schema:
    schema = Schema(SDL)

    async def load_users(keys: list[int]) -> list[Any]:
        world.calls.append(("users", list(keys)))
        await anyio.lowlevel.checkpoint()
        if world.explode:
            raise RuntimeError("the user store is down")
        values: list[Any] = [
            GraphQLError(f"user {key} is private", extensions={"code": "FORBIDDEN"})
            if key in world.private
            else ValueError(f"no user {key}")
            if key in world.missing
            else {"id": key, "name": world.names.get(key, f"user{key}")}
            for key in keys
        ]
        return values[:-1] if world.short else values

    def load_titles(keys: list[int]) -> list[str]:  # a sync batch function
        world.calls.append(("titles", list(keys)))
        return [f"post {key}" for key in keys]

    async def load_hang(keys: list[int]) -> list[str]:
        world.calls.append(("hang", list(keys)))
        world.hang_started.set()
        try:
            await anyio.sleep_forever()
        finally:
            world.hang_cleanups += 1
            world.hang_cleaned.set()
        raise AssertionError("unreachable")  # pragma: no cover

    def users(info: Any) -> DataLoader[Any, Any]:
        return anyql.loader(info, load_users, **world.options)

    def titles(info: Any) -> DataLoader[Any, Any]:
        return anyql.loader(info, load_titles, **world.options)

    async def later(load: Callable[[], Any]) -> Any:
        """An async resolver's body: a few checkpoints of its own work, then the load."""
        for _ in range(world.checkpoints):
            await anyio.lowlevel.checkpoint()
        return await load()

    def mixed(sync: bool, load: Callable[[], Any]) -> Any:
        """Sync resolvers return the load's awaitable; async ones await it later."""
        return load() if sync else later(load)

    schema.field("Query.posts")(lambda root, info, n: list(range(n)))
    schema.field("Post.id")(lambda post, info: post)

    @schema.field("Post.title")
    def title(post: int, info: Any) -> Any:
        return mixed(post % 2 == 1, lambda: titles(info).load(post))

    @schema.field("Post.author")
    def author(post: int, info: Any) -> Any:
        return mixed(post % 2 == 0, lambda: users(info).load(post % AUTHORS))

    @schema.field("Post.reader")
    def reader(post: int, info: Any) -> Any:
        return mixed(post % 3 == 0, lambda: users(info).load(1000 + post))

    @schema.field("User.friends")
    def friends(user: dict[str, Any], info: Any) -> Any:
        keys = [user["id"] + 50, user["id"] + 51]
        return mixed(user["id"] % 2 == 1, lambda: users(info).load_many(keys))

    @schema.field("Query.user")
    def user(root: Any, info: Any, id: int) -> Any:
        return users(info).load(id)

    @schema.field("Query.users")
    def users_field(root: Any, info: Any, ids: list[int]) -> Any:
        return [users(info).load(key) for key in ids]

    @schema.field("Query.fireAndForget")
    def fire_and_forget(root: Any, info: Any, id: int) -> bool:
        anyql.loader(info, load_hang).load(id)  # registered, never awaited
        return True

    @schema.field("Query.batchStarted")
    async def batch_started(root: Any, info: Any) -> bool:
        await world.hang_started.wait()
        return True

    @schema.field("Query.hang")
    def hang(root: Any, info: Any, id: int) -> Any:
        return anyql.loader(info, load_hang).load(id)

    schema.field("Query.onTheFly")(lambda root, info, ids, keyed: [(i, keyed) for i in ids])

    @schema.field("Named.name")
    def named_name(root: tuple[int, bool], info: Any) -> Any:
        id, keyed = root

        def made_here(keys: list[int]) -> list[str]:  # a new function on every call
            world.calls.append(("made here", list(keys)))
            return [f"user{key}" for key in keys]

        key = "made here" if keyed else None
        return anyql.loader(info, made_here, key=key).load(id)

    @schema.field("Query.contextType")
    async def context_type(root: Any, info: Any) -> str:
        await users(info).load(1)
        return type(info.context).__name__

    async def watch(root: Any, info: Any, id: int) -> AsyncIterator[int]:
        loader = users(info)
        world.source_saw.append((await loader.load(id))["name"])
        yield id
        async for _ in world.go:
            # the source's loads share the operation's scope: cached since its first load
            world.source_saw.append((await loader.load(id))["name"])
            yield id

    schema.field("Subscription.watch")(watch)
    schema.field("Subscription.sharedWatch", shared=True)(watch)
    schema.field("Watched.id")(lambda id, info: id)

    @schema.field("Watched.stuck")
    def watched_stuck(id: int, info: Any) -> Any:
        return anyql.loader(info, load_hang).load(id)

    @schema.field("Watched.name")
    async def watched_name(id: int, info: Any) -> str:
        return str((await users(info).load(id))["name"])

    return schema


@pytest.fixture
async def world() -> AsyncIterator[World]:
    world = World()
    with world.go_in, world.go:
        yield world


@pytest.fixture
def app(world: World) -> GraphQL:
    return GraphQL(make_schema(world), mask_errors=False)


Run = Callable[..., Any]


@asynccontextmanager
async def runner(via: str, app: GraphQL) -> AsyncIterator[Run]:
    """``run(query, variables=None)``: each call one operation, over ``via``."""
    if via == "engine":
        engine = Engine(app.schema, limits=app.limits)

        async def run(query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
            prepared = engine.prepare(OperationRequest(query, variables=variables))
            return await engine.execute(prepared, context=None)

        yield run
        return
    async with TestClient(app) as client:
        if via == "http":
            yield client.query
        else:
            async with client.websocket() as socket:
                yield socket.query


VIAS = ["http", "websocket", "engine"]

LEVELS = """
{ posts(n: $n) { id title author { id name friends { id name friends { id name } } } } }
""".replace("$n", "%d")


def check_levels(world: World, n: int, result: dict[str, Any]) -> None:
    """One titles call and one users call per level (authors, friends, their friends)."""
    assert "errors" not in result, result
    posts = result["data"]["posts"]
    assert [post["id"] for post in posts] == list(range(n))
    assert posts[-1]["author"]["friends"][0]["friends"][1]["name"] == (
        f"user{(n - 1) % AUTHORS + 50 + 51}"
    )
    [titles] = world.keys_of("titles")
    assert sorted(titles) == list(range(n))
    authors = sorted({post % AUTHORS for post in range(n)})
    friends = sorted({u + d for u in authors for d in (50, 51)})
    friends_of_friends = sorted({u + d for u in friends for d in (50, 51)} - set(friends))
    levels = world.keys_of("users")
    assert [sorted(keys) for keys in levels] == [authors, friends, friends_of_friends], levels
    for keys in levels:
        assert len(keys) == len(set(keys))  # duplicates loaded once


# --- batching ---------------------------------------------------------------------------


@pytest.mark.parametrize("via", VIAS)
@pytest.mark.parametrize("cache", [True, False])
async def test_a_list_level_with_sync_and_async_resolvers_is_one_batch(
    world: World, app: GraphQL, via: str, cache: bool
) -> None:
    """Posts whose one loaded field (author) is resolved sync for even posts and async
    (two checkpoints, then the load) for odd ones: one users call for the whole level,
    each author once (also with cache=False: duplicates of one batch are loaded once)."""
    world.options["cache"] = cache
    query = "{ posts(n: %d) { id author { id name } } }"
    async with runner(via, app) as run:
        for n in (1, 2, 7, 40):
            world.calls.clear()
            result = await run(query % n)
            assert "errors" not in result, result
            authors = [post["author"]["id"] for post in result["data"]["posts"]]
            assert authors == [post % AUTHORS for post in range(n)]
            [keys] = world.keys_of("users")
            assert sorted(keys) == sorted(set(authors))


@pytest.mark.autojump
async def test_a_big_level_is_one_batch_whatever_the_scheduling_order(
    world: World, app: GraphQL, anyio_backend: Any
) -> None:
    """300 posts, each with a reader of its own, resolved sync for a third of them and async
    (two checkpoints, then the load) for the others; ten times, in Trio's random order."""
    if anyio_backend[0] == "trio":
        world.options = {}  # the defaults: the max delay is on the mock clock
    engine = Engine(app.schema)
    prepared = engine.prepare(OperationRequest("{ posts(n: 300) { id reader { id } } }"))
    for _ in range(10):
        world.calls.clear()
        result = await engine.execute(prepared, context=None)
        readers = [post["reader"]["id"] for post in result["data"]["posts"]]
        assert readers == [1000 + post for post in range(300)]
        [keys] = world.keys_of("users")
        assert sorted(keys) == readers


@pytest.mark.parametrize("via", VIAS)
async def test_nested_levels_with_one_loaded_field_each_are_one_batch_per_level(
    world: World, app: GraphQL, via: str
) -> None:
    """posts -> author -> friends -> friends, sync and async resolvers mixed at each level:
    one users call per level, repeated to give Trio's random order its chances."""
    query = "{ posts(n: %d) { id author { id name friends { id name friends { id name } } } } }"
    async with runner(via, app) as run:
        for n in (3, 30, 120, 30, 30):
            world.calls.clear()
            result = await run(query % n)
            assert "errors" not in result, result
            authors = sorted({post % AUTHORS for post in range(n)})
            friends = sorted({u + d for u in authors for d in (50, 51)})
            fof = sorted({u + d for u in friends for d in (50, 51)} - set(friends))
            levels = [sorted(keys) for keys in world.keys_of("users")]
            assert levels == [authors, friends, fof]


@pytest.mark.parametrize("checkpoints", [2, 3])
@pytest.mark.parametrize("via", VIAS)
async def test_a_level_of_items_with_several_loaded_fields_is_one_batch_per_loader(
    world: World,
    app: GraphQL,
    via: str,
    checkpoints: int,
    anyio_backend: Any,
    request: pytest.FixtureRequest,
) -> None:
    """Posts with two loaded fields each (title, author), then author -> friends ->
    friends; sync resolvers and async ones that await ``checkpoints`` checkpoints first."""
    world.checkpoints = checkpoints
    async with runner(via, app) as run:
        for n in [40] + [10] * 9:
            world.calls.clear()
            check_levels(world, n, await run(LEVELS % n))


async def test_load_registers_its_key_when_called() -> None:
    """Neither load is awaited when the batch starts: both keys are in it already."""
    started = anyio.Event()
    seen: list[list[int]] = []

    async def batch_load(keys: list[int]) -> list[int]:
        seen.append(list(keys))
        started.set()
        return [key * 10 for key in keys]

    async with loader_scope():
        users = DataLoader(batch_load)
        first, second = users.load(1), users.load(2)
        await started.wait()
        assert seen == [[1, 2]]
        assert (await second, await first) == (20, 10)
    assert seen == [[1, 2]]


async def test_loads_that_keep_coming_postpone_the_dispatch() -> None:
    """A new load every two checkpoints, 60 times: idle_checkpoints=5 never run out."""
    seen: list[list[int]] = []

    def batch_load(keys: list[int]) -> list[int]:
        seen.append(list(keys))
        return keys

    async with loader_scope():
        users = DataLoader(batch_load, idle_checkpoints=5, max_delay=60)
        pending = []
        for key in range(60):
            pending.append(users.load(key))
            await anyio.lowlevel.checkpoint()
            await anyio.lowlevel.checkpoint()
        assert [await each for each in pending] == list(range(60))
    assert seen == [list(range(60))]


async def test_idle_checkpoints_is_configurable() -> None:
    """The same loads with idle_checkpoints=1: the scope goes quiet between them."""
    seen: list[list[int]] = []

    def batch_load(keys: list[int]) -> list[int]:
        seen.append(list(keys))
        return keys

    async with loader_scope():
        users = DataLoader(batch_load, idle_checkpoints=1, max_delay=60)
        for key in range(5):
            assert await users.load(key) == key
            for _ in range(5):
                await anyio.lowlevel.checkpoint()
    assert seen == [[0], [1], [2], [3], [4]]


async def test_max_delay_dispatches_while_loads_keep_coming() -> None:
    """Loads on every checkpoint, idle_checkpoints never reached: the max delay (real
    clock on both backends; an autojumping clock never moves while tasks run) dispatches."""
    called = anyio.Event()
    seen: list[list[int]] = []

    def batch_load(keys: list[int]) -> list[int]:
        seen.append(list(keys))
        called.set()
        return keys

    async with loader_scope():
        users = DataLoader(batch_load, idle_checkpoints=10**9, max_delay=0.01)
        pending = []
        with anyio.fail_after(30):
            while not called.is_set():
                pending.append(users.load(len(pending)))
                await anyio.lowlevel.checkpoint()
        assert [await each for each in pending] == list(range(len(pending)))
    # dispatched while loads kept coming (idle_checkpoints could not run out)
    assert seen == [list(range(len(pending)))]


@pytest.mark.parametrize(
    "options",
    [{"max_batch_size": 0}, {"idle_checkpoints": 0}, {"max_delay": 0}, {"max_delay": -1}],
)
async def test_bad_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(options))):
        DataLoader(lambda keys: keys, **options)


# --- chunks, and nothing outliving the request ------------------------------------------


@pytest.mark.autojump
async def test_chunks_of_max_batch_size_load_concurrently() -> None:
    """Ten keys, chunks of three: four calls; the first chunk waits until the last one has
    started, which only a concurrent call can do (else fail_after ends the deadlock)."""
    seen: list[list[int]] = []
    last_started = anyio.Event()

    async def batch_load(keys: list[int]) -> list[int]:
        seen.append(list(keys))
        if 9 in keys:
            last_started.set()
        if 0 in keys:
            await last_started.wait()
        return [key * 10 for key in keys]

    async with loader_scope():
        users = DataLoader(batch_load, max_batch_size=3)
        with anyio.fail_after(10):
            assert await users.load_many(list(range(10))) == [key * 10 for key in range(10)]
    assert sorted(seen) == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]


@pytest.mark.parametrize("via", VIAS)
async def test_a_batch_nobody_awaits_is_cancelled_when_the_request_ends(
    world: World, app: GraphQL, via: str
) -> None:
    """A resolver registers a load it never awaits; batch_load sleeps forever: once the
    response is there, batch_load was cancelled and its finally ran."""
    async with runner(via, app) as run:
        result = await run("{ fireAndForget(id: 1) batchStarted }")
        assert result == {"data": {"fireAndForget": True, "batchStarted": True}}
        assert world.hang_cleanups == 1
        assert world.keys_of("hang") == [[1]]


@pytest.mark.autojump
@pytest.mark.parametrize("via", VIAS)
async def test_a_hanging_batch_is_cancelled_by_the_operation_timeout(
    world: World, via: str, anyio_backend: Any
) -> None:
    timeout = 5.0 if anyio_backend[0] == "trio" else 0.05
    app = GraphQL(make_schema(world), limits=Limits(operation_timeout=timeout))
    async with runner(via, app) as run:
        result = await run("{ hang(id: 1) }")
        assert result["data"] is None
        assert "timed out" in result["errors"][0]["message"]
        assert world.hang_cleanups == 1


async def test_a_scope_cancels_its_batches_when_it_ends(world: World) -> None:
    async with loader_scope():
        hang = DataLoader(make_hang(world))
        hang.load(1)
        await world.hang_started.wait()
    assert world.hang_cleanups == 1


def make_hang(world: World) -> Callable[[list[int]], Any]:
    async def hang(keys: list[int]) -> list[int]:
        world.hang_started.set()
        try:
            await anyio.sleep_forever()
        finally:
            world.hang_cleanups += 1
            world.hang_cleaned.set()
        raise AssertionError("unreachable")  # pragma: no cover

    return hang


# --- duplicates and the cache -----------------------------------------------------------


def recording(seen: list[list[Any]], value: Callable[[Any], Any] = lambda key: key * 10) -> Any:
    async def batch_load(keys: list[Any]) -> list[Any]:
        seen.append(list(keys))
        await anyio.lowlevel.checkpoint()
        return [value(key) for key in keys]

    return batch_load


@pytest.mark.parametrize("cache", [True, False])
async def test_duplicate_keys_of_one_batch_are_loaded_once(cache: bool) -> None:
    seen: list[list[int]] = []
    async with loader_scope():
        users = DataLoader(recording(seen), cache=cache)
        assert await users.load_many([1, 2, 1, 3, 2, 1]) == [10, 20, 10, 30, 20, 10]
        first, again = users.load(4), users.load(4)
        assert (await first, await again) == (40, 40)
    assert seen == [[1, 2, 3], [4]]


async def test_with_the_cache_a_later_load_does_not_call_batch_load_again() -> None:
    seen: list[list[int]] = []
    async with loader_scope():
        users = DataLoader(recording(seen))
        assert await users.load(1) == 10
        assert await users.load_many([1, 2]) == [10, 20]
        assert await users.load(1) == 10
    assert seen == [[1], [2]]


async def test_without_the_cache_a_later_load_calls_batch_load_again() -> None:
    seen: list[list[int]] = []
    async with loader_scope():
        users = DataLoader(recording(seen), cache=False)
        assert await users.load(1) == 10
        assert await users.load_many([1, 2]) == [10, 20]
    assert seen == [[1], [1, 2]]


@pytest.mark.parametrize("via", VIAS)
async def test_in_one_operation_a_key_is_loaded_once(world: World, app: GraphQL, via: str) -> None:
    query = "{ a: user(id: 1) { name } b: users(ids: [1, 2, 1]) { name } }"
    async with runner(via, app) as run:
        result = await run(query)
    assert result == {
        "data": {
            "a": {"name": "user1"},
            "b": [{"name": "user1"}, {"name": "user2"}, {"name": "user1"}],
        }
    }
    assert [sorted(keys) for keys in world.keys_of("users")] == [[1, 2]]


# --- errors -----------------------------------------------------------------------------


async def test_a_wrong_number_of_values_fails_every_waiter_clearly() -> None:
    async def two_short(keys: list[int]) -> list[int]:
        return keys[:-2]

    async with loader_scope():
        users = DataLoader(two_short)
        pending = [users.load(key) for key in range(5)]
        for each in pending:
            with pytest.raises(ValueError, match=r"two_short.*returned 3 values for 5 keys"):
                await each


@pytest.mark.parametrize("via", VIAS)
async def test_a_wrong_number_of_values_is_an_error_on_every_field(
    world: World, app: GraphQL, via: str
) -> None:
    world.short = True
    async with runner(via, app) as run:
        result = await run("{ users(ids: [4, 5, 6]) { id } }")
    assert result["data"] == {"users": [None, None, None]}
    errors = sorted(result["errors"], key=lambda error: error["path"])
    assert [error["path"] for error in errors] == [["users", 0], ["users", 1], ["users", 2]]
    for error in errors:
        assert "returned 2 values for 3 keys" in error["message"]
        assert error["locations"] == [{"line": 1, "column": 3}]


async def test_an_exception_value_fails_only_its_key_and_is_not_cached() -> None:
    seen: list[list[int]] = []
    failing = {2}

    def value(key: int) -> Any:
        return LookupError(f"no {key}") if key in failing else key * 10

    async with loader_scope():
        users = DataLoader(recording(seen, value))
        one, two, three = users.load(1), users.load(2), users.load(3)
        assert await one == 10
        with pytest.raises(LookupError, match="no 2"):
            await two
        assert await three == 30
        failing.clear()
        assert await users.load_many([1, 2, 3]) == [10, 20, 30]  # 2 retried, 1 and 3 cached
    assert seen == [[1, 2, 3], [2]]


async def test_a_raising_batch_load_fails_every_key_and_caches_nothing() -> None:
    seen: list[list[int]] = []
    down = True

    async def batch_load(keys: list[int]) -> list[int]:
        seen.append(list(keys))
        await anyio.lowlevel.checkpoint()
        if down:
            raise ConnectionError("store down")
        return [key * 10 for key in keys]

    async with loader_scope():
        users = DataLoader(batch_load)
        pending = [users.load(key) for key in (1, 2, 3)]
        for each in pending:
            with pytest.raises(ConnectionError, match="store down"):
                await each
        down = False
        assert await users.load_many([1, 2, 3]) == [10, 20, 30]
    assert seen == [[1, 2, 3], [1, 2, 3]]


@pytest.mark.parametrize("returned", [{1: 10, 2: 20}, 42, None])
async def test_a_mapping_or_a_non_sequence_fails_every_key_with_a_type_error(
    returned: Any,
) -> None:
    calls = 0

    async def batch_load(keys: list[int]) -> Any:
        nonlocal calls
        calls += 1
        return returned if calls == 1 else [key * 10 for key in keys]

    async with loader_scope():
        users = DataLoader(batch_load)
        pending = [users.load(1), users.load(2)]
        for each in pending:
            with pytest.raises(TypeError, match=r"batch_load.*returned .*sequence of values"):
                await each
        assert await users.load_many([1, 2]) == [10, 20]  # nothing was cached
    assert calls == 2


async def test_a_raising_chunk_fails_its_own_keys_only() -> None:
    async def batch_load(keys: list[int]) -> list[int]:
        await anyio.lowlevel.checkpoint()
        if 0 in keys:
            raise ConnectionError("first chunk failed")
        return [key * 10 for key in keys]

    async with loader_scope():
        users = DataLoader(batch_load, max_batch_size=2)
        pending = [users.load(key) for key in range(4)]
        for each in pending[:2]:
            with pytest.raises(ConnectionError):
                await each
        assert [await each for each in pending[2:]] == [20, 30]


@pytest.mark.parametrize("via", VIAS)
async def test_load_errors_keep_graphql_paths_and_locations(
    world: World, app: GraphQL, via: str
) -> None:
    world.missing = {2, 3}
    query = """
    {
      users(ids: [1, 2]) { id }
      posts(n: 4) {
        id
        author { name }
      }
    }
    """
    async with runner(via, app) as run:
        result = await run(query)
    data = result["data"]
    assert data["users"] == [{"id": 1}, None]
    assert [post["author"] for post in data["posts"]] == [
        {"name": "user0"},
        {"name": "user1"},
        None,
        None,
    ]
    errors = sorted(result["errors"], key=lambda error: [str(p) for p in error["path"]])
    assert errors == [
        {
            "message": "no user 2",
            "locations": [{"line": 6, "column": 9}],
            "path": ["posts", 2, "author"],
        },
        {
            "message": "no user 3",
            "locations": [{"line": 6, "column": 9}],
            "path": ["posts", 3, "author"],
        },
        {"message": "no user 2", "locations": [{"line": 3, "column": 7}], "path": ["users", 1]},
    ]


@pytest.mark.parametrize("via", VIAS)
async def test_a_raising_batch_load_is_an_error_on_each_field(
    world: World, app: GraphQL, via: str
) -> None:
    world.explode = True
    async with runner(via, app) as run:
        result = await run("{ a: user(id: 1) { id } b: user(id: 2) { id } }")
    assert result["data"] == {"a": None, "b": None}
    assert sorted((e["path"], e["message"]) for e in result["errors"]) == [
        (["a"], "the user store is down"),
        (["b"], "the user store is down"),
    ]


async def test_load_errors_are_masked_unless_they_are_graphql_errors(world: World) -> None:
    """The production default masks an unexpected exception; a GraphQLError goes as is."""
    world.missing, world.private = {1}, {2}
    async with TestClient(GraphQL(make_schema(world))) as client:
        result = await client.query("{ users(ids: [1, 2]) { id } }")
    assert result["data"] == {"users": [None, None]}
    assert sorted(result["errors"], key=lambda error: error["path"]) == [
        {
            "message": "Internal server error",
            "locations": [{"line": 1, "column": 3}],
            "path": ["users", 0],
        },
        {
            "message": "user 2 is private",
            "locations": [{"line": 1, "column": 3}],
            "path": ["users", 1],
            "extensions": {"code": "FORBIDDEN"},
        },
    ]


# --- sync and async batch functions -----------------------------------------------------


async def test_a_sync_batch_load_runs_inline_on_the_event_loop() -> None:
    threads: list[int] = []

    def batch_load(keys: list[int]) -> tuple[int, ...]:
        threads.append(threading.get_ident())
        return tuple(key + 1 for key in keys)  # any sequence

    async with loader_scope():
        users = DataLoader(batch_load)
        assert await users.load_many([1, 2]) == [2, 3]
    assert threads == [threading.get_ident()]


async def test_an_async_batch_load_works() -> None:
    async def batch_load(keys: list[int]) -> list[int]:
        await anyio.lowlevel.checkpoint()
        return [key + 1 for key in keys]

    async with loader_scope():
        assert await DataLoader(batch_load).load_many([1, 2]) == [2, 3]


# --- cancellation -----------------------------------------------------------------------


async def test_a_cancelled_waiter_leaves_and_the_batch_goes_on_for_the_others() -> None:
    seen: list[list[int]] = []
    started, go = anyio.Event(), anyio.Event()
    cleanups: list[str] = []

    async def batch_load(keys: list[int]) -> list[int]:
        seen.append(sorted(keys))
        started.set()
        try:
            await go.wait()
        finally:
            cleanups.append("finally")
        return [key * 10 for key in keys]

    results: dict[int, Any] = {}
    scopes: dict[int, anyio.CancelScope] = {}
    async with loader_scope():
        users = DataLoader(batch_load)

        async def wait_for(key: int) -> None:
            with anyio.CancelScope() as scopes[key]:
                results[key] = await users.load(key)
                return
            results[key] = "cancelled"

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(wait_for, 1)
            task_group.start_soon(wait_for, 2)
            await started.wait()
            scopes[1].cancel()
            go.set()
        assert await users.load(1) == 10  # loaded for the others, so cached
    assert results == {1: "cancelled", 2: 20}
    assert seen == [[1, 2]]
    assert cleanups == ["finally"]


async def test_a_load_not_yet_awaited_keeps_its_batch_going() -> None:
    """Load 1 is awaited and cancelled; load 2, of the same batch, is made but awaited
    only afterwards: the batch was not cancelled for it."""
    started, gate = anyio.Event(), anyio.Event()
    seen: list[list[int]] = []

    async def batch_load(keys: list[int]) -> list[int]:
        seen.append(sorted(keys))
        started.set()
        await gate.wait()
        return [key * 10 for key in keys]

    async with loader_scope():
        users = DataLoader(batch_load)
        later = None
        async with anyio.create_task_group() as task_group:

            async def waiter() -> None:
                nonlocal later
                first = users.load(1)
                later = users.load(2)  # made now, awaited by the test below
                await first

            task_group.start_soon(waiter)
            await started.wait()
            task_group.cancel_scope.cancel()
        gate.set()
        assert later is not None
        assert await later == 20
        assert await users.load(1) == 10  # loaded for load 2, so cached
    assert seen == [[1, 2]]


async def test_when_the_last_waiter_leaves_the_batch_is_cancelled_and_cleans_up(
    world: World,
) -> None:
    async with loader_scope():
        hang = DataLoader(make_hang(world))
        async with anyio.create_task_group() as task_group:

            async def wait() -> None:
                await hang.load(1)

            task_group.start_soon(wait)
            await world.hang_started.wait()
            task_group.cancel_scope.cancel()
        with anyio.fail_after(5):
            await world.hang_cleaned.wait()  # the cleanup ran while the scope goes on
        assert world.hang_cleanups == 1
        world.hang_started = anyio.Event()
        hang.load(1)  # nothing was cached: loaded again
        await world.hang_started.wait()
    assert world.hang_cleanups == 2


@pytest.mark.parametrize("phase", ["waiting to dispatch", "loading"])
async def test_a_load_right_after_the_last_waiter_left_gets_its_value(phase: str) -> None:
    """The only waiter is cancelled and, in the same step (no checkpoint), its task loads
    again (and lets batch_load finish): that load must get its value."""
    started, gate = anyio.Event(), anyio.Event()

    async def batch_load(keys: list[int]) -> list[int]:
        started.set()
        await gate.wait()
        return [key * 10 for key in keys]

    # "waiting to dispatch": the dispatch task counts idle checkpoints, the batch is open.
    # "loading": batch_load runs, and the key is cached as that batch's.
    waiting = phase == "waiting to dispatch"
    registered = anyio.Event()
    outcome: list[Any] = []
    async with loader_scope():
        users = DataLoader(batch_load, idle_checkpoints=50 if waiting else 3, max_delay=60)

        async def waiter(scope: anyio.CancelScope) -> None:
            with scope:
                load = users.load(1)
                registered.set()
                await load
            again = users.load(2 if waiting else 1)  # synchronously after leaving
            gate.set()
            try:
                outcome.append(await again)
            except RuntimeError as error:
                outcome.append(str(error))

        scope = anyio.CancelScope()
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(waiter, scope)
            await registered.wait()
            if waiting:
                for _ in range(10):  # the dispatch task runs (it needs 50 quiet ones)
                    await anyio.lowlevel.checkpoint()
                assert not started.is_set()
            else:
                await started.wait()
            scope.cancel()
    assert outcome == [20 if waiting else 10]


async def test_a_waiter_cancelled_before_the_dispatch_starts_stops_the_batch(
    request: pytest.FixtureRequest, anyio_backend: Any
) -> None:
    """Cancelled at once, maybe before the dispatch task first ran: nobody waits, so
    batch_load must not be called."""
    seen: list[list[int]] = []
    async with loader_scope():
        for _ in range(20):  # on Trio, whether the dispatch task ran first is random
            users = DataLoader(recording(seen))
            with anyio.CancelScope() as scope:
                scope.cancel()
                await users.load(1)
            other: list[list[int]] = []
            # another batch, dispatched no earlier than that one would have been
            assert await DataLoader(recording(other)).load(2) == 20
            assert other == [[2]]
    assert seen == []


async def test_a_loader_shared_by_two_scopes_never_waits_on_the_other_scopes_batch() -> None:
    """Scope A's batch is loading when scope B loads the same key: B does not wait on it
    (it is cancelled when A gives up and A's scope ends), B's key is loaded for B."""
    started, gate = anyio.Event(), anyio.Event()
    seen: list[list[int]] = []
    cleanups: list[list[int]] = []

    async def batch_load(keys: list[int]) -> list[int]:
        seen.append(list(keys))
        started.set()
        try:
            await gate.wait()
        finally:
            cleanups.append(list(keys))
        return [key * 10 for key in keys]

    shared = DataLoader(batch_load)
    a_scope = anyio.CancelScope()
    a_left, b_loaded = anyio.Event(), anyio.Event()
    outcome: list[Any] = []

    async def a() -> None:
        async with loader_scope():
            with a_scope:
                await shared.load(1)
        a_left.set()

    async def b() -> None:
        async with loader_scope():
            await started.wait()
            load = shared.load(1)
            b_loaded.set()
            outcome.append(await load)

    async with anyio.create_task_group() as task_group:
        task_group.start_soon(a)
        task_group.start_soon(b)
        await b_loaded.wait()
        a_scope.cancel()  # A gives up (its client went away); its scope ends
        await a_left.wait()
        assert cleanups == [[1]]  # A's batch was cancelled with A
        gate.set()
    assert outcome == [10]
    assert seen == [[1], [1]]
    async with loader_scope():
        assert await shared.load(1) == 10  # B's finished batch is cached for the object


# --- scopes -----------------------------------------------------------------------------


@pytest.mark.parametrize("via", VIAS)
async def test_two_operations_never_share_a_cache(world: World, app: GraphQL, via: str) -> None:
    """Two HTTP requests, two operations on one WebSocket, two executions: each loads."""
    async with runner(via, app) as run:
        assert await run("{ user(id: 1) { name } }") == {"data": {"user": {"name": "user1"}}}
        world.names[1] = "renamed"
        assert await run("{ user(id: 1) { name } }") == {"data": {"user": {"name": "renamed"}}}
    assert world.keys_of("users") == [[1], [1]]


async def test_each_operation_of_an_http_batch_has_its_own_scope(world: World) -> None:
    app = GraphQL(make_schema(world), batching=True)
    async with TestClient(app) as client:
        response = await client.request(
            "POST",
            headers=[("content-type", "application/json")],
            body=b'[{"query": "{ user(id: 1) { id } }"}, {"query": "{ user(id: 1) { id } }"}]',
        )
    assert response.status == 200, response.text
    assert response.json() == [{"data": {"user": {"id": 1}}}] * 2
    assert world.keys_of("users") == [[1], [1]]


SUBSCRIBE_VIAS = ["websocket", "sse", "engine"]


@asynccontextmanager
async def subscription(
    via: str, app: GraphQL, query: str
) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
    if via == "engine":
        engine = Engine(app.schema)
        async with engine.subscribe(engine.prepare(OperationRequest(query)), context=None) as it:
            yield it
        return
    async with TestClient(app) as client:
        if via == "sse":
            async with client.subscribe_sse(query) as results:
                yield results
        else:
            async with client.websocket() as socket, socket.subscribe(query) as results:
                yield results


@pytest.mark.parametrize(
    ("via", "field"),
    # a shared subscription needs the app's hubs: not through the Engine alone
    [(via, "watch") for via in SUBSCRIBE_VIAS]
    + [(via, "sharedWatch") for via in SUBSCRIBE_VIAS if via != "engine"],
)
async def test_each_subscription_event_has_a_fresh_scope(
    world: World, app: GraphQL, via: str, field: str
) -> None:
    """The source loads in the operation's scope (its later loads are cached); each event's
    execution loads anew, so a value changed between events is seen."""
    world.names[7] = "Ada"
    query = f"subscription {{ {field}(id: 7) {{ id name }} }}"
    async with subscription(via, app, query) as results:
        for name in ("Ada", "Grace", "Linus", "Barbara"):
            world.names[7] = name
            if name != "Ada":  # the source yields its first event at once
                await world.go_in.send(None)
            with anyio.fail_after(10):
                assert await anext(results) == {"data": {field: {"id": 7, "name": name}}}
            if field == "sharedWatch":
                assert app.server is not None and len(app.server.fanout.hubs) == 1
    assert world.source_saw == ["Ada"] * 4  # the first load, then cached three times
    assert world.keys_of("users") == [[7]] * 5  # the source once, each event once


@pytest.mark.parametrize("via", ["websocket", "engine"])
async def test_events_of_a_subscription_batch_their_own_loads(
    world: World, app: GraphQL, via: str
) -> None:
    """Inside one event, the level still batches: two fields of one event load once."""
    query = "subscription { watch(id: 3) { a: name b: name id } }"
    async with subscription(via, app, query) as results:
        with anyio.fail_after(10):
            result = await anext(results)
    assert result == {"data": {"watch": {"a": "user3", "b": "user3", "id": 3}}}
    assert world.keys_of("users") == [[3], [3]]  # the source's, then the event's one call


async def test_outside_any_scope_loader_and_load_raise_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match=r"no loader scope here.*loader_scope"):
        anyql.loader(None, recording([]))
    users = DataLoader(recording([]))
    with pytest.raises(RuntimeError, match=r"no loader scope here.*loader_scope"):
        users.load(1)  # raised by the call itself, not when awaited


@pytest.mark.parametrize("via", VIAS)
async def test_no_scope_is_left_behind_after_an_operation(
    world: World, app: GraphQL, via: str
) -> None:
    async with runner(via, app) as run:
        assert (await run("{ user(id: 1) { id } }"))["data"] == {"user": {"id": 1}}
        with pytest.raises(RuntimeError, match="no loader scope"):
            anyql.loader(None, recording([]))
    async with loader_scope():
        anyql.loader(None, recording([]))
    with pytest.raises(RuntimeError, match="no loader scope"):
        anyql.loader(None, recording([]))


@pytest.mark.parametrize("made", [("plain", "tuple"), None, 42])
async def test_loader_works_whatever_the_context_object(world: World, made: Any) -> None:
    app = GraphQL(make_schema(world), context=lambda default: made)
    async with TestClient(app) as client:
        result = await client.query("{ contextType user(id: 1) { name } }")
        async with client.websocket() as socket:
            over_ws = await socket.query("{ contextType }")
    assert over_ws == {"data": {"contextType": type(made).__name__}}
    assert result == {"data": {"contextType": type(made).__name__, "user": {"name": "user1"}}}


async def test_an_exception_leaves_a_loader_scope_as_it_is(world: World) -> None:
    """Not in an exception group, also while a batch of the scope is running."""
    with pytest.raises(LookupError, match="from the body"):
        async with loader_scope():
            DataLoader(make_hang(world)).load(1)
            await world.hang_started.wait()
            raise LookupError("from the body")
    assert world.hang_cleanups == 1


@pytest.mark.parametrize("via", ["websocket", "sse"])
async def test_an_events_batches_are_cancelled_when_the_subscription_ends(
    world: World, app: GraphQL, via: str
) -> None:
    """The first event's field waits on a batch that never ends; the client leaves: once
    the client has seen the server close, the batch's finally has run."""
    query = "subscription { watch(id: 1) { stuck } }"
    async with TestClient(app) as client:
        if via == "sse":
            async with client.subscribe_sse(query):
                await world.hang_started.wait()
        else:
            async with client.websocket() as socket, socket.subscribe(query):
                await world.hang_started.wait()
        assert world.hang_cleanups == 1


# --- identity ---------------------------------------------------------------------------


def load_one(keys: list[int]) -> list[int]:
    return keys


def load_other(keys: list[int]) -> list[int]:
    return keys


async def test_loaders_are_found_by_function_or_by_key() -> None:
    async with loader_scope():
        first = anyql.loader(None, load_one)
        assert anyql.loader(object(), load_one) is first
        assert anyql.loader(None, load_other) is not first
        named = anyql.loader(None, lambda keys: keys, key="users")
        assert anyql.loader(None, lambda keys: keys, key="users") is named
        assert named is not first
        sized = anyql.loader(None, load_other, key="sized", max_batch_size=2)
        assert sized.max_batch_size == 2
        # options count when the loader is made only
        assert anyql.loader(None, load_other, key="sized", max_batch_size=5) is sized
        assert sized.max_batch_size == 2
    async with loader_scope():
        assert anyql.loader(None, load_one) is not first  # a new scope, new loaders


async def test_a_module_level_batch_function_does_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        async with loader_scope():
            for _ in range(3):
                anyql.loader(None, load_one)
                anyql.loader(None, lambda keys: keys, key="named")


@pytest.mark.parametrize("via", VIAS)
async def test_a_batch_function_made_in_the_resolver_warns_and_does_not_batch(
    world: World, app: GraphQL, via: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dataloader_module, "_warned", set())  # warned once per process
    async with runner(via, app) as run:
        with pytest.warns(RuntimeWarning, match="made_here.*pass key=") as caught:
            result = await run("{ onTheFly(ids: [1, 2, 3], keyed: false) { name } }")
    assert result == {"data": {"onTheFly": [{"name": f"user{i}"} for i in (1, 2, 3)]}}
    assert sorted(world.keys_of("made here")) == [[1], [2], [3]]
    assert all(warning.filename == __file__ for warning in caught)  # points at the resolver


@pytest.mark.parametrize("via", VIAS)
async def test_a_batch_function_made_in_the_resolver_batches_with_a_key(
    world: World, app: GraphQL, via: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dataloader_module, "_warned", set())
    async with runner(via, app) as run:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            result = await run("{ onTheFly(ids: [1, 2, 3], keyed: true) { name } }")
    assert result == {"data": {"onTheFly": [{"name": f"user{i}"} for i in (1, 2, 3)]}}
    assert [sorted(keys) for keys in world.keys_of("made here")] == [[1, 2, 3]]


async def test_a_partial_made_anew_warns_and_batches_with_a_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(dataloader_module, "_warned", set())
    seen: list[list[int]] = []

    def load_for(tenant: str, keys: list[int]) -> list[str]:
        seen.append(list(keys))
        return [f"{tenant}:{key}" for key in keys]

    async with loader_scope():
        with pytest.warns(RuntimeWarning, match="load_for"):
            loads = [anyql.loader(None, partial(load_for, "a")).load(key) for key in (1, 2)]
        assert [await each for each in loads] == ["a:1", "a:2"]
        assert sorted(seen) == [[1], [2]]  # two loaders: nothing batched
        seen.clear()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            loads = [
                anyql.loader(None, partial(load_for, "a"), key=("for", "a")).load(key)
                for key in (3, 4)
            ]
        assert [await each for each in loads] == ["a:3", "a:4"]
        assert seen == [[3, 4]]


# --- prime, clear, clear_all, load_many, cache_key --------------------------------------


async def test_prime_caches_a_value_unless_the_key_is_cached() -> None:
    seen: list[list[int]] = []
    async with loader_scope():
        users = DataLoader(recording(seen))
        users.prime(1, "primed")
        assert await users.load(1) == "primed"
        users.prime(1, "again")  # primed already
        assert await users.load(1) == "primed"
        assert await users.load(2) == 20
        users.prime(2, "late")  # loaded already
        assert await users.load(2) == 20
        assert await users.load_many([1, 2, 3]) == ["primed", 20, 30]
    assert seen == [[2], [3]]


async def test_clear_forgets_one_key_and_clear_all_every_key() -> None:
    seen: list[list[int]] = []
    async with loader_scope():
        users = DataLoader(recording(seen))
        assert await users.load_many([1, 2, 3]) == [10, 20, 30]
        users.prime(4, "primed")
        users.clear(1)
        users.clear(4)
        users.clear(99)  # unknown: nothing to forget
        assert await users.load_many([1, 2, 4]) == [10, 20, 40]
        users.prime(5, "primed")
        users.clear_all()
        assert await users.load_many([1, 2, 3, 5]) == [10, 20, 30, 50]
    assert seen == [[1, 2, 3], [1, 4], [1, 2, 3, 5]]


async def test_load_many_returns_values_in_order_from_one_batch() -> None:
    seen: list[list[int]] = []
    async with loader_scope():
        users = DataLoader(recording(seen))
        assert await users.load_many([3, 1, 2]) == [30, 10, 20]
        assert await users.load_many([]) == []
    assert seen == [[3, 1, 2]]


async def test_load_many_raises_the_first_keys_error_in_the_order_of_the_keys() -> None:
    def value(key: int) -> Any:
        return LookupError(f"no {key}") if key in (2, 3) else key

    async with loader_scope():
        users = DataLoader(recording([], value))
        with pytest.raises(LookupError, match="no 3"):
            await users.load_many([1, 3, 2])


async def test_cache_key_keys_the_cache_and_batch_load_gets_the_keys_as_loaded() -> None:
    seen: list[list[Any]] = []

    async def batch_load(keys: list[dict[str, Any]]) -> list[int]:
        seen.append(list(keys))
        return [key["id"] * 10 for key in keys]

    async with loader_scope():
        users = DataLoader(batch_load, cache_key=lambda key: key["id"])
        loads = [users.load({"id": 1, "as": "first"}), users.load({"id": 2})]
        loads.append(users.load({"id": 1, "as": "second"}))
        assert [await each for each in loads] == [10, 20, 10]
        assert await users.load({"id": 1, "as": "third"}) == 10  # cached by its cache key
        users.prime({"id": 3}, "primed")
        assert await users.load({"id": 3, "as": "other"}) == "primed"
        users.clear({"id": 1})
        assert await users.load({"id": 1, "as": "fourth"}) == 10
    # the first key given for each cache key, as loaded
    assert seen == [[{"id": 1, "as": "first"}, {"id": 2}], [{"id": 1, "as": "fourth"}]]
