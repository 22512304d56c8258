"""The native server's HTTP/1.1 side, over real sockets, with h11 and raw bytes as the client."""

from __future__ import annotations

import contextvars
import json
from functools import partial
from typing import Any

import anyio
import anyio.abc
import h11
import pytest

from anyql.limits import Limits
from anyql.transports.native import serve
from tests.fake_app import FakeApp, serving

pytestmark = pytest.mark.anyio

Response = tuple[int, dict[str, str], bytes]


async def read_until_eof(stream: anyio.abc.ByteStream) -> bytes:
    data = bytearray()
    while True:
        try:
            data += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return bytes(data)


def parse_responses(data: bytes) -> list[Response]:
    """Split raw bytes into responses (content-length framing only, as the server uses)."""
    responses: list[Response] = []
    while data:
        head, _, data = data.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        body, data = data[:length], data[length:]
        responses.append((int(status_line.split()[1]), headers, body))
    return responses


async def exchange(port: int, raw: bytes) -> list[Response]:
    """Send raw bytes, read until the server closes, return every response."""
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(raw)
        return parse_responses(await read_until_eof(stream))


class Client:
    """An h11 client on one keep-alive connection."""

    def __init__(self, stream: anyio.abc.SocketStream) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.CLIENT)

    async def request(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> tuple[h11.Response, bytes]:
        if self.h11.our_state is h11.DONE:
            self.h11.start_next_cycle()
        all_headers = [("host", "test"), *(headers or [])]
        if body:
            all_headers.append(("content-length", str(len(body))))
        data = self.h11.send(h11.Request(method=method, target=target, headers=all_headers))
        if body:
            data += self.h11.send(h11.Data(data=body))
        data += self.h11.send(h11.EndOfMessage())
        await self.stream.send(data)
        return await self.response()

    async def response(self) -> tuple[h11.Response, bytes]:
        head = await self.next_event()
        assert isinstance(head, h11.Response), head
        body = bytearray()
        while True:
            event = await self.next_event()
            if isinstance(event, h11.EndOfMessage):
                return head, bytes(body)
            assert isinstance(event, h11.Data)
            body += event.data

    async def next_event(self) -> Any:
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            try:
                self.h11.receive_data(await self.stream.receive())
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                self.h11.receive_data(b"")

    async def closed_by_server(self) -> bool:
        try:
            return await self.stream.receive() == b""
        except anyio.EndOfStream:
            return True


def header(response: h11.Response, name: str) -> str | None:
    for key, value in response.headers:
        if key.decode() == name:
            return value.decode("latin-1")
    return None


async def test_keep_alive_serves_several_requests_on_one_connection() -> None:
    app = FakeApp()
    async with serving(app) as port, await anyio.connect_tcp("127.0.0.1", port) as stream:
        client = Client(stream)
        for n in range(3):
            response, body = await client.request("POST", f"/echo?n={n}", body=b"x" * n)
            assert response.status_code == 200
            assert header(response, "connection") is None
            echoed = json.loads(body)
            assert echoed["query"] == f"n={n}"
            assert echoed["body_length"] == n
    assert len(app.requests) == 3


async def test_request_info_lowercases_and_decodes_headers_latin1() -> None:
    app = FakeApp()
    async with serving(app) as port:
        raw = (
            b"GET /caf%C3%A9?a=%20 HTTP/1.1\r\nHost: x\r\nX-Thing: caf\xe9\r\n"
            b"Connection: close\r\n\r\n"
        )
        [(status, _, body)] = await exchange(port, raw)
    assert status == 200
    echoed = json.loads(body)
    assert echoed["path"] == "/café"
    assert echoed["query"] == "a=%20"
    assert ["x-thing", "café"] in echoed["headers"]
    assert echoed["client"][0] == "127.0.0.1"


async def test_pipelined_requests_are_answered_in_order() -> None:
    app = FakeApp()
    async with serving(app) as port:
        raw = b"".join(f"GET /p{n} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for n in range(3))
        raw += b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        responses = await exchange(port, raw)
    assert [json.loads(body)["path"] for _, _, body in responses] == ["/p0", "/p1", "/p2", "/last"]


async def test_H12_content_length_over_cap_gets_413_before_the_body_is_sent() -> None:
    app = FakeApp()
    async with serving(app) as port:
        head = b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Length: 2097152\r\n\r\n"
        [(status, headers, body)] = await exchange(port, head + b"a" * 4096)
    assert status == 413
    assert headers["connection"] == "close"
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"errors": [{"message": "Request Entity Too Large"}]}
    assert app.requests == []


async def test_H12_chunked_body_over_cap_gets_413_once_the_running_total_passes_it() -> None:
    app = FakeApp(Limits(max_body_bytes=10_000))
    async with serving(app) as port, await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"1000\r\n" + b"a" * 4096 + b"\r\n"
        for _ in range(3):  # 12 KiB of the body: over the cap, and never finished
            await stream.send(chunk)
        [(status, _, _)] = parse_responses(await read_until_eof(stream))
    assert status == 413
    assert app.requests == []


async def test_body_at_the_cap_is_accepted() -> None:
    app = FakeApp(Limits(max_body_bytes=1000))
    async with serving(app) as port, await anyio.connect_tcp("127.0.0.1", port) as stream:
        response, body = await Client(stream).request("POST", "/", body=b"b" * 1000)
    assert response.status_code == 200
    assert json.loads(body)["body_length"] == 1000


async def test_expect_100_continue_is_answered_before_the_body() -> None:
    app = FakeApp()
    async with serving(app) as port, await anyio.connect_tcp("127.0.0.1", port) as stream:
        client = Client(stream)
        headers = [("host", "x"), ("content-length", "5"), ("expect", "100-continue")]
        await stream.send(client.h11.send(h11.Request(method="POST", target="/", headers=headers)))
        informational = await client.next_event()
        assert isinstance(informational, h11.InformationalResponse)
        assert informational.status_code == 100
        await stream.send(
            client.h11.send(h11.Data(data=b"hello")) + client.h11.send(h11.EndOfMessage())
        )
        response, body = await client.response()
    assert response.status_code == 200
    assert json.loads(body)["body_length"] == 5


async def test_H12_expect_100_continue_over_the_cap_gets_413_without_100() -> None:
    app = FakeApp()
    async with serving(app) as port:
        raw = (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2097152\r\nExpect: 100-continue\r\n\r\n"
        )
        [(status, _, _)] = await exchange(port, raw)
    assert status == 413


async def test_H13_one_20_KiB_header_gets_431() -> None:
    app = FakeApp()
    async with serving(app) as port:
        raw = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20480 + b"\r\n\r\n"
        [(status, headers, _)] = await exchange(port, raw)
    assert status == 431
    assert headers["connection"] == "close"
    assert app.requests == []


async def test_H13_head_over_the_cap_sent_slowly_gets_431_from_h11() -> None:
    app = FakeApp()
    async with serving(app) as port, await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(b"GET / HTTP/1.1\r\nHost: x\r\n")
        for _ in range(20):  # never finishes the head: h11's buffer cap answers
            await stream.send(b"X-Pad: " + b"p" * 1024 + b"\r\n")
        [(status, _, _)] = parse_responses(await read_until_eof(stream))
    assert status == 431


async def test_H13_200_headers_get_431() -> None:
    app = FakeApp()
    async with serving(app) as port:
        lines = b"".join(b"X-H%d: v\r\n" % n for n in range(200))
        [(status, _, _)] = await exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n" + lines + b"\r\n")
    assert status == 431


async def test_H14_64_KiB_request_target_is_rejected_with_431() -> None:
    app = FakeApp()
    async with serving(app) as port:
        raw = b"GET /?query=" + b"q" * 65536 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        [(status, _, _)] = await exchange(port, raw)
    assert status == 431


@pytest.mark.parametrize(
    ("framing", "statuses"),
    [
        (b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", {400}),
        (b"Content-Length: 5\r\nContent-Length: 6\r\n", {400}),
        (b"Transfer-Encoding: gzip\r\n", {501}),
        (b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", {501}),
    ],
)
async def test_H17_ambiguous_framing_is_refused_without_desync(
    framing: bytes, statuses: set[int]
) -> None:
    app = FakeApp()
    smuggled = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
    raw = b"POST / HTTP/1.1\r\nHost: x\r\n" + framing + b"\r\n0\r\n\r\n" + smuggled
    async with serving(app) as port:
        responses = await exchange(port, raw)
    assert [status for status, _, _ in responses] in [[status] for status in statuses]
    assert app.requests == []


@pytest.mark.parametrize(
    "raw",
    [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n",
    ],
)
async def test_malformed_request_gets_a_4xx_and_close(raw: bytes) -> None:
    app = FakeApp()
    async with serving(app) as port:
        [(status, headers, body)] = await exchange(port, raw)
    assert 400 <= status < 600
    assert headers["connection"] == "close"
    assert b"Traceback" not in body


async def test_H18_connection_closes_after_max_requests() -> None:
    app = FakeApp(Limits(max_requests_per_connection=3))
    async with serving(app) as port:
        raw = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 5
        responses = await exchange(port, raw)
    assert [status for status, _, _ in responses] == [200, 200, 200]
    assert "connection" not in responses[1][1]
    assert responses[2][1]["connection"] == "close"


@pytest.mark.autojump
async def test_H19_idle_keep_alive_connection_is_closed() -> None:
    app = FakeApp(Limits(keep_alive_timeout=0.1))
    async with serving(app) as port, await anyio.connect_tcp("127.0.0.1", port) as stream:
        client = Client(stream)
        response, _ = await client.request("GET", "/")
        assert response.status_code == 200
        with anyio.fail_after(5):
            assert await client.closed_by_server()


@pytest.mark.autojump
async def test_H16_slowloris_head_gets_408() -> None:
    app = FakeApp(Limits(header_timeout=0.1))
    async with serving(app) as port, await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(b"GET / HTTP/1.1\r\nHost: x\r\n")  # the head never ends
        with anyio.fail_after(5):
            [(status, headers, _)] = parse_responses(await read_until_eof(stream))
    assert status == 408
    assert headers["connection"] == "close"


@pytest.mark.autojump
async def test_silent_connection_is_closed_without_a_response() -> None:
    app = FakeApp(Limits(header_timeout=0.1))
    async with serving(app) as port, await anyio.connect_tcp("127.0.0.1", port) as stream:
        with anyio.fail_after(5):
            assert await read_until_eof(stream) == b""


@pytest.mark.autojump
async def test_H16_slow_body_gets_408() -> None:
    app = FakeApp(Limits(body_timeout=0.1))
    async with serving(app) as port, await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        with anyio.fail_after(5):
            [(status, _, _)] = parse_responses(await read_until_eof(stream))
    assert status == 408
    assert app.requests == []


async def test_handler_exception_gets_500_and_leaves_other_connections_alone() -> None:
    app = FakeApp()
    async with (
        serving(app) as port,
        await anyio.connect_tcp("127.0.0.1", port) as first,
        await anyio.connect_tcp("127.0.0.1", port) as second,
    ):
        other = Client(second)
        assert (await other.request("GET", "/before"))[0].status_code == 200
        failing = Client(first)
        response, body = await failing.request("GET", "/boom")
        assert response.status_code == 500
        assert b"boom" not in body and b"Traceback" not in body
        assert (await failing.request("GET", "/again"))[0].status_code == 200
        assert (await other.request("GET", "/after"))[0].status_code == 200


async def test_head_request_gets_headers_without_body() -> None:
    app = FakeApp()
    async with serving(app) as port:
        raw = b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            await stream.send(raw)
            data = await read_until_eof(stream)
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"content-length: " in head.lower()
    assert rest == b""


async def test_graceful_shutdown_finishes_requests_in_flight_and_closes_idle_ones() -> None:
    app = FakeApp()
    trigger = anyio.Event()
    async with (
        serving(app, shutdown_trigger=trigger.wait) as port,
        await anyio.connect_tcp("127.0.0.1", port) as busy_stream,
        await anyio.connect_tcp("127.0.0.1", port) as idle_stream,
    ):
        idle = Client(idle_stream)
        assert (await idle.request("GET", "/"))[0].status_code == 200
        busy = Client(busy_stream)
        await busy_stream.send(b"GET /wait HTTP/1.1\r\nHost: x\r\n\r\n")
        assert app.waiting is not None
        with anyio.fail_after(5):
            await app.waiting.wait()
        trigger.set()
        with anyio.fail_after(5):
            assert await idle.closed_by_server()
            assert app.handle is not None
            await app.handle.stopping.wait()
            assert app.gate is not None
            app.gate.set()
            response, _ = await busy.response()
            assert response.status_code == 200
            assert header(response, "connection") == "close"
            assert await busy.closed_by_server()
    assert app.handle.shutdown_calls == 1


_REQUEST_USER: contextvars.ContextVar[str] = contextvars.ContextVar("request_user")


@pytest.mark.anyio
async def test_context_variables_do_not_leak_between_requests_of_one_connection() -> None:
    from anyql import GraphQL, Schema

    schema = Schema("type Query { whoami(set: String): String }")

    @schema.field("Query.whoami")
    def whoami(root: object, info: object, set: str | None = None) -> str:
        seen = _REQUEST_USER.get("nobody")
        if set is not None:
            _REQUEST_USER.set(set)  # e.g. an auth helper storing the request's user
        return seen

    app = GraphQL(schema)
    async with anyio.create_task_group() as tasks:
        port = await tasks.start(partial(serve, app, port=0))
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            client = Client(stream)  # one keep-alive connection, as behind a reverse proxy
            seen = []
            for query in ('{ whoami(set: "alice") }', "{ whoami }"):
                _, body = await client.request(
                    "POST",
                    "/graphql",
                    [("content-type", "application/json")],
                    json.dumps({"query": query}).encode(),
                )
                seen.append(json.loads(body)["data"]["whoami"])
        tasks.cancel_scope.cancel()
    assert seen == ["nobody", "nobody"]
