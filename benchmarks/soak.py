"""Soak test: thousands of WebSocket clients subscribing, publishing and churning for a while,
against the native server, reporting RSS and live tasks over time.

Owns a command line with two roles. The *server* role (the default) serves a small app with
``anyql.serve`` in this process, samples its RSS (``/proc/self/status``), its live tasks
(``anyio.get_running_tasks()``: only server tasks, since the clients live elsewhere), its
open WebSocket connections and every log record at ERROR, and starts the *clients* role in
a child process. Each client connection: connects (both subprotocols, alternately),
subscribes to a room (half the clients through the shared ``sharedRoom``), runs short
``ticks`` subscriptions and subscribe/complete cycles (shared or not, at random) now and
then, and after a random lifetime closes (one in ten by dropping TCP) and starts over;
publishers post mutations over HTTP. When the time is up the clients stop, the server waits
for every connection to end, and the report compares the task count with the idle baseline
(leaked tasks) and RSS at the end with RSS once all clients were first connected.

With ``--long-lived`` the clients do not churn: ``--subscriptions`` connections (both
subprotocols, alternately) each hold one subscription open for the whole run, half of them
through the shared field ``sharedItems``, the others through ``items``, each selecting a
nested object (``SELECTION``). A ticker task in the server publishes one event per round on
each of ``LONG_ROOMS`` broadcast channels, at most ``--rate`` rounds a second and never more
than ``WINDOW`` rounds ahead of the slowest source, until every subscription has had its
share of ``--events``; then each subscription completes. Clients check every event (order,
content, none missing). Besides the samples, the report gives RSS when the stream starts,
halfway (in events) and when it ends, and the RSS growth over the second half per million
events: what a subscription keeps per event it delivers shows there. ``--seconds`` then only
bounds the run (default 3600).

Only loopback traffic; every loop is bounded by ``--seconds`` and stops by itself.
Imports the standard library, anyio, h11, wsproto and anyql.

Run: ``python benchmarks/soak.py --seconds 600 --connections 2000 --backend trio``, or
``python benchmarks/soak.py --long-lived --backend trio`` (300 subscriptions, one million
events).
"""

from __future__ import annotations

import os
import sys

# Run as a script: the repository root, not benchmarks/ (its http.py shadows http), goes first.
if os.path.realpath(sys.path[0]) == os.path.dirname(os.path.realpath(__file__)):
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))

import argparse
import json
import logging
import random
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import h11
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Event,
    Ping,
    Request,
    TextMessage,
)

from anyql import Broadcast, GraphQL, Limits, Schema, serve

__all__ = ["main"]

ROOMS = 50
TICKS = 3
#: Seconds between a client's short operations (uniform in this range).
OPERATION_EVERY = (3.0, 12.0)
SCRIPT = Path(__file__).resolve()

# --- the app under test ------------------------------------------------------------------------

schema = Schema(
    """
    type Query { hello: String! }
    type Mutation { publish(room: String!, text: String!): Boolean! }
    type Subscription {
      room(room: String!): String!
      sharedRoom(room: String!): String!
      ticks(n: Int!): Int!
    }
    """
)
schema.field("Query.hello")(lambda root, info: "world")


@schema.field("Mutation.publish")
async def publish(root: Any, info: Any, room: str, text: str) -> bool:
    await info.context.broadcast.publish(f"room:{room}", text)
    return True


@schema.field("Subscription.room")
@schema.field("Subscription.sharedRoom", shared=True)
async def room(root: Any, info: Any, room: str) -> AsyncIterator[str]:
    async with info.context.broadcast.subscribe(f"room:{room}") as stream:
        async for text in stream:
            yield text


@schema.field("Subscription.ticks")
async def ticks(root: Any, info: Any, n: int) -> AsyncIterator[int]:
    for value in range(n):
        yield value
        await anyio.sleep(0.01)


def make_app(connections: int) -> GraphQL:
    """The soak app: room subscriptions over an in-memory broadcast, plus ``ticks``."""
    limits = Limits(max_connections=connections * 2, keep_alive_interval=15.0)
    return GraphQL(schema, broadcast=Broadcast(), limits=limits)


