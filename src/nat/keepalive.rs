//! Keeping the NAT bindings of the SIP socket open and noticing when they
//! change (RFC 5626 §3.5, §4.4), sans-IO.
//!
//! [`KeepAlive`] knows the flows to keep open: one per registrar or
//! outbound proxy ([`KeepAlive::add_target`]), plus the STUN server when
//! one is configured. Every `interval` it sends, on each flow:
//!
//! - to a registrar whose STUN support is not known yet: a CRLF keep-alive
//!   and a STUN Binding request (RFC 5626 §4.4.2: STUN keep-alives on the
//!   SIP port). When the registrar answers, its flow uses STUN from then on
//!   — each answer also says whether our public address moved; when it
//!   does not, the flow falls back to CRLF (§4.4.1, double CRLF on UDP);
//! - to the STUN server: a Binding request, whose answers reveal a new
//!   mapping after the NAT restarted.
//!
//! The shell sends every [`NatOutput::Transmit`] from the SIP socket,
//! feeds STUN datagrams ([`super::is_stun`]) to [`KeepAlive::handle_stun`]
//! and calls [`KeepAlive::handle_timeout`] at [`KeepAlive::poll_timeout`].

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::stun::{BindingClient, DEFAULT_RTO, Received};

/// A keep-alive often enough for UDP NAT bindings: RFC 5626 §4.4.1 asks
/// for 80–100 % of 120 s for STUN, but home routers drop idle UDP
/// mappings after as little as 30 s, so less.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(25);

/// RFC 5626 §3.5.1: the CRLF keep-alive ("ping") on a datagram transport.
pub const CRLF_PING: &[u8] = b"\r\n\r\n";

/// What the keep-alive asks the shell to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NatOutput {
    /// Send this datagram from the SIP socket.
    Transmit { dest: SocketAddr, payload: Vec<u8> },
    /// A STUN answer from `server` shows a public address other than the
    /// one it showed before: the NAT's mapping changed.
    MappingChanged {
        server: SocketAddr,
        previous: SocketAddr,
        current: SocketAddr,
    },
    /// A STUN answer from `server` shows our public address for the first
    /// time.
    MappingLearnt {
        server: SocketAddr,
        current: SocketAddr,
    },
}

/// How a flow is kept alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowMode {
    /// A registrar whose STUN support is not known yet: CRLF and a STUN
    /// probe.
    Probing,
    /// STUN Binding requests (the registrar answers them, or this is the
    /// STUN server).
    Stun,
    /// Double-CRLF pings (RFC 5626 §3.5.1).
    Crlf,
}

#[derive(Debug)]
struct Flow {
    dest: SocketAddr,
    mode: FlowMode,
    probe: Option<BindingClient>,
    /// The public address the last STUN answer on this flow showed.
    public: Option<SocketAddr>,
}

/// The keep-alives of one SIP socket.
#[derive(Debug)]
pub struct KeepAlive {
    interval: Duration,
    flows: Vec<Flow>,
    next_at: Option<Instant>,
    out: VecDeque<NatOutput>,
    transaction_counter: u32,
    seed: u64,
}

