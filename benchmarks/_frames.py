"""Minimal RFC 6455 framing and the benchmark's GraphQL documents, shared by both ends.

Owns frame encoding (masked for a client, unmasked for a server), an incremental frame
parser, the client side of permessage-deflate (``Inflater``: RFC 7692 messages, RSV1 set on
their first frame, are inflated when the parser has one, and refused when it has none), the
handshake accept key, and the subscription and mutation documents every server under test
answers. Deliberately tiny and allocation-light: the load generator must cost less than the
servers it measures. Imports the standard library only; never anyql.
"""

from __future__ import annotations

import base64
import hashlib
import os
import zlib

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
    "Inflater",
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
_RSV1 = 0x40
#: RFC 7692 7.2.2: the sender drops this empty stored block from each message's end.
_DEFLATE_TAIL = b"\x00\x00\xff\xff"

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


class Inflater:
    """The receiving half of a negotiated permessage-deflate (RFC 7692), for a client.

    ``context_takeover`` is False when the server's answer carried
    ``server_no_context_takeover``: each message then starts a fresh raw-deflate stream.
    A window of 2**15 inflates whatever ``server_max_window_bits`` the server chose.
    """

    __slots__ = ("_inflate", "context_takeover", "messages")

    def __init__(self, context_takeover: bool = True) -> None:
        self.context_takeover = context_takeover
        self._inflate = zlib.decompressobj(-15)
        #: Compressed messages inflated so far.
        self.messages = 0

    @classmethod
    def from_response(cls, extensions: str) -> Inflater | None:
        """An inflater if a 101's ``Sec-WebSocket-Extensions`` value agreed to deflate.

        Args:
            extensions: the header's value ("" when absent).

        Returns:
            None when the server did not accept permessage-deflate.

        Raises:
            ValueError: the server agreed to an extension the client did not offer.
        """
        agreed = [part.strip() for part in extensions.split(",") if part.strip()]
        inflater = None
        for extension in agreed:
            name, *parameters = (word.strip().lower() for word in extension.split(";"))
            if name != "permessage-deflate" or inflater is not None:
                raise ValueError(f"the server agreed to an extension never offered: {extension}")
            takeover = not any(p.startswith("server_no_context_takeover") for p in parameters)
            inflater = cls(context_takeover=takeover)
        return inflater

    def __call__(self, payload: bytes) -> bytes:
        """The inflated message of one compressed message's payload."""
        if not self.context_takeover:
            self._inflate = zlib.decompressobj(-15)
        self.messages += 1
        return self._inflate.decompress(payload + _DEFLATE_TAIL)


class FrameParser:
    """Feed bytes in, get whole messages out as ``(opcode, payload)``; reassembles fragments.

    With an ``inflater`` (permessage-deflate negotiated), a data message whose first frame
    has RSV1 set is inflated; without one such a message raises ``ValueError``.
    """

    __slots__ = ("_buffer", "_compressed", "_fragment_opcode", "_fragments", "inflater")

    def __init__(self, inflater: Inflater | None = None) -> None:
        self._buffer = bytearray()
        self._fragments: list[bytes] = []
        self._fragment_opcode = OP_TEXT
        self._compressed = False
        self.inflater = inflater

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
        if opcode >= OP_CLOSE:
            messages.append((opcode, payload))
        elif opcode != OP_CONTINUATION and final:
            messages.append((opcode, self._inflated(payload) if first & _RSV1 else payload))
        else:
            if opcode != OP_CONTINUATION:
                self._fragment_opcode = opcode
                self._compressed = bool(first & _RSV1)
            self._fragments.append(payload)
            if final:
                whole = b"".join(self._fragments)
                self._fragments.clear()
                messages.append(
                    (self._fragment_opcode, self._inflated(whole) if self._compressed else whole)
                )

    def _inflated(self, payload: bytes) -> bytes:
        if self.inflater is None:
            raise ValueError("a compressed (RSV1) message, but permessage-deflate was not agreed")
        return self.inflater(payload)
