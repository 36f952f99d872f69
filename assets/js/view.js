// Everything the call page shows: the composite (MCU) or one tile per remote
// participant (SFU, mesh), the local preview, who is here, status lines and
// messages. Sessions talk to it; it never talks to the server.

const $ = (selector) => document.querySelector(selector);

export class CallView {
  constructor() {
    this.composite = $("#composite");
    this.compositeBox = $("#composite-box");
    this.overlay = $("#overlay");
    this.layout = null;
    this.tiles = $("#tiles");
    this.people = $("#people");
    this.messages = $("#messages");
    this.names = new Map();
    this.connectionStates = new Map();
  }

  // Who this page is in the room, to name its own tile.
  setSelf(id, name) {
    this.self = { id, name };
  }

  // Resets the stage for a room of `mode`.
  enter(mode) {
    this.mode = mode;
    this.compositeBox.hidden = mode !== "mcu";
    this.tiles.hidden = mode === "mcu";
    this.clearRemote();
  }

  clearRemote() {
    this.composite.srcObject = null;
    this.layout = null;
    this.overlay.replaceChildren();
    this.tiles.replaceChildren();
    this.connectionStates.clear();
  }

  showComposite(stream) {
    if (this.composite.srcObject !== stream) this.composite.srcObject = stream;
    playWhenReady(this.composite);
  }

  setParticipants(list) {
    this.names = new Map(list.map((p) => [p.id, p.name]));
    this.people.replaceChildren(
      ...list.map((p) => {
        const li = document.createElement("li");
        li.textContent = p.name;
        li.dataset.participant = p.id;
        return li;
      }),
    );
    if (this.layout) this.setLayout(this.layout);
    if (this.mode !== "mcu") {
      for (const p of list) this.tile(p.id);
      for (const tile of [...this.tiles.children]) {
        if (!this.names.has(tile.dataset.participant)) tile.remove();
      }
    }
    this.markSpeakers();
  }

  // Who speaks ("speakers"): marked in the list of people and on their
  // tile (the composite's box in MCU rooms, their own tile in SFU rooms),
  // the dominant speaker most.
  setSpeakers(active, dominant) {
    this.speakers = { active: new Set(active), dominant };
    this.markSpeakers();
  }

  // Where everyone is on the composite ("layout"): one box per tile over
  // the video, in shares of it (the composite is 16:9, as its element), for
  // the speaking ring, and the name unless the server draws names itself.
  setLayout(layout) {
    this.layout = layout;
    this.overlay.replaceChildren(
      ...layout.tiles.map((tile) => {
        const slot = document.createElement("div");
        slot.className = "slot";
        slot.dataset.participant = tile.participant;
        slot.classList.toggle("main", tile.main);
        Object.assign(slot.style, {
          left: `${tile.x * 100}%`,
          top: `${tile.y * 100}%`,
          width: `${tile.width * 100}%`,
          height: `${tile.height * 100}%`,
          zIndex: String(tile.z),
        });
        if (!layout.captions) {
          const name = document.createElement("span");
          name.textContent =
            tile.participant === this.self?.id ? `${this.self.name} (you)` : (this.names.get(tile.participant) ?? "");
          slot.append(name);
        }
        return slot;
      }),
    );
    this.markSpeakers();
  }

  markSpeakers() {
    const { active, dominant } = this.speakers ?? { active: new Set(), dominant: null };
    for (const marked of [...this.overlay.children, ...this.tiles.children, ...this.people.children]) {
      const id = marked.dataset.participant;
      marked.classList.toggle("speaking", active.has(id));
      marked.classList.toggle("dominant", id === dominant);
    }
  }

  // The tile of a remote participant, made on first use.
  tile(id) {
    let tile = this.tiles.querySelector(`[data-participant="${CSS.escape(id)}"]`);
    if (!tile) {
      tile = document.createElement("figure");
      tile.className = "tile";
      tile.dataset.participant = id;
      const video = document.createElement("video");
      video.autoplay = true;
      video.playsInline = true;
      const caption = document.createElement("figcaption");
      tile.append(video, caption);
      this.tiles.append(tile);
    }
    tile.querySelector("figcaption").textContent = this.names.get(id) ?? id;
    return tile;
  }

  setRemoteStream(id, stream) {
    if (!this.names.has(id)) return; // a stream of someone who already left
    const tile = this.tile(id);
    const video = tile.querySelector("video");
    if (video.srcObject !== stream) video.srcObject = stream;
    tile.classList.toggle("no-video", stream.getVideoTracks().length === 0);
    playWhenReady(video);
  }

  connectionState(which, state) {
    this.connectionStates.set(which, state);
    if (state === "failed") {
      this.error("connection-failed", `The media connection (${which}) failed; check your network or firewall.`);
    }
  }

  videoOf(target) {
    if (target === "composite") return this.composite;
    return this.tiles.querySelector(`[data-participant="${CSS.escape(target)}"] video`);
  }

  error(code, message) {
    this.say(message, "error", code);
  }

  say(text, kind = "info", code = null) {
    const item = document.createElement("p");
    item.className = kind;
    item.textContent = text;
    if (code) item.title = code;
    item.dataset.code = code ?? "";
    this.messages.append(item);
    // Keep the last few; a long call must not grow the page forever.
    while (this.messages.children.length > 5) this.messages.firstChild.remove();
  }
}

function playWhenReady(video) {
  video.play().catch(() => {
    // Autoplay refused (no user gesture yet): the controls let a person start it.
    video.controls = true;
  });
}

// Mean colour of a 9x9 square around (fx, fy), fractions of the frame size,
// of what `video` shows now. Tests use it; so can a curious person.
export function sampleColour(video, fx, fy) {
  if (!video || video.videoWidth === 0) return null;
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.drawImage(video, 0, 0);
  const x = Math.min(canvas.width - 5, Math.max(4, Math.round(fx * canvas.width)));
  const y = Math.min(canvas.height - 5, Math.max(4, Math.round(fy * canvas.height)));
  const { data } = context.getImageData(x - 4, y - 4, 9, 9);
  const sum = [0, 0, 0];
  for (let i = 0; i < data.length; i += 4) for (let c = 0; c < 3; c += 1) sum[c] += data[i + c];
  const n = data.length / 4;
  return sum.map((v) => Math.round(v / n));
}

export function describeVideo(video) {
  if (!video) return null;
  return {
    playing: !video.paused && video.readyState >= 2,
    width: video.videoWidth,
    height: video.videoHeight,
    hasVideo: (video.srcObject?.getVideoTracks() ?? []).some((t) => t.readyState === "live"),
  };
}
