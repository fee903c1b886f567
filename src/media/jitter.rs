//! The adaptive receive jitter buffer of one audio stream.
//!
//! Sans-IO, like pjmedia's `jbuf`: [`JitterBuffer::push`] each received RTP
//! packet with its arrival instant, and [`JitterBuffer::pop`] once per frame
//! period from the playout clock. The buffer never reads the clock. It
//! reorders packets by timestamp, drops duplicates and packets whose playout
//! time has passed, reports gaps as [`Frame::Missing`] for the decoder to
//! conceal, unwraps 16-bit sequence numbers (RFC 3550 §A.1) and 32-bit
//! timestamps, and starts over on a new SSRC.
//!
//! # How big the buffer is
//!
//! Every packet gives a *delay variation* sample: its transit offset
//! (arrival time minus RTP timestamp in seconds) minus the smallest offset
//! seen over the last [`BASE_WINDOW`] (the fastest path through the
//! network). The **target delay** is the largest variation sample of the
//! last [`PEAK_WINDOW`] plus a [`MARGIN`], clamped to the configured
//! [`JitterConfig`] bounds (20–300 ms by default): a packet delayed no more
//! than any packet of the last ten seconds is never late. This is a
//! 100th percentile of recent delay variation rather than a multiple of the
//! RFC 3550 §A.8 interarrival jitter `J`, which is a smoothed mean of
//! neighbour differences and says little about the tail that decides
//! lateness; `J` is still computed and reported in [`JitterStats`] (and
//! RTCP uses it). A late packet is itself a sample, so the target jumps up at
//! once; it falls back when the peak leaves the window. Playout starts when
//! the first packet has waited the target, but at least one frame more than
//! the minimum (40 ms by default), since nothing has been measured yet.
//!
//! The **buffer delay** of the frame due at a `pop` is `now` minus the
//! instant it would have arrived over the fastest path. Sliding the fastest
//! path over a short window also follows a sender clock that runs slower or
//! faster than ours (clock drift): the delay then creeps up or down by about
//! 1 ms per second at ±0.1 %, and the rules below bring it back.
//!
//! # Growing and shrinking without audible steps
//!
//! The delay moves in whole frames, and only when the audio allows it. The
//! caller reports with [`JitterBuffer::set_voice_activity`] whether the
//! audio it just played was speech or silence (it decodes, the buffer only
//! sees payloads). A frame period is *quiet* when the last audio was
//! silence, or when the frame due is missing right before a packet with the
//! marker bit (RFC 3551 §4.1: a talk spurt starts there, what came before
//! was silence suppression). With `d` the buffer delay, `T` the target and
//! `F` one frame:
//!
//! - grow, [`Frame::Stretch`], without consuming a packet (the caller plays
//!   concealment, which in silence is silence): when `d < T`, at any time,
//!   because otherwise packets would be late; and when quiet, already at
//!   `d < T + F/2`, so that drift is absorbed during pauses before it
//!   reaches the target (half a frame is ten seconds of 0.1 % drift);
//! - shrink when quiet and `d − F ≥ T + F/2`: a silent frame is dropped
//!   unplayed, or missing frames before a talk spurt are skipped (several
//!   at once, re-anchoring the spurt to the target);
//! - shrink during speech only when `d − 2F ≥ T + F/2`, at most once per
//!   [`MERGE_SPACING`] frames: [`Frame::Merge`] hands two frames to the
//!   caller, which crossfades them into one frame period.
//!
//! In pauses the delay settles inside `[T + F/2, T + 3F/2)`, one frame
//! wide, so the rules never undo each other; during speech it stays inside
//! `[T, T + 5F/2)`.
//!
//! # Rebuffering
//!
//! The playout clock keeps running through gaps (silence suppression whose
//! timestamps follow the sampling clock just plays on). When the sender's
//! timeline no longer matches it, the buffer *rebuffers*: it empties and
//! waits for the target delay again from the packet that showed the
//! mismatch. That happens on a timestamp jump of more than two seconds, or
//! when the newest packet in sequence order is already late (a network
//! stall, or a sender that paused without advancing its timestamps). A late
//! packet that is older than one already received is plain reordering and
//! is dropped.
//!
//! Each packet is assumed to carry one frame (`frame_samples` timestamp
//! units), which holds for the ptime we negotiate.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::rtp::RtpPacket;

/// Smallest transit offset over this long is the fastest path.
pub const BASE_WINDOW: Duration = Duration::from_secs(2);
/// Largest delay variation over this long sizes the buffer.
pub const PEAK_WINDOW: Duration = Duration::from_secs(10);
/// Added to the peak delay variation to form the target.
pub const MARGIN: Duration = Duration::from_millis(5);
/// Frames between two [`Frame::Merge`] shrinks during speech.
pub const MERGE_SPACING: u32 = 10;

/// Bounds of the target delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    /// Never buffer less than this.
    pub min_delay: Duration,
    /// Never buffer more than this; later packets are dropped as late.
    pub max_delay: Duration,
}

impl Default for JitterConfig {
    /// 20–300 ms.
    fn default() -> Self {
        JitterConfig {
            min_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(300),
        }
    }
}

/// Why a [`JitterConfig`] is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JitterConfigError {
    #[error("the minimum jitter-buffer delay ({min_ms} ms) exceeds the maximum ({max_ms} ms)")]
    MinAboveMax { min_ms: u128, max_ms: u128 },
    #[error("the maximum jitter-buffer delay ({max_ms} ms) exceeds {limit_ms} ms")]
    TooLarge { max_ms: u128, limit_ms: u128 },
}

impl JitterConfig {
    /// Largest accepted `max_delay`.
    pub const LIMIT: Duration = Duration::from_secs(2);

