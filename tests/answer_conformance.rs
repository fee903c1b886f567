//! The RFC 4475 torture messages sent over UDP to a running `sipline
//! answer`: each gets the response the RFC names, or is dropped where it
//! says so, and the process keeps serving.
//!
//! The messages carry documentation addresses; before sending, the top Via's
//! sent-by is rewritten to this test's socket on 127.0.0.1 (RFC 3261
//! §18.2.2 sends the response there), so nothing leaves loopback.

#[path = "support/proc.rs"]
mod proc;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use proc::Sipline;

fn data(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/data/rfc4475/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("torture message")
}

/// Replaces the sent-by of the top Via with `127.0.0.1:port`: the text of
/// the sent-by our own parser reads is replaced at its first occurrence after
/// the first Via row starts (folded rows included). Messages whose Via does
/// not parse are sent as they are: their responses go to the source address.
fn rewrite_top_via(msg: &[u8], port: u16) -> Vec<u8> {
    let head_end = msg
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .unwrap_or(msg.len());
    let head = String::from_utf8_lossy(&msg[..head_end]).to_string();
    // A message whose body cannot be framed still has a parsed head.
    let sent_by = match sipline::sip::parse_datagram(msg) {
        Ok(m) => m.headers().top_via().ok(),
        Err(e) => e.head().and_then(|h| h.headers().top_via().ok()),
    }
    .map(|v| v.sent_by());
    let via_start = head
        .split_inclusive("\r\n")
        .scan(0, |pos, line| {
            let start = *pos;
            *pos += line.len();
            Some((start, line))
        })
        .find(|(_, line)| {
            let name = line
                .split(':')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            name == "via" || name == "v"
        })
        .map(|(start, _)| start);
    let (Some(sent_by), Some(start)) = (sent_by, via_start) else {
        return msg.to_vec();
    };
    let Some(at) = head[start..].find(&sent_by).map(|i| i + start) else {
        return msg.to_vec();
    };
    let mut out = head[..at].to_string();
    out.push_str(&format!("127.0.0.1:{port}"));
    out.push_str(&head[at + sent_by.len()..]);
    let mut v = out.into_bytes();
    v.extend_from_slice(&msg[head_end..]);
    v
}

/// The Call-ID of a message, for telling its responses from others.
fn call_id(msg: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(msg);
    text.split("\r\n").find_map(|l| {
        let (name, value) = l.split_once(':')?;
        let name = name.trim().to_ascii_lowercase();
        (name == "call-id" || name == "i").then(|| value.trim().to_string())
    })
}

/// Sends `msg` and returns the final status received within `wait`
/// (provisional responses are skipped), or None when nothing final came.
fn exchange(sock: &UdpSocket, dest: &str, msg: &[u8], wait: Duration) -> Option<u16> {
    sock.send_to(msg, dest).unwrap();
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 65535];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        sock.set_read_timeout(Some(left)).unwrap();
        let Ok((n, _)) = sock.recv_from(&mut buf) else {
            return None;
        };
        if call_id(&buf[..n]) != call_id(msg) {
            continue; // e.g. a retransmitted 486 of an earlier INVITE
        }
        let text = String::from_utf8_lossy(&buf[..n]);
        let status: u16 = text.get(8..11).and_then(|s| s.parse().ok()).unwrap_or(0);
        if text.starts_with("SIP/2.0 ") && status >= 200 {
            return Some(status);
        }
    }
}

