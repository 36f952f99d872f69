// The gridmix browser client: join form, call page, reconnection. One module
// per room mode (mcu.js, sfu.js, mesh.js) carries the media; this one wires
// signaling, devices and the page together.

import { McuSession } from "./mcu.js";
import { MeshSession } from "./mesh.js";
import { SfuSession } from "./sfu.js";
import { Signaling } from "./signaling.js";
import { StatsMeter, describeStats, receiverRung, describeRung } from "./stats.js";
import { openDevices, stopDevices } from "./media.js";
import { CallView, describeVideo, sampleColour } from "./view.js";
import { peerConnectionsMade, renewIceServers, turnUsernames } from "./ice.js";

const $ = (selector) => document.querySelector(selector);
const SESSIONS = { mcu: McuSession, sfu: SfuSession, mesh: MeshSession };

const view = new CallView();
const meter = new StatsMeter();
const call = {
  status: "idle", // idle | connecting | joined | reconnecting | left
  settings: null, // { room, name, mode, viewer, token }
  signaling: null,
  // Taking the session up again after a dropped connection: the token from
  // "joined" and how many session messages arrived (all but "resumed").
  resumeToken: null,
  received: 0,
  session: null,
  local: null,
  participant: null,
  participants: [],
  // Running recordings by id: { format, url }.
  recordings: new Map(),
  // The composite's layout, as last announced (MCU).
  layout: null,
  stats: null,
};

function setStatus(status, text) {
  call.status = status;
  $("#status").textContent = text;
  document.body.dataset.status = status;
}

function fillFormFromUrl() {
  const query = new URLSearchParams(location.search);
  const form = $("#join-form");
  for (const field of ["room", "name", "mode"]) {
    const value = query.get(field);
    if (value) form.elements[field].value = value;
  }
  if (query.get("viewer") === "1") form.elements.viewer.checked = true;
}

// ?token=... (a room token, for servers run with --auth-secret) and
// ?transport=websocket|long-poll (default: WebSocket, long-poll if blocked).
function linkOptions() {
  const query = new URLSearchParams(location.search);
  const transport = query.get("transport");
  return {
    token: query.get("token") || undefined,
    transport: ["websocket", "long-poll"].includes(transport) ? transport : "auto",
  };
}

async function join(event) {
  event.preventDefault();
  const form = $("#join-form");
  const settings = {
    room: form.elements.room.value.trim(),
    name: form.elements.name.value.trim(),
    mode: form.elements.mode.value,
    viewer: form.elements.viewer.checked,
    ...linkOptions(),
  };
  $("#join-message").textContent = "";
  // A link to this call: room and mode (not the name, which is per person,
  // nor the token, which is too).
  history.replaceState(null, "", `?room=${encodeURIComponent(settings.room)}&mode=${settings.mode}`);
  if (!settings.viewer) {
    try {
      const { stream, warning } = await openDevices();
      call.local = stream;
      if (warning) view.say(warning, "warning");
    } catch (error) {
      $("#join-message").textContent = error.message;
      return;
    }
  }
  $("#self").srcObject = call.local;
  $("#self").hidden = !call.local?.getVideoTracks().length;
  call.settings = settings;
  $("#join-view").hidden = true;
  $("#call-view").hidden = false;
  $("#room-label").textContent = `${settings.room} · ${settings.mode.toUpperCase()}`;
  view.enter(settings.mode);
  updateControls();
  connect();
}

// In an MCU room the join carries the picture asked for, so the first frame
// is already on that rung.
function joinMessage() {
  const { room, name, mode, token } = call.settings;
  const quality = $("#quality-picker").elements.quality.value;
  call.joinedWithQuality = mode === "mcu" ? quality : "high";
  return {
    type: "join",
    room,
    name,
    mode,
    ...(token ? { token } : {}),
    ...(call.joinedWithQuality !== "high" ? { quality } : {}),
  };
}

