// The camera and microphone: asked for once per join, with a sentence a
// person understands when they cannot be had.

const VIDEO = { width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 30 } };

// Returns { stream, warning } where stream may lack a kind that is missing;
// throws an Error with a readable message when nothing can be had.
export async function openDevices() {
  if (!navigator.mediaDevices?.getUserMedia) {
    throw new Error(
      "This browser cannot use a camera or microphone here (a secure origin, https or localhost, is needed). You can join as a viewer.",
    );
  }
  try {
    return { stream: await navigator.mediaDevices.getUserMedia({ audio: true, video: VIDEO }), warning: null };
  } catch (error) {
    if (error.name === "NotAllowedError" || error.name === "SecurityError") {
      throw new Error(
        "Camera and microphone access was denied. Allow it in the browser's site settings and join again, or join as a viewer.",
      );
    }
    // One of the two may be missing or busy: try each alone.
    for (const [constraints, missing] of [
      [{ audio: true }, "camera"],
      [{ video: VIDEO }, "microphone"],
    ]) {
      try {
        const stream = await navigator.mediaDevices.getUserMedia(constraints);
        return { stream, warning: `No ${missing} could be opened (${error.message || error.name}); joining without it.` };
      } catch {
        // try the next
      }
    }
    throw new Error(
      `No camera or microphone could be opened (${error.message || error.name}). You can join as a viewer.`,
    );
  }
}

export function stopDevices(stream) {
  for (const track of stream?.getTracks() ?? []) track.stop();
}
