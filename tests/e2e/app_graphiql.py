"""The counter example with GraphiQL assets from a local URL, for the browser test.

``ANYQL_GRAPHIQL_ASSETS`` is the base URL holding the four files ``anyql._graphiql`` names
(the test serves them from tests/node/node_modules); the schema is examples/counter.py's.
"""

from __future__ import annotations

import os

from anyql import GraphQL
from examples.counter import schema

app = GraphQL(schema, graphiql_assets_url=os.environ["ANYQL_GRAPHIQL_ASSETS"])
