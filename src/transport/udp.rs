//! The tokio UDP socket that carries SIP (RFC 3261 §18.1.1, §18.2.1).

use std::io;
use std::net::SocketAddr;

use tokio::net::UdpSocket;

use super::Transmit;

/// Largest datagram we accept; SIP over UDP stays well below it.
pub const MAX_DATAGRAM: usize = 65_535;

/// A bound SIP UDP socket.
pub struct UdpTransport {
    socket: UdpSocket,
    local: SocketAddr,
}

impl UdpTransport {
    /// Binds to `addr` (port 0 picks any free port). IPv4 and IPv6 both work.
    pub async fn bind(addr: SocketAddr) -> io::Result<UdpTransport> {
        let socket = UdpSocket::bind(addr).await?;
        let local = socket.local_addr()?;
        Ok(UdpTransport { socket, local })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The socket itself, for a STUN request sent before the phone reads
    /// from it (RFC 8489 on the SIP socket, so the mapping learnt is the
    /// one SIP uses).
    pub fn socket(&self) -> &UdpSocket {
        &self.socket
    }

    /// Sends one datagram. Errors (e.g. ICMP port unreachable reported on a
    /// later call) are returned to the caller, which logs and carries on.
    pub async fn send(&self, t: &Transmit) -> io::Result<()> {
        self.socket.send_to(&t.payload, t.dest).await.map(|_| ())
    }

    /// Receives one datagram into `buf`.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.socket.recv_from(buf).await
    }
}