function connect() {
  const signaling = new Signaling(location, call.settings.transport);
  call.signaling = signaling;
  call.resumeToken = null;
  setStatus("connecting", `Connecting (${signaling.transport})…`);
  signaling.addEventListener("open", () => {
    if (call.resumeToken && call.session) {
      // Same participant, same media: only the signaling connection is new.
      signaling.send({ type: "resume", token: call.resumeToken, received: call.received });
      return;
    }
    signaling.send(joinMessage());
  });
  signaling.addEventListener("message", (event) => onMessage(event.detail));
  signaling.addEventListener("reconnecting", (event) => {
    // The peer connections stay up: the server keeps this participant for a
    // while, and "resume" takes the session up again.
    setStatus("reconnecting", `Connection to the server lost; reconnecting in ${Math.ceil(event.detail.inMs / 1000)} s…`);
    view.say("The connection to the server dropped; reconnecting by itself.", "warning");
  });
  signaling.connect();
}

async function onMessage(message) {
  if (message.type !== "resumed") call.received += 1;
  switch (message.type) {
    case "joined": {
      // A fresh session (after a failed resume, the old one is gone).
      endSession();
      call.received = 1;
      call.resumeToken = message.resumeToken ?? null;
      call.participant = message.participant;
      view.setSelf(message.participant, call.settings.name);
      call.participants = message.participants;
      view.setParticipants(call.participants);
      showLayoutPicker();
      setStatus("joined", `In the call as ${call.settings.name} (${call.signaling.transport})`);
      // Before the offer, so the first picture is already the one asked for
      // (when the join could not say it: the room chose MCU itself).
      const qualityPicker = $("#quality-picker");
      qualityPicker.hidden = message.mode !== "mcu";
      const quality = qualityPicker.elements.quality.value;
      if (message.mode === "mcu" && quality !== call.joinedWithQuality) {
        call.signaling.send({ type: "quality", max: quality });
      }
      const Session = SESSIONS[message.mode];
      call.session = new Session({
        signaling: call.signaling,
        iceServers: message.iceServers,
        local: call.local,
        view,
      });
      try {
        await call.session.start(message.participants);
      } catch (error) {
        view.error("negotiation", `Could not start the media connection: ${error.message}`);
      }
      break;
    }
    case "resumed":
      setStatus("joined", `In the call as ${call.settings.name} (${call.signaling.transport})`);
      view.say("Reconnected; the call went on.");
      break;
    case "ice-servers":
      // Fresh TURN credentials: for the connections opened from now on
      // (each session makes new ones from its iceServers) and for any
      // gathering the open ones do.
      if (call.session) {
        call.session.iceServers = message.iceServers;
        for (const pc of call.session.peerConnections()) renewIceServers(pc, message.iceServers);
      }
      break;
    case "speakers":
      view.setSpeakers(message.active, message.dominant);
      break;
    case "layout":
      call.layout = message;
      view.setLayout(message);
      showLayoutPicker();
      break;
    case "participant-joined":
      call.participants = [...call.participants.filter((p) => p.id !== message.participant.id), message.participant];
      view.setParticipants(call.participants);
      showLayoutPicker();
      view.say(`${message.participant.name} joined.`);
      break;
    case "participant-left": {
      const who = call.participants.find((p) => p.id === message.participant);
      call.participants = call.participants.filter((p) => p.id !== message.participant);
      view.setParticipants(call.participants);
      showLayoutPicker();
      call.session?.handle(message);
      if (who) view.say(`${who.name} left.`);
      break;
    }
    case "recording":
      if (message.state === "started") {
        if (!call.recordings.has(message.id)) view.say("This call is being recorded.");
        call.recordings.set(message.id, { format: message.format, url: message.url });
      } else if (call.recordings.delete(message.id)) {
        view.say("A recording of this call stopped.");
      }
      showRecordings();
      break;
    case "error":
      if (message.code === "resume-failed") {
        // Away too long: the server let the session go. Join afresh.
        endSession();
        call.resumeToken = null;
        setStatus("connecting", `Joining again (${call.signaling.transport})…`);
        call.signaling.send(joinMessage());
        break;
      }
      view.error(message.code, message.message);
      if (message.code === "replaced") {
        // The same person joined from elsewhere (another tab, another
        // device): this page steps aside. Reconnecting would replace that
        // one in turn, and the two would take the place back and forth.
        leave(message.message);
        break;
      }
      if (call.status === "connecting") {
        // The join itself was refused: back to the form, no reconnect loop.
        leave(`${message.message}`);
      }
      break;
    default:
      call.session?.handle(message);
  }
}

