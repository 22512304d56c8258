"""The ports: the small protocols the drivers are written against, so that none of them
names the concrete app.

Owns ``WebSocketTransport`` (what an accepted WebSocket offers the session driver; the
native, ASGI and in-memory transports implement it), ``SessionHost`` (what the session
driver needs from the app that runs it) with ``RunningServer`` and ``SessionSettings``,
``ServedApp`` (what a server needs from the app: the native server and the test client)
with ``ShutdownHandle``, and ``ASGIHost`` (what the ASGI adapter needs) with
``ASGISettings``. ``GraphQL`` implements ``SessionHost`` (a test checks it). Imports
only the standard library at run time; the types it names come from their modules for
type checking only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import anyio

    from .context import Accepted, Connection
    from .execution import Engine
    from .fanout import Fanout
    from .limits import Limits
    from .schema import Schema
    from .types import (
        ASGIApp,
        HTTPRequest,
        HTTPResponse,
        HTTPStream,
        RequestInfo,
        SlowConsumerPolicy,
    )

__all__ = [
    "ASGIHost",
    "DirectWebSocketTransport",
    "RunningServer",
    "ServedApp",
    "SessionHost",
    "SessionSettings",
    "ShutdownHandle",
    "WebSocketTransport",
]


class SessionSettings(Protocol):
    """The settings a WebSocket session reads."""

    @property
    def debug(self) -> bool:
        """Whether an ``on_connect`` failure's message reaches the client."""
        ...

    @property
    def subscription_protocols(self) -> tuple[str, ...]:
        """The subprotocols the app speaks."""
        ...

    @property
    def slow_consumer(self) -> SlowConsumerPolicy:
        """The policy of unshared subscriptions whose field sets none."""
        ...

    @property
    def shared_slow_consumer(self) -> SlowConsumerPolicy:
        """The policy of shared subscriptions whose field sets none."""
        ...

    @property
    def cancel_mutations_on_disconnect(self) -> bool:
        """Whether a client that leaves cancels its running mutation (HTTP, streams)."""
        ...


class RunningServer(Protocol):
    """What a session needs of the running server: the hubs and the shutdown callbacks."""

    @property
    def fanout(self) -> Fanout:
        """The shared-subscription hubs of this server."""
        ...

    def watch(self, key: Hashable, callback: Callable[[], None]) -> None:
        """Call ``callback`` once on shutdown (at once if it has begun)."""
        ...

    def unwatch(self, key: Hashable) -> None:
        """Forget the callback registered under ``key``."""
        ...

    def track(self, key: Hashable, describe: Callable[[], list[str]]) -> None:
        """Register how a session describes its running operations."""
        ...

    def untrack(self, key: Hashable) -> None:
        """Forget a tracked session."""
        ...


class SessionHost(Protocol):
    """What the session driver needs from the app that runs it."""

    @property
    def engine(self) -> Engine:
        """Prepares, executes and subscribes operations."""
        ...

    @property
    def schema(self) -> Schema:
        """For the per-field options (sharing, slow-consumer policy)."""
        ...

    @property
    def limits(self) -> Limits:
        """The limits the session enforces."""
        ...

    @property
    def settings(self) -> SessionSettings:
        """The settings the session reads."""
        ...

    @property
    def server(self) -> RunningServer | None:
        """The running server, or None outside ``running()``."""
        ...

    @property
    def on_connect(
        self,
    ) -> Callable[[Any, Mapping[str, Any]], Awaitable[Mapping[str, Any] | Accepted | None]] | None:
        """``async (context, connection_params) -> ack payload | Accepted | None``."""
        ...

    @property
    def on_disconnect(self) -> Callable[[Any], Awaitable[None]] | None:
        """``async (context) -> None``, or None."""
        ...

    async def make_context(
        self,
        request: RequestInfo,
        connection_params: Mapping[str, Any] | None = None,
        connection: Connection | None = None,
    ) -> Any:
        """What resolvers of this connection see as ``info.context``."""
        ...


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


@runtime_checkable
class DirectWebSocketTransport(WebSocketTransport, Protocol):
    """A transport that also takes UTF-8 messages and can send without waiting.

    The native transport implements it; the session then skips decoding, and a ``next``
    that finds nothing queued goes to the socket from the task that produced it.
    """

    async def send_encoded(self, messages: Sequence[bytes]) -> None:
        """Send text messages given as UTF-8, in order, in as few writes as it can.

        Raises:
            ConnectionClosed: the socket is closed.
        """
        ...

    def write_now(self, *pieces: bytes) -> bool:
        """Send one text message (``pieces`` joined) now; False if it must wait its turn.

        Raises:
            ConnectionClosed: the socket is closed.
        """
        ...

    @property
    def needs_flush(self) -> bool:
        """True after ``write_now`` sent part of a frame: an awaited send must follow."""
        ...


class ShutdownHandle(Protocol):
    """What ``ServedApp.running()`` yields while the server runs."""

    def shutdown(self) -> None:
        """Make every live session cancel its operations and close with 1001; idempotent."""
        ...

    @property
    def drain_requested(self) -> anyio.Event:
        """Set once ``drain()`` was called: the native server then shuts down."""
        ...

    async def drain(self, *, delay: float | None = None, window: float | None = None) -> None:
        """Readiness 503 for ``delay``, then 1001 to every session spread over ``window``."""
        ...


class ServedApp(Protocol):
    """The application as a server sees it: the native server, the test client, and (with
    ``ASGIHost``'s additions) the ASGI adapter."""

    @property
    def limits(self) -> Limits:
        """Sizes, counts and timers the transport enforces."""
        ...

    async def handle_http(self, request: HTTPRequest) -> HTTPResponse | HTTPStream:
        """Answer one HTTP request (body already read within the limits); a subscription
        over SSE or multipart is an ``HTTPStream`` the transport sends while it runs."""
        ...

    def websocket_handshake(self, info: RequestInfo) -> HTTPResponse | None:
        """Return a refusal (403, 404, 503...) or None to accept the WebSocket."""
        ...

    def cors_headers(self, info: RequestInfo) -> tuple[tuple[str, str], ...]:
        """The CORS headers an answer to this request gets (none with CORS off); the
        transports add them to the error responses they send themselves."""
        ...

    def select_subprotocol(self, offered: Sequence[str]) -> str | None:
        """Pick one of the offered subprotocols, or None to accept without one."""
        ...

    async def serve_websocket(self, transport: WebSocketTransport, info: RequestInfo) -> None:
        """Run a whole session on an accepted socket; it closes the socket itself."""
        ...

    def running(self) -> AbstractAsyncContextManager[ShutdownHandle]:
        """Enter once around serving."""
        ...


class ASGISettings(Protocol):
    """The settings the ASGI adapter reads."""

    @property
    def fallback(self) -> ASGIApp | None:
        """The ASGI app for every scope outside ``path``, or None."""
        ...

    @property
    def permessage_deflate(self) -> bool:
        """Whether the app asked for WebSocket compression (only warned about under ASGI)."""
        ...


class ASGIHost(ServedApp, Protocol):
    """The application as the ASGI adapter sees it."""

    @property
    def settings(self) -> ASGISettings:
        """The settings the adapter reads."""
        ...

    def matches_path(self, path: str) -> bool:
        """Whether the app answers ``path`` (else the fallback does)."""
        ...

    @property
    def server(self) -> object | None:
        """The running server, or None when the lifespan never started the app."""
        ...
