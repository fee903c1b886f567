//! Command-line arguments (clap).

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use super::config::AccountArgs;
use crate::media::codec::opus::OpusConfig;
use crate::media::jitter::JitterConfig;

/// sipline: a SIP softphone for the terminal.
///
/// Without a command it starts the interactive phone (see `sipline phone
/// --help`); its options may be given without the word `phone`.
#[derive(Debug, Parser)]
#[command(
    name = "sipline",
    version,
    about,
    long_about = None
)]
pub struct Cli {
    /// Print one JSON object per event on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// More log output on stderr (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Options of the interactive phone (when no command is given).
    #[command(flatten)]
    pub phone: PhoneArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The interactive phone (the default): register, call, answer, hold
    /// and hang up from a prompt, or run commands from -e or stdin.
    Phone(PhoneArgs),
    /// Place one call and exit when it ends.
    Call(CallArgs),
    /// Wait for calls and answer them.
    Answer(AnswerArgs),
    /// Call ourselves over 127.0.0.1 and check the audio that comes back.
    Loopback(LoopbackArgs),
    /// Register an account and stay registered until Ctrl-C.
    Register(RegisterArgs),
    /// Ask a STUN server for our public address and how the NAT behaves
    /// (RFC 5780), with one line of advice.
    NatCheck(NatCheckArgs),
}

/// Options of the interactive phone.
#[derive(Debug, Args, Clone, Default, PartialEq)]
pub struct PhoneArgs {
    /// Run this phone command (repeatable, in order), then quit; e.g.
    /// -e "call sip:bob@192.0.2.7" -e "wait-for answered" -e "dtmf 1#" -e hangup.
    #[arg(short = 'e', long = "execute", value_name = "COMMAND")]
    pub execute: Vec<String>,
    /// Local SIP UDP port of the first account (default 5060, else any;
    /// 0: any free port).
    #[arg(long, value_name = "PORT")]
    pub local_port: Option<u16>,
    /// Local address to bind (default: all IPv4 addresses; use :: for IPv6).
    #[arg(long, value_name = "IP")]
    pub bind: Option<IpAddr>,
    /// Send this WAV file in every call instead of the microphone.
    #[arg(long, value_name = "FILE.wav")]
    pub play: Option<PathBuf>,
    /// Record each call (FILE.wav, then FILE-2.wav, ...) instead of
    /// playing it on the speaker.
    #[arg(long, value_name = "FILE.wav")]
    pub record: Option<PathBuf>,
    /// Use no sound card at all (--play and --record still work).
    #[arg(long, conflicts_with_all = ["input_device", "output_device"])]
    pub null_audio: bool,
    /// Capture device by name (default: the system default).
    #[arg(long, value_name = "NAME")]
    pub input_device: Option<String>,
    /// Playback device by name (default: the system default).
    #[arg(long, value_name = "NAME")]
    pub output_device: Option<String>,
    /// Codecs in order of preference.
    #[arg(long, value_delimiter = ',')]
    pub codecs: Vec<CodecArg>,
    /// Opus target bitrate in bit/s (500-512000).
    #[arg(long, value_name = "BPS", default_value_t = OpusConfig::default().bitrate,
          value_parser = clap::value_parser!(u32).range(500..=512_000))]
    pub opus_bitrate: u32,
    /// Opus encoder complexity, 0 (cheapest) to 10 (best).
    #[arg(long, value_name = "0-10", default_value_t = OpusConfig::default().complexity,
          value_parser = clap::value_parser!(u8).range(0..=10))]
    pub opus_complexity: u8,
    /// Hang up a call whose peer has sent no RTP for this long; 0 never.
    #[arg(long, value_name = "SECS", default_value_t = 60.0, value_parser = seconds)]
    pub rtp_timeout: f64,
    /// On hold, send a STUN keep-alive on the RTP socket this often so the
    /// NAT keeps the media path open; 0 never.
    #[arg(long, value_name = "SECS", default_value_t = 15.0, value_parser = seconds)]
    pub rtp_keepalive: f64,
    /// Minimum RTCP report interval (RFC 3550 §6.2).
    #[arg(long, value_name = "SECS", default_value_t = 5.0, value_parser = rtcp_interval)]
    pub rtcp_interval: f64,
    /// Neither offer nor accept RTCP multiplexed on the RTP port (RFC 5761).
    #[arg(long)]
    pub no_rtcp_mux: bool,
    /// Bounds of the adaptive jitter buffer's delay, in milliseconds.
    #[arg(long, value_name = "MIN-MAX", default_value = "20-300", value_parser = jitter_bounds)]
    pub jitter_buffer: JitterConfig,
    /// User part of our Contact when no account is used.
    #[arg(long, default_value = "sipline", value_parser = user_part)]
    pub user: String,
    #[command(flatten)]
    pub account: AccountArgs,
}

