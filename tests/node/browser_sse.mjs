// GraphQL over SSE in headless Debian Chromium (playwright-core, no browser download): the
// browser's own EventSource (distinct connections mode, and single connection mode with the
// token in the URL), the graphql-sse client running inside a page (both modes), and GraphiQL
// with graphiql_sse=True (a subscription, a query, an error, Stop).
// Prints one JSON object of observations; exits 0 unless the browser could not be driven.
// Usage: node browser_sse.mjs <app-url> <graphiql-url> <assets-url> [timeout-ms]
//   app-url: tests/e2e/app.py's endpoint; graphiql-url: tests/e2e/app_graphiql_sse.py's;
//   assets-url: serves graphql-sse.min.js and GraphiQL's four assets.
// CHROMIUM overrides the browser binary (default /usr/bin/chromium).
// Every wait is for a condition in the page; the timeout only bounds a broken run.
import { chromium } from "playwright-core";

const [appUrl, graphiqlUrl, assetsUrl, timeoutArg] = process.argv.slice(2);
const timeout = Number(timeoutArg ?? 20000);
const out = { blocked: [], pageErrors: [], consoleErrors: [], websockets: [] };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});

function isLocal(url) {
  const { protocol, hostname } = new URL(url);
  return protocol === "data:" || hostname === "127.0.0.1" || hostname === "localhost";
}

// Every request to the GraphQL endpoint: method, query string, what it accepted, whether it
// carried a stream token, the answer's status and type, and a failure (an aborted request).
function watchEndpoint(page, endpoint) {
  const log = [];
  const entries = new Map();
  page.on("request", (request) => {
    const url = new URL(request.url());
    if (url.origin + url.pathname !== endpoint) return;
    const headers = request.headers();
    const entry = {
      method: request.method(),
      search: url.search,
      accept: headers.accept ?? null,
      token: "x-graphql-event-stream-token" in headers,
      body: request.postData(),
      status: null,
      type: null,
      failure: null,
    };
    entries.set(request, entry);
    log.push(entry);
  });
  page.on("response", (response) => {
    const entry = entries.get(response.request());
    if (entry === undefined) return;
    entry.status = response.status();
    entry.type = response.headers()["content-type"] ?? null;
  });
  page.on("requestfailed", (request) => {
    const entry = entries.get(request);
    if (entry !== undefined) entry.failure = request.failure()?.errorText ?? "failed";
  });
  return log;
}

async function newPage(context, endpoint) {
  const page = await context.newPage();
  page.on("pageerror", (error) => out.pageErrors.push(String(error)));
  page.on("console", (message) => {
    if (message.type() === "error") out.consoleErrors.push(message.text());
  });
  page.on("websocket", (socket) => out.websockets.push(socket.url()));
  return { page, network: watchEndpoint(page, endpoint) };
}

// --- (a) the browser's EventSource -------------------------------------------------------

async function eventSourceDistinct(page, network) {
  const query = "subscription { count(target: 3) }";
  await page.evaluate((query) => {
    const seen = (window.distinct = { events: [], errors: 0, opened: false, done: false });
    const source = new EventSource(`/graphql?query=${encodeURIComponent(query)}`);
    source.onopen = () => (seen.opened = true);
    source.onmessage = (event) => seen.events.push({ type: "message", data: event.data });
    source.addEventListener("next", (event) => {
      seen.events.push({ type: "next", data: JSON.parse(event.data) });
    });
    source.addEventListener("complete", (event) => {
      seen.events.push({ type: "complete", data: event.data });
      source.close();
      seen.readyState = source.readyState;
      seen.done = true;
    });
    source.onerror = () => (seen.errors += 1);
  }, query);
  await page.waitForFunction(() => window.distinct.done || window.distinct.errors > 0, null, {
    timeout,
  });
  const seen = await page.evaluate(() => window.distinct);
  return { query, ...seen, network: network.splice(0) };
}

