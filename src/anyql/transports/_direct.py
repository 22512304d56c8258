"""Synchronous writes to an anyio socket stream: the fan-out fast path's only I/O.

Owns ``DirectWriter`` and ``direct_writer``. A delivery that finds a connection idle writes
its frame from the publishing task at once, with no ``await``, instead of waking a writer
task. anyio offers no such call, so this module is the one place that reaches past it:

* Trio: ``SocketAttribute.raw_socket`` is the stdlib socket, already non-blocking; ``send``
  takes what the kernel accepts now and the caller keeps the rest (``EAGAIN`` is 0 bytes).
* asyncio: anyio writes through an asyncio transport, whose ``raw_socket`` has no ``send``;
  writing to the transport keeps the order of every other write. Its buffer is unbounded,
  so a write is offered only while that buffer is empty (the kernel took all earlier
  bytes); a busy connection goes back to the ordinary, awaited path, which waits for the
  transport to drain.

Anything else (an in-memory stream, TLS, a backend we do not know) gets None and keeps the
ordinary path. Never caches a file descriptor: the socket object is asked every time, so a
closed socket fails with ``EBADF`` instead of writing to a reused descriptor. Imports anyio
only; tells the backends apart by the module of anyio's stream class.
"""

from __future__ import annotations

import socket
from typing import Any, Protocol

import anyio.abc

__all__ = ["DirectWriter", "direct_writer"]


class DirectWriter(Protocol):
    """Writes bytes to a connected socket without waiting."""

    def write(self, data: bytes | memoryview) -> int:
        """Write what can go now; return the number of bytes taken (0: none, try later).

        Raises:
            OSError: the connection is broken or closed (``EPIPE``, ``ECONNRESET``,
                ``EBADF``); nothing more can be written.
        """
        ...


class _SocketWriter:
    __slots__ = ("_socket",)

    def __init__(self, sock: socket.socket) -> None:
        self._socket = sock

    def write(self, data: bytes | memoryview) -> int:
        try:
            return self._socket.send(data)
        except (BlockingIOError, InterruptedError):
            return 0


class _TransportWriter:
    __slots__ = ("_transport",)

    def __init__(self, transport: Any) -> None:
        self._transport = transport

    def write(self, data: bytes | memoryview) -> int:
        transport = self._transport
        if transport.is_closing():
            raise BrokenPipeError("the transport is closing")
        if transport.get_write_buffer_size():
            return 0  # the kernel is refusing bytes: let the awaited path wait for it
        transport.write(data)
        return len(data)


def direct_writer(stream: anyio.abc.ByteStream) -> DirectWriter | None:
    """A synchronous writer for ``stream``, or None when only the awaited path is safe.

    Args:
        stream: the connection's byte stream, as the listener accepted it.

    Returns:
        A writer that shares the stream's ordering, or None.
    """
    if not isinstance(stream, anyio.abc.SocketStream):
        return None
    backend = type(stream).__module__
    if backend == "anyio._backends._trio":
        sock = stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
        if isinstance(sock, socket.socket) and sock.type == socket.SOCK_STREAM:
            return _SocketWriter(sock)
        return None
    if backend == "anyio._backends._asyncio":
        transport = getattr(stream, "_transport", None)
        if transport is not None and all(
            hasattr(transport, name) for name in ("write", "get_write_buffer_size", "is_closing")
        ):
            return _TransportWriter(transport)
    return None