impl Cli {
    /// Refuses phone options given before a command (`sipline --play
    /// x.wav answer`): they would be ignored. (clap's
    /// `args_conflicts_with_subcommands` would also refuse the global
    /// `--json` and `-v`.)
    pub fn check(&self) -> Result<(), String> {
        if self.command.is_none() {
            return Ok(());
        }
        let untouched = Cli::try_parse_from(["sipline"])
            .map(|c| c.phone)
            .unwrap_or_default();
        if self.phone != untouched {
            return Err("phone options go after the command name \
                        (e.g. sipline answer --local-port 5062), or without a command"
                .into());
        }
        Ok(())
    }
}

impl PhoneArgs {
    /// The options `call` and `answer` share, for opening each call's audio.
    pub fn common(&self) -> CommonArgs {
        CommonArgs {
            local_port: self.local_port,
            bind: self.bind,
            play: self.play.clone(),
            record: self.record.clone(),
            null_audio: self.null_audio,
            input_device: self.input_device.clone(),
            output_device: self.output_device.clone(),
            codecs: self.codecs.clone(),
            opus_bitrate: self.opus_bitrate,
            opus_complexity: self.opus_complexity,
            duration: None,
            rtp_timeout: self.rtp_timeout,
            rtp_keepalive: self.rtp_keepalive,
            rtcp_interval: self.rtcp_interval,
            no_rtcp_mux: self.no_rtcp_mux,
            user: self.user.clone(),
            jitter_buffer: self.jitter_buffer,
        }
    }
}

#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// Register, print the bindings the registrar reports, unregister, exit.
    #[arg(long)]
    pub once: bool,
    /// Local SIP UDP port (default any).
    #[arg(long, value_name = "PORT")]
    pub local_port: Option<u16>,
    /// Local address to bind (default all IPv4 addresses).
    #[arg(long, value_name = "IP")]
    pub bind: Option<IpAddr>,
    #[command(flatten)]
    pub account: AccountArgs,
}

/// Options of `nat-check`.
#[derive(Debug, Args, Clone)]
pub struct NatCheckArgs {
    /// The STUN server (port 3478 by default). For the mapping and
    /// filtering behaviour it must support RFC 5780 (two IP addresses).
    #[arg(long, value_name = "HOST[:PORT]")]
    pub stun: Option<String>,
}

