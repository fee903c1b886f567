//! Keeping the NAT binding of the SIP socket open and noticing when it
//! changes (RFC 5626 §3.5, §4.4), sans-IO.
//!
//! Every `interval` [`KeepAlive`] either sends a STUN Binding request to
//! the STUN server (when one is configured: the answer also tells whether
//! the public address moved) or a CRLF keep-alive to the registrar or
//! outbound proxy. The driver sends its [`NatOutput::Transmit`]s from the
//! SIP socket, feeds STUN answers to [`KeepAlive::handle_stun`] and calls
//! [`KeepAlive::handle_timeout`] at [`KeepAlive::poll_timeout`].

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::stun::{BindingClient, DEFAULT_RTO, Received};

/// RFC 5626 §4.4.1: a keep-alive often enough for UDP NAT bindings
/// (the RFC suggests a random time between 80 and 100% of 120 s for
/// STUN; home routers time out UDP after as little as 30 s, so less).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(25);

/// RFC 5626 §3.5.1: the CRLF keep-alive ("ping") on a datagram transport.
pub const CRLF_PING: &[u8] = b"\r\n\r\n";

/// What the keep-alive asks the shell to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NatOutput {
    /// Send this datagram from the SIP socket.
    Transmit { dest: SocketAddr, payload: Vec<u8> },
    /// The STUN server reports a public address other than the last one.
    PublicAddressChanged {
        previous: Option<SocketAddr>,
        current: SocketAddr,
    },
}

/// The keep-alive of one socket.
#[derive(Debug)]
pub struct KeepAlive {
    interval: Duration,
    stun: Option<SocketAddr>,
    /// Where CRLF keep-alives go (the registrar or outbound proxy).
    target: Option<SocketAddr>,
    next_at: Option<Instant>,
    probe: Option<BindingClient>,
    public: Option<SocketAddr>,
    out: VecDeque<NatOutput>,
    transaction_counter: u64,
    seed: u64,
}

impl KeepAlive {
    /// `public` is the address found at start-up, if any; `seed` makes the
    /// STUN transaction ids.
    pub fn new(
        interval: Duration,
        stun: Option<SocketAddr>,
        public: Option<SocketAddr>,
        seed: u64,
    ) -> KeepAlive {
        KeepAlive {
            interval,
            stun,
            target: None,
            next_at: None,
            probe: None,
            public,
            out: VecDeque::new(),
            transaction_counter: 0,
            seed,
        }
    }

    /// The last public address learnt.
    pub fn public(&self) -> Option<SocketAddr> {
        self.public
    }

    /// Starts (or retargets) keep-alives towards the registrar or outbound
    /// proxy; the first is sent one interval from `now`.
    pub fn set_target(&mut self, target: Option<SocketAddr>, now: Instant) {
        self.target = target;
        if self.interval.is_zero() || (target.is_none() && self.stun.is_none()) {
            self.next_at = None;
        } else if self.next_at.is_none() {
            self.next_at = Some(now + self.interval);
        }
    }

    /// Tells the keep-alive about a public address learnt another way
    /// (rport, RFC 3581), so a STUN answer with the same address is no
    /// change.
    pub fn set_public(&mut self, public: SocketAddr) {
        self.public = Some(public);
    }

    pub fn poll_output(&mut self) -> Option<NatOutput> {
        if let Some(p) = self.probe.as_mut()
            && let Some((dest, payload)) = p.poll_transmit()
        {
            return Some(NatOutput::Transmit { dest, payload });
        }
        self.out.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let probe = self.probe.as_ref().and_then(|p| p.poll_timeout());
        match (self.next_at, probe) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(p) = self.probe.as_mut() {
            p.handle_timeout(now);
            if let Some(Err(e)) = p.result() {
                tracing::debug!("keep-alive: {e}");
                self.probe = None;
            }
        }
        if self.next_at.is_some_and(|t| t <= now) {
            self.next_at = Some(now + self.interval);
            self.on_timer_keepalive(now);
        }
    }

    fn on_timer_keepalive(&mut self, now: Instant) {
        if let Some(server) = self.stun {
            if self.probe.is_none() {
                let id = self.next_transaction_id();
                self.probe = Some(BindingClient::new(server, id, DEFAULT_RTO, now));
            }
        } else if let Some(dest) = self.target {
            self.out.push_back(NatOutput::Transmit {
                dest,
                payload: CRLF_PING.to_vec(),
            });
        }
    }

