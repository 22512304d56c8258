// Opens anyql's GraphiQL page in headless Debian Chromium (playwright-core, no browser
// download), types a subscription into the query editor, runs it and watches the result pane.
// Prints one JSON object of observations; exits 0 unless the browser could not be driven.
// Usage: node browser_graphiql.mjs <page-url> <query> [timeout-ms]
// CHROMIUM overrides the browser binary (default /usr/bin/chromium); SCREENSHOT=<file.png>
// saves what the page shows at the end.
import { chromium } from "playwright-core";

const [pageUrl, query, timeoutArg] = process.argv.slice(2);
const timeout = Number(timeoutArg ?? 20000);
const out = {
  typed: null,
  seen: [],
  finalText: null,
  stopShown: false,
  completed: false,
  blocked: [],
  assetRequests: [],
  websockets: [],
  pageErrors: [],
  consoleErrors: [],
};

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

// Only loopback may be reached: the page must load every asset from the local server.
function isLocal(url) {
  const { protocol, hostname } = new URL(url);
  return protocol === "data:" || hostname === "127.0.0.1" || hostname === "localhost";
}

async function resultText(page) {
  return page.evaluate(() => {
    const pane = document.querySelector(".graphiql-response");
    return pane === null ? "" : pane.innerText;
  });
}

// Records each distinct value of `count` the result pane shows, until `done` or timeout.
async function watchResults(page, deadline, done) {
  let last = null;
  while (Date.now() < deadline) {
    const text = await resultText(page);
    const label = await page.locator(".graphiql-execute-button").getAttribute("aria-label");
    if (label?.startsWith("Stop")) out.stopShown = true;
    const match = /"count"\s*:\s*(\d+)/.exec(text);
    if (match !== null && match[1] !== last) {
      last = match[1];
      out.seen.push(Number(last));
    }
    if (done(text)) return text;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return resultText(page);
}

try {
  const context = await browser.newContext();
  await context.route("**/*", (route) => {
    const url = route.request().url();
    if (isLocal(url)) return route.continue();
    out.blocked.push(url);
    return route.abort();
  });
  const page = await context.newPage();
  page.on("pageerror", (error) => out.pageErrors.push(String(error)));
  page.on("console", (message) => {
    if (message.type() === "error") out.consoleErrors.push(message.text());
  });
  page.on("request", (request) => {
    if (["script", "stylesheet"].includes(request.resourceType())) {
      out.assetRequests.push(request.url());
    }
  });
  page.on("websocket", (socket) => out.websockets.push(socket.url()));

  const deadline = Date.now() + timeout;
  await page.goto(pageUrl, { timeout });
  const editor = page.locator(".graphiql-query-editor .CodeMirror").first();
  await editor.waitFor({ timeout });
  await editor.click();
  await page.keyboard.press("Control+A");
  await page.keyboard.press("Delete");
  // Typed key by key, as a person would; the editor auto-closes brackets and overtypes them.
  await page.keyboard.type(query, { delay: 5 });
  await page.keyboard.press("Escape"); // dismiss an autocomplete hint, if one is open
  out.typed = await page.evaluate(
    () => document.querySelector(".graphiql-query-editor .CodeMirror").CodeMirror.getValue(),
  );
  // GraphiQL re-parses the editor 100 ms after the last keystroke and picks WebSocket or HTTP
  // from that parse; a person pauses that long anyway, so wait until the parse is current.
  await page.waitForFunction(
    () => {
      const cm = document.querySelector(".graphiql-query-editor .CodeMirror").CodeMirror;
      return cm.documentAST?.loc?.source?.body === cm.getValue();
    },
    null,
    { timeout },
  );
  await page.locator(".graphiql-execute-button").click();
  const target = Number(/target:\s*(\d+)/.exec(query)?.[1] ?? 1);
  out.finalText = await watchResults(
    page,
    deadline,
    (text) => new RegExp(`"count"\\s*:\\s*${target - 1}\\b`).test(text),
  );
  // The button turns back from "Stop" to "Execute" when the server completes the operation.
  await page
    .locator('.graphiql-execute-button[aria-label^="Execute"]')
    .waitFor({ timeout: Math.max(deadline - Date.now(), 1) });
  out.completed = true;
  if (process.env.SCREENSHOT) await page.screenshot({ path: process.env.SCREENSHOT });
} catch (error) {
  out.crash = String(error?.stack ?? error);
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(out));
