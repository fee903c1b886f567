//! Tolerant front stage: reads SDP as real phones write it.
//!
//! The raw text is split into a session part and one section per `m=` line by
//! this module, so the `m=` lines are counted and ordered from the text itself
//! (RFC 3264 §6), whatever `webrtc-sdp` would drop. Only audio sections over
//! `RTP/AVP` are handed to `webrtc-sdp`, each on its own with the session part,
//! after removing lines we do not use and it refuses (`u=`, `e=`, `p=`, `r=`,
//! `z=`, `k=`, unknown attributes, second `c=`), supplying a missing `t=`/`s=`,
//! and normalizing `a=ptime:20.5` and `a=sendrecv:`. `a=fmtp` is read here from
//! the raw text, never re-serialized.
//!
//! The result is [`RemoteSdp`]: our own structs, no `webrtc-sdp` type.

use std::net::IpAddr;

use webrtc_sdp::address::ExplicitlyTypedAddress;
use webrtc_sdp::attribute_type::{SdpAttribute, SdpAttributeType};
use webrtc_sdp::error::SdpParserError;
use webrtc_sdp::media_type::SdpFormatList;
use webrtc_sdp::{SdpConnection, SdpSession, parse_sdp};

use super::{Direction, ParseProblem, Rejection, SdpError};

/// `webrtc-sdp` refuses texts shorter than this.
const WEBRTC_SDP_MIN_LEN: usize = 51;

/// Media-level attributes passed on to `webrtc-sdp`; everything else is dropped.
const KEPT_MEDIA_ATTRIBUTES: &[&str] = &[
    "rtpmap", "ptime", "rtcp", "rtcp-mux", "sendrecv", "sendonly", "recvonly", "inactive",
];

/// Direction attributes, the only session-level attributes we use (RFC 3264 §5.1).
const DIRECTIONS: &[&str] = &["sendrecv", "sendonly", "recvonly", "inactive"];

/// One `<type>=<value>` line, with its 1-based number in the received text.
#[derive(Debug, Clone)]
struct Line {
    number: usize,
    kind: char,
    value: String,
}

/// An `m=` line as written (RFC 4566 §5.14).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MLine {
    pub media: String,
    pub port: u16,
    pub proto: String,
    pub formats: Vec<String>,
}

impl MLine {
    /// RFC 3264 §6.1: only plain RTP/AVP audio is ours.
    fn rejection(&self) -> Option<Rejection> {
        if !self.media.eq_ignore_ascii_case("audio") {
            Some(Rejection::NotAudio)
        } else if !self.proto.eq_ignore_ascii_case("RTP/AVP") {
            Some(Rejection::UnsupportedProto)
        } else {
            None
        }
    }
}

/// A connection address (RFC 4566 §5.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Conn {
    Ip(IpAddr),
    Host(String),
}

/// One `a=rtpmap` (RFC 4566 §6), or the static mapping of RFC 3551 §6.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rtpmap {
    pub payload_type: u8,
    pub name: String,
    pub clock_rate: u32,
    pub channels: Option<u32>,
}

/// An audio RTP/AVP section we could read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Audio {
    pub port: u16,
    pub conn: Option<Conn>,
    /// Formats in the order written, non-numeric and >127 removed.
    pub formats: Vec<u8>,
    pub rtpmaps: Vec<Rtpmap>,
    /// `a=fmtp:<pt> <params>` as received (raw text).
    pub fmtps: Vec<(u8, String)>,
    /// Media-level direction, else session-level, else sendrecv (RFC 3264 §5.1).
    pub direction: Direction,
    /// `a=rtcp` (RFC 3605): port and optional address.
    pub rtcp: Option<(u16, Option<Conn>)>,
    pub rtcp_mux: bool,
    pub ptime_ms: Option<u32>,
}

/// One `m=` section: its line, and either what we read or why it is not usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Section {
    pub mline: MLine,
    pub audio: Result<Audio, Rejection>,
}

/// A received SDP, every `m=` line in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RemoteSdp {
    pub sections: Vec<Section>,
}

