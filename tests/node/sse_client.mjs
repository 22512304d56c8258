// Drives a server with the npm graphql-sse client (distinct connections mode and single
// connection mode) and with the npm EventSource, and prints one JSON object of observations.
// Usage: node sse_client.mjs <http-url> <prefix>
// <prefix> starts the names of the `tracked` subscriptions, whose cleanup is read back here.
import { EventSource } from "eventsource";
import { createClient } from "graphql-sse";

const [url, prefix] = process.argv.slice(2);
const out = {};

/** What a failed subscription reports: the message and the status of the server's answer. */
function describe(error) {
  return { message: String(error?.message ?? JSON.stringify(error)), status: error?.response?.status };
}

/** Subscribe and wait for the end: completed, an error, or disposed after `stopAfter` results. */
function collect(client, payload, { stopAfter } = {}) {
  return new Promise((resolve) => {
    const values = [];
    const dispose = client.subscribe(payload, {
      next: (value) => {
        values.push(value);
        if (stopAfter !== undefined && values.length === stopAfter) {
          dispose();
          resolve({ values, disposed: true });
        }
      },
      error: (error) => resolve({ values, error: describe(error) }),
      complete: () => resolve({ values, completed: true }),
    });
  });
}

/** Whether the `tracked(name:)` subscription's `finally` ran: asked a bounded number of times. */
async function cleanedUp(name) {
  for (let attempt = 0; attempt < 100; attempt++) {
    const response = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json" },
      body: JSON.stringify({ query: "query ($name: String!) { cleanedUp(name: $name) }", variables: { name } }),
    });
    const { data } = await response.json();
    if (data?.cleanedUp) return true;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return false;
}

/** A fetch that notes every request's method and status, and the body of every answer that is
 * not a stream (the client aborts a refused request before anyone could read it). */
function noting(requests, { answerDeletes = false } = {}) {
  return async (input, init = {}) => {
    const method = init.method ?? "GET";
    if (method === "DELETE" && answerDeletes) {
      requests.push({ method, answeredLocally: true });
      return new Response(null, { status: 200 });
    }
    const response = await fetch(input, init);
    const noted = { method, status: response.status };
    if (!response.headers.get("content-type")?.startsWith("text/event-stream") && method !== "PUT") {
      noted.body = await response.clone().text();
    }
    requests.push(noted);
    return response;
  };
}

/** The same scenarios over either mode. */
async function scenarios(client, mode) {
  const seen = {};
  seen.subscription = await collect(client, { query: "subscription { count(target: 5) }" });
  seen.query = await collect(client, { query: '{ hello(name: "sse") }' });
  seen.mutation = await collect(client, { query: 'mutation { send(room: "sse", text: "t") }' });
  seen.validationError = await collect(client, { query: "subscription { nope }" });
  seen.sourceError = await collect(client, { query: "subscription { boom(after: 2) }" });
  const name = `${prefix}-${mode}-disposed`;
  seen.disposed = await collect(
    client,
    { query: "subscription ($name: String!) { tracked(name: $name) }", variables: { name } },
    { stopAfter: 1 },
  );
  seen.disposed.cleanedUp = await cleanedUp(name);
  return seen;
}

try {
  const distinctRequests = [];
  const distinct = createClient({ url, retryAttempts: 0, fetchFn: noting(distinctRequests) });
  out.distinct = await scenarios(distinct, "distinct");
  out.distinct.requests = distinctRequests;
  distinct.dispose();

  // lazy: false keeps the stream open while no operation runs, so a disposed subscription is
  // stopped by the client's DELETE, not by the stream closing.
  const singleRequests = [];
  const single = createClient({
    url,
    singleConnection: true,
    lazy: false,
    retryAttempts: 0,
    fetchFn: noting(singleRequests),
    onNonLazyError: (error) => { out.singleNonLazyError = String(error?.message ?? error); },
  });
  out.single = await scenarios(single, "single");
  // 50 operations at once on the one stream; each alias names the subscriber it belongs to.
  out.concurrent = await Promise.all(
    Array.from({ length: 50 }, (_, i) =>
      collect(single, { query: `subscription { c${i}: count(target: ${1 + (i % 5)}, delayMs: 1) }` })),
  );
  out.single.requests = singleRequests;
  single.dispose();

  // A client whose DELETEs never leave it: only the stream closing can stop its operations.
  const closingRequests = [];
  const closing = createClient({
    url, singleConnection: true, retryAttempts: 0, fetchFn: noting(closingRequests, { answerDeletes: true }),
  });
  const names = [`${prefix}-closed-1`, `${prefix}-closed-2`];
  const started = names.map((name) => new Promise((resolve) => {
    closing.subscribe(
      { query: "subscription ($name: String!) { tracked(name: $name) }", variables: { name } },
      { next: resolve, error: (error) => resolve({ error: String(error?.message ?? error) }), complete: () => {} },
    );
  }));
  out.streamClosed = { firstResults: await Promise.all(started) };
  closing.dispose(); // aborts the stream
  out.streamClosed.cleanedUp = await Promise.all(names.map(cleanedUp));
  out.streamClosed.requests = closingRequests;

  out.eventSource = await eventSourceScenarios();
} catch (error) {
  out.crash = String(error?.stack ?? error);
}
process.stdout.write(JSON.stringify(out));

/** A browser-style EventSource: GET in distinct mode, and a single-connection stream by ?token=. */
async function eventSourceScenarios() {
  const seen = {};
  const query = encodeURIComponent("subscription { count(target: 3) }");
  seen.distinct = await listen(`${url}?query=${query}`, async () => {});

  const reserved = await fetch(url, { method: "PUT" });
  const token = await reserved.text();
  seen.reservation = { status: reserved.status, contentType: reserved.headers.get("content-type") };
  seen.single = await listen(`${url}?token=${encodeURIComponent(token)}`, async () => {
    const response = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", "x-graphql-event-stream-token": token },
      body: JSON.stringify({ query: "subscription { count(target: 3) }", extensions: { operationId: "op-1" } }),
    });
    seen.operationStatus = response.status;
  });
  return seen;
}

/** Open an EventSource on `target`, run `onOpen`, and gather events until the first
 * `complete` (and until `onOpen` is done). */
function listen(target, onOpen) {
  return new Promise((resolve) => {
    const events = [];
    let opened = Promise.resolve();
    const source = new EventSource(target);
    const end = (seen) => {
      source.close();
      opened.then(() => resolve({ events, ...seen }));
    };
    source.addEventListener("open", () => { opened = onOpen(); });
    source.addEventListener("next", (event) => { events.push(JSON.parse(event.data)); });
    source.addEventListener("complete", (event) => {
      end({ complete: event.data === "" ? null : JSON.parse(event.data) });
    });
    source.addEventListener("error", (event) => { end({ error: String(event?.message ?? "error") }); });
  });
}
