"""The durable Broadcast on a Redis Cluster: one stream per channel, read by notification.

Owns ``RedisClusterStreamsBackend``, a ``RedisStreamsBackend`` whose reader listens to
sharded pub/sub instead of blocking in ``XREAD`` (one ``XREAD`` cannot span streams of
different slots, and so of different masters). Imports anyio, coredis, the standard
library and this package's private modules only.

Theory of operation.

* **Publish** runs the same Lua script as on one Redis (one key, so the cluster routes it
  to the key's master), which also ``SPUBLISH``es the new entry on a shard channel named
  like the key (so in the same slot, on the same master): ``id``, LF, ``prev``, LF, the
  JSON. Streams spread over the masters by their key's slot.
* **One reader per process** holds one sharded pub/sub session (``SSUBSCRIBE`` of every
  channel a local subscription reads, each on its slot's master) and turns each
  notification into an ``Entry`` for ``Feed.deliver`` and ``Router.deliver``, as the
  ``XREAD`` reader does, keeping the last id it delivered per channel.
* **Nothing is skipped silently.** A notification can be lost: sent while the reader was
  reconnecting, during a failover, or while a new channel was being positioned. So after
  each (re)subscription the reader reads ``XRANGE (position +`` for the channel and
  delivers what it missed, and a notification whose ``prev`` is not the reader's position
  is not delivered but makes the reader read the log from its position (in order, no
  duplicate). Live durable subscribers also check ``prev`` themselves and read the log
  when it does not follow, so an entry the broker lost is reported (``ResumeError``), not
  skipped.
* **Failover.** When a slot moves, its old master unsubscribes the shard channels
  (``SUNSUBSCRIBE``); the session ends as if the connection had failed and the next one,
  on a new client that learns the layout, subscribes on the new master and catches up.
* **Catch-up reads** (``read_after``, ``head``) are per key and work as on one Redis.
"""

from __future__ import annotations

from typing import Any, Final

import anyio
import anyio.abc
from coredis.exceptions import ResponseError

from ._base import Router, logger
from ._durable import Entry, Feed, Retention
from ._ids import format_id, parse_id
from .redis import RedisBackend, _Client, _PubSub, _text
from .redis_streams import (
    _APPEND,
    _READ_COUNT,
    DEFAULT_KEY_PREFIX,
    RedisStreamsBackend,
    _entry,
    _wrong_type,
)

__all__ = ["RedisClusterStreamsBackend"]

#: ``_APPEND`` that also notifies the entry on the shard channel named like its key.
_APPEND_AND_NOTIFY: Final = _APPEND.replace(
    "-- notify", "redis.call('SPUBLISH', KEYS[1], id .. '\\n' .. prev .. '\\n' .. ARGV[1])"
)


