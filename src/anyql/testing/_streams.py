"""The test client's subscriptions over plain HTTP: GraphQL over SSE (graphql-sse, both
modes) and Apollo's multipart subscriptions.

Owns ``StreamResults`` (one operation's results as an async iterator), ``EventStream`` (a
single-connection SSE stream and the operations it carries), ``StreamInterrupted``, and the
client side of both framings: ``SSEParser`` (``text/event-stream`` read as the HTML
standard tells ``EventSource`` to read it) and ``MultipartParser`` (RFC 2046 body parts; a
part counts as whole once the delimiter after it arrives, as Apollo Client reads them).

Theory of operation: every streamed response gets one reader task, in the client's task
group, that parses the body as it arrives, routes each result to its operation's unbounded
queue, counts keep-alives and records ``retry:`` hints; so the client always reads and
never exercises the server's slow-consumer policies. Leaving a block half-closes the
connection, which the server takes as the client going away (it cancels what runs for
the stream), and then reads until the server has closed its end: the server closes only
after the stream's operations ended, so by then every resolver's cleanup has run. Imports
anyio, h11 and ``testing._wire``; must not import the server's transports, the app or
graphql.
"""

from __future__ import annotations

import codecs
import json
import logging
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any, Final, Protocol, Self
from urllib.parse import urlencode

import anyio
import anyio.abc
import h11

from ..errors import ClientError, ResponseError
from ._wire import (
    CLOSE_TIMEOUT,
    JSON_ACCEPT,
    STREAM_ERRORS,
    Response,
    ResponseReader,
    graphql_result,
    merged,
    only_result,
    operation_params,
    read_until_closed,
)

logger = logging.getLogger("anyql.testing")

#: The header that names a single-connection reservation (graphql-sse).
TOKEN_HEADER: Final = "x-graphql-event-stream-token"
SSE_ACCEPT: Final = "text/event-stream"
#: What Apollo Client sends for a subscription over HTTP.
MULTIPART_ACCEPT: Final = 'multipart/mixed;boundary="graphql";subscriptionSpec=1.0,application/json'

#: Sends one request on a new connection and reads the whole response:
#: ``(method, target, headers, body) -> Response``.
Send = Callable[[str, str, list[tuple[str, str]], bytes], Awaitable[Response]]


class StreamInterrupted(ClientError):
    """Raised by the results of a stream that ended before its operation completed: a
    drain or shutdown, a slow consumer, a multipart transport error, a broken connection.

    Attributes:
        retry: the last SSE ``retry:`` hint (milliseconds) the stream carried, or None.
        errors: the errors of a multipart transport error (``{"payload": null, "errors"}``),
            else empty.
    """

    def __init__(
        self, message: str, *, retry: int | None = None, errors: Sequence[Any] = ()
    ) -> None:
        super().__init__(message)
        self.retry = retry
        self.errors = list(errors)


# --- Server-Sent Events ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """A dispatched event: its type (``message`` when it had no ``event:`` field) and its
    ``data:`` lines joined with newlines."""

    type: str
    data: str


@dataclass(frozen=True, slots=True)
class SSEComment:
    """A comment line (``:`` then ``text``): keep-alives."""

    text: str


@dataclass(frozen=True, slots=True)
class SSERetry:
    """A ``retry:`` field: the reconnection delay the server asks for."""

    milliseconds: int


SSEItem = SSEEvent | SSEComment | SSERetry
_LINE_END: Final = re.compile(r"\r\n|\r|\n")


class SSEParser:
    """``text/event-stream``, fed in pieces, as ``EventSource`` interprets it.

    An event is dispatched at a blank line only if it had a ``data:`` field (so a
    ``complete`` without one is never seen, as in a browser); ``id:`` and unknown fields
    are ignored; a leading byte order mark is dropped.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._started = False
        self._type = ""
        self._data: list[str] = []

    def feed(self, data: bytes) -> list[SSEItem]:
        """What the next bytes complete."""
        self._buffer += self._decoder.decode(data)
        if not self._started and self._buffer:
            self._started = True
            self._buffer = self._buffer.removeprefix("\ufeff")
        items: list[SSEItem] = []
        while (found := _LINE_END.search(self._buffer)) is not None:
            if found.group() == "\r" and found.end() == len(self._buffer):
                break  # maybe the first half of a CRLF
            line, self._buffer = self._buffer[: found.start()], self._buffer[found.end() :]
            item = self._line(line)
            if item is not None:
                items.append(item)
        return items

    def _line(self, line: str) -> SSEItem | None:
        if not line:
            data, self._data = self._data, []
            kind, self._type = self._type or "message", ""
            return SSEEvent(kind, "\n".join(data)) if data else None
        if line.startswith(":"):
            return SSEComment(line[1:])
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._type = value
        elif name == "data":
            self._data.append(value)
        elif name == "retry" and value.isascii() and value.isdigit():
            return SSERetry(int(value))
        return None


