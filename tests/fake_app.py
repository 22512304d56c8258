"""A stand-in for the anyql app that the native transport serves, and a way to serve it.

``FakeApp`` implements ``anyql.transports.native.ServedApp`` without GraphQL: HTTP requests
are echoed as JSON (``/boom`` raises, ``/wait`` waits for ``app.gate``), ``/forbidden``
WebSockets are refused with 403, and an accepted WebSocket echoes text, describes binary
messages, answers ``many:N`` with N frames in one write, ``close:CODE:REASON`` by closing
(twice), ``raise`` by raising, and closes 1001 when the server shuts down. ``app`` is a
module-level instance for the CLI tests (``anyql serve tests.fake_app:app``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio

from anyql.errors import ConnectionClosed
from anyql.limits import Limits
from anyql.ports import WebSocketTransport
from anyql.transports.native import NativeWebSocket, serve
from anyql.types import HTTPRequest, HTTPResponse, RequestInfo

SUBPROTOCOLS = ("graphql-transport-ws", "graphql-ws", "echo")


class FakeHandle:
    """The ``ServerHandle``: ``shutdown()`` tells every session to close 1001."""

    def __init__(self) -> None:
        self.stopping = anyio.Event()
        self.shutdown_calls = 0
        self.drain_requested = anyio.Event()
        self.drain_calls = 0

    def shutdown(self) -> None:
        self.shutdown_calls += 1
        self.stopping.set()

    async def drain(self, *, delay: float | None = None, window: float | None = None) -> None:
        self.drain_calls += 1
        self.drain_requested.set()


class FakeApp:
    """Echo endpoints for HTTP and WebSocket, recording what the transport handed over."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.handle: FakeHandle | None = None
        self.gate: anyio.Event | None = None
        self.waiting: anyio.Event | None = None
        self.requests: list[HTTPRequest] = []
        #: The ConnectionClosed code each WebSocket session saw (or "shutdown").
        self.session_ends: list[int | str] = []
        self.sent_after_close: list[int] = []

    @asynccontextmanager
    async def running(self) -> AsyncIterator[FakeHandle]:
        self.handle = FakeHandle()
        self.gate = anyio.Event()
        self.waiting = anyio.Event()
        yield self.handle

    async def handle_http(self, request: HTTPRequest) -> HTTPResponse:
        self.requests.append(request)
        info = request.info
        if info.path == "/boom":
            raise RuntimeError("boom")
        if info.path == "/wait":
            assert self.gate is not None and self.waiting is not None
            self.waiting.set()
            await self.gate.wait()
        body = {
            "method": info.method,
            "path": info.path,
            "query": info.query_string.decode("latin-1"),
            "headers": [list(pair) for pair in info.headers],
            "client": list(info.client) if info.client else None,
            "body_length": len(request.body),
        }
        return HTTPResponse(
            status=200,
            headers=(("content-type", "application/json"),),
            body=json.dumps(body).encode(),
        )

    def websocket_handshake(self, info: RequestInfo) -> HTTPResponse | None:
        if info.path == "/forbidden":
            return HTTPResponse(status=403, headers=(("content-type", "text/plain"),), body=b"no")
        return None

    def cors_headers(self, info: RequestInfo) -> tuple[tuple[str, str], ...]:
        return ()

    def select_subprotocol(self, offered: Sequence[str]) -> str | None:
        return next((name for name in offered if name in SUBPROTOCOLS), None)

    async def serve_websocket(self, transport: WebSocketTransport, info: RequestInfo) -> None:
        if transport.subprotocol is None:
            await transport.close(4406, "Subprotocol not acceptable")
            return
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._close_on_shutdown, transport, tasks.cancel_scope)
            await self._echo(transport)
            tasks.cancel_scope.cancel()

    async def _close_on_shutdown(
        self, transport: WebSocketTransport, session: anyio.CancelScope
    ) -> None:
        assert self.handle is not None
        await self.handle.stopping.wait()
        self.session_ends.append("shutdown")
        await transport.close(1001, "Going away")
        session.cancel()

    async def _echo(self, transport: WebSocketTransport) -> None:
        while True:
            try:
                message = await transport.receive()
            except ConnectionClosed as exc:
                self.session_ends.append(exc.code)
                await self._try_send_after_close(transport)
                return
            if isinstance(message, bytes):
                await transport.send_text(f"binary:{message.hex()}")
            elif message.startswith("many:"):
                assert isinstance(transport, NativeWebSocket)
                await transport.send_many([f"part {i}" for i in range(int(message[5:]))])
            elif message == "raise":
                raise RuntimeError("session bug")
            elif message.startswith("close:"):
                code, _, reason = message[6:].partition(":")
                await transport.close(int(code), reason)
                await transport.close(int(code), reason)  # idempotent
            else:
                await transport.send_text(message)

    async def _try_send_after_close(self, transport: WebSocketTransport) -> None:
        try:
            await transport.send_text("after close")
        except ConnectionClosed as exc:
            self.sent_after_close.append(exc.code)


@asynccontextmanager
async def serving(app: FakeApp, **options: Any) -> AsyncIterator[int]:
    """Serve ``app`` on 127.0.0.1, a free port; yield the port; cancel the server on exit."""
    async with anyio.create_task_group() as tasks:
        port: int = await tasks.start(partial(serve, app, port=0, **options))
        yield port
        tasks.cancel_scope.cancel()


app = FakeApp()
