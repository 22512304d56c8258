"""One benchmark run against one running server: fan-out bursts, single-event latency, churn.

Owns ``Workload``, ``Generators`` (the load-generator processes and their command pipes)
and ``run_fanout``, ``run_latency`` and ``run_churn``, each returning one result dict (with
its ``transport``: ``Workload.transport`` says whether the clients subscribe over WebSocket
or over SSE; churn is always WebSocket). For SSE, "acked" means the server answered the
subscription with a 200 event stream. Connections that never became subscribers are
reported with the run (``subscribe``: how many connected, were acked, went live or failed,
failures by kind and the first one, and the server log's last lines when any failed), so a
large N says what broke first. Every wait is bounded by a deadline or by a quiet period
with no progress; nothing loops forever. A fan-out run against anyql carries
``plan_stats``: how many operations and fields of its bursts took the planned path
(``Engine.plan_stats()`` read through ``Query.planStats`` before and after, as http.py
does). Imports the standard library, ``_generator``, ``_servers``, ``_http_runs``
(``stats_delta``) and ``_report``.
"""

from __future__ import annotations

import http.client
import json
import math
import multiprocessing
import os
import threading
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from ._frames import PUBLISH_MUTATION
from ._generator import WorkerSpec, worker_main
from ._http_runs import stats_delta
from ._profile import Sampler
from ._report import Progress, percentiles
from ._servers import ANYQL_KINDS, ServerProcess

__all__ = [
    "Bursts",
    "Generators",
    "RunAborted",
    "WorkerPool",
    "Workload",
    "notable_lines",
    "run_churn",
    "run_fanout",
    "run_latency",
    "shares",
    "subscribe_report",
]

TOPIC = "bench"
#: A burst ends early when no delivery arrived for this long.
QUIET_SECONDS = 5.0
#: Longest a publishing mutation may take (the bench app allows 600 s).
PUBLISH_TIMEOUT = 600.0
#: Longest a liveness probe or a health check may take (a server out of descriptors
#: leaves the request in its listen backlog: without this the run would wait 600 s).
PROBE_TIMEOUT = 60.0


class RunAborted(RuntimeError):
    """The server stopped serving during a run; ``details`` holds what the run saw."""

    def __init__(self, message: str, details: dict[str, Any]) -> None:
        super().__init__(message)
        self.details = details


@dataclass(frozen=True)
class Workload:
    """What to run: sizes, counts and the time bounds."""

    n: int = 100
    k: int = 100
    bursts: int = 2
    payload: int = 16
    generators: int = 2
    latency_events: int = 50
    churn_cycles: int = 100_000
    max_seconds: float = 120.0
    #: CPUs the load generators are pinned to; empty: not pinned.
    generator_cpus: tuple[int, ...] = ()
    #: The clients offer permessage-deflate, as browsers do (WebSocket only).
    offer_deflate: bool = True
    #: How the clients subscribe: ``"ws"`` (graphql-transport-ws) or ``"sse"`` (graphql-sse,
    #: distinct connections mode: one HTTP connection per subscriber).
    transport: str = "ws"


class WorkerPool:
    """Worker processes, each with a pipe, answering commands; a context manager.

    Subclasses start their workers with ``_start`` and may add commands of their own.
    """

    #: Named in the error when a worker does not answer.
    what = "a worker process"

    def __init__(self) -> None:
        self.pipes: list[Any] = []
        self.processes: list[Any] = []

    def _start(self, target: Callable[..., None], specs: Sequence[Any]) -> None:
        """Fork one process per spec running ``target(spec, pipe)``."""
        context = multiprocessing.get_context("fork")
        for spec in specs:
            ours, theirs = context.Pipe()
            process = context.Process(target=target, args=(spec, theirs), daemon=True)
            process.start()
            theirs.close()
            self.pipes.append(ours)
            self.processes.append(process)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for pipe in self.pipes:
            with suppress(OSError):
                pipe.send(("stop",))
        for pipe, process in zip(self.pipes, self.processes, strict=True):
            with suppress(OSError, EOFError):
                if pipe.poll(10):
                    pipe.recv()
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join()

    def ask(self, command: str) -> list[Any]:
        """Send ``command`` to every worker and return their replies, in worker order."""
        for pipe in self.pipes:
            pipe.send((command,))
        replies = []
        for pipe in self.pipes:
            if not pipe.poll(60):
                raise TimeoutError(f"{self.what} did not answer {command!r}")
            replies.append(pipe.recv())
        return replies


