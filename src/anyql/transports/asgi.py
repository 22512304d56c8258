"""ASGI 3: ``http``, ``websocket`` and ``lifespan`` scopes for any ASGI server (hypercorn).

Owns ``serve_asgi``, ``ASGIWebSocket`` (a ``WebSocketTransport`` over ASGI messages) and
the hand-off to the app's ``fallback``: scopes outside the app's ``path`` go to it
untouched, and its lifespan runs as a child of ours (started after ``app.running()`` is
entered, shut down before it is left). Imports anyio, the app's value types and errors;
protocol rules stay in the session.
"""

from __future__ import annotations

import logging
import weakref
from contextlib import AsyncExitStack, suppress
from dataclasses import replace
from typing import TYPE_CHECKING

import anyio

from ..errors import ConnectionClosed, HTTPError
from ..http import error_response
from ..protocol import CloseCode, truncate_reason
from ..types import (
    ASGIApp,
    ASGIMessage,
    ASGIReceive,
    ASGIScope,
    ASGISend,
    HTTPRequest,
    HTTPResponse,
    HTTPStream,
    RequestInfo,
)

if TYPE_CHECKING:
    from ..ports import ASGIHost

__all__ = ["ASGIApp", "ASGIReceive", "ASGIScope", "ASGISend", "ASGIWebSocket", "serve_asgi"]

logger = logging.getLogger("anyql.asgi")


async def serve_asgi(app: ASGIHost, scope: ASGIScope, receive: ASGIReceive, send: ASGISend) -> None:
    """Serve one ASGI scope with ``app``, or hand it to ``app.settings.fallback``.

    Args:
        app: the application.
        scope: the ASGI scope.
        receive: the ASGI receive callable.
        send: the ASGI send callable.

    Raises:
        ValueError: a scope type anyql does not serve, and no fallback.
    """
    kind = scope["type"]
    fallback = app.settings.fallback
    if fallback is not None and _belongs_to_fallback(app, kind, scope):
        await fallback(scope, receive, send)
        return
    if kind in ("http", "websocket") and app.server is None:
        _warn_no_lifespan(app)
    if kind == "http":
        await _serve_http(app, scope, receive, send)
    elif kind == "websocket":
        await _serve_websocket(app, scope, receive, send)
    elif kind == "lifespan":
        await _serve_lifespan(app, scope, receive, send)
    else:
        raise ValueError(f"anyql cannot serve ASGI scope type {kind!r}")


#: Apps already warned that they serve without their lifespan.
#: Connection-specific headers, which HTTP/2 forbids (RFC 9113 8.2.2); the server frames.
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "upgrade"}
)
_WARNED_NO_LIFESPAN: weakref.WeakSet[ASGIHost] = weakref.WeakSet()


def _warn_no_lifespan(app: ASGIHost) -> None:
    if app in _WARNED_NO_LIFESPAN:
        return
    _WARNED_NO_LIFESPAN.add(app)
    logger.warning(
        "anyql: serving requests without the app's lifespan, so its broadcast and shared"
        " subscriptions are not running. A parent app that does not forward lifespan events"
        " to mounted apps (Starlette's Mount, FastAPI's mount) must enter `app.running()`"
        " in its own lifespan; see docs/deployment.md, 'Mounting next to other apps'"
    )


def _belongs_to_fallback(app: ASGIHost, kind: str, scope: ASGIScope) -> bool:
    if kind in ("http", "websocket"):
        return not app.matches_path(app_path(scope))
    return kind != "lifespan"  # ours, and it runs the fallback's inside it


def app_path(scope: ASGIScope) -> str:
    """The path below ``root_path``: where the app is mounted is not part of its ``path``.

    ASGI servers and frameworks (Starlette's ``Mount``) put the whole path in ``path`` and
    the mount point in ``root_path``; a ``path`` not under ``root_path`` (already
    stripped, as older frameworks and some proxies do) is used as it is.
    """
    path: str = scope.get("path", "/")
    root = str(scope.get("root_path", "")).rstrip("/")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        return path[len(root) :] or "/"
    return path


