//! Keeping the media path's NAT binding open while no RTP flows from us
//! (our hold, the peer's hold, `inactive`): a STUN Binding indication on
//! the RTP socket whenever nothing has left that socket for the interval.
//!
//! RFC 6263 §4.5 lists STUN indications among the ways to keep an RTP flow's
//! NAT bindings alive; unlike an RTP packet they carry no media, so they are
//! allowed in every direction of RFC 3264 §5.1 and a peer's RTP stack drops
//! them (RFC 7983 §7: first byte 0–3 is STUN). An indication gets no
//! response (RFC 8489 §6.3), so nothing waits for one. RTCP multiplexed on
//! the RTP port (RFC 5761) refreshes the binding too, so every datagram the
//! session sends resets the timer ([`MediaKeepalive::on_sent`]).
//!
//! Sans-IO: the session reports what it sends and asks
//! [`MediaKeepalive::poll_due`] with its `now`.

use std::time::{Duration, Instant};

use rand::Rng;

/// Default interval: under the 30 s that many NATs keep an idle UDP
/// binding (Linux conntrack's default for a one-way flow).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);

/// RFC 8489 §5: the magic cookie.
const MAGIC_COOKIE: u32 = 0x2112_A442;
/// RFC 8489 §5, §18.2: Binding method, indication class (C1 = 0, C0 = 1).
const BINDING_INDICATION: u16 = 0x0011;

/// The timer of one RTP socket.
#[derive(Debug, Clone)]
pub struct MediaKeepalive {
    interval: Option<Duration>,
    last_sent: Instant,
}

impl MediaKeepalive {
    /// `interval` `None` turns keep-alives off; `now` counts as a send.
    pub fn new(interval: Option<Duration>, now: Instant) -> MediaKeepalive {
        MediaKeepalive {
            interval: interval.filter(|i| !i.is_zero()),
            last_sent: now,
        }
    }

    /// A new interval, counted from the last send.
    pub fn set_interval(&mut self, interval: Option<Duration>) {
        self.interval = interval.filter(|i| !i.is_zero());
    }

    pub fn interval(&self) -> Option<Duration> {
        self.interval
    }

    /// Something left the RTP socket at `now`.
    pub fn on_sent(&mut self, now: Instant) {
        self.last_sent = self.last_sent.max(now);
    }

    /// When a keep-alive will be due if nothing else is sent.
    pub fn deadline(&self) -> Option<Instant> {
        self.interval.map(|i| self.last_sent + i)
    }

    /// Whether a keep-alive is due at `now`; if so, it counts as sent.
    pub fn poll_due(&mut self, now: Instant) -> bool {
        match self.deadline() {
            Some(d) if now >= d => {
                self.last_sent = now;
                true
            }
            _ => false,
        }
    }
}

/// A STUN Binding indication (RFC 8489 §6.3): a 20-byte header, no
/// attributes, a random transaction ID.
pub fn binding_indication(rng: &mut (impl Rng + ?Sized)) -> [u8; 20] {
    let mut msg = [0u8; 20];
    msg[0..2].copy_from_slice(&BINDING_INDICATION.to_be_bytes());
    // Message length 0: no attributes.
    msg[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    rng.fill(&mut msg[8..20]);
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn due_every_interval_of_silence_with_a_fake_clock() {
        let t0 = Instant::now();
        let mut k = MediaKeepalive::new(Some(Duration::from_secs(15)), t0);
        assert_eq!(k.deadline(), Some(t0 + Duration::from_secs(15)));
        assert!(!k.poll_due(t0 + Duration::from_millis(14_999)));
        assert!(k.poll_due(t0 + Duration::from_secs(15)));
        assert!(
            !k.poll_due(t0 + Duration::from_secs(16)),
            "once per interval"
        );
        assert!(k.poll_due(t0 + Duration::from_secs(30)));
        // An hour of hold: 15 s apart, 240 keep-alives.
        let mut sent = 0;
        let mut t = t0 + Duration::from_secs(30);
        while t < t0 + Duration::from_secs(30 + 3600) {
            t += Duration::from_millis(20);
            if k.poll_due(t) {
                sent += 1;
            }
        }
        assert_eq!(sent, 240);
    }

    #[test]
    fn anything_sent_postpones_the_keepalive() {
        let t0 = Instant::now();
        let mut k = MediaKeepalive::new(Some(Duration::from_secs(15)), t0);
        k.on_sent(t0 + Duration::from_secs(10));
        assert!(!k.poll_due(t0 + Duration::from_secs(20)));
        assert!(k.poll_due(t0 + Duration::from_secs(25)));
        // A report of an older send does not move the timer back.
        k.on_sent(t0);
        assert_eq!(k.deadline(), Some(t0 + Duration::from_secs(40)));
    }

    #[test]
    fn zero_or_none_turns_keepalives_off() {
        let t0 = Instant::now();
        for interval in [None, Some(Duration::ZERO)] {
            let mut k = MediaKeepalive::new(interval, t0);
            assert_eq!(k.deadline(), None);
            assert!(!k.poll_due(t0 + Duration::from_secs(3600)));
        }
    }

    #[test]
    fn rfc8489_binding_indication_header() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let a = binding_indication(&mut rng);
        let b = binding_indication(&mut rng);
        assert_eq!(a[..8], [0x00, 0x11, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42]);
        assert_ne!(a[8..], b[8..], "a fresh transaction ID each time");
        // RFC 7983 §7: the first byte puts it in the STUN range.
        assert!(a[0] <= 3);
        assert_eq!(
            crate::media::rtp::classify(&a),
            crate::media::rtp::Kind::Stun
        );
    }
}
