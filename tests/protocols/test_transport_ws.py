"""The graphql-transport-ws machine, driven with messages only (docs/bad-inputs.md rows P01-P33)."""

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
    Next,
    OperationRequest,
    Ping,
    Pong,
    Subscribe,
    TransportWSConnection,
)
from anyql.protocol.transport_ws import RECEIVE_TRANSITIONS

from .helpers import QUERY, acknowledged_transport_ws, closes_with, frame, receive

BAD_REQUEST = CloseCode.BAD_REQUEST


def subscribe(id: Any = "1", payload: Any = QUERY) -> dict[str, Any]:
    return {"type": "subscribe", "id": id, "payload": payload}


def started(*ids: str) -> TransportWSConnection:
    """An acknowledged machine with operations ``ids`` live."""
    machine = acknowledged_transport_ws()
    for id in ids:
        assert receive(machine, subscribe(id)) == [Subscribe(id, OperationRequest("{ hello }"))]
    return machine


# --- connection initialisation ---------------------------------------------------------


def test_subprotocol_name() -> None:
    assert TransportWSConnection.subprotocol == "graphql-transport-ws"


def test_init_then_ack_moves_through_the_states() -> None:
    machine = TransportWSConnection()
    assert machine.state is ConnectionState.CONNECTING
    assert receive(machine, {"type": "connection_init", "payload": {"token": "t"}}) == [
        ConnectionInit({"token": "t"})
    ]
    assert machine.state is ConnectionState.INITIALISING
    assert frame(machine.send(ConnectionAck())) == {"type": "connection_ack"}
    assert machine.state is ConnectionState.ACKNOWLEDGED


def test_P01_no_init_closes_4408_on_timeout() -> None:
    machine = TransportWSConnection()
    close = machine.init_timed_out()
    assert close == CloseConnection(4408, "Connection initialisation timeout")
    assert machine.state is ConnectionState.CLOSED
    assert machine.send(ConnectionAck()) is None


def test_P02_no_4408_while_on_connect_runs() -> None:
    machine = TransportWSConnection()
    receive(machine, {"type": "connection_init"})
    assert machine.init_timed_out() is None
    assert frame(machine.send(ConnectionAck())) == {"type": "connection_ack"}
    assert machine.init_timed_out() is None


def test_P04_second_init_after_ack_closes_4429() -> None:
    machine = acknowledged_transport_ws()
    events = receive(machine, {"type": "connection_init"})
    closes_with(events, 4429, "Too many initialisation requests")
    assert machine.state is ConnectionState.CLOSED


def test_P04_second_init_while_on_connect_runs_closes_4429() -> None:
    machine = TransportWSConnection()
    receive(machine, {"type": "connection_init"})
    closes_with(receive(machine, {"type": "connection_init"}), 4429)
    # on_connect then resolves: the ack is dropped, the connection is already closing
    assert machine.send(ConnectionAck()) is None
    assert machine.reject(None) == (None, CloseConnection(4403, "Forbidden"))


def test_P05_rejection_closes_4403_forbidden() -> None:
    machine = TransportWSConnection()
    receive(machine, {"type": "connection_init"})
    assert machine.reject({"reason": "nope"}) == (None, CloseConnection(4403, "Forbidden"))
    assert machine.state is ConnectionState.CLOSED
    assert machine.send(ConnectionAck()) is None


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"message": "Token expired"}, "Token expired"),
        ({"message": "é" * 100}, "é" * 61),  # 122 bytes: no character split at 123
        ({"message": ""}, "Forbidden"),
        ({"message": 42}, "Forbidden"),
        (None, "Forbidden"),
    ],
)
def test_P05_a_rejection_message_becomes_the_close_reason(
    payload: dict[str, Any] | None, reason: str
) -> None:
    machine = TransportWSConnection()
    receive(machine, {"type": "connection_init"})
    assert machine.reject(payload) == (None, CloseConnection(4403, reason))


def test_P06_ack_payload_present_when_given() -> None:
    machine = TransportWSConnection()
    receive(machine, {"type": "connection_init"})
    assert frame(machine.send(ConnectionAck({"user": "ann"}))) == {
        "type": "connection_ack",
        "payload": {"user": "ann"},
    }


