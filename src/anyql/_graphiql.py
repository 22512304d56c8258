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
With ``sse=True`` (``Settings.graphiql_sse``) the page wraps that fetcher in its own, written
inline, which sends subscriptions over Server-Sent Events instead: one ``POST`` per
subscription with ``Accept: text/event-stream`` (graphql-sse's distinct connections mode),
the response's event stream parsed in the page (``next`` events are results, ``complete``
ends it) and handed to GraphiQL as an async iterable; Stop aborts the request, which ends
the operation on the server. No WebSocket is opened and no further asset is loaded.

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

# The same page with subscriptions over SSE (distinct connections mode). GraphiQL reads the
# iterable with ``for await`` and its Stop button calls ``return()`` on it: that aborts the
# fetch first, so the generator, waiting on the socket, ends at once instead of at the next
# event. An answer that is not an event stream (a refusal before streaming: 400, 406, 503)
# is shown as it came; a stream that ends without ``complete`` (a drain's ``retry:`` hint)
# is an error.
_SSE_BOOT_SCRIPT: Final = """\
(function () {
  var endpoint = new URL(window.location.href);
  endpoint.search = "";
  endpoint.hash = "";
  var http = GraphiQL.createFetcher({url: endpoint.href});

  // The operation that runs: the one named, or the only one (GraphQL's own rule).
  function isSubscription(ast, name) {
    var operations = ast.definitions.filter(function (definition) {
      return definition.kind === "OperationDefinition";
    });
    var chosen = operations.filter(function (operation) {
      return name ? operation.name && operation.name.value === name : operations.length === 1;
    })[0];
    return chosen !== undefined && chosen.operation === "subscription";
  }

  async function* events(params, headers, controller) {
    var finished = false;
    try {
      var response = await fetch(endpoint.href, {
        method: "POST",
        headers: Object.assign(
          {"content-type": "application/json", accept: "text/event-stream"}, headers
        ),
        body: JSON.stringify(params),
        signal: controller.signal,
      });
      var type = response.headers.get("content-type") || "";
      if (!type.toLowerCase().startsWith("text/event-stream")) {
        var text = await response.text();
        var answer;
        try {
          answer = JSON.parse(text);
        } catch (_) {
          throw new Error(response.status + " " + response.statusText + ": " + text);
        }
        finished = true;
        yield answer;
        return;
      }
      // The event stream format of the HTML standard: lines end with CRLF, LF or CR; a
      // blank line dispatches the event; ":" starts a comment; one space after the colon
      // is dropped; data lines join with LF.
      var reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      var buffer = "";
      var event = "";
      var data = [];
      for (;;) {
        var chunk = await reader.read();
        if (chunk.done) break;
        buffer += chunk.value;
        for (;;) {
          var end = buffer.search(/[\\r\\n]/);
          if (end < 0 || (end === buffer.length - 1 && buffer[end] === "\\r")) break;
          var line = buffer.slice(0, end);
          buffer = buffer.slice(buffer.startsWith("\\r\\n", end) ? end + 2 : end + 1);
          if (line === "") {
            if (event === "complete") {
              finished = true; // the server ends the response after this event
              return;
            }
            if (event === "next" && data.length > 0) yield JSON.parse(data.join("\\n"));
            event = "";
            data = [];
          } else if (line[0] !== ":") {
            var colon = line.indexOf(":");
            var field = colon < 0 ? line : line.slice(0, colon);
            var value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
            if (field === "event") event = value;
            else if (field === "data") data.push(value);
          }
        }
      }
      throw new Error("The event stream ended before the subscription completed");
    } catch (error) {
      if (!controller.signal.aborted) throw error;
    } finally {
      if (!finished) controller.abort(); // a stopped or broken stream: end the request
    }
  }

  function subscribe(params, headers) {
    var controller = new AbortController();
    var results = events(params, headers || {}, controller);
    return {
      [Symbol.asyncIterator]: function () {
        return this;
      },
      next: function () {
        return results.next();
      },
      return: function () {
        controller.abort();
        return results.return();
      },
    };
  }

  var fetcher = function (params, options) {
    var ast = options && options.documentAST;
    if (ast && isSubscription(ast, params.operationName)) {
      return subscribe(params, options.headers);
    }
    return http(params, options);
  };
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


def render_graphiql(
    *, assets_url: str | None = None, title: str = "anyql", sse: bool = False
) -> str:
    """Return the GraphiQL page as HTML text.

    Args:
        assets_url: base URL holding the four files of ``ASSET_SOURCES`` under their
            ``name``; None loads pinned versions from ``DEFAULT_CDN`` with integrity checks.
        title: the page title (HTML-escaped here).
        sse: subscriptions over Server-Sent Events (distinct connections mode) instead of
            a graphql-transport-ws WebSocket.

    Returns:
        A complete HTML5 document.
    """
    stylesheet, *scripts = (_asset_tag(asset, assets_url) for asset in ASSET_SOURCES)
    return _PAGE.format(
        title=escape(title),
        stylesheet=stylesheet,
        scripts="\n".join(scripts),
        boot=_SSE_BOOT_SCRIPT if sse else _BOOT_SCRIPT,
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


def graphiql_response(
    *, assets_url: str | None = None, title: str = "anyql", sse: bool = False
) -> HTTPResponse:
    """The GraphiQL page as a response (``render_graphiql`` in ``html_response``).

    Args:
        assets_url: base URL of self-hosted assets, or None for the pinned CDN ones.
        title: the page title.
        sse: subscriptions over Server-Sent Events instead of a WebSocket.

    Returns:
        A 200 ``text/html; charset=utf-8`` response.
    """
    return html_response(render_graphiql(assets_url=assets_url, title=title, sse=sse))
