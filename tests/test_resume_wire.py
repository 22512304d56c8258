"""Resume on the wire, in process: ``anyql.resume_point(info)``, sources that yield
``anyql.Event``, the event id in every payload and as the SSE ``id:`` line, ``ResumeError``
reaching the client, and shared subscriptions that resume privately (rows D01 to D07 of
docs/bad-inputs.md; D08 and D09, real clients against real servers, are in
tests/e2e/test_resume_clients.py).

WebSocket frames are read raw (``send_json``/``receive_json``) so each ``next`` payload is
seen exactly; HTTP streams run an ``HTTPStream``'s body against a recording sink, as in
tests/test_http_streams.py, so every byte (``id:`` lines included) is seen.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import anyio
import anyio.lowlevel
import pytest

import anyql
from anyql import Event, GraphQL, ResumeError, Schema, resume_point
from anyql.execution import Engine, _with_event_id
from anyql.protocol.http_stream import Multipart, SSEDistinct, SSESingle
from anyql.testing import TestClient
from anyql.types import MAX_EVENT_ID_LENGTH, HTTPRequest, HTTPResponse, HTTPStream, RequestInfo

pytestmark = pytest.mark.anyio

SSE = "text/event-stream"
APOLLO = 'multipart/mixed;boundary="graphql";subscriptionSpec=1.0,application/json'
NUMBERS = "subscription { numbers(to: 5) }"


def make_app(**options: Any) -> tuple[GraphQL, dict[str, Any]]:
    """The app, and what its sources record: the resume points they saw, per source."""
    schema = Schema(
        """
        type Query { seen: String }
        type Subscription {
          numbers(to: Int!): Int!
          plain(to: Int!): Int!
          points: String
          expired: Int!
          refused: Int!
          broken: Int!
          ticks: Int!
        }
        """
    )
    seen: dict[str, Any] = {"numbers": [], "ticks": [], "hubs": 0, "query": "unset"}

    @schema.field("Query.seen")
    def query_seen(root: Any, info: Any) -> str | None:
        seen["query"] = resume_point(info)
        return None

    @schema.field("Subscription.numbers")
    async def numbers(root: Any, info: Any, to: int) -> AsyncIterator[Event]:
        after = resume_point(info)
        seen["numbers"].append(after)
        for n in range(0 if after is None else int(after) + 1, to):
            yield Event(n, str(n))

    @schema.field("Subscription.plain")
    async def plain(root: Any, info: Any, to: int) -> AsyncIterator[int]:
        for n in range(to):
            yield n

    @schema.field("Subscription.points")
    def points(root: Any, info: Any) -> AsyncIterator[str]:
        # a plain function returning the generator: called with the resume point set
        at_call = resume_point(info)

        async def source() -> AsyncIterator[str]:
            yield f"call={at_call} body={resume_point(info)}"  # the body's first run
            yield f"later={resume_point(info)}"

        return source()

    @schema.field("Subscription.expired")
    async def expired(root: Any, info: Any) -> AsyncIterator[int]:
        raise ResumeError("RESUME_POINT_EXPIRED", f"events after {resume_point(info)} are gone")
        yield 0  # pragma: no cover - makes this an async generator

    @schema.field("Subscription.refused")
    async def refused(root: Any, info: Any) -> AsyncIterator[int]:
        # a coroutine that raises before any source exists (graphql-core locates it)
        raise ResumeError("RESUME_POINT_INVALID", "not an id of this stream")

    @schema.field("Subscription.broken")
    async def broken(root: Any, info: Any) -> AsyncIterator[int]:
        raise ValueError("a secret detail")
        yield 0  # pragma: no cover

    @schema.field("Subscription.ticks", shared=True)
    async def ticks(root: Any, info: Any) -> AsyncIterator[Event]:
        after = resume_point(info)
        seen["ticks"].append(after)
        seen["hubs"] += 1
        n = 0 if after is None else int(after.removeprefix("t")) + 1
        while True:
            yield Event(n, f"t{n}")
            n += 1
            await anyio.lowlevel.checkpoint()

    return GraphQL(schema, **options), seen


def request(
    method: str = "POST",
    body: object = None,
    *,
    accept: str | None = SSE,
    headers: tuple[tuple[str, str], ...] = (),
    query_string: bytes = b"",
) -> HTTPRequest:
    pairs = list(headers)
    if accept is not None:
        pairs.append(("accept", accept))
    data = b""
    if body is not None:
        pairs.append(("content-type", "application/json"))
        data = json.dumps(body).encode()
    info = RequestInfo(method, "/graphql", query_string, tuple(pairs), ("10.0.0.1", 5000))
    return HTTPRequest(info, data)


class Sink:
    """Records every send of a stream's body."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.changed = anyio.Event()

    async def send(self, data: bytes) -> None:
        self.data += data
        self.changed.set()
        self.changed = anyio.Event()

    async def wait_for(self, text: bytes) -> None:
        while text not in self.data:
            await self.changed.wait()

    def events(self) -> list[dict[str, str]]:
        """The fields of every SSE event so far (comments and ``retry:`` skipped)."""
        found = []
        for block in bytes(self.data).decode().split("\n\n"):
            fields = dict(
                line.split(": ", 1) if ": " in line else (line.rstrip(":"), "")
                for line in block.split("\n")
                if line and not line.startswith(":")
            )
            if "event" in fields:
                found.append(fields)
        return found


