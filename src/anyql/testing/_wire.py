"""The wire side of the test client: in-memory byte streams, h11 and wsproto client steps.

Owns ``MemoryByteStream`` (one end of an in-memory connection), the HTTP exchange as a
client (whole, or read as it arrives: ``ResponseReader``), the WebSocket handshake as a
client, ``Response`` and the test client's errors. Imports anyio,
h11, wsproto and ``errors``; must not import the server's transports, the app or graphql:
the client side is plain h11 and wsproto, never the server's own code.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import h11
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, RejectConnection, RejectData, Request

from ..errors import ClientError, ConnectionClosed, ResponseError, WebSocketRejected

Headers = Mapping[str, str] | Iterable[tuple[str, str]]
#: What a broken, closed or reset connection raises, on either end.
STREAM_ERRORS = (
    anyio.EndOfStream,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    ConnectionClosed,
    OSError,
)
#: The ``Accept`` of a plain GraphQL-over-HTTP request.
JSON_ACCEPT = "application/graphql-response+json, application/json;q=0.9"
#: How long leaving a block waits for the server to finish its side of a connection.
CLOSE_TIMEOUT = 5.0
READ_SIZE = 65536


@dataclass(frozen=True, slots=True)
class Response:
    """One HTTP response; header names are lower-case."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        """Return the first value of header ``name`` (case-insensitive), or None."""
        wanted = name.lower()
        return next((value for key, value in self.headers if key == wanted), None)

    @property
    def text(self) -> str:
        """The body decoded as UTF-8 (undecodable bytes replaced)."""
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON.

        Raises:
            ValueError: the body is not JSON.
        """
        return json.loads(self.body)


class MemoryByteStream(anyio.abc.ByteStream):
    """One end of an in-memory, unbounded, ordered byte pipe pair; ``send_eof`` half-closes."""

    def __init__(
        self, outgoing: MemoryObjectSendStream[bytes], incoming: MemoryObjectReceiveStream[bytes]
    ) -> None:
        self._outgoing = outgoing
        self._incoming = incoming
        self._pending = b""

    async def receive(self, max_bytes: int = READ_SIZE) -> bytes:
        if not self._pending:
            self._pending = await self._incoming.receive()
        data, self._pending = self._pending[:max_bytes], self._pending[max_bytes:]
        return data

    async def send(self, item: bytes) -> None:
        if item:
            await self._outgoing.send(bytes(item))
        else:
            await anyio.lowlevel.checkpoint()

    async def send_eof(self) -> None:
        self._outgoing.close()

    async def aclose(self) -> None:
        self._outgoing.close()
        self._incoming.close()
        await anyio.lowlevel.checkpoint()


def stream_pair() -> tuple[MemoryByteStream, MemoryByteStream]:
    """Two connected in-memory byte streams: (the client's end, the server's end)."""
    to_server, server_in = anyio.create_memory_object_stream[bytes](math.inf)
    to_client, client_in = anyio.create_memory_object_stream[bytes](math.inf)
    return MemoryByteStream(to_server, client_in), MemoryByteStream(to_client, server_in)


async def send_or_false(stream: anyio.abc.ByteStream, data: bytes) -> bool:
    """Write ``data``; False (instead of an exception) when the connection is gone."""
    try:
        await stream.send(data)
    except STREAM_ERRORS:
        return False
    return True


async def exchange(stream: anyio.abc.ByteStream, request: h11.Request, body: bytes) -> Response:
    """Send one request with h11 as a client and read the whole response.

    Args:
        stream: a fresh connection.
        request: the request head (with ``host`` and ``content-length``).
        body: the request body.

    Returns:
        The response.

    Raises:
        ClientError: the server closed the connection without a whole, valid response.
    """
    reader = ResponseReader(stream)
    await reader.send(request, body)
    return await reader.rest(await reader.head())


class ResponseReader:
    """One HTTP exchange on a fresh connection, as an h11 client that reads the response as
    it arrives: the head first, then the body piece by piece (a streamed answer).

    Attributes:
        stream: the connection.
        finished: the whole body was read (False while reading, or when the connection
            ended or broke in the middle of it).
        broken: why the body could not be read to its end, once that happened.
    """

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self.finished = False
        self.broken: str | None = None
        self._h11 = h11.Connection(h11.CLIENT)

    async def send(self, request: h11.Request, body: bytes) -> None:
        """Send the request (head, body, end); a server that answered early is not an error."""
        data = self._h11.send(request) or b""
        if body:
            data += self._h11.send(h11.Data(data=body)) or b""
        data += self._h11.send(h11.EndOfMessage()) or b""
        await send_or_false(self.stream, data)  # a server may answer (413) before reading it all

    async def head(self) -> Response:
        """The response's status and headers (``body`` empty).

        Raises:
            ClientError: the server closed the connection without a valid response head.
        """
        while True:
            event = await self._next_event()
            if isinstance(event, h11.Response):
                return Response(event.status_code, decoded(event.headers), b"")
            if isinstance(event, h11.ConnectionClosed):
                raise ClientError("the server closed the connection without a response")

    async def data(self) -> bytes | None:
        """The next piece of the body as it arrives; None once it ended (see ``finished``
        and ``broken``)."""
        if self.finished or self.broken is not None:
            return None
        while True:
            try:
                event = await self._next_event()
            except ClientError as error:
                self.broken = str(error)
                return None
            if isinstance(event, h11.Data):
                return bytes(event.data)
            if isinstance(event, h11.EndOfMessage):
                self.finished = True
                return None
            if isinstance(event, h11.ConnectionClosed):
                self.broken = "the server closed the connection in the middle of the response"
                return None

    async def rest(self, head: Response) -> Response:
        """The whole response: ``head`` with the rest of the body.

        Raises:
            ClientError: the body did not arrive whole.
        """
        chunks = [piece async for piece in self._pieces()]
        if not self.finished:
            raise ClientError(self.broken or "the response ended early")
        return Response(head.status, head.headers, b"".join(chunks))

    async def _pieces(self) -> AsyncIterator[bytes]:
        while (piece := await self.data()) is not None:
            yield piece

    async def _next_event(self) -> Any:
        while True:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as error:
                raise ClientError(f"bad or missing HTTP response: {error}") from error
            if event is not h11.NEED_DATA:
                return event
            try:
                self._h11.receive_data(await self.stream.receive(READ_SIZE))
            except STREAM_ERRORS:
                self._h11.receive_data(b"")


