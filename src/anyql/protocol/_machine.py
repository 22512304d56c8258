"""The skeleton both GraphQL-over-WebSocket server machines share.

Owns ``ConnectionState``, the ``ServerConnection`` base (pending-event queue, live-id
bookkeeping, the close paths that do not depend on the subprotocol), JSON decoding and
encoding of frames, and the validation of an operation request payload. Must not import
anyio or graphql: it is part of the sans-IO core (a test checks it).

Theory of operation (the per-subprotocol rules live in ``transport_ws`` and ``legacy_ws``):

* ``receive_text()`` decodes and validates one client message at once and appends the
  resulting events to a queue; ``events()`` drains the queue. So the machine's state always
  reflects every message received, even the ones whose events the driver has not yet seen.
* An operation id is *live* from the ``Subscribe`` event that starts it until the server
  sends ``Error`` or ``Complete`` for it, or the client completes it. ``send()`` renders
  ``Next``/``Error``/``Complete`` only for live ids, so nothing goes out for an id once it
  ended, whatever the driver's tasks still try to send.
* A client ``complete`` (legacy ``stop``) makes the id not live and yields ``Complete(id)``.
  The driver cancels the operation and must answer with ``send(Complete(id))``. Until it
  does, the machine counts that answer as *owed* for the id; the owed answer is consumed
  first, before any live operation that has since reused the id, and is rendered the way the
  subprotocol wants (graphql-transport-ws: nothing; legacy: a ``complete`` frame).
* Operations are told apart only by id: a driver must cancel an operation as soon as it
  dispatches the ``Complete`` event for it, before that operation can send again.
* Every violation yields ``CloseConnection`` and moves to ``CLOSED``; so do ``close()``,
  ``reject()``, ``fail()``, ``init_timed_out()`` and ``connection_lost()``. In ``CLOSED``
  nothing is received, nothing more is yielded, and ``send()`` returns None.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, NoReturn

import orjson

from ..errors import LocalProtocolError
from ._common import (
    BadMessage,
    CloseCode,
    CloseConnection,
    Complete,
    ConnectionInit,
    Event,
    OperationRequest,
    Subscribe,
    truncate_reason,
)

__all__ = [
    "ConnectionState",
    "InvalidMessage",
    "ServerConnection",
    "decode_message",
    "encode_payload",
    "parse_operation_request",
    "valid_utf8",
]


class ConnectionState(enum.Enum):
    """Where a GraphQL-over-WebSocket connection stands."""

    #: The socket is open and no ``connection_init`` has arrived yet.
    CONNECTING = "CONNECTING"
    #: ``connection_init`` arrived; the driver runs ``on_connect`` and has not yet sent
    #: ``ConnectionAck`` (or called ``reject()``/``fail()``).
    INITIALISING = "INITIALISING"
    #: ``connection_ack`` was sent: operations may run.
    ACKNOWLEDGED = "ACKNOWLEDGED"
    #: Closed by a violation, by the server, or because the socket went away. Final.
    CLOSED = "CLOSED"


#: Close codes a server may put on the wire (RFC 6455 section 7.4; 1004-1006 and 1015 never).
_SENDABLE_CLOSE_CODES = frozenset({*range(1000, 1004), *range(1007, 1015), *range(3000, 5000)})

#: The events a client produces; the server never sends them.
_CLIENT_ONLY = (ConnectionInit, Subscribe, BadMessage, CloseConnection)

INIT_TIMEOUT = CloseConnection(
    CloseCode.CONNECTION_INITIALISATION_TIMEOUT, "Connection initialisation timeout"
)


class InvalidMessage(Exception):
    """A client message that does not have the shape its type requires; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def valid_utf8(text: str) -> str:
    """Return ``text`` with anything UTF-8 cannot encode (lone surrogates) replaced by "?"."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", errors="replace").decode("utf-8")
    return text


def decode_message(text: str) -> Any:
    """Decode one frame's JSON text.

    Raises:
        InvalidMessage: the text is not JSON (orjson also refuses lone surrogates, numbers
            out of range and nesting deeper than 1024, so decoded strings are valid UTF-8).
    """
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        raise InvalidMessage("WebSocket message must be valid JSON") from None


def encode_payload(value: Any) -> str:
    """Encode ``value`` (given by the driver) as compact JSON text.

    Raises:
        LocalProtocolError: ``value`` is not JSON-serialisable.
    """
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError as error:
        raise LocalProtocolError(f"cannot encode a frame: {error}") from None


def object_or_none(value: Any, what: str) -> Mapping[str, Any] | None:
    """Return ``value`` if it is a JSON object or null (missing), else raise InvalidMessage."""
    if value is None or isinstance(value, dict):
        return value
    raise InvalidMessage(f"{what} must be an object or null")


def parse_operation_request(payload: Any, what: str) -> OperationRequest:
    """Validate a ``subscribe``/``start`` payload into an ``OperationRequest``.

    ``query`` must be a string (an empty one is valid here; it fails later as a GraphQL
    error); ``operationName`` a string or null; ``variables``/``extensions`` objects or null.

    Raises:
        InvalidMessage: naming the first offending field.
    """
    if not isinstance(payload, dict):
        raise InvalidMessage(f"{what} payload must be an object")
    query = payload.get("query")
    if not isinstance(query, str):
        raise InvalidMessage(f"{what} payload 'query' must be a string")
    operation_name = payload.get("operationName")
    if operation_name is not None and not isinstance(operation_name, str):
        raise InvalidMessage(f"{what} payload 'operationName' must be a string or null")
    return OperationRequest(
        query=query,
        operation_name=operation_name,
        variables=object_or_none(payload.get("variables"), f"{what} payload 'variables'"),
        extensions=object_or_none(payload.get("extensions"), f"{what} payload 'extensions'"),
    )


def message_id(message: Mapping[str, Any], what: str) -> str:
    """Return the message's ``id`` if it is a non-empty string, else raise InvalidMessage."""
    value = message.get("id")
    if not isinstance(value, str) or not value:
        raise InvalidMessage(f"{what} 'id' must be a non-empty string")
    return value


