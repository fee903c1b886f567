//! End-to-end calls between two `sipline` processes on loopback.

#[path = "support/proc.rs"]
mod proc;

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use proc::{Sipline, read_wav, tone_part, write_tone_wav};
use sipline::media::signal::{dominant_frequency, rms_dbfs, sine};

const SECS: Duration = Duration::from_secs(30);

/// The level a 0.5-amplitude sine has (what the tone file holds).
fn sent_level(freq: f64) -> f64 {
    rms_dbfs(&sine(freq, 0.5, 8000, 8000))
}

fn assert_holds_tone(path: &std::path::Path, freq: f64) {
    let (samples, rate) = read_wav(path);
    let part = tone_part(&samples, rate);
    assert!(
        part.len() > rate as usize,
        "at least a second of tone recorded (got {} samples)",
        part.len()
    );
    let f = dominant_frequency(part, rate);
    assert!(
        (f - freq).abs() <= freq * 0.02,
        "dominant frequency {f} Hz, expected {freq} Hz ±2 %"
    );
    let level = rms_dbfs(part);
    let want = sent_level(freq);
    assert!(
        (level - want).abs() <= 3.0,
        "level {level:.1} dBFS, expected {want:.1} ±3 dB"
    );
}

#[test]
fn two_processes_call_and_the_recording_holds_the_tone() {
    let dir = tempfile::tempdir().unwrap();
    let tone = dir.path().join("tone.wav");
    let out = dir.path().join("out.wav");
    // Any rate and channel count: 44.1 kHz stereo.
    write_tone_wav(&tone, 1000.0, 44_100, 2, 5.0, 0.5);
    let (mut answer, port) = Sipline::answer(&[
        "--count",
        "1",
        "--null-audio",
        "--record",
        out.to_str().unwrap(),
    ]);
    let uri = format!("sip:test@127.0.0.1:{port}");
    let mut call = Sipline::spawn(
        "call",
        &[
            "call",
            &uri,
            "--bind",
            "127.0.0.1",
            "--play",
            tone.to_str().unwrap(),
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
        "caller exits 0; events {events:?}\n{}",
        call.stderr()
    );
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "progress" && e["status"] == 180)
    );
    assert!(events.iter().any(|e| e["event"] == "answered"));
    let ended = events
        .iter()
        .find(|e| e["event"] == "ended")
        .expect("ended event");
    assert_eq!(ended["reason"]["kind"], "local_hangup");
    assert!(
        ended["media"]["packets_sent"].as_u64().unwrap() >= 140,
        "about 150 packets in 3 s"
    );
    let (code, events) = answer.wait_exit(SECS);
    assert_eq!(code, 0, "answerer exits 0; {events:?}\n{}", answer.stderr());
    let ended = events
        .iter()
        .find(|e| e["event"] == "ended")
        .expect("ended event");
    assert_eq!(ended["reason"]["kind"], "remote_hangup");
    assert!(ended["media"]["packets_received"].as_u64().unwrap() >= 140);
    assert_holds_tone(&out, 1000.0);
}

/// The `ended` event of a call with RTCP: reports went both ways and the
/// round-trip time on loopback is under 10 ms (RFC 3550 §6.4.1 LSR/DLSR).
fn assert_rtcp_on_loopback(who: &str, events: &[serde_json::Value], stderr: &str) {
    let ended = events
        .iter()
        .find(|e| e["event"] == "ended")
        .unwrap_or_else(|| panic!("{who}: no ended event in {events:?}"));
    let rtcp = &ended["media"]["rtcp"];
    let sent = rtcp["reports_sent"].as_u64().unwrap_or(0);
    let received = rtcp["reports_received"].as_u64().unwrap_or(0);
    // 2.5 s with a 0.2 s minimum interval: about a dozen reports.
    assert!(
        sent >= 4 && received >= 4,
        "{who}: RTCP sent {sent}, received {received}: {ended}"
    );
    let rtt = rtcp["rtt_ms"]
        .as_f64()
        .unwrap_or_else(|| panic!("{who}: no RTT: {ended}"));
    assert!((0.0..10.0).contains(&rtt), "{who}: RTT {rtt} ms: {ended}");
    assert_eq!(rtcp["local"]["cumulative_lost"], 0, "{who}: {ended}");
    assert_eq!(rtcp["remote"]["cumulative_lost"], 0, "{who}: {ended}");
    assert!(rtcp["peer_cname"].as_str().is_some_and(|c| c.len() == 16));
    let mos = ended["media"]["quality"]["mos"].as_f64().unwrap_or(0.0);
    assert!(mos > 4.3 && mos <= 4.5, "{who}: MOS {mos}: {ended}");
    assert!(
        stderr.contains("estimated MOS") && stderr.contains("RTT"),
        "{who}: no statistics block on stderr:\n{stderr}"
    );
}