/// Reads an SDP body the tolerant way.
pub(crate) fn read(body: &[u8]) -> Result<RemoteSdp, SdpError> {
    let text = String::from_utf8_lossy(body);
    let lines = split_lines(&text)?;
    let first_m = lines
        .iter()
        .position(|l| l.kind == 'm')
        .unwrap_or(lines.len());
    let (session_raw, media_raw) = lines.split_at(first_m);
    let session = normalize_session(session_raw)?;
    parse_checked(&session, &[]).map_err(|line| {
        let conn = session
            .iter()
            .any(|l| l.kind == 'c' && line == Some(l.number));
        let problem = if conn {
            ParseProblem::BadAddress
        } else {
            ParseProblem::Refused
        };
        parse_error(line, problem)
    })?;
    let sections = split_sections(media_raw)?
        .into_iter()
        .map(|(mline, body)| read_section(&session, mline, &body))
        .collect();
    Ok(RemoteSdp { sections })
}

fn parse_error(line: Option<usize>, problem: ParseProblem) -> SdpError {
    SdpError::Parse { line, problem }
}

/// RFC 4566 §5: `<type>=<value>`, CRLF or LF; blank lines are skipped.
fn split_lines(text: &str) -> Result<Vec<Line>, SdpError> {
    let mut lines = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let raw = raw.trim();
        if raw.is_empty() {
            continue;
        }
        let number = index + 1;
        let mut chars = raw.chars();
        let (Some(kind), Some('=')) = (chars.next(), chars.next()) else {
            return Err(parse_error(Some(number), ParseProblem::NotTypeValue));
        };
        if !kind.is_ascii_alphabetic() {
            return Err(parse_error(Some(number), ParseProblem::NotTypeValue));
        }
        let value = chars.as_str().trim().to_owned();
        lines.push(Line {
            number,
            kind: kind.to_ascii_lowercase(),
            value,
        });
    }
    if lines.is_empty() {
        return Err(parse_error(None, ParseProblem::Empty));
    }
    Ok(lines)
}

/// Keeps `v=`, `o=`, `s=`, the first `c=`, `t=0 0` and direction attributes.
/// A missing `s=` becomes `s=-`, a missing `t=` is supplied (we never use timing).
fn normalize_session(raw: &[Line]) -> Result<Vec<Line>, SdpError> {
    let version = raw
        .first()
        .filter(|l| l.kind == 'v' && l.value == "0")
        .ok_or(parse_error(
            raw.first().map(|l| l.number),
            ParseProblem::MissingVersion,
        ))?;
    let origin = raw
        .iter()
        .find(|l| l.kind == 'o')
        .ok_or(parse_error(None, ParseProblem::MissingOrigin))?;
    let synth = |kind, value: &str| Line {
        number: origin.number,
        kind,
        value: value.to_owned(),
    };
    let mut out = vec![version.clone(), normalize_origin(origin)];
    match raw.iter().find(|l| l.kind == 's') {
        Some(s) => out.push(s.clone()),
        None => out.push(synth('s', "-")),
    }
    out.extend(raw.iter().find(|l| l.kind == 'c').cloned());
    let t_number = raw
        .iter()
        .find(|l| l.kind == 't')
        .map_or(origin.number, |t| t.number);
    out.push(Line {
        number: t_number,
        kind: 't',
        value: "0 0".to_owned(),
    });
    out.extend(
        raw.iter()
            .filter(|l| l.kind == 'a')
            .filter_map(|l| normalize_attribute(l, DIRECTIONS)),
    );
    Ok(out)
}

/// RFC 4566 §5.2: session id and version are numbers; some UAs write ones
/// larger than `u64` (or not numbers at all). We never use them: zero them.
fn normalize_origin(origin: &Line) -> Line {
    let mut tokens: Vec<&str> = origin.value.split_whitespace().collect();
    for token in tokens.iter_mut().skip(1).take(2) {
        if token.parse::<u64>().is_err() {
            *token = "0";
        }
    }
    Line {
        value: tokens.join(" "),
        ..origin.clone()
    }
}

