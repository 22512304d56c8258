"""Single-connection SSE across processes: with a Redis broadcast the processes relay a
stream's requests to the one that holds it; without one, a token held elsewhere gets 404
with the reason (row E04).

Two native servers (Trio and asyncio) on their own ports make the routing explicit; hypercorn
with two workers shows it where the kernel picks the worker. Every request goes on a new
connection. The client is Python's ``http.client``; a reader thread collects the stream.
Without Redis the relayed tests skip, except under CI, where they fail.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest

from tests.broadcast.helpers import LOCALHOST, answers_ping
from tests.e2e.servers import RunningServer, running_server
from tests.requirements import unavailable

pytestmark = pytest.mark.e2e

TOKEN = "x-graphql-event-stream-token"
DEADLINE = 15.0


@pytest.fixture
def redis_env() -> dict[str, str]:
    if not answers_ping(6379):
        unavailable(f"nothing answers PING on {LOCALHOST}:6379")
    return {"ANYQL_TEST_REDIS": f"redis://{LOCALHOST}:6379/0"}


def call(
    server: RunningServer,
    method: str,
    *,
    headers: dict[str, str] | None = None,
    body: object = None,
    target: str = "/graphql",
    source: str = "127.0.0.1",
) -> tuple[int, bytes]:
    """One request on a new connection from ``source`` (any 127.0.0.0/8 address)."""
    connection = http.client.HTTPConnection(
        "127.0.0.1", server.port, timeout=DEADLINE, source_address=(source, 0)
    )
    try:
        data = None if body is None else json.dumps(body).encode()
        sent = dict(headers or {})
        if data is not None:
            sent["content-type"] = "application/json"
        connection.request(method, target, body=data, headers=sent)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


class Stream:
    """An open single-connection stream, read by a thread."""

    def __init__(self, server: RunningServer, token: str) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        self.connection.request(
            "GET", "/graphql", headers={"accept": "text/event-stream", TOKEN: token}
        )
        self.response = self.connection.getresponse()
        self.text = ""
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            while chunk := self.response.read1(65536):
                with self.changed:
                    self.text += chunk.decode()
                    self.changed.notify_all()
        except (OSError, ValueError, AttributeError):
            pass  # closed by the test (http.client drops its file object on close)

    def wait_for(self, text: str) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: text in self.text, timeout=DEADLINE), self.text

    def close(self) -> None:
        self.connection.close()


@contextmanager
def opened(server: RunningServer, token: str) -> Iterator[Stream]:
    stream = Stream(server, token)
    try:
        assert stream.response.status == 200
        yield stream
    finally:
        stream.close()


def reserve(server: RunningServer, source: str = "127.0.0.1") -> str:
    status, body = call(server, "PUT", source=source)
    assert status == 201, body
    return body.decode()


def operate(server: RunningServer, token: str, query: str, operation_id: str) -> tuple[int, bytes]:
    body = {"query": query, "extensions": {"operationId": operation_id}}
    return call(server, "POST", headers={TOKEN: token}, body=body)


def stop(server: RunningServer, token: str, operation_id: str) -> int:
    status, _ = call(
        server, "DELETE", headers={TOKEN: token}, target=f"/graphql?operationId={operation_id}"
    )
    return status


@pytest.fixture
def two_servers(redis_env: dict[str, str]) -> Iterator[tuple[RunningServer, RunningServer]]:
    with ExitStack() as stack:
        yield (
            stack.enter_context(running_server("native-trio", env=redis_env)),
            stack.enter_context(running_server("native-asyncio", env=redis_env)),
        )


@pytest.mark.redis
def test_E04_with_redis_a_stream_opened_at_another_process_gets_operations_sent_anywhere(
    two_servers: tuple[RunningServer, RunningServer],
) -> None:
    maker, holder = two_servers
    token = reserve(maker)
    with opened(holder, token) as stream:
        assert (
            operate(maker, token, "subscription { count(target: 1000, delayMs: 50) }", "a")[0]
            == 202
        )
        assert operate(holder, token, "{ hello }", "b")[0] == 202
        stream.wait_for('{"id":"b","payload":{"data":{"hello":"Hello world"}}}')
        stream.wait_for('{"id":"a","payload":{"data":{"count":1}}}')
        assert stop(maker, token, "a") == 200
        again = operate(maker, token, "{ hello }", "a")  # the id is free once stopped
        assert again[0] == 202, again
        stream.wait_for('event: complete\ndata: {"id":"a"}')
        second = call(maker, "GET", headers={"accept": "text/event-stream", TOKEN: token})
        assert second[0] == 409  # one stream per reservation, whichever process is asked
        duplicate = operate(maker, token, "subscription { count(target: 5, delayMs: 1000) }", "c")
        assert duplicate[0] == 202
        assert operate(holder, token, "{ hello }", "c")[0] == 409
    for server in (maker, holder):
        assert "Traceback" not in server.log


def test_E04_without_redis_a_token_held_by_another_process_gets_404_saying_why() -> None:
    with running_server("native-trio") as first, running_server("native-asyncio") as second:
        token = reserve(first)
        status, body = operate(second, token, "{ hello }", "a")
        assert status == 404
        message = json.loads(body)["errors"][0]["message"]
        assert "sticky" in message and "Redis" in message
        assert call(second, "GET", headers={"accept": "text/event-stream", TOKEN: token})[0] == 404
        with opened(first, token) as stream:
            assert operate(first, token, "{ hello }", "a")[0] == 202
            stream.wait_for('"id":"a","payload"')


@pytest.mark.redis
@pytest.mark.parametrize("worker_class", ["trio", "asyncio"])
def test_E04_hypercorn_with_two_workers_and_redis_serves_every_request(
    redis_env: dict[str, str], worker_class: str
) -> None:
    with running_server(f"hypercorn-{worker_class}", env=redis_env, workers=2) as server:
        for attempt in range(6):  # the kernel picks the worker of each connection
            token = reserve(server)
            with opened(server, token) as stream:
                for index in range(4):
                    query = "{ hello }"
                    status, body = operate(server, token, query, f"{attempt}-{index}")
                    assert status == 202, body
                for index in range(4):
                    stream.wait_for(f'event: complete\ndata: {{"id":"{attempt}-{index}"}}')
        assert "Traceback" not in server.log


@pytest.mark.parametrize("worker_class", ["trio", "asyncio"])
def test_E04_hypercorn_with_two_workers_and_no_redis_answers_404_where_the_token_is_unknown(
    worker_class: str,
) -> None:
    with running_server(f"hypercorn-{worker_class}", workers=2) as server:
        outcomes: set[int] = set()
        for attempt in range(200):  # until both workers were reached: the kernel decides
            # a new client address each time: reservations are bounded per address
            token = reserve(server, source=f"127.0.{attempt // 250}.{attempt % 250 + 2}")
            status, body = operate(server, token, "{ hello }", str(attempt))
            outcomes.add(status)
            if status == 404:
                assert "sticky" in json.loads(body)["errors"][0]["message"]
            if outcomes == {202, 404}:
                break
        assert outcomes == {202, 404}
