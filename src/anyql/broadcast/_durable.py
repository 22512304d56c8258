"""Durable subscriptions: events with ids, read from a retained log, resumable after a gap.

Owns ``Retention`` (how long a durable backend keeps events), ``Entry`` (one retained event:
its id, the id before it in its channel, its JSON bytes), ``EventLog`` (what a durable
backend offers: the last id of a channel, a page of entries after an id, and where the
process's live feed stands), ``Feed`` (which durable subscriptions want which channel) and
``DurableSubscription`` (one subscriber). Imports anyio, orjson, the standard library,
``..types``, ``..errors`` and ``._ids``; it knows nothing about Redis.

Theory of operation. Every entry records the id of the entry before it in its channel
(``prev``), so a reader can tell a contiguous sequence from one with a hole: an entry
whose ``prev`` is not the last id the reader has means entries were trimmed, expired or
lost in between. A subscription keeps, per channel, the last id it *accepted* (put in its
buffer) and the last id it *delivered* (yielded; the resume token is made of these). Each
channel is in one of two modes:

* catching up: the subscription reads pages from the log after its accepted id, in its
  own ``__anext__``, so it reads only as fast as its consumer takes events (backpressure,
  no drop). Every channel starts here, from the resume point or from the channel's last id
  at entry. When a page comes back empty and the live feed stands at or before the accepted
  id, the channel goes live in the same loop turn, so nothing falls between the two.
* live: the backend's single reader (one per process, whatever the number of subscribers)
  offers each new entry without awaiting. An entry already accepted is skipped; one that
  does not follow the accepted id, or that finds the buffer full, sends the channel back to
  catching up from its accepted id. A durable subscriber is never dropped from and never
  closed for being slow: it reads from the log instead, and only a log that no longer holds
  what it needs ends it, with ``ResumeError("RESUME_POINT_EXPIRED")``.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from types import TracebackType
from typing import Any, Protocol

import anyio
import anyio.lowlevel
import orjson

from ..errors import BroadcastError, ResumeError
from ..types import MAX_EVENT_ID_LENGTH, Event
from ._base import logger
from ._ids import EXPIRED, INVALID, ZERO, StreamId, decode_token, encode_token

__all__ = [
    "DurableSubscription",
    "Entry",
    "EventLog",
    "Feed",
    "LogUnavailable",
    "Retention",
    "check_not_future",
    "check_resume",
]

#: The most entries one catch-up read takes from the log.
PAGE = 256
#: An id whose time is this far (ms) ahead of this clock is from the future, not from a log
#: that lost entries (clocks of servers differ by less).
_FUTURE_MS = 60_000
#: Retry delays while the log cannot be read (a broker outage): first, then doubling to max.
_RETRY_FIRST = 0.1
_RETRY_MAX = 2.0


@dataclass(frozen=True, slots=True)
class Retention:
    """How much of each channel a durable Broadcast keeps for subscribers to resume from.

    Attributes:
        max_length: entries kept per channel (on Redis ``MAXLEN ~``: at least this many, a
            little more until a whole node can go). None for no length bound.
        max_age: seconds an entry is kept (on Redis ``MINID ~``). None for no age bound.
        idle_ttl: seconds after its last publish that a whole channel is deleted, so
            channels nobody publishes to any more (per-user channels) do not pile up. None
            to keep them. A client resuming on a deleted channel gets
            ``RESUME_POINT_EXPIRED``.

    At least one of ``max_length`` and ``max_age`` must be set.
    """

    max_length: int | None = 10_000
    max_age: float | None = None
    idle_ttl: float | None = 86_400.0

    def __post_init__(self) -> None:
        if self.max_length is None and self.max_age is None:
            raise ValueError("Retention needs max_length or max_age (or both)")
        if self.max_length is not None and (
            isinstance(self.max_length, bool)
            or not isinstance(self.max_length, int)
            or self.max_length < 1
        ):
            raise ValueError("Retention.max_length must be a whole number of at least 1")
        for name in ("max_age", "idle_ttl"):
            value = getattr(self, name)
            if value is not None and not (
                isinstance(value, int | float) and not isinstance(value, bool) and value > 0
            ):
                raise ValueError(f"Retention.{name} must be a positive number of seconds")
            if value is not None and math.isinf(value):
                raise ValueError(f"Retention.{name} must be finite (None means no bound)")


class LogUnavailable(BroadcastError):
    """The log cannot be read now (the broker is unreachable or slow): worth retrying."""


class Entry:
    """One retained event. ``prev`` is None when the writer did not record it."""

    __slots__ = ("_value", "data", "id", "prev")

    def __init__(self, id: StreamId, prev: StreamId | None, data: bytes) -> None:
        self.id = id
        self.prev = prev
        self.data = data
        self._value: Any = _UNDECODED

    def value(self) -> Any:
        """The decoded message, decoded once for every subscriber that gets this entry.

        Raises:
            ValueError: the data is not JSON.
        """
        if self._value is _UNDECODED:
            self._value = orjson.loads(self.data)
        return self._value


_UNDECODED: Any = object()


class EventLog(Protocol):
    """What a durable backend offers its subscriptions."""

    @property
    def epoch(self) -> str:
        """Names the log that issued an id: tokens from another one cannot resume here."""
        ...

    async def head(self, channel: str) -> StreamId:
        """The id of the channel's last entry ever written, ``ZERO`` for none."""
        ...

    async def read_after(self, channel: str, after: StreamId, count: int) -> list[Entry]:
        """Up to ``count`` entries after ``after``, oldest first.

        Raises:
            ResumeError: entries after ``after`` are gone, or ``after`` is not an id of
                this channel (see ``check_resume``).
            BroadcastError: the broker cannot be read now.
        """
        ...

    def live_position(self, channel: str) -> StreamId | None:
        """The last id the live feed offered on ``channel`` (or where it started reading);
        None while the feed does not read the channel yet."""
        ...


