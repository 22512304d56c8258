"""permessage-deflate (RFC 7692), server side, with inflation bounded by the message cap.

Owns ``BoundedDeflate``, a wsproto extension written here rather than wsproto's
``PerMessageDeflate`` for two reasons. wsproto inflates each chunk of input with no output
limit, so a 64 KiB read of a deflate bomb would become 64 MiB before anyone could count it;
here each message's inflated size is counted as it is produced, zlib is never asked for
more than one byte past the cap, and a message that passes it fails the connection with
1009. And wsproto lets every offer in a header change the negotiated parameters, so the
answer could name one offer while the state came from another; here the first acceptable
offer wins and nothing else is touched. Imports ``zlib`` and wsproto only.

Off unless the server is started with ``permessage_deflate=True``: compression costs CPU
per message sent and about 300 KiB of zlib state per connection while it is used.
"""

from __future__ import annotations

import zlib

from wsproto.extensions import Extension
from wsproto.frame_protocol import CloseReason, FrameDecoder, FrameProtocol, Opcode, RsvBits

__all__ = ["BoundedDeflate", "parse_offer"]

NAME = "permessage-deflate"
#: Appended by the receiver to each message, stripped by the sender (RFC 7692 section 7.2).
_SYNC_TAIL = b"\x00\x00\xff\xff"
#: Inflating with the largest window reads a stream written with any smaller one.
_MAX_WINDOW_BITS = 15
#: zlib cannot compress raw deflate with an 8-bit window, so offers asking for it are declined.
_MIN_SERVER_WINDOW_BITS = 9
_CLIENT_WINDOW_BITS = range(8, 16)
_FLAGS = ("server_no_context_takeover", "client_no_context_takeover")


class Offer:
    """The parameters of one acceptable permessage-deflate offer."""

    def __init__(self) -> None:
        self.server_no_context_takeover = False
        self.client_no_context_takeover = False
        self.server_max_window_bits = _MAX_WINDOW_BITS
        self.server_window_requested = False

    def response(self) -> str:
        """The parameters of the answer accepting this offer (may be empty)."""
        parameters = [flag for flag in _FLAGS if getattr(self, flag)]
        if self.server_window_requested:
            parameters.append(f"server_max_window_bits={self.server_max_window_bits}")
        return "; ".join(parameters)


def parse_offer(offer: str) -> Offer | None:
    """Read one permessage-deflate offer, or None if it cannot be accepted.

    Args:
        offer: one element of ``Sec-WebSocket-Extensions``, its name included.

    Returns:
        The parameters, or None for an unknown, repeated or out-of-range parameter.
    """
    parsed = Offer()
    seen: set[str] = set()
    for item in offer.split(";")[1:]:
        key, has_value, raw_value = (part.strip() for part in item.partition("="))
        value = raw_value.strip('"')
        if key in seen:
            return None
        seen.add(key)
        if key in _FLAGS and not has_value:
            setattr(parsed, key, True)
        elif key == "client_max_window_bits":
            if has_value and not (value.isdigit() and int(value) in _CLIENT_WINDOW_BITS):
                return None
        elif key == "server_max_window_bits" and value.isdigit():
            if not _MIN_SERVER_WINDOW_BITS <= int(value) <= _MAX_WINDOW_BITS:
                return None
            parsed.server_max_window_bits = int(value)
            parsed.server_window_requested = True
        else:
            return None
    return parsed


class BoundedDeflate(Extension):
    """permessage-deflate whose inbound messages never inflate past ``max_message_bytes``."""

    name = NAME

    def __init__(self, max_message_bytes: int) -> None:
        self._max_message_bytes = max_message_bytes
        self._agreed: Offer | None = None
        self._deflater: zlib._Compress | None = None
        self._inflater: zlib._Decompress | None = None
        #: Whether the data message being received has RSV1 set (is compressed).
        self._message_compressed = False
        #: Whether the frame being received is a data frame (not a control frame).
        self._data_frame = False
        #: Bytes inflated so far for the message being received.
        self._inflated = 0

    def enabled(self) -> bool:
        return self._agreed is not None

    def offer(self) -> bool:
        return False  # server side only: never offered

    def accept(self, offer: str) -> str | None:
        if self._agreed is not None:
            return None  # the first acceptable offer stands
        self._agreed = parse_offer(offer)
        return None if self._agreed is None else self._agreed.response()

    def frame_inbound_header(
        self,
        proto: FrameDecoder | FrameProtocol,
        opcode: Opcode,
        rsv: RsvBits,
        payload_length: int,
    ) -> CloseReason | RsvBits:
        # RSV1 marks a compressed message, on its first frame only (RFC 7692 section 6).
        if rsv.rsv1 and (opcode.iscontrol() or opcode is Opcode.CONTINUATION):
            return CloseReason.PROTOCOL_ERROR
        self._data_frame = not opcode.iscontrol()
        if self._data_frame and opcode is not Opcode.CONTINUATION:
            self._message_compressed = rsv.rsv1
            self._inflated = 0
        return RsvBits(True, False, False)

    def frame_inbound_payload_data(
        self, proto: FrameDecoder | FrameProtocol, data: bytes
    ) -> bytes | CloseReason:
        if not (self._data_frame and self._message_compressed):
            return data
        return self._inflate(data)

    def frame_inbound_complete(
        self, proto: FrameDecoder | FrameProtocol, fin: bool
    ) -> bytes | CloseReason | None:
        if not (fin and self._data_frame and self._message_compressed):
            return None
        self._message_compressed = False
        tail = self._inflate(_SYNC_TAIL)
        if self._agreed is not None and self._agreed.client_no_context_takeover:
            self._inflater = None
        return tail

    def frame_outbound(
        self,
        proto: FrameDecoder | FrameProtocol,
        opcode: Opcode,
        rsv: RsvBits,
        data: bytes,
        fin: bool,
    ) -> tuple[RsvBits, bytes]:
        if self._agreed is None or opcode.iscontrol():
            return rsv, data
        if opcode is not Opcode.CONTINUATION:
            rsv = RsvBits(True, rsv.rsv2, rsv.rsv3)
        if self._deflater is None:
            bits = self._agreed.server_max_window_bits
            self._deflater = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -bits)
        compressed = self._deflater.compress(data)
        if fin:
            compressed += self._deflater.flush(zlib.Z_SYNC_FLUSH)
            compressed = compressed[: -len(_SYNC_TAIL)]
            if self._agreed.server_no_context_takeover:
                self._deflater = None
        return rsv, compressed

    def _inflate(self, data: bytes) -> bytes | CloseReason:
        if self._inflater is None:
            self._inflater = zlib.decompressobj(-_MAX_WINDOW_BITS)
        room = self._max_message_bytes - self._inflated
        try:
            # One byte past the room is enough to know the message is too big.
            inflated = self._inflater.decompress(data, room + 1)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        self._inflated += len(inflated)
        if self._inflated > self._max_message_bytes:
            return CloseReason.MESSAGE_TOO_BIG
        return inflated
