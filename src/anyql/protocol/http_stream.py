"""The sans-IO framing of subscriptions over plain HTTP: Server-Sent Events (graphql-sse, both
modes) and Apollo's multipart subscriptions.

Owns ``StreamFraming`` and its three framings: ``SSEDistinct`` (one operation per
response: ``next`` events carry the result, ``complete`` ends it), ``SSESingle`` (one
stream for many operations: events carry ``{"id", "payload"}``) and ``Multipart``
(``multipart/mixed; boundary="graphql"; subscriptionSpec=1.0``: one part per result as
``{"payload": ...}``, ``{}`` heartbeats, transport errors as ``{"payload": null, "errors"}``,
the closing boundary at the end). A framing only turns results into bytes: every result
arrives encoded once as UTF-8 JSON (a shared subscription's hub encodes it for every
subscriber) and the framing splices its envelope around it (``envelope``), as the
WebSocket machines do. A result with an event id (``anyql.Event``) gets an SSE ``id:`` line
after its ``data:`` in both SSE modes. Imports only the standard library and orjson; no
anyio.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import orjson

__all__ = [
    "EVENT_STREAM",
    "MULTIPART_SUBSCRIPTION",
    "Multipart",
    "SSEDistinct",
    "SSESingle",
    "StreamFraming",
]

EVENT_STREAM: Final = "text/event-stream"
#: The response type of a multipart subscription, as Apollo Router and Strawberry send it.
MULTIPART_SUBSCRIPTION: Final = 'multipart/mixed; boundary="graphql"; subscriptionSpec="1.0"'

#: Headers every stream response gets: no cache may hold it, no proxy may buffer it.
_STREAM_HEADERS: Final = (("cache-control", "no-cache"), ("x-accel-buffering", "no"))
#: Every part ends with the boundary, so a client can hand it over at once (Apollo Client
#: and meros deliver a part only when the boundary after it arrives).
_BOUNDARY: Final = b"\r\n--graphql"
_PART_HEAD: Final = b"\r\ncontent-type: application/json; charset=utf-8\r\n\r\n"


class StreamFraming:
    """How one kind of HTTP stream frames results; a frozen value with no state.

    ``envelope(id)`` returns the bytes before and after an encoded result, so a result
    encoded once can be framed for any subscriber; ``complete``, ``error``, ``fail``,
    ``keep_alive``, ``interrupted`` and ``end`` give whole frames (``b""`` when the framing
    has none).
    """

    #: The response's ``content-type``.
    content_type: str = ""
    #: Whether each frame names its operation (several operations share the stream).
    multiplexed: bool = False
    #: Whether a result's event id is written outside its payload (``envelope``'s
    #: ``event_id`` changes the bytes): SSE's ``id:`` line.
    event_ids: bool = False

    @property
    def headers(self) -> tuple[tuple[str, str], ...]:
        """The response headers: the content type, then no-cache and no-buffering."""
        return (("content-type", self.content_type), *_STREAM_HEADERS)

    def envelope(self, id: str, event_id: str | None = None) -> tuple[bytes, bytes]:
        """The bytes around a ``next`` result of operation ``id``.

        ``event_id`` is the result's ``anyql.Event`` id, if it has one: SSE writes it as the
        event's ``id:`` line (after ``data:``, which the SSE format allows), so a
        reconnecting ``EventSource`` sends it back as ``Last-Event-ID``; multipart carries
        it only in the payload's ``extensions.eventId``.

        Raises:
            ValueError: ``event_id`` holds CR, LF or NUL (it would end the line).
        """
        raise NotImplementedError

    def next(self, id: str, payload: bytes, event_id: str | None = None) -> bytes:
        """A whole ``next`` frame for ``payload`` (an encoded GraphQL result)."""
        before, after = self.envelope(id, event_id)
        return before + payload + after

    def complete(self, id: str) -> bytes:
        """The frame that ends operation ``id`` normally."""
        raise NotImplementedError

    def error(self, id: str, errors: Sequence[Mapping[str, Any]]) -> bytes:
        """The frames that end operation ``id`` with GraphQL ``errors`` and no data
        (validation, a source that failed to start): a result, then the end."""
        return self.next(id, orjson.dumps({"errors": list(errors)})) + self.complete(id)

    def fail(self, id: str, errors: Sequence[Mapping[str, Any]]) -> bytes:
        """The frames that end operation ``id`` for a reason outside GraphQL (an internal
        error, a slow consumer, shutdown); SSE has no other way than ``error``."""
        return self.error(id, errors)

    def opening(self) -> bytes:
        """What goes out as soon as the stream is accepted (so every proxy sends the head);
        every stream begins with it, also one that carries only an error."""
        return b""

    def keep_alive(self) -> bytes:
        """What keeps an idle stream open through proxies."""
        raise NotImplementedError

    def interrupted(self, errors: Sequence[Mapping[str, Any]], retry_ms: int) -> bytes:
        """The last frames of a stream the server cuts short (a drain, shutdown, a slow
        consumer): SSE sends a reconnection delay and no ``complete`` (so the client
        reconnects, after ``retry_ms``); multipart a transport error, then the end."""
        raise NotImplementedError

    def end(self) -> bytes:
        """The last bytes of the stream."""
        return b""


class _SSE(StreamFraming):
    content_type = f"{EVENT_STREAM}; charset=utf-8"
    event_ids = True

    def opening(self) -> bytes:
        return b":\n\n"

    def keep_alive(self) -> bytes:
        return b":\n\n"

    def interrupted(self, errors: Sequence[Mapping[str, Any]], retry_ms: int) -> bytes:
        return b"retry: %d\n\n" % retry_ms


def _id_line(event_id: str) -> bytes:
    """The ``id:`` line of an SSE event, newline first (it follows the ``data:`` line)."""
    encoded = event_id.encode("utf-8")
    if b"\n" in encoded or b"\r" in encoded or b"\0" in encoded:
        raise ValueError("an SSE event id cannot contain a line break or NUL")
    return b"\nid: " + encoded


class SSEDistinct(_SSE):
    """graphql-sse's distinct connections mode: the response carries one operation."""

    def envelope(self, id: str, event_id: str | None = None) -> tuple[bytes, bytes]:
        if event_id is None:
            return b"event: next\ndata: ", b"\n\n"
        return b"event: next\ndata: ", _id_line(event_id) + b"\n\n"

    def complete(self, id: str) -> bytes:
        # The empty data field makes a browser's EventSource dispatch the event.
        return b"event: complete\ndata: \n\n"


