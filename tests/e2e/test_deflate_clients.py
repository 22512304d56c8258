"""permessage-deflate with independent clients: the npm ``ws`` package (under graphql-ws) and
Python's ``websockets`` (under gql) both offer it; the native server started with
``--permessage-deflate`` accepts, and every scenario works compressed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.servers import RunningServer, running_server
from tests.e2e.test_real_clients import check_graphql_ws_client, run_gql, run_node

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", params=["native-trio", "native-asyncio"])
def deflating(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    with running_server(request.param, options=["--permessage-deflate"]) as running:
        yield running


def test_graphql_ws_client_over_permessage_deflate(deflating: RunningServer, node: str) -> None:
    seen = run_node(node, "gtws_client.mjs", deflating.ws_url)
    assert seen["extensions"].startswith("permessage-deflate")
    check_graphql_ws_client(seen)


@pytest.mark.parametrize("subprotocol", ["graphql-transport-ws", "graphql-ws"])
def test_gql_client_over_permessage_deflate(deflating: RunningServer, subprotocol: str) -> None:
    values, answer, extensions = run_gql(deflating.ws_url, subprotocol)
    assert extensions.startswith("permessage-deflate")
    assert values == [{"count": 0}, {"count": 1}, {"count": 2}]
    assert answer == {"whoami": "gql"}