/// Keeps an attribute whose name is in `kept`, written the way `webrtc-sdp`
/// accepts it: `a=sendrecv:` loses its colon, `a=ptime:20.5` becomes `20` (whole milliseconds).
fn normalize_attribute(line: &Line, kept: &[&str]) -> Option<Line> {
    let (name, value) = match line.value.split_once(':') {
        Some((name, value)) => (name.trim().to_ascii_lowercase(), value.trim()),
        None => (line.value.trim().to_ascii_lowercase(), ""),
    };
    if !kept.contains(&name.as_str()) {
        return None;
    }
    let value = match name.as_str() {
        "ptime" => {
            let ms = value
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)?;
            format!("{name}:{}", ms.trunc() as u64)
        }
        "rtcp" | "rtpmap" => format!("{name}:{value}"),
        _ => name,
    };
    Some(Line {
        value,
        ..line.clone()
    })
}

/// Groups the lines from the first `m=` on into sections.
fn split_sections(lines: &[Line]) -> Result<Vec<(MLine, Vec<Line>)>, SdpError> {
    let mut sections: Vec<(MLine, Vec<Line>)> = Vec::new();
    for line in lines {
        if line.kind == 'm' {
            let mline = parse_mline(&line.value)
                .ok_or(parse_error(Some(line.number), ParseProblem::BadMediaLine))?;
            sections.push((mline, vec![line.clone()]));
        } else if let Some((_, body)) = sections.last_mut() {
            body.push(line.clone());
        }
    }
    Ok(sections)
}

/// RFC 4566 §5.14: `m=<media> <port>[/<count>] <proto> <fmt> ...`.
fn parse_mline(value: &str) -> Option<MLine> {
    let mut tokens = value.split_whitespace();
    let media = tokens.next()?.to_owned();
    let port = tokens.next()?.split('/').next()?.parse::<u16>().ok()?;
    let proto = tokens.next()?.to_owned();
    let formats: Vec<String> = tokens.map(str::to_owned).collect();
    if formats.is_empty() {
        return None;
    }
    Some(MLine {
        media,
        port,
        proto,
        formats,
    })
}

/// Reads one section, or says why it is not ours.
fn read_section(session: &[Line], mline: MLine, body: &[Line]) -> Section {
    let audio = match mline.rejection() {
        Some(rejection) => Err(rejection),
        None => read_audio(session, body),
    };
    Section { mline, audio }
}

fn read_audio(session: &[Line], body: &[Line]) -> Result<Audio, Rejection> {
    let media = normalize_media(body);
    let parsed = parse_checked(session, &media).map_err(|line| {
        let conn = media
            .iter()
            .any(|l| l.kind == 'c' && line == Some(l.number));
        if conn {
            Rejection::BadAddress
        } else {
            Rejection::Malformed
        }
    })?;
    let m = parsed.media.first().ok_or(Rejection::Malformed)?;
    let formats = match m.get_formats() {
        SdpFormatList::Integers(list) => list.iter().filter_map(|f| u8::try_from(*f).ok()),
        _ => return Err(Rejection::Malformed),
    }
    .filter(|pt| *pt < 128)
    .collect();
    let media_attr = |t| m.get_attribute(t);
    let rtcp = match media_attr(SdpAttributeType::Rtcp) {
        Some(SdpAttribute::Rtcp(r)) => Some((r.port, r.unicast_addr.as_ref().map(conn_of))),
        _ => None,
    };
    let ptime_ms = match media_attr(SdpAttributeType::Ptime) {
        Some(SdpAttribute::Ptime(ms)) => u32::try_from(*ms).ok(),
        _ => None,
    };
    let conn = m
        .get_connection()
        .as_ref()
        .or(parsed.get_connection().as_ref())
        .map(|c: &SdpConnection| conn_of(&c.address));
    let bad = |c: &Option<Conn>| matches!(c, Some(Conn::Host(h)) if !is_domain_name(h));
    if bad(&conn) || rtcp.as_ref().is_some_and(|(_, c)| bad(c)) {
        return Err(Rejection::BadAddress);
    }
    Ok(Audio {
        port: u16::try_from(m.get_port()).map_err(|_| Rejection::Malformed)?,
        conn,
        formats,
        rtpmaps: rtpmaps_of(m.get_attributes()),
        fmtps: raw_fmtps(body),
        direction: direction_of(m.get_attributes())
            .or(direction_of(&parsed.attribute))
            .unwrap_or(Direction::SendRecv),
        rtcp,
        rtcp_mux: media_attr(SdpAttributeType::RtcpMux).is_some(),
        ptime_ms,
    })
}

