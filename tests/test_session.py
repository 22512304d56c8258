"""The session driver: structured concurrency, cancellation and the slow-consumer policies.

Driven over an in-memory socket, on both backends. Protocol rules themselves are proven in
tests/protocols; here we prove what the driver does with them.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from anyql import ConnectionRejected, GraphQL, Limits, Schema
from tests.memory_socket import session

pytestmark = pytest.mark.anyio

SDL = """
type Query { hello: String!  slow: String! }
type Subscription {
  ticks(n: Int!): Int!
  forever: Int!
  stubborn: Int!
  firehose: Int!
  parked: Parked!
  burst(n: Int!): Int!
}
type Parked { held: Int! }
"""


class Probe:
    """Events a test waits on instead of sleeping."""

    def __init__(self) -> None:
        self.started = anyio.Event()
        self.finally_ran = anyio.Event()
        self.release = anyio.Event()
        self.produced = 0
        #: ``parked`` sources, held so that garbage collection cannot close them instead.
        self.sources: list[AsyncIterator[dict[str, int]]] = []
        #: What ended a ``parked`` source: GeneratorExit when aclose() closed it at its yield.
        self.closed_with: type[BaseException] | None = None


async def parked_source(probe: Probe) -> AsyncIterator[dict[str, int]]:
    """Yield one event and stay parked at that ``yield`` while the event is executed.

    The event's ``held`` field never resolves, so whatever ends the operation finds the
    generator suspended at its ``yield``, not inside an await: cancelling the operation's
    task does not reach it, and only an explicit ``aclose()`` runs its ``finally``.
    """
    try:
        yield {"value": 0}
    except BaseException as exc:
        probe.closed_with = type(exc)
        raise
    finally:
        probe.finally_ran.set()


def make_app(probe: Probe, **settings: Any) -> GraphQL:
    schema = Schema(SDL)

    @schema.field("Query.hello")
    def hello(root: Any, info: Any) -> str:
        return "world"

    @schema.field("Query.slow")
    async def slow(root: Any, info: Any) -> str:
        probe.started.set()
        await probe.release.wait()
        return "late"

    @schema.field("Subscription.ticks")
    async def ticks(root: Any, info: Any, n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    @schema.field("Subscription.forever")
    async def forever(root: Any, info: Any) -> AsyncIterator[int]:
        try:
            probe.started.set()
            await anyio.sleep_forever()
            yield 0
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.sleep(0.01)  # a finally that awaits still completes
            probe.finally_ran.set()

    @schema.field("Subscription.stubborn")
    async def stubborn(root: Any, info: Any) -> AsyncIterator[int]:
        try:
            for i in range(1_000_000):
                probe.started.set()
                yield i
        finally:
            # Closed at a ``yield`` (the consumer is stalled), the generator gets aclose()
            # under a shielded grace: this hour-long cleanup is cut at the grace.
            await anyio.sleep(3600)
            probe.finally_ran.set()

    @schema.field("Subscription.parked")
    def parked(root: Any, info: Any) -> AsyncIterator[dict[str, int]]:
        source = parked_source(probe)
        probe.sources.append(source)
        return source

    @schema.field("Parked.held")
    async def held(root: Any, info: Any) -> int:
        probe.started.set()  # the source has yielded this event and is parked at the yield
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    @schema.field("Subscription.burst")
    async def burst(root: Any, info: Any, n: int) -> AsyncIterator[int]:
        yield 0
        await probe.release.wait()
        for i in range(1, n):
            yield i
        probe.started.set()  # resumed after its last event was handed to the session
        await anyio.sleep_forever()

    @schema.field("Subscription.firehose")
    async def firehose(root: Any, info: Any) -> AsyncIterator[int]:
        while True:
            probe.produced += 1
            yield probe.produced
            await anyio.lowlevel.checkpoint()

    return GraphQL(schema, **settings)


def subscribe(id: str, query: str) -> dict[str, Any]:
    return {"id": id, "type": "subscribe", "payload": {"query": query}}


async def test_query_over_the_socket_gives_next_then_complete() -> None:
    async with session(make_app(Probe())) as peer:
        assert await peer.init() == {"type": "connection_ack"}
        await peer.send(subscribe("1", "{ hello }"))
        assert await peer.receive() == {
            "id": "1",
            "type": "next",
            "payload": {"data": {"hello": "world"}},
        }
        assert await peer.receive() == {"id": "1", "type": "complete"}


@pytest.mark.autojump
async def test_P28_client_complete_runs_finally_and_sends_nothing_more() -> None:
    probe = Probe()
    async with session(make_app(probe)) as peer:
        await peer.init()
        await peer.send(subscribe("1", "subscription { parked { held } }"))
        await probe.started.wait()
        await peer.send({"id": "1", "type": "complete"})
        # The source is parked at its yield: only the aclose() the complete causes runs its
        # finally. The bound is a failure, never a wait: on Trio the clock jumps to it.
        with anyio.fail_after(10):
            await probe.finally_ran.wait()
        assert probe.closed_with is GeneratorExit
        await peer.send({"type": "ping"})
        assert await peer.receive() == {"type": "pong"}  # no complete echoed before it


async def test_completed_query_result_already_on_its_way_is_never_sent() -> None:
    probe = Probe()
    async with session(make_app(probe)) as peer:
        await peer.init()
        await peer.send(subscribe("1", "{ slow }"))
        await probe.started.wait()
        await peer.send({"id": "1", "type": "complete"})
        await peer.send({"type": "ping"})
        assert await peer.receive() == {"type": "pong"}  # the complete has been handled
        probe.release.set()
        await peer.send(subscribe("2", "{ hello }"))
        first = await peer.receive()
        assert first["id"] == "2", first


async def test_W08_tcp_reset_cancels_operations_and_runs_finally() -> None:
    probe = Probe()
    async with session(make_app(probe)) as peer:
        await peer.init()
        await peer.send(subscribe("1", "subscription { parked { held } }"))
        await probe.started.wait()
        await peer.disconnect()
    # The source was parked at its yield: its finally ran because the operation closed it
    # with aclose() before the session's task group let the session end.
    assert probe.finally_ran.is_set()
    assert probe.closed_with is GeneratorExit


async def test_shutdown_closes_1001_after_cancelling_operations() -> None:
    probe = Probe()
    app = make_app(probe)
    async with app.running() as handle, session(app) as peer:
        await peer.init()
        await peer.send(subscribe("1", "subscription { forever }"))
        await probe.started.wait()
        handle.shutdown()
        assert await peer.expect_close() == (1001, "Going away")
        await probe.finally_ran.wait()


async def test_a_server_close_sends_the_results_already_queued_before_the_close_frame() -> None:
    """A drain or shutdown closes with 1001 after the frames produced before it (within
    the close's flush time); it used to drop every queued ``next`` of a live operation."""
    probe = Probe()
    app = make_app(probe, limits=Limits(send_buffer_messages=64))
    async with app.running() as handle, session(app, client_buffer=0) as peer:
        await peer.init()
        await peer.send(subscribe("1", "subscription { burst(n: 10) }"))
        # The writer holds the first frame, blocked on a client that reads nothing yet;
        # the other nine queue behind it. (Polled: a blocked send has no event.)
        while peer.pending_sends() == 0:  # noqa: ASYNC110
            await anyio.sleep(0.001)
        probe.release.set()
        await probe.started.wait()
        handle.shutdown()
        got = [await peer.receive() for _ in range(10)]
        assert [message["payload"]["data"]["burst"] for message in got] == list(range(10))
        assert await peer.expect_close() == (1001, "Going away")


@pytest.mark.autojump
async def test_slow_generator_cleanup_is_cut_at_the_grace_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    probe = Probe()
    app = make_app(probe, limits=Limits(cleanup_grace=0.05, send_buffer_messages=4))
    with caplog.at_level(logging.WARNING):
        async with session(app, client_buffer=0) as peer:
            await peer.send({"type": "connection_init"})
            await peer.receive()
            await peer.send(subscribe("1", "subscription { stubborn }"))
            await probe.started.wait()
            await peer.disconnect()
    assert not probe.finally_ran.is_set()
    assert any("abandon" in record.getMessage().lower() for record in caplog.records)


@pytest.mark.autojump
async def test_P01_no_connection_init_closes_4408() -> None:
    app = make_app(Probe(), limits=Limits(connection_init_timeout=0.05))
    async with session(app) as peer:
        assert await peer.expect_close() == (4408, "Connection initialisation timeout")


@pytest.mark.autojump
async def test_P02_slow_on_connect_is_not_an_init_timeout() -> None:
    async def on_connect(context: Any, params: Any) -> dict[str, Any]:
        await anyio.sleep(0.2)
        return {"welcome": True}

    app = make_app(Probe(), limits=Limits(connection_init_timeout=0.05))
    app.on_connect = on_connect
    async with session(app) as peer:
        assert await peer.init() == {"type": "connection_ack", "payload": {"welcome": True}}


async def test_P05_rejected_connection_closes_4403() -> None:
    async def on_connect(context: Any, params: Any) -> None:
        raise ConnectionRejected()

    app = make_app(Probe(), on_connect=None)
    app.on_connect = on_connect
    async with session(app) as peer:
        await peer.send({"type": "connection_init"})
        assert await peer.expect_close() == (4403, "Forbidden")


async def test_P05_the_rejection_message_reaches_a_graphql_transport_ws_client() -> None:
    async def on_connect(context: Any, params: Any) -> None:
        raise ConnectionRejected({"message": "Token expired"})

    app = make_app(Probe(), on_connect=on_connect)
    async with session(app) as peer:
        await peer.send({"type": "connection_init"})
        assert await peer.expect_close() == (4403, "Token expired")


async def test_on_connect_crash_closes_4500_without_details() -> None:
    async def on_connect(context: Any, params: Any) -> None:
        raise RuntimeError("database password is hunter2")

    app = make_app(Probe())
    app.on_connect = on_connect
    async with session(app) as peer:
        await peer.send({"type": "connection_init"})
        assert await peer.expect_close() == (4500, "Internal server error")


async def test_L04_legacy_rejection_sends_connection_error_then_closes_1011() -> None:
    async def on_connect(context: Any, params: Any) -> None:
        raise ConnectionRejected({"reason": "no"})

    app = make_app(Probe())
    app.on_connect = on_connect
    async with session(app, "graphql-ws") as peer:
        await peer.send({"type": "connection_init"})
        assert await peer.receive() == {"type": "connection_error", "payload": {"reason": "no"}}
        assert (await peer.expect_close())[0] == 1011


async def test_connection_params_and_context_reach_resolvers() -> None:
    schema = Schema("type Query { token: String }")

    @schema.field("Query.token")
    def token(root: Any, info: Any) -> str:
        return str(info.context.connection_params["token"]) + info.context.request.path

    async with session(GraphQL(schema)) as peer:
        await peer.init({"token": "abc"})
        await peer.send(subscribe("1", "{ token }"))
        assert (await peer.receive())["payload"] == {"data": {"token": "abc/graphql"}}


async def test_no_subprotocol_closes_4406() -> None:
    async with session(make_app(Probe()), subprotocol=None) as peer:
        assert (await peer.expect_close())[0] == 4406


async def test_too_many_operations_errors_that_id_and_keeps_the_socket() -> None:
    probe = Probe()
    app = make_app(probe, limits=Limits(max_operations=1))
    async with session(app) as peer:
        await peer.init()
        await peer.send(subscribe("1", "subscription { forever }"))
        await probe.started.wait()
        await peer.send(subscribe("2", "{ hello }"))
        assert await peer.receive() == {
            "id": "2",
            "type": "error",
            "payload": [{"message": "Too many operations"}],
        }
        await peer.send(subscribe("1", "{ hello }"))  # a live id is still a 4409
        assert (await peer.expect_close())[0] == 4409


async def test_L11_legacy_keep_alive_follows_the_ack() -> None:
    async with session(make_app(Probe()), "graphql-ws") as peer:
        assert await peer.init() == {"type": "connection_ack"}
        assert await peer.receive() == {"type": "ka"}


async def test_L08_legacy_stop_cancels_and_completes() -> None:
    probe = Probe()
    async with session(make_app(probe), "graphql-ws") as peer:
        await peer.init()
        await peer.receive()  # ka
        await peer.send(
            {"id": "1", "type": "start", "payload": {"query": "subscription { forever }"}}
        )
        await probe.started.wait()
        await peer.send({"id": "1", "type": "stop"})
        assert await peer.receive() == {"id": "1", "type": "complete"}
        await probe.finally_ran.wait()


async def test_L07_legacy_start_with_a_live_id_replaces_the_operation() -> None:
    probe = Probe()
    async with session(make_app(probe, limits=Limits(max_operations=1)), "graphql-ws") as peer:
        await peer.init()
        await peer.receive()  # ka
        await peer.send(
            {"id": "1", "type": "start", "payload": {"query": "subscription { forever }"}}
        )
        await probe.started.wait()
        await peer.send({"id": "1", "type": "start", "payload": {"query": "{ hello }"}})
        assert await peer.receive() == {"id": "1", "type": "complete"}  # the old one
        assert await peer.receive() == {
            "id": "1",
            "type": "data",
            "payload": {"data": {"hello": "world"}},
        }
        assert await peer.receive() == {"id": "1", "type": "complete"}
        await probe.finally_ran.wait()


async def firehose_until_closed(policy: str) -> tuple[Probe, tuple[int, str] | None, int]:
    """Subscribe to an endless source while the client reads nothing; return what happened."""
    probe = Probe()
    app = make_app(probe, slow_consumer=policy, limits=Limits(send_buffer_messages=8))
    async with session(app, client_buffer=0) as peer:
        await peer.send({"type": "connection_init"})
        await peer.receive()  # the ack
        await peer.send(subscribe("1", "subscription { firehose }"))
        for _ in range(20_000):  # scheduler steps, not time: no clock involved
            if probe.produced >= 200 or peer.socket.close_frame is not None:
                break
            await anyio.lowlevel.checkpoint()
        close = peer.socket.close_frame
        return probe, close, probe.produced


async def test_slow_consumer_close_policy_closes_1008_and_says_who(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="anyql"):
        _probe, close, produced = await firehose_until_closed("close")
    assert close == (1008, "Slow consumer")
    assert produced < 200
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "closing a slow consumer: 127.0.0.1:5555, operation '1'" in warned


@pytest.mark.parametrize("policy", ["drop_oldest", "latest"])
async def test_slow_consumer_dropping_policies_keep_memory_bounded(policy: str) -> None:
    _probe, close, produced = await firehose_until_closed(policy)
    assert close is None
    assert produced >= 200  # the source was never blocked by the stalled client


async def test_slow_consumer_block_policy_applies_backpressure() -> None:
    _probe, close, produced = await firehose_until_closed("block")
    assert close is None
    assert produced < 50  # buffer of 8 plus the frames in flight, then the source waits


async def test_a_stalled_client_leaves_other_connections_unaffected() -> None:
    """One client stops reading a firehose (block policy); another still gets every tick."""
    probe = Probe()
    app = make_app(probe, limits=Limits(send_buffer_messages=8))
    async with session(app, client_buffer=0) as stalled, session(app) as healthy:
        await stalled.send({"type": "connection_init"})
        await stalled.receive()
        await stalled.send(subscribe("1", "subscription { firehose }"))
        await healthy.init()
        await healthy.send(subscribe("1", "subscription { ticks(n: 50) }"))
        ticks = [await healthy.receive() for _ in range(50)]
        assert [t["payload"]["data"]["ticks"] for t in ticks] == list(range(50))
        assert await healthy.receive() == {"id": "1", "type": "complete"}
        assert 0 < probe.produced < 50  # the stalled source ran, and is held back, not buffered
