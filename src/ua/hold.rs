//! Hold and resume by re-INVITE (RFC 3264 §8.4, RFC 3261 §14), in the user
//! agent core.
//!
//! Sans-IO like the rest of the core. [`UserAgent::hold`] and
//! [`UserAgent::resume`] send a re-INVITE whose offer carries the new
//! direction; its responses, a 491 back-off and a Digest challenge arrive
//! through the core's `handle_*` methods. A failed re-INVITE leaves the call
//! as it was (§14.1). The peer's re-INVITEs are answered in `agent.rs`
//! (`on_reinvite`); this module only tells whether they hold us.
//!
//! Events: [`UaEvent::Held`] and [`UaEvent::Resumed`] when the peer
//! accepted our re-INVITE, [`UaEvent::HoldFailed`] when it did not,
//! [`UaEvent::RemoteHold`] and [`UaEvent::RemoteResume`] when the peer's
//! offer stops or restarts what it receives from us.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::Rng;

use super::agent::{EndReason, UaError, UaEvent, UserAgent, next_hop_addr};
use super::call::{CallDirection, CallHandle, CallState};
use crate::sdp::{Direction, LocalMedia, NegState};
use crate::sip::{Method, Request, Response};
use crate::transaction::TransactionKey;

/// What a re-INVITE of ours asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HoldIntent {
    Hold,
    Resume,
}

/// Who holds whom in a call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HoldState {
    /// We put the call on hold (our offer was `sendonly` or `inactive`).
    pub local: bool,
    /// The peer put us on hold: its last offer said it receives nothing
    /// (`sendonly`, `inactive`, or `c=0.0.0.0`, RFC 3264 §8.4).
    pub remote: bool,
}

/// A re-INVITE we sent.
#[derive(Debug, Clone)]
pub struct OutgoingReinvite {
    pub intent: HoldIntent,
    pub key: TransactionKey,
    pub request: Request,
    pub dest: SocketAddr,
    /// Our direction before this offer, restored if it fails.
    pub previous: Direction,
    /// The ACK for its 2xx, once it came (re-sent for retransmissions).
    pub ack: Option<Vec<u8>>,
    /// A challenge was already answered for this re-INVITE.
    pub auth_tried: bool,
}

impl OutgoingReinvite {
    fn pending(&self) -> bool {
        self.ack.is_none()
    }
}

/// RFC 3261 §14.1: after a 491, the owner of the Call-ID (the UAC of the
/// first INVITE) waits 2.1–4 s, the other side 0–2 s, in 10 ms units.
fn glare_backoff(owner: bool, rng: &mut impl Rng) -> Duration {
    let ticks = if owner {
        rng.random_range(210..=400)
    } else {
        rng.random_range(0..=200)
    };
    Duration::from_millis(ticks * 10)
}

impl UserAgent {
    /// Puts the call on hold: a re-INVITE offering `sendonly`, or
    /// `inactive` when the peer already holds us (RFC 3264 §8.4). The call
    /// is held once the peer answers ([`UaEvent::Held`]).
    pub fn hold(&mut self, call: CallHandle, now: Instant) -> Result<(), UaError> {
        self.change_hold(call, HoldIntent::Hold, now)
    }

    /// Takes the call off hold: a re-INVITE offering `sendrecv`
    /// (RFC 3264 §8.4); [`UaEvent::Resumed`] once the peer answers.
    pub fn resume(&mut self, call: CallHandle, now: Instant) -> Result<(), UaError> {
        self.change_hold(call, HoldIntent::Resume, now)
    }

    /// Who holds whom in `call`.
    pub fn hold_state(&self, call: CallHandle) -> Option<HoldState> {
        self.calls.get(&call).map(|c| c.hold)
    }

