"""Server limits: one frozen dataclass, every size, count and time limit in one place
(except the broker's publish timeout, a setting of ``Broadcast``).

Imports only the standard library; execution, HTTP mapping, the session driver and the
transports all read the same ``Limits`` object. Each field's metadata says which servers
enforce it (``SERVERS``): "all", or "native" for what only anyql's own server can see
(under hypercorn its own settings cover the same ground); ``asgi_inert`` lists the fields
that a given ``Limits`` sets away from their defaults but ASGI cannot enforce.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Final, Literal

__all__ = ["Limits"]

KIB = 1024
MIB = 1024 * KIB

#: The metadata key that says which servers enforce a limit.
SERVERS: Final = "servers"
ALL: Final = {SERVERS: "all"}
NATIVE: Final = {SERVERS: "native"}

#: Times that may be zero (0 turns keep-alive off; no grace at all is allowed).
_ZERO_ALLOWED: Final = frozenset(
    {
        "keep_alive_interval",
        "stream_keep_alive_interval",
        "cleanup_grace",
        "shutdown_grace",
        "drain_delay",
        "drain_window",
    }
)
#: Times that must be finite: together they are the shutdown's budget, which bounds how
#: long a stop may take (an infinite one would never end a drain, nor let the watchdog
#: end the process). Elsewhere infinity means "no limit" (``operation_timeout=math.inf``).
_FINITE: Final = frozenset({"shutdown_grace", "drain_delay", "drain_window"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Every size, count and time limit the server enforces. All times are in seconds.

    Raises:
        ValueError: a field of the wrong type, a size or count below 1, a negative or NaN
            time (zero is allowed only where it means "off" or "none"), an infinite
            ``shutdown_grace``, ``drain_delay`` or ``drain_window`` (the shutdown's budget),
            or a ``cleanup_grace`` longer than ``shutdown_grace``; the message names the
            field.
    """

    #: HTTP request body (413 beyond it, checked before the body is read whole).
    max_body_bytes: int = field(default=1 * MIB, metadata=ALL)
    #: Request line plus headers (431 beyond it).
    max_header_bytes: int = field(default=16 * KIB, metadata=NATIVE)
    #: Number of request headers (431 beyond it).
    max_headers: int = field(default=100, metadata=NATIVE)
    #: The request head must arrive within this (slowloris; 408 and close).
    header_timeout: float = field(default=10.0, metadata=NATIVE)
    #: The whole body must arrive within this (408 and close).
    body_timeout: float = field(default=30.0, metadata=NATIVE)
    #: Idle HTTP keep-alive connections are closed after this.
    keep_alive_timeout: float = field(default=5.0, metadata=NATIVE)
    #: Requests served on one HTTP/1.1 connection before it is closed.
    max_requests_per_connection: int = field(default=1000, metadata=NATIVE)
    #: One WebSocket message, after reassembly and after inflate (close 1009 beyond it).
    max_ws_message_bytes: int = field(default=1 * MIB, metadata=ALL)
    #: Time allowed between the WebSocket handshake and ``connection_init`` (close 4408).
    connection_init_timeout: float = field(default=10.0, metadata=ALL)
    #: WebSocket-level ping (native server) and legacy ``ka`` interval; 0 turns both off.
    keep_alive_interval: float = field(default=15.0, metadata=ALL)
    #: Close a WebSocket whose ping got no pong within this.
    pong_timeout: float = field(default=15.0, metadata=NATIVE)
    #: Operations running at once on one WebSocket connection or single-connection SSE
    #: stream.
    max_operations: int = field(default=100, metadata=ALL)
    #: WebSocket connections plus SSE and multipart streams per process (503 beyond it).
    max_connections: int = field(default=10_000, metadata=ALL)
    #: An idle SSE or multipart stream gets a keep-alive (an SSE comment, a ``{}`` part)
    #: after this; 0 turns it off. Proxies commonly cut idle connections at 60 s.
    stream_keep_alive_interval: float = field(default=15.0, metadata=ALL)
    #: Single-connection SSE: reservations (``PUT``) one client address holds at once.
    max_stream_reservations_per_client: int = field(default=10, metadata=ALL)
    #: Single-connection SSE: a reservation whose stream is not opened within this is
    #: released.
    stream_reservation_timeout: float = field(default=30.0, metadata=ALL)
    #: Per-connection send buffer, in messages.
    send_buffer_messages: int = field(default=256, metadata=ALL)
    #: Per-connection send buffer, in bytes of encoded frames.
    send_buffer_bytes: int = field(default=1 * MIB, metadata=ALL)
    #: GraphQL document source size, checked before parsing.
    max_query_bytes: int = field(default=100 * KIB, metadata=ALL)
    #: GraphQL document tokens, checked before parsing.
    max_tokens: int = field(default=5_000, metadata=ALL)
    #: Bracket nesting in the document, checked by a flat scan before parsing.
    max_nesting: int = field(default=50, metadata=ALL)
    #: Selection depth of an operation (fragments expanded per spread).
    max_depth: int = field(default=15, metadata=ALL)
    #: Aliases in one operation.
    max_aliases: int = field(default=30, metadata=ALL)
    #: Fields merged into one response position (graphql-core's overlap check is quadratic).
    max_fields_per_position: int = field(default=50, metadata=ALL)
    #: Selections after expanding every fragment spread (fragment bombs).
    max_expanded_selections: int = field(default=10_000, metadata=ALL)
    #: Directives in one document.
    max_directives: int = field(default=50, metadata=ALL)
    #: Fields selected on the root type of one operation.
    max_root_fields: int = field(default=20, metadata=ALL)
    #: Operations in one HTTP batch, when batching is enabled.
    max_batch: int = field(default=10, metadata=ALL)
    #: A query or mutation is cancelled after this (subscriptions are exempt).
    operation_timeout: float = field(default=30.0, metadata=ALL)
    #: Shielded time a cancelled subscription source gets to run its ``finally``.
    cleanup_grace: float = field(default=5.0, metadata=ALL)
    #: Time graceful shutdown waits for cleanup after closing sockets with 1001.
    shutdown_grace: float = field(default=10.0, metadata=NATIVE)
    #: Drain, first step: how long the readiness path answers 503 (and new WebSocket
    #: upgrades get 503) before any connection is closed, so a load balancer stops routing.
    drain_delay: float = field(default=0.0, metadata=NATIVE)
    #: Drain, second step: the WebSockets are closed with 1001 one by one, spread evenly
    #: over this many seconds with jitter, so their clients do not reconnect at once.
    drain_window: float = field(default=0.0, metadata=NATIVE)
    # A broadcast publish is bounded by ``Broadcast(publish_timeout=...)``: the broadcast
    # is made before the app and serves it, so the bound lives with the broker's settings.

    def __post_init__(self) -> None:
        for item in fields(self):
            _check(item.name, item.type, getattr(self, item.name))
        if self.cleanup_grace > self.shutdown_grace:
            raise ValueError(
                f"Limits.cleanup_grace ({self.cleanup_grace}) must not exceed"
                f" Limits.shutdown_grace ({self.shutdown_grace}): shutdown would cut the"
                " cleanups it promises to wait for"
            )

    def enforced_by(self, name: str) -> Literal["all", "native"]:
        """Which servers enforce the limit ``name``: "all", or "native" only."""
        for item in fields(self):
            if item.name == name:
                servers: Literal["all", "native"] = item.metadata[SERVERS]
                return servers
        raise KeyError(name)

    def asgi_inert(self) -> tuple[str, ...]:
        """The fields set away from their defaults that an ASGI server cannot enforce."""
        defaults = Limits()
        return tuple(
            item.name
            for item in fields(self)
            if item.metadata[SERVERS] == "native"
            and getattr(self, item.name) != getattr(defaults, item.name)
        )


def _check(name: str, kind: object, value: object) -> None:
    if kind in ("int", int):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"Limits.{name} must be a whole number, not {value!r}")
        if value < 1:
            raise ValueError(f"Limits.{name} must be at least 1, not {value!r}")
        return
    if not isinstance(value, int | float) or isinstance(value, bool) or math.isnan(value):
        raise ValueError(f"Limits.{name} must be a number of seconds, not {value!r}")
    if value < 0 or (value == 0 and name not in _ZERO_ALLOWED):
        least = "0 or more" if name in _ZERO_ALLOWED else "more than 0"
        raise ValueError(f"Limits.{name} must be {least} seconds, not {value!r}")
    if name in _FINITE and math.isinf(value):
        raise ValueError(
            f"Limits.{name} must be a finite number of seconds (it is part of the shutdown's"
            f" budget), not {value!r}"
        )
