"""The fan-out fast path over real sockets: frames written at once, from the delivering task.

A ``NativeWebSocket`` on a real TCP connection whose server side has a small ``SO_SNDBUF``
and whose client does not read, so the kernel takes frames in part: what ``write_now``
could not send must go out first, whole, before anything written later (awaited frames,
pongs, the close frame), and a peer that vanishes mid-frame must end the socket cleanly.
A wsproto client checks every frame. In-memory streams never take this path.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial

import anyio
import anyio.abc
import anyio.streams.stapled
import h11
import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.connection import Connection
from wsproto.events import AcceptConnection, CloseConnection, Ping, Pong, Request, TextMessage

from anyql.errors import ConnectionClosed
from anyql.limits import Limits
from anyql.transports._direct import direct_writer
from anyql.transports._framing import text_frame, text_frames
from anyql.transports._native_ws import NativeWebSocket, accept_websocket, native_websocket

pytestmark = pytest.mark.anyio

#: Big enough that a few messages overflow the small buffers below.
MESSAGE_BYTES = 48 * 1024
SMALL_BUFFER = 4096


@dataclass
class Pair:
    server: NativeWebSocket
    client_stream: anyio.abc.SocketStream
    client: WSConnection

    async def read_messages(self, count: int) -> list[str | bytes]:
        """Read until ``count`` messages, pongs or closes arrived, in order (as str or bytes)."""
        events: list[str | bytes] = []
        text: list[str] = []
        while len(events) < count:
            data = await self.client_stream.receive()
            self.client.receive_data(data)
            for event in self.client.events():
                if isinstance(event, TextMessage):
                    text.append(event.data)
                    if event.message_finished:
                        events.append("".join(text))
                        text.clear()
                elif isinstance(event, Pong):
                    events.append(b"\x00pong:" + bytes(event.payload))
                elif isinstance(event, CloseConnection):
                    events.append(b"\x00close:" + str(event.code).encode())
        return events


@asynccontextmanager
async def pair(*, send_buffer: int | None = SMALL_BUFFER) -> AsyncIterator[Pair]:
    """A server ``NativeWebSocket`` and a wsproto client on a real TCP connection."""
    listener = (await anyio.create_tcp_listener(local_host="127.0.0.1")).listeners[0]
    assert isinstance(listener, anyio.abc.SocketListener)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, await anyio.connect_tcp("127.0.0.1", port) as client_stream:
        server_stream = await listener.accept()
        async with server_stream:
            client = WSConnection(ConnectionType.CLIENT)
            request = Request(host="test", target="/graphql", subprotocols=["graphql-transport-ws"])
            await client_stream.send(client.send(request))
            head = await server_stream.receive()
            parser = h11.Connection(h11.SERVER)
            parser.receive_data(head)
            event = parser.next_event()
            assert isinstance(event, h11.Request)
            accepted = accept_websocket(event.headers, event.target, "graphql-transport-ws", b"")
            await server_stream.send(accepted.handshake)
            client.receive_data(await client_stream.receive())
            assert isinstance(next(client.events()), AcceptConnection)
            if send_buffer is not None:
                raw = server_stream.extra(anyio.abc.SocketAttribute.raw_socket)
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
                raw_client = client_stream.extra(anyio.abc.SocketAttribute.raw_socket)
                raw_client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, send_buffer)
            limits = Limits(pong_timeout=30.0, keep_alive_interval=0)
            async with native_websocket(
                server_stream, accepted, "graphql-transport-ws", limits
            ) as server:
                yield Pair(server, client_stream, client)


def numbered(index: int) -> bytes:
    return f"{index:06d}".encode() + b"x" * (MESSAGE_BYTES - 6)


async def test_a_direct_writer_exists_for_real_sockets_only() -> None:
    async with pair(send_buffer=None) as p:
        assert direct_writer(p.client_stream) is not None
    not_a_socket: anyio.abc.ByteStream = anyio.streams.stapled.StapledByteStream(
        p.client_stream, p.client_stream
    )
    assert direct_writer(not_a_socket) is None  # TLS, memory streams: always awaited


async def test_partial_writes_go_out_whole_and_in_order_before_later_frames() -> None:
    async with pair() as p:
        taken = 0
        while p.server.write_now(numbered(taken)):
            taken += 1
            assert taken < 10_000, "the kernel never refused a byte"
        assert taken >= 1  # at least one message went through the fast path
        # Now a residue waits (or the lock is held by its flusher): later frames queue behind.
        later = [numbered(taken + i) for i in range(3)]
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(p.server.send_encoded, later)
            messages = await p.read_messages(taken + 3)
        assert messages == [numbered(i).decode() for i in range(taken + 3)]


async def test_pongs_and_the_close_frame_wait_for_a_partly_written_frame() -> None:
    async with pair() as p:
        taken = 0
        while p.server.write_now(numbered(taken)):
            taken += 1
        await p.client_stream.send(p.client.send(Ping(payload=b"hello")))
        async with anyio.create_task_group() as tasks:

            async def receive_then_close() -> None:
                with pytest.raises(ConnectionClosed):
                    await p.server.receive()  # answers the ping, then reads the close reply

            tasks.start_soon(receive_then_close)
            messages = await p.read_messages(taken + 1)
            assert messages[:taken] == [numbered(i).decode() for i in range(taken)]
            assert messages[taken] == b"\x00pong:hello"
            await p.server.close(4000, "done")
            assert await p.read_messages(1) == [b"\x00close:4000"]
            await p.client_stream.send(p.client.send(CloseConnection(code=4000)))


async def test_write_now_declines_while_an_awaited_write_holds_the_socket() -> None:
    async with pair() as p:
        while p.server.write_now(numbered(0)):
            pass  # fill the kernel buffers until a residue waits
        assert not p.server.write_now(b"{}")  # never interleaved with the residue


async def test_a_peer_that_vanishes_mid_frame_ends_the_socket_cleanly() -> None:
    async with pair() as p:
        while p.server.write_now(numbered(0)):
            pass
        raw = p.client_stream.extra(anyio.abc.SocketAttribute.raw_socket)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        await anyio.aclose_forcefully(p.client_stream)  # a reset, mid-frame
        with pytest.raises(ConnectionClosed) as closed:
            with anyio.fail_after(10):
                while True:
                    await p.server.send_encoded([numbered(1)])
        assert closed.value.code == 1006
        with pytest.raises(ConnectionClosed):
            p.server.write_now(b"{}")
        with pytest.raises(ConnectionClosed):
            await p.server.receive()


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
def test_frames_are_what_a_websocket_client_parses(size: int) -> None:
    body = "é".encode() + b"a" * size
    client = Connection(ConnectionType.CLIENT)
    client.receive_data(text_frames([body, b"{}"]) + text_frame(body[:1], body[1:]))
    events = list(client.events())
    assert all(isinstance(event, TextMessage) and event.message_finished for event in events)
    assert [event.data for event in events] == [body.decode(), "{}", body.decode()]


ITEMS = 300_000


def _flooding_client(port: int, first_seen: threading.Event) -> None:
    """A client on its own thread that reads as fast as the kernel delivers, and sends
    ``complete`` as soon as the first ``next`` arrives."""
    import json

    client = WSConnection(ConnectionType.CLIENT)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            client.send(Request(host="t", target="/graphql", subprotocols=["graphql-transport-ws"]))
        )

        def send(message: dict[str, object]) -> None:
            sock.sendall(client.send(TextMessage(data=json.dumps(message))))

        completed = False
        while True:
            data = sock.recv(65536)
            if not data:
                return
            client.receive_data(data)
            for event in client.events():
                if isinstance(event, AcceptConnection):
                    send({"type": "connection_init"})
                elif isinstance(event, TextMessage):
                    message = json.loads(event.data)
                    if message["type"] == "connection_ack":
                        send(
                            {
                                "id": "1",
                                "type": "subscribe",
                                "payload": {"query": "subscription { flood }"},
                            }
                        )
                    elif message["type"] == "next" and not completed:
                        completed = True
                        # Set before sending: once the server reads complete it ends the
                        # source, and the test may check this flag before this thread runs again.
                        first_seen.set()
                        send({"id": "1", "type": "complete"})
                elif isinstance(event, CloseConnection):
                    return


async def test_a_source_that_never_awaits_does_not_hold_the_loop() -> None:
    from anyql import GraphQL, Schema
    from anyql.transports.native import serve

    schema = Schema("type Query { ok: Int } type Subscription { flood: Int! }")
    yielded: list[int] = []
    ended = anyio.Event()

    @schema.field("Subscription.flood")
    async def flood(root: object, info: object) -> AsyncIterator[int]:
        try:
            for i in range(ITEMS):  # never awaits: only the session can let others run
                yielded.append(i)
                yield i
        finally:
            ended.set()

    app = GraphQL(schema)
    first_seen = threading.Event()
    async with anyio.create_task_group() as tasks:
        port = await tasks.start(partial(serve, app, port=0))
        client = threading.Thread(target=_flooding_client, args=(port, first_seen), daemon=True)
        client.start()
        with anyio.fail_after(60):
            await ended.wait()
        tasks.cancel_scope.cancel()
    # The client's complete was read and acted on while the source still had items left.
    assert first_seen.is_set()
    assert len(yielded) < ITEMS
