//! `sipline loopback`: a call quality measurement without a network or a
//! server. Two user agents in this process call each other over real UDP
//! sockets on 127.0.0.1; their RTP passes through an emulated network
//! ([`crate::media::netem`], one stage per direction: loss, bursts, jitter,
//! reordering, delay, clock drift). Each side sends a known speech-like
//! signal ([`ChirpSequence`]) through encoder → RTP → network → jitter
//! buffer → decoder, and the report compares what was heard with what was
//! sent: the mouth-to-ear delay by cross-correlation, the level, the packet
//! counts, the loss seen and concealed, and the E-model MOS.
//!
//! Timing: a frame read from a source at media tick `t` counts as spoken
//! during [t, t+ptime), a frame written to a sink at tick `t` as heard
//! during [t, t+ptime); there is no device buffering, so the delay is that
//! of the network, the jitter buffer and the tick phase between the two
//! user agents.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;
use tokio::sync::mpsc;

use super::args::LoopbackArgs;
use super::events::{Emitter, describe_end};
use super::exit::Exit;
use crate::media::audio::{
    AudioError, AudioFormat, AudioSink, AudioSource, DeviceChoice, open_capture_detailed,
    open_playback_detailed,
};
use crate::media::codec::CodecKind;
use crate::media::codec::opus::OpusConfig;
use crate::media::netem::{MAX_HOLD, Netem, NetemConfig, NetemStats};
use crate::media::quality;
use crate::media::session::MediaStats;
use crate::media::signal::{ChirpSequence, DelayMatch, find_delay, rms_dbfs};
use crate::sip::Uri;
use crate::transaction::TimerConfig;
use crate::ua::driver::random_seed;
use crate::ua::{MediaIo, Phone, PhoneConfig, PhoneEvent, TappedDatagram, UaConfig, UaEvent};

/// Peak amplitude of the test signal (fraction of full scale).
const AMPLITUDE: f64 = 0.5;
/// Seeds of the two test signals (fixed: every run sends the same audio).
const CALLER_SIGNAL: u64 = 1;
const CALLEE_SIGNAL: u64 = 2;
/// Packetization time of the media tick.
const PTIME: Duration = Duration::from_millis(20);
/// The received signal matches when its normalized cross-correlation with
/// what was sent reaches this, and its level is within `LEVEL_TOLERANCE_DB`.
const MIN_MATCH: f64 = 0.5;
const LEVEL_TOLERANCE_DB: f64 = 3.0;
/// Delay searched beyond what the emulated network adds: the jitter buffer
/// (up to 300 ms when adaptive), tick phase and scheduling.
const SEARCH_MARGIN: Duration = Duration::from_millis(500);
/// Length of the windows at the start and the end of the call whose delay
/// is reported separately (to see drift).
const EDGE_WINDOW: Duration = Duration::from_secs(1);
/// The network emulator may still deliver a fast sender's head start this
/// long after the planned duration (call setup and teardown).
const DRIFT_HORIZON_MARGIN: Duration = Duration::from_secs(10);

/// What one side sent or heard, with the instant of each frame.
#[derive(Debug, Default)]
pub struct Recording {
    /// Sample rate, from the frame size (frames are `PTIME` long).
    pub rate: u32,
    pub samples: Vec<i16>,
    /// Instant of the media tick of each frame, in order.
    pub frame_times: Vec<Instant>,
}

impl Recording {
    fn push(&mut self, pcm: &[i16]) {
        if self.rate == 0 {
            self.rate = frame_rate(pcm.len());
        }
        self.samples.extend_from_slice(pcm);
        self.frame_times.push(Instant::now());
    }

    /// The scheduled instant of the first frame: media ticks are scheduled
    /// every `PTIME` and fire at or after their time, so the earliest
    /// `time(k) − k·PTIME` is the best estimate of when tick 0 was due.
    fn anchor(&self) -> Option<Instant> {
        self.frame_times
            .iter()
            .enumerate()
            .map(|(k, &t)| t.checked_sub(PTIME * k as u32).unwrap_or(t))
            .min()
    }
}

type Shared = Arc<Mutex<Recording>>;

fn snapshot(r: &Shared) -> Recording {
    r.lock()
        .map(|r| Recording {
            rate: r.rate,
            samples: r.samples.clone(),
            frame_times: r.frame_times.clone(),
        })
        .unwrap_or_default()
}

/// The sample rate of `PTIME` frames of `samples` samples.
fn frame_rate(samples: usize) -> u32 {
    u32::try_from(samples as u128 * 1000 / PTIME.as_millis()).unwrap_or(u32::MAX)
}

/// A source of the test signal that keeps what it sent. The signal is made
/// at the rate the call's audio runs at, seen from the first frame's size.
struct SignalSource {
    seed: u64,
    signal: Option<ChirpSequence>,
    sent: Shared,
}

impl AudioSource for SignalSource {
    fn read_frame(&mut self, out: &mut [i16]) {
        let seed = self.seed;
        self.signal
            .get_or_insert_with(|| ChirpSequence::new(seed, AMPLITUDE, frame_rate(out.len())))
            .fill(out);
        if let Ok(mut r) = self.sent.lock() {
            r.push(out);
        }
    }
}

/// A microphone that keeps what it captured (`--device`).
struct TapSource {
    inner: Box<dyn AudioSource>,
    sent: Shared,
}

