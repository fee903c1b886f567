//! SIP requests and responses (RFC 3261 §7) and their serialization.

use super::headers::Headers;
use super::method::Method;

/// The only protocol version we speak (RFC 3261 §7.1).
pub const SIP_VERSION: &str = "SIP/2.0";

/// A SIP request. The Request-URI is kept as text and parsed on demand
/// ([`Request::uri`]) so that a request with a malformed one can still be
/// answered with 400 (RFC 4475 §3.1.2.7, §3.1.2.8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub uri: String,
    pub version: String,
    pub headers: Headers,
    pub body: Vec<u8>,
}

/// A SIP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub version: String,
    pub status: u16,
    pub reason: String,
    pub headers: Headers,
    pub body: Vec<u8>,
}

/// Either kind of SIP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SipMessage {
    Request(Request),
    Response(Response),
}

impl Request {
    /// A new request with no headers and no body.
    pub fn new(method: Method, uri: impl Into<String>) -> Request {
        Request {
            method,
            uri: uri.into(),
            version: SIP_VERSION.to_string(),
            headers: Headers::new(),
            body: Vec::new(),
        }
    }

    /// Serializes the request (RFC 3261 §7.1).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512 + self.body.len());
        out.extend_from_slice(self.method.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.uri.as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.version.as_bytes());
        out.extend_from_slice(b"\r\n");
        self.headers.write_to(&mut out);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }

    /// Sets the body with its Content-Type and Content-Length.
    pub fn set_body(&mut self, content_type: &str, body: Vec<u8>) {
        set_body(&mut self.headers, &mut self.body, content_type, body);
    }
}

impl Response {
    /// A new response with no headers and no body.
    pub fn new(status: u16, reason: impl Into<String>) -> Response {
        Response {
            version: SIP_VERSION.to_string(),
            status,
            reason: reason.into(),
            headers: Headers::new(),
            body: Vec::new(),
        }
    }

    /// Serializes the response (RFC 3261 §7.2).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512 + self.body.len());
        out.extend_from_slice(self.version.as_bytes());
        out.extend_from_slice(format!(" {} ", self.status).as_bytes());
        out.extend_from_slice(self.reason.as_bytes());
        out.extend_from_slice(b"\r\n");
        self.headers.write_to(&mut out);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }

    /// Sets the body with its Content-Type and Content-Length.
    pub fn set_body(&mut self, content_type: &str, body: Vec<u8>) {
        set_body(&mut self.headers, &mut self.body, content_type, body);
    }

    /// 1xx (RFC 3261 §7.2).
    pub fn is_provisional(&self) -> bool {
        self.status < 200
    }

    /// 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Content-Type and Content-Length go last, after the headers already set.
fn set_body(headers: &mut Headers, slot: &mut Vec<u8>, content_type: &str, body: Vec<u8>) {
    headers.remove("Content-Type");
    headers.remove("Content-Length");
    if !body.is_empty() {
        headers.push("Content-Type", content_type);
    }
    headers.push("Content-Length", body.len().to_string());
    *slot = body;
}

impl SipMessage {
    pub fn headers(&self) -> &Headers {
        match self {
            SipMessage::Request(r) => &r.headers,
            SipMessage::Response(r) => &r.headers,
        }
    }

    pub fn headers_mut(&mut self) -> &mut Headers {
        match self {
            SipMessage::Request(r) => &mut r.headers,
            SipMessage::Response(r) => &mut r.headers,
        }
    }

    pub fn body(&self) -> &[u8] {
        match self {
            SipMessage::Request(r) => &r.body,
            SipMessage::Response(r) => &r.body,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            SipMessage::Request(r) => r.to_bytes(),
            SipMessage::Response(r) => r.to_bytes(),
        }
    }
}