class RedisClusterStreamsBackend(RedisStreamsBackend):
    """Redis Streams on a Redis Cluster for a durable ``Broadcast``; see the module docstring."""

    _append_script = _APPEND_AND_NOTIFY

    def __init__(
        self,
        url: str,
        router: Router,
        feed: Feed,
        *,
        publish_timeout: float,
        retention: Retention,
        key_prefix: str = DEFAULT_KEY_PREFIX,
    ) -> None:
        super().__init__(
            url,
            router,
            feed,
            publish_timeout=publish_timeout,
            retention=retention,
            key_prefix=key_prefix,
            cluster=True,
        )
        #: Channels whose log the reader must read from its position (a notification
        #: lost or out of order, or a new subscription), in the order they were found.
        self._lagging: dict[str, None] = {}
        self._lag: anyio.Event

    async def __aenter__(self) -> RedisClusterStreamsBackend:
        self._lag = anyio.Event()
        await super().__aenter__()
        return self

    def channels_changed(self) -> None:
        """Wake the reader's reconciler: a channel is newly wanted or no longer wanted."""
        self._dirty.set()

    # -- the reader ------------------------------------------------------------------------

    #: The pub/sub session of ``RedisBackend`` (sharded), not the XREAD one of streams.
    _session = RedisBackend._session

    def _start_session_tasks(self, task_group: anyio.abc.TaskGroup, client: _Client) -> None:
        task_group.start_soon(self._catch_up_forever, client)
        if self._retention.idle_ttl is not None:
            task_group.start_soon(self._keep_keys, client)

    async def _pump(self, pubsub: _PubSub) -> None:
        while True:
            message = await pubsub.get_message()
            if message is None:
                continue
            key = _text(message["channel"])
            if not key.startswith(self._prefix):
                continue
            channel = key[len(self._prefix) :]
            if message["type"] == "sunsubscribe":
                self._check_unsubscribed(channel)
            elif message["type"] == "message":
                self._notified(channel, message["data"])

    def _notified(self, channel: str, data: Any) -> None:
        """One notification: deliver it when it follows the reader's position; when it
        does not, read the log from the position instead."""
        entry = _notification(data)
        position = self._positions.get(channel)
        if entry is None or position is None or entry.id <= position:
            return
        if entry.prev is not None and entry.prev != position:
            self._lagging[channel] = None
            self._lag.set()
            return
        self._deliver_entry(channel, entry)

    def _deliver_entry(self, channel: str, entry: Entry) -> None:
        position = self._positions.get(channel)
        if position is None or entry.id <= position:
            return
        self._positions[channel] = entry.id
        self._feed.deliver(channel, entry)
        self._router.deliver(channel, entry.data)

    async def _reconcile(self, client: _Client, pubsub: _PubSub) -> None:
        """Subscribe the shard channel of every channel read here, unsubscribe the others;
        a new channel starts at its stream's last id, and every newly subscribed one is
        caught up from the log (what was published while it was not subscribed)."""
        wanted = self._router.channels() | self._feed.channels()
        self._refused &= wanted
        for channel in [c for c in self._positions if c not in wanted]:
            del self._positions[channel]
            self._lagging.pop(channel, None)
        stale = self._confirmed - wanted
        if stale:
            self._confirmed -= stale
            await pubsub.unsubscribe(*(self._prefix + c for c in sorted(stale)))
        for channel in sorted(self._refused):  # a later subscriber must hear it too
            if await self._start_reading(client, channel):
                self._lagging[channel] = None
                self._lag.set()
        new = wanted - self._confirmed
        if not new:
            return
        await pubsub.subscribe(*(self._prefix + c for c in sorted(new)))
        for channel in sorted(new):
            if channel not in self._positions and not await self._start_reading(client, channel):
                continue
            self._lagging[channel] = None
        self._lag.set()
        self._confirmed |= new
        for channel in new:
            self._feed.ready(channel)
        self._notify()

    async def _catch_up_forever(self, client: _Client) -> None:
        while True:
            await self._lag.wait()
            self._lag = anyio.Event()
            while self._lagging:
                channel = next(iter(self._lagging))
                del self._lagging[channel]
                await self._catch_up(client, channel)

    async def _catch_up(self, client: _Client, channel: str) -> None:
        """Deliver what the log holds after the reader's position on ``channel``."""
        while True:
            position = self._positions.get(channel)
            if position is None:
                return
            try:
                found = await client.xrange(
                    self._prefix + channel, f"({format_id(position)}", "+", count=_READ_COUNT
                )
            except ResponseError as error:
                if not _wrong_type(error):
                    raise
                self._refuse(channel, error)
                return
            for raw in found:
                entry = _entry(raw)
                if entry is not None:
                    self._deliver_entry(channel, entry)
            if len(found) < _READ_COUNT:
                return


def _notification(data: Any) -> Entry | None:
    """The ``Entry`` in a notification (``id`` LF ``prev`` LF JSON), None if malformed."""
    raw = data if isinstance(data, bytes) else str(data).encode()
    parts = raw.split(b"\n", 2)
    try:
        if len(parts) != 3:
            raise ValueError("not id, prev and data")
        return Entry(parse_id(parts[0].decode()), parse_id(parts[1].decode()), parts[2])
    except ValueError as error:
        logger.warning("ignored a malformed durable broadcast notification: %s", error)
        return None
