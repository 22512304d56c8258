"""The Strawberry apps of the DataLoader benchmark, served by uvicorn.

Owns ``schema`` (the types of ``_dataloader_schema.SDL`` declared in code; the smoke test
checks the two print alike), ``loader`` and ``naive`` (``strawberry.asgi.GraphQL``, no
GraphQL IDE). Fields without a resolver read the dict key of their name
(``StrawberryConfig(default_resolver=getitem)``). ``Post.author`` awaits
``info.context["author"](post["authorId"])``: in ``loader`` the ``load`` of a
``strawberry.dataloader.DataLoader`` made for each request in ``get_context`` (one store
call per batch), in ``naive`` the store's own ``author`` (one call per post). Needs the
``bench`` extra; imports neither anyql nor (directly) anyio.
"""

from __future__ import annotations

from operator import getitem
from typing import Any, cast

import strawberry
from strawberry.asgi import GraphQL
from strawberry.dataloader import DataLoader
from strawberry.schema.config import StrawberryConfig

from benchmarks import _dataloader_schema as data

__all__ = ["loader", "naive", "schema"]


@strawberry.type
class Author:
    id: strawberry.ID
    name: str


@strawberry.type
class Post:
    id: strawberry.ID
    title: str

    @strawberry.field
    async def author(self, info: strawberry.Info) -> Author:
        post: Any = self  # the post's dict (the default resolver reads dicts)
        return cast(Author, await info.context["author"](post["authorId"]))


@strawberry.type
class Query:
    @strawberry.field
    async def posts(self) -> list[Post]:
        return cast(list[Post], await data.posts(self, None))

    @strawberry.field
    def store_stats(self) -> str:
        return data.store_stats(self, None, {"plan": None})


schema = strawberry.Schema(query=Query, config=StrawberryConfig(default_resolver=getitem))


class _App(GraphQL[dict[str, Any], None]):
    """One ``author`` function per request: a fresh loader's ``load``, or the store's."""

    def __init__(self, batched: bool) -> None:
        super().__init__(schema, graphql_ide=None)
        self.batched = batched

    async def get_context(self, request: Any, response: Any) -> dict[str, Any]:
        author = DataLoader(load_fn=data.load_authors).load if self.batched else data.STORE.author
        return {"request": request, "response": response, "author": author}


loader = _App(batched=True)
naive = _App(batched=False)