impl AudioSource for TapSource {
    fn read_frame(&mut self, out: &mut [i16]) {
        self.inner.read_frame(out);
        if let Ok(mut r) = self.sent.lock() {
            r.push(out);
        }
    }
}

/// A sink that keeps what it receives (and optionally passes it on).
struct CaptureSink {
    heard: Shared,
    next: Option<Box<dyn AudioSink>>,
}

impl AudioSink for CaptureSink {
    fn write_frame(&mut self, pcm: &[i16]) -> Result<(), AudioError> {
        if let Ok(mut r) = self.heard.lock() {
            r.push(pcm);
        }
        match self.next.as_mut() {
            Some(n) => n.write_frame(pcm),
            None => Ok(()),
        }
    }

    fn finish(&mut self) -> Result<(), AudioError> {
        match self.next.as_mut() {
            Some(n) => n.finish(),
            None => Ok(()),
        }
    }
}

/// The emulated network as given on the command line.
#[derive(Debug, Clone, Serialize)]
pub struct NetworkReport {
    pub loss_percent: f64,
    /// Mean burst length (Gilbert model), `null` for independent losses.
    pub loss_burst: Option<f64>,
    pub jitter_ms: f64,
    pub reorder_percent: f64,
    pub delay_ms: f64,
    /// How much faster the caller's clock runs than the callee's, in percent.
    pub drift_percent: f64,
    pub seed: u64,
}

/// What one direction of the call delivered.
#[derive(Debug, Serialize)]
pub struct DirectionReport {
    /// Mouth-to-ear delay over the whole call (after the first
    /// `search` window; the mean over 1 s pieces when 2 s or more are
    /// analysed),
    /// in ms; `null` if the signal was not found.
    pub delay_ms: Option<f64>,
    /// The same over the first and the last second analysed.
    pub delay_start_ms: Option<f64>,
    pub delay_end_ms: Option<f64>,
    /// Mouth-to-ear delay minus the mean one-way delay the emulated network
    /// added: the jitter buffer's playout delay plus the tick phase.
    pub playout_delay_ms: Option<f64>,
    /// The receiver's jitter-buffer delay at the end of the call, and the
    /// delay it was aiming at then.
    pub jitter_buffer_ms: f64,
    pub jitter_target_ms: f64,
    /// Seconds into the call of the early look at the receiver (half the
    /// call, at most 10 s; calls of 4 s or more): once its buffer adapted.
    pub early_at_s: Option<f64>,
    /// The jitter-buffer delay then: against `jitter_buffer_ms`, whether
    /// the buffer grew or shrank over the call (clock drift).
    pub jitter_buffer_early_ms: Option<f64>,
    /// The delay the buffer aimed at then (it follows the measured jitter).
    pub jitter_target_early_ms: Option<f64>,
    /// Late packets until then: `late_packets` minus this is what arrived
    /// too late once the buffer had adapted.
    pub late_packets_early: Option<u64>,
    /// Frames the adaptive jitter buffer grew and shrank by.
    pub jitter_grown: u64,
    pub jitter_shrunk: u64,
    /// Mean and largest one-way delay the emulated network added.
    pub network_delay_ms: f64,
    pub network_max_delay_ms: f64,
    pub packets_sent: u64,
    pub packets_received: u64,
    /// RFC 3550 §A.3 cumulative lost, as counted by the receiver.
    pub packets_lost: u64,
    /// `packets_lost` over the packets expected, in percent.
    pub loss_percent: f64,
    /// Packets that arrived after their playout time (lost to lateness).
    pub late_packets: u64,
    pub duplicates: u64,
    /// Frames the decoder concealed (PLC).
    pub concealed_frames: u64,
    /// Lost frames rebuilt from the next packet's in-band FEC (Opus).
    pub fec_recovered: u64,
    /// Loss the E-model is given: lost and late packets not recovered by
    /// FEC, over expected, in percent.
    pub effective_loss_percent: f64,
    /// RFC 3550 §A.8 interarrival jitter seen by the receiver, in ms.
    pub jitter_ms: f64,
    /// Datagrams the emulated network dropped and reordered.
    pub network_dropped: u64,
    pub network_reordered: u64,
    /// Normalized cross-correlation of the received with the sent signal.
    pub match_score: Option<f64>,
    pub sent_dbfs: Option<f64>,
    pub received_dbfs: Option<f64>,
    /// Seconds of received audio analysed.
    pub analysed_s: f64,
    /// ITU-T G.107 E-model estimate; `null` when it cannot be computed.
    pub mos: Option<f64>,
    /// Whether the signal arrived: match and level within tolerance.
    pub signal_ok: bool,
}

/// The loopback report.
#[derive(Debug, Serialize)]
pub struct Report {
    pub codec: String,
    pub duration_s: f64,
    pub network: NetworkReport,
    pub setup_ms: f64,
    pub caller_to_callee: DirectionReport,
    pub callee_to_caller: DirectionReport,
    /// The lower MOS of the two directions.
    pub mos: Option<f64>,
    pub min_mos: Option<f64>,
    pub playback: String,
    pub pass: bool,
    /// Why the check failed, when it did.
    pub failures: Vec<String>,
}

