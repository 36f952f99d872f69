//! What a receiver's RTCP receiver reports say about the video the server
//! sends it, between one report and the next. rtpsession keeps only running
//! totals (the highest sequence number the receiver saw, how many it lost)
//! and the last round trip; this turns two readings of them into the loss
//! and the delivered bitrate over the time between. Pure: no GStreamer.

use crate::media::twcc_feedback::Arrivals;
use std::time::Duration;

/// Transport-wide feedback makes a report of its own, when no new receiver
/// report came, once it covers this many packets over at least this long.
const FEEDBACK_PACKETS: u32 = 20;
const FEEDBACK_INTERVAL: Duration = Duration::from_secs(1);

/// One reading of rtpsession's figures for the video the server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderReading {
    pub packets_sent: u64,
    /// Payload bytes only (rtpsession counts no headers).
    pub payload_bytes_sent: u64,
    /// The latest report block, once the receiver has sent one, with the
    /// round trip it implies.
    pub block: Option<(ReportBlock, Option<Duration>)>,
    /// What the receiver's transport-wide feedback said arrived, in all.
    pub arrivals: Arrivals,
}

/// The latest report block about the server's video.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlock {
    /// Lost since the receiver's previous report, out of 256.
    pub fraction_lost: u8,
    /// The extended highest sequence number the receiver had, and how many
    /// packets it had lost in all.
    pub highest_seq: u32,
    pub lost: i32,
    /// NTP short format (16.16 seconds): the middle of the last sender
    /// report's NTP time (0 for none yet) and the time since it.
    pub last_sender_report: u32,
    pub delay_since: u32,
}

/// The report blocks in a compound RTCP packet (RFC 3550 6.4), with the
/// SSRC each is about. Parsed here because rtpsession 1.22 keeps only the
/// last block of each report, so with a block for the audio after the one
/// for the video, the video's is never seen in its statistics.
pub fn report_blocks(packet: &[u8]) -> Vec<(u32, ReportBlock)> {
    const SENDER_REPORT: u8 = 200;
    const RECEIVER_REPORT: u8 = 201;
    let mut blocks = Vec::new();
    for (count, kind, packet) in compound_packets(packet) {
        let first = match kind {
            SENDER_REPORT => 8 + 20,
            RECEIVER_REPORT => 8,
            _ => continue,
        };
        for index in 0..usize::from(count) {
            let at = first + index * 24;
            let Some(b) = packet.get(at..at + 24) else {
                break;
            };
            // The cumulative loss is 24 bits, signed.
            let lost = ((word(b, 4) << 8) as i32) >> 8;
            blocks.push((
                word(b, 0),
                ReportBlock {
                    fraction_lost: b[4],
                    highest_seq: word(b, 8),
                    lost,
                    last_sender_report: word(b, 16),
                    delay_since: word(b, 20),
                },
            ));
        }
    }
    blocks
}

/// The big-endian 32-bit word at `at`.
fn word(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// The packets of a compound RTCP packet: (the header's count or feedback
/// type, packet type, the whole packet). Stops at the first that is not
/// RTCP version 2 or runs past the end.
pub(crate) fn compound_packets(mut packet: &[u8]) -> impl Iterator<Item = (u8, u8, &[u8])> {
    std::iter::from_fn(move || {
        if packet.len() < 4 || packet[0] >> 6 != 2 {
            return None;
        }
        let length = (usize::from(u16::from_be_bytes([packet[2], packet[3]])) + 1) * 4;
        let (this, rest) = packet.split_at_checked(length)?;
        packet = rest;
        Some((this[0] & 0x1f, this[1], this))
    })
}

/// The round trip a block implies, from the middle 32 bits of the NTP time
/// it arrived at (RFC 3550 6.4.1); none without a sender report to go by.
pub fn round_trip(block: &ReportBlock, arrived_ntp_short: u32) -> Option<Duration> {
    if block.last_sender_report == 0 {
        return None;
    }
    let rtt = arrived_ntp_short
        .wrapping_sub(block.last_sender_report)
        .wrapping_sub(block.delay_since);
    // A wrapped (negative) result is a clock step, not a round trip.
    (rtt < 10 << 16).then(|| Duration::from_secs_f64(f64::from(rtt) / 65536.0))
}

/// What one new report says, over the time since the previous one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Report {
    /// When the server first saw it.
    pub at: Duration,
    /// Share of the packets sent in the interval that never arrived, 0 to 1.
    pub fraction_lost: f64,
    pub rtt: Option<Duration>,
    /// What the server sent in the interval, in kbit/s, headers included.
    pub sent_kbps: u32,
}

impl Report {
    /// What reached the receiver, in kbit/s.
    pub fn delivered_kbps(&self) -> u32 {
        (f64::from(self.sent_kbps) * (1.0 - self.fraction_lost)).round() as u32
    }
}

