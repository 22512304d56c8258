"""Subscriptions over plain HTTP: regressions found by review (rows E01 to E09 of
docs/bad-inputs.md), each test failing on the code before its fix.

Most drive the app's ``handle_http`` in process, as tests/test_http_streams.py does (its
helpers are reused). A client that leaves at the worst moment talks to the native server
over a real socket, or to the app through a scripted ASGI server; two processes are two
apps joined by a relay that calls one from the other. Where the order of two writes is the
point, the stream session or the native connection is driven with a sink or a byte stream
that holds an awaited write until the test lets it go.
"""

from __future__ import annotations

import json
import logging
import socket
import struct
from collections.abc import Callable
from functools import partial
from typing import Any, cast

import anyio
import anyio.abc
import anyio.lowlevel
import pytest

from anyql import GraphQL, Limits
from anyql._stream_relay import StreamRelay
from anyql.outbox import Owner
from anyql.protocol.http_stream import SSESingle
from anyql.streams import StreamSession
from anyql.transports._native_http import HTTPConnection
from anyql.transports.native import serve
from anyql.types import ASGIMessage, ASGIScope, HTTPRequest, HTTPResponse, HTTPStream
from tests.test_http_streams import (
    SSE,
    Sink,
    answer,
    exchange,
    make_app,
    operate,
    request,
    reserve,
    with_token,
)

pytestmark = pytest.mark.anyio


async def until(condition: Callable[[], bool], within: float = 10.0) -> None:
    """Return once ``condition()`` holds, polling: what it watches (a registry, a log
    record, bytes written) announces nothing. Fails after ``within`` seconds."""
    with anyio.fail_after(within):
        while not condition():  # noqa: ASYNC110 - nothing signals it; poll it
            await anyio.sleep(0.01)


# --- E01: the transport's part of a stream -------------------------------------------------


async def test_E01_the_last_request_a_connection_may_serve_announces_close_on_its_stream() -> None:
    app, _ = make_app(limits=Limits(max_requests_per_connection=1))
    async with anyio.create_task_group() as tasks:
        port = await tasks.start(partial(serve, app, port=0))
        with anyio.fail_after(10):
            received = await exchange(
                port,
                b"GET /graphql?query=subscription%7Bcount(to:2)%7D HTTP/1.1\r\nHost: x\r\n"
                b"Accept: text/event-stream\r\n\r\n",
            )
        tasks.cancel_scope.cancel()
    head, _, body = received.partition(b"\r\n\r\n")
    assert b"connection: close" in head.lower()  # the server closes after it: say so
    assert b"event: complete" in body


# --- E03: operations on a single connection ------------------------------------------------


async def test_E03_an_operation_whose_stream_ended_while_it_was_prepared_gets_404() -> None:
    slow = False
    entered = anyio.Event()
    authorised = anyio.Event()

    async def context(default: Any) -> Any:
        if slow:  # an authentication lookup still running when the stream closes
            entered.set()
            await authorised.wait()
        return default

    app, _ = make_app(context=context)
    token = await reserve(app)
    stream = await answer(app, request("GET", headers=with_token(token)))
    assert isinstance(stream, HTTPStream)
    answered: list[HTTPResponse] = []
    async with anyio.create_task_group() as outer:
        async with anyio.create_task_group() as streaming:
            sink = Sink()
            streaming.start_soon(stream.body, sink)
            await sink.wait_for(b":\n\n")
            slow = True

            async def late_operation() -> None:
                answered.append(await operate(app, token, "{ hello }", "late"))

            outer.start_soon(late_operation)
            await entered.wait()
            streaming.cancel_scope.cancel()  # the client closes its stream
        authorised.set()
    (late,) = answered  # not a RuntimeError (a 500) from a finished stream
    assert late.status == 404
    assert len(app.streams.reservations) == 0


# --- E04: tokens, and streams held by another process ----------------------------------------


async def test_E04_a_token_query_parameter_of_an_ordinary_request_is_the_apps_own() -> None:
    app, _ = make_app(cors_origins=("https://a.example",))
    query = await answer(
        app,
        request("GET", accept="application/json", query_string=b"query=%7Bhello%7D&token=app-jwt"),
    )
    assert isinstance(query, HTTPResponse) and query.status == 200
    assert json.loads(query.body) == {"data": {"hello": "world"}}
    preflight = await answer(
        app,
        request(
            "OPTIONS",
            accept=None,
            query_string=b"token=app-jwt",
            headers=(
                ("origin", "https://a.example"),
                ("access-control-request-method", "POST"),
            ),
        ),
    )
    assert isinstance(preflight, HTTPResponse) and preflight.status == 204
    # A DELETE still names its stream with ?token= (graphql-sse clients send it so).
    token = await reserve(app)
    assert (await operate(app, token, 'subscription { idle(name: "d") }', "d")).status == 202
    stop = request("DELETE", accept=None, query_string=f"token={token}&operationId=d".encode())
    stopped = await answer(app, stop)
    assert isinstance(stopped, HTTPResponse) and stopped.status == 200


