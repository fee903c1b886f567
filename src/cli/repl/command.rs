//! The phone's command language: one command per line, a name (or its
//! short alias) and arguments separated by spaces.
//!
//! This module is pure: [`parse`] turns a line into a [`Command`] or a
//! [`ParseError`], and [`COMMANDS`] is the table that `help`, Tab
//! completion and the README's commands table come from. Running a
//! command is the job of `cli::phone`.

use std::fmt;
use std::time::Duration;

/// One entry of the command table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandSpec {
    pub name: &'static str,
    pub alias: &'static str,
    pub usage: &'static str,
    pub summary: &'static str,
    pub detail: &'static str,
}

/// Every command, in the order `help` lists them.
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "call",
        alias: "c",
        usage: "call <uri|number|contact>",
        summary: "place a call",
        detail: "A SIP URI is dialled as it is. A number or user name without a host gets the \
                 account's domain (call 1001 -> sip:1001@example.com); a name from [contacts] \
                 in the config file dials that contact's URI; user@host gets sip: in front.",
    },
    CommandSpec {
        name: "answer",
        alias: "a",
        usage: "answer [call]",
        summary: "answer a ringing call (the newest one by default)",
        detail: "When another call is active it is put on hold first.",
    },
    CommandSpec {
        name: "reject",
        alias: "rj",
        usage: "reject [code]",
        summary: "refuse the ringing call (default 486 Busy Here)",
        detail: "The code is a SIP status from 400 to 699, e.g. 603 for Decline.",
    },
    CommandSpec {
        name: "hangup",
        alias: "h",
        usage: "hangup [call|all]",
        summary: "end the current call (or the given one, or all)",
        detail: "Before the answer this cancels the call; a ringing incoming call is declined.",
    },
    CommandSpec {
        name: "hold",
        alias: "ho",
        usage: "hold [call]",
        summary: "put the current call on hold (re-INVITE, a=sendonly)",
        detail: "RFC 3264 section 8.4: our audio stops and the peer is asked to stop sending.",
    },
    CommandSpec {
        name: "resume",
        alias: "re",
        usage: "resume [call]",
        summary: "take a held call off hold (re-INVITE, a=sendrecv)",
        detail: "The resumed call becomes the current call.",
    },
    CommandSpec {
        name: "mute",
        alias: "m",
        usage: "mute",
        summary: "stop sending our audio (the call stays up)",
        detail: "Silence is sent instead of the microphone or --play file.",
    },
    CommandSpec {
        name: "unmute",
        alias: "um",
        usage: "unmute",
        summary: "send our audio again",
        detail: "Undoes mute.",
    },
    CommandSpec {
        name: "dtmf",
        alias: "d",
        usage: "dtmf <digits>",
        summary: "send DTMF digits 0-9 * # A-D",
        detail: "Sent as RFC 4733 telephone-events when the call negotiated them, otherwise \
                 as SIP INFO requests (application/dtmf-relay). RFC 4733 digits take about \
                 0.2 s each to send; holding the call meanwhile cuts them off.",
    },
    CommandSpec {
        name: "transfer",
        alias: "t",
        usage: "transfer <uri|number|contact>",
        summary: "blind-transfer the current call (REFER)",
        detail: "RFC 3515: the peer is asked to call the target; its progress (NOTIFY) is shown.",
    },
    CommandSpec {
        name: "calls",
        alias: "l",
        usage: "calls",
        summary: "list the calls with state, peer, duration and codec",
        detail: "The number in the first column is what other commands take as [call].",
    },
    CommandSpec {
        name: "switch",
        alias: "s",
        usage: "switch <call>",
        summary: "make another call the current one",
        detail: "The current call is put on hold and the chosen one resumed.",
    },
    CommandSpec {
        name: "reg",
        alias: "r",
        usage: "reg [refresh|off]",
        summary: "registration status of each account; refresh now; unregister",
        detail: "reg refresh sends a new REGISTER (or registers again after reg off); \
                 reg off removes our bindings.",
    },
    CommandSpec {
        name: "accounts",
        alias: "acc",
        usage: "accounts",
        summary: "list the accounts and their local SIP ports",
        detail: "Accounts come from the config file (and the account flags).",
    },
    CommandSpec {
        name: "devices",
        alias: "dev",
        usage: "devices [in|out <name>]",
        summary: "list sound devices; switch the input or output device",
        detail: "The chosen device is used at once in the current call and in the next \
                 calls. `default` and `none` are accepted as names.",
    },
    CommandSpec {
        name: "stats",
        alias: "st",
        usage: "stats [call]",
        summary: "media statistics of the current call",
        detail: "Codec, packets sent and received, lost, late, jitter.",
    },
    CommandSpec {
        name: "history",
        alias: "hi",
        usage: "history [n]",
        summary: "the last calls (default 10): time, direction, peer, duration, result",
        detail: "Kept in $XDG_DATA_HOME/sipline/history.json (~/.local/share/sipline).",
    },
    CommandSpec {
        name: "trace",
        alias: "tr",
        usage: "trace on|off",
        summary: "print every SIP message sent and received",
        detail: "Passwords in Authorization headers are masked.",
    },
    CommandSpec {
        name: "wait",
        alias: "w",
        usage: "wait <secs>",
        summary: "pause the commands (events keep arriving)",
        detail: "Meant for scripts: sipline -e 'call 1001' -e 'wait 5' -e hangup.",
    },
    CommandSpec {
        name: "wait-for",
        alias: "wf",
        usage: "wait-for <event> [secs]",
        summary: "pause until an event (default timeout 30 s)",
        detail: "Events: incoming, ringing, progress, answered, media, ended, dtmf, held, \
                 resumed, remote_hold, remote_resume, hold_failed, muted, unmuted, transfer, transfer_requested, registered, unregistered, \
                 registration_failed. Any event since the last other command counts, once. \
                 A call that ends while waiting for anything else fails the wait; so does \
                 the timeout (exit status 10 in scripts).",
    },
    CommandSpec {
        name: "help",
        alias: "?",
        usage: "help [command]",
        summary: "list the commands, or explain one",
        detail: "",
    },
    CommandSpec {
        name: "quit",
        alias: "q",
        usage: "quit",
        summary: "hang up every call, unregister and exit (also: exit, Ctrl-D)",
        detail: "",
    },
];

