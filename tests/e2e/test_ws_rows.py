"""Transport rows of docs/bad-inputs.md against every real server kind, with a raw WebSocket client.

Native and hypercorn, Trio and asyncio. The shared ``server`` (tests/e2e/app.py, default
limits) serves most rows; rows that need small limits or a cleanup signal run against a
dedicated server of tests/e2e/app_limits.py per kind, and graceful shutdown starts a
server of its own that the test then stops. The client is the ``websockets`` package
(tests/e2e/raw_ws.py), so the frames checked are the frames on the wire.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.raw_ws import GTWS, LEGACY, RawSocket, connect
from tests.e2e.servers import SERVER_KINDS, RunningServer, running_server

pytestmark = pytest.mark.e2e

LIMITS_APP = "tests.e2e.app_limits:app"
KIB = 1024


@pytest.fixture(scope="module", params=SERVER_KINDS)
def limits_server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    """A server of tests/e2e/app_limits.py: init timeout 0.5 s, 64 KiB messages, 2 ops.

    Every row it serves is client-caused, so its log must hold no traceback.
    """
    with running_server(request.param, target=LIMITS_APP) as running:
        yield running
    log = running.log
    assert "Traceback" not in log, log


def subscribe(id: str, query: str) -> dict[str, Any]:
    return {"id": id, "type": "subscribe", "payload": {"query": query}}


def acked(socket: RawSocket, payload: dict[str, Any] | None = None) -> RawSocket:
    assert socket.init(payload) == {"type": "connection_ack"}
    return socket


def assert_server_works(server: RunningServer) -> None:
    """The process is up and a fresh connection runs a query."""
    assert server.process.poll() is None, "the server process died"
    with connect(server.ws_url) as socket:
        acked(socket).send_json(subscribe("q", '{ hello(name: "again") }'))
        assert socket.receive() == {
            "id": "q",
            "type": "next",
            "payload": {"data": {"hello": "Hello again"}},
        }
        assert socket.receive() == {"id": "q", "type": "complete"}


# --- graphql-transport-ws --------------------------------------------------------


def test_P01_no_connection_init_closes_4408(limits_server: RunningServer) -> None:
    with connect(limits_server.ws_url) as socket:
        assert socket.expect_close() == (4408, "Connection initialisation timeout")


def test_P08_subscribe_before_ack_closes_4401(server: RunningServer) -> None:
    with connect(server.ws_url) as socket:
        socket.send_json(subscribe("1", "{ hello }"))
        assert socket.expect_close() == (4401, "Unauthorized")


def test_P09_unknown_message_type_closes_4400(server: RunningServer) -> None:
    with connect(server.ws_url) as socket:
        acked(socket).send_json({"type": "NOT_A_MESSAGE_TYPE"})
        code, reason = socket.expect_close()
        assert code == 4400
        assert reason


def test_P13_text_that_is_not_json_closes_4400(server: RunningServer) -> None:
    with connect(server.ws_url) as socket:
        acked(socket).send_text("not valid json")
        code, reason = socket.expect_close()
        assert code == 4400
        assert reason


def test_P17_duplicate_id_of_a_live_subscription_closes_4409(server: RunningServer) -> None:
    with connect(server.ws_url) as socket:
        acked(socket).send_json(subscribe("1", 'subscription { messages(room: "p17") }'))
        assert socket.receive()["payload"] == {"data": {"messages": "ready"}}
        socket.send_json(subscribe("1", "{ hello }"))
        assert socket.expect_close() == (4409, "Subscriber for 1 already exists")


def wait_for_cleanup(watcher: RawSocket, tag: str) -> None:
    """Read the watcher's ``cleanups`` until ``tag``: that source's ``finally`` has run.

    Tags of sources other tests left to the server may come first; a tag that never comes
    fails the read at its timeout.
    """
    while watcher.receive()["payload"]["data"]["cleanups"] != tag:
        pass


def test_P28_client_complete_stops_every_next_and_closes_the_source(
    limits_server: RunningServer,
) -> None:
    with connect(limits_server.ws_url) as watcher:
        acked(watcher).send_json(subscribe("w", "subscription { cleanups }"))
        assert watcher.receive()["payload"] == {"data": {"cleanups": "ready"}}
        with connect(limits_server.ws_url) as socket:
            acked(socket).send_json(
                subscribe("1", "subscription { count(target: 1000, delayMs: 20) }")
            )
            for value in range(2):
                assert socket.receive()["payload"] == {"data": {"count": value}}
            socket.send_json({"id": "1", "type": "complete"})
            socket.send_json({"type": "ping"})
            # Frames written before the server read our complete may still be on the wire.
            while (message := socket.receive()) != {"type": "pong"}:
                assert message["id"] == "1" and message["type"] == "next", message
            socket.expect_silence(0.3)  # 15 ticks of the source, had it not been cancelled
            # The machine drops every frame of a completed id, so silence cannot tell a
            # stopped source from one left running: this source reports its own finally.
            socket.send_json(subscribe("2", 'subscription { forever(tag: "p28") }'))
            assert socket.receive()["payload"] == {"data": {"forever": 0}}
            socket.send_json({"id": "2", "type": "complete"})
            wait_for_cleanup(watcher, "p28")  # while this connection is still open
            socket.send_json({"type": "ping"})
            assert socket.receive() == {"type": "pong"}


def test_too_many_operations_errors_that_id_and_keeps_the_socket(
    limits_server: RunningServer,
) -> None:
    with connect(limits_server.ws_url) as socket:
        acked(socket)
        for id in ("a", "b"):
            socket.send_json(subscribe(id, f'subscription {{ forever(tag: "ops-{id}") }}'))
            assert socket.receive() == {
                "id": id,
                "type": "next",
                "payload": {"data": {"forever": 0}},
            }
        socket.send_json(subscribe("c", "{ hello }"))
        assert socket.receive() == {
            "id": "c",
            "type": "error",
            "payload": [{"message": "Too many operations"}],
        }
        socket.send_json({"type": "ping"})
        assert socket.receive() == {"type": "pong"}


@pytest.mark.parametrize("offered", [["imaginary"], ["graphql", "json"], None])
def test_P35_no_supported_subprotocol_closes_4406(
    server: RunningServer, offered: list[str] | None
) -> None:
    with connect(server.ws_url, subprotocols=offered) as socket:
        assert socket.subprotocol is None
        assert socket.expect_close() == (4406, "Subprotocol not acceptable")


@pytest.mark.parametrize("offered", [[LEGACY, GTWS], [GTWS, LEGACY], ["imaginary", LEGACY]])
def test_P36_first_supported_subprotocol_in_the_clients_order(
    server: RunningServer, offered: list[str]
) -> None:
    with connect(server.ws_url, subprotocols=offered) as socket:
        assert socket.subprotocol == next(name for name in offered if name in (GTWS, LEGACY))
        assert socket.init() == {"type": "connection_ack"}


# --- legacy graphql-ws -----------------------------------------------------------


def test_L11_legacy_ka_follows_the_ack(server: RunningServer) -> None:
    with connect(server.ws_url, subprotocols=[LEGACY]) as socket:
        assert socket.subprotocol == LEGACY
        assert socket.init() == {"type": "connection_ack"}
        assert socket.receive() == {"type": "ka"}


def test_L06_legacy_binary_frame_closes_1002(server: RunningServer) -> None:
    with connect(server.ws_url, subprotocols=[LEGACY]) as socket:
        assert socket.init() == {"type": "connection_ack"}
        assert socket.receive() == {"type": "ka"}
        socket.send_bytes(b'{"type": "connection_init"}')
        assert socket.expect_close() == (1002, "WebSocket message type must be text")


# --- framing and faults ----------------------------------------------------------


@pytest.mark.parametrize(
    ("filler", "fragmented"),
    [(" ", False), (" ", True), ("é", False)],
    ids=["one-frame", "fragments", "multibyte"],
)
def test_W04_message_over_the_limit_closes_1009(
    limits_server: RunningServer, filler: str, fragmented: bool
) -> None:
    # A valid message over the 64 KiB limit. "é" is two bytes in UTF-8: 40 Ki of them are
    # under the limit in characters and over it in bytes, and the limit is in bytes.
    query = "{ hello }" + filler * (100 * KIB // len(filler.encode()))
    text = f'{{"id": "1", "type": "subscribe", "payload": {{"query": "{query}"}}}}'
    with connect(limits_server.ws_url) as socket:
        acked(socket)
        if fragmented:
            socket.send_fragments(text[i : i + 16 * KIB] for i in range(0, len(text), 16 * KIB))
        else:
            socket.send_text(text)
        assert socket.expect_close()[0] == 1009
    with connect(limits_server.ws_url) as socket:  # under the limit, the same server is fine
        acked(socket).send_json(subscribe("1", "{ hello }" + " " * (32 * KIB)))
        assert socket.receive()["payload"] == {"data": {"hello": "world"}}


def test_W08_tcp_reset_with_live_subscriptions_runs_finally(
    limits_server: RunningServer,
) -> None:
    with connect(limits_server.ws_url) as watcher:
        acked(watcher).send_json(subscribe("w", "subscription { cleanups }"))
        assert watcher.receive()["payload"] == {"data": {"cleanups": "ready"}}
        with connect(limits_server.ws_url) as victim:
            acked(victim)
            for id in ("1", "2"):
                victim.send_json(subscribe(id, f'subscription {{ forever(tag: "w08-{id}") }}'))
                assert victim.receive()["payload"] == {"data": {"forever": 0}}
            victim.reset()
        # Each generator's finally announces its tag: both ran, on the server, after the RST.
        tags = {watcher.receive()["payload"]["data"]["cleanups"] for _ in range(2)}
        assert tags == {"w08-1", "w08-2"}
    assert limits_server.process.poll() is None
    with connect(limits_server.ws_url) as socket:
        acked(socket).send_json(subscribe("1", "{ hello }"))
        assert socket.receive()["payload"] == {"data": {"hello": "world"}}


def test_F08_resolver_and_source_raising_in_a_session_leave_the_server_up(
    server: RunningServer,
) -> None:
    with connect(server.ws_url) as socket:
        acked(socket).send_json(subscribe("1", "{ fail }"))
        result = socket.receive()
        assert result["type"] == "next"
        assert result["payload"]["data"] == {"fail": None}
        assert result["payload"]["errors"][0]["path"] == ["fail"]
        assert socket.receive() == {"id": "1", "type": "complete"}
        socket.send_json(subscribe("2", "subscription { boom(after: 1) }"))
        assert socket.receive()["payload"] == {"data": {"boom": 0}}
        error = socket.receive()
        assert error["type"] == "error" and error["id"] == "2"
        assert "source failed on purpose" in error["payload"][0]["message"]
        socket.send_json({"type": "ping"})
        assert socket.receive() == {"type": "pong"}  # the session is still open
    assert_server_works(server)


#: What a client with a live subscription sees when the server is asked to stop (SIGTERM).
#: The native server closes every session with 1001 at once. Hypercorn gives ASGI apps no
#: shutdown signal while connections are open: it stops accepting, waits for open
#: connections up to its graceful_timeout (3 s), then cancels them, and only then sends
#: lifespan.shutdown (where the app would close with 1001). So the socket dies uncleanly:
#: under Trio the TCP connection just closes (the client sees 1006); under asyncio hypercorn
#: answers the cancelled app task with a 1011 close frame of its own.
SHUTDOWN_CLOSE = {
    "native-trio": (1001, "Going away"),
    "native-asyncio": (1001, "Going away"),
    "hypercorn-trio": (1006, ""),
    "hypercorn-asyncio": (1011, ""),
}


@pytest.mark.parametrize(
    ("kind", "signum"),
    [(kind, signal.SIGTERM) for kind in SERVER_KINDS]
    + [(kind, signal.SIGINT) for kind in SERVER_KINDS if kind.startswith("native")],
    ids=lambda value: value.name if isinstance(value, signal.Signals) else str(value),
)
def test_graceful_shutdown_closes_live_sockets(kind: str, signum: signal.Signals) -> None:
    with running_server(kind, target=LIMITS_APP) as server, connect(server.ws_url) as socket:
        acked(socket).send_json(subscribe("1", 'subscription { forever(tag: "bye") }'))
        assert socket.receive()["payload"] == {"data": {"forever": 0}}
        server.process.send_signal(signum)
        assert socket.expect_close(timeout=10) == SHUTDOWN_CLOSE[kind]
        assert server.process.wait(timeout=10) == 0
