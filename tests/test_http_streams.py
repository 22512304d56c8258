"""Subscriptions over plain HTTP, in process: the stream sessions, reservations, refusals,
keep-alive, the drain and slow consumers (rows E01 to E09 of docs/bad-inputs.md).

The app's ``handle_http`` is called directly and an ``HTTPStream``'s body is run against a
sink that records what it is given, so every byte the stream sends is seen in order. Real
clients over real servers are in tests/e2e/test_http_streams.py; the transports' own part
(chunked and close-delimited bodies, cancellation when the peer goes) is at the end.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from anyql import GraphQL, Limits, Schema
from anyql.http import negotiate_stream
from anyql.protocol.http_stream import Multipart, SSEDistinct, SSESingle
from anyql.transports.native import serve
from anyql.types import HTTPRequest, HTTPResponse, HTTPStream, RequestInfo

pytestmark = pytest.mark.anyio

SSE = "text/event-stream"
APOLLO = 'multipart/mixed;boundary="graphql";subscriptionSpec=1.0,application/json'


def make_app(**options: Any) -> tuple[GraphQL, dict[str, Any]]:
    """The app, and what its resolvers record (``finally`` runs, by name)."""
    schema = Schema(
        """
        type Query { hello: String! }
        type Mutation { bump: Int! }
        type Subscription {
          count(to: Int!): Int!
          idle(name: String!): Int!
          shared: Int!
        }
        """
    )
    seen: dict[str, Any] = {"finally": [], "bumps": 0, "ended": anyio.Event()}

    @schema.field("Query.hello")
    def hello(root: Any, info: Any) -> str:
        return "world"

    @schema.field("Mutation.bump")
    def bump(root: Any, info: Any) -> int:
        seen["bumps"] += 1
        return int(seen["bumps"])

    @schema.field("Subscription.count")
    async def count(root: Any, info: Any, to: int) -> AsyncIterator[int]:
        for i in range(to):
            yield i

    @schema.field("Subscription.idle")
    async def idle(root: Any, info: Any, name: str) -> AsyncIterator[int]:
        try:
            yield 0
            await anyio.sleep_forever()
            yield 1
        finally:
            seen["finally"].append(name)
            seen["ended"].set()

    @schema.field("Subscription.shared", shared=True)
    async def shared(root: Any, info: Any) -> AsyncIterator[int]:
        i = 0
        try:
            while True:
                yield i
                i += 1
                await anyio.lowlevel.checkpoint()
        finally:
            seen["ended"].set()

    return GraphQL(schema, **options), seen


def request(
    method: str = "POST",
    body: object = None,
    *,
    accept: str | None = SSE,
    headers: tuple[tuple[str, str], ...] = (),
    query_string: bytes = b"",
    client: tuple[str, int] = ("10.0.0.1", 5000),
) -> HTTPRequest:
    pairs = list(headers)
    if accept is not None:
        pairs.append(("accept", accept))
    data = b""
    if body is not None:
        pairs.append(("content-type", "application/json"))
        data = json.dumps(body).encode()
    info = RequestInfo(method, "/graphql", query_string, tuple(pairs), client)
    return HTTPRequest(info, data)


class Sink:
    """Records every send; ``gate`` (when set) holds each send until it is set."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.changed = anyio.Event()
        self.gate: anyio.Event | None = None

    async def send(self, data: bytes) -> None:
        if self.gate is not None:
            await self.gate.wait()
        self.data += data
        self.changed.set()
        self.changed = anyio.Event()

    async def wait_for(self, text: bytes) -> None:
        while text not in self.data:
            await self.changed.wait()

    def events(self) -> list[tuple[str, str]]:
        """(event, data) of every SSE event so far; comments and retry lines skipped."""
        found = []
        for block in bytes(self.data).decode().split("\n\n"):
            fields = dict(
                line.split(": ", 1) if ": " in line else (line.rstrip(":"), "")
                for line in block.split("\n")
                if line and not line.startswith(":")
            )
            if "event" in fields:
                found.append((fields["event"], fields.get("data", "")))
        return found


