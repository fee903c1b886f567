//! The offerer's side (RFC 3264 §5, §7): writing our offer and reading the answer.

use super::codec_match::{self, Choice};
use super::tolerant::{self, Audio};
use super::write::{self, AudioSection};
use super::{
    LocalMedia, NegotiatedMedia, OFFER_TELEPHONE_EVENT_PT, Rejection, SdpError, TELEPHONE_EVENTS,
};

/// Writes an offer with one audio stream (RFC 3264 §5): our codecs in order of
/// preference, telephone-event 101 (`0-16`) if wanted, `a=ptime`, the
/// direction, `a=rtcp` when our RTCP port is not the next one (RFC 3605) and
/// `a=rtcp-mux` if we offer multiplexing (RFC 5761 §5.1.1). A codec list that yields no format gives a disabled stream
/// (port 0, RFC 3264 §5.1).
pub fn create_offer(local: &LocalMedia, session_id: u64, version: u64) -> String {
    let mut out = write::session_header(local.addr, session_id, version);
    let codecs = offered_codecs(local);
    if codecs.is_empty() {
        write::rejected_section(&mut out, "audio", "RTP/AVP", "0");
        return out;
    }
    let events = format!("{}-{}", TELEPHONE_EVENTS.start(), TELEPHONE_EVENTS.end());
    let section = AudioSection {
        port: local.rtp_port,
        codecs: &codecs,
        telephone_event: local
            .telephone_event
            .then_some((OFFER_TELEPHONE_EVENT_PT, events.as_str())),
        ptime_ms: local.ptime_ms,
        direction: local.direction,
        rtcp_port: write::rtcp_attribute_port(local),
        rtcp_mux: local.rtcp_mux,
    };
    write::audio_section(&mut out, &section);
    out
}

/// Our codecs with their payload types. Codecs without a static payload type
/// are not offered yet (none exist today; a dynamic range would go here).
fn offered_codecs(local: &LocalMedia) -> Vec<(super::CodecKind, u8)> {
    local
        .codecs
        .iter()
        .filter_map(|c| c.static_payload_type().map(|pt| (*c, pt)))
        .collect()
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
