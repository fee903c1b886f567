//! SDP offer/answer (RFC 3264) for one audio stream, over the `webrtc-sdp` parser.
//!
//! This module owns everything the user agent needs to know about SDP: it writes
//! our offers and answers, reads the peer's, and reduces the result to a
//! [`NegotiatedMedia`] for the media layer. `webrtc-sdp` types never leave this
//! module.
//!
//! It is sans-IO and has no clock: callers hand in bytes and get back text and
//! plain structs. The stateless entry points are [`create_offer`],
//! [`create_answer`] and [`apply_answer`]; [`Negotiator`] wraps them in the
//! pjmedia `sdp_neg` states (NULL, LOCAL_OFFER, REMOTE_OFFER, WAIT_NEGO, DONE)
//! and keeps the `o=` version (RFC 3264 §8).
//!
//! Input first goes through [`tolerant`], which splits the raw text into
//! sections itself (so every `m=` line is counted, RFC 3264 §6) and hides from
//! `webrtc-sdp` the harmless lines it would refuse.

mod answer;
mod codec_match;
mod negotiator;
mod offer;
mod tolerant;
mod write;

use std::net::{IpAddr, SocketAddr};

use crate::media::codec::CodecKind;
use crate::media::codec::opus::OpusParams;

pub use answer::create_answer;
pub use negotiator::{NegState, Negotiator};
pub use offer::{apply_answer, create_offer};

/// Default packetization time when the peer sends no `a=ptime` (RFC 3551 §4.5: 20 ms for G.711).
pub const DEFAULT_PTIME_MS: u32 = 20;

/// Payload type we use for telephone-event at 8000 Hz in our own offers (RFC 4733 §7.1.1: dynamic).
pub const OFFER_TELEPHONE_EVENT_PT: u8 = 101;

/// Payload type we use for telephone-event at 48000 Hz (the Opus clock) in our offers.
pub const OFFER_TELEPHONE_EVENT_48K_PT: u8 = 97;

/// Payload type we use for Opus in our offers (RFC 7587 §7: dynamic).
pub const OFFER_OPUS_PT: u8 = 96;

/// Events we can send and receive: DTMF digits, `*`, `#`, A–D and flash (RFC 4733 §3.2).
pub const TELEPHONE_EVENTS: std::ops::RangeInclusive<u8> = 0..=16;

/// What we can do on our side of the audio stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalMedia {
    /// Address written in `c=` and `o=`.
    pub addr: IpAddr,
    /// Our RTP port; RTCP is on `rtp_port + 1` (RFC 3550 §11) unless
    /// `rtcp_port` says otherwise.
    pub rtp_port: u16,
    /// Our RTCP port when it is not `rtp_port + 1`, written as `a=rtcp`
    /// (RFC 3605).
    pub rtcp_port: Option<u16>,
    /// Whether we offer `a=rtcp-mux` and accept it in offers (RFC 5761):
    /// RTCP then shares the RTP port.
    pub rtcp_mux: bool,
    /// Codecs we support, most preferred first.
    pub codecs: Vec<CodecKind>,
    /// Whether we offer/accept telephone-event (RFC 4733).
    pub telephone_event: bool,
    /// The direction we want (hold is `SendOnly` or `Inactive`, RFC 3264 §8.4).
    pub direction: Direction,
    /// The packetization time we want to receive (RFC 4566 §6 `a=ptime`).
    pub ptime_ms: u32,
}

/// Media direction attribute (RFC 3264 §5.1, RFC 4566 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    /// Builds a direction from "may send" and "may receive".
    pub fn from_flags(send: bool, recv: bool) -> Direction {
        match (send, recv) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }

    /// Whether the side that wrote this direction sends media.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether the side that wrote this direction receives media.
    pub fn recvs(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    /// RFC 3264 §6.1: the answer may only send what the offerer receives and
    /// receive what it sends, within what `local` allows. The same rule gives
    /// the offerer's direction from an answer.
    pub fn answer_to(self, local: Direction) -> Direction {
        Direction::from_flags(local.sends() && self.recvs(), local.recvs() && self.sends())
    }

    /// The attribute name (`a=sendrecv` ...).
    pub fn attribute(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }
}

