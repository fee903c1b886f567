//! Wall-clock time for RTCP: NTP timestamps (RFC 3550 §4) and the source of
//! wall-clock time, behind a trait so that tests use a fixed one.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Seconds from the NTP epoch (1 January 1900) to the Unix epoch.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// Where wall-clock time comes from (like quinn-proto's `TimeSource`).
pub trait WallClock {
    /// The current wall-clock time.
    fn now(&self) -> SystemTime;
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl WallClock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock stopped at one instant, for tests.
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub SystemTime);

impl WallClock for FixedClock {
    fn now(&self) -> SystemTime {
        self.0
    }
}

/// A 64-bit NTP timestamp (RFC 3550 §4): seconds since 1900 in the high 32
/// bits, the fraction of a second in the low 32 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NtpTime(pub u64);

impl NtpTime {
    /// The NTP timestamp of a wall-clock time (times before 1970 count as
    /// the Unix epoch).
    pub fn from_system(t: SystemTime) -> NtpTime {
        let since_unix = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        let secs = since_unix.as_secs().wrapping_add(NTP_UNIX_OFFSET);
        let frac = (u64::from(since_unix.subsec_nanos()) << 32) / 1_000_000_000;
        NtpTime((secs << 32) | frac)
    }

    /// `self` moved on by `d`.
    pub fn plus(self, d: Duration) -> NtpTime {
        let units = (d.as_nanos() << 32) / 1_000_000_000;
        NtpTime(self.0.wrapping_add(units as u64))
    }

    /// RFC 3550 §6.4.1: the middle 32 bits, as carried in LSR and used for
    /// the round-trip time (units of 1/65536 s).
    pub fn middle32(self) -> u32 {
        (self.0 >> 16) as u32
    }
}

/// Maps the monotonic clock onto NTP time: the wall clock is read once, when
/// the RTCP session starts, and later instants are that reading plus the
/// monotonic time elapsed. A wall-clock step during the call then cannot
/// corrupt round-trip times, which compare our own timestamps.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NtpAnchor {
    at: Instant,
    ntp: NtpTime,
}

impl NtpAnchor {
    pub(crate) fn new(clock: &dyn WallClock, now: Instant) -> Self {
        NtpAnchor {
            at: now,
            ntp: NtpTime::from_system(clock.now()),
        }
    }

    /// The NTP time of `now` (instants before the anchor map to it).
    pub(crate) fn ntp(&self, now: Instant) -> NtpTime {
        self.ntp.plus(now.saturating_duration_since(self.at))
    }
}

/// A duration in the 1/65536 s units of DLSR (RFC 3550 §6.4.1), saturating.
pub(crate) fn to_units_65536(d: Duration) -> u32 {
    let units = (d.as_nanos() << 16) / 1_000_000_000;
    u32::try_from(units).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntp_epoch_offset_and_fraction_rfc3550_section_4() {
        // 2026-01-01T00:00:00.5Z = Unix 1767225600.5.
        let t = UNIX_EPOCH + Duration::from_millis(1_767_225_600_500);
        let ntp = NtpTime::from_system(t);
        assert_eq!(ntp.0 >> 32, 1_767_225_600 + 2_208_988_800);
        assert_eq!(ntp.0 & 0xFFFF_FFFF, 0x8000_0000);
        // Middle 32 bits: low 16 bits of seconds, high 16 of the fraction.
        assert_eq!(
            ntp.middle32(),
            (((1_767_225_600u64 + 2_208_988_800) & 0xFFFF) << 16 | 0x8000) as u32
        );
    }

    #[test]
    fn anchor_follows_the_monotonic_clock() {
        let t0 = Instant::now();
        let wall = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let anchor = NtpAnchor::new(&FixedClock(wall), t0);
        let later = anchor.ntp(t0 + Duration::from_millis(250));
        assert_eq!(later.0 - anchor.ntp(t0).0, 1 << 30);
        assert_eq!(anchor.ntp(t0), NtpTime::from_system(wall));
    }

    #[test]
    fn dlsr_units_are_1_over_65536_seconds() {
        assert_eq!(to_units_65536(Duration::from_secs(1)), 65536);
        assert_eq!(to_units_65536(Duration::from_millis(500)), 32768);
        assert_eq!(to_units_65536(Duration::from_secs(1 << 20)), u32::MAX);
    }
}