    fn change_hold(
        &mut self,
        call: CallHandle,
        intent: HoldIntent,
        now: Instant,
    ) -> Result<(), UaError> {
        let c = self.calls.get(&call).ok_or(UaError::NoSuchCall { call })?;
        if c.state != CallState::Confirmed || c.ok_retransmit.is_some() {
            return Err(UaError::WrongState {
                call,
                state: c.state,
            });
        }
        if c.reinvite.as_ref().is_some_and(OutgoingReinvite::pending) || c.reinvite_retry.is_some()
        {
            return Err(UaError::ReinvitePending { call });
        }
        let wanted_held = intent == HoldIntent::Hold;
        if c.hold.local == wanted_held {
            return Err(UaError::AlreadyInHoldState {
                call,
                held: wanted_held,
            });
        }
        self.send_reinvite(call, intent, now)?;
        self.drain_tx(now);
        Ok(())
    }

    /// RFC 3261 §14.1: a re-INVITE in the dialog with a new offer whose
    /// direction follows `intent` and whose `o=` version is one higher
    /// (RFC 3264 §8).
    fn send_reinvite(
        &mut self,
        call: CallHandle,
        intent: HoldIntent,
        now: Instant,
    ) -> Result<(), UaError> {
        let c = self.calls.get(&call).ok_or(UaError::NoSuchCall { call })?;
        let local_ip = c.local_ip;
        let via = self.new_via(local_ip);
        let c = self.calls.get_mut(&call).expect("checked above");
        let previous = c.neg.local().direction;
        let direction = match intent {
            HoldIntent::Hold if c.hold.remote => Direction::Inactive,
            HoldIntent::Hold => Direction::SendOnly,
            HoldIntent::Resume => Direction::SendRecv,
        };
        c.neg.set_local(LocalMedia {
            direction,
            ..c.neg.local().clone()
        });
        let offer = match c.neg.create_offer() {
            Ok(o) => o,
            Err(e) => {
                c.neg.set_local(LocalMedia {
                    direction: previous,
                    ..c.neg.local().clone()
                });
                return Err(match e {
                    crate::sdp::SdpError::OfferPending { .. } => UaError::ReinvitePending { call },
                    other => other.into(),
                });
            }
        };
        let Some(dialog) = c.dialog.as_mut() else {
            c.neg.cancel();
            return Err(UaError::WrongState {
                call,
                state: c.state,
            });
        };
        let mut req = dialog.create_request(Method::Invite, &via, None);
        let dest = next_hop_addr(dialog, c.peer);
        self.add_common_headers(&mut req.headers, local_ip);
        req.set_body("application/sdp", offer.into_bytes());
        let key = match self.tx.send_request(req.clone(), dest, now) {
            Ok(k) => k,
            Err(e) => {
                let c = self.calls.get_mut(&call).expect("checked above");
                c.neg.cancel();
                c.neg.set_local(LocalMedia {
                    direction: previous,
                    ..c.neg.local().clone()
                });
                return Err(e.into());
            }
        };
        let c = self.calls.get_mut(&call).expect("checked above");
        c.reinvite = Some(OutgoingReinvite {
            intent,
            key,
            request: req,
            dest,
            previous,
            ack: None,
            auth_tried: false,
        });
        Ok(())
    }

    /// The call whose re-INVITE (pending or answered) is `key`.
    pub(super) fn reinvite_call(&self, key: &TransactionKey) -> Option<CallHandle> {
        self.calls
            .values()
            .find(|c| c.reinvite.as_ref().is_some_and(|r| r.key == *key))
            .map(|c| c.handle)
    }

    /// A response to our re-INVITE.
    pub(super) fn on_reinvite_response(&mut self, call: CallHandle, resp: Response, now: Instant) {
        match resp.status {
            100..=199 => {}
            200..=299 => self.on_reinvite_2xx(call, resp),
            401 | 407 if self.retry_reinvite_with_credentials(call, &resp, now) => {}
            491 => self.on_reinvite_glare(call, now),
            status => {
                self.reinvite_failed(call, Some(status), resp.reason.clone());
                // RFC 3261 §12.2.1.2: 481 and 408 end the dialog.
                if status == 481 {
                    self.end_call(
                        call,
                        EndReason::Rejected {
                            status,
                            reason: resp.reason,
                        },
                    );
                } else if status == 408 {
                    self.send_bye(call, now);
                }
            }
        }
    }