/// Options shared by `call` and `answer`.
#[derive(Debug, Args, Clone)]
pub struct CommonArgs {
    /// Local SIP UDP port (0: any free port).
    #[arg(long, value_name = "PORT")]
    pub local_port: Option<u16>,
    /// Local address to bind (default: all IPv4 addresses; use :: for IPv6).
    #[arg(long, value_name = "IP")]
    pub bind: Option<IpAddr>,
    /// Send this WAV file (any rate and channel count) instead of the microphone.
    #[arg(long, value_name = "FILE.wav")]
    pub play: Option<PathBuf>,
    /// Write the received audio to this WAV file instead of the speaker.
    #[arg(long, value_name = "FILE.wav")]
    pub record: Option<PathBuf>,
    /// Use no sound card at all (--play and --record still work).
    #[arg(long, conflicts_with_all = ["input_device", "output_device"])]
    pub null_audio: bool,
    /// Capture device by name (default: the system default).
    #[arg(long, value_name = "NAME")]
    pub input_device: Option<String>,
    /// Playback device by name (default: the system default).
    #[arg(long, value_name = "NAME")]
    pub output_device: Option<String>,
    /// Codecs in order of preference [default: the account's `codecs`, else
    /// opus,pcmu,pcma]. With opus in the list, call audio runs at 48 kHz.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub codecs: Vec<CodecArg>,
    /// Opus target bitrate in bit/s (500-512000).
    #[arg(long, value_name = "BPS", default_value_t = OpusConfig::default().bitrate,
          value_parser = clap::value_parser!(u32).range(500..=512_000))]
    pub opus_bitrate: u32,
    /// Opus encoder complexity, 0 (cheapest) to 10 (best).
    #[arg(long, value_name = "0-10", default_value_t = OpusConfig::default().complexity,
          value_parser = clap::value_parser!(u8).range(0..=10))]
    pub opus_complexity: u8,
    /// Hang up this many seconds after the answer.
    #[arg(long, value_name = "SECS", value_parser = seconds)]
    pub duration: Option<f64>,
    /// Hang up when the peer has sent no RTP for this long (after its
    /// first packet); 0 never.
    #[arg(long, value_name = "SECS", default_value_t = 60.0, value_parser = seconds)]
    pub rtp_timeout: f64,
    /// On hold, send a STUN keep-alive on the RTP socket this often so the
    /// NAT keeps the media path open; 0 never.
    #[arg(long, value_name = "SECS", default_value_t = 15.0, value_parser = seconds)]
    pub rtp_keepalive: f64,
    /// Minimum RTCP report interval (RFC 3550 §6.2 recommends 5 s; reports
    /// are randomized around it, the first after half of it).
    #[arg(long, value_name = "SECS", default_value_t = 5.0, value_parser = rtcp_interval)]
    pub rtcp_interval: f64,
    /// Neither offer nor accept RTCP multiplexed on the RTP port (RFC 5761):
    /// RTCP always uses its own port.
    #[arg(long)]
    pub no_rtcp_mux: bool,
    /// User part of our Contact and default From.
    #[arg(long, default_value = "sipline", value_parser = user_part)]
    pub user: String,
    /// Bounds of the adaptive jitter buffer's delay, in milliseconds.
    #[arg(long, value_name = "MIN-MAX", default_value = "20-300", value_parser = jitter_bounds)]
    pub jitter_buffer: JitterConfig,
}

#[derive(Debug, Args)]
pub struct CallArgs {
    /// Whom to call, e.g. sip:bob@192.0.2.7:5060.
    pub uri: String,
    /// Our From URI, e.g. sip:alice@example.com.
    #[arg(long, value_name = "URI", value_parser = sip_uri)]
    pub from: Option<String>,
    /// Give up (CANCEL) when not answered within this many seconds (more
    /// than 0; without it the call rings until the callee or the network
    /// ends it).
    #[arg(long, value_name = "SECS", value_parser = ring_seconds)]
    pub timeout: Option<f64>,
    /// Send these DTMF digits (0-9 * # A-D) as RFC 4733 events after the answer.
    #[arg(long, value_name = "DIGITS", value_parser = dtmf_digits)]
    pub dtmf: Option<String>,
    /// Seconds after the answer before the DTMF digits are sent.
    #[arg(long, value_name = "SECS", default_value_t = 1.0, value_parser = seconds)]
    pub dtmf_after: f64,
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub account: AccountArgs,
}

#[derive(Debug, Args)]
pub struct AnswerArgs {
    /// Exit after this many calls.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub count: Option<u32>,
    /// Answer this many seconds after the call arrives (it rings meanwhile).
    #[arg(long, value_name = "SECS", default_value_t = 0.0, value_parser = seconds)]
    pub answer_after: f64,
    /// Refuse calls with this status instead of answering (e.g. 486, 603).
    #[arg(long, value_name = "CODE", value_parser = crate::cli::repl::command::error_status)]
    pub reject: Option<u16>,
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub account: AccountArgs,
}

