//! Interoperability with baresip (Debian package `baresip`), both ways, with
//! Opus and with G.711.
//!
//! baresip runs headless from a configuration this test writes into a
//! temporary directory: SIP on 127.0.0.1 only (`net_interface`, `sip_listen`),
//! a 440 Hz tone from a WAV file as its microphone (`aufile`), the `aubridge`
//! null player as its speaker, and `sndfile` dumping the audio it decodes to
//! a WAV file. sipline sends 1000 Hz. Each test checks that the call
//! connected with the expected codec, that our recording holds baresip's
//! tone and that baresip's decoded dump holds ours (frequency and level).
//!
//! Without baresip installed the tests print why and pass.

#[path = "support/proc.rs"]
mod proc;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use proc::{Sipline, tone_part, write_tone_wav};
use sipline::media::signal::{dominant_frequency, rms_dbfs, sine};

const SECS: Duration = Duration::from_secs(30);
const OUR_TONE: f64 = 1000.0;
const BARESIP_TONE: f64 = 440.0;

/// Fails the test, with what to install, when baresip is missing: these
/// are interoperability tests and must not pass without their peer.
fn require_baresip() {
    let found = Command::new("baresip")
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        found,
        "baresip is not installed: these interoperability tests need it (Debian package `baresip`)"
    );
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free UDP port on 127.0.0.1")
}

