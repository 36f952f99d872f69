// SFU room: the client publishes its own tracks on the "publish" connection
// (it offers sendonly, the server answers) and receives everyone else's on
// the "subscribe" connection, where the server offers and the client answers
// every renegotiation. A track's stream id is its sender's participant id.
// An offer with "newConnection" opens a fresh subscribe connection in place
// of the old (the server does it once departed senders' m-lines pile up):
// the old one keeps showing everyone until the new one is connected.

import { RemoteCandidates, newPeerConnection, sendLocalCandidates } from "./ice.js";

export class SfuSession {
  constructor({ signaling, iceServers, local, view }) {
    this.signaling = signaling;
    this.iceServers = iceServers;
    this.local = local;
    this.view = view;
    this.publish = null;
    this.subscribe = null;
    // The subscribe connection a new one replaces, until that is connected.
    this.replaced = null;
    // Offers are answered one at a time, in order.
    this.queue = Promise.resolve();
  }

  async start() {
    const tracks = this.local?.getTracks() ?? [];
    if (tracks.length === 0) return; // a viewer opens only the subscribe connection
    const pc = newPeerConnection(this.iceServers);
    this.publish = { pc, candidates: new RemoteCandidates(pc) };
    sendLocalCandidates(pc, this.signaling, { pc: "publish" });
    pc.addEventListener("connectionstatechange", () => this.view.connectionState("publish", pc.connectionState));
    for (const track of tracks) pc.addTransceiver(track, { direction: "sendonly", streams: [this.local] });
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    this.signaling.send({ type: "offer", sdp: offer.sdp });
  }

  subscribeConnection() {
    if (this.subscribe) return this.subscribe;
    const pc = newPeerConnection(this.iceServers);
    this.subscribe = { pc, candidates: new RemoteCandidates(pc) };
    sendLocalCandidates(pc, this.signaling, { pc: "subscribe" });
    pc.addEventListener("connectionstatechange", () => {
      if (this.subscribe?.pc !== pc) return;
      this.view.connectionState("subscribe", pc.connectionState);
      if (pc.connectionState === "connected") this.closeReplaced();
    });
    pc.addEventListener("track", (event) => {
      const stream = event.streams[0];
      if (!stream) return;
      this.view.setRemoteStream(stream.id, stream);
      // A departed sender's m-line goes inactive: its track leaves the stream.
      stream.addEventListener("removetrack", () => {
        if (this.subscribe?.pc === pc) this.view.setRemoteStream(stream.id, stream);
      });
    });
    return this.subscribe;
  }

  // The server replaces the subscribe connection: a new one is made for
  // its offer, and the old one goes once the new one is connected.
  renewSubscribe() {
    if (this.subscribe) {
      this.replaced?.pc.close();
      this.replaced = this.subscribe;
      this.subscribe = null;
    }
    return this.subscribeConnection();
  }

  closeReplaced() {
    this.replaced?.pc.close();
    this.replaced = null;
  }

  handle(message) {
    this.queue = this.queue.then(() => this.apply(message)).catch((e) => this.view.error("negotiation", String(e)));
    return this.queue;
  }

  async apply(message) {
    if (message.type === "offer") {
      const { pc, candidates } = message.newConnection ? this.renewSubscribe() : this.subscribeConnection();
      await pc.setRemoteDescription({ type: "offer", sdp: message.sdp });
      candidates.flush();
      const answer = await pc.createAnswer();
      await pc.setLocalDescription(answer);
      this.signaling.send({ type: "answer", sdp: answer.sdp });
    } else if (message.type === "answer" && this.publish) {
      await this.publish.pc.setRemoteDescription({ type: "answer", sdp: message.sdp });
      this.publish.candidates.flush();
    } else if (message.type === "ice") {
      const side = message.pc === "subscribe" ? this.subscribeConnection() : this.publish;
      side?.candidates.add(message);
    }
  }

  peerConnections() {
    return [this.publish?.pc, this.subscribe?.pc].filter(Boolean);
  }

  close() {
    for (const pc of this.peerConnections()) pc.close();
    this.closeReplaced();
  }
}
