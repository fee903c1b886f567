//! The non-INVITE client transaction (RFC 3261 §17.1.2).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::timer::{Timer, TimerConfig, TimerTable};
use super::{Output, TransactionKey, TxEvent};
use crate::sip::{Request, Response};
use crate::transport::Transmit;

/// States of Figure 6 of RFC 3261.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

pub struct ClientNonInvite {
    key: TransactionKey,
    state: State,
    request: Request,
    wire: Vec<u8>,
    dest: SocketAddr,
    reliable: bool,
    cfg: TimerConfig,
    timers: TimerTable,
    /// Current Timer E interval.
    e_interval: Duration,
}

impl ClientNonInvite {
    /// §17.1.2.2: send the request, start Timer E (unreliable) and Timer F.
    pub fn start(
        key: TransactionKey,
        request: Request,
        dest: SocketAddr,
        reliable: bool,
        cfg: TimerConfig,
        now: Instant,
        out: &mut Vec<Output>,
    ) -> ClientNonInvite {
        let wire = request.to_bytes();
        let mut timers = TimerTable::default();
        if !reliable {
            timers.set(Timer::E, now + cfg.t1);
        }
        timers.set(Timer::F, now + cfg.t1x64());
        out.push(Output::Transmit(Transmit {
            dest,
            payload: wire.clone(),
        }));
        ClientNonInvite {
            key,
            state: State::Trying,
            request,
            wire,
            dest,
            reliable,
            cfg,
            timers,
            e_interval: cfg.t1,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn request(&self) -> &Request {
        &self.request
    }

    pub fn next_timeout(&self) -> Option<Instant> {
        self.timers.next_timeout()
    }

    pub fn handle_response(&mut self, resp: Response, now: Instant, out: &mut Vec<Output>) {
        match (self.state, resp.status) {
            (State::Trying | State::Proceeding, 100..=199) => {
                self.state = State::Proceeding;
                self.to_tu(resp, out);
            }
            (State::Trying | State::Proceeding, _) => {
                // §17.1.2.2: final response → Completed, Timer K = T4 (0 if reliable).
                self.timers.stop_all();
                let k = if self.reliable {
                    Duration::ZERO
                } else {
                    self.cfg.t4
                };
                self.timers.set(Timer::K, now + k);
                self.state = State::Completed;
                self.to_tu(resp, out);
            }
            _ => {}
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
                Timer::E => self.on_timer_e(now, out),
                Timer::F => self.on_timer_f(out),
                Timer::K => self.terminate(out),
                _ => {}
            }
        }
    }

    /// §17.1.2.2: Timer E fires: retransmit; in Trying the interval doubles
    /// up to T2, in Proceeding it is T2.
    fn on_timer_e(&mut self, now: Instant, out: &mut Vec<Output>) {
        if !matches!(self.state, State::Trying | State::Proceeding) {
            return;
        }
        out.push(Output::Transmit(Transmit {
            dest: self.dest,
            payload: self.wire.clone(),
        }));
        self.e_interval = match self.state {
            State::Trying => (self.e_interval * 2).min(self.cfg.t2),
            _ => self.cfg.t2,
        };
        self.timers.set(Timer::E, now + self.e_interval);
    }

    /// §17.1.2.2: Timer F fires: the TU is told of the timeout.
    fn on_timer_f(&mut self, out: &mut Vec<Output>) {
        if matches!(self.state, State::Trying | State::Proceeding) {
            out.push(Output::Event(TxEvent::Timeout {
                key: self.key.clone(),
            }));
            self.terminate(out);
        }
    }

    pub fn handle_transport_error(&mut self, out: &mut Vec<Output>) {
        if matches!(self.state, State::Trying | State::Proceeding) {
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
