// Subscribers of the zero-loss deploy test (tests/e2e/test_zero_loss_deploy.py): WebSocket
// ones (npm graphql-ws with clients/js/resumable.mjs) and SSE ones (npm eventsource, which
// sends Last-Event-ID when it reconnects), all through one address that the test switches
// from the first server to the second. Prints "ready" once every client has its first
// event, then one JSON object when every client has received `last` (or at `deadline`):
// per client the numbers received, in order, its reconnects and its longest wait between
// two events (ms).
// Usage: node deploy_clients.mjs <http-url> <ws-url> <ws-clients> <sse-clients> <last> <deadline-s>
import { createClient } from "graphql-ws";
import WebSocket from "ws";
import { EventSource } from "eventsource";
import { subscribeResumable } from "../../clients/js/resumable.mjs";

const [httpUrl, wsUrl, wsCount, sseCount, lastText, deadlineText] = process.argv.slice(2);
const last = Number(lastText);
const clients = [];
let announced = false;

function record(client, n) {
  const now = performance.now();
  if (client.at !== null) client.worstGapMs = Math.max(client.worstGapMs, now - client.at);
  client.at = now;
  client.numbers.push(n);
  if (!announced && clients.every((c) => c.numbers.length > 0)) {
    announced = true;
    process.stdout.write("ready\n");
  }
  if (clients.every((c) => c.numbers.includes(last))) finish();
}

function finish() {
  const report = clients.map(({ kind, numbers, reconnects, worstGapMs, errors }) =>
    ({ kind, numbers, reconnects, worstGapMs, errors }));
  // Exit once written: a pipe takes a large report in several writes.
  process.stdout.write(JSON.stringify(report) + "\n", () => process.exit(0));
}

for (let i = 0; i < Number(wsCount); i++) {
  const client = { kind: "ws", numbers: [], reconnects: -1, worstGapMs: 0, at: null, errors: [] };
  clients.push(client);
  const ws = createClient({
    url: wsUrl,
    webSocketImpl: WebSocket,
    retryAttempts: 1000,
    retryWait: () => new Promise((resolve) => setTimeout(resolve, 50 + Math.random() * 200)),
    shouldRetry: () => true,
    on: { connected: () => { client.reconnects += 1; } },
  });
  subscribeResumable(ws, { query: "subscription { ticks }" }, {
    next: (result) => record(client, result?.data?.ticks),
    error: (error) => client.errors.push(String(error?.reason ?? error?.message ?? error)),
    complete: () => {},
  });
}

for (let i = 0; i < Number(sseCount); i++) {
  const client = { kind: "sse", numbers: [], reconnects: -1, worstGapMs: 0, at: null, errors: [] };
  clients.push(client);
  const source = new EventSource(`${httpUrl}?query=${encodeURIComponent("subscription { ticks }")}`);
  source.addEventListener("open", () => { client.reconnects += 1; });
  source.addEventListener("next", (event) => {
    const result = JSON.parse(event.data);
    if (result.errors) client.errors.push(JSON.stringify(result.errors));
    else record(client, result.data.ticks);
  });
  source.addEventListener("complete", () => client.errors.push("completed"));
}

setTimeout(finish, Number(deadlineText) * 1000);
