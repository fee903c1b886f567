//! Per-call state kept by the user agent core (RFC 3261 §13–§15).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::hold::{HoldIntent, HoldState, OutgoingReinvite};
use super::refer::{ReferIn, ReferOut};
use crate::dialog::Dialog;
use crate::sdp::Negotiator;
use crate::sip::Request;
use crate::transaction::TransactionKey;

/// A call's local handle.
pub type CallHandle = u64;

/// Who started the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CallDirection {
    Outgoing,
    Incoming,
}

/// Where a call is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallState {
    /// INVITE sent, nothing but 100 received yet.
    Calling,
    /// Outgoing: a 1xx above 100 arrived. Incoming: ringing, not answered.
    Early,
    /// Incoming: 2xx sent, waiting for the ACK (§13.3.1.4).
    Answering,
    /// The dialog is confirmed.
    Confirmed,
    /// BYE sent, waiting for its response.
    Terminating,
    Ended,
}

impl std::fmt::Display for CallState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CallState::Calling => "calling",
            CallState::Early => "ringing",
            CallState::Answering => "being answered",
            CallState::Confirmed => "established",
            CallState::Terminating => "hanging up",
            CallState::Ended => "ended",
        })
    }
}

/// A response the UA core itself retransmits: the 2xx to an INVITE until
/// the ACK arrives (RFC 3261 §13.3.1.4).
#[derive(Debug, Clone)]
pub struct Retransmit {
    pub payload: Vec<u8>,
    pub dest: SocketAddr,
    pub interval: Duration,
    pub next: Instant,
    pub give_up: Instant,
}

/// One call.
pub struct Call {
    pub handle: CallHandle,
    pub direction: CallDirection,
    pub state: CallState,
    /// The INVITE we sent or received (the latest one for re-INVITEs).
    pub invite: Request,
    pub invite_key: TransactionKey,
    /// Where the INVITE went (outgoing) or came from (incoming).
    pub peer: SocketAddr,
    /// Our address as the peer sees it, for Contact and SDP.
    pub local_ip: IpAddr,
    pub local_tag: String,
    pub dialog: Option<Dialog>,
    pub neg: Negotiator,
    /// Outgoing: CANCEL wanted but no provisional response yet (§9.1).
    pub cancel_pending: bool,
    /// Outgoing: CANCEL sent.
    pub cancelled: bool,
    /// Outgoing: a provisional response arrived, so CANCEL may be sent.
    pub got_provisional: bool,
    /// Outgoing: the status of the latest provisional response.
    pub last_provisional: Option<u16>,
    /// Outgoing: the ACK for the 2xx, re-sent for each retransmitted 2xx
    /// (§13.2.2.4).
    pub ack: Option<(SocketAddr, Vec<u8>)>,
    /// Incoming: our 2xx, retransmitted until the ACK arrives.
    pub ok_retransmit: Option<Retransmit>,
    /// Incoming: hang up once the ACK arrives (§15).
    pub bye_after_ack: bool,
    pub bye_key: Option<TransactionKey>,
    /// Our BYE is out: the call ends at this instant even if the peer never
    /// answers it (see `UserAgent::bye_wait`).
    pub bye_deadline: Option<Instant>,
    /// When the call was answered, for durations.
    pub answered_at: Option<Instant>,
    /// Who holds whom (RFC 3264 §8.4), see `hold.rs`.
    pub hold: HoldState,
    /// Our latest re-INVITE: pending, or answered and kept to re-send its
    /// ACK for retransmitted 2xx (RFC 3261 §14.1).
    pub reinvite: Option<OutgoingReinvite>,
    /// A re-INVITE refused with 491, to be sent again at this instant
    /// (RFC 3261 §14.1).
    pub reinvite_retry: Option<(Instant, HoldIntent)>,
    /// Our REFER (we transfer this call), see `refer.rs`.
    pub refer_out: Option<ReferOut>,
    /// A REFER the peer sent us (we are being transferred).
    pub refer_in: Option<ReferIn>,
    /// This call was placed because of a REFER received in that call.
    pub referred_from: Option<CallHandle>,
}

impl Call {
    /// A call that has just sent or received its INVITE.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        handle: CallHandle,
        direction: CallDirection,
        state: CallState,
        invite: Request,
        invite_key: TransactionKey,
        peer: SocketAddr,
        local_ip: IpAddr,
        local_tag: String,
        dialog: Option<Dialog>,
        neg: Negotiator,
    ) -> Call {
        Call {
            handle,
            direction,
            state,
            invite,
            invite_key,
            peer,
            local_ip,
            local_tag,
            dialog,
            neg,
            cancel_pending: false,
            cancelled: false,
            got_provisional: false,
            last_provisional: None,
            ack: None,
            ok_retransmit: None,
            bye_after_ack: false,
            bye_key: None,
            bye_deadline: None,
            answered_at: None,
            hold: HoldState::default(),
            reinvite: None,
            reinvite_retry: None,
            refer_out: None,
            refer_in: None,
            referred_from: None,
        }
    }

    /// Whether the call has a final answer yet.
    pub fn is_established(&self) -> bool {
        matches!(
            self.state,
            CallState::Answering | CallState::Confirmed | CallState::Terminating
        )
    }
}