/// RTP, SRTP and UDP/IP headers a video packet carries besides its payload.
const HEADER_BYTES: u64 = 12 + 10 + 28;

/// Turns successive readings into reports: one per new receiver report.
#[derive(Debug, Default)]
pub struct ReportDeltas {
    previous: Option<(Duration, SenderReading)>,
}

impl ReportDeltas {
    /// The report `reading` brings, if the receiver sent a new one since the
    /// previous reading (its highest sequence number moved on), or else if
    /// its transport-wide feedback covers enough packets since then (with
    /// no round trip: that needs a receiver report).
    pub fn update(&mut self, at: Duration, reading: SenderReading) -> Option<Report> {
        let Some((then, before)) = self.previous else {
            self.previous = Some((at, reading));
            return None;
        };
        if at <= then {
            return None;
        }
        let from_report = match (reading.block, before.block.map(|(old, _)| old)) {
            (Some((block, _)), Some(old)) if old.highest_seq == block.highest_seq => None,
            (Some((block, rtt)), Some(old)) => {
                let expected = i64::from(block.highest_seq.wrapping_sub(old.highest_seq));
                let lost = i64::from(block.lost) - i64::from(old.lost);
                // Duplicates can make the count go down: none lost then.
                Some((lost.clamp(0, expected) as f64 / expected as f64, rtt))
            }
            // The first report: only its own figure covers what came before.
            (Some((block, rtt)), None) => Some((f64::from(block.fraction_lost) / 256.0, rtt)),
            (None, _) => None,
        };
        let from_feedback = || {
            let lost = reading.arrivals.lost.wrapping_sub(before.arrivals.lost);
            let received = reading
                .arrivals
                .received
                .wrapping_sub(before.arrivals.received);
            let total = lost.saturating_add(received);
            (total >= FEEDBACK_PACKETS && at - then >= FEEDBACK_INTERVAL)
                .then(|| (f64::from(lost) / f64::from(total), None))
        };
        let (fraction_lost, rtt) = from_report.or_else(from_feedback)?;
        self.previous = Some((at, reading));
        let packets = reading.packets_sent.saturating_sub(before.packets_sent);
        let payload = reading
            .payload_bytes_sent
            .saturating_sub(before.payload_bytes_sent);
        let bits = (payload + packets * HEADER_BYTES) * 8;
        Some(Report {
            at,
            fraction_lost,
            rtt,
            sent_kbps: (bits as f64 / (at - then).as_secs_f64() / 1000.0).round() as u32,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// After `seconds`, at 100 packets of 1000 payload bytes a second.
    fn reading(seconds: u64, block: Option<(u32, i32)>) -> SenderReading {
        SenderReading {
            packets_sent: 100 * seconds,
            payload_bytes_sent: 100_000 * seconds,
            block: block.map(|(highest_seq, lost)| {
                let block = ReportBlock {
                    fraction_lost: 64,
                    highest_seq,
                    lost,
                    last_sender_report: 1 << 16,
                    delay_since: 1 << 15,
                };
                (block, round_trip(&block, (1 << 16) + (1 << 15) + 6553))
            }),
            arrivals: Arrivals::default(),
        }
    }

    /// After `seconds`, with no receiver report but transport-wide feedback
    /// on `received` and `lost` packets in all.
    fn feedback_reading(seconds: u64, received: u32, lost: u32) -> SenderReading {
        SenderReading {
            arrivals: Arrivals { received, lost },
            ..reading(seconds, None)
        }
    }

    #[test]
    fn without_receiver_reports_transport_feedback_makes_the_report() {
        let mut deltas = ReportDeltas::default();
        deltas.update(at(0), feedback_reading(0, 0, 0));
        let report = deltas.update(at(1), feedback_reading(1, 60, 40)).unwrap();
        assert_eq!(report.fraction_lost, 0.4);
        assert_eq!(report.rtt, None);
        assert_eq!(report.sent_kbps, 840);
        // Too few packets, or too soon: wait for more.
        assert_eq!(deltas.update(at(2), feedback_reading(2, 70, 40)), None);
        let report = deltas.update(at(3), feedback_reading(3, 90, 40)).unwrap();
        assert_eq!(report.fraction_lost, 0.0);
    }

    #[test]
    fn a_new_receiver_report_is_preferred_to_feedback() {
        let mut deltas = ReportDeltas::default();
        deltas.update(at(0), reading(0, Some((100, 0))));
        let both = SenderReading {
            arrivals: Arrivals {
                received: 0,
                lost: 100,
            },
            ..reading(1, Some((200, 10)))
        };
        let report = deltas.update(at(1), both).unwrap();
        assert_eq!(report.fraction_lost, 0.1);
        assert!(report.rtt.is_some());
    }

    fn at(seconds: u64) -> Duration {
        Duration::from_secs(seconds)
    }

    #[test]
    fn the_first_reading_only_sets_the_baseline() {
        let mut deltas = ReportDeltas::default();
        assert_eq!(deltas.update(at(0), reading(0, Some((100, 0)))), None);
    }

    #[test]
    fn loss_and_rate_are_over_the_interval_since_the_previous_report() {
        let mut deltas = ReportDeltas::default();
        deltas.update(at(1), reading(1, Some((100, 5))));
        let report = deltas.update(at(2), reading(2, Some((200, 30)))).unwrap();
        assert!((report.fraction_lost - 0.25).abs() < 1e-9);
        // 100 packets of 1000 payload bytes and 50 of headers, in one second.
        assert_eq!(report.sent_kbps, 840);
        assert_eq!(report.delivered_kbps(), 630);
        assert_eq!(report.rtt, Some(Duration::from_secs_f64(6553.0 / 65536.0)));
    }

    #[test]
    fn the_first_report_brings_its_own_fraction_lost() {
        let mut deltas = ReportDeltas::default();
        deltas.update(at(0), reading(0, None));
        assert_eq!(deltas.update(at(1), reading(1, None)), None);
        let report = deltas.update(at(2), reading(2, Some((100, 50)))).unwrap();
        assert_eq!(report.fraction_lost, 0.25);
        // Over the two seconds since the baseline.
        assert_eq!(report.sent_kbps, 840);
    }

    #[test]
    fn the_same_report_read_twice_is_one_report() {
        let mut deltas = ReportDeltas::default();
        deltas.update(at(0), reading(0, Some((100, 0))));
        assert!(deltas.update(at(1), reading(1, Some((200, 0)))).is_some());
        assert_eq!(deltas.update(at(2), reading(2, Some((200, 0)))), None);
    }

    #[test]
    fn duplicates_count_as_no_loss() {
        let mut deltas = ReportDeltas::default();
        deltas.update(at(0), reading(0, Some((100, 10))));
        let report = deltas.update(at(1), reading(1, Some((200, 4)))).unwrap();
        assert_eq!(report.fraction_lost, 0.0);
    }

    #[test]
    fn no_round_trip_in_the_report_is_none() {
        let mut deltas = ReportDeltas::default();
        deltas.update(at(0), reading(0, Some((1, 0))));
        let mut next = reading(1, Some((50, 0)));
        next.block.as_mut().unwrap().1 = None;
        assert_eq!(deltas.update(at(1), next).unwrap().rtt, None);
    }

    #[test]
    fn a_block_before_any_sender_report_has_no_round_trip() {
        let mut block = reading(1, Some((1, 0))).block.unwrap().0;
        block.last_sender_report = 0;
        assert_eq!(round_trip(&block, 12345), None);
        block.last_sender_report = 20 << 16;
        assert_eq!(round_trip(&block, 10 << 16), None, "a clock step");
    }

    /// A receiver report with `blocks`, then an SDES chunk.
    fn receiver_report(blocks: &[(u32, u8, i32, u32)]) -> Vec<u8> {
        let mut packet = vec![0x80 | blocks.len() as u8, 201];
        packet.extend_from_slice(&((1 + 6 * blocks.len()) as u16).to_be_bytes());
        packet.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        for &(ssrc, fraction, lost, highest) in blocks {
            packet.extend_from_slice(&ssrc.to_be_bytes());
            packet.push(fraction);
            packet.extend_from_slice(&lost.to_be_bytes()[1..]);
            packet.extend_from_slice(&highest.to_be_bytes());
            packet.extend_from_slice(&[0; 4]); // jitter
            packet.extend_from_slice(&7u32.to_be_bytes());
            packet.extend_from_slice(&9u32.to_be_bytes());
        }
        packet.extend_from_slice(&[0x81, 202, 0, 2, 0x12, 0x34, 0x56, 0x78, 0, 0, 0, 0]);
        packet
    }

    #[test]
    fn every_block_of_a_compound_report_is_read() {
        let packet = receiver_report(&[(11, 3, 40, 1000), (22, 0, -2, 70_000)]);
        let blocks = report_blocks(&packet);
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].0, 11);
        assert_eq!(
            (
                blocks[0].1.fraction_lost,
                blocks[0].1.lost,
                blocks[0].1.highest_seq
            ),
            (3, 40, 1000)
        );
        assert_eq!((blocks[1].0, blocks[1].1.lost), (22, -2));
        assert_eq!(
            (blocks[1].1.last_sender_report, blocks[1].1.delay_since),
            (7, 9)
        );
    }

    #[test]
    fn a_truncated_or_foreign_packet_gives_what_it_holds_and_no_more() {
        let packet = receiver_report(&[(11, 3, 40, 1000)]);
        assert!(report_blocks(&packet[..20]).is_empty());
        assert!(report_blocks(&[0x00, 201, 0, 0]).is_empty());
        assert!(report_blocks(&[]).is_empty());
    }
}
