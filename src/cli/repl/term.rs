//! The terminal side of the phone: a rustyline editor on its own thread
//! (Tab completion, the prompt history file, Ctrl-C and Ctrl-D), and the
//! printer that puts events above the prompt without disturbing the line
//! being typed (rustyline's `ExternalPrinter`).
//!
//! The editor thread reads one line per prompt it is given: the phone
//! runs the line's command, then sends the next prompt (which shows the
//! new state). Events printed meanwhile go through the printer.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rustyline::completion::Completer;
use rustyline::error::ReadlineError;
use rustyline::highlight::{CmdKind, Highlighter};
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{
    Cmd, ConditionalEventHandler, Context, Editor, Event, EventContext, EventHandler,
    ExternalPrinter, Helper, KeyEvent, RepeatCount,
};
use tokio::sync::mpsc;

use super::command::{COMMANDS, EVENTS};

/// What the editor thread hands to the phone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Line(String),
    /// Ctrl-D on an empty line, or the input ended.
    Eof,
}

/// Words the completer offers besides the command names.
#[derive(Debug, Default)]
pub struct Words {
    pub contacts: Vec<String>,
    pub devices: Vec<String>,
}

/// The shared word lists (the phone updates the devices after `devices`).
pub type SharedWords = Arc<Mutex<Words>>;

/// Completes the word under the cursor from the command table, the
/// contacts, the device names and each command's fixed words.
pub struct PhoneHelper {
    words: SharedWords,
    live: LivePrompt,
}

/// The prompt for the phone's current state, updated as events arrive.
pub type LivePrompt = Arc<Mutex<String>>;

/// What to draw instead of the prompt `shown` that the line was started
/// with: the live prompt when it fits in the same width (padded with
/// spaces), else `shown` itself (the cursor position depends on the
/// width, which is fixed while a line is edited).
pub fn redrawn_prompt(shown: &str, live: &str) -> Option<String> {
    if !shown.starts_with('[') {
        return None; // a question such as "quit sipline? (y/N)"
    }
    let width = shown.chars().count();
    let live = live.trim_end();
    let n = live.chars().count();
    (n > 0 && n < width).then(|| format!("{live}{}", " ".repeat(width - n)))
}

/// The start of the word being completed and the candidates for it.
pub fn complete_line(line: &str, pos: usize, words: &Words) -> (usize, Vec<String>) {
    let before = &line[..pos];
    let start = before
        .rfind(char::is_whitespace)
        .map(|i| i + 1)
        .unwrap_or(0);
    let partial = &before[start..];
    let previous: Vec<&str> = before[..start].split_whitespace().collect();
    let matching = |options: &mut dyn Iterator<Item = &str>| -> Vec<String> {
        let mut v: Vec<String> = options
            .filter(|o| o.starts_with(partial))
            .map(str::to_string)
            .collect();
        v.sort();
        v.dedup();
        v
    };
    let command = previous
        .first()
        .and_then(|w| super::command::lookup(w))
        .map(|c| c.name);
    match (command, previous.len()) {
        (_, 0) => (start, matching(&mut COMMANDS.iter().map(|c| c.name))),
        (Some("call" | "transfer"), 1) => (
            start,
            matching(&mut words.contacts.iter().map(String::as_str)),
        ),
        (Some("help"), 1) => (start, matching(&mut COMMANDS.iter().map(|c| c.name))),
        (Some("trace"), 1) => (start, matching(&mut ["on", "off"].into_iter())),
        (Some("reg"), 1) => (start, matching(&mut ["refresh", "off"].into_iter())),
        (Some("wait-for"), 1) => (start, matching(&mut EVENTS.iter().copied())),
        (Some("devices"), 1) => (start, matching(&mut ["in", "out"].into_iter())),
        (Some("devices"), _) => {
            // Device names may hold spaces: complete from the third word on.
            let skip = end_of_word(before, 2);
            let name_start = skip + before[skip..].len() - before[skip..].trim_start().len();
            let typed = &before[name_start..];
            let mut v: Vec<String> = words
                .devices
                .iter()
                .filter(|d| d.starts_with(typed))
                .cloned()
                .collect();
            v.sort();
            v.dedup();
            (name_start, v)
        }
        _ => (start, Vec::new()),
    }
}

/// The byte index just after the `n`th whitespace-separated word.
fn end_of_word(s: &str, n: usize) -> usize {
    let mut seen = 0;
    let mut in_word = false;
    for (i, c) in s.char_indices() {
        if c.is_whitespace() {
            if in_word {
                seen += 1;
                if seen == n {
                    return i;
                }
            }
            in_word = false;
        } else {
            in_word = true;
        }
    }
    s.len()
}

