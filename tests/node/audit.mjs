// Runs every GraphQL-over-HTTP server audit of the npm graphql-http package against a URL.
//
//   node tests/node/audit.mjs http://127.0.0.1:8000/graphql
//
// Prints one JSON object on stdout:
//   {"passed": n, "failed": [{"id": ..., "name": ..., "reason": ...}], "total": n}
// MUST, SHOULD and MAY audits all count: any audit that did not pass is in "failed".
// An audit whose request failed outright (connection refused, timeout) is reported as
// failed with that reason rather than ending the script. Exit code 0 unless the script
// itself breaks (or is called without a URL: 2).
//
// The audits assume a schema with introspection on (`__typename`, `__type(name:)`) and
// nothing more; `mutation { __typename }` over GET must be refused with a 4xx.

import { serverAudits } from 'graphql-http';

const REQUEST_TIMEOUT_MS = 10_000;
const BODY_EXCERPT_CHARS = 300;

const url = process.argv[2];
if (!url) {
  console.error('usage: node tests/node/audit.mjs <url>');
  process.exit(2);
}

// Every request gets a deadline, so a hung server fails audits instead of hanging us.
const fetchFn = (input, init = {}) =>
  fetch(input, { ...init, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });

async function describeResponse(response) {
  if (!response) return '';
  let body = '';
  try {
    body = (await response.text()).slice(0, BODY_EXCERPT_CHARS);
  } catch {
    body = '<body already read>';
  }
  const type = response.headers.get('content-type');
  return ` (got ${response.status}, content-type ${type}: ${body})`;
}

async function runOne(audit) {
  try {
    const result = await audit.fn();
    if (result.status === 'ok') return null;
    return {
      id: audit.id,
      name: audit.name,
      reason: `${result.reason}${await describeResponse(result.response)}`,
    };
  } catch (error) {
    const cause = error && error.cause ? ` (${error.cause})` : '';
    return { id: audit.id, name: audit.name, reason: `request failed: ${error}${cause}` };
  }
}

const audits = serverAudits({ url, fetchFn });
const failed = [];
// One at a time: the servers under test see an ordinary client, not a burst of 61.
for (const audit of audits) {
  const failure = await runOne(audit);
  if (failure) failed.push(failure);
}
process.stdout.write(
  JSON.stringify({ passed: audits.length - failed.length, failed, total: audits.length }) + '\n',
);
