"""Broadcast: publish/subscribe between resolvers, in memory or over Redis pub/sub.

Owns the public ``Broadcast`` façade and re-exports its errors and stream type. Imports
anyio, orjson, coredis (lazily, only for a ``redis://`` URL) and the standard library;
nothing in anyql's core imports this package.

Usage (the app enters the broadcast in its lifespan; that is the one way to run it)::

    broadcast = Broadcast()                        # or Broadcast("redis://127.0.0.1:6379/0")
    async with broadcast:
        await broadcast.publish("chat:lobby", {"text": "hi"})

    # in a subscription resolver (an async generator):
    async with broadcast.subscribe("chat:lobby") as messages:
        async for message in messages:
            yield message

Messages are JSON values: they are encoded with orjson on publish and every subscriber gets
the decoded copy, on both backends. Subscribers in one process share that decoded object;
treat it as read-only.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import anyio.lowlevel

from .._deprecated import renamed
from ..errors import ResumeError
from ._base import (
    OVERFLOW_POLICIES,
    BroadcastError,
    ChannelSubscription,
    OverflowPolicy,
    Router,
    SubscriberOverflow,
    check_channels,
    encode,
)
from ._durable import DurableSubscription, Feed, Retention
from ._ids import encode_token
from .memory import MemoryBackend, MemoryLog

if TYPE_CHECKING:
    from .redis_streams import RedisStreamsBackend as RedisStreamsLog

_NOT_RUNNING = (
    "Broadcast is not running: enter it with `async with broadcast:`, or let the app's"
    " lifespan start it (an app mounted in Starlette or FastAPI must enter"
    " `app.running()` in the parent's lifespan)"
)

__all__ = [
    "Broadcast",
    "BroadcastError",
    "ChannelSubscription",
    "DurableSubscription",
    "ResumeError",
    "Retention",
    "SubscriberOverflow",
]

_REDIS_SCHEMES = frozenset({"redis", "rediss", "unix"})


class _Backend(Protocol):
    @property
    def connected(self) -> bool: ...

    async def __aenter__(self) -> object: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def publish(self, channel: str, data: bytes) -> Any: ...

    def channels_changed(self) -> None: ...

    async def wait_subscribed(self, channels: tuple[str, ...]) -> None: ...


class Broadcast:
    """Publish/subscribe for resolvers: in memory by default, Redis pub/sub with a URL.

    Run it with ``async with broadcast:`` (the app does this in its lifespan); publishing or
    subscribing outside that block raises ``RuntimeError``. On exit every open subscription
    stream ends (``StopAsyncIteration``). A Broadcast may be entered again after it exited,
    but not twice at once.

    Groups are channels under ``group_prefix``, no more: ``group_send(g, m)`` publishes on
    ``group_prefix + g``; ``subscribe(broadcast.group_channel(g))`` listens to a group;
    ``group_add(g, c)`` makes this process route the group's messages to its own
    subscribers of channel ``c`` as well, until the matching ``group_discard``. Memberships
    are reference-counted and local to this ``Broadcast`` (add a channel in the process
    where its subscribers live).

    With Redis, messages published while Redis is unreachable are lost; subscriptions
    survive the outage and resume when the connection is back.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        buffer: int = 256,
        overflow: OverflowPolicy = "drop_oldest",
        publish_timeout: float = 2.0,
        group_prefix: str = "group:",
        durable: bool = False,
        retention: Retention | None = None,
        key_prefix: str = "anyql:events:",
        cluster: bool = False,
    ) -> None:
        """Configure a broadcast; nothing connects before ``async with``.

        Args:
            url: None or ``"memory://"`` for in-process delivery; ``redis://``,
                ``rediss://`` or ``unix://`` for Redis pub/sub.
            buffer: messages buffered per subscriber before ``overflow`` applies.
            overflow: ``"drop_oldest"``, ``"drop_newest"``, or ``"close"`` (the stream
                raises ``SubscriberOverflow``). Every drop is counted in
                ``ChannelSubscription.dropped`` and logged at WARNING once per burst.
            publish_timeout: seconds a Redis publish (and a Redis connection attempt) may
                take before it fails with ``BroadcastError``.
            group_prefix: the channel prefix that turns a group name into a channel.
            durable: keep every message with an id, so subscribers can resume after a
                gap (``events(..., after=...)``): a bounded ring per channel in memory,
                or one Redis stream per channel (``XADD``, read by notification) instead of
                pub/sub alone.
            retention: how much a durable broadcast keeps (default ``Retention()``:
                10,000 entries per channel, channels idle for a day deleted).
            key_prefix: (durable Redis) the prefix of each channel's stream key.
            cluster: ``url`` is one node of a Redis Cluster (``redis://`` or
                ``rediss://``): pub/sub is sharded (``SPUBLISH``/``SSUBSCRIBE``, each
                channel on its slot's master) and a durable broadcast's streams spread over
                the masters by slot, read by notification (see the Redis Cluster section of
                the broadcast docs).

        Raises:
            ValueError: an unknown URL scheme or overflow policy, a buffer below 1, a
                timeout that is not positive, ``retention`` without ``durable``, or
                ``cluster`` without a ``redis://`` or ``rediss://`` URL.
        """
        scheme = urlsplit(url).scheme if url is not None else "memory"
        if scheme != "memory" and scheme not in _REDIS_SCHEMES:
            raise ValueError(f"unsupported broadcast URL scheme {scheme!r}")
        if buffer < 1:
            raise ValueError("buffer must be at least 1")
        if overflow not in OVERFLOW_POLICIES:
            raise ValueError(f"unknown overflow policy {overflow!r}")
        if not publish_timeout > 0:
            raise ValueError("publish_timeout must be positive")
        if retention is not None and not durable:
            raise ValueError("retention applies to a durable Broadcast: pass durable=True")
        if not key_prefix:
            raise ValueError("key_prefix cannot be empty")
        if cluster and scheme not in ("redis", "rediss"):
            raise ValueError(
                f"cluster=True needs the redis:// or rediss:// URL of a cluster node, not {url!r}"
            )
        self._cluster = cluster
        self._url = url if scheme != "memory" else None
        self._retention = retention if retention is not None else Retention()
        self._durable = durable
        self._key_prefix = key_prefix
        self._feed: Feed | None = None
        self._log: MemoryLog | RedisStreamsLog | None = None
        self._buffer = buffer
        self._overflow: OverflowPolicy = overflow
        self._publish_timeout = publish_timeout
        self._group_prefix = group_prefix
        self._router: Router | None = None
        self._backend: _Backend | None = None
        #: Subscriptions whose channels are subscribed (on Redis: confirmed), per channel,
        #: and one event for every ``wait_for_subscribers`` call to recheck on a change.
        self._listening: dict[str, dict[ChannelSubscription | DurableSubscription, None]] = {}
        self._listening_changed = anyio.Event()

    def __repr__(self) -> str:
        where = "memory" if self._url is None else urlsplit(self._url).scheme
        if self._cluster:
            where += ", cluster"
        if self._durable:
            where += ", durable"
        state = "running" if self._backend is not None else "stopped"
        return f"<Broadcast {where} {state}>"

    @property
    def shared_between_processes(self) -> bool:
        """True for Redis: every process that uses the same URL (or cluster) sees each message."""
        return self._url is not None

    @property
    def connected(self) -> bool:
        """True while running and (for Redis) the pub/sub connection is up; for health checks."""
        return self._backend is not None and self._backend.connected

    async def __aenter__(self) -> Broadcast:
        if self._router is not None:
            raise RuntimeError("this Broadcast is already running")
        backend: _Backend
        router = Router(on_change=lambda: backend.channels_changed())
        feed = Feed(on_change=lambda: backend.channels_changed())
        log: MemoryLog | RedisStreamsLog | None = None
        if self._url is None:
            log = MemoryLog(self._retention, feed) if self._durable else None
            backend = MemoryBackend(router, log)
        elif self._durable:
            from .redis_streams import RedisStreamsBackend

            backend = log = RedisStreamsBackend(
                self._url,
                router,
                feed,
                publish_timeout=self._publish_timeout,
                retention=self._retention,
                key_prefix=self._key_prefix,
                cluster=self._cluster,
            )
        else:
            from .redis import RedisBackend

            backend = RedisBackend(
                self._url, router, publish_timeout=self._publish_timeout, cluster=self._cluster
            )
        self._router, self._feed, self._log = router, feed, log
        try:
            await backend.__aenter__()
        except BaseException:
            self._router = self._feed = self._log = None
            raise
        self._backend = backend
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        backend, router, feed = self._backend, self._router, self._feed
        self._backend = self._router = self._feed = self._log = None
        self._listening.clear()
        self._listening_change()  # waiters see that the broadcast stopped
        try:
            if backend is not None:
                await backend.__aexit__(exc_type, exc, tb)
        finally:
            if router is not None:
                router.close_all()
            if feed is not None:
                feed.close_all()

    async def publish(self, channel: str, message: Any) -> str | None:
        """Publish ``message`` to every subscriber of ``channel`` (and its group members).

        Never waits for subscribers: a slow one loses messages under its overflow policy
        (a durable subscription never does: it reads from the retained log instead).

        Args:
            channel: the channel name.
            message: any JSON-serialisable value.

        Returns:
            For a durable broadcast, the message's event id (a resume token for
            ``channel``: ``events(channel, after=id)`` starts after this message); None
            otherwise.

        Raises:
            TypeError: ``message`` is not JSON-serialisable.
            BroadcastError: (Redis) unreachable or no answer within ``publish_timeout``.
            RuntimeError: the broadcast is not running.
        """
        data = encode(message)
        backend = self._running_backend()
        entry_id = await backend.publish(channel, data)
        if self._log is None or entry_id is None:
            return None
        return encode_token(self._log.epoch, {channel: entry_id})

    def subscribe(self, *channels: str, timeout: float | None = None) -> ChannelSubscription:
        """Listen to ``channels``: ``async with broadcast.subscribe("a") as s: async for m in s``.

        Entering registers the subscription (for Redis it also waits, at most
        ``publish_timeout``, for the SUBSCRIBE to be confirmed, so a publish made after
        entering is received); leaving unregisters it. Safe inside a resolver's async
        generator: no task or cancel scope stays open across its ``yield``.

        Args:
            channels: one or more channel names.
            timeout: when set, iteration raises ``TimeoutError`` if no message arrives
                within that many seconds (the stream stays usable).

        Returns:
            A ``ChannelSubscription``: an async context manager whose value is the stream.

        Raises:
            ValueError: no channels, or an empty channel name.
        """
        unique = tuple(dict.fromkeys(channels))
        check_channels(unique)
        return ChannelSubscription(
            unique,
            capacity=self._buffer,
            overflow=self._overflow,
            timeout=timeout,
            attach=self._attach,
            detach=self._detach,
        )

    @property
    def durable(self) -> bool:
        """True when messages are kept with ids (``Broadcast(durable=True)``)."""
        return self._durable

    def events(
        self, *channels: str, after: str | None = None, buffer: int | None = None
    ) -> DurableSubscription:
        """Read ``channels`` of a durable broadcast as ``anyql.Event`` objects, resumable.

        ``async with broadcast.events("a", after=resume_point(info)) as events:``, then
        ``async for event in events: yield event`` in a subscription resolver: each
        ``Event`` carries the message (``value``), the channel, and an ``id`` that is the
        resume token after it. With ``after`` (a token this broadcast issued: an event's
        id or what ``publish`` returned) the stream starts right after it, channel by
        channel, without gaps or duplicates; channels the token does not name, and every
        channel without ``after``, start at the moment of entering. There is no order
        across channels. The overflow policy does not apply: a subscriber that falls more
        than ``buffer`` events behind reads from the retained log at its own pace, and
        one that falls behind retention ends with ``ResumeError``.

        Args:
            channels: one or more channel names (groups are not expanded: listen to
                ``group_channel(g)`` itself).
            after: the resume token, or None to start now.
            buffer: events buffered from the live feed before the subscription reads
                from the log instead (default: the broadcast's ``buffer``).

        Returns:
            A ``DurableSubscription`` (an async context manager; its value is the stream).

        Raises:
            ValueError: the broadcast is not durable, no channels, an empty channel name,
                or a buffer below 1. Entering raises ``ResumeError`` for a resume point
                that is malformed, of other channels, from the future
                (``RESUME_POINT_INVALID``) or past retention (``RESUME_POINT_EXPIRED``),
                and ``RuntimeError`` when the broadcast is not running.
        """
        if not self._durable:
            raise ValueError("events() needs a durable Broadcast: Broadcast(..., durable=True)")
        unique = tuple(dict.fromkeys(channels))
        check_channels(unique)
        capacity = self._buffer if buffer is None else buffer
        if capacity < 1:
            raise ValueError("buffer must be at least 1")
        return DurableSubscription(
            unique,
            after=after,
            capacity=capacity,
            log=self._running_log,
            feed=self._running_feed,
            listening=self._durable_listening,
        )

    def _durable_listening(self, subscription: DurableSubscription, listening: bool) -> None:
        for channel in subscription.channels:
            entries = self._listening.setdefault(channel, {})
            if listening:
                entries[subscription] = None
            else:
                entries.pop(subscription, None)
                if not entries:
                    del self._listening[channel]
        self._listening_change()

    def group_channel(self, group: str) -> str:
        """The channel that carries ``group``'s messages: ``group_prefix + group``."""
        return self._group_prefix + group

    async def group_add(self, group: str, channel: str) -> None:
        """Route ``group``'s messages to this process's subscribers of ``channel`` too.

        Reference-counted: each call needs its own ``group_discard``.

        Args:
            group: the group name.
            channel: the member channel.

        Raises:
            RuntimeError: the broadcast is not running.
        """
        backend = self._running_backend()
        group_channel = self.group_channel(group)
        self._running_router().add_member(group_channel, channel)
        await backend.wait_subscribed((group_channel,))

    async def group_discard(self, group: str, channel: str) -> None:
        """Undo one ``group_add``; a no-op when ``channel`` is not in ``group``.

        Args:
            group: the group name.
            channel: the member channel.

        Raises:
            RuntimeError: the broadcast is not running.
        """
        self._running_backend()
        self._running_router().discard_member(self.group_channel(group), channel)
        await anyio.lowlevel.checkpoint()

    async def group_send(self, group: str, message: Any) -> None:
        """Publish ``message`` to ``group``'s channel; same contract as ``publish``.

        Args:
            group: the group name.
            message: any JSON-serialisable value.

        Raises:
            TypeError: ``message`` is not JSON-serialisable.
            BroadcastError: (Redis) unreachable or no answer within ``publish_timeout``.
            RuntimeError: the broadcast is not running.
        """
        await self.publish(self.group_channel(group), message)

    def local_subscribers(self, channel: str) -> int:
        """How many subscriptions in this process listen to ``channel`` (for metrics)."""
        return 0 if self._router is None else self._router.count(channel)

    async def wait_for_subscribers(self, channel: str, count: int = 1) -> None:
        """Wait until at least ``count`` subscriptions in this process listen to ``channel``.

        A subscription counts once it is listening: on Redis, once the server confirmed the
        SUBSCRIBE, so a message published after this returns reaches it. For tests and
        start-up ordering (publish only once a subscription is known to listen), without a
        retry loop; bound it with ``anyio.fail_after`` if it might never happen.

        Args:
            channel: the channel.
            count: how many local subscriptions to wait for.

        Raises:
            RuntimeError: the broadcast is not running.
        """
        self._running_backend()
        while len(self._listening.get(channel, ())) < count:
            await self._listening_changed.wait()
            self._running_backend()

    def _listening_change(self) -> None:
        self._listening_changed.set()
        self._listening_changed = anyio.Event()

    async def _attach(self, subscription: ChannelSubscription) -> None:
        backend = self._running_backend()
        router = self._running_router()
        router.attach(subscription)
        try:
            await backend.wait_subscribed(subscription.channels)
        except BaseException:
            router.detach(subscription)
            raise
        for channel in subscription.channels:
            self._listening.setdefault(channel, {})[subscription] = None
        self._listening_change()

    def _detach(self, subscription: ChannelSubscription) -> None:
        if self._router is not None:
            self._router.detach(subscription)
        for channel in subscription.channels:
            listening = self._listening.get(channel)
            if listening is not None and subscription in listening:
                del listening[subscription]
                if not listening:
                    del self._listening[channel]
        self._listening_change()

    def _running_backend(self) -> _Backend:
        if self._backend is None:
            raise RuntimeError(_NOT_RUNNING)
        return self._backend

    def _running_log(self) -> MemoryLog | RedisStreamsLog:
        self._running_backend()
        assert self._log is not None
        return self._log

    def _running_feed(self) -> Feed:
        self._running_backend()
        assert self._feed is not None
        return self._feed

    def _running_router(self) -> Router:
        if self._router is None:
            raise RuntimeError(_NOT_RUNNING)
        return self._router


#: Old names that still work, with a ``DeprecationWarning``.
__getattr__ = renamed(
    "anyql.broadcast", {"Subscription": ("ChannelSubscription", ChannelSubscription)}
)
