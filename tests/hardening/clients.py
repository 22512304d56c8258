"""Clients for the hardening tests: GraphQL over WebSocket and over HTTP, on real sockets.

``GraphQLSocket`` speaks either subprotocol with wsproto (JSON in and out, Origin and
Cookie headers settable), ``post``/``get`` send one HTTP request with h11, and
``serving``/``count_tasks``/``eventually`` run an app in-process and watch its tasks.
Works against the in-process native server and against hypercorn in a subprocess alike.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio
import anyio.abc
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Event,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.extensions import PerMessageDeflate

from anyql import GraphQL, serve
from tests.test_native_http import Client as HTTPClient

JSON_HEADERS = [("content-type", "application/json"), ("accept", "application/json")]


class Refused(Exception):
    """The server refused the WebSocket handshake with an HTTP response."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"handshake refused with {status}")
        self.status = status
        self.body = body


class GraphQLSocket:
    """One WebSocket client on a real socket; answers pings unless told not to."""

    def __init__(self, stream: anyio.abc.SocketStream, answer_pings: bool) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.answer_pings = answer_pings
        self.pings = 0
        #: The extensions the server accepted at the handshake.
        self.extensions: list[str] = []
        self._pending: list[Event] = []
        self._text: list[str] = []

    @classmethod
    async def connect(
        cls,
        port: int,
        *,
        subprotocol: str = "graphql-transport-ws",
        path: str = "/graphql",
        headers: tuple[tuple[str, str], ...] = (),
        answer_pings: bool = True,
        deflate: bool = False,
    ) -> GraphQLSocket:
        """Open the socket and complete the handshake (offering permessage-deflate if asked).

        Raises:
            Refused: the server answered the handshake with an HTTP error.
        """
        client = cls(await anyio.connect_tcp("127.0.0.1", port), answer_pings)
        extra = [(name.encode(), value.encode()) for name, value in headers]
        request = Request(
            host=f"127.0.0.1:{port}",
            target=path,
            subprotocols=[subprotocol],
            extensions=[PerMessageDeflate()] if deflate else [],
            extra_headers=extra,
        )
        await client.stream.send(client.ws.send(request))
        answer = await client.event()
        if isinstance(answer, RejectConnection):
            status, body = answer.status_code, b""
            while answer.has_body:
                data = await client.event()
                assert isinstance(data, RejectData), data
                body += data.data
                if data.body_finished:
                    break
            await client.aclose()
            raise Refused(status, body)
        assert isinstance(answer, AcceptConnection), answer
        client.extensions = [extension.name for extension in answer.extensions]
        return client

    async def event(self) -> Event:
        """The next wsproto event from the server (1006 close when the TCP connection ends)."""
        while not self._pending:
            try:
                data: bytes | None = await self.stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                data = None
            self.ws.receive_data(data)
            self._pending.extend(self.ws.events())
        return self._pending.pop(0)

    def frame(self, message: dict[str, Any] | str) -> bytes:
        """The bytes of one text frame (a dict is JSON-encoded), for batched writes."""
        text = message if isinstance(message, str) else json.dumps(message)
        return self.ws.send(TextMessage(data=text))

    async def send(self, message: dict[str, Any] | str) -> None:
        """Send one text frame (a dict is JSON-encoded)."""
        await self.stream.send(self.frame(message))

    async def send_all(self, messages: list[dict[str, Any]]) -> None:
        """Send several text frames in one write."""
        await self.stream.send(b"".join(self.frame(message) for message in messages))

    async def receive(self) -> dict[str, Any]:
        """The next whole text message as JSON; fails on a close."""
        while True:
            event = await self.event()
            if isinstance(event, Ping):
                self.pings += 1
                if self.answer_pings:  # shielded: a cancelled answer would lose the ping
                    with anyio.CancelScope(shield=True):
                        await self.stream.send(self.ws.send(event.response()))
                continue
            assert isinstance(event, TextMessage), event
            self._text.append(event.data)
            if event.message_finished:
                text, self._text = "".join(self._text), []
                result: dict[str, Any] = json.loads(text)
                return result

    async def close_frame(self) -> tuple[int, str]:
        """Read until the server closes; fails if a message comes first."""
        while True:
            event = await self.event()
            if isinstance(event, Ping):
                self.pings += 1  # not answered: the server is closing
                continue
            assert isinstance(event, CloseConnection), event
            return event.code, event.reason or ""

    async def init(self, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send ``connection_init`` and return the answer (a legacy ``ka`` is skipped)."""
        message: dict[str, Any] = {"type": "connection_init"}
        if payload is not None:
            message["payload"] = payload
        await self.send(message)
        return await self.receive()

    async def close(self, code: int = 1000) -> None:
        """Start the closing handshake and wait for the server's close frame."""
        await self.stream.send(self.ws.send(CloseConnection(code=code)))
        while not isinstance(await self.event(), CloseConnection):
            pass
        await self.aclose()

    async def aclose(self) -> None:
        """Drop the TCP connection."""
        await anyio.aclose_forcefully(self.stream)


def subscribe(id: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """A graphql-transport-ws ``subscribe`` message."""
    payload: dict[str, Any] = {"query": query}
    if variables is not None:
        payload["variables"] = variables
    return {"id": id, "type": "subscribe", "payload": payload}


def start(id: str, query: str) -> dict[str, Any]:
    """A legacy graphql-ws ``start`` message."""
    return {"id": id, "type": "start", "payload": {"query": query}}


async def post(
    port: int,
    body: dict[str, Any] | bytes,
    headers: list[tuple[str, str]] | None = None,
    target: str = "/graphql",
) -> tuple[int, dict[str, str], bytes]:
    """POST one request on a new connection; return status, headers and body."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await request(port, "POST", target, headers or JSON_HEADERS, data)


async def request(
    port: int,
    method: str,
    target: str,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request on a new connection; return status, headers and body."""
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        response, data = await HTTPClient(stream).request(method, target, headers, body)
    names = {key.decode().lower(): value.decode("latin-1") for key, value in response.headers}
    return response.status_code, names, data


@asynccontextmanager
async def serving(app: GraphQL, **options: Any) -> AsyncIterator[int]:
    """Serve ``app`` with ``anyql.serve`` on a free port in-process; cancel it on exit."""
    async with anyio.create_task_group() as tasks:
        port: int = await tasks.start(partial(serve, app, port=0, **options))
        await anyio.wait_all_tasks_blocked()  # the accept loops run: a stable task count
        yield port
        tasks.cancel_scope.cancel()


def count_tasks() -> int:
    """Tasks alive in the running event loop (both backends)."""
    return len(anyio.get_running_tasks())


async def eventually(check: Callable[[], bool], within: float = 5.0) -> None:
    """Wait until ``check()`` holds, polling; for states no event announces (task counts).

    Raises:
        TimeoutError: it did not hold within ``within`` seconds.
    """
    with anyio.fail_after(within):
        while not check():  # noqa: ASYNC110 - nothing signals a task count; poll it
            await anyio.sleep(0.005)
