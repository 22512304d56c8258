"""The native server's WebSocket side over real sockets; wsproto and raw frames as the client."""

from __future__ import annotations

import os
import struct
from collections import deque
from functools import partial

import anyio
import anyio.abc
import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

from anyql.limits import Limits
from anyql.transports._native_ws import MessageAssembler, MessageTooBig
from anyql.transports.native import serve
from tests.fake_app import FakeApp, serving
from tests.test_native_http import exchange, read_until_eof

pytestmark = pytest.mark.anyio

KIB = 1024
MIB = 1024 * KIB


class Client:
    """A wsproto client on a real socket; ``receive`` yields server events one at a time."""

    def __init__(self, stream: anyio.abc.SocketStream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.pending: deque[Event] = deque()
        self.eof = False

    @classmethod
    async def open(
        cls,
        port: int,
        path: str = "/graphql",
        subprotocols: tuple[str, ...] = ("graphql-transport-ws",),
    ) -> tuple[Client, Event]:
        client = cls(await anyio.connect_tcp("127.0.0.1", port))
        await client.send(Request(host="test", target=path, subprotocols=list(subprotocols)))
        return client, await client.receive()

    async def send(self, event: Event) -> None:
        await self.stream.send(self.ws.send(event))

    async def receive(self) -> Event:
        while not self.pending:
            try:
                data: bytes | None = await self.stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                data = None
            self.eof = data is None
            self.ws.receive_data(data)
            self.pending.extend(self.ws.events())
        return self.pending.popleft()

    async def receive_message(self) -> str | bytes:
        event = await self.receive()
        assert isinstance(event, Message), event
        return event.data

    async def close_frame(self) -> CloseConnection:
        """Skip data until the server's close (or the 1006 that stands for a lost connection)."""
        while True:
            event = await self.receive()
            if isinstance(event, CloseConnection):
                return event

    async def aclose(self) -> None:
        await anyio.aclose_forcefully(self.stream)


def frame(
    opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, masked: bool = True
) -> bytes:
    """One raw client frame, for input wsproto would refuse to produce."""
    first = (0x80 if fin else 0) | rsv | opcode
    length = len(payload)
    mask_bit = 0x80 if masked else 0
    if length < 126:
        header = bytes([first, mask_bit | length])
    elif length < 65536:
        header = bytes([first, mask_bit | 126]) + struct.pack("!H", length)
    else:
        header = bytes([first, mask_bit | 127]) + struct.pack("!Q", length)
    if not masked:
        return header + payload
    key = os.urandom(4)
    return header + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


async def test_upgrade_accepts_the_subprotocol_the_app_chooses_and_echoes() -> None:
    app = FakeApp()
    async with serving(app) as port:
        client, answer = await Client.open(port, subprotocols=("unknown", "graphql-ws"))
        assert isinstance(answer, AcceptConnection)
        assert answer.subprotocol == "graphql-ws"
        assert answer.extensions == []  # permessage-deflate is off unless enabled
        await client.send(TextMessage(data="hello"))
        assert await client.receive_message() == "hello"
        await client.send(BytesMessage(data=b"\x00\x01"))
        assert await client.receive_message() == "binary:0001"
        await client.send(CloseConnection(code=1000))
        assert (await client.close_frame()).code == 1000
        await client.aclose()


async def test_frames_sent_with_the_handshake_reach_the_session() -> None:
    app = FakeApp()
    async with serving(app) as port, await anyio.connect_tcp("127.0.0.1", port) as stream:
        client = Client(stream)
        handshake = client.ws.send(Request(host="x", target="/", subprotocols=["echo"]))
        first_frame = frame(0x1, b"early")
        await stream.send(handshake + first_frame)
        assert isinstance(await client.receive(), AcceptConnection)
        assert await client.receive_message() == "early"


async def test_permessage_deflate_offer_is_ignored() -> None:
    app = FakeApp()
    async with serving(app) as port, await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Protocol: echo\r\n"
            b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
        )
        head = await stream.receive()
    assert head.startswith(b"HTTP/1.1 101")
    assert b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head
    assert b"sec-websocket-extensions" not in head.lower()


async def test_no_common_subprotocol_is_accepted_without_one_then_closed_4406() -> None:
    app = FakeApp()
    async with serving(app) as port:
        client, answer = await Client.open(port, subprotocols=("mqtt",))
        assert isinstance(answer, AcceptConnection)
        assert answer.subprotocol is None
        close = await client.close_frame()
        assert (close.code, close.reason) == (4406, "Subprotocol not acceptable")
        await client.aclose()


async def test_app_refuses_the_handshake_with_its_response() -> None:
    app = FakeApp()
    async with serving(app) as port:
        client, answer = await Client.open(port, path="/forbidden")
        assert isinstance(answer, RejectConnection)
        assert answer.status_code == 403
        body = await client.receive()
        assert isinstance(body, RejectData)
        await client.aclose()


