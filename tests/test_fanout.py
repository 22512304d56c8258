"""Shared subscriptions: one source and one execution per event, whatever the subscribers.

Driven over in-memory sockets (tests/memory_socket.py) inside ``app.running()``, on both
backends. The source is a memory stream the test feeds, so every event is explicit; the
hub's subscriber list is polled (scheduler steps, no clock) to know who is attached.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import Any

import anyio
import pytest
from anyio.streams.memory import MemoryObjectSendStream

import anyql.fanout
from anyql import GraphQL, Limits, Schema
from anyql.app import ServerHandle
from anyql.execution import encode_json_bytes
from tests.memory_socket import Peer, session

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

SDL = """
scalar Blob
type Query { hello: String! }
type Item { value: Int!  detail: String!  blob: Blob }
type Subscription {
  feed(topic: String!): Item!
  stingy(topic: String!): Item!
  patient(topic: String!): Item!
  unshared(topic: String!): Item!
  broken: Item!
}
"""

FEED = "subscription Feed($topic: String!) { feed(topic: $topic) { value detail } }"
BOOM = -1  # fed to a source, makes it raise


class Station:
    """The test's end of every source: the inlets of the running sources, and counters."""

    def __init__(self) -> None:
        self.inlets: dict[str, list[MemoryObjectSendStream[int]]] = {}
        self.starts: dict[str, int] = {}
        self._closed: dict[str, anyio.Event] = {}
        self.detail_calls = 0

    def closed(self, topic: str) -> anyio.Event:
        """Set once a source of ``topic`` has run its ``finally``."""
        return self._closed.setdefault(topic, anyio.Event())

    async def source(self, topic: str) -> AsyncIterator[dict[str, Any]]:
        inlet, outlet = anyio.create_memory_object_stream[int](100)
        self.inlets.setdefault(topic, []).append(inlet)
        self.starts[topic] = self.starts.get(topic, 0) + 1
        try:
            async with outlet:
                async for value in outlet:
                    if value == BOOM:
                        raise RuntimeError("the source failed")
                    yield {"value": value}
        finally:
            self.inlets[topic].remove(inlet)
            inlet.close()
            self.closed(topic).set()

    async def feed(self, topic: str, *values: int) -> None:
        """Send ``values`` to every running source of ``topic`` (waiting for one to run)."""
        await until(lambda: bool(self.inlets.get(topic)))
        for value in values:
            for inlet in list(self.inlets[topic]):
                await inlet.send(value)

    async def end(self, topic: str) -> None:
        """Make every running source of ``topic`` return."""
        await until(lambda: bool(self.inlets.get(topic)))
        for inlet in list(self.inlets[topic]):
            await inlet.aclose()


def make_app(station: Station, **settings: Any) -> GraphQL:
    schema = Schema(SDL)

    @schema.field("Subscription.feed", shared=True)
    def feed(root: Any, info: Any, topic: str) -> AsyncIterator[dict[str, Any]]:
        return station.source(topic)

    @schema.field("Subscription.stingy", shared=True, slow_consumer="drop_oldest")
    def stingy(root: Any, info: Any, topic: str) -> AsyncIterator[dict[str, Any]]:
        return station.source(topic)

    @schema.field("Subscription.patient", shared=True, slow_consumer="block")
    def patient(root: Any, info: Any, topic: str) -> AsyncIterator[dict[str, Any]]:
        return station.source(topic)

    @schema.field("Subscription.unshared")
    def unshared(root: Any, info: Any, topic: str) -> AsyncIterator[dict[str, Any]]:
        return station.source(topic)

    @schema.field("Subscription.broken", shared=True)
    def broken(root: Any, info: Any) -> AsyncIterator[dict[str, Any]]:
        raise ValueError("no source today")

    @schema.field("Item.detail")
    async def detail(item: dict[str, Any], info: Any) -> str:
        station.detail_calls += 1
        await anyio.lowlevel.checkpoint()
        return f"detail {item['value']}"

    @schema.field("Item.blob")
    def blob(item: dict[str, Any], info: Any) -> Any:
        return object()  # a custom scalar passes it through; JSON cannot encode it

    return GraphQL(schema, **settings)


def subscribe(id: str, query: str = FEED, **variables: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"query": query}
    if variables:
        payload["variables"] = variables
    return {"id": id, "type": "subscribe", "payload": payload}


