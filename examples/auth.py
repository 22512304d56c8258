"""Authentication with a token in the WebSocket connection params.

Owns the example's users, tokens, schema and app. Imports anyql and the standard library
only.

Browsers cannot set headers on a WebSocket, so GraphQL-over-WebSocket clients send their
credentials in the ``connection_init`` payload (``connectionParams`` in graphql-ws). The
``on_connect`` hook checks ``params["token"]``: a missing or unknown token refuses the
connection (graphql-transport-ws closes 4403; the legacy graphql-ws protocol sends
``connection_error`` and closes 1011). A valid one stores the user in ``context.state``,
where every resolver of that connection finds it. Plain HTTP requests have no connection
params; they authenticate with an ``Authorization: Bearer <token>`` header instead.

    anyql serve examples.auth:app
    # graphql-ws:  createClient({ url, connectionParams: { token: "alice-token" } })
    { me { name roles } }
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from anyql import ConnectionRejected, Context, GraphQL, Schema


@dataclass(frozen=True, slots=True)
class User:
    name: str
    roles: tuple[str, ...]


#: Demo credentials. A real app looks tokens up in its session store or verifies a JWT.
USERS_BY_TOKEN: Mapping[str, User] = {
    "alice-token": User("alice", ("admin", "reader")),
    "bob-token": User("bob", ("reader",)),
}

schema = Schema(
    """
    type User { name: String!  roles: [String!]! }
    type Query {
      "The authenticated user; null over HTTP without an Authorization header."
      me: User
    }
    """
)


def user_for_token(token: object) -> User | None:
    """The user a token belongs to, or None for anything else.

    Args:
        token: whatever the client sent (not necessarily a string).

    Returns:
        The matching user, or None.
    """
    if not isinstance(token, str):
        return None
    found = None
    for known, user in USERS_BY_TOKEN.items():
        # Compare every token in constant time, so timing does not reveal a valid prefix.
        if hmac.compare_digest(known.encode(), token.encode()):
            found = user
    return found


async def on_connect(context: Context, params: Mapping[str, Any]) -> dict[str, Any]:
    """Accept the connection only with a valid ``token`` in the connection params.

    Args:
        context: the connection's context; the user is stored in ``context.state``.
        params: the ``connection_init`` payload.

    Returns:
        The ``connection_ack`` payload: the user's name.

    Raises:
        ConnectionRejected: the token is missing or unknown.
    """
    user = user_for_token(params.get("token"))
    if user is None:
        raise ConnectionRejected({"message": "A valid token is required"})
    context.state["user"] = user
    return {"user": user.name}


def authenticate_http(context: Context) -> Context:
    """Context factory: authenticate plain HTTP requests by their bearer token.

    WebSocket connections are left to ``on_connect`` (the context of a connection has
    ``connection`` set).

    Args:
        context: the default context of a request or connection.

    Returns:
        The same context, with ``state["user"]`` set for a valid bearer token.
    """
    if context.connection is None:
        scheme, _, token = (context.request.header("authorization") or "").partition(" ")
        user = user_for_token(token) if scheme.lower() == "bearer" else None
        if user is not None:
            context.state["user"] = user
    return context


@schema.field("Query.me")
def me(root: Any, info: Any) -> User | None:
    user: User | None = info.context.state.get("user")
    return user


app = GraphQL(schema, on_connect=on_connect, context=authenticate_http)
