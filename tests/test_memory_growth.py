"""A subscription kept open for thousands of events retains nothing per event.

One subscription runs in lock step with the test: its source yields an event only when the
test asks for one, and the test asks again only after the client has read the result, so
nothing legitimately queues anywhere. Traced bytes (tracemalloc) and GC-tracked objects
are sampled after ``gc.collect()`` every ``SAMPLE_EVERY`` events; the growth per event is
the minimum over a late window less the minimum over an early one, because some state
grows and shrinks in cycles (Trio prunes its deadline heap every thousand stale entries):
a window at least one cycle long holds a trough.

Every path: unshared and shared (a hub), both subprotocols, both backends, the native
transport (TestClient, in process) and hypercorn (ASGI, in process, over TCP), with the
source fed directly or through a broadcast (in memory, and Redis).
"""

from __future__ import annotations

import gc
import sys
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import anyio
import pytest

from anyql import Broadcast, GraphQL, Schema
from anyql.testing import TestClient
from tests.broadcast.helpers import shared_redis_url
from tests.in_process import hypercorn_serving

pytestmark = pytest.mark.anyio

GTWS = "graphql-transport-ws"
LEGACY = "graphql-ws"
EVENTS = 3000
SAMPLE_EVERY = 100
#: Samples in [EARLY, EARLY + WINDOW) and in the last WINDOW events are compared.
EARLY, WINDOW = 500, 1000
#: Before the fix: about 1,000-2,000 bytes and 12-25 objects per event.
MAX_BYTES_PER_EVENT = 64
MAX_BLOCKS_PER_EVENT = 0.5
MAX_OBJECTS_PER_EVENT = 0.5
CHANNEL = "memory-growth"

SDL = """
type Query { ok: Boolean! }
type Item { i: Int! s: String! nested: Item }
type Subscription { items: Item! sharedItems: Item! broadcastItems: Item! }
"""
SELECTION = "{ i s nested { i s nested { i } } }"


def item(index: int) -> dict[str, Any]:
    return {"i": index, "s": f"event {index}", "nested": {"i": -index, "s": "n", "nested": None}}


class LockStep:
    """The app, and the channel through which the test lets its source yield one event."""

    def __init__(self, broadcast: Broadcast | None = None) -> None:
        self.asks, self._asked = anyio.create_memory_object_stream[int](0)
        schema = Schema(SDL)
        schema.field("Query.ok")(lambda root, info: True)
        schema.field("Subscription.items")(self._items)
        schema.field("Subscription.sharedItems", shared=True)(self._items)
        schema.field("Subscription.broadcastItems")(self._broadcast_items)
        settings: dict[str, Any] = {} if broadcast is None else {"broadcast": broadcast}
        self.app = GraphQL(schema, **settings)

    async def _items(self, root: Any, info: Any) -> AsyncIterator[dict[str, Any]]:
        async for index in self._asked:
            yield item(index)

    async def _broadcast_items(self, root: Any, info: Any) -> AsyncIterator[dict[str, Any]]:
        async with info.context.broadcast.subscribe(CHANNEL) as messages:
            yield item(-1)  # subscribed: the test may publish now
            async for message in messages:
                yield message


@dataclass(frozen=True)
class Growth:
    """What one event left behind, on average: memory (in ``unit``) and GC-tracked objects."""

    memory: float
    unit: str
    objects: float

    def assert_flat(self) -> None:
        bound = MAX_BYTES_PER_EVENT if self.unit == "bytes" else MAX_BLOCKS_PER_EVENT
        assert self.memory < bound, f"{self.memory:.1f} {self.unit} retained per event"
        assert self.objects < MAX_OBJECTS_PER_EVENT, f"{self.objects:.2f} objects per event"


