"""The generator-ceiling server: graphql-transport-ws (and graphql-sse) reduced to writing
pre-encoded frames.

Owns a trivial asyncio ``Protocol`` server that speaks just enough HTTP/1.1 and WebSocket
for the benchmark: the Upgrade handshake (no extensions: it never agrees to
permessage-deflate), ``connection_init`` -> ack, ``subscribe`` -> a ready event,
``complete``, and ``POST`` of the publish mutation (it reads only the JSON ``variables``;
no GraphQL at all). Each event's payload (``{"data":{"events":...}}``) is encoded once with
orjson; for each subscriber the envelope ``{"id":<its id>,"type":"next","payload":...}``
and the frame header are then built around those bytes. Clients use a distinct operation
id per connection (UUIDs), so no frame is cached per id: what a subscriber costs here is
the floor of any server that executes once per event and still has to address each
subscription, and its deliveries/s show the load generator's ceiling. It also answers a
``POST`` with ``Accept: text/event-stream`` as graphql-sse's distinct connections mode does
(``fanout.py --transport sse``): a chunked ``text/event-stream`` response with a ready
event, then ``event: next`` for every event of the topic; there the event's bytes are the
same for every subscriber (the mode has no operation id) and only the chunk framing is
built per subscriber. Imports the standard library, orjson, ``_frames`` and ``_sse``;
never anyql.

Run: ``python -m benchmarks.baseline_server --port 8000`` (or ``python
benchmarks/baseline_server.py --port 8000``).
"""

from __future__ import annotations

import os
import sys

# Run as a script: the repository root, not benchmarks/ (its http.py shadows http), goes first.
if os.path.realpath(sys.path[0]) == os.path.dirname(os.path.realpath(__file__)):
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))

import argparse
import asyncio
import signal
import time
from typing import Any

import orjson

from benchmarks._frames import (
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameParser,
    accept_key,
    encode_frame,
)
from benchmarks._sse import encode_chunk

__all__ = ["main"]

READY_SEQ = -2
PROBE_SEQ = -1
SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
    b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
)
SSE_NEXT = b"event: next\ndata: "


class Hub:
    """Topic -> {connection: its envelope's head}, topic -> SSE streams, and the task group
    publishes run in."""

    def __init__(self, group: asyncio.TaskGroup) -> None:
        self.group = group
        self.topics: dict[str, dict[Connection, bytes]] = {}
        self.streams: dict[str, set[Connection]] = {}

    async def publish(self, topic: str, count: int, size: int, probe: bool) -> None:
        data = "x" * size
        for seq in range(count):
            event = {"seq": PROBE_SEQ if probe else seq, "sentAt": time.time(), "data": data}
            payload = _payload(event)  # once per event, whatever the number of subscribers
            for connection, head in list(self.topics.get(topic, {}).items()):
                connection.write(encode_frame(head + payload + b"}", OP_TEXT, masked=False))
            for connection in list(self.streams.get(topic, ())):
                connection.write(encode_chunk(SSE_NEXT + payload + b"\n\n"))
            await asyncio.sleep(0)


def _payload(event: dict[str, Any]) -> bytes:
    return orjson.dumps({"data": {"events": event}})


def _envelope_head(id: str) -> bytes:
    """``{"id":<id>,"type":"next","payload":`` with ``id`` JSON-escaped."""
    return b'{"id":' + orjson.dumps(id) + b',"type":"next","payload":'


def _next_frame(id: str, event: dict[str, Any]) -> bytes:
    return encode_frame(_envelope_head(id) + _payload(event) + b"}", OP_TEXT, masked=False)