#[derive(Debug, Args)]
pub struct LoopbackArgs {
    /// How long the call lasts after the answer (at least 2 s).
    #[arg(long, value_name = "SECS", default_value_t = 3.0, value_parser = loopback_seconds)]
    pub duration: f64,
    /// Codec to use.
    #[arg(long, default_value = "pcmu")]
    pub codec: CodecArg,
    /// Do not play the received audio on the sound card.
    #[arg(long, conflicts_with = "device")]
    pub null_audio: bool,
    /// Listen to the effect: the caller speaks from this device's
    /// microphone (instead of the test signal) and the callee plays what it
    /// hears on its speaker ("default" when no name is given). The
    /// caller -> callee direction is measured against what the microphone
    /// picked up; the other direction still carries the test signal.
    #[arg(long, value_name = "NAME", num_args = 0..=1, default_missing_value = "default")]
    pub device: Option<String>,
    /// Emulated packet loss in each direction, in percent (random, or in
    /// bursts with --loss-burst).
    #[arg(long, value_name = "PCT", default_value_t = 0.0, value_parser = percent)]
    pub loss: f64,
    /// Lose packets in bursts of this mean length (Gilbert model) instead of
    /// independently; the long-run loss stays --loss.
    #[arg(long, value_name = "PACKETS", value_parser = burst_length)]
    pub loss_burst: Option<f64>,
    /// Emulated jitter: each packet is delayed by an extra 0 to MS
    /// milliseconds (uniform), without overtaking the one before it.
    #[arg(long, value_name = "MS", default_value_t = 0.0, value_parser = millis)]
    pub jitter: f64,
    /// Percentage of packets delivered after the packet that follows them.
    #[arg(long, value_name = "PCT", default_value_t = 0.0, value_parser = percent)]
    pub reorder: f64,
    /// Emulated one-way network delay in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0.0, value_parser = millis)]
    pub delay: f64,
    /// Clock drift of the caller against the callee, in percent (0.1: the
    /// caller's clock runs 0.1 % fast; -0.1: slow). At most ±1.
    #[arg(long, value_name = "PCT", default_value_t = 0.0, allow_negative_numbers = true, value_parser = drift_percent)]
    pub drift: f64,
    /// Seed of the emulated network's random choices (default: random; the
    /// report shows the seed used).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Fail (exit code 8) when the estimated MOS of either direction is
    /// below this.
    #[arg(long, value_name = "MOS", value_parser = mos_value)]
    pub min_mos: Option<f64>,
}

/// A percentage, 0 to 100.
fn percent(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=100.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?}: give a percentage between 0 and 100")),
    }
}

/// Milliseconds of emulated delay or jitter, 0 to 2000.
fn millis(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=2000.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?}: give milliseconds between 0 and 2000")),
    }
}

/// A mean burst length of at least one packet.
fn burst_length(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (1.0..=1000.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "{s:?}: give a mean burst length between 1 and 1000 packets"
        )),
    }
}

/// Clock drift in percent, within ±1.
fn drift_percent(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (-1.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?}: give a drift between -1 and 1 percent")),
    }
}

/// A MOS threshold, 1 to 5.
fn mos_value(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (1.0..=5.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?}: give a MOS between 1 and 5")),
    }
}

/// Codec names on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CodecArg {
    Opus,
    Pcmu,
    Pcma,
}

/// The codec order when neither `--codecs` nor the account says.
pub const DEFAULT_CODECS: [CodecArg; 3] = [CodecArg::Opus, CodecArg::Pcmu, CodecArg::Pcma];

impl CommonArgs {
    /// The Opus settings of `--opus-bitrate` and `--opus-complexity`.
    pub fn opus(&self) -> OpusConfig {
        OpusConfig {
            bitrate: self.opus_bitrate,
            complexity: self.opus_complexity,
            ..OpusConfig::default()
        }
    }
}

impl From<CodecArg> for crate::media::codec::CodecKind {
    fn from(c: CodecArg) -> Self {
        match c {
            CodecArg::Pcmu => crate::media::codec::CodecKind::Pcmu,
            CodecArg::Pcma => crate::media::codec::CodecKind::Pcma,
            CodecArg::Opus => crate::media::codec::CodecKind::Opus,
        }
    }
}

/// The longest time option accepted (about 115 days).
const MAX_SECONDS: f64 = 1.0e7;

/// A time in seconds: finite, not negative, at most [`MAX_SECONDS`].
fn seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !v.is_finite() || !(0.0..=MAX_SECONDS).contains(&v) {
        return Err(format!("{s:?}: give seconds between 0 and {MAX_SECONDS}"));
    }
    Ok(v)
}

/// An RTCP interval: more than 0.01 s (a report per packet makes no sense).
fn rtcp_interval(s: &str) -> Result<f64, String> {
    let v = seconds(s)?;
    if v < 0.01 {
        return Err(format!("{s:?}: the RTCP interval is at least 0.01 s"));
    }
    Ok(v)
}