@pytest.mark.parametrize(
    ("extra_headers", "status"),
    [
        (b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 12\r\n", 426),
        (b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", 400),
        (b"Sec-WebSocket-Version: 13\r\n", 400),
        (b"Sec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n", 400),
    ],
)
async def test_W10_bad_version_or_key_is_refused_with_the_supported_version(
    extra_headers: bytes, status: int
) -> None:
    app = FakeApp()
    raw = (
        b"GET /graphql HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        + extra_headers
        + b"\r\n"
    )
    async with serving(app) as port:
        [(got, headers, _)] = await exchange(port, raw)
    assert got == status
    assert headers["sec-websocket-version"] == "13"
    assert "upgrade" not in headers
    assert app.session_ends == []


async def test_send_many_writes_each_message_as_its_own_frame() -> None:
    app = FakeApp()
    async with serving(app) as port:
        client, _ = await Client.open(port)
        await client.send(TextMessage(data="many:3"))
        assert [await client.receive_message() for _ in range(3)] == ["part 0", "part 1", "part 2"]
        await client.aclose()


def test_W04_assembler_never_holds_more_than_the_cap() -> None:
    assembler = MessageAssembler(1 * MIB)
    fragment = "a" * (64 * KIB)
    held = []
    with pytest.raises(MessageTooBig):
        for _ in range(32):
            assembler.feed(TextMessage(data=fragment, frame_finished=True, message_finished=False))
            held.append(assembler.buffered_bytes)
    assert max(held) == 1 * MIB
    assert len(held) == 16
    assert assembler.buffered_bytes == 0


def test_W04_assembler_counts_utf8_bytes_not_characters() -> None:
    assembler = MessageAssembler(10)
    with pytest.raises(MessageTooBig):
        assembler.feed(TextMessage(data="ééééé", message_finished=False))  # 10 bytes: fits
        assembler.feed(TextMessage(data="é", message_finished=True))


def test_assembler_joins_fragments() -> None:
    assembler = MessageAssembler(100)
    assert assembler.feed(BytesMessage(data=b"ab", message_finished=False)) is None
    assert assembler.feed(BytesMessage(data=b"cd", message_finished=True)) == b"abcd"
    assert assembler.feed(TextMessage(data="x", message_finished=True)) == "x"


async def test_W04_message_over_the_cap_in_64_KiB_fragments_closes_1009() -> None:
    app = FakeApp(Limits(max_ws_message_bytes=1 * MIB))
    async with serving(app) as port:
        client, _ = await Client.open(port)
        closed = anyio.Event()
        fragment = "f" * (64 * KIB)

        async def send_fragments() -> None:
            for index in range(32):  # 2 MiB in all
                if closed.is_set():
                    return
                await client.send(TextMessage(data=fragment, message_finished=index == 31))

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(send_fragments)
            close = await client.close_frame()
            closed.set()
        assert (close.code, close.reason) == (1009, "Message too big")
        await client.send(close.response())
        assert isinstance(await client.receive(), CloseConnection)  # then the TCP close
        assert client.eof
        await client.aclose()
    assert app.session_ends == [1009]


async def test_W04_one_frame_declaring_2_MiB_is_cut_off_after_the_cap() -> None:
    app = FakeApp(Limits(max_ws_message_bytes=1 * MIB))
    async with serving(app) as port:
        client, _ = await Client.open(port)
        header = bytes([0x82, 0x80 | 127]) + struct.pack("!Q", 2 * MIB) + b"\x00\x00\x00\x00"
        await client.stream.send(header)
        for _ in range(17):  # 1 MiB + 64 KiB of the 2 MiB payload, zero mask
            await client.stream.send(b"z" * (64 * KIB))
        assert (await client.close_frame()).code == 1009
        await client.aclose()
    assert app.session_ends == [1009]


async def test_W01_invalid_utf8_text_closes_1007() -> None:
    app = FakeApp()
    async with serving(app) as port:
        client, _ = await Client.open(port)
        await client.stream.send(frame(0x1, b"ok \xff\xfe"))
        assert (await client.close_frame()).code == 1007
        await client.aclose()
    assert app.session_ends == [1007]


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(frame(0x3, b"x"), id="reserved-opcode"),
        pytest.param(frame(0x1, b"x", masked=False), id="unmasked"),
        pytest.param(frame(0x9, b"p" * 126), id="control-over-125"),
        pytest.param(frame(0x1, b"x", rsv=0x40), id="rsv1"),
        pytest.param(frame(0x0, b"x"), id="continuation-without-start"),
        pytest.param(frame(0x9, b"p", fin=False), id="fragmented-control"),
    ],
)
async def test_W02_framing_violation_closes_1002(raw: bytes) -> None:
    app = FakeApp()
    async with serving(app) as port:
        client, _ = await Client.open(port)
        await client.stream.send(raw)
        assert (await client.close_frame()).code == 1002
        await client.aclose()
    assert app.session_ends == [1002]


