//! `sipline loopback`: two user agents in this process call each other
//! over real UDP sockets on 127.0.0.1. Each sends a tone through encoder →
//! RTP → jitter buffer → decoder, and the received audio is checked for its
//! frequency and level.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;

use super::args::LoopbackArgs;
use super::events::{Emitter, describe_end};
use super::exit::Exit;
use crate::media::audio::{
    AudioError, AudioFormat, AudioSink, AudioSource, DeviceChoice, open_playback_detailed,
};
use crate::media::codec::CodecKind;
use crate::media::codec::opus::OpusConfig;
use crate::media::session::MediaStats;
use crate::media::signal::{ToneGenerator, dominant_frequency, rms_dbfs};
use crate::sip::Uri;
use crate::transaction::TimerConfig;
use crate::ua::driver::random_seed;
use crate::ua::{MediaIo, Phone, PhoneConfig, PhoneEvent, UaConfig, UaEvent};

/// Peak amplitude of the test tones (fraction of full scale).
const AMPLITUDE: f64 = 0.5;
const CALLER_TONE_HZ: f64 = 1000.0;
const CALLEE_TONE_HZ: f64 = 440.0;
/// Tolerances of the check: frequency within 2 %, level within 3 dB.
const FREQ_TOLERANCE: f64 = 0.02;
const LEVEL_TOLERANCE_DB: f64 = 3.0;

/// A sine source.
pub struct ToneSource(pub ToneGenerator);

impl AudioSource for ToneSource {
    fn read_frame(&mut self, out: &mut [i16]) {
        self.0.fill(out);
    }
}

/// A sink that keeps what it receives (and optionally passes it on).
pub struct CaptureSink {
    pub buf: Arc<Mutex<Vec<i16>>>,
    pub next: Option<Box<dyn AudioSink>>,
}