/// Keeps the `m=` line, the first `c=` (a second one makes `webrtc-sdp` fail)
/// and the attributes we use.
fn normalize_media(body: &[Line]) -> Vec<Line> {
    let mut out: Vec<Line> = body.iter().take(1).cloned().collect();
    out.extend(body.iter().find(|l| l.kind == 'c').cloned());
    out.extend(
        body.iter()
            .filter(|l| l.kind == 'a')
            .filter_map(|l| normalize_attribute(l, KEPT_MEDIA_ATTRIBUTES)),
    );
    out
}

/// Runs `webrtc-sdp` on session + media lines. On failure, gives the line
/// number in the received text when `webrtc-sdp` names one.
fn parse_checked(session: &[Line], media: &[Line]) -> Result<SdpSession, Option<usize>> {
    let lines: Vec<&Line> = session.iter().chain(media).collect();
    let mut text = String::new();
    for line in &lines {
        text.push(line.kind);
        text.push('=');
        text.push_str(&line.value);
        text.push_str("\r\n");
    }
    while text.len() < WEBRTC_SDP_MIN_LEN {
        // Blank lines are skipped by the parser but count for its length check.
        text.push_str("\r\n");
    }
    parse_sdp(&text, false).map_err(|e| {
        let index = match e {
            SdpParserError::Line { line_number, .. }
            | SdpParserError::Unsupported { line_number, .. }
            | SdpParserError::Sequence { line_number, .. } => line_number,
        };
        lines.get(index).map(|l| l.number)
    })
}

/// Whether a connection address that is not an IP literal can be a domain
/// name: RFC 4566 §9 `FQDN = 4*(alpha-numeric / "-" / ".")`, and RFC 1123
/// §2.1: the top-level label is not all digits (so `999.1.1.1` is a bad
/// IPv4 address, not a name).
fn is_domain_name(host: &str) -> bool {
    let allowed = host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    let top = host.trim_end_matches('.').rsplit('.').next().unwrap_or("");
    allowed
        && host.len() >= 4
        && !host
            .split('.')
            .take(host.trim_end_matches('.').split('.').count())
            .any(str::is_empty)
        && top.chars().any(|c| c.is_ascii_alphabetic())
}

fn conn_of(address: &ExplicitlyTypedAddress) -> Conn {
    match address {
        ExplicitlyTypedAddress::Ip(ip) => Conn::Ip(*ip),
        ExplicitlyTypedAddress::Fqdn { domain, .. } => Conn::Host(domain.clone()),
    }
}

fn rtpmaps_of(attributes: &[SdpAttribute]) -> Vec<Rtpmap> {
    attributes
        .iter()
        .filter_map(|a| match a {
            SdpAttribute::Rtpmap(r) => Some(Rtpmap {
                payload_type: r.payload_type,
                name: r.codec_name.clone(),
                clock_rate: r.frequency,
                channels: r.channels,
            }),
            _ => None,
        })
        .collect()
}

fn direction_of(attributes: &[SdpAttribute]) -> Option<Direction> {
    attributes.iter().find_map(|a| match a {
        SdpAttribute::Sendrecv => Some(Direction::SendRecv),
        SdpAttribute::Sendonly => Some(Direction::SendOnly),
        SdpAttribute::Recvonly => Some(Direction::RecvOnly),
        SdpAttribute::Inactive => Some(Direction::Inactive),
        _ => None,
    })
}