async def until(condition: Callable[[], bool], steps: int = 100_000) -> None:
    """Let other tasks run until ``condition()`` holds (scheduler steps, not time)."""
    for _ in range(steps):
        if condition():
            return
        await anyio.lowlevel.checkpoint()
    raise AssertionError("the condition never held")


def subscriber_count(handle: ServerHandle) -> int:
    return sum(len(hub.subscribers) for hub in handle.fanout.hubs.values())


async def connect(stack: AsyncExitStack, app: GraphQL, count: int, **options: Any) -> list[Peer]:
    peers = []
    for _ in range(count):
        peer = await stack.enter_async_context(session(app, **options))
        assert await peer.init() == {"type": "connection_ack"}
        peers.append(peer)
    return peers


async def subscribe_all(
    handle: ServerHandle, peers: list[Peer], message: dict[str, Any], attached_before: int = 0
) -> None:
    for peer in peers:
        await peer.send(message)
    await until(lambda: subscriber_count(handle) == attached_before + len(peers))


async def receive_raw(peer: Peer) -> str:
    text: str = await peer.receive_text()
    return text


def values_of(frame: dict[str, Any]) -> int:
    assert frame["type"] == "next", frame
    value: int = frame["payload"]["data"]["feed"]["value"]
    return value


async def test_fifty_subscribers_share_one_source_and_one_execution_per_event() -> None:
    station = Station()
    app = make_app(station)
    async with app.running() as handle, AsyncExitStack() as stack:
        peers = await connect(stack, app, 50)
        await subscribe_all(handle, peers, subscribe("s", topic="news"))
        assert len(handle.fanout.hubs) == 1
        await station.feed("news", 1, 2, 3)
        for peer in peers:
            for value in (1, 2, 3):
                assert await peer.receive() == {
                    "id": "s",
                    "type": "next",
                    "payload": {"data": {"feed": {"value": value, "detail": f"detail {value}"}}},
                }
        assert station.starts == {"news": 1}
        assert station.detail_calls == 3


async def test_unshared_field_runs_a_source_and_an_execution_per_subscriber() -> None:
    station = Station()
    app = make_app(station)
    query = 'subscription { unshared(topic: "news") { value detail } }'
    async with app.running() as handle, AsyncExitStack() as stack:
        peers = await connect(stack, app, 5)
        for peer in peers:
            await peer.send(subscribe("s", query))
        await until(lambda: len(station.inlets.get("news", ())) == 5)
        await station.feed("news", 1, 2)
        for peer in peers:
            assert [
                (await peer.receive())["payload"]["data"]["unshared"]["value"] for _ in range(2)
            ] == [1, 2]
        assert handle.fanout.hubs == {}
    assert station.starts == {"news": 5}
    assert station.detail_calls == 10  # the contrast to sharing: once per subscriber and event


async def test_each_event_is_encoded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    encoded: list[Any] = []

    def counting_encode(value: Any) -> bytes:
        encoded.append(value)
        return encode_json_bytes(value)

    monkeypatch.setattr(anyql.fanout, "encode_json_bytes", counting_encode)
    station = Station()
    app = make_app(station)
    async with app.running() as handle, AsyncExitStack() as stack:
        peers = await connect(stack, app, 5)
        await subscribe_all(handle, peers, subscribe("s", topic="news"))
        await station.feed("news", 7, 8)
        for peer in peers:
            assert [values_of(await peer.receive()) for _ in range(2)] == [7, 8]
    assert len(encoded) == 2


async def test_payload_text_is_identical_and_only_the_id_differs() -> None:
    station = Station()
    app = make_app(station)
    ids = ["1", "two", 'q"uote']
    async with app.running() as handle, AsyncExitStack() as stack:
        peers = await connect(stack, app, len(ids))
        for id, peer in zip(ids, peers, strict=True):
            await peer.send(subscribe(id, topic="news"))
        await until(lambda: subscriber_count(handle) == len(ids))
        await station.feed("news", 42)
        texts = [await receive_raw(peer) for peer in peers]
    payloads = set()
    for id, text in zip(ids, texts, strict=True):
        prefix = '{"id":' + json.dumps(id) + ',"type":"next","payload":'
        assert text.startswith(prefix) and text.endswith("}"), text
        payloads.add(text[len(prefix) : -1])
        assert json.loads(text)["id"] == id
    assert payloads == {'{"data":{"feed":{"value":42,"detail":"detail 42"}}}'}


