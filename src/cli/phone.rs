//! `sipline` (or `sipline phone`): the interactive softphone.
//!
//! It loads the config, starts one [`Phone`] per account (the chosen
//! account first, then every other account of the file that registers;
//! without accounts one phone for direct calls), registers them, and runs
//! commands from one of three sources:
//! - a terminal: a rustyline prompt showing the state, events printed
//!   above the line being typed (`repl::term`);
//! - `-e COMMAND` options, in order, then quit;
//! - a non-terminal stdin, line by line, then quit.
//!
//! In the last two (scripts) a failing command stops the script with its
//! exit code; at the prompt it is only reported. `wait` and `wait-for`
//! pause the commands while events keep arriving. Each phone's events
//! are forwarded, tagged with the phone's line number, into one channel
//! that this loop reads; call numbers shown to the user map to a
//! (line, call handle) pair in `repl::state::Calls`.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::account;
use super::args::{CommonArgs, PhoneArgs};
use super::config::{self, Account};
use super::events::{Emitter, describe_end};
use super::exit::Exit;
use super::io::{check_io, open_io};
use super::repl::command::{self, CallId, Command, DevicesAction, RegAction, Which};
use super::repl::history;
use super::repl::state::{CallEntry, Calls, Direction, Phase, caller, clock, short_peer};
use super::repl::target;
use super::repl::term::{self, Input, LivePrompt, PrintQueue, SharedWords, Terminal, Words};
use super::repl::waits::EventLog;
use super::{Signals, phone_config_for, rtp_timeout};
use crate::media::audio::AudioFormat;
use crate::media::session::DtmfError;
use crate::ua::accounts::{RegEvent, RegHandle};
use crate::ua::driver::{DriverError, RegisterSpec};
use crate::ua::{CallHandle, EndReason, Phone, PhoneEvent, UaEvent};

/// How long hanging up and unregistering may take when quitting.
const QUIT_GRACE: Duration = Duration::from_secs(5);

/// Runs the phone until `quit`, the end of the script or a signal.
pub async fn run(args: PhoneArgs, emit: Emitter) -> Exit {
    let cfg = match config::load(args.account.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            return Exit::Usage;
        }
    };
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    let chosen = match config::select_account(&cfg, &args.account.overrides) {
        Ok(a) => a,
        Err(e) => {
            tracing::error!("{e}");
            return Exit::Usage;
        }
    };
    let mut accounts: Vec<Account> = chosen.into_iter().collect();
    for a in &cfg.accounts {
        if a.register && !accounts.iter().any(|x| x.name == a.name) {
            accounts.push(a.clone());
        }
    }
    let common = args.common();
    if let Err(e) = check_io(&common, AudioFormat::NARROWBAND) {
        tracing::error!("{e}");
        return Exit::Audio;
    }

    let (ev_tx, mut events) = mpsc::unbounded_channel();
    let mut lines = Vec::new();
    let wanted: Vec<Option<Account>> = if accounts.is_empty() {
        vec![None]
    } else {
        accounts.into_iter().map(Some).collect()
    };
    for (idx, acct) in wanted.into_iter().enumerate() {
        match start_line(idx, acct, &args, ev_tx.clone()).await {
            Ok(l) => lines.push(l),
            Err(e) => {
                for l in lines {
                    l.phone.shutdown().await;
                }
                return e;
            }
        }
    }
    drop(ev_tx);

    let interactive = args.execute.is_empty()
        && std::io::stdin().is_terminal()
        && std::io::stdout().is_terminal();
    let words: SharedWords = Arc::new(Mutex::new(Words {
        contacts: cfg.contacts.keys().cloned().collect(),
        devices: Vec::new(),
    }));
    let data_dir = history::data_dir();
    let live: LivePrompt = Arc::new(Mutex::new(String::new()));
    let (terminal, mut input, printer) = if interactive {
        let prompt_history = data_dir.as_ref().map(|d| d.join("prompt_history"));
        match Terminal::start(words.clone(), live.clone(), prompt_history) {
            Ok((mut t, p)) => {
                let (_, placeholder) = mpsc::unbounded_channel();
                let rx = std::mem::replace(&mut t.input, placeholder);
                let queue = PrintQueue::start(p);
                term::route_logs(Some(queue.clone()));
                (Some(t), rx, Some(queue))
            }
            Err(e) => {
                tracing::warn!("no line editor ({e}): reading plain lines");
                (None, term::stdin_lines(), None)
            }
        }
    } else if !args.execute.is_empty() {
        (None, term::script_lines(&args.execute), None)
    } else {
        (None, term::stdin_lines(), None)
    };
    if interactive {
        spawn_device_listing(words.clone());
    }

    let mut app = App {
        lines,
        calls: Calls::default(),
        out: Out {
            json: emit.json,
            printer,
        },
        common,
        contacts: cfg.contacts.clone(),
        history_path: data_dir.map(|d| d.join("history.json")),
        words,
        answered_count: 0,
        log: EventLog::default(),
        script: !interactive,
        live,
        quit: false,
        exit: Exit::Ok,
    };
    for (i, l) in app.lines.iter().enumerate() {
        let addr = l.phone.local_addr();
        let who = l
            .account
            .as_ref()
            .map(|a| format!(" for {}", a.aor))
            .unwrap_or_default();
        app.out.event(
            "listening",
            json!({"line": i, "address": addr.to_string(), "port": addr.port(),
                   "account": l.account.as_ref().map(|a| a.name.clone())}),
            &format!("listening on {addr}{who}"),
        );
    }
    if interactive {
        app.out
            .line("sipline phone: type help for the commands, Tab to complete");
    }

    let mut signals = Signals::new();
    let mut waiting: Option<Wait> = None;
    let far = Instant::now() + Duration::from_secs(86_400 * 365);
    app.update_live_prompt();
    if let Some(t) = &terminal {
        t.prompt(app.prompt());
    }
    while !app.quit {
        let deadline = waiting.as_ref().map(|w| w.deadline).unwrap_or(far);
        let mut prompt_again = false;
        tokio::select! {
            ev = events.recv() => match ev {
                Some((line, ev)) => {
                    app.on_event(line, ev);
                    if let Some(w) = &waiting
                        && let Some(result) = app.check_wait(w)
                    {
                        waiting = None;
                        prompt_again = true;
                        if let Err(f) = result {
                            app.fail(f);
                        }
                    }
                }
                None => {
                    tracing::error!("every phone task stopped");
                    app.exit = Exit::Internal;
                    break;
                }
            },
            inp = input.recv(), if waiting.is_none() => match inp {
                Some(Input::Line(text)) => {
                    match app.run_line(&text).await {
                        Ok(Some(w)) => match app.check_wait(&w) {
                            Some(Ok(())) => prompt_again = true,
                            Some(Err(f)) => {
                                app.fail(f);
                                prompt_again = true;
                            }
                            None => waiting = Some(w),
                        },
                        Ok(None) => prompt_again = true,
                        Err(f) => {
                            app.fail(f);
                            prompt_again = true;
                        }
                    }
                }
                Some(Input::Eof) | None => app.quit = true,
            },
            _ = tokio::time::sleep_until(deadline.into()), if waiting.is_some() => {
                let w = waiting.take().expect("guarded by is_some");
                prompt_again = true;
                if let Some(event) = w.event {
                    app.fail(Fail {
                        exit: Exit::WaitTimeout,
                        msg: format!("wait-for {event}: not within {:.0} s", w.timeout.as_secs_f64()),
                    });
                }
            }
            _ = signals.recv() => {
                app.out.line("interrupted: hanging up and quitting");
                app.quit = true;
                if app.script {
                    // The script did not run to its end.
                    app.exit = Exit::Interrupted;
                }
            }
        }
        app.update_live_prompt();
        if prompt_again
            && !app.quit
            && waiting.is_none()
            && let Some(t) = &terminal
        {
            t.prompt(app.prompt());
        }
    }
    app.shutdown(&mut events).await;
    if let Some(t) = terminal {
        term::route_logs(None);
        t.stop();
    }
    app.exit
}

