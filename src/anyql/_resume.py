"""Resume points: where a reconnecting client asks a subscription to pick up again.

Owns ``resume_point(info)`` (public, re-exported as ``anyql.resume_point``), the context
variable the execution layer sets around a subscription's source (``resuming``), and
``read_resume_point``, the one check of a client's ``extensions.lastEventId`` (GraphQL over
HTTP refuses a bad one with 400, the WebSocket session answers it with an ``error`` for the
operation). A leaf of the pure core: it imports only the standard library and
``anyql.types``, so ``http`` (sans-IO) and ``execution`` can both use it.

A client gives its resume point as ``extensions.lastEventId`` of the operation request; a
distinct-mode SSE request may give it as the ``Last-Event-ID`` header instead (what a
reconnecting ``EventSource`` sends), which wins. The id is opaque: it is whatever a
previous result carried in ``extensions.eventId`` (``anyql.Event``).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any, Final

from .types import MAX_EVENT_ID_LENGTH

__all__ = ["LAST_EVENT_ID", "check_event_id", "read_resume_point", "resume_point", "resuming"]

#: The key of ``extensions`` a client puts its resume point under.
LAST_EVENT_ID: Final = "lastEventId"

#: The resume point of the subscription whose source is being created or started: set by
#: the execution layer around the subscribe resolver's call and the source's first
#: ``__anext__`` only (a subscription without one never sets it).
resuming: ContextVar[str | None] = ContextVar("anyql.resume_point", default=None)


def resume_point(info: Any) -> str | None:
    """The client's resume point for the subscription being resolved, or None.

    It is the ``eventId`` of the last result the client received (``extensions.lastEventId``
    of its request, or the ``Last-Event-ID`` header of a distinct-mode SSE request). Call it
    in a subscription's subscribe resolver: when the resolver is called, and in an async
    generator's body up to its first ``yield`` (the body starts running then). Anywhere
    else (a query, an event's field resolvers, the source after its first event) it
    returns None: read it once, before yielding, and keep it.

    Args:
        info: the resolver's ``GraphQLResolveInfo`` (reserved: the value does not depend
            on it today).

    Returns:
        The id to resume after, or None when the client gave none (start from now).
    """
    return resuming.get()


def check_event_id(value: Any, where: str) -> str:
    """Return ``value`` if it can be an event id, else raise ValueError naming ``where``.

    An event id is a non-empty string of at most ``MAX_EVENT_ID_LENGTH`` characters without
    CR, LF or NUL (it is written as an SSE ``id:`` line).
    """
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where} must be a non-empty string")
    if len(value) > MAX_EVENT_ID_LENGTH:
        raise ValueError(f"{where} is longer than {MAX_EVENT_ID_LENGTH} characters")
    if "\n" in value or "\r" in value or "\0" in value:
        raise ValueError(f"{where} must not contain a line break or NUL")
    return value


def read_resume_point(extensions: Mapping[str, Any] | None) -> str | None:
    """The ``lastEventId`` of an operation request's ``extensions``, checked.

    Returns:
        The resume point, or None when ``extensions`` has no ``lastEventId`` (or it is
        null).

    Raises:
        ValueError: ``lastEventId`` is present but not a non-empty string, is longer than
            ``MAX_EVENT_ID_LENGTH``, or holds CR, LF or NUL; the message says which.
    """
    if not extensions:
        return None
    value = extensions.get(LAST_EVENT_ID)
    if value is None:
        return None
    return check_event_id(value, "extensions.lastEventId")
