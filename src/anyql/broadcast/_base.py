"""What both Broadcast backends share: errors, the subscriber stream and the local router.

Owns ``BroadcastError``, ``SubscriberOverflow``, ``ChannelSubscription`` (one subscriber's bounded
buffer and its overflow policy) and ``Router`` (which local subscriptions and group
memberships want which channel, with reference counts). Imports anyio, orjson and the
standard library only; it knows nothing about Redis.

Theory of operation: a subscription is a *registration*, not a task. Whoever receives a
message (the in-memory ``publish`` or the Redis listener task) calls ``Router.deliver``,
which decodes it once and offers it to every interested ``ChannelSubscription`` without awaiting;
``ChannelSubscription.offer`` appends to a bounded deque or applies the overflow policy, so a
publisher never blocks on a slow subscriber. The consumer's ``__anext__`` awaits an event
that ``offer`` sets. No task group or cancel scope stays open across the consumer's
``yield``, which is what makes ``async with broadcast.subscribe(...)`` safe inside a
resolver's async generator.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Collection
from types import TracebackType
from typing import Any, Literal

import anyio
import anyio.lowlevel
import orjson

from ..errors import BroadcastError, SubscriberOverflow

__all__ = [
    "OVERFLOW_POLICIES",
    "BroadcastError",
    "ChannelSubscription",
    "OverflowPolicy",
    "Router",
    "SubscriberOverflow",
    "check_channels",
    "encode",
    "logger",
]

logger = logging.getLogger("anyql.broadcast")

#: What a full subscriber buffer does with one more message.
OverflowPolicy = Literal["drop_oldest", "drop_newest", "close"]
OVERFLOW_POLICIES: frozenset[str] = frozenset({"drop_oldest", "drop_newest", "close"})


def encode(message: Any) -> bytes:
    """Encode one broadcast message as JSON.

    Args:
        message: any value orjson can serialise.

    Returns:
        The JSON bytes.

    Raises:
        TypeError: the value is not JSON-serialisable (``orjson.JSONEncodeError``).
    """
    return orjson.dumps(message)


class ChannelSubscription:
    """One subscriber: an async context manager that is also the message iterator.

    ``async with broadcast.subscribe("a", "b") as stream: async for message in stream: ...``

    Messages are buffered up to ``buffer`` per subscriber; when the buffer is full the
    overflow policy applies, each lost message is counted in ``dropped`` and the first loss
    of each burst is logged at WARNING. The stream ends (``StopAsyncIteration``) when the
    ``Broadcast`` shuts down. With ``timeout`` set, ``__anext__`` raises ``TimeoutError``
    when no message arrives within that many seconds; the stream stays usable, so a
    consumer may catch it and iterate again.
    """

    def __init__(
        self,
        channels: tuple[str, ...],
        *,
        capacity: int,
        overflow: OverflowPolicy,
        timeout: float | None,
        attach: Callable[[ChannelSubscription], Awaitable[None]],
        detach: Callable[[ChannelSubscription], None],
    ) -> None:
        #: The channels this subscription listens to.
        self.channels = channels
        #: Messages this subscriber lost to its overflow policy.
        self.dropped = 0
        self._capacity = capacity
        self._overflow = overflow
        self._timeout = timeout
        self._attach = attach
        self._detach = detach
        self._buffer: deque[Any] = deque()
        self._wakeup: anyio.Event | None = None
        self._entered = False
        self._ended = False
        self._error: BaseException | None = None
        self._burst_logged = False

    async def __aenter__(self) -> ChannelSubscription:
        if self._entered:
            raise RuntimeError("a ChannelSubscription can be entered only once")
        self._entered = True
        await self._attach(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Synchronous on purpose: nothing here can be cancelled or needs a running loop
        # turn, so it is safe during an async generator's aclose() or finalisation.
        self.end()
        self._detach(self)

    def __aiter__(self) -> ChannelSubscription:
        return self

    async def __anext__(self) -> Any:
        if self._timeout is None:
            return await self._next()
        with anyio.fail_after(self._timeout):
            return await self._next()

    async def _next(self) -> Any:
        await anyio.lowlevel.checkpoint()
        while not self._buffer:
            if self._error is not None:
                raise self._error
            if self._ended:
                raise StopAsyncIteration
            if self._wakeup is None:
                self._wakeup = anyio.Event()
            await self._wakeup.wait()
        message = self._buffer.popleft()
        if not self._buffer:
            self._burst_logged = False
        return message

    def offer(self, message: Any) -> None:
        """Buffer ``message`` without blocking, applying the overflow policy when full."""
        if self._ended:
            return
        if len(self._buffer) < self._capacity:
            self._buffer.append(message)
        elif self._overflow == "drop_oldest":
            self._buffer.popleft()
            self._buffer.append(message)
            self._count_drop(1)
        elif self._overflow == "drop_newest":
            self._count_drop(1)
        else:
            self._count_drop(1 + len(self._buffer))
            self._buffer.clear()
            self.end(SubscriberOverflow(f"subscriber buffer of {self._capacity} overflowed"))
            self._detach(self)
        self._wake()

    def end(self, error: BaseException | None = None) -> None:
        """Deliver nothing more; the iterator raises ``error``, or stops when it is None."""
        if self._ended:
            return
        self._ended = True
        self._error = error
        self._wake()

    def _count_drop(self, lost: int) -> None:
        self.dropped += lost
        if not self._burst_logged:
            self._burst_logged = True
            logger.warning(
                "slow broadcast subscriber on %s: buffer of %d full, policy %s, "
                "%d message(s) dropped so far",
                ", ".join(self.channels),
                self._capacity,
                self._overflow,
                self.dropped,
            )

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()
            self._wakeup = None


class Router:
    """The local routing table: which subscriptions and group members want which channel.

    A channel's reference count is the number of attached subscriptions listing it plus, for
    a group channel, the number of ``add_member`` calls not yet matched by
    ``discard_member``. ``on_change`` is called (synchronously) whenever a channel's count
    goes from 0 to 1 or from 1 to 0, which is when a Redis backend must SUBSCRIBE or
    UNSUBSCRIBE.
    """

    def __init__(self, on_change: Callable[[], None]) -> None:
        self._on_change = on_change
        self._subscribers: dict[str, dict[ChannelSubscription, None]] = {}
        self._members: dict[str, Counter[str]] = {}
        self._refs: Counter[str] = Counter()
        #: Channels the broker refused to carry, with the error for their subscribers.
        self._refused: dict[str, BroadcastError] = {}
        #: Called with a channel nothing local wants any more (after ``on_change``).
        self.on_release: Callable[[str], None] | None = None

    def channels(self) -> frozenset[str]:
        """Every channel something local currently wants."""
        return frozenset(self._refs)

    def wants(self, channel: str) -> bool:
        """Whether something local wants ``channel``."""
        return channel in self._refs

    def count(self, channel: str) -> int:
        """How many subscriptions are attached to ``channel``."""
        return len(self._subscribers.get(channel, ()))

    def attach(self, subscription: ChannelSubscription) -> None:
        """Register ``subscription`` on each of its channels."""
        for channel in subscription.channels:
            self._subscribers.setdefault(channel, {})[subscription] = None
            self._ref(channel)
            if channel in self._refused:
                subscription.end(self._refused[channel])

    def detach(self, subscription: ChannelSubscription) -> None:
        """Unregister ``subscription``; a no-op when it is not attached."""
        for channel in subscription.channels:
            subscribers = self._subscribers.get(channel)
            if subscribers is None or subscription not in subscribers:
                continue
            del subscribers[subscription]
            if not subscribers:
                del self._subscribers[channel]
            self._unref(channel)

    def add_member(self, group_channel: str, channel: str) -> None:
        """Route messages on ``group_channel`` to the subscribers of ``channel`` too."""
        self._members.setdefault(group_channel, Counter())[channel] += 1
        self._ref(group_channel)

    def discard_member(self, group_channel: str, channel: str) -> None:
        """Undo one ``add_member``; a no-op when ``channel`` is not a member."""
        members = self._members.get(group_channel)
        if members is None or channel not in members:
            return
        members[channel] -= 1
        if members[channel] <= 0:
            del members[channel]
        if not members:
            del self._members[group_channel]
        self._unref(group_channel)

    def deliver(self, channel: str, data: bytes | str) -> None:
        """Offer the JSON message ``data`` on ``channel`` to every interested subscriber.

        Never blocks and never raises for a subscriber that has just left: the recipients
        are collected first, and offering to an ended subscription does nothing.
        """
        recipients = self._recipients(channel)
        if not recipients:
            return
        try:
            message = orjson.loads(data)
        except orjson.JSONDecodeError:
            logger.warning("dropped a broadcast message on %s that is not JSON", channel)
            return
        for subscription in recipients:
            subscription.offer(message)

    def refuse(self, channel: str, error: BroadcastError) -> None:
        """The broker cannot carry ``channel``: end its subscribers with ``error``, and
        those that attach while it is still wanted (a no-op when nothing wants it)."""
        if channel not in self._refs:
            return
        self._refused[channel] = error
        # Its own subscribers only, as ``attach`` does for later ones: a member of a group
        # channel still gets its own channel.
        for subscription in tuple(self._subscribers.get(channel, ())):
            subscription.end(error)

    def _recipients(self, channel: str) -> dict[ChannelSubscription, None]:
        recipients = dict.fromkeys(self._subscribers.get(channel, ()))
        for member in self._members.get(channel, ()):
            recipients.update(dict.fromkeys(self._subscribers.get(member, ())))
        return recipients

    def close_all(self) -> None:
        """End every subscription's stream and forget all registrations."""
        subscriptions = {s: None for subs in self._subscribers.values() for s in subs}
        self._subscribers.clear()
        self._members.clear()
        self._refs.clear()
        self._refused.clear()
        for subscription in subscriptions:
            subscription.end()

    def _ref(self, channel: str) -> None:
        self._refs[channel] += 1
        if self._refs[channel] == 1:
            self._on_change()

    def _unref(self, channel: str) -> None:
        self._refs[channel] -= 1
        if self._refs[channel] <= 0:
            del self._refs[channel]
            self._refused.pop(channel, None)
            self._on_change()
            if self.on_release is not None:
                self.on_release(channel)


def check_channels(channels: Collection[str]) -> None:
    """Reject an empty channel list or a channel that is not a non-empty string.

    Raises:
        ValueError: no channels, or an empty name.
        TypeError: a channel name that is not a ``str``.
    """
    if not channels:
        raise ValueError("subscribe() needs at least one channel")
    for channel in channels:
        if not isinstance(channel, str):
            raise TypeError(f"channel names are str, not {type(channel).__name__}")
        if not channel:
            raise ValueError("channel names cannot be empty")
