//! SIP dialogs (RFC 3261 §12): identifiers, route sets, CSeq and the
//! construction of in-dialog requests. Sans-IO: a [`Dialog`] is plain data
//! updated by the call that owns it.

use crate::sip::access::HeaderError;
use crate::sip::{Method, NameAddr, Request, Response, SipUri, Uri};

/// A dialog's state (RFC 3261 §12.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialog {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
    /// Our From (UAC) or To (UAS) header value, without the tag.
    pub local_uri: String,
    /// The peer's address as in the other of From/To, without the tag.
    pub remote_uri: String,
    pub local_seq: u32,
    pub remote_seq: Option<u32>,
    /// The peer's Contact URI.
    pub remote_target: Uri,
    /// Route set as name-addr texts, in the order requests carry them.
    pub route_set: Vec<String>,
}

/// Why a dialog could not be formed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DialogError {
    #[error("bad header: {0}")]
    Header(#[from] HeaderError),
    #[error("no Contact in the message that creates the dialog")]
    NoContact,
    #[error("no tag on the remote side")]
    NoRemoteTag,
}

fn without_tag(na: &NameAddr) -> String {
    let mut na = na.clone();
    na.params.remove("tag");
    na.to_string()
}

fn contact_uri(headers: &crate::sip::Headers) -> Result<Uri, DialogError> {
    headers
        .name_addrs("Contact")?
        .into_iter()
        .next()
        .map(|na| na.uri)
        .ok_or(DialogError::NoContact)
}

impl Dialog {
    /// §12.1.2: the UAC side, from our INVITE and a 1xx/2xx with a To tag.
    /// The route set is the Record-Route list in reverse order.
    pub fn from_uac(invite: &Request, resp: &Response) -> Result<Dialog, DialogError> {
        let from = invite.headers.from_addr()?;
        let to = resp.headers.to_addr()?;
        let remote_tag = to.tag().ok_or(DialogError::NoRemoteTag)?.to_string();
        let mut route_set: Vec<String> = resp
            .headers
            .list("Record-Route")
            .into_iter()
            .map(str::to_string)
            .collect();
        route_set.reverse();
        Ok(Dialog {
            call_id: invite.headers.call_id()?.to_string(),
            local_tag: from.tag().unwrap_or_default().to_string(),
            remote_tag,
            local_uri: without_tag(&from),
            remote_uri: without_tag(&to),
            local_seq: invite.headers.cseq()?.seq,
            remote_seq: None,
            remote_target: contact_uri(&resp.headers)?,
            route_set,
        })
    }

    /// §12.1.1: the UAS side, from a received INVITE and the tag we put in
    /// our To. The route set is the Record-Route list in order.
    pub fn from_uas(
        invite: &Request,
        local_tag: &str,
        local_seq: u32,
    ) -> Result<Dialog, DialogError> {
        let from = invite.headers.from_addr()?;
        let to = invite.headers.to_addr()?;
        Ok(Dialog {
            call_id: invite.headers.call_id()?.to_string(),
            local_tag: local_tag.to_string(),
            remote_tag: from.tag().unwrap_or_default().to_string(),
            local_uri: without_tag(&to),
            remote_uri: without_tag(&from),
            local_seq,
            remote_seq: Some(invite.headers.cseq()?.seq),
            // An RFC 2543 INVITE may lack Contact: use the From URI then
            // (RFC 4475 §3.4.1 asks us to accept such requests).
            remote_target: contact_uri(&invite.headers).unwrap_or_else(|_| from.uri.clone()),
            route_set: invite
                .headers
                .list("Record-Route")
                .into_iter()
                .map(str::to_string)
                .collect(),
        })
    }

    /// §12.2.1.1: a new request within the dialog. `via` is our Via value
    /// (with a fresh branch). ACK reuses the INVITE's CSeq number; other
    /// methods increment the local CSeq.
    pub fn create_request(
        &mut self,
        method: Method,
        via: &str,
        cseq_for_ack: Option<u32>,
    ) -> Request {
        let seq = match (&method, cseq_for_ack) {
            (Method::Ack, Some(n)) => n,
            _ => {
                self.local_seq = self.local_seq.wrapping_add(1);
                self.local_seq
            }
        };
        let (ruri, routes) = self.request_target();
        let mut req = Request::new(method.clone(), ruri);
        req.headers.push("Via", via);
        req.headers.push("Max-Forwards", "70");
        req.headers
            .push("From", format!("{};tag={}", self.local_uri, self.local_tag));
        req.headers
            .push("To", format!("{};tag={}", self.remote_uri, self.remote_tag));
        req.headers.push("Call-ID", self.call_id.clone());
        req.headers.push("CSeq", format!("{seq} {method}"));
        for r in routes {
            req.headers.push("Route", r);
        }
        req
    }

