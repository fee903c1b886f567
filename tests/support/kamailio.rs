//! A real SIP registrar and proxy for the tests: Debian's Kamailio 5.6
//! (package `kamailio`), started by the test itself as a child process on
//! `udp:127.0.0.1:<free port>`, with no database.
//!
//! # What the instance does
//!
//! [`Kamailio::start`] fills `tests/data/kamailio/registrar.cfg.tmpl` into a
//! tempdir and runs `/usr/sbin/kamailio -f <cfg> -DD -E -Y <tempdir> -P
//! <tempdir>/kamailio.pid` in the foreground (its worker processes share its
//! process group). The routing script:
//!
//! - `OPTIONS` to the server itself (no user part) → `200 OK` (also used as
//!   the readiness probe);
//! - `REGISTER` → Digest challenge `401` with `qop="auth"` (RFC 3261 §22.4,
//!   RFC 2617); the Authorization user must equal the To user (else `403
//!   Forbidden auth ID`); then `save("location")`, with the `Expires` bounds
//!   of [`KamailioOptions`] (`423` + `Min-Expires` below `min_expires`, RFC
//!   3261 §10.3 step 7);
//! - other out-of-dialog requests whose From domain is ours (`<domain>` or
//!   `127.0.0.1`, any port) → `407` proxy challenge when
//!   [`KamailioOptions::auth_invite`] is set (the default); the
//!   Proxy-Authorization user must equal the From user;
//! - `INVITE` (and `SUBSCRIBE`) → `record_route()` when
//!   [`KamailioOptions::record_route`] is set (the default), then
//!   `lookup("location")` on the Request-URI user and `t_relay()`; `404` if
//!   the user has no binding;
//! - in-dialog requests (To tag) → `loose_route()` + `t_relay()`; `CANCEL`
//!   and `ACK` follow Kamailio's default script.
//!
//! Passwords are a static table: a `switch ($au)` generated from `users`
//! sets `$var(pw)` and `pv_auth_check()` (module `auth`) checks the answer;
//! the realm is [`Kamailio::realm`] (= the domain). `usrloc` runs with
//! `db_mode 0` and `use_domain 0`, so bindings are keyed by user name only:
//! `sip:alice@example.test` and `sip:alice@127.0.0.1` are the same AoR.
//! Digest algorithm: MD5 by default, `SHA-256` through the `auth` module's
//! `algorithm` parameter ([`DigestAlgorithm::Sha256`]).
//!
//! The location table is read over Kamailio's RPC: the `ctl` module listens on
//! a unix socket in the tempdir and [`Kamailio::bindings`] runs `/usr/sbin/kamcmd
//! -s unix:<socket> ul.lookup location <user>` and parses its text output.
//!
//! Kamailio's log (stderr, `-E`) is collected; [`Kamailio::log`] returns it and
//! it is printed to stderr when the value is dropped during a panic, so a
//! failing test shows what the server saw. Drop sends SIGTERM to the PID we
//! started, waits up to 3 s, then SIGKILLs its process group.
//!
//! # Example: sipline against the registrar
//!
//! (sipline's registration flags do not exist yet; the names below are the
//! intended shape.)
//!
//! ```ignore
//! #[path = "support/kamailio.rs"]
//! mod kamailio;
//! use kamailio::{Kamailio, KamailioOptions};
//!
//! let k = Kamailio::start(&[("alice", "secret-a"), ("bob", "secret-b")],
//!                         KamailioOptions::default());
//! // sipline register --once --registrar <k.uri()> --user alice \
//! //     --password secret-a          (AoR k.aor("alice") = sip:alice@127.0.0.1)
//! let b = k.wait_bindings("alice", Duration::from_secs(5), |b| !b.is_empty());
//! assert_eq!(b.len(), 1);             // (contact URI, seconds left)
//! // A call: register bob (e.g. a `sipline answer` instance), then
//! // sipline call sip:bob@127.0.0.1 --proxy <k.uri()> --user alice --password secret-a
//! // Kamailio answers the INVITE with 407, expects the retry with
//! // Proxy-Authorization, Record-Routes it and relays it to bob's contact.
//! ```
//!
//! `tests/kamailio_harness.rs` shows the raw exchanges (UDP + Digest
//! computed in the test) and a SIPp call (`tests/data/kamailio/uac_auth_call.xml`).

#![allow(dead_code)]

use std::fmt::Write as _;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const KAMAILIO_BIN: &str = "/usr/sbin/kamailio";
const KAMCMD_BIN: &str = "/usr/sbin/kamcmd";
const TEMPLATE: &str = include_str!("../data/kamailio/registrar.cfg.tmpl");
/// How long `start` waits for the first answer to its OPTIONS probe.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Digest hash algorithm offered in the challenges (RFC 8760 adds SHA-256).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DigestAlgorithm {
    Md5,
    Sha256,
}

