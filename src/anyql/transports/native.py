"""The native server: HTTP/1.1 (h11) and WebSockets (wsproto) over anyio TCP streams.

Owns ``serve()`` (the listener, one task per connection in one task group, graceful
shutdown), ``run()`` (``anyio.run`` plus SIGINT/SIGTERM handling), ``serve_connection()``
(the keep-alive loop and the Upgrade hand-off for one byte stream); the app comes in as
the ``ServedApp`` port (``ports``). HTTP details live in ``_native_http``, WebSocket
details in ``_native_ws``. Imports ``h11``, ``wsproto``, ``anyio``, ``errors``, ``limits``
and ``transports``; must not import ``app``, ``session`` or graphql (the app comes in as a
``ServedApp``).

Every connection's stream is closed in a ``finally``; an exception in one connection is
logged at that connection's boundary and never reaches another. Cancelling ``serve()``
stops everything at once. A graceful stop is asked for with ``shutdown_trigger``: stop
accepting, ``handle.shutdown()`` (sessions close their sockets with 1001), idle HTTP
connections closed, requests in flight answered with ``connection: close``, then up to
``limits.shutdown_grace`` for connections to end before the rest are cancelled.
"""

from __future__ import annotations

import logging
import re
import signal
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from functools import partial
from typing import Any

import anyio
import anyio.abc
import h11
from wsproto.utilities import RemoteProtocolError as WebSocketHandshakeError

from anyql.errors import ConnectionClosed, HTTPError
from anyql.limits import Limits
from anyql.ports import ServedApp, ShutdownHandle
from anyql.transports._native_http import (
    HTTPConnection,
    close_gracefully,
    is_websocket_upgrade,
    offered_subprotocols,
    transport_error_response,
    websocket_refusal,
)
from anyql.transports._native_ws import (
    AcceptedWebSocket,
    NativeWebSocket,
    accept_websocket,
    native_websocket,
)
from anyql.transports._watchdog import ShutdownWatchdog
from anyql.types import HTTPRequest, HTTPResponse, HTTPStream, RequestInfo

__all__ = ["NativeWebSocket", "ServedApp", "ShutdownHandle", "run", "serve", "serve_connection"]

logger = logging.getLogger("anyql.transports.native")
#: A single-connection SSE token in a request target: the credential of a stream, never
#: logged (``EventSource`` can only send it in the URL).
_TOKEN_IN_TARGET = re.compile(r"([?&])token=[^&]*")
#: The access log: one INFO line per request (``anyql serve --no-access-log`` turns it off).
access_logger = logging.getLogger("anyql.access")

#: Failures a client can cause; logged without a traceback at the connection boundary.
_CLIENT_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionClosed,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
    ConnectionError,
    h11.RemoteProtocolError,
    WebSocketHandshakeError,
)
_Handler = Callable[[anyio.abc.SocketStream], Coroutine[Any, Any, None]]
#: How long requests cut at the end of the shutdown grace get to send their 503.
_CUT_ANSWER_SECONDS = 0.5
#: What the watchdog allows past the shutdown's budget (the cut answers, the loop's end).
_WATCHDOG_MARGIN = 1.5
#: Back-off after a failed accept() (EMFILE and friends), so the loop does not spin.
_ACCEPT_RETRY_SECONDS = 0.1


class _Connections:
    """Live connections: counted for graceful shutdown, idle ones cancellable at once."""

    def __init__(self) -> None:
        self.live = 0
        self.draining = False
        self._idle: set[anyio.CancelScope] = set()
        #: Requests being answered; cancelled when the shutdown grace runs out.
        self._answering: set[anyio.CancelScope] = set()
        self._all_closed = anyio.Event()

    def opened(self) -> None:
        self.live += 1

    def closed(self) -> None:
        self.live -= 1
        if self.draining and self.live == 0:
            self._all_closed.set()

    def idle_scope(self) -> anyio.CancelScope:
        """A scope for waiting on the next request; cancelled when draining starts."""
        scope = anyio.CancelScope()
        if self.draining:
            scope.cancel()
        self._idle.add(scope)
        return scope

    def forget(self, scope: anyio.CancelScope) -> None:
        self._idle.discard(scope)
        self._answering.discard(scope)

    def answering_scope(self) -> anyio.CancelScope:
        """A scope for answering one request; cancelled when the shutdown grace runs out."""
        scope = anyio.CancelScope()
        self._answering.add(scope)
        return scope

    def cut_answers(self) -> None:
        """The grace is over: the requests still being answered get 503 instead."""
        for scope in self._answering:
            scope.cancel()

    def drain(self) -> None:
        self.draining = True
        for scope in self._idle:
            scope.cancel()
        if self.live == 0:
            self._all_closed.set()

    async def wait_all_closed(self) -> None:
        await self._all_closed.wait()


