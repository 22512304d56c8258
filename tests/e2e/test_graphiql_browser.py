"""GraphiQL in a real browser: headless Debian Chromium runs a subscription against the counter.

The page's four assets (``anyql._graphiql.ASSET_SOURCES``) are served from the npm packages in
tests/node/node_modules by a small local HTTP server, because the machine has no internet and
the browser may reach loopback only. The counter example is served by the native server on
Trio through ``tests/e2e/app_graphiql.py``, which points ``graphiql_assets_url`` at it.

Without Chromium (``apt-get install -y chromium``) or the npm packages (``npm ci`` in
tests/node) the browser test is skipped with the reason; under CI it fails instead.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from anyql._graphiql import ASSET_SOURCES, Asset
from tests.e2e.conftest import NODE_DIR
from tests.e2e.servers import running_server
from tests.requirements import unavailable

pytestmark = pytest.mark.e2e

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SUBSCRIPTION = "subscription { count(target: 3, delayMs: 200) }"


def asset_file(asset: Asset) -> Path:
    """Where npm put ``asset``: node_modules/<package>/<path>."""
    package = asset.package.rpartition("@")[0]
    return NODE_DIR / "node_modules" / package / asset.path


@pytest.fixture(scope="module")
def asset_files() -> dict[str, Path]:
    files = {asset.name: asset_file(asset) for asset in ASSET_SOURCES}
    missing = [str(path) for path in files.values() if not path.is_file()]
    if missing:
        unavailable(f"GraphiQL assets not installed ({', '.join(missing)}): npm ci in tests/node")
    return files


@pytest.fixture(scope="module")
def assets_url(asset_files: dict[str, Path]) -> Iterator[str]:
    """A loopback HTTP server for exactly the four asset names; its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = asset_files.get(self.path.lstrip("/"))
            if path is None:
                self.send_error(404)
                return
            body = path.read_bytes()
            kind = "text/css" if path.suffix == ".css" else "text/javascript"
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
    """The command that drives Chromium: node and tests/node/browser_graphiql.mjs."""
    node = shutil.which("node")
    if node is None:
        unavailable("node is not installed")
    if not (NODE_DIR / "node_modules" / "playwright-core").is_dir():
        unavailable("playwright-core is not installed: npm ci in tests/node")
    if not os.access(CHROMIUM, os.X_OK):
        unavailable(f"no Chromium at {CHROMIUM}: apt-get install -y chromium")
    return [str(node), str(NODE_DIR / "browser_graphiql.mjs")]


def test_local_assets_are_the_files_the_cdn_page_pins(asset_files: dict[str, Path]) -> None:
    for asset in ASSET_SOURCES:
        digest = hashlib.sha384(asset_files[asset.name].read_bytes()).digest()
        assert f"sha384-{base64.b64encode(digest).decode()}" == asset.integrity, asset.name


def test_graphiql_runs_a_subscription_in_chromium(
    assets_url: str, browser_driver: list[str]
) -> None:
    env = {"ANYQL_GRAPHIQL_ASSETS": assets_url}
    with running_server("native-trio", target="tests.e2e.app_graphiql:app", env=env) as server:
        done = subprocess.run(
            [*browser_driver, server.http_url, SUBSCRIPTION, "30000"],
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
            env={**os.environ, "CHROMIUM": CHROMIUM},
        )
    assert done.returncode == 0, done.stderr
    seen: dict[str, Any] = json.loads(done.stdout)
    assert "crash" not in seen, seen["crash"]

    assert seen["typed"] == SUBSCRIPTION
    assert seen["blocked"] == [], "the page tried to leave the machine"
    assert sorted(seen["assetRequests"]) == sorted(
        f"{assets_url}/{asset.name}" for asset in ASSET_SOURCES
    )
    assert seen["websockets"] == [server.ws_url]  # the subscription went over the WebSocket
    # Values arrive one by one in the result pane: increasing, at least two of them seen
    # (the pane shows only the latest), ending with the last value the counter yields.
    values = seen["seen"]
    assert len(values) >= 2, seen
    assert values == sorted(set(values)), seen
    assert values[-1] == 2, seen
    assert seen["stopShown"] and seen["completed"], seen
    assert seen["pageErrors"] == [], seen["pageErrors"]
    assert seen["consoleErrors"] == [], seen["consoleErrors"]
