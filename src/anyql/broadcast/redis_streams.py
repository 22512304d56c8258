"""The durable Redis Broadcast backend: one Redis stream per channel, read with XREAD.

Owns ``RedisStreamsBackend``, a ``RedisBackend`` whose publish appends to a stream and
whose listener reads streams instead of pub/sub. Imports anyio, coredis, the standard
library and this package's private modules only.

Theory of operation.

* **Publish** runs one Lua script: read the stream's last id (``XINFO STREAM``), ``XADD``
  the message with that id as ``p`` (the entry before it) and the JSON as ``d``, trim by
  length (``MAXLEN ~``) and by age (``XTRIM MINID ~``), and push the key's expiry
  (``PEXPIRE``) to ``idle_ttl`` from now. It is atomic, so ``p`` always names the entry
  written just before, which is how a reader tells a contiguous sequence from a hole.
  Publishing while Redis is unreachable fails fast with ``BroadcastError``, as on pub/sub.
* **One reader per process** runs a loop of ``XREAD BLOCK`` over every channel a local
  subscription (durable or not) reads, from the last id it delivered on each, and offers
  what it reads to the local ``Feed`` (durable subscriptions) and ``Router`` (plain ones).
  A new channel starts at the stream's last id; the read wakes at once for it because
  ``channels_changed`` appends to this process's own *wake* stream, which the read also
  waits on. After an outage the reader reconnects with backoff and goes on from the ids it
  had, so nothing Redis acknowledged is lost.
* **Catch-up reads** (``read_after``, for a subscription that resumes or fell behind) are
  ``XRANGE`` pages on the publish connection; an empty page checks ``XINFO`` to tell "up
  to date" from "past retention" and "from the future".
* **Keys**: ``key_prefix + channel`` (``anyql:events:`` by default). While some subscription
  in this process reads a channel, the reader keeps its key from expiring.
"""

from __future__ import annotations

import math
import secrets
from typing import Any, Final

import anyio
import anyio.abc
import coredis
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
from .redis import _CONNECTION_FAILURES, RedisBackend, _Client, _first_leaf

__all__ = ["DEFAULT_KEY_PREFIX", "RedisStreamsBackend"]

