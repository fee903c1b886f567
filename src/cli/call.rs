//! `sipline call`: one outgoing call.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use serde_json::json;

use super::account;
use super::args::CallArgs;
use super::events::{Emitter, describe_end, emit_dtmf};
use super::exit::Exit;
use super::io::open_io;
use super::{Signals, phone_config, phone_config_for};
use crate::media::audio::AudioFormat;
use crate::sip::Uri;
use crate::ua::{Phone, PhoneConfig, PhoneEvent, UaEvent};

/// How long a hang-up may take before we exit anyway. A BYE the peer never
/// answers ends the call sooner, after the core's BYE wait (8·T1, 4 s), with
/// an `ended` event; this is only a backstop.
const HANGUP_GRACE: Duration = Duration::from_secs(10);

/// Places the call and waits until it ends; returns the exit code.
pub async fn run(args: CallArgs, emit: Emitter) -> Exit {
    let acct = match account::select(&args.account) {
        Ok(a) => a,
        Err(e) => return e,
    };
    let cfg = match &acct {
        Some(a) => phone_config_for(
            args.common.bind,
            args.common.local_port,
            0,
            Some(a),
            &args.common.codecs,
        ),
        None => phone_config(&args.common, 0),
    };
    let mut cfg = PhoneConfig {
        rtp_timeout: super::rtp_timeout(args.common.rtp_timeout),
        media_keepalive: super::rtp_timeout(args.common.rtp_keepalive),
        rtcp: super::rtcp_options(&args.common),
        jitter_buffer: args.common.jitter_buffer,
        opus: args.common.opus(),
        ..cfg
    };
    if args.from.is_some() {
        cfg.ua.from = args.from.clone();
    }
    // Calls carry audio at 48 kHz when Opus may be used, else 8 kHz.
    let io = match open_io(&args.common, AudioFormat::for_codecs(&cfg.codecs)) {
        Ok(io) => io,
        Err(e) => {
            tracing::error!("{e}");
            return Exit::Audio;
        }
    };
    let (phone, mut events) = match Phone::start(cfg).await {
        Ok(p) => p,
        Err(e) => {
            tracing::error!("{e}");
            return Exit::Network;
        }
    };
    // Without an account the INVITE goes straight to the URI's address:
    // our own socket would ring itself and time out after 32 s.
    if acct.is_none() && calls_itself(&args.uri, phone.local_addr(), is_local_ip) {
        tracing::error!(
            "{} is our own address ({}): the call would call itself",
            args.uri,
            phone.local_addr()
        );
        phone.shutdown().await;
        return Exit::Usage;
    }
    super::nat::start(&phone, args.account.nat.options(acct.as_ref()), &emit).await;
    let (phone, reg) = match account::start(phone, &mut events, acct.as_ref(), &emit).await {
        Ok(started) => started,
        Err(e) => return e,
    };
    let mut signals = Signals::new();
    let started = Instant::now();
    let next_hop = acct.as_ref().map(account::next_hop);
    let mut call = match phone.dial_via(&args.uri, io, next_hop).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            if let (Some(r), Some(a)) = (reg, &acct) {
                account::unregister(&phone, &mut events, r, a, &emit).await;
            }
            phone.shutdown().await;
            return match e {
                crate::ua::driver::DriverError::BadTarget { .. }
                | crate::ua::driver::DriverError::Unsupported { .. }
                | crate::ua::driver::DriverError::Ua(crate::ua::UaError::BadTarget { .. }) => {
                    Exit::Usage
                }
                _ => Exit::Network,
            };
        }
    };
    emit.emit(
        "calling",
        json!({"call": call, "uri": args.uri, "local_port": phone.local_addr().port()}),
        &format!(
            "calling {} from port {}",
            args.uri,
            phone.local_addr().port()
        ),
    );
    let far = Instant::now() + Duration::from_secs(3600 * 24 * 365);
    let mut deadlines = Deadlines {
        ring: args
            .timeout
            .map(|t| Instant::now() + Duration::from_secs_f64(t)),
        ..Deadlines::default()
    };
    let mut answered_at = None;
    let mut interrupted = false;
    let mut ring_timeout = false;
    let mut sink_failed = false;
    let mut dtmf_at = far;
    let exit = loop {
        let next = deadlines.next(answered_at.is_some()).unwrap_or(far);
        tokio::select! {
            ev = events.recv() => {
                let Some(ev) = ev else { break Exit::Internal };
                match ev {
                    PhoneEvent::Ua(UaEvent::Progress { status, reason, .. }) => emit.emit(
                        "progress",
                        json!({"call": call, "status": status, "reason": reason}),
                        &format!("{status} {reason}"),
                    ),
                    PhoneEvent::Ua(UaEvent::Media { media, .. }) => emit.media(call, &media),
                    PhoneEvent::Ua(UaEvent::Answered { .. }) => {
                        let setup = started.elapsed().as_secs_f64();
                        emit.emit(
                            "answered",
                            json!({"call": call, "setup_s": setup}),
                            &format!("answered after {setup:.2} s"),
                        );
                        answered_at = Some(Instant::now());
                        // Answered: the ring timeout is over for good.
                        deadlines.ring = None;
                        if args.dtmf.is_some() {
                            dtmf_at = Instant::now() + Duration::from_secs_f64(args.dtmf_after);
                        }
                        if let Some(d) = args.common.duration {
                            deadlines.hangup = Some(Instant::now() + Duration::from_secs_f64(d));
                        }
                        if interrupted {
                            phone.hangup(call);
                        }
                    }
                    // RFC 3515: the peer transferred us; the phone placed
                    // the new call, which is the one we follow from now on.
                    PhoneEvent::Ua(UaEvent::ReferredCall { call: new, original, target })
                        if original == call =>
                    {
                        emit.emit(
                            "transferred",
                            json!({"call": call, "new_call": new, "target": target}),
                            &format!("transferred by the peer to {target}"),
                        );
                        call = new;
                    }
                    PhoneEvent::CallEnded { call: ended, reason, .. } if ended != call => {
                        tracing::info!("call {ended} (before the transfer) ended: {}", describe_end(&reason));
                    }
                    PhoneEvent::CallEnded { reason, stats, codec, .. } => {
                        let dur = answered_at.map(|t| t.elapsed().as_secs_f64());
                        emit.ended(call, &reason, stats.as_ref(), codec, dur);
                        break Exit::for_end(&reason, interrupted, ring_timeout);
                    }
                    PhoneEvent::Dtmf { call, digit }
                    | PhoneEvent::Ua(UaEvent::Dtmf { call, digit }) => emit_dtmf(&emit, call, digit),
                    PhoneEvent::MediaTimeout { call, silent_for } => emit.emit(
                        "media_timeout",
                        json!({"call": call, "silent_s": silent_for.as_secs_f64()}),
                        &format!("no audio from the peer for {:.0} s: hanging up", silent_for.as_secs_f64()),
                    ),
                    PhoneEvent::SinkError { detail, .. } => {
                        tracing::error!("recording failed: {detail}");
                        sink_failed = true;
                    }
                    PhoneEvent::Ua(UaEvent::Nat(n)) => super::nat::print(&emit, &n),
                    PhoneEvent::Ua(UaEvent::Registration { event, .. }) => {
                        if let Some(a) = &acct {
                            account::emit_registration(&emit, a, &event);
                        }
                    }
                    PhoneEvent::Ua(UaEvent::Rejected { method, status, detail }) => {
                        tracing::info!("refused a {method} with {status}: {detail}");
                    }
                    _ => {}
                }
            }
            _ = tokio::time::sleep_until(dtmf_at.into()) => {
                dtmf_at = far;
                if let Some(digits) = &args.dtmf {
                    match phone.send_dtmf(call, digits).await {
                        Ok(()) => emit.emit(
                            "dtmf_sent",
                            json!({"call": call, "digits": digits}),
                            &format!("sending DTMF {digits}"),
                        ),
                        Err(e) => tracing::warn!("cannot send DTMF: {e}"),
                    }
                }
            }
            _ = tokio::time::sleep_until(next.into()) => {
                match deadlines.due(Instant::now(), answered_at.is_some()) {
                    Some(Due::GiveUp) => {
                        tracing::warn!("the call did not end in time after hanging up");
                        break match (answered_at, interrupted) {
                            (Some(_), _) => Exit::Ok,
                            (None, true) => Exit::Interrupted,
                            (None, false) => Exit::NoAnswer,
                        };
                    }
                    Some(Due::RingTimeout) => {
                        ring_timeout = true;
                        tracing::info!("no answer within the timeout: cancelling");
                        deadlines.give_up.get_or_insert(Instant::now() + HANGUP_GRACE);
                        phone.hangup(call);
                    }
                    Some(Due::Hangup) => {
                        deadlines.give_up.get_or_insert(Instant::now() + HANGUP_GRACE);
                        phone.hangup(call);
                    }
                    None => {}
                }
            }
            _ = signals.recv() => {
                if interrupted {
                    break Exit::Interrupted;
                }
                interrupted = true;
                deadlines.give_up = Some(Instant::now() + HANGUP_GRACE);
                tracing::info!("interrupted: hanging up");
                phone.hangup(call);
            }
        }
    };
    if let (Some(r), Some(a)) = (reg, &acct) {
        account::unregister(&phone, &mut events, r, a, &emit).await;
    }
    phone.shutdown().await;
    // A failed recording is an audio error even when the call went well.
    if sink_failed && exit == Exit::Ok {
        return Exit::Audio;
    }
    exit
}