def test_P06_ack_payload_key_absent_when_none() -> None:
    machine = TransportWSConnection()
    receive(machine, {"type": "connection_init"})
    assert "payload" not in frame(machine.send(ConnectionAck(None)))


@pytest.mark.parametrize("payload", ["str", 1, [], True])
def test_P07_init_payload_not_an_object_closes_4400(payload: Any) -> None:
    machine = TransportWSConnection()
    events = receive(machine, {"type": "connection_init", "payload": payload})
    closes_with(events, BAD_REQUEST, "Invalid connection init payload")


@pytest.mark.parametrize(
    ("message", "params"),
    [
        ({"type": "connection_init"}, None),
        ({"type": "connection_init", "payload": None}, None),
        ({"type": "connection_init", "payload": {}}, {}),
        ({"type": "connection_init", "payload": {"a": [1]}}, {"a": [1]}),
    ],
)
def test_P07_init_payload_object_null_or_absent_is_accepted(message: Any, params: Any) -> None:
    assert receive(TransportWSConnection(), message) == [ConnectionInit(params)]


@pytest.mark.parametrize("init", [False, True])
def test_P08_subscribe_before_ack_closes_4401(init: bool) -> None:
    machine = TransportWSConnection()
    if init:
        receive(machine, {"type": "connection_init"})
    closes_with(receive(machine, subscribe()), 4401, "Unauthorized")
    assert not machine.is_live("1")


def test_P08_invalid_subscribe_before_ack_is_a_bad_request_first() -> None:
    closes_with(receive(TransportWSConnection(), subscribe(payload={})), BAD_REQUEST)


# --- invalid messages -----------------------------------------------------------------


@pytest.mark.parametrize("message_type", ["NOT_A_MESSAGE_TYPE", "start", "stop", "ka", "Ping"])
def test_P09_unknown_type_closes_4400(message_type: str) -> None:
    machine = acknowledged_transport_ws()
    close = closes_with(receive(machine, {"type": message_type}), BAD_REQUEST)
    assert message_type in close.reason


@pytest.mark.parametrize(
    "message", [{"notType": None}, {"type": None}, {"type": ""}, {"type": 0}, {"type": ["ping"]}]
)
def test_P10_missing_or_non_string_type_closes_4400(message: Any) -> None:
    closes_with(receive(acknowledged_transport_ws(), message), BAD_REQUEST)


@pytest.mark.parametrize("message", [[], "ping", 0, None, True, [{"type": "ping"}]])
def test_P10_message_not_an_object_closes_4400(message: Any) -> None:
    closes_with(receive(acknowledged_transport_ws(), message), BAD_REQUEST)


INVALID_SUBSCRIBES = [
    {"type": "subscribe", "id": "1"},
    subscribe(payload=None),
    subscribe(payload=[]),
    subscribe(payload=""),
    subscribe(payload={}),
    subscribe(payload={"query": 0}),
    subscribe(payload={"query": {}}),
    subscribe(payload={"query": None}),
    subscribe(payload={"query": "", "operationName": 0}),
    subscribe(payload={"query": "", "operationName": {}}),
    subscribe(payload={"query": "", "variables": ""}),
    subscribe(payload={"query": "", "variables": []}),
    subscribe(payload={"query": "", "extensions": 0}),
    subscribe(payload={"query": "", "extensions": ""}),
    subscribe(id=""),
    subscribe(id=0),
    subscribe(id=None),
    {"type": "subscribe", "payload": QUERY},
    {"type": "complete"},
    {"type": "complete", "id": ""},
    {"type": "complete", "id": 1},
    {"type": "ping", "payload": 0},
    {"type": "ping", "payload": "x"},
    {"type": "pong", "payload": []},
]


@pytest.mark.parametrize("message", INVALID_SUBSCRIBES, ids=json.dumps)
def test_P11_malformed_messages_close_4400(message: Any) -> None:
    machine = acknowledged_transport_ws()
    close = closes_with(receive(machine, message), BAD_REQUEST)
    assert close.reason  # always says why
    assert machine.state is ConnectionState.CLOSED