fn phone_config(codec: CodecKind, seed: u64) -> PhoneConfig {
    PhoneConfig {
        bind: "127.0.0.1:0".parse().expect("literal address"),
        ua: UaConfig {
            user: "loopback".into(),
            from: None,
            display_name: None,
            local_port: 0,
            timers: TimerConfig::default(),
            user_agent: super::user_agent(),
            seed,
            route: Vec::new(),
        },
        codecs: vec![codec],
        opus: OpusConfig::default(),
        rtp_timeout: None,
        media_keepalive: None,
        rtcp: Default::default(),
        jitter_buffer: Default::default(),
    }
}

/// The two directions' network configurations: the caller's clock runs
/// `drift` faster, so its packets reach the callee at 1/(1+drift) of their
/// pace, and the callee's packets reach it at (1+drift) of theirs.
fn netem_configs(args: &LoopbackArgs, seed: u64) -> (NetemConfig, NetemConfig) {
    let drift = args.drift / 100.0;
    let base = NetemConfig {
        loss: args.loss / 100.0,
        loss_burst: args.loss_burst,
        delay: Duration::from_secs_f64(args.delay / 1000.0),
        jitter: Duration::from_secs_f64(args.jitter / 1000.0),
        reorder: args.reorder / 100.0,
        drift,
        drift_horizon: Duration::from_secs_f64(args.duration) + DRIFT_HORIZON_MARGIN,
        seed,
    };
    let backward = NetemConfig {
        drift: 1.0 / (1.0 + drift) - 1.0,
        seed: seed ^ 0x9e37_79b9_7f4a_7c15,
        ..base.clone()
    };
    (base, backward)
}

/// The longest delay the analysis searches for.
fn search_bound(net: &NetemConfig) -> Duration {
    let head_start = net
        .drift_horizon
        .mul_f64((net.drift / (1.0 + net.drift)).max(0.0));
    net.delay + net.jitter + head_start + MAX_HOLD + SEARCH_MARGIN
}

