"""An in-memory pair of anyio byte streams, to run ``serve_connection`` without sockets."""

from __future__ import annotations

import math

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream


class MemoryByteStream(anyio.abc.ByteStream):
    """One end: ``send`` feeds the peer's ``receive``; ``send_eof`` ends that direction."""

    def __init__(
        self, outgoing: MemoryObjectSendStream[bytes], incoming: MemoryObjectReceiveStream[bytes]
    ) -> None:
        self._outgoing = outgoing
        self._incoming = incoming
        self._buffer = b""

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if not self._buffer:
            self._buffer = await self._incoming.receive()  # EndOfStream after the peer's EOF
        data, self._buffer = self._buffer[:max_bytes], self._buffer[max_bytes:]
        return data

    async def send(self, item: bytes) -> None:
        if item:
            await self._outgoing.send(item)

    async def send_eof(self) -> None:
        await self._outgoing.aclose()

    async def aclose(self) -> None:
        await self._outgoing.aclose()
        await self._incoming.aclose()


def byte_stream_pair() -> tuple[MemoryByteStream, MemoryByteStream]:
    """Two connected ends (unbounded buffers, so neither side ever blocks on send)."""
    to_server, server_in = anyio.create_memory_object_stream[bytes](math.inf)
    to_client, client_in = anyio.create_memory_object_stream[bytes](math.inf)
    return MemoryByteStream(to_client, server_in), MemoryByteStream(to_server, client_in)