impl DigestAlgorithm {
    /// The token Kamailio's `auth` module takes and puts in `algorithm=`.
    pub fn token(self) -> &'static str {
        match self {
            DigestAlgorithm::Md5 => "MD5",
            DigestAlgorithm::Sha256 => "SHA-256",
        }
    }
}

/// How the registrar behaves; `Default` gives the usual setup.
#[derive(Clone, Debug)]
pub struct KamailioOptions {
    /// The domain of the users' AoRs and the Digest realm. Default
    /// `"127.0.0.1"`. From/Request-URI hosts equal to it or to `127.0.0.1`
    /// count as ours (compared as strings, not as a Kamailio `alias`);
    /// requests are still sent to 127.0.0.1:port, no DNS is involved.
    pub domain: String,
    /// Expires given to a contact whose REGISTER carries none. Default 3600.
    pub default_expires: u32,
    /// Below this, a REGISTER gets `423 Interval Too Brief` with
    /// `Min-Expires`. `None`: no lower bound.
    pub min_expires: Option<u32>,
    /// Larger Expires values are lowered to this in the 200. `None`: no cap.
    pub max_expires: Option<u32>,
    /// Challenge (407) out-of-dialog non-REGISTER requests from our users,
    /// INVITE among them. Default true.
    pub auth_invite: bool,
    /// Insert a Record-Route into INVITE/SUBSCRIBE. Default true.
    pub record_route: bool,
    /// Digest algorithm of the challenges. Default MD5.
    pub algorithm: DigestAlgorithm,
    /// Kamailio `debug` level (2 = info, 3 = debug). Default 2.
    pub debug: i32,
    /// Where to listen. Default `None`: 127.0.0.1 on a free port.
    pub listen: Option<SocketAddr>,
    /// Run inside this network namespace (`ip netns exec <name>`); the
    /// readiness check then goes over the RPC unix socket, which works
    /// across namespaces. Default `None`: the machine's namespace.
    pub netns: Option<String>,
    /// Load the `stun` module: Binding requests on the SIP port are
    /// answered (RFC 5626 §4.4.2 keep-alives). Default false.
    pub stun: bool,
}

impl Default for KamailioOptions {
    fn default() -> Self {
        KamailioOptions {
            domain: "127.0.0.1".to_string(),
            default_expires: 3600,
            min_expires: None,
            max_expires: None,
            auth_invite: true,
            record_route: true,
            algorithm: DigestAlgorithm::Md5,
            debug: 2,
            listen: None,
            netns: None,
            stun: false,
        }
    }
}

/// A running Kamailio; stopped on drop.
pub struct Kamailio {
    child: Child,
    ip: IpAddr,
    port: u16,
    netns: Option<String>,
    domain: String,
    dir: tempfile::TempDir,
    ctl_socket: PathBuf,
    log: Arc<Mutex<String>>,
}

impl Kamailio {
    /// Writes the config for `users` (`(name, password)` pairs) and `opts`,
    /// starts Kamailio on a free UDP port of 127.0.0.1 and returns once it
    /// answers an OPTIONS. Panics (with Kamailio's log) if it does not start.
    pub fn start(users: &[(&str, &str)], opts: KamailioOptions) -> Kamailio {
        let mut last_log = String::new();
        if let Some(listen) = opts.listen {
            return Self::try_start(users, &opts, listen.ip(), listen.port())
                .unwrap_or_else(|log| panic!("kamailio did not start; its log:\n{log}"));
        }
        // A free port can be taken between our probe and Kamailio's bind.
        for _attempt in 0..3 {
            let port = free_udp_port();
            match Self::try_start(users, &opts, IpAddr::V4(Ipv4Addr::LOCALHOST), port) {
                Ok(k) => return k,
                Err(log) => last_log = log,
            }
        }
        panic!("kamailio did not start; its log:\n{last_log}");
    }