/// Carries each phone's tapped media through its direction's emulator and
/// sends it from the call's own socket when due. Ends when both phones
/// have stopped; returns what each emulator did.
async fn relay(
    mut from_caller: mpsc::UnboundedReceiver<TappedDatagram>,
    mut from_callee: mpsc::UnboundedReceiver<TappedDatagram>,
    mut forward: Netem<TappedDatagram>,
    mut backward: Netem<TappedDatagram>,
) -> (NetemStats, NetemStats) {
    let (mut caller_open, mut callee_open) = (true, true);
    while caller_open || callee_open {
        let next = [forward.poll_timeout(), backward.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        let wait = async {
            match next {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            d = from_caller.recv(), if caller_open => match d {
                Some(d) => forward.push(d, Instant::now()),
                None => caller_open = false,
            },
            d = from_callee.recv(), if callee_open => match d {
                Some(d) => backward.push(d, Instant::now()),
                None => callee_open = false,
            },
            _ = wait => {}
        }
        let now = Instant::now();
        for net in [&mut forward, &mut backward] {
            while let Some(d) = net.poll(now) {
                if let Err(e) = d.socket.send_to(&d.datagram, d.dest).await {
                    tracing::debug!("loopback relay to {}: {e}", d.dest);
                }
            }
        }
    }
    (forward.stats(), backward.stats())
}

fn endpoint(signal: u64, sent: Shared, heard: Shared, next: Option<Box<dyn AudioSink>>) -> MediaIo {
    MediaIo {
        source: Box::new(SignalSource {
            seed: signal,
            signal: None,
            sent,
        }),
        sink: Box::new(CaptureSink { heard, next }),
    }
}

/// One direction's inputs to the analysis.
struct Direction<'a> {
    sent: &'a Recording,
    heard: &'a Recording,
    sender: &'a MediaStats,
    receiver: &'a MediaStats,
    /// The receiver's statistics at the early look, and when it was.
    receiver_early: Option<(f64, MediaStats)>,
    network: NetemStats,
    net: &'a NetemConfig,
    codec: CodecKind,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `a − b` in milliseconds, negative when `a` is earlier.
fn signed_ms(a: Instant, b: Instant) -> f64 {
    match a.checked_duration_since(b) {
        Some(d) => ms(d),
        None => -ms(b - a),
    }
}

/// The received audio is matched piece by piece: the delay moves by a
/// frame whenever the adaptive buffer grows, shrinks, or absorbs clock
/// drift, and a single lag cannot match audio on both sides of a step.
const SEGMENT: Duration = Duration::from_secs(1);

/// The sent signal found in `heard[window]`: in one piece when the window
/// is shorter than two segments, else segment by segment, giving the mean
/// delay of the segments found and their mean score (a segment where the
/// signal was not found counts as a score of 0).
fn match_segments(
    sent: &[i16],
    heard: &[i16],
    window: std::ops::Range<usize>,
    max_delay: usize,
    segment: usize,
) -> Option<DelayMatch> {
    if segment == 0 || window.len() < 2 * segment {
        return find_delay(sent, heard, window, max_delay);
    }
    let (mut pieces, mut found, mut delay, mut score) = (0u32, 0u32, 0.0, 0.0);
    let mut start = window.start;
    while start + segment / 2 <= window.end {
        let end = (start + segment).min(window.end);
        pieces += 1;
        if let Some(m) = find_delay(sent, heard, start..end, max_delay) {
            found += 1;
            delay += m.delay_samples;
            score += m.score;
        }
        start = end;
    }
    (found > 0).then(|| DelayMatch {
        delay_samples: delay / f64::from(found),
        score: score / f64::from(pieces),
    })
}

fn analyse(d: Direction<'_>) -> DirectionReport {
    let rate = f64::from(d.sent.rate.max(1));
    let max_delay = (search_bound(d.net).as_secs_f64() * rate) as usize;
    let heard = &d.heard.samples;
    let sent = &d.sent.samples;
    let edge = (EDGE_WINDOW.as_secs_f64() * rate) as usize;
    // Tick phase between the two sides, from when each one's frame 0 was due.
    let offset_ms = match (d.heard.anchor(), d.sent.anchor()) {
        (Some(h), Some(s)) => signed_ms(h, s),
        _ => 0.0,
    };
    let to_ms = |samples: f64| samples / rate * 1000.0 + offset_ms;
    let measurable = heard.len() >= max_delay + edge / 2;
    let segment = (SEGMENT.as_secs_f64() * rate) as usize;
    let whole = measurable
        .then(|| match_segments(sent, heard, max_delay..heard.len(), max_delay, segment))
        .flatten();
    let start = measurable
        .then(|| find_delay(sent, heard, max_delay..max_delay + edge, max_delay))
        .flatten();
    let end = measurable
        .then(|| {
            let from = heard.len().saturating_sub(edge).max(max_delay);
            find_delay(sent, heard, from..heard.len(), max_delay)
        })
        .flatten();
    let (sent_dbfs, received_dbfs) = match whole {
        Some(m) => {
            let lag = m.delay_samples.round().max(0.0) as usize;
            // The sent samples the analysed window matched (the peak may sit
            // half a sample beyond the delays searched).
            let end = heard.len().saturating_sub(lag).min(sent.len());
            let start = max_delay.saturating_sub(lag).min(end);
            let sent_part = &sent[start..end];
            (
                Some(rms_dbfs(sent_part)),
                Some(rms_dbfs(&heard[max_delay..])),
            )
        }
        None => (None, None),
    };
    let delay_ms = whole.map(|m| to_ms(m.delay_samples));
    let network_delay_ms = ms(d.network.mean_delay());
    let r = d.receiver;
    let expected = (r.packets_received - r.duplicates.min(r.packets_received)) + r.packets_lost;
    // RFC 3550 §A.3 counts loss between packets received: when nothing
    // arrived at all, every packet the sender sent was lost.
    let (expected, lost) = if expected == 0 && d.sender.packets_sent > 0 {
        (d.sender.packets_sent, d.sender.packets_sent)
    } else {
        (expected, r.packets_lost)
    };
    let percent = |n: u64| {
        if expected == 0 {
            0.0
        } else {
            100.0 * n as f64 / expected as f64
        }
    };
    let effective_loss_percent = percent((lost + r.late).saturating_sub(r.fec_recovered));
    let signal_ok = whole.is_some_and(|m| m.score >= MIN_MATCH)
        && matches!((sent_dbfs, received_dbfs), (Some(s), Some(h)) if (s - h).abs() <= LEVEL_TOLERANCE_DB);
    DirectionReport {
        delay_ms,
        delay_start_ms: start.map(|m| to_ms(m.delay_samples)),
        delay_end_ms: end.map(|m| to_ms(m.delay_samples)),
        playout_delay_ms: delay_ms.map(|dl| dl - network_delay_ms),
        network_delay_ms,
        jitter_buffer_ms: r.jitter_buffer_ms,
        early_at_s: d.receiver_early.as_ref().map(|e| e.0),
        jitter_buffer_early_ms: d.receiver_early.as_ref().map(|e| e.1.jitter_buffer_ms),
        jitter_target_early_ms: d.receiver_early.as_ref().map(|e| e.1.jitter_target_ms),
        late_packets_early: d.receiver_early.as_ref().map(|e| e.1.late),
        jitter_target_ms: r.jitter_target_ms,
        jitter_grown: r.jitter_grown,
        jitter_shrunk: r.jitter_shrunk,
        network_max_delay_ms: ms(d.network.max_delay),
        packets_sent: d.sender.packets_sent,
        packets_received: r.packets_received,
        packets_lost: lost,
        loss_percent: percent(lost),
        late_packets: r.late,
        duplicates: r.duplicates,
        concealed_frames: r.concealed_frames,
        fec_recovered: r.fec_recovered,
        effective_loss_percent,
        jitter_ms: r.jitter_ms,
        network_dropped: d.network.dropped,
        network_reordered: d.network.reordered,
        match_score: whole.map(|m| m.score),
        sent_dbfs,
        received_dbfs,
        analysed_s: heard.len().saturating_sub(max_delay) as f64 / rate,
        mos: delay_ms.map(|dl| estimate_mos(d.codec, dl, effective_loss_percent, Some(d.net))),
        signal_ok,
    }
}

/// The ITU-T G.107 E-model MOS ([`quality::mos`]) for the measured
/// mouth-to-ear delay plus one packetization time (a real microphone
/// delivers a frame only once it is complete; the test signal source has no
/// such wait) and the effective loss. With `--loss-burst` the Gilbert
/// model's BurstR = 1/(p + r) (G.107 §3.6) is used.
fn estimate_mos(
    codec: CodecKind,
    delay_ms: f64,
    loss_percent: f64,
    burst: Option<&NetemConfig>,
) -> f64 {
    let one_way = quality::one_way_delay_ms(0.0, delay_ms, ms(PTIME));
    let mut inputs = quality::QualityInputs::new(
        quality::CodecImpairment::for_encoding(codec.encoding_name(), true),
        one_way,
        loss_percent,
    );
    if let Some(net) = burst
        && let Some(b) = net.loss_burst
        && net.loss > 0.0
        && net.loss < 1.0
    {
        let r = 1.0 / b;
        let p = (r * net.loss / (1.0 - net.loss)).min(1.0);
        inputs.burst_ratio = (1.0 / (p + r)).max(1.0);
    }
    quality::mos(&inputs)
}

pub async fn run(args: LoopbackArgs, emit: Emitter) -> Exit {
    let codec: CodecKind = args.codec.into();
    // The rate the phones run their audio at (48 kHz for Opus).
    let format = AudioFormat::for_codecs(&[codec]);
    let seed = args.seed.unwrap_or_else(random_seed);
    let (forward_cfg, backward_cfg) = netem_configs(&args, seed);
    let (forward, backward) = match (
        Netem::new(forward_cfg.clone()),
        Netem::new(backward_cfg.clone()),
    ) {
        (Ok(f), Ok(b)) => (f, b),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!("{e}");
            return Exit::Usage;
        }
    };
    let (caller_tap, caller_tapped) = mpsc::unbounded_channel();
    let (callee_tap, callee_tapped) = mpsc::unbounded_channel();
    let (callee, mut callee_events) =
        match Phone::start_with_rtp_tap(phone_config(codec, random_seed()), Some(callee_tap)).await
        {
            Ok(p) => p,
            Err(e) => {
                tracing::error!("{e}");
                return Exit::Network;
            }
        };
    let (caller, mut caller_events) =
        match Phone::start_with_rtp_tap(phone_config(codec, random_seed()), Some(caller_tap)).await
        {
            Ok(p) => p,
            Err(e) => {
                tracing::error!("{e}");
                return Exit::Network;
            }
        };
    // --device: the caller speaks from the microphone and the callee plays
    // on the speaker; both must open, since the user asked for them.
    let mut microphone: Option<Box<dyn AudioSource>> = None;
    let mut device_speaker: Option<Box<dyn AudioSink>> = None;
    if let Some(name) = &args.device {
        let choice: DeviceChoice = name.parse().unwrap_or(DeviceChoice::Default);
        let mic = open_capture_detailed(&choice, format);
        let speaker = open_playback_detailed(&choice, format);
        match (mic, speaker) {
            (Ok(m), Ok(s)) if m.fallback.is_none() && s.fallback.is_none() => {
                microphone = Some(m.endpoint);
                device_speaker = Some(s.endpoint);
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!("loopback --device {name}: {e}");
                return Exit::Audio;
            }
            (Ok(m), Ok(s)) => {
                let why = m.fallback.or(s.fallback).map(|e| e.to_string());
                tracing::error!(
                    "loopback --device {name}: no usable sound card ({})",
                    why.unwrap_or_default()
                );
                return Exit::Audio;
            }
        }
    }
    let relay = tokio::spawn(relay(caller_tapped, callee_tapped, forward, backward));
    // The callee plays what it hears on the sound card when there is one.
    let (speaker, playback) = if let (Some(name), Some(s)) = (&args.device, device_speaker) {
        (
            Some(s),
            format!("device {name} (the caller speaks from its microphone)"),
        )
    } else if args.null_audio {
        (None, "off (--null-audio)".to_string())
    } else {
        match open_playback_detailed(&DeviceChoice::Default, format) {
            Ok(o) if o.fallback.is_none() => (Some(o.endpoint), "default sound card".to_string()),
            Ok(o) => (
                None,
                format!(
                    "none ({})",
                    o.fallback.map(|e| e.to_string()).unwrap_or_default()
                ),
            ),
            Err(e) => (None, format!("none ({e})")),
        }
    };
    let [caller_sent, caller_heard, callee_sent, callee_heard]: [Shared; 4] = Default::default();
    let target = format!("sip:loopback@{}", callee.local_addr());
    if Uri::parse(&target).is_err() {
        return Exit::Internal;
    }
    let network = NetworkReport {
        loss_percent: args.loss,
        loss_burst: args.loss_burst,
        jitter_ms: args.jitter,
        reorder_percent: args.reorder,
        delay_ms: args.delay,
        drift_percent: args.drift,
        seed,
    };
    emit.emit(
        "calling",
        json!({"uri": target, "codec": codec.encoding_name(), "network": network}),
        &format!(
            "loopback: calling {target} with {}, network: {}",
            codec.encoding_name(),
            describe_network(&network)
        ),
    );
    let started = Instant::now();
    let mut caller_io = endpoint(
        CALLER_SIGNAL,
        caller_sent.clone(),
        caller_heard.clone(),
        None,
    );
    if let Some(mic) = microphone {
        caller_io.source = Box::new(TapSource {
            inner: mic,
            sent: caller_sent.clone(),
        });
    }
    let call = match caller.dial(&target, caller_io).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            return Exit::Network;
        }
    };
    let mut speaker = speaker;
    let mut setup = None;
    let mut hangup_at: Option<Instant> = None;
    let give_up = Instant::now() + Duration::from_secs_f64(args.duration.max(0.0) + 40.0);
    let mut caller_stats: Option<MediaStats> = None;
    let mut callee_stats: Option<MediaStats> = None;
    let mut caller_end = None;
    let mut callee_done = false;
    let mut callee_call = None;
    // Calls of 4 s or more look at both receivers once their buffers have
    // adapted (half the call, at most 10 s in), to compare with the end.
    let early_after = Duration::from_secs_f64((args.duration / 2.0).min(10.0));
    let mut sample_at: Option<Instant> = None;
    let mut early: (Option<MediaStats>, Option<MediaStats>) = (None, None);
    while caller_end.is_none() || !callee_done {
        let wake = hangup_at.unwrap_or(give_up).min(give_up);
        let sample_wake = sample_at.unwrap_or(give_up);
        tokio::select! {
            _ = tokio::time::sleep_until(sample_wake.into()), if sample_at.is_some() => {
                sample_at = None;
                let caller_now = caller.stats(call).await;
                let callee_now = match callee_call {
                    Some(c) => callee.stats(c).await,
                    None => None,
                };
                early = (callee_now, caller_now);
            }
            Some(ev) = callee_events.recv() => match ev {
                PhoneEvent::Ua(UaEvent::IncomingCall { call, .. }) => {
                    callee_call = Some(call);
                    let io = endpoint(CALLEE_SIGNAL, callee_sent.clone(), callee_heard.clone(), speaker.take());
                    if let Err(e) = callee.answer(call, io).await {
                        tracing::error!("callee cannot answer: {e}");
                    }
                }
                PhoneEvent::CallEnded { stats, .. } => {
                    callee_stats = stats;
                    callee_done = true;
                }
                _ => {}
            },
            Some(ev) = caller_events.recv() => match ev {
                PhoneEvent::Ua(UaEvent::Answered { .. }) => {
                    setup = Some(started.elapsed());
                    hangup_at = Some(Instant::now() + Duration::from_secs_f64(args.duration.max(0.0)));
                    if args.duration >= 4.0 {
                        sample_at = Some(Instant::now() + early_after);
                    }
                }
                PhoneEvent::CallEnded { reason, stats, .. } => {
                    caller_stats = stats;
                    caller_end = Some(reason);
                }
                _ => {}
            },
            _ = tokio::time::sleep_until(wake.into()) => {
                if Instant::now() >= give_up {
                    tracing::error!("loopback call did not complete");
                    break;
                }
                hangup_at = None;
                caller.hangup(call);
            }
        }
    }
    caller.shutdown().await;
    callee.shutdown().await;
    let (forward_net, backward_net) = relay.await.unwrap_or_default();
    let Some(setup) = setup else {
        let why = caller_end
            .as_ref()
            .map(describe_end)
            .unwrap_or_else(|| "no answer".into());
        emit.emit(
            "loopback_failed",
            json!({"reason": why}),
            &format!("loopback call failed: {why}"),
        );
        return Exit::CheckFailed;
    };
    let a = caller_stats.unwrap_or_default();
    let b = callee_stats.unwrap_or_default();
    let (a_sent, a_heard) = (snapshot(&caller_sent), snapshot(&caller_heard));
    let (b_sent, b_heard) = (snapshot(&callee_sent), snapshot(&callee_heard));
    let forward = analyse(Direction {
        sent: &a_sent,
        heard: &b_heard,
        sender: &a,
        receiver: &b,
        receiver_early: early.0.map(|s| (early_after.as_secs_f64(), s)),
        network: forward_net,
        net: &forward_cfg,
        codec,
    });
    let backward = analyse(Direction {
        sent: &b_sent,
        heard: &a_heard,
        sender: &b,
        receiver: &a,
        receiver_early: early.1.map(|s| (early_after.as_secs_f64(), s)),
        network: backward_net,
        net: &backward_cfg,
        codec,
    });
    let report = build_report(codec, &args, network, setup, forward, backward, playback);
    emit.emit(
        "loopback_report",
        serde_json::to_value(&report).unwrap_or_default(),
        &human_report(&report),
    );
    if report.pass {
        Exit::Ok
    } else {
        Exit::CheckFailed
    }
}

