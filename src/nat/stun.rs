//! STUN Binding transactions (RFC 8489), sans-IO, on a socket shared with
//! SIP or RTP.
//!
//! [`BindingClient`] owns one Binding request to one server: the caller
//! sends what [`BindingClient::poll_transmit`] yields from the socket whose
//! mapping it wants to learn, feeds every datagram that [`is_stun`] accepts
//! to [`BindingClient::handle_datagram`], and calls
//! [`BindingClient::handle_timeout`] at [`BindingClient::poll_timeout`].
//! Messages are encoded and decoded with the `stun` crate, which does no
//! I/O of its own.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use stun::attributes::{ATTR_FINGERPRINT, ATTR_MAPPED_ADDRESS, ATTR_XORMAPPED_ADDRESS};
use stun::fingerprint::FINGERPRINT;
use stun::message::{BINDING_ERROR, BINDING_REQUEST, BINDING_SUCCESS, Message, Setter};
use stun::xoraddr::XorMappedAddress;

/// RFC 8489 §6.2.1: the recommended initial retransmission timeout.
pub const DEFAULT_RTO: Duration = Duration::from_millis(500);
/// RFC 8489 §6.2.1: Rc, the number of requests sent in all.
pub const RC: u32 = 7;
/// RFC 8489 §6.2.1: Rm, how many RTOs to wait after the last request.
pub const RM: u32 = 16;

/// RFC 7983 §7 (and RFC 5764 §5.1.2): a datagram whose first byte is 0..=3
/// is STUN. SIP starts with a letter (or CR/LF for keep-alives), RTP and
/// RTCP with 128..=191. Also checks the magic cookie (RFC 8489 §6) so a
/// stray binary datagram is not taken for STUN.
pub fn is_stun(datagram: &[u8]) -> bool {
    datagram.len() >= 20
        && datagram[0] <= 3
        && datagram[4..8] == stun::message::MAGIC_COOKIE.to_be_bytes()
}

/// Why a Binding transaction failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StunError {
    /// RFC 8489 §6.2.1: no response after Rc requests and Rm·RTO.
    #[error("no answer from STUN server {server} after {requests} requests")]
    Timeout { server: SocketAddr, requests: u32 },
    /// The server answered with a Binding error response.
    #[error("STUN server {server} answered with error {code}")]
    ErrorResponse { server: SocketAddr, code: u16 },
    /// A success response without a usable (XOR-)MAPPED-ADDRESS.
    #[error("STUN server {server} sent no mapped address")]
    NoMappedAddress { server: SocketAddr },
    /// The request could not be encoded.
    #[error("cannot encode a STUN request")]
    Encode,
    /// The server name does not resolve or is malformed.
    #[error("cannot resolve STUN server {server:?} (give host[:port])")]
    BadServer { server: String },
}

/// What a datagram handed to [`BindingClient::handle_datagram`] was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// The answer to our transaction: the result is now known.
    Answer,
    /// STUN, but not for us (other transaction, bad FINGERPRINT, not a
    /// response): dropped.
    Ignored,
}

/// One Binding request and its retransmissions (RFC 8489 §6.2.1, §7.3).
#[derive(Debug)]
pub struct BindingClient {
    server: SocketAddr,
    transaction: [u8; 12],
    request: Vec<u8>,
    rto: Duration,
    sent: u32,
    /// When the next request goes out (or, after the last, when we give up).
    deadline: Instant,
    pending_transmit: bool,
    result: Option<Result<SocketAddr, StunError>>,
}

impl BindingClient {
    /// A Binding request to `server` with transaction id `transaction`
    /// (96 random bits, RFC 8489 §5), first sent at `now`.
    pub fn new(
        server: SocketAddr,
        transaction: [u8; 12],
        rto: Duration,
        now: Instant,
    ) -> BindingClient {
        let mut client = BindingClient {
            server,
            transaction,
            request: Vec::new(),
            rto,
            sent: 1,
            deadline: now + rto,
            pending_transmit: true,
            result: None,
        };
        match encode_request(transaction) {
            Some(bytes) => client.request = bytes,
            None => {
                client.pending_transmit = false;
                client.result = Some(Err(StunError::Encode));
            }
        }
        client
    }

    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// How many requests have gone out (the first and retransmissions).
    pub fn requests_sent(&self) -> u32 {
        if self.pending_transmit {
            self.sent - 1
        } else {
            self.sent
        }
    }

    /// The outcome once known: our public address as the server saw it.
    pub fn result(&self) -> Option<&Result<SocketAddr, StunError>> {
        self.result.as_ref()
    }

