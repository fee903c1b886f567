//! Reception statistics of one remote source, as RFC 3550 Appendix A
//! computes them for report blocks: sequence number tracking (§A.1), loss
//! (§A.3) and interarrival jitter (§A.8).

use serde::Serialize;

/// §A.1: a jump of more than this many sequence numbers is suspicious.
const MAX_DROPOUT: u16 = 3000;
/// §A.1: packets this far behind the highest are reordered, not a restart.
const MAX_MISORDER: u16 = 100;
/// §6.4.1: cumulative loss is a signed 24-bit field.
const LOST_MAX: i64 = 0x7F_FFFF;
const LOST_MIN: i64 = -0x80_0000;

/// What we know about one source's packets (§A.1 `source` structure,
/// without probation: the peer is known from signalling).
#[derive(Debug, Clone)]
pub(crate) struct Reception {
    max_seq: u16,
    /// Shifted count of sequence number cycles (multiples of 65536).
    cycles: u32,
    base_seq: u32,
    /// Sequence number that would confirm a restart (§A.1 `bad_seq`).
    bad_seq: Option<u16>,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    /// §A.8: previous relative transit time, in timestamp units.
    transit: Option<u32>,
    /// §A.8: the jitter estimate in timestamp units.
    jitter: f64,
    /// Fraction lost in the last report interval (the 8-bit field).
    last_fraction: u8,
}

/// A summary of reception for people and JSON: ours of the peer's stream,
/// or the peer's of ours as its last report said.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ReceptionSummary {
    /// Fraction of packets lost in the last report interval (0.0–1.0).
    pub fraction_lost: f64,
    /// Packets lost since the start (expected − received; negative with
    /// duplicates).
    pub cumulative_lost: i64,
    /// Extended highest sequence number received.
    pub highest_seq: u32,
    /// Interarrival jitter in milliseconds.
    pub jitter_ms: f64,
}

/// A report block's fields (§6.4.1), in the units of the wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Block {
    pub fraction_lost: u8,
    /// Signed 24-bit cumulative loss, already clamped.
    pub cumulative_lost: i32,
    pub highest_seq: u32,
    pub jitter: u32,
}

impl Reception {
    /// §A.1 `init_seq`: the first packet of a source.
    pub(crate) fn new(seq: u16) -> Reception {
        Reception {
            max_seq: seq,
            cycles: 0,
            base_seq: u32::from(seq),
            bad_seq: None,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            transit: None,
            jitter: 0.0,
            last_fraction: 0,
        }
    }

    /// §A.1 `update_seq`: takes in a packet's sequence number; false when
    /// the packet is dropped from the statistics (a large jump not yet
    /// confirmed by the next packet).
    pub(crate) fn update_seq(&mut self, seq: u16) -> bool {
        let udelta = seq.wrapping_sub(self.max_seq);
        if udelta < MAX_DROPOUT {
            // In order, with a permissible gap.
            if seq < self.max_seq {
                self.cycles = self.cycles.wrapping_add(1 << 16);
            }
            self.max_seq = seq;
        } else if udelta <= u16::MAX - MAX_MISORDER + 1 {
            // A very large jump: accept it only if the next packet follows it
            // (the sender restarted without telling us).
            if self.bad_seq == Some(seq) {
                let (jitter, transit) = (self.jitter, self.transit);
                *self = Reception::new(seq);
                self.jitter = jitter;
                self.transit = transit;
            } else {
                self.bad_seq = Some(seq.wrapping_add(1));
                return false;
            }
        }
        // Otherwise a duplicate or reordered packet: counted, max unchanged.
        self.received += 1;
        true
    }

    /// §A.8: updates the jitter with a packet's RTP timestamp and its
    /// arrival time expressed in the same units (only their differences
    /// matter, so both may wrap).
    pub(crate) fn update_jitter(&mut self, rtp_timestamp: u32, arrival_units: u32) {
        let transit = arrival_units.wrapping_sub(rtp_timestamp);
        if let Some(prev) = self.transit {
            let d = f64::from((transit.wrapping_sub(prev) as i32).unsigned_abs());
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.transit = Some(transit);
    }

    /// §A.3: the extended highest sequence number received.
    pub(crate) fn extended_max(&self) -> u32 {
        self.cycles.wrapping_add(u32::from(self.max_seq))
    }

    fn expected(&self) -> u64 {
        u64::from(self.extended_max().wrapping_sub(self.base_seq)) + 1
    }

    /// §A.3: expected minus received, clamped to the 24-bit field.
    pub(crate) fn cumulative_lost(&self) -> i64 {
        (self.expected() as i64 - self.received as i64).clamp(LOST_MIN, LOST_MAX)
    }

    /// The jitter in timestamp units.
    #[cfg(test)]
    fn jitter(&self) -> f64 {
        self.jitter
    }

    /// Packets received (duplicates included, §A.3).
    pub(crate) fn received(&self) -> u64 {
        self.received
    }

    /// Packets expected from the sequence numbers seen.
    pub(crate) fn expected_count(&self) -> u64 {
        self.expected()
    }

    /// The fields of a report block sent now; starts a new interval for the
    /// fraction lost (§A.3).
    pub(crate) fn make_block(&mut self) -> Block {
        let expected = self.expected();
        let expected_interval = expected.saturating_sub(self.expected_prior);
        self.expected_prior = expected;
        let received_interval = self.received.saturating_sub(self.received_prior);
        self.received_prior = self.received;
        let lost_interval = expected_interval as i64 - received_interval as i64;
        self.last_fraction = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / expected_interval as i64).min(255) as u8
        };
        Block {
            fraction_lost: self.last_fraction,
            cumulative_lost: self.cumulative_lost() as i32,
            highest_seq: self.extended_max(),
            jitter: self.jitter as u32,
        }
    }

    /// A summary for people, jitter converted with the stream's clock rate.
    pub(crate) fn summary(&self, clock_rate: u32) -> ReceptionSummary {
        ReceptionSummary {
            fraction_lost: f64::from(self.last_fraction) / 256.0,
            cumulative_lost: self.cumulative_lost(),
            highest_seq: self.extended_max(),
            jitter_ms: self.jitter * 1000.0 / f64::from(clock_rate.max(1)),
        }
    }
}

