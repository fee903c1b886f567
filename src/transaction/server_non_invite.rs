//! The non-INVITE server transaction (RFC 3261 §17.2.2).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::timer::{Timer, TimerConfig, TimerTable};
use super::{Output, TransactionKey, TxEvent};
use crate::sip::Response;
use crate::transport::Transmit;

/// States of Figure 8 of RFC 3261.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

pub struct ServerNonInvite {
    key: TransactionKey,
    state: State,
    dest: SocketAddr,
    reliable: bool,
    cfg: TimerConfig,
    timers: TimerTable,
    last_response: Option<Vec<u8>>,
}

impl ServerNonInvite {
    pub fn start(
        key: TransactionKey,
        dest: SocketAddr,
        reliable: bool,
        cfg: TimerConfig,
    ) -> ServerNonInvite {
        ServerNonInvite {
            key,
            state: State::Trying,
            dest,
            reliable,
            cfg,
            timers: TimerTable::default(),
            last_response: None,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn next_timeout(&self) -> Option<Instant> {
        self.timers.next_timeout()
    }

    /// The TU sends a response (§17.2.2).
    pub fn send_response(&mut self, resp: Response, now: Instant, out: &mut Vec<Output>) {
        if !matches!(self.state, State::Trying | State::Proceeding) {
            return;
        }
        let wire = resp.to_bytes();
        out.push(Output::Transmit(Transmit {
            dest: self.dest,
            payload: wire.clone(),
        }));
        self.last_response = Some(wire);
        if resp.status < 200 {
            self.state = State::Proceeding;
        } else {
            // Timer J = 64·T1 on unreliable transports, 0 on reliable ones.
            let j = if self.reliable {
                Duration::ZERO
            } else {
                self.cfg.t1x64()
            };
            self.timers.set(Timer::J, now + j);
            self.state = State::Completed;
        }
    }

    /// §17.2.2: a retransmitted request is absorbed in Trying and answered
    /// with the last response in Proceeding and Completed.
    pub fn handle_retransmission(&self, out: &mut Vec<Output>) {
        if matches!(self.state, State::Proceeding | State::Completed)
            && let Some(w) = &self.last_response
        {
            out.push(Output::Transmit(Transmit {
                dest: self.dest,
                payload: w.clone(),
            }));
        }
    }

    pub fn handle_timeout(&mut self, now: Instant, out: &mut Vec<Output>) {
        while let Some(t) = self.timers.pop_expired(now) {
            if t == Timer::J {
                self.timers.stop_all();
                self.state = State::Terminated;
                out.push(Output::Event(TxEvent::Terminated {
                    key: self.key.clone(),
                }));
            }
        }
    }

    pub fn is_terminated(&self) -> bool {
        self.state == State::Terminated
    }
}
