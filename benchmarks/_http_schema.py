"""The schema, data and workloads of the HTTP query benchmark, shared by every server under test.

Owns ``SDL`` (the schema every server serves: anyql's ``http_app``, Strawberry's
``http_strawberry_app`` declares the same types in code, Ariadne's ``http_ariadne_app``
builds from this text), the prebuilt module-level data (``ITEMS``: 100 dicts of 7 fields;
``USERS``: 50 users of 20 posts of 3 tags and 5 comments, each comment's author a dict),
the resolvers of the list fields (``hello``, ``items``, ``users``, ``posts``, ``comments``:
plain ``(root, info, **arguments)`` functions that slice the prebuilt lists; every other
field is read from the dict by the framework's default resolver), and ``WORKLOADS``: for
each workload its query, the response it must produce (built from the data here, without
any GraphQL executor) and the number of fields one request resolves (``count_fields``).
Imports the standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "ITEMS",
    "SDL",
    "USERS",
    "WORKLOADS",
    "HTTPWorkload",
    "comments",
    "count_fields",
    "hello",
    "items",
    "posts",
    "users",
]

SDL = """
type Query {
  hello: String!
  items: [Item!]!
  users(n: Int!): [User!]!
}

type Item {
  id: ID!
  name: String!
  email: String!
  age: Int!
  active: Boolean!
  score: Float!
  createdAt: String!
}

type User {
  id: ID!
  name: String!
  posts(first: Int!): [Post!]!
}

type Post {
  id: ID!
  title: String!
  tags: [String!]!
  comments(first: Int!): [Comment!]!
}

type Comment {
  id: ID!
  body: String!
  author: Author!
}

type Author {
  id: ID!
  name: String!
}
"""

TAGS = ("graphql", "python", "benchmark")

ITEMS: list[dict[str, Any]] = [
    {
        "id": str(i),
        "name": f"item {i}",
        "email": f"user{i}@example.com",
        "age": 20 + i % 50,
        "active": i % 3 != 0,
        "score": i * 1.25,
        "createdAt": f"2026-01-{1 + i % 28:02d}T12:00:00Z",
    }
    for i in range(100)
]

USERS: list[dict[str, Any]] = [
    {
        "id": f"u{u}",
        "name": f"user {u}",
        "posts": [
            {
                "id": f"p{u}-{p}",
                "title": f"post {p} by user {u}",
                "tags": list(TAGS),
                "comments": [
                    {
                        "id": f"c{u}-{p}-{c}",
                        "body": f"comment {c} on post {p}",
                        "author": {"id": f"a{(u + c) % 50}", "name": f"author {(u + c) % 50}"},
                    }
                    for c in range(5)
                ],
            }
            for p in range(20)
        ],
    }
    for u in range(50)
]


def hello(root: Any, info: Any) -> str:
    """``Query.hello``."""
    return "world"


def items(root: Any, info: Any) -> list[dict[str, Any]]:
    """``Query.items``: the prebuilt list of 100 items."""
    return ITEMS


def users(root: Any, info: Any, n: int) -> list[dict[str, Any]]:
    """``Query.users(n)``: the first ``n`` prebuilt users."""
    return USERS[:n]


def posts(user: dict[str, Any], info: Any, first: int) -> list[dict[str, Any]]:
    """``User.posts(first)``: the user's first ``first`` posts."""
    return user["posts"][:first]


def comments(post: dict[str, Any], info: Any, first: int) -> list[dict[str, Any]]:
    """``Post.comments(first)``: the post's first ``first`` comments."""
    return post["comments"][:first]


def count_fields(value: Any) -> int:
    """The fields a response resolved: every key of every object in it, once each.

    A list field counts once on the object that holds it, and each of its objects adds
    its own fields; a list of scalars (``tags``) counts once. ``{ hello }`` is 1 field.
    """
    if isinstance(value, dict):
        return sum(1 + count_fields(child) for child in value.values())
    if isinstance(value, list):
        return sum(count_fields(child) for child in value)
    return 0


@dataclass(frozen=True)
class HTTPWorkload:
    """One query of the benchmark, with the data it must return."""

    name: str
    query: str
    #: The ``data`` of a correct response, built from the prebuilt lists directly.
    expected: dict[str, Any]
    description: str

    @property
    def fields(self) -> int:
        """Fields resolved per request (``count_fields`` of ``expected``)."""
        return count_fields(self.expected)


ITEM_FIELDS = ("id", "name", "email", "age", "active", "score", "createdAt")


def _nested_expected(n: int, first_posts: int, first_comments: int) -> dict[str, Any]:
    return {
        "users": [
            {
                "id": user["id"],
                "name": user["name"],
                "posts": [
                    {
                        "id": post["id"],
                        "title": post["title"],
                        "tags": post["tags"],
                        "comments": [
                            {
                                "id": comment["id"],
                                "body": comment["body"],
                                "author": {"name": comment["author"]["name"]},
                            }
                            for comment in post["comments"][:first_comments]
                        ],
                    }
                    for post in user["posts"][:first_posts]
                ],
            }
            for user in USERS[:n]
        ]
    }


WORKLOADS: dict[str, HTTPWorkload] = {
    workload.name: workload
    for workload in (
        HTTPWorkload(
            "hello",
            "{ hello }",
            {"hello": "world"},
            "one root field returning a constant",
        ),
        HTTPWorkload(
            "list",
            "{ items { id name email age active score createdAt } }",
            {"items": [{key: item[key] for key in ITEM_FIELDS} for item in ITEMS]},
            "100 objects of 7 scalar fields, default resolvers on dicts",
        ),
        HTTPWorkload(
            "nested",
            "{ users(n: 20) { id name posts(first: 10) { id title tags "
            "comments(first: 3) { id body author { name } } } } }",
            _nested_expected(20, 10, 3),
            "20 users x 10 posts x 3 comments, list fields slice prebuilt lists",
        ),
    )
}
