//! Registrations and Digest authentication in the user agent core
//! (RFC 3261 §10, §22; RFC 7616).
//!
//! Sans-IO like the rest of the core: [`UserAgent::register`] starts a
//! registration whose REGISTERs go through the transaction layer;
//! responses, timeouts and refresh deadlines arrive through the core's
//! `handle_*` methods. A 401/407 to any request we send (REGISTER, INVITE,
//! BYE) is answered once with the account's credentials; the same refused
//! credentials are never sent twice in a row.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use super::agent::{EndReason, UaEvent, UserAgent};
use super::call::CallHandle;
use super::digest::{Credentials, DigestClient, RetryDecision, challenges, choose_for};
use super::registration::{Binding, RegOutcome, RegState, Registration, RegistrationConfig};
use crate::nat::{NatEvent, NatSource};
use crate::sip::{Host, Method, Response};
use crate::transaction::TransactionKey;

/// A registration's local handle.
pub type RegHandle = u64;

/// Why a registration failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RegFailure {
    /// The registrar refused our credentials (or we had none).
    Auth,
    /// No response in time (Timer F).
    Timeout,
    /// The network refused the request.
    Network,
    /// Any other final response.
    Rejected,
}

/// Registration events for the user.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RegEvent {
    Registering,
    Registered {
        expires: u32,
        bindings: Vec<Binding>,
    },
    Refreshed {
        expires: u32,
        bindings: Vec<Binding>,
    },
    Unregistered {
        bindings: Vec<Binding>,
    },
    Failed {
        status: Option<u16>,
        reason: String,
        kind: RegFailure,
        /// The registrar's Retry-After in seconds (RFC 3261 §20.33), with
        /// a 5xx (typically 503).
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_after: Option<u32>,
    },
}

struct RegEntry {
    reg: Registration,
    dest: SocketAddr,
    local_ip: IpAddr,
    key: Option<TransactionKey>,
    /// The binding was in place before this REGISTER (a refresh).
    refreshing: bool,
}

/// Registrations and the Digest state of the user agent.
#[derive(Default)]
pub struct Accounts {
    regs: BTreeMap<RegHandle, RegEntry>,
    next: RegHandle,
    pub(super) digest: DigestClient,
    pub(super) credentials: Option<Credentials>,
    /// The realm whose credentials authorized each client transaction.
    authorized: HashMap<TransactionKey, String>,
}

impl Accounts {
    /// Remembers which realm's credentials authorized `key`, so that its
    /// success marks them accepted.
    pub(super) fn note_authorized(&mut self, key: TransactionKey, realm: String) {
        self.authorized.insert(key, realm);
    }

    /// Whether `key` is one of our REGISTER transactions.
    pub fn owns(&self, key: &TransactionKey) -> bool {
        self.regs.values().any(|r| r.key.as_ref() == Some(key))
    }

    /// The realm whose credentials we sent with `key`'s request.
    pub fn realm_of(&self, key: &TransactionKey) -> Option<String> {
        self.authorized.get(key).cloned()
    }

    /// The earliest refresh deadline.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.regs
            .values()
            .filter(|r| r.key.is_none())
            .filter_map(|r| r.reg.refresh_at())
            .min()
    }

    fn handle_of(&self, key: &TransactionKey) -> Option<RegHandle> {
        self.regs
            .iter()
            .find(|(_, r)| r.key.as_ref() == Some(key))
            .map(|(h, _)| *h)
    }
}

/// RFC 3581 §4: where the registrar saw our request come from: the
/// `received` address (else the sent-by host) and the `rport` port, when
/// the server filled in `rport`.
fn via_source(resp: &Response) -> Option<SocketAddr> {
    let via = resp.headers.top_via().ok()?;
    let Some(Some(port)) = via.rport() else {
        return None;
    };
    let ip = via
        .received()
        .and_then(|r| r.trim_matches(['[', ']']).parse::<IpAddr>().ok())
        .or_else(|| via.host.ip())?;
    Some(SocketAddr::new(crate::transport::canonical_ip(ip), port))
}