# --- multipart ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MultipartPart:
    """One body part: its headers (lower-case names) and its body."""

    headers: dict[str, str]
    body: bytes


class MultipartParser:
    """A ``multipart/mixed`` body, fed in pieces (RFC 2046).

    A part is returned as soon as the delimiter that follows it has arrived (nothing else
    tells where a part ends), as Apollo Client hands parts over; None stands for the
    closing delimiter. The preamble and the epilogue are dropped.

    Args:
        boundary: the ``boundary`` parameter of the response's content type.
    """

    def __init__(self, boundary: str) -> None:
        self._delimiter = b"\r\n--" + boundary.encode("latin-1")
        # The body may begin with the delimiter without the CRLF before it.
        self._buffer = b"\r\n"
        self._in_part = False
        #: Just past a delimiter: "--" (the close) or the rest of its line comes next.
        self._after_delimiter = False
        self.closed = False

    def feed(self, data: bytes) -> list[MultipartPart | None]:
        """The parts (and the closing delimiter, as None) the next bytes complete."""
        if self.closed:
            return []
        self._buffer += data
        found: list[MultipartPart | None] = []
        while True:
            if self._after_delimiter:
                if len(self._buffer) < 2:
                    break
                if self._buffer.startswith(b"--"):
                    self.closed = True
                    self._buffer = b""
                    found.append(None)
                    break
                self._after_delimiter = False
                self._in_part = True
            at = self._buffer.find(self._delimiter)
            if at < 0:
                break
            if self._in_part:
                found.append(_part(self._buffer[:at]))
            self._buffer = self._buffer[at + len(self._delimiter) :]
            self._in_part = False
            self._after_delimiter = True
        return found


def _part(raw: bytes) -> MultipartPart:
    """A part from what lies between two delimiters: padding to the line's end, headers, a
    blank line, the body."""
    _, _, raw = raw.partition(b"\r\n")
    if raw.startswith(b"\r\n"):
        head, body = b"", raw[2:]
    else:
        head, _, body = raw.partition(b"\r\n\r\n")
    headers: dict[str, str] = {}
    for line in head.split(b"\r\n"):
        name, colon, value = line.decode("latin-1").partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    return MultipartPart(headers, body)


_BOUNDARY: Final = re.compile(r';\s*boundary=(?:"([^"]+)"|([^;\s]+))', re.IGNORECASE)


# --- what a stream carries -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Next:
    id: str | None
    result: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Complete:
    id: str | None


@dataclass(frozen=True, slots=True)
class _Failed:
    """A multipart transport error: it ends the operation."""

    errors: list[Any]


@dataclass(frozen=True, slots=True)
class _KeepAlive:
    pass


@dataclass(frozen=True, slots=True)
class _Retry:
    milliseconds: int


_Item = _Next | _Complete | _Failed | _KeepAlive | _Retry


class _Decoder(Protocol):
    @property
    def closed(self) -> bool:
        """The framing's own end arrived (multipart's closing delimiter)."""
        ...

    def feed(self, data: bytes) -> list[_Item]: ...


