"""The anyql apps of the DataLoader benchmark (served by ``anyql serve``).

Owns ``loader`` and ``naive`` (``benchmarks._dataloader_anyql_app:loader``): the schema
and data of ``_dataloader_schema``, GraphiQL off, the library's default limits.
``Query.posts`` is one store call in both; ``Post.author`` is ``anyql.loader(info,
load_authors).load(post["authorId"])`` in ``loader`` (one store call per batch, the
loader's default dispatch) and a store call per post in ``naive``. ``Query.storeStats``
adds the engine's plan counters (``plan``, or null) to the store's. Imports anyql and the
benchmark's schema module.
"""

from __future__ import annotations

from typing import Any

import anyql
from anyql import GraphQL, Schema
from benchmarks import _dataloader_schema as data

__all__ = ["loader", "naive"]


async def author_loaded(post: dict[str, Any], info: Any) -> dict[str, Any]:
    """``Post.author`` through the operation's loader: one store call per batch."""
    author: dict[str, Any] = await anyql.loader(info, data.load_authors).load(post["authorId"])
    return author


def _app(author: Any) -> GraphQL:
    schema = Schema(data.SDL)
    schema.field("Query.posts")(data.posts)
    schema.field("Post.author")(author)

    @schema.field("Query.storeStats")
    def store_stats(root: Any, info: Any) -> str:
        read = getattr(app.engine, "plan_stats", None)
        return data.store_stats(root, info, {"plan": None if read is None else read()})

    app = GraphQL(schema, graphiql=False)
    return app


loader = _app(author_loaded)
naive = _app(data.author_of)
