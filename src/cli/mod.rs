//! Command line: clap arguments, the interactive phone (`phone`, the
//! default, with its command language in `repl`), the `call`, `answer`,
//! `register`, `loopback` and `nat-check` commands, exit codes and JSON events.

pub mod account;
pub mod answer;
pub mod args;
pub mod call;
pub mod config;
pub mod events;
pub mod exit;
pub mod io;
pub mod loopback;
pub mod nat_behaviour;
pub mod nat_check;
pub mod phone;
pub mod register;
pub mod repl;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use args::{Cli, Command, CommonArgs};
use events::Emitter;
use exit::Exit;

use crate::transaction::TimerConfig;
use crate::ua::driver::{RtcpOptions, random_seed};
use crate::ua::{PhoneConfig, UaConfig};

/// Runs a parsed command line; returns the exit code.
pub async fn run(cli: Cli) -> Exit {
    let emit = Emitter { json: cli.json };
    match cli.command {
        None => phone::run(cli.phone, emit).await,
        Some(Command::Phone(a)) => phone::run(a, emit).await,
        Some(Command::Call(a)) => call::run(a, emit).await,
        Some(Command::Answer(a)) => answer::run(a, emit).await,
        Some(Command::Loopback(a)) => loopback::run(a, emit).await,
        Some(Command::Register(a)) => register::run(a, emit).await,
        Some(Command::NatCheck(a)) => nat_check::run(a, emit).await,
    }
}

/// The product's User-Agent header value.
pub fn user_agent() -> String {
    format!("sipline/{}", env!("CARGO_PKG_VERSION"))
}

/// Phone settings from the shared options; `default_port` when
/// `--local-port` is not given.
pub fn phone_config(args: &CommonArgs, default_port: u16) -> PhoneConfig {
    let mut cfg = phone_config_for(args.bind, args.local_port, default_port, None, &args.codecs);
    cfg.ua.user = args.user.clone();
    cfg.opus = args.opus();
    cfg.rtp_timeout = rtp_timeout(args.rtp_timeout);
    cfg.media_keepalive = rtp_timeout(args.rtp_keepalive);
    cfg.rtcp = rtcp_options(args);
    cfg.jitter_buffer = args.jitter_buffer;
    cfg
}

/// Phone settings for an optional account: its AOR user in our Contact,
/// its AOR as From, its outbound proxy as the route of new requests, and
/// its codec preference. `codecs` (from `--codecs`) wins when not empty,
/// then the account's, then [`args::DEFAULT_CODECS`].
pub fn phone_config_for(
    bind: Option<IpAddr>,
    local_port: Option<u16>,
    default_port: u16,
    account: Option<&config::Account>,
    codecs: &[args::CodecArg],
) -> PhoneConfig {
    let ip = bind.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let codecs: Vec<args::CodecArg> = match account.and_then(|a| a.codecs.clone()) {
        _ if !codecs.is_empty() => codecs.to_vec(),
        Some(c) if !c.is_empty() => c,
        _ => args::DEFAULT_CODECS.to_vec(),
    };
    PhoneConfig {
        bind: SocketAddr::new(ip, local_port.unwrap_or(default_port)),
        ua: UaConfig {
            user: account
                .and_then(account::aor_user)
                .unwrap_or_else(|| "sipline".into()),
            from: account.map(|a| a.aor.clone()),
            display_name: None,
            local_port: 0,
            timers: TimerConfig::default(),
            user_agent: user_agent(),
            seed: random_seed(),
            route: account
                .and_then(|a| a.outbound_proxy.as_deref())
                .map(|p| vec![crate::ua::driver::loose_route(p)])
                .unwrap_or_default(),
        },
        codecs: codecs.into_iter().map(Into::into).collect(),
        opus: Default::default(),
        rtp_timeout: Some(std::time::Duration::from_secs(60)),
        media_keepalive: Some(crate::media::keepalive::DEFAULT_INTERVAL),
        rtcp: Default::default(),
        jitter_buffer: Default::default(),
    }
}

/// `--rtcp-interval SECS` and `--no-rtcp-mux`.
pub fn rtcp_options(args: &CommonArgs) -> RtcpOptions {
    RtcpOptions {
        min_interval: std::time::Duration::from_secs_f64(args.rtcp_interval),
        mux: !args.no_rtcp_mux,
    }
}

/// `--rtp-timeout SECS` (0: never).
pub fn rtp_timeout(secs: f64) -> Option<std::time::Duration> {
    (secs > 0.0).then(|| std::time::Duration::from_secs_f64(secs))
}

/// The loopback address of the same family as `ip`.
pub fn loopback_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
    }
}

/// Ctrl-C and SIGTERM as one stream.
pub struct Signals {
    term: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    pub fn new() -> Signals {
        let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        Signals { term }
    }

    /// Waits for the next Ctrl-C or SIGTERM.
    pub async fn recv(&mut self) {
        let term = async {
            match self.term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
        }
    }
}

impl Default for Signals {
    fn default() -> Self {
        Signals::new()
    }
}

#[cfg(test)]
mod tests {
    use super::args::CodecArg;
    use super::*;
    use crate::media::codec::CodecKind;

    fn account(codecs: Option<Vec<CodecArg>>) -> config::Account {
        config::Account {
            name: "alice".into(),
            aor: "sip:alice@example.com".into(),
            username: "alice".into(),
            realm: None,
            registrar: "sip:example.com".into(),
            outbound_proxy: None,
            transport: config::Transport::default(),
            expires: 600,
            codecs,
            register: true,
            password: config::PasswordSource::Prompt,
        }
    }

    #[test]
    fn codec_preference_is_flag_then_account_then_opus_pcmu_pcma() {
        let codecs = |acct: Option<&config::Account>, flag: &[CodecArg]| {
            phone_config_for(None, None, 0, acct, flag).codecs
        };
        let pcma = account(Some(vec![CodecArg::Pcma]));
        assert_eq!(
            codecs(None, &[]),
            [CodecKind::Opus, CodecKind::Pcmu, CodecKind::Pcma]
        );
        assert_eq!(codecs(Some(&account(None)), &[]).len(), 3);
        assert_eq!(codecs(Some(&pcma), &[]), [CodecKind::Pcma]);
        assert_eq!(
            codecs(Some(&pcma), &[CodecArg::Opus, CodecArg::Pcmu]),
            [CodecKind::Opus, CodecKind::Pcmu]
        );
    }
}
