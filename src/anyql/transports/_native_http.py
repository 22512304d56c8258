"""HTTP/1.1 over an anyio byte stream, with h11: the keep-alive cycle of one TCP connection.

Owns ``HTTPConnection`` (request heads, bodies and responses one at a time, with every
limit and timer h11 leaves to its user: head and body timeouts, idle keep-alive, header
count and size, body size, requests per connection), the small JSON error responses the
transport itself produces, the checks an Upgrade request must pass before wsproto sees it,
and ``close_gracefully`` (half-close, then drain, so a last response is not destroyed by a
TCP reset). Imports ``h11``, ``anyio``, ``limits`` and ``types``; must not
import wsproto, the session or the app.

Theory of operation: h11 only parses and serialises. ``next_request`` waits for a head
(the first head of a connection within ``header_timeout`` of the accept; later ones after
at most ``keep_alive_timeout`` of silence, then ``header_timeout`` from their first byte),
``read_body`` reads the body chunk by chunk and answers 413 as soon as the declared or
running size passes the cap, ``send_response`` writes one response in one write. Every
failure the peer causes ends in at most one error response and ``None``/``False``, which
tells the caller to close.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from http import HTTPStatus
from sys import intern
from typing import cast
from urllib.parse import unquote_to_bytes

import anyio
import anyio.abc
import h11

from anyql.errors import ConnectionClosed
from anyql.limits import Limits
from anyql.transports._direct import DirectWriter, direct_writer
from anyql.types import HTTPResponse, HTTPStream, RequestInfo

__all__ = [
    "HTTPConnection",
    "close_gracefully",
    "is_websocket_upgrade",
    "offered_subprotocols",
    "transport_error_response",
    "websocket_refusal",
]

#: Bytes asked of the stream per read.
RECEIVE_SIZE = 65536
#: After a last response, how long the peer gets to read it and close its side.
LINGER_SECONDS = 2.0
#: What a broken or closed stream raises (``TimeoutError`` is an ``OSError`` too).
STREAM_ERRORS = (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)
#: Framing headers the transport always writes itself.
_TRANSPORT_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})
#: Statuses that never carry a body.
_BODILESS = frozenset({204, 304})
_WEBSOCKET_VERSION = "13"

HeaderPairs = tuple[tuple[str, str], ...]


def transport_error_response(
    status: int, message: str | None = None, headers: HeaderPairs = ()
) -> HTTPResponse:
    """Build the small JSON error body the transport sends for its own refusals.

    Args:
        status: the HTTP status.
        message: what to say; the status phrase when omitted (never a traceback).
        headers: extra response headers, lower-case names.

    Returns:
        An ``HTTPResponse`` with ``{"errors": [{"message": ...}]}`` as its body.
    """
    text = message if message is not None else _phrase(status)
    body = json.dumps({"errors": [{"message": text}]}).encode("utf-8")
    return HTTPResponse(
        status=status,
        headers=(("content-type", "application/json"), *headers),
        body=body,
    )


async def close_gracefully(stream: anyio.abc.ByteStream) -> None:
    """Half-close ``stream``, discard what the peer still sends, then close it.

    Closing a socket with unread input makes the kernel send a reset, which can destroy a
    response the peer has not read yet (an early 413, a WebSocket close frame). So this
    sends EOF and reads until the peer closes too, for at most ``LINGER_SECONDS``.

    Args:
        stream: the connection's byte stream; always closed on return.
    """
    with anyio.move_on_after(LINGER_SECONDS):
        try:
            await stream.send_eof()
            while True:
                await stream.receive(RECEIVE_SIZE)
        except (anyio.EndOfStream, *STREAM_ERRORS):
            pass
    await anyio.aclose_forcefully(stream)


class HTTPConnection:
    """The server side of one HTTP/1.1 connection, one request/response cycle at a time.

    Not safe for concurrent use: one task drives it.
    """

    def __init__(
        self,
        stream: anyio.abc.ByteStream,
        limits: Limits,
        *,
        client: tuple[str, int] | None = None,
    ) -> None:
        self._stream = stream
        #: writes what the kernel takes at once, without a timer (None: awaited writes only)
        self._direct: DirectWriter | None = direct_writer(stream)
        self._limits = limits
        self._client = client
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_header_bytes)
        self._opened_at = anyio.current_time()
        self._requests = 0
        self._method = b"GET"
        #: The stream failed or a write timed out: nothing more can be written.
        self._broken = False

    @property
    def stream(self) -> anyio.abc.ByteStream:
        """The underlying byte stream (handed to the WebSocket after an upgrade)."""
        return self._stream

    @property
    def trailing_data(self) -> bytes:
        """Bytes received after the current request (the first WebSocket frames)."""
        return self._h11.trailing_data[0]

    async def next_request(self) -> h11.Request | None:
        """Wait for the next request head.

        Returns:
            The head, or None when the connection is over: the peer closed it or stayed
            idle too long (closed silently), or sent a bad or slow head (an error
            response has then been sent).
        """
        if self._broken:
            return None
        # Forget the last request's method: an error answering a bad head must carry its
        # body (h11 would refuse a body-less 4xx once a HEAD was served; found by fuzzing).
        self._method = b"GET"
        try:
            if self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE:
                self._h11.start_next_cycle()
            buffered = self._h11.next_event()
            event = (
                await self._receive_head()
                if buffered is h11.NEED_DATA
                else cast("h11.Event | type[h11.PAUSED]", buffered)
            )
        except h11.RemoteProtocolError as exc:
            await self.send_error(exc.error_status_hint)
            return None
        if event is None:
            return None
        return await self._check_head(event)

    async def _receive_head(self) -> h11.Event | type[h11.PAUSED] | None:
        first = self._requests == 0
        idle_deadline = (
            self._opened_at + self._limits.header_timeout
            if first
            else anyio.current_time() + self._limits.keep_alive_timeout
        )
        # One scope for both waits: its deadline moves from the idle bound to the head's.
        receiving_head = False
        with anyio.CancelScope(deadline=idle_deadline) as timer:
            await self._receive()
            receiving_head = True
            started = self._opened_at if first else anyio.current_time()
            timer.deadline = started + self._limits.header_timeout
            return await self._next_event()
        if receiving_head:
            await self.send_error(HTTPStatus.REQUEST_TIMEOUT)
        return None

    async def _check_head(self, event: h11.Event | type[h11.PAUSED]) -> h11.Request | None:
        if not isinstance(event, h11.Request):
            return None  # ConnectionClosed: the peer ended the connection between requests
        self._method = event.method  # h11 has taken it: a refusal of a HEAD has no body
        if (
            len(event.headers) > self._limits.max_headers
            or _head_size(event) > self._limits.max_header_bytes
        ):
            await self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)
            return None
        names = {name for name, _ in event.headers}
        if b"content-length" in names and b"transfer-encoding" in names:
            # RFC 9112 section 6.1: a smuggling attempt; reject it and close.
            await self.send_error(HTTPStatus.BAD_REQUEST)
            return None
        self._requests += 1
        return event

    def request_info(self, request: h11.Request) -> RequestInfo:
        """Describe ``request`` for the app: percent-decoded path, raw query, latin-1 headers.

        Args:
            request: a head returned by ``next_request``.

        Returns:
            The ``RequestInfo``.
        """
        raw_path, _, query = request.target.partition(b"?")
        return RequestInfo(
            method=request.method.decode("ascii"),
            path=unquote_to_bytes(raw_path).decode("utf-8", "replace"),
            query_string=query,
            # Interned: the many WebSockets of one kind of client (same browser, same
            # origin) share these strings for as long as they live.
            headers=tuple(
                (intern(name.decode("latin-1")), intern(value.decode("latin-1")))
                for name, value in request.headers
            ),
            client=self._client,
            scheme="http",
        )

    async def read_body(
        self, request: h11.Request, error_headers: HeaderPairs = ()
    ) -> bytes | None:
        """Read the body of ``request`` within ``max_body_bytes`` and ``body_timeout``.

        Sends ``100 Continue`` first when the client waits for it. Stops reading at the cap.

        Args:
            request: the head returned by ``next_request``.
            error_headers: added to the error response if one is sent (the app's CORS
                headers for this request: the head, and so the ``Origin``, is known).

        Returns:
            The body, or None when an error response (413, 408, 400) was sent or the peer
            went away; the connection must then be closed.
        """
        declared = _content_length(request)
        if declared is not None and declared > self._limits.max_body_bytes:
            await self.send_error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, error_headers)
            return None
        if self._h11.they_are_waiting_for_100_continue:
            await self._write(
                _serialise(self._h11, h11.InformationalResponse(status_code=100, headers=[]))
            )
        body = bytearray()
        outcome: bytes | int | _NeedData | None
        try:
            # a small body usually came with the head: then no timer is needed
            outcome = self._take_body(body)
            if outcome is _NEED_DATA:
                outcome = HTTPStatus.REQUEST_TIMEOUT
                with anyio.move_on_after(self._limits.body_timeout):
                    outcome = await self._collect_body(body)
        except h11.RemoteProtocolError as exc:
            outcome = exc.error_status_hint
        if isinstance(outcome, int):
            await self.send_error(outcome, error_headers)
            return None
        assert not isinstance(outcome, _NeedData)
        return outcome

    async def _collect_body(self, body: bytearray) -> bytes | int | None:
        while True:
            outcome = self._take_body(body)
            if not isinstance(outcome, _NeedData):
                return outcome
            await self._receive()

    def _take_body(self, body: bytearray) -> bytes | int | _NeedData | None:
        """Add the body h11 has buffered to ``body``; ``_NEED_DATA`` when it is not all in.

        Returns:
            The whole body, 413 past the cap, None when the peer closed first.
        """
        while True:
            event = self._h11.next_event()
            if event is h11.NEED_DATA:
                return _NEED_DATA
            if isinstance(event, h11.Data):
                if len(body) + len(event.data) > self._limits.max_body_bytes:
                    return HTTPStatus.REQUEST_ENTITY_TOO_LARGE
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return bytes(body)
            else:
                return None

    async def send_response(self, response: HTTPResponse, *, close: bool = False) -> bool:
        """Write ``response`` in one write, adding ``content-length`` (and ``connection: close``).

        Args:
            response: what the app (or the transport) answers.
            close: end the connection after this response.

        Returns:
            True when the connection may serve another request.

        Raises:
            h11.LocalProtocolError: the response is malformed (a bug in the caller).
        """
        close = (
            close
            or self._requests >= self._limits.max_requests_per_connection
            or "close" in response_connection(response)
        )
        status = response.status
        headers = [
            (name.encode("latin-1"), value.encode("latin-1"))
            for name, value in response.headers
            if name.lower() not in _TRANSPORT_HEADERS
        ]
        bodiless = status in _BODILESS
        if not bodiless:
            headers.append((b"content-length", str(len(response.body)).encode("ascii")))
        if close:
            headers.append((b"connection", b"close"))
        head = h11.Response(status_code=status, headers=headers, reason=_phrase(status).encode())
        data = _serialise(self._h11, head)
        if response.body and not bodiless and self._method != b"HEAD":
            data += _serialise(self._h11, h11.Data(data=response.body))
        data += _serialise(self._h11, h11.EndOfMessage())
        await self._write(data)
        return not self._broken and self._h11.our_state is h11.DONE

    async def send_stream(
        self, response: HTTPStream, sent: list[int], *, close: bool = False
    ) -> bool:
        """Run ``response``'s body, writing its head with the first bytes, then end it.

        The body is the first thing awaited, so whatever it holds is released in its own
        ``finally`` even when the client is gone before the head could be written. h11
        frames the body: chunked for an HTTP/1.1 client, close-delimited for HTTP/1.0 (the
        connection then ends with it). No keep-alive, body or request timer runs while the
        body is produced; a write the client takes nothing of for ``pong_timeout`` ends
        the stream (its client is gone or stuck).

        Args:
            response: the stream.
            sent: gets the body's size so far appended, also when the stream is cut.
            close: end the connection after this response (``connection: close``).

        Returns:
            Whether the connection may serve another request.

        Raises:
            ConnectionClosed: the client went away.
            h11.LocalProtocolError: the response is malformed (a bug in the caller).
        """
        close = close or self._requests >= self._limits.max_requests_per_connection
        headers = [
            (name.encode("latin-1"), value.encode("latin-1"))
            for name, value in response.headers
            if name.lower() not in _TRANSPORT_HEADERS
        ]
        if close:
            headers.append((b"connection", b"close"))
        head = h11.Response(
            status_code=response.status, headers=headers, reason=_phrase(response.status).encode()
        )
        sink = _ChunkSink(self, _serialise(self._h11, head))
        try:
            await response.body(sink)
            await sink.send(b"")  # the head, if the body sent nothing
            await sink.write(_serialise(self._h11, h11.EndOfMessage()))
        finally:
            sent.append(sink.sent)
        reusable = not self._broken and self._h11.our_state is h11.DONE
        return reusable and not close

    async def send_error(self, status: int, headers: HeaderPairs = ()) -> None:
        """Answer with a JSON error and close, if a response can still be sent.

        Args:
            status: the HTTP status.
            headers: extra response headers.
        """
        if self._h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        await self.send_response(transport_error_response(status, headers=headers), close=True)

    async def write_raw(self, data: bytes) -> bool:
        """Write bytes h11 did not produce (the WebSocket handshake response).

        Args:
            data: the bytes.

        Returns:
            False when the stream is broken.
        """
        await self._write(data)
        return not self._broken

    async def wait_for_peer_close(self) -> None:
        """Return when the peer closes the connection (end of stream) while its request is
        being answered, as nginx notices a client that gave up.

        Bytes that arrive meanwhile (a pipelined request) are kept for h11, up to
        ``max_body_bytes``; past that this stops reading and never returns, so the peer is
        simply not read until the answer is sent. A peer that vanishes without a FIN is not
        noticed here: only a failed write shows it.
        """
        kept = 0
        while kept <= self._limits.max_body_bytes:
            try:
                data = await self._stream.receive(RECEIVE_SIZE)
            except (anyio.EndOfStream, *STREAM_ERRORS):
                data = b""
            self._h11.receive_data(data)
            if not data:
                return
            kept += len(data)
        await anyio.sleep_forever()

    async def _next_event(self) -> h11.Event | type[h11.PAUSED]:
        while True:
            event = self._h11.next_event()
            if event is not h11.NEED_DATA:
                return cast("h11.Event | type[h11.PAUSED]", event)
            await self._receive()

    async def _receive(self) -> None:
        try:
            data = await self._stream.receive(RECEIVE_SIZE)
        except (anyio.EndOfStream, *STREAM_ERRORS):
            data = b""
        self._h11.receive_data(data)

    async def _write(self, data: bytes, patience: float | None = None) -> None:
        """Write ``data``; a failure, or ``patience`` seconds (``body_timeout`` unless
        given) without the peer taking it, marks the connection broken."""
        if self._broken:
            return
        try:
            direct = self._direct
            if direct is not None:
                # what the kernel takes now needs no timer; the rest waits under one
                written = direct.write(data)
                if written == len(data):
                    return
                data = data[written:]
            with anyio.fail_after(self._limits.body_timeout if patience is None else patience):
                await self._stream.send(data)
        except STREAM_ERRORS:
            self._broken = True


class _ChunkSink:
    """The ``StreamSink`` of a native streamed response: each send is one h11 ``Data``."""

    __slots__ = ("_connection", "_head", "_residue", "_writing", "sent")

    def __init__(self, connection: HTTPConnection, head: bytes) -> None:
        self._connection = connection
        self.sent = 0
        #: The response head, written with the first bytes of the body.
        self._head = head
        #: What ``write_now`` could not write at once; it goes before anything else.
        self._residue = b""
        #: An awaited write is in progress: ``write_now`` must not cut into it.
        self._writing = False

    async def send(self, data: bytes) -> None:
        pending = self._head + self._residue
        self._head = self._residue = b""
        if data:
            self.sent += len(data)
            pending += _serialise(self._connection._h11, h11.Data(data=data))
        if pending:
            await self.write(pending)

    def write_now(self, data: bytes) -> bool:
        """Send ``data`` from the calling task without waiting; False: it must wait its turn
        (nothing was written). What the kernel did not take waits in a residue that the
        next ``send`` writes first (``needs_flush``).

        Raises:
            ConnectionClosed: the client is gone.
        """
        connection = self._connection
        direct = connection._direct
        if direct is None or self._residue or self._head or self._writing:
            return False
        if connection._broken:
            raise ConnectionClosed(1006)
        framed = _serialise(connection._h11, h11.Data(data=data))
        try:
            written = direct.write(framed)
        except STREAM_ERRORS:
            connection._broken = True
            raise ConnectionClosed(1006) from None
        self.sent += len(data)
        if written < len(framed):
            self._residue = framed[written:]
        return True

    @property
    def needs_flush(self) -> bool:
        """True after ``write_now`` left a residue: an awaited ``send`` must follow."""
        return bool(self._residue)

    async def write(self, data: bytes) -> None:
        connection = self._connection
        if not connection._broken:
            self._writing = True
            try:
                await connection._write(data, connection._limits.pong_timeout)
            finally:
                self._writing = False
        if connection._broken:
            raise ConnectionClosed(1006)


class _NeedData:
    """The body is not all buffered yet."""


_NEED_DATA = _NeedData()


def is_websocket_upgrade(request: h11.Request) -> bool:
    """Tell whether ``request`` asks for a WebSocket (GET with ``Upgrade: websocket``).

    Args:
        request: a request head.

    Returns:
        True for a WebSocket opening handshake.
    """
    if request.method != b"GET":
        return False
    return any(
        name == b"upgrade" and b"websocket" in _tokens(value) for name, value in request.headers
    )


def websocket_refusal(info: RequestInfo, http_version: bytes) -> HTTPResponse | None:
    """Check the opening handshake headers that RFC 6455 section 4.2.1 requires.

    Args:
        info: the Upgrade request.
        http_version: the request's HTTP version, e.g. ``b"1.1"``.

    Returns:
        A 400 or 426 response carrying ``Sec-WebSocket-Version: 13``, or None when the
        handshake may proceed.
    """
    version_header = (("sec-websocket-version", _WEBSOCKET_VERSION),)
    connection = info.header_map.get("connection", "").lower()
    if http_version != b"1.1" or b"upgrade" not in _tokens(connection.encode("latin-1")):
        return transport_error_response(HTTPStatus.BAD_REQUEST, "Invalid WebSocket upgrade request")
    version = info.header("sec-websocket-version")
    if version != _WEBSOCKET_VERSION:
        status = HTTPStatus.UPGRADE_REQUIRED if version else HTTPStatus.BAD_REQUEST
        return transport_error_response(status, "Unsupported WebSocket version", version_header)
    if not _valid_key(info.header("sec-websocket-key")):
        return transport_error_response(
            HTTPStatus.BAD_REQUEST, "Invalid Sec-WebSocket-Key", version_header
        )
    return None


def offered_subprotocols(info: RequestInfo) -> Sequence[str]:
    """Return the subprotocols the client offered, in its order.

    Args:
        info: the Upgrade request.

    Returns:
        The names from every ``Sec-WebSocket-Protocol`` header.
    """
    return [
        token.strip()
        for name, value in info.headers
        if name == "sec-websocket-protocol"
        for token in value.split(",")
        if token.strip()
    ]


def response_connection(response: HTTPResponse) -> list[str]:
    """Return the lower-case tokens of the ``connection`` header(s) of ``response``."""
    return [
        token.strip().lower()
        for name, value in response.headers
        if name.lower() == "connection"
        for token in value.split(",")
    ]


def _valid_key(key: str | None) -> bool:
    if key is None:
        return False
    try:
        return len(base64.b64decode(key.strip(), validate=True)) == 16
    except (binascii.Error, ValueError):
        return False


def _tokens(value: bytes) -> list[bytes]:
    return [token.strip().lower() for token in value.split(b",")]


def _content_length(request: h11.Request) -> int | None:
    for name, value in request.headers:
        if name == b"content-length":
            return int(value)
    return None


def _head_size(request: h11.Request) -> int:
    # request line: method SP target SP HTTP/1.1 CRLF; each header: name ": " value CRLF
    size = len(request.method) + len(request.target) + 12
    for name, value in request.headers.raw_items():
        size += len(name) + len(value) + 4
    return size


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _serialise(connection: h11.Connection, event: h11.Event) -> bytes:
    return connection.send(event) or b""