async def growth_per_event(step: Callable[[int], Awaitable[None]], *, traced: bool) -> Growth:
    """Run ``step`` ``EVENTS`` times and measure what each event retained.

    With ``traced``, memory is tracemalloc's traced bytes (exact, but it slows Python down
    three- to four-fold); without, it is ``sys.getallocatedblocks()``.
    """
    samples: list[tuple[int, int, int]] = []
    if traced:
        tracemalloc.start()
    try:
        for index in range(1, EVENTS + 1):
            await step(index)
            if index % SAMPLE_EVERY == 0:
                gc.collect()
                memory = tracemalloc.get_traced_memory()[0] if traced else sys.getallocatedblocks()
                samples.append((index, memory, len(gc.get_objects())))
    finally:
        tracemalloc.stop()
    early = [s for s in samples if EARLY <= s[0] < EARLY + WINDOW]
    late = [s for s in samples if s[0] > EVENTS - WINDOW]
    distance = EVENTS - WINDOW - EARLY
    memory = (min(s[1] for s in late) - min(s[1] for s in early)) / distance
    objects = (min(s[2] for s in late) - min(s[2] for s in early)) / distance
    return Growth(memory, "bytes" if traced else "blocks", objects)


async def lock_step_growth(
    client_context: AbstractAsyncContextManager[TestClient],
    lock_step: LockStep,
    field: str,
    subprotocol: str,
    *,
    traced: bool,
) -> Growth:
    async with (
        client_context as client,
        client.websocket(subprotocol=subprotocol) as socket,
        socket.subscribe(f"subscription {{ {field} {SELECTION} }}") as results,
    ):

        async def step(index: int) -> None:
            await lock_step.asks.send(index)
            assert await anext(results) == {"data": {field: item(index)}}

        return await growth_per_event(step, traced=traced)


@pytest.mark.parametrize("subprotocol", [GTWS, LEGACY])
@pytest.mark.parametrize("field", ["items", "sharedItems"])
async def test_native_subscription_retains_nothing_per_event(field: str, subprotocol: str) -> None:
    lock_step = LockStep()
    client = TestClient(lock_step.app)
    traced = subprotocol == GTWS  # tracemalloc's exact bytes once per sharing and backend
    growth = await lock_step_growth(client, lock_step, field, subprotocol, traced=traced)
    growth.assert_flat()


@pytest.mark.parametrize("field", ["items", "sharedItems"])
async def test_asgi_subscription_under_hypercorn_retains_nothing_per_event(
    field: str, anyio_backend_name: str
) -> None:
    lock_step = LockStep()
    async with hypercorn_serving(lock_step.app, anyio_backend_name) as port:
        client = TestClient.connect(f"http://127.0.0.1:{port}/graphql")
        growth = await lock_step_growth(client, lock_step, field, GTWS, traced=False)
    growth.assert_flat()


@pytest.mark.parametrize("broker", ["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def test_broadcast_fed_subscription_retains_nothing_per_event(broker: str) -> None:
    broadcast = Broadcast(shared_redis_url() if broker == "redis" else None)
    app = LockStep(broadcast).app
    async with (
        TestClient(app) as client,
        client.websocket(subprotocol=GTWS) as socket,
        socket.subscribe(f"subscription {{ broadcastItems {SELECTION} }}") as results,
    ):
        assert await anext(results) == {"data": {"broadcastItems": item(-1)}}

        async def step(index: int) -> None:
            await broadcast.publish(CHANNEL, item(index))
            assert await anext(results) == {"data": {"broadcastItems": item(index)}}

        growth = await growth_per_event(step, traced=False)
    growth.assert_flat()


@pytest.mark.parametrize("subprotocol", [GTWS, LEGACY])
async def test_operations_on_one_long_lived_socket_retain_nothing_per_operation(
    subprotocol: str,
) -> None:
    """Thousands of short operations on one socket (the TestClient once kept every id)."""
    lock_step = LockStep()
    async with (
        TestClient(lock_step.app) as client,
        client.websocket(subprotocol=subprotocol) as socket,
    ):

        async def step(index: int) -> None:
            if index % 2:
                assert await socket.query("{ ok }") == {"data": {"ok": True}}
                return
            async with socket.subscribe(f"subscription {{ items {SELECTION} }}") as results:
                await lock_step.asks.send(index)
                assert await anext(results) == {"data": {"items": item(index)}}

        growth = await growth_per_event(step, traced=False)
    growth.assert_flat()