/// A call with `--rtcp-interval 0.2`; `caller_extra` is added to the
/// caller's options. Returns the media events of caller and answerer.
fn rtcp_call(caller_extra: &[&str]) -> (serde_json::Value, serde_json::Value) {
    let (mut answer, port) =
        Sipline::answer(&["--count", "1", "--null-audio", "--rtcp-interval", "0.2"]);
    let uri = format!("sip:test@127.0.0.1:{port}");
    let mut args = vec![
        "call",
        &uri,
        "--bind",
        "127.0.0.1",
        "--duration",
        "2.5",
        "--null-audio",
        "--rtcp-interval",
        "0.2",
    ];
    args.extend_from_slice(caller_extra);
    let mut call = Sipline::spawn("call", &args, &[]);
    let (code, call_events) = call.wait_exit(SECS);
    assert_eq!(code, 0, "caller: {call_events:?}\n{}", call.stderr());
    let (code, answer_events) = answer.wait_exit(SECS);
    assert_eq!(code, 0, "answerer: {answer_events:?}\n{}", answer.stderr());
    assert_rtcp_on_loopback("caller", &call_events, &call.stderr());
    assert_rtcp_on_loopback("answerer", &answer_events, &answer.stderr());
    let media = |events: &[serde_json::Value]| {
        events
            .iter()
            .find(|e| e["event"] == "media")
            .cloned()
            .expect("media event")
    };
    (media(&call_events), media(&answer_events))
}

fn port_of(addr: &serde_json::Value) -> u16 {
    addr.as_str()
        .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
        .map(|a| a.port())
        .unwrap_or_else(|| panic!("not an address: {addr}"))
}

#[test]
fn rtcp_multiplexed_by_agreement_gives_a_loopback_rtt_both_ways() {
    let (caller, answerer) = rtcp_call(&[]);
    for media in [&caller, &answerer] {
        assert_eq!(media["rtcp_mux"], true, "{media}");
        assert_eq!(
            port_of(&media["remote_rtcp"]),
            port_of(&media["remote_rtp"])
        );
    }
}

#[test]
fn rtcp_on_rtp_port_plus_one_without_mux_gives_a_loopback_rtt_both_ways() {
    let (caller, answerer) = rtcp_call(&["--no-rtcp-mux"]);
    for media in [&caller, &answerer] {
        assert_eq!(media["rtcp_mux"], false, "{media}");
        let rtp = port_of(&media["remote_rtp"]);
        assert_eq!(rtp % 2, 0, "RTP on an even port: {media}");
        assert_eq!(port_of(&media["remote_rtcp"]), rtp + 1, "{media}");
    }
}

