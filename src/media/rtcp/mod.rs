//! RTCP (RFC 3550 §6) for one audio stream: sender and receiver reports,
//! SDES CNAME, BYE, and what they tell about the call (round-trip time,
//! loss and jitter in both directions).
//!
//! Sans-IO, driven by the media session:
//! - [`RtcpSession::on_rtp_sent`] for every RTP packet we send, and
//!   [`RtcpSession::set_rtp_clock`] to say which RTP timestamp our sampling
//!   clock shows at `now` (for the sender report);
//! - [`RtcpSession::on_rtp_received`] for every RTP packet of the peer;
//! - [`RtcpSession::handle_packet`] for every RTCP datagram received;
//! - [`RtcpSession::handle_timeout`] when [`RtcpSession::poll_timeout`] is
//!   due, then [`RtcpSession::poll_transmit`] until it returns `None`;
//! - [`RtcpSession::bye`] when the call ends.
//!
//! It never reads the clock: `now` is an argument, and wall-clock time (for
//! NTP timestamps) comes from a [`WallClock`] read once at the start. It
//! knows no addresses: the media session sends its packets to the peer's
//! RTCP port, or on the RTP port when multiplexed (RFC 5761).
//!
//! A peer that reflects our own packets (an RTP echo) shows up as a source
//! with our own SSRC; it is reported on like any other, and no SSRC
//! collision is declared (RFC 3550 §8.2 loop detection is not done).

mod clock;
mod interval;
mod reception;

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rtcp::goodbye::Goodbye;
use rtcp::packet::Packet;
use rtcp::receiver_report::ReceiverReport;
use rtcp::reception_report::ReceptionReport;
use rtcp::sender_report::SenderReport;
use rtcp::source_description::{
    SdesType, SourceDescription, SourceDescriptionChunk, SourceDescriptionItem,
};
use serde::Serialize;

pub use clock::{FixedClock, NtpTime, SystemClock, WallClock};
pub use reception::ReceptionSummary;

use clock::{NtpAnchor, to_units_65536};
use interval::{IntervalInputs, RTCP_BANDWIDTH_FRACTION, rtcp_interval};
use reception::{Block, Reception};

/// RFC 3550 §6.2: the recommended minimum interval between reports.
pub const DEFAULT_MIN_INTERVAL: Duration = Duration::from_secs(5);

/// IPv4 + UDP header octets counted in the average RTCP size (§6.2).
const IP_UDP_OVERHEAD: f64 = 28.0;

/// §6.4: at most 31 report blocks fit the 5-bit count.
const MAX_REPORT_BLOCKS: usize = 31;

/// Remote sources remembered; packets from further SSRCs are ignored, so
/// that forged packets cannot grow the table without bound. A call has one
/// peer; a few more cover SSRC changes and echoes.
const MAX_REMOTES: usize = 16;

/// Settings of one RTCP session.
#[derive(Debug, Clone, PartialEq)]
pub struct RtcpConfig {
    /// Our canonical name (SDES CNAME, §6.5.1); see [`random_cname`].
    pub cname: String,
    /// Tmin (§6.2). RFC 3550 recommends 5 s; smaller values are for tests.
    pub min_interval: Duration,
    /// Session bandwidth in bits per second, RTP headers included; RTCP
    /// takes 5 % of it (§6.2).
    pub session_bandwidth_bps: f64,
    /// RTP clock rate of the stream, for jitter and SR timestamps.
    pub clock_rate: u32,
}

impl RtcpConfig {
    /// A configuration with the recommended 5 s minimum and the bandwidth of
    /// a 64 kbit/s codec in 20 ms packets (80 kbit/s with headers).
    pub fn new(cname: String, clock_rate: u32) -> Self {
        RtcpConfig {
            cname,
            min_interval: DEFAULT_MIN_INTERVAL,
            session_bandwidth_bps: 80_000.0,
            clock_rate,
        }
    }
}

