// The Node reference server `benchmarks/fanout.py --compare node` starts: the schema of
// benchmarks/app.py served by graphql-ws 6 (`graphql-ws/use/ws`) on a ws 8 server, with
// graphql 16 executing.
//
// Owns the schema's resolvers, an in-process pubsub (topic -> Set of subscriber queues, one
// async iterator per subscription, unbounded so it never drops) and a minimal
// `POST /graphql` handler (graphql `graphql()` over the JSON body) for the publish
// mutation. `Subscription.events(topic)` yields a ready event (seq=-2) first, then every
// event published on the topic; `Mutation.publish(topic, count, size, probe)` stamps
// `sentAt` (wall-clock seconds, sub-millisecond) just before each event, hands it to every
// subscriber, and yields to the event loop between events, as anyql's publish does. It is
// unshared by nature: graphql-ws executes the selection once per subscriber and event.
// ws's default perMessageDeflate (off) is kept, as anyql's is. The npm packages come from
// tests/node/node_modules (`npm ci --prefix tests/node`), loaded with createRequire so
// graphql-ws and this file share one graphql instance.
//
// Run: node benchmarks/node_server.mjs --host 127.0.0.1 --port 8000

import { createServer } from "node:http";
import { createRequire } from "node:module";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";

const require = createRequire(new URL("../tests/node/package.json", import.meta.url));
const { buildSchema, graphql } = require("graphql");
const { useServer } = require("graphql-ws/use/ws");
const { WebSocketServer } = require("ws");

const SDL = `
type Event { seq: Int!  sentAt: Float!  data: String! }
type Query { ok: Boolean! }
type Mutation {
  publish(topic: String!, count: Int! = 1, size: Int! = 16, probe: Boolean! = false): Int!
}
type Subscription { events(topic: String!): Event! }
`;
const READY_SEQ = -2;
const PROBE_SEQ = -1;
const MAX_BODY_BYTES = 1024 * 1024;

/** Wall-clock seconds with sub-millisecond resolution (Python's time.time()). */
const now = () => (performance.timeOrigin + performance.now()) / 1000;

/** Topic -> the push functions of its subscribers. */
const topics = new Map();

/** An async iterator over one subscription's events: the ready event, then the topic's. */
function subscribe(topic) {
  const queued = [{ seq: READY_SEQ, sentAt: now(), data: "" }];
  let waiting = null;
  let done = false;
  const push = (event) => {
    if (waiting) {
      const resolve = waiting;
      waiting = null;
      resolve({ value: event, done: false });
    } else {
      queued.push(event);
    }
  };
  if (!topics.has(topic)) topics.set(topic, new Set());
  topics.get(topic).add(push);
  const stop = () => {
    done = true;
    const pushes = topics.get(topic);
    if (pushes) {
      pushes.delete(push);
      if (pushes.size === 0) topics.delete(topic);
    }
    if (waiting) {
      waiting({ value: undefined, done: true });
      waiting = null;
    }
    return Promise.resolve({ value: undefined, done: true });
  };
  return {
    next() {
      if (queued.length) return Promise.resolve({ value: queued.shift(), done: false });
      if (done) return Promise.resolve({ value: undefined, done: true });
      return new Promise((resolve) => {
        waiting = resolve;
      });
    },
    return: stop,
    throw(error) {
      stop();
      return Promise.reject(error);
    },
    [Symbol.asyncIterator]() {
      return this;
    },
  };
}

async function publish(_root, { topic, count, size, probe }) {
  const data = "x".repeat(size);
  for (let seq = 0; seq < count; seq++) {
    const event = { seq: probe ? PROBE_SEQ : seq, sentAt: now(), data };
    for (const push of topics.get(topic) ?? []) push(event);
    await new Promise((resolve) => setImmediate(resolve));
  }
  return count;
}

function makeSchema() {
  const schema = buildSchema(SDL);
  schema.getQueryType().getFields().ok.resolve = () => true;
  schema.getMutationType().getFields().publish.resolve = publish;
  const events = schema.getSubscriptionType().getFields().events;
  events.subscribe = (_root, { topic }) => subscribe(topic);
  events.resolve = (event) => event;
  return schema;
}

function answer(response, status, body) {
  const bytes = Buffer.from(JSON.stringify(body));
  response.writeHead(status, {
    "content-type": "application/json",
    "content-length": bytes.length,
  });
  response.end(bytes);
}

/** POST /graphql with a JSON body: one operation, executed with graphql(). */
function handleHttp(schema) {
  return (request, response) => {
    if (request.method !== "POST" || request.url.split("?")[0] !== "/graphql") {
      answer(response, 404, { errors: [{ message: "POST /graphql only" }] });
      return;
    }
    const chunks = [];
    let size = 0;
    request.on("data", (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) request.destroy();
      else chunks.push(chunk);
    });
    request.on("end", async () => {
      let body;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      } catch {
        answer(response, 400, { errors: [{ message: "the body is not JSON" }] });
        return;
      }
      const result = await graphql({
        schema,
        source: body.query,
        variableValues: body.variables,
        operationName: body.operationName,
      });
      answer(response, 200, result);
    });
  };
}

function main() {
  const { values } = parseArgs({
    options: {
      host: { type: "string", default: "127.0.0.1" },
      port: { type: "string", default: "8000" },
    },
  });
  const schema = makeSchema();
  const server = createServer(handleHttp(schema));
  server.requestTimeout = 0; // a saturating burst keeps the publish request open for long
  const wss = new WebSocketServer({ server, path: "/graphql" });
  useServer({ schema }, wss);
  for (const signal of ["SIGINT", "SIGTERM"]) {
    process.on(signal, () => {
      for (const client of wss.clients) client.terminate();
      server.close(() => process.exit(0));
      setTimeout(() => process.exit(0), 2000).unref();
    });
  }
  server.listen({ host: values.host, port: Number(values.port), backlog: 4096 });
}

main();
