//! Validation of received messages: the UAS checks of RFC 3261 §8.2 on
//! requests, the UAC sanity checks of §8.1.3.3 on responses, and the error
//! response a rejected request gets (§8.2.6).
//!
//! Driven by the UA core, after [`parse_datagram`](super::parse_datagram):
//! - a [`Request`] goes through [`check_request`]; on `Err(rejection)` the
//!   core sends [`build_error_response`] (never for an ACK: an ACK gets no
//!   response, RFC 3261 §17.2.3, so a rejected ACK is discarded);
//! - a [`Response`] goes through [`check_response`]; on `Err` it is
//!   discarded silently (RFC 4475 §3.1.2.5 scalarlg, §3.3.10 bcast);
//! - a datagram whose head parsed but whose body could not be framed
//!   ([`ParseError::BadBody`](super::ParseError::BadBody): RFC 4475 clerr,
//!   ncl, mcl01) never reaches `check_request`: the core answers a request
//!   with 400 built by `build_error_response(head, &Rejection::bad_framing(..), tag)`
//!   from [`ParseError::head_request`](super::ParseError::head_request), and
//!   drops a response. Any other parse error (no head) is dropped, since
//!   there is nothing to address a response to.
//!
//! Nothing here does I/O or keeps state.

use std::fmt;

use super::access::HeaderError;
use super::header::BRANCH_COOKIE;
use super::headers::Headers;
use super::message::{Request, Response, SIP_VERSION, reason_phrase};
use super::method::Method;
use super::parse::BodyError;
use super::uri::Uri;

/// The methods our UA core implements; sent in `Allow` with 405 and 501
/// (RFC 3261 §8.2.1, §20.5).
pub const ALLOWED_METHODS: &[Method] = &[
    Method::Invite,
    Method::Ack,
    Method::Bye,
    Method::Cancel,
    Method::Options,
    Method::Info,
    Method::Refer,
    Method::Notify,
];

/// The option tags we support (RFC 3261 §19.2, §20.37). None yet, so any
/// `Require` on a request we check is answered with 420.
pub const SUPPORTED: &[&str] = &[];

/// The only body type we accept on INVITE and ACK (RFC 3261 §8.2.3).
pub const ACCEPTED_BODY: &str = "application/sdp";

/// Why a request is rejected: the response code to send, the reason
/// phrase, the extra headers the RFC asks for (`Allow`, `Unsupported`,
/// `Accept`, `Accept-Encoding`) and a description for the logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    pub reason: &'static str,
    pub headers: Vec<(String, String)>,
    pub detail: String,
}

impl Rejection {
    /// A rejection with the standard reason phrase and no extra headers.
    pub fn new(status: u16, detail: impl Into<String>) -> Rejection {
        Rejection {
            status,
            reason: reason_phrase(status),
            headers: Vec::new(),
            detail: detail.into(),
        }
    }

    /// 400 for a request whose body could not be framed by Content-Length
    /// (RFC 3261 §18.3; RFC 4475 §3.1.2.2, §3.1.2.3, §3.3.9).
    pub fn bad_framing(reason: &BodyError) -> Rejection {
        Rejection::new(400, reason.to_string())
    }

    fn with_header(mut self, name: &str, value: impl Into<String>) -> Rejection {
        self.headers.push((name.to_string(), value.into()));
        self
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.reason, self.detail)
    }
}

impl std::error::Error for Rejection {}

/// Why a UAC discards a response.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum ResponseDefect {
    #[error("unsupported version {version:?}")]
    Version { version: String },
    /// RFC 3261 §8.1.3.3: a response with more than one Via value is
    /// discarded (RFC 4475 §3.3.10 bcast).
    #[error("{count} Via values; a UAC accepts exactly one")]
    ViaCount { count: usize },
    #[error("{0}")]
    Header(#[from] HeaderError),
}

