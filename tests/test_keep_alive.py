"""Legacy ``ka`` keep-alives: right after the ack, then once per ``keep_alive_interval``;
an interval of 0 turns them off (as it turns off the native server's pings).

Driven over an in-memory socket, on both backends; under Trio on a MockClock, so the
times are exact.
"""

from __future__ import annotations

from itertools import pairwise

import anyio
import pytest

from anyql import GraphQL, Limits, Schema
from tests.memory_socket import Peer, session

pytestmark = pytest.mark.anyio

INTERVAL = 0.05
HELLO = {"id": "q", "type": "start", "payload": {"query": "{ hello }"}}
HELLO_DATA = {"id": "q", "type": "data", "payload": {"data": {"hello": "world"}}}


def make_app(interval: float) -> GraphQL:
    schema = Schema("type Query { hello: String! }")
    schema.field("Query.hello")(lambda root, info: "world")
    return GraphQL(schema, limits=Limits(keep_alive_interval=interval))


async def next_ka(peer: Peer) -> float:
    """Wait for the next frame, which must be ``ka``; returns when it arrived.

    A ``ka`` that never comes fails here (at once on Trio's mock clock) instead of hanging.
    """
    with anyio.fail_after(INTERVAL * 20):
        assert await peer.receive() == {"type": "ka"}
    return anyio.current_time()


@pytest.mark.autojump
async def test_L11_ka_follows_the_ack_then_repeats_at_the_interval(
    anyio_backend_name: str,
) -> None:
    async with session(make_app(INTERVAL), "graphql-ws") as peer:
        assert await peer.init() == {"type": "connection_ack"}
        acked = anyio.current_time()
        arrivals = [await next_ka(peer) for _ in range(5)]
    gaps = [later - earlier for earlier, later in pairwise(arrivals)]
    if anyio_backend_name == "trio":  # the mock clock: exact
        assert arrivals[0] == acked
        assert gaps == pytest.approx([INTERVAL] * 4)
    else:  # a real clock: never early
        assert all(gap >= INTERVAL * 0.99 for gap in gaps)


@pytest.mark.autojump
async def test_L11_an_interval_of_zero_sends_no_ka(anyio_backend_name: str) -> None:
    async with session(make_app(0), "graphql-ws") as peer:
        assert await peer.init() == {"type": "connection_ack"}
        if anyio_backend_name == "trio":
            await anyio.sleep(60)  # the mock clock jumps a minute ahead
        await peer.send(HELLO)
        assert await peer.receive() == HELLO_DATA  # nothing came before the answer
        assert await peer.receive() == {"id": "q", "type": "complete"}


@pytest.mark.autojump
async def test_L11_graphql_transport_ws_never_sends_ka() -> None:
    async with session(make_app(INTERVAL), "graphql-transport-ws") as peer:
        assert await peer.init() == {"type": "connection_ack"}
        await anyio.sleep(INTERVAL * 3)
        await peer.send({"id": "q", "type": "subscribe", "payload": {"query": "{ hello }"}})
        assert await peer.receive() == {
            "id": "q",
            "type": "next",
            "payload": {"data": {"hello": "world"}},
        }
