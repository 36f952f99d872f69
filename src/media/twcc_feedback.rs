//! Transport-wide congestion control feedback (RTCP RTPFB, FMT 15;
//! draft-holmer-rmcat-transport-wide-cc-extensions-01): which of the
//! packets the server sent on a transport arrived. A receiver that sends it
//! says about every packet, audio and video alike, what a receiver report
//! only sums up once in a while. Browsers send it; so does webrtcbin, and a
//! webrtcbin receiver under heavy loss sends little else: rtpsession 1.22
//! sends its feedback as early RTCP without report blocks, and while early
//! feedback is pending its regular reports wait, so its receiver reports
//! stop just when they are needed. Pure: no GStreamer.

use crate::media::receiver_reports::compound_packets;

const TRANSPORT_FEEDBACK: u8 = 205;
const TRANSPORT_WIDE_CC: u8 = 15;

/// How many of the packets one feedback packet covers arrived.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Arrivals {
    pub received: u32,
    pub lost: u32,
}

impl std::ops::AddAssign for Arrivals {
    fn add_assign(&mut self, other: Arrivals) {
        // Running totals, read as differences: wrapping is harmless.
        self.received = self.received.wrapping_add(other.received);
        self.lost = self.lost.wrapping_add(other.lost);
    }
}

/// The arrivals every transport-wide feedback packet in a compound RTCP
/// packet reports, summed. Only the packet status chunks are read: which
/// packets arrived, not when.
pub fn arrivals(packet: &[u8]) -> Arrivals {
    let mut total = Arrivals::default();
    for (format, kind, packet) in compound_packets(packet) {
        if kind == TRANSPORT_FEEDBACK && format == TRANSPORT_WIDE_CC {
            total += feedback_arrivals(packet);
        }
    }
    total
}

/// One feedback packet: header (4), sender and media SSRC (8), base
/// sequence number (2), packet status count (2), reference time and
/// feedback count (4), then the chunks.
fn feedback_arrivals(packet: &[u8]) -> Arrivals {
    let mut arrivals = Arrivals::default();
    let Some(count) = packet.get(14..16) else {
        return arrivals;
    };
    let mut left = u32::from(u16::from_be_bytes([count[0], count[1]]));
    let mut note = |received: bool, run: u32| {
        if received {
            arrivals.received += run;
        } else {
            arrivals.lost += run;
        }
    };
    for chunk in packet[20.min(packet.len())..].chunks_exact(2) {
        if left == 0 {
            break;
        }
        let chunk = u16::from_be_bytes([chunk[0], chunk[1]]);
        if chunk & 0x8000 == 0 {
            // Run length: one 2-bit symbol (0: not received) for a run.
            let run = u32::from(chunk & 0x1fff).min(left);
            note(chunk >> 13 & 0b11 != 0, run);
            left -= run;
        } else {
            // Status vector: 14 one-bit or 7 two-bit symbols.
            let (symbols, bits) = if chunk & 0x4000 == 0 { (14, 1) } else { (7, 2) };
            for index in 0..symbols.min(left) {
                let shift = (symbols - 1 - index) * bits;
                note((chunk >> shift) & ((1 << bits) - 1) != 0, 1);
            }
            left -= symbols.min(left);
        }
    }
    arrivals
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A feedback packet about `status_count` packets with these chunks.
    fn feedback(status_count: u16, chunks: &[u16]) -> Vec<u8> {
        let mut body = vec![0u8; 8];
        body.extend_from_slice(&100u16.to_be_bytes());
        body.extend_from_slice(&status_count.to_be_bytes());
        body.extend_from_slice(&[0, 0, 1, 7]);
        for chunk in chunks {
            body.extend_from_slice(&chunk.to_be_bytes());
        }
        while !body.len().is_multiple_of(4) {
            body.push(0);
        }
        let words = (body.len() + 4) / 4 - 1;
        let mut packet = vec![0x80 | TRANSPORT_WIDE_CC, TRANSPORT_FEEDBACK];
        packet.extend_from_slice(&(words as u16).to_be_bytes());
        packet.extend_from_slice(&body);
        packet
    }

    #[test]
    fn run_length_chunks_count_their_runs() {
        // 10 received with small deltas, then 5 not received.
        let packet = feedback(15, &[(1 << 13) | 10, 5]);
        assert_eq!(
            arrivals(&packet),
            Arrivals {
                received: 10,
                lost: 5
            }
        );
    }

    #[test]
    fn status_vectors_of_one_and_two_bit_symbols() {
        // One-bit: 1010 1010 1010 10 -> 7 received, 7 lost.
        let one_bit = 0x8000 | 0b10_1010_1010_1010;
        // Two-bit: large delta, lost, small, lost, lost, small, large.
        let two_bit = 0xc000 | 0b10_00_01_00_00_01_10;
        let packet = feedback(21, &[one_bit, two_bit]);
        assert_eq!(
            arrivals(&packet),
            Arrivals {
                received: 11,
                lost: 10
            }
        );
    }

    #[test]
    fn symbols_past_the_status_count_are_padding() {
        // Only 3 packets: a 14-symbol vector of all "received" counts three.
        let packet = feedback(3, &[0x8000 | 0x3fff]);
        assert_eq!(
            arrivals(&packet),
            Arrivals {
                received: 3,
                lost: 0
            }
        );
        let packet = feedback(4, &[(1 << 13) | 100]);
        assert_eq!(
            arrivals(&packet),
            Arrivals {
                received: 4,
                lost: 0
            }
        );
    }

    #[test]
    fn every_feedback_of_a_compound_packet_is_summed_and_others_are_skipped() {
        let mut compound = vec![0x81, 201, 0, 7];
        compound.extend_from_slice(&[0; 28]);
        compound.extend(feedback(4, &[4]));
        compound.extend(feedback(2, &[(1 << 13) | 2]));
        // A NACK (FMT 1) is not transport-wide feedback.
        compound.extend_from_slice(&[0x81, 205, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0]);
        assert_eq!(
            arrivals(&compound),
            Arrivals {
                received: 2,
                lost: 4
            }
        );
    }

    #[test]
    fn a_truncated_packet_counts_what_it_holds() {
        let mut packet = feedback(30, &[(1 << 13) | 10, 20]);
        packet.truncate(22);
        assert_eq!(arrivals(&packet), Arrivals::default());
        assert_eq!(arrivals(&[0x8f, 205, 0, 1]), Arrivals::default());
    }
}
