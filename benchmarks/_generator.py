"""The load generator: raw graphql-transport-ws or graphql-sse subscribers in worker processes.

Owns ``worker_main`` (the multiprocessing target) and the asyncio ``Protocol`` each
subscriber is (``WorkerSpec.transport`` chooses). A WebSocket subscriber looks like a
browser's graphql-ws client: it sends the upgrade headers Chrome sends (``Origin``,
``User-Agent``, ``Sec-WebSocket-Extensions: permessage-deflate;
client_max_window_bits``...; ``browser_handshake``) and subscribes with an operation id
that is a fresh UUID4, so no two connections share one and no server can reuse one encoded
frame per id. When the server agrees to permessage-deflate the subscriber inflates what
it receives (``_frames.Inflater``) and counts the connection as ``deflated``. A worker
opens its share of the connections (a bounded number of handshakes at once), answers
pings, and counts what arrives: liveness events (``seq < 0``) mark a subscriber live;
measured events (``seq >= 0``) add one publish-to-receive latency sample (``time.time()``
at receipt minus the event's ``sentAt``, same machine clock). In churn
mode one connection loops subscribe -> first event -> complete on a fresh topic (and a
fresh UUID) each cycle. Failures are counted by kind (refused handshakes by status line,
connect errors such as EMFILE by errno name, handshakes with no ack in time), and the
first one is kept with its wall-clock time.

An SSE subscriber (``SSESubscriber``) is graphql-sse's client in distinct connections mode
as a browser's ``fetch`` sends it (``sse_request``): one HTTP/1.1 connection, one ``POST``
of the subscription with ``Accept: text/event-stream``; a ``200`` with an event-stream
body counts as connected and acked. It reads the body with ``_sse`` (chunked decoding and a
minimal event-stream parser) and counts ``event: next`` deliveries exactly as the
WebSocket subscriber counts ``next`` messages; ``event: complete`` is an error here (the
subscription never ends in a fan-out run). Churn runs over WebSocket only.

The driver talks to a worker over a ``Pipe`` with small tuples: ``("status",)``,
``("reset",)``, ``("collect",)``, ``("failures",)``, ``("stop",)``; each gets one reply. A
worker pins itself to ``WorkerSpec.cpus`` when given. Imports the standard library, orjson,
``_frames`` and ``_sse`` only; never anyql.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import os
import time
import uuid
import zlib
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
    Inflater,
    encode_frame,
)
from ._sse import ChunkedBody, EventStream

__all__ = [
    "TRANSPORTS",
    "USER_AGENT",
    "SSESubscriber",
    "WorkerSpec",
    "browser_handshake",
    "sse_request",
    "worker_main",
]

#: The subscription transports a worker speaks: graphql-transport-ws, graphql-sse.
TRANSPORTS = ("ws", "sse")

#: Handshakes in flight at once per worker (keeps the listen backlog from overflowing).
HANDSHAKES_AT_ONCE = 64
#: Seconds a connection may take from connect to ``connection_ack``.
HANDSHAKE_TIMEOUT = 30.0
#: A desktop Chrome's User-Agent (what graphql-ws in a browser tab sends).
USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)


def browser_handshake(
    host: str, port: int, path: str, key: str, offer_deflate: bool = True
) -> bytes:
    """The upgrade request Chrome sends for ``new WebSocket(url, "graphql-transport-ws")``.

    Same headers, same order, from a page served by the same origin as the endpoint.

    Args:
        host: the server's address.
        port: the server's port.
        path: the endpoint's path.
        key: the base64 ``Sec-WebSocket-Key``.
        offer_deflate: send Chrome's permessage-deflate offer (False: no extensions).

    Returns:
        The request head, ready to write.
    """
    authority = f"{host}:{port}"
    headers = [
        f"GET {path} HTTP/1.1",
        f"Host: {authority}",
        "Connection: Upgrade",
        "Pragma: no-cache",
        "Cache-Control: no-cache",
        f"User-Agent: {USER_AGENT}",
        "Upgrade: websocket",
        f"Origin: http://{authority}",
        "Sec-WebSocket-Version: 13",
        "Accept-Encoding: gzip, deflate, br, zstd",
        "Accept-Language: en-US,en;q=0.9",
        f"Sec-WebSocket-Key: {key}",
    ]
    if offer_deflate:
        headers.append("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits")
    headers.append("Sec-WebSocket-Protocol: graphql-transport-ws")
    return ("\r\n".join(headers) + "\r\n\r\n").encode()


def sse_request(host: str, port: int, path: str, body: bytes) -> bytes:
    """The request Chrome sends for graphql-sse's ``fetch`` in distinct connections mode.

    A same-origin ``POST`` of the JSON operation with ``Accept: text/event-stream``, with
    the headers a page served by the endpoint's origin adds (``Origin``, ``Sec-Fetch-*``,
    ``Referer``...), in Chrome's order.

    Args:
        host: the server's address.
        port: the server's port.
        path: the endpoint's path.
        body: the JSON GraphQL request.

    Returns:
        The request head and body, ready to write.
    """
    authority = f"{host}:{port}"
    headers = [
        f"POST {path} HTTP/1.1",
        f"Host: {authority}",
        "Connection: keep-alive",
        f"Content-Length: {len(body)}",
        f"User-Agent: {USER_AGENT}",
        "Accept: text/event-stream",
        "Content-Type: application/json; charset=utf-8",
        f"Origin: http://{authority}",
        "Sec-Fetch-Site: same-origin",
        "Sec-Fetch-Mode: cors",
        "Sec-Fetch-Dest: empty",
        f"Referer: http://{authority}/",
        "Accept-Encoding: gzip, deflate, br, zstd",
        "Accept-Language: en-US,en;q=0.9",
    ]
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + body


def _response_headers(head: bytes) -> tuple[str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        headers[name] = f"{headers[name]}, {value.strip()}" if name in headers else value.strip()
    return lines[0], headers


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
    #: CPUs to pin this worker process to; empty: leave the affinity alone.
    cpus: tuple[int, ...] = ()
    #: Offer permessage-deflate as browsers do; False measures the servers without it.
    offer_deflate: bool = True
    #: ``"ws"`` (graphql-transport-ws) or ``"sse"`` (graphql-sse, distinct connections).
    transport: str = "ws"


@dataclass
class Stats:
    """Counters of one worker; the measured part is cleared by ``reset``."""

    connected: int = 0
    acked: int = 0
    live: int = 0
    closed: int = 0
    failed: int = 0
    #: Connections on which the server agreed to permessage-deflate.
    deflated: int = 0
    #: Failures by kind: a refused handshake's status line, ``connect: EMFILE``...
    failures: Counter[str] = field(default_factory=Counter)
    #: The first failure: ``(time.time(), what)``.
    first_failure: tuple[float, str] | None = None
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

    def note_failure(self, kind: str, detail: str = "") -> None:
        """Count a connection that never became a subscriber (kind: what failed)."""
        self.failed += 1
        self.failures[kind] += 1
        if self.first_failure is None:
            self.first_failure = (time.time(), f"{kind}: {detail}" if detail else kind)
        self.note_error(f"{kind}: {detail}" if detail else kind)


def _message(value: dict[str, Any]) -> bytes:
    return encode_frame(orjson.dumps(value), OP_TEXT, masked=True)


class _Counting:
    """What both transports' subscribers count: liveness, then each measured delivery."""

    stats: Stats
    live: bool

    def _count(self, payload: dict[str, Any], now: float) -> None:
        """Count one ``next`` result (``{"data": {"events": ...}}``) received at ``now``."""
        event = (payload.get("data") or {}).get("events")
        if event is None:
            self.stats.note_error(f"next without data: {payload}")
            return
        if event["seq"] < 0:
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


