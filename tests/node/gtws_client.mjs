// Drives a server with the npm graphql-ws client (graphql-transport-ws) and prints one JSON
// object of observations. Usage: node gtws_client.mjs <ws-url>
import { createClient } from "graphql-ws";
import WebSocket from "ws";

const url = process.argv[2];
const out = {};

function collect(client, payload, { stopAfter } = {}) {
  return new Promise((resolve) => {
    const values = [];
    let dispose = () => {};
    dispose = client.subscribe(payload, {
      next: (value) => {
        values.push(value);
        if (stopAfter !== undefined && values.length >= stopAfter) {
          dispose();
          resolve({ values, disposed: true });
        }
      },
      error: (error) => resolve({ values, error: String(error?.message ?? JSON.stringify(error)) }),
      complete: () => resolve({ values, completed: true }),
    });
  });
}

const client = createClient({
  url,
  webSocketImpl: WebSocket,
  connectionParams: { token: "secret-token" },
  lazy: false,
  retryAttempts: 0,
  on: { connected: (socket) => { out.extensions = socket.extensions; } },
});
try {
  out.subscription = await collect(client, { query: "subscription { count(target: 5) }" });
  out.query = await collect(client, { query: '{ hello(name: "ws") }' });
  out.mutation = await collect(client, { query: 'mutation { send(room: "x", text: "t") }' });
  out.connectionParams = await collect(client, { query: "{ whoami }" });
  out.disposed = await collect(
    client, { query: "subscription { count(target: 1000, delayMs: 5) }" }, { stopAfter: 3 });
  out.afterDispose = await collect(client, { query: '{ hello(name: "again") }' });
  out.validationError = await collect(client, { query: "{ nope }" });
  out.sourceError = await collect(client, { query: "subscription { boom(after: 2) }" });
} catch (error) {
  out.crash = String(error?.stack ?? error);
} finally {
  await client.dispose();
}
// A connection that on_connect refuses: the close code and the reason the client sees.
const refused = createClient({
  url,
  webSocketImpl: WebSocket,
  connectionParams: { reject: true },
  retryAttempts: 0,
});
out.rejected = await new Promise((resolve) => {
  refused.subscribe({ query: "{ hello }" }, {
    next: () => resolve({ unexpected: "a result" }),
    error: (event) => resolve({ code: event?.code, reason: event?.reason }),
    complete: () => resolve({ unexpected: "complete" }),
  });
});
await refused.dispose();
process.stdout.write(JSON.stringify(out));
