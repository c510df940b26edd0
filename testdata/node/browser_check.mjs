// Drives the example page (examples/www/index.html) in headless Chromium for
// caddy-push Go tests, through playwright-core and Debian's chromium.
//
// Usage: node browser_check.mjs <page url>
//
// Opens the page and waits until both its EventSource and its WebSocket are
// live, then prints {"type":"ready"}. Then it takes commands on stdin, one
// per line, and answers each with one JSON line on stdout:
//   expect <id>   waits until the page received message <id> over both
//                 transports: {"type":"received","sse":{...},"ws":{...}}
//   chat <text>   types <text> into the chat box and sends it (a publish
//                 frame over the WebSocket), waits until the page receives
//                 it back: {"type":"chat","id":"<id>","data":"<text>"}
//   quit          closes the browser and exits 0.
// Failures print {"type":"error","message":"..."} and exit 1; the whole run
// exits 2 after BROWSER_TIMEOUT_MS (default 60000).
// CHROMIUM (default /usr/bin/chromium) names the browser binary; Playwright
// gives it a new, empty profile of its own.

import { chromium } from 'playwright-core';
import { createInterface } from 'node:readline';

const url = process.argv[2];
if (!url) {
  process.stderr.write('usage: node browser_check.mjs <url>\n');
  process.exit(1);
}

const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const wait = 20000;
let browser;

async function finish(code) {
  clearTimeout(timer);
  try {
    if (browser) await browser.close();
  } catch (_) {
    // already gone
  }
  process.stdout.write('', () => process.exit(code));
}

const timeoutMs = Number.parseInt(process.env.BROWSER_TIMEOUT_MS ?? '', 10);
const timer = setTimeout(
  () => {
    emit({ type: 'error', message: 'timeout' });
    finish(2);
  },
  Number.isFinite(timeoutMs) && timeoutMs > 0 ? timeoutMs : 60000,
);

async function fail(err) {
  emit({ type: 'error', message: String(err?.message ?? err) });
  await finish(1);
}

try {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  const page = await browser.newPage();
  page.on('pageerror', (err) => emit({ type: 'error', message: 'page: ' + err.message }));
  await page.goto(url);
  await page.waitForFunction(
    () =>
      document.getElementById('status').className === 'open' &&
      document.getElementById('wsstatus').className === 'open',
    null,
    { timeout: wait },
  );
  emit({ type: 'ready' });

  const rl = createInterface({ input: process.stdin });
  for await (const line of rl) {
    const [cmd, ...rest] = line.split(' ');
    const arg = rest.join(' ');
    if (cmd === 'quit') break;
    if (cmd === 'expect') {
      await page.waitForFunction(
        (id) => window.received.sse.some((m) => m.id === id) && window.received.ws.some((m) => m.id === id),
        arg,
        { timeout: wait },
      );
      const got = await page.evaluate((id) => ({
        sse: window.received.sse.find((m) => m.id === id),
        ws: window.received.ws.find((m) => m.id === id),
      }), arg);
      emit({ type: 'received', ...got });
    } else if (cmd === 'chat') {
      await page.fill('#say', arg);
      await page.click('#chatform button');
      const handle = await page.waitForFunction(
        (text) => window.received.ws.find((m) => m.topic === 'chat/lobby' && m.data === text),
        arg,
        { timeout: wait },
      );
      emit({ type: 'chat', ...(await handle.jsonValue()) });
    } else {
      throw new Error(`unknown command ${cmd}`);
    }
  }
  await finish(0);
} catch (err) {
  await fail(err);
}
