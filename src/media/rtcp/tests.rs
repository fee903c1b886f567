//! The RTCP core on a fake clock.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rtcp::goodbye::Goodbye;
use rtcp::packet::Packet;
use rtcp::receiver_report::ReceiverReport;
use rtcp::reception_report::ReceptionReport;
use rtcp::sender_report::SenderReport;
use rtcp::source_description::{SdesType, SourceDescription};
use webrtc_util::marshal::Marshal;

use super::*;

const MS: Duration = Duration::from_millis(1);
/// 2026-12-03T12:00:00Z.
const WALL_SECS: u64 = 1_796_299_200;
const OUR_SSRC: u32 = 0x1111_1111;
const PEER_SSRC: u32 = 0x2222_2222;

fn wall() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(WALL_SECS)
}

fn session(ssrc: u32, min: Duration, now: Instant, seed: u64) -> RtcpSession {
    let config = RtcpConfig {
        min_interval: min,
        ..RtcpConfig::new(format!("cname-{ssrc:x}"), 8000)
    };
    RtcpSession::new(
        ssrc,
        config,
        &FixedClock(wall()),
        &mut StdRng::seed_from_u64(seed),
        now,
    )
}

fn parse(datagram: &Bytes) -> Vec<Box<dyn Packet + Send + Sync>> {
    rtcp::packet::unmarshal(&mut datagram.clone()).expect("our RTCP parses")
}

fn sender_report(packets: &[Box<dyn Packet + Send + Sync>]) -> Option<&SenderReport> {
    packets[0].as_any().downcast_ref::<SenderReport>()
}

fn receiver_report(packets: &[Box<dyn Packet + Send + Sync>]) -> Option<&ReceiverReport> {
    packets[0].as_any().downcast_ref::<ReceiverReport>()
}

/// Runs the timer until the next report goes out; returns it and when.
fn next_report(s: &mut RtcpSession) -> (Instant, Bytes) {
    for _ in 0..100 {
        let at = s.poll_timeout().expect("the session is open");
        s.handle_timeout(at);
        if let Some(packet) = s.poll_transmit() {
            return (at, packet);
        }
    }
    panic!("no report after 100 timer expiries");
}

fn ntp_of(elapsed: Duration) -> u64 {
    NtpTime::from_system(wall() + elapsed).0
}

#[test]
fn first_report_comes_after_half_the_minimum_interval_randomized_rfc3550_6_2() {
    let e = std::f64::consts::E - 1.5;
    for seed in 0..50 {
        let t0 = Instant::now();
        let mut s = session(OUR_SSRC, Duration::from_secs(5), t0, seed);
        let first = s.poll_timeout().expect("scheduled") - t0;
        let secs = first.as_secs_f64();
        assert!(
            secs >= 2.5 * 0.5 / e - 1e-6 && secs <= 2.5 * 1.5 / e + 1e-6,
            "first report after {secs} s"
        );
        s.handle_timeout(t0 + first - MS);
        assert!(s.poll_transmit().is_none(), "nothing before the deadline");
    }
}

#[test]
fn reports_follow_at_randomized_intervals_of_the_5_second_minimum_rfc3550_6_3() {
    let e = std::f64::consts::E - 1.5;
    let t0 = Instant::now();
    let mut s = session(OUR_SSRC, DEFAULT_MIN_INTERVAL, t0, 7);
    let (mut last, _) = next_report(&mut s);
    let mut gaps = Vec::new();
    while last < t0 + Duration::from_secs(600) {
        let (at, _) = next_report(&mut s);
        gaps.push((at - last).as_secs_f64());
        last = at;
    }
    // With timer reconsideration the gap lies in [0.5, 1.5] · 5 s / (e − 3/2).
    for g in &gaps {
        assert!(*g >= 2.5 / e - 1e-6 && *g <= 7.5 / e + 1e-6, "gap {g}");
    }
    let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
    assert!(mean > 4.0 && mean < 6.0, "mean interval {mean} s");
    assert_eq!(s.stats().reports_sent, gaps.len() as u64 + 1);
}

#[test]
fn a_short_minimum_interval_is_honoured_for_tests() {
    let t0 = Instant::now();
    let mut s = session(OUR_SSRC, Duration::from_millis(200), t0, 3);
    let mut count = 0;
    while next_report(&mut s).0 < t0 + Duration::from_secs(2) {
        count += 1;
    }
    assert!((8..=20).contains(&count), "{count} reports in 2 s");
}

