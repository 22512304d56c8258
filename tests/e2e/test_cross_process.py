"""Across processes: server processes sharing one Redis deliver each other's messages.

Two native servers (Trio and asyncio) on different ports, and hypercorn with two workers,
serve tests/e2e/app.py with ``ANYQL_TEST_REDIS`` set, so their ``Broadcast`` goes through
the shared Redis on 127.0.0.1:6379. The independent peer is the ``websockets`` client
speaking graphql-transport-ws by hand; mutations go over plain HTTP. Every test uses its
own room. Without Redis these tests skip, except under CI, where they fail.

Synchronisation: an unshared ``messages`` subscriber is listening once it got its "ready"
event. A ``shared`` subscriber that joins a hub already running got no "ready" (late
joiners miss earlier events), so before the real message the test publishes probes until
every subscriber has seen something.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import AsyncExitStack, ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from tests.broadcast.helpers import LOCALHOST, answers_ping
from tests.e2e.servers import RunningServer, running_server
from tests.requirements import unavailable

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

REDIS_PORT = 6379
#: Real processes and a real network: generous, but bounded.
DEADLINE = 15.0


@pytest.fixture
def redis_env() -> dict[str, str]:
    """The environment that points tests/e2e/app.py at the shared Redis."""
    if not answers_ping(REDIS_PORT):
        unavailable(f"nothing answers PING on {LOCALHOST}:{REDIS_PORT}")
    return {"ANYQL_TEST_REDIS": f"redis://{LOCALHOST}:{REDIS_PORT}/0"}


def unique_room() -> str:
    return f"cross-{uuid.uuid4().hex[:12]}"


@dataclass
class Listener:
    """One WebSocket connection with one subscription to ``field(room:)``."""

    ws: ClientConnection
    field_name: str
    seen: list[str] = field(default_factory=list)

    async def next_value(self) -> str:
        frame = json.loads(await self.ws.recv())
        assert frame["type"] == "next", frame
        value: str = frame["payload"]["data"][self.field_name]
        self.seen.append(value)
        return value


async def listen(stack: AsyncExitStack, url: str, field_name: str, room: str) -> Listener:
    """Open a connection, acknowledge it and subscribe to ``field_name(room:)``."""
    ws = await stack.enter_async_context(
        connect(url, subprotocols=[Subprotocol("graphql-transport-ws")], open_timeout=DEADLINE)
    )
    await ws.send(json.dumps({"type": "connection_init"}))
    assert json.loads(await ws.recv()) == {"type": "connection_ack"}
    query = f"subscription S($room: String!) {{ {field_name}(room: $room) }}"
    message = {"query": query, "variables": {"room": room}}
    await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": message}))
    return Listener(ws, field_name)


SEND = "mutation M($room: String!, $text: String!) { send(room: $room, text: $text) }"


def post_send(server: RunningServer, room: str, text: str) -> None:
    body = json.dumps({"query": SEND, "variables": {"room": room, "text": text}}).encode()
    request = urllib.request.Request(
        server.http_url,
        data=body,
        headers={"content-type": "application/json", "accept": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=DEADLINE) as response:
        assert json.loads(response.read()) == {"data": {"send": True}}


async def send(server: RunningServer, room: str, text: str) -> None:
    await asyncio.to_thread(post_send, server, room, text)


async def value_within(listener: Listener, seconds: float) -> bool:
    """Whether ``listener`` received a value within ``seconds``."""
    try:
        async with asyncio.timeout(seconds):
            await listener.next_value()
    except TimeoutError:
        return False
    return True


async def until_all_listening(listeners: list[Listener], server: RunningServer, room: str) -> None:
    """Wait for each "ready"; publish probes for shared late joiners that get none."""
    pending = list(listeners)
    probes = 0
    async with asyncio.timeout(DEADLINE):
        while pending:
            # All at once: a round lasts 0.2 s however many listeners are still waiting.
            heard = await asyncio.gather(*(value_within(listener, 0.2) for listener in pending))
            pending = [listener for listener, ok in zip(pending, heard, strict=True) if not ok]
            if pending:
                probes += 1
                await send(server, room, f"probe {probes}")


async def receive_past_probes(listener: Listener) -> str:
    """The next value that is not "ready" or a probe."""
    async with asyncio.timeout(DEADLINE):
        while True:
            value = await listener.next_value()
            if value != "ready" and not value.startswith("probe"):
                return value


async def assert_everyone_receives(
    listeners: list[Listener], publisher: RunningServer, room: str
) -> None:
    await until_all_listening(listeners, publisher, room)
    text = f"hello {uuid.uuid4().hex[:8]}"
    await send(publisher, room, text)
    received = await asyncio.gather(*(receive_past_probes(each) for each in listeners))
    assert received == [text] * len(listeners)


@pytest.fixture
def two_native_servers(redis_env: dict[str, str]) -> Iterator[tuple[RunningServer, ...]]:
    with ExitStack() as stack:
        yield tuple(
            stack.enter_context(running_server(kind, env=redis_env))
            for kind in ("native-trio", "native-asyncio")
        )


@pytest.mark.parametrize("field_name", ["messages", "shared"])
@pytest.mark.parametrize("publisher_index", [0, 1], ids=["published-on-trio", "on-asyncio"])
def test_a_mutation_on_one_native_server_reaches_subscribers_on_the_other(
    two_native_servers: tuple[RunningServer, RunningServer], field_name: str, publisher_index: int
) -> None:
    room = unique_room()
    publisher = two_native_servers[publisher_index]
    other = two_native_servers[1 - publisher_index]

    async def scenario() -> None:
        async with AsyncExitStack() as stack:
            remote = [await listen(stack, other.ws_url, field_name, room) for _ in range(3)]
            local = await listen(stack, publisher.ws_url, field_name, room)
            await assert_everyone_receives([*remote, local], publisher, room)

    asyncio.run(scenario())


# --- hypercorn --workers 2 -------------------------------------------------------------


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (Linux /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found |= frontier
    return found


def server_socket_inode(server_port: int, client_port: int) -> str | None:
    """The inode of the server's end of the TCP connection from ``client_port``."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].split(":")[1], 16)
        remote_port = int(fields[2].split(":")[1], 16)
        if local_port == server_port and remote_port == client_port:
            return fields[9]
    return None


