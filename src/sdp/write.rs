//! Writing our SDP text (RFC 4566 §5), CRLF line ends.

use std::fmt::Write as _;
use std::net::IpAddr;

use super::{CodecKind, Direction, LocalMedia};

/// RFC 4566 §5.7: `IN IP4` or `IN IP6`.
fn addr_type(addr: IpAddr) -> &'static str {
    match addr {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    }
}

/// `v=`, `o=`, `s=-`, `c=`, `t=0 0` (RFC 4566 §5.1–§5.9).
pub(crate) fn session_header(addr: IpAddr, session_id: u64, version: u64) -> String {
    let ty = addr_type(addr);
    format!(
        "v=0\r\no=- {session_id} {version} IN {ty} {addr}\r\ns=-\r\nc=IN {ty} {addr}\r\nt=0 0\r\n"
    )
}

/// An audio section: the codecs with their payload types, telephone-event
/// entries (payload type, clock rate, events), ptime and direction.
pub(crate) struct AudioSection<'a> {
    pub port: u16,
    pub codecs: &'a [(CodecKind, u8)],
    pub telephone_events: &'a [(u8, u32, &'a str)],
    pub ptime_ms: u32,
    pub direction: Direction,
    /// `a=rtcp:<port>` (RFC 3605), when RTCP is not on the next port.
    pub rtcp_port: Option<u16>,
    /// `a=rtcp-mux` (RFC 5761 §5.1.1).
    pub rtcp_mux: bool,
}

/// Our RTCP port for `a=rtcp`: only when it is not `rtp_port + 1`
/// (RFC 3605 §2.1 makes the attribute optional in that case).
pub(crate) fn rtcp_attribute_port(local: &LocalMedia) -> Option<u16> {
    local
        .rtcp_port
        .filter(|p| Some(*p) != local.rtp_port.checked_add(1))
}

/// The `a=fmtp` we write for Opus (RFC 7587 §6.1, §7): we use and want
/// in-band FEC, play and capture fullband, and prefer mono.
pub(crate) const OPUS_FMTP: &str =
    "useinbandfec=1; maxplaybackrate=48000; sprop-maxcapturerate=48000; stereo=0; sprop-stereo=0";

/// RFC 4566 §5.14 and §6; every listed payload type gets an `a=rtpmap`
/// (RFC 3264 §6.1 requires it for dynamic ones; for static ones it is harmless).
pub(crate) fn audio_section(out: &mut String, section: &AudioSection<'_>) {
    let mut formats: Vec<String> = section
        .codecs
        .iter()
        .map(|(_, pt)| pt.to_string())
        .collect();
    formats.extend(
        section
            .telephone_events
            .iter()
            .map(|(pt, _, _)| pt.to_string()),
    );
    // Writing into a String cannot fail.
    let _ = write!(
        out,
        "m=audio {} RTP/AVP {}\r\n",
        section.port,
        formats.join(" ")
    );
    for (codec, pt) in section.codecs {
        let _ = write!(
            out,
            "a=rtpmap:{pt} {}/{}",
            codec.encoding_name(),
            codec.clock_rate()
        );
        if let Some(channels) = codec.rtpmap_channels() {
            let _ = write!(out, "/{channels}");
        }
        out.push_str("\r\n");
        if *codec == CodecKind::Opus {
            let _ = write!(out, "a=fmtp:{pt} {OPUS_FMTP}\r\n");
        }
    }
    // RFC 4733 §7.1.1: each event entry runs at an audio codec's clock.
    for (pt, rate, events) in section.telephone_events {
        let _ = write!(
            out,
            "a=rtpmap:{pt} telephone-event/{rate}\r\na=fmtp:{pt} {events}\r\n"
        );
    }
    let _ = write!(
        out,
        "a=ptime:{}\r\na={}\r\n",
        section.ptime_ms,
        section.direction.attribute()
    );
    if let Some(port) = section.rtcp_port {
        let _ = write!(out, "a=rtcp:{port}\r\n");
    }
    if section.rtcp_mux {
        out.push_str("a=rtcp-mux\r\n");
    }
}

/// RFC 3264 §6: a rejected stream keeps media type and proto, port 0, one format.
pub(crate) fn rejected_section(out: &mut String, media: &str, proto: &str, format: &str) {
    let _ = write!(out, "m={media} 0 {proto} {format}\r\n");
}
