"""The counter: a subscription that counts up to ``target``, sleeping between values.

anyql serve examples.counter:app            # then open http://127.0.0.1:8000/graphql
subscription { count(target: 5, delayMs: 500) }
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio

from anyql import GraphQL, Schema

schema = Schema(
    """
    type Query { hello(name: String = "world"): String! }
    type Subscription { count(target: Int!, delayMs: Int = 500): Int! }
    """
)


@schema.field("Query.hello")
def hello(root: Any, info: Any, name: str) -> str:
    return f"Hello {name}"


@schema.field("Subscription.count")
async def count(root: Any, info: Any, target: int, delayMs: int) -> AsyncIterator[int]:
    for value in range(target):
        yield value
        await anyio.sleep(delayMs / 1000)


app = GraphQL(schema)
