//! Matching the formats of a received `m=audio` line against our codecs.
//!
//! Used by both sides: the answerer picks from the offer, the offerer reads
//! the answer. Either way the received list's order wins (RFC 3264 §6.1) and
//! its payload type numbers are the ones used.

use super::tolerant::{Audio, Rtpmap};
use super::{CodecKind, TELEPHONE_EVENTS};

/// A codec chosen from a received format list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Choice {
    pub codec: CodecKind,
    pub payload_type: u8,
    /// The telephone-event entry at the codec's clock rate (RFC 4733 §7.1.1).
    pub telephone_event: Option<u8>,
}

impl Choice {
    /// RFC 5761 §4: RTP payload types 64–95 look like RTCP packet types on
    /// a multiplexed port, so a stream using them must not be multiplexed.
    pub fn allows_rtcp_mux(&self) -> bool {
        let clashes = |pt: u8| (64..=95).contains(&pt);
        !clashes(self.payload_type) && !self.telephone_event.is_some_and(clashes)
    }
}

/// RFC 3551 §6 static payload types we may meet without an `a=rtpmap`.
fn static_rtpmap(payload_type: u8) -> Option<(&'static str, u32)> {
    match payload_type {
        0 => Some(("PCMU", 8000)),
        3 => Some(("GSM", 8000)),
        8 => Some(("PCMA", 8000)),
        9 => Some(("G722", 8000)),
        18 => Some(("G729", 8000)),
        _ => None,
    }
}

/// The encoding of `payload_type`: its `a=rtpmap`, else the static table.
/// Dynamic payload types without `a=rtpmap` are unknown (policy: we do not
/// carry mappings over from earlier exchanges, as pjsip does not either).
fn encoding(audio: &Audio, payload_type: u8) -> Option<(String, u32, Option<u32>)> {
    audio
        .rtpmaps
        .iter()
        .find(|r| r.payload_type == payload_type)
        .map(|r: &Rtpmap| (r.name.clone(), r.clock_rate, r.channels))
        .or_else(|| static_rtpmap(payload_type).map(|(n, rate)| (n.to_owned(), rate, None)))
}

/// Whether an encoding is `codec` (names are case-insensitive, RFC 4855 §3;
/// `/1` channels is the mono default, RFC 4566 §6). Opus is `opus/48000/2`
/// (RFC 7587 §7); `/1` or no channel count is tolerated, since the stream
/// is decodable either way.
fn is_codec(codec: CodecKind, (name, rate, channels): &(String, u32, Option<u32>)) -> bool {
    let channels_ok = match codec {
        CodecKind::Opus => channels.is_none_or(|c| c == 1 || c == 2),
        CodecKind::Pcmu | CodecKind::Pcma => channels.is_none_or(|c| c == 1),
    };
    name.eq_ignore_ascii_case(codec.encoding_name()) && *rate == codec.clock_rate() && channels_ok
}

/// The first format in `audio` (its order) that is one of `ours`, with the
/// matching telephone-event when `want_telephone_event`.
pub(crate) fn choose(
    audio: &Audio,
    ours: &[CodecKind],
    want_telephone_event: bool,
) -> Option<Choice> {
    let (codec, payload_type) = audio.formats.iter().find_map(|&pt| {
        let enc = encoding(audio, pt)?;
        ours.iter().find(|c| is_codec(**c, &enc)).map(|c| (*c, pt))
    })?;
    let telephone_event = want_telephone_event
        .then(|| telephone_event_for(audio, codec.clock_rate()))
        .flatten();
    Some(Choice {
        codec,
        payload_type,
        telephone_event,
    })
}

/// RFC 4733 §7.1.1: telephone-event at the audio codec's clock rate.
fn telephone_event_for(audio: &Audio, clock_rate: u32) -> Option<u8> {
    audio.formats.iter().copied().find(|&pt| {
        encoding(audio, pt).is_some_and(|(name, rate, _)| {
            name.eq_ignore_ascii_case("telephone-event") && rate == clock_rate
        })
    })
}

