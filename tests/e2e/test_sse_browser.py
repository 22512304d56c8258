"""GraphQL over SSE in a real browser: headless Debian Chromium against real servers.

``tests/node/browser_sse.mjs`` drives one Chromium per server kind through four scenarios:
the browser's native ``EventSource`` subscribing with a GET (distinct connections mode) and
with a reservation token in the URL (single connection mode); graphql-sse's own client
running inside a page (its UMD build), in both modes; and GraphiQL with ``graphiql_sse=True``
running a subscription, a query, an invalid subscription and a stopped one. The first three
run against ``tests/e2e/app.py`` from a page of the app's own origin (made by the browser
driver: the app serves no pages); GraphiQL against ``tests/e2e/app_graphiql_sse.py``.

The machine has no internet and the browser may reach loopback only, so graphql-sse's UMD
build and GraphiQL's four assets are served from tests/node/node_modules by a small local
HTTP server. Without Chromium (``apt-get install -y chromium``), node or the npm packages
(``npm ci`` in tests/node) the tests skip with the reason; under CI they fail instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from anyql._graphiql import ASSET_SOURCES
from tests.e2e.conftest import NODE_DIR
from tests.e2e.servers import RunningServer, running_server
from tests.requirements import unavailable

pytestmark = pytest.mark.e2e

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
#: Browser runs are slow: the native server on both backends, and the app under hypercorn
#: on asyncio (hypercorn on Trio is the same ASGI path).
KINDS = ("native-trio", "native-asyncio", "hypercorn-asyncio")
EVENT_STREAM = "text/event-stream; charset=utf-8"

Observed = dict[str, Any]
SSE_TEST_PAGE = """\
<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>anyql over SSE</title></head>
<body><script src="{assets_url}/graphql-sse.min.js"></script></body>
</html>
"""


def node_module_file(package: str, path: str) -> Path:
    return NODE_DIR / "node_modules" / package / path


@pytest.fixture(scope="module")
def asset_files() -> dict[str, Path]:
    """What the pages load, by name: GraphiQL's four assets and graphql-sse's UMD build."""
    files = {
        asset.name: node_module_file(asset.package.rpartition("@")[0], asset.path)
        for asset in ASSET_SOURCES
    }
    files["graphql-sse.min.js"] = node_module_file("graphql-sse", "umd/graphql-sse.min.js")
    missing = [str(path) for path in files.values() if not path.is_file()]
    if missing:
        unavailable(f"browser assets not installed ({', '.join(missing)}): npm ci in tests/node")
    return files


@pytest.fixture(scope="module")
def assets_url(asset_files: dict[str, Path]) -> Iterator[str]:
    """A loopback HTTP server for exactly those names, and the page that loads graphql-sse
    (``/sse-test-page``; the browser shows it under the app's origin); its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            base = f"http://127.0.0.1:{self.server.server_address[1]}"
            if self.path == "/sse-test-page":
                body = SSE_TEST_PAGE.format(assets_url=base).encode()
                kind = "text/html"
            elif (path := asset_files.get(self.path.lstrip("/"))) is not None:
                body = path.read_bytes()
                kind = "text/css" if path.suffix == ".css" else "text/javascript"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("content-type", f"{kind}; charset=utf-8")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="module")
def browser_driver() -> list[str]:
    """The command that drives Chromium: node and tests/node/browser_sse.mjs."""
    node = shutil.which("node")
    if node is None:
        unavailable("node is not installed")
    if not (NODE_DIR / "node_modules" / "playwright-core").is_dir():
        unavailable("playwright-core is not installed: npm ci in tests/node")
    if not os.access(CHROMIUM, os.X_OK):
        unavailable(f"no Chromium at {CHROMIUM}: apt-get install -y chromium")
    return [str(node), str(NODE_DIR / "browser_sse.mjs")]


@pytest.fixture(scope="module", params=KINDS)
def observed(
    request: pytest.FixtureRequest, assets_url: str, browser_driver: list[str]
) -> Observed:
    """What the browser saw, once per server kind (every scenario in one browser run)."""
    kind: str = request.param
    env = {"ANYQL_GRAPHIQL_ASSETS": assets_url}
    # hypercorn logs requests only when asked; into the server's log, as the native one does
    options = ("--access-logfile", "/dev/stderr") if kind.startswith("hypercorn") else ()
    target = "tests.e2e.app_graphiql_sse:app"
    with (
        running_server(kind) as app,
        running_server(kind, target=target, env=env, options=options) as graphiql,
    ):
        done = subprocess.run(
            [*browser_driver, app.http_url, graphiql.http_url, assets_url, "30000"],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
            env={**os.environ, "CHROMIUM": CHROMIUM},
        )
        seen: Observed = json.loads(done.stdout) if done.returncode == 0 else {}
        if "graphiql" in seen:
            # Every POST GraphiQL sent has ended on the server, the stopped subscription's
            # too (it would run for half an hour): the access log has one line for each.
            posts = sum(
                entry["method"] == "POST"
                for run in seen["graphiql"].values()
                if isinstance(run, dict)
                for entry in run["network"]
            )
            seen["graphiqlPostsLogged"] = wait_for_log_lines(graphiql, '"POST /graphql ', posts)
    assert done.returncode == 0, done.stderr
    assert "crash" not in seen, (
        f"{seen['crash']}\napp log:\n{app.log}\nGraphiQL log:\n{graphiql.log}"
    )
    return seen


