"""The Redis pub/sub Broadcast backend, on coredis (anyio-native, so it also runs on Trio).

Owns ``RedisBackend``, for one Redis or (``cluster=True``) a Redis Cluster. Imports anyio,
coredis, the standard library and ``._base`` only.

Theory of operation. Entering the backend opens a task group with two long-lived tasks:

* the *publisher holder* keeps a coredis client (its own connection pool) open for
  ``publish``. Each publish runs under ``anyio.fail_after(publish_timeout)`` and turns any
  failure into ``BroadcastError``. After a failure the holder replaces the client, because
  coredis 6.9 leaks a pool slot for each connection attempt cancelled mid-handshake and a
  hung Redis (SIGSTOP) would otherwise exhaust the pool for good.
* the *listener* owns one dedicated pub/sub connection per session. A session subscribes to
  every channel the local ``Router`` wants (one Redis SUBSCRIBE per channel, whatever the
  number of local subscribers), then runs a pump (Redis message -> ``Router.deliver``) and a
  reconciler (router changes -> SUBSCRIBE / UNSUBSCRIBE) side by side. When the connection
  fails (Redis killed, ``CLIENT KILL TYPE pubsub``, output-buffer limit exceeded, no answer
  within ``publish_timeout``) the session ends, the outage is logged once at WARNING, and
  the listener reconnects with backoff (0.1 s doubling to 5 s, with jitter, forever). The
  next session re-subscribes every active channel and logs the recovery.

Messages published while the pub/sub connection is down are lost: Redis pub/sub does not
store them. Local subscriptions survive an outage and resume after it.

In a Redis Cluster (``cluster=True``) the same structure runs on ``coredis.RedisCluster``
with sharded pub/sub: publish is ``SPUBLISH`` and each channel is one ``SSUBSCRIBE`` on the
master that owns the channel's slot, so a message travels within its shard instead of to
every node. Three small hooks make the difference (``_client``, ``_open_pubsub``,
``_send``). When a slot moves (a failover, a resharding) its old master sends
``SUNSUBSCRIBE`` for the channels in it; a ``SUNSUBSCRIBE`` the listener did not ask for
ends the session like a lost connection, and the next session (a new client, which learns
the new layout) subscribes every channel on its new master. Each new client starts from
the URL's node and every node the previous client knew, so the URL's node may be down.
"""

from __future__ import annotations

import enum
import math
import random
import time
from collections.abc import Callable, Collection
from contextlib import AsyncExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import anyio
import anyio.abc
import coredis
from coredis.connection import TCPLocation
from coredis.exceptions import RedisError, ResponseError
from coredis.patterns.pubsub import PubSub, ShardedPubSub
from coredis.retry import NoRetryPolicy

from ._base import BroadcastError, Router, logger

__all__ = ["RedisBackend"]

BACKOFF_FIRST = 0.1
BACKOFF_MAX = 5.0

#: What ends a pub/sub session and starts the reconnect loop: coredis errors, socket errors,
#: a missing answer, and anyio stream errors that coredis lets escape on a dying connection.
_CONNECTION_FAILURES = (
    RedisError,
    OSError,
    TimeoutError,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
)


class _State(enum.Enum):
    #: Before the first session has connected or failed.
    CONNECTING = enum.auto()
    #: A pub/sub session is up and has subscribed every wanted channel.
    CONNECTED = enum.auto()
    #: Between sessions; publishes fail and messages are lost.
    DISCONNECTED = enum.auto()


#: A client of one Redis or of a Redis Cluster; the commands used exist on both.
_Client = coredis.Redis[bytes] | coredis.RedisCluster[bytes]
#: The pub/sub object of either: plain pub/sub, or sharded pub/sub in a cluster.
_PubSub = PubSub[bytes] | ShardedPubSub[bytes]


class SlotMoved(ConnectionError):
    """A cluster node unsubscribed a shard channel: its slot moved to another master."""


@dataclass(frozen=True, slots=True)
class _Publisher:
    client: _Client
    #: Set to make the holder replace this client.
    failed: anyio.Event


