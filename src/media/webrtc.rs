//! webrtcbin helpers shared by the server and the bot: creation with
//! conferencing settings, promises as futures, descriptions as text.

use crate::media::certificate::DtlsCertificate;
use crate::media::sdp::MediaKind;
use anyhow::{Context, Result, anyhow, bail};
use gst::glib;
use gst::prelude::*;
use gst_webrtc::{WebRTCPeerConnectionState, WebRTCSDPType, WebRTCSessionDescription};
use std::time::Duration;

/// The upstream event that asks an encoder, or through webrtcbin a remote
/// sender (as an RTCP PLI), for a keyframe.
const FORCE_KEY_UNIT: &str = "GstForceKeyUnit";

/// A keyframe request to push upstream. `marker`, if any, is a field that
/// tells gridmix's own probes on the way that it was already dealt with.
pub fn keyframe_request(marker: Option<&str>) -> gst::Event {
    let mut request = gst::Structure::builder(FORCE_KEY_UNIT).field("all-headers", true);
    if let Some(marker) = marker {
        request = request.field(marker, true);
    }
    gst::event::CustomUpstream::new(request.build())
}

/// Whether an upstream event asks for a keyframe.
pub fn is_keyframe_request(event: &gst::EventRef) -> bool {
    event.type_() == gst::EventType::CustomUpstream
        && event
            .structure()
            .is_some_and(|s| s.name() == FORCE_KEY_UNIT)
}

/// Whether an event carries the `marker` field of `keyframe_request`.
pub fn carries(event: &gst::EventRef, marker: &str) -> bool {
    event.structure().is_some_and(|s| s.has_field(marker))
}

/// Whether a webrtcbin's peer connection is up: ICE connected and DTLS done.
pub fn is_connected(webrtc: &gst::Element) -> bool {
    webrtc.property::<WebRTCPeerConnectionState>("connection-state")
        == WebRTCPeerConnectionState::Connected
}

/// A webrtcbin promise that has not resolved by then is treated as failed,
/// so a stuck negotiation removes one participant instead of wedging a room.
const PROMISE_TIMEOUT: Duration = Duration::from_secs(10);

/// How every gridmix webrtcbin is set up.
#[derive(Debug, Clone, Default)]
pub struct WebrtcSettings {
    /// Jitter-buffer latency in ms (webrtcbin's default, 200, is too much for a call).
    pub jitter_latency_ms: u32,
    /// `stun://host:port`, if any.
    pub stun_server: Option<String>,
    /// Local addresses ICE may use; empty means every interface.
    pub ice_addresses: Vec<String>,
    /// A TURN server whose credentials are made for each webrtcbin (the
    /// server's own, from `--turn` and `--turn-secret`).
    pub turn: Option<crate::turn::TurnSettings>,
    /// TURN servers as webrtcbin URIs with their credentials already in
    /// (a client's, from "joined").
    pub turn_uris: Vec<String>,
    /// Use relayed (TURN) candidates only: ice-transport-policy=relay.
    pub relay_only: bool,
    /// The DTLS certificate to present instead of webrtcbin's own RSA one.
    pub certificate: Option<std::sync::Arc<DtlsCertificate>>,
}

pub fn make_webrtcbin(name: &str, settings: &WebrtcSettings) -> Result<gst::Element> {
    let webrtc = gst::ElementFactory::make("webrtcbin")
        .name(name)
        .property_from_str("bundle-policy", "max-bundle")
        .property("latency", settings.jitter_latency_ms)
        .build()
        .context("creating webrtcbin")?;
    crate::media::lipsync::configure(&webrtc);
    if let Some(certificate) = &settings.certificate {
        certificate.apply_to(&webrtc);
    }
    if let Some(stun) = &settings.stun_server {
        webrtc.set_property("stun-server", stun);
    }
    let mut turn_uris = settings.turn_uris.iter().cloned();
    let own = settings
        .turn
        .as_ref()
        .map(|t| t.webrtcbin_uri("gridmix-server", crate::auth::unix_now()));
    if let Some(first) = own.or_else(|| turn_uris.next()) {
        webrtc.set_property("turn-server", first);
    }
    for uri in turn_uris {
        if !webrtc.emit_by_name::<bool>("add-turn-server", &[&uri]) {
            bail!("webrtcbin refused a TURN server");
        }
    }
    if settings.relay_only {
        webrtc.set_property_from_str("ice-transport-policy", "relay");
    }
    let ice = webrtc.property::<glib::Object>("ice-agent");
    disable_upnp(&ice);
    for address in &settings.ice_addresses {
        if !ice.emit_by_name::<bool>("add-local-ip-address", &[address]) {
            bail!("ICE agent refused local address {address}");
        }
    }
    Ok(webrtc)
}

