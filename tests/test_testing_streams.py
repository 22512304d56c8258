"""anyql.testing.TestClient over plain HTTP streams, on asyncio and on Trio: GraphQL over SSE
(graphql-sse, distinct connections and single connection modes) and Apollo's multipart
subscriptions.

Results, where errors land (a ``next`` result, a plain JSON answer, a transport error),
that leaving a block cancels the server's operation and runs the resolver's ``finally``,
keep-alives, the drain's endings, and the client's SSE and multipart parsers on their own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from graphql import GraphQLError

from anyql import GraphQL, HTTPError, Limits, Schema, serve
from anyql.app import ServerHandle
from anyql.testing import ResponseError, StreamInterrupted, TestClient
from anyql.testing._streams import (
    MultipartParser,
    MultipartPart,
    SSEComment,
    SSEEvent,
    SSEParser,
    SSERetry,
)

pytestmark = pytest.mark.anyio

COUNT_3 = "subscription { count(target: 3) }"
COUNTED = [{"data": {"count": n}} for n in range(3)]
SHUTTING_DOWN = [{"message": "Server is shutting down"}]


class Streamed:
    """An app whose subscriptions record when their ``finally`` ran, and that authenticates
    with a header when ``password`` is set."""

    def __init__(self, password: str | None = None, **settings: Any) -> None:
        schema = Schema(
            """
            type Query { ok: Boolean! }
            type Mutation { touch: Boolean! }
            type Subscription {
              count(target: Int!): Int!
              forever: Int!
              idle: Int!
              broken: Int!
              whoami: String!
            }
            """
        )
        self.started = 0
        self.released = 0
        self.password = password
        schema.field("Query.ok")(lambda root, info: True)
        schema.field("Mutation.touch")(lambda root, info: True)
        schema.field("Subscription.count")(self.count)
        schema.field("Subscription.forever")(self.forever)
        schema.field("Subscription.idle")(self.idle)
        schema.field("Subscription.broken")(self.broken)
        schema.field("Subscription.whoami")(self.whoami)
        self.app = GraphQL(schema, context=self.context, **settings)

    def context(self, default: Any) -> Any:
        if self.password is not None:
            if default.request.header("authorization") != f"Bearer {self.password}":
                raise HTTPError(401, "Unauthorized", (("www-authenticate", "Bearer"),))
            default.state["user"] = "ann"
        return default

    async def count(self, root: Any, info: Any, target: int) -> AsyncIterator[int]:
        for value in range(target):
            yield value

    async def forever(self, root: Any, info: Any) -> AsyncIterator[int]:
        """Two results at once (a multipart part is whole once the next one begins), then
        nothing until cancelled."""
        self.started += 1
        try:
            yield 0
            yield 1
            await anyio.sleep_forever()
        finally:
            self.released += 1

    async def idle(self, root: Any, info: Any) -> AsyncIterator[int]:
        self.started += 1
        try:
            await anyio.sleep_forever()
            yield 0  # pragma: no cover
        finally:
            self.released += 1

    async def broken(self, root: Any, info: Any) -> AsyncIterator[int]:
        raise GraphQLError("No such room")
        yield 0  # pragma: no cover

    async def whoami(self, root: Any, info: Any) -> AsyncIterator[str]:
        yield info.context.state["user"]


# --- GraphQL over SSE, distinct connections mode ----------------------------------


@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_sse_yields_every_result_then_completes(method: Any) -> None:
    streamed = Streamed()
    async with (
        TestClient(streamed.app) as client,
        client.subscribe_sse(COUNT_3, method=method) as results,
    ):
        assert [result async for result in results] == COUNTED
        assert results.completed
        assert results.response.status == 200
        assert results.response.header("content-type") == "text/event-stream; charset=utf-8"
        assert results.response.header("x-accel-buffering") == "no"


async def test_sse_variables_and_operation_name_reach_the_server() -> None:
    document = "subscription A($n: Int!) { count(target: $n) } subscription B { forever }"
    async with (
        TestClient(Streamed().app) as client,
        client.subscribe_sse(document, {"n": 2}, "A") as results,
    ):
        assert [result async for result in results] == COUNTED[:2]


async def test_sse_validation_errors_arrive_as_a_next_event_on_an_accepted_stream() -> None:
    async with (
        TestClient(Streamed().app) as client,
        client.subscribe_sse("subscription { nope }") as results,
    ):
        [result] = [result async for result in results]
        assert results.response.status == 200  # graphql-sse: never a 400 for an EventSource
    assert "data" not in result
    assert "Cannot query field 'nope'" in result["errors"][0]["message"]
    assert results.completed


async def test_sse_a_source_that_fails_to_start_is_a_next_with_errors() -> None:
    async with (
        TestClient(Streamed().app) as client,
        client.subscribe_sse("subscription { broken }") as results,
    ):
        assert [result async for result in results] == [{"errors": [{"message": "No such room"}]}]
        assert results.completed


async def test_sse_leaving_the_block_cancels_the_operation_and_runs_its_finally() -> None:
    streamed = Streamed()
    async with TestClient(streamed.app) as client:
        async with client.subscribe_sse("subscription { forever }") as results:
            assert await anext(results) == {"data": {"forever": 0}}
            assert streamed.released == 0
        # leaving closed the connection and waited for the server to close its end
        assert streamed.released == 1
        assert not results.completed


async def test_sse_breaking_out_of_the_loop_leaves_the_block_too() -> None:
    streamed = Streamed()
    async with TestClient(streamed.app) as client:
        async with client.subscribe_sse("subscription { forever }") as results:
            async for result in results:
                assert result == {"data": {"forever": 0}}
                break
        assert (streamed.started, streamed.released) == (1, 1)


async def test_sse_a_refusal_before_the_stream_raises_response_error() -> None:
    async with TestClient(Streamed().app) as client:
        with pytest.raises(ResponseError) as refused:
            async with client.subscribe_sse("mutation { touch }", method="GET"):
                pass  # pragma: no cover
    assert refused.value.response.status == 405


# --- authentication: the context factory, from the request's headers -------------


async def test_streams_authenticate_with_the_context_factory() -> None:
    streamed = Streamed(password="secret")
    good = {"authorization": "Bearer secret"}
    async with TestClient(streamed.app) as client:
        with pytest.raises(ResponseError) as sse:
            async with client.subscribe_sse("subscription { whoami }"):
                pass  # pragma: no cover
        with pytest.raises(ResponseError) as multipart:
            async with client.subscribe_multipart("subscription { whoami }"):
                pass  # pragma: no cover
        with pytest.raises(ResponseError) as single:
            async with client.event_stream():
                pass  # pragma: no cover
        async with client.subscribe_sse("subscription { whoami }", headers=good) as results:
            assert [result async for result in results] == [{"data": {"whoami": "ann"}}]
        async with client.subscribe_multipart("subscription { whoami }", headers=good) as results:
            assert [result async for result in results] == [{"data": {"whoami": "ann"}}]
        async with (
            client.event_stream(headers=good) as stream,
            stream.subscribe("subscription { whoami }") as results,
        ):
            assert [result async for result in results] == [{"data": {"whoami": "ann"}}]
    for refusal in (sse, multipart, single):
        assert refusal.value.response.status == 401
        assert refusal.value.response.header("www-authenticate") == "Bearer"


# --- multipart subscriptions ------------------------------------------------------


async def test_multipart_yields_every_payload_then_the_closing_delimiter_ends_it() -> None:
    async with (
        TestClient(Streamed().app) as client,
        client.subscribe_multipart(COUNT_3) as results,
    ):
        assert [result async for result in results] == COUNTED
        assert results.completed
        content_type = results.response.header("content-type") or ""
        assert content_type.startswith("multipart/mixed")
        assert 'boundary="graphql"' in content_type


async def test_multipart_a_source_that_fails_to_start_is_a_payload_with_errors() -> None:
    async with (
        TestClient(Streamed().app) as client,
        client.subscribe_multipart("subscription { broken }") as results,
    ):
        assert [result async for result in results] == [{"errors": [{"message": "No such room"}]}]
        assert results.completed


async def test_multipart_validation_errors_and_queries_are_plain_json_answers() -> None:
    """Apollo Client's Accept names application/json too: what is not a subscription is
    answered as GraphQL over HTTP answers it, and yielded as the one result."""
    async with TestClient(Streamed().app) as client:
        async with client.subscribe_multipart("subscription { nope }") as results:
            [result] = [result async for result in results]
            assert results.completed
            assert results.response.header("content-type") == "application/json; charset=utf-8"
            assert results.keep_alives == 0
        assert "Cannot query field 'nope'" in result["errors"][0]["message"]
        async with client.subscribe_multipart("{ ok }") as results:
            assert [result async for result in results] == [{"data": {"ok": True}}]


async def test_multipart_leaving_the_block_cancels_the_operation_and_runs_its_finally() -> None:
    streamed = Streamed()
    async with TestClient(streamed.app) as client:
        async with client.subscribe_multipart("subscription { forever }") as results:
            assert await anext(results) == {"data": {"forever": 0}}
        assert streamed.released == 1
        assert not results.completed


@pytest.mark.parametrize("anyio_backend", ["trio"])
@pytest.mark.autojump
async def test_multipart_a_lone_result_arrives_before_the_next_heartbeat() -> None:
    """A part is whole only once the delimiter after it arrives (Apollo Client reads it
    so): the server must send that delimiter with the part, not with the next one. Trio
    only: its clock jumps over the 15 s a lost result would wait for the heartbeat."""
    schema = Schema("type Query { ok: Boolean } type Subscription { once: Int! }")

    @schema.field("Subscription.once")
    async def once(root: Any, info: Any) -> AsyncIterator[int]:
        yield 0
        await anyio.sleep_forever()

    async with (
        TestClient(GraphQL(schema)) as client,
        client.subscribe_multipart("subscription { once }") as results,
    ):
        with anyio.fail_after(1):  # the heartbeat comes after 15 s (virtual time)
            assert await anext(results) == {"data": {"once": 0}}


# --- keep-alives ------------------------------------------------------------------


@pytest.mark.autojump
async def test_idle_streams_carry_keep_alives_and_stay_open() -> None:
    streamed = Streamed(limits=Limits(stream_keep_alive_interval=0.01))
    async with TestClient(streamed.app) as client:
        async with client.subscribe_sse("subscription { idle }") as sse:
            await sse.wait_keep_alives(3)  # the opening comment, then two while idle
            assert not sse.completed
        async with client.subscribe_multipart("subscription { idle }") as multipart:
            await multipart.wait_keep_alives(2)
            assert not multipart.completed
        async with client.event_stream() as stream, stream.subscribe("subscription { idle }"):
            await stream.wait_keep_alives(3)
    assert (streamed.started, streamed.released) == (3, 3)


async def test_waiting_for_keep_alives_on_a_stream_that_ends_raises() -> None:
    async with TestClient(Streamed().app) as client, client.subscribe_sse(COUNT_3) as results:
        with pytest.raises(StreamInterrupted, match="ended after 1 keep-alive"):
            await results.wait_keep_alives(2)
        assert [result async for result in results] == COUNTED


# --- the drain ----------------------------------------------------------------------


async def test_a_drain_ends_sse_with_a_retry_hint_and_multipart_with_a_transport_error() -> None:
    streamed = Streamed()
    async with TestClient(streamed.app) as client:
        async with (
            client.subscribe_sse("subscription { forever }") as sse,
            client.subscribe_multipart("subscription { forever }") as multipart,
        ):
            assert await anext(sse) == {"data": {"forever": 0}}
            assert await anext(multipart) == {"data": {"forever": 0}}
            await server_of(streamed).drain(delay=0, window=0)
            with pytest.raises(StreamInterrupted) as sse_ended:
                async for result in sse:  # what was sent before the drain, if anything
                    assert result == {"data": {"forever": 1}}
            with pytest.raises(StreamInterrupted) as multipart_ended:
                async for _ in multipart:
                    pass
            assert not sse.completed and not multipart.completed
        assert streamed.released == 2
        # while draining, a new SSE request gets only a retry hint; multipart a 503
        async with client.subscribe_sse("subscription { forever }") as late:
            with pytest.raises(StreamInterrupted) as late_ended:
                await anext(late)
        with pytest.raises(ResponseError) as refused:
            async with client.subscribe_multipart("subscription { forever }"):
                pass  # pragma: no cover
    for ended in (sse_ended, late_ended):
        assert ended.value.retry is not None and 500 <= ended.value.retry <= 3000
        assert ended.value.errors == []
    assert multipart_ended.value.errors == SHUTTING_DOWN
    assert multipart_ended.value.retry is None
    assert refused.value.response.status == 503
    assert streamed.started == 2  # the late SSE request ran nothing


def server_of(streamed: Streamed) -> ServerHandle:
    server = streamed.app.server
    assert server is not None
    return server


# --- single connection mode ---------------------------------------------------------


async def test_single_connection_runs_queries_and_subscriptions_on_one_stream() -> None:
    async with TestClient(Streamed().app) as client, client.event_stream() as stream:
        assert stream.token
        assert stream.response.header("content-type") == "text/event-stream; charset=utf-8"
        assert await stream.query("{ ok }") == {"data": {"ok": True}}
        async with (
            stream.subscribe(COUNT_3) as first,
            stream.subscribe("subscription { count(target: 2) }") as second,
        ):
            assert (first.id, second.id) == ("2", "3")
            assert [result async for result in second] == COUNTED[:2]
            assert [result async for result in first] == COUNTED
            assert first.completed and second.completed


async def test_single_connection_errors_are_the_answer_to_the_operation_request() -> None:
    """Validation errors are answered as GraphQL over HTTP answers them, not on the
    stream; a source that fails is a result on the stream."""
    async with TestClient(Streamed().app) as client, client.event_stream() as stream:
        invalid = await stream.query("{ nope }")
        assert "Cannot query field 'nope'" in invalid["errors"][0]["message"]
        async with stream.subscribe("subscription { broken }") as results:
            assert [result async for result in results] == [
                {"errors": [{"message": "No such room"}]}
            ]


async def test_single_connection_leaving_an_operation_stops_it_leaving_the_stream_waits() -> None:
    streamed = Streamed()
    async with TestClient(streamed.app) as client:
        async with client.event_stream() as stream:
            async with stream.subscribe("subscription { forever }") as results:
                assert await anext(results) == {"data": {"forever": 0}}
            # the DELETE was answered: the server cancelled the operation; the stream
            # goes on and carries other operations
            assert await stream.query("{ ok }") == {"data": {"ok": True}}
            async with stream.subscribe("subscription { forever }") as again:
                assert await anext(again) == {"data": {"forever": 0}}
        # leaving the stream's block waited for the server to end it: every cleanup ran
        assert (streamed.started, streamed.released) == (2, 2)


async def test_single_connection_reservations_are_limited_per_client() -> None:
    streamed = Streamed(limits=Limits(max_stream_reservations_per_client=1))
    async with TestClient(streamed.app) as client, client.event_stream():
        with pytest.raises(ResponseError) as refused:
            async with client.event_stream():
                pass  # pragma: no cover
    assert refused.value.response.status == 429


async def test_single_connection_a_drain_interrupts_every_operation_with_a_retry_hint() -> None:
    streamed = Streamed()
    async with TestClient(streamed.app) as client, client.event_stream() as stream:
        async with stream.subscribe("subscription { forever }") as results:
            assert await anext(results) == {"data": {"forever": 0}}
            await server_of(streamed).drain(delay=0, window=0)
            with pytest.raises(StreamInterrupted) as ended:
                async for _ in results:
                    pass
        assert ended.value.retry is not None and 500 <= ended.value.retry <= 3000
        assert stream.retry == ended.value.retry
        with pytest.raises(StreamInterrupted):
            async with stream.subscribe("{ ok }"):
                pass  # pragma: no cover
    assert streamed.released == 1


# --- a real server over TCP -----------------------------------------------------------


async def test_connect_streams_from_a_real_native_server() -> None:
    streamed = Streamed()
    async with anyio.create_task_group() as tg:
        port = await tg.start(
            lambda task_status: serve(streamed.app, port=0, task_status=task_status)
        )
        async with TestClient.connect(f"http://127.0.0.1:{port}/graphql") as client:
            async with client.subscribe_sse(COUNT_3) as results:
                assert [result async for result in results] == COUNTED
            async with client.subscribe_multipart("subscription { forever }") as results:
                assert await anext(results) == {"data": {"forever": 0}}
            assert streamed.released == 1  # the server closed TCP after the cleanup
            async with client.event_stream() as stream:
                assert await stream.query("{ ok }") == {"data": {"ok": True}}
        tg.cancel_scope.cancel()


# --- the parsers ------------------------------------------------------------------


def fed_in_pieces(parser: Any, data: bytes) -> list[Any]:
    """What ``parser`` makes of ``data`` fed one byte at a time, and fed at once."""
    piecewise = parser()
    items = [item for i in range(len(data)) for item in piecewise.feed(data[i : i + 1])]
    assert items == parser().feed(data)
    return items


def test_sse_parser_reads_events_comments_and_retry_across_any_line_ending() -> None:
    data = (
        b"\xef\xbb\xbf:\n\n"
        b'event: next\r\ndata: {"a":\r\ndata: 1}\r\n\r\n'
        b"retry: 1500\r"
        b"\r"
        b"data:plain\n\n"
        b"event: complete\n\n"  # no data: EventSource dispatches nothing
        b"event: complete\ndata: \n\n"
        b"id: 7\nretry: soon\n\n"
    )
    assert fed_in_pieces(SSEParser, data) == [
        SSEComment(""),
        SSEEvent("next", '{"a":\n1}'),
        SSERetry(1500),
        SSEEvent("message", "plain"),
        SSEEvent("complete", ""),
    ]


def test_multipart_parser_reads_both_framings_in_any_pieces() -> None:
    head = b"content-type: application/json\r\n\r\n"
    # the delimiter comes before each part: a part is whole when the next one begins
    leading = b"\r\n--graphql\r\n" + head + b"{}" + b"\r\n--graphql\r\n" + head + b'{"x":1}'
    leading += b"\r\n--graphql--\r\n"
    # the delimiter comes right after each part
    trailing = b"--graphql\r\n" + head + b"{}\r\n--graphql\r\n" + head + b'{"x":1}\r\n--graphql--'
    for body in (leading, trailing, b"a preamble\r\n" + trailing):
        parts = fed_in_pieces(lambda: MultipartParser("graphql"), body)
        assert parts == [
            MultipartPart({"content-type": "application/json"}, b"{}"),
            MultipartPart({"content-type": "application/json"}, b'{"x":1}'),
            None,
        ]


def test_multipart_parser_hands_a_part_over_once_the_delimiter_after_it_arrives() -> None:
    parser = MultipartParser("graphql")
    assert parser.feed(b"\r\n--graphql\r\n\r\n{}") == []
    assert parser.feed(b"\r\n--gra") == []
    assert parser.feed(b"phql") == [MultipartPart({}, b"{}")]
    assert parser.feed(b"-") == []  # the closing delimiter, or a transport padding?
    assert parser.feed(b"-") == [None]
    assert parser.closed
    assert parser.feed(b"\r\nepilogue") == []
