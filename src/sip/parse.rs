//! Parsing SIP messages from datagrams (RFC 3261 §7, §18.3, §25).
//!
//! The parser is lossless and shallow: it splits the start line, the header
//! rows (unfolding continuation lines, §7.3.1) and frames the body by
//! Content-Length. Typed header values are parsed later, on demand, so that a
//! request whose headers are malformed can still be answered with 400.

use super::headers::{Header, Headers};
use super::message::{Request, Response, SipMessage};
use super::method::Method;

/// Why a datagram is not a SIP message we can frame.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("empty message")]
    Empty,
    #[error("no blank line ends the header section")]
    Incomplete,
    #[error("the header section is not UTF-8 (byte offset {offset})")]
    NotUtf8 { offset: usize },
    #[error("malformed start line: {line:?}")]
    BadStartLine { line: String },
    #[error("malformed status code in {line:?}")]
    BadStatusCode { line: String },
    #[error("header line {line_no} has no name and colon: {line:?}")]
    BadHeaderLine { line_no: usize, line: String },
    /// The head parsed but the body cannot be framed; the head is kept so
    /// that a request can be answered with 400 (RFC 3261 §18.3).
    #[error("cannot frame the body: {reason}")]
    BadBody {
        reason: BodyError,
        head: Box<SipMessage>,
    },
}

/// Problems with Content-Length framing.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum BodyError {
    #[error("Content-Length {value:?} is not a non-negative integer")]
    InvalidLength { value: String },
    #[error("Content-Length given {count} times with different values")]
    ConflictingLengths { count: usize },
    #[error("Content-Length {declared} exceeds the {available} bytes received")]
    Truncated { declared: u64, available: usize },
}

impl ParseError {
    /// The partially parsed message, when the head was readable.
    pub fn head(&self) -> Option<&SipMessage> {
        match self {
            ParseError::BadBody { head, .. } => Some(head),
            _ => None,
        }
    }

    /// The partially parsed request, when the head was readable: the UA
    /// answers it with 400 via
    /// [`build_error_response`](super::validate::build_error_response)
    /// and [`Rejection::bad_framing`](super::validate::Rejection::bad_framing).
    pub fn head_request(&self) -> Option<&Request> {
        match self.head() {
            Some(SipMessage::Request(r)) => Some(r),
            _ => None,
        }
    }
}

/// Parses one UDP datagram (RFC 3261 §18.3): the body is framed by
/// Content-Length, octets beyond it are discarded, and without
/// Content-Length the body runs to the end of the datagram.
pub fn parse_datagram(data: &[u8]) -> Result<SipMessage, ParseError> {
    // RFC 3261 §7.5: CRLFs before the start line are ignored.
    let start = data
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .ok_or(ParseError::Empty)?;
    let data = &data[start..];
    let (head_len, body_start) = find_head_end(data).ok_or(ParseError::Incomplete)?;
    let head = std::str::from_utf8(&data[..head_len]).map_err(|e| ParseError::NotUtf8 {
        offset: start + e.valid_up_to(),
    })?;
    let mut msg = parse_head(head)?;
    let rest = &data[body_start..];
    match frame_body(msg.headers(), rest) {
        Ok(len) => {
            let body = rest[..len].to_vec();
            match &mut msg {
                SipMessage::Request(r) => r.body = body,
                SipMessage::Response(r) => r.body = body,
            }
            Ok(msg)
        }
        Err(reason) => Err(ParseError::BadBody {
            reason,
            head: Box::new(msg),
        }),
    }
}

/// Finds the blank line ending the head: returns the length of the head
/// (without the blank line) and where the body starts. Bare-LF line ends are
/// accepted as well as CRLF.
fn find_head_end(data: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < data.len() {
        if data[i] == b'\n' {
            let next = &data[i + 1..];
            let line_end = if i > 0 && data[i - 1] == b'\r' {
                i - 1
            } else {
                i
            };
            if next.starts_with(b"\r\n") {
                return Some((line_end, i + 3));
            }
            if next.starts_with(b"\n") {
                return Some((line_end, i + 2));
            }
        }
        i += 1;
    }
    None
}

