//! The user agent core: UAC and UAS behaviour for calls (RFC 3261 §8, §9,
//! §13–§15), OPTIONS (§11) and the validation of what arrives.
//!
//! Sans-IO. Feed it datagrams ([`UserAgent::handle_datagram`]), user
//! commands ([`UserAgent::dial`], [`UserAgent::answer`], ...) and the time
//! ([`UserAgent::handle_timeout`]), then drain [`UserAgent::poll_output`]
//! and sleep until [`UserAgent::next_timeout`]. It never reads the clock
//! and takes its randomness (tags, branches, Call-IDs) from a seeded RNG.

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::call::{Call, CallDirection, CallHandle, CallState, Retransmit};
use crate::dialog::Dialog;
use crate::sdp::{
    LocalMedia, NegotiatedMedia, Negotiator, ParseProblem, Rejection as SdpRejection, SdpError,
};
use crate::sip::validate::{
    Rejection, allow_header_value, build_error_response, check_request, check_response,
};
use crate::sip::{
    Host, Method, NameAddr, ParseError, Request, Response, SipMessage, SipUri, Uri, Via,
    parse_datagram,
};
use crate::transaction::{
    Output, TimerConfig, TransactionKey, TransactionLayer, TxEvent, make_response,
};
use crate::transport::{Transmit, response_destination, uri_destination};

/// What the user agent is configured with.
#[derive(Debug, Clone)]
pub struct UaConfig {
    /// User part of our Contact (and of From when `from` is not set).
    pub user: String,
    /// From URI for outgoing calls (`sip:alice@example.com`).
    pub from: Option<String>,
    pub display_name: Option<String>,
    /// The port of our SIP socket (for Via and Contact).
    pub local_port: u16,
    pub timers: TimerConfig,
    pub user_agent: String,
    /// Seed for tags, branches and Call-IDs.
    pub seed: u64,
    /// Route set for requests outside a dialog (an outbound proxy,
    /// RFC 3261 §8.1.2), as name-addr texts like `<sip:proxy;lr>`.
    pub route: Vec<String>,
}

/// Why a call ended.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EndReason {
    /// We hung up after the answer (BYE).
    LocalHangup,
    /// The peer sent BYE.
    RemoteHangup,
    /// We cancelled before the answer (CANCEL, 487).
    Cancelled,
    /// The caller cancelled before we answered.
    RemoteCancelled,
    /// The peer answered with a final error response.
    Rejected { status: u16, reason: String },
    /// We refused the incoming call.
    LocalReject { status: u16 },
    /// No response at all in time (Timer B / 408).
    Timeout,
    /// The callee sent provisional responses (the latest: `status`) but no
    /// final one before Timer B (RFC 6026 keeps it running in Proceeding)
    /// or our ring timeout.
    NoFinalResponse { status: u16 },
    /// Our 2xx was never acknowledged (§13.3.1.4).
    NoAck,
    /// The network refused the request.
    TransportError,
    /// The answer's SDP was unusable; the call was hung up.
    MediaFailure { detail: String },
    /// The peer stopped sending RTP; we sent BYE without waiting for it.
    MediaTimeout,
    /// We hung up after the answer but the peer never answered our BYE
    /// (RFC 3261 §15.1.1: the session is over once the BYE is sent).
    ByeTimeout,
}

/// Events for the shell and the user.
#[derive(Debug, Clone, PartialEq)]
pub enum UaEvent {
    IncomingCall {
        call: CallHandle,
        from: String,
        to: String,
    },
    /// A provisional response to our INVITE.
    Progress {
        call: CallHandle,
        status: u16,
        reason: String,
    },
    /// Media was negotiated (early media, the answer, or a re-INVITE).
    Media {
        call: CallHandle,
        media: NegotiatedMedia,
    },
    /// The call is answered: outgoing on the 2xx, incoming on the ACK.
    Answered {
        call: CallHandle,
    },
    Ended {
        call: CallHandle,
        reason: EndReason,
    },
    /// A registration changed (RFC 3261 §10).
    Registration {
        reg: super::accounts::RegHandle,
        event: super::accounts::RegEvent,
    },
    /// A DTMF digit sent by SIP INFO (`application/dtmf-relay`).
    Dtmf {
        call: CallHandle,
        digit: char,
    },
    /// Our hold re-INVITE was accepted: we no longer receive, and send
    /// only if the peer still wants it (RFC 3264 §8.4).
    Held {
        call: CallHandle,
    },
    /// Our resume re-INVITE was accepted.
    Resumed {
        call: CallHandle,
    },
    /// Our hold or resume re-INVITE failed; the call stays as it was
    /// (RFC 3261 §14.1). `status` is the final response, if one came.
    HoldFailed {
        call: CallHandle,
        intent: super::hold::HoldIntent,
        status: Option<u16>,
        reason: String,
    },
    /// The peer put us on hold (its offer receives nothing).
    RemoteHold {
        call: CallHandle,
    },
    /// The peer took us off hold.
    RemoteResume {
        call: CallHandle,
    },
    /// Progress of our blind transfer of `call` (REFER, RFC 3515).
    Transfer {
        call: CallHandle,
        progress: super::refer::TransferProgress,
    },
    /// The peer of `call` asks us to call `target` (REFER accepted with
    /// 202, RFC 3515 §2.4.2). The shell places the call with
    /// [`UserAgent::dial_referred`].
    TransferRequested {
        call: CallHandle,
        target: String,
        referred_by: Option<String>,
    },
    /// `call` was placed to `target` because the peer of `original`
    /// transferred us.
    ReferredCall {
        call: CallHandle,
        original: CallHandle,
        target: String,
    },
    /// A request we refused before any call processing (RFC 3261 §8.2).
    Rejected {
        method: String,
        status: u16,
        detail: String,
    },
    /// NAT discovery: our public address was learnt or changed.
    Nat(crate::nat::NatEvent),
}

/// Outputs of the core.
#[derive(Debug, Clone, PartialEq)]
pub enum UaOutput {
    Transmit(Transmit),
    Event(UaEvent),
}