/// A CNAME from 96 random bits, base64-encoded (RFC 7022 §4.2: short-term
/// persistent, so that calls cannot be linked by it).
pub fn random_cname(rng: &mut (impl Rng + ?Sized)) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: [u8; 12] = rng.random();
    let mut out = String::with_capacity(16);
    for chunk in bytes.chunks(3) {
        let n = u32::from(chunk[0]) << 16 | u32::from(chunk[1]) << 8 | u32::from(chunk[2]);
        for shift in [18, 12, 6, 0] {
            out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
        }
    }
    out
}

/// Why a received RTCP datagram was not used.
#[derive(Debug, thiserror::Error)]
pub enum RtcpError {
    /// A packet in the compound does not start with version 2 (§6.4.1).
    #[error("RTCP packet at offset {offset} has version {version}")]
    BadVersion { offset: usize, version: u8 },
    /// A packet's header, or the length it declares, runs past the end of
    /// the datagram (§A.2).
    #[error("RTCP packet at offset {offset} is truncated")]
    Truncated { offset: usize },
    /// The `rtcp` crate could not parse an SR, RR, SDES or BYE.
    #[error("malformed RTCP packet: {0}")]
    Malformed(#[from] rtcp::Error),
}

/// RFC 3550 §6.4.1–§6.6 packet types we read: SR, RR, SDES and BYE.
const USED_PACKET_TYPES: std::ops::RangeInclusive<u8> = 200..=203;

/// Splits a compound packet into its packets (RFC 3550 §6.1, §A.2: each
/// declares its length in 32-bit words minus one) and keeps those of the
/// types we read. Feedback, XR and APP packets are skipped unparsed (the
/// `rtcp` crate's parsers of some of them panic on malformed input).
fn used_packets(data: &[u8]) -> Result<Vec<&[u8]>, RtcpError> {
    if data.is_empty() {
        return Err(RtcpError::Truncated { offset: 0 });
    }
    let mut used = Vec::new();
    let mut offset = 0;
    while offset < data.len() {
        let header = data
            .get(offset..offset + 4)
            .ok_or(RtcpError::Truncated { offset })?;
        let version = header[0] >> 6;
        if version != 2 {
            return Err(RtcpError::BadVersion { offset, version });
        }
        let len = (usize::from(u16::from_be_bytes([header[2], header[3]])) + 1) * 4;
        let packet = data
            .get(offset..offset + len)
            .ok_or(RtcpError::Truncated { offset })?;
        if USED_PACKET_TYPES.contains(&header[1]) {
            used.push(packet);
        }
        offset += len;
    }
    Ok(used)
}

/// Parses the packets of a compound that we read; the whole datagram is
/// refused if any of them is malformed.
fn parse_used(data: &[u8]) -> Result<Vec<Box<dyn Packet + Send + Sync>>, RtcpError> {
    let mut packets = Vec::new();
    for raw in used_packets(data)? {
        packets.extend(rtcp::packet::unmarshal(&mut Bytes::copy_from_slice(raw))?);
    }
    Ok(packets)
}

/// What RTCP told us about the call so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RtcpStats {
    /// Compound RTCP packets we sent (BYE included).
    pub reports_sent: u64,
    /// Compound RTCP packets received and parsed.
    pub reports_received: u64,
    /// Received RTCP datagrams that could not be parsed.
    pub malformed: u64,
    /// Round-trip time from the last report about our stream (§6.4.1).
    pub rtt_ms: Option<f64>,
    /// Smallest and largest round-trip time seen.
    pub rtt_min_ms: Option<f64>,
    pub rtt_max_ms: Option<f64>,
    /// Our reception of the peer's stream, as we report it.
    pub local: Option<ReceptionSummary>,
    /// The peer's reception of our stream, from its last report block.
    pub remote: Option<ReceptionSummary>,
    /// The peer's CNAME (SDES).
    pub peer_cname: Option<String>,
    /// The peer sent BYE.
    pub bye_received: bool,
}