def request_info(scope: ASGIScope, method: str) -> RequestInfo:
    """The ``RequestInfo`` of an ASGI ``http`` or ``websocket`` scope (path from ``app_path``)."""
    client = scope.get("client")
    return RequestInfo(
        method=method,
        path=app_path(scope),
        query_string=scope.get("query_string", b""),
        headers=tuple(
            (name.decode("latin-1").lower(), value.decode("latin-1"))
            for name, value in scope.get("headers", ())
        ),
        client=(client[0], client[1]) if client else None,
        scheme=scope.get("scheme", "http"),
    )


# --- HTTP ------------------------------------------------------------------------


async def _serve_http(
    app: ASGIHost, scope: ASGIScope, receive: ASGIReceive, send: ASGISend
) -> None:
    info = request_info(scope, scope.get("method", "GET"))
    try:
        body = await _read_body(receive, info, app.limits.max_body_bytes)
    except HTTPError as error:
        refusal = error_response(error)
        headers = (*refusal.headers, *app.cors_headers(info))
        await _send_response(send, replace(refusal, headers=headers))
        return
    except ConnectionClosed:
        return
    response: HTTPResponse | HTTPStream | None = None
    async with anyio.create_task_group() as tasks:

        async def answer() -> None:
            nonlocal response
            response = await app.handle_http(HTTPRequest(info, body))
            if isinstance(response, HTTPStream):
                with suppress(ConnectionClosed):
                    await _send_stream(send, response)
            tasks.cancel_scope.cancel()

        tasks.start_soon(answer)
        await _wait_for_disconnect(receive)  # the client left: cancel what it asked for
        tasks.cancel_scope.cancel()
    if isinstance(response, HTTPResponse):
        await _send_response(send, response)


async def _wait_for_disconnect(receive: ASGIReceive) -> None:
    """Return on ``http.disconnect`` (the body was read whole, so nothing else comes)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def _read_body(receive: ASGIReceive, info: RequestInfo, limit: int) -> bytes:
    declared = info.header("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPError(413, "Request body too large")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionClosed(1006)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise HTTPError(413, "Request body too large")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send_response(send: ASGISend, response: HTTPResponse) -> None:
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
    if response.status not in (204, 304):  # RFC 9110: no content-length on these
        headers.append((b"content-length", str(len(response.body)).encode()))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})


class _ASGISink:
    """The ``StreamSink`` of an ASGI streamed response: each send is a ``more_body`` part."""

    __slots__ = ("_send", "_start")

    def __init__(self, send: ASGISend, start: ASGIMessage) -> None:
        self._send = send
        #: ``http.response.start``, sent with the first part of the body.
        self._start: ASGIMessage | None = start

    async def send(self, data: bytes) -> None:
        try:
            start, self._start = self._start, None
            if start is not None:
                await self._send(start)
            await self._send({"type": "http.response.body", "body": data, "more_body": True})
        except OSError as error:  # the server reports a client that left (uvicorn, daphne)
            raise ConnectionClosed(1006) from error


async def _send_stream(send: ASGISend, response: HTTPStream) -> None:
    """Send ``response``'s head, run its body in this task, then end the body; the server
    frames it (chunked over HTTP/1.1, a DATA stream over HTTP/2)."""
    headers = [
        (k.encode("latin-1"), v.encode("latin-1"))
        for k, v in response.headers
        if k.lower() not in _HOP_BY_HOP
    ]
    start = {"type": "http.response.start", "status": response.status, "headers": headers}
    # The body is the first thing awaited, so it releases what it holds in its own finally
    # even when the client is gone before the head could go out.
    sink = _ASGISink(send, start)
    await response.body(sink)
    await sink.send(b"")  # the head, if the body sent nothing
    await send({"type": "http.response.body", "body": b"", "more_body": False})


# --- lifespan --------------------------------------------------------------------


async def _serve_lifespan(
    app: ASGIHost, scope: ASGIScope, receive: ASGIReceive, send: ASGISend
) -> None:
    message = await receive()
    if message["type"] != "lifespan.startup":
        return
    stack = AsyncExitStack()
    try:
        child = await _start_lifespan(app, scope, stack)
    except Exception as error:
        logger.exception("lifespan startup failed")
        await stack.aclose()
        await send({"type": "lifespan.startup.failed", "message": str(error)})
        return
    await send({"type": "lifespan.startup.complete"})
    failure: str | None = None
    try:
        await receive()  # lifespan.shutdown
        if child is not None:
            failure = await child.shutdown()
    finally:
        try:
            await stack.aclose()
        except Exception as error:
            logger.exception("lifespan shutdown failed")
            failure = failure or str(error) or type(error).__name__
    if failure is not None:
        await send({"type": "lifespan.shutdown.failed", "message": failure})
    else:
        await send({"type": "lifespan.shutdown.complete"})


async def _start_lifespan(
    app: ASGIHost, scope: ASGIScope, stack: AsyncExitStack
) -> ChildLifespan | None:
    """Enter ``app.running()``, then start the fallback's lifespan (if any) inside it."""
    default_logging()
    warn_inert_settings(app)
    await stack.enter_async_context(app.running())
    fallback = app.settings.fallback
    if fallback is None:
        return None
    tasks = await stack.enter_async_context(anyio.create_task_group())
    stack.callback(tasks.cancel_scope.cancel)  # a child lifespan that lingers after shutdown
    child = ChildLifespan(fallback, scope, tasks)
    await child.startup()
    return child


