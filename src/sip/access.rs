//! Typed accessors for the headers every layer needs (RFC 3261 §8.1.1).

use super::header::{CSeq, CSeqError, NameAddr, NameAddrError, Via, ViaError};
use super::headers::Headers;

/// A required header is missing or malformed.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum HeaderError {
    #[error("missing {name} header")]
    Missing { name: &'static str },
    #[error("{name} header appears {count} times")]
    Repeated { name: &'static str, count: usize },
    #[error("bad Via: {0}")]
    Via(#[from] ViaError),
    #[error("bad CSeq: {0}")]
    CSeq(#[from] CSeqError),
    #[error("bad {name} header: {source}")]
    NameAddr {
        name: &'static str,
        source: NameAddrError,
    },
    #[error("bad {name} value {value:?}")]
    BadNumber { name: &'static str, value: String },
}

impl Headers {
    /// The value of a header that must appear exactly once.
    pub fn single(&self, name: &'static str) -> Result<&str, HeaderError> {
        match self.count(name) {
            0 => Err(HeaderError::Missing { name }),
            1 => Ok(self.get(name).expect("count is 1")),
            count => Err(HeaderError::Repeated { name, count }),
        }
    }

    /// All Via values, top first (RFC 3261 §20.42).
    pub fn vias(&self) -> Result<Vec<Via>, HeaderError> {
        self.list("Via")
            .into_iter()
            .map(|v| Via::parse(v).map_err(HeaderError::from))
            .collect()
    }

    /// The topmost Via value.
    pub fn top_via(&self) -> Result<Via, HeaderError> {
        let first = *self
            .list("Via")
            .first()
            .ok_or(HeaderError::Missing { name: "Via" })?;
        Ok(Via::parse(first)?)
    }

    pub fn cseq(&self) -> Result<CSeq, HeaderError> {
        Ok(CSeq::parse(self.single("CSeq")?)?)
    }

    pub fn call_id(&self) -> Result<&str, HeaderError> {
        self.single("Call-ID")
    }

    pub fn from_addr(&self) -> Result<NameAddr, HeaderError> {
        self.name_addr("From")
    }

    pub fn to_addr(&self) -> Result<NameAddr, HeaderError> {
        self.name_addr("To")
    }

    fn name_addr(&self, name: &'static str) -> Result<NameAddr, HeaderError> {
        NameAddr::parse(self.single(name)?).map_err(|source| HeaderError::NameAddr { name, source })
    }

    /// Every value of a name-addr list header (Contact, Route, Record-Route).
    pub fn name_addrs(&self, name: &'static str) -> Result<Vec<NameAddr>, HeaderError> {
        self.list(name)
            .into_iter()
            .filter(|v| *v != "*")
            .map(|v| NameAddr::parse(v).map_err(|source| HeaderError::NameAddr { name, source }))
            .collect()
    }

    /// Max-Forwards (RFC 3261 §20.22), 0..=255.
    pub fn max_forwards(&self) -> Result<Option<u8>, HeaderError> {
        self.get("Max-Forwards")
            .map(|v| {
                v.trim().parse::<u8>().map_err(|_| HeaderError::BadNumber {
                    name: "Max-Forwards",
                    value: v.to_string(),
                })
            })
            .transpose()
    }

    /// The media type of Content-Type without parameters, lower-cased.
    pub fn content_type(&self) -> Option<String> {
        self.get("Content-Type").map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_vias_on_one_line_are_two_values_bug02() {
        let mut h = Headers::new();
        h.push(
            "Via",
            "SIP/2.0/UDP 192.0.2.22:5062;received=192.0.2.22;rport=5062;branch=z9hG4bKkwpQ8Rq2,SIP/2.0/TCP 198.51.100.70:5060;branch=z9hG4bK20ede051",
        );
        let vias = h.vias().unwrap();
        assert_eq!(vias.len(), 2);
        assert_eq!(vias[0].branch(), Some("z9hG4bKkwpQ8Rq2"));
        assert_eq!(h.top_via().unwrap().branch(), Some("z9hG4bKkwpQ8Rq2"));
    }

    #[test]
    fn repeated_single_headers_are_errors_rfc4475_multi01() {
        let mut h = Headers::new();
        h.push("Call-ID", "a");
        h.push("i", "b");
        assert!(matches!(
            h.call_id(),
            Err(HeaderError::Repeated { count: 2, .. })
        ));
    }
}
