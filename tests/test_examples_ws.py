"""The WebSocket examples (counter, auth, tail), driven in-process over both subprotocols.

Each test runs on asyncio and on Trio, over the in-memory socket of tests/memory_socket.py,
and compares exact JSON frames.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import pytest

from anyql.types import HTTPRequest, RequestInfo
from examples import auth, counter, tail
from tests.memory_socket import Peer, session

pytestmark = pytest.mark.anyio

GTWS = "graphql-transport-ws"
LEGACY = "graphql-ws"
#: Per subprotocol: the client's "run this" type and the server's result type.
START = {GTWS: "subscribe", LEGACY: "start"}
RESULT = {GTWS: "next", LEGACY: "data"}
TICKER = "subscription { tail(command: TICKER) { pid number text } }"


def start(subprotocol: str, id: str, query: str) -> dict[str, Any]:
    return {"id": id, "type": START[subprotocol], "payload": {"query": query}}


def result(subprotocol: str, id: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"id": id, "type": RESULT[subprotocol], "payload": {"data": data}}


async def connect(peer: Peer, subprotocol: str, params: dict[str, Any] | None = None) -> Any:
    """Send ``connection_init``; return the ack (after the legacy protocol's first ``ka``)."""
    ack = await peer.init(params)
    if subprotocol == LEGACY and ack["type"] == "connection_ack":
        assert await peer.receive() == {"type": "ka"}
    return ack


# --- counter ---------------------------------------------------------------------


@pytest.mark.autojump
@pytest.mark.parametrize("subprotocol", [GTWS, LEGACY])
async def test_counter_ticks_then_completes(subprotocol: str) -> None:
    async with session(counter.app, subprotocol) as peer:
        await connect(peer, subprotocol)
        await peer.send(start(subprotocol, "1", "subscription { count(target: 3, delayMs: 10) }"))
        for value in range(3):
            assert await peer.receive() == result(subprotocol, "1", {"count": value})
        assert await peer.receive() == {"id": "1", "type": "complete"}


# --- auth ------------------------------------------------------------------------


@pytest.mark.parametrize("subprotocol", [GTWS, LEGACY])
async def test_auth_valid_token_is_acked_and_reaches_resolvers(subprotocol: str) -> None:
    async with session(auth.app, subprotocol) as peer:
        ack = await connect(peer, subprotocol, {"token": "alice-token"})
        assert ack == {"type": "connection_ack", "payload": {"user": "alice"}}
        await peer.send(start(subprotocol, "1", "{ me { name roles } }"))
        assert await peer.receive() == result(
            subprotocol, "1", {"me": {"name": "alice", "roles": ["admin", "reader"]}}
        )
        assert await peer.receive() == {"id": "1", "type": "complete"}


BAD_PARAMS = [None, {}, {"token": "mallory-token"}, {"token": 42}, {"token": ""}]


@pytest.mark.parametrize("params", BAD_PARAMS)
async def test_P05_auth_without_a_valid_token_closes_4403(params: dict[str, Any] | None) -> None:
    async with session(auth.app, GTWS) as peer:
        message: dict[str, Any] = {"type": "connection_init"}
        if params is not None:
            message["payload"] = params
        await peer.send(message)
        assert await peer.expect_close() == (4403, "A valid token is required")


@pytest.mark.parametrize("params", BAD_PARAMS)
async def test_L02_legacy_auth_without_a_valid_token_sends_connection_error_then_1011(
    params: dict[str, Any] | None,
) -> None:
    async with session(auth.app, LEGACY) as peer:
        assert await peer.init(params) == {
            "type": "connection_error",
            "payload": {"message": "A valid token is required"},
        }
        assert (await peer.expect_close())[0] == 1011


@pytest.mark.parametrize(
    ("authorization", "me"),
    [
        ("Bearer bob-token", {"name": "bob"}),
        ("bearer bob-token", {"name": "bob"}),
        ("Bearer mallory-token", None),
        ("Basic bob-token", None),
        (None, None),
    ],
)
async def test_auth_http_requests_use_the_bearer_header(
    authorization: str | None, me: dict[str, str] | None
) -> None:
    headers = [("host", "test"), ("content-type", "application/json")]
    if authorization is not None:
        headers.append(("authorization", authorization))
    info = RequestInfo(method="POST", path="/graphql", headers=tuple(headers))
    response = await auth.app.handle_http(HTTPRequest(info, b'{"query": "{ me { name } }"}'))
    assert response.status == 200
    assert json.loads(response.body) == {"data": {"me": me}}


# --- tail ------------------------------------------------------------------------


class StoppedChildren(logging.Handler):
    """Collects the tail example's "pid N stopped" log records, so a test can wait for one."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.status: dict[int, int | None] = {}
        self._changed = anyio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == "tail: pid %d stopped (status %s)" and isinstance(record.args, tuple):
            pid, status = record.args
            assert isinstance(pid, int)
            self.status[pid] = status if isinstance(status, int) else None
            self._changed.set()
            self._changed = anyio.Event()

    async def wait_for(self, pid: int) -> int | None:
        """The exit status the example logged for ``pid``, once it has stopped it."""
        with anyio.fail_after(10):
            while pid not in self.status:
                await self._changed.wait()
        return self.status[pid]


@contextmanager
def watching_children() -> Iterator[StoppedChildren]:
    watcher = StoppedChildren()
    logger = logging.getLogger("examples.tail")
    level = logger.level
    logger.addHandler(watcher)
    logger.setLevel(logging.INFO)
    try:
        yield watcher
    finally:
        logger.removeHandler(watcher)
        logger.setLevel(level)


def running(pid: int) -> bool:
    """True while ``pid`` exists, zombies included (a reaped child no longer does)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def first_tick(peer: Peer, subprotocol: str) -> int:
    """Start tailing TICKER as id "1"; return the child's pid from the first line."""
    await peer.send(start(subprotocol, "1", TICKER))
    message = await peer.receive()
    assert message["type"] == RESULT[subprotocol], message
    line = message["payload"]["data"]["tail"]
    assert (line["number"], line["text"]) == (0, "tick 0")
    pid: int = line["pid"]
    assert running(pid)
    return pid


async def test_P28_tail_complete_terminates_the_child() -> None:
    with watching_children() as children:
        async with session(tail.app, GTWS) as peer:
            await connect(peer, GTWS)
            pid = await first_tick(peer, GTWS)
            await peer.send({"id": "1", "type": "complete"})
            status = await children.wait_for(pid)
            assert status is not None and status != 0  # ended by a signal, not by itself
            assert not running(pid)  # and reaped: no zombie left behind
            await peer.send({"type": "ping"})
            assert await peer.receive() == {"type": "pong"}  # nothing more for id 1


async def test_L08_tail_legacy_stop_terminates_the_child() -> None:
    with watching_children() as children:
        async with session(tail.app, LEGACY) as peer:
            await connect(peer, LEGACY)
            pid = await first_tick(peer, LEGACY)
            await peer.send({"id": "1", "type": "stop"})
            status = await children.wait_for(pid)
            assert status is not None and status != 0
            assert not running(pid)


@pytest.mark.parametrize("subprotocol", [GTWS, LEGACY])
async def test_W08_tail_disconnect_terminates_the_child(subprotocol: str) -> None:
    with watching_children() as children:
        async with session(tail.app, subprotocol) as peer:
            await connect(peer, subprotocol)
            pid = await first_tick(peer, subprotocol)
            await peer.disconnect()
        # The session's task group has exited, so the generator's finally is done.
        assert pid in children.status
        assert not running(pid)


async def test_tail_child_ignoring_sigterm_is_killed(monkeypatch: pytest.MonkeyPatch) -> None:
    stubborn = "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    monkeypatch.setitem(tail.SCRIPTS, "TICKER", stubborn + tail.SCRIPTS["TICKER"])
    monkeypatch.setattr(tail, "TERMINATE_GRACE", 0.2)
    with watching_children() as children:
        async with session(tail.app, GTWS) as peer:
            await connect(peer, GTWS)
            pid = await first_tick(peer, GTWS)
            await peer.send({"id": "1", "type": "complete"})
            assert await children.wait_for(pid) == -9  # SIGKILL
            assert not running(pid)


@pytest.mark.parametrize("subprotocol", [GTWS, LEGACY])
async def test_tail_completes_when_the_child_exits(subprotocol: str) -> None:
    query = "subscription { tail(command: COUNTDOWN) { number text } }"
    with watching_children() as children:
        async with session(tail.app, subprotocol) as peer:
            await connect(peer, subprotocol)
            await peer.send(start(subprotocol, "1", query))
            for number, text in enumerate(["3", "2", "1", "liftoff"]):
                line = {"tail": {"number": number, "text": text}}
                assert await peer.receive() == result(subprotocol, "1", line)
            assert await peer.receive() == {"id": "1", "type": "complete"}
        assert list(children.status.values()) == [0]


async def test_tail_accepts_only_the_fixed_commands() -> None:
    async with session(tail.app, GTWS) as peer:
        await connect(peer, GTWS)
        query = 'subscription { tail(command: "rm -rf /") { text } }'
        await peer.send(start(GTWS, "1", query))
        message = await peer.receive()
        assert message["type"] == "error"
        assert "Command" in message["payload"][0]["message"]
