//! Transaction timer and matching tests on a fake clock: each test jumps
//! straight to the next deadline, so Timer B's 32 s take microseconds.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::sip::{SipMessage, parse_datagram};

const PEER: &str = "127.0.0.1:5070";

fn peer() -> SocketAddr {
    PEER.parse().unwrap()
}

fn request(method: &str, branch: &str) -> Request {
    let text = format!(
        "{method} sip:bob@127.0.0.1:5070 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5060;branch={branch};rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@127.0.0.1>;tag=a1\r\n\
To: <sip:bob@127.0.0.1>\r\n\
Call-ID: call-1@127.0.0.1\r\n\
CSeq: 1 {method}\r\n\
Content-Length: 0\r\n\r\n"
    );
    match parse_datagram(text.as_bytes()).unwrap() {
        SipMessage::Request(r) => r,
        _ => unreachable!("built a request"),
    }
}

fn response_to(req: &Request, status: u16) -> Response {
    make_response(req, status, Some("b1"))
}

/// Drains the layer, returning (transmits, events).
fn drain(layer: &mut TransactionLayer) -> (Vec<Transmit>, Vec<TxEvent>) {
    let mut tx = Vec::new();
    let mut ev = Vec::new();
    while let Some(o) = layer.poll_output() {
        match o {
            Output::Transmit(t) => tx.push(t),
            Output::Event(e) => ev.push(e),
        }
    }
    (tx, ev)
}

/// Advances the clock to each deadline until `until`, recording the
/// instants at which datagrams were sent.
fn run_until(
    layer: &mut TransactionLayer,
    t0: Instant,
    until: Duration,
) -> (Vec<Duration>, Vec<TxEvent>) {
    let mut sends = Vec::new();
    let mut events = Vec::new();
    while let Some(next) = layer.next_timeout() {
        if next > t0 + until {
            break;
        }
        layer.handle_timeout(next);
        let (tx, ev) = drain(layer);
        sends.extend(tx.iter().map(|_| next - t0));
        events.extend(ev);
    }
    (sends, events)
}

fn is_timeout(e: &TxEvent) -> bool {
    matches!(e, TxEvent::Timeout { .. })
}

#[test]
fn timer_a_doubles_and_timer_b_reports_timeout_after_64_t1_rfc3261_17_1_1_2() {
    let t0 = Instant::now();
    let mut l = TransactionLayer::new(TimerConfig::default());
    l.send_request(request("INVITE", "z9hG4bKinv1"), peer(), t0)
        .unwrap();
    assert_eq!(drain(&mut l).0.len(), 1);
    let (sends, events) = run_until(&mut l, t0, Duration::from_secs(60));
    let ms: Vec<u128> = sends.iter().map(|d| d.as_millis()).collect();
    // Retransmits at 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s (A doubles with no cap).
    assert_eq!(ms, vec![500, 1500, 3500, 7500, 15500, 31500]);
    assert!(events.iter().any(is_timeout));
    assert!(l.is_empty(), "terminated transaction is removed");
}

#[test]
fn timer_e_doubles_up_to_t2_and_timer_f_times_out_rfc3261_17_1_2_2() {
    let t0 = Instant::now();
    let mut l = TransactionLayer::new(TimerConfig::default());
    l.send_request(request("OPTIONS", "z9hG4bKopt1"), peer(), t0)
        .unwrap();
    drain(&mut l);
    let (sends, events) = run_until(&mut l, t0, Duration::from_secs(40));
    let ms: Vec<u128> = sends.iter().map(|d| d.as_millis()).collect();
    // Intervals 0.5, 1, 2, 4, 4, 4, ... capped at T2 = 4 s.
    assert_eq!(&ms[..6], &[500, 1500, 3500, 7500, 11500, 15500]);
    let gaps: Vec<u128> = ms.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.iter().all(|g| *g <= 4000));
    let timeout_at = events.iter().position(is_timeout).expect("Timer F fired");
    assert!(timeout_at < events.len());
    assert!(l.is_empty());
}

#[test]
fn provisional_response_sets_timer_e_to_t2_rfc3261_17_1_2_2() {
    let t0 = Instant::now();
    let mut l = TransactionLayer::new(TimerConfig::default());
    let req = request("OPTIONS", "z9hG4bKopt2");
    l.send_request(req.clone(), peer(), t0).unwrap();
    drain(&mut l);
    l.handle_message(SipMessage::Response(response_to(&req, 180)), peer(), t0);
    let (_, ev) = drain(&mut l);
    assert!(matches!(&ev[0], TxEvent::Response { response, .. } if response.status == 180));
    // First retransmit still at 0.5 s (armed before), then every 4 s.
    let (sends, _) = run_until(&mut l, t0, Duration::from_secs(13));
    let ms: Vec<u128> = sends.iter().map(|d| d.as_millis()).collect();
    assert_eq!(ms, vec![500, 4500, 8500, 12500]);
}