async def read_until_closed(stream: anyio.abc.ByteStream) -> None:
    """Discard what ``stream`` still carries until the other end closes it."""
    try:
        while True:
            await stream.receive(READ_SIZE)
    except STREAM_ERRORS:
        return


async def handshake(
    stream: anyio.abc.ByteStream, request: Request
) -> tuple[WSConnection, str | None]:
    """Open a WebSocket with wsproto as a client.

    Args:
        stream: a fresh connection.
        request: the handshake request.

    Returns:
        The open wsproto connection (frames that came with the 101 are already in it) and
        the subprotocol the server accepted.

    Raises:
        WebSocketRejected: the server answered with an HTTP response instead of 101.
        ClientError: the server closed the connection during the handshake.
    """
    connection = WSConnection(ConnectionType.CLIENT)
    if not await send_or_false(stream, connection.send(request)):
        raise ClientError("the server closed the connection before the handshake")
    refusal: Response | None = None
    while True:
        for event in connection.events():
            if isinstance(event, AcceptConnection):
                return connection, event.subprotocol
            if isinstance(event, RejectConnection):
                refusal = Response(event.status_code, decoded(event.headers), b"")
                if not event.has_body:
                    raise WebSocketRejected(refusal)
            elif isinstance(event, RejectData) and refusal is not None:
                refusal = Response(refusal.status, refusal.headers, refusal.body + event.data)
                if event.body_finished:
                    raise WebSocketRejected(refusal)
        try:
            data = await stream.receive(READ_SIZE)
        except STREAM_ERRORS:
            if refusal is not None:
                raise WebSocketRejected(refusal) from None
            raise ClientError("the server closed the connection during the handshake") from None
        connection.receive_data(data)


def decoded(headers: Iterable[tuple[bytes, bytes]]) -> tuple[tuple[str, str], ...]:
    return tuple((k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in headers)


def encoded(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]


def merged(*layers: Headers) -> list[tuple[str, str]]:
    """Header lists combined; a later layer replaces every earlier header of a name it has."""
    result: list[tuple[str, str]] = []
    for layer in layers:
        pairs = header_list(layer)
        names = {name for name, _ in pairs}
        result = [(name, value) for name, value in result if name not in names] + pairs
    return result


def header_list(headers: Headers) -> list[tuple[str, str]]:
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return [(name.lower(), value) for name, value in pairs]


def operation_params(
    query: str,
    variables: Mapping[str, Any] | None,
    operation_name: str | None,
    extensions: Mapping[str, Any] | None,
) -> dict[str, Any]:
    params: dict[str, Any] = {"query": query}
    if variables is not None:
        params["variables"] = dict(variables)
    if operation_name is not None:
        params["operationName"] = operation_name
    if extensions is not None:
        params["extensions"] = dict(extensions)
    return params


def graphql_result(response: Response) -> dict[str, Any]:
    """The GraphQL result in ``response``: a 200, or a 400 ``graphql-response+json``.

    Raises:
        ResponseError: any other response (a refusal at the HTTP level).
    """
    media_type = (response.header("content-type") or "").split(";")[0].strip().lower()
    if response.status == 200 or (
        response.status == 400 and media_type == "application/graphql-response+json"
    ):
        try:
            result = response.json()
        except ValueError:
            result = None
        if isinstance(result, dict):
            return result
    raise ResponseError(response)


def error_list(payload: Any) -> list[Any]:
    """Legacy ``error`` carries one error object; graphql-transport-ws a list."""
    return list(payload) if isinstance(payload, list) else [payload]


def leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in leaves(inner)]
    return [error]


async def only_result(
    operation: AbstractAsyncContextManager[AsyncIterable[dict[str, Any]]],
) -> dict[str, Any]:
    """The one result of a query or mutation run as an operation (WebSocket or stream).

    Raises:
        ClientError: the operation completed without a result.
    """
    async with operation as results:
        collected = [result async for result in results]
    if not collected:
        raise ClientError("the operation completed without a result")
    return collected[0]
