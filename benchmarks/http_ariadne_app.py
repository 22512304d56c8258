"""The Ariadne app ``benchmarks/http.py --compare ariadne`` serves with uvicorn.

Owns ``app`` (``ariadne.asgi.GraphQL``) and ``schema``, built from ``_http_schema.SDL``
with the same resolvers bound to the same list fields as anyql's ``http_app`` (every other
field is read from the dicts by graphql-core's default resolver), over the same prebuilt
data. No explorer page, no debug output. Needs ``ariadne`` (the ``bench`` extra); imports
neither anyql nor anyio.
"""

from __future__ import annotations

from ariadne import ObjectType, QueryType, make_executable_schema
from ariadne.asgi import GraphQL
from ariadne.explorer import ExplorerHttp405

from benchmarks import _http_schema as data

__all__ = ["app", "schema"]

query = QueryType()
query.set_field("hello", data.hello)
query.set_field("items", data.items)
query.set_field("users", data.users)
user = ObjectType("User")
user.set_field("posts", data.posts)
post = ObjectType("Post")
post.set_field("comments", data.comments)

schema = make_executable_schema(data.SDL, query, user, post)
app = GraphQL(schema, debug=False, explorer=ExplorerHttp405())
