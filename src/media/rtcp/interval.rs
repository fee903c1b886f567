//! The RTCP transmission interval of RFC 3550 §6.3.1 (algorithm of §A.7).

use std::time::Duration;

use rand::Rng;

/// §6.2: RTCP gets 5 % of the session bandwidth.
pub(crate) const RTCP_BANDWIDTH_FRACTION: f64 = 0.05;
/// §6.2: a quarter of the RTCP bandwidth goes to senders when they are
/// a quarter of the members or fewer.
const SENDER_FRACTION: f64 = 0.25;
/// §6.3.1: e − 3/2, compensating for timer reconsideration, which makes the
/// average interval converge below the computed one.
const COMPENSATION: f64 = std::f64::consts::E - 1.5;

/// Inputs of one interval computation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IntervalInputs {
    /// Members of the session, ourselves included.
    pub members: usize,
    /// Members that sent RTP recently, ourselves included.
    pub senders: usize,
    /// RTCP bandwidth in octets per second.
    pub rtcp_bandwidth: f64,
    /// Whether we sent RTP in the last two report intervals.
    pub we_sent: bool,
    /// Average compound RTCP packet size in octets, UDP and IP included.
    pub avg_rtcp_size: f64,
    /// No report sent yet: the minimum is halved (§6.2).
    pub initial: bool,
    /// Tmin (§6.2: 5 s, configurable for tests).
    pub min_interval: Duration,
}

/// §6.3.1: the deterministic interval Td, then randomized to
/// [0.5, 1.5] · Td and divided by e − 3/2.
pub(crate) fn rtcp_interval(inputs: &IntervalInputs, rng: &mut impl Rng) -> Duration {
    let td = deterministic_interval(inputs);
    let factor = rng.random_range(0.5..=1.5);
    Duration::from_secs_f64(td * factor / COMPENSATION)
}

/// Td = max(Tmin, n · C), with the sender/receiver split of §6.3.1.
pub(crate) fn deterministic_interval(inputs: &IntervalInputs) -> f64 {
    let min = if inputs.initial {
        inputs.min_interval.as_secs_f64() / 2.0
    } else {
        inputs.min_interval.as_secs_f64()
    };
    let mut bandwidth = inputs.rtcp_bandwidth.max(1.0);
    let mut n = inputs.members.max(1) as f64;
    let senders = inputs.senders as f64;
    if senders > 0.0 && senders <= n * SENDER_FRACTION {
        if inputs.we_sent {
            bandwidth *= SENDER_FRACTION;
            n = senders;
        } else {
            bandwidth *= 1.0 - SENDER_FRACTION;
            n -= senders;
        }
    }
    (inputs.avg_rtcp_size * n / bandwidth).max(min)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn two_party(initial: bool) -> IntervalInputs {
        IntervalInputs {
            members: 2,
            senders: 2,
            // G.711 at 50 packets/s: 64 kbit/s payload + 40 octets of
            // headers per packet = 10000 octets/s; RTCP gets 5 %.
            rtcp_bandwidth: 10_000.0 * RTCP_BANDWIDTH_FRACTION,
            we_sent: true,
            avg_rtcp_size: 100.0,
            initial,
            min_interval: Duration::from_secs(5),
        }
    }

    #[test]
    fn two_party_call_uses_the_5_second_minimum_rfc3550_6_2() {
        assert_eq!(deterministic_interval(&two_party(false)), 5.0);
    }

    #[test]
    fn first_report_uses_half_the_minimum_rfc3550_6_2() {
        assert_eq!(deterministic_interval(&two_party(true)), 2.5);
    }

    #[test]
    fn randomized_interval_stays_in_0_5_to_1_5_of_td_over_e_minus_1_5() {
        let mut rng = StdRng::seed_from_u64(1);
        let (lo, hi) = (0.5 * 5.0 / COMPENSATION, 1.5 * 5.0 / COMPENSATION);
        let mut seen_low = false;
        let mut seen_high = false;
        for _ in 0..1000 {
            let t = rtcp_interval(&two_party(false), &mut rng).as_secs_f64();
            assert!(t >= lo - 1e-9 && t <= hi + 1e-9, "{t}");
            seen_low |= t < lo + 0.5;
            seen_high |= t > hi - 0.5;
        }
        assert!(seen_low && seen_high, "the interval is randomized");
    }

    #[test]
    fn large_sessions_scale_with_members_and_split_sender_bandwidth() {
        let mut big = two_party(false);
        big.members = 1000;
        big.senders = 1000;
        // 1000 members × 100 octets / 500 octets/s = 200 s.
        assert_eq!(deterministic_interval(&big), 200.0);
        // Few senders: they share a quarter of the bandwidth among themselves.
        big.senders = 10;
        assert_eq!(deterministic_interval(&big), 10.0 * 100.0 / 125.0);
        big.we_sent = false;
        assert_eq!(deterministic_interval(&big), 990.0 * 100.0 / 375.0);
    }
}
