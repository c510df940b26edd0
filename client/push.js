// push.js: the browser client of caddy-push. No dependencies; an ES module.
//
//   import { PushClient } from "/push.js";
//   const push = new PushClient({ ws: "/ws/", sse: "/events/", topics: ["news"] });
//   push.on("message", (m) => console.log(m.id, m.event, m.data));
//   push.on("reset", (r) => reload());  // messages were missed for good
//
// It opens a WebSocket first and falls back to Server-Sent Events when the
// WebSocket cannot connect (refused, or blocked by a proxy). It keeps one
// cursor, the ID of the last message received, across reconnects and
// across the switch, so that nothing is lost or repeated while the server
// still retains it; it reconnects with exponential backoff and jitter.
// Served by Caddy's `push_client` directive, or copied from the
// repository's client/ folder.

const WS_OPEN_FAILURES_BEFORE_SSE = 3;

/** Builds an absolute URL for path with the given query parameters. */
function buildURL(path, params, ws) {
  const url = new URL(path, globalThis.location ? globalThis.location.href : undefined);
  if (ws) url.protocol = url.protocol === "https:" ? "wss:" : url.protocol === "http:" ? "ws:" : url.protocol;
  for (const [k, v] of params) url.searchParams.append(k, v);
  return url;
}

export class PushClient {
  /**
   * @param {import("./push").PushOptions} options
   */
  constructor(options) {
    if (!options || (!options.ws && !options.sse)) {
      throw new TypeError("PushClient: give a ws or an sse path (or both)");
    }
    this.options = {
      ...options,
      topics: options.topics || [],
      minDelay: options.minDelay > 0 ? options.minDelay : 500,
      maxDelay: options.maxDelay > 0 ? options.maxDelay : 30000,
    };
    /** The ID of the last message received: where a reconnect resumes. */
    this.lastEventId = options.lastEventId || "";
    /** "ws", "sse", or null while not connected. */
    this.transport = null;
    /** "connecting", "open" or "closed". */
    this.state = "connecting";
    this._listeners = new Map();
    this._attempt = 0;
    this._useSSE = !options.ws || typeof WebSocket === "undefined";
    this._wsEverOpened = false;
    this._wsFailures = 0;
    this._ref = 0;
    this._pending = new Map();
    this._closed = false;
    this._timer = null;
    this._ws = null;
    this._abort = null;
    this._connect();
  }

  /**
   * Calls fn for each event of type: "message", "reset", "ack", "error",
   * "state". Returns a function that removes the listener.
   */
  on(type, fn) {
    let set = this._listeners.get(type);
    if (!set) this._listeners.set(type, (set = new Set()));
    set.add(fn);
    return () => set.delete(fn);
  }

