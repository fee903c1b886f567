//! Interoperability with SIPp (Debian package `sip-tester`): sipline against
//! an independent SIP implementation, over UDP on 127.0.0.1.
//!
//! Each test runs one SIPp process in the foreground (`-m 1`: one call, then
//! exit) next to one sipline process, and checks both exit statuses: SIPp
//! exits 0 only when every message of its scenario arrived as expected. The
//! scenarios not built into SIPp live in `tests/data/sipp/`. SIPp's message
//! and error traces go to a temporary directory and are printed when a check
//! fails.
//!
//! SIPp is required: without it these tests fail (CI installs it).

#[path = "support/proc.rs"]
mod proc;

use std::fs;
use std::net::UdpSocket;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use proc::Sipline;
use serde_json::Value;

/// Upper bound for any single process in these tests; they normally finish
/// in a few seconds.
const LIMIT: Duration = Duration::from_secs(30);

/// A scenario file in `tests/data/sipp/`.
fn scenario(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/sipp")
        .join(name);
    assert!(path.exists(), "missing scenario {path:?}");
    path.to_string_lossy().into_owned()
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
fn free_udp_port() -> u16 {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind an ephemeral UDP port");
    sock.local_addr()
        .expect("bound socket has an address")
        .port()
}

/// True when some socket is bound to UDP 127.0.0.1:`port` (from
/// `/proc/net/udp`, so that probing does not steal the port).
fn udp_port_bound(port: u16) -> bool {
    let wanted = format!("0100007F:{port:04X}");
    fs::read_to_string("/proc/net/udp")
        .map(|t| {
            t.lines()
                .skip(1)
                .any(|l| l.split_whitespace().nth(1) == Some(wanted.as_str()))
        })
        .unwrap_or(false)
}

/// A SIPp process bound to 127.0.0.1, with its traces in a temporary
/// directory.
struct Sipp {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Sipp {
    /// Starts `sipp <args>` on 127.0.0.1:`port` for one call. `args` holds
    /// the scenario (`-sn uas`, `-sf file`) and, for a UAC, the target.
    fn start(args: &[&str], port: u16) -> Sipp {
        let dir = tempfile::tempdir().expect("create temp dir");
        let out = fs::File::create(dir.path().join("stdout.log")).expect("create stdout log");
        let err = fs::File::create(dir.path().join("stderr.log")).expect("create stderr log");
        let port_arg = port.to_string();
        let messages = dir.path().join("messages.log");
        let errors = dir.path().join("errors.log");
        let mut cmd = Command::new("sipp");
        cmd.args(args)
            .args(["-i", "127.0.0.1", "-p", &port_arg, "-m", "1", "-nostdin"])
            // SIPp's own limit, a little under ours, so that it reports.
            .args(["-timeout", "25s", "-timeout_error"])
            .args(["-trace_msg", "-message_file"])
            .arg(&messages)
            .args(["-trace_err", "-error_file"])
            .arg(&errors)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "SIPp is not installed: these interoperability tests need the `sipp` \
                 binary (Debian/Ubuntu package `sip-tester`): {e}"
            ),
            Err(e) => panic!("cannot run sipp: {e}"),
        };
        Sipp { child, dir, port }
    }

    /// Starts a SIPp UAS and waits until it listens.
    fn start_uas(args: &[&str]) -> Sipp {
        let port = free_udp_port();
        let mut sipp = Sipp::start(args, port);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !udp_port_bound(port) {
            if let Ok(Some(status)) = sipp.child.try_wait() {
                panic!("sipp exited early ({status})\n{}", sipp.logs());
            }
            assert!(
                Instant::now() < deadline,
                "sipp did not bind 127.0.0.1:{port}\n{}",
                sipp.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        sipp
    }

    /// Starts a SIPp UAC calling `sip:service@127.0.0.1:<target>`.
    fn start_uac(args: &[&str], target: u16) -> Sipp {
        let remote = format!("127.0.0.1:{target}");
        let mut all: Vec<&str> = args.to_vec();
        all.extend_from_slice(&[remote.as_str(), "-s", "service"]);
        Sipp::start(&all, free_udp_port())
    }

    fn uri(&self) -> String {
        format!("sip:service@127.0.0.1:{}", self.port)
    }

    fn message_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("messages.log")).unwrap_or_default()
    }

    /// Everything SIPp wrote: messages, errors, and the end of its screen.
    fn logs(&self) -> String {
        let read = |name: &str| fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        let screen = read("stdout.log");
        let tail: Vec<&str> = screen.lines().rev().take(60).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "--- sipp messages\n{}\n--- sipp errors\n{}\n--- sipp stderr\n{}\n--- sipp screen (end)\n{}",
            self.message_log(),
            read("errors.log"),
            read("stderr.log"),
            tail.join("\n")
        )
    }

    /// Waits for SIPp to exit (killing it after [`LIMIT`]); returns its
    /// exit code.
    fn wait(&mut self) -> i32 {
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for sipp") {
                return status.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("sipp did not exit within {LIMIT:?}\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Asserts that sipline and SIPp exited as expected, printing both sides'
/// logs otherwise.
fn assert_exits(
    sipline: &Sipline,
    sipline_code: i32,
    want_sipline: i32,
    events: &[Value],
    sipp: &mut Sipp,
) {
    let sipp_code = sipp.wait();
    assert!(
        sipline_code == want_sipline && sipp_code == 0,
        "sipline exited {sipline_code} (want {want_sipline}), sipp exited {sipp_code} (want 0)\n\
         sipline events: {events:#?}\n--- sipline stderr\n{}\n{}",
        sipline.stderr(),
        sipp.logs()
    );
}

/// The events named `name`.
fn events_named<'a>(events: &'a [Value], name: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == name).collect()
}

