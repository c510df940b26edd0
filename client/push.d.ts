// Types for push.js, the browser client of caddy-push.

export interface PushOptions {
  /** Path or URL of a push_ws route (format json). Tried first. */
  ws?: string;
  /** Path or URL of a push_sse route: the fallback when the WebSocket cannot connect. */
  sse?: string;
  /** Topics to add with ?topic= (each must match the route's subscribe patterns). */
  topics?: string[];
  /** Cursor of the first connection: an ID, or "earliest" for everything retained. */
  lastEventId?: string;
  /** Backoff before the first reconnect, in ms; doubles up to maxDelay, with jitter. Default 500. */
  minDelay?: number;
  /** Longest wait between reconnects, in ms. Default 30000. */
  maxDelay?: number;
  /** fetch credentials mode of the event stream. Default "same-origin". */
  credentials?: RequestCredentials;
}

export interface PushMessage {
  /** The message's ID; the cursor moves to it. */
  id: string;
  /** The topic; set over WebSocket only (SSE does not carry it). */
  topic?: string;
  /** The event type, "" if none. */
  event: string;
  /** The payload as text. Over SSE a binary payload arrives base64-encoded here. */
  data?: string;
  /** A binary payload over WebSocket, in standard base64 (data is then unset). */
  dataBase64?: string;
}

export interface PushReset {
  /** The cursor the server no longer had: messages after it may have been missed. */
  lastEventId: string;
}

export interface PushAck {
  ref: number;
  id: string;
}

export interface PushError {
  /** The ref of the refused frame, if the error answers one. */
  ref?: number;
  error: string;
}

export interface PushState {
  state: "connecting" | "open" | "closed";
  transport: "ws" | "sse" | null;
}

export interface PushEvents {
  message: PushMessage;
  reset: PushReset;
  ack: PushAck;
  error: PushError;
  state: PushState;
}

export class PushClient {
  constructor(options: PushOptions);
  /** The ID of the last message received: where the next connection resumes. */
  readonly lastEventId: string;
  /** The transport of the open connection, null while not connected. */
  readonly transport: "ws" | "sse" | null;
  readonly state: "connecting" | "open" | "closed";
  /** Calls fn for every event of that type; returns a function that removes it. */
  on<K extends keyof PushEvents>(type: K, fn: (value: PushEvents[K]) => void): () => void;
  /**
   * Publishes over the WebSocket; resolves with the message's ID when acknowledged,
   * rejects with the server's error or when the connection is not an open WebSocket.
   */
  publish(topic: string, data: string | Uint8Array, options?: { event?: string }): Promise<string>;
  /** Closes the connection for good. */
  close(): void;
}
