"""GraphiQL: the browser negotiation (``wants_graphiql``), the page and its pinned assets.

All synchronous: the page comes out as an exact ``HTTPResponse``. The integrity hashes are
checked against the npm files in ``tests/node``. The page's own fetcher for subscriptions
over SSE (``graphiql_sse``) runs under node with stubs for GraphiQL and ``fetch``; Chromium
runs the page for real in ``tests/e2e/test_graphiql_browser.py`` (WebSocket) and
``tests/e2e/test_sse_browser.py`` (SSE).
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
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


# --- subscriptions over SSE (Settings.graphiql_sse) -------------------------------------


def test_graphiql_page_subscribes_over_a_websocket_by_default() -> None:
    page = _graphiql.render_graphiql()
    assert page == _graphiql.render_graphiql(sse=False)
    assert "subscriptionUrl: socket.href" in page
    assert "text/event-stream" not in page


def test_graphiql_page_subscribes_over_sse_when_asked() -> None:
    page = _graphiql.graphiql_response(sse=True).body.decode("utf-8")
    assert "GraphiQL.createFetcher({url: endpoint.href})" in page
    assert 'accept: "text/event-stream"' in page
    assert "subscriptionUrl" not in page
    assert "ws:" not in page
    assert "</script" not in boot_script(page)  # nothing ends the inline script early
    # the same assets, nothing more
    assert page.count("https://") == len(_graphiql.ASSET_SOURCES)


def test_the_app_setting_reaches_the_page() -> None:
    from anyql import GraphQL, Schema
    from anyql.types import HTTPRequest, RequestInfo

    schema = Schema("type Query { hello: String }")
    browser = RequestInfo("GET", "/graphql", b"", (("accept", "text/html"),))
    pages = {}
    for setting in (False, True):
        app = GraphQL(schema, graphiql_sse=setting, graphiql_assets_url="/static")
        pages[setting] = app.http.receive(HTTPRequest(browser, b""))
    assert pages[False] == _graphiql.graphiql_response(assets_url="/static")
    assert pages[True] == _graphiql.graphiql_response(assets_url="/static", sse=True)
    assert pages[True] != pages[False]


def boot_script(page: str) -> str:
    """The page's own inline script (the last <script> element)."""
    return page.rpartition("<script>\n")[2].partition("\n</script>")[0]