#[test]
fn sender_report_carries_ntp_and_rtp_time_of_one_instant_and_our_counts_rfc3550_6_4_1() {
    let t0 = Instant::now();
    let mut s = session(OUR_SSRC, DEFAULT_MIN_INTERVAL, t0, 1);
    for _ in 0..3 {
        s.on_rtp_sent(160);
    }
    s.on_rtp_sent(4); // a telephone-event packet
    s.set_rtp_clock(1_000, t0 + Duration::from_secs(1));
    let (at, datagram) = next_report(&mut s);
    let packets = parse(&datagram);
    let sr = sender_report(&packets).expect("we sent RTP, so an SR");
    assert_eq!(sr.ssrc, OUR_SSRC);
    assert_eq!(sr.ntp_time, ntp_of(at - t0));
    let expected_rtp =
        1_000 + ((at - t0 - Duration::from_secs(1)).as_nanos() * 8000 / 1_000_000_000) as u32;
    assert_eq!(sr.rtp_time, expected_rtp);
    assert_eq!((sr.packet_count, sr.octet_count), (4, 484));
    assert!(sr.reports.is_empty(), "nothing received, no report block");
    // SDES with our CNAME follows (§6.1).
    let sdes = packets[1]
        .as_any()
        .downcast_ref::<SourceDescription>()
        .expect("SDES second");
    assert_eq!(sdes.chunks[0].source, OUR_SSRC);
    assert_eq!(sdes.chunks[0].items[0].sdes_type, SdesType::SdesCname);
    assert_eq!(&sdes.chunks[0].items[0].text[..], b"cname-11111111");
    assert_eq!(packets.len(), 2);
}

#[test]
fn rtp_timestamp_wraps_and_extrapolates_backwards_too() {
    let t0 = Instant::now();
    let mut s = session(OUR_SSRC, DEFAULT_MIN_INTERVAL, t0, 1);
    s.set_rtp_clock(u32::MAX - 79, t0 + Duration::from_secs(60));
    assert_eq!(s.rtp_time(t0 + Duration::from_secs(60) + 20 * MS), 80);
    assert_eq!(
        s.rtp_time(t0 + Duration::from_secs(60) - 10 * MS),
        u32::MAX - 159
    );
}

/// Receives RTP from the peer: `seqs` at 20 ms spacing with timestamps
/// following the sequence numbers, each `extra` late.
fn receive_rtp(
    s: &mut RtcpSession,
    t: Instant,
    seqs: impl IntoIterator<Item = u16>,
    extra: impl Fn(u16) -> Duration,
) {
    for seq in seqs {
        let arrival = t + 20 * MS * u32::from(seq) + extra(seq);
        s.on_rtp_received(PEER_SSRC, seq, 8000 + u32::from(seq) * 160, true, arrival);
    }
}

#[test]
fn receiver_report_block_has_loss_highest_seq_jitter_lsr_and_dlsr() {
    let t0 = Instant::now();
    let mut s = session(OUR_SSRC, DEFAULT_MIN_INTERVAL, t0, 2);
    // 50 packets, every tenth lost, odd ones 4 ms late (jitter 32 units).
    receive_rtp(&mut s, t0, (0..50).filter(|q| q % 10 != 5), |q| {
        if q % 2 == 1 { 4 * MS } else { Duration::ZERO }
    });
    // The peer's SR, with an NTP time of its own.
    let peer_ntp: u64 = 0xE000_0001_2345_6789;
    let sr = SenderReport {
        ssrc: PEER_SSRC,
        ntp_time: peer_ntp,
        ..Default::default()
    };
    let sr_arrival = t0 + Duration::from_millis(1000);
    s.handle_packet(&sr.marshal().expect("valid SR"), sr_arrival)
        .expect("SR is accepted");
    let (at, datagram) = next_report(&mut s);
    assert!(at > sr_arrival, "the report follows the SR");
    let packets = parse(&datagram);
    let rr = receiver_report(&packets).expect("we sent nothing: RR");
    assert_eq!(rr.ssrc, OUR_SSRC);
    let block = &rr.reports[0];
    assert_eq!(block.ssrc, PEER_SSRC);
    // 50 expected, 45 received: 5/50 of 256 = 25.
    assert_eq!(block.fraction_lost, 25);
    assert_eq!(block.total_lost, 5);
    assert_eq!(block.last_sequence_number, 49);
    // Alternating 0/4 ms delay: |D| = 32 units, J converges towards 32.
    assert!(block.jitter > 25 && block.jitter <= 32, "{}", block.jitter);
    assert_eq!(block.last_sender_report, 0x0001_2345);
    let dlsr = f64::from(block.delay) / 65536.0;
    assert!(
        (dlsr - (at - sr_arrival).as_secs_f64()).abs() < 1.0 / 65536.0 + 1e-9,
        "DLSR {dlsr}"
    );
    let local = s.stats().local.expect("reception summary");
    assert_eq!(local.cumulative_lost, 5);
    assert!((local.fraction_lost - 25.0 / 256.0).abs() < 1e-9);
}