/// What each torture message must get from a UA that refuses calls with
/// 486 (so that a valid INVITE is told apart from a rejected one).
const CASES: &[(&str, &[Option<u16>])] = &[
    // §3.1.1 valid messages that are requests
    // wsinv has a To tag: an INVITE in a dialog we do not know (481).
    ("wsinv.dat", &[Some(481)]),
    ("intmeth.dat", &[Some(501)]),
    ("esc01.dat", &[Some(486)]),
    ("escnull.dat", &[Some(405)]),
    ("esc02.dat", &[Some(501)]),
    ("lwsdisp.dat", &[Some(200)]),
    ("longreq.dat", &[Some(486)]),
    ("dblreq.dat", &[Some(405)]),
    ("semiuri.dat", &[Some(200)]),
    ("transports.dat", &[Some(200)]),
    ("mpart01.dat", &[Some(405)]),
    // responses are never answered
    ("unreason.dat", &[None]),
    ("noreason.dat", &[None]),
    // §3.1.2 invalid messages
    ("badinv01.dat", &[Some(400)]),
    ("clerr.dat", &[Some(400)]),
    ("ncl.dat", &[Some(400)]),
    ("scalar02.dat", &[Some(400)]),
    ("scalarlg.dat", &[None]),
    ("quotbal.dat", &[Some(400)]),
    ("ltgtruri.dat", &[Some(400)]),
    ("lwsruri.dat", &[Some(400)]),
    ("lwsstart.dat", &[Some(400), Some(486)]),
    ("trws.dat", &[Some(400), Some(200)]),
    ("escruri.dat", &[Some(400)]),
    ("baddate.dat", &[Some(486), Some(400)]),
    ("regbadct.dat", &[Some(400)]),
    ("badaspec.dat", &[Some(400)]),
    ("badvers.dat", &[Some(505)]),
    ("mismatch01.dat", &[Some(400)]),
    ("mismatch02.dat", &[Some(501), Some(400)]),
    ("bigcode.dat", &[None]),
    // §3.2, §3.3
    ("badbranch.dat", &[Some(400), Some(200)]),
    ("insuf.dat", &[Some(400)]),
    ("unkscm.dat", &[Some(416)]),
    ("novelsc.dat", &[Some(416)]),
    ("unksm2.dat", &[Some(400), Some(405)]),
    ("bext01.dat", &[Some(420)]),
    ("invut.dat", &[Some(415)]),
    ("regaut01.dat", &[Some(405)]),
    ("multi01.dat", &[Some(400)]),
    ("mcl01.dat", &[Some(400)]),
    ("bcast.dat", &[None]),
    ("zeromf.dat", &[Some(200)]),
    ("cparam01.dat", &[Some(405)]),
    ("cparam02.dat", &[Some(405)]),
    ("regescrt.dat", &[Some(405)]),
    ("sdp01.dat", &[Some(406), Some(400)]),
    // §3.4
    ("inv2543.dat", &[Some(486)]),
    ("test.dat", &[Some(400), None]),
];

#[test]
fn torture_messages_over_udp_get_the_rfc_response_and_the_ua_keeps_serving() {
    let (mut answer, port) = Sipline::answer(&["--reject", "486", "--null-audio"]);
    let dest = format!("127.0.0.1:{port}");
    let mut failures = Vec::new();
    for (file, allowed) in CASES {
        // A socket per message: several messages share a branch, and the
        // same branch from the same sent-by would be a retransmission
        // (RFC 3261 §17.2.3).
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let me = sock.local_addr().unwrap().port();
        let msg = rewrite_top_via(&data(file), me);
        let wait = if allowed.contains(&None) {
            Duration::from_millis(400)
        } else {
            Duration::from_secs(3)
        };
        let got = exchange(&sock, &dest, &msg, wait);
        if !allowed.contains(&got) {
            failures.push(format!("{file}: got {got:?}, expected one of {allowed:?}"));
        }
    }
    // Still serving: a plain OPTIONS gets 200.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let me = sock.local_addr().unwrap().port();
    let options = format!(
        "OPTIONS sip:test@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bKfinal\r\nMax-Forwards: 70\r\nFrom: <sip:t@127.0.0.1>;tag=f\r\nTo: <sip:test@127.0.0.1>\r\nCall-ID: final-options\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    let last = exchange(&sock, &dest, options.as_bytes(), Duration::from_secs(3));
    answer.signal("TERM");
    let (code, _) = answer.wait_exit(Duration::from_secs(20));
    assert!(
        failures.is_empty(),
        "wrong responses:\n{}\nstderr:\n{}",
        failures.join("\n"),
        answer.stderr()
    );
    assert_eq!(
        last,
        Some(200),
        "the UA still answers after the torture run"
    );
    assert_eq!(code, 0);
}

#[test]
fn via_rewrite_touches_only_the_top_sent_by() {
    let m = b"OPTIONS sip:a@b SIP/2.0\r\nVia  : SIP / 2.0 / UDP host.example.com:5060;branch=z9hG4bK1\r\nv: SIP/2.0/TCP other;branch=z9hG4bK2\r\nCall-ID: x\r\n\r\n";
    let r = String::from_utf8(rewrite_top_via(m, 4000)).unwrap();
    assert!(
        r.contains("Via  : SIP / 2.0 / UDP 127.0.0.1:4000;branch=z9hG4bK1\r\n"),
        "{r}"
    );
    let w = String::from_utf8(rewrite_top_via(&data("wsinv.dat"), 4000)).unwrap();
    assert!(
        w.contains("127.0.0.1:4000;branch=390skdjuw"),
        "folded Via rewritten"
    );
    assert!(r.contains("v: SIP/2.0/TCP other;branch=z9hG4bK2"));
}