# The page's script under node, with GraphiQL, React and fetch played by stubs: each
# scenario scripts the response fetch gets (its chunks split where a parser could slip)
# and records what the fetcher yielded, what it threw and what fetch was asked.
_SSE_HARNESS = r"""
const boot = await new Promise((resolve) => {
  let text = "";
  process.stdin.on("data", (chunk) => (text += chunk));
  process.stdin.on("end", () => resolve(text));
});
const created = [];
const requests = [];
let props = null;
let respond = null;
globalThis.window = { location: { href: "http://app.test/graphql?query=x#frag" } };
globalThis.document = { getElementById: () => ({}) };
globalThis.React = { createElement: (component, given) => (props = given) };
globalThis.ReactDOM = { createRoot: () => ({ render: () => {} }) };
globalThis.GraphiQL = {
  createFetcher: (options) => {
    created.push(options);
    return async (params) => ({ overHttp: params });
  },
};
globalThis.fetch = async (url, init) => {
  requests.push({ url, method: init.method, headers: init.headers, body: init.body });
  return respond(init.signal);
};
(0, eval)(boot);

const encoder = new TextEncoder();
function stream(chunks, type = "text/event-stream; charset=utf-8", status = 200) {
  return (signal) => {
    const body = new ReadableStream({
      start(controller) {
        for (const chunk of chunks) controller.enqueue(encoder.encode(chunk));
        if (chunks.hang) {
          signal.addEventListener("abort", () =>
            controller.error(new DOMException("aborted", "AbortError")),
          );
        } else {
          controller.close();
        }
      },
    });
    return new Response(body, { status, headers: { "content-type": type } });
  };
}
const subscription = {
  definitions: [{ kind: "OperationDefinition", operation: "subscription" }],
};
async function run(chunks, type, status) {
  respond = stream(chunks, type, status);
  const results = [];
  const iterable = await props.fetcher(
    { query: "subscription { count }", variables: { a: 1 } },
    { documentAST: subscription, headers: { authorization: "Bearer t" } },
  );
  try {
    for await (const result of iterable) results.push(result);
    return { results };
  } catch (error) {
    return { results, error: String(error) };
  }
}

const out = { created };
out.split = await run([
  ": opening\r",
  "\n\r\nevent: next\r\ndata: {\"data\":",
  "{\"count\":0}}\r",
  "\n\r",
  "\nevent: next\ndata: {\"data\":\n",
  "data: {\"count\":1}}\n\n",
  "event:next\rdata:{\"data\":{\"count\":2}}\r",
  "\rid: 7\nevent: other\ndata: {}\n\nevent: complete\ndata: \n\n",
]);
out.request = requests.at(-1);
out.refused = await run(['{"errors":[{"message":"no"}]}'], "application/json", 400);
out.notJson = await run(["Too Many Requests"], "text/plain", 429);
out.drained = await run([":\n\n", "retry: 1500\n\n"]);
out.badJson = await run(["event: next\ndata: {oops\n\n"]);

const hanging = ["event: next\ndata: {\"data\":{\"count\":0}}\n\n"];
hanging.hang = true;
respond = stream(hanging);
const iterable = await props.fetcher(
  { query: "subscription { count }" },
  { documentAST: subscription },
);
const iterator = iterable[Symbol.asyncIterator]();
const first = await iterator.next();
const pending = iterator.next(); // waits on the socket
await iterator.return(); // GraphiQL's Stop
out.stopped = { first, pending: await pending, after: await iterator.next() };

const twoOperations = {
  definitions: [
    { kind: "OperationDefinition", operation: "query", name: { value: "Q" } },
    { kind: "OperationDefinition", operation: "subscription", name: { value: "S" } },
    { kind: "FragmentDefinition" },
  ],
};
const oneQuery = { definitions: [{ kind: "OperationDefinition", operation: "query" }] };
const before = requests.length;
out.routing = {
  query: await props.fetcher({ query: "{ a }" }, { documentAST: oneQuery }),
  named: await props.fetcher({ query: "...", operationName: "Q" }, { documentAST: twoOperations }),
  noAst: await props.fetcher({ query: "subscription { a }" }, {}),
  unnamed: await props.fetcher({ query: "..." }, { documentAST: twoOperations }),
  fetched: requests.length - before,
};
const namedSubscription = await props.fetcher(
  { query: "...", operationName: "S" },
  { documentAST: twoOperations },
);
out.routing.subscriptionIsIterable = Symbol.asyncIterator in namedSubscription;
process.stdout.write(JSON.stringify(out));
"""


def test_the_sse_fetcher_parses_event_streams_and_stops() -> None:
    node = shutil.which("node")
    if node is None:
        unavailable("node is not installed")
    page = _graphiql.render_graphiql(sse=True)
    done = subprocess.run(
        [node, "--input-type=module", "-e", _SSE_HARNESS],
        input=boot_script(page),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = orjson.loads(done.stdout)

    assert out["created"] == [{"url": "http://app.test/graphql"}]  # no WebSocket URL
    # CRLF split across chunks, CR alone, a comment, multi-line data, no space after the
    # colon, an unknown event: three results, then complete ends the iteration
    assert out["split"] == {"results": [{"data": {"count": n}} for n in range(3)]}
    assert out["request"] == {
        "url": "http://app.test/graphql",
        "method": "POST",
        "headers": {
            "content-type": "application/json",
            "accept": "text/event-stream",
            "authorization": "Bearer t",
        },
        "body": '{"query":"subscription { count }","variables":{"a":1}}',
    }
    # a refusal before streaming is shown as the server sent it
    assert out["refused"] == {"results": [{"errors": [{"message": "no"}]}]}
    assert out["notJson"]["results"] == []
    assert "429" in out["notJson"]["error"] and "Too Many Requests" in out["notJson"]["error"]
    # a drain's retry hint ends the stream without complete: an error, not silence
    assert out["drained"]["results"] == []
    assert "ended before the subscription completed" in out["drained"]["error"]
    assert out["badJson"]["results"] == [] and "JSON" in out["badJson"]["error"]
    # Stop while the fetcher waits on the socket: the wait ends at once, quietly
    assert out["stopped"] == {
        "first": {"value": {"data": {"count": 0}}, "done": False},
        "pending": {"done": True},
        "after": {"done": True},
    }
    routing = out["routing"]
    assert routing["query"] == {"overHttp": {"query": "{ a }"}}
    assert routing["named"] == {"overHttp": {"query": "...", "operationName": "Q"}}
    assert routing["noAst"] == {"overHttp": {"query": "subscription { a }"}}
    assert routing["unnamed"] == {"overHttp": {"query": "..."}}  # ambiguous: the server says so
    assert routing["fetched"] == 0
    assert routing["subscriptionIsIterable"] is True