def check_resume(
    channel: str, after: StreamId, first: Entry | None, last_id: StreamId | None
) -> None:
    """Whether reading ``channel`` after ``after`` is contiguous, for a log's ``read_after``.

    Args:
        channel: for the messages.
        after: the id the reader has.
        first: the first retained entry after ``after``, if any.
        last_id: the channel's last id ever written, None when the channel does not exist
            (never written, expired, or lost by the broker).

    Raises:
        ResumeError: ``RESUME_POINT_INVALID`` when ``after`` is from the future (its time
            more than a minute ahead of this clock); ``RESUME_POINT_EXPIRED`` when entries
            after ``after`` may be gone: trimmed, expired, or lost by a broker (which can
            leave the channel's last id behind ``after``, or entries that do not follow it).
    """
    check_not_future(channel, after)
    if first is not None:
        if first.prev is None or first.prev == after:
            return
        raise _expired(channel, "events after it are no longer retained")
    if last_id is None:
        if after != ZERO:
            raise _expired(channel, "the channel's events expired or were lost")
        return
    if after != last_id:
        raise _expired(channel, "events after it are no longer retained")


def check_not_future(channel: str, after: StreamId) -> None:
    """Raise ``RESUME_POINT_INVALID`` for an id whose time is ahead of this clock."""
    if after[0] > time.time() * 1000 + _FUTURE_MS:
        raise ResumeError(INVALID, f"cannot resume: the id is ahead of channel {channel!r}")


def _expired(channel: str, why: str) -> ResumeError:
    return ResumeError(
        EXPIRED,
        f"cannot resume channel {channel!r} where asked: {why}; fetch the current state and"
        " subscribe again without a resume point",
    )


class Feed:
    """The durable subscriptions of this process, per channel; fed by the live reader."""

    def __init__(self, on_change: Callable[[], None]) -> None:
        self._on_change = on_change
        self._subscribers: dict[str, dict[DurableSubscription, None]] = {}
        #: Channels the broker refused to carry, with the error for their subscribers.
        self._refused: dict[str, BroadcastError] = {}
        #: Called with a channel that just lost its last subscriber (the memory log
        #: starts its idle time then).
        self.on_release: Callable[[str], None] | None = None

    def channels(self) -> frozenset[str]:
        """Every channel some durable subscription of this process reads."""
        return frozenset(self._subscribers)

    def wants(self, channel: str) -> bool:
        """Whether some durable subscription of this process reads ``channel``."""
        return channel in self._subscribers

    def attach(self, subscription: DurableSubscription) -> None:
        changed = False
        for channel in subscription.channels:
            subscribers = self._subscribers.get(channel)
            if subscribers is None:
                subscribers = self._subscribers[channel] = {}
                changed = True
            subscribers[subscription] = None
            if channel in self._refused:
                subscription.end(self._refused[channel])
        if changed:
            self._on_change()

    def detach(self, subscription: DurableSubscription) -> None:
        changed = False
        for channel in subscription.channels:
            subscribers = self._subscribers.get(channel)
            if subscribers is None or subscription not in subscribers:
                continue
            del subscribers[subscription]
            if not subscribers:
                del self._subscribers[channel]
                self._refused.pop(channel, None)
                changed = True
                if self.on_release is not None:
                    self.on_release(channel)
        if changed:
            self._on_change()

    def deliver(self, channel: str, entry: Entry) -> None:
        """Offer a new entry to the channel's subscribers; never blocks."""
        subscribers = self._subscribers.get(channel)
        if subscribers:
            for subscription in tuple(subscribers):
                subscription.offer(channel, entry)

    def refuse(self, channel: str, error: BroadcastError) -> None:
        """The broker cannot carry ``channel``: end its subscribers with ``error``, and
        those that attach while it is still read (a no-op when nobody reads it)."""
        subscribers = self._subscribers.get(channel)
        if subscribers is None:
            return
        self._refused[channel] = error
        for subscription in tuple(subscribers):
            subscription.end(error)

    def ready(self, channel: str) -> None:
        """The live feed now reads ``channel``: wake its subscribers that wait for it."""
        for subscription in tuple(self._subscribers.get(channel, ())):
            subscription.wake()

    def close_all(self) -> None:
        subscriptions = {s: None for subs in self._subscribers.values() for s in subs}
        self._subscribers.clear()
        self._refused.clear()
        for subscription in subscriptions:
            subscription.end()