/// The events `wait-for` knows.
pub const EVENTS: &[&str] = &[
    "incoming",
    "ringing",
    "progress",
    "answered",
    "media",
    "ended",
    "dtmf",
    "held",
    "resumed",
    "remote_hold",
    "remote_resume",
    "hold_failed",
    "muted",
    "unmuted",
    "transfer",
    "transfer_requested",
    "registered",
    "unregistered",
    "registration_failed",
];

/// The default `wait-for` timeout.
pub const DEFAULT_WAIT_FOR: Duration = Duration::from_secs(30);

/// A call named by its number in `calls`.
pub type CallId = u32;

/// Which call(s) `hangup` ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Current,
    Call(CallId),
    All,
}

/// `reg` arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegAction {
    Status,
    Refresh,
    Off,
}

/// `devices` arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DevicesAction {
    List,
    Input(String),
    Output(String),
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// An empty line or a comment (`# ...`).
    Nothing,
    Call {
        target: String,
    },
    Answer {
        call: Option<CallId>,
    },
    Reject {
        code: u16,
    },
    Hangup(Which),
    Hold {
        call: Option<CallId>,
    },
    Resume {
        call: Option<CallId>,
    },
    Mute(bool),
    Dtmf {
        digits: String,
    },
    Transfer {
        target: String,
    },
    Calls,
    Switch {
        call: CallId,
    },
    Reg(RegAction),
    Accounts,
    Devices(DevicesAction),
    Stats {
        call: Option<CallId>,
    },
    History {
        count: usize,
    },
    Trace(bool),
    Wait(Duration),
    WaitFor {
        event: String,
        timeout: Duration,
    },
    Help(Option<&'static CommandSpec>),
    Quit,
}

/// Why a line is not a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    Unknown {
        word: String,
    },
    Missing {
        command: &'static str,
        what: &'static str,
    },
    TooMany {
        command: &'static str,
    },
    Bad {
        command: &'static str,
        arg: String,
        why: &'static str,
    },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Unknown { word } => {
                write!(f, "unknown command {word:?} (type help for the list)")
            }
            ParseError::Missing { command, what } => {
                write!(f, "{command}: missing {what} (usage: {})", usage(command))
            }
            ParseError::TooMany { command } => {
                write!(
                    f,
                    "{command}: too many arguments (usage: {})",
                    usage(command)
                )
            }
            ParseError::Bad { command, arg, why } => write!(f, "{command}: {arg:?} {why}"),
        }
    }
}

impl std::error::Error for ParseError {}

