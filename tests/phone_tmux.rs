//! The interactive phone in a real terminal: tmux runs `sipline`, types
//! with `send-keys` and reads the screen with `capture-pane`, against a
//! `sipline answer` peer (and a `sipline call` caller) on loopback.
//!
//! Each test uses its own tmux server (`-L`), killed at the end even when
//! an assertion fails.

#[path = "support/proc.rs"]
mod proc;

use std::process::Command;
use std::time::{Duration, Instant};

use proc::Sipline;
use serde_json::Value;

const SECS: Duration = Duration::from_secs(30);

/// A tmux server with one 120x40 session running a command.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(name: &str, shell_command: &str) -> Tmux {
        let socket = format!("sipline-{name}-{}", std::process::id());
        let t = Tmux { socket };
        let ok = t
            .cmd(&["new-session", "-d", "-s", "phone", "-x", "120", "-y", "40"])
            .arg(shell_command)
            .status()
            .expect("tmux is installed (apt-get install tmux)");
        assert!(ok.success(), "tmux new-session failed");
        // Keep the pane after the phone exits so that its end can be checked.
        let _ = t
            .cmd(&["set-option", "-t", "phone", "remain-on-exit", "on"])
            .status();
        t
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("tmux");
        c.arg("-L").arg(&self.socket).args(args);
        c
    }

    /// Types text literally (no key names).
    fn type_text(&self, text: &str) {
        let ok = self
            .cmd(&["send-keys", "-t", "phone", "-l", text])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Presses keys by name (`Enter`, `C-c`, `Tab`).
    fn keys(&self, keys: &[&str]) {
        let ok = self
            .cmd(&["send-keys", "-t", "phone"])
            .args(keys)
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Types a line and presses Enter.
    fn line(&self, text: &str) {
        self.type_text(text);
        self.keys(&["Enter"]);
    }

    fn screen(&self) -> String {
        let out = self
            .cmd(&["capture-pane", "-p", "-t", "phone"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the screen satisfies `f`; panics with the screen.
    fn wait_for(&self, what: &str, f: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + SECS;
        loop {
            let s = self.screen();
            if f(&s) {
                return s;
            }
            if Instant::now() > deadline {
                panic!("the screen never showed {what}:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_text(&self, text: &str) -> String {
        self.wait_for(&format!("{text:?}"), |s| s.contains(text))
    }

    /// The process running in the pane (the phone: its command is exec'd).
    fn pane_pid(&self) -> u32 {
        let out = self
            .cmd(&["list-panes", "-t", "phone", "-F", "#{pane_pid}"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    }

    fn pane_dead(&self) -> bool {
        let out = self
            .cmd(&["list-panes", "-t", "phone", "-F", "#{pane_dead}"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim() == "1"
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]).status();
    }
}

fn last_line(screen: &str) -> String {
    screen
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim_end()
        .to_string()
}

/// The phone's command line (stderr logs go to a file, not the screen).
fn phone_command(dir: &std::path::Path) -> String {
    format!(
        "exec env XDG_CONFIG_HOME=/nonexistent/sipline-test-config XDG_DATA_HOME={data} \
         {bin} --bind 127.0.0.1 --local-port 0 --null-audio 2>{log}",
        data = dir.display(),
        bin = env!("CARGO_BIN_EXE_sipline"),
        log = dir.join("stderr.log").display()
    )
}

/// The phone's port from its `listening on 127.0.0.1:PORT` line.
fn listening_port(screen: &str) -> u16 {
    let rest = screen
        .split("listening on 127.0.0.1:")
        .nth(1)
        .expect("a listening line");
    rest.chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .expect("a port number")
}

fn directions(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["event"] == "media")
        .map(|e| e["direction"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn tmux_dial_dtmf_hold_resume_hangup_and_an_incoming_call_keeps_the_half_typed_line() {
    let dir = tempfile::tempdir().unwrap();
    let (mut peer, peer_port) = Sipline::answer(&["--null-audio"]);
    let tmux = Tmux::start("main", &phone_command(dir.path()));
    let screen = tmux.wait_for("the prompt", |s| {
        s.contains("listening on") && last_line(s).ends_with("]>")
    });
    let phone_port = listening_port(&screen);
    assert!(
        last_line(&screen).starts_with(&format!("[sipline :{phone_port}]>")),
        "{screen}"
    );

    // Dial: ringing, then answered.
    tmux.line(&format!("call sip:bob@127.0.0.1:{peer_port}"));
    tmux.wait_text("#1 180 Ringing");
    tmux.wait_text("#1 answered");
    peer.wait_event("answered", SECS);

    // DTMF: the peer reports the digits (RFC 4733).
    tmux.line("dtmf 1#");
    tmux.wait_text("#1 sending DTMF 1# (RFC 4733)");
    let deadline = Instant::now() + SECS;
    let digits = loop {
        let d = peer_dtmf(&mut peer);
        if d.len() >= 2 || Instant::now() > deadline {
            break d;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(digits, ["1", "#"]);

    // Hold and resume: the prompt shows it, and the peer answered our
    // sendonly re-INVITE with recvonly, then sendrecv again.
    tmux.line("hold");
    tmux.wait_text("#1 on hold");
    tmux.wait_for("the held prompt", |s| last_line(s).contains("on hold"));
    tmux.line("resume");
    tmux.wait_text("#1 resumed");
    tmux.line("hangup");
    tmux.wait_text("#1 ended: we hung up");
    peer.wait_event("ended", SECS);
    peer.signal("TERM");
    let (_, peer_events) = peer.wait_exit(SECS);
    assert_eq!(
        directions(&peer_events),
        ["sendrecv", "recvonly", "sendrecv"]
    );

    // A half-typed line stays intact while an incoming call is printed.
    tmux.wait_for("an idle prompt", |s| last_line(s).ends_with("]>"));
    tmux.type_text("call sip:half");
    tmux.wait_for("the half line", |s| last_line(s).ends_with("call sip:half"));
    let target = format!("sip:phone@127.0.0.1:{phone_port}");
    let mut caller = Sipline::spawn(
        "caller",
        &["call", &target, "--null-audio", "--bind", "127.0.0.1"],
        &[],
    );
    let screen = tmux.wait_text("#2 incoming call from sip:sipline@127.0.0.1:");
    assert!(
        last_line(&screen).ends_with("]> call sip:half"),
        "the half line was disturbed:\n{screen}"
    );
    // Ctrl-C cancels the half line; then refuse the call.
    tmux.keys(&["C-c"]);
    tmux.wait_for("an empty prompt", |s| last_line(s).ends_with("]>"));
    tmux.line("reject 603");
    tmux.wait_text("#2 ended: refused with 603");
    let (code, _) = caller.wait_exit(SECS);
    assert_eq!(code, 4, "a declined call exits with the failure code");

    // Tab completes command names; help lists the commands.
    tmux.type_text("hist");
    tmux.keys(&["Tab"]);
    tmux.wait_for("the completed name", |s| {
        let l = last_line(s);
        l.starts_with("[sipline :") && l.ends_with(" history")
    });
    tmux.keys(&["Enter"]);
    // The history lists both calls, the refused one last.
    tmux.wait_for("the history", |s| {
        s.contains("  -> bob@127.0.0.1:") && s.contains("  <- sipline@127.0.0.1:")
    });
    tmux.line("help");
    tmux.wait_text("commands (alias in brackets");

    // quit ends the program.
    tmux.line("quit");
    let deadline = Instant::now() + SECS;
    while !tmux.pane_dead() {
        assert!(
            Instant::now() < deadline,
            "quit did not exit:\n{}",
            tmux.screen()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let history = std::fs::read_to_string(dir.path().join("sipline/history.json")).unwrap();
    assert!(history.contains("\"incoming\"") && history.contains("\"outgoing\""));
}

/// The DTMF digits the peer has reported so far.
fn peer_dtmf(peer: &mut Sipline) -> Vec<String> {
    peer.seen_events()
        .iter()
        .filter(|e| e["event"] == "dtmf")
        .filter_map(|e| e["digit"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn tmux_ctrl_c_on_an_empty_line_asks_before_quitting_and_ctrl_d_quits() {
    let dir = tempfile::tempdir().unwrap();
    let tmux = Tmux::start("keys", &phone_command(dir.path()));
    tmux.wait_for("the prompt", |s| last_line(s).ends_with("]>"));
    tmux.keys(&["C-c"]);
    tmux.wait_for("the question", |s| {
        last_line(s).contains("quit sipline? (y/N)")
    });
    tmux.line("n");
    tmux.wait_for("the prompt again", |s| last_line(s).ends_with("]>"));
    assert!(!tmux.pane_dead());
    tmux.keys(&["C-d"]);
    let deadline = Instant::now() + SECS;
    while !tmux.pane_dead() {
        assert!(
            Instant::now() < deadline,
            "Ctrl-D did not quit:\n{}",
            tmux.screen()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn tmux_sigterm_while_a_line_is_typed_exits_and_restores_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    // The shell stays to record the terminal settings after the phone.
    let stty = dir.path().join("stty.txt");
    let command = phone_command(dir.path()).replacen("exec ", "", 1)
        + &format!("; stty -a > {}; sleep 30", stty.display());
    let tmux = Tmux::start("term", &command);
    tmux.wait_for("the prompt", |s| last_line(s).ends_with("]>"));
    tmux.type_text("call sip:unfinish");
    tmux.wait_for("the half line", |s| last_line(s).ends_with("sip:unfinish"));
    let shell = tmux.pane_pid();
    let out = Command::new("pgrep")
        .args(["-P", &shell.to_string()])
        .output()
        .unwrap();
    let pid: u32 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("the phone runs under the pane's shell");
    let ok = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let deadline = Instant::now() + SECS;
    while !stty.exists() || std::fs::read_to_string(&stty).unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "SIGTERM did not end the phone:\n{}",
            tmux.screen()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    tmux.wait_text("interrupted: hanging up and quitting");
    // Line editing and echo are back on (rustyline had turned them off).
    let settings = std::fs::read_to_string(&stty).unwrap();
    let words: Vec<&str> = settings.split_whitespace().collect();
    assert!(
        words.contains(&"icanon") && words.contains(&"echo"),
        "{settings}"
    );
}
