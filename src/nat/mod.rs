//! NAT traversal: STUN on the SIP and RTP sockets (RFC 8489), keep-alives
//! (RFC 5626 §3.5), symmetric-RTP latching and the `nat-check` probe.
//!
//! The cores ([`stun::BindingClient`], [`keepalive::KeepAlive`]) are
//! sans-IO; [`discover`] is the thin tokio shell that runs one Binding
//! transaction on a socket nobody else is reading yet (the SIP socket
//! before the phone starts, a call's RTP socket before its receive task).

pub mod keepalive;
pub mod stun;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;

pub use self::stun::{BindingClient, StunError, is_stun};

/// Runs one Binding transaction to `server` from `socket` and returns our
/// address as the server saw it. Datagrams that are not the answer are
/// dropped, so only call this while no one else reads the socket. Gives up
/// after `limit` even if RFC 8489's retransmissions would go on.
pub async fn discover(
    socket: &UdpSocket,
    server: SocketAddr,
    rto: Duration,
    limit: Duration,
) -> Result<SocketAddr, StunError> {
    let start = std::time::Instant::now();
    let give_up = start + limit;
    let id: [u8; 12] = rand::random();
    let mut client = BindingClient::new(server, id, rto, start);
    let mut buf = vec![0u8; 2048];
    loop {
        while let Some((dest, bytes)) = client.poll_transmit() {
            if let Err(e) = socket.send_to(&bytes, dest).await {
                tracing::debug!("STUN send to {dest}: {e}");
            }
        }
        if let Some(r) = client.result() {
            return r.clone();
        }
        let deadline = client.poll_timeout().unwrap_or(give_up).min(give_up);
        let deadline = tokio::time::Instant::from_std(deadline);
        tokio::select! {
            r = socket.recv_from(&mut buf) => {
                if let Ok((n, from)) = r {
                    client.handle_datagram(&buf[..n], from);
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                let now = std::time::Instant::now();
                if now >= give_up {
                    return Err(StunError::Timeout { server, requests: client.requests_sent() });
                }
                client.handle_timeout(now);
            }
        }
    }
}

/// How long the start-up Binding request on the SIP socket may take: RFC
/// 8489 §6.2.1's full schedule lasts 39.5 s, too long to hold up the
/// start; this covers the first five requests (0, 0.5, 1.5, 3.5, 7.5 s).
pub const DISCOVERY_LIMIT: Duration = Duration::from_secs(8);

/// The same for each call's RTP and RTCP sockets, asked while the call
/// is being set up (the driver waits): a server that answered at start-up
/// answers at once; 2 s covers three requests (0, 0.5 and 1.5 s).
pub const MEDIA_DISCOVERY_LIMIT: Duration = Duration::from_secs(2);

/// NAT settings of a phone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatOptions {
    /// STUN server (`host[:port]`, default port 3478) asked for our public
    /// address at start-up and for each call's RTP/RTCP sockets.
    pub stun: Option<String>,
    /// Keep-alive interval towards registrars (and the STUN server); zero
    /// turns keep-alives off.
    pub keepalive: Duration,
}

impl Default for NatOptions {
    fn default() -> Self {
        NatOptions {
            stun: None,
            keepalive: keepalive::DEFAULT_INTERVAL,
        }
    }
}

/// RFC 8489 §6.1: STUN's default UDP port.
pub const STUN_PORT: u16 = 3478;

/// How a public address was learnt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NatSource {
    /// A STUN Binding response (RFC 8489 §14.2).
    Stun,
    /// The `received`/`rport` of our Via in a response (RFC 3581 §4).
    Rport,
}

/// What NAT discovery found, for the user.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NatEvent {
    /// The result of the start-up STUN request on the SIP socket.
    Discovered {
        /// Our SIP socket's address towards the STUN server.
        local: SocketAddr,
        /// Our address as the STUN server saw it (None: no answer).
        public: Option<SocketAddr>,
        server: SocketAddr,
        /// Whether `public` differs from `local`.
        behind_nat: Option<bool>,
        error: Option<String>,
    },
    /// Our public SIP address changed (or was learnt after start-up):
    /// Contacts use it and registrations move their binding to it.
    PublicAddressChanged {
        previous: Option<SocketAddr>,
        current: SocketAddr,
        source: NatSource,
    },
    /// A keep-alive's STUN answer shows a new mapping (the NAT restarted
    /// or dropped the old one): registrations are refreshed.
    MappingChanged {
        server: SocketAddr,
        previous: SocketAddr,
        current: SocketAddr,
    },
}

