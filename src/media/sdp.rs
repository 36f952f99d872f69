//! What an offer asks for, read from its SDP text. Pure: no GStreamer.
//!
//! The server needs a handful of facts from a client's offer before it builds
//! anything: which m-lines carry audio and video, in which direction, and the
//! payload type the client chose for each codec the server speaks (Chrome and
//! Firefox pick different ones).

use crate::protocol::{ErrorCode, ProtocolError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    Audio,
    Video,
    /// Data channels or anything else: answered as rejected/ignored.
    Other,
}

impl MediaKind {
    /// As an m-line names it: "audio", "video", or "other" for the rest.
    pub fn name(self) -> &'static str {
        match self {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
            MediaKind::Other => "other",
        }
    }
}

/// Direction as the client (the offerer) wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    /// Whether the client will send media on this m-line.
    pub fn client_sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }
    /// Whether the client wants to receive media on this m-line.
    pub fn client_receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaLine {
    pub index: u32,
    pub kind: MediaKind,
    pub mid: Option<String>,
    pub direction: Direction,
    /// The payload type the client chose for the codec gridmix uses on this
    /// kind (VP8 for video, Opus for audio), if it offered that codec.
    pub payload_type: Option<u8>,
    /// Port 0 means the m-line is rejected, but in an offer with
    /// a=bundle-only (carried on the BUNDLE transport).
    pub rejected: bool,
    /// The MediaStream id of the m-line's track: a=msid, else the msid of
    /// its a=ssrc lines.
    pub stream_id: Option<String>,
    /// The SSRCs its a=ssrc lines name, each once, in order.
    pub ssrcs: Vec<u32>,
    /// Its RTP header extensions (a=extmap): id and URI.
    pub extmaps: Vec<(u8, String)>,
}

/// The RTP header extension that carries an m-line's mid in each packet
/// (RFC 8843), so that a receiver can route bundled streams without SSRCs.
pub const MID_EXTENSION: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";

/// The RTP header extension in which a sender gives each audio packet's
/// level (RFC 6464), so a mixer can tell who speaks without decoding.
pub const AUDIO_LEVEL_EXTENSION: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";

impl MediaLine {
    /// The id this m-line gives the header extension `uri`.
    pub fn extmap_id(&self, uri: &str) -> Option<u8> {
        self.extmaps
            .iter()
            .find(|(_, u)| u == uri)
            .map(|(id, _)| *id)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferSummary {
    pub media: Vec<MediaLine>,
    /// The mids of each `a=group:BUNDLE` line, in order.
    pub bundles: Vec<Vec<String>>,
}

/// The most m-lines any description may have: a subscribe connection holds
/// a few per other participant, and nothing reads further than this into a
/// client's SDP.
pub const MAX_MLINES: usize = 256;
/// The longest SDP line accepted. The longest a browser writes (a
/// candidate, a fingerprint, an fmtp) are a few hundred bytes.
pub const MAX_LINE_BYTES: usize = 1024;

impl OfferSummary {
    /// The first usable m-line of a kind.
    pub fn first(&self, kind: MediaKind) -> Option<&MediaLine> {
        self.media.iter().find(|m| m.kind == kind && !m.rejected)
    }

    /// Checks the m-lines the server will use: there must be at least one,
    /// and each that is not inactive must offer the codec gridmix speaks.
    pub fn check_usable<'a>(
        &self,
        lines: impl IntoIterator<Item = &'a MediaLine>,
    ) -> Result<(), ProtocolError> {
        let mut any = false;
        for line in lines {
            any = true;
            if line.payload_type.is_none() && line.direction != Direction::Inactive {
                let codec = if line.kind == MediaKind::Audio {
                    "Opus"
                } else {
                    "VP8"
                };
                return Err(bad_sdp(format!(
                    "The offer's m-line {} does not offer {codec}, which this server needs.",
                    line.index
                )));
            }
        }
        if any {
            Ok(())
        } else {
            Err(bad_sdp("The offer has no usable audio or video m-line."))
        }
    }
}

/// A client's publish offer, read once and checked: what the room and the
/// media code decide on, and the text webrtcbin gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedOffer {
    pub text: String,
    pub summary: OfferSummary,
}

impl CheckedOffer {
    /// Reads a publish offer and checks it (see `OfferSummary::check_publish`).
    pub fn publish(text: String) -> Result<CheckedOffer, ProtocolError> {
        let summary = summarize_offer(&text)?;
        summary.check_publish()?;
        Ok(CheckedOffer { text, summary })
    }
}