async def test_E04_the_token_of_a_stream_is_not_written_to_the_access_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="anyql.access")
    app, _ = make_app()
    token = await reserve(app)

    def access_lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "anyql.access"]

    async with anyio.create_task_group() as tasks:
        port = await tasks.start(partial(serve, app, port=0))
        with anyio.fail_after(10):
            async with await anyio.connect_tcp("127.0.0.1", port) as client:
                await client.send(
                    f"GET /graphql?token={token} HTTP/1.1\r\nHost: x\r\n"
                    f"Accept: {SSE}\r\n\r\n".encode()
                )
                received = b""
                while b"\r\n\r\n" not in received:  # the head, with the stream's opening
                    received += await client.receive()
        await until(lambda: bool(access_lines()))  # logged when the stream ends
        tasks.cancel_scope.cancel()
    (line,) = access_lines()
    assert token not in line and token.partition(".")[2] not in line
    assert "GET /graphql?token=" in line


def as_another_process(token: str) -> str:
    """``token`` as a process with another prefix sees it: both apps of a test live in this
    process and share its prefix, so the holder is given the maker's token under another."""
    prefix, _, secret = token.partition(".")
    return f"{int(prefix, 16) ^ 1:08x}.{secret}"


class Relay:
    """What ``StreamRelay`` does between two processes, without Redis: a question is
    answered by the other app's ``answer_relayed``, which knows the stream as ``token``.
    While ``silent`` nobody answers in time (``StreamRelay.ask`` then returns None): the
    other process is alive but slow, or a pub/sub message was lost."""

    def __init__(self, other: GraphQL, token: str) -> None:
        self.other = other
        self.token = token
        self.silent = False

    async def ask(
        self, prefix: str, kind: str, request: HTTPRequest, token: str, hops: int = 0
    ) -> HTTPResponse | None:
        if self.silent:
            await anyio.lowlevel.checkpoint()
            return None
        return await self.other.streams.answer_relayed(kind, request, self.token, hops)

    async def tell(self, prefix: str, kind: str, token: str) -> None:
        await self.other.streams.answer_relayed(kind, None, self.token, 0)


def link(maker: GraphQL, holder: GraphQL, token: str) -> tuple[Relay, str]:
    """Relay between ``maker``, which reserved ``token``, and ``holder``, where its stream
    opens; returns the maker's relay to the holder and the token as the holder sees it."""
    elsewhere = as_another_process(token)
    to_holder = Relay(holder, elsewhere)
    maker.streams.relay = cast("StreamRelay", to_holder)
    holder.streams.relay = cast("StreamRelay", Relay(maker, token))
    return to_holder, elsewhere


async def test_E04_a_holder_too_slow_to_answer_gets_503_and_keeps_its_stream() -> None:
    maker, _ = make_app()
    holder, _ = make_app()
    token = await reserve(maker)
    to_holder, elsewhere = link(maker, holder, token)
    stream = await answer(holder, request("GET", headers=with_token(elsewhere)))
    assert isinstance(stream, HTTPStream)
    sink = Sink()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(stream.body, sink)
        await sink.wait_for(b":\n\n")
        to_holder.silent = True
        slow = await operate(maker, token, "{ hello }", "a")
        assert slow.status == 503 and ("retry-after", "1") in slow.headers
        assert maker.streams.reservations.get(token) is not None  # not taken for gone
        to_holder.silent = False
        assert (await operate(maker, token, "{ hello }", "b")).status == 202
        await sink.wait_for(b'event: complete\ndata: {"id":"b"}')
        tasks.cancel_scope.cancel()
    assert b'"id":"a"' not in sink.data
    assert len(holder.streams.reservations) == 0
    assert len(maker.streams.reservations) == 0  # the holder said "released"


async def test_E04_a_holder_that_never_answers_is_taken_as_gone_after_three_requests() -> None:
    maker, _ = make_app()
    holder, _ = make_app()
    token = await reserve(maker)
    to_holder, elsewhere = link(maker, holder, token)
    stream = await answer(holder, request("GET", headers=with_token(elsewhere)))
    assert isinstance(stream, HTTPStream)
    sink = Sink()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(stream.body, sink)
        await sink.wait_for(b":\n\n")
        to_holder.silent = True  # its process died, say
        statuses = [(await operate(maker, token, "{ hello }", str(i))).status for i in range(4)]
        tasks.cancel_scope.cancel()
    assert statuses == [503, 503, 404, 404]
    assert maker.streams.reservations.get(token) is None