async def serve(
    app: ServedApp,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
    listeners: Sequence[anyio.abc.SocketListener] | None = None,
    shutdown_trigger: Callable[[], Awaitable[object]] | None = None,
    permessage_deflate: bool | None = None,
    drain_window: float | None = None,
) -> None:
    """Serve ``app`` over TCP until cancelled, or gracefully once ``shutdown_trigger`` returns.

    Args:
        app: the application.
        host: the address to bind (ignored when ``listeners`` are given).
        port: the port to bind; 0 picks a free one.
        task_status: receives the bound port (``port = await tg.start(serve, app, port=0)``).
        listeners: already bound listeners to serve instead; ``serve`` closes them.
        shutdown_trigger: awaited while serving; when it returns, shut down gracefully and
            return. Without it, ``serve`` runs until cancelled.
        permessage_deflate: accept WebSocket clients' permessage-deflate offers; None
            (the default) follows the app's ``permessage_deflate`` setting, which is off
            unless set: compression costs CPU per message and zlib memory per connection.
            Inflated messages count against ``max_ws_message_bytes``.
        drain_window: the window over which a graceful shutdown spreads the closing of
            WebSockets and streams; None (the default): the app's ``Limits.drain_window``.
            A drain the app's own code started keeps the window it asked for.

    Raises:
        OSError: the address cannot be bound.
    """
    await _serve(
        app,
        host=host,
        port=port,
        task_status=task_status,
        listeners=listeners,
        shutdown_trigger=shutdown_trigger,
        permessage_deflate=permessage_deflate,
        drain_window=drain_window,
    )


async def _serve(
    app: ServedApp,
    *,
    host: str,
    port: int,
    task_status: anyio.abc.TaskStatus[int],
    listeners: Sequence[anyio.abc.SocketListener] | None,
    shutdown_trigger: Callable[[], Awaitable[object]] | None,
    permessage_deflate: bool | None,
    drain_window: float | None,
    on_app_drain: Callable[[float], None] | None = None,
) -> None:
    """``serve``; ``on_app_drain`` is called with the drain's seconds (delay plus window)
    when the app's own code started the shutdown (``run`` arms its watchdog with it)."""
    if permessage_deflate is None:
        permessage_deflate = app_permessage_deflate(app)
    if getattr(getattr(app, "settings", None), "fallback", None) is not None:
        logger.warning(
            "anyql: the fallback= ASGI app is served under ASGI only; the native server"
            " answers 404 outside path="
        )
    if listeners is None:
        listeners = await _bind(host, port)
    try:
        address = listeners[0].extra(anyio.abc.SocketAttribute.local_address)
        bound_host, bound_port = str(address[0]), int(address[1])
        async with app.running() as handle, anyio.create_task_group() as tasks:
            connections = _Connections()
            accepting = anyio.CancelScope()
            handler = partial(_run_connection, app, connections, permessage_deflate)
            tasks.start_soon(_accept_all, listeners, tasks, handler, accepting)
            shown = f"[{bound_host}]" if ":" in bound_host else bound_host
            logger.info("anyql serving on http://%s:%d", shown, bound_port)
            task_status.started(bound_port)
            await _until_either(shutdown_trigger, handle.drain_requested.wait)
            if on_app_drain is not None and handle.drain_requested.is_set():
                on_app_drain(_drain_seconds(handle, app.limits))
            await _shut_down(app.limits, handle, connections, accepting, drain_window)
            tasks.cancel_scope.cancel()
    finally:
        for listener in listeners:
            await anyio.aclose_forcefully(listener)


def _keep_alive_over(app: ServedApp, connections: _Connections) -> bool:
    """Whether an answer closes its connection: from the first moment of a drain, so that a
    keep-alive client's next request opens a new connection (which the balancer sends
    elsewhere) instead of racing the close of an idle one."""
    if connections.draining:
        return True
    server = getattr(app, "server", None)
    return bool(getattr(server, "draining", False) or getattr(server, "shutting_down", False))