/// What we know about one remote source.
#[derive(Debug, Default)]
struct Remote {
    reception: Option<Reception>,
    /// Middle 32 bits of the NTP time of its last SR, and when it arrived.
    last_sr: Option<(u32, Instant)>,
    /// RTP received since our last report (it gets a report block).
    heard_since_report: bool,
    /// RTP received in the interval before (it still counts as a sender).
    heard_before: bool,
    left: bool,
}

/// Our RTP sending, for sender reports.
#[derive(Debug, Default)]
struct Sending {
    packets: u32,
    octets: u32,
    /// RTP timestamp of our sampling clock at an instant.
    clock: Option<(u32, Instant)>,
    sent_since_report: bool,
    sent_before: bool,
}

/// The §A.7 timer state.
#[derive(Debug)]
struct Timing {
    /// Last report sent (tp) and next one scheduled (tn).
    tp: Instant,
    tn: Instant,
    initial: bool,
    avg_rtcp_size: f64,
}

/// One RTCP session; see the module documentation.
pub struct RtcpSession {
    ssrc: u32,
    config: RtcpConfig,
    ntp: NtpAnchor,
    /// Reference for arrival times in timestamp units (§A.8).
    epoch: Instant,
    rng: StdRng,
    timing: Timing,
    sending: Sending,
    remotes: BTreeMap<u32, Remote>,
    /// The last report block about our stream.
    about_us: Option<Block>,
    transmit: VecDeque<Bytes>,
    stats: RtcpStats,
    closed: bool,
}

