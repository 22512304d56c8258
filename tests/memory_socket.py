"""An in-memory WebSocket for driving the session driver directly in tests."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from anyql.errors import ConnectionClosed
from anyql.session import serve_session
from anyql.types import RequestInfo

#: The client address the session is told (log lines name it).
PEER = ("127.0.0.1", 5555)


class MemorySocket:
    """The server's end: a ``WebSocketTransport`` over two memory streams."""

    def __init__(
        self,
        subprotocol: str | None,
        incoming: MemoryObjectReceiveStream[str | bytes],
        outgoing: MemoryObjectSendStream[str],
    ) -> None:
        self._subprotocol = subprotocol
        self._incoming = incoming
        self._outgoing = outgoing
        self.close_frame: tuple[int, str] | None = None
        self.closed = anyio.Event()

    @property
    def subprotocol(self) -> str | None:
        return self._subprotocol

    async def receive(self) -> str | bytes:
        if self.close_frame is not None:
            raise ConnectionClosed(self.close_frame[0])
        try:
            return await self._incoming.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise ConnectionClosed(1006) from None

    async def send_text(self, text: str) -> None:
        if self.close_frame is not None:
            raise ConnectionClosed(self.close_frame[0])
        try:
            await self._outgoing.send(text)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            raise ConnectionClosed(1006) from None

    async def close(self, code: int, reason: str = "") -> None:
        if self.close_frame is None:
            self.close_frame = (code, reason)
            self._outgoing.close()
            self.closed.set()


class Peer:
    """The client's end, speaking JSON."""

    def __init__(
        self,
        socket: MemorySocket,
        to_server: MemoryObjectSendStream[str | bytes],
        from_server: MemoryObjectReceiveStream[str],
    ) -> None:
        self.socket = socket
        self._to_server = to_server
        self._from_server = from_server

    async def send(self, message: dict[str, Any] | str | bytes) -> None:
        payload = message if isinstance(message, str | bytes) else json.dumps(message)
        await self._to_server.send(payload)

    async def receive_text(self) -> str:
        """The next frame exactly as the server wrote it."""
        try:
            return await self._from_server.receive()
        except anyio.EndOfStream:
            raise AssertionError(f"server closed with {self.socket.close_frame}") from None

    async def receive(self) -> dict[str, Any]:
        """The next frame as JSON; fails if the server closed instead."""
        try:
            text = await self._from_server.receive()
        except anyio.EndOfStream:
            raise AssertionError(f"server closed with {self.socket.close_frame}") from None
        result: dict[str, Any] = json.loads(text)
        return result

    def pending_sends(self) -> int:
        """How many server sends are blocked on this client reading."""
        return self._from_server.statistics().tasks_waiting_send

    async def expect_close(self) -> tuple[int, str]:
        """Read until the server closes; frames in between must not exist."""
        async for text in self._from_server:
            raise AssertionError(f"expected a close, got {text}")
        assert self.socket.close_frame is not None
        return self.socket.close_frame

    async def disconnect(self) -> None:
        """The TCP connection vanishes (no close frame)."""
        await self._to_server.aclose()

    async def init(self, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        message: dict[str, Any] = {"type": "connection_init"}
        if payload is not None:
            message["payload"] = payload
        await self.send(message)
        return await self.receive()


@asynccontextmanager
async def session(
    app: Any, subprotocol: str | None = "graphql-transport-ws", client_buffer: int = 1000
) -> AsyncIterator[Peer]:
    """Serve one session of ``app`` in a task group; the block is the client.

    On leaving the block the client disconnects (if it has not) and the session must end by
    itself: the task group waits for it, so a leaked task hangs the test.
    """
    to_server, server_in = anyio.create_memory_object_stream[str | bytes](100)
    server_out, from_server = anyio.create_memory_object_stream[str](client_buffer)
    socket = MemorySocket(subprotocol, server_in, server_out)
    info = RequestInfo(method="GET", path="/graphql", headers=(("host", "test"),), client=PEER)
    peer = Peer(socket, to_server, from_server)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(serve_session, app, socket, info)
            try:
                yield peer
            finally:
                await peer.disconnect()
    finally:
        for stream in (to_server, server_in, server_out, from_server):
            stream.close()