/// The rtpbin inside a webrtcbin (1.22 names it "rtpbin").
pub fn rtpbin_of(webrtc: &gst::Element) -> Option<gst::Element> {
    webrtc.downcast_ref::<gst::Bin>()?.by_name("rtpbin")
}

/// Makes `webrtc` send each packet as soon as it is given one. webrtcbin
/// puts a `clocksync` (sync on) in front of every m-line it sends, which
/// waits on the clock for each packet's running time: right for a source
/// that makes media ahead of time, needless for forwarded packets, which
/// are sent as they arrive, and a wait on one holds up the publisher's
/// thread and every other subscriber it sends to. Call before any pad is
/// linked (webrtcbin adds a clocksync when one is).
pub fn send_without_clock_waits(webrtc: &gst::Element) {
    let Some(bin) = webrtc.downcast_ref::<gst::Bin>() else {
        return;
    };
    bin.connect_element_added(|_, element| {
        if element
            .factory()
            .is_some_and(|factory| factory.name() == "clocksync")
        {
            element.set_property("sync", false);
        }
    });
}

/// No UPnP port mapping: libnice asks the local network's router for one by
/// default, which a server (or a bot on loopback) has no use for, and every
/// agent at once binding the same UPnP HTTP port fills the log with
/// "Address already in use". The NiceAgent is webrtcbin's ICE object's
/// "agent" (1.22's GstWebRTCNice); another ICE implementation may have none.
fn disable_upnp(ice: &glib::Object) {
    if ice.find_property("agent").is_none() {
        return;
    }
    let agent = ice.property::<glib::Object>("agent");
    if agent.find_property("upnp").is_some() {
        agent.set_property("upnp", false);
    }
}

/// A promise given up on (its future dropped unfinished: the peer's step
/// was cancelled, or timed out) is interrupted first: freeing a promise
/// that is still pending is a GStreamer warning (`gst_promise_free: runtime
/// check failed`), seen when a participant left while its offer was being
/// applied. Interrupting one that was replied to does nothing.
struct InterruptOnDrop(gst::Promise);

impl Drop for InterruptOnDrop {
    fn drop(&mut self) {
        self.0.interrupt();
    }
}

/// Runs `start` with a fresh promise and awaits its reply; a reply carrying
/// an "error" field is returned as an error.
async fn await_promise(
    what: &str,
    start: impl FnOnce(&gst::Promise),
) -> Result<Option<gst::Structure>> {
    let (promise, future) = gst::Promise::new_future();
    let _interrupted_if_dropped = InterruptOnDrop(promise.clone());
    start(&promise);
    let reply = tokio::time::timeout(PROMISE_TIMEOUT, future)
        .await
        .map_err(|_| anyhow!("{what}: no reply from webrtcbin within {PROMISE_TIMEOUT:?}"))?
        .map_err(|e| anyhow!("{what}: promise {e:?}"))?;
    let Some(reply) = reply else { return Ok(None) };
    if let Ok(err) = reply.get::<glib::Error>("error") {
        bail!("{what}: {err}");
    }
    Ok(Some(reply.to_owned()))
}

pub fn parse_description(kind: WebRTCSDPType, sdp: &str) -> Result<WebRTCSessionDescription> {
    let message = gst_sdp::SDPMessage::parse_buffer(sdp.as_bytes())
        .map_err(|e| anyhow!("the SDP does not parse: {e}"))?;
    Ok(WebRTCSessionDescription::new(kind, message))
}

pub fn description_text(desc: &WebRTCSessionDescription) -> String {
    desc.sdp().to_string()
}

pub async fn set_remote_description(
    webrtc: &gst::Element,
    desc: &WebRTCSessionDescription,
) -> Result<()> {
    await_promise("set-remote-description", |p| {
        webrtc.emit_by_name::<()>("set-remote-description", &[desc, p]);
    })
    .await?;
    Ok(())
}

pub async fn set_local_description(
    webrtc: &gst::Element,
    desc: &WebRTCSessionDescription,
) -> Result<()> {
    await_promise("set-local-description", |p| {
        webrtc.emit_by_name::<()>("set-local-description", &[desc, p]);
    })
    .await?;
    Ok(())
}