/// The `reason.kind` of the single `ended` event.
fn end_kind(events: &[Value]) -> String {
    let ended = events_named(events, "ended");
    assert_eq!(ended.len(), 1, "one ended event expected: {events:#?}");
    ended[0]["reason"]["kind"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The `tag` parameter of the To header of each message in SIPp's trace
/// whose first line starts with `start_line` and whose CSeq is `cseq`.
fn to_tags(log: &str, start_line: &str, cseq: &str) -> Vec<String> {
    let mut tags = Vec::new();
    for msg in log.split("-----------------------------------------------") {
        let lines: Vec<&str> = msg.lines().map(str::trim).collect();
        let Some(first) = lines
            .iter()
            .position(|l| l.starts_with("SIP/2.0 ") || l.contains(" sip:"))
        else {
            continue;
        };
        if !lines[first].starts_with(start_line) {
            continue;
        }
        let has_cseq = lines
            .iter()
            .any(|l| l.strip_prefix("CSeq:").is_some_and(|v| v.trim() == cseq));
        if !has_cseq {
            continue;
        }
        let tag = lines
            .iter()
            .find_map(|l| l.strip_prefix("To:"))
            .and_then(|to| to.split(";tag=").nth(1))
            .map(|t| t.split([';', ' ']).next().unwrap_or_default().to_string());
        tags.push(tag.unwrap_or_default());
    }
    tags
}

fn sipline_call(uri: &str, extra: &[&str]) -> Sipline {
    let mut args = vec![
        "call",
        uri,
        "--bind",
        "127.0.0.1",
        "--local-port",
        "0",
        "--null-audio",
    ];
    args.extend_from_slice(extra);
    Sipline::spawn("call", &args, &[])
}

#[test]
fn sipp_uas_answers_our_call_and_we_hang_up_after_the_duration() {
    let mut sipp = Sipp::start_uas(&["-sn", "uas"]);
    let mut call = sipline_call(&sipp.uri(), &["--duration", "1"]);
    let (code, events) = call.wait_exit(LIMIT);
    assert_exits(&call, code, 0, &events, &mut sipp);

    let progress = events_named(&events, "progress");
    assert!(
        progress.iter().any(|e| e["status"] == 180),
        "no 180 progress: {events:#?}"
    );
    assert_eq!(events_named(&events, "answered").len(), 1, "{events:#?}");
    assert_eq!(end_kind(&events), "local_hangup", "{events:#?}");
}

#[test]
fn sipp_uac_calls_us_and_hangs_up_and_we_see_a_remote_hangup() {
    let (mut answer, port) = Sipline::answer(&["--count", "1", "--null-audio"]);
    let mut sipp = Sipp::start_uac(&["-sn", "uac", "-d", "1000"], port);
    let (code, events) = answer.wait_exit(LIMIT);
    assert_exits(&answer, code, 0, &events, &mut sipp);

    let incoming = events_named(&events, "incoming");
    assert_eq!(incoming.len(), 1, "{events:#?}");
    // SIPp's From is `sipp <sip:sipp@127.0.0.1:PORT>;tag=...`: the caller
    // is given without the tag.
    assert!(incoming[0]["from"].as_str().unwrap().contains("tag="));
    assert_eq!(incoming[0]["display_name"], "sipp", "{:#?}", incoming[0]);
    let uri = incoming[0]["uri"].as_str().unwrap();
    assert!(
        uri.starts_with("sip:sipp@127.0.0.1") && !uri.contains("tag"),
        "{uri}"
    );
    assert_eq!(events_named(&events, "answered").len(), 1, "{events:#?}");
    assert_eq!(end_kind(&events), "remote_hangup", "{events:#?}");
}

#[test]
fn busy_callee_486_makes_call_exit_3_and_the_486_is_acked() {
    let mut sipp = Sipp::start_uas(&["-sf", &scenario("uas_busy.xml")]);
    let mut call = sipline_call(&sipp.uri(), &["--duration", "1"]);
    let (code, events) = call.wait_exit(LIMIT);
    // SIPp exits 0 only after it received the ACK for its 486.
    assert_exits(&call, code, 3, &events, &mut sipp);

    let ended = events_named(&events, "ended");
    assert_eq!(ended.len(), 1, "{events:#?}");
    assert_eq!(ended[0]["reason"]["kind"], "rejected", "{events:#?}");
    assert_eq!(ended[0]["reason"]["status"], 486, "{events:#?}");
}

#[test]
fn interrupt_while_ringing_cancels_acks_the_487_and_exits_130() {
    let mut sipp = Sipp::start_uas(&["-sf", &scenario("uas_no_answer.xml")]);
    let mut call = sipline_call(&sipp.uri(), &[]);
    let progress = call.wait_event("progress", LIMIT);
    assert_eq!(progress["status"], 180, "{progress}");
    call.signal("INT");
    let (code, events) = call.wait_exit(LIMIT);
    // SIPp exits 0 only after CANCEL, then the ACK for its 487.
    assert_exits(&call, code, 130, &events, &mut sipp);
    assert_eq!(end_kind(&events), "cancelled", "{events:#?}");
    assert!(events_named(&events, "answered").is_empty(), "{events:#?}");
}

#[test]
fn options_gets_200_with_allow_accept_supported_and_stray_bye_gets_481() {
    let (mut answer, port) = Sipline::answer(&["--count", "1", "--null-audio"]);
    // The checks on the 200's headers and the 481 are in the scenario.
    let mut sipp = Sipp::start_uac(&["-sf", &scenario("uac_options.xml")], port);
    let sipp_code = sipp.wait();
    assert_eq!(
        sipp_code,
        0,
        "sipp failed\n{}\n--- sipline stderr\n{}",
        sipp.logs(),
        answer.stderr()
    );
    // Neither request started a call.
    std::thread::sleep(Duration::from_millis(300));
    answer.signal("TERM");
    let (_, events) = answer.wait_exit(LIMIT);
    assert!(events_named(&events, "incoming").is_empty(), "{events:#?}");
    assert!(events_named(&events, "ended").is_empty(), "{events:#?}");
}

#[test]
fn caller_cancel_before_answer_gets_200_and_487_and_ends_remote_cancelled() {
    let (mut answer, port) =
        Sipline::answer(&["--count", "1", "--answer-after", "5", "--null-audio"]);
    let mut sipp = Sipp::start_uac(&["-sf", &scenario("uac_cancel.xml")], port);
    let (code, events) = answer.wait_exit(LIMIT);
    assert_exits(&answer, code, 0, &events, &mut sipp);
    assert_eq!(end_kind(&events), "remote_cancelled", "{events:#?}");
    assert!(events_named(&events, "answered").is_empty(), "{events:#?}");

    // RFC 3261 §9.2: the 200 to the CANCEL and the 487 to the INVITE
    // carry the same To tag (that of the 180).
    let log = sipp.message_log();
    let ringing = to_tags(&log, "SIP/2.0 180", "1 INVITE");
    let cancel_ok = to_tags(&log, "SIP/2.0 200", "1 CANCEL");
    let terminated = to_tags(&log, "SIP/2.0 487", "1 INVITE");
    assert!(
        !ringing.is_empty() && !ringing[0].is_empty(),
        "no tagged 180 in the trace\n{log}"
    );
    assert_eq!(
        cancel_ok.first(),
        ringing.first(),
        "200 (CANCEL) To tag\n{log}"
    );
    assert_eq!(terminated.first(), ringing.first(), "487 To tag\n{log}");
}

/// Not SIPp, but the same two-process set-up: an answerer that sat idle
/// before the call must send RTP at the packet rate (50/s for 20 ms frames),
/// not a burst of the media ticks it missed while idle.
#[test]
fn answerer_idle_before_the_call_sends_rtp_in_real_time_without_a_burst() {
    let (mut answer, port) = Sipline::answer(&["--count", "1", "--null-audio"]);
    std::thread::sleep(Duration::from_secs(2));
    let uri = format!("sip:sipline@127.0.0.1:{port}");
    let mut call = sipline_call(&uri, &["--duration", "1"]);
    let (code, events) = call.wait_exit(LIMIT);
    assert_eq!(code, 0, "{events:#?}\n{}", call.stderr());
    let (code, answer_events) = answer.wait_exit(LIMIT);
    assert_eq!(code, 0, "{answer_events:#?}\n{}", answer.stderr());

    let ended = events_named(&answer_events, "ended");
    assert_eq!(ended.len(), 1, "{answer_events:#?}");
    let sent = ended[0]["media"]["packets_sent"].as_u64().unwrap_or(0);
    let secs = ended[0]["duration_s"].as_f64().unwrap_or(0.0);
    // 50 packets per second of call, with room for scheduling jitter and
    // the frames between the 200 OK and the ACK.
    let most = (secs * 50.0).ceil() as u64 + 10;
    assert!(
        (25..=most).contains(&sent),
        "answerer sent {sent} RTP packets in a {secs:.2} s call (at most {most} expected)"
    );
}

/// An even UDP port on 127.0.0.1 for SIPp's RTP echo, with the next two
/// ports free as well (SIPp echoes on PORT and PORT + 2; PORT + 1 is where
/// a caller sends RTCP by default).
fn free_media_port() -> u16 {
    for _ in 0..50 {
        let even = free_udp_port() & !1;
        if !(1024..=65530).contains(&even) {
            continue;
        }
        let bound: Vec<_> = (0..3)
            .filter_map(|i| UdpSocket::bind(("127.0.0.1", even + i)).ok())
            .collect();
        if bound.len() == 3 {
            return even;
        }
    }
    panic!("no three consecutive free UDP ports on 127.0.0.1");
}

/// A SIPp callee with its RTP echo on `media_port`.
fn sipp_echo_uas(scenario_file: &str, media_port: u16) -> Sipp {
    let mp = media_port.to_string();
    Sipp::start_uas(&[
        "-sf",
        scenario_file,
        "-rtp_echo",
        "-mp",
        &mp,
        "-mi",
        "127.0.0.1",
    ])
}

/// Calls `sipp` for 2.5 s with a 0.2 s RTCP interval; returns the media
/// event and the `media` object of the ended event.
fn call_sipp_echo(sipp: &mut Sipp) -> (Value, Value) {
    // The RTT is measured in real time: one echo call at a time, so that
    // the other echo call's processes do not delay this one's reports.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut call = sipline_call(
        &sipp.uri(),
        &["--duration", "2.5", "--rtcp-interval", "0.2"],
    );
    let (code, events) = call.wait_exit(LIMIT);
    assert_exits(&call, code, 0, &events, sipp);
    let media = events_named(&events, "media");
    let ended = events_named(&events, "ended");
    assert_eq!((media.len(), ended.len()), (1, 1), "{events:#?}");
    let stats = ended[0]["media"].clone();
    // SIPp echoes our RTP: about 125 packets come back.
    assert!(
        stats["packets_received"].as_u64().unwrap_or(0) >= 100,
        "RTP echo: {stats:#}\n{}",
        call.stderr()
    );
    (media[0].clone(), stats)
}

/// The echoed RTCP gives receiver reports about our own stream and a
/// round-trip time. Reflected, our report's LSR/DLSR describe the previous
/// echo, so the figure is twice the loop's delay: well under 10 ms on
/// loopback.
fn assert_echoed_rtcp_gives_an_rtt(stats: &Value) {
    let rtcp = &stats["rtcp"];
    assert!(
        rtcp["reports_received"].as_u64().unwrap_or(0) >= 4,
        "RTCP came back: {rtcp:#}"
    );
    let rtt = rtcp["rtt_ms"]
        .as_f64()
        .unwrap_or_else(|| panic!("no RTT: {rtcp:#}"));
    assert!((0.0..10.0).contains(&rtt), "RTT {rtt} ms: {rtcp:#}");
    assert_eq!(rtcp["remote"]["cumulative_lost"], 0, "{rtcp:#}");
    assert!(
        rtcp["remote"]["highest_seq"].as_u64().unwrap_or(0) > 0,
        "{rtcp:#}"
    );
}

#[test]
fn sipp_rtp_echo_with_rtcp_mux_returns_our_reports_with_a_loopback_rtt() {
    let media_port = free_media_port();
    let mut sipp = sipp_echo_uas(&scenario("uas_echo_rtcp_mux.xml"), media_port);
    let (media, stats) = call_sipp_echo(&mut sipp);
    // We offered a=rtcp-mux and SIPp's answer has it: RTCP on the RTP port.
    assert_eq!(media["rtcp_mux"], true, "{media}");
    assert_eq!(media["remote_rtcp"], format!("127.0.0.1:{media_port}"));
    assert_echoed_rtcp_gives_an_rtt(&stats);
}

#[test]
fn sipp_rtp_echo_on_the_a_rtcp_port_returns_our_reports_with_a_loopback_rtt() {
    let media_port = free_media_port();
    let dir = tempfile::tempdir().expect("create temp dir");
    let file = dir.path().join("uas_echo_rtcp_port.xml");
    let text = fs::read_to_string(scenario("uas_echo_rtcp_port.xml")).expect("read scenario");
    fs::write(
        &file,
        text.replace("@RTCP_PORT@", &(media_port + 2).to_string()),
    )
    .expect("write scenario");
    let mut sipp = sipp_echo_uas(&file.to_string_lossy(), media_port);
    let (media, stats) = call_sipp_echo(&mut sipp);
    // No mux in the answer: RTCP from our RTCP socket to its a=rtcp port.
    assert_eq!(media["rtcp_mux"], false, "{media}");
    assert_eq!(
        media["remote_rtcp"],
        format!("127.0.0.1:{}", media_port + 2)
    );
    assert_echoed_rtcp_gives_an_rtt(&stats);
}

/// SIPp's built-in callee answers without a=rtcp or a=rtcp-mux, so RTCP
/// goes to RTP port + 1 (RFC 3550 §11), where SIPp neither listens nor
/// echoes: reports go out, none come back, and no RTT is claimed.
#[test]
fn sipp_rtp_echo_ignores_rtcp_on_port_plus_one_and_no_rtt_is_invented() {
    let media_port = free_media_port();
    let mp = media_port.to_string();
    let mut sipp = Sipp::start_uas(&["-sn", "uas", "-rtp_echo", "-mp", &mp, "-mi", "127.0.0.1"]);
    let mut call = sipline_call(
        &sipp.uri(),
        &["--duration", "1.5", "--rtcp-interval", "0.2"],
    );
    let (code, events) = call.wait_exit(LIMIT);
    assert_exits(&call, code, 0, &events, &mut sipp);
    let media = events_named(&events, "media");
    assert_eq!(
        media[0]["remote_rtcp"],
        format!("127.0.0.1:{}", media_port + 1)
    );
    let ended = events_named(&events, "ended");
    let rtcp = &ended[0]["media"]["rtcp"];
    assert!(rtcp["reports_sent"].as_u64().unwrap_or(0) >= 3, "{rtcp:#}");
    assert_eq!(rtcp["reports_received"], 0, "{rtcp:#}");
    assert!(rtcp["rtt_ms"].is_null(), "{rtcp:#}");
    assert!(ended[0]["media"]["packets_received"].as_u64().unwrap_or(0) >= 50);
}

/// RFC 4733 events read from RTP packets: (payload type, event code, end
/// bit) of every packet, in arrival order.
fn telephone_events(packets: &[Vec<u8>], pt: u8) -> Vec<(u8, bool)> {
    packets
        .iter()
        .filter(|p| p.len() >= 16 && p[1] & 0x7f == pt)
        .map(|p| (p[12], p[13] & 0x80 != 0))
        .collect()
}

/// RFC 3264 §5.1 / RFC 4733 §2.5.1: the callee's answer maps
/// telephone-event to 97; the events we send carry 97 (not the 101 we
/// offered), one event per digit, each ended by three end packets.
#[test]
fn dtmf_uses_the_payload_type_of_sipps_answer_with_three_end_packets() {
    let rtp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind RTP sink");
    rtp.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("set timeout");
    let rtp_port = rtp.local_addr().expect("local addr").port().to_string();
    let mut sipp = Sipp::start_uas(&[
        "-sf",
        &scenario("uas_dtmf_pt97.xml"),
        "-set",
        "rtpport",
        &rtp_port,
    ]);
    let mut call = sipline_call(
        &sipp.uri(),
        &["--duration", "3", "--dtmf", "159#", "--dtmf-after", "0.3"],
    );
    // Read until the stream has been silent for a second (the call ended).
    let mut packets = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = Instant::now();
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        match rtp.recv_from(&mut buf) {
            Ok((n, _)) => {
                packets.push(buf[..n].to_vec());
                last = Instant::now();
            }
            Err(_) if !packets.is_empty() && last.elapsed() > Duration::from_secs(1) => break,
            Err(_) => {}
        }
    }
    let (code, events) = call.wait_exit(LIMIT);
    assert_exits(&call, code, 0, &events, &mut sipp);

    let audio = packets.iter().filter(|p| p[1] & 0x7f == 0).count();
    assert!(audio > 50, "PCMU packets: {audio}");
    assert!(
        telephone_events(&packets, 101).is_empty(),
        "events were sent with the offered 101 instead of the answer's 97"
    );
    let events97 = telephone_events(&packets, 97);
    // Each digit: its event code while it lasts, then exactly three end packets.
    let mut digits = Vec::new();
    let mut ends = Vec::new();
    for (code, end) in &events97 {
        if digits.last() != Some(code) {
            digits.push(*code);
            ends.push(0);
        }
        if *end {
            *ends.last_mut().expect("a digit started") += 1;
        }
    }
    assert_eq!(digits, vec![1, 5, 9, 11], "event codes: {events97:?}");
    assert_eq!(
        ends,
        vec![3, 3, 3, 3],
        "end packets per digit: {events97:?}"
    );
}