async def answer(app: GraphQL, req: HTTPRequest) -> HTTPResponse | HTTPStream:
    return await app.handle_http(req)


async def stream_all(app: GraphQL, req: HTTPRequest) -> Sink:
    response = await answer(app, req)
    assert isinstance(response, HTTPStream), response
    sink = Sink()
    with anyio.fail_after(10):
        await response.body(sink)
    return sink


def body_json(response: HTTPResponse | HTTPStream) -> Any:
    assert isinstance(response, HTTPResponse)
    return json.loads(response.body)


# --- E01: distinct connections mode --------------------------------------------------------


async def test_E01_a_subscription_streams_next_events_then_complete() -> None:
    app, _ = make_app()
    sink = await stream_all(app, request(body={"query": "subscription { count(to: 3) }"}))
    assert sink.data.startswith(b":\n\n")  # the head goes out at once
    assert sink.events() == [
        ("next", '{"data":{"count":0}}'),
        ("next", '{"data":{"count":1}}'),
        ("next", '{"data":{"count":2}}'),
        ("complete", ""),
    ]
    assert sink.data.endswith(b"event: complete\ndata: \n\n")  # EventSource needs the data


async def test_E01_a_query_over_get_and_a_mutation_over_post_stream_one_result() -> None:
    app, seen = make_app()
    query = await stream_all(app, request("GET", query_string=b"query=%7Bhello%7D"))
    assert query.events() == [("next", '{"data":{"hello":"world"}}'), ("complete", "")]
    mutation = await stream_all(app, request(body={"query": "mutation { bump }"}))
    assert mutation.events() == [("next", '{"data":{"bump":1}}'), ("complete", "")]
    assert seen["bumps"] == 1


async def test_E01_validation_errors_arrive_as_a_next_event_on_an_accepted_stream() -> None:
    app, _ = make_app()
    response = await answer(app, request(body={"query": "subscription { nope }"}))
    assert isinstance(response, HTTPStream) and response.status == 200
    sink = Sink()
    await response.body(sink)
    (event, data), complete = sink.events()
    assert event == "next" and "nope" in json.loads(data)["errors"][0]["message"]
    assert complete == ("complete", "")


async def test_E01_refusals_before_the_stream_are_plain_http_answers() -> None:
    app, _ = make_app()
    mutation_over_get = await answer(app, request("GET", query_string=b"query=mutation%7Bbump%7D"))
    assert isinstance(mutation_over_get, HTTPResponse) and mutation_over_get.status == 405
    bad_type = request(body={"query": "{ hello }"})
    bad_type = HTTPRequest(
        RequestInfo("POST", "/graphql", b"", (("accept", SSE), ("content-type", "text/plain"))),
        bad_type.body,
    )
    refused = await answer(app, bad_type)
    assert isinstance(refused, HTTPResponse) and refused.status == 415


async def test_E01_a_subscription_without_a_stream_accept_gets_400_naming_both_ways() -> None:
    app, _ = make_app()
    response = await answer(
        app, request(body={"query": "subscription { count(to: 1) }"}, accept=None)
    )
    message = body_json(response)["errors"][0]["message"]
    assert isinstance(response, HTTPResponse) and response.status == 400
    assert "text/event-stream" in message and "multipart" in message


async def test_E01_closing_the_stream_cancels_the_operation_and_its_finally_runs() -> None:
    app, seen = make_app()
    response = await answer(app, request(body={"query": 'subscription { idle(name: "a") }'}))
    assert isinstance(response, HTTPStream)
    sink = Sink()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(response.body, sink)
        await sink.wait_for(b'"idle":0')
        tasks.cancel_scope.cancel()  # what the transport does when the peer goes
    assert seen["finally"] == ["a"]


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (SSE, "sse"),
        ("text/event-stream, application/json;q=0.5", "sse"),
        ("application/json, text/event-stream;q=0.5", None),
        ("*/*", None),
        ("text/*", None),
        (APOLLO, "multipart"),
        ("multipart/mixed;subscriptionSpec=1.0;q=0", None),
        ("multipart/mixed", None),  # no subscriptionSpec: not Apollo's protocol
        ("application/json", None),
    ],
)
def test_E01_accept_decides_the_stream(accept: str, expected: str | None) -> None:
    assert negotiate_stream({"accept": accept}) == expected


