//! The tokio shell around [`UserAgent`]: it owns the SIP socket, one RTP
//! socket per call, the media sessions and the audio sources and sinks.
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
use super::call::CallHandle;
use super::digest::Credentials;
use super::registration::RegistrationConfig;
use crate::media::audio::{AudioSink, AudioSource};
use crate::media::codec::CodecKind;
use crate::media::session::{DtmfError, MediaConfig, MediaSession, MediaStats};
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
    /// Codecs in order of preference.
    pub codecs: Vec<CodecKind>,
    /// Hang up a call when no RTP has arrived for this long after the
    /// first packet (the peer died); `None` disables it.
    pub rtp_timeout: Option<Duration>,
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
    /// Finish the current work and end the task.
    Shutdown,
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
}

/// What the phone reports.
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
}

impl Drop for CallMedia {
    fn drop(&mut self) {
        self.receiver.abort();
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
            let deadline = self.ua.next_timeout().map(TokioInstant::from_std);
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = self.sip.recv(&mut buf) => match r {
                    Ok((n, from)) => {
                        trace_sip("received from", from, &buf[..n]);
                        let local_ip = self.local_ip_towards(from);
                        self.ua.handle_datagram(&buf[..n], from, local_ip, std::time::Instant::now());
                    }
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
                _ = sleep => self.ua.handle_timeout(std::time::Instant::now()),
                _ = tick.tick(), if !self.calls.is_empty() => self.on_media_tick(),
            }
            self.drain().await;
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
            Command::Shutdown => {}
        }
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

    async fn register(&mut self, spec: RegisterSpec) -> Result<RegHandle, DriverError> {
        let first_hop = spec.outbound_proxy.as_deref().unwrap_or(&spec.registrar);
        let dest = resolve_uri(first_hop, self.sip.local_addr()).await?;
        let local_ip = self.local_ip_towards(dest);
        let route = spec.outbound_proxy.iter().map(|p| loose_route(p)).collect();
        let cfg = RegistrationConfig {
            aor: spec.aor,
            registrar: spec.registrar,
            expires: spec.expires,
            route,
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

    /// Binds the call's RTP socket on an even port (RFC 3550 §11).
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
        let socket = bind_even_port(bind_ip).await?;
        let port = socket.local_addr().map(|a| a.port()).unwrap_or(0);
        let local = LocalMedia {
            addr: local_ip,
            rtp_port: port,
            ..self.template.clone()
        };
        Ok((
            PendingMedia {
                socket: Arc::new(socket),
                local_ip,
                io,
            },
            local,
        ))
    }

    fn spawn_receiver(&self, call: CallHandle, p: PendingMedia) -> CallMedia {
        let tx = self.rtp.0.clone();
        let sock = p.socket.clone();
        let receiver = tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            loop {
                match sock.recv_from(&mut buf).await {
                    Ok((n, from)) => {
                        if tx.send((call, buf[..n].to_vec(), from)).is_err() {
                            break;
                        }
                    }
                    Err(e) => tracing::trace!("RTP socket: {e}"),
                }
            }
        });
        CallMedia {
            socket: p.socket,
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
        }
    }

    /// Every 20 ms: one frame from each call's source into its session, and
    /// one frame from its session into its sink.
    /// Hangs up and stops the call's audio at once (the recording ends
    /// here, not when the BYE completes).
    fn hangup(&mut self, call: CallHandle, now: std::time::Instant) {
        if let Some(m) = self.calls.get_mut(&call) {
            m.stopped = true;
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
            .filter(|(_, m)| !m.stopped && m.session.as_ref().is_some_and(|s| s.config().recv))
            .filter_map(|(c, m)| {
                let silent = now.saturating_duration_since(m.last_rtp?);
                (silent > limit).then_some((*c, silent))
            })
            .collect();
        for (call, silent_for) in dead {
            tracing::warn!("no RTP for {silent_for:?}: hanging up call {call}");
            let _ = self
                .events
                .send(PhoneEvent::MediaTimeout { call, silent_for });
            if let Some(m) = self.calls.get_mut(&call) {
                m.stopped = true;
            }
            self.ua.abandon(call, now);
        }
    }

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
            let n = session.config().frame_samples();
            m.frame.resize(n, 0);
            m.io.source.read_frame(&mut m.frame);
            session.push_capture(&m.frame);
            if m.io.source.is_finished() && !m.source_finished {
                m.source_finished = true;
                let _ = self.events.send(PhoneEvent::SourceFinished { call: *call });
            }
            m.playback.clear();
            session.pull_playback_into(now, &mut m.playback);
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
        }
    }

    async fn drain(&mut self) {
        while let Some(o) = self.ua.poll_output() {
            match o {
                UaOutput::Transmit(t) => {
                    trace_sip("sent to", t.dest, &t.payload);
                    if let Err(e) = self.sip.send(&t).await {
                        tracing::warn!("SIP send to {}: {e}", t.dest);
                    }
                }
                UaOutput::Event(e) => self.on_ua_event(e),
            }
        }
    }

    fn on_ua_event(&mut self, e: UaEvent) {
        match e {
            UaEvent::Media { call, ref media } => {
                self.apply_media(call, media);
                let _ = self.events.send(PhoneEvent::Ua(e));
            }
            UaEvent::Ended { call, reason } => {
                let (stats, codec) = match self.calls.remove(&call) {
                    Some(mut m) => {
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

    /// Starts or updates the call's media session for newly negotiated
    /// media (RFC 3264 §5, §8).
    fn apply_media(&mut self, call: CallHandle, media: &NegotiatedMedia) {
        let Some(m) = self.calls.get_mut(&call) else {
            return;
        };
        let config = MediaConfig {
            codec: media.codec,
            payload_type: media.payload_type,
            clock_rate: media.clock_rate,
            ptime_ms: media.ptime_ms,
            telephone_event_pt: media.telephone_event,
            remote: media.remote_rtp,
            send: media.direction.sends() && media.remote_rtp.is_some(),
            recv: media.direction.recvs(),
        };
        let _ = m.local_ip;
        match m.session.as_mut() {
            Some(s) => s.update(config),
            None => {
                m.session = Some(MediaSession::new(
                    config,
                    &mut self.rng,
                    std::time::Instant::now(),
                ))
            }
        }
    }
}

struct PendingMedia {
    socket: Arc<UdpSocket>,
    local_ip: IpAddr,
    io: MediaIo,
}

/// Binds a UDP socket on an even port, keeping port+1 free for RTCP where
/// possible (RFC 3550 §11).
async fn bind_even_port(ip: IpAddr) -> Result<UdpSocket, DriverError> {
    let mut last_err = None;
    for _ in 0..20 {
        let s = UdpSocket::bind(SocketAddr::new(ip, 0))
            .await
            .map_err(|source| DriverError::Bind {
                addr: SocketAddr::new(ip, 0),
                source,
            })?;
        let port = s.local_addr().map(|a| a.port()).unwrap_or(1);
        if port % 2 == 0 {
            return Ok(s);
        }
        let even = port.wrapping_add(1) & !1;
        if even != 0 {
            match UdpSocket::bind(SocketAddr::new(ip, even)).await {
                Ok(s2) => return Ok(s2),
                Err(e) => last_err = Some(e),
            }
        }
    }
    if let Some(e) = last_err {
        tracing::debug!("no even RTP port: {e}")
    }
    UdpSocket::bind(SocketAddr::new(ip, 0))
        .await
        .map_err(|source| DriverError::Bind {
            addr: SocketAddr::new(ip, 0),
            source,
        })
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
