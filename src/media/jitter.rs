//! The receive jitter buffer of one audio stream.
//!
//! Sans-IO, like pjmedia's `jbuf`: [`JitterBuffer::push`] each received RTP
//! packet with its arrival instant, and [`JitterBuffer::pop`] once per frame
//! period (every 20 ms) from the playout clock. It reorders packets by
//! timestamp, drops duplicates and packets whose playout time has passed,
//! reports gaps as [`Frame::Missing`] for the decoder to conceal, unwraps
//! 16-bit sequence numbers and 32-bit timestamps, and starts over on a new
//! SSRC.
//!
//! The playout clock keeps running through gaps (so silence suppression whose
//! timestamps follow the sampling clock just plays on). When the sender's
//! timeline no longer matches it, the buffer *rebuffers*: it empties and
//! waits `target_delay` again from the packet that showed the mismatch. That
//! happens on a timestamp jump of more than two seconds, or when the newest
//! packet in sequence order is already late (a network stall, or a sender
//! that paused without advancing its timestamps). A late packet that is
//! older than one already received is plain reordering and is dropped.
//!
//! Each packet is assumed to carry one frame (`frame_samples` timestamp units),
//! which holds for the ptime we negotiate; there is no clock-drift
//! compensation yet.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::rtp::RtpPacket;

/// One frame period of playout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// The payload of the packet due now.
    Audio {
        /// Codec payload (one frame).
        payload: Bytes,
        /// RTP timestamp of the packet.
        timestamp: u32,
    },
    /// No packet arrived in time for this frame; the caller conceals it.
    Missing {
        /// RTP timestamp the missing frame would have carried.
        timestamp: u32,
    },
}

/// What [`JitterBuffer::push`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Stored for playout.
    Buffered,
    /// Same sequence number (or timestamp) seen before: dropped.
    Duplicate,
    /// Its playout time has passed: dropped.
    Late,
    /// New SSRC: the buffer started over with this packet.
    Restarted,
    /// Same source, but its timeline jumped or stalled: buffering again
    /// from this packet (see the module documentation).
    Rebuffered,
}

/// Cumulative counters over all sources the buffer has seen.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct JitterStats {
    /// Packets pushed, duplicates and late ones included.
    pub received: u64,
    /// Packets dropped as duplicates.
    pub duplicates: u64,
    /// Packets dropped because their frame was already played out.
    pub late: u64,
    /// Frames popped as [`Frame::Missing`].
    pub missing: u64,
    /// RFC 3550 §A.3 cumulative lost: expected minus received, per source.
    pub lost: u64,
    /// Times the buffer started over for a new SSRC.
    pub restarts: u64,
    /// Times playout stopped to buffer again (timestamp jump or stall).
    pub rebuffers: u64,
    /// RFC 3550 §A.8 interarrival jitter of the current source, in seconds.
    pub jitter_seconds: f64,
}

/// Sequence numbers remembered for duplicate detection.
const SEEN_WINDOW: usize = 128;
/// A timestamp this many seconds away from the playout point is a jump of
/// the sender's clock, not a late or early packet.
const RESYNC_SECONDS: i64 = 2;

/// The jitter buffer; see the module documentation.
#[derive(Debug)]
pub struct JitterBuffer {
    clock_rate: u32,
    frame_samples: u32,
    target_delay: Duration,
    source: Option<Source>,
    stats: JitterStats,
    /// §A.3 loss of earlier sources.
    lost_before: u64,
}

/// Per-SSRC state, dropped on a restart.
#[derive(Debug)]
struct Source {
    ssrc: u32,
    /// Reference for arrival times in the jitter computation.
    first_arrival: Instant,
    /// Arrival of the packet that (re)started buffering.
    buffering_since: Instant,
    base_ext_seq: i64,
    max_ext_seq: i64,
    max_seq: u16,
    unique_received: u64,
    seen: [i64; SEEN_WINDOW],
    max_ext_ts: i64,
    max_ts: u32,
    /// Extended timestamp of the next frame to play; `None` while buffering.
    next_ts: Option<i64>,
    slots: BTreeMap<i64, Bytes>,
    /// RFC 3550 §A.8: J in timestamp units, and the previous transit time.
    jitter: f64,
    last_transit: Option<i64>,
}

