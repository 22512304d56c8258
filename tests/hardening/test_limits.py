"""Limits over the native server, on both backends: connections per process (503), the
operation timeout over HTTP and WebSocket (G11), hostile documents and variables (G10,
docs/limits.md), and idle sockets that never initialise (R02)."""

from __future__ import annotations

import json
from typing import Any

import anyio
import graphql
import pytest

import anyql._document_limits
from anyql import Limits
from tests.hardening.app import MAX_ITEMS, Probe, build_app
from tests.hardening.clients import (
    GraphQLSocket,
    Refused,
    eventually,
    post,
    serving,
    start,
    subscribe,
)

pytestmark = pytest.mark.anyio

GRAPHQL_RESPONSE = [
    ("content-type", "application/json"),
    ("accept", "application/graphql-response+json"),
]


# --- WebSocket connections per process --------------------------------------------------------


async def test_connections_beyond_the_limit_get_503_at_the_handshake() -> None:
    app = build_app(limits=Limits(max_connections=2))
    async with serving(app) as port:
        first = await GraphQLSocket.connect(port)
        second = await GraphQLSocket.connect(port, subprotocol="graphql-ws")
        await first.init()
        await second.init()
        with pytest.raises(Refused) as refused:
            await GraphQLSocket.connect(port)
        assert refused.value.status == 503
        status, _h, _b = await post(port, {"query": "{ hello }"})
        assert status == 200  # HTTP is not counted
        await first.close()
        server = app.server
        assert server is not None
        await eventually(lambda: server.connections < 2)  # the server notices the close
        third = await GraphQLSocket.connect(port)
        assert await third.init() == {"type": "connection_ack"}
        await third.close()
        await second.close()


# --- G11: query and mutation execution timeout --------------------------------------------------

TIMED_OUT = {"data": None, "errors": [{"message": "Operation timed out"}]}


async def test_G11_operation_timeout_over_http_cancels_the_resolver() -> None:
    probe = Probe()
    # Generous enough that the fast query never hits it on a loaded machine.
    app = build_app(probe, limits=Limits(operation_timeout=0.5))
    async with serving(app) as port:
        status, _h, body = await post(port, {"query": "{ sleep(seconds: 60) }"})
        fast = await post(port, {"query": "{ sleep(seconds: 0) }"})
    assert (status, json.loads(body)) == (200, TIMED_OUT)
    assert probe.counts["sleep finally"] == 2  # the slow resolver was cancelled, not left
    assert json.loads(fast[2]) == {"data": {"sleep": "awake"}}


@pytest.mark.parametrize("subprotocol", ["graphql-transport-ws", "graphql-ws"])
async def test_G11_operation_timeout_over_websocket_ends_only_that_operation(
    subprotocol: str,
) -> None:
    probe = Probe()
    app = build_app(probe, limits=Limits(operation_timeout=0.05))
    legacy = subprotocol == "graphql-ws"
    message = start if legacy else subscribe
    async with serving(app) as port:
        socket = await GraphQLSocket.connect(port, subprotocol=subprotocol)
        await socket.init()
        await socket.send(message("room", 'subscription { room(room: "g11") }'))
        await probe.event("subscribed:g11").wait()
        await socket.send(message("slow", "{ sleep(seconds: 60) }"))
        answers = [await receive_skipping_ka(socket), await receive_skipping_ka(socket)]
        await app.broadcast.publish("room:g11", "still here")  # subscriptions are exempt
        event = await receive_skipping_ka(socket)
        await socket.close()
    assert answers[0] == {"id": "slow", "type": "data" if legacy else "next", "payload": TIMED_OUT}
    assert answers[1] == {"id": "slow", "type": "complete"}
    assert event["id"] == "room" and event["payload"] == {"data": {"room": "still here"}}
    assert probe.counts["sleep finally"] == 1


async def receive_skipping_ka(socket: GraphQLSocket) -> dict[str, Any]:
    while (message := await socket.receive())["type"] == "ka":
        pass
    return message


# --- deeply nested JSON in variables -------------------------------------------------------------


def nested_node(levels: int) -> bytes:
    """``{"child": {"child": ... null}}`` as raw JSON, for any depth (no recursion)."""
    return b'{"child":' * levels + b"null" + b"}" * levels


@pytest.mark.parametrize("levels", [900, 5_000, 100_000])
async def test_deeply_nested_variables_are_a_4xx_never_a_crash(
    levels: int, caplog: pytest.LogCaptureFixture
) -> None:
    body = b'{"query":"query($n: Node) { depth(node: $n) }","variables":{"n":%s}}' % nested_node(
        levels
    )
    async with serving(build_app()) as port:
        status, _h, answer = await post(port, body, GRAPHQL_RESPONSE)
        json_status, _h, json_answer = await post(port, body)
        ok = await post(port, {"query": "{ hello }"})  # the server is fine afterwards
    assert status == 400
    assert "data" not in json.loads(answer)
    assert json_status in (200, 400)  # 200 + errors under application/json (spec), or 400
    assert "data" not in json.loads(json_answer)
    assert ok[0] == 200
    assert [r for r in caplog.records if r.levelno >= 40] == []


async def test_deeply_nested_variables_over_websocket_are_an_error_and_the_socket_stays() -> None:
    node: Any = None
    for _ in range(900):
        node = {"child": node}
    async with serving(build_app()) as port:
        socket = await GraphQLSocket.connect(port)
        await socket.init()
        await socket.send(subscribe("1", "query($n: Node) { depth(node: $n) }", {"n": node}))
        answer = await socket.receive()
        await socket.send(subscribe("2", "{ hello }"))
        hello = await socket.receive()
        await socket.close()
    assert answer["type"] == "error"
    assert hello["payload"] == {"data": {"hello": "world"}}


