//! The tokio shell around [`UserAgent`]: it owns the SIP socket, one RTP
//! socket and one RTCP socket (RTP port + 1) per call, the media sessions
//! and the audio sources and sinks.
//!
//! One task runs the loop: `select!` on a SIP datagram, an RTP datagram, a
//! user command, the core's next deadline and the 20 ms media tick; feed
//! one input; drain the outputs; send. Other tasks reach it only through
//! [`Phone`]'s command channel and read its [`PhoneEvent`]s.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{Instant as TokioInstant, MissedTickBehavior};

use super::accounts::RegHandle;
use super::agent::{EndReason, UaConfig, UaEvent, UaOutput, UserAgent};
use super::call::{CallDirection, CallHandle, CallState};
use super::digest::Credentials;
use super::hold::HoldState;
use super::registration::RegistrationConfig;
use crate::media::audio::{AudioFormat, FrameResampler};
use crate::media::audio::{AudioSink, AudioSource};
use crate::media::codec::CodecKind;
use crate::media::codec::opus::OpusConfig;
use crate::media::jitter::JitterConfig;
use crate::media::rtcp::{DEFAULT_MIN_INTERVAL, RtcpConfig, SystemClock, random_cname};
use crate::media::session::{DtmfError, MediaConfig, MediaSession, MediaStats};
use crate::nat::keepalive::{KeepAlive, NatOutput};
use crate::nat::{NatEvent, NatOptions, NatSource};
use crate::sdp::{Direction, LocalMedia, NegotiatedMedia};
use crate::sip::{Uri, uri::Host};
use crate::transport::canonical_ip;
use crate::transport::udp::{MAX_DATAGRAM, UdpTransport};

/// Audio for one call.
pub struct MediaIo {
    pub source: Box<dyn AudioSource>,
    pub sink: Box<dyn AudioSink>,
}

/// Settings of the phone.
#[derive(Debug, Clone)]
pub struct PhoneConfig {
    /// Where the SIP socket binds (port 0: any).
    pub bind: SocketAddr,
    pub ua: UaConfig,
    /// Codecs in order of preference. They also fix the rate of every
    /// call's audio source and sink ([`AudioFormat::for_codecs`]).
    pub codecs: Vec<CodecKind>,
    /// Opus encoder settings (bitrate, complexity).
    pub opus: OpusConfig,
    /// Hang up a call when no RTP has arrived for this long after the
    /// first packet (the peer died); `None` disables it.
    pub rtp_timeout: Option<Duration>,
    /// While nothing leaves a call's RTP socket (hold), a STUN Binding
    /// indication goes out this often to keep its NAT binding; `None` never.
    pub media_keepalive: Option<Duration>,
    /// Bounds of each call's adaptive jitter buffer.
    pub jitter_buffer: JitterConfig,
    /// RTCP settings.
    pub rtcp: RtcpOptions,
}

/// RTCP settings of the phone (RFC 3550 §6, RFC 5761).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RtcpOptions {
    /// Minimum report interval (RFC 3550 §6.2: 5 s; shorter for tests).
    pub min_interval: Duration,
    /// Offer and accept RTCP multiplexed on the RTP port (RFC 5761).
    pub mux: bool,
}

impl Default for RtcpOptions {
    fn default() -> Self {
        RtcpOptions {
            min_interval: DEFAULT_MIN_INTERVAL,
            mux: true,
        }
    }
}

/// Commands to the phone task.
enum Command {
    Dial {
        target: String,
        io: MediaIo,
        /// Where to send the INVITE instead of the target's host (an
        /// outbound proxy or the registrar).
        next_hop: Option<String>,
        reply: oneshot::Sender<Result<CallHandle, DriverError>>,
    },
    Register {
        spec: RegisterSpec,
        reply: oneshot::Sender<Result<RegHandle, DriverError>>,
    },
    Unregister {
        reg: RegHandle,
        reply: oneshot::Sender<bool>,
    },
    Credentials(Option<Credentials>),
    Dtmf {
        call: CallHandle,
        digits: String,
        reply: oneshot::Sender<Result<(), DtmfError>>,
    },
    Answer {
        call: CallHandle,
        io: MediaIo,
        reply: oneshot::Sender<Result<(), DriverError>>,
    },
    Reject {
        call: CallHandle,
        status: u16,
    },
    Hangup {
        call: CallHandle,
    },
    Hold {
        call: CallHandle,
        hold: bool,
        reply: oneshot::Sender<Result<(), DriverError>>,
    },
    Mute {
        call: CallHandle,
        muted: bool,
        reply: oneshot::Sender<Result<(), DriverError>>,
    },
    Calls {
        reply: oneshot::Sender<Vec<CallInfo>>,
    },
    Transfer {
        call: CallHandle,
        target: String,
        reply: oneshot::Sender<Result<(), DriverError>>,
    },
    /// Hold every other answered call we do not hold, and resume `call`
    /// if we hold it.
    Switch {
        call: CallHandle,
        reply: oneshot::Sender<Result<(), DriverError>>,
    },
    Stats {
        call: CallHandle,
        reply: oneshot::Sender<Option<MediaStats>>,
    },
    /// Finish the current work and end the task.
    Shutdown,
    /// Report every SIP message as [`PhoneEvent::SipTrace`] (or stop).
    Trace(bool),
    /// DTMF by SIP INFO (when RFC 4733 was not negotiated).
    InfoDtmf {
        call: CallHandle,
        digits: String,
        reply: oneshot::Sender<Result<(), DriverError>>,
    },
    /// Re-register now.
    RefreshRegistration {
        reg: RegHandle,
        reply: oneshot::Sender<bool>,
    },
    /// Start NAT discovery (STUN on the SIP socket) and keep-alives.
    StartNat {
        opts: NatOptions,
        reply: oneshot::Sender<Option<NatEvent>>,
    },
    /// Replace a call's audio source and/or sink (another device).
    SetAudio {
        call: CallHandle,
        source: Option<Box<dyn AudioSource>>,
        sink: Option<Box<dyn AudioSink>>,
        reply: oneshot::Sender<Result<(), DriverError>>,
    },
}

/// What to register (RFC 3261 §10.2).
#[derive(Debug, Clone)]
pub struct RegisterSpec {
    /// Address of record.
    pub aor: String,
    /// Registrar URI (Request-URI of the REGISTER).
    pub registrar: String,
    /// Outbound proxy URI: REGISTERs go there with a Route header.
    pub outbound_proxy: Option<String>,
    pub expires: u32,
    /// RFC 5626 instance id (`urn:uuid:…`); `None`: no outbound.
    pub instance: Option<String>,
}

/// What the phone reports.
// A few events per call: the size of the statistics in `CallEnded` does not
// matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum PhoneEvent {
    Ua(UaEvent),
    /// A call ended; media counters for it when it had media.
    CallEnded {
        call: CallHandle,
        reason: EndReason,
        stats: Option<MediaStats>,
        codec: Option<CodecKind>,
    },
    /// The call's audio source has nothing more to play.
    SourceFinished {
        call: CallHandle,
    },
    /// The audio sink failed (e.g. the disk is full); the call goes on.
    SinkError {
        call: CallHandle,
        detail: String,
    },
    /// No RTP for the configured time: the call is being hung up.
    MediaTimeout {
        call: CallHandle,
        silent_for: Duration,
    },
    /// A DTMF digit arrived as an RFC 4733 telephone-event.
    Dtmf {
        call: CallHandle,
        digit: char,
    },
    /// A SIP message sent or received while tracing is on
    /// ([`Phone::set_trace`]); Authorization values are masked.
    SipTrace {
        sent: bool,
        peer: SocketAddr,
        text: String,
    },
}

