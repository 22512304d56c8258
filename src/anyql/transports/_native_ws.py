"""WebSockets over an anyio byte stream, with wsproto: the native ``WebSocketTransport``.

Owns the server side of the handshake once HTTP has vetted it (``accept_websocket``),
``NativeWebSocket`` and ``native_websocket``, the context that owns its one background
task. Imports ``wsproto``, ``anyio``, ``errors``, ``limits``, ``protocol`` (close
reason truncation) and ``_deflate``; must not import h11, the session or the app.
permessage-deflate is negotiated only when the server enables it (``BoundedDeflate``,
which counts inflated bytes against the message cap); otherwise offers are ignored.

Theory of operation: the session's reader calls ``receive()``, the only reader of the
stream; its writer calls ``send_encoded``/``send_text``; a fan-out delivery may call
``write_now``. wsproto is the parser, the handshake and the encoder of control frames (and
of data frames once permessage-deflate is negotiated); uncompressed data frames are built
by ``_framing``. wsproto yields partial frames and has no size limit, so
``MessageAssembler`` reassembles them while counting bytes and refuses (close 1009) before
buffering past ``max_ws_message_bytes``. wsproto never answers anything itself: a ping
queues its payload in a small bounded queue (a flood keeps only the latest
``MAX_PENDING_PONGS``, as RFC 6455 section 5.5.3 allows) and ``receive()`` writes the pongs
before it hands over the next message or reads again, so a pong never follows the answer to
a later message; a client close is answered once from ``receive()``; input wsproto cannot
parse arrives as a ``CloseConnection`` while wsproto is still OPEN, and is answered with
that close code (1002, 1007). There is no task per connection here: the keep-alive ping
and its pong deadline are deadlines on the reader's wait, and a ping that cannot be
written, or gets no pong, within ``pong_timeout`` aborts the TCP connection (the client
sees 1006).

Writes: every awaited write holds one lock, first tries the kernel synchronously
(``_direct``), and only for what the kernel refuses awaits the stream, shielded from
cancellation and bounded by ``pong_timeout``, so frames never interleave or get cut, and
nothing follows a close frame. ``write_now`` writes only when the lock is free and no
residue waits; a part the kernel refuses becomes the residue, which every later write sends
first; its caller (the session) starts an awaited write for it at once.
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from itertools import count
from typing import NamedTuple

import anyio
import anyio.abc
from wsproto import ConnectionType, WSConnection
from wsproto.connection import Connection, ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    Pong,
    TextMessage,
)
from wsproto.extensions import Extension
from wsproto.utilities import RemoteProtocolError

from anyql.errors import ConnectionClosed
from anyql.limits import Limits
from anyql.protocol import truncate_reason
from anyql.transports._deflate import BoundedDeflate
from anyql.transports._direct import DirectWriter, direct_writer
from anyql.transports._framing import text_frame, text_frames

__all__ = [
    "AcceptedWebSocket",
    "MessageAssembler",
    "MessageTooBig",
    "NativeWebSocket",
    "accept_websocket",
    "native_websocket",
]

logger = logging.getLogger("anyql.transports.native")

_READ_SIZE = 65536
#: How long a close frame may take to write, and the peer to answer it.
CLOSE_TIMEOUT = 5.0
_STREAM_ERRORS = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)
_ABNORMAL = 1006
_MESSAGE_TOO_BIG = 1009
#: States in which wsproto lets us send a close frame (start the handshake, or answer).
_CLOSABLE = (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING)
_CLOSED = ConnectionState.CLOSED
#: Unanswered pings remembered; older ones are dropped (a ping flood stays bounded).
MAX_PENDING_PONGS = 16


class MessageTooBig(Exception):
    """Raised by ``MessageAssembler.feed`` when a message would pass the cap."""


class MessageAssembler:
    """Joins wsproto's partial frames into whole messages, never holding more than the cap."""

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._text: list[str] = []
        self._binary: list[bytes] = []
        self._size = 0

    @property
    def buffered_bytes(self) -> int:
        """Bytes of the incomplete message held now (UTF-8 bytes for text)."""
        return self._size

    def feed(self, event: TextMessage | BytesMessage) -> str | bytes | None:
        """Take one partial frame.

        Args:
            event: a wsproto data event.

        Returns:
            The whole message once its last piece arrived, else None.

        Raises:
            MessageTooBig: the message passes the cap; what was held is dropped.
        """
        data = event.data
        size = _byte_length(data)
        if self._size + size > self._max_bytes:
            self._text.clear()
            self._binary.clear()
            self._size = 0
            raise MessageTooBig
        if event.message_finished and not self._text and not self._binary:
            return data if isinstance(data, str) else bytes(data)
        self._size += size
        if isinstance(data, str):
            self._text.append(data)
        else:
            self._binary.append(bytes(data))
        if not event.message_finished:
            return None
        self._size = 0
        if isinstance(data, str):
            text, self._text = "".join(self._text), []
            return text
        binary, self._binary = b"".join(self._binary), []
        return binary