#[test]
fn no_block_for_a_source_silent_since_the_last_report() {
    let t0 = Instant::now();
    let mut s = session(OUR_SSRC, DEFAULT_MIN_INTERVAL, t0, 5);
    receive_rtp(&mut s, t0, 0..10, |_| Duration::ZERO);
    let (_, first) = next_report(&mut s);
    assert_eq!(
        receiver_report(&parse(&first)).expect("RR").reports.len(),
        1
    );
    let (_, second) = next_report(&mut s);
    assert!(
        receiver_report(&parse(&second))
            .expect("RR")
            .reports
            .is_empty()
    );
}

#[test]
fn round_trip_time_is_a_minus_lsr_minus_dlsr_rfc3550_6_4_1() {
    let t0 = Instant::now();
    let mut s = session(OUR_SSRC, DEFAULT_MIN_INTERVAL, t0, 4);
    s.on_rtp_sent(160);
    let (sent_at, _) = next_report(&mut s);
    let lsr = NtpTime(ntp_of(sent_at - t0)).middle32();
    // The peer held our SR for 1.25 s; its report arrives 1.25 s + 40 ms later.
    let rr = ReceiverReport {
        ssrc: PEER_SSRC,
        reports: vec![ReceptionReport {
            ssrc: OUR_SSRC,
            fraction_lost: 64,
            total_lost: 0xFF_FFFF, // −1: a duplicate
            last_sequence_number: 70_000,
            jitter: 80,
            last_sender_report: lsr,
            delay: 65536 + 16384,
        }],
        ..Default::default()
    };
    let arrival = sent_at + Duration::from_millis(1290);
    s.handle_packet(&rr.marshal().expect("valid RR"), arrival)
        .expect("RR is accepted");
    let stats = s.stats();
    let rtt = stats.rtt_ms.expect("an RTT");
    assert!((rtt - 40.0).abs() < 0.05, "RTT {rtt} ms");
    let remote = stats.remote.expect("the peer's view of our stream");
    assert_eq!(remote.fraction_lost, 0.25);
    assert_eq!(remote.cumulative_lost, -1);
    assert_eq!(remote.highest_seq, 70_000);
    assert_eq!(remote.jitter_ms, 10.0);
    // A block with LSR 0 (no SR seen yet) gives no RTT.
    let mut fresh = session(OUR_SSRC, DEFAULT_MIN_INTERVAL, t0, 4);
    let mut no_lsr = rr.clone();
    no_lsr.reports[0].last_sender_report = 0;
    fresh
        .handle_packet(&no_lsr.marshal().expect("valid RR"), arrival)
        .expect("RR is accepted");
    assert_eq!(fresh.stats().rtt_ms, None);
    assert!(fresh.stats().remote.is_some());
}

#[test]
fn blocks_about_other_sources_are_not_about_us() {
    let t0 = Instant::now();
    let mut s = session(OUR_SSRC, DEFAULT_MIN_INTERVAL, t0, 4);
    let rr = ReceiverReport {
        ssrc: PEER_SSRC,
        reports: vec![ReceptionReport {
            ssrc: 0x3333_3333,
            last_sender_report: 1,
            ..Default::default()
        }],
        ..Default::default()
    };
    s.handle_packet(&rr.marshal().expect("valid RR"), t0)
        .expect("RR is accepted");
    assert_eq!((s.stats().remote, s.stats().rtt_ms), (None, None));
}

