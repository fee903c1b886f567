//! Blind transfer with REFER and NOTIFY (RFC 3515, RFC 5589 §6), in the
//! user agent core.
//!
//! Sans-IO like the rest of the core.
//!
//! Transferor: [`UserAgent::transfer`] sends REFER in the call's dialog with
//! `Refer-To` and `Referred-By`. The 202 and each NOTIFY's
//! `message/sipfrag` status become [`UaEvent::Transfer`] events; every
//! NOTIFY is answered 200, and a 2xx sipfrag hangs up the call (RFC 5589
//! §6.1).
//!
//! Transferee: a REFER inside a dialog is answered 202, a first NOTIFY
//! (`SIP/2.0 100 Trying`) goes out, and [`UaEvent::TransferRequested`]
//! asks the shell to place the new call with [`UserAgent::dial_referred`]
//! (it owns the sockets). The new call's progress is reported back in
//! NOTIFYs (`Event: refer`, `Subscription-State` active, then terminated on
//! a final status); when it is answered, the original call is hung up. A
//! REFER outside a dialog is refused with 403.

use std::net::SocketAddr;
use std::time::Instant;

use super::agent::{EndReason, UaError, UaEvent, UserAgent, next_hop_addr};
use super::call::{CallHandle, CallState};
use crate::sdp::LocalMedia;
use crate::sip::{Method, NameAddr, Request, Response, Uri};
use crate::transaction::{TransactionKey, make_response};

/// How a transfer we asked for is going (transferor side).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "progress", rename_all = "snake_case")]
pub enum TransferProgress {
    /// The peer accepted the REFER (202, RFC 3515 §2.4.2).
    Accepted,
    /// A NOTIFY reported a provisional status of the new call
    /// (`SIP/2.0 100 Trying`, `180 Ringing`).
    Trying { status: u16, reason: String },
    /// The new call was answered (2xx sipfrag); we hang up ours.
    Succeeded { status: u16, reason: String },
    /// The REFER was refused, or the new call failed (`status` is the
    /// REFER's or the sipfrag's final status; none after a timeout).
    Failed { status: Option<u16>, reason: String },
}

/// Our REFER (transferor).
#[derive(Debug, Clone)]
pub struct ReferOut {
    pub key: TransactionKey,
    pub target: String,
    /// The REFER as sent, to send again with credentials.
    pub request: Request,
    /// A challenge was already answered for this REFER.
    pub auth_tried: bool,
    /// A final sipfrag or REFER failure was reported.
    pub done: bool,
}

/// A REFER we accepted (transferee).
#[derive(Debug, Clone)]
pub struct ReferIn {
    /// CSeq number of the REFER: the `id` of `Event: refer` (RFC 3515 §2.4.6).
    pub id: u32,
    /// The call placed to the Refer-To target.
    pub new_call: Option<CallHandle>,
    /// The subscription is terminated (final NOTIFY sent).
    pub done: bool,
}

/// The status line of a `message/sipfrag` body (RFC 3420): `SIP/2.0 200 OK`.
pub fn sipfrag_status(body: &[u8]) -> Option<(u16, String)> {
    let text = std::str::from_utf8(body).ok()?;
    let line = text.lines().next()?.trim();
    let rest = line.strip_prefix("SIP/2.0 ")?;
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    let status: u16 = code.parse().ok()?;
    (100..700)
        .contains(&status)
        .then(|| (status, reason.trim().to_string()))
}

/// The status a failed new call reports in its final sipfrag.
fn end_status(reason: &EndReason) -> (u16, String) {
    match reason {
        EndReason::Rejected { status, reason } => (*status, reason.clone()),
        EndReason::Timeout | EndReason::NoFinalResponse { .. } => (408, "Request Timeout".into()),
        EndReason::Cancelled | EndReason::RemoteCancelled => (487, "Request Terminated".into()),
        EndReason::TransportError => (503, "Service Unavailable".into()),
        EndReason::MediaFailure { .. } => (488, "Not Acceptable Here".into()),
        _ => (500, "Server Internal Error".into()),
    }
}

