"""An echo endpoint on the native transport: what the Autobahn fuzzing client expects.

``EchoApp`` implements ``anyql.transports.native.ServedApp`` without GraphQL: every HTTP
request gets 404, every WebSocket is accepted without a subprotocol and echoes each text
message as text and each binary message as binary, until the client closes. Keep-alive
pings are off (Autobahn counts every frame it receives) and the message cap is raised to
hold the suite's largest messages (16 MiB in cases 9.x).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import anyio

from anyql.errors import ConnectionClosed
from anyql.limits import Limits
from anyql.ports import WebSocketTransport
from anyql.transports._native_http import transport_error_response
from anyql.transports._native_ws import NativeWebSocket
from anyql.types import HTTPRequest, HTTPResponse, RequestInfo

MIB = 1024 * 1024


class EchoHandle:
    """The server handle: nothing to shut down or drain beyond the connections themselves."""

    def __init__(self) -> None:
        self.drain_requested = anyio.Event()

    def shutdown(self) -> None:
        return None

    async def drain(self, *, delay: float | None = None, window: float | None = None) -> None:
        self.drain_requested.set()


class EchoApp:
    """Echo text as text and binary as binary on every WebSocket."""

    limits = Limits(max_ws_message_bytes=32 * MIB, keep_alive_interval=0)

    def __init__(self) -> None:
        self.sessions = 0

    @asynccontextmanager
    async def running(self) -> AsyncIterator[EchoHandle]:
        yield EchoHandle()

    async def handle_http(self, request: HTTPRequest) -> HTTPResponse:
        return transport_error_response(404)

    def websocket_handshake(self, info: RequestInfo) -> HTTPResponse | None:
        return None

    def cors_headers(self, info: RequestInfo) -> tuple[tuple[str, str], ...]:
        return ()

    def select_subprotocol(self, offered: Sequence[str]) -> str | None:
        return None

    async def serve_websocket(self, transport: WebSocketTransport, info: RequestInfo) -> None:
        assert isinstance(transport, NativeWebSocket)
        self.sessions += 1
        while True:
            try:
                message = await transport.receive()
                if isinstance(message, bytes):
                    await transport.send_bytes(message)
                else:
                    await transport.send_text(message)
            except ConnectionClosed:
                return
