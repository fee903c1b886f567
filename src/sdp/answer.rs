//! The answerer's side (RFC 3264 §6): reading an offer and writing the answer.

use super::codec_match::{self, Choice};
use super::tolerant::{self, Audio, Section};
use super::write::{self, AudioSection};
use super::{LocalMedia, NegotiatedMedia, Rejection, SdpError};

/// The stream we accept: where it is, the peer's section and our choice in it.
struct Accepted<'a> {
    index: usize,
    audio: &'a Audio,
    choice: Choice,
    /// Our `a=fmtp` events for `choice.telephone_event`.
    events: Option<String>,
}

/// Answers `offer` (RFC 3264 §6).
///
/// The first usable audio stream is accepted with the offerer's first codec we
/// support and its payload type numbers, plus the offerer's telephone-event at
/// that codec's clock rate. Every other `m=` line is kept in place with port 0.
/// No usable audio at all gives [`SdpError::NotAcceptable`] (→ 488).
pub fn create_answer(
    offer: &[u8],
    local: &LocalMedia,
    session_id: u64,
    version: u64,
) -> Result<(String, NegotiatedMedia), SdpError> {
    let remote = tolerant::read(offer)?;
    let accepted = accept_first(&remote.sections, local)?;
    // RFC 5761 §5.1.1: multiplex only when offered, and only if we can
    // (not with payload types 64–95, RFC 5761 §4).
    let mux = local.rtcp_mux && accepted.audio.rtcp_mux && accepted.choice.allows_rtcp_mux();
    let media = super::negotiated_media(accepted.audio, accepted.choice, local.direction, mux);
    let mut out = write::session_header(local.addr, session_id, version);
    for (i, section) in remote.sections.iter().enumerate() {
        if i == accepted.index {
            write_accepted(&mut out, &accepted, &media, local);
        } else {
            let m = &section.mline;
            let format = m.formats.first().map_or("0", String::as_str);
            write::rejected_section(&mut out, &m.media, &m.proto, format);
        }
    }
    Ok((out, media))
}

/// Takes the first usable audio stream; if none, says why for every `m=` line.
fn accept_first<'a>(sections: &'a [Section], local: &LocalMedia) -> Result<Accepted<'a>, SdpError> {
    let mut rejected = Vec::with_capacity(sections.len());
    for (index, section) in sections.iter().enumerate() {
        match usable(section, local) {
            Ok((audio, choice)) => return Ok(accepted(index, audio, choice)),
            Err(rejection) => rejected.push(rejection),
        }
    }
    Err(SdpError::NotAcceptable { rejected })
}

fn usable<'a>(section: &'a Section, local: &LocalMedia) -> Result<(&'a Audio, Choice), Rejection> {
    let audio = section.audio.as_ref().map_err(|r| *r)?;
    // RFC 3264 §6: a stream offered with port 0 is answered with port 0.
    if audio.port == 0 {
        return Err(Rejection::PortZero);
    }
    let choice = codec_match::choose(audio, &local.codecs, local.telephone_event)
        .ok_or(Rejection::NoCommonCodec)?;
    Ok((audio, choice))
}

/// Telephone-event is kept only if some event is in common (RFC 4733 §7.1.1).
fn accepted(index: usize, audio: &Audio, mut choice: Choice) -> Accepted<'_> {
    let events = choice
        .telephone_event
        .and_then(|pt| codec_match::common_events(audio, pt));
    if events.is_none() {
        choice.telephone_event = None;
    }
    Accepted {
        index,
        audio,
        choice,
        events,
    }
}

/// One codec plus telephone-event, with our port, ptime and the direction of
/// RFC 3264 §6.1; `a=rtcp-mux` only when the offer had it and we multiplex
/// (RFC 5761 §5.1.1: never in an answer to an offer without it), else our
/// `a=rtcp` when RTCP is not on the next port (RFC 3605).
fn write_accepted(
    out: &mut String,
    accepted: &Accepted<'_>,
    media: &NegotiatedMedia,
    local: &LocalMedia,
) {
    let choice = accepted.choice;
    let rate = choice.codec.clock_rate();
    let telephone_events: Vec<(u8, u32, &str)> = choice
        .telephone_event
        .zip(accepted.events.as_deref())
        .map(|(pt, events)| (pt, rate, events))
        .into_iter()
        .collect();
    write::audio_section(
        out,
        &AudioSection {
            port: local.rtp_port,
            codecs: &[(choice.codec, choice.payload_type)],
            telephone_events: &telephone_events,
            ptime_ms: local.ptime_ms,
            direction: media.direction,
            rtcp_port: write::rtcp_attribute_port(local).filter(|_| !media.rtcp_mux),
            rtcp_mux: media.rtcp_mux,
        },
    );
}
