"""``Schema``: an SDL (or an existing ``GraphQLSchema``) plus the resolvers bound to it.

Owns ``Schema``, ``FieldOptions`` and ``as_schema``. Imports ``graphql``, the standard
library and ``types`` only: no anyio, no execution.

A resolver bound on the Subscription root type is the field's *source*: graphql-core's
``subscribe`` on the field (an async generator function, or a function returning or
awaiting an async iterable). The field's ``resolve`` then returns the event itself, so each
yielded value is the field's value.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from graphql import (
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLSchema,
    build_schema,
)
from graphql.pyutils import camel_to_snake

from .types import SLOW_CONSUMER_POLICIES, SlowConsumerPolicy

__all__ = ["FieldOptions", "Schema", "SlowConsumerPolicy", "as_schema"]


Resolver = TypeVar("Resolver", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class FieldOptions:
    """Per-field options given to ``@schema.field``.

    Attributes:
        shared: identical subscriptions to this field share one source and one execution
            per event.
        slow_consumer: the slow-consumer policy for this subscription field, or None for
            the app's default.
    """

    shared: bool = False
    slow_consumer: SlowConsumerPolicy | None = None


_DEFAULT_OPTIONS = FieldOptions()


class Schema:
    """A GraphQL schema and the resolvers bound to it.

    Args:
        sdl: the schema in GraphQL SDL.
        snake_case: pass arguments (and input object fields) to resolvers under their
            snake_case names (``delayMs`` as ``delay_ms``), and resolve a field without a
            resolver, such as ``sentAt``, from the attribute or key ``sent_at`` (falling
            back to ``sentAt``).

    Raises:
        graphql.GraphQLError: the SDL does not parse or does not build a valid schema.
    """

    def __init__(self, sdl: str, *, snake_case: bool = False) -> None:
        self._init(build_schema(sdl), snake_case=snake_case)

    def _init(self, graphql_schema: GraphQLSchema, *, snake_case: bool) -> None:
        self._schema = graphql_schema
        self.snake_case = snake_case
        self._options: dict[str, FieldOptions] = {}
        if snake_case:
            _use_snake_case(graphql_schema)

    @classmethod
    def from_graphql(cls, graphql_schema: GraphQLSchema) -> Schema:
        """Wrap an existing graphql-core schema (as Ariadne, Graphene or Strawberry build).

        Fields already carrying ``resolve``/``subscribe`` keep them; ``@schema.field``
        binds more, mutating ``graphql_schema`` in place.
        """
        schema = cls.__new__(cls)
        schema._init(graphql_schema, snake_case=False)
        return schema

    @property
    def graphql_schema(self) -> GraphQLSchema:
        """The graphql-core schema executed."""
        return self._schema

    def field(
        self,
        coordinate: str,
        *,
        shared: bool = False,
        slow_consumer: SlowConsumerPolicy | None = None,
    ) -> Callable[[Resolver], Resolver]:
        """Bind the decorated function as the resolver of ``coordinate`` (``"Type.field"``).

        On the Subscription root type the function is the field's source: an async
        generator function, or a function returning (or awaiting, then returning) an async
        iterable; each value it yields is the field's value.

        Args:
            coordinate: ``"Type.field"``.
            shared: subscriptions only: identical operations share one source.
            slow_consumer: subscriptions only: ``"block"``, ``"drop_oldest"``,
                ``"latest"`` or ``"close"``; None keeps the app's default.

        Returns:
            A decorator returning the function unchanged.

        Raises:
            ValueError: the type or field does not exist, the type is not an object type,
                ``slow_consumer`` is unknown, or ``shared``/``slow_consumer`` is given for
                a field that is not a subscription field.
        """
        object_type, field = self._lookup(coordinate)
        is_subscription = object_type is self._schema.subscription_type
        if slow_consumer is not None and slow_consumer not in SLOW_CONSUMER_POLICIES:
            raise ValueError(
                f"slow_consumer for {coordinate} must be one of {sorted(SLOW_CONSUMER_POLICIES)},"
                f" not {slow_consumer!r}"
            )
        if (shared or slow_consumer is not None) and not is_subscription:
            raise ValueError(
                f"shared and slow_consumer apply to Subscription fields only, not {coordinate}"
            )

        def bind(resolver: Resolver) -> Resolver:
            if is_subscription and inspect.isgeneratorfunction(resolver):
                raise ValueError(
                    f"the source of {coordinate} is a synchronous generator function"
                    f" ({resolver.__qualname__}); write it as 'async def' so that it is an"
                    " async generator (its finally then runs when the subscription ends)"
                )
            if is_subscription:
                field.subscribe = resolver
                field.resolve = _the_event
            else:
                field.resolve = resolver
            self._options[coordinate] = FieldOptions(shared, slow_consumer)
            return resolver

        return bind

    def field_options(self, coordinate: str) -> FieldOptions:
        """The options given when ``coordinate`` was bound (defaults if it was not)."""
        return self._options.get(coordinate, _DEFAULT_OPTIONS)

    def check(self) -> None:
        """Check the bindings before serving.

        Raises:
            ValueError: naming every Subscription field that has no source, or whose source
                is a synchronous generator function (bound outside ``field``, e.g. by
                Ariadne).
        """
        subscription = self._schema.subscription_type
        if subscription is None:
            return
        missing = [
            f"{subscription.name}.{name}"
            for name, field in subscription.fields.items()
            if field.subscribe is None
        ]
        if missing:
            raise ValueError(
                "Subscription fields without a source: " + ", ".join(missing) + "."
                " Bind one with @schema.field(...) (an async generator function)."
            )
        synchronous = [
            f"{subscription.name}.{name}"
            for name, field in subscription.fields.items()
            if inspect.isgeneratorfunction(field.subscribe)
        ]
        if synchronous:
            raise ValueError(
                "Subscription sources that are synchronous generator functions: "
                + ", ".join(synchronous)
                + ". Write them as 'async def' so that they are async generators."
            )

    def _lookup(self, coordinate: str) -> tuple[GraphQLObjectType, GraphQLField]:
        type_name, dot, field_name = coordinate.partition(".")
        if not dot or not type_name or not field_name:
            raise ValueError(f"expected a 'Type.field' coordinate, not {coordinate!r}")
        named_type = self._schema.get_type(type_name)
        if named_type is None:
            object_types = [
                name
                for name, candidate in self._schema.type_map.items()
                if isinstance(candidate, GraphQLObjectType) and not name.startswith("__")
            ]
            hint = _did_you_mean(type_name, object_types)
            raise ValueError(f"unknown type {type_name!r} in {coordinate!r}{hint}")
        if not isinstance(named_type, GraphQLObjectType):
            raise ValueError(f"{type_name!r} is not an object type (in {coordinate!r})")
        field = named_type.fields.get(field_name)
        if field is None:
            hint = _did_you_mean(field_name, list(named_type.fields))
            raise ValueError(f"unknown field {field_name!r} on type {type_name!r}{hint}")
        return named_type, field


def _did_you_mean(name: str, candidates: list[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest candidates, or nothing."""
    by_lower = {candidate.lower(): candidate for candidate in candidates}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.6)
    if not close:
        return ""
    return "; did you mean " + " or ".join(repr(by_lower[match]) for match in close) + "?"


