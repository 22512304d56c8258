"""Chat rooms: the Django Channels chat tutorial, without Django.

Run it in memory (one process), or over Redis so that several processes share the rooms::

    anyql serve examples.chat:app
    ANYQL_REDIS=redis://127.0.0.1:6379/0 anyql serve examples.chat:app --port 8001
    ANYQL_REDIS=redis://127.0.0.1:6379/0 hypercorn --workers 4 examples.chat:app

Then, in GraphiQL at http://127.0.0.1:8000/graphql or any graphql-ws client::

    subscription { joinChatRooms(rooms: ["lobby", "games"], user: "ann") { room user text } }
    mutation { sendChatMessage(room: "lobby", user: "bob", message: "hi") }
    { history(room: "lobby") { user text author { displayName color } } }

``joinChatRooms`` first yields a confirmation from the user "system" (``room`` lists the
rooms joined, ``text`` says "<user> joined"): once a client has it, the subscription is
listening, so nothing sent afterwards is missed. Then it yields every message sent to any
of those rooms, in the order each room received them, including the user's own.

``history`` gives a room's last 50 messages sent through this process, oldest first (kept
in memory for the 1,000 rooms used last; with Redis each process keeps its own: a real app
reads them from its database). A message's ``author`` is the sender's profile (null for a
user without one), looked up in ``profiles`` through ``anyql.loader``: however many
messages one result holds, their authors cost one store call. A subscription executes each
event apart, with loaders of its own: every event looks its author up anew, and so sees the
profile as it is at that moment.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.lowlevel
from graphql import GraphQLError

import anyql
from anyql import Broadcast, GraphQL, Schema

schema = Schema(
    """
    type Query {
      hello(name: String = "world"): String!
      history(room: String!): [ChatMessage!]!
    }
    type ChatMessage { room: String! user: String! text: String! author: Profile }
    type Profile { user: String! displayName: String! color: String! }
    type Mutation { sendChatMessage(room: String!, user: String!, message: String!): Boolean! }
    type Subscription {
      count(target: Int!, delayMs: Int = 500): Int!
      joinChatRooms(rooms: [String!]!, user: String!): ChatMessage!
    }
    """
)


#: The most messages ``history`` keeps per room, and the most rooms it keeps.
HISTORY_LENGTH = 50
HISTORY_ROOMS = 1000
#: room -> its last messages sent through this process; the room used last comes last.
history: dict[str, deque[dict[str, str]]] = {}


class ProfileStore:
    """Stands for a user database: ``get_many`` looks up many users in one call."""

    def __init__(self, profiles: dict[str, dict[str, str]]) -> None:
        self.profiles = profiles

    async def get_many(self, users: list[str]) -> list[dict[str, str] | None]:
        await anyio.lowlevel.checkpoint()  # where a real store awaits its database
        return [self.profiles.get(user) for user in users]


profiles = ProfileStore(
    {
        "system": {"user": "system", "displayName": "Chat", "color": "gray"},
        "ann": {"user": "ann", "displayName": "Ann", "color": "teal"},
        "bob": {"user": "bob", "displayName": "Bob", "color": "orange"},
    }
)


def channel(room: str) -> str:
    return f"chat:{room}"


def remember(message: dict[str, str]) -> None:
    room = history.pop(message["room"], None) or deque(maxlen=HISTORY_LENGTH)
    room.append(message)
    history[message["room"]] = room  # the room used last moves to the end
    while len(history) > HISTORY_ROOMS:
        del history[next(iter(history))]  # forget the room used least recently


async def load_profiles(users: list[str]) -> list[dict[str, str] | None]:
    """The profile loader's batch function: one store call for a whole batch of users."""
    return await profiles.get_many(users)


@schema.field("Query.hello")
def hello(root: Any, info: Any, name: str) -> str:
    return f"Hello {name}"


@schema.field("Query.history")
def room_history(root: Any, info: Any, room: str) -> list[dict[str, str]]:
    return list(history.get(room, ()))


@schema.field("ChatMessage.author")
async def author(message: dict[str, str], info: Any) -> dict[str, str] | None:
    # Every message of one result asks the same loader: their users make one batch.
    return await anyql.loader(info, load_profiles).load(message["user"])


@schema.field("Mutation.sendChatMessage")
async def send_chat_message(root: Any, info: Any, room: str, user: str, message: str) -> bool:
    sent = {"room": room, "user": user, "text": message}
    remember(sent)
    await info.context.broadcast.publish(channel(room), sent)
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
