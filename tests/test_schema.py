"""``anyql.schema``: binding resolvers, field options, snake_case, wrapping foreign schemas."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import FrozenInstanceError
from types import SimpleNamespace
from typing import Any

import pytest
from graphql import GraphQLSchema, build_schema, graphql_sync

from anyql import GraphQL
from anyql.schema import FieldOptions, Schema, as_schema

SDL = """
type Query { hello(name: String = "world"): String!  node: Node }
interface Node { id: ID! }
type Mutation { send(room: String!): Boolean! }
type Subscription { count(to: Int!): Int!  messages(room: String!): String! }
"""


def test_field_binds_a_resolver_and_returns_it_unchanged() -> None:
    schema = Schema(SDL)

    def hello(root: Any, info: Any, name: str) -> str:
        return f"Hello {name}"

    assert schema.field("Query.hello")(hello) is hello
    result = graphql_sync(schema.graphql_schema, '{ hello(name: "Ada") }')
    assert result.data == {"hello": "Hello Ada"}


@pytest.mark.parametrize(
    ("coordinate", "named"),
    [
        ("Nope.hello", "'Nope'"),
        ("Query.nope", "'nope'"),
        ("Node.id", "'Node' is not an object type"),
        ("Query", "'Type.field'"),
        ("Query.", "'Type.field'"),
    ],
)
def test_binding_to_an_unknown_coordinate_raises_naming_it(coordinate: str, named: str) -> None:
    schema = Schema(SDL)
    with pytest.raises(ValueError, match=named):
        schema.field(coordinate)


def test_unknown_slow_consumer_policy_raises() -> None:
    with pytest.raises(ValueError, match="slow_consumer"):
        Schema(SDL).field("Subscription.count", slow_consumer="sometimes")  # type: ignore[arg-type]


def test_subscription_options_on_a_query_field_raise() -> None:
    with pytest.raises(ValueError, match="Subscription fields only"):
        Schema(SDL).field("Query.hello", shared=True)


def test_field_options_are_stored_per_coordinate() -> None:
    schema = Schema(SDL)

    @schema.field("Subscription.messages", shared=True, slow_consumer="latest")
    async def messages(root: Any, info: Any, room: str) -> Any:
        yield room

    assert schema.field_options("Subscription.messages") == FieldOptions(True, "latest")
    assert schema.field_options("Subscription.count") == FieldOptions(False, None)
    with pytest.raises(FrozenInstanceError):
        schema.field_options("Subscription.messages").shared = False  # type: ignore[misc]


def test_a_subscription_binding_is_the_source_and_resolve_returns_the_event() -> None:
    schema = Schema(SDL)

    @schema.field("Subscription.count")
    async def count(root: Any, info: Any, to: int) -> Any:
        yield to

    field = schema.graphql_schema.subscription_type.fields["count"]  # type: ignore[union-attr]
    assert field.subscribe is count
    assert field.resolve is not None
    assert field.resolve("the event", None) == "the event"


def test_check_names_every_subscription_field_without_a_source() -> None:
    schema = Schema(SDL)
    with pytest.raises(ValueError, match=r"Subscription\.count, Subscription\.messages"):
        schema.check()

    @schema.field("Subscription.count")
    async def count(root: Any, info: Any, to: int) -> Any:
        yield to

    with pytest.raises(ValueError, match=r"Subscription\.messages\.") as raised:
        schema.check()
    assert "Subscription.count" not in str(raised.value)


def test_check_passes_without_a_subscription_type() -> None:
    Schema("type Query { a: Int }").check()


def test_from_graphql_accepts_fields_that_already_have_subscribe() -> None:
    graphql_schema = build_schema("type Query { a: Int } type Subscription { tick: Int }")

    async def ticks(root: Any, info: Any) -> Any:
        yield 1

    graphql_schema.subscription_type.fields["tick"].subscribe = ticks  # type: ignore[union-attr]
    schema = Schema.from_graphql(graphql_schema)
    schema.check()
    assert schema.graphql_schema is graphql_schema


def test_as_schema_accepts_schemas_and_objects_exposing_one() -> None:
    schema = Schema(SDL)
    graphql_schema = build_schema("type Query { a: Int }")
    assert as_schema(schema) is schema
    assert as_schema(graphql_schema).graphql_schema is graphql_schema
    graphene_like = SimpleNamespace(graphql_schema=graphql_schema)
    strawberry_like = SimpleNamespace(_schema=graphql_schema)
    assert as_schema(graphene_like).graphql_schema is graphql_schema
    assert as_schema(strawberry_like).graphql_schema is graphql_schema


def test_as_schema_rejects_anything_else() -> None:
    with pytest.raises(TypeError, match="GraphQLSchema"):
        as_schema(SimpleNamespace(graphql_schema="type Query { a: Int }"))


def test_invalid_sdl_raises() -> None:
    with pytest.raises(Exception, match="Unknown type"):
        Schema("type Query { a: Missing }")


SNAKE_SDL = """
input Filter { minDelayMs: Int }
type Message { sentAt: String  roomName: String  text: String }
type Query { messages(delayMs: Int!, filter: Filter): [Message!]! }
"""


def test_snake_case_passes_arguments_and_input_fields_under_snake_case_names() -> None:
    schema = Schema(SNAKE_SDL, snake_case=True)
    seen: dict[str, Any] = {}

    @schema.field("Query.messages")
    def messages(root: Any, info: Any, delay_ms: int, filter: Any = None) -> list[Any]:
        seen.update(delay_ms=delay_ms, filter=filter)
        return []

    query = "{ messages(delayMs: 5, filter: { minDelayMs: 2 }) { text } }"
    result = graphql_sync(schema.graphql_schema, query)
    assert result.errors is None
    assert seen == {"delay_ms": 5, "filter": {"min_delay_ms": 2}}


def test_snake_case_resolves_fields_from_snake_case_attributes_and_keys() -> None:
    schema = Schema(SNAKE_SDL, snake_case=True)

    @schema.field("Query.messages")
    def messages(root: Any, info: Any, delay_ms: int, filter: Any = None) -> list[Any]:
        return [
            SimpleNamespace(sent_at="attr", room_name="r1", text="a"),
            {"sent_at": "key", "roomName": "r2", "text": "b"},
            SimpleNamespace(sentAt="camel attr", text="c"),
        ]

    result = graphql_sync(schema.graphql_schema, "{ messages(delayMs: 1) { sentAt roomName } }")
    assert result.errors is None
    assert result.data == {
        "messages": [
            {"sentAt": "attr", "roomName": "r1"},
            {"sentAt": "key", "roomName": "r2"},
            {"sentAt": "camel attr", "roomName": None},
        ]
    }


def test_without_snake_case_arguments_keep_their_graphql_names() -> None:
    schema = Schema(SNAKE_SDL)
    seen: dict[str, Any] = {}

    @schema.field("Query.messages")
    def messages(root: Any, info: Any, **args: Any) -> list[Any]:
        seen.update(args)
        return []

    graphql_sync(schema.graphql_schema, "{ messages(delayMs: 5) { text } }")
    assert seen == {"delayMs": 5}


def test_graphql_schema_property_is_a_graphql_schema() -> None:
    assert isinstance(Schema(SDL).graphql_schema, GraphQLSchema)


def test_a_typo_in_a_coordinate_gets_a_did_you_mean() -> None:
    schema = Schema("type Query { hello: String userName: String }")
    with pytest.raises(ValueError, match=r"unknown type 'Querry' .*did you mean 'Query'\?"):
        schema.field("Querry.hello")
    with pytest.raises(ValueError, match=r"unknown field 'helo' .*did you mean 'hello'\?"):
        schema.field("Query.helo")
    with pytest.raises(ValueError, match=r"did you mean 'userName'\?"):
        schema.field("Query.username")
    with pytest.raises(ValueError, match=r"unknown field 'zzz' on type 'Query'$"):
        schema.field("Query.zzz")


def test_a_synchronous_generator_is_refused_as_a_subscription_source() -> None:
    schema = Schema("type Query { a: Int } type Subscription { count: Int }")

    def count(root: object, info: object) -> Iterator[int]:
        yield 1

    with pytest.raises(ValueError, match=r"synchronous generator function .*'async def'"):
        schema.field("Subscription.count")(count)
    # bound behind anyql's back (as Ariadne does): refused when the app is built
    subscription = schema.graphql_schema.subscription_type
    assert subscription is not None
    subscription.fields["count"].subscribe = count
    with pytest.raises(ValueError, match=r"synchronous generator functions: Subscription\.count"):
        GraphQL(schema)
