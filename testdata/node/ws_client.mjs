// WebSocket test client for caddy-push Go tests, on the npm package "ws".
//
// Usage: node ws_client.mjs <url>
//
// Connects and behaves as a resuming client would: it remembers the ID of
// the last message frame it received and, when the server closes with 1001
// (shutdown or reload) or the connection drops, reconnects after
// WS_RECONNECT_MS (default 100) with ?last_event_id=<that ID>; with
// WS_RECONNECT=manual it waits for the stdin line "reconnect" instead.
//
// Every line read on stdin is sent as one text frame; "quit" (or stdin
// closing) ends the client with exit code 0. It exits 2 after
// WS_TIMEOUT_MS (default 30000) and 1 on bad usage.
//
// It prints one JSON object per line on stdout:
//   {"type":"open","url":"<url connected to>"}
//   {"type":"frame","binary":false,"data":"<text>"}       (binary: base64)
//   {"type":"close","code":<code>,"reason":"<reason>"}
//   {"type":"error","message":"..."}

import WebSocket from 'ws';
import { createInterface } from 'node:readline';

const base = process.argv[2];
if (!base) {
  process.stderr.write('usage: node ws_client.mjs <url>\n');
  process.exit(1);
}

let done = false;
let ws = null;
let last = '';

function emit(obj) {
  if (done) return;
  process.stdout.write(JSON.stringify(obj) + '\n');
}
process.stdout.on('error', () => process.exit(0));

function connect() {
  const url = new URL(base);
  if (last) url.searchParams.set('last_event_id', last);
  ws = new WebSocket(url);
  ws.on('open', () => emit({ type: 'open', url: url.toString() }));
  ws.on('message', (data, isBinary) => {
    if (isBinary) {
      emit({ type: 'frame', binary: true, data: Buffer.from(data).toString('base64') });
      return;
    }
    const text = data.toString('utf8');
    try {
      const f = JSON.parse(text);
      if (f.type === 'message' && f.id) last = f.id;
    } catch (_) {
      // format raw: no IDs to remember
    }
    emit({ type: 'frame', binary: false, data: text });
  });
  ws.on('error', (err) => emit({ type: 'error', message: String(err.message ?? err) }));
  ws.on('close', (code, reason) => {
    emit({ type: 'close', code, reason: reason.toString() });
    if (done) return;
    if ((code === 1001 || code === 1006) && process.env.WS_RECONNECT !== 'manual') {
      const delay = Number.parseInt(process.env.WS_RECONNECT_MS ?? '', 10);
      setTimeout(connect, Number.isFinite(delay) && delay >= 0 ? delay : 100);
    }
  });
}

function shutdown(code) {
  if (done) return;
  done = true;
  clearTimeout(timer);
  rl.close();
  if (ws) ws.close(1000);
  process.stdout.write('', () => process.exit(code));
}

const timeoutMs = Number.parseInt(process.env.WS_TIMEOUT_MS ?? '', 10);
const timer = setTimeout(
  () => {
    process.stderr.write('ws_client: timeout\n');
    shutdown(2);
  },
  Number.isFinite(timeoutMs) && timeoutMs > 0 ? timeoutMs : 30000,
);

const rl = createInterface({ input: process.stdin });
rl.on('line', (line) => {
  if (line.trim() === 'quit') {
    shutdown(0);
    return;
  }
  if (line.trim() === 'reconnect') {
    connect();
    return;
  }
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(line);
  else emit({ type: 'error', message: 'not connected: frame dropped' });
});
rl.on('close', () => shutdown(0));

connect();