/// Decides the body length from Content-Length (RFC 3261 §18.3, §20.14).
fn frame_body(headers: &Headers, rest: &[u8]) -> Result<usize, BodyError> {
    let values: Vec<&str> = headers.get_all("Content-Length").collect();
    let Some(first) = values.first() else {
        return Ok(rest.len());
    };
    let parsed: Vec<u64> = values
        .iter()
        .map(|v| parse_length(v))
        .collect::<Result<_, _>>()?;
    if parsed.iter().any(|&v| v != parsed[0]) {
        return Err(BodyError::ConflictingLengths {
            count: values.len(),
        });
    }
    let declared = parsed[0];
    let _ = first;
    if declared > rest.len() as u64 {
        return Err(BodyError::Truncated {
            declared,
            available: rest.len(),
        });
    }
    // Fits in usize: it is no larger than rest.len().
    Ok(declared as usize)
}

fn parse_length(value: &str) -> Result<u64, BodyError> {
    let v = value.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BodyError::InvalidLength {
            value: value.to_string(),
        });
    }
    v.parse::<u64>().map_err(|_| BodyError::InvalidLength {
        value: value.to_string(),
    })
}

/// Parses the start line and header rows.
fn parse_head(head: &str) -> Result<SipMessage, ParseError> {
    let mut lines = split_lines(head);
    let start_line = lines.next().ok_or(ParseError::Empty)?;
    let headers = parse_header_rows(lines)?;
    if start_line.starts_with("SIP/") {
        parse_status_line(start_line, headers)
    } else {
        parse_request_line(start_line, headers)
    }
}

/// Splits at CRLF or bare LF, returning each line without its terminator.
fn split_lines(head: &str) -> impl Iterator<Item = &str> {
    head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l))
}

/// Request-Line = Method SP Request-URI SP SIP-Version CRLF (RFC 3261 §25.1).
/// Extra spaces between the elements are tolerated (RFC 4475 §3.1.2.9); the
/// Request-URI is everything between method and version, so whitespace
/// inside it is caught when the URI is parsed (RFC 4475 §3.1.2.8).
fn parse_request_line(line: &str, headers: Headers) -> Result<SipMessage, ParseError> {
    let bad = || ParseError::BadStartLine {
        line: line.to_string(),
    };
    let trimmed = line.trim_matches(' ');
    let (method, rest) = trimmed.split_once(' ').ok_or_else(bad)?;
    let (uri, version) = rest
        .trim_start_matches(' ')
        .rsplit_once(' ')
        .ok_or_else(bad)?;
    let uri = uri.trim_matches(' ');
    if method.is_empty() || uri.is_empty() || !is_token(method) || !version.starts_with("SIP/") {
        return Err(bad());
    }
    Ok(SipMessage::Request(Request {
        method: Method::from_token(method),
        uri: uri.to_string(),
        version: version.to_string(),
        headers,
        body: Vec::new(),
    }))
}

/// Status-Line = SIP-Version SP Status-Code SP Reason-Phrase (RFC 3261 §25.1).
/// The status code is exactly three digits (RFC 4475 §3.1.2.19).
fn parse_status_line(line: &str, headers: Headers) -> Result<SipMessage, ParseError> {
    let (version, rest) = line
        .split_once(' ')
        .ok_or_else(|| ParseError::BadStartLine {
            line: line.to_string(),
        })?;
    let rest = rest.trim_start_matches(' ');
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    let bad_code = || ParseError::BadStatusCode {
        line: line.to_string(),
    };
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad_code());
    }
    let status: u16 = code.parse().map_err(|_| bad_code())?;
    if !(100..700).contains(&status) {
        return Err(bad_code());
    }
    Ok(SipMessage::Response(Response {
        version: version.to_string(),
        status,
        reason: reason.to_string(),
        headers,
        body: Vec::new(),
    }))
}

/// Header rows with continuation lines unfolded (RFC 3261 §7.3.1).
fn parse_header_rows<'a>(lines: impl Iterator<Item = &'a str>) -> Result<Headers, ParseError> {
    let mut headers = Headers::new();
    // (first line number, raw lines) of the row being collected.
    let mut current: Option<(usize, Vec<&str>)> = None;
    for (i, line) in lines.enumerate() {
        let line_no = i + 2;
        if line.starts_with([' ', '\t']) {
            match current.as_mut() {
                Some((_, parts)) => parts.push(line),
                None => {
                    return Err(ParseError::BadHeaderLine {
                        line_no,
                        line: line.to_string(),
                    });
                }
            }
            continue;
        }
        if let Some((no, parts)) = current.take() {
            headers.push_header(make_header(no, &parts)?);
        }
        current = Some((line_no, vec![line]));
    }
    if let Some((no, parts)) = current.take() {
        headers.push_header(make_header(no, &parts)?);
    }
    Ok(headers)
}