def shares(total: int, processes: int) -> list[int]:
    """``total`` split as evenly as possible over at most ``processes`` (at least one)."""
    processes = max(1, min(processes, total))
    return [total // processes + (i < total % processes) for i in range(processes)]


class Generators(WorkerPool):
    """Load-generator processes sharing ``connections`` between them; a context manager."""

    what = "a load generator"

    def __init__(
        self,
        port: int,
        connections: int,
        processes: int,
        churn_cycles: int = 0,
        cpus: tuple[int, ...] = (),
        offer_deflate: bool = True,
        transport: str = "ws",
    ):
        super().__init__()
        specs = [
            WorkerSpec(
                "127.0.0.1",
                port,
                "/graphql",
                share,
                TOPIC,
                churn_cycles,
                cpus,
                offer_deflate,
                transport,
            )
            for share in shares(connections, processes)
        ]
        self._start(worker_main, specs)

    def total(self, key: str) -> int:
        """The sum of ``key`` over every worker's status."""
        return sum(status[key] for status in self.ask("status"))


def _generators(server: ServerProcess, workload: Workload, churn: bool = False) -> Generators:
    """The load generators of one run (one connection churning with ``churn``)."""
    return Generators(
        server.port,
        1 if churn else workload.n,
        1 if churn else workload.generators,
        workload.churn_cycles if churn else 0,
        workload.generator_cpus,
        workload.offer_deflate,
        "ws" if churn else workload.transport,
    )


def publish(
    server: ServerProcess,
    count: int,
    size: int,
    probe: bool = False,
    timeout: float = PUBLISH_TIMEOUT,
) -> None:
    """POST the publish mutation (one HTTP request) and check it succeeded.

    Raises:
        RuntimeError: the server answered with an error.
        OSError: no answer (refused, reset, or nothing within ``timeout`` seconds).
    """
    body = json.dumps(
        {
            "query": PUBLISH_MUTATION,
            "variables": {"topic": TOPIC, "count": count, "size": size, "probe": probe},
        }
    )
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        headers = {"content-type": "application/json", "accept": "application/json"}
        connection.request("POST", "/graphql", body, headers)
        response = connection.getresponse()
        answer = response.read()
    finally:
        connection.close()
    if response.status != 200 or b'"errors"' in answer:
        raise RuntimeError(f"publish failed: {response.status} {answer[:300]!r}")


PLAN_STATS_QUERY = "{ planStats }"


def read_plan_stats(server: ServerProcess) -> dict[str, Any] | None:
    """anyql's ``app.engine.plan_stats()`` through ``Query.planStats`` (``app.py``); None
    for the other servers, an engine without counters, or a failed query."""
    if server.kind not in ANYQL_KINDS:
        return None
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        headers = {"content-type": "application/json", "accept": "application/json"}
        connection.request("POST", "/graphql", json.dumps({"query": PLAN_STATS_QUERY}), headers)
        response = connection.getresponse()
        text = json.loads(response.read())["data"]["planStats"]
        stats = json.loads(text) if isinstance(text, str) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    finally:
        connection.close()
    return stats if isinstance(stats, dict) else None


@contextmanager
def _publishing(server: ServerProcess, count: int, size: int) -> Iterator[None]:
    """Publish in a thread while the block waits for deliveries; re-raise its failure."""
    failure: list[BaseException] = []

    def post() -> None:
        try:
            publish(server, count, size)
        except BaseException as error:
            failure.append(error)

    thread = threading.Thread(target=post, daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join(PUBLISH_TIMEOUT)
    if failure:
        raise failure[0]


def _subscribe_all(server: ServerProcess, load: Generators, n: int, progress: Progress) -> int:
    """Wait until every connection is acked or failed, then every acked one live (probing
    shared hubs); return how many are live."""
    deadline = time.monotonic() + 60 + n / 50
    acked = 0
    while time.monotonic() < deadline:
        statuses = load.ask("status")
        acked = sum(s["acked"] for s in statuses)
        if acked + sum(s["failed"] for s in statuses) >= n:
            break
        progress.update(f"{server.kind}: connecting", acked, n)
        time.sleep(0.1)
    probe_every, last_probe = 0.5, 0.0
    live = 0
    while time.monotonic() < deadline:
        live = load.total("live")
        progress.update(f"{server.kind}: waiting until live", live, n)
        if live >= acked:
            break
        if time.monotonic() - last_probe > probe_every:
            try:  # late subscribers of a shared hub missed "ready"
                publish(server, 1, 1, probe=True, timeout=PROBE_TIMEOUT)
            except OSError as error:
                progress.done()
                report = subscribe_report(server, load, n)
                message = (
                    f"the server stopped answering HTTP ({report['acked']:,} connections "
                    f"acked, {live:,} subscribers live)"
                )
                raise RunAborted(f"{message}: {error!r}", {"subscribe": report}) from error
            last_probe = time.monotonic()
        time.sleep(0.05)
    progress.done()
    return live


def subscribe_report(server: ServerProcess, load: Generators, n: int) -> dict[str, Any]:
    """How the N connections went: counts, failures by kind, the first failure.

    Returns:
        ``{"connected", "acked", "live", "failed", "deflated", "failures", "first_failure",
        "server_log"}``; ``server_log`` (the server's last warnings and errors) only when
        some connection did not go live.
    """
    statuses = load.ask("status")
    report: dict[str, Any] = {
        key: sum(s[key] for s in statuses)
        for key in ("connected", "acked", "live", "failed", "deflated")
    }
    failures: Counter[str] = Counter()
    firsts = []
    for reply in load.ask("failures"):
        failures.update(reply["failures"])
        if reply["first_failure"] is not None:
            firsts.append(tuple(reply["first_failure"]))
    report["failures"] = dict(failures)
    report["first_failure"] = min(firsts)[1] if firsts else None
    if report["live"] < n:
        report["server_log"] = notable_lines(server.log_tail(500).splitlines())
    return report


def _check_serving(server: ServerProcess, load: Generators, n: int) -> dict[str, Any]:
    """The subscribe report; when connections failed, first check the server still answers.

    Raises:
        RunAborted: it does not (e.g. its accept loop died or it is out of descriptors).
    """
    report = subscribe_report(server, load, n)
    if report["failed"]:
        try:
            publish(server, 0, 0, timeout=PROBE_TIMEOUT)
        except OSError as error:
            raise RunAborted(
                f"the server stopped answering HTTP ({report['acked']:,} connections acked, "
                f"{report['live']:,} subscribers live): {error!r}",
                {"subscribe": report},
            ) from error
    return report


#: Words in a server's log that name why connections failed.
CAUSES = ("Errno", "Too many open files", "EMFILE", "max_connections", "MemoryError")


def notable_lines(lines: list[str], most: int = 10) -> list[str]:
    """The log lines that can say why connections failed, causes first.

    Returns:
        Up to ``most`` lines: distinct lines naming a cause (``CAUSES``), then the last
        lines that are not the access log's INFO lines.
    """
    causes = list(dict.fromkeys(line.strip() for line in lines if any(c in line for c in CAUSES)))
    rest = [line.strip() for line in lines if " INFO " not in line]
    return (causes[: most // 2] + rest[-(most - min(len(causes), most // 2)) :])[:most]


def _collect(load: Generators) -> dict[str, Any]:
    replies = load.ask("collect")
    samples: array[float] = array("d")
    for reply in replies:
        samples.frombytes(reply["latencies"])
    codes: Counter[int] = Counter()
    for reply in replies:
        codes.update({int(k): v for k, v in reply["close_codes"].items()})
    return {
        "received": sum(r["received"] for r in replies),
        "samples": samples,
        "last_receive": max(r["last_receive"] for r in replies),
        "closed": sum(r["closed"] for r in replies),
        "close_codes": dict(codes),
        "errors": [e for r in replies for e in r["errors"]][:10],
    }


def _wait_deliveries(load: Generators, expected: int, label: str, progress: Progress) -> None:
    """Poll until ``expected`` measured deliveries arrived, or nothing came for a while."""
    last_count, last_change = -1, time.monotonic()
    while True:
        received = load.total("received")
        progress.update(label, received, expected)
        now = time.monotonic()
        if received >= expected:
            return
        if received != last_count:
            last_count, last_change = received, now
        elif now - last_change > QUIET_SECONDS:
            return
        time.sleep(0.02 if expected < 5000 else 0.05)


def _sharing(server: ServerProcess) -> str | None:
    if server.kind == "baseline":
        return None  # encodes each event once, then addresses each subscriber
    if server.kind in ("strawberry", "node"):
        return "unshared"  # they execute the selection per subscriber and event
    return server.sharing


def _base(server: ServerProcess, mode: str, workload: Workload) -> dict[str, Any]:
    return {
        "mode": mode,
        "server": server.kind,
        "sharing": _sharing(server),
        "transport": workload.transport if mode != "churn" else "ws",
        "n": workload.n,
        "payload": workload.payload,
        "loadavg_before": list(os.getloadavg()),
        "server_process": server.placement(),
        "generator_cpus": list(workload.generator_cpus),
        "max_connections": server.max_connections,
    }


@dataclass
class Bursts:
    """What the bursts of one fan-out run added up to."""

    received: int = 0
    busy: float = 0.0
    cpu: float = 0.0
    samples: array[float] = field(default_factory=lambda: array("d"))
    last: dict[str, Any] = field(default_factory=dict)


def _bursts(
    server: ServerProcess, load: Generators, workload: Workload, live: int, progress: Progress
) -> Bursts:
    """Publish ``bursts`` times K events; time each from the POST to its last delivery."""
    totals = Bursts()
    for burst in range(workload.bursts):
        load.ask("reset")
        cpu_start, started = server.cpu(), time.time()
        with _publishing(server, workload.k, workload.payload):
            label = f"{server.kind} N={workload.n} burst {burst + 1}/{workload.bursts}"
            _wait_deliveries(load, live * workload.k, label, progress)
        totals.cpu += server.cpu() - cpu_start
        totals.last = _collect(load)
        totals.received += totals.last["received"]
        totals.samples.extend(totals.last["samples"])
        totals.busy += max(0.0, totals.last["last_receive"] - started)
    return totals


def run_fanout(
    server: ServerProcess,
    workload: Workload,
    progress: Progress,
    profile: Path | None = None,
    native: bool = False,
) -> dict[str, Any]:
    """Saturating bursts: N live subscribers, ``bursts`` times K events through the mutation.

    Args:
        server: the running server.
        workload: sizes and counts.
        progress: where to show progress.
        profile: when set, sample the server with py-spy during the bursts (raw stacks
            written there; the run's own figures are then distorted by the sampling).
        native: sample C frames too (py-spy ``--native``).

    Returns:
        The run's figures (deliveries/s, CPU µs per delivery, latency, missed, RSS).
    """
    n = workload.n
    result = _base(server, "fanout", workload)
    publish(server, 0, 0)  # warm the server (parse cache, first request) before measuring
    time.sleep(0.3)
    rss_before = server.rss()
    with _generators(server, workload) as load:
        live = _subscribe_all(server, load, n, progress)
        time.sleep(0.5)
        rss_after = server.rss()
        result["subscribe"] = _check_serving(server, load, n)
        sampler = Sampler(server.pid, profile, native=native) if profile else None
        plan_before = read_plan_stats(server)
        with sampler or nullcontext():
            totals = _bursts(server, load, workload, live, progress)
        # the bursts' events (and their publishing mutations): None for other servers
        result["plan_stats"] = stats_delta(plan_before, read_plan_stats(server))
        if sampler is not None:
            progress.say(sampler.message)
        progress.done()
    result.update(_figures(workload, totals, live, (rss_before, rss_after)), profiled=bool(profile))
    return result


def _figures(workload: Workload, totals: Bursts, live: int, rss: tuple[int, int]) -> dict[str, Any]:
    n = workload.n
    expected, received = n * workload.k * workload.bursts, totals.received
    return dict(
        k=workload.k,
        bursts=workload.bursts,
        subscribers_live=live,
        deliveries=received,
        expected=expected,
        missed=expected - received,
        duration_s=totals.busy,
        deliveries_per_s=received / totals.busy if totals.busy else math.nan,
        server_cpu_s=totals.cpu,
        server_cpu_us_per_delivery=totals.cpu * 1e6 / received if received else math.nan,
        latency_ms={key: v * 1000 for key, v in percentiles(totals.samples).items()},
        rss_before_kib=rss[0],
        rss_after_kib=rss[1],
        # idle subscribed connections only: the connections that failed hold nothing
        rss_per_subscriber_kib=(rss[1] - rss[0]) / (live or n),
        closed_connections=totals.last.get("closed", 0),
        close_codes=totals.last.get("close_codes", {}),
        errors=totals.last.get("errors", []),
    )


def run_latency(server: ServerProcess, workload: Workload, progress: Progress) -> dict[str, Any]:
    """One event at a time to N idle subscribers, ``latency_events`` times.

    Returns:
        Per-delivery percentiles and percentiles of each event's last delivery.
    """
    n = workload.n
    result = _base(server, "latency", workload)
    publish(server, 0, 0)
    with _generators(server, workload) as load:
        live = _subscribe_all(server, load, n, progress)
        result["subscribe"] = _check_serving(server, load, n)
        samples: array[float] = array("d")
        completions: list[float] = []
        received = 0
        deadline = time.monotonic() + workload.max_seconds
        events = 0
        while events < workload.latency_events and time.monotonic() < deadline:
            load.ask("reset")
            publish(server, 1, workload.payload)
            _wait_deliveries(load, live, f"{server.kind} single events", progress)
            collected = _collect(load)
            received += collected["received"]
            samples.extend(collected["samples"])
            if collected["samples"]:
                completions.append(max(collected["samples"]))
            events += 1
            time.sleep(0.05)
        progress.done()
    delivery = {key: v * 1000 for key, v in percentiles(samples).items()}
    result.update(
        subscribers_live=live,
        events=events,
        missed=n * events - received,
        latency_ms=delivery,
        p99_ms=delivery["p99"],
        event_completion_ms={key: v * 1000 for key, v in percentiles(completions).items()},
        event_completions_ms=[round(v * 1000, 2) for v in completions],
    )
    return result


def run_churn(server: ServerProcess, workload: Workload, progress: Progress) -> dict[str, Any]:
    """Subscribe -> first event -> complete, on one connection, a fresh topic each cycle.

    Returns:
        Cycles per second and RSS samples; growth is measured from the 10% mark (warm-up).
    """
    cycles = workload.churn_cycles
    result = _base(server, "churn", workload)
    result["n"] = 1
    publish(server, 0, 0)
    series: list[tuple[int, int]] = []
    with _generators(server, workload, churn=True) as load:
        wall_start = time.time()
        started = time.monotonic()
        deadline = started + workload.max_seconds
        done, last_change, last_done = 0, started, -1
        while done < cycles and time.monotonic() < deadline:
            time.sleep(0.5)
            done = load.total("cycles")
            series.append((done, server.rss()))
            progress.update(f"{server.kind}: churn", done, cycles)
            if done != last_done:
                last_done, last_change = done, time.monotonic()
            elif time.monotonic() - last_change > QUIET_SECONDS:
                break
        status = load.ask("status")[0]
        done = status["cycles"]
        elapsed = (status["last_receive"] or time.time()) - wall_start
        errors = load.ask("collect")[0]["errors"]
        progress.done()
    warm = next((rss for count, rss in series if count >= cycles // 10), series[0][1])
    result.update(
        cycles=done,
        target_cycles=cycles,
        duration_s=elapsed,
        cycles_per_s=done / elapsed if elapsed else math.nan,
        rss_start_kib=series[0][1] if series else 0,
        rss_warm_kib=warm,
        rss_end_kib=series[-1][1] if series else 0,
        rss_growth_kib=(series[-1][1] - warm) if series else 0,
        rss_series=series[:: max(1, len(series) // 50)],
        errors=errors[:10],
    )
    return result