async def test_W03_ping_inside_a_fragmented_message_is_answered_and_the_message_reassembled() -> (
    None
):
    app = FakeApp()
    async with serving(app) as port:
        client, _ = await Client.open(port)
        await client.send(TextMessage(data="hel", message_finished=False))
        await client.send(Ping(payload=b"p1"))
        await client.send(TextMessage(data="lo", message_finished=True))
        events = [await client.receive(), await client.receive()]
        assert Pong(payload=b"p1") in events
        assert any(isinstance(e, TextMessage) and e.data == "hello" for e in events)
        await client.aclose()


async def test_W06_ping_flood_gets_coalesced_pongs_for_the_latest_ping() -> None:
    app = FakeApp()
    async with serving(app) as port:
        client, _ = await Client.open(port)
        pings = 10_000
        flood = b"".join(client.ws.send(Ping(payload=b"%d" % n)) for n in range(pings))
        await client.stream.send(flood + client.ws.send(TextMessage(data="after")))
        pongs: list[bytes] = []
        echoed = False
        with anyio.fail_after(10):
            while not echoed or pongs[-1:] != [b"%d" % (pings - 1)]:
                event = await client.receive()
                if isinstance(event, Pong):
                    pongs.append(bytes(event.payload))
                else:
                    assert event == TextMessage(data="after")
                    echoed = True
        assert 1 <= len(pongs) <= 100
        await client.aclose()


@pytest.mark.parametrize("code", [1005, 1006, 1015, 999])
async def test_W07_close_code_not_allowed_on_the_wire_closes_1002(code: int) -> None:
    app = FakeApp()
    async with serving(app) as port:
        client, _ = await Client.open(port)
        await client.stream.send(frame(0x8, struct.pack("!H", code)))
        assert (await client.close_frame()).code == 1002
        await client.aclose()


async def test_W09_data_after_a_client_close_is_ignored_and_the_close_answered_once() -> None:
    app = FakeApp()
    async with serving(app) as port:
        client, _ = await Client.open(port)
        await client.stream.send(
            frame(0x8, struct.pack("!H", 1000) + b"bye") + frame(0x1, b"ignored") * 3
        )
        close = await client.close_frame()
        assert close.code == 1000
        raw = b""
        with anyio.fail_after(5):
            while True:  # everything after the close frame, until the server closes TCP
                try:
                    raw += await client.stream.receive()
                except anyio.EndOfStream:
                    break
        assert raw == b""
        assert client.pending == deque()
        await client.aclose()
    assert app.session_ends == [1000]
    assert app.sent_after_close == [1000]


async def test_close_is_idempotent_and_truncates_the_reason_to_123_bytes() -> None:
    app = FakeApp()
    async with serving(app) as port:
        client, _ = await Client.open(port)
        await client.send(TextMessage(data="close:4000:" + "é" * 100))
        close = await client.close_frame()
        assert close.code == 4000
        assert close.reason == "é" * 61  # 122 bytes; a 62nd would make 124
        await client.send(close.response())
        assert isinstance(await client.receive(), CloseConnection)
        assert client.pending == deque()
        await client.aclose()
    assert app.session_ends == [4000]
    assert app.sent_after_close == [4000]


async def test_session_exception_closes_1011_and_the_server_keeps_serving() -> None:
    app = FakeApp()
    async with serving(app) as port:
        client, _ = await Client.open(port)
        await client.send(TextMessage(data="raise"))
        assert (await client.close_frame()).code == 1011
        await client.aclose()
        other, _ = await Client.open(port)
        await other.send(TextMessage(data="still here"))
        assert await other.receive_message() == "still here"
        await other.aclose()


async def test_W08_client_reset_ends_the_session_with_1006() -> None:
    app = FakeApp()
    async with serving(app) as port:
        client, _ = await Client.open(port)
        await client.send(TextMessage(data="one"))
        assert await client.receive_message() == "one"
        await client.aclose()
        other, _ = await Client.open(port)  # a fresh session proves the first ended
        await other.send(CloseConnection(code=1000))
        await other.close_frame()
        await other.aclose()
    assert app.session_ends[0] == 1006


async def assert_still_open(client: Client) -> None:
    """Send a message and read until its echo, answering the server's pings meanwhile."""
    await client.send(TextMessage(data="alive"))
    while (event := await client.receive()) != TextMessage(data="alive"):
        assert isinstance(event, Ping)
        await client.send(event.response())


