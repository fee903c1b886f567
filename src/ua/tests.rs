//! Two user agent cores talking in memory while a fake clock jumps to the
//! next deadline.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::*;
use crate::media::codec::CodecKind;
use crate::sdp::{Direction, LocalMedia};
use crate::sip::{SipMessage, parse_datagram};
use crate::transaction::TimerConfig;

const A: &str = "127.0.0.1:5060";
const B: &str = "127.0.0.2:5062";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn media(ip: &str, port: u16) -> LocalMedia {
    LocalMedia {
        addr: ip.parse().unwrap(),
        rtp_port: port,
        rtcp_port: None,
        rtcp_mux: true,
        codecs: vec![CodecKind::Pcmu, CodecKind::Pcma],
        telephone_event: true,
        direction: Direction::SendRecv,
        ptime_ms: 20,
    }
}

fn ua(user: &str, sock: &str, seed: u64) -> UserAgent {
    let cfg = UaConfig {
        user: user.into(),
        from: None,
        display_name: None,
        local_port: addr(sock).port(),
        timers: TimerConfig::default(),
        user_agent: "sipline-test".into(),
        seed,
        route: Vec::new(),
    };
    UserAgent::new(cfg, media(&addr(sock).ip().to_string(), 0))
}

/// Decides whether a datagram (sender name, text) is lost.
type DropRule = Box<dyn FnMut(&str, &str) -> bool>;

/// The network between the two cores: `drop` decides which datagrams are lost.
struct Pair {
    a: UserAgent,
    b: UserAgent,
    now: Instant,
    a_events: Vec<UaEvent>,
    b_events: Vec<UaEvent>,
    /// Datagrams seen on the wire, as (from, first line).
    wire: Vec<(String, String)>,
    /// The full datagrams, in order.
    raw: Vec<(String, Vec<u8>)>,
    drop: DropRule,
}

impl Pair {
    fn new() -> Pair {
        Pair {
            a: ua("alice", A, 1),
            b: ua("bob", B, 2),
            now: Instant::now(),
            a_events: Vec::new(),
            b_events: Vec::new(),
            wire: Vec::new(),
            raw: Vec::new(),
            drop: Box::new(|_, _| false),
        }
    }

    /// Delivers datagrams until both sides are quiet.
    fn settle(&mut self) {
        loop {
            let mut moved = false;
            while let Some(o) = self.a.poll_output() {
                moved = true;
                match o {
                    UaOutput::Transmit(t) => self.deliver("a", t.dest, t.payload),
                    UaOutput::Event(e) => self.a_events.push(e),
                }
            }
            while let Some(o) = self.b.poll_output() {
                moved = true;
                match o {
                    UaOutput::Transmit(t) => self.deliver("b", t.dest, t.payload),
                    UaOutput::Event(e) => self.b_events.push(e),
                }
            }
            if !moved {
                break;
            }
        }
    }

    fn deliver(&mut self, from: &str, dest: SocketAddr, payload: Vec<u8>) {
        let text = String::from_utf8_lossy(&payload).to_string();
        let first = text.lines().next().unwrap_or("").to_string();
        self.wire.push((from.to_string(), first.clone()));
        self.raw.push((from.to_string(), payload.clone()));
        if (self.drop)(from, &text) {
            return;
        }
        let now = self.now;
        if dest == addr(B) {
            let ip: IpAddr = addr(B).ip();
            self.b.handle_datagram(&payload, addr(A), ip, now);
        } else if dest == addr(A) {
            let ip: IpAddr = addr(A).ip();
            self.a.handle_datagram(&payload, addr(B), ip, now);
        }
    }

    /// Jumps the clock to the next deadline (at most `limit` ahead).
    fn advance(&mut self, limit: Duration) -> bool {
        let next = [self.a.next_timeout(), self.b.next_timeout()]
            .into_iter()
            .flatten()
            .min();
        match next {
            Some(t) if t <= self.now + limit => {
                self.now = self.now.max(t);
                self.a.handle_timeout(self.now);
                self.b.handle_timeout(self.now);
                self.settle();
                true
            }
            _ => false,
        }
    }

    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.advance(end.saturating_duration_since(self.now)) {}
        self.now = end;
    }

    fn dial(&mut self) -> CallHandle {
        let call = self
            .a
            .dial(
                "sip:bob@127.0.0.2:5062",
                addr(B),
                media("127.0.0.1", 40000),
                self.now,
            )
            .unwrap();
        self.settle();
        call
    }

    fn incoming(&self) -> CallHandle {
        self.b_events
            .iter()
            .find_map(|e| match e {
                UaEvent::IncomingCall { call, .. } => Some(*call),
                _ => None,
            })
            .expect("B saw the call")
    }

    fn sent(&self, from: &str, prefix: &str) -> usize {
        self.wire
            .iter()
            .filter(|(f, l)| f == from && l.starts_with(prefix))
            .count()
    }
}

fn ended(events: &[UaEvent]) -> Option<EndReason> {
    events.iter().find_map(|e| match e {
        UaEvent::Ended { reason, .. } => Some(reason.clone()),
        _ => None,
    })
}

fn has(events: &[UaEvent], f: impl Fn(&UaEvent) -> bool) -> bool {
    events.iter().any(f)
}

#[test]
fn call_answer_and_hang_up_rfc3261_13_and_15() {
    let mut p = Pair::new();
    let call = p.dial();
    assert_eq!(p.sent("b", "SIP/2.0 100"), 1);
    assert_eq!(p.sent("b", "SIP/2.0 180"), 1);
    assert!(has(&p.a_events, |e| matches!(
        e,
        UaEvent::Progress { status: 180, .. }
    )));
    let incoming = p.incoming();
    p.b.answer(incoming, media("127.0.0.2", 50000), p.now)
        .unwrap();
    p.settle();
    let media_a = p.a_events.iter().find_map(|e| match e {
        UaEvent::Media { media, .. } => Some(media.clone()),
        _ => None,
    });
    let media_a = media_a.expect("A negotiated media");
    assert_eq!(media_a.remote_rtp, Some(addr("127.0.0.2:50000")));
    assert_eq!(media_a.codec, CodecKind::Pcmu);
    assert!(has(&p.a_events, |e| matches!(e, UaEvent::Answered { .. })));
    assert!(
        has(&p.b_events, |e| matches!(e, UaEvent::Answered { .. })),
        "B confirmed by the ACK"
    );
    assert_eq!(p.sent("a", "ACK "), 1);
    // No 2xx retransmissions once the ACK arrived.
    p.run_for(Duration::from_secs(10));
    assert_eq!(p.sent("b", "SIP/2.0 200"), 1);
    p.a.hangup(call, p.now).unwrap();
    p.settle();
    assert_eq!(ended(&p.a_events), Some(EndReason::LocalHangup));
    assert_eq!(ended(&p.b_events), Some(EndReason::RemoteHangup));
    assert_eq!(p.a.call_count() + p.b.call_count(), 0);
}

#[test]
fn lost_ack_makes_the_callee_retransmit_the_2xx_and_the_caller_acks_each_rfc3261_13_3_1_4() {
    let mut p = Pair::new();
    let mut acks_dropped = 0;
    p.drop = Box::new(move |from, text| {
        if from == "a" && text.starts_with("ACK ") && acks_dropped < 2 {
            acks_dropped += 1;
            return true;
        }
        false
    });
    p.dial();
    let incoming = p.incoming();
    p.b.answer(incoming, media("127.0.0.2", 50000), p.now)
        .unwrap();
    p.settle();
    assert!(!has(&p.b_events, |e| matches!(e, UaEvent::Answered { .. })));
    p.run_for(Duration::from_secs(3));
    // 200 at 0, 0.5 s, 1.5 s: the third ACK gets through.
    assert_eq!(p.sent("b", "SIP/2.0 200"), 3);
    assert_eq!(p.sent("a", "ACK "), 3, "one ACK per 2xx");
    assert!(has(&p.b_events, |e| matches!(e, UaEvent::Answered { .. })));
}

#[test]
fn no_ack_at_all_ends_the_call_with_bye_after_64_t1_rfc3261_13_3_1_4() {
    let mut p = Pair::new();
    p.drop = Box::new(|from, text| from == "a" && text.starts_with("ACK "));
    p.dial();
    let incoming = p.incoming();
    p.b.answer(incoming, media("127.0.0.2", 50000), p.now)
        .unwrap();
    p.settle();
    p.run_for(Duration::from_secs(40));
    assert_eq!(ended(&p.b_events), Some(EndReason::NoAck));
    assert!(p.sent("b", "BYE ") >= 1);
    // T1 doubling to T2 over 32 s: 0, .5, 1.5, 3.5, 7.5, 11.5, ... 31.5.
    assert_eq!(p.sent("b", "SIP/2.0 200 OK"), 11);
}

#[test]
fn cancel_before_the_answer_gives_487_rfc3261_9() {
    let mut p = Pair::new();
    let call = p.dial();
    p.a.hangup(call, p.now).unwrap();
    p.settle();
    assert_eq!(p.sent("a", "CANCEL "), 1);
    assert_eq!(p.sent("b", "SIP/2.0 487"), 1);
    assert_eq!(
        p.sent("a", "ACK "),
        1,
        "the 487 is ACKed by the transaction"
    );
    assert_eq!(ended(&p.a_events), Some(EndReason::Cancelled));
    assert_eq!(ended(&p.b_events), Some(EndReason::RemoteCancelled));
}

#[test]
fn cancel_waits_for_a_provisional_response_rfc3261_9_1() {
    let mut p = Pair::new();
    // B's responses are lost at first: no provisional reaches A.
    let mut dropped = 0;
    p.drop = Box::new(move |from, text| {
        if from == "b" && text.starts_with("SIP/2.0 1") && dropped < 2 {
            dropped += 1;
            return true;
        }
        false
    });
    let call =
        p.a.dial(
            "sip:bob@127.0.0.2:5062",
            addr(B),
            media("127.0.0.1", 40000),
            p.now,
        )
        .unwrap();
    // Hang up before anything is delivered.
    p.a.hangup(call, p.now).unwrap();
    p.settle();
    assert_eq!(
        p.sent("a", "CANCEL "),
        0,
        "no CANCEL before a provisional response"
    );
    // The INVITE retransmission brings the 100 again; then CANCEL goes.
    p.run_for(Duration::from_secs(1));
    assert_eq!(p.sent("a", "CANCEL "), 1);
    assert_eq!(ended(&p.a_events), Some(EndReason::Cancelled));
}

