//! SIP transactions (RFC 3261 §17): sans-IO state machines driven by an
//! explicit clock.
//!
//! [`TransactionLayer`] owns every client and server transaction. Feed it
//! requests the TU sends ([`TransactionLayer::send_request`]), responses the
//! TU sends ([`TransactionLayer::send_response`]), received messages
//! ([`TransactionLayer::handle_message`]) and the time
//! ([`TransactionLayer::handle_timeout`]); then drain
//! [`TransactionLayer::poll_output`] for datagrams to send and events for
//! the TU, and sleep until [`TransactionLayer::next_timeout`].

pub mod client_invite;
pub mod client_non_invite;
pub mod key;
pub mod server_invite;
pub mod server_non_invite;
pub mod timer;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

pub use key::{Role, TransactionKey};
pub use timer::{Timer, TimerConfig};

use client_invite::ClientInvite;
use client_non_invite::ClientNonInvite;
use server_invite::ServerInvite;
use server_non_invite::ServerNonInvite;

use crate::sip::access::HeaderError;
use crate::sip::{Method, Request, Response, SipMessage, reason_phrase};
use crate::transport::{Transmit, response_destination, stamp_via};

/// What the transaction layer asks of its owner.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Transmit(Transmit),
    Event(TxEvent),
}

/// Events for the transaction user (RFC 3261 §17).
#[derive(Debug, Clone, PartialEq)]
pub enum TxEvent {
    /// A new request created a server transaction (its Via already carries
    /// `received`/`rport`, §18.2.1).
    Request {
        key: TransactionKey,
        request: Request,
        source: SocketAddr,
    },
    /// A response for one of our client transactions.
    Response {
        key: TransactionKey,
        response: Response,
    },
    /// Timer B or F fired: the TU treats it as a 408 (§8.1.3.1).
    Timeout {
        key: TransactionKey,
    },
    /// The transport reported an error for this transaction.
    TransportError {
        key: TransactionKey,
    },
    /// Timer H fired: no ACK for our non-2xx final response.
    AckTimeout {
        key: TransactionKey,
    },
    /// An ACK that belongs to no transaction: the ACK for a 2xx (§17.2.3,
    /// §13.3.1.4).
    Ack {
        request: Request,
        source: SocketAddr,
    },
    /// A response that matches no transaction, e.g. a 2xx retransmission
    /// arriving after the Accepted state ended (§17.1.1.2).
    StrayResponse {
        response: Response,
        source: SocketAddr,
    },
    Terminated {
        key: TransactionKey,
    },
}

/// Errors the TU can get from the transaction layer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TxError {
    #[error("request has no usable Via/CSeq: {0}")]
    Header(#[from] HeaderError),
    #[error("no server transaction {key:?}")]
    NoSuchTransaction { key: TransactionKey },
    #[error("ACK is not sent through a transaction")]
    AckNeedsNoTransaction,
}

enum Client {
    Invite(ClientInvite),
    NonInvite(ClientNonInvite),
}

enum Server {
    Invite(ServerInvite),
    NonInvite(ServerNonInvite),
}

/// All transactions of one user agent.
pub struct TransactionLayer {
    cfg: TimerConfig,
    clients: HashMap<TransactionKey, Client>,
    servers: HashMap<TransactionKey, Server>,
    out: VecDeque<Output>,
    scratch: Vec<Output>,
}

impl TransactionLayer {
    pub fn new(cfg: TimerConfig) -> TransactionLayer {
        TransactionLayer {
            cfg,
            clients: HashMap::new(),
            servers: HashMap::new(),
            out: VecDeque::new(),
            scratch: Vec::new(),
        }
    }

    pub fn config(&self) -> TimerConfig {
        self.cfg
    }

    /// Starts a client transaction for `req` (not ACK) towards `dest`.
    pub fn send_request(
        &mut self,
        req: Request,
        dest: SocketAddr,
        now: Instant,
    ) -> Result<TransactionKey, TxError> {
        if req.method == Method::Ack {
            return Err(TxError::AckNeedsNoTransaction);
        }
        let key = TransactionKey::for_client_request(&req)?;
        let mut out = std::mem::take(&mut self.scratch);
        let client = if req.method == Method::Invite {
            Client::Invite(ClientInvite::start(
                key.clone(),
                req,
                dest,
                false,
                self.cfg,
                now,
                &mut out,
            ))
        } else {
            Client::NonInvite(ClientNonInvite::start(
                key.clone(),
                req,
                dest,
                false,
                self.cfg,
                now,
                &mut out,
            ))
        };
        self.clients.insert(key.clone(), client);
        self.flush(out);
        Ok(key)
    }

    /// Sends a datagram outside any transaction (ACK for 2xx, 2xx
    /// retransmissions by the TU, stateless error responses).
    pub fn send_stateless(&mut self, dest: SocketAddr, payload: Vec<u8>) {
        self.out
            .push_back(Output::Transmit(Transmit { dest, payload }));
    }

    /// The TU answers the request of server transaction `key`.
    pub fn send_response(
        &mut self,
        key: &TransactionKey,
        resp: Response,
        now: Instant,
    ) -> Result<(), TxError> {
        let mut out = std::mem::take(&mut self.scratch);
        match self.servers.get_mut(key) {
            Some(Server::Invite(t)) => t.send_response(resp, now, &mut out),
            Some(Server::NonInvite(t)) => t.send_response(resp, now, &mut out),
            None => {
                self.scratch = out;
                return Err(TxError::NoSuchTransaction { key: key.clone() });
            }
        }
        self.flush(out);
        Ok(())
    }

    /// Whether the INVITE server transaction `key` can still take a final
    /// response (used to answer CANCEL, §9.2).
    pub fn invite_pending(&self, key: &TransactionKey) -> bool {
        matches!(
            self.servers.get(key),
            Some(Server::Invite(t)) if t.state() == server_invite::State::Proceeding
        )
    }

