// Trickle ICE for one RTCPeerConnection: candidates from the other side wait
// until the remote description is set (addIceCandidate throws before it).

export class RemoteCandidates {
  constructor(pc) {
    this.pc = pc;
    this.waiting = [];
  }

  add(message) {
    // An empty candidate marks the end of candidates; browsers need nothing.
    if (!message.candidate) return;
    const candidate = {
      candidate: message.candidate,
      sdpMLineIndex: message.sdpMLineIndex,
      sdpMid: message.sdpMid ?? null,
    };
    if (this.pc.remoteDescription) {
      this.pc.addIceCandidate(candidate).catch((e) => console.warn("gridmix: candidate refused", e));
    } else {
      this.waiting.push(candidate);
    }
  }

  // Call once the remote description is set.
  flush() {
    for (const candidate of this.waiting.splice(0)) {
      this.pc.addIceCandidate(candidate).catch((e) => console.warn("gridmix: candidate refused", e));
    }
  }
}

// Sends this side's candidates as protocol "ice" messages; `fields` adds
// "pc" or "to".
export function sendLocalCandidates(pc, signaling, fields) {
  pc.addEventListener("icecandidate", (event) => {
    const c = event.candidate;
    signaling.send({
      type: "ice",
      candidate: c ? c.candidate : "",
      sdpMLineIndex: c?.sdpMLineIndex ?? 0,
      ...(c?.sdpMid != null ? { sdpMid: c.sdpMid } : {}),
      ...fields,
    });
  });
}

// How many peer connections this page has made: a resume that keeps the
// call makes none (window.gridmix.state() shows it).
export let peerConnectionsMade = 0;

export function newPeerConnection(iceServers) {
  peerConnectionsMade += 1;
  return new RTCPeerConnection({ iceServers, bundlePolicy: "max-bundle" });
}

// Renewed TURN credentials ("ice-servers") for an open connection: any
// gathering it does from now on (an ICE restart) uses them. Connections
// already relayed keep their allocations.
export function renewIceServers(pc, iceServers) {
  try {
    pc.setConfiguration({ ...pc.getConfiguration(), iceServers });
  } catch (error) {
    console.warn("gridmix: renewed ICE servers refused", error);
  }
}

// The TURN usernames ("expiry:participant") a connection holds now.
export function turnUsernames(pc) {
  return (pc.getConfiguration().iceServers ?? []).map((s) => s.username).filter(Boolean);
}