    /// The request to send now, if one is due.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        if !self.pending_transmit || self.result.is_some() {
            return None;
        }
        self.pending_transmit = false;
        Some((self.server, self.request.clone()))
    }

    /// When [`BindingClient::handle_timeout`] must run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.result.is_some() {
            None
        } else {
            Some(self.deadline)
        }
    }

    /// RFC 8489 §6.2.1: the RTO doubles after each request; after Rc
    /// requests the client waits Rm·RTO for an answer, then fails.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.result.is_some() || now < self.deadline {
            return;
        }
        if self.sent == RC {
            self.result = Some(Err(StunError::Timeout {
                server: self.server,
                requests: self.sent,
            }));
            return;
        }
        self.on_timer_retransmit(now);
    }

    fn on_timer_retransmit(&mut self, now: Instant) {
        // RFC 8489 §6.2.1: the n-th request waits 2^(n-1)·RTO; after the
        // last one the wait is Rm·RTO.
        self.sent += 1;
        let wait = if self.sent == RC {
            self.rto * RM
        } else {
            self.rto * (1u32 << (self.sent - 1))
        };
        self.pending_transmit = true;
        self.deadline = now + wait;
    }

    /// A STUN datagram arrived from `from`. RFC 8489 §6.3: only a response
    /// with our transaction id counts, and when it carries a FINGERPRINT
    /// the CRC must match (§14.7); else it is dropped.
    pub fn handle_datagram(&mut self, data: &[u8], from: SocketAddr) -> Received {
        if self.result.is_some() || !is_stun(data) {
            return Received::Ignored;
        }
        let mut msg = Message::new();
        if msg.unmarshal_binary(data).is_err() || msg.transaction_id.0 != self.transaction {
            return Received::Ignored;
        }
        if msg.contains(ATTR_FINGERPRINT) && FINGERPRINT.check(&msg).is_err() {
            return Received::Ignored;
        }
        let _ = from;
        if msg.typ == BINDING_SUCCESS {
            self.result = Some(mapped_address(&msg).ok_or(StunError::NoMappedAddress {
                server: self.server,
            }));
            Received::Answer
        } else if msg.typ == BINDING_ERROR {
            self.result = Some(Err(StunError::ErrorResponse {
                server: self.server,
                code: error_code(&msg),
            }));
            Received::Answer
        } else {
            Received::Ignored
        }
    }
}

/// A Binding request with FINGERPRINT (RFC 8489 §14.7).
fn encode_request(transaction: [u8; 12]) -> Option<Vec<u8>> {
    let mut msg = Message::new();
    msg.set_type(BINDING_REQUEST);
    msg.transaction_id = stun::agent::TransactionId(transaction);
    msg.write_header();
    FINGERPRINT.add_to(&mut msg).ok()?;
    msg.marshal_binary().ok()
}

/// RFC 8489 §14.2: XOR-MAPPED-ADDRESS, else the classic MAPPED-ADDRESS
/// (§14.1) of RFC 3489 servers.
fn mapped_address(msg: &Message) -> Option<SocketAddr> {
    let mut xor = XorMappedAddress::default();
    if xor.get_from_as(msg, ATTR_XORMAPPED_ADDRESS).is_ok() {
        return Some(SocketAddr::new(xor.ip, xor.port));
    }
    let mut plain = stun::addr::MappedAddress::default();
    if plain.get_from_as(msg, ATTR_MAPPED_ADDRESS).is_ok() {
        return Some(SocketAddr::new(plain.ip, plain.port));
    }
    None
}

/// RFC 8489 §14.8: class·100 + number.
fn error_code(msg: &Message) -> u16 {
    let mut code = stun::error_code::ErrorCodeAttribute::default();
    use stun::message::Getter;
    match code.get_from(msg) {
        Ok(()) => code.code.0,
        Err(_) => 0,
    }
}