// The indicator while anything records; a link to watch the newest live
// (HLS) recording.
function showRecordings() {
  $("#recording").hidden = call.recordings.size === 0;
  const live = [...call.recordings.values()].filter((r) => r.format === "hls" && r.url).pop();
  $("#watch").hidden = !live;
  if (live) $("#watch").href = `watch.html?src=${encodeURIComponent(live.url)}`;
}

function endSession() {
  call.session?.close();
  call.session = null;
  call.participants = [];
  view.clearRemote();
  view.setParticipants([]);
  call.recordings.clear();
  showRecordings();
  call.layout = null;
  showLayoutPicker();
}

function leave(reason) {
  call.signaling?.close();
  call.signaling = null;
  call.resumeToken = null;
  endSession();
  stopDevices(call.local);
  call.local = null;
  $("#call-view").hidden = true;
  $("#join-view").hidden = false;
  $("#join-message").textContent = reason ?? "";
  setStatus("left", reason ? "Not in a call" : "You left the call");
}

function toggle(kind) {
  for (const track of call.local?.getTracks().filter((t) => t.kind === kind) ?? []) track.enabled = !track.enabled;
  updateControls();
}

function updateControls() {
  const enabled = (kind) => call.local?.getTracks().some((t) => t.kind === kind && t.enabled) ?? false;
  const has = (kind) => call.local?.getTracks().some((t) => t.kind === kind) ?? false;
  $("#mic").disabled = !has("audio");
  $("#camera").disabled = !has("video");
  $("#mic").textContent = enabled("audio") ? "Mute microphone" : "Unmute microphone";
  $("#camera").textContent = enabled("video") ? "Turn camera off" : "Turn camera on";
  $("#mic").setAttribute("aria-pressed", String(!enabled("audio")));
  $("#camera").setAttribute("aria-pressed", String(!enabled("video")));
}

async function refreshStats() {
  if (!call.session) return;
  call.stats = await meter.sample(call.session.peerConnections());
  call.rung = call.settings.mode === "mcu" ? await receiverRung(call.settings.room, call.participant) : null;
  $("#stats").replaceChildren(
    ...[...describeStats(call.stats), ...describeRung(call.rung)].map(([name, value]) => {
      const row = document.createElement("tr");
      const th = document.createElement("th");
      const td = document.createElement("td");
      th.textContent = name;
      td.textContent = value;
      row.append(th, td);
      return row;
    }),
  );
}

// The layout picker (MCU rooms): the layout in force, and who may be pinned.
// A change asks the server through the layout API, which needs no
// credentials on a server without an API secret; with one, the API says
// no and the picker says so.
function showLayoutPicker() {
  const form = $("#layout-picker");
  form.hidden = call.settings?.mode !== "mcu" || !call.layout;
  if (form.hidden) return;
  const { layout, pin, captions } = call.layout;
  if (layout !== "custom") form.elements.layout.value = layout;
  form.elements.captions.checked = captions;
  const pinSelect = form.elements.pin;
  const choices = [{ id: "", name: "Whoever speaks" }, ...call.participants, { id: call.participant, name: `${call.settings.name} (you)` }];
  pinSelect.replaceChildren(
    ...choices.map(({ id, name }) => {
      const option = document.createElement("option");
      option.value = id;
      option.textContent = name;
      return option;
    }),
  );
  pinSelect.value = pin ?? "";
}