def test_P11_empty_query_is_a_valid_message() -> None:
    events = receive(acknowledged_transport_ws(), subscribe(payload={"query": ""}))
    assert events == [Subscribe("1", OperationRequest(""))]


def test_P11_full_payload_becomes_an_operation_request() -> None:
    query = "query Q($a: Int) { a(a: $a) }"
    payload = {
        "query": query,
        "operationName": "Q",
        "variables": {"a": 1},
        "extensions": {"persistedQuery": {"version": 1}},
    }
    [event] = receive(acknowledged_transport_ws(), subscribe(payload=payload))
    assert event == Subscribe(
        "1",
        OperationRequest(query, "Q", {"a": 1}, {"persistedQuery": {"version": 1}}),
    )


def test_P11_null_optional_fields_are_accepted() -> None:
    payload = {"query": "{a}", "operationName": None, "variables": None, "extensions": None}
    [event] = receive(acknowledged_transport_ws(), subscribe(payload=payload))
    assert event == Subscribe("1", OperationRequest("{a}"))


@pytest.mark.parametrize(
    "message",
    [
        {"type": "next", "id": "1", "payload": {"data": {}}},
        {"type": "error", "id": "1", "payload": [{"message": "x"}]},
        {"type": "connection_ack"},
    ],
)
def test_P12_server_only_types_close_4400(message: Any) -> None:
    machine = started("1")
    close = closes_with(receive(machine, message), BAD_REQUEST)
    assert message["type"] in close.reason


@pytest.mark.parametrize(
    "text", ["not valid json", "", "{", '{"type":"ping"', "NaN", '"\\ud800"', "[" * 5000]
)
def test_P13_text_that_is_not_json_closes_4400(text: str) -> None:
    closes_with(receive(acknowledged_transport_ws(), text), BAD_REQUEST)


def test_binary_frame_closes_4400() -> None:
    machine = acknowledged_transport_ws()
    machine.receive_bytes(b'{"type":"ping"}')
    closes_with(list(machine.events()), BAD_REQUEST, "WebSocket message type must be text")


# --- ping / pong ------------------------------------------------------------------------


@pytest.mark.parametrize("acknowledged", [False, True])
def test_P15_ping_is_handed_to_the_driver_even_before_init(acknowledged: bool) -> None:
    machine = acknowledged_transport_ws() if acknowledged else TransportWSConnection()
    assert receive(machine, {"type": "ping"}) == [Ping(None)]
    assert receive(machine, {"type": "ping", "payload": {"n": 1}}) == [Ping({"n": 1})]


def test_P15_pong_echoes_the_payload_or_has_no_payload_key() -> None:
    machine = TransportWSConnection()
    [ping] = receive(machine, {"type": "ping", "payload": {"n": 1}})
    assert isinstance(ping, Ping)
    assert frame(machine.send(Pong(ping.payload))) == {"type": "pong", "payload": {"n": 1}}
    [ping] = receive(machine, {"type": "ping", "payload": None})
    assert isinstance(ping, Ping)
    assert frame(machine.send(Pong(ping.payload))) == {"type": "pong"}


def test_P16_unsolicited_pong_is_yielded_and_changes_nothing() -> None:
    machine = started("1")
    assert receive(machine, {"type": "pong", "payload": {"t": 2}}) == [Pong({"t": 2})]
    assert machine.state is ConnectionState.ACKNOWLEDGED
    assert machine.is_live("1")


def test_server_ping_frames() -> None:
    machine = TransportWSConnection()
    assert frame(machine.send(Ping())) == {"type": "ping"}
    assert frame(machine.send(Ping({"a": 1}))) == {"type": "ping", "payload": {"a": 1}}


def test_keep_alive_is_nothing_on_this_protocol() -> None:
    assert acknowledged_transport_ws().send(KeepAlive()) is None


# --- operation ids -----------------------------------------------------------------------


