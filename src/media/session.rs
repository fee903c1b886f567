//! The per-call media engine: one RTP audio stream in each direction.
//!
//! Sans-IO. The media driver owns the UDP socket and a 20 ms tick; it feeds
//! every datagram received on the socket to [`MediaSession::handle_datagram`],
//! calls [`MediaSession::push_capture`] with one frame of microphone audio and
//! [`MediaSession::pull_playback`] for one frame of speaker audio per tick,
//! and sends whatever [`MediaSession::poll_transmit`] returns from the same
//! socket (symmetric RTP, RFC 4961). The session never reads the clock: the
//! driver passes `now`.
//!
//! RTCP (RFC 3550 §6) rides along: [`MediaSession::handle_timeout`] (called
//! every tick) sends reports when due, RTCP datagrams received on either
//! socket go to [`MediaSession::handle_datagram`] like RTP, and
//! [`MediaSession::close`] sends BYE. Reports go out with the RTP datagrams
//! when RTCP is multiplexed (RFC 5761), else through
//! [`MediaSession::poll_transmit_rtcp`] for the RTCP socket.
//! [`MediaSession::stats`] adds what RTCP learnt and an E-model estimate of
//! the call's quality (ITU-T G.107, [`super::quality`]).
//!
//! NAT: RTP goes where the peer's RTP comes from once a source is
//! established ([`super::latch`]), not blindly to the SDP address; and while
//! nothing leaves the RTP socket (hold), a STUN Binding indication goes out
//! every [`MediaConfig::keepalive`] so the NAT keeps the binding
//! ([`super::keepalive`]).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::codec::opus::OpusConfig;
use super::codec::{CodecKind, Decoder, Encoder};
use super::dtmf::{BadDigit, DtmfReceiver, DtmfSender, Event};
use super::jitter::{Frame, JitterBuffer, JitterConfig};
use super::keepalive::{self, MediaKeepalive};
use super::latch::{Latch, Verdict};
use super::quality::{self, CodecImpairment, QualityInputs};
use super::rtcp::{RtcpConfig, RtcpSession, RtcpStats, SystemClock, WallClock, random_cname};
use super::rtp::{Kind, RtpPacket, RtpSender, classify};

/// Decoded frames quieter than this RMS level (about −45 dBFS) count as
/// silence, when the jitter buffer may drop or repeat frames unheard.
const SILENCE_RMS: i64 = 184;

/// What SDP negotiation decided for the audio stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaConfig {
    /// The codec both directions use.
    pub codec: CodecKind,
    /// Its payload type (static 0/8 for G.711, RFC 3551 §6).
    pub payload_type: u8,
    /// RTP clock rate in Hz.
    pub clock_rate: u32,
    /// Packetization time in milliseconds (`a=ptime`).
    pub ptime_ms: u32,
    /// Payload type of `telephone-event` (RFC 4733), if negotiated.
    pub telephone_event_pt: Option<u8>,
    /// Where to send RTP; `None` until known (or `c=0.0.0.0`).
    pub remote: Option<SocketAddr>,
    /// Where to send RTCP when not multiplexed: the peer's `a=rtcp`
    /// (RFC 3605) or RTP port + 1 (RFC 3550 §11).
    pub remote_rtcp: Option<SocketAddr>,
    /// RTCP shares the RTP port both ways (RFC 5761).
    pub rtcp_mux: bool,
    /// Whether we send (`sendrecv`/`sendonly`); false on hold.
    pub send: bool,
    /// Whether we play what we receive (`sendrecv`/`recvonly`).
    pub recv: bool,
    /// Bounds of the adaptive jitter buffer's delay.
    pub jitter: JitterConfig,
    /// Opus encoder settings (ours, limited by the peer's `a=fmtp`);
    /// ignored by other codecs.
    pub opus: OpusConfig,
    /// Send a STUN Binding indication on the RTP socket when nothing else
    /// has left it for this long (hold); `None` never.
    pub keepalive: Option<Duration>,
}

impl MediaConfig {
    /// A `sendrecv` configuration for `codec` at its static payload type
    /// and clock rate, 20 ms frames, no telephone-event, RTCP on the port
    /// after the remote RTP port.
    pub fn new(codec: CodecKind, remote: Option<SocketAddr>) -> Self {
        MediaConfig {
            codec,
            payload_type: codec.static_payload_type().unwrap_or(96),
            clock_rate: codec.clock_rate(),
            ptime_ms: 20,
            telephone_event_pt: None,
            remote,
            remote_rtcp: remote
                .map(|a| SocketAddr::new(a.ip(), a.port().wrapping_add(1)))
                .filter(|a| a.port() != 0),
            rtcp_mux: false,
            send: true,
            recv: true,
            jitter: JitterConfig::default(),
            opus: OpusConfig::default(),
            keepalive: Some(keepalive::DEFAULT_INTERVAL),
        }
    }

    /// Samples of PCM in one frame, at the codec's PCM rate (160 for
    /// G.711/20 ms, 960 for Opus/20 ms).
    pub fn pcm_frame_samples(&self) -> usize {
        (u64::from(self.codec.pcm_rate()) * u64::from(self.ptime_ms) / 1000) as usize
    }

    /// RTP timestamp units in one frame: ptime worth at the clock rate (160 for G.711/20 ms).
    pub fn frame_samples(&self) -> usize {
        (u64::from(self.clock_rate) * u64::from(self.ptime_ms) / 1000) as usize
    }
}

/// Counters of one session, for the `stats` command and JSON events.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MediaStats {
    /// RTP packets sent.
    pub packets_sent: u64,
    /// RTP packets of the stream received: the negotiated codec and RFC 4733
    /// telephone-events (duplicates and late included).
    pub packets_received: u64,
    /// RFC 3550 §A.3 cumulative number of packets lost.
    pub packets_lost: u64,
    /// Packets that arrived after their playout time.
    pub late: u64,
    /// Duplicate packets dropped.
    pub duplicates: u64,
    /// RFC 3550 §A.8 interarrival jitter, in milliseconds.
    pub jitter_ms: f64,
    /// Payload octets sent (RFC 3550 §6.4.1 sender's octet count).
    pub bytes_sent: u64,
    /// Payload octets received of the negotiated codec.
    pub bytes_received: u64,
    /// Frames played as concealment because no packet was due (and none
    /// could be recovered).
    pub concealed_frames: u64,
    /// Lost frames rebuilt from the next packet's in-band FEC (Opus,
    /// RFC 7587 §3.3); not counted in `concealed_frames`.
    pub fec_recovered: u64,
    /// RTCP datagrams received (see `rtcp` for what they said).
    pub rtcp_received: u64,
    /// STUN messages that reached the media session (ignored).
    pub stun_received: u64,
    /// RFC 4733 telephone-event packets received (not played yet).
    pub telephone_events_received: u64,
    /// RTP packets with a payload type we did not negotiate, dropped.
    pub unknown_payload_type: u64,
    /// Datagrams that were not well-formed RTP, or not RTP/RTCP/STUN at all.
    pub malformed: u64,
    /// RTP packets dropped because we are not receiving (`recv` false).
    pub ignored_not_receiving: u64,
    /// Times the jitter buffer stopped playout to buffer again.
    pub rebuffers: u64,
    /// Times the remote SSRC changed.
    pub ssrc_changes: u64,
    /// Where RTP goes when latching moved it away from the SDP address
    /// (the peer's RTP source, e.g. its NAT's public port).
    pub latched_to: Option<SocketAddr>,
    /// RTP packets refused because they came from another address than
    /// the established source (see `media::latch`).
    pub foreign_source: u64,
    /// STUN Binding indications sent to keep the NAT binding (hold).
    pub keepalives_sent: u64,
    /// Jitter-buffer delay of the frame played last, in milliseconds.
    pub jitter_buffer_ms: f64,
    /// Delay the adaptive jitter buffer aims at now, in milliseconds.
    pub jitter_target_ms: f64,
    /// Frames the jitter buffer grew by (concealment inserted).
    pub jitter_grown: u64,
    /// Frames the jitter buffer shrank by (silence dropped, or merged).
    pub jitter_shrunk: u64,
    /// RTCP: reports sent and received, round-trip time, and loss and
    /// jitter in both directions (RFC 3550 §6.4).
    pub rtcp: RtcpStats,
    /// Estimated quality of the audio we receive; `None` before any RTP
    /// has arrived.
    pub quality: Option<CallQuality>,
}