impl OfferSummary {
    /// What a publish offer may hold: at most one audio and one video
    /// m-line that are not rejected (port 0), nothing else that is not,
    /// and every one of them in one BUNDLE group, so that one transport
    /// carries them all. Anything more would make webrtcbin open transports
    /// and threads the participant cannot use.
    pub fn check_publish(&self) -> Result<(), ProtocolError> {
        let used: Vec<&MediaLine> = self.media.iter().filter(|m| !m.rejected).collect();
        for kind in [MediaKind::Audio, MediaKind::Video] {
            let count = used.iter().filter(|m| m.kind == kind).count();
            if count > 1 {
                return Err(bad_sdp(format!(
                    "The offer has {count} {} m-lines; a participant publishes at most one.",
                    kind.name()
                )));
            }
        }
        if let Some(other) = used.iter().find(|m| m.kind == MediaKind::Other) {
            return Err(bad_sdp(format!(
                "The offer's m-line {} is neither audio nor video (data channels are not part of the protocol); offer it with port 0 or not at all.",
                other.index
            )));
        }
        self.check_bundled(&used)
    }

    /// What a subscribe answer may hold: exactly the m-lines offered, each
    /// in the BUNDLE group.
    pub fn check_answer_to(&self, offered_mlines: usize) -> Result<(), ProtocolError> {
        if self.media.len() != offered_mlines {
            return Err(bad_sdp(format!(
                "The answer has {} m-lines; the offer had {offered_mlines}.",
                self.media.len()
            )));
        }
        let used: Vec<&MediaLine> = self.media.iter().filter(|m| !m.rejected).collect();
        self.check_bundled(&used)
    }

    /// Two m-lines or more must all be in one BUNDLE group.
    fn check_bundled(&self, used: &[&MediaLine]) -> Result<(), ProtocolError> {
        if used.len() < 2 {
            return Ok(());
        }
        let [group] = self.bundles.as_slice() else {
            return Err(bad_sdp(format!(
                "The SDP has {} m-lines and {} BUNDLE groups; they must all be in one (a=group:BUNDLE).",
                used.len(),
                self.bundles.len()
            )));
        };
        for line in used {
            let bundled = line.mid.as_ref().is_some_and(|mid| group.contains(mid));
            if !bundled {
                return Err(bad_sdp(format!(
                    "The SDP's m-line {} is not in its BUNDLE group.",
                    line.index
                )));
            }
        }
        Ok(())
    }
}

fn bad_sdp(message: impl Into<String>) -> ProtocolError {
    ProtocolError::new(ErrorCode::BadSdp, message)
}

/// The codec gridmix speaks for a kind, as written in a=rtpmap.
fn wanted_codec(kind: MediaKind) -> Option<(&'static str, u32)> {
    match kind {
        MediaKind::Audio => Some(("opus", 48000)),
        MediaKind::Video => Some(("vp8", 90000)),
        MediaKind::Other => None,
    }
}

/// Reads an offer. Errors are `bad-sdp` with a sentence saying what is wrong.
pub fn summarize_offer(sdp: &str) -> Result<OfferSummary, ProtocolError> {
    summarize(sdp, Role::Offer)
}

/// Reads an answer: there, port 0 is a refused m-line even with
/// a=bundle-only (RFC 8843 has answers never carry it; webrtcbin 1.22
/// refuses an m-line by copying the offer's, bundle-only included).
pub fn summarize_answer(sdp: &str) -> Result<OfferSummary, ProtocolError> {
    summarize(sdp, Role::Answer)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Offer,
    Answer,
}