# --- E02: multipart ------------------------------------------------------------------------


def parts(data: bytes) -> list[Any]:
    """The JSON bodies of a multipart/mixed body with boundary "graphql"; asserts the end."""
    text = data.decode()
    assert text.endswith("\r\n--graphql--\r\n"), text
    chunks = text.split("\r\n--graphql")[1:-1]
    found = []
    for chunk in chunks:
        head, _, body = chunk.partition("\r\n\r\n")
        assert "content-type: application/json" in head
        found.append(json.loads(body))
    return found


async def test_E02_a_multipart_subscription_sends_one_part_per_result_and_the_end() -> None:
    app, _ = make_app()
    response = await answer(
        app, request(body={"query": "subscription { count(to: 2) }"}, accept=APOLLO)
    )
    assert isinstance(response, HTTPStream)
    assert dict(response.headers)["content-type"] == Multipart.content_type
    sink = Sink()
    await response.body(sink)
    assert parts(bytes(sink.data)) == [
        {"payload": {"data": {"count": 0}}},
        {"payload": {"data": {"count": 1}}},
    ]


async def test_E02_each_part_ends_with_its_boundary_so_clients_deliver_it_at_once() -> None:
    app, _ = make_app()
    response = await answer(
        app, request(body={"query": 'subscription { idle(name: "m") }'}, accept=APOLLO)
    )
    assert isinstance(response, HTTPStream)
    sink = Sink()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(response.body, sink)
        await sink.wait_for(b'{"payload":{"data":{"idle":0}}}')
        await sink.wait_for(b'{"payload":{"data":{"idle":0}}}\r\n--graphql')
        tasks.cancel_scope.cancel()


async def test_E02_a_query_with_apollos_accept_gets_plain_json() -> None:
    app, _ = make_app()
    response = await answer(app, request(body={"query": "{ hello }"}, accept=APOLLO))
    assert body_json(response) == {"data": {"hello": "world"}}


async def test_E02_a_request_error_under_apollos_accept_is_a_json_answer() -> None:
    app, _ = make_app()
    response = await answer(app, request(body={"query": "subscription { nope }"}, accept=APOLLO))
    assert "nope" in body_json(response)["errors"][0]["message"]


async def test_E02_a_request_error_with_only_multipart_accepted_ends_with_the_boundary() -> None:
    app, _ = make_app()
    accept = 'multipart/mixed;subscriptionSpec="1.0"'
    sink = await stream_all(app, request(body={"query": "subscription { nope }"}, accept=accept))
    (only,) = parts(bytes(sink.data))
    assert "nope" in only["payload"]["errors"][0]["message"]


# --- E03 to E06: single connection mode ----------------------------------------------------


async def reserve(app: GraphQL, **options: Any) -> str:
    response = await answer(app, request("PUT", accept=None, **options))
    assert isinstance(response, HTTPResponse) and response.status == 201, response
    return response.body.decode()


def with_token(token: str) -> tuple[tuple[str, str], ...]:
    return (("x-graphql-event-stream-token", token),)


async def operate(app: GraphQL, token: str, query: str, operation_id: str) -> HTTPResponse:
    body = {"query": query, "extensions": {"operationId": operation_id}}
    response = await answer(app, request(body=body, accept=None, headers=with_token(token)))
    assert isinstance(response, HTTPResponse)
    return response


async def test_E03_operations_on_one_stream_carry_their_ids() -> None:
    app, seen = make_app()
    token = await reserve(app)
    assert re.fullmatch(r"[0-9a-f]{8}\.[A-Za-z0-9_-]{32}", token)
    stream = await answer(app, request("GET", headers=with_token(token)))
    assert isinstance(stream, HTTPStream)
    sink = Sink()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(stream.body, sink)
        assert (await operate(app, token, 'subscription { idle(name: "s") }', "a")).status == 202
        assert (await operate(app, token, "{ hello }", "b")).status == 202
        await sink.wait_for(b'event: complete\ndata: {"id":"b"}')
        await sink.wait_for(b'{"id":"a","payload":{"data":{"idle":0}}}')
        stop = request(
            "DELETE", accept=None, headers=with_token(token), query_string=b"operationId=a"
        )
        stopped = await answer(app, stop)
        assert isinstance(stopped, HTTPResponse) and stopped.status == 200
        with anyio.fail_after(5):
            await seen["ended"].wait()
        assert seen["finally"] == ["s"]
        tasks.cancel_scope.cancel()
    assert ("next", '{"id":"b","payload":{"data":{"hello":"world"}}}') in sink.events()