#[test]
fn calls_work_over_ipv6_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let tone = dir.path().join("tone.wav");
    let out = dir.path().join("out.wav");
    write_tone_wav(&tone, 600.0, 8000, 1, 3.0, 0.5);
    let (mut answer, port) = Sipline::answer_on(
        "::1",
        &[
            "--count",
            "1",
            "--null-audio",
            "--record",
            out.to_str().unwrap(),
        ],
    );
    let uri = format!("sip:test@[::1]:{port}");
    let mut call = Sipline::spawn(
        "call",
        &[
            "call",
            &uri,
            "--bind",
            "::1",
            "--play",
            tone.to_str().unwrap(),
            "--duration",
            "2",
            "--null-audio",
        ],
        &[],
    );
    let (code, events) = call.wait_exit(SECS);
    assert_eq!(code, 0, "{events:?}\n{}", call.stderr());
    let media = events
        .iter()
        .find(|e| e["event"] == "media")
        .expect("media event");
    assert!(media["remote_rtp"].as_str().unwrap().starts_with("[::1]:"));
    assert_eq!(answer.wait_exit(SECS).0, 0);
    assert_holds_tone(&out, 600.0);
}

#[test]
fn busy_callee_makes_call_exit_with_the_busy_code() {
    let (mut answer, port) = Sipline::answer(&["--count", "1", "--reject", "486"]);
    let uri = format!("sip:test@127.0.0.1:{port}");
    let mut call = Sipline::spawn(
        "call",
        &["call", &uri, "--bind", "127.0.0.1", "--null-audio"],
        &[],
    );
    let (code, events) = call.wait_exit(SECS);
    assert_eq!(code, 3, "busy exit code; {events:?}");
    let ended = events.iter().find(|e| e["event"] == "ended").unwrap();
    assert_eq!(ended["reason"]["status"], 486);
    assert_eq!(answer.wait_exit(SECS).0, 0);
}

#[test]
fn declined_call_exits_with_the_failure_code() {
    let (mut answer, port) = Sipline::answer(&["--count", "1", "--reject", "603"]);
    let uri = format!("sip:test@127.0.0.1:{port}");
    let mut call = Sipline::spawn(
        "call",
        &["call", &uri, "--bind", "127.0.0.1", "--null-audio"],
        &[],
    );
    assert_eq!(call.wait_exit(SECS).0, 4);
    assert_eq!(answer.wait_exit(SECS).0, 0);
}

#[test]
fn ring_timeout_cancels_and_exits_with_no_answer() {
    let (mut answer, port) =
        Sipline::answer(&["--count", "1", "--answer-after", "20", "--null-audio"]);
    let uri = format!("sip:test@127.0.0.1:{port}");
    let mut call = Sipline::spawn(
        "call",
        &[
            "call",
            &uri,
            "--bind",
            "127.0.0.1",
            "--null-audio",
            "--timeout",
            "1",
        ],
        &[],
    );
    let (code, events) = call.wait_exit(SECS);
    assert_eq!(code, 5, "no-answer exit code; {events:?}");
    let ended = events.iter().find(|e| e["event"] == "ended").unwrap();
    assert_eq!(ended["reason"]["kind"], "cancelled");
    let (code, events) = answer.wait_exit(SECS);
    assert_eq!(code, 0);
    let ended = events.iter().find(|e| e["event"] == "ended").unwrap();
    assert_eq!(ended["reason"]["kind"], "remote_cancelled");
}

#[test]
fn sigterm_after_answer_hangs_up_and_keeps_the_recording() {
    let dir = tempfile::tempdir().unwrap();
    let tone = dir.path().join("tone.wav");
    let out = dir.path().join("rec.wav");
    write_tone_wav(&tone, 800.0, 8000, 1, 10.0, 0.5);
    let (mut answer, port) = Sipline::answer(&[
        "--count",
        "1",
        "--null-audio",
        "--play",
        tone.to_str().unwrap(),
    ]);
    let uri = format!("sip:test@127.0.0.1:{port}");
    let mut call = Sipline::spawn(
        "call",
        &[
            "call",
            &uri,
            "--bind",
            "127.0.0.1",
            "--null-audio",
            "--record",
            out.to_str().unwrap(),
        ],
        &[],
    );
    call.wait_event("answered", SECS);
    std::thread::sleep(Duration::from_secs(2));
    call.signal("TERM");
    let (code, events) = call.wait_exit(SECS);
    assert_eq!(code, 0, "answered then ended by us; {events:?}");
    assert_eq!(answer.wait_exit(SECS).0, 0);
    assert_holds_tone(&out, 800.0);
}

