"""Mounting: ``path=``, ``fallback=``, ``graphiql=``, and the app inside Starlette.

The native server (through ``TestClient``) answers only ``path`` and 404 elsewhere; under
ASGI, scopes outside ``path`` go to ``fallback`` (HTTP, WebSocket, other types) and the
fallback's lifespan runs inside ours. Starlette is driven for real: served by hypercorn in
process, on both backends, and spoken to with ``TestClient.connect``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.websockets import WebSocket

from anyql import Broadcast, GraphQL, Schema
from anyql.testing import TestClient, WebSocketRejected
from anyql.transports.asgi import app_path
from anyql.types import RequestInfo
from tests.in_process import hypercorn_serving

pytestmark = pytest.mark.anyio

Message = dict[str, Any]
Backend = tuple[str, dict[str, object]]
GTWS = "graphql-transport-ws"
LEGACY = "graphql-ws"


def make_schema() -> Schema:
    schema = Schema(
        """
        type Query { where: String! }
        type Subscription { count(target: Int!): Int! }
        """
    )

    @schema.field("Query.where")
    def where(root: Any, info: Any) -> str:
        return str(info.context.request.path)

    @schema.field("Subscription.count")
    async def count(root: Any, info: Any, target: int) -> AsyncIterator[int]:
        for value in range(target):
            yield value

    return schema


# --- the native server: path= and graphiql= --------------------------------------


async def test_path_answers_only_that_path_over_http() -> None:
    app = GraphQL(make_schema(), path="/api/graphql")
    async with TestClient(app) as client:
        assert client.path == "/api/graphql"  # the client defaults to the app's path
        assert await client.query("{ where }") == {"data": {"where": "/api/graphql"}}
        assert await client.query("{ where }", path="/api/graphql/") == {
            "data": {"where": "/api/graphql/"}
        }
        for elsewhere in ("/", "/api", "/api/graphql/more", "/graphql"):
            response = await client.request("POST", elsewhere, body=b'{"query": "{ where }"}')
            assert response.status == 404, elsewhere


async def test_path_answers_only_that_path_over_websocket() -> None:
    app = GraphQL(make_schema(), path="/api/graphql")
    async with TestClient(app) as client:
        with pytest.raises(WebSocketRejected) as caught:
            async with client.websocket("/elsewhere"):
                pass
        assert caught.value.response.status == 404
        async with client.websocket() as ws, ws.subscribe("subscription { count(target: 2) }") as s:
            assert [result async for result in s] == [{"data": {"count": n}} for n in (0, 1)]


async def test_graphiql_true_false_and_a_callable() -> None:
    def custom(info: RequestInfo) -> str:
        return f"<html><body>my IDE at {info.path} for {info.header('user-agent')}</body></html>"

    browser = {"accept": "text/html", "user-agent": "tester"}
    pages = {}
    for setting in (True, False, custom):
        async with TestClient(GraphQL(make_schema(), graphiql=setting)) as client:
            pages[setting] = await client.request("GET", headers=browser)
    assert pages[True].status == 200
    assert "graphiql" in pages[True].text.lower()
    assert pages[False].status == 406  # no page: a GET for JSON that does not accept JSON
    assert "graphiql" not in pages[False].text.lower()
    assert pages[custom].status == 200
    assert pages[custom].header("content-type") == "text/html; charset=utf-8"
    assert pages[custom].text == "<html><body>my IDE at /graphql for tester</body></html>"


async def test_graphiql_callable_is_served_under_asgi_too() -> None:
    app = GraphQL(make_schema(), path="/graphql", graphiql=lambda info: "<p>custom</p>")
    status, headers, body = await asgi_http(app, "/graphql", headers={"accept": "text/html"})
    assert (status, body) == (200, b"<p>custom</p>")
    assert headers["content-type"] == "text/html; charset=utf-8"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"path": "graphql"}, "must start with '/'"),
        ({"fallback": PlainTextResponse("x")}, "needs path="),
        ({"path": "/graphql", "fallback": "not an app"}, "takes an ASGI app"),
        ({"graphiql": "yes"}, "Settings.graphiql takes"),
    ],
)
def test_settings_are_checked(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GraphQL(make_schema(), **settings)


# --- ASGI: root_path and fallback=, driven directly -------------------------------


def test_app_path_is_relative_to_root_path() -> None:
    assert app_path({"path": "/api/graphql", "root_path": "/api"}) == "/graphql"
    assert app_path({"path": "/api", "root_path": "/api"}) == "/"
    assert app_path({"path": "/apiary/graphql", "root_path": "/api"}) == "/apiary/graphql"
    assert app_path({"path": "/graphql", "root_path": "/api"}) == "/graphql"  # pre-stripped
    assert app_path({"path": "/graphql"}) == "/graphql"


class Fallback:
    """An ASGI app that records what reaches it and what the GraphQL app's state was."""

    def __init__(self, graphql: GraphQL | None = None, lifespan: str = "supported") -> None:
        self.graphql = graphql
        self.lifespan = lifespan
        self.scopes: list[Message] = []
        self.events: list[tuple[str, bool]] = []

    async def __call__(
        self,
        scope: Message,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        self.scopes.append(scope)
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send(
                {"type": "http.response.body", "body": b"fallback " + scope["path"].encode()}
            )
        elif scope["type"] == "websocket":
            assert (await receive())["type"] == "websocket.connect"
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.send", "text": "fallback"})
            await send({"type": "websocket.close", "code": 1000})
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(
        self, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]
    ) -> None:
        if self.lifespan == "unsupported":
            raise RuntimeError("no lifespan here")
        while True:
            message = await receive()
            phase = message["type"].removeprefix("lifespan.")
            self.events.append(
                (phase, self.graphql is not None and self.graphql.server is not None)
            )
            if self.lifespan == "fails":
                await send({"type": f"{message['type']}.failed", "message": "broken"})
                return
            await send({"type": f"{message['type']}.complete"})
            if phase == "shutdown":
                return


