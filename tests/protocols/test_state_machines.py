"""Model-based tests: hypothesis throws random client messages and driver actions at each
machine and compares every event and frame with a small model of the protocol tables.

Invariants checked on every step: the machine's state and live ids match the model; nothing
goes out for an id after it completed or errored (beyond the one ``complete`` the legacy
protocol owes a client ``stop``); a legacy ``start`` held before the ack runs only when the
ack is sent, in arrival order; nothing at all is yielded or sent after close; every close
the machine decides uses a code from its table; every close reason is at most 123 bytes of
valid UTF-8; the only exception is ``LocalProtocolError``, and only for genuine misuse.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, ClassVar

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, assume, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from anyql.errors import LocalProtocolError
from anyql.protocol import (
    BadMessage,
    CloseConnection,
    Complete,
    ConnectionAck,
    ConnectionInit,
    ConnectionState,
    Error,
    Event,
    KeepAlive,
    LegacyWSConnection,
    Next,
    OperationRequest,
    Ping,
    Pong,
    ServerConnection,
    Subscribe,
    TransportWSConnection,
)

CONNECTING = ConnectionState.CONNECTING
INITIALISING = ConnectionState.INITIALISING
ACKNOWLEDGED = ConnectionState.ACKNOWLEDGED
CLOSED = ConnectionState.CLOSED

#: Two ids so that they collide often; the long one makes the 4409 reason need cutting.
IDS = ["1", "ü" * 70]
ids = st.sampled_from(IDS)
payloads = st.none() | st.dictionaries(st.sampled_from(["a", "b"]), st.integers(0, 3), max_size=2)
queries = st.sampled_from(["{ a }", "", "subscription { s }"])
close_codes = st.sampled_from([1000, 1001, 1008, 1011, 4500, 999, 1005, 1006, 1015])
reasons = st.sampled_from(["", "Going away", "é" * 100, "x" * 200, "bad \ud800"])
NEXT_PAYLOAD = '{"data": {"n" : 1}}'

SERVER_CLOSE_CODES = frozenset({1000, 1001, 1008, 1011, 4500})
MALFORMED_TRANSPORT_WS = st.sampled_from(
    [
        {"type": "next", "id": "1", "payload": {}},
        {"type": "nope"},
        {"type": "subscribe", "id": "", "payload": {"query": ""}},
        {"type": "subscribe", "id": "1", "payload": {"query": 1}},
        {"type": "connection_init", "payload": []},
        {"type": "complete"},
        [],
        {},
    ]
)


class ProtocolModel(RuleBasedStateMachine):
    """What both machines share: the driver's side, and the model of ids and states."""

    machine_class: ClassVar[type[ServerConnection]]
    #: Close codes the machine may choose itself (server ``close()`` codes come on top).
    table_codes: ClassVar[frozenset[int]]

    def __init__(self) -> None:
        super().__init__()
        self.machine = self.machine_class()
        self.state = CONNECTING
        self.live: set[str] = set()
        self.owed: Counter[str] = Counter()
        self.unanswered: list[str] = []

    # --- model helpers --------------------------------------------------------------------

    def enter_closed(self) -> None:
        self.state = CLOSED
        self.live.clear()
        self.owed.clear()
        self.unanswered.clear()

    def check_close(self, close: CloseConnection, *, chosen_by_machine: bool = True) -> None:
        if chosen_by_machine:
            assert close.code in self.table_codes, close
        encoded = close.reason.encode("utf-8")  # raises on lone surrogates
        assert len(encoded) <= 123, close

    def receive_and_compare(self, text: str, expected: list[Event | type[Event]]) -> None:
        self.machine.receive_text(text)
        self.compare(list(self.machine.events()), expected)

    def compare(self, events: list[Event], expected: list[Event | type[Event]]) -> None:
        """Events must equal ``expected``; a class there matches any event of that class."""
        assert len(events) == len(expected), (events, expected)
        for event, want in zip(events, expected, strict=True):
            if isinstance(want, type):
                assert isinstance(event, want), (events, expected)
            else:
                assert event == want, (events, expected)
            if isinstance(event, CloseConnection):
                self.check_close(event)
        for event in events:
            if isinstance(event, Complete):
                self.unanswered.append(event.id)

    def expect_close(self, text: str, code: int) -> None:
        self.machine.receive_text(text)
        events = list(self.machine.events())
        self.enter_closed()
        assert len(events) == 1 and isinstance(events[0], CloseConnection), events
        assert events[0].code == code, events
        self.check_close(events[0])

    def end_by_server(self, id: str) -> bool:
        """The model of ``send(Complete(id))``: True if the owed answer was consumed."""
        if self.owed[id]:
            self.owed[id] -= 1
            return True
        return False

    @initialize(stage=st.sampled_from(["fresh", "initialising", "acknowledged"]))
    def start_somewhere(self, stage: str) -> None:
        """Most runs start past the handshake, where operations happen."""
        if stage != "fresh":
            self.receive_and_compare('{"type":"connection_init"}', [ConnectionInit()])
            self.state = INITIALISING
        if stage == "acknowledged":
            assert self.machine.send(ConnectionAck()) is not None
            self.state = ACKNOWLEDGED

    # --- driver actions shared by both protocols --------------------------------------------

    @rule(payload=payloads)
    def send_ack(self, payload: dict[str, int] | None) -> None:
        if self.state is INITIALISING:
            text = self.machine.send(ConnectionAck(payload))
            self.state = ACKNOWLEDGED
            expected: dict[str, Any] = {"type": "connection_ack"}
            if payload is not None:
                expected["payload"] = payload
            assert text is not None and json.loads(text) == expected
            self.compare(list(self.machine.events()), self.released_by_ack())
        elif self.state is CLOSED:
            assert self.machine.send(ConnectionAck(payload)) is None
        else:
            with pytest.raises(LocalProtocolError):
                self.machine.send(ConnectionAck(payload))

    @rule(id=ids)
    def send_next(self, id: str) -> None:
        text = self.machine.send(Next(id, NEXT_PAYLOAD))
        if id not in self.live:
            assert text is None
            return
        assert text is not None and NEXT_PAYLOAD in text
        assert json.loads(text) == {
            "id": id,
            "type": self.next_type,
            "payload": json.loads(NEXT_PAYLOAD),
        }

    @rule(id=ids)
    def send_error(self, id: str) -> None:
        errors = ({"message": "first"}, {"message": "second"})
        text = self.machine.send(Error(id, errors))
        if id not in self.live:
            assert text is None
            return
        self.live.discard(id)
        assert text is not None
        assert json.loads(text) == {
            "id": id,
            "type": "error",
            "payload": self.error_payload(errors),
        }

    @rule(id=ids)
    def send_complete(self, id: str) -> None:
        self.check_complete(id, self.machine.send(Complete(id)))

    @precondition(lambda self: bool(self.unanswered))
    @rule()
    def answer_a_client_complete(self) -> None:
        id = self.unanswered.pop(0)
        self.check_complete(id, self.machine.send(Complete(id)))

    @rule()
    def init_timer_fires(self) -> None:
        close = self.machine.init_timed_out()
        if self.state is CONNECTING:
            assert close is not None and close.code == 4408
            self.check_close(close)
            self.enter_closed()
        else:
            assert close is None

    @rule(kind=st.sampled_from(["server", "lost", "text", "binary", "protocol"]), data=st.data())
    def the_connection_ends(self, kind: str, data: st.DataObject) -> None:
        """Every way a connection ends, as one rule so that endings stay a small fraction."""
        if kind == "server":
            self.server_closes(data.draw(close_codes), data.draw(reasons))
        elif kind == "lost":
            self.machine.connection_lost()
            self.enter_closed()
        elif kind == "text":
            self.receive_random_text(data.draw(st.text(max_size=20)))
        elif kind == "binary":
            self.receive_binary()
        else:
            self.protocol_ending(data)

    def server_closes(self, code: int, reason: str) -> None:
        if code not in SERVER_CLOSE_CODES:
            with pytest.raises(LocalProtocolError):
                self.machine.close(code, reason)
            return
        close = self.machine.close(code, reason)
        assert close.code == code
        self.check_close(close, chosen_by_machine=False)
        self.enter_closed()

    @rule(rejected=st.booleans(), message=reasons)
    def on_connect_finishes_badly(self, rejected: bool, message: str) -> None:
        state = self.state
        if state in (CONNECTING, ACKNOWLEDGED):
            with pytest.raises(LocalProtocolError):
                self.machine.reject(None) if rejected else self.machine.fail(message)
            return
        frame, close = self.machine.reject(None) if rejected else self.machine.fail(message)
        self.check_close(close)
        if state is CLOSED:
            assert frame is None
        else:
            self.check_refusal_frame(frame)
        self.enter_closed()

    @rule(kind=st.sampled_from(["keep_alive", "ping", "misuse"]), data=st.data())
    def driver_extras(self, kind: str, data: st.DataObject) -> None:
        """Keep-alives, server pings and misuse, as one rule (they rarely matter)."""
        if kind == "keep_alive":
            self.send_keep_alive()
        elif kind == "ping":
            self.server_pings(data.draw(payloads), data.draw(st.booleans()))
        else:
            misuse = data.draw(
                st.sampled_from(
                    [ConnectionInit(), Subscribe("1", OperationRequest("{a}")), Error("1", ())]
                )
            )
            with pytest.raises(LocalProtocolError):
                self.machine.send(misuse)

    def receive_random_text(self, text: str) -> None:
        try:
            json.loads(text)
        except ValueError:
            pass
        else:
            assume(False)  # only text that is not JSON here
        if self.state is CLOSED:
            self.receive_and_compare(text, [])
        else:
            self.receive_invalid_json(text)

    def receive_binary(self) -> None:
        self.machine.receive_bytes(b'{"type":"connection_init"}')
        events = list(self.machine.events())
        if self.state is CLOSED:
            assert events == []
            return
        assert len(events) == 1 and isinstance(events[0], CloseConnection), events
        assert events[0].code == self.binary_close_code
        self.check_close(events[0])
        self.enter_closed()

    # --- invariants -----------------------------------------------------------------------

    @invariant()
    def state_matches(self) -> None:
        assert self.machine.state is self.state

    @invariant()
    def live_ids_match(self) -> None:
        for id in IDS:
            assert self.machine.is_live(id) == (id in self.live), id

    @invariant()
    def nothing_pending(self) -> None:
        assert list(self.machine.events()) == []

    # --- per-protocol hooks -----------------------------------------------------------------

    next_type: ClassVar[str]
    binary_close_code: ClassVar[int]

    def error_payload(self, errors: tuple[dict[str, str], ...]) -> Any:
        raise NotImplementedError

    def released_by_ack(self) -> list[Event | type[Event]]:
        """The events sending the ack yields (the model's ids are updated)."""
        return []

    def check_complete(self, id: str, text: str | None) -> None:
        raise NotImplementedError

    def check_refusal_frame(self, frame: str | None) -> None:
        raise NotImplementedError

    def receive_invalid_json(self, text: str) -> None:
        raise NotImplementedError

    def protocol_ending(self, data: st.DataObject) -> None:
        raise NotImplementedError

    def send_keep_alive(self) -> None:
        raise NotImplementedError

    def server_pings(self, payload: dict[str, int] | None, ping: bool) -> None:
        raise NotImplementedError


