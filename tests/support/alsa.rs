//! A virtual ALSA sound card for tests, plus the signal helpers to check what went through it.
//!
//! How it works: [`VirtualCard::new`] writes an ALSA configuration into a temporary directory.
//! A process started with `ALSA_CONFIG_PATH=<that file>` (which replaces the system's ALSA
//! configuration) sees one `default` device: an `asym` whose playback side is a `plug` over a
//! `file` plugin writing raw S16_LE 48 kHz mono to the file named by [`PLAYBACK_ENV`], and whose
//! capture side is a `plug` over a `file` plugin reading raw S16_LE 48 kHz mono from the file
//! named by [`CAPTURE_ENV`]. Both `file` plugins sit on a `null` slave, so no hardware is
//! involved. The file names are read with `@func getenv` when the device is opened, so one
//! config serves every test; the environment decides where audio goes.
//!
//! The `null` slave runs faster than real time, so:
//! - playback: set [`PLAYBACK_ENV`] to [`paced_writer_command`], a `|command` the file plugin
//!   pipes into; the command (this test binary, re-run as the [`pacer_entry`] test) reads its
//!   stdin at 96000 bytes/s and writes a raw file. The pipe buffer lets ~0.7 s through early.
//! - capture: point [`CAPTURE_ENV`] at a FIFO fed by [`FifoFeeder`], which writes 20 ms chunks
//!   every 20 ms and reopens the FIFO when the reader goes away (cpal opens the device twice).
//!
//! Environment variables are process-wide and ALSA reads its config once, so each scenario runs
//! in a child process of the test binary: [`run_child`] re-runs one test with
//! [`CHILD_ENV`] set, and the test checks [`is_child`] to know which half it is. A test that
//! runs the `sipline` binary instead just passes [`VirtualCard::env`] to that command.
//!
//! Usage (see `tests/audio_device.rs`):
//!
//! ```ignore
//! #[path = "support/alsa.rs"]
//! mod alsa;
//!
//! #[test]
//! fn alsa_pacer() { alsa::pacer_entry() } // needed once per test binary for paced playback
//!
//! let card = alsa::VirtualCard::new();
//! let played = card.dir().join("played.raw");               // raw S16_LE 48 kHz mono
//! let env = card.env(&alsa::paced_writer_command(&played, "alsa_pacer"), Path::new("/dev/zero"));
//! Command::new(env!("CARGO_BIN_EXE_sipline")).envs(env.iter().map(|(k, v)| (k, v)))...;
//! let samples = alsa::read_s16le(&played);
//! assert!((alsa::dominant_frequency(&samples[a..b], 48_000) - 1000.0).abs() < 20.0);
//! ```

#![allow(dead_code)]

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// File (or `|command`) the virtual card's playback writes to.
pub const PLAYBACK_ENV: &str = "SIPLINE_ALSA_PLAYBACK";
/// File (or FIFO) the virtual card's capture reads from.
pub const CAPTURE_ENV: &str = "SIPLINE_ALSA_CAPTURE";
/// Set in a child process started by [`run_child`].
pub const CHILD_ENV: &str = "SIPLINE_ALSA_CHILD";
/// Set in the pacer process: where it writes what it reads.
pub const PACER_OUT_ENV: &str = "SIPLINE_ALSA_PACER_OUT";
/// The virtual card's rate (raw files are S16_LE mono at this rate).
pub const CARD_RATE: u32 = 48_000;
/// Bytes of raw audio per 20 ms at the card's rate.
pub const CHUNK_BYTES: usize = (CARD_RATE as usize / 50) * 2;

/// The ALSA configuration: a default duplex device over two `file` plugins.
pub const CONFIG: &str = r#"
pcm.!default {
    type asym
    playback.pcm "sipline_playback"
    capture.pcm "sipline_capture"
    hint { show on description "sipline virtual card" }
}
pcm.sipline_playback {
    type plug
    slave {
        pcm {
            type file
            slave.pcm { type null }
            format raw
            file { @func getenv vars [ SIPLINE_ALSA_PLAYBACK ] default "/dev/null" }
        }
        format S16_LE
        rate 48000
        channels 1
    }
    hint { show on description "sipline virtual playback" }
}
pcm.sipline_capture {
    type plug
    slave {
        pcm {
            type file
            slave.pcm { type null }
            format raw
            file "/dev/null"
            infile { @func getenv vars [ SIPLINE_ALSA_CAPTURE ] default "/dev/zero" }
        }
        format S16_LE
        rate 48000
        channels 1
    }
    hint { show on description "sipline virtual capture" }
}
"#;