/// The `Allow` value listing [`ALLOWED_METHODS`].
pub fn allow_header_value() -> String {
    ALLOWED_METHODS
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The UAS checks of RFC 3261 §8.2 in the RFC's order, after the syntax
/// checks that make a request "well-formed": version (505), syntax of the
/// Request-URI and of the headers every request needs (400), method (405 or
/// 501), CSeq method (400), Request-URI scheme (416), `Require` (420), body
/// type (415) and `Accept` on INVITE (406). `Date` is never looked at, so
/// an unparseable one is ignored (RFC 4475 §3.1.2.12).
///
/// An unknown method is reported as 501 even when its CSeq method differs
/// (RFC 4475 §3.1.2.18 mismatch02), because the method is checked before
/// the CSeq method.
pub fn check_request(req: &Request) -> Result<(), Rejection> {
    check_version(req)?;
    check_request_uri_syntax(req)?;
    check_required_headers(&req.headers)?;
    check_optional_headers(req)?;
    check_method(req)?;
    check_cseq_method(req)?;
    check_uri_scheme(req)?;
    check_require(req)?;
    check_body(req)?;
    check_accept(req)?;
    Ok(())
}

/// RFC 3261 §8.1.3.3 and §8.1.3.5 for a UAC: the response must be SIP/2.0,
/// carry exactly one Via value, and have parseable From, To, Call-ID and
/// CSeq (a CSeq above 2^32-1 is a defect, RFC 4475 §3.1.2.5 scalarlg).
pub fn check_response(resp: &Response) -> Result<(), ResponseDefect> {
    if !resp.version.eq_ignore_ascii_case(SIP_VERSION) {
        return Err(ResponseDefect::Version {
            version: resp.version.clone(),
        });
    }
    let vias = resp.headers.vias()?;
    if vias.len() != 1 {
        return Err(ResponseDefect::ViaCount { count: vias.len() });
    }
    resp.headers.cseq()?;
    resp.headers.call_id()?;
    resp.headers.from_addr()?;
    resp.headers.to_addr()?;
    Ok(())
}

/// The response to a rejected request (RFC 3261 §8.2.6): Via, From, To,
/// Call-ID and CSeq are copied as received, even when they did not parse,
/// followed by the rejection's headers and `Content-Length: 0`.
///
/// RFC 3261 §8.2.6.2: `to_tag` is added to a To that parses and has no tag;
/// a To that does not parse is copied unchanged (we cannot tell where a tag
/// would go), and an empty `to_tag` adds none.
pub fn build_error_response(req: &Request, rejection: &Rejection, to_tag: &str) -> Response {
    let mut resp = Response::new(rejection.status, rejection.reason);
    let h = &req.headers;
    resp.headers.copy_from(h, "Via");
    resp.headers.copy_from(h, "From");
    copy_to_with_tag(&mut resp.headers, h, to_tag);
    resp.headers.copy_from(h, "Call-ID");
    resp.headers.copy_from(h, "CSeq");
    for (name, value) in &rejection.headers {
        resp.headers.push(name.as_str(), value.as_str());
    }
    resp.headers.push("Content-Length", "0");
    resp
}

fn copy_to_with_tag(out: &mut Headers, req: &Headers, to_tag: &str) {
    let needs_tag = !to_tag.is_empty()
        && req.count("To") == 1
        && req.to_addr().is_ok_and(|to| to.tag().is_none());
    if !needs_tag {
        out.copy_from(req, "To");
        return;
    }
    let value = req.get("To").expect("count is 1");
    out.push("To", format!("{value};tag={to_tag}"));
}

fn bad(detail: impl Into<String>) -> Rejection {
    Rejection::new(400, detail)
}

/// RFC 3261 §8.2 / §7.1: `SIP/2.0` (the literal is case-insensitive);
/// another well-formed version gets 505 (RFC 4475 §3.1.2.16 badvers).
fn check_version(req: &Request) -> Result<(), Rejection> {
    let v = req.version.as_str();
    if v.eq_ignore_ascii_case(SIP_VERSION) {
        return Ok(());
    }
    let well_formed = v.len() > 4
        && v[..4].eq_ignore_ascii_case("SIP/")
        && v[4..].split_once('.').is_some_and(|(a, b)| {
            !a.is_empty()
                && !b.is_empty()
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
        });
    if well_formed {
        Err(Rejection::new(505, format!("version {v}")))
    } else {
        Err(bad(format!("malformed version {v:?}")))
    }
}

/// The Request-URI must parse (RFC 4475 §3.1.2.7 `<>`, §3.1.2.8 LWS,
/// RFC 5118 §4.2 unbracketed IPv6), and a SIP Request-URI carries no
/// `?headers` (RFC 3261 §19.1.5; RFC 4475 §3.1.2.11 escruri).
fn check_request_uri_syntax(req: &Request) -> Result<(), Rejection> {
    let uri =
        Uri::parse(&req.uri).map_err(|e| bad(format!("bad Request-URI {:?}: {e}", req.uri)))?;
    if let Uri::Sip(sip) = &uri
        && sip.headers.is_some()
    {
        return Err(bad(format!("Request-URI {:?} carries headers", req.uri)));
    }
    Ok(())
}

/// RFC 3261 §8.1.1: To, From, Call-ID, CSeq (each exactly once) and Via
/// must be present and parse (RFC 4475 §3.3.1 insuf, §3.3.8 multi01,
/// §3.1.2.1 badinv01, §3.1.2.4 scalar02, §3.1.2.6 quotbal, §3.1.2.14
/// badaspec, §3.1.2.15 baddn).
///
/// A top branch that is exactly the magic cookie (RFC 4475 §3.2.1
/// badbranch) is rejected with 400 rather than matched RFC 2543-style.
fn check_required_headers(h: &Headers) -> Result<(), Rejection> {
    let vias = h.vias().map_err(|e| bad(e.to_string()))?;
    let Some(top) = vias.first() else {
        return Err(bad(HeaderError::Missing { name: "Via" }.to_string()));
    };
    if top.branch() == Some(BRANCH_COOKIE) {
        return Err(bad("top Via branch is only the magic cookie"));
    }
    h.to_addr().map_err(|e| bad(e.to_string()))?;
    h.from_addr().map_err(|e| bad(e.to_string()))?;
    let call_id = h.call_id().map_err(|e| bad(e.to_string()))?;
    if !is_call_id(call_id) {
        return Err(bad(format!("malformed Call-ID {call_id:?}")));
    }
    h.cseq().map_err(|e| bad(e.to_string()))?;
    Ok(())
}

/// Headers that are optional but must parse when present: Max-Forwards
/// (once, 0..=255, RFC 4475 §3.1.2.4), Contact (RFC 4475 §3.1.2.13
/// regbadct; one only on INVITE, RFC 3261 §8.1.1.8), and a Content-Type
/// whenever there is a body (RFC 3261 §20.15).
fn check_optional_headers(req: &Request) -> Result<(), Rejection> {
    let h = &req.headers;
    if h.count("Max-Forwards") > 1 {
        return Err(bad("Max-Forwards repeated"));
    }
    h.max_forwards().map_err(|e| bad(e.to_string()))?;
    let contacts = h.name_addrs("Contact").map_err(|e| bad(e.to_string()))?;
    if req.method == Method::Invite && contacts.len() > 1 {
        return Err(bad(format!("{} Contact values in INVITE", contacts.len())));
    }
    if !req.body.is_empty() && h.get("Content-Type").is_none() {
        return Err(bad("body without Content-Type"));
    }
    Ok(())
}

/// RFC 3261 §8.2.1: a method we know but do not implement gets 405, an
/// unknown one 501; both carry `Allow` (RFC 4475 §3.1.1.2 intmeth,
/// §3.1.1.5 esc02, §3.3.7 regaut01).
fn check_method(req: &Request) -> Result<(), Rejection> {
    if ALLOWED_METHODS.contains(&req.method) {
        return Ok(());
    }
    let status = match req.method {
        Method::Extension(_) => 501,
        _ => 405,
    };
    Err(
        Rejection::new(status, format!("method {} not implemented", req.method))
            .with_header("Allow", allow_header_value()),
    )
}

/// RFC 3261 §8.1.1.5: the CSeq method matches the request method
/// (RFC 4475 §3.1.2.17 mismatch01).
fn check_cseq_method(req: &Request) -> Result<(), Rejection> {
    let cseq = req.headers.cseq().map_err(|e| bad(e.to_string()))?;
    if cseq.method != req.method {
        return Err(bad(format!(
            "CSeq method {} differs from {}",
            cseq.method, req.method
        )));
    }
    Ok(())
}

/// RFC 3261 §8.2.2.1: a Request-URI scheme we do not handle gets 416
/// (RFC 4475 §3.3.2 unkscm, §3.3.3 novelsc). `tel:` is 416 too for now:
/// the UA does not map telephone numbers to SIP URIs.
fn check_uri_scheme(req: &Request) -> Result<(), Rejection> {
    match Uri::parse(&req.uri) {
        Ok(Uri::Sip(_)) => Ok(()),
        Ok(other) => Err(Rejection::new(
            416,
            format!("Request-URI scheme of {other} not supported"),
        )),
        Err(e) => Err(bad(e.to_string())),
    }
}

/// RFC 3261 §8.2.2.3: option tags in `Require` that we do not support get
/// 420 with `Unsupported` listing them (RFC 4475 §3.3.5 bext01). A UAS
/// ignores Proxy-Require, and Require on ACK and CANCEL.
fn check_require(req: &Request) -> Result<(), Rejection> {
    if matches!(req.method, Method::Ack | Method::Cancel) {
        return Ok(());
    }
    let unknown: Vec<&str> = req
        .headers
        .list("Require")
        .into_iter()
        .filter(|tag| !SUPPORTED.contains(tag))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    let list = unknown.join(", ");
    Err(Rejection::new(420, format!("unsupported Require {list}")).with_header("Unsupported", list))
}

/// RFC 3261 §8.2.3: a body on INVITE or ACK must be application/sdp with
/// no content coding, else 415 with `Accept` / `Accept-Encoding`
/// (RFC 4475 §3.3.6 invut). Bodies of other methods are left to the
/// layer that handles the method.
fn check_body(req: &Request) -> Result<(), Rejection> {
    if req.body.is_empty() || !matches!(req.method, Method::Invite | Method::Ack) {
        return Ok(());
    }
    let ct = req.headers.content_type().unwrap_or_default();
    if ct != ACCEPTED_BODY {
        return Err(
            Rejection::new(415, format!("body type {ct:?}")).with_header("Accept", ACCEPTED_BODY)
        );
    }
    let codings: Vec<&str> = req.headers.list("Content-Encoding");
    if codings.iter().any(|c| !c.eq_ignore_ascii_case("identity")) {
        return Err(
            Rejection::new(415, format!("content coding {}", codings.join(", ")))
                .with_header("Accept-Encoding", "identity"),
        );
    }
    Ok(())
}

/// RFC 3261 §20.1, §21.4.7: an INVITE whose `Accept` excludes
/// application/sdp cannot be answered with SDP, so it gets 406 (RFC 4475
/// §3.3.15 sdp01). An empty Accept accepts nothing; `q=0` excludes.
fn check_accept(req: &Request) -> Result<(), Rejection> {
    if req.method != Method::Invite || req.headers.get("Accept").is_none() {
        return Ok(());
    }
    let ranges = req.headers.list("Accept");
    if ranges.iter().any(|r| accepts_sdp(r)) {
        return Ok(());
    }
    Err(Rejection::new(
        406,
        format!("Accept {:?} excludes {ACCEPTED_BODY}", ranges.join(", ")),
    ))
}

/// Whether one media range (`type/subtype;params`) admits application/sdp.
fn accepts_sdp(range: &str) -> bool {
    let mut parts = range.split(';');
    let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let zero_q = parts.any(|p| {
        p.split_once('=').is_some_and(|(n, v)| {
            n.trim().eq_ignore_ascii_case("q") && v.trim().parse::<f32>().is_ok_and(|q| q == 0.0)
        })
    });
    !zero_q && matches!(media.as_str(), "*/*" | "application/*" | ACCEPTED_BODY)
}

/// callid = word [ "@" word ] (RFC 3261 §25.1).
fn is_call_id(s: &str) -> bool {
    let is_word = |w: &str| {
        !w.is_empty()
            && w.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~()<>:\\\"/[]?{}".contains(&b))
    };
    match s.split_once('@') {
        Some((a, b)) => is_word(a) && is_word(b),
        None => is_word(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::{SipMessage, parse_datagram};

    const OPTIONS: &str = "OPTIONS sip:alice@192.0.2.10 SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.51.100.9:5060;branch=z9hG4bK-opt-1\r\n\
Max-Forwards: 70\r\n\
From: <sip:probe@example.net>;tag=p1\r\n\
To: <sip:alice@192.0.2.10>\r\n\
Call-ID: v-1@198.51.100.9\r\n\
CSeq: 1 OPTIONS\r\n\
Content-Length: 0\r\n\r\n";

    fn req(text: &str) -> Request {
        match parse_datagram(text.as_bytes()).expect("test message parses") {
            SipMessage::Request(r) => r,
            SipMessage::Response(_) => panic!("expected a request"),
        }
    }

    fn status(text: &str) -> Option<u16> {
        check_request(&req(text)).err().map(|r| r.status)
    }

    #[test]
    fn well_formed_options_passes_rfc3261_8_2() {
        assert_eq!(status(OPTIONS), None);
    }

    #[test]
    fn missing_call_id_is_400_rfc3261_8_1_1() {
        assert_eq!(
            status(&OPTIONS.replace("Call-ID: v-1@198.51.100.9\r\n", "")),
            Some(400)
        );
    }

    #[test]
    fn register_to_a_ua_is_405_with_allow_rfc3261_8_2_1() {
        let r = check_request(&req(&OPTIONS.replace("OPTIONS", "REGISTER"))).unwrap_err();
        assert_eq!(r.status, 405);
        assert_eq!(
            r.headers,
            vec![(
                "Allow".to_string(),
                "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, REFER, NOTIFY".to_string()
            )]
        );
    }

    #[test]
    fn supported_require_passes_and_require_on_ack_is_ignored_rfc3261_8_2_2_3() {
        let ack = OPTIONS
            .replace("OPTIONS", "ACK")
            .replace("Content-Length", "Require: foo\r\nContent-Length");
        assert_eq!(status(&ack), None);
    }

    #[test]
    fn accept_with_wildcard_admits_sdp_rfc3261_20_1() {
        assert!(accepts_sdp("application/*"));
        assert!(accepts_sdp("*/*;q=0.1"));
        assert!(!accepts_sdp("application/sdp;q=0"));
        assert!(!accepts_sdp("text/nobodyKnowsThis"));
    }

    #[test]
    fn error_response_adds_to_tag_and_copies_headers_rfc3261_8_2_6() {
        let r = req(OPTIONS);
        let resp = build_error_response(&r, &Rejection::new(400, "test"), "t1");
        assert_eq!(resp.status, 400);
        assert_eq!(resp.headers.to_addr().unwrap().tag(), Some("t1"));
        assert_eq!(resp.headers.get("Via"), r.headers.get("Via"));
        assert_eq!(resp.headers.get("Content-Length"), Some("0"));
        let existing = build_error_response(
            &req(&OPTIONS.replace("192.0.2.10>", "192.0.2.10>;tag=x")),
            &Rejection::new(400, "test"),
            "t1",
        );
        assert_eq!(existing.headers.to_addr().unwrap().tag(), Some("x"));
    }

    #[test]
    fn response_with_two_vias_is_discarded_rfc3261_8_1_3_3() {
        let text = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2\r\n\
From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
        let SipMessage::Response(r) = parse_datagram(text.as_bytes()).unwrap() else {
            panic!("expected a response")
        };
        assert_eq!(
            check_response(&r),
            Err(ResponseDefect::ViaCount { count: 2 })
        );
    }
}
