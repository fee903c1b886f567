//! Transaction identifiers and matching (RFC 3261 §17.1.3, §17.2.3).

use crate::sip::access::HeaderError;
use crate::sip::{Method, Request, Response};

/// Identifies a transaction. ACK is matched to the INVITE transaction, so
/// its method is stored as INVITE (§17.2.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TransactionKey {
    pub role: Role,
    /// The top Via branch, or an RFC 2543 composite id when the branch lacks
    /// the magic cookie.
    pub branch: String,
    /// The top Via sent-by (server side only; empty for client keys).
    pub sent_by: String,
    pub method: Method,
}

/// Which side of the transaction we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Client,
    Server,
}

fn txn_method(m: &Method) -> Method {
    match m {
        Method::Ack => Method::Invite,
        m => m.clone(),
    }
}

impl TransactionKey {
    /// The key of a client transaction for the request we send.
    pub fn for_client_request(req: &Request) -> Result<TransactionKey, HeaderError> {
        let via = req.headers.top_via()?;
        Ok(TransactionKey {
            role: Role::Client,
            branch: via.branch().unwrap_or_default().to_string(),
            sent_by: String::new(),
            method: txn_method(&req.method),
        })
    }

    /// §17.1.3: a response matches the client transaction whose top Via
    /// branch and CSeq method it carries.
    pub fn for_response(resp: &Response) -> Result<TransactionKey, HeaderError> {
        let via = resp.headers.top_via()?;
        let cseq = resp.headers.cseq()?;
        Ok(TransactionKey {
            role: Role::Client,
            branch: via.branch().unwrap_or_default().to_string(),
            sent_by: String::new(),
            method: txn_method(&cseq.method),
        })
    }

    /// §17.2.3: a request matches a server transaction by branch, sent-by
    /// and method (ACK matching INVITE). Without the magic cookie the RFC
    /// 2543 rules apply: Call-ID, From tag, CSeq number and top Via together
    /// identify the transaction.
    pub fn for_server_request(req: &Request) -> Result<TransactionKey, HeaderError> {
        let via = req.headers.top_via()?;
        let branch = if via.is_rfc3261_branch() && via.branch() != Some("z9hG4bK") {
            via.branch().unwrap_or_default().to_string()
        } else {
            let cseq = req.headers.cseq()?;
            let from_tag = req.headers.from_addr()?.tag().unwrap_or("").to_string();
            format!(
                "rfc2543;{};{};{};{}",
                req.headers.call_id()?,
                from_tag,
                cseq.seq,
                via.branch().unwrap_or("")
            )
        };
        Ok(TransactionKey {
            role: Role::Server,
            branch,
            sent_by: via.sent_by(),
            method: txn_method(&req.method),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::SipMessage;
    use crate::sip::parse_datagram;

    fn request(text: &str) -> Request {
        match parse_datagram(text.as_bytes()).unwrap() {
            SipMessage::Request(r) => r,
            _ => panic!("not a request"),
        }
    }

    const INVITE: &str = "INVITE sip:b@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKabc\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@y>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn ack_matches_the_invite_server_transaction_rfc3261_17_2_3() {
        let inv = request(INVITE);
        let ack = request(
            &INVITE
                .replace("INVITE sip", "ACK sip")
                .replace("1 INVITE", "1 ACK"),
        );
        assert_eq!(
            TransactionKey::for_server_request(&inv).unwrap(),
            TransactionKey::for_server_request(&ack).unwrap()
        );
    }

    #[test]
    fn cancel_is_a_different_transaction_with_the_same_branch() {
        let inv = request(INVITE);
        let cancel = request(
            &INVITE
                .replace("INVITE sip", "CANCEL sip")
                .replace("1 INVITE", "1 CANCEL"),
        );
        assert_ne!(
            TransactionKey::for_server_request(&inv).unwrap(),
            TransactionKey::for_server_request(&cancel).unwrap()
        );
    }

    #[test]
    fn rfc2543_requests_match_by_call_id_tag_and_cseq() {
        let inv = request(&INVITE.replace(";branch=z9hG4bKabc", ""));
        let again = request(&INVITE.replace(";branch=z9hG4bKabc", ""));
        let k = TransactionKey::for_server_request(&inv).unwrap();
        assert!(k.branch.starts_with("rfc2543;c1;1;1"));
        assert_eq!(k, TransactionKey::for_server_request(&again).unwrap());
    }
}