class SSESingle(_SSE):
    """graphql-sse's single connection mode: events carry the operation's id."""

    multiplexed = True

    def envelope(self, id: str, event_id: str | None = None) -> tuple[bytes, bytes]:
        before = b'event: next\ndata: {"id":' + orjson.dumps(id) + b',"payload":'
        if event_id is None:
            return before, b"}\n\n"
        return before, b"}" + _id_line(event_id) + b"\n\n"

    def complete(self, id: str) -> bytes:
        return b'event: complete\ndata: {"id":' + orjson.dumps(id) + b"}\n\n"


class Multipart(StreamFraming):
    """Apollo's multipart subscriptions (``subscriptionSpec=1.0``): one JSON part per result."""

    content_type = MULTIPART_SUBSCRIPTION

    def envelope(self, id: str, event_id: str | None = None) -> tuple[bytes, bytes]:
        return _PART_HEAD + b'{"payload":', b"}" + _BOUNDARY

    def complete(self, id: str) -> bytes:
        return b""  # the closing boundary (``end``) ends the one operation

    def fail(self, id: str, errors: Sequence[Mapping[str, Any]]) -> bytes:
        return _PART_HEAD + orjson.dumps({"payload": None, "errors": list(errors)}) + _BOUNDARY

    def opening(self) -> bytes:
        return _BOUNDARY

    def keep_alive(self) -> bytes:
        return _PART_HEAD + b"{}" + _BOUNDARY

    def interrupted(self, errors: Sequence[Mapping[str, Any]], retry_ms: int) -> bytes:
        return self.fail("", errors) + self.end()

    def end(self) -> bytes:
        return b"--\r\n"  # turns the boundary after the last part into the closing one