/// SIP INFO with `application/dtmf-relay` from SIPp: each digit is reported
/// once, in order, and each INFO gets its 200.
#[test]
fn sip_info_digits_from_sipp_are_reported() {
    let (mut answer, port) = Sipline::answer(&["--count", "1", "--null-audio"]);
    let mut sipp = Sipp::start_uac(&["-sf", &scenario("uac_info_dtmf.xml")], port);
    let (code, events) = answer.wait_exit(LIMIT);
    // SIPp exits 0 only when both INFOs got their 200.
    assert_exits(&answer, code, 0, &events, &mut sipp);
    let digits: String = events_named(&events, "dtmf")
        .iter()
        .filter_map(|e| e["digit"].as_str())
        .collect();
    assert_eq!(digits, "7#", "{events:#?}");
    assert_eq!(end_kind(&events), "remote_hangup", "{events:#?}");
}

/// RFC 4733 events sent by SIPp itself (its recorded captures for 1 and 9,
/// on the payload type 101 that its offer names) are reported once each.
#[test]
fn rfc4733_digits_played_by_sipp_are_reported() {
    let (mut answer, port) = Sipline::answer(&["--count", "1", "--null-audio"]);
    let mut sipp = Sipp::start_uac(&["-sf", &scenario("uac_rfc4733_pcap.xml")], port);
    let (code, events) = answer.wait_exit(LIMIT);
    assert_exits(&answer, code, 0, &events, &mut sipp);
    let digits: String = events_named(&events, "dtmf")
        .iter()
        .filter_map(|e| e["digit"].as_str())
        .collect();
    assert_eq!(digits, "19", "{events:#?}");
}

