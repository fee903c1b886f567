//! Opus in SDP (RFC 7587 §7): our offer, answers to real offers carrying
//! `opus/48000/2` with various `a=fmtp`, and telephone-event at the clock
//! rate of the chosen codec (RFC 4733 §7.1.1).

use sipline::media::codec::CodecKind;
use sipline::media::codec::opus::{OpusConfig, OpusParams};
use sipline::sdp::{
    Direction, LocalMedia, NegotiatedMedia, Negotiator, apply_answer, create_answer, create_offer,
};

fn local(codecs: &[CodecKind]) -> LocalMedia {
    LocalMedia {
        addr: "198.51.100.5".parse().unwrap(),
        rtp_port: 40000,
        codecs: codecs.to_vec(),
        telephone_event: true,
        direction: Direction::SendRecv,
        ptime_ms: 20,
        rtcp_port: None,
        rtcp_mux: false,
    }
}

const DEFAULT_ORDER: [CodecKind; 3] = [CodecKind::Opus, CodecKind::Pcmu, CodecKind::Pcma];

fn case(name: &str) -> String {
    let path = format!("{}/tests/data/sdp/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("test file {path}: {e}"))
}

fn answer(offer: &str, codecs: &[CodecKind]) -> (String, NegotiatedMedia) {
    create_answer(offer.as_bytes(), &local(codecs), 7, 1).expect("offer is answerable")
}

fn media_lines(sdp: &str) -> Vec<&str> {
    sdp.lines().skip_while(|l| !l.starts_with("m=")).collect()
}

#[test]
fn offer_lists_opus_first_with_fmtp_and_telephone_event_per_clock_rate() {
    let sdp = create_offer(&local(&DEFAULT_ORDER), 9, 1);
    assert_eq!(
        media_lines(&sdp),
        [
            "m=audio 40000 RTP/AVP 96 0 8 97 101",
            "a=rtpmap:96 opus/48000/2",
            "a=fmtp:96 useinbandfec=1; maxplaybackrate=48000; sprop-maxcapturerate=48000; stereo=0; sprop-stereo=0",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:8 PCMA/8000",
            "a=rtpmap:97 telephone-event/48000",
            "a=fmtp:97 0-16",
            "a=rtpmap:101 telephone-event/8000",
            "a=fmtp:101 0-16",
            "a=ptime:20",
            "a=sendrecv",
        ]
    );
}

#[test]
fn g711_only_offer_is_unchanged_and_has_one_telephone_event() {
    let sdp = create_offer(&local(&[CodecKind::Pcmu, CodecKind::Pcma]), 9, 1);
    assert!(sdp.contains("m=audio 40000 RTP/AVP 0 8 101\r\n"), "{sdp}");
    assert!(!sdp.contains("opus") && !sdp.contains("/48000"));
}

#[test]
fn sbc_offering_pcma_before_opus_gets_pcma_and_the_8000_telephone_event() {
    let (sdp, media) = answer(
        &case("03-sbc-pcma-opus-two-telephone-events.sdp"),
        &DEFAULT_ORDER,
    );
    assert_eq!((media.codec, media.payload_type), (CodecKind::Pcma, 8));
    assert_eq!(media.telephone_event, Some(101));
    assert_eq!(media.opus, None);
    assert!(sdp.contains("m=audio 40000 RTP/AVP 8 101\r\n"), "{sdp}");
    assert!(sdp.contains("a=rtpmap:101 telephone-event/8000\r\n"));
}

#[test]
fn sbc_offer_answered_with_opus_uses_its_numbers_and_the_48000_telephone_event() {
    let (sdp, media) = answer(
        &case("03-sbc-pcma-opus-two-telephone-events.sdp"),
        &[CodecKind::Opus, CodecKind::Pcmu],
    );
    assert_eq!(
        (media.codec, media.payload_type, media.clock_rate),
        (CodecKind::Opus, 96, 48000)
    );
    assert_eq!(media.telephone_event, Some(97));
    assert_eq!(media.ptime_ms, 20);
    assert!(media.opus.expect("opus params").use_inband_fec);
    assert_eq!(
        media_lines(&sdp)[..5],
        [
            "m=audio 40000 RTP/AVP 96 97",
            "a=rtpmap:96 opus/48000/2",
            "a=fmtp:96 useinbandfec=1; maxplaybackrate=48000; sprop-maxcapturerate=48000; stereo=0; sprop-stereo=0",
            "a=rtpmap:97 telephone-event/48000",
            "a=fmtp:97 0-15",
        ]
    );
}

#[test]
fn linphone_offer_with_opus_first_gets_opus_and_its_telephone_event_101_at_48000() {
    let (sdp, media) = answer(
        &case("05-linphone-android-offer-rtcpxr.sdp"),
        &DEFAULT_ORDER,
    );
    assert_eq!((media.codec, media.payload_type), (CodecKind::Opus, 96));
    assert_eq!(media.telephone_event, Some(101));
    assert!(sdp.contains("m=audio 40000 RTP/AVP 96 101\r\n"), "{sdp}");
    assert!(sdp.contains("a=rtpmap:101 telephone-event/48000\r\n"));
    assert!(!sdp.contains("speex"));
}

#[test]
fn linphone_offer_without_opus_on_our_side_falls_back_to_pcmu_with_the_8000_event() {
    let (_, media) = answer(
        &case("05-linphone-android-offer-rtcpxr.sdp"),
        &[CodecKind::Pcmu, CodecKind::Pcma],
    );
    assert_eq!(
        (media.codec, media.telephone_event),
        (CodecKind::Pcmu, Some(100))
    );
}

/// A browser-style offer on plain RTP/AVP: `minptime=10;useinbandfec=1`,
/// other numbers, and an `a=ptime:40` that Opus does not need to follow.
const BROWSER_STYLE: &str = "v=0\r\n\
o=- 6851975412855494469 2 IN IP4 192.0.2.77\r\n\
s=-\r\n\
c=IN IP4 192.0.2.77\r\n\
t=0 0\r\n\
m=audio 5004 RTP/AVP 111 9 0 8 110 126\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=fmtp:111 minptime=10;useinbandfec=1;maxplaybackrate=16000;maxaveragebitrate=20000;stereo=1\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:110 telephone-event/48000\r\n\
a=rtpmap:126 telephone-event/8000\r\n\
a=ptime:40\r\n";

#[test]
fn browser_style_fmtp_is_read_and_limits_our_encoder() {
    let (sdp, media) = answer(BROWSER_STYLE, &DEFAULT_ORDER);
    assert_eq!((media.codec, media.payload_type), (CodecKind::Opus, 111));
    assert_eq!(media.telephone_event, Some(110));
    assert_eq!(media.ptime_ms, 20, "Opus is sent in 20 ms frames");
    let params = media.opus.expect("opus params");
    assert_eq!(
        params,
        OpusParams {
            max_playback_rate: Some(16000),
            max_average_bitrate: Some(20000),
            use_inband_fec: true,
            stereo: true,
        }
    );
    let ours = OpusConfig::default().limited_by(&params);
    assert_eq!((ours.bitrate, ours.max_playback_rate), (20000, 16000));
    assert!(sdp.contains("m=audio 40000 RTP/AVP 111 110\r\n"), "{sdp}");
    assert!(sdp.contains("a=rtpmap:111 opus/48000/2\r\n"));
    // Our fmtp is our own, never the peer's echoed back.
    assert!(!sdp.contains("minptime"));
}

#[test]
fn opus_without_channel_count_and_in_upper_case_is_still_opus() {
    let offer = BROWSER_STYLE.replace("opus/48000/2", "OPUS/48000");
    let (_, media) = answer(&offer, &DEFAULT_ORDER);
    assert_eq!((media.codec, media.payload_type), (CodecKind::Opus, 111));
}

#[test]
fn opus_at_another_clock_rate_is_not_opus() {
    let offer = BROWSER_STYLE.replace("opus/48000/2", "opus/16000/2");
    let (_, media) = answer(&offer, &DEFAULT_ORDER);
    assert_eq!(media.codec, CodecKind::Pcmu);
    assert_eq!(media.telephone_event, Some(126));
}

#[test]
fn opus_offer_with_only_an_8000_telephone_event_gets_no_dtmf() {
    let offer = BROWSER_STYLE.replace("a=rtpmap:110 telephone-event/48000\r\n", "");
    let (sdp, media) = answer(&offer, &DEFAULT_ORDER);
    assert_eq!(media.codec, CodecKind::Opus);
    assert_eq!(media.telephone_event, None);
    assert!(!sdp.contains("telephone-event"), "{sdp}");
}

#[test]
fn answer_to_our_offer_is_read_with_the_answerers_numbers() {
    let ours = local(&DEFAULT_ORDER);
    let answer = "v=0\r\no=- 1 1 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\n\
                  m=audio 7000 RTP/AVP 120 121\r\na=rtpmap:120 opus/48000/2\r\n\
                  a=fmtp:120 useinbandfec=1\r\na=rtpmap:121 telephone-event/48000\r\n";
    let media = apply_answer(answer.as_bytes(), &ours).expect("answer accepted");
    assert_eq!(
        (media.codec, media.payload_type, media.telephone_event),
        (CodecKind::Opus, 120, Some(121))
    );
    let g711 = "v=0\r\no=- 1 1 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\n\
                m=audio 7000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
                a=rtpmap:101 telephone-event/8000\r\n";
    let media = apply_answer(g711.as_bytes(), &ours).expect("answer accepted");
    assert_eq!(
        (media.codec, media.payload_type, media.telephone_event),
        (CodecKind::Pcmu, 0, Some(101))
    );
}

#[test]
fn two_sipline_negotiators_agree_on_opus_and_the_48000_event() {
    let mut a = Negotiator::new(local(&DEFAULT_ORDER), 1, 1);
    let mut b = Negotiator::new(local(&[CodecKind::Pcma, CodecKind::Opus]), 2, 1);
    let offer = a.create_offer().unwrap();
    b.receive_offer(offer.as_bytes()).unwrap();
    let answer = b.create_answer().unwrap();
    a.receive_answer(answer.as_bytes()).unwrap();
    let (ma, mb) = (a.negotiate().unwrap(), b.negotiate().unwrap());
    // The answer honours the offerer's order (RFC 3264 §6.1).
    assert_eq!((ma.codec, mb.codec), (CodecKind::Opus, CodecKind::Opus));
    assert_eq!((ma.payload_type, mb.payload_type), (96, 96));
    assert_eq!(
        (ma.telephone_event, mb.telephone_event),
        (Some(97), Some(97))
    );
    assert_eq!(ma.opus.map(|p| p.max_playback_rate), Some(Some(48000)));
}