fn build_report(
    codec: CodecKind,
    args: &LoopbackArgs,
    network: NetworkReport,
    setup: Duration,
    forward: DirectionReport,
    backward: DirectionReport,
    playback: String,
) -> Report {
    let mut failures = Vec::new();
    for (name, d) in [
        ("caller -> callee", &forward),
        ("callee -> caller", &backward),
    ] {
        // With --device the caller sends whatever the microphone picks up
        // (maybe silence): only the test signal's direction must match.
        let microphone = args.device.is_some() && name == "caller -> callee";
        if !d.signal_ok && !microphone {
            failures.push(format!(
                "{name}: the test signal did not arrive (match {} below {MIN_MATCH} or level off by more than {LEVEL_TOLERANCE_DB} dB)",
                d.match_score.map_or("none".into(), |s| format!("{s:.2}"))
            ));
        }
    }
    let mos = match (forward.mos, backward.mos) {
        (Some(f), Some(b)) => Some(f.min(b)),
        _ => None,
    };
    if let Some(min) = args.min_mos {
        match mos {
            Some(m) if m >= min => {}
            Some(m) => failures.push(format!("MOS {m:.2} is below --min-mos {min}")),
            None => failures.push(format!("no MOS estimate to compare with --min-mos {min}")),
        }
    }
    Report {
        codec: codec.encoding_name().into(),
        duration_s: args.duration,
        network,
        setup_ms: ms(setup),
        caller_to_callee: forward,
        callee_to_caller: backward,
        mos,
        min_mos: args.min_mos,
        playback,
        pass: failures.is_empty(),
        failures,
    }
}

