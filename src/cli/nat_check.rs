//! `sipline nat-check`: asks a STUN server what our public address is and
//! how the NAT on the way behaves (RFC 5780), and prints one line of advice.
//!
//! The requests go through the `stun-client` crate, on sockets of their own
//! (it runs its own receive loop on async-std and takes every datagram of
//! its socket, so it cannot share the SIP or RTP sockets; see
//! docs/decisions.md). The decisions are [`super::nat_behaviour`]'s, a plain
//! state machine; this file only resolves the server, opens the two
//! sockets, sends each probe and reads the attributes of the answer.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use serde_json::json;
use stun_client::{Attribute, Class, Client, Options, STUNClientError};

use super::args::NatCheckArgs;
use super::events::Emitter;
use super::exit::Exit;
use super::nat_behaviour::{
    Answer, Discovery, DiscoveryError, Outcome, Probe, Report, Socket, decode_address,
    decode_xor_address,
};

/// RFC 8489 §18.4: the default port of STUN over UDP.
pub const STUN_PORT: u16 = 3478;

/// How long one transmission waits for its answer.
const WAIT_MS: u64 = 1000;
/// Transmissions per probe. RFC 8489 §6.2.1 (Rc = 7, RTO 500 ms doubling)
/// would wait 39.5 s for each unanswered request; the filtering tests expect
/// some requests to stay unanswered, so a diagnostic waits 3 × 1 s instead.
const ATTEMPTS: usize = 3;

/// Why nat-check could not run.
#[derive(Debug, thiserror::Error)]
pub enum NatCheckError {
    #[error("no STUN server: give --stun HOST[:PORT]")]
    NoServer,
    #[error("bad STUN server {given:?}: {reason}")]
    BadServer { given: String, reason: &'static str },
    #[error("cannot resolve the STUN server {host}: {source}")]
    Resolve {
        host: String,
        source: std::io::Error,
    },
    #[error("the STUN server {host} has no address")]
    NoAddress { host: String },
    #[error("no route to the STUN server {server}: {source}")]
    Route {
        server: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot open a UDP socket on {ip}: {source}")]
    Bind { ip: IpAddr, source: std::io::Error },
    #[error("cannot send to the STUN server {server}: {source}")]
    Send {
        server: SocketAddr,
        source: STUNClientError,
    },
    #[error("{0} (is it a STUN server, and is UDP to it allowed?)")]
    Discovery(#[from] DiscoveryError),
}

impl NatCheckError {
    pub fn exit(&self) -> Exit {
        match self {
            NatCheckError::NoServer | NatCheckError::BadServer { .. } => Exit::Usage,
            _ => Exit::Network,
        }
    }
}

pub async fn run(args: NatCheckArgs, emit: Emitter) -> Exit {
    let given = args.stun.clone();
    let result = tokio::task::spawn_blocking(move || check(given.as_deref())).await;
    match result {
        Ok(Ok(report)) => {
            print_report(&report, &emit);
            Exit::Ok
        }
        Ok(Err(e)) => {
            tracing::error!("nat-check: {e}");
            if emit.json {
                emit.emit("error", json!({"message": e.to_string()}), "");
            }
            e.exit()
        }
        Err(e) => {
            tracing::error!("nat-check: {e}");
            Exit::Internal
        }
    }
}

/// Resolves the server, then runs the discovery on async-std (the runtime
/// `stun-client` needs), blocking this thread.
fn check(given: Option<&str>) -> Result<Report, NatCheckError> {
    let given = given.ok_or(NatCheckError::NoServer)?;
    let server = resolve(given)?;
    let local_ip = route_source(server)?;
    async_std::task::block_on(discover(server, local_ip))
}

/// `HOST`, `HOST:PORT`, `IP`, `IP:PORT`, `[IPv6]:PORT` → `(host, port)`.
pub fn split_host_port(given: &str) -> Result<(String, u16), NatCheckError> {
    let bad = |reason| NatCheckError::BadServer {
        given: given.to_string(),
        reason,
    };
    if given.trim().is_empty() {
        return Err(bad("empty"));
    }
    if given.chars().any(char::is_whitespace) {
        return Err(bad("a host name has no spaces"));
    }
    if let Ok(ip) = given.parse::<IpAddr>() {
        return Ok((ip.to_string(), STUN_PORT));
    }
    if let Ok(sa) = given.parse::<SocketAddr>() {
        if sa.port() == 0 {
            return Err(bad("the port must be 1-65535"));
        }
        return Ok((sa.ip().to_string(), sa.port()));
    }
    if let Some(inner) = given.strip_prefix('[').and_then(|g| g.strip_suffix(']')) {
        return inner
            .parse::<std::net::Ipv6Addr>()
            .map(|ip| (ip.to_string(), STUN_PORT))
            .map_err(|_| bad("not an IPv6 address in brackets"));
    }
    if given.starts_with('[') {
        return Err(bad("expected [IPv6] or [IPv6]:PORT"));
    }
    match given.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => {
            let port = port
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad("the port must be 1-65535"))?;
            if host.is_empty() {
                return Err(bad("no host before the port"));
            }
            Ok((host.to_string(), port))
        }
        Some(_) => Err(bad("not a host name, IP address or HOST:PORT")),
        None => Ok((given.to_string(), STUN_PORT)),
    }
}

/// The server's address; IPv4 first when the name has both.
fn resolve(given: &str) -> Result<SocketAddr, NatCheckError> {
    let (host, port) = split_host_port(given)?;
    let addrs: Vec<SocketAddr> = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|source| NatCheckError::Resolve {
            host: host.clone(),
            source,
        })?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or(NatCheckError::NoAddress { host })
}

