"""Fixtures for the Broadcast tests: the shared Redis on 6379 and private redis-servers.

Redis tests skip with a reason when no Redis is available, except under CI, where they fail
instead (``tests.requirements.unavailable``). Fault tests (SIGKILL, SIGSTOP, CLIENT KILL,
CONFIG SET) only ever touch a private ``redis-server`` started on a free port in a temporary
directory; the cluster tests, a private six-node Redis Cluster started the same way.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.broadcast.helpers import (
    LOCALHOST,
    LocalCluster,
    RedisServer,
    answers_ping,
    free_port,
)
from tests.requirements import unavailable

SHARED_REDIS_PORT = 6379


@pytest.fixture
def redis_url() -> str:
    """The shared Redis on 127.0.0.1:6379, for plain pub/sub tests on unique channels."""
    if not answers_ping(SHARED_REDIS_PORT):
        unavailable(f"nothing answers PING on {LOCALHOST}:{SHARED_REDIS_PORT}")
    return f"redis://{LOCALHOST}:{SHARED_REDIS_PORT}/0"


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh redis-server on a free port in a temp dir, killed after the test."""
    executable = shutil.which("redis-server")
    if executable is None:
        unavailable("redis-server is not installed")
    server = RedisServer(executable, tmp_path, free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A private Redis Cluster (three masters, a replica each) for one test module; tests
    that fail a master over leave the cluster ok (the old master rejoins as a replica)."""
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        unavailable("redis-server and redis-cli are needed for a local Redis Cluster")
    directory = tmp_path_factory.mktemp("cluster")
    cluster = LocalCluster(server, cli, directory)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def broker_url(request: pytest.FixtureRequest) -> str | None:
    """Each broker in turn: None (in memory), then the shared Redis."""
    if request.param == "memory":
        return None
    url: str = request.getfixturevalue("redis_url")
    return url
