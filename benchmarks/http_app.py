"""The anyql app the HTTP query benchmark serves (``anyql serve benchmarks.http_app:app``).

Owns ``app``: the shared schema and data of ``_http_schema`` (the list fields bound to its
resolvers, every other field read from the dicts by the default resolver), GraphiQL off,
the library's default limits, plus one field the other servers do not have:
``Query.planStats``, the JSON of ``app.engine.plan_stats()`` (how many operations and
fields took the planned execution path and how many the generic executor), or null while
the engine has no such method. The benchmark queries it before and after each measured
round, outside the measured window (so a round's counts include that one ``planStats``
query). Imports anyql and orjson.
"""

from __future__ import annotations

from typing import Any

import orjson

from anyql import GraphQL, Schema
from benchmarks import _http_schema as data

__all__ = ["SDL", "app"]

SDL = data.SDL + "\nextend type Query { planStats: String }\n"

schema = Schema(SDL)
schema.field("Query.hello")(data.hello)
schema.field("Query.items")(data.items)
schema.field("Query.users")(data.users)
schema.field("User.posts")(data.posts)
schema.field("Post.comments")(data.comments)


@schema.field("Query.planStats")
def plan_stats(root: Any, info: Any) -> str | None:
    """The engine's plan counters as JSON, or None when it does not count them."""
    read = getattr(app.engine, "plan_stats", None)
    return None if read is None else orjson.dumps(read()).decode()


app = GraphQL(schema, graphiql=False)
