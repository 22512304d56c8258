"""Chat rooms: the Django Channels chat tutorial, without Django.

Run it in memory (one process), or over Redis so that several processes share the rooms::

    anyql serve examples.chat:app
    ANYQL_REDIS=redis://127.0.0.1:6379/0 anyql serve examples.chat:app --port 8001
    ANYQL_REDIS=redis://127.0.0.1:6379/0 hypercorn --workers 4 examples.chat:app

Then, in GraphiQL at http://127.0.0.1:8000/graphql or any graphql-ws client::

    subscription { joinChatRooms(rooms: ["lobby", "games"], user: "ann") { room user text } }
    mutation { sendChatMessage(room: "lobby", user: "bob", message: "hi") }

``joinChatRooms`` first yields a confirmation from the user "system" (``room`` lists the
rooms joined, ``text`` says "<user> joined"): once a client has it, the subscription is
listening, so nothing sent afterwards is missed. Then it yields every message sent to any
of those rooms, in the order each room received them, including the user's own.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import anyio
from graphql import GraphQLError

from anyql import Broadcast, GraphQL, Schema

schema = Schema(
    """
    type Query { hello(name: String = "world"): String! }
    type ChatMessage { room: String! user: String! text: String! }
    type Mutation { sendChatMessage(room: String!, user: String!, message: String!): Boolean! }
    type Subscription {
      count(target: Int!, delayMs: Int = 500): Int!
      joinChatRooms(rooms: [String!]!, user: String!): ChatMessage!
    }
    """
)


def channel(room: str) -> str:
    return f"chat:{room}"


@schema.field("Query.hello")
def hello(root: Any, info: Any, name: str) -> str:
    return f"Hello {name}"


@schema.field("Mutation.sendChatMessage")
async def send_chat_message(root: Any, info: Any, room: str, user: str, message: str) -> bool:
    await info.context.broadcast.publish(
        channel(room), {"room": room, "user": user, "text": message}
    )
    return True


@schema.field("Subscription.joinChatRooms")
async def join_chat_rooms(
    root: Any, info: Any, rooms: list[str], user: str
) -> AsyncIterator[dict[str, str]]:
    rooms = list(dict.fromkeys(rooms))  # joining a room twice must not double its messages
    if not rooms or not all(rooms):
        # A GraphQLError reaches the client as it is; other exceptions are masked.
        raise GraphQLError("Join at least one room, and name every room")
    async with info.context.broadcast.subscribe(*map(channel, rooms)) as messages:
        # Subscribed (on Redis too) before this first event: a client that waits for it
        # can send right away without missing its own message.
        yield {"room": ",".join(rooms), "user": "system", "text": f"{user} joined"}
        async for message in messages:
            yield message


@schema.field("Subscription.count")
async def count(root: Any, info: Any, target: int, delayMs: int) -> AsyncIterator[int]:
    for value in range(target):
        yield value
        await anyio.sleep(delayMs / 1000)


def make_app(redis_url: str | None = None) -> GraphQL:
    """The chat app: rooms in memory, or shared through Redis pub/sub at ``redis_url``."""
    return GraphQL(schema, broadcast=Broadcast(redis_url))


app = make_app(os.environ.get("ANYQL_REDIS") or None)