/// The local IP the kernel would send from to reach `server` (a connected
/// UDP socket sends nothing).
fn route_source(server: SocketAddr) -> Result<IpAddr, NatCheckError> {
    let any: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().expect("a valid literal")
    } else {
        "[::]:0".parse().expect("a valid literal")
    };
    let sock = std::net::UdpSocket::bind(any).map_err(|source| NatCheckError::Bind {
        ip: any.ip(),
        source,
    })?;
    sock.connect(server)
        .and_then(|_| sock.local_addr())
        .map(|a| a.ip())
        .map_err(|source| NatCheckError::Route { server, source })
}

async fn open(ip: IpAddr) -> Result<(Client, SocketAddr), NatCheckError> {
    let sock = async_std::net::UdpSocket::bind(SocketAddr::new(ip, 0))
        .await
        .map_err(|source| NatCheckError::Bind { ip, source })?;
    let local = sock
        .local_addr()
        .map_err(|source| NatCheckError::Bind { ip, source })?;
    let opts = Options {
        recv_timeout_ms: WAIT_MS,
        recv_buf_size: 1500,
    };
    Ok((Client::from_socket(Arc::new(sock), Some(opts)), local))
}

async fn discover(server: SocketAddr, local_ip: IpAddr) -> Result<Report, NatCheckError> {
    let (mut mapping_client, local) = open(local_ip).await?;
    let (mut filtering_client, _) = open(local_ip).await?;
    let mut discovery = Discovery::new(server, local);
    while let Some(probe) = discovery.poll_probe() {
        let client = match probe.socket {
            Socket::Mapping => &mut mapping_client,
            Socket::Filtering => &mut filtering_client,
        };
        let outcome = send_probe(client, &probe).await?;
        tracing::debug!("nat-check: {probe:?} -> {outcome:?}");
        discovery.handle_outcome(outcome);
    }
    Ok(discovery.report()?)
}

/// Sends one probe, up to [`ATTEMPTS`] times, each a new transaction.
async fn send_probe(client: &mut Client, probe: &Probe) -> Result<Outcome, NatCheckError> {
    for _ in 0..ATTEMPTS {
        let attrs = (probe.change_ip || probe.change_port).then(|| {
            HashMap::from([(
                Attribute::ChangeRequest,
                Attribute::generate_change_request_value(probe.change_ip, probe.change_port),
            )])
        });
        match client.binding_request(probe.to, attrs).await {
            Ok(msg) => {
                if let Some(outcome) = outcome_of(&msg) {
                    return Ok(outcome);
                }
                // An answer we cannot read counts as none; try again.
            }
            Err(STUNClientError::TimeoutError()) => {}
            // Its receive loop reports an undecodable datagram to every
            // pending request as a parse error: treat it as no answer.
            Err(STUNClientError::ParseError()) => {}
            Err(STUNClientError::IOError(e))
                if e.kind() == std::io::ErrorKind::ConnectionRefused =>
            {
                return Ok(Outcome::NoAnswer);
            }
            Err(source) => {
                return Err(NatCheckError::Send {
                    server: probe.to,
                    source,
                });
            }
        }
    }
    Ok(Outcome::NoAnswer)
}