impl Completer for PhoneHelper {
    type Candidate = String;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        let words = self.words.lock().unwrap_or_else(|e| e.into_inner());
        Ok(complete_line(line, pos, &words))
    }
}

impl Hinter for PhoneHelper {
    type Hint = String;
}

impl Highlighter for PhoneHelper {
    /// Redraws the prompt with the current state (a call answered or
    /// held while the line is being typed) whenever rustyline repaints.
    fn highlight_prompt<'b, 's: 'b, 'p: 'b>(
        &'s self,
        prompt: &'p str,
        default: bool,
    ) -> Cow<'b, str> {
        if !default {
            return Cow::Borrowed(prompt);
        }
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        match redrawn_prompt(prompt, &live) {
            Some(p) => Cow::Owned(p),
            None => Cow::Borrowed(prompt),
        }
    }

    fn highlight_char(&self, _line: &str, _pos: usize, _kind: CmdKind) -> bool {
        false
    }
}

impl Validator for PhoneHelper {}

impl Helper for PhoneHelper {}

/// Notes whether the line was empty when Ctrl-C was pressed, then lets
/// rustyline interrupt as usual.
struct CtrlC {
    empty: Arc<AtomicBool>,
}

impl ConditionalEventHandler for CtrlC {
    fn handle(&self, _: &Event, _: RepeatCount, _: bool, ctx: &EventContext) -> Option<Cmd> {
        self.empty.store(ctx.line().is_empty(), Ordering::SeqCst);
        None
    }
}

/// Prints lines above the prompt.
pub type Printer = Box<dyn ExternalPrinter + Send>;

/// Lines for the printer, printed in order by a thread of their own:
/// rustyline's printer may wait until the editor reads again, and the
/// phone must never wait for that (the editor waits for the phone's next
/// prompt).
#[derive(Clone)]
pub struct PrintQueue(std::sync::mpsc::Sender<String>);

impl PrintQueue {
    /// Starts the printing thread.
    pub fn start(mut printer: Printer) -> PrintQueue {
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            while let Ok(text) = rx.recv() {
                // Between two prompts the printer writes the text as it
                // is (no line end is added, unlike during the prompt).
                if printer.print(format!("{text}\n")).is_err() {
                    eprintln!("{text}");
                }
            }
        });
        PrintQueue(tx)
    }

    pub fn print(&self, text: String) {
        if let Err(e) = self.0.send(text) {
            eprintln!("{}", e.0);
        }
    }
}

/// Where log lines go while the prompt is up (see [`LogWriter`]).
static LOG_QUEUE: Mutex<Option<PrintQueue>> = Mutex::new(None);

/// Sends the log (tracing) lines above the prompt from now on, instead of
/// straight to stderr where they would break the line being typed;
/// `None` goes back to stderr.
pub fn route_logs(queue: Option<PrintQueue>) {
    *LOG_QUEUE.lock().unwrap_or_else(|e| e.into_inner()) = queue;
}

/// A `tracing_subscriber` writer: one log line to stderr, or above the
/// prompt after [`route_logs`].
#[derive(Default)]
pub struct LogWriter(Vec<u8>);

impl LogWriter {
    /// For `tracing_subscriber::fmt().with_writer(LogWriter::make)`.
    pub fn make() -> LogWriter {
        LogWriter::default()
    }
}

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let queue = LOG_QUEUE.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match queue {
            Some(q) => q.print(String::from_utf8_lossy(&self.0).trim_end().to_string()),
            None => {
                use std::io::Write;
                let _ = std::io::stderr().lock().write_all(&self.0);
            }
        }
    }
}

/// The running editor: its lines arrive on `input`; give it each prompt
/// with [`Terminal::prompt`].
pub struct Terminal {
    pub input: mpsc::UnboundedReceiver<Input>,
    prompts: std::sync::mpsc::Sender<String>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The editor is reading a line (the terminal is in raw mode).
    editing: Arc<AtomicBool>,
    /// `stty -g` before the editor started, to restore the terminal when
    /// the phone stops in the middle of a line (SIGTERM).
    saved_stty: Option<String>,
}

