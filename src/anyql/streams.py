"""The HTTP stream driver: GraphQL operations streamed over one SSE or multipart response.

Owns ``StreamSession``. Theory of operation: a stream session is the body of one
``HTTPStream``; the transport awaits ``run(sink)`` in the request's own task and cancels it
when the client goes away. Like a WebSocket session it holds a task group with one child
task per running operation, each inside its own cancel scope (a shared subscription has
none: its hub calls it), and a bounded ``Outbox`` of frames tagged with their ``Owner``, so
the slow-consumer policies, shared subscriptions (each event encoded once; only the
envelope, from the ``StreamFraming``, differs) and the cancellation guarantees are the same.
The session's own task is the writer: it drains the outbox to the sink and, when the stream
has been idle for ``Limits.stream_keep_alive_interval``, writes a keep-alive. A stream
for one operation (SSE distinct connections, multipart) ends when that operation ends; a
single-connection SSE stream runs until the client closes it, taking operations from
``start`` (``anyql.reservations``). Shutdown and the drain reach a stream through
``RunningServer.watch``: SSE streams end with a randomised ``retry:`` (the client
reconnects elsewhere), multipart ones with a transport error.
"""

from __future__ import annotations

import enum
import logging
import random
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from .errors import ConnectionClosed, RequestError, SlowConsumer, SourceError
from .execution import encode_json_bytes
from .fanout import Joiner, Subscriber, join_when_caught_up
from .outbox import Outbox, OutboxItem, Owner, describe_operations
from .ports import SessionHost
from .protocol.http_stream import StreamFraming
from .types import DirectStreamSink, HTTPRequest, RequestInfo, SlowConsumerPolicy, StreamSink

if TYPE_CHECKING:
    from .execution import FormattedError, PreparedOperation

__all__ = ["StreamSession", "policy_for"]

logger = logging.getLogger("anyql.streams")

INTERNAL_ERROR: tuple[FormattedError, ...] = ({"message": "Internal server error"},)
GOING_AWAY: tuple[FormattedError, ...] = ({"message": "Server is shutting down"},)
SLOW_CONSUMER: tuple[FormattedError, ...] = ({"message": "Slow consumer"},)
#: How long a closing stream waits for what is queued to go out.
CLOSE_FLUSH_TIMEOUT = 1.0
#: The ``retry:`` hint (milliseconds) of a stream ended by a drain: spread, not at once.
DRAIN_RETRY_MS = (500, 3000)
#: The ``retry:`` hint of a stream ended as a slow consumer: long enough not to loop.
SLOW_CONSUMER_RETRY_MS = (10_000, 20_000)


def _frames(items: list[OutboxItem]) -> bytes:
    """The queued frames still to send (those of cancelled operations vanish)."""
    return b"".join(i.data for i in items if i.owner is None or not i.owner.cancelled)


def policy_for(app: SessionHost, prepared: PreparedOperation) -> SlowConsumerPolicy:
    """The slow-consumer policy of ``prepared``: its field's own, else the app's default
    for shared or unshared subscriptions."""
    settings = app.settings
    options = app.schema.field_options(prepared.root_field) if prepared.root_field else None
    if options is not None and options.slow_consumer is not None:
        return options.slow_consumer
    if options is not None and options.shared and prepared.resume_point is None:
        return settings.shared_slow_consumer  # a resuming one runs privately: backpressure
    return settings.slow_consumer


class StreamState(enum.Enum):
    """Where a stream stands; ``_end`` makes the only transitions (from OPEN)."""

    OPEN = "open"
    #: Ending: what is queued goes out, then the last frames.
    ENDING = "ending"
    #: The client is gone: nothing more is written.
    LOST = "lost"