DEFAULT_KEY_PREFIX: Final = "anyql:events:"
#: How long one XREAD blocks before it is issued again (it wakes at once for new entries
#: and for a change of channels).
_BLOCK_MS: Final = 5_000
#: The most entries one XREAD takes per stream.
_READ_COUNT: Final = 512

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
-- notify
return id
"""


class RedisStreamsBackend(RedisBackend):
    """Redis Streams for a durable ``Broadcast``; see the module docstring."""

    #: The Lua script of a publish (the cluster backend's also notifies).
    _append_script: str = _APPEND

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
        self._wake_key = f"anyql:wake:{secrets.token_hex(8)}"
        #: Per channel read, the last id the reader delivered (or where it started).
        self._positions: dict[str, StreamId] = {}
        self._wake_position = "0-0"  # the key is this process's own: all of it is ours
        self._script: tuple[_Client, Script[bytes]] | None = None
        self._wake_requested: anyio.Event
        #: Wanted channels whose key holds something other than a stream (logged once).
        self._refused: set[str] = set()

    @property
    def epoch(self) -> str:
        return "r." + self._prefix

    async def __aenter__(self) -> RedisStreamsBackend:
        self._wake_requested = anyio.Event()
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
            if "no such key" in str(error).lower():
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
        self._feed.refuse(channel, failure)
        self._router.refuse(channel, failure)

    async def _start_reading(self, client: _Client, channel: str) -> bool:
        """Position ``channel`` at its stream's last id and keep the stream from expiring;
        False when its key is not a stream (then the channel is refused)."""
        try:
            last = await self._last_id(client, channel)
        except ResponseError as error:
            if not _wrong_type(error):
                raise
            self._refuse(channel, error)
            return False
        self._refused.discard(channel)
        self._positions[channel] = ZERO if last is None else last
        ttl = self._retention.idle_ttl
        if last is not None and ttl is not None:  # read here: keep it from expiring
            await client.pexpire(self._prefix + channel, math.ceil(ttl * 1000))
        return True

    # -- the reader ------------------------------------------------------------------------

    def channels_changed(self) -> None:
        """Wake the reader: a channel is newly wanted or no longer wanted."""
        self._wake_requested.set()

    async def wait_subscribed(self, channels: Any) -> None:
        """Wait until the reader reads ``channels`` (so a later publish reaches them),
        within ``publish_timeout``; at once during an outage."""
        wanted = set(channels)
        with anyio.move_on_after(self._timeout):
            while not wanted <= self._confirmed and self._state.name != "DISCONNECTED":
                await self._changed.wait()

    async def _session(self, ready: Any) -> tuple[bool, BaseException]:
        connected = False
        error: BaseException = ConnectionError("the stream reader's connection ended")
        try:
            async with (
                self._client(stream_timeout=_BLOCK_MS / 1000 + self._timeout) as client,
                anyio.create_task_group() as task_group,
            ):
                with anyio.fail_after(self._timeout):
                    await client.ping()
                    await self._position_new_channels(client)
                connected = True
                self._up()
                ready()
                task_group.start_soon(self._wake_on_change)
                if self._retention.idle_ttl is not None:
                    task_group.start_soon(self._keep_keys, client)
                async with anyio.create_task_group() as reading:
                    reading.start_soon(self._read_forever, client)
                    await self._stopping.wait()
                    reading.cancel_scope.cancel()
                task_group.cancel_scope.cancel()
        except* _CONNECTION_FAILURES as group:
            error = _first_leaf(group)
        return connected, error

    async def _read_forever(self, client: _Client) -> None:
        while True:
            await self._position_new_channels(client)
            streams = {self._prefix + c: format_id(at) for c, at in self._positions.items()}
            streams[self._wake_key] = self._wake_position
            try:
                reply = await client.xread(streams, count=_READ_COUNT, block=_BLOCK_MS)
            except ResponseError as error:
                if not _wrong_type(error):
                    raise
                await self._refuse_non_streams(client, error)
                continue
            for key, found in (reply or {}).items():
                name = _text(key)
                if name == self._wake_key:
                    if found:
                        self._wake_position = _text(found[-1].identifier)
                    continue
                self._deliver(name[len(self._prefix) :], found)

    def _deliver(self, channel: str, found: Any) -> None:
        if channel not in self._positions:
            return  # no longer wanted
        for raw in found:
            entry = _entry(raw)
            if entry is None:
                continue
            if entry.id <= self._positions[channel]:
                continue
            self._positions[channel] = entry.id
            self._feed.deliver(channel, entry)
            self._router.deliver(channel, entry.data)

    async def _position_new_channels(self, client: _Client) -> None:
        """Start reading new channels at their last id; forget channels nobody reads."""
        wanted = self._router.channels() | self._feed.channels()
        for channel in [c for c in self._positions if c not in wanted]:
            del self._positions[channel]
            self._confirmed.discard(channel)
        self._refused &= wanted
        # A refused channel is looked at again each time: a subscriber that came after
        # the refusal must get it too, and the key may be a stream again.
        for channel in sorted(wanted - self._positions.keys()):
            await self._start_reading(client, channel)
        newly = wanted - self._confirmed
        if newly:
            self._confirmed |= newly
            for channel in newly:
                self._feed.ready(channel)
            self._notify()

    async def _refuse_non_streams(self, client: _Client, error: ResponseError) -> None:
        """XREAD found a key of the wrong type (one changed since it was positioned):
        refuse each channel whose key is not a stream any more."""
        refused = 0
        for channel in tuple(self._positions):
            try:
                await self._last_id(client, channel)
            except ResponseError as each:
                if not _wrong_type(each):
                    raise
                self._refuse(channel, each)
                refused += 1
        if not refused:
            raise error

    async def _wake_on_change(self) -> None:
        """Append to this process's wake stream when the channels change, so the blocked
        XREAD returns and is issued again with the new channels."""
        while True:
            await self._wake_requested.wait()
            self._wake_requested = anyio.Event()
            publisher = await self._ready_publisher()
            try:
                with anyio.fail_after(self._timeout):
                    await self._ready_publisher()  # the current one, if it changed meanwhile
                    await publisher.client.xadd(
                        self._wake_key,
                        {"w": "1"},
                        trim_strategy=coredis.PureToken.MAXLEN,
                        threshold=1,
                    )
                    await publisher.client.pexpire(self._wake_key, 60_000)
            except Exception as error:  # never fatal: the next read wakes within 5 s
                self._discard(publisher)
                logger.debug("could not wake the stream reader: %r", error)

    async def _keep_keys(self, client: _Client) -> None:
        """Push back the expiry of every channel read here, so a channel with listeners
        does not expire under them (they would have to start over)."""
        ttl = self._retention.idle_ttl
        assert ttl is not None
        while True:
            publisher = await self._ready_publisher()
            try:
                with anyio.fail_after(self._timeout):
                    for channel in tuple(self._positions):
                        await publisher.client.pexpire(
                            self._prefix + channel, math.ceil(ttl * 1000)
                        )
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


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)
