//! The phone driven by scripts: `-e` commands and piped stdin, against
//! `sipline answer` and `sipline call` peers on loopback, with `--json`
//! events and exit statuses.

#[path = "support/proc.rs"]
mod proc;

use std::time::Duration;

use proc::Sipline;
use serde_json::Value;

const SECS: Duration = Duration::from_secs(30);

/// Environment without the caller's config and with a fresh data
/// directory (call history).
fn env(data: &tempfile::TempDir) -> Vec<(String, String)> {
    vec![(
        "XDG_DATA_HOME".to_string(),
        data.path().to_string_lossy().into_owned(),
    )]
}

fn names(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| e["event"].as_str().map(str::to_string))
        .collect()
}

fn of<'a>(events: &'a [Value], name: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == name).collect()
}

/// Checks `wanted` occur in this order (others may come between).
fn assert_in_order(events: &[Value], wanted: &[&str]) {
    let names = names(events);
    let mut at = 0;
    for w in wanted {
        match names[at..].iter().position(|n| n == w) {
            Some(i) => at += i + 1,
            None => panic!("no {w:?} after position {at} in {names:?}"),
        }
    }
}

/// The media directions the peer reported, in order.
fn directions(events: &[Value]) -> Vec<String> {
    of(events, "media")
        .iter()
        .map(|e| e["direction"].as_str().unwrap_or("").to_string())
        .collect()
}

fn phone_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["--bind", "127.0.0.1", "--local-port", "0", "--null-audio"];
    v.extend_from_slice(extra);
    v
}

#[test]
fn e_script_calls_sends_dtmf_holds_resumes_and_hangs_up_with_exit_0() {
    let data = tempfile::tempdir().unwrap();
    let (mut peer, port) = Sipline::answer(&["--null-audio"]);
    let target = format!("call sip:bob@127.0.0.1:{port}");
    let mut args = phone_args(&[]);
    let script = [
        "trace on",
        target.as_str(),
        "wait-for answered",
        "dtmf 1#",
        "wait 1",
        "hold",
        "wait-for held",
        "resume",
        "wait-for resumed",
        "calls",
        "hangup",
        "wait-for ended",
        "history",
    ];
    for c in &script {
        args.push("-e");
        args.push(c);
    }
    let mut phone = Sipline::spawn("phone", &args, &env(&data));
    let (code, events) = phone.wait_exit(SECS);
    assert_eq!(code, 0, "events {events:?}\n{}", phone.stderr());
    assert_in_order(
        &events,
        &[
            "listening",
            "calling",
            "ringing",
            "answered",
            "dtmf_sent",
            "held",
            "resumed",
            "calls",
            "ended",
            "history",
        ],
    );
    // trace on: every SIP message is an event; the INVITE among them.
    let sip = of(&events, "sip");
    assert!(
        sip.iter().any(|e| e["direction"] == "sent"
            && e["text"]
                .as_str()
                .unwrap()
                .starts_with("INVITE sip:bob@127.0.0.1")),
        "{sip:?}"
    );
    assert!(
        sip.iter().any(|e| e["direction"] == "received"
            && e["text"].as_str().unwrap().starts_with("SIP/2.0 180"))
    );
    let sent = of(&events, "dtmf_sent")[0];
    assert_eq!(sent["digits"], "1#");
    assert_eq!(sent["method"], "rfc4733", "telephone-event was negotiated");
    let calls = &of(&events, "calls")[0]["calls"];
    assert_eq!(calls.as_array().map(Vec::len), Some(1));
    assert_eq!(calls[0]["state"], "active");
    assert_eq!(calls[0]["peer"], format!("sip:bob@127.0.0.1:{port}"));
    assert_eq!(of(&events, "ended")[0]["reason"]["kind"], "local_hangup");
    let history = &of(&events, "history")[0]["calls"];
    assert_eq!(history[0]["direction"], "outgoing");
    assert_eq!(history[0]["result"], "we hung up");
    assert!(data.path().join("sipline/history.json").exists());

    // The peer received the digits and saw the re-INVITEs: our hold
    // (sendonly) answered recvonly, then sendrecv again (RFC 3264 §8.4).
    peer.wait_event("ended", SECS);
    peer.signal("TERM");
    let (_, peer_events) = peer.wait_exit(SECS);
    let digits: Vec<&str> = of(&peer_events, "dtmf")
        .iter()
        .filter_map(|e| e["digit"].as_str())
        .collect();
    assert_eq!(digits, ["1", "#"]);
    assert_eq!(
        directions(&peer_events),
        ["sendrecv", "recvonly", "sendrecv"]
    );
}

