//! A network emulator for one direction of a media stream: loss (random or
//! in bursts), delay, jitter, reordering and the clock drift of the sender.
//!
//! Sans-IO: [`Netem::push`] each datagram as it is sent, with the instant it
//! was sent; [`Netem::poll`] returns the datagrams whose delivery time has
//! come, and [`Netem::poll_timeout`] says when to poll next. All randomness
//! comes from an RNG seeded by [`NetemConfig::seed`], so a run is
//! reproducible. `sipline loopback` puts one stage in each direction of the
//! RTP path between its two user agents.
//!
//! The stages, in the order a datagram meets them:
//!
//! 1. **Loss.** Without a burst length, each datagram is dropped
//!    independently with probability `loss` (Bernoulli). With
//!    `loss_burst = Some(b)`, loss follows the Gilbert model, the simple case
//!    of Gilbert–Elliott: a two-state Markov chain, *Good* (nothing lost)
//!    and *Bad* (everything lost), stepped once per datagram. Its transition
//!    probabilities are chosen so that the mean burst is `b` datagrams and
//!    the long-run loss is `loss`: P(Bad→Good) = r = 1/b and P(Good→Bad) =
//!    p = r·loss/(1−loss), since the stationary probability of Bad is
//!    p/(p+r). Burst lengths are geometric with mean 1/r.
//! 2. **Delay and jitter.** Each datagram is delayed by `delay` plus a
//!    uniformly distributed extra in [0, `jitter`]. Datagrams leave in the
//!    order they came (a queue, like a router's): one whose delay would make
//!    it overtake the previous one waits for it, so jitter alone never
//!    reorders.
//! 3. **Reordering.** With probability `reorder`, a datagram is held back and
//!    delivered just after the next one (the two swap places), or
//!    [`MAX_HOLD`] after its own delivery time if no other datagram comes.
//! 4. **Clock drift.** `drift` is how much faster the sender's clock runs
//!    than the receiver's (0.001: 0.1 % fast). The receiver then sees the
//!    stream's pace scaled by 1/(1+`drift`): a slow sender's datagrams
//!    arrive ever later, a fast sender's ever earlier. Arriving earlier than
//!    sent is impossible, so for a fast sender every datagram starts with a
//!    head start of `drift_horizon`·`drift`/(1+`drift`) of extra delay that
//!    shrinks to nothing at `drift_horizon` after the first datagram (after
//!    that the drift is no longer simulated).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The longest a reordered datagram waits for the one it swaps places with.
pub const MAX_HOLD: Duration = Duration::from_millis(100);

/// The largest clock drift accepted, either way (10 %).
pub const MAX_DRIFT: f64 = 0.1;

/// What the emulator does to the datagrams; see the module documentation.
#[derive(Debug, Clone, PartialEq)]
pub struct NetemConfig {
    /// Long-run fraction of datagrams lost, 0.0–1.0 (below 1.0 with bursts).
    pub loss: f64,
    /// Mean length of a loss burst in datagrams (≥ 1): Gilbert model; `None`:
    /// independent losses.
    pub loss_burst: Option<f64>,
    /// Fixed one-way delay.
    pub delay: Duration,
    /// Largest extra random delay (uniform from zero to this).
    pub jitter: Duration,
    /// Fraction of datagrams delivered after their successor, 0.0–1.0.
    pub reorder: f64,
    /// Sender's clock rate relative to the receiver's, minus one.
    pub drift: f64,
    /// How long a fast sender's drift can be simulated (see the module
    /// documentation); it sets the head start.
    pub drift_horizon: Duration,
    /// Seed of the random choices.
    pub seed: u64,
}

impl Default for NetemConfig {
    /// A perfect network: nothing lost, delayed or reordered.
    fn default() -> Self {
        NetemConfig {
            loss: 0.0,
            loss_burst: None,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            reorder: 0.0,
            drift: 0.0,
            drift_horizon: Duration::from_secs(60),
            seed: 0,
        }
    }
}

