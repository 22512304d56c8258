"""ASGI 3: ``http``, ``websocket`` and ``lifespan`` scopes for any ASGI server (hypercorn).

Owns ``serve_asgi`` and ``ASGIWebSocket`` (a ``WebSocketTransport`` over ASGI messages).
Imports anyio, the app's value types and errors; protocol rules stay in the session.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from ..errors import ConnectionClosed, HTTPError
from ..http import error_response
from ..protocol._common import CloseCode, truncate_reason
from ._types import HTTPRequest, HTTPResponse, RequestInfo

if TYPE_CHECKING:
    from ..app import GraphQL

__all__ = ["ASGIReceive", "ASGIScope", "ASGISend", "ASGIWebSocket", "serve_asgi"]

logger = logging.getLogger("anyql.asgi")

ASGIScope = MutableMapping[str, Any]
ASGIMessage = MutableMapping[str, Any]
ASGIReceive = Callable[[], Awaitable[ASGIMessage]]
ASGISend = Callable[[ASGIMessage], Awaitable[None]]


async def serve_asgi(app: GraphQL, scope: ASGIScope, receive: ASGIReceive, send: ASGISend) -> None:
    """Serve one ASGI scope with ``app``."""
    kind = scope["type"]
    if kind == "http":
        await _serve_http(app, scope, receive, send)
    elif kind == "websocket":
        await _serve_websocket(app, scope, receive, send)
    elif kind == "lifespan":
        await _serve_lifespan(app, receive, send)
    else:
        raise ValueError(f"anyql cannot serve ASGI scope type {kind!r}")


def request_info(scope: ASGIScope, method: str) -> RequestInfo:
    """The ``RequestInfo`` of an ASGI ``http`` or ``websocket`` scope."""
    client = scope.get("client")
    return RequestInfo(
        method=method,
        path=scope.get("path", "/"),
        query_string=scope.get("query_string", b""),
        headers=tuple(
            (name.decode("latin-1").lower(), value.decode("latin-1"))
            for name, value in scope.get("headers", ())
        ),
        client=(client[0], client[1]) if client else None,
        scheme=scope.get("scheme", "http"),
    )


# --- HTTP ------------------------------------------------------------------------


async def _serve_http(app: GraphQL, scope: ASGIScope, receive: ASGIReceive, send: ASGISend) -> None:
    info = request_info(scope, scope.get("method", "GET"))
    try:
        body = await _read_body(receive, info, app.limits.max_body_bytes)
    except HTTPError as error:
        await _send_response(send, error_response(error))
        return
    except ConnectionClosed:
        return
    await _send_response(send, await app.handle_http(HTTPRequest(info, body)))


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
    headers.append((b"content-length", str(len(response.body)).encode()))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})


# --- lifespan --------------------------------------------------------------------


async def _serve_lifespan(app: GraphQL, receive: ASGIReceive, send: ASGISend) -> None:
    message = await receive()
    if message["type"] != "lifespan.startup":
        return
    try:
        async with app.running():
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
    except Exception as error:
        logger.exception("lifespan failed")
        await send({"type": "lifespan.startup.failed", "message": str(error)})
        return
    await send({"type": "lifespan.shutdown.complete"})


# --- WebSocket -------------------------------------------------------------------


async def _serve_websocket(
    app: GraphQL, scope: ASGIScope, receive: ASGIReceive, send: ASGISend
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
        if len(data) > self._max_message:
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