class _SSEDecoder:
    """graphql-sse events: ``next`` and ``complete``, with ``{"id", "payload"}`` when
    ``multiplexed`` (single connection mode)."""

    closed = False

    def __init__(self, *, multiplexed: bool) -> None:
        self._parser = SSEParser()
        self._multiplexed = multiplexed

    def feed(self, data: bytes) -> list[_Item]:
        items: list[_Item] = []
        for item in self._parser.feed(data):
            if isinstance(item, SSEComment):
                items.append(_KeepAlive())
            elif isinstance(item, SSERetry):
                items.append(_Retry(item.milliseconds))
            elif item.type == "next":
                message = _json_object(item.data, "the data of a `next` event")
                if self._multiplexed:
                    payload = _json_object(message.get("payload"), "a `next` event's payload")
                    items.append(_Next(_id_of(message), payload))
                else:
                    items.append(_Next(None, message))
            elif item.type == "complete":
                id = None
                if self._multiplexed:
                    id = _id_of(_json_object(item.data, "a `complete` event"))
                items.append(_Complete(id))
            else:
                logger.debug("TestClient: ignoring an SSE event of type %r", item.type)
        return items


class _MultipartDecoder:
    """Apollo's multipart subscriptions: ``{}`` heartbeats, ``{"payload": result}``,
    ``{"payload": null, "errors": [...]}`` transport errors, the closing delimiter."""

    def __init__(self, boundary: str) -> None:
        self._parser = MultipartParser(boundary)

    @property
    def closed(self) -> bool:
        return self._parser.closed

    def feed(self, data: bytes) -> list[_Item]:
        items: list[_Item] = []
        for part in self._parser.feed(data):
            if part is None:
                items.append(_Complete(None))
                continue
            if not part.body.strip():
                continue
            message = _json_object(part.body.decode("utf-8", errors="replace"), "a part")
            if not message:
                items.append(_KeepAlive())
            elif "payload" not in message:
                items.append(_Next(None, message))
            elif message["payload"] is not None:
                items.append(_Next(None, _json_object(message["payload"], "a part's payload")))
            elif message.get("errors"):
                items.append(_Failed(list(message["errors"])))
            else:
                items.append(_Complete(None))  # Apollo Client ends at {"payload": null}
        return items


def _json_object(value: Any, what: str) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ClientError(f"{what} is not JSON: {value[:200]!r}") from None
    if not isinstance(value, dict):
        raise ClientError(f"{what} is not a JSON object: {value!r:.200}")
    return value


def _id_of(message: Mapping[str, Any]) -> str | None:
    id = message.get("id")
    return id if isinstance(id, str) else None


def _decoder_for(response: Response) -> _Decoder | None:
    """How to read ``response``'s body, if it is a stream."""
    content_type = response.header("content-type") or ""
    media_type = content_type.split(";")[0].strip().lower()
    if media_type == "text/event-stream":
        return _SSEDecoder(multiplexed=False)
    if media_type == "multipart/mixed":
        found = _BOUNDARY.search(content_type)
        return _MultipartDecoder((found[1] or found[2]) if found else "-")
    return None


# --- reading a stream ----------------------------------------------------------------


