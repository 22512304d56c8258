"""The WebSocket driver: one GraphQL-over-WebSocket session on one accepted socket.

Owns ``serve_session``. Theory of operation: a session is one task that reads (socket ->
protocol machine -> actions; the init timeout and the expiry are deadlines on its read, and
a close request cancels the read) and a task group holding the legacy keep-alive timer, the
``on_connect`` call, and one child task per running operation, each inside its own cancel scope
(a shared subscription has none: its hub calls it, and cancelling its owner detaches it);
server shutdown reaches the session through a callback, not a task.
Operations render frames through the machine (UTF-8 bytes) and queue them in the bounded
``Outbox``, tagged with their ``Owner``; cancelling an owner makes its queued frames
vanish, so nothing is sent for an id after the client completed it. A writer task exists
only while the outbox holds something: it drains it and ends. A ``next`` that finds the
outbox empty and no writer (the common case in a fan-out) skips both: on a transport that
offers ``write_now`` it goes to the socket from the delivering task at once. Every close
goes through ``_request_close``; the session's main task then cancels the operations,
flushes what may still go out, closes the socket and cancels the group, which waits for each
operation's shielded, bounded cleanup. Protocol rules live in ``anyql.protocol``; this
module only carries out their actions.
"""

from __future__ import annotations

import enum
import logging
import math
import time
from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from .context import Accepted, Connection
from .errors import ConnectionClosed, ConnectionRejected, RequestError, SlowConsumer, SourceError
from .execution import encode_json_bytes
from .fanout import Joiner, Subscriber, join_when_caught_up
from .outbox import Outbox, Owner, describe_operations
from .ports import DirectWebSocketTransport, SessionHost, WebSocketTransport
from .protocol import (
    BadMessage,
    CloseCode,
    CloseConnection,
    Complete,
    ConnectionAck,
    ConnectionInit,
    ConnectionState,
    Error,
    Event,
    KeepAlive,
    OperationRequest,
    Ping,
    Pong,
    Subscribe,
    server_connection_for,
    truncate_reason,
)
from .types import RequestInfo, SlowConsumerPolicy

if TYPE_CHECKING:
    from .execution import FormattedError, PreparedOperation

__all__ = ["serve_session"]

logger = logging.getLogger("anyql.session")

TOO_MANY_OPERATIONS = ({"message": "Too many operations"},)
INTERNAL_ERROR = ({"message": "Internal server error"},)
#: The close when ``on_connect``'s ``Accepted.expires_at`` passes.
EXPIRED = CloseConnection(CloseCode.FORBIDDEN, "Connection expired")
#: How long a closing session waits for queued frames and the close frame to go out.
CLOSE_FLUSH_TIMEOUT = 1.0


async def serve_session(app: SessionHost, transport: WebSocketTransport, info: RequestInfo) -> None:
    """Run one session on ``transport`` until it closes; returns after every cleanup.

    Args:
        app: the application (settings, engine, hooks).
        transport: an accepted WebSocket.
        info: the handshake request, for ``info.context.request``.
    """
    subprotocol = transport.subprotocol
    if subprotocol is None or subprotocol not in app.settings.subscription_protocols:
        await transport.close(CloseCode.SUBPROTOCOL_NOT_ACCEPTABLE, "Subprotocol not acceptable")
        return
    await Session(app, transport, info, subprotocol).run()


class SessionState(enum.Enum):
    """Where a session stands; ``_request_close`` makes the only transitions (from OPEN)."""

    #: Reading, running operations, writing.
    OPEN = "open"
    #: Closing: what is queued goes out (within ``CLOSE_FLUSH_TIMEOUT``), then the close.
    CLOSING = "closing"
    #: Closing at once, dropping what is queued (a slow consumer is not reading).
    CLOSING_NOW = "closing now"
    #: The peer is gone: nothing more is written.
    LOST = "lost"


