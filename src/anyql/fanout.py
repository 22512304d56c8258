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

import dataclasses
import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from .errors import RequestError, SourceError
from .execution import encode_json_bytes
from .outbox import Owner

if TYPE_CHECKING:
    from .execution import Engine, FormattedError, PreparedOperation

__all__ = ["Fanout", "Hub", "Joiner", "Subscriber", "join_when_caught_up"]

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


@dataclass(eq=False, slots=True)
class Joiner:
    """A resuming subscriber that reads its backlog privately, then joins a hub.

    Its own operation runs the source from the client's resume point and sets ``last`` to
    each event id *before* it emits that event. The hub compares ``last`` at each event it
    offers: when it equals the id the hub offered before (the joiner is right behind), the
    joiner is attached before the new event, which it gets from the hub; when it equals the
    new event's id (the joiner has it already), after it. Either way ``joined`` is set and
    the private run stops at its next event without emitting it: no duplicate, no gap.
    """

    subscriber: Subscriber
    last: str | None = None
    joined: bool = False
    #: True while the private run emits an event (it must not be cut in the middle).
    emitting: bool = False
    #: Called when it joins: the private run may be cancelled unless it is emitting.
    on_joined: Callable[[], None] | None = None
    #: Whether its connection can take the hub's next event now (a full send buffer
    #: would meet the shared slow-consumer policy the moment it joined).
    has_room: Callable[[], bool] | None = None

    def can_join(self, event_id: str) -> bool:
        """Whether it may join at ``event_id``: its last event, and not in the middle of
        emitting one (the hub's next delivery could overtake it or find no room)."""
        return (
            self.last == event_id
            and not self.emitting
            and (self.has_room is None or self.has_room())
        )


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
        #: Resuming subscribers still reading their backlog privately.
        self.joiners: dict[Joiner, None] = {}
        #: The id of the last event offered (an ``anyql.Event``'s), for the joiners.
        self.last_event_id: str | None = None
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
        previous, self.last_event_id = self.last_event_id, event_id
        if self.joiners and previous is not None:
            self._admit(previous)  # right behind: they get this event from the hub
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
        if self.joiners and event_id is not None:
            self._admit(event_id)  # they have this event already: from the next one

    def _admit(self, event_id: str) -> None:
        for joiner in [j for j in self.joiners if j.can_join(event_id)]:
            del self.joiners[joiner]
            joiner.joined = True
            self.subscribers[joiner.subscriber] = None
            if joiner.on_joined is not None:
                joiner.on_joined()

    def leave(self, joiner: Joiner) -> None:
        """Forget a joiner that has not joined (its operation ended); cancel the hub if
        nobody is left."""
        if self.joiners.pop(joiner, 0) is None and not self.subscribers and not self.joiners:
            self.fanout._forget(self)
            self.scope.cancel()

    def _end(self, errors: tuple[FormattedError, ...] | None) -> None:
        self.joiners = {}  # they go on privately, to their source's end
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
        if not self.subscribers and not self.joiners:
            self.fanout._forget(self)
            self.scope.cancel()


def join_when_caught_up(
    fanout: Fanout,
    owner: Owner,
    prepared: PreparedOperation,
    context: Any,
    subscriber_for: Callable[[PreparedOperation], Subscriber],
    has_room: Callable[[], bool],
) -> Joiner | None:
    """For a resuming subscriber of a shared field: register it to join the hub once its
    private run (in ``owner.scope``) has caught up and its connection has room (a
    joiner that misses one chance meets the hub again at the next event); None for any
    other operation.

    ``subscriber_for`` makes the hub's subscriber from the operation without its resume
    point. Cancelling ``owner`` then leaves the hub, joined or not; joining cancels the
    private run unless it is emitting (it then stops at its next event).
    """
    if prepared.resume_point is None or prepared.operation_type != "subscription":
        return None
    key = fanout.engine.hub_key(prepared)
    if key is None:
        return None
    fresh = dataclasses.replace(prepared, resume_point=None)
    joiner = Joiner(subscriber_for(fresh), has_room=has_room)
    hub = fanout.join(key, fresh, context, joiner)
    owner.on_cancel = partial(leave_hub, hub, joiner)

    def joined() -> None:
        if not joiner.emitting and owner.scope is not None:
            owner.scope.cancel()  # its source is not needed any more

    joiner.on_joined = joined
    return joiner


def leave_hub(hub: Hub, joiner: Joiner) -> None:
    """A joiner's operation ends: detach it if it joined, else forget it (idempotent)."""
    if joiner.joined:
        hub.detach(joiner.subscriber)
    else:
        hub.leave(joiner)


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
        hub = self._hub(key, prepared, context)
        hub.subscribers[subscriber] = None
        return hub

    def join(self, key: Hashable, prepared: PreparedOperation, context: Any, joiner: Joiner) -> Hub:
        """Register a resuming subscriber to join the hub for ``key`` once it caught up,
        starting the hub (from now, without a resume point) if there is none.

        Args:
            key: the share key (``Engine.hub_key``).
            prepared: the subscription without its resume point; used only when a hub
                starts.
            context: as for ``attach``.
            joiner: its subscriber is attached when its private run reaches the hub.

        Returns:
            The hub, for ``hub.leave(joiner)`` or ``hub.detach(joiner.subscriber)``.
        """
        hub = self._hub(key, prepared, context)
        hub.joiners[joiner] = None
        return hub

    def _hub(self, key: Hashable, prepared: PreparedOperation, context: Any) -> Hub:
        hub = self.hubs.get(key)
        if hub is None:
            hub = Hub(self, key, prepared, context)
            self.hubs[key] = hub
            self.task_group.start_soon(hub.run, name=f"anyql shared {prepared.root_field}")
        return hub

    def _forget(self, hub: Hub) -> None:
        if self.hubs.get(hub.key) is hub:
            del self.hubs[hub.key]
