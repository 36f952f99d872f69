// The signaling connection (see the README's protocol section). It carries
// the same JSON messages over one of two transports:
//   "websocket"  a WebSocket at /ws;
//   "long-poll"  HTTP at /signal, for networks (corporate proxies) that
//                block WebSocket: POST /signal opens with the first message,
//                POST /signal/{id} sends, GET /signal/{id}?after=N receives.
// With the "auto" preference it tries the WebSocket and, when that cannot
// connect at all, falls back to long-poll by itself and stays with it.
// It reconnects by itself after a drop, with a growing delay, and tells the
// page what it is doing through events:
//   "open"          connected (first time or again): send join or resume
//   "message"       detail: a parsed server message
//   "reconnecting"  detail: { inMs } the connection dropped, next try in inMs

const MAX_DELAY_MS = 5000;
// A long-poll that fails this many times in a row is a lost connection.
const POLL_FAILURES = 5;

export class Signaling extends EventTarget {
  // prefer: "auto" | "websocket" | "long-poll"
  constructor(base, prefer = "auto") {
    super();
    this.wsUrl = `${base.protocol === "https:" ? "wss" : "ws"}://${base.host}/ws`;
    this.pollUrl = `${base.protocol}//${base.host}/signal`;
    this.prefer = prefer;
    this.kind = prefer === "long-poll" ? "long-poll" : "websocket";
    this.connection = null;
    this.closedByUs = false;
    this.attempt = 0;
    this.timer = null;
    // The delay before each reconnection so far, in ms.
    this.delays = [];
  }

  get transport() {
    return this.kind;
  }

  connect() {
    this.closedByUs = false;
    const Connection = this.kind === "long-poll" ? PollConnection : SocketConnection;
    const connection = new Connection(this.kind === "long-poll" ? this.pollUrl : this.wsUrl);
    this.connection = connection;
    connection.onopen = () => {
      if (this.connection !== connection) return;
      this.dispatchEvent(new Event("open"));
    };
    connection.onmessage = (message) => {
      if (this.connection !== connection) return;
      // The backoff starts over once the server answers, not when a
      // connection merely opens: long-poll "opens" at once, server or not.
      this.attempt = 0;
      this.dispatchEvent(new CustomEvent("message", { detail: message }));
    };
    connection.onclose = (reachedServer) => {
      if (this.connection !== connection || this.closedByUs) return;
      this.connection = null;
      if (!reachedServer && this.kind === "websocket" && this.prefer === "auto") {
        // The WebSocket could not connect at all (blocked on the way, or the
        // server is down): try long-poll at once.
        console.warn("gridmix: the WebSocket could not connect; trying HTTP long-poll");
        this.kind = "long-poll";
        this.connect();
        return;
      }
      if (!reachedServer && this.kind === "long-poll" && this.prefer === "auto") {
        // Long-poll did not reach the server either: it is down, not
        // blocked. Next time, the WebSocket first again.
        this.kind = "websocket";
      }
      // 0.5 s, 1 s, 2 s, ... capped: quick after a blip, gentle on an outage.
      const inMs = Math.min(MAX_DELAY_MS, 500 * 2 ** this.attempt);
      this.attempt += 1;
      this.delays.push(inMs);
      this.dispatchEvent(new CustomEvent("reconnecting", { detail: { inMs } }));
      this.timer = setTimeout(() => this.connect(), inMs);
    };
    connection.open();
  }

  send(message) {
    return this.connection?.send(message) ?? false;
  }

  // Drops the connection without leaving, as a network failure would (for
  // tests and for trying resume from the console).
  drop() {
    this.connection?.drop();
  }

  close() {
    this.closedByUs = true;
    clearTimeout(this.timer);
    const connection = this.connection;
    this.connection = null;
    connection?.close();
  }
}

// A WebSocket. onclose(reachedServer) once, when it closes or fails.
class SocketConnection {
  constructor(url) {
    this.url = url;
    this.socket = null;
    this.opened = false;
    this.closed = false;
  }

