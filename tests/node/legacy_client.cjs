// Drives a server with the npm subscriptions-transport-ws client (legacy graphql-ws) and prints
// one JSON object of observations. Usage: node legacy_client.cjs <ws-url>
const { SubscriptionClient } = require("subscriptions-transport-ws");
const WebSocket = require("ws");

const url = process.argv[2];
const out = {};

function collect(client, request, stopAfter) {
  return new Promise((resolve) => {
    const values = [];
    const subscription = client.request(request).subscribe({
      next: (value) => {
        values.push(value);
        if (stopAfter !== undefined && values.length >= stopAfter) {
          subscription.unsubscribe();
          resolve({ values, unsubscribed: true });
        }
      },
      error: (error) => resolve({ values, error: String(error?.message ?? JSON.stringify(error)) }),
      complete: () => resolve({ values, completed: true }),
    });
  });
}

(async () => {
  const client = new SubscriptionClient(
    url, { reconnect: false, connectionParams: { token: "legacy-token" } }, WebSocket);
  try {
    out.subscription = await collect(client, { query: "subscription { count(target: 4) }" });
    out.unsubscribed = await collect(
      client, { query: "subscription { count(target: 1000, delayMs: 5) }" }, 2);
    out.query = await collect(client, { query: '{ hello(name: "legacy") }' });
    out.connectionParams = await collect(client, { query: "{ whoami }" });
  } catch (error) {
    out.crash = String(error?.stack ?? error);
  } finally {
    client.close();
  }
  process.stdout.write(JSON.stringify(out));
})();