class StreamSession:
    """One streamed response carrying one operation, or many (single-connection SSE).

    Args:
        app: the application (engine, schema, limits, settings, running server).
        framing: how results are framed.
        info: the request that opened the stream (for logs).
        single_operation: end the stream when its one operation ends.
    """

    def __init__(
        self,
        app: SessionHost,
        framing: StreamFraming,
        info: RequestInfo,
        *,
        single_operation: bool,
    ) -> None:
        self.app = app
        self.limits = app.limits
        self.framing = framing
        self.info = info
        self.single_operation = single_operation
        self.outbox = Outbox(
            self.limits.send_buffer_messages, self.limits.send_buffer_bytes, self._wake
        )
        self.operations: dict[str, Owner] = {}
        self.state = StreamState.OPEN
        #: The frames that end the stream, once the state is ENDING.
        self._last: bytes = b""
        self._ready = anyio.Event()
        #: Operations started before ``run``: id, operation, context, and the request that
        #: asked for it (handed to another process when the stream opens there).
        self._pending: list[tuple[str, PreparedOperation, Any, HTTPRequest | None]] = []
        self._tg: anyio.abc.TaskGroup | None = None
        #: ``run`` has returned: nothing can start any more.
        self.finished = False
        #: The writer's scope: once the stream ends, what is left to write gets
        #: ``CLOSE_FLUSH_TIMEOUT`` (a client that stopped reading must not hold it for ever).
        self._writer = anyio.CancelScope()
        #: The sink, when it can write from the delivering task (the native server).
        self._direct: DirectStreamSink | None = None
        #: True while the writer waits with nothing queued: a result may then go out
        #: from the task that produced it, as on a WebSocket.
        self._idle = False

    # --- lifetime ------------------------------------------------------------------

    async def run(self, sink: StreamSink) -> None:
        """Write the stream to ``sink`` until it ends or the client goes away."""
        handle = self.app.server
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                if handle is not None:
                    handle.watch(self, self._going_away)
                    handle.track(self, self.describe)
                pending, self._pending = self._pending, []
                for id, prepared, context, _ in pending:
                    self._launch(id, prepared, context)
                if isinstance(sink, DirectStreamSink):
                    self._direct = sink
                try:
                    with self._writer:
                        await sink.send(self.framing.opening())
                        await self._write_until_ended(sink)
                except ConnectionClosed:
                    self.state = StreamState.LOST
                self._cancel_operations()
                tg.cancel_scope.cancel()
        finally:
            self.state = StreamState.LOST
            self.finished = True
            self._tg = None
            self._pending.clear()
            if handle is not None:
                handle.unwatch(self)
                handle.untrack(self)
            self._cancel_operations()

    @property
    def accepting(self) -> bool:
        """Whether an operation may start: the stream has not ended nor begun to."""
        return not self.finished and self.state is StreamState.OPEN

    def start(
        self,
        id: str,
        prepared: PreparedOperation,
        context: Any,
        request: HTTPRequest | None = None,
    ) -> None:
        """Run operation ``id`` on this stream (queued until ``run`` begins).

        Raises:
            ValueError: an operation with this id is still running.
            RuntimeError: the stream ended or is ending (``accepting`` is False).
        """
        if not self.accepting:
            raise RuntimeError("the stream has ended")
        if id in self.operations or any(p[0] == id for p in self._pending):
            raise ValueError(id)
        if self._tg is None:
            self._pending.append((id, prepared, context, request))
        else:
            self._launch(id, prepared, context)

    def take_pending_requests(self) -> list[HTTPRequest]:
        """Forget the operations waiting for ``run`` and return the requests that asked
        for them (the stream is opening in another process, which runs them)."""
        pending, self._pending = self._pending, []
        return [request for _, _, _, request in pending if request is not None]

    def stop(self, id: str) -> bool:
        """Cancel operation ``id`` (the client's ``DELETE``); False if it is not running."""
        for index, pending in enumerate(self._pending):
            if pending[0] == id:
                del self._pending[index]
                return True
        owner = self.operations.pop(id, None)
        if owner is None:
            return False
        owner.cancel()
        return True

    @property
    def operation_count(self) -> int:
        """Operations running or waiting for the stream to open."""
        return len(self.operations) + len(self._pending)

    def describe(self) -> list[str]:
        """One line per running operation, for the shutdown watchdog (any thread)."""
        return describe_operations(self.operations.values(), f"on a stream to {self.info.peer}")

    def _cancel_operations(self) -> None:
        for owner in list(self.operations.values()):
            owner.cancel()

    def _end(self, last: bytes) -> None:
        """End the stream after what is queued, with ``last`` (from OPEN only)."""
        if self.state is not StreamState.OPEN:
            return
        self.state = StreamState.ENDING
        self._last = last
        self._writer.deadline = anyio.current_time() + CLOSE_FLUSH_TIMEOUT
        self._wake()

    def _going_away(self) -> None:
        # Ending first: the operations' own endings (a shared one's ``complete``) must not
        # take the place of the retry hint.
        self._end(self.framing.interrupted(GOING_AWAY, random.randint(*DRAIN_RETRY_MS)))
        self._cancel_operations()

    # --- writing -------------------------------------------------------------------

    def _wake(self) -> None:
        self._ready.set()

    async def _write_until_ended(self, sink: StreamSink) -> None:
        interval = self.limits.stream_keep_alive_interval
        direct = self._direct
        while self.state is StreamState.OPEN:
            items = self.outbox.take()
            if items or (direct is not None and direct.needs_flush):
                await sink.send(_frames(items))  # after any residue ``write_now`` left
                continue
            self._ready = anyio.Event()
            self._idle = True
            try:
                if interval > 0:
                    with anyio.move_on_after(interval) as idle:
                        await self._ready.wait()
                else:
                    await self._ready.wait()
            finally:
                self._idle = False
            if interval > 0 and idle.cancelled_caught:
                await sink.send(self.framing.keep_alive())
        if self.state is StreamState.ENDING:  # within the writer's deadline (``_end``)
            await sink.send(_frames(self.outbox.take()) + self._last)

    def _write_now(self, frame: bytes) -> bool:
        """Send ``frame`` from the calling task when nothing is queued before it; False:
        queue it. A stream whose client is gone counts as sent (nothing more goes out)."""
        direct = self._direct
        if (
            direct is None
            or not self._idle
            or len(self.outbox)
            or self.state is not StreamState.OPEN
        ):
            return False
        try:
            if not direct.write_now(frame):
                return False
        except ConnectionClosed:
            self.state = StreamState.LOST
            self._wake()
            return True
        if direct.needs_flush:
            self._wake()  # the kernel took part of it: the writer sends the rest next
        return True

    # --- operations ----------------------------------------------------------------

    def _launch(self, id: str, prepared: PreparedOperation, context: Any) -> None:
        assert self._tg is not None
        owner = Owner(id, label=prepared.root_field or prepared.operation_type)
        self.operations[id] = owner
        if not self._attach_shared(owner, prepared, context):
            owner.scope = anyio.CancelScope()
            server = self.app.server
            joiner = None
            if server is not None:
                joiner = join_when_caught_up(
                    server.fanout,
                    owner,
                    prepared,
                    context,
                    partial(self._shared_subscriber, owner),
                    self.outbox.has_room,
                )
            self._tg.start_soon(self._run_operation, owner, owner.scope, prepared, context, joiner)

    async def _run_operation(
        self,
        owner: Owner,
        scope: anyio.CancelScope,
        prepared: PreparedOperation,
        context: Any,
        joiner: Joiner | None = None,
    ) -> None:
        try:
            with scope:
                await self._operate(owner, prepared, context, joiner)
        except SlowConsumer:
            self._close_slow_consumer(owner)
        except Exception:
            logger.exception("operation %r on a stream failed", owner.id)
            await self._emit(owner, self.framing.fail(owner.id, INTERNAL_ERROR))
        finally:
            if joiner is None or not joiner.joined:
                if joiner is not None and owner.on_cancel is not None:
                    owner.on_cancel()  # it ended before it joined: the hub forgets it
                self._operation_ended(owner)

    def _operation_ended(self, owner: Owner) -> None:
        if self.operations.get(owner.id) is owner:
            del self.operations[owner.id]
        if self.single_operation:
            self._end(self.framing.end())

    async def _operate(
        self,
        owner: Owner,
        prepared: PreparedOperation,
        context: Any,
        joiner: Joiner | None = None,
    ) -> None:
        engine = self.app.engine
        framing = self.framing
        try:
            if prepared.operation_type == "subscription":
                policy = policy_for(self.app, prepared)
                async with engine.subscribe(prepared, context=context) as results:
                    async for result in results:
                        if joiner is not None:
                            if joiner.joined:
                                return  # the hub delivers from here on (and ends it)
                            joiner.last, joiner.emitting = results.event_id, True
                        try:
                            await self._emit_next(
                                owner, encode_json_bytes(result), policy, results.event_id
                            )
                        finally:
                            if joiner is not None:
                                joiner.emitting = False
                        if joiner is not None and joiner.joined:
                            return  # joined while it emitted: nothing more from here
                if joiner is not None and joiner.joined:
                    return
            elif (
                prepared.operation_type == "mutation"
                and not self.app.settings.cancel_mutations_on_disconnect
            ):
                with anyio.CancelScope(shield=True):  # as over plain HTTP: no half mutation
                    result = await engine.execute(prepared, context=context, peer=self.info.peer)
                await self._emit_next(owner, encode_json_bytes(result))
            else:
                result = await engine.execute(prepared, context=context, peer=self.info.peer)
                await self._emit_next(owner, encode_json_bytes(result))
        except (RequestError, SourceError) as error:
            if joiner is not None and joiner.joined:
                return  # the hub has the operation now: its private source is done
            await self._emit(owner, framing.error(owner.id, error.errors))
            return
        await self._emit(owner, framing.complete(owner.id))

    def _attach_shared(self, owner: Owner, prepared: PreparedOperation, context: Any) -> bool:
        server = self.app.server
        if prepared.operation_type != "subscription" or server is None:
            return False
        key = self.app.engine.share_key(prepared)
        if key is None:
            return False
        subscriber = self._shared_subscriber(owner, prepared)
        hub = server.fanout.attach(key, prepared, context, subscriber)
        owner.on_cancel = partial(hub.detach, subscriber)
        return True

    def _shared_subscriber(self, owner: Owner, prepared: PreparedOperation) -> Subscriber:
        """How a hub delivers to ``owner`` and tells it that it ended."""
        policy = policy_for(self.app, prepared)
        before, after = self.framing.envelope(owner.id)

        def deliver(payload: bytes) -> bool:
            if owner.cancelled:
                return False
            return deliver_frame(before + payload + after)

        def deliver_frame(frame: bytes) -> bool:
            if self._write_now(frame):
                return self.state is StreamState.OPEN
            try:
                self.outbox.offer(frame, owner=owner, policy=policy)
            except SlowConsumer:
                self._close_slow_consumer(owner)
                return False
            return self.state is StreamState.OPEN

        def ended(errors: tuple[FormattedError, ...] | None) -> None:
            if not owner.cancelled:
                framing = self.framing
                end = (
                    framing.complete(owner.id)
                    if errors is None
                    else framing.error(owner.id, errors)
                )
                if end:
                    self.outbox.push(end)
            self._operation_ended(owner)

        def deliver_event(payload: bytes, event_id: str) -> bool:
            if owner.cancelled:
                return False
            return deliver_frame(before + payload + framing.envelope(owner.id, event_id)[1])

        framing = self.framing
        return Subscriber(deliver, ended, deliver_event if framing.event_ids else None)

    def _close_slow_consumer(self, owner: Owner) -> None:
        logger.warning("closing a slow stream consumer: %s, operation %r", self.info.peer, owner.id)
        self.outbox.take()  # the client is not reading: what is queued is dropped
        retry_ms = random.randint(*SLOW_CONSUMER_RETRY_MS)
        self._end(self.framing.interrupted(SLOW_CONSUMER, retry_ms))
        self._cancel_operations()

    async def _emit(self, owner: Owner, frame: bytes) -> None:
        """Queue ``frame`` of a live operation; nothing once it is cancelled."""
        if owner.cancelled or not frame:
            await anyio.lowlevel.checkpoint()
            return
        await self.outbox.put(frame, owner=owner)

    async def _emit_next(
        self,
        owner: Owner,
        payload: bytes,
        policy: SlowConsumerPolicy = "block",
        event_id: str | None = None,
    ) -> None:
        if owner.cancelled:
            await anyio.lowlevel.checkpoint()
            return
        frame = self.framing.next(owner.id, payload, event_id)
        if self._write_now(frame):
            # A direct write never waits: this checkpoint keeps a source that never awaits
            # from holding the loop (and lets the client's leaving be noticed).
            await anyio.lowlevel.checkpoint()
            return
        await self.outbox.put(frame, owner=owner, policy=policy, droppable=True)
