"""permessage-deflate on the native server (docs/limits.md, row W04 with compression).

Off unless the server is started with ``permessage_deflate=True``; when on, the inflated
size of a message counts against ``max_ws_message_bytes`` and inflation never runs more
than a byte past it (a deflate bomb costs the cap, not its inflated size). The clients
here are wsproto's own permessage-deflate (an implementation independent of ours) and raw
frames; Autobahn's 12.x/13.x cases and the npm ``ws`` client cover the rest (see
tests/autobahn and tests/e2e/test_deflate_clients.py). Hypercorn negotiates the extension
whenever a client offers it; its row is in tests/hardening/test_hypercorn.py.
"""

from __future__ import annotations

import tracemalloc
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st
from wsproto.events import AcceptConnection, Request, TextMessage
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason, FrameDecoder, Opcode, RsvBits

from anyql import Limits
from anyql.transports._deflate import BoundedDeflate, parse_offer
from tests.fake_app import FakeApp, serving
from tests.hardening.app import build_app
from tests.hardening.clients import GraphQLSocket, subscribe
from tests.hardening.clients import serving as serving_graphql
from tests.test_native_ws import Client, frame

pytestmark = pytest.mark.anyio

KIB = 1024
MIB = 1024 * KIB
RSV1 = 0x40
DECODER = FrameDecoder(client=False)


def deflate(data: bytes) -> bytes:
    """One message compressed the RFC 7692 way (raw deflate, sync flush, tail removed)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return (compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


def agreed(offer: str) -> BoundedDeflate:
    extension = BoundedDeflate(1 * MIB)
    assert extension.accept(offer) is not None
    return extension


def inflate_message(extension: BoundedDeflate, *chunks: bytes) -> bytes | CloseReason:
    """Feed one compressed text message, chunk by chunk, as wsproto's frame decoder does."""
    header = extension.frame_inbound_header(DECODER, Opcode.TEXT, RsvBits(True, False, False), 0)
    assert header == RsvBits(True, False, False)
    inflated = b""
    for chunk in chunks:
        part = extension.frame_inbound_payload_data(DECODER, chunk)
        if isinstance(part, CloseReason):
            return part
        inflated += part
    tail = extension.frame_inbound_complete(DECODER, True)
    assert tail is not None
    return tail if isinstance(tail, CloseReason) else inflated + tail


