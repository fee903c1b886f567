//! The INVITE server transaction (RFC 3261 §17.2.1, with the Accepted
//! state of RFC 6026 §7.1).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::timer::{Timer, TimerConfig, TimerTable};
use super::{Output, TransactionKey, TxEvent};
use crate::sip::{Response, reason_phrase};
use crate::transport::Transmit;

/// States of Figure 7 of RFC 3261, plus RFC 6026's Accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Proceeding,
    Completed,
    Confirmed,
    Accepted,
    Terminated,
}

pub struct ServerInvite {
    key: TransactionKey,
    state: State,
    /// Where responses go (§18.2.2, RFC 3581 §4).
    dest: SocketAddr,
    reliable: bool,
    cfg: TimerConfig,
    timers: TimerTable,
    /// The last response sent, re-sent on request retransmissions.
    last_response: Option<Vec<u8>>,
    g_interval: Duration,
}

impl ServerInvite {
    /// §17.2.1: created in Proceeding. We send 100 Trying at once so that
    /// the client stops retransmitting (the TU may take longer than 200 ms).
    pub fn start(
        key: TransactionKey,
        trying: Response,
        dest: SocketAddr,
        reliable: bool,
        cfg: TimerConfig,
        out: &mut Vec<Output>,
    ) -> ServerInvite {
        let mut t = ServerInvite {
            key,
            state: State::Proceeding,
            dest,
            reliable,
            cfg,
            timers: TimerTable::default(),
            last_response: None,
            g_interval: cfg.t1,
        };
        debug_assert_eq!(trying.status, 100, "{}", reason_phrase(100));
        t.send(trying.to_bytes(), out);
        t
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn next_timeout(&self) -> Option<Instant> {
        self.timers.next_timeout()
    }

    fn send(&mut self, wire: Vec<u8>, out: &mut Vec<Output>) {
        out.push(Output::Transmit(Transmit {
            dest: self.dest,
            payload: wire.clone(),
        }));
        self.last_response = Some(wire);
    }

    fn resend_last(&self, out: &mut Vec<Output>) {
        if let Some(w) = &self.last_response {
            out.push(Output::Transmit(Transmit {
                dest: self.dest,
                payload: w.clone(),
            }));
        }
    }

    /// The TU sends a response (§17.2.1).
    pub fn send_response(&mut self, resp: Response, now: Instant, out: &mut Vec<Output>) {
        if self.state != State::Proceeding {
            return;
        }
        let status = resp.status;
        self.send(resp.to_bytes(), out);
        match status {
            100..=199 => {}
            200..=299 => {
                // RFC 6026 §7.1: Accepted; the TU retransmits the 2xx.
                self.state = State::Accepted;
                self.timers.set(Timer::L, now + self.cfg.t1x64());
            }
            _ => {
                self.state = State::Completed;
                if !self.reliable {
                    self.timers.set(Timer::G, now + self.cfg.t1);
                }
                self.timers.set(Timer::H, now + self.cfg.t1x64());
            }
        }
    }

    /// A retransmission of the INVITE: re-send the last response in
    /// Proceeding and Completed (§17.2.1); absorbed in Accepted (RFC 6026).
    pub fn handle_retransmission(&mut self, out: &mut Vec<Output>) {
        if matches!(self.state, State::Proceeding | State::Completed) {
            self.resend_last(out);
        }
    }

    /// An ACK matching this transaction. In Completed it confirms a non-2xx
    /// final response (§17.2.1, Timer I); in Accepted it is for the 2xx and
    /// belongs to the TU (RFC 6026 §7.1). Returns whether it was absorbed.
    pub fn handle_ack(&mut self, now: Instant) -> bool {
        match self.state {
            State::Completed => {
                self.timers.stop(Timer::G);
                self.timers.stop(Timer::H);
                let i = if self.reliable {
                    Duration::ZERO
                } else {
                    self.cfg.t4
                };
                self.timers.set(Timer::I, now + i);
                self.state = State::Confirmed;
                true
            }
            State::Confirmed => true,
            _ => false,
        }
    }

    pub fn handle_timeout(&mut self, now: Instant, out: &mut Vec<Output>) {
        while let Some(t) = self.timers.pop_expired(now) {
            match t {
                Timer::G => self.on_timer_g(now, out),
                Timer::H => self.on_timer_h(out),
                Timer::I | Timer::L => self.terminate(out),
                _ => {}
            }
        }
    }

    /// §17.2.1: Timer G: retransmit the final response, doubling up to T2.
    fn on_timer_g(&mut self, now: Instant, out: &mut Vec<Output>) {
        if self.state != State::Completed {
            return;
        }
        self.resend_last(out);
        self.g_interval = (self.g_interval * 2).min(self.cfg.t2);
        self.timers.set(Timer::G, now + self.g_interval);
    }

    /// §17.2.1: Timer H: no ACK arrived; tell the TU and terminate.
    fn on_timer_h(&mut self, out: &mut Vec<Output>) {
        if self.state == State::Completed {
            out.push(Output::Event(TxEvent::AckTimeout {
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
