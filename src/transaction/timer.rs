//! Transaction timers (RFC 3261 §17, Table 4 of §A; RFC 6026 §8.4).

use std::time::{Duration, Instant};

/// T1, T2 and T4 (RFC 3261 §17.1.1.1, Appendix A).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate, default 500 ms.
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE
    /// responses, default 4 s.
    pub t2: Duration,
    /// Maximum time a message remains in the network, default 5 s.
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl TimerConfig {
    /// 64·T1: Timers B, F, H, J, L and M.
    pub fn t1x64(&self) -> Duration {
        self.t1 * 64
    }
}

/// The timers by their RFC letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// INVITE request retransmit (client, UDP).
    A,
    /// INVITE transaction timeout (client).
    B,
    /// Wait time for response retransmits (client INVITE, Completed).
    D,
    /// Non-INVITE request retransmit (client, UDP).
    E,
    /// Non-INVITE transaction timeout (client).
    F,
    /// INVITE response retransmit (server).
    G,
    /// Wait time for ACK receipt (server).
    H,
    /// Wait time for ACK retransmits (server, Confirmed).
    I,
    /// Wait time for non-INVITE request retransmits (server).
    J,
    /// Wait time for response retransmits (client non-INVITE).
    K,
    /// Wait time for INVITE retransmits after a 2xx (server, RFC 6026 Accepted).
    L,
    /// Wait time for 2xx retransmits (client, RFC 6026 Accepted).
    M,
}

const ALL: [Timer; 12] = [
    Timer::A,
    Timer::B,
    Timer::D,
    Timer::E,
    Timer::F,
    Timer::G,
    Timer::H,
    Timer::I,
    Timer::J,
    Timer::K,
    Timer::L,
    Timer::M,
];

/// Armed timers; the earliest is the transaction's next deadline.
#[derive(Debug, Clone, Default)]
pub struct TimerTable {
    deadlines: [Option<Instant>; 12],
}

impl TimerTable {
    fn index(t: Timer) -> usize {
        ALL.iter()
            .position(|x| *x == t)
            .expect("ALL lists every timer")
    }

    pub fn set(&mut self, t: Timer, at: Instant) {
        self.deadlines[Self::index(t)] = Some(at);
    }

    pub fn stop(&mut self, t: Timer) {
        self.deadlines[Self::index(t)] = None;
    }

    pub fn stop_all(&mut self) {
        self.deadlines = [None; 12];
    }

    pub fn next_timeout(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }

    /// Removes and returns the earliest timer due at `now`, if any.
    pub fn pop_expired(&mut self, now: Instant) -> Option<Timer> {
        let (i, _) = self
            .deadlines
            .iter()
            .enumerate()
            .filter_map(|(i, d)| d.map(|d| (i, d)))
            .filter(|(_, d)| *d <= now)
            .min_by_key(|(_, d)| *d)?;
        self.deadlines[i] = None;
        Some(ALL[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_timer_is_the_next_deadline() {
        let t0 = Instant::now();
        let mut t = TimerTable::default();
        t.set(Timer::B, t0 + Duration::from_secs(32));
        t.set(Timer::A, t0 + Duration::from_millis(500));
        assert_eq!(t.next_timeout(), Some(t0 + Duration::from_millis(500)));
        assert_eq!(t.pop_expired(t0), None);
        assert_eq!(t.pop_expired(t0 + Duration::from_secs(40)), Some(Timer::A));
        assert_eq!(t.pop_expired(t0 + Duration::from_secs(40)), Some(Timer::B));
        assert_eq!(t.next_timeout(), None);
    }
}