impl Terminal {
    /// Starts the editor (stdin and stdout must be terminals) with its
    /// history file; returns it and the printer for events.
    pub fn start(
        words: SharedWords,
        live: LivePrompt,
        history: Option<PathBuf>,
    ) -> Result<(Terminal, Printer), ReadlineError> {
        let config = rustyline::Config::builder()
            .auto_add_history(true)
            .history_ignore_dups(true)?
            .history_ignore_space(true)
            .max_history_size(1000)?
            .completion_type(rustyline::CompletionType::List)
            .build();
        let mut rl: Editor<PhoneHelper, DefaultHistory> = Editor::with_config(config)?;
        rl.set_helper(Some(PhoneHelper { words, live }));
        let empty = Arc::new(AtomicBool::new(true));
        rl.bind_sequence(
            KeyEvent::ctrl('C'),
            EventHandler::Conditional(Box::new(CtrlC {
                empty: empty.clone(),
            })),
        );
        if let Some(h) = &history
            && h.exists()
            && let Err(e) = rl.load_history(h)
        {
            tracing::warn!("cannot read the prompt history {}: {e}", h.display());
        }
        let printer: Printer = Box::new(rl.create_external_printer()?);
        let saved_stty = std::process::Command::new("stty")
            .arg("-g")
            .stdin(std::process::Stdio::inherit())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
        let editing = Arc::new(AtomicBool::new(false));
        let editing2 = editing.clone();
        let (line_tx, input) = mpsc::unbounded_channel();
        let (prompts, prompt_rx) = std::sync::mpsc::channel::<String>();
        let thread = std::thread::Builder::new()
            .name("sipline-editor".into())
            .spawn(move || editor_loop(rl, prompt_rx, line_tx, empty, editing2, history))
            .map_err(ReadlineError::Io)?;
        Ok((
            Terminal {
                input,
                prompts,
                thread: Some(thread),
                editing,
                saved_stty,
            },
            printer,
        ))
    }

    /// Lets the editor read the next line with this prompt.
    pub fn prompt(&self, prompt: String) {
        let _ = self.prompts.send(prompt);
    }

    /// Ends the editor thread and saves the history. When a line is
    /// being edited (the phone stops on a signal), the thread cannot be
    /// woken: the terminal's settings are restored instead and the thread
    /// ends with the process.
    pub fn stop(mut self) {
        let Terminal {
            prompts,
            thread,
            editing,
            saved_stty,
            ..
        } = &mut self;
        drop(std::mem::replace(prompts, std::sync::mpsc::channel().0));
        if editing.load(Ordering::SeqCst) {
            if let Some(saved) = saved_stty {
                let _ = std::process::Command::new("stty")
                    .arg(saved.as_str())
                    .stdin(std::process::Stdio::inherit())
                    .status();
            }
            println!();
            return;
        }
        if let Some(t) = thread.take() {
            let _ = t.join();
        }
    }
}

fn editor_loop(
    mut rl: Editor<PhoneHelper, DefaultHistory>,
    prompts: std::sync::mpsc::Receiver<String>,
    lines: mpsc::UnboundedSender<Input>,
    empty: Arc<AtomicBool>,
    editing: Arc<AtomicBool>,
    history: Option<PathBuf>,
) {
    let save = |rl: &mut Editor<PhoneHelper, DefaultHistory>| {
        if let Some(h) = &history {
            if let Some(dir) = h.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            if let Err(e) = rl.save_history(h) {
                tracing::debug!("cannot save the prompt history: {e}");
            }
        }
    };
    'prompts: while let Ok(prompt) = prompts.recv() {
        loop {
            empty.store(true, Ordering::SeqCst);
            editing.store(true, Ordering::SeqCst);
            let read = rl.readline(&prompt);
            editing.store(false, Ordering::SeqCst);
            match read {
                Ok(line) => {
                    save(&mut rl);
                    if lines.send(Input::Line(line)).is_err() {
                        break 'prompts;
                    }
                    continue 'prompts;
                }
                Err(ReadlineError::Interrupted) if empty.load(Ordering::SeqCst) => {
                    // Ctrl-C on an empty line: ask before quitting.
                    editing.store(true, Ordering::SeqCst);
                    let answer = rl.readline("quit sipline? (y/N) ");
                    editing.store(false, Ordering::SeqCst);
                    tracing::debug!("quit question: {answer:?}");
                    let quit = match answer {
                        Ok(a) => {
                            a.trim().eq_ignore_ascii_case("y")
                                || a.trim().eq_ignore_ascii_case("yes")
                        }
                        Err(ReadlineError::Interrupted | ReadlineError::Eof) => true,
                        Err(_) => false,
                    };
                    if quit {
                        let _ = lines.send(Input::Line("quit".into()));
                        continue 'prompts;
                    }
                }
                // Ctrl-C with text: the line is dropped; read again.
                Err(ReadlineError::Interrupted) => tracing::debug!("line cancelled"),
                Err(ReadlineError::Eof) => {
                    let _ = lines.send(Input::Eof);
                    continue 'prompts;
                }
                Err(e) => {
                    tracing::error!("terminal: {e}");
                    let _ = lines.send(Input::Eof);
                    break 'prompts;
                }
            }
        }
    }
    save(&mut rl);
}