impl Source {
    fn new(packet: &RtpPacket, arrival: Instant) -> Self {
        let seq = i64::from(packet.sequence_number);
        Source {
            ssrc: packet.ssrc,
            first_arrival: arrival,
            buffering_since: arrival,
            base_ext_seq: seq,
            max_ext_seq: seq,
            max_seq: packet.sequence_number,
            unique_received: 0,
            seen: [i64::MIN; SEEN_WINDOW],
            max_ext_ts: i64::from(packet.timestamp),
            max_ts: packet.timestamp,
            next_ts: None,
            slots: BTreeMap::new(),
            jitter: 0.0,
            last_transit: None,
        }
    }

    /// Extends a 16-bit sequence number next to the highest seen (RFC 3550
    /// §A.1) and says whether it is the newest so far.
    fn extend_seq(&mut self, seq: u16) -> (i64, bool) {
        let ext = self.max_ext_seq + i64::from(seq.wrapping_sub(self.max_seq) as i16);
        let newest = ext > self.max_ext_seq;
        if newest {
            self.max_ext_seq = ext;
            self.max_seq = seq;
        }
        (ext, newest)
    }

    /// Empties the buffer and waits for `target_delay` from `arrival` again.
    fn rebuffer(&mut self, arrival: Instant) {
        self.slots.clear();
        self.next_ts = None;
        self.buffering_since = arrival;
    }

    /// Extends a 32-bit timestamp next to the highest seen.
    fn extend_ts(&mut self, ts: u32) -> i64 {
        let ext = self.max_ext_ts + i64::from(ts.wrapping_sub(self.max_ts) as i32);
        if ext > self.max_ext_ts {
            self.max_ext_ts = ext;
            self.max_ts = ts;
        }
        ext
    }

    /// Records `ext_seq`; false if it was already seen.
    fn mark_seen(&mut self, ext_seq: i64) -> bool {
        let slot = &mut self.seen[ext_seq.rem_euclid(SEEN_WINDOW as i64) as usize];
        if *slot == ext_seq {
            return false;
        }
        *slot = ext_seq;
        true
    }

