//! The Via header (RFC 3261 §20.42, §18.2.2; RFC 3581).

use std::fmt;

use std::net::IpAddr;

use crate::sip::params::{Params, ParamsError};
use crate::sip::parse::is_token;
use crate::sip::uri::{Host, UriError, parse_hostport};

/// The magic cookie that starts RFC 3261 branches (§8.1.1.7).
pub const BRANCH_COOKIE: &str = "z9hG4bK";

/// One Via value: `SIP/2.0/UDP host:port;params`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// `SIP/2.0`, kept as written without internal whitespace.
    pub protocol: String,
    /// Transport token, upper-cased (UDP, TCP, TLS, SCTP or any token, RFC 4475 §3.1.1.10).
    pub transport: String,
    pub host: Host,
    pub port: Option<u16>,
    pub params: Params,
}

/// A malformed Via value.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum ViaError {
    #[error("malformed sent-protocol in {value:?}")]
    BadProtocol { value: String },
    #[error("malformed sent-by: {0}")]
    BadSentBy(#[from] UriError),
    #[error("malformed Via parameters: {0}")]
    BadParams(#[from] ParamsError),
}

impl Via {
    /// Parses one Via value (not a comma-separated list).
    pub fn parse(value: &str) -> Result<Via, ViaError> {
        let bad = || ViaError::BadProtocol {
            value: value.to_string(),
        };
        // sent-protocol = protocol-name SLASH protocol-version SLASH transport,
        // with optional LWS around the slashes (RFC 3261 §25.1).
        let mut parts = value.splitn(3, '/');
        let name = parts.next().ok_or_else(bad)?.trim();
        let version = parts.next().ok_or_else(bad)?.trim();
        let rest = parts.next().ok_or_else(bad)?.trim_start();
        let split = rest.find([' ', '\t']).ok_or_else(bad)?;
        let transport = &rest[..split];
        let sent_by_and_params = rest[split..].trim_start();
        if !is_token(name) || !is_token(version) || !is_token(transport) {
            return Err(bad());
        }
        let (sent_by, params) = match sent_by_and_params.find(';') {
            Some(i) => (
                &sent_by_and_params[..i],
                Params::parse(&sent_by_and_params[i..])?,
            ),
            None => (sent_by_and_params, Params::default()),
        };
        let (host, port) = parse_hostport(sent_by.trim())?;
        Ok(Via {
            protocol: format!("{name}/{version}"),
            transport: transport.to_ascii_uppercase(),
            host,
            port,
            params,
        })
    }

    /// A Via for a request we send (RFC 3261 §8.1.1.7) with `rport`
    /// (RFC 3581 §3).
    pub fn new(transport: &str, host: Host, port: u16, branch: &str) -> Via {
        let mut params = Params::default();
        params.set("branch", Some(branch.to_string()));
        params.set("rport", None);
        Via {
            protocol: "SIP/2.0".to_string(),
            transport: transport.to_string(),
            host,
            port: Some(port),
            params,
        }
    }

    pub fn branch(&self) -> Option<&str> {
        self.params.value("branch")
    }

    /// Whether the branch carries the RFC 3261 magic cookie (§17.2.3).
    pub fn is_rfc3261_branch(&self) -> bool {
        self.branch().is_some_and(|b| b.starts_with(BRANCH_COOKIE))
    }

    pub fn received(&self) -> Option<&str> {
        self.params.value("received")
    }

    /// The `received` address, with or without the brackets that some
    /// senders put around IPv6 (RFC 5118 §4.5 asks receivers to accept both).
    pub fn received_ip(&self) -> Option<IpAddr> {
        let r = self.received()?;
        let r = r
            .strip_prefix('[')
            .and_then(|x| x.strip_suffix(']'))
            .unwrap_or(r);
        r.parse().ok()
    }

    /// The `rport` value: `Some(None)` when present without a value.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params
            .get("rport")
            .map(|v| v.and_then(|v| v.parse().ok()))
    }

    /// The sent-by as `host:port` text.
    pub fn sent_by(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.to_string(),
        }
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} {}{}",
            self.protocol,
            self.transport,
            self.sent_by(),
            self.params
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_with_spaces_in_protocol_rfc4475_wsinv() {
        let v = Via::parse("SIP  /   2.0  / UDP  192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.host, Host::Ipv4("192.0.2.2".parse().unwrap()));
        assert_eq!(v.branch(), Some("390skdjuw"));
        assert!(!v.is_rfc3261_branch());
    }

    #[test]
    fn via_rport_and_received_rfc3581() {
        let v = Via::parse(
            "SIP/2.0/UDP [2001:db8::9:1]:6050;rport=5062;received=192.0.2.1;branch=z9hG4bK1",
        )
        .unwrap();
        assert_eq!(v.port, Some(6050));
        assert_eq!(v.rport(), Some(Some(5062)));
        assert_eq!(v.received(), Some("192.0.2.1"));
        assert_eq!(
            v.to_string(),
            "SIP/2.0/UDP [2001:db8::9:1]:6050;rport=5062;received=192.0.2.1;branch=z9hG4bK1"
        );
    }

    #[test]
    fn via_with_empty_params_is_an_error_rfc4475_badinv01() {
        assert!(Via::parse("SIP/2.0/UDP 192.0.2.15;;,;,,").is_err());
    }
}
