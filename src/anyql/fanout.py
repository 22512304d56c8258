"""Shared subscriptions: one hub task per identical operation, payloads encoded once.

Owns ``Fanout`` and its hubs. Subscribers with the same share key (root field, arguments,
document, operation name, variables) attach to one ``Hub`` running in the server-wide task
group: it runs the source once, executes the selection set once per event, JSON-encodes the
result once, and offers the same text to every subscriber, whose session splices only the
``id`` envelope around it. Offering never blocks: a subscriber whose buffer is full gets its
slow-consumer policy (``close`` by default), so one slow client never stalls the others. The
hub is cancelled when its last subscriber leaves; its source's ``finally`` runs inside the
hub's own task. Imports anyio and execution; never a transport.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from .execution import RequestError, SourceError, encode_json

if TYPE_CHECKING:
    from .execution import Engine, FormattedError, PreparedOperation

__all__ = ["Fanout", "Subscriber"]

logger = logging.getLogger("anyql.fanout")


@dataclass(eq=False, slots=True)
class Subscriber:
    """One attached operation: ``deliver`` gets each encoded payload, synchronously.

    ``deliver`` must not block; it returns False when the subscriber must be detached (its
    connection is closing as a slow consumer). ``ended`` is set when the hub finishes, with
    ``errors`` set when it failed.
    """

    deliver: Callable[[str], bool]
    ended: anyio.Event = field(default_factory=anyio.Event)
    errors: tuple[FormattedError, ...] | None = None


class Hub:
    def __init__(self, fanout: Fanout, key: Hashable, prepared: PreparedOperation, context: Any):
        self.fanout = fanout
        self.key = key
        self.prepared = prepared
        self.context = context
        self.subscribers: list[Subscriber] = []
        self.scope = anyio.CancelScope()

    async def run(self) -> None:
        errors: tuple[FormattedError, ...] | None = None
        try:
            with self.scope:
                subscription = self.fanout.engine.subscribe(self.prepared, context=self.context)
                async with subscription as results:
                    async for result in results:
                        self._offer(encode_json(result))
        except (RequestError, SourceError) as error:
            errors = error.errors
        finally:
            self.fanout._forget(self)
            for subscriber in self.subscribers:
                subscriber.errors = errors
                subscriber.ended.set()

    def _offer(self, payload: str) -> None:
        detached = [s for s in self.subscribers if not s.deliver(payload)]
        for subscriber in detached:
            self.detach(subscriber)

    def detach(self, subscriber: Subscriber) -> None:
        if subscriber in self.subscribers:
            self.subscribers.remove(subscriber)
            subscriber.ended.set()
        if not self.subscribers:
            self.fanout._forget(self)
            self.scope.cancel()


class Fanout:
    """The registry of running hubs for one server."""

    def __init__(self, engine: Engine, task_group: anyio.abc.TaskGroup) -> None:
        self.engine = engine
        self.task_group = task_group
        self.hubs: dict[Hashable, Hub] = {}

    def attach(
        self, key: Hashable, prepared: PreparedOperation, context: Any, subscriber: Subscriber
    ) -> Hub:
        """Attach ``subscriber`` to the hub for ``key``, starting one if there is none."""
        hub = self.hubs.get(key)
        if hub is None:
            hub = Hub(self, key, prepared, context)
            self.hubs[key] = hub
            self.task_group.start_soon(hub.run)
        hub.subscribers.append(subscriber)
        return hub

    def _forget(self, hub: Hub) -> None:
        if self.hubs.get(hub.key) is hub:
            del self.hubs[hub.key]
