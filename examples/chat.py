"""Chat rooms: the Django Channels chat tutorial, without Django.

anyql serve examples.chat:app                           # in memory
ANYQL_REDIS=redis://127.0.0.1:6379/0 anyql serve examples.chat:app   # across processes

subscription { joinChatRooms(rooms: ["lobby"], user: "ann") { room user text } }
mutation { sendChatMessage(room: "lobby", user: "bob", message: "hi") }
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import anyio

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


@schema.field("Query.hello")
def hello(root: Any, info: Any, name: str) -> str:
    return f"Hello {name}"


@schema.field("Mutation.sendChatMessage")
async def send_chat_message(root: Any, info: Any, room: str, user: str, message: str) -> bool:
    await info.context.broadcast.publish(
        f"chat:{room}", {"room": room, "user": user, "text": message}
    )
    return True


@schema.field("Subscription.joinChatRooms")
async def join_chat_rooms(
    root: Any, info: Any, rooms: list[str], user: str
) -> AsyncIterator[dict[str, str]]:
    channels = [f"chat:{room}" for room in rooms]
    async with info.context.broadcast.subscribe(*channels) as messages:
        # The first event confirms the subscription is listening, so a client can publish safely.
        yield {"room": ",".join(rooms), "user": "system", "text": f"{user} joined"}
        async for message in messages:
            yield message


@schema.field("Subscription.count")
async def count(root: Any, info: Any, target: int, delayMs: int) -> AsyncIterator[int]:
    for value in range(target):
        yield value
        await anyio.sleep(delayMs / 1000)


app = GraphQL(schema, broadcast=Broadcast(os.environ.get("ANYQL_REDIS")))
