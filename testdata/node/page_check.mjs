// Drives a test page in headless Chromium for caddy-push Go tests, through
// playwright-core and Debian's chromium.
//
// Usage: node page_check.mjs <page url>
//
// Opens the page, waits until window.ready, prints {"type":"ready"}. Then
// each line on stdin is a JavaScript expression: it waits until the
// expression is truthy in the page and prints {"type":"value","value":...}
// with its value. "quit" closes the browser and exits 0. Failures print
// {"type":"error","message":"..."} and exit 1; the run exits 2 after
// BROWSER_TIMEOUT_MS (default 120000).

import { chromium } from 'playwright-core';
import { createInterface } from 'node:readline';

const url = process.argv[2];
if (!url) {
  process.stderr.write('usage: node page_check.mjs <url>\n');
  process.exit(1);
}

const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const wait = 30000;
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
  Number.isFinite(timeoutMs) && timeoutMs > 0 ? timeoutMs : 120000,
);

try {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = await browser.newPage();
  page.on('pageerror', (err) => emit({ type: 'error', message: 'page: ' + err.message }));
  await page.goto(url);
  await page.waitForFunction(() => window.ready === true, null, { timeout: wait });
  emit({ type: 'ready' });
  const rl = createInterface({ input: process.stdin });
  for await (const line of rl) {
    if (line === 'quit') break;
    const handle = await page.waitForFunction(line, null, { timeout: wait, polling: 20 });
    emit({ type: 'value', value: await handle.jsonValue() });
  }
  await finish(0);
} catch (err) {
  emit({ type: 'error', message: String(err?.message ?? err) });
  await finish(1);
}