def default_logging() -> None:
    """Give the ``anyql`` loggers a timestamped stderr handler at INFO when nothing in the
    process configured logging (hypercorn configures only its own loggers); otherwise, or
    when called again, leave logging alone."""
    anyql_logger = logging.getLogger("anyql")
    if anyql_logger.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    anyql_logger.addHandler(handler)
    if anyql_logger.level == logging.NOTSET:
        anyql_logger.setLevel(logging.INFO)


def warn_inert_settings(app: ASGIHost) -> None:
    """Log a warning for each setting away from its default that ASGI cannot enforce."""
    for name in app.limits.asgi_inert():
        logger.warning(
            "anyql: Limits.%s=%r is enforced by anyql's native server only; under an ASGI"
            " server, configure that server's own equivalent",
            name,
            getattr(app.limits, name),
        )
    if app.settings.permessage_deflate:
        logger.warning(
            "anyql: permessage_deflate=True applies to anyql's native server only; under an"
            " ASGI server, the server decides WebSocket compression"
        )


class _LifespanStartupFailed(Exception):
    """The fallback app answered ``lifespan.startup.failed``."""


class ChildLifespan:
    """The fallback app's lifespan, driven from ours: one task, two messages each way.

    An app that returns or raises before answering ``lifespan.startup`` does not support
    lifespan (ASGI: the server then carries on without it), so neither do we for it.
    """

    def __init__(self, child: ASGIApp, scope: ASGIScope, tasks: anyio.abc.TaskGroup) -> None:
        self._to_child, self._child_inbox = anyio.create_memory_object_stream[ASGIMessage](2)
        self._child_outbox, self._from_child = anyio.create_memory_object_stream[ASGIMessage](2)
        self.supported = True
        tasks.start_soon(self._run, child, dict(scope))

    async def startup(self) -> None:
        """Forward ``lifespan.startup`` and wait for the answer.

        Raises:
            _LifespanStartupFailed: the child answered ``lifespan.startup.failed``.
        """
        await self._to_child.send({"type": "lifespan.startup"})
        reply = await self._reply()
        if reply is None:
            self.supported = False
        elif reply["type"] == "lifespan.startup.failed":
            raise _LifespanStartupFailed(reply.get("message", ""))

    async def shutdown(self) -> str | None:
        """Forward ``lifespan.shutdown``; return the child's failure message, if any."""
        if not self.supported:
            return None
        await self._to_child.send({"type": "lifespan.shutdown"})
        reply = await self._reply()
        if reply is not None and reply["type"] == "lifespan.shutdown.failed":
            return str(reply.get("message", ""))
        return None

    async def _reply(self) -> ASGIMessage | None:
        try:
            return await self._from_child.receive()
        except anyio.EndOfStream:
            return None

    async def _run(self, child: ASGIApp, scope: ASGIScope) -> None:
        async def receive() -> ASGIMessage:
            return await self._child_inbox.receive()

        async def send(message: ASGIMessage) -> None:
            await self._child_outbox.send(message)

        try:
            await child(scope, receive, send)
        except Exception:
            logger.debug("the fallback app does not support lifespan", exc_info=True)
        finally:
            self._child_outbox.close()