async def stream_all(app: GraphQL, req: HTTPRequest) -> Sink:
    response = await app.handle_http(req)
    assert isinstance(response, HTTPStream), response
    sink = Sink()
    with anyio.fail_after(10):
        await response.body(sink)
    return sink


def ws_frames(subprotocol: str) -> tuple[str, str, str]:
    """(start, result, end) message types of a WebSocket subprotocol."""
    if subprotocol == "graphql-ws":
        return "start", "data", "complete"
    return "subscribe", "next", "complete"


async def ws_run(
    client: TestClient, subprotocol: str, payload: dict[str, Any], count: int | None = None
) -> list[dict[str, Any]]:
    """Subscribe over a raw socket and return every message for the operation until its
    end (or ``count`` results, then stop it)."""
    start, _, _ = ws_frames(subprotocol)
    async with client.websocket(subprotocol=subprotocol) as ws:
        await ws.send_json({"id": "op", "type": start, "payload": payload})
        messages = []
        with anyio.fail_after(10):
            while True:
                message = await ws.receive_json()
                if message.get("id") != "op":
                    continue
                messages.append(message)
                if message["type"] in ("complete", "error") or len(messages) == count:
                    break
        return messages


PROTOCOLS = pytest.mark.parametrize("subprotocol", ["graphql-transport-ws", "graphql-ws"])


# --- D01: the resume point reaches the source -----------------------------------------------


@PROTOCOLS
async def test_D01_resume_point_reaches_the_source_over_websockets(subprotocol: str) -> None:
    app, seen = make_app()
    _, next_type, _ = ws_frames(subprotocol)
    async with TestClient(app) as client:
        fresh = await ws_run(client, subprotocol, {"query": NUMBERS})
        resumed = await ws_run(
            client, subprotocol, {"query": NUMBERS, "extensions": {"lastEventId": "2"}}
        )
        points = await ws_run(
            client,
            subprotocol,
            {"query": "subscription { points }", "extensions": {"lastEventId": "abc"}},
        )
        nothing = await ws_run(client, subprotocol, {"query": "subscription { points }"})
        query = await ws_run(
            client, subprotocol, {"query": "{ seen }", "extensions": {"lastEventId": "q"}}
        )
    assert seen["numbers"] == [None, "2"]
    assert [m["payload"]["data"]["numbers"] for m in fresh if m["type"] == next_type] == [
        0,
        1,
        2,
        3,
        4,
    ]
    assert [m["payload"]["data"]["numbers"] for m in resumed if m["type"] == next_type] == [3, 4]
    assert [m["payload"]["data"]["points"] for m in points if m["type"] == next_type] == [
        "call=abc body=abc",
        "later=None",  # set only until the first event
    ]
    assert [m["payload"]["data"]["points"] for m in nothing if m["type"] == next_type] == [
        "call=None body=None",
        "later=None",
    ]
    assert query[-1]["type"] == "complete"
    assert seen["query"] is None  # outside a subscription's source