/// An ITU-T G.107 E-model estimate of the call as we hear it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CallQuality {
    /// Mean opinion score, 1.0–4.5 (G.107 Annex B).
    pub mos: f64,
    /// Transmission rating factor R.
    pub r_factor: f64,
    /// Mouth-to-ear delay assumed: half the RTT (0 while unknown), the
    /// jitter buffer and one packet.
    pub one_way_delay_ms: f64,
    /// Packets lost in the network or too late to play, in percent.
    pub loss_percent: f64,
}

/// Why DTMF cannot be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DtmfError {
    #[error("the peer did not negotiate telephone-event")]
    NotNegotiated,
    #[error(transparent)]
    BadDigit(#[from] BadDigit),
}

/// One call's audio stream; see the module documentation.
pub struct MediaSession {
    config: MediaConfig,
    sender: RtpSender,
    encoder: Box<dyn Encoder>,
    decoder: Box<dyn Decoder>,
    jitter: JitterBuffer,
    transmit: VecDeque<(SocketAddr, Bytes)>,
    /// Reused encode buffer, so sending does not allocate per frame.
    payload: Vec<u8>,
    /// Next packet starts a talk spurt (RFC 3551 §4.1 marker bit).
    talk_spurt: bool,
    last_source: Option<SocketAddr>,
    stats: MediaStats,
    dtmf_out: DtmfSender,
    dtmf_in: DtmfReceiver,
    rtcp: RtcpSession,
    /// RTCP datagrams for the RTCP socket (not multiplexed).
    rtcp_transmit: VecDeque<(SocketAddr, Bytes)>,
    /// Whether the last decoded frame was speech (not silence).
    voice: bool,
    /// Decoded frames of a [`Frame::Merge`], reused.
    merge: Vec<i16>,
    /// Where RTP really comes from (symmetric RTP latching).
    latch: Latch,
    /// The SDP address the latch was learnt for.
    latch_sdp: Option<SocketAddr>,
    /// The RTP socket's NAT keep-alive timer.
    keepalive: MediaKeepalive,
    /// Something was queued on the RTP socket since the last
    /// [`MediaSession::handle_timeout`].
    sent_since_timeout: bool,
    /// Transaction IDs of keep-alives.
    rng: StdRng,
}

