//! SIP, SIPS and tel URIs (RFC 3261 §19.1, §25.1; RFC 3966; RFC 5118).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::params::{Params, ParamsError};

/// A URI as used in Request-URIs and name-addr headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uri {
    Sip(SipUri),
    /// `tel:` (RFC 3966), kept as its text after the scheme.
    Tel(String),
    /// Any other absolute URI, kept opaque (RFC 3261 §19.1.6).
    Other {
        scheme: String,
        rest: String,
    },
}

/// The host part of a SIP URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Ipv4(Ipv4Addr),
    /// Written as `[...]` in URIs (RFC 3261 §25.1 IPv6reference).
    Ipv6(Ipv6Addr),
    /// A domain name, lower-cased.
    Name(String),
}

/// `sip:` / `sips:` URI (RFC 3261 §19.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUri {
    pub secure: bool,
    /// The user part as written (still %-escaped).
    pub user: Option<String>,
    /// The password as written (still %-escaped).
    pub password: Option<String>,
    pub host: Host,
    pub port: Option<u16>,
    pub params: Params,
    /// The `?` headers part as written, without the `?`.
    pub headers: Option<String>,
}

/// Why a URI did not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum UriError {
    #[error("no scheme in {uri:?}")]
    NoScheme { uri: String },
    #[error("whitespace or a forbidden character in {uri:?}")]
    IllegalChar { uri: String },
    #[error("bad host {host:?}")]
    BadHost { host: String },
    #[error("bad port {port:?}")]
    BadPort { port: String },
    #[error("bad escape sequence in {part:?}")]
    BadEscape { part: String },
    #[error("bad URI parameters: {0}")]
    Params(#[from] ParamsError),
}

impl Uri {
    /// Parses a URI. SIP and SIPS URIs are checked against the grammar of
    /// RFC 3261 §25.1; `tel` and other schemes are kept opaque (RFC 3261
    /// §19.1.6, RFC 4475 §3.3.2) and only checked for whitespace, controls,
    /// `<`, `>` and `"`.
    pub fn parse(s: &str) -> Result<Uri, UriError> {
        if s.is_empty()
            || s.bytes()
                .any(|b| b <= b' ' || b == b'<' || b == b'>' || b == b'"' || b >= 0x7f)
        {
            return Err(UriError::IllegalChar { uri: s.to_string() });
        }
        let (scheme, rest) = s
            .split_once(':')
            .ok_or_else(|| UriError::NoScheme { uri: s.to_string() })?;
        if scheme.is_empty()
            || !scheme.as_bytes()[0].is_ascii_alphabetic()
            || !scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        {
            return Err(UriError::NoScheme { uri: s.to_string() });
        }
        match scheme.to_ascii_lowercase().as_str() {
            "sip" => Ok(Uri::Sip(SipUri::parse_rest(rest, false)?)),
            "sips" => Ok(Uri::Sip(SipUri::parse_rest(rest, true)?)),
            "tel" => Ok(Uri::Tel(rest.to_string())),
            _ => Ok(Uri::Other {
                scheme: scheme.to_string(),
                rest: rest.to_string(),
            }),
        }
    }

    pub fn as_sip(&self) -> Option<&SipUri> {
        match self {
            Uri::Sip(u) => Some(u),
            _ => None,
        }
    }
}

impl SipUri {
    /// Parses what follows `sip:` (RFC 3261 §25.1 SIP-URI):
    /// `[userinfo "@"] hostport uri-parameters ["?" headers]`.
    ///
    /// `@` may appear nowhere but after the userinfo, so the first `@`
    /// ends it; the user part may hold `;`, `?`, `,` and `/` (RFC 4475
    /// §3.1.1.2, §3.1.1.9). URI parameters are %-unescaped once
    /// (RFC 4475 §3.1.1.3: `v%61lue%25%34%31` is `value%41`).
    fn parse_rest(rest: &str, secure: bool) -> Result<SipUri, UriError> {
        let (userinfo, after_user) = match rest.find('@') {
            Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
            None => (None, rest),
        };
        let (user, password) = match userinfo {
            Some(ui) => {
                let (u, p) = match ui.split_once(':') {
                    Some((u, p)) => (u, Some(p)),
                    None => (ui, None),
                };
                if u.is_empty() {
                    return Err(UriError::IllegalChar {
                        uri: rest.to_string(),
                    });
                }
                check_chars(u, is_user_char)?;
                if let Some(p) = p {
                    check_chars(p, is_password_char)?;
                }
                (Some(u.to_string()), p.map(str::to_string))
            }
            None => (None, None),
        };
        let (main, headers) = match after_user.split_once('?') {
            Some((m, h)) => {
                check_chars(h, |b| is_hnv_char(b) || b == b'&' || b == b'=')?;
                (m, Some(h.to_string()))
            }
            None => (after_user, None),
        };
        let (hostport, params) = match main.find(';') {
            Some(i) => (&main[..i], parse_uri_params(&main[i + 1..])?),
            None => (main, Params::default()),
        };
        let (host, port) = parse_hostport(hostport)?;
        Ok(SipUri {
            secure,
            user,
            password,
            host,
            port,
            params,
            headers,
        })
    }

