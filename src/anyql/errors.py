"""The anyql error family.

Owns every exception anyql raises on purpose. Imports nothing but the standard library, so
every ring of the package (the sans-IO core included) can use it.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AnyQLError",
    "ConnectionClosed",
    "ConnectionRejected",
    "HTTPError",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
]


class AnyQLError(Exception):
    """Base class of every exception anyql raises on purpose."""


class ProtocolError(AnyQLError):
    """A GraphQL-over-WebSocket protocol rule was broken, by us or by the peer."""


class LocalProtocolError(ProtocolError):
    """Raised when *our* code asks a protocol machine for something illegal.

    For example sending ``connection_ack`` twice. It is always a bug in the caller.
    """


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol; ``close_code`` is the WebSocket close code to use.

    The machines do not raise this for client input (they yield ``CloseConnection``); it is
    for drivers that need to turn a violation into an exception.
    """

    def __init__(self, message: str, close_code: int) -> None:
        super().__init__(message)
        self.close_code = close_code


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