/// A configuration the emulator cannot run.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum NetemError {
    #[error("loss {0} is not a fraction between 0 and 1")]
    Loss(f64),
    #[error("a loss burst of {0} datagrams: give a mean length of at least 1")]
    Burst(f64),
    #[error("loss {0} in bursts never ends: give a loss below 100 %")]
    EndlessBurst(f64),
    #[error("reorder {0} is not a fraction between 0 and 1")]
    Reorder(f64),
    #[error("clock drift {0} is outside ±{MAX_DRIFT}")]
    Drift(f64),
}

impl NetemConfig {
    /// Whether the emulator changes anything at all.
    pub fn is_transparent(&self) -> bool {
        self.loss == 0.0
            && self.delay.is_zero()
            && self.jitter.is_zero()
            && self.reorder == 0.0
            && self.drift == 0.0
    }

    /// Checks every parameter's range.
    pub fn validate(&self) -> Result<(), NetemError> {
        if !(0.0..=1.0).contains(&self.loss) {
            return Err(NetemError::Loss(self.loss));
        }
        if let Some(b) = self.loss_burst {
            if !(b >= 1.0 && b.is_finite()) {
                return Err(NetemError::Burst(b));
            }
            if self.loss >= 1.0 {
                return Err(NetemError::EndlessBurst(self.loss));
            }
        }
        if !(0.0..=1.0).contains(&self.reorder) {
            return Err(NetemError::Reorder(self.reorder));
        }
        if !(-MAX_DRIFT..=MAX_DRIFT).contains(&self.drift) {
            return Err(NetemError::Drift(self.drift));
        }
        Ok(())
    }
}

/// What the emulator did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct NetemStats {
    /// Datagrams pushed.
    pub pushed: u64,
    /// Datagrams dropped by the loss stage.
    pub dropped: u64,
    /// Datagrams held back to swap places with their successor.
    pub reordered: u64,
    /// Datagrams returned by `poll`.
    pub delivered: u64,
    /// Sum of the delays of delivered datagrams (push to delivery time).
    pub total_delay: Duration,
    /// Longest delay of a delivered datagram.
    pub max_delay: Duration,
}

impl NetemStats {
    /// Mean delay of the delivered datagrams.
    pub fn mean_delay(&self) -> Duration {
        match u32::try_from(self.delivered) {
            Ok(n) if n > 0 => self.total_delay / n,
            _ => Duration::ZERO,
        }
    }

    /// Fraction of pushed datagrams dropped.
    pub fn loss_fraction(&self) -> f64 {
        if self.pushed == 0 {
            0.0
        } else {
            self.dropped as f64 / self.pushed as f64
        }
    }
}

/// A datagram on its way.
#[derive(Debug)]
struct InFlight<T> {
    sent: Instant,
    due: Instant,
    item: T,
}

/// One direction of an emulated network; see the module documentation.
#[derive(Debug)]
pub struct Netem<T> {
    config: NetemConfig,
    rng: StdRng,
    /// Gilbert model state: true while in the Bad state.
    bad: bool,
    /// Delivery queue, in delivery order (due times never decrease).
    queue: VecDeque<InFlight<T>>,
    /// A datagram waiting to go out after the next one.
    held: Option<InFlight<T>>,
    /// When the first datagram was pushed (the drift's reference).
    first: Option<Instant>,
    stats: NetemStats,
}