#[test]
fn piped_stdin_runs_commands_line_by_line_and_quits_at_the_end() {
    let data = tempfile::tempdir().unwrap();
    let (mut peer, port) = Sipline::answer(&["--null-audio"]);
    let script = format!(
        "# a comment, then an empty line\n\n\
         c sip:bob@127.0.0.1:{port}\n\
         wf answered\n\
         d 5\n\
         w 0.3\n\
         h\n\
         wait-for ended\n"
    );
    let mut phone =
        Sipline::spawn_with_stdin("phone", &phone_args(&[]), &env(&data), Some(&script));
    let (code, events) = phone.wait_exit(SECS);
    assert_eq!(code, 0, "events {events:?}\n{}", phone.stderr());
    assert_in_order(&events, &["calling", "answered", "dtmf_sent", "ended"]);
    assert!(of(&events, "error").is_empty(), "{events:?}");
    peer.wait_event("ended", SECS);
    peer.signal("TERM");
    let (_, peer_events) = peer.wait_exit(SECS);
    assert_eq!(of(&peer_events, "dtmf")[0]["digit"], "5");
}

#[test]
fn script_failures_stop_the_script_with_the_documented_exit_codes() {
    let data = tempfile::tempdir().unwrap();
    // An unknown command: usage error (2); the commands after it never run.
    let mut p = Sipline::spawn(
        "phone",
        &phone_args(&["-e", "dial 1001", "-e", "help"]),
        &env(&data),
    );
    let (code, events) = p.wait_exit(SECS);
    assert_eq!(code, 2, "{events:?}");
    assert!(of(&events, "help").is_empty());
    assert!(
        of(&events, "error")[0]["message"]
            .as_str()
            .unwrap()
            .contains("unknown command")
    );

    // wait-for that times out: 10.
    let mut p = Sipline::spawn(
        "phone",
        &phone_args(&["-e", "wait-for incoming 0.3"]),
        &env(&data),
    );
    assert_eq!(p.wait_exit(SECS).0, 10);

    // A sound device that does not exist: audio error (7).
    let mut p = Sipline::spawn(
        "phone",
        &phone_args(&["-e", "devices in no-such-device-here"]),
        &env(&data),
    );
    assert_eq!(p.wait_exit(SECS).0, 7);

    // A number without an account domain: usage error.
    let mut p = Sipline::spawn("phone", &phone_args(&["-e", "call 1001"]), &env(&data));
    assert_eq!(p.wait_exit(SECS).0, 2);

    // The callee is busy while we wait for the answer: 3, as for `call`.
    let (_peer, port) = Sipline::answer(&["--null-audio", "--reject", "486"]);
    let call = format!("call sip:bob@127.0.0.1:{port}");
    let mut p = Sipline::spawn(
        "phone",
        &phone_args(&["-e", &call, "-e", "wait-for answered"]),
        &env(&data),
    );
    let (code, events) = p.wait_exit(SECS);
    assert_eq!(code, 3, "{events:?}");
    assert_eq!(of(&events, "ended")[0]["reason"]["status"], 486);
}

