//! Offers and answers from real equipment (tests/data/sdp/README-level notes
//! are in each test), answered the way RFC 3264 asks.

use std::net::{IpAddr, SocketAddr};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sipline::media::codec::CodecKind;
use sipline::sdp::{
    Direction, LocalMedia, NegState, NegotiatedMedia, Negotiator, Rejection, SdpError,
    UnresolvedRemote, apply_answer, create_answer, create_offer,
};

const OUR_ADDR: &str = "198.51.100.5";
const OUR_PORT: u16 = 40000;

fn local() -> LocalMedia {
    LocalMedia {
        addr: OUR_ADDR.parse().unwrap(),
        rtp_port: OUR_PORT,
        rtcp_port: None,
        rtcp_mux: true,
        codecs: vec![CodecKind::Pcmu, CodecKind::Pcma],
        telephone_event: true,
        direction: Direction::SendRecv,
        ptime_ms: 20,
    }
}

fn case(name: &str) -> String {
    let path = format!("{}/tests/data/sdp/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("test file {path}: {e}"))
}

fn answer(offer: &str) -> (String, NegotiatedMedia) {
    create_answer(offer.as_bytes(), &local(), 7, 1).expect("offer is answerable")
}

fn mlines(sdp: &str) -> Vec<&str> {
    sdp.lines().filter(|l| l.starts_with("m=")).collect()
}

fn has_line(sdp: &str, line: &str) -> bool {
    sdp.lines().any(|l| l == line)
}

fn addr(s: &str) -> Option<SocketAddr> {
    Some(s.parse().unwrap())
}

#[test]
fn answers_use_crlf_and_the_mandatory_session_lines() {
    let (sdp, _) = answer(&case("01-cisco-7965-offer-media-level-c.sdp"));
    assert!(sdp.ends_with("\r\n"));
    assert_eq!(sdp.matches('\n').count(), sdp.matches("\r\n").count());
    let head: Vec<&str> = sdp.lines().take(5).collect();
    assert_eq!(
        head,
        [
            "v=0",
            "o=- 7 1 IN IP4 198.51.100.5",
            "s=-",
            "c=IN IP4 198.51.100.5",
            "t=0 0"
        ]
    );
}

#[test]
fn cisco_media_level_c_gives_pcmu_and_te_101_with_offered_events() {
    let (sdp, media) = answer(&case("01-cisco-7965-offer-media-level-c.sdp"));
    assert_eq!(mlines(&sdp), ["m=audio 40000 RTP/AVP 0 101"]);
    assert!(has_line(&sdp, "a=rtpmap:101 telephone-event/8000"));
    assert!(has_line(&sdp, "a=fmtp:101 0-15"));
    assert!(has_line(&sdp, "a=sendrecv"));
    assert!(!sdp.contains("annexb") && !sdp.contains("mode=20"));
    assert_eq!(media.remote_rtp, addr("192.0.2.10:20096"));
    assert_eq!(media.remote_rtcp, addr("192.0.2.10:20097"));
    assert_eq!(
        (media.codec, media.payload_type, media.clock_rate),
        (CodecKind::Pcmu, 0, 8000)
    );
    assert_eq!(media.telephone_event, Some(101));
    assert_eq!(media.ptime_ms, 20);
    assert_eq!(media.direction, Direction::SendRecv);
}

#[test]
fn initial_offer_on_old_style_hold_is_accepted_and_sends_no_rtp() {
    let (sdp, media) = answer(&case("02-pbx-initial-invite-hold-c0000.sdp"));
    assert_eq!(mlines(&sdp), ["m=audio 40000 RTP/AVP 0 101"]);
    assert!(has_line(&sdp, "c=IN IP4 198.51.100.5"));
    assert_eq!(media.remote_rtp, None);
    assert_eq!(media.remote_rtcp, None);
    assert_eq!(media.telephone_event, Some(101));
    // RFC 3264 §8.4: c=0.0.0.0 means the peer receives nothing; we mirror the hold.
    assert_eq!(media.direction, Direction::RecvOnly);
    assert!(has_line(&sdp, "a=recvonly"));
}

#[test]
fn pcma_first_gets_telephone_event_at_8000_not_the_48000_one() {
    let (sdp, media) = answer(&case("03-sbc-pcma-opus-two-telephone-events.sdp"));
    assert_eq!(mlines(&sdp), ["m=audio 40000 RTP/AVP 8 101"]);
    assert!(has_line(&sdp, "a=rtpmap:101 telephone-event/8000"));
    assert!(has_line(&sdp, "a=fmtp:101 0-16"));
    assert!(!sdp.contains("97") && !sdp.contains("opus"));
    assert!(!sdp.contains("rtcp-mux"));
    assert_eq!((media.codec, media.payload_type), (CodecKind::Pcma, 8));
    assert_eq!(media.telephone_event, Some(101));
    // RFC 3605: a=rtcp overrides port + 1 (here it is the same port, on purpose).
    assert_eq!(media.remote_rtcp, addr("203.0.113.20:11493"));
}

#[test]
fn linphone_offer_gets_pcmu_with_te_100_and_ignores_rtcp_xr() {
    let (sdp, media) = answer(&case("05-linphone-android-offer-rtcpxr.sdp"));
    assert_eq!(mlines(&sdp), ["m=audio 40000 RTP/AVP 0 100"]);
    assert!(has_line(&sdp, "a=rtpmap:100 telephone-event/8000"));
    // RFC 4733 §2.4.1: no fmtp in the offer means 0-15.
    assert!(has_line(&sdp, "a=fmtp:100 0-15"));
    assert!(!sdp.contains("rtcp-xr") && !sdp.contains("annexb"));
    assert_eq!(media.remote_rtp, addr("192.0.2.33:7076"));
    assert_eq!(media.telephone_event, Some(100));
}

#[test]
fn chrome_dtls_srtp_offer_is_not_acceptable() {
    let offer = case("07-chrome-webrtc-offer-bundle-rtcpmux.sdp");
    assert_eq!(
        create_answer(offer.as_bytes(), &local(), 7, 1),
        Err(SdpError::NotAcceptable {
            rejected: vec![Rejection::UnsupportedProto, Rejection::NotAudio]
        })
    );
}

#[test]
fn answer_listing_telephone_event_first_still_selects_pcmu() {
    let media = apply_answer(
        case("12-pjsip-answer-video-rejected-te-first.sdp").as_bytes(),
        &local(),
    )
    .unwrap();
    assert_eq!((media.codec, media.payload_type), (CodecKind::Pcmu, 0));
    assert_eq!(media.telephone_event, Some(101));
    assert_eq!(media.remote_rtp, addr("192.0.2.140:40429"));
    assert_eq!(media.remote_rtcp, addr("192.0.2.140:40430"));
}

#[test]
fn rfc4317_empty_session_name_answers_audio_and_rejects_video() {
    let (sdp, media) = answer(&case("rfc4317/2.1-alice-offer.sdp"));
    assert_eq!(
        mlines(&sdp),
        ["m=audio 40000 RTP/AVP 0", "m=video 0 RTP/AVP 31"]
    );
    assert!(has_line(&sdp, "a=rtpmap:0 PCMU/8000"));
    assert_eq!(media.telephone_event, None);
    // c= is a domain name: resolving it is the caller's I/O.
    assert_eq!(media.remote_rtp, None);
    assert_eq!(
        media.unresolved_remote,
        Some(UnresolvedRemote {
            host: "host.atlanta.example.com".into(),
            rtp_port: 49170,
            rtcp_port: 49171
        })
    );
}

#[test]
fn rfc4317_bob_answer_is_read_as_pcmu() {
    let media = apply_answer(case("rfc4317/2.1-bob-answer.sdp").as_bytes(), &local()).unwrap();
    assert_eq!((media.codec, media.payload_type), (CodecKind::Pcmu, 0));
    assert_eq!(media.telephone_event, None);
    assert_eq!(media.unresolved_remote.map(|u| u.rtp_port), Some(49174));
}

// Derived hold inputs (RFC 3264 §6.1 directions, §8.4 hold).

#[test]
fn sendonly_offer_is_answered_recvonly() {
    let offer = case("01-cisco-7965-offer-media-level-c.sdp").replace("a=sendrecv", "a=sendonly");
    let (sdp, media) = answer(&offer);
    assert!(has_line(&sdp, "a=recvonly"));
    assert_eq!(media.direction, Direction::RecvOnly);
    assert_eq!(media.remote_rtp, addr("192.0.2.10:20096"));
}

#[test]
fn recvonly_offer_is_answered_sendonly() {
    let offer =
        case("03-sbc-pcma-opus-two-telephone-events.sdp").replace("a=sendrecv", "a=recvonly");
    let (sdp, media) = answer(&offer);
    assert!(has_line(&sdp, "a=sendonly"));
    assert_eq!(media.direction, Direction::SendOnly);
}

#[test]
fn inactive_offer_is_answered_inactive() {
    let offer =
        case("03-sbc-pcma-opus-two-telephone-events.sdp").replace("a=sendrecv", "a=inactive");
    let (sdp, media) = answer(&offer);
    assert!(has_line(&sdp, "a=inactive"));
    assert_eq!(media.direction, Direction::Inactive);
}

#[test]
fn media_c_zero_is_old_style_hold() {
    let offer = case("01-cisco-7965-offer-media-level-c.sdp")
        .replace("c=IN IP4 192.0.2.10", "c=IN IP4 0.0.0.0");
    let (sdp, media) = answer(&offer);
    assert_eq!(mlines(&sdp), ["m=audio 40000 RTP/AVP 0 101"]);
    assert_eq!(media.remote_rtp, None);
    assert_eq!(media.direction, Direction::RecvOnly);
}

#[test]
fn media_level_direction_wins_over_session_level() {
    let offer = case("05-linphone-android-offer-rtcpxr.sdp")
        .replace("t=0 0\r\n", "t=0 0\r\na=inactive\r\n")
        .replace("a=rtpmap:96", "a=sendonly\r\na=rtpmap:96");
    let (_, media) = answer(&offer);
    assert_eq!(media.direction, Direction::RecvOnly);
}

#[test]
fn local_hold_limits_the_answer_direction() {
    let mut ours = local();
    ours.direction = Direction::SendOnly;
    let offer = case("01-cisco-7965-offer-media-level-c.sdp");
    let (sdp, media) = create_answer(offer.as_bytes(), &ours, 7, 1).unwrap();
    assert!(has_line(&sdp, "a=sendonly"));
    assert_eq!(media.direction, Direction::SendOnly);
}

// RFC 3264 §6 rules on made-up offers.

const HEAD: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n";

#[test]
fn secure_audio_is_rejected_in_place_and_plain_audio_accepted() {
    let offer = format!(
        "{HEAD}m=audio 5000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:x\r\n\
         m=audio 5002 RTP/AVP 0\r\nm=image 5004 udptl t38\r\n"
    );
    let (sdp, media) = answer(&offer);
    assert_eq!(
        mlines(&sdp),
        [
            "m=audio 0 RTP/SAVP 0",
            "m=audio 40000 RTP/AVP 0",
            "m=image 0 udptl t38"
        ]
    );
    assert_eq!(media.remote_rtp, addr("192.0.2.1:5002"));
}

#[test]
fn second_usable_audio_stream_is_rejected_with_port_0() {
    let offer = format!("{HEAD}m=audio 5000 RTP/AVP 8\r\nm=audio 5002 RTP/AVP 0\r\n");
    let (sdp, _) = answer(&offer);
    assert_eq!(
        mlines(&sdp),
        ["m=audio 40000 RTP/AVP 8", "m=audio 0 RTP/AVP 0"]
    );
}

#[test]
fn audio_offered_with_port_0_alone_is_not_acceptable() {
    let offer = format!("{HEAD}m=audio 0 RTP/AVP 0\r\n");
    assert_eq!(
        create_answer(offer.as_bytes(), &local(), 7, 1),
        Err(SdpError::NotAcceptable {
            rejected: vec![Rejection::PortZero]
        })
    );
}

#[test]
fn no_common_codec_is_not_acceptable() {
    let offer =
        format!("{HEAD}m=audio 5000 RTP/AVP 18 101\r\na=rtpmap:101 telephone-event/8000\r\n");
    assert_eq!(
        create_answer(offer.as_bytes(), &local(), 7, 1),
        Err(SdpError::NotAcceptable {
            rejected: vec![Rejection::NoCommonCodec]
        })
    );
}

#[test]
fn dynamic_payload_type_is_reused_with_rtpmap_and_channels_accepted() {
    let offer = format!(
        "{HEAD}m=audio 5000 RTP/AVP 96 97\r\na=rtpmap:96 pcmu/8000/1\r\na=rtpmap:97 TELEPHONE-EVENT/8000\r\n"
    );
    let (sdp, media) = answer(&offer);
    assert_eq!(mlines(&sdp), ["m=audio 40000 RTP/AVP 96 97"]);
    assert!(has_line(&sdp, "a=rtpmap:96 PCMU/8000"));
    assert!(has_line(&sdp, "a=rtpmap:97 telephone-event/8000"));
    assert_eq!((media.payload_type, media.telephone_event), (96, Some(97)));
}

#[test]
fn offered_rtcp_mux_is_answered_and_ptime_is_the_peers() {
    let offer = format!("{HEAD}m=audio 5000 RTP/AVP 0\r\na=rtcp-mux\r\na=ptime:30\r\n");
    let (sdp, media) = answer(&offer);
    assert!(has_line(&sdp, "a=rtcp-mux"));
    assert!(has_line(&sdp, "a=ptime:20"));
    assert_eq!(media.ptime_ms, 30);
    assert!(media.rtcp_mux);
    assert_eq!(media.remote_rtcp, addr("192.0.2.1:5000"));
}

// Bug 22 (tests/data/bugs/22-rtcp-mux-negotiation.md): rtcp-mux only when
// both sides signalled it (RFC 5761 §5.1.1), a=rtcp otherwise (RFC 3605).

fn bug22_offer() -> String {
    let path = format!(
        "{}/tests/data/bugs/22a-offer-rtcp-mux-and-rtcp.sdp",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("test file {path}: {e}"))
}

#[test]
fn bug22_a_offer_with_rtcp_mux_gets_mux_and_rtcp_goes_to_the_rtp_port() {
    let (sdp, media) = answer(&bug22_offer());
    assert!(has_line(&sdp, "a=rtcp-mux"), "{sdp}");
    assert!(!sdp.contains("a=rtcp:"), "{sdp}");
    assert!(media.rtcp_mux);
    assert_eq!(media.remote_rtp, addr("198.51.100.22:40022"));
    // RFC 5761 §5.1.3: send RTCP to the RTP port, not to a=rtcp 40023.
    assert_eq!(media.remote_rtcp, addr("198.51.100.22:40022"));
    assert_eq!(media.telephone_event, Some(101));
}

#[test]
fn bug22_a_without_mux_support_answers_no_mux_and_uses_the_offered_a_rtcp() {
    let mut ours = local();
    ours.rtcp_mux = false;
    let (sdp, media) = create_answer(bug22_offer().as_bytes(), &ours, 7, 1).unwrap();
    assert!(!sdp.contains("rtcp-mux"), "{sdp}");
    assert!(!media.rtcp_mux);
    assert_eq!(media.remote_rtcp, addr("198.51.100.22:40023"));
}

#[test]
fn bug22_b_offer_without_mux_must_not_get_mux_in_the_answer() {
    let offer = bug22_offer().replace("a=rtcp-mux\r\n", "");
    let (sdp, media) = answer(&offer);
    assert!(!sdp.contains("rtcp-mux"), "{sdp}");
    assert!(!media.rtcp_mux);
    assert_eq!(media.remote_rtcp, addr("198.51.100.22:40023"));
}

#[test]
fn bug22_c_answer_without_mux_to_our_mux_offer_means_separate_ports() {
    let offer = create_offer(&local(), 1, 1);
    assert!(has_line(&offer, "a=rtcp-mux"));
    let plain = format!("{HEAD}m=audio 5000 RTP/AVP 0\r\n");
    let media = apply_answer(plain.as_bytes(), &local()).unwrap();
    assert!(!media.rtcp_mux);
    assert_eq!(media.remote_rtcp, addr("192.0.2.1:5001"));
    let with_rtcp = format!("{HEAD}m=audio 5000 RTP/AVP 0\r\na=rtcp:6001\r\n");
    let media = apply_answer(with_rtcp.as_bytes(), &local()).unwrap();
    assert_eq!(media.remote_rtcp, addr("192.0.2.1:6001"));
}

#[test]
fn answer_with_mux_to_our_mux_offer_multiplexes() {
    let answer = format!("{HEAD}m=audio 5000 RTP/AVP 0\r\na=rtcp-mux\r\n");
    let media = apply_answer(answer.as_bytes(), &local()).unwrap();
    assert!(media.rtcp_mux);
    assert_eq!(media.remote_rtcp, addr("192.0.2.1:5000"));
}

#[test]
fn payload_types_64_to_95_rule_out_mux_rfc5761_section_4() {
    let offer = format!(
        "{HEAD}m=audio 5000 RTP/AVP 0 72\r\na=rtpmap:72 telephone-event/8000\r\na=rtcp-mux\r\n"
    );
    let (sdp, media) = answer(&offer);
    assert_eq!(media.telephone_event, Some(72));
    assert!(!sdp.contains("rtcp-mux"), "{sdp}");
    assert!(!media.rtcp_mux);
    assert_eq!(media.remote_rtcp, addr("192.0.2.1:5001"));
    let answer = format!(
        "{HEAD}m=audio 5000 RTP/AVP 0 72\r\na=rtpmap:72 telephone-event/8000\r\na=rtcp-mux\r\n"
    );
    let media = apply_answer(answer.as_bytes(), &local()).unwrap();
    assert!(!media.rtcp_mux);
}

#[test]
fn answer_adding_mux_we_did_not_offer_is_ignored() {
    let mut ours = local();
    ours.rtcp_mux = false;
    assert!(!create_offer(&ours, 1, 1).contains("rtcp-mux"));
    let answer = format!("{HEAD}m=audio 5000 RTP/AVP 0\r\na=rtcp-mux\r\n");
    let media = apply_answer(answer.as_bytes(), &ours).unwrap();
    assert!(!media.rtcp_mux);
    assert_eq!(media.remote_rtcp, addr("192.0.2.1:5001"));
}

#[test]
fn our_a_rtcp_is_written_only_when_rtcp_is_not_on_the_next_port_rfc3605() {
    let mut ours = local();
    ours.rtcp_port = Some(OUR_PORT + 1);
    assert!(!create_offer(&ours, 1, 1).contains("a=rtcp:"));
    ours.rtcp_port = Some(41234);
    assert!(has_line(&create_offer(&ours, 1, 1), "a=rtcp:41234"));
    // Answering without mux names the port too; with mux it is not needed.
    let plain = format!("{HEAD}m=audio 5000 RTP/AVP 0\r\n");
    let (sdp, _) = create_answer(plain.as_bytes(), &ours, 7, 1).unwrap();
    assert!(has_line(&sdp, "a=rtcp:41234"), "{sdp}");
    let (sdp, _) = create_answer(bug22_offer().as_bytes(), &ours, 7, 1).unwrap();
    assert!(!sdp.contains("a=rtcp:"), "{sdp}");
}

#[test]
fn ipv6_addresses_are_written_and_read() {
    let mut ours = local();
    ours.addr = "2001:db8::5".parse::<IpAddr>().unwrap();
    let offer = "v=0\r\no=- 1 1 IN IP6 2001:db8::1\r\ns=-\r\nc=IN IP6 2001:db8::1\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n";
    let (sdp, media) = create_answer(offer.as_bytes(), &ours, 7, 1).unwrap();
    assert!(has_line(&sdp, "c=IN IP6 2001:db8::5"));
    assert!(has_line(&sdp, "o=- 7 1 IN IP6 2001:db8::5"));
    assert_eq!(media.remote_rtp, addr("[2001:db8::1]:5000"));
}

// Our offer.

#[test]
fn offer_lists_pcmu_pcma_and_telephone_event_101() {
    let sdp = create_offer(&local(), 42, 3);
    let expected = "v=0\r\no=- 42 3 IN IP4 198.51.100.5\r\ns=-\r\nc=IN IP4 198.51.100.5\r\nt=0 0\r\n\
                    m=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
                    a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n\
                    a=rtcp-mux\r\n";
    assert_eq!(sdp, expected);
}

#[test]
fn answer_with_no_common_codec_or_zero_m_lines_is_an_error() {
    let zero = format!("{HEAD}m=audio 0 RTP/AVP 0\r\n");
    assert!(matches!(
        apply_answer(zero.as_bytes(), &local()),
        Err(SdpError::NotAcceptable { .. })
    ));
    let none = format!("{HEAD}a=sendrecv\r\n");
    assert_eq!(
        apply_answer(none.as_bytes(), &local()),
        Err(SdpError::MediaCountMismatch {
            offered: 1,
            answered: 0
        })
    );
}

// Round trips through the negotiator.

fn peer() -> LocalMedia {
    LocalMedia {
        addr: "203.0.113.9".parse().unwrap(),
        rtp_port: 30000,
        codecs: vec![CodecKind::Pcma, CodecKind::Pcmu],
        ..local()
    }
}

/// Runs one offer/answer from `a` to `b`; returns (a's media, b's media).
fn exchange(a: &mut Negotiator, b: &mut Negotiator) -> (NegotiatedMedia, NegotiatedMedia) {
    let offer = a.create_offer().unwrap();
    assert_eq!(a.state(), NegState::LocalOffer);
    b.receive_offer(offer.as_bytes()).unwrap();
    assert_eq!(b.state(), NegState::RemoteOffer);
    let answer = b.create_answer().unwrap();
    assert_eq!(b.state(), NegState::WaitNego);
    a.receive_answer(answer.as_bytes()).unwrap();
    assert_eq!(a.state(), NegState::WaitNego);
    (a.negotiate().unwrap(), b.negotiate().unwrap())
}

#[test]
fn round_trip_gives_matching_media_on_both_sides() {
    let mut a = Negotiator::new(local(), 1, 1);
    let mut b = Negotiator::new(peer(), 2, 1);
    let (ma, mb) = exchange(&mut a, &mut b);
    assert_eq!((a.state(), b.state()), (NegState::Done, NegState::Done));
    assert_eq!((ma.codec, ma.payload_type), (mb.codec, mb.payload_type));
    // The offerer's preference (PCMU first) wins.
    assert_eq!(ma.codec, CodecKind::Pcmu);
    assert_eq!(ma.telephone_event, Some(101));
    assert_eq!(ma.telephone_event, mb.telephone_event);
    assert_eq!(ma.remote_rtp, addr("203.0.113.9:30000"));
    assert_eq!(mb.remote_rtp, addr("198.51.100.5:40000"));
    assert_eq!((ma.ptime_ms, mb.ptime_ms), (20, 20));
    assert_eq!(
        (ma.direction, mb.direction),
        (Direction::SendRecv, Direction::SendRecv)
    );
    // Both offer and accept rtcp-mux: RTCP rides on the RTP ports.
    assert!(ma.rtcp_mux && mb.rtcp_mux);
    assert_eq!(
        (ma.remote_rtcp, mb.remote_rtcp),
        (ma.remote_rtp, mb.remote_rtp)
    );
}

#[test]
fn hold_reoffer_bumps_version_and_peer_goes_recvonly() {
    let mut a = Negotiator::new(local(), 1, 1);
    let mut b = Negotiator::new(peer(), 2, 1);
    exchange(&mut a, &mut b);
    let mut held = local();
    held.direction = Direction::SendOnly;
    a.set_local(held);
    let offer = a.create_offer().unwrap();
    assert!(has_line(&offer, "o=- 1 2 IN IP4 198.51.100.5"));
    b.receive_offer(offer.as_bytes()).unwrap();
    let answer = b.create_answer().unwrap();
    // b's answer changed too (recvonly), so its version moves.
    assert!(has_line(&answer, "o=- 2 2 IN IP4 203.0.113.9"));
    a.receive_answer(answer.as_bytes()).unwrap();
    let (ma, mb) = (a.negotiate().unwrap(), b.negotiate().unwrap());
    assert_eq!(
        (ma.direction, mb.direction),
        (Direction::SendOnly, Direction::RecvOnly)
    );
}

#[test]
fn unchanged_reoffer_keeps_the_version() {
    let mut a = Negotiator::new(local(), 1, 5);
    let mut b = Negotiator::new(peer(), 2, 1);
    exchange(&mut a, &mut b);
    let again = a.create_offer().unwrap();
    assert!(has_line(&again, "o=- 1 5 IN IP4 198.51.100.5"));
}

#[test]
fn offer_while_offer_pending_is_refused_for_491() {
    let mut a = Negotiator::new(local(), 1, 1);
    let mut b = Negotiator::new(peer(), 2, 1);
    let offer_a = a.create_offer().unwrap();
    let offer_b = b.create_offer().unwrap();
    assert_eq!(
        a.receive_offer(offer_b.as_bytes()),
        Err(SdpError::OfferPending {
            state: NegState::LocalOffer
        })
    );
    assert_eq!(
        b.create_offer(),
        Err(SdpError::OfferPending {
            state: NegState::LocalOffer
        })
    );
    // After the glare, b withdraws and answers a's offer.
    b.cancel();
    b.receive_offer(offer_a.as_bytes()).unwrap();
    assert!(b.create_answer().is_ok());
}

#[test]
fn rejected_reoffer_keeps_the_previous_session() {
    let mut a = Negotiator::new(local(), 1, 1);
    let mut b = Negotiator::new(peer(), 2, 1);
    let (_, before) = exchange(&mut a, &mut b);
    let bad = case("07-chrome-webrtc-offer-bundle-rtcpmux.sdp");
    assert!(matches!(
        b.receive_offer(bad.as_bytes()),
        Err(SdpError::NotAcceptable { .. })
    ));
    assert_eq!(b.state(), NegState::Done);
    assert_eq!(b.active(), Some(&before));
}

#[test]
fn answer_out_of_state_is_wrong_state() {
    let mut a = Negotiator::new(local(), 1, 1);
    let answer = case("12-pjsip-answer-video-rejected-te-first.sdp");
    assert!(matches!(
        a.receive_answer(answer.as_bytes()),
        Err(SdpError::WrongState {
            state: NegState::Null,
            ..
        })
    ));
}

// Bad input never panics.

#[test]
fn garbage_empty_and_truncated_bodies_are_errors() {
    let cisco = case("01-cisco-7965-offer-media-level-c.sdp");
    let bodies: Vec<Vec<u8>> = vec![
        vec![],
        b"\r\n\r\n".to_vec(),
        b"INVITE sip:x SIP/2.0".to_vec(),
        vec![0xff, 0xfe, 0x00, 0x3d],
        cisco.as_bytes()[..30].to_vec(),
        cisco.as_bytes()[..cisco.find("m=audio").unwrap() + 12].to_vec(),
    ];
    for body in bodies {
        assert!(create_answer(&body, &local(), 7, 1).is_err(), "{body:?}");
        assert!(apply_answer(&body, &local()).is_err(), "{body:?}");
    }
}

fn mutate(rng: &mut StdRng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..rng.random_range(1..8) {
        if out.is_empty() {
            break;
        }
        let at = rng.random_range(0..out.len());
        match rng.random_range(0..5) {
            0 => out[at] = rng.random(),
            1 => {
                out.remove(at);
            }
            2 => out.insert(
                at,
                *b"=: /\r\n0-9am"
                    .get(rng.random_range(0..12))
                    .unwrap_or(&b'x'),
            ),
            3 => out.truncate(at),
            _ => {
                let end = (at + rng.random_range(1..40)).min(out.len());
                out.drain(at..end);
            }
        }
    }
    out
}

#[test]
fn mutated_real_offers_never_panic() {
    let files = [
        "01-cisco-7965-offer-media-level-c.sdp",
        "02-pbx-initial-invite-hold-c0000.sdp",
        "03-sbc-pcma-opus-two-telephone-events.sdp",
        "05-linphone-android-offer-rtcpxr.sdp",
        "07-chrome-webrtc-offer-bundle-rtcpmux.sdp",
        "12-pjsip-answer-video-rejected-te-first.sdp",
        "rfc4317/2.1-alice-offer.sdp",
    ];
    let mut rng = StdRng::seed_from_u64(0x5d9);
    for name in files {
        let original = case(name);
        for _ in 0..500 {
            let body = mutate(&mut rng, original.as_bytes());
            let _ = create_answer(&body, &local(), 7, 1);
            let _ = apply_answer(&body, &local());
            let mut n = Negotiator::new(local(), 1, 1);
            if n.receive_offer(&body).is_ok() {
                let answer = n
                    .create_answer()
                    .expect("an offer that was checked can be answered");
                // Our own answer must always be readable by our parser.
                let read_back = apply_answer(answer.as_bytes(), &local());
                assert!(
                    !matches!(read_back, Err(SdpError::Parse { .. })),
                    "{answer}"
                );
            }
        }
    }
}

#[test]
fn garbage_connection_addresses_are_not_acceptable_rfc4566_section_5_7() {
    let offers = [
        // Session-level c=.
        "v=0\r\no=- 1 1 IN IP6 ::1\r\ns=-\r\nc=IN IP6 zzz\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n",
        // Media-level c=.
        "v=0\r\no=- 1 1 IN IP4 198.51.100.1\r\ns=-\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\nc=IN IP4 999.1.1.1\r\n",
        "v=0\r\no=- 1 1 IN IP4 198.51.100.1\r\ns=-\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\nc=IN IP6 fe80::zz\r\n",
    ];
    for sdp in offers {
        let expected = Err(SdpError::NotAcceptable {
            rejected: vec![Rejection::BadAddress],
        });
        assert_eq!(
            create_answer(sdp.as_bytes(), &local(), 7, 1).map(|_| ()),
            expected,
            "offer {sdp:?}"
        );
        assert_eq!(
            apply_answer(sdp.as_bytes(), &local()).map(|_| ()),
            expected,
            "answer {sdp:?}"
        );
    }
    let error = create_answer(offers[0].as_bytes(), &local(), 7, 1).unwrap_err();
    assert_eq!(
        error.to_string(),
        "no acceptable audio stream: the connection address (c=) is neither an IP address nor a domain name"
    );
    // What the parser itself refuses in the session part reads as such.
    let refused = "v=0\r\no=- 1 1 IN IP4 198.51.100.1\r\ns=-\r\nc=IN IP4 999.1.1.1\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n";
    for error in [
        create_answer(refused.as_bytes(), &local(), 7, 1).map(|_| ()),
        apply_answer(refused.as_bytes(), &local()).map(|_| ()),
    ] {
        assert_eq!(
            error.unwrap_err().to_string(),
            "SDP cannot be parsed: the connection address (c=) is not a valid address (line 4)"
        );
    }
    // A domain name is still allowed (RFC 4566 §5.7).
    let named = "v=0\r\no=- 1 1 IN IP4 198.51.100.1\r\ns=-\r\nc=IN IP4 media.example.com\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n";
    let (_, media) = answer(named);
    assert_eq!(
        media.unresolved_remote.map(|u| u.host),
        Some("media.example.com".to_string())
    );
}

#[test]
fn sdp_errors_read_as_sentences() {
    let no_codec = format!("{HEAD}m=audio 5000 RTP/AVP 18\r\n");
    assert_eq!(
        create_answer(no_codec.as_bytes(), &local(), 7, 1)
            .unwrap_err()
            .to_string(),
        "no acceptable audio stream: no codec in common"
    );
    let two = format!("{HEAD}m=video 5002 RTP/AVP 31\r\nm=audio 0 RTP/AVP 0\r\n");
    assert_eq!(
        create_answer(two.as_bytes(), &local(), 7, 1)
            .unwrap_err()
            .to_string(),
        "no acceptable audio stream: m=1: not audio; m=2: port 0 (stream refused)"
    );
    let bad_line = "v=0\r\nthis is not sdp\r\n";
    let text = create_answer(bad_line.as_bytes(), &local(), 7, 1)
        .unwrap_err()
        .to_string();
    assert_eq!(
        text,
        "SDP cannot be parsed: a line is not <letter>=<value> (line 2)"
    );
    let empty = create_answer(b"", &local(), 7, 1).unwrap_err().to_string();
    assert_eq!(empty, "SDP cannot be parsed: the body is empty");
    let pending = SdpError::OfferPending {
        state: NegState::LocalOffer,
    };
    assert_eq!(
        pending.to_string(),
        "an offer is already pending (our offer awaits its answer)"
    );
}
