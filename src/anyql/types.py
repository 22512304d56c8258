"""The core value types every layer shares: the request a resolver may see, a whole HTTP
request and response, and a GraphQL operation as a client asked for it.

Owns ``RequestInfo``, ``HTTPRequest``, ``HTTPResponse`` and ``HTTPStream`` (a response whose
body is produced while it is sent, written to a ``StreamSink``), ``OperationRequest`` and the
slow-consumer policy names and the ASGI 3 callable types. A leaf:
it imports only the standard library (a test checks it), so the sans-IO core, execution,
the app and the transports can all use it without depending on one another.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, get_args, runtime_checkable

__all__ = [
    "SLOW_CONSUMER_POLICIES",
    "ASGIApp",
    "ASGIMessage",
    "ASGIReceive",
    "ASGIScope",
    "ASGISend",
    "DirectStreamSink",
    "Event",
    "HTTPRequest",
    "HTTPResponse",
    "HTTPStream",
    "OperationRequest",
    "RequestInfo",
    "SlowConsumerPolicy",
    "StreamSink",
]

#: What happens to a subscription whose connection's send buffer is full
#: (docs/limits.md, "Slow consumers").
SlowConsumerPolicy = Literal["block", "drop_oldest", "latest", "close"]
SLOW_CONSUMER_POLICIES: frozenset[str] = frozenset(get_args(SlowConsumerPolicy))

#: The ASGI 3 callable and its arguments (``fallback=`` takes an ``ASGIApp``).
ASGIScope = MutableMapping[str, Any]
ASGIMessage = MutableMapping[str, Any]
ASGIReceive = Callable[[], Awaitable[ASGIMessage]]
ASGISend = Callable[[ASGIMessage], Awaitable[None]]
ASGIApp = Callable[[ASGIScope, ASGIReceive, ASGISend], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """What a resolver may know of the request: the HTTP request or the WebSocket handshake.

    ``headers`` keep the order and repetition of the wire; names are lower-case.
    """

    method: str
    path: str
    query_string: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    client: tuple[str, int] | None = None
    scheme: str = "http"

    def header(self, name: str) -> str | None:
        """Return the first value of header ``name`` (case-insensitive), or None."""
        wanted = name.lower()
        for key, value in self.headers:
            if key == wanted:
                return value
        return None

    @property
    def peer(self) -> str:
        """The client's address as ``host:port`` for log lines, or ``"unknown peer"``."""
        return "unknown peer" if self.client is None else f"{self.client[0]}:{self.client[1]}"

    @property
    def header_map(self) -> Mapping[str, str]:
        """Headers as a mapping; repeated headers are joined with ", " (RFC 9110)."""
        joined: dict[str, str] = {}
        for key, value in self.headers:
            joined[key] = f"{joined[key]}, {value}" if key in joined else value
        return joined


@dataclass(frozen=True, slots=True)
class HTTPRequest:
    """A complete HTTP request, body read (within the body limit) by the transport."""

    info: RequestInfo
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class HTTPResponse:
    """A complete HTTP response. Header names are lower-case."""

    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    extra: dict[str, str] = field(default_factory=dict)


class StreamSink(Protocol):
    """Where an ``HTTPStream``'s body goes: the transport's side of a streamed response."""

    async def send(self, data: bytes) -> None:
        """Send ``data`` as the next bytes of the body (empty ``data`` flushes the head).

        Raises:
            ConnectionClosed: the client is gone.
        """
        ...


@runtime_checkable
class DirectStreamSink(StreamSink, Protocol):
    """A sink that can also write from the calling task without waiting (the native
    server's): a stream's result then goes out from the task that produced it."""

    def write_now(self, data: bytes) -> bool:
        """Write ``data`` now; False when it must wait its turn (nothing written).

        Raises:
            ConnectionClosed: the client is gone.
        """
        ...

    @property
    def needs_flush(self) -> bool:
        """True when ``write_now`` left bytes behind: an awaited ``send`` must follow."""
        ...


@dataclass(frozen=True, slots=True)
class HTTPStream:
    """A response whose body is written while it runs: an SSE or multipart subscription.

    The transport sends the head, then awaits ``body(sink)`` in the request's own task and
    ends the body when it returns; it cancels ``body`` when the client goes away, so what
    it runs ends (every ``finally`` runs). The transport chooses the framing (chunked,
    or close-delimited for HTTP/1.0); ``headers`` must not name it. Header names are
    lower-case.
    """

    status: int
    headers: tuple[tuple[str, str], ...]
    body: Callable[[StreamSink], Awaitable[None]]


#: The longest event id a value may carry: it travels in every frame and comes back from the
#: client (``Last-Event-ID``, ``extensions.lastEventId``).
MAX_EVENT_ID_LENGTH = 4096


@dataclass(frozen=True, slots=True)
class Event:
    """A value a subscription's source yields together with its event id.

    ``yield Event(value, id)`` (a durable ``Broadcast`` stream yields these itself): the
    selection set is executed on ``value`` and the result goes to the client with ``id``:
    in ``extensions.eventId`` of the ``next`` message and as the SSE ``id:``. A client that
    reconnects gives the last id back, and ``anyql.resume_point(info)`` hands it to the
    source.

    Attributes:
        value: what the selection set is executed on.
        id: an opaque, non-empty string without line breaks or NUL, at most 4,096
            characters (it becomes an SSE ``id:`` line).
        channel: for a ``Broadcast`` event, the channel it was published on; else None.
    """

    value: Any
    id: str
    channel: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ValueError("an event id is a non-empty str")
        if len(self.id) > MAX_EVENT_ID_LENGTH:
            raise ValueError(f"an event id has at most {MAX_EVENT_ID_LENGTH} characters")
        if "\n" in self.id or "\r" in self.id or "\0" in self.id:
            raise ValueError("an event id cannot contain a line break or NUL")


@dataclass(frozen=True, slots=True)
class OperationRequest:
    """One GraphQL operation as a client asked for it, before parsing."""

    query: str
    operation_name: str | None = None
    variables: Mapping[str, Any] | None = None
    extensions: Mapping[str, Any] | None = None
