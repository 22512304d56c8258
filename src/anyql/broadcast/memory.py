"""The in-memory Broadcast backend: one process, no broker.

Owns ``MemoryBackend`` and, for a durable Broadcast, ``MemoryLog`` (a bounded ring of
events per channel, with ids). A publish is handed straight to the local ``Router``, which offers
it to every subscriber's bounded buffer without awaiting, so a publisher never blocks on a
slow subscriber. Imports anyio, the standard library and ``._base`` only.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections import deque
from collections.abc import Callable, Collection
from types import TracebackType

import anyio.lowlevel

from ._base import Router
from ._durable import Entry, Feed, Retention, check_resume
from ._ids import ZERO, StreamId

__all__ = ["MemoryBackend", "MemoryLog"]


class MemoryBackend:
    """Delivers messages to subscribers of the same ``Broadcast`` object."""

    def __init__(self, router: Router, log: MemoryLog | None = None) -> None:
        self._router = router
        #: Set for a durable Broadcast: every publish is also retained with an id.
        self.log = log

    @property
    def connected(self) -> bool:
        """Always True: there is no broker to lose."""
        return True

    async def __aenter__(self) -> MemoryBackend:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    async def publish(self, channel: str, data: bytes) -> StreamId | None:
        """Deliver the encoded message to local subscribers (never blocks on them).

        Args:
            channel: the channel name.
            data: the JSON-encoded message.

        Returns:
            The entry's id when the broadcast is durable, else None.
        """
        await anyio.lowlevel.checkpoint()
        entry_id = None if self.log is None else self.log.append(channel, data)
        self._router.deliver(channel, data)
        return entry_id

    def channels_changed(self) -> None:
        """Nothing to do: the router is the whole subscription state."""

    async def wait_subscribed(self, channels: Collection[str]) -> None:
        """A local registration is effective at once.

        Args:
            channels: the channels just registered.
        """
        await anyio.lowlevel.checkpoint()


class _Ring:
    """One channel's retained entries, oldest first, and its last id ever written."""

    __slots__ = ("entries", "head", "touched")

    def __init__(self) -> None:
        self.entries: deque[Entry] = deque()
        self.head: StreamId = ZERO
        self.touched = 0.0


class MemoryLog:
    """The in-memory ``EventLog``: a bounded ring per channel, for one process.

    Ids are Redis-style ``milliseconds-sequence`` from the wall clock, strictly increasing
    per channel. The epoch is random per ``MemoryLog``, so a token from before a restart
    (or from another process) is reported as expired, never misread.
    """

    def __init__(
        self, retention: Retention, feed: Feed, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._retention = retention
        self._feed = feed
        self._clock = clock
        self._epoch = "m." + secrets.token_hex(8)
        self._rings: dict[str, _Ring] = {}
        self._next_sweep = 0.0
        feed.on_release = self._released

    @property
    def epoch(self) -> str:
        return self._epoch

    def append(self, channel: str, data: bytes) -> StreamId:
        """Retain ``data`` as the channel's next entry and offer it to live subscribers."""
        now = self._clock()
        self._sweep(now)
        ring = self._live_ring(channel, now)
        if ring is None:
            ring = self._rings[channel] = _Ring()
        milliseconds = int(now * 1000)
        head = ring.head
        new_id = (milliseconds, 0) if milliseconds > head[0] else (head[0], head[1] + 1)
        # A copy of exact size: orjson's output keeps its whole (4 KiB) working buffer.
        entry = Entry(new_id, head, bytes(memoryview(data)))
        ring.entries.append(entry)
        ring.head = new_id
        ring.touched = now
        self._trim(ring, now)
        self._feed.deliver(channel, entry)
        return new_id

    async def head(self, channel: str) -> StreamId:
        await anyio.lowlevel.checkpoint()
        ring = self._live_ring(channel, self._clock())
        return ZERO if ring is None else ring.head

    async def read_after(self, channel: str, after: StreamId, count: int) -> list[Entry]:
        await anyio.lowlevel.checkpoint()
        now = self._clock()
        ring = self._live_ring(channel, now)
        if ring is None:
            check_resume(channel, after, None, None)
            return []
        self._trim(ring, now)
        entries = ring.entries
        index = _first_after(entries, after)
        if index == len(entries):
            check_resume(channel, after, None, ring.head)
            return []
        check_resume(channel, after, entries[index], ring.head)
        return list(itertools.islice(entries, index, index + count))

    def live_position(self, channel: str) -> StreamId | None:
        ring = self._rings.get(channel)
        return ZERO if ring is None else ring.head

    def retained(self, channel: str) -> int:
        """How many entries ``channel`` retains now (for tests and metrics)."""
        now = self._clock()
        ring = self._live_ring(channel, now)
        if ring is None:
            return 0
        self._trim(ring, now)
        return len(ring.entries)

    def _released(self, channel: str) -> None:
        ring = self._rings.get(channel)
        if ring is not None:
            ring.touched = self._clock()  # idle from now: its listeners missed nothing

    def _live_ring(self, channel: str, now: float) -> _Ring | None:
        ring = self._rings.get(channel)
        ttl = self._retention.idle_ttl
        if ring is not None and self._feed.wants(channel):
            ring.touched = now  # its idle time starts when its last listener leaves
        elif ring is not None and ttl is not None and now - ring.touched > ttl:
            del self._rings[channel]
            return None
        return ring

    def _trim(self, ring: _Ring, now: float) -> None:
        entries = ring.entries
        max_length = self._retention.max_length
        if max_length is not None:
            while len(entries) > max_length:
                entries.popleft()
        max_age = self._retention.max_age
        if max_age is not None:
            oldest = int((now - max_age) * 1000)
            while entries and entries[0].id[0] < oldest:
                entries.popleft()

    def _sweep(self, now: float) -> None:
        """Drop idle channels now and then, so unused per-user channels do not pile up (a
        channel some subscription still reads is kept: its subscribers missed nothing)."""
        ttl = self._retention.idle_ttl
        if ttl is None or now < self._next_sweep:
            return
        self._next_sweep = now + ttl / 10
        wants = self._feed.wants
        for channel, ring in list(self._rings.items()):
            if wants(channel):
                ring.touched = now
            elif now - ring.touched > ttl:
                del self._rings[channel]


def _first_after(entries: deque[Entry], after: StreamId) -> int:
    """The index of the first entry whose id is greater than ``after`` (binary search)."""
    low, high = 0, len(entries)
    if high and entries[-1].id <= after:
        return high
    while low < high:
        middle = (low + high) // 2
        if entries[middle].id <= after:
            low = middle + 1
        else:
            high = middle
    return low