class ServerConnection(ABC):
    """The server side of one GraphQL-over-WebSocket connection, without I/O.

    Subclasses implement one subprotocol: how text becomes events (``_receive_message``) and
    how events become text (``send``). See the module docstring for the bookkeeping.
    """

    __slots__ = ("_live", "_owed", "_pending", "_state")

    #: The ``Sec-WebSocket-Protocol`` token this machine speaks.
    subprotocol: ClassVar[str]

    def __init__(self) -> None:
        self._state = ConnectionState.CONNECTING
        #: A list: the queue is short-lived and an empty list is a tenth of an empty deque.
        self._pending: list[Event] = []
        #: Live operation ids, each with its ``next``/``data`` frame prefix (id spliced in),
        #: as UTF-8: the fan-out path sends bytes.
        self._live: dict[str, bytes] = {}
        #: Client completes the driver has not yet answered with ``send(Complete(id))``.
        self._owed: dict[str, int] = {}

    @property
    def state(self) -> ConnectionState:
        """The connection's current state."""
        return self._state

    # --- receiving ------------------------------------------------------------------

    def receive_text(self, text: str) -> None:
        """Take one text frame from the client; its events become available from ``events()``.

        Ignored once the machine is ``CLOSED``.
        """
        if self._state is ConnectionState.CLOSED:
            return
        self._receive_message(text)

    @abstractmethod
    def receive_bytes(self, data: bytes) -> None:
        """Take one binary frame from the client (a violation in both subprotocols)."""

    @abstractmethod
    def _receive_message(self, text: str) -> None:
        """Decode, validate and apply one client message (the machine is not CLOSED)."""

    def events(self) -> Iterator[Event]:
        """Yield the pending events in the order the client caused them, removing them."""
        while self._pending:
            yield self._pending.pop(0)

    # --- sending ----------------------------------------------------------------------

    @abstractmethod
    def send(self, event: Event) -> str | None:
        """Render a server event as the text of one frame, or None when nothing goes out.

        Raises:
            LocalProtocolError: the event cannot be sent in this state (a bug in the driver).
        """

    @abstractmethod
    def reject(self, payload: Mapping[str, Any] | None) -> tuple[str | None, CloseConnection]:
        """``on_connect`` raised ``ConnectionRejected``: the frame to send first, and the close.

        Raises:
            LocalProtocolError: the machine is CONNECTING or ACKNOWLEDGED.
        """

    @abstractmethod
    def fail(self, message: str) -> tuple[str | None, CloseConnection]:
        """``on_connect`` crashed with ``message`` (already masked): frame first, and the close.

        Raises:
            LocalProtocolError: the machine is CONNECTING or ACKNOWLEDGED.
        """

    # --- server-side decisions --------------------------------------------------------

    def init_timed_out(self) -> CloseConnection | None:
        """The driver's init timer fired: close 4408 if no ``connection_init`` came (P01).

        Returns:
            The close to perform (the machine is then CLOSED), or None when
            ``connection_init`` already arrived (``on_connect`` may still run: P02) or the
            machine is already CLOSED.
        """
        if self._state is not ConnectionState.CONNECTING:
            return None
        self._enter_closed()
        return INIT_TIMEOUT

    def close(self, code: int, reason: str = "") -> CloseConnection:
        """Close from the server side (shutdown 1001, slow consumer 1008, ...).

        Pending events are dropped and the machine is CLOSED. Closing a CLOSED machine
        again is harmless.

        Args:
            code: a close code a server may send (1000-1003, 1007-1014, 3000-4999).
            reason: any text; it is cut to 123 bytes of UTF-8.

        Returns:
            The ``CloseConnection`` for the driver to carry out.

        Raises:
            LocalProtocolError: ``code`` may not be sent on the wire.
        """
        if code not in _SENDABLE_CLOSE_CODES:
            raise LocalProtocolError(f"close code {code} cannot be sent")
        self._enter_closed()
        return CloseConnection(code, truncate_reason(valid_utf8(reason)))

    def connection_lost(self) -> None:
        """The socket went away: drop pending events and every live id; the machine is CLOSED."""
        self._enter_closed()

    def is_live(self, id: str) -> bool:
        """Whether an operation with ``id`` is live (see the module docstring)."""
        return id in self._live

    def next_envelope(self, id: str) -> bytes | None:
        """The UTF-8 start of a ``Next`` frame for ``id``, or None when it is not live.

        ``envelope + payload + b"}"`` is the frame ``send(Next(id, payload))`` renders, for a
        payload already encoded as UTF-8 JSON: the fan-out path, which encodes an event
        once and sends it to many operations, calls this instead of ``send``.
        """
        return self._live.get(id)

    def _check_refusal(self, what: str) -> bool:
        """Guard ``reject()``/``fail()``: True when CLOSED (nothing to send any more).

        Raises:
            LocalProtocolError: the machine is not INITIALISING (no ``connection_init`` is
                being decided).
        """
        if self._state is ConnectionState.CLOSED:
            return True
        if self._state is not ConnectionState.INITIALISING:
            raise LocalProtocolError(f"{what}() needs state INITIALISING, not {self._state.name}")
        self._enter_closed()
        return False

    # --- helpers for subclasses -------------------------------------------------------

    def _enter_closed(self) -> None:
        self._state = ConnectionState.CLOSED
        self._pending.clear()
        self._live.clear()
        self._owed.clear()

    def _violation(self, code: int, reason: str) -> None:
        """Yield the close a client violation earns; nothing else follows it."""
        self._pending.append(CloseConnection(code, truncate_reason(reason)))
        self._state = ConnectionState.CLOSED
        self._live.clear()
        self._owed.clear()

    def _start(self, id: str, request: OperationRequest, next_prefix: str) -> None:
        self._live[id] = next_prefix.encode("utf-8")
        self._pending.append(Subscribe(id, request))

    def _cancel(self, id: str) -> None:
        """The client ended live operation ``id``: yield ``Complete`` and owe its answer."""
        del self._live[id]
        self._owed[id] = self._owed.get(id, 0) + 1
        self._pending.append(Complete(id))

    def _settle_owed(self, id: str) -> bool:
        """Consume one owed answer to a client complete for ``id``; False if none is owed."""
        count = self._owed.get(id, 0)
        if not count:
            return False
        if count == 1:
            del self._owed[id]
        else:
            self._owed[id] = count - 1
        return True

    def _check_sendable(self, event: Event) -> bool:
        """Common ``send()`` guard: True when the machine is CLOSED (send nothing).

        Raises:
            LocalProtocolError: ``event`` is one only a client produces.
        """
        if isinstance(event, _CLIENT_ONLY) or not isinstance(event, Event):
            raise LocalProtocolError(f"a server cannot send {event!r}")
        return self._state is ConnectionState.CLOSED

    def _misuse(self, event: Event) -> NoReturn:
        raise LocalProtocolError(f"cannot send {type(event).__name__} in state {self._state.name}")

    @staticmethod
    def _id_json(id: str) -> str:
        return orjson.dumps(id).decode()