class Subscriber(_Counting, asyncio.Protocol):
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
        #: The running operation's id: a UUID4, as graphql-ws clients make them.
        self.operation = str(uuid.uuid4())
        self.acked = False
        #: Set once this connection is counted as failed (never twice).
        self.failed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        spec = self.spec
        transport.write(browser_handshake(spec.host, spec.port, spec.path, key, spec.offer_deflate))

    def connection_lost(self, exc: Exception | None) -> None:
        self.stats.closed += 1
        if not self.acked:
            kind = "closed before the 101" if self.parser is None else "closed before the ack"
            self.fail(kind, repr(exc) if exc else "")

    def fail(self, kind: str, detail: str = "") -> None:
        """Count this connection as failed (once) and wake whoever waits for its ack."""
        if not self.failed and not self.acked:
            self.failed = True
            self.stats.note_failure(kind, detail)
        self.handshaken.set()

    def data_received(self, data: bytes) -> None:
        if self.parser is None:
            self._handshake(data)
            return
        now = time.time()
        try:
            messages = self.parser.feed(data)
        except (ValueError, zlib.error) as error:  # RSV1 without deflate, or a bad stream
            self.stats.note_error(f"unreadable frame: {error}")
            if self.transport is not None:
                self.transport.abort()
            return
        for opcode, payload in messages:
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
        status, headers = _response_headers(self.head[:end])
        if " 101 " not in status + " ":
            self._refuse("handshake refused", status)
            return
        try:
            inflater = Inflater.from_response(headers.get("sec-websocket-extensions", ""))
        except ValueError as error:
            self._refuse("bad extensions", str(error))
            return
        if headers.get("sec-websocket-protocol", "").lower() != "graphql-transport-ws":
            self._refuse("no graphql-transport-ws", headers.get("sec-websocket-protocol", ""))
            return
        self.stats.connected += 1
        self.stats.deflated += inflater is not None
        self.parser = FrameParser(inflater)
        rest = self.head[end + 4 :]
        self.head = b""
        self._write(_message({"type": "connection_init", "payload": {}}))
        if rest:
            self.data_received(rest)

    def _refuse(self, kind: str, detail: str) -> None:
        self.fail(kind, detail)
        if self.transport is not None:
            self.transport.close()

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
            self.acked = True
            self.stats.acked += 1
            self.handshaken.set()
            topic = "churn-0" if self.spec.churn_cycles else self.spec.topic
            self._write(self._subscribe(self.operation, topic))
        elif kind == "ping":
            self._write(_message({"type": "pong"}))
        elif kind == "error":
            self.stats.note_error(f"error for {message.get('id')}: {message.get('payload')}")
            if self.spec.churn_cycles and message.get("id") == self.operation:
                self._next_cycle()
        elif kind == "complete" and not self.spec.churn_cycles:
            self.stats.note_error("the server completed the subscription")

    def _next(self, message: dict[str, Any], now: float) -> None:
        payload = message["payload"]
        if self.spec.churn_cycles:
            if (payload.get("data") or {}).get("events") is None:
                self.stats.note_error(f"next without data: {payload}")
            elif message["id"] == self.operation:
                self._next_cycle()
            return
        self._count(payload, now)

    def _next_cycle(self) -> None:
        old, self.operation = self.operation, str(uuid.uuid4())
        self.cycle += 1
        self.stats.cycles = self.cycle
        self.stats.last_receive = time.time()
        frames = _message({"id": old, "type": "complete"})
        if self.cycle < self.spec.churn_cycles:
            frames += self._subscribe(self.operation, f"churn-{self.cycle}")
        self._write(frames)