    /// §12.2.1.1: with a loose-routing first hop (`lr`), the Request-URI is
    /// the remote target and the route set goes in Route; with a strict
    /// router, the first route becomes the Request-URI and the remote target
    /// is appended to Route.
    fn request_target(&self) -> (String, Vec<String>) {
        let Some(first) = self.route_set.first() else {
            return (self.remote_target.to_string(), Vec::new());
        };
        let first_uri = NameAddr::parse(first).ok().map(|na| na.uri);
        let loose = first_uri
            .as_ref()
            .and_then(Uri::as_sip)
            .is_none_or(|u| u.params.has("lr"));
        if loose {
            return (self.remote_target.to_string(), self.route_set.clone());
        }
        let mut routes: Vec<String> = self.route_set[1..].to_vec();
        routes.push(format!("<{}>", self.remote_target));
        let ruri = first_uri.map(|u| {
            let mut u = u;
            if let Uri::Sip(s) = &mut u {
                s.headers = None;
            }
            u.to_string()
        });
        (
            ruri.unwrap_or_else(|| self.remote_target.to_string()),
            routes,
        )
    }

    /// The URI the next request goes to: the first route, else the remote
    /// target (RFC 3261 §8.1.2, §12.2.1.1).
    pub fn next_hop(&self) -> Option<SipUri> {
        let uri = match self.route_set.first() {
            Some(r) => NameAddr::parse(r).ok()?.uri,
            None => self.remote_target.clone(),
        };
        uri.as_sip().cloned()
    }

    /// §12.2.2: checks a request's CSeq against the remote sequence number;
    /// a lower one is answered with 500.
    pub fn accept_remote_cseq(&mut self, seq: u32, method: &Method) -> bool {
        if *method == Method::Ack || *method == Method::Cancel {
            return true;
        }
        match self.remote_seq {
            Some(r) if seq < r => false,
            _ => {
                self.remote_seq = Some(seq);
                true
            }
        }
    }

    /// Whether a request belongs to this dialog (Call-ID and both tags,
    /// §12.2.2).
    pub fn matches(
        &self,
        call_id: &str,
        local_tag: Option<&str>,
        remote_tag: Option<&str>,
    ) -> bool {
        self.call_id == call_id
            && local_tag == Some(self.local_tag.as_str())
            && remote_tag.unwrap_or("") == self.remote_tag
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::{SipMessage, parse_datagram};

    fn parse_req(s: &str) -> Request {
        match parse_datagram(s.as_bytes()).unwrap() {
            SipMessage::Request(r) => r,
            _ => panic!(),
        }
    }
    fn parse_resp(s: &str) -> Response {
        match parse_datagram(s.as_bytes()).unwrap() {
            SipMessage::Response(r) => r,
            _ => panic!(),
        }
    }

    const INVITE: &str = "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\nFrom: <sip:alice@example.com>;tag=a\r\nTo: <sip:bob@example.com>\r\nCall-ID: c\r\nCSeq: 5 INVITE\r\nContact: <sip:alice@127.0.0.1:5060>\r\nContent-Length: 0\r\n\r\n";
    const OK: &str = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\nRecord-Route: <sip:p2.example.com;lr>\r\nRecord-Route: <sip:p1.example.com;lr>\r\nFrom: <sip:alice@example.com>;tag=a\r\nTo: <sip:bob@example.com>;tag=b\r\nCall-ID: c\r\nCSeq: 5 INVITE\r\nContact: <sip:bob@198.51.100.41:5060>\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn uac_route_set_is_record_route_reversed_and_ack_goes_via_proxy_rfc3261_12_1_2_bug06() {
        let mut d = Dialog::from_uac(&parse_req(INVITE), &parse_resp(OK)).unwrap();
        assert_eq!(
            d.route_set,
            vec!["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
        );
        let ack = d.create_request(
            Method::Ack,
            "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK2",
            Some(5),
        );
        assert_eq!(
            ack.uri, "sip:bob@198.51.100.41:5060",
            "loose routing keeps the remote target"
        );
        assert_eq!(
            ack.headers.list("Route"),
            vec!["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
        );
        assert_eq!(ack.headers.cseq().unwrap().to_string(), "5 ACK");
        assert_eq!(d.next_hop().unwrap().to_string(), "sip:p1.example.com;lr");
        let bye = d.create_request(
            Method::Bye,
            "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK3",
            None,
        );
        assert_eq!(bye.headers.cseq().unwrap().to_string(), "6 BYE");
        assert_eq!(bye.headers.to_addr().unwrap().tag(), Some("b"));
    }

    #[test]
    fn strict_router_puts_the_first_route_in_the_request_uri_rfc3261_12_2_1_1() {
        let ok = OK.replace("<sip:p1.example.com;lr>", "<sip:p1.example.com>");
        let mut d = Dialog::from_uac(&parse_req(INVITE), &parse_resp(&ok)).unwrap();
        let bye = d.create_request(
            Method::Bye,
            "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK3",
            None,
        );
        assert_eq!(bye.uri, "sip:p1.example.com");
        assert_eq!(
            bye.headers.list("Route"),
            vec!["<sip:p2.example.com;lr>", "<sip:bob@198.51.100.41:5060>"]
        );
    }

    #[test]
    fn uas_dialog_and_lower_cseq_rejected_rfc3261_12_2_2() {
        let mut d = Dialog::from_uas(&parse_req(INVITE), "b", 1).unwrap();
        assert_eq!(d.remote_tag, "a");
        assert_eq!(d.remote_target.to_string(), "sip:alice@127.0.0.1:5060");
        assert!(d.accept_remote_cseq(6, &Method::Bye));
        assert!(!d.accept_remote_cseq(4, &Method::Bye));
    }
}
