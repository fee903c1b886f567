//! RFC 5780 NAT behaviour discovery as a plain state machine: which Binding
//! request to send next, from which of two sockets, and what the answers
//! mean. `nat_check.rs` sends the requests (through `stun-client`) and feeds
//! the answers back; nothing here touches a socket or a clock.
//!
//! The sequence (RFC 5780 §4.3 mapping, §4.4 filtering):
//!
//! 1. Mapping test I: from socket A to the server's primary address. The
//!    XOR-MAPPED-ADDRESS is our public address; OTHER-ADDRESS names the
//!    server's alternate IP and port. Same as our local address: no NAT.
//! 2. Mapping test II: from A to the alternate IP, primary port. Same mapped
//!    address as test I: endpoint-independent mapping.
//! 3. Mapping test III: from A to the alternate IP and port. Same mapped
//!    address as test II: address-dependent; else address-and-port-dependent.
//! 4. Filtering tests from a second socket B, so that the holes A punched
//!    towards the alternate address cannot let the answers in: test I to the
//!    primary address (opens the mapping), test II with CHANGE-REQUEST
//!    "change IP and port" (an answer: endpoint-independent filtering), test
//!    III with "change port" only (an answer: address-dependent; none:
//!    address-and-port-dependent).

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// Which local socket a probe leaves from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Socket {
    /// The socket of the mapping tests.
    Mapping,
    /// A second socket, with a fresh NAT mapping, for the filtering tests.
    Filtering,
}

/// One Binding request to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub socket: Socket,
    pub to: SocketAddr,
    /// RFC 5780 §7.2 CHANGE-REQUEST flags.
    pub change_ip: bool,
    pub change_port: bool,
}

/// What a Binding success response said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// XOR-MAPPED-ADDRESS (RFC 8489 §14.2).
    pub mapped: SocketAddr,
    /// OTHER-ADDRESS (RFC 5780 §7.4).
    pub other: Option<SocketAddr>,
    /// RESPONSE-ORIGIN (RFC 5780 §7.3): where the server sent the answer from.
    pub origin: Option<SocketAddr>,
}

/// The outcome of one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Answer(Answer),
    /// A Binding error response (e.g. 420 for an unsupported CHANGE-REQUEST).
    Error {
        code: u16,
    },
    /// No answer after every retransmission.
    NoAnswer,
}

/// RFC 5780 §4.3 mapping behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapping {
    /// The server saw our local address: no NAT on the path.
    NoNat,
    EndpointIndependent,
    AddressDependent,
    AddressAndPortDependent,
    /// The server cannot tell (no OTHER-ADDRESS, or a test got no answer).
    Unknown,
}

/// RFC 5780 §4.4 filtering behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filtering {
    EndpointIndependent,
    AddressDependent,
    AddressAndPortDependent,
    /// The server cannot tell (no OTHER-ADDRESS, CHANGE-REQUEST refused or
    /// ignored).
    Unknown,
}

impl Mapping {
    pub fn as_str(self) -> &'static str {
        match self {
            Mapping::NoNat => "none (no NAT)",
            Mapping::EndpointIndependent => "endpoint-independent",
            Mapping::AddressDependent => "address-dependent",
            Mapping::AddressAndPortDependent => "address-and-port-dependent",
            Mapping::Unknown => "unknown",
        }
    }
}

impl Filtering {
    pub fn as_str(self) -> &'static str {
        match self {
            Filtering::EndpointIndependent => "endpoint-independent",
            Filtering::AddressDependent => "address-dependent",
            Filtering::AddressAndPortDependent => "address-and-port-dependent",
            Filtering::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Mapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Filtering {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why discovery could not even start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    #[error("no answer from the STUN server {server}")]
    NoAnswer { server: SocketAddr },
    #[error("the STUN server {server} answered the Binding request with error {code}")]
    ErrorResponse { server: SocketAddr, code: u16 },
}

/// The finished report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub local: SocketAddr,
    pub public: SocketAddr,
    pub server: SocketAddr,
    /// The server's alternate address, when it supports RFC 5780.
    pub other: Option<SocketAddr>,
    pub mapping: Mapping,
    pub filtering: Filtering,
    /// Why a behaviour is unknown, for the user.
    pub notes: Vec<String>,
}

impl Report {
    /// Whether the public address differs from the local one.
    pub fn behind_nat(&self) -> bool {
        self.public != self.local
    }

