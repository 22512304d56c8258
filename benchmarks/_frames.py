"""Minimal RFC 6455 framing and the benchmark's GraphQL documents, shared by both ends.

Owns frame encoding (masked for a client, unmasked for a server), an incremental frame
parser, the handshake accept key, and the subscription and mutation documents every server
under test answers. Deliberately tiny and allocation-light: the load generator must cost
less than the servers it measures. Imports the standard library only; never anyql.
"""

from __future__ import annotations

import base64
import hashlib
import os

__all__ = [
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONTINUATION",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "PUBLISH_MUTATION",
    "SUBSCRIBE_QUERY",
    "FrameParser",
    "accept_key",
    "encode_frame",
]

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

#: One event per publish; ``seq < 0`` marks a liveness event (ready or probe).
SUBSCRIBE_QUERY = (
    "subscription Events($topic: String!) { events(topic: $topic) { seq sentAt data } }"
)
PUBLISH_MUTATION = (
    "mutation Publish($topic: String!, $count: Int!, $size: Int!, $probe: Boolean!) "
    "{ publish(topic: $topic, count: $count, size: $size, probe: $probe) }"
)


def accept_key(client_key: bytes) -> bytes:
    """The ``Sec-WebSocket-Accept`` value for a ``Sec-WebSocket-Key``.

    Args:
        client_key: the key the client sent, as bytes.

    Returns:
        The base64 accept value.
    """
    return base64.b64encode(hashlib.sha1(client_key + _GUID).digest())


def _mask(payload: bytes, key: bytes) -> bytes:
    size = len(payload)
    if not size:
        return b""
    repeated = (key * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(size, "big")


def encode_frame(payload: bytes, opcode: int = OP_TEXT, *, masked: bool) -> bytes:
    """One final frame; clients must mask (``masked=True``), servers must not.

    Args:
        payload: the frame's payload.
        opcode: ``OP_TEXT``, ``OP_CLOSE``, ``OP_PONG``...
        masked: mask the payload with a random key (client to server).

    Returns:
        The frame's bytes.
    """
    size = len(payload)
    mask_bit = 0x80 if masked else 0
    if size < 126:
        header = bytes((0x80 | opcode, mask_bit | size))
    elif size < 65536:
        header = bytes((0x80 | opcode, mask_bit | 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, mask_bit | 127)) + size.to_bytes(8, "big")
    if not masked:
        return header + payload
    key = os.urandom(4)
    return header + key + _mask(payload, key)


class FrameParser:
    """Feed bytes in, get whole messages out as ``(opcode, payload)``; reassembles fragments."""

    __slots__ = ("_buffer", "_fragment_opcode", "_fragments")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._fragments: list[bytes] = []
        self._fragment_opcode = OP_TEXT

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """Add ``data``; return every message now complete, oldest first.

        Args:
            data: bytes read from the socket.

        Returns:
            ``(opcode, payload)`` pairs; control frames come out as they arrive.
        """
        buffer = self._buffer
        buffer += data
        messages: list[tuple[int, bytes]] = []
        offset = 0
        end = len(buffer)
        while end - offset >= 2:
            first, second = buffer[offset], buffer[offset + 1]
            size = second & 0x7F
            header = 2
            if size == 126:
                if end - offset < 4:
                    break
                size = int.from_bytes(buffer[offset + 2 : offset + 4], "big")
                header = 4
            elif size == 127:
                if end - offset < 10:
                    break
                size = int.from_bytes(buffer[offset + 2 : offset + 10], "big")
                header = 10
            key = b""
            if second & 0x80:
                key = bytes(buffer[offset + header : offset + header + 4])
                header += 4
            if end - offset < header + size:
                break
            payload = bytes(buffer[offset + header : offset + header + size])
            offset += header + size
            if key:
                payload = _mask(payload, key)
            self._collect(first, payload, messages)
        if offset:
            del buffer[:offset]
        return messages

    def _collect(self, first: int, payload: bytes, messages: list[tuple[int, bytes]]) -> None:
        opcode = first & 0x0F
        final = bool(first & 0x80)
        if opcode >= OP_CLOSE or (opcode != OP_CONTINUATION and final):
            messages.append((opcode, payload))
        else:
            if opcode != OP_CONTINUATION:
                self._fragment_opcode = opcode
            self._fragments.append(payload)
            if final:
                messages.append((self._fragment_opcode, b"".join(self._fragments)))
                self._fragments.clear()
