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
// Time limit, failures and CHROMIUM: see chromium.mjs (default limit 60 s).

import { emit, runPage } from './chromium.mjs';

const wait = 20000;

await runPage('browser_check.mjs', 60000, async (page, lines) => {
  await page.waitForFunction(
    () =>
      document.getElementById('status').className === 'open' &&
      document.getElementById('wsstatus').className === 'open',
    null,
    { timeout: wait },
  );
  emit({ type: 'ready' });

  for await (const line of lines) {
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
});