    /// Bounds `min..=max`, checked.
    pub fn new(min_delay: Duration, max_delay: Duration) -> Result<Self, JitterConfigError> {
        if min_delay > max_delay {
            return Err(JitterConfigError::MinAboveMax {
                min_ms: min_delay.as_millis(),
                max_ms: max_delay.as_millis(),
            });
        }
        if max_delay > Self::LIMIT {
            return Err(JitterConfigError::TooLarge {
                max_ms: max_delay.as_millis(),
                limit_ms: Self::LIMIT.as_millis(),
            });
        }
        Ok(JitterConfig {
            min_delay,
            max_delay,
        })
    }
}

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
    /// No audio for this frame, and no packet lost: the sender replaced it
    /// with RFC 4733 telephone-events (§2.1: the events take the audio's
    /// place and sequence numbers), or sent nothing without skipping a
    /// sequence number (RFC 3551 §4.1 silence). The caller plays silence,
    /// not loss concealment.
    Pause {
        /// RTP timestamp of the frame.
        timestamp: u32,
    },
    /// No packet arrived in time for this frame; the caller conceals it.
    Missing {
        /// RTP timestamp the missing frame would have carried.
        timestamp: u32,
    },
    /// The buffer grows by one frame: the caller plays one frame of
    /// concealment (a continuation of what it played last) before the frame
    /// at `timestamp`, which stays buffered for the next `pop`.
    Stretch {
        /// RTP timestamp of the frame that plays after the stretch.
        timestamp: u32,
    },
    /// The buffer shrinks by one frame during speech: the caller decodes
    /// both frames and fits them into one frame period with a crossfade.
    Merge {
        /// Payload of the frame at `timestamp`.
        payload: Bytes,
        /// Payload of the frame after it.
        next: Bytes,
        /// RTP timestamp of the first frame.
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

/// Cumulative counters over all sources the buffer has seen, and the
/// current delay.
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
    /// Buffer delay of the frame last popped, in milliseconds.
    pub delay_ms: f64,
    /// Target delay now, in milliseconds.
    pub target_ms: f64,
    /// Frames the buffer grew by ([`Frame::Stretch`]).
    pub grown: u64,
    /// Frames the buffer shrank by (silent frames dropped, missing frames
    /// skipped before a talk spurt, and [`Frame::Merge`]s).
    pub shrunk: u64,
    /// Of `shrunk`, the [`Frame::Merge`]s made during speech.
    pub merged: u64,
}

/// Sequence numbers remembered for duplicate detection.
const SEEN_WINDOW: usize = 128;
/// A timestamp this many seconds away from the playout point is a jump of
/// the sender's clock, not a late or early packet.
const RESYNC_SECONDS: i64 = 2;

/// The smallest value pushed over a sliding time window (a monotonic
/// queue: O(1) amortized per push). Values are pushed in arrival order.
#[derive(Debug, Default)]
struct WindowMin {
    queue: VecDeque<(Instant, i64)>,
}

impl WindowMin {
    fn push(&mut self, at: Instant, value: i64, window: Duration) {
        while self.queue.back().is_some_and(|&(_, v)| v >= value) {
            self.queue.pop_back();
        }
        self.queue.push_back((at, value));
        while self.queue.front().is_some_and(|&(t, _)| t + window < at) {
            self.queue.pop_front();
        }
    }

    fn min(&self) -> Option<i64> {
        self.queue.front().map(|&(_, v)| v)
    }

    fn clear(&mut self) {
        self.queue.clear();
    }
}

/// A buffered frame.
#[derive(Debug)]
struct Slot {
    payload: Bytes,
    /// RFC 3551 §4.1: first packet of a talk spurt.
    marker: bool,
    /// The frame was carried by telephone-events (RFC 4733 §2.1) instead
    /// of audio: no payload to decode, nothing lost.
    event: bool,
    /// Extended sequence number of the packet (for an event frame, of the
    /// newest event packet that covers it).
    seq: i64,
}

/// Per-SSRC state, dropped on a restart.
#[derive(Debug)]
struct Source {
    ssrc: u32,
    /// Reference for arrival times.
    first_arrival: Instant,
    base_ext_seq: i64,
    max_ext_seq: i64,
    max_seq: u16,
    unique_received: u64,
    seen: [i64; SEEN_WINDOW],
    max_ext_ts: i64,
    max_ts: u32,
    /// Extended timestamp of the next frame to play; `None` while buffering.
    next_ts: Option<i64>,
    slots: BTreeMap<i64, Slot>,
    /// RFC 3550 §A.8: J in timestamp units, and the previous transit time.
    jitter: f64,
    last_transit: Option<i64>,
    /// Transit offsets (ns): their minimum is the fastest path.
    base: WindowMin,
    /// Delay variation samples (ns), negated: their minimum is the peak.
    peak: WindowMin,
    /// Frames played since the last [`Frame::Merge`].
    since_merge: u32,
    /// Extended sequence number of the last slot played or dropped.
    last_seq: Option<i64>,
    /// Start timestamp of the last telephone-event whose end was received,
    /// and how many times the end packet came again.
    event_end: Option<(i64, i64)>,
}

