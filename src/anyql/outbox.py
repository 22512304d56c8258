"""The bounded per-connection send buffer and its slow-consumer policies.

Owns ``Outbox``: operations put messages in (UTF-8 text, ready to frame), the session's
writer takes them out in order. There is no task waiting on it: the outbox calls its
``on_ready`` callback when a message lands in it empty, and the session starts a writer
that drains it and ends. When the buffer is full the putting operation's policy decides: ``block``
waits (backpressure reaches the generator), ``drop_oldest`` drops that operation's oldest
queued frame, ``latest`` drops all of that operation's queued frames, ``close`` reports
that the connection must close 1008. Frames that are not droppable (acks, completes,
errors) always wait for room. Imports anyio only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import anyio

from .errors import SlowConsumer
from .types import SlowConsumerPolicy

__all__ = ["Outbox", "OutboxItem", "Owner", "describe_operations"]

logger = logging.getLogger("anyql.session")


@dataclass(eq=False, slots=True)
class Owner:
    """The operation a queued frame belongs to; frames of a cancelled owner are skipped
    (unless it was cancelled keeping them)."""

    id: str
    #: What runs, for logs: the subscription's root field or the operation type.
    label: str = ""
    started: float = field(default_factory=time.monotonic)
    cancelled: bool = False
    #: Set by a cancel that keeps the frames already queued (a server close that flushes).
    keeps_queued: bool = False
    dropped: int = 0
    #: The cancel scope of the operation's task; None for one without a task (a shared
    #: subscription), which has ``on_cancel`` instead.
    scope: anyio.CancelScope | None = None
    #: Called once on cancel, for an operation without a task (a shared subscription).
    on_cancel: Callable[[], None] | None = None

    def cancel(self, *, keep_queued: bool = False) -> None:
        """Cancel the operation and make its queued frames disappear, unless
        ``keep_queued``: then what it had queued is still sent."""
        if self.cancelled:
            return
        self.cancelled = True
        self.keeps_queued = keep_queued
        if self.scope is not None:
            self.scope.cancel()
        if self.on_cancel is not None:
            self.on_cancel()


def describe_operations(owners: Iterable[Owner], where: str) -> list[str]:
    """One line per running operation, for the shutdown watchdog (safe from any thread)."""
    now = time.monotonic()
    return [
        f"operation {owner.id!r} ({owner.label}) {where}, running for {now - owner.started:.1f} s"
        for owner in list(owners)
    ]


@dataclass(slots=True)
class OutboxItem:
    owner: Owner | None
    data: bytes
    droppable: bool


class Outbox:
    """A bounded FIFO of messages with one consumer (the writer).

    Args:
        max_messages: the bound in messages.
        max_bytes: the bound in bytes.
        on_ready: called (it must not block) when a message arrives in an empty outbox.
    """

    __slots__ = (
        "_bytes",
        "_closed",
        "_items",
        "_max_bytes",
        "_max_messages",
        "_on_ready",
        "_writable",
    )

    def __init__(self, max_messages: int, max_bytes: int, on_ready: Callable[[], None]) -> None:
        #: A list, not a deque: an idle connection's empty list costs 56 bytes, a deque 600.
        self._items: list[OutboxItem] = []
        self._bytes = 0
        self._max_messages = max_messages
        self._max_bytes = max_bytes
        self._on_ready = on_ready
        #: Created for a ``put`` that must wait for room; set when the writer makes room.
        self._writable: anyio.Event | None = None
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    def has_room(self) -> bool:
        """Whether one more message fits now."""
        return not self._full()

    def _full(self) -> bool:
        return len(self._items) >= self._max_messages or self._bytes >= self._max_bytes

    async def put(
        self,
        data: bytes,
        *,
        owner: Owner | None = None,
        policy: SlowConsumerPolicy = "block",
        droppable: bool = False,
    ) -> None:
        """Queue ``data``; apply ``policy`` when full (non-droppable frames always wait).

        Raises:
            SlowConsumer: the buffer is full and ``policy`` is ``close``.
        """
        while self._full() and not self._closed:
            if droppable and policy != "block":
                if policy == "close":
                    raise SlowConsumer
                if not self._make_room(owner, policy == "latest"):
                    self._count_drop(owner)
                    return
                break
            if self._writable is None or self._writable.is_set():
                self._writable = anyio.Event()
            await self._writable.wait()
        if self._closed:
            return
        self._append(OutboxItem(owner, data, droppable))

    def push(self, data: bytes) -> None:
        """Queue a control frame past the bound, without waiting.

        For the one ``connection_ack`` and the legacy ``ka`` that follows it (they must not
        be overtaken by frames queued after them while a full buffer makes ``put`` wait) and
        for the ``complete`` or ``error`` that ends a shared subscription (its hub cannot
        wait): at most one per operation, so at most ``max_operations`` + 2 frames past the
        bound.
        """
        if self._closed:
            return
        self._append(OutboxItem(None, data, False))

    def offer(self, data: bytes, *, owner: Owner, policy: SlowConsumerPolicy) -> None:
        """Queue a droppable frame without ever waiting (shared subscriptions).

        A full buffer gets ``policy``; ``block`` cannot apply to a frame shared with other
        connections, so it acts as ``close``.

        Raises:
            SlowConsumer: the buffer is full and the policy is ``close`` or ``block``.
        """
        if self._closed:
            return
        if self._full():
            if policy in ("close", "block"):
                raise SlowConsumer
            if not self._make_room(owner, policy == "latest"):
                self._count_drop(owner)
                return
        self._append(OutboxItem(owner, data, True))

    def _append(self, item: OutboxItem) -> None:
        was_empty = not self._items
        self._items.append(item)
        self._bytes += len(item.data)
        if was_empty:
            self._on_ready()

    def _make_room(self, owner: Owner | None, all_of_owner: bool) -> bool:
        victims = [i for i in self._items if i.droppable and i.owner is owner]
        if not victims:
            return False
        for victim in victims if all_of_owner else victims[:1]:
            self._items.remove(victim)
            self._bytes -= len(victim.data)
            self._count_drop(owner)
        return True

    def _count_drop(self, owner: Owner | None) -> None:
        if owner is not None:
            owner.dropped += 1
            if owner.dropped == 1 or owner.dropped % 1000 == 0:
                logger.warning(
                    "slow consumer: %d message(s) dropped for operation %r", owner.dropped, owner.id
                )

    def take(self) -> list[OutboxItem]:
        """Return every queued message, oldest first (none: an empty list), and make room."""
        if not self._items:
            return []
        items, self._items = self._items, []
        self._bytes = 0
        if self._writable is not None:
            self._writable.set()
        return items

    def close(self) -> None:
        """Wake every waiting ``put``; later messages are discarded (queued ones stay)."""
        self._closed = True
        if self._writable is not None:
            self._writable.set()