class RedisBackend:
    """Redis pub/sub for a ``Broadcast``; see the module docstring for how it works."""

    #: What the outage warning says becomes of what is published meanwhile.
    _during_an_outage = "messages published during the outage are lost"

    def __init__(
        self, url: str, router: Router, *, publish_timeout: float, cluster: bool = False
    ) -> None:
        self._url = url
        self._cluster = cluster
        #: (cluster) every node the last client saw, to start the next one from.
        self._known_nodes: list[TCPLocation] = []
        self._where = _redact(url)
        self._router = router
        self._timeout = publish_timeout
        self._state = _State.CONNECTING
        self._confirmed: set[str] = set()
        self._outage_since: float | None = None
        self._stack: AsyncExitStack | None = None
        self._publisher: _Publisher | None = None
        # Created on entry (an anyio.Event needs a running event loop).
        self._changed: anyio.Event
        self._dirty: anyio.Event
        self._stopping: anyio.Event
        self._listener_done: anyio.Event
        self._publisher_installed: anyio.Event

    @property
    def connected(self) -> bool:
        """True while the pub/sub connection is up and every wanted channel subscribed."""
        return self._state is _State.CONNECTED

    async def __aenter__(self) -> RedisBackend:
        self._changed = anyio.Event()
        self._dirty = anyio.Event()
        self._stopping = anyio.Event()
        self._listener_done = anyio.Event()
        self._publisher_installed = anyio.Event()
        async with AsyncExitStack() as stack:
            task_group = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(task_group.cancel_scope.cancel)
            await task_group.start(self._hold_publisher)
            await task_group.start(self._listen_forever)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        if stack is None:
            return
        try:
            # Let the listener close its pub/sub session in order (coredis sends
            # UNSUBSCRIBE on a live connection); cancel whatever is left after the grace.
            with anyio.move_on_after(self._timeout, shield=True):
                self._stopping.set()
                await self._listener_done.wait()
        finally:
            await stack.aclose()
            self._publisher = None
            self._state = _State.CONNECTING
            self._confirmed.clear()

    async def publish(self, channel: str, data: bytes) -> Any:
        """PUBLISH ``data`` on ``channel``, bounded by ``publish_timeout``.

        Args:
            channel: the channel name.
            data: the JSON-encoded message.

        Raises:
            BroadcastError: Redis is unreachable, refused the command or did not answer in
                time. The message was not published.
        """
        if self._stack is None:
            raise RuntimeError("the Redis broadcast backend is not running")
        publisher: _Publisher | None = None
        try:
            with anyio.fail_after(self._timeout):
                publisher = await self._ready_publisher()
                return await self._send(publisher.client, channel, data)
        except TimeoutError:
            self._discard(publisher)
            raise BroadcastError(
                f"publish to {channel!r} timed out after {self._timeout} s (Redis at {self._where})"
            ) from None
        except BroadcastError:  # refused for this channel: the connection is fine
            raise
        except ResponseError as error:  # Redis refused the command: the connection is fine
            raise BroadcastError(
                f"publish to {channel!r} failed (Redis at {self._where}): {error}"
            ) from error
        except Exception as error:  # the I/O edge: every coredis failure is a BroadcastError
            self._discard(publisher)
            raise BroadcastError(
                f"publish to {channel!r} failed (Redis at {self._where}): {error}"
            ) from error

    async def _send(self, client: _Client, channel: str, data: bytes) -> Any:
        """The command that publishes; the streams backend appends to a stream instead."""
        if isinstance(client, coredis.RedisCluster):
            await client.spublish(channel, data)
        else:
            await client.publish(channel, data)
        return None

    def channels_changed(self) -> None:
        """Wake the reconciler: some channel is newly wanted or no longer wanted."""
        self._dirty.set()

    async def wait_subscribed(self, channels: Collection[str]) -> None:
        """Wait until Redis confirmed the SUBSCRIBE for ``channels``, within limits.

        Returns at once during an outage (the channels are subscribed on recovery), and
        after ``publish_timeout`` at the latest; the registration stands either way.

        Args:
            channels: the channels just registered.
        """
        wanted = set(channels)
        with anyio.move_on_after(self._timeout):
            while self._state is not _State.DISCONNECTED and not wanted <= self._confirmed:
                await self._changed.wait()

    # -- publisher -----------------------------------------------------------------------

    async def _hold_publisher(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        started = False
        delay = BACKOFF_FIRST
        while True:
            failed = anyio.Event()
            unreachable = False
            try:
                # A cluster client connects on entry (it discovers the layout): that may
                # fail, and is tried again with backoff; publishes meanwhile time out.
                async with self._client(stream_timeout=None) as client:
                    delay = BACKOFF_FIRST
                    self._remember_nodes(client)
                    self._publisher = _Publisher(client, failed)
                    installed, self._publisher_installed = (
                        self._publisher_installed,
                        anyio.Event(),
                    )
                    installed.set()
                    if not started:
                        started = True
                        task_status.started()
                    await failed.wait()
            except* _CONNECTION_FAILURES as group:
                unreachable = True
                logger.debug("Redis at %s: no client: %r", self._where, _first_leaf(group))
            if unreachable:
                if not started:
                    started = True
                    task_status.started()
                await anyio.sleep(random.uniform(delay / 2, delay))  # a retry's backoff
                delay = min(delay * 2, BACKOFF_MAX)

    async def _ready_publisher(self) -> _Publisher:
        while self._publisher is None:
            await self._publisher_installed.wait()
        return self._publisher

    def _discard(self, publisher: _Publisher | None) -> None:
        """Have the holder replace ``publisher``; later publishes wait for the new one."""
        if publisher is None:
            return
        publisher.failed.set()
        if self._publisher is publisher:
            self._publisher = None

    # -- listener ------------------------------------------------------------------------

    async def _listen_forever(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        started = False

        def ready() -> None:
            nonlocal started
            if not started:
                started = True
                task_status.started()

        delay = BACKOFF_FIRST
        try:
            while not self._stopping.is_set():
                was_connected, error = await self._session(ready)
                if self._stopping.is_set():
                    break
                self._lost(error)
                ready()
                if was_connected:
                    delay = BACKOFF_FIRST
                with anyio.move_on_after(random.uniform(delay / 2, delay)):
                    await self._stopping.wait()
                delay = min(delay * 2, BACKOFF_MAX)
        finally:
            ready()
            self._listener_done.set()

    async def _session(self, ready: Callable[[], None]) -> tuple[bool, BaseException]:
        """Run one pub/sub connection until it fails; return (was connected, the error)."""
        connected = False
        error: BaseException = ConnectionError("the pub/sub connection ended")
        try:
            with anyio.CancelScope() as deadline:
                deadline.deadline = anyio.current_time() + self._timeout
                async with (
                    self._client(stream_timeout=self._timeout) as client,
                    self._open_pubsub(client) as pubsub,
                    anyio.create_task_group() as task_group,
                ):
                    task_group.start_soon(self._pump, pubsub)
                    await self._reconcile(client, pubsub)
                    deadline.deadline = math.inf
                    connected = True
                    self._remember_nodes(client)
                    self._up()
                    ready()
                    task_group.start_soon(self._reconcile_forever, client, pubsub)
                    self._start_session_tasks(task_group, client)
                    await self._stopping.wait()
                    task_group.cancel_scope.cancel()
            if deadline.cancelled_caught:
                error = TimeoutError(f"no answer within {self._timeout} s")
        except* _CONNECTION_FAILURES as group:
            error = _first_leaf(group)
        return connected, error

    def _open_pubsub(self, client: _Client) -> _PubSub:
        """The session's pub/sub object: sharded in a cluster (each channel subscribed on
        the master of its slot), plain otherwise; no retries of its own (the listener
        reconnects), and in a cluster the (un)subscribe confirmations come through, for
        ``_pump`` to notice a slot that moved."""
        if isinstance(client, coredis.RedisCluster):
            sharded: ShardedPubSub[bytes] = client.sharded_pubsub(
                retry_policy=NoRetryPolicy(),
                ignore_subscribe_messages=False,
                subscription_timeout=self._timeout,
            )
            return sharded
        pubsub: PubSub[bytes] = client.pubsub(
            retry_policy=NoRetryPolicy(),
            ignore_subscribe_messages=True,
            subscription_timeout=self._timeout,
        )
        return pubsub

    async def _pump(self, pubsub: _PubSub) -> None:
        while True:
            message = await pubsub.get_message()
            if message is None:
                continue
            channel, data = _text(message["channel"]), message["data"]
            if message["type"] == "sunsubscribe":
                self._check_unsubscribed(channel)
            elif message["type"] == "message" and isinstance(data, bytes | str):
                self._router.deliver(channel, data)

    def _check_unsubscribed(self, channel: str) -> None:
        """A ``SUNSUBSCRIBE`` of a channel still subscribed was not ours: the node gave up
        its slot (a failover or a resharding). End the session; the next one subscribes on
        the slot's new master. (Our own unsubscribe removes the channel from ``_confirmed``
        before it is sent.)"""
        if channel in self._confirmed:
            raise SlotMoved(f"the cluster moved the slot of shard channel {channel!r}")

    def _start_session_tasks(self, task_group: anyio.abc.TaskGroup, client: _Client) -> None:
        """Start what else a connected session runs (the cluster's durable reader adds its
        catch-up and key-expiry tasks); nothing for plain pub/sub."""

    async def _reconcile_forever(self, client: _Client, pubsub: _PubSub) -> None:
        while True:
            await self._dirty.wait()
            self._dirty = anyio.Event()
            await self._reconcile(client, pubsub)

    async def _reconcile(self, client: _Client, pubsub: _PubSub) -> None:
        """Make the Redis subscriptions match what the router wants, one command each way."""
        wanted = self._router.channels()
        stale = self._confirmed - wanted
        if stale:
            self._confirmed -= stale
            await pubsub.unsubscribe(*sorted(stale))
        new = wanted - self._confirmed
        if new:
            await pubsub.subscribe(*sorted(new))
            self._confirmed |= new
            self._notify()

    def _up(self) -> None:
        self._state = _State.CONNECTED
        if self._outage_since is not None:
            logger.warning(
                "Redis pub/sub at %s is back after %.1f s; resubscribed %d channel(s)",
                self._where,
                time.monotonic() - self._outage_since,
                len(self._confirmed),
            )
            self._outage_since = None
        self._notify()

    def _lost(self, error: BaseException) -> None:
        self._state = _State.DISCONNECTED
        self._confirmed.clear()
        self._notify()
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            logger.warning(
                "Redis pub/sub at %s is unavailable (%s: %s); reconnecting with backoff; %s",
                self._where,
                type(error).__name__,
                error,
                self._during_an_outage,
            )
        else:
            logger.debug("Redis pub/sub at %s: reconnect failed: %r", self._where, error)

    def _notify(self) -> None:
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    def _client(self, *, stream_timeout: float | None) -> _Client:
        """A new client: of one Redis, or of the cluster (from the URL's node and every node
        the last cluster client knew, so that a dead URL node does not stop discovery)."""
        if not self._cluster:
            return coredis.Redis.from_url(
                self._url,
                decode_responses=False,
                connect_timeout=self._timeout,
                stream_timeout=stream_timeout,
            )
        parts = urlsplit(self._url)
        first = TCPLocation(parts.hostname or "127.0.0.1", parts.port or 6379)
        client: coredis.RedisCluster[bytes] = coredis.RedisCluster.from_url(
            self._url,
            decode_responses=False,
            connect_timeout=self._timeout,
            stream_timeout=stream_timeout,
            startup_nodes=[first, *(n for n in self._known_nodes if n != first)],
        )
        return client

    def _remember_nodes(self, client: _Client) -> None:
        """(cluster) Keep the nodes ``client`` knows, to start the next client from."""
        if isinstance(client, coredis.RedisCluster):
            nodes = client.connection_pool.cluster_layout.nodes
            if nodes:
                self._known_nodes = [TCPLocation(n.host, n.port) for n in nodes]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _first_leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


def _redact(url: str) -> str:
    """``url`` without its user and password, for log lines."""
    parts = urlsplit(url)
    if parts.hostname is None:
        return parts._replace(netloc="").geturl()
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return parts._replace(netloc=netloc).geturl()
