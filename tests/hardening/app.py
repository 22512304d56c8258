"""The app the hardening tests serve, in-process (native server) and under hypercorn (ASGI).

``build_app(probe, **settings)`` makes a fresh ``GraphQL`` whose resolvers report to
``probe`` (so tests wait on events, not sleeps). ``app`` is the module-level ASGI target for
``hypercorn tests.hardening.app:app``: the strict profile below (masking on, introspection
off, an Origin allow-list, small connection and timeout limits), whose context factory raises
for a ``connection_init`` payload holding ``CRASH`` (row F08).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import anyio
from graphql import GraphQLError

from anyql import Broadcast, Context, GraphQL, Limits, Schema

#: What unexpected exceptions say: it must never reach a client when masking is on.
SECRET = "secret detail: password=hunter2 in /srv/app/settings.py"
#: The Origin the strict profile allows besides its own host.
TRUSTED_ORIGIN = "https://trusted.example"
#: Largest ``first`` the ``items`` resolver accepts (row G10: an app-level clamp).
MAX_ITEMS = 100
#: How long a ``stubborn`` generator's cleanup waits for its partner's cleanup to start.
PARTNER_WAIT = 2.0
#: A ``connection_init`` payload key that makes the strict profile's context factory raise.
CRASH = "crash"

SDL = """
input Node { child: Node  value: Int }
type Query {
  hello: String!
  fail: String
  failOnPurpose: String
  sleep(seconds: Float!): String
  depth(node: Node): Int
  items(first: Int!): [Int!]!
  n(v: Int): Int
}
type Mutation { publish(room: String!, text: String!): Boolean! }
type Event { text: String!  broken: String }
type Subscription {
  room(room: String!): String!
  sharedRoom(room: String!): String!
  ticks(n: Int!): Int!
  explode: Int!
  brokenEvent: Event!
  idle(tag: String!): Int!
  stubborn(tag: String!, partner: String!): Int!
  faulty: Int!
}
"""


class Probe:
    """What the resolvers tell the test: counters, and events created on first use."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.log: list[str] = []
        self._events: dict[str, anyio.Event] = {}
        self._thresholds: dict[str, list[tuple[int, anyio.Event]]] = {}

    def event(self, name: str) -> anyio.Event:
        """The event called ``name`` (made inside the running event loop on first use)."""
        if name not in self._events:
            self._events[name] = anyio.Event()
        return self._events[name]

    def mark(self, name: str) -> None:
        """Record ``name`` in the log, count it and set its event."""
        self.log.append(name)
        self.counts[name] += 1
        self.event(name).set()
        for threshold, reached in self._thresholds.get(name, []):
            if self.counts[name] >= threshold:
                reached.set()

    async def wait_count(self, name: str, threshold: int) -> None:
        """Wait until ``name`` was marked at least ``threshold`` times."""
        if self.counts[name] >= threshold:
            return
        reached = anyio.Event()
        self._thresholds.setdefault(name, []).append((threshold, reached))
        await reached.wait()


def make_schema(probe: Probe) -> Schema:
    """The hardening schema, its resolvers reporting to ``probe``."""
    schema = Schema(SDL)
    _bind_queries(schema, probe)
    _bind_subscriptions(schema, probe)
    schema.check()
    return schema


def _bind_queries(schema: Schema, probe: Probe) -> None:
    schema.field("Query.hello")(lambda root, info: "world")

    @schema.field("Query.fail")
    def fail(root: Any, info: Any) -> str:
        raise RuntimeError(SECRET)

    @schema.field("Query.failOnPurpose")
    def fail_on_purpose(root: Any, info: Any) -> str:
        raise GraphQLError("You may not", extensions={"code": "FORBIDDEN"})

    @schema.field("Query.sleep")
    async def sleep(root: Any, info: Any, seconds: float) -> str:
        probe.mark("sleep started")
        try:
            await anyio.sleep(seconds)
        finally:
            probe.mark("sleep finally")
        return "awake"

    @schema.field("Query.depth")
    def depth(root: Any, info: Any, node: dict[str, Any] | None = None) -> int:
        levels = 0
        while node is not None:
            levels, node = levels + 1, node.get("child")
        return levels

    schema.field("Query.n")(lambda root, info, v=None: v)

    @schema.field("Query.items")
    def items(root: Any, info: Any, first: int) -> list[int]:
        if not 0 <= first <= MAX_ITEMS:
            raise GraphQLError(f"first must be between 0 and {MAX_ITEMS}")
        return list(range(first))

    @schema.field("Mutation.publish")
    async def publish(root: Any, info: Any, room: str, text: str) -> bool:
        await info.context.broadcast.publish(f"room:{room}", text)
        return True