class _Channel:
    """One streamed response and its reader task.

    ``on_item`` gets every result, completion and transport error; ``on_end`` the reason
    the body ended, for whatever has not completed.
    """

    def __init__(
        self,
        reader: ResponseReader,
        decoder: _Decoder,
        on_item: Callable[[_Next | _Complete | _Failed], None],
        on_end: Callable[[StreamInterrupted], None],
    ) -> None:
        self.keep_alives = 0
        self.retry: int | None = None
        self.interruption: StreamInterrupted | None = None
        self._reader = reader
        self._decoder = decoder
        self._on_item = on_item
        self._on_end = on_end
        self._kept = anyio.Event()
        self._closed = anyio.Event()
        self._scope = anyio.CancelScope()

    @property
    def ended(self) -> bool:
        """The body ended (the server ended the stream, or the connection)."""
        return self.interruption is not None

    async def run(self) -> None:
        """The reader task: parse and route until the body ends, then read until the server
        has closed the connection (or until ``close`` gives up)."""
        with self._scope:
            try:
                try:
                    await self._read()
                finally:
                    self._ended()
                await read_until_closed(self._reader.stream)
            finally:
                self._closed.set()

    async def _read(self) -> None:
        reader = self._reader
        while (piece := await reader.data()) is not None:
            try:
                items = self._decoder.feed(piece)
            except ClientError as error:
                self._ended(str(error))
                return
            for item in items:
                if isinstance(item, _KeepAlive):
                    self.keep_alives += 1
                    self._kept.set()
                    self._kept = anyio.Event()
                elif isinstance(item, _Retry):
                    self.retry = item.milliseconds
                else:
                    self._on_item(item)

    def _ended(self, problem: str | None = None) -> None:
        if self.interruption is not None:
            return
        if problem is None:
            problem = self._reader.broken
        if problem is None:
            problem = "the stream ended before the operation completed"
            if self._decoder.closed:
                problem = "the stream was closed before the operation completed"
            elif isinstance(self._decoder, _MultipartDecoder):
                problem = "the multipart stream ended without its closing delimiter"
        if self.retry is not None:
            problem += f" (retry: {self.retry} ms)"
        self.interruption = StreamInterrupted(problem, retry=self.retry)
        self._kept.set()
        self._on_end(self.interruption)

    async def wait_keep_alives(self, count: int) -> None:
        while self.keep_alives < count:
            if self.interruption is not None:
                raise StreamInterrupted(
                    f"the stream ended after {self.keep_alives} keep-alive(s)", retry=self.retry
                )
            await self._kept.wait()

    async def close(self) -> None:
        """Half-close the connection (the client goes away), wait up to ``CLOSE_TIMEOUT``
        for the server to close its end, then stop the reader."""
        with anyio.CancelScope(shield=True):
            with suppress(*STREAM_ERRORS):
                await self._reader.stream.send_eof()
            with anyio.move_on_after(CLOSE_TIMEOUT):
                await self._closed.wait()
            self._scope.cancel()


class _Done:
    """The queue's mark of a completed operation."""


_DONE: Final = _Done()


class StreamResults:
    """The results of one operation over an HTTP stream, as an async iterator of GraphQL
    results (``TestClient.subscribe_sse``, ``TestClient.subscribe_multipart``,
    ``EventStream.subscribe``).

    Iteration ends when the server completes the operation (SSE ``complete``, the closing
    multipart delimiter). Errors the server reports as a result (validation errors, a
    source that failed) are yielded as results with ``errors``. A stream that ends first
    (a drain, a multipart transport error, a broken connection) raises
    ``StreamInterrupted``.

    Attributes:
        id: the operation id on a single-connection stream, else None.
        response: the head of the response that carried the stream (``body`` empty), or
            the whole response when the server answered with one plain result instead.
        completed: the server completed the operation.
    """

    def __init__(self, response: Response, id: str | None = None) -> None:
        self.id = id
        self.response = response
        self.completed = False
        self._channel: _Channel | None = None
        self._in, self._out = anyio.create_memory_object_stream[
            dict[str, Any] | ClientError | _Done
        ](math.inf)
        self._finished = False
        self._error: ClientError | None = None

    @property
    def keep_alives(self) -> int:
        """Keep-alives the stream carried so far: SSE comments (anyql also opens an SSE
        stream with one), multipart ``{}`` parts."""
        return self._channel.keep_alives if self._channel is not None else 0

    @property
    def retry(self) -> int | None:
        """The last SSE ``retry:`` hint (milliseconds), or None."""
        return self._channel.retry if self._channel is not None else None

    async def wait_keep_alives(self, count: int = 1) -> None:
        """Wait until the stream has carried ``count`` keep-alives in all.

        Raises:
            StreamInterrupted: the stream ended first.
            ClientError: the server answered with a plain response, not a stream.
        """
        if self._channel is None:
            raise ClientError("the server answered with a plain response, not a stream")
        await self._channel.wait_keep_alives(count)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> dict[str, Any]:
        if self.completed:
            raise StopAsyncIteration
        if self._error is not None:
            raise self._error
        try:
            item = await self._out.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise ClientError("the subscription's block has ended") from None
        if isinstance(item, _Done):
            self.completed = True
            raise StopAsyncIteration
        if isinstance(item, ClientError):
            self._error = item
            raise item
        return item

    # --- fed by the reader task ----------------------------------------------------

    def _deliver(self, item: _Next | _Complete | _Failed) -> None:
        if isinstance(item, _Next):
            self._result(item.result)
        elif isinstance(item, _Complete):
            self._complete()
        else:
            self._interrupt(
                StreamInterrupted("the server ended the stream with an error", errors=item.errors)
            )

    def _result(self, result: dict[str, Any]) -> None:
        if not self._finished:
            self._in.send_nowait(result)

    def _complete(self) -> None:
        if not self._finished:
            self._finished = True
            self._in.send_nowait(_DONE)

    def _interrupt(self, error: ClientError) -> None:
        if not self._finished:
            self._finished = True
            self._in.send_nowait(error)

    def _close(self) -> None:
        self._finished = True
        self._in.close()
        self._out.close()


