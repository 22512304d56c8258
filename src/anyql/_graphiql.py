"""GraphiQL: the page (one HTML document that loads React and GraphiQL from an asset base)
and serving it to browsers.

Owns the page text, the names and versions of the browser assets it loads, the browser
negotiation (``wants_graphiql``: a GET that prefers HTML to JSON) and the page as an
``HTTPResponse`` (``graphiql_response``, ``html_response``); ``http.GraphQLHTTP`` decides
when to serve it. Imports the standard library, ``_media`` and ``types`` only; never anyio,
graphql, h11 or wsproto (a test checks it).

The page runs GraphiQL 4 as UMD bundles on React 18 (React 19 ships no UMD builds, and
GraphiQL 5 is ESM only). ``GraphiQL.createFetcher`` sends queries and mutations to the page's
own URL (POST, ``application/json``) and subscriptions to the same path over ``ws:``/``wss:``
with graphql-transport-ws; the graphql-ws client is bundled inside ``graphiql.min.js``.

By default the assets come from a public CDN, pinned and checked with Subresource Integrity.
With a custom base URL (``assets_url="/static/graphiql"`` or a full URL), the page expects
these four files directly under it, copied unchanged from the npm packages named in
``ASSET_SOURCES``:

    react.production.min.js        react@18.3.1      umd/react.production.min.js
    react-dom.production.min.js    react-dom@18.3.1  umd/react-dom.production.min.js
    graphiql.min.js                graphiql@4.1.2    graphiql.min.js
    graphiql.min.css               graphiql@4.1.2    graphiql.min.css

The stylesheet embeds its fonts as data URLs, so the page fetches nothing but these four.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Final, NamedTuple

from anyql._media import HTML, RESPONSE_TYPES, explicit_quality, parse_accept
from anyql.types import HTTPResponse

__all__ = [
    "ASSET_SOURCES",
    "DEFAULT_CDN",
    "GRAPHIQL_VERSION",
    "REACT_VERSION",
    "Asset",
    "graphiql_response",
    "html_response",
    "render_graphiql",
    "wants_graphiql",
]

GRAPHIQL_VERSION: Final = "4.1.2"
REACT_VERSION: Final = "18.3.1"
DEFAULT_CDN: Final = "https://cdn.jsdelivr.net/npm"


class Asset(NamedTuple):
    """One file the page loads: its name under a custom base and where npm ships it."""

    name: str
    package: str
    path: str
    integrity: str


#: In load order: the stylesheet, then React, ReactDOM and GraphiQL (which needs both).
ASSET_SOURCES: Final = (
    Asset(
        "graphiql.min.css",
        f"graphiql@{GRAPHIQL_VERSION}",
        "graphiql.min.css",
        "sha384-1el1QShFBnnXTx9x/Cprg82hZWKt0ry29OAYIXt05swbi0KcZDFoj0CWguMpopJr",
    ),
    Asset(
        "react.production.min.js",
        f"react@{REACT_VERSION}",
        "umd/react.production.min.js",
        "sha384-DGyLxAyjq0f9SPpVevD6IgztCFlnMF6oW/XQGmfe+IsZ8TqEiDrcHkMLKI6fiB/Z",
    ),
    Asset(
        "react-dom.production.min.js",
        f"react-dom@{REACT_VERSION}",
        "umd/react-dom.production.min.js",
        "sha384-gTGxhz21lVGYNMcdJOyq01Edg0jhn/c22nsx0kyqP0TxaV5WVdsSH1fSDUf5YJj1",
    ),
    Asset(
        "graphiql.min.js",
        f"graphiql@{GRAPHIQL_VERSION}",
        "graphiql.min.js",
        "sha384-9XdHu7ajgGJziD4J1zNBKQ842Q/+zZfDv+ib1eMhZWBH6hPAs806x+Jbcf0yNO6B",
    ),
)

# The endpoint is wherever the page was served from, minus query and fragment; the
# WebSocket URL is the same path with the scheme swapped (ws: and wss: are "special"
# schemes, so the URL API allows the swap).
_BOOT_SCRIPT: Final = """\
(function () {
  var endpoint = new URL(window.location.href);
  endpoint.search = "";
  endpoint.hash = "";
  var socket = new URL(endpoint.href);
  socket.protocol = endpoint.protocol === "https:" ? "wss:" : "ws:";
  var fetcher = GraphiQL.createFetcher({url: endpoint.href, subscriptionUrl: socket.href});
  var root = ReactDOM.createRoot(document.getElementById("graphiql"));
  root.render(React.createElement(GraphiQL, {fetcher: fetcher}));
})();"""

_PAGE: Final = """\
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{title}</title>
{stylesheet}
<style>html, body, #graphiql {{ height: 100%; margin: 0; }}</style>
</head>
<body>
<div id="graphiql">Loading GraphiQL…</div>
{scripts}
<script>
{boot}
</script>
</body>
</html>
"""


def _asset_tag(asset: Asset, assets_url: str | None) -> str:
    if assets_url is None:
        url = f"{DEFAULT_CDN}/{asset.package}/{asset.path}"
        pinned = f' integrity="{asset.integrity}" crossorigin="anonymous"'
    else:
        url = f"{assets_url.rstrip('/')}/{asset.name}"
        pinned = ""  # self-hosted files are the operator's to vouch for
    if asset.name.endswith(".css"):
        return f'<link rel="stylesheet" href="{escape(url)}"{pinned}>'
    return f'<script src="{escape(url)}"{pinned}></script>'


def render_graphiql(*, assets_url: str | None = None, title: str = "anyql") -> str:
    """Return the GraphiQL page as HTML text.

    Args:
        assets_url: base URL holding the four files of ``ASSET_SOURCES`` under their
            ``name``; None loads pinned versions from ``DEFAULT_CDN`` with integrity checks.
        title: the page title (HTML-escaped here).

    Returns:
        A complete HTML5 document.
    """
    stylesheet, *scripts = (_asset_tag(asset, assets_url) for asset in ASSET_SOURCES)
    return _PAGE.format(
        title=escape(title),
        stylesheet=stylesheet,
        scripts="\n".join(scripts),
        boot=_BOOT_SCRIPT,
    )


# --- serving -------------------------------------------------------------------------


def wants_graphiql(method: str, headers: Mapping[str, str]) -> bool:
    """True for a browser navigating to the endpoint: the GraphiQL page, not JSON.

    That is a GET whose ``Accept`` names ``text/html`` with a higher quality than any
    range naming a JSON type explicitly (``*/*`` counts for neither).

    Args:
        method: the request method.
        headers: request headers, lower-case names.

    Returns:
        Whether to answer with ``graphiql_response`` (if the app enables GraphiQL).
    """
    if method != "GET":
        return False
    ranges = parse_accept(headers.get("accept", ""))
    html = explicit_quality(ranges, HTML)
    json = max(explicit_quality(ranges, media_type) for media_type in RESPONSE_TYPES)
    return html > json


def html_response(page: str) -> HTTPResponse:
    """A 200 ``text/html; charset=utf-8`` response holding ``page`` (``vary: accept``).

    Args:
        page: the HTML text: ours from ``render_graphiql``, or the app's own page.

    Returns:
        The response, the body UTF-8.
    """
    headers = (("content-type", f"{HTML}; charset=utf-8"), ("vary", "accept"))
    return HTTPResponse(200, headers, page.encode("utf-8"))


def graphiql_response(*, assets_url: str | None = None, title: str = "anyql") -> HTTPResponse:
    """The GraphiQL page as a response (``render_graphiql`` in ``html_response``).

    Args:
        assets_url: base URL of self-hosted assets, or None for the pinned CDN ones.
        title: the page title.

    Returns:
        A 200 ``text/html; charset=utf-8`` response.
    """
    return html_response(render_graphiql(assets_url=assets_url, title=title))