    /// A message received from the network, already parsed and validated.
    pub fn handle_message(&mut self, msg: SipMessage, source: SocketAddr, now: Instant) {
        match msg {
            SipMessage::Request(r) => self.handle_request(r, source, now),
            SipMessage::Response(r) => self.handle_response(r, source, now),
        }
    }

    fn handle_response(&mut self, resp: Response, source: SocketAddr, now: Instant) {
        let mut out = std::mem::take(&mut self.scratch);
        let key = TransactionKey::for_response(&resp).ok();
        match key.as_ref().and_then(|k| self.clients.get_mut(k)) {
            Some(Client::Invite(t)) => t.handle_response(resp, now, &mut out),
            Some(Client::NonInvite(t)) => t.handle_response(resp, now, &mut out),
            None => out.push(Output::Event(TxEvent::StrayResponse {
                response: resp,
                source,
            })),
        }
        self.flush(out);
    }

    fn handle_request(&mut self, mut req: Request, source: SocketAddr, now: Instant) {
        stamp_via(&mut req, source);
        let Ok(key) = TransactionKey::for_server_request(&req) else {
            return;
        };
        let mut out = std::mem::take(&mut self.scratch);
        if req.method == Method::Ack {
            let absorbed = match self.servers.get_mut(&key) {
                Some(Server::Invite(t)) => t.handle_ack(now),
                _ => false,
            };
            if !absorbed {
                out.push(Output::Event(TxEvent::Ack {
                    request: req,
                    source,
                }));
            }
            self.flush(out);
            return;
        }
        match self.servers.get_mut(&key) {
            Some(Server::Invite(t)) => t.handle_retransmission(&mut out),
            Some(Server::NonInvite(t)) => t.handle_retransmission(&mut out),
            None => self.new_server(key, req, source, &mut out),
        }
        self.flush(out);
    }

    fn new_server(
        &mut self,
        key: TransactionKey,
        req: Request,
        source: SocketAddr,
        out: &mut Vec<Output>,
    ) {
        let Ok(via) = req.headers.top_via() else {
            return;
        };
        let dest = response_destination(&via, source);
        let server = if req.method == Method::Invite {
            let trying = make_response(&req, 100, None);
            Server::Invite(ServerInvite::start(
                key.clone(),
                trying,
                dest,
                false,
                self.cfg,
                out,
            ))
        } else {
            Server::NonInvite(ServerNonInvite::start(key.clone(), dest, false, self.cfg))
        };
        self.servers.insert(key.clone(), server);
        out.push(Output::Event(TxEvent::Request {
            key,
            request: req,
            source,
        }));
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut out = std::mem::take(&mut self.scratch);
        for t in self.clients.values_mut() {
            match t {
                Client::Invite(t) => t.handle_timeout(now, &mut out),
                Client::NonInvite(t) => t.handle_timeout(now, &mut out),
            }
        }
        for t in self.servers.values_mut() {
            match t {
                Server::Invite(t) => t.handle_timeout(now, &mut out),
                Server::NonInvite(t) => t.handle_timeout(now, &mut out),
            }
        }
        self.flush(out);
    }

    /// The transport could not send for client transaction `key`
    /// (§17.1.1.2, §17.1.2.2).
    pub fn handle_transport_error(&mut self, key: &TransactionKey) {
        let mut out = std::mem::take(&mut self.scratch);
        match self.clients.get_mut(key) {
            Some(Client::Invite(t)) => t.handle_transport_error(&mut out),
            Some(Client::NonInvite(t)) => t.handle_transport_error(&mut out),
            None => {}
        }
        self.flush(out);
    }

    /// The earliest deadline of all transactions.
    pub fn next_timeout(&self) -> Option<Instant> {
        let c = self.clients.values().filter_map(|t| match t {
            Client::Invite(t) => t.next_timeout(),
            Client::NonInvite(t) => t.next_timeout(),
        });
        let s = self.servers.values().filter_map(|t| match t {
            Server::Invite(t) => t.next_timeout(),
            Server::NonInvite(t) => t.next_timeout(),
        });
        c.chain(s).min()
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// Number of live transactions (for tests and status).
    pub fn len(&self) -> usize {
        self.clients.len() + self.servers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues outputs and drops terminated transactions.
    fn flush(&mut self, mut out: Vec<Output>) {
        for o in out.drain(..) {
            if let Output::Event(TxEvent::Terminated { key }) = &o {
                match key.role {
                    Role::Client => {
                        self.clients.remove(key);
                    }
                    Role::Server => {
                        self.servers.remove(key);
                    }
                }
            }
            self.out.push_back(o);
        }
        self.scratch = out;
    }
}

/// RFC 3261 §8.2.6: a response copies Via, From, Call-ID and CSeq (and To,
/// adding our tag when there is none) from the request.
pub fn make_response(req: &Request, status: u16, to_tag: Option<&str>) -> Response {
    let mut resp = Response::new(status, reason_phrase(status));
    resp.headers.copy_from(&req.headers, "Via");
    resp.headers.copy_from(&req.headers, "From");
    match (req.headers.get("To"), to_tag) {
        (Some(to), Some(tag)) if !has_tag(to) => resp.headers.push("To", format!("{to};tag={tag}")),
        _ => resp.headers.copy_from(&req.headers, "To"),
    }
    resp.headers.copy_from(&req.headers, "Call-ID");
    resp.headers.copy_from(&req.headers, "CSeq");
    resp.headers.push("Content-Length", "0");
    resp
}

fn has_tag(to: &str) -> bool {
    crate::sip::NameAddr::parse(to)
        .map(|na| na.tag().is_some())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests;