def _drain_seconds(handle: ShutdownHandle, limits: Limits) -> float:
    """How long the drain the app's own code started takes: the times it asked for."""
    seconds = getattr(handle, "drain_seconds", None)
    if isinstance(seconds, int | float):
        return float(seconds)
    return limits.drain_delay + limits.drain_window


def app_permessage_deflate(app: ServedApp) -> bool:
    """The app's ``permessage_deflate`` setting; False for an app without settings."""
    return getattr(getattr(app, "settings", None), "permessage_deflate", False) is True


async def _bind(host: str, port: int) -> list[anyio.abc.SocketListener]:
    bound = await anyio.create_tcp_listener(local_host=host, local_port=port)
    return [item for item in bound.listeners if isinstance(item, anyio.abc.SocketListener)]


async def _shut_down(
    limits: Limits,
    handle: ShutdownHandle,
    connections: _Connections,
    accepting: anyio.CancelScope,
    drain_window: float | None = None,
) -> None:
    logger.info("anyql shutting down: %d connection(s) open", connections.live)
    # The listener stays open through the drain: the readiness path must keep answering.
    await handle.drain(window=drain_window)
    accepting.cancel()
    handle.shutdown()
    connections.drain()
    with anyio.move_on_after(limits.shutdown_grace):
        await connections.wait_all_closed()
    if connections.live:
        connections.cut_answers()  # each gets 503, within the watchdog's 1.5 s margin
        with anyio.move_on_after(_CUT_ANSWER_SECONDS):
            await connections.wait_all_closed()
    if connections.live:
        logger.warning("anyql: cancelling %d connection(s) after the grace", connections.live)


async def _until_either(
    trigger: Callable[[], Awaitable[object]] | None,
    drain_requested: Callable[[], Awaitable[object]],
) -> None:
    """Return when ``trigger`` returns (never, if None) or a drain was requested."""
    async with anyio.create_task_group() as waiting:

        async def wait_then_stop(wait: Callable[[], Awaitable[object]]) -> None:
            await wait()
            waiting.cancel_scope.cancel()

        if trigger is not None:
            waiting.start_soon(wait_then_stop, trigger)
        waiting.start_soon(wait_then_stop, drain_requested)


async def _accept_all(
    listeners: Sequence[anyio.abc.SocketListener],
    tasks: anyio.abc.TaskGroup,
    handler: _Handler,
    accepting: anyio.CancelScope,
) -> None:
    with accepting:
        async with anyio.create_task_group() as loops:
            for listener in listeners:
                loops.start_soon(_accept_forever, listener, tasks, handler)
    for listener in listeners:
        await anyio.aclose_forcefully(listener)


async def _accept_forever(
    listener: anyio.abc.SocketListener,
    tasks: anyio.abc.TaskGroup,
    handler: _Handler,
) -> None:
    while True:
        try:
            stream = await listener.accept()
        except (OSError, anyio.BrokenResourceError) as exc:
            # Out of file descriptors (EMFILE, ENFILE) or a connection reset before it was
            # accepted: the listener is fine, so wait a little and go on accepting. (anyio
            # reports the OSError as BrokenResourceError on Trio, as OSError on asyncio.)
            cause = exc.__cause__ if isinstance(exc, anyio.BrokenResourceError) else exc
            logger.warning("anyql: accept() failed: %s", cause or exc)
            await anyio.sleep(_ACCEPT_RETRY_SECONDS)
            continue
        tasks.start_soon(handler, stream)


async def _run_connection(
    app: ServedApp,
    connections: _Connections,
    permessage_deflate: bool,
    stream: anyio.abc.SocketStream,
) -> None:
    connections.opened()
    try:
        await serve_connection(
            app,
            stream,
            client=_peer(stream),
            connections=connections,
            permessage_deflate=permessage_deflate,
        )
    except Exception as exc:
        _log_failure(exc)
    finally:
        await anyio.aclose_forcefully(stream)
        connections.closed()


async def serve_connection(
    app: ServedApp,
    stream: anyio.abc.ByteStream,
    *,
    client: tuple[str, int] | None = None,
    connections: _Connections | None = None,
    permessage_deflate: bool = False,
) -> None:
    """Serve HTTP requests, or one WebSocket, on ``stream``, then close it gracefully.

    Args:
        app: the application.
        stream: one client connection (a socket or an in-memory byte stream).
        client: the peer address reported to the app.
        connections: the server's connection registry (graceful shutdown); internal.
        permessage_deflate: accept permessage-deflate offers (see ``serve``).

    Raises:
        h11.LocalProtocolError: the app returned a malformed ``HTTPResponse``. (Exceptions
            from ``handle_http`` become a 500 and from ``serve_websocket`` a 1011 close; both
            are logged, not raised.)
    """
    registry = connections if connections is not None else _Connections()
    http = HTTPConnection(stream, app.limits, client=client)
    upgrade = await _serve_requests(app, http, registry, permessage_deflate)
    if upgrade is not None:
        del http  # a WebSocket lives long: it keeps nothing of h11's state
        await _serve_websocket(app, stream, *upgrade)
    await close_gracefully(stream)