/// One call as [`Phone::calls`] lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct CallInfo {
    pub call: CallHandle,
    /// Who started it.
    pub direction: CallDirection,
    pub state: CallState,
    /// The other party (name-addr text).
    pub peer: String,
    /// Time since the answer (None before it).
    pub duration: Option<Duration>,
    /// The negotiated codec, once media is negotiated.
    pub codec: Option<CodecKind>,
    /// Our negotiated media direction (RFC 3264 §6.1).
    pub media_direction: Option<Direction>,
    /// Who holds whom (RFC 3264 §8.4).
    pub hold: HoldState,
    /// Our captured audio is replaced by silence.
    pub muted: bool,
}

/// Errors the shell reports.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("cannot bind {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("cannot resolve {host}: {detail}")]
    Resolve { host: String, detail: String },
    #[error("{target:?} is not a SIP URI with a host")]
    BadTarget { target: String },
    #[error("{0}")]
    Ua(#[from] super::agent::UaError),
    #[error("the phone task has stopped")]
    Stopped,
    #[error("{target:?}: {what} is not supported (sipline speaks SIP over UDP)")]
    Unsupported { target: String, what: String },
    #[error("cannot send to {dest}: {reason}")]
    Unreachable {
        dest: SocketAddr,
        reason: &'static str,
    },
}

/// An outgoing media datagram handed to the tap of
/// [`Phone::start_with_rtp_tap`] instead of being sent: the holder of the
/// receiving end sends `datagram` to `dest` from `socket` (the call's own
/// media socket) when it likes, or drops it.
#[derive(Debug)]
pub struct TappedDatagram {
    pub socket: Arc<UdpSocket>,
    pub dest: SocketAddr,
    pub datagram: Bytes,
}

/// Where a phone started with [`Phone::start_with_rtp_tap`] sends its media.
pub type RtpTap = mpsc::UnboundedSender<TappedDatagram>;

/// Handle to a running phone.
pub struct Phone {
    commands: mpsc::UnboundedSender<Command>,
    local: SocketAddr,
    task: JoinHandle<()>,
}

impl Phone {
    /// Binds the SIP socket and starts the phone task. Returns the phone and
    /// the stream of its events.
    pub async fn start(
        cfg: PhoneConfig,
    ) -> Result<(Phone, mpsc::UnboundedReceiver<PhoneEvent>), DriverError> {
        Self::start_with_rtp_tap(cfg, None).await
    }

    /// Like [`Phone::start`], but every outgoing media datagram goes to `tap`
    /// instead of the socket (see [`TappedDatagram`]). `sipline loopback`
    /// uses it to put an emulated network between two phones.
    pub async fn start_with_rtp_tap(
        cfg: PhoneConfig,
        tap: Option<RtpTap>,
    ) -> Result<(Phone, mpsc::UnboundedReceiver<PhoneEvent>), DriverError> {
        let sip = UdpTransport::bind(cfg.bind)
            .await
            .map_err(|source| DriverError::Bind {
                addr: cfg.bind,
                source,
            })?;
        let local = sip.local_addr();
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let mut ua_cfg = cfg.ua.clone();
        ua_cfg.local_port = local.port();
        let template = LocalMedia {
            addr: advertised_ip(local.ip(), None),
            rtp_port: 0,
            rtcp_port: None,
            rtcp_mux: cfg.rtcp.mux,
            codecs: cfg.codecs.clone(),
            telephone_event: true,
            direction: Direction::SendRecv,
            ptime_ms: 20,
        };
        let ua = UserAgent::new(ua_cfg.clone(), template.clone());
        let driver = Driver {
            ua,
            sip,
            template,
            commands: cmd_rx,
            events: ev_tx,
            calls: HashMap::new(),
            rtp: mpsc::unbounded_channel(),
            rng: StdRng::seed_from_u64(ua_cfg.seed ^ 0x5eed),
            route_cache: HashMap::new(),
            rtp_timeout: cfg.rtp_timeout,
            media_keepalive: cfg.media_keepalive,
            rtcp: cfg.rtcp,
            trace: false,
            pending_transfers: Vec::new(),
            jitter_buffer: cfg.jitter_buffer,
            audio: AudioFormat::for_codecs(&cfg.codecs),
            opus: cfg.opus,
            keepalive: KeepAlive::new(Duration::ZERO, ua_cfg.seed ^ 0x4b41),
            stun_server: None,
            media_stun: None,
            rtp_tap: tap,
        };
        let task = tokio::spawn(driver.run());
        Ok((
            Phone {
                commands: cmd_tx,
                local,
                task,
            },
            ev_rx,
        ))
    }