async def test_E04_operations_sent_before_the_stream_opens_at_another_process_run_there() -> None:
    maker, _ = make_app()
    holder, _ = make_app()
    token = await reserve(maker)
    assert (await operate(maker, token, "{ hello }", "early")).status == 202
    _, elsewhere = link(maker, holder, token)
    stream = await answer(holder, request("GET", headers=with_token(elsewhere)))
    assert isinstance(stream, HTTPStream)
    sink = Sink()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(stream.body, sink)
        with anyio.fail_after(5):
            await sink.wait_for(b'event: complete\ndata: {"id":"early"}')
        tasks.cancel_scope.cancel()
    assert ("next", '{"id":"early","payload":{"data":{"hello":"world"}}}') in sink.events()


# --- E06: reservations ---------------------------------------------------------------------


async def open_and_leave_over_asgi(app: GraphQL, token: str) -> None:
    """An ASGI server whose client asks for the stream of ``token`` and leaves at once.

    Its ``send`` awaits (hypercorn's trio worker writes to the socket), so the app sees
    ``http.disconnect`` before the response head has gone out.
    """
    scope: ASGIScope = {
        "type": "http",
        "method": "GET",
        "path": "/graphql",
        "query_string": b"",
        "headers": [(b"accept", SSE.encode()), (b"x-graphql-event-stream-token", token.encode())],
        "client": ("10.0.0.1", 5000),
        "scheme": "http",
        "root_path": "",
    }
    messages: list[ASGIMessage] = [
        {"type": "http.request", "body": b"", "more_body": False},
        {"type": "http.disconnect"},
    ]

    async def receive() -> ASGIMessage:
        await anyio.lowlevel.checkpoint()
        if not messages:
            await anyio.sleep_forever()
        return messages.pop(0)

    async def send(message: ASGIMessage) -> None:
        await anyio.lowlevel.checkpoint()

    with anyio.fail_after(5):
        await app(scope, receive, send)


async def test_E06_a_stream_whose_asgi_client_left_before_its_head_releases_its_reservation() -> (
    None
):
    app, _ = make_app(limits=Limits(max_stream_reservations_per_client=2))
    for _ in range(2):
        await open_and_leave_over_asgi(app, await reserve(app))
    assert len(app.streams.reservations) == 0  # not opened for ever (no expiry)
    await reserve(app)  # the client is not locked out


def open_and_reset(port: int, token: str) -> None:
    """Ask for the stream of ``token``, then reset the connection at once (RST, no FIN).

    A blocking client, for a worker thread: the server runs while it sends and resets.
    """
    with socket.create_connection(("127.0.0.1", port)) as client:
        client.sendall(
            f"GET /graphql HTTP/1.1\r\nHost: x\r\nAccept: {SSE}\r\n"
            f"X-GraphQL-Event-Stream-Token: {token}\r\n\r\n".encode()
        )
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


async def test_E06_a_stream_whose_native_client_reset_at_once_releases_its_reservation() -> None:
    # An unopened reservation expires: only the opened ones could stay for ever.
    app, _ = make_app(limits=Limits(stream_reservation_timeout=0.5))
    async with anyio.create_task_group() as tasks:
        port = await tasks.start(partial(serve, app, port=0))
        tokens = []
        for _ in range(5):
            tokens.append(await reserve(app))
            await anyio.to_thread.run_sync(open_and_reset, port, tokens[-1])
        await until(lambda: all(app.streams.reservations.get(t) is None for t in tokens))
        tasks.cancel_scope.cancel()


# --- E07: keep-alive -----------------------------------------------------------------------


class DirectSink(Sink):
    """A sink that also writes from the calling task, as the native server's does.

    Its ``hold``-th send waits until ``released`` is set (the client stopped reading for
    a while), with ``held`` set meanwhile. A ``write_now`` while an awaited send is in
    flight is recorded in ``cut_in``: on a socket its bytes would land inside the other's.
    """

    def __init__(self, hold: int) -> None:
        super().__init__()
        self.hold = hold
        self.sends = 0
        self.sending = False
        self.cut_in: list[bytes] = []
        self.held = anyio.Event()
        self.released = anyio.Event()

    async def send(self, data: bytes) -> None:
        self.sending = True
        try:
            self.sends += 1
            if self.sends == self.hold:
                self.held.set()
                await self.released.wait()
            await super().send(data)
        finally:
            self.sending = False

    def write_now(self, data: bytes) -> bool:
        if self.sending:
            self.cut_in.append(data)
        self.data += data
        return True

    @property
    def needs_flush(self) -> bool:
        return False


