"""anyql.testing.TestClient, proved against the examples, on asyncio and on Trio.

In process (the native transport over in-memory streams, inside ``app.running()``) and
against a real native server on a TCP port (``TestClient.connect``); both subprotocols;
from anyio's pytest plugin, an async fixture, and plain ``trio.run`` / ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
import trio

from anyql import GraphQL, Limits, Schema, serve
from anyql.testing import (
    ResponseError,
    TestClient,
    WebSocketClosed,
    WebSocketRejected,
)
from examples import auth, chat, counter

GTWS = "graphql-transport-ws"
LEGACY = "graphql-ws"
BOTH = pytest.mark.parametrize("subprotocol", [GTWS, LEGACY])
COUNT_3 = "subscription { count(target: 3, delayMs: 1) }"
COUNTED = [{"data": {"count": n}} for n in range(3)]


class Released:
    """A subscription whose generator records that its ``finally`` ran."""

    def __init__(self, **settings: Any) -> None:
        schema = Schema(
            """
            type Query { ok: Boolean! }
            type Subscription { forever: Int! }
            """
        )
        self.started = 0
        self.released = 0
        self.released_event: anyio.Event | None = None
        schema.field("Query.ok")(lambda root, info: True)
        schema.field("Subscription.forever")(self.forever)
        self.app = GraphQL(schema, **settings)

    async def forever(self, root: Any, info: Any) -> AsyncIterator[int]:
        self.started += 1
        try:
            yield 0
            await anyio.sleep_forever()
        finally:
            self.released += 1
            if self.released_event is not None:
                self.released_event.set()


# --- HTTP ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_query_over_http_with_variables_and_operation_name() -> None:
    document = "query A($n: String) { hello(name: $n) } query B { hello }"
    async with TestClient(counter.app) as client:
        assert await client.query("{ hello }") == {"data": {"hello": "Hello world"}}
        assert await client.query(document, {"n": "ann"}, "A") == {"data": {"hello": "Hello ann"}}
        got = await client.query(document, {"n": "bob"}, "A", method="GET")
        assert got == {"data": {"hello": "Hello bob"}}


@pytest.mark.anyio
async def test_an_invalid_query_over_http_returns_the_errors() -> None:
    async with TestClient(counter.app) as client:
        result = await client.query("{ nope }")
    assert "data" not in result
    assert "Cannot query field 'nope'" in result["errors"][0]["message"]


@pytest.mark.anyio
async def test_a_mutation_over_get_raises_response_error_405() -> None:
    mutation = 'mutation { sendChatMessage(room: "r", user: "u", message: "m") }'
    async with TestClient(chat.app) as client:
        with pytest.raises(ResponseError) as caught:
            await client.query(mutation, method="GET")
    assert caught.value.response.status == 405


@pytest.mark.anyio
async def test_raw_request_returns_the_whole_response() -> None:
    async with TestClient(counter.app) as client:
        page = await client.request("GET", headers={"accept": "text/html"})
        posted = await client.request(
            "POST",
            "/graphql",
            headers={"content-type": "application/json"},
            body=b'{"query": "{ hello }"}',
        )
    assert page.status == 200
    assert page.header("Content-Type") == "text/html; charset=utf-8"
    assert "<html" in page.text.lower()
    assert posted.json() == {"data": {"hello": "Hello world"}}


@pytest.mark.anyio
async def test_http_authenticates_with_the_default_headers_of_the_client() -> None:
    async with TestClient(auth.app, headers={"authorization": "Bearer bob-token"}) as client:
        assert await client.query("{ me { name } }") == {"data": {"me": {"name": "bob"}}}
        anonymous = await client.query("{ me { name } }", headers={"authorization": "Bearer x"})
    assert anonymous == {"data": {"me": None}}


# --- WebSocket -------------------------------------------------------------------


@BOTH
@pytest.mark.anyio
async def test_subscription_yields_every_result_then_completes(subprotocol: str) -> None:
    async with (
        TestClient(counter.app) as client,
        client.websocket(subprotocol=subprotocol) as socket,
    ):
        assert socket.subprotocol == subprotocol
        async with socket.subscribe(COUNT_3) as results:
            assert [result async for result in results] == COUNTED
            assert results.completed


@BOTH
@pytest.mark.anyio
async def test_query_and_errors_over_the_socket(subprotocol: str) -> None:
    async with (
        TestClient(counter.app) as client,
        client.websocket(subprotocol=subprotocol) as socket,
    ):
        assert await socket.query('{ hello(name: "ws") }') == {"data": {"hello": "Hello ws"}}
        invalid = await socket.query("{ nope }")
        async with socket.subscribe("subscription { nope }") as results:
            streamed = [result async for result in results]
    assert "Cannot query field 'nope'" in invalid["errors"][0]["message"]
    assert len(streamed) == 1
    assert "Cannot query field 'nope'" in streamed[0]["errors"][0]["message"]


@BOTH
@pytest.mark.anyio
async def test_chat_mutation_over_http_reaches_a_subscriber(subprotocol: str) -> None:
    join = 'subscription { joinChatRooms(rooms: ["lobby"], user: "ann") { room user text } }'
    send = 'mutation { sendChatMessage(room: "lobby", user: "bob", message: "hi") }'
    async with (
        TestClient(chat.app) as client,
        client.websocket(subprotocol=subprotocol) as socket,
        socket.subscribe(join) as messages,
    ):
        joined = await anext(messages)
        assert joined["data"]["joinChatRooms"]["text"] == "ann joined"
        assert await client.query(send) == {"data": {"sendChatMessage": True}}
        assert await anext(messages) == {
            "data": {"joinChatRooms": {"room": "lobby", "user": "bob", "text": "hi"}}
        }
        assert await socket.query(send) == {"data": {"sendChatMessage": True}}
        assert (await anext(messages))["data"]["joinChatRooms"]["user"] == "bob"


@BOTH
@pytest.mark.anyio
async def test_two_subscriptions_share_one_socket(subprotocol: str) -> None:
    async with (
        TestClient(counter.app) as client,
        client.websocket(subprotocol=subprotocol) as socket,
        socket.subscribe("subscription { count(target: 2, delayMs: 1) }") as first,
        socket.subscribe("subscription { count(target: 3, delayMs: 1) }") as second,
    ):
        assert first.id != second.id
        assert [r async for r in second] == COUNTED
        assert [r async for r in first] == COUNTED[:2]


@BOTH
@pytest.mark.anyio
async def test_leaving_the_subscription_block_completes_it_and_runs_finally(
    subprotocol: str,
) -> None:
    released = Released()
    async with (
        TestClient(released.app) as client,
        client.websocket(subprotocol=subprotocol) as socket,
    ):
        released.released_event = anyio.Event()
        async with socket.subscribe("subscription { forever }") as results:
            assert await anext(results) == {"data": {"forever": 0}}
            assert released.released == 0
        # `complete` (or `stop`) went out; the socket stays open while the server cancels
        with anyio.fail_after(5):
            await released.released_event.wait()
        assert await socket.query("{ ok }") == {"data": {"ok": True}}
    assert released.released == released.started == 1


@BOTH
@pytest.mark.anyio
async def test_leaving_the_socket_block_waits_for_every_cleanup(subprotocol: str) -> None:
    released = Released()
    async with TestClient(released.app) as client:
        async with client.websocket(subprotocol=subprotocol) as socket:
            for id in "abc":  # raw frames: these operations are never completed
                start = "subscribe" if subprotocol == GTWS else "start"
                payload = {"query": "subscription { forever }"}
                await socket.send_json({"id": id, "type": start, "payload": payload})
                assert (await socket.receive_json())["payload"] == {"data": {"forever": 0}}
            assert released.released == 0
        # no wait: the server closes the connection only after the session's cleanup
        assert released.released == 3


@pytest.mark.anyio
async def test_connection_params_reach_on_connect_and_the_ack() -> None:
    async with (
        TestClient(auth.app) as client,
        client.websocket(connection_params={"token": "alice-token"}) as socket,
    ):
        assert socket.ack_payload == {"user": "alice"}
        assert await socket.query("{ me { name roles } }") == {
            "data": {"me": {"name": "alice", "roles": ["admin", "reader"]}}
        }


@pytest.mark.anyio
async def test_a_refused_connection_raises_websocket_closed_4403() -> None:
    async with TestClient(auth.app) as client:
        with pytest.raises(WebSocketClosed) as caught:
            async with client.websocket(connection_params={"token": "wrong"}):
                pass
    assert caught.value.code == 4403


@pytest.mark.anyio
async def test_a_refused_legacy_connection_carries_the_connection_error_payload() -> None:
    async with TestClient(auth.app) as client:
        with pytest.raises(WebSocketClosed) as caught:
            async with client.websocket(subprotocol=LEGACY, connection_params={}):
                pass
    assert caught.value.payload == {"message": "A valid token is required"}
    assert caught.value.code == 1011


@pytest.mark.anyio
async def test_a_refused_handshake_raises_websocket_rejected() -> None:
    async with TestClient(counter.app) as client:
        with pytest.raises(WebSocketRejected) as caught:
            async with client.websocket(headers={"origin": "http://elsewhere.example"}):
                pass
    assert caught.value.response.status == 403


@pytest.mark.anyio
async def test_raw_messages_go_to_the_control_queue() -> None:
    async with (
        TestClient(counter.app) as client,
        client.websocket(init=False) as socket,
    ):
        await socket.send_json({"type": "connection_init"})
        assert await socket.receive_json() == {"type": "connection_ack"}
        await socket.send_json({"type": "ping", "payload": {"n": 1}})
        assert await socket.receive_json() == {"type": "pong", "payload": {"n": 1}}
        await socket.send_text("not json")
        code, _reason = await socket.wait_closed()
        assert code == socket.close_code == 4400
        with pytest.raises(WebSocketClosed):
            await socket.receive_json()


@pytest.mark.anyio
async def test_a_server_shutdown_ends_the_iteration_with_websocket_closed_1001() -> None:
    released = Released()
    async with (
        TestClient(released.app) as client,
        client.websocket() as socket,
        socket.subscribe("subscription { forever }") as results,
    ):
        await anext(results)
        assert released.app.server is not None
        released.app.server.shutdown()
        with pytest.raises(WebSocketClosed) as caught:
            await anext(results)
    assert caught.value.code == 1001
    assert released.released == 1


@BOTH
@pytest.mark.autojump
@pytest.mark.anyio
async def test_pings_and_keep_alives_are_answered_and_hidden(subprotocol: str) -> None:
    released = Released(limits=Limits(keep_alive_interval=0.01, pong_timeout=0.05))
    async with (
        TestClient(released.app) as client,
        client.websocket(subprotocol=subprotocol) as socket,
        socket.subscribe("subscription { forever }") as results,
    ):
        assert await anext(results) == {"data": {"forever": 0}}
        await anyio.sleep(0.2)  # twenty server pings (and legacy `ka`s) come and go
        assert await socket.query("{ ok }") == {"data": {"ok": True}}
        start = "subscribe" if subprotocol == GTWS else "start"
        await socket.send_json({"id": "raw", "type": start, "payload": {"query": "{ ok }"}})
        assert (await socket.receive_json())["id"] == "raw"  # no `ka` in the control queue


# --- the client's own contract ---------------------------------------------------


@pytest.mark.anyio
async def test_the_app_runs_inside_the_client_only() -> None:
    assert counter.app.server is None
    async with TestClient(counter.app):
        assert counter.app.server is not None
    assert counter.app.server is None


@pytest.mark.anyio
async def test_an_app_already_running_is_shared_not_entered_again() -> None:
    async with counter.app.running() as handle:
        async with TestClient(counter.app) as client:
            assert counter.app.server is handle
            assert await client.query("{ hello }") == {"data": {"hello": "Hello world"}}
        assert counter.app.server is handle


@pytest.mark.anyio
async def test_an_exception_from_the_body_comes_out_unwrapped() -> None:
    with pytest.raises(KeyError):
        async with TestClient(counter.app) as client:
            await client.query("{ hello }")
            raise KeyError("mine")


@pytest.mark.anyio
async def test_the_client_needs_async_with() -> None:
    client = TestClient(counter.app)
    with pytest.raises(RuntimeError, match="async with"):
        await client.query("{ hello }")


def test_connect_refuses_urls_it_cannot_serve() -> None:
    with pytest.raises(ValueError, match="http:// or ws://"):
        TestClient.connect("https://example.com/graphql")


@pytest.fixture
async def client() -> AsyncIterator[TestClient]:
    async with TestClient(counter.app) as client:
        yield client


@pytest.mark.anyio
async def test_works_as_an_async_fixture(client: TestClient) -> None:
    assert await client.query("{ hello }") == {"data": {"hello": "Hello world"}}
    async with client.websocket() as socket, socket.subscribe(COUNT_3) as results:
        assert [result async for result in results] == COUNTED


async def _scenario() -> list[Any]:
    async with TestClient(counter.app) as client:
        seen: list[Any] = [await client.query("{ hello }")]
        for subprotocol in (GTWS, LEGACY):
            async with (
                client.websocket(subprotocol=subprotocol) as socket,
                socket.subscribe(COUNT_3) as results,
            ):
                seen.extend([result async for result in results])
    return seen


EXPECTED = [{"data": {"hello": "Hello world"}}, *COUNTED, *COUNTED]


def test_works_from_plain_trio_run() -> None:
    assert trio.run(_scenario) == EXPECTED


def test_works_from_plain_asyncio_run() -> None:
    assert asyncio.run(_scenario()) == EXPECTED


# --- connect(url): a real native server on a TCP port ----------------------------


@BOTH
@pytest.mark.anyio
async def test_connect_drives_a_real_native_server(subprotocol: str) -> None:
    async with anyio.create_task_group() as tg:
        port = await tg.start(lambda task_status: serve(auth.app, port=0, task_status=task_status))
        url = f"http://127.0.0.1:{port}/graphql"
        async with TestClient.connect(url, headers={"authorization": "Bearer bob-token"}) as client:
            assert await client.query("{ me { name } }") == {"data": {"me": {"name": "bob"}}}
            async with client.websocket(
                subprotocol=subprotocol, connection_params={"token": "alice-token"}
            ) as socket:
                assert socket.ack_payload == {"user": "alice"}
                assert await socket.query("{ me { name } }") == {"data": {"me": {"name": "alice"}}}
            with pytest.raises(WebSocketClosed):
                async with client.websocket(subprotocol=subprotocol, connection_params={}):
                    pass
        tg.cancel_scope.cancel()


@BOTH
@pytest.mark.anyio
async def test_connect_subscribes_and_completes_on_a_real_server(subprotocol: str) -> None:
    released = Released()
    async with anyio.create_task_group() as tg:
        port = await tg.start(
            lambda task_status: serve(released.app, port=0, task_status=task_status)
        )
        async with TestClient.connect(f"ws://127.0.0.1:{port}/graphql") as client:
            async with (
                client.websocket(subprotocol=subprotocol) as socket,
                socket.subscribe("subscription { forever }") as results,
            ):
                assert await anext(results) == {"data": {"forever": 0}}
            assert released.released == 1  # the server closed TCP after the cleanup
        tg.cancel_scope.cancel()


def test_the_old_names_of_the_result_and_stream_classes_still_work_with_a_warning() -> None:
    import anyql.broadcast
    import anyql.testing

    with pytest.warns(DeprecationWarning, match="now anyql.testing.OperationResults"):
        assert anyql.testing.Subscription is anyql.testing.OperationResults
    with pytest.warns(DeprecationWarning, match="now anyql.broadcast.ChannelSubscription"):
        assert anyql.broadcast.Subscription is anyql.broadcast.ChannelSubscription
