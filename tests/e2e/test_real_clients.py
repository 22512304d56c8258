"""Protocol behaviour proven with independent clients against every real server kind."""

from __future__ import annotations

import asyncio
import json
import subprocess
from typing import Any

import pytest

from tests.e2e.conftest import NODE_DIR
from tests.e2e.servers import RunningServer

pytestmark = pytest.mark.e2e


def run_node(node: str, script: str, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [node, str(NODE_DIR / script), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    assert "crash" not in result, result["crash"]
    return result


def test_graphql_ws_client(server: RunningServer, node: str) -> None:
    seen = run_node(node, "gtws_client.mjs", server.ws_url)
    check_graphql_ws_client(seen)
    # The npm ws package offers permessage-deflate. The native server declines unless
    # enabled; hypercorn always accepts (tests/e2e/test_deflate_clients.py).
    if server.kind.startswith("native"):
        assert seen["extensions"] == ""
    else:
        assert seen["extensions"].startswith("permessage-deflate")


def check_graphql_ws_client(seen: dict[str, Any]) -> None:
    """What gtws_client.mjs must have observed against tests.e2e.app:app."""
    assert seen["subscription"] == {
        "values": [{"data": {"count": i}} for i in range(5)],
        "completed": True,
    }
    assert seen["query"] == {"values": [{"data": {"hello": "Hello ws"}}], "completed": True}
    assert seen["mutation"] == {"values": [{"data": {"send": True}}], "completed": True}
    assert seen["connectionParams"]["values"] == [{"data": {"whoami": "secret-token"}}]
    assert seen["disposed"]["values"] == [{"data": {"count": i}} for i in range(3)]
    assert seen["afterDispose"]["values"] == [{"data": {"hello": "Hello again"}}]
    assert "nope" in seen["validationError"]["error"]
    assert seen["sourceError"]["values"] == [{"data": {"boom": 0}}, {"data": {"boom": 1}}]
    assert "source failed on purpose" in seen["sourceError"]["error"]
    # on_connect's ConnectionRejected({"message": ...}) reaches the client as the reason
    assert seen["rejected"] == {"code": 4403, "reason": "rejected on purpose"}


def test_subscriptions_transport_ws_client(server: RunningServer, node: str) -> None:
    seen = run_node(node, "legacy_client.cjs", server.ws_url)
    assert seen["subscription"] == {
        "values": [{"data": {"count": i}} for i in range(4)],
        "completed": True,
    }
    assert seen["unsubscribed"]["values"] == [{"data": {"count": 0}}, {"data": {"count": 1}}]
    assert seen["query"] == {"values": [{"data": {"hello": "Hello legacy"}}], "completed": True}
    assert seen["connectionParams"]["values"] == [{"data": {"whoami": "legacy-token"}}]


@pytest.mark.parametrize("subprotocol", ["graphql-transport-ws", "graphql-ws"])
def test_gql_client(server: RunningServer, subprotocol: str) -> None:
    values, answer, _extensions = run_gql(server.ws_url, subprotocol)
    assert values == [{"count": 0}, {"count": 1}, {"count": 2}]
    assert answer == {"whoami": "gql"}


def run_gql(url: str, subprotocol: str) -> tuple[list[Any], Any, str]:
    """Subscribe and query with gql (websockets underneath, which offers permessage-deflate).

    Returns:
        The subscription's values, the query's answer and the agreed extensions header.
    """
    from gql import Client, gql
    from gql.transport.websockets import WebsocketsTransport

    async def scenario() -> tuple[list[Any], Any, str]:
        transport = WebsocketsTransport(
            url=url, subprotocols=[subprotocol], init_payload={"token": "gql"}
        )
        async with Client(transport=transport) as session:
            values = [
                value async for value in session.subscribe(gql("subscription { count(target: 3) }"))
            ]
            answer = await session.execute(gql("{ whoami }"))
            headers = {key.lower(): value for key, value in transport.response_headers.items()}
        return values, answer, headers.get("sec-websocket-extensions", "")

    return asyncio.run(scenario())


def test_graphql_http_audit(server: RunningServer, node: str) -> None:
    report = run_node(node, "audit.mjs", server.http_url)
    assert report["failed"] == [], report["failed"]
    assert report["passed"] == report["total"] > 50