    /// The bound SIP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub async fn dial(&self, target: &str, io: MediaIo) -> Result<CallHandle, DriverError> {
        self.dial_via(target, io, None).await
    }

    /// Calls `target`, sending the INVITE to `next_hop` (a SIP URI) when
    /// given: the outbound proxy or the registrar of an account.
    pub async fn dial_via(
        &self,
        target: &str,
        io: MediaIo,
        next_hop: Option<String>,
    ) -> Result<CallHandle, DriverError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Dial {
                target: target.to_string(),
                io,
                next_hop,
                reply,
            })
            .map_err(|_| DriverError::Stopped)?;
        rx.await.map_err(|_| DriverError::Stopped)?
    }

    /// Sends DTMF digits in the call's RTP stream (RFC 4733).
    pub async fn send_dtmf(&self, call: CallHandle, digits: &str) -> Result<(), DtmfError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Dtmf {
                call,
                digits: digits.to_string(),
                reply,
            })
            .map_err(|_| DtmfError::NotNegotiated)?;
        rx.await.unwrap_or(Err(DtmfError::NotNegotiated))
    }

    /// The credentials used to answer challenges.
    pub fn set_credentials(&self, creds: Option<Credentials>) {
        let _ = self.commands.send(Command::Credentials(creds));
    }

    /// Starts a registration; its progress arrives as
    /// [`UaEvent::Registration`] events.
    pub async fn register(&self, spec: RegisterSpec) -> Result<RegHandle, DriverError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Register { spec, reply })
            .map_err(|_| DriverError::Stopped)?;
        rx.await.map_err(|_| DriverError::Stopped)?
    }

    /// Removes the registration's binding; false when there is none.
    pub async fn unregister(&self, reg: RegHandle) -> bool {
        let (reply, rx) = oneshot::channel();
        if self
            .commands
            .send(Command::Unregister { reg, reply })
            .is_err()
        {
            return false;
        }
        rx.await.unwrap_or(false)
    }

    pub async fn answer(&self, call: CallHandle, io: MediaIo) -> Result<(), DriverError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Answer { call, io, reply })
            .map_err(|_| DriverError::Stopped)?;
        rx.await.map_err(|_| DriverError::Stopped)?
    }

    pub fn reject(&self, call: CallHandle, status: u16) {
        let _ = self.commands.send(Command::Reject { call, status });
    }

    pub fn hangup(&self, call: CallHandle) {
        let _ = self.commands.send(Command::Hangup { call });
    }

    /// Sends DTMF digits as SIP INFO requests (`application/dtmf-relay`).
    pub async fn send_info_dtmf(&self, call: CallHandle, digits: &str) -> Result<(), DriverError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::InfoDtmf {
                call,
                digits: digits.to_string(),
                reply,
            })
            .map_err(|_| DriverError::Stopped)?;
        rx.await.map_err(|_| DriverError::Stopped)?
    }

    /// Replaces the audio source and/or sink of a live call (e.g. another
    /// sound device); the old sink is finished (a WAV recording is
    /// completed).
    pub async fn set_audio(
        &self,
        call: CallHandle,
        source: Option<Box<dyn AudioSource>>,
        sink: Option<Box<dyn AudioSink>>,
    ) -> Result<(), DriverError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::SetAudio {
                call,
                source,
                sink,
                reply,
            })
            .map_err(|_| DriverError::Stopped)?;
        rx.await.map_err(|_| DriverError::Stopped)?
    }

    /// NAT traversal: asks the STUN server of `opts` (if any) for our
    /// public SIP address before anything else is sent — Contacts and SDP
    /// then carry it — and starts keep-alives towards every registrar
    /// (and the STUN server) every `opts.keepalive`. Returns what the STUN
    /// request found (`None` without a STUN server). Call it right after
    /// [`Phone::start`], before registering or calling.
    pub async fn start_nat(&self, opts: NatOptions) -> Result<Option<NatEvent>, DriverError> {
        self.request(|reply| Command::StartNat { opts, reply })
            .await
    }

    /// Turns the [`PhoneEvent::SipTrace`] events on or off.
    pub fn set_trace(&self, on: bool) {
        let _ = self.commands.send(Command::Trace(on));
    }

    /// Sends a refreshing REGISTER now; false when the registration is
    /// not bound or a REGISTER is outstanding.
    pub async fn refresh_registration(&self, reg: RegHandle) -> bool {
        let (reply, rx) = oneshot::channel();
        if self
            .commands
            .send(Command::RefreshRegistration { reg, reply })
            .is_err()
        {
            return false;
        }
        rx.await.unwrap_or(false)
    }

    /// Puts `call` on hold: returns once the re-INVITE (`a=sendonly`, or
    /// `a=inactive` when the peer holds us) is sent; the outcome arrives as
    /// [`UaEvent::Held`] or [`UaEvent::HoldFailed`]. While held, the call
    /// neither reads its audio source nor writes its sink (RFC 3264 §8.4).
    pub async fn hold(&self, call: CallHandle) -> Result<(), DriverError> {
        self.request(|reply| Command::Hold {
            call,
            hold: true,
            reply,
        })
        .await?
    }

    /// Takes `call` off hold (`a=sendrecv` re-INVITE); the outcome arrives
    /// as [`UaEvent::Resumed`] or [`UaEvent::HoldFailed`].
    pub async fn resume(&self, call: CallHandle) -> Result<(), DriverError> {
        self.request(|reply| Command::Hold {
            call,
            hold: false,
            reply,
        })
        .await?
    }

    /// Mutes (or unmutes) `call`: our captured audio is replaced by
    /// silence, the RTP stream goes on.
    pub async fn mute(&self, call: CallHandle, muted: bool) -> Result<(), DriverError> {
        self.request(|reply| Command::Mute { call, muted, reply })
            .await?
    }

    /// Blind transfer (RFC 5589 §6): asks the peer of `call` to call
    /// `target` (REFER, RFC 3515). Returns once the REFER is sent; progress
    /// arrives as [`UaEvent::Transfer`] events, and on success the call is
    /// hung up. Put the call on hold first if the peer should hear nothing
    /// meanwhile.
    pub async fn transfer(&self, call: CallHandle, target: &str) -> Result<(), DriverError> {
        self.request(|reply| Command::Transfer {
            call,
            target: target.to_string(),
            reply,
        })
        .await?
    }

    /// Call waiting: answers `call` after putting every other answered
    /// call on hold (the `hold` re-INVITEs go out first). [`Phone::answer`]
    /// leaves other calls alone.
    pub async fn answer_waiting(&self, call: CallHandle, io: MediaIo) -> Result<(), DriverError> {
        self.request(|reply| Command::Switch { call, reply })
            .await??;
        self.answer(call, io).await
    }

    /// Call waiting: makes `call` the active one: every other answered
    /// call we do not hold yet is put on hold, and `call` is resumed if we
    /// hold it. Only calls already answered are touched.
    pub async fn switch(&self, call: CallHandle) -> Result<(), DriverError> {
        self.request(|reply| Command::Switch { call, reply })
            .await?
    }

    /// Every live call with its state, peer, duration, codec and direction,
    /// oldest first.
    pub async fn calls(&self) -> Vec<CallInfo> {
        self.request(|reply| Command::Calls { reply })
            .await
            .unwrap_or_default()
    }

    /// The media statistics of `call` so far: counters, RTCP (round-trip
    /// time, loss and jitter both ways) and the E-model quality estimate;
    /// `None` without media or call.
    pub async fn stats(&self, call: CallHandle) -> Option<MediaStats> {
        self.request(|reply| Command::Stats { call, reply })
            .await
            .ok()
            .flatten()
    }

    /// Sends a command carrying a reply channel and waits for the reply.
    async fn request<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, DriverError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(make(reply))
            .map_err(|_| DriverError::Stopped)?;
        rx.await.map_err(|_| DriverError::Stopped)
    }

    /// Stops the phone task once everything queued so far has been sent
    /// (calls should have ended first).
    pub async fn shutdown(self) {
        let _ = self.commands.send(Command::Shutdown);
        let mut task = self.task;
        if tokio::time::timeout(Duration::from_secs(2), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}

/// The address peers should use to reach a socket bound to `bound`: the
/// bound address itself, or, for a wildcard bind, the source address the
/// kernel would pick towards `peer` (no packet is sent), else loopback.
pub fn advertised_ip(bound: IpAddr, peer: Option<SocketAddr>) -> IpAddr {
    if !bound.is_unspecified() {
        return canonical_ip(bound);
    }
    let probe = |peer: SocketAddr| -> Option<IpAddr> {
        let any: SocketAddr = match peer {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let s = std::net::UdpSocket::bind(any).ok()?;
        s.connect(peer).ok()?;
        s.local_addr().ok().map(|a| canonical_ip(a.ip()))
    };
    match peer.and_then(|p| probe(SocketAddr::new(canonical_ip(p.ip()), p.port()))) {
        Some(ip) => ip,
        None if bound.is_ipv6() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        None => IpAddr::V4(Ipv4Addr::LOCALHOST),
    }
}

/// Media state of one call in the shell.
struct CallMedia {
    socket: Arc<UdpSocket>,
    /// The RTCP socket (RTP port + 1); unused when RTCP is multiplexed.
    rtcp_socket: Option<Arc<UdpSocket>>,
    rtcp_receiver: Option<JoinHandle<()>>,
    local_ip: IpAddr,
    io: MediaIo,
    session: Option<MediaSession>,
    receiver: JoinHandle<()>,
    frame: Vec<i16>,
    playback: Vec<i16>,
    source_finished: bool,
    sink_failed: bool,
    /// When the last RTP packet arrived (None before the first one).
    last_rtp: Option<std::time::Instant>,
    /// Hung up by us: no more audio in or out while the BYE completes.
    stopped: bool,
    /// Send silence instead of the captured audio.
    muted: bool,
    /// Our direction from the last offer/answer (RFC 3264 §6.1).
    negotiated: Option<Direction>,
    /// This call was placed for a transfer and took over the audio of
    /// that call; it goes back there if the new call fails.
    took_io_from: Option<CallHandle>,
    /// Rate conversion when the codec's PCM rate is not the source/sink
    /// rate (a G.711 call on 48 kHz audio); `None` when they match.
    edge: Option<RateEdge>,
}

/// Resampling between a call's audio rate and its codec's PCM rate, at the
/// edge of the media path (the session only sees the codec's rate).
struct RateEdge {
    /// (codec PCM rate, ptime) this edge was made for.
    key: (u32, u32),
    capture: FrameResampler,
    playback: FrameResampler,
    /// One captured frame at the codec's rate.
    codec_frame: Vec<i16>,
    /// One decoded frame at the codec's rate.
    decoded: Vec<i16>,
}

impl RateEdge {
    /// An edge for `config` on audio at `io_rate`, or `None` when the codec
    /// already runs at that rate.
    fn for_config(io_rate: u32, config: &MediaConfig) -> Option<RateEdge> {
        let codec_rate = config.codec.pcm_rate();
        if codec_rate == io_rate {
            return None;
        }
        let io_frame = AudioFormat::with_ptime(io_rate, config.ptime_ms).frame_samples;
        let made = FrameResampler::new(io_rate, codec_rate, io_frame).and_then(|capture| {
            let playback = FrameResampler::new(codec_rate, io_rate, config.pcm_frame_samples())?;
            Ok(RateEdge {
                key: (codec_rate, config.ptime_ms),
                capture,
                playback,
                codec_frame: Vec::new(),
                decoded: Vec::new(),
            })
        });
        made.inspect_err(|e| tracing::warn!("no rate conversion for this call: {e}"))
            .ok()
    }
}

impl Drop for CallMedia {
    fn drop(&mut self) {
        self.receiver.abort();
        if let Some(r) = &self.rtcp_receiver {
            r.abort();
        }
    }
}

type RtpChannel = (
    mpsc::UnboundedSender<(CallHandle, Vec<u8>, SocketAddr)>,
    mpsc::UnboundedReceiver<(CallHandle, Vec<u8>, SocketAddr)>,
);

struct Driver {
    ua: UserAgent,
    sip: UdpTransport,
    template: LocalMedia,
    commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<PhoneEvent>,
    calls: HashMap<CallHandle, CallMedia>,
    rtp: RtpChannel,
    rng: StdRng,
    /// Local address used towards each peer address (wildcard binds).
    route_cache: HashMap<IpAddr, IpAddr>,
    rtp_timeout: Option<Duration>,
    media_keepalive: Option<Duration>,
    rtcp: RtcpOptions,
    /// Report SIP messages as events.
    trace: bool,
    /// REFERs accepted whose new call is still to be placed:
    /// (original call, target).
    pending_transfers: Vec<(CallHandle, String)>,
    jitter_buffer: JitterConfig,
    /// Rate of every call's audio source and sink.
    audio: AudioFormat,
    opus: OpusConfig,
    /// Keep-alives of the SIP socket's NAT bindings (RFC 5626 §3.5).
    keepalive: KeepAlive,
    /// The STUN server, also asked for each call's RTP/RTCP mapping.
    stun_server: Option<SocketAddr>,
    /// Where each call's RTP/RTCP sockets are mapped: the STUN server, once
    /// the start-up request showed we are behind a NAT; cleared after a
    /// failure so that later calls are not held up.
    media_stun: Option<SocketAddr>,
    /// Outgoing media goes here instead of the socket, when set.
    rtp_tap: Option<RtpTap>,
}

impl Driver {
    async fn run(mut self) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
        let mut idle = true;
        loop {
            let deadline = [self.ua.next_timeout(), self.keepalive.poll_timeout()]
                .into_iter()
                .flatten()
                .min()
                .map(TokioInstant::from_std);
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = self.sip.recv(&mut buf) => match r {
                    Ok((n, from)) => self.on_sip_datagram(&buf[..n], from),
                    Err(e) => tracing::debug!("SIP socket: {e}"),
                },
                cmd = self.commands.recv() => match cmd {
                    Some(Command::Shutdown) | None => break,
                    Some(cmd) => self.on_command(cmd).await,
                },
                Some((call, data, from)) = self.rtp.1.recv() => {
                    if let Some(m) = self.calls.get_mut(&call)
                        && let Some(s) = m.session.as_mut() {
                            let now = std::time::Instant::now();
                            if s.handle_datagram(&data, from, now) == crate::media::rtp::Kind::Rtp {
                                m.last_rtp = Some(now);
                            }
                            while let Some(digit) = s.poll_dtmf() {
                                let _ = self.events.send(PhoneEvent::Dtmf { call, digit });
                            }
                        }
                }
                _ = sleep => {
                    let now = std::time::Instant::now();
                    self.ua.handle_timeout(now);
                    self.keepalive.handle_timeout(now);
                }
                _ = tick.tick(), if !self.calls.is_empty() => self.on_media_tick(),
            }
            self.drain().await;
            while !self.pending_transfers.is_empty() {
                self.place_transfer_calls().await;
                self.drain().await;
            }
            self.send_media().await;
            // The tick is disabled while there are no calls; restart it so
            // that a new call does not get a burst of missed ticks.
            if self.calls.is_empty() {
                idle = true;
            } else if idle {
                idle = false;
                tick.reset();
            }
        }
    }

    /// Logs a SIP datagram at trace level and, while tracing is on,
    /// reports it as an event; credentials are masked either way.
    fn trace_sip(&self, sent: bool, peer: SocketAddr, data: &[u8]) {
        trace_sip(if sent { "sent to" } else { "received from" }, peer, data);
        if self.trace {
            let text = super::digest::mask_message(&String::from_utf8_lossy(data));
            let _ = self.events.send(PhoneEvent::SipTrace { sent, peer, text });
        }
    }

    /// RFC 7983 §7: the SIP socket also carries STUN (first byte 0–3) and
    /// CRLF keep-alives; SIP messages start with a letter.
    fn on_sip_datagram(&mut self, data: &[u8], from: SocketAddr) {
        if crate::nat::is_stun(data) {
            if !self.keepalive.handle_stun(data, from) {
                tracing::debug!("STUN datagram from {from} not for us: dropped");
            }
            return;
        }
        if !data.is_empty() && data.iter().all(|b| *b == b'\r' || *b == b'\n') {
            // RFC 5626 §4.4.1: a CRLF pong (or ping); nothing to do.
            return;
        }
        self.trace_sip(false, from, data);
        let local_ip = self.local_ip_towards(from);
        self.ua
            .handle_datagram(data, from, local_ip, std::time::Instant::now());
    }

    /// Start-up STUN request on the SIP socket (nobody else reads it yet)
    /// and the keep-alive settings.
    async fn start_nat(&mut self, opts: NatOptions) -> Option<NatEvent> {
        let now = std::time::Instant::now();
        self.keepalive = KeepAlive::new(opts.keepalive, self.rng.random());
        let spec = opts.stun.as_deref()?;
        let bound = self.sip.local_addr();
        let server = match crate::nat::resolve_server(spec, bound).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("{e}");
                return None;
            }
        };
        self.stun_server = Some(server);
        let local = SocketAddr::new(advertised_ip(bound.ip(), Some(server)), bound.port());
        let found = crate::nat::discover(
            self.sip.socket(),
            server,
            crate::nat::stun::DEFAULT_RTO,
            crate::nat::DISCOVERY_LIMIT,
        )
        .await;
        let public = found
            .as_ref()
            .ok()
            .map(|a| SocketAddr::new(canonical_ip(a.ip()), a.port()));
        self.keepalive.set_stun_server(server, public, now);
        let behind_nat = public.map(|p| p != local);
        if let Some(p) = public
            && behind_nat == Some(true)
        {
            self.ua.learn_public_address(p, NatSource::Stun, now);
            self.media_stun = Some(server);
        }
        Some(NatEvent::Discovered {
            local,
            public,
            server,
            behind_nat,
            error: found.err().map(|e| e.to_string()),
        })
    }

    /// Our address as `peer` sees it, cached per peer address.
    fn local_ip_towards(&mut self, peer: SocketAddr) -> IpAddr {
        let bound = self.sip.local_addr().ip();
        if !bound.is_unspecified() {
            return canonical_ip(bound);
        }
        if self.route_cache.len() > 1024 {
            self.route_cache.clear();
        }
        *self
            .route_cache
            .entry(peer.ip())
            .or_insert_with(|| advertised_ip(bound, Some(peer)))
    }

    async fn on_command(&mut self, cmd: Command) {
        let now = std::time::Instant::now();
        match cmd {
            Command::Dial {
                target,
                io,
                next_hop,
                reply,
            } => {
                let r = self.dial(&target, io, next_hop.as_deref()).await;
                let _ = reply.send(r);
            }
            Command::Register { spec, reply } => {
                let r = self.register(spec).await;
                let _ = reply.send(r);
            }
            Command::Unregister { reg, reply } => {
                let _ = reply.send(self.ua.unregister(reg, now));
            }
            Command::Credentials(c) => self.ua.set_credentials(c),
            Command::Dtmf {
                call,
                digits,
                reply,
            } => {
                let r = match self.calls.get_mut(&call).and_then(|m| m.session.as_mut()) {
                    Some(s) => s.send_dtmf(&digits),
                    None => Err(DtmfError::NotNegotiated),
                };
                let _ = reply.send(r);
            }
            Command::Answer { call, io, reply } => {
                let r = self.answer(call, io, now).await;
                let _ = reply.send(r);
            }
            Command::Reject { call, status } => {
                if let Err(e) = self.ua.reject(call, status, now) {
                    tracing::warn!("reject: {e}");
                }
            }
            Command::Hangup { call } => self.hangup(call, now),
            Command::Hold { call, hold, reply } => {
                let r = if hold {
                    self.ua.hold(call, now)
                } else {
                    self.ua.resume(call, now)
                };
                let _ = reply.send(r.map_err(DriverError::from));
            }
            Command::Mute { call, muted, reply } => {
                let r = match self.calls.get_mut(&call) {
                    Some(m) => {
                        m.muted = muted;
                        Ok(())
                    }
                    None => Err(super::agent::UaError::NoSuchCall { call }.into()),
                };
                let _ = reply.send(r);
            }
            Command::Transfer {
                call,
                target,
                reply,
            } => {
                let r = self.ua.transfer(call, &target, now);
                let _ = reply.send(r.map_err(DriverError::from));
            }
            Command::Switch { call, reply } => {
                let _ = reply.send(self.switch(call, now));
            }
            Command::Calls { reply } => {
                let _ = reply.send(self.call_infos(now));
            }
            Command::Stats { call, reply } => {
                let stats = self
                    .calls
                    .get(&call)
                    .and_then(|m| m.session.as_ref())
                    .map(|s| s.stats());
                let _ = reply.send(stats);
            }
            Command::Shutdown => {}
            Command::Trace(on) => self.trace = on,
            Command::InfoDtmf {
                call,
                digits,
                reply,
            } => {
                let r = self.ua.send_info_dtmf(call, &digits, now);
                let _ = reply.send(r.map_err(DriverError::from));
            }
            Command::RefreshRegistration { reg, reply } => {
                let _ = reply.send(self.ua.refresh_registration(reg, now));
            }
            Command::StartNat { opts, reply } => {
                let r = self.start_nat(opts).await;
                let _ = reply.send(r);
            }
            Command::SetAudio {
                call,
                source,
                sink,
                reply,
            } => {
                let r = match self.calls.get_mut(&call) {
                    Some(m) => {
                        if let Some(src) = source {
                            m.io.source = src;
                            m.source_finished = false;
                        }
                        if let Some(snk) = sink {
                            let mut old = std::mem::replace(&mut m.io.sink, snk);
                            if let Err(e) = old.finish() {
                                tracing::warn!("finishing audio output: {e}");
                            }
                            m.sink_failed = false;
                        }
                        Ok(())
                    }
                    None => Err(super::agent::UaError::NoSuchCall { call }.into()),
                };
                let _ = reply.send(r);
            }
        }
    }

    /// Holds every other confirmed call we do not hold, then resumes
    /// `call` if we hold it.
    fn switch(&mut self, call: CallHandle, now: std::time::Instant) -> Result<(), DriverError> {
        if self.ua.call_state(call).is_none() {
            return Err(super::agent::UaError::NoSuchCall { call }.into());
        }
        for other in self.ua.call_handles() {
            let active = self.ua.call_state(other) == Some(CallState::Confirmed)
                && self.ua.hold_state(other).is_some_and(|h| !h.local);
            if other != call && active {
                self.ua.hold(other, now)?;
            }
        }
        if self.ua.hold_state(call).is_some_and(|h| h.local) {
            self.ua.resume(call, now)?;
        }
        Ok(())
    }

    fn call_infos(&self, now: std::time::Instant) -> Vec<CallInfo> {
        self.ua
            .call_handles()
            .into_iter()
            .filter_map(|call| {
                let m = self.calls.get(&call);
                let config = m.and_then(|m| m.session.as_ref()).map(|s| s.config());
                Some(CallInfo {
                    call,
                    direction: self.ua.call_direction(call)?,
                    state: self.ua.call_state(call)?,
                    peer: self.ua.call_peer(call)?,
                    duration: self.ua.call_duration(call, now),
                    codec: config.map(|c| c.codec),
                    media_direction: m.and_then(|m| m.negotiated),
                    hold: self.ua.hold_state(call)?,
                    muted: m.is_some_and(|m| m.muted),
                })
            })
            .collect()
    }

    async fn dial(
        &mut self,
        target: &str,
        io: MediaIo,
        next_hop: Option<&str>,
    ) -> Result<CallHandle, DriverError> {
        check_udp_target(target)?;
        if let Some(hop) = next_hop {
            check_udp_target(hop)?;
        }
        let dest = resolve_uri(next_hop.unwrap_or(target), self.sip.local_addr()).await?;
        check_destination(dest, self.sip.local_addr())?;
        let local_ip = advertised_ip(self.sip.local_addr().ip(), Some(dest));
        let (media, local) = self.open_media(local_ip, io).await?;
        let call = self
            .ua
            .dial(target, dest, local, std::time::Instant::now())?;
        self.calls.insert(call, self.spawn_receiver(call, media));
        Ok(call)
    }

    /// Transferee: places the calls asked for by accepted REFERs. The new
    /// call takes over the original call's audio (the user keeps talking
    /// on the same device); a failure is reported in a final NOTIFY.
    async fn place_transfer_calls(&mut self) {
        for (original, target) in std::mem::take(&mut self.pending_transfers) {
            let now = std::time::Instant::now();
            let placed = self.place_transfer_call(original, &target).await;
            if let Err(e) = placed {
                tracing::warn!("transfer to {target}: {e}");
                let (status, reason) = match e {
                    DriverError::Resolve { .. } => (404, "Not Found"),
                    DriverError::BadTarget { .. } | DriverError::Unsupported { .. } => {
                        (400, "Bad Request")
                    }
                    _ => (503, "Service Unavailable"),
                };
                self.ua.refer_failed(original, status, reason, now);
            }
        }
    }

    async fn place_transfer_call(
        &mut self,
        original: CallHandle,
        target: &str,
    ) -> Result<(), DriverError> {
        check_udp_target(target)?;
        let dest = resolve_uri(target, self.sip.local_addr()).await?;
        check_destination(dest, self.sip.local_addr())?;
        let local_ip = advertised_ip(self.sip.local_addr().ip(), Some(dest));
        let io = match self.calls.get_mut(&original) {
            Some(m) => std::mem::replace(
                &mut m.io,
                MediaIo {
                    source: Box::new(crate::media::audio::NullSource),
                    sink: Box::new(crate::media::audio::NullSink),
                },
            ),
            None => MediaIo {
                source: Box::new(crate::media::audio::NullSource),
                sink: Box::new(crate::media::audio::NullSink),
            },
        };
        let (media, local) = self.open_media(local_ip, io).await?;
        let call =
            self.ua
                .dial_referred(original, target, dest, local, std::time::Instant::now())?;
        let mut m = self.spawn_receiver(call, media);
        m.took_io_from = Some(original);
        self.calls.insert(call, m);
        Ok(())
    }

    async fn register(&mut self, spec: RegisterSpec) -> Result<RegHandle, DriverError> {
        let first_hop = spec.outbound_proxy.as_deref().unwrap_or(&spec.registrar);
        let dest = resolve_uri(first_hop, self.sip.local_addr()).await?;
        let local_ip = self.local_ip_towards(dest);
        let route = spec.outbound_proxy.iter().map(|p| loose_route(p)).collect();
        // RFC 5626 §3.5: keep the flow to the first hop open.
        self.keepalive.add_target(dest, std::time::Instant::now());
        let cfg = RegistrationConfig {
            aor: spec.aor,
            registrar: spec.registrar,
            expires: spec.expires,
            route,
            instance: spec.instance,
        };
        Ok(self
            .ua
            .register(cfg, dest, local_ip, std::time::Instant::now()))
    }

    async fn answer(
        &mut self,
        call: CallHandle,
        io: MediaIo,
        now: std::time::Instant,
    ) -> Result<(), DriverError> {
        let local_ip = self
            .ua
            .call_local_ip(call)
            .ok_or(super::agent::UaError::NoSuchCall { call })?;
        let (media, local) = self.open_media(local_ip, io).await?;
        self.ua.answer(call, local, now)?;
        self.calls.insert(call, self.spawn_receiver(call, media));
        Ok(())
    }

    /// Binds the call's RTP socket on an even port and its RTCP socket on
    /// the next one (RFC 3550 §11).
    async fn open_media(
        &mut self,
        local_ip: IpAddr,
        io: MediaIo,
    ) -> Result<(PendingMedia, LocalMedia), DriverError> {
        let bind_ip = if self.sip.local_addr().ip().is_unspecified() {
            self.sip.local_addr().ip()
        } else {
            local_ip
        };
        let (socket, rtcp_socket) = bind_rtp_rtcp_pair(bind_ip).await?;
        let port = socket.local_addr().map(|a| a.port()).unwrap_or(0);
        let rtcp_port = rtcp_socket
            .as_ref()
            .and_then(|s| s.local_addr().ok())
            .map(|a| a.port());
        let mut local = LocalMedia {
            addr: local_ip,
            rtp_port: port,
            rtcp_port,
            ..self.template.clone()
        };
        if let Some(server) = self.media_stun {
            self.map_media(server, &socket, rtcp_socket.as_ref(), &mut local)
                .await;
        }
        Ok((
            PendingMedia {
                socket: Arc::new(socket),
                rtcp_socket: rtcp_socket.map(Arc::new),
                local_ip,
                io,
            },
            local,
        ))
    }

    /// STUN on the call's RTP and RTCP sockets before their receive tasks
    /// start: when the NAT maps them elsewhere, the SDP names the public
    /// address and ports (`c=`, `m=`, `a=rtcp`), so the peer's media comes
    /// back through the mappings our own packets keep open.
    async fn map_media(
        &mut self,
        server: SocketAddr,
        rtp: &UdpSocket,
        rtcp: Option<&UdpSocket>,
        local: &mut LocalMedia,
    ) {
        use crate::nat::{MEDIA_DISCOVERY_LIMIT, discover, stun::DEFAULT_RTO};
        let rtp_public = match discover(rtp, server, DEFAULT_RTO, MEDIA_DISCOVERY_LIMIT).await {
            Ok(a) => SocketAddr::new(canonical_ip(a.ip()), a.port()),
            Err(e) => {
                tracing::warn!(
                    "RTP port mapping: {e}; the SDP names the local address, \
                     and later calls do not ask again"
                );
                self.media_stun = None;
                return;
            }
        };
        if rtp_public == SocketAddr::new(local.addr, local.rtp_port) {
            return;
        }
        let rtcp_public = match rtcp {
            Some(s) => discover(s, server, DEFAULT_RTO, MEDIA_DISCOVERY_LIMIT)
                .await
                .ok(),
            None => None,
        };
        tracing::info!(
            "media behind NAT: RTP {}:{} is {rtp_public} outside",
            local.addr,
            local.rtp_port
        );
        local.addr = rtp_public.ip();
        local.rtp_port = rtp_public.port();
        if let Some(r) = rtcp_public {
            local.rtcp_port = Some(r.port());
        }
    }

    /// Starts the tasks that forward datagrams from the call's RTP and RTCP
    /// sockets to the driver; the session tells RTP from RTCP itself.
    fn spawn_receiver(&self, call: CallHandle, p: PendingMedia) -> CallMedia {
        let receiver = self.spawn_socket_reader(call, p.socket.clone());
        let rtcp_receiver = p
            .rtcp_socket
            .as_ref()
            .map(|s| self.spawn_socket_reader(call, s.clone()));
        CallMedia {
            socket: p.socket,
            rtcp_socket: p.rtcp_socket,
            rtcp_receiver,
            local_ip: p.local_ip,
            io: p.io,
            session: None,
            receiver,
            frame: Vec::new(),
            playback: Vec::new(),
            source_finished: false,
            sink_failed: false,
            last_rtp: None,
            stopped: false,
            muted: false,
            negotiated: None,
            took_io_from: None,
            edge: None,
        }
    }

    fn spawn_socket_reader(&self, call: CallHandle, sock: Arc<UdpSocket>) -> JoinHandle<()> {
        let tx = self.rtp.0.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            loop {
                match sock.recv_from(&mut buf).await {
                    Ok((n, from)) => {
                        if tx.send((call, buf[..n].to_vec(), from)).is_err() {
                            break;
                        }
                    }
                    Err(e) => tracing::trace!("media socket: {e}"),
                }
            }
        })
    }

    /// Hangs up and stops the call's audio at once (the recording ends
    /// here, not when the BYE completes); RTCP BYE goes out first.
    fn hangup(&mut self, call: CallHandle, now: std::time::Instant) {
        if let Some(m) = self.calls.get_mut(&call) {
            m.stopped = true;
            send_rtcp_bye(m);
        }
        if let Err(e) = self.ua.hangup(call, now) {
            tracing::warn!("hangup: {e}");
        }
    }

    /// Calls whose peer has sent no RTP for longer than the timeout.
    fn check_rtp_timeouts(&mut self, now: std::time::Instant) {
        let Some(limit) = self.rtp_timeout else {
            return;
        };
        let dead: Vec<(CallHandle, Duration)> = self
            .calls
            .iter()
            .filter(|(_, m)| {
                // On hold either way the peer may rightly send nothing.
                !m.stopped
                    && m.session
                        .as_ref()
                        .is_some_and(|s| s.config().recv && s.config().send)
            })
            .filter_map(|(c, m)| {
                let silent = now.saturating_duration_since(m.last_rtp?);
                (silent > limit).then_some((*c, silent))
            })
            .collect();
        for (call, silent_for) in dead {
            tracing::warn!(
                "no RTP for {:.1} s: hanging up call {call}",
                silent_for.as_secs_f64()
            );
            let _ = self
                .events
                .send(PhoneEvent::MediaTimeout { call, silent_for });
            if let Some(m) = self.calls.get_mut(&call) {
                m.stopped = true;
                send_rtcp_bye(m);
            }
            self.ua.abandon(call, now);
        }
    }

    /// Every 20 ms: one frame from each call's source into its session, and
    /// one frame from its session into its sink; RTCP reports when due.
    fn on_media_tick(&mut self) {
        let now = std::time::Instant::now();
        self.check_rtp_timeouts(now);
        for (call, m) in self.calls.iter_mut() {
            if m.stopped {
                continue;
            }
            let Some(session) = m.session.as_mut() else {
                continue;
            };
            let n =
                AudioFormat::with_ptime(self.audio.rate, session.config().ptime_ms).frame_samples;
            m.frame.resize(n, 0);
            // RFC 3264 §8.4: a call on hold (either way) neither takes our
            // audio nor plays to our device; another call may use them.
            let (send, recv) = (session.config().send, session.config().recv);
            if send {
                m.io.source.read_frame(&mut m.frame);
                if m.muted {
                    m.frame.fill(0);
                }
            } else {
                m.frame.fill(0);
            }
            m.playback.clear();
            match m.edge.as_mut() {
                Some(edge) => {
                    edge.codec_frame.clear();
                    edge.capture.process(&m.frame, &mut edge.codec_frame);
                    session.push_capture(&edge.codec_frame);
                    session.handle_timeout(now);
                    edge.decoded.clear();
                    session.pull_playback_into(now, &mut edge.decoded);
                    edge.playback.process(&edge.decoded, &mut m.playback);
                }
                None => {
                    session.push_capture(&m.frame);
                    session.handle_timeout(now);
                    session.pull_playback_into(now, &mut m.playback);
                }
            }
            if m.io.source.is_finished() && !m.source_finished {
                m.source_finished = true;
                let _ = self.events.send(PhoneEvent::SourceFinished { call: *call });
            }
            if !recv {
                continue;
            }
            if let Err(e) = m.io.sink.write_frame(&m.playback)
                && !m.sink_failed
            {
                m.sink_failed = true;
                let _ = self.events.send(PhoneEvent::SinkError {
                    call: *call,
                    detail: e.to_string(),
                });
            }
        }
    }

    async fn send_media(&mut self) {
        for m in self.calls.values_mut() {
            let Some(session) = m.session.as_mut() else {
                continue;
            };
            while let Some((dest, pkt)) = session.poll_transmit() {
                if let Some(tap) = &self.rtp_tap {
                    let _ = tap.send(TappedDatagram {
                        socket: m.socket.clone(),
                        dest,
                        datagram: pkt,
                    });
                    continue;
                }
                if let Err(e) = m.socket.send_to(&pkt, dest).await {
                    tracing::debug!("RTP send to {dest}: {e}");
                }
            }
            let rtcp_socket = m.rtcp_socket.as_ref().unwrap_or(&m.socket);
            while let Some((dest, pkt)) = session.poll_transmit_rtcp() {
                if let Err(e) = rtcp_socket.send_to(&pkt, dest).await {
                    tracing::debug!("RTCP send to {dest}: {e}");
                }
            }
        }
    }

    async fn drain(&mut self) {
        let now = std::time::Instant::now();
        while let Some(o) = self.keepalive.poll_output() {
            match o {
                NatOutput::Transmit { dest, payload } => {
                    let t = crate::transport::Transmit { dest, payload };
                    if let Err(e) = self.sip.send(&t).await {
                        tracing::debug!("keep-alive to {dest}: {e}");
                    }
                }
                NatOutput::MappingChanged {
                    server,
                    previous,
                    current,
                } => {
                    tracing::info!(
                        "NAT mapping changed: {previous} -> {current} (seen by {server})"
                    );
                    let ev = NatEvent::MappingChanged {
                        server,
                        previous,
                        current,
                    };
                    let _ = self.events.send(PhoneEvent::Ua(UaEvent::Nat(ev)));
                    self.ua.learn_public_address(current, NatSource::Stun, now);
                }
                NatOutput::MappingLearnt { server, current } => {
                    tracing::info!("NAT keep-alive to {server}: our address is {current}");
                    if Some(server) != self.stun_server || self.ua.public_address().is_none() {
                        self.learn_if_nated(current, now);
                    }
                }
            }
        }
        while let Some(o) = self.ua.poll_output() {
            match o {
                UaOutput::Transmit(t) => {
                    self.trace_sip(true, t.dest, &t.payload);
                    if let Err(e) = self.sip.send(&t).await {
                        tracing::warn!("SIP send to {}: {e}", t.dest);
                    }
                }
                UaOutput::Event(e) => self.on_ua_event(e),
            }
        }
    }

    /// A STUN answer showed `public`: when it is not our own address we
    /// are behind a NAT and Contacts use it.
    fn learn_if_nated(&mut self, public: SocketAddr, now: std::time::Instant) {
        let bound = self.sip.local_addr();
        let ours =
            bound.ip() == public.ip() || self.route_cache.values().any(|ip| *ip == public.ip());
        if !(ours && bound.port() == public.port()) {
            self.ua.learn_public_address(public, NatSource::Stun, now);
        }
    }

    fn on_ua_event(&mut self, e: UaEvent) {
        match e {
            UaEvent::Media { call, ref media } => {
                self.open_pinholes(call, media);
                self.apply_media(call, media);
                let _ = self.events.send(PhoneEvent::Ua(e));
            }
            UaEvent::TransferRequested {
                call, ref target, ..
            } => {
                self.pending_transfers.push((call, target.clone()));
                let _ = self.events.send(PhoneEvent::Ua(e));
            }
            UaEvent::Ended { call, reason } => {
                let (stats, codec) = match self.calls.remove(&call) {
                    Some(mut m) => {
                        send_rtcp_bye(&mut m);
                        // A failed transfer call gives the audio back.
                        if let Some(orig) = m.took_io_from
                            && let Some(o) = self.calls.get_mut(&orig)
                        {
                            std::mem::swap(&mut o.io, &mut m.io);
                        }
                        if let Err(err) = m.io.sink.finish() {
                            tracing::warn!("finishing audio output: {err}");
                        }
                        let codec = m.session.as_ref().map(|s| s.config().codec);
                        (m.session.as_ref().map(|s| s.stats()), codec)
                    }
                    None => (None, None),
                };
                let _ = self.events.send(PhoneEvent::CallEnded {
                    call,
                    reason,
                    stats,
                    codec,
                });
            }
            other => {
                let _ = self.events.send(PhoneEvent::Ua(other));
            }
        }
    }

    /// Behind a NAT, opens the mappings of the call's RTP and RTCP sockets
    /// towards the peer at once, with an empty datagram (RFC 6263 §4.1),
    /// before the peer's first packets reach the NAT: a packet from the
    /// peer that arrives first is taken by the NAT for its own and makes it
    /// give our flow another public port than the one the SDP names.
    fn open_pinholes(&self, call: CallHandle, media: &NegotiatedMedia) {
        if self.ua.public_address().is_none() {
            return;
        }
        let Some(m) = self.calls.get(&call) else {
            return;
        };
        if let Some(rtp) = media.remote_rtp {
            let _ = m.socket.try_send_to(&[], rtp);
        }
        if let (Some(sock), Some(rtcp)) = (&m.rtcp_socket, media.remote_rtcp)
            && !media.rtcp_mux
        {
            let _ = sock.try_send_to(&[], rtcp);
        }
    }

    /// Starts or updates the call's media session for newly negotiated
    /// media (RFC 3264 §5, §8).
    fn apply_media(&mut self, call: CallHandle, media: &NegotiatedMedia) {
        let held_by_us = self.ua.hold_state(call).is_some_and(|h| h.local);
        let Some(m) = self.calls.get_mut(&call) else {
            return;
        };
        m.negotiated = Some(media.direction);
        let config = MediaConfig {
            codec: media.codec,
            payload_type: media.payload_type,
            clock_rate: media.clock_rate,
            ptime_ms: media.ptime_ms,
            telephone_event_pt: media.telephone_event,
            remote: media.remote_rtp,
            remote_rtcp: media.remote_rtcp,
            rtcp_mux: media.rtcp_mux,
            // While we hold the call (sendonly), we may send but do not:
            // the held party hears nothing from our device.
            send: media.direction.sends() && media.remote_rtp.is_some() && !held_by_us,
            recv: media.direction.recvs(),
            jitter: self.jitter_buffer,
            keepalive: self.media_keepalive,
            opus: media
                .opus
                .as_ref()
                .map_or(self.opus, |peer| self.opus.limited_by(peer)),
        };
        let key = (config.codec.pcm_rate(), config.ptime_ms);
        if m.edge.as_ref().map(|e| e.key) != Some(key) {
            m.edge = RateEdge::for_config(self.audio.rate, &config);
        }
        let _ = m.local_ip;
        match m.session.as_mut() {
            Some(s) => {
                // The RTP timeout counts again from a direction change
                // (e.g. resume after hold).
                if (s.config().send, s.config().recv) != (config.send, config.recv) {
                    m.last_rtp = m.last_rtp.map(|_| std::time::Instant::now());
                }
                s.update(config)
            }
            None => {
                let rtcp = RtcpConfig {
                    min_interval: self.rtcp.min_interval,
                    ..RtcpConfig::new(random_cname(&mut self.rng), config.clock_rate)
                };
                m.session = Some(MediaSession::with_rtcp(
                    config,
                    rtcp,
                    &SystemClock,
                    &mut self.rng,
                    std::time::Instant::now(),
                ))
            }
        }
    }
}