impl std::fmt::Debug for MediaSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaSession")
            .field("config", &self.config)
            .field("ssrc", &self.sender.ssrc())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl MediaSession {
    /// A session for `config` starting at `now`; SSRC, first sequence
    /// number and timestamp come from `rng` (RFC 3550 §5.1). RTCP uses a
    /// random CNAME, the 5 s minimum interval and the system's wall clock.
    pub fn new(config: MediaConfig, rng: &mut (impl Rng + ?Sized), now: Instant) -> Self {
        let rtcp = RtcpConfig::new(random_cname(rng), config.clock_rate);
        MediaSession::with_rtcp(config, rtcp, &SystemClock, rng, now)
    }

    /// A session with explicit RTCP settings and wall clock (NTP time of the
    /// sender reports).
    pub fn with_rtcp(
        config: MediaConfig,
        rtcp: RtcpConfig,
        clock: &dyn WallClock,
        rng: &mut (impl Rng + ?Sized),
        now: Instant,
    ) -> Self {
        let sender = RtpSender::new(config.payload_type, rng);
        let rtcp_config = RtcpConfig {
            clock_rate: config.clock_rate,
            ..rtcp
        };
        let rtcp = RtcpSession::new(sender.ssrc(), rtcp_config, clock, rng, now);
        MediaSession {
            sender,
            rtcp,
            rtcp_transmit: VecDeque::new(),
            encoder: new_encoder(&config),
            decoder: config.codec.new_decoder(),
            jitter: new_jitter_buffer(&config),
            transmit: VecDeque::new(),
            payload: Vec::with_capacity(config.frame_samples()),
            talk_spurt: true,
            last_source: None,
            stats: MediaStats::default(),
            dtmf_out: DtmfSender::default(),
            dtmf_in: DtmfReceiver::default(),
            voice: true,
            merge: Vec::new(),
            latch: Latch::new(),
            latch_sdp: config.remote,
            keepalive: MediaKeepalive::new(config.keepalive, now),
            sent_since_timeout: false,
            rng: StdRng::seed_from_u64(rng.random()),
            config,
        }
    }

    /// Queues DTMF digits to send as RFC 4733 telephone-events with the
    /// negotiated payload type.
    pub fn send_dtmf(&mut self, digits: &str) -> Result<(), DtmfError> {
        if self.config.telephone_event_pt.is_none() {
            return Err(DtmfError::NotNegotiated);
        }
        self.dtmf_out.queue(digits).map_err(DtmfError::BadDigit)
    }

    /// The next DTMF digit received.
    pub fn poll_dtmf(&mut self) -> Option<char> {
        self.dtmf_in.poll()
    }

    /// Sends this frame's telephone-event packets instead of audio; false
    /// when no event is due.
    fn push_dtmf(&mut self, remote: SocketAddr, samples: u32) -> bool {
        let Some(pt) = self.config.telephone_event_pt else {
            return false;
        };
        let ts = self.sender.next_timestamp();
        let packets = self
            .dtmf_out
            .next_frame(ts, samples, self.config.clock_rate);
        if packets.is_empty() {
            return false;
        }
        for p in packets {
            let datagram = self
                .sender
                .packetize_at(pt, p.timestamp, &p.payload, p.marker);
            self.stats.packets_sent += 1;
            self.rtcp.on_rtp_sent(p.payload.len());
            self.queue_rtp(remote, datagram);
        }
        self.sender.skip(samples);
        self.talk_spurt = true;
        true
    }

    /// The configuration in force.
    pub fn config(&self) -> &MediaConfig {
        &self.config
    }

    /// Our SSRC.
    pub fn ssrc(&self) -> u32 {
        self.sender.ssrc()
    }

    /// Source address of the last RTP packet accepted, for the socket owner's
    /// symmetric-RTP latching.
    pub fn last_source(&self) -> Option<SocketAddr> {
        self.last_source
    }

    /// Takes in one datagram received on the media socket and says what it
    /// was, so the caller can hand STUN to its NAT code.
    pub fn handle_datagram(&mut self, data: &[u8], from: SocketAddr, now: Instant) -> Kind {
        let kind = classify(data);
        match kind {
            Kind::Rtp => self.handle_rtp(data, from, now),
            Kind::Rtcp => {
                self.stats.rtcp_received += 1;
                match self.rtcp.handle_packet(data, now) {
                    Err(error) => tracing::debug!(%from, %error, "dropping RTCP"),
                    // RFC 3550 §6.4: the first packet of a compound (SR or
                    // RR) carries the sender's SSRC in bytes 4–7.
                    Ok(_) if !self.config.rtcp_mux => {
                        if let Some(ssrc) = data.get(4..8) {
                            let ssrc = u32::from_be_bytes([ssrc[0], ssrc[1], ssrc[2], ssrc[3]]);
                            self.latch.handle_rtcp(from, ssrc);
                        }
                    }
                    Ok(_) => {}
                }
            }
            Kind::Stun => self.stats.stun_received += 1,
            Kind::Other => self.stats.malformed += 1,
        }
        kind
    }

    fn handle_rtp(&mut self, data: &[u8], from: SocketAddr, now: Instant) {
        let packet = match RtpPacket::parse(data) {
            Ok(packet) => packet,
            Err(error) => {
                tracing::debug!(%from, %error, "dropping malformed RTP");
                self.stats.malformed += 1;
                return;
            }
        };
        let audio = packet.payload_type == self.config.payload_type;
        let event = Some(packet.payload_type) == self.config.telephone_event_pt;
        if (audio || event) && !self.latch_rtp(from, packet.ssrc, now) {
            return;
        }
        if audio || event {
            // RFC 4733 events share the stream's sequence numbers, so they
            // count for loss; their timestamps do not count for jitter.
            self.rtcp.on_rtp_received(
                packet.ssrc,
                packet.sequence_number,
                packet.timestamp,
                audio,
                now,
            );
        }
        if event {
            self.stats.telephone_events_received += 1;
            self.dtmf_in
                .push(packet.ssrc, packet.timestamp, &packet.payload);
            if self.config.recv
                && let Some(e) = Event::decode(&packet.payload)
            {
                // RFC 4733 §2.1: the event stands in for the audio, so the
                // jitter buffer sees no gap and counts no loss.
                self.jitter
                    .push_event(&packet, u32::from(e.duration), e.end, now);
            }
            return;
        }
        if packet.payload_type != self.config.payload_type {
            self.stats.unknown_payload_type += 1;
            return;
        }
        if !self.config.recv {
            self.stats.ignored_not_receiving += 1;
            return;
        }
        self.last_source = Some(from);
        self.stats.bytes_received += packet.payload.len() as u64;
        self.jitter.push(&packet, now);
    }

    /// Symmetric RTP latching ([`super::latch`]); false when the packet
    /// must be dropped (a stranger while a live source is established).
    fn latch_rtp(&mut self, from: SocketAddr, ssrc: u32, now: Instant) -> bool {
        match self.latch.handle_rtp(from, ssrc, now) {
            Verdict::Accept => true,
            Verdict::Latched(to) => {
                if Some(to) != self.config.remote {
                    tracing::info!(
                        "RTP comes from {to}, not from the SDP's {}: sending there",
                        self.config
                            .remote
                            .map_or_else(|| "(none)".to_string(), |a| a.to_string())
                    );
                }
                true
            }
            Verdict::Refuse => {
                self.stats.foreign_source += 1;
                tracing::debug!(%from, "dropping RTP from a source other than the established one");
                false
            }
        }
    }

    /// Encodes one frame of captured audio and queues it for the remote, if
    /// we send and know where to. Otherwise the RTP timestamp still moves on
    /// and the next packet sent starts a talk spurt.
    pub fn push_capture(&mut self, pcm: &[i16]) {
        let samples = pcm.len() as u32;
        let Some(remote) = self.rtp_target().filter(|_| self.config.send) else {
            self.sender.skip(samples);
            self.talk_spurt = true;
            return;
        };
        if self.push_dtmf(remote, samples) {
            return;
        }
        self.payload.clear();
        self.encoder.encode(pcm, &mut self.payload);
        if self.payload.is_empty() {
            // The codec could not code this frame (wrong size): send nothing.
            self.sender.skip(samples);
            return;
        }
        let datagram =
            self.sender
                .packetize(&self.payload, samples, std::mem::take(&mut self.talk_spurt));
        self.stats.packets_sent += 1;
        self.stats.bytes_sent += self.payload.len() as u64;
        self.rtcp.on_rtp_sent(self.payload.len());
        self.queue_rtp(remote, datagram);
    }

    /// Queues a datagram for the RTP socket.
    fn queue_rtp(&mut self, to: SocketAddr, datagram: Bytes) {
        self.sent_since_timeout = true;
        self.transmit.push_back((to, datagram));
    }

    /// Where RTP goes: the established source of the peer's RTP when
    /// latching found one, else the SDP address; `None` without one.
    fn rtp_target(&self) -> Option<SocketAddr> {
        self.config.remote.map(|sdp| self.latch.target(sdp))
    }

    /// Where non-multiplexed RTCP goes (see [`Latch::rtcp_target`]).
    fn rtcp_target(&self) -> Option<SocketAddr> {
        self.config
            .remote_rtcp
            .map(|sdp| self.latch.rtcp_target(sdp))
    }

    /// Where RTP goes now, when latching moved it away from the SDP address.
    pub fn latched_to(&self) -> Option<SocketAddr> {
        self.rtp_target().filter(|t| Some(*t) != self.config.remote)
    }

    /// Sends RTCP reports that are due (RFC 3550 §6.3). Call it after each
    /// frame of captured audio: our sampling clock then shows the
    /// timestamp of the next frame, which the sender report needs.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.rtcp.set_rtp_clock(self.sender.next_timestamp(), now);
        self.rtcp.handle_timeout(now);
        self.route_rtcp();
        self.on_timer_keepalive(now);
    }

    /// RFC 6263 §4.5: a STUN indication when nothing has left the RTP
    /// socket for the keep-alive interval.
    fn on_timer_keepalive(&mut self, now: Instant) {
        if std::mem::take(&mut self.sent_since_timeout) {
            self.keepalive.on_sent(now);
        }
        // With `c=0.0.0.0` (RFC 3264 §8.4) no media goes out, but the
        // binding towards the source we latched onto is still worth keeping.
        let Some(to) = self.rtp_target().or(self.latch.established()) else {
            return;
        };
        if self.keepalive.poll_due(now) {
            let msg = keepalive::binding_indication(&mut self.rng);
            self.stats.keepalives_sent += 1;
            self.transmit.push_back((to, Bytes::copy_from_slice(&msg)));
        }
    }

    /// When the next RTCP report is due (`None` after [`MediaSession::close`]).
    pub fn next_timeout(&self) -> Option<Instant> {
        self.rtcp.poll_timeout()
    }

    /// The call is over: RTCP BYE (RFC 3550 §6.6) goes out now.
    pub fn close(&mut self, now: Instant) {
        self.rtcp.set_rtp_clock(self.sender.next_timestamp(), now);
        self.rtcp.bye(now);
        self.route_rtcp();
    }

    /// Queues RTCP on the RTP port when multiplexed (RFC 5761), else for
    /// the RTCP socket; without a destination (hold with `c=0.0.0.0`)
    /// it is dropped.
    fn route_rtcp(&mut self) {
        while let Some(packet) = self.rtcp.poll_transmit() {
            if self.config.rtcp_mux {
                if let Some(to) = self.rtp_target() {
                    self.queue_rtp(to, packet);
                }
            } else if let Some(to) = self.rtcp_target() {
                self.rtcp_transmit.push_back((to, packet));
            }
        }
    }

    /// The next RTCP datagram for the RTCP socket (not multiplexed).
    pub fn poll_transmit_rtcp(&mut self) -> Option<(SocketAddr, Bytes)> {
        self.rtcp_transmit.pop_front()
    }

    /// The next datagram for the RTP socket (RTP, and RTCP when
    /// multiplexed) and its destination.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Bytes)> {
        self.transmit.pop_front()
    }

    /// One frame of audio to play (see [`MediaSession::pull_playback_into`]).
    pub fn pull_playback(&mut self, now: Instant) -> Vec<i16> {
        let mut out = Vec::with_capacity(self.config.pcm_frame_samples());
        self.pull_playback_into(now, &mut out);
        out
    }

    /// Appends exactly one frame (`pcm_frame_samples`) of audio to play now:
    /// decoded from the jitter buffer; for a missing packet, recovered from
    /// the next packet's FEC when that one is already here, else concealed;
    /// concealed too when the buffer grows, two frames crossfaded into one
    /// when it shrinks during speech; silence before playout starts or while
    /// not receiving.
    pub fn pull_playback_into(&mut self, now: Instant, out: &mut Vec<i16>) {
        let samples = self.config.pcm_frame_samples();
        let start = out.len();
        match self.jitter.pop(now) {
            Some(frame) if self.config.recv => self.play(frame, samples, out),
            _ => {}
        }
        // A peer with another ptime yields other frame sizes; the audio
        // device gets a steady frame size regardless.
        out.resize(start + samples, 0);
    }

    /// Turns one jitter-buffer frame into audio appended to `out`, and
    /// tells the buffer whether it was speech.
    fn play(&mut self, frame: Frame, samples: usize, out: &mut Vec<i16>) {
        let start = out.len();
        match frame {
            Frame::Audio { payload, .. } => {
                self.decoder.decode(&payload, out);
                self.note_voice(&out[start..]);
            }
            Frame::Pause { .. } => {
                // The peer sent telephone-events instead of audio, or
                // nothing at all, and no packet was lost: silence (a digit
                // is reported through `poll_dtmf`).
                out.resize(start + samples, 0);
                self.note_voice(&out[start..]);
            }
            Frame::Missing { .. } => {
                // RFC 7587 §3.3: the next packet's in-band FEC may rebuild it.
                let recovered = self
                    .jitter
                    .next_payload()
                    .is_some_and(|next| self.decoder.recover_from_next(next, samples, out));
                if recovered {
                    self.stats.fec_recovered += 1;
                } else {
                    self.stats.concealed_frames += 1;
                    self.decoder.conceal(samples, out);
                }
            }
            Frame::Stretch { .. } => {
                // In silence the stretch is silence too; during speech it
                // is concealment.
                if self.voice {
                    self.stats.concealed_frames += 1;
                }
                self.decoder.conceal(samples, out);
            }
            Frame::Merge { payload, next, .. } => {
                self.merge.clear();
                self.decoder.decode(&payload, &mut self.merge);
                let half = self.merge.len();
                self.decoder.decode(&next, &mut self.merge);
                let (first, second) = self.merge.split_at(half);
                crossfade(first, second, out);
                self.note_voice(&out[start..]);
            }
        }
    }

    fn note_voice(&mut self, pcm: &[i16]) {
        let energy: i64 = pcm.iter().map(|&s| i64::from(s) * i64::from(s)).sum();
        let n = pcm.len().max(1) as i64;
        self.voice = energy / n >= SILENCE_RMS * SILENCE_RMS;
        self.jitter.set_voice_activity(self.voice);
    }

    /// Applies a renegotiated configuration (re-INVITE): new remote address,
    /// hold (`send` false), codec or ptime change. The SSRC stays.
    pub fn update(&mut self, config: MediaConfig) {
        if config.codec != self.config.codec {
            self.encoder = new_encoder(&config);
            self.decoder = config.codec.new_decoder();
        } else if config.opus != self.config.opus {
            self.encoder = new_encoder(&config);
        }
        self.rtcp.set_clock_rate(config.clock_rate);
        if config.codec != self.config.codec
            || config.clock_rate != self.config.clock_rate
            || config.ptime_ms != self.config.ptime_ms
            || config.jitter != self.config.jitter
        {
            self.jitter = new_jitter_buffer(&config);
        }
        if config.remote != self.config.remote || (config.send && !self.config.send) {
            self.talk_spurt = true;
        }
        self.sender.set_payload_type(config.payload_type);
        // A new SDP address starts latching over; `c=0.0.0.0` (hold) and the
        // same address again keep what was learnt.
        if let Some(remote) = config.remote
            && Some(remote) != self.latch_sdp
        {
            self.latch.reset();
            self.latch_sdp = Some(remote);
        }
        if config.keepalive != self.config.keepalive {
            self.keepalive.set_interval(config.keepalive);
        }
        self.config = config;
    }

    /// Counters so far, what RTCP learnt, and the quality estimate.
    pub fn stats(&self) -> MediaStats {
        let jitter = self.jitter.stats();
        let mut stats = MediaStats {
            packets_received: jitter.received,
            packets_lost: jitter.lost,
            late: jitter.late,
            duplicates: jitter.duplicates,
            jitter_ms: jitter.jitter_seconds * 1000.0,
            rebuffers: jitter.rebuffers,
            ssrc_changes: jitter.restarts,
            latched_to: self.latched_to(),
            rtcp: self.rtcp.stats(),
            jitter_buffer_ms: jitter.delay_ms,
            jitter_target_ms: jitter.target_ms,
            jitter_grown: jitter.grown,
            jitter_shrunk: jitter.shrunk,
            ..self.stats.clone()
        };
        stats.quality = self.quality(&stats);
        stats
    }

    /// The E-model estimate (ITU-T G.107) for the audio we receive: loss is
    /// what RTCP counts as lost (§A.3) plus what arrived too late to play;
    /// the codec is taken with its concealment. Nothing received, nothing
    /// to rate.
    fn quality(&self, stats: &MediaStats) -> Option<CallQuality> {
        let (expected, received) = self.rtcp.received_counts()?;
        if received == 0 || expected == 0 {
            return None;
        }
        let lost = expected.saturating_sub(received) + stats.late;
        let loss_percent = (lost as f64 * 100.0 / expected as f64).min(100.0);
        let one_way_delay_ms = quality::one_way_delay_ms(
            stats.rtcp.rtt_ms.unwrap_or(0.0),
            stats.jitter_buffer_ms,
            f64::from(self.config.ptime_ms),
        );
        let inputs = QualityInputs::new(
            CodecImpairment::for_encoding(self.config.codec.encoding_name(), true),
            one_way_delay_ms,
            loss_percent,
        );
        Some(CallQuality {
            mos: quality::mos(&inputs),
            r_factor: quality::r_factor(&inputs),
            one_way_delay_ms,
            loss_percent,
        })
    }
}

