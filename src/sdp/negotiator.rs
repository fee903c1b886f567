//! The offer/answer state machine of one session (RFC 3264 §4, §8), with the
//! states of pjmedia `sdp_neg`.
//!
//! Sans-IO: the user agent feeds received SDP bodies and asks for ours.
//!
//! ```text
//! NULL/DONE --create_offer--> LOCAL_OFFER --receive_answer--> WAIT_NEGO --negotiate--> DONE
//! NULL/DONE --receive_offer--> REMOTE_OFFER --create_answer--> WAIT_NEGO --negotiate--> DONE
//! ```
//!
//! A second offer while one is outstanding is [`SdpError::OfferPending`]
//! (RFC 3261 §14.1: 491 Request Pending for a re-INVITE). A failed exchange
//! (rejected offer, bad answer, [`Negotiator::cancel`]) leaves the previous
//! session as it was (RFC 3264 §8).

use super::{LocalMedia, NegotiatedMedia, SdpError, answer, offer};

/// Negotiator states (pjmedia `pjmedia_sdp_neg_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NegState {
    /// Nothing exchanged yet.
    Null,
    /// We sent an offer and wait for the answer.
    LocalOffer,
    /// We received an offer and owe an answer.
    RemoteOffer,
    /// Offer and answer are both known; `negotiate` makes them current.
    WaitNego,
    /// A negotiated session is active.
    Done,
}

impl std::fmt::Display for NegState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NegState::Null => "nothing negotiated yet",
            NegState::LocalOffer => "our offer awaits its answer",
            NegState::RemoteOffer => "the peer's offer awaits our answer",
            NegState::WaitNego => "offer and answer not yet applied",
            NegState::Done => "negotiated",
        })
    }
}

/// One SIP session's offer/answer state.
#[derive(Debug, Clone)]
pub struct Negotiator {
    state: NegState,
    local: LocalMedia,
    session_id: u64,
    version: u64,
    /// The last SDP we sent, to decide whether `o=` version moves.
    last_sent: Option<String>,
    remote_offer: Option<Vec<u8>>,
    pending: Option<NegotiatedMedia>,
    active: Option<NegotiatedMedia>,
}

impl Negotiator {
    /// A negotiator in NULL; our first SDP carries `o=- session_id version`.
    pub fn new(local: LocalMedia, session_id: u64, version: u64) -> Negotiator {
        Negotiator {
            state: NegState::Null,
            local,
            session_id,
            version,
            last_sent: None,
            remote_offer: None,
            pending: None,
            active: None,
        }
    }

    pub fn state(&self) -> NegState {
        self.state
    }

    /// The session in force after the last completed exchange.
    pub fn active(&self) -> Option<&NegotiatedMedia> {
        self.active.as_ref()
    }

    /// What we currently want: our address, codecs and direction.
    pub fn local(&self) -> &LocalMedia {
        &self.local
    }

    /// Changes what we want (e.g. `direction` for hold, RFC 3264 §8.4); used
    /// by the next offer or answer.
    pub fn set_local(&mut self, local: LocalMedia) {
        self.local = local;
    }

    /// Our (re-)offer. NULL or DONE → LOCAL_OFFER.
    pub fn create_offer(&mut self) -> Result<String, SdpError> {
        self.check_no_pending_offer()?;
        let sdp = offer::create_offer(&self.local, self.session_id, self.version);
        let sdp = self.stamp(sdp);
        self.state = NegState::LocalOffer;
        Ok(sdp)
    }

    /// The peer's answer to our offer. LOCAL_OFFER → WAIT_NEGO; on error the
    /// offer is dropped and the previous session stays.
    pub fn receive_answer(&mut self, sdp: &[u8]) -> Result<(), SdpError> {
        self.check_state(NegState::LocalOffer, "receive_answer")?;
        match offer::apply_answer(sdp, &self.local) {
            Ok(media) => {
                self.pending = Some(media);
                self.state = NegState::WaitNego;
                Ok(())
            }
            Err(e) => {
                self.cancel();
                Err(e)
            }
        }
    }