    /// RFC 3550 §A.8: J(i) = J(i-1) + (|D(i-1,i)| - J(i-1))/16, where D is
    /// the difference of transit times (arrival in timestamp units minus the
    /// RTP timestamp) of consecutive packets.
    fn update_jitter(&mut self, ext_ts: i64, arrival: Instant, clock_rate: u32) {
        let since = arrival.saturating_duration_since(self.first_arrival);
        let arrival_units = (since.as_nanos() * u128::from(clock_rate) / 1_000_000_000) as i64;
        let transit = arrival_units - ext_ts;
        if let Some(last) = self.last_transit {
            let d = (transit - last).abs() as f64;
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.last_transit = Some(transit);
    }

    /// RFC 3550 §A.3: expected minus received, never negative.
    fn lost(&self) -> u64 {
        let expected = self.max_ext_seq - self.base_ext_seq + 1;
        u64::try_from(expected - self.unique_received as i64).unwrap_or(0)
    }
}

impl JitterBuffer {
    /// A buffer for a stream at `clock_rate` Hz whose packets hold
    /// `frame_samples` samples each, starting playout `target_delay` after
    /// the first packet arrives.
    pub fn new(clock_rate: u32, frame_samples: u32, target_delay: Duration) -> Self {
        JitterBuffer {
            clock_rate,
            frame_samples,
            target_delay,
            source: None,
            stats: JitterStats::default(),
            lost_before: 0,
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> JitterStats {
        let mut stats = self.stats;
        if let Some(source) = &self.source {
            stats.lost = self.lost_before + source.lost();
            stats.jitter_seconds = source.jitter / f64::from(self.clock_rate);
        } else {
            stats.lost = self.lost_before;
        }
        stats
    }

    /// Whether playout has started (the first packet waited `target_delay`).
    pub fn is_playing(&self) -> bool {
        self.source.as_ref().is_some_and(|s| s.next_ts.is_some())
    }

    /// Number of packets waiting for playout.
    pub fn len(&self) -> usize {
        self.source.as_ref().map_or(0, |s| s.slots.len())
    }

    /// True if no packet waits for playout.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes in one received packet.
    pub fn push(&mut self, packet: &RtpPacket, arrival: Instant) -> PushOutcome {
        self.stats.received += 1;
        match &self.source {
            Some(source) if source.ssrc == packet.ssrc => self.push_to_source(packet, arrival),
            Some(_) => {
                self.restart(packet, arrival);
                self.push_to_source(packet, arrival);
                PushOutcome::Restarted
            }
            None => {
                self.source = Some(Source::new(packet, arrival));
                self.push_to_source(packet, arrival)
            }
        }
    }

    /// Drops the current source and starts buffering a new one.
    fn restart(&mut self, packet: &RtpPacket, arrival: Instant) {
        if let Some(old) = self.source.take() {
            self.lost_before += old.lost();
        }
        self.stats.restarts += 1;
        self.source = Some(Source::new(packet, arrival));
    }

    /// Files `packet` under the current source.
    fn push_to_source(&mut self, packet: &RtpPacket, arrival: Instant) -> PushOutcome {
        let resync_limit = RESYNC_SECONDS * i64::from(self.clock_rate);
        let source = self
            .source
            .as_mut()
            .expect("push installs a source before filing packets");
        let (ext_seq, newest) = source.extend_seq(packet.sequence_number);
        if !source.mark_seen(ext_seq) {
            self.stats.duplicates += 1;
            return PushOutcome::Duplicate;
        }
        let ext_ts = source.extend_ts(packet.timestamp);
        source.unique_received += 1;
        source.update_jitter(ext_ts, arrival, self.clock_rate);
        let mut outcome = PushOutcome::Buffered;
        if let Some(next) = source.next_ts {
            let jumped = (ext_ts - next).abs() > resync_limit;
            let late = ext_ts < next;
            if newest && (jumped || late) {
                source.rebuffer(arrival);
                self.stats.rebuffers += 1;
                outcome = PushOutcome::Rebuffered;
            } else if late || jumped {
                // An old packet out of sequence order: reordering, not a
                // timeline change.
                self.stats.late += 1;
                return PushOutcome::Late;
            }
        }
        if source.slots.contains_key(&ext_ts) {
            self.stats.duplicates += 1;
            return PushOutcome::Duplicate;
        }
        source.slots.insert(ext_ts, packet.payload.clone());
        outcome
    }

    /// The payload of the frame the next [`JitterBuffer::pop`] will play, if
    /// it is already buffered. Right after a [`Frame::Missing`] this is the
    /// packet after the gap, whose in-band FEC may rebuild the lost frame
    /// (RFC 7587 §3.3).
    pub fn next_payload(&self) -> Option<&[u8]> {
        let source = self.source.as_ref()?;
        let next = source.next_ts?;
        let frame = i64::from(self.frame_samples);
        source
            .slots
            .range(next..next + frame)
            .next()
            .map(|(_, payload)| payload.as_ref())
    }

    /// The frame to play now: `None` while buffering (before the first
    /// packet has waited `target_delay`), then one frame per call.
    pub fn pop(&mut self, now: Instant) -> Option<Frame> {
        let frame = i64::from(self.frame_samples);
        let source = self.source.as_mut()?;
        let next = match source.next_ts {
            Some(next) => next,
            None if now >= source.buffering_since + self.target_delay => {
                *source.slots.keys().next()?
            }
            None => return None,
        };
        let due = source
            .slots
            .first_key_value()
            .is_some_and(|(&ts, _)| ts < next + frame);
        if due && let Some((ts, payload)) = source.slots.pop_first() {
            source.next_ts = Some(ts + frame);
            return Some(Frame::Audio {
                payload,
                timestamp: ts as u32,
            });
        }
        source.next_ts = Some(next + frame);
        self.stats.missing += 1;
        Some(Frame::Missing {
            timestamp: next as u32,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn packet(ssrc: u32, seq: u16, ts: u32) -> RtpPacket {
        RtpPacket {
            marker: false,
            payload_type: 0,
            sequence_number: seq,
            timestamp: ts,
            ssrc,
            payload: Bytes::copy_from_slice(&seq.to_be_bytes()),
        }
    }

    fn buffer() -> JitterBuffer {
        JitterBuffer::new(8000, 160, 60 * MS)
    }

    fn seq_of(frame: Option<Frame>) -> Option<u16> {
        match frame {
            Some(Frame::Audio { payload, .. }) => {
                Some(u16::from_be_bytes([payload[0], payload[1]]))
            }
            _ => None,
        }
    }

    #[test]
    fn playout_starts_after_first_packet_waited_target_delay() {
        let t0 = Instant::now();
        let mut jb = buffer();
        assert_eq!(jb.pop(t0), None);
        for i in 0..4u16 {
            jb.push(
                &packet(1, i, u32::from(i) * 160),
                t0 + 20 * MS * u32::from(i),
            );
        }
        assert_eq!(jb.pop(t0 + 40 * MS), None);
        assert!(!jb.is_playing());
        assert_eq!(seq_of(jb.pop(t0 + 60 * MS)), Some(0));
        assert_eq!(seq_of(jb.pop(t0 + 80 * MS)), Some(1));
        assert!(jb.is_playing());
    }

    #[test]
    fn reordered_packets_play_in_timestamp_order() {
        let t0 = Instant::now();
        let mut jb = buffer();
        for (i, seq) in [0u16, 2, 1, 4, 3].into_iter().enumerate() {
            jb.push(&packet(1, seq, u32::from(seq) * 160), t0 + MS * i as u32);
        }
        let played: Vec<_> = (0..5)
            .map(|i| seq_of(jb.pop(t0 + 60 * MS + 20 * MS * i)))
            .collect();
        assert_eq!(played, [0, 1, 2, 3, 4].map(Some));
        assert_eq!(jb.stats().late, 0);
        assert_eq!(jb.stats().lost, 0);
    }

    #[test]
    fn duplicates_are_dropped_and_counted() {
        let t0 = Instant::now();
        let mut jb = buffer();
        assert_eq!(jb.push(&packet(1, 0, 0), t0), PushOutcome::Buffered);
        assert_eq!(jb.push(&packet(1, 0, 0), t0), PushOutcome::Duplicate);
        assert_eq!(jb.push(&packet(1, 1, 160), t0), PushOutcome::Buffered);
        assert_eq!(seq_of(jb.pop(t0 + 60 * MS)), Some(0));
        // A duplicate of a packet already played is still a duplicate.
        assert_eq!(
            jb.push(&packet(1, 0, 0), t0 + 61 * MS),
            PushOutcome::Duplicate
        );
        assert_eq!(seq_of(jb.pop(t0 + 80 * MS)), Some(1));
        let stats = jb.stats();
        assert_eq!((stats.received, stats.duplicates), (4, 2));
    }

    #[test]
    fn packets_arriving_after_their_playout_time_are_late() {
        let t0 = Instant::now();
        let mut jb = buffer();
        jb.push(&packet(1, 0, 0), t0);
        jb.push(&packet(1, 2, 320), t0 + 40 * MS);
        assert_eq!(seq_of(jb.pop(t0 + 60 * MS)), Some(0));
        assert_eq!(
            jb.pop(t0 + 80 * MS),
            Some(Frame::Missing { timestamp: 160 })
        );
        assert_eq!(jb.push(&packet(1, 1, 160), t0 + 85 * MS), PushOutcome::Late);
        assert_eq!(seq_of(jb.pop(t0 + 100 * MS)), Some(2));
        let stats = jb.stats();
        assert_eq!((stats.late, stats.missing, stats.lost), (1, 1, 0));
    }

    #[test]
    fn gaps_pop_as_missing_with_their_timestamp_and_count_as_lost() {
        let t0 = Instant::now();
        let mut jb = buffer();
        jb.push(&packet(1, 10, 1600), t0);
        jb.push(&packet(1, 13, 2080), t0 + 60 * MS);
        let frames: Vec<_> = (0..4).map(|i| jb.pop(t0 + 60 * MS + 20 * MS * i)).collect();
        assert!(matches!(
            frames[0],
            Some(Frame::Audio {
                timestamp: 1600,
                ..
            })
        ));
        assert_eq!(frames[1], Some(Frame::Missing { timestamp: 1760 }));
        assert_eq!(frames[2], Some(Frame::Missing { timestamp: 1920 }));
        assert!(matches!(
            frames[3],
            Some(Frame::Audio {
                timestamp: 2080,
                ..
            })
        ));
        assert_eq!(jb.stats().missing, 2);
        assert_eq!(jb.stats().lost, 2);
        // Underrun keeps the playout clock running.
        assert_eq!(
            jb.pop(t0 + 140 * MS),
            Some(Frame::Missing { timestamp: 2240 })
        );
    }

    #[test]
    fn sequence_and_timestamp_wrap_around_keep_order() {
        let t0 = Instant::now();
        let mut jb = buffer();
        let seq0 = u16::MAX - 1;
        let ts0 = u32::MAX - 200;
        // Arrival order 0, 2, 1, 3: the reordering straddles both wraps.
        for (i, k) in [0u16, 2, 1, 3].into_iter().enumerate() {
            let p = packet(
                1,
                seq0.wrapping_add(k),
                ts0.wrapping_add(u32::from(k) * 160),
            );
            assert_eq!(jb.push(&p, t0 + MS * i as u32), PushOutcome::Buffered);
        }
        let played: Vec<_> = (0..4)
            .map(|i| seq_of(jb.pop(t0 + 60 * MS + 20 * MS * i)))
            .collect();
        assert_eq!(played, [0u16, 1, 2, 3].map(|k| Some(seq0.wrapping_add(k))));
        let stats = jb.stats();
        assert_eq!((stats.late, stats.missing, stats.lost), (0, 0, 0));
    }

    #[test]
    fn ssrc_change_restarts_buffering_for_the_new_source() {
        let t0 = Instant::now();
        let mut jb = buffer();
        jb.push(&packet(1, 100, 5000), t0);
        jb.push(&packet(1, 101, 5160), t0 + 20 * MS);
        assert_eq!(seq_of(jb.pop(t0 + 60 * MS)), Some(100));
        let t1 = t0 + 70 * MS;
        assert_eq!(jb.push(&packet(2, 7, 90), t1), PushOutcome::Restarted);
        assert!(!jb.is_playing());
        assert_eq!(jb.len(), 1);
        assert_eq!(jb.pop(t1 + 40 * MS), None);
        assert_eq!(seq_of(jb.pop(t1 + 60 * MS)), Some(7));
        assert_eq!(jb.stats().restarts, 1);
        assert_eq!(jb.stats().late, 0);
    }

    #[test]
    fn timestamp_jump_rebuffers_instead_of_dropping_everything_as_late() {
        let t0 = Instant::now();
        let mut jb = buffer();
        jb.push(&packet(1, 0, 1_000_000), t0);
        assert!(jb.pop(t0 + 60 * MS).is_some());
        let outcome = jb.push(&packet(1, 1, 50), t0 + 80 * MS);
        assert_eq!(outcome, PushOutcome::Rebuffered);
        assert_eq!(jb.pop(t0 + 120 * MS), None);
        assert_eq!(seq_of(jb.pop(t0 + 140 * MS)), Some(1));
        // A forward jump as well.
        let outcome = jb.push(&packet(1, 2, 50 + 160 * 1000), t0 + 160 * MS);
        assert_eq!(outcome, PushOutcome::Rebuffered);
        assert_eq!(seq_of(jb.pop(t0 + 220 * MS)), Some(2));
        let stats = jb.stats();
        assert_eq!((stats.late, stats.rebuffers, stats.lost), (0, 2, 0));
    }

    #[test]
    fn sender_pause_without_timestamp_advance_rebuffers_not_drops_as_late() {
        let t0 = Instant::now();
        let mut jb = buffer();
        jb.push(&packet(1, 0, 0), t0);
        jb.push(&packet(1, 1, 160), t0 + 20 * MS);
        assert_eq!(seq_of(jb.pop(t0 + 60 * MS)), Some(0));
        assert_eq!(seq_of(jb.pop(t0 + 80 * MS)), Some(1));
        // The sender pauses for one second; playout conceals meanwhile.
        for i in 0..50u32 {
            assert!(matches!(
                jb.pop(t0 + 100 * MS + 20 * MS * i),
                Some(Frame::Missing { .. })
            ));
        }
        // It resumes right after its last timestamp, now far behind playout.
        let resume = t0 + 1100 * MS;
        assert_eq!(jb.push(&packet(1, 2, 320), resume), PushOutcome::Rebuffered);
        assert_eq!(
            jb.push(&packet(1, 3, 480), resume + 20 * MS),
            PushOutcome::Buffered
        );
        assert_eq!(seq_of(jb.pop(resume + 60 * MS)), Some(2));
        assert_eq!(seq_of(jb.pop(resume + 80 * MS)), Some(3));
        assert_eq!(jb.stats().late, 0);
    }

    #[test]
    fn interarrival_jitter_follows_rfc3550_a8() {
        let t0 = Instant::now();
        let mut jb = buffer();
        // Perfectly paced packets: no jitter.
        for i in 0..10u32 {
            jb.push(&packet(1, i as u16, i * 160), t0 + 20 * MS * i);
        }
        assert_eq!(jb.stats().jitter_seconds, 0.0);

        let mut jb = buffer();
        jb.push(&packet(1, 0, 0), t0);
        // 10 ms late: D = 80 units, J = 80/16 = 5 units.
        jb.push(&packet(1, 1, 160), t0 + 30 * MS);
        assert!((jb.stats().jitter_seconds * 8000.0 - 5.0).abs() < 1e-9);
        // Back on time: D = -80, J = 5 + (80 - 5)/16 = 9.6875 units.
        jb.push(&packet(1, 2, 320), t0 + 40 * MS);
        assert!((jb.stats().jitter_seconds * 8000.0 - 9.6875).abs() < 1e-9);

        // Alternating 0/5 ms delay converges to |D| = 40 units = 5 ms.
        let mut jb = buffer();
        for i in 0..300u32 {
            let wobble = if i % 2 == 1 { 5 * MS } else { Duration::ZERO };
            jb.push(&packet(1, i as u16, i * 160), t0 + 20 * MS * i + wobble);
        }
        assert!((jb.stats().jitter_seconds - 0.005).abs() < 1e-6);
    }

    #[test]
    fn next_payload_is_the_packet_after_a_gap() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(8000, 160, 40 * MS);
        assert_eq!(jb.next_payload(), None);
        jb.push(&packet(1, 10, 0), t0);
        jb.push(&packet(1, 12, 320), t0 + 10 * MS);
        assert!(matches!(jb.pop(t0 + 40 * MS), Some(Frame::Audio { .. })));
        assert!(matches!(
            jb.pop(t0 + 60 * MS),
            Some(Frame::Missing { timestamp: 160 })
        ));
        assert_eq!(jb.next_payload(), Some(&12u16.to_be_bytes()[..]));
        assert!(matches!(
            jb.pop(t0 + 80 * MS),
            Some(Frame::Audio { timestamp: 320, .. })
        ));
        assert_eq!(
            jb.next_payload(),
            None,
            "nothing buffered after the last packet"
        );
    }
}
