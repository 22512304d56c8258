"""The test client's GraphQL WebSocket: one reader task, per-operation queues.

Owns ``WebSocketConnection`` and ``OperationResults``. Theory of operation: the reader task
(started by ``TestClient.websocket`` in the client's task group) answers pings, routes each
frame with the id of a running operation to that operation's queue and everything else
(acks, pongs, protocol errors) to a control queue, drops legacy ``ka`` and records the
close. Queues are unbounded, so the client always reads: it never exercises the server's
slow-consumer policies. Writes go through one lock, so frames never interleave. Imports
anyio, wsproto and ``testing._wire``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Self, TypeGuard

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from wsproto import WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage

from ..errors import ClientError, WebSocketClosed
from ._wire import (
    CLOSE_TIMEOUT,
    READ_SIZE,
    STREAM_ERRORS,
    error_list,
    only_result,
    operation_params,
    send_or_false,
)

logger = logging.getLogger("anyql.testing")

_OPERATION_MESSAGES = frozenset({"next", "data", "error", "complete"})


class WebSocketConnection:
    """One GraphQL WebSocket opened by ``TestClient.websocket``, for either subprotocol.

    ``query`` and ``subscribe`` number their operations "1", "2", ...; frames for those ids
    go to the operation, every other frame to ``receive_json`` (so raw frames sent with
    ``send_json`` should use other ids).

    Attributes:
        subprotocol: the subprotocol the server accepted, or None.
        ack_payload: the ``connection_ack`` payload, or None.
        close_code: the server's close code once closed (1006 without a close frame).
        close_reason: the server's close reason.
    """

    def __init__(
        self, stream: anyio.abc.ByteStream, connection: WSConnection, subprotocol: str | None
    ) -> None:
        self._stream = stream
        self._ws = connection
        self.subprotocol = subprotocol
        self.ack_payload: Any = None
        self.close_code: int | None = None
        self.close_reason = ""
        self._write_lock = anyio.Lock()
        #: Ids are issued in order, "1" upwards; a set of them would grow per operation.
        self._last_id = 0
        self._operations: dict[str, MemoryObjectSendStream[dict[str, Any]]] = {}
        self._control_in, self._control = anyio.create_memory_object_stream[dict[str, Any]](
            math.inf
        )
        self._closed = anyio.Event()
        self._parts: list[str] = []

    @property
    def legacy(self) -> bool:
        """True on the legacy ``graphql-ws`` subprotocol (``start``/``data``/``stop``)."""
        return self.subprotocol == "graphql-ws"

    # --- operations ----------------------------------------------------------------

    async def query(
        self,
        query: str,
        variables: Mapping[str, Any] | None = None,
        operation_name: str | None = None,
        *,
        extensions: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Run a query or mutation over the socket and wait for its ``complete``.

        Args:
            query: the GraphQL document.
            variables: the operation's variables.
            operation_name: which operation of the document to run.
            extensions: the request's ``extensions``.

        Returns:
            The result; ``{"errors": [...]}`` when the server answered with ``error``.

        Raises:
            WebSocketClosed: the socket closed before the operation completed.
            ClientError: the operation completed without a result.
        """
        operation = self.subscribe(query, variables, operation_name, extensions=extensions)
        return await only_result(operation)

    @asynccontextmanager
    async def subscribe(
        self,
        query: str,
        variables: Mapping[str, Any] | None = None,
        operation_name: str | None = None,
        *,
        extensions: Mapping[str, Any] | None = None,
    ) -> AsyncIterator[OperationResults]:
        """Start an operation (``subscribe``, or legacy ``start``) with a fresh id.

        Leaving the block while the operation runs sends ``complete`` (legacy: ``stop``);
        the server then cancels it and closes the resolver's generator.

        Args:
            query: the GraphQL document.
            variables: the operation's variables.
            operation_name: which operation of the document to run.
            extensions: the request's ``extensions``.

        Yields:
            The operation's results as an async iterator.

        Raises:
            WebSocketClosed: the socket is closed.
        """
        self._last_id += 1
        id = str(self._last_id)
        results_in, results = anyio.create_memory_object_stream[dict[str, Any]](math.inf)
        self._operations[id] = results_in
        try:
            kind = "start" if self.legacy else "subscribe"
            payload = operation_params(query, variables, operation_name, extensions)
            await self.send_json({"id": id, "type": kind, "payload": payload})
            yield OperationResults(id, results, self)
        finally:
            live = self._operations.pop(id, None)
            if live is not None:
                live.close()
                stop = {"id": id, "type": "stop" if self.legacy else "complete"}
                with anyio.move_on_after(CLOSE_TIMEOUT, shield=True):
                    await self._send_quietly(json.dumps(stop))
            results.close()

    # --- raw messages --------------------------------------------------------------

    async def send_json(self, message: Any) -> None:
        """Send ``message`` as one JSON text frame.

        Raises:
            WebSocketClosed: the socket is closed.
        """
        await self.send_text(json.dumps(message))

    async def send_text(self, text: str) -> None:
        """Send one text frame as is (for malformed input).

        Raises:
            WebSocketClosed: the socket is closed.
        """
        if not await self._send_quietly(text):
            raise self.closed_error()

    async def receive_json(self) -> dict[str, Any]:
        """The next message that belongs to no running operation (ack, pong, errors...).

        Raises:
            WebSocketClosed: the socket closed first.
        """
        try:
            return await self._control.receive()
        except anyio.EndOfStream:
            raise self.closed_error() from None

    async def close(self, code: int = 1000, reason: str = "") -> tuple[int, str]:
        """Start the closing handshake (if the socket is open) and wait for the server's end.

        Args:
            code: the close code.
            reason: the close reason.

        Returns:
            The server's close code and reason (see ``wait_closed``).
        """
        async with self._write_lock:
            if self._ws.state is ConnectionState.OPEN:
                data = self._ws.send(CloseConnection(code=code, reason=reason))
                with anyio.move_on_after(CLOSE_TIMEOUT, shield=True):
                    await send_or_false(self._stream, data)
        return await self.wait_closed()

    async def wait_closed(self) -> tuple[int, str]:
        """Wait until the server closed the connection (frame and TCP).

        Returns:
            The server's close code and reason; 1006 if it sent no close frame.
        """
        await self._closed.wait()
        return self.close_code or 1006, self.close_reason

    def closed_error(self) -> WebSocketClosed:
        """The ``WebSocketClosed`` describing how this socket closed."""
        return WebSocketClosed(self.close_code or 1006, self.close_reason)

    # --- lifetime, driven by TestClient.websocket ---------------------------------

    async def initialise(self, connection_params: Mapping[str, Any] | None) -> None:
        """Send ``connection_init`` and wait for ``connection_ack``.

        Raises:
            WebSocketClosed: the server closed instead (with the legacy
                ``connection_error`` payload, if one came first).
            ClientError: the server answered something else.
        """
        init: dict[str, Any] = {"type": "connection_init"}
        if connection_params is not None:
            init["payload"] = dict(connection_params)
        await self.send_json(init)
        reply = await self.receive_json()
        if reply.get("type") == "connection_ack":
            self.ack_payload = reply.get("payload")
            return
        if reply.get("type") == "connection_error":
            code, reason = await self.wait_closed()
            raise WebSocketClosed(code, reason, reply.get("payload"))
        raise ClientError(f"expected connection_ack, got {reply!r}")

    async def finish(self) -> None:
        """Close with 1000 if open, then wait (bounded) for the server to close TCP."""
        with anyio.move_on_after(CLOSE_TIMEOUT):
            await self.close()

    async def read_until_closed(self, scope: anyio.CancelScope) -> None:
        """The reader task: route every frame until the connection ends or ``scope`` is."""
        with scope:
            try:
                await self._read_loop()
            finally:
                self._on_closed()

    async def _read_loop(self) -> None:
        while True:
            for event in self._ws.events():
                await self._on_event(event)
            try:
                data: bytes | None = await self._stream.receive(READ_SIZE)
            except STREAM_ERRORS:
                data = None
            if self._ws.state is ConnectionState.CLOSED:
                if data is None:
                    return
                continue  # after the closing handshake: discard until the server closes TCP
            self._ws.receive_data(data)

    async def _on_event(self, event: object) -> None:
        if isinstance(event, TextMessage):
            self._parts.append(event.data)
            if event.message_finished:
                text, self._parts = "".join(self._parts), []
                await self._route(json.loads(text))
        elif isinstance(event, BytesMessage):
            logger.debug("TestClient: ignoring a binary frame")
        elif isinstance(event, Ping):
            await self._send_event(event.response())
        elif isinstance(event, CloseConnection):
            if self.close_code is None:
                self.close_code, self.close_reason = event.code, event.reason or ""
            if self._ws.state is ConnectionState.REMOTE_CLOSING:
                await self._send_event(event.response())

    async def _route(self, message: Any) -> None:
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "ka":
            return
        if kind == "ping" and not self.legacy:
            await self._send_quietly('{"type":"pong"}')
            return
        id = message.get("id") if kind in _OPERATION_MESSAGES else None
        if not self._issued(id):
            self._control_in.send_nowait(message)
            return
        results = self._operations.get(id)
        if results is None:
            return  # the client left the operation's block: frames still in flight, the
            # legacy ``complete`` that answers ``stop``
        results.send_nowait(message)
        if kind in ("complete", "error"):
            del self._operations[id]
            results.close()

    def _issued(self, id: object) -> TypeGuard[str]:
        """Whether ``id`` is one this client started (finished ones included)."""
        return (
            isinstance(id, str)
            and id.isdecimal()
            and id == str(int(id))
            and (0 < int(id) <= self._last_id)
        )

    def _on_closed(self) -> None:
        if self.close_code is None:
            self.close_code = 1006
        for results in self._operations.values():
            results.close()
        self._control_in.close()
        self._closed.set()

    async def _send_quietly(self, text: str) -> bool:
        return await self._send_event(TextMessage(data=text))

    async def _send_event(self, event: TextMessage | CloseConnection | Any) -> bool:
        async with self._write_lock:
            if self._ws.state not in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
                return False
            return await send_or_false(self._stream, self._ws.send(event))


class OperationResults:
    """The results of one WebSocket operation, as an async iterator of GraphQL results.

    Iteration ends at the server's ``complete``. An ``error`` message is yielded as
    ``{"errors": [...]}`` and ends the iteration. A socket that closes first raises
    ``WebSocketClosed``.

    Attributes:
        id: the operation id.
        completed: the server ended the operation (``complete`` or ``error`` was read).
    """

    def __init__(
        self,
        id: str,
        messages: MemoryObjectReceiveStream[dict[str, Any]],
        socket: WebSocketConnection,
    ) -> None:
        self.id = id
        self.completed = False
        self._messages = messages
        self._socket = socket

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> dict[str, Any]:
        if self.completed:
            raise StopAsyncIteration
        try:
            message = await self._messages.receive()
        except anyio.EndOfStream:
            raise self._socket.closed_error() from None
        except anyio.ClosedResourceError:
            raise ClientError("the subscription's block has ended") from None
        kind = message.get("type")
        if kind == "complete":
            self.completed = True
            raise StopAsyncIteration
        if kind == "error":
            self.completed = True
            return {"errors": error_list(message.get("payload"))}
        payload = message.get("payload")
        return payload if isinstance(payload, dict) else {"data": None, "payload": payload}