/// RFC 3515: SIPp answers, then transfers us with REFER to a second
/// sipline; `sipline call` follows the transfer: it reports it, the target
/// answers, and the call ends after the duration with our BYE to the target.
#[test]
fn call_follows_a_blind_transfer_from_sipp_to_the_target() {
    let (mut carol, carol_port) = Sipline::answer(&["--count", "1", "--null-audio"]);
    let target = format!("sip:carol@127.0.0.1:{carol_port}");
    let mut sipp = Sipp::start_uas(&["-sf", &scenario("uas_refer.xml"), "-key", "target", &target]);
    let mut call = sipline_call(&sipp.uri(), &["--duration", "2"]);
    let (code, events) = call.wait_exit(LIMIT);
    assert_exits(&call, code, 0, &events, &mut sipp);
    let transferred = events_named(&events, "transferred");
    assert_eq!(transferred.len(), 1, "{events:#?}");
    assert_eq!(transferred[0]["target"], target.as_str(), "{events:#?}");
    assert_eq!(events_named(&events, "answered").len(), 2, "{events:#?}");
    assert_eq!(end_kind(&events), "local_hangup", "{events:#?}");
    let (carol_code, carol_events) = carol.wait_exit(LIMIT);
    assert_eq!(carol_code, 0, "{carol_events:#?}\n{}", carol.stderr());
    assert_eq!(
        end_kind(&carol_events),
        "remote_hangup",
        "{carol_events:#?}"
    );
}

