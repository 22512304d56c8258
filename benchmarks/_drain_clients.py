"""The drain benchmark's clients: subscribers on server A that move to server B on a 1001.

Owns ``worker_main`` (the multiprocessing target), ``DrainSpec`` and the asyncio
``Protocol`` each connection is. A worker opens its share of the N connections to server A
(a bounded number of handshakes at once, as ``_generator`` does, with the same browser-like
upgrade request), sends ``connection_init``, subscribes (graphql-transport-ws) and waits for
the first event. When A closes a connection with 1001 the client notes the time
(``time.monotonic()``, which every process on Linux reads from the same CLOCK_MONOTONIC),
answers the close frame, and at once (no backoff: the worst case for B) opens a new
connection to server B and subscribes there, noting when B's 101 arrived (B's accept time
as the client sees it) and when B's first event did. Any other ending (another close code,
a connection lost without a close frame, a refused handshake) is counted by kind.

The driver talks to a worker over a ``Pipe``: ``("status",)`` (counts), ``("collect",)``
(one record per connection), ``("stop",)``; each gets one reply. Imports the standard
library, orjson, ``_frames`` and ``_generator``; never anyql.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import math
import os
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import orjson

from ._frames import OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, FrameParser, Inflater, encode_frame
from ._generator import HANDSHAKE_TIMEOUT, HANDSHAKES_AT_ONCE, browser_handshake

__all__ = ["GOING_AWAY", "QUERY", "DrainSpec", "worker_main"]

#: The subscription every client runs (``benchmarks/drain_app.py``).
QUERY = "subscription Held { held }"
GOING_AWAY = 1001
#: The code recorded for a connection that ended without a close frame.
LOST = 1006


@dataclass(frozen=True)
class DrainSpec:
    """What one worker process does."""

    host: str
    port_a: int
    port_b: int
    path: str
    connections: int
    #: CPUs to pin this worker process to; empty: leave the affinity alone.
    cpus: tuple[int, ...] = ()
    #: Offer permessage-deflate as browsers do.
    offer_deflate: bool = True


class Record:
    """One client: live on A; closed by A (when, which code); accepted and live on B."""

    __slots__ = ("accepted_b", "closed_at", "code", "live_a", "live_b")

    def __init__(self) -> None:
        self.live_a = False
        self.closed_at = math.nan
        self.code = 0
        self.accepted_b = math.nan
        self.live_b = math.nan


@dataclass
class Worker:
    """One worker's connections, records and failures."""

    spec: DrainSpec
    records: list[Record] = field(default_factory=list)
    clients: list[Client] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    reconnecting: set[asyncio.Task[None]] = field(default_factory=set)
    stopping: bool = False

    def fail(self, kind: str, detail: str = "") -> None:
        """Count a failure by kind; keep the first 20 with their detail."""
        self.failures[kind] += 1
        if len(self.errors) < 20:
            self.errors.append(f"{kind}: {detail}" if detail else kind)

    def reconnect(self, record: Record) -> None:
        """Open the connection to B now (the caller is in a protocol callback)."""
        task = asyncio.get_running_loop().create_task(self._open_b(record))
        self.reconnecting.add(task)
        task.add_done_callback(self.reconnecting.discard)

    async def _open_b(self, record: Record) -> None:
        spec = self.spec
        try:
            _, client = await asyncio.get_running_loop().create_connection(
                lambda: Client(self, record, "B"), spec.host, spec.port_b
            )
        except OSError as error:
            self.fail(f"B: connect {_errno_name(error)}", str(error))
            return
        self.clients.append(client)

    async def open_all(self) -> None:
        """Open this worker's connections to A; each waits until live (or failed)."""
        loop = asyncio.get_running_loop()
        slots = asyncio.Semaphore(HANDSHAKES_AT_ONCE)
        spec = self.spec

        async def open_one() -> None:
            async with slots:
                record, ready = Record(), asyncio.Event()
                self.records.append(record)
                try:
                    _, client = await loop.create_connection(
                        lambda: Client(self, record, "A", ready), spec.host, spec.port_a
                    )
                except OSError as error:
                    self.fail(f"A: connect {_errno_name(error)}", str(error))
                    return
                self.clients.append(client)
                try:
                    await asyncio.wait_for(ready.wait(), HANDSHAKE_TIMEOUT)
                except TimeoutError:
                    self.fail(f"A: no first event within {HANDSHAKE_TIMEOUT:g} s")

        async with asyncio.TaskGroup() as group:
            for _ in range(spec.connections):
                group.create_task(open_one())

    def status(self) -> dict[str, int]:
        records = self.records
        return {
            "opened": len(records),
            "live_a": sum(r.live_a for r in records),
            "closed_1001": sum(r.code == GOING_AWAY for r in records),
            "closed_other": sum(r.code not in (0, GOING_AWAY) for r in records),
            "accepted_b": sum(not math.isnan(r.accepted_b) for r in records),
            "live_b": sum(not math.isnan(r.live_b) for r in records),
            "failed": sum(self.failures.values()),
        }

    def collect(self) -> dict[str, Any]:
        records = self.records
        return {
            "live_a": [r.live_a for r in records],
            "closed_at": [r.closed_at for r in records],
            "code": [r.code for r in records],
            "accepted_b": [r.accepted_b for r in records],
            "live_b": [r.live_b for r in records],
            "failures": dict(self.failures),
            "errors": list(self.errors),
        }


