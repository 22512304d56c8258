"""Event ids of a durable Broadcast and the opaque resume tokens clients hold.

Owns ``StreamId`` (a Redis-style ``milliseconds-sequence`` pair, ordered as a tuple), its
text form, and the resume token: what a client gets as an event's id and gives back to
resume. A token names the backend's *epoch* (the in-memory ring of one process, or a Redis
key prefix) and one position per channel, so a subscription that reads several channels
resumes each where it stood; there is no order across channels. Imports the standard
library, orjson and ``..errors`` only.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Final

import orjson

from ..errors import ResumeError

__all__ = [
    "EXPIRED",
    "INVALID",
    "ZERO",
    "StreamId",
    "decode_token",
    "encode_token",
    "format_id",
    "parse_id",
]

#: A position in one channel's stream: (milliseconds, sequence), ordered as a tuple.
StreamId = tuple[int, int]
#: Before the first entry of any stream.
ZERO: Final[StreamId] = (0, 0)

#: ``ResumeError`` codes (docs/broadcast.md, "Resuming").
EXPIRED: Final = "RESUME_POINT_EXPIRED"
INVALID: Final = "RESUME_POINT_INVALID"

_TOKEN_PREFIX: Final = "v1."
_MAX_PART: Final = 2**64 - 1


def parse_id(text: str | bytes) -> StreamId:
    """``"1700000000000-3"`` as a ``StreamId``.

    Raises:
        ValueError: not two non-negative 64-bit integers joined by ``-``.
    """
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    milliseconds, dash, sequence = text.partition("-")
    if not (dash and text.isascii() and milliseconds.isdigit() and sequence.isdigit()):
        raise ValueError(f"not a stream id: {text[:40]!r}")
    parsed = int(milliseconds), int(sequence)
    if parsed[0] > _MAX_PART or parsed[1] > _MAX_PART:
        raise ValueError(f"not a stream id: {text[:40]!r}")
    return parsed


def format_id(stream_id: StreamId) -> str:
    """The text form Redis uses: ``milliseconds-sequence``."""
    return f"{stream_id[0]}-{stream_id[1]}"


def encode_token(epoch: str, positions: Mapping[str, StreamId]) -> str:
    """The opaque resume token for ``positions`` (channel -> last id seen) in ``epoch``."""
    body = orjson.dumps([epoch, [[channel, format_id(at)] for channel, at in positions.items()]])
    return _TOKEN_PREFIX + base64.urlsafe_b64encode(body).rstrip(b"=").decode("ascii")


def decode_token(token: str) -> tuple[str, dict[str, StreamId]]:
    """The epoch and the positions a token names.

    Raises:
        ResumeError: ``RESUME_POINT_INVALID`` for anything this module did not encode.
    """
    if not isinstance(token, str) or not token.startswith(_TOKEN_PREFIX):
        raise _invalid("it is not an event id this server issued")
    text = token[len(_TOKEN_PREFIX) :]
    try:
        body = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        decoded = orjson.loads(body)
        epoch, pairs = decoded
        if not isinstance(epoch, str) or not isinstance(pairs, list):
            raise TypeError
        positions: dict[str, StreamId] = {}
        for channel, at in pairs:
            if not isinstance(channel, str) or not isinstance(at, str):
                raise TypeError
            positions[channel] = parse_id(at)
        if not positions:  # every id this module issues names the channel of its event
            raise ValueError("no channel")
    except (binascii.Error, ValueError, TypeError):  # orjson's decode error is a ValueError
        raise _invalid("it is not an event id this server issued") from None
    return epoch, positions


def _invalid(why: str) -> ResumeError:
    return ResumeError(INVALID, f"cannot resume from this lastEventId: {why}")
