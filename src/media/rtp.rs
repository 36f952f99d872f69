//! RTP header reads and edits: an SFU rewrites payload types of forwarded
//! packets; the bench fans one encoding out under several SSRCs and counts
//! frames by marker bit. Pure: no GStreamer.

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
}