@pytest.mark.autojump
async def test_keep_alive_pings_and_aborts_without_a_pong() -> None:
    app = FakeApp(Limits(keep_alive_interval=0.05, pong_timeout=0.05))
    async with serving(app) as port:
        client, _ = await Client.open(port)
        with anyio.fail_after(5):
            assert isinstance(await client.receive(), Ping)  # not answered
            close = await client.close_frame()
        assert close.code == 1006  # no close frame: the TCP connection was dropped
        assert client.eof
        await client.aclose()
    assert app.session_ends == [1006]


@pytest.mark.autojump
async def test_keep_alive_answered_keeps_the_connection_open() -> None:
    app = FakeApp(Limits(keep_alive_interval=0.05, pong_timeout=0.05))
    async with serving(app) as port:
        client, _ = await Client.open(port)
        with anyio.fail_after(5):
            for _ in range(3):
                ping = await client.receive()
                assert isinstance(ping, Ping)
                await client.send(ping.response())
            await assert_still_open(client)
        await client.aclose()


@pytest.mark.autojump
async def test_client_pings_are_answered_while_the_server_awaits_its_own_pong() -> None:
    app = FakeApp(Limits(keep_alive_interval=0.05, pong_timeout=10.0))
    async with serving(app) as port:
        client, _ = await Client.open(port)
        with anyio.fail_after(5):
            server_ping = await client.receive()
            assert isinstance(server_ping, Ping)
            await client.send(Ping(payload=b"mine"))
            assert await client.receive() == Pong(payload=b"mine")
            await client.send(server_ping.response())
            await assert_still_open(client)
        await client.aclose()


async def test_graceful_shutdown_reaches_sessions_which_close_1001() -> None:
    app = FakeApp()
    trigger = anyio.Event()
    stopped = anyio.Event()

    async def run_server(*, task_status: anyio.abc.TaskStatus[int]) -> None:
        await serve(app, port=0, shutdown_trigger=trigger.wait, task_status=task_status)
        stopped.set()

    async with anyio.create_task_group() as tasks:
        port = await tasks.start(run_server)
        client, _ = await Client.open(port)
        await client.send(TextMessage(data="hi"))
        assert await client.receive_message() == "hi"
        trigger.set()
        with anyio.fail_after(5):
            close = await client.close_frame()
            assert (close.code, close.reason) == (1001, "Going away")
            await client.send(close.response())
            await read_until_eof(client.stream)
            await client.aclose()
            await stopped.wait()
    assert app.handle is not None and app.handle.shutdown_calls == 1
    assert app.session_ends == ["shutdown"]


async def test_cancelling_serve_closes_every_connection() -> None:
    app = FakeApp()
    async with anyio.create_task_group() as tasks:
        port = await tasks.start(partial(serve, app, port=0))
        client, _ = await Client.open(port)
        tasks.cancel_scope.cancel()
    with anyio.fail_after(5):
        assert isinstance(await client.close_frame(), CloseConnection)
    assert client.eof
    await client.aclose()


async def test_client_caused_failures_are_not_logged_at_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = FakeApp()
    async with serving(app) as port:
        client, _ = await Client.open(port)
        await client.stream.send(frame(0x3, b"x"))
        await client.close_frame()
        await client.aclose()
        client, _ = await Client.open(port)
        await client.stream.send(frame(0x1, b"cut", fin=False)[:4])  # a frame cut short
        await client.aclose()
        await exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n")
        client, _ = await Client.open(port)  # the server still answers
        await client.send(CloseConnection(code=1000))
        await client.close_frame()
        await client.aclose()
    assert app.session_ends == [1002, 1006, 1000]
    assert [r for r in caplog.records if r.levelno >= 30] == []


class _FlakyListener:
    """Fails to accept the way a process out of file descriptors does, then blocks."""

    def __init__(self, failures: list[BaseException]) -> None:
        self.failures = failures
        self.calls = 0
        self.waiting = anyio.Event()

    async def accept(self) -> anyio.abc.SocketStream:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        self.waiting.set()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")


@pytest.mark.autojump
async def test_accept_survives_running_out_of_file_descriptors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from anyql.transports.native import _accept_forever

    emfile = OSError(24, "Too many open files")
    broken = anyio.BrokenResourceError()
    broken.__cause__ = emfile  # how anyio reports it on Trio
    listener = _FlakyListener([broken, emfile])
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(_accept_forever, listener, tasks, None)
        with anyio.fail_after(10):
            await listener.waiting.wait()
        tasks.cancel_scope.cancel()
    assert listener.calls == 3
    failures = [r.getMessage() for r in caplog.records if "accept() failed" in r.getMessage()]
    assert failures == ["anyql: accept() failed: [Errno 24] Too many open files"] * 2
