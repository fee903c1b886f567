//! Running `sipline` processes from tests: spawn with `--json`, wait for
//! events on stdout, send signals, collect the exit status.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running `sipline` process.
pub struct Sipline {
    child: Child,
    events: mpsc::Receiver<Value>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    seen: Vec<Value>,
    pub name: String,
}

impl Sipline {
    /// Starts `sipline --json <args>` with extra environment variables.
    pub fn spawn(name: &str, args: &[&str], envs: &[(String, String)]) -> Sipline {
        Self::spawn_with_stdin(name, args, envs, None)
    }

    /// [`Sipline::spawn`] with `stdin` written to a pipe (then closed)
    /// instead of an empty stdin.
    pub fn spawn_with_stdin(
        name: &str,
        args: &[&str],
        envs: &[(String, String)],
        stdin: Option<&str>,
    ) -> Sipline {
        Self::spawn_full(None, name, args, envs, stdin)
    }

    /// [`Sipline::spawn`] inside a network namespace (`ip netns exec NS
    /// sipline ...`, which execs sipline: the child's PID is sipline's).
    pub fn spawn_in_netns(
        netns: &str,
        name: &str,
        args: &[&str],
        envs: &[(String, String)],
    ) -> Sipline {
        Self::spawn_full(Some(netns), name, args, envs, None)
    }

    fn spawn_full(
        netns: Option<&str>,
        name: &str,
        args: &[&str],
        envs: &[(String, String)],
        stdin: Option<&str>,
    ) -> Sipline {
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_sipline")]);
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_sipline")),
        };
        cmd.arg("--json")
            .arg("-v")
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Hermetic: no user config file, no password from the caller's
            // environment (a test that wants them passes them in `envs`).
            .env("XDG_CONFIG_HOME", "/nonexistent/sipline-test-config")
            .env_remove("SIPLINE_PASSWORD");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("the sipline binary runs");
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            let text = text.to_string();
            std::thread::spawn(move || {
                use std::io::Write;
                let _ = pipe.write_all(text.as_bytes());
            });
        }
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) => {
                        let _ = tx.send(v);
                    }
                    Err(_) => eprintln!("non-JSON stdout line: {line}"),
                }
            }
        });
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let log2 = log.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut l) = log2.lock() {
                    l.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
        Sipline {
            child,
            events: rx,
            stderr: log,
            seen: Vec::new(),
            name: name.to_string(),
        }
    }

    /// Starts `sipline answer` on 127.0.0.1 with a free port; returns it
    /// and the port it listens on.
    pub fn answer(extra: &[&str]) -> (Sipline, u16) {
        Self::answer_on("127.0.0.1", extra)
    }

    pub fn answer_on(bind: &str, extra: &[&str]) -> (Sipline, u16) {
        let mut args = vec!["answer", "--bind", bind, "--local-port", "0"];
        args.extend_from_slice(extra);
        let mut s = Sipline::spawn("answer", &args, &[]);
        let ev = s.wait_event("listening", Duration::from_secs(20));
        let port = ev["port"].as_u64().expect("listening event has a port") as u16;
        (s, port)
    }

    /// Waits for an event named `name`; panics with the logs on timeout.
    pub fn wait_event(&mut self, name: &str, timeout: Duration) -> Value {
        if let Some(v) = self.seen.iter().find(|v| v["event"] == name) {
            return v.clone();
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if v["event"] == name {
                        return v;
                    }
                }
                Err(_) => panic!(
                    "{}: no {name:?} event within {timeout:?}; events {:?}\nstderr:\n{}",
                    self.name,
                    self.seen,
                    self.stderr()
                ),
            }
        }
    }

    /// Every event printed so far (without waiting).
    pub fn seen_events(&mut self) -> &[Value] {
        while let Ok(v) = self.events.try_recv() {
            self.seen.push(v);
        }
        &self.seen
    }

    /// Waits for the process to exit; returns its exit code and every event
    /// it printed.
    pub fn wait_exit(&mut self, timeout: Duration) -> (i32, Vec<Value>) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait works") {
                // Let the reader thread deliver the last lines.
                std::thread::sleep(Duration::from_millis(100));
                while let Ok(v) = self.events.try_recv() {
                    self.seen.push(v);
                }
                return (status.code().unwrap_or(-1), self.seen.clone());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "{}: did not exit within {timeout:?}; events {:?}\nstderr:\n{}",
                    self.name,
                    self.seen,
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends a signal (`INT`, `TERM`) to the process.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{sig} failed");
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for Sipline {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Writes a sine WAV file (16-bit) with the given rate and channel count.
pub fn write_tone_wav(path: &Path, freq: f64, rate: u32, channels: u16, secs: f64, amplitude: f64) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("create WAV");
    let n = (secs * f64::from(rate)) as usize;
    for i in 0..n {
        let v = (amplitude
            * 32767.0
            * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin())
        .round() as i16;
        for _ in 0..channels {
            w.write_sample(v).expect("write sample");
        }
    }
    w.finalize().expect("finalize WAV");
}

/// Reads a mono 16-bit WAV file.
pub fn read_wav(path: &Path) -> (Vec<i16>, u32) {
    let mut r = hound::WavReader::open(path).expect("a valid WAV file");
    let rate = r.spec().sample_rate;
    let samples = r.samples::<i16>().map(|s| s.expect("sample")).collect();
    (samples, rate)
}

/// The samples from 100 ms after the first one above -40 dBFS to the last
/// one above it (the tone, without its onset).
pub fn tone_part(samples: &[i16], rate: u32) -> &[i16] {
    let threshold = (32768.0 * 10f64.powf(-40.0 / 20.0)) as i32;
    let first = samples.iter().position(|s| i32::from(*s).abs() > threshold);
    let last = samples
        .iter()
        .rposition(|s| i32::from(*s).abs() > threshold);
    match (first, last) {
        (Some(a), Some(b)) => {
            let start = (a + rate as usize / 10).min(b);
            &samples[start..b]
        }
        _ => &[],
    }
}