def wait_for_log_lines(server: RunningServer, marker: str, count: int) -> int:
    """How many lines of the server's log hold ``marker``, once there are ``count`` of them
    (or 10 s have passed: the caller's assertion then shows how many there were)."""
    deadline = time.monotonic() + 10
    while True:
        found = sum(marker in line for line in server.log.splitlines())
        if found >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def counts(*values: int) -> list[dict[str, Any]]:
    return [{"data": {"count": value}} for value in values]


def test_nothing_left_the_machine_and_nothing_went_wrong_in_the_pages(observed: Observed) -> None:
    assert observed["blocked"] == []
    assert observed["websockets"] == []  # GraphiQL subscribed over SSE, not a WebSocket
    assert observed["pageErrors"] == []
    assert observed["consoleErrors"] == []


# --- (a) the browser's EventSource ------------------------------------------------------


def test_event_source_subscribes_with_a_get(observed: Observed) -> None:
    seen = observed["eventSource"]
    assert seen["opened"] is True and seen["errors"] == 0, seen
    # the next events in order, then complete (dispatched: its data line is empty), on
    # whose arrival the page closed the source
    assert seen["events"] == [
        *({"type": "next", "data": result} for result in counts(0, 1, 2)),
        {"type": "complete", "data": ""},
    ]
    assert seen["readyState"] == 2  # CLOSED: no reconnection
    [request] = seen["network"]
    assert request["method"] == "GET"
    assert unquote(request["search"]) == f"?query={seen['query']}"
    assert request["accept"] == "text/event-stream"
    assert (request["status"], request["type"]) == (200, EVENT_STREAM)


def test_event_source_in_single_connection_mode(observed: Observed) -> None:
    seen = observed["eventSourceSingle"]
    assert seen["opened"] is True and seen["errors"] == 0, seen
    assert seen["statuses"] == {"put": 201, "short": 202, "long": 202, "delete": 200, "reused": 202}
    short = [event for event in seen["events"] if event["id"] == "short"]
    assert short == [
        *({"type": "next", "id": "short", "payload": result} for result in counts(0, 1, 2)),
        {"type": "complete", "id": "short"},
    ]
    # "long" ran until its DELETE, in order; nothing of it came after the DELETE's answer,
    # when its id ran a query instead
    long = [event for event in seen["events"] if event["id"] == "long"]
    values = [event["payload"] for event in long if event["type"] == "next"]
    stopped, reused = values[:-1], values[-1]
    assert len(stopped) >= 1 and stopped == counts(*range(len(stopped))), long
    assert reused == {"data": {"hello": "Hello world"}}
    assert long[-1] == {"type": "complete", "id": "long"}
    assert seen["readyState"] == 2

    network = seen["network"]
    methods = [(entry["method"], entry["status"]) for entry in network]
    assert methods.count(("PUT", 201)) == 1
    assert methods.count(("POST", 202)) == 3
    assert methods.count(("DELETE", 200)) == 1
    [stream] = [entry for entry in network if entry["method"] == "GET"]
    assert stream["search"].startswith("?token=") and stream["accept"] == "text/event-stream"
    assert (stream["status"], stream["type"]) == (200, EVENT_STREAM)
    [delete] = [entry for entry in network if entry["method"] == "DELETE"]
    assert delete["search"] == "?operationId=long" and delete["token"] is True


# --- (b) graphql-sse's client in the page -------------------------------------------------


def check_client_results(seen: Observed) -> None:
    assert seen["three"] == {"values": counts(0, 1, 2), "completed": True}
    assert seen["two"] == {"values": counts(0, 1), "completed": True}
    assert seen["query"] == {"values": [{"data": {"hello": "Hello sse"}}], "completed": True}
    assert seen["firstOfLong"] == {"data": {"count": 0}}