/// A UDP relay between a caller and `target` that drops the first
/// datagram of each kind `drop` selects.
struct LossyRelay {
    port: u16,
    dropped: Arc<AtomicUsize>,
}

impl LossyRelay {
    fn start(target: std::net::SocketAddr, drop_first: &'static [&'static str]) -> LossyRelay {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = sock.local_addr().unwrap().port();
        sock.set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let dropped = Arc::new(AtomicUsize::new(0));
        let d2 = dropped.clone();
        std::thread::spawn(move || {
            let mut client = None;
            let mut done = vec![false; drop_first.len()];
            let mut buf = [0u8; 65535];
            while let Ok((n, from)) = sock.recv_from(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]);
                if let Some(i) = drop_first.iter().position(|p| text.starts_with(p))
                    && !done[i]
                {
                    done[i] = true;
                    d2.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
                let dest = if from == target {
                    match client {
                        Some(c) => c,
                        None => continue,
                    }
                } else {
                    client = Some(from);
                    target
                };
                let _ = sock.send_to(&buf[..n], dest);
            }
        });
        LossyRelay { port, dropped }
    }
}

#[test]
fn lost_first_invite_and_lost_first_200_are_recovered_by_retransmission() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.wav");
    let tone = dir.path().join("tone.wav");
    write_tone_wav(&tone, 1000.0, 8000, 1, 4.0, 0.5);
    let (mut answer, port) = Sipline::answer(&[
        "--count",
        "1",
        "--null-audio",
        "--record",
        out.to_str().unwrap(),
    ]);
    let relay = LossyRelay::start(
        format!("127.0.0.1:{port}").parse().unwrap(),
        &["INVITE ", "SIP/2.0 200 "],
    );
    let uri = format!("sip:test@127.0.0.1:{}", relay.port);
    let mut call = Sipline::spawn(
        "call",
        &[
            "call",
            &uri,
            "--bind",
            "127.0.0.1",
            "--play",
            tone.to_str().unwrap(),
            "--duration",
            "2",
            "--null-audio",
        ],
        &[],
    );
    let (code, events) = call.wait_exit(SECS);
    assert_eq!(code, 0, "{events:?}\n{}", call.stderr());
    assert_eq!(
        relay.dropped.load(Ordering::SeqCst),
        2,
        "one INVITE and one 200 OK were dropped"
    );
    assert_eq!(answer.wait_exit(SECS).0, 0);
    assert_holds_tone(&out, 1000.0);
}

#[test]
fn unreachable_host_name_is_a_network_error() {
    let mut call = Sipline::spawn(
        "call",
        &[
            "call",
            "sip:test@no-such-host.invalid",
            "--bind",
            "127.0.0.1",
            "--null-audio",
        ],
        &[],
    );
    let (code, _) = call.wait_exit(SECS);
    assert_eq!(code, 6);
}

#[test]
fn malformed_uri_is_a_usage_error() {
    let mut call = Sipline::spawn("call", &["call", "not a uri", "--null-audio"], &[]);
    assert_eq!(call.wait_exit(SECS).0, 2);
}

#[test]
fn missing_play_file_is_an_audio_error() {
    let mut call = Sipline::spawn(
        "call",
        &[
            "call",
            "sip:x@127.0.0.1:9",
            "--play",
            "/nonexistent/file.wav",
            "--null-audio",
        ],
        &[],
    );
    let (code, _) = call.wait_exit(SECS);
    assert_eq!(code, 7);
    assert!(
        call.stderr().contains("/nonexistent/file.wav"),
        "the error names the file"
    );
}

#[test]
fn ring_timeout_without_any_response_gives_up_promptly_without_spinning() {
    // Nothing listens on this port: no provisional response, so no CANCEL
    // can be sent (RFC 3261 §9.1); the call gives up after the grace time.
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let uri = format!("sip:x@127.0.0.1:{port}");
    let started = std::time::Instant::now();
    let mut call = Sipline::spawn(
        "call",
        &[
            "call",
            &uri,
            "--bind",
            "127.0.0.1",
            "--null-audio",
            "--timeout",
            "1",
        ],
        &[],
    );
    let (code, _) = call.wait_exit(SECS);
    assert_eq!(code, 5);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    let lines = call.stderr().matches("cancelling").count();
    assert!(lines <= 2, "the timeout fired {lines} times");
}