class DurableSubscription:
    """One durable subscriber: an async context manager that is also the event iterator.

    ``async with broadcast.events("a", after=token) as events: async for event in events``
    yields ``anyql.Event`` objects: ``value`` is the message, ``id`` the resume token after
    it (every channel's position), ``channel`` where it was published. Entering checks the
    resume point, so a ``ResumeError`` is raised there, before anything is yielded; the
    stream ends (``StopAsyncIteration``) when the ``Broadcast`` shuts down.
    """

    def __init__(
        self,
        channels: tuple[str, ...],
        *,
        after: str | None,
        capacity: int,
        log: Callable[[], EventLog],
        feed: Callable[[], Feed],
        listening: Callable[[DurableSubscription, bool], None] | None = None,
    ) -> None:
        #: The channels this subscription reads.
        self.channels = channels
        self._after = after
        self._capacity = capacity
        self._log_of = log
        self._feed_of = feed
        #: Told when the subscription starts and stops listening (``wait_for_subscribers``).
        self._listening = listening
        self._log: EventLog | None = None
        self._feed: Feed | None = None
        self._epoch = ""
        self._accepted: dict[str, StreamId] = {}
        self._delivered: dict[str, StreamId] = {}
        self._catching: dict[str, None] = dict.fromkeys(channels)
        self._buffer: deque[tuple[str, Entry]] = deque()
        self._wakeup: anyio.Event | None = None
        self._entered = False
        self._ended = False
        self._error: BaseException | None = None

    async def __aenter__(self) -> DurableSubscription:
        try:
            return await self._enter()
        except _Stopped:
            raise BroadcastError("the broadcast stopped while the subscription started") from None

    async def _enter(self) -> DurableSubscription:
        if self._entered:
            raise RuntimeError("a DurableSubscription can be entered only once")
        self._entered = True
        log, feed = self._log_of(), self._feed_of()
        # Before any I/O: the widest id must fit (about 50 channels of short names).
        widest = {c: (2**64 - 1, 2**64 - 1) for c in self.channels}
        if len(encode_token(log.epoch, widest)) > MAX_EVENT_ID_LENGTH:
            raise ValueError(
                f"{len(self.channels)} channels are too many for one resumable"
                f" subscription: its event ids would exceed {MAX_EVENT_ID_LENGTH}"
                " characters; use fewer or shorter channel names"
            )
        resumed = self._resume_points(log.epoch)
        self._log, self._epoch = log, log.epoch
        # Registered first: whatever is published from now on is either read from the log
        # by the catch-up below or offered live; the catch-up decides which.
        self._feed = feed
        feed.attach(self)
        try:
            for channel in self.channels:
                at = resumed.get(channel)
                if at is None:
                    at = await self._retrying(partial(log.head, channel))
                self._accepted[channel] = self._delivered[channel] = at
            for channel in resumed:  # a bad resume point fails here, before any event
                await self._catch_up(channel)
        except BaseException:
            self._detach()
            raise
        if self._listening is not None:
            self._listening(self, True)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Synchronous, like ChannelSubscription's: safe during an async generator's aclose().
        self.end()
        self._detach()

    def __aiter__(self) -> DurableSubscription:
        return self

    async def __anext__(self) -> Event:
        await anyio.lowlevel.checkpoint()
        while True:
            if self._buffer:
                channel, entry = self._buffer.popleft()
                self._delivered[channel] = entry.id
                try:
                    value = entry.value()
                except ValueError:
                    logger.warning("skipped a durable broadcast entry on %s: not JSON", channel)
                    continue
                token = encode_token(self._epoch, self._delivered)
                return Event(value, token, channel)
            if self._error is not None:
                raise self._error
            if self._ended:
                raise StopAsyncIteration
            # Made before catching up, so an offer or end() during its awaits is not missed.
            if self._wakeup is None:
                self._wakeup = anyio.Event()
            wakeup = self._wakeup
            try:
                caught_up_some = await self._catch_up_some()
            except _Stopped:
                continue  # ended meanwhile: the checks above say how
            if not caught_up_some:
                await wakeup.wait()

    @property
    def position(self) -> str:
        """The resume token after the last event yielded (or the starting point)."""
        return encode_token(self._epoch, self._delivered)

    def offer(self, channel: str, entry: Entry) -> None:
        """A new entry from the live feed; see the module docstring. Never blocks."""
        if self._ended or channel in self._catching:
            return
        accepted = self._accepted[channel]
        if entry.id <= accepted:
            return
        if (entry.prev is not None and entry.prev != accepted) or len(
            self._buffer
        ) >= self._capacity:
            self._catching[channel] = None
        else:
            self._buffer.append((channel, entry))
            self._accepted[channel] = entry.id
        self.wake()

    def wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()
            self._wakeup = None

    def end(self, error: BaseException | None = None) -> None:
        """Yield nothing more; the iterator raises ``error``, or stops when it is None."""
        if self._ended:
            return
        self._ended = True
        self._error = error
        self.wake()

    # -- catching up -----------------------------------------------------------------------

    def _resume_points(self, epoch: str) -> dict[str, StreamId]:
        if self._after is None:
            return {}
        token_epoch, positions = decode_token(self._after)
        named = {c: at for c, at in positions.items() if c in self._catching}
        if positions and not named:
            raise ResumeError(INVALID, "cannot resume: the id belongs to other channels")
        if token_epoch != epoch:
            raise ResumeError(
                EXPIRED,
                "cannot resume: the id was issued by another event log (the process"
                " restarted, or another server without a shared broker); fetch the current"
                " state and subscribe again without a resume point",
            )
        return named

    async def _catch_up_some(self) -> bool:
        """Read one page for a channel that is catching up; True when something changed
        (entries buffered, or a channel went live), False when there is nothing to do but
        wait for the live feed."""
        for channel in tuple(self._catching):
            if await self._catch_up(channel):
                return True
        return False

    async def _catch_up(self, channel: str) -> bool:
        log = self._log
        assert log is not None
        after = self._accepted[channel]
        page = await self._retrying(partial(log.read_after, channel, after, PAGE))
        if self._ended or channel not in self._catching or self._accepted[channel] != after:
            return True  # ended, or moved on meanwhile: look again
        if page:
            self._buffer.extend((channel, entry) for entry in page)
            self._accepted[channel] = page[-1].id
            return True
        live = log.live_position(channel)
        if live is None:
            return False  # the feed does not read this channel yet: Feed.ready wakes us
        if live > after:
            # The feed offered entries after ``after`` while we read (read again), or it
            # stands on a stream that is gone (lost by the broker): then go live.
            last = await self._retrying(partial(log.head, channel))
            if self._ended or channel not in self._catching:
                return True
            if last > after:
                return True
        del self._catching[channel]
        return True

    async def _retrying(self, read: Callable[[], Awaitable[Any]]) -> Any:
        """``read()``, again after a delay while the broker is unreachable; raises
        ``_Stopped`` once the subscription ended (``end()`` cuts the delay short)."""
        delay = _RETRY_FIRST
        while True:
            if self._ended:
                raise _Stopped
            try:
                return await read()
            except LogUnavailable as error:
                logger.debug("durable subscription on %s: %s; retrying", self.channels, error)
            if self._wakeup is None:
                self._wakeup = anyio.Event()
            with anyio.move_on_after(delay):  # a retry delay, cut short by end()
                await self._wakeup.wait()
            delay = min(delay * 2, _RETRY_MAX)

    def _detach(self) -> None:
        if self._feed is not None:
            self._feed.detach(self)
            self._feed = None
            if self._listening is not None:
                self._listening(self, False)


class _Stopped(Exception):
    """The subscription ended while it waited to retry a read."""