async def _serve_requests(
    app: ServedApp, http: HTTPConnection, connections: _Connections, permessage_deflate: bool
) -> tuple[AcceptedWebSocket, str | None, RequestInfo] | None:
    """Answer HTTP requests until the connection ends or upgrades (then return the upgrade)."""
    while not connections.draining:
        request: h11.Request | None = None
        scope = connections.idle_scope()
        try:
            with scope:
                request = await http.next_request()
        finally:
            connections.forget(scope)
        if request is None:
            return None
        if is_websocket_upgrade(request):
            return await _upgrade(app, http, request, permessage_deflate)
        started = anyio.current_time()
        info = http.request_info(request)
        body = await http.read_body(request, error_headers=app.cors_headers(info))
        if body is None:
            return None
        answered: list[HTTPResponse | HTTPStream] = []
        streamed: list[int] = []  # a stream's size, then 1 if the connection may go on
        answering = connections.answering_scope()
        try:
            with answering:
                await _respond_unless_gone(
                    app,
                    http,
                    HTTPRequest(info=info, body=body),
                    answered,
                    streamed,
                    connections.draining,
                )
        except anyio.get_cancelled_exc_class():
            # The server cut every connection (grace and cut over) while a shielded mutation
            # ran on: it finished while its connection was being cancelled, so its effects
            # are applied and its answer is sent all the same, briefly and shielded.
            late = answered[0] if answered else None
            if isinstance(late, HTTPResponse):
                with anyio.move_on_after(_CUT_ANSWER_SECONDS, shield=True):
                    await http.send_response(late, close=True)
                _log_access(info, request, late.status, len(late.body), started)
            raise
        finally:
            connections.forget(answering)
        # An answer that exists is sent, also when the grace ran out as it finished (a
        # shielded mutation): a 503 would invite the client to run it again.
        response = answered[0] if answered else None
        if isinstance(response, HTTPStream):  # sent while it ran
            _log_access(info, request, response.status, streamed[0] if streamed else 0, started)
            if streamed[1:] != [1]:
                return None
            continue
        if response is None and answering.cancelled_caught:  # the grace ran out first
            cut = transport_error_response(503, "Server is shutting down", app.cors_headers(info))
            await http.send_response(cut, close=True)
            _log_access(info, request, cut.status, len(cut.body), started)
            return None
        if response is None:
            logger.debug("anyql: %s left before its answer; cancelled", info.peer)
            return None
        sent = await http.send_response(response, close=_keep_alive_over(app, connections))
        _log_access(info, request, response.status, len(response.body), started)
        if not sent:
            return None
    return None


def _log_access(
    info: RequestInfo, request: h11.Request, status: int, size: int, started: float
) -> None:
    """One line per request on ``anyql.access`` (INFO): peer, request line, status, size,
    time; WebSocket upgrades are logged when the handshake is answered (101 or a refusal)."""
    if not access_logger.isEnabledFor(logging.INFO):
        return
    target = _TOKEN_IN_TARGET.sub(r"\1token=…", request.target.decode("ascii", errors="replace"))
    access_logger.info(
        '%s "%s %s HTTP/%s" %d %d %.1fms',
        info.peer,
        info.method,
        target,
        request.http_version.decode("ascii", errors="replace"),
        status,
        size,
        (anyio.current_time() - started) * 1000,
    )


async def _respond_unless_gone(
    app: ServedApp,
    http: HTTPConnection,
    request: HTTPRequest,
    answered: list[HTTPResponse | HTTPStream],
    streamed: list[int],
    draining: bool = False,
) -> None:
    """Append the app's answer to ``answered``, unless the peer closes first: then the
    answering is cancelled (what the app shields, a mutation by default, still finishes).
    A streamed answer is sent here, while its body runs; ``streamed`` gets the body's size,
    then 1 when the connection may go on (nothing more when the stream was cut).

    The answer runs in a child task, so context variables the app sets while answering
    (a request id, the user) start fresh with every request of a keep-alive connection.
    """
    async with anyio.create_task_group() as tasks:

        async def answer() -> None:
            response = await _respond(app, request)
            answered.append(response)
            if isinstance(response, HTTPStream):
                try:
                    if await http.send_stream(response, streamed, close=draining):
                        streamed.append(1)
                except ConnectionClosed:
                    pass
                except Exception:
                    logger.exception("anyql: a streamed answer to %s failed", request.info.peer)
            tasks.cancel_scope.cancel()

        tasks.start_soon(answer)
        await http.wait_for_peer_close()
        tasks.cancel_scope.cancel()