/// Reads a Binding response with our own bounds-checked decoders (the
/// crate's attribute getters index past short values).
fn outcome_of(msg: &stun_client::Message) -> Option<Outcome> {
    match msg.get_class() {
        Class::SuccessResponse => {
            let tid = msg.get_transaction_id();
            let mapped = msg
                .get_raw_attr_value(Attribute::XORMappedAddress)
                .and_then(|v| decode_xor_address(&v, &tid).ok())
                .or_else(|| {
                    // RFC 8489 §14.1: MAPPED-ADDRESS from older servers.
                    msg.get_raw_attr_value(Attribute::MappedAddress)
                        .and_then(|v| decode_address(&v).ok())
                })?;
            let addr = |a| {
                msg.get_raw_attr_value(a)
                    .and_then(|v| decode_address(&v).ok())
            };
            Some(Outcome::Answer(Answer {
                mapped,
                other: addr(Attribute::OtherAddress),
                origin: addr(Attribute::ResponseOrigin),
            }))
        }
        Class::ErrorResponse => {
            // RFC 8489 §14.8: class in byte 2 (low 3 bits), number in byte 3.
            let code = msg
                .get_raw_attr_value(Attribute::ErrorCode)
                .filter(|v| v.len() >= 4)
                .map(|v| u16::from(v[2] & 0x07) * 100 + u16::from(v[3]))
                .unwrap_or(0);
            Some(Outcome::Error { code })
        }
        _ => None,
    }
}

fn print_report(r: &Report, emit: &Emitter) {
    let nat = r.behind_nat();
    let human = format!(
        "STUN server:     {server}{other}\n\
         Local address:   {local}\n\
         Public address:  {public}\n\
         Behind a NAT:    {nat_text}\n\
         Mapping:         {mapping}\n\
         Filtering:       {filtering}\n\
         {notes}\
         Advice:          {advice}",
        server = r.server,
        other = r
            .other
            .map(|o| format!(" (alternate {o})"))
            .unwrap_or_default(),
        local = r.local,
        public = r.public,
        nat_text = if nat {
            "yes (the public address differs from the local one)"
        } else {
            "no (the public address is the local one)"
        },
        mapping = r.mapping,
        filtering = r.filtering,
        notes = r
            .notes
            .iter()
            .map(|n| format!("Note:            {n}\n"))
            .collect::<String>(),
        advice = r.advice(),
    );
    emit.emit(
        "nat_check",
        json!({
            "server": r.server.to_string(),
            "other_address": r.other.map(|o| o.to_string()),
            "local": r.local.to_string(),
            "public": r.public.to_string(),
            "behind_nat": nat,
            "mapping": mapping_key(r),
            "filtering": r.filtering.as_str(),
            "notes": r.notes,
            "advice": r.advice(),
        }),
        &human,
    );
}

/// The JSON value of the mapping: the RFC 5780 term, `none` without NAT.
fn mapping_key(r: &Report) -> &'static str {
    match r.mapping {
        super::nat_behaviour::Mapping::NoNat => "none",
        m => m.as_str(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_argument_forms() {
        let ok = |s: &str| split_host_port(s).unwrap();
        assert_eq!(ok("stun.example.test"), ("stun.example.test".into(), 3478));
        assert_eq!(
            ok("stun.example.test:19302"),
            ("stun.example.test".into(), 19302)
        );
        assert_eq!(ok("198.51.100.70"), ("198.51.100.70".into(), 3478));
        assert_eq!(ok("198.51.100.70:3479"), ("198.51.100.70".into(), 3479));
        assert_eq!(ok("::1"), ("::1".into(), 3478));
        assert_eq!(ok("[::1]:5000"), ("::1".into(), 5000));
        assert_eq!(ok("[::1]"), ("::1".into(), 3478));
        for bad in [
            "",
            "host:",
            "host:0",
            "host:99999",
            ":3478",
            "[x]",
            "[::1]:",
            "a:b:c",
            "127.0.0.1:0",
            "[::1]:0",
            " ",
            "stun .example.net",
        ] {
            assert!(
                matches!(split_host_port(bad), Err(NatCheckError::BadServer { .. })),
                "{bad:?} is refused"
            );
        }
    }

    #[test]
    fn a_missing_server_is_a_usage_error() {
        let e = check(None).unwrap_err();
        assert!(matches!(e, NatCheckError::NoServer));
        assert_eq!(e.exit(), Exit::Usage);
        assert_eq!(check(Some("host:0")).unwrap_err().exit(), Exit::Usage);
    }
}
