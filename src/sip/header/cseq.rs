//! The CSeq header (RFC 3261 §20.16, §8.1.1.5).

use std::fmt;

use crate::sip::method::Method;
use crate::sip::parse::is_token;

/// `CSeq: <number> <method>`; the number is below 2^31 when we choose it and
/// at most 2^32-1 when received (RFC 3261 §8.1.1.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

/// A malformed CSeq.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum CSeqError {
    #[error("malformed CSeq {value:?}")]
    Malformed { value: String },
    #[error("CSeq number {value:?} is larger than 2^32-1")]
    TooLarge { value: String },
}

impl CSeq {
    pub fn parse(value: &str) -> Result<CSeq, CSeqError> {
        let bad = || CSeqError::Malformed {
            value: value.to_string(),
        };
        let mut it = value.split_whitespace();
        let num = it.next().ok_or_else(bad)?;
        let method = it.next().ok_or_else(bad)?;
        if it.next().is_some() || !num.bytes().all(|b| b.is_ascii_digit()) || !is_token(method) {
            return Err(bad());
        }
        let seq = num.parse::<u32>().map_err(|_| CSeqError::TooLarge {
            value: num.to_string(),
        })?;
        Ok(CSeq {
            seq,
            method: Method::from_token(method),
        })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cseq_parses_leading_zeros_and_folding() {
        let c = CSeq::parse("0009 INVITE").unwrap();
        assert_eq!(c.seq, 9);
        assert_eq!(c.method, Method::Invite);
    }

    #[test]
    fn cseq_above_u32_is_rejected_rfc4475_scalar02() {
        assert!(matches!(
            CSeq::parse("36893488147419103232 REGISTER"),
            Err(CSeqError::TooLarge { .. })
        ));
    }
}