async def test_D01_resume_point_reaches_the_source_over_http_streams() -> None:
    app, seen = make_app()
    extensions = {"lastEventId": "1"}
    await stream_all(app, request(body={"query": NUMBERS, "extensions": extensions}))
    query_string = urlencode({"query": NUMBERS, "extensions": json.dumps(extensions)}).encode()
    await stream_all(app, request("GET", query_string=query_string))
    multipart = await stream_all(
        app, request(body={"query": NUMBERS, "extensions": extensions}, accept=APOLLO)
    )
    assert seen["numbers"] == ["1", "1", "1"]
    assert b'{"payload":{"data":{"numbers":2}' in multipart.data
    assert b'"numbers":1' not in multipart.data
    # outside any source, and after the context variable was reset: nothing
    assert resume_point(None) is None


# --- D02: a bad extensions.lastEventId is a request error ------------------------------------

BAD_IDS = [
    pytest.param(7, "must be a non-empty string", id="number"),
    pytest.param("", "must be a non-empty string", id="empty"),
    pytest.param(["1"], "must be a non-empty string", id="list"),
    pytest.param("x" * (MAX_EVENT_ID_LENGTH + 1), "longer than 4096", id="too-long"),
    pytest.param("1\n2", "line break or NUL", id="lf"),
    pytest.param("1\r2", "line break or NUL", id="cr"),
    pytest.param("1\x002", "line break or NUL", id="nul"),
]


@pytest.mark.parametrize(("bad", "message"), BAD_IDS)
async def test_D02_a_bad_last_event_id_is_refused_with_400_over_http(
    bad: Any, message: str
) -> None:
    app, seen = make_app()
    body = {"query": NUMBERS, "extensions": {"lastEventId": bad}}
    for accept in (SSE, APOLLO, "application/json"):
        response = await app.handle_http(request(body=body, accept=accept))
        assert isinstance(response, HTTPResponse), accept  # refused before any stream
        assert response.status == 400
        assert message in response.body.decode()
        assert "lastEventId" in response.body.decode()
    query_string = urlencode({"query": NUMBERS, "extensions": json.dumps(body["extensions"])})
    response = await app.handle_http(request("GET", query_string=query_string.encode()))
    assert isinstance(response, HTTPResponse) and response.status == 400
    assert seen["numbers"] == []
    # null is the same as no resume point
    sink = await stream_all(
        app, request(body={"query": NUMBERS, "extensions": {"lastEventId": None}})
    )
    assert seen["numbers"] == [None] and b'"numbers":0' in sink.data


@PROTOCOLS
@pytest.mark.parametrize(("bad", "message"), BAD_IDS)
async def test_D02_a_bad_last_event_id_gets_an_error_and_the_socket_stays_open(
    subprotocol: str, bad: Any, message: str
) -> None:
    app, seen = make_app()
    start, next_type, _ = ws_frames(subprotocol)
    async with TestClient(app) as client, client.websocket(subprotocol=subprotocol) as ws:
        payload = {"query": NUMBERS, "extensions": {"lastEventId": bad}}
        await ws.send_json({"id": "bad", "type": start, "payload": payload})
        with anyio.fail_after(10):
            error = await ws.receive_json()
        assert error["type"] == "error" and error["id"] == "bad"
        errors = error["payload"] if isinstance(error["payload"], list) else [error["payload"]]
        assert message in errors[0]["message"] and "lastEventId" in errors[0]["message"]
        # the socket is still open and serves the next operation
        await ws.send_json({"id": "good", "type": start, "payload": {"query": NUMBERS}})
        with anyio.fail_after(10):
            first = await ws.receive_json()
        assert first["type"] == next_type and first["id"] == "good"
    assert seen["numbers"] == [None]


# --- D03: Last-Event-ID ------------------------------------------------------------------------


async def test_D03_the_last_event_id_header_wins_in_distinct_mode() -> None:
    app, seen = make_app()
    body = {"query": NUMBERS, "extensions": {"lastEventId": "0"}}
    sink = await stream_all(app, request(body=body, headers=(("last-event-id", "3"),)))
    assert seen["numbers"] == ["3"]
    assert [e["data"] for e in sink.events() if e["event"] == "next"] == [
        '{"data":{"numbers":4},"extensions":{"eventId":"4"}}'
    ]
    # what a reconnecting EventSource sends: a GET with only the header
    query_string = urlencode({"query": NUMBERS}).encode()
    await stream_all(
        app, request("GET", query_string=query_string, headers=(("last-event-id", "1"),))
    )
    assert seen["numbers"] == ["3", "1"]
    # multipart ignores it
    await stream_all(
        app, request(body={"query": NUMBERS}, accept=APOLLO, headers=(("last-event-id", "1"),))
    )
    assert seen["numbers"] == ["3", "1", None]