  open() {
    let socket;
    try {
      socket = new WebSocket(this.url);
    } catch {
      queueMicrotask(() => this.finish());
      return;
    }
    this.socket = socket;
    socket.addEventListener("open", () => {
      this.opened = true;
      this.onopen();
    });
    socket.addEventListener("message", (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        console.warn("gridmix: server sent something that is not JSON", event.data);
        return;
      }
      this.onmessage(message);
    });
    socket.addEventListener("close", () => this.finish());
  }

  finish() {
    if (this.closed) return;
    this.closed = true;
    this.onclose(this.opened);
  }

  send(message) {
    if (this.socket?.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify(message));
      return true;
    }
    return false;
  }

  drop() {
    this.socket?.close();
  }

  close() {
    this.closed = true;
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify({ type: "leave" }));
    this.socket?.close();
  }
}

// HTTP long-poll. "Open" at once: the session starts with the first message
// sent (a join or a resume). Messages sent in one go are batched into one
// POST, in order.
class PollConnection {
  constructor(url) {
    this.url = url;
    this.session = null;
    this.after = 0;
    this.outbox = [];
    this.sending = false;
    // Whether the server answered anything on this connection.
    this.reached = false;
    this.closed = false;
    this.abort = new AbortController();
  }

  open() {
    queueMicrotask(() => this.onopen());
  }

  send(message) {
    if (this.closed) return false;
    this.outbox.push(message);
    if (!this.sending) this.flush();
    return true;
  }

  async flush() {
    this.sending = true;
    try {
      while (this.outbox.length && !this.closed) {
        if (!this.session) {
          await this.start(this.outbox.shift());
          continue;
        }
        const batch = this.outbox.splice(0);
        const response = await fetch(`${this.url}/${this.session}`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(batch.length === 1 ? batch[0] : batch),
          signal: this.abort.signal,
        });
        if (response.status === 404) return this.finish();
      }
    } catch (error) {
      if (!this.closed) {
        console.warn("gridmix: long-poll send failed", error);
        this.finish();
      }
    } finally {
      this.sending = false;
    }
  }

  // POST /signal with the first message: the session and its first messages,
  // or the refusal (delivered like any error message).
  async start(message) {
    const response = await fetch(this.url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(message),
      signal: this.abort.signal,
    });
    this.reached = true;
    const body = await response.json();
    if (!response.ok) {
      this.onmessage(body);
      return;
    }
    this.session = body.session;
    this.deliver(body.messages);
    this.poll();
  }

  deliver(numbered) {
    for (const { seq, message } of numbered ?? []) {
      if (seq !== this.after + 1) continue; // already had it
      this.after = seq;
      if (!this.closed) this.onmessage(message);
    }
  }

  async poll() {
    let failures = 0;
    while (!this.closed) {
      try {
        const response = await fetch(`${this.url}/${this.session}?after=${this.after}`, {
          signal: this.abort.signal,
        });
        if (response.status === 404) return this.finish();
        if (!response.ok) throw new Error(`GET ${response.status}`);
        const polled = await response.json();
        failures = 0;
        this.deliver(polled.messages);
        if (polled.closed) return this.finish();
      } catch (error) {
        if (this.closed) return;
        // The server keeps what we have not acknowledged: asking again with
        // the same "after" loses nothing.
        failures += 1;
        if (failures >= POLL_FAILURES) return this.finish();
        await new Promise((resolve) => setTimeout(resolve, 250 * failures));
      }
    }
  }

  finish() {
    if (this.closed) return;
    this.closed = true;
    this.abort.abort();
    this.onclose(this.reached);
  }

  drop() {
    // Stop polling without leaving: the server ends the session after its
    // poll timeout, so a resume must come before that.
    this.finish();
  }

  close() {
    this.closed = true;
    this.abort.abort();
    if (this.session) {
      fetch(`${this.url}/${this.session}`, { method: "DELETE", keepalive: true }).catch(() => {});
    }
  }
}
