"""The application object: frozen settings and hooks, and the entry points transports call.

Owns ``GraphQL`` (an ASGI 3 app and what ``run()`` serves), its ``Settings`` and the server
handle. Transports call ``handle_http``, ``websocket_handshake``, ``select_subprotocol``,
``serve_websocket`` and ``running`` (the ``ServedApp``, ``ASGIHost`` and ``SessionHost``
ports); nothing here calls back into a transport. Imports execution, schema, http, the
session driver and, as the ASGI entry point, the ASGI adapter, all at module top.
"""

from __future__ import annotations

import inspect
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypedDict, Unpack
from urllib.parse import urlsplit

import anyio

from . import cors, http
from ._http_streams import HTTPStreams, stream_token
from ._stream_relay import StreamRelay
from .context import Accepted, Connection, Context
from .errors import HTTPError, RequestError
from .execution import Engine
from .fanout import Fanout
from .limits import Limits
from .ports import WebSocketTransport
from .protocol import SUBPROTOCOLS, CloseCode, select_subprotocol
from .schema import Schema, as_schema
from .session import serve_session
from .transports.asgi import serve_asgi
from .types import (
    SLOW_CONSUMER_POLICIES,
    ASGIApp,
    ASGIReceive,
    ASGIScope,
    ASGISend,
    HTTPRequest,
    HTTPResponse,
    HTTPStream,
    RequestInfo,
    SlowConsumerPolicy,
)

if TYPE_CHECKING:
    from graphql import ASTValidationRule

__all__ = ["GraphQL", "ServerHandle", "Settings", "SettingsOverrides", "SlowConsumerPolicy"]

logger = logging.getLogger("anyql")