/// message-header = field-name HCOLON field-value (RFC 3261 §7.3.1): the
/// name is a token, whitespace may precede the colon.
fn make_header(line_no: usize, parts: &[&str]) -> Result<Header, ParseError> {
    let first = parts[0];
    let bad = || ParseError::BadHeaderLine {
        line_no,
        line: first.to_string(),
    };
    let (name, value_start) = first.split_once(':').ok_or_else(bad)?;
    let name = name.trim_end_matches([' ', '\t']);
    if name.is_empty() || !is_token(name) {
        return Err(bad());
    }
    let mut value = value_start.trim().to_string();
    for cont in &parts[1..] {
        let cont = cont.trim();
        if cont.is_empty() {
            continue;
        }
        if !value.is_empty() {
            value.push(' ');
        }
        value.push_str(cont);
    }
    Ok(Header::received(
        name.to_string(),
        value,
        parts.join("\r\n"),
    ))
}

/// token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
/// (RFC 3261 §25.1).
pub fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIONS: &str = "OPTIONS sip:alice@192.0.2.10 SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.51.100.9:5060;branch=z9hG4bK-opt-19\r\n\
Max-Forwards: 70\r\n\
From: <sip:probe@example.net>;tag=p19\r\n\
To: <sip:alice@192.0.2.10>\r\n\
Call-ID: extra-19@198.51.100.9\r\n\
CSeq: 1 OPTIONS\r\n\
Content-Length: 0\r\n\r\n";

    #[test]
    fn round_trip_prints_received_message_unchanged() {
        let msg = parse_datagram(OPTIONS.as_bytes()).unwrap();
        assert_eq!(msg.to_bytes(), OPTIONS.as_bytes());
    }

    #[test]
    fn trailing_octets_after_content_length_are_discarded_rfc3261_18_3() {
        let mut d = OPTIONS.as_bytes().to_vec();
        d.extend_from_slice(b"\r\n\r\n");
        let msg = parse_datagram(&d).unwrap();
        assert!(msg.body().is_empty());
    }

    #[test]
    fn huge_content_length_is_rejected_without_allocating() {
        let d = OPTIONS.replace("Content-Length: 0", "Content-Length: 4294967295");
        let err = parse_datagram(d.as_bytes()).unwrap_err();
        assert!(matches!(
            err,
            ParseError::BadBody {
                reason: BodyError::Truncated { .. },
                ..
            }
        ));
        assert!(err.head().is_some());
    }

    #[test]
    fn negative_content_length_is_an_error() {
        let d = OPTIONS.replace("Content-Length: 0", "Content-Length: -999");
        assert!(matches!(
            parse_datagram(d.as_bytes()),
            Err(ParseError::BadBody {
                reason: BodyError::InvalidLength { .. },
                ..
            })
        ));
    }

    #[test]
    fn folded_header_is_unfolded_and_printed_back_raw_rfc3261_7_3_1() {
        let d = OPTIONS.replace("CSeq: 1 OPTIONS", "CSeq:\r\n  1\r\n\tOPTIONS");
        let msg = parse_datagram(d.as_bytes()).unwrap();
        assert_eq!(msg.headers().get("cseq"), Some("1 OPTIONS"));
        assert_eq!(msg.to_bytes(), d.as_bytes());
    }

    #[test]
    fn status_code_must_be_three_digits() {
        let d = "SIP/2.0 4294967301 Huge\r\nContent-Length: 0\r\n\r\n";
        assert!(matches!(
            parse_datagram(d.as_bytes()),
            Err(ParseError::BadStatusCode { .. })
        ));
    }

    #[test]
    fn empty_reason_phrase_parses() {
        let d = "SIP/2.0 100 \r\nContent-Length: 0\r\n\r\n";
        match parse_datagram(d.as_bytes()).unwrap() {
            SipMessage::Response(r) => {
                assert_eq!(r.status, 100);
                assert_eq!(r.reason, "");
            }
            _ => panic!("expected a response"),
        }
    }

    #[test]
    fn body_without_content_length_runs_to_end_of_datagram() {
        let d = OPTIONS.replace("Content-Length: 0\r\n", "") + "hello";
        assert_eq!(parse_datagram(d.as_bytes()).unwrap().body(), b"hello");
    }

    #[test]
    fn garbage_never_panics() {
        for d in [
            &b""[..],
            b"\r\n\r\n",
            b"INVITE\r\n\r\n",
            b"SIP/2.0\r\n\r\n",
            b": x\r\n\r\n",
            b"A B C\r\n x\r\n\r\n",
            b"\xff\xfe\r\n\r\n",
        ] {
            let _ = parse_datagram(d);
        }
    }
}