    /// The user part with %-escapes decoded (RFC 3261 §19.1.2). Invalid
    /// UTF-8 is replaced; escaped NULs are kept (RFC 4475 §3.1.1.4).
    pub fn user_unescaped(&self) -> Option<String> {
        self.user.as_deref().map(unescape)
    }

    /// The `?` headers as (name, value) pairs, %-unescaped (RFC 3261
    /// §19.1.1). Empty when there are none.
    pub fn header_pairs(&self) -> Vec<(String, String)> {
        let Some(h) = self.headers.as_deref() else {
            return Vec::new();
        };
        h.split('&')
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((n, v)) => (unescape(n), unescape(v)),
                None => (unescape(p), String::new()),
            })
            .collect()
    }

    /// A plain `sip:user@host:port` URI.
    pub fn new(user: Option<&str>, host: Host, port: Option<u16>) -> SipUri {
        SipUri {
            secure: false,
            user: user.map(str::to_string),
            password: None,
            host,
            port,
            params: Params::default(),
            headers: None,
        }
    }
}

/// Parses `host[:port]` where host may be an `[IPv6]` reference.
pub fn parse_hostport(s: &str) -> Result<(Host, Option<u16>), UriError> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let end = rest.find(']').ok_or_else(|| UriError::BadHost {
            host: s.to_string(),
        })?;
        let addr = &rest[..end];
        let after = &rest[end + 1..];
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(|| UriError::BadPort {
                port: p.to_string(),
            })?),
        };
        (Host::Ipv6(parse_ipv6(addr)?), port)
    } else {
        let (h, p) = match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        };
        (parse_host(h)?, p)
    };
    let port = match port {
        None => None,
        Some(p) => Some(parse_port(p)?),
    };
    Ok((host, port))
}

fn parse_port(p: &str) -> Result<u16, UriError> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(UriError::BadPort {
            port: p.to_string(),
        });
    }
    p.parse().map_err(|_| UriError::BadPort {
        port: p.to_string(),
    })
}

/// RFC 5118 §4.10: tolerate the extra colon that RFC 3261's ABNF admits
/// (`2001:db8:::192.0.2.1`), giving the same address as the 2-colon form.
fn parse_ipv6(addr: &str) -> Result<Ipv6Addr, UriError> {
    if let Ok(a) = addr.parse() {
        return Ok(a);
    }
    if addr.contains(":::")
        && let Ok(a) = addr.replacen(":::", "::", 1).parse()
    {
        return Ok(a);
    }
    Err(UriError::BadHost {
        host: addr.to_string(),
    })
}

fn parse_host(h: &str) -> Result<Host, UriError> {
    let bad = || UriError::BadHost {
        host: h.to_string(),
    };
    if h.is_empty() {
        return Err(bad());
    }
    if h.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return h.parse().map(Host::Ipv4).map_err(|_| bad());
    }
    let labels_ok = h
        .trim_end_matches('.')
        .split('.')
        .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    if !labels_ok {
        return Err(bad());
    }
    Ok(Host::Name(h.to_ascii_lowercase()))
}

/// Checks that `s` holds only characters allowed by `allowed` or valid
/// `%HH` escapes (RFC 3261 §25.1 escaped).
fn check_chars(s: &str, allowed: impl Fn(u8) -> bool) -> Result<(), UriError> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if i + 2 >= b.len() || !(b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit()) {
                return Err(UriError::BadEscape {
                    part: s.to_string(),
                });
            }
            i += 3;
        } else if allowed(b[i]) {
            i += 1;
        } else {
            return Err(UriError::IllegalChar { uri: s.to_string() });
        }
    }
    Ok(())
}

/// unreserved = alphanum / mark (RFC 3261 §25.1).
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b)
}

/// user = 1*( unreserved / escaped / user-unreserved ).
fn is_user_char(b: u8) -> bool {
    is_unreserved(b) || b"&=+$,;?/".contains(&b)
}

