//! Symmetric RTP latching ("comedia"): where to send RTP when the peer sends
//! from an address other than the one its SDP named, as it does behind a NAT
//! (RFC 4961 symmetric RTP; the practice RFC 7362 §4 describes as latching).
//!
//! Sans-IO: [`Latch::handle_rtp`] takes the source address and SSRC of each
//! well-formed RTP packet of the call and the time it arrived; [`Latch::target`]
//! says where to send. The rules:
//!
//! - Before any source is established, every packet is accepted (the start
//!   of the call is heard) and RTP goes to the SDP address.
//! - A source is established after [`LATCH_PACKETS`] consecutive packets
//!   from one address with one SSRC. From then on RTP goes there, even when
//!   it is the SDP address itself (then nothing changes but the lock).
//! - Once established, packets from any other address are refused (not
//!   played, not latched to), so a stranger who guesses our port cannot take
//!   the stream over.
//! - Unless the established source has been silent for [`LATCH_IDLE`]: then
//!   a new source may be established by the same rule. This follows a NAT
//!   that gave the peer a new public port mid-call, at the price that an
//!   attacker can take over a stream that has stopped (e.g. on hold) — the
//!   same window any latching has.
//! - A new SDP address (re-INVITE) starts over: [`Latch::reset`].

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Consecutive packets from one address and SSRC that establish a source.
pub const LATCH_PACKETS: u32 = 3;

/// How long the established source must have been silent before another
/// may replace it.
pub const LATCH_IDLE: Duration = Duration::from_secs(2);

/// What [`Latch::handle_rtp`] decided about one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Play it.
    Accept,
    /// Play it; and RTP now goes to this newly established source.
    Latched(SocketAddr),
    /// A packet from another address while a live source is established.
    Refuse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Established {
    addr: SocketAddr,
    ssrc: u32,
    last_seen: Instant,
}

/// The latching state of one call's RTP stream; see the module docs.
#[derive(Debug, Clone, Default)]
pub struct Latch {
    established: Option<Established>,
    /// (address, SSRC, consecutive packets) of the source on its way to
    /// being established.
    candidate: Option<(SocketAddr, u32, u32)>,
    /// RTCP source seen with the established SSRC (not multiplexed).
    rtcp: Option<SocketAddr>,
}

impl Latch {
    pub fn new() -> Latch {
        Latch::default()
    }

    /// Forgets everything (a new SDP address).
    pub fn reset(&mut self) {
        *self = Latch::default();
    }

    /// Where RTP goes: the established source, else `sdp`.
    pub fn target(&self, sdp: SocketAddr) -> SocketAddr {
        self.established.map_or(sdp, |e| e.addr)
    }

    /// Where non-multiplexed RTCP goes: the source of the RTCP that carried
    /// the established stream's SSRC, else `sdp` (the SDP's RTCP address).
    pub fn rtcp_target(&self, sdp: SocketAddr) -> SocketAddr {
        self.rtcp.unwrap_or(sdp)
    }

    /// The established source, if any.
    pub fn established(&self) -> Option<SocketAddr> {
        self.established.map(|e| e.addr)
    }

    /// One well-formed RTP packet of the call from `from` with `ssrc`.
    pub fn handle_rtp(&mut self, from: SocketAddr, ssrc: u32, now: Instant) -> Verdict {
        if let Some(e) = self.established.as_mut() {
            if e.addr == from {
                e.last_seen = now;
                e.ssrc = ssrc;
                self.candidate = None;
                return Verdict::Accept;
            }
            if now.saturating_duration_since(e.last_seen) < LATCH_IDLE {
                return Verdict::Refuse;
            }
        }
        let count = match self.candidate {
            Some((addr, s, n)) if addr == from && s == ssrc => n + 1,
            _ => 1,
        };
        if count < LATCH_PACKETS {
            self.candidate = Some((from, ssrc, count));
            return match self.established {
                // A new source while the old one is idle: not played until
                // it is established.
                Some(_) => Verdict::Refuse,
                None => Verdict::Accept,
            };
        }
        let moved = self.established.map(|e| e.addr) != Some(from);
        if moved {
            self.rtcp = None;
        }
        self.established = Some(Established {
            addr: from,
            ssrc,
            last_seen: now,
        });
        self.candidate = None;
        Verdict::Latched(from)
    }

