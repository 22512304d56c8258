"""Helpers for the Broadcast tests: polling with a deadline and a private redis-server."""

from __future__ import annotations

import random
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import pytest

from anyql.broadcast import Broadcast, BroadcastError
from tests.requirements import unavailable

LOCALHOST = "127.0.0.1"
SHARED_REDIS_PORT = 6379


def shared_redis_url() -> str:
    """The shared Redis on 127.0.0.1:6379; skips the test without it (fails it under CI)."""
    if not answers_ping(SHARED_REDIS_PORT):
        unavailable(f"nothing answers PING on {LOCALHOST}:{SHARED_REDIS_PORT}")
    return f"redis://{LOCALHOST}:{SHARED_REDIS_PORT}/0"


def answers_ping(port: int, timeout: float = 0.5) -> bool:
    """True when something on 127.0.0.1:``port`` answers a Redis PING."""
    try:
        with socket.create_connection((LOCALHOST, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


_PORTS_HANDED_OUT: set[int] = set()


def _ephemeral_range_start() -> int:
    """The first port the kernel hands to outgoing connections (0 where it cannot tell)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago, never handed out before in this
    process, and below the ephemeral range where the system has one: a redis-server that is
    killed and started again on its port must not find it taken by some outgoing connection
    in between (CI once saw a cluster node fail to start on a port from that range)."""
    low = _ephemeral_range_start()
    for _ in range(200):
        wanted = random.randrange(10_000, low) if low > 11_000 else 0
        with socket.socket() as sock:
            try:
                sock.bind((LOCALHOST, wanted))
            except OSError:
                continue
            port: int = sock.getsockname()[1]
        if port not in _PORTS_HANDED_OUT:
            _PORTS_HANDED_OUT.add(port)
            return port
    raise RuntimeError("no free port found")


class ServerDidNotStart(RuntimeError):
    """A redis-server exited or did not answer PING in time; the message has its log."""


def start_redis_process(
    arguments: list[str], port: int, directory: Path, deadline: float
) -> subprocess.Popen[bytes]:
    """Run redis-server with ``arguments`` (logging to ``directory``/redis.log) and return once
    it answers PING on ``port``; on failure kill it and raise with the log's last lines."""
    log = directory / "redis.log"
    process = subprocess.Popen(
        [*arguments, "--logfile", str(log)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    give_up = time.monotonic() + deadline
    while not answers_ping(port, timeout=0.2):
        if process.poll() is not None or time.monotonic() > give_up:
            process.kill()
            process.wait()
            tail = log.read_text(errors="replace").splitlines()[-5:] if log.exists() else []
            raise ServerDidNotStart(
                f"redis-server on port {port} did not start: " + " | ".join(tail)
            )
        time.sleep(0.01)
    return process


class RedisServer:
    """A private redis-server process that tests may kill, pause and restart."""

    def __init__(
        self, executable: str, directory: Path, port: int, *, appendonly: bool = False
    ) -> None:
        self.executable = executable
        #: With the append-only file on and fsynced at every write, a SIGKILL loses
        #: nothing Redis acknowledged, and a restart in the same directory reloads it.
        self.appendonly = appendonly
        self.directory = directory
        self.port = port
        self.url = f"redis://{LOCALHOST}:{port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, deadline: float = 10.0) -> None:
        """Start on ``port`` and return once it answers PING (polling with a deadline)."""
        assert self._process is None, "already running"
        self._process = start_redis_process(
            [
                self.executable,
                "--port",
                str(self.port),
                "--bind",
                LOCALHOST,
                "--save",
                "",
                "--appendonly",
                "yes" if self.appendonly else "no",
                "--appendfsync",
                "always",
                "--daemonize",
                "no",
                "--dir",
                str(self.directory),
            ],
            self.port,
            self.directory,
            deadline,
        )

    def kill(self) -> None:
        """SIGKILL the server and reap it."""
        process, self._process = self._process, None
        assert process is not None, "not running"
        process.send_signal(signal.SIGCONT)
        process.kill()
        process.wait()

    def pause(self) -> None:
        """SIGSTOP: the server keeps its sockets but answers nothing."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after ``pause``."""
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Kill it if it is running (the fixture's teardown)."""
        if self._process is not None:
            self.kill()


async def check_a_key_of_another_type_fails_only_its_channel(
    broadcast: Broadcast,
    occupy: Callable[[str], Awaitable[object]],
    free: Callable[[str], Awaitable[object]],
    deadline: float = 10.0,
) -> None:
    """Row D21 on a durable ``broadcast``: ``occupy(key)`` makes a channel's key hold a
    string (another application sharing the prefix), ``free(key)`` deletes it."""
    bad_key = broadcast._key_prefix + "bad"
    await occupy(bad_key)
    async with broadcast.events("good") as good, broadcast.subscribe("good") as plain:
        with pytest.raises(BroadcastError, match="not a stream") as refused:
            async with broadcast.events("bad"):
                pass
        assert bad_key in str(refused.value)
        async with broadcast.subscribe("bad") as first:
            with pytest.raises(BroadcastError, match="not a stream"), anyio.fail_after(deadline):
                await first.__anext__()
            # One that comes after the refusal, while the first still holds the channel.
            async with broadcast.subscribe("bad") as second:
                with pytest.raises(BroadcastError, match="not a stream"):
                    with anyio.fail_after(deadline):
                        await second.__anext__()
        publisher = broadcast._backend._publisher  # type: ignore[union-attr]
        with pytest.raises(BroadcastError, match="not a stream"):
            await broadcast.publish("bad", {"n": 0})
        # Refused for that channel only: the publish connection, shared by every publish
        # running meanwhile, is kept (it used to be replaced, failing the others).
        assert broadcast._backend._publisher is publisher  # type: ignore[union-attr]
        await broadcast.publish("good", {"n": 1})
        with anyio.fail_after(deadline):
            assert (await good.__anext__()).value == {"n": 1}
            assert await plain.__anext__() == {"n": 1}
    await free(bad_key)  # a stream again: the channel works for new listeners
    async with broadcast.events("bad") as bad:
        await broadcast.publish("bad", {"n": 2})
        with anyio.fail_after(deadline):
            assert (await bad.__anext__()).value == {"n": 2}


# Polling on purpose: the state observed (a flag, a log record, a Redis counter) has no event.


async def wait_until(predicate: Callable[[], bool], *, deadline: float = 10.0) -> None:
    """Poll ``predicate`` until it holds; fail after ``deadline`` seconds."""
    with anyio.fail_after(deadline):
        while not predicate():  # noqa: ASYNC110
            await anyio.sleep(0.01)


async def wait_until_async(
    predicate: Callable[[], Awaitable[bool]], *, deadline: float = 10.0
) -> None:
    """Poll an async ``predicate`` until it holds; fail after ``deadline`` seconds."""
    with anyio.fail_after(deadline):
        while not await predicate():  # noqa: ASYNC110
            await anyio.sleep(0.01)


def unique(name: str) -> str:
    """A channel or prefix name no other test run uses (the shared Redis is shared)."""
    return f"anyql-test:{uuid.uuid4().hex[:12]}:{name}"


class LocalCluster:
    """A private Redis Cluster: three masters with a replica each, on free ports in a temp dir.

    Each node runs with the append-only file on (``appendfsync always``) and a 1 s node
    timeout, so a killed master is failed over within a few seconds.
    """

    def __init__(self, server: str, cli: str, directory: Path, size: int = 6) -> None:
        self.server = server
        self.cli = cli
        self.directory = directory
        self.ports = [free_port() for _ in range(size)]
        #: Each node's cluster bus port (by default port + 10,000, which may exceed 65,535).
        self.bus_ports = {port: free_port() for port in self.ports}
        self._processes: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        """Any one node: the cluster client discovers the rest."""
        return f"redis://{LOCALHOST}:{self.ports[0]}/0"

    def start(self, deadline: float = 30.0) -> None:
        """Start every node, create the cluster, and return once every node says it is ok."""
        for index in range(len(self.ports)):
            self._start_new_node(index)
        subprocess.run(
            [
                self.cli,
                "--cluster",
                "create",
                *(f"{LOCALHOST}:{port}" for port in self.ports),
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=deadline,
        )
        self.wait_ok(deadline)

    def _start_new_node(self, index: int, attempts: int = 3) -> None:
        """Start the ``index``-th node before the cluster exists; if one of its ports was
        taken since it was chosen, choose new ones and try again."""
        for attempt in range(attempts):
            try:
                self.start_node(self.ports[index])
                return
            except ServerDidNotStart:
                if attempt == attempts - 1:
                    raise
            del self.bus_ports[self.ports[index]]
            self.ports[index] = port = free_port()
            self.bus_ports[port] = free_port()

    def start_node(self, port: int, deadline: float = 10.0) -> None:
        """Start (or restart, with its nodes.conf and AOF) the node on ``port``."""
        assert port not in self._processes, "already running"
        directory = self.directory / str(port)
        directory.mkdir(exist_ok=True)
        self._processes[port] = start_redis_process(
            [
                self.server,
                "--port",
                str(port),
                "--bind",
                LOCALHOST,
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-port",
                str(self.bus_ports[port]),
                "--cluster-node-timeout",
                "1000",
                # A replica may always take over, however long since it heard its master.
                "--cluster-replica-validity-factor",
                "0",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--daemonize",
                "no",
                "--dir",
                str(directory),
            ],
            port,
            directory,
            deadline,
        )

    def command(self, port: int, *args: str) -> str:
        """Run one command on one node with redis-cli; its output."""
        return subprocess.run(
            [self.cli, "-h", LOCALHOST, "-p", str(port), *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout

    def wait_ok(self, deadline: float = 30.0) -> None:
        """Poll every running node until it reports ``cluster_state:ok``, three of them are
        masters and every replica's link to its master is up and synced (a replica that is
        still syncing would be promoted without the data, or refuse a manual failover)."""
        give_up = time.monotonic() + deadline
        while True:
            states = [self.command(port, "CLUSTER", "INFO") for port in self._processes]
            if (
                all("cluster_state:ok" in state for state in states)
                and len(self.masters()) == 3
                and self.replicas_in_sync()
            ):
                return
            if time.monotonic() > give_up:
                raise RuntimeError(f"the cluster did not become ok: {states}")
            time.sleep(0.05)

    def replicas_in_sync(self) -> bool:
        """Whether every running replica is connected to its master and not syncing."""
        for port in self._processes:
            info = self.command(port, "INFO", "replication")
            if "role:slave" in info and (
                "master_link_status:up" not in info or "master_sync_in_progress:0" not in info
            ):
                return False
        return True

    def masters(self) -> dict[int, str]:
        """Port -> node id of every running master, as the running nodes see it (each
        node's own role from ``ROLE``)."""
        found: dict[int, str] = {}
        for port in self._processes:
            if self.command(port, "ROLE").split("\n", 1)[0] == "master":
                found[port] = self.command(port, "CLUSTER", "MYID").strip()
        return found

    def master_of(self, key: str) -> int | None:
        """The port of the master that owns ``key``'s slot; None while no running master
        does (a failover under way)."""
        slot = int(self.command(next(iter(self._processes)), "CLUSTER", "KEYSLOT", key))
        # Right after a failover the old master may still claim the slot until it learns
        # of the newer configuration: the claim with the highest config epoch wins.
        claims: list[tuple[int, int]] = []
        for port in self.masters():
            for line in self.command(port, "CLUSTER", "NODES").splitlines():
                fields = line.split()
                if "myself" not in fields[2]:
                    continue
                for ranges in fields[8:]:
                    low, _, high = ranges.partition("-")
                    if low.isdigit() and int(low) <= slot <= int(high or low):
                        claims.append((int(fields[6]), port))
        return max(claims)[1] if claims else None

    def replica_of(self, master: int) -> int:
        """The port of a running replica of the master on ``master``."""
        master_id = self.command(master, "CLUSTER", "MYID").strip()
        for port in self._processes:
            if port == master:
                continue
            for line in self.command(port, "CLUSTER", "NODES").splitlines():
                fields = line.split()
                if "myself" in fields[2] and fields[3] == master_id:
                    return port
        raise LookupError(f"no replica of the master on {master}")

    def fail_over(self, replica: int, deadline: float = 20.0) -> None:
        """``CLUSTER FAILOVER`` on ``replica``, again until it is a master serving slots
        (a manual failover gives up quietly when the replica does not catch up in time;
        its role alone was seen to say master while the old master kept the slots)."""
        give_up = time.monotonic() + deadline
        while time.monotonic() < give_up:
            self.command(replica, "CLUSTER", "FAILOVER")
            retry_at = time.monotonic() + 5.0
            while time.monotonic() < min(retry_at, give_up):
                if self._serves_slots(replica):
                    return
                time.sleep(0.05)
        raise RuntimeError(f"the replica on {replica} did not take over")

    def _serves_slots(self, port: int) -> bool:
        """Whether the node on ``port`` is, in its own view, a master with slots."""
        for line in self.command(port, "CLUSTER", "NODES").splitlines():
            fields = line.split()
            if "myself" in fields[2]:
                return "master" in fields[2] and len(fields) > 8
        return False

    def kill(self, port: int) -> None:
        """SIGKILL one node and reap it."""
        process = self._processes.pop(port)
        process.kill()
        process.wait()

    def stop(self) -> None:
        """Kill every node (the fixture's teardown)."""
        for port in list(self._processes):
            self.kill(port)
