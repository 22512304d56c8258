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
from typing import Any, Protocol
from urllib.parse import urlsplit

import anyio.lowlevel

from .._deprecated import renamed
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
from .memory import MemoryBackend

_NOT_RUNNING = (
    "Broadcast is not running: enter it with `async with broadcast:`, or let the app's"
    " lifespan start it (an app mounted in Starlette or FastAPI must enter"
    " `app.running()` in the parent's lifespan)"
)

__all__ = ["Broadcast", "BroadcastError", "ChannelSubscription", "SubscriberOverflow"]

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

    async def publish(self, channel: str, data: bytes) -> None: ...

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

        Raises:
            ValueError: an unknown URL scheme or overflow policy, a buffer below 1, or a
                timeout that is not positive.
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
        self._url = url if scheme != "memory" else None
        self._buffer = buffer
        self._overflow: OverflowPolicy = overflow
        self._publish_timeout = publish_timeout
        self._group_prefix = group_prefix
        self._router: Router | None = None
        self._backend: _Backend | None = None
        #: Subscriptions whose channels are subscribed (on Redis: confirmed), per channel,
        #: and one event for every ``wait_for_subscribers`` call to recheck on a change.
        self._listening: dict[str, dict[ChannelSubscription, None]] = {}
        self._listening_changed = anyio.Event()

    def __repr__(self) -> str:
        where = "memory" if self._url is None else urlsplit(self._url).scheme
        state = "running" if self._backend is not None else "stopped"
        return f"<Broadcast {where} {state}>"

    @property
    def shared_between_processes(self) -> bool:
        """True for Redis: every process that uses the same URL sees each message."""
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
        if self._url is None:
            backend = MemoryBackend(router)
        else:
            from .redis import RedisBackend

            backend = RedisBackend(self._url, router, publish_timeout=self._publish_timeout)
        self._router = router
        try:
            await backend.__aenter__()
        except BaseException:
            self._router = None
            raise
        self._backend = backend
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        backend, router = self._backend, self._router
        self._backend = self._router = None
        self._listening.clear()
        self._listening_change()  # waiters see that the broadcast stopped
        try:
            if backend is not None:
                await backend.__aexit__(exc_type, exc, tb)
        finally:
            if router is not None:
                router.close_all()

    async def publish(self, channel: str, message: Any) -> None:
        """Publish ``message`` to every subscriber of ``channel`` (and its group members).

        Never waits for subscribers: a slow one loses messages under its overflow policy.

        Args:
            channel: the channel name.
            message: any JSON-serialisable value.

        Raises:
            TypeError: ``message`` is not JSON-serialisable.
            BroadcastError: (Redis) unreachable or no answer within ``publish_timeout``.
            RuntimeError: the broadcast is not running.
        """
        data = encode(message)
        await self._running_backend().publish(channel, data)

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

    def _running_router(self) -> Router:
        if self._router is None:
            raise RuntimeError(_NOT_RUNNING)
        return self._router


#: Old names that still work, with a ``DeprecationWarning``.
__getattr__ = renamed(
    "anyql.broadcast", {"Subscription": ("ChannelSubscription", ChannelSubscription)}
)