/// password = *( unreserved / escaped / "&" / "=" / "+" / "$" / "," ).
fn is_password_char(b: u8) -> bool {
    is_unreserved(b) || b"&=+$,".contains(&b)
}

/// paramchar = param-unreserved / unreserved / escaped.
fn is_param_char(b: u8) -> bool {
    is_unreserved(b) || b"[]/:&+$".contains(&b)
}

/// hname / hvalue characters: hnv-unreserved / unreserved / escaped.
fn is_hnv_char(b: u8) -> bool {
    is_unreserved(b) || b"[]/?:+$".contains(&b)
}

/// uri-parameters (the text after the first `;`): each `pname[=pvalue]`
/// is checked and %-unescaped once (RFC 3261 §19.1.2, §25.1).
fn parse_uri_params(s: &str) -> Result<Params, UriError> {
    let mut out = Vec::new();
    for part in s.split(';') {
        if part.is_empty() {
            return Err(UriError::Params(ParamsError::Empty));
        }
        let (name, value) = match part.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (part, None),
        };
        let malformed = || {
            UriError::Params(ParamsError::Malformed {
                param: part.to_string(),
            })
        };
        if name.is_empty() || value.is_some_and(str::is_empty) {
            return Err(malformed());
        }
        check_chars(name, is_param_char)?;
        if let Some(v) = value {
            check_chars(v, is_param_char)?;
        }
        out.push((unescape(name), value.map(unescape)));
    }
    Ok(Params(out))
}

/// %-escapes every byte that `allowed` refuses (and `%` itself).
fn escape(s: &str, allowed: impl Fn(u8) -> bool) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b != b'%' && allowed(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%HH` escapes; other text is kept.
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

impl Host {
    /// The address, if the host is a literal one.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Host::Ipv4(a) => Some(IpAddr::V4(*a)),
            Host::Ipv6(a) => Some(IpAddr::V6(*a)),
            Host::Name(_) => None,
        }
    }

    pub fn from_ip(ip: IpAddr) -> Host {
        match ip {
            IpAddr::V4(a) => Host::Ipv4(a),
            IpAddr::V6(a) => Host::Ipv6(a),
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ipv4(a) => write!(f, "{a}"),
            Host::Ipv6(a) => write!(f, "[{a}]"),
            Host::Name(n) => f.write_str(n),
        }
    }
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.secure { "sips:" } else { "sip:" })?;
        if let Some(u) = &self.user {
            f.write_str(u)?;
            if let Some(p) = &self.password {
                write!(f, ":{p}")?;
            }
            f.write_str("@")?;
        }
        write!(f, "{}", self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        for (n, v) in &self.params.0 {
            write!(f, ";{}", escape(n, is_param_char))?;
            if let Some(v) = v {
                write!(f, "={}", escape(v, is_param_char))?;
            }
        }
        if let Some(h) = &self.headers {
            write!(f, "?{h}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uri::Sip(u) => u.fmt(f),
            Uri::Tel(t) => write!(f, "tel:{t}"),
            Uri::Other { scheme, rest } => write!(f, "{scheme}:{rest}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_uri_parts_rfc3261_19_1_1() {
        let u = Uri::parse("sip:alice:pw@[2001:db8::10]:5070;transport=udp;lr?Subject=x").unwrap();
        let s = u.as_sip().unwrap();
        assert_eq!(s.user.as_deref(), Some("alice"));
        assert_eq!(s.password.as_deref(), Some("pw"));
        assert_eq!(s.host, Host::Ipv6("2001:db8::10".parse().unwrap()));
        assert_eq!(s.port, Some(5070));
        assert!(s.params.has("lr"));
        assert_eq!(s.headers.as_deref(), Some("Subject=x"));
        assert_eq!(
            u.to_string(),
            "sip:alice:pw@[2001:db8::10]:5070;transport=udp;lr?Subject=x"
        );
    }

    #[test]
    fn unbracketed_ipv6_is_rejected_rfc5118_4_2() {
        assert!(Uri::parse("sip:2001:db8::10").is_err());
    }

    #[test]
    fn whitespace_in_uri_is_rejected_rfc4475_3_1_2_8() {
        assert!(Uri::parse("sip:user@example.com; lr").is_err());
        assert!(Uri::parse("<sip:user@example.com>").is_err());
    }

    #[test]
    fn escaped_user_is_decoded_once() {
        let u = Uri::parse("sip:%75se%72@example.com").unwrap();
        assert_eq!(
            u.as_sip().unwrap().user_unescaped().as_deref(),
            Some("user")
        );
        assert_eq!(unescape("value%2541"), "value%41");
    }
}