#[test]
fn bye_ends_the_session_with_report_sdes_and_bye_rfc3550_6_6() {
    let t0 = Instant::now();
    let mut s = session(OUR_SSRC, DEFAULT_MIN_INTERVAL, t0, 6);
    s.on_rtp_sent(160);
    s.bye(t0 + Duration::from_secs(1));
    let packets = parse(&s.poll_transmit().expect("BYE goes out at once"));
    assert!(sender_report(&packets).is_some());
    assert!(
        packets[1]
            .as_any()
            .downcast_ref::<SourceDescription>()
            .is_some()
    );
    let bye = packets[2]
        .as_any()
        .downcast_ref::<Goodbye>()
        .expect("BYE last");
    assert_eq!(bye.sources, vec![OUR_SSRC]);
    assert_eq!(s.poll_timeout(), None);
    s.handle_timeout(t0 + Duration::from_secs(60));
    s.bye(t0 + Duration::from_secs(61));
    assert!(s.poll_transmit().is_none(), "nothing after BYE");
}

#[test]
fn peer_cname_and_bye_are_recorded() {
    let t0 = Instant::now();
    let mut peer = session(PEER_SSRC, DEFAULT_MIN_INTERVAL, t0, 8);
    let mut s = session(OUR_SSRC, DEFAULT_MIN_INTERVAL, t0, 9);
    peer.bye(t0);
    let datagram = peer.poll_transmit().expect("BYE");
    s.handle_packet(&datagram, t0).expect("compound accepted");
    let stats = s.stats();
    assert_eq!(stats.peer_cname.as_deref(), Some("cname-22222222"));
    assert!(stats.bye_received);
    assert_eq!(stats.reports_received, 1);
}

#[test]
fn malformed_datagrams_are_errors_not_panics() {
    let t0 = Instant::now();
    let mut s = session(OUR_SSRC, DEFAULT_MIN_INTERVAL, t0, 10);
    for bad in [&[][..], &[0x80, 200], &[0x80, 201, 0, 9, 1, 2, 3, 4]] {
        assert!(s.handle_packet(bad, t0).is_err(), "{bad:?}");
    }
    assert!(matches!(
        s.handle_packet(&[0x40, 201, 0, 1, 1, 2, 3, 4], t0),
        Err(RtcpError::BadVersion { version: 1, .. })
    ));
    assert!(matches!(
        s.handle_packet(&[0x80, 201, 0, 1, 1, 2, 3], t0),
        Err(RtcpError::Truncated { offset: 0 })
    ));
    // Random packets of every RTCP type (192–223), with lengths right and
    // wrong, alone or in pairs: feedback and XR packets included, whose
    // parsers in the rtcp crate panic on some inputs.
    let mut rng = StdRng::seed_from_u64(11);
    for _ in 0..20_000 {
        let words = rng.random_range(0..12usize);
        let mut d: Vec<u8> = (0..4 + words * 4).map(|_| rng.random()).collect();
        d[0] = 0x80 | (d[0] & 0x3F);
        d[1] = rng.random_range(192..=223);
        let len = if rng.random_bool(0.8) {
            words as u16
        } else {
            rng.random()
        };
        d[2..4].copy_from_slice(&len.to_be_bytes());
        if rng.random_bool(0.3) {
            let again = d.clone();
            d.extend_from_slice(&again);
        }
        let _ = s.handle_packet(&d, t0);
    }
    assert!(s.stats().malformed >= 5);
}

#[test]
fn feedback_and_xr_packets_in_a_compound_are_skipped() {
    let t0 = Instant::now();
    let mut s = session(OUR_SSRC, DEFAULT_MIN_INTERVAL, t0, 15);
    let mut peer = session(PEER_SSRC, DEFAULT_MIN_INTERVAL, t0, 16);
    peer.bye(t0);
    let mut compound = peer.poll_transmit().expect("RR + SDES + BYE").to_vec();
    // A PSFB FIR (206, FMT 4) with half an FCI entry: the rtcp crate's
    // FullIntraRequest::unmarshal panics on it (rtcp 0.17.2).
    compound.extend_from_slice(&[0x84, 206, 0, 3, 0, 0, 0, 1, 0, 0, 0, 2, 9, 9, 9, 9]);
    s.handle_packet(&compound, t0)
        .expect("the compound is used");
    assert!(s.stats().bye_received);
    assert_eq!(s.stats().peer_cname.as_deref(), Some("cname-22222222"));
}

