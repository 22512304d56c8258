"""A raw WebSocket client for end-to-end protocol tests, independent of anyql's own code.

Owns ``RawSocket`` and ``connect``: the ``websockets`` package's synchronous client
(installed with gql) with everything automatic turned off (no keep-alive pings, no
compression, no proxy, no size limit on what it receives), so a test sends exactly the
frames it means to and sees exactly what the server sends, close code included.
Imports ``websockets`` and the standard library only.
"""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect
from websockets.typing import Subprotocol

GTWS = "graphql-transport-ws"
LEGACY = "graphql-ws"
#: What a test waits for any one frame, or for the close, before failing.
RECEIVE_TIMEOUT = 5.0
#: The code a client reports when the connection ended without a close frame.
ABNORMAL_CLOSURE = 1006


class RawSocket:
    """One client WebSocket that speaks JSON frames and reports the server's close."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol the server accepted, or None."""
        return self.connection.subprotocol

    def send_json(self, message: dict[str, Any]) -> None:
        self.connection.send(json.dumps(message))

    def send_text(self, text: str) -> None:
        self.connection.send(text)

    def send_bytes(self, data: bytes) -> None:
        self.connection.send(data)

    def send_fragments(self, fragments: Iterable[str]) -> None:
        """Send one text message as several frames (a fragmented message)."""
        self.connection.send(fragments)

    def receive(self, timeout: float = RECEIVE_TIMEOUT) -> dict[str, Any]:
        """The next frame, parsed as JSON; fails on a close or after ``timeout``."""
        try:
            text = self.connection.recv(timeout=timeout)
        except ConnectionClosed as closed:
            raise AssertionError(f"expected a frame, the server closed: {closed}") from None
        message: dict[str, Any] = json.loads(text)
        return message

    def init(self, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send ``connection_init`` and return the server's answer."""
        message: dict[str, Any] = {"type": "connection_init"}
        if payload is not None:
            message["payload"] = payload
        self.send_json(message)
        return self.receive()

    def expect_close(self, timeout: float = RECEIVE_TIMEOUT) -> tuple[int, str]:
        """Wait for the server to close; any data frame before that fails the test.

        Returns:
            The close code and reason the server sent, or (1006, "") when the connection
            ended without a close frame.
        """
        try:
            frame = self.connection.recv(timeout=timeout)
        except ConnectionClosed as closed:
            if closed.rcvd is None:
                return ABNORMAL_CLOSURE, ""
            return closed.rcvd.code, closed.rcvd.reason
        raise AssertionError(f"expected a close, got {frame!r}")

    def expect_silence(self, seconds: float) -> None:
        """Fail if anything (a frame or a close) arrives within ``seconds``."""
        try:
            frame = self.connection.recv(timeout=seconds)
        except TimeoutError:
            return
        except ConnectionClosed as closed:
            raise AssertionError(f"expected silence, the server closed: {closed}") from None
        raise AssertionError(f"expected silence, got {frame!r}")

    def reset(self) -> None:
        """Abort the TCP connection with a RST: no close frame, no FIN handshake."""
        sock = self.connection.socket
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()


@contextmanager
def connect(url: str, subprotocols: Sequence[str] | None = (GTWS,)) -> Iterator[RawSocket]:
    """Open a WebSocket to ``url`` offering ``subprotocols`` (None: offer none).

    Args:
        url: a ``ws://`` URL.
        subprotocols: offered in this order; None leaves the header out.

    Yields:
        The open socket; it is closed (if still open) when the block ends.
    """
    offered = None if subprotocols is None else [Subprotocol(name) for name in subprotocols]
    with ws_connect(
        url,
        subprotocols=offered,
        compression=None,
        proxy=None,
        ping_interval=None,
        open_timeout=RECEIVE_TIMEOUT,
        close_timeout=1.0,
        max_size=None,
    ) as connection:
        yield RawSocket(connection)