#[test]
fn non_2xx_final_response_is_acked_inside_the_transaction_rfc3261_17_1_1_3() {
    let t0 = Instant::now();
    let mut l = TransactionLayer::new(TimerConfig::default());
    let req = request("INVITE", "z9hG4bKinv2");
    l.send_request(req.clone(), peer(), t0).unwrap();
    drain(&mut l);
    let busy = response_to(&req, 486);
    l.handle_message(SipMessage::Response(busy.clone()), peer(), t0);
    let (tx, ev) = drain(&mut l);
    assert_eq!(tx.len(), 1, "one ACK");
    let ack = match parse_datagram(&tx[0].payload).unwrap() {
        SipMessage::Request(r) => r,
        _ => panic!("ACK expected"),
    };
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(ack.headers.top_via().unwrap().branch(), Some("z9hG4bKinv2"));
    assert_eq!(ack.headers.cseq().unwrap().to_string(), "1 ACK");
    assert_eq!(ack.headers.to_addr().unwrap().tag(), Some("b1"));
    assert_eq!(ev.len(), 1, "486 goes to the TU once");
    // A retransmitted 486 gets the ACK again but is not passed up.
    l.handle_message(
        SipMessage::Response(busy),
        peer(),
        t0 + Duration::from_secs(1),
    );
    let (tx, ev) = drain(&mut l);
    assert_eq!((tx.len(), ev.len()), (1, 0));
    // Timer D (32 s) ends the transaction.
    let (_, ev) = run_until(&mut l, t0, Duration::from_secs(33));
    assert!(matches!(ev.last(), Some(TxEvent::Terminated { .. })));
}

#[test]
fn every_2xx_retransmission_reaches_the_tu_in_accepted_rfc6026_7_2() {
    let t0 = Instant::now();
    let mut l = TransactionLayer::new(TimerConfig::default());
    let req = request("INVITE", "z9hG4bKinv3");
    l.send_request(req.clone(), peer(), t0).unwrap();
    drain(&mut l);
    let ok = response_to(&req, 200);
    for i in 0..3 {
        l.handle_message(
            SipMessage::Response(ok.clone()),
            peer(),
            t0 + Duration::from_secs(i),
        );
        let (tx, ev) = drain(&mut l);
        assert!(tx.is_empty(), "the TU, not the transaction, ACKs a 2xx");
        assert_eq!(ev.len(), 1);
    }
    // After Timer M (64·T1) a late 2xx is a stray response, still given to the TU.
    run_until(&mut l, t0, Duration::from_secs(40));
    l.handle_message(
        SipMessage::Response(ok),
        peer(),
        t0 + Duration::from_secs(41),
    );
    let (_, ev) = drain(&mut l);
    assert!(matches!(ev[0], TxEvent::StrayResponse { .. }));
}

#[test]
fn server_invite_sends_100_and_resends_final_until_ack_then_timer_i_rfc3261_17_2_1() {
    let t0 = Instant::now();
    let mut l = TransactionLayer::new(TimerConfig::default());
    let inv = request("INVITE", "z9hG4bKsrv1");
    l.handle_message(SipMessage::Request(inv.clone()), peer(), t0);
    let (tx, ev) = drain(&mut l);
    assert!(String::from_utf8_lossy(&tx[0].payload).starts_with("SIP/2.0 100 Trying"));
    let key = match &ev[0] {
        TxEvent::Request { key, .. } => key.clone(),
        e => panic!("unexpected {e:?}"),
    };
    // A retransmitted INVITE gets the 100 again.
    l.handle_message(SipMessage::Request(inv.clone()), peer(), t0);
    assert_eq!(drain(&mut l).0.len(), 1);
    l.send_response(&key, response_to(&inv, 486), t0).unwrap();
    drain(&mut l);
    // Timer G: 0.5, 1.5, 3.5, 7.5, 11.5 s (doubling up to T2).
    let (sends, _) = run_until(&mut l, t0, Duration::from_secs(12));
    let ms: Vec<u128> = sends.iter().map(|d| d.as_millis()).collect();
    assert_eq!(ms, vec![500, 1500, 3500, 7500, 11500]);
    // ACK → Confirmed; no more retransmissions; Timer I (T4) ends it.
    let ack = request("ACK", "z9hG4bKsrv1");
    l.handle_message(
        SipMessage::Request(ack),
        peer(),
        t0 + Duration::from_secs(12),
    );
    let (tx, ev) = drain(&mut l);
    assert!(
        tx.is_empty() && ev.is_empty(),
        "ACK absorbed by the transaction"
    );
    let (sends, ev) = run_until(&mut l, t0, Duration::from_secs(30));
    assert!(sends.is_empty());
    assert!(matches!(ev.last(), Some(TxEvent::Terminated { .. })));
    assert!(l.is_empty());
}