async def test_E03_closing_the_stream_cancels_every_operation_on_it() -> None:
    app, seen = make_app()
    token = await reserve(app)
    stream = await answer(app, request("GET", headers=with_token(token)))
    assert isinstance(stream, HTTPStream)
    sink = Sink()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(stream.body, sink)
        for name in ("x", "y", "z"):
            await operate(app, token, f'subscription {{ idle(name: "{name}") }}', name)
        for name in ("x", "y", "z"):
            await sink.wait_for(f'"id":"{name}","payload"'.encode())
        tasks.cancel_scope.cancel()
    assert sorted(seen["finally"]) == ["x", "y", "z"]
    gone = await operate(app, token, "{ hello }", "late")
    assert gone.status == 404  # the reservation ended with its stream


async def test_E03_operations_sent_before_the_stream_opens_start_when_it_does() -> None:
    app, _ = make_app()
    token = await reserve(app)
    assert (await operate(app, token, "{ hello }", "early")).status == 202
    stream = await answer(app, request("GET", query_string=f"token={token}".encode()))
    assert isinstance(stream, HTTPStream)
    sink = Sink()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(stream.body, sink)
        await sink.wait_for(b'event: complete\ndata: {"id":"early"}')
        tasks.cancel_scope.cancel()


async def test_E04_a_second_stream_for_one_token_gets_409_and_unknown_tokens_404() -> None:
    app, _ = make_app()
    token = await reserve(app)
    first = await answer(app, request("GET", headers=with_token(token)))
    assert isinstance(first, HTTPStream)
    second = await answer(app, request("GET", headers=with_token(token)))
    assert isinstance(second, HTTPResponse) and second.status == 409
    forged = await answer(
        app, request("GET", headers=with_token(token.partition(".")[0] + ".forged"))
    )
    message = body_json(forged)["errors"][0]["message"]
    assert isinstance(forged, HTTPResponse) and forged.status == 404
    assert "sticky" in message and "Redis" in message


async def test_E05_operation_requests_are_checked_as_graphql_over_http_checks_them() -> None:
    app, _ = make_app()
    token = await reserve(app)
    no_id = await answer(
        app, request(body={"query": "{ hello }"}, accept=None, headers=with_token(token))
    )
    assert isinstance(no_id, HTTPResponse) and no_id.status == 400
    assert "operationId" in body_json(no_id)["errors"][0]["message"]
    invalid = await operate(app, token, "{ nope }", "v")
    assert invalid.status == 200 and "nope" in json.loads(invalid.body)["errors"][0]["message"]
    assert (await operate(app, token, 'subscription { idle(name: "d") }', "dup")).status == 202
    duplicate = await operate(app, token, 'subscription { idle(name: "d") }', "dup")
    assert duplicate.status == 409
    no_operation = request("DELETE", accept=None, headers=with_token(token))
    missing = await answer(app, no_operation)
    assert isinstance(missing, HTTPResponse) and missing.status == 400
    no_token = await answer(app, request("DELETE", accept=None, query_string=b"operationId=1"))
    assert isinstance(no_token, HTTPResponse) and no_token.status == 400
    refused = await answer(app, request("PUT", accept="application/json"))
    assert isinstance(refused, HTTPResponse) and refused.status == 406


async def test_E05_operations_per_stream_are_bounded_by_max_operations() -> None:
    app, _ = make_app(limits=Limits(max_operations=2))
    token = await reserve(app)
    for name in ("1", "2"):
        assert (
            await operate(app, token, f'subscription {{ idle(name: "{name}") }}', name)
        ).status == 202
    third = await operate(app, token, 'subscription { idle(name: "3") }', "3")
    assert (
        third.status == 429 and "max_operations" in json.loads(third.body)["errors"][0]["message"]
    )


