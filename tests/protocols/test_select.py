"""Subprotocol choice and the machine for a subprotocol (docs/bad-inputs.md rows P34-P36, L12)."""

from __future__ import annotations

import pytest

from anyql.errors import LocalProtocolError
from anyql.protocol import (
    SUBPROTOCOLS,
    LegacyWSConnection,
    TransportWSConnection,
    select_subprotocol,
    server_connection_for,
)

BOTH = ("graphql-transport-ws", "graphql-ws")


def test_subprotocols_in_order_of_preference() -> None:
    assert SUBPROTOCOLS == ("graphql-transport-ws", "graphql-ws")


@pytest.mark.parametrize(
    "offered",
    [
        ["a", "graphql-transport-ws", "b"],
        ["a", " graphql-transport-ws ", "b"],
        ["a, graphql-transport-ws , b"],  # a raw header value
        ["graphql-transport-ws"],
    ],
)
def test_P34_picks_graphql_transport_ws_among_others(offered: list[str]) -> None:
    assert select_subprotocol(offered, BOTH) == "graphql-transport-ws"


@pytest.mark.parametrize(
    "offered",
    [["graphql-TransPort-ws"], ["graphql-transport-wsX"], ["xgraphql-ws"], ["GRAPHQL-WS"]],
)
def test_P34_matching_is_exact_and_case_sensitive(offered: list[str]) -> None:
    assert select_subprotocol(offered, BOTH) is None


@pytest.mark.parametrize("offered", [[], ["graphql"], ["json", "imaginary"], [""], [" , "]])
def test_P35_nothing_acceptable_gives_none(offered: list[str]) -> None:
    assert select_subprotocol(offered, BOTH) is None


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [
        (["graphql-transport-ws", "graphql-ws"], "graphql-transport-ws"),
        (["graphql-ws", "graphql-transport-ws"], "graphql-ws"),
        (["x", "graphql-ws", "graphql-transport-ws"], "graphql-ws"),
    ],
)
def test_P36_the_clients_order_decides(offered: list[str], chosen: str) -> None:
    assert select_subprotocol(offered, BOTH) == chosen
    assert select_subprotocol(offered, tuple(reversed(BOTH))) == chosen


def test_L12_a_disabled_protocol_is_never_chosen() -> None:
    only_new = ("graphql-transport-ws",)
    assert select_subprotocol(["graphql-ws"], only_new) is None
    assert select_subprotocol(["graphql-ws", "graphql-transport-ws"], only_new) == (
        "graphql-transport-ws"
    )
    assert select_subprotocol(["graphql-transport-ws"], ("graphql-ws",)) is None


def test_an_enabled_name_anyql_does_not_speak_is_never_chosen() -> None:
    assert select_subprotocol(["graphql-sse"], ("graphql-sse", *BOTH)) is None


def test_server_connection_for_builds_a_fresh_machine() -> None:
    first = server_connection_for("graphql-transport-ws")
    second = server_connection_for("graphql-transport-ws")
    assert type(first) is TransportWSConnection
    assert first is not second
    assert type(server_connection_for("graphql-ws")) is LegacyWSConnection
    for name in SUBPROTOCOLS:
        assert server_connection_for(name).subprotocol == name


def test_server_connection_for_an_unknown_subprotocol_raises() -> None:
    with pytest.raises(LocalProtocolError):
        server_connection_for("graphql-sse")
