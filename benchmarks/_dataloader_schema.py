"""The N+1 schema, data and simulated store of the DataLoader benchmark.

Owns ``SDL`` (``Query.posts``: 1,000 posts, each with an ``author``; ``Query.storeStats``,
the store's counters as JSON, read by the benchmark outside the measured window), the
prebuilt data (``POSTS``, 1,000 dicts whose ``authorId`` is one of 100 ``AUTHORS``),
``QUERY`` and ``EXPECTED`` (the data a correct answer holds, built without any GraphQL
executor), ``Store``/``STORE`` (the simulated store: every call takes 2 ms, at most 4 at
a time across the whole process, an anyio semaphore around ``anyio.sleep``, so it runs on
Trio and asyncio alike) and the resolvers every server shares: ``posts`` (one store
call), ``author_of`` (one store call per post: the N+1) and ``load_authors`` (one store
call for a batch of author ids, what a DataLoader calls). A server counts as a request
each call of ``posts``. Imports anyio and the standard library.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import anyio
from anyio.lowlevel import RunVar

__all__ = [
    "AUTHORS",
    "EXPECTED",
    "POSTS",
    "QUERY",
    "SDL",
    "STORE",
    "Store",
    "author_of",
    "load_authors",
    "posts",
    "store_stats",
]

SDL = """
type Query {
  posts: [Post!]!
  storeStats: String!
}

type Post {
  id: ID!
  title: String!
  author: Author!
}

type Author {
  id: ID!
  name: String!
}
"""

POST_COUNT = 1_000
AUTHOR_COUNT = 100

AUTHORS: dict[str, dict[str, Any]] = {
    f"a{a}": {"id": f"a{a}", "name": f"author {a}"} for a in range(AUTHOR_COUNT)
}
POSTS: list[dict[str, Any]] = [
    {"id": f"p{p}", "title": f"post {p}", "authorId": f"a{p % AUTHOR_COUNT}"}
    for p in range(POST_COUNT)
]

QUERY = "{ posts { id title author { id name } } }"
EXPECTED: dict[str, Any] = {
    "posts": [
        {
            "id": post["id"],
            "title": post["title"],
            "author": {"id": post["authorId"], "name": AUTHORS[post["authorId"]]["name"]},
        }
        for post in POSTS
    ]
}


class Store:
    """A store that answers each call after ``latency`` seconds, ``concurrency`` at a time.

    The limit is the event loop's (a connection pool shared by every request of the
    process), made on first use in each run of a loop (``RunVar``).
    """

    def __init__(self, concurrency: int = 4, latency: float = 0.002) -> None:
        self.concurrency = concurrency
        self.latency = latency
        self._limit: RunVar[anyio.Semaphore] = RunVar(f"store_limit_{id(self)}")
        #: Calls made, keys asked for, calls not finished, ``posts`` resolved (requests).
        self.calls = 0
        self.keys = 0
        self.active = 0
        self.requests = 0

    async def _call(self, keys: int) -> None:
        limit = self._limit.get(None)
        if limit is None:
            limit = anyio.Semaphore(self.concurrency)
            self._limit.set(limit)
        self.calls += 1
        self.keys += keys
        self.active += 1
        try:
            async with limit:
                await anyio.sleep(self.latency)
        finally:
            self.active -= 1

    async def posts(self) -> list[dict[str, Any]]:
        """Every post (one call)."""
        await self._call(1)
        return POSTS

    async def author(self, author_id: str) -> dict[str, Any]:
        """One author (one call)."""
        await self._call(1)
        return AUTHORS[author_id]

    async def authors(self, author_ids: Sequence[str]) -> list[dict[str, Any]]:
        """The authors of ``author_ids``, in order (one call)."""
        await self._call(len(author_ids))
        return [AUTHORS[author_id] for author_id in author_ids]

    def stats(self) -> dict[str, int]:
        """The counters, for ``Query.storeStats``."""
        return {
            "calls": self.calls,
            "keys": self.keys,
            "active": self.active,
            "requests": self.requests,
        }


#: The store of this process (each server is its own process).
STORE = Store()


async def posts(root: Any, info: Any) -> list[dict[str, Any]]:
    """``Query.posts``: one store call; counts the request."""
    STORE.requests += 1
    return await STORE.posts()


async def author_of(post: dict[str, Any], info: Any) -> dict[str, Any]:
    """``Post.author`` without a loader: one store call per post."""
    return await STORE.author(post["authorId"])


async def load_authors(author_ids: list[str]) -> list[dict[str, Any]]:
    """The batch function of the author loaders: one store call per batch."""
    return await STORE.authors(author_ids)


def store_stats(root: Any, info: Any, extra: dict[str, Any] | None = None) -> str:
    """``Query.storeStats``: the store's counters (and ``extra``) as JSON."""
    return json.dumps({**STORE.stats(), **(extra or {})})