  _emit(type, value) {
    const set = this._listeners.get(type);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(value);
      } catch (err) {
        setTimeout(() => {
          throw err;
        });
      }
    }
  }

  _setState(state, transport) {
    if (this.state === state && this.transport === transport) return;
    this.state = state;
    this.transport = transport;
    this._emit("state", { state, transport });
  }

  /**
   * Publishes over the WebSocket (the route must allow it with `publish`).
   * Resolves with the message's ID when the server acknowledges it;
   * rejects with the server's error, or if the connection is not a
   * WebSocket or closes first (the message may then have been published).
   */
  publish(topic, data, options = {}) {
    const ws = this._ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(new Error("publish needs an open WebSocket connection"));
    }
    const ref = ++this._ref;
    const frame = { type: "publish", topic, ref };
    if (options.event) frame.event = options.event;
    if (data instanceof Uint8Array) {
      let s = "";
      for (const b of data) s += String.fromCharCode(b);
      frame.data_base64 = btoa(s);
    } else {
      frame.data = String(data);
    }
    return new Promise((resolve, reject) => {
      this._pending.set(ref, { resolve, reject });
      ws.send(JSON.stringify(frame));
    });
  }

  /** Closes the connection for good. */
  close() {
    this._closed = true;
    clearTimeout(this._timer);
    this._teardown();
    this._setState("closed", null);
  }

  _teardown() {
    if (this._ws) {
      const ws = this._ws;
      this._ws = null;
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        ws.close(1000);
      } catch (_) {
        // already closing
      }
    }
    if (this._abort) {
      this._abort.abort();
      this._abort = null;
    }
    for (const { reject } of this._pending.values()) {
      reject(new Error("connection closed before the server answered"));
    }
    this._pending.clear();
  }

  _params() {
    const p = this.options.topics.map((t) => ["topic", t]);
    if (this.lastEventId) p.push(["last_event_id", this.lastEventId]);
    return p;
  }

  _connect() {
    if (this._closed) return;
    this._setState("connecting", null);
    if (this._useSSE) this._connectSSE();
    else this._connectWS();
  }

  /** Schedules the next attempt: the ceiling doubles per attempt up to maxDelay, the wait is between half and all of it. */
  _retry() {
    this._teardown();
    if (this._closed) return;
    this._setState("connecting", null);
    const { minDelay, maxDelay } = this.options;
    const ceiling = Math.min(maxDelay, minDelay * 2 ** Math.min(this._attempt, 16));
    this._attempt++;
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    clearTimeout(this._timer);
    this._timer = setTimeout(() => this._connect(), delay);
  }

  _message(m) {
    if (m.id) this.lastEventId = m.id;
    this._emit("message", m);
  }

  _reset(lastEventId) {
    this._emit("reset", { lastEventId });
  }

  _connectWS() {
    let opened = false;
    const ws = new WebSocket(buildURL(this.options.ws, this._params(), true));
    this._ws = ws;
    ws.onopen = () => {
      opened = true;
      this._wsEverOpened = true;
      this._wsFailures = 0;
      this._attempt = 0;
      this._setState("open", "ws");
    };
    ws.onmessage = (e) => {
      let f;
      try {
        f = JSON.parse(e.data);
      } catch (_) {
        this._emit("error", { error: "frame is not JSON (is the route format json?)" });
        return;
      }
      switch (f.type) {
        case "message":
          this._message({ id: f.id, topic: f.topic, event: f.event || "", data: f.data, dataBase64: f.data_base64 });
          break;
        case "reset":
          this._reset(f.last_event_id);
          break;
        case "ack": {
          const p = this._pending.get(f.ref);
          this._pending.delete(f.ref);
          if (p) p.resolve(f.id);
          this._emit("ack", { ref: f.ref, id: f.id });
          break;
        }
        case "error": {
          const p = f.ref != null ? this._pending.get(f.ref) : undefined;
          this._pending.delete(f.ref);
          if (p) p.reject(new Error(f.error));
          this._emit("error", { ref: f.ref, error: f.error });
          break;
        }
      }
    };
    ws.onclose = () => {
      if (this._ws !== ws) return;
      if (!opened) {
        // Refused, or blocked on the way: after the first failure if it
        // never worked, after a few in a row if it did, take SSE.
        this._wsFailures++;
        const limit = this._wsEverOpened ? WS_OPEN_FAILURES_BEFORE_SSE : 1;
        if (this.options.sse && this._wsFailures >= limit) {
          this._useSSE = true;
          this._attempt = 0;
          this._teardown();
          this._connect();
          return;
        }
      }
      this._retry();
    };
  }

  async _connectSSE() {
    const abort = new AbortController();
    this._abort = abort;
    const headers = { Accept: "text/event-stream" };
    // The query holds the cursor too; the header is what EventSource
    // would send, and wins on the server.
    if (this.lastEventId) headers["Last-Event-ID"] = this.lastEventId;
    try {
      const resp = await fetch(buildURL(this.options.sse, this._params(), false), {
        headers,
        signal: abort.signal,
        cache: "no-store",
        credentials: this.options.credentials || "same-origin",
      });
      if (!resp.ok || !resp.body) {
        this._emit("error", { error: `event stream answered ${resp.status}` });
        if (this._abort === abort) this._retry();
        return;
      }
      this._attempt = 0;
      this._setState("open", "sse");
      await this._readSSE(resp.body, abort);
    } catch (err) {
      if (abort.signal.aborted) return;
    }
    if (this._abort === abort) this._retry();
  }

  /** Parses an event stream (the WHATWG rules) until it ends. */
  async _readSSE(body, abort) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    let id = "";
    let event = "";
    let data = [];
    for (;;) {
      const { value, done } = await reader.read();
      if (done || abort.signal.aborted) return;
      buf += value;
      let nl;
      while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
        // A lone CR at the end may be the first half of CRLF.
        if (buf[nl] === "\r" && nl === buf.length - 1) break;
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + (buf.startsWith("\r\n", nl) ? 2 : 1));
        if (line === "") {
          if (data.length) {
            if (event === "push.reset") {
              let last = "";
              try {
                last = JSON.parse(data.join("\n")).last_event_id;
              } catch (_) {
                // keep ""
              }
              this._reset(last);
            } else {
              this._message({ id, event, data: data.join("\n") });
            }
          }
          event = "";
          data = [];
          continue;
        }
        if (line[0] === ":") continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let val = colon < 0 ? "" : line.slice(colon + 1);
        if (val[0] === " ") val = val.slice(1);
        if (field === "data") data.push(val);
        else if (field === "event") event = val;
        else if (field === "id" && !val.includes("\0")) id = val;
      }
    }
  }
}
