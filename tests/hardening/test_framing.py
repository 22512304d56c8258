"""Pong order and count on the native WebSocket, as Autobahn cases 2.10 and 5.6 check them
(kept here too, so the rule holds where kosoku is not installed)."""

from __future__ import annotations

import pytest
from wsproto.events import Ping, Pong, TextMessage

from anyql.transports._native_ws import MAX_PENDING_PONGS
from tests.fake_app import FakeApp, serving
from tests.test_native_ws import Client

pytestmark = pytest.mark.anyio


async def test_W03_the_pong_for_a_ping_inside_a_message_comes_before_its_echo() -> None:
    async with serving(FakeApp()) as port:
        client, _ = await Client.open(port)
        data = client.ws.send(TextMessage(data="frag", message_finished=False))
        data += client.ws.send(Ping(payload=b"p"))
        data += client.ws.send(TextMessage(data="ment", message_finished=True))
        await client.stream.send(data)  # one write: ping and final fragment read together
        assert await client.receive() == Pong(payload=b"p")
        assert await client.receive() == TextMessage(data="fragment")
        await client.aclose()


async def test_W06_a_few_pings_in_a_burst_each_get_their_pong_in_order() -> None:
    pings = [b"payload-%d" % n for n in range(MAX_PENDING_PONGS)]
    async with serving(FakeApp()) as port:
        client, _ = await Client.open(port)
        await client.stream.send(b"".join(client.ws.send(Ping(payload=p)) for p in pings))
        await client.send(TextMessage(data="after"))
        events = [await client.receive() for _ in range(len(pings) + 1)]
        await client.aclose()
    assert events == [*(Pong(payload=p) for p in pings), TextMessage(data="after")]
