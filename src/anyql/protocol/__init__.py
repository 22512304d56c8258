"""The sans-IO GraphQL-over-WebSocket core: subprotocol choice and one machine per subprotocol.

Owns ``SUBPROTOCOLS``, ``select_subprotocol()`` and ``server_connection_for()``, and
re-exports the protocol vocabulary (events, ``CloseCode``, ``OperationRequest``,
``ConnectionState``) and both machines. Must not import anyio or graphql (a test checks
every module of this package).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from ..errors import LocalProtocolError
from ._common import MAX_CLOSE_REASON_BYTES as MAX_CLOSE_REASON_BYTES
from ._common import BadMessage as BadMessage
from ._common import CloseCode as CloseCode
from ._common import CloseConnection as CloseConnection
from ._common import Complete as Complete
from ._common import ConnectionAck as ConnectionAck
from ._common import ConnectionInit as ConnectionInit
from ._common import Error as Error
from ._common import Event as Event
from ._common import KeepAlive as KeepAlive
from ._common import Next as Next
from ._common import OperationRequest as OperationRequest
from ._common import Ping as Ping
from ._common import Pong as Pong
from ._common import Subscribe as Subscribe
from ._common import truncate_reason as truncate_reason
from ._machine import ConnectionState as ConnectionState
from ._machine import ServerConnection as ServerConnection
from .legacy_ws import LegacyWSConnection as LegacyWSConnection
from .transport_ws import TransportWSConnection as TransportWSConnection

__all__ = [
    "MAX_CLOSE_REASON_BYTES",
    "SUBPROTOCOLS",
    "BadMessage",
    "CloseCode",
    "CloseConnection",
    "Complete",
    "ConnectionAck",
    "ConnectionInit",
    "ConnectionState",
    "Error",
    "Event",
    "KeepAlive",
    "LegacyWSConnection",
    "Next",
    "OperationRequest",
    "Ping",
    "Pong",
    "ServerConnection",
    "Subscribe",
    "TransportWSConnection",
    "select_subprotocol",
    "server_connection_for",
    "truncate_reason",
]

#: Every subprotocol anyql speaks, the preferred one first.
SUBPROTOCOLS: Final[tuple[str, ...]] = (
    TransportWSConnection.subprotocol,
    LegacyWSConnection.subprotocol,
)

_MACHINES: Final[dict[str, type[ServerConnection]]] = {
    TransportWSConnection.subprotocol: TransportWSConnection,
    LegacyWSConnection.subprotocol: LegacyWSConnection,
}


def select_subprotocol(offered: Sequence[str], enabled: Sequence[str]) -> str | None:
    """Pick the subprotocol for a WebSocket handshake.

    Matching is exact and case-sensitive (P34); the client's order decides (P36).

    Args:
        offered: the client's ``Sec-WebSocket-Protocol`` tokens in its order. Entries are
            stripped, and an entry holding a comma-separated list (a raw header value) is
            split, so either form works.
        enabled: the subprotocols the app enables.

    Returns:
        The first offered token that is enabled and that anyql speaks, or None (the
        driver then accepts without a subprotocol and closes 4406, P35).
    """
    for entry in offered:
        for token in entry.split(","):
            name = token.strip()
            if name in _MACHINES and name in enabled:
                return name
    return None


def server_connection_for(subprotocol: str) -> ServerConnection:
    """Return a new machine for ``subprotocol``.

    Raises:
        LocalProtocolError: anyql does not speak ``subprotocol``.
    """
    machine = _MACHINES.get(subprotocol)
    if machine is None:
        raise LocalProtocolError(f"unknown GraphQL WebSocket subprotocol {subprotocol!r}")
    return machine()
