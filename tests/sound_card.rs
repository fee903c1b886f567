//! The `sipline` binary on a sound card: the virtual ALSA card of
//! `support/alsa.rs` stands in for the speaker and microphone, so the whole
//! path (RTP in, G.711 decode, jitter buffer, 8 → 48 kHz, cpal, ALSA) is
//! exercised end to end. Also: no usable card at all, and a named device
//! that does not exist.

#[path = "support/alsa.rs"]
mod alsa;
#[path = "support/proc.rs"]
mod proc;

use std::ffi::OsString;
use std::net::UdpSocket;
use std::path::Path;
use std::time::{Duration, Instant};

use proc::Sipline;
use sipline::media::audio::{NO_INPUT_WARNING, NO_OUTPUT_WARNING};
use sipline::media::codec::g711::{linear_to_ulaw, ulaw_to_linear};

const LIMIT: Duration = Duration::from_secs(30);

/// The playback pacer process (see `alsa::paced_writer_command`); a no-op as a plain test.
#[test]
fn alsa_pacer() {
    alsa::pacer_entry();
}

/// The card's environment as `proc::Sipline::spawn` takes it.
fn env_strings(env: &[(String, OsString)]) -> Vec<(String, String)> {
    env.iter()
        .map(|(k, v)| (k.clone(), v.to_string_lossy().into_owned()))
        .collect()
}

/// Starts `sipline answer` on 127.0.0.1 (any port) with `env`; returns it and its port.
fn answer_with_env(extra: &[&str], env: &[(String, String)]) -> (Sipline, u16) {
    let mut args = vec!["answer", "--bind", "127.0.0.1", "--local-port", "0"];
    args.extend_from_slice(extra);
    let mut s = Sipline::spawn("answer", &args, env);
    let ev = s.wait_event("listening", LIMIT);
    let port = ev["port"].as_u64().expect("listening event has a port") as u16;
    (s, port)
}