/// `--jitter-buffer MIN-MAX`: the jitter buffer's delay bounds in ms.
fn jitter_bounds(s: &str) -> Result<JitterConfig, String> {
    let (min, max) = s
        .split_once('-')
        .ok_or_else(|| format!("{s:?}: give MIN-MAX in milliseconds, e.g. 20-300"))?;
    let ms = |v: &str| {
        v.trim()
            .parse::<u64>()
            .map(std::time::Duration::from_millis)
            .map_err(|_| format!("{s:?}: {v:?} is not a whole number of milliseconds"))
    };
    JitterConfig::new(ms(min)?, ms(max)?).map_err(|e| format!("{s:?}: {e}"))
}

/// A loopback call needs at least a second of audio to measure.
/// A ring timeout: more than 0 s (0 would cancel before anyone can answer).
fn ring_seconds(s: &str) -> Result<f64, String> {
    let v = seconds(s)?;
    if v <= 0.0 {
        return Err(format!("{s:?}: the ring timeout must be more than 0 s"));
    }
    Ok(v)
}

fn loopback_seconds(s: &str) -> Result<f64, String> {
    let v = seconds(s)?;
    // Below 2 s too little audio is left after the delay search window to
    // find the test signal in.
    if v < 2.0 {
        return Err(format!("{s:?}: a loopback call lasts at least 2 s"));
    }
    Ok(v)
}

/// DTMF digits (for `--dtmf`).
fn dtmf_digits(s: &str) -> Result<String, String> {
    match s
        .chars()
        .find(|c| crate::media::dtmf::digit_to_event(*c).is_none())
    {
        Some(c) => Err(format!("{c:?} is not a DTMF digit (0-9, *, #, A-D)")),
        None if s.is_empty() => Err("no digits".into()),
        None => Ok(s.to_string()),
    }
}

/// A SIP or SIPS URI (for `--from`).
fn sip_uri(s: &str) -> Result<String, String> {
    match crate::sip::Uri::parse(s) {
        Ok(crate::sip::Uri::Sip(_)) => Ok(s.to_string()),
        _ => Err(format!(
            "{s:?} is not a SIP URI (e.g. sip:alice@example.com)"
        )),
    }
}