/// RFC 3550 §6.6: the call's last RTCP packet, with BYE, sent without
/// waiting (the call's state is being dropped).
fn send_rtcp_bye(m: &mut CallMedia) {
    let Some(session) = m.session.as_mut() else {
        return;
    };
    session.close(std::time::Instant::now());
    let rtcp_socket = m.rtcp_socket.as_ref().unwrap_or(&m.socket);
    let queued = std::iter::from_fn(|| session.poll_transmit())
        .map(|(dest, pkt)| (&m.socket, dest, pkt))
        .collect::<Vec<_>>();
    for (socket, dest, pkt) in queued.into_iter().chain(
        std::iter::from_fn(|| session.poll_transmit_rtcp()).map(|(d, p)| (rtcp_socket, d, p)),
    ) {
        if let Err(e) = socket.try_send_to(&pkt, dest) {
            tracing::debug!("RTCP BYE to {dest}: {e}");
        }
    }
}

struct PendingMedia {
    socket: Arc<UdpSocket>,
    rtcp_socket: Option<Arc<UdpSocket>>,
    local_ip: IpAddr,
    io: MediaIo,
}

/// Binds the RTP socket on an even port and the RTCP socket on the next,
/// odd one (RFC 3550 §11). When no such pair is found, RTP gets any port
/// and RTCP any other, which the SDP then names with `a=rtcp` (RFC 3605);
/// `None` for RTCP only if no second socket can be bound at all.
async fn bind_rtp_rtcp_pair(ip: IpAddr) -> Result<(UdpSocket, Option<UdpSocket>), DriverError> {
    let bind_error = |source| DriverError::Bind {
        addr: SocketAddr::new(ip, 0),
        source,
    };
    let mut last_err = None;
    for _ in 0..20 {
        let s = UdpSocket::bind(SocketAddr::new(ip, 0))
            .await
            .map_err(bind_error)?;
        let port = s.local_addr().map(|a| a.port()).unwrap_or(1);
        let (rtp, even) = if port % 2 == 0 {
            (s, port)
        } else {
            let even = port.wrapping_add(1);
            match UdpSocket::bind(SocketAddr::new(ip, even)).await {
                Ok(s2) if even != 0 => (s2, even),
                Ok(_) => continue,
                Err(e) => {
                    last_err = Some(e);
                    continue;
                }
            }
        };
        match UdpSocket::bind(SocketAddr::new(ip, even + 1)).await {
            Ok(rtcp) => return Ok((rtp, Some(rtcp))),
            Err(e) => last_err = Some(e),
        }
    }
    if let Some(e) = last_err {
        tracing::debug!("no even/odd RTP/RTCP port pair: {e}")
    }
    let rtp = UdpSocket::bind(SocketAddr::new(ip, 0))
        .await
        .map_err(bind_error)?;
    let rtcp = UdpSocket::bind(SocketAddr::new(ip, 0)).await.ok();
    Ok((rtp, rtcp))
}