async def _respond(app: ServedApp, request: HTTPRequest) -> HTTPResponse | HTTPStream:
    try:
        return await app.handle_http(request)
    except HTTPError as exc:
        return transport_error_response(exc.status, exc.message, exc.headers)
    except Exception:
        info = request.info
        logger.exception("anyql: handle_http failed for %s %s", info.method, info.path)
        return transport_error_response(500)


async def _upgrade(
    app: ServedApp, http: HTTPConnection, request: h11.Request, permessage_deflate: bool
) -> tuple[AcceptedWebSocket, str | None, RequestInfo] | None:
    """Vet and accept an Upgrade request; None when it was refused or the peer left."""
    started = anyio.current_time()
    info = http.request_info(request)
    refusal = websocket_refusal(info, request.http_version) or app.websocket_handshake(info)
    if refusal is not None:
        await http.send_response(refusal, close=True)
        _log_access(info, request, refusal.status, len(refusal.body), started)
        return None
    if await http.read_body(request) is None:
        return None
    subprotocol = app.select_subprotocol(offered_subprotocols(info))
    try:
        accepted = accept_websocket(
            request.headers,
            request.target,
            subprotocol,
            http.trailing_data,
            deflate_max_bytes=app.limits.max_ws_message_bytes if permessage_deflate else None,
        )
    except WebSocketHandshakeError:
        await http.send_response(transport_error_response(400), close=True)
        return None
    if not await http.write_raw(accepted.handshake):
        return None
    _log_access(info, request, 101, 0, started)
    return accepted, subprotocol, info


async def _serve_websocket(
    app: ServedApp,
    stream: anyio.abc.ByteStream,
    accepted: AcceptedWebSocket,
    subprotocol: str | None,
    info: RequestInfo,
) -> None:
    async with native_websocket(stream, accepted, subprotocol, app.limits) as socket:
        try:
            await app.serve_websocket(socket, info)
        except ConnectionClosed:
            pass
        except Exception:
            logger.exception("anyql: WebSocket session failed on %s", info.path)
            await socket.close(1011, "Internal error")
        await socket.finish()


def run(
    app: ServedApp,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    backend: str = "trio",
    permessage_deflate: bool | None = None,
    shutdown_watchdog: bool = False,
    drain_window: float | None = None,
) -> None:
    """Serve ``app`` until SIGINT or SIGTERM, then stop gracefully; a second signal cancels
    what is left at once (a cleanup that shields itself still runs to its end, unless
    ``shutdown_watchdog`` ends the process).

    Args:
        app: the application.
        host: the address to bind.
        port: the port to bind.
        backend: ``"trio"`` or ``"asyncio"``.
        permessage_deflate: accept permessage-deflate offers (see ``serve``).
        shutdown_watchdog: guarantee an exit: from the first signal, a thread outside the
            event loop ends the process with status 70 (``EXIT_SHUTDOWN_OVERRUN``) if the
            graceful shutdown takes more than its budget (``drain_delay`` + ``drain_window``
            + ``shutdown_grace``) plus 1.5 s, and a second signal ends it at once the same
            way. A drain the app's own code starts (``app.server.drain()``) arms it too,
            with that drain's own delay and window. The budget runs until the process ends,
            not until ``run`` returns: Python still waits for non-daemon threads then
            (on asyncio, anyio's worker threads, with a ``to_thread`` call abandoned on
            cancel), so after a signal the program should end soon after ``run`` returns.
            Off by default: a program that embeds ``run`` must not be ended by surprise;
            ``anyql serve`` turns it on.
        drain_window: the drain's window (see ``serve``); None: ``Limits.drain_window``.

    Raises:
        OSError: the address cannot be bound.
    """
    watchdog = None
    if shutdown_watchdog:
        describe = getattr(app, "describe_running", None)
        limits = app.limits
        window = limits.drain_window if drain_window is None else drain_window
        budget = limits.drain_delay + window + limits.shutdown_grace
        watchdog = ShutdownWatchdog(budget + _WATCHDOG_MARGIN, describe)
    serving = partial(
        _serve_until_signalled,
        app,
        host=host,
        port=port,
        permessage_deflate=permessage_deflate,
        watchdog=watchdog,
        drain_window=drain_window,
    )
    try:
        anyio.run(serving, backend=backend)
    finally:
        # Once a signal armed it, the watchdog stays armed until the process ends: after
        # ``anyio.run`` returns Python still waits for non-daemon threads (anyio's asyncio
        # workers, a ``to_thread`` call abandoned on cancel), and the budget covers that too.
        if watchdog is not None and not watchdog.armed:
            watchdog.disarm()