impl Block {
    /// A summary of a block received from the peer about our stream.
    pub(crate) fn summary(&self, clock_rate: u32) -> ReceptionSummary {
        ReceptionSummary {
            fraction_lost: f64::from(self.fraction_lost) / 256.0,
            cumulative_lost: i64::from(self.cumulative_lost),
            highest_seq: self.highest_seq,
            jitter_ms: f64::from(self.jitter) * 1000.0 / f64::from(clock_rate.max(1)),
        }
    }

    /// The 24-bit two's complement wire value of the cumulative loss.
    pub(crate) fn lost_field(&self) -> u32 {
        (self.cumulative_lost as u32) & 0xFF_FFFF
    }

    /// Sign-extends the 24-bit wire value of a received block.
    pub(crate) fn lost_from_field(field: u32) -> i32 {
        ((field << 8) as i32) >> 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receive(r: &mut Reception, seqs: impl IntoIterator<Item = u16>) {
        for s in seqs {
            r.update_seq(s);
        }
    }

    #[test]
    fn in_order_packets_lose_nothing() {
        let mut r = Reception::new(1000);
        receive(&mut r, 1000..1100);
        let b = r.make_block();
        assert_eq!(
            (b.fraction_lost, b.cumulative_lost, b.highest_seq),
            (0, 0, 1099)
        );
    }

    #[test]
    fn fraction_lost_is_per_interval_and_cumulative_loss_accumulates_rfc3550_a3() {
        let mut r = Reception::new(0);
        // 100 expected, 75 received: fraction 25 % = 64/256.
        receive(&mut r, (0..100).filter(|s| s % 4 != 1));
        let b = r.make_block();
        assert_eq!((b.fraction_lost, b.cumulative_lost), (64, 25));
        // Next interval: 100 expected, all received.
        receive(&mut r, 100..200);
        let b = r.make_block();
        assert_eq!(
            (b.fraction_lost, b.cumulative_lost, b.highest_seq),
            (0, 25, 199)
        );
        // An interval in which nothing arrived reports fraction 0.
        assert_eq!(r.make_block().fraction_lost, 0);
    }

    #[test]
    fn duplicates_make_loss_negative_and_fraction_zero() {
        let mut r = Reception::new(5);
        receive(&mut r, [5, 6, 6, 7, 7, 8]);
        let b = r.make_block();
        assert_eq!((b.fraction_lost, b.cumulative_lost), (0, -2));
        assert_eq!(b.lost_field(), 0xFF_FFFE);
        assert_eq!(Block::lost_from_field(0xFF_FFFE), -2);
        assert_eq!(Block::lost_from_field(25), 25);
    }

    #[test]
    fn sequence_wrap_counts_a_cycle_rfc3550_a1() {
        let mut r = Reception::new(65534);
        receive(&mut r, [65534, 65535, 0, 1]);
        let b = r.make_block();
        assert_eq!(b.highest_seq, 65536 + 1);
        assert_eq!(b.cumulative_lost, 0);
    }

    #[test]
    fn reordered_packet_is_counted_without_moving_the_maximum() {
        let mut r = Reception::new(10);
        receive(&mut r, [10, 12, 11, 13]);
        let b = r.make_block();
        assert_eq!((b.highest_seq, b.cumulative_lost), (13, 0));
    }

    #[test]
    fn a_large_jump_is_accepted_only_when_the_next_packet_confirms_it() {
        let mut r = Reception::new(100);
        receive(&mut r, 100..110);
        assert!(!r.update_seq(40000), "a lone jump is not counted");
        assert_eq!(r.extended_max(), 109);
        assert!(r.update_seq(40001), "the next one confirms the restart");
        let b = r.make_block();
        assert_eq!((b.highest_seq, b.cumulative_lost), (40001, 0));
    }

    #[test]
    fn jitter_follows_rfc3550_a8() {
        let mut r = Reception::new(0);
        // Perfect pacing: transit constant.
        for i in 0..10u32 {
            r.update_jitter(i * 160, 5000 + i * 160);
        }
        assert_eq!(r.jitter(), 0.0);
        // One packet 80 units late: J = 80/16 = 5; back on time: 5 + (80 − 5)/16.
        r.update_jitter(1600, 5000 + 1600 + 80);
        assert_eq!(r.jitter(), 5.0);
        r.update_jitter(1760, 5000 + 1760);
        assert_eq!(r.jitter(), 5.0 + 75.0 / 16.0);
        // Wrapping timestamps and arrival units change nothing.
        let mut w = Reception::new(0);
        for i in 0..10u32 {
            w.update_jitter((u32::MAX - 500).wrapping_add(i * 160), 7 + i * 160);
        }
        assert_eq!(w.jitter(), 0.0);
        assert_eq!(r.summary(8000).jitter_ms, (5.0 + 75.0 / 16.0) / 8.0);
    }
}
