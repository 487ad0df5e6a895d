// One `/ws/session` WebSocket: connect, send `start`, track the state, reconnect with backoff.
//
// States: connecting → starting → ready ⇄ generating; error (the server refused the start);
// reconnecting (socket lost, retry scheduled); closed (close() was called).

const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 10_000;

/** A random hex string; works outside secure contexts too (no crypto.randomUUID there). */
export function randomId(bytes = 12) {
  const values = crypto.getRandomValues(new Uint8Array(bytes));
  return Array.from(values, (value) => value.toString(16).padStart(2, "0")).join("");
}

/** ws:// or wss:// URL of `path` on the page's own host. */
export function socketUrl(path) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${path}`;
}

/** Delay before reconnect attempt `attempt` (1, 2, …): doubling, capped, ±20 % jitter. */
export function backoffDelay(attempt) {
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** Math.max(0, attempt - 1));
  return Math.round(base * (0.8 + Math.random() * 0.4));
}

export class Session {
  /**
   * @param {object} options
   * @param {string} options.url           the WebSocket URL
   * @param {() => object} options.makeStart  builds the `start` frame (called on every (re)start)
   * @param {string[]} [options.protocols]  WebSocket subprotocols (an API key, when set)
   * @param {(frame: object) => void} [options.onFrame]  every frame from the server
   * @param {(state: string, info: object) => void} [options.onState]  every state change
   */
  constructor({ url, makeStart, protocols = [], onFrame = () => {}, onState = () => {} }) {
    this.url = url;
    this.makeStart = makeStart;
    this.protocols = protocols;
    this.onFrame = onFrame;
    this.onState = onState;
    this.state = "idle";
    this.ws = null;
    this.attempt = 0;
    this.retryTimer = null;
    this.closed = false;
    this.pending = null; // the submit under way: {resolve, tokens}
    this.startedAt = 0; // performance.now() of the last `start` sent
    this.info = {}; // the last `ready` frame
    this.readyWaiters = [];
  }

  setState(state, extra = {}) {
    this.state = state;
    this.onState(state, { ...extra, info: this.info });
  }

  connect() {
    if (this.closed || this.ws) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.setState(this.attempt === 0 ? "connecting" : "reconnecting", { attempt: this.attempt });
    const ws = this.protocols.length ? new WebSocket(this.url, this.protocols) : new WebSocket(this.url);
    this.ws = ws;
    ws.addEventListener("open", () => this.sendStart());
    ws.addEventListener("message", (event) => this.receive(event.data));
    ws.addEventListener("close", () => this.lost(ws));
  }

  /** Reconnect now instead of waiting for the scheduled attempt (e.g. the network is back). */
  retryNow() {
    if (this.retryTimer !== null) this.connect();
  }

  sendStart() {
    if (!this.isOpen()) return;
    this.info = {};
    this.startedAt = performance.now();
    this.finishPending({ type: "error", code: "restarted", message: "the session was restarted" });
    this.setState("starting");
    this.sendRaw(this.makeStart());
  }

  /** Start the session again (a new context, a new cache namespace); resolves on `ready`. */
  restart() {
    if (this.isOpen()) this.sendStart();
    else this.connect();
    return this.whenReady();
  }

  /** Resolves with the `ready` frame once the session is ready (now, if it is). */
  whenReady() {
    if (this.state === "ready") return Promise.resolve(this.info);
    return new Promise((resolve) => this.readyWaiters.push(resolve));
  }

  isOpen() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  isReady() {
    return this.state === "ready";
  }

  sendRaw(frame) {
    if (!this.isOpen()) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  /** An `input` frame; dropped unless the session is started (the app re-sends on ready). */
  input(text, seq) {
    if (this.state !== "ready" && this.state !== "generating") return false;
    return this.sendRaw({ type: "input", text, seq });
  }

  /** Submit; resolves with the `done` frame, or an `error`-shaped object. Never rejects. */
  submit(text, seq) {
    if (this.state !== "ready") {
      return Promise.resolve({ type: "error", code: "not_ready", message: "the session is not ready" });
    }
    return new Promise((resolve) => {
      this.pending = { resolve, tokens: 0 };
      this.sendRaw({ type: "submit", text, seq });
      this.setState("generating");
    });
  }

  cancel() {
    if (this.state === "generating") this.sendRaw({ type: "cancel" });
  }

  close() {
    this.closed = true;
    clearTimeout(this.retryTimer);
    this.finishPending({ type: "error", code: "closed", message: "the session was closed" });
    if (this.ws) this.ws.close(1000, "closed by the page");
    this.ws = null;
    this.setState("closed");
  }

  finishPending(result) {
    const pending = this.pending;
    this.pending = null;
    if (pending) pending.resolve(result);
  }

  receive(data) {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    if (frame.type === "ready") {
      this.attempt = 0;
      this.info = frame;
      this.setState("ready");
      this.readyWaiters.splice(0).forEach((resolve) => resolve(frame));
    }
    this.onFrame(frame);
    if (frame.type === "token" && this.pending) {
      this.pending.tokens += 1;
    } else if (frame.type === "done") {
      this.finishGeneration(frame);
    } else if (frame.type === "error") {
      this.onError(frame);
    }
  }

  finishGeneration(result) {
    if (this.state === "generating") this.setState("ready");
    this.finishPending(result);
  }

  onError(frame) {
    if (this.state === "starting") {
      this.setState("error", { error: frame });
      return;
    }
    if (!this.pending || frame.code === "warmup_failed") return;
    // Before the first token any error answers the submit; after it, only the upstream's
    // (an error then may be about an input frame sent meanwhile).
    if (this.pending.tokens === 0 || String(frame.code).startsWith("upstream")) {
      this.finishGeneration(frame);
    }
  }

  lost(ws) {
    if (ws !== this.ws) return;
    this.ws = null;
    this.finishPending({ type: "error", code: "disconnected", message: "the connection was lost" });
    if (this.closed) return;
    this.attempt += 1;
    const delay = backoffDelay(this.attempt);
    this.setState("reconnecting", { attempt: this.attempt, delay });
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }
}