# --- the server role ---------------------------------------------------------------------------


def rss_mib() -> float:
    """Resident memory of this process in MiB (Linux), or -1 where unknown."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return -1.0


class LogCounter(logging.Handler):
    """Counts records at ERROR and above, and keep-alive aborts (a client that went quiet)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.errors = 0
        self.warnings: Counter[str] = Counter()
        self.keep_alive_aborts = 0
        self.first: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.levelno >= logging.ERROR:
            self.errors += 1
            if len(self.first) < 5:
                self.first.append(f"{record.name}: {message[:200]}")
        elif record.levelno >= logging.WARNING:
            self.warnings[message[:80]] += 1
        elif "no pong" in message:
            self.keep_alive_aborts += 1


@dataclass
class Sample:
    seconds: float
    rss_mib: float
    tasks: int
    websockets: int


@dataclass
class LongLivedSample(Sample):
    #: Events delivered so far, as the server sees it (rounds every source passed on).
    events: int


async def sample_forever(
    app: GraphQL,
    started: float,
    every: float,
    out: list[Sample],
    events: Callable[[], int] | None = None,
) -> None:
    """Append a sample every ``every`` seconds and print it (with ``events()`` if given)."""
    while True:
        server = app.server
        sample = Sample(
            seconds=round(time.monotonic() - started, 1),
            rss_mib=round(rss_mib(), 1),
            tasks=len(anyio.get_running_tasks()),
            websockets=server.connections if server is not None else 0,
        )
        line = (
            f"[soak] t={sample.seconds:7.1f}s rss={sample.rss_mib:8.1f} MiB"
            f" tasks={sample.tasks:6d} websockets={sample.websockets:6d}"
        )
        if events is not None:
            sample = LongLivedSample(**asdict(sample), events=events())
            line += f" events={sample.events:9,d}"
        out.append(sample)
        print(line, flush=True)
        await anyio.sleep(every)


async def run_server(options: argparse.Namespace) -> dict[str, Any]:
    """Serve, sample, run the clients' process to the end, then measure what is left."""
    logs = LogCounter()
    logging.getLogger().addHandler(logs)
    logging.getLogger("anyql").setLevel(logging.DEBUG)  # counted, never printed
    app = make_app(options.connections)
    samples: list[Sample] = []
    started = time.monotonic()
    async with anyio.create_task_group() as tasks:
        port = await tasks.start(partial(serve, app, port=0))
        tasks.start_soon(sample_forever, app, started, options.sample_every, samples)
        await anyio.wait_all_tasks_blocked()
        idle_tasks, idle_rss = len(anyio.get_running_tasks()), rss_mib()
        clients = await run_clients_process(port, options)
        server = app.server
        assert server is not None
        with anyio.move_on_after(30):
            while server.connections:  # noqa: ASYNC110 - a counter, nothing signals it
                await anyio.sleep(0.1)
        await anyio.sleep(1)  # closing HTTP connections linger up to 2 s
        await anyio.wait_all_tasks_blocked()
        end_tasks, end_rss = len(anyio.get_running_tasks()), rss_mib()
        tasks.cancel_scope.cancel()
    # "Loaded": after the 5 s ramp-up plus one sample, until the clients stop.
    ramped = 5 + options.sample_every
    loaded = [s.rss_mib for s in samples if ramped <= s.seconds <= options.seconds]
    return {
        "backend": options.backend,
        "seconds": options.seconds,
        "connections": options.connections,
        "rss_first_loaded_mib": loaded[0] if loaded else None,
        "rss_last_loaded_mib": loaded[-1] if loaded else None,
        **_server_report((idle_tasks, idle_rss), (end_tasks, end_rss), samples, logs, clients),
    }