/// The standard reason phrase of a status code: RFC 3261 §21 and the codes
/// later RFCs registered with IANA (the RFC is named beside each). A code
/// nobody registered gets the name of its class (§7.2).
pub fn reason_phrase(status: u16) -> &'static str {
    registered_phrase(status).unwrap_or(match status / 100 {
        1 => "Provisional",
        2 => "Successful",
        3 => "Redirection",
        4 => "Request Failure",
        5 => "Server Failure",
        _ => "Global Failure",
    })
}

/// The phrase registered for `status`, if any.
fn registered_phrase(status: u16) -> Option<&'static str> {
    Some(match status {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        199 => "Early Dialog Terminated", // RFC 6228
        200 => "OK",
        202 => "Accepted",        // RFC 6665 (deprecated)
        204 => "No Notification", // RFC 5839
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        305 => "Use Proxy",
        380 => "Alternative Service",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        412 => "Conditional Request Failed", // RFC 3903
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        417 => "Unknown Resource-Priority", // RFC 4412
        420 => "Bad Extension",
        421 => "Extension Required",
        422 => "Session Interval Too Small", // RFC 4028
        423 => "Interval Too Brief",
        424 => "Bad Location Information",         // RFC 6442
        425 => "Bad Alert Message",                // RFC 8876
        428 => "Use Identity Header",              // RFC 8224
        429 => "Provide Referrer Identity",        // RFC 3892
        430 => "Flow Failed",                      // RFC 5626
        433 => "Anonymity Disallowed",             // RFC 5079
        436 => "Bad Identity Info",                // RFC 8224
        437 => "Unsupported Credential",           // RFC 8224
        438 => "Invalid Identity Header",          // RFC 8224
        439 => "First Hop Lacks Outbound Support", // RFC 5626
        440 => "Max-Breadth Exceeded",             // RFC 5393
        469 => "Bad Info Package",                 // RFC 6086
        470 => "Consent Needed",                   // RFC 5360
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        485 => "Ambiguous",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        489 => "Bad Event", // RFC 6665 §8.2.1
        491 => "Request Pending",
        493 => "Undecipherable",
        494 => "Security Agreement Required", // RFC 3329
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        555 => "Push Notification Service Not Supported", // RFC 8599
        580 => "Precondition Failure",                    // RFC 3312
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        607 => "Unwanted", // RFC 8197
        608 => "Rejected", // RFC 8688
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::reason_phrase;

    #[test]
    fn every_status_we_send_has_its_standard_reason_phrase() {
        let expected = [
            (100, "Trying"),
            (180, "Ringing"),
            (200, "OK"),
            (202, "Accepted"),
            (400, "Bad Request"),
            (401, "Unauthorized"),
            (403, "Forbidden"),
            (405, "Method Not Allowed"),
            (407, "Proxy Authentication Required"),
            (415, "Unsupported Media Type"),
            (416, "Unsupported URI Scheme"),
            (420, "Bad Extension"),
            (480, "Temporarily Unavailable"),
            (481, "Call/Transaction Does Not Exist"),
            (482, "Loop Detected"),
            (483, "Too Many Hops"),
            (486, "Busy Here"),
            (487, "Request Terminated"),
            (488, "Not Acceptable Here"),
            (489, "Bad Event"),
            (491, "Request Pending"),
            (500, "Server Internal Error"),
            (501, "Not Implemented"),
            (503, "Service Unavailable"),
            (505, "Version Not Supported"),
            (513, "Message Too Large"),
            (603, "Decline"),
            (606, "Not Acceptable"),
            (607, "Unwanted"),
        ];
        for (status, phrase) in expected {
            assert_eq!(reason_phrase(status), phrase, "{status}");
        }
    }

    #[test]
    fn unregistered_codes_get_their_class_name_not_unknown() {
        assert_eq!(reason_phrase(199), "Early Dialog Terminated");
        assert_eq!(reason_phrase(299), "Successful");
        assert_eq!(reason_phrase(499), "Request Failure");
        assert_eq!(reason_phrase(599), "Server Failure");
        assert_eq!(reason_phrase(699), "Global Failure");
        for status in 100..700 {
            assert_ne!(reason_phrase(status), "Unknown", "{status}");
        }
    }
}