fn usage(name: &str) -> &'static str {
    lookup(name).map(|c| c.usage).unwrap_or("")
}

/// The command named `word` (its name or alias; `exit` is `quit`).
pub fn lookup(word: &str) -> Option<&'static CommandSpec> {
    let word = match word {
        "exit" => "quit",
        w => w,
    };
    COMMANDS
        .iter()
        .find(|c| c.name.eq_ignore_ascii_case(word) || c.alias.eq_ignore_ascii_case(word))
}

/// Parses one line.
pub fn parse(line: &str) -> Result<Command, ParseError> {
    let line = line.trim();
    // No command starts with '#': such a line is a comment (scripts).
    if line.is_empty() || line.starts_with('#') {
        return Ok(Command::Nothing);
    }
    let mut words = line.split_whitespace();
    let first = words.next().unwrap_or_default();
    let spec = lookup(first).ok_or_else(|| ParseError::Unknown {
        word: first.to_string(),
    })?;
    let args: Vec<&str> = words.collect();
    parse_args(spec.name, &args)
}

fn parse_args(name: &'static str, args: &[&str]) -> Result<Command, ParseError> {
    let a = Args { name, args };
    Ok(match name {
        "call" => Command::Call {
            target: a.one("a URI, number or contact")?.to_string(),
        },
        "answer" => Command::Answer {
            call: a.optional_call()?,
        },
        "reject" => Command::Reject {
            code: match a.at_most_one()? {
                None => 486,
                Some(s) => status_code(name, s)?,
            },
        },
        "hangup" => Command::Hangup(match a.at_most_one()? {
            None => Which::Current,
            Some(s) if s.eq_ignore_ascii_case("all") => Which::All,
            Some(s) => Which::Call(call_id(name, s)?),
        }),
        "hold" => Command::Hold {
            call: a.optional_call()?,
        },
        "resume" => Command::Resume {
            call: a.optional_call()?,
        },
        "mute" => a.none(Command::Mute(true))?,
        "unmute" => a.none(Command::Mute(false))?,
        "dtmf" => Command::Dtmf {
            digits: dtmf_digits(name, &a.rest("digits")?)?,
        },
        "transfer" => Command::Transfer {
            target: a.one("a target URI, number or contact")?.to_string(),
        },
        "calls" => a.none(Command::Calls)?,
        "switch" => Command::Switch {
            call: call_id(name, a.one("a call number")?)?,
        },
        "reg" => Command::Reg(match a.at_most_one()? {
            None | Some("status") => RegAction::Status,
            Some("refresh") => RegAction::Refresh,
            Some("off") => RegAction::Off,
            Some(other) => return Err(a.bad(other, "is not refresh or off")),
        }),
        "accounts" => a.none(Command::Accounts)?,
        "devices" => Command::Devices(match args {
            [] => DevicesAction::List,
            [dir, device @ ..] if !device.is_empty() => {
                let device = device.join(" ");
                match *dir {
                    "in" | "input" => DevicesAction::Input(device),
                    "out" | "output" => DevicesAction::Output(device),
                    other => return Err(a.bad(other, "is not in or out")),
                }
            }
            [dir] => {
                return Err(match *dir {
                    "in" | "input" | "out" | "output" => ParseError::Missing {
                        command: name,
                        what: "a device name",
                    },
                    other => a.bad(other, "is not in or out"),
                });
            }
            _ => unreachable!("slice patterns above cover every length"),
        }),
        "stats" => Command::Stats {
            call: a.optional_call()?,
        },
        "history" => Command::History {
            count: match a.at_most_one()? {
                None => 10,
                Some(s) => match s.parse::<usize>() {
                    Ok(n) if n > 0 => n,
                    _ => return Err(a.bad(s, "is not a positive count")),
                },
            },
        },
        "trace" => Command::Trace(match a.one("on or off")? {
            "on" => true,
            "off" => false,
            other => return Err(a.bad(other, "is not on or off")),
        }),
        "wait" => Command::Wait(seconds(name, a.one("a number of seconds")?)?),
        "wait-for" => {
            let (event, timeout) = match args {
                [] => {
                    return Err(ParseError::Missing {
                        command: name,
                        what: "an event name",
                    });
                }
                [e] => (*e, DEFAULT_WAIT_FOR),
                [e, t] => (*e, seconds(name, t)?),
                _ => return Err(ParseError::TooMany { command: name }),
            };
            let event = event.to_ascii_lowercase().replace('-', "_");
            if !EVENTS.contains(&event.as_str()) {
                return Err(a.bad(&event, "is not an event name (see help wait-for)"));
            }
            Command::WaitFor { event, timeout }
        }
        "help" => Command::Help(match a.at_most_one()? {
            None => None,
            Some(w) => Some(lookup(w).ok_or_else(|| ParseError::Unknown {
                word: w.to_string(),
            })?),
        }),
        "quit" => a.none(Command::Quit)?,
        _ => unreachable!("every name in COMMANDS is handled"),
    })
}

