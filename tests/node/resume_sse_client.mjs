// The npm EventSource against tests/e2e/app_resume.py in distinct connections mode: after
// event 4 it prints "held" and the test restarts the server; the stream ends with a
// `retry:` (the drain), EventSource reconnects with Last-Event-ID and the subscription
// resumes. Prints "held", then one JSON object of observations.
// Usage: node resume_sse_client.mjs <http-url>
import { EventSource } from "eventsource";

const url = process.argv[2];
const query = encodeURIComponent("subscription { numbers(to: 10, cutAfter: 4) }");
const out = { values: [], lastEventIds: [], errors: 0 };

// The package unrefs its reconnect timer: without a timer of ours, node would exit while
// the server restarts (nothing else keeps the event loop alive then).
const alive = setInterval(() => {}, 60_000);
await new Promise((resolve) => {
  const source = new EventSource(`${url}?query=${query}`);
  source.addEventListener("next", (event) => {
    const result = JSON.parse(event.data);
    out.values.push(result.data.numbers);
    out.lastEventIds.push(event.lastEventId);
    if (result.data.numbers === 4 && out.values.length === 5) process.stdout.write("held\n");
  });
  source.addEventListener("complete", () => {
    out.completed = true;
    source.close();
    resolve();
  });
  source.addEventListener("error", () => {
    // a reconnect is scheduled (readyState CONNECTING), or the source gave up (CLOSED)
    out.errors += 1;
    if (source.readyState === EventSource.CLOSED) {
      out.closed = true;
      resolve();
    }
  });
});
clearInterval(alive);
process.stdout.write(JSON.stringify(out));