/// The encoder for `config`; settings libopus refuses fall back to the
/// defaults (with a warning) rather than leaving the call mute.
fn new_encoder(config: &MediaConfig) -> Box<dyn Encoder> {
    config
        .codec
        .encoder_with(&config.opus)
        .unwrap_or_else(|error| {
            tracing::warn!(%error, "using the default Opus settings");
            config.codec.new_encoder()
        })
}

fn new_jitter_buffer(config: &MediaConfig) -> JitterBuffer {
    JitterBuffer::new(
        config.clock_rate,
        config.frame_samples() as u32,
        config.jitter,
    )
}

/// Fits two consecutive frames into the length of one: `first` fades out
/// while `second` fades in, sample by sample, so the result starts where
/// `first` starts and ends where `second` ends, without a step at either
/// boundary.
fn crossfade(first: &[i16], second: &[i16], out: &mut Vec<i16>) {
    let n = first.len().min(second.len());
    out.extend((0..n).map(|i| {
        let w = i as f32 / n as f32;
        (f32::from(first[i]) * (1.0 - w) + f32::from(second[i]) * w) as i16
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::signal::{ToneGenerator, dominant_frequency, rms_dbfs};
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use std::time::Duration;

    const MS: Duration = Duration::from_millis(1);

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn session(remote: Option<SocketAddr>, seed: u64, now: Instant) -> MediaSession {
        let mut config = MediaConfig::new(CodecKind::Pcmu, remote);
        config.telephone_event_pt = Some(101);
        MediaSession::new(config, &mut StdRng::seed_from_u64(seed), now)
    }

    fn drain(session: &mut MediaSession) -> Vec<(SocketAddr, Bytes)> {
        std::iter::from_fn(|| session.poll_transmit()).collect()
    }

    #[test]
    fn capture_is_sent_to_remote_with_marker_on_first_packet_only() {
        let t0 = Instant::now();
        let mut s = session(Some(addr(4002)), 1, t0);
        s.push_capture(&[0; 160]);
        s.push_capture(&[0; 160]);
        let sent = drain(&mut s);
        assert_eq!(sent.len(), 2);
        assert!(
            sent.iter()
                .all(|(to, d)| *to == addr(4002) && d.len() == 172)
        );
        let first = RtpPacket::parse(&sent[0].1).expect("valid RTP");
        let second = RtpPacket::parse(&sent[1].1).expect("valid RTP");
        assert!(first.marker && !second.marker);
        assert_eq!(first.payload_type, 0);
        assert_eq!(second.timestamp, first.timestamp.wrapping_add(160));
        assert!(first.payload.iter().all(|&b| b == 0xFF));
        let stats = s.stats();
        assert_eq!((stats.packets_sent, stats.bytes_sent), (2, 320));
    }

    #[test]
    fn nothing_is_sent_on_hold_or_without_remote_but_timestamp_advances() {
        let t0 = Instant::now();
        let mut s = session(None, 2, t0);
        s.push_capture(&[0; 160]);
        assert!(s.poll_transmit().is_none());
        let mut config = s.config().clone();
        config.remote = Some(addr(4002));
        s.update(config.clone());
        s.push_capture(&[0; 160]);
        let before_hold = RtpPacket::parse(&drain(&mut s)[0].1).expect("valid RTP");
        config.send = false;
        s.update(config.clone());
        s.push_capture(&[0; 160]);
        s.push_capture(&[0; 160]);
        assert!(s.poll_transmit().is_none());
        config.send = true;
        s.update(config);
        s.push_capture(&[0; 160]);
        let resumed = RtpPacket::parse(&drain(&mut s)[0].1).expect("valid RTP");
        assert!(resumed.marker, "resuming starts a talk spurt");
        assert_eq!(
            resumed.sequence_number,
            before_hold.sequence_number.wrapping_add(1)
        );
        assert_eq!(resumed.timestamp, before_hold.timestamp.wrapping_add(480));
    }

    #[test]
    fn update_redirects_packets_to_new_remote_and_keeps_ssrc() {
        let t0 = Instant::now();
        let mut s = session(Some(addr(4002)), 3, t0);
        let ssrc = s.ssrc();
        let mut config = s.config().clone();
        config.remote = Some(addr(5000));
        config.codec = CodecKind::Pcma;
        config.payload_type = 8;
        s.update(config);
        s.push_capture(&[0; 160]);
        let (to, datagram) = s.poll_transmit().expect("a packet");
        let packet = RtpPacket::parse(&datagram).expect("valid RTP");
        assert_eq!(to, addr(5000));
        assert_eq!((packet.ssrc, packet.payload_type), (ssrc, 8));
        assert!(packet.payload.iter().all(|&b| b == 0xD5));
    }

    #[test]
    fn datagrams_are_demultiplexed_and_foreign_payload_types_dropped() {
        let t0 = Instant::now();
        let mut rx = session(None, 4, t0);
        let mut tx = RtpSender::new(0, &mut StdRng::seed_from_u64(5));
        let from = addr(6000);
        assert_eq!(
            rx.handle_datagram(&tx.packetize(&[0xFF; 160], 160, true), from, t0),
            Kind::Rtp
        );
        tx.set_payload_type(101);
        rx.handle_datagram(&tx.packetize(&[1, 0, 0, 160], 0, true), from, t0);
        tx.set_payload_type(18);
        rx.handle_datagram(&tx.packetize(&[0; 20], 160, false), from, t0);
        let mut rr = vec![0x80, 201, 0, 1];
        rr.extend_from_slice(&[0; 4]);
        assert_eq!(rx.handle_datagram(&rr, from, t0), Kind::Rtcp);
        assert_eq!(
            rx.handle_datagram(
                &[
                    0, 1, 0, 0, 0x21, 0x12, 0xA4, 0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
                ],
                from,
                t0
            ),
            Kind::Stun
        );
        rx.handle_datagram(&[0x40; 30], from, t0);
        rx.handle_datagram(&[0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xBE], from, t0);
        let stats = rx.stats();
        // The audio packet and the telephone-event (RFC 4733 §2.1).
        assert_eq!(stats.packets_received, 2);
        assert_eq!(stats.bytes_received, 160);
        assert_eq!(stats.telephone_events_received, 1);
        assert_eq!(stats.unknown_payload_type, 1);
        assert_eq!(stats.rtcp_received, 1);
        assert_eq!(stats.stun_received, 1);
        assert_eq!(stats.malformed, 2);
        assert_eq!(rx.last_source(), Some(from));
    }

    #[test]
    fn playback_is_silence_before_playout_then_decoded_audio() {
        let t0 = Instant::now();
        let mut rx = session(None, 6, t0);
        assert_eq!(rx.pull_playback(t0), vec![0; 160]);
        let mut tx = RtpSender::new(0, &mut StdRng::seed_from_u64(7));
        rx.handle_datagram(&tx.packetize(&[0x80; 160], 160, true), addr(6000), t0);
        assert_eq!(rx.pull_playback(t0 + 20 * MS), vec![0; 160]);
        assert_eq!(rx.pull_playback(t0 + 60 * MS), vec![32124; 160]);
        let concealed = rx.pull_playback(t0 + 80 * MS);
        assert_eq!(concealed.len(), 160);
        assert!(concealed[0] > 0);
        assert_eq!(rx.stats().concealed_frames, 1);
    }

    #[test]
    fn packets_are_ignored_while_not_receiving() {
        let t0 = Instant::now();
        let mut rx = session(None, 9, t0);
        let mut config = rx.config().clone();
        config.recv = false;
        rx.update(config);
        let mut tx = RtpSender::new(0, &mut StdRng::seed_from_u64(10));
        rx.handle_datagram(&tx.packetize(&[0x80; 160], 160, true), addr(6000), t0);
        assert_eq!(rx.pull_playback(t0 + 60 * MS), vec![0; 160]);
        let stats = rx.stats();
        assert_eq!(
            (stats.ignored_not_receiving, stats.packets_received),
            (1, 0)
        );
    }

    #[test]
    fn stats_serialize_to_json_with_documented_fields() {
        let s = session(None, 8, Instant::now());
        let json = serde_json::to_value(s.stats()).expect("stats serialize");
        for field in [
            "packets_sent",
            "packets_received",
            "packets_lost",
            "late",
            "duplicates",
            "jitter_ms",
            "bytes_sent",
            "bytes_received",
            "jitter_buffer_ms",
            "jitter_target_ms",
            "jitter_grown",
            "jitter_shrunk",
        ] {
            assert!(json.get(field).is_some(), "missing {field}");
        }
    }

    fn is_rtcp(d: &Bytes) -> bool {
        classify(d) == Kind::Rtcp
    }

    #[test]
    fn rtcp_goes_to_the_rtcp_port_unless_multiplexed_rfc5761() {
        let t0 = Instant::now();
        let mut s = session(Some(addr(4002)), 20, t0);
        assert_eq!(s.config().remote_rtcp, Some(addr(4003)));
        s.push_capture(&[0; 160]);
        drain(&mut s);
        s.close(t0 + 100 * MS);
        assert!(drain(&mut s).is_empty(), "no RTCP on the RTP socket");
        let (to, bye) = s.poll_transmit_rtcp().expect("BYE for the RTCP socket");
        assert_eq!(to, addr(4003));
        assert!(is_rtcp(&bye));
        assert_eq!(s.next_timeout(), None);

        let mut config = MediaConfig::new(CodecKind::Pcmu, Some(addr(4002)));
        config.rtcp_mux = true;
        let mut m = MediaSession::new(config, &mut StdRng::seed_from_u64(21), t0);
        m.close(t0);
        let sent = drain(&mut m);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, addr(4002));
        assert!(is_rtcp(&sent[0].1));
        assert!(m.poll_transmit_rtcp().is_none());
    }

    #[test]
    fn reports_flow_both_ways_and_give_rtt_and_a_quality_estimate() {
        let t0 = Instant::now();
        let (a_addr, b_addr) = (addr(40000), addr(40002));
        let new = |remote, seed| {
            let mut config = MediaConfig::new(CodecKind::Pcmu, Some(remote));
            config.rtcp_mux = true;
            let rtcp = RtcpConfig {
                min_interval: Duration::from_millis(500),
                ..RtcpConfig::new(format!("s{seed}"), 8000)
            };
            let clock = crate::media::rtcp::FixedClock(std::time::UNIX_EPOCH);
            MediaSession::with_rtcp(config, rtcp, &clock, &mut StdRng::seed_from_u64(seed), t0)
        };
        let mut a = new(b_addr, 22);
        let mut b = new(a_addr, 23);
        // 10 ms each way; every 25th packet from A is lost.
        let mut in_flight: Vec<(Instant, SocketAddr, Bytes)> = Vec::new();
        let mut sent_by_a = 0;
        for tick in 0..250u32 {
            let now = t0 + 20 * MS * tick;
            for (s, to) in [(&mut a, b_addr), (&mut b, a_addr)] {
                s.push_capture(&[0; 160]);
                s.handle_timeout(now);
                for (dest, d) in drain(s) {
                    assert_eq!(dest, to);
                    let rtp = !is_rtcp(&d);
                    if to == b_addr && rtp {
                        sent_by_a += 1;
                        if sent_by_a % 25 == 0 {
                            continue;
                        }
                    }
                    in_flight.push((now + 10 * MS, to, d));
                }
            }
            let due: Vec<_> = in_flight
                .iter()
                .filter(|(at, ..)| *at <= now)
                .cloned()
                .collect();
            in_flight.retain(|(at, ..)| *at > now);
            for (at, to, d) in due {
                let (rx, from) = if to == b_addr {
                    (&mut b, a_addr)
                } else {
                    (&mut a, b_addr)
                };
                rx.handle_datagram(&d, from, at);
            }
            a.pull_playback(now);
            b.pull_playback(now);
        }
        let (sa, sb) = (a.stats(), b.stats());
        for s in [&sa, &sb] {
            let rtt = s.rtcp.rtt_ms.expect("RTT measured");
            assert!((rtt - 20.0).abs() < 0.1, "RTT {rtt}");
            assert!(
                s.rtcp.reports_sent >= 5 && s.rtcp.reports_received >= 5,
                "{s:?}"
            );
        }
        // B lost 4 % of A's stream and says so; A sees B's stream complete.
        let local = sb.rtcp.local.expect("B's reception");
        assert_eq!(local.cumulative_lost, 9);
        let remote = sa.rtcp.remote.expect("B's report about A");
        assert!((8..=9).contains(&remote.cumulative_lost), "{remote:?}");
        assert_eq!(sa.rtcp.local.expect("A's reception").cumulative_lost, 0);
        // The E-model: 10 ms network + the buffer + a 20 ms packet, one way.
        let (qa, qb) = (
            sa.quality.clone().expect("A rated"),
            sb.quality.clone().expect("B rated"),
        );
        assert!(sa.jitter_buffer_ms > 0.0, "{sa:?}");
        let want = 10.0 + sa.jitter_buffer_ms + 20.0;
        assert!((qa.one_way_delay_ms - want).abs() < 0.1, "{qa:?} vs {want}");
        assert!(qa.mos > 4.3, "{qa:?}");
        assert!(
            (qb.loss_percent - 9.0 * 100.0 / 250.0).abs() < 1.0,
            "{qb:?}"
        );
        assert!(qb.mos < qa.mos - 0.2, "{qb:?}");
        // Nothing received: no rating.
        let silent = session(Some(addr(4002)), 24, t0);
        assert_eq!(silent.stats().quality, None);
    }

    /// A lossy network: drops, duplicates, random delay (hence reordering)
    /// and rare very late packets, all from a seeded RNG.
    struct Netem {
        rng: StdRng,
        in_flight: Vec<(Instant, SocketAddr, Bytes)>,
    }

    impl Netem {
        fn send(&mut self, now: Instant, to: SocketAddr, datagram: Bytes) {
            if self.rng.random_bool(0.05) {
                return;
            }
            let copies = if self.rng.random_bool(0.03) { 2 } else { 1 };
            for _ in 0..copies {
                let delay = if self.rng.random_bool(0.02) {
                    150
                } else {
                    self.rng.random_range(5..45)
                };
                self.in_flight
                    .push((now + MS * delay, to, datagram.clone()));
            }
        }

        fn deliver(&mut self, now: Instant) -> Vec<(SocketAddr, Bytes)> {
            let mut due: Vec<_> = Vec::new();
            self.in_flight.retain(|(at, to, d)| {
                if *at <= now {
                    due.push((*at, *to, d.clone()));
                    false
                } else {
                    true
                }
            });
            due.sort_by_key(|(at, _, _)| *at);
            due.into_iter().map(|(_, to, d)| (to, d)).collect()
        }
    }

    #[test]
    fn telephone_events_count_as_received_and_leave_no_gap_to_conceal() {
        // RFC 4733 §2.1: the events take the audio's sequence numbers.
        let t0 = Instant::now();
        let (a_addr, b_addr) = (addr(40010), addr(40012));
        let mut a = session(Some(b_addr), 20, t0);
        let mut b = session(Some(a_addr), 21, t0);
        let mut tone = ToneGenerator::new(1000.0, 0.5, 8000);
        let mut frame = [0i16; 160];
        let mut heard = Vec::new();
        let mut events_played = 0;
        for ms in (0..3000u32).step_by(10) {
            let now = t0 + MS * ms;
            if ms == 500 {
                a.send_dtmf("123").expect("telephone-event is negotiated");
            }
            if ms % 20 == 0 {
                tone.fill(&mut frame);
                a.push_capture(&frame);
                for (_, d) in drain(&mut a) {
                    b.handle_datagram(&d, a_addr, now);
                }
            } else {
                let before = heard.len();
                b.pull_playback_into(now, &mut heard);
                if heard[before..].iter().all(|&s| s == 0) && ms > 500 {
                    events_played += 1;
                }
            }
        }
        let digits: String = std::iter::from_fn(|| b.poll_dtmf()).collect();
        assert_eq!(digits, "123");
        let sent = a.stats();
        let stats = b.stats();
        assert!(stats.telephone_events_received >= 15, "{stats:?}");
        assert_eq!(stats.packets_received, sent.packets_sent, "{stats:?}");
        assert_eq!(stats.packets_lost, 0, "{stats:?}");
        assert_eq!(stats.concealed_frames, 0, "{stats:?}");
        assert_eq!(stats.late, 0, "{stats:?}");
        let quality = stats.quality.as_ref().expect("audio was received");
        assert_eq!(quality.loss_percent, 0.0, "{stats:?}");
        // The digits' frames play as silence, not as concealed tone.
        assert!(events_played >= 15, "{events_played} silent frames");
    }

    #[test]
    fn tones_cross_a_lossy_reordering_network_in_both_directions() {
        let t0 = Instant::now();
        let (a_addr, b_addr) = (addr(40000), addr(40002));
        let mut a = session(Some(b_addr), 10, t0);
        let mut b = session(Some(a_addr), 11, t0);
        let mut tone_a = ToneGenerator::new(1000.0, 0.5, 8000);
        let mut tone_b = ToneGenerator::new(440.0, 0.5, 8000);
        let mut net = Netem {
            rng: StdRng::seed_from_u64(12),
            in_flight: Vec::new(),
        };
        let (mut heard_by_a, mut heard_by_b) = (Vec::new(), Vec::new());
        let mut frame = [0i16; 160];
        for ms in 0..3000u32 {
            let now = t0 + MS * ms;
            if ms % 20 == 0 {
                tone_a.fill(&mut frame);
                a.push_capture(&frame);
                tone_b.fill(&mut frame);
                b.push_capture(&frame);
                for (to, d) in drain(&mut a).into_iter().chain(drain(&mut b)) {
                    net.send(now, to, d);
                }
            }
            for (to, d) in net.deliver(now) {
                let (rx, from) = if to == b_addr {
                    (&mut b, a_addr)
                } else {
                    (&mut a, b_addr)
                };
                rx.handle_datagram(&d, from, now);
            }
            if ms % 20 == 7 {
                a.pull_playback_into(now, &mut heard_by_a);
                b.pull_playback_into(now, &mut heard_by_b);
            }
        }
        // Skip the first 200 ms (buffering), measure one second.
        let window = 1600..1600 + 8000;
        let f_b = dominant_frequency(&heard_by_b[window.clone()], 8000);
        let f_a = dominant_frequency(&heard_by_a[window.clone()], 8000);
        assert!((f_b - 1000.0).abs() < 10.0, "B heard {f_b} Hz");
        assert!((f_a - 440.0).abs() < 4.4, "A heard {f_a} Hz");
        assert!(rms_dbfs(&heard_by_b[window]) > -12.0);

        let stats = b.stats();
        assert_eq!(a.stats().packets_sent, 150);
        assert!(stats.packets_lost > 0, "{stats:?}");
        assert!(stats.duplicates > 0, "{stats:?}");
        assert!(stats.late > 0, "{stats:?}");
        assert!(stats.concealed_frames > 0, "{stats:?}");
        assert!(stats.jitter_ms > 1.0 && stats.jitter_ms < 30.0, "{stats:?}");
    }

    #[test]
    fn jitter_buffer_bounds_from_the_config_set_the_playout_delay() {
        let t0 = Instant::now();
        let mut config = MediaConfig::new(CodecKind::Pcmu, None);
        config.jitter = JitterConfig::new(100 * MS, 200 * MS).expect("valid jitter-buffer bounds");
        let mut rx = MediaSession::new(config, &mut StdRng::seed_from_u64(20), t0);
        let mut tx = RtpSender::new(0, &mut StdRng::seed_from_u64(21));
        rx.handle_datagram(&tx.packetize(&[0x80; 160], 160, true), addr(6000), t0);
        // Playout starts a frame above the 100 ms minimum.
        assert_eq!(rx.pull_playback(t0 + 100 * MS), vec![0; 160]);
        assert_eq!(rx.pull_playback(t0 + 120 * MS), vec![32124; 160]);
        let stats = rx.stats();
        assert_eq!(
            (stats.jitter_buffer_ms, stats.jitter_target_ms),
            (120.0, 100.0)
        );
    }

    #[test]
    fn merge_crossfade_starts_like_the_first_frame_and_ends_like_the_second() {
        let mut tone = ToneGenerator::new(440.0, 0.5, 8000);
        let (mut a, mut b) = ([0i16; 160], [0i16; 160]);
        tone.fill(&mut a);
        tone.fill(&mut b);
        let mut out = vec![1];
        crossfade(&a, &b, &mut out);
        assert_eq!(out.len(), 161);
        assert_eq!(out[1], a[0]);
        assert!((i32::from(out[160]) - i32::from(b[159])).abs() < 300);
        // Never louder than the louder input.
        assert!(out[1..].iter().all(|&s| s.unsigned_abs() <= 16384));
    }

    /// Two minutes of talk spurts (4 s of tone, 1 s of silence) from a
    /// sender whose clock is off by `drift`, through two sessions.
    fn drift_call(drift: f64) {
        let t0 = Instant::now();
        let (a_addr, b_addr) = (addr(41000), addr(41002));
        let mut a = session(Some(b_addr), 30, t0);
        let mut b = session(Some(a_addr), 31, t0);
        let mut tone = ToneGenerator::new(440.0, 0.3, 8000);
        let mut rng = StdRng::seed_from_u64(32);
        let interval = Duration::from_secs_f64(0.020 / (1.0 + drift));
        let mut in_flight: VecDeque<(Instant, Bytes)> = VecDeque::new();
        let (mut frame, mut heard) = ([0i16; 160], Vec::new());
        let mut next_send = t0;
        let mut sent = 0u32;
        let mut at_10s = None;
        for tick in 0..6000u32 {
            let now = t0 + 20 * MS * tick;
            while next_send <= now {
                if (sent / 50) % 5 < 4 {
                    tone.fill(&mut frame);
                } else {
                    frame = [0; 160];
                }
                a.push_capture(&frame);
                for (_, d) in drain(&mut a) {
                    let delay = MS * rng.random_range(1..6);
                    in_flight.push_back((next_send + delay, d));
                }
                sent += 1;
                next_send += interval;
            }
            while in_flight.front().is_some_and(|(at, _)| *at <= now) {
                let (at, d) = in_flight.pop_front().expect("checked non-empty");
                b.handle_datagram(&d, a_addr, at);
            }
            b.pull_playback_into(now, &mut heard);
            if tick == 500 {
                at_10s = Some(b.stats().jitter_buffer_ms);
            }
        }
        let stats = b.stats();
        let at_10s = at_10s.expect("ran past 10 s");
        assert!(
            (stats.jitter_buffer_ms - at_10s).abs() <= 20.0,
            "drift {drift}: {at_10s} ms at 10 s, then {stats:?}"
        );
        assert!(stats.jitter_grown + stats.jitter_shrunk >= 5, "{stats:?}");
        assert!(stats.concealed_frames <= 3, "{stats:?}");
        assert_eq!(stats.late, 0, "{stats:?}");
        // The last full spurt still sounds like the tone.
        let spurt = &heard[heard.len() - 8000 * 5..heard.len() - 8000 * 2];
        let f = dominant_frequency(spurt, 8000);
        assert!((f - 440.0).abs() < 5.0, "{f}");
    }

    #[test]
    fn clock_drift_plus_0_1_pct_for_two_minutes_keeps_the_buffer_delay() {
        drift_call(0.001);
    }

    #[test]
    fn clock_drift_minus_0_1_pct_for_two_minutes_keeps_the_buffer_delay() {
        drift_call(-0.001);
    }

    #[test]
    fn opus_loss_is_recovered_from_fec_when_the_next_packet_is_buffered() {
        let t0 = Instant::now();
        let config = |remote| {
            let mut c = MediaConfig::new(CodecKind::Opus, remote);
            c.payload_type = 96;
            c
        };
        let mut tx =
            MediaSession::new(config(Some(addr(4002))), &mut StdRng::seed_from_u64(20), t0);
        let mut rx = MediaSession::new(config(None), &mut StdRng::seed_from_u64(21), t0);
        assert_eq!(tx.config().pcm_frame_samples(), 960);
        let mut tone = ToneGenerator::new(600.0, 0.5, 48000);
        let mut frame = [0i16; 960];
        let mut heard = Vec::new();
        for i in 0..100u32 {
            let now = t0 + MS * (20 * i);
            tone.fill(&mut frame);
            tx.push_capture(&frame);
            for (_, d) in drain(&mut tx) {
                // Packets 40 and 70 are lost on the way.
                if i != 40 && i != 70 {
                    rx.handle_datagram(&d, addr(4000), now);
                }
            }
            rx.pull_playback_into(now + MS * 5, &mut heard);
        }
        let stats = rx.stats();
        assert_eq!(stats.packets_lost, 2, "{stats:?}");
        assert_eq!(stats.fec_recovered, 2, "{stats:?}");
        assert_eq!(stats.concealed_frames, 0, "{stats:?}");
        assert_eq!(heard.len(), 100 * 960);
        let steady = &heard[20 * 960..];
        let f = dominant_frequency(steady, 48000);
        assert!((f - 600.0).abs() < 6.0, "heard {f} Hz");
        assert!(rms_dbfs(steady) > -12.0);
    }

    /// Sends `n` PCMU packets from `tx` to `rx` as if from `from`, 20 ms apart.
    fn feed(
        rx: &mut MediaSession,
        tx: &mut RtpSender,
        from: SocketAddr,
        n: usize,
        t: &mut Instant,
    ) {
        for _ in 0..n {
            rx.handle_datagram(&tx.packetize(&[0xFF; 160], 160, false), from, *t);
            *t += 20 * MS;
        }
    }

    #[test]
    fn rtp_is_sent_where_the_peers_rtp_comes_from_after_three_packets() {
        let mut t = Instant::now();
        let sdp = addr(4002);
        let nat = SocketAddr::from(([198, 51, 100, 65], 31000));
        let mut s = session(Some(sdp), 10, t);
        let mut peer = RtpSender::new(0, &mut StdRng::seed_from_u64(11));
        feed(&mut s, &mut peer, nat, 2, &mut t);
        s.push_capture(&[0; 160]);
        assert_eq!(drain(&mut s)[0].0, sdp, "the SDP address until latched");
        feed(&mut s, &mut peer, nat, 1, &mut t);
        s.push_capture(&[0; 160]);
        assert_eq!(drain(&mut s)[0].0, nat, "latched after the third packet");
        assert_eq!(s.stats().latched_to, Some(nat));
        assert_eq!(s.stats().packets_received, 3, "all three played");
    }

    #[test]
    fn a_strangers_rtp_is_neither_played_nor_latched_to() {
        let mut t = Instant::now();
        let sdp = addr(4002);
        let mut s = session(Some(sdp), 12, t);
        let mut peer = RtpSender::new(0, &mut StdRng::seed_from_u64(13));
        let mut stranger = RtpSender::new(0, &mut StdRng::seed_from_u64(14));
        feed(&mut s, &mut peer, sdp, 3, &mut t);
        for _ in 0..20 {
            feed(&mut s, &mut stranger, addr(6666), 1, &mut t);
            feed(&mut s, &mut peer, sdp, 1, &mut t);
        }
        s.push_capture(&[0; 160]);
        assert_eq!(drain(&mut s)[0].0, sdp);
        let stats = s.stats();
        assert_eq!(stats.foreign_source, 20);
        assert_eq!(stats.latched_to, None);
        assert_eq!(
            stats.ssrc_changes, 0,
            "the stranger's SSRC never reached the buffer"
        );
    }

    #[test]
    fn non_multiplexed_rtcp_goes_where_the_streams_rtcp_comes_from() {
        let mut t = Instant::now();
        let nat = SocketAddr::from(([198, 51, 100, 65], 31000));
        let nat_rtcp = SocketAddr::from(([198, 51, 100, 65], 31001));
        let mut s = session(Some(addr(4002)), 15, t);
        let mut peer = RtpSender::new(0, &mut StdRng::seed_from_u64(16));
        feed(&mut s, &mut peer, nat, 3, &mut t);
        // RFC 3550 §6.4.2: an RR with no report blocks from the peer's SSRC.
        let mut rr = vec![0x80, 201, 0, 1];
        rr.extend_from_slice(&peer.ssrc().to_be_bytes());
        assert_eq!(s.handle_datagram(&rr, nat_rtcp, t), Kind::Rtcp);
        assert_eq!(s.rtcp_target(), Some(nat_rtcp));
        // A renegotiated address starts over.
        let mut config = s.config().clone();
        config.remote = Some(addr(5000));
        config.remote_rtcp = Some(addr(5001));
        s.update(config);
        assert_eq!(s.rtp_target(), Some(addr(5000)));
        assert_eq!(s.rtcp_target(), Some(addr(5001)));
    }

    fn keepalives(sent: &[(SocketAddr, Bytes)]) -> usize {
        sent.iter()
            .filter(|(_, d)| classify(d) == Kind::Stun)
            .count()
    }

    #[test]
    fn on_hold_a_stun_keepalive_leaves_the_rtp_socket_every_interval() {
        let t0 = Instant::now();
        let mut s = session(Some(addr(4002)), 17, t0);
        let mut config = s.config().clone();
        config.send = false;
        s.update(config);
        let mut sent = Vec::new();
        let mut t = t0;
        // 61 s of hold, ticked every 20 ms with a fake clock.
        while t < t0 + Duration::from_secs(61) {
            t += 20 * MS;
            s.push_capture(&[0; 160]);
            s.handle_timeout(t);
            sent.extend(drain(&mut s));
        }
        assert_eq!(keepalives(&sent), 4, "at 15, 30, 45 and 60 s");
        assert_eq!(sent.len(), 4, "and nothing else on the RTP socket");
        assert!(sent.iter().all(|(to, _)| *to == addr(4002)));
        assert_eq!(s.stats().keepalives_sent, 4);
    }

    #[test]
    fn no_keepalive_while_rtp_or_multiplexed_rtcp_flows_or_when_turned_off() {
        let t0 = Instant::now();
        let mut s = session(Some(addr(4002)), 18, t0);
        let mut t = t0;
        let mut sent = Vec::new();
        while t < t0 + Duration::from_secs(40) {
            t += 20 * MS;
            s.push_capture(&[0; 160]);
            s.handle_timeout(t);
            sent.extend(drain(&mut s));
        }
        assert_eq!(keepalives(&sent), 0, "RTP flows");
        // On hold with RTCP on the RTP port: reports keep the binding.
        let mut config = s.config().clone();
        config.send = false;
        config.rtcp_mux = true;
        s.update(config.clone());
        sent.clear();
        while t < t0 + Duration::from_secs(100) {
            t += 20 * MS;
            s.handle_timeout(t);
            sent.extend(drain(&mut s));
        }
        assert!(sent.iter().any(|(_, d)| classify(d) == Kind::Rtcp));
        assert_eq!(keepalives(&sent), 0, "RTCP every ~5 s holds the binding");
        config.rtcp_mux = false;
        config.keepalive = None;
        s.update(config);
        sent.clear();
        while t < t0 + Duration::from_secs(160) {
            t += 20 * MS;
            s.handle_timeout(t);
            sent.extend(drain(&mut s));
        }
        assert!(sent.is_empty(), "keep-alives off");
    }

    #[test]
    fn a_hold_with_c_0_0_0_0_keeps_the_latch_and_its_keepalives() {
        let mut t = Instant::now();
        let nat = SocketAddr::from(([198, 51, 100, 65], 31000));
        let mut s = session(Some(addr(4002)), 19, t);
        let mut peer = RtpSender::new(0, &mut StdRng::seed_from_u64(20));
        feed(&mut s, &mut peer, nat, 3, &mut t);
        let mut config = s.config().clone();
        let resumed = config.clone();
        config.remote = None;
        config.remote_rtcp = None;
        config.send = false;
        s.update(config);
        let mut sent = Vec::new();
        let end = t + Duration::from_secs(16);
        while t < end {
            t += 20 * MS;
            s.handle_timeout(t);
            sent.extend(drain(&mut s));
        }
        assert_eq!(keepalives(&sent), 1);
        assert!(sent.iter().all(|(to, _)| *to == nat), "{sent:?}");
        // Resumed with the same SDP address: RTP goes to the latched source.
        s.update(resumed);
        s.push_capture(&[0; 160]);
        assert_eq!(drain(&mut s)[0].0, nat);
    }
}
