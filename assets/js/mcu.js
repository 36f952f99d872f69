// MCU room: one peer connection ("publish"). The client offers one audio and
// one video m-line; the server answers and sends back, on the same m-lines,
// the grid composite and this listener's mix (everyone but them).

import { RemoteCandidates, newPeerConnection, sendLocalCandidates } from "./ice.js";

export class McuSession {
  constructor({ signaling, iceServers, local, view }) {
    this.signaling = signaling;
    this.view = view;
    this.pc = newPeerConnection(iceServers);
    this.candidates = new RemoteCandidates(this.pc);
    sendLocalCandidates(this.pc, signaling, { pc: "publish" });
    for (const kind of ["audio", "video"]) {
      const track = local?.getTracks().find((t) => t.kind === kind);
      // sendrecv with a device; recvonly for a viewer (or a missing device).
      if (track) this.pc.addTransceiver(track, { direction: "sendrecv", streams: [local] });
      else this.pc.addTransceiver(kind, { direction: "recvonly" });
    }
    this.composite = new MediaStream();
    this.pc.addEventListener("track", (event) => {
      this.composite.addTrack(event.track);
      this.view.showComposite(this.composite);
    });
    this.pc.addEventListener("connectionstatechange", () => view.connectionState("publish", this.pc.connectionState));
  }

  async start() {
    const offer = await this.pc.createOffer();
    await this.pc.setLocalDescription(offer);
    this.signaling.send({ type: "offer", sdp: offer.sdp });
  }

  async handle(message) {
    if (message.type === "video-paused" || message.type === "video-resumed") {
      await this.sendVideo(message.type === "video-resumed");
    } else if (message.type === "answer") {
      await this.pc.setRemoteDescription({ type: "answer", sdp: message.sdp });
      this.candidates.flush();
    } else if (message.type === "ice") {
      this.candidates.add(message);
    }
  }

  // The server shows (or no longer shows) this participant's video on the
  // composite: the video sender is set active or inactive, so a client off
  // the composite neither encodes nor sends it. Re-activated, the browser
  // starts on a keyframe.
  async sendVideo(active) {
    this.videoPaused = !active;
    const sender = this.pc.getSenders().find((s) => s.track?.kind === "video");
    if (!sender) return;
    const parameters = sender.getParameters();
    if (!parameters.encodings?.length) return;
    for (const encoding of parameters.encodings) encoding.active = active;
    await sender.setParameters(parameters);
  }

  peerConnections() {
    return [this.pc];
  }

  close() {
    this.pc.close();
  }
}
