"""The app of the resume tests (tests/e2e/test_resume_clients.py): a subscription whose
source yields numbered ``anyql.Event``s and honours ``anyql.resume_point``.

``numbers(to, cutAfter)`` yields ``Event(n, str(n))`` for n from 0 (or after the resume
point) below ``to``. A subscription that is not resuming stops after ``cutAfter``: over a
WebSocket it closes its own connection (4000, which the graphql-ws client retries), over SSE
it waits until the server goes away (the test restarts the server). A resumed one runs to
the end and completes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio

from anyql import Event, GraphQL, Schema, resume_point

schema = Schema(
    """
    type Query { hello: String! }
    type Subscription { numbers(to: Int!, cutAfter: Int = -1): Int! }
    """
)


@schema.field("Query.hello")
def hello(root: Any, info: Any) -> str:
    return "world"


@schema.field("Subscription.numbers")
async def numbers(root: Any, info: Any, to: int, cutAfter: int) -> AsyncIterator[Event]:
    after = resume_point(info)
    for n in range(0 if after is None else int(after) + 1, to):
        yield Event(n, str(n))
        if n == cutAfter and after is None:
            connection = info.context.connection
            if connection is not None:
                connection.close(4000, "cut on purpose")
            await anyio.sleep_forever()


app = GraphQL(schema)
