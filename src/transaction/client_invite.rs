//! The INVITE client transaction (RFC 3261 §17.1.1, with the Accepted
//! state of RFC 6026 §7.2).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::timer::{Timer, TimerConfig, TimerTable};
use super::{Output, TransactionKey, TxEvent};
use crate::sip::{Method, Request, Response};
use crate::transport::Transmit;

/// States of Figure 5 of RFC 3261, plus RFC 6026's Accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Calling,
    Proceeding,
    Completed,
    Accepted,
    Terminated,
}

pub struct ClientInvite {
    key: TransactionKey,
    state: State,
    request: Request,
    wire: Vec<u8>,
    dest: SocketAddr,
    reliable: bool,
    cfg: TimerConfig,
    timers: TimerTable,
    /// Current Timer A interval.
    a_interval: Duration,
    /// The ACK for a non-2xx final response, re-sent on retransmissions.
    ack: Option<Vec<u8>>,
}

impl ClientInvite {
    /// §17.1.1.2: send the INVITE, start Timer A (unreliable transports only)
    /// and Timer B.
    pub fn start(
        key: TransactionKey,
        request: Request,
        dest: SocketAddr,
        reliable: bool,
        cfg: TimerConfig,
        now: Instant,
        out: &mut Vec<Output>,
    ) -> ClientInvite {
        let wire = request.to_bytes();
        let mut timers = TimerTable::default();
        if !reliable {
            timers.set(Timer::A, now + cfg.t1);
        }
        timers.set(Timer::B, now + cfg.t1x64());
        out.push(Output::Transmit(Transmit {
            dest,
            payload: wire.clone(),
        }));
        ClientInvite {
            key,
            state: State::Calling,
            request,
            wire,
            dest,
            reliable,
            cfg,
            timers,
            a_interval: cfg.t1,
            ack: None,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn next_timeout(&self) -> Option<Instant> {
        self.timers.next_timeout()
    }

    pub fn request(&self) -> &Request {
        &self.request
    }

    /// A response matched to this transaction.
    pub fn handle_response(&mut self, resp: Response, now: Instant, out: &mut Vec<Output>) {
        match (self.state, resp.status) {
            (State::Calling | State::Proceeding, 100..=199) => {
                self.timers.stop(Timer::A);
                self.state = State::Proceeding;
                self.to_tu(resp, out);
            }
            (State::Calling | State::Proceeding, 200..=299) => self.on_2xx(resp, now, out),
            (State::Calling | State::Proceeding, _) => self.on_final_error(resp, now, out),
            // RFC 6026 §7.2: 2xx retransmissions go to the TU, which ACKs each.
            (State::Accepted, 200..=299) => self.to_tu(resp, out),
            // §17.1.1.2: retransmitted final responses get the ACK again.
            (State::Completed, 300..=699) => self.resend_ack(out),
            _ => {}
        }
    }

    /// RFC 6026 §8.4: a 2xx moves to Accepted for 64·T1 (Timer M).
    fn on_2xx(&mut self, resp: Response, now: Instant, out: &mut Vec<Output>) {
        self.timers.stop_all();
        self.timers.set(Timer::M, now + self.cfg.t1x64());
        self.state = State::Accepted;
        self.to_tu(resp, out);
    }

    /// §17.1.1.2: 300–699 → ACK, Completed, Timer D (32 s or more on UDP).
    fn on_final_error(&mut self, resp: Response, now: Instant, out: &mut Vec<Output>) {
        self.timers.stop_all();
        self.ack = Some(build_ack(&self.request, &resp).to_bytes());
        self.resend_ack(out);
        let d = if self.reliable {
            Duration::ZERO
        } else {
            Duration::from_secs(32).max(self.cfg.t1x64() / 2)
        };
        self.timers.set(Timer::D, now + d);
        self.state = State::Completed;
        self.to_tu(resp, out);
    }

    fn resend_ack(&self, out: &mut Vec<Output>) {
        if let Some(ack) = &self.ack {
            out.push(Output::Transmit(Transmit {
                dest: self.dest,
                payload: ack.clone(),
            }));
        }
    }

    fn to_tu(&self, response: Response, out: &mut Vec<Output>) {
        out.push(Output::Event(TxEvent::Response {
            key: self.key.clone(),
            response,
        }));
    }

    pub fn handle_timeout(&mut self, now: Instant, out: &mut Vec<Output>) {
        while let Some(t) = self.timers.pop_expired(now) {
            match t {
                Timer::A => self.on_timer_a(now, out),
                Timer::B => self.on_timer_b(out),
                Timer::D | Timer::M => self.terminate(out),
                _ => {}
            }
        }
    }

    /// §17.1.1.2: Timer A fires: retransmit and double the interval.
    fn on_timer_a(&mut self, now: Instant, out: &mut Vec<Output>) {
        if self.state != State::Calling {
            return;
        }
        out.push(Output::Transmit(Transmit {
            dest: self.dest,
            payload: self.wire.clone(),
        }));
        self.a_interval *= 2;
        self.timers.set(Timer::A, now + self.a_interval);
    }

    /// §17.1.1.2: Timer B fires in Calling (or Proceeding, RFC 6026): the TU
    /// is told of the timeout.
    fn on_timer_b(&mut self, out: &mut Vec<Output>) {
        if matches!(self.state, State::Calling | State::Proceeding) {
            out.push(Output::Event(TxEvent::Timeout {
                key: self.key.clone(),
            }));
            self.terminate(out);
        }
    }

    /// A transport error: the TU is told and the transaction ends (§17.1.1.2).
    pub fn handle_transport_error(&mut self, out: &mut Vec<Output>) {
        if matches!(self.state, State::Calling | State::Proceeding) {
            out.push(Output::Event(TxEvent::TransportError {
                key: self.key.clone(),
            }));
            self.terminate(out);
        }
    }

    fn terminate(&mut self, out: &mut Vec<Output>) {
        self.timers.stop_all();
        self.state = State::Terminated;
        out.push(Output::Event(TxEvent::Terminated {
            key: self.key.clone(),
        }));
    }

    pub fn is_terminated(&self) -> bool {
        self.state == State::Terminated
    }
}

/// §17.1.1.3: the ACK for a non-2xx final response: same Request-URI,
/// Call-ID, From, CSeq number and top Via as the INVITE, the To of the
/// response, and the INVITE's Route headers.
pub fn build_ack(invite: &Request, resp: &Response) -> Request {
    let mut ack = Request::new(Method::Ack, invite.uri.clone());
    if let Some(via) = invite.headers.list("Via").first() {
        ack.headers.push("Via", *via);
    }
    ack.headers.push("Max-Forwards", "70");
    ack.headers.copy_from(&invite.headers, "From");
    ack.headers.copy_from(&resp.headers, "To");
    ack.headers.copy_from(&invite.headers, "Call-ID");
    let seq = invite.headers.cseq().map(|c| c.seq).unwrap_or(1);
    ack.headers.push("CSeq", format!("{seq} ACK"));
    ack.headers.copy_from(&invite.headers, "Route");
    ack.headers.push("Content-Length", "0");
    ack
}