def _bind_subscriptions(schema: Schema, probe: Probe) -> None:
    async def room(root: Any, info: Any, room: str) -> AsyncIterator[str]:
        async with info.context.broadcast.subscribe(f"room:{room}") as stream:
            probe.mark(f"subscribed:{room}")
            try:
                async for text in stream:
                    yield text
            finally:
                probe.mark(f"left:{room}")

    schema.field("Subscription.room")(room)
    schema.field("Subscription.sharedRoom", shared=True)(room)

    @schema.field("Subscription.ticks")
    async def ticks(root: Any, info: Any, n: int) -> AsyncIterator[int]:
        for value in range(n):
            yield value

    @schema.field("Subscription.explode")
    async def explode(root: Any, info: Any) -> AsyncIterator[int]:
        yield 1
        raise RuntimeError(SECRET)

    @schema.field("Subscription.brokenEvent")
    async def broken_event(root: Any, info: Any) -> AsyncIterator[dict[str, str]]:
        yield {"text": "first"}
        yield {"text": "second"}

    @schema.field("Event.broken")
    def broken(root: Any, info: Any) -> str:
        raise ValueError(SECRET)

    _bind_cleanup_subscriptions(schema, probe)


def _bind_cleanup_subscriptions(schema: Schema, probe: Probe) -> None:
    @schema.field("Subscription.idle")
    async def idle(root: Any, info: Any, tag: str) -> AsyncIterator[int]:
        probe.mark(f"started:{tag}")
        try:
            await anyio.sleep_forever()
            yield 0  # never reached: a source that never yields (row F02)
        finally:
            probe.mark(f"finally:{tag}")

    @schema.field("Subscription.stubborn")
    async def stubborn(root: Any, info: Any, tag: str, partner: str) -> AsyncIterator[int]:
        try:
            yield 0
            await anyio.sleep_forever()
        finally:
            # Finishes only if the partner's cleanup runs at the same time (row F05).
            probe.mark(f"cleanup:{tag}")
            with anyio.CancelScope(shield=True), anyio.move_on_after(PARTNER_WAIT):
                await probe.event(f"cleanup:{partner}").wait()
                probe.mark(f"finally:{tag}")

    @schema.field("Subscription.faulty")
    async def faulty(root: Any, info: Any) -> AsyncIterator[int]:
        try:
            yield 0
            await anyio.sleep_forever()
        finally:
            probe.mark("faulty cleanup")
            raise RuntimeError("cleanup failed on purpose")  # row F06


def build_app(probe: Probe | None = None, **settings: Any) -> GraphQL:
    """A fresh app over the hardening schema with an in-memory broadcast.

    Args:
        probe: where resolvers report; a new one when omitted.
        **settings: ``GraphQL`` keyword arguments (``Settings`` fields and hooks).

    Returns:
        The app.
    """
    return GraphQL(make_schema(probe or Probe()), broadcast=Broadcast(), **settings)


#: The strict profile served under hypercorn.
STRICT_LIMITS = Limits(max_connections=3, operation_timeout=0.2)


def crash_on_request(default: Context) -> Context:
    """A context factory that raises, inside anyql's session, when asked to (row F08)."""
    if CRASH in default.connection_params:
        raise RuntimeError(SECRET)
    return default


def strict_app(probe: Probe | None = None) -> GraphQL:
    """The strict profile: masking on, introspection off, Origin allow-list, small limits."""
    return build_app(
        probe,
        context=crash_on_request,
        mask_errors=True,
        introspection=False,
        allowed_origins=(TRUSTED_ORIGIN,),
        limits=STRICT_LIMITS,
    )


app = strict_app()