/// Whether a call to `target` would reach our own SIP socket bound at
/// `local`: the URI names one of our IP addresses (an IP literal) and our
/// port (5060 when it gives none, RFC 3261 §19.1.2). `sips:` URIs and host
/// names are never taken for ours.
fn calls_itself(target: &str, local: SocketAddr, is_local: impl Fn(IpAddr) -> bool) -> bool {
    let Ok(uri) = Uri::parse(target) else {
        return false;
    };
    let Some(sip) = uri.as_sip() else {
        return false;
    };
    let Some(ip) = sip.host.ip() else {
        return false;
    };
    if sip.secure || sip.port.unwrap_or(5060) != local.port() {
        return false;
    }
    if local.ip().is_unspecified() {
        is_local(ip)
    } else {
        ip == local.ip()
    }
}

/// Whether `ip` is an address of this machine (a socket can be bound to it).
fn is_local_ip(ip: IpAddr) -> bool {
    ip.is_loopback() || ip.is_unspecified() || std::net::UdpSocket::bind((ip, 0)).is_ok()
}

/// The call's own deadlines: the ring timeout (`--timeout`), the hang-up
/// after `--duration`, and the end of the grace a hang-up gets.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Deadlines {
    ring: Option<Instant>,
    hangup: Option<Instant>,
    give_up: Option<Instant>,
}