#[test]
fn forged_sources_cannot_grow_the_source_table_without_bound() {
    let t0 = Instant::now();
    let mut s = session(OUR_SSRC, DEFAULT_MIN_INTERVAL, t0, 14);
    s.on_rtp_received(PEER_SSRC, 1, 160, true, t0);
    for ssrc in 0..10_000u32 {
        let rr = ReceiverReport {
            ssrc: 0x4000_0000 + ssrc,
            ..Default::default()
        };
        s.handle_packet(&rr.marshal().expect("valid RR"), t0)
            .expect("RR is accepted");
        s.on_rtp_received(0x5000_0000 + ssrc, 1, 160, true, t0);
    }
    assert_eq!(s.remotes.len(), MAX_REMOTES);
    assert!(s.remotes.contains_key(&PEER_SSRC), "the real peer stays");
    // A report still goes out with a block about the peer.
    let (_, datagram) = next_report(&mut s);
    let packets = parse(&datagram);
    let rr = receiver_report(&packets).expect("RR");
    assert!(rr.reports.iter().any(|b| b.ssrc == PEER_SSRC));
}

#[test]
fn cname_is_16_base64_characters_from_96_random_bits_rfc7022() {
    let a = random_cname(&mut StdRng::seed_from_u64(1));
    let b = random_cname(&mut StdRng::seed_from_u64(2));
    assert_eq!(a.len(), 16);
    assert_ne!(a, b);
    assert!(
        a.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/')
    );
}

/// Two sessions exchange RTP and RTCP over a fake network with a fixed
/// one-way delay and loss from A to B; each learns the RTT and A learns,
/// from B's reports, how much of its stream was lost.
#[test]
fn two_sessions_learn_rtt_and_the_loss_of_the_other_direction() {
    let t0 = Instant::now();
    let delay = 15 * MS;
    let min = Duration::from_secs(1);
    let mut a = session(OUR_SSRC, min, t0, 12);
    let mut b = session(PEER_SSRC, min, t0, 13);
    let mut in_flight: Vec<(Instant, bool, Bytes)> = Vec::new();
    let mut dropped = 0;
    for tick in 0..1500u32 {
        let now = t0 + 20 * MS * tick;
        let seq = tick as u16;
        let ts = tick * 160;
        a.on_rtp_sent(160);
        b.on_rtp_sent(160);
        a.set_rtp_clock(ts + 160, now);
        b.set_rtp_clock(ts + 160, now);
        if tick % 20 == 7 {
            dropped += 1;
        } else {
            b.on_rtp_received(OUR_SSRC, seq, ts, true, now + delay);
        }
        a.on_rtp_received(PEER_SSRC, seq, ts, true, now + delay);
        for (to_b, s) in [(true, &mut a), (false, &mut b)] {
            s.handle_timeout(now);
            while let Some(d) = s.poll_transmit() {
                in_flight.push((now + delay, to_b, d));
            }
        }
        let due: Vec<_> = in_flight
            .iter()
            .filter(|(at, ..)| *at <= now)
            .cloned()
            .collect();
        in_flight.retain(|(at, ..)| *at > now);
        for (at, to_b, d) in due {
            let rx = if to_b { &mut b } else { &mut a };
            rx.handle_packet(&d, at).expect("valid compound");
        }
    }
    for s in [&a, &b] {
        let rtt = s.stats().rtt_ms.expect("RTT known");
        // Twice the one-way delay, to the 1/65536 s resolution of LSR/DLSR.
        assert!((rtt - 30.0).abs() < 0.1, "RTT {rtt}");
        assert!(s.stats().reports_received >= 20);
    }
    let seen_by_b = a.stats().remote.expect("B reported on A's stream");
    assert!(
        (seen_by_b.cumulative_lost - dropped).abs() <= 1,
        "{seen_by_b:?} vs {dropped}"
    );
    assert!(seen_by_b.fraction_lost > 0.0 && seen_by_b.fraction_lost < 0.1);
    assert_eq!(
        b.stats().local.expect("B receives").cumulative_lost,
        dropped
    );
    assert_eq!(a.stats().remote.unwrap().jitter_ms, 0.0);
    assert_eq!(
        b.stats().remote.expect("A reported on B").cumulative_lost,
        0
    );
}