impl std::fmt::Debug for RtcpSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtcpSession")
            .field("ssrc", &self.ssrc)
            .field("next_report", &self.timing.tn)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl RtcpSession {
    /// A session for our source `ssrc`, joining at `now`. The wall clock is
    /// read once here; `rng` seeds the interval randomization.
    pub fn new(
        ssrc: u32,
        config: RtcpConfig,
        clock: &dyn WallClock,
        rng: &mut (impl Rng + ?Sized),
        now: Instant,
    ) -> Self {
        let mut session = RtcpSession {
            ssrc,
            ntp: NtpAnchor::new(clock, now),
            epoch: now,
            rng: StdRng::seed_from_u64(rng.random()),
            timing: Timing {
                tp: now,
                tn: now,
                initial: true,
                avg_rtcp_size: 0.0,
            },
            sending: Sending::default(),
            remotes: BTreeMap::new(),
            about_us: None,
            transmit: VecDeque::new(),
            stats: RtcpStats::default(),
            closed: false,
            config,
        };
        // §6.3.2: avg_rtcp_size starts as the size of the first packet we
        // will send; the first report waits half the minimum interval.
        session.timing.avg_rtcp_size = session.compound(now, false).len() as f64 + IP_UDP_OVERHEAD;
        let first = session.interval();
        session.timing.tn = now + first;
        session
    }

    /// Our SSRC.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Changes the RTP clock rate (codec change on re-INVITE).
    pub fn set_clock_rate(&mut self, clock_rate: u32) {
        self.config.clock_rate = clock_rate;
    }

    /// Counts one RTP packet we sent with `payload_len` payload octets
    /// (§6.4.1 sender's packet and octet counts, which wrap).
    pub fn on_rtp_sent(&mut self, payload_len: usize) {
        self.sending.packets = self.sending.packets.wrapping_add(1);
        self.sending.octets = self.sending.octets.wrapping_add(payload_len as u32);
        self.sending.sent_since_report = true;
    }

    /// Says that our sampling clock shows RTP timestamp `timestamp` at
    /// `now`; a sender report extrapolates from the latest such pair
    /// (§6.4.1: the RTP timestamp of the same instant as the NTP one).
    pub fn set_rtp_clock(&mut self, timestamp: u32, now: Instant) {
        self.sending.clock = Some((timestamp, now));
    }

    /// Counts one RTP packet received from `ssrc` (§A.1, §A.3) and, when
    /// `audio` (not an RFC 4733 event, whose timestamps stay at the event's
    /// start), feeds its timestamp to the jitter estimate (§A.8).
    pub fn on_rtp_received(
        &mut self,
        ssrc: u32,
        sequence_number: u16,
        timestamp: u32,
        audio: bool,
        arrival: Instant,
    ) {
        let arrival_units = self.arrival_units(arrival);
        let Some(remote) = self.remote(ssrc) else {
            return;
        };
        remote.left = false;
        remote.heard_since_report = true;
        let reception = remote
            .reception
            .get_or_insert_with(|| Reception::new(sequence_number));
        if reception.update_seq(sequence_number) && audio {
            reception.update_jitter(timestamp, arrival_units);
        }
    }

    /// The state of source `ssrc`, created on first sight unless the table
    /// is full.
    fn remote(&mut self, ssrc: u32) -> Option<&mut Remote> {
        if self.remotes.len() >= MAX_REMOTES && !self.remotes.contains_key(&ssrc) {
            return None;
        }
        Some(self.remotes.entry(ssrc).or_default())
    }

    /// The arrival time in RTP timestamp units since the session started.
    fn arrival_units(&self, arrival: Instant) -> u32 {
        let since = arrival.saturating_duration_since(self.epoch);
        (since.as_nanos() * u128::from(self.config.clock_rate) / 1_000_000_000) as u32
    }

    /// Takes in one received RTCP datagram (a compound packet, §6.1).
    pub fn handle_packet(&mut self, data: &[u8], now: Instant) -> Result<(), RtcpError> {
        let packets = match parse_used(data) {
            Ok(packets) => packets,
            Err(e) => {
                self.stats.malformed += 1;
                return Err(e);
            }
        };
        self.stats.reports_received += 1;
        for packet in &packets {
            self.on_packet(packet.as_ref(), now);
        }
        Ok(())
    }

    fn on_packet(&mut self, packet: &(dyn Packet + Send + Sync), now: Instant) {
        // Only the types of `USED_PACKET_TYPES` get here.
        let any = packet.as_any();
        if let Some(sr) = any.downcast_ref::<SenderReport>() {
            self.on_sender_report(sr, now);
        } else if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
            if let Some(remote) = self.remote(rr.ssrc) {
                remote.left = false;
            }
            self.on_report_blocks(&rr.reports, now);
        } else if let Some(sdes) = any.downcast_ref::<SourceDescription>() {
            self.on_sdes(sdes);
        } else if let Some(bye) = any.downcast_ref::<Goodbye>() {
            self.on_bye(bye);
        }
    }

    /// §6.4.1: remember the SR's NTP time for our LSR/DLSR, then read its blocks.
    fn on_sender_report(&mut self, sr: &SenderReport, now: Instant) {
        if let Some(remote) = self.remote(sr.ssrc) {
            remote.left = false;
            remote.last_sr = Some((NtpTime(sr.ntp_time).middle32(), now));
        }
        self.on_report_blocks(&sr.reports, now);
    }

    /// The peer's view of our stream, and the round-trip time (§6.4.1):
    /// RTT = A − LSR − DLSR, with A our NTP time at arrival.
    fn on_report_blocks(&mut self, reports: &[ReceptionReport], now: Instant) {
        let us = self.ssrc;
        for r in reports.iter().filter(|r| r.ssrc == us) {
            self.about_us = Some(Block {
                fraction_lost: r.fraction_lost,
                cumulative_lost: Block::lost_from_field(r.total_lost),
                highest_seq: r.last_sequence_number,
                jitter: r.jitter,
            });
            if r.last_sender_report != 0 {
                let a = self.ntp.ntp(now).middle32();
                let rtt = a.wrapping_sub(r.last_sender_report).wrapping_sub(r.delay) as i32;
                self.record_rtt(rtt);
            }
        }
    }

    /// Keeps a round-trip time given in 1/65536 s; a negative one (the
    /// peer's DLSR rounded up, or a bogus block) counts as 0 when within a
    /// millisecond, else is ignored.
    fn record_rtt(&mut self, units: i32) {
        let units = match units {
            u if u >= 0 => u,
            u if u > -66 => 0,
            _ => return,
        };
        let ms = f64::from(units) * 1000.0 / 65536.0;
        let s = &mut self.stats;
        s.rtt_ms = Some(ms);
        s.rtt_min_ms = Some(s.rtt_min_ms.map_or(ms, |m| m.min(ms)));
        s.rtt_max_ms = Some(s.rtt_max_ms.map_or(ms, |m| m.max(ms)));
    }

    /// §6.5.1: the peer's CNAME.
    fn on_sdes(&mut self, sdes: &SourceDescription) {
        for chunk in &sdes.chunks {
            for item in &chunk.items {
                if item.sdes_type == SdesType::SdesCname && chunk.source != self.ssrc {
                    self.stats.peer_cname = Some(String::from_utf8_lossy(&item.text).into_owned());
                }
            }
        }
    }

    /// §6.6: the sources leave the session.
    fn on_bye(&mut self, bye: &Goodbye) {
        for ssrc in &bye.sources {
            if let Some(remote) = self.remotes.get_mut(ssrc) {
                remote.left = true;
            }
            if *ssrc != self.ssrc {
                self.stats.bye_received = true;
            }
        }
    }

    /// When the next report is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (!self.closed).then_some(self.timing.tn)
    }

    /// §A.7 `OnExpire` with timer reconsideration (§6.3.6): when the
    /// scheduled time has come, the interval is computed again from the
    /// last report; the report goes out if that time has passed too, else
    /// the timer is moved.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closed || now < self.timing.tn {
            return;
        }
        let t = self.interval();
        let tn = self.timing.tp + t;
        if tn > now {
            self.timing.tn = tn;
            return;
        }
        self.send_report(now, false);
        self.timing.tp = now;
        self.timing.initial = false;
        let t = self.interval();
        self.timing.tn = now + t;
    }

    /// Ends our participation (§6.3.7): a last compound packet with BYE,
    /// sent at once (fewer than 50 members). Later calls do nothing.
    pub fn bye(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        self.send_report(now, true);
        self.closed = true;
    }

    /// The next compound packet to send.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.transmit.pop_front()
    }

    /// What RTCP knows so far.
    pub fn stats(&self) -> RtcpStats {
        let rate = self.config.clock_rate;
        RtcpStats {
            local: self
                .main_reception()
                .map(|reception| reception.summary(rate)),
            remote: self.about_us.map(|b| b.summary(rate)),
            ..self.stats.clone()
        }
    }

    /// The reception state of the peer's stream: the source heard from
    /// most recently that has not left (several only after an SSRC change).
    fn main_reception(&self) -> Option<&Reception> {
        self.remotes
            .values()
            .filter_map(|r| r.reception.as_ref().map(|rx| (r, rx)))
            .max_by_key(|(r, rx)| (!r.left, r.heard_since_report, rx.received()))
            .map(|(_, rx)| rx)
    }

    /// Expected and received packet counts of the peer's stream (§A.3),
    /// for a loss percentage.
    pub fn received_counts(&self) -> Option<(u64, u64)> {
        self.main_reception()
            .map(|r| (r.expected_count(), r.received()))
    }

    fn send_report(&mut self, now: Instant, bye: bool) {
        let packet = self.compound(now, bye);
        // §6.3.3: avg_rtcp_size = 1/16 · packet_size + 15/16 · avg_rtcp_size.
        let size = packet.len() as f64 + IP_UDP_OVERHEAD;
        self.timing.avg_rtcp_size += (size - self.timing.avg_rtcp_size) / 16.0;
        self.transmit.push_back(packet);
        self.stats.reports_sent += 1;
        self.new_interval();
    }

    /// After a report, the "since the last report" flags move one interval back.
    fn new_interval(&mut self) {
        self.sending.sent_before = std::mem::take(&mut self.sending.sent_since_report);
        for remote in self.remotes.values_mut() {
            remote.heard_before = std::mem::take(&mut remote.heard_since_report);
        }
    }

    fn we_sent(&self) -> bool {
        self.sending.sent_since_report || self.sending.sent_before
    }

    fn interval(&mut self) -> Duration {
        let others = self.remotes.values().filter(|r| !r.left);
        let members = 1 + others.clone().count();
        let senders = usize::from(self.we_sent())
            + others
                .filter(|r| r.heard_since_report || r.heard_before)
                .count();
        let inputs = IntervalInputs {
            members,
            senders,
            rtcp_bandwidth: self.config.session_bandwidth_bps / 8.0 * RTCP_BANDWIDTH_FRACTION,
            we_sent: self.we_sent(),
            avg_rtcp_size: self.timing.avg_rtcp_size,
            initial: self.timing.initial,
            min_interval: self.config.min_interval,
        };
        rtcp_interval(&inputs, &mut self.rng)
    }

    /// §6.1: SR or RR first, then SDES with our CNAME, then BYE if leaving.
    /// Building the blocks starts a new loss interval for each source.
    fn compound(&mut self, now: Instant, bye: bool) -> Bytes {
        let reports = self.report_blocks(now);
        let mut packets: Vec<Box<dyn Packet + Send + Sync>> = Vec::with_capacity(3);
        if self.we_sent() {
            packets.push(Box::new(SenderReport {
                ssrc: self.ssrc,
                ntp_time: self.ntp.ntp(now).0,
                rtp_time: self.rtp_time(now),
                packet_count: self.sending.packets,
                octet_count: self.sending.octets,
                reports,
                ..Default::default()
            }));
        } else {
            packets.push(Box::new(ReceiverReport {
                ssrc: self.ssrc,
                reports,
                ..Default::default()
            }));
        }
        packets.push(Box::new(SourceDescription {
            chunks: vec![SourceDescriptionChunk {
                source: self.ssrc,
                items: vec![SourceDescriptionItem {
                    sdes_type: SdesType::SdesCname,
                    text: Bytes::copy_from_slice(self.config.cname.as_bytes()),
                }],
            }],
        }));
        if bye {
            packets.push(Box::new(Goodbye {
                sources: vec![self.ssrc],
                reason: Bytes::new(),
            }));
        }
        rtcp::packet::marshal(&packets)
            .expect("our reports have at most 31 blocks and a CNAME under 256 octets")
    }

    /// §6.4.1: the RTP timestamp of `now` on our sampling clock.
    fn rtp_time(&self, now: Instant) -> u32 {
        let Some((ts, at)) = self.sending.clock else {
            return 0;
        };
        let elapsed = if now >= at {
            (now - at).as_nanos() as i128
        } else {
            -((at - now).as_nanos() as i128)
        };
        let units = elapsed * i128::from(self.config.clock_rate) / 1_000_000_000;
        ts.wrapping_add(units as u32)
    }

    /// One block per source heard since our last report (§6.4), with LSR
    /// and DLSR from its last SR.
    fn report_blocks(&mut self, now: Instant) -> Vec<ReceptionReport> {
        self.remotes
            .iter_mut()
            .filter(|(_, r)| r.heard_since_report)
            .filter_map(|(ssrc, r)| {
                let block = r.reception.as_mut()?.make_block();
                let (lsr, dlsr) = r.last_sr.map_or((0, 0), |(lsr, at)| {
                    (lsr, to_units_65536(now.saturating_duration_since(at)))
                });
                Some(ReceptionReport {
                    ssrc: *ssrc,
                    fraction_lost: block.fraction_lost,
                    total_lost: block.lost_field(),
                    last_sequence_number: block.highest_seq,
                    jitter: block.jitter,
                    last_sender_report: lsr,
                    delay: dlsr,
                })
            })
            .take(MAX_REPORT_BLOCKS)
            .collect()
    }
}

#[cfg(test)]
mod tests;
