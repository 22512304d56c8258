"""Single-connection SSE: reservations of streams, by unguessable token.

Owns ``Reservations`` and ``Reservation``. A client ``PUT``s to reserve a stream and gets a
token; one stream request with the token opens it (a second gets 409); operation requests
and ``DELETE``s name it. A reservation nobody opens within
``Limits.stream_reservation_timeout`` is released, and so is one whose stream ends; a
client address holds at most ``Limits.max_stream_reservations_per_client`` at once.
Reservations live in the process that made them (tokens carry this process's prefix, so
another process can tell a token it does not hold from one that expired). Imports anyio
through ``streams`` only; no timer task: expiry is checked when the registry is used.
"""

from __future__ import annotations

import re
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import anyio

from .limits import Limits
from .streams import StreamSession

__all__ = ["PROCESS_PREFIX", "Reservation", "Reservations"]

#: Begins every token this process hands out.
PROCESS_PREFIX: Final = secrets.token_hex(4)
_PREFIX_SHAPE: Final = re.compile(r"[0-9a-f]{8}")
#: How long a process keeps, unused, where a stream it reserved was opened instead.
MOVED_LEASE: Final = 3600.0


@dataclass(eq=False, slots=True)
class Reservation:
    """One reserved stream: its token, its client's address and, once opened, its stream."""

    token: str
    client: str
    session: StreamSession
    expires: float
    opened: bool = False
    created: float = field(default_factory=time.monotonic)
    #: The prefix of the process its stream was opened at, when not this one.
    moved_to: str | None = None
    #: For a stream opened here on another process's reservation: that process's prefix.
    maker: str | None = None
    #: Whether it counts against its client's ``max_stream_reservations_per_client``.
    counted: bool = True
    #: Relayed requests in a row that its holder did not answer (``moved_to``).
    unanswered: int = 0


class Reservations:
    """The reservations of one app, by token.

    Args:
        limits: ``max_stream_reservations_per_client``, ``stream_reservation_timeout``.
        clock: seconds, monotonic (tests pass their own).
    """

    def __init__(self, limits: Limits, clock: Callable[[], float] = anyio.current_time) -> None:
        self.limits = limits
        self._clock = clock
        self._by_token: dict[str, Reservation] = {}
        self._per_client: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._by_token)

    def reserve(self, client: str, session: StreamSession) -> Reservation | None:
        """Reserve a stream for ``client``; None when it holds as many as it may."""
        self._purge()
        if self._per_client[client] >= self.limits.max_stream_reservations_per_client:
            return None
        token = f"{PROCESS_PREFIX}.{secrets.token_urlsafe(24)}"
        expires = self._clock() + self.limits.stream_reservation_timeout
        reservation = Reservation(token, client, session, expires)
        self._by_token[token] = reservation
        self._per_client[client] += 1
        return reservation

    def adopt(self, token: str, client: str, session: StreamSession, maker: str) -> Reservation:
        """Hold here, opened, a stream another process reserved (it counts there)."""
        reservation = Reservation(
            token, client, session, 0.0, opened=True, maker=maker, counted=False
        )
        self._by_token[token] = reservation
        return reservation

    def moved(self, reservation: Reservation) -> None:
        """``reservation``'s stream opened at another process: keep only where it went, for
        ``MOVED_LEASE`` seconds after its last use, and stop counting it for its client."""
        self._uncount(reservation)
        self.touch(reservation)

    def touch(self, reservation: Reservation) -> None:
        """A request reached the stream a moved reservation points to: renew its lease."""
        reservation.expires = self._clock() + MOVED_LEASE

    def get(self, token: str) -> Reservation | None:
        """The live reservation of ``token``, or None (unknown, expired or ended)."""
        reservation = self._by_token.get(token)
        if reservation is not None and self._expired(reservation, self._clock()):
            self.release(reservation)
            return None
        return reservation

    @staticmethod
    def _expired(reservation: Reservation, now: float) -> bool:
        """Unopened past its timeout, or moved and unused for ``MOVED_LEASE``."""
        waits = not reservation.opened or reservation.moved_to is not None
        return waits and now >= reservation.expires

    def release(self, reservation: Reservation) -> None:
        """Forget ``reservation`` (idempotent): its stream ended or it was never opened."""
        if self._by_token.get(reservation.token) is reservation:
            del self._by_token[reservation.token]
            self._uncount(reservation)

    def _uncount(self, reservation: Reservation) -> None:
        if reservation.counted:
            reservation.counted = False
            self._per_client[reservation.client] -= 1
            if self._per_client[reservation.client] <= 0:
                del self._per_client[reservation.client]

    def _purge(self) -> None:
        now = self._clock()
        for reservation in [r for r in self._by_token.values() if self._expired(r, now)]:
            self.release(reservation)

    @staticmethod
    def maker_of(token: str) -> str | None:
        """The prefix of the process that handed ``token`` out, when not this one."""
        prefix, dot, _ = token.partition(".")
        if not dot or prefix == PROCESS_PREFIX or not _PREFIX_SHAPE.fullmatch(prefix):
            return None
        return prefix