class Session:
    __slots__ = (
        "_close",
        "_deadline",
        "_direct",
        "_parked",
        "_reading",
        "_state",
        "_writer_done",
        "_writing",
        "app",
        "context",
        "info",
        "limits",
        "machine",
        "operations",
        "outbox",
        "tg",
        "transport",
    )

    def __init__(
        self, app: SessionHost, transport: WebSocketTransport, info: RequestInfo, subprotocol: str
    ) -> None:
        self.app = app
        self.limits = app.limits
        self.transport = transport
        self.info = info
        self.machine = server_connection_for(subprotocol)
        self.outbox = Outbox(
            self.limits.send_buffer_messages, self.limits.send_buffer_bytes, self._start_writer
        )
        direct = transport if isinstance(transport, DirectWebSocketTransport) else None
        self._direct = direct
        #: True while a writer task drains the outbox.
        self._writing = False
        #: Set by the writer when it ends, once the session is closing.
        self._writer_done: anyio.Event | None = None
        #: What a parked writer waits on (transports without ``write_now``, see below).
        self._parked: anyio.Event | None = None
        self.operations: dict[str, Owner] = {}
        self.context: Any = None
        self._state = SessionState.OPEN
        #: The close frame to send, once the state is CLOSING or CLOSING_NOW.
        self._close: CloseConnection | None = None
        #: The reader's deadline: the init timeout until ``connection_init``, then
        #: ``on_connect``'s expiry (or none).
        self._deadline = math.inf
        #: The scope of the current read; a close request cancels it.
        self._reading = anyio.CancelScope()

    # --- lifetime ------------------------------------------------------------------

    async def run(self) -> None:
        handle = self.app.server
        try:
            async with anyio.create_task_group() as tg:
                self.tg = tg
                if handle is not None:
                    handle.watch(self, self._going_away)
                    handle.track(self, self.describe)
                await self._read_until_closed()
                await self._shut(tg)
        finally:
            if handle is not None:
                handle.unwatch(self)
                handle.untrack(self)
            # Operations without a task (shared subscriptions) are not ended by the task
            # group: detach any the reader attached while the session was closing.
            self._cancel_operations()
            self.machine.connection_lost()
            await self._disconnected()

    def describe(self) -> list[str]:
        """One line per running operation, for the shutdown watchdog (any thread)."""
        return describe_operations(
            self.operations.values(), f"on a connection from {self.info.peer}"
        )

    def _cancel_operations(self, *, keep_queued: bool = False) -> None:
        for owner in list(self.operations.values()):
            owner.cancel(keep_queued=keep_queued)

    async def _shut(self, tg: anyio.abc.TaskGroup) -> None:
        # A close that flushes (shutdown, drain, Connection.close) sends the results the
        # operations had produced before the close frame; the others drop them.
        self._cancel_operations(keep_queued=self._state is SessionState.CLOSING)
        close = self._close
        if close is not None and self._state is not SessionState.LOST:
            self.outbox.close()
            if self._parked is not None:
                self._parked.set()  # a parked writer finds nothing more and ends
            if self._state is SessionState.CLOSING and self._writing:
                self._writer_done = anyio.Event()
                with anyio.move_on_after(CLOSE_FLUSH_TIMEOUT):
                    await self._writer_done.wait()
            with anyio.move_on_after(CLOSE_FLUSH_TIMEOUT, shield=True):
                await self.transport.close(close.code, close.reason)
        self.outbox.close()
        tg.cancel_scope.cancel()

    def _request_close(self, close: CloseConnection | None, *, flush: bool = True) -> None:
        """Close the socket with ``close`` (None: the peer is gone).

        ``flush=False`` skips sending what is still queued (the peer is not reading).
        """
        if self._state is not SessionState.OPEN:
            return
        if close is None:
            self._state = SessionState.LOST
        else:
            self._state = SessionState.CLOSING if flush else SessionState.CLOSING_NOW
            self._close = close
            if self.machine.state is not ConnectionState.CLOSED:
                self.machine.close(close.code, close.reason)
        self._reading.cancel()

    def _close_on_request(self, code: int, reason: str) -> None:
        """``Connection.close``: server code ends this connection on purpose."""
        self._request_close(CloseConnection(code, truncate_reason(reason)))

    async def _disconnected(self) -> None:
        hook = self.app.on_disconnect
        if hook is not None and self.context is not None:
            with anyio.CancelScope(shield=True):
                try:
                    await hook(self.context)
                except Exception:
                    logger.exception("on_disconnect raised")

    # --- reading -------------------------------------------------------------------

    async def _read_until_closed(self) -> None:
        """The session's own task reads: until a close is requested or the socket ends.

        The timers are deadlines on this read: the init timeout until ``connection_init``,
        then the expiry ``on_connect`` gave, if any.
        """
        self._deadline = anyio.current_time() + self.limits.connection_init_timeout
        while self._state is SessionState.OPEN:
            with anyio.CancelScope(deadline=self._deadline) as self._reading:
                await self._read_loop()
            if self._state is not SessionState.OPEN:
                return
            if anyio.current_time() < self._deadline:
                continue  # the deadline moved (the ack) after it had already fired
            if self.machine.state is ConnectionState.ACKNOWLEDGED:
                self._request_close(EXPIRED)
                return
            close = self.machine.init_timed_out()
            if close is not None:
                self._request_close(close)
                return
            self._deadline = math.inf

    async def _read_loop(self) -> None:
        try:
            while True:
                message = await self.transport.receive()
                if isinstance(message, str):
                    self.machine.receive_text(message)
                else:
                    self.machine.receive_bytes(message)
                for event in self.machine.events():
                    await self._dispatch(event)
        except ConnectionClosed:
            self._request_close(None)

    async def _dispatch(self, event: Event) -> None:
        if isinstance(event, Subscribe):
            await self._start(event.id, event.request)
        elif isinstance(event, Complete):
            owner = self.operations.pop(event.id, None)
            if owner is not None:
                owner.cancel()
            await self._send(Complete(event.id))
        elif isinstance(event, Ping):
            await self._send(Pong(event.payload))
        elif isinstance(event, ConnectionInit):
            # The init timeout guards only the wait for connection_init (P01, P02).
            self._deadline = self._reading.deadline = math.inf
            self.tg.start_soon(self._connect, event.payload)
        elif isinstance(event, BadMessage):
            await self.outbox.put(event.reply.encode("utf-8"))
        elif isinstance(event, CloseConnection):
            self._request_close(event)
        elif not isinstance(event, Pong):  # an unsolicited pong needs nothing
            raise AssertionError(f"unexpected protocol event {event!r}")

    async def _send(self, event: Event, owner: Owner | None = None) -> None:
        text = self.machine.send(event)
        if text is not None:
            await self.outbox.put(text.encode("utf-8"), owner=owner)

    # --- writing -------------------------------------------------------------------

    def _start_writer(self) -> None:
        """The outbox's ``on_ready``: start (or wake) the writer unless nothing can be sent."""
        if self._parked is not None:
            self._parked.set()
            return
        if self._writing or self._state in (SessionState.CLOSING_NOW, SessionState.LOST):
            return
        self._writing = True
        self.tg.start_soon(self._write_loop)

    async def _write_loop(self) -> None:
        """Drain the outbox. On a transport with ``write_now`` the writer ends when the
        outbox is empty (most frames never queue); on one without (ASGI, in-memory) every
        frame queues, so the writer parks instead of costing a new task per frame."""
        direct = self._direct
        try:
            while True:
                items = self.outbox.take()
                if items or (direct is not None and direct.needs_flush):
                    messages = [i.data for i in items if _still_wanted(i.owner)]
                    if direct is not None:
                        await direct.send_encoded(messages)  # after any part write_now left
                    else:
                        for message in messages:
                            await self.transport.send_text(message.decode("utf-8"))
                    continue
                if direct is not None or self._state is not SessionState.OPEN:
                    return
                self._parked = anyio.Event()
                try:
                    await self._parked.wait()
                finally:
                    self._parked = None
        except ConnectionClosed:
            self._request_close(None)
        finally:
            self._writing = False
            if self._writer_done is not None:
                self._writer_done.set()

    def _send_next_now(self, owner: Owner, payload: bytes) -> bytes | None:
        """Send a ``next`` straight to the socket when nothing is queued before it.

        Returns:
            None when nothing is left to do: it was sent, the id is no longer live, or the
            socket is gone (the close is requested); else the message, to be queued.
        """
        envelope = self.machine.next_envelope(owner.id)
        if envelope is None:
            return None
        direct = self._direct
        if direct is not None and not self._writing and not len(self.outbox):
            try:
                sent = direct.write_now(envelope, payload, b"}")
            except ConnectionClosed:
                self._request_close(None)
                return None
            if sent:
                if direct.needs_flush:
                    self._start_writer()  # the kernel took part of the frame: the rest next
                return None
        return envelope + payload + b"}"

    # --- connection_init -----------------------------------------------------------

    async def _connect(self, payload: Mapping[str, Any] | None) -> None:
        params = dict(payload or {})
        connection = Connection(self.machine.subprotocol, params, self._close_on_request, self)
        try:
            self.context = await self.app.make_context(self.info, params, connection=connection)
            ack = None
            if self.app.on_connect is not None:
                ack = await self.app.on_connect(self.context, params)
        except ConnectionRejected as rejected:
            frame, close = self.machine.reject(rejected.payload)
            await self._refuse(frame, close)
            return
        except Exception as error:
            logger.exception("on_connect raised")
            message = str(error) if self.app.settings.debug else "Internal server error"
            frame, close = self.machine.fail(message)
            await self._refuse(frame, close)
            return
        if self.machine.state is not ConnectionState.INITIALISING:
            return  # closed meanwhile (for example a second connection_init: 4429)
        self._deadline = math.inf
        if isinstance(ack, Accepted):
            if ack.expires_at is not None:
                remaining = ack.expires_at - time.time()
                self._deadline = anyio.current_time() + remaining
            ack = ack.payload
        self._reading.deadline = self._deadline
        ack_frame = self.machine.send(ConnectionAck(ack))
        if ack_frame is not None:
            self.outbox.push(ack_frame.encode("utf-8"))  # never waits: nothing overtakes it
        keep_alive = self.machine.send(KeepAlive()) if self.limits.keep_alive_interval > 0 else None
        if keep_alive is not None:  # legacy ``ka``: at once, then every interval
            self.outbox.push(keep_alive.encode("utf-8"))
            self.tg.start_soon(self._keep_alive)
        for event in self.machine.events():  # operations the protocol held until the ack
            await self._dispatch(event)

    async def _refuse(self, frame: str | None, close: CloseConnection) -> None:
        if frame is not None:
            await self.outbox.put(frame.encode("utf-8"))
        self._request_close(close)

    # --- timers --------------------------------------------------------------------

    async def _keep_alive(self) -> None:
        while True:
            await anyio.sleep(self.limits.keep_alive_interval)
            await self._send(KeepAlive())

    def _going_away(self) -> None:
        self._request_close(CloseConnection(CloseCode.GOING_AWAY, "Going away"))

    # --- operations ----------------------------------------------------------------

    async def _start(self, id: str, request: OperationRequest) -> None:
        if self._state is not SessionState.OPEN:
            return  # closing: the reader may still hand over messages read before
        if len(self.operations) >= self.limits.max_operations:
            await self._send(Error(id, TOO_MANY_OPERATIONS))
            return
        try:
            prepared = self.app.engine.prepare(request)
        except RequestError as error:
            await self._send(Error(id, error.errors))
            return
        owner = Owner(id, label=prepared.root_field or prepared.operation_type)
        self.operations[id] = owner
        if not self._attach_shared(owner, prepared):
            owner.scope = anyio.CancelScope()
            joiner = self._joiner(owner, prepared)
            self.tg.start_soon(self._run_operation, owner, owner.scope, prepared, joiner)

    def _joiner(self, owner: Owner, prepared: PreparedOperation) -> Joiner | None:
        """For a resuming subscriber of a shared field: its place in the hub's queue of
        joiners (it runs privately until it has caught up with the hub)."""
        server = self.app.server
        if server is None:
            return None
        return join_when_caught_up(
            server.fanout,
            owner,
            prepared,
            self.context,
            partial(self._shared_subscriber, owner),
            self.outbox.has_room,
        )

    async def _run_operation(
        self,
        owner: Owner,
        scope: anyio.CancelScope,
        prepared: PreparedOperation,
        joiner: Joiner | None = None,
    ) -> None:
        try:
            with scope:
                await self._operate(owner, prepared, joiner)
        except SlowConsumer:
            self._close_slow_consumer(owner)
        except Exception:
            logger.exception("operation %r failed", owner.id)
            await self._emit(owner, Error(owner.id, INTERNAL_ERROR))
        finally:
            if joiner is not None and not joiner.joined and owner.on_cancel is not None:
                owner.on_cancel()  # it ended before it joined: the hub forgets it
            if self.operations.get(owner.id) is owner and not (joiner and joiner.joined):
                del self.operations[owner.id]

    async def _operate(
        self, owner: Owner, prepared: PreparedOperation, joiner: Joiner | None = None
    ) -> None:
        engine = self.app.engine
        try:
            if prepared.operation_type == "subscription":
                await self._stream(owner, prepared, joiner)
                return
            result = await engine.execute(prepared, context=self.context, peer=self.info.peer)
        except (RequestError, SourceError) as error:
            if joiner is not None and joiner.joined:
                return  # the hub has the operation now: its private source is done
            await self._emit(owner, Error(owner.id, error.errors))
            return
        await self._emit_next(owner, encode_json_bytes(result))
        await self._emit(owner, Complete(owner.id))

    async def _stream(
        self, owner: Owner, prepared: PreparedOperation, joiner: Joiner | None = None
    ) -> None:
        policy = self._policy_for(prepared)
        subscription = self.app.engine.subscribe(prepared, context=self.context)
        async with subscription as results:
            async for result in results:
                if joiner is None:
                    await self._emit_next(owner, encode_json_bytes(result), policy)
                    continue
                if joiner.joined:
                    return  # the hub delivers from here on (and completes)
                joiner.last, joiner.emitting = results.event_id, True
                try:
                    await self._emit_next(owner, encode_json_bytes(result), policy)
                finally:
                    joiner.emitting = False
                if joiner.joined:
                    return  # joined while it emitted: nothing more from this source
        if joiner is None or not joiner.joined:
            await self._emit(owner, Complete(owner.id))

    def _attach_shared(self, owner: Owner, prepared: PreparedOperation) -> bool:
        """Attach a shared subscription to its hub, with no task of its own; False if unshared.

        The hub calls ``deliver`` for each event and ``ended`` once; cancelling the owner
        (``complete``, the connection closing) detaches it. Outside ``running()`` there is no
        hub: the operation runs its own source.
        """
        server = self.app.server
        if prepared.operation_type != "subscription" or server is None:
            return False
        key = self.app.engine.share_key(prepared)
        if key is None:
            return False
        subscriber = self._shared_subscriber(owner, prepared)
        hub = server.fanout.attach(key, prepared, self.context, subscriber)
        owner.on_cancel = partial(hub.detach, subscriber)
        return True

    def _shared_subscriber(self, owner: Owner, prepared: PreparedOperation) -> Subscriber:
        """How a hub delivers to ``owner`` and tells it that it ended."""
        policy = self._policy_for(prepared)

        def deliver(payload: bytes) -> bool:
            if owner.cancelled:
                return False
            message = self._send_next_now(owner, payload)
            if message is not None:
                try:
                    self.outbox.offer(message, owner=owner, policy=policy)
                except SlowConsumer:
                    self._close_slow_consumer(owner)
                    return False
            return self._state is not SessionState.LOST

        def ended(errors: tuple[FormattedError, ...] | None) -> None:
            if self.operations.get(owner.id) is owner:
                del self.operations[owner.id]
            if owner.cancelled:
                return  # completed by the client, or the connection is closing
            event = Complete(owner.id) if errors is None else Error(owner.id, errors)
            text = self.machine.send(event)
            if text is not None:
                self.outbox.push(text.encode("utf-8"))

        return Subscriber(deliver, ended)

    def _close_slow_consumer(self, owner: Owner) -> None:
        logger.warning("closing a slow consumer: %s, operation %r", self.info.peer, owner.id)
        self._request_close(
            CloseConnection(CloseCode.POLICY_VIOLATION, "Slow consumer"), flush=False
        )

    def _policy_for(self, prepared: PreparedOperation) -> SlowConsumerPolicy:
        settings = self.app.settings
        options = (
            self.app.schema.field_options(prepared.root_field) if prepared.root_field else None
        )
        if options is not None and options.slow_consumer is not None:
            return options.slow_consumer
        if options is not None and options.shared and prepared.resume_point is None:
            return settings.shared_slow_consumer  # a resuming one runs privately: backpressure
        return settings.slow_consumer

    async def _emit(self, owner: Owner, event: Event) -> None:
        """Render ``event`` for a live operation and queue it; nothing once it is cancelled."""
        if owner.cancelled:
            await anyio.lowlevel.checkpoint()
            return
        text = self.machine.send(event)
        if text is not None:
            await self.outbox.put(text.encode("utf-8"), owner=owner)

    async def _emit_next(
        self, owner: Owner, payload: bytes, policy: SlowConsumerPolicy = "block"
    ) -> None:
        """Send a ``next`` of a live operation at once if it can go, else queue it."""
        if owner.cancelled:
            # The operation's scope is cancelled: this checkpoint delivers it, even to a
            # source that never awaits (the fast path itself never does).
            await anyio.lowlevel.checkpoint()
            return
        message = self._send_next_now(owner, payload)
        if message is None:
            # A direct write never waits: without this, a source that never awaits would
            # hold the loop (every other connection, and this session's own reader, which
            # could not even read the client's complete) for as long as the kernel takes
            # bytes.
            await anyio.lowlevel.checkpoint()
            return
        await self.outbox.put(message, owner=owner, policy=policy, droppable=True)


def _still_wanted(owner: Owner | None) -> bool:
    """Whether a queued frame of ``owner`` is still to be sent."""
    return owner is None or not owner.cancelled or owner.keeps_queued