/// The interactive phone's `dtmf` command, when the answer has no
/// telephone-event, sends SIP INFO (application/dtmf-relay) that SIPp
/// checks digit by digit: SIPp exits 0 only if both INFOs carried the
/// right Signal.
#[test]
fn phone_dtmf_without_telephone_event_goes_by_sip_info_to_sipp() {
    let mut sipp = Sipp::start_uas(&[
        "-sf",
        &scenario("uas_info_dtmf_expect.xml"),
        "-mp",
        &free_media_port().to_string(),
    ]);
    let data = tempfile::tempdir().expect("create temp dir");
    let call = format!("call {}", sipp.uri());
    let mut phone = Sipline::spawn(
        "phone",
        &[
            "--bind",
            "127.0.0.1",
            "--local-port",
            "0",
            "--null-audio",
            "--codecs",
            "pcmu",
            "-e",
            &call,
            "-e",
            "wait-for answered",
            "-e",
            "dtmf 1#",
            "-e",
            "wait 1",
            "-e",
            "hangup",
            "-e",
            "wait-for ended",
        ],
        &[(
            "XDG_DATA_HOME".to_string(),
            data.path().to_string_lossy().into_owned(),
        )],
    );
    let (code, events) = phone.wait_exit(LIMIT);
    assert_exits(&phone, code, 0, &events, &mut sipp);
    let sent = events_named(&events, "dtmf_sent");
    assert_eq!(sent.len(), 1, "{events:#?}");
    assert_eq!(sent[0]["method"], "info", "{events:#?}");
}
