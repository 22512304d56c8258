"""Media types and ``Accept``: the header syntax ``http``, ``cors`` and ``_graphiql`` share.

Owns the names of the media types anyql speaks (the two GraphQL response types and HTML),
the token grammar of RFC 9110, ``split_media_type`` (a ``Content-Type`` or one ``Accept``
range into type and parameters) and ``parse_accept`` with the matching of a range to a
type. Decides nothing about GraphQL: ``http.negotiate_response_type`` picks the response
type, ``_graphiql.wants_graphiql`` spots a browser, ``cors.check_preflight_header`` the
content types a page may send without a preflight. A leaf: imports only the standard
library.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final, NamedTuple

__all__ = [
    "EVENT_STREAM",
    "GRAPHQL_RESPONSE_JSON",
    "HTML",
    "JSON",
    "MULTIPART_MIXED",
    "RESPONSE_TYPES",
    "TOKEN",
    "MediaRange",
    "explicit_quality",
    "match",
    "parse_accept",
    "split_media_type",
]

JSON: Final = "application/json"
GRAPHQL_RESPONSE_JSON: Final = "application/graphql-response+json"
HTML: Final = "text/html"
EVENT_STREAM: Final = "text/event-stream"
MULTIPART_MIXED: Final = "multipart/mixed"
#: Response media types GraphQL over HTTP speaks; on a tie in ``Accept``, the earlier wins.
RESPONSE_TYPES: Final = (JSON, GRAPHQL_RESPONSE_JSON)
#: An RFC 9110 token, lower-cased (header names, media type parts).
TOKEN: Final = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")
_QUALITY: Final = re.compile(r"(?:0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)")


class MediaRange(NamedTuple):
    """One range of an ``Accept`` header, in the client's order."""

    media_type: str  # "type/subtype"; either part may be "*"
    quality: float
    position: int


def split_media_type(text: str) -> tuple[str, dict[str, str]] | None:
    """``"Application/JSON; charset=UTF-8"`` -> ``("application/json", {"charset": "UTF-8"})``.

    Returns None when the type is not ``token/token``.
    """
    head, *parameter_parts = text.split(";")
    type_, slash, subtype = head.strip().lower().partition("/")
    if not slash or not TOKEN.fullmatch(type_) or not TOKEN.fullmatch(subtype):
        return None
    parameters: dict[str, str] = {}
    for part in parameter_parts:
        name, equals, value = part.partition("=")
        name = name.strip().lower()
        if equals and name and name not in parameters:
            parameters[name] = value.strip().strip('"')
    return f"{type_}/{subtype}", parameters


def parse_accept(value: str) -> list[MediaRange]:
    """Media ranges of an ``Accept`` value; malformed ranges are skipped."""
    ranges: list[MediaRange] = []
    for position, part in enumerate(value.split(",")):
        split = split_media_type(part)
        if split is not None and _QUALITY.fullmatch(quality := split[1].get("q", "1")):
            ranges.append(MediaRange(split[0], float(quality), position))
    return ranges


def _specificity(media_range: str, media_type: str) -> int:
    """2 for an exact match, 1 for ``type/*``, 0 for ``*/*``, -1 for no match."""
    if media_range == media_type:
        return 2
    if media_range == "*/*":
        return 0
    type_, _, subtype = media_range.partition("/")
    return 1 if subtype == "*" and media_type.startswith(f"{type_}/") else -1


def match(ranges: Sequence[MediaRange], media_type: str) -> tuple[float, int, int] | None:
    """(quality, specificity, -position) of the first most specific range for ``media_type``."""
    matches = [(_specificity(r.media_type, media_type), -r.position, r.quality) for r in ranges]
    matches = [found for found in matches if found[0] >= 0]
    if not matches:
        return None
    specificity, negative_position, quality = max(matches, key=lambda found: found[:2])
    return quality, specificity, negative_position


def explicit_quality(ranges: Sequence[MediaRange], media_type: str) -> float:
    """Quality of the first range naming exactly ``media_type`` (not a wildcard), else 0."""
    return next((r.quality for r in ranges if r.media_type == media_type), 0.0)