/// A user part that needs no escaping (for `--user`).
fn user_part(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/".contains(&b));
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!("{s:?} is not a plain SIP user name"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_options_refuse_infinite_negative_and_huge_values() {
        assert_eq!(seconds("2.5"), Ok(2.5));
        for bad in ["inf", "nan", "-1", "1e20", "abc"] {
            assert!(seconds(bad).is_err(), "{bad}");
        }
        assert!(loopback_seconds("0").is_err());
    }

    #[test]
    fn null_audio_conflicts_with_naming_a_sound_card_device() {
        for cmd in [
            &["sipline", "call", "sip:a@127.0.0.1"][..],
            &["sipline", "answer"],
            &["sipline"],
        ] {
            for dev in ["--input-device", "--output-device"] {
                let mut argv = cmd.to_vec();
                argv.extend(["--null-audio", dev, "nosuch"]);
                let err = Cli::try_parse_from(&argv).expect_err("refused");
                assert_eq!(
                    err.kind(),
                    clap::error::ErrorKind::ArgumentConflict,
                    "{argv:?}"
                );
            }
            let mut argv = cmd.to_vec();
            argv.push("--null-audio");
            assert!(Cli::try_parse_from(&argv).is_ok(), "{argv:?}");
        }
    }

    #[test]
    fn a_ring_timeout_of_zero_is_a_usage_error() {
        let parse =
            |t: &str| Cli::try_parse_from(["sipline", "call", "sip:a@127.0.0.1", "--timeout", t]);
        assert!(parse("0").is_err());
        assert!(parse("0.0").is_err());
        assert!(parse("0.5").is_ok());
    }

    #[test]
    fn codec_and_opus_options_parse_and_are_bounded() {
        let cli = Cli::try_parse_from([
            "sipline",
            "call",
            "sip:a@127.0.0.1",
            "--codecs",
            "pcma,opus",
            "--opus-bitrate",
            "24000",
            "--opus-complexity",
            "3",
        ])
        .expect("valid options");
        let Some(Command::Call(call)) = cli.command else {
            panic!("call command")
        };
        assert_eq!(call.common.codecs, vec![CodecArg::Pcma, CodecArg::Opus]);
        assert_eq!(
            (call.common.opus().bitrate, call.common.opus().complexity),
            (24000, 3)
        );
        let defaults = Cli::try_parse_from(["sipline", "answer"]).expect("defaults");
        let Some(Command::Answer(answer)) = defaults.command else {
            panic!("answer command")
        };
        assert!(
            answer.common.codecs.is_empty(),
            "no --codecs: account or default order"
        );
        assert_eq!(answer.common.opus(), OpusConfig::default());
        for bad in [
            ["--opus-complexity", "11"],
            ["--opus-bitrate", "100"],
            ["--codecs", "g729"],
        ] {
            let mut argv = vec!["sipline", "answer"];
            argv.extend(bad);
            assert!(Cli::try_parse_from(argv).is_err(), "{bad:?}");
        }
        assert!(
            Cli::try_parse_from(["sipline", "loopback", "--codec", "opus"]).is_ok(),
            "loopback --codec opus"
        );
    }

    #[test]
    fn no_command_means_the_phone_and_subcommands_still_work() {
        let cli = Cli::try_parse_from(["sipline"]).unwrap();
        assert!(cli.command.is_none());
        assert!(cli.phone.execute.is_empty());
        let cli = Cli::try_parse_from([
            "sipline",
            "--json",
            "--local-port",
            "0",
            "--null-audio",
            "-e",
            "call 1001",
            "-e",
            "hangup",
            "--config",
            "/tmp/x.toml",
        ])
        .unwrap();
        assert!(cli.command.is_none() && cli.json && cli.phone.null_audio);
        assert_eq!(cli.phone.local_port, Some(0));
        assert_eq!(cli.phone.execute, ["call 1001", "hangup"]);
        assert_eq!(
            cli.phone.account.config.as_deref(),
            Some(std::path::Path::new("/tmp/x.toml"))
        );
        let cli = Cli::try_parse_from(["sipline", "phone", "--play", "a.wav"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Phone(p)) if p.play.is_some()));
        let cli = Cli::try_parse_from(["sipline", "answer", "--local-port", "5062"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Answer(_))));
        assert_eq!(cli.check(), Ok(()));
        let cli = Cli::try_parse_from(["sipline", "--json", "-v", "answer"]).unwrap();
        assert!(cli.json && cli.check().is_ok());
        let cli = Cli::try_parse_from(["sipline", "--null-audio", "answer"]).unwrap();
        assert!(cli.check().is_err());
        assert!(Cli::try_parse_from(["sipline", "call"]).is_err());
    }

    #[test]
    fn from_and_user_are_checked() {
        assert!(sip_uri("sip:a@b").is_ok());
        assert!(sip_uri("notauri").is_err());
        assert!(sip_uri("sip:a@b>;evil=1").is_err());
        assert!(user_part("alice").is_ok());
        assert!(user_part("a b").is_err());
        assert!(user_part("").is_err());
        assert!(user_part("a\r\nX: y").is_err());
    }

    #[test]
    fn jitter_buffer_option_takes_min_max_milliseconds() {
        let ms = std::time::Duration::from_millis;
        assert_eq!(
            jitter_bounds("40-120"),
            JitterConfig::new(ms(40), ms(120)).map_err(|e| e.to_string())
        );
        for bad in ["300-20", "20", "a-b", "20-", "-5-10", "20-99999"] {
            assert!(jitter_bounds(bad).is_err(), "{bad}");
        }
        let cli = Cli::try_parse_from(["sipline", "answer", "--jitter-buffer", "30-200"])
            .expect("valid arguments");
        let Some(Command::Answer(args)) = cli.command else {
            panic!("parsed as answer");
        };
        assert_eq!(args.common.jitter_buffer.min_delay, ms(30));
        let cli = Cli::try_parse_from(["sipline", "answer"]).expect("valid arguments");
        let Some(Command::Answer(args)) = cli.command else {
            panic!("parsed as answer");
        };
        assert_eq!(args.common.jitter_buffer, JitterConfig::default());
    }
}