def _errno_name(error: OSError) -> str:
    return errno.errorcode.get(error.errno or 0, type(error).__name__)


def _message(value: dict[str, Any]) -> bytes:
    return encode_frame(orjson.dumps(value), OP_TEXT, masked=True)


class Client(asyncio.Protocol):
    """One WebSocket connection to server ``"A"`` or ``"B"`` running one subscription."""

    def __init__(
        self, worker: Worker, record: Record, server: str, ready: asyncio.Event | None = None
    ) -> None:
        self.worker = worker
        self.record = record
        self.server = server
        self.ready = ready
        self.transport: asyncio.Transport | None = None
        self.head = b""
        self.parser: FrameParser | None = None
        self.live = False
        #: The connection's end is accounted for (a close frame, a refusal).
        self.ended = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        spec = self.worker.spec
        port = spec.port_a if self.server == "A" else spec.port_b
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(browser_handshake(spec.host, port, spec.path, key, spec.offer_deflate))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.ended or self.worker.stopping:
            return
        self.ended = True
        record = self.record
        if self.server == "A" and record.live_a:
            record.code, record.closed_at = LOST, time.monotonic()
            self.worker.fail("A: lost without a close frame", repr(exc) if exc else "")
        else:
            where = "before the first event" if not self.live else "while live"
            self.worker.fail(f"{self.server}: closed {where}", repr(exc) if exc else "")
        self._wake()

    def _wake(self) -> None:
        if self.ready is not None:
            self.ready.set()

    def _end(self) -> None:
        self.ended = True
        self._wake()
        if self.transport is not None:
            self.transport.close()

    def _write(self, frame: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(frame)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        if self.parser is None:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            head, data = self.head[:end], self.head[end + 4 :]
            self.head = b""
            if not self._handshake(head, now):
                return
            if not data:
                return
        assert self.parser is not None
        try:
            messages = self.parser.feed(data)
        except (ValueError, zlib.error) as error:
            self.worker.fail(f"{self.server}: unreadable frame", str(error))
            self._end()
            return
        for opcode, payload in messages:
            if opcode == OP_TEXT:
                self._text(orjson.loads(payload), now)
            elif opcode == OP_PING:
                self._write(encode_frame(payload, OP_PONG, masked=True))
            elif opcode == OP_CLOSE:
                self._close(payload, now)
                return

    def _handshake(self, head: bytes, now: float) -> bool:
        lines = head.decode("latin-1").split("\r\n")
        if " 101 " not in lines[0] + " ":
            self.worker.fail(f"{self.server}: handshake refused", lines[0])
            self._end()
            return False
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        try:
            inflater = Inflater.from_response(headers.get("sec-websocket-extensions", ""))
        except ValueError as error:
            self.worker.fail(f"{self.server}: bad extensions", str(error))
            self._end()
            return False
        if self.server == "B":
            self.record.accepted_b = now
        self.parser = FrameParser(inflater)
        self._write(_message({"type": "connection_init", "payload": {}}))
        return True

    def _text(self, message: dict[str, Any], now: float) -> None:
        kind = message.get("type")
        if kind == "connection_ack":
            self._write(_message({"id": "1", "type": "subscribe", "payload": {"query": QUERY}}))
        elif kind == "next":
            if not self.live:
                self.live = True
                if self.server == "A":
                    self.record.live_a = True
                    self._wake()
                else:
                    self.record.live_b = now
        elif kind == "ping":
            self._write(_message({"type": "pong"}))
        elif kind in ("error", "complete"):
            self.worker.fail(f"{self.server}: {kind}", str(message.get("payload"))[:200])

    def _close(self, payload: bytes, now: float) -> None:
        code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
        self._write(encode_frame(payload[:2], OP_CLOSE, masked=True))  # the closing handshake
        self._end()
        if self.worker.stopping:
            return
        if self.server == "B":
            self.worker.fail(f"B: closed with {code}")
            return
        record = self.record
        record.code, record.closed_at = code, now
        if code == GOING_AWAY and record.live_a:
            self.worker.reconnect(record)
        else:
            self.worker.fail(f"A: closed with {code}")


async def _serve(spec: DrainSpec, pipe: Connection) -> None:
    loop = asyncio.get_running_loop()
    worker = Worker(spec)
    stopped = asyncio.Event()

    def on_command() -> None:
        while pipe.poll():
            command = pipe.recv()[0]
            if command == "stop":
                stopped.set()
                return
            if command == "status":
                pipe.send(worker.status())
            elif command == "collect":
                pipe.send(worker.collect())
            else:
                pipe.send(f"unknown command {command!r}")

    loop.add_reader(pipe.fileno(), on_command)
    opening = loop.create_task(worker.open_all())
    await stopped.wait()
    worker.stopping = True
    opening.cancel()
    for task in list(worker.reconnecting):
        task.cancel()
    loop.remove_reader(pipe.fileno())
    for client in worker.clients:
        if client.transport is not None:
            client.transport.abort()
    await asyncio.sleep(0)
    pipe.send("stopped")


def worker_main(spec: DrainSpec, pipe: Connection) -> None:
    """Run one client process until the driver sends ``("stop",)``.

    Args:
        spec: the two servers and how many connections to open.
        pipe: this worker's end of the command pipe.
    """
    if spec.cpus:
        os.sched_setaffinity(0, spec.cpus)
    asyncio.run(_serve(spec, pipe))