def test_P17_duplicate_live_id_closes_4409() -> None:
    machine = started("1")
    closes_with(receive(machine, subscribe("1")), 4409, "Subscriber for 1 already exists")
    assert machine.state is ConnectionState.CLOSED
    assert machine.send(Next("1", "{}")) is None


@pytest.mark.parametrize("id", ["x" * 500, "é" * 200, "😀" * 100])
def test_P17_4409_reason_is_truncated_to_123_bytes(id: str) -> None:
    machine = started(id)
    close = closes_with(receive(machine, subscribe(id)), 4409)
    encoded = close.reason.encode("utf-8")
    assert len(encoded) <= 123
    assert close.reason.startswith("Subscriber for ")


def test_P19_duplicate_id_across_kinds_closes_4409() -> None:
    # a slow query keeps its id live exactly like a subscription does
    machine = started("q")
    assert frame(machine.send(Next("q", '{"data":{}}')))["type"] == "next"
    closes_with(receive(machine, subscribe("q", {"query": "subscription { s }"})), 4409)


@pytest.mark.parametrize("ending", ["client complete", "server complete", "server error"])
def test_P20_id_reused_after_it_ended_is_accepted(ending: str) -> None:
    machine = started("1")
    if ending == "client complete":
        assert receive(machine, {"type": "complete", "id": "1"}) == [Complete("1")]
        assert machine.send(Complete("1")) is None
    elif ending == "server complete":
        assert machine.send(Complete("1")) is not None
    else:
        assert machine.send(Error("1", ({"message": "boom"},))) is not None
    assert not machine.is_live("1")
    assert receive(machine, subscribe("1")) == [Subscribe("1", OperationRequest("{ hello }"))]
    assert machine.is_live("1")


def test_P21_error_frame_carries_every_error_and_ends_the_id() -> None:
    machine = started("1")
    errors = (
        {"message": "Cannot query field 'nope'.", "locations": [{"line": 1, "column": 3}]},
        {"message": "second"},
    )
    assert frame(machine.send(Error("1", errors))) == {
        "id": "1",
        "type": "error",
        "payload": list(errors),
    }
    assert not machine.is_live("1")
    assert machine.send(Complete("1")) is None  # no complete after an error
    assert machine.send(Next("1", "{}")) is None
    assert machine.state is ConnectionState.ACKNOWLEDGED


def test_P24_source_error_ends_only_that_id() -> None:
    machine = started("1", "2")
    assert frame(machine.send(Error("1", ({"message": "source failed"},))))["type"] == "error"
    assert machine.send(Complete("1")) is None
    assert frame(machine.send(Next("2", '{"data":{"s":1}}'))) == {
        "id": "2",
        "type": "next",
        "payload": {"data": {"s": 1}},
    }


def test_P26_single_result_is_next_then_complete() -> None:
    machine = started("1")
    assert frame(machine.send(Next("1", '{"data":{"hello":"world"}}'))) == {
        "id": "1",
        "type": "next",
        "payload": {"data": {"hello": "world"}},
    }
    assert frame(machine.send(Complete("1"))) == {"id": "1", "type": "complete"}
    assert machine.send(Complete("1")) is None  # only once


def test_next_splices_the_payload_text_verbatim() -> None:
    payload = '{ "data" : {"z":1,"a":[1.50, "\\u00e9"]},  "errors":null }'
    machine = started('we"ird\\id')
    text = machine.send(Next('we"ird\\id', payload))
    assert text is not None
    assert payload in text
    assert frame(text) == {"id": 'we"ird\\id', "type": "next", "payload": json.loads(payload)}


def test_P28_client_complete_is_yielded_and_never_echoed() -> None:
    machine = started("1")
    assert receive(machine, {"type": "complete", "id": "1"}) == [Complete("1")]
    assert not machine.is_live("1")
    assert machine.send(Next("1", '{"data":{}}')) is None  # an event in flight is dropped
    assert machine.send(Complete("1")) is None  # the driver's answer: nothing on the wire
    assert machine.send(Error("1", ({"message": "late"},))) is None


