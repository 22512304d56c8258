"""Draining without a reconnect storm (``ServerHandle.drain``, ``Settings.readiness_path``).

The readiness path answers 503 from the start of a drain while requests are still served;
new WebSocket upgrades get 503; the live sessions are closed with 1001 one by one, each in
its own slot of the window; the native server shuts down after a drain started by the app's
own code and its listener answers the readiness probe throughout.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from functools import partial
from typing import Any

import anyio
import pytest

from anyql import GraphQL, Limits, Schema
from anyql.errors import WebSocketClosed, WebSocketRejected
from anyql.testing import TestClient
from anyql.transports.native import serve

pytestmark = pytest.mark.anyio

SDL = "type Query { ok: Boolean }  type Subscription { forever: Int }"


def make_app(**settings: Any) -> GraphQL:
    schema = Schema(SDL)
    schema.field("Query.ok")(lambda root, info: True)

    @schema.field("Subscription.forever")
    async def forever(root: Any, info: Any) -> AsyncIterator[int]:
        yield 1
        await anyio.sleep_forever()

    return GraphQL(schema, **settings)


async def test_readiness_answers_200_then_503_once_a_drain_begins() -> None:
    app = make_app(readiness_path="/ready")
    async with TestClient(app) as client:
        ready = await client.request("GET", "/ready")
        assert (ready.status, ready.json()) == (200, {"status": "ready"})
        assert app.server is not None
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(partial(app.server.drain, delay=3600, window=0))
            await anyio.wait_all_tasks_blocked()
            draining = await client.request("GET", "/ready")
            assert draining.status == 503
            assert draining.header("retry-after") == "5"
            # requests are still answered while the load balancer stops routing here
            assert (await client.query("{ ok }"))["data"] == {"ok": True}
            with pytest.raises(WebSocketRejected) as refused:
                async with client.websocket():
                    pass  # pragma: no cover
            assert refused.value.response.status == 503
            tasks.cancel_scope.cancel()


async def test_without_a_readiness_path_the_path_is_an_ordinary_404() -> None:
    app = make_app(path="/graphql")
    async with TestClient(app) as client:
        assert (await client.request("GET", "/ready")).status == 404


def test_a_readiness_path_must_be_a_path() -> None:
    with pytest.raises(ValueError, match="readiness_path"):
        make_app(readiness_path="ready")


@pytest.mark.autojump
async def test_R06_sessions_close_1001_each_in_its_own_slot_of_the_window() -> None:
    app = make_app()
    count, delay, window = 6, 2.0, 12.0
    closed_at: list[float] = []
    async with TestClient(app) as client, AsyncExitStack() as stack:
        subscriptions = []
        for _ in range(count):
            socket = await stack.enter_async_context(client.websocket())
            results = await stack.enter_async_context(socket.subscribe("subscription { forever }"))
            await anext(results)
            subscriptions.append(results)

        async def record_close(results: Any) -> None:
            with pytest.raises(WebSocketClosed) as caught:
                await anext(results)
            assert caught.value.code == 1001
            closed_at.append(anyio.current_time())

        assert app.server is not None
        started = anyio.current_time()
        async with anyio.create_task_group() as tasks:
            for results in subscriptions:
                tasks.start_soon(record_close, results)
            await app.server.drain(delay=delay, window=window)
    assert len(closed_at) == count
    slot = window / count
    for index, at in enumerate(sorted(closed_at)):
        offset = at - started - delay
        assert index * slot <= offset <= (index + 1) * slot + 0.5


async def test_a_second_drain_call_waits_for_the_first() -> None:
    app = make_app()
    async with TestClient(app):
        assert app.server is not None
        server = app.server
        finished: dict[str, float] = {}
        started = anyio.current_time()

        async def drain(name: str, **times: float) -> None:
            await server.drain(**times)
            finished[name] = anyio.current_time() - started

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(partial(drain, "first", delay=0.05, window=0))
            await anyio.wait_all_tasks_blocked()
            tasks.start_soon(partial(drain, "second", delay=0, window=0))
        # the second call's own times were ignored: it returned with the first drain
        assert finished["second"] >= 0.05
        assert finished["first"] >= 0.05


async def test_a_drain_started_by_the_app_shuts_the_native_server_down() -> None:
    """Also: from the drain's first moment answers close their keep-alive connections, so a
    client's next request goes out on a new one (it used to race the idle one's close)."""
    app = make_app(readiness_path="/ready", limits=Limits(drain_delay=1.0))
    stopped = anyio.Event()

    async def run_server(*, task_status: anyio.abc.TaskStatus[int]) -> None:
        await serve(app, port=0, task_status=task_status)
        stopped.set()

    async with anyio.create_task_group() as tasks:
        port = await tasks.start(run_server)
        client = TestClient.connect(f"http://127.0.0.1:{port}/graphql")
        async with client:
            assert (await client.request("GET", "/ready")).status == 200
            assert (await client.request("GET", "/ready")).header("connection") is None
            assert app.server is not None
            tasks.start_soon(app.server.drain)
            await anyio.wait_all_tasks_blocked()
            # the listener is still open during the delay, and says it is draining
            ready = await client.request("GET", "/ready")
            assert ready.status == 503 and ready.header("connection") == "close"
        with anyio.fail_after(10):
            await stopped.wait()


async def test_a_hypercorn_shutdown_trigger_can_drain_first(
    anyio_backend: tuple[str, dict[str, object]],
) -> None:
    from hypercorn.config import Config

    if anyio_backend[0] == "trio":
        from hypercorn.trio import serve as hypercorn_serve
    else:
        from hypercorn.asyncio import serve as hypercorn_serve  # type: ignore[assignment]

    app = make_app(readiness_path="/ready", limits=Limits(drain_delay=0.1, drain_window=0.3))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = int(listener.getsockname()[1])
    config = Config()
    config.bind = [f"fd://{listener.detach()}"]
    config.graceful_timeout = 2.0
    stop = anyio.Event()
    drained = anyio.Event()

    async def drain_then_stop() -> None:
        await stop.wait()
        assert app.server is not None
        await app.server.drain()
        drained.set()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(partial(hypercorn_serve, app, config, shutdown_trigger=drain_then_stop))
        client = TestClient.connect(f"http://127.0.0.1:{port}/graphql")
        async with (
            client,
            client.websocket() as socket_,
            socket_.subscribe("subscription { forever }") as results,
        ):
            await anext(results)
            stop.set()
            with anyio.fail_after(10):
                with pytest.raises(WebSocketClosed) as caught:
                    await anext(results)
            assert caught.value.code == 1001
        with anyio.fail_after(10):
            await drained.wait()


async def test_F20_a_request_still_running_when_the_grace_ends_gets_503() -> None:
    schema = Schema("type Query { slow: Boolean }")
    started = anyio.Event()
    finalised: list[bool] = []

    @schema.field("Query.slow")
    async def slow(root: Any, info: Any) -> bool:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            finalised.append(True)
        return True  # pragma: no cover

    app = GraphQL(schema, limits=Limits(shutdown_grace=0.2, cleanup_grace=0.1))
    answer = await post_then_shut_down(app, b"{ slow }", started)
    assert answer.status == 503
    assert answer.json() == {"errors": [{"message": "Server is shutting down"}]}
    assert answer.header("connection") == "close"
    assert finalised == [True]


async def post_then_shut_down(
    app: GraphQL, query: bytes, started: anyio.Event, headers: tuple[tuple[str, str], ...] = ()
) -> Any:
    """POST ``query`` to ``app`` served natively, start a graceful shutdown once ``started``
    is set, and return the answer the client got."""
    trigger = anyio.Event()
    answers: list[Any] = []
    async with anyio.create_task_group() as tasks:
        port = await tasks.start(partial(serve, app, port=0, shutdown_trigger=trigger.wait))
        client = TestClient.connect(f"http://127.0.0.1:{port}/graphql")
        answered = anyio.Event()

        async def ask() -> None:
            sent = [("content-type", "application/json"), *headers]
            body = b'{"query": "' + query + b'"}'
            answers.append(await client.request("POST", body=body, headers=sent))
            answered.set()

        async with client:
            tasks.start_soon(ask)
            await started.wait()
            trigger.set()
            with anyio.fail_after(10):
                await answered.wait()
    return answers[0]


class _SetOnLog(logging.Handler):
    """Sets ``event`` when a record containing ``text`` is logged."""

    def __init__(self, text: str, event: anyio.Event) -> None:
        super().__init__()
        self.text = text
        self.event = event

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()


async def test_F20_a_mutation_that_ends_after_the_connections_are_cut_is_still_answered() -> None:
    """A mutation is shielded: it runs on past the grace and past the cut of every
    connection; when it ends its effects are applied, so its answer must reach the client
    (a 503, or no answer, would invite the client to run it again)."""
    schema = Schema("type Query { ok: Boolean }  type Mutation { pay: Boolean }")
    started, cut = anyio.Event(), anyio.Event()
    paid: list[bool] = []

    @schema.field("Mutation.pay")
    async def pay(root: Any, info: Any) -> bool:
        started.set()
        await cut.wait()  # until the server has cancelled every connection
        paid.append(True)
        return True

    app = GraphQL(schema, limits=Limits(shutdown_grace=0.2, cleanup_grace=0.1))
    native = logging.getLogger("anyql.transports.native")
    on_cut = _SetOnLog("after the grace", cut)  # logged just before the connections are cut
    native.addHandler(on_cut)
    try:
        answer = await post_then_shut_down(app, b"mutation { pay }", started)
    finally:
        native.removeHandler(on_cut)
    assert paid == [True]
    assert answer.status == 200
    assert answer.json() == {"data": {"pay": True}}
    assert answer.header("connection") == "close"


async def test_F20_the_503_of_a_request_cut_at_the_grace_carries_the_CORS_headers() -> None:
    schema = Schema("type Query { slow: Boolean }")
    started = anyio.Event()

    @schema.field("Query.slow")
    async def slow(root: Any, info: Any) -> bool:
        started.set()
        await anyio.sleep_forever()
        return True  # pragma: no cover

    origin = "https://app.example"
    app = GraphQL(
        schema, cors_origins=(origin,), limits=Limits(shutdown_grace=0.2, cleanup_grace=0.1)
    )
    answer = await post_then_shut_down(app, b"{ slow }", started, (("origin", origin),))
    assert answer.status == 503
    assert answer.header("access-control-allow-origin") == origin


async def test_a_drain_whose_caller_is_cancelled_still_runs_its_course() -> None:
    app = make_app()
    async with TestClient(app) as client, AsyncExitStack() as stack:
        streams = []
        for _ in range(2):
            socket_ = await stack.enter_async_context(client.websocket())
            results = await stack.enter_async_context(socket_.subscribe("subscription { forever }"))
            await anext(results)
            streams.append(results)
        assert app.server is not None
        server = app.server
        with anyio.CancelScope() as caller:
            caller.cancel()  # the caller (a resolver past its timeout, say) is cancelled
            await server.drain(delay=0.05, window=0.1)
        assert server.draining
        await server.drain()  # waits for the same drain: it went on in the server's task
        for results in streams:
            with pytest.raises(WebSocketClosed) as caught:
                await anext(results)
            assert caught.value.code == 1001