/// Lists the sound devices in the background for Tab completion.
fn spawn_device_listing(words: SharedWords) {
    tokio::task::spawn_blocking(move || {
        if let Ok(list) = crate::media::audio::list_devices() {
            let names = list.into_iter().map(|d| d.name).collect();
            if let Ok(mut w) = words.lock() {
                w.devices = names;
            }
        }
    });
}

/// One account (or the account-less phone) with its own SIP socket.
struct Line {
    phone: Phone,
    /// The audio format of this line's calls: the highest rate among its
    /// codecs (48 kHz with Opus), as `sipline call` uses.
    format: AudioFormat,
    account: Option<Account>,
    reg: Option<RegHandle>,
    reg_state: RegStatus,
}

#[derive(Debug, Clone, PartialEq)]
enum RegStatus {
    /// The account does not register (or there is no account).
    NotUsed,
    Registering,
    Registered {
        expires: u32,
    },
    Unregistering,
    Unregistered,
    Failed(String),
}

impl RegStatus {
    fn word(&self) -> String {
        match self {
            RegStatus::NotUsed => "not registering".into(),
            RegStatus::Registering => "registering".into(),
            RegStatus::Registered { expires } => format!("registered ({expires} s)"),
            RegStatus::Unregistering => "unregistering".into(),
            RegStatus::Unregistered => "unregistered".into(),
            RegStatus::Failed(why) => format!("failed: {why}"),
        }
    }
}

async fn start_line(
    idx: usize,
    account: Option<Account>,
    args: &PhoneArgs,
    events: mpsc::UnboundedSender<(usize, PhoneEvent)>,
) -> Result<Line, Exit> {
    // Only the first line takes --local-port (default 5060); the others
    // take any free port.
    let port = if idx == 0 { args.local_port } else { Some(0) };
    let mut cfg = phone_config_for(args.bind, port, 5060, account.as_ref(), &args.codecs);
    if account.is_none() {
        cfg.ua.user = args.user.clone();
    }
    let common = args.common();
    cfg.rtp_timeout = rtp_timeout(args.rtp_timeout);
    cfg.media_keepalive = rtp_timeout(args.rtp_keepalive);
    cfg.opus = common.opus();
    cfg.rtcp = super::rtcp_options(&common);
    cfg.jitter_buffer = args.jitter_buffer;
    let format = AudioFormat::for_codecs(&cfg.codecs);
    let started = match Phone::start(cfg.clone()).await {
        Err(e) if port.is_none() => {
            tracing::info!("{e}: using another port");
            cfg.bind.set_port(0);
            Phone::start(cfg).await
        }
        other => other,
    };
    let (phone, mut rx) = started.map_err(|e| {
        tracing::error!("{e}");
        Exit::Network
    })?;
    match phone
        .start_nat(args.account.nat.options(account.as_ref()))
        .await
    {
        Ok(Some(found)) => {
            let _ = events.send((idx, PhoneEvent::Ua(UaEvent::Nat(found))));
        }
        Ok(None) => {}
        Err(e) => tracing::warn!("NAT discovery: {e}"),
    }
    tokio::spawn(async move {
        while let Some(ev) = rx.recv().await {
            if events.send((idx, ev)).is_err() {
                break;
            }
        }
    });
    let mut line = Line {
        phone,
        format,
        account,
        reg: None,
        reg_state: RegStatus::NotUsed,
    };
    if let Some(a) = line.account.clone() {
        if let Err(e) = account::install_credentials(&line.phone, &a) {
            line.phone.shutdown().await;
            return Err(e);
        }
        if a.register {
            line.register().await;
        }
    }
    Ok(line)
}

