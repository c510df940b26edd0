// SSE test client for caddy-push Go tests.
//
// Usage: node sse_client.mjs <url>
//
// Opens an EventSource (from the npm package "eventsource", not a global) and
// prints one JSON object per line on stdout:
//   {"type":"open"}
//   {"type":"event","event":"<type>","id":"<lastEventId>","data":"<data>"}
//   {"type":"error","message":"..."}
// Unnamed events are reported with event "message". Named events are reported
// only for the names listed in SSE_EVENTS (comma-separated), since EventSource
// dispatches them only to listeners registered for that name.
//
// Reconnection and Last-Event-ID are left to the package. Errors do not close
// the EventSource.
//
// Exits 0 (after closing the EventSource) when stdin closes or reads a line
// "quit"; exits 2 after SSE_TIMEOUT_MS milliseconds (default 30000). The
// caller must therefore keep stdin open as a pipe for as long as it wants the
// client to run. Exits 1 on bad usage.

import { EventSource } from 'eventsource';
import { createInterface } from 'node:readline';

const url = process.argv[2];
if (!url) {
  process.stderr.write('usage: node sse_client.mjs <url>\n');
  process.exit(1);
}

let done = false;

function emit(obj) {
  if (done) return;
  // stdout is synchronous for files and pipes on Linux, so each line is
  // flushed as soon as it is written.
  process.stdout.write(JSON.stringify(obj) + '\n');
}

// If the reader goes away there is nobody left to report to.
process.stdout.on('error', () => process.exit(0));

const es = new EventSource(url);

es.onopen = () => emit({ type: 'open' });

function onEvent(ev) {
  emit({
    type: 'event',
    event: ev.type,
    id: ev.lastEventId ?? '',
    data: ev.data ?? '',
  });
}

es.onmessage = onEvent;

const names = new Set(
  (process.env.SSE_EVENTS ?? '')
    .split(',')
    .map((s) => s.trim())
    // "message" is covered by onmessage; "open"/"error" are not SSE events.
    .filter((s) => s !== '' && !['message', 'open', 'error'].includes(s)),
);
for (const name of names) es.addEventListener(name, onEvent);

// The package leaves message unset when a stream simply ends; in that case say
// whether it will reconnect (CONNECTING) or has given up (CLOSED, e.g. after a
// non-200 response or a wrong content type).
es.onerror = (err) => {
  let message = err?.message;
  if (!message) {
    message =
      es.readyState === EventSource.CLOSED
        ? 'connection closed'
        : 'connection lost, reconnecting';
    if (err?.code !== undefined) message += ` (HTTP ${err.code})`;
  }
  emit({ type: 'error', message: String(message) });
};

function shutdown(code) {
  if (done) return;
  done = true;
  clearTimeout(timer);
  es.close();
  rl.close();
  // Let any pending stdout write drain before exiting.
  process.stdout.write('', () => process.exit(code));
}

const timeoutMs = Number.parseInt(process.env.SSE_TIMEOUT_MS ?? '', 10);
const timer = setTimeout(
  () => {
    process.stderr.write('sse_client: timeout\n');
    shutdown(2);
  },
  Number.isFinite(timeoutMs) && timeoutMs > 0 ? timeoutMs : 30000,
);

const rl = createInterface({ input: process.stdin });
rl.on('line', (line) => {
  if (line.trim() === 'quit') shutdown(0);
});
rl.on('close', () => shutdown(0));