impl UserAgent {
    /// Blind transfer (RFC 5589 §6): asks the peer of `call` to call
    /// `target` with REFER (RFC 3515 §2.4.1). Progress arrives as
    /// [`UaEvent::Transfer`]; on success the call is hung up.
    pub fn transfer(
        &mut self,
        call: CallHandle,
        target: &str,
        now: Instant,
    ) -> Result<(), UaError> {
        let uri = match Uri::parse(target) {
            Ok(u) if u.as_sip().is_some() => u,
            _ => {
                return Err(UaError::BadTarget {
                    target: target.to_string(),
                });
            }
        };
        let c = self.calls.get(&call).ok_or(UaError::NoSuchCall { call })?;
        if c.state != CallState::Confirmed {
            return Err(UaError::WrongState {
                call,
                state: c.state,
            });
        }
        if c.refer_out.as_ref().is_some_and(|r| !r.done) {
            return Err(UaError::TransferPending { call });
        }
        let local_ip = c.local_ip;
        let via = self.new_via(local_ip);
        let c = self.calls.get_mut(&call).expect("checked above");
        let dialog = c.dialog.as_mut().ok_or(UaError::WrongState {
            call,
            state: CallState::Confirmed,
        })?;
        let mut req = dialog.create_request(Method::Refer, &via, None);
        req.headers.push("Refer-To", format!("<{uri}>"));
        req.headers.push("Referred-By", dialog.local_uri.clone());
        let dest = next_hop_addr(dialog, c.peer);
        self.add_common_headers(&mut req.headers, local_ip);
        req.set_body("", Vec::new());
        let key = self.tx.send_request(req.clone(), dest, now)?;
        let c = self.calls.get_mut(&call).expect("checked above");
        c.refer_out = Some(ReferOut {
            key,
            target: uri.to_string(),
            request: req,
            auth_tried: false,
            done: false,
        });
        self.drain_tx(now);
        Ok(())
    }

    /// The call whose REFER is `key`.
    pub(super) fn refer_call(&self, key: &TransactionKey) -> Option<CallHandle> {
        self.calls
            .values()
            .find(|c| c.refer_out.as_ref().is_some_and(|r| r.key == *key))
            .map(|c| c.handle)
    }

    /// The response to our REFER: 2xx (202) accepted, a 401/407 answered
    /// once with credentials, else failed.
    pub(super) fn on_refer_response(&mut self, call: CallHandle, resp: &Response, now: Instant) {
        if resp.status < 200 {
            return;
        }
        if matches!(resp.status, 401 | 407) && self.retry_refer_with_credentials(call, resp, now) {
            return;
        }
        let progress = if resp.status < 300 {
            TransferProgress::Accepted
        } else {
            TransferProgress::Failed {
                status: Some(resp.status),
                reason: resp.reason.clone(),
            }
        };
        self.report_transfer(call, progress);
    }

    /// RFC 3261 §22.2: the same REFER with a new CSeq and credentials.
    fn retry_refer_with_credentials(
        &mut self,
        call: CallHandle,
        resp: &Response,
        now: Instant,
    ) -> bool {
        let Some(c) = self.calls.get(&call) else {
            return false;
        };
        let Some(r) = c.refer_out.as_ref().filter(|r| !r.auth_tried) else {
            return false;
        };
        let old = r.request.clone();
        let local_ip = c.local_ip;
        let via = self.new_via(local_ip);
        let c = self.calls.get_mut(&call).expect("checked above");
        let Some(dialog) = c.dialog.as_mut() else {
            return false;
        };
        let mut req = dialog.create_request(Method::Refer, &via, None);
        let dest = next_hop_addr(dialog, c.peer);
        for name in ["Refer-To", "Referred-By", "Contact", "Allow", "User-Agent"] {
            req.headers.copy_from(&old.headers, name);
        }
        req.set_body("", Vec::new());
        let auth = match self.authorization_for(resp, "REFER", &req.uri.clone(), &[]) {
            Ok(a) => a,
            Err(why) => {
                tracing::warn!("{} {} ({why})", resp.status, resp.reason);
                return false;
            }
        };
        req.headers.push(auth.name, auth.value);
        let Ok(key) = self.tx.send_request(req.clone(), dest, now) else {
            return false;
        };
        self.accounts.note_authorized(key.clone(), auth.realm);
        let c = self.calls.get_mut(&call).expect("checked above");
        let r = c.refer_out.as_mut().expect("checked above");
        r.key = key;
        r.request = req;
        r.auth_tried = true;
        true
    }

    /// The REFER got no response or could not be sent.
    pub(super) fn on_refer_failure(&mut self, call: CallHandle, reason: &EndReason) {
        self.report_transfer(
            call,
            TransferProgress::Failed {
                status: None,
                reason: match reason {
                    EndReason::TransportError => "the network refused the request".to_string(),
                    _ => "no response".to_string(),
                },
            },
        );
    }

