"""GraphiQL: the browser negotiation (``wants_graphiql``), the page and its pinned assets.

All synchronous: the page comes out as an exact ``HTTPResponse``. The integrity hashes are
checked against the npm files in ``tests/node``; Chromium runs the page for real in
``tests/e2e/test_graphiql_browser.py``.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import orjson
import pytest

from anyql import _graphiql
from tests.requirements import unavailable

# --- negotiation ----------------------------------------------------------------------


CHROME = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
    "image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"
)


@pytest.mark.parametrize(
    ("method", "accept", "expected"),
    [
        ("GET", CHROME, True),
        ("GET", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", True),
        ("GET", "text/html;q=0.9, application/json;q=0.8", True),
        ("GET", "*/*", False),
        ("GET", None, False),
        ("GET", "application/json, text/html", False),
        ("GET", "text/html;q=0.5, application/graphql-response+json", False),
        ("GET", "text/html;q=0", False),
        ("POST", CHROME, False),
        ("HEAD", CHROME, False),
    ],
)
def test_wants_graphiql(method: str, accept: str | None, expected: bool) -> None:
    headers = {} if accept is None else {"accept": accept}
    assert _graphiql.wants_graphiql(method, headers) is expected


# --- the page --------------------------------------------------------------------------


def test_graphiql_page_from_the_pinned_cdn() -> None:
    response = _graphiql.graphiql_response(title="<My> & API")
    assert response.status == 200
    assert response.headers == (("content-type", "text/html; charset=utf-8"), ("vary", "accept"))
    page = response.body.decode("utf-8")
    assert page.startswith("<!doctype html>")
    assert "<title>&lt;My&gt; &amp; API</title>" in page
    for asset in _graphiql.ASSET_SOURCES:
        url = f"{_graphiql.DEFAULT_CDN}/{asset.package}/{asset.path}"
        assert f'"{url}" integrity="{asset.integrity}" crossorigin="anonymous"' in page
    assert "GraphiQL.createFetcher({url: endpoint.href, subscriptionUrl: socket.href})" in page
    assert 'socket.protocol = endpoint.protocol === "https:" ? "wss:" : "ws:"' in page


def test_graphiql_page_from_a_custom_asset_base() -> None:
    page = _graphiql.graphiql_response(assets_url="/static/giql/").body.decode("utf-8")
    assert '<link rel="stylesheet" href="/static/giql/graphiql.min.css">' in page
    scripts = [
        '<script src="/static/giql/react.production.min.js"></script>',
        '<script src="/static/giql/react-dom.production.min.js"></script>',
        '<script src="/static/giql/graphiql.min.js"></script>',
    ]
    positions = [page.index(tag) for tag in scripts]
    assert positions == sorted(positions)  # React before ReactDOM before GraphiQL
    assert "integrity" not in page
    assert "cdn.jsdelivr" not in page


def test_graphiql_page_loads_nothing_else() -> None:
    page = _graphiql.graphiql_response().body.decode("utf-8")
    assert page.count("https://") == len(_graphiql.ASSET_SOURCES)
    assert "@import" not in page
    assert "fonts.g" not in page


def test_graphiql_docstring_lists_every_asset() -> None:
    doc = _graphiql.__doc__ or ""
    for asset in _graphiql.ASSET_SOURCES:
        assert f"{asset.name}" in doc
        assert f"{asset.package}" in doc


NODE_MODULES = Path(__file__).resolve().parent / "node" / "node_modules"


def test_graphiql_integrity_hashes_match_the_npm_files() -> None:
    for asset in _graphiql.ASSET_SOURCES:
        name, _, version = asset.package.rpartition("@")
        folder = NODE_MODULES / name
        if not (folder / asset.path).is_file():
            unavailable(f"{asset.package} is not installed in tests/node: npm ci in tests/node")
        installed = orjson.loads((folder / "package.json").read_bytes())["version"]
        if installed != version:
            unavailable(f"{name} in tests/node is {installed}, not {version}: npm ci in tests/node")
        digest = hashlib.sha384((folder / asset.path).read_bytes()).digest()
        assert asset.integrity == "sha384-" + base64.b64encode(digest).decode()