async def test_D03_a_non_ascii_event_id_comes_back_as_it_was_sent() -> None:
    """An EventSource sends the last ``id:`` it saw as UTF-8; headers arrive as latin-1 text.
    (It used to reach the resolver as mojibake: "Ã©2" for "é2".)"""
    app, seen = make_app()
    for event_id in ("é2", "日" * MAX_EVENT_ID_LENGTH):  # the limit counts characters
        as_sent = event_id.encode("utf-8").decode("latin-1")
        await stream_all(
            app, request(body={"query": NUMBERS}, headers=(("last-event-id", as_sent),))
        )
    assert seen["numbers"] == ["é2", "日" * MAX_EVENT_ID_LENGTH]


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("x" * (MAX_EVENT_ID_LENGTH + 1), "longer than 4096"),
        ("1\x002", "line break or NUL"),
        ("\xe9", "not UTF-8"),  # a latin-1 byte alone
    ],
)
async def test_D03_a_bad_last_event_id_header_is_refused_with_400(
    header: str, message: str
) -> None:
    app, seen = make_app()
    response = await app.handle_http(
        request(body={"query": NUMBERS}, headers=(("last-event-id", header),))
    )
    assert isinstance(response, HTTPResponse) and response.status == 400
    assert message in response.body.decode() and "Last-Event-ID" in response.body.decode()
    assert seen["numbers"] == []


async def test_D03_single_connection_mode_resumes_per_operation_only() -> None:
    app, seen = make_app()
    reserved = await app.handle_http(request("PUT", accept="text/plain"))
    assert isinstance(reserved, HTTPResponse) and reserved.status == 201
    token = reserved.body.decode()
    stream = await app.handle_http(
        request("GET", query_string=f"token={token}".encode(), headers=(("last-event-id", "3"),))
    )
    assert isinstance(stream, HTTPStream)
    sink = Sink()
    token_header = (("x-graphql-event-stream-token", token),)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(stream.body, sink)
        for op, extensions in (("a", {}), ("b", {"lastEventId": "2"})):
            body = {"query": NUMBERS, "extensions": {"operationId": op, **extensions}}
            accepted = await app.handle_http(request(body=body, accept=None, headers=token_header))
            assert isinstance(accepted, HTTPResponse) and accepted.status == 202
        with anyio.fail_after(10):
            await sink.wait_for(b'event: complete\ndata: {"id":"a"}')
            await sink.wait_for(b'event: complete\ndata: {"id":"b"}')
        tasks.cancel_scope.cancel()
    assert sorted(seen["numbers"], key=str) == ["2", None]  # the GET's header is ignored
    nexts = [e for e in sink.events() if e["event"] == "next"]
    assert [
        json.loads(e["data"])["payload"]["data"]["numbers"] for e in nexts if '"b"' in e["data"]
    ] == [3, 4]
    # every next carries its own id line, after its data
    assert all(e["id"] == str(json.loads(e["data"])["payload"]["data"]["numbers"]) for e in nexts)


# --- D04: the event id in the payload ------------------------------------------------------------


@PROTOCOLS
async def test_D04_a_source_of_events_sends_their_ids_in_the_payload_over_websockets(
    subprotocol: str,
) -> None:
    app, _ = make_app()
    _, next_type, _ = ws_frames(subprotocol)
    async with TestClient(app) as client:
        messages = await ws_run(client, subprotocol, {"query": "subscription { numbers(to: 3) }"})
        plain = await ws_run(client, subprotocol, {"query": "subscription { plain(to: 2) }"})
    assert [m["payload"] for m in messages if m["type"] == next_type] == [
        {"data": {"numbers": n}, "extensions": {"eventId": str(n)}} for n in range(3)
    ]
    assert messages[-1]["type"] == "complete"
    assert [m["payload"] for m in plain if m["type"] == next_type] == [
        {"data": {"plain": n}} for n in range(2)
    ]


