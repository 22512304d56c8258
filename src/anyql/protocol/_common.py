"""Shared vocabulary of the sans-IO GraphQL-over-WebSocket machines.

Owns close codes, the frozen event dataclasses both subprotocol machines speak, the
``OperationRequest`` (from ``types``) that HTTP and WebSocket both produce, and close-reason
truncation.
Must not import anyio or graphql (a test checks it): this is the pure core.

Events flow two ways, as in wsproto: ``ServerConnection.events()`` yields what the client
did (``ConnectionInit``, ``Subscribe``, ``Complete``, ``Ping``, ``Pong``, ``BadMessage``,
``CloseConnection``) and ``ServerConnection.send(event)`` turns what the server does
(``ConnectionAck``, ``Next``, ``Error``, ``Complete``, ``Ping``, ``Pong``, ``KeepAlive``)
into the text of one frame, or ``None`` when the protocol says nothing goes on the wire.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..types import OperationRequest

__all__ = [
    "MAX_CLOSE_REASON_BYTES",
    "BadMessage",
    "CloseCode",
    "CloseConnection",
    "Complete",
    "ConnectionAck",
    "ConnectionInit",
    "Error",
    "Event",
    "KeepAlive",
    "Next",
    "OperationRequest",
    "Ping",
    "Pong",
    "Subscribe",
    "truncate_reason",
]

#: RFC 6455: a control frame carries at most 125 bytes, two of them the close code.
MAX_CLOSE_REASON_BYTES = 123


class CloseCode(enum.IntEnum):
    """WebSocket close codes used by the two subprotocols."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    INVALID_PAYLOAD = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013
    BAD_REQUEST = 4400
    UNAUTHORIZED = 4401
    FORBIDDEN = 4403
    SUBPROTOCOL_NOT_ACCEPTABLE = 4406
    CONNECTION_INITIALISATION_TIMEOUT = 4408
    SUBSCRIBER_ALREADY_EXISTS = 4409
    TOO_MANY_INITIALISATION_REQUESTS = 4429
    INTERNAL_SERVER_ERROR = 4500


def truncate_reason(reason: str) -> str:
    """Cut ``reason`` to at most 123 bytes of UTF-8 without splitting a character."""
    encoded = reason.encode("utf-8")
    if len(encoded) <= MAX_CLOSE_REASON_BYTES:
        return reason
    return encoded[:MAX_CLOSE_REASON_BYTES].decode("utf-8", errors="ignore")


class Event:
    """Base class of every protocol event."""

    __slots__ = ()


# --- events in both directions -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ping(Event):
    """graphql-transport-ws ``ping``. The driver answers a received one with ``Pong``."""

    payload: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Pong(Event):
    """graphql-transport-ws ``pong``. A received one needs nothing."""

    payload: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Complete(Event):
    """An operation is over.

    Received: the client completed (``complete``) or stopped (legacy ``stop``) it; the
    driver cancels the operation and then sends ``Complete(id)`` itself, which the machine
    turns into a frame only where the protocol wants one (legacy: always; graphql-transport-ws:
    only when the server ended the operation, never after the client's own ``complete``).
    """

    id: str


# --- client to server ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectionInit(Event):
    """``connection_init``; ``payload`` is the connection params (an object or None)."""

    payload: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Subscribe(Event):
    """``subscribe`` (legacy ``start``): run ``request`` under ``id``."""

    id: str
    request: OperationRequest


@dataclass(frozen=True, slots=True)
class BadMessage(Event):
    """The client sent something the protocol answers without closing the socket.

    The driver sends ``reply`` (already encoded) and carries on. Only the legacy protocol
    has such rules (invalid JSON, an unknown message type).
    """

    reply: str


@dataclass(frozen=True, slots=True)
class CloseConnection(Event):
    """Close the socket with ``code`` and ``reason`` (already at most 123 bytes).

    Yielded by a machine for every protocol violation; after it the machine is CLOSED and
    yields and sends nothing more.
    """

    code: int
    reason: str = ""


# --- server to client ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectionAck(Event):
    """``connection_ack``; with ``payload=None`` the key is absent from the frame."""

    payload: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Next(Event):
    """One result of operation ``id``: ``next`` (legacy ``data``).

    ``payload`` is the result object already encoded as JSON text, so an event encoded once
    can be spliced into many envelopes.
    """

    id: str
    payload: str


@dataclass(frozen=True, slots=True)
class Error(Event):
    """Operation ``id`` failed before or instead of producing results.

    ``errors`` are formatted GraphQL error objects. graphql-transport-ws sends them all as a
    list; the legacy protocol sends the first as a single object.
    """

    id: str
    errors: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True, slots=True)
class KeepAlive(Event):
    """Legacy ``ka``. graphql-transport-ws has no such message (``send`` returns None)."""
