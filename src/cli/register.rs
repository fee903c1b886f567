//! `sipline register`: register an account and stay registered (or, with
//! `--once`, show the bindings and remove ours).

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::mpsc;

use super::account;
use super::args::RegisterArgs;
use super::config::Account;
use super::events::Emitter;
use super::exit::Exit;
use super::{Signals, phone_config_for};
use crate::ua::accounts::{RegEvent, RegFailure};
use crate::ua::registration::RetryBackoff;
use crate::ua::{Phone, PhoneEvent, UaEvent};

pub async fn run(args: RegisterArgs, emit: Emitter) -> Exit {
    let acct = match account::select(&args.account) {
        Ok(Some(a)) => a,
        Ok(None) => {
            tracing::error!("no account: give --account NAME (from the config file) or --aor URI");
            return Exit::Usage;
        }
        Err(e) => return e,
    };
    let cfg = phone_config_for(args.bind, args.local_port, 0, Some(&acct), &[]);
    let (phone, mut events) = match Phone::start(cfg).await {
        Ok(p) => p,
        Err(e) => {
            tracing::error!("{e}");
            return Exit::Network;
        }
    };
    super::nat::start(&phone, args.account.nat.options(Some(&acct)), &emit).await;
    if let Err(e) = account::install_credentials(&phone, &acct) {
        phone.shutdown().await;
        return e;
    }
    if args.once {
        once(phone, events, &acct, &emit).await
    } else {
        stay_registered(phone, &mut events, &acct, &emit).await
    }
}

/// `--once`: register, show the bindings, remove ours.
async fn once(
    phone: Phone,
    mut events: mpsc::UnboundedReceiver<PhoneEvent>,
    acct: &Account,
    emit: &Emitter,
) -> Exit {
    let reg = match account::register(&phone, &mut events, acct, emit).await {
        Ok(r) => r,
        Err(e) => {
            phone.shutdown().await;
            return e;
        }
    };
    finish(phone, &mut events, reg, acct, emit).await
}

/// Removes our binding and stops the phone.
async fn finish(
    phone: Phone,
    events: &mut mpsc::UnboundedReceiver<PhoneEvent>,
    reg: crate::ua::accounts::RegHandle,
    acct: &Account,
    emit: &Emitter,
) -> Exit {
    let removed = account::unregister(&phone, events, reg, acct, emit).await;
    phone.shutdown().await;
    if removed {
        Exit::Ok
    } else {
        tracing::warn!("the registrar did not confirm the removal of our binding");
        Exit::Network
    }
}

/// Stays registered until a signal: refreshes, and after a failure that may
/// pass (no answer, a network error, 408, 5xx) registers again with a
/// back-off (see [`RetryBackoff`]). Refused credentials and final 4xx–6xx
/// answers end the program with their exit code.
async fn stay_registered(
    phone: Phone,
    events: &mut mpsc::UnboundedReceiver<PhoneEvent>,
    acct: &Account,
    emit: &Emitter,
) -> Exit {
    let mut reg = match phone.register(account::spec(acct)).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("{e}");
            phone.shutdown().await;
            return Exit::Network;
        }
    };
    let mut signals = Signals::new();
    let mut backoff = RetryBackoff::default();
    let far = Instant::now() + Duration::from_secs(3600 * 24 * 365);
    let mut retry_at = far;
    let mut registered = false;
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Some(PhoneEvent::Ua(UaEvent::Nat(n))) => super::nat::print(emit, &n),
                Some(PhoneEvent::Ua(UaEvent::Registration { reg: r, event })) if r == reg => {
                    account::emit_registration(emit, acct, &event);
                    match event {
                        RegEvent::Registered { .. } | RegEvent::Refreshed { .. } => {
                            registered = true;
                            backoff.on_success();
                        }
                        RegEvent::Failed { kind, status, retry_after, .. } => {
                            registered = false;
                            let now = Instant::now();
                            match backoff.on_failure(kind, status, retry_after, now) {
                                Some(at) => {
                                    retry_at = at;
                                    emit_retry(emit, acct, at - now);
                                }
                                None => {
                                    phone.shutdown().await;
                                    return account::failure_exit(kind);
                                }
                            }
                        }
                        _ => {}
                    }
                }
                Some(_) => {}
                None => return Exit::Internal,
            },
            _ = tokio::time::sleep_until(retry_at.into()) => {
                retry_at = far;
                match phone.register(account::spec(acct)).await {
                    Ok(r) => reg = r,
                    Err(e) => {
                        tracing::warn!("cannot register again: {e}");
                        let now = Instant::now();
                        if let Some(at) = backoff.on_failure(RegFailure::Network, None, None, now) {
                            retry_at = at;
                            emit_retry(emit, acct, at - now);
                        }
                    }
                }
            }
            _ = signals.recv() => break,
        }
    }
    if !registered {
        // Interrupted while not registered: there is no binding to remove.
        phone.shutdown().await;
        return Exit::Interrupted;
    }
    finish(phone, events, reg, acct, emit).await
}

/// Prints that the registration is tried again after `wait`.
fn emit_retry(emit: &Emitter, acct: &Account, wait: Duration) {
    let secs = wait.as_secs_f64().round();
    emit.emit(
        "registration_retry",
        json!({"account": acct.name, "aor": acct.aor, "retry_in_s": secs}),
        &format!("registering {} again in {secs:.0} s", acct.aor),
    );
}
