"""The legacy graphql-ws machine, driven with messages only (docs/bad-inputs.md rows L02-L11)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from anyql.errors import LocalProtocolError
from anyql.protocol import (
    BadMessage,
    CloseCode,
    CloseConnection,
    Complete,
    ConnectionAck,
    ConnectionInit,
    ConnectionState,
    Error,
    KeepAlive,
    LegacyWSConnection,
    Next,
    OperationRequest,
    Ping,
    Pong,
    Subscribe,
)
from anyql.protocol.legacy_ws import MAX_HELD_STARTS, RECEIVE_TRANSITIONS

from .helpers import QUERY, acknowledged_legacy_ws, closes_with, frame, receive

HELLO = OperationRequest("{ hello }")


def start(id: Any = "1", payload: Any = QUERY) -> dict[str, Any]:
    return {"type": "start", "id": id, "payload": payload}


def started(*ids: str) -> LegacyWSConnection:
    """An acknowledged machine with operations ``ids`` live."""
    machine = acknowledged_legacy_ws()
    for id in ids:
        assert receive(machine, start(id)) == [Subscribe(id, HELLO)]
    return machine


def bad_message_frame(events: list[Any]) -> Any:
    """Assert ``events`` is one soft error and return its decoded reply."""
    assert len(events) == 1, events
    assert isinstance(events[0], BadMessage), events
    return frame(events[0].reply)


def test_subprotocol_name() -> None:
    assert LegacyWSConnection.subprotocol == "graphql-ws"


# --- connection initialisation ---------------------------------------------------------


def test_init_ack_then_keep_alive() -> None:
    machine = LegacyWSConnection()
    assert receive(machine, {"type": "connection_init", "payload": {"token": "t"}}) == [
        ConnectionInit({"token": "t"})
    ]
    assert machine.state is ConnectionState.INITIALISING
    assert frame(machine.send(ConnectionAck())) == {"type": "connection_ack"}
    assert machine.state is ConnectionState.ACKNOWLEDGED


def test_ack_payload_is_allowed() -> None:
    machine = LegacyWSConnection()
    receive(machine, {"type": "connection_init"})
    assert frame(machine.send(ConnectionAck({"v": 1}))) == {
        "type": "connection_ack",
        "payload": {"v": 1},
    }


def test_L02_rejection_sends_connection_error_with_payload_then_1011() -> None:
    machine = LegacyWSConnection()
    receive(machine, {"type": "connection_init"})
    reply, close = machine.reject({"message": "bad token", "code": 7})
    assert frame(reply) == {
        "type": "connection_error",
        "payload": {"message": "bad token", "code": 7},
    }
    assert close == CloseConnection(1011, "")
    assert machine.state is ConnectionState.CLOSED
    assert machine.send(ConnectionAck()) is None


def test_L02_rejection_without_payload_still_sends_a_truthy_payload() -> None:
    machine = LegacyWSConnection()
    receive(machine, {"type": "connection_init"})
    reply, close = machine.reject(None)
    assert frame(reply) == {"type": "connection_error", "payload": {"message": "Forbidden"}}
    assert close == CloseConnection(1011, "")


def test_L02_rejection_after_the_socket_went_away_sends_nothing() -> None:
    machine = LegacyWSConnection()
    receive(machine, {"type": "connection_init"})
    machine.connection_lost()
    assert machine.reject({"m": 1}) == (None, CloseConnection(1011, ""))


def test_on_connect_crash_sends_connection_error_then_1011() -> None:
    machine = LegacyWSConnection()
    receive(machine, {"type": "connection_init"})
    reply, close = machine.fail("Internal server error")
    assert frame(reply) == {
        "type": "connection_error",
        "payload": {"message": "Internal server error"},
    }
    assert close == CloseConnection(1011, "")


@pytest.mark.parametrize("payload", ["gonna fail", 1, [], True])
def test_L03_init_payload_not_an_object_sends_connection_error_then_closes(payload: Any) -> None:
    machine = LegacyWSConnection()
    events = receive(machine, {"type": "connection_init", "payload": payload})
    assert len(events) == 2
    assert isinstance(events[0], BadMessage)
    assert frame(events[0].reply) == {
        "type": "connection_error",
        "payload": {"message": "Invalid connection init payload"},
    }
    assert events[1] == CloseConnection(CloseCode.PROTOCOL_ERROR, "Invalid connection init payload")
    assert machine.state is ConnectionState.CLOSED


def test_second_init_is_answered_softly() -> None:
    machine = acknowledged_legacy_ws()
    reply = bad_message_frame(receive(machine, {"type": "connection_init"}))
    assert reply["type"] == "connection_error"
    assert machine.state is ConnectionState.ACKNOWLEDGED


def test_init_timeout_closes_4408_only_before_init() -> None:
    machine = LegacyWSConnection()
    receive(machine, {"type": "connection_init"})
    assert machine.init_timed_out() is None
    assert LegacyWSConnection().init_timed_out() == CloseConnection(
        4408, "Connection initialisation timeout"
    )


@pytest.mark.parametrize("message", [start(), start(payload={"query": 1})], ids=["valid", "bad"])
def test_start_before_init_closes_4401(message: Any) -> None:
    machine = LegacyWSConnection()
    closes_with(receive(machine, message), 4401, "Unauthorized")
    assert not machine.is_live("1")
    assert machine.state is ConnectionState.CLOSED


# --- starts held while on_connect runs ----------------------------------------------------


def initialising() -> LegacyWSConnection:
    """A machine that received ``connection_init`` and has not yet acknowledged it."""
    machine = LegacyWSConnection()
    assert receive(machine, {"type": "connection_init"}) == [ConnectionInit()]
    return machine


def test_start_while_initialising_is_held_and_released_by_the_ack() -> None:
    machine = initialising()
    assert receive(machine, start("1")) == []
    assert receive(machine, start("2", {"query": "subscription { s }"})) == []
    assert not machine.is_live("1") and not machine.is_live("2")
    assert machine.state is ConnectionState.INITIALISING
    assert machine.send(ConnectionAck()) == '{"type":"connection_ack"}'
    assert list(machine.events()) == [
        Subscribe("1", HELLO),
        Subscribe("2", OperationRequest("subscription { s }")),
    ]
    assert machine.is_live("1") and machine.is_live("2")
    assert machine.send(Next("2", '{"data":{"s":1}}')) == (
        '{"id":"2","type":"data","payload":{"data":{"s":1}}}'
    )
    assert machine.send(Next("1", '{"data":{"hello":"w"}}')) == (
        '{"id":"1","type":"data","payload":{"data":{"hello":"w"}}}'
    )
    assert machine.send(Complete("1")) == '{"id":"1","type":"complete"}'
    assert machine.send(Complete("1")) is None


def test_held_start_data_prefix_escapes_the_id() -> None:
    id = 'a"\\ü'
    machine = initialising()
    receive(machine, start(id))
    machine.send(ConnectionAck({"v": 1}))
    assert list(machine.events()) == [Subscribe(id, HELLO)]
    assert machine.send(Next(id, "{}")) == '{"id":"a\\"\\\\ü","type":"data","payload":{}}'


def test_malformed_start_while_initialising_gets_an_error_and_is_not_held() -> None:
    machine = initialising()
    receive(machine, start("1"))
    reply = bad_message_frame(receive(machine, start("1", {"query": 1})))
    assert reply["type"] == "error" and reply["id"] == "1"
    assert machine.state is ConnectionState.INITIALISING
    machine.send(ConnectionAck())
    assert list(machine.events()) == [Subscribe("1", HELLO)]  # the valid one stays held


def test_stop_forgets_a_held_start() -> None:
    machine = initialising()
    receive(machine, start("1"))
    receive(machine, start("2"))
    assert receive(machine, {"type": "stop", "id": "1"}) == []
    machine.send(ConnectionAck())
    assert list(machine.events()) == [Subscribe("2", HELLO)]
    assert not machine.is_live("1")
    assert machine.send(Complete("1")) is None  # nothing is owed for a forgotten start


def test_holding_an_id_twice_keeps_the_newest_in_its_arrival_place() -> None:
    machine = initialising()
    receive(machine, start("1"))
    receive(machine, start("2"))
    assert receive(machine, start("1", {"query": "subscription { s }"})) == []
    machine.send(ConnectionAck())
    assert list(machine.events()) == [
        Subscribe("2", HELLO),
        Subscribe("1", OperationRequest("subscription { s }")),
    ]
    assert machine.send(Complete("1")) == '{"id":"1","type":"complete"}'
    assert machine.send(Complete("1")) is None  # the replaced start owes no complete


@pytest.mark.parametrize("refusal", ["reject", "fail"])
def test_held_starts_are_dropped_when_on_connect_refuses(refusal: str) -> None:
    machine = initialising()
    receive(machine, start("1"))
    if refusal == "reject":
        machine.reject(None)
    else:
        machine.fail("boom")
    assert list(machine.events()) == []
    assert machine.send(ConnectionAck()) is None
    assert list(machine.events()) == []
    assert not machine.is_live("1")


@pytest.mark.parametrize("ending", ["terminate", "binary", "server", "lost"])
def test_held_starts_are_dropped_on_close(ending: str) -> None:
    machine = initialising()
    receive(machine, start("1"))
    if ending == "terminate":
        closes_with(receive(machine, {"type": "connection_terminate"}), 1000)
    elif ending == "binary":
        machine.receive_bytes(b"x")
        closes_with(list(machine.events()), 1002)
    elif ending == "server":
        machine.close(1001, "Going away")
    else:
        machine.connection_lost()
    assert machine.state is ConnectionState.CLOSED
    assert machine.send(ConnectionAck()) is None
    assert list(machine.events()) == []
    assert not machine.is_live("1")


def test_at_most_MAX_HELD_STARTS_are_held_beyond_them_an_error() -> None:
    machine = initialising()
    for n in range(MAX_HELD_STARTS):
        assert receive(machine, start(str(n))) == []
    reply = bad_message_frame(receive(machine, start("late")))
    assert reply == {"type": "error", "id": "late", "payload": {"message": "Too many operations"}}
    assert receive(machine, start("0", {"query": "{ again }"})) == []  # a held id: replaced
    assert receive(machine, {"type": "stop", "id": "1"}) == []
    assert receive(machine, start("late")) == []  # room again
    assert machine.state is ConnectionState.INITIALISING
    machine.send(ConnectionAck())
    events = list(machine.events())
    ids = [str(n) for n in range(2, MAX_HELD_STARTS)] + ["0", "late"]
    assert [event.id for event in events if isinstance(event, Subscribe)] == ids
    assert len(events) == len(ids)
    assert events[-2] == Subscribe("0", OperationRequest("{ again }"))


def test_start_after_the_ack_is_not_held() -> None:
    machine = initialising()
    machine.send(ConnectionAck())
    assert receive(machine, start("1")) == [Subscribe("1", HELLO)]
    assert machine.is_live("1")


# --- soft errors ----------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["not json", "", "{", "[" * 5000])
def test_invalid_json_is_answered_with_connection_error(text: str) -> None:
    machine = started("1")
    reply = bad_message_frame(receive(machine, text))
    assert reply["type"] == "connection_error"
    assert isinstance(reply["payload"]["message"], str)
    assert machine.state is ConnectionState.ACKNOWLEDGED
    assert machine.is_live("1")


@pytest.mark.parametrize(
    ("message", "reply"),
    [
        ({}, {"type": "error", "payload": {"message": "Invalid message type!"}}),
        (
            {"type": "NotAProtocolMessage"},
            {"type": "error", "payload": {"message": "Invalid message type!"}},
        ),
        (
            {"type": "subscribe", "id": "3"},
            {"type": "error", "id": "3", "payload": {"message": "Invalid message type!"}},
        ),
        ([], {"type": "error", "payload": {"message": "Invalid message type!"}}),
        ({"type": 5, "id": 5}, {"type": "error", "payload": {"message": "Invalid message type!"}}),
        ({"type": "ka"}, {"type": "error", "payload": {"message": "Invalid message type!"}}),
    ],
)
def test_L05_unknown_messages_get_an_error_and_the_session_stays_usable(
    message: Any, reply: Any
) -> None:
    machine = acknowledged_legacy_ws()
    assert bad_message_frame(receive(machine, message)) == reply
    assert machine.state is ConnectionState.ACKNOWLEDGED
    assert receive(machine, start("1")) == [Subscribe("1", HELLO)]


def test_L05_unknown_messages_before_init_are_soft_too() -> None:
    machine = LegacyWSConnection()
    bad_message_frame(receive(machine, {}))
    assert machine.state is ConnectionState.CONNECTING


def test_L06_binary_frame_closes_1002() -> None:
    machine = acknowledged_legacy_ws()
    machine.receive_bytes(b"\x00")
    closes_with(list(machine.events()), 1002, "WebSocket message type must be text")
    assert machine.state is ConnectionState.CLOSED


@pytest.mark.parametrize(
    "message",
    [
        {"type": "start", "payload": QUERY},
        start(id=""),
        start(id=7),
        start(payload=None),
        start(payload={}),
        start(payload={"query": 1}),
        start(payload={"query": "{a}", "variables": "x"}),
        start(payload={"query": "{a}", "operationName": 1}),
    ],
    ids=json.dumps,
)
def test_malformed_start_gets_an_error_for_its_id(message: Any) -> None:
    machine = acknowledged_legacy_ws()
    reply = bad_message_frame(receive(machine, message))
    assert reply["type"] == "error"
    assert isinstance(reply["payload"]["message"], str)
    if isinstance(message.get("id"), str):
        assert reply["id"] == message["id"]
    else:
        assert "id" not in reply
    assert machine.state is ConnectionState.ACKNOWLEDGED
    assert not machine.is_live(str(message.get("id")))


# --- operations -------------------------------------------------------------------------------


def test_start_becomes_an_operation_request() -> None:
    payload = {"query": "query Q { a }", "operationName": "Q", "variables": {"x": None}}
    [event] = receive(acknowledged_legacy_ws(), start("9", payload))
    assert event == Subscribe("9", OperationRequest("query Q { a }", "Q", {"x": None}))


def test_query_is_data_then_complete() -> None:
    machine = started("1")
    assert frame(machine.send(Next("1", '{"data":{"hello":"world"}}'))) == {
        "id": "1",
        "type": "data",
        "payload": {"data": {"hello": "world"}},
    }
    assert frame(machine.send(Complete("1"))) == {"id": "1", "type": "complete"}
    assert machine.send(Complete("1")) is None
    assert machine.send(Next("1", "{}")) is None


def test_data_splices_the_payload_text_verbatim() -> None:
    payload = '{"data":{"b":2,"a":1}, "errors":[ {"message":"x"} ]}'
    machine = started("ï")
    text = machine.send(Next("ï", payload))
    assert text is not None
    assert payload in text
    assert frame(text)["payload"] == json.loads(payload)


def test_L07_start_reusing_a_live_id_stops_the_old_and_starts_the_new() -> None:
    machine = started("1")
    new = OperationRequest("subscription { s }")
    events = receive(machine, start("1", {"query": "subscription { s }"}))
    assert events == [Complete("1"), Subscribe("1", new)]
    assert machine.is_live("1")
    # the driver cancels the old operation and answers the Complete event: the old one's
    # complete frame
    assert frame(machine.send(Complete("1"))) == {"id": "1", "type": "complete"}
    assert machine.is_live("1")  # the new operation is untouched
    assert frame(machine.send(Next("1", '{"data":{"s":1}}')))["type"] == "data"
    assert frame(machine.send(Complete("1"))) == {"id": "1", "type": "complete"}
    assert machine.send(Complete("1")) is None


def test_L08_stop_yields_complete_and_the_answer_is_a_complete_frame() -> None:
    machine = started("1")
    assert receive(machine, {"type": "stop", "id": "1"}) == [Complete("1")]
    assert not machine.is_live("1")
    assert machine.send(Next("1", "{}")) is None  # in-flight data is dropped
    assert frame(machine.send(Complete("1"))) == {"id": "1", "type": "complete"}
    assert machine.send(Complete("1")) is None  # exactly one


@pytest.mark.parametrize("id", ["2", "__proto__", "constructor", 1, None])
def test_stop_for_an_unknown_id_is_ignored(id: Any) -> None:
    machine = started("1")
    assert receive(machine, {"type": "stop", "id": id}) == []
    assert machine.is_live("1")


def test_stop_then_start_with_the_same_id_before_the_driver_answers() -> None:
    machine = started("1")
    machine.receive_text(json.dumps({"type": "stop", "id": "1"}))
    machine.receive_text(json.dumps(start("1")))
    assert list(machine.events()) == [Complete("1"), Subscribe("1", HELLO)]
    assert frame(machine.send(Complete("1"))) == {"id": "1", "type": "complete"}
    assert machine.is_live("1")


@pytest.mark.parametrize("acknowledged", [False, True])
def test_L09_connection_terminate_closes_1000(acknowledged: bool) -> None:
    machine = started("1") if acknowledged else LegacyWSConnection()
    closes_with(receive(machine, {"type": "connection_terminate"}), 1000, "")
    assert machine.state is ConnectionState.CLOSED
    assert machine.send(Next("1", "{}")) is None
    assert machine.send(Complete("1")) is None


def test_L10_error_payload_is_a_single_error_object() -> None:
    machine = started("1")
    errors = (
        {"message": "Syntax Error: Expected Name.", "locations": [{"line": 1, "column": 3}]},
        {"message": "ignored"},
    )
    assert frame(machine.send(Error("1", errors))) == {
        "id": "1",
        "type": "error",
        "payload": errors[0],
    }
    assert not machine.is_live("1")
    assert machine.send(Complete("1")) is None  # no complete after an error


def test_L11_keep_alive_after_the_ack() -> None:
    machine = acknowledged_legacy_ws()
    assert frame(machine.send(KeepAlive())) == {"type": "ka"}
    assert frame(machine.send(KeepAlive())) == {"type": "ka"}


@pytest.mark.parametrize("init", [False, True])
def test_L11_keep_alive_before_the_ack_raises(init: bool) -> None:
    machine = LegacyWSConnection()
    if init:
        receive(machine, {"type": "connection_init"})
    with pytest.raises(LocalProtocolError):
        machine.send(KeepAlive())


def test_keep_alive_after_close_is_none() -> None:
    machine = acknowledged_legacy_ws()
    machine.close(1001, "Going away")
    assert machine.send(KeepAlive()) is None


# --- misuse by the driver -------------------------------------------------------------------


@pytest.mark.parametrize("event", [Ping(), Pong(), Pong({"a": 1})])
def test_ping_and_pong_do_not_exist_here(event: Any) -> None:
    with pytest.raises(LocalProtocolError):
        acknowledged_legacy_ws().send(event)


def test_ack_twice_raises() -> None:
    machine = acknowledged_legacy_ws()
    with pytest.raises(LocalProtocolError):
        machine.send(ConnectionAck())


def test_reject_without_a_pending_init_raises() -> None:
    with pytest.raises(LocalProtocolError):
        LegacyWSConnection().reject(None)
    with pytest.raises(LocalProtocolError):
        acknowledged_legacy_ws().fail("x")


def test_sending_a_client_event_raises() -> None:
    with pytest.raises(LocalProtocolError):
        acknowledged_legacy_ws().send(Subscribe("1", HELLO))


def test_receive_table_covers_every_open_state_and_client_type() -> None:
    open_states = set(ConnectionState) - {ConnectionState.CLOSED}
    assert set(RECEIVE_TRANSITIONS) == open_states
    for row in RECEIVE_TRANSITIONS.values():
        assert set(row) == {"connection_init", "start", "stop", "connection_terminate"}
