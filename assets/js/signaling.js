// The signaling connection: JSON messages over a WebSocket at /ws (see the
// README's protocol section). It reconnects by itself after a drop, with a
// growing delay, and tells the page what it is doing through events:
//   "open"          connected (first time or again)
//   "message"       detail: a parsed server message
//   "reconnecting"  detail: { inMs } the socket dropped, next try in inMs

const MAX_DELAY_MS = 5000;

export class Signaling extends EventTarget {
  constructor(url) {
    super();
    this.url = url;
    this.socket = null;
    this.closedByUs = false;
    this.attempt = 0;
    this.timer = null;
  }

  get transport() {
    return "websocket";
  }

  connect() {
    this.closedByUs = false;
    const socket = new WebSocket(this.url);
    this.socket = socket;
    socket.addEventListener("open", () => {
      this.attempt = 0;
      this.dispatchEvent(new Event("open"));
    });
    socket.addEventListener("message", (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        console.warn("gridmix: server sent something that is not JSON", event.data);
        return;
      }
      this.dispatchEvent(new CustomEvent("message", { detail: message }));
    });
    socket.addEventListener("close", () => {
      if (this.socket !== socket || this.closedByUs) return;
      this.socket = null;
      // 0.5 s, 1 s, 2 s, ... capped: quick after a blip, gentle on an outage.
      const inMs = Math.min(MAX_DELAY_MS, 500 * 2 ** this.attempt);
      this.attempt += 1;
      this.dispatchEvent(new CustomEvent("reconnecting", { detail: { inMs } }));
      this.timer = setTimeout(() => this.connect(), inMs);
    });
  }

  send(message) {
    if (this.socket?.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify(message));
      return true;
    }
    return false;
  }

  close() {
    this.closedByUs = true;
    clearTimeout(this.timer);
    const socket = this.socket;
    this.socket = null;
    if (socket?.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: "leave" }));
    socket?.close();
  }
}