class AcceptedWebSocket(NamedTuple):
    """What ``accept_websocket`` gives back."""

    #: The open wsproto connection (the parser and the control frames' encoder), without
    #: the handshake's state (h11's parser and the request), which a long-lived socket
    #: would otherwise carry to its end.
    connection: Connection
    #: The ``101 Switching Protocols`` bytes to write.
    handshake: bytes
    #: Whether permessage-deflate was negotiated (data frames then go through wsproto).
    compressed: bool


def accept_websocket(
    headers: Sequence[tuple[bytes, bytes]],
    target: bytes,
    subprotocol: str | None,
    trailing_data: bytes,
    *,
    deflate_max_bytes: int | None = None,
) -> AcceptedWebSocket:
    """Accept a vetted Upgrade request with wsproto.

    Args:
        headers: the request headers as h11 parsed them.
        target: the request target.
        subprotocol: the chosen subprotocol (one the client offered), or None for none.
        trailing_data: bytes the client sent after the request (its first frames).
        deflate_max_bytes: None to ignore permessage-deflate offers; else accept one and
            fail (1009) any message that inflates past this many bytes.

    Returns:
        The connection, the handshake bytes, and whether compression was negotiated.

    Raises:
        wsproto.utilities.RemoteProtocolError: the request is not a valid handshake.
    """
    connection = WSConnection(ConnectionType.SERVER)
    try:
        connection.initiate_upgrade_connection(list(headers), target)
    except UnicodeError as exc:  # wsproto decodes list headers as ASCII and lets this escape
        raise RemoteProtocolError(f"non-ASCII handshake header: {exc}") from exc
    for _request in connection.events():
        pass
    extensions: list[Extension] = []
    if deflate_max_bytes is not None:
        extensions.append(BoundedDeflate(deflate_max_bytes))
    handshake = connection.send(AcceptConnection(subprotocol=subprotocol, extensions=extensions))
    if trailing_data:
        connection.receive_data(trailing_data)
    compressed = any(extension.enabled() for extension in extensions)
    opened = connection.connection
    assert opened is not None  # wsproto opens it when it renders the acceptance
    return AcceptedWebSocket(opened, handshake, compressed)


@asynccontextmanager
async def native_websocket(
    stream: anyio.abc.ByteStream,
    accepted: AcceptedWebSocket,
    subprotocol: str | None,
    limits: Limits,
) -> AsyncIterator[NativeWebSocket]:
    """Open a ``NativeWebSocket`` (it starts no task; the context marks where it ends).

    Args:
        stream: the connection's byte stream (not closed here).
        accepted: what ``accept_websocket`` returned.
        subprotocol: the accepted subprotocol.
        limits: message size and keep-alive settings.

    Yields:
        The transport.
    """
    direct = None if accepted.compressed else direct_writer(stream)
    yield NativeWebSocket(stream, accepted, subprotocol, limits, direct)


class SocketState(enum.IntEnum):
    """Where a native WebSocket stands; it only moves on (see ``NativeWebSocket._end``).

    wsproto's own state says where the closing handshake is; this says what the session
    and the reader may still do.
    """

    #: Messages flow both ways.
    OPEN = 0
    #: Over for the session (a close sent or received, or a message too big): only the
    #: closing handshake remains.
    ENDED = 1
    #: wsproto could not parse the input: its close is answered, later input is dropped.
    PARSER_FAILED = 2
    #: The TCP connection failed or was aborted: nothing more is written.
    LOST = 3