#[test]
fn call_waiting_answering_a_second_call_holds_the_first_and_switch_goes_back() {
    let data = tempfile::tempdir().unwrap();
    let script = [
        "wait-for incoming 20",
        "answer 1",
        "wait-for answered",
        "wait-for incoming 20",
        "answer 2",
        "wait-for answered",
        "wait-for held",
        "calls",
        "switch 1",
        "wait-for held",
        "wait-for resumed",
        "hangup all",
        "wait-for ended",
        "wait-for ended",
        "history 5",
    ];
    let mut args = phone_args(&[]);
    for c in &script {
        args.push("-e");
        args.push(c);
    }
    let mut phone = Sipline::spawn("phone", &args, &env(&data));
    let port = phone.wait_event("listening", SECS)["port"]
        .as_u64()
        .unwrap();
    let target = format!("sip:phone@127.0.0.1:{port}");
    let caller = |name: &str| {
        Sipline::spawn(
            name,
            &["call", &target, "--null-audio", "--bind", "127.0.0.1"],
            &[],
        )
    };
    let mut first = caller("first");
    first.wait_event("answered", SECS);
    let mut second = caller("second");
    second.wait_event("answered", SECS);

    let (code, events) = phone.wait_exit(SECS);
    assert_eq!(code, 0, "events {events:?}\n{}", phone.stderr());
    let calls = &of(&events, "calls")[0]["calls"];
    assert_eq!(calls[0]["call"], 1);
    assert_eq!(calls[0]["state"], "on hold");
    assert_eq!(calls[1]["call"], 2);
    assert_eq!(calls[1]["state"], "active");
    assert_eq!(calls[1]["current"], true);
    let held: Vec<&Value> = of(&events, "held").iter().map(|e| &e["call"]).collect();
    assert_eq!(held, [1, 2], "answering 2 holds 1; switch 1 holds 2");
    assert_eq!(of(&events, "resumed")[0]["call"], 1);
    assert_eq!(of(&events, "ended").len(), 2);
    let history = of(&events, "history")[0]["calls"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(history.len(), 2);
    assert!(history.iter().all(|h| h["direction"] == "incoming"));

    // Each caller saw its hold as a re-INVITE it answered recvonly.
    let (c1, e1) = first.wait_exit(SECS);
    let (c2, e2) = second.wait_exit(SECS);
    assert_eq!((c1, c2), (0, 0));
    assert_eq!(directions(&e1), ["sendrecv", "recvonly", "sendrecv"]);
    assert_eq!(directions(&e2), ["sendrecv", "recvonly"]);
}

#[test]
fn transfer_refers_the_peer_to_a_third_party_and_our_call_ends() {
    let data = tempfile::tempdir().unwrap();
    let (mut peer, peer_port) = Sipline::answer(&["--null-audio"]);
    let (mut third, third_port) = Sipline::answer(&["--null-audio"]);
    let call = format!("call sip:bob@127.0.0.1:{peer_port}");
    let transfer = format!("transfer sip:carol@127.0.0.1:{third_port}");
    let mut phone = Sipline::spawn(
        "phone",
        &phone_args(&[
            "-e",
            &call,
            "-e",
            "wait-for answered",
            "-e",
            &transfer,
            "-e",
            "wait-for ended",
        ]),
        &env(&data),
    );
    let (code, events) = phone.wait_exit(SECS);
    assert_eq!(code, 0, "events {events:?}\n{}", phone.stderr());
    assert_in_order(&events, &["answered", "transfer_sent", "transfer", "ended"]);
    let states: Vec<&str> = of(&events, "transfer")
        .iter()
        .filter_map(|e| e["state"].as_str())
        .collect();
    assert_eq!(states.first(), Some(&"accepted"), "{states:?}");
    assert_eq!(states.last(), Some(&"succeeded"), "{states:?}");
    // The transferee called the new target (RFC 3515 §2.4.2).
    let incoming = third.wait_event("incoming", SECS);
    assert_eq!(
        incoming["to"].as_str().unwrap(),
        format!("<sip:carol@127.0.0.1:{third_port}>")
    );
    third.wait_event("answered", SECS);
    peer.signal("TERM");
    third.signal("TERM");
    let _ = peer.wait_exit(SECS);
    let _ = third.wait_exit(SECS);
}

#[test]
fn devices_out_switches_the_current_call_and_finishes_the_old_recording() {
    let data = tempfile::tempdir().unwrap();
    let tone = data.path().join("tone.wav");
    proc::write_tone_wav(&tone, 1000.0, 8000, 1, 5.0, 0.5);
    let (mut peer, port) = Sipline::answer(&["--null-audio", "--play", tone.to_str().unwrap()]);
    let rec = data.path().join("rec.wav");
    let call = format!("call sip:bob@127.0.0.1:{port}");
    let mut phone = Sipline::spawn(
        "phone",
        &phone_args(&[
            "--record",
            rec.to_str().unwrap(),
            "-e",
            &call,
            "-e",
            "wait-for answered",
            "-e",
            "wait 1",
            "-e",
            "devices out none",
            "-e",
            "wait 1.5",
            "-e",
            "hangup",
            "-e",
            "wait-for ended",
        ]),
        &env(&data),
    );
    let (code, events) = phone.wait_exit(SECS);
    assert_eq!(code, 0, "events {events:?}\n{}", phone.stderr());
    let switched = of(&events, "output");
    assert!(
        switched
            .iter()
            .any(|e| e["text"] == "output device for this call and the next ones: none"),
        "{events:?}"
    );
    // The recording was the call's sink until the switch: about 1 s of
    // the 2.5 s call, complete and readable.
    let (samples, rate) = proc::read_wav(&rec);
    let secs = samples.len() as f64 / f64::from(rate);
    assert!((0.6..1.8).contains(&secs), "recorded {secs:.2} s");
    assert!(
        !proc::tone_part(&samples, rate).is_empty(),
        "the tone was recorded"
    );
    peer.signal("TERM");
    let _ = peer.wait_exit(SECS);
}
