//! `sipline register`: register an account and stay registered (or, with
//! `--once`, show the bindings and remove ours).

use super::account;
use super::args::RegisterArgs;
use super::events::Emitter;
use super::exit::Exit;
use super::{Signals, phone_config_for};
use crate::ua::accounts::RegEvent;
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
    let reg = match account::register(&phone, &mut events, &acct, &emit).await {
        Ok(r) => r,
        Err(e) => {
            phone.shutdown().await;
            return e;
        }
    };
    if !args.once {
        let mut signals = Signals::new();
        loop {
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(PhoneEvent::Ua(UaEvent::Nat(n))) => super::nat::print(&emit, &n),
                    Some(PhoneEvent::Ua(UaEvent::Registration { event, .. })) => {
                        account::emit_registration(&emit, &acct, &event);
                        if let RegEvent::Failed { kind, .. } = event {
                            phone.shutdown().await;
                            return account::failure_exit(kind);
                        }
                    }
                    Some(_) => {}
                    None => return Exit::Internal,
                },
                _ = signals.recv() => break,
            }
        }
    }
    let removed = account::unregister(&phone, &mut events, reg, &acct, &emit).await;
    phone.shutdown().await;
    if removed {
        Exit::Ok
    } else {
        tracing::warn!("the registrar did not confirm the removal of our binding");
        Exit::Network
    }
}
