//! RTP header reads and edits: an SFU rewrites payload types of forwarded
//! packets and gives them the subscriber's header extensions; the bench
//! fans one encoding out under several SSRCs and counts frames by marker
//! bit; the bot reads what arrived. Pure: no GStreamer.

/// The payload type of an RTP packet (version 2, at least the fixed
/// 12-byte header), or None for anything else.
pub fn payload_type(packet: &[u8]) -> Option<u8> {
    (packet.len() >= 12 && packet[0] >> 6 == 2).then(|| packet[1] & 0x7f)
}

/// Sets an RTP packet's payload type, keeping its marker bit. Returns false
/// (and leaves the bytes alone) for anything that is not an RTP packet.
pub fn set_payload_type(packet: &mut [u8], pt: u8) -> bool {
    if payload_type(packet).is_none() || pt > 0x7f {
        return false;
    }
    packet[1] = (packet[1] & 0x80) | pt;
    true
}

/// Whether the packet has the marker bit set (for video: the last packet of
/// a frame).
pub fn marker(packet: &[u8]) -> bool {
    payload_type(packet).is_some() && packet[1] & 0x80 != 0
}

/// Sets an RTP packet's SSRC. Returns false for anything that is not RTP.
pub fn set_ssrc(packet: &mut [u8], ssrc: u32) -> bool {
    if payload_type(packet).is_none() {
        return false;
    }
    packet[8..12].copy_from_slice(&ssrc.to_be_bytes());
    true
}

/// An RTP packet's SSRC.
pub fn ssrc(packet: &[u8]) -> Option<u32> {
    payload_type(packet)?;
    Some(u32::from_be_bytes(packet[8..12].try_into().ok()?))
}

/// Where the header extension block starts: after the fixed header and
/// the CSRCs.
fn extension_start(packet: &[u8]) -> Option<usize> {
    payload_type(packet)?;
    let start = 12 + 4 * usize::from(packet[0] & 0x0f);
    (start <= packet.len()).then_some(start)
}

/// The header extension block (RFC 3550 5.3.1): its profile word and its
/// data, and where the payload starts.
fn extension_block(packet: &[u8]) -> Option<(u16, &[u8], usize)> {
    let start = extension_start(packet)?;
    if packet[0] & 0x10 == 0 {
        return None;
    }
    let header = packet.get(start..start + 4)?;
    let profile = u16::from_be_bytes([header[0], header[1]]);
    let words = usize::from(u16::from_be_bytes([header[2], header[3]]));
    let end = start + 4 + 4 * words;
    Some((profile, packet.get(start + 4..end)?, end))
}

/// The value of header extension `id` (RFC 8285, one-byte or two-byte
/// form), if the packet carries it.
pub fn header_extension(packet: &[u8], id: u8) -> Option<&[u8]> {
    let (profile, data, _) = extension_block(packet)?;
    let two_byte = match profile {
        0xBEDE => false,
        p if p & 0xfff0 == 0x1000 => true,
        _ => return None,
    };
    let mut at = 0;
    while at < data.len() {
        if data[at] == 0 {
            at += 1; // padding
            continue;
        }
        let (element, len, value_at) = if two_byte {
            (data[at], usize::from(*data.get(at + 1)?), at + 2)
        } else {
            let (element, len) = (data[at] >> 4, usize::from(data[at] & 0x0f) + 1);
            if element == 15 {
                return None; // reserved: stop reading
            }
            (element, len, at + 1)
        };
        let value = data.get(value_at..value_at + len)?;
        if element == id {
            return Some(value);
        }
        at = value_at + len;
    }
    None
}