struct Args<'a> {
    name: &'static str,
    args: &'a [&'a str],
}

impl<'a> Args<'a> {
    fn none(&self, c: Command) -> Result<Command, ParseError> {
        match self.args {
            [] => Ok(c),
            _ => Err(ParseError::TooMany { command: self.name }),
        }
    }

    fn one(&self, what: &'static str) -> Result<&'a str, ParseError> {
        match self.args {
            [] => Err(ParseError::Missing {
                command: self.name,
                what,
            }),
            [x] => Ok(x),
            _ => Err(ParseError::TooMany { command: self.name }),
        }
    }

    fn at_most_one(&self) -> Result<Option<&'a str>, ParseError> {
        match self.args {
            [] => Ok(None),
            [x] => Ok(Some(x)),
            _ => Err(ParseError::TooMany { command: self.name }),
        }
    }

    /// All arguments joined without spaces (`dtmf 1 2 3#`).
    fn rest(&self, what: &'static str) -> Result<String, ParseError> {
        if self.args.is_empty() {
            return Err(ParseError::Missing {
                command: self.name,
                what,
            });
        }
        Ok(self.args.concat())
    }

    fn optional_call(&self) -> Result<Option<CallId>, ParseError> {
        self.at_most_one()?
            .map(|s| call_id(self.name, s))
            .transpose()
    }

    fn bad(&self, arg: &str, why: &'static str) -> ParseError {
        ParseError::Bad {
            command: self.name,
            arg: arg.to_string(),
            why,
        }
    }
}

fn call_id(command: &'static str, s: &str) -> Result<CallId, ParseError> {
    s.trim_start_matches('#')
        .parse::<CallId>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or(ParseError::Bad {
            command,
            arg: s.to_string(),
            why: "is not a call number (see calls)",
        })
}

/// What a refusal code must be: a final error status, RFC 3261 §21.4–21.6.
pub const ERROR_STATUS_RULE: &str = "the code must be 400–699";

/// A SIP error status (4xx–6xx) to refuse a call with, for `reject` and
/// `sipline answer --reject`.
pub fn error_status(s: &str) -> Result<u16, String> {
    match s.trim().parse::<u16>() {
        Ok(n) if (400..700).contains(&n) => Ok(n),
        _ => Err(ERROR_STATUS_RULE.to_string()),
    }
}

fn status_code(command: &'static str, s: &str) -> Result<u16, ParseError> {
    error_status(s).map_err(|_| ParseError::Bad {
        command,
        arg: s.to_string(),
        why: "is not a SIP error status: the code must be 400–699",
    })
}

fn dtmf_digits(command: &'static str, s: &str) -> Result<String, ParseError> {
    match s
        .chars()
        .find(|c| crate::media::dtmf::digit_to_event(*c).is_none())
    {
        Some(c) => Err(ParseError::Bad {
            command,
            arg: c.to_string(),
            why: "is not a DTMF digit (0-9, *, #, A-D)",
        }),
        None => Ok(s.to_ascii_uppercase()),
    }
}

/// Longest `wait`: one day.
const MAX_WAIT: f64 = 86_400.0;

fn seconds(command: &'static str, s: &str) -> Result<Duration, ParseError> {
    match s.trim_end_matches('s').parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=MAX_WAIT).contains(&v) => Ok(Duration::from_secs_f64(v)),
        _ => Err(ParseError::Bad {
            command,
            arg: s.to_string(),
            why: "is not a number of seconds (0 to 86400)",
        }),
    }
}