def worker_serving(server: RunningServer, ws: ClientConnection) -> int | None:
    """The pid of the hypercorn worker holding this connection's server socket."""
    inode = server_socket_inode(server.port, ws.local_address[1])
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid in descendants(server.process.pid):
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) == target:
                    return pid
            except OSError:
                continue
    return None


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("field_name", ["messages", "shared"])
@pytest.mark.parametrize("kind", ["hypercorn-trio", "hypercorn-asyncio"])
def test_hypercorn_workers_share_messages_through_redis(
    redis_env: dict[str, str], kind: str, field_name: str
) -> None:
    room = unique_room()

    async def scenario(server: RunningServer) -> None:
        async with AsyncExitStack() as stack:
            listeners: list[Listener] = []
            workers: dict[int | None, int] = {}
            # Connections land on whichever worker accepts first, and the second worker may
            # still be starting (or, on a loaded machine, lose every accept race for a
            # while: 64 connections once all went to one worker): open small concurrent
            # bursts, pausing between them, until both serve some.
            deadline = time.monotonic() + 60
            while len(workers) < 2 and len(listeners) < 256 and time.monotonic() < deadline:
                burst = await asyncio.gather(
                    *(listen(stack, server.ws_url, field_name, room) for _ in range(4))
                )
                for listener in burst:
                    listeners.append(listener)
                    pid = worker_serving(server, listener.ws)
                    workers[pid] = workers.get(pid, 0) + 1
                if len(workers) < 2:
                    await asyncio.sleep(0.5)  # polling a process we do not control
            assert None not in workers, f"a connection had no visible worker: {workers}"
            assert len(workers) == 2, f"every connection went to one worker: {workers}"
            await assert_everyone_receives(listeners, server, room)

    with running_server(kind, env=redis_env, workers=2) as server:
        asyncio.run(scenario(server))