/// A headless baresip process with its own configuration directory.
struct Baresip {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Baresip {
    /// Starts baresip listening on 127.0.0.1; `account_params` are appended
    /// to its account line (e.g. `;audio_codecs=pcma`); `dial` makes it call
    /// that URI at once.
    fn start(account_params: &str, rtp_ports: u16, dial: Option<&str>) -> Baresip {
        let dir = tempfile::tempdir().expect("temporary directory");
        let port = free_udp_port();
        let tone = dir.path().join("tone.wav");
        // aufile wants exactly the source rate and channel count configured.
        write_tone_wav(&tone, BARESIP_TONE, 48_000, 1, 8.0, 0.5);
        std::fs::create_dir(dir.path().join("rec")).expect("rec directory");
        let config = format!(
            "poll_method epoll\n\
             sip_listen 127.0.0.1:{port}\n\
             net_interface 127.0.0.1\n\
             audio_player aubridge,nil\n\
             audio_alert aubridge,nil\n\
             audio_source aufile,{tone}\n\
             ausrc_srate 48000\n\
             auplay_srate 48000\n\
             ausrc_channels 1\n\
             auplay_channels 1\n\
             rtp_ports {rtp_ports}-{rtp_end}\n\
             module_path /usr/lib/baresip/modules\n\
             module aufile.so\n\
             module aubridge.so\n\
             module sndfile.so\n\
             module opus.so\n\
             module g711.so\n\
             module_app account.so\n\
             module_app menu.so\n\
             snd_path {rec}\n",
            tone = tone.display(),
            rtp_end = rtp_ports + 99,
            rec = dir.path().join("rec").display(),
        );
        std::fs::write(dir.path().join("config"), config).expect("write config");
        std::fs::write(
            dir.path().join("accounts"),
            format!("<sip:bob@127.0.0.1>;regint=0;answermode=auto{account_params}\n"),
        )
        .expect("write accounts");
        let log = std::fs::File::create(dir.path().join("log")).expect("log file");
        let mut cmd = Command::new("baresip");
        cmd.arg("-f").arg(dir.path()).args(["-t", "25"]);
        if let Some(uri) = dial {
            cmd.args(["-e", &format!("/dial {uri}")]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("baresip starts");
        let mut b = Baresip { child, dir, port };
        b.wait_log("baresip is ready", Duration::from_secs(10));
        b
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    fn wait_log(&mut self, text: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.log().contains(text) {
            if Instant::now() > deadline || matches!(self.child.try_wait(), Ok(Some(_))) {
                panic!("baresip never logged {text:?}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn uri(&self) -> String {
        format!("sip:bob@127.0.0.1:{}", self.port)
    }

    /// The first channel of the audio baresip decoded (its sndfile dump),
    /// once the call has ended and the file is complete.
    fn decoded(&mut self) -> (Vec<i16>, u32) {
        self.wait_log("terminated", Duration::from_secs(10));
        let rec = self.dir.path().join("rec");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let dump: Option<PathBuf> = std::fs::read_dir(&rec)
                .expect("rec directory")
                .filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| p.to_string_lossy().ends_with("-dec.wav"));
            if let Some(samples) = dump.as_deref().and_then(read_first_channel) {
                return samples;
            }
            assert!(
                Instant::now() < deadline,
                "no readable decode dump in {}:\n{}",
                rec.display(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_first_channel(path: &Path) -> Option<(Vec<i16>, u32)> {
    let mut r = hound::WavReader::open(path).ok()?;
    let spec = r.spec();
    let all: Vec<i16> = r.samples::<i16>().collect::<Result<_, _>>().ok()?;
    let first = all
        .chunks(usize::from(spec.channels.max(1)))
        .map(|f| f[0])
        .collect::<Vec<_>>();
    (!first.is_empty()).then_some((first, spec.sample_rate))
}

/// At least a second of `freq` at the level of a 0.5-amplitude sine ±3 dB.
fn assert_tone(who: &str, samples: &[i16], rate: u32, freq: f64) {
    let part = tone_part(samples, rate);
    assert!(
        part.len() > rate as usize,
        "{who}: at least a second of tone (got {} samples)",
        part.len()
    );
    let f = dominant_frequency(part, rate);
    assert!(
        (f - freq).abs() <= freq * 0.02,
        "{who}: dominant frequency {f} Hz, expected {freq} Hz"
    );
    let want = rms_dbfs(&sine(freq, 0.5, rate, rate as usize));
    let level = rms_dbfs(part);
    assert!(
        (level - want).abs() <= 3.0,
        "{who}: level {level:.1} dBFS, expected {want:.1} ±3 dB"
    );
}

fn our_tone(dir: &Path) -> PathBuf {
    let path = dir.join("ours.wav");
    write_tone_wav(&path, OUR_TONE, 48_000, 1, 8.0, 0.5);
    path
}

/// sipline calls baresip for 3 s and both recordings are checked.
fn sipline_calls_baresip(codecs: &str, rtp_ports: u16, want_codec: &str) {
    require_baresip();
    let mut baresip = Baresip::start("", rtp_ports, None);
    let dir = tempfile::tempdir().unwrap();
    let (tone, out) = (our_tone(dir.path()), dir.path().join("heard.wav"));
    let mut call = Sipline::spawn(
        "call",
        &[
            "call",
            &baresip.uri(),
            "--bind",
            "127.0.0.1",
            "--codecs",
            codecs,
            "--play",
            tone.to_str().unwrap(),
            "--record",
            out.to_str().unwrap(),
            "--duration",
            "3",
            "--null-audio",
        ],
        &[],
    );
    let (code, events) = call.wait_exit(SECS);
    assert_eq!(
        code,
        0,
        "{events:?}\n{}\nbaresip:\n{}",
        call.stderr(),
        baresip.log()
    );
    let media = events.iter().find(|e| e["event"] == "media").unwrap();
    assert_eq!(media["codec"], want_codec, "{media}");
    let ended = events.iter().find(|e| e["event"] == "ended").unwrap();
    assert!(ended["media"]["packets_received"].as_u64().unwrap() >= 120);
    let (heard, rate) = proc::read_wav(&out);
    assert_tone("sipline heard baresip", &heard, rate, BARESIP_TONE);
    let (decoded, rate) = baresip.decoded();
    assert_tone("baresip heard sipline", &decoded, rate, OUR_TONE);
}

/// baresip calls `sipline answer` and hangs up when it quits.
fn baresip_calls_sipline(account_params: &str, rtp_ports: u16, want_codec: &str) {
    require_baresip();
    let dir = tempfile::tempdir().unwrap();
    let (tone, out) = (our_tone(dir.path()), dir.path().join("heard.wav"));
    let (mut answer, port) = Sipline::answer(&[
        "--count",
        "1",
        "--null-audio",
        "--play",
        tone.to_str().unwrap(),
        "--record",
        out.to_str().unwrap(),
        "--duration",
        "3",
    ]);
    let target = format!("sip:alice@127.0.0.1:{port}");
    let mut baresip = Baresip::start(account_params, rtp_ports, Some(&target));
    let (code, events) = answer.wait_exit(SECS);
    assert_eq!(
        code,
        0,
        "{events:?}\n{}\nbaresip:\n{}",
        answer.stderr(),
        baresip.log()
    );
    let media = events.iter().find(|e| e["event"] == "media").unwrap();
    assert_eq!(media["codec"], want_codec, "{media}");
    let ended = events.iter().find(|e| e["event"] == "ended").unwrap();
    assert!(ended["media"]["packets_received"].as_u64().unwrap() >= 120);
    let (heard, rate) = proc::read_wav(&out);
    assert_tone("sipline heard baresip", &heard, rate, BARESIP_TONE);
    let (decoded, rate) = baresip.decoded();
    assert_tone("baresip heard sipline", &decoded, rate, OUR_TONE);
}

#[test]
fn sipline_calls_baresip_with_opus() {
    sipline_calls_baresip("opus,pcmu,pcma", 31000, "opus");
}

#[test]
fn sipline_calls_baresip_with_g711() {
    sipline_calls_baresip("pcmu", 31200, "PCMU");
}

#[test]
fn baresip_calls_sipline_with_opus() {
    baresip_calls_sipline("", 31400, "opus");
}

#[test]
fn baresip_calls_sipline_with_g711_in_its_order() {
    // baresip offers PCMA first: the answer honours the offerer's order.
    baresip_calls_sipline(";audio_codecs=pcma,pcmu", 31600, "PCMA");
}
