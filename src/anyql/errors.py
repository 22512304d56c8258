"""The anyql error family.

Owns every exception that crosses a module boundary, all under ``AnyQLError``; each says
when it is raised. Exceptions that never leave their module have private names there.
Imports nothing but the standard library at run time, so every ring of the package (the
sans-IO core included) can use it. The test client's exceptions are here too, and
importable from ``anyql.testing`` as before; the broker's from ``anyql.broadcast``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .testing._wire import Response

__all__ = [
    "AnyQLError",
    "BroadcastError",
    "ClientError",
    "ConfigError",
    "ConnectionClosed",
    "ConnectionRejected",
    "HTTPError",
    "LocalProtocolError",
    "ProtocolError",
    "RequestError",
    "ResponseError",
    "SlowConsumer",
    "SourceError",
    "SubscriberOverflow",
    "WebSocketClosed",
    "WebSocketRejected",
]

#: A GraphQL error as the response carries it (``message``, ``locations``, ``path``...).
FormattedError = dict[str, Any]


class AnyQLError(Exception):
    """Base class of every exception anyql raises on purpose."""


class ProtocolError(AnyQLError):
    """A GraphQL-over-WebSocket protocol rule was broken by our own code.

    The machines never raise for what a client sends: a client's violation is yielded as a
    ``CloseConnection`` event (as wsproto does), so the only subclass is
    ``LocalProtocolError``.
    """


class LocalProtocolError(ProtocolError):
    """Raised when *our* code asks a protocol machine for something illegal.

    For example sending ``connection_ack`` twice. It is always a bug in the caller.
    """


class HTTPError(AnyQLError):
    """An HTTP request that cannot be served; ``status`` is the response status.

    ``headers`` are extra response headers (for example ``Allow`` on a 405).
    """

    def __init__(
        self,
        status: int,
        message: str,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


class ConnectionRejected(AnyQLError):
    """Raise from ``on_connect`` to refuse a WebSocket connection.

    graphql-transport-ws closes with 4403 "Forbidden"; the legacy graphql-ws protocol sends
    ``connection_error`` with ``payload`` and then closes with 1011.
    """

    def __init__(self, payload: dict[str, Any] | None = None) -> None:
        super().__init__("connection rejected")
        self.payload = payload


class ConnectionClosed(AnyQLError):
    """Raised by a ``WebSocketTransport`` when the socket is closed (by either side)."""

    def __init__(self, code: int = 1006, reason: str = "") -> None:
        super().__init__(f"WebSocket closed with code {code}")
        self.code = code
        self.reason = reason


# --- execution -----------------------------------------------------------------------


class RequestError(AnyQLError):
    """Raised by ``Engine.prepare``, ``execute`` and ``subscribe`` when the document cannot
    be executed at all (syntax, limits, validation, variables, no such operation).

    ``errors`` are formatted GraphQL errors (message, locations, path, extensions).
    """

    def __init__(self, errors: tuple[FormattedError, ...]) -> None:
        super().__init__(errors[0]["message"] if errors else "request error")
        self.errors = errors


class SourceError(AnyQLError):
    """Raised by a subscription's result stream when its source raised mid-stream;
    ``errors`` holds one formatted error."""

    def __init__(self, errors: tuple[FormattedError, ...]) -> None:
        super().__init__(errors[0]["message"] if errors else "source error")
        self.errors = errors


class SlowConsumer(AnyQLError):
    """Raised by ``Outbox.put`` when the buffer is full and the policy is ``close``: the
    connection must close with 1008."""


# --- configuration -----------------------------------------------------------------


class ConfigError(AnyQLError, ValueError):
    """Raised when a configuration value or file (``anyql serve --set``, ``--limit``,
    ``--config``) cannot be applied; the message says which."""


# --- the broadcast ------------------------------------------------------------------


class BroadcastError(AnyQLError):
    """A broker operation failed.

    Raised by ``Broadcast.publish`` (and ``group_send``) when Redis is unreachable or does
    not answer within ``publish_timeout``. The message was not published.
    """


class SubscriberOverflow(BroadcastError):
    """Raised by a broadcast subscription's iterator when its buffer overflowed under
    ``"close"``.

    The subscription has been unregistered; the messages still buffered and the one that did
    not fit are counted in ``Subscription.dropped`` and were not delivered.
    """


class ResumeError(BroadcastError):
    """A subscription cannot resume where the client asked it to.

    Raised by a durable ``Broadcast`` stream (``broadcast.events(..., after=...)``) before
    it yields anything, and sent to the client as a GraphQL error (never masked) whose
    ``extensions.code`` is ``code``:

    * ``RESUME_POINT_EXPIRED``: events after the resume point may be gone (past retention,
      a stream that expired, a broker that lost its data, a process that restarted). The
      client must refetch what it shows and subscribe again without a resume point.
    * ``RESUME_POINT_INVALID``: not an id this server issued for these channels (malformed,
      from other channels, or from the future).

    Attributes:
        code: one of the two codes above.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


# --- the test client ----------------------------------------------------------------


class ClientError(AnyQLError):
    """Base of what ``anyql.testing``'s client raises."""


class ResponseError(ClientError):
    """Raised by ``TestClient.query`` for an HTTP response that is not a GraphQL result (a
    404, 405, 413...).

    Attributes:
        response: the whole response.
    """

    def __init__(self, response: Response) -> None:
        super().__init__(f"HTTP {response.status}: {response.text[:200]}")
        self.response = response


class WebSocketRejected(ClientError):
    """Raised by ``TestClient.websocket`` when the server answered the handshake with an HTTP
    response (403, 404, 503...).

    Attributes:
        response: the refusal.
    """

    def __init__(self, response: Response) -> None:
        super().__init__(f"WebSocket handshake refused with HTTP {response.status}")
        self.response = response


class WebSocketClosed(ClientError):
    """Raised by the test client's WebSocket when the socket closed while it waited for a
    message.

    Attributes:
        code: the close code (1006 when the connection ended without a close frame).
        reason: the close reason.
        payload: the legacy ``connection_error`` payload that came before, if any.
    """

    def __init__(self, code: int, reason: str = "", payload: Any = None) -> None:
        super().__init__(f"WebSocket closed with {code} {reason!r}")
        self.code = code
        self.reason = reason
        self.payload = payload
