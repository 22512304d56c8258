"""Shared subscriptions: one hub task per identical operation, payloads encoded once.

Owns ``Fanout`` and its hubs. Subscribers with the same share key (root field, arguments,
document, operation name, variables) attach to one ``Hub`` running in the server-wide task
group: it runs the source once, executes the selection set once per event, JSON-encodes the
result once, and offers the same text to every subscriber, whose session splices only the
``id`` envelope around it (and an SSE stream the ``id:`` line of an ``anyql.Event``'s id,
through ``Subscriber.deliver_event``). Offering never blocks: a subscriber whose buffer is
full gets its slow-consumer policy (``close`` by default), so one slow client never stalls
the others. The hub is cancelled when its last subscriber leaves; its source's ``finally``
runs inside the hub's own task. A hub never lets an exception escape into the server-wide
task group: a failure ends that hub, and its subscribers get an error. Imports anyio and
execution; never a transport or the session.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from .errors import RequestError, SourceError
from .execution import encode_json_bytes

if TYPE_CHECKING:
    from .execution import Engine, FormattedError, PreparedOperation

__all__ = ["Fanout", "Hub", "Subscriber"]

logger = logging.getLogger("anyql.fanout")

INTERNAL_ERROR: tuple[FormattedError, ...] = ({"message": "Internal server error"},)
#: Deliveries of one event between two checkpoints of the hub's task.
DELIVERY_SLICE = 512


@dataclass(eq=False, slots=True)
class Subscriber:
    """One attached operation, with no task of its own: the hub calls it, synchronously.

    ``deliver`` gets each payload, encoded once as UTF-8 JSON; it must not block, and
    returns False when the subscriber must be detached (its connection is closing as a slow
    consumer, or the operation was cancelled). ``on_end`` is called once, when the
    subscriber is detached or the hub finishes, with the hub's errors if it failed, else
    None; it must not block. ``deliver_event``, when given, is called instead of
    ``deliver`` for a payload whose source value was an ``anyql.Event``, with its id (the
    payload carries it too, in ``extensions.eventId``): for a framing that writes the id
    outside the payload (the SSE ``id:`` line). A subscriber without it, or a payload
    without an id, costs nothing more.
    """

    deliver: Callable[[bytes], bool]
    on_end: Callable[[tuple[FormattedError, ...] | None], None]
    deliver_event: Callable[[bytes, str], bool] | None = None


class Hub:
    """One running shared source and the subscribers it feeds.

    Created and started by ``Fanout.attach``; sessions only ever call ``detach``.
    """

    def __init__(
        self, fanout: Fanout, key: Hashable, prepared: PreparedOperation, context: Any
    ) -> None:
        self.fanout = fanout
        self.key = key
        self.prepared = prepared
        #: The context of the subscriber that started the hub; shared resolvers must not
        #: depend on it (it outlives that subscriber's connection).
        self.context = context
        self.subscribers: dict[Subscriber, None] = {}
        self.scope = anyio.CancelScope()

    async def run(self) -> None:
        """Run the source until it ends, fails, or the last subscriber leaves."""
        errors: tuple[FormattedError, ...] | None = None
        try:
            with self.scope:
                await self._pump()
        except (RequestError, SourceError) as error:
            errors = error.errors
        except Exception:
            logger.exception("shared subscription to %s failed", self.prepared.root_field)
            errors = INTERNAL_ERROR
        finally:
            self.fanout._forget(self)
            self._end(errors)

    async def _pump(self) -> None:
        subscription = self.fanout.engine.subscribe(self.prepared, context=self.context)
        async with subscription as results:
            try:
                async for result in results:
                    await self._offer(encode_json_bytes(result), results.event_id)
            finally:
                # Newcomers start a fresh hub rather than join one whose source is closing.
                self.fanout._forget(self)

    async def _offer(self, payload: bytes, event_id: str | None = None) -> None:
        current = self.subscribers
        for index, subscriber in enumerate(list(current)):
            if not index % DELIVERY_SLICE:
                # Let the rest of the server run before each slice: delivering to 20,000
                # sockets at once would hold the loop for tens of milliseconds, and a
                # source that never awaits would hold it for good.
                await anyio.lowlevel.checkpoint()
            if subscriber not in current:
                continue  # detached meanwhile
            try:
                if event_id is None or subscriber.deliver_event is None:
                    keep = subscriber.deliver(payload)
                else:
                    keep = subscriber.deliver_event(payload, event_id)
            except Exception:
                logger.exception("delivering a shared event failed; detaching that subscriber")
                keep = False
            if not keep:
                self.detach(subscriber)

    def _end(self, errors: tuple[FormattedError, ...] | None) -> None:
        subscribers, self.subscribers = self.subscribers, {}
        for subscriber in subscribers:
            _notify_end(subscriber, errors)

    def detach(self, subscriber: Subscriber) -> None:
        """Detach ``subscriber`` (idempotent) and call its ``on_end``; cancel if it was the last.

        Args:
            subscriber: a subscriber attached to this hub, or one already detached.
        """
        if subscriber not in self.subscribers:
            return
        del self.subscribers[subscriber]
        _notify_end(subscriber, None)
        if not self.subscribers:
            self.fanout._forget(self)
            self.scope.cancel()


def _notify_end(subscriber: Subscriber, errors: tuple[FormattedError, ...] | None) -> None:
    try:
        subscriber.on_end(errors)
    except Exception:
        logger.exception("ending a shared subscriber failed")


class Fanout:
    """The registry of running hubs for one server.

    Args:
        engine: runs each hub's subscription.
        task_group: the server-wide task group the hubs run in.
    """

    def __init__(self, engine: Engine, task_group: anyio.abc.TaskGroup) -> None:
        self.engine = engine
        self.task_group = task_group
        self.hubs: dict[Hashable, Hub] = {}

    def attach(
        self, key: Hashable, prepared: PreparedOperation, context: Any, subscriber: Subscriber
    ) -> Hub:
        """Attach ``subscriber`` to the hub for ``key``, starting one if there is none.

        Args:
            key: the operation's share key (``Engine.share_key``).
            prepared: the prepared subscription; used only when a hub starts.
            context: what the hub's resolvers see as ``info.context``; used only when a hub
                starts.
            subscriber: gets every later event; earlier events are not replayed.

        Returns:
            The hub, for ``hub.detach(subscriber)`` when the subscriber leaves.
        """
        hub = self.hubs.get(key)
        if hub is None:
            hub = Hub(self, key, prepared, context)
            self.hubs[key] = hub
            self.task_group.start_soon(hub.run, name=f"anyql shared {prepared.root_field}")
        hub.subscribers[subscriber] = None
        return hub

    def _forget(self, hub: Hub) -> None:
        if self.hubs.get(hub.key) is hub:
            del self.hubs[hub.key]