    fn try_start(
        users: &[(&str, &str)],
        opts: &KamailioOptions,
        ip: IpAddr,
        port: u16,
    ) -> Result<Kamailio, String> {
        let dir = tempfile::Builder::new()
            .prefix("kam")
            .tempdir()
            .expect("a tempdir can be created");
        let ctl_socket = dir.path().join("ctl.sock");
        let cfg_path = dir.path().join("kamailio.cfg");
        let cfg = render_config(users, opts, ip, port, &ctl_socket);
        std::fs::write(&cfg_path, cfg).expect("the config file can be written");

        // `ip netns exec` execs Kamailio in the same process: the PID and
        // process group below are Kamailio's.
        let mut cmd = match &opts.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, KAMAILIO_BIN]);
                c
            }
            None => Command::new(KAMAILIO_BIN),
        };
        let mut child = cmd
            .arg("-f")
            .arg(&cfg_path)
            .args(["-DD", "-E", "-m", "32", "-M", "8"])
            .arg("-Y")
            .arg(dir.path())
            .arg("-P")
            .arg(dir.path().join("kamailio.pid"))
            .arg("-w")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("{KAMAILIO_BIN} runs (apt-get install kamailio): {e}"));
        let log = Arc::new(Mutex::new(String::new()));
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let log2 = log.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut l) = log2.lock() {
                    l.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
        let mut k = Kamailio {
            child,
            ip,
            port,
            netns: opts.netns.clone(),
            domain: opts.domain.clone(),
            dir,
            ctl_socket,
            log,
        };
        k.wait_ready()?;
        Ok(k)
    }

    /// Probes with OPTIONS until any response comes back (inside a
    /// namespace: until the RPC socket answers, which Kamailio opens after
    /// binding its SIP socket).
    fn wait_ready(&mut self) -> Result<(), String> {
        if self.netns.is_some() {
            let deadline = Instant::now() + READY_TIMEOUT;
            while Instant::now() < deadline {
                let ok = Command::new(KAMCMD_BIN)
                    .arg("-s")
                    .arg(format!("unix:{}", self.ctl_socket.display()))
                    .arg("core.uptime")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                if ok {
                    return Ok(());
                }
                if self.has_exited() {
                    return Err(self.log());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            return Err(format!(
                "no RPC answer within {READY_TIMEOUT:?}\n{}",
                self.log()
            ));
        }
        let sock = UdpSocket::bind("127.0.0.1:0").expect("a probe socket binds");
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("a read timeout can be set");
        let local = sock.local_addr().expect("a bound socket has an address");
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut n = 0u32;
        let mut buf = [0u8; 2048];
        while Instant::now() < deadline {
            n += 1;
            let probe = format!(
                "OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n\
                 Via: SIP/2.0/UDP {local};branch=z9hG4bK-probe-{n}\r\n\
                 Max-Forwards: 70\r\n\
                 From: <sip:probe@127.0.0.1>;tag=probe\r\n\
                 To: <sip:127.0.0.1:{port}>\r\n\
                 Call-ID: probe-{port}@127.0.0.1\r\n\
                 CSeq: {n} OPTIONS\r\n\
                 Content-Length: 0\r\n\r\n",
                port = self.port
            );
            let _ = sock.send_to(probe.as_bytes(), self.addr());
            if let Ok((len, _)) = sock.recv_from(&mut buf)
                && buf[..len].starts_with(b"SIP/2.0 ")
            {
                return Ok(());
            }
            if self.has_exited() {
                return Err(self.log());
            }
        }
        Err(format!(
            "no answer to OPTIONS within {READY_TIMEOUT:?}\n{}",
            self.log()
        ))
    }

    fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// The UDP port Kamailio listens on (on 127.0.0.1 unless
    /// [`KamailioOptions::listen`] says otherwise).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `<ip>:<port>`, e.g. `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        self.socket_addr().to_string()
    }

    /// [`Kamailio::addr`] as a socket address.
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.port)
    }

    /// `sip:<ip>:<port>`: the registrar / outbound proxy URI.
    pub fn uri(&self) -> String {
        format!("sip:{}", self.socket_addr())
    }

    /// The users' domain (`KamailioOptions::domain`).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The Digest realm of the challenges: the domain.
    pub fn realm(&self) -> &str {
        &self.domain
    }

    /// `sip:<user>@<domain>`.
    pub fn aor(&self, user: &str) -> String {
        format!("sip:{user}@{}", self.domain)
    }

    /// The generated config file (for reading when a test fails).
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("kamailio.cfg")
    }

    /// The directory holding the config, pid file and RPC socket.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything Kamailio has logged so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Runs `kamcmd -s unix:<ctl socket> <args>` and returns its stdout
    /// (stderr appended), e.g. `rpc(&["ul.dump"])`.
    pub fn rpc(&self, args: &[&str]) -> String {
        let out = Command::new(KAMCMD_BIN)
            .arg("-s")
            .arg(format!("unix:{}", self.ctl_socket.display()))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{KAMCMD_BIN} runs: {e}"));
        let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
        s.push_str(&String::from_utf8_lossy(&out.stderr));
        s
    }

    /// The current bindings of `user` as `(contact URI, seconds left)`,
    /// from `kamcmd ul.lookup location <user>`; empty if there are none.
    pub fn bindings(&self, user: &str) -> Vec<(String, u32)> {
        parse_ul_lookup(&self.rpc(&["ul.lookup", "location", user]))
    }

    /// Polls [`Kamailio::bindings`] until `pred` holds or `timeout` passes;
    /// returns the last bindings seen.
    pub fn wait_bindings(
        &self,
        user: &str,
        timeout: Duration,
        pred: impl Fn(&[(String, u32)]) -> bool,
    ) -> Vec<(String, u32)> {
        let deadline = Instant::now() + timeout;
        loop {
            let b = self.bindings(user);
            if pred(&b) || Instant::now() >= deadline {
                return b;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let pid = self.child.id();
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // The workers are in the process group we created for this PID.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "---- kamailio log (port {}) ----\n{}---- end of kamailio log ----",
                self.port,
                self.log()
            );
        }
    }
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("an ephemeral UDP port is available on 127.0.0.1")
        .port()
}