async def test_legacy_and_current_protocol_subscribers_share_one_hub() -> None:
    station = Station()
    app = make_app(station)
    query = 'subscription { feed(topic: "news") { value detail } }'
    async with app.running() as handle, AsyncExitStack() as stack:
        (current,) = await connect(stack, app, 1)
        legacy = await stack.enter_async_context(session(app, "graphql-ws"))
        assert await legacy.init() == {"type": "connection_ack"}
        assert await legacy.receive() == {"type": "ka"}
        await current.send(subscribe("c", query))
        await legacy.send({"id": "l", "type": "start", "payload": {"query": query}})
        await until(lambda: subscriber_count(handle) == 2)
        assert len(handle.fanout.hubs) == 1
        await station.feed("news", 5)
        payload = '{"data":{"feed":{"value":5,"detail":"detail 5"}}}'
        assert await receive_raw(current) == '{"id":"c","type":"next","payload":' + payload + "}"
        assert await receive_raw(legacy) == '{"id":"l","type":"data","payload":' + payload + "}"
        assert station.starts == {"news": 1}


@pytest.mark.parametrize(
    ("first", "second", "hubs"),
    [
        (subscribe("s", topic="a"), subscribe("s", topic="b"), 2),
        (
            subscribe("s", 'subscription { feed(topic: "a") { value } }'),
            subscribe("s", 'subscription { feed(topic: "b") { value } }'),
            2,
        ),
        (
            subscribe("s", topic="a"),
            subscribe("s", 'subscription { feed(topic: "a") { value } }'),
            2,
        ),
        (subscribe("s", topic="a"), subscribe("other-id", topic="a"), 1),
    ],
    ids=["variables", "arguments", "document", "same-operation"],
)
async def test_share_key_separates_different_operations(
    first: dict[str, Any], second: dict[str, Any], hubs: int
) -> None:
    station = Station()
    app = make_app(station)
    async with app.running() as handle, AsyncExitStack() as stack:
        one, two = await connect(stack, app, 2)
        await one.send(first)
        await two.send(second)
        await until(lambda: subscriber_count(handle) == 2)
        assert len(handle.fanout.hubs) == hubs
        await until(lambda: sum(station.starts.values()) == hubs)


async def test_variables_in_another_key_order_share_a_hub() -> None:
    query = (
        "subscription Q($topic: String!, $on: Boolean!)"
        " { feed(topic: $topic) { value @include(if: $on) } }"
    )
    station = Station()
    app = make_app(station)
    async with app.running() as handle, AsyncExitStack() as stack:
        one, two = await connect(stack, app, 2)
        await one.send(subscribe("s", query, topic="a", on=True))
        await two.send(
            {
                "id": "s",
                "type": "subscribe",
                "payload": {"query": query, "variables": {"on": True, "topic": "a"}},
            }
        )
        await until(lambda: subscriber_count(handle) == 2)
        assert len(handle.fanout.hubs) == 1


@pytest.mark.parametrize("leave", ["complete", "disconnect"])
async def test_last_subscriber_leaving_cancels_the_hub_and_runs_the_source_finally(
    leave: str,
) -> None:
    station = Station()
    app = make_app(station)
    async with app.running() as handle, AsyncExitStack() as stack:
        one, two = await connect(stack, app, 2)
        await subscribe_all(handle, [one, two], subscribe("s", topic="news"))
        for peer in (one, two):
            if leave == "complete":
                await peer.send({"id": "s", "type": "complete"})
            else:
                await peer.disconnect()
        await station.closed("news").wait()
        assert handle.fanout.hubs == {}
        if leave == "complete":  # the connection stays usable and nothing more came for "s"
            await one.send({"type": "ping"})
            assert await one.receive() == {"type": "pong"}


async def test_shutdown_closes_every_subscriber_1001_and_ends_the_hub() -> None:
    station = Station()
    app = make_app(station)
    async with app.running() as handle, AsyncExitStack() as stack:
        peers = await connect(stack, app, 3)
        await subscribe_all(handle, peers, subscribe("s", topic="news"))
        handle.shutdown()
        for peer in peers:
            assert await peer.expect_close() == (1001, "Going away")
        await station.closed("news").wait()
        assert handle.fanout.hubs == {}