class TransportWSModel(ProtocolModel):
    machine_class = TransportWSConnection
    table_codes = frozenset({4400, 4401, 4403, 4408, 4409, 4429, 4500})
    next_type = "next"
    binary_close_code = 4400

    def error_payload(self, errors: tuple[dict[str, str], ...]) -> Any:
        return list(errors)

    def check_complete(self, id: str, text: str | None) -> None:
        if self.end_by_server(id):  # the answer to the client's complete: never echoed
            assert text is None
        elif id in self.live:
            self.live.discard(id)
            assert text is not None and json.loads(text) == {"id": id, "type": "complete"}
        else:
            assert text is None

    def check_refusal_frame(self, frame: str | None) -> None:
        assert frame is None

    def receive_invalid_json(self, text: str) -> None:
        self.expect_close(text, 4400)

    @rule(payload=payloads)
    def receive_init(self, payload: dict[str, int] | None) -> None:
        text = json.dumps({"type": "connection_init", "payload": payload})
        if self.state is CLOSED:
            self.receive_and_compare(text, [])
        elif self.state is CONNECTING:
            self.receive_and_compare(text, [ConnectionInit(payload)])
            self.state = INITIALISING
        else:
            self.expect_close(text, 4429)

    @rule(id=ids, query=queries)
    def receive_subscribe(self, id: str, query: str) -> None:
        text = json.dumps({"type": "subscribe", "id": id, "payload": {"query": query}})
        if self.state is CLOSED:
            self.receive_and_compare(text, [])
        elif self.state is not ACKNOWLEDGED:
            self.expect_close(text, 4401)
        elif id in self.live:
            self.expect_close(text, 4409)
        else:
            self.receive_and_compare(text, [Subscribe(id, OperationRequest(query))])
            self.live.add(id)

    @rule(id=ids)
    def receive_complete(self, id: str) -> None:
        text = json.dumps({"type": "complete", "id": id})
        if id in self.live:
            self.receive_and_compare(text, [Complete(id)])
            self.live.discard(id)
            self.owed[id] += 1
        else:
            self.receive_and_compare(text, [])

    @precondition(lambda self: bool(self.live))
    @rule(data=st.data())
    def complete_and_resubscribe_before_the_driver_answers(self, data: st.DataObject) -> None:
        """Two frames arrive before the driver drains: the owed answer must not end the new
        operation."""
        id = data.draw(st.sampled_from(sorted(self.live)))
        self.machine.receive_text(json.dumps({"type": "complete", "id": id}))
        subscribe = {"type": "subscribe", "id": id, "payload": {"query": "{ a }"}}
        self.receive_and_compare(
            json.dumps(subscribe), [Complete(id), Subscribe(id, OperationRequest("{ a }"))]
        )
        self.owed[id] += 1

    @rule(payload=payloads, ping=st.booleans())
    def receive_ping_or_pong(self, payload: dict[str, int] | None, ping: bool) -> None:
        kind = "ping" if ping else "pong"
        text = json.dumps({"type": kind, "payload": payload})
        if self.state is CLOSED:
            self.receive_and_compare(text, [])
            return
        self.receive_and_compare(text, [Ping(payload) if ping else Pong(payload)])
        if ping:  # the driver answers at once
            answer = self.machine.send(Pong(payload))
            expected: dict[str, Any] = {"type": "pong"}
            if payload is not None:
                expected["payload"] = payload
            assert answer is not None and json.loads(answer) == expected

    def protocol_ending(self, data: st.DataObject) -> None:
        self.receive_malformed(data.draw(MALFORMED_TRANSPORT_WS))

    def receive_malformed(self, message: Any) -> None:
        text = json.dumps(message)
        if self.state is CLOSED:
            self.receive_and_compare(text, [])
        else:
            self.expect_close(text, 4400)

    def send_keep_alive(self) -> None:
        assert self.machine.send(KeepAlive()) is None

    def server_pings(self, payload: dict[str, int] | None, ping: bool) -> None:
        text = self.machine.send(Ping(payload) if ping else Pong(payload))
        if self.state is CLOSED:
            assert text is None
        else:
            assert text is not None and json.loads(text)["type"] == ("ping" if ping else "pong")


