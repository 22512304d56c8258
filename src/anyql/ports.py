"""The ports: small protocols between the session driver and what it runs on.

Owns ``WebSocketTransport`` (what an accepted WebSocket offers the session driver); the
native, ASGI and in-memory transports implement it. Imports only the standard library.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["WebSocketTransport"]


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