fn describe_network(n: &NetworkReport) -> String {
    let mut parts = Vec::new();
    if n.loss_percent > 0.0 {
        parts.push(match n.loss_burst {
            Some(b) => format!("loss {} % in bursts of {b} packets", n.loss_percent),
            None => format!("loss {} % random", n.loss_percent),
        });
    }
    if n.delay_ms > 0.0 {
        parts.push(format!("delay {} ms", n.delay_ms));
    }
    if n.jitter_ms > 0.0 {
        parts.push(format!("jitter 0-{} ms", n.jitter_ms));
    }
    if n.reorder_percent > 0.0 {
        parts.push(format!("reorder {} %", n.reorder_percent));
    }
    if n.drift_percent != 0.0 {
        parts.push(format!("caller clock drift {:+} %", n.drift_percent));
    }
    if parts.is_empty() {
        "perfect".into()
    } else {
        format!("{} (seed {})", parts.join(", "), n.seed)
    }
}

fn opt(v: Option<f64>, unit: &str) -> String {
    v.map_or("n/a".into(), |v| format!("{v:.1}{unit}"))
}

fn human_direction(name: &str, d: &DirectionReport) -> String {
    format!(
        "  {name}:\n    mouth-to-ear delay  {} (first second {}, last second {})\n    \
         playout delay       {} (network added {:.1} ms on average, {:.1} ms at most)\n    \
         jitter buffer       {:.1} ms at the end{} (target {:.1} ms; grew {} frames, shrank {})\n    \
         packets             sent {}, received {}, lost {} ({:.1} %), late {}{}, duplicates {}\n    \
         network emulator    dropped {}, reordered {}\n    \
         concealed frames    {}, recovered by FEC {} (effective loss {:.1} %)\n    \
         jitter (RFC 3550)   {:.1} ms\n    \
         signal              match {}, sent {} dBFS, heard {} dBFS over {:.1} s: {}\n    \
         MOS (E-model)       {}",
        opt(d.delay_ms, " ms"),
        opt(d.delay_start_ms, " ms"),
        opt(d.delay_end_ms, " ms"),
        opt(d.playout_delay_ms, " ms"),
        d.network_delay_ms,
        d.network_max_delay_ms,
        d.jitter_buffer_ms,
        match (d.early_at_s, d.jitter_buffer_early_ms) {
            (Some(t), Some(b)) => format!(", {b:.1} ms {t:.0} s in"),
            _ => String::new(),
        },
        d.jitter_target_ms,
        d.jitter_grown,
        d.jitter_shrunk,
        d.packets_sent,
        d.packets_received,
        d.packets_lost,
        d.loss_percent,
        d.late_packets,
        match (d.early_at_s, d.late_packets_early) {
            (Some(t), Some(l)) => format!(
                " ({} after the first {t:.0} s)",
                d.late_packets.saturating_sub(l)
            ),
            _ => String::new(),
        },
        d.duplicates,
        d.network_dropped,
        d.network_reordered,
        d.concealed_frames,
        d.fec_recovered,
        d.effective_loss_percent,
        d.jitter_ms,
        d.match_score.map_or("none".into(), |s| format!("{s:.2}")),
        opt(d.sent_dbfs, ""),
        opt(d.received_dbfs, ""),
        d.analysed_s,
        if d.signal_ok { "OK" } else { "MISMATCH" },
        d.mos.map_or("n/a".into(), |m| format!("{m:.2}")),
    )
}

