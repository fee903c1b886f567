//! NAT options of the phone commands (`--stun`, `--keepalive`, config
//! `stun`/`keepalive`) and how their events are printed.

use std::time::Duration;

use serde_json::json;

use super::config::Account;
use super::events::Emitter;
use crate::nat::{NatEvent, NatOptions, keepalive::DEFAULT_INTERVAL};
use crate::ua::Phone;

/// `--stun` and `--keepalive`: flattened into [`super::config::AccountArgs`],
/// so every command that talks SIP has them.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct NatArgs {
    /// STUN server (host[:port], default port 3478) telling our public
    /// address behind a NAT; it goes into Contacts and SDP (default: the
    /// account's `stun`).
    #[arg(long, value_name = "HOST[:PORT]")]
    pub stun: Option<String>,
    /// Seconds between NAT keep-alives to the registrar (0: none; default:
    /// the account's `keepalive`, else 25).
    #[arg(long, value_name = "SECS")]
    pub keepalive: Option<u32>,
}

impl NatArgs {
    /// The flags, then the account's settings (which include the config's
    /// `[defaults]`), then the built-in defaults.
    pub fn options(&self, account: Option<&Account>) -> NatOptions {
        let stun = self
            .stun
            .clone()
            .or_else(|| account.and_then(|a| a.stun.clone()))
            .filter(|s| !s.trim().is_empty());
        let keepalive = self
            .keepalive
            .or_else(|| account.and_then(|a| a.keepalive))
            .map(|s| Duration::from_secs(u64::from(s)))
            .unwrap_or(DEFAULT_INTERVAL);
        NatOptions { stun, keepalive }
    }
}

/// Starts NAT discovery and keep-alives on `phone` and prints what STUN
/// found.
pub async fn start(phone: &Phone, opts: NatOptions, emit: &Emitter) {
    match phone.start_nat(opts).await {
        Ok(Some(ev)) => print(emit, &ev),
        Ok(None) => {}
        Err(e) => tracing::warn!("NAT discovery: {e}"),
    }
}

/// Prints a NAT event ([`NatEvent::event_name`]).
pub fn print(emit: &Emitter, ev: &NatEvent) {
    emit.emit(ev.event_name(), json!(ev), &ev.describe());
}