    /// The peer's (re-)offer. NULL or DONE → REMOTE_OFFER. It is checked now,
    /// so a 488 can be sent at once; the state is then unchanged.
    pub fn receive_offer(&mut self, sdp: &[u8]) -> Result<(), SdpError> {
        self.check_no_pending_offer()?;
        answer::create_answer(sdp, &self.local, self.session_id, self.version)?;
        self.remote_offer = Some(sdp.to_vec());
        self.state = NegState::RemoteOffer;
        Ok(())
    }

    /// Our answer to the received offer. REMOTE_OFFER → WAIT_NEGO.
    pub fn create_answer(&mut self) -> Result<String, SdpError> {
        self.check_state(NegState::RemoteOffer, "create_answer")?;
        let offer = self.remote_offer.take().unwrap_or_default();
        let (sdp, media) =
            answer::create_answer(&offer, &self.local, self.session_id, self.version)
                .inspect_err(|_| self.cancel())?;
        let sdp = self.stamp(sdp);
        self.pending = Some(media);
        self.state = NegState::WaitNego;
        Ok(sdp)
    }

    /// Makes the pending exchange current. WAIT_NEGO → DONE.
    pub fn negotiate(&mut self) -> Result<NegotiatedMedia, SdpError> {
        self.check_state(NegState::WaitNego, "negotiate")?;
        let media = self.pending.take().ok_or(SdpError::WrongState {
            state: self.state,
            operation: "negotiate",
        })?;
        self.active = Some(media.clone());
        self.state = NegState::Done;
        Ok(media)
    }

    /// Drops an outstanding offer or unconfirmed exchange (the re-INVITE
    /// failed, or we reject the peer's offer): back to DONE, or NULL if
    /// nothing was ever negotiated.
    pub fn cancel(&mut self) {
        self.remote_offer = None;
        self.pending = None;
        self.state = match self.active {
            Some(_) => NegState::Done,
            None => NegState::Null,
        };
    }

    fn check_no_pending_offer(&self) -> Result<(), SdpError> {
        match self.state {
            NegState::Null | NegState::Done => Ok(()),
            state => Err(SdpError::OfferPending { state }),
        }
    }

    fn check_state(&self, wanted: NegState, operation: &'static str) -> Result<(), SdpError> {
        if self.state == wanted {
            Ok(())
        } else {
            Err(SdpError::WrongState {
                state: self.state,
                operation,
            })
        }
    }

    /// RFC 3264 §8 / RFC 4566 §5.2: the `o=` version grows by one when our
    /// SDP changes, and stays when it is sent again unchanged.
    /// `sdp` was written with the current version.
    fn stamp(&mut self, sdp: String) -> String {
        let changed = self
            .last_sent
            .as_ref()
            .is_some_and(|last| without_origin(last) != without_origin(&sdp));
        let sdp = if changed {
            self.version += 1;
            with_origin_version(&sdp, self.version)
        } else {
            sdp
        };
        self.last_sent = Some(sdp.clone());
        sdp
    }
}

fn without_origin(sdp: &str) -> Vec<&str> {
    sdp.lines().filter(|l| !l.starts_with("o=")).collect()
}

/// Rewrites the third field of `o=` (RFC 4566 §5.2 `<sess-version>`).
fn with_origin_version(sdp: &str, version: u64) -> String {
    let mut out = String::with_capacity(sdp.len() + 4);
    for line in sdp.split_inclusive("\r\n") {
        match line.strip_prefix("o=") {
            Some(origin) => {
                let mut fields: Vec<String> = origin.split(' ').map(str::to_owned).collect();
                if let Some(field) = fields.get_mut(2) {
                    *field = version.to_string();
                }
                out.push_str("o=");
                out.push_str(&fields.join(" "));
            }
            None => out.push_str(line),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_version_rewrite_touches_only_the_version_field() {
        let sdp = "v=0\r\no=- 9 1 IN IP4 192.0.2.1\r\ns=-\r\n";
        assert_eq!(
            with_origin_version(sdp, 2),
            "v=0\r\no=- 9 2 IN IP4 192.0.2.1\r\ns=-\r\n"
        );
    }
}
