"""The load generator: raw graphql-transport-ws subscribers in worker processes.

Owns ``worker_main`` (the multiprocessing target) and the asyncio ``Protocol`` each
subscriber is. A worker opens its share of the connections (a bounded number of handshakes
at once), answers pings, and counts what arrives: liveness events (``seq < 0``) mark a
subscriber live; measured events (``seq >= 0``) add one publish-to-receive latency sample
(``time.time()`` at receipt minus the event's ``sentAt``, same machine clock). In churn mode
one connection loops subscribe -> first event -> complete on a fresh topic each cycle.

The driver talks to a worker over a ``Pipe`` with small tuples: ``("status",)``,
``("reset",)``, ``("collect",)``, ``("stop",)``; each gets one reply. Imports the standard
library, orjson and ``_frames`` only; never anyql.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import orjson

from ._frames import (
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    SUBSCRIBE_QUERY,
    FrameParser,
    encode_frame,
)

__all__ = ["WorkerSpec", "worker_main"]

#: Handshakes in flight at once per worker (keeps the listen backlog from overflowing).
HANDSHAKES_AT_ONCE = 64


@dataclass(frozen=True)
class WorkerSpec:
    """What one worker process does."""

    host: str
    port: int
    path: str
    connections: int
    topic: str
    #: 0 for fan-out; otherwise subscribe/complete cycles on one connection.
    churn_cycles: int = 0


@dataclass
class Stats:
    """Counters of one worker; the measured part is cleared by ``reset``."""

    connected: int = 0
    acked: int = 0
    live: int = 0
    closed: int = 0
    failed: int = 0
    close_codes: Counter[int] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    cycles: int = 0
    received: int = 0
    latencies: array[float] = field(default_factory=lambda: array("d"))
    first_receive: float = 0.0
    last_receive: float = 0.0

    def reset(self) -> None:
        self.received = 0
        self.latencies = array("d")
        self.first_receive = self.last_receive = 0.0

    def note_error(self, text: str) -> None:
        if len(self.errors) < 20:
            self.errors.append(text)


def _message(value: dict[str, Any]) -> bytes:
    return encode_frame(orjson.dumps(value), OP_TEXT, masked=True)


class Subscriber(asyncio.Protocol):
    """One WebSocket connection running one subscription (or churning through many)."""

    def __init__(self, spec: WorkerSpec, stats: Stats, handshaken: asyncio.Event) -> None:
        self.spec = spec
        self.stats = stats
        self.handshaken = handshaken
        self.transport: asyncio.Transport | None = None
        self.head = b""
        self.parser: FrameParser | None = None
        self.live = False
        self.cycle = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            (
                f"GET {self.spec.path} HTTP/1.1\r\nHost: {self.spec.host}:{self.spec.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                "Sec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n"
            ).encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.stats.closed += 1
        if self.parser is None:
            self.stats.failed += 1
            self.handshaken.set()

    def data_received(self, data: bytes) -> None:
        if self.parser is None:
            self._handshake(data)
            return
        now = time.time()
        for opcode, payload in self.parser.feed(data):
            if opcode == OP_TEXT:
                self._text(payload, now)
            elif opcode == OP_PING:
                self._write(encode_frame(payload, OP_PONG, masked=True))
            elif opcode == OP_CLOSE:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                self.stats.close_codes[code] += 1
                if self.transport is not None:
                    self.transport.close()

    def _handshake(self, data: bytes) -> None:
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            return
        status = self.head.split(b"\r\n", 1)[0]
        if b" 101 " not in status + b" ":
            self.stats.note_error(f"handshake refused: {status.decode(errors='replace')}")
            self.stats.failed += 1
            self.handshaken.set()
            if self.transport is not None:
                self.transport.close()
            return
        self.stats.connected += 1
        self.parser = FrameParser()
        rest = self.head[end + 4 :]
        self.head = b""
        self._write(_message({"type": "connection_init", "payload": {}}))
        if rest:
            self.data_received(rest)

    def _write(self, frame: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(frame)

    def _subscribe(self, id: str, topic: str) -> bytes:
        return _message(
            {
                "id": id,
                "type": "subscribe",
                "payload": {"query": SUBSCRIBE_QUERY, "variables": {"topic": topic}},
            }
        )

    def _text(self, payload: bytes, now: float) -> None:
        message = orjson.loads(payload)
        kind = message.get("type")
        if kind == "next":
            self._next(message, now)
        elif kind == "connection_ack":
            self.stats.acked += 1
            self.handshaken.set()
            if self.spec.churn_cycles:
                self._write(self._subscribe("c0", "churn-0"))
            else:
                self._write(self._subscribe("1", self.spec.topic))
        elif kind == "ping":
            self._write(_message({"type": "pong"}))
        elif kind == "error":
            self.stats.note_error(f"error for {message.get('id')}: {message.get('payload')}")
            if self.spec.churn_cycles and message.get("id") == f"c{self.cycle}":
                self._next_cycle()
        elif kind == "complete" and not self.spec.churn_cycles:
            self.stats.note_error("the server completed the subscription")

    def _next(self, message: dict[str, Any], now: float) -> None:
        payload = message["payload"]
        event = (payload.get("data") or {}).get("events")
        if event is None:
            self.stats.note_error(f"next without data: {payload}")
            return
        seq = event["seq"]
        if self.spec.churn_cycles:
            if message["id"] == f"c{self.cycle}":
                self._next_cycle()
            return
        if seq < 0:
            if not self.live:
                self.live = True
                self.stats.live += 1
            return
        stats = self.stats
        stats.received += 1
        stats.latencies.append(now - event["sentAt"])
        if not stats.first_receive:
            stats.first_receive = now
        stats.last_receive = now

    def _next_cycle(self) -> None:
        old = f"c{self.cycle}"
        self.cycle += 1
        self.stats.cycles = self.cycle
        self.stats.last_receive = time.time()
        frames = _message({"id": old, "type": "complete"})
        if self.cycle < self.spec.churn_cycles:
            frames += self._subscribe(f"c{self.cycle}", f"churn-{self.cycle}")
        self._write(frames)


async def _open_all(spec: WorkerSpec, stats: Stats, subscribers: list[Subscriber]) -> None:
    loop = asyncio.get_running_loop()
    slots = asyncio.Semaphore(HANDSHAKES_AT_ONCE)

    async def open_one() -> None:
        async with slots:
            handshaken = asyncio.Event()
            try:
                _, protocol = await loop.create_connection(
                    lambda: Subscriber(spec, stats, handshaken), spec.host, spec.port
                )
            except OSError as error:
                stats.failed += 1
                stats.note_error(f"connect failed: {error!r}")
                return
            subscribers.append(protocol)
            try:
                await asyncio.wait_for(handshaken.wait(), 30)
            except TimeoutError:
                stats.note_error("no connection_ack within 30 s")

    async with asyncio.TaskGroup() as group:
        for _ in range(spec.connections):
            group.create_task(open_one())


def _answer(command: str, stats: Stats) -> Any:
    if command == "status":
        return {
            "connected": stats.connected,
            "acked": stats.acked,
            "live": stats.live,
            "closed": stats.closed,
            "failed": stats.failed,
            "received": stats.received,
            "cycles": stats.cycles,
            "last_receive": stats.last_receive,
        }
    if command == "reset":
        stats.reset()
        return "ok"
    if command == "collect":
        return {
            "received": stats.received,
            "latencies": stats.latencies.tobytes(),
            "first_receive": stats.first_receive,
            "last_receive": stats.last_receive,
            "closed": stats.closed,
            "close_codes": dict(stats.close_codes),
            "errors": list(stats.errors),
        }
    raise ValueError(f"unknown command {command!r}")


async def _serve(spec: WorkerSpec, pipe: Connection) -> None:
    loop = asyncio.get_running_loop()
    stats = Stats()
    subscribers: list[Subscriber] = []
    stopped = asyncio.Event()

    def on_command() -> None:
        while pipe.poll():
            command = pipe.recv()[0]
            if command == "stop":
                stopped.set()
                return
            pipe.send(_answer(command, stats))

    loop.add_reader(pipe.fileno(), on_command)
    async with asyncio.TaskGroup() as group:
        opening = group.create_task(_open_all(spec, stats, subscribers))
        await stopped.wait()
        opening.cancel()
    loop.remove_reader(pipe.fileno())
    for subscriber in subscribers:
        if subscriber.transport is not None:
            subscriber.transport.abort()
    await asyncio.sleep(0)
    pipe.send("stopped")


def worker_main(spec: WorkerSpec, pipe: Connection) -> None:
    """Run one load-generator process until the driver sends ``("stop",)``.

    Args:
        spec: what to connect to and how many connections to open.
        pipe: this worker's end of the command pipe.
    """
    asyncio.run(_serve(spec, pipe))
