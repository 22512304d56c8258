"""The seams between transports and the app: request/response values and the WebSocket port.

Owns ``HTTPRequest``, ``HTTPResponse``, ``RequestInfo`` and the four-method
``WebSocketTransport`` protocol that the native, ASGI and in-memory transports implement.
Imports only the standard library and ``errors``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["HTTPRequest", "HTTPResponse", "RequestInfo", "WebSocketTransport"]


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


class WebSocketTransport(Protocol):
    """One accepted WebSocket, as the session driver sees it.

    Implementations: ``transports.native`` (wsproto), ``transports.asgi`` (ASGI 3) and the
    in-memory transport of ``anyql.testing``. Only the session's writer task calls
    ``send_text``; only its reader task calls ``receive``.
    """

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol accepted at the handshake, or None."""
        ...

    async def receive(self) -> str | bytes:
        """Return the next whole message (text or binary).

        Raises:
            ConnectionClosed: the socket closed, by either side, or failed.
        """
        ...

    async def send_text(self, text: str) -> None:
        """Send one text message.

        Raises:
            ConnectionClosed: the socket is closed.
        """
        ...

    async def close(self, code: int, reason: str = "") -> None:
        """Close the socket with ``code``; idempotent; never raises for a closed socket."""
        ...