/// Errors from user commands.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UaError {
    #[error("{target:?} is not a SIP URI")]
    BadTarget { target: String },
    #[error("no call {call}")]
    NoSuchCall { call: CallHandle },
    #[error("call {call} cannot do that now (it is {state})")]
    WrongState { call: CallHandle, state: CallState },
    #[error("call {call} already has a re-INVITE in progress")]
    ReinvitePending { call: CallHandle },
    #[error("call {call} is already {}", if *held { "on hold" } else { "active" })]
    AlreadyInHoldState { call: CallHandle, held: bool },
    #[error("call {call} already has a transfer in progress")]
    TransferPending { call: CallHandle },
    #[error("SDP: {0}")]
    Sdp(#[from] SdpError),
    #[error("transaction: {0}")]
    Tx(#[from] crate::transaction::TxError),
}

/// The user agent core.
pub struct UserAgent {
    pub(super) cfg: UaConfig,
    pub(super) tx: TransactionLayer,
    pub(super) rng: StdRng,
    pub(super) calls: BTreeMap<CallHandle, Call>,
    next_handle: CallHandle,
    pub(super) out: VecDeque<UaOutput>,
    /// Media settings used to check incoming offers before the call has a
    /// port of its own.
    media_template: LocalMedia,
    /// The local address the datagram being handled arrived on.
    pub(super) datagram_local_ip: IpAddr,
    /// Registrations and Digest state (see `accounts.rs`).
    pub(super) accounts: super::accounts::Accounts,
    /// Our SIP address as seen from outside the NAT (STUN or rport), used
    /// in Contact headers instead of the local one.
    pub(super) public_sip: Option<SocketAddr>,
}

impl UserAgent {
    pub fn new(cfg: UaConfig, media_template: LocalMedia) -> UserAgent {
        UserAgent {
            tx: TransactionLayer::new(cfg.timers),
            rng: StdRng::seed_from_u64(cfg.seed),
            cfg,
            calls: BTreeMap::new(),
            next_handle: 1,
            out: VecDeque::new(),
            datagram_local_ip: media_template.addr,
            media_template,
            accounts: Default::default(),
            public_sip: None,
        }
    }

    pub fn poll_output(&mut self) -> Option<UaOutput> {
        self.out.pop_front()
    }

    /// The next instant at which [`UserAgent::handle_timeout`] must run.
    pub fn next_timeout(&self) -> Option<Instant> {
        let retrans = self
            .calls
            .values()
            .filter_map(|c| c.ok_retransmit.as_ref().map(|r| r.next));
        self.tx
            .next_timeout()
            .into_iter()
            .chain(retrans)
            .chain(self.accounts.next_timeout())
            .chain(self.next_reinvite_retry())
            .chain(self.calls.values().filter_map(|c| c.bye_deadline))
            .min()
    }

    /// Live calls.
    pub fn call_count(&self) -> usize {
        self.calls.len()
    }

    /// Our address as the peer of `call` sees it.
    pub fn call_local_ip(&self, call: CallHandle) -> Option<IpAddr> {
        self.calls.get(&call).map(|c| c.local_ip)
    }

    pub fn call_state(&self, call: CallHandle) -> Option<CallState> {
        self.calls.get(&call).map(|c| c.state)
    }

    /// The handles of all live calls, oldest first.
    pub fn call_handles(&self) -> Vec<CallHandle> {
        self.calls.keys().copied().collect()
    }

    /// Who started `call`.
    pub fn call_direction(&self, call: CallHandle) -> Option<CallDirection> {
        self.calls.get(&call).map(|c| c.direction)
    }

    /// The other party of `call`: the To of our INVITE, or the From of the
    /// peer's (name-addr text).
    pub fn call_peer(&self, call: CallHandle) -> Option<String> {
        let c = self.calls.get(&call)?;
        if let Some(d) = &c.dialog {
            return Some(d.remote_uri.clone());
        }
        let header = match c.direction {
            CallDirection::Outgoing => "To",
            CallDirection::Incoming => "From",
        };
        let text = c.invite.headers.get(header).unwrap_or_default();
        Some(match NameAddr::parse(text) {
            Ok(mut na) => {
                na.params = Default::default();
                na.to_string()
            }
            Err(_) => text.to_string(),
        })
    }

    // ----- identifiers -------------------------------------------------

    pub(super) fn token(&mut self, len: usize) -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        (0..len)
            .map(|_| ALPHABET[self.rng.random_range(0..ALPHABET.len())] as char)
            .collect()
    }

    /// RFC 3261 §8.1.1.7: a branch unique in space and time, with the cookie.
    pub(super) fn new_via(&mut self, local_ip: IpAddr) -> String {
        let branch = format!("z9hG4bK{}", self.token(16));
        Via::new("UDP", Host::from_ip(local_ip), self.cfg.local_port, &branch).to_string()
    }

    pub(super) fn contact(&self, local_ip: IpAddr) -> String {
        format!("<{}>", self.contact_uri(local_ip))
    }

    /// Our Contact URI: the public address when one is known (STUN,
    /// rport), else `local_ip` and the SIP socket's port.
    pub(super) fn contact_uri(&self, local_ip: IpAddr) -> SipUri {
        let addr = self.contact_addr(local_ip);
        SipUri::new(
            Some(&self.cfg.user),
            Host::from_ip(addr.ip()),
            Some(addr.port()),
        )
    }

    /// The address our Contact names.
    pub(super) fn contact_addr(&self, local_ip: IpAddr) -> SocketAddr {
        self.public_sip
            .unwrap_or(SocketAddr::new(local_ip, self.cfg.local_port))
    }

    /// Our public SIP address, when known.
    pub fn public_address(&self) -> Option<SocketAddr> {
        self.public_sip
    }

    pub(super) fn add_common_headers(&self, headers: &mut crate::sip::Headers, local_ip: IpAddr) {
        headers.push("Contact", self.contact(local_ip));
        headers.push("Allow", allow_header_value());
        headers.push("User-Agent", self.cfg.user_agent.clone());
    }

    pub(super) fn emit(&mut self, e: UaEvent) {
        self.out.push_back(UaOutput::Event(e));
    }

    pub(super) fn transmit(&mut self, dest: SocketAddr, payload: Vec<u8>) {
        self.out
            .push_back(UaOutput::Transmit(Transmit { dest, payload }));
    }

    // ----- user commands ----------------------------------------------

    /// Places a call to `target`, sending the INVITE to `dest` (the shell
    /// resolved it) from `local_ip` (RFC 3261 §13.2.1).
    pub fn dial(
        &mut self,
        target: &str,
        dest: SocketAddr,
        media: LocalMedia,
        now: Instant,
    ) -> Result<CallHandle, UaError> {
        let uri = Uri::parse(target).map_err(|_| UaError::BadTarget {
            target: target.to_string(),
        })?;
        if uri.as_sip().is_none() {
            return Err(UaError::BadTarget {
                target: target.to_string(),
            });
        }
        let local_ip = media.addr;
        let mut neg = Negotiator::new(media, self.rng.random_range(1..1u64 << 40), 1);
        let offer = neg.create_offer()?;
        let local_tag = self.token(10);
        let call_id = format!("{}@{}", self.token(20), Host::from_ip(local_ip));
        let from = match &self.cfg.from {
            Some(f) => f.clone(),
            None => SipUri::new(
                Some(&self.cfg.user),
                Host::from_ip(local_ip),
                Some(self.cfg.local_port),
            )
            .to_string(),
        };
        let from = match &self.cfg.display_name {
            Some(d) => {
                let mut na = NameAddr::new(Uri::parse(&from).map_err(|_| UaError::BadTarget {
                    target: from.clone(),
                })?);
                na.display = Some(d.clone());
                na.to_string()
            }
            None => format!("<{from}>"),
        };
        let mut invite = Request::new(Method::Invite, uri.to_string());
        let via = self.new_via(local_ip);
        invite.headers.push("Via", via);
        invite.headers.push("Max-Forwards", "70");
        for r in &self.cfg.route {
            invite.headers.push("Route", r.clone());
        }
        invite
            .headers
            .push("From", format!("{from};tag={local_tag}"));
        invite.headers.push("To", format!("<{uri}>"));
        invite.headers.push("Call-ID", call_id);
        invite.headers.push("CSeq", "1 INVITE");
        self.add_common_headers(&mut invite.headers, local_ip);
        invite.set_body("application/sdp", offer.into_bytes());
        let key = self.tx.send_request(invite.clone(), dest, now)?;
        let handle = self.next_handle;
        self.next_handle += 1;
        self.calls.insert(
            handle,
            Call::new(
                handle,
                CallDirection::Outgoing,
                CallState::Calling,
                invite,
                key,
                dest,
                local_ip,
                local_tag,
                None,
                neg,
            ),
        );
        self.drain_tx(now);
        Ok(handle)
    }

    /// Answers an incoming call with 200 OK (RFC 3261 §13.3.1.4) using
    /// `media` (our address and RTP port).
    pub fn answer(
        &mut self,
        call: CallHandle,
        media: LocalMedia,
        now: Instant,
    ) -> Result<(), UaError> {
        let c = self
            .calls
            .get_mut(&call)
            .ok_or(UaError::NoSuchCall { call })?;
        if c.direction != CallDirection::Incoming || c.state != CallState::Early {
            return Err(UaError::WrongState {
                call,
                state: c.state,
            });
        }
        c.neg.set_local(media);
        let body = match c.neg.state() {
            crate::sdp::NegState::RemoteOffer => {
                let answer = c.neg.create_answer()?;
                let negotiated = c.neg.negotiate()?;
                self.out.push_back(UaOutput::Event(UaEvent::Media {
                    call,
                    media: negotiated,
                }));
                answer
            }
            // An INVITE without an offer: ours goes in the 2xx and the
            // answer comes in the ACK (RFC 3261 §13.2.1).
            _ => c.neg.create_offer()?,
        };
        self.send_2xx(call, body.into_bytes(), now)
    }

    /// Sends the 2xx for the call's INVITE and arms its retransmission.
    fn send_2xx(&mut self, call: CallHandle, body: Vec<u8>, now: Instant) -> Result<(), UaError> {
        let t1 = self.cfg.timers.t1;
        let t1x64 = self.cfg.timers.t1x64();
        let contact_ip;
        let (key, mut resp, dest) = {
            let c = self.calls.get(&call).ok_or(UaError::NoSuchCall { call })?;
            contact_ip = c.local_ip;
            let mut resp = make_response(&c.invite, 200, Some(&c.local_tag));
            // RFC 3261 §12.1.1: the dialog-creating response carries the
            // request's Record-Route values, in order.
            resp.headers.copy_from(&c.invite.headers, "Record-Route");
            let dest = c
                .invite
                .headers
                .top_via()
                .map(|v| response_destination(&v, c.peer))
                .unwrap_or(c.peer);
            (c.invite_key.clone(), resp, dest)
        };
        self.add_common_headers(&mut resp.headers, contact_ip);
        resp.set_body("application/sdp", body);
        let payload = resp.to_bytes();
        self.tx.send_response(&key, resp, now)?;
        let c = self.calls.get_mut(&call).expect("checked above");
        c.ok_retransmit = Some(Retransmit {
            payload,
            dest,
            interval: t1,
            next: now + t1,
            give_up: now + t1x64,
        });
        if c.state == CallState::Early {
            c.state = CallState::Answering;
            c.answered_at = Some(now);
        }
        self.drain_tx(now);
        Ok(())
    }

    /// Refuses an incoming call (486 Busy Here, 603 Decline, ...).
    pub fn reject(&mut self, call: CallHandle, status: u16, now: Instant) -> Result<(), UaError> {
        let c = self.calls.get(&call).ok_or(UaError::NoSuchCall { call })?;
        if c.direction != CallDirection::Incoming || c.state != CallState::Early {
            return Err(UaError::WrongState {
                call,
                state: c.state,
            });
        }
        let resp = make_response(&c.invite, status, Some(&c.local_tag));
        let key = c.invite_key.clone();
        self.tx.send_response(&key, resp, now)?;
        self.end_call(call, EndReason::LocalReject { status });
        self.drain_tx(now);
        Ok(())
    }

    /// Hangs up: CANCEL before the answer (§9.1), BYE after (§15.1.1),
    /// 603 for an incoming call still ringing.
    pub fn hangup(&mut self, call: CallHandle, now: Instant) -> Result<(), UaError> {
        let c = self
            .calls
            .get_mut(&call)
            .ok_or(UaError::NoSuchCall { call })?;
        match (c.direction, c.state) {
            (CallDirection::Outgoing, CallState::Calling | CallState::Early) => {
                if c.got_provisional {
                    self.send_cancel(call, now);
                } else {
                    // §9.1: CANCEL only once a provisional response arrived.
                    c.cancel_pending = true;
                }
            }
            (CallDirection::Incoming, CallState::Early) => self.reject(call, 603, now)?,
            (CallDirection::Incoming, CallState::Answering) => c.bye_after_ack = true,
            (_, CallState::Confirmed) => self.send_bye(call, now),
            (_, CallState::Terminating | CallState::Ended | CallState::Answering)
            | (CallDirection::Incoming, CallState::Calling) => {}
        }
        self.drain_tx(now);
        Ok(())
    }

    /// Ends a call whose peer has gone silent (no RTP): BYE (or CANCEL)
    /// goes out, but the call ends now instead of after Timer F.
    pub fn abandon(&mut self, call: CallHandle, now: Instant) {
        let confirmed = self
            .calls
            .get(&call)
            .is_some_and(|c| c.state == CallState::Confirmed);
        if confirmed {
            self.send_bye(call, now);
        } else if let Err(e) = self.hangup(call, now) {
            tracing::debug!("abandon: {e}");
        }
        self.end_call(call, EndReason::MediaTimeout);
        self.drain_tx(now);
    }

    /// Sends DTMF digits as SIP INFO requests within the dialog, one per
    /// digit, with an `application/dtmf-relay` body (`Signal=`,
    /// `Duration=`), the de-facto format RFC 6086 §9 leaves to packages.
    /// Used when RFC 4733 telephone-events were not negotiated. The
    /// responses are not tracked.
    pub fn send_info_dtmf(
        &mut self,
        call: CallHandle,
        digits: &str,
        now: Instant,
    ) -> Result<(), UaError> {
        let c = self.calls.get(&call).ok_or(UaError::NoSuchCall { call })?;
        if c.state != CallState::Confirmed || c.dialog.is_none() {
            return Err(UaError::WrongState {
                call,
                state: c.state,
            });
        }
        let local_ip = c.local_ip;
        for digit in digits.chars() {
            let via = self.new_via(local_ip);
            let c = self.calls.get_mut(&call).expect("checked above");
            let dialog = c.dialog.as_mut().expect("checked above");
            let mut info = dialog.create_request(Method::Info, &via, None);
            let body = format!("Signal={digit}\r\nDuration=160\r\n");
            info.set_body("application/dtmf-relay", body.into_bytes());
            let dest = next_hop_addr(dialog, c.peer);
            self.tx.send_request(info, dest, now)?;
        }
        self.drain_tx(now);
        Ok(())
    }

    /// §9.1: CANCEL copies the INVITE's Request-URI, Call-ID, To, From,
    /// CSeq number, Route and top Via (same branch).
    fn send_cancel(&mut self, call: CallHandle, now: Instant) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if c.cancelled {
            return;
        }
        c.cancelled = true;
        c.cancel_pending = false;
        let inv = &c.invite;
        let mut cancel = Request::new(Method::Cancel, inv.uri.clone());
        if let Some(v) = inv.headers.list("Via").first() {
            cancel.headers.push("Via", *v);
        }
        cancel.headers.push("Max-Forwards", "70");
        cancel.headers.copy_from(&inv.headers, "From");
        cancel.headers.copy_from(&inv.headers, "To");
        cancel.headers.copy_from(&inv.headers, "Call-ID");
        let seq = inv.headers.cseq().map(|c| c.seq).unwrap_or(1);
        cancel.headers.push("CSeq", format!("{seq} CANCEL"));
        cancel.headers.copy_from(&inv.headers, "Route");
        cancel.headers.push("Content-Length", "0");
        let dest = c.peer;
        if self.tx.send_request(cancel, dest, now).is_err() {
            tracing::warn!("could not build CANCEL");
        }
    }

    /// §15.1.1: BYE within the dialog, to the next hop.
    pub(super) fn send_bye(&mut self, call: CallHandle, now: Instant) {
        let wait = self.bye_wait();
        let local_ip = match self.calls.get(&call) {
            Some(c) => c.local_ip,
            None => return,
        };
        let via = self.new_via(local_ip);
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let Some(dialog) = c.dialog.as_mut() else {
            return;
        };
        let mut bye = dialog.create_request(Method::Bye, &via, None);
        bye.headers.push("Content-Length", "0");
        let dest = next_hop_addr(dialog, c.peer);
        c.state = CallState::Terminating;
        c.bye_deadline = Some(now + wait);
        match self.tx.send_request(bye, dest, now) {
            Ok(key) => c.bye_key = Some(key),
            Err(_) => self.end_call(call, EndReason::LocalHangup),
        }
    }

    // ----- network input ----------------------------------------------

    /// A datagram arrived on the SIP socket from `source`. `local_ip` is the
    /// address it arrived on (our address as seen by that peer).
    pub fn handle_datagram(
        &mut self,
        data: &[u8],
        source: SocketAddr,
        local_ip: IpAddr,
        now: Instant,
    ) {
        self.datagram_local_ip = local_ip;
        match parse_datagram(data) {
            Ok(SipMessage::Request(req)) => self.on_request_datagram(req, source, now),
            Ok(SipMessage::Response(resp)) => {
                if let Err(e) = check_response(&resp) {
                    tracing::debug!("discarding response: {e}");
                    return;
                }
                self.tx
                    .handle_message(SipMessage::Response(resp), source, now);
            }
            Err(e) => {
                tracing::debug!("unparseable datagram from {source}: {e}");
                // RFC 3261 §18.3: a request whose body cannot be framed gets 400.
                if let ParseError::BadBody {
                    reason,
                    head: head_msg,
                } = &e
                    && let SipMessage::Request(head) = head_msg.as_ref()
                {
                    self.reject_stateless(head, &Rejection::bad_framing(reason), source);
                }
            }
        }
        self.drain_tx(now);
    }

    fn on_request_datagram(&mut self, req: Request, source: SocketAddr, now: Instant) {
        if let Err(rejection) = check_request(&req) {
            self.reject_stateless(&req, &rejection, source);
            return;
        }
        self.tx
            .handle_message(SipMessage::Request(req), source, now);
    }

    /// Answers a request that failed validation without a transaction
    /// (never an ACK, RFC 3261 §17.1.1.3).
    fn reject_stateless(&mut self, req: &Request, rejection: &Rejection, source: SocketAddr) {
        self.emit(UaEvent::Rejected {
            method: req.method.to_string(),
            status: rejection.status,
            detail: rejection.detail.clone(),
        });
        if req.method == Method::Ack {
            return;
        }
        let tag = self.token(10);
        let resp = build_error_response(req, rejection, &tag);
        let dest = match req.headers.top_via() {
            Ok(v) => {
                let mut v = v;
                if v.rport() == Some(None) {
                    v.params.set("rport", Some(source.port().to_string()));
                }
                v.params.set("received", Some(source.ip().to_string()));
                response_destination(&v, source)
            }
            Err(_) => source,
        };
        self.transmit(dest, resp.to_bytes());
    }

    /// Fires due timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.tx.handle_timeout(now);
        self.drain_tx(now);
        let due: Vec<CallHandle> = self
            .calls
            .values()
            .filter(|c| c.ok_retransmit.as_ref().is_some_and(|r| r.next <= now))
            .map(|c| c.handle)
            .collect();
        for call in due {
            self.on_2xx_retransmit_timer(call, now);
        }
        self.on_timer_bye_wait(now);
        self.refresh_registrations(now);
        self.on_timer_reinvite_retry(now);
        self.drain_tx(now);
    }

    /// How long a call waits for the answer to our BYE before it ends
    /// anyway: 8·T1 (4 s by default), long enough for four transmissions
    /// of the BYE (Timer E: 0, T1, 3·T1, 7·T1). RFC 3261 §15.1.1: the
    /// session is terminated as soon as the BYE is sent, so nothing
    /// waits for Timer F's 64·T1; the transaction keeps retransmitting
    /// on its own.
    pub fn bye_wait(&self) -> Duration {
        self.cfg.timers.t1 * 8
    }

    /// Ends the calls whose BYE went unanswered for [`UserAgent::bye_wait`].
    fn on_timer_bye_wait(&mut self, now: Instant) {
        let due: Vec<CallHandle> = self
            .calls
            .values()
            .filter(|c| c.bye_deadline.is_some_and(|t| t <= now))
            .map(|c| c.handle)
            .collect();
        for call in due {
            self.end_call(call, EndReason::ByeTimeout);
        }
    }

    /// §13.3.1.4: re-send the 2xx at T1, doubling up to T2; after 64·T1
    /// without ACK, end the session with BYE.
    fn on_2xx_retransmit_timer(&mut self, call: CallHandle, now: Instant) {
        let t2 = self.cfg.timers.t2;
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let Some(r) = c.ok_retransmit.as_mut() else {
            return;
        };
        if now >= r.give_up {
            c.ok_retransmit = None;
            c.state = CallState::Confirmed;
            self.send_bye(call, now);
            self.end_call(call, EndReason::NoAck);
            return;
        }
        let (dest, payload) = (r.dest, r.payload.clone());
        r.interval = (r.interval * 2).min(t2);
        r.next = now + r.interval;
        self.transmit(dest, payload);
    }

    /// Processes everything the transaction layer produced.
    pub(super) fn drain_tx(&mut self, now: Instant) {
        while let Some(o) = self.tx.poll_output() {
            match o {
                Output::Transmit(t) => self.out.push_back(UaOutput::Transmit(t)),
                Output::Event(e) => self.on_tx_event(e, now),
            }
        }
    }

    fn on_tx_event(&mut self, e: TxEvent, now: Instant) {
        match e {
            TxEvent::Request {
                key,
                request,
                source,
            } => self.on_request(key, request, source, now),
            TxEvent::Response { key, response } => self.on_response(&key, response, now),
            TxEvent::Timeout { key } => self.on_client_failure(&key, EndReason::Timeout, now),
            TxEvent::TransportError { key } => {
                self.on_client_failure(&key, EndReason::TransportError, now)
            }
            TxEvent::AckTimeout { .. } | TxEvent::Terminated { .. } => {}
            TxEvent::Ack { request, .. } => self.on_ack(request, now),
            TxEvent::StrayResponse { response, .. } => self.on_stray_response(&response),
        }
    }

    // ----- requests ----------------------------------------------------

    fn on_request(&mut self, key: TransactionKey, req: Request, source: SocketAddr, now: Instant) {
        let in_dialog = req
            .headers
            .to_addr()
            .map(|t| t.tag().is_some())
            .unwrap_or(false);
        match (&req.method, in_dialog) {
            (Method::Invite, false) => self.on_new_invite(key, req, source, now),
            (Method::Invite, true) => self.on_reinvite(key, req, now),
            (Method::Cancel, _) => self.on_cancel(key, req, now),
            (Method::Bye, _) => self.on_bye(key, req, now),
            (Method::Options, _) => self.on_options(key, req, source, now),
            (Method::Info, true) => self.on_in_dialog_ok(key, req, now),
            (Method::Refer, true) => self.on_refer(key, req, now),
            // RFC 3515 is only accepted inside a dialog (a call of ours).
            (Method::Refer, false) => self.respond(&key, &req, 403, now),
            (Method::Notify, true) => self.on_notify(key, req, now),
            _ => self.respond(&key, &req, 481, now),
        }
    }

    pub(super) fn respond(
        &mut self,
        key: &TransactionKey,
        req: &Request,
        status: u16,
        now: Instant,
    ) {
        let tag = self.token(10);
        let resp = make_response(req, status, Some(&tag));
        let _ = self.tx.send_response(key, resp, now);
    }

    /// §13.3.1: a new INVITE: check the offer, send 180 Ringing and tell
    /// the user.
    fn on_new_invite(
        &mut self,
        key: TransactionKey,
        req: Request,
        source: SocketAddr,
        now: Instant,
    ) {
        if self.is_merged_request(&key, &req) {
            // RFC 3261 §8.2.2.2: the same request arrived by another path.
            return self.respond(&key, &req, 482, now);
        }
        let local_tag = self.token(10);
        let mut template = self.media_template.clone();
        let local_ip = self.datagram_local_ip;
        template.addr = local_ip;
        let mut neg = Negotiator::new(template.clone(), self.rng.random_range(1..1u64 << 40), 1);
        if !req.body.is_empty()
            && let Err(e) = neg.receive_offer(&req.body)
        {
            let status = sdp_error_status(&e);
            let mut resp = make_response(&req, status, Some(&local_tag));
            if let Some(warning) = sdp_warning(&e) {
                resp.headers.push("Warning", warning);
            }
            let _ = self.tx.send_response(&key, resp, now);
            self.emit(UaEvent::Rejected {
                method: "INVITE".into(),
                status,
                detail: e.to_string(),
            });
            return;
        }
        let dialog = match Dialog::from_uas(&req, &local_tag, self.rng.random_range(1..10_000)) {
            Ok(d) => d,
            Err(e) => {
                let rejection = Rejection::new(400, e.to_string());
                let resp = build_error_response(&req, &rejection, &local_tag);
                let _ = self.tx.send_response(&key, resp, now);
                return;
            }
        };
        let from = req.headers.get("From").unwrap_or_default().to_string();
        let to = req.headers.get("To").unwrap_or_default().to_string();
        let mut ringing = make_response(&req, 180, Some(&local_tag));
        // RFC 3261 §12.1.1: an early dialog's route set comes from here too.
        ringing.headers.copy_from(&req.headers, "Record-Route");
        ringing.headers.push("Contact", self.contact(local_ip));
        let _ = self.tx.send_response(&key, ringing, now);
        let handle = self.next_handle;
        self.next_handle += 1;
        self.calls.insert(
            handle,
            Call::new(
                handle,
                CallDirection::Incoming,
                CallState::Early,
                req,
                key,
                source,
                local_ip,
                local_tag,
                Some(dialog),
                neg,
            ),
        );
        self.emit(UaEvent::IncomingCall {
            call: handle,
            from,
            to,
        });
    }

    /// RFC 3261 §8.2.2.2: a request without To tag whose Call-ID, From tag
    /// and CSeq match a request of a pending transaction (a different one).
    fn is_merged_request(&self, key: &TransactionKey, req: &Request) -> bool {
        let (Ok(call_id), Ok(from), Ok(cseq)) = (
            req.headers.call_id(),
            req.headers.from_addr(),
            req.headers.cseq(),
        ) else {
            return false;
        };
        self.calls.values().any(|c| {
            c.direction == CallDirection::Incoming
                && c.invite_key != *key
                && c.invite.headers.call_id().ok() == Some(call_id)
                && c.invite
                    .headers
                    .from_addr()
                    .ok()
                    .as_ref()
                    .and_then(|f| f.tag())
                    == from.tag()
                && c.invite.headers.cseq().ok().as_ref() == Some(&cseq)
        })
    }

    /// Finds the call whose dialog the request belongs to (§12.2.2).
    pub(super) fn find_dialog_call(&self, req: &Request) -> Option<CallHandle> {
        let call_id = req.headers.call_id().ok()?;
        let to_tag = req.headers.to_addr().ok()?.tag().map(str::to_string);
        let from_tag = req.headers.from_addr().ok()?.tag().map(str::to_string);
        self.calls
            .values()
            .find(|c| {
                c.dialog
                    .as_ref()
                    .is_some_and(|d| d.matches(call_id, to_tag.as_deref(), from_tag.as_deref()))
            })
            .map(|c| c.handle)
    }

    /// §14.2: a re-INVITE: a new offer gets our answer (hold/resume), an
    /// empty one gets our offer.
    fn on_reinvite(&mut self, key: TransactionKey, req: Request, now: Instant) {
        let Some(call) = self.find_dialog_call(&req) else {
            return self.respond(&key, &req, 481, now);
        };
        let seq = req.headers.cseq().map(|c| c.seq).unwrap_or(0);
        let c = self.calls.get_mut(&call).expect("found above");
        let in_order = c
            .dialog
            .as_mut()
            .is_some_and(|d| d.accept_remote_cseq(seq, &Method::Invite));
        if !in_order {
            return self.respond(&key, &req, 500, now);
        }
        if c.ok_retransmit.is_some() || c.state != CallState::Confirmed {
            // §14.2: a re-INVITE while ours or another is pending.
            return self.respond(&key, &req, 491, now);
        }
        let body = if req.body.is_empty() {
            match c.neg.create_offer() {
                Ok(o) => o,
                Err(_) => return self.respond(&key, &req, 491, now),
            }
        } else {
            if let Err(e) = c.neg.receive_offer(&req.body) {
                let status = match e {
                    SdpError::OfferPending { .. } => 491,
                    other => sdp_error_status(&other),
                };
                return self.respond(&key, &req, status, now);
            }
            let answer = match c.neg.create_answer() {
                Ok(a) => a,
                Err(e) => return self.respond(&key, &req, sdp_error_status(&e), now),
            };
            if let Ok(media) = c.neg.negotiate() {
                self.out
                    .push_back(UaOutput::Event(UaEvent::Media { call, media }));
            }
            let offer = req.body.clone();
            self.note_remote_offer(call, &offer);
            answer
        };
        let c = self.calls.get_mut(&call).expect("found above");
        c.invite = req;
        c.invite_key = key;
        if let Some(d) = c.dialog.as_mut()
            && let Ok(Some(na)) = c
                .invite
                .headers
                .name_addrs("Contact")
                .map(|v| v.into_iter().next())
        {
            d.remote_target = na.uri;
        }
        let _ = self.send_2xx(call, body.into_bytes(), now);
    }

    /// §9.2: CANCEL of a pending INVITE: 200 to the CANCEL, 487 to the
    /// INVITE. Without a matching INVITE transaction: 481. The 200 carries
    /// the To tag of the INVITE's responses (§9.2: they SHOULD match).
    fn on_cancel(&mut self, key: TransactionKey, req: Request, now: Instant) {
        let invite_key = TransactionKey {
            method: Method::Invite,
            ..key.clone()
        };
        let call = self
            .calls
            .values()
            .find(|c| c.invite_key == invite_key)
            .map(|c| c.handle);
        let Some(call) = call else {
            return self.respond(&key, &req, 481, now);
        };
        let local_tag = self
            .calls
            .get(&call)
            .expect("found above")
            .local_tag
            .clone();
        let resp = make_response(&req, 200, Some(&local_tag));
        let _ = self.tx.send_response(&key, resp, now);
        if self.tx.invite_pending(&invite_key) {
            let c = self.calls.get(&call).expect("found above");
            let resp = make_response(&c.invite, 487, Some(&c.local_tag));
            let _ = self.tx.send_response(&invite_key, resp, now);
            self.end_call(call, EndReason::RemoteCancelled);
        }
    }

    /// §15.1.2: BYE ends the call; unknown dialogs get 481.
    fn on_bye(&mut self, key: TransactionKey, req: Request, now: Instant) {
        let Some(call) = self.find_dialog_call(&req) else {
            return self.respond(&key, &req, 481, now);
        };
        let resp = make_response(&req, 200, None);
        let _ = self.tx.send_response(&key, resp, now);
        // §15.1.2: a BYE for a pending INVITE also ends the INVITE with 487.
        let (pending, invite_key) = {
            let c = self.calls.get(&call).expect("found above");
            (self.tx.invite_pending(&c.invite_key), c.invite_key.clone())
        };
        if pending {
            let c = self.calls.get(&call).expect("found above");
            let resp = make_response(&c.invite, 487, Some(&c.local_tag));
            let _ = self.tx.send_response(&invite_key, resp, now);
        }
        self.end_call(call, EndReason::RemoteHangup);
    }

    /// §11.2: OPTIONS is answered as an INVITE would be, with Allow,
    /// Accept and Supported.
    fn on_options(&mut self, key: TransactionKey, req: Request, source: SocketAddr, now: Instant) {
        let tag = self.token(10);
        let mut resp = make_response(&req, 200, Some(&tag));
        let local_ip = self.datagram_local_ip;
        let _ = source;
        resp.headers.push("Contact", self.contact(local_ip));
        resp.headers.push("Allow", allow_header_value());
        resp.headers.push("Accept", "application/sdp");
        resp.headers.push("Accept-Encoding", "identity");
        resp.headers.push("Accept-Language", "en");
        resp.headers.push("Supported", "");
        resp.headers.push("User-Agent", self.cfg.user_agent.clone());
        resp.set_body("", Vec::new());
        let _ = self.tx.send_response(&key, resp, now);
    }

    /// INFO within a dialog (RFC 6086, legacy usage without Info-Package):
    /// an empty body gets 200; a DTMF body (`application/dtmf-relay` with
    /// `Signal=5`, or `application/dtmf` with the digit alone) gets 200 and
    /// reports the digit, or 400 when it holds no digit; any other body gets
    /// 415 with the types we accept (RFC 3261 §21.4.13, RFC 6086 §4.2.2).
    fn on_in_dialog_ok(&mut self, key: TransactionKey, req: Request, now: Instant) {
        let Some(call) = self.find_dialog_call(&req) else {
            return self.respond(&key, &req, 481, now);
        };
        if req.body.is_empty() {
            return self.respond(&key, &req, 200, now);
        }
        let digit = match req.headers.content_type().as_deref() {
            Some("application/dtmf-relay") => dtmf_relay_signal(&req.body),
            Some("application/dtmf") => dtmf_digit(&req.body),
            _ => {
                let tag = self.token(10);
                let mut resp = make_response(&req, 415, Some(&tag));
                resp.headers.push("Accept", INFO_ACCEPT);
                let _ = self.tx.send_response(&key, resp, now);
                return;
            }
        };
        match digit {
            Some(digit) => {
                self.respond(&key, &req, 200, now);
                self.emit(UaEvent::Dtmf { call, digit });
            }
            None => {
                let tag = self.token(10);
                let rejection = Rejection::new(400, "no DTMF digit in the body".to_string());
                let resp = build_error_response(&req, &rejection, &tag);
                let _ = self.tx.send_response(&key, resp, now);
            }
        }
    }

    /// The ACK for our 2xx (§13.3.1.4): stop retransmitting, confirm the
    /// dialog, and read the answer when our offer was in the 2xx.
    fn on_ack(&mut self, req: Request, now: Instant) {
        let Some(call) = self.find_dialog_call(&req) else {
            return;
        };
        let c = self.calls.get_mut(&call).expect("found above");
        if c.ok_retransmit.take().is_none() {
            return;
        }
        let mut media = None;
        if c.neg.state() == crate::sdp::NegState::LocalOffer {
            // Bug 13: an ACK without the answer our 2xx asked for keeps
            // the previous session; the negotiator never stays waiting.
            if req.body.is_empty() {
                tracing::warn!("ACK without the answer to our offer");
                c.neg.cancel();
            } else if c.neg.receive_answer(&req.body).is_ok() {
                media = c.neg.negotiate().ok();
            }
        }
        let first_answer = c.state == CallState::Answering;
        c.state = CallState::Confirmed;
        let bye = c.bye_after_ack;
        if let Some(m) = media {
            self.emit(UaEvent::Media { call, media: m });
        }
        if first_answer {
            self.emit(UaEvent::Answered { call });
        }
        if bye {
            self.send_bye(call, now);
        }
    }

    // ----- responses ---------------------------------------------------

    fn call_for_client_key(&self, key: &TransactionKey) -> Option<(CallHandle, bool)> {
        self.calls.values().find_map(|c| {
            if c.invite_key == *key && c.direction == CallDirection::Outgoing {
                Some((c.handle, true))
            } else if c.bye_key.as_ref() == Some(key) {
                Some((c.handle, false))
            } else {
                None
            }
        })
    }

    fn on_response(&mut self, key: &TransactionKey, resp: Response, now: Instant) {
        if self.accounts.owns(key) {
            self.on_register_response(key, &resp, now);
            return;
        }
        if let Some(call) = self.reinvite_call(key) {
            if resp.status < 300
                && let Some(realm) = self.accounts.realm_of(key)
            {
                self.accounts.digest.on_accepted(&realm);
            }
            self.on_reinvite_response(call, resp, now);
            return;
        }
        if let Some(call) = self.refer_call(key) {
            if resp.status < 300
                && let Some(realm) = self.accounts.realm_of(key)
            {
                self.accounts.digest.on_accepted(&realm);
            }
            self.on_refer_response(call, &resp, now);
            return;
        }
        let Some((call, is_invite)) = self.call_for_client_key(key) else {
            return;
        };
        if matches!(resp.status, 401 | 407)
            && self.retry_with_credentials(call, is_invite, &resp, now)
        {
            return;
        }
        if let Some(realm) = self.accounts.realm_of(key) {
            self.accounts.digest.on_accepted(&realm);
        }
        if !is_invite {
            // Any final response (or none, see on_client_failure) ends the BYE.
            if resp.status >= 200 {
                self.end_call(call, EndReason::LocalHangup);
            }
            return;
        }
        match resp.status {
            100..=199 => self.on_invite_provisional(call, resp, now),
            200..=299 => self.on_invite_2xx(call, resp, now),
            _ => self.on_invite_failure(call, resp, now),
        }
    }

    /// §13.2.2.1: provisional responses; a 1xx with a To tag and SDP gives
    /// early media (the first SDP is the answer, RFC 3261 §13.2.1).
    fn on_invite_provisional(&mut self, call: CallHandle, resp: Response, now: Instant) {
        let c = self.calls.get_mut(&call).expect("caller checked");
        c.got_provisional = true;
        c.last_provisional = Some(resp.status);
        if resp.status > 100 && c.state == CallState::Calling {
            c.state = CallState::Early;
        }
        let mut media = None;
        if !resp.body.is_empty()
            && c.neg.state() == crate::sdp::NegState::LocalOffer
            && c.neg.receive_answer(&resp.body).is_ok()
        {
            media = c.neg.negotiate().ok();
        }
        let cancel = c.cancel_pending;
        if resp.status > 100 {
            self.emit(UaEvent::Progress {
                call,
                status: resp.status,
                reason: resp.reason.clone(),
            });
            self.referred_progress(call, resp.status, &resp.reason, now);
        }
        if let Some(m) = media {
            self.emit(UaEvent::Media { call, media: m });
        }
        if cancel {
            self.send_cancel(call, now);
        }
    }

    /// §13.2.2.4: a 2xx: create the dialog, apply the answer if it is the
    /// first, ACK it (again for every retransmission), and hang up at once
    /// if the user already asked to.
    fn on_invite_2xx(&mut self, call: CallHandle, resp: Response, now: Instant) {
        let to_tag = resp
            .headers
            .to_addr()
            .ok()
            .and_then(|t| t.tag().map(str::to_string));
        let c = self.calls.get(&call).expect("caller checked");
        if let (Some(d), Some((dest, ack))) = (&c.dialog, &c.ack) {
            if Some(&d.remote_tag) == to_tag.as_ref() {
                let (dest, ack) = (*dest, ack.clone());
                self.transmit(dest, ack);
                return;
            }
            // A 2xx from another fork: ACK it and end that dialog (§13.2.2.4).
            self.ack_and_bye_fork(call, &resp, now);
            return;
        }
        let dialog = match Dialog::from_uac(&c.invite, &resp) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!("2xx does not create a dialog: {e}");
                self.end_call(
                    call,
                    EndReason::MediaFailure {
                        detail: e.to_string(),
                    },
                );
                return;
            }
        };
        let local_ip = c.local_ip;
        let via = self.new_via(local_ip);
        let c = self.calls.get_mut(&call).expect("caller checked");
        let mut dialog = dialog;
        let seq = c.invite.headers.cseq().map(|s| s.seq).unwrap_or(1);
        let mut ack = dialog.create_request(Method::Ack, &via, Some(seq));
        ack.headers.push("Content-Length", "0");
        let dest = next_hop_addr(&dialog, c.peer);
        let payload = ack.to_bytes();
        c.dialog = Some(dialog);
        c.ack = Some((dest, payload.clone()));
        c.state = CallState::Confirmed;
        c.answered_at = Some(now);
        let mut media_result = None;
        if c.neg.state() == crate::sdp::NegState::LocalOffer {
            media_result = Some(
                c.neg
                    .receive_answer(&resp.body)
                    .and_then(|_| c.neg.negotiate()),
            );
        }
        let hang_up = c.cancel_pending || c.cancelled;
        self.transmit(dest, payload);
        match media_result {
            Some(Err(e)) => {
                tracing::warn!("unusable answer: {e}");
                self.send_bye(call, now);
                self.end_call(
                    call,
                    EndReason::MediaFailure {
                        detail: e.to_string(),
                    },
                );
                return;
            }
            Some(Ok(media)) => self.emit(UaEvent::Media { call, media }),
            None => {}
        }
        self.emit(UaEvent::Answered { call });
        self.referred_progress(call, resp.status, &resp.reason, now);
        if hang_up {
            self.send_bye(call, now);
        }
    }

    fn ack_and_bye_fork(&mut self, call: CallHandle, resp: &Response, now: Instant) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        let Ok(mut d) = Dialog::from_uac(&c.invite, resp) else {
            return;
        };
        let local_ip = c.local_ip;
        let peer = c.peer;
        let seq = c.invite.headers.cseq().map(|s| s.seq).unwrap_or(1);
        let via = self.new_via(local_ip);
        let mut ack = d.create_request(Method::Ack, &via, Some(seq));
        ack.headers.push("Content-Length", "0");
        let dest = next_hop_addr(&d, peer);
        self.transmit(dest, ack.to_bytes());
        let via = self.new_via(local_ip);
        let mut bye = d.create_request(Method::Bye, &via, None);
        bye.headers.push("Content-Length", "0");
        let _ = self.tx.send_request(bye, dest, now);
    }

    fn on_invite_failure(&mut self, call: CallHandle, resp: Response, now: Instant) {
        let c = self.calls.get(&call).expect("caller checked");
        let reason = if (c.cancelled || c.cancel_pending) && resp.status == 487 {
            EndReason::Cancelled
        } else {
            EndReason::Rejected {
                status: resp.status,
                reason: resp.reason.clone(),
            }
        };
        self.referred_ended(call, &reason, now);
        self.end_call(call, reason);
    }

    fn on_client_failure(&mut self, key: &TransactionKey, reason: EndReason, now: Instant) {
        if self.accounts.owns(key) {
            self.on_register_failure(key, &reason, now);
            return;
        }
        if let Some(call) = self.reinvite_call(key) {
            self.on_reinvite_failure(call, reason, now);
            return;
        }
        if let Some(call) = self.refer_call(key) {
            self.on_refer_failure(call, &reason);
            return;
        }
        let Some((call, is_invite)) = self.call_for_client_key(key) else {
            return;
        };
        let c = self.calls.get(&call).expect("found above");
        if !is_invite {
            self.end_call(call, EndReason::LocalHangup);
            return;
        }
        if c.is_established() {
            return;
        }
        let reason = match (c.cancelled || c.cancel_pending, c.last_provisional, reason) {
            (true, _, _) => EndReason::Cancelled,
            (false, Some(status), EndReason::Timeout) => EndReason::NoFinalResponse { status },
            (false, _, reason) => reason,
        };
        self.referred_ended(call, &reason, now);
        self.end_call(call, reason);
    }

    /// A 2xx retransmission after the INVITE transaction ended: ACK again
    /// (§13.2.2.4, bug 12).
    fn on_stray_response(&mut self, resp: &Response) {
        if !resp.is_success() {
            return;
        }
        let Ok(cseq) = resp.headers.cseq() else {
            return;
        };
        if cseq.method != Method::Invite {
            return;
        }
        let call_id = resp.headers.call_id().unwrap_or_default();
        let to_tag = resp
            .headers
            .to_addr()
            .ok()
            .and_then(|t| t.tag().map(str::to_string));
        let ack = self.calls.values().find_map(|c| {
            let d = c.dialog.as_ref()?;
            if d.call_id != call_id || Some(&d.remote_tag) != to_tag.as_ref() {
                return None;
            }
            // The 2xx to our latest re-INVITE gets that re-INVITE's ACK.
            if let Some(r) = &c.reinvite
                && r.request.headers.cseq().ok().map(|s| s.seq) == Some(cseq.seq)
            {
                return r.ack.clone().map(|a| (r.dest, a));
            }
            c.ack.clone()
        });
        if let Some((dest, payload)) = ack {
            self.transmit(dest, payload);
        }
    }

    pub(super) fn end_call(&mut self, call: CallHandle, reason: EndReason) {
        if let Some(mut c) = self.calls.remove(&call) {
            c.state = CallState::Ended;
            self.emit(UaEvent::Ended { call, reason });
        }
    }

    /// How long the call has been answered.
    pub fn call_duration(&self, call: CallHandle, now: Instant) -> Option<Duration> {
        self.calls
            .get(&call)
            .and_then(|c| c.answered_at)
            .map(|t| now.saturating_duration_since(t))
    }
}

