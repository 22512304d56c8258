"""The Strawberry app ``benchmarks/http.py --compare strawberry`` serves with uvicorn.

Owns ``app`` (``strawberry.asgi.GraphQL``, no GraphQL IDE) and ``schema``: the types of
``_http_schema.SDL`` declared in code (the smoke test checks the two print alike), over
the same prebuilt dicts. Fields without a resolver read the dict key of their name
(``StrawberryConfig(default_resolver=getitem)``; so ``createdAt`` keeps its GraphQL name
in Python); the list fields call ``_http_schema``'s resolvers with the parent dict as
``self``. Needs the ``bench`` extra; imports neither anyql nor anyio.
"""

from __future__ import annotations

from operator import getitem

import strawberry
from strawberry.asgi import GraphQL
from strawberry.schema.config import StrawberryConfig

from benchmarks import _http_schema as data

__all__ = ["app", "schema"]


@strawberry.type
class Item:
    id: strawberry.ID
    name: str
    email: str
    age: int
    active: bool
    score: float
    createdAt: str


@strawberry.type
class Author:
    id: strawberry.ID
    name: str


@strawberry.type
class Comment:
    id: strawberry.ID
    body: str
    author: Author


@strawberry.type
class Post:
    id: strawberry.ID
    title: str
    tags: list[str]

    @strawberry.field
    def comments(self, first: int) -> list[Comment]:
        return data.comments(self, None, first)


@strawberry.type
class User:
    id: strawberry.ID
    name: str

    @strawberry.field
    def posts(self, first: int) -> list[Post]:
        return data.posts(self, None, first)


@strawberry.type
class Query:
    @strawberry.field
    def hello(self) -> str:
        return data.hello(self, None)

    @strawberry.field
    def items(self) -> list[Item]:
        return data.items(self, None)

    @strawberry.field
    def users(self, n: int) -> list[User]:
        return data.users(self, None, n)


schema = strawberry.Schema(query=Query, config=StrawberryConfig(default_resolver=getitem))
app = GraphQL(schema, graphql_ide=None)