/// Refuses URIs we cannot reach over UDP: `sips:` (TLS, RFC 3261 §26.2)
/// and a `transport` parameter other than udp.
fn check_udp_target(uri: &str) -> Result<(), DriverError> {
    let unsupported = |what: &str| DriverError::Unsupported {
        target: uri.to_string(),
        what: what.to_string(),
    };
    let Ok(Uri::Sip(u)) = Uri::parse(uri) else {
        return Ok(()); // reported as a bad target when resolved
    };
    if u.secure {
        return Err(unsupported("sips: (TLS)"));
    }
    match u.params.value("transport") {
        Some(t) if !t.eq_ignore_ascii_case("udp") => Err(unsupported(&format!("transport={t}"))),
        _ => Ok(()),
    }
}

/// Destinations a UDP socket bound to `local` cannot usefully send to.
fn check_destination(dest: SocketAddr, local: SocketAddr) -> Result<(), DriverError> {
    let reason = if dest.port() == 0 {
        Some("port 0")
    } else if dest.ip().is_unspecified() || dest.ip().is_multicast() {
        Some("not a unicast address")
    } else if matches!(dest.ip(), IpAddr::V4(v4) if v4.is_broadcast()) {
        Some("a broadcast address")
    } else if dest.is_ipv6() && local.is_ipv4() {
        Some("an IPv6 address from an IPv4 socket (use --bind :: or --bind ::1)")
    } else if dest.is_ipv4() && local.is_ipv6() && !local.ip().is_unspecified() {
        Some("an IPv4 address from an IPv6 socket")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(DriverError::Unreachable { dest, reason }),
        None => Ok(()),
    }
}

