// Drives a test page in headless Chromium for caddy-push Go tests, through
// playwright-core and Debian's chromium.
//
// Usage: node page_check.mjs <page url>
//
// Opens the page, waits until window.ready, prints {"type":"ready"}. Then
// each line on stdin is a JavaScript expression: it waits until the
// expression is truthy in the page and prints {"type":"value","value":...}
// with its value. "quit" closes the browser and exits 0. Time limit and
// failures: see chromium.mjs (default limit 120 s).

import { emit, runPage } from './chromium.mjs';

const wait = 30000;

await runPage('page_check.mjs', 120000, async (page, lines) => {
  await page.waitForFunction(() => window.ready === true, null, { timeout: wait });
  emit({ type: 'ready' });
  for await (const line of lines) {
    if (line === 'quit') break;
    const handle = await page.waitForFunction(line, null, { timeout: wait, polling: 20 });
    emit({ type: 'value', value: await handle.jsonValue() });
  }
});
