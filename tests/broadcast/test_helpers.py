"""The private Redis servers the broker tests start: their ports and their start-up."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest

from tests.broadcast.helpers import (
    LOCALHOST,
    LocalCluster,
    _ephemeral_range_start,
    answers_ping,
    free_port,
)
from tests.requirements import unavailable


def test_free_ports_are_distinct_and_outside_the_ephemeral_range() -> None:
    """A redis-server restarted on its port must not find an outgoing connection on it."""
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    low = _ephemeral_range_start()
    if low > 11_000:
        assert all(port < low for port in ports)


@pytest.mark.redis
def test_a_cluster_starts_on_new_ports_when_a_chosen_port_was_taken(tmp_path: Path) -> None:
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        unavailable("redis-server and redis-cli are needed for a local Redis Cluster")
    cluster = LocalCluster(server, cli, tmp_path)
    taken = cluster.ports[0]
    with socket.socket() as squatter:
        squatter.bind((LOCALHOST, taken))
        squatter.listen()
        try:
            cluster.start()
            assert taken not in cluster.ports
            assert all(answers_ping(port) for port in cluster.ports)
            assert len(cluster.masters()) == 3
        finally:
            cluster.stop()
