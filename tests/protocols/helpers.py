"""Helpers for the sans-IO protocol tests: feed client messages, read frames as JSON."""

from __future__ import annotations

import json
from typing import Any

from anyql.protocol import (
    CloseConnection,
    ConnectionAck,
    Event,
    LegacyWSConnection,
    ServerConnection,
    TransportWSConnection,
)

QUERY = {"query": "{ hello }"}


def receive(machine: ServerConnection, message: Any) -> list[Event]:
    """Send ``message`` (JSON-encoded unless it is already text) and drain the events."""
    machine.receive_text(message if isinstance(message, str) else json.dumps(message))
    return list(machine.events())


def frame(text: str | None) -> Any:
    """Decode a frame the machine produced (it must have produced one)."""
    assert text is not None, "expected a frame, got None"
    return json.loads(text)


def closes_with(events: list[Event], code: int, reason: str | None = None) -> CloseConnection:
    """Assert ``events`` is a single close with ``code`` (and ``reason``) and return it."""
    assert len(events) == 1, events
    close = events[0]
    assert isinstance(close, CloseConnection), events
    assert close.code == code, close
    if reason is not None:
        assert close.reason == reason, close
    return close


def acknowledged_transport_ws() -> TransportWSConnection:
    """A graphql-transport-ws machine past ``connection_init`` and ``connection_ack``."""
    machine = TransportWSConnection()
    receive(machine, {"type": "connection_init"})
    machine.send(ConnectionAck())
    return machine


def acknowledged_legacy_ws() -> LegacyWSConnection:
    """A legacy graphql-ws machine past ``connection_init`` and ``connection_ack``."""
    machine = LegacyWSConnection()
    receive(machine, {"type": "connection_init"})
    machine.send(ConnectionAck())
    return machine
