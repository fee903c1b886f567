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
                    return Err(StunError::Timeout { server, requests: 0 });
                }
                client.handle_timeout(now);
            }
        }
    }
}

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
        local: SocketAddr,
        public: Option<SocketAddr>,
        server: SocketAddr,
        error: Option<String>,
    },
    /// Our public SIP address changed: the Contact is re-registered.
    PublicAddressChanged {
        previous: Option<SocketAddr>,
        current: SocketAddr,
        source: NatSource,
    },
}

impl NatEvent {
    /// Whether local and public address differ (we are behind a NAT).
    pub fn behind_nat(&self) -> Option<bool> {
        match self {
            NatEvent::Discovered {
                local,
                public: Some(p),
                ..
            } => Some(local != p),
            _ => None,
        }
    }
}