async def test_a_subscriber_leaving_does_not_stop_the_others() -> None:
    station = Station()
    app = make_app(station)
    async with app.running() as handle, AsyncExitStack() as stack:
        leaver, stayer, dropper = await connect(stack, app, 3)
        await subscribe_all(handle, [leaver, stayer, dropper], subscribe("s", topic="news"))
        await station.feed("news", 1)
        for peer in (leaver, stayer, dropper):
            assert values_of(await peer.receive()) == 1
        await leaver.send({"id": "s", "type": "complete"})
        await dropper.disconnect()
        await until(lambda: subscriber_count(handle) == 1)
        await station.feed("news", 2, 3)
        assert [values_of(await stayer.receive()) for _ in range(2)] == [2, 3]
        assert station.starts == {"news": 1}
        assert not station.closed("news").is_set()


async def test_a_newcomer_after_the_hub_ended_starts_a_fresh_source() -> None:
    station = Station()
    app = make_app(station)
    async with app.running() as handle, AsyncExitStack() as stack:
        (peer,) = await connect(stack, app, 1)
        await subscribe_all(handle, [peer], subscribe("s", topic="news"))
        await peer.send({"id": "s", "type": "complete"})
        await station.closed("news").wait()
        await subscribe_all(handle, [peer], subscribe("t", topic="news"))
        await until(lambda: station.starts["news"] == 2)
        await station.feed("news", 9)
        assert await peer.receive() == {
            "id": "t",
            "type": "next",
            "payload": {"data": {"feed": {"value": 9, "detail": "detail 9"}}},
        }


@pytest.mark.parametrize("field", ["feed", "patient"], ids=["default-close", "block-acts-as-close"])
async def test_slow_subscriber_is_closed_1008_and_the_others_get_every_event(field: str) -> None:
    station = Station()
    app = make_app(station, limits=Limits(send_buffer_messages=4))
    query = f'subscription {{ {field}(topic: "news") {{ value detail }} }}'
    async with app.running() as handle, AsyncExitStack() as stack:
        fast = await connect(stack, app, 3)
        slow = await stack.enter_async_context(session(app, client_buffer=0))
        await slow.send({"type": "connection_init"})
        assert await slow.receive() == {"type": "connection_ack"}
        await subscribe_all(handle, [*fast, slow], subscribe("s", query))
        for value in range(1, 21):
            await station.feed("news", value)
            for peer in fast:
                frame = await peer.receive()
                assert frame["payload"]["data"][field]["value"] == value
        assert slow.socket.close_frame == (1008, "Slow consumer")
        assert subscriber_count(handle) == 3
        assert station.starts == {"news": 1}
        assert station.detail_calls == 20


@pytest.mark.parametrize(
    ("field", "settings", "tail"),
    [
        ("stingy", {}, [17, 18, 19, 20]),  # the field's own policy: drop_oldest
        ("feed", {"shared_slow_consumer": "latest"}, [20]),  # the app's policy for shared
    ],
    ids=["drop_oldest", "latest"],
)
async def test_slow_subscriber_with_a_dropping_policy_stays_and_loses_old_events(
    field: str, settings: dict[str, Any], tail: list[int]
) -> None:
    station = Station()
    app = make_app(station, limits=Limits(send_buffer_messages=4), **settings)
    query = f'subscription {{ {field}(topic: "news") {{ value }} }}'
    async with app.running() as handle, AsyncExitStack() as stack:
        (fast,) = await connect(stack, app, 1)
        slow = await stack.enter_async_context(session(app, client_buffer=0))
        await slow.send({"type": "connection_init"})
        assert await slow.receive() == {"type": "connection_ack"}
        await subscribe_all(handle, [fast, slow], subscribe("s", query))
        for value in range(1, 21):
            await station.feed("news", value)
            assert (await fast.receive())["payload"]["data"][field]["value"] == value
        assert slow.socket.close_frame is None
        received: list[int] = []
        while not received or received[-1] != 20:
            received.append((await slow.receive())["payload"]["data"][field]["value"])
    assert received == sorted(set(received))  # in order, none twice
    assert len(received) < 20  # the writer's batch in flight, then what the policy kept
    assert received[-len(tail) :] == tail
    assert station.starts == {"news": 1}