async def test_D04_multipart_carries_the_id_only_in_the_payload() -> None:
    app, _ = make_app()
    sink = await stream_all(
        app, request(body={"query": "subscription { numbers(to: 2) }"}, accept=APOLLO)
    )
    assert b'{"payload":{"data":{"numbers":0},"extensions":{"eventId":"0"}}}' in sink.data
    assert b"id:" not in sink.data
    assert Multipart().envelope("", "7") == Multipart().envelope("")


def test_D04_the_event_id_is_merged_into_a_fresh_extensions_dict() -> None:
    shared = {"cost": 3}
    result = _with_event_id({"data": {"x": 1}, "extensions": shared}, "9")
    assert result == {"data": {"x": 1}, "extensions": {"cost": 3, "eventId": "9"}}
    assert shared == {"cost": 3}  # never mutated
    assert _with_event_id({"data": None}, "1") == {"data": None, "extensions": {"eventId": "1"}}


async def test_D04_the_engine_unwraps_events_and_keeps_their_id() -> None:
    app, _ = make_app()
    engine: Engine = app.engine
    prepared = engine.prepare(anyql.OperationRequest("subscription { numbers(to: 2) }"))
    async with engine.subscribe(prepared, context=None) as results:
        got = [(result, results.event_id) async for result in results]
    assert got == [
        ({"data": {"numbers": 0}, "extensions": {"eventId": "0"}}, "0"),
        ({"data": {"numbers": 1}, "extensions": {"eventId": "1"}}, "1"),
    ]
    prepared = engine.prepare(anyql.OperationRequest("subscription { plain(to: 1) }"))
    async with engine.subscribe(prepared, context=None) as results:
        got = [(result, results.event_id) async for result in results]
    assert got == [({"data": {"plain": 0}}, None)]


# --- D05: the SSE id line ------------------------------------------------------------------------


async def test_D05_sse_next_events_carry_an_id_line_after_their_data() -> None:
    app, _ = make_app()
    sink = await stream_all(app, request(body={"query": "subscription { numbers(to: 2) }"}))
    assert b'event: next\ndata: {"data":{"numbers":0},"extensions":{"eventId":"0"}}\nid: 0\n\n' in (
        sink.data
    )
    assert sink.events()[-1] == {"event": "complete", "data": ""}
    plain = await stream_all(app, request(body={"query": "subscription { plain(to: 2) }"}))
    assert b"id:" not in plain.data


def test_D05_the_framings_write_the_id_line_and_refuse_one_that_would_break_it() -> None:
    payload = b'{"data":1}'
    assert (
        SSEDistinct().next("", payload, "e1") == b"event: next\ndata: " + payload + b"\nid: e1\n\n"
    )
    assert SSEDistinct().next("", payload) == b"event: next\ndata: " + payload + b"\n\n"
    assert SSESingle().next("op", payload, "\u00e9") == (
        b'event: next\ndata: {"id":"op","payload":' + payload + b"}\nid: \xc3\xa9\n\n"
    )
    for framing in (SSEDistinct(), SSESingle()):
        assert framing.event_ids
        for bad in ("a\nb", "a\rb", "a\0b"):
            with pytest.raises(ValueError, match="line break"):
                framing.envelope("x", bad)
    assert not Multipart().event_ids


# --- D06: shared subscriptions ---------------------------------------------------------


@PROTOCOLS
async def test_D06_shared_payloads_carry_the_id_and_a_resuming_subscriber_runs_privately(
    subprotocol: str,
) -> None:
    app, seen = make_app()
    start, next_type, _ = ws_frames(subprotocol)
    async with TestClient(app) as client, client.websocket(subprotocol=subprotocol) as ws:
        await ws.send_json(
            {"id": "a", "type": start, "payload": {"query": "subscription { ticks }"}}
        )
        await ws.send_json(
            {"id": "b", "type": start, "payload": {"query": "subscription { ticks }"}}
        )
        resume = {"query": "subscription { ticks }", "extensions": {"lastEventId": "t41"}}
        await ws.send_json({"id": "r", "type": start, "payload": resume})
        firsts: dict[str, dict[str, Any]] = {}
        with anyio.fail_after(10):
            while len(firsts) < 3:
                message = await ws.receive_json()
                if message["type"] == next_type:
                    firsts.setdefault(message["id"], message["payload"])
        for id in ("a", "b", "r"):
            stop = {"id": id, "type": "stop" if subprotocol == "graphql-ws" else "complete"}
            await ws.send_json(stop)
    assert seen["hubs"] == 2  # one hub for a and b, one private source for r
    assert sorted(seen["ticks"], key=str) == [None, "t41"]
    assert firsts["r"] == {"data": {"ticks": 42}, "extensions": {"eventId": "t42"}}
    for id in ("a", "b"):
        n = firsts[id]["data"]["ticks"]
        assert firsts[id] == {"data": {"ticks": n}, "extensions": {"eventId": f"t{n}"}}


