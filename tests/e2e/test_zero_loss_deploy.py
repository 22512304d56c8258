"""A deploy that loses nothing: two servers behind one Redis and one address, the first
drained while a publisher sends a numbered event every 10 ms (docs/deployment.md,
"A deploy that loses nothing").

The subscribers are real clients: npm graphql-ws with clients/js/resumable.mjs over a
WebSocket and npm ``eventsource`` over SSE (tests/node/deploy_clients.mjs). They reach the
servers through a TCP proxy in this test, which sends new connections to the first server
and, from the moment the drain starts, to the second, as a load balancer does. The durable
broadcast runs on a private redis-server with the append-only file on; one variant also
kills Redis and starts it again mid-run. Every subscriber must receive every number from its
first one to the last, exactly once and in order.
"""

from __future__ import annotations

import json
import shutil
import signal
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest

from anyql.broadcast import Broadcast, BroadcastError, Retention
from benchmarks._lines import Lines
from benchmarks._tcp_proxy import tcp_proxy
from tests.broadcast.helpers import RedisServer
from tests.broadcast.helpers import free_port as free_redis_port
from tests.e2e.conftest import NODE_DIR
from tests.e2e.servers import running_server
from tests.requirements import unavailable

pytestmark = [pytest.mark.anyio, pytest.mark.e2e, pytest.mark.redis]

TARGET = "tests.e2e.app_deploy:app"
EVENTS = 400  # one every 10 ms: four seconds of publishing
DRAIN_AT = 100
REDIS_DOWN_AT = 250
WS_CLIENTS = 10
SSE_CLIENTS = 10


async def publish_numbers(
    broadcast: Broadcast, on_number: Callable[[int], Any], stop_after: int
) -> None:
    """Publish 0..stop_after-1 every 10 ms; a number Redis did not take is sent again."""
    for n in range(stop_after):
        await on_number(n)
        while True:
            try:
                await broadcast.publish("ticks", n)
                break
            except BroadcastError:
                await anyio.sleep(0.05)  # Redis is down: retry delay, not synchronisation
        await anyio.sleep(0.01)  # the publisher's pace


@pytest.mark.parametrize("redis_restart", [False, True], ids=["drain", "drain+redis-restart"])
async def test_a_drained_server_hands_its_subscribers_over_without_loss(
    tmp_path: Path, node: str, redis_restart: bool
) -> None:
    executable = shutil.which("redis-server")
    if executable is None:
        unavailable("redis-server is not installed")
    redis = RedisServer(executable, tmp_path, free_redis_port(), appendonly=True)
    redis.start()
    prefix = f"anyql-deploy-{uuid.uuid4().hex[:8]}:"
    env = {"ANYQL_TEST_REDIS": redis.url, "ANYQL_TEST_PREFIX": prefix}
    drain = ["--limit", "drain_window=1"]
    current = {"port": 0}
    try:
        with (
            running_server("native-trio", TARGET, env=env, options=drain) as first,
            running_server("native-asyncio", TARGET, env=env, options=drain) as second,
        ):
            current["port"] = first.port
            publisher = Broadcast(
                redis.url,
                durable=True,
                key_prefix=prefix,
                retention=Retention(max_length=100_000, idle_ttl=600),
                publish_timeout=1.0,
            )
            async with publisher, tcp_proxy(lambda: current["port"]) as port:
                report = await run_deploy(
                    node, port, publisher, first, second, current, redis if redis_restart else None
                )
    finally:
        redis.stop()

    assert len(report) == WS_CLIENTS + SSE_CLIENTS
    for client in report:
        numbers = client["numbers"]
        assert numbers, client
        assert numbers == list(range(EVENTS)), (client["kind"], numbers)
        assert client["errors"] == [], client
        assert client["reconnects"] >= 1, client  # it did move to the second server


async def run_deploy(
    node: str,
    port: int,
    publisher: Broadcast,
    first: Any,
    second: Any,
    current: dict[str, int],
    redis: RedisServer | None,
) -> list[dict[str, Any]]:
    http_url = f"http://127.0.0.1:{port}/graphql"
    ws_url = f"ws://127.0.0.1:{port}/graphql"
    command = [
        node,
        str(NODE_DIR / "deploy_clients.mjs"),
        http_url,
        ws_url,
        str(WS_CLIENTS),
        str(SSE_CLIENTS),
        str(EVENTS - 1),
        "60",
    ]
    async with await anyio.open_process(command, cwd=NODE_DIR) as clients:
        assert clients.stdout is not None
        next_line = Lines(clients.stdout).next

        async def on_number(n: int) -> None:
            if n == DRAIN_AT:
                current["port"] = second.port  # the load balancer stops routing to it
                first.process.send_signal(signal.SIGTERM)
            if redis is not None and n == REDIS_DOWN_AT:
                redis.kill()
                redis.start()

        with anyio.fail_after(90):
            async with anyio.create_task_group() as group:
                # Warm-up numbers until every client has its first event.
                async def warm_up() -> None:
                    n = -1
                    while True:
                        await publisher.publish("ticks", n)
                        n -= 1
                        await anyio.sleep(0.05)

                group.start_soon(warm_up)
                assert await next_line() == "ready"
                group.cancel_scope.cancel()
            await publish_numbers(publisher, on_number, EVENTS)
            report: list[dict[str, Any]] = json.loads(await next_line())
    for client in report:  # the warm-up numbers are negative
        client["numbers"] = [n for n in client["numbers"] if n >= 0]
    return report