def deflate_frames(data: bytes, count: int) -> list[bytes]:
    """``data`` compressed as one message cut into ``count`` frames.

    Each frame ends on a sync flush, so it inflates to exactly its share of ``data`` (the
    last frame has the message's tail removed, as RFC 7692 asks).
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    share = -(-len(data) // count)
    frames = [
        compressor.compress(data[i : i + share]) + compressor.flush(zlib.Z_SYNC_FLUSH)
        for i in range(0, len(data), share)
    ]
    frames[-1] = frames[-1][:-4]
    return frames


def inflate_frames(extension: BoundedDeflate, *frames: bytes) -> bytes | CloseReason:
    """Feed one compressed text message as several frames, as wsproto's frame decoder does:
    a text frame with RSV1, then continuation frames, the last one final."""
    inflated = b""
    for index, payload in enumerate(frames):
        opcode = Opcode.CONTINUATION if index else Opcode.TEXT
        rsv = RsvBits(index == 0, False, False)
        header = extension.frame_inbound_header(DECODER, opcode, rsv, len(payload))
        assert header == RsvBits(True, False, False)
        part = extension.frame_inbound_payload_data(DECODER, payload)
        if isinstance(part, CloseReason):
            return part
        end = extension.frame_inbound_complete(DECODER, index == len(frames) - 1)
        if isinstance(end, CloseReason):
            return end
        inflated += part + (end or b"")
    return inflated


# --- negotiation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offer", "answer"),
    [
        ("permessage-deflate", ""),
        ("permessage-deflate; client_max_window_bits", ""),
        ("permessage-deflate; client_max_window_bits=10", ""),
        ('permessage-deflate; client_max_window_bits="8"', ""),
        ("permessage-deflate; server_no_context_takeover", "server_no_context_takeover"),
        ("permessage-deflate;client_no_context_takeover", "client_no_context_takeover"),
        ("permessage-deflate; server_max_window_bits=9", "server_max_window_bits=9"),
        (
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=12",
            "server_no_context_takeover; server_max_window_bits=12",
        ),
    ],
)
def test_acceptable_offers_are_answered(offer: str, answer: str) -> None:
    assert BoundedDeflate(MIB).accept(offer) == answer


@pytest.mark.parametrize(
    "offer",
    [
        "permessage-deflate; server_max_window_bits=8",  # zlib cannot deflate with 256 B
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; client_max_window_bits=7",
        "permessage-deflate; client_max_window_bits=abc",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; mystery",
        "permessage-deflate;",
    ],
)
def test_unacceptable_offers_are_declined(offer: str) -> None:
    assert parse_offer(offer) is None
    extension = BoundedDeflate(MIB)
    assert extension.accept(offer) is None
    assert not extension.enabled()


PARAMETER = st.sampled_from(
    [
        "server_no_context_takeover",
        "client_no_context_takeover",
        "server_max_window_bits",
        "client_max_window_bits",
        "",
    ]
)


@given(
    st.lists(
        st.tuples(PARAMETER | st.text(max_size=8), st.none() | st.text(max_size=4)), max_size=5
    )
)
def test_any_offer_is_answered_or_declined_never_raises(
    parameters: list[tuple[str, str | None]],
) -> None:
    offer = "permessage-deflate" + "".join(
        f"; {key}" if value is None else f"; {key}={value}" for key, value in parameters
    )
    extension = BoundedDeflate(MIB)
    answer = extension.accept(offer)
    assert answer is None or answer.isascii()
    assert extension.enabled() is (answer is not None)


def test_the_first_acceptable_offer_wins_and_later_ones_change_nothing() -> None:
    extension = BoundedDeflate(MIB)
    assert extension.accept("permessage-deflate; server_max_window_bits=8") is None
    assert extension.accept("permessage-deflate; client_no_context_takeover") == (
        "client_no_context_takeover"
    )
    assert extension.accept("permessage-deflate; server_no_context_takeover") is None
    assert extension.enabled()


# --- inflation, counted ------------------------------------------------------------------------


def test_W04_a_message_at_the_cap_inflates_and_one_past_it_fails_1009() -> None:
    extension = agreed("permessage-deflate")
    assert inflate_message(extension, deflate(b"a" * MIB)) == b"a" * MIB
    too_big = inflate_message(agreed("permessage-deflate"), deflate(b"a" * (MIB + 1)))
    assert too_big is CloseReason.MESSAGE_TOO_BIG


def test_W04_the_count_runs_over_every_frame_of_one_message() -> None:
    # Four frames of a quarter of the cap each: the message is at the cap and inflates.
    at_cap = b"b" * MIB
    assert inflate_frames(agreed("permessage-deflate"), *deflate_frames(at_cap, 4)) == at_cap
    # Four more bytes in each: over the cap, though no frame, nor any three of them, is.
    over = deflate_frames(b"b" * (MIB + 16), 4)
    independent = zlib.decompressobj(-15)
    assert [len(independent.decompress(piece)) for piece in over] == [MIB // 4 + 4] * 4
    assert inflate_frames(agreed("permessage-deflate"), *over) is CloseReason.MESSAGE_TOO_BIG
    # Within one frame the count runs over every chunk of its payload too.
    compressed = deflate(b"b" * (MIB + 10))
    halves = compressed[: len(compressed) // 2], compressed[len(compressed) // 2 :]
    assert inflate_message(agreed("permessage-deflate"), *halves) is CloseReason.MESSAGE_TOO_BIG


def test_W04_the_count_starts_again_with_each_message() -> None:
    extension = agreed("permessage-deflate")
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)  # context taken over, as clients do
    for _ in range(3):
        message = compressor.compress(b"c" * (MIB - 1)) + compressor.flush(zlib.Z_SYNC_FLUSH)
        assert inflate_message(extension, message[:-4]) == b"c" * (MIB - 1)


def test_W04_a_deflate_bomb_is_never_inflated_far_past_the_cap() -> None:
    bomb = deflate(b"\x00" * (256 * MIB))  # about 256 KiB on the wire
    extension = agreed("permessage-deflate")
    tracemalloc.start()
    try:
        outcome = inflate_message(extension, bomb)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert outcome is CloseReason.MESSAGE_TOO_BIG
    assert peak < 2 * MIB + len(bomb) * 2  # the cap plus the input, never 256 MiB


def test_W01_corrupt_compressed_data_fails_1007() -> None:
    extension = agreed("permessage-deflate")
    assert inflate_message(extension, b"\xff\xff\xff\xff") is CloseReason.INVALID_FRAME_PAYLOAD_DATA


def test_W02_rsv1_on_a_control_frame_or_a_continuation_fails_1002() -> None:
    extension = agreed("permessage-deflate")
    compressed = RsvBits(True, False, False)
    for opcode in (Opcode.PING, Opcode.CLOSE, Opcode.CONTINUATION):
        assert extension.frame_inbound_header(DECODER, opcode, compressed, 0) is (
            CloseReason.PROTOCOL_ERROR
        )


# --- on the native server ----------------------------------------------------------------------


@asynccontextmanager
async def deflate_client(
    port: int, *, offer: bool = True
) -> AsyncIterator[tuple[Client, list[str]]]:
    """A wsproto client with its own permessage-deflate, handshake done; and what was agreed."""
    client = Client(await anyio.connect_tcp("127.0.0.1", port))
    extensions = [PerMessageDeflate()] if offer else []
    request = Request(host="test", target="/", subprotocols=["echo"], extensions=extensions)
    await client.send(request)
    answer = await client.receive()
    assert isinstance(answer, AcceptConnection)
    try:
        yield client, [extension.name for extension in answer.extensions]
    finally:
        await client.aclose()


async def test_deflate_stays_off_unless_enabled() -> None:
    async with serving(FakeApp()) as port, deflate_client(port) as (client, agreed_on):
        assert agreed_on == []
        await client.send(TextMessage(data="plain"))
        assert await client.receive_message() == "plain"


async def test_enabled_deflate_is_negotiated_and_messages_round_trip_compressed() -> None:
    async with serving(FakeApp(), permessage_deflate=True) as port:
        async with deflate_client(port) as (client, agreed_on):
            assert agreed_on == ["permessage-deflate"]
            text = "héllo " * 2000
            await client.send(TextMessage(data=text))
            raw = await client.stream.receive()
            assert raw[0] & RSV1, "the echo is compressed"
            assert len(raw) < len(text) // 10
            client.ws.receive_data(raw)
            client.pending.extend(client.ws.events())
            assert await client.receive_message() == text
        async with deflate_client(port, offer=False) as (client, _):  # no offer: plain frames
            await client.send(TextMessage(data="plain"))
            raw = await client.stream.receive()
            assert not raw[0] & RSV1
            assert raw.endswith(b"plain")


@pytest.mark.parametrize("fragments", [1, 4])
async def test_W04_an_inflated_message_over_the_cap_closes_1009(fragments: int) -> None:
    app = FakeApp(Limits(max_ws_message_bytes=64 * KIB))
    async with serving(app, permessage_deflate=True) as port, deflate_client(port) as (client, _):
        await client.send(TextMessage(data="x" * (64 * KIB)))  # at the cap: echoed
        assert await client.receive_message() == "x" * (64 * KIB)
        compressed = deflate(b"y" * (64 * KIB + 1))  # a few hundred bytes on the wire
        size = -(-len(compressed) // fragments)
        pieces = [compressed[i : i + size] for i in range(0, len(compressed), size)]
        raw = b"".join(
            frame(0x0 if i else 0x1, piece, fin=i == len(pieces) - 1, rsv=0 if i else RSV1)
            for i, piece in enumerate(pieces)
        )
        await client.stream.send(raw)
        assert (await client.close_frame()).code == 1009
    assert app.session_ends == [1009]


@pytest.mark.parametrize("permessage_deflate", [True, False])
async def test_W10_a_non_ascii_extension_header_gets_400_not_a_crash(
    permessage_deflate: bool, caplog: pytest.LogCaptureFixture
) -> None:
    app = FakeApp()
    server = serving(app, permessage_deflate=permessage_deflate)
    async with server as port, await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(upgrade_request(b"permessage-deflate; client_max_window_bits=\xff"))
        head = await stream.receive()
    assert head.startswith(b"HTTP/1.1 400")
    assert app.session_ends == []
    assert not [record for record in caplog.records if record.levelname == "ERROR"]


def upgrade_request(extensions: bytes) -> bytes:
    return (
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Protocol: echo\r\nSec-WebSocket-Extensions: " + extensions + b"\r\n\r\n"
    )


@pytest.mark.parametrize(
    "header",
    [
        b"permessage-deflate; server_max_window_bits=99999999999999999999",
        b",,,;;;=",
        b"permessage-deflate, permessage-deflate; mystery=1, x-webkit-deflate-frame",
    ],
)
async def test_malformed_extension_offers_are_declined_not_a_crash(header: bytes) -> None:
    app = FakeApp()
    async with serving(app, permessage_deflate=True) as port:
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            await stream.send(upgrade_request(header))
            head = await stream.receive()
        assert head.startswith(b"HTTP/1.1 101")
        if header.startswith(b"permessage-deflate, "):
            assert b"sec-websocket-extensions: permessage-deflate\r\n" in head.lower()
        else:
            assert b"sec-websocket-extensions" not in head.lower()


async def test_W01_corrupt_compressed_frame_closes_1007() -> None:
    app = FakeApp()
    async with serving(app, permessage_deflate=True) as port, deflate_client(port) as (client, _):
        await client.stream.send(frame(0x1, b"\xff\xff\xff\xff", rsv=RSV1))
        assert (await client.close_frame()).code == 1007
    assert app.session_ends == [1007]


async def test_W02_compressed_frame_without_negotiation_closes_1002() -> None:
    app = FakeApp()
    server = serving(app, permessage_deflate=True)
    async with server as port, deflate_client(port, offer=False) as (client, _):
        await client.stream.send(frame(0x1, deflate(b"sneaky"), rsv=RSV1))
        assert (await client.close_frame()).code == 1002
    assert app.session_ends == [1002]


async def test_graphql_subscription_over_deflate_and_the_cap_on_inflated_messages() -> None:
    app = build_app(limits=Limits(max_ws_message_bytes=32 * KIB))
    async with serving_graphql(app, permessage_deflate=True) as port:
        socket = await GraphQLSocket.connect(port, deflate=True)
        assert socket.extensions == ["permessage-deflate"]
        assert await socket.init() == {"type": "connection_ack"}
        await socket.send(subscribe("1", "subscription { ticks(n: 3) }"))
        events = [await socket.receive() for _ in range(4)]
        assert [event["type"] for event in events] == ["next", "next", "next", "complete"]
        assert [event["payload"]["data"]["ticks"] for event in events[:3]] == [0, 1, 2]
        padding = " " * (32 * KIB)  # valid JSON, tiny once compressed
        await socket.send('{"type": "ping"' + padding + "}")
        code, _reason = await socket.close_frame()
        await socket.aclose()
    assert code == 1009