def test_P29_complete_while_the_operation_is_still_starting() -> None:
    machine = started("1")  # Subscribe yielded; the driver has not produced anything yet
    assert receive(machine, {"type": "complete", "id": "1"}) == [Complete("1")]
    assert machine.send(Complete("1")) is None
    assert machine.send(Next("1", '{"data":{}}')) is None  # the pending single result
    assert machine.send(Complete("1")) is None


@pytest.mark.parametrize("id", ["42", "__proto__", "toString", "constructor", "hasOwnProperty"])
def test_P30_complete_for_an_unknown_id_is_ignored(id: str) -> None:
    machine = started("1")
    assert receive(machine, {"type": "complete", "id": id}) == []
    assert machine.state is ConnectionState.ACKNOWLEDGED
    assert machine.is_live("1")


@pytest.mark.parametrize("id", ["__proto__", "toString", "constructor"])
def test_P30_prototype_names_are_ordinary_ids(id: str) -> None:
    machine = started(id)
    assert receive(machine, {"type": "complete", "id": id}) == [Complete(id)]
    assert receive(machine, subscribe(id)) == [Subscribe(id, OperationRequest("{ hello }"))]


def test_P30_complete_before_init_is_ignored() -> None:
    machine = TransportWSConnection()
    assert receive(machine, {"type": "complete", "id": "1"}) == []
    assert machine.state is ConnectionState.CONNECTING


def test_P31_on_connect_crash_closes_4500_with_the_message() -> None:
    machine = TransportWSConnection()
    receive(machine, {"type": "connection_init"})
    assert machine.fail("database down") == (None, CloseConnection(4500, "database down"))
    assert machine.state is ConnectionState.CLOSED


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("x" * 123, "x" * 123),
        ("x" * 124, "Internal server error"),
        ("é" * 61, "é" * 61),  # 122 bytes
        ("é" * 62, "Internal server error"),  # 124 bytes
        ("bad \ud800 surrogate", "bad ? surrogate"),
    ],
)
def test_P31_4500_reason_longer_than_123_bytes_is_generic(message: str, reason: str) -> None:
    machine = TransportWSConnection()
    receive(machine, {"type": "connection_init"})
    assert machine.fail(message) == (None, CloseConnection(4500, reason))


def test_P32_an_error_frees_the_id_reservation() -> None:
    machine = started("1")
    assert frame(machine.send(Error("1", ({"message": "Internal server error"},)))) == {
        "id": "1",
        "type": "error",
        "payload": [{"message": "Internal server error"}],
    }
    assert not machine.is_live("1")
    # No phantom reservation: the id starts a new operation; no 4409 "Subscriber for 1
    # already exists", nor any other close.
    assert receive(machine, subscribe("1")) == [Subscribe("1", OperationRequest("{ hello }"))]
    assert machine.is_live("1")
    assert machine.state is ConnectionState.ACKNOWLEDGED


def test_P33_nothing_is_sent_after_the_socket_went_away() -> None:
    machine = started("1")
    machine.connection_lost()
    assert machine.state is ConnectionState.CLOSED
    assert not machine.is_live("1")
    for event in (
        Next("1", "{}"),
        Error("1", ({"message": "late"},)),
        Complete("1"),
        Ping(),
        Pong(),
        KeepAlive(),
        ConnectionAck(),
    ):
        assert machine.send(event) is None
    assert receive(machine, {"type": "ping"}) == []


# --- ordering and bookkeeping -------------------------------------------------------------


def test_complete_then_resubscribe_before_the_driver_answers() -> None:
    """The driver's answer to the client's complete must not end the new operation."""
    machine = started("1")
    machine.receive_text(json.dumps({"type": "complete", "id": "1"}))
    machine.receive_text(json.dumps(subscribe("1")))
    events = list(machine.events())
    assert events == [Complete("1"), Subscribe("1", OperationRequest("{ hello }"))]
    assert machine.send(Complete("1")) is None  # answers the client's complete
    assert machine.is_live("1")  # the new operation is untouched
    assert frame(machine.send(Next("1", "{}")))["type"] == "next"
    assert frame(machine.send(Complete("1"))) == {"id": "1", "type": "complete"}


