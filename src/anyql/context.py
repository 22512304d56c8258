"""What resolvers see of where an operation came from: the default ``info.context`` and
the public face of a WebSocket connection.

Owns ``Context`` and ``Connection``. Imports the standard library and ``types``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .types import RequestInfo

__all__ = ["Accepted", "Connection", "Context"]

_ids = itertools.count(1)


@dataclass(frozen=True, slots=True)
class Accepted:
    """What ``on_connect`` may return instead of the bare ack payload: the payload and
    when the connection's credentials expire.

    Attributes:
        payload: the ``connection_ack`` payload, or None for none.
        expires_at: wall-clock time (``time.time()`` seconds) after which the connection
            must not live; None for never. At that moment the server closes it with 4403
            "Connection expired", cancels its operations and runs their cleanup, as on any
            close. Converted to a deadline of the event loop's clock when the connection is
            accepted, so a later change of the system clock does not move it.
    """

    payload: Mapping[str, Any] | None = None
    expires_at: float | None = None

    def __post_init__(self) -> None:
        expires_at = self.expires_at
        if expires_at is None:
            return
        if isinstance(expires_at, bool) or not isinstance(expires_at, int | float):
            raise TypeError(
                "Accepted(expires_at=...) takes time.time() seconds (a float) or None, not"
                f" {type(expires_at).__name__} (for a datetime, pass its .timestamp())"
            )
        if not math.isfinite(expires_at):
            raise ValueError(f"Accepted(expires_at=...) must be finite, not {expires_at!r}")


class Connection:
    """One WebSocket connection, as resolvers and hooks see it (``info.context.connection``).

    Attributes:
        id: unique within the process, e.g. for logs or per-connection state elsewhere.
        subprotocol: ``"graphql-transport-ws"`` or ``"graphql-ws"``.
        connection_params: the ``connection_init`` payload (read-only).
    """

    __slots__ = ("_close", "_session", "connection_params", "id", "subprotocol")

    def __init__(
        self,
        subprotocol: str,
        connection_params: Mapping[str, Any],
        close: Callable[[int, str], None],
        session: object = None,
    ) -> None:
        self.id = f"ws-{next(_ids)}"
        self.subprotocol = subprotocol
        self.connection_params: Mapping[str, Any] = MappingProxyType(dict(connection_params))
        self._close = close
        self._session = session  # for anyql's own tests only

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close this connection; its operations are cancelled and their ``finally`` runs.

        Synchronous and idempotent: safe to call from a resolver running on this very
        connection (the close happens once that resolver's task yields). The reason is cut
        to the 123 bytes a close frame can carry.

        Args:
            code: 1000, or an application code from 3000 to 4999.
            reason: a short text for the client.

        Raises:
            ValueError: ``code`` is not 1000 nor in 3000-4999.
        """
        if code != 1000 and not 3000 <= code <= 4999:
            raise ValueError(f"close code must be 1000 or 3000-4999, not {code!r}")
        self._close(code, reason)

    def __repr__(self) -> str:
        return f"<Connection {self.id} {self.subprotocol}>"


@dataclass(slots=True)
class Context:
    """What a resolver knows of where its operation came from.

    Attributes:
        request: the HTTP request, or the WebSocket handshake request.
        connection_params: the ``connection_init`` payload (WebSocket only), else empty.
        broadcast: the app's ``Broadcast``, or None when the app has none.
        connection: the WebSocket ``Connection`` (WebSocket only), else None.
        state: a free-form dict for hooks such as ``on_connect`` (e.g. the logged-in user).
    """

    request: RequestInfo
    connection_params: Mapping[str, Any] = field(default_factory=dict)
    broadcast: Any = None
    connection: Connection | None = None
    state: dict[str, Any] = field(default_factory=dict)
