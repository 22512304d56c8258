"""The counter example with GraphiQL subscribing over SSE, for the browser test.

As ``app_graphiql.py`` (assets from ``ANYQL_GRAPHIQL_ASSETS``, the schema of
examples/counter.py), with ``graphiql_sse=True``.
"""

from __future__ import annotations

import os

from anyql import GraphQL
from examples.counter import schema

app = GraphQL(schema, graphiql_assets_url=os.environ["ANYQL_GRAPHIQL_ASSETS"], graphiql_sse=True)