def test_events_are_drained_in_order_and_only_once() -> None:
    machine = TransportWSConnection()
    machine.receive_text('{"type":"ping"}')
    machine.receive_text('{"type":"connection_init"}')
    machine.receive_text('{"type":"pong"}')
    assert list(machine.events()) == [Ping(), ConnectionInit(), Pong()]
    assert list(machine.events()) == []


def test_nothing_is_yielded_after_a_violation() -> None:
    machine = started("1")
    machine.receive_text("garbage")
    machine.receive_text('{"type":"ping"}')
    machine.receive_bytes(b"x")
    closes_with(list(machine.events()), BAD_REQUEST)


def test_events_before_a_violation_are_kept() -> None:
    machine = TransportWSConnection()
    machine.receive_text('{"type":"ping"}')
    machine.receive_text("garbage")
    events = list(machine.events())
    assert events[0] == Ping()
    assert isinstance(events[1], CloseConnection)


@pytest.mark.parametrize(
    ("code", "reason"), [(1001, "Going away"), (1008, "Slow consumer"), (1000, "")]
)
def test_server_close(code: int, reason: str) -> None:
    machine = started("1")
    machine.receive_text('{"type":"ping"}')  # pending, not drained
    assert machine.close(code, reason) == CloseConnection(code, reason)
    assert machine.state is ConnectionState.CLOSED
    assert list(machine.events()) == []
    assert machine.send(Next("1", "{}")) is None


def test_server_close_reason_is_cut_to_123_bytes_of_utf8() -> None:
    close = TransportWSConnection().close(1011, "ü" * 100 + "\udcff")
    assert len(close.reason.encode("utf-8")) <= 123


@pytest.mark.parametrize("code", [999, 1004, 1005, 1006, 1015, 2000, 5000])
def test_server_close_with_a_code_not_for_the_wire_raises(code: int) -> None:
    with pytest.raises(LocalProtocolError):
        TransportWSConnection().close(code)


def test_init_timeout_after_close_is_none() -> None:
    machine = TransportWSConnection()
    machine.close(1001)
    assert machine.init_timed_out() is None


# --- misuse by the driver -----------------------------------------------------------------


@pytest.mark.parametrize("ready", ["connecting", "acknowledged"])
def test_ack_outside_initialising_raises(ready: str) -> None:
    machine = TransportWSConnection() if ready == "connecting" else acknowledged_transport_ws()
    with pytest.raises(LocalProtocolError):
        machine.send(ConnectionAck())


@pytest.mark.parametrize("call", ["reject", "fail"])
def test_refusing_without_a_pending_init_raises(call: str) -> None:
    for machine in (TransportWSConnection(), acknowledged_transport_ws()):
        with pytest.raises(LocalProtocolError):
            machine.reject(None) if call == "reject" else machine.fail("x")


@pytest.mark.parametrize(
    "event",
    [
        ConnectionInit(),
        Subscribe("1", OperationRequest("{a}")),
        BadMessage("x"),
        CloseConnection(1000),
    ],
)
def test_sending_a_client_event_raises(event: Any) -> None:
    with pytest.raises(LocalProtocolError):
        acknowledged_transport_ws().send(event)


def test_error_without_errors_raises() -> None:
    with pytest.raises(LocalProtocolError):
        started("1").send(Error("1", ()))


def test_unencodable_payload_raises_local_protocol_error() -> None:
    machine = TransportWSConnection()
    receive(machine, {"type": "connection_init"})
    with pytest.raises(LocalProtocolError):
        machine.send(ConnectionAck({"x": object()}))


def test_next_for_an_id_never_started_is_dropped() -> None:
    assert acknowledged_transport_ws().send(Next("7", "{}")) is None


def test_receive_table_covers_every_open_state_and_client_type() -> None:
    open_states = set(ConnectionState) - {ConnectionState.CLOSED}
    assert set(RECEIVE_TRANSITIONS) == open_states
    for row in RECEIVE_TRANSITIONS.values():
        assert set(row) == {"connection_init", "subscribe", "complete", "ping", "pong"}
