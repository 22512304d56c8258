"""The durable Redis Broadcast backend: one Redis stream per channel, read by notification.

Owns ``RedisStreamsBackend``, a ``RedisBackend`` whose publish appends to a stream and
notifies it on pub/sub, and whose listener turns those notifications into entries, catching
up from the streams whenever one may have been missed. The same design runs on one Redis
and (``cluster=True``) on a Redis Cluster. Imports anyio, coredis, the standard library and
this package's private modules only.

Theory of operation.

* **Publish** runs one Lua script: read the stream's last id (``XINFO STREAM``), ``XADD``
  the message with that id as ``p`` (the entry before it) and the JSON as ``d``, trim by
  length (``MAXLEN ~``) and by age (``XTRIM MINID ~``), push the key's expiry
  (``PEXPIRE``) to ``idle_ttl`` from now, and notify the new entry (``id`` LF ``prev`` LF
  the JSON) on the pub/sub channel named like the key: ``PUBLISH`` on one Redis,
  ``SPUBLISH`` in a cluster (a shard channel in the key's slot, so on the key's master). It
  is atomic, so ``p`` always names the entry written just before, which is how a reader
  tells a contiguous sequence from a hole. Publishing while Redis is unreachable fails fast
  with ``BroadcastError``, as on pub/sub.
* **One reader per process** is ``RedisBackend``'s pub/sub session: one ``SUBSCRIBE`` (or
  ``SSUBSCRIBE`` on each slot's master) per channel a local subscription reads, durable or
  not, whatever the number of subscribers. Each notification becomes an ``Entry`` for the
  local ``Feed`` (durable subscriptions) and ``Router`` (plain ones); the reader keeps the
  last id it delivered per channel. An event costs the same however many channels the
  process reads (an ``XREAD`` over every channel, the first design, cost O(channels) per
  event: 190 events/s at 3,000 channels).
* **Nothing is skipped silently.** A notification is lost when it is sent while the reader
  reconnects, during a failover, or before a new channel is positioned. So a new channel
  starts at its stream's last id (``XINFO``, pipelined for many channels), every
  (re)subscribed channel is caught up with ``XRANGE (position +`` (pipelined too), and a
  notification whose ``prev`` is not the reader's position is not delivered but makes the
  reader read the log from its position (in order, no duplicate). Live durable subscribers
  also check ``prev`` themselves, so an entry the broker lost is reported
  (``ResumeError``), not skipped.
* **Failover** (cluster). When a slot moves, its old master unsubscribes the shard channels
  (``SUNSUBSCRIBE``); the session ends as if the connection had failed and the next one, on
  a new client that learns the layout, subscribes on the new master and catches up. After
  any outage the reader goes on from the ids it had, so nothing Redis acknowledged is lost.
* **Catch-up reads** (``read_after``, for a subscription that resumes or fell behind) are
  ``XRANGE`` pages on the publish connection; an empty page checks ``XINFO`` to tell "up
  to date" from "past retention" and "from the future".
* **Keys**: ``key_prefix + channel`` (``anyql:events:`` by default). While some subscription
  in this process reads a channel, the reader keeps its key from expiring. A key that holds
  anything else fails that channel alone (``_refuse``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Final

import anyio
import anyio.abc
from coredis.commands.script import Script
from coredis.exceptions import ResponseError, WrongTypeError

from ._base import BroadcastError, Router, logger
from ._durable import (
    Entry,
    Feed,
    LogUnavailable,
    Retention,
    check_not_future,
    check_resume,
)
from ._ids import ZERO, StreamId, format_id, parse_id
from .redis import RedisBackend, _Client, _PubSub, _State, _text

__all__ = ["DEFAULT_KEY_PREFIX", "RedisStreamsBackend"]

DEFAULT_KEY_PREFIX: Final = "anyql:events:"
#: The most entries one catch-up ``XRANGE`` takes per stream.
_READ_COUNT: Final = 512
#: The most commands in one pipeline (positioning, catching up, expiry refreshes).
_PIPELINE: Final = 1_000

#: KEYS[1] the stream; ARGV: data, max length or "", min id or "", expiry in ms or "".
_APPEND: Final = """
local prev = '0-0'
if redis.call('EXISTS', KEYS[1]) == 1 then
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then prev = info[i + 1] break end
  end
end
local id
if ARGV[2] ~= '' then
  id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'p', prev, 'd', ARGV[1])
else
  id = redis.call('XADD', KEYS[1], '*', 'p', prev, 'd', ARGV[1])