async def test_E06_reservations_per_client_address_are_bounded() -> None:
    app, _ = make_app(limits=Limits(max_stream_reservations_per_client=2))
    for _ in range(2):
        await reserve(app)
    refused = await answer(app, request("PUT", accept=None))
    assert isinstance(refused, HTTPResponse) and refused.status == 429
    await reserve(app, client=("10.0.0.2", 1))  # another address is not affected


async def test_E06_behind_trusted_proxies_the_forwarded_address_counts() -> None:
    app, _ = make_app(limits=Limits(max_stream_reservations_per_client=1), trusted_proxies=1)
    first = (("x-forwarded-for", "203.0.113.9, 198.51.100.1"),)
    await reserve(app, headers=first)
    # the same proxy, another client: the last X-Forwarded-For entry is what the proxy saw
    await reserve(app, headers=(("x-forwarded-for", "198.51.100.2"),))
    again = await answer(app, request("PUT", accept=None, headers=first))
    assert isinstance(again, HTTPResponse) and again.status == 429


@pytest.mark.autojump
async def test_E06_an_unused_reservation_is_released_after_its_timeout() -> None:
    app, _ = make_app(limits=Limits(stream_reservation_timeout=1.0))
    token = await reserve(app)
    await anyio.sleep(1.5)
    late = await answer(app, request("GET", headers=with_token(token)))
    assert isinstance(late, HTTPResponse) and late.status == 404
    assert len(app.streams.reservations) == 0


# --- E07: keep-alive -----------------------------------------------------------------------


@pytest.mark.autojump
@pytest.mark.parametrize(
    ("accept", "keep_alive"), [(SSE, b":\n\n"), (APOLLO, b"\r\n\r\n{}\r\n--graphql")]
)
async def test_E07_an_idle_stream_gets_keep_alives(accept: str, keep_alive: bytes) -> None:
    app, _ = make_app(limits=Limits(stream_keep_alive_interval=0.2))
    response = await answer(
        app, request(body={"query": 'subscription { idle(name: "k") }'}, accept=accept)
    )
    assert isinstance(response, HTTPStream)
    sink = Sink()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(response.body, sink)
        await sink.wait_for(b'"idle":0')
        mark = len(sink.data)
        while sink.data[mark:].count(keep_alive) < 2:
            await sink.changed.wait()
        tasks.cancel_scope.cancel()


# --- E08: the drain ------------------------------------------------------------------------


async def test_E08_a_drain_ends_live_sse_streams_with_a_retry_and_new_ones_get_only_a_retry() -> (
    None
):
    app, seen = make_app()
    async with app.running() as handle:
        token = await reserve(app)  # reserved before the drain, opened during it
        response = await answer(app, request(body={"query": 'subscription { idle(name: "d") }'}))
        assert isinstance(response, HTTPStream)
        sink = Sink()
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(response.body, sink)
            await sink.wait_for(b'"idle":0')
            assert handle.connections == 1  # a stream counts as a connection
            with anyio.fail_after(10):
                await handle.drain(delay=0, window=0)
        tail = bytes(sink.data).rsplit(b"\n\n", 2)[-2]
        retry = int(tail.removeprefix(b"retry: "))
        assert 500 <= retry <= 3000 and b"event: complete" not in sink.data
        assert seen["finally"] == ["d"]
        late = await stream_all(app, request(body={"query": 'subscription { idle(name: "n") }'}))
        assert re.fullmatch(rb":\n\nretry: \d+\n\n", bytes(late.data))
        refused = await answer(
            app, request(body={"query": "subscription { shared }"}, accept=APOLLO)
        )
        assert isinstance(refused, HTTPResponse) and refused.status == 503
        put = await answer(app, request("PUT", accept=None))
        assert isinstance(put, HTTPResponse) and put.status == 503
        opened = await stream_all(app, request("GET", headers=with_token(token)))
        assert re.fullmatch(rb":\n\nretry: \d+\n\n", bytes(opened.data))
        operation = await operate(app, token, "{ hello }", "late")
        assert operation.status == 503
    assert seen["finally"] == ["d"]  # the late request ran nothing