/// RFC 4733 §7.1.1: events the peer listed for `payload_type` that we also
/// support, written as `a=fmtp` ranges; absent `fmtp` means `0-15`
/// (RFC 4733 §2.4.1). `None` when nothing is in common.
pub(crate) fn common_events(audio: &Audio, payload_type: u8) -> Option<String> {
    let offered = audio
        .fmtps
        .iter()
        .find(|(pt, _)| *pt == payload_type)
        .and_then(|(_, params)| parse_events(params))
        .unwrap_or_else(|| (0..=15).collect());
    let common: Vec<u8> = offered
        .into_iter()
        .filter(|e| TELEPHONE_EVENTS.contains(e))
        .collect();
    (!common.is_empty()).then(|| format_events(&common))
}

/// `0-15,66,70` → sorted event codes; `None` if any part is not a number or range.
fn parse_events(params: &str) -> Option<Vec<u8>> {
    let mut events = Vec::new();
    for part in params.split(',').map(str::trim) {
        match part.split_once('-') {
            Some((lo, hi)) => {
                events.extend(lo.trim().parse::<u8>().ok()?..=hi.trim().parse().ok()?)
            }
            None => events.push(part.parse().ok()?),
        }
    }
    events.sort_unstable();
    events.dedup();
    Some(events)
}

/// Sorted event codes → `0-11,16`.
fn format_events(events: &[u8]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut start = 0;
    for i in 1..=events.len() {
        let run_ends = i == events.len() || u16::from(events[i]) != u16::from(events[i - 1]) + 1;
        if run_ends {
            parts.push(match i - 1 - start {
                0 => events[start].to_string(),
                _ => format!("{}-{}", events[start], events[i - 1]),
            });
            start = i;
        }
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdp::Direction;

    fn audio(formats: &[u8], rtpmaps: &[(u8, &str, u32)], fmtps: &[(u8, &str)]) -> Audio {
        Audio {
            port: 4000,
            conn: None,
            formats: formats.to_vec(),
            rtpmaps: rtpmaps
                .iter()
                .map(|&(pt, name, rate)| Rtpmap {
                    payload_type: pt,
                    name: name.to_owned(),
                    clock_rate: rate,
                    channels: None,
                })
                .collect(),
            fmtps: fmtps.iter().map(|&(pt, p)| (pt, p.to_owned())).collect(),
            direction: Direction::SendRecv,
            rtcp: None,
            rtcp_mux: false,
            ptime_ms: None,
        }
    }

    #[test]
    fn offerer_order_wins_over_ours() {
        let a = audio(&[8, 0], &[], &[]);
        let c = choose(&a, &[CodecKind::Pcmu, CodecKind::Pcma], true).unwrap();
        assert_eq!((c.codec, c.payload_type), (CodecKind::Pcma, 8));
    }

    #[test]
    fn lowercase_names_on_dynamic_payload_types_match() {
        let a = audio(&[96], &[(96, "pcmu", 8000)], &[]);
        let c = choose(&a, &[CodecKind::Pcmu], false).unwrap();
        assert_eq!(c.payload_type, 96);
    }

    #[test]
    fn telephone_event_follows_codec_clock_rate() {
        let a = audio(
            &[0, 97, 101],
            &[
                (97, "telephone-event", 48000),
                (101, "telephone-event", 8000),
            ],
            &[],
        );
        assert_eq!(
            choose(&a, &[CodecKind::Pcmu], true)
                .unwrap()
                .telephone_event,
            Some(101)
        );
    }

    #[test]
    fn events_are_intersected_with_ours() {
        let a = audio(&[101], &[], &[(101, "0-15,66"), (102, "0-255")]);
        assert_eq!(common_events(&a, 101).as_deref(), Some("0-15"));
        assert_eq!(common_events(&a, 102).as_deref(), Some("0-16"));
        assert_eq!(common_events(&a, 103).as_deref(), Some("0-15"));
    }

    #[test]
    fn event_lists_format_as_ranges() {
        assert_eq!(format_events(&[0, 1, 2, 5, 7, 8]), "0-2,5,7-8");
        assert_eq!(parse_events("3,1-2"), Some(vec![1, 2, 3]));
        assert_eq!(parse_events("x"), None);
    }
}
