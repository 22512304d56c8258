"""The default per-request context resolvers see as ``info.context``.

Owns ``Context`` only. Imports the standard library and the transport value types.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .types import RequestInfo

__all__ = ["Context"]


@dataclass(slots=True)
class Context:
    """What a resolver knows of where its operation came from.

    Attributes:
        request: the HTTP request, or the WebSocket handshake request.
        connection_params: the ``connection_init`` payload (WebSocket only), else empty.
        broadcast: the app's ``Broadcast``, or None when the app has none.
        connection: the WebSocket session (WebSocket only), else None.
        state: a free-form dict for hooks such as ``on_connect`` (e.g. the logged-in user).
    """

    request: RequestInfo
    connection_params: Mapping[str, Any] = field(default_factory=dict)
    broadcast: Any = None
    connection: Any = None
    state: dict[str, Any] = field(default_factory=dict)