impl Source {
    fn new(packet: &RtpPacket, arrival: Instant) -> Self {
        let seq = i64::from(packet.sequence_number);
        Source {
            ssrc: packet.ssrc,
            first_arrival: arrival,
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
            base: WindowMin::default(),
            peak: WindowMin::default(),
            since_merge: MERGE_SPACING,
            last_seq: None,
            event_end: None,
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

    /// Empties the buffer and waits for the target delay again.
    fn rebuffer(&mut self) {
        self.slots.clear();
        self.next_ts = None;
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

    /// Nanoseconds from `first_arrival` to `at`.
    fn since_start(&self, at: Instant) -> i64 {
        at.saturating_duration_since(self.first_arrival).as_nanos() as i64
    }

    /// RFC 3550 §A.3: expected minus received, never negative.
    fn lost(&self) -> u64 {
        let expected = self.max_ext_seq - self.base_ext_seq + 1;
        u64::try_from(expected - self.unique_received as i64).unwrap_or(0)
    }

    /// Largest delay variation of the last [`PEAK_WINDOW`], in ns.
    fn peak_variation(&self) -> i64 {
        self.peak.min().map_or(0, |v| -v)
    }
}

/// The jitter buffer; see the module documentation.
#[derive(Debug)]
pub struct JitterBuffer {
    clock_rate: u32,
    frame_samples: u32,
    config: JitterConfig,
    source: Option<Source>,
    stats: JitterStats,
    /// §A.3 loss of earlier sources.
    lost_before: u64,
    /// What the caller last played was speech (see `set_voice_activity`).
    voice_active: bool,
    /// Buffer delay of the frame last popped, in ns.
    last_delay: i64,
}

/// What one `pop` decided to do about the delay.
enum Adjust {
    Grow,
    SkipGap,
    DropSilent,
    Merge,
    Play,
}

impl JitterBuffer {
    /// A buffer for a stream at `clock_rate` Hz whose packets hold
    /// `frame_samples` samples each, with its target delay inside `config`.
    pub fn new(clock_rate: u32, frame_samples: u32, config: JitterConfig) -> Self {
        JitterBuffer {
            clock_rate: clock_rate.max(1),
            frame_samples: frame_samples.max(1),
            config,
            source: None,
            stats: JitterStats::default(),
            lost_before: 0,
            voice_active: true,
            last_delay: 0,
        }
    }

    /// The bounds in force.
    pub fn config(&self) -> JitterConfig {
        self.config
    }

    /// Counters so far, and the current and target delay.
    pub fn stats(&self) -> JitterStats {
        let mut stats = self.stats;
        stats.target_ms = self.target_ns(self.source.as_ref()) as f64 / 1e6;
        stats.delay_ms = self.last_delay as f64 / 1e6;
        if let Some(source) = &self.source {
            stats.lost = self.lost_before + source.lost();
            stats.jitter_seconds = source.jitter / f64::from(self.clock_rate);
        } else {
            stats.lost = self.lost_before;
        }
        stats
    }

    /// Whether playout has started (the first packet waited the target).
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

    /// The payload of the frame the next `pop` plays, if it is buffered.
    /// Right after `pop` returned [`Frame::Missing`] this is the frame
    /// right after the gap, which may carry in-band FEC for the lost one
    /// (RFC 7587 §3.3).
    pub fn next_payload(&self) -> Option<&[u8]> {
        let source = self.source.as_ref()?;
        let slot = source.slots.get(&source.next_ts?)?;
        (!slot.event).then_some(&slot.payload[..])
    }

    /// Tells the buffer whether the audio the caller just played was speech
    /// (`true`, the default) or silence. Delay changes wait for silence
    /// unless they are urgent; see the module documentation.
    pub fn set_voice_activity(&mut self, active: bool) {
        self.voice_active = active;
    }

    /// One frame period in ns.
    fn frame_ns(&self) -> i64 {
        i64::from(self.frame_samples) * 1_000_000_000 / i64::from(self.clock_rate)
    }

    /// An extended timestamp in ns.
    fn ts_ns(&self, ext_ts: i64) -> i64 {
        (i128::from(ext_ts) * 1_000_000_000 / i128::from(self.clock_rate)) as i64
    }

    /// Target delay in ns for `source`: its peak delay variation plus the
    /// margin, within bounds.
    fn target_ns(&self, source: Option<&Source>) -> i64 {
        let peak = source.map_or(0, Source::peak_variation);
        let min = self.config.min_delay.as_nanos() as i64;
        let max = self.config.max_delay.as_nanos() as i64;
        (peak + MARGIN.as_nanos() as i64).clamp(min, max.max(min))
    }

    /// Delay before playout starts: the target, and at first one frame more
    /// than the minimum, before anything has been measured.
    fn start_ns(&self, source: &Source) -> i64 {
        let min = self.config.min_delay.as_nanos() as i64;
        let max = self.config.max_delay.as_nanos() as i64;
        self.target_ns(Some(source))
            .max((min + self.frame_ns()).min(max))
    }

    /// Buffer delay of the frame `ext_ts` if it played at `now`: `now`
    /// minus its arrival over the fastest path.
    fn delay_ns(&self, source: &Source, ext_ts: i64, now: Instant) -> i64 {
        let base = source.base.min().unwrap_or(0);
        source.since_start(now) - (self.ts_ns(ext_ts) + base)
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

    /// Takes in a packet of the same RTP stream that carries no audio: an
    /// RFC 4733 telephone-event. Events share the stream's sequence numbers
    /// (RFC 4733 §2.1, RFC 3550 §5.1), so the packet counts as received for
    /// the §A.3 loss count; the audio frames its event covers (from its
    /// timestamp for `duration` samples) play as [`Frame::Pause`], not as
    /// missing frames. The end packet is sent three times, one packet
    /// interval apart (RFC 4733 §2.5.1.4), while the audio still pauses:
    /// each repetition received (`end`) covers one frame more.
    pub fn push_event(
        &mut self,
        packet: &RtpPacket,
        duration: u32,
        end: bool,
        arrival: Instant,
    ) -> PushOutcome {
        self.stats.received += 1;
        let mut outcome = PushOutcome::Buffered;
        match &self.source {
            Some(source) if source.ssrc == packet.ssrc => {}
            Some(_) => {
                self.restart(packet, arrival);
                outcome = PushOutcome::Restarted;
            }
            None => self.source = Some(Source::new(packet, arrival)),
        }
        let resync_limit = RESYNC_SECONDS * i64::from(self.clock_rate);
        let f = i64::from(self.frame_samples);
        let source = self.source.as_mut().expect("a source is installed above");
        let (ext_seq, _) = source.extend_seq(packet.sequence_number);
        if !source.mark_seen(ext_seq) {
            self.stats.duplicates += 1;
            return PushOutcome::Duplicate;
        }
        source.unique_received += 1;
        let start = source.extend_ts(packet.timestamp);
        let mut covered = i64::from(duration);
        if end {
            let repeats = match source.event_end {
                Some((ts, n)) if ts == start => n + 1,
                _ => 0,
            };
            source.event_end = Some((start, repeats));
            covered += repeats * f;
        }
        // An absurd duration is not allowed to fill the buffer.
        let end = start + covered.min(resync_limit);
        let mut ts = start;
        while ts < end {
            let played = source.next_ts.is_some_and(|next| ts < next);
            if !played {
                let slot = source.slots.entry(ts).or_insert(Slot {
                    payload: Bytes::new(),
                    marker: false,
                    event: true,
                    seq: ext_seq,
                });
                if slot.event {
                    slot.seq = slot.seq.max(ext_seq);
                }
            }
            ts += f;
        }
        outcome
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
        let mut source = self
            .source
            .take()
            .expect("push installs a source before filing packets");
        let outcome = self.file(&mut source, packet, arrival, resync_limit);
        self.source = Some(source);
        outcome
    }

    fn file(
        &mut self,
        source: &mut Source,
        packet: &RtpPacket,
        arrival: Instant,
        resync_limit: i64,
    ) -> PushOutcome {
        let (ext_seq, newest) = source.extend_seq(packet.sequence_number);
        if !source.mark_seen(ext_seq) {
            self.stats.duplicates += 1;
            return PushOutcome::Duplicate;
        }
        let ext_ts = source.extend_ts(packet.timestamp);
        source.unique_received += 1;
        source.update_jitter(ext_ts, arrival, self.clock_rate);
        let mut outcome = PushOutcome::Buffered;
        let mut jumped_ahead = false;
        if let Some(next) = source.next_ts {
            let jumped = (ext_ts - next).abs() > resync_limit;
            let late = ext_ts < next;
            if newest && (jumped || late) {
                source.rebuffer();
                self.stats.rebuffers += 1;
                outcome = PushOutcome::Rebuffered;
                jumped_ahead = jumped;
            } else if late || jumped {
                // An old packet out of sequence order: reordering, not a
                // timeline change. Its lateness still sizes the buffer.
                self.record_delay(source, ext_ts, arrival, false, false);
                self.stats.late += 1;
                return PushOutcome::Late;
            }
        }
        // A talk spurt may start on a new timeline (RFC 3551 §4.1).
        let may_rebase = jumped_ahead || packet.marker;
        self.record_delay(source, ext_ts, arrival, newest, may_rebase);
        if source.slots.get(&ext_ts).is_some_and(|slot| !slot.event) {
            self.stats.duplicates += 1;
            return PushOutcome::Duplicate;
        }
        source.slots.insert(
            ext_ts,
            Slot {
                payload: packet.payload.clone(),
                marker: packet.marker,
                event: false,
                seq: ext_seq,
            },
        );
        outcome
    }

    /// Adds one delay variation sample for a packet (RFC 3550 §A.8's
    /// transit time, in ns, against the fastest path). When the newest
    /// packet is further off than the buffer would ever absorb (beyond the
    /// maximum delay, or beyond the target at a talk-spurt start or a
    /// timestamp jump), the sender's timeline has moved: the packet becomes
    /// the new fastest path instead of a sample.
    fn record_delay(
        &self,
        source: &mut Source,
        ext_ts: i64,
        arrival: Instant,
        newest: bool,
        may_rebase: bool,
    ) {
        let offset = source.since_start(arrival) - self.ts_ns(ext_ts);
        let variation = source.base.min().map_or(0, |base| offset - base);
        let max = self.config.max_delay.as_nanos() as i64;
        let rebase = newest
            && (variation > max || (may_rebase && variation > self.target_ns(Some(&*source))));
        if rebase {
            source.base.clear();
        }
        source.base.push(arrival, offset, BASE_WINDOW);
        let variation = offset - source.base.min().unwrap_or(offset);
        source.peak.push(arrival, -variation, PEAK_WINDOW);
    }

    /// The frame to play now: `None` while buffering (before the first
    /// packet has waited the start delay), then one frame per call.
    pub fn pop(&mut self, now: Instant) -> Option<Frame> {
        let mut source = self.source.take()?;
        let frame = self.pop_from(&mut source, now);
        self.source = Some(source);
        frame
    }

    fn pop_from(&mut self, source: &mut Source, now: Instant) -> Option<Frame> {
        let f = i64::from(self.frame_samples);
        if source.next_ts.is_none() {
            let first = *source.slots.keys().next()?;
            if self.delay_ns(source, first, now) < self.start_ns(source) {
                return None;
            }
            source.next_ts = Some(first);
        }
        let mut next = source.next_ts.expect("set above when playout starts");
        source.since_merge = source.since_merge.saturating_add(1);
        match self.adjustment(source, next, now) {
            Adjust::Grow => {
                self.stats.grown += 1;
                self.last_delay = self.delay_ns(source, next, now);
                return Some(Frame::Stretch {
                    timestamp: next as u32,
                });
            }
            Adjust::SkipGap => {
                // Missing frames before a talk spurt (or in silence): skip
                // as many as the excess allows, up to the next packet.
                let target = self.target_ns(Some(&*source));
                let slack = self.frame_ns() / 2;
                while !source.slots.contains_key(&next)
                    && source.slots.keys().next().is_some_and(|&k| k > next)
                    && self.delay_ns(source, next + f, now) >= target + slack
                {
                    next += f;
                    self.stats.shrunk += 1;
                }
            }
            Adjust::DropSilent => {
                if let Some(slot) = source.slots.remove(&next) {
                    source.last_seq = Some(slot.seq);
                }
                next += f;
                self.stats.shrunk += 1;
            }
            Adjust::Merge => {
                let first = source.slots.remove(&next).expect("merge checked the frame");
                let second = source
                    .slots
                    .remove(&(next + f))
                    .expect("merge checked the next frame");
                self.stats.shrunk += 1;
                self.stats.merged += 1;
                source.since_merge = 0;
                source.last_seq = Some(second.seq);
                self.last_delay = self.delay_ns(source, next, now);
                source.next_ts = Some(next + 2 * f);
                return Some(Frame::Merge {
                    payload: first.payload,
                    next: second.payload,
                    timestamp: next as u32,
                });
            }
            Adjust::Play => {}
        }
        self.last_delay = self.delay_ns(source, next, now);
        source.next_ts = Some(next + f);
        if let Some(slot) = source.slots.remove(&next) {
            source.last_seq = Some(slot.seq);
            // Anything older is stale (left behind by a skip).
            while source
                .slots
                .first_key_value()
                .is_some_and(|(&k, _)| k < next)
            {
                source.slots.pop_first();
            }
            if slot.event {
                return Some(Frame::Pause {
                    timestamp: next as u32,
                });
            }
            return Some(Frame::Audio {
                payload: slot.payload,
                timestamp: next as u32,
            });
        }
        // Nothing between the last packet played and the next one buffered
        // went missing: the sender paused on purpose.
        let paused = source.last_seq.is_some_and(|last| {
            source
                .slots
                .range(next..)
                .next()
                .is_some_and(|(_, slot)| slot.seq == last + 1)
        });
        if paused {
            return Some(Frame::Pause {
                timestamp: next as u32,
            });
        }
        self.stats.missing += 1;
        Some(Frame::Missing {
            timestamp: next as u32,
        })
    }

    /// Applies the grow/shrink rules of the module documentation to the
    /// frame `next` due at `now`.
    fn adjustment(&self, source: &Source, next: i64, now: Instant) -> Adjust {
        let f = i64::from(self.frame_samples);
        let frame_ns = self.frame_ns();
        let d = self.delay_ns(source, next, now);
        let target = self.target_ns(Some(source));
        let slack = frame_ns / 2;
        let present = source.slots.contains_key(&next);
        let spurt_ahead = source
            .slots
            .range(next..)
            .next()
            .is_some_and(|(_, slot)| slot.marker);
        let gap_before_spurt = !present && spurt_ahead;
        let quiet = !self.voice_active || gap_before_spurt;
        if d < target || (quiet && d < target + slack) {
            return Adjust::Grow;
        }
        if quiet && d - frame_ns >= target + slack {
            if !present {
                return Adjust::SkipGap;
            }
            if source.slots.contains_key(&(next + f)) {
                return Adjust::DropSilent;
            }
        }
        let audio_at = |ts: i64| source.slots.get(&ts).is_some_and(|slot| !slot.event);
        let can_merge = audio_at(next) && audio_at(next + f) && source.since_merge >= MERGE_SPACING;
        if can_merge && d - 2 * frame_ns >= target + slack {
            return Adjust::Merge;
        }
        Adjust::Play
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    const MS: Duration = Duration::from_millis(1);
    const FRAME: Duration = Duration::from_millis(20);

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

    /// A packet whose third payload byte says whether it carries speech.
    fn voiced(seq: u16, ts: u32, voice: bool, marker: bool) -> RtpPacket {
        let [hi, lo] = seq.to_be_bytes();
        RtpPacket {
            marker,
            payload: Bytes::copy_from_slice(&[hi, lo, u8::from(voice)]),
            ..packet(1, seq, ts)
        }
    }

    fn buffer() -> JitterBuffer {
        JitterBuffer::new(8000, 160, JitterConfig::default())
    }

    fn seq_of(frame: Option<Frame>) -> Option<u16> {
        match frame {
            Some(Frame::Audio { payload, .. }) => {
                Some(u16::from_be_bytes([payload[0], payload[1]]))
            }
            _ => None,
        }
    }

    /// What a simulated call saw, pop by pop.
    #[derive(Debug, Default)]
    struct Run {
        /// (pop instant, delay in ms, frame).
        pops: Vec<(Instant, f64, Frame)>,
        /// Sequence numbers played, in order (both halves of a merge).
        played: Vec<u16>,
    }

    impl Run {
        /// Buffer delay at the last pop at or before `at`.
        fn delay_at(&self, at: Instant) -> f64 {
            self.pops
                .iter()
                .rev()
                .find(|(t, _, _)| *t <= at)
                .map_or(0.0, |p| p.1)
        }

        /// Frames concealed during speech after `from`: missing ones, and
        /// stretches while the last frame played was speech.
        fn concealed_in_speech(&self, from: Instant) -> usize {
            let mut voice = true;
            let mut count = 0;
            for (t, _, frame) in &self.pops {
                match frame {
                    Frame::Audio { payload, .. } => voice = payload[2] == 1,
                    Frame::Missing { .. } | Frame::Stretch { .. } if *t >= from && voice => {
                        count += 1
                    }
                    _ => {}
                }
            }
            count
        }
    }

    /// Delivers `packets` (any order) at their arrival instants and pops
    /// every 20 ms of our clock from `t0` until `until`, telling the buffer
    /// whether the last frame played was speech (third payload byte).
    fn drive(
        jb: &mut JitterBuffer,
        mut packets: Vec<(Instant, RtpPacket)>,
        t0: Instant,
        until: Instant,
    ) -> Run {
        packets.sort_by_key(|(at, _)| *at);
        let mut packets = packets.into_iter().peekable();
        let mut run = Run::default();
        let mut now = t0 + 7 * MS;
        while now < until {
            while let Some((at, p)) = packets.next_if(|(at, _)| *at <= now) {
                jb.push(&p, at);
            }
            if let Some(frame) = jb.pop(now) {
                let seq = |b: &Bytes| u16::from_be_bytes([b[0], b[1]]);
                match &frame {
                    Frame::Audio { payload, .. } => {
                        run.played.push(seq(payload));
                        jb.set_voice_activity(payload.get(2) != Some(&0));
                    }
                    Frame::Merge { payload, next, .. } => {
                        run.played.extend([seq(payload), seq(next)]);
                        jb.set_voice_activity(next.get(2) != Some(&0));
                    }
                    _ => {}
                }
                run.pops.push((now, jb.stats().delay_ms, frame));
            }
            now += FRAME;
        }
        run
    }

    /// A talk-spurt pattern: `talk` seconds of speech, then `pause` of
    /// silence (silent packets still sent), repeating.
    fn speech(talk: u32, pause: u32) -> impl Fn(u32) -> bool {
        move |i| (i / 50) % (talk + pause) < talk
    }

    /// `n` packets from a sender whose clock runs `drift` fast (+) or slow
    /// (−) against ours, each delayed by `jitter(rng)`.
    fn stream(
        t0: Instant,
        n: u32,
        drift: f64,
        voice: impl Fn(u32) -> bool,
        mut jitter: impl FnMut(&mut StdRng) -> Duration,
    ) -> Vec<(Instant, RtpPacket)> {
        let mut rng = StdRng::seed_from_u64(6);
        let interval = 0.020 / (1.0 + drift);
        (0..n)
            .map(|i| {
                let sent = t0 + Duration::from_secs_f64(f64::from(i) * interval);
                let p = voiced(i as u16, i * 160, voice(i), false);
                (sent + jitter(&mut rng), p)
            })
            .collect()
    }

    #[test]
    fn playout_starts_one_frame_above_the_minimum_delay() {
        let t0 = Instant::now();
        let mut jb = buffer();
        assert_eq!(jb.pop(t0), None);
        for i in 0..4u16 {
            jb.push(&packet(1, i, u32::from(i) * 160), t0 + FRAME * u32::from(i));
        }
        assert_eq!(jb.pop(t0 + 39 * MS), None);
        assert!(!jb.is_playing());
        assert_eq!(seq_of(jb.pop(t0 + 40 * MS)), Some(0));
        assert_eq!(seq_of(jb.pop(t0 + 60 * MS)), Some(1));
        assert!(jb.is_playing());
        let stats = jb.stats();
        assert_eq!((stats.delay_ms, stats.target_ms), (40.0, 20.0));
    }

    #[test]
    fn reordered_packets_play_in_timestamp_order() {
        let t0 = Instant::now();
        let mut jb = buffer();
        // Packets 1 and 3 are overtaken by their successors.
        for (seq, at) in [(0u16, 0u32), (2, 40), (1, 45), (4, 80), (3, 85)] {
            jb.push(&packet(1, seq, u32::from(seq) * 160), t0 + MS * at);
        }
        let played: Vec<_> = (0..5)
            .map(|i| seq_of(jb.pop(t0 + 60 * MS + FRAME * i)))
            .collect();
        assert_eq!(played, [0, 1, 2, 3, 4].map(Some));
        let stats = jb.stats();
        assert_eq!((stats.late, stats.lost, stats.missing), (0, 0, 0));
        // 25 ms of variation sizes the buffer.
        assert_eq!(stats.target_ms, 30.0);
    }

    #[test]
    fn duplicates_are_dropped_and_counted() {
        let t0 = Instant::now();
        let mut jb = buffer();
        assert_eq!(jb.push(&packet(1, 0, 0), t0), PushOutcome::Buffered);
        assert_eq!(jb.push(&packet(1, 0, 0), t0), PushOutcome::Duplicate);
        assert_eq!(
            jb.push(&packet(1, 1, 160), t0 + FRAME),
            PushOutcome::Buffered
        );
        assert_eq!(
            jb.push(&packet(1, 1, 160), t0 + FRAME),
            PushOutcome::Duplicate
        );
        assert_eq!(seq_of(jb.pop(t0 + 40 * MS)), Some(0));
        // A duplicate of a packet already played is still a duplicate.
        assert_eq!(
            jb.push(&packet(1, 0, 0), t0 + 41 * MS),
            PushOutcome::Duplicate
        );
        assert_eq!(seq_of(jb.pop(t0 + 60 * MS)), Some(1));
        let stats = jb.stats();
        assert_eq!((stats.received, stats.duplicates), (5, 3));
        assert_eq!((stats.lost, stats.missing, stats.target_ms), (0, 0, 20.0));
    }

    #[test]
    fn packets_arriving_after_their_playout_time_are_dropped_as_late() {
        let t0 = Instant::now();
        let mut jb = buffer();
        jb.push(&packet(1, 0, 0), t0);
        jb.push(&packet(1, 2, 320), t0 + 40 * MS);
        assert_eq!(seq_of(jb.pop(t0 + 40 * MS)), Some(0));
        assert_eq!(
            jb.pop(t0 + 60 * MS),
            Some(Frame::Missing { timestamp: 160 })
        );
        assert_eq!(jb.push(&packet(1, 1, 160), t0 + 65 * MS), PushOutcome::Late);
        let stats = jb.stats();
        assert_eq!((stats.late, stats.missing, stats.lost), (1, 1, 0));
        // It was 45 ms slower than the fastest path: the target covers it
        // now, and the buffer grows before playing on.
        assert_eq!(stats.target_ms, 50.0);
        assert_eq!(
            jb.pop(t0 + 80 * MS),
            Some(Frame::Stretch { timestamp: 320 })
        );
        assert_eq!(jb.stats().grown, 1);
        assert_eq!(seq_of(jb.pop(t0 + 100 * MS)), Some(2));
        assert_eq!(jb.stats().delay_ms, 60.0);
    }

    #[test]
    fn telephone_events_fill_the_audio_gap_and_count_as_received_rfc4733_2_1() {
        // Audio 0..4, then one 100 ms event sent over five frames plus two
        // repeated end packets (seq 5..11), then audio again from seq 12.
        let t0 = Instant::now();
        let mut jb = buffer();
        let mut frames = Vec::new();
        let event_ts = 5 * 160;
        for i in 0..20u16 {
            let ts = u32::from(i) * 160;
            let arrival = t0 + FRAME * u32::from(i);
            match i {
                5..=11 => {
                    let duration = (u32::from(i) - 4).min(5) * 160;
                    let mut e = packet(1, i, event_ts);
                    e.payload_type = 101;
                    jb.push_event(&e, duration, i >= 9, arrival);
                }
                _ => {
                    let mut a = packet(1, i, ts);
                    a.marker = i == 12;
                    jb.push(&a, arrival);
                }
            }
            if let Some(frame) = jb.pop(arrival + 10 * MS) {
                frames.push(frame);
            }
        }
        let stats = jb.stats();
        assert_eq!((stats.received, stats.lost, stats.missing), (20, 0, 0));
        assert!(
            !frames.iter().any(|f| matches!(f, Frame::Missing { .. })),
            "{frames:?}"
        );
        let paused = frames
            .iter()
            .filter(|f| matches!(f, Frame::Pause { .. }))
            .count();
        assert!(paused >= 5, "{frames:?}");
    }

    #[test]
    fn a_gap_without_a_missing_sequence_number_is_a_pause_not_a_loss() {
        // RFC 3551 §4.1: the sender stopped sending (seq 3 follows seq 2)
        // and resumed later with a marker.
        let t0 = Instant::now();
        let mut jb = buffer();
        jb.push(&packet(1, 1, 0), t0);
        jb.push(&packet(1, 2, 160), t0 + FRAME);
        let mut resumed = packet(1, 3, 640);
        resumed.marker = true;
        jb.push(&resumed, t0 + 4 * FRAME);
        let popped: Vec<_> = (0..4).map(|i| jb.pop(t0 + 60 * MS + FRAME * i)).collect();
        assert!(
            !popped
                .iter()
                .any(|f| matches!(f, Some(Frame::Missing { .. }))),
            "{popped:?}"
        );
        assert_eq!(jb.stats().lost, 0);
    }

    #[test]
    fn gaps_pop_as_missing_with_their_timestamp_and_next_payload_follows_the_gap() {
        let t0 = Instant::now();
        let mut jb = buffer();
        jb.push(&packet(1, 10, 1600), t0);
        jb.push(&packet(1, 13, 2080), t0 + 60 * MS);
        let p = t0 + 40 * MS;
        assert!(matches!(
            jb.pop(p),
            Some(Frame::Audio {
                timestamp: 1600,
                ..
            })
        ));
        assert_eq!(jb.next_payload(), None);
        assert_eq!(jb.pop(p + FRAME), Some(Frame::Missing { timestamp: 1760 }));
        assert_eq!(jb.next_payload(), None);
        assert_eq!(
            jb.pop(p + 2 * FRAME),
            Some(Frame::Missing { timestamp: 1920 })
        );
        // The frame right after the gap is buffered: FEC can use it.
        assert_eq!(jb.next_payload(), Some(&13u16.to_be_bytes()[..]));
        assert_eq!(seq_of(jb.pop(p + 3 * FRAME)), Some(13));
        assert_eq!(jb.stats().missing, 2);
        assert_eq!(jb.stats().lost, 2);
        // Underrun keeps the playout clock running.
        assert_eq!(
            jb.pop(p + 4 * FRAME),
            Some(Frame::Missing { timestamp: 2240 })
        );
    }

    #[test]
    fn sequence_wrap_around_keeps_order_and_loss_count() {
        let t0 = Instant::now();
        let mut jb = buffer();
        let seq0 = u16::MAX - 5;
        // Reordered pairs straddle the wrap; seq0+7 is lost.
        let order = [0u16, 1, 2, 4, 3, 5, 6, 8, 9, 10, 11];
        for (i, k) in order.into_iter().enumerate() {
            let p = packet(1, seq0.wrapping_add(k), 1000 + u32::from(k) * 160);
            assert_eq!(jb.push(&p, t0 + FRAME * i as u32), PushOutcome::Buffered);
        }
        let played: Vec<_> = (0..12)
            .map(|i| seq_of(jb.pop(t0 + 40 * MS + FRAME * i)))
            .collect();
        let expected: Vec<_> = (0..12u16)
            .map(|k| (k != 7).then(|| seq0.wrapping_add(k)))
            .collect();
        assert_eq!(played, expected);
        let stats = jb.stats();
        assert_eq!((stats.late, stats.missing, stats.lost), (0, 1, 1));
    }

    #[test]
    fn timestamp_wrap_around_keeps_order_and_timing() {
        let t0 = Instant::now();
        let mut jb = buffer();
        let ts0 = u32::MAX - 3 * 160 + 7;
        // Frames 1 and 4 arrive after their successors; frames 3.. carry
        // timestamps past the wrap.
        for (k, at) in [(0u32, 0u32), (2, 40), (1, 41), (3, 60), (5, 100), (4, 101)] {
            let p = packet(1, k as u16, ts0.wrapping_add(k * 160));
            assert_eq!(jb.push(&p, t0 + MS * at), PushOutcome::Buffered);
        }
        let frames: Vec<_> = (0..6).map(|i| jb.pop(t0 + 50 * MS + FRAME * i)).collect();
        let timestamps: Vec<_> = frames
            .iter()
            .map(|f| match f {
                Some(Frame::Audio { timestamp, .. }) => Some(*timestamp),
                _ => None,
            })
            .collect();
        assert_eq!(
            timestamps,
            (0..6u32)
                .map(|k| Some(ts0.wrapping_add(k * 160)))
                .collect::<Vec<_>>()
        );
        // Packets after the wrap are neither a jump nor late.
        let stats = jb.stats();
        assert_eq!((stats.late, stats.rebuffers, stats.missing), (0, 0, 0));
        assert_eq!(stats.target_ms, 26.0);
    }

    #[test]
    fn ssrc_change_restarts_buffering_for_the_new_source() {
        let t0 = Instant::now();
        let mut jb = buffer();
        jb.push(&packet(1, 100, 5000), t0);
        jb.push(&packet(1, 101, 5160), t0 + FRAME);
        assert_eq!(seq_of(jb.pop(t0 + 40 * MS)), Some(100));
        let t1 = t0 + 70 * MS;
        assert_eq!(jb.push(&packet(2, 7, 90), t1), PushOutcome::Restarted);
        assert!(!jb.is_playing());
        assert_eq!(jb.len(), 1);
        assert_eq!(jb.pop(t1 + 30 * MS), None);
        assert_eq!(seq_of(jb.pop(t1 + 40 * MS)), Some(7));
        assert_eq!(jb.stats().restarts, 1);
        assert_eq!(jb.stats().late, 0);
        // The old source's packets are gone, not played.
        assert_eq!(
            jb.pop(t1 + 60 * MS),
            Some(Frame::Missing { timestamp: 250 })
        );
    }

    #[test]
    fn silence_compression_marker_spurt_plays_at_target_delay_without_rebuffering() {
        let t0 = Instant::now();
        let mut jb = buffer();
        let mut packets = Vec::new();
        // One second of speech, then the sender stops for one second
        // (timestamps keep the sampling clock) and a spurt starts with M.
        for i in 0..50u32 {
            packets.push((t0 + FRAME * i, voiced(i as u16, i * 160, true, false)));
        }
        for i in 0..50u32 {
            let k = 100 + i;
            let p = voiced(50 + i as u16, k * 160, true, i == 0);
            packets.push((t0 + FRAME * k + 3 * MS, p));
        }
        let run = drive(&mut jb, packets, t0, t0 + 3200 * MS);
        assert_eq!(run.played, (0..100).collect::<Vec<u16>>());
        let stats = jb.stats();
        assert_eq!((stats.rebuffers, stats.late, stats.lost), (0, 0, 0));
        // The spurt's packets are 3 ms slower: still within the target.
        let spurt = t0 + 2100 * MS;
        assert!(run.delay_at(spurt) >= 20.0 && run.delay_at(spurt) < 50.0);
    }

    #[test]
    fn silence_compression_marker_re_anchors_a_shifted_timeline() {
        let t0 = Instant::now();
        let mut jb = buffer();
        let mut packets = Vec::new();
        for i in 0..50u32 {
            packets.push((t0 + FRAME * i, voiced(i as u16, i * 160, true, false)));
        }
        // Silence of 1 s, but the timestamps jump 1.5 s: the spurt's
        // packets look 500 ms early, then a second spurt after a pause
        // with no timestamp advance at all looks 1 s late.
        for i in 0..50u32 {
            let p = voiced(50 + i as u16, (125 + i) * 160, true, i == 0);
            packets.push((t0 + FRAME * (100 + i), p));
        }
        for i in 0..50u32 {
            let p = voiced(100 + i as u16, (175 + i) * 160, true, i == 0);
            packets.push((t0 + FRAME * (200 + i), p));
        }
        let run = drive(&mut jb, packets, t0, t0 + 5200 * MS);
        assert_eq!(run.played, (0..150).collect::<Vec<u16>>());
        let stats = jb.stats();
        assert_eq!((stats.late, stats.lost), (0, 0));
        // Neither shift counts as jitter.
        assert_eq!(stats.target_ms, 20.0);
        for at in [2500, 4500] {
            let delay = run.delay_at(t0 + MS * at);
            assert!((20.0..50.0).contains(&delay), "{at} ms: {delay} ms");
        }
    }

    #[test]
    fn timestamp_jump_rebuffers_instead_of_dropping_everything_as_late() {
        let t0 = Instant::now();
        let mut jb = buffer();
        jb.push(&packet(1, 0, 1_000_000), t0);
        assert!(jb.pop(t0 + 40 * MS).is_some());
        let outcome = jb.push(&packet(1, 1, 50), t0 + 80 * MS);
        assert_eq!(outcome, PushOutcome::Rebuffered);
        assert_eq!(jb.pop(t0 + 100 * MS), None);
        assert_eq!(seq_of(jb.pop(t0 + 120 * MS)), Some(1));
        // A forward jump as well.
        let outcome = jb.push(&packet(1, 2, 50 + 160 * 1000), t0 + 140 * MS);
        assert_eq!(outcome, PushOutcome::Rebuffered);
        assert_eq!(seq_of(jb.pop(t0 + 180 * MS)), Some(2));
        let stats = jb.stats();
        assert_eq!((stats.late, stats.rebuffers, stats.lost), (0, 2, 0));
        assert_eq!(stats.target_ms, 20.0);
    }

    #[test]
    fn sender_pause_without_timestamp_advance_rebuffers_not_drops_as_late() {
        let t0 = Instant::now();
        let mut jb = buffer();
        jb.push(&packet(1, 0, 0), t0);
        jb.push(&packet(1, 1, 160), t0 + FRAME);
        assert_eq!(seq_of(jb.pop(t0 + 40 * MS)), Some(0));
        assert_eq!(seq_of(jb.pop(t0 + 60 * MS)), Some(1));
        // The sender pauses for one second; playout conceals meanwhile.
        for i in 0..50u32 {
            assert!(matches!(
                jb.pop(t0 + 80 * MS + FRAME * i),
                Some(Frame::Missing { .. })
            ));
        }
        // It resumes right after its last timestamp, now far behind playout.
        let resume = t0 + 1100 * MS;
        assert_eq!(jb.push(&packet(1, 2, 320), resume), PushOutcome::Rebuffered);
        assert_eq!(
            jb.push(&packet(1, 3, 480), resume + FRAME),
            PushOutcome::Buffered
        );
        assert_eq!(jb.pop(resume + 30 * MS), None);
        assert_eq!(seq_of(jb.pop(resume + 40 * MS)), Some(2));
        assert_eq!(seq_of(jb.pop(resume + 60 * MS)), Some(3));
        let stats = jb.stats();
        assert_eq!((stats.late, stats.target_ms), (0, 20.0));
    }

    #[test]
    fn interarrival_jitter_follows_rfc3550_a8() {
        let t0 = Instant::now();
        let mut jb = buffer();
        // Perfectly paced packets: no jitter.
        for i in 0..10u32 {
            jb.push(&packet(1, i as u16, i * 160), t0 + FRAME * i);
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
            jb.push(&packet(1, i as u16, i * 160), t0 + FRAME * i + wobble);
        }
        assert!((jb.stats().jitter_seconds - 0.005).abs() < 1e-6);
    }

    #[test]
    fn adaptation_40ms_jitter_and_5pct_reorder_loses_nothing_late_under_120ms() {
        let t0 = Instant::now();
        let mut jb = buffer();
        // Uniform 0-40 ms delay; 5 % of packets held back one more frame,
        // so they arrive after their successor.
        let packets = stream(t0, 1500, 0.0, speech(3, 1), |rng| {
            let extra = if rng.random_bool(0.05) { 20 } else { 0 };
            MS * (rng.random_range(0..=40) + extra)
        });
        let adapted = t0 + 5000 * MS;
        let run = drive(&mut jb, packets, t0, t0 + 30_500 * MS);
        let stats = jb.stats();
        // Everything sent was played except what was late while adapting.
        assert_eq!(stats.lost, 0);
        assert_eq!(
            run.played.len() as u64 + stats.late + jb.len() as u64,
            1500,
            "{stats:?}"
        );
        let missing_after = run
            .pops
            .iter()
            .filter(|(t, _, f)| *t > adapted && matches!(f, Frame::Missing { .. }))
            .filter(|(t, _, _)| *t < t0 + 29_900 * MS)
            .count();
        assert_eq!(missing_after, 0, "{stats:?}");
        assert!(
            stats.target_ms >= 45.0 && stats.target_ms <= 70.0,
            "{stats:?}"
        );
        let worst = run
            .pops
            .iter()
            .filter(|(t, _, _)| *t > adapted && *t < t0 + 29_900 * MS)
            .map(|p| p.1)
            .fold(0.0, f64::max);
        assert!(worst < 120.0, "delay reached {worst} ms");
    }

    #[test]
    fn adaptation_without_jitter_settles_near_the_minimum_delay() {
        let t0 = Instant::now();
        let mut jb = buffer();
        // Five seconds of 0-80 ms jitter grow the buffer; then the network
        // calms down and the buffer shrinks back during pauses.
        let mut rng = StdRng::seed_from_u64(1);
        let jitter: Vec<u64> = (0..1500)
            .map(|i| if i < 250 { rng.random_range(0..=80) } else { 0 })
            .collect();
        let mut i = 0;
        let packets = stream(t0, 1500, 0.0, speech(2, 1), |_| {
            i += 1;
            MS * jitter[i - 1] as u32
        });
        let run = drive(&mut jb, packets, t0, t0 + 30_000 * MS);
        assert!(run.delay_at(t0 + 5000 * MS) >= 70.0);
        let stats = jb.stats();
        assert_eq!(stats.target_ms, 20.0);
        assert!((30.0..50.0).contains(&stats.delay_ms), "{stats:?}");
        assert!(stats.shrunk >= 2, "{stats:?}");
        assert_eq!(stats.merged, 0, "shrinking waited for pauses: {stats:?}");
    }

    #[test]
    fn adaptation_during_continuous_speech_shrinks_by_merging() {
        let t0 = Instant::now();
        let mut jb = buffer();
        let packets = stream(t0, 1000, 0.0, |_| true, |_| Duration::ZERO);
        // One packet 200 ms late raises the target for ten seconds.
        let mut packets = packets;
        packets[10].0 += 200 * MS;
        let run = drive(&mut jb, packets, t0, t0 + 20_000 * MS);
        assert!(run.delay_at(t0 + 2000 * MS) >= 200.0);
        let stats = jb.stats();
        assert!(stats.merged >= 5, "{stats:?}");
        assert!(stats.delay_ms < 70.0, "{stats:?}");
        assert_eq!(run.played.len() as u64 + stats.late + jb.len() as u64, 1000);
        // Merges consume two frames in order.
        assert!(run.played.windows(2).all(|w| w[0] < w[1]));
    }

    fn drift_run(drift: f64) {
        let t0 = Instant::now();
        let mut jb = buffer();
        // Two minutes of talk spurts (4 s speech, 1 s pause) with a little
        // jitter, from a sender whose clock is off by `drift`.
        let n = (120.0 * 50.0 * (1.0 + drift)) as u32;
        let packets = stream(t0, n, drift, speech(4, 1), |rng| {
            MS * rng.random_range(0..=5)
        });
        let run = drive(&mut jb, packets, t0, t0 + 120_000 * MS);
        let at_10s = run.delay_at(t0 + 10_000 * MS);
        let at_end = run.delay_at(t0 + 120_000 * MS);
        let stats = jb.stats();
        assert!(
            (at_end - at_10s).abs() <= 20.0,
            "drift {drift}: {at_10s} ms after 10 s, {at_end} ms at the end; {stats:?}"
        );
        assert!(at_end < 50.0, "{stats:?}");
        // About 120 ms to absorb: six frames, all during pauses.
        assert!(stats.grown + stats.shrunk >= 5, "{stats:?}");
        let concealed = run.concealed_in_speech(t0 + 1000 * MS);
        assert!(concealed <= 3, "{concealed} frames concealed; {stats:?}");
        assert_eq!((stats.late, stats.merged), (0, 0), "{stats:?}");
    }

    #[test]
    fn clock_drift_plus_0_1_pct_over_two_minutes_keeps_the_delay() {
        drift_run(0.001);
    }

    #[test]
    fn clock_drift_minus_0_1_pct_over_two_minutes_keeps_the_delay() {
        drift_run(-0.001);
    }

    #[test]
    fn config_rejects_inverted_and_huge_bounds() {
        assert_eq!(
            JitterConfig::new(100 * MS, 50 * MS),
            Err(JitterConfigError::MinAboveMax {
                min_ms: 100,
                max_ms: 50
            })
        );
        assert!(matches!(
            JitterConfig::new(20 * MS, 5000 * MS),
            Err(JitterConfigError::TooLarge { .. })
        ));
        assert_eq!(
            JitterConfig::new(40 * MS, 120 * MS).map(|c| c.max_delay),
            Ok(120 * MS)
        );
    }

    #[test]
    fn target_stays_within_configured_bounds() {
        let t0 = Instant::now();
        let config = JitterConfig::new(60 * MS, 100 * MS).expect("valid bounds");
        let mut jb = JitterBuffer::new(8000, 160, config);
        jb.push(&packet(1, 0, 0), t0);
        jb.push(&packet(1, 2, 320), t0 + 40 * MS);
        assert_eq!(jb.stats().target_ms, 60.0);
        // 150 ms of variation, above the maximum.
        jb.push(&packet(1, 1, 160), t0 + 170 * MS);
        assert_eq!(jb.stats().target_ms, 100.0);
    }
}