def as_schema(obj: Any) -> Schema:
    """Accept a ``Schema``, a ``GraphQLSchema``, or an object exposing one.

    Args:
        obj: a ``Schema``; a graphql-core ``GraphQLSchema`` (Ariadne); or an object with a
            ``graphql_schema`` (Graphene) or ``_schema`` (Strawberry) attribute holding one.

    Returns:
        A ``Schema``.

    Raises:
        TypeError: ``obj`` is none of these.
    """
    if isinstance(obj, Schema):
        return obj
    if isinstance(obj, GraphQLSchema):
        return Schema.from_graphql(obj)
    for attribute in ("graphql_schema", "_schema"):
        inner = getattr(obj, attribute, None)
        if isinstance(inner, GraphQLSchema):
            return Schema.from_graphql(inner)
    raise TypeError(f"expected a Schema or a graphql-core GraphQLSchema, got {obj!r}")


def _the_event(root: Any, info: GraphQLResolveInfo[Any], **args: Any) -> Any:
    """``resolve`` of a subscription field: the event yielded by its source."""
    return root


def _use_snake_case(graphql_schema: GraphQLSchema) -> None:
    """Give arguments and input fields snake_case ``out_name``s; resolve fields likewise."""
    for named_type in graphql_schema.type_map.values():
        if named_type.name.startswith("__"):
            continue
        if isinstance(named_type, GraphQLObjectType):
            for name, field in named_type.fields.items():
                for arg_name, argument in field.args.items():
                    argument.out_name = camel_to_snake(arg_name)
                python_name = camel_to_snake(name)
                if field.resolve is None and python_name != name:
                    field.resolve = _snake_case_resolver(python_name, name)
        elif isinstance(named_type, GraphQLInputObjectType):
            for name, input_field in named_type.fields.items():
                input_field.out_name = camel_to_snake(name)


def _snake_case_resolver(python_name: str, graphql_name: str) -> Callable[..., Any]:
    """Resolve from ``python_name`` (attribute or key), falling back to ``graphql_name``."""

    def resolve(source: Any, info: GraphQLResolveInfo[Any], **args: Any) -> Any:
        if isinstance(source, Mapping):
            value = source.get(python_name, source.get(graphql_name))
        else:
            value = getattr(source, python_name, None)
            if value is None:
                value = getattr(source, graphql_name, None)
        if callable(value):
            return value(info, **args)
        return value

    return resolve