fn summarize(sdp: &str, role: Role) -> Result<OfferSummary, ProtocolError> {
    let mut lines = sdp.lines().map(str::trim_end).filter(|l| !l.is_empty());
    if lines.next() != Some("v=0") {
        return Err(bad_sdp("The SDP must start with \"v=0\"."));
    }
    let mut session_direction = Direction::SendRecv;
    let mut media: Vec<MediaLine> = Vec::new();
    let mut bundles: Vec<Vec<String>> = Vec::new();
    let mut payloads: Vec<u8> = Vec::new();
    // Whether the current section (session, then each m-line) has said its
    // direction already.
    let mut direction_said = false;
    for line in lines {
        if line.len() > MAX_LINE_BYTES {
            return Err(bad_sdp(format!(
                "The SDP line \"{}...\" is longer than {MAX_LINE_BYTES} bytes.",
                clip(line)
            )));
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(bad_sdp(format!(
                "The SDP line \"{}\" is not key=value.",
                clip(line)
            )));
        };
        if key.len() != 1 {
            return Err(bad_sdp(format!(
                "The SDP line \"{}\" has a bad key.",
                clip(line)
            )));
        }
        match key {
            "m" => {
                let fields: Vec<&str> = value.split_whitespace().collect();
                if fields.len() < 4 {
                    return Err(bad_sdp(format!(
                        "The m-line \"{}\" is incomplete.",
                        clip(line)
                    )));
                }
                let kind = match fields[0] {
                    "audio" => MediaKind::Audio,
                    "video" => MediaKind::Video,
                    _ => MediaKind::Other,
                };
                let port: u32 = fields[1]
                    .split('/')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .ok_or_else(|| {
                        bad_sdp(format!("The m-line \"{}\" has a bad port.", clip(line)))
                    })?;
                if media.len() == MAX_MLINES {
                    return Err(bad_sdp(format!(
                        "The SDP has more than {MAX_MLINES} m-lines."
                    )));
                }
                payloads = fields[3..].iter().filter_map(|p| p.parse().ok()).collect();
                direction_said = false;
                media.push(MediaLine {
                    index: media.len() as u32,
                    kind,
                    mid: None,
                    direction: session_direction,
                    payload_type: None,
                    rejected: port == 0,
                    stream_id: None,
                    ssrcs: Vec::new(),
                    extmaps: Vec::new(),
                });
            }
            "a" => {
                // An attribute's name runs to the first ':' or space; a
                // direction attribute has nothing after its name.
                let name_end = value.find([':', ' ']).unwrap_or(value.len());
                let (name, rest) = value.split_at(name_end);
                let direction = match name {
                    "sendrecv" => Some(Direction::SendRecv),
                    "sendonly" => Some(Direction::SendOnly),
                    "recvonly" => Some(Direction::RecvOnly),
                    "inactive" => Some(Direction::Inactive),
                    _ => None,
                };
                if let Some(d) = direction {
                    if !rest.is_empty() {
                        return Err(bad_sdp(format!(
                            "The direction attribute \"a={}\" takes no value.",
                            clip(value)
                        )));
                    }
                    if std::mem::replace(&mut direction_said, true) {
                        return Err(bad_sdp(format!(
                            "A section of the SDP gives two directions (the second is \"a={name}\")."
                        )));
                    }
                    match media.last_mut() {
                        None => session_direction = d,
                        Some(m) => m.direction = d,
                    }
                } else if let Some(group) = value.strip_prefix("group:BUNDLE") {
                    bundles.push(group.split_whitespace().map(str::to_owned).collect());
                } else if let Some(m) = media.last_mut() {
                    read_media_attribute(m, &payloads, value, role);
                }
            }
            _ => {}
        }
    }
    if media.is_empty() {
        return Err(bad_sdp(
            "The offer has no m-lines: it must offer audio and/or video.",
        ));
    }
    Ok(OfferSummary { media, bundles })
}

fn read_media_attribute(m: &mut MediaLine, payloads: &[u8], value: &str, role: Role) {
    if value == "bundle-only" {
        if role == Role::Offer {
            // Port 0 plus bundle-only: carried on the BUNDLE transport.
            m.rejected = false;
        }
    } else if let Some(mid) = value.strip_prefix("mid:") {
        m.mid = Some(mid.to_owned());
    } else if let Some(msid) = value.strip_prefix("msid:") {
        // a=msid:<stream> [<track>] wins over a=ssrc:<n> msid:<stream> <track>.
        m.stream_id = msid.split_whitespace().next().map(str::to_owned);
    } else if let Some(ssrc) = value.strip_prefix("ssrc:") {
        if let Some(n) = ssrc.split(' ').next().and_then(|n| n.parse().ok())
            && !m.ssrcs.contains(&n)
        {
            m.ssrcs.push(n);
        }
        if m.stream_id.is_none()
            && let Some((_, msid)) = ssrc.split_once(" msid:")
        {
            m.stream_id = msid.split_whitespace().next().map(str::to_owned);
        }
    } else if let Some(extmap) = value.strip_prefix("extmap:") {
        // a=extmap:<id>[/<direction>] <uri> [<attributes>]
        let mut fields = extmap.split_whitespace();
        let id = fields
            .next()
            .and_then(|id| id.split('/').next())
            .and_then(|id| id.parse().ok());
        if let (Some(id), Some(uri)) = (id, fields.next()) {
            m.extmaps.push((id, uri.to_owned()));
        }
    } else if let Some(rtpmap) = value.strip_prefix("rtpmap:") {
        // a=rtpmap:<pt> <name>/<clock>[/<channels>]
        let Some((pt, encoding)) = rtpmap.split_once(' ') else {
            return;
        };
        let Ok(pt) = pt.parse::<u8>() else { return };
        let mut parts = encoding.split('/');
        let name = parts.next().unwrap_or_default().to_ascii_lowercase();
        let clock: Option<u32> = parts.next().and_then(|c| c.parse().ok());
        let wanted = wanted_codec(m.kind).is_some_and(|(n, c)| name == n && clock == Some(c));
        if wanted && m.payload_type.is_none() && payloads.contains(&pt) {
            m.payload_type = Some(pt);
        }
    }
}