async def asgi_http(
    app: Any, path: str, *, headers: dict[str, str] | None = None, root_path: str = ""
) -> tuple[int, dict[str, str], bytes]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "root_path": root_path,
        "query_string": b"",
        "headers": [(k.encode(), v.encode()) for k, v in (headers or {}).items()],
    }
    incoming = [{"type": "http.request", "body": b"", "more_body": False}]
    sent: list[Message] = []

    async def receive() -> Message:
        if incoming:
            return incoming.pop(0)
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start, *bodies = sent
    response_headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], response_headers, b"".join(m.get("body", b"") for m in bodies)


async def asgi_websocket(app: Any, path: str) -> list[Message]:
    """Connect, then collect what the app sends until it closes (or refuses)."""
    scope = {"type": "websocket", "path": path, "headers": [], "subprotocols": [GTWS]}
    connected = False
    sent: list[Message] = []

    async def receive() -> Message:
        nonlocal connected
        if not connected:
            connected = True
            return {"type": "websocket.connect"}
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


async def test_fallback_receives_http_outside_path_untouched() -> None:
    fallback = Fallback()
    app = GraphQL(make_schema(), path="/graphql", fallback=fallback)
    assert await asgi_http(app, "/api/static/x.css", root_path="/api") == (
        200,
        {},
        b"fallback /api/static/x.css",
    )
    assert fallback.scopes[0]["root_path"] == "/api"
    status, _, body = await asgi_http(
        app, "/api/graphql", headers={"accept": "text/html"}, root_path="/api"
    )
    assert status == 200
    assert b"graphiql" in body.lower()
    assert len(fallback.scopes) == 1


async def test_without_fallback_outside_path_is_404() -> None:
    app = GraphQL(make_schema(), path="/graphql")
    status, _, _ = await asgi_http(app, "/other")
    assert status == 404
    assert await asgi_websocket(app, "/other") == [{"type": "websocket.close", "code": 1008}]


async def test_fallback_receives_websockets_outside_path() -> None:
    fallback = Fallback()
    app = GraphQL(make_schema(), path="/graphql", fallback=fallback)
    assert await asgi_websocket(app, "/chat") == [
        {"type": "websocket.accept"},
        {"type": "websocket.send", "text": "fallback"},
        {"type": "websocket.close", "code": 1000},
    ]
    assert [scope["type"] for scope in fallback.scopes] == ["websocket"]