async def test_source_raising_sends_error_to_every_subscriber() -> None:
    station = Station()
    app = make_app(station, mask_errors=False)  # the source's own message, unmasked
    async with app.running() as handle, AsyncExitStack() as stack:
        peers = await connect(stack, app, 3)
        await subscribe_all(handle, peers, subscribe("s", topic="news"))
        await station.feed("news", 1, BOOM)
        for peer in peers:
            assert values_of(await peer.receive()) == 1
            assert await peer.receive() == {
                "id": "s",
                "type": "error",
                "payload": [{"message": "the source failed"}],
            }
        assert station.closed("news").is_set()
        assert handle.fanout.hubs == {}


async def test_source_that_cannot_start_sends_error_to_every_subscriber() -> None:
    app = make_app(Station(), mask_errors=False)  # the source's own message, unmasked
    async with app.running() as handle, AsyncExitStack() as stack:
        peers = await connect(stack, app, 2)
        for peer in peers:
            await peer.send(subscribe("s", "subscription { broken { value } }"))
        for peer in peers:
            frame = await peer.receive()
            assert frame["type"] == "error" and frame["id"] == "s", frame
            assert "no source today" in frame["payload"][0]["message"]
        assert handle.fanout.hubs == {}


async def test_source_ending_completes_every_subscriber() -> None:
    station = Station()
    app = make_app(station)
    async with app.running() as handle, AsyncExitStack() as stack:
        peers = await connect(stack, app, 3)
        await subscribe_all(handle, peers, subscribe("s", topic="news"))
        await station.feed("news", 1)
        await station.end("news")
        for peer in peers:
            assert values_of(await peer.receive()) == 1
            assert await peer.receive() == {"id": "s", "type": "complete"}
        assert handle.fanout.hubs == {}


async def test_an_unencodable_event_errors_the_subscribers_and_the_server_lives_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    station = Station()
    app = make_app(station)
    query = 'subscription { feed(topic: "news") { value blob } }'
    async with app.running() as handle, AsyncExitStack() as stack:
        peers = await connect(stack, app, 2)
        await subscribe_all(handle, peers, subscribe("s", query))
        await station.feed("news", 1)
        for peer in peers:
            assert await peer.receive() == {
                "id": "s",
                "type": "error",
                "payload": [{"message": "Internal server error"}],
            }
        assert handle.fanout.hubs == {}
        await subscribe_all(handle, peers, subscribe("t", topic="later"))
        await station.feed("later", 2)
        for peer in peers:
            assert values_of(await peer.receive()) == 2
    assert any("shared subscription" in r.getMessage() for r in caplog.records)


async def test_outside_running_a_shared_field_falls_back_to_one_source_per_subscriber() -> None:
    station = Station()
    app = make_app(station)
    assert app.server is None
    async with AsyncExitStack() as stack:
        peers = await connect(stack, app, 2)
        for peer in peers:
            await peer.send(subscribe("s", topic="news"))
        await until(lambda: len(station.inlets.get("news", ())) == 2)
        await station.feed("news", 4)
        for peer in peers:
            assert values_of(await peer.receive()) == 4
    assert station.starts == {"news": 2}
    assert station.detail_calls == 2


async def test_delivery_in_slices_keeps_every_event_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(anyql.fanout, "DELIVERY_SLICE", 2)  # a checkpoint every 2 deliveries
    station = Station()
    app = make_app(station)
    async with app.running() as handle, AsyncExitStack() as stack:
        peers = await connect(stack, app, 5)
        await subscribe_all(handle, peers, subscribe("s", topic="news"))
        await station.feed("news", 1, 2, 3)
        for peer in peers:
            assert [values_of(await peer.receive()) for _ in range(3)] == [1, 2, 3]


async def test_a_subscriber_detached_during_an_event_gets_nothing_more_of_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(anyql.fanout, "DELIVERY_SLICE", 1)
    received: dict[str, list[bytes]] = {"first": [], "second": []}
    hub = anyql.fanout.Hub.__new__(anyql.fanout.Hub)
    hub.subscribers = {}
    hub.joiners = {}
    hub.last_event_id = None

    def first(payload: bytes) -> bool:
        received["first"].append(payload)
        del hub.subscribers[second_subscriber]  # as a detach on another task would
        return True

    def second(payload: bytes) -> bool:
        received["second"].append(payload)
        return True

    first_subscriber = anyql.fanout.Subscriber(first, lambda errors: None)
    second_subscriber = anyql.fanout.Subscriber(second, lambda errors: None)
    hub.subscribers = {first_subscriber: None, second_subscriber: None}
    await hub._offer(b"{}")
    assert received == {"first": [b"{}"], "second": []}
