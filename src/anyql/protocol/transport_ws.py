"""The graphql-transport-ws subprotocol (enisdenjo/graphql-ws ``PROTOCOL.md``), sans-IO.

Owns ``TransportWSConnection``: client text in, events out; server events in, frame text
out. Must not import anyio or graphql (a test checks it).

Theory of operation. A client message is first validated on its own (valid JSON, an
object, a known client ``type``, the fields that type requires); any failure closes 4400
with a reason saying what was wrong. A valid message is then looked up in
``RECEIVE_TRANSITIONS`` under the current state: the entry is either the state to move to
or the close the message earns there (4401 for ``subscribe`` before the ack, 4429 for a
second ``connection_init``). Two rules depend on the operation id rather than the state:
``subscribe`` with a live id closes 4409, ``complete`` for an id that is not live is
ignored. The server's side is ``send()``: ``ConnectionAck`` is the one event that moves
the state (INITIALISING to ACKNOWLEDGED); ``Next``/``Error``/``Complete`` are rendered only
for live ids, and ``Error``/``Complete`` end the id. A client ``complete`` is never echoed:
the driver's ``send(Complete(id))`` that answers it returns None. The id bookkeeping shared
with the legacy machine is described in ``_machine``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from ..errors import LocalProtocolError
from ._common import (
    MAX_CLOSE_REASON_BYTES,
    CloseCode,
    CloseConnection,
    Complete,
    ConnectionAck,
    ConnectionInit,
    Error,
    Event,
    KeepAlive,
    Next,
    Ping,
    Pong,
    Subscribe,
    truncate_reason,
)
from ._machine import (
    ConnectionState,
    InvalidMessage,
    ServerConnection,
    decode_message,
    encode_payload,
    message_id,
    object_or_none,
    parse_operation_request,
    valid_utf8,
)

__all__ = ["RECEIVE_TRANSITIONS", "SUBPROTOCOL", "TransportWSConnection"]

SUBPROTOCOL: Final = "graphql-transport-ws"

CONNECTING: Final = ConnectionState.CONNECTING
INITIALISING: Final = ConnectionState.INITIALISING
ACKNOWLEDGED: Final = ConnectionState.ACKNOWLEDGED

UNAUTHORIZED: Final = CloseConnection(CloseCode.UNAUTHORIZED, "Unauthorized")
TOO_MANY_INITIALISATION_REQUESTS: Final = CloseConnection(
    CloseCode.TOO_MANY_INITIALISATION_REQUESTS, "Too many initialisation requests"
)
FORBIDDEN: Final = CloseConnection(CloseCode.FORBIDDEN, "Forbidden")
INTERNAL_SERVER_ERROR_REASON: Final = "Internal server error"

#: A client message's outcome: the state it moves to, or the close it earns.
Outcome = ConnectionState | CloseConnection

#: What each valid client message does in each open state. (In CLOSED nothing is received.)
RECEIVE_TRANSITIONS: Final[Mapping[ConnectionState, Mapping[str, Outcome]]] = {
    CONNECTING: {
        "connection_init": INITIALISING,
        "subscribe": UNAUTHORIZED,
        "complete": CONNECTING,
        "ping": CONNECTING,
        "pong": CONNECTING,
    },
    INITIALISING: {
        "connection_init": TOO_MANY_INITIALISATION_REQUESTS,
        "subscribe": UNAUTHORIZED,
        "complete": INITIALISING,
        "ping": INITIALISING,
        "pong": INITIALISING,
    },
    ACKNOWLEDGED: {
        "connection_init": TOO_MANY_INITIALISATION_REQUESTS,
        "subscribe": ACKNOWLEDGED,
        "complete": ACKNOWLEDGED,
        "ping": ACKNOWLEDGED,
        "pong": ACKNOWLEDGED,
    },
}

#: Types only a server sends; a client sending one closes 4400 (P12).
SERVER_ONLY_TYPES: Final = frozenset({"connection_ack", "next", "error"})


def _parse_init(message: Mapping[str, Any]) -> Event:
    payload = message.get("payload")
    if payload is not None and not isinstance(payload, dict):
        raise InvalidMessage("Invalid connection init payload")
    return ConnectionInit(payload)


def _parse_ping(message: Mapping[str, Any]) -> Event:
    return Ping(object_or_none(message.get("payload"), "ping 'payload'"))


def _parse_pong(message: Mapping[str, Any]) -> Event:
    return Pong(object_or_none(message.get("payload"), "pong 'payload'"))


def _parse_subscribe(message: Mapping[str, Any]) -> Event:
    id = message_id(message, "subscribe")
    return Subscribe(id, parse_operation_request(message.get("payload"), "subscribe"))


def _parse_complete(message: Mapping[str, Any]) -> Event:
    return Complete(message_id(message, "complete"))


#: How each client message type is validated into its event.
PARSERS: Final[Mapping[str, Callable[[Mapping[str, Any]], Event]]] = {
    "connection_init": _parse_init,
    "ping": _parse_ping,
    "pong": _parse_pong,
    "subscribe": _parse_subscribe,
    "complete": _parse_complete,
}


def parse_client_message(text: str) -> tuple[str, Event]:
    """Validate one client frame into its type and event.

    Raises:
        InvalidMessage: with the reason for the 4400 close.
    """
    message = decode_message(text)
    if not isinstance(message, dict):
        raise InvalidMessage("Message must be a JSON object")
    message_type = message.get("type")
    if message_type is None or message_type == "":
        raise InvalidMessage("Message has no 'type'")
    if not isinstance(message_type, str):
        raise InvalidMessage("Message 'type' must be a string")
    parser = PARSERS.get(message_type)
    if parser is None:
        if message_type in SERVER_ONLY_TYPES:
            raise InvalidMessage(f"A client may not send '{message_type}'")
        raise InvalidMessage(f"Unknown message type {encode_payload(message_type)}")
    return message_type, parser(message)


def _with_payload(message_type: str, payload: Mapping[str, Any] | None) -> str:
    if payload is None:
        return f'{{"type":"{message_type}"}}'
    return f'{{"type":"{message_type}","payload":{encode_payload(payload)}}}'


class TransportWSConnection(ServerConnection):
    """The server side of one graphql-transport-ws connection (see the module docstring)."""

    subprotocol = SUBPROTOCOL
    __slots__ = ()

    def receive_bytes(self, data: bytes) -> None:
        """A binary frame: close 4400 (the protocol is text only)."""
        if self._state is not ConnectionState.CLOSED:
            self._violation(CloseCode.BAD_REQUEST, "WebSocket message type must be text")

    def _receive_message(self, text: str) -> None:
        try:
            message_type, event = parse_client_message(text)
        except InvalidMessage as invalid:
            self._violation(CloseCode.BAD_REQUEST, invalid.reason)
            return
        outcome = RECEIVE_TRANSITIONS[self._state][message_type]
        if isinstance(outcome, CloseConnection):
            self._violation(outcome.code, outcome.reason)
            return
        self._state = outcome
        if isinstance(event, Subscribe):
            if event.id in self._live:
                reason = f"Subscriber for {event.id} already exists"
                self._violation(CloseCode.SUBSCRIBER_ALREADY_EXISTS, reason)
                return
            self._start(event.id, event.request, self._next_prefix(event.id))
        elif isinstance(event, Complete):
            if event.id in self._live:  # an unknown or finished id is ignored (P30)
                self._cancel(event.id)
        else:
            self._pending.append(event)

    @classmethod
    def _next_prefix(cls, id: str) -> str:
        return '{"id":' + cls._id_json(id) + ',"type":"next","payload":'

    def send(self, event: Event) -> str | None:
        """Render a server event as the text of one frame.

        ``Next`` splices its pre-encoded payload into the envelope without re-encoding it.

        Returns:
            The frame text, or None when nothing goes on the wire: the machine is CLOSED,
            the id is not live (the client completed it, or it already ended), the
            ``Complete`` answers the client's own ``complete``, or the event is
            ``KeepAlive`` (this protocol has none; the native server pings at the
            WebSocket level).

        Raises:
            LocalProtocolError: a client-only event, ``ConnectionAck`` outside
                INITIALISING, an ``Error`` with no errors, or a payload orjson cannot encode.
        """
        if type(event) is Next:  # the fan-out hot path
            prefix = self._live.get(event.id)
            return None if prefix is None else prefix.decode("utf-8") + event.payload + "}"
        if isinstance(event, Error) and not event.errors:
            raise LocalProtocolError("Error needs at least one error object")
        if self._check_sendable(event):
            return None
        if isinstance(event, Error):
            if self._live.pop(event.id, None) is None:
                return None
            errors = encode_payload(list(event.errors))
            return f'{{"id":{self._id_json(event.id)},"type":"error","payload":{errors}}}'
        if isinstance(event, Complete):
            if self._settle_owed(event.id) or self._live.pop(event.id, None) is None:
                return None
            return f'{{"id":{self._id_json(event.id)},"type":"complete"}}'
        if isinstance(event, Ping):
            return _with_payload("ping", event.payload)
        if isinstance(event, Pong):
            return _with_payload("pong", event.payload)
        if isinstance(event, KeepAlive):
            return None
        if isinstance(event, ConnectionAck):
            if self._state is not INITIALISING:
                self._misuse(event)
            self._state = ACKNOWLEDGED
            return _with_payload("connection_ack", event.payload)
        self._misuse(event)

    def reject(self, payload: Mapping[str, Any] | None) -> tuple[str | None, CloseConnection]:
        """``on_connect`` raised ``ConnectionRejected``: close 4403 (P05).

        This protocol has no frame to carry the payload, so its ``message``, when it is a
        string, becomes the close reason (cut to the 123 bytes a close frame can carry);
        otherwise the reason is "Forbidden".

        Args:
            payload: the rejection payload.

        Returns:
            (None, the close). If the machine is already CLOSED the close is informational.

        Raises:
            LocalProtocolError: the machine is CONNECTING or ACKNOWLEDGED.
        """
        self._check_refusal("reject")
        message = payload.get("message") if payload else None
        if isinstance(message, str) and message:
            return None, CloseConnection(CloseCode.FORBIDDEN, truncate_reason(message))
        return None, FORBIDDEN

    def fail(self, message: str) -> tuple[str | None, CloseConnection]:
        """``on_connect`` crashed: close 4500 with ``message`` (P31).

        Args:
            message: the reason the driver chose (already masked unless debug). One longer
                than 123 bytes of UTF-8 is replaced by "Internal server error".

        Returns:
            (None, the close). If the machine is already CLOSED the close is informational.

        Raises:
            LocalProtocolError: the machine is CONNECTING or ACKNOWLEDGED.
        """
        self._check_refusal("fail")
        message = valid_utf8(message)
        if len(message.encode("utf-8")) > MAX_CLOSE_REASON_BYTES:
            message = INTERNAL_SERVER_ERROR_REASON
        return None, CloseConnection(CloseCode.INTERNAL_SERVER_ERROR, message)