    fn report_transfer(&mut self, call: CallHandle, progress: TransferProgress) {
        let Some(r) = self.calls.get_mut(&call).and_then(|c| c.refer_out.as_mut()) else {
            return;
        };
        if r.done {
            return;
        }
        if matches!(
            progress,
            TransferProgress::Succeeded { .. } | TransferProgress::Failed { .. }
        ) {
            r.done = true;
        }
        self.emit(UaEvent::Transfer { call, progress });
    }

    /// RFC 3515 §2.4.4 / RFC 6665: a NOTIFY for our REFER: 200, then its
    /// sipfrag status as progress; a 2xx hangs up the call (RFC 5589 §6.1).
    pub(super) fn on_notify(&mut self, key: TransactionKey, req: Request, now: Instant) {
        let Some(call) = self.find_dialog_call(&req) else {
            return self.respond(&key, &req, 481, now);
        };
        let event = req.headers.get("Event").unwrap_or_default();
        let package = event.split(';').next().unwrap_or("").trim();
        if !package.eq_ignore_ascii_case("refer") {
            // RFC 6665 §4.1.3: an event package we did not subscribe to.
            return self.respond(&key, &req, 489, now);
        }
        self.respond_in_dialog(&key, &req, 200, now);
        let Some((status, reason)) = sipfrag_status(&req.body) else {
            return;
        };
        let progress = match status {
            100..=199 => TransferProgress::Trying { status, reason },
            200..=299 => TransferProgress::Succeeded { status, reason },
            _ => TransferProgress::Failed {
                status: Some(status),
                reason,
            },
        };
        let success = matches!(progress, TransferProgress::Succeeded { .. });
        self.report_transfer(call, progress);
        if success && self.call_state(call) == Some(CallState::Confirmed) {
            self.send_bye(call, now);
        }
    }

    /// RFC 3515 §2.4.2: a REFER inside a dialog is accepted with 202 and
    /// reported; outside one it is refused (403).
    pub(super) fn on_refer(&mut self, key: TransactionKey, req: Request, now: Instant) {
        let Some(call) = self.find_dialog_call(&req) else {
            return self.respond(&key, &req, 481, now);
        };
        let seq = req.headers.cseq().map(|c| c.seq).unwrap_or(0);
        let c = self.calls.get_mut(&call).expect("found above");
        if !c
            .dialog
            .as_mut()
            .is_some_and(|d| d.accept_remote_cseq(seq, &Method::Refer))
        {
            return self.respond(&key, &req, 500, now);
        }
        if c.state != CallState::Confirmed {
            return self.respond(&key, &req, 403, now);
        }
        if c.refer_in.as_ref().is_some_and(|r| !r.done) {
            // One transfer at a time.
            return self.respond(&key, &req, 491, now);
        }
        // §2.4.1: exactly one Refer-To, a SIP URI (its headers part, e.g.
        // Replaces, is not supported and dropped).
        let target = match req.headers.name_addrs("Refer-To") {
            Ok(v) if v.len() == 1 => v.into_iter().next().map(|na| na.uri),
            _ => None,
        };
        let Some(Uri::Sip(mut target)) = target else {
            return self.respond(&key, &req, 400, now);
        };
        target.headers = None;
        let referred_by = req
            .headers
            .get("Referred-By")
            .and_then(|v| NameAddr::parse(v).ok())
            .map(|na| na.uri.to_string());
        self.respond_in_dialog(&key, &req, 202, now);
        let c = self.calls.get_mut(&call).expect("found above");
        c.refer_in = Some(ReferIn {
            id: seq,
            new_call: None,
            done: false,
        });
        // §2.4.4: the first NOTIFY goes out at once.
        self.send_refer_notify(call, 100, "Trying", now);
        self.emit(UaEvent::TransferRequested {
            call,
            target: target.to_string(),
            referred_by,
        });
    }

    /// A response with the dialog's To tag and our Contact.
    fn respond_in_dialog(
        &mut self,
        key: &TransactionKey,
        req: &Request,
        status: u16,
        now: Instant,
    ) {
        let mut resp = make_response(req, status, None);
        let local_ip = self
            .find_dialog_call(req)
            .and_then(|c| self.call_local_ip(c))
            .unwrap_or(self.datagram_local_ip);
        resp.headers.push("Contact", self.contact(local_ip));
        let _ = self.tx.send_response(key, resp, now);
    }

