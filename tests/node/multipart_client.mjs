// Drives a server's multipart subscriptions with Apollo Client (its HttpLink over node's fetch)
// and with meros reading fetch's response, and prints one JSON object of observations.
// Usage: node multipart_client.mjs <http-url> <prefix>
// <prefix> starts the names of the `tracked` subscriptions, whose cleanup is read back here.
import { ApolloClient, HttpLink, InMemoryCache, gql } from "@apollo/client";
import { meros } from "meros/browser"; // the browser build reads a fetch Response
import { setTimeout as sleep } from "node:timers/promises";

const [url, prefix] = process.argv.slice(2);
const MULTIPART = 'multipart/mixed;boundary="graphql";subscriptionSpec=1.0';
const TRACKED = "subscription ($name: String!, $everyMs: Int) { tracked(name: $name, everyMs: $everyMs) }";
const DEADLINE_MS = 1000;
const out = {};

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
    await sleep(20);
  }
  return false;
}

/** Apollo Client: subscribe and wait for the end, or unsubscribe after `stopAfter` results or
 * once `deadlineMs` passed. Apollo 4 reports a result's errors (GraphQL or transport) as
 * `error` on the result itself. */
function apollo(client, query, { variables, stopAfter, deadlineMs } = {}) {
  return new Promise((resolve) => {
    const values = [];
    let timer;
    const stop = (how) => {
      clearTimeout(timer);
      subscription.unsubscribe();
      resolve({ values, [how]: true });
    };
    const subscription = client.subscribe({ query: gql(query), variables }).subscribe({
      next: ({ data, error }) => {
        values.push(error ? { data: data ?? null, error: error.message } : { data });
        if (values.length === stopAfter) stop("unsubscribed");
      },
      error: (error) => resolve({ values, error: String(error?.message ?? error) }),
      complete: () => resolve({ values, completed: true }),
    });
    if (deadlineMs !== undefined) timer = setTimeout(() => stop("timedOut"), deadlineMs);
  });
}

/** fetch + meros: every part's JSON body, the response's status and type; abort the request
 * once `stopAfter` parts arrived, or once `deadlineMs` passed. */
async function multipart(body, { accept = MULTIPART, stopAfter, deadlineMs } = {}) {
  const controller = new AbortController();
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", accept },
    body: JSON.stringify(body),
    signal: controller.signal,
  });
  const seen = { status: response.status, contentType: response.headers.get("content-type"), parts: [] };
  const parts = await meros(response);
  if (parts === response) { // not multipart: meros hands the response back
    seen.json = await response.json();
    return seen;
  }
  const timer = deadlineMs === undefined ? undefined : setTimeout(() => {
    seen.timedOut = true;
    controller.abort();
  }, deadlineMs);
  try {
    for await (const part of parts) {
      seen.parts.push(part.json ? part.body : { notJson: part.body });
      if (seen.parts.length === stopAfter) controller.abort();
    }
    seen.ended = true;
  } catch (error) {
    seen.aborted = error?.name === "AbortError";
    if (!seen.aborted) seen.error = String(error?.message ?? error);
  } finally {
    clearTimeout(timer);
  }
  return seen;
}

try {
  const client = new ApolloClient({ link: new HttpLink({ uri: url }), cache: new InMemoryCache() });
  out.apollo = {
    subscription: await apollo(client, "subscription { count(target: 5) }"),
    validationError: await apollo(client, "subscription { nope }"),
    sourceError: await apollo(client, "subscription { boom(after: 2) }"),
  };
  // everyMs: a part is read once the next boundary arrives (see `prompt` below)
  const name = `${prefix}-apollo-unsubscribed`;
  out.apollo.unsubscribed = await apollo(client, TRACKED, { variables: { name, everyMs: 5 }, stopAfter: 1 });
  out.apollo.unsubscribed.cleanedUp = await cleanedUp(name);

  out.meros = {
    subscription: await multipart({ query: "subscription { count(target: 5) }" }),
    // Apollo's Accept on a query: the answer is plain JSON.
    query: await multipart({ query: '{ hello(name: "multipart") }' }, { accept: `${MULTIPART},application/json` }),
    validationError: await multipart({ query: "subscription { nope }" }),
    sourceError: await multipart({ query: "subscription { boom(after: 2) }" }),
  };
  const aborted = `${prefix}-meros-aborted`;
  out.meros.aborted = await multipart(
    { query: TRACKED, variables: { name: aborted, everyMs: 5 } }, { stopAfter: 1 });
  out.meros.aborted.cleanedUp = await cleanedUp(aborted);

  // A result with nothing after it (a subscription that then idles): does the client get it
  // before the next heartbeat? Both give up after DEADLINE_MS and disconnect.
  const idle = [`${prefix}-apollo-idle`, `${prefix}-meros-idle`];
  const [apolloIdle, merosIdle] = await Promise.all([
    apollo(client, TRACKED, { variables: { name: idle[0] }, stopAfter: 1, deadlineMs: DEADLINE_MS }),
    multipart({ query: TRACKED, variables: { name: idle[1] } }, { stopAfter: 1, deadlineMs: DEADLINE_MS }),
  ]);
  out.prompt = { apollo: apolloIdle, meros: merosIdle, cleanedUp: await Promise.all(idle.map(cleanedUp)) };
  client.stop();
} catch (error) {
  out.crash = String(error?.stack ?? error);
}
process.stdout.write(JSON.stringify(out));
