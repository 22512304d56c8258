"""anyql.testing.TestClient from pytest-trio (its ``trio`` marker and fixtures).

The rest of the suite uses anyio's pytest plugin; this module proves the client works for
users whose tests are written for pytest-trio instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from anyql.testing import TestClient
from examples import counter


@pytest.fixture
async def client() -> AsyncIterator[TestClient]:
    async with TestClient(counter.app) as client:
        yield client


@pytest.mark.trio
async def test_query_from_pytest_trio(client: TestClient) -> None:
    assert await client.query('{ hello(name: "trio") }') == {"data": {"hello": "Hello trio"}}


@pytest.mark.trio
@pytest.mark.parametrize("subprotocol", ["graphql-transport-ws", "graphql-ws"])
async def test_subscription_from_pytest_trio(client: TestClient, subprotocol: str) -> None:
    async with (
        client.websocket(subprotocol=subprotocol) as ws,
        ws.subscribe("subscription { count(target: 3, delayMs: 1) }") as stream,
    ):
        values = [result async for result in stream]
    assert values == [{"data": {"count": n}} for n in range(3)]