async def test_E08_a_drain_ends_multipart_streams_with_a_transport_error() -> None:
    app, _ = make_app()
    async with app.running() as handle:
        response = await answer(
            app, request(body={"query": 'subscription { idle(name: "m") }'}, accept=APOLLO)
        )
        assert isinstance(response, HTTPStream)
        sink = Sink()
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(response.body, sink)
            await sink.wait_for(b'"idle":0')
            await handle.drain(delay=0, window=0)
        found = parts(bytes(sink.data))
        assert found[-1] == {"payload": None, "errors": [{"message": "Server is shutting down"}]}


async def test_E08_streams_count_against_max_connections() -> None:
    app, _ = make_app(limits=Limits(max_connections=1))
    async with app.running():
        first = await answer(app, request(body={"query": 'subscription { idle(name: "1") }'}))
        assert isinstance(first, HTTPStream)
        sink = Sink()
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(first.body, sink)
            await sink.wait_for(b'"idle":0')
            second = await answer(app, request(body={"query": 'subscription { idle(name: "2") }'}))
            assert isinstance(second, HTTPResponse) and second.status == 503
            tasks.cancel_scope.cancel()


# --- E09: slow consumers -------------------------------------------------------------------


async def test_E09_a_slow_sse_consumer_of_a_shared_subscription_ends_with_a_long_retry() -> None:
    app, seen = make_app(limits=Limits(send_buffer_messages=4))
    async with app.running():
        response = await answer(app, request(body={"query": "subscription { shared }"}))
        assert isinstance(response, HTTPStream)
        sink = Sink()
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(response.body, sink)
            await sink.wait_for(b'"shared":0')
            sink.gate = anyio.Event()  # from now on the client reads nothing: the outbox fills
            with anyio.fail_after(10):
                await seen["ended"].wait()  # the hub ended: its only subscriber was closed
            sink.gate.set()
        lines = bytes(sink.data).split(b"\n\n")
        retry = [
            int(line.removeprefix(b"retry: ")) for line in lines if line.startswith(b"retry: ")
        ]
        assert len(retry) == 1 and 10_000 <= retry[0] <= 20_000
        assert b"event: complete" not in sink.data


# --- the transports --------------------------------------------------------------------------


async def exchange(port: int, raw: bytes) -> bytes:
    """Send ``raw`` on a new connection and read until the server closes it."""

    def run() -> bytes:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(raw)
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
            return received

    return await anyio.to_thread.run_sync(run)


async def test_E01_http_1_0_clients_get_a_close_delimited_stream_and_1_1_a_chunked_one() -> None:
    app, _ = make_app()
    async with anyio.create_task_group() as tasks:
        port = await tasks.start(lambda task_status: serve(app, port=0, task_status=task_status))
        target = b"GET /graphql?query=subscription%7Bcount(to:2)%7D"
        old = await exchange(port, target + b" HTTP/1.0\r\nAccept: text/event-stream\r\n\r\n")
        new = await exchange(
            port,
            target
            + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAccept: text/event-stream\r\n\r\n",
        )
        tasks.cancel_scope.cancel()
    head, _, body = old.partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in head.lower() and b"content-length" not in head.lower()
    assert body.endswith(b"event: complete\ndata: \n\n")
    head, _, body = new.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    assert body.endswith(b"0\r\n\r\n") and b"event: complete" in body


def test_E01_framings_splice_one_encoded_result_for_every_subscriber() -> None:
    payload = b'{"data":{"x":1}}'
    before, after = SSESingle().envelope('a"b')
    assert json.loads((before + payload + after).split(b"data: ")[1]) == {
        "id": 'a"b',
        "payload": {"data": {"x": 1}},
    }
    assert SSEDistinct().next("", payload) == b"event: next\ndata: " + payload + b"\n\n"
    assert Multipart().next("", payload).endswith(b'{"payload":' + payload + b"}\r\n--graphql")