class SSESubscriber(_Counting, asyncio.Protocol):
    """One graphql-sse subscription in distinct connections mode: one HTTP connection."""

    def __init__(self, spec: WorkerSpec, stats: Stats, handshaken: asyncio.Event) -> None:
        self.spec = spec
        self.stats = stats
        self.handshaken = handshaken
        self.transport: asyncio.Transport | None = None
        self.head = b""
        #: The body's chunk decoder (None: not chunked, or no response head yet).
        self.chunked: ChunkedBody | None = None
        #: The body's event parser, from the response head on.
        self.events: EventStream | None = None
        self.live = False
        self.acked = False
        self.failed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        spec = self.spec
        body = orjson.dumps({"query": SUBSCRIBE_QUERY, "variables": {"topic": spec.topic}})
        transport.write(sse_request(spec.host, spec.port, spec.path, body))

    def connection_lost(self, exc: Exception | None) -> None:
        self.stats.closed += 1
        if not self.acked:
            self.fail("closed before the response", repr(exc) if exc else "")

    def fail(self, kind: str, detail: str = "") -> None:
        """Count this connection as failed (once) and wake whoever waits for its answer."""
        if not self.failed and not self.acked:
            self.failed = True
            self.stats.note_failure(kind, detail)
        self.handshaken.set()

    def data_received(self, data: bytes) -> None:
        events = self.events
        if events is None:
            self._response(data)
            return
        now = time.time()
        chunked = self.chunked
        try:
            body = data if chunked is None else chunked.feed(data)
        except ValueError as error:
            self.stats.note_error(f"unreadable chunk: {error}")
            if self.transport is not None:
                self.transport.abort()
            return
        for kind, value in events.feed(body):
            if kind == b"next":
                self._count(orjson.loads(value), now)
            elif kind == b"complete":
                self.stats.note_error("the server completed the subscription")
            else:
                self.stats.note_error(f"unexpected event {kind!r}: {value[:200]!r}")
        if chunked is not None and chunked.ended and self.transport is not None:
            self.stats.note_error("the server ended the stream")
            self.transport.close()

    def _response(self, data: bytes) -> None:
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            return
        status, headers = _response_headers(self.head[:end])
        if not status.startswith("HTTP/1.1 200"):
            self._refuse("response refused", status)
            return
        if not headers.get("content-type", "").startswith("text/event-stream"):
            self._refuse("not an event stream", headers.get("content-type", ""))
            return
        if headers.get("content-encoding", "identity") != "identity":
            self._refuse("compressed event stream", headers["content-encoding"])
            return
        self.stats.connected += 1
        self.acked = True
        self.stats.acked += 1
        self.handshaken.set()
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        self.chunked = ChunkedBody() if chunked else None
        self.events = EventStream()
        rest = self.head[end + 4 :]
        self.head = b""
        if rest:
            self.data_received(rest)

    def _refuse(self, kind: str, detail: str) -> None:
        self.fail(kind, detail)
        if self.transport is not None:
            self.transport.close()