    /// An RTCP packet from `from` whose sender SSRC is `ssrc` (non-multiplexed
    /// RTCP arrives on the RTCP socket from the peer's RTCP port). Only the
    /// established stream's SSRC moves the RTCP target.
    pub fn handle_rtcp(&mut self, from: SocketAddr, ssrc: u32) {
        if self.established.is_some_and(|e| e.ssrc == ssrc) {
            self.rtcp = Some(from);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    const SDP: &str = "198.51.100.20:4000";
    const NAT: &str = "198.51.100.65:31000";
    const STRANGER: &str = "198.51.100.99:5555";

    #[test]
    fn latches_to_the_real_source_after_three_consecutive_packets() {
        let t0 = Instant::now();
        let mut l = Latch::new();
        assert_eq!(l.target(sa(SDP)), sa(SDP));
        assert_eq!(l.handle_rtp(sa(NAT), 7, t0), Verdict::Accept);
        assert_eq!(l.handle_rtp(sa(NAT), 7, t0), Verdict::Accept);
        assert_eq!(l.target(sa(SDP)), sa(SDP), "not before the third packet");
        assert_eq!(l.handle_rtp(sa(NAT), 7, t0), Verdict::Latched(sa(NAT)));
        assert_eq!(l.target(sa(SDP)), sa(NAT));
        assert_eq!(l.handle_rtp(sa(NAT), 7, t0), Verdict::Accept);
    }

    #[test]
    fn packets_from_two_sources_interleaved_establish_neither_until_one_runs_three() {
        let t0 = Instant::now();
        let mut l = Latch::new();
        for _ in 0..5 {
            l.handle_rtp(sa(NAT), 7, t0);
            l.handle_rtp(sa(STRANGER), 9, t0);
        }
        assert_eq!(l.established(), None);
        l.handle_rtp(sa(NAT), 7, t0);
        l.handle_rtp(sa(NAT), 7, t0);
        assert_eq!(l.handle_rtp(sa(NAT), 7, t0), Verdict::Latched(sa(NAT)));
    }

    #[test]
    fn an_ssrc_change_restarts_the_count() {
        let t0 = Instant::now();
        let mut l = Latch::new();
        l.handle_rtp(sa(NAT), 7, t0);
        l.handle_rtp(sa(NAT), 7, t0);
        l.handle_rtp(sa(NAT), 8, t0);
        assert_eq!(l.established(), None);
        l.handle_rtp(sa(NAT), 8, t0);
        assert_eq!(l.handle_rtp(sa(NAT), 8, t0), Verdict::Latched(sa(NAT)));
    }

    #[test]
    fn a_stranger_cannot_hijack_a_live_stream() {
        let t0 = Instant::now();
        let mut l = Latch::new();
        for _ in 0..3 {
            l.handle_rtp(sa(NAT), 7, t0);
        }
        let mut t = t0;
        for _ in 0..100 {
            t += Duration::from_millis(20);
            assert_eq!(l.handle_rtp(sa(STRANGER), 9, t), Verdict::Refuse);
            assert_eq!(l.handle_rtp(sa(NAT), 7, t), Verdict::Accept);
        }
        // Even a burst while the real source pauses briefly.
        for _ in 0..10 {
            t += Duration::from_millis(20);
            assert_eq!(l.handle_rtp(sa(STRANGER), 9, t), Verdict::Refuse);
        }
        assert_eq!(l.target(sa(SDP)), sa(NAT));
    }

    #[test]
    fn a_new_source_takes_over_after_the_old_one_is_silent_for_latch_idle() {
        let t0 = Instant::now();
        let mut l = Latch::new();
        for _ in 0..3 {
            l.handle_rtp(sa(NAT), 7, t0);
        }
        let moved: SocketAddr = sa("198.51.100.65:31002");
        let early = t0 + LATCH_IDLE - Duration::from_millis(1);
        assert_eq!(l.handle_rtp(moved, 7, early), Verdict::Refuse);
        let t = t0 + LATCH_IDLE;
        assert_eq!(l.handle_rtp(moved, 7, t), Verdict::Refuse, "not played yet");
        assert_eq!(l.handle_rtp(moved, 7, t), Verdict::Refuse);
        assert_eq!(l.handle_rtp(moved, 7, t), Verdict::Latched(moved));
        assert_eq!(l.target(sa(SDP)), moved);
        // The old source is now the stranger.
        assert_eq!(l.handle_rtp(sa(NAT), 7, t), Verdict::Refuse);
    }

    #[test]
    fn packets_from_the_sdp_address_lock_it_in() {
        let t0 = Instant::now();
        let mut l = Latch::new();
        for _ in 0..3 {
            l.handle_rtp(sa(SDP), 1, t0);
        }
        assert_eq!(l.target(sa(SDP)), sa(SDP));
        assert_eq!(l.handle_rtp(sa(STRANGER), 9, t0), Verdict::Refuse);
    }

    #[test]
    fn rtcp_follows_the_established_ssrc_only_and_reset_forgets() {
        let t0 = Instant::now();
        let mut l = Latch::new();
        let rtcp_sdp = sa("198.51.100.20:4001");
        l.handle_rtcp(sa("198.51.100.65:31001"), 7);
        assert_eq!(l.rtcp_target(rtcp_sdp), rtcp_sdp, "no stream yet");
        for _ in 0..3 {
            l.handle_rtp(sa(NAT), 7, t0);
        }
        l.handle_rtcp(sa(STRANGER), 9);
        assert_eq!(l.rtcp_target(rtcp_sdp), rtcp_sdp);
        l.handle_rtcp(sa("198.51.100.65:31001"), 7);
        assert_eq!(l.rtcp_target(rtcp_sdp), sa("198.51.100.65:31001"));
        l.reset();
        assert_eq!(l.target(sa(SDP)), sa(SDP));
        assert_eq!(l.rtcp_target(rtcp_sdp), rtcp_sdp);
    }
}