    /// The re-INVITE got no response at all (Timer B) or could not be
    /// sent: the call is kept as it was, and ended with BYE after a
    /// timeout (the peer is gone, RFC 3261 §12.2.1.2).
    pub(super) fn on_reinvite_failure(
        &mut self,
        call: CallHandle,
        reason: EndReason,
        now: Instant,
    ) {
        let pending = self
            .calls
            .get(&call)
            .and_then(|c| c.reinvite.as_ref())
            .is_some_and(OutgoingReinvite::pending);
        if !pending {
            return;
        }
        let why = match reason {
            EndReason::TransportError => "the network refused the re-INVITE",
            _ => "no response to the re-INVITE",
        };
        self.reinvite_failed(call, None, why.to_string());
        if reason == EndReason::Timeout {
            self.send_bye(call, now);
        }
    }

    /// §13.2.2.4, §14.1: ACK the 2xx (again for each retransmission) and
    /// apply the answer; an unusable answer keeps the previous session.
    fn on_reinvite_2xx(&mut self, call: CallHandle, resp: Response) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        let Some(r) = c.reinvite.as_ref() else {
            return;
        };
        if let Some(ack) = &r.ack {
            let (dest, ack) = (r.dest, ack.clone());
            self.transmit(dest, ack);
            return;
        }
        let local_ip = c.local_ip;
        let via = self.new_via(local_ip);
        let c = self.calls.get_mut(&call).expect("checked above");
        let r = c.reinvite.as_mut().expect("checked above");
        let seq = r.request.headers.cseq().map(|s| s.seq).unwrap_or(1);
        let (intent, previous) = (r.intent, r.previous);
        let Some(dialog) = c.dialog.as_mut() else {
            return;
        };
        // §12.2.1.2: a 2xx to a re-INVITE refreshes the remote target.
        if let Ok(Some(na)) = resp
            .headers
            .name_addrs("Contact")
            .map(|v| v.into_iter().next())
        {
            dialog.remote_target = na.uri;
        }
        let mut ack = dialog.create_request(Method::Ack, &via, Some(seq));
        ack.headers.push("Content-Length", "0");
        let dest = next_hop_addr(dialog, c.peer);
        let payload = ack.to_bytes();
        r.ack = Some(payload.clone());
        r.dest = dest;
        let media = if c.neg.state() == NegState::LocalOffer {
            c.neg
                .receive_answer(&resp.body)
                .and_then(|_| c.neg.negotiate())
        } else {
            Err(crate::sdp::SdpError::WrongState {
                state: c.neg.state(),
                operation: "receive_answer",
            })
        };
        self.transmit(dest, payload);
        match media {
            Ok(media) => {
                let c = self.calls.get_mut(&call).expect("checked above");
                c.hold.local = intent == HoldIntent::Hold;
                self.emit(UaEvent::Media { call, media });
                self.emit(match intent {
                    HoldIntent::Hold => UaEvent::Held { call },
                    HoldIntent::Resume => UaEvent::Resumed { call },
                });
            }
            Err(e) => {
                tracing::warn!("unusable answer to our re-INVITE: {e}");
                let c = self.calls.get_mut(&call).expect("checked above");
                c.neg.cancel();
                c.neg.set_local(LocalMedia {
                    direction: previous,
                    ..c.neg.local().clone()
                });
                self.emit(UaEvent::HoldFailed {
                    call,
                    intent,
                    status: Some(resp.status),
                    reason: format!("unusable answer: {e}"),
                });
            }
        }
    }

    /// §14.1: 491 Request Pending: our offer is withdrawn and the same
    /// change is tried again after the glare back-off.
    fn on_reinvite_glare(&mut self, call: CallHandle, now: Instant) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        let owner = c.direction == CallDirection::Outgoing;
        let delay = glare_backoff(owner, &mut self.rng);
        let c = self.calls.get_mut(&call).expect("checked above");
        let Some(r) = c.reinvite.take() else {
            return;
        };
        c.neg.cancel();
        c.neg.set_local(LocalMedia {
            direction: r.previous,
            ..c.neg.local().clone()
        });
        tracing::debug!("491 to our re-INVITE: trying again in {delay:?}");
        c.reinvite_retry = Some((now + delay, r.intent));
    }

    /// A final failure: withdraw the offer, restore our direction, report.
    fn reinvite_failed(&mut self, call: CallHandle, status: Option<u16>, reason: String) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let Some(r) = c.reinvite.take() else {
            return;
        };
        c.neg.cancel();
        c.neg.set_local(LocalMedia {
            direction: r.previous,
            ..c.neg.local().clone()
        });
        self.emit(UaEvent::HoldFailed {
            call,
            intent: r.intent,
            status,
            reason,
        });
    }

    /// A 401/407 to our re-INVITE: the same offer again, with a new CSeq
    /// and credentials (RFC 3261 §22.2), once.
    fn retry_reinvite_with_credentials(
        &mut self,
        call: CallHandle,
        resp: &Response,
        now: Instant,
    ) -> bool {
        let Some(c) = self.calls.get(&call) else {
            return false;
        };
        let Some(r) = c.reinvite.as_ref().filter(|r| !r.auth_tried) else {
            return false;
        };
        let old = r.request.clone();
        let local_ip = c.local_ip;
        let via = self.new_via(local_ip);
        let c = self.calls.get_mut(&call).expect("checked above");
        let Some(dialog) = c.dialog.as_mut() else {
            return false;
        };
        let mut req = dialog.create_request(Method::Invite, &via, None);
        let dest = next_hop_addr(dialog, c.peer);
        for name in ["Contact", "Allow", "User-Agent"] {
            req.headers.copy_from(&old.headers, name);
        }
        let content_type = old.headers.content_type().unwrap_or_default();
        req.set_body(&content_type, old.body.clone());
        let auth = match self.authorization_for(resp, "INVITE", &req.uri.clone(), &old.body) {
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
        let r = c.reinvite.as_mut().expect("checked above");
        r.key = key;
        r.request = req;
        r.dest = dest;
        r.auth_tried = true;
        true
    }

    /// The earliest 491 retry deadline.
    pub(super) fn next_reinvite_retry(&self) -> Option<Instant> {
        self.calls
            .values()
            .filter_map(|c| c.reinvite_retry.map(|(t, _)| t))
            .min()
    }

    /// Sends the re-INVITEs whose 491 back-off is over.
    pub(super) fn on_timer_reinvite_retry(&mut self, now: Instant) {
        let due: Vec<(CallHandle, HoldIntent)> = self
            .calls
            .values()
            .filter_map(|c| match c.reinvite_retry {
                Some((t, intent)) if t <= now => Some((c.handle, intent)),
                _ => None,
            })
            .collect();
        for (call, intent) in due {
            let c = self.calls.get_mut(&call).expect("collected above");
            c.reinvite_retry = None;
            if c.state != CallState::Confirmed {
                continue;
            }
            if let Err(e) = self.send_reinvite(call, intent, now) {
                tracing::warn!("re-INVITE retry: {e}");
                self.emit(UaEvent::HoldFailed {
                    call,
                    intent,
                    status: Some(491),
                    reason: e.to_string(),
                });
            }
        }
    }

    /// After the peer's re-INVITE offer was accepted: whether it now holds
    /// us, from the direction it offered (`sendonly`, `inactive` or
    /// `c=0.0.0.0`: it receives nothing, RFC 3264 §8.4).
    pub(super) fn note_remote_offer(&mut self, call: CallHandle, offer: &[u8]) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let probe = LocalMedia {
            direction: Direction::SendRecv,
            ..c.neg.local().clone()
        };
        let Ok((_, media)) = crate::sdp::create_answer(offer, &probe, 0, 1) else {
            return;
        };
        // Answering with sendrecv, we send only if the peer receives.
        let held = !media.direction.sends();
        if held == c.hold.remote {
            return;
        }
        c.hold.remote = held;
        self.emit(if held {
            UaEvent::RemoteHold { call }
        } else {
            UaEvent::RemoteResume { call }
        });
    }
}