def test_graphql_sse_client_in_single_connection_mode(observed: Observed) -> None:
    seen = observed["clientSingle"]
    check_client_results(seen)
    # Validation fails before anything is accepted: an ordinary GraphQL-over-HTTP answer,
    # not 202, which the client reports as an error (the protocol's single connection mode).
    assert seen["invalid"]["values"] == []
    assert seen["invalid"]["error"].startswith("Server responded with"), seen["invalid"]
    # leaving the long subscription sent a DELETE naming it
    assert seen["deleteStatus"] == 200
    assert seen["deleteSearch"].startswith("?operationId=")

    network = seen["network"]
    assert {(e["method"], e["status"]) for e in network if e["method"] == "PUT"} == {("PUT", 201)}
    streams = [e for e in network if e["method"] == "GET"]
    assert streams and all(e["token"] and e["accept"] == "text/event-stream" for e in streams)
    assert all((e["status"], e["type"]) == (200, EVENT_STREAM) for e in streams)
    operations = [e for e in network if e["method"] == "POST"]
    assert all(e["token"] for e in operations)
    # the two subscriptions, the query and the long one accepted; the invalid one answered
    # as GraphQL over HTTP answers it (the client reports that as an error)
    statuses = [e["status"] for e in operations]
    assert len(statuses) == 5 and statuses.count(202) == 4, operations
    assert [e["status"] for e in network if e["method"] == "DELETE"] == [200]


def test_graphql_sse_client_in_distinct_connections_mode(observed: Observed) -> None:
    seen = observed["clientDistinct"]
    check_client_results(seen)
    # in distinct connections mode a validation error arrives on the stream
    invalid = seen["invalid"]
    assert invalid["completed"] is True, invalid
    [result] = invalid["values"]
    assert "data" not in result and "nope" in result["errors"][0]["message"]

    network = seen["network"]
    assert [e["method"] for e in network] == ["POST"] * 5  # one per operation, no PUT, DELETE
    assert all(e["accept"] == "text/event-stream" and not e["token"] for e in network)
    assert all((e["status"], e["type"]) == (200, EVENT_STREAM) for e in network)


# --- (c) GraphiQL with graphiql_sse=True ----------------------------------------------------


def sse_requests(network: list[Observed]) -> list[Observed]:
    return [entry for entry in network if entry["accept"] == "text/event-stream"]


def test_graphiql_runs_a_subscription_over_sse(observed: Observed) -> None:
    seen = observed["graphiql"]
    assert seen["subscriptionTyped"] == "subscription { count(target: 3, delayMs: 200) }"
    run = seen["subscription"]
    # Values arrive one by one in the result pane: increasing, at least two of them seen
    # (the pane shows only the latest), ending with the last value the counter yields;
    # meanwhile the button read Stop, and it read Execute again at the end.
    values = run["seen"]
    assert len(values) >= 2 and values == sorted(set(values)) and values[-1] == 2, run
    assert run["stopShown"] is True
    [request] = sse_requests(run["network"])
    assert request["method"] == "POST"
    assert json.loads(request["body"])["query"] == seen["subscriptionTyped"]
    assert (request["status"], request["type"], request["failure"]) == (200, EVENT_STREAM, None)


def test_graphiql_sends_queries_as_before(observed: Observed) -> None:
    seen = observed["graphiql"]
    run = seen["query"]
    assert '"hello": "Hello GraphiQL"' in run["text"]
    assert sse_requests(run["network"]) == []
    [request] = [e for e in run["network"] if e["method"] == "POST"]
    assert json.loads(request["body"])["query"] == seen["queryTyped"]
    assert request["status"] == 200 and request["type"].startswith("application/json")


def test_graphiql_shows_a_subscriptions_errors(observed: Observed) -> None:
    seen = observed["graphiql"]
    run = seen["invalid"]
    assert "Cannot query field 'nope' on type 'Subscription'." in run["text"], run["text"]
    [request] = sse_requests(run["network"])
    assert (request["status"], request["type"]) == (200, EVENT_STREAM)


def test_graphiql_stop_ends_the_subscription(observed: Observed) -> None:
    seen = observed["graphiql"]
    run = seen["stop"]
    assert run["seen"] and run["stopShown"] is True, run
    # Stop aborted the request (the server sees the client leave and ends the operation);
    # the pane keeps the last value and the button reads Execute again.
    assert run["failure"] == "net::ERR_ABORTED"
    [request] = sse_requests(run["network"])
    assert request["failure"] == "net::ERR_ABORTED"
    assert '"count"' in run["textAfterStop"]
    posts = sum(e["method"] == "POST" for name in RUNS for e in seen[name]["network"])
    assert observed["graphiqlPostsLogged"] == posts  # every request ended on the server


RUNS = ("subscription", "query", "invalid", "stop")
