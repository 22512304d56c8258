"""examples/chat.py does what its docstring says, in memory and over Redis.

Users are in-memory WebSocket sessions (tests/memory_socket.py) inside ``app.running()``,
on both backends. Over Redis, two apps (each its own ``Broadcast``, as two processes would
have) share the Redis on 127.0.0.1:6379, with rooms no other run uses; those tests skip
without Redis, except under CI, where they fail. Profile lookups are counted by wrapping
the example's store (``count_lookups``).
"""

from __future__ import annotations

import os
import uuid
from contextlib import AsyncExitStack
from typing import Any

import pytest

from anyql import GraphQL
from examples import chat
from tests.broadcast.helpers import LOCALHOST, answers_ping
from tests.memory_socket import Peer, session
from tests.requirements import unavailable

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

JOIN = """
subscription Join($rooms: [String!]!, $user: String!) {
  joinChatRooms(rooms: $rooms, user: $user) { room user text }
}
"""
SEND = """
mutation Send($room: String!, $user: String!, $message: String!) {
  sendChatMessage(room: $room, user: $user, message: $message)
}
"""
JOIN_WITH_AUTHORS = """
subscription Join($rooms: [String!]!, $user: String!) {
  joinChatRooms(rooms: $rooms, user: $user) { text author { displayName } }
}
"""
HISTORY = """
query History($room: String!) {
  history(room: $room) { user text author { displayName color } }
}
"""


class User:
    """One chat client: a session with one ``joinChatRooms`` subscription (id "join")."""

    def __init__(self, peer: Peer, name: str) -> None:
        self.peer = peer
        self.name = name
        self._sent = 0

    async def join(self, *rooms: str) -> dict[str, Any]:
        """Join ``rooms`` and return the confirmation (after it, the user is listening)."""
        await self.peer.send(operation("join", JOIN, rooms=list(rooms), user=self.name))
        return await self.next_message()

    async def say(self, room: str, message: str) -> None:
        self._sent += 1
        id = f"send-{self._sent}"
        await self.peer.send(operation(id, SEND, room=room, user=self.name, message=message))

    async def ask(self, query: str, **variables: Any) -> dict[str, Any]:
        """The result of a query or mutation (for a user who has not joined any room)."""
        self._sent += 1
        id = f"ask-{self._sent}"
        await self.peer.send(operation(id, query, **variables))
        frame = await self.peer.receive()
        assert frame["id"] == id and frame["type"] == "next", frame
        assert await self.peer.receive() == {"id": id, "type": "complete"}
        result: dict[str, Any] = frame["payload"]
        return result

    async def next_message(self) -> dict[str, Any]:
        """The next chat message, checking the mutation results met on the way.

        A mutation's result and complete may arrive before or after the message it sent.
        """
        while True:
            frame = await self.peer.receive()
            if frame["id"] == "join":
                assert frame["type"] == "next", frame
                message: dict[str, Any] = frame["payload"]["data"]["joinChatRooms"]
                return message
            if frame["type"] == "next":
                assert frame["payload"] == {"data": {"sendChatMessage": True}}, frame
            else:
                assert frame == {"id": frame["id"], "type": "complete"}, frame


def operation(id: str, query: str, **variables: Any) -> dict[str, Any]:
    return {"id": id, "type": "subscribe", "payload": {"query": query, "variables": variables}}


async def user(stack: AsyncExitStack, app: GraphQL, name: str) -> User:
    """A connected, acknowledged user whose session ends with ``stack``."""
    peer = await stack.enter_async_context(session(app))
    assert await peer.init() == {"type": "connection_ack"}
    return User(peer, name)


def unique(room: str) -> str:
    return f"{room}-{uuid.uuid4().hex[:10]}"


def message(room: str, user: str, text: str) -> dict[str, str]:
    return {"room": room, "user": user, "text": text}


