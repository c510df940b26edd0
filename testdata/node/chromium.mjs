// Shared by the browser checks: headless Chromium (Debian's, through
// playwright-core) on one page, answering on stdout one JSON line at a
// time, with an overall time limit.
//
// CHROMIUM (default /usr/bin/chromium) names the browser binary; Playwright
// gives it a new, empty profile of its own. A run that takes longer than
// BROWSER_TIMEOUT_MS (default: the script's) prints
// {"type":"error","message":"timeout"} and exits 2; a failure prints
// {"type":"error","message":"..."} and exits 1.

import { chromium } from 'playwright-core';
import { createInterface } from 'node:readline';

export const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

// runPage opens the URL given as the script's argument and calls
// body(page, lines), lines being stdin's lines; it exits 0 when body
// returns.
export async function runPage(script, defaultTimeoutMs, body) {
  const url = process.argv[2];
  if (!url) {
    process.stderr.write(`usage: node ${script} <url>\n`);
    process.exit(1);
  }
  let browser;
  let timer;
  const finish = async (code) => {
    clearTimeout(timer);
    try {
      if (browser) await browser.close();
    } catch (_) {
      // already gone
    }
    process.stdout.write('', () => process.exit(code));
  };
  const timeoutMs = Number.parseInt(process.env.BROWSER_TIMEOUT_MS ?? '', 10);
  timer = setTimeout(
    () => {
      emit({ type: 'error', message: 'timeout' });
      finish(2);
    },
    Number.isFinite(timeoutMs) && timeoutMs > 0 ? timeoutMs : defaultTimeoutMs,
  );
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
    await body(page, createInterface({ input: process.stdin }));
    await finish(0);
  } catch (err) {
    emit({ type: 'error', message: String(err?.message ?? err) });
    await finish(1);
  }
}