async def test_fallback_receives_scope_types_anyql_does_not_serve() -> None:
    fallback = Fallback()
    app = GraphQL(make_schema(), path="/graphql", fallback=fallback)

    async def never() -> Message:
        raise AssertionError("not called")

    async def ignore(message: MutableMapping[str, Any]) -> None:
        raise AssertionError("not called")

    await app({"type": "custom"}, never, ignore)
    assert fallback.scopes == [{"type": "custom"}]


@asynccontextmanager
async def lifespan_of(app: Any) -> AsyncIterator[list[Message]]:
    """Run an ASGI lifespan: startup on entry, shutdown on exit; yields what the app sent."""
    to_app, app_inbox = anyio.create_memory_object_stream[Message](2)
    app_outbox, from_app = anyio.create_memory_object_stream[Message](2)
    sent: list[Message] = []
    async with anyio.create_task_group() as tg:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        tg.start_soon(app, scope, app_inbox.receive, app_outbox.send)
        await to_app.send({"type": "lifespan.startup"})
        sent.append(await from_app.receive())
        yield sent
        if sent[0]["type"] == "lifespan.startup.complete":
            await to_app.send({"type": "lifespan.shutdown"})
            sent.append(await from_app.receive())


async def test_the_fallback_lifespan_runs_inside_ours() -> None:
    fallback = Fallback()
    app = GraphQL(make_schema(), path="/graphql", fallback=fallback)
    fallback.graphql = app
    async with lifespan_of(app) as sent:
        assert app.server is not None
        assert fallback.events == [("startup", True)]  # our resources were up first
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert fallback.events == [("startup", True), ("shutdown", True)]  # and down last
    assert app.server is None


async def test_a_fallback_without_lifespan_support_is_left_out() -> None:
    fallback = Fallback(lifespan="unsupported")
    app = GraphQL(make_schema(), path="/graphql", fallback=fallback)
    async with lifespan_of(app) as sent:
        assert app.server is not None
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


async def test_a_failing_fallback_startup_fails_ours() -> None:
    fallback = Fallback(lifespan="fails")
    app = GraphQL(make_schema(), path="/graphql", fallback=fallback)
    async with lifespan_of(app) as sent:
        pass
    assert sent == [{"type": "lifespan.startup.failed", "message": "broken"}]
    assert app.server is None


class Broken:
    """A broadcast whose connection fails on entry or on exit."""

    def __init__(self, when: str) -> None:
        self.when = when

    async def __aenter__(self) -> Broken:
        if self.when == "startup":
            raise OSError("no broker")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self.when == "shutdown":
            raise OSError("broker lost")


@pytest.mark.parametrize("fallback", [None, Fallback()], ids=["alone", "with-fallback"])
async def test_our_own_lifespan_failures_are_reported(fallback: Fallback | None) -> None:
    settings: dict[str, Any] = {"path": "/graphql", "fallback": fallback}
    at_startup = GraphQL(make_schema(), broadcast=Broken("startup"), **settings)
    async with lifespan_of(at_startup) as sent:
        pass
    assert sent == [{"type": "lifespan.startup.failed", "message": "no broker"}]
    at_shutdown = GraphQL(make_schema(), broadcast=Broken("shutdown"), **settings)
    async with lifespan_of(at_shutdown) as sent:
        pass
    assert sent == [
        {"type": "lifespan.startup.complete"},
        {"type": "lifespan.shutdown.failed", "message": "broker lost"},
    ]


async def test_the_native_server_answers_404_outside_path_even_with_a_fallback() -> None:
    fallback = Fallback()
    app = GraphQL(make_schema(), path="/graphql", fallback=fallback)
    async with TestClient(app) as client:
        assert (await client.request("GET", "/elsewhere")).status == 404
        with pytest.raises(WebSocketRejected):
            async with client.websocket("/elsewhere"):
                pass
        assert await client.query("{ where }") == {"data": {"where": "/graphql"}}
    assert fallback.scopes == []