async def test_D06_shared_sse_subscribers_get_the_id_line_and_the_resuming_one_is_private() -> None:
    app, seen = make_app()
    async with app.running():
        streams = [
            await app.handle_http(request(body={"query": "subscription { ticks }"})),
            await app.handle_http(request(body={"query": "subscription { ticks }"})),
            await app.handle_http(
                request(
                    body={"query": "subscription { ticks }"}, headers=(("last-event-id", "t7"),)
                )
            ),
        ]
        sinks = [Sink() for _ in streams]
        async with anyio.create_task_group() as tasks:
            for stream, sink in zip(streams, sinks, strict=True):
                assert isinstance(stream, HTTPStream)
                tasks.start_soon(stream.body, sink)
            with anyio.fail_after(10):
                for sink in sinks:
                    await sink.wait_for(b"\nid: t")
            tasks.cancel_scope.cancel()
    assert seen["hubs"] == 2
    assert sorted(seen["ticks"], key=str) == [None, "t7"]
    for sink in sinks:
        event = next(e for e in sink.events() if e["event"] == "next")
        payload = json.loads(event["data"])
        assert event["id"] == payload["extensions"]["eventId"] == f"t{payload['data']['ticks']}"
    assert json.loads(sinks[2].events()[0]["data"])["data"]["ticks"] == 8


async def test_D06_a_resuming_subscriber_of_a_shared_field_gets_backpressure() -> None:
    from anyql.streams import policy_for

    app, _ = make_app()
    shared = app.engine.prepare(anyql.OperationRequest("subscription { ticks }"))
    resuming = app.engine.prepare(
        anyql.OperationRequest("subscription { ticks }", extensions={"lastEventId": "t1"})
    )
    assert app.engine.share_key(shared) is not None
    assert app.engine.share_key(resuming) is None  # runs privately
    assert policy_for(app, shared) == "close"
    assert policy_for(app, resuming) == "block"


# --- D07: ResumeError reaches the client -----------------------------------------------


@PROTOCOLS
@pytest.mark.parametrize("field", ["expired", "refused"])
async def test_D07_a_resume_error_reaches_websocket_clients_unmasked(
    subprotocol: str, field: str
) -> None:
    app, _ = make_app(mask_errors=True)
    async with TestClient(app) as client:
        payload = {"query": f"subscription {{ {field} }}", "extensions": {"lastEventId": "5"}}
        messages = await ws_run(client, subprotocol, payload)
        broken = await ws_run(client, subprotocol, {"query": "subscription { broken }"})
    last = messages[-1]
    assert last["type"] == "error"
    errors = last["payload"] if isinstance(last["payload"], list) else [last["payload"]]
    code = "RESUME_POINT_EXPIRED" if field == "expired" else "RESUME_POINT_INVALID"
    message = "events after 5 are gone" if field == "expired" else "not an id of this stream"
    assert errors[0]["message"] == message
    assert errors[0]["extensions"] == {"code": code}
    # any other source error is still masked
    other = broken[-1]["payload"]
    other = other if isinstance(other, list) else [other]
    assert other[0]["message"] == "Internal server error"


async def test_D07_a_resume_error_reaches_sse_and_multipart_clients_unmasked() -> None:
    app, _ = make_app(mask_errors=True)
    body = {"query": "subscription { expired }", "extensions": {"lastEventId": "5"}}
    sink = await stream_all(app, request(body=body))
    events = sink.events()
    assert events[-1]["event"] == "complete"
    error = json.loads(events[0]["data"])["errors"][0]
    assert error["message"] == "events after 5 are gone"
    assert error["extensions"] == {"code": "RESUME_POINT_EXPIRED"}
    multipart = await stream_all(app, request(body=body, accept=APOLLO))
    assert b'"extensions":{"code":"RESUME_POINT_EXPIRED"}' in multipart.data
