"""The legacy graphql-ws subprotocol (apollographql/subscriptions-transport-ws), sans-IO.

Owns ``LegacyWSConnection``: client text in, events out; server events in, frame text out.
Must not import anyio or graphql (a test checks it).

Theory of operation. The legacy protocol forgives malformed input: a frame that is not JSON
is answered with ``connection_error`` and one of an unknown type with an ``error`` frame
("Invalid message type!"); both reach the driver as ``BadMessage(reply)`` and the socket
stays open. A message of a known type is looked up in ``RECEIVE_TRANSITIONS`` under the
current state: the entry is the state to move to, the close it earns (``start`` before
``connection_init`` closes 4401, unlike the reference, which ran it: an auth bypass), the
close it asks for (``connection_terminate``: 1000) or a soft answer (a second
``connection_init``). Then the message's own fields are checked; a malformed ``start`` gets
an ``error`` frame for its id, a non-object ``connection_init`` payload gets
``connection_error`` and a 1002 close (L03).

Held starts. The reference client sends ``connection_init`` and then its queued ``start``
messages at once, without waiting for ``connection_ack`` (the reference server waits for
``onConnect`` before running them). So a valid ``start`` received while INITIALISING is
*held*: nothing is yielded and its id is not live. A second ``start`` for a held id
replaces it (the newest wins, at its own place in arrival order); ``stop`` for a held id
just forgets it (nothing is yielded, nothing is owed). When the driver sends
``ConnectionAck`` the held starts are released in arrival order, each exactly as a
``start`` received after the ack: its id becomes live and ``Subscribe(id)`` is appended to
the pending events, so the driver must drain ``events()`` right after sending the ack.
``reject()``, ``fail()`` and every close drop them unseen. At most ``MAX_HELD_STARTS`` are
held; a ``start`` for another id beyond that gets an ``error`` frame "Too many operations"
for its id (what the driver answers past its operation limit) and the socket stays open:
an unauthenticated client can already earn one soft answer per frame with unknown types,
so this adds no amplification, while a close would make a reconnecting client with many
subscriptions loop.

Operation ids. ``start`` makes an id live; ``stop`` of a live id yields ``Complete(id)``
and the driver's answering ``send(Complete(id))`` renders the ``complete`` frame the client
is owed (L08). ``start`` with an id that is already live (L07) yields ``Complete(id)`` (stop
the old operation; its ``complete`` is owed) and then ``Subscribe(id)`` (the id is live
again, for the new operation); the owed ``complete`` is settled by the driver's next
``send(Complete(id))``, before the new operation's own. ``stop`` for an id that is neither
live nor held is ignored. ``error`` ends an operation without ``complete``. See
``_machine``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from ..errors import LocalProtocolError
from ._common import (
    BadMessage,
    CloseCode,
    CloseConnection,
    Complete,
    ConnectionAck,
    ConnectionInit,
    Error,
    Event,
    KeepAlive,
    Next,
    OperationRequest,
    Ping,
    Pong,
)
from ._machine import (
    ConnectionState,
    InvalidMessage,
    ServerConnection,
    decode_message,
    encode_payload,
    message_id,
    parse_operation_request,
    valid_utf8,
)

__all__ = ["MAX_HELD_STARTS", "RECEIVE_TRANSITIONS", "SUBPROTOCOL", "LegacyWSConnection"]

SUBPROTOCOL: Final = "graphql-ws"

CONNECTING: Final = ConnectionState.CONNECTING
INITIALISING: Final = ConnectionState.INITIALISING
ACKNOWLEDGED: Final = ConnectionState.ACKNOWLEDGED

INVALID_MESSAGE_TYPE: Final = "Invalid message type!"
INVALID_INIT_PAYLOAD: Final = "Invalid connection init payload"
TOO_MANY_HELD: Final = "Too many operations"
#: ``start`` messages held while ``on_connect`` runs (the default operation limit).
MAX_HELD_STARTS: Final = 100
#: ``connection_error`` payload when a rejection carries none: the reference client passes
#: the payload to its connection callback, which takes a falsy value for success.
DEFAULT_REJECTION: Final = {"message": "Forbidden"}

UNAUTHORIZED: Final = CloseConnection(CloseCode.UNAUTHORIZED, "Unauthorized")
TERMINATE: Final = CloseConnection(CloseCode.NORMAL)
REFUSED: Final = CloseConnection(CloseCode.INTERNAL_ERROR)
BINARY_FRAME: Final = CloseConnection(
    CloseCode.PROTOCOL_ERROR, "WebSocket message type must be text"
)


def connection_error(message: str) -> str:
    """The ``connection_error`` frame carrying ``{"message": message}``."""
    return encode_payload({"type": "connection_error", "payload": {"message": message}})


def operation_error(id: Any, message: str) -> str:
    """The ``error`` frame with ``{"message": message}``; ``id`` is kept if it is a string."""
    frame: dict[str, Any] = {"type": "error"}
    if isinstance(id, str):
        frame["id"] = id
    frame["payload"] = {"message": message}
    return encode_payload(frame)


SECOND_INIT: Final = BadMessage(connection_error("Too many initialisation requests"))

#: A client message's outcome: the state it moves to, the close it earns or asks for, or
#: the soft answer it gets.
Outcome = ConnectionState | CloseConnection | BadMessage

#: What a client message of each known type does in each open state. Unknown types are
#: answered with an ``error`` frame in every state. (In CLOSED nothing is received.)
RECEIVE_TRANSITIONS: Final[Mapping[ConnectionState, Mapping[str, Outcome]]] = {
    CONNECTING: {
        "connection_init": INITIALISING,
        "start": UNAUTHORIZED,
        "stop": CONNECTING,
        "connection_terminate": TERMINATE,
    },
    INITIALISING: {
        "connection_init": SECOND_INIT,
        "start": INITIALISING,  # held until the ack (see the module docstring)
        "stop": INITIALISING,
        "connection_terminate": TERMINATE,
    },
    ACKNOWLEDGED: {
        "connection_init": SECOND_INIT,
        "start": ACKNOWLEDGED,
        "stop": ACKNOWLEDGED,
        "connection_terminate": TERMINATE,
    },
}


class LegacyWSConnection(ServerConnection):
    """The server side of one legacy graphql-ws connection (see the module docstring)."""

    subprotocol = SUBPROTOCOL

    __slots__ = ("_held",)

    def __init__(self) -> None:
        super().__init__()
        #: Valid ``start`` requests received while INITIALISING, in arrival order.
        self._held: dict[str, OperationRequest] = {}

    def receive_bytes(self, data: bytes) -> None:
        """A binary frame: close 1002 "WebSocket message type must be text" (L06)."""
        if self._state is not ConnectionState.CLOSED:
            self._violation(BINARY_FRAME.code, BINARY_FRAME.reason)

    def _receive_message(self, text: str) -> None:
        try:
            message = decode_message(text)
        except InvalidMessage as invalid:
            self._pending.append(BadMessage(connection_error(invalid.reason)))
            return
        message_type = message.get("type") if isinstance(message, dict) else None
        outcome = (
            RECEIVE_TRANSITIONS[self._state].get(message_type)
            if isinstance(message_type, str)
            else None
        )
        if outcome is None:
            message_id_ = message.get("id") if isinstance(message, dict) else None
            self._pending.append(BadMessage(operation_error(message_id_, INVALID_MESSAGE_TYPE)))
        elif isinstance(outcome, CloseConnection):
            self._violation(outcome.code, outcome.reason)
        elif isinstance(outcome, BadMessage):
            self._pending.append(outcome)
        elif message_type == "connection_init":
            self._init(message, outcome)
        elif message_type == "start":
            self._start_operation(message)
        else:  # "stop"
            id = message.get("id")
            if isinstance(id, str) and id in self._live:
                self._cancel(id)
            elif isinstance(id, str):
                self._held.pop(id, None)

    def _init(self, message: Mapping[str, Any], new_state: ConnectionState) -> None:
        payload = message.get("payload")
        if payload is not None and not isinstance(payload, dict):
            self._pending.append(BadMessage(connection_error(INVALID_INIT_PAYLOAD)))
            self._violation(CloseCode.PROTOCOL_ERROR, INVALID_INIT_PAYLOAD)
            return
        self._state = new_state
        self._pending.append(ConnectionInit(payload))

    def _start_operation(self, message: Mapping[str, Any]) -> None:
        try:
            id = message_id(message, "start")
            request = parse_operation_request(message.get("payload"), "start")
        except InvalidMessage as invalid:
            self._pending.append(BadMessage(operation_error(message.get("id"), invalid.reason)))
            return
        if self._state is INITIALISING:
            self._hold(id, request)
        else:
            self._run(id, request)

    def _hold(self, id: str, request: OperationRequest) -> None:
        if id not in self._held and len(self._held) >= MAX_HELD_STARTS:
            self._pending.append(BadMessage(operation_error(id, TOO_MANY_HELD)))
            return
        self._held.pop(id, None)  # the newest takes its own place in arrival order
        self._held[id] = request

    def _run(self, id: str, request: OperationRequest) -> None:
        if id in self._live:
            self._cancel(id)
        self._start(id, request, '{"id":' + self._id_json(id) + ',"type":"data","payload":')

    def _release_held(self) -> None:
        held, self._held = self._held, {}
        for id, request in held.items():
            self._run(id, request)

    def _enter_closed(self) -> None:
        super()._enter_closed()
        self._held.clear()

    def _violation(self, code: int, reason: str) -> None:
        super()._violation(code, reason)
        self._held.clear()

    def send(self, event: Event) -> str | None:
        """Render a server event as the text of one frame.

        ``Next`` becomes ``data`` with its pre-encoded payload spliced in; ``Error`` sends
        its first error object; ``KeepAlive`` is ``ka``. ``ConnectionAck`` also releases
        the ``start`` messages held while INITIALISING: their ids become live and their
        ``Subscribe`` events are appended to the pending events, so the driver must send
        the ack frame and then drain ``events()`` at once.

        Returns:
            The frame text, or None when nothing goes on the wire: the machine is CLOSED,
            or the id is not live and no ``complete`` is owed for it.

        Raises:
            LocalProtocolError: ``Ping``/``Pong`` (this protocol has none), a client-only
                event, ``ConnectionAck`` outside INITIALISING, ``KeepAlive`` before the ack,
                an ``Error`` with no errors, or a payload orjson cannot encode.
        """
        if type(event) is Next:  # the fan-out hot path
            prefix = self._live.get(event.id)
            return None if prefix is None else prefix.decode("utf-8") + event.payload + "}"
        if isinstance(event, (Ping, Pong)):
            raise LocalProtocolError("the graphql-ws protocol has no ping or pong")
        if isinstance(event, Error) and not event.errors:
            raise LocalProtocolError("Error needs at least one error object")
        if self._check_sendable(event):
            return None
        if isinstance(event, Error):
            if self._live.pop(event.id, None) is None:
                return None
            error = encode_payload(event.errors[0])
            return f'{{"id":{self._id_json(event.id)},"type":"error","payload":{error}}}'
        if isinstance(event, Complete):
            if not self._settle_owed(event.id) and self._live.pop(event.id, None) is None:
                return None
            return f'{{"id":{self._id_json(event.id)},"type":"complete"}}'
        if isinstance(event, KeepAlive) and self._state is ACKNOWLEDGED:
            return '{"type":"ka"}'
        if isinstance(event, ConnectionAck) and self._state is INITIALISING:
            payload = "" if event.payload is None else f',"payload":{encode_payload(event.payload)}'
            self._state = ACKNOWLEDGED
            self._release_held()
            return f'{{"type":"connection_ack"{payload}}}'
        self._misuse(event)

    def reject(self, payload: Mapping[str, Any] | None) -> tuple[str | None, CloseConnection]:
        """``on_connect`` raised ``ConnectionRejected``: ``connection_error``, then 1011 (L02).

        Held ``start`` messages are dropped unseen.

        Args:
            payload: the ``connection_error`` payload; None sends ``{"message":"Forbidden"}``.

        Returns:
            (the ``connection_error`` frame, the close with an empty reason). If the machine
            is already CLOSED the frame is None and the close is informational.

        Raises:
            LocalProtocolError: the machine is CONNECTING or ACKNOWLEDGED.
        """
        if self._check_refusal("reject"):
            return None, REFUSED
        body = DEFAULT_REJECTION if payload is None else payload
        return encode_payload({"type": "connection_error", "payload": body}), REFUSED

    def fail(self, message: str) -> tuple[str | None, CloseConnection]:
        """``on_connect`` crashed: ``connection_error`` {message}, then 1011.

        Held ``start`` messages are dropped unseen.

        Args:
            message: the text the driver chose (already masked unless debug).

        Returns:
            (the ``connection_error`` frame, the close with an empty reason). If the machine
            is already CLOSED the frame is None and the close is informational.

        Raises:
            LocalProtocolError: the machine is CONNECTING or ACKNOWLEDGED.
        """
        if self._check_refusal("fail"):
            return None, REFUSED
        return connection_error(valid_utf8(message)), REFUSED