def count_lookups(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The users of each profile store call from now on, one list per call."""
    asked: list[list[str]] = []
    get_many = chat.profiles.get_many

    async def counted(users: list[str]) -> list[dict[str, str] | None]:
        asked.append(list(users))
        return await get_many(users)

    monkeypatch.setattr(chat.profiles, "get_many", counted)
    return asked


# --- the scenarios, each given one app per user (the same app, or apps sharing Redis) ----


async def two_users_in_a_room_exchange_messages(ann_app: GraphQL, bob_app: GraphQL) -> None:
    lobby = unique("lobby")
    async with AsyncExitStack() as stack:
        ann = await user(stack, ann_app, "ann")
        bob = await user(stack, bob_app, "bob")
        assert await ann.join(lobby) == message(lobby, "system", "ann joined")
        assert await bob.join(lobby) == message(lobby, "system", "bob joined")
        await ann.say(lobby, "hi bob")
        for each in (ann, bob):
            assert await each.next_message() == message(lobby, "ann", "hi bob")
        await bob.say(lobby, "hi ann")
        for each in (ann, bob):
            assert await each.next_message() == message(lobby, "bob", "hi ann")


async def a_user_in_two_rooms_gets_both(carol_app: GraphQL, dan_app: GraphQL) -> None:
    lobby, games, elsewhere = unique("lobby"), unique("games"), unique("elsewhere")
    async with AsyncExitStack() as stack:
        carol = await user(stack, carol_app, "carol")
        dan = await user(stack, dan_app, "dan")
        joined = await carol.join(lobby, games, lobby)
        assert joined == message(f"{lobby},{games}", "system", "carol joined")
        assert await dan.join(elsewhere) == message(elsewhere, "system", "dan joined")
        await dan.say(elsewhere, "not for carol")
        assert await dan.next_message() == message(elsewhere, "dan", "not for carol")
        await dan.say(games, "gg")
        await dan.say(lobby, "hello")
        # One sender, sequential sends: each arrives once, in order, and "elsewhere" never.
        assert await carol.next_message() == message(games, "dan", "gg")
        assert await carol.next_message() == message(lobby, "dan", "hello")
        await carol.say(lobby, "bye")
        assert await carol.next_message() == message(lobby, "carol", "bye")


# --- in memory ---------------------------------------------------------------------------


async def test_two_users_in_a_room_exchange_messages() -> None:
    app = chat.make_app()
    async with app.running():
        await two_users_in_a_room_exchange_messages(app, app)


async def test_a_user_in_two_rooms_gets_messages_from_both() -> None:
    app = chat.make_app()
    async with app.running():
        await a_user_in_two_rooms_gets_both(app, app)


async def test_joining_no_room_is_an_error() -> None:
    app = chat.make_app()
    async with app.running(), AsyncExitStack() as stack:
        eve = await user(stack, app, "eve")
        await eve.peer.send(operation("join", JOIN, rooms=[], user="eve"))
        assert await eve.peer.receive() == {
            "id": "join",
            "type": "error",
            "payload": [{"message": "Join at least one room, and name every room"}],
        }


async def test_the_authors_of_a_rooms_history_cost_one_profile_lookup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lobby = unique("lobby")
    app = chat.make_app()
    async with app.running(), AsyncExitStack() as stack:
        users = [await user(stack, app, name) for name in ("ann", "bob", "carol")]
        for number in range(10):
            for each in users:
                sent = await each.ask(SEND, room=lobby, user=each.name, message=f"{number}")
                assert sent == {"data": {"sendChatMessage": True}}
        asked = count_lookups(monkeypatch)
        result = await users[0].ask(HISTORY, room=lobby)
    # 30 messages, one store call (its keys in the order the resolvers ran: Trio's differs)
    assert [sorted(users) for users in asked] == [["ann", "bob", "carol"]]
    history = result["data"]["history"]
    assert [(each["user"], each["text"]) for each in history] == [
        (name, f"{number}") for number in range(10) for name in ("ann", "bob", "carol")
    ]
    assert history[:3] == [
        {"user": "ann", "text": "0", "author": {"displayName": "Ann", "color": "teal"}},
        {"user": "bob", "text": "0", "author": {"displayName": "Bob", "color": "orange"}},
        {"user": "carol", "text": "0", "author": None},  # no profile
    ]


async def test_each_event_of_a_subscription_looks_its_author_up_anew(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lobby = unique("lobby")
    asked = count_lookups(monkeypatch)
    app = chat.make_app()
    async with app.running(), AsyncExitStack() as stack:
        ann = await user(stack, app, "ann")
        await ann.peer.send(operation("join", JOIN_WITH_AUTHORS, rooms=[lobby], user="ann"))
        assert await ann.next_message() == {"text": "ann joined", "author": {"displayName": "Chat"}}
        await ann.say(lobby, "one")
        assert await ann.next_message() == {"text": "one", "author": {"displayName": "Ann"}}
        monkeypatch.setitem(chat.profiles.profiles["ann"], "displayName", "Ann B.")
        await ann.say(lobby, "two")
        assert await ann.next_message() == {"text": "two", "author": {"displayName": "Ann B."}}
    assert asked == [["system"], ["ann"], ["ann"]]  # nothing cached from an earlier event


def test_history_keeps_the_last_messages_of_the_rooms_used_last(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(chat, "history", {})
    monkeypatch.setattr(chat, "HISTORY_ROOMS", 2)
    for number in range(chat.HISTORY_LENGTH + 5):
        chat.remember(message("a", "ann", f"{number}"))
    chat.remember(message("b", "bob", "in b"))
    chat.remember(message("a", "ann", "last"))
    chat.remember(message("c", "carol", "in c"))
    assert list(chat.history) == ["a", "c"]  # b was used least recently
    texts = [each["text"] for each in chat.history["a"]]
    assert texts == [f"{number}" for number in range(6, chat.HISTORY_LENGTH + 5)] + ["last"]


def test_the_module_app_is_in_memory_unless_ANYQL_REDIS_is_set() -> None:
    assert repr(chat.make_app().broadcast) == "<Broadcast memory stopped>"
    expected = "memory" if not os.environ.get("ANYQL_REDIS") else "redis"
    assert repr(chat.app.broadcast) == f"<Broadcast {expected} stopped>"
    assert repr(chat.make_app("redis://127.0.0.1:6379/0").broadcast).startswith("<Broadcast redis")


# --- over Redis: two apps, as two processes would be ---------------------------------------


@pytest.fixture
def redis_url() -> str:
    if not answers_ping(6379):
        unavailable(f"nothing answers PING on {LOCALHOST}:6379")
    return f"redis://{LOCALHOST}:6379/0"


@pytest.mark.redis
async def test_over_redis_users_on_two_apps_exchange_messages(redis_url: str) -> None:
    first, second = chat.make_app(redis_url), chat.make_app(redis_url)
    async with first.running(), second.running():
        await two_users_in_a_room_exchange_messages(first, second)


@pytest.mark.redis
async def test_over_redis_a_user_in_two_rooms_gets_both(redis_url: str) -> None:
    first, second = chat.make_app(redis_url), chat.make_app(redis_url)
    async with first.running(), second.running():
        await a_user_in_two_rooms_gets_both(first, second)