impl Line {
    /// Starts a new registration of the account.
    async fn register(&mut self) -> bool {
        let Some(a) = &self.account else {
            return false;
        };
        let spec = RegisterSpec {
            aor: a.aor.clone(),
            registrar: a.registrar.clone(),
            outbound_proxy: a.outbound_proxy.clone(),
            expires: a.expires,
            instance: Some(super::account::instance_id(&a.aor)),
        };
        match self.phone.register(spec).await {
            Ok(h) => {
                self.reg = Some(h);
                self.reg_state = RegStatus::Registering;
                true
            }
            Err(e) => {
                self.reg_state = RegStatus::Failed(e.to_string());
                false
            }
        }
    }

    fn label(&self) -> String {
        match &self.account {
            Some(a) => short_peer(&a.aor).to_string(),
            None => format!("sipline :{}", self.phone.local_addr().port()),
        }
    }
}

/// A command that failed, with the exit code a script ends with.
#[derive(Debug)]
struct Fail {
    exit: Exit,
    msg: String,
}

impl Fail {
    fn new(exit: Exit, msg: impl Into<String>) -> Fail {
        Fail {
            exit,
            msg: msg.into(),
        }
    }
}

/// A `wait` or `wait-for` in progress.
#[derive(Debug)]
struct Wait {
    /// `wait-for`'s event (None: a plain `wait`).
    event: Option<String>,
    deadline: Instant,
    timeout: Duration,
}

/// Where the phone's text goes.
struct Out {
    json: bool,
    /// Above the prompt (terminal); None: plain stdout.
    printer: Option<PrintQueue>,
}

impl Out {
    /// A line of text for people.
    fn line(&mut self, text: &str) {
        if self.json {
            self.print(json!({"event": "output", "text": text}).to_string());
        } else {
            self.print(text.to_string());
        }
    }

    /// An event: JSON with `--json`, else its human text.
    fn event(&mut self, name: &str, fields: Value, human: &str) {
        if self.json {
            let mut obj = serde_json::Map::new();
            obj.insert("event".into(), Value::String(name.into()));
            if let Value::Object(m) = fields {
                obj.extend(m);
            }
            self.print(Value::Object(obj).to_string());
        } else {
            self.print(human.to_string());
        }
    }

    fn error(&mut self, msg: &str) {
        if self.json {
            self.print(json!({"event": "error", "message": msg}).to_string());
        } else if self.printer.is_some() {
            self.print(format!("error: {msg}"));
        } else {
            eprintln!("sipline: {msg}");
        }
    }

    fn print(&mut self, text: String) {
        use std::io::Write;
        if let Some(p) = self.printer.as_ref() {
            p.print(text);
            return;
        }
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }

    fn bell(&mut self) -> &'static str {
        if self.printer.is_some() && !self.json {
            "\x07"
        } else {
            ""
        }
    }
}

struct App {
    lines: Vec<Line>,
    calls: Calls,
    out: Out,
    /// Audio options for the next call (`devices in|out` changes them).
    common: CommonArgs,
    contacts: BTreeMap<String, String>,
    history_path: Option<PathBuf>,
    words: SharedWords,
    answered_count: u32,
    /// The events so far, for `wait-for`.
    log: EventLog,
    /// Commands come from -e or a pipe: a failure ends the run.
    script: bool,
    /// The prompt for the current state (redrawn by the editor).
    live: LivePrompt,
    quit: bool,
    exit: Exit,
}

impl App {
    fn prompt(&self) -> String {
        let idle = match self.lines.first() {
            Some(l) if l.account.is_some() => format!("{} {}", l.label(), l.reg_state.word()),
            Some(l) => l.label(),
            None => "sipline".into(),
        };
        self.calls.prompt(&idle, Instant::now())
    }

    /// Refreshes the prompt the editor redraws (before an event is
    /// printed, so that the redraw after it shows the new state).
    fn update_live_prompt(&mut self) {
        let p = self.prompt();
        if let Ok(mut live) = self.live.lock() {
            *live = p;
        }
    }

    fn fail(&mut self, f: Fail) {
        self.out.error(&f.msg);
        if self.script {
            self.exit = f.exit;
            self.quit = true;
        }
    }

    /// Prints an event and remembers it for `wait-for`.
    fn event(&mut self, name: &str, fields: Value, human: &str) {
        self.update_live_prompt();
        self.out.event(name, fields, human);
        self.log.push(name, None);
    }

    /// Whether the wait is over: Some(Ok) when its event came (or a plain
    /// wait), Some(Err) when a call ended first.
    fn check_wait(&mut self, w: &Wait) -> Option<Result<(), Fail>> {
        let event = w.event.as_ref()?;
        match self.log.check(event)? {
            Ok(()) => Some(Ok(())),
            Err(reason) => {
                let exit = match Exit::for_end(&reason, false, false) {
                    Exit::Ok => Exit::Failed,
                    e => e,
                };
                Some(Err(Fail::new(
                    exit,
                    format!(
                        "wait-for {event}: the call ended ({})",
                        describe_end(&reason)
                    ),
                )))
            }
        }
    }

    // ----- events -----------------------------------------------------

