// The npm graphql-ws client with clients/js/resumable.mjs against tests/e2e/app_resume.py:
// the server cuts the connection after event 4; the client reconnects and resumes.
// Prints one JSON object of observations. Usage: node resume_ws_client.mjs <ws-url>
import { createClient } from "graphql-ws";
import WebSocket from "ws";
import { subscribeResumable } from "../../clients/js/resumable.mjs";

const url = process.argv[2];
const query = "subscription { numbers(to: 10, cutAfter: 4) }";
const out = {};

/** Run the subscription through `subscribe` on a fresh client; gather what it delivers. */
async function scenario(subscribe, { stopAfter } = {}) {
  let connections = 0;
  const closes = [];
  const client = createClient({
    url,
    webSocketImpl: WebSocket,
    retryAttempts: 5,
    retryWait: async () => {},
    on: {
      connected: () => { connections += 1; },
      closed: (event) => { closes.push([event?.code, event?.reason]); },
    },
  });
  const seen = { values: [], ids: [] };
  await new Promise((resolve) => {
    const dispose = subscribe(client, { query }, {
      next: (result) => {
        if (seen.values.length === stopAfter) return; // in flight when it was disposed
        seen.values.push(result?.data?.numbers);
        seen.ids.push(result?.extensions?.eventId);
        if (seen.values.length === stopAfter) {
          dispose();
          resolve();
        }
      },
      error: (error) => {
        seen.error = String(error?.reason ?? error?.message ?? JSON.stringify(error));
        resolve();
      },
      complete: () => { seen.completed = true; resolve(); },
    });
  });
  seen.connections = connections;
  seen.closes = closes;
  await client.dispose();
  return seen;
}

try {
  let disposer = null;
  out.resumed = await scenario((client, payload, sink) => {
    disposer = subscribeResumable(client, payload, sink);
    return disposer;
  });
  out.resumed.lastEventId = disposer.lastEventId();
  // The same without the helper: each reconnect starts again from the beginning (and is cut
  // again), so it is stopped after 12 results.
  out.plain = await scenario(
    (client, payload, sink) => client.subscribe(payload, sink), { stopAfter: 12 });
} catch (error) {
  out.crash = String(error?.stack ?? error);
}
process.stdout.write(JSON.stringify(out));