/// Waits until `path` exists and its size has not changed for 300 ms (the
/// pacer may still be draining its pipe after the player closed it).
fn wait_until_stable(path: &Path) {
    let deadline = Instant::now() + LIMIT;
    let mut last = None;
    let mut since = Instant::now();
    loop {
        let len = std::fs::metadata(path).map(|m| m.len()).ok();
        if len != last {
            last = len;
            since = Instant::now();
        } else if len.is_some() && since.elapsed() >= Duration::from_millis(300) {
            return;
        }
        assert!(Instant::now() < deadline, "{path:?} never settled");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn assert_exit(who: &Sipline, code: i32, want: i32, events: &[serde_json::Value]) {
    assert_eq!(
        code,
        want,
        "{} exited {code}, want {want}; events {events:#?}\nstderr:\n{}",
        who.name,
        who.stderr()
    );
}

#[test]
fn answered_call_plays_received_tone_on_the_sound_card_at_its_frequency_and_level() {
    let card = alsa::VirtualCard::new();
    let played = card.dir().join("played.raw");
    // A paced silent microphone: unpaced capture would spin far faster than real time.
    let mic = card.dir().join("mic.fifo");
    alsa::make_fifo(&mic);
    let feeder = alsa::FifoFeeder::start(&mic, vec![0u8; alsa::CHUNK_BYTES * 50 * 20]);
    let env = env_strings(&card.env(&alsa::paced_writer_command(&played, "alsa_pacer"), &mic));

    let tone = card.dir().join("tone.wav");
    proc::write_tone_wav(&tone, 1000.0, 8000, 1, 4.0, 0.5);

    let (mut answer, port) = answer_with_env(&["--count", "1"], &env);
    let uri = format!("sip:sipline@127.0.0.1:{port}");
    let tone_arg = tone.to_string_lossy().into_owned();
    let mut call = Sipline::spawn(
        "call",
        &[
            "call",
            &uri,
            "--bind",
            "127.0.0.1",
            "--local-port",
            "0",
            "--play",
            &tone_arg,
            "--duration",
            "3",
            "--null-audio",
        ],
        &[],
    );
    let (code, events) = call.wait_exit(LIMIT);
    assert_exit(&call, code, 0, &events);
    let (code, events) = answer.wait_exit(LIMIT);
    assert_exit(&answer, code, 0, &events);
    drop(feeder);
    wait_until_stable(&played);

    let samples = alsa::read_s16le(&played);
    let span = alsa::active_span(&samples, 2000).unwrap_or_else(|| {
        panic!(
            "no tone reached the card ({} samples)\nanswer stderr:\n{}",
            samples.len(),
            answer.stderr()
        )
    });
    // About 3 s of tone at 48 kHz; at least 2 s of it must have played.
    assert!(
        span.len() > 2 * alsa::CARD_RATE as usize,
        "only {} samples of tone out of {}",
        span.len(),
        samples.len()
    );
    // Half a second from the middle of the tone.
    let mid = span.start + span.len() / 2;
    let window = &samples[mid - 12_000..mid + 12_000];
    let f = alsa::dominant_frequency(window, alsa::CARD_RATE);
    assert!((f - 1000.0).abs() <= 20.0, "dominant {f} Hz");

    // What the same tone measures after a G.711 µ-law round trip.
    let reference: Vec<i16> = alsa::sine(8000, 1000.0, 0.5 * 32767.0, 8000)
        .into_iter()
        .map(|s| ulaw_to_linear(linear_to_ulaw(s)))
        .collect();
    let expected = alsa::rms(&reference);
    let level = alsa::rms(window);
    let db = 20.0 * (level / expected).log10();
    eprintln!(
        "played {} samples, tone over {span:?}, {f} Hz, rms {level:.0} vs {expected:.0} ({db:+.2} dB)",
        samples.len()
    );
    assert!(db.abs() <= 3.0, "level {db:+.2} dB off the G.711 tone");
}

#[test]
fn without_a_sound_card_answer_still_answers_with_one_warning_per_direction() {
    let card = alsa::VirtualCard::without_devices();
    let env = env_strings(&card.env("/dev/null", Path::new("/dev/zero")));
    let (mut answer, port) = answer_with_env(&["--count", "1"], &env);
    let uri = format!("sip:sipline@127.0.0.1:{port}");
    let mut call = Sipline::spawn(
        "call",
        &[
            "call",
            &uri,
            "--bind",
            "127.0.0.1",
            "--local-port",
            "0",
            "--duration",
            "1",
            "--null-audio",
        ],
        &[],
    );
    let (code, events) = call.wait_exit(LIMIT);
    assert_exit(&call, code, 0, &events);
    let (code, events) = answer.wait_exit(LIMIT);
    assert_exit(&answer, code, 0, &events);
    assert!(
        events.iter().any(|e| e["event"] == "answered"),
        "not answered: {events:#?}"
    );

    let stderr = answer.stderr();
    let lines = |needle: &str| stderr.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(lines("no sound card"), 2, "stderr:\n{stderr}");
    assert_eq!(lines(NO_OUTPUT_WARNING), 1, "stderr:\n{stderr}");
    assert_eq!(lines(NO_INPUT_WARNING), 1, "stderr:\n{stderr}");
    assert!(!stderr.contains("ALSA lib"), "alsa-lib noise:\n{stderr}");
}

#[test]
fn unknown_output_device_makes_call_exit_7_before_sending_anything() {
    let card = alsa::VirtualCard::new();
    let env = env_strings(&card.env("/dev/null", Path::new("/dev/zero")));
    // Stands where the callee would be; must receive nothing.
    let callee = UdpSocket::bind("127.0.0.1:0").expect("bind the callee socket");
    let port = callee.local_addr().expect("bound socket").port();
    let uri = format!("sip:nobody@127.0.0.1:{port}");
    let mut call = Sipline::spawn(
        "call",
        &[
            "call",
            &uri,
            "--bind",
            "127.0.0.1",
            "--local-port",
            "0",
            "--output-device",
            "nope",
        ],
        &env,
    );
    let (code, events) = call.wait_exit(LIMIT);
    assert_exit(&call, code, 7, &events);
    assert!(
        events.iter().all(|e| e["event"] != "calling"),
        "a call was started: {events:#?}"
    );
    callee
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("set a read timeout");
    let mut buf = [0u8; 2048];
    if let Ok((n, from)) = callee.recv_from(&mut buf) {
        panic!(
            "received {n} bytes from {from}:\n{}",
            String::from_utf8_lossy(&buf[..n])
        );
    }
    assert!(
        call.stderr().contains("nope"),
        "the error does not name the device:\n{}",
        call.stderr()
    );
}

/// `loopback --device`: the caller speaks from the (virtual) microphone, a
/// 600 Hz tone, through the emulated network, and the callee plays it on
/// the (virtual) speaker; the report still measures both directions.
#[test]
fn loopback_device_plays_the_microphone_through_the_call_on_the_speaker() {
    let card = alsa::VirtualCard::new();
    let played = card.dir().join("played.raw");
    let mic = card.dir().join("mic.fifo");
    alsa::make_fifo(&mic);
    let tone = alsa::sine(
        alsa::CARD_RATE,
        600.0,
        0.4 * 32767.0,
        alsa::CARD_RATE as usize * 8,
    );
    let feeder = alsa::FifoFeeder::start(&mic, alsa::to_s16le(&tone));
    let env = env_strings(&card.env(&alsa::paced_writer_command(&played, "alsa_pacer"), &mic));
    let mut lb = Sipline::spawn(
        "loopback",
        &[
            "loopback",
            "--device",
            "--duration",
            "3",
            "--loss",
            "2",
            "--seed",
            "3",
        ],
        &env,
    );
    let (code, events) = lb.wait_exit(LIMIT);
    assert_exit(&lb, code, 0, &events);
    drop(feeder);
    let report = events
        .iter()
        .find(|e| e["event"] == "loopback_report")
        .expect("a loopback_report");
    assert!(
        report["playback"]
            .as_str()
            .unwrap_or("")
            .contains("microphone"),
        "{report}"
    );
    // The other direction still carries the test signal and passed.
    assert_eq!(report["callee_to_caller"]["signal_ok"], true, "{report}");
    wait_until_stable(&played);
    let samples = alsa::read_s16le(&played);
    let span = alsa::active_span(&samples, 2000)
        .unwrap_or_else(|| panic!("nothing reached the speaker\n{}", lb.stderr()));
    assert!(
        span.len() > 2 * alsa::CARD_RATE as usize,
        "only {} samples of tone",
        span.len()
    );
    let mid = span.start + span.len() / 2;
    let f = alsa::dominant_frequency(&samples[mid - 12_000..mid + 12_000], alsa::CARD_RATE);
    assert!((f - 600.0).abs() <= 20.0, "dominant {f} Hz");
}

/// Without a sound card, `loopback --device` is an audio error (exit 7)
/// that says so, rather than a silent run.
#[test]
fn loopback_device_without_a_sound_card_exits_7() {
    let card = alsa::VirtualCard::without_devices();
    let env = env_strings(&card.env("/dev/null", Path::new("/dev/zero")));
    let mut lb = Sipline::spawn(
        "loopback",
        &["loopback", "--device", "--duration", "2"],
        &env,
    );
    let (code, events) = lb.wait_exit(LIMIT);
    assert_exit(&lb, code, 7, &events);
    let stderr = lb.stderr();
    assert!(stderr.contains("no usable sound card"), "{stderr}");
}