/// The bodies of INFO we understand (see `on_in_dialog_ok`).
const INFO_ACCEPT: &str = "application/dtmf-relay, application/dtmf";

/// The digit of an `application/dtmf` body: the digit alone.
fn dtmf_digit(body: &[u8]) -> Option<char> {
    let text = std::str::from_utf8(body).ok()?.trim();
    let mut chars = text.chars();
    let c = chars.next()?;
    if chars.next().is_some() {
        return None;
    }
    crate::media::dtmf::digit_to_event(c).map(|_| c.to_ascii_uppercase())
}

/// The digit of an `application/dtmf-relay` body (`Signal=5\r\nDuration=160`).
fn dtmf_relay_signal(body: &[u8]) -> Option<char> {
    let text = std::str::from_utf8(body).ok()?;
    text.lines().find_map(|line| {
        let (name, value) = line.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("signal") {
            return None;
        }
        let c = value.trim().chars().next()?;
        crate::media::dtmf::digit_to_event(c).map(|_| c.to_ascii_uppercase())
    })
}

/// The address of a dialog's next hop: a literal first Route or remote
/// target, else where the INVITE went.
pub(super) fn next_hop_addr(dialog: &Dialog, fallback: SocketAddr) -> SocketAddr {
    dialog
        .next_hop()
        .and_then(|u| {
            let port = u.port.or(if u.secure { Some(5061) } else { None });
            uri_destination(&u.host, port)
        })
        .unwrap_or(fallback)
}

/// The Warning of a refused offer (RFC 3261 §20.43): 301 for a connection
/// address we cannot use, else 304.
fn sdp_warning(e: &SdpError) -> Option<&'static str> {
    let bad_address = match e {
        SdpError::Parse { problem, .. } => *problem == ParseProblem::BadAddress,
        SdpError::NotAcceptable { rejected } => rejected.contains(&SdpRejection::BadAddress),
        _ => false,
    };
    match sdp_error_status(e) {
        488 if bad_address => Some("301 sipline \"Incompatible network address formats\""),
        488 => Some("304 sipline \"Media type not available\""),
        _ => None,
    }
}

/// RFC 3261 §13.3.1.1 and RFC 3264 §6: an offer with nothing in common is
/// 488; an unreadable body is 400.
fn sdp_error_status(e: &SdpError) -> u16 {
    match e {
        // A connection address we cannot send to is a media problem.
        SdpError::Parse {
            problem: ParseProblem::BadAddress,
            ..
        } => 488,
        SdpError::Parse { .. } => 400,
        SdpError::OfferPending { .. } => 491,
        _ => 488,
    }
}