/// Which deadline came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Due {
    /// Not answered in time: cancel.
    RingTimeout,
    /// `--duration` is over: hang up.
    Hangup,
    /// The hang-up took too long: exit anyway.
    GiveUp,
}

impl Deadlines {
    /// The next deadline that can still matter: the ring timeout only
    /// before the answer, the `--duration` hang-up only after it.
    fn next(&self, answered: bool) -> Option<Instant> {
        let own = if answered { self.hangup } else { self.ring };
        own.into_iter().chain(self.give_up).min()
    }

    /// The deadline due at `now`, if any; each one fires once.
    fn due(&mut self, now: Instant, answered: bool) -> Option<Due> {
        if self.give_up.is_some_and(|t| t <= now) {
            return Some(Due::GiveUp);
        }
        if answered {
            self.ring = None;
            if self.hangup.is_some_and(|t| t <= now) {
                self.hangup = None;
                return Some(Due::Hangup);
            }
        } else if self.ring.is_some_and(|t| t <= now) {
            self.ring = None;
            return Some(Due::RingTimeout);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uri_naming_our_own_address_and_port_calls_itself() {
        let any: SocketAddr = "0.0.0.0:5110".parse().unwrap();
        let lo: SocketAddr = "127.0.0.1:5110".parse().unwrap();
        let ours = |ip: IpAddr| ip.is_loopback() || ip == "198.51.100.7".parse::<IpAddr>().unwrap();
        assert!(calls_itself("sip:x@127.0.0.1:5110", any, ours));
        assert!(calls_itself("sip:x@198.51.100.7:5110", any, ours));
        assert!(calls_itself("sip:x@127.0.0.1:5110", lo, ours));
        let default_port: SocketAddr = "0.0.0.0:5060".parse().unwrap();
        assert!(calls_itself("sip:127.0.0.1", default_port, ours));
        // Another port, another machine, a name, or another loopback
        // address than the one we are bound to: a real call.
        assert!(!calls_itself("sip:x@127.0.0.1:5111", any, ours));
        assert!(!calls_itself("sip:x@198.51.100.8:5110", any, ours));
        assert!(!calls_itself("sip:x@localhost:5110", any, ours));
        assert!(!calls_itself("sip:x@127.0.0.2:5110", lo, ours));
        assert!(!calls_itself("sips:x@127.0.0.1:5110", any, ours));
        assert!(!calls_itself("not a uri", any, ours));
    }

    #[test]
    fn the_ring_timeout_never_fires_once_the_call_is_answered() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut d = Deadlines {
            ring: Some(t0 + s),
            hangup: Some(t0 + 10 * s),
            ..Deadlines::default()
        };
        assert_eq!(d.next(false), Some(t0 + s));
        // Answered just before the ring timeout, seen just after it.
        assert_eq!(d.due(t0 + 2 * s, true), None);
        assert_eq!(d.ring, None, "disarmed for good");
        assert_eq!(d.next(true), Some(t0 + 10 * s));
        assert_eq!(d.due(t0 + 10 * s, true), Some(Due::Hangup));
        assert_eq!(d.due(t0 + 11 * s, true), None, "fires once");
    }

    #[test]
    fn an_unanswered_call_is_cancelled_once_then_given_up_after_the_grace() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut d = Deadlines {
            ring: Some(t0 + s),
            ..Deadlines::default()
        };
        assert_eq!(d.due(t0, false), None);
        assert_eq!(d.due(t0 + s, false), Some(Due::RingTimeout));
        assert_eq!(d.next(false), None);
        d.give_up = Some(t0 + s + HANGUP_GRACE);
        assert_eq!(d.next(false), Some(t0 + s + HANGUP_GRACE));
        assert_eq!(d.due(t0 + 2 * s, false), None);
        assert_eq!(d.due(t0 + s + HANGUP_GRACE, false), Some(Due::GiveUp));
    }
}