/// A temporary directory holding the card's config; put test files in [`VirtualCard::dir`].
pub struct VirtualCard {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl VirtualCard {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("create temp dir");
        let config = dir.path().join("asound.conf");
        std::fs::write(&config, CONFIG).expect("write ALSA config");
        VirtualCard { dir, config }
    }

    /// A card with no usable device: an empty ALSA configuration.
    pub fn without_devices() -> Self {
        let dir = tempfile::tempdir().expect("create temp dir");
        let config = dir.path().join("asound.conf");
        std::fs::write(&config, "# no devices\n").expect("write ALSA config");
        VirtualCard { dir, config }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config(&self) -> &Path {
        &self.config
    }

    /// `ALSA_CONFIG_PATH` plus the two file variables, for a child process.
    pub fn env(&self, playback: &str, capture: &Path) -> Vec<(String, OsString)> {
        vec![
            ("ALSA_CONFIG_PATH".into(), self.config.clone().into()),
            (PLAYBACK_ENV.into(), playback.into()),
            (CAPTURE_ENV.into(), capture.into()),
        ]
    }
}

/// True in a process started by [`run_child`].
pub fn is_child() -> bool {
    std::env::var_os(CHILD_ENV).is_some()
}

/// Re-runs the test named `test` (a top-level `#[test] fn` of the current test binary) in a
/// child process with `env` added and [`CHILD_ENV`] set; returns its output.
pub fn run_child(test: &str, env: &[(String, OsString)]) -> Output {
    let exe = std::env::current_exe().expect("test binary path");
    Command::new(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("run test binary as a child")
}

/// Panics with the child's output unless it succeeded.
pub fn assert_child_ok(out: &Output) {
    assert!(
        out.status.success(),
        "child failed: {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `|command` for [`PLAYBACK_ENV`] that writes playback to `out` at real-time speed.
/// The current test binary must contain `#[test] fn <pacer_test>() { alsa::pacer_entry() }`.
pub fn paced_writer_command(out: &Path, pacer_test: &str) -> String {
    let exe = std::env::current_exe().expect("test binary path");
    for p in [out, exe.as_path()] {
        assert!(!p.to_string_lossy().contains('\''), "quote in path {p:?}");
    }
    format!(
        "|{PACER_OUT_ENV}='{}' exec '{}' {pacer_test} --exact --test-threads=1 >/dev/null 2>&1",
        out.display(),
        exe.display()
    )
}

/// Body of the pacer test: a no-op unless [`PACER_OUT_ENV`] is set, in which case it copies
/// stdin to that file at 96000 bytes/s (48 kHz S16 mono) until end of input.
pub fn pacer_entry() {
    let Some(out) = std::env::var_os(PACER_OUT_ENV) else {
        return;
    };
    let mut file = std::fs::File::create(out).expect("pacer output");
    let mut stdin = std::io::stdin().lock();
    let bytes_per_sec = f64::from(CARD_RATE) * 2.0;
    let start = Instant::now();
    let mut total = 0usize;
    let mut buf = vec![0u8; CHUNK_BYTES];
    loop {
        let due = start + Duration::from_secs_f64(total as f64 / bytes_per_sec);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let n = match stdin.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        file.write_all(&buf[..n]).expect("pacer write");
        total += n;
    }
    file.flush().expect("pacer flush");
}

/// Creates a FIFO at `path` (with the `mkfifo` utility).
pub fn make_fifo(path: &Path) {
    let status = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(status.success(), "mkfifo {path:?}");
}

/// Feeds raw audio into a FIFO in real time: one [`CHUNK_BYTES`] chunk every 20 ms, reopening
/// the FIFO whenever the reader closes it (the data written to a closed reader is lost).
pub struct FifoFeeder {
    stop: Arc<AtomicBool>,
    fifo: PathBuf,
    thread: Option<JoinHandle<()>>,
}

impl FifoFeeder {
    pub fn start(fifo: &Path, data: Vec<u8>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            let fifo = fifo.to_path_buf();
            std::thread::spawn(move || feed(&fifo, &data, &stop))
        };
        FifoFeeder {
            stop,
            fifo: fifo.to_path_buf(),
            thread: Some(thread),
        }
    }
}

impl Drop for FifoFeeder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Unblock a feeder waiting in open(): a non-blocking reader open always succeeds.
        use std::os::unix::fs::OpenOptionsExt;
        const O_NONBLOCK: i32 = 0o4000;
        let _reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(O_NONBLOCK)
            .open(&self.fifo);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn feed(fifo: &Path, data: &[u8], stop: &AtomicBool) {
    let mut offset = 0;
    while !stop.load(Ordering::SeqCst) && offset < data.len() {
        let Ok(mut w) = std::fs::OpenOptions::new().write(true).open(fifo) else {
            return;
        };
        let start = Instant::now();
        let mut sent = 0u32;
        while !stop.load(Ordering::SeqCst) && offset < data.len() {
            let end = (offset + CHUNK_BYTES).min(data.len());
            if w.write_all(&data[offset..end]).is_err() {
                break; // reader went away (EPIPE): reopen
            }
            offset = end;
            sent += 1;
            let due = start + Duration::from_millis(20) * sent;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    }
}

/// `len` samples of a sine of `freq` Hz and peak `amp` at `rate` Hz.
pub fn sine(rate: u32, freq: f64, amp: f64, len: usize) -> Vec<i16> {
    (0..len)
        .map(|n| {
            let t = n as f64 / f64::from(rate);
            (amp * (2.0 * std::f64::consts::PI * freq * t).sin()).round() as i16
        })
        .collect()
}

pub fn to_s16le(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

pub fn from_s16le(bytes: &[u8]) -> Vec<i16> {
    bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

pub fn read_s16le(path: &Path) -> Vec<i16> {
    from_s16le(&std::fs::read(path).unwrap_or_default())
}

/// Root mean square of the samples.
pub fn rms(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let sum: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    (sum / samples.len() as f64).sqrt()
}

/// Power of `freq` in Hann-windowed `samples` (Goertzel).
pub fn goertzel(samples: &[i16], rate: u32, freq: f64) -> f64 {
    let n = samples.len();
    if n < 2 {
        return 0.0;
    }
    let coeff = 2.0 * (2.0 * std::f64::consts::PI * freq / f64::from(rate)).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for (i, &x) in samples.iter().enumerate() {
        let w = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / (n - 1) as f64).cos();
        let s0 = f64::from(x) * w + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    s1 * s1 + s2 * s2 - coeff * s1 * s2
}

/// The strongest frequency between 50 Hz and `rate / 2`: a coarse 25 Hz scan over 20 ms
/// blocks, refined in 0.5 Hz steps over the whole signal.
pub fn dominant_frequency(samples: &[i16], rate: u32) -> f64 {
    let block = (rate as usize / 50).min(samples.len());
    let blocks: Vec<&[i16]> = samples.chunks_exact(block.max(1)).take(20).collect();
    let top = f64::from(rate) / 2.0 - 25.0;
    let mut best = (0.0, f64::MIN);
    let mut f = 50.0;
    while f <= top {
        let p: f64 = blocks.iter().map(|b| goertzel(b, rate, f)).sum();
        if p > best.1 {
            best = (f, p);
        }
        f += 25.0;
    }
    let coarse = best.0;
    let mut best = (coarse, f64::MIN);
    let mut f = coarse - 50.0;
    while f <= coarse + 50.0 {
        let p = goertzel(samples, rate, f);
        if p > best.1 {
            best = (f, p);
        }
        f += 0.5;
    }
    best.0
}

/// Index range of the samples from the first to the last whose magnitude exceeds `threshold`.
pub fn active_span(samples: &[i16], threshold: i16) -> Option<std::ops::Range<usize>> {
    let first = samples
        .iter()
        .position(|s| s.unsigned_abs() > threshold.unsigned_abs())?;
    let last = samples
        .iter()
        .rposition(|s| s.unsigned_abs() > threshold.unsigned_abs())?;
    Some(first..last + 1)
}