@pytest.mark.autojump
async def test_E07_a_result_waits_for_a_keep_alive_still_being_sent() -> None:
    app, _ = make_app(limits=Limits(stream_keep_alive_interval=0.05))
    session = StreamSession(app, SSESingle(), request().info, single_operation=False)
    owner = Owner("a")
    sink = DirectSink(hold=2)  # the opening goes out; the first keep-alive waits
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(session.run, sink)
        await sink.held.wait()
        await session._emit_next(owner, b'{"data":{"n":1}}')  # while the keep-alive waits
        sink.released.set()
        await sink.wait_for(b'"n":1')
        tasks.cancel_scope.cancel()
    assert sink.cut_in == []
    assert bytes(sink.data) == b":\n\n:\n\n" + SSESingle().next("a", b'{"data":{"n":1}}')


class Wire(anyio.abc.ByteStream):
    """A socket and its kernel buffer: the native connection's direct writes (``write``,
    ``socket.send`` on Trio) and its awaited ones (``send``) share one byte sequence.

    A direct write takes at most ``room`` bytes (None: all of them); once the stream's
    opening (``:\\n\\n``) is out, ``room`` is 2: the buffer is nearly full. An awaited send
    sets ``waiting`` and waits for ``drained``.
    """

    def __init__(self, incoming: bytes) -> None:
        self.bytes = bytearray()
        self.incoming = incoming
        self.room: int | None = None
        self.opened = False
        self.waiting = anyio.Event()
        self.drained = anyio.Event()

    def write(self, data: bytes | memoryview) -> int:
        taken = len(data) if self.room is None else min(self.room, len(data))
        self.bytes += data[:taken]
        if self.room is not None:
            self.room -= taken
        elif not self.opened and b":\n\n" in data:
            self.opened = True
            self.room = 2
        return taken

    async def send(self, item: bytes) -> None:
        self.waiting.set()
        await self.drained.wait()
        self.bytes += item

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if not self.incoming:
            await anyio.sleep_forever()
        data, self.incoming = self.incoming, b""
        return data

    async def send_eof(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


def unchunk(body: bytes) -> bytes:
    """The data of a chunked body; asserts its framing."""
    data = bytearray()
    position = 0
    while position < len(body):
        end = body.index(b"\r\n", position)
        size = int(body[position:end], 16)
        start = end + 2
        data += body[start : start + size]
        assert body[start + size : start + size + 2] == b"\r\n", body[position:]
        position = start + size + 2
    return bytes(data)


@pytest.mark.autojump
async def test_E07_a_keep_alive_the_kernel_took_in_part_is_not_split_by_a_result() -> None:
    app, _ = make_app(limits=Limits(stream_keep_alive_interval=0.05))
    wire = Wire(b"GET /graphql HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
    connection = HTTPConnection(wire, app.limits)
    connection._direct = wire  # as on Trio: a direct writer to the same socket
    head = await connection.next_request()
    assert head is not None and await connection.read_body(head) == b""
    session = StreamSession(app, SSESingle(), request().info, single_operation=False)
    stream = HTTPStream(200, SSESingle().headers, session.run)
    owner = Owner("a")
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(partial(connection.send_stream, stream, []))
        await wire.waiting.wait()  # the keep-alive: 2 bytes taken, the rest awaits room
        wire.room = None  # the client reads again, and a result comes before the writer runs
        await session._emit_next(owner, b'{"data":{"n":1}}')
        wire.drained.set()
        await until(lambda: b'"n":1' in wire.bytes)
        tasks.cancel_scope.cancel()
    body = bytes(wire.bytes).partition(b"\r\n\r\n")[2]
    assert unchunk(body) == b":\n\n:\n\n" + SSESingle().next("a", b'{"data":{"n":1}}')


# --- E08, E09: a stream the server ends, whose client reads nothing ------------------------


@pytest.mark.autojump
async def test_E08_shutdown_ends_a_stream_whose_client_reads_nothing() -> None:
    app, seen = make_app()
    async with app.running() as handle:
        response = await answer(app, request(body={"query": 'subscription { idle(name: "a") }'}))
        assert isinstance(response, HTTPStream)
        sink = Sink()
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(response.body, sink)
                await sink.wait_for(b'"idle":0')
                sink.gate = anyio.Event()  # never set: the client stays and reads nothing
                handle.shutdown()
        assert handle.connections == 0
    assert seen["finally"] == ["a"]
    assert b"retry:" not in sink.data  # the last frames could not go out


@pytest.mark.autojump
async def test_E09_a_slow_consumer_stream_ends_even_when_its_client_reads_nothing() -> None:
    app, seen = make_app(limits=Limits(send_buffer_messages=4))
    async with app.running() as handle:
        response = await answer(app, request(body={"query": "subscription { shared }"}))
        assert isinstance(response, HTTPStream)
        sink = Sink()
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(response.body, sink)
                await sink.wait_for(b'"shared":0')
                sink.gate = anyio.Event()  # never set: the client stays and reads nothing
                await seen["ended"].wait()  # closed as a slow consumer: its hub ended
        assert handle.connections == 0
    assert b"retry:" not in sink.data  # the last frames could not go out