    fn on_event(&mut self, line: usize, ev: PhoneEvent) {
        let now = Instant::now();
        match ev {
            PhoneEvent::Ua(UaEvent::IncomingCall { call, from, to }) => {
                self.on_incoming(line, call, &from, &to, now)
            }
            PhoneEvent::Ua(UaEvent::Progress {
                call,
                status,
                reason,
            }) => {
                let Some(id) = self.calls.by_handle(line, call) else {
                    return;
                };
                let ringing = matches!(status, 180 | 183);
                if let Some(c) = self.calls.get_mut(id)
                    && ringing
                    && c.phase == Phase::Calling
                {
                    c.phase = Phase::Ringing;
                }
                let name = if ringing { "ringing" } else { "progress" };
                self.event(
                    name,
                    json!({"call": id, "status": status, "reason": reason}),
                    &format!("#{id} {status} {reason}"),
                );
            }
            PhoneEvent::Ua(UaEvent::Media { call, media }) => {
                let Some(id) = self.calls.by_handle(line, call) else {
                    return;
                };
                if let Some(c) = self.calls.get_mut(id) {
                    c.codec = Some(media.codec.encoding_name().to_string());
                }
                let remote = media.remote_rtp.map(|a| a.to_string());
                let remote_rtcp = media.remote_rtcp.map(|a| a.to_string());
                self.event(
                    "media",
                    json!({"call": id, "codec": media.codec.encoding_name(),
                           "payload_type": media.payload_type, "remote_rtp": remote,
                           "remote_rtcp": remote_rtcp, "rtcp_mux": media.rtcp_mux,
                           "direction": media.direction.attribute(),
                           "telephone_event": media.telephone_event}),
                    &format!(
                        "#{id} audio {} {} with {}",
                        media.codec.encoding_name(),
                        media.direction.attribute(),
                        remote.as_deref().unwrap_or("nobody (on hold)")
                    ),
                );
            }
            PhoneEvent::Ua(UaEvent::Answered { call }) => {
                let Some(id) = self.calls.by_handle(line, call) else {
                    return;
                };
                let mut peer = String::new();
                if let Some(c) = self.calls.get_mut(id) {
                    c.phase = Phase::Active;
                    c.answered = Some(now);
                    peer = c.peer.clone();
                }
                self.event(
                    "answered",
                    json!({"call": id, "peer": peer}),
                    &format!("#{id} answered: talking to {}", short_peer(&peer)),
                );
            }
            PhoneEvent::CallEnded {
                call,
                reason,
                stats,
                codec,
            } => {
                let Some(id) = self.calls.by_handle(line, call) else {
                    return;
                };
                let Some(c) = self.calls.remove(id) else {
                    return;
                };
                let duration = c.answered.map(|t| now.duration_since(t).as_secs_f64());
                let why = describe_end(&reason);
                let mut human = format!("#{id} ended: {why}");
                if let Some(d) = duration {
                    human.push_str(&format!(" after {}", clock(Duration::from_secs_f64(d))));
                }
                self.update_live_prompt();
                self.out.event(
                    "ended",
                    json!({"call": id, "reason": reason, "duration_s": duration,
                           "codec": codec.map(|c| c.encoding_name()), "media": stats}),
                    &human,
                );
                self.log.push("ended", Some(reason.clone()));
                self.record_history(&c, duration, &reason);
            }
            PhoneEvent::Dtmf { call, digit } | PhoneEvent::Ua(UaEvent::Dtmf { call, digit }) => {
                let id = self.calls.by_handle(line, call).unwrap_or(0);
                self.event(
                    "dtmf",
                    json!({"call": id, "digit": digit.to_string()}),
                    &format!("#{id} DTMF {digit} received"),
                );
            }
            PhoneEvent::Ua(UaEvent::Registration { reg, event }) => {
                self.on_registration(line, reg, &event)
            }
            PhoneEvent::Ua(UaEvent::Nat(ev)) => {
                self.event(ev.event_name(), json!(ev), &ev.describe());
            }
            PhoneEvent::MediaTimeout { call, silent_for } => {
                let id = self.calls.by_handle(line, call).unwrap_or(0);
                self.event(
                    "media_timeout",
                    json!({"call": id, "silent_s": silent_for.as_secs_f64()}),
                    &format!(
                        "#{id} no audio from the peer for {:.0} s: hanging up",
                        silent_for.as_secs_f64()
                    ),
                );
            }
            PhoneEvent::SinkError { call, detail } => {
                let id = self.calls.by_handle(line, call).unwrap_or(0);
                self.out.error(&format!("#{id} recording failed: {detail}"));
            }
            PhoneEvent::SipTrace { sent, peer, text } => {
                let arrow = if sent { "sent to" } else { "received from" };
                self.out.event(
                    "sip",
                    json!({"direction": if sent { "sent" } else { "received" },
                           "peer": peer.to_string(), "text": text}),
                    &format!("--- {arrow} {peer}\n{}", text.trim_end()),
                );
            }
            PhoneEvent::Ua(UaEvent::Rejected {
                method,
                status,
                detail,
            }) => tracing::debug!("refused a {method} with {status}: {detail}"),
            PhoneEvent::Ua(UaEvent::Held { call }) => {
                self.hold_event(line, call, "held", |c| c.held = true, "on hold")
            }
            PhoneEvent::Ua(UaEvent::Resumed { call }) => {
                self.hold_event(line, call, "resumed", |c| c.held = false, "resumed")
            }
            PhoneEvent::Ua(UaEvent::RemoteHold { call }) => self.hold_event(
                line,
                call,
                "remote_hold",
                |c| c.remote_held = true,
                "the peer put the call on hold",
            ),
            PhoneEvent::Ua(UaEvent::RemoteResume { call }) => self.hold_event(
                line,
                call,
                "remote_resume",
                |c| c.remote_held = false,
                "the peer took the call off hold",
            ),
            PhoneEvent::Ua(UaEvent::HoldFailed {
                call,
                intent,
                status,
                reason,
            }) => {
                let id = self.calls.by_handle(line, call).unwrap_or(0);
                let what = match intent {
                    crate::ua::hold::HoldIntent::Hold => "hold",
                    crate::ua::hold::HoldIntent::Resume => "resume",
                };
                let status_text = status.map(|s| format!("{s} ")).unwrap_or_default();
                self.event(
                    "hold_failed",
                    json!({"call": id, "intent": what, "status": status, "reason": reason}),
                    &format!("#{id} {what} failed: {status_text}{reason}"),
                );
            }
            PhoneEvent::Ua(UaEvent::Transfer { call, progress }) => {
                let id = self.calls.by_handle(line, call).unwrap_or(0);
                use crate::ua::refer::TransferProgress as P;
                let (state, status, reason) = match &progress {
                    P::Accepted => ("accepted", Some(202), "Accepted".to_string()),
                    P::Trying { status, reason } => ("trying", Some(*status), reason.clone()),
                    P::Succeeded { status, reason } => ("succeeded", Some(*status), reason.clone()),
                    P::Failed { status, reason } => ("failed", *status, reason.clone()),
                };
                let status_text = status.map(|s| format!("{s} ")).unwrap_or_default();
                self.event(
                    "transfer",
                    json!({"call": id, "state": state, "status": status, "reason": reason}),
                    &format!("#{id} transfer {state}: {status_text}{reason}"),
                );
            }
            PhoneEvent::Ua(UaEvent::TransferRequested {
                call,
                target,
                referred_by,
            }) => {
                let id = self.calls.by_handle(line, call).unwrap_or(0);
                let by = referred_by
                    .as_deref()
                    .map(|b| format!(" (referred by {b})"))
                    .unwrap_or_default();
                self.event(
                    "transfer_requested",
                    json!({"call": id, "target": target, "referred_by": referred_by}),
                    &format!("#{id} the peer transfers us to {target}{by}"),
                );
            }
            PhoneEvent::Ua(UaEvent::ReferredCall {
                call,
                original,
                target,
            }) => {
                let from = self.calls.by_handle(line, original).unwrap_or(0);
                let id = self
                    .calls
                    .add(line, call, Direction::Outgoing, &target, now);
                self.event(
                    "calling",
                    json!({"call": id, "uri": target, "transferred_from": from}),
                    &format!("#{id} calling {target} (transfer of #{from})"),
                );
            }
            PhoneEvent::SourceFinished { .. } => {}
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }

    fn hold_event(
        &mut self,
        line: usize,
        call: CallHandle,
        name: &str,
        update: impl FnOnce(&mut CallEntry),
        human: &str,
    ) {
        let Some(id) = self.calls.by_handle(line, call) else {
            return;
        };
        if let Some(c) = self.calls.get_mut(id) {
            update(c);
        }
        self.event(name, json!({"call": id}), &format!("#{id} {human}"));
    }

    fn on_incoming(&mut self, line: usize, call: CallHandle, from: &str, to: &str, now: Instant) {
        let (display, uri, who) = caller(from);
        let id = self.calls.add(line, call, Direction::Incoming, &uri, now);
        let bell = self.out.bell();
        self.event(
            "incoming",
            json!({"call": id, "from": from, "display_name": display, "uri": uri, "to": to,
                   "line": line}),
            &format!("{bell}#{id} incoming call from {who} (answer: a {id}, reject: rj)"),
        );
    }

    fn on_registration(&mut self, line: usize, reg: RegHandle, event: &RegEvent) {
        let Some(l) = self.lines.get_mut(line) else {
            return;
        };
        if l.reg != Some(reg) {
            return;
        }
        l.reg_state = match event {
            RegEvent::Registering => RegStatus::Registering,
            RegEvent::Registered { expires, .. } | RegEvent::Refreshed { expires, .. } => {
                RegStatus::Registered { expires: *expires }
            }
            RegEvent::Unregistered { .. } => RegStatus::Unregistered,
            RegEvent::Failed { status, reason, .. } => RegStatus::Failed(match status {
                Some(s) => format!("{s} {reason}"),
                None => reason.clone(),
            }),
        };
        let Some(a) = l.account.clone() else {
            return;
        };
        let (name, fields, human) = account::registration_event(&a, event);
        self.event(name, fields, &human);
    }

    fn record_history(&mut self, c: &CallEntry, duration: Option<f64>, reason: &EndReason) {
        let Some(path) = self.history_path.clone() else {
            return;
        };
        let result = match (c.direction, reason) {
            (Direction::Incoming, EndReason::RemoteCancelled) => "missed".to_string(),
            _ => describe_end(reason),
        };
        let started =
            std::time::SystemTime::now() - Instant::now().saturating_duration_since(c.created);
        let record = history::Record {
            time: history::utc_timestamp(started),
            direction: match c.direction {
                Direction::Incoming => "incoming".into(),
                Direction::Outgoing => "outgoing".into(),
            },
            peer: c.peer.clone(),
            duration_s: duration.map(|d| (d * 10.0).round() / 10.0),
            result,
        };
        match history::append(&path, record) {
            Ok(Some(kept)) => tracing::warn!(
                "the call history {} could not be read: kept as {} and started anew",
                path.display(),
                kept.display()
            ),
            Ok(None) => {}
            Err(e) => tracing::warn!("cannot write the call history {}: {e}", path.display()),
        }
    }

    // ----- commands ---------------------------------------------------

    /// Runs one line; returns a wait to start, if the command was one.
    async fn run_line(&mut self, text: &str) -> Result<Option<Wait>, Fail> {
        let cmd = command::parse(text).map_err(|e| Fail::new(Exit::Usage, e.to_string()))?;
        let now = Instant::now();
        if !matches!(
            cmd,
            Command::Nothing | Command::Wait(_) | Command::WaitFor { .. }
        ) {
            self.log.command();
        }
        match cmd {
            Command::Nothing => {}
            Command::Wait(d) => {
                return Ok(Some(Wait {
                    event: None,
                    deadline: now + d,
                    timeout: d,
                }));
            }
            Command::WaitFor { event, timeout } => {
                return Ok(Some(Wait {
                    event: Some(event),
                    deadline: now + timeout,
                    timeout,
                }));
            }
            Command::Call { target } => self.call(&target).await?,
            Command::Answer { call } => self.answer(call).await?,
            Command::Reject { code } => {
                let c = self.calls.pick_incoming(None).map_err(failed)?;
                self.lines[c.line].phone.reject(c.handle, code);
            }
            Command::Hangup(which) => self.hangup(which)?,
            Command::Hold { .. } | Command::Resume { .. } | Command::Switch { .. } => {
                self.hold_command(cmd).await?
            }
            Command::Mute(on) => self.mute(on).await?,
            Command::Transfer { target } => self.transfer(&target).await?,
            Command::Dtmf { digits } => self.dtmf(&digits).await?,
            Command::Calls => self.list_calls(),
            Command::Reg(action) => self.reg(action).await,
            Command::Accounts => self.list_accounts(),
            Command::Devices(action) => self.devices(action).await?,
            Command::Stats { call } => self.stats(call).await?,
            Command::History { count } => {
                let records = match &self.history_path {
                    Some(p) => history::load(p)
                        .map_err(|e| Fail::new(Exit::Failed, format!("{}: {e}", p.display())))?,
                    None => Vec::new(),
                };
                let start = records.len().saturating_sub(count);
                self.out.event(
                    "history",
                    json!({"calls": records[start..]}),
                    &history::render(&records, count),
                );
            }
            Command::Trace(on) => {
                for l in &self.lines {
                    l.phone.set_trace(on);
                }
                self.out
                    .line(if on { "SIP trace on" } else { "SIP trace off" });
            }
            Command::Help(spec) => {
                let text = command::help(spec);
                self.out.event("help", json!({"text": text}), &text);
            }
            Command::Quit => self.quit = true,
        }
        Ok(None)
    }

    fn dial_domain(&self) -> Option<String> {
        self.lines
            .first()
            .and_then(|l| l.account.as_ref())
            .and_then(|a| target::domain_of(&a.aor))
    }

    fn resolve(&self, input: &str) -> Result<String, Fail> {
        target::resolve(input, &self.contacts, self.dial_domain().as_deref())
            .map_err(|e| Fail::new(Exit::Usage, e.to_string()))
    }

    fn open_io(&mut self, line: usize, answering: bool) -> Result<crate::ua::MediaIo, Fail> {
        let mut common = self.common.clone();
        if answering || common.record.is_some() {
            self.answered_count += 1;
            common.record = common
                .record
                .map(|p| super::answer::numbered(&p, self.answered_count));
        }
        open_io(&common, self.lines[line].format).map_err(|e| Fail::new(Exit::Audio, e.to_string()))
    }

    async fn call(&mut self, input: &str) -> Result<(), Fail> {
        let uri = self.resolve(input)?;
        let io = self.open_io(0, false)?;
        self.hold_others(0).await;
        let line = &self.lines[0];
        let next_hop = line.account.as_ref().map(account::next_hop);
        let handle = line.phone.dial_via(&uri, io, next_hop).await.map_err(|e| {
            let exit = match e {
                DriverError::BadTarget { .. }
                | DriverError::Unsupported { .. }
                | DriverError::Ua(crate::ua::UaError::BadTarget { .. }) => Exit::Usage,
                _ => Exit::Network,
            };
            Fail::new(exit, format!("call {uri}: {e}"))
        })?;
        let id = self
            .calls
            .add(0, handle, Direction::Outgoing, &uri, Instant::now());
        self.event(
            "calling",
            json!({"call": id, "uri": uri}),
            &format!("#{id} calling {uri}"),
        );
        Ok(())
    }

    async fn answer(&mut self, call: Option<CallId>) -> Result<(), Fail> {
        let c = self.calls.pick_incoming(call).map_err(failed)?.clone();
        self.hold_others(c.id).await;
        let io = match self.open_io(c.line, true) {
            Ok(io) => io,
            Err(f) => {
                self.lines[c.line].phone.reject(c.handle, 500);
                return Err(f);
            }
        };
        let phone = &self.lines[c.line].phone;
        if let Err(e) = phone.answer(c.handle, io).await {
            phone.reject(c.handle, 503);
            return Err(Fail::new(
                Exit::Failed,
                format!("cannot answer #{}: {e}", c.id),
            ));
        }
        let _ = self.calls.set_current(c.id);
        Ok(())
    }

    fn hangup(&mut self, which: Which) -> Result<(), Fail> {
        let ids: Vec<CallId> = match which {
            Which::All => self.calls.iter().map(|c| c.id).collect(),
            Which::Current => vec![self.calls.pick(None).map_err(failed)?.id],
            Which::Call(id) => vec![self.calls.pick(Some(id)).map_err(failed)?.id],
        };
        for id in ids {
            if let Some(c) = self.calls.get_mut(id) {
                c.phase = Phase::Ending;
                self.lines[c.line].phone.hangup(c.handle);
            }
        }
        Ok(())
    }

    /// hold, resume and switch (RFC 3264 §8.4 re-INVITEs). The outcome
    /// arrives later as an event (held, resumed or hold_failed).
    async fn hold_command(&mut self, cmd: Command) -> Result<(), Fail> {
        match cmd {
            Command::Hold { call } => {
                let c = self.calls.pick(call).map_err(failed)?.clone();
                self.hold_call(&c, true).await
            }
            Command::Resume { call } => {
                let c = self.calls.pick(call).map_err(failed)?.clone();
                self.hold_others(c.id).await;
                self.hold_call(&c, false).await?;
                let _ = self.calls.set_current(c.id);
                Ok(())
            }
            Command::Switch { call } => {
                let c = self.calls.pick(Some(call)).map_err(failed)?.clone();
                self.calls.set_current(call).map_err(failed)?;
                if c.phase == Phase::Active {
                    self.hold_others(call).await;
                    if c.held {
                        self.hold_call(&c, false).await?;
                    }
                }
                self.out.line(&format!("#{call} is the current call"));
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Sends the hold (or resume) re-INVITE of one answered call.
    async fn hold_call(&mut self, c: &CallEntry, hold: bool) -> Result<(), Fail> {
        if c.phase != Phase::Active {
            return Err(Fail::new(
                Exit::Failed,
                format!("#{} is not answered yet", c.id),
            ));
        }
        let phone = &self.lines[c.line].phone;
        let r = if hold {
            phone.hold(c.handle).await
        } else {
            phone.resume(c.handle).await
        };
        r.map_err(|e| Fail::new(Exit::Failed, format!("#{}: {e}", c.id)))
    }

    /// Puts every other answered call we talk in on hold (call waiting:
    /// one call at a time has our audio).
    async fn hold_others(&mut self, id: CallId) {
        for other in self.calls.others_talking(id) {
            if let Some(c) = self.calls.get(other).cloned()
                && let Err(f) = self.hold_call(&c, true).await
            {
                self.out.error(&f.msg);
            }
        }
    }

    async fn mute(&mut self, on: bool) -> Result<(), Fail> {
        let c = self.calls.pick(None).map_err(failed)?.clone();
        self.lines[c.line]
            .phone
            .mute(c.handle, on)
            .await
            .map_err(|e| Fail::new(Exit::Failed, format!("#{}: {e}", c.id)))?;
        if let Some(e) = self.calls.get_mut(c.id) {
            e.muted = on;
        }
        let name = if on { "muted" } else { "unmuted" };
        self.event(name, json!({"call": c.id}), &format!("#{} {name}", c.id));
        Ok(())
    }

    /// Blind transfer (RFC 3515): REFER the current call's peer to the
    /// target; the progress arrives as `transfer` events.
    async fn transfer(&mut self, input: &str) -> Result<(), Fail> {
        let uri = self.resolve(input)?;
        let c = self.calls.pick(None).map_err(failed)?.clone();
        if c.phase != Phase::Active {
            return Err(Fail::new(
                Exit::Failed,
                format!("#{} is not answered yet", c.id),
            ));
        }
        self.lines[c.line]
            .phone
            .transfer(c.handle, &uri)
            .await
            .map_err(|e| Fail::new(Exit::Failed, format!("#{}: transfer: {e}", c.id)))?;
        self.out.event(
            "transfer_sent",
            json!({"call": c.id, "target": uri}),
            &format!("#{} transferring to {uri} (REFER)", c.id),
        );
        Ok(())
    }

    async fn dtmf(&mut self, digits: &str) -> Result<(), Fail> {
        let c = self.calls.pick(None).map_err(failed)?.clone();
        if c.phase != Phase::Active {
            return Err(Fail::new(
                Exit::Failed,
                format!("#{} is not answered yet", c.id),
            ));
        }
        let phone = &self.lines[c.line].phone;
        let method = match phone.send_dtmf(c.handle, digits).await {
            Ok(()) => "rfc4733",
            Err(DtmfError::NotNegotiated) => {
                phone
                    .send_info_dtmf(c.handle, digits)
                    .await
                    .map_err(|e| Fail::new(Exit::Failed, format!("DTMF by SIP INFO: {e}")))?;
                "info"
            }
            Err(e) => return Err(Fail::new(Exit::Usage, e.to_string())),
        };
        let how = if method == "info" {
            "SIP INFO"
        } else {
            "RFC 4733"
        };
        self.event(
            "dtmf_sent",
            json!({"call": c.id, "digits": digits, "method": method}),
            &format!("#{} sending DTMF {digits} ({how})", c.id),
        );
        Ok(())
    }

    fn list_calls(&mut self) {
        let now = Instant::now();
        let current = self.calls.current();
        let list: Vec<Value> = self
            .calls
            .iter()
            .map(|c| {
                json!({"call": c.id, "state": c.state_word(), "direction": c.direction,
                       "peer": c.peer, "duration_s": c.duration(now).as_secs(),
                       "codec": c.codec, "current": current == Some(c.id), "line": c.line})
            })
            .collect();
        let mut text = String::new();
        for c in self.calls.iter() {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(&format!(
                "{} #{} {:12} {} {} {} {}",
                if current == Some(c.id) { "*" } else { " " },
                c.id,
                c.state_word(),
                if c.direction == Direction::Incoming {
                    "<-"
                } else {
                    "->"
                },
                short_peer(&c.peer),
                clock(c.duration(now)),
                c.codec.as_deref().unwrap_or("-"),
            ));
        }
        if text.is_empty() {
            text = "no calls".into();
        }
        self.out.event("calls", json!({"calls": list}), &text);
    }

    async fn reg(&mut self, action: RegAction) {
        let mut texts = Vec::new();
        let mut list = Vec::new();
        for (i, l) in self.lines.iter_mut().enumerate() {
            let Some(a) = l.account.clone() else {
                continue;
            };
            match action {
                RegAction::Status => {}
                RegAction::Refresh => {
                    let refreshed = match l.reg {
                        Some(r) => l.phone.refresh_registration(r).await,
                        None => false,
                    };
                    if !refreshed && l.reg_state != RegStatus::Registering {
                        l.register().await;
                    }
                }
                RegAction::Off => {
                    if let Some(r) = l.reg
                        && l.phone.unregister(r).await
                    {
                        l.reg_state = RegStatus::Unregistering;
                    }
                }
            }
            texts.push(format!(
                "{} {} ({}): {}",
                i + 1,
                a.name,
                a.aor,
                l.reg_state.word()
            ));
            list.push(json!({"line": i, "account": a.name, "aor": a.aor,
                             "state": l.reg_state.word()}));
        }
        let text = if texts.is_empty() {
            "no account (calls go directly to the URI's host)".to_string()
        } else {
            texts.join("\n")
        };
        self.out.event("reg", json!({"accounts": list}), &text);
    }

    fn list_accounts(&mut self) {
        let mut texts = Vec::new();
        let mut list = Vec::new();
        for (i, l) in self.lines.iter().enumerate() {
            let addr = l.phone.local_addr();
            match &l.account {
                Some(a) => {
                    texts.push(format!(
                        "{} {}  {}  registrar {}  port {}  {}",
                        if i == 0 { "*" } else { " " },
                        a.name,
                        a.aor,
                        a.registrar,
                        addr.port(),
                        l.reg_state.word()
                    ));
                    list.push(json!({"line": i, "name": a.name, "aor": a.aor,
                                     "registrar": a.registrar, "port": addr.port(),
                                     "state": l.reg_state.word()}));
                }
                None => {
                    texts.push(format!("* no account, port {}", addr.port()));
                    list.push(json!({"line": i, "name": null, "port": addr.port()}));
                }
            }
        }
        self.out.event(
            "accounts",
            json!({"accounts": list}),
            &format!(
                "{}\n(calls use the first account; * marks it)",
                texts.join("\n")
            ),
        );
    }

    async fn devices(&mut self, action: DevicesAction) -> Result<(), Fail> {
        let listed = tokio::task::spawn_blocking(crate::media::audio::list_devices)
            .await
            .map_err(|e| Fail::new(Exit::Internal, e.to_string()))?;
        let list = listed.unwrap_or_else(|e| {
            tracing::warn!("cannot list sound devices: {e}");
            Vec::new()
        });
        if let Ok(mut w) = self.words.lock() {
            w.devices = list.iter().map(|d| d.name.clone()).collect();
        }
        let known = |name: &str| {
            matches!(name, "default" | "none" | "null")
                || list.iter().any(|d| d.name == name || d.id == name)
        };
        match action {
            DevicesAction::List => {
                let mut text = String::new();
                for d in &list {
                    let dirs = match (d.input, d.output) {
                        (true, true) => "in/out",
                        (true, false) => "in",
                        _ => "out",
                    };
                    text.push_str(&format!("{dirs:6} {}  ({})\n", d.name, d.id));
                }
                if list.is_empty() {
                    text.push_str("no sound devices\n");
                }
                text.push_str(&format!(
                    "next call: in {}, out {}{}",
                    self.common.input_device.as_deref().unwrap_or("default"),
                    self.common.output_device.as_deref().unwrap_or("default"),
                    if self.common.null_audio {
                        " (--null-audio: no device is used)"
                    } else {
                        ""
                    }
                ));
                let devices: Vec<Value> = list
                    .iter()
                    .map(|d| json!({"id": d.id, "name": d.name, "input": d.input, "output": d.output}))
                    .collect();
                self.out.event(
                    "devices",
                    json!({"devices": devices, "input": self.common.input_device,
                           "output": self.common.output_device}),
                    &text,
                );
            }
            DevicesAction::Input(name) | DevicesAction::Output(name) if !known(&name) => {
                return Err(Fail::new(
                    Exit::Audio,
                    format!("no sound device {name:?} (see devices)"),
                ));
            }
            DevicesAction::Input(name) => {
                let now = self.switch_device(&name, true).await?;
                self.out.line(&format!("input device{now}: {name}"));
                self.common.input_device = Some(name);
            }
            DevicesAction::Output(name) => {
                let now = self.switch_device(&name, false).await?;
                self.out.line(&format!("output device{now}: {name}"));
                self.common.output_device = Some(name);
            }
        }
        Ok(())
    }

    /// Moves the current answered call to the device `name` (capture
    /// when `input`); returns the words for the message.
    async fn switch_device(&mut self, name: &str, input: bool) -> Result<&'static str, Fail> {
        let Ok(c) = self.calls.pick(None).cloned() else {
            return Ok(" for the next calls");
        };
        if c.phase != Phase::Active {
            return Ok(" for the next calls");
        }
        let choice: crate::media::audio::DeviceChoice = name
            .parse()
            .unwrap_or(crate::media::audio::DeviceChoice::Default);
        let format = self.lines[c.line].format;
        let audio = |e: crate::media::audio::AudioError| Fail::new(Exit::Audio, e.to_string());
        let (source, sink) = if input {
            (
                Some(crate::media::audio::open_capture(&choice, format).map_err(audio)?),
                None,
            )
        } else {
            (
                None,
                Some(crate::media::audio::open_playback(&choice, format).map_err(audio)?),
            )
        };
        self.lines[c.line]
            .phone
            .set_audio(c.handle, source, sink)
            .await
            .map_err(|e| Fail::new(Exit::Failed, format!("#{}: {e}", c.id)))?;
        Ok(" for this call and the next ones")
    }

    async fn stats(&mut self, call: Option<CallId>) -> Result<(), Fail> {
        let c = self.calls.pick(call).map_err(failed)?.clone();
        let now = Instant::now();
        let stats = self.lines[c.line].phone.stats(c.handle).await;
        let mut human = format!(
            "#{} {} {} {}",
            c.id,
            c.state_word(),
            c.codec.as_deref().unwrap_or("-"),
            clock(c.duration(now))
        );
        match &stats {
            Some(s) => human.push_str(&format!(
                "\n  sent {} packets, received {}, lost {}, late {}, duplicates {}, \
                 jitter {:.1} ms, concealed {} frames",
                s.packets_sent,
                s.packets_received,
                s.packets_lost,
                s.late,
                s.duplicates,
                s.jitter_ms,
                s.concealed_frames
            )),
            None => human.push_str("\n  no media yet"),
        }
        self.out.event(
            "stats",
            json!({"call": c.id, "state": c.state_word(), "codec": c.codec,
                   "duration_s": c.duration(now).as_secs_f64(), "media": stats}),
            &human,
        );
        Ok(())
    }

    // ----- quitting ---------------------------------------------------

    /// Hangs up every call and unregisters every account (each bounded
    /// by [`QUIT_GRACE`]), printing the events, then stops the phones.
    async fn shutdown(&mut self, events: &mut mpsc::UnboundedReceiver<(usize, PhoneEvent)>) {
        let _ = self.hangup(Which::All);
        let deadline = tokio::time::Instant::now() + QUIT_GRACE;
        while !self.calls.is_empty() {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some((line, ev))) => self.on_event(line, ev),
                _ => break,
            }
        }
        let mut pending = 0;
        for l in &mut self.lines {
            if let Some(r) = l.reg
                && matches!(l.reg_state, RegStatus::Registered { .. })
                && l.phone.unregister(r).await
            {
                l.reg_state = RegStatus::Unregistering;
                pending += 1;
            }
        }
        let deadline = tokio::time::Instant::now() + QUIT_GRACE;
        while self
            .lines
            .iter()
            .any(|l| l.reg_state == RegStatus::Unregistering)
            && pending > 0
        {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some((line, ev))) => self.on_event(line, ev),
                _ => break,
            }
        }
        for l in self.lines.drain(..) {
            l.phone.shutdown().await;
        }
    }
}

fn failed(e: super::repl::state::PickError) -> Fail {
    Fail::new(Exit::Failed, e.to_string())
}