/// The `help` text: every command, or one command in detail.
pub fn help(spec: Option<&CommandSpec>) -> String {
    match spec {
        Some(c) => {
            let mut s = format!("{}  (alias: {})\n  {}", c.usage, c.alias, c.summary);
            if !c.detail.is_empty() {
                s.push_str("\n  ");
                s.push_str(c.detail);
            }
            s
        }
        None => {
            let width = COMMANDS.iter().map(|c| c.usage.len()).max().unwrap_or(0);
            let mut s = String::from("commands (alias in brackets; help <command> for more):");
            for c in COMMANDS {
                s.push_str(&format!(
                    "\n  {:width$}  [{}]{} {}",
                    c.usage,
                    c.alias,
                    " ".repeat(4usize.saturating_sub(c.alias.len())),
                    c.summary
                ));
            }
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_codes_must_be_400_to_699_in_the_repl_and_on_the_command_line() {
        assert_eq!(error_status("486"), Ok(486));
        assert_eq!(error_status("699"), Ok(699));
        for bad in ["700", "399", "abc", ""] {
            assert_eq!(error_status(bad), Err("the code must be 400–699".into()));
        }
        use clap::Parser;
        let err =
            match crate::cli::args::Cli::try_parse_from(["sipline", "answer", "--reject", "700"]) {
                Ok(_) => panic!("700 is accepted"),
                Err(e) => e.to_string(),
            };
        assert!(err.contains("the code must be 400–699"), "{err}");
        assert!(!err.contains("400..700"), "{err}");
    }

    #[test]
    fn every_command_and_alias_parses_to_the_same_command() {
        assert_eq!(
            parse("call sip:bob@example.com"),
            Ok(Command::Call {
                target: "sip:bob@example.com".into()
            })
        );
        assert_eq!(parse("c 1001"), parse("call 1001"));
        assert_eq!(parse("a"), Ok(Command::Answer { call: None }));
        assert_eq!(parse("answer 2"), Ok(Command::Answer { call: Some(2) }));
        assert_eq!(parse("h"), Ok(Command::Hangup(Which::Current)));
        assert_eq!(parse("hangup #3"), Ok(Command::Hangup(Which::Call(3))));
        assert_eq!(parse("hangup all"), Ok(Command::Hangup(Which::All)));
        assert_eq!(parse("ho"), Ok(Command::Hold { call: None }));
        assert_eq!(parse("re 1"), Ok(Command::Resume { call: Some(1) }));
        assert_eq!(parse("m"), Ok(Command::Mute(true)));
        assert_eq!(parse("um"), Ok(Command::Mute(false)));
        assert_eq!(parse("l"), Ok(Command::Calls));
        assert_eq!(parse("s 2"), Ok(Command::Switch { call: 2 }));
        assert_eq!(parse("acc"), Ok(Command::Accounts));
        assert_eq!(parse("st"), Ok(Command::Stats { call: None }));
        assert_eq!(parse("hi"), Ok(Command::History { count: 10 }));
        assert_eq!(parse("history 3"), Ok(Command::History { count: 3 }));
        assert_eq!(parse("q"), Ok(Command::Quit));
        assert_eq!(parse("exit"), Ok(Command::Quit));
        assert_eq!(parse("QUIT"), Ok(Command::Quit));
        assert_eq!(parse("?"), Ok(Command::Help(None)));
        assert_eq!(
            parse("t 2000"),
            Ok(Command::Transfer {
                target: "2000".into()
            })
        );
    }

    #[test]
    fn aliases_are_unique_and_differ_from_every_name() {
        for (i, a) in COMMANDS.iter().enumerate() {
            for b in &COMMANDS[i + 1..] {
                assert_ne!(a.name, b.name);
                assert_ne!(a.alias, b.alias, "{} and {}", a.name, b.name);
                assert_ne!(a.alias, b.name);
                assert_ne!(a.name, b.alias);
            }
            assert!(a.usage.starts_with(a.name), "{}", a.name);
        }
    }

    #[test]
    fn empty_lines_and_comments_do_nothing() {
        assert_eq!(parse(""), Ok(Command::Nothing));
        assert_eq!(parse("   "), Ok(Command::Nothing));
        assert_eq!(parse("# dial bob"), Ok(Command::Nothing));
    }

    #[test]
    fn reject_defaults_to_486_and_checks_the_code() {
        assert_eq!(parse("reject"), Ok(Command::Reject { code: 486 }));
        assert_eq!(parse("rj 603"), Ok(Command::Reject { code: 603 }));
        assert!(matches!(parse("reject 200"), Err(ParseError::Bad { .. })));
        assert!(matches!(parse("reject busy"), Err(ParseError::Bad { .. })));
    }

    #[test]
    fn dtmf_digits_are_checked_and_joined() {
        assert_eq!(
            parse("dtmf 1#"),
            Ok(Command::Dtmf {
                digits: "1#".into()
            })
        );
        assert_eq!(
            parse("d 1 2 3 *a"),
            Ok(Command::Dtmf {
                digits: "123*A".into()
            })
        );
        assert_eq!(
            parse("dtmf 12x"),
            Err(ParseError::Bad {
                command: "dtmf",
                arg: "x".into(),
                why: "is not a DTMF digit (0-9, *, #, A-D)"
            })
        );
        assert!(matches!(parse("dtmf"), Err(ParseError::Missing { .. })));
    }

    #[test]
    fn missing_extra_and_bad_arguments_are_reported() {
        assert_eq!(
            parse("call"),
            Err(ParseError::Missing {
                command: "call",
                what: "a URI, number or contact"
            })
        );
        assert_eq!(
            parse("call a b"),
            Err(ParseError::TooMany { command: "call" })
        );
        assert_eq!(
            parse("calls now"),
            Err(ParseError::TooMany { command: "calls" })
        );
        assert!(matches!(parse("switch"), Err(ParseError::Missing { .. })));
        assert!(matches!(parse("switch 0"), Err(ParseError::Bad { .. })));
        assert!(matches!(parse("hangup x"), Err(ParseError::Bad { .. })));
        assert_eq!(
            parse("dial 1"),
            Err(ParseError::Unknown {
                word: "dial".into()
            })
        );
        let msg = parse("call").unwrap_err().to_string();
        assert!(msg.contains("call <uri|number|contact>"), "{msg}");
    }

    #[test]
    fn reg_trace_and_devices_take_their_words() {
        assert_eq!(parse("reg"), Ok(Command::Reg(RegAction::Status)));
        assert_eq!(parse("r refresh"), Ok(Command::Reg(RegAction::Refresh)));
        assert_eq!(parse("reg off"), Ok(Command::Reg(RegAction::Off)));
        assert!(matches!(parse("reg on"), Err(ParseError::Bad { .. })));
        assert_eq!(parse("tr on"), Ok(Command::Trace(true)));
        assert_eq!(parse("trace off"), Ok(Command::Trace(false)));
        assert!(matches!(parse("trace"), Err(ParseError::Missing { .. })));
        assert_eq!(parse("dev"), Ok(Command::Devices(DevicesAction::List)));
        assert_eq!(
            parse("devices in USB Headset"),
            Ok(Command::Devices(DevicesAction::Input("USB Headset".into())))
        );
        assert_eq!(
            parse("devices out default"),
            Ok(Command::Devices(DevicesAction::Output("default".into())))
        );
        assert!(matches!(
            parse("devices in"),
            Err(ParseError::Missing { .. })
        ));
        assert!(matches!(
            parse("devices sideways x"),
            Err(ParseError::Bad { .. })
        ));
    }

    #[test]
    fn wait_and_wait_for_take_seconds_and_known_events() {
        assert_eq!(
            parse("wait 2.5"),
            Ok(Command::Wait(Duration::from_millis(2500)))
        );
        assert_eq!(parse("w 3s"), Ok(Command::Wait(Duration::from_secs(3))));
        for bad in ["wait -1", "wait inf", "wait nan", "wait 1e9", "wait x"] {
            assert!(matches!(parse(bad), Err(ParseError::Bad { .. })), "{bad}");
        }
        assert_eq!(
            parse("wait-for answered"),
            Ok(Command::WaitFor {
                event: "answered".into(),
                timeout: DEFAULT_WAIT_FOR
            })
        );
        assert_eq!(
            parse("wf remote-hold 5"),
            Ok(Command::WaitFor {
                event: "remote_hold".into(),
                timeout: Duration::from_secs(5)
            })
        );
        assert!(matches!(
            parse("wait-for lunch"),
            Err(ParseError::Bad { .. })
        ));
    }

    #[test]
    fn help_lists_every_command_and_explains_one() {
        let all = help(None);
        for c in COMMANDS {
            assert!(all.contains(c.usage), "{}", c.name);
        }
        assert_eq!(parse("help dtmf"), Ok(Command::Help(lookup("dtmf"))));
        assert_eq!(parse("help d"), Ok(Command::Help(lookup("dtmf"))));
        let one = help(lookup("dtmf"));
        assert!(
            one.contains("RFC 4733") && one.contains("SIP INFO"),
            "{one}"
        );
        assert!(matches!(
            parse("help nosuch"),
            Err(ParseError::Unknown { .. })
        ));
    }
}