/// The outcome of an offer/answer exchange, in the terms the media layer needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedMedia {
    /// Where to send RTP. `None` for old-style hold (`c=0.0.0.0`, RFC 3264 §8.4)
    /// or a domain name in `c=` (see `unresolved_remote`): send no RTP then.
    pub remote_rtp: Option<SocketAddr>,
    /// Where to send RTCP: the RTP address when multiplexed, else `a=rtcp`
    /// (RFC 3605) or RTP port + 1 (RFC 3550 §11).
    pub remote_rtcp: Option<SocketAddr>,
    /// RTP and RTCP share one port in both directions (RFC 5761 §5.1.1):
    /// both sides signalled `a=rtcp-mux`.
    pub rtcp_mux: bool,
    /// RFC 4566 §5.7 allows a domain name in `c=`. Resolving it is I/O, so it is
    /// handed to the caller; `remote_rtp`/`remote_rtcp` are `None` then.
    pub unresolved_remote: Option<UnresolvedRemote>,
    /// The codec both sides send with.
    pub codec: CodecKind,
    /// The payload type for `codec` in packets we send and receive.
    pub payload_type: u8,
    /// RTP clock rate of `codec`.
    pub clock_rate: u32,
    /// telephone-event payload type whose clock rate matches `codec` (RFC 4733 §7.1.1).
    pub telephone_event: Option<u8>,
    /// The packetization the peer wants to receive (its `a=ptime`, default 20).
    /// Opus is always sent in 20 ms frames (RFC 7587 §7: `a=ptime` is only
    /// a preference, and any Opus frame size is decodable).
    pub ptime_ms: u32,
    /// OUR direction after negotiation.
    pub direction: Direction,
    /// The peer's Opus `a=fmtp` parameters when Opus was chosen (RFC 7587 §6.1).
    pub opus: Option<OpusParams>,
}

/// A remote media address given as a domain name (RFC 4566 §5.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnresolvedRemote {
    pub host: String,
    pub rtp_port: u16,
    pub rtcp_port: u16,
}

/// Why one `m=` line was not used (RFC 3264 §6: it gets port 0 in the answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Not `m=audio` (video, image/T.38, application ...).
    NotAudio,
    /// A transport other than `RTP/AVP` (SRTP, DTLS, AVPF, udptl ...).
    UnsupportedProto,
    /// Offered or answered with port 0 (RFC 3264 §5.1, §6).
    PortZero,
    /// No format in common with our codec list.
    NoCommonCodec,
    /// The section has lines `webrtc-sdp` refuses even after normalization.
    Malformed,
    /// The connection address (`c=`) is neither an IP address of its
    /// address type nor a domain name (RFC 4566 §5.7, §9).
    BadAddress,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Rejection::NotAudio => "not audio",
            Rejection::UnsupportedProto => "a transport other than RTP/AVP",
            Rejection::PortZero => "port 0 (stream refused)",
            Rejection::NoCommonCodec => "no codec in common",
            Rejection::Malformed => "lines that cannot be read",
            Rejection::BadAddress => {
                "the connection address (c=) is neither an IP address nor a domain name"
            }
        })
    }
}

/// `rejected` for people: the reason alone for one `m=` line, else each
/// line numbered in order.
fn describe_rejections(rejected: &[Rejection]) -> String {
    match rejected {
        [] => "no m= line".to_string(),
        [one] => one.to_string(),
        many => many
            .iter()
            .enumerate()
            .map(|(i, r)| format!("m={}: {r}", i + 1))
            .collect::<Vec<_>>()
            .join("; "),
    }
}

/// `at line N` when the line is known.
fn describe_line(line: &Option<usize>) -> String {
    line.map(|n| format!(" (line {n})")).unwrap_or_default()
}

/// What is wrong with an SDP body that cannot be read at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseProblem {
    /// The body is empty or blank.
    Empty,
    /// A line is not `<letter>=<value>` (RFC 4566 §5).
    NotTypeValue,
    /// The first line is not `v=0` (RFC 4566 §5.1).
    MissingVersion,
    /// No `o=` line (RFC 4566 §5.2).
    MissingOrigin,
    /// An `m=` line lacks media, port, proto or format (RFC 4566 §5.14).
    BadMediaLine,
    /// `webrtc-sdp` refused the session part even after normalization.
    Refused,
    /// The session-level `c=` line has an address that is not one of its
    /// address type (RFC 4566 §5.7), e.g. `c=IN IP4 999.1.1.1`.
    BadAddress,
}

impl std::fmt::Display for ParseProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ParseProblem::Empty => "the body is empty",
            ParseProblem::NotTypeValue => "a line is not <letter>=<value>",
            ParseProblem::MissingVersion => "the first line is not v=0",
            ParseProblem::MissingOrigin => "there is no o= line",
            ParseProblem::BadMediaLine => "an m= line lacks media, port, transport or format",
            ParseProblem::Refused => "the session description is malformed",
            ParseProblem::BadAddress => "the connection address (c=) is not a valid address",
        })
    }
}

