//! Media through the namespace NAT of `tests/support/netns.rs`, without
//! STUN: the NATed `sipline` advertises its private address in its SDP, so
//! the public side only gets audio back to it by latching onto the address
//! its RTP really comes from (the router's public address); and while a
//! call is on hold, keep-alives still leave the RTP socket and cross the NAT.

#[path = "support/netns.rs"]
mod netns;
#[path = "support/proc.rs"]
mod proc;

use std::path::Path;
use std::time::Duration;

use netns::{Nat, NatOptions};
use proc::{Sipline, read_wav, tone_part, write_tone_wav};
use serde_json::Value;
use sipline::media::signal::dominant_frequency;

const LIMIT: Duration = Duration::from_secs(60);

fn assert_holds_tone(path: &Path, freq: f64) {
    let (samples, rate) = read_wav(path);
    let part = tone_part(&samples, rate);
    assert!(
        part.len() > rate as usize,
        "{path:?}: at least a second of tone recorded (got {} samples)",
        part.len()
    );
    let f = dominant_frequency(part, rate);
    assert!(
        (f - freq).abs() <= freq * 0.02,
        "{path:?}: dominant frequency {f} Hz, expected {freq} Hz ±2 %"
    );
}

/// `sipline answer` on the public host; returns it and its SIP port.
fn public_answerer(nat: &Nat, extra: &[&str]) -> (Sipline, u16) {
    let public = Nat::PUBLIC.to_string();
    let mut args = vec!["answer", "--bind", &public, "--local-port", "0"];
    args.extend_from_slice(extra);
    let mut a = Sipline::spawn_in_netns(&nat.public.name, "answer", &args, &[]);
    let ev = a.wait_event("listening", LIMIT);
    let port = ev["port"].as_u64().expect("listening event has a port") as u16;
    (a, port)
}

fn ended(events: &[Value]) -> &Value {
    events
        .iter()
        .find(|e| e["event"] == "ended")
        .unwrap_or_else(|| panic!("an ended event in {events:?}"))
}

#[test]
fn a_peer_whose_rtp_comes_from_another_address_than_its_sdp_gets_two_way_audio() {
    let nat = Nat::build(NatOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let (tone_pub, tone_priv) = (dir.path().join("pub.wav"), dir.path().join("priv.wav"));
    let (out_pub, out_priv) = (
        dir.path().join("out_pub.wav"),
        dir.path().join("out_priv.wav"),
    );
    write_tone_wav(&tone_pub, 1000.0, 8000, 1, 6.0, 0.5);
    write_tone_wav(&tone_priv, 440.0, 8000, 1, 6.0, 0.5);
    let (mut answer, port) = public_answerer(
        &nat,
        &[
            "--count",
            "1",
            "--null-audio",
            "--codecs",
            "pcmu",
            "--play",
            tone_pub.to_str().unwrap(),
            "--record",
            out_pub.to_str().unwrap(),
        ],
    );
    // The private side's SDP names 198.51.100.10, which the public host
    // cannot reach; its RTP arrives from 198.51.100.65 (MASQUERADE).
    let uri = format!("sip:test@{}:{port}", Nat::PUBLIC);
    let private = Nat::PRIVATE.to_string();
    let mut call = Sipline::spawn_in_netns(
        &nat.private.name,
        "call",
        &[
            "call",
            &uri,
            "--bind",
            &private,
            "--codecs",
            "pcmu",
            "--play",
            tone_priv.to_str().unwrap(),
            "--record",
            out_priv.to_str().unwrap(),
            "--duration",
            "4",
            "--null-audio",
        ],
        &[],
    );
    let (code, call_events) = call.wait_exit(LIMIT);
    assert_eq!(code, 0, "{call_events:?}\n{}", call.stderr());
    let (code, answer_events) = answer.wait_exit(LIMIT);
    assert_eq!(code, 0, "{answer_events:?}\n{}", answer.stderr());

    let media = answer_events
        .iter()
        .find(|e| e["event"] == "media")
        .expect("a media event");
    assert!(
        media["remote_rtp"]
            .as_str()
            .unwrap()
            .starts_with("198.51.100.10:"),
        "the SDP names the private address: {media}"
    );
    let stats = &ended(&answer_events)["media"];
    let latched = stats["latched_to"].as_str().expect("latched_to is set");
    assert!(
        latched.starts_with("198.51.100.65:"),
        "RTP latched onto the NAT's public address: {stats}"
    );
    // Both directions carried the other side's tone.
    assert_holds_tone(&out_pub, 440.0);
    assert_holds_tone(&out_priv, 1000.0);
}

#[test]
fn on_hold_keepalives_leave_the_rtp_socket_and_cross_the_nat() {
    let nat = Nat::build(NatOptions::default());
    let (mut answer, port) = public_answerer(
        &nat,
        &[
            "--count",
            "1",
            "--null-audio",
            "--codecs",
            "pcmu",
            "--no-rtcp-mux",
        ],
    );
    let uri = format!("sip:test@{}:{port}", Nat::PUBLIC);
    let private = Nat::PRIVATE.to_string();
    let call_cmd = format!("call {uri}");
    // The private phone calls, holds for 6 s with a 1 s keep-alive interval
    // and RTCP on its own port (so that only keep-alives use the RTP
    // socket while held), then hangs up.
    let mut phone = Sipline::spawn_in_netns(
        &nat.private.name,
        "phone",
        &[
            "--null-audio",
            "--bind",
            &private,
            "--local-port",
            "0",
            "--codecs",
            "pcmu",
            "--no-rtcp-mux",
            "--rtp-keepalive",
            "1",
            "-e",
            &call_cmd,
            "-e",
            "wait-for answered",
            "-e",
            "hold",
            "-e",
            "wait-for held",
            "-e",
            "wait 6",
            "-e",
            "hangup",
            "-e",
            "wait-for ended",
        ],
        &[],
    );
    let (code, phone_events) = phone.wait_exit(LIMIT);
    assert_eq!(code, 0, "{phone_events:?}\n{}", phone.stderr());
    let (code, answer_events) = answer.wait_exit(LIMIT);
    assert_eq!(code, 0, "{answer_events:?}\n{}", answer.stderr());

    let sent = ended(&phone_events)["media"]["keepalives_sent"]
        .as_u64()
        .expect("keepalives_sent in the stats");
    assert!(sent >= 3, "keep-alives sent during 6 s of hold: {sent}");
    let received = ended(&answer_events)["media"]["stun_received"]
        .as_u64()
        .expect("stun_received in the stats");
    assert!(
        received >= 3,
        "keep-alives that crossed the NAT to the held peer: {received}"
    );
}
