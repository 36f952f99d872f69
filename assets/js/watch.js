// Plays a call's live HLS recording with the browser's own HLS support
// (Safari, Chrome, Edge); where there is none (Firefox), says so and offers
// the playlist to an external player. ?src=/recordings/.../index.m3u8

const $ = (selector) => document.querySelector(selector);
const src = new URLSearchParams(location.search).get("src") ?? "";
const video = $("#live");
const message = $("#watch-message");

if (!src.startsWith("/recordings/")) {
  message.textContent = "No live stream was named: open this page from the call's \"Watch the live stream\" link.";
} else {
  const playlist = new URL(src, location.href).href;
  $("#playlist").href = playlist;
  $("#playlist").textContent = playlist;
  if (video.canPlayType("application/vnd.apple.mpegurl")) {
    video.muted = true; // autoplay is allowed muted; the controls unmute
    play();
  } else {
    message.textContent = "This browser has no built-in HLS playback. Open the playlist below in an HLS player.";
    video.hidden = true;
  }
}

// A recording that just started has no playlist until its first segment is
// written: wait for it, and try again after an error (the stream may be
// between segments, or the server restarting).
const RETRY_MS = 2000;

async function play() {
  for (;;) {
    const ready = await fetch(src, { method: "HEAD", cache: "no-store" }).then(
      (r) => r.ok,
      () => false,
    );
    if (ready) break;
    message.textContent = "Waiting for the stream to start…";
    await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
  }
  message.textContent = "";
  video.src = src;
  video.play().catch(() => {});
}

video.addEventListener("error", () => {
  message.textContent = "The stream stopped playing; trying again…";
  setTimeout(play, RETRY_MS);
});

window.gridmixWatch = {
  state() {
    return {
      playing: !video.paused && video.readyState >= 2,
      currentTime: video.currentTime,
      width: video.videoWidth,
      height: video.videoHeight,
      message: message.textContent,
    };
  },
};