#[test]
fn rejected_call_reports_the_status() {
    let mut p = Pair::new();
    p.dial();
    let incoming = p.incoming();
    p.b.reject(incoming, 486, p.now).unwrap();
    p.settle();
    assert!(matches!(
        ended(&p.a_events),
        Some(EndReason::Rejected { status: 486, .. })
    ));
    assert_eq!(
        ended(&p.b_events),
        Some(EndReason::LocalReject { status: 486 })
    );
}

#[test]
fn callee_hangs_up_with_bye() {
    let mut p = Pair::new();
    p.dial();
    let incoming = p.incoming();
    p.b.answer(incoming, media("127.0.0.2", 50000), p.now)
        .unwrap();
    p.settle();
    p.b.hangup(incoming, p.now).unwrap();
    p.settle();
    assert_eq!(ended(&p.a_events), Some(EndReason::RemoteHangup));
    assert_eq!(ended(&p.b_events), Some(EndReason::LocalHangup));
}

#[test]
fn unanswered_invite_times_out_after_64_t1_rfc3261_17_1_1_2() {
    let mut p = Pair::new();
    p.drop = Box::new(|from, _| from == "a");
    p.dial();
    p.run_for(Duration::from_secs(33));
    assert_eq!(ended(&p.a_events), Some(EndReason::Timeout));
    assert_eq!(
        p.sent("a", "INVITE "),
        7,
        "initial INVITE plus 6 retransmissions"
    );
}

fn request(text: &str) -> Vec<u8> {
    text.replace('\n', "\r\n").into_bytes()
}

fn response_to(p: &mut Pair, data: Vec<u8>) -> String {
    p.b.handle_datagram(&data, addr(A), addr(B).ip(), p.now);
    let mut out = None;
    while let Some(o) = p.b.poll_output() {
        match o {
            UaOutput::Transmit(t) => out = Some(String::from_utf8(t.payload).unwrap()),
            UaOutput::Event(e) => p.b_events.push(e),
        }
    }
    out.expect("a response")
}

#[test]
fn options_is_answered_with_allow_accept_and_supported_rfc3261_11_2() {
    let mut p = Pair::new();
    let resp = response_to(
        &mut p,
        request(
            "OPTIONS sip:bob@127.0.0.2:5062 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKo1;rport\nMax-Forwards: 70\nFrom: <sip:a@127.0.0.1>;tag=1\nTo: <sip:bob@127.0.0.2>\nCall-ID: opt1\nCSeq: 1 OPTIONS\nContent-Length: 0\n\n",
        ),
    );
    assert!(resp.starts_with("SIP/2.0 200 OK\r\n"), "{resp}");
    let msg = match parse_datagram(resp.as_bytes()).unwrap() {
        SipMessage::Response(r) => r,
        _ => panic!(),
    };
    assert!(msg.headers.get("Allow").unwrap().contains("INVITE"));
    assert_eq!(msg.headers.get("Accept"), Some("application/sdp"));
    assert!(msg.headers.get("Supported").is_some());
    assert!(msg.headers.to_addr().unwrap().tag().is_some());
}

#[test]
fn bye_outside_any_dialog_gets_481_rfc3261_15_1_2() {
    let mut p = Pair::new();
    let resp = response_to(
        &mut p,
        request(
            "BYE sip:bob@127.0.0.2:5062 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKb1\nMax-Forwards: 70\nFrom: <sip:a@127.0.0.1>;tag=1\nTo: <sip:bob@127.0.0.2>;tag=2\nCall-ID: nodialog\nCSeq: 2 BYE\nContent-Length: 0\n\n",
        ),
    );
    assert!(resp.starts_with("SIP/2.0 481 "), "{resp}");
}