impl KeepAlive {
    /// Keep-alives every `interval` (zero: none); `seed` makes the STUN
    /// transaction ids.
    pub fn new(interval: Duration, seed: u64) -> KeepAlive {
        KeepAlive {
            interval,
            flows: Vec::new(),
            next_at: None,
            out: VecDeque::new(),
            transaction_counter: 0,
            seed,
        }
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Keeps the flow to the STUN server `server` open and watches its
    /// mapping; `public` is what the start-up request found.
    pub fn set_stun_server(
        &mut self,
        server: SocketAddr,
        public: Option<SocketAddr>,
        now: Instant,
    ) {
        self.add_flow(server, FlowMode::Stun, now);
        if let Some(f) = self.flows.iter_mut().find(|f| f.dest == server) {
            f.mode = FlowMode::Stun;
            f.public = public.or(f.public);
        }
    }

    /// Keeps the flow to a registrar or outbound proxy open; the first
    /// keep-alive goes one interval from `now`. Adding a known target
    /// changes nothing.
    pub fn add_target(&mut self, target: SocketAddr, now: Instant) {
        self.add_flow(target, FlowMode::Probing, now);
    }

    fn add_flow(&mut self, dest: SocketAddr, mode: FlowMode, now: Instant) {
        if !self.flows.iter().any(|f| f.dest == dest) {
            self.flows.push(Flow {
                dest,
                mode,
                probe: None,
                public: None,
            });
        }
        if !self.interval.is_zero() && self.next_at.is_none() {
            self.next_at = Some(now + self.interval);
        }
    }

    /// How the flow to `dest` is kept alive, if it is one of ours.
    pub fn mode(&self, dest: SocketAddr) -> Option<FlowMode> {
        self.flows.iter().find(|f| f.dest == dest).map(|f| f.mode)
    }

    pub fn poll_output(&mut self) -> Option<NatOutput> {
        for f in &mut self.flows {
            if let Some(p) = f.probe.as_mut()
                && let Some((dest, payload)) = p.poll_transmit()
            {
                return Some(NatOutput::Transmit { dest, payload });
            }
        }
        self.out.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.flows
            .iter()
            .filter_map(|f| f.probe.as_ref().and_then(|p| p.poll_timeout()))
            .chain(self.next_at)
            .min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        for f in &mut self.flows {
            let failed = match f.probe.as_mut() {
                Some(p) => {
                    p.handle_timeout(now);
                    matches!(p.result(), Some(Err(_)))
                }
                None => false,
            };
            if failed {
                f.probe = None;
                if f.mode == FlowMode::Probing {
                    // RFC 5626 §4.4.1: the registrar does not speak STUN
                    // on its SIP port; CRLF from now on.
                    f.mode = FlowMode::Crlf;
                }
            }
        }
        if self.next_at.is_some_and(|t| t <= now) {
            self.next_at = Some(now + self.interval);
            self.on_timer_keepalive(now);
        }
    }

    fn on_timer_keepalive(&mut self, now: Instant) {
        for i in 0..self.flows.len() {
            let (dest, mode) = (self.flows[i].dest, self.flows[i].mode);
            if mode != FlowMode::Stun {
                self.out.push_back(NatOutput::Transmit {
                    dest,
                    payload: CRLF_PING.to_vec(),
                });
            }
            if mode != FlowMode::Crlf && self.flows[i].probe.is_none() {
                let id = self.next_transaction_id();
                self.flows[i].probe = Some(BindingClient::new(dest, id, DEFAULT_RTO, now));
            }
        }
    }

    fn next_transaction_id(&mut self) -> [u8; 12] {
        self.transaction_counter = self.transaction_counter.wrapping_add(1);
        let mut id = [0u8; 12];
        id[..8].copy_from_slice(&(self.seed ^ 0x9e37_79b9_7f4a_7c15).to_be_bytes());
        id[8..].copy_from_slice(&self.transaction_counter.to_be_bytes());
        id
    }

    /// A STUN datagram arrived on the SIP socket; true when it answered one
    /// of our requests.
    pub fn handle_stun(&mut self, data: &[u8], from: SocketAddr) -> bool {
        let Some(f) = self
            .flows
            .iter_mut()
            .find(|f| f.probe.is_some() && f.dest == from)
        else {
            return false;
        };
        let Some(p) = f.probe.as_mut() else {
            return false;
        };
        if p.handle_datagram(data, from) != Received::Answer {
            return false;
        }
        if let Some(Ok(addr)) = p.result() {
            let addr = *addr;
            if f.mode == FlowMode::Probing {
                f.mode = FlowMode::Stun;
            }
            match f.public {
                Some(previous) if previous != addr => {
                    self.out.push_back(NatOutput::MappingChanged {
                        server: f.dest,
                        previous,
                        current: addr,
                    })
                }
                None => self.out.push_back(NatOutput::MappingLearnt {
                    server: f.dest,
                    current: addr,
                }),
                Some(_) => {}
            }
            f.public = Some(addr);
        }
        f.probe = None;
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
    fn public() -> SocketAddr {
        "198.51.100.65:5060".parse().unwrap()
    }

    /// Runs the keep-alive until `until`, answering STUN requests to
    /// `answering` with `mapped`; returns (seconds since t0, dest, is CRLF)
    /// of every datagram sent and the other outputs.
    fn drive(
        k: &mut KeepAlive,
        t0: Instant,
        until: Duration,
        answering: &[SocketAddr],
        mapped: SocketAddr,
    ) -> (Vec<(f64, SocketAddr, bool)>, Vec<NatOutput>) {
        let mut sent = Vec::new();
        let mut events = Vec::new();
        let mut now = t0;
        loop {
            while let Some(o) = k.poll_output() {
                match o {
                    NatOutput::Transmit { dest, payload } => {
                        let crlf = payload == CRLF_PING;
                        sent.push(((now - t0).as_secs_f64(), dest, crlf));
                        if !crlf && answering.contains(&dest) {
                            let resp = encode_success(&payload, mapped).unwrap();
                            assert!(k.handle_stun(&resp, dest));
                        }
                    }
                    other => events.push(other),
                }
            }
            match k.poll_timeout() {
                Some(t) if t - t0 <= until => now = t,
                _ => break,
            }
            k.handle_timeout(now);
        }
        (sent, events)
    }

    #[test]
    fn crlf_keepalive_every_interval_when_the_registrar_ignores_stun_rfc5626_3_5_1() {
        let t0 = Instant::now();
        let mut k = KeepAlive::new(Duration::from_secs(25), 1);
        k.add_target(registrar(), t0);
        assert_eq!(k.poll_output(), None, "nothing before the first interval");
        assert_eq!(k.poll_timeout(), Some(t0 + Duration::from_secs(25)));
        let (sent, events) = drive(&mut k, t0, Duration::from_secs(110), &[], public());
        let crlf: Vec<f64> = sent.iter().filter(|s| s.2).map(|s| s.0).collect();
        assert_eq!(crlf, vec![25.0, 50.0, 75.0, 100.0]);
        // The first round also probes STUN support (RFC 8489 §6.2.1
        // retransmissions of one request); nobody answers, so the flow
        // turns to CRLF only and no further probe starts.
        let stun: Vec<f64> = sent.iter().filter(|s| !s.2).map(|s| s.0).collect();
        assert_eq!(stun, vec![25.0, 25.5, 26.5, 28.5, 32.5, 40.5, 56.5]);
        assert_eq!(k.mode(registrar()), Some(FlowMode::Crlf));
        assert!(events.is_empty());
    }

    #[test]
    fn registrar_answering_stun_gets_stun_keepalives_only_rfc5626_4_4_2() {
        let t0 = Instant::now();
        let mut k = KeepAlive::new(Duration::from_secs(10), 2);
        k.add_target(registrar(), t0);
        let (sent, events) = drive(
            &mut k,
            t0,
            Duration::from_secs(45),
            &[registrar()],
            public(),
        );
        assert_eq!(
            sent,
            vec![
                (10.0, registrar(), false),
                (10.0, registrar(), true),
                (20.0, registrar(), false),
                (30.0, registrar(), false),
                (40.0, registrar(), false),
            ]
        );
        assert_eq!(k.mode(registrar()), Some(FlowMode::Stun));
        assert_eq!(
            events,
            vec![NatOutput::MappingLearnt {
                server: registrar(),
                current: public()
            }]
        );
    }

    #[test]
    fn stun_answer_with_a_new_address_reports_the_mapping_change() {
        let t0 = Instant::now();
        let moved: SocketAddr = "198.51.100.65:61000".parse().unwrap();
        let mut k = KeepAlive::new(Duration::from_secs(10), 3);
        k.set_stun_server(stun_server(), Some(public()), t0);
        let (_, events) = drive(
            &mut k,
            t0,
            Duration::from_secs(15),
            &[stun_server()],
            public(),
        );
        assert!(events.is_empty(), "same mapping: no event");
        let (_, events) = drive(&mut k, t0, Duration::from_secs(25), &[stun_server()], moved);
        assert_eq!(
            events,
            vec![NatOutput::MappingChanged {
                server: stun_server(),
                previous: public(),
                current: moved
            }]
        );
    }

    #[test]
    fn stun_from_a_stranger_is_not_taken_as_an_answer() {
        let t0 = Instant::now();
        let mut k = KeepAlive::new(Duration::from_secs(10), 4);
        k.set_stun_server(stun_server(), None, t0);
        k.handle_timeout(t0 + Duration::from_secs(10));
        let Some(NatOutput::Transmit { payload, .. }) = k.poll_output() else {
            panic!("a STUN request is due");
        };
        let resp = encode_success(&payload, public()).unwrap();
        let stranger: SocketAddr = "198.51.100.99:3478".parse().unwrap();
        assert!(!k.handle_stun(&resp, stranger));
        assert!(k.handle_stun(&resp, stun_server()));
    }

    #[test]
    fn interval_zero_sends_nothing() {
        let t0 = Instant::now();
        let mut k = KeepAlive::new(Duration::ZERO, 5);
        k.add_target(registrar(), t0);
        k.set_stun_server(stun_server(), None, t0);
        assert_eq!(k.poll_timeout(), None);
        assert_eq!(k.poll_output(), None);
    }
}