async function eventSourceSingle(page, network) {
  await page.evaluate(async () => {
    const seen = (window.single = { events: [], errors: 0, opened: false, statuses: {} });
    const put = await fetch("/graphql", { method: "PUT" });
    seen.statuses.put = put.status;
    const token = await put.text();
    const headers = { "content-type": "application/json", "x-graphql-event-stream-token": token };
    const post = (operationId, query) =>
      fetch("/graphql", {
        method: "POST",
        headers,
        body: JSON.stringify({ query, extensions: { operationId } }),
      }).then((response) => response.status);
    const source = new EventSource(`/graphql?token=${encodeURIComponent(token)}`);
    window.singleSource = source;
    const opened = new Promise((resolve) => (source.onopen = resolve));
    source.onerror = () => (seen.errors += 1);
    let stopping = false;
    source.addEventListener("next", (event) => {
      const { id, payload } = JSON.parse(event.data);
      seen.events.push({ type: "next", id, payload });
      if (id === "long" && !stopping) {
        // Stop it after its first value; once stopped, its id may be used again.
        stopping = true;
        fetch(`/graphql?operationId=long`, { method: "DELETE", headers })
          .then((response) => (seen.statuses.delete = response.status))
          .then(() => post("long", "{ hello }"))
          .then((status) => (seen.statuses.reused = status));
      }
    });
    source.addEventListener("complete", (event) => {
      seen.events.push({ type: "complete", id: JSON.parse(event.data).id });
    });
    await opened;
    seen.opened = true;
    seen.statuses.short = await post("short", "subscription { count(target: 3) }");
    seen.statuses.long = await post("long", "subscription { count(target: 100000, delayMs: 20) }");
  });
  // Done when the short one completed and the stopped id ran again (its query completes).
  await page.waitForFunction(
    () => {
      const { events, errors, statuses } = window.single;
      const completed = events.filter((e) => e.type === "complete").map((e) => e.id);
      return (
        errors > 0 ||
        (completed.includes("short") &&
          statuses.reused !== undefined &&
          events.some((e) => e.id === "long" && e.payload?.data?.hello !== undefined))
      );
    },
    null,
    { timeout },
  );
  const seen = await page.evaluate(() => {
    window.singleSource.close();
    return { ...window.single, readyState: window.singleSource.readyState };
  });
  return { ...seen, network: network.splice(0) };
}

// --- (b) graphql-sse's client inside the page ---------------------------------------------

async function graphqlSseClient(page, network, singleConnection) {
  const deleted = singleConnection
    ? page.waitForResponse((response) => response.request().method() === "DELETE", { timeout })
    : null;
  deleted?.catch(() => {}); // awaited below; a failure before then must not end the process
  const seen = await page.evaluate(async (singleConnection) => {
    const { createClient } = window.graphqlSse;
    const client = createClient({ url: "/graphql", singleConnection, retryAttempts: 0 });
    window.sseClient = client;
    async function collect(query) {
      const values = [];
      try {
        for await (const result of client.iterate({ query })) values.push(result);
        return { values, completed: true };
      } catch (error) {
        return { values, error: String(error?.message ?? error) };
      }
    }
    const result = {};
    // two subscriptions at once (one stream in single connection mode, two in distinct)
    [result.three, result.two] = await Promise.all([
      collect("subscription { count(target: 3) }"),
      collect("subscription { count(target: 2, delayMs: 10) }"),
    ]);
    result.query = await collect("{ hello(name: \"sse\") }");
    result.invalid = await collect("subscription { nope }");
    // leave a long subscription after its first value (single connection mode: a DELETE)
    const long = client.iterate({ query: "subscription { count(target: 100000, delayMs: 20) }" });
    for await (const value of long) {
      result.firstOfLong = value;
      break;
    }
    return result;
  }, singleConnection);
  if (deleted !== null) {
    const response = await deleted;
    seen.deleteStatus = response.status();
    seen.deleteSearch = new URL(response.url()).search;
  }
  await page.evaluate(() => window.sseClient.dispose()); // disposing first would abort the DELETE
  return { ...seen, network: network.splice(0) };
}

// --- (c) GraphiQL with graphiql_sse=True ----------------------------------------------------

async function resultText(page) {
  return page.evaluate(() => {
    const pane = document.querySelector(".graphiql-response");
    return pane === null ? "" : pane.innerText;
  });
}

async function typeQuery(page, query) {
  const editor = page.locator(".graphiql-query-editor .CodeMirror").first();
  await editor.waitFor({ timeout });
  await editor.click();
  await page.keyboard.press("Control+A");
  await page.keyboard.press("Delete");
  // Typed key by key, as a person would; the editor auto-closes brackets and overtypes them.
  await page.keyboard.type(query, { delay: 5 });
  await page.keyboard.press("Escape"); // dismiss an autocomplete hint, if one is open
  // GraphiQL re-parses 100 ms after the last keystroke and the fetcher decides SSE or HTTP
  // from that parse: wait until it is current.
  await page.waitForFunction(
    () => {
      const cm = document.querySelector(".graphiql-query-editor .CodeMirror").CodeMirror;
      return cm.documentAST?.loc?.source?.body === cm.getValue();
    },
    null,
    { timeout },
  );
  return page.evaluate(
    () => document.querySelector(".graphiql-query-editor .CodeMirror").CodeMirror.getValue(),
  );
}

const executeButton = (page) => page.locator(".graphiql-execute-button");