async function pickLayout() {
  const form = $("#layout-picker");
  // A PUT replaces the whole layout: captions are sent as they are ticked.
  const body = { layout: form.elements.layout.value, captions: form.elements.captions.checked };
  if (form.elements.pin.value) body.pin = form.elements.pin.value;
  const message = $("#layout-message");
  message.textContent = "";
  try {
    const response = await fetch(`/api/rooms/${encodeURIComponent(call.settings.room)}/layout`, {
      method: "PUT",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    if (!response.ok) {
      const error = await response.json().catch(() => ({}));
      message.textContent =
        response.status === 401 || response.status === 403
          ? "Changing the layout needs the server's API secret on this server."
          : (error.message ?? `The server said ${response.status}.`);
    }
  } catch (error) {
    message.textContent = `Could not reach the server: ${error.message}`;
  }
}

// What the page shows, for tests and for anyone at the console.
window.gridmix = {
  async state() {
    const stats = call.session ? await new StatsMeter().sample(call.session.peerConnections()) : null;
    return {
      status: call.status,
      mode: call.settings?.mode ?? null,
      transport: call.signaling?.transport ?? null,
      participant: call.participant,
      participants: call.participants,
      recordings: [...call.recordings.keys()],
      watch: $("#watch").hidden ? null : $("#watch").getAttribute("href"),
      composite: call.settings?.mode === "mcu" ? describeVideo(view.composite) : null,
      layout: call.layout,
      overlay: [...document.querySelectorAll("#overlay .slot")].map((slot) => ({
        participant: slot.dataset.participant,
        name: slot.querySelector("span")?.textContent ?? null,
        speaking: slot.classList.contains("speaking"),
        dominant: slot.classList.contains("dominant"),
      })),
      statistics: Object.fromEntries([...document.querySelectorAll("#stats tr")].map((row) => [row.querySelector("th").textContent, row.querySelector("td").textContent])),
      videoPaused: call.session?.videoPaused ?? false,
      videoPacketsOut: stats?.videoPacketsOut ?? 0,
      tiles: [...document.querySelectorAll("#tiles .tile")].map((tile) => ({
        participant: tile.dataset.participant,
        name: tile.querySelector("figcaption").textContent,
        speaking: tile.classList.contains("speaking"),
        ...describeVideo(tile.querySelector("video")),
      })),
      framesDecoded: stats?.framesDecoded ?? 0,
      audioStreamsIn: stats?.audioStreamsIn ?? 0,
      audioPacketsIn: stats?.audioPacketsIn ?? 0,
      peerConnectionsMade,
      turnUsernames: call.session?.peerConnections().map(turnUsernames) ?? [],
      reconnectDelays: call.signaling?.delays ?? [],
      messages: [...document.querySelectorAll("#messages p")].map((p) => ({ code: p.dataset.code, text: p.textContent })),
    };
  },
  // target: "composite" or a participant id; fx, fy: fractions of the frame.
  sampleColour(target, fx, fy) {
    return sampleColour(view.videoOf(target), fx, fy);
  },
  // Drops the signaling connection as a network failure would; the page
  // reconnects and resumes by itself.
  dropConnection() {
    call.signaling?.drop();
  },
};

$("#join-form").addEventListener("submit", join);
$("#layout-picker").addEventListener("change", pickLayout);
// MCU rooms: the best encoding of the composite the server sends this page.
$("#quality-picker").addEventListener("change", (event) => {
  call.signaling?.send({ type: "quality", max: event.target.value });
});
$("#leave").addEventListener("click", () => leave());
$("#mic").addEventListener("click", () => toggle("audio"));
$("#camera").addEventListener("click", () => toggle("video"));
fillFormFromUrl();
setInterval(refreshStats, 1000);