impl AudioSink for CaptureSink {
    fn write_frame(&mut self, pcm: &[i16]) -> Result<(), AudioError> {
        if let Ok(mut b) = self.buf.lock() {
            b.extend_from_slice(pcm);
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

/// What one direction of the call delivered.
#[derive(Debug, Serialize)]
pub struct DirectionReport {
    pub sent_hz: f64,
    pub sent_dbfs: f64,
    pub received_hz: f64,
    pub received_dbfs: f64,
    pub analysed_s: f64,
    pub packets_sent: u64,
    pub packets_received: u64,
    pub packets_lost: u64,
    pub ok: bool,
}

/// The loopback report.
#[derive(Debug, Serialize)]
pub struct Report {
    pub codec: String,
    pub setup_ms: f64,
    pub caller_to_callee: DirectionReport,
    pub callee_to_caller: DirectionReport,
    pub playback: String,
    pub pass: bool,
}

fn phone_config(codec: CodecKind) -> PhoneConfig {
    PhoneConfig {
        bind: "127.0.0.1:0".parse().expect("literal address"),
        ua: UaConfig {
            user: "loopback".into(),
            from: None,
            display_name: None,
            local_port: 0,
            timers: TimerConfig::default(),
            user_agent: super::user_agent(),
            seed: random_seed(),
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

/// Measures the received tone after its onset (skipping 100 ms of
/// settling) and compares it with what was sent.
fn analyse(
    received: &[i16],
    format: AudioFormat,
    sent_hz: f64,
    sent: &DirectionStats,
) -> DirectionReport {
    let frame = format.frame_samples;
    let onset = received
        .chunks(frame)
        .position(|f| rms_dbfs(f) > -40.0)
        .map(|i| i * frame)
        .unwrap_or(received.len());
    let settle = format.rate as usize / 10;
    let start = (onset + settle).min(received.len());
    let end = received.len().saturating_sub(settle).max(start);
    let part = &received[start..end];
    let sent_dbfs = rms_dbfs(&crate::media::signal::sine(
        sent_hz,
        AMPLITUDE,
        format.rate,
        format.rate as usize,
    ));
    let received_hz = if part.len() > format.rate as usize / 4 {
        dominant_frequency(part, format.rate)
    } else {
        0.0
    };
    let received_dbfs = rms_dbfs(part);
    let ok = (received_hz - sent_hz).abs() <= sent_hz * FREQ_TOLERANCE
        && (received_dbfs - sent_dbfs).abs() <= LEVEL_TOLERANCE_DB;
    DirectionReport {
        sent_hz,
        sent_dbfs,
        received_hz,
        received_dbfs,
        analysed_s: part.len() as f64 / f64::from(format.rate),
        packets_sent: sent.sent,
        packets_received: sent.received,
        packets_lost: sent.lost,
        ok,
    }
}

#[derive(Default)]
struct DirectionStats {
    sent: u64,
    received: u64,
    lost: u64,
}

/// A tone source and a capturing sink at `format` (the call's audio rate:
/// 48 kHz for Opus, 8 kHz for G.711).
fn endpoint(
    format: AudioFormat,
    tone_hz: f64,
    buf: Arc<Mutex<Vec<i16>>>,
    next: Option<Box<dyn AudioSink>>,
) -> MediaIo {
    MediaIo {
        source: Box::new(ToneSource(ToneGenerator::new(
            tone_hz,
            AMPLITUDE,
            format.rate,
        ))),
        sink: Box::new(CaptureSink { buf, next }),
    }
}

pub async fn run(args: LoopbackArgs, emit: Emitter) -> Exit {
    let codec: CodecKind = args.codec.into();
    let format = AudioFormat::for_codecs(&[codec]);
    let (callee, mut callee_events) = match Phone::start(phone_config(codec)).await {
        Ok(p) => p,
        Err(e) => {
            tracing::error!("{e}");
            return Exit::Network;
        }
    };
    let (caller, mut caller_events) = match Phone::start(phone_config(codec)).await {
        Ok(p) => p,
        Err(e) => {
            tracing::error!("{e}");
            return Exit::Network;
        }
    };
    // The callee plays what it hears on the sound card when there is one.
    let (speaker, playback) = if args.null_audio {
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
    let heard_by_callee = Arc::new(Mutex::new(Vec::new()));
    let heard_by_caller = Arc::new(Mutex::new(Vec::new()));
    let target = format!("sip:loopback@{}", callee.local_addr());
    if Uri::parse(&target).is_err() {
        return Exit::Internal;
    }
    emit.emit(
        "calling",
        json!({"uri": target, "codec": codec.encoding_name()}),
        &format!(
            "loopback: calling {target} with {} ({CALLER_TONE_HZ} Hz one way, {CALLEE_TONE_HZ} Hz back)",
            codec.encoding_name()
        ),
    );
    let started = Instant::now();
    let call = match caller
        .dial(
            &target,
            endpoint(format, CALLER_TONE_HZ, heard_by_caller.clone(), None),
        )
        .await
    {
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
    while caller_end.is_none() || !callee_done {
        let wake = hangup_at.unwrap_or(give_up).min(give_up);
        tokio::select! {
            Some(ev) = callee_events.recv() => match ev {
                PhoneEvent::Ua(UaEvent::IncomingCall { call, .. }) => {
                    let io = endpoint(format, CALLEE_TONE_HZ, heard_by_callee.clone(), speaker.take());
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
    let forward = analyse(
        &heard_by_callee
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default(),
        format,
        CALLER_TONE_HZ,
        &DirectionStats {
            sent: a.packets_sent,
            received: b.packets_received,
            lost: b.packets_lost,
        },
    );
    let backward = analyse(
        &heard_by_caller
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default(),
        format,
        CALLEE_TONE_HZ,
        &DirectionStats {
            sent: b.packets_sent,
            received: a.packets_received,
            lost: a.packets_lost,
        },
    );
    let report = Report {
        codec: codec.encoding_name().into(),
        setup_ms: setup.as_secs_f64() * 1000.0,
        pass: forward.ok && backward.ok,
        caller_to_callee: forward,
        callee_to_caller: backward,
        playback,
    };
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

fn human_direction(name: &str, d: &DirectionReport) -> String {
    format!(
        "  {name}: sent {} packets, received {}, lost {}; tone {:.0} Hz at {:.1} dBFS, heard {:.1} Hz at {:.1} dBFS over {:.1} s: {}",
        d.packets_sent,
        d.packets_received,
        d.packets_lost,
        d.sent_hz,
        d.sent_dbfs,
        d.received_hz,
        d.received_dbfs,
        d.analysed_s,
        if d.ok { "OK" } else { "MISMATCH" }
    )
}

fn human_report(r: &Report) -> String {
    format!(
        "loopback report ({})\n  call setup: {:.1} ms\n{}\n{}\n  playback: {}\nresult: {}",
        r.codec,
        r.setup_ms,
        human_direction("caller -> callee", &r.caller_to_callee),
        human_direction("callee -> caller", &r.callee_to_caller),
        r.playback,
        if r.pass { "PASS" } else { "FAIL" }
    )
}
