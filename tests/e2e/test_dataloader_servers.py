"""``anyql.loader`` under every real server kind: native and hypercorn, Trio and asyncio.

One server of tests/e2e/app_dataloader.py per kind (one worker). Over HTTP and over a
WebSocket, a list query makes exactly one ``batch_load`` call per level (authors, friends,
their friends), reported by the server itself through ``calls(tag)``; a second request
loads again (one scope per operation); a subscription's events each load anew.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from anyql.testing import TestClient
from tests.e2e.servers import SERVER_KINDS, RunningServer, running_server

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

APP = "tests.e2e.app_dataloader:app"
AUTHORS = 10

QUERY = """
query Levels($tag: String!, $n: Int!) {
  posts(tag: $tag, n: $n) { id author { id name friends { id name friends { id name } } } }
}
"""
CALLS = "query Calls($tag: String!) { calls(tag: $tag) }"


@pytest.fixture(scope="module", params=SERVER_KINDS)
def loader_server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    with running_server(request.param, target=APP) as running:
        yield running
    log = running.log
    assert "Traceback" not in log, log


def levels(n: int) -> list[list[int]]:
    authors = sorted({post % AUTHORS for post in range(n)})
    friends = sorted({u + d for u in authors for d in (50, 51)})
    friends_of_friends = sorted({u + d for u in friends for d in (50, 51)} - set(friends))
    return [authors, friends, friends_of_friends]


def check(result: dict[str, Any], n: int) -> None:
    assert "errors" not in result, result
    posts = result["data"]["posts"]
    assert [post["author"]["id"] for post in posts] == [post % AUTHORS for post in range(n)]
    last = posts[-1]["author"]["friends"][1]["friends"][0]
    assert last == {"id": (n - 1) % AUTHORS + 51 + 50, "name": f"user{last['id']}"}


async def test_a_list_query_makes_one_batch_call_per_level(loader_server: RunningServer) -> None:
    n = 30
    async with TestClient.connect(loader_server.http_url) as client:
        over_http = uuid.uuid4().hex
        check(await client.query(QUERY, {"tag": over_http, "n": n}), n)
        calls = await client.query(CALLS, {"tag": over_http})
        assert calls == {"data": {"calls": levels(n)}}, loader_server.kind

        # a second request shares nothing with the first: it loads every level again
        check(await client.query(QUERY, {"tag": over_http, "n": n}), n)
        calls = await client.query(CALLS, {"tag": over_http})
        assert calls == {"data": {"calls": levels(n) * 2}}

        over_ws = uuid.uuid4().hex
        async with client.websocket() as socket:
            for _ in range(2):  # two operations of one connection: two scopes
                check(await socket.query(QUERY, {"tag": over_ws, "n": n}), n)
        calls = await client.query(CALLS, {"tag": over_ws})
        assert calls == {"data": {"calls": levels(n) * 2}}


async def test_each_subscription_event_loads_anew(loader_server: RunningServer) -> None:
    tag = uuid.uuid4().hex
    query = "subscription Watch($tag: String!) { watch(tag: $tag, id: 3) { id name } }"
    rename = (
        "mutation Rename($tag: String!, $name: String!) { rename(tag: $tag, id: 3, name: $name) }"
    )
    async with TestClient.connect(loader_server.http_url) as client:
        async with client.websocket() as socket, socket.subscribe(query, {"tag": tag}) as results:
            with anyio.fail_after(10):
                first = await anext(results)
                assert first == {"data": {"watch": {"id": 3, "name": "user3"}}}
                for name in ("Ada", "Grace"):
                    renamed = await client.query(rename, {"tag": tag, "name": name})
                    assert renamed == {"data": {"rename": True}}
                    assert await anext(results) == {"data": {"watch": {"id": 3, "name": name}}}
        calls = await client.query(CALLS, {"tag": tag})
    assert calls == {"data": {"calls": [[3], [3], [3]]}}  # one call per event
