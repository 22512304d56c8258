"""Server limits: one frozen dataclass, every limit of DESIGN section 5 in one place
(except the broker's publish timeout, a setting of ``Broadcast``).

Imports only the standard library; execution, HTTP mapping, the session driver and the
transports all read the same ``Limits`` object.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Limits"]

KIB = 1024
MIB = 1024 * KIB


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Every size, count and time limit the server enforces. All times are in seconds."""

    #: HTTP request body (413 beyond it, checked before the body is read whole).
    max_body_bytes: int = 1 * MIB
    #: Request line plus headers (431 beyond it).
    max_header_bytes: int = 16 * KIB
    #: Number of request headers (431 beyond it).
    max_headers: int = 100
    #: The request head must arrive within this (slowloris; 408 and close).
    header_timeout: float = 10.0
    #: The whole body must arrive within this (408 and close).
    body_timeout: float = 30.0
    #: Idle HTTP keep-alive connections are closed after this.
    keep_alive_timeout: float = 5.0
    #: Requests served on one HTTP/1.1 connection before it is closed.
    max_requests_per_connection: int = 1000
    #: One WebSocket message, after reassembly and after inflate (close 1009 beyond it).
    max_ws_message_bytes: int = 1 * MIB
    #: Time allowed between the WebSocket handshake and ``connection_init`` (close 4408).
    connection_init_timeout: float = 10.0
    #: WebSocket-level ping (native server) and legacy ``ka`` interval; 0 turns both off.
    keep_alive_interval: float = 15.0
    #: Close a WebSocket whose ping got no pong within this.
    pong_timeout: float = 15.0
    #: Operations running at once on one WebSocket connection.
    max_operations: int = 100
    #: WebSocket connections per process (handshake refused with 503 beyond it).
    max_connections: int = 10_000
    #: Per-connection send buffer, in messages.
    send_buffer_messages: int = 256
    #: Per-connection send buffer, in bytes of encoded frames.
    send_buffer_bytes: int = 1 * MIB
    #: GraphQL document source size, checked before parsing.
    max_query_bytes: int = 100 * KIB
    #: GraphQL document tokens, checked before parsing.
    max_tokens: int = 5_000
    #: Bracket nesting in the document, checked by a flat scan before parsing.
    max_nesting: int = 50
    #: Selection depth of an operation (fragments expanded per spread).
    max_depth: int = 15
    #: Aliases in one operation.
    max_aliases: int = 30
    #: Fields merged into one response position (graphql-core's overlap check is quadratic).
    max_fields_per_position: int = 50
    #: Selections after expanding every fragment spread (fragment bombs).
    max_expanded_selections: int = 10_000
    #: Directives in one document.
    max_directives: int = 50
    #: Fields selected on the root type of one operation.
    max_root_fields: int = 20
    #: Operations in one HTTP batch, when batching is enabled.
    max_batch: int = 10
    #: A query or mutation is cancelled after this (subscriptions are exempt).
    operation_timeout: float = 30.0
    #: Shielded time a cancelled subscription source gets to run its ``finally``.
    cleanup_grace: float = 5.0
    #: Time graceful shutdown waits for cleanup after closing sockets with 1001.
    shutdown_grace: float = 10.0
    # A broadcast publish is bounded by ``Broadcast(publish_timeout=...)``: the broadcast
    # is made before the app and serves it, so the bound lives with the broker's settings.