# --- Starlette, served by hypercorn in process -----------------------------------


async def home(request: Request) -> Response:
    return PlainTextResponse(f"starlette {request.url.path}")


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text(await websocket.receive_text())
    await websocket.close()


@pytest.mark.parametrize("subprotocol", [GTWS, LEGACY])
async def test_mounted_inside_starlette(subprotocol: str, anyio_backend: Backend) -> None:
    graphql = GraphQL(make_schema(), path="/graphql")

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with graphql.running():  # Starlette does not pass lifespan to mounted apps
            yield

    site = Starlette(routes=[Route("/", home), Mount("/api", app=graphql)], lifespan=lifespan)
    async with (
        hypercorn_serving(site, anyio_backend[0]) as port,
        TestClient.connect(f"http://127.0.0.1:{port}/api/graphql") as client,
    ):
        assert (await client.request("GET", "/")).text == "starlette /"
        assert await client.query("{ where }") == {"data": {"where": "/graphql"}}
        assert (await client.request("GET", "/api/elsewhere")).status == 404
        async with client.websocket(subprotocol=subprotocol) as ws:
            assert graphql.server is not None
            assert await ws.query("{ where }") == {"data": {"where": "/graphql"}}
            async with ws.subscribe("subscription { count(target: 3) }") as results:
                assert [r async for r in results] == [{"data": {"count": n}} for n in range(3)]
        with pytest.raises(WebSocketRejected) as caught:
            async with client.websocket("/api/elsewhere", subprotocol=subprotocol):
                pass
        assert caught.value.response.status == 404


async def test_mounted_without_the_lifespan_says_why_and_how_to_fix_it(
    anyio_backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    """Starlette's ``Mount`` does not forward lifespan: the broadcast never starts. The log
    says so once, naming the fix, and a resolver that publishes fails with the same advice."""
    schema = Schema("type Query { ok: Boolean } type Mutation { say: Boolean }")

    @schema.field("Mutation.say")
    async def say(root: Any, info: Any) -> bool:
        await info.context.broadcast.publish("room", "hi")
        return True

    graphql = GraphQL(schema, path="/graphql", broadcast=Broadcast())
    site = Starlette(routes=[Mount("/api", app=graphql)])  # no lifespan forwarded
    with caplog.at_level(logging.WARNING, logger="anyql"):
        async with (
            hypercorn_serving(site, anyio_backend[0]) as port,
            TestClient.connect(f"http://127.0.0.1:{port}/api/graphql") as client,
        ):
            assert await client.query("mutation { say }") == {
                "data": {"say": None},
                "errors": [
                    {
                        "message": "Internal server error",
                        "locations": [{"line": 1, "column": 12}],
                        "path": ["say"],
                    }
                ],
            }
            await client.query("mutation { say }")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "without the app's lifespan" in warnings[0]
    assert "must enter `app.running()`" in warnings[0]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and all("app.running()` in the parent's lifespan" in e for e in errors)


async def test_starlette_as_the_fallback(anyio_backend: Backend) -> None:
    started: list[str] = []

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        started.append("up")
        yield
        started.append("down")

    site = Starlette(
        routes=[Route("/", home), WebSocketRoute("/echo", echo)],
        lifespan=lifespan,
    )
    graphql = GraphQL(make_schema(), path="/graphql", fallback=site)
    async with (
        hypercorn_serving(graphql, anyio_backend[0]) as port,
        TestClient.connect(f"http://127.0.0.1:{port}/graphql") as client,
    ):
        assert await client.query("{ where }") == {"data": {"where": "/graphql"}}
        assert started == ["up"]  # hypercorn accepts connections once startup completed
        assert graphql.server is not None
        assert (await client.request("GET", "/")).text == "starlette /"
        async with client.websocket(subprotocol=GTWS) as ws:
            assert await ws.query("{ where }") == {"data": {"where": "/graphql"}}
        async with client.websocket("/echo", subprotocol=None, init=False) as raw:
            await raw.send_json({"hello": "starlette"})
            assert await raw.receive_json() == {"hello": "starlette"}
    assert started == ["up", "down"]