/// The socket address of a SIP URI's host and port (5060, or 5061 for
/// sips, RFC 3261 §19.1.2).
async fn resolve_uri(uri: &str, local: SocketAddr) -> Result<SocketAddr, DriverError> {
    let bad = || DriverError::BadTarget {
        target: uri.to_string(),
    };
    let parsed = Uri::parse(uri).map_err(|_| bad())?;
    let sip = parsed.as_sip().ok_or_else(bad)?;
    let port = sip.port.unwrap_or(if sip.secure { 5061 } else { 5060 });
    resolve(&sip.host, port, local).await
}

/// Resolves a URI host to a socket address of the same family as our SIP
/// socket where possible (RFC 3263 reduced to A/AAAA records).
async fn resolve(host: &Host, port: u16, local: SocketAddr) -> Result<SocketAddr, DriverError> {
    if let Some(ip) = host.ip() {
        return Ok(SocketAddr::new(ip, port));
    }
    let name = host.to_string();
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), port))
        .await
        .map_err(|e| DriverError::Resolve {
            host: name.clone(),
            detail: e.to_string(),
        })?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4() == local.is_ipv4() || local.ip().is_unspecified())
        .or(addrs.first())
        .copied()
        .ok_or(DriverError::Resolve {
            host: name,
            detail: "no address".into(),
        })
}

/// A Route header value for a proxy URI, with `lr` (RFC 3261 §16.12,
/// §19.1.1) so the Request-URI stays the target.
pub fn loose_route(uri: &str) -> String {
    match Uri::parse(uri) {
        Ok(Uri::Sip(mut u)) => {
            if !u.params.has("lr") {
                u.params.set("lr", None);
            }
            format!("<{u}>")
        }
        _ => format!("<{uri}>"),
    }
}

/// Logs a SIP datagram at trace level with credentials masked
/// (`mask_message` hides Authorization and Proxy-Authorization values).
fn trace_sip(what: &str, peer: SocketAddr, data: &[u8]) {
    if tracing::enabled!(tracing::Level::TRACE) {
        let text = String::from_utf8_lossy(data);
        tracing::trace!("{what} {peer}:\n{}", super::digest::mask_message(&text));
    }
}

/// A random seed for a new phone.
pub fn random_seed() -> u64 {
    rand::rng().random()
}
