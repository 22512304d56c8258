"""Minimal HTTP/1.1 chunked bodies and Server-Sent Events, for the SSE side of the benchmark.

Owns ``ChunkedBody`` (incremental decoding of a ``Transfer-Encoding: chunked`` body, as the
servers under test send a stream to an HTTP/1.1 client), ``EventStream`` (incremental
``text/event-stream`` parsing into ``(event type, data)`` pairs) and ``encode_chunk`` (the
baseline server's side). Like ``_frames`` it is deliberately tiny and allocation-light: the
load generator must cost less than the servers it measures, so the common event (``event:
next``, one ``data:`` line) is recognised by its prefix and only the rest goes through the
general field parser. Lines may end in LF or CRLF (anyql sends LF, Strawberry CRLF); a lone
CR as a line end is not supported (no server under test sends one). Imports the standard
library only; never anyql.
"""

from __future__ import annotations

__all__ = ["ChunkedBody", "EventStream", "encode_chunk"]

#: What every ``next`` event of graphql-sse's distinct connections mode starts with.
_NEXT = b"event: next\ndata: "


def encode_chunk(data: bytes) -> bytes:
    """``data`` as one chunk of a chunked body (``data`` must not be empty)."""
    return b"%x\r\n%b\r\n" % (len(data), data)


class ChunkedBody:
    """Decodes a chunked body incrementally; ``ended`` once the last (empty) chunk came.

    Chunk extensions are ignored, trailers are not read.
    """

    __slots__ = ("_buffer", "_left", "ended")

    def __init__(self) -> None:
        self._buffer = b""
        #: Bytes of the current chunk's data still to come.
        self._left = 0
        self.ended = False

    def feed(self, data: bytes) -> bytes:
        """Add ``data`` (bytes read from the socket); return the body bytes in it.

        Raises:
            ValueError: a chunk size line that is not hexadecimal.
        """
        buffer = self._buffer + data if self._buffer else data
        out: list[bytes] = []
        position, end = 0, len(buffer)
        while position < end and not self.ended:
            if self._left:
                take = min(self._left, end - position)
                out.append(buffer[position : position + take])
                position += take
                self._left -= take
                continue
            line_end = buffer.find(b"\r\n", position)
            if line_end < 0:
                break
            line = buffer[position:line_end]
            position = line_end + 2
            if not line:  # the CRLF after a chunk's data
                continue
            size = int(line.split(b";", 1)[0], 16)
            if size == 0:
                self.ended = True
            self._left = size
        self._buffer = buffer[position:]
        return out[0] if len(out) == 1 else b"".join(out)


class EventStream:
    """Parses ``text/event-stream`` bytes incrementally into dispatched events.

    An event is dispatched at a blank line when it has data (as a browser's
    ``EventSource`` does); comments (``:`` lines, the keep-alives) and ``retry:``/``id:``
    fields are dropped. An event without an ``event:`` field has the type ``message``.
    """

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        """Add body bytes; return ``(event type, data)`` of every event now complete.

        Args:
            data: decoded body bytes (no chunk framing).

        Returns:
            The events, oldest first; several ``data:`` lines are joined with ``\\n``.
        """
        buffer = self._buffer + data if self._buffer else data
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n")
        blocks = buffer.split(b"\n\n")
        self._buffer = blocks.pop()
        events: list[tuple[bytes, bytes]] = []
        for block in blocks:
            if block.startswith(_NEXT) and b"\n" not in block[18:]:
                events.append((b"next", block[18:]))
            elif block and block[0] != 58:  # ":": a comment (a keep-alive) alone
                events.extend(_fields(block))
        return events


def _fields(block: bytes) -> list[tuple[bytes, bytes]]:
    """The general case: every field of ``block`` (blank lines inside it dispatch too)."""
    events: list[tuple[bytes, bytes]] = []
    kind = b""
    data: list[bytes] = []
    for line in (*block.split(b"\n"), b""):
        if not line:
            if data:
                events.append((kind or b"message", b"\n".join(data)))
            kind, data = b"", []
            continue
        name, colon, value = line.partition(b":")
        if not name:
            continue  # a comment
        if colon and value[:1] == b" ":
            value = value[1:]
        if name == b"event":
            kind = value
        elif name == b"data":
            data.append(value)
    return events