/// Errors of this module. The UA maps them to SIP responses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// The body cannot be read (→ 400, or 488 for an offer in an INVITE).
    #[error("SDP cannot be parsed: {problem}{}", describe_line(line))]
    Parse {
        /// 1-based line number in the text received, when known.
        line: Option<usize>,
        problem: ParseProblem,
    },
    /// No usable audio stream (→ 488 Not Acceptable Here). One entry per `m=` line.
    #[error("no acceptable audio stream: {}", describe_rejections(rejected))]
    NotAcceptable { rejected: Vec<Rejection> },
    /// RFC 3264 §6: the answer must have as many `m=` lines as the offer.
    #[error("answer has {answered} m= lines, offer had {offered}")]
    MediaCountMismatch { offered: usize, answered: usize },
    /// A new offer while one is outstanding (RFC 3261 §14.1, → 491 Request Pending).
    #[error("an offer is already pending ({state})")]
    OfferPending { state: NegState },
    /// The negotiator was asked to do something its state does not allow.
    #[error("{operation} is not valid now ({state})")]
    WrongState {
        state: NegState,
        operation: &'static str,
    },
}

/// The peer's direction as it really is: RFC 3264 §8.4 old-style hold
/// (`c=0.0.0.0` / `c=::`) means it receives nothing, whatever the attribute says.
fn effective_remote_direction(audio: &tolerant::Audio) -> Direction {
    let unspecified = matches!(audio.conn, Some(tolerant::Conn::Ip(ip)) if ip.is_unspecified());
    Direction::from_flags(
        audio.direction.sends(),
        audio.direction.recvs() && !unspecified,
    )
}

/// Builds what the media layer needs from the peer's accepted audio section,
/// the codec chosen in it, our wanted direction, and whether both sides
/// agreed on RTCP multiplexing.
fn negotiated_media(
    audio: &tolerant::Audio,
    choice: codec_match::Choice,
    local_direction: Direction,
    rtcp_mux: bool,
) -> NegotiatedMedia {
    use tolerant::Conn;
    // RFC 5761 §5.1.3: multiplexed RTCP goes to the RTP port, whatever
    // a=rtcp says. Otherwise RFC 3550 §11: RTCP on the next port unless
    // a=rtcp says otherwise (RFC 3605).
    let rtcp_attr = audio.rtcp.as_ref().filter(|_| !rtcp_mux);
    let rtcp_port = match rtcp_attr {
        Some((port, _)) => *port,
        None if rtcp_mux => audio.port,
        None => audio.port.saturating_add(1),
    };
    let rtcp_conn = rtcp_attr
        .and_then(|(_, c)| c.clone())
        .or(audio.conn.clone());
    let socket = |conn: &Option<Conn>, port: u16| match conn {
        Some(Conn::Ip(ip)) if !ip.is_unspecified() => Some(SocketAddr::new(*ip, port)),
        _ => None,
    };
    let unresolved_remote = match &audio.conn {
        Some(Conn::Host(host)) => Some(UnresolvedRemote {
            host: host.clone(),
            rtp_port: audio.port,
            rtcp_port,
        }),
        _ => None,
    };
    NegotiatedMedia {
        remote_rtp: socket(&audio.conn, audio.port),
        remote_rtcp: socket(&rtcp_conn, rtcp_port),
        rtcp_mux,
        unresolved_remote,
        codec: choice.codec,
        payload_type: choice.payload_type,
        clock_rate: choice.codec.clock_rate(),
        telephone_event: choice.telephone_event,
        ptime_ms: match choice.codec {
            CodecKind::Opus => DEFAULT_PTIME_MS,
            _ => audio
                .ptime_ms
                .filter(|ms| *ms > 0)
                .unwrap_or(DEFAULT_PTIME_MS),
        },
        direction: effective_remote_direction(audio).answer_to(local_direction),
        opus: (choice.codec == CodecKind::Opus).then(|| {
            audio
                .fmtps
                .iter()
                .find(|(pt, _)| *pt == choice.payload_type)
                .map(|(_, params)| OpusParams::parse(params))
                .unwrap_or_default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::Direction::*;

    #[test]
    fn answer_direction_follows_rfc3264_section_6_1() {
        assert_eq!(SendOnly.answer_to(SendRecv), RecvOnly);
        assert_eq!(RecvOnly.answer_to(SendRecv), SendOnly);
        assert_eq!(Inactive.answer_to(SendRecv), Inactive);
        assert_eq!(SendRecv.answer_to(SendRecv), SendRecv);
        assert_eq!(SendRecv.answer_to(SendOnly), SendOnly);
        assert_eq!(SendOnly.answer_to(SendOnly), Inactive);
    }
}