    /// One line of advice.
    pub fn advice(&self) -> &'static str {
        match (self.mapping, self.filtering) {
            (Mapping::NoNat, _) => {
                "No NAT between this host and the STUN server: no NAT settings are needed."
            }
            (Mapping::EndpointIndependent, _) => {
                "The NAT keeps one public address per socket: set `stun` (or rely on rport) \
                 and keep-alives will hold the mapping; no relay is needed."
            }
            (Mapping::AddressDependent | Mapping::AddressAndPortDependent, _) => {
                "Symmetric NAT: the public address changes with the destination, so peers \
                 cannot use the one STUN finds; calls will need a media relay (TURN or the \
                 provider's RTP proxy)."
            }
            (Mapping::Unknown, _) if self.behind_nat() => {
                "Behind a NAT, but the server cannot tell its behaviour (it needs two IP \
                 addresses, RFC 5780): try another STUN server."
            }
            (Mapping::Unknown, _) => {
                "The public address equals the local one; the server cannot test more \
                 (it needs two IP addresses, RFC 5780)."
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    MappingI,
    MappingII,
    MappingIII,
    FilteringI,
    FilteringII,
    FilteringIII,
    Done,
}

/// The discovery state machine: call [`Discovery::poll_probe`], send that
/// probe, feed its [`Outcome`] to [`Discovery::handle_outcome`], until
/// `poll_probe` returns `None`; then [`Discovery::report`].
#[derive(Debug, Clone)]
pub struct Discovery {
    server: SocketAddr,
    local: SocketAddr,
    step: Step,
    public: Option<SocketAddr>,
    other: Option<SocketAddr>,
    mapped_ii: Option<SocketAddr>,
    mapping: Mapping,
    filtering: Filtering,
    notes: Vec<String>,
    error: Option<DiscoveryError>,
}

impl Discovery {
    /// `local` is the address of the mapping socket (a concrete IP, not
    /// 0.0.0.0), `server` the STUN server's primary address.
    pub fn new(server: SocketAddr, local: SocketAddr) -> Discovery {
        Discovery {
            server,
            local,
            step: Step::MappingI,
            public: None,
            other: None,
            mapped_ii: None,
            mapping: Mapping::Unknown,
            filtering: Filtering::Unknown,
            notes: Vec::new(),
            error: None,
        }
    }

    /// The next request to send, or `None` when discovery is over.
    pub fn poll_probe(&self) -> Option<Probe> {
        let other = self.other.unwrap_or(self.server);
        let alt_ip_primary_port = SocketAddr::new(other.ip(), self.server.port());
        let probe = |socket, to, change_ip, change_port| Probe {
            socket,
            to,
            change_ip,
            change_port,
        };
        match self.step {
            Step::MappingI => Some(probe(Socket::Mapping, self.server, false, false)),
            Step::MappingII => Some(probe(Socket::Mapping, alt_ip_primary_port, false, false)),
            Step::MappingIII => Some(probe(Socket::Mapping, other, false, false)),
            Step::FilteringI => Some(probe(Socket::Filtering, self.server, false, false)),
            Step::FilteringII => Some(probe(Socket::Filtering, self.server, true, true)),
            Step::FilteringIII => Some(probe(Socket::Filtering, self.server, false, true)),
            Step::Done => None,
        }
    }

    /// Feeds the outcome of the probe [`Discovery::poll_probe`] returned.
    pub fn handle_outcome(&mut self, outcome: Outcome) {
        match self.step {
            Step::MappingI => self.on_mapping_i(outcome),
            Step::MappingII => self.on_mapping_ii(outcome),
            Step::MappingIII => self.on_mapping_iii(outcome),
            Step::FilteringI => self.on_filtering_i(outcome),
            Step::FilteringII => self.on_filtering_change(outcome, true),
            Step::FilteringIII => self.on_filtering_change(outcome, false),
            Step::Done => {}
        }
    }

    /// The result, once [`Discovery::poll_probe`] returned `None`.
    pub fn report(&self) -> Result<Report, DiscoveryError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let public = self.public.ok_or(DiscoveryError::NoAnswer {
            server: self.server,
        })?;
        Ok(Report {
            local: self.local,
            public,
            server: self.server,
            other: self.other,
            mapping: self.mapping,
            filtering: self.filtering,
            notes: self.notes.clone(),
        })
    }

    fn on_mapping_i(&mut self, outcome: Outcome) {
        let answer = match outcome {
            Outcome::Answer(a) => a,
            Outcome::Error { code } => {
                self.fail(DiscoveryError::ErrorResponse {
                    server: self.server,
                    code,
                });
                return;
            }
            Outcome::NoAnswer => {
                self.fail(DiscoveryError::NoAnswer {
                    server: self.server,
                });
                return;
            }
        };
        self.public = Some(answer.mapped);
        // RFC 5780 §4.3: the alternate address must differ from the
        // primary in IP and port for the tests to mean anything.
        self.other = answer
            .other
            .filter(|o| o.ip() != self.server.ip() && o.port() != self.server.port());
        if answer.mapped == self.local {
            self.mapping = Mapping::NoNat;
        }
        if self.other.is_none() {
            self.notes.push(format!(
                "the server {} gave no usable OTHER-ADDRESS (RFC 5780 needs a server with two IP addresses)",
                self.server
            ));
            self.step = Step::Done;
        } else if self.mapping == Mapping::NoNat {
            self.step = Step::FilteringI;
        } else {
            self.step = Step::MappingII;
        }
    }

    fn on_mapping_ii(&mut self, outcome: Outcome) {
        let Outcome::Answer(answer) = outcome else {
            self.note_unanswered("mapping test II (alternate IP)", &outcome);
            self.step = Step::FilteringI;
            return;
        };
        if Some(answer.mapped) == self.public {
            self.mapping = Mapping::EndpointIndependent;
            self.step = Step::FilteringI;
        } else {
            self.mapped_ii = Some(answer.mapped);
            self.step = Step::MappingIII;
        }
    }

    fn on_mapping_iii(&mut self, outcome: Outcome) {
        let Outcome::Answer(answer) = outcome else {
            self.note_unanswered("mapping test III (alternate IP and port)", &outcome);
            self.step = Step::FilteringI;
            return;
        };
        self.mapping = if Some(answer.mapped) == self.mapped_ii {
            Mapping::AddressDependent
        } else {
            Mapping::AddressAndPortDependent
        };
        self.step = Step::FilteringI;
    }

    fn on_filtering_i(&mut self, outcome: Outcome) {
        if let Outcome::Answer(_) = outcome {
            self.step = Step::FilteringII;
        } else {
            self.note_unanswered("filtering test I", &outcome);
            self.step = Step::Done;
        }
    }

    /// RFC 5780 §4.4 tests II (`change_ip`) and III (port only).
    fn on_filtering_change(&mut self, outcome: Outcome, change_ip: bool) {
        match outcome {
            Outcome::Answer(a) => {
                // The server must really have answered from elsewhere; a
                // server that ignores CHANGE-REQUEST would pass every test.
                let honoured = a.origin.is_none_or(|o| {
                    o.port() != self.server.port() && (!change_ip || o.ip() != self.server.ip())
                });
                if !honoured {
                    self.notes.push(format!(
                        "the server ignored CHANGE-REQUEST (it answered from {})",
                        a.origin.map(|o| o.to_string()).unwrap_or_default()
                    ));
                    self.filtering = Filtering::Unknown;
                } else if change_ip {
                    self.filtering = Filtering::EndpointIndependent;
                } else {
                    self.filtering = Filtering::AddressDependent;
                }
                self.step = Step::Done;
            }
            Outcome::Error { code } => {
                self.notes
                    .push(format!("the server refused CHANGE-REQUEST (error {code})"));
                self.step = Step::Done;
            }
            Outcome::NoAnswer if change_ip => self.step = Step::FilteringIII,
            Outcome::NoAnswer => {
                self.filtering = Filtering::AddressAndPortDependent;
                self.step = Step::Done;
            }
        }
    }

    fn note_unanswered(&mut self, test: &str, outcome: &Outcome) {
        let what = match outcome {
            Outcome::Error { code } => format!("error {code}"),
            _ => "no answer".to_string(),
        };
        self.notes.push(format!("{test}: {what}"));
    }

    fn fail(&mut self, e: DiscoveryError) {
        self.error = Some(e);
        self.step = Step::Done;
    }
}

/// Errors decoding an address attribute's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AttrError {
    #[error("address attribute of {len} bytes is too short")]
    TooShort { len: usize },
    #[error("unknown address family {family:#04x}")]
    Family { family: u8 },
}

/// RFC 8489 §14.2 magic cookie.
const MAGIC_COOKIE: u32 = 0x2112_A442;

/// Decodes a MAPPED-ADDRESS-style value (RFC 8489 §14.1; also OTHER-ADDRESS
/// and RESPONSE-ORIGIN, RFC 5780 §7.3, §7.4): reserved byte, family, port,
/// address.
pub fn decode_address(value: &[u8]) -> Result<SocketAddr, AttrError> {
    let (family, port, addr) = split_address(value)?;
    Ok(SocketAddr::new(ip_from(family, addr)?, port))
}

/// Decodes an XOR-MAPPED-ADDRESS value (RFC 8489 §14.2): the port is XORed
/// with the cookie's top 16 bits, an IPv4 address with the cookie, an IPv6
/// address with the cookie followed by the 96-bit transaction ID.
pub fn decode_xor_address(value: &[u8], transaction_id: &[u8]) -> Result<SocketAddr, AttrError> {
    let (family, port, addr) = split_address(value)?;
    let port = port ^ (MAGIC_COOKIE >> 16) as u16;
    let mut key = MAGIC_COOKIE.to_be_bytes().to_vec();
    key.extend_from_slice(transaction_id);
    let clear: Vec<u8> = addr.iter().zip(key.iter()).map(|(a, k)| a ^ k).collect();
    if clear.len() != addr.len() {
        return Err(AttrError::TooShort { len: value.len() });
    }
    Ok(SocketAddr::new(ip_from(family, &clear)?, port))
}

fn split_address(value: &[u8]) -> Result<(u8, u16, &[u8]), AttrError> {
    if value.len() < 8 {
        return Err(AttrError::TooShort { len: value.len() });
    }
    let family = value[1];
    let port = u16::from_be_bytes([value[2], value[3]]);
    let want = match family {
        0x01 => 4,
        0x02 => 16,
        family => return Err(AttrError::Family { family }),
    };
    let addr = value
        .get(4..4 + want)
        .ok_or(AttrError::TooShort { len: value.len() })?;
    Ok((family, port, addr))
}

fn ip_from(family: u8, b: &[u8]) -> Result<IpAddr, AttrError> {
    match (family, b.len()) {
        (0x01, 4) => Ok(IpAddr::from([b[0], b[1], b[2], b[3]])),
        (0x02, 16) => {
            let mut a = [0u8; 16];
            a.copy_from_slice(b);
            Ok(IpAddr::from(a))
        }
        (0x01 | 0x02, len) => Err(AttrError::TooShort { len }),
        (family, _) => Err(AttrError::Family { family }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    const SERVER: &str = "198.51.100.70:3478";
    const OTHER: &str = "198.51.100.71:3479";
    const LOCAL: &str = "198.51.100.10:40000";

    fn answer(mapped: &str) -> Outcome {
        Outcome::Answer(Answer {
            mapped: sa(mapped),
            other: Some(sa(OTHER)),
            origin: None,
        })
    }

    /// Runs discovery against a scripted server: `respond` gets each probe.
    fn run(
        mut respond: impl FnMut(&Probe) -> Outcome,
    ) -> (Result<Report, DiscoveryError>, Vec<Probe>) {
        let mut d = Discovery::new(sa(SERVER), sa(LOCAL));
        let mut sent = Vec::new();
        while let Some(p) = d.poll_probe() {
            let o = respond(&p);
            sent.push(p);
            d.handle_outcome(o);
            assert!(sent.len() <= 6, "discovery ends after at most six probes");
        }
        (d.report(), sent)
    }

    /// A model NAT: mapping from the destination, filtering from the probe.
    fn nat(mapping: Mapping, filtering: Filtering) -> impl FnMut(&Probe) -> Outcome {
        move |p: &Probe| {
            let base = if p.socket == Socket::Mapping {
                5000
            } else {
                6000
            };
            let port = match mapping {
                Mapping::EndpointIndependent => base,
                Mapping::AddressDependent => base + u16::from(p.to.ip() != sa(SERVER).ip()),
                _ => base + (p.to.port() - 3478) * 10 + u16::from(p.to.ip() != sa(SERVER).ip()),
            };
            let passes = match filtering {
                Filtering::EndpointIndependent => true,
                Filtering::AddressDependent => !p.change_ip,
                _ => !p.change_ip && !p.change_port,
            };
            if passes {
                answer(&format!("203.0.113.5:{port}"))
            } else {
                Outcome::NoAnswer
            }
        }
    }

    #[test]
    fn rfc5780_mapping_and_filtering_classes_are_told_apart() {
        use Filtering as F;
        use Mapping as M;
        for m in [
            M::EndpointIndependent,
            M::AddressDependent,
            M::AddressAndPortDependent,
        ] {
            for f in [
                F::EndpointIndependent,
                F::AddressDependent,
                F::AddressAndPortDependent,
            ] {
                let (report, _) = run(nat(m, f));
                let report = report.unwrap();
                assert_eq!((report.mapping, report.filtering), (m, f));
                assert!(report.behind_nat());
                assert_eq!(report.public, sa("203.0.113.5:5000"));
            }
        }
    }

    #[test]
    fn rfc5780_4_3_mapping_tests_go_to_alternate_ip_then_alternate_ip_and_port() {
        let (_, sent) = run(nat(
            Mapping::AddressAndPortDependent,
            Filtering::EndpointIndependent,
        ));
        let to: Vec<_> = sent.iter().map(|p| (p.socket, p.to)).collect();
        assert_eq!(
            to[..3],
            [
                (Socket::Mapping, sa(SERVER)),
                (Socket::Mapping, sa("198.51.100.71:3478")),
                (Socket::Mapping, sa(OTHER)),
            ]
        );
    }

    #[test]
    fn rfc5780_4_4_filtering_tests_use_a_fresh_socket_and_change_request() {
        let (_, sent) = run(nat(
            Mapping::EndpointIndependent,
            Filtering::AddressAndPortDependent,
        ));
        let filtering: Vec<_> = sent
            .iter()
            .filter(|p| p.socket == Socket::Filtering)
            .map(|p| (p.to, p.change_ip, p.change_port))
            .collect();
        assert_eq!(
            filtering,
            [
                (sa(SERVER), false, false),
                (sa(SERVER), true, true),
                (sa(SERVER), false, true)
            ]
        );
        // Endpoint-independent mapping: test III is skipped.
        assert_eq!(sent.len(), 5);
    }

    #[test]
    fn mapped_equal_to_local_means_no_nat() {
        let (report, _) = run(|_| answer(LOCAL));
        let report = report.unwrap();
        assert_eq!(report.mapping, Mapping::NoNat);
        assert!(!report.behind_nat());
        assert!(report.advice().starts_with("No NAT"));
    }

    #[test]
    fn no_other_address_leaves_the_behaviour_unknown_with_a_note() {
        let (report, sent) = run(|_| {
            Outcome::Answer(Answer {
                mapped: sa("203.0.113.5:5000"),
                other: None,
                origin: None,
            })
        });
        let report = report.unwrap();
        assert_eq!(sent.len(), 1);
        assert_eq!(report.mapping, Mapping::Unknown);
        assert_eq!(report.filtering, Filtering::Unknown);
        assert!(
            report.notes[0].contains("OTHER-ADDRESS"),
            "{:?}",
            report.notes
        );
        assert!(report.advice().contains("another STUN server"));
    }

    #[test]
    fn no_answer_to_the_first_request_is_an_error() {
        let (report, sent) = run(|_| Outcome::NoAnswer);
        assert_eq!(sent.len(), 1);
        assert_eq!(report, Err(DiscoveryError::NoAnswer { server: sa(SERVER) }));
        let (report, _) = run(|_| Outcome::Error { code: 400 });
        assert!(matches!(
            report,
            Err(DiscoveryError::ErrorResponse { code: 400, .. })
        ));
    }

    #[test]
    fn a_server_that_ignores_change_request_does_not_fake_open_filtering() {
        let (report, _) = run(|p| {
            Outcome::Answer(Answer {
                mapped: sa("203.0.113.5:5000"),
                other: Some(sa(OTHER)),
                origin: Some(if p.change_ip { sa(SERVER) } else { p.to }),
            })
        });
        let report = report.unwrap();
        assert_eq!(report.filtering, Filtering::Unknown);
        assert!(
            report
                .notes
                .iter()
                .any(|n| n.contains("ignored CHANGE-REQUEST"))
        );
    }

    #[test]
    fn symmetric_nat_advice_names_a_relay() {
        let (report, _) = run(nat(
            Mapping::AddressAndPortDependent,
            Filtering::AddressAndPortDependent,
        ));
        assert!(report.unwrap().advice().contains("relay"));
    }

    #[test]
    fn xor_mapped_address_rfc5769_vectors() {
        // RFC 5769 §2.2 (IPv4) and §2.3 (IPv6) sample responses.
        let tid = [
            0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
        ];
        let v4 = [0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43];
        assert_eq!(decode_xor_address(&v4, &tid), Ok(sa("192.0.2.1:32853")));
        let v6 = [
            0x00, 0x02, 0xa1, 0x47, 0x01, 0x13, 0xa9, 0xfa, 0xa5, 0xd3, 0xf1, 0x79, 0xbc, 0x25,
            0xf4, 0xb5, 0xbe, 0xd2, 0xb9, 0xd9,
        ];
        assert_eq!(
            decode_xor_address(&v6, &tid),
            Ok(sa("[2001:db8:1234:5678:11:2233:4455:6677]:32853"))
        );
    }

    #[test]
    fn short_or_unknown_address_values_are_errors_not_panics() {
        assert_eq!(decode_address(&[]), Err(AttrError::TooShort { len: 0 }));
        assert_eq!(
            decode_address(&[0, 2, 0, 1, 1, 2, 3, 4]),
            Err(AttrError::TooShort { len: 8 })
        );
        assert_eq!(
            decode_address(&[0, 9, 0, 1, 1, 2, 3, 4]),
            Err(AttrError::Family { family: 9 })
        );
        assert_eq!(
            decode_address(&[0, 1, 0x0d, 0x96, 198, 51, 100, 71]),
            Ok(sa("198.51.100.71:3478"))
        );
        assert!(decode_xor_address(&[0, 1, 0, 0, 1, 2, 3, 4], &[]).is_ok());
        assert!(decode_xor_address(&[0, 2, 0, 0, 1, 2, 3, 4], &[1, 2]).is_err());
    }
}