/// `a=fmtp:<pt> <params>` (RFC 4566 §6), kept as text so it is never rewritten.
fn raw_fmtps(body: &[Line]) -> Vec<(u8, String)> {
    body.iter()
        .filter(|l| l.kind == 'a')
        .filter_map(|l| l.value.strip_prefix("fmtp:"))
        .filter_map(|rest| {
            let (pt, params) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            Some((pt.parse().ok()?, params.trim().to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str =
        "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n";

    fn audio_of(sdp: &str) -> Audio {
        let remote = read(sdp.as_bytes()).expect("test SDP parses");
        remote.sections[0]
            .audio
            .clone()
            .expect("first section is usable audio")
    }

    #[test]
    fn missing_t_line_is_supplied() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0\r\n";
        assert_eq!(audio_of(sdp).port, 4000);
    }

    #[test]
    fn u_e_p_r_z_k_lines_are_ignored() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nu=http://x\r\ne=a@b\r\np=+1\r\n\
             c=IN IP4 192.0.2.1\r\nt=0 0\r\nr=7d 1h 0 25h\r\nz=0 0\r\nk=clear:x\r\n\
             m=audio 4000 RTP/AVP 0\r\nk=prompt\r\n";
        assert_eq!(audio_of(sdp).formats, vec![0]);
    }

    #[test]
    fn fractional_ptime_and_flag_with_colon_are_normalized() {
        let sdp = format!("{MINIMAL}m=audio 4000 RTP/AVP 0\r\na=ptime:20.5\r\na=sendonly:\r\n");
        let audio = audio_of(&sdp);
        assert_eq!(audio.ptime_ms, Some(20));
        assert_eq!(audio.direction, Direction::SendOnly);
    }

    #[test]
    fn second_c_line_in_a_section_is_ignored() {
        let sdp = format!(
            "{MINIMAL}m=audio 4000 RTP/AVP 0\r\nc=IN IP4 192.0.2.7\r\nc=IN IP4 192.0.2.8\r\n"
        );
        assert_eq!(
            audio_of(&sdp).conn,
            Some(Conn::Ip("192.0.2.7".parse().unwrap()))
        );
    }

    #[test]
    fn origin_ids_above_u64_are_tolerated() {
        let sdp = "v=0\r\no=- 99999999999999999999999 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 8\r\n";
        assert_eq!(audio_of(sdp).formats, vec![8]);
    }

    #[test]
    fn image_t38_line_is_counted_and_rejected() {
        let sdp = format!(
            "{MINIMAL}m=audio 4000 RTP/AVP 0\r\nm=image 4002 udptl t38\r\na=T38FaxVersion:0\r\n"
        );
        let remote = read(sdp.as_bytes()).unwrap();
        assert_eq!(remote.sections.len(), 2);
        assert_eq!(remote.sections[1].mline.proto, "udptl");
        assert_eq!(remote.sections[1].audio, Err(Rejection::NotAudio));
    }

    #[test]
    fn session_level_direction_applies_when_media_has_none() {
        let sdp = format!("{MINIMAL}a=inactive\r\nm=audio 4000 RTP/AVP 0\r\n");
        assert_eq!(audio_of(&sdp).direction, Direction::Inactive);
    }

    #[test]
    fn fmtp_is_kept_verbatim() {
        let sdp = format!(
            "{MINIMAL}m=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15,66\r\n"
        );
        assert_eq!(audio_of(&sdp).fmtps, vec![(101, "0-15,66".to_owned())]);
    }

    #[test]
    fn short_session_part_passes_the_51_byte_check() {
        let sdp = "v=0\no=- 0 0 IN IP4 192.0.2.1\ns=\nm=audio 1 RTP/AVP 0\nc=IN IP4 192.0.2.1\n";
        assert_eq!(
            audio_of(sdp).conn,
            Some(Conn::Ip("192.0.2.1".parse().unwrap()))
        );
    }

    #[test]
    fn garbage_is_a_parse_error() {
        for bad in ["", "\r\n", "hello", "v=1\r\n", "v=0\r\ns=-\r\n", "=x\r\n"] {
            assert!(
                matches!(read(bad.as_bytes()), Err(SdpError::Parse { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn truncated_media_line_is_a_parse_error() {
        let sdp = format!("{MINIMAL}m=audio 4000 RTP/A");
        assert_eq!(
            read(sdp.as_bytes()),
            Err(SdpError::Parse {
                line: Some(6),
                problem: ParseProblem::BadMediaLine
            })
        );
    }
}
