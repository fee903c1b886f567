//! SIP messages: parsing, printing, URIs and typed headers (RFC 3261 §7,
//! §19, §20, §25).
//!
//! [`parse::parse_datagram`] frames a datagram into a [`SipMessage`] whose
//! headers are kept losslessly; typed values come from the accessors in
//! [`access`] and the types in [`header`]. [`validate`] holds the UAS/UAC
//! checks of RFC 3261 §8 and builds error responses.

pub mod access;
pub mod header;
pub mod headers;
pub mod message;
pub mod method;
pub mod params;
pub mod parse;
pub mod uri;
pub mod validate;

pub use header::{CSeq, NameAddr, Via};
pub use headers::{Header, Headers};
pub use message::{Request, Response, SipMessage, reason_phrase};
pub use method::Method;
pub use params::Params;
pub use parse::{ParseError, parse_datagram};
pub use uri::{Host, SipUri, Uri};
pub use validate::{
    ALLOWED_METHODS, Rejection, ResponseDefect, SUPPORTED, build_error_response, check_request,
    check_response,
};