def _errno_name(error: OSError) -> str:
    return errno.errorcode.get(error.errno or 0, type(error).__name__)


async def _open_all(
    spec: WorkerSpec, stats: Stats, subscribers: list[Subscriber | SSESubscriber]
) -> None:
    loop = asyncio.get_running_loop()
    slots = asyncio.Semaphore(HANDSHAKES_AT_ONCE)
    kind = SSESubscriber if spec.transport == "sse" else Subscriber

    async def open_one() -> None:
        async with slots:
            handshaken = asyncio.Event()
            try:
                _, protocol = await loop.create_connection(
                    lambda: kind(spec, stats, handshaken), spec.host, spec.port
                )
            except OSError as error:  # EMFILE here: this worker ran out of descriptors
                stats.note_failure(f"connect {_errno_name(error)}", str(error))
                return
            subscribers.append(protocol)
            try:
                await asyncio.wait_for(handshaken.wait(), HANDSHAKE_TIMEOUT)
            except TimeoutError:  # e.g. the server stopped accepting (EMFILE on its side)
                what = "response" if spec.transport == "sse" else "connection_ack"
                protocol.fail(f"no {what} within {HANDSHAKE_TIMEOUT:g} s")

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
            "deflated": stats.deflated,
            "received": stats.received,
            "cycles": stats.cycles,
            "last_receive": stats.last_receive,
        }
    if command == "failures":
        return {"failures": dict(stats.failures), "first_failure": stats.first_failure}
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
    subscribers: list[Subscriber | SSESubscriber] = []
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
    if spec.cpus:
        os.sched_setaffinity(0, spec.cpus)
    asyncio.run(_serve(spec, pipe))
