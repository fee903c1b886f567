//! Command line: clap arguments, the `call`, `answer` and `loopback`
//! commands, exit codes and JSON events.

pub mod answer;
pub mod args;
pub mod call;
pub mod config;
pub mod events;
pub mod exit;
pub mod io;
pub mod loopback;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use args::{Cli, Command, CommonArgs};
use events::Emitter;
use exit::Exit;

use crate::transaction::TimerConfig;
use crate::ua::driver::random_seed;
use crate::ua::{PhoneConfig, UaConfig};

/// Runs a parsed command line; returns the exit code.
pub async fn run(cli: Cli) -> Exit {
    let emit = Emitter { json: cli.json };
    match cli.command {
        Command::Call(a) => call::run(a, emit).await,
        Command::Answer(a) => answer::run(a, emit).await,
        Command::Loopback(a) => loopback::run(a, emit).await,
    }
}

/// The product's User-Agent header value.
pub fn user_agent() -> String {
    format!("sipline/{}", env!("CARGO_PKG_VERSION"))
}

/// Phone settings from the shared options; `default_port` when
/// `--local-port` is not given.
pub fn phone_config(args: &CommonArgs, default_port: u16) -> PhoneConfig {
    let ip = args.bind.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    PhoneConfig {
        bind: SocketAddr::new(ip, args.local_port.unwrap_or(default_port)),
        ua: UaConfig {
            user: args.user.clone(),
            from: None,
            display_name: None,
            local_port: 0,
            timers: TimerConfig::default(),
            user_agent: user_agent(),
            seed: random_seed(),
            route: Vec::new(),
        },
        codecs: args.codecs.iter().map(|c| (*c).into()).collect(),
    }
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
