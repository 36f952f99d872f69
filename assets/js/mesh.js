// Mesh room: one peer connection per other participant; the server only
// relays signaling ("to" on the way out, "from" on the way in). The newcomer
// offers to everyone already there; those already there only answer, so two
// peers never offer to each other at once.

import { RemoteCandidates, newPeerConnection, sendLocalCandidates } from "./ice.js";

export class MeshSession {
  constructor({ signaling, iceServers, local, view }) {
    this.signaling = signaling;
    this.iceServers = iceServers;
    this.local = local;
    this.view = view;
    this.peers = new Map();
    this.queue = Promise.resolve();
  }

  peer(id, offering) {
    let peer = this.peers.get(id);
    if (peer) return peer;
    const pc = newPeerConnection(this.iceServers);
    peer = { pc, candidates: new RemoteCandidates(pc) };
    this.peers.set(id, peer);
    sendLocalCandidates(pc, this.signaling, { to: id });
    pc.addEventListener("connectionstatechange", () => this.view.connectionState(`peer ${id}`, pc.connectionState));
    const remote = new MediaStream();
    pc.addEventListener("track", (event) => {
      remote.addTrack(event.track);
      this.view.setRemoteStream(id, remote);
    });
    const tracks = this.local?.getTracks() ?? [];
    for (const kind of ["audio", "video"]) {
      const track = tracks.find((t) => t.kind === kind);
      if (offering) {
        if (track) pc.addTransceiver(track, { direction: "sendrecv", streams: [this.local] });
        else pc.addTransceiver(kind, { direction: "recvonly" });
      } else if (track) {
        // Added before the remote offer is applied, so the offer's m-line of
        // this kind takes it (JSEP matches them by kind).
        pc.addTrack(track, this.local);
      }
    }
    return peer;
  }

  async start(participants) {
    for (const p of participants) {
      const { pc } = this.peer(p.id, true);
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      this.signaling.send({ type: "offer", sdp: offer.sdp, to: p.id });
    }
  }

  handle(message) {
    this.queue = this.queue.then(() => this.apply(message)).catch((e) => this.view.error("negotiation", String(e)));
    return this.queue;
  }

  async apply(message) {
    const from = message.from;
    if (message.type === "participant-left") {
      this.peers.get(message.participant)?.pc.close();
      this.peers.delete(message.participant);
      return;
    }
    if (!from) return;
    if (message.type === "offer") {
      const { pc, candidates } = this.peer(from, false);
      await pc.setRemoteDescription({ type: "offer", sdp: message.sdp });
      candidates.flush();
      const answer = await pc.createAnswer();
      await pc.setLocalDescription(answer);
      this.signaling.send({ type: "answer", sdp: answer.sdp, to: from });
    } else if (message.type === "answer") {
      const peer = this.peers.get(from);
      if (!peer) return;
      await peer.pc.setRemoteDescription({ type: "answer", sdp: message.sdp });
      peer.candidates.flush();
    } else if (message.type === "ice") {
      this.peers.get(from)?.candidates.add(message);
    }
  }

  peerConnections() {
    return [...this.peers.values()].map((p) => p.pc);
  }

  close() {
    for (const pc of this.peerConnections()) pc.close();
    this.peers.clear();
  }
}