async def _serve_until_signalled(
    app: ServedApp,
    *,
    host: str,
    port: int,
    permessage_deflate: bool | None,
    watchdog: ShutdownWatchdog | None,
    drain_window: float | None = None,
) -> None:
    listeners = await _bind(host, port)  # before the task group, so OSError comes out bare
    stop = anyio.Event()
    on_app_drain = None if watchdog is None else partial(_arm_for_app_drain, watchdog, app)
    try:
        async with anyio.create_task_group() as tasks:
            await tasks.start(_watch_signals, stop, tasks.cancel_scope, watchdog)
            await _serve(
                app,
                host=host,
                port=port,
                task_status=anyio.TASK_STATUS_IGNORED,
                listeners=listeners,
                shutdown_trigger=stop.wait,
                permessage_deflate=permessage_deflate,
                drain_window=drain_window,
                on_app_drain=on_app_drain,
            )
            tasks.cancel_scope.cancel()
    finally:
        for listener in listeners:
            await anyio.aclose_forcefully(listener)


async def _watch_signals(
    stop: anyio.Event,
    everything: anyio.CancelScope,
    watchdog: ShutdownWatchdog | None,
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        if watchdog is not None:
            _arm_in_the_handler(watchdog)
        task_status.started()
        async for signum in signals:
            if stop.is_set():
                name = signal.Signals(signum).name
                if watchdog is not None:
                    logger.warning("anyql: %s again, stopping now", name)
                    watchdog.fire_now()  # shielded cleanups cannot hold the process
                else:
                    logger.warning(
                        "anyql: %s again, cancelling everything now; a cleanup that shields"
                        " itself still runs to its end (shutdown_watchdog=True would end"
                        " the process)",
                        name,
                    )
                everything.cancel()
                return
            logger.info("anyql: %s received", signal.Signals(signum).name)
            if watchdog is not None:
                watchdog.arm()
            stop.set()


def _arm_for_app_drain(watchdog: ShutdownWatchdog, app: ServedApp, drain_seconds: float) -> None:
    """The app's own code started a drain, so no signal armed the watchdog: arm it with
    that drain's times (they may differ from ``Limits``') plus the grace and the margin."""
    budget = drain_seconds + app.limits.shutdown_grace + _WATCHDOG_MARGIN
    logger.info(
        "anyql: the app started a drain; the watchdog ends the process if it has not ended"
        " within %g s",
        budget,
    )
    watchdog.arm(budget)


def _arm_in_the_handler(watchdog: ShutdownWatchdog) -> None:
    """Arm (or fire) ``watchdog`` in the signal handler itself, before the event loop sees
    the signal: a resolver that blocks the loop (``time.sleep``) would otherwise keep the
    loop from ever noticing it. The loop's own handler still runs after."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop_handler = signal.getsignal(signum)

        def handler(number: int, frame: Any, loop_handler: Any = loop_handler) -> None:
            watchdog.on_signal()
            if callable(loop_handler):
                loop_handler(number, frame)

        signal.signal(signum, handler)


def _peer(stream: anyio.abc.SocketStream) -> tuple[str, int] | None:
    address = stream.extra(anyio.abc.SocketAttribute.remote_address, None)
    if isinstance(address, tuple) and len(address) >= 2:
        return (str(address[0]), int(address[1]))
    return None


def _log_failure(exc: Exception) -> None:
    leaves = exc.split(_CLIENT_ERRORS)[1] if isinstance(exc, BaseExceptionGroup) else exc
    if leaves is None or isinstance(leaves, _CLIENT_ERRORS):
        logger.debug("anyql: connection ended by the client: %r", exc)
    else:
        logger.error("anyql: connection failed", exc_info=exc)