fn human_report(r: &Report) -> String {
    let mut out = format!(
        "loopback report ({}, {:.1} s)\n  network: {}\n  call setup: {:.1} ms\n{}\n{}\n  playback: {}\n",
        r.codec,
        r.duration_s,
        describe_network(&r.network),
        r.setup_ms,
        human_direction("caller -> callee", &r.caller_to_callee),
        human_direction("callee -> caller", &r.callee_to_caller),
        r.playback,
    );
    if let Some(m) = r.mos {
        out.push_str(&format!("  MOS (lower direction): {m:.2}\n"));
    }
    for f in &r.failures {
        out.push_str(&format!("  {f}\n"));
    }
    out.push_str(if r.pass {
        "result: PASS"
    } else {
        "result: FAIL"
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> LoopbackArgs {
        let mut argv = vec!["sipline", "loopback"];
        argv.extend_from_slice(extra);
        match super::super::args::Cli::parse_from(argv).command {
            Some(super::super::args::Command::Loopback(a)) => a,
            _ => panic!("loopback command"),
        }
    }

    /// A recording of `samples` in 20 ms frames whose ticks were due from
    /// `start`, every odd one firing `late` after its time.
    fn recording(samples: Vec<i16>, start: Instant, late: Duration) -> Recording {
        let frames = samples.len() / 160;
        Recording {
            rate: 8000,
            samples,
            frame_times: (0..frames as u32)
                .map(|k| start + PTIME * k + late * (k % 2))
                .collect(),
        }
    }

    #[test]
    fn caller_drift_speeds_one_direction_and_slows_the_other() {
        let (forward, backward) = netem_configs(&args(&["--drift", "0.1", "--seed", "9"]), 9);
        assert!((forward.drift - 0.001).abs() < 1e-12);
        assert!((backward.drift - (1.0 / 1.001 - 1.0)).abs() < 1e-12);
        assert_ne!(forward.seed, backward.seed, "directions lose independently");
        assert_eq!(forward.drift_horizon, Duration::from_secs(13));
        // The fast direction's head start widens the search.
        assert!(search_bound(&forward) > search_bound(&backward));
        assert!(netem_configs(&args(&[]), 1).0.is_transparent());
    }

    #[test]
    fn analysis_adds_the_tick_offset_between_the_sides_to_the_signal_delay() {
        let t0 = Instant::now();
        let mut sent = vec![0; 8000 * 3];
        ChirpSequence::new(CALLER_SIGNAL, AMPLITUDE, 8000).fill(&mut sent);
        // Heard 400 samples (50 ms) later, by a side whose ticks are 7 ms
        // behind the sender's and sometimes fire 3 ms late (which does not
        // move when they were due).
        let mut heard = vec![0; 400];
        heard.extend_from_slice(&sent[..sent.len() - 400]);
        let sent = recording(sent, t0, Duration::ZERO);
        let heard = recording(
            heard,
            t0 + Duration::from_millis(7),
            Duration::from_millis(3),
        );
        let receiver = MediaStats {
            packets_received: 150,
            packets_lost: 0,
            ..MediaStats::default()
        };
        let net = NetemConfig::default();
        let report = analyse(Direction {
            sent: &sent,
            heard: &heard,
            sender: &MediaStats::default(),
            receiver: &receiver,
            receiver_early: None,
            network: NetemStats::default(),
            net: &net,
            codec: CodecKind::Pcmu,
        });
        let delay = report.delay_ms.expect("signal found");
        assert!((delay - 57.0).abs() < 0.2, "{report:?}");
        for edge in [report.delay_start_ms, report.delay_end_ms] {
            assert!((edge.expect("found") - 57.0).abs() < 0.2, "{report:?}");
        }
        assert!(report.signal_ok);
        assert!(report.match_score.expect("score") > 0.99);
        let mos = report.mos.expect("MOS");
        assert!(mos > 4.3 && mos < 4.5, "{mos}");
    }

    #[test]
    fn a_delay_that_steps_mid_call_is_matched_piece_by_piece() {
        // 30 s of test signal heard 40 ms late for 15 s, then 60 ms late
        // (a buffer that stretched one frame to absorb clock drift).
        let rate = 8000;
        let mut sent = vec![0i16; rate * 30];
        ChirpSequence::new(CALLER_SIGNAL, AMPLITUDE, rate as u32).fill(&mut sent);
        let mut heard = vec![0i16; rate * 30];
        for (j, h) in heard.iter_mut().enumerate() {
            let lag = if j < rate * 15 { 320 } else { 480 };
            *h = j.checked_sub(lag).map_or(0, |i| sent[i]);
        }
        let window = 1600..heard.len();
        let segment = rate * 5;
        let m = match_segments(&sent, &heard, window.clone(), 1600, segment).expect("found");
        assert!(m.score > 0.9, "{m:?}");
        assert!((m.delay_samples - 400.0).abs() < 40.0, "{m:?}");
        // In one piece, the step costs the match half its score.
        let one = find_delay(&sent, &heard, window, 1600).expect("found");
        assert!(one.score < 0.8, "{one:?}");
    }

    #[test]
    fn silence_received_fails_the_signal_check_and_min_mos_needs_a_mos() {
        let t0 = Instant::now();
        let mut sent = vec![0; 8000 * 2];
        ChirpSequence::new(CALLER_SIGNAL, AMPLITUDE, 8000).fill(&mut sent);
        let sent = recording(sent, t0, Duration::ZERO);
        let heard = recording(vec![0; 8000 * 2], t0, Duration::ZERO);
        let net = NetemConfig::default();
        let nothing = MediaStats::default();
        let direction = || Direction {
            sent: &sent,
            heard: &heard,
            sender: &nothing,
            receiver: &nothing,
            receiver_early: None,
            network: NetemStats::default(),
            net: &net,
            codec: CodecKind::Pcmu,
        };
        let report = analyse(direction());
        assert!(!report.signal_ok);
        assert_eq!((report.delay_ms, report.mos), (None, None));
        let a = args(&["--min-mos", "3"]);
        let network = NetworkReport {
            loss_percent: 0.0,
            loss_burst: None,
            jitter_ms: 0.0,
            reorder_percent: 0.0,
            delay_ms: 0.0,
            drift_percent: 0.0,
            seed: 1,
        };
        let r = build_report(
            CodecKind::Pcmu,
            &a,
            network,
            Duration::from_millis(2),
            report,
            analyse(direction()),
            "off".into(),
        );
        assert!(!r.pass);
        assert_eq!(r.failures.len(), 3, "{:?}", r.failures);
        assert!(r.failures[2].contains("no MOS estimate"));
        assert!(human_report(&r).ends_with("result: FAIL"));
    }
}
