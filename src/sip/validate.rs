//! UAS-side request checks (RFC 3261 §8.2) and UAC-side response checks
//! (§8.1.3.3), mapping defects to the response the RFC names.

use super::message::{Request, Response, reason_phrase};
use super::method::Method;
use super::uri::Uri;

/// Methods a sipline user agent implements.
pub const ALLOWED_METHODS: &[&str] = &["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO"];

/// Option tags we support (none yet).
pub const SUPPORTED: &[&str] = &[];

/// Why a request is refused, and the response that says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    pub reason: &'static str,
    pub headers: Vec<(String, String)>,
    pub detail: String,
}

impl Rejection {
    fn new(status: u16, detail: impl Into<String>) -> Rejection {
        Rejection {
            status,
            reason: reason_phrase(status),
            headers: Vec::new(),
            detail: detail.into(),
        }
    }

    fn with(mut self, name: &str, value: String) -> Rejection {
        self.headers.push((name.to_string(), value));
        self
    }
}

/// A response the UAC must discard.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseDefect {
    #[error("response carries {count} Via values")]
    ExtraVia { count: usize },
    #[error("malformed header: {detail}")]
    Malformed { detail: String },
}

fn is_allowed(m: &Method) -> bool {
    ALLOWED_METHODS.contains(&m.as_str())
}

/// RFC 3261 §8.2: the checks a UAS makes before processing a request.
pub fn check_request(req: &Request) -> Result<(), Rejection> {
    if req.version != "SIP/2.0" {
        return Err(Rejection::new(505, format!("version {}", req.version)));
    }
    let h = &req.headers;
    let bad = |e: &dyn std::fmt::Display| Rejection::new(400, e.to_string());
    h.vias().map_err(|e| bad(&e))?;
    if h.list("Via").is_empty() {
        return Err(Rejection::new(400, "no Via"));
    }
    h.from_addr().map_err(|e| bad(&e))?;
    h.to_addr().map_err(|e| bad(&e))?;
    h.call_id().map_err(|e| bad(&e))?;
    let cseq = h.cseq().map_err(|e| bad(&e))?;
    if !is_allowed(&req.method) {
        return Err(Rejection::new(501, format!("method {}", req.method))
            .with("Allow", ALLOWED_METHODS.join(", ")));
    }
    if cseq.method != req.method {
        return Err(Rejection::new(
            400,
            "CSeq method differs from the request line",
        ));
    }
    let uri = Uri::parse(&req.uri).map_err(|e| bad(&e))?;
    if !matches!(uri, Uri::Sip(_)) {
        return Err(Rejection::new(416, format!("scheme of {}", req.uri)));
    }
    let unsupported: Vec<&str> = h
        .list("Require")
        .into_iter()
        .filter(|o| !SUPPORTED.iter().any(|s| s.eq_ignore_ascii_case(o)))
        .collect();
    if !unsupported.is_empty() && req.method != Method::Ack && req.method != Method::Cancel {
        return Err(
            Rejection::new(420, "unsupported Require").with("Unsupported", unsupported.join(", "))
        );
    }
    if !req.body.is_empty() && matches!(req.method, Method::Invite | Method::Ack) {
        match h.content_type() {
            Some(ct) if ct == "application/sdp" => {}
            _ => {
                return Err(Rejection::new(415, "body is not SDP")
                    .with("Accept", "application/sdp".to_string()));
            }
        }
    }
    Ok(())
}

/// RFC 3261 §8.1.3.3: a UAC discards a response with more than one Via.
pub fn check_response(resp: &Response) -> Result<(), ResponseDefect> {
    let count = resp.headers.list("Via").len();
    if count != 1 {
        return Err(ResponseDefect::ExtraVia { count });
    }
    resp.headers.cseq().map_err(|e| ResponseDefect::Malformed {
        detail: e.to_string(),
    })?;
    Ok(())
}

/// RFC 3261 §8.2.6: the error response for a refused request, copying the
/// raw Via, From, To (with our tag), Call-ID and CSeq rows.
pub fn build_error_response(req: &Request, rejection: &Rejection, to_tag: &str) -> Response {
    let mut resp = Response::new(rejection.status, rejection.reason);
    resp.headers.copy_from(&req.headers, "Via");
    resp.headers.copy_from(&req.headers, "From");
    match req.headers.get("To") {
        Some(to) if !to.contains("tag=") => resp.headers.push("To", format!("{to};tag={to_tag}")),
        _ => resp.headers.copy_from(&req.headers, "To"),
    }
    resp.headers.copy_from(&req.headers, "Call-ID");
    resp.headers.copy_from(&req.headers, "CSeq");
    for (n, v) in &rejection.headers {
        resp.headers.push(n.clone(), v.clone());
    }
    resp.headers.push("Content-Length", "0");
    resp
}