impl NatEvent {
    /// The `event` of its `--json` line: `nat` (start-up discovery),
    /// `nat_changed` (new public address), `nat_mapping_changed` (a
    /// keep-alive saw a new mapping).
    pub fn event_name(&self) -> &'static str {
        match self {
            NatEvent::Discovered { .. } => "nat",
            NatEvent::PublicAddressChanged { .. } => "nat_changed",
            NatEvent::MappingChanged { .. } => "nat_mapping_changed",
        }
    }

    /// One line for people.
    pub fn describe(&self) -> String {
        match self {
            NatEvent::Discovered {
                local,
                public: Some(p),
                server,
                behind_nat,
                ..
            } => {
                let verdict = if *behind_nat == Some(true) {
                    "behind a NAT"
                } else {
                    "not behind a NAT"
                };
                format!("nat: local {local}, public {p} (STUN {server}): {verdict}")
            }
            NatEvent::Discovered {
                local,
                server,
                error,
                ..
            } => format!(
                "nat: local {local}; STUN {server} failed ({}): using the local address",
                error.as_deref().unwrap_or("no answer")
            ),
            NatEvent::PublicAddressChanged {
                previous,
                current,
                source,
            } => {
                let how = match source {
                    NatSource::Stun => "STUN",
                    NatSource::Rport => "the registrar's Via rport/received",
                };
                match previous {
                    Some(p) => format!("nat: public address changed from {p} to {current} ({how})"),
                    None => format!("nat: public address {current} ({how})"),
                }
            }
            NatEvent::MappingChanged {
                server,
                previous,
                current,
            } => format!(
                "nat: mapping changed from {previous} to {current} (keep-alive to {server}): registering again"
            ),
        }
    }
}

/// Resolves a STUN server given as `host[:port]` (an IPv6 literal in
/// brackets when a port follows); the port defaults to 3478. Prefers an
/// address of the family of `local`.
pub async fn resolve_server(spec: &str, local: SocketAddr) -> Result<SocketAddr, StunError> {
    let bad = || StunError::BadServer {
        server: spec.to_string(),
    };
    let spec = spec.trim();
    if spec.is_empty() {
        return Err(bad());
    }
    if let Ok(a) = spec.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = spec.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, STUN_PORT));
    }
    let (host, port) = match spec.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, p.parse::<u16>().map_err(|_| bad())?),
        Some(_) => return Err(bad()),
        None => (spec, STUN_PORT),
    };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|_| bad())?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4() == local.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4() -> SocketAddr {
        "0.0.0.0:5060".parse().unwrap()
    }

    #[tokio::test]
    async fn stun_server_port_defaults_to_3478_rfc8489_6_1() {
        let cases = [
            ("198.51.100.70", "198.51.100.70:3478"),
            ("198.51.100.70:3479", "198.51.100.70:3479"),
            (" 198.51.100.70 ", "198.51.100.70:3478"),
            ("2001:db8::1", "[2001:db8::1]:3478"),
            ("[2001:db8::1]", "[2001:db8::1]:3478"),
            ("[2001:db8::1]:3480", "[2001:db8::1]:3480"),
        ];
        for (spec, want) in cases {
            let got = resolve_server(spec, v4()).await;
            assert_eq!(got, Ok(want.parse().unwrap()), "{spec:?}");
        }
    }

    #[tokio::test]
    async fn malformed_stun_server_is_a_clear_error() {
        for spec in ["", "   ", "stun.example.net:port", "stun.example.net:70000"] {
            assert!(
                matches!(
                    resolve_server(spec, v4()).await,
                    Err(StunError::BadServer { .. })
                ),
                "{spec:?}"
            );
        }
    }

    #[test]
    fn events_name_themselves_and_say_whether_we_are_behind_a_nat() {
        let ev = NatEvent::Discovered {
            local: "198.51.100.10:5060".parse().unwrap(),
            public: Some("198.51.100.65:5060".parse().unwrap()),
            server: "198.51.100.70:3478".parse().unwrap(),
            behind_nat: Some(true),
            error: None,
        };
        assert_eq!(ev.event_name(), "nat");
        assert!(ev.describe().contains("behind a NAT"), "{}", ev.describe());
        let json = serde_json::to_value(&ev).unwrap();
        assert_eq!(json["kind"], "discovered");
        assert_eq!(json["public"], "198.51.100.65:5060");
        assert_eq!(json["behind_nat"], true);
    }
}