/// An offer or answer from webrtcbin, with the fingerprint of
/// `certificate` (the one `make_webrtcbin` gave it) in place of the wrong
/// one 1.22 writes for a certificate of our own.
async fn create_description(
    webrtc: &gst::Element,
    kind: &str,
    certificate: Option<&DtlsCertificate>,
) -> Result<WebRTCSessionDescription> {
    let signal = format!("create-{kind}");
    let reply = await_promise(&signal, |p| {
        webrtc.emit_by_name::<()>(&signal, &[&None::<gst::Structure>, p]);
    })
    .await?
    .ok_or_else(|| anyhow!("{signal}: empty reply"))?;
    let made = reply
        .get::<WebRTCSessionDescription>(kind)
        .with_context(|| format!("{signal}: reply has no {kind}"))?;
    match certificate {
        None => Ok(made),
        Some(certificate) => parse_description(
            made.type_(),
            &certificate.fix_fingerprints(&description_text(&made)),
        ),
    }
}

pub async fn create_offer(
    webrtc: &gst::Element,
    settings: &WebrtcSettings,
) -> Result<WebRTCSessionDescription> {
    create_description(webrtc, "offer", settings.certificate.as_deref()).await
}

pub async fn create_answer(
    webrtc: &gst::Element,
    settings: &WebrtcSettings,
) -> Result<WebRTCSessionDescription> {
    create_description(webrtc, "answer", settings.certificate.as_deref()).await
}

/// Adds a remote candidate. An empty candidate (end of candidates) is a no-op:
/// webrtcbin 1.22 has no use for it.
pub fn add_ice_candidate(webrtc: &gst::Element, mline: u32, candidate: &str) {
    if !candidate.is_empty() {
        webrtc.emit_by_name::<()>("add-ice-candidate", &[&mline, &candidate]);
    }
}

/// Calls `on_candidate(mline, candidate)` for each local candidate, on a
/// GStreamer thread: the callback must only post it somewhere.
pub fn on_ice_candidate(
    webrtc: &gst::Element,
    on_candidate: impl Fn(u32, String) + Send + Sync + 'static,
) {
    webrtc.connect("on-ice-candidate", false, move |values| {
        let mline = values[1].get::<u32>().unwrap_or_default();
        let candidate = values[2].get::<String>().unwrap_or_default();
        on_candidate(mline, candidate);
        None
    });
}

/// The transceiver bound to a webrtcbin pad.
pub fn pad_transceiver(pad: &gst::Pad) -> Option<gst_webrtc::WebRTCRTPTransceiver> {
    pad.property::<Option<gst_webrtc::WebRTCRTPTransceiver>>("transceiver")
}

/// The "media" field ("audio"/"video") of an RTP pad's caps.
pub fn rtp_media_of(pad: &gst::Pad) -> Option<String> {
    let caps = pad.current_caps().or_else(|| Some(pad.query_caps(None)))?;
    caps.structure(0)?.get::<String>("media").ok()
}

/// Caps for an RTP stream of the codec gridmix speaks for `kind`: VP8 with
/// keyframe requests (PLI, FIR) negotiated, or stereo-signalled Opus (the
/// rtpmap browsers require is opus/48000/2).
/// `caps` with RTP header extension `uri` at `id`: as codec preferences,
/// what makes webrtcbin write the `a=extmap` (it copies none from an
/// offer), and what makes a payloader with `auto-header-extension` add it.
pub fn with_extension(mut caps: gst::Caps, id: u8, uri: &str) -> gst::Caps {
    if let Some(structure) = caps.make_mut().structure_mut(0) {
        structure.set(format!("extmap-{id}"), uri);
    }
    caps
}

pub fn rtp_caps(kind: MediaKind, payload: u8) -> gst::Caps {
    let builder = gst::Caps::builder("application/x-rtp").field("payload", i32::from(payload));
    match kind {
        MediaKind::Video => builder
            .field("media", "video")
            .field("encoding-name", "VP8")
            .field("clock-rate", 90000i32)
            .field("rtcp-fb-nack-pli", true)
            .field("rtcp-fb-ccm-fir", true),
        MediaKind::Audio | MediaKind::Other => builder
            .field("media", "audio")
            .field("encoding-name", "OPUS")
            .field("clock-rate", 48000i32)
            .field("encoding-params", "2"),
    }
    .build()
}