class LegacyWSModel(ProtocolModel):
    machine_class = LegacyWSConnection
    table_codes = frozenset({1000, 1002, 1011, 4401, 4408})
    next_type = "data"
    binary_close_code = 1002

    def __init__(self) -> None:
        super().__init__()
        #: Starts held while INITIALISING: id -> query, in arrival order.
        self.held: dict[str, str] = {}

    def enter_closed(self) -> None:
        super().enter_closed()
        self.held.clear()

    def released_by_ack(self) -> list[Event | type[Event]]:
        released: list[Event | type[Event]] = [
            Subscribe(id, OperationRequest(query)) for id, query in self.held.items()
        ]
        self.live.update(self.held)  # nothing is live before the ack, so no restarts
        self.held.clear()
        return released

    def error_payload(self, errors: tuple[dict[str, str], ...]) -> Any:
        return errors[0]

    def check_complete(self, id: str, text: str | None) -> None:
        if self.end_by_server(id):  # the complete a client stop (or a restart) is owed
            assert text is not None and json.loads(text) == {"id": id, "type": "complete"}
        elif id in self.live:
            self.live.discard(id)
            assert text is not None and json.loads(text) == {"id": id, "type": "complete"}
        else:
            assert text is None

    def check_refusal_frame(self, frame: str | None) -> None:
        assert frame is not None and json.loads(frame)["type"] == "connection_error"

    def receive_invalid_json(self, text: str) -> None:
        self.receive_and_compare(text, [BadMessage])

    @rule(payload=payloads | st.sampled_from(["x", 1, []]))
    def receive_init(self, payload: Any) -> None:
        text = json.dumps({"type": "connection_init", "payload": payload})
        if self.state is CLOSED:
            self.receive_and_compare(text, [])
        elif self.state is not CONNECTING:
            self.receive_and_compare(text, [BadMessage])
        elif payload is None or isinstance(payload, dict):
            self.receive_and_compare(text, [ConnectionInit(payload)])
            self.state = INITIALISING
        else:
            self.receive_and_compare(text, [BadMessage, CloseConnection])
            self.enter_closed()

    @rule(id=ids, query=queries)
    def receive_start(self, id: str, query: str) -> None:
        text = json.dumps({"type": "start", "id": id, "payload": {"query": query}})
        subscribe = Subscribe(id, OperationRequest(query))
        if self.state is CLOSED:
            self.receive_and_compare(text, [])
        elif self.state is CONNECTING:
            self.expect_close(text, 4401)
        elif self.state is INITIALISING:  # held until the ack; the newest start wins
            self.receive_and_compare(text, [])
            self.held.pop(id, None)
            self.held[id] = query
        elif id in self.live:  # stop the old one (a complete is owed), start the new one
            self.receive_and_compare(text, [Complete(id), subscribe])
            self.owed[id] += 1
        else:
            self.receive_and_compare(text, [subscribe])
            self.live.add(id)

    @rule(id=ids)
    def receive_stop(self, id: str) -> None:
        text = json.dumps({"type": "stop", "id": id})
        if id in self.live:
            self.receive_and_compare(text, [Complete(id)])
            self.live.discard(id)
            self.owed[id] += 1
        else:  # a held start is forgotten: nothing is yielded, nothing is owed
            self.receive_and_compare(text, [])
            self.held.pop(id, None)

    @precondition(lambda self: bool(self.live))
    @rule(data=st.data())
    def stop_and_restart_before_the_driver_answers(self, data: st.DataObject) -> None:
        """Two frames arrive before the driver drains: one ``complete`` is owed."""
        id = data.draw(st.sampled_from(sorted(self.live)))
        self.machine.receive_text(json.dumps({"type": "stop", "id": id}))
        start = {"type": "start", "id": id, "payload": {"query": "{ a }"}}
        self.receive_and_compare(
            json.dumps(start), [Complete(id), Subscribe(id, OperationRequest("{ a }"))]
        )
        self.owed[id] += 1

    @precondition(lambda self: self.state is INITIALISING)
    @rule(
        burst=st.lists(
            st.tuples(st.sampled_from(["start", "start", "stop", "malformed"]), ids, queries),
            min_size=2,
            max_size=6,
        ),
        ack=payloads,
    )
    def client_races_the_ack(self, burst: list[tuple[str, str, str]], ack: Any) -> None:
        """The reference client sends its queued starts (and stops) right after
        ``connection_init``, before the ack; then ``on_connect`` approves."""
        for kind, id, query in burst:
            if kind == "start":
                self.receive_start(id, query)
            elif kind == "stop":
                self.receive_stop(id)
            else:
                self.receive_malformed_start(id)
        self.send_ack(ack)

    def protocol_ending(self, data: st.DataObject) -> None:
        self.receive_terminate()

    def receive_terminate(self) -> None:
        text = '{"type":"connection_terminate"}'
        if self.state is CLOSED:
            self.receive_and_compare(text, [])
        else:
            self.expect_close(text, 1000)

    @rule(
        message=st.sampled_from(
            [{}, {"type": "nope", "id": "1"}, [], {"type": "data", "id": "1"}, {"type": None}]
        )
    )
    def receive_unknown(self, message: Any) -> None:
        self.receive_and_compare(json.dumps(message), [] if self.state is CLOSED else [BadMessage])

    @rule(id=ids)
    def receive_malformed_start(self, id: str) -> None:
        text = json.dumps({"type": "start", "id": id, "payload": {"query": 1}})
        if self.state is CLOSED:
            self.receive_and_compare(text, [])
        elif self.state is CONNECTING:
            self.expect_close(text, 4401)
        else:  # a held or live operation with this id is untouched
            self.receive_and_compare(text, [BadMessage])

    @invariant()
    def held_only_while_initialising(self) -> None:
        assert not self.held or self.state is INITIALISING
        assert not self.live or self.state in (ACKNOWLEDGED, CLOSED)

    def send_keep_alive(self) -> None:
        if self.state is ACKNOWLEDGED:
            assert self.machine.send(KeepAlive()) == '{"type":"ka"}'
        elif self.state is CLOSED:
            assert self.machine.send(KeepAlive()) is None
        else:
            with pytest.raises(LocalProtocolError):
                self.machine.send(KeepAlive())

    def server_pings(self, payload: dict[str, int] | None, ping: bool) -> None:
        with pytest.raises(LocalProtocolError):
            self.machine.send(Ping(payload) if ping else Pong(payload))


SETTINGS = settings(
    max_examples=300,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
)

TestTransportWSMachine = TransportWSModel.TestCase
TestTransportWSMachine.settings = SETTINGS
TestLegacyWSMachine = LegacyWSModel.TestCase
TestLegacyWSMachine.settings = SETTINGS
