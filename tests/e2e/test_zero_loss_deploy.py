"""A deploy that loses nothing: two servers behind one Redis and one address, the first
drained while a publisher sends a numbered event every 10 ms (docs/deployment.md,
"A deploy that loses nothing").

The subscribers are real clients: npm graphql-ws with clients/js/resumable.mjs over a
WebSocket and npm ``eventsource`` over SSE (tests/node/deploy_clients.mjs). They reach the
servers through a TCP proxy in this test, which sends new connections to the first server
and, from the moment the drain starts, to the second, as a load balancer does. The durable
broadcast runs on a private redis-server with the append-only file on; one variant also
kills Redis and starts it again mid-run, another runs on a local Redis Cluster whose master
of the channel fails over mid-run. Every subscriber must receive every number, exactly once
and in order.
"""

from __future__ import annotations

import json
import shutil
import signal
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest

from anyql.broadcast import Broadcast, BroadcastError, Retention
from benchmarks._lines import Lines
from benchmarks._tcp_proxy import tcp_proxy
from benchmarks.zero_loss_deploy import warm_up_until_ready
from tests.broadcast.helpers import LocalCluster, RedisServer
from tests.broadcast.helpers import free_port as free_redis_port
from tests.e2e.conftest import NODE_DIR
from tests.e2e.servers import running_server
from tests.requirements import unavailable

pytestmark = [pytest.mark.anyio, pytest.mark.e2e, pytest.mark.redis]

TARGET = "tests.e2e.app_deploy:app"
EVENTS = 400  # one every 10 ms: four seconds of publishing
DRAIN_AT = 100
FAULT_AT = 250
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


FAULTS = ["none", "redis-restart", "cluster-failover"]


@pytest.mark.parametrize("fault", FAULTS, ids=[f"drain+{fault}" for fault in FAULTS])
async def test_a_drained_server_hands_its_subscribers_over_without_loss(
    tmp_path: Path, node: str, fault: str
) -> None:
    """Every subscriber gets every number exactly once and in order, through the drain and
    the fault: none; Redis SIGKILLed and started again (append-only file, fsync always); a
    Redis Cluster (three masters, a replica each) whose master of the channel fails over
    (``CLUSTER FAILOVER``: the replica takes over once it has everything)."""
    prefix = f"anyql-deploy-{uuid.uuid4().hex[:8]}:"
    with broker(tmp_path, fault, prefix) as (url, cluster, inject):
        env = {"ANYQL_TEST_REDIS": url, "ANYQL_TEST_PREFIX": prefix}
        if cluster:
            env["ANYQL_TEST_CLUSTER"] = "1"
        drain = ["--limit", "drain_window=1"]
        current = {"port": 0}
        with (
            running_server("native-trio", TARGET, env=env, options=drain) as first,
            running_server("native-asyncio", TARGET, env=env, options=drain) as second,
        ):
            current["port"] = first.port
            publisher = Broadcast(
                url,
                durable=True,
                key_prefix=prefix,
                retention=Retention(max_length=100_000, idle_ttl=600),
                publish_timeout=1.0,
                cluster=cluster,
            )
            async with publisher, tcp_proxy(lambda: current["port"]) as port:
                report = await run_deploy(node, port, publisher, first, second, current, inject)

    assert len(report) == WS_CLIENTS + SSE_CLIENTS
    for client in report:
        numbers = client["numbers"]
        assert numbers, client
        assert numbers == list(range(EVENTS)), (client["kind"], numbers)
        assert client["errors"] == [], client
        assert client["reconnects"] >= 1, client  # it did move to the second server


@contextmanager
def broker(
    tmp_path: Path, fault: str, prefix: str
) -> Iterator[tuple[str, bool, Callable[[], None] | None]]:
    """(URL, whether it is a cluster, the fault to inject mid-run or None)."""
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or (fault == "cluster-failover" and cli is None):
        unavailable("redis-server (and redis-cli for a cluster) are not installed")
    if fault == "cluster-failover":
        assert cli is not None
        cluster = LocalCluster(server, cli, tmp_path)

        def fail_over() -> None:
            master = cluster.master_of(prefix + "ticks")
            assert master is not None
            cluster.fail_over(cluster.replica_of(master))

        try:
            cluster.start()
            yield cluster.url, True, fail_over
        finally:
            cluster.stop()
        return
    redis = RedisServer(server, tmp_path, free_redis_port(), appendonly=True)
    redis.start()

    def restart() -> None:
        redis.kill()
        redis.start()

    try:
        yield redis.url, False, restart if fault == "redis-restart" else None
    finally:
        redis.stop()


async def run_deploy(
    node: str,
    port: int,
    publisher: Broadcast,
    first: Any,
    second: Any,
    current: dict[str, int],
    inject: Callable[[], None] | None,
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
            if inject is not None and n == FAULT_AT:
                await anyio.to_thread.run_sync(inject)  # the proxy keeps relaying meanwhile

        with anyio.fail_after(90):
            await warm_up_until_ready(publisher, next_line, 0.05)
            await publish_numbers(publisher, on_number, EVENTS)
            report: list[dict[str, Any]] = json.loads(await next_line())
    for client in report:  # the warm-up numbers are negative
        client["numbers"] = [n for n in client["numbers"] if n >= 0]
    return report