impl<T> Netem<T> {
    /// An emulator for `config`, after checking it.
    pub fn new(config: NetemConfig) -> Result<Self, NetemError> {
        config.validate()?;
        Ok(Netem {
            rng: StdRng::seed_from_u64(config.seed),
            config,
            bad: false,
            queue: VecDeque::new(),
            held: None,
            first: None,
            stats: NetemStats::default(),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &NetemConfig {
        &self.config
    }

    /// Counters so far.
    pub fn stats(&self) -> NetemStats {
        self.stats
    }

    /// Number of datagrams on their way (queued or held).
    pub fn in_flight(&self) -> usize {
        self.queue.len() + usize::from(self.held.is_some())
    }

    /// Takes in one datagram sent at `now`.
    pub fn push(&mut self, item: T, now: Instant) {
        self.stats.pushed += 1;
        let first = *self.first.get_or_insert(now);
        if self.lose() {
            self.stats.dropped += 1;
            return;
        }
        let due = now + self.config.delay + self.jitter() + self.drift_delay(now - first);
        let packet = InFlight {
            sent: now,
            due,
            item,
        };
        if self.held.is_none()
            && self.config.reorder > 0.0
            && self.rng.random_bool(self.config.reorder)
        {
            self.stats.reordered += 1;
            self.held = Some(InFlight {
                due: self.fifo_due(due),
                ..packet
            });
            return;
        }
        self.enqueue(packet);
        if let Some(held) = self.held.take() {
            self.enqueue(held);
        }
    }

    /// The next datagram whose delivery time has come.
    pub fn poll(&mut self, now: Instant) -> Option<T> {
        if let Some(held) = self.held.take_if(|h| h.due + MAX_HOLD <= now) {
            self.enqueue(held);
        }
        let packet = self.queue.pop_front_if(|p| p.due <= now)?;
        let delay = packet.due.saturating_duration_since(packet.sent);
        self.stats.delivered += 1;
        self.stats.total_delay += delay;
        self.stats.max_delay = self.stats.max_delay.max(delay);
        Some(packet.item)
    }

    /// When the next datagram is due (`None`: nothing in flight).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let queued = self.queue.front().map(|p| p.due);
        let held = self.held.as_ref().map(|h| h.due + MAX_HOLD);
        match (queued, held) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Appends to the queue, never before the datagram ahead of it.
    fn enqueue(&mut self, mut packet: InFlight<T>) {
        packet.due = self.fifo_due(packet.due);
        self.queue.push_back(packet);
    }

    fn fifo_due(&self, due: Instant) -> Instant {
        match self.queue.back() {
            Some(last) => due.max(last.due),
            None => due,
        }
    }

    /// The loss stage: Bernoulli, or one step of the Gilbert model.
    fn lose(&mut self) -> bool {
        let loss = self.config.loss;
        if loss <= 0.0 {
            return false;
        }
        match self.config.loss_burst {
            None => self.rng.random_bool(loss.min(1.0)),
            Some(burst) => {
                let r = 1.0 / burst;
                let p = (r * loss / (1.0 - loss)).min(1.0);
                let flip = if self.bad { r } else { p };
                if self.rng.random_bool(flip) {
                    self.bad = !self.bad;
                }
                self.bad
            }
        }
    }

    /// Uniform extra delay in [0, jitter].
    fn jitter(&mut self) -> Duration {
        let max = self.config.jitter;
        if max.is_zero() {
            return Duration::ZERO;
        }
        max.mul_f64(self.rng.random::<f64>())
    }

    /// Extra delay that makes the stream's pace 1/(1+drift) of the sender's,
    /// `elapsed` after the first datagram.
    fn drift_delay(&self, elapsed: Duration) -> Duration {
        let d = self.config.drift;
        if d == 0.0 {
            return Duration::ZERO;
        }
        // Delivery at first + elapsed/(1+d) + head start.
        let shrink = d / (1.0 + d);
        let head_start = self.config.drift_horizon.as_secs_f64() * shrink.max(0.0);
        let extra = head_start - elapsed.as_secs_f64() * shrink;
        Duration::from_secs_f64(extra.max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Sends `n` datagrams numbered 0.. every 20 ms and polls every
    /// millisecond; returns (number, delivery time since start) in delivery
    /// order.
    fn run(config: NetemConfig, n: u32) -> (Vec<(u32, Duration)>, NetemStats) {
        let t0 = Instant::now();
        let mut net = Netem::new(config).expect("valid config");
        let mut out = Vec::new();
        let end = n * 20 + 2000;
        for ms in 0..end {
            let now = t0 + MS * ms;
            if ms % 20 == 0 && ms / 20 < n {
                net.push(ms / 20, now);
            }
            while let Some(i) = net.poll(now) {
                out.push((i, now - t0));
            }
        }
        assert_eq!(net.in_flight(), 0, "everything delivered");
        (out, net.stats())
    }

    #[test]
    fn a_default_netem_delivers_everything_at_once_in_order() {
        let (out, stats) = run(NetemConfig::default(), 100);
        assert!(NetemConfig::default().is_transparent());
        assert_eq!(out.len(), 100);
        assert!(
            out.iter()
                .enumerate()
                .all(|(i, &(n, at))| n == i as u32 && at == MS * 20 * n)
        );
        assert_eq!(stats.max_delay, Duration::ZERO);
    }

    #[test]
    fn random_loss_rate_is_within_tolerance_and_same_seed_repeats() {
        let config = NetemConfig {
            loss: 0.05,
            seed: 7,
            ..NetemConfig::default()
        };
        let (out, stats) = run(config.clone(), 10_000);
        let rate = stats.loss_fraction();
        // Binomial: σ = √(0.05·0.95/10000) ≈ 0.22 %; allow 4σ.
        assert!((rate - 0.05).abs() < 0.009, "loss {rate}");
        assert_eq!(out.len() as u64, 10_000 - stats.dropped);
        let (again, _) = run(config, 10_000);
        assert_eq!(out, again, "same seed, same losses");
        let (other, _) = run(
            NetemConfig {
                loss: 0.05,
                seed: 8,
                ..NetemConfig::default()
            },
            10_000,
        );
        assert_ne!(out, other, "another seed, other losses");
    }

    /// Lengths of the runs of consecutive lost datagrams.
    fn bursts(out: &[(u32, Duration)], n: u32) -> Vec<u32> {
        let mut got = vec![false; n as usize];
        for &(i, _) in out {
            got[i as usize] = true;
        }
        let mut runs = Vec::new();
        let mut current = 0;
        for g in got {
            if g {
                if current > 0 {
                    runs.push(current);
                }
                current = 0;
            } else {
                current += 1;
            }
        }
        if current > 0 {
            runs.push(current);
        }
        runs
    }

    #[test]
    fn gilbert_bursts_have_the_requested_mean_length_and_overall_loss() {
        let n = 20_000;
        let (out, stats) = run(
            NetemConfig {
                loss: 0.05,
                loss_burst: Some(4.0),
                seed: 3,
                ..NetemConfig::default()
            },
            n,
        );
        let rate = stats.loss_fraction();
        assert!((rate - 0.05).abs() < 0.015, "loss {rate}");
        let runs = bursts(&out, n);
        let mean = runs.iter().sum::<u32>() as f64 / runs.len() as f64;
        assert!((mean - 4.0).abs() < 0.6, "mean burst {mean}");
        assert!(runs.iter().any(|&r| r >= 8), "geometric tail: {runs:?}");

        // Independent losses at the same rate come mostly alone.
        let (out, _) = run(
            NetemConfig {
                loss: 0.05,
                seed: 3,
                ..NetemConfig::default()
            },
            n,
        );
        let runs = bursts(&out, n);
        let mean = runs.iter().sum::<u32>() as f64 / runs.len() as f64;
        assert!(mean < 1.2, "mean run of random loss {mean}");
    }

    #[test]
    fn delay_is_added_and_jitter_stays_within_bounds_without_reordering() {
        let (out, stats) = run(
            NetemConfig {
                delay: 30 * MS,
                jitter: 40 * MS,
                seed: 11,
                ..NetemConfig::default()
            },
            1000,
        );
        assert_eq!(out.len(), 1000);
        for (k, &(i, at)) in out.iter().enumerate() {
            assert_eq!(i, k as u32, "jitter alone keeps the order");
            let delay = at - MS * 20 * i;
            assert!(delay >= 30 * MS && delay <= 71 * MS, "delay {delay:?}");
        }
        let mean = stats.mean_delay();
        // Uniform 0–40 ms plus queueing behind slower predecessors.
        assert!(mean > 45 * MS && mean < 65 * MS, "mean {mean:?}");
        assert!(stats.max_delay > 65 * MS);
    }

    #[test]
    fn reordered_datagrams_swap_with_their_successor() {
        let n = 5000;
        let (out, stats) = run(
            NetemConfig {
                reorder: 0.05,
                seed: 5,
                ..NetemConfig::default()
            },
            n,
        );
        assert_eq!(out.len(), n as usize);
        let swaps = out.windows(2).filter(|w| w[0].0 > w[1].0).count() as u64;
        assert_eq!(swaps, stats.reordered);
        let rate = stats.reordered as f64 / f64::from(n);
        assert!((rate - 0.05).abs() < 0.015, "reorder rate {rate}");
        for w in out.windows(2).filter(|w| w[0].0 > w[1].0) {
            assert_eq!(w[0].0, w[1].0 + 1, "only neighbours swap");
            assert_eq!(w[0].1, w[1].1, "the held one leaves with its successor");
        }
    }

    #[test]
    fn a_held_datagram_leaves_after_max_hold_when_nothing_follows() {
        let t0 = Instant::now();
        let mut net = Netem::new(NetemConfig {
            reorder: 1.0,
            ..NetemConfig::default()
        })
        .expect("valid");
        net.push("only", t0);
        assert_eq!(net.poll(t0), None);
        assert_eq!(net.poll_timeout(), Some(t0 + MAX_HOLD));
        assert_eq!(net.poll(t0 + MAX_HOLD - MS), None);
        assert_eq!(net.poll(t0 + MAX_HOLD), Some("only"));
        assert_eq!(net.poll_timeout(), None);
    }

    #[test]
    fn slow_sender_drift_stretches_the_pace_and_fast_sender_drift_compresses_it() {
        let n = 3000; // 60 s
        let slow = run(
            NetemConfig {
                drift: -0.001,
                ..NetemConfig::default()
            },
            n,
        )
        .0;
        // 0.1 % of 60 s: the last datagram arrives 60 ms late.
        let last = slow.last().expect("delivered");
        let lag = last.1 - MS * 20 * last.0;
        assert!(lag >= 59 * MS && lag <= 61 * MS, "lag {lag:?}");

        let fast = run(
            NetemConfig {
                drift: 0.001,
                drift_horizon: Duration::from_secs(60),
                ..NetemConfig::default()
            },
            n,
        )
        .0;
        let first = fast[0].1;
        let last = fast.last().expect("delivered");
        let lag = last.1 - MS * 20 * last.0;
        assert!(first >= 59 * MS && first <= 61 * MS, "head start {first:?}");
        assert!(lag <= MS, "head start used up at the horizon: {lag:?}");
        // Pace between first and last: 59.98 s for 59.98 s of sending,
        // compressed by 0.1 %.
        let span = (last.1 - first).as_secs_f64();
        let sent = f64::from(last.0) * 0.020;
        assert!((span / sent - 1.0 / 1.001).abs() < 5e-5, "{span} / {sent}");
    }

    #[test]
    fn bad_parameters_are_refused() {
        let bad = |c: NetemConfig| Netem::<()>::new(c).err();
        assert_eq!(
            bad(NetemConfig {
                loss: 1.5,
                ..NetemConfig::default()
            }),
            Some(NetemError::Loss(1.5))
        );
        assert_eq!(
            bad(NetemConfig {
                loss: 1.0,
                loss_burst: Some(3.0),
                ..NetemConfig::default()
            }),
            Some(NetemError::EndlessBurst(1.0))
        );
        assert_eq!(
            bad(NetemConfig {
                loss_burst: Some(0.5),
                ..NetemConfig::default()
            }),
            Some(NetemError::Burst(0.5))
        );
        assert_eq!(
            bad(NetemConfig {
                reorder: -0.1,
                ..NetemConfig::default()
            }),
            Some(NetemError::Reorder(-0.1))
        );
        assert_eq!(
            bad(NetemConfig {
                drift: 0.5,
                ..NetemConfig::default()
            }),
            Some(NetemError::Drift(0.5))
        );
        assert!(
            bad(NetemConfig {
                loss: f64::NAN,
                ..NetemConfig::default()
            })
            .is_some()
        );
    }
}