/// RFC 3261 §20.33: the delay-seconds of a Retry-After header (its
/// comment and parameters ignored).
fn retry_after(resp: &Response) -> Option<u32> {
    let v = resp.headers.get("Retry-After")?;
    let digits: String = v
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// A Digest answer: which header carries it and its value.
pub(super) struct AuthHeader {
    pub(super) name: &'static str,
    pub(super) value: String,
    pub(super) realm: String,
}

impl UserAgent {
    /// The credentials used to answer 401/407 challenges (`None`: refuse).
    pub fn set_credentials(&mut self, creds: Option<Credentials>) {
        self.accounts.credentials = creds;
        self.accounts.digest.clear();
    }

    /// Starts registering per `cfg`, sending to `dest` (the registrar or
    /// outbound proxy address) with our Contact at `local_ip`.
    pub fn register(
        &mut self,
        cfg: RegistrationConfig,
        dest: SocketAddr,
        local_ip: IpAddr,
        now: Instant,
    ) -> RegHandle {
        self.accounts.next += 1;
        let handle = self.accounts.next;
        let call_id = format!("{}@{}", self.token(20), Host::from_ip(local_ip));
        let tag = self.token(10);
        self.accounts.regs.insert(
            handle,
            RegEntry {
                reg: Registration::new(cfg, call_id, tag),
                dest,
                local_ip,
                key: None,
                refreshing: false,
            },
        );
        self.emit(UaEvent::Registration {
            reg: handle,
            event: RegEvent::Registering,
        });
        self.send_register(handle, now);
        self.drain_tx(now);
        handle
    }

    /// Removes our binding (Expires: 0). Returns false when there is none
    /// to remove.
    pub fn unregister(&mut self, handle: RegHandle, now: Instant) -> bool {
        let Some(local_ip) = self.accounts.regs.get(&handle).map(|r| r.local_ip) else {
            return false;
        };
        let via = self.new_via(local_ip);
        let Some(entry) = self.accounts.regs.get_mut(&handle) else {
            return false;
        };
        if matches!(
            entry.reg.state(),
            RegState::Failed | RegState::Unregistered | RegState::Idle
        ) {
            return false;
        }
        let Some(req) = entry.reg.unregister(&via) else {
            return false;
        };
        let dest = entry.dest;
        let req = self.with_preemptive_auth(req);
        let sent = match self.tx.send_request(req, dest, now) {
            Ok(key) => {
                self.accounts
                    .regs
                    .get_mut(&handle)
                    .expect("checked above")
                    .key = Some(key);
                true
            }
            Err(_) => false,
        };
        self.drain_tx(now);
        sent
    }

    /// Sends a refreshing REGISTER now instead of at the refresh time
    /// (RFC 3261 §10.2.4). False when the registration is not bound or a
    /// REGISTER is already outstanding.
    pub fn refresh_registration(&mut self, handle: RegHandle, now: Instant) -> bool {
        let Some(entry) = self.accounts.regs.get_mut(&handle) else {
            return false;
        };
        if entry.key.is_some() || entry.reg.state() != RegState::Registered {
            return false;
        }
        entry.refreshing = true;
        self.send_register(handle, now);
        self.drain_tx(now);
        true
    }

    pub fn registration_state(&self, handle: RegHandle) -> Option<RegState> {
        self.accounts.regs.get(&handle).map(|r| r.reg.state())
    }

    /// Sends a new REGISTER (initial or refresh) for `handle`.
    fn send_register(&mut self, handle: RegHandle, now: Instant) {
        let Some(local_ip) = self.accounts.regs.get(&handle).map(|r| r.local_ip) else {
            return;
        };
        let via = self.new_via(local_ip);
        let contact = self.contact_uri(local_ip);
        let entry = self.accounts.regs.get_mut(&handle).expect("checked above");
        let req = entry.reg.register(contact, &via);
        let dest = entry.dest;
        let req = self.with_preemptive_auth(req);
        self.send_register_request(handle, req, dest, now);
    }

    fn send_register_request(
        &mut self,
        handle: RegHandle,
        req: crate::sip::Request,
        dest: SocketAddr,
        now: Instant,
    ) {
        match self.tx.send_request(req, dest, now) {
            Ok(key) => {
                if let Some(e) = self.accounts.regs.get_mut(&handle) {
                    e.key = Some(key);
                }
            }
            Err(e) => {
                tracing::warn!("cannot send REGISTER: {e}");
                self.registration_failed(handle, (None, e.to_string(), RegFailure::Network), None);
            }
        }
    }

    /// Adds a cached Digest answer so a refresh needs no 401 round trip
    /// (RFC 7616 §3.4.5 nonce reuse with a growing nc).
    fn with_preemptive_auth(&mut self, mut req: crate::sip::Request) -> crate::sip::Request {
        let value = self.accounts.digest.preemptive(
            None,
            req.method.as_str(),
            &req.uri,
            &req.body,
            &mut self.rng,
        );
        if let Some(v) = value {
            req.headers.push("Authorization", v);
        }
        req
    }

    /// Refreshes every registration whose refresh time has come.
    pub(super) fn refresh_registrations(&mut self, now: Instant) {
        let due: Vec<RegHandle> = self
            .accounts
            .regs
            .iter()
            .filter(|(_, r)| r.key.is_none() && r.reg.refresh_at().is_some_and(|t| t <= now))
            .map(|(h, _)| *h)
            .collect();
        for handle in due {
            if let Some(e) = self.accounts.regs.get_mut(&handle) {
                e.refreshing = true;
            }
            self.send_register(handle, now);
        }
    }

    pub(super) fn on_register_response(
        &mut self,
        key: &TransactionKey,
        resp: &Response,
        now: Instant,
    ) {
        let Some(handle) = self.accounts.handle_of(key) else {
            return;
        };
        let entry = self.accounts.regs.get_mut(&handle).expect("found above");
        let outcome = entry.reg.handle_response(resp, now);
        if !matches!(outcome, RegOutcome::Provisional) {
            entry.key = None;
        }
        let refreshing = entry.refreshing;
        match outcome {
            RegOutcome::Provisional => {}
            RegOutcome::Challenged => self.answer_register_challenge(handle, resp, now),
            RegOutcome::Registered { expires, bindings } => {
                if let Some(realm) = self.accounts.authorized.remove(key) {
                    self.accounts.digest.on_accepted(&realm);
                }
                let event = if refreshing {
                    RegEvent::Refreshed { expires, bindings }
                } else {
                    RegEvent::Registered { expires, bindings }
                };
                self.emit(UaEvent::Registration { reg: handle, event });
                if let Some(seen) = via_source(resp) {
                    self.learn_public_address(seen, NatSource::Rport, now);
                }
                self.move_binding_if_needed(handle, now);
            }
            RegOutcome::Unregistered { bindings } => self.emit(UaEvent::Registration {
                reg: handle,
                event: RegEvent::Unregistered { bindings },
            }),
            RegOutcome::RetryWithExpires { .. } => self.send_register(handle, now),
            RegOutcome::Failed { status, reason } => {
                let failure = (Some(status), reason, RegFailure::Rejected);
                self.registration_failed(handle, failure, retry_after(resp));
            }
        }
        self.accounts.authorized.remove(key);
    }

    /// Our public SIP address is `addr` (learnt from STUN or from the Via of
    /// a response, RFC 3581 §4): Contacts use it from now on, and every
    /// registration whose Contact names another address registers again,
    /// removing the stale binding.
    pub fn learn_public_address(&mut self, addr: SocketAddr, source: NatSource, now: Instant) {
        let previous = self.public_sip;
        if previous == Some(addr) {
            return;
        }
        let local_only = previous.is_none()
            && self
                .accounts
                .regs
                .values()
                .any(|r| SocketAddr::new(r.local_ip, self.cfg.local_port) == addr);
        if local_only {
            // Seen from outside exactly as we are inside: no NAT, and the
            // Contact keeps following the local address of each route.
            return;
        }
        self.public_sip = Some(addr);
        self.emit(UaEvent::Nat(NatEvent::PublicAddressChanged {
            previous,
            current: addr,
            source,
        }));
        let handles: Vec<RegHandle> = self.accounts.regs.keys().copied().collect();
        for h in handles {
            self.move_binding_if_needed(h, now);
        }
        self.drain_tx(now);
    }

    /// Registers again when the registration is in place (no REGISTER
    /// outstanding) but its Contact is not our current Contact.
    fn move_binding_if_needed(&mut self, handle: RegHandle, now: Instant) {
        let Some(entry) = self.accounts.regs.get(&handle) else {
            return;
        };
        if entry.key.is_some() || entry.reg.state() != RegState::Registered {
            return;
        }
        let wanted = self.contact_uri(entry.local_ip);
        if entry.reg.contact() == Some(&wanted) {
            return;
        }
        tracing::info!("public address changed: registering Contact {wanted}");
        if let Some(e) = self.accounts.regs.get_mut(&handle) {
            e.refreshing = true;
        }
        self.send_register(handle, now);
    }

    /// RFC 3261 §22.2: answer the registrar's challenge once.
    fn answer_register_challenge(&mut self, handle: RegHandle, resp: &Response, now: Instant) {
        let Some(entry) = self.accounts.regs.get(&handle) else {
            return;
        };
        let registrar = entry.reg.config().registrar.clone();
        let local_ip = entry.local_ip;
        match self.authorization_for(resp, "REGISTER", &registrar, b"") {
            Ok(auth) => {
                let via = self.new_via(local_ip);
                let entry = self.accounts.regs.get_mut(&handle).expect("found above");
                let Some(mut req) = entry.reg.resend(&via) else {
                    return;
                };
                req.headers.remove("Authorization");
                req.headers.remove("Proxy-Authorization");
                req.headers.push(auth.name, auth.value);
                let dest = entry.dest;
                self.send_register_request(handle, req, dest, now);
                if let Some(key) = self.accounts.regs.get(&handle).and_then(|e| e.key.clone()) {
                    self.accounts.authorized.insert(key, auth.realm);
                }
            }
            Err(why) => {
                // The status goes separately: the reason is the phrase and why.
                let reason = format!("{} ({why})", resp.reason);
                self.registration_failed(
                    handle,
                    (Some(resp.status), reason, RegFailure::Auth),
                    None,
                )
            }
        }
    }

    pub(super) fn on_register_failure(
        &mut self,
        key: &TransactionKey,
        reason: &EndReason,
        _now: Instant,
    ) {
        let Some(handle) = self.accounts.handle_of(key) else {
            return;
        };
        let kind = match reason {
            EndReason::TransportError => RegFailure::Network,
            _ => RegFailure::Timeout,
        };
        let unregistering = self
            .accounts
            .regs
            .get(&handle)
            .is_some_and(|e| e.reg.state() == RegState::Unregistering);
        if let Some(e) = self.accounts.regs.get_mut(&handle) {
            e.key = None;
            e.reg.handle_failure();
        }
        let text = if unregistering {
            "no response to the removal"
        } else {
            "no response from the registrar"
        };
        self.registration_failed(handle, (None, text.into(), kind), None);
    }

    /// Reports a failed registration: (status, reason, kind), and the
    /// registrar's Retry-After.
    fn registration_failed(
        &mut self,
        handle: RegHandle,
        (status, reason, kind): (Option<u16>, String, RegFailure),
        retry_after: Option<u32>,
    ) {
        if let Some(e) = self.accounts.regs.get_mut(&handle) {
            e.reg.handle_failure();
            e.key = None;
        }
        self.emit(UaEvent::Registration {
            reg: handle,
            event: RegEvent::Failed {
                status,
                reason,
                kind,
                retry_after,
            },
        });
    }

    /// The Authorization (401) or Proxy-Authorization (407) answering
    /// `resp`'s challenge, or why we cannot answer it (without the status,
    /// which callers show themselves).
    pub(super) fn authorization_for(
        &mut self,
        resp: &Response,
        method: &str,
        uri: &str,
        body: &[u8],
    ) -> Result<AuthHeader, String> {
        let proxy = resp.status == 407;
        let Some(creds) = self.accounts.credentials.clone() else {
            return Err("no credentials configured".to_string());
        };
        let found = challenges(&resp.headers, proxy);
        let Some(challenge) = choose_for(&found, &creds).cloned() else {
            return Err("no usable Digest challenge".to_string());
        };
        if self.accounts.digest.should_retry(&challenge, &creds) == RetryDecision::GiveUp {
            return Err(format!(
                "the credentials for realm \"{}\" were refused",
                challenge.realm
            ));
        }
        let value = self
            .accounts
            .digest
            .authorize(&challenge, &creds, method, uri, body, &mut self.rng)
            .map_err(|e| e.to_string())?;
        Ok(AuthHeader {
            name: if proxy {
                "Proxy-Authorization"
            } else {
                "Authorization"
            },
            value,
            realm: challenge.realm.clone(),
        })
    }

    /// A 401/407 to our INVITE or BYE: send the request again with
    /// credentials (new CSeq, new branch, RFC 3261 §22.2). Returns false
    /// when we cannot or must not answer (the caller then fails the request).
    pub(super) fn retry_with_credentials(
        &mut self,
        call: CallHandle,
        is_invite: bool,
        resp: &Response,
        now: Instant,
    ) -> bool {
        let Some(c) = self.calls.get(&call) else {
            return false;
        };
        let local_ip = c.local_ip;
        let peer = c.peer;
        let mut req = if is_invite {
            let mut inv = c.invite.clone();
            let seq = inv.headers.cseq().map(|s| s.seq).unwrap_or(1);
            inv.headers.set("CSeq", format!("{} INVITE", seq + 1));
            inv
        } else {
            let Some(mut d) = c.dialog.clone() else {
                return false;
            };
            let via = self.new_via(local_ip);
            let mut bye = d.create_request(Method::Bye, &via, None);
            bye.headers.push("Content-Length", "0");
            if let Some(c) = self.calls.get_mut(&call) {
                c.dialog = Some(d);
            }
            bye
        };
        let auth = match self.authorization_for(
            resp,
            req.method.as_str(),
            &req.uri.clone(),
            &req.body.clone(),
        ) {
            Ok(a) => a,
            Err(why) => {
                tracing::warn!("{} {} ({why})", resp.status, resp.reason);
                return false;
            }
        };
        if is_invite {
            let via = self.new_via(local_ip);
            req.headers.remove_first_value("Via");
            req.headers.push_front("Via", via);
        }
        req.headers.remove("Authorization");
        req.headers.remove("Proxy-Authorization");
        req.headers.push(auth.name, auth.value);
        let dest = if is_invite {
            peer
        } else {
            self.calls
                .get(&call)
                .and_then(|c| c.dialog.as_ref())
                .and_then(|d| d.next_hop())
                .and_then(|u| crate::transport::uri_destination(&u.host, u.port))
                .unwrap_or(peer)
        };
        let Ok(key) = self.tx.send_request(req.clone(), dest, now) else {
            return false;
        };
        self.accounts.authorized.insert(key.clone(), auth.realm);
        let Some(c) = self.calls.get_mut(&call) else {
            return false;
        };
        if is_invite {
            c.invite = req;
            c.invite_key = key;
        } else {
            c.bye_key = Some(key);
        }
        true
    }
}