/// The packet with its header extensions replaced by one: `id` (1-14)
/// carrying `value` (1-16 bytes), in the one-byte form. The sender's own
/// extensions are dropped: their ids were negotiated with the sender, not
/// with whoever receives this copy. None if the packet is not RTP or the
/// extension does not fit the form.
pub fn with_only_extension(packet: &[u8], id: u8, value: &[u8]) -> Option<Vec<u8>> {
    if !(1..=14).contains(&id) || !(1..=16).contains(&value.len()) {
        return None;
    }
    let start = extension_start(packet)?;
    let payload_at = if packet[0] & 0x10 != 0 {
        extension_block(packet)?.2
    } else {
        start
    };
    let element = 1 + value.len();
    let words = element.div_ceil(4);
    let mut out = Vec::with_capacity(packet.len() + 4 + 4 * words);
    out.extend_from_slice(&packet[..start]);
    out[0] |= 0x10;
    out.extend_from_slice(&[0xBE, 0xDE, 0, words as u8]);
    out.push((id << 4) | (value.len() as u8 - 1));
    out.extend_from_slice(value);
    out.resize(start + 4 + 4 * words, 0);
    out.extend_from_slice(&packet[payload_at..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(marker: bool, pt: u8) -> Vec<u8> {
        let mut p = vec![0x80, (u8::from(marker) << 7) | pt, 0, 1];
        p.extend_from_slice(&[0; 8]);
        p.extend_from_slice(b"payload");
        p
    }

    #[test]
    fn rewrites_the_payload_type_and_keeps_the_marker_bit() {
        for marker in [false, true] {
            let mut p = packet(marker, 96);
            assert!(set_payload_type(&mut p, 100));
            assert_eq!(payload_type(&p), Some(100));
            assert_eq!(p[1] >> 7, u8::from(marker));
            assert_eq!(&p[12..], b"payload");
        }
    }

    #[test]
    fn reads_the_marker_and_rewrites_the_ssrc() {
        let mut p = packet(true, 96);
        assert!(marker(&p));
        assert!(!marker(&packet(false, 96)));
        assert!(set_ssrc(&mut p, 0xdead_beef));
        assert_eq!(&p[8..12], &[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(payload_type(&p), Some(96));
        assert!(!set_ssrc(&mut [0u8; 4], 1));
    }

    #[test]
    fn leaves_what_is_not_rtp_alone() {
        let mut short = vec![0x80, 96, 0];
        assert!(!set_payload_type(&mut short, 100));
        assert_eq!(short, [0x80, 96, 0]);
        let mut version1 = packet(false, 96);
        version1[0] = 0x40;
        assert!(!set_payload_type(&mut version1, 100));
        assert_eq!(payload_type(&version1), None);
        let mut p = packet(false, 96);
        assert!(!set_payload_type(&mut p, 200));
    }

    #[test]
    fn an_extension_is_written_in_place_of_the_senders_and_read_back() {
        let plain = packet(true, 96);
        let with = with_only_extension(&plain, 3, b"video2").unwrap();
        assert_eq!(header_extension(&with, 3), Some(&b"video2"[..]));
        assert_eq!(header_extension(&with, 4), None);
        assert_eq!(&with[..2], &[0x90, plain[1]]);
        assert!(with.ends_with(b"payload"));
        assert_eq!((with.len() - plain.len()) % 4, 0);
        assert_eq!(ssrc(&with), ssrc(&plain));

        // The sender's extensions (here two-byte, with a CSRC before
        // them) are gone; the CSRC and the payload stay.
        let mut theirs = vec![0x91, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 7];
        theirs.extend_from_slice(&[0x10, 0x00, 0, 1, 3, 2, 0xaa, 0xbb]);
        theirs.extend_from_slice(b"payload");
        assert_eq!(header_extension(&theirs, 3), Some(&[0xaa, 0xbb][..]));
        let ours = with_only_extension(&theirs, 1, b"0").unwrap();
        assert_eq!(header_extension(&ours, 1), Some(&b"0"[..]));
        assert_eq!(header_extension(&ours, 3), None);
        assert_eq!(&ours[12..16], &[0, 0, 0, 7]);
        assert!(ours.ends_with(b"payload"));
        assert_eq!(ours[0] & 0x0f, 1);
    }

    #[test]
    fn extensions_that_do_not_fit_or_broken_blocks_are_refused() {
        let plain = packet(false, 96);
        assert_eq!(with_only_extension(&plain, 0, b"x"), None);
        assert_eq!(with_only_extension(&plain, 15, b"x"), None);
        assert_eq!(with_only_extension(&plain, 1, &[b'x'; 17]), None);
        assert_eq!(with_only_extension(&[0u8; 4], 1, b"x"), None);
        // An extension block claiming more words than the packet has.
        let mut short = plain.clone();
        short[0] |= 0x10;
        short.truncate(12);
        short.extend_from_slice(&[0xBE, 0xDE, 0, 9, 0x10, 1]);
        assert_eq!(header_extension(&short, 1), None);
        assert_eq!(with_only_extension(&short, 1, b"x"), None);
        assert_eq!(header_extension(&plain, 1), None);
    }
}