@asynccontextmanager
async def operation_stream(
    stream: anyio.abc.ByteStream,
    tasks: anyio.abc.TaskGroup,
    request: h11.Request,
    body: bytes,
) -> AsyncIterator[StreamResults]:
    """Send a request for one operation's stream (SSE distinct connections mode, multipart)
    on the fresh connection ``stream`` and read the results as they come.

    A plain GraphQL response (a 200, or a 400 ``application/graphql-response+json``) is
    taken as the one result of a completed operation.

    Raises:
        ResponseError: the server answered with neither a stream nor a GraphQL result.
        ClientError: the server closed the connection without a response.
    """
    reader = ResponseReader(stream)
    await reader.send(request, body)
    head = await reader.head()
    decoder = _decoder_for(head)
    if decoder is None:
        whole = await reader.rest(head)
        results = StreamResults(whole)
        results._result(graphql_result(whole))
        results._complete()
        channel = None
    else:
        results = StreamResults(head)
        channel = _Channel(reader, decoder, results._deliver, results._interrupt)
        results._channel = channel
        tasks.start_soon(channel.run)
    try:
        yield results
    finally:
        if channel is not None:
            await channel.close()
        results._close()


# --- single connection mode ----------------------------------------------------------


class EventStream:
    """A single-connection SSE stream (graphql-sse) opened by ``TestClient.event_stream``:
    operations are requests that name it with its token; their results arrive on it.

    ``query`` and ``subscribe`` number their operations "1", "2", ... (``operationId``).

    Attributes:
        token: the reservation's token.
        response: the head of the response that carries the stream (``body`` empty).
    """

    def __init__(
        self,
        token: str,
        response: Response,
        send: Send,
        path: str,
        headers: list[tuple[str, str]],
    ) -> None:
        self.token = token
        self.response = response
        self._send = send
        self._path = path
        self._headers = headers
        self._last_id = 0
        self._operations: dict[str, StreamResults] = {}
        self._channel: _Channel | None = None

    @property
    def keep_alives(self) -> int:
        """SSE comments the stream carried so far (the first comes as it opens)."""
        return self._channel.keep_alives if self._channel is not None else 0

    @property
    def retry(self) -> int | None:
        """The last ``retry:`` hint (milliseconds), or None."""
        return self._channel.retry if self._channel is not None else None

    async def wait_keep_alives(self, count: int = 1) -> None:
        """Wait until the stream has carried ``count`` comments in all.

        Raises:
            StreamInterrupted: the stream ended first.
        """
        assert self._channel is not None
        await self._channel.wait_keep_alives(count)

    async def query(
        self,
        query: str,
        variables: Mapping[str, Any] | None = None,
        operation_name: str | None = None,
        *,
        extensions: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Run a query or mutation on the stream and wait for its ``complete``.

        Returns:
            The result; a request the server refused as GraphQL over HTTP refuses it
            (validation errors) gives that answer's ``{"errors": [...]}``.

        Raises:
            ResponseError: the server answered with neither 202 nor a GraphQL result.
            StreamInterrupted: the stream ended first.
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
    ) -> AsyncIterator[StreamResults]:
        """Start an operation on the stream: a POST with the token and a fresh
        ``extensions.operationId``, which the server accepts with 202.

        A request refused as GraphQL over HTTP refuses it (validation errors: a 200, or
        a 400 ``application/graphql-response+json``) is yielded as the operation's one
        result. Leaving the block while the operation runs sends ``DELETE
        ?operationId=``; the server then cancels it (its cleanup has surely run once the
        stream's block is left).

        Yields:
            The operation's results as an async iterator.

        Raises:
            ResponseError: the server answered with neither 202 nor a GraphQL result (a
                404 for an unknown token, a 409, a 429).
            StreamInterrupted: the stream has ended.
        """
        channel = self._channel
        assert channel is not None
        if channel.interruption is not None:
            raise channel.interruption
        self._last_id += 1
        id = str(self._last_id)
        results = StreamResults(self.response, id)
        results._channel = channel
        self._operations[id] = results
        try:
            params = operation_params(
                query, variables, operation_name, {**(extensions or {}), "operationId": id}
            )
            head = merged(
                [("accept", JSON_ACCEPT), ("content-type", "application/json")],
                self._headers,
                [(TOKEN_HEADER, self.token)],
            )
            answer = await self._send("POST", self._path, head, json.dumps(params).encode())
            if answer.status != 202:
                self._operations.pop(id, None)
                results._result(graphql_result(answer))
                results._complete()
            yield results
        finally:
            if self._operations.pop(id, None) is not None and channel.interruption is None:
                await self._stop(id)
            results._close()

    async def _stop(self, id: str) -> None:
        target = f"{self._path}?{urlencode({'operationId': id})}"
        head = merged(self._headers, [(TOKEN_HEADER, self.token)])
        with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_TIMEOUT):
            try:
                await self._send("DELETE", target, head, b"")
            except ClientError as error:
                logger.debug("TestClient: stopping operation %r failed: %s", id, error)

    # --- fed by the reader task ----------------------------------------------------

    def _route(self, item: _Next | _Complete | _Failed) -> None:
        if isinstance(item, _Next):
            results = self._operations.get(item.id or "")
            if results is not None:
                results._result(item.result)
        elif isinstance(item, _Complete):
            results = self._operations.pop(item.id or "", None)
            if results is not None:
                results._complete()

    def _ended(self, interruption: StreamInterrupted) -> None:
        operations, self._operations = self._operations, {}
        for results in operations.values():
            results._interrupt(interruption)


@asynccontextmanager
async def event_stream(
    stream: anyio.abc.ByteStream,
    tasks: anyio.abc.TaskGroup,
    request: h11.Request,
    token: str,
    send: Send,
    path: str,
    headers: list[tuple[str, str]],
) -> AsyncIterator[EventStream]:
    """Open a reserved single-connection stream with ``request`` (a GET with the token) on
    the fresh connection ``stream``; leaving closes it and waits for the server's end.

    Raises:
        ResponseError: the server did not answer with an event stream.
    """
    reader = ResponseReader(stream)
    await reader.send(request, b"")
    head = await reader.head()
    if not isinstance(_decoder_for(head), _SSEDecoder):
        raise ResponseError(await reader.rest(head))
    events = EventStream(token, head, send, path, headers)
    channel = _Channel(reader, _SSEDecoder(multiplexed=True), events._route, events._ended)
    events._channel = channel
    tasks.start_soon(channel.run)
    try:
        yield events
    finally:
        await channel.close()
        events._ended(StreamInterrupted("the event stream's block has ended"))
