"""The end-to-end app of tests/e2e/test_dataloader_servers.py: loads through ``anyql.loader``.

``posts(tag, n)`` lists posts; each post's author, each user's friends and their friends
are loaded through one batch function, ``load_users``, by resolvers that are sync for half
the items and async (two checkpoints, then the load) for the others. The keys carry the
client's ``tag``, so ``calls(tag)`` reports the keys of each call made for that tag, in
call order, from the process that serves it (one worker). ``rename`` changes a user and
publishes the change; ``watch`` yields its user once, then once per change, so a client
sees whether each event loads anew (each event's name is loaded in its own scope).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import anyio.lowlevel

import anyql
from anyql import Broadcast, GraphQL, Schema

AUTHORS = 10
#: The level rule under test is the idle checkpoints; a loaded CI machine must not split a
#: level through the 5 ms default of max_delay.
OPTIONS: dict[str, Any] = {"max_delay": 1.0}

schema = Schema(
    """
    type Query {
      posts(tag: String!, n: Int!): [Post!]!
      calls(tag: String!): [[Int!]!]!
    }
    type Mutation { rename(tag: String!, id: Int!, name: String!): Boolean! }
    type Post { id: Int!  author: User }
    type User { id: Int!  name: String!  friends: [User!]! }
    type Watched { id: Int!  name: String! }
    type Subscription { watch(tag: String!, id: Int!): Watched }
    """
)

NAMES: dict[tuple[str, int], str] = {}
CALLS: defaultdict[str, list[list[int]]] = defaultdict(list)


async def load_users(keys: list[tuple[str, int]]) -> list[dict[str, Any]]:
    for tag in {tag for tag, _ in keys}:
        CALLS[tag].append(sorted(id for each, id in keys if each == tag))
    await anyio.lowlevel.checkpoint()
    return [{"tag": tag, "id": id, "name": NAMES.get((tag, id), f"user{id}")} for tag, id in keys]


def users(info: Any) -> anyql.DataLoader[Any, Any]:
    return anyql.loader(info, load_users, **OPTIONS)


async def later(load: Callable[[], Any]) -> Any:
    await anyio.lowlevel.checkpoint()
    await anyio.lowlevel.checkpoint()
    return await load()


def mixed(sync: bool, load: Callable[[], Any]) -> Any:
    return load() if sync else later(load)


@schema.field("Query.posts")
def posts(root: Any, info: Any, tag: str, n: int) -> list[tuple[str, int]]:
    return [(tag, post) for post in range(n)]


@schema.field("Post.id")
def post_id(post: tuple[str, int], info: Any) -> int:
    return post[1]


@schema.field("Post.author")
def author(post: tuple[str, int], info: Any) -> Any:
    tag, id = post
    return mixed(id % 2 == 0, lambda: users(info).load((tag, id % AUTHORS)))


@schema.field("User.friends")
def friends(user: dict[str, Any], info: Any) -> Any:
    keys = [(user["tag"], user["id"] + 50), (user["tag"], user["id"] + 51)]
    return mixed(user["id"] % 2 == 1, lambda: users(info).load_many(keys))


@schema.field("Query.calls")
def calls(root: Any, info: Any, tag: str) -> list[list[int]]:
    return CALLS[tag]


@schema.field("Mutation.rename")
async def rename(root: Any, info: Any, tag: str, id: int, name: str) -> bool:
    NAMES[tag, id] = name
    await info.context.broadcast.publish(f"renamed:{tag}", str(id))
    return True


@schema.field("Subscription.watch")
async def watch(root: Any, info: Any, tag: str, id: int) -> AsyncIterator[tuple[str, int]]:
    async with info.context.broadcast.subscribe(f"renamed:{tag}") as changes:
        yield (tag, id)
        async for _ in changes:
            yield (tag, id)


@schema.field("Watched.id")
def watched_id(event: tuple[str, int], info: Any) -> int:
    return event[1]


@schema.field("Watched.name")
async def watched_name(event: tuple[str, int], info: Any) -> str:
    return str((await users(info).load(event))["name"])


app = GraphQL(schema, broadcast=Broadcast(), mask_errors=False)