#[test]
fn unsupported_transports_and_address_families_are_refused_at_once() {
    for (uri, code) in [
        ("sips:bob@127.0.0.1:5061", 2),
        ("sip:bob@127.0.0.1:5060;transport=tcp", 2),
        ("sip:bob@[::1]:5060", 6),
        ("sip:bob@127.0.0.1:0", 6),
    ] {
        let started = std::time::Instant::now();
        let mut call = Sipline::spawn(
            "call",
            &["call", uri, "--bind", "127.0.0.1", "--null-audio"],
            &[],
        );
        assert_eq!(call.wait_exit(SECS).0, code, "{uri}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{uri} answered at once"
        );
    }
}

#[test]
fn bad_time_and_identity_options_are_usage_errors() {
    for args in [
        &["call", "sip:x@127.0.0.1:9", "--duration", "inf"][..],
        &["call", "sip:x@127.0.0.1:9", "--timeout", "-1"],
        &["call", "sip:x@127.0.0.1:9", "--timeout", "0"],
        &[
            "call",
            "sip:x@127.0.0.1:9",
            "--null-audio",
            "--input-device",
            "nosuch",
        ],
        &["answer", "--null-audio", "--output-device", "nosuch"],
        &["call", "sip:x@127.0.0.1:9", "--from", "notauri"],
        &["call", "sip:x@127.0.0.1:9", "--user", "a b"],
        &["answer", "--answer-after", "1e300"],
        &["answer", "--count", "0"],
        &["loopback", "--duration", "0"],
    ] {
        let mut p = Sipline::spawn("bad", args, &[]);
        assert_eq!(p.wait_exit(SECS).0, 2, "{args:?}");
    }
}