/// A Kamailio config string literal; quotes and backslashes are escaped.
fn cfg_string(s: &str) -> String {
    assert!(
        !s.chars().any(|c| c.is_control()),
        "no control characters in config strings: {s:?}"
    );
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

fn render_config(
    users: &[(&str, &str)],
    opts: &KamailioOptions,
    ip: IpAddr,
    port: u16,
    ctl: &Path,
) -> String {
    assert!(
        opts.domain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c)),
        "domain must be a plain host name or address: {:?}",
        opts.domain
    );
    let mut cases = String::new();
    for (user, pw) in users {
        assert!(
            !user.is_empty()
                && user
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-+~!*'()&=,;?/".contains(c)),
            "user names must be SIP user-part characters: {user:?}"
        );
        writeln!(
            cases,
            "\t\tcase {}:\n\t\t\t$var(pw) = {};\n\t\t\tbreak;",
            cfg_string(user),
            cfg_string(pw)
        )
        .expect("writing to a String cannot fail");
    }
    // Unknown users get a password nobody knows, so the check fails with
    // "invalid password" (an empty one makes the auth module log an error).
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let nobody = format!("no-such-user-{nanos:x}-{port}");
    let auth_condition = if opts.auth_invite {
        r#"is_method("REGISTER") || $fd == "@@DOMAIN@@" || $fd == "127.0.0.1""#
    } else {
        r#"is_method("REGISTER")"#
    };
    let record_route = if opts.record_route {
        "\trecord_route();"
    } else {
        "\t# record_route disabled by the test"
    };
    TEMPLATE
        .replace("@@DEBUG@@", &opts.debug.to_string())
        .replace("@@LISTEN@@", &SocketAddr::new(ip, port).to_string())
        .replace(
            "@@STUN@@",
            if opts.stun {
                "loadmodule \"stun.so\""
            } else {
                "# stun module not loaded"
            },
        )
        .replace("@@PORT@@", &port.to_string())
        .replace("@@AUTH_CONDITION@@", auth_condition)
        .replace("@@DOMAIN@@", &opts.domain)
        .replace("@@REALM@@", &opts.domain)
        .replace("@@CTL_SOCKET@@", &ctl.display().to_string())
        .replace("@@DEFAULT_EXPIRES@@", &opts.default_expires.to_string())
        .replace(
            "@@MIN_EXPIRES@@",
            &opts.min_expires.unwrap_or(0).to_string(),
        )
        .replace(
            "@@MAX_EXPIRES@@",
            &opts.max_expires.unwrap_or(0).to_string(),
        )
        .replace("@@ALGORITHM@@", opts.algorithm.token())
        .replace("@@RECORD_ROUTE@@", record_route)
        .replace("@@USERS@@", &cases)
        .replace("@@NOBODY@@", &cfg_string(&nobody))
}

/// Parses `kamcmd ul.lookup` output: each `Contact: {` block has an
/// `Address: <uri>` line and an `Expires: <secs>` line (`permanent` → 0,
/// other words → 0).
fn parse_ul_lookup(out: &str) -> Vec<(String, u32)> {
    let mut bindings = Vec::new();
    let mut address: Option<String> = None;
    for line in out.lines().map(str::trim) {
        if let Some(a) = line.strip_prefix("Address: ") {
            address = Some(a.to_string());
        } else if let Some(e) = line.strip_prefix("Expires: ")
            && let Some(a) = address.take()
        {
            bindings.push((a, e.trim().parse().unwrap_or(0)));
        }
    }
    bindings
}