class NativeWebSocket:
    """One accepted WebSocket on a byte stream; implements ``WebSocketTransport``.

    Also offers ``write_now``, the fan-out's synchronous delivery, ``send_encoded``, for
    messages already encoded as UTF-8, and ``needs_flush``.
    """

    __slots__ = (
        "_assembler",
        "_compressed",
        "_direct",
        "_ended",
        "_limits",
        "_next_ping",
        "_pending_close",
        "_pending_pongs",
        "_ping_ids",
        "_pong_due",
        "_residue",
        "_state",
        "_stream",
        "_subprotocol",
        "_write_lock",
        "_ws",
    )

    def __init__(
        self,
        stream: anyio.abc.ByteStream,
        accepted: AcceptedWebSocket,
        subprotocol: str | None,
        limits: Limits,
        direct: DirectWriter | None = None,
    ) -> None:
        self._stream = stream
        self._ws = accepted.connection
        self._compressed = accepted.compressed
        self._subprotocol = subprotocol
        self._limits = limits
        self._direct = direct
        self._assembler = MessageAssembler(limits.max_ws_message_bytes)
        self._write_lock = anyio.Lock(fast_acquire=True)
        #: The unsent tail of a frame the kernel took only in part; goes before anything.
        self._residue = b""
        self._state = SocketState.OPEN
        #: (code, reason) once the socket is over for the session, whoever ended it.
        self._ended: tuple[int, str] | None = None
        #: A close frame decided by the reader and not yet written.
        self._pending_close: CloseConnection | None = None
        #: Payloads of the latest unanswered pings, oldest first (bounded: pongs coalesce).
        self._pending_pongs: list[bytes] = []
        interval = limits.keep_alive_interval
        #: When the reader sends the next keep-alive ping, and when its pong is overdue.
        self._next_ping = anyio.current_time() + interval if interval > 0 else math.inf
        self._pong_due = math.inf
        self._ping_ids = count()

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol accepted at the handshake, or None."""
        return self._subprotocol

    async def receive(self) -> str | bytes:
        """Return the next whole text (str) or binary (bytes) message.

        The caller's wait is also the connection's clock: pings arrive answered, and the
        keep-alive ping and its pong deadline are deadlines on this read.

        Raises:
            ConnectionClosed: the socket is closed (by either side), failed, or the peer
                broke the protocol (then it was closed with 1002, 1007 or 1009 first).
        """
        while True:
            message = self._next_message()
            if self._pending_pongs:
                await self._send_pongs()  # pings that came before the message go first
            if message is not None:
                return message
            if self._pending_close is not None:
                frame, self._pending_close = self._pending_close, None
                await self._send_close(frame)
            if self._ended is not None:
                raise ConnectionClosed(*self._ended)
            await self._read_or_keep_alive()

    def write_now(self, *pieces: bytes) -> bool:
        """Send one text message, whose UTF-8 body is ``pieces`` joined, without waiting.

        Only when nothing else is being written or waits to be: then the frame goes to the
        kernel from the calling task. A part the kernel refuses is kept and goes out first,
        before any later frame; until it has, ``needs_flush`` is True and the caller must
        make sure an awaited send (``send_encoded``, with nothing if need be) follows.

        Returns:
            True when the message was taken; False when it cannot go now (the caller
            queues it for an awaited send).

        Raises:
            ConnectionClosed: the socket is closed or the write failed.
        """
        if not self._sendable():
            raise ConnectionClosed(*(self._ended or (_ABNORMAL, "")))
        direct = self._direct
        if direct is None or self._residue or self._write_lock.locked():
            return False
        frame = text_frame(*pieces)
        try:
            sent = direct.write(frame)
        except OSError:
            self._mark_lost("")
            raise ConnectionClosed(_ABNORMAL, "") from None
        if sent < len(frame):
            self._residue = frame[sent:]
        return True

    @property
    def needs_flush(self) -> bool:
        """Whether part of a frame ``write_now`` began waits for an awaited send."""
        return bool(self._residue)

    async def send_text(self, text: str) -> None:
        """Send one text message as one frame, in one write.

        Args:
            text: the message.

        Raises:
            ConnectionClosed: the socket is closed or the write failed.
        """
        await self.send_encoded((text.encode("utf-8"),))

    async def send_bytes(self, data: bytes) -> None:
        """Send one binary message as one frame, in one write (GraphQL never needs it).

        Args:
            data: the message.

        Raises:
            ConnectionClosed: the socket is closed or the write failed.
        """
        async with self._write_lock:
            self._check_open()
            await self._write_or_raise(self._ws.send(BytesMessage(data=data)))

    async def send_many(self, texts: Sequence[str]) -> None:
        """Send several text messages, one frame each, in a single write.

        Args:
            texts: the messages, in order.

        Raises:
            ConnectionClosed: the socket is closed or the write failed.
        """
        await self.send_encoded([text.encode("utf-8") for text in texts])

    async def send_encoded(self, messages: Sequence[bytes]) -> None:
        """Send text messages given as UTF-8 bytes, one frame each, in a single write.

        Args:
            messages: the messages' UTF-8 bodies, in order (the caller vouches for UTF-8).

        Raises:
            ConnectionClosed: the socket is closed or the write failed.
        """
        if not messages and not self._residue:
            return
        async with self._write_lock:
            self._check_open()
            if self._compressed:
                ws = self._ws
                frames = b"".join(ws.send(TextMessage(data=m.decode("utf-8"))) for m in messages)
            else:
                frames = text_frames(messages)
            await self._write_or_raise(frames)

    async def close(self, code: int, reason: str = "") -> None:
        """Send a close frame with ``code`` and ``reason`` (cut to 123 bytes); idempotent.

        Args:
            code: the close code.
            reason: the close reason.
        """
        self._end(SocketState.ENDED, (code, reason))
        await self._send_close(CloseConnection(code=code, reason=truncate_reason(reason)))

    async def abort(self) -> None:
        """Drop the TCP connection without a close frame (the peer sees 1006)."""
        self._mark_lost("connection aborted")
        await anyio.aclose_forcefully(self._stream)

    async def finish(self) -> None:
        """End the WebSocket after the session returned: complete the closing handshake.

        Closes with 1000 if the session did not close, answers a client close still
        unanswered, then waits up to ``CLOSE_TIMEOUT`` for the client's close frame,
        discarding anything else. The caller closes the stream afterwards.
        """
        if self._pending_close is not None:
            frame, self._pending_close = self._pending_close, None
            await self._send_close(frame)
        if self._ws.state in _CLOSABLE:
            await self.close(1000)
        with anyio.move_on_after(CLOSE_TIMEOUT):
            while self._awaiting_close_reply():
                for event in self._ws.events():
                    if isinstance(event, CloseConnection) and self._ws.state is not _CLOSED:
                        self._end(SocketState.PARSER_FAILED)  # not the reply: a parse failure
                if self._awaiting_close_reply():
                    await self._read()

    async def _read_or_keep_alive(self) -> None:
        """Read once; or, when the keep-alive clock is due first, ping or give up."""
        deadline = min(self._next_ping, self._pong_due)
        if deadline == math.inf:
            await self._read()
            return
        with anyio.CancelScope(deadline=deadline):
            await self._read()
            return
        now = anyio.current_time()
        if now >= self._pong_due:
            logger.debug("anyql: no pong within %s s; aborting", self._limits.pong_timeout)
            await self.abort()
        elif now >= self._next_ping:
            payload = str(next(self._ping_ids)).encode("ascii")
            sent = await self._send_control(Ping(payload=payload))
            self._next_ping = math.inf  # not before: a cancelled send is tried again
            if sent:
                self._pong_due = now + self._limits.pong_timeout

    def _next_message(self) -> str | bytes | None:
        if self._ended is not None:
            return None
        for event in self._ws.events():
            if isinstance(event, (TextMessage, BytesMessage)):
                try:
                    message = self._assembler.feed(event)
                except MessageTooBig:
                    self._fail(_MESSAGE_TOO_BIG, "Message too big")
                    return None
                if message is not None:
                    return message
            elif isinstance(event, Ping):
                if len(self._pending_pongs) == MAX_PENDING_PONGS:
                    del self._pending_pongs[0]
                self._pending_pongs.append(bytes(event.payload))
            elif isinstance(event, Pong):
                if self._pong_due != math.inf:
                    interval = self._limits.keep_alive_interval
                    self._pong_due, self._next_ping = math.inf, anyio.current_time() + interval
            elif isinstance(event, CloseConnection):
                self._on_close_frame(event)
                return None
        return None

    def _on_close_frame(self, event: CloseConnection) -> None:
        if self._ws.state is ConnectionState.REMOTE_CLOSING:
            # The client started the closing handshake: answer with its code, once.
            self._pending_close = CloseConnection(code=event.code)
            self._end(SocketState.ENDED, (event.code, event.reason or ""))
        else:
            # Still OPEN: wsproto could not parse the input and tells us which code to use.
            self._fail(event.code, event.reason or "", SocketState.PARSER_FAILED)

    def _fail(self, code: int, reason: str, state: SocketState = SocketState.ENDED) -> None:
        self._pending_close = CloseConnection(code=code, reason=truncate_reason(reason))
        self._end(state, (code, reason))

    def _end(self, state: SocketState, ended: tuple[int, str] | None = None) -> None:
        """The one place the state changes: it only moves on, and the first end is kept."""
        if state > self._state:
            self._state = state
        if self._ended is None and ended is not None:
            self._ended = ended

    def _awaiting_close_reply(self) -> bool:
        return (
            self._state < SocketState.PARSER_FAILED
            and self._ws.state is ConnectionState.LOCAL_CLOSING
        )

    async def _read(self) -> None:
        try:
            data = await self._stream.receive(_READ_SIZE)
        except _STREAM_ERRORS:
            self._mark_lost("")
            return
        if self._state >= SocketState.PARSER_FAILED:
            return  # wsproto's parser is dead after a failure; drop the input
        if self._ws.state in (ConnectionState.OPEN, ConnectionState.LOCAL_CLOSING):
            self._ws.receive_data(data)

    async def _send_close(self, frame: CloseConnection) -> None:
        with anyio.move_on_after(CLOSE_TIMEOUT):
            async with self._write_lock:
                if self._state is not SocketState.LOST and self._ws.state in _CLOSABLE:
                    await self._write(self._ws.send(frame))
                return
        await self.abort()  # the peer has taken no data for CLOSE_TIMEOUT: give up on it

    async def _send_pongs(self) -> bool:
        """Write every pending pong, in order, in one write; False once nothing can be sent."""
        async with self._write_lock:
            if not self._sendable():
                self._pending_pongs.clear()
                return False
            if not self._pending_pongs:
                return True
            frames = b"".join(self._ws.send(Pong(payload=p)) for p in self._pending_pongs)
            self._pending_pongs.clear()
            return await self._write(frames)

    async def _send_control(self, event: Event) -> bool:
        async with self._write_lock:
            if not self._sendable():
                return False
            return await self._write(self._ws.send(event))

    def _sendable(self) -> bool:
        """Whether data may still be written: open for the session and on the wire."""
        return self._state is SocketState.OPEN and self._ws.state is ConnectionState.OPEN

    def _check_open(self) -> None:
        if not self._sendable():
            raise ConnectionClosed(*(self._ended or (_ABNORMAL, "")))

    async def _write_or_raise(self, data: bytes) -> None:
        if not await self._write(data):
            raise ConnectionClosed(*(self._ended or (_ABNORMAL, "")))

    async def _write(self, data: bytes) -> bool:
        """Write ``data`` after any residue; the caller holds the write lock."""
        if self._residue:
            data, self._residue = self._residue + data, b""
        direct = self._direct
        if direct is not None:
            # What the kernel takes now needs no deadline and no task switch.
            try:
                sent = direct.write(data)
            except OSError:
                self._mark_lost("")
                return False
            if sent == len(data):
                return True
            data = data[sent:]
        # Shielded: a frame cut by cancellation would corrupt every frame after it (the close
        # frame too). Bounded: a peer that takes nothing for pong_timeout is dropped.
        with anyio.move_on_after(self._limits.pong_timeout, shield=True):
            try:
                await self._stream.send(data)
            except _STREAM_ERRORS:
                self._mark_lost("")
                return False
            return True
        await self.abort()
        return False

    def _mark_lost(self, reason: str) -> None:
        self._end(SocketState.LOST, (_ABNORMAL, reason))
        self._residue = b""


def _byte_length(data: str | bytes | bytearray) -> int:
    if isinstance(data, str):
        # str.isascii() is O(1) in CPython; only non-ASCII text pays for an encode.
        return len(data) if data.isascii() else len(data.encode("utf-8"))
    return len(data)
