//! Transports (RFC 3261 §18): what goes out ([`Transmit`]), the sans-IO
//! rules for stamping received requests and addressing responses, and the
//! tokio UDP socket in [`udp`].

pub mod udp;

use std::net::{IpAddr, SocketAddr};

use crate::sip::{Host, Request, Via};

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub dest: SocketAddr,
    pub payload: Vec<u8>,
}

/// RFC 3261 §18.2.1 and RFC 3581 §4: on receiving a request, add
/// `received` when the top Via's sent-by differs from the packet's source
/// address, and fill in an empty `rport` with the source port.
pub fn stamp_via(req: &mut Request, source: SocketAddr) {
    let Ok(mut via) = req.headers.top_via() else {
        return;
    };
    let mut changed = false;
    if via.host.ip() != Some(source.ip()) {
        via.params
            .set("received", Some(canonical_ip(source.ip()).to_string()));
        changed = true;
    }
    if via.rport() == Some(None) {
        via.params.set("rport", Some(source.port().to_string()));
        if !via.params.has("received") {
            via.params
                .set("received", Some(canonical_ip(source.ip()).to_string()));
        }
        changed = true;
    }
    if changed {
        req.headers.remove_first_value("Via");
        req.headers.push_front("Via", via.to_string());
    }
}

/// RFC 3261 §18.2.2 and RFC 3581 §4: where a response to a request
/// received over UDP goes: the `received` address (else the sent-by host
/// when it is literal, else the source), and the `rport` port when present,
/// else the sent-by port, else 5060. A port 0 or an unspecified address
/// (nowhere to send to) gives the source instead.
pub fn response_destination(top_via: &Via, source: SocketAddr) -> SocketAddr {
    let ip = top_via
        .received()
        .and_then(|r| r.trim_matches(['[', ']']).parse::<IpAddr>().ok())
        .or_else(|| top_via.host.ip())
        .unwrap_or(source.ip());
    let port = match top_via.rport() {
        Some(Some(p)) => p,
        Some(None) => source.port(),
        None => top_via.port.unwrap_or(5060),
    };
    if port == 0 || ip.is_unspecified() {
        // Nothing listens there: answer where the request came from, as
        // RFC 3581 §4 does for rport.
        tracing::debug!(%source, "Via names port 0 or no address: responding to the source");
        return source;
    }
    SocketAddr::new(ip, port)
}

/// Where to send a request for a SIP URI's host and port (RFC 3263 reduced
/// to literal addresses and the default port).
pub fn uri_destination(host: &Host, port: Option<u16>) -> Option<SocketAddr> {
    host.ip()
        .map(|ip| SocketAddr::new(ip, port.unwrap_or(5060)))
}

/// IPv4-mapped IPv6 addresses (from a dual-stack socket) shown as IPv4.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::{Method, Request};

    fn req(via: &str) -> Request {
        let mut r = Request::new(Method::Options, "sip:a@127.0.0.1");
        r.headers.push("Via", via);
        r
    }

    #[test]
    fn received_and_rport_are_added_rfc3581_4() {
        let mut r = req("SIP/2.0/UDP 198.51.100.9:5060;rport;branch=z9hG4bK1");
        stamp_via(&mut r, "127.0.0.1:40000".parse().unwrap());
        let via = r.headers.top_via().unwrap();
        assert_eq!(via.received(), Some("127.0.0.1"));
        assert_eq!(via.rport(), Some(Some(40000)));
        assert_eq!(
            response_destination(&via, "127.0.0.1:40000".parse().unwrap()),
            "127.0.0.1:40000".parse().unwrap()
        );
    }

    #[test]
    fn a_via_with_port_0_gets_its_response_at_the_source_rfc3581_4() {
        let source: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        for top in [
            "SIP/2.0/UDP 198.51.100.9:0;branch=z9hG4bK1",
            "SIP/2.0/UDP 127.0.0.1:0;branch=z9hG4bK1",
            "SIP/2.0/UDP 198.51.100.9:5060;rport=0;branch=z9hG4bK1",
        ] {
            let via = req(top).headers.top_via().unwrap();
            assert_eq!(response_destination(&via, source), source, "{top}");
            let mut r = req(top);
            stamp_via(&mut r, source);
            let via = r.headers.top_via().unwrap();
            assert_eq!(response_destination(&via, source), source, "{top}");
        }
    }

    #[test]
    fn without_rport_responses_go_to_received_and_sent_by_port_rfc3261_18_2_2() {
        let mut r = req("SIP/2.0/UDP 198.51.100.9:5070;branch=z9hG4bK1");
        stamp_via(&mut r, "127.0.0.1:40000".parse().unwrap());
        let via = r.headers.top_via().unwrap();
        assert_eq!(via.rport(), None);
        assert_eq!(
            response_destination(&via, "127.0.0.1:40000".parse().unwrap()),
            "127.0.0.1:5070".parse().unwrap()
        );
    }
}