# --- WebSocket -------------------------------------------------------------------


async def _serve_websocket(
    app: ASGIHost, scope: ASGIScope, receive: ASGIReceive, send: ASGISend
) -> None:
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    info = request_info(scope, "GET")
    refusal = app.websocket_handshake(info)
    if refusal is not None:
        await _refuse_websocket(scope, send, refusal)
        return
    subprotocol = app.select_subprotocol(scope.get("subprotocols") or ())
    await send({"type": "websocket.accept", "subprotocol": subprotocol})
    transport = ASGIWebSocket(receive, send, subprotocol, app.limits.max_ws_message_bytes)
    await app.serve_websocket(transport, info)
    await transport.close(CloseCode.NORMAL)


async def _refuse_websocket(scope: ASGIScope, send: ASGISend, refusal: HTTPResponse) -> None:
    if "websocket.http.response" in scope.get("extensions", {}):
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in refusal.headers]
        await send(
            {"type": "websocket.http.response.start", "status": refusal.status, "headers": headers}
        )
        await send({"type": "websocket.http.response.body", "body": refusal.body})
    else:
        await send({"type": "websocket.close", "code": 1008})


class ASGIWebSocket:
    """A ``WebSocketTransport`` over the ASGI ``websocket`` message protocol."""

    def __init__(
        self, receive: ASGIReceive, send: ASGISend, subprotocol: str | None, max_message: int
    ) -> None:
        self._receive = receive
        self._send = send
        self._subprotocol = subprotocol
        self._max_message = max_message
        self._closed = False

    @property
    def subprotocol(self) -> str | None:
        return self._subprotocol

    async def receive(self) -> str | bytes:
        if self._closed:
            raise ConnectionClosed(1006)
        message = await self._receive()
        if message["type"] == "websocket.disconnect":
            self._closed = True
            raise ConnectionClosed(message.get("code", 1005), message.get("reason") or "")
        data: str | bytes | None = message.get("text")
        if data is None:
            data = message.get("bytes") or b""
        size = len(data) if isinstance(data, bytes) or data.isascii() else len(data.encode())
        if size > self._max_message:
            await self.close(CloseCode.MESSAGE_TOO_BIG, "Message too big")
            raise ConnectionClosed(CloseCode.MESSAGE_TOO_BIG)
        return data

    async def send_text(self, text: str) -> None:
        if self._closed:
            raise ConnectionClosed(1006)
        try:
            await self._send({"type": "websocket.send", "text": text})
        except Exception as error:  # servers raise their own types once the socket is gone
            self._closed = True
            raise ConnectionClosed(1006) from error

    async def close(self, code: int, reason: str = "") -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._send(
                {"type": "websocket.close", "code": int(code), "reason": truncate_reason(reason)}
            )
        except Exception:  # already gone: closing is best effort
            logger.debug("websocket.close after disconnect", exc_info=True)