def _server_report(
    idle: tuple[int, float],
    end: tuple[int, float],
    samples: Sequence[Sample],
    logs: LogCounter,
    clients: dict[str, Any],
) -> dict[str, Any]:
    """What both modes report of the server: tasks, RSS, errors, the clients' summary."""
    (idle_tasks, idle_rss), (end_tasks, end_rss) = idle, end
    return {
        "idle": {"tasks": idle_tasks, "rss_mib": round(idle_rss, 1)},
        "end": {"tasks": end_tasks, "rss_mib": round(end_rss, 1), "websockets": 0},
        "leaked_tasks": end_tasks - idle_tasks,
        "rss_peak_mib": max(s.rss_mib for s in samples),
        "peak_tasks": max(s.tasks for s in samples),
        "peak_websockets": max(s.websockets for s in samples),
        "server_cpu_seconds": round(time.process_time(), 1),
        "server_errors_logged": logs.errors,
        "first_errors": logs.first,
        "server_warnings": dict(logs.warnings.most_common(5)),
        "keep_alive_aborts": logs.keep_alive_aborts,
        "clients": clients,
        "samples": [asdict(sample) for sample in samples],
    }


async def run_clients_process(port: int, options: argparse.Namespace) -> dict[str, Any]:
    """Run the clients' role in a child process; return its JSON report."""
    command = [
        sys.executable,
        str(SCRIPT),
        "--role",
        "clients",
        "--port",
        str(port),
        "--seconds",
        str(options.seconds),
        "--connections",
        str(options.connections),
        "--publishers",
        str(options.publishers),
        "--lifetime",
        str(options.lifetime),
        "--backend",
        options.backend,
    ]
    if options.long_lived:
        command += [
            "--long-lived",
            "--subscriptions",
            str(options.subscriptions),
            "--events",
            str(options.events),
        ]
    done = await anyio.run_process(command, stderr=subprocess.STDOUT, check=False)
    lines = done.stdout.decode().strip().splitlines()
    if done.returncode != 0 or not lines:
        return {"crashed": True, "returncode": done.returncode, "output": lines[-20:]}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


# --- the clients role --------------------------------------------------------------------------


@dataclass
class ClientStats:
    connections: int = 0
    aborted: int = 0
    room_events: int = 0
    ticks_completed: int = 0
    cycles: int = 0
    publishes: int = 0
    failures: Counter[str] = field(default_factory=Counter)