/// A Binding success response for `request`, as a server would send it
/// (used by tests and by the in-process test server).
pub fn encode_success(request: &[u8], mapped: SocketAddr) -> Option<Vec<u8>> {
    let mut req = Message::new();
    req.unmarshal_binary(request).ok()?;
    if req.typ != BINDING_REQUEST {
        return None;
    }
    let mut msg = Message::new();
    msg.set_type(BINDING_SUCCESS);
    msg.transaction_id = req.transaction_id;
    msg.write_header();
    XorMappedAddress {
        ip: mapped.ip(),
        port: mapped.port(),
    }
    .add_to(&mut msg)
    .ok()?;
    FINGERPRINT.add_to(&mut msg).ok()?;
    msg.marshal_binary().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> SocketAddr {
        "198.51.100.70:3478".parse().unwrap()
    }

    fn mapped() -> SocketAddr {
        "198.51.100.65:40000".parse().unwrap()
    }

    #[test]
    fn request_is_a_binding_request_with_valid_fingerprint_rfc8489_14_7() {
        let t0 = Instant::now();
        let mut c = BindingClient::new(server(), [7; 12], DEFAULT_RTO, t0);
        let (dest, bytes) = c.poll_transmit().expect("first request due at once");
        assert_eq!(dest, server());
        assert!(is_stun(&bytes));
        let mut msg = Message::new();
        msg.unmarshal_binary(&bytes).unwrap();
        assert_eq!(msg.typ, BINDING_REQUEST);
        assert_eq!(msg.transaction_id.0, [7; 12]);
        assert!(FINGERPRINT.check(&msg).is_ok());
        assert_eq!(c.poll_transmit(), None, "sent once until the timer fires");
    }

    #[test]
    fn retransmits_with_doubling_rto_then_times_out_rfc8489_6_2_1() {
        // RFC 8489 §6.2.1 example: with RTO 500 ms, requests at 0, 500,
        // 1500, 3500, 7500, 15500 and 31500 ms; failure at 39500 ms.
        let t0 = Instant::now();
        let mut c = BindingClient::new(server(), [1; 12], DEFAULT_RTO, t0);
        let mut now = t0;
        let mut sent_at = Vec::new();
        loop {
            c.handle_timeout(now);
            if c.result().is_some() {
                break;
            }
            if c.poll_transmit().is_some() {
                sent_at.push((now - t0).as_millis());
            }
            now = c.poll_timeout().expect("pending until it fails");
        }
        assert_eq!(sent_at, vec![0, 500, 1500, 3500, 7500, 15500, 31500]);
        assert_eq!((now - t0).as_millis(), 39500);
        assert_eq!(
            c.result(),
            Some(&Err(StunError::Timeout {
                server: server(),
                requests: 7
            }))
        );
    }

    #[test]
    fn success_response_gives_xor_mapped_address_rfc8489_14_2() {
        let t0 = Instant::now();
        let mut c = BindingClient::new(server(), [2; 12], DEFAULT_RTO, t0);
        let (_, req) = c.poll_transmit().unwrap();
        let resp = encode_success(&req, mapped()).unwrap();
        assert_eq!(c.handle_datagram(&resp, server()), Received::Answer);
        assert_eq!(c.result(), Some(&Ok(mapped())));
        assert_eq!(c.poll_timeout(), None);
        assert_eq!(c.poll_transmit(), None);
    }

    #[test]
    fn response_with_bad_fingerprint_is_dropped_rfc8489_14_7() {
        let t0 = Instant::now();
        let mut c = BindingClient::new(server(), [3; 12], DEFAULT_RTO, t0);
        let (_, req) = c.poll_transmit().unwrap();
        let mut resp = encode_success(&req, mapped()).unwrap();
        let last = resp.len() - 1;
        resp[last] ^= 0xff;
        assert_eq!(c.handle_datagram(&resp, server()), Received::Ignored);
        assert_eq!(c.result(), None);
    }

    #[test]
    fn response_to_another_transaction_is_dropped_rfc8489_6_3() {
        let t0 = Instant::now();
        let mut c = BindingClient::new(server(), [4; 12], DEFAULT_RTO, t0);
        let _ = c.poll_transmit().unwrap();
        let other = encode_request([5; 12]).unwrap();
        let resp = encode_success(&other, mapped()).unwrap();
        assert_eq!(c.handle_datagram(&resp, server()), Received::Ignored);
        assert_eq!(c.result(), None);
    }

    #[test]
    fn sip_and_rtp_are_not_stun_rfc7983_7() {
        assert!(!is_stun(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP x\r\n\r\n"));
        assert!(!is_stun(b"\r\n\r\n"));
        let mut rtp = vec![0x80, 0x00];
        rtp.extend_from_slice(&[0; 30]);
        assert!(!is_stun(&rtp));
        // First byte 0..=3 but no magic cookie: not STUN either.
        assert!(!is_stun(&[0u8; 24]));
        assert!(is_stun(&encode_request([9; 12]).unwrap()));
    }

    #[test]
    fn garbage_stun_like_datagram_does_not_panic() {
        let t0 = Instant::now();
        let mut c = BindingClient::new(server(), [6; 12], DEFAULT_RTO, t0);
        let mut d = encode_request([6; 12]).unwrap();
        d[3] = 200; // length beyond the datagram
        assert_eq!(c.handle_datagram(&d, server()), Received::Ignored);
        assert_eq!(c.handle_datagram(&d[..20], server()), Received::Ignored);
    }
}
