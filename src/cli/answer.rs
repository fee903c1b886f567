//! `sipline answer`: wait for calls and answer (or refuse) them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::mpsc;

use super::account;
use super::args::AnswerArgs;
use super::events::{Emitter, emit_dtmf};
use super::exit::Exit;
use super::io::{check_io, open_io};
use super::{Signals, phone_config, phone_config_for};
use crate::media::audio::AudioFormat;
use crate::ua::{CallHandle, Phone, PhoneConfig, PhoneEvent, UaEvent};

enum Timer {
    Answer(CallHandle),
    Hangup(CallHandle),
}

/// Serves calls until `--count` calls ended or a signal arrives.
pub async fn run(args: AnswerArgs, emit: Emitter) -> Exit {
    let acct = match account::select(&args.account) {
        Ok(a) => a,
        Err(e) => return e,
    };
    let cfg = match &acct {
        Some(a) => phone_config_for(
            args.common.bind,
            args.common.local_port,
            5060,
            Some(a),
            &args.common.codecs,
        ),
        None => phone_config(&args.common, 5060),
    };
    let cfg = PhoneConfig {
        rtp_timeout: super::rtp_timeout(args.common.rtp_timeout),
        media_keepalive: super::rtp_timeout(args.common.rtp_keepalive),
        rtcp: super::rtcp_options(&args.common),
        jitter_buffer: args.common.jitter_buffer,
        opus: args.common.opus(),
        ..cfg
    };
    // Calls carry audio at 48 kHz when Opus may be used, else 8 kHz.
    let format = AudioFormat::for_codecs(&cfg.codecs);
    // Check --play, --record and the devices now rather than at the first
    // call (the recording is created again for each call).
    if let Err(e) = check_io(&args.common, format) {
        tracing::error!("{e}");
        return Exit::Audio;
    }
    let (phone, mut events) = match Phone::start(cfg).await {
        Ok(p) => p,
        Err(e) => {
            tracing::error!("{e}");
            return Exit::Network;
        }
    };
    super::nat::start(&phone, args.account.nat.options(acct.as_ref()), &emit).await;
    let (phone, reg) = match account::start(phone, &mut events, acct.as_ref(), &emit).await {
        Ok(started) => started,
        Err(e) => return e,
    };
    emit.emit(
        "listening",
        json!({"address": phone.local_addr().to_string(), "port": phone.local_addr().port()}),
        &format!("listening on {}", phone.local_addr()),
    );
    let mut signals = Signals::new();
    let (timer_tx, mut timers) = mpsc::unbounded_channel::<Timer>();
    let schedule = |secs: f64, t: Timer| {
        let tx = timer_tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs_f64(secs.max(0.0))).await;
            let _ = tx.send(t);
        });
    };
    let mut handled = 0u32;
    let mut answered = 0u32;
    let mut live: HashMap<CallHandle, Option<Instant>> = HashMap::new();
    // Calls the peer transferred away (RFC 3515): their end is not a handled call.
    let mut transferred: std::collections::HashSet<CallHandle> = std::collections::HashSet::new();
    let mut stopping = false;
    let far = Instant::now() + Duration::from_secs(3600 * 24 * 365);
    let mut give_up = far;
    let mut exit = Exit::Ok;
    loop {
        if stopping && live.is_empty() {
            break;
        }
        tokio::select! {
            ev = events.recv() => {
                let Some(ev) = ev else { return Exit::Internal };
                match ev {
                    PhoneEvent::Ua(UaEvent::IncomingCall { call, from, to }) => {
                        let (display, uri, who) = crate::cli::repl::state::caller(&from);
                        emit.emit(
                            "incoming",
                            json!({"call": call, "from": from, "display_name": display,
                                   "uri": uri, "to": to}),
                            &format!("incoming call {call} from {who}"),
                        );
                        live.insert(call, None);
                        match (args.reject, stopping) {
                            (Some(code), _) => phone.reject(call, code),
                            (None, true) => phone.reject(call, 480),
                            (None, false) => schedule(args.answer_after, Timer::Answer(call)),
                        }
                    }
                    PhoneEvent::Ua(UaEvent::Media { call, media }) => emit.media(call, &media),
                    PhoneEvent::Ua(UaEvent::Answered { call }) => {
                        emit.emit("answered", json!({"call": call}), &format!("call {call} answered"));
                        live.insert(call, Some(Instant::now()));
                        if let Some(d) = args.common.duration {
                            schedule(d, Timer::Hangup(call));
                        }
                    }
                    PhoneEvent::Ua(UaEvent::Rejected { method, status, detail }) => emit.emit(
                        "refused_request",
                        json!({"method": method, "status": status, "detail": detail}),
                        &format!("refused {method} with {status}: {detail}"),
                    ),
                    // RFC 3515: the caller transferred us; the phone placed
                    // the new call, which takes the original's place.
                    PhoneEvent::Ua(UaEvent::ReferredCall { call: new, original, target })
                        if live.contains_key(&original) =>
                    {
                        emit.emit(
                            "transferred",
                            json!({"call": original, "new_call": new, "target": target}),
                            &format!("call {original} transferred by the peer to {target}"),
                        );
                        live.insert(new, None);
                        transferred.insert(original);
                    }
                    PhoneEvent::CallEnded { call, reason, stats, codec } => {
                        let dur = live.remove(&call).flatten().map(|t| t.elapsed().as_secs_f64());
                        emit.ended(call, &reason, stats.as_ref(), codec, dur);
                        // A transferred call goes on as its new call.
                        if transferred.remove(&call) {
                            continue;
                        }
                        handled += 1;
                        if args.count.is_some_and(|n| handled >= n) {
                            stopping = true;
                        }
                    }
                    PhoneEvent::Ua(UaEvent::Nat(n)) => super::nat::print(&emit, &n),
                    PhoneEvent::Ua(UaEvent::Registration { event, .. }) => {
                        if let Some(a) = &acct {
                            account::emit_registration(&emit, a, &event);
                        }
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
                        exit = Exit::Audio;
                    }
                    _ => {}
                }
            }
            Some(t) = timers.recv() => match t {
                Timer::Answer(call) => {
                    if !live.contains_key(&call) {
                        continue;
                    }
                    answered += 1;
                    let mut common = args.common.clone();
                    common.record = common.record.map(|p| numbered(&p, answered));
                    match open_io(&common, format) {
                        Ok(io) => {
                            if let Err(e) = phone.answer(call, io).await {
                                // e.g. no RTP socket: refuse rather than ring forever.
                                tracing::warn!("cannot answer call {call}: {e}");
                                phone.reject(call, 503);
                            }
                        }
                        Err(e) => {
                            tracing::error!("{e}");
                            phone.reject(call, 500);
                            exit = Exit::Audio;
                        }
                    }
                }
                Timer::Hangup(call) => phone.hangup(call),
            },
            _ = signals.recv() => {
                if stopping {
                    break;
                }
                stopping = true;
                for call in live.keys() {
                    phone.hangup(*call);
                }
                // Give the hang-ups a bounded time to complete (an
                // unanswered BYE ends its call after 4 s already).
                give_up = Instant::now() + Duration::from_secs(10);
            }
            _ = tokio::time::sleep_until(give_up.into()) => {
                tracing::warn!("calls did not end in time; exiting");
                break;
            }
        }
    }
    if let (Some(r), Some(a)) = (reg, &acct) {
        account::unregister(&phone, &mut events, r, a, &emit).await;
    }
    phone.shutdown().await;
    exit
}

/// The recording of the `n`th answered call: `--record out.wav` names the
/// first; later calls get `out-2.wav`, `out-3.wav`, ... so that calls never
/// overwrite each other.
pub(crate) fn numbered(path: &std::path::Path, n: u32) -> std::path::PathBuf {
    if n <= 1 {
        return path.to_path_buf();
    }
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match path.extension() {
        Some(ext) => format!("{stem}-{n}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{n}"),
    };
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_calls_record_to_numbered_files() {
        let p = std::path::Path::new("/tmp/rec/out.wav");
        assert_eq!(numbered(p, 1), p);
        assert_eq!(numbered(p, 2), std::path::Path::new("/tmp/rec/out-2.wav"));
        assert_eq!(
            numbered(std::path::Path::new("x"), 3),
            std::path::Path::new("x-3")
        );
    }
}
