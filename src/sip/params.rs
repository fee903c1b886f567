//! Generic `;name=value` parameter lists (RFC 3261 §25.1 generic-param).

use std::fmt;

use super::parse::is_token;

/// An ordered list of parameters; names compare case-insensitively.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(pub Vec<(String, Option<String>)>);

impl Params {
    /// Parses `;a=1;b;c="x;y"` (the text after the first `;`, or starting
    /// with one) as header parameters: `generic-param = token [ EQUAL
    /// gen-value ]`, `gen-value = token / host / quoted-string` (RFC 3261
    /// §25.1), with LWS allowed around `;` and `=`. Empty parameters (`;;`,
    /// RFC 4475 §3.1.2.1), non-token names and values that are neither a
    /// token, a host (IPv6 addresses bracketed or not, RFC 5118 §4.5) nor a
    /// terminated quoted string are errors. Values are kept as written.
    pub fn parse(s: &str) -> Result<Params, ParamsError> {
        let mut out = Vec::new();
        let s = s.trim();
        if s.is_empty() {
            return Ok(Params(out));
        }
        let s = s.strip_prefix(';').unwrap_or(s);
        for part in split_params(s) {
            let part = part.trim();
            if part.is_empty() {
                return Err(ParamsError::Empty);
            }
            match part.split_once('=') {
                Some((n, v)) => {
                    let n = n.trim();
                    let v = v.trim();
                    if !is_token(n) || !is_gen_value(v) {
                        return Err(ParamsError::Malformed {
                            param: part.to_string(),
                        });
                    }
                    out.push((n.to_string(), Some(v.to_string())));
                }
                None => {
                    if !is_token(part) {
                        return Err(ParamsError::Malformed {
                            param: part.to_string(),
                        });
                    }
                    out.push((part.to_string(), None))
                }
            }
        }
        Ok(Params(out))
    }

    /// The value of `name`: `Some(None)` for a valueless parameter.
    pub fn get(&self, name: &str) -> Option<Option<&str>> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    /// The value of `name` when it has one.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.get(name).flatten()
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Sets (or adds) a parameter.
    pub fn set(&mut self, name: &str, value: Option<String>) {
        match self
            .0
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(slot) => slot.1 = value,
            None => self.0.push((name.to_string(), value)),
        }
    }

    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }
}

impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, v) in &self.0 {
            match v {
                Some(v) => write!(f, ";{n}={v}")?,
                None => write!(f, ";{n}")?,
            }
        }
        Ok(())
    }
}

/// gen-value = token / host / quoted-string (RFC 3261 §25.1); `:` and
/// brackets admit IPv6 hosts.
fn is_gen_value(v: &str) -> bool {
    if let Some(inner) = v.strip_prefix('"') {
        return quoted_body_ends_at_end(inner);
    }
    !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~:[]".contains(&b))
}

/// Whether a quoted-string body (after the opening quote) ends with its
/// closing quote exactly at the end of `s`.
fn quoted_body_ends_at_end(s: &str) -> bool {
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            // The guard consumes the escaped character of a quoted-pair.
            '\\' if chars.next().is_none() => return false,
            '"' => return chars.next().is_none(),
            _ => {}
        }
    }
    false
}

/// Splits at `;` outside quoted strings.
fn split_params(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_q = false;
    let mut esc = false;
    for (i, c) in s.char_indices() {
        if in_q {
            if esc {
                esc = false;
            } else if c == '\\' {
                esc = true;
            } else if c == '"' {
                in_q = false;
            }
        } else if c == '"' {
            in_q = true;
        } else if c == ';' {
            out.push(&s[start..i]);
            start = i + 1;
        }
    }
    out.push(&s[start..]);
    out
}

/// A malformed parameter list.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum ParamsError {
    #[error("empty parameter")]
    Empty,
    #[error("malformed parameter {param:?}")]
    Malformed { param: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_parse_values_flags_and_quotes() {
        let p = Params::parse(";branch=z9hG4bK1;rport;x=\"a;b\"").unwrap();
        assert_eq!(p.value("BRANCH"), Some("z9hG4bK1"));
        assert_eq!(p.get("rport"), Some(None));
        assert_eq!(p.value("x"), Some("\"a;b\""));
        assert_eq!(p.to_string(), ";branch=z9hG4bK1;rport;x=\"a;b\"");
    }

    #[test]
    fn empty_params_are_errors_rfc4475_3_1_2_1() {
        assert!(Params::parse(";;").is_err());
        assert!(Params::parse(";a=").is_err());
    }
}
