"""Server-to-client WebSocket text frames, built without wsproto.

Owns ``text_frame`` and ``text_frames``: RFC 6455 section 5.2 frames from a server are
unmasked, so a whole text message is a 2-, 4- or 10-byte header and its UTF-8 body. The
fan-out path frames with this (one join per message, the body's pieces never copied twice);
wsproto stays the parser, the handshake, the control frames and the compressing encoder for
connections that negotiated permessage-deflate. Imports nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["text_frame", "text_frames"]

_FIN_TEXT = 0x81
_MEDIUM = bytes((_FIN_TEXT, 126))
_LONG = bytes((_FIN_TEXT, 127))


def _header(size: int) -> bytes:
    if size < 126:
        return bytes((_FIN_TEXT, size))
    if size < 65536:
        return _MEDIUM + size.to_bytes(2, "big")
    return _LONG + size.to_bytes(8, "big")


def text_frames(messages: Iterable[bytes]) -> bytes:
    """Frame each message (UTF-8 text) as one final, unmasked text frame; join them all.

    Args:
        messages: the messages' UTF-8 bodies, in order (the caller vouches for UTF-8).

    Returns:
        The bytes to write.
    """
    parts: list[bytes] = []
    for message in messages:
        parts.append(_header(len(message)))
        parts.append(message)
    return b"".join(parts)


def text_frame(*pieces: bytes) -> bytes:
    """One final, unmasked text frame whose body is ``pieces`` joined (one copy of each).

    Args:
        pieces: the message's UTF-8 body in pieces (an envelope around a shared payload).

    Returns:
        The frame's bytes.
    """
    return b"".join((_header(sum(map(len, pieces))), *pieces))