class Socket:
    """A minimal GraphQL-over-WebSocket client on a real socket (wsproto)."""

    def __init__(self, stream: anyio.abc.SocketStream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.pending: list[Event] = []

    @classmethod
    async def open(cls, port: int, subprotocol: str) -> Socket:
        socket = cls(await anyio.connect_tcp("127.0.0.1", port))
        request = Request(host=f"127.0.0.1:{port}", target="/graphql", subprotocols=[subprotocol])
        await socket.stream.send(socket.ws.send(request))
        answer = await socket.event()
        if not isinstance(answer, AcceptConnection):
            raise RuntimeError(f"handshake refused: {answer!r}")
        return socket

    async def event(self) -> Event:
        while not self.pending:
            try:
                data: bytes | None = await self.stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                data = None
            self.ws.receive_data(data)
            self.pending.extend(self.ws.events())
        return self.pending.pop(0)

    async def send(self, message: dict[str, Any]) -> None:
        await self.stream.send(self.ws.send(TextMessage(data=json.dumps(message))))

    async def receive(self) -> dict[str, Any]:
        while True:
            event = await self.event()
            if isinstance(event, Ping):
                # Shielded: a ping taken from the socket but not answered (the caller's
                # timeout struck here) is lost, and the server drops us after pong_timeout.
                with anyio.CancelScope(shield=True):
                    await self.stream.send(self.ws.send(event.response()))
            elif isinstance(event, TextMessage):
                message: dict[str, Any] = json.loads(event.data)
                if message.get("type") != "ka":
                    return message
            else:
                raise RuntimeError(f"unexpected {event!r}")

    async def close(self) -> None:
        await self.stream.send(self.ws.send(CloseConnection(code=1000)))
        while not isinstance(await self.event(), CloseConnection):
            pass
        await anyio.aclose_forcefully(self.stream)


class Protocol:
    """Message shapes of one subprotocol."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.legacy = name == "graphql-ws"
        self.next = "data" if self.legacy else "next"

    def start(self, id: str, query: str) -> dict[str, Any]:
        kind = "start" if self.legacy else "subscribe"
        return {"id": id, "type": kind, "payload": {"query": query}}

    def stop(self, id: str) -> dict[str, Any]:
        return {"id": id, "type": "stop" if self.legacy else "complete"}


async def one_connection(
    port: int, number: int, deadline: float, stats: ClientStats, lifetime: float
) -> None:
    """Connect, subscribe, churn operations until the lifetime ends, then close."""
    protocol = Protocol("graphql-ws" if number % 2 else "graphql-transport-ws")
    socket = await Socket.open(port, protocol.name)
    stats.connections += 1
    await socket.send({"type": "connection_init"})
    ack = await socket.receive()
    if ack["type"] != "connection_ack":
        raise RuntimeError(f"no ack: {ack}")
    # Half the clients read their room through a shared subscription (one source per room).
    field = "sharedRoom" if number % 4 < 2 else "room"
    query = f'subscription {{ {field}(room: "{number % ROOMS}") }}'
    await socket.send(protocol.start("room", query))
    leave_at = min(deadline, time.monotonic() + random.uniform(0.5, 1.5) * lifetime)
    cycle = 0
    while True:
        remaining = leave_at - time.monotonic()
        if remaining <= 0:
            break
        with anyio.move_on_after(min(remaining, random.uniform(*OPERATION_EVERY))):
            while True:
                message = await socket.receive()
                check(message, protocol, "room", stats)
        if time.monotonic() < leave_at:
            cycle += 1
            await churn(socket, protocol, f"op{cycle}", stats)
    if random.random() < 0.1:
        stats.aborted += 1
        await anyio.aclose_forcefully(socket.stream)  # the TCP connection just vanishes
    else:
        await socket.close()


def check(message: dict[str, Any], protocol: Protocol, id: str, stats: ClientStats) -> None:
    if message.get("id") == id and message["type"] == protocol.next:
        stats.room_events += 1
    else:
        raise RuntimeError(f"unexpected message {message}")


async def churn(socket: Socket, protocol: Protocol, id: str, stats: ClientStats) -> None:
    """A short subscription to completion, then a subscribe/complete cycle on ``id``."""
    await socket.send(protocol.start(id, f"subscription {{ ticks(n: {TICKS}) }}"))
    seen = 0
    while True:
        message = await socket.receive()
        if message.get("id") == "room":
            check(message, protocol, "room", stats)
        elif message == {"id": id, "type": "complete"}:
            break
        elif message.get("id") == id and message["type"] == protocol.next:
            seen += 1
        else:
            raise RuntimeError(f"unexpected message {message}")
    if seen != TICKS:
        raise RuntimeError(f"{seen} ticks instead of {TICKS}")
    stats.ticks_completed += 1
    cycle_id = f"{id}c"
    field = random.choice(["room", "sharedRoom"])
    await socket.send(protocol.start(cycle_id, f'subscription {{ {field}(room: "churn") }}'))
    await socket.send(protocol.stop(cycle_id))
    while protocol.legacy:  # a legacy ``stop`` is answered with ``complete``
        message = await socket.receive()
        if message == {"id": cycle_id, "type": "complete"}:
            break
        check(message, protocol, "room", stats)
    stats.cycles += 1


async def connection_loop(
    port: int, number: int, deadline: float, stats: ClientStats, lifetime: float
) -> None:
    """Keep one client slot busy until the deadline, reconnecting after each lifetime."""
    await anyio.sleep(random.uniform(0, 5))  # ramp up
    while time.monotonic() < deadline:
        try:
            await one_connection(port, number, deadline, stats, lifetime)
        except (OSError, RuntimeError, anyio.BrokenResourceError, h11.ProtocolError) as exc:
            stats.failures[type(exc).__name__ + ": " + str(exc)[:80]] += 1
            await anyio.sleep(0.5)


async def publisher(port: int, number: int, deadline: float, stats: ClientStats) -> None:
    """Post a mutation to a random room about every 50 ms over keep-alive HTTP."""
    while time.monotonic() < deadline:
        try:
            async with await anyio.connect_tcp("127.0.0.1", port) as stream:
                connection = h11.Connection(h11.CLIENT)
                for _ in range(50):
                    if time.monotonic() >= deadline:
                        return
                    await post_mutation(stream, connection, number)
                    stats.publishes += 1
                    await anyio.sleep(0.05)
        except (OSError, RuntimeError, anyio.BrokenResourceError, h11.ProtocolError) as exc:
            stats.failures[f"publish {type(exc).__name__}: {str(exc)[:60]}"] += 1
            await anyio.sleep(0.5)


async def post_mutation(stream: anyio.abc.SocketStream, connection: h11.Connection, n: int) -> None:
    if connection.our_state is h11.DONE:
        connection.start_next_cycle()
    text = f"{n}-{time.monotonic():.3f}"
    query = f'mutation {{ publish(room: "{random.randrange(ROOMS)}", text: "{text}") }}'
    body = json.dumps({"query": query}).encode()
    headers = [
        ("host", "soak"),
        ("content-type", "application/json"),
        ("content-length", str(len(body))),
    ]
    data = connection.send(h11.Request(method="POST", target="/graphql", headers=headers))
    data = (data or b"") + (connection.send(h11.Data(data=body)) or b"")
    data += connection.send(h11.EndOfMessage()) or b""
    await stream.send(data)
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            connection.receive_data(await stream.receive())
        elif isinstance(event, h11.Response) and event.status_code != 200:
            raise RuntimeError(f"publish got {event.status_code}")
        elif isinstance(event, h11.EndOfMessage):
            return


async def run_clients(options: argparse.Namespace) -> None:
    """The clients' role: print one JSON line of statistics at the end."""
    stats = ClientStats()
    deadline = time.monotonic() + options.seconds
    async with anyio.create_task_group() as tasks:
        for number in range(options.connections):
            tasks.start_soon(
                connection_loop, options.port, number, deadline, stats, options.lifetime
            )
        for number in range(options.publishers):
            tasks.start_soon(publisher, options.port, number, deadline, stats)
    report = asdict(stats)
    report["cpu_seconds"] = round(time.process_time(), 1)
    report["failures"] = dict(stats.failures.most_common(10))
    report["failure_count"] = sum(stats.failures.values())
    print(json.dumps(report), flush=True)


# --- the long-lived mode -----------------------------------------------------------------------

LONG_ROOMS = 10
#: Rounds the ticker may publish ahead of the slowest source (a broadcast buffers 256).
WINDOW = 16
SELECTION = "{ i s nested { i s } }"
#: The ticker starts once every subscription is attached, or after this many seconds.
READY_TIMEOUT = 60.0
#: Default ``--rate``: events a second per subscription (300 x 20 = 6,000 a second).
RATE = 20.0


def long_lived_plan(number: int) -> tuple[str, str, str]:
    """Subprotocol, field and room of long-lived subscription ``number``."""
    protocol = "graphql-ws" if number % 2 else "graphql-transport-ws"
    field = "sharedItems" if number % 4 < 2 else "items"
    return protocol, field, str(number % LONG_ROOMS)


def item(room: str, i: int) -> dict[str, Any]:
    """Event ``i`` on ``room`` as the client must receive it (``SELECTION``)."""
    return {"i": i, "s": f"room {room}, event {i}", "nested": {"i": -i, "s": f"detail {i}"}}


@dataclass
class Mark:
    """The server at one point of the stream."""

    seconds: float
    rss_mib: float
    tasks: int
    events: int


class Feed:
    """The long-lived app's sources, their progress, and the ticker that feeds them."""

    def __init__(self, subscriptions: int, rounds: int, rate: float) -> None:
        self.subscriptions = subscriptions
        self.rounds = rounds
        self.interval = 1 / rate if rate > 0 else 0.0
        plans = [long_lived_plan(number) for number in range(subscriptions)]
        self.shared = sum(field == "sharedItems" for _, field, _ in plans)
        self.unshared = subscriptions - self.shared
        self.hubs = len({room for _, field, room in plans if field == "sharedItems"})
        self.broadcast = Broadcast()
        #: The last round each running source (resolver call) has passed on.
        self.progress: dict[object, int] = {}
        self.sources: Counter[str] = Counter()
        self.marks: dict[str, Mark] = {}
        self.finished = False

    def make_app(self) -> GraphQL:
        """The long-lived app: ``items`` and ``sharedItems`` over the in-memory broadcast."""
        schema = Schema(
            """
            type Query { hello: String! }
            type Item { i: Int! s: String! nested: Item }
            type Subscription {
              items(room: String!): Item!
              sharedItems(room: String!): Item!
            }
            """
        )
        schema.field("Query.hello")(lambda root, info: "world")
        schema.field("Subscription.items")(partial(self.source, kind="items"))
        schema.field("Subscription.sharedItems", shared=True)(
            partial(self.source, kind="sharedItems")
        )
        limits = Limits(max_connections=self.subscriptions * 2, keep_alive_interval=15.0)
        return GraphQL(schema, broadcast=self.broadcast, limits=limits)

    async def source(
        self, root: Any, info: Any, room: str, *, kind: str
    ) -> AsyncIterator[dict[str, Any]]:
        """Yield the room's events until the last one (one call per hub when shared)."""
        token = object()
        async with info.context.broadcast.subscribe(f"items:{room}") as stream:
            self.progress[token] = -1
            self.sources[kind] += 1
            try:
                async for message in stream:
                    yield message
                    self.progress[token] = message["i"]
                    if message["last"]:
                        return
            finally:
                del self.progress[token]
                self.sources[kind] -= 1

    def ready(self, server: Any) -> bool:
        attached = sum(len(hub.subscribers) for hub in server.fanout.hubs.values())
        return (
            self.sources["items"] == self.unshared
            and self.sources["sharedItems"] == self.hubs
            and attached == self.shared
        )

    def passed(self) -> int:
        """Rounds every running source has passed on (all of them once the feed finished)."""
        if self.finished:
            return self.rounds
        if "start" not in self.marks or not self.progress:
            return 0
        return min(self.progress.values()) + 1

    def events(self) -> int:
        return self.passed() * self.subscriptions

    def mark(self, name: str, started: float, rounds: int) -> None:
        self.marks[name] = Mark(
            seconds=round(time.monotonic() - started, 1),
            rss_mib=round(rss_mib(), 1),
            tasks=len(anyio.get_running_tasks()),
            events=rounds * self.subscriptions,
        )
        print(f"[soak] {name}: {self.marks[name]}", flush=True)

    async def wait_passed(self, rounds: int) -> None:
        """Wait until every running source has passed on the first ``rounds`` rounds."""
        while self.progress and min(self.progress.values()) + 1 < rounds:  # noqa: ASYNC110
            await anyio.sleep(0.005)  # polled: sources do not signal each event

    async def run(self, app: GraphQL, started: float) -> None:
        """Wait for every subscription, publish every round, wait for every source to end."""
        server = app.server
        with anyio.move_on_after(READY_TIMEOUT):
            while not self.ready(server):  # noqa: ASYNC110 - counters, nothing signals them
                await anyio.sleep(0.05)
        self.mark("start", started, 0)
        rooms = [str(room) for room in range(LONG_ROOMS)]
        next_round = time.monotonic()
        for i in range(self.rounds):
            if i == self.rounds // 2:
                await self.wait_passed(i)
                self.mark("half", started, i)
            await self.wait_passed(i + 1 - WINDOW)
            last = i == self.rounds - 1
            for room in rooms:
                await self.broadcast.publish(f"items:{room}", {**item(room, i), "last": last})
            next_round += self.interval
            delay = next_round - time.monotonic()
            if delay > 0:
                await anyio.sleep(delay)
            else:
                next_round = time.monotonic()
                await anyio.lowlevel.checkpoint()
        while self.progress:  # noqa: ASYNC110 - a dict, nothing signals it
            await anyio.sleep(0.01)
        self.finished = True
        self.mark("end", started, self.rounds)


async def run_long_lived_server(options: argparse.Namespace) -> dict[str, Any]:
    """Serve the long-lived app, feed it, run the clients' process, measure what is left."""
    logs = LogCounter()
    logging.getLogger().addHandler(logs)
    logging.getLogger("anyql").setLevel(logging.DEBUG)  # counted, never printed
    rounds = -(-options.events // options.subscriptions)
    feed = Feed(options.subscriptions, rounds, options.rate)
    app = feed.make_app()
    samples: list[Sample] = []
    started = time.monotonic()
    async with anyio.create_task_group() as tasks:
        port = await tasks.start(partial(serve, app, port=0))
        tasks.start_soon(sample_forever, app, started, options.sample_every, samples, feed.events)
        await anyio.wait_all_tasks_blocked()
        idle_tasks, idle_rss = len(anyio.get_running_tasks()), rss_mib()
        async with anyio.create_task_group() as feeding:
            feeding.start_soon(feed.run, app, started)
            clients = await run_clients_process(port, options)
            feeding.cancel_scope.cancel()  # only if the clients gave up before the end
        server = app.server
        assert server is not None
        with anyio.move_on_after(30):
            while server.connections:  # noqa: ASYNC110 - a counter, nothing signals it
                await anyio.sleep(0.1)
        await anyio.sleep(1)
        await anyio.wait_all_tasks_blocked()
        end_tasks, end_rss = len(anyio.get_running_tasks()), rss_mib()
        tasks.cancel_scope.cancel()
    marks = {name: asdict(mark) for name, mark in feed.marks.items()}
    half, end = feed.marks.get("half"), feed.marks.get("end")
    start = feed.marks.get("start")
    growth = per_million = duration = rate = None
    if half is not None and end is not None and end.events > half.events:
        growth = round(end.rss_mib - half.rss_mib, 1)
        per_million = round(growth / (end.events - half.events) * 1e6, 1)
    if start is not None and end is not None and end.seconds > start.seconds:
        duration = round(end.seconds - start.seconds, 1)
        rate = round(end.events / duration)
    return {
        "mode": "long-lived",
        "backend": options.backend,
        "subscriptions": options.subscriptions,
        "shared_subscriptions": feed.shared,
        "rooms": LONG_ROOMS,
        "selection": SELECTION,
        "events_per_subscription": rounds,
        "events_expected": rounds * options.subscriptions,
        "events_delivered": clients.get("events"),
        "rate_limit_per_subscription": options.rate or None,
        "time_limit_seconds": options.seconds,
        "feed_finished": feed.finished,
        "stream_seconds": duration,
        "events_per_second": rate,
        "marks": marks,
        "rss_growth_second_half_mib": growth,
        "rss_growth_per_million_events_mib": per_million,
        **_server_report((idle_tasks, idle_rss), (end_tasks, end_rss), samples, logs, clients),
    }


@dataclass
class LongLivedStats:
    connections: int = 0
    completed: int = 0
    events: int = 0
    failures: Counter[str] = field(default_factory=Counter)


async def long_lived_subscription(
    port: int, number: int, rounds: int, stats: LongLivedStats
) -> None:
    """Subscribe once and check every event until the server completes the subscription."""
    name, field, room = long_lived_plan(number)
    protocol = Protocol(name)
    await anyio.sleep(random.uniform(0, 2))  # ramp up
    socket = await Socket.open(port, protocol.name)
    try:
        stats.connections += 1
        await socket.send({"type": "connection_init"})
        ack = await socket.receive()
        if ack["type"] != "connection_ack":
            raise RuntimeError(f"no ack: {ack}")
        query = f'subscription {{ {field}(room: "{room}") {SELECTION} }}'
        await socket.send(protocol.start("items", query))
        received = 0
        while True:
            message = await socket.receive()
            if message == {"id": "items", "type": "complete"}:
                break
            payload = {"data": {field: item(room, received)}}
            if message != {"id": "items", "type": protocol.next, "payload": payload}:
                raise RuntimeError(f"event {received}: unexpected {str(message)[:80]}")
            received += 1
            stats.events += 1
        if received != rounds:
            raise RuntimeError(f"completed after {received} events instead of {rounds}")
        stats.completed += 1
    except BaseException:
        await anyio.aclose_forcefully(socket.stream)
        raise
    await socket.close()


async def guarded(port: int, number: int, rounds: int, stats: LongLivedStats) -> None:
    try:
        await long_lived_subscription(port, number, rounds, stats)
    except (OSError, RuntimeError, anyio.BrokenResourceError) as exc:
        stats.failures[type(exc).__name__ + ": " + str(exc)[:80]] += 1


async def run_long_lived_clients(options: argparse.Namespace) -> None:
    """The long-lived clients' role: print one JSON line of statistics at the end."""
    stats = LongLivedStats()
    rounds = -(-options.events // options.subscriptions)
    with anyio.move_on_after(options.seconds):
        async with anyio.create_task_group() as tasks:
            for number in range(options.subscriptions):
                tasks.start_soon(guarded, options.port, number, rounds, stats)
    missing = options.subscriptions - stats.completed - sum(stats.failures.values())
    if missing:
        stats.failures[f"not complete after {options.seconds:g} s"] += missing
    report = asdict(stats)
    report["cpu_seconds"] = round(time.process_time(), 1)
    report["failures"] = dict(stats.failures.most_common(10))
    report["failure_count"] = sum(stats.failures.values())
    print(json.dumps(report), flush=True)


# --- command line ------------------------------------------------------------------------------


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="how long the load runs (default 600); with --long-lived, the most the run may"
        " take (default 3600)",
    )
    parser.add_argument("--connections", type=int, default=2000, help="client connections")
    parser.add_argument("--publishers", type=int, default=4, help="HTTP publishing clients")
    parser.add_argument(
        "--lifetime", type=float, default=30.0, help="mean seconds before a client reconnects"
    )
    parser.add_argument("--sample-every", type=float, default=10.0, help="seconds per sample")
    parser.add_argument("--backend", choices=["trio", "asyncio"], default="trio")
    parser.add_argument("--json", type=Path, default=None, help="write the report here")
    parser.add_argument("--role", choices=["server", "clients"], default="server")
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    long_lived = parser.add_argument_group(
        "long-lived mode", "a few hundred subscriptions, each open for the whole run"
    )
    long_lived.add_argument(
        "--long-lived", action="store_true", help="run the long-lived mode instead of the churn"
    )
    long_lived.add_argument(
        "--subscriptions", type=int, default=300, help="subscriptions (one per connection)"
    )
    long_lived.add_argument(
        "--events",
        type=int,
        default=1_000_000,
        help="events delivered in all (rounded up to a multiple of --subscriptions)",
    )
    long_lived.add_argument(
        "--rate",
        type=float,
        default=RATE,
        help=f"at most this many events a second per subscription; 0: no limit (default {RATE:g})",
    )
    options = parser.parse_args(argv)
    if options.seconds is None:
        options.seconds = 3600.0 if options.long_lived else 600.0
    return options


def main(argv: list[str] | None = None) -> int:
    """Run the soak; print (and optionally write) the report.

    Returns:
        0 when nothing crashed, no task leaked and no client failed; 1 otherwise.
    """
    options = parse(argv)
    if options.role == "clients":
        clients = run_long_lived_clients if options.long_lived else run_clients
        anyio.run(clients, options, backend=options.backend)
        return 0
    server = run_long_lived_server if options.long_lived else run_server
    report = anyio.run(server, options, backend=options.backend)
    summary = {key: value for key, value in report.items() if key != "samples"}
    print(json.dumps(summary, indent=2))
    if options.json is not None:
        options.json.write_text(json.dumps(report, indent=2) + "\n")
    clients = report["clients"]
    healthy = (
        not clients.get("crashed")
        and clients.get("failure_count", 1) == 0
        and report["leaked_tasks"] == 0
        and report["server_errors_logged"] == 0
        and report.get("events_delivered", 0) == report.get("events_expected", 0)
    )
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
