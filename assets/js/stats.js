// Call statistics from getStats(), across every peer connection of the call:
// what a person on a weak laptop wants to see (an MCU sends them one stream).

export class StatsMeter {
  constructor() {
    this.previous = null;
  }

  async sample(peerConnections) {
    const now = performance.now();
    const totals = {
      bytesIn: 0,
      bytesOut: 0,
      videoStreamsIn: 0,
      framesDecoded: 0,
      audioStreamsIn: 0,
      audioPacketsIn: 0,
      videoPacketsOut: 0,
      fps: 0,
      width: 0,
      height: 0,
      packetsLost: 0,
      rtts: [],
    };
    for (const pc of peerConnections) {
      if (pc.connectionState === "closed") continue;
      const report = await pc.getStats();
      report.forEach((s) => {
        if (s.type === "inbound-rtp") {
          totals.bytesIn += s.bytesReceived ?? 0;
          totals.packetsLost += Math.max(0, s.packetsLost ?? 0);
          if (s.kind === "audio") {
            totals.audioPacketsIn += s.packetsReceived ?? 0;
            if ((s.packetsReceived ?? 0) > 0) totals.audioStreamsIn += 1;
          }
          if (s.kind === "video") {
            totals.framesDecoded += s.framesDecoded ?? 0;
            if ((s.framesDecoded ?? 0) > 0) totals.videoStreamsIn += 1;
            totals.fps += s.framesPerSecond ?? 0;
            if ((s.frameWidth ?? 0) * (s.frameHeight ?? 0) > totals.width * totals.height) {
              totals.width = s.frameWidth;
              totals.height = s.frameHeight;
            }
          }
        } else if (s.type === "outbound-rtp") {
          totals.bytesOut += s.bytesSent ?? 0;
          if (s.kind === "video") totals.videoPacketsOut += s.packetsSent ?? 0;
        } else if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") {
          if (s.currentRoundTripTime != null) totals.rtts.push(s.currentRoundTripTime * 1000);
        }
      });
    }
    const previous = this.previous;
    this.previous = { at: now, bytesIn: totals.bytesIn, bytesOut: totals.bytesOut };
    const seconds = previous ? (now - previous.at) / 1000 : 0;
    const rate = (bytes, before) => (seconds > 0 ? Math.max(0, ((bytes - before) * 8) / seconds / 1000) : 0);
    return {
      kbpsIn: previous ? rate(totals.bytesIn, previous.bytesIn) : 0,
      kbpsOut: previous ? rate(totals.bytesOut, previous.bytesOut) : 0,
      videoStreamsIn: totals.videoStreamsIn,
      framesDecoded: totals.framesDecoded,
      audioStreamsIn: totals.audioStreamsIn,
      videoPacketsOut: totals.videoPacketsOut,
      audioPacketsIn: totals.audioPacketsIn,
      fps: totals.fps,
      width: totals.width,
      height: totals.height,
      rttMs: totals.rtts.length ? totals.rtts.reduce((a, b) => a + b, 0) / totals.rtts.length : null,
      packetsLost: totals.packetsLost,
    };
  }
}

export function describeStats(s) {
  const rows = [
    ["Bitrate in", `${s.kbpsIn.toFixed(0)} kbit/s`],
    ["Bitrate out", `${s.kbpsOut.toFixed(0)} kbit/s`],
    ["Video streams received", String(s.videoStreamsIn)],
    ["Audio streams received", String(s.audioStreamsIn)],
    ["Received frame rate", `${s.fps.toFixed(0)} fps`],
    ["Largest received video", s.width ? `${s.width}×${s.height}` : "–"],
    ["Round-trip time", s.rttMs == null ? "–" : `${s.rttMs.toFixed(0)} ms`],
    ["Packets lost", String(s.packetsLost)],
  ];
  return rows;
}

// What the server says of this receiver in an MCU room: the rung it sends,
// what the link was seen to carry, and why it last moved. The room API
// needs the server's API secret where one is set; then these rows are left out.
export async function receiverRung(room, participant) {
  try {
    const response = await fetch(`/api/rooms/${encodeURIComponent(room)}`);
    if (!response.ok) return null;
    const snapshot = await response.json();
    return (snapshot.receivers ?? []).find((r) => r.participant === participant) ?? null;
  } catch {
    return null;
  }
}

export function describeRung(r) {
  if (!r) return [];
  return [
    ["Picture sent to you", r.moving_to ? `${r.rung ?? "–"} → ${r.moving_to}` : (r.rung ?? "–")],
    ["Estimated bandwidth", r.estimated_kbps == null ? "enough for the picture asked for" : `${r.estimated_kbps} kbit/s`],
    ["Last picture change", r.last_switch ?? "–"],
  ];
}