    fn next_transaction_id(&mut self) -> [u8; 12] {
        self.transaction_counter += 1;
        let mut id = [0u8; 12];
        id[..8].copy_from_slice(&(self.seed ^ 0x9e37_79b9_7f4a_7c15).to_be_bytes());
        id[8..].copy_from_slice(&(self.transaction_counter as u32).to_be_bytes());
        id
    }

    /// A STUN datagram arrived on the SIP socket; true when it answered our
    /// probe.
    pub fn handle_stun(&mut self, data: &[u8], from: SocketAddr) -> bool {
        let Some(p) = self.probe.as_mut() else {
            return false;
        };
        if p.handle_datagram(data, from) != Received::Answer {
            return false;
        }
        if let Some(Ok(addr)) = p.result() {
            let addr = *addr;
            if self.public != Some(addr) {
                self.out.push_back(NatOutput::PublicAddressChanged {
                    previous: self.public,
                    current: addr,
                });
                self.public = Some(addr);
            }
        }
        self.probe = None;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nat::stun::encode_success;

    fn registrar() -> SocketAddr {
        "198.51.100.70:5060".parse().unwrap()
    }
    fn stun_server() -> SocketAddr {
        "198.51.100.71:3478".parse().unwrap()
    }

    #[test]
    fn crlf_keepalive_every_interval_rfc5626_3_5_1() {
        let t0 = Instant::now();
        let mut k = KeepAlive::new(Duration::from_secs(25), None, None, 1);
        k.set_target(Some(registrar()), t0);
        assert_eq!(k.poll_output(), None);
        assert_eq!(k.poll_timeout(), Some(t0 + Duration::from_secs(25)));
        let mut sent = Vec::new();
        let mut now = t0;
        while now < t0 + Duration::from_secs(80) {
            now = k.poll_timeout().unwrap();
            k.handle_timeout(now);
            while let Some(o) = k.poll_output() {
                assert_eq!(
                    o,
                    NatOutput::Transmit {
                        dest: registrar(),
                        payload: CRLF_PING.to_vec()
                    }
                );
                sent.push((now - t0).as_secs());
            }
        }
        assert_eq!(sent, vec![25, 50, 75, 100]);
    }

    #[test]
    fn stun_keepalive_reports_a_changed_mapping() {
        let t0 = Instant::now();
        let first: SocketAddr = "198.51.100.65:5060".parse().unwrap();
        let moved: SocketAddr = "198.51.100.65:61000".parse().unwrap();
        let mut k = KeepAlive::new(Duration::from_secs(10), Some(stun_server()), Some(first), 2);
        k.set_target(Some(registrar()), t0);
        let mut now = k.poll_timeout().unwrap();
        k.handle_timeout(now);
        let Some(NatOutput::Transmit { dest, payload }) = k.poll_output() else {
            panic!("a STUN request is due");
        };
        assert_eq!(dest, stun_server());
        // Same mapping: no event.
        assert!(k.handle_stun(&encode_success(&payload, first).unwrap(), stun_server()));
        assert_eq!(k.poll_output(), None);
        now = k.poll_timeout().unwrap();
        assert_eq!(now, t0 + Duration::from_secs(20));
        k.handle_timeout(now);
        let Some(NatOutput::Transmit { payload, .. }) = k.poll_output() else {
            panic!("a second STUN request is due");
        };
        assert!(k.handle_stun(&encode_success(&payload, moved).unwrap(), stun_server()));
        assert_eq!(
            k.poll_output(),
            Some(NatOutput::PublicAddressChanged {
                previous: Some(first),
                current: moved
            })
        );
        assert_eq!(k.public(), Some(moved));
    }

    #[test]
    fn unanswered_stun_probe_is_retransmitted_then_dropped() {
        let t0 = Instant::now();
        let mut k = KeepAlive::new(Duration::from_secs(25), Some(stun_server()), None, 3);
        k.set_target(None, t0);
        let mut now = k.poll_timeout().unwrap();
        let mut requests = 0;
        while now < t0 + Duration::from_secs(60) {
            k.handle_timeout(now);
            while let Some(o) = k.poll_output() {
                assert!(matches!(o, NatOutput::Transmit { dest, .. } if dest == stun_server()));
                requests += 1;
            }
            now = k.poll_timeout().unwrap();
        }
        // The probe started at 25 s sends its 7 requests (RFC 8489 §6.2.1:
        // 25, 25.5, 26.5, 28.5, 32.5, 40.5, 56.5 s); the keep-alive due at
        // 50 s starts no second probe while the first is still pending.
        assert_eq!(requests, 7);
    }
}