def _headers(head: bytes) -> tuple[str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return lines[0], headers


class Connection(asyncio.Protocol):
    """One client connection: HTTP requests until an Upgrade, then WebSocket frames."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.parser: FrameParser | None = None
        self.subscriptions: dict[str, str] = {}  # id -> topic
        #: The topic of this connection's SSE stream, once it is one.
        self.stream: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        for topic in self.subscriptions.values():
            self.hub.topics.get(topic, {}).pop(self, None)
        self.subscriptions.clear()
        if self.stream is not None:
            self.hub.streams.get(self.stream, set()).discard(self)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        if self.parser is not None:
            self._frames(self.parser.feed(data))
            return
        if self.stream is not None:
            return  # an SSE client sends nothing more
        self.buffer += data
        while self.parser is None and self.stream is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            request_line, headers = _headers(self.buffer[:end])
            length = int(headers.get("content-length", "0"))
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            self._request(request_line, headers, body)

    def _request(self, request_line: str, headers: dict[str, str], body: bytes) -> None:
        if headers.get("upgrade", "").lower() == "websocket":
            key = headers.get("sec-websocket-key", "").encode()
            self.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Protocol: graphql-transport-ws\r\n"
                b"Sec-WebSocket-Accept: " + accept_key(key) + b"\r\n\r\n"
            )
            self.parser = FrameParser()
            rest, self.buffer = self.buffer, b""
            if rest:
                self._frames(self.parser.feed(rest))
        elif request_line.startswith("POST") and "text/event-stream" in headers.get("accept", ""):
            self._open_stream(body)
        elif request_line.startswith("POST"):
            self.hub.group.create_task(self._publish(body))
        else:
            self.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")

    def _open_stream(self, body: bytes) -> None:
        """graphql-sse, distinct connections mode: this connection is now one event stream."""
        topic = orjson.loads(body)["variables"]["topic"]
        self.stream = topic
        self.hub.streams.setdefault(topic, set()).add(self)
        ready = _payload({"seq": READY_SEQ, "sentAt": time.time(), "data": ""})
        self.write(SSE_HEAD + encode_chunk(SSE_NEXT + ready + b"\n\n"))

    async def _publish(self, body: bytes) -> None:
        variables = orjson.loads(body).get("variables") or {}
        count = int(variables.get("count", 1))
        await self.hub.publish(
            variables["topic"], count, int(variables.get("size", 16)), bool(variables.get("probe"))
        )
        answer = orjson.dumps({"data": {"publish": count}})
        self.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
            + str(len(answer)).encode()
            + b"\r\n\r\n"
            + answer
        )

    def _frames(self, frames: list[tuple[int, bytes]]) -> None:
        for opcode, payload in frames:
            if opcode == OP_TEXT:
                self._message(orjson.loads(payload))
            elif opcode == OP_PING:
                self.write(encode_frame(payload, OP_PONG, masked=False))
            elif opcode == OP_CLOSE:
                self.write(encode_frame(payload[:2], OP_CLOSE, masked=False))
                if self.transport is not None:
                    self.transport.close()

    def _message(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "connection_init":
            self.write(encode_frame(b'{"type":"connection_ack"}', OP_TEXT, masked=False))
        elif kind == "subscribe":
            id = message["id"]
            topic = message["payload"]["variables"]["topic"]
            self.subscriptions[id] = topic
            self.hub.topics.setdefault(topic, {})[self] = _envelope_head(id)
            self.write(_next_frame(id, {"seq": READY_SEQ, "sentAt": time.time(), "data": ""}))
        elif kind == "complete":
            topic = self.subscriptions.pop(message["id"], None)
            if topic is not None:
                subscribers = self.hub.topics.get(topic, {})
                subscribers.pop(self, None)
                if not subscribers:
                    self.hub.topics.pop(topic, None)
        elif kind == "ping":
            self.write(encode_frame(b'{"type":"pong"}', OP_TEXT, masked=False))


async def serve(host: str, port: int) -> None:
    """Serve until SIGINT or SIGTERM.

    Args:
        host: address to bind.
        port: port to bind.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with asyncio.TaskGroup() as group:
        hub = Hub(group)
        server = await loop.create_server(lambda: Connection(hub), host, port, backlog=4096)
        async with server:
            await stop.wait()


def main(argv: list[str] | None = None) -> int:
    """Run the baseline server.

    Args:
        argv: command-line arguments (``--host``, ``--port``).

    Returns:
        The exit status.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