/// Lines from a non-terminal stdin (scripts), one [`Input`] each, then
/// [`Input::Eof`].
pub fn stdin_lines() -> mpsc::UnboundedReceiver<Input> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::stdin().lock().lines() {
            match line {
                Ok(l) => {
                    if tx.send(Input::Line(l)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::error!("reading stdin: {e}");
                    break;
                }
            }
        }
        let _ = tx.send(Input::Eof);
    });
    rx
}

/// The `-e` commands, then [`Input::Eof`].
pub fn script_lines(commands: &[String]) -> mpsc::UnboundedReceiver<Input> {
    let (tx, rx) = mpsc::unbounded_channel();
    for c in commands {
        let _ = tx.send(Input::Line(c.clone()));
    }
    let _ = tx.send(Input::Eof);
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words() -> Words {
        Words {
            contacts: vec!["bob".into(), "bobby".into(), "carol".into()],
            devices: vec!["USB Headset".into(), "USB Mic".into(), "default".into()],
        }
    }

    #[test]
    fn tab_completes_command_names_first() {
        let w = words();
        assert_eq!(
            complete_line("ca", 2, &w),
            (0, vec!["call".into(), "calls".into()])
        );
        assert_eq!(
            complete_line("wait", 4, &w),
            (0, vec!["wait".into(), "wait-for".into()])
        );
        assert_eq!(complete_line("zz", 2, &w), (0, vec![]));
    }

    #[test]
    fn tab_completes_contacts_after_call_and_transfer() {
        let w = words();
        assert_eq!(
            complete_line("call bo", 7, &w),
            (5, vec!["bob".into(), "bobby".into()])
        );
        assert_eq!(complete_line("c ca", 4, &w), (2, vec!["carol".into()]));
        assert_eq!(
            complete_line("transfer c", 10, &w),
            (9, vec!["carol".into()])
        );
        assert_eq!(complete_line("call bob x", 10, &w), (9, vec![]));
    }

    #[test]
    fn tab_completes_device_names_with_spaces() {
        let w = words();
        assert_eq!(
            complete_line("devices in USB", 14, &w),
            (11, vec!["USB Headset".into(), "USB Mic".into()])
        );
        assert_eq!(
            complete_line("dev out USB H", 13, &w),
            (8, vec!["USB Headset".into()])
        );
        assert_eq!(complete_line("devices o", 9, &w), (8, vec!["out".into()]));
    }

    #[test]
    fn tab_completes_fixed_words() {
        let w = words();
        assert_eq!(
            complete_line("trace o", 7, &w),
            (6, vec!["off".into(), "on".into()])
        );
        assert_eq!(complete_line("reg r", 5, &w), (4, vec!["refresh".into()]));
        assert_eq!(complete_line("help dt", 7, &w), (5, vec!["dtmf".into()]));
        assert_eq!(
            complete_line("wait-for ans", 12, &w),
            (9, vec!["answered".into()])
        );
    }

    #[test]
    fn the_live_prompt_replaces_the_shown_one_only_when_it_fits() {
        let shown = "[#1 bob@x calling   00:00]> ";
        assert_eq!(
            redrawn_prompt(shown, "[#1 bob@x active    00:07]> ").as_deref(),
            Some("[#1 bob@x active    00:07]> ")
        );
        assert_eq!(
            redrawn_prompt(shown, "[#1 bob@x on hold   00:07 +1]> "),
            None
        );
        assert_eq!(
            redrawn_prompt("[sipline :5060]> ", "[b]> ").as_deref(),
            Some("[b]>             "),
            "a shorter prompt is padded: the typed text keeps its column"
        );
        assert_eq!(redrawn_prompt("[a]> ", ""), None);
        assert_eq!(redrawn_prompt("quit sipline? (y/N) ", "[a]> "), None);
    }

    #[test]
    fn scripts_end_with_eof() {
        let mut rx = script_lines(&["call 1".into(), "hangup".into()]);
        assert_eq!(rx.try_recv().unwrap(), Input::Line("call 1".into()));
        assert_eq!(rx.try_recv().unwrap(), Input::Line("hangup".into()));
        assert_eq!(rx.try_recv().unwrap(), Input::Eof);
    }
}