/// Who a sent m-line's track belongs to, as the receiver should see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackLabel {
    /// The m-line's index in the SDP.
    pub mline: u32,
    /// MediaStream id: the publishing participant's id.
    pub stream: String,
    /// MediaStreamTrack id.
    pub track: String,
    /// The SSRC the track's RTP carries, when known: lets a receiver demux
    /// bundled m-lines that share a payload type.
    pub ssrc: Option<u32>,
}

/// Rewrites the msid and ssrc attributes of each labelled m-line: its old
/// `a=msid` and `a=ssrc` lines go, `a=msid:<stream> <track>` and (with a
/// known SSRC) `a=ssrc:<n> cname:` / `a=ssrc:<n> msid:` lines are added at
/// the end of the m-section. Works on the text because webrtcbin 1.22 writes
/// these only once RTP has flowed through a pad, and with its own ids.
pub fn label_tracks(sdp: &str, labels: &[TrackLabel]) -> String {
    let mut out = String::with_capacity(sdp.len() + labels.len() * 120);
    let mut mline: Option<u32> = None;
    let label_of = |mline: Option<u32>| mline.and_then(|i| labels.iter().find(|l| l.mline == i));
    let finish_section = |out: &mut String, label: Option<&TrackLabel>| {
        let Some(l) = label else { return };
        out.push_str(&format!("a=msid:{} {}\r\n", l.stream, l.track));
        if let Some(ssrc) = l.ssrc {
            out.push_str(&format!("a=ssrc:{ssrc} cname:{}\r\n", l.stream));
            out.push_str(&format!("a=ssrc:{ssrc} msid:{} {}\r\n", l.stream, l.track));
        }
    };
    for line in sdp.lines() {
        let line = line.trim_end_matches('\r');
        if line.starts_with("m=") {
            finish_section(&mut out, label_of(mline));
            mline = Some(mline.map_or(0, |i| i + 1));
        }
        let labelled = label_of(mline).is_some();
        let replaced = ["a=msid:", "a=ssrc:", "a=ssrc-group:"]
            .iter()
            .any(|p| line.starts_with(p));
        if labelled && replaced {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    finish_section(&mut out, label_of(mline));
    out
}

/// Renumbers payload types in an SDP: in m-line format lists and in
/// a=rtpmap, a=fmtp and a=rtcp-fb lines. `map` is (from, to).
pub fn renumber_payload_types(sdp: &str, map: &[(u8, u8)]) -> String {
    let renumber = |pt: &str| {
        pt.parse::<u8>()
            .ok()
            .and_then(|p| map.iter().find(|(from, _)| *from == p))
            .map_or_else(|| pt.to_owned(), |(_, to)| to.to_string())
    };
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(rest) = line.strip_prefix("m=") {
            let fields: Vec<String> = rest
                .split(' ')
                .enumerate()
                .map(|(i, f)| if i >= 3 { renumber(f) } else { f.to_owned() })
                .collect();
            out.push_str(&format!("m={}", fields.join(" ")));
        } else if let Some((attr, rest)) = ["a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"]
            .iter()
            .find_map(|a| line.strip_prefix(a).map(|rest| (*a, rest)))
        {
            let (pt, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            out.push_str(format!("{attr}{} {tail}", renumber(pt)).trim_end());
        } else {
            out.push_str(line);
        }
        out.push_str("\r\n");
    }
    out
}

/// Adds to each m-section of an answer the header extension `uri` with
/// the id the offer gave it there, where the offer had it and the answer
/// did not refuse the m-line. webrtcbin 1.22 answers without any
/// a=extmap; a client that supports an extension writes it back like this.
pub fn accept_extension(answer: &str, offer: &OfferSummary, uri: &str) -> String {
    let mut out = String::with_capacity(answer.len() + offer.media.len() * 60);
    let mut index: Option<usize> = None;
    for line in answer.lines() {
        let line = line.trim_end_matches('\r');
        if line.starts_with("m=") {
            index = Some(index.map_or(0, |i| i + 1));
        }
        out.push_str(line);
        out.push_str("\r\n");
        if line.starts_with("a=mid:")
            && let Some(id) = index
                .and_then(|i| offer.media.get(i))
                .filter(|m| !m.rejected)
                .and_then(|m| m.extmap_id(uri))
        {
            out.push_str(&format!("a=extmap:{id} {uri}\r\n"));
        }
    }
    out
}

/// Refuses one m-line of an answer: port 0, and its mid out of the BUNDLE
/// group, as an answerer that does not take it writes.
pub fn refuse_mline(answer: &str, index: u32) -> String {
    let summary = summarize_offer(answer).ok();
    let mid = summary
        .as_ref()
        .and_then(|s| s.media.get(index as usize))
        .and_then(|m| m.mid.clone());
    let mut out = String::with_capacity(answer.len());
    let mut current: Option<u32> = None;
    for line in answer.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(rest) = line.strip_prefix("m=") {
            current = Some(current.map_or(0, |i| i + 1));
            if current == Some(index) {
                let mut fields: Vec<&str> = rest.split(' ').collect();
                if fields.len() > 1 {
                    fields[1] = "0";
                }
                out.push_str(&format!("m={}\r\n", fields.join(" ")));
                continue;
            }
        }
        if let (Some(group), Some(mid)) = (line.strip_prefix("a=group:BUNDLE"), &mid) {
            let kept: Vec<&str> = group.split_whitespace().filter(|m| m != mid).collect();
            out.push_str(&format!("a=group:BUNDLE {}\r\n", kept.join(" ")));
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out
}

fn clip(s: &str) -> String {
    s.chars().take(60).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn track_labels_replace_msid_and_ssrc_per_mline_and_read_back() {
        let offer = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:video0\r\na=sendonly\r\na=rtpmap:96 VP8/90000\r\n\
a=ssrc:1 msid:old track\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:audio1\r\na=sendonly\r\na=msid:stale x\r\n\
a=rtpmap:111 OPUS/48000/2\r\n\
m=audio 0 UDP/TLS/RTP/SAVPF 111\r\na=mid:audio2\r\na=inactive\r\na=rtpmap:111 OPUS/48000/2\r\n\
a=ssrc:7 cname:keep\r\n";
        let before = summarize_offer(offer).unwrap();
        assert_eq!(before.media[0].stream_id.as_deref(), Some("old"));
        assert_eq!(before.media[1].stream_id.as_deref(), Some("stale"));
        let labels = vec![
            TrackLabel {
                mline: 0,
                stream: "p1".into(),
                track: "p1-video".into(),
                ssrc: Some(42),
            },
            TrackLabel {
                mline: 1,
                stream: "p2".into(),
                track: "p2-audio".into(),
                ssrc: None,
            },
        ];
        let labelled = label_tracks(offer, &labels);
        let after = summarize_offer(&labelled).unwrap();
        let ids: Vec<Option<&str>> = after.media.iter().map(|m| m.stream_id.as_deref()).collect();
        assert_eq!(ids, [Some("p1"), Some("p2"), None]);
        assert!(labelled.contains(
            "a=msid:p1 p1-video\r\na=ssrc:42 cname:p1\r\na=ssrc:42 msid:p1 p1-video\r\nm=audio"
        ));
        assert!(!labelled.contains("a=ssrc:1 "));
        assert!(!labelled.contains("stale"));
        // An unlabelled m-line keeps what it had.
        assert!(labelled.ends_with("a=ssrc:7 cname:keep\r\n"));
    }

    #[test]
    fn payload_types_are_renumbered_everywhere_they_appear() {
        let answer = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96 97\r\na=rtpmap:96 VP8/90000\r\n\
a=rtcp-fb:96 nack pli\r\na=fmtp:97 apt=96\r\na=rtpmap:97 rtx/90000\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 OPUS/48000/2\r\na=ssrc:96 cname:x\r\n";
        let renumbered = renumber_payload_types(answer, &[(96, 100), (111, 109)]);
        assert_eq!(
            renumbered,
            "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 100 97\r\na=rtpmap:100 VP8/90000\r\n\
a=rtcp-fb:100 nack pli\r\na=fmtp:97 apt=96\r\na=rtpmap:97 rtx/90000\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 109\r\na=rtpmap:109 OPUS/48000/2\r\na=ssrc:96 cname:x\r\n"
        );
        let summary = summarize_offer(&renumbered).unwrap();
        assert_eq!(summary.media[0].payload_type, Some(100));
        assert_eq!(summary.media[1].payload_type, Some(109));
    }

    #[test]
    fn ssrcs_and_header_extensions_are_read_per_mline() {
        let sdp = "v=0\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:video0\r\na=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
a=extmap:3/sendonly http://example.org/x attr\r\na=ssrc:11 cname:a\r\na=ssrc:11 msid:p p-video\r\n\
a=ssrc:12 cname:a\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:audio1\r\na=extmap:x bad\r\n";
        let summary = summarize_offer(sdp).unwrap();
        let video = &summary.media[0];
        assert_eq!(video.ssrcs, [11, 12]);
        assert_eq!(video.extmap_id(MID_EXTENSION), Some(1));
        assert_eq!(video.extmap_id("http://example.org/x"), Some(3));
        assert!(summary.media[1].ssrcs.is_empty());
        assert_eq!(summary.media[1].extmap_id(MID_EXTENSION), None);
        assert!(summary.media[1].extmaps.is_empty());
    }

    #[test]
    fn an_accepted_extension_gets_the_offers_id_on_each_mline_that_had_it() {
        let offer = summarize_offer(
            "v=0\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\n\
m=audio 0 UDP/TLS/RTP/SAVPF 111\r\na=mid:2\r\na=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n",
        )
        .unwrap();
        let answer = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=recvonly\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\nm=audio 0 UDP/TLS/RTP/SAVPF 111\r\na=mid:2\r\n";
        let accepted = accept_extension(answer, &offer, MID_EXTENSION);
        let read = summarize_offer(&accepted).unwrap();
        let ids: Vec<Option<u8>> = read
            .media
            .iter()
            .map(|m| m.extmap_id(MID_EXTENSION))
            .collect();
        assert_eq!(ids, [Some(4), None, None]);
        assert!(
            accepted
                .starts_with("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=extmap:4 urn:")
        );
    }

    #[test]
    fn a_refused_mline_gets_port_0_and_leaves_the_bundle() {
        let answer = "v=0\r\na=group:BUNDLE audio0 video1 video2\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:audio0\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:video1\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:video2\r\n";
        let refused = summarize_offer(&refuse_mline(answer, 1)).unwrap();
        let rejected: Vec<bool> = refused.media.iter().map(|m| m.rejected).collect();
        assert_eq!(rejected, [false, true, false]);
        assert_eq!(
            refused.bundles,
            [vec!["audio0".to_owned(), "video2".to_owned()]]
        );
        assert!(refused.check_answer_to(3).is_ok());
    }

    const CHROME_LIKE: &str = "v=0\r\n\
o=- 1 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0 1\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9\r\n\
c=IN IP4 0.0.0.0\r\n\
a=mid:0\r\n\
a=sendrecv\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=rtpmap:63 red/48000/2\r\n\
a=rtpmap:9 G722/8000\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 97 98\r\n\
c=IN IP4 0.0.0.0\r\n\
a=mid:1\r\n\
a=recvonly\r\n\
a=rtpmap:96 VP8/90000\r\n\
a=rtpmap:97 rtx/90000\r\n\
a=rtpmap:98 VP9/90000\r\n";

    #[test]
    fn reads_kinds_mids_directions_and_payload_types() {
        let s = summarize_offer(CHROME_LIKE).unwrap();
        assert_eq!(s.media.len(), 2);
        let audio = s.first(MediaKind::Audio).unwrap();
        assert_eq!((audio.index, audio.mid.as_deref()), (0, Some("0")));
        assert_eq!(audio.direction, Direction::SendRecv);
        assert_eq!(audio.payload_type, Some(111));
        let video = s.first(MediaKind::Video).unwrap();
        assert_eq!((video.index, video.mid.as_deref()), (1, Some("1")));
        assert_eq!(video.direction, Direction::RecvOnly);
        assert!(!video.direction.client_sends());
        assert_eq!(video.payload_type, Some(96));
    }

    #[test]
    fn firefox_payload_types_are_taken_as_offered() {
        let sdp = CHROME_LIKE.replace("111", "109").replace("96", "120");
        let s = summarize_offer(&sdp).unwrap();
        assert_eq!(s.first(MediaKind::Audio).unwrap().payload_type, Some(109));
        assert_eq!(s.first(MediaKind::Video).unwrap().payload_type, Some(120));
    }

    #[test]
    fn a_codec_listed_in_rtpmap_but_not_on_the_m_line_is_ignored() {
        let sdp = CHROME_LIKE.replace("SAVPF 96 97 98", "SAVPF 98");
        let s = summarize_offer(&sdp).unwrap();
        assert_eq!(s.first(MediaKind::Video).unwrap().payload_type, None);
    }

    #[test]
    fn session_level_direction_applies_to_later_m_lines() {
        let sdp = "v=0\na=sendonly\nm=audio 9 RTP/AVP 111\na=rtpmap:111 OPUS/48000/2\n";
        let s = summarize_offer(sdp).unwrap();
        assert_eq!(s.media[0].direction, Direction::SendOnly);
    }

    #[test]
    fn rejected_m_lines_are_skipped_by_first() {
        let sdp = "v=0\nm=video 0 RTP/AVP 96\nm=video 9 RTP/AVP 96\na=rtpmap:96 VP8/90000\n";
        let s = summarize_offer(sdp).unwrap();
        assert_eq!(s.first(MediaKind::Video).unwrap().index, 1);
    }

    #[test]
    fn bundle_only_m_lines_with_port_zero_are_not_rejected() {
        let sdp = "v=0\nm=video 9 RTP/AVP 96\na=rtpmap:96 VP8/90000\n\
                   m=audio 0 RTP/AVP 111\na=bundle-only\na=rtpmap:111 OPUS/48000/2\n";
        let s = summarize_offer(sdp).unwrap();
        assert!(!s.media[1].rejected);
        assert_eq!(s.first(MediaKind::Audio).unwrap().payload_type, Some(111));
    }

    /// webrtcbin 1.22 refuses an m-line it cannot answer by copying the
    /// offer's with port 0, a=bundle-only and all, and leaves its mid out of
    /// the BUNDLE group: a refusal, which must not fail the answer.
    #[test]
    fn in_an_answer_port_zero_is_a_refusal_even_with_bundle_only() {
        let sdp = "v=0\na=group:BUNDLE video0\nm=video 9 RTP/AVP 96\na=mid:video0\n\
                   a=rtpmap:96 VP8/90000\nm=audio 0 RTP/AVP 111\na=mid:audio1\n\
                   a=bundle-only\na=rtpmap:111 OPUS/48000/2\n";
        let answer = summarize_answer(sdp).unwrap();
        assert!(answer.media[1].rejected);
        answer.check_answer_to(2).unwrap();
        let as_offer = summarize_offer(sdp).unwrap();
        assert!(as_offer.check_answer_to(2).is_err());
    }

    /// A publish offer of `lines` (kind, mid) m-lines, bundled as `bundle`.
    fn offer_of(lines: &[(&str, &str)], bundle: Option<&str>) -> String {
        let mut sdp = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n".to_owned();
        if let Some(bundle) = bundle {
            sdp += &format!("a=group:BUNDLE {bundle}\r\n");
        }
        for (kind, mid) in lines {
            let (pt, codec) = if *kind == "audio" {
                (111, "opus/48000/2")
            } else {
                (96, "VP8/90000")
            };
            sdp += &format!(
                "m={kind} 9 UDP/TLS/RTP/SAVPF {pt}\r\na=mid:{mid}\r\na=rtpmap:{pt} {codec}\r\na=sendrecv\r\n"
            );
        }
        sdp
    }

    fn publish_check(sdp: &str) -> Result<(), ProtocolError> {
        summarize_offer(sdp)?.check_publish()
    }

    #[test]
    fn a_browser_publish_offer_passes() {
        assert_eq!(publish_check(CHROME_LIKE), Ok(()));
        assert_eq!(publish_check(&offer_of(&[("video", "v")], None)), Ok(()));
    }

    #[test]
    fn more_m_lines_than_a_participant_publishes_are_refused() {
        let two_videos = offer_of(
            &[("audio", "0"), ("video", "1"), ("video", "2")],
            Some("0 1 2"),
        );
        let e = publish_check(&two_videos).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadSdp);
        assert!(e.message.contains("2 video m-lines"), "{}", e.message);
        let data = CHROME_LIKE.to_owned()
            + "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:2\r\n";
        assert!(
            publish_check(&data)
                .unwrap_err()
                .message
                .contains("data channels")
        );
        // Rejected (port 0) m-lines cost nothing and are allowed.
        let rejected = CHROME_LIKE.to_owned() + "m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\n";
        assert_eq!(publish_check(&rejected), Ok(()));
    }

    #[test]
    fn the_sdp_bomb_is_refused_whole() {
        // Two hundred m-lines, none bundled: one transport (and its threads)
        // each in webrtcbin.
        let mut bomb = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n".to_owned();
        for i in 0..200 {
            bomb += &format!(
                "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:{i}\r\na=rtpmap:111 opus/48000/2\r\n"
            );
        }
        assert_eq!(publish_check(&bomb).unwrap_err().code, ErrorCode::BadSdp);
        let mut huge = bomb.clone();
        for i in 200..300 {
            huge += &format!("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:{i}\r\n");
        }
        assert!(summarize_offer(&huge).unwrap_err().message.contains("256"));
    }

    #[test]
    fn m_lines_must_share_one_bundle_group() {
        let pair = [("audio", "a"), ("video", "v")];
        assert_eq!(publish_check(&offer_of(&pair, Some("a v"))), Ok(()));
        for bundle in [None, Some("a"), Some("v x")] {
            let e = publish_check(&offer_of(&pair, bundle)).unwrap_err();
            assert_eq!(e.code, ErrorCode::BadSdp, "{bundle:?}");
        }
        let two_groups = offer_of(&pair, Some("a")).replace(
            "a=group:BUNDLE a\r\n",
            "a=group:BUNDLE a\r\na=group:BUNDLE v\r\n",
        );
        assert!(
            publish_check(&two_groups)
                .unwrap_err()
                .message
                .contains("2 BUNDLE groups")
        );
    }

    #[test]
    fn direction_attributes_are_read_by_name_and_must_be_bare() {
        // "a=sendonly:x" once passed as no direction at all (so sendrecv).
        for bad in ["a=sendonly:x", "a=recvonly extra", "a=inactive:"] {
            let sdp = CHROME_LIKE.replace("a=recvonly", bad);
            let e = summarize_offer(&sdp).unwrap_err();
            assert_eq!(e.code, ErrorCode::BadSdp, "{bad}");
            assert!(e.message.contains("takes no value"), "{}", e.message);
        }
        let twice = CHROME_LIKE.replace("a=recvonly", "a=recvonly\r\na=sendrecv");
        assert!(
            summarize_offer(&twice)
                .unwrap_err()
                .message
                .contains("two directions")
        );
        // Attributes that only start like a direction are other attributes.
        let other = CHROME_LIKE.replace("a=recvonly", "a=recvonly\r\na=sendrecvx");
        assert_eq!(
            summarize_offer(&other).unwrap().media[1].direction,
            Direction::RecvOnly
        );
    }

    #[test]
    fn overlong_lines_are_refused() {
        let long = CHROME_LIKE.replace(
            "a=mid:0",
            &format!("a=mid:0\r\na=x-note:{}", "n".repeat(1100)),
        );
        assert!(summarize_offer(&long).unwrap_err().message.contains("1024"));
    }

    #[test]
    fn an_answer_has_exactly_the_offered_m_lines() {
        let answer = offer_of(&[("audio", "0"), ("video", "1")], Some("0 1"));
        let summary = summarize_offer(&answer).unwrap();
        assert_eq!(summary.check_answer_to(2), Ok(()));
        assert!(
            summary
                .check_answer_to(3)
                .unwrap_err()
                .message
                .contains("the offer had 3")
        );
    }

    #[test]
    fn garbage_and_empty_offers_are_bad_sdp() {
        for sdp in [
            "",
            "hello",
            "v=0\r\n",
            "v=0\nm=audio\n",
            "v=0\nxx=1\nm=audio 9 RTP/AVP 0\n",
            "v=0\nm=audio x RTP/AVP 0\n",
        ] {
            let err = summarize_offer(sdp).unwrap_err();
            assert_eq!(err.code, ErrorCode::BadSdp, "{sdp:?}");
        }
    }
}
