//! What `call` and `transfer` dial: a SIP URI, a contact's name, a number
//! or user name completed with the account's domain, or `user@host`.
//!
//! Pure: [`resolve`] takes the contacts and the domain as arguments.

use std::collections::BTreeMap;
use std::fmt;

use crate::sip::Uri;

/// Why a dial string cannot be dialled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetError {
    /// A number or user name, but no account gives a domain to add.
    NoDomain { input: String },
    /// The result is not a SIP URI.
    NotSip { input: String },
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetError::NoDomain { input } => write!(
                f,
                "{input:?} has no host and there is no account domain to add: \
                 give a SIP URI (sip:{input}@host) or a contact name"
            ),
            TargetError::NotSip { input } => {
                write!(f, "{input:?} is not a SIP URI, number or contact name")
            }
        }
    }
}

impl std::error::Error for TargetError {}

/// The domain (host and optional port) of an AOR: `sip:alice@example.com`
/// gives `example.com` (RFC 3261 §10.2.1: the registrar's domain).
pub fn domain_of(aor: &str) -> Option<String> {
    let uri = Uri::parse(aor).ok()?;
    let sip = uri.as_sip()?;
    Some(match sip.port {
        Some(p) => format!("{}:{p}", sip.host),
        None => sip.host.to_string(),
    })
}

/// Turns what the user typed into a SIP URI.
///
/// 1. A contact's name (exact) dials the contact's URI.
/// 2. `sip:`/`sips:`/`tel:`-less text with `@` gets `sip:` in front.
/// 3. A telephone number (digits and `+ * # - ( ) .` separators) or a
///    plain user name gets `@domain` (RFC 3261 §19.1.1: user part); the
///    visual separators `- ( ) .` are dropped from numbers and `#` is
///    escaped.
/// 4. Text with a dot or a colon and no `@` is a host (`127.0.0.1:5062`).
pub fn resolve(
    input: &str,
    contacts: &BTreeMap<String, String>,
    domain: Option<&str>,
) -> Result<String, TargetError> {
    let input = input.trim();
    let uri = if let Some(uri) = contacts.get(input) {
        uri.clone()
    } else if has_scheme(input) {
        input.to_string()
    } else if input.contains('@') {
        format!("sip:{input}")
    } else if is_number(input) {
        let user: String = input
            .chars()
            .filter(|c| !matches!(c, '-' | '(' | ')' | '.'))
            .map(|c| match c {
                '#' => "%23".to_string(),
                c => c.to_string(),
            })
            .collect();
        with_domain(input, &user, domain)?
    } else if input.contains('.') || input.contains(':') || input.starts_with('[') {
        format!("sip:{input}")
    } else if is_user(input) {
        with_domain(input, input, domain)?
    } else {
        return Err(TargetError::NotSip {
            input: input.to_string(),
        });
    };
    match Uri::parse(&uri) {
        Ok(Uri::Sip(_)) => Ok(uri),
        _ => Err(TargetError::NotSip {
            input: input.to_string(),
        }),
    }
}

fn with_domain(input: &str, user: &str, domain: Option<&str>) -> Result<String, TargetError> {
    match domain {
        Some(d) => Ok(format!("sip:{user}@{d}")),
        None => Err(TargetError::NoDomain {
            input: input.to_string(),
        }),
    }
}

fn has_scheme(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    lower.starts_with("sip:") || lower.starts_with("sips:")
}

fn is_number(s: &str) -> bool {
    s.chars().any(|c| c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_digit() || "+*#-().".contains(c))
        && !s.contains("..")
        // "192.168.1.1" is a host, not a number with dots.
        && s.matches('.').count() < 3
}

fn is_user(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contacts() -> BTreeMap<String, String> {
        let mut c = BTreeMap::new();
        c.insert("bob".to_string(), "sip:bob@biloxi.example.com".to_string());
        c.insert("echo".to_string(), "sip:echo@127.0.0.1:5099".to_string());
        c
    }

    #[test]
    fn contact_names_dial_their_uri() {
        assert_eq!(
            resolve("bob", &contacts(), Some("example.com")),
            Ok("sip:bob@biloxi.example.com".into())
        );
        assert_eq!(
            resolve("echo", &contacts(), None),
            Ok("sip:echo@127.0.0.1:5099".into())
        );
    }

    #[test]
    fn numbers_and_users_get_the_account_domain() {
        let c = contacts();
        assert_eq!(
            resolve("1001", &c, Some("example.com")),
            Ok("sip:1001@example.com".into())
        );
        assert_eq!(
            resolve(
                "+1 (555)".replace(' ', "").as_str(),
                &c,
                Some("pbx.example.org:5070")
            ),
            Ok("sip:+1555@pbx.example.org:5070".into())
        );
        assert_eq!(
            resolve("555-0100", &c, Some("example.com")),
            Ok("sip:5550100@example.com".into())
        );
        assert_eq!(
            resolve("*97#", &c, Some("example.com")),
            Ok("sip:*97%23@example.com".into())
        );
        assert_eq!(
            resolve("carol", &c, Some("example.com")),
            Ok("sip:carol@example.com".into())
        );
    }

    #[test]
    fn numbers_without_a_domain_are_refused_with_a_hint() {
        let e = resolve("1001", &contacts(), None).unwrap_err();
        assert_eq!(
            e,
            TargetError::NoDomain {
                input: "1001".into()
            }
        );
        assert!(e.to_string().contains("sip:1001@host"));
    }

    #[test]
    fn uris_hosts_and_user_at_host_are_completed_with_the_scheme_only() {
        let c = contacts();
        let d = Some("example.com");
        assert_eq!(
            resolve("sip:alice@atlanta.example.com", &c, d),
            Ok("sip:alice@atlanta.example.com".into())
        );
        assert_eq!(
            resolve("alice@127.0.0.1:5062", &c, d),
            Ok("sip:alice@127.0.0.1:5062".into())
        );
        assert_eq!(
            resolve("127.0.0.1:5062", &c, d),
            Ok("sip:127.0.0.1:5062".into())
        );
        assert_eq!(resolve("192.0.2.7", &c, d), Ok("sip:192.0.2.7".into()));
        assert_eq!(resolve("[::1]:5062", &c, d), Ok("sip:[::1]:5062".into()));
    }

    #[test]
    fn garbage_is_not_a_target() {
        let c = contacts();
        for bad in ["sip:", "a b", "<sip:x@y>", "sip:bob@"] {
            assert!(
                matches!(
                    resolve(bad, &c, Some("example.com")),
                    Err(TargetError::NotSip { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_domain_of_an_aor_keeps_its_port() {
        assert_eq!(
            domain_of("sip:alice@example.com"),
            Some("example.com".into())
        );
        assert_eq!(
            domain_of("sip:alice@127.0.0.1:5070"),
            Some("127.0.0.1:5070".into())
        );
        assert_eq!(domain_of("nonsense"), None);
    }
}
