//! name-addr / addr-spec with parameters, as used by From, To, Contact,
//! Route and Record-Route (RFC 3261 §20.10, §20.20, §20.39, §25.1).

use std::fmt;

use crate::sip::params::{Params, ParamsError};
use crate::sip::parse::is_token;
use crate::sip::uri::{Uri, UriError};

/// `"Display" <uri>;params` or `uri;params`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// The display name: unquoted and with quoted-pairs resolved.
    pub display: Option<String>,
    pub uri: Uri,
    /// Header parameters (`tag`, `expires`, `q`, ...). Without `<>`, every
    /// parameter after the URI is a header parameter (RFC 3261 §20.10).
    pub params: Params,
}

/// A malformed name-addr.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum NameAddrError {
    /// Also reported for a raw control character inside the quotes.
    #[error("unterminated or malformed quoted display name in {value:?}")]
    UnterminatedQuote { value: String },
    #[error("display name {name:?} must be quoted")]
    BadDisplayName { name: String },
    #[error("missing '>' in {value:?}")]
    UnclosedAngle { value: String },
    #[error("bad URI: {0}")]
    Uri(#[from] UriError),
    #[error("bad parameters: {0}")]
    Params(#[from] ParamsError),
    #[error("unexpected text {text:?} after the URI")]
    Trailing { text: String },
}

impl NameAddr {
    pub fn parse(value: &str) -> Result<NameAddr, NameAddrError> {
        let v = value.trim();
        if let Some(rest) = v.strip_prefix('"') {
            let (display, after) =
                parse_quoted(rest).ok_or_else(|| NameAddrError::UnterminatedQuote {
                    value: value.to_string(),
                })?;
            let after = after.trim_start();
            let mut na = parse_angle(after, value)?;
            na.display = Some(display);
            return Ok(na);
        }
        match v.find('<') {
            Some(i) => {
                let name = v[..i].trim();
                let display = if name.is_empty() {
                    None
                } else {
                    if !name.split_whitespace().all(is_token) {
                        return Err(NameAddrError::BadDisplayName {
                            name: name.to_string(),
                        });
                    }
                    Some(name.split_whitespace().collect::<Vec<_>>().join(" "))
                };
                let mut na = parse_angle(&v[i..], value)?;
                na.display = display;
                Ok(na)
            }
            None => parse_addr_spec(v),
        }
    }

    pub fn new(uri: Uri) -> NameAddr {
        NameAddr {
            display: None,
            uri,
            params: Params::default(),
        }
    }

    pub fn tag(&self) -> Option<&str> {
        self.params.value("tag")
    }
}

/// `<uri>;params`
fn parse_angle(s: &str, whole: &str) -> Result<NameAddr, NameAddrError> {
    let inner = s
        .strip_prefix('<')
        .ok_or_else(|| NameAddrError::UnclosedAngle {
            value: whole.to_string(),
        })?;
    let end = inner
        .find('>')
        .ok_or_else(|| NameAddrError::UnclosedAngle {
            value: whole.to_string(),
        })?;
    let uri = Uri::parse(&inner[..end])?;
    let after = inner[end + 1..].trim();
    if !after.is_empty() && !after.starts_with(';') {
        return Err(NameAddrError::Trailing {
            text: after.to_string(),
        });
    }
    Ok(NameAddr {
        display: None,
        uri,
        params: Params::parse(after)?,
    })
}

/// addr-spec without brackets: the URI ends at the first `;`, and it may not
/// contain `?` headers or `,` (RFC 3261 §20.10).
fn parse_addr_spec(v: &str) -> Result<NameAddr, NameAddrError> {
    let (uri, params) = match v.find(';') {
        Some(i) => (&v[..i], &v[i..]),
        None => (v, ""),
    };
    if uri.contains('?') || uri.contains(',') {
        return Err(NameAddrError::Trailing {
            text: uri.to_string(),
        });
    }
    Ok(NameAddr {
        display: None,
        uri: Uri::parse(uri.trim())?,
        params: Params::parse(params)?,
    })
}

/// Reads a quoted-string body (after the opening quote), resolving
/// quoted-pairs (RFC 3261 §25.1); returns it and the text after the closing
/// quote. `None` when unterminated or when it holds a raw control
/// character other than HTAB (qdtext), or a quoted CR or LF (quoted-pair).
fn parse_quoted(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next()?.1 {
                '\r' | '\n' => return None,
                q => out.push(q),
            },
            '"' => return Some((out, &s[i + 1..])),
            c if c.is_ascii_control() && c != '\t' => return None,
            c => out.push(c),
        }
    }
    None
}

/// Writes a display name as a quoted-string: `"`, `\\` and control
/// characters other than HTAB become quoted-pairs (RFC 3261 §25.1
/// quoted-pair admits %x00-09 / %x0B-0C / %x0E-7F); CR and LF, which no
/// quoted-pair can carry, become spaces.
fn quote(display: &str) -> String {
    let mut out = String::from("\"");
    for c in display.chars() {
        match c {
            '\r' | '\n' => out.push(' '),
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_ascii_control() && c != '\t' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.display {
            write!(f, "{} ", quote(d))?;
        }
        write!(f, "<{}>{}", self.uri, self.params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_display_name_with_escapes_rfc4475_wsinv() {
        let na =
            NameAddr::parse(r#""J Rosenberg \\\"" <sip:jdrosen@example.com>;tag=98asjd8"#).unwrap();
        assert_eq!(na.display.as_deref(), Some(r#"J Rosenberg \""#));
        assert_eq!(na.tag(), Some("98asjd8"));
    }

    #[test]
    fn no_lws_before_angle_rfc4475_lwsdisp() {
        let na = NameAddr::parse("caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(na.display.as_deref(), Some("caller"));
    }

    #[test]
    fn params_without_brackets_are_header_params_rfc3261_20_10() {
        let na = NameAddr::parse("sip:+19725552222@gw1.example.net;unknownparam").unwrap();
        assert!(na.params.has("unknownparam"));
        assert!(!na.uri.as_sip().unwrap().params.has("unknownparam"));
    }

    #[test]
    fn unquoted_comma_in_display_name_is_rejected_rfc4475_baddn() {
        assert!(NameAddr::parse("Bell, Alexander <sip:a.g.bell@example.com>;tag=43").is_err());
        assert!(NameAddr::parse("\"Mr. J. User <sip:j.user@example.com>").is_err());
    }

    #[test]
    fn display_round_trip() {
        let na = NameAddr::parse("\"A \\\"B\\\"\" <sip:a@b>;tag=1").unwrap();
        assert_eq!(na.to_string(), "\"A \\\"B\\\"\" <sip:a@b>;tag=1");
    }
}