end
if ARGV[3] ~= '' then redis.call('XTRIM', KEYS[1], 'MINID', '~', ARGV[3]) end
if ARGV[4] ~= '' then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
redis.call('NOTIFY', KEYS[1], id .. '\\n' .. prev .. '\\n' .. ARGV[1])
return id
"""


class RedisStreamsBackend(RedisBackend):
    """Redis Streams for a durable ``Broadcast``; see the module docstring."""

    _during_an_outage = (
        "what Redis stored meanwhile is read from the streams once it is back, for every"
        " subscription that was listening (a plain one entered meanwhile starts when the"
        " reader is back); what Redis lost is reported to durable subscribers"
    )

    def __init__(
        self,
        url: str,
        router: Router,
        feed: Feed,
        *,
        publish_timeout: float,
        retention: Retention,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        cluster: bool = False,
    ) -> None:
        super().__init__(url, router, publish_timeout=publish_timeout, cluster=cluster)
        self._feed = feed
        self._retention = retention
        self._prefix = key_prefix
        self._append_script = _APPEND.replace("NOTIFY", "SPUBLISH" if cluster else "PUBLISH")
        self._script: tuple[_Client, Script[bytes]] | None = None
        #: Per channel read, the last id the reader delivered (or where it started).
        self._positions: dict[str, StreamId] = {}
        #: Channels whose log the reader must read from its position (a notification may
        #: have been missed), in the order they fell behind.
        self._lagging: dict[str, None] = {}
        self._lag: anyio.Event
        #: Wanted channels whose key holds something other than a stream (logged once).
        self._refused: set[str] = set()
        router.on_release = feed.on_release = self._released

    @property
    def epoch(self) -> str:
        return "r." + self._prefix

    async def __aenter__(self) -> RedisStreamsBackend:
        self._lag = anyio.Event()
        await super().__aenter__()
        return self

    # -- publishing --------------------------------------------------------------------------

    async def _send(self, client: _Client, channel: str, data: bytes) -> Any:
        script = self._script_for(client)
        retention = self._retention
        max_length = "" if retention.max_length is None else str(retention.max_length)
        min_id = ""
        if retention.max_age is not None:
            min_id = f"{_now_ms() - math.ceil(retention.max_age * 1000)}-0"
        expiry = "" if retention.idle_ttl is None else str(math.ceil(retention.idle_ttl * 1000))
        try:
            added: Any = await script(
                keys=[self._prefix + channel],
                args=[data, max_length, min_id, expiry],
                client=client,
            )
        except ResponseError as error:
            if _wrong_type(error):
                raise self._not_a_stream(channel, error) from error
            raise
        return parse_id(_text(added))

    def _script_for(self, client: _Client) -> Script[bytes]:
        if self._script is None or self._script[0] is not client:
            self._script = (client, client.register_script(self._append_script))
        return self._script[1]

    # -- the event log (catch-up reads) ----------------------------------------------------

    async def head(self, channel: str) -> StreamId:
        last = await self._on_publisher(channel, lambda client: self._last_id(client, channel))
        return ZERO if last is None else last

    async def read_after(self, channel: str, after: StreamId, count: int) -> list[Entry]:
        async def page(client: _Client) -> list[Entry]:
            found = await client.xrange(
                self._prefix + channel, f"({format_id(after)}", "+", count=count
            )
            return [entry for entry in map(_entry, found) if entry is not None]

        async def read(client: _Client) -> list[Entry]:
            check_not_future(channel, after)  # (an id Redis would refuse to range from)
            entries = await page(client)
            if not entries:
                # Nothing after ``after`` now. The last id, read next, may name entries
                # published since: read again, and only a page still empty then (while
                # ids up to that last one exist or were deleted) means a hole.
                last = await self._last_id(client, channel)
                if last is not None and last > after:
                    entries = await page(client)
                if not entries:
                    check_resume(channel, after, None, last)
                    return []
            check_resume(channel, after, entries[0], None)
            return entries

        entries: list[Entry] = await self._on_publisher(channel, read)
        return entries

    def live_position(self, channel: str) -> StreamId | None:
        return self._positions.get(channel)

    async def _on_publisher(self, channel: str, work: Any) -> Any:
        publisher = None
        try:
            with anyio.fail_after(self._timeout):
                publisher = await self._ready_publisher()
                return await work(publisher.client)
        except TimeoutError:
            self._discard(publisher)
            raise LogUnavailable(
                f"reading {channel!r} timed out after {self._timeout} s (Redis at {self._where})"
            ) from None
        except BroadcastError:
            raise
        except ResponseError as error:  # Redis refused the command: retrying cannot help
            if _wrong_type(error):
                raise self._not_a_stream(channel, error) from error
            raise BroadcastError(
                f"reading {channel!r} failed (Redis at {self._where}): {error}"
            ) from error
        except Exception as error:  # the I/O edge: every other failure is worth a retry
            self._discard(publisher)
            raise LogUnavailable(
                f"reading {channel!r} failed (Redis at {self._where}): {error}"
            ) from error

    async def _last_id(self, client: _Client, channel: str) -> StreamId | None:
        try:
            info = await client.xinfo_stream(self._prefix + channel)
        except ResponseError as error:
            if _no_such_key(error):
                return None
            raise
        return parse_id(_text(info["last-generated-id"]))

    def _not_a_stream(self, channel: str, error: BaseException) -> BroadcastError:
        return BroadcastError(
            f"channel {channel!r}: the Redis key {self._prefix + channel!r} is not a stream"
            f" ({error}); is the key prefix {self._prefix!r} shared with other data?"
        )

    def _refuse(self, channel: str, error: BaseException) -> None:
        """``channel``'s key is not a stream: stop reading it and fail its listeners (until
        nobody wants it; a later subscriber finds out again)."""
        failure = self._not_a_stream(channel, error)
        if channel not in self._refused:
            logger.error("durable broadcast: %s", failure)
        self._refused.add(channel)
        self._positions.pop(channel, None)
        self._lagging.pop(channel, None)
        self._feed.refuse(channel, failure)
        self._router.refuse(channel, failure)

    # -- the reader ------------------------------------------------------------------------

    def channels_changed(self) -> None:
        """Wake the reader's reconciler: a channel is newly wanted or no longer wanted."""
        self._dirty.set()

    def _released(self, channel: str) -> None:
        """A channel's last local subscriber left (``Router``/``Feed.on_release``) while
        the reader is reconnecting: unless the other still reads it, forget its position
        now, so a subscriber that comes back before the reader does starts from then, not
        from where the last one left (it would be handed events from before it came).
        While connected, notifications keep the position current until the reconciler
        unsubscribes the channel (and forgets it, if it is still not wanted then)."""
        if self._state is _State.CONNECTED:
            return
        if not self._router.wants(channel) and not self._feed.wants(channel):
            self._positions.pop(channel, None)
            self._lagging.pop(channel, None)

    def _start_session_tasks(self, task_group: anyio.abc.TaskGroup, client: _Client) -> None:
        task_group.start_soon(self._catch_up_forever, client)
        if self._retention.idle_ttl is not None:
            task_group.start_soon(self._keep_keys)

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
            elif message["type"] in ("message", "smessage"):
                self._notified(channel, message["data"])

    def _notified(self, channel: str, data: Any) -> None:
        """One notification: deliver it when it follows the reader's position; when it
        does not, read the log from the position instead."""
        entry = _notification(data)
        position = self._positions.get(channel)
        if entry is None or position is None or entry.id <= position:
            return
        if entry.prev is not None and entry.prev != position:
            self._fell_behind(channel)
            return
        self._deliver_entry(channel, entry)

    def _fell_behind(self, channel: str) -> None:
        self._lagging[channel] = None
        self._lag.set()

    def _deliver_entry(self, channel: str, entry: Entry) -> None:
        position = self._positions.get(channel)
        if position is None or entry.id <= position:
            return
        self._positions[channel] = entry.id
        self._feed.deliver(channel, entry)
        self._router.deliver(channel, entry.data)

    async def _reconcile(self, client: _Client, pubsub: _PubSub) -> None:
        """Subscribe the notification channel of every channel read here, unsubscribe the
        others; a new channel starts at its stream's last id, and every newly subscribed one
        is caught up from the log (what was published while it was not subscribed)."""
        wanted = self._router.channels() | self._feed.channels()
        self._refused &= wanted
        for channel in [c for c in self._positions if c not in wanted]:
            del self._positions[channel]
            self._lagging.pop(channel, None)
        stale = self._confirmed - wanted
        if stale:
            self._confirmed -= stale
            await pubsub.unsubscribe(*(self._prefix + c for c in sorted(stale)))
        new = wanted - self._confirmed
        if new:
            await pubsub.subscribe(*(self._prefix + c for c in sorted(new)))
        # A refused channel is looked at again: a subscriber that came after the refusal
        # must hear it too, and the key may be a stream again.
        await self._start_reading(
            client, sorted(c for c in new | self._refused if c not in self._positions)
        )
        for channel in sorted(new):
            if channel in self._positions:
                self._lagging[channel] = None
        self._lag.set()
        if new:
            self._confirmed |= new
            for channel in new:
                self._feed.ready(channel)
            self._notify()

    async def _start_reading(self, client: _Client, channels: Sequence[str]) -> None:
        """Position each channel at its stream's last id and keep the stream from expiring
        (pipelined); a channel whose key is not a stream is refused."""
        ttl = self._retention.idle_ttl
        for chunk in _chunks(channels):
            async with client.pipeline(transaction=False, raise_on_error=False) as pipeline:
                infos = [pipeline.xinfo_stream(self._prefix + c) for c in chunk]
            expire = []
            for channel, info in zip(chunk, infos, strict=True):
                try:
                    last: StreamId | None = parse_id(_text((await info)["last-generated-id"]))
                except ResponseError as error:
                    if _wrong_type(error):
                        self._refuse(channel, error)
                        continue
                    if not _no_such_key(error):
                        raise
                    last = None
                self._refused.discard(channel)
                self._positions[channel] = ZERO if last is None else last
                if last is not None:
                    expire.append(channel)
            if expire and ttl is not None:  # read here: keep them from expiring
                await self._expire(client, expire, ttl)

    async def _expire(self, client: _Client, channels: Sequence[str], ttl: float) -> None:
        milliseconds = math.ceil(ttl * 1000)
        for chunk in _chunks(channels):
            async with client.pipeline(transaction=False) as pipeline:
                for channel in chunk:
                    pipeline.pexpire(self._prefix + channel, milliseconds)

    async def _catch_up_forever(self, client: _Client) -> None:
        """Read the log of every lagging channel from the reader's position (a pipelined
        ``XRANGE`` per channel), delivering what the notifications did not."""
        while True:
            await self._lag.wait()
            self._lag = anyio.Event()
            while self._lagging:
                chunk = list(self._lagging)[:_PIPELINE]
                for channel in chunk:
                    del self._lagging[channel]
                await self._catch_up(client, chunk)

    async def _catch_up(self, client: _Client, channels: Sequence[str]) -> None:
        positions = [(c, self._positions.get(c)) for c in channels]
        async with client.pipeline(transaction=False, raise_on_error=False) as pipeline:
            pages = [
                (
                    channel,
                    position,
                    pipeline.xrange(
                        self._prefix + channel, f"({format_id(position)}", "+", count=_READ_COUNT
                    ),
                )
                for channel, position in positions
                if position is not None
            ]
        for channel, position, page in pages:
            try:
                found = await page
            except ResponseError as error:
                if not _wrong_type(error):
                    raise
                self._refuse(channel, error)
                continue
            if self._positions.get(channel) != position:
                self._fell_behind(channel)  # it moved meanwhile: read again from there
                continue
            for raw in found:
                entry = _entry(raw)
                if entry is not None:
                    self._deliver_entry(channel, entry)
            if len(found) == _READ_COUNT:
                self._fell_behind(channel)  # a full page: there may be more

    async def _keep_keys(self) -> None:
        """Push back the expiry of every channel read here, so a channel with listeners
        does not expire under them (they would have to start over)."""
        ttl = self._retention.idle_ttl
        assert ttl is not None
        while True:
            publisher = await self._ready_publisher()
            try:
                with anyio.fail_after(self._timeout):
                    await self._expire(publisher.client, tuple(self._positions), ttl)
            except Exception as error:  # never fatal: tried again in a quarter of the TTL
                self._discard(publisher)
                logger.debug("could not refresh stream expiries: %r", error)
            await anyio.sleep(ttl / 4)


def _entry(raw: Any) -> Entry | None:
    fields = raw.field_values
    data = fields.get(b"d", fields.get("d"))
    if data is None:
        return None
    prev = fields.get(b"p", fields.get("p"))
    try:
        return Entry(
            parse_id(_text(raw.identifier)),
            None if prev is None else parse_id(_text(prev)),
            data if isinstance(data, bytes) else str(data).encode(),
        )
    except ValueError:
        return None


def _wrong_type(error: ResponseError) -> bool:
    """Whether Redis refused the command because a key holds another type (also from
    inside the publish script, where it arrives as a script error)."""
    return isinstance(error, WrongTypeError) or "WRONGTYPE" in str(error)


def _no_such_key(error: ResponseError) -> bool:
    return "no such key" in str(error).lower()


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


def _chunks(items: Sequence[str]) -> list[Sequence[str]]:
    return [items[i : i + _PIPELINE] for i in range(0, len(items), _PIPELINE)]


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)
