"""An HTTP client that goes away cancels its query (the resolvers' ``finally`` runs); a
mutation runs to completion unless ``cancel_mutations_on_disconnect`` is on. On the native
server and under hypercorn (ASGI ``http.disconnect``), both backends, real TCP.
"""

from __future__ import annotations

import json
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
import pytest

from anyql import GraphQL, Schema
from tests.hardening.clients import serving
from tests.in_process import hypercorn_serving

pytestmark = pytest.mark.anyio

SERVERS = pytest.mark.parametrize("server", ["native", "hypercorn"])
#: How long the slow query's resolver would sleep if nothing cancelled it.
SLOW_QUERY_SECONDS = 60.0
#: The promise: a departed client's query is cancelled within this; far below the
#: resolver's own sleep, so meeting it means the cancellation ended the resolver.
CANCELLED_WITHIN = 1.0


class Probe:
    """Events the test waits on: nothing here sleeps."""

    def __init__(self) -> None:
        self.query_started = anyio.Event()
        self.query_cleaned_up = anyio.Event()
        self.query_cancelled = False
        self.mutation_started = anyio.Event()
        self.release_mutation = anyio.Event()
        self.mutation_ended = anyio.Event()
        self.mutation_outcome = ""


def make_app(probe: Probe, **settings: Any) -> GraphQL:
    schema = Schema("type Query { slow: Int } type Mutation { write: Int }")

    @schema.field("Query.slow")
    async def slow(root: Any, info: Any) -> int:
        probe.query_started.set()
        try:
            await anyio.sleep(SLOW_QUERY_SECONDS)
        except anyio.get_cancelled_exc_class():
            probe.query_cancelled = True
            raise
        finally:
            probe.query_cleaned_up.set()
        return 1  # pragma: no cover

    @schema.field("Mutation.write")
    async def write(root: Any, info: Any) -> int:
        probe.mutation_started.set()
        try:
            await probe.release_mutation.wait()
            probe.mutation_outcome = "completed"
            return 1
        except anyio.get_cancelled_exc_class():
            probe.mutation_outcome = "cancelled"
            raise
        finally:
            probe.mutation_ended.set()

    return GraphQL(schema, **settings)


def server_for(kind: str, app: GraphQL, backend: str) -> AbstractAsyncContextManager[int]:
    return serving(app) if kind == "native" else hypercorn_serving(app, backend)


async def post(port: int, query: str) -> anyio.abc.SocketStream:
    """Open a connection and send one POST; the answer is never read."""
    stream = await anyio.connect_tcp("127.0.0.1", port)
    body = json.dumps({"query": query}).encode()
    head = (
        f"POST /graphql HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode()
    await stream.send(head + body)
    return stream


@SERVERS
async def test_H42_a_query_whose_client_leaves_is_cancelled_and_cleaned_up(
    server: str, anyio_backend_name: str
) -> None:
    probe = Probe()
    async with server_for(server, make_app(probe), anyio_backend_name) as port:
        client = await post(port, "{ slow }")
        with anyio.fail_after(10):
            await probe.query_started.wait()
        await client.aclose()
        # The resolver's finally runs within a second of the close, long before its own
        # 60 s sleep could end, and because it was cancelled.
        with anyio.fail_after(CANCELLED_WITHIN):
            await probe.query_cleaned_up.wait()
    assert probe.query_cancelled


@SERVERS
@pytest.mark.parametrize(
    ("cancel_mutations", "outcome"), [(False, "completed"), (True, "cancelled")]
)
async def test_H42_a_mutation_runs_to_completion_unless_told_to_cancel(
    server: str, anyio_backend_name: str, cancel_mutations: bool, outcome: str
) -> None:
    probe = Probe()
    app = make_app(probe, cancel_mutations_on_disconnect=cancel_mutations)
    async with server_for(server, app, anyio_backend_name) as port:
        writer = await post(port, "mutation { write }")
        reader = await post(port, "{ slow }")
        with anyio.fail_after(10):
            await probe.mutation_started.wait()
            await probe.query_started.wait()
            await writer.aclose()
            await reader.aclose()
            # The server noticed the second departure, so the first one too, in practice.
            await probe.query_cleaned_up.wait()
            if not cancel_mutations:
                assert not probe.mutation_ended.is_set()
            probe.release_mutation.set()
            await probe.mutation_ended.wait()
    assert probe.mutation_outcome == outcome


async def test_a_client_that_stays_gets_its_answer_and_a_pipelined_request_is_kept(
    anyio_backend_name: str,
) -> None:
    """While a request is answered the native server reads ahead for end of stream; what
    it reads (the next pipelined request) is kept and served next."""
    schema = Schema("type Query { n: Int }")
    schema.field("Query.n")(lambda root, info: 7)
    async with serving(GraphQL(schema)) as port:
        stream = await anyio.connect_tcp("127.0.0.1", port)
        body = b'{"query": "{ n }"}'
        one = (
            b"POST /graphql HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        await stream.send(one + one)
        received = b""
        with anyio.fail_after(10):
            while received.count(b'{"data":{"n":7}}') < 2:
                received += await stream.receive()
        await stream.aclose()
    assert received.count(b"HTTP/1.1 200") == 2