#[test]
fn offer_with_nothing_in_common_gets_488_rfc3264_6() {
    let mut p = Pair::new();
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n";
    let text = format!(
        "INVITE sip:bob@127.0.0.2:5062 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKi1\r\nMax-Forwards: 70\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:bob@127.0.0.2>\r\nCall-ID: g729\r\nCSeq: 1 INVITE\r\nContact: <sip:a@127.0.0.1:5060>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    p.b.handle_datagram(text.as_bytes(), addr(A), addr(B).ip(), p.now);
    let mut statuses = Vec::new();
    while let Some(o) = p.b.poll_output() {
        if let UaOutput::Transmit(t) = o {
            statuses.push(
                String::from_utf8(t.payload)
                    .unwrap()
                    .lines()
                    .next()
                    .unwrap()
                    .to_string(),
            );
        }
    }
    assert_eq!(statuses.last().unwrap(), "SIP/2.0 488 Not Acceptable Here");
    assert_eq!(p.b.call_count(), 0);
}

/// An INVITE from A to B carrying `sdp`; B's responses, first lines and
/// Warning headers.
fn invite_b_with(p: &mut Pair, call_id: &str, sdp: &str) -> Vec<String> {
    let text = format!(
        "INVITE sip:bob@127.0.0.2:5062 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK{call_id}\r\nMax-Forwards: 70\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:bob@127.0.0.2>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:a@127.0.0.1:5060>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    p.b.handle_datagram(text.as_bytes(), addr(A), addr(B).ip(), p.now);
    let mut sent = Vec::new();
    while let Some(o) = p.b.poll_output() {
        match o {
            UaOutput::Transmit(t) => {
                let text = String::from_utf8(t.payload).unwrap();
                let warning = text
                    .lines()
                    .find(|l| l.starts_with("Warning:"))
                    .unwrap_or("");
                sent.push(format!("{} | {warning}", text.lines().next().unwrap()));
            }
            UaOutput::Event(e) => p.b_events.push(e),
        }
    }
    sent
}

#[test]
fn offer_with_a_garbage_connection_address_is_refused_rfc4566_5_7() {
    let mut p = Pair::new();
    let ip6 =
        "v=0\r\no=- 1 1 IN IP6 ::1\r\ns=-\r\nc=IN IP6 zzz\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    assert_eq!(
        invite_b_with(&mut p, "badc1", ip6).last().unwrap().as_str(),
        "SIP/2.0 488 Not Acceptable Here | Warning: 301 sipline \"Incompatible network address formats\""
    );
    let ip4 = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 999.1.1.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    assert_eq!(
        invite_b_with(&mut p, "badc2", ip4).last().unwrap().as_str(),
        "SIP/2.0 488 Not Acceptable Here | Warning: 301 sipline \"Incompatible network address formats\""
    );
    assert_eq!(p.b.call_count(), 0);
    let details: Vec<_> = p
        .b_events
        .iter()
        .filter_map(|e| match e {
            UaEvent::Rejected { status, detail, .. } => Some((*status, detail.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        details,
        [
            (
                488,
                "no acceptable audio stream: the connection address (c=) is neither an IP address nor a domain name".to_string()
            ),
            (
                488,
                "SDP cannot be parsed: the connection address (c=) is not a valid address (line 4)".to_string()
            )
        ]
    );
}

#[test]
fn answer_with_a_garbage_connection_address_ends_the_call_with_ack_and_bye() {
    let mut p = Pair::new();
    p.drop = Box::new(|from, _| from == "a");
    p.dial();
    let invite = sent_invite(&p);
    let sdp = answer_sdp(&invite, 40500).replace("c=IN IP4 127.0.0.2", "c=IN IP6 zzz");
    let ok = invite_response(&invite, 200, "bad", Some(sdp));
    p.a.handle_datagram(&ok, addr(B), addr(A).ip(), p.now);
    p.settle();
    let sent: Vec<_> = p
        .wire
        .iter()
        .filter(|(f, _)| f == "a")
        .map(|(_, l)| l.split(' ').next().unwrap().to_string())
        .collect();
    assert_eq!(sent[sent.len() - 2..], ["ACK", "BYE"], "{sent:?}");
    assert!(!has(&p.a_events, |e| matches!(e, UaEvent::Media { .. })));
    match ended(&p.a_events) {
        Some(EndReason::MediaFailure { detail }) => assert_eq!(
            detail,
            "no acceptable audio stream: the connection address (c=) is neither an IP address nor a domain name"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn retransmitted_2xx_after_the_transaction_ended_is_acked_again_bug12() {
    let mut p = Pair::new();
    p.dial();
    let incoming = p.incoming();
    p.b.answer(incoming, media("127.0.0.2", 50000), p.now)
        .unwrap();
    p.settle();
    // Let A's INVITE transaction (Timer M) end, then replay B's 200.
    p.run_for(Duration::from_secs(40));
    let ok = p
        .raw
        .iter()
        .rev()
        .find(|(f, d)| {
            f == "b"
                && d.starts_with(b"SIP/2.0 200")
                && String::from_utf8_lossy(d).contains("INVITE\r\n")
        })
        .map(|(_, d)| d.clone())
        .expect("B sent a 2xx");
    let before = p.sent("a", "ACK ");
    p.a.handle_datagram(&ok, addr(B), addr(A).ip(), p.now);
    p.settle();
    assert_eq!(p.sent("a", "ACK "), before + 1);
}

/// The INVITE A sent, parsed.
fn sent_invite(p: &Pair) -> crate::sip::Request {
    let data = p
        .raw
        .iter()
        .find(|(f, d)| f == "a" && d.starts_with(b"INVITE "))
        .map(|(_, d)| d.clone())
        .expect("A sent an INVITE");
    match parse_datagram(&data).unwrap() {
        SipMessage::Request(r) => r,
        _ => unreachable!("an INVITE"),
    }
}

/// A response to A's INVITE from "B" with To tag `tag` and an optional body.
fn invite_response(
    invite: &crate::sip::Request,
    status: u16,
    tag: &str,
    sdp: Option<String>,
) -> Vec<u8> {
    let mut r = crate::transaction::make_response(invite, status, Some(tag));
    r.headers.push("Contact", "<sip:bob@127.0.0.2:5062>");
    match sdp {
        Some(s) => r.set_body("application/sdp", s.into_bytes()),
        None => r.set_body("", Vec::new()),
    }
    r.to_bytes()
}

fn answer_sdp(invite: &crate::sip::Request, port: u16) -> String {
    crate::sdp::create_answer(&invite.body, &media("127.0.0.2", port), 7, 1)
        .unwrap()
        .0
}

#[test]
fn sdp_in_180_is_the_answer_and_a_200_without_sdp_keeps_it_bug11() {
    let mut p = Pair::new();
    // B is simulated by hand: drop what A sends to the real B core.
    p.drop = Box::new(|from, _| from == "a");
    p.dial();
    let invite = sent_invite(&p);
    let ringing = invite_response(&invite, 180, "b11", Some(answer_sdp(&invite, 40400)));
    p.a.handle_datagram(&ringing, addr(B), addr(A).ip(), p.now);
    p.settle();
    let early: Vec<_> = p
        .a_events
        .iter()
        .filter_map(|e| match e {
            UaEvent::Media { media, .. } => Some(media.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(early.len(), 1, "early media from the 180");
    assert_eq!(early[0].remote_rtp, Some(addr("127.0.0.2:40400")));
    let ok = invite_response(&invite, 200, "b11", None);
    p.a.handle_datagram(&ok, addr(B), addr(A).ip(), p.now);
    p.settle();
    assert!(has(&p.a_events, |e| matches!(e, UaEvent::Answered { .. })));
    let medias = p
        .a_events
        .iter()
        .filter(|e| matches!(e, UaEvent::Media { .. }))
        .count();
    assert_eq!(
        medias, 1,
        "the 200 without SDP keeps the negotiated session"
    );
    assert_eq!(ended(&p.a_events), None);
}

#[test]
fn a_second_2xx_from_another_fork_is_acked_and_hung_up_rfc3261_13_2_2_4() {
    let mut p = Pair::new();
    p.drop = Box::new(|from, _| from == "a");
    let call = p.dial();
    let invite = sent_invite(&p);
    let ok1 = invite_response(&invite, 200, "fork1", Some(answer_sdp(&invite, 40500)));
    let ok2 = invite_response(&invite, 200, "fork2", Some(answer_sdp(&invite, 40600)));
    p.a.handle_datagram(&ok1, addr(B), addr(A).ip(), p.now);
    p.settle();
    p.a.handle_datagram(&ok2, addr(B), addr(A).ip(), p.now);
    p.settle();
    let acks = p
        .raw
        .iter()
        .filter(|(f, d)| f == "a" && d.starts_with(b"ACK "))
        .count();
    let byes: Vec<String> = p
        .raw
        .iter()
        .filter(|(f, d)| f == "a" && d.starts_with(b"BYE "))
        .map(|(_, d)| String::from_utf8_lossy(d).to_string())
        .collect();
    assert_eq!(acks, 2, "each fork's 2xx is ACKed");
    assert_eq!(byes.len(), 1);
    assert!(
        byes[0].contains("tag=fork2"),
        "the BYE ends the second fork only"
    );
    assert_eq!(p.a.call_state(call), Some(CallState::Confirmed));
}

#[test]
fn merged_invite_arriving_by_another_path_gets_482_rfc3261_8_2_2_2() {
    let mut p = Pair::new();
    p.dial();
    assert_eq!(p.b.call_count(), 1);
    let invite = sent_invite(&p);
    let mut again = invite.clone();
    let via = invite
        .headers
        .top_via()
        .unwrap()
        .to_string()
        .replace("branch=z9hG4bK", "branch=z9hG4bKother");
    again.headers.set("Via", via);
    let resp = response_to(&mut p, again.to_bytes());
    assert!(resp.starts_with("SIP/2.0 482 "), "{resp}");
    assert_eq!(p.b.call_count(), 1, "no second call");
}

#[test]
fn info_with_dtmf_relay_reports_the_digit() {
    let mut p = Pair::new();
    let call = p.dial();
    let incoming = p.incoming();
    p.b.answer(incoming, media("127.0.0.2", 50000), p.now)
        .unwrap();
    p.settle();
    let _ = call;
    // A sends INFO in the dialog, built by hand from the INVITE's headers.
    let invite = sent_invite(&p);
    let to_tag = p
        .raw
        .iter()
        .find(|(f, d)| f == "b" && d.starts_with(b"SIP/2.0 200"))
        .and_then(|(_, d)| match parse_datagram(d).ok()? {
            SipMessage::Response(r) => r.headers.to_addr().ok()?.tag().map(str::to_string),
            _ => None,
        })
        .unwrap();
    let body = "Signal=5\r\nDuration=160\r\n";
    let info = format!(
        "INFO sip:bob@127.0.0.2:5062 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKinfo1\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: <sip:bob@127.0.0.2:5062>;tag={to_tag}\r\nCall-ID: {}\r\nCSeq: 2 INFO\r\nContent-Type: application/dtmf-relay\r\nContent-Length: {}\r\n\r\n{body}",
        invite.headers.get("From").unwrap(),
        invite.headers.call_id().unwrap(),
        body.len()
    );
    let resp = response_to(&mut p, info.into_bytes());
    assert!(resp.starts_with("SIP/2.0 200"), "{resp}");
    p.settle();
    assert!(has(&p.b_events, |e| matches!(
        e,
        UaEvent::Dtmf { digit: '5', .. }
    )));
}

/// An INFO from A in the established dialog, with `content_type` and `body`.
fn info_in_dialog(p: &Pair, branch: &str, cseq: u32, content_type: &str, body: &str) -> Vec<u8> {
    let invite = sent_invite(p);
    let to_tag = p
        .raw
        .iter()
        .find(|(f, d)| f == "b" && d.starts_with(b"SIP/2.0 200"))
        .and_then(|(_, d)| match parse_datagram(d).ok()? {
            SipMessage::Response(r) => r.headers.to_addr().ok()?.tag().map(str::to_string),
            _ => None,
        })
        .unwrap();
    let content_type = if content_type.is_empty() {
        String::new()
    } else {
        format!("Content-Type: {content_type}\r\n")
    };
    format!(
        "INFO sip:bob@127.0.0.2:5062 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK{branch}\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: <sip:bob@127.0.0.2:5062>;tag={to_tag}\r\nCall-ID: {}\r\nCSeq: {cseq} INFO\r\n{content_type}Content-Length: {}\r\n\r\n{body}",
        invite.headers.get("From").unwrap(),
        invite.headers.call_id().unwrap(),
        body.len()
    )
    .into_bytes()
}

#[test]
fn info_bodies_we_do_not_understand_get_415_with_accept_or_400_rfc6086_4_2_2() {
    let mut p = Pair::new();
    established(&mut p);
    let cases = [
        (
            "application/xml",
            "<x/>",
            "SIP/2.0 415 Unsupported Media Type",
        ),
        ("application/dtmf-relay", "Duration=160\r\n", "SIP/2.0 400 "),
        ("application/dtmf-relay", "Signal=Q\r\n", "SIP/2.0 400 "),
        ("application/dtmf", "12", "SIP/2.0 400 "),
        ("application/dtmf", "7", "SIP/2.0 200 OK"),
        ("", "", "SIP/2.0 200 OK"),
    ];
    for (i, (content_type, body, status)) in cases.into_iter().enumerate() {
        let info = info_in_dialog(&p, &format!("inf{i}"), 10 + i as u32, content_type, body);
        let resp = response_to(&mut p, info);
        assert!(resp.starts_with(status), "{content_type} {body:?}: {resp}");
        if status.contains("415") {
            assert!(
                resp.contains("\r\nAccept: application/dtmf-relay, application/dtmf\r\n"),
                "{resp}"
            );
        }
    }
    let digits: Vec<char> = p
        .b_events
        .iter()
        .filter_map(|e| match e {
            UaEvent::Dtmf { digit, .. } => Some(*digit),
            _ => None,
        })
        .collect();
    assert_eq!(digits, ['7']);
}

#[test]
fn dtmf_sent_by_sip_info_reaches_the_peer_in_order_and_before_the_answer_is_refused() {
    let mut p = Pair::new();
    let call = p.dial();
    let incoming = p.incoming();
    assert!(matches!(
        p.a.send_info_dtmf(call, "1", p.now),
        Err(UaError::WrongState { .. })
    ));
    p.b.answer(incoming, media("127.0.0.2", 50000), p.now)
        .unwrap();
    p.settle();
    p.a.send_info_dtmf(call, "7#", p.now).unwrap();
    p.settle();
    let digits: Vec<char> = p
        .b_events
        .iter()
        .filter_map(|e| match e {
            UaEvent::Dtmf { call: c, digit } if *c == incoming => Some(*digit),
            _ => None,
        })
        .collect();
    assert_eq!(digits, ['7', '#']);
    assert_eq!(p.sent("a", "INFO "), 2, "one INFO per digit");
    assert_eq!(
        p.sent("b", "SIP/2.0 200"),
        3,
        "200 for the INVITE and each INFO"
    );
    assert!(
        ended(&p.a_events).is_none(),
        "the 200s to INFO do not end the call"
    );
    assert!(matches!(
        p.a.send_info_dtmf(999, "1", p.now),
        Err(UaError::NoSuchCall { .. })
    ));
}

// ----- hold and resume (RFC 3264 §8.4, RFC 3261 §14) --------------------

/// A call from A to B, answered and confirmed. Returns (A's, B's) handles.
fn established(p: &mut Pair) -> (CallHandle, CallHandle) {
    let call = p.dial();
    let incoming = p.incoming();
    p.b.answer(incoming, media("127.0.0.2", 50000), p.now)
        .unwrap();
    p.settle();
    assert!(has(&p.b_events, |e| matches!(e, UaEvent::Answered { .. })));
    (call, incoming)
}

/// The SDP bodies of the `n`-th datagram from `from` starting with `prefix`.
fn nth_body(p: &Pair, from: &str, prefix: &str, n: usize) -> String {
    let data = p
        .raw
        .iter()
        .filter(|(f, d)| f == from && d.starts_with(prefix.as_bytes()))
        .nth(n)
        .map(|(_, d)| d.clone())
        .unwrap_or_else(|| panic!("{from} sent {} {prefix}", n + 1));
    let msg = parse_datagram(&data).unwrap();
    let body = match msg {
        SipMessage::Request(r) => r.body,
        SipMessage::Response(r) => r.body,
    };
    String::from_utf8(body).unwrap()
}

/// The `o=` session version of an SDP body (RFC 4566 §5.2).
fn origin_version(sdp: &str) -> u64 {
    sdp.lines()
        .find(|l| l.starts_with("o="))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())
        .expect("an o= line")
}

fn media_direction(events: &[UaEvent]) -> Option<Direction> {
    events.iter().rev().find_map(|e| match e {
        UaEvent::Media { media, .. } => Some(media.direction),
        _ => None,
    })
}

#[test]
fn hold_offers_sendonly_the_peer_answers_recvonly_and_resume_restores_sendrecv_rfc3264_8_4() {
    let mut p = Pair::new();
    let (call, incoming) = established(&mut p);
    let first = nth_body(&p, "a", "INVITE ", 0);
    p.a_events.clear();
    p.b_events.clear();

    p.a.hold(call, p.now).unwrap();
    p.settle();
    let offer = nth_body(&p, "a", "INVITE ", 1);
    assert!(offer.contains("a=sendonly"), "{offer}");
    assert_eq!(origin_version(&offer), origin_version(&first) + 1);
    let answer = nth_body(&p, "b", "SIP/2.0 200", 1);
    assert!(answer.contains("a=recvonly"), "{answer}");
    assert!(answer.contains("c=IN IP4 127.0.0.2"), "{answer}");
    assert_eq!(
        p.sent("a", "ACK "),
        2,
        "the re-INVITE's 2xx is acknowledged"
    );
    assert!(has(&p.a_events, |e| *e == UaEvent::Held { call }));
    assert_eq!(media_direction(&p.a_events), Some(Direction::SendOnly));
    assert!(has(&p.b_events, |e| *e
        == UaEvent::RemoteHold { call: incoming }));
    assert_eq!(media_direction(&p.b_events), Some(Direction::RecvOnly));
    assert_eq!(
        p.a.hold_state(call),
        Some(HoldState {
            local: true,
            remote: false
        })
    );
    assert_eq!(
        p.b.hold_state(incoming),
        Some(HoldState {
            local: false,
            remote: true
        })
    );
    // Holding twice is refused without a re-INVITE.
    assert_eq!(
        p.a.hold(call, p.now),
        Err(UaError::AlreadyInHoldState { call, held: true })
    );

    p.a.resume(call, p.now).unwrap();
    p.settle();
    let offer2 = nth_body(&p, "a", "INVITE ", 2);
    assert!(offer2.contains("a=sendrecv"), "{offer2}");
    assert_eq!(origin_version(&offer2), origin_version(&offer) + 1);
    assert!(nth_body(&p, "b", "SIP/2.0 200", 2).contains("a=sendrecv"));
    assert!(has(&p.a_events, |e| *e == UaEvent::Resumed { call }));
    assert!(has(&p.b_events, |e| *e
        == UaEvent::RemoteResume { call: incoming }));
    assert_eq!(media_direction(&p.a_events), Some(Direction::SendRecv));
    assert_eq!(media_direction(&p.b_events), Some(Direction::SendRecv));
    assert_eq!(p.a.hold_state(call), Some(HoldState::default()));
    // The call is still up and hangs up normally.
    p.a.hangup(call, p.now).unwrap();
    p.settle();
    assert_eq!(ended(&p.b_events), Some(EndReason::RemoteHangup));
}

#[test]
fn holding_a_call_the_peer_already_holds_offers_inactive_rfc3264_8_4() {
    let mut p = Pair::new();
    let (call, incoming) = established(&mut p);
    p.b.hold(incoming, p.now).unwrap();
    p.settle();
    assert!(has(&p.a_events, |e| *e == UaEvent::RemoteHold { call }));
    p.a.hold(call, p.now).unwrap();
    p.settle();
    let offer = nth_body(&p, "a", "INVITE ", 1);
    assert!(offer.contains("a=inactive"), "{offer}");
    // B holds (sendonly wanted) and A receives nothing: inactive.
    assert!(nth_body(&p, "b", "SIP/2.0 200", 1).contains("a=inactive"));
    assert_eq!(media_direction(&p.a_events), Some(Direction::Inactive));
    assert!(has(&p.a_events, |e| *e == UaEvent::Held { call }));
}

#[test]
fn glare_gives_491_to_both_and_each_retries_after_its_back_off_rfc3261_14_1() {
    let mut p = Pair::new();
    let (call, incoming) = established(&mut p);
    let start = p.now;
    // Both re-INVITEs cross on the wire.
    p.a.hold(call, p.now).unwrap();
    p.b.hold(incoming, p.now).unwrap();
    p.settle();
    assert_eq!(p.sent("a", "SIP/2.0 491"), 1);
    assert_eq!(p.sent("b", "SIP/2.0 491"), 1);
    // A placed the call: it owns the Call-ID and waits 2.1–4 s; B 0–2 s.
    let (a_at, _) = p.a.calls[&call].reinvite_retry.expect("A retries");
    let (b_at, _) = p.b.calls[&incoming].reinvite_retry.expect("B retries");
    let a_wait = a_at - start;
    let b_wait = b_at - start;
    assert!(
        a_wait >= Duration::from_millis(2100) && a_wait <= Duration::from_secs(4),
        "{a_wait:?}"
    );
    assert!(b_wait <= Duration::from_secs(2), "{b_wait:?}");
    // Nothing changed meanwhile (§14.1: the call stays as it was).
    assert_eq!(p.a.hold_state(call), Some(HoldState::default()));
    assert!(!has(&p.a_events, |e| matches!(
        e,
        UaEvent::HoldFailed { .. }
    )));
    p.run_for(Duration::from_secs(5));
    assert!(has(&p.a_events, |e| *e == UaEvent::Held { call }));
    assert!(has(&p.b_events, |e| *e == UaEvent::Held { call: incoming }));
    assert_eq!(
        p.a.hold_state(call),
        Some(HoldState {
            local: true,
            remote: true
        })
    );
    assert_eq!(p.sent("a", "INVITE "), 3);
    assert_eq!(p.sent("b", "INVITE "), 2);
    // B retried first with sendonly, A then held with inactive.
    assert!(nth_body(&p, "b", "INVITE ", 1).contains("a=sendonly"));
    assert!(nth_body(&p, "a", "INVITE ", 2).contains("a=inactive"));
}

/// Takes A's pending outputs without delivering them; returns the last
/// request starting with `prefix`.
fn take_a_request(p: &mut Pair, prefix: &str) -> crate::sip::Request {
    let mut found = None;
    while let Some(o) = p.a.poll_output() {
        match o {
            UaOutput::Transmit(t) if t.payload.starts_with(prefix.as_bytes()) => {
                found = Some(t.payload)
            }
            UaOutput::Transmit(_) => {}
            UaOutput::Event(e) => p.a_events.push(e),
        }
    }
    match parse_datagram(&found.expect("A sent the request")).unwrap() {
        SipMessage::Request(r) => r,
        _ => unreachable!("a request"),
    }
}

#[test]
fn a_challenged_reinvite_is_sent_again_with_credentials_rfc3261_22_2() {
    let mut p = Pair::new();
    let (call, _) = established(&mut p);
    p.a.set_credentials(Some(crate::ua::digest::Credentials::new("alice", "secret")));
    p.a.hold(call, p.now).unwrap();
    let reinvite = take_a_request(&mut p, "INVITE ");
    let mut challenge = crate::transaction::make_response(&reinvite, 407, None);
    challenge.headers.push(
        "Proxy-Authenticate",
        "Digest realm=\"example.com\", nonce=\"n491\", algorithm=MD5",
    );
    p.a.handle_datagram(&challenge.to_bytes(), addr(B), addr(A).ip(), p.now);
    let retry = take_a_request(&mut p, "INVITE ");
    let auth = retry
        .headers
        .get("Proxy-Authorization")
        .expect("credentials");
    assert!(auth.contains("username=\"alice\""), "{auth}");
    assert!(auth.contains("realm=\"example.com\""), "{auth}");
    assert_eq!(
        retry.headers.cseq().unwrap().seq,
        reinvite.headers.cseq().unwrap().seq + 1
    );
    assert_eq!(retry.body, reinvite.body, "the same offer");
    // The retry reaches B, which answers: the call is held.
    p.b.handle_datagram(&retry.to_bytes(), addr(A), addr(B).ip(), p.now);
    p.settle();
    assert!(has(&p.a_events, |e| *e == UaEvent::Held { call }));
    // A second challenge to the same re-INVITE is not answered again.
    p.a.resume(call, p.now).unwrap();
    let reinvite = take_a_request(&mut p, "INVITE ");
    let mut challenge = crate::transaction::make_response(&reinvite, 407, None);
    challenge.headers.push(
        "Proxy-Authenticate",
        "Digest realm=\"example.com\", nonce=\"n492\", algorithm=MD5",
    );
    p.a.handle_datagram(&challenge.to_bytes(), addr(B), addr(A).ip(), p.now);
    let retry = take_a_request(&mut p, "INVITE ");
    let mut challenge = crate::transaction::make_response(&retry, 407, None);
    challenge.headers.push(
        "Proxy-Authenticate",
        "Digest realm=\"example.com\", nonce=\"n493\", algorithm=MD5",
    );
    p.a.handle_datagram(&challenge.to_bytes(), addr(B), addr(A).ip(), p.now);
    p.settle();
    assert!(has(&p.a_events, |e| matches!(
        e,
        UaEvent::HoldFailed {
            status: Some(407),
            intent: HoldIntent::Resume,
            ..
        }
    )));
    assert!(p.a.hold_state(call).unwrap().local, "still held");
    assert_eq!(p.a.call_state(call), Some(CallState::Confirmed));
}

#[test]
fn a_refused_reinvite_leaves_the_call_as_it_was_rfc3261_14_1() {
    let mut p = Pair::new();
    let (call, _) = established(&mut p);
    p.a.hold(call, p.now).unwrap();
    let reinvite = take_a_request(&mut p, "INVITE ");
    let refusal = crate::transaction::make_response(&reinvite, 488, None);
    p.a.handle_datagram(&refusal.to_bytes(), addr(B), addr(A).ip(), p.now);
    p.settle();
    assert!(has(&p.a_events, |e| matches!(
        e,
        UaEvent::HoldFailed {
            status: Some(488),
            intent: HoldIntent::Hold,
            ..
        }
    )));
    assert!(!has(&p.a_events, |e| matches!(e, UaEvent::Held { .. })));
    assert_eq!(p.a.hold_state(call), Some(HoldState::default()));
    assert_eq!(p.a.call_state(call), Some(CallState::Confirmed));
    // The offer was withdrawn: the next hold goes out and succeeds, with
    // sendonly again.
    p.a.hold(call, p.now).unwrap();
    p.settle();
    assert!(has(&p.a_events, |e| *e == UaEvent::Held { call }));
    let offers = p.sent("a", "INVITE ");
    assert!(nth_body(&p, "a", "INVITE ", offers - 1).contains("a=sendonly"));
}

/// A re-INVITE from "A" to B's side of the call, built by hand, with `sdp`.
fn reinvite_to_b(p: &Pair, cseq: u32, sdp: &str) -> Vec<u8> {
    let invite = sent_invite(p);
    let to_tag = p
        .raw
        .iter()
        .find(|(f, d)| f == "b" && d.starts_with(b"SIP/2.0 200"))
        .and_then(|(_, d)| match parse_datagram(d).ok()? {
            SipMessage::Response(r) => r.headers.to_addr().ok()?.tag().map(str::to_string),
            _ => None,
        })
        .unwrap();
    let (ctype, len) = if sdp.is_empty() {
        (String::new(), 0)
    } else {
        ("Content-Type: application/sdp\r\n".to_string(), sdp.len())
    };
    format!(
        "INVITE sip:bob@127.0.0.2:5062 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKre{cseq}\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: <sip:bob@127.0.0.2:5062>;tag={to_tag}\r\nCall-ID: {}\r\nCSeq: {cseq} INVITE\r\nContact: <sip:alice@127.0.0.1:5060>\r\n{ctype}Content-Length: {len}\r\n\r\n{sdp}",
        invite.headers.get("From").unwrap(),
        invite.headers.call_id().unwrap(),
    )
    .into_bytes()
}

/// Sends a hand-built re-INVITE to B and ACKs a 2xx; returns the response.
fn reinvite_and_ack(p: &mut Pair, req: Vec<u8>, cseq: u32) -> String {
    let resp = response_to(p, req);
    if resp.starts_with("SIP/2.0 2") {
        let ack = ack_to_b(p, &resp, cseq);
        p.b.handle_datagram(&ack, addr(A), addr(B).ip(), p.now);
        p.settle();
    }
    resp
}

/// The ACK for B's 2xx `resp` to the hand-built re-INVITE `cseq`.
fn ack_to_b(p: &Pair, resp: &str, cseq: u32) -> Vec<u8> {
    let invite = sent_invite(p);
    let to_tag = match parse_datagram(resp.as_bytes()).unwrap() {
        SipMessage::Response(r) => r.headers.to_addr().unwrap().tag().unwrap().to_string(),
        _ => unreachable!("a response"),
    };
    format!(
        "ACK sip:bob@127.0.0.2:5062 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKack{cseq}\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: <sip:bob@127.0.0.2:5062>;tag={to_tag}\r\nCall-ID: {}\r\nCSeq: {cseq} ACK\r\nContent-Length: 0\r\n\r\n",
        invite.headers.get("From").unwrap(),
        invite.headers.call_id().unwrap(),
    )
    .into_bytes()
}

/// The bug-16 body (tests/data/bugs/16-hold-sendonly.sdp) with its
/// addresses on loopback and its direction replaced.
fn bug16_sdp(direction: &str, conn: &str) -> String {
    include_str!("../../tests/data/bugs/16-hold-sendonly.sdp")
        .replace("203.0.113.10", conn)
        .replace("a=sendonly", &format!("a={direction}"))
}

#[test]
fn peer_holding_with_sendonly_is_answered_recvonly_then_sendrecv_on_resume_bug16() {
    let mut p = Pair::new();
    let (_, incoming) = established(&mut p);
    let sdp = bug16_sdp("sendonly", "127.0.0.1");
    let resp = {
        let req = reinvite_to_b(&p, 3, &sdp);
        reinvite_and_ack(&mut p, req, 3)
    };
    assert!(resp.starts_with("SIP/2.0 200"), "{resp}");
    assert!(resp.contains("a=recvonly"), "{resp}");
    assert!(
        resp.contains("c=IN IP4 127.0.0.2"),
        "a real address: {resp}"
    );
    assert!(
        resp.contains("m=audio 50000 RTP/AVP 0"),
        "codec kept: {resp}"
    );
    assert!(has(&p.b_events, |e| *e
        == UaEvent::RemoteHold { call: incoming }));
    assert_eq!(media_direction(&p.b_events), Some(Direction::RecvOnly));
    // Variant B: the last line without CRLF.
    let trimmed = sdp.trim_end().to_string();
    let resp = {
        let req = reinvite_to_b(&p, 4, &trimmed);
        reinvite_and_ack(&mut p, req, 4)
    };
    assert!(resp.contains("a=recvonly"), "{resp}");
    // Resume.
    let resp = {
        let req = reinvite_to_b(&p, 5, &bug16_sdp("sendrecv", "127.0.0.1"));
        reinvite_and_ack(&mut p, req, 5)
    };
    assert!(resp.contains("a=sendrecv"), "{resp}");
    assert!(has(&p.b_events, |e| *e
        == UaEvent::RemoteResume { call: incoming }));
    assert_eq!(media_direction(&p.b_events), Some(Direction::SendRecv));
}

#[test]
fn peer_holding_with_inactive_or_old_style_c_0_0_0_0_is_a_remote_hold_rfc3264_8_4() {
    let mut p = Pair::new();
    let (_, incoming) = established(&mut p);
    let resp = {
        let req = reinvite_to_b(&p, 3, &bug16_sdp("inactive", "127.0.0.1"));
        reinvite_and_ack(&mut p, req, 3)
    };
    assert!(resp.contains("a=inactive"), "{resp}");
    assert_eq!(media_direction(&p.b_events), Some(Direction::Inactive));
    assert!(has(&p.b_events, |e| *e
        == UaEvent::RemoteHold { call: incoming }));
    let resp = {
        let req = reinvite_to_b(&p, 4, &bug16_sdp("sendrecv", "127.0.0.1"));
        reinvite_and_ack(&mut p, req, 4)
    };
    assert!(resp.contains("a=sendrecv"), "{resp}");
    p.b_events.clear();
    // RFC 2543 style: c=0.0.0.0 with sendrecv: we must not send.
    let resp = {
        let req = reinvite_to_b(&p, 5, &bug16_sdp("sendrecv", "0.0.0.0"));
        reinvite_and_ack(&mut p, req, 5)
    };
    assert!(resp.starts_with("SIP/2.0 200"), "{resp}");
    assert!(has(&p.b_events, |e| *e
        == UaEvent::RemoteHold { call: incoming }));
    let media = p
        .b_events
        .iter()
        .find_map(|e| match e {
            UaEvent::Media { media, .. } => Some(media.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(media.remote_rtp, None, "nowhere to send");
    assert!(!media.direction.sends());
}

#[test]
fn offerless_reinvite_gets_an_offer_and_an_ack_without_answer_keeps_the_session_bug13() {
    let mut p = Pair::new();
    let (_, incoming) = established(&mut p);
    let first = nth_body(&p, "b", "SIP/2.0 200", 0);
    let resp = {
        let req = reinvite_to_b(&p, 3, "");
        // No ACK yet: it is sent by hand below, without the answer.
        response_to(&mut p, req)
    };
    assert!(resp.starts_with("SIP/2.0 200"), "{resp}");
    let offer = resp.split("\r\n\r\n").nth(1).unwrap();
    assert!(offer.contains("a=sendrecv"), "{offer}");
    // RFC 3264 §8: a changed SDP (all our codecs now) has the next version.
    assert_eq!(origin_version(offer), origin_version(&first) + 1);
    // The ACK comes without the answer (a protocol error): B must not stay
    // waiting for it, so the next offer is answered, not refused with 491.
    let ack = ack_to_b(&p, &resp, 3);
    p.b.handle_datagram(&ack, addr(A), addr(B).ip(), p.now);
    let resp = {
        let req = reinvite_to_b(&p, 4, &bug16_sdp("sendonly", "127.0.0.1"));
        reinvite_and_ack(&mut p, req, 4)
    };
    assert!(resp.starts_with("SIP/2.0 200"), "{resp}");
    assert!(resp.contains("a=recvonly"), "{resp}");
    assert_eq!(p.b.call_state(incoming), Some(CallState::Confirmed));
}

#[test]
fn second_call_rings_while_the_first_is_up_hold_one_answer_the_other_and_switch() {
    let mut p = Pair::new();
    let (call1, in1) = established(&mut p);
    p.b_events.clear();
    // A second call arrives at B while the first is up.
    let call2 =
        p.a.dial(
            "sip:bob@127.0.0.2:5062",
            addr(B),
            media("127.0.0.1", 40002),
            p.now,
        )
        .unwrap();
    p.settle();
    let in2 = p.incoming();
    assert_ne!(in1, in2);
    assert_eq!(p.b.call_count(), 2);
    // B holds the first and answers the second.
    p.b.hold(in1, p.now).unwrap();
    p.b.answer(in2, media("127.0.0.2", 50002), p.now).unwrap();
    p.settle();
    assert!(has(&p.b_events, |e| *e == UaEvent::Held { call: in1 }));
    assert!(has(&p.b_events, |e| *e == UaEvent::Answered { call: in2 }));
    assert!(has(&p.a_events, |e| *e == UaEvent::RemoteHold { call: call1 }));
    assert!(has(&p.a_events, |e| *e == UaEvent::Answered { call: call2 }));
    assert!(p.b.hold_state(in1).unwrap().local);
    assert!(!p.b.hold_state(in2).unwrap().local);
    // Switch: hold the second, resume the first.
    p.b.hold(in2, p.now).unwrap();
    p.b.resume(in1, p.now).unwrap();
    p.settle();
    assert!(has(&p.b_events, |e| *e == UaEvent::Held { call: in2 }));
    assert!(has(&p.b_events, |e| *e == UaEvent::Resumed { call: in1 }));
    assert!(!p.b.hold_state(in1).unwrap().local);
    assert!(p.b.hold_state(in2).unwrap().local);
    // Hang up both.
    p.b.hangup(in1, p.now).unwrap();
    p.b.hangup(in2, p.now).unwrap();
    p.settle();
    assert_eq!(p.a.call_count() + p.b.call_count(), 0);
}

// ----- blind transfer (RFC 3515, RFC 5589) ------------------------------

const C: &str = "127.0.0.3:5064";

fn transfer_progress(events: &[UaEvent]) -> Vec<crate::ua::TransferProgress> {
    events
        .iter()
        .filter_map(|e| match e {
            UaEvent::Transfer { progress, .. } => Some(progress.clone()),
            _ => None,
        })
        .collect()
}

/// The bodies of the NOTIFYs A sent, in order.
fn notifies(p: &Pair) -> Vec<(String, String)> {
    p.raw
        .iter()
        .filter(|(f, d)| f == "a" && d.starts_with(b"NOTIFY "))
        .map(|(_, d)| match parse_datagram(d).unwrap() {
            SipMessage::Request(r) => (
                r.headers.get("Subscription-State").unwrap().to_string(),
                String::from_utf8(r.body).unwrap(),
            ),
            _ => unreachable!("a request"),
        })
        .collect()
}

/// A call A→B, B transfers A to Carol; A accepts and dials Carol (who is
/// simulated by hand). Returns (A's original, B's original, A's new call,
/// A's INVITE to Carol).
fn transfer_to_carol(p: &mut Pair) -> (CallHandle, CallHandle, CallHandle, crate::sip::Request) {
    let (call, incoming) = established(p);
    p.a_events.clear();
    p.b_events.clear();
    p.b.transfer(incoming, "sip:carol@127.0.0.3:5064", p.now)
        .unwrap();
    p.settle();
    let refer = nth_body(p, "b", "REFER ", 0);
    assert!(refer.is_empty());
    let refer = p
        .raw
        .iter()
        .find(|(f, d)| f == "b" && d.starts_with(b"REFER "))
        .map(|(_, d)| String::from_utf8(d.clone()).unwrap())
        .unwrap();
    assert!(
        refer.contains("Refer-To: <sip:carol@127.0.0.3:5064>"),
        "{refer}"
    );
    assert!(refer.contains("Referred-By: "), "{refer}");
    assert_eq!(p.sent("a", "SIP/2.0 202"), 1);
    let target = p
        .a_events
        .iter()
        .find_map(|e| match e {
            UaEvent::TransferRequested {
                call: c, target, ..
            } if *c == call => Some(target.clone()),
            _ => None,
        })
        .expect("A was asked to transfer");
    assert_eq!(target, "sip:carol@127.0.0.3:5064");
    // The first NOTIFY: 100 Trying, subscription active.
    let n = notifies(p);
    assert_eq!(n.len(), 1);
    assert!(n[0].0.starts_with("active"), "{:?}", n[0]);
    assert_eq!(n[0].1, "SIP/2.0 100 Trying\r\n");
    assert_eq!(
        transfer_progress(&p.b_events),
        vec![
            crate::ua::TransferProgress::Accepted,
            crate::ua::TransferProgress::Trying {
                status: 100,
                reason: "Trying".into()
            }
        ]
    );
    let new_call =
        p.a.dial_referred(call, &target, addr(C), media("127.0.0.1", 40010), p.now)
            .unwrap();
    p.settle();
    assert!(has(&p.a_events, |e| *e
        == UaEvent::ReferredCall {
            call: new_call,
            original: call,
            target: target.clone()
        }));
    let invite = p
        .raw
        .iter()
        .rev()
        .find(|(f, d)| f == "a" && d.starts_with(b"INVITE sip:carol@127.0.0.3:5064 "))
        .map(|(_, d)| match parse_datagram(d).unwrap() {
            SipMessage::Request(r) => r,
            _ => unreachable!("a request"),
        })
        .expect("A invited Carol");
    (call, incoming, new_call, invite)
}

#[test]
fn blind_transfer_transferee_calls_the_target_and_notifies_then_the_calls_end_rfc3515_rfc5589() {
    let mut p = Pair::new();
    let (call, incoming, new_call, invite) = transfer_to_carol(&mut p);
    let ringing = invite_response(&invite, 180, "carol1", None);
    p.a.handle_datagram(&ringing, addr(C), addr(A).ip(), p.now);
    p.settle();
    let ok = invite_response(&invite, 200, "carol1", Some(answer_sdp(&invite, 60000)));
    p.a.handle_datagram(&ok, addr(C), addr(A).ip(), p.now);
    p.settle();
    assert!(has(&p.a_events, |e| *e == UaEvent::Answered { call: new_call }));
    let n = notifies(&p);
    assert_eq!(n.len(), 3, "{n:?}");
    assert_eq!(n[1].1, "SIP/2.0 180 Ringing\r\n");
    assert!(n[1].0.starts_with("active"));
    assert_eq!(n[2].1, "SIP/2.0 200 OK\r\n");
    assert!(n[2].0.starts_with("terminated"), "{:?}", n[2]);
    let notify = p
        .raw
        .iter()
        .find(|(f, d)| f == "a" && d.starts_with(b"NOTIFY "))
        .map(|(_, d)| String::from_utf8(d.clone()).unwrap())
        .unwrap();
    assert!(notify.contains("Event: refer;id="), "{notify}");
    assert!(
        notify.contains("Content-Type: message/sipfrag;version=2.0"),
        "{notify}"
    );
    // Every NOTIFY was answered 200 by the transferor (after the first
    // INVITE's 200; the last one answers A's BYE).
    assert_eq!(p.sent("b", "SIP/2.0 200"), 1 + 3 + 1);
    assert_eq!(
        transfer_progress(&p.b_events)[2..],
        [
            crate::ua::TransferProgress::Trying {
                status: 180,
                reason: "Ringing".into()
            },
            crate::ua::TransferProgress::Succeeded {
                status: 200,
                reason: "OK".into()
            }
        ]
    );
    // The original call is over on both sides; the new one is up.
    assert!(has(
        &p.b_events,
        |e| matches!(e, UaEvent::Ended { call: c, .. } if *c == incoming)
    ));
    assert!(has(
        &p.a_events,
        |e| matches!(e, UaEvent::Ended { call: c, .. } if *c == call)
    ));
    assert_eq!(p.a.call_state(new_call), Some(CallState::Confirmed));
    assert_eq!(p.b.call_count(), 0);
}

#[test]
fn a_failed_transfer_is_notified_and_the_original_call_stays_rfc3515_2_4_5() {
    let mut p = Pair::new();
    let (call, incoming, new_call, invite) = transfer_to_carol(&mut p);
    let busy = invite_response(&invite, 486, "carol2", None);
    p.a.handle_datagram(&busy, addr(C), addr(A).ip(), p.now);
    p.settle();
    assert!(matches!(
        ended(&p.a_events),
        Some(EndReason::Rejected { status: 486, .. })
    ));
    let n = notifies(&p);
    assert_eq!(n.len(), 2, "{n:?}");
    assert_eq!(n[1].1, "SIP/2.0 486 Busy Here\r\n");
    assert!(n[1].0.starts_with("terminated"));
    assert_eq!(
        transfer_progress(&p.b_events).last(),
        Some(&crate::ua::TransferProgress::Failed {
            status: Some(486),
            reason: "Busy Here".into()
        })
    );
    assert_eq!(p.a.call_state(call), Some(CallState::Confirmed));
    assert_eq!(p.b.call_state(incoming), Some(CallState::Confirmed));
    assert_eq!(p.a.call_state(new_call), None);
    // The transferor may try again.
    p.b.transfer(incoming, "sip:dave@127.0.0.3:5064", p.now)
        .unwrap();
    p.settle();
    assert_eq!(p.sent("a", "SIP/2.0 202"), 2);
}

#[test]
fn refer_outside_a_dialog_or_without_refer_to_is_refused_rfc3515_2_4_2() {
    let mut p = Pair::new();
    let outside = request(
        "REFER sip:bob@127.0.0.2:5062 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKref1
Max-Forwards: 70
From: <sip:alice@127.0.0.1>;tag=x1
To: <sip:bob@127.0.0.2>
Call-ID: refer-outside@127.0.0.1
CSeq: 1 REFER
Refer-To: <sip:carol@127.0.0.3>
Content-Length: 0

",
    );
    let resp = response_to(&mut p, outside);
    assert!(resp.starts_with("SIP/2.0 403"), "{resp}");
    let (_, incoming) = established(&mut p);
    let invite = sent_invite(&p);
    let to_tag = p
        .raw
        .iter()
        .find(|(f, d)| f == "b" && d.starts_with(b"SIP/2.0 200"))
        .and_then(|(_, d)| match parse_datagram(d).ok()? {
            SipMessage::Response(r) => r.headers.to_addr().ok()?.tag().map(str::to_string),
            _ => None,
        })
        .unwrap();
    let refer = |cseq: u32, refer_to: &str| {
        format!(
            "REFER sip:bob@127.0.0.2:5062 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKref{cseq}\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: <sip:bob@127.0.0.2:5062>;tag={to_tag}\r\nCall-ID: {}\r\nCSeq: {cseq} REFER\r\n{refer_to}Content-Length: 0\r\n\r\n",
            invite.headers.get("From").unwrap(),
            invite.headers.call_id().unwrap(),
        )
        .into_bytes()
    };
    let resp = response_to(&mut p, refer(2, ""));
    assert!(resp.starts_with("SIP/2.0 400"), "{resp}");
    let resp = response_to(&mut p, refer(3, "Refer-To: <mailto:carol@example.com>\r\n"));
    assert!(resp.starts_with("SIP/2.0 400"), "{resp}");
    // The compact form `r` is Refer-To (RFC 3515 §2.1).
    // The 202, then the first NOTIFY.
    p.b.handle_datagram(
        &refer(4, "r: <sip:carol@127.0.0.3:5064>\r\n"),
        addr(A),
        addr(B).ip(),
        p.now,
    );
    let mut sent = Vec::new();
    while let Some(o) = p.b.poll_output() {
        match o {
            UaOutput::Transmit(t) => sent.push(String::from_utf8(t.payload).unwrap()),
            UaOutput::Event(e) => p.b_events.push(e),
        }
    }
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(sent[0].starts_with("SIP/2.0 202 Accepted"), "{}", sent[0]);
    assert!(sent[1].starts_with("NOTIFY "), "{}", sent[1]);
    assert!(sent[1].contains("Event: refer;id=4\r\n"), "{}", sent[1]);
    assert!(has(&p.b_events, |e| matches!(
        e,
        UaEvent::TransferRequested { call, target, .. }
            if *call == incoming && target == "sip:carol@127.0.0.3:5064"
    )));
}

#[test]
fn notify_for_an_unknown_dialog_gets_481_rfc6665_4_1_3() {
    let mut p = Pair::new();
    let notify = request(
        "NOTIFY sip:bob@127.0.0.2:5062 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKnot1
Max-Forwards: 70
From: <sip:alice@127.0.0.1>;tag=x1
To: <sip:bob@127.0.0.2>;tag=y1
Call-ID: notify-unknown@127.0.0.1
CSeq: 1 NOTIFY
Event: refer
Subscription-State: terminated
Content-Type: message/sipfrag
Content-Length: 16

SIP/2.0 200 OK
",
    );
    let resp = response_to(&mut p, notify);
    assert!(resp.starts_with("SIP/2.0 481"), "{resp}");
}

#[test]
fn a_late_retransmitted_2xx_to_our_reinvite_gets_the_reinvites_ack_rfc3261_13_2_2_4() {
    let mut p = Pair::new();
    let (call, _) = established(&mut p);
    p.a.hold(call, p.now).unwrap();
    p.settle();
    let ok = p
        .raw
        .iter()
        .filter(|(f, d)| f == "b" && d.starts_with(b"SIP/2.0 200"))
        .nth(1)
        .map(|(_, d)| d.clone())
        .expect("B answered the re-INVITE");
    // Long after the client transaction ended (Timer M), the 2xx again.
    p.run_for(Duration::from_secs(40));
    let before = p.sent("a", "ACK ");
    p.a.handle_datagram(&ok, addr(B), addr(A).ip(), p.now);
    let mut acks = Vec::new();
    while let Some(o) = p.a.poll_output() {
        if let UaOutput::Transmit(t) = o
            && t.payload.starts_with(b"ACK ")
        {
            acks.push(String::from_utf8(t.payload).unwrap());
        }
    }
    assert_eq!(acks.len(), 1, "{before} {acks:?}");
    assert!(acks[0].contains("CSeq: 2 ACK"), "{}", acks[0]);
}

#[test]
fn a_challenged_refer_is_sent_again_with_credentials_rfc3261_22_2() {
    let mut p = Pair::new();
    let (call, incoming) = established(&mut p);
    p.a.set_credentials(Some(crate::ua::digest::Credentials::new("alice", "secret")));
    p.a.transfer(call, "sip:carol@127.0.0.3:5064", p.now)
        .unwrap();
    let refer = take_a_request(&mut p, "REFER ");
    let mut challenge = crate::transaction::make_response(&refer, 401, None);
    challenge.headers.push(
        "WWW-Authenticate",
        "Digest realm=\"example.com\", nonce=\"r1\", algorithm=MD5",
    );
    p.a.handle_datagram(&challenge.to_bytes(), addr(B), addr(A).ip(), p.now);
    let retry = take_a_request(&mut p, "REFER ");
    assert!(retry.headers.get("Authorization").is_some());
    assert_eq!(
        retry.headers.get("Refer-To"),
        Some("<sip:carol@127.0.0.3:5064>")
    );
    assert_eq!(
        retry.headers.cseq().unwrap().seq,
        refer.headers.cseq().unwrap().seq + 1
    );
    assert!(
        transfer_progress(&p.a_events).is_empty(),
        "no failure reported"
    );
    p.b.handle_datagram(&retry.to_bytes(), addr(A), addr(B).ip(), p.now);
    p.settle();
    assert_eq!(
        transfer_progress(&p.a_events).first(),
        Some(&crate::ua::TransferProgress::Accepted)
    );
    assert!(has(&p.b_events, |e| matches!(
        e,
        UaEvent::TransferRequested { call, .. } if *call == incoming
    )));
}

// ----- NAT: Record-Route, rport (RFC 3581) and the public Contact -----

#[test]
fn dialog_creating_responses_copy_the_record_route_in_order_rfc3261_12_1_1() {
    let mut p = Pair::new();
    let invite = format!(
        "INVITE sip:bob@127.0.0.2:5062 SIP/2.0\r\nRecord-Route: <sip:p2.example.com;lr>\r\nRecord-Route: <sip:p1.example.com;lr;ftag=x>\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKrr1;rport\r\nMax-Forwards: 70\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:bob@127.0.0.2>\r\nCall-ID: rr1\r\nCSeq: 1 INVITE\r\nContact: <sip:a@127.0.0.1:5060>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{}",
        OFFER.len(),
        OFFER
    )
    .into_bytes();
    p.b.handle_datagram(&invite, addr(A), addr(B).ip(), p.now);
    let mut sent = Vec::new();
    let drain = |p: &mut Pair, sent: &mut Vec<String>| {
        while let Some(o) = p.b.poll_output() {
            match o {
                UaOutput::Transmit(t) => sent.push(String::from_utf8(t.payload).unwrap()),
                UaOutput::Event(e) => p.b_events.push(e),
            }
        }
    };
    drain(&mut p, &mut sent);
    let call = p.incoming();
    p.b.answer(call, media("127.0.0.2", 50000), p.now).unwrap();
    drain(&mut p, &mut sent);
    for status in ["SIP/2.0 180", "SIP/2.0 200"] {
        let text = sent
            .iter()
            .find(|s| s.starts_with(status))
            .unwrap_or_else(|| panic!("{status} sent: {sent:?}"));
        let SipMessage::Response(r) = parse_datagram(text.as_bytes()).unwrap() else {
            panic!("a response");
        };
        let rr: Vec<&str> = r.headers.get_all("Record-Route").collect();
        assert_eq!(
            rr,
            vec!["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr;ftag=x>"],
            "{status}"
        );
    }
}

const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

/// alice's registration at example.com for 600 s, without outbound.
fn alice_registration() -> super::registration::RegistrationConfig {
    super::registration::RegistrationConfig {
        aor: "sip:alice@example.com".into(),
        registrar: "sip:example.com".into(),
        expires: 600,
        route: Vec::new(),
        instance: None,
    }
}

/// The next REGISTER `ua` sends.
fn next_register(ua: &mut UserAgent, events: &mut Vec<UaEvent>) -> Option<crate::sip::Request> {
    let mut found = None;
    while let Some(o) = ua.poll_output() {
        match o {
            UaOutput::Transmit(t) => {
                if let Ok(SipMessage::Request(r)) = parse_datagram(&t.payload)
                    && r.method == crate::sip::Method::Register
                {
                    found = Some(r);
                }
            }
            UaOutput::Event(e) => events.push(e),
        }
    }
    found
}

/// The registrar's 200 OK, with our Via completed as a server behind the
/// NAT would (RFC 3581 §4: `received` and `rport` = where it came from).
fn register_ok(req: &crate::sip::Request, seen_from: SocketAddr) -> Vec<u8> {
    let via = req.headers.get("Via").unwrap().replace(
        ";rport",
        &format!(";received={};rport={}", seen_from.ip(), seen_from.port()),
    );
    let contacts: Vec<String> = req
        .headers
        .get_all("Contact")
        .filter(|c| !c.contains("expires=0"))
        .map(|c| format!("Contact: {c};expires=600\r\n"))
        .collect();
    format!(
        "SIP/2.0 200 OK\r\nVia: {via}\r\nFrom: {}\r\nTo: {};tag=reg\r\nCall-ID: {}\r\nCSeq: {}\r\n{}Content-Length: 0\r\n\r\n",
        req.headers.get("From").unwrap(),
        req.headers.get("To").unwrap(),
        req.headers.get("Call-ID").unwrap(),
        req.headers.get("CSeq").unwrap(),
        contacts.concat()
    )
    .into_bytes()
}

#[test]
fn rport_in_the_register_response_moves_the_contact_and_removes_the_stale_binding_rfc3581_4() {
    let mut ua = ua("alice", A, 7);
    let mut events = Vec::new();
    let mut now = Instant::now();
    let registrar = addr("198.51.100.70:5060");
    let cfg = alice_registration();
    ua.register(cfg, registrar, addr(A).ip(), now);
    let first = next_register(&mut ua, &mut events).expect("a REGISTER");
    assert_eq!(
        first.headers.get_all("Contact").collect::<Vec<_>>(),
        vec!["<sip:alice@127.0.0.1:5060>"]
    );
    // The registrar saw it from the NAT's public address.
    let public = addr("198.51.100.65:40000");
    ua.handle_datagram(&register_ok(&first, public), registrar, addr(A).ip(), now);
    let moved = next_register(&mut ua, &mut events).expect("registers again at once");
    assert_eq!(
        moved.headers.get_all("Contact").collect::<Vec<_>>(),
        vec![
            "<sip:alice@198.51.100.65:40000>",
            "<sip:alice@127.0.0.1:5060>;expires=0"
        ]
    );
    assert!(has(&events, |e| matches!(
        e,
        UaEvent::Nat(crate::nat::NatEvent::PublicAddressChanged {
            previous: None,
            current,
            source: crate::nat::NatSource::Rport
        }) if *current == public
    )));
    ua.handle_datagram(&register_ok(&moved, public), registrar, addr(A).ip(), now);
    assert!(
        next_register(&mut ua, &mut events).is_none(),
        "the Contact is right now: no further REGISTER"
    );
    assert_eq!(ua.public_address(), Some(public));
    // The NAT restarts; the refresh (RFC 3261 §10.2.4, half the expiry)
    // shows a new mapping, and the binding moves again.
    now += Duration::from_secs(301);
    ua.handle_timeout(now);
    let refresh = next_register(&mut ua, &mut events).expect("a refresh");
    assert_eq!(
        refresh.headers.get_all("Contact").collect::<Vec<_>>(),
        vec!["<sip:alice@198.51.100.65:40000>"]
    );
    let renumbered = addr("198.51.100.65:51234");
    ua.handle_datagram(
        &register_ok(&refresh, renumbered),
        registrar,
        addr(A).ip(),
        now,
    );
    let moved_again = next_register(&mut ua, &mut events).expect("moves again");
    assert_eq!(
        moved_again.headers.get_all("Contact").collect::<Vec<_>>(),
        vec![
            "<sip:alice@198.51.100.65:51234>",
            "<sip:alice@198.51.100.65:40000>;expires=0"
        ]
    );
}

#[test]
fn a_response_from_an_unnatted_registrar_changes_nothing_rfc3581_4() {
    let mut ua = ua("alice", A, 8);
    let mut events = Vec::new();
    let now = Instant::now();
    let registrar = addr("127.0.0.9:5060");
    let cfg = alice_registration();
    ua.register(cfg, registrar, addr(A).ip(), now);
    let first = next_register(&mut ua, &mut events).unwrap();
    ua.handle_datagram(&register_ok(&first, addr(A)), registrar, addr(A).ip(), now);
    assert!(next_register(&mut ua, &mut events).is_none());
    assert!(!has(&events, |e| matches!(e, UaEvent::Nat(_))));
    assert_eq!(ua.public_address(), None);
}

#[test]
fn invite_and_its_200_carry_the_public_contact_once_known() {
    let mut p = Pair::new();
    let public = addr("198.51.100.65:40000");
    p.b.learn_public_address(public, crate::nat::NatSource::Stun, p.now);
    p.a.learn_public_address(
        addr("198.51.100.66:41000"),
        crate::nat::NatSource::Stun,
        p.now,
    );
    p.dial();
    let call = p.incoming();
    p.b.answer(call, media("127.0.0.2", 50000), p.now).unwrap();
    p.settle();
    let contact_in = |from: &str, prefix: &str| {
        p.raw
            .iter()
            .filter(|(f, _)| f == from)
            .map(|(_, d)| String::from_utf8_lossy(d).to_string())
            .find(|t| t.starts_with(prefix))
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("Contact:"))
                    .map(str::to_string)
            })
    };
    assert_eq!(
        contact_in("a", "INVITE").as_deref(),
        Some("Contact: <sip:alice@198.51.100.66:41000>")
    );
    assert_eq!(
        contact_in("b", "SIP/2.0 200").as_deref(),
        Some("Contact: <sip:bob@198.51.100.65:40000>")
    );
}

#[test]
fn a_refused_registration_gives_the_status_once_and_the_reason_in_words() {
    let mut ua = ua("alice", A, 8);
    let mut events = Vec::new();
    let now = Instant::now();
    let registrar = addr("198.51.100.71:5060");
    let cfg = alice_registration();
    ua.register(cfg, registrar, addr(A).ip(), now);
    let req = next_register(&mut ua, &mut events).expect("a REGISTER");
    let challenge = format!(
        "SIP/2.0 401 Unauthorized\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag=reg\r\nCall-ID: {}\r\nCSeq: {}\r\nWWW-Authenticate: Digest realm=\"example.com\", nonce=\"abc\"\r\nContent-Length: 0\r\n\r\n",
        req.headers.get("Via").unwrap(),
        req.headers.get("From").unwrap(),
        req.headers.get("To").unwrap(),
        req.headers.get("Call-ID").unwrap(),
        req.headers.get("CSeq").unwrap(),
    );
    ua.handle_datagram(challenge.as_bytes(), registrar, addr(A).ip(), now);
    assert!(next_register(&mut ua, &mut events).is_none());
    let failed = events.iter().find_map(|e| match e {
        UaEvent::Registration {
            event: super::accounts::RegEvent::Failed { status, reason, .. },
            ..
        } => Some((*status, reason.clone())),
        _ => None,
    });
    assert_eq!(
        failed,
        Some((
            Some(401),
            "Unauthorized (no credentials configured)".to_string()
        ))
    );
}

#[test]
fn notify_without_an_event_header_gets_489_bad_event_rfc6665_8_2_1() {
    let mut p = Pair::new();
    established(&mut p);
    let info = String::from_utf8(info_in_dialog(
        &p,
        "nev1",
        30,
        "message/sipfrag",
        "SIP/2.0 200 OK\r\n",
    ))
    .unwrap();
    let notify = info
        .replacen("INFO sip:", "NOTIFY sip:", 1)
        .replace("CSeq: 30 INFO", "CSeq: 30 NOTIFY");
    let resp = response_to(&mut p, notify.into_bytes());
    assert!(resp.starts_with("SIP/2.0 489 Bad Event\r\n"), "{resp}");
}

#[test]
fn a_request_whose_via_says_port_0_is_answered_at_its_source_rfc3581_4() {
    let mut p = Pair::new();
    let options = request(
        "OPTIONS sip:bob@127.0.0.2:5062 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:0;branch=z9hG4bKport0\nMax-Forwards: 70\nFrom: <sip:a@127.0.0.1>;tag=1\nTo: <sip:bob@127.0.0.2>\nCall-ID: port0\nCSeq: 1 OPTIONS\nContent-Length: 0\n\n",
    );
    p.b.handle_datagram(&options, addr(A), addr(B).ip(), p.now);
    let mut dests = Vec::new();
    while let Some(o) = p.b.poll_output() {
        if let UaOutput::Transmit(t) = o {
            dests.push(t.dest);
        }
    }
    assert_eq!(dests, [addr(A)]);
}

#[test]
fn unanswered_bye_ends_the_call_after_8_t1_without_waiting_for_timer_f_rfc3261_15_1_1() {
    let mut p = Pair::new();
    let call = p.dial();
    let incoming = p.incoming();
    p.b.answer(incoming, media("127.0.0.2", 50000), p.now)
        .unwrap();
    p.settle();
    // B is gone: nothing it would send arrives any more.
    p.drop = Box::new(|from, _| from == "b");
    let hung_up = p.now;
    p.a.hangup(call, p.now).unwrap();
    p.settle();
    assert_eq!(ended(&p.a_events), None, "the BYE gets its chance first");
    p.run_for(Duration::from_millis(3900));
    assert_eq!(ended(&p.a_events), None);
    p.run_for(Duration::from_millis(200));
    assert_eq!(ended(&p.a_events), Some(EndReason::ByeTimeout));
    assert_eq!(p.a.call_count(), 0);
    assert_eq!(p.now.duration_since(hung_up), Duration::from_millis(4100));
    // BYE at 0, 0.5, 1.5 and 3.5 s (Timer E).
    assert_eq!(p.sent("a", "BYE "), 4);
    // The transaction goes on retransmitting until Timer F, without a
    // second end.
    p.run_for(Duration::from_secs(40));
    let ends = p
        .a_events
        .iter()
        .filter(|e| matches!(e, UaEvent::Ended { .. }))
        .count();
    assert_eq!(ends, 1);
}

#[test]
fn only_a_provisional_response_then_timer_b_is_no_final_response_not_no_response_rfc6026() {
    let mut p = Pair::new();
    // The callee's 180 (and anything after it) is lost: only 100 Trying arrives.
    p.drop = Box::new(|from, text| from == "b" && !text.starts_with("SIP/2.0 100"));
    p.dial();
    assert_eq!(p.sent("b", "SIP/2.0 100"), 1);
    p.run_for(Duration::from_secs(33));
    assert_eq!(
        ended(&p.a_events),
        Some(EndReason::NoFinalResponse { status: 100 })
    );
}

/// The REGISTER with Expires: 0 leaves at once, not with the first
/// Timer E retransmission (which sent it twice at T1 instead).
#[test]
fn unregister_sends_its_register_at_once() {
    let mut ua = ua("alice", A, 7);
    let mut events = Vec::new();
    let now = Instant::now();
    let registrar = addr("127.0.0.1:5999");
    let cfg = alice_registration();
    let handle = ua.register(cfg, registrar, addr(A).ip(), now);
    let first = next_register(&mut ua, &mut events).expect("a REGISTER");
    ua.handle_datagram(&register_ok(&first, addr(A)), registrar, addr(A).ip(), now);
    assert!(next_register(&mut ua, &mut events).is_none());
    assert!(ua.unregister(handle, now));
    let mut count = 0;
    while let Some(o) = ua.poll_output() {
        if let UaOutput::Transmit(t) = o
            && let Ok(SipMessage::Request(r)) = parse_datagram(&t.payload)
            && r.method == crate::sip::Method::Register
        {
            count += 1;
        }
    }
    assert_eq!(count, 1);
}

#[test]
fn an_unanswered_reinvite_fails_with_a_reason_in_words() {
    let mut p = Pair::new();
    let (call, _) = established(&mut p);
    p.drop = Box::new(|from, _| from == "b");
    p.a.hold(call, p.now).unwrap();
    p.settle();
    p.run_for(Duration::from_secs(40));
    let reasons: Vec<_> = p
        .a_events
        .iter()
        .filter_map(|e| match e {
            UaEvent::HoldFailed { status, reason, .. } => Some((*status, reason.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        reasons,
        [(None, "no response to the re-INVITE".to_string())]
    );
}