    /// Transferee: places the call the peer of `original` asked for (after
    /// [`UaEvent::TransferRequested`]); its progress goes back in NOTIFYs.
    pub fn dial_referred(
        &mut self,
        original: CallHandle,
        target: &str,
        dest: SocketAddr,
        media: LocalMedia,
        now: Instant,
    ) -> Result<CallHandle, UaError> {
        let call = match self.dial(target, dest, media, now) {
            Ok(c) => c,
            Err(e) => {
                self.refer_failed(original, 400, "Bad Request", now);
                return Err(e);
            }
        };
        if let Some(c) = self.calls.get_mut(&call) {
            c.referred_from = Some(original);
        }
        if let Some(r) = self
            .calls
            .get_mut(&original)
            .and_then(|c| c.refer_in.as_mut())
        {
            r.new_call = Some(call);
        }
        self.emit(UaEvent::ReferredCall {
            call,
            original,
            target: target.to_string(),
        });
        Ok(call)
    }

    /// Transferee: the new call could not even be placed (the target does
    /// not resolve, ...): a final NOTIFY with `status`.
    pub fn refer_failed(&mut self, original: CallHandle, status: u16, reason: &str, now: Instant) {
        self.send_refer_notify(original, status, reason, now);
        self.drain_tx(now);
    }

    /// A referred call progressed: tell the transferor (RFC 3515 §2.4.5),
    /// and hang up the original call once the new one is answered.
    pub(super) fn referred_progress(
        &mut self,
        call: CallHandle,
        status: u16,
        reason: &str,
        now: Instant,
    ) {
        let Some(original) = self.calls.get(&call).and_then(|c| c.referred_from) else {
            return;
        };
        self.send_refer_notify(original, status, reason, now);
        if (200..300).contains(&status) && self.call_state(original) == Some(CallState::Confirmed) {
            self.send_bye(original, now);
        }
    }

    /// A referred call ended before its answer: a final failure NOTIFY.
    pub(super) fn referred_ended(&mut self, call: CallHandle, reason: &EndReason, now: Instant) {
        let answered = self
            .calls
            .get(&call)
            .is_some_and(|c| c.answered_at.is_some());
        if answered {
            return;
        }
        let (status, text) = end_status(reason);
        self.referred_progress(call, status, &text, now);
    }

    /// RFC 3515 §2.4.4–2.4.6: NOTIFY with `Event: refer;id=<REFER CSeq>`,
    /// a `message/sipfrag` status line, and `Subscription-State`
    /// terminated once the status is final.
    fn send_refer_notify(&mut self, original: CallHandle, status: u16, reason: &str, now: Instant) {
        let Some(c) = self.calls.get(&original) else {
            return;
        };
        let Some(r) = c.refer_in.as_ref().filter(|r| !r.done) else {
            return;
        };
        if !matches!(c.state, CallState::Confirmed) {
            return;
        }
        let id = r.id;
        let local_ip = c.local_ip;
        let via = self.new_via(local_ip);
        let c = self.calls.get_mut(&original).expect("checked above");
        let Some(dialog) = c.dialog.as_mut() else {
            return;
        };
        let final_status = status >= 200;
        let mut req = dialog.create_request(Method::Notify, &via, None);
        req.headers.push("Event", format!("refer;id={id}"));
        req.headers.push(
            "Subscription-State",
            if final_status {
                "terminated;reason=noresource"
            } else {
                "active;expires=60"
            },
        );
        let dest = next_hop_addr(dialog, c.peer);
        if final_status && let Some(r) = c.refer_in.as_mut() {
            r.done = true;
        }
        self.add_common_headers(&mut req.headers, local_ip);
        req.set_body(
            "message/sipfrag;version=2.0",
            format!("SIP/2.0 {status} {reason}\r\n").into_bytes(),
        );
        if let Err(e) = self.tx.send_request(req, dest, now) {
            tracing::warn!("NOTIFY: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sipfrag_status_line_is_read_rfc3420() {
        assert_eq!(
            sipfrag_status(b"SIP/2.0 200 OK\r\n"),
            Some((200, "OK".into()))
        );
        assert_eq!(
            sipfrag_status(b"SIP/2.0 100 Trying"),
            Some((100, "Trying".into()))
        );
        assert_eq!(
            sipfrag_status(b"SIP/2.0 486 Busy Here\r\nVia: x\r\n"),
            Some((486, "Busy Here".into()))
        );
        assert_eq!(sipfrag_status(b"SIP/2.0 99 Nope"), None);
        assert_eq!(sipfrag_status(b"INVITE sip:a@b SIP/2.0"), None);
        assert_eq!(sipfrag_status(b""), None);
    }
}