# --- hostile documents ---------------------------------------------------------------------------


#: Hostile requests sent while another connection asks for ``{ hello }``.
ATTACKS = 8


def same_named_fields(count: int) -> str:
    """The validation bomb docs/limits.md describes: one field, ``count`` different arguments."""
    return "{ " + " ".join(f"n(v:{value})" for value in range(count)) + " }"


@pytest.mark.parametrize("max_tokens", [Limits().max_tokens, 100_000])
async def test_thousand_same_named_fields_are_rejected_before_validation_while_others_are_served(
    max_tokens: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    validated: list[str] = []
    real_validate = graphql.validate

    def counting_validate(schema: Any, document: Any, *args: Any, **kwargs: Any) -> Any:
        validated.append(document.loc.source.body[:20])
        return real_validate(schema, document, *args, **kwargs)

    monkeypatch.setattr(anyql._document_limits, "validate", counting_validate)
    bomb = same_named_fields(1000)
    assert 8_000 < len(bomb) < 10_000  # about 9 KB
    app = build_app(limits=Limits(max_tokens=max_tokens))
    async with serving(app) as port:
        rejected: list[dict[str, Any]] = []

        async def attack() -> None:
            for n in range(ATTACKS):  # a new source each time: the cache cannot help
                _s, _h, body = await post(port, {"query": bomb + " " * n})
                rejected.append(json.loads(body))

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(attack)
            with anyio.fail_after(5):  # the quadratic rule takes >10 s per bomb
                status, _h, body = await post(port, {"query": "{ hello }"})
    assert (status, json.loads(body)) == (200, {"data": {"hello": "world"}})
    assert len(rejected) == ATTACKS
    assert all("data" not in answer for answer in rejected)
    assert validated == ["{ hello }"]  # the bombs never reached graphql-core's validation
    message = rejected[0]["errors"][0]["message"]
    assert ("tokens" in message) if max_tokens == Limits().max_tokens else ("times" in message)


async def test_G10_a_huge_first_argument_is_refused_by_the_resolver() -> None:
    async with serving(build_app()) as port:
        _s, _h, huge = await post(port, {"query": "{ items(first: 99999999) }"})
        _s, _h, fine = await post(port, {"query": f"{{ items(first: {MAX_ITEMS}) }}"})
    assert json.loads(huge)["errors"][0]["message"] == f"first must be between 0 and {MAX_ITEMS}"
    assert len(json.loads(fine)["data"]["items"]) == MAX_ITEMS


class FirstAtMost(graphql.ValidationRule):
    """A cost rule: a literal ``first`` argument above ``MAX_ITEMS`` is a validation error."""

    def enter_argument(self, node: graphql.ArgumentNode, *_args: Any) -> None:
        value = node.value
        literal = value.value if isinstance(value, graphql.IntValueNode) else None
        if node.name.value == "first" and literal is not None and int(literal) > MAX_ITEMS:
            self.report_error(graphql.GraphQLError(f"'first' may be at most {MAX_ITEMS}.", node))


async def test_G10_a_cost_rule_can_reject_list_sizes_before_execution() -> None:
    app = build_app(validation_rules=(FirstAtMost,))
    huge = {"query": "{ items(first: 99999999) }"}
    async with serving(app) as port:
        first = [await post(port, huge, GRAPHQL_RESPONSE) for _ in range(2)]  # then cached
        _s, _h, fine = await post(port, {"query": f"{{ items(first: {MAX_ITEMS}) }}"})
    for status, _headers, body in first:
        assert status == 400
        assert json.loads(body) == {
            "errors": [
                {
                    "message": f"'first' may be at most {MAX_ITEMS}.",
                    "locations": [{"line": 1, "column": 9}],
                }
            ]
        }
    assert len(json.loads(fine)["data"]["items"]) == MAX_ITEMS


# --- R02: sockets that never send connection_init ------------------------------------------------


async def test_R02_idle_sockets_are_closed_4408_and_the_cap_refuses_the_rest() -> None:
    sockets_allowed = 100
    app = build_app(limits=Limits(connection_init_timeout=2.0, max_connections=sockets_allowed))
    async with serving(app) as port:
        idle: list[GraphQLSocket] = []

        async def connect() -> None:
            idle.append(await GraphQLSocket.connect(port))

        async with anyio.create_task_group() as tasks:
            for _ in range(sockets_allowed):
                tasks.start_soon(connect)
        server = app.server
        assert server is not None
        await eventually(lambda: server.connections == sockets_allowed)
        with pytest.raises(Refused) as refused:
            await GraphQLSocket.connect(port)
        closes: list[tuple[int, str]] = []
        async with anyio.create_task_group() as tasks:
            for socket in idle:
                tasks.start_soon(collect_close, socket, closes)
        await eventually(lambda: server.connections == 0)
        again = await GraphQLSocket.connect(port)  # room again once they are gone
        await again.close()
    assert refused.value.status == 503
    assert closes == [(4408, "Connection initialisation timeout")] * sockets_allowed


async def collect_close(socket: GraphQLSocket, closes: list[tuple[int, str]]) -> None:
    with anyio.fail_after(10):
        closes.append(await socket.close_frame())
    await socket.aclose()
