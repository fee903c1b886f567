//! The offerer's side (RFC 3264 §5, §7): writing our offer and reading the answer.

use super::codec_match::{self, Choice};
use super::tolerant::{self, Audio};
use super::write::{self, AudioSection};
use super::{
    LocalMedia, NegotiatedMedia, OFFER_OPUS_PT, OFFER_TELEPHONE_EVENT_48K_PT,
    OFFER_TELEPHONE_EVENT_PT, Rejection, SdpError, TELEPHONE_EVENTS,
};

/// Writes an offer with one audio stream (RFC 3264 §5): our codecs in order of
/// preference (Opus on [`OFFER_OPUS_PT`] with its `a=fmtp`, RFC 7587 §7),
/// telephone-event (`0-16`) at the clock rate of each codec if wanted
/// (RFC 4733 §7.1.1: 101 at 8000 Hz, [`OFFER_TELEPHONE_EVENT_48K_PT`] at
/// 48000 Hz), `a=ptime`, the direction, `a=rtcp` when our RTCP port is not
/// the next one (RFC 3605) and `a=rtcp-mux` if we offer multiplexing
/// (RFC 5761 §5.1.1). A codec list that yields no
/// format gives a disabled stream (port 0, RFC 3264 §5.1).
pub fn create_offer(local: &LocalMedia, session_id: u64, version: u64) -> String {
    let mut out = write::session_header(local.addr, session_id, version);
    let codecs = offered_codecs(local);
    if codecs.is_empty() {
        write::rejected_section(&mut out, "audio", "RTP/AVP", "0");
        return out;
    }
    let events = format!("{}-{}", TELEPHONE_EVENTS.start(), TELEPHONE_EVENTS.end());
    let mut telephone_events: Vec<(u8, u32, &str)> = Vec::new();
    if local.telephone_event {
        for (codec, _) in &codecs {
            let rate = codec.clock_rate();
            if telephone_events.iter().all(|(_, r, _)| *r != rate) {
                telephone_events.push((telephone_event_pt(rate), rate, events.as_str()));
            }
        }
    }
    let section = AudioSection {
        port: local.rtp_port,
        codecs: &codecs,
        telephone_events: &telephone_events,
        ptime_ms: local.ptime_ms,
        direction: local.direction,
        rtcp_port: write::rtcp_attribute_port(local),
        rtcp_mux: local.rtcp_mux,
    };
    write::audio_section(&mut out, &section);
    out
}

/// Our telephone-event payload type at `rate`.
fn telephone_event_pt(rate: u32) -> u8 {
    match rate {
        48_000 => OFFER_TELEPHONE_EVENT_48K_PT,
        _ => OFFER_TELEPHONE_EVENT_PT,
    }
}

/// Our codecs with their payload types: the static ones of RFC 3551 §6, and
/// [`OFFER_OPUS_PT`] from the dynamic range for Opus. Duplicates are offered once.
fn offered_codecs(local: &LocalMedia) -> Vec<(super::CodecKind, u8)> {
    let mut codecs: Vec<(super::CodecKind, u8)> = Vec::new();
    for c in &local.codecs {
        let pt = c.static_payload_type().unwrap_or(OFFER_OPUS_PT);
        if codecs.iter().all(|(known, _)| known != c) {
            codecs.push((*c, pt));
        }
    }
    codecs
}

/// Reads the answer to an offer made from `our_offer` (RFC 3264 §7).
///
/// The answer's first `m=` line answers our single one (RFC 3264 §6). We send with the
/// first format of the answer that we offered, using the answer's payload type
/// numbers, and skip formats such as telephone-event that come first
/// (pjsip does that). Port 0 means the answerer rejected the stream.
pub fn apply_answer(answer: &[u8], our_offer: &LocalMedia) -> Result<NegotiatedMedia, SdpError> {
    let remote = tolerant::read(answer)?;
    // Our offer has one m= line; extra ones in the answer break RFC 3264 §6
    // but are ignored (real answers carry a rejected video copied from elsewhere).
    let Some(section) = remote.sections.first() else {
        return Err(SdpError::MediaCountMismatch {
            offered: 1,
            answered: 0,
        });
    };
    let not_acceptable = |r: Rejection| SdpError::NotAcceptable { rejected: vec![r] };
    let audio = section.audio.as_ref().map_err(|r| not_acceptable(*r))?;
    let choice = accepted(audio, our_offer).map_err(not_acceptable)?;
    // RFC 5761 §5.1.1: multiplex only when we offered it and the answer
    // has it too; an answer that adds it unasked is ignored (bug 22 C).
    // Payload types 64–95 rule it out (RFC 5761 §4).
    let mux = our_offer.rtcp_mux && audio.rtcp_mux && choice.allows_rtcp_mux();
    Ok(super::negotiated_media(
        audio,
        choice,
        our_offer.direction,
        mux,
    ))
}

fn accepted(audio: &Audio, our_offer: &LocalMedia) -> Result<Choice, Rejection> {
    if audio.port == 0 {
        return Err(Rejection::PortZero);
    }
    codec_match::choose(audio, &our_offer.codecs, our_offer.telephone_event)
        .ok_or(Rejection::NoCommonCodec)
}