#[test]
fn a_peer_that_dies_mid_call_is_hung_up_after_the_rtp_timeout() {
    let (mut answer, port) =
        Sipline::answer(&["--count", "1", "--null-audio", "--rtp-timeout", "2"]);
    let uri = format!("sip:test@127.0.0.1:{port}");
    let mut call = Sipline::spawn(
        "call",
        &["call", &uri, "--bind", "127.0.0.1", "--null-audio"],
        &[],
    );
    call.wait_event("answered", SECS);
    answer.wait_event("answered", SECS);
    std::thread::sleep(Duration::from_secs(1));
    call.signal("KILL");
    let started = std::time::Instant::now();
    let (code, events) = answer.wait_exit(SECS);
    assert_eq!(code, 0, "{events:?}");
    assert!(events.iter().any(|e| e["event"] == "media_timeout"));
    let ended = events
        .iter()
        .find(|e| e["event"] == "ended")
        .expect("ended event");
    assert_eq!(ended["reason"]["kind"], "media_timeout");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn dtmf_digits_sent_by_the_caller_are_reported_by_the_callee_rfc4733() {
    let (mut answer, port) = Sipline::answer(&["--count", "1", "--null-audio"]);
    let uri = format!("sip:test@127.0.0.1:{port}");
    let mut call = Sipline::spawn(
        "call",
        &[
            "call",
            &uri,
            "--bind",
            "127.0.0.1",
            "--null-audio",
            "--dtmf",
            "159#",
            "--dtmf-after",
            "0.3",
            "--duration",
            "2.5",
        ],
        &[],
    );
    let (code, events) = call.wait_exit(SECS);
    assert_eq!(code, 0, "{events:?}");
    assert!(events.iter().any(|e| e["event"] == "dtmf_sent"));
    let (code, events) = answer.wait_exit(SECS);
    assert_eq!(code, 0);
    let digits: String = events
        .iter()
        .filter(|e| e["event"] == "dtmf")
        .map(|e| e["digit"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(digits, "159#", "exactly those digits, once each");
}

/// Reads `path` and checks it holds `freq` at the level a 0.5 sine has,
/// recorded at `rate`.
fn assert_recording(path: &std::path::Path, rate: u32, freq: f64) {
    let (_, got_rate) = read_wav(path);
    assert_eq!(got_rate, rate, "recording rate of {}", path.display());
    assert_holds_tone(path, freq);
}

#[test]
fn opus_call_carries_a_6_khz_tone_end_to_end_at_48_khz() {
    let dir = tempfile::tempdir().unwrap();
    let tone = dir.path().join("tone.wav");
    let out = dir.path().join("out.wav");
    // 6 kHz cannot cross an 8 kHz path: hearing it proves 48 kHz end to end.
    write_tone_wav(&tone, 6000.0, 48_000, 1, 4.0, 0.5);
    let (mut answer, port) = Sipline::answer(&[
        "--count",
        "1",
        "--null-audio",
        "--record",
        out.to_str().unwrap(),
    ]);
    let uri = format!("sip:test@127.0.0.1:{port}");
    let mut call = Sipline::spawn(
        "call",
        &[
            "call",
            &uri,
            "--bind",
            "127.0.0.1",
            "--play",
            tone.to_str().unwrap(),
            "--duration",
            "3",
            "--null-audio",
            "--opus-bitrate",
            "48000",
        ],
        &[],
    );
    let (code, events) = call.wait_exit(SECS);
    assert_eq!(code, 0, "{events:?}\n{}", call.stderr());
    let media = events.iter().find(|e| e["event"] == "media").unwrap();
    assert_eq!(media["codec"], "opus", "{media}");
    assert_eq!(media["payload_type"], 96);
    let (code, events) = answer.wait_exit(SECS);
    assert_eq!(code, 0, "{events:?}\n{}", answer.stderr());
    let ended = events.iter().find(|e| e["event"] == "ended").unwrap();
    assert_eq!(ended["codec"], "opus");
    assert!(ended["media"]["packets_received"].as_u64().unwrap() >= 140);
    assert_recording(&out, 48_000, 6000.0);
}

#[test]
fn g711_call_between_a_default_side_and_a_pcmu_only_side() {
    let dir = tempfile::tempdir().unwrap();
    let (tone_a, tone_b) = (dir.path().join("a.wav"), dir.path().join("b.wav"));
    let (out_a, out_b) = (dir.path().join("out_a.wav"), dir.path().join("out_b.wav"));
    write_tone_wav(&tone_a, 1000.0, 8000, 1, 4.0, 0.5);
    write_tone_wav(&tone_b, 440.0, 8000, 1, 4.0, 0.5);
    let (mut answer, port) = Sipline::answer(&[
        "--count",
        "1",
        "--null-audio",
        "--codecs",
        "pcmu",
        "--play",
        tone_b.to_str().unwrap(),
        "--record",
        out_b.to_str().unwrap(),
    ]);
    let uri = format!("sip:test@127.0.0.1:{port}");
    let mut call = Sipline::spawn(
        "call",
        &[
            "call",
            &uri,
            "--bind",
            "127.0.0.1",
            "--play",
            tone_a.to_str().unwrap(),
            "--record",
            out_a.to_str().unwrap(),
            "--duration",
            "3",
            "--null-audio",
        ],
        &[],
    );
    let (code, events) = call.wait_exit(SECS);
    assert_eq!(code, 0, "{events:?}\n{}", call.stderr());
    let media = events.iter().find(|e| e["event"] == "media").unwrap();
    assert_eq!(media["codec"], "PCMU", "{media}");
    assert_eq!(answer.wait_exit(SECS).0, 0, "{}", answer.stderr());
    // The G.711-only side runs at 8 kHz as before; the side that could have
    // used Opus records at 48 kHz, converted at the edge.
    assert_recording(&out_b, 8000, 1000.0);
    assert_recording(&out_a, 48_000, 440.0);
}

#[test]
fn loopback_with_opus_passes_its_signal_check() {
    let mut lb = Sipline::spawn(
        "loopback",
        &[
            "loopback",
            "--codec",
            "opus",
            "--null-audio",
            "--duration",
            "2",
        ],
        &[],
    );
    let (code, events) = lb.wait_exit(SECS);
    assert_eq!(code, 0, "{events:?}\n{}", lb.stderr());
    let report = events
        .iter()
        .find(|e| e["event"] == "loopback_report")
        .expect("a report");
    assert_eq!(report["codec"], "opus");
    assert_eq!(report["pass"], true);
    for dir in ["caller_to_callee", "callee_to_caller"] {
        assert!(
            report[dir]["match_score"].as_f64().unwrap() > 0.8,
            "{report}"
        );
    }
}

/// The `ended` event of `events`, if any.
fn ended_event(events: &[serde_json::Value]) -> Option<&serde_json::Value> {
    events.iter().find(|e| e["event"] == "ended")
}

#[test]
fn caller_whose_bye_is_never_answered_still_reports_the_end_and_the_statistics() {
    let (answer, port) = Sipline::answer(&["--null-audio"]);
    let uri = format!("sip:test@127.0.0.1:{port}");
    let mut call = Sipline::spawn(
        "call",
        &[
            "call",
            &uri,
            "--bind",
            "127.0.0.1",
            "--duration",
            "2",
            "--null-audio",
        ],
        &[],
    );
    call.wait_event("answered", SECS);
    // The callee freezes: our BYE gets no answer at all.
    answer.signal("STOP");
    let (code, events) = call.wait_exit(SECS);
    answer.signal("CONT");
    drop(answer);
    assert_eq!(
        code,
        0,
        "we hung up as asked; {events:?}\n{}",
        call.stderr()
    );
    let ended = ended_event(&events).expect("an ended event");
    assert_eq!(ended["reason"]["kind"], "bye_timeout", "{ended}");
    assert!(
        ended["media"]["packets_sent"].as_u64().unwrap_or(0) > 0,
        "the statistics are there: {ended}"
    );
    assert!(
        !call.stderr().contains("did not end in time"),
        "{}",
        call.stderr()
    );
}

#[test]
fn answer_terminated_while_the_caller_is_frozen_reports_the_end_and_the_statistics() {
    let (mut answer, port) = Sipline::answer(&["--null-audio"]);
    let uri = format!("sip:test@127.0.0.1:{port}");
    let mut call = Sipline::spawn(
        "call",
        &["call", &uri, "--bind", "127.0.0.1", "--null-audio"],
        &[],
    );
    call.wait_event("answered", SECS);
    answer.wait_event("answered", SECS);
    call.signal("STOP");
    answer.signal("TERM");
    let (code, events) = answer.wait_exit(SECS);
    call.signal("CONT");
    drop(call);
    assert_eq!(code, 0, "{events:?}\n{}", answer.stderr());
    let ended = ended_event(&events).expect("an ended event");
    assert_eq!(ended["reason"]["kind"], "bye_timeout", "{ended}");
    assert!(
        ended["media"].is_object(),
        "the statistics are there: {ended}"
    );
    assert!(
        !answer.stderr().contains("did not end in time"),
        "{}",
        answer.stderr()
    );
}

#[test]
fn calling_our_own_address_is_a_usage_error_at_once() {
    // A free port for our own socket.
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let uri = format!("sip:x@127.0.0.1:{port}");
    let port = port.to_string();
    let started = std::time::Instant::now();
    let mut call = Sipline::spawn(
        "call",
        &["call", &uri, "--local-port", &port, "--null-audio"],
        &[],
    );
    let (code, events) = call.wait_exit(SECS);
    assert_eq!(code, 2, "{events:?}\n{}", call.stderr());
    assert!(
        call.stderr().contains("would call itself"),
        "{}",
        call.stderr()
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "no waiting for Timer B: {:?}",
        started.elapsed()
    );
    assert!(
        !events.iter().any(|e| e["event"] == "calling"),
        "{events:?}"
    );
}
