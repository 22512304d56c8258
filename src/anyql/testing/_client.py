"""``TestClient``: an app in process over in-memory streams, or a running server by URL.

Owns ``TestClient``. In process, every connection is a pair of in-memory byte streams
whose server end is served by ``anyql.transports.native.serve_connection`` (the code
``anyql serve`` runs) in the client's task group, inside ``app.running()``. Each HTTP
request is one connection (request, response, close). Imports anyio, h11, wsproto,
``transports.native`` and the other ``testing`` modules; must not import the app, the
session or graphql.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import urlencode, urlsplit

import anyio
import anyio.abc
import h11
from wsproto.events import Request

from ..errors import ClientError, ResponseError
from ..transports.native import ServedApp, serve_connection
from ._streams import (
    MULTIPART_ACCEPT,
    SSE_ACCEPT,
    TOKEN_HEADER,
    EventStream,
    StreamResults,
    event_stream,
    operation_stream,
)
from ._websocket import WebSocketConnection
from ._wire import (
    CLOSE_TIMEOUT,
    JSON_ACCEPT,
    STREAM_ERRORS,
    Headers,
    Response,
    encoded,
    exchange,
    graphql_result,
    handshake,
    header_list,
    leaves,
    merged,
    operation_params,
    stream_pair,
)

logger = logging.getLogger("anyql.testing")

GRAPHQL_TRANSPORT_WS = "graphql-transport-ws"


class TestClient:
    """Queries, mutations and subscriptions against an app in process, or a server by URL.

    ``async with TestClient(app) as client`` serves ``app`` over in-memory streams with the
    native transport, inside ``app.running()`` (broadcast, shared subscriptions). Leaving
    the block waits up to ``CLOSE_TIMEOUT`` for the server's connections to end, so every
    resolver cleanup of a closed WebSocket has run, then leaves ``app.running()``.
    ``async with TestClient.connect("http://127.0.0.1:8000/graphql") as client`` offers the
    same API over TCP. Works under Trio and asyncio (anyio's pytest plugin, pytest-trio,
    ``trio.run``, ``asyncio.run``).

    Args:
        app: the application (``anyql.GraphQL``, or any ``ServedApp``).
        path: the default path for requests and WebSockets; the app's ``path`` setting,
            else ``/graphql``.
        headers: headers sent with every request and handshake.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, app: ServedApp, *, path: str | None = None, headers: Headers = ()) -> None:
        configured = getattr(getattr(app, "settings", None), "path", None)
        self._setup(app, None, "testserver", path or configured or "/graphql", headers)

    def _setup(
        self,
        app: ServedApp | None,
        address: tuple[str, int] | None,
        host: str,
        path: str,
        headers: Headers,
    ) -> None:
        self._app = app
        self._address = address
        self._host = host
        self.path = path
        self.headers = header_list(headers)
        self._stack: AsyncExitStack | None = None
        self._tasks: anyio.abc.TaskGroup | None = None
        self._live = 0
        self._all_ended: anyio.Event | None = None

    @classmethod
    def connect(cls, url: str, *, headers: Headers = ()) -> TestClient:
        """A client for a running server: every connection is a new TCP connection.

        Args:
            url: ``http://host:port/path`` or ``ws://host:port/path`` (the same server; the
                path is the default for requests and WebSockets). TLS is not supported.
            headers: headers sent with every request and handshake.

        Returns:
            The client, to be entered with ``async with``.

        Raises:
            ValueError: the URL is not ``http``/``ws`` or has no host.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("http", "ws") or not parts.hostname:
            raise ValueError(f"TestClient.connect needs an http:// or ws:// URL, not {url!r}")
        client = cls.__new__(cls)
        address = (parts.hostname, parts.port or 80)
        client._setup(None, address, parts.netloc, parts.path or "/", headers)
        return client

    async def __aenter__(self) -> Self:
        stack = AsyncExitStack()
        await stack.__aenter__()
        try:
            if self._app is not None and getattr(self._app, "server", None) is None:
                await stack.enter_async_context(self._app.running())
            self._tasks = await stack.enter_async_context(anyio.create_task_group())
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        stack, tasks = self._stack, self._tasks
        assert stack is not None and tasks is not None, "TestClient was not entered"
        self._stack = self._tasks = None
        if self._live:
            self._all_ended = anyio.Event()
            with anyio.move_on_after(CLOSE_TIMEOUT, shield=True):
                await self._all_ended.wait()
        if self._live:
            logger.debug("TestClient: cancelling %d server connection(s)", self._live)
        tasks.cancel_scope.cancel()
        try:
            return bool(await stack.__aexit__(exc_type, exc, traceback))
        except BaseExceptionGroup as group:
            if exc is not None and leaves(group) == [exc]:
                return False  # the body's own exception, wrapped by the task group: re-raise it
            raise

    async def wait_for_subscribers(self, channel: str, count: int = 1) -> None:
        """Wait until ``count`` subscriptions of the app listen to broadcast ``channel``.

        Publish after this returns and a broadcast-fed subscription gets the message: no
        retry loop (``Broadcast.wait_for_subscribers`` on the app's broadcast).

        Raises:
            ClientError: the client serves no app in process, or the app has no broadcast.
        """
        wait = getattr(getattr(self._app, "broadcast", None), "wait_for_subscribers", None)
        if wait is None:
            raise ClientError("wait_for_subscribers needs an in-process app with a broadcast")
        await wait(channel, count)

    # --- HTTP ----------------------------------------------------------------------

    async def query(
        self,
        query: str,
        variables: Mapping[str, Any] | None = None,
        operation_name: str | None = None,
        *,
        extensions: Mapping[str, Any] | None = None,
        method: Literal["POST", "GET"] = "POST",
        path: str | None = None,
        headers: Headers = (),
    ) -> dict[str, Any]:
        """Run one operation over HTTP (a query or, with POST, a mutation).

        Args:
            query: the GraphQL document.
            variables: the operation's variables.
            operation_name: which operation of the document to run.
            extensions: the request's ``extensions``.
            method: ``POST`` (a JSON body) or ``GET`` (parameters in the query string).
            path: the path, if not the client's default.
            headers: headers for this request; they replace the client's headers of the
                same names.

        Returns:
            The GraphQL response (``data``, ``errors``, ``extensions``).

        Raises:
            ResponseError: the status is neither 200 nor a 400 with
                ``application/graphql-response+json`` (for example a 404 or a 405).
        """
        target, head, body = self._operation(
            query, variables, operation_name, extensions, method, path, JSON_ACCEPT, headers
        )
        return graphql_result(await self._send(method, target, head, body))

    def _operation(
        self,
        query: str,
        variables: Mapping[str, Any] | None,
        operation_name: str | None,
        extensions: Mapping[str, Any] | None,
        method: str,
        path: str | None,
        accept: str,
        headers: Headers,
    ) -> tuple[str, list[tuple[str, str]], bytes]:
        """The target, headers and body of a request for one operation."""
        params = operation_params(query, variables, operation_name, extensions)
        target = path or self.path
        body = b""
        if method == "GET":
            fields = {k: v if isinstance(v, str) else json.dumps(v) for k, v in params.items()}
            target = f"{target}?{urlencode(fields)}"
            defaults = [("accept", accept)]
        else:
            body = json.dumps(params).encode("utf-8")
            defaults = [("accept", accept), ("content-type", "application/json")]
        return target, merged(defaults, self.headers, headers), body

    async def request(
        self, method: str, target: str | None = None, *, headers: Headers = (), body: bytes = b""
    ) -> Response:
        """Send one raw HTTP request on a new connection and read the whole response.

        Args:
            method: the request method.
            target: path and query string; the client's default path when omitted.
            headers: headers for this request; they replace the client's headers of the same
                names (``host`` and ``content-length`` are set here).
            body: the request body.

        Returns:
            The response.

        Raises:
            ClientError: the server closed the connection without a whole response.
        """
        return await self._send(method, target or self.path, merged(self.headers, headers), body)

    async def _send(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes
    ) -> Response:
        stream = await self._open()
        try:
            return await exchange(stream, self._request(method, target, headers, body), body)
        finally:
            await anyio.aclose_forcefully(stream)

    def _request(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes
    ) -> h11.Request:
        head = [("host", self._host), *headers, ("content-length", str(len(body)))]
        return h11.Request(method=method, target=target, headers=head)

    # --- subscriptions over HTTP ---------------------------------------------------

    @asynccontextmanager
    async def subscribe_sse(
        self,
        query: str,
        variables: Mapping[str, Any] | None = None,
        operation_name: str | None = None,
        *,
        extensions: Mapping[str, Any] | None = None,
        method: Literal["POST", "GET"] = "POST",
        path: str | None = None,
        headers: Headers = (),
    ) -> AsyncIterator[StreamResults]:
        """Run one operation over GraphQL over SSE, distinct connections mode: a request
        with ``Accept: text/event-stream`` whose response is the operation's stream.

        Leaving the block closes the connection and waits (up to ``CLOSE_TIMEOUT``) for the
        server to close its end, which it does once the operation was cancelled and its
        resolver's cleanup ran.

        Args:
            query: the GraphQL document.
            variables: the operation's variables.
            operation_name: which operation of the document to run.
            extensions: the request's ``extensions``.
            method: ``POST`` (a JSON body) or ``GET`` (parameters in the query string, as
                ``EventSource`` sends them).
            path: the path, if not the client's default.
            headers: headers for this request; they replace the client's headers of the
                same names.

        Yields:
            The operation's results as an async iterator: every ``next`` event's data
            (validation errors included: graphql-sse sends them as a ``next``); it stops
            at ``complete``.

        Raises:
            ResponseError: the server refused the request with an HTTP error (the context
                factory's ``HTTPError``, a 406, a 503).
        """
        target, head, body = self._operation(
            query, variables, operation_name, extensions, method, path, SSE_ACCEPT, headers
        )
        async with self._operation_stream(method, target, head, body) as results:
            yield results

    @asynccontextmanager
    async def subscribe_multipart(
        self,
        query: str,
        variables: Mapping[str, Any] | None = None,
        operation_name: str | None = None,
        *,
        extensions: Mapping[str, Any] | None = None,
        path: str | None = None,
        headers: Headers = (),
    ) -> AsyncIterator[StreamResults]:
        """Run one operation as Apollo Client does over HTTP: a POST with ``Accept:
        multipart/mixed;boundary="graphql";subscriptionSpec=1.0,application/json``.

        A subscription's answer is a multipart stream; anything else (a query, a document
        that does not validate) is a plain JSON answer, yielded as the one result. Leaving
        the block closes the connection and waits for the server's end, as
        ``subscribe_sse`` does.

        Args:
            query: the GraphQL document.
            variables: the operation's variables.
            operation_name: which operation of the document to run.
            extensions: the request's ``extensions``.
            path: the path, if not the client's default.
            headers: headers for this request; they replace the client's headers of the
                same names.

        Yields:
            The operation's results as an async iterator: each part's ``payload``
            (heartbeats skipped); it stops at the closing delimiter. A transport error part
            (``{"payload": null, "errors": [...]}``) raises ``StreamInterrupted``.

        Raises:
            ResponseError: the server refused the request with an HTTP error.
        """
        target, head, body = self._operation(
            query, variables, operation_name, extensions, "POST", path, MULTIPART_ACCEPT, headers
        )
        async with self._operation_stream("POST", target, head, body) as results:
            yield results

    @asynccontextmanager
    async def event_stream(
        self, path: str | None = None, *, headers: Headers = ()
    ) -> AsyncIterator[EventStream]:
        """Open a GraphQL over SSE stream in single connection mode: reserve it (``PUT``,
        201 and a token), then open it (a GET with ``Accept: text/event-stream`` and the
        token). Operations then run on it with ``subscribe`` and ``query``.

        Leaving the block closes the stream and waits (up to ``CLOSE_TIMEOUT``) for the
        server to close its end: every operation on it has been cancelled and cleaned up.

        Args:
            path: the path, if not the client's default.
            headers: headers for every request of the stream (reservation, stream,
                operations, stops); they replace the client's headers of the same names.

        Yields:
            The open stream.

        Raises:
            ResponseError: the reservation or the stream was refused (401 from the context
                factory, 429 too many reservations, 404, 409, 503).
        """
        target = path or self.path
        base = merged(self.headers, headers)
        reserved = await self._send("PUT", target, merged([("accept", "text/plain")], base), b"")
        if reserved.status != 201:
            raise ResponseError(reserved)
        token = reserved.text.strip()
        opening = merged(base, [("accept", SSE_ACCEPT), (TOKEN_HEADER, token)])
        stream = await self._open()
        try:
            async with event_stream(
                stream,
                self._task_group(),
                self._request("GET", target, opening, b""),
                token,
                self._send,
                target,
                base,
            ) as events:
                yield events
        finally:
            await anyio.aclose_forcefully(stream)

    @asynccontextmanager
    async def _operation_stream(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes
    ) -> AsyncIterator[StreamResults]:
        tasks = self._task_group()
        stream = await self._open()
        try:
            request = self._request(method, target, headers, body)
            async with operation_stream(stream, tasks, request, body) as results:
                yield results
        finally:
            await anyio.aclose_forcefully(stream)

    # --- WebSocket -----------------------------------------------------------------

    @asynccontextmanager
    async def websocket(
        self,
        path: str | None = None,
        *,
        subprotocol: str | None = GRAPHQL_TRANSPORT_WS,
        connection_params: Mapping[str, Any] | None = None,
        headers: Headers = (),
        init: bool = True,
    ) -> AsyncIterator[WebSocketConnection]:
        """Open a GraphQL WebSocket; leaving the block closes it with 1000.

        Leaving waits (up to ``CLOSE_TIMEOUT``) for the server to close the connection, which
        the native server does after the session ended and every operation was cleaned up.

        Args:
            path: the path, if not the client's default.
            subprotocol: ``graphql-transport-ws``, the legacy ``graphql-ws``, another value
                to offer, or None to offer none.
            connection_params: the ``connection_init`` payload.
            headers: handshake headers (``origin``, ``authorization``...); they replace the
                client's headers of the same names.
            init: send ``connection_init`` and wait for ``connection_ack`` on entry.

        Yields:
            The open connection.

        Raises:
            WebSocketRejected: the handshake was refused.
            WebSocketClosed: the server closed instead of acknowledging ``connection_init``
                (4403 when ``on_connect`` refused it; legacy ``connection_error`` then close).
        """
        tasks = self._task_group()
        stream = await self._open()
        try:
            opened = await handshake(
                stream,
                Request(
                    host=self._host,
                    target=path or self.path,
                    subprotocols=[subprotocol] if subprotocol else [],
                    extra_headers=encoded(merged(self.headers, headers)),
                ),
            )
            socket = WebSocketConnection(stream, *opened)
            reader = anyio.CancelScope()
            tasks.start_soon(socket.read_until_closed, reader)
            try:
                if init:
                    await socket.initialise(connection_params)
                yield socket
            finally:
                with anyio.CancelScope(shield=True):
                    await socket.finish()
                    reader.cancel()
        finally:
            await anyio.aclose_forcefully(stream)

    # --- connections ---------------------------------------------------------------

    def _task_group(self) -> anyio.abc.TaskGroup:
        if self._tasks is None:
            raise RuntimeError("use the client inside `async with TestClient(...) as client`")
        return self._tasks

    async def _open(self) -> anyio.abc.ByteStream:
        tasks = self._task_group()
        if self._address is not None:
            return await anyio.connect_tcp(*self._address)
        assert self._app is not None
        client_end, server_end = stream_pair()
        self._live += 1
        tasks.start_soon(self._serve, self._app, server_end)
        return client_end

    async def _serve(self, app: ServedApp, stream: anyio.abc.ByteStream) -> None:
        try:
            await serve_connection(app, stream, client=("testclient", 0))
        except* STREAM_ERRORS:
            pass  # the client went away mid-request, as real clients do
        finally:
            await anyio.aclose_forcefully(stream)
            self._live -= 1
            if self._live == 0 and self._all_ended is not None:
                self._all_ended.set()