#[test]
fn timer_h_reports_a_missing_ack_rfc3261_17_2_1() {
    let t0 = Instant::now();
    let mut l = TransactionLayer::new(TimerConfig::default());
    let inv = request("INVITE", "z9hG4bKsrv2");
    l.handle_message(SipMessage::Request(inv.clone()), peer(), t0);
    let key = match drain(&mut l).1.remove(0) {
        TxEvent::Request { key, .. } => key,
        e => panic!("unexpected {e:?}"),
    };
    l.send_response(&key, response_to(&inv, 603), t0).unwrap();
    let (_, ev) = run_until(&mut l, t0, Duration::from_secs(33));
    assert!(ev.iter().any(|e| matches!(e, TxEvent::AckTimeout { .. })));
    assert!(l.is_empty());
}

#[test]
fn ack_for_2xx_goes_to_the_tu_rfc6026_7_1() {
    let t0 = Instant::now();
    let mut l = TransactionLayer::new(TimerConfig::default());
    let inv = request("INVITE", "z9hG4bKsrv3");
    l.handle_message(SipMessage::Request(inv.clone()), peer(), t0);
    let key = match drain(&mut l).1.remove(0) {
        TxEvent::Request { key, .. } => key,
        e => panic!("unexpected {e:?}"),
    };
    l.send_response(&key, response_to(&inv, 200), t0).unwrap();
    drain(&mut l);
    // Retransmitted INVITE in Accepted is absorbed.
    l.handle_message(SipMessage::Request(inv), peer(), t0);
    assert_eq!(drain(&mut l), (vec![], vec![]));
    let ack = request("ACK", "z9hG4bKack3");
    l.handle_message(SipMessage::Request(ack), peer(), t0);
    let (_, ev) = drain(&mut l);
    assert!(matches!(ev[0], TxEvent::Ack { .. }));
}

#[test]
fn server_non_invite_absorbs_retransmits_then_timer_j_rfc3261_17_2_2() {
    let t0 = Instant::now();
    let mut l = TransactionLayer::new(TimerConfig::default());
    let opt = request("OPTIONS", "z9hG4bKsrv4");
    l.handle_message(SipMessage::Request(opt.clone()), peer(), t0);
    let (tx, ev) = drain(&mut l);
    assert!(tx.is_empty());
    let key = match &ev[0] {
        TxEvent::Request { key, .. } => key.clone(),
        e => panic!("unexpected {e:?}"),
    };
    // Retransmission in Trying: absorbed silently.
    l.handle_message(SipMessage::Request(opt.clone()), peer(), t0);
    assert_eq!(drain(&mut l), (vec![], vec![]));
    l.send_response(&key, response_to(&opt, 200), t0).unwrap();
    assert_eq!(drain(&mut l).0.len(), 1);
    // Retransmission in Completed: the 200 again.
    l.handle_message(
        SipMessage::Request(opt),
        peer(),
        t0 + Duration::from_secs(1),
    );
    assert_eq!(drain(&mut l).0.len(), 1);
    let (_, ev) = run_until(&mut l, t0, Duration::from_secs(33));
    assert!(matches!(ev.last(), Some(TxEvent::Terminated { .. })));
}

#[test]
fn responses_go_to_the_rport_source_rfc3581_4() {
    let t0 = Instant::now();
    let mut l = TransactionLayer::new(TimerConfig::default());
    let opt = request("OPTIONS", "z9hG4bKsrv5");
    let src: SocketAddr = "127.0.0.2:40000".parse().unwrap();
    l.handle_message(SipMessage::Request(opt), src, t0);
    let (_, ev) = drain(&mut l);
    let (key, req) = match &ev[0] {
        TxEvent::Request { key, request, .. } => (key.clone(), request.clone()),
        e => panic!("unexpected {e:?}"),
    };
    let via = req.headers.top_via().unwrap();
    assert_eq!(via.rport(), Some(Some(40000)));
    assert_eq!(via.received(), Some("127.0.0.2"));
    l.send_response(&key, response_to(&req, 200), t0).unwrap();
    let (tx, _) = drain(&mut l);
    assert_eq!(tx[0].dest, src);
}

#[test]
fn response_with_two_vias_on_one_line_matches_by_top_branch_bug02() {
    let t0 = Instant::now();
    let mut l = TransactionLayer::new(TimerConfig::default());
    let req = request("REGISTER", "z9hG4bKkwpQ8Rq2");
    l.send_request(req.clone(), peer(), t0).unwrap();
    drain(&mut l);
    let mut resp = response_to(&req, 401);
    resp.headers.set(
        "Via",
        "SIP/2.0/UDP 127.0.0.1:5060;rport=5060;branch=z9hG4bKkwpQ8Rq2,SIP/2.0/TCP 198.51.100.70:5060;branch=z9hG4bK20ede051",
    );
    l.handle_message(SipMessage::Response(resp), peer(), t0);
    let (_, ev) = drain(&mut l);
    assert!(matches!(&ev[0], TxEvent::Response { response, .. } if response.status == 401));
}
