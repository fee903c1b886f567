//! A STUN server for the NAT tests: Debian's coturn (`turnserver`) in STUN-only
//! mode, started inside a network namespace of `netns.rs`.
//!
//! `turnserver -n --stun-only --no-cli --no-tls --no-dtls --listening-ip A
//! [--listening-ip B] --listening-port 3478 --alt-listening-port 3479
//! --log-file stdout --simple-log --pidfile <tmp> --userdb <tmp>`: `-n` reads
//! no config file, the pid file and user database go to a tempdir. With two
//! listening IPs coturn answers RFC 5780 requests: OTHER-ADDRESS names the
//! second IP and the alternate port, CHANGE-REQUEST is honoured. With one IP
//! it sends no OTHER-ADDRESS.
//!
//! [`Coturn::start`] waits until every address/port pair is bound (`ss -uln`
//! in the namespace). Drop sends SIGTERM to the PID we started (`ip netns
//! exec` execs the server, so it is turnserver's own PID), waits, then
//! SIGKILLs it; its output is printed when dropped during a panic.

#![allow(dead_code)]

use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::netns::Netns;

pub const PORT: u16 = 3478;
pub const ALT_PORT: u16 = 3479;

pub struct Coturn {
    child: Child,
    log: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
    pub ips: Vec<IpAddr>,
}

impl Coturn {
    /// Starts coturn in `ns` on `ips` (one or two addresses of that
    /// namespace) and waits until it listens.
    pub fn start(ns: &Netns, ips: &[IpAddr]) -> Coturn {
        let dir = tempfile::tempdir().expect("a tempdir for coturn");
        let mut cmd = ns.command("turnserver");
        cmd.args(["-n", "--stun-only", "--no-cli", "--no-tls", "--no-dtls"]);
        for ip in ips {
            cmd.arg("--listening-ip").arg(ip.to_string());
        }
        cmd.args(["--listening-port", &PORT.to_string()])
            .args(["--alt-listening-port", &ALT_PORT.to_string()])
            .args(["--log-file", "stdout", "--simple-log"])
            .arg("--pidfile")
            .arg(dir.path().join("turnserver.pid"))
            .arg("--userdb")
            .arg(dir.path().join("turndb"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .expect("turnserver runs (Debian package coturn)");
        let log = Arc::new(Mutex::new(String::new()));
        for pipe in [
            Box::new(child.stdout.take().expect("piped")) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().expect("piped")),
        ] {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut pipe = pipe;
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    log.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        let coturn = Coturn {
            child,
            log,
            _dir: dir,
            ips: ips.to_vec(),
        };
        coturn.wait_listening(ns);
        coturn
    }

    /// The primary address: the first IP, port 3478.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.ips[0], PORT)
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    fn wait_listening(&self, ns: &Netns) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut wanted = Vec::new();
        for ip in &self.ips {
            wanted.push(format!("{ip}:{PORT}"));
            if self.ips.len() > 1 {
                wanted.push(format!("{ip}:{ALT_PORT}"));
            }
        }
        loop {
            let listening = ns.run_cmd("ss", &["-Hnuln"]);
            if wanted.iter().all(|w| listening.contains(w.as_str())) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "coturn did not bind {wanted:?} within 30 s; ss shows:\n{listening}\nlog:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: signalling the PID of the child we spawned and have not
        // reaped yet.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- coturn log ---\n{}", self.log());
        }
    }
}