ContextFactory = Callable[[Context], Any]
OnConnect = Callable[[Any, Mapping[str, Any]], Awaitable[Mapping[str, Any] | Accepted | None]]
OnDisconnect = Callable[[Any], Awaitable[None]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Every knob of a ``GraphQL`` app; frozen, passed down, never calling back.

    ``path``: the one path the app answers (HTTP and WebSocket; a trailing slash is
    ignored; under ASGI it is relative to ``root_path``, so mounting works); None answers
    every path. ``fallback``: an ASGI app that receives every ``http`` and ``websocket``
    scope outside ``path`` and every other scope type, and whose lifespan runs inside this
    app's (ASGI only: the native server answers 404 outside ``path``); it needs ``path``.
    ``graphiql``: True serves the GraphiQL page to browsers, False never, a callable
    ``(RequestInfo) -> str`` returns the page's HTML itself. ``mask_errors``: True replaces
    the message of an unexpected resolver exception with "Internal server error" (it is
    logged once either way), False passes it to the client; None, the default, masks
    unless ``debug`` is on.

    CORS (off unless ``cors_origins`` lists origins): ``cors_origins`` are the exact
    origins (or ``"*"``, any origin, never with credentials) whose pages may call the
    endpoint; their preflights get 204 and their answers the ``access-control-*`` headers.
    ``cors_allow_credentials`` lets those pages send cookies; ``cors_max_age`` is how long
    (seconds) browsers cache a preflight; ``cors_allow_headers`` are the request headers
    those pages may send (``accept``, ``authorization``, ``content-type`` and
    ``graphql-require-preflight`` by default; add your own, such as ``x-api-key``).
    ``require_preflight_header``: refuse (400) a GET without a ``graphql-require-preflight``
    header or a non-simple ``Content-Type``, so a cross-site page cannot run queries with a
    user's cookies. ``validation_rules``: graphql-core rule classes run after the built-in
    ones on every new document (cost or list-size rules); their outcome is cached with the
    document. ``permessage_deflate``: the native server accepts WebSocket compression
    offers (off by default: CPU per message and zlib memory per connection; inflated
    messages count against ``max_ws_message_bytes``). ``cancel_mutations_on_disconnect``:
    an HTTP client that disconnects while its operation runs cancels a query at once (its
    resolvers' ``finally`` blocks run); a mutation runs to completion unless this is on.
    ``readiness_path``: a path (off unless set, e.g. ``"/ready"``) that answers 200 while
    serving and 503 from the start of a drain (``ServerHandle.drain``), for a load
    balancer's readiness probe. ``trusted_proxies``: how many proxies in front of the
    server append to ``X-Forwarded-For``; 0 (the default) counts SSE reservations by the
    peer's address and never reads that header. ``graphiql_sse``: the GraphiQL page
    subscribes over SSE (distinct connections mode) instead of a WebSocket.

    Raises:
        ValueError: a field of the wrong type or out of range (a ``limits`` that is not a
            ``Limits``, an unknown slow-consumer policy or subprotocol, one string where a
            tuple belongs, a bad CORS configuration); the message names the field.
    """

    path: str | None = None
    fallback: ASGIApp | None = None
    subscription_protocols: tuple[str, ...] = SUBPROTOCOLS
    graphiql: bool | Callable[[RequestInfo], str] = True
    graphiql_assets_url: str | None = None
    batching: bool = False
    introspection: bool = True
    mask_errors: bool | None = None
    debug: bool = False
    limits: Limits = field(default_factory=Limits)
    slow_consumer: SlowConsumerPolicy = "block"
    shared_slow_consumer: SlowConsumerPolicy = "close"
    allowed_origins: tuple[str, ...] = ()
    check_origin: bool = True
    cors_origins: tuple[str, ...] = ()
    cors_allow_credentials: bool = False
    cors_max_age: int = 600
    cors_allow_headers: tuple[str, ...] = cors.CORS_ALLOW_HEADERS
    require_preflight_header: bool = False
    validation_rules: tuple[type[ASTValidationRule], ...] = ()
    permessage_deflate: bool = False
    cancel_mutations_on_disconnect: bool = False
    readiness_path: str | None = None
    trusted_proxies: int = 0
    graphiql_sse: bool = False

    def __post_init__(self) -> None:
        _check_settings(self)
        if not isinstance(self.trusted_proxies, int) or isinstance(self.trusted_proxies, bool):
            raise ValueError(
                f"Settings.trusted_proxies must be a whole number, not {self.trusted_proxies!r}"
            )
        if self.trusted_proxies < 0:
            raise ValueError(
                f"Settings.trusted_proxies must be 0 or more, not {self.trusted_proxies!r}"
            )
        if self.path is not None and not self.path.startswith("/"):
            raise ValueError(f"Settings.path must start with '/', not {self.path!r}")
        readiness = self.readiness_path
        if readiness is not None and not (isinstance(readiness, str) and readiness[:1] == "/"):
            raise ValueError(
                f"Settings.readiness_path must be None or start with '/', not {readiness!r}"
            )
        if readiness is not None and (self.path or "/").rstrip("/") == readiness.rstrip("/"):
            raise ValueError(
                f"Settings.readiness_path must differ from path ({readiness!r}): it would"
                " answer every GraphQL request with the readiness status"
            )
        if self.fallback is not None and (self.path is None or not callable(self.fallback)):
            raise ValueError("Settings.fallback takes an ASGI app and needs path=")
        if not isinstance(self.graphiql, bool) and not callable(self.graphiql):
            raise ValueError("Settings.graphiql takes True, False or a callable returning HTML")
        unknown = set(self.subscription_protocols) - set(SUBPROTOCOLS)
        if unknown:
            raise ValueError(
                f"Settings.subscription_protocols: unknown {sorted(unknown)};"
                f" known: {list(SUBPROTOCOLS)}"
            )
        self.cors_policy()  # raises ValueError for a bad CORS configuration

    @property
    def masks_errors(self) -> bool:
        """Whether unexpected resolver exceptions reach clients as "Internal server error"."""
        return not self.debug if self.mask_errors is None else self.mask_errors

    def cors_policy(self) -> cors.CORSPolicy:
        """The ``cors_*`` settings as a ``CORSPolicy``.

        Raises:
            ValueError: ``"*"`` with credentials, a negative max age, one string where a
                tuple belongs, or a malformed header name.
        """
        return cors.CORSPolicy(
            self.cors_origins,
            self.cors_allow_credentials,
            self.cors_max_age,
            self.cors_allow_headers,
        )


_BOOLEANS = (
    "batching",
    "introspection",
    "debug",
    "check_origin",
    "cors_allow_credentials",
    "require_preflight_header",
    "permessage_deflate",
    "cancel_mutations_on_disconnect",
    "graphiql_sse",
)
_STRING_TUPLES = ("subscription_protocols", "allowed_origins", "cors_origins", "cors_allow_headers")


def _check_settings(settings: Settings) -> None:
    """The type and range checks of ``Settings`` that need no other field."""
    for name in _BOOLEANS:
        _expect(name, getattr(settings, name), bool, "True or False")
    if settings.mask_errors is not None:
        _expect("mask_errors", settings.mask_errors, bool, "True, False or None")
    for name in (*_STRING_TUPLES, "validation_rules"):
        value = getattr(settings, name)
        if isinstance(value, list):  # a list is what people write; keep the frozen tuple
            value = tuple(value)
            object.__setattr__(settings, name, value)
        if not isinstance(value, tuple):
            raise ValueError(f"Settings.{name} must be a tuple, not {value!r}")
        if name != "validation_rules" and not all(isinstance(item, str) for item in value):
            raise ValueError(f"Settings.{name} must hold strings only, not {value!r}")
    for name in ("slow_consumer", "shared_slow_consumer"):
        policy = getattr(settings, name)
        if policy not in SLOW_CONSUMER_POLICIES:
            raise ValueError(
                f"Settings.{name} must be one of {sorted(SLOW_CONSUMER_POLICIES)}, not {policy!r}"
            )
    if not isinstance(settings.limits, Limits):
        hint = ""
        if isinstance(settings.limits, Mapping):
            given = ", ".join(f"{key}={value!r}" for key, value in settings.limits.items())
            hint = f"; write limits=Limits({given})"
        raise ValueError(f"Settings.limits must be a Limits, not {settings.limits!r}{hint}")
    if settings.graphiql_assets_url is not None:
        _expect("graphiql_assets_url", settings.graphiql_assets_url, str, "a URL or None")


def _expect(name: str, value: object, kind: type, wanted: str) -> None:
    if not isinstance(value, kind):
        raise ValueError(f"Settings.{name} must be {wanted}, not {value!r}")


class SettingsOverrides(TypedDict, total=False):
    """Keyword overrides of single ``Settings`` fields, as ``GraphQL(schema, **overrides)``."""

    path: str | None
    fallback: ASGIApp | None
    subscription_protocols: tuple[str, ...]
    graphiql: bool | Callable[[RequestInfo], str]
    graphiql_assets_url: str | None
    batching: bool
    introspection: bool
    mask_errors: bool | None
    debug: bool
    slow_consumer: SlowConsumerPolicy
    shared_slow_consumer: SlowConsumerPolicy
    allowed_origins: tuple[str, ...]
    check_origin: bool
    cors_origins: tuple[str, ...]
    cors_allow_credentials: bool
    cors_max_age: int
    cors_allow_headers: tuple[str, ...]
    require_preflight_header: bool
    validation_rules: tuple[type[ASTValidationRule], ...]
    permessage_deflate: bool
    cancel_mutations_on_disconnect: bool
    readiness_path: str | None
    trusted_proxies: int
    graphiql_sse: bool


class ServerHandle:
    """Handed out by ``GraphQL.running()``; ``shutdown()`` closes every session with 1001."""

    def __init__(
        self,
        task_group: anyio.abc.TaskGroup,
        fanout: Fanout,
        limits: Limits = Limits(),  # noqa: B008
    ) -> None:
        self.task_group = task_group
        self.fanout = fanout
        self.limits = limits
        self.shutting_down = False
        #: A drain began: the readiness path answers 503, WebSocket upgrades get 503.
        self.draining = False
        #: Set when ``drain()`` is first called (the native server then shuts down).
        self.drain_requested = anyio.Event()
        #: How long the drain takes (its delay plus its window), once one began: the native
        #: server's watchdog counts it in the budget of a drain the app's own code started.
        self.drain_seconds: float | None = None
        self._drained: anyio.Event | None = None
        self.connections = 0
        #: What each live session asked to be called on shutdown (no task per session).
        self._on_shutdown: dict[object, Callable[[], None]] = {}
        #: How each live session describes what it runs (for the shutdown watchdog).
        self._describers: dict[object, Callable[[], list[str]]] = {}

    async def drain(self, *, delay: float | None = None, window: float | None = None) -> None:
        """Drain without a reconnect storm; returns once every session was asked to close.

        First the readiness path (``Settings.readiness_path``) answers 503 and new WebSocket
        upgrades get 503, for ``delay`` seconds, so that a load balancer stops routing here;
        then the live WebSocket sessions are closed with 1001 one by one, in random order,
        spread evenly over ``window`` seconds with jitter (each in its own slot of
        ``window / n``), so that their clients reconnect elsewhere at an even rate. New
        requests are still answered throughout. Calling it again waits for the first call.
        The native server runs this as the first part of its graceful shutdown (and a call
        from the app's own code starts that shutdown, bounded by the watchdog when it is on:
        ``delay + window + shutdown_grace`` plus its margin); under ASGI call it from the
        server's shutdown trigger (see docs/deployment.md).

        Args:
            delay: seconds of the first step; None: ``Limits.drain_delay``.
            window: seconds of the second step; None: ``Limits.drain_window``.
        """
        if self._drained is None:
            self._drained = anyio.Event()
            self.draining = True
            delay = self.limits.drain_delay if delay is None else delay
            window = self.limits.drain_window if window is None else window
            self.drain_seconds = delay + window
            self.drain_requested.set()
            # The server's task runs it: a caller that is cancelled (a resolver past its
            # timeout, a session the drain itself closed) cannot cut the spread short.
            self.task_group.start_soon(self._drain, delay, window, name="anyql drain")
        await self._drained.wait()

    async def _drain(self, delay: float, window: float) -> None:
        assert self._drained is not None
        try:
            await anyio.sleep(delay)
            await self._close_spread(window)
        finally:
            self._drained.set()

    async def _close_spread(self, window: float) -> None:
        sessions = list(self._on_shutdown)
        random.shuffle(sessions)
        count = len(sessions)
        if count:
            logger.info("draining %d WebSocket session(s) and stream(s) over %s s", count, window)
        start = anyio.current_time()
        for slot, key in enumerate(sessions):
            if window > 0:
                due = start + window * (slot + random.random()) / count
                await anyio.sleep(max(0.0, due - anyio.current_time()))
            callback = self._on_shutdown.pop(key, None)
            if callback is not None:  # None: the session ended meanwhile
                callback()

    def shutdown(self) -> None:
        """Ask every live WebSocket session to cancel its operations and close with 1001."""
        self.shutting_down = True
        callbacks, self._on_shutdown = self._on_shutdown, {}
        for callback in callbacks.values():
            callback()

    def watch(self, key: object, callback: Callable[[], None]) -> None:
        """Call ``callback`` once on shutdown (at once if it has begun) unless ``unwatch``ed.

        Args:
            key: identifies the watcher for ``unwatch``.
            callback: a synchronous function; it must not raise.
        """
        if self.shutting_down:
            callback()
        else:
            self._on_shutdown[key] = callback

    def unwatch(self, key: object) -> None:
        """Forget the callback registered under ``key`` (idempotent)."""
        self._on_shutdown.pop(key, None)

    def track(self, key: object, describe: Callable[[], list[str]]) -> None:
        """Register how a live session describes its running operations."""
        self._describers[key] = describe

    def untrack(self, key: object) -> None:
        """Forget a session (idempotent)."""
        self._describers.pop(key, None)

    def describe(self) -> list[str]:
        """Every running operation, one line each; safe to call from another thread."""
        lines: list[str] = []
        for describe in list(self._describers.values()):
            try:
                lines.extend(describe())
            except RuntimeError:  # changed while read from another thread: skip it
                continue
        return lines


class _RunningHTTP:
    """A query or mutation being answered over HTTP, as the shutdown watchdog names it."""

    __slots__ = ("field", "kind", "peer", "started")

    def __init__(self, kind: str, field: str, peer: str) -> None:
        self.kind = kind
        self.field = field
        self.peer = peer
        self.started = time.monotonic()

    def describe(self) -> list[str]:
        """One line, safe to call from the watchdog's thread."""
        age = time.monotonic() - self.started
        return [f"HTTP {self.kind} ({self.field}) from {self.peer}, running for {age:.1f} s"]


def _first_root_field(prepared: Any, type_name: str) -> str:
    """``Type.field`` of the operation's first root field (fragments followed), for logs."""
    fragments = {
        node.name.value: node
        for node in prepared.document.definitions
        if getattr(node, "kind", None) == "fragment_definition"
    }
    pending = [prepared.operation.selection_set]
    while pending:
        for selection in pending.pop().selections:
            node_kind = getattr(selection, "kind", None)
            if node_kind == "field":
                return f"{type_name}.{selection.name.value}"
            if node_kind == "fragment_spread":
                fragment = fragments.get(selection.name.value)
                if fragment is not None:
                    pending.append(fragment.selection_set)
            elif getattr(selection, "selection_set", None) is not None:
                pending.append(selection.selection_set)
    return type_name


class GraphQL:
    """A GraphQL server app: an ASGI 3 application and what ``anyql.run()`` serves.

    Args:
        schema: a ``Schema``, a graphql-core ``GraphQLSchema``, or an object exposing one.
        broadcast: the ``Broadcast`` resolvers reach as ``info.context.broadcast``.
        context: a sync or async factory taking the default ``Context`` and returning the
            object resolvers see as ``info.context``.
        on_connect: ``async (context, connection_params) -> ack payload | None``, or an
            ``Accepted(payload, expires_at)`` to give the connection a lifetime; raise
            ``ConnectionRejected`` to refuse the WebSocket connection.
        on_disconnect: ``async (context) -> None``, after every operation was cleaned up.
        settings: the base ``Settings``; the defaults when None.
        limits: replaces ``settings.limits``.
        **overrides: single ``Settings`` fields that replace those of ``settings``.

    Raises:
        ValueError: the schema binds resolvers wrongly (for example a subscription field
            with no source), or a setting or limit is wrong (the message names it).
        TypeError: an unknown keyword.
    """

    def __init__(
        self,
        schema: Schema | Any,
        *,
        settings: Settings | None = None,
        limits: Limits | None = None,
        broadcast: Any = None,
        context: ContextFactory | None = None,
        on_connect: OnConnect | None = None,
        on_disconnect: OnDisconnect | None = None,
        **overrides: Unpack[SettingsOverrides],
    ) -> None:
        if settings is not None and not isinstance(settings, Settings):
            raise TypeError(f"settings= takes a Settings, not {settings!r}")
        changes: dict[str, Any] = dict(overrides)
        if limits is not None:
            changes["limits"] = limits
        self.schema = as_schema(schema)
        self.schema.check()
        self.settings = replace(settings or Settings(), **changes)
        self.limits = self.settings.limits
        self.broadcast = broadcast
        self.context_factory = context
        self.on_connect = on_connect
        self.on_disconnect = on_disconnect
        self.cors = self.settings.cors_policy()
        self.http = self._graphql_http()
        self.engine = Engine(
            self.schema,
            limits=self.limits,
            introspection=self.settings.introspection,
            mask_errors=self.settings.masks_errors,
            validation_rules=self.settings.validation_rules,
        )
        self._handle: ServerHandle | None = None
        #: The app this one was rebuilt from (``with_settings``), and the rebuilt copy that
        #: is running in its place: ``anyql serve --set``/``--limit`` serves a copy, while
        #: the user's code holds the module's app and asks it for ``server``.
        self._rebuilt_from: GraphQL | None = None
        self._running_copy: GraphQL | None = None
        self.streams = HTTPStreams(self)

    def with_settings(self, settings: Settings) -> GraphQL:
        """A new app with the same schema, broadcast and hooks, built from ``settings``.

        Everything derived from the settings (the engine, the CORS policy) is built anew;
        nothing is patched after construction.
        """
        rebuilt = GraphQL(
            self.schema,
            settings=settings,
            broadcast=self.broadcast,
            context=self.context_factory,
            on_connect=self.on_connect,
            on_disconnect=self.on_disconnect,
        )
        rebuilt._rebuilt_from = self
        return rebuilt

    # --- lifetime ------------------------------------------------------------------

    @asynccontextmanager
    async def running(self) -> AsyncIterator[ServerHandle]:
        """Hold the server-wide resources (broadcast connection, shared-subscription hubs).

        Enter once around serving: the native server and the ASGI lifespan both do.
        """
        async with AsyncExitStack() as stack:
            if self.broadcast is not None and hasattr(self.broadcast, "__aenter__"):
                await stack.enter_async_context(self.broadcast)
            task_group = await stack.enter_async_context(anyio.create_task_group())
            handle = ServerHandle(task_group, Fanout(self.engine, task_group), self.limits)
            self._handle = handle
            origin = self._rebuilt_from
            while origin is not None:  # they answer ``server`` with this handle
                origin._running_copy = self
                origin = origin._rebuilt_from
            try:
                if getattr(self.broadcast, "shared_between_processes", False):
                    relay = StreamRelay(self.broadcast, self.streams.answer_relayed)
                    await task_group.start(relay.serve)
                    self.streams.relay = relay
                yield handle
            finally:
                self.streams.relay = None
                handle.shutdown()
                self._handle = None
                origin = self._rebuilt_from
                while origin is not None:
                    if origin._running_copy is self:
                        origin._running_copy = None
                    origin = origin._rebuilt_from
                task_group.cancel_scope.cancel()

    def describe_running(self) -> list[str]:
        """The operations running now, one line each (for the shutdown watchdog)."""
        handle = self._handle
        return [] if handle is None else handle.describe()

    @property
    def server(self) -> ServerHandle | None:
        """The handle of the running server, or None outside ``running()``; for an app
        served as a rebuilt copy (``anyql serve --set``, ``--limit``, ``--config``), the
        copy's."""
        if self._handle is None and self._running_copy is not None:
            return self._running_copy._handle
        return self._handle

    # --- context -------------------------------------------------------------------

    async def make_context(
        self,
        request: RequestInfo,
        connection_params: Mapping[str, Any] | None = None,
        connection: Connection | None = None,
    ) -> Any:
        """Build what resolvers see as ``info.context`` for one request or connection."""
        default = Context(
            request=request,
            connection_params=dict(connection_params or {}),
            broadcast=self.broadcast,
            connection=connection,
        )
        if self.context_factory is None:
            return default
        made = self.context_factory(default)
        if inspect.isawaitable(made):
            made = await made
        return made

    # --- HTTP ----------------------------------------------------------------------

    def matches_path(self, path: str) -> bool:
        """True when this app answers ``path`` (always, unless ``path=`` was set)."""
        wanted = self.settings.path
        return wanted is None or path.rstrip("/") == wanted.rstrip("/")

    async def handle_http(self, request: HTTPRequest) -> HTTPResponse | HTTPStream:
        """Answer one HTTP request (GraphQL over HTTP, a CORS preflight, or GraphiQL), or
        stream one: GraphQL over SSE (both modes of graphql-sse) and Apollo's multipart
        subscriptions, when ``Accept`` asks for them (``_http_streams``).

        A CORS preflight from an origin in ``cors_origins`` gets 204 and executes
        nothing; every other answer on ``path`` gets the CORS headers for its ``Origin``.
        The rules are ``http.GraphQLHTTP``'s: this method checks the path, builds the
        context and executes what ``receive`` hands back.
        """
        readiness = self.settings.readiness_path
        if readiness is not None and request.info.path == readiness:
            return self._readiness()
        if not self.matches_path(request.info.path):
            return http.error_response(HTTPError(404, "Not Found"))
        method = request.info.method
        token = None if method == "OPTIONS" else stream_token(request.info)
        if token is not None or method in ("PUT", "DELETE"):
            return await self.streams.single(request, token)
        endpoint = self.http
        received = endpoint.receive(request)
        if isinstance(received, HTTPResponse):
            return received
        if received.stream is not None:
            streamed = await self.streams.distinct(request, received)
            if streamed is not None:
                return streamed
        try:
            context = await self.make_context(request.info)
            results = [
                await self._execute_http(endpoint, received, operation, context, request.info)
                for operation in received.operations
            ]
        except (HTTPError, RequestError) as error:
            return endpoint.respond(received, error)
        return endpoint.respond(received, results)

    def _readiness(self) -> HTTPResponse:
        """200 while serving, 503 once a drain began (or outside ``running()``)."""
        handle = self._handle
        if handle is None or handle.draining or handle.shutting_down:
            return http.error_response(HTTPError(503, "Draining", (("retry-after", "5"),)))
        return HTTPResponse(200, (("content-type", "application/json"),), b'{"status":"ready"}')

    async def _execute_http(
        self,
        endpoint: http.GraphQLHTTP,
        parsed: http.ParsedRequest,
        operation: Any,
        context: Any,
        info: RequestInfo,
    ) -> dict[str, Any]:
        prepared = self.engine.prepare(operation)
        endpoint.check_operation(parsed, prepared.operation_type)
        handle = self._handle
        root = self.schema.graphql_schema.get_root_type(prepared.operation.operation)
        field = _first_root_field(prepared, root.name if root else prepared.operation_type)
        running = _RunningHTTP(prepared.operation_type, field, info.peer)
        if handle is not None:  # named in the shutdown watchdog's log while it runs
            handle.track(running, running.describe)
        try:
            if (
                prepared.operation_type == "mutation"
                and not self.settings.cancel_mutations_on_disconnect
            ):
                # A client that leaves does not stop a mutation halfway (its side effects
                # would be partial); operation_timeout still bounds it.
                with anyio.CancelScope(shield=True):
                    return await self.engine.execute(prepared, context=context, peer=info.peer)
            return await self.engine.execute(prepared, context=context, peer=info.peer)
        finally:
            if handle is not None:
                handle.untrack(running)

    def _graphql_http(self) -> http.GraphQLHTTP:
        """The sans-IO endpoint for these settings, built once with the app."""
        settings = self.settings
        return http.GraphQLHTTP(
            batching=settings.batching,
            max_batch=self.limits.max_batch,
            graphiql=settings.graphiql,
            graphiql_assets_url=settings.graphiql_assets_url,
            graphiql_sse=settings.graphiql_sse,
            cors=self.cors,
            require_preflight_header=settings.require_preflight_header,
        )

    def cors_headers(self, info: RequestInfo) -> tuple[tuple[str, str], ...]:
        """The CORS headers for an answer to ``info`` (for the transports' own errors)."""
        return cors.add_cors_headers(HTTPResponse(0), info.header_map, self.cors).headers

    # --- WebSocket -----------------------------------------------------------------

    def select_subprotocol(self, offered: Sequence[str]) -> str | None:
        """The first subprotocol the client offers that this app enables, or None."""
        return select_subprotocol(offered, self.settings.subscription_protocols)

    def websocket_handshake(self, info: RequestInfo) -> HTTPResponse | None:
        """Refuse a WebSocket handshake (403 bad Origin, 404 path, 503 full) or return None."""
        if not self.matches_path(info.path):
            return http.error_response(HTTPError(404, "Not Found"))
        if self.settings.check_origin and not self._origin_allowed(info):
            return http.error_response(HTTPError(403, "Origin not allowed"))
        handle = self._handle
        if handle is not None and (handle.draining or handle.shutting_down):
            return http.error_response(
                HTTPError(503, "Server is shutting down", (("retry-after", "1"),))
            )
        if handle is not None and handle.connections >= self.limits.max_connections:
            logger.warning(
                "refused a WebSocket from %s: max_connections (%d) reached",
                info.peer,
                self.limits.max_connections,
            )
            return http.error_response(HTTPError(503, "Too many connections"))
        return None

    def _origin_allowed(self, info: RequestInfo) -> bool:
        origin = info.header("origin")
        if origin is None or origin in self.settings.allowed_origins:
            return True  # non-browser clients send no Origin; browsers always do
        host = info.header("host")
        return host is not None and urlsplit(origin).netloc.lower() == host.lower()

    async def serve_websocket(self, transport: WebSocketTransport, info: RequestInfo) -> None:
        """Run one GraphQL-over-WebSocket session until the socket is closed."""
        handle = self._handle
        if handle is not None:
            if handle.connections >= self.limits.max_connections:
                # Handshakes that raced past the 503 check: the count is only taken here.
                logger.warning(
                    "closed a WebSocket from %s: max_connections (%d) reached",
                    info.peer,
                    self.limits.max_connections,
                )
                await transport.close(CloseCode.TRY_AGAIN_LATER, "Too many connections")
                return
            handle.connections += 1
        try:
            await serve_session(self, transport, info)
        finally:
            if handle is not None:
                handle.connections -= 1

    # --- ASGI ----------------------------------------------------------------------

    async def __call__(self, scope: ASGIScope, receive: ASGIReceive, send: ASGISend) -> None:
        """ASGI 3 entry point (``http``, ``websocket`` and ``lifespan``)."""
        await serve_asgi(self, scope, receive, send)