async function waitForExecute(page) {
  await page.locator('.graphiql-execute-button[aria-label^="Execute"]').waitFor({ timeout });
}

// Records, from the page itself, each distinct `count` the result pane shows (it shows only
// the latest) and whether the button turned to Stop; `resetPane` starts a new record, which
// begins when GraphiQL clears the pane for the new run (until then it shows the last one).
async function watchPane(page) {
  await page.evaluate(() => {
    let last = null;
    let cleared = false;
    window.resetPane = () => {
      window.pane = { seen: [], stopShown: false };
      last = null;
      cleared = false;
    };
    window.resetPane();
    const observer = new MutationObserver(() => {
      const text = document.querySelector(".graphiql-response")?.innerText ?? "";
      const match = /"count"\s*:\s*(\d+)/.exec(text);
      if (match === null) cleared = true;
      if (cleared && match !== null && match[1] !== last) {
        last = match[1];
        window.pane.seen.push(Number(last));
      }
      const label = document.querySelector(".graphiql-execute-button")?.getAttribute("aria-label");
      if (label?.startsWith("Stop")) window.pane.stopShown = true;
    });
    observer.observe(document.body, {
      subtree: true,
      childList: true,
      characterData: true,
      attributes: true,
    });
  });
}

// Runs the editor's operation and waits until the result pane matches `pattern`.
async function execute(page, pattern) {
  await page.evaluate(() => window.resetPane());
  await executeButton(page).click();
  await page.waitForFunction(
    (pattern) =>
      new RegExp(pattern).test(document.querySelector(".graphiql-response")?.innerText ?? ""),
    pattern,
    { timeout },
  );
  const run = await page.evaluate(() => window.pane);
  run.text = await resultText(page);
  return run;
}

async function graphiql(page, network) {
  const result = {};
  await page.goto(graphiqlUrl, { timeout });
  await page.locator(".graphiql-query-editor .CodeMirror").first().waitFor({ timeout });
  await watchPane(page);

  result.subscriptionTyped = await typeQuery(page, "subscription { count(target: 3, delayMs: 200) }");
  result.subscription = await execute(page, String.raw`"count"\s*:\s*2\b`);
  await waitForExecute(page);
  result.subscription.network = network.splice(0);

  result.queryTyped = await typeQuery(page, "{ hello(name: \"GraphiQL\") }");
  result.query = await execute(page, "Hello GraphiQL");
  await waitForExecute(page);
  result.query.network = network.splice(0);

  result.invalidTyped = await typeQuery(page, "subscription { nope }");
  result.invalid = await execute(page, "nope");
  await waitForExecute(page);
  result.invalid.network = network.splice(0);

  // Stop: after the first value of a long subscription, the button (now Stop) ends it.
  result.stopTyped = await typeQuery(page, "subscription { count(target: 100000, delayMs: 20) }");
  result.stop = await execute(page, String.raw`"count"\s*:\s*\d+`);
  const failed = page.waitForEvent("requestfailed", {
    predicate: (request) => request.url() === graphiqlUrl,
    timeout,
  });
  failed.catch(() => {}); // awaited below
  await executeButton(page).click();
  await waitForExecute(page);
  result.stop.failure = (await failed).failure()?.errorText ?? null;
  result.stop.textAfterStop = await resultText(page);
  result.stop.network = network.splice(0);
  return result;
}

try {
  const context = await browser.newContext();
  await context.route("**/*", (route) => {
    const url = route.request().url();
    if (isLocal(url)) return route.continue();
    out.blocked.push(url);
    return route.abort();
  });
  // A page of the app's own origin (EventSource and graphql-sse's fetches are then
  // same-origin, as for a site serving its own page), though the app serves no pages: the
  // request goes to the asset server instead, unseen by the page (a fulfilled response
  // would not come from loopback, and Chromium would not let it load loopback scripts).
  const appOrigin = new URL(appUrl).origin;
  const pageUrl = `${appOrigin}/sse-test-page`;
  await context.route(pageUrl, (route) => route.continue({ url: `${assetsUrl}/sse-test-page` }));

  const { page, network } = await newPage(context, appUrl);
  await page.goto(pageUrl, { timeout });
  out.eventSource = await eventSourceDistinct(page, network);
  out.eventSourceSingle = await eventSourceSingle(page, network);
  out.clientSingle = await graphqlSseClient(page, network, true);
  out.clientDistinct = await graphqlSseClient(page, network, false);
  await page.close();

  const giql = await newPage(context, graphiqlUrl);
  out.graphiql = await graphiql(giql.page, giql.network);
} catch (error) {
  out.crash = String(error?.stack ?? error);
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(out));
