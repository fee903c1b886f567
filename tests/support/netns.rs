//! A real NAT for the tests, built from Linux network namespaces.
//!
//! # Topology
//!
//! [`Nat::build`] creates three namespaces, none of them connected to the
//! machine's own namespace:
//!
//! ```text
//!   private ns                 router ns                      public ns
//!  ┌───────────────┐ veth ┌──────────────────────┐ veth ┌──────────────────┐
//!  │ eth0          ├──────┤ lan0            wan0 ├──────┤ eth0             │
//!  │ 198.51.100.10 │      │ 198.51.100.1         │      │ 198.51.100.70    │
//!  │ default via   │      │       198.51.100.65  │      │ (198.51.100.71)  │
//!  │  198.51.100.1 │      │ ip_forward=1         │      │ no route back to │
//!  └───────────────┘      │ MASQUERADE -o wan0   │      │ the private side │
//!                         └──────────────────────┘      └──────────────────┘
//!        198.51.100.0/26                                 198.51.100.64/26
//! ```
//!
//! The router runs `iptables -t nat -A POSTROUTING -o wan0 -j MASQUERADE`
//! (optionally `--random-fully`), so everything the private host sends to
//! the public side leaves from [`Nat::ROUTER_PUBLIC`]; the public host has
//! no route to the private subnet, so the only way in is a conntrack
//! mapping, as behind a real home NAT. The public host can carry a second
//! address ([`Nat::PUBLIC_ALT`], [`NatOptions::second_public_address`]):
//! RFC 5780 behaviour discovery needs a STUN server with two IP addresses.
//! `lo` is up in every namespace; `ip_forward` is enabled in the router only.
//!
//! # Name resolution
//!
//! `ip netns exec NS` bind-mounts the files of `/etc/netns/NS/` over `/etc/`.
//! [`Nat::build`] writes a `resolv.conf` there naming `127.0.0.1` (the
//! namespace's own loopback, where nothing answers) and an `nsswitch.conf`
//! with `hosts: files dns`, so a program run inside can never reach the
//! machine's resolver (not even through a local daemon's unix socket): a
//! name that is not in `/etc/hosts` fails at once.
//!
//! # Names and teardown
//!
//! Namespace names are `sl<pid>n<counter>{p,r,u}` (private, router, public),
//! unique per test process and per [`Nat`] value, so parallel tests and
//! reruns do not collide. Interfaces are created directly inside the
//! namespaces (`ip -n NS link add … peer … netns NS2`), so their names are
//! local to each namespace and never appear in the machine's namespace.
//! [`Drop`] deletes the three namespaces (which destroys the veths), also
//! while unwinding from a failed assertion. Processes a test starts inside a
//! namespace are the test's to stop (drop their guards before the [`Nat`]).
//! A test process killed outright (SIGKILL, a CI timeout) cannot run Drop:
//! [`Nat::build`] first deletes namespaces of this naming scheme whose PID
//! no longer exists.
//!
//! # Running things inside
//!
//! - [`Netns::command`] returns `ip netns exec NS <program>` as a
//!   [`std::process::Command`];
//! - [`Netns::run`] runs a closure on a fresh thread that has joined the
//!   namespace (`setns(2)`); sockets created there stay in that namespace
//!   and can be used from any thread afterwards ([`Netns::bind_udp`]).
//!
//! # Root
//!
//! Namespaces need CAP_NET_ADMIN (CI runs as root). Nothing is skipped: if
//! the namespaces cannot be built, [`Nat::build`] panics with the command
//! that failed and its stderr.
//!
//! # By hand
//!
//! `docs/nat.md` lists the same steps as shell commands.

#![allow(dead_code)]

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Runs `cmd`, panicking with its stderr when it fails.
fn run_checked(cmd: &mut Command) -> Output {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e} (is iproute2/iptables installed?)"));
    if !out.status.success() {
        panic!(
            "{shown} failed ({}): {}{}\nthe NAT test harness needs root (CAP_NET_ADMIN), \
             iproute2, iptables and conntrack",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    out
}

fn ip(args: &[&str]) -> Output {
    run_checked(Command::new("ip").args(args))
}

/// One network namespace created by [`Nat`].
#[derive(Debug, Clone)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// `ip netns exec <name> <program>`: add arguments, environment and
    /// stdio to it as to any [`Command`].
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Runs `program args…` inside the namespace and returns its stdout;
    /// panics (with stderr) when it fails.
    pub fn run_cmd(&self, program: &str, args: &[&str]) -> String {
        let out = run_checked(self.command(program).args(args));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `f` on a new thread that has entered this namespace
    /// (`setns(2)` with `CLONE_NEWNET` changes only the calling thread), and
    /// returns its result. Sockets opened by `f` belong to the namespace for
    /// their whole life, whichever thread uses them later.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            // SAFETY: setns on a valid, open namespace file descriptor; it
            // affects only this thread, which ends when `f` returns.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns({path}): {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("the closure run inside the namespace does not panic")
    }

    /// A UDP socket bound to `addr` inside this namespace.
    pub fn bind_udp(&self, addr: SocketAddr) -> UdpSocket {
        self.run(move || {
            UdpSocket::bind(addr).unwrap_or_else(|e| panic!("bind {addr} in namespace: {e}"))
        })
    }
}

/// How [`Nat::build`] sets the router up.
#[derive(Debug, Clone, Default)]
pub struct NatOptions {
    /// `MASQUERADE --random-fully`: the NAT picks a random public port for
    /// every new mapping instead of keeping the source port.
    pub random_fully: bool,
    /// Adds [`Nat::PUBLIC_ALT`] to the public host (RFC 5780 STUN servers
    /// need two addresses).
    pub second_public_address: bool,
}

/// Three namespaces forming a NAT; see the module documentation.
pub struct Nat {
    pub private: Netns,
    pub router: Netns,
    pub public: Netns,
    random_fully: bool,
}

impl Nat {
    /// The NATed host.
    pub const PRIVATE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
    /// The router's address on the private side (the private host's gateway).
    pub const ROUTER_PRIVATE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
    /// The router's public address: the NAT's external address.
    pub const ROUTER_PUBLIC: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 65);
    /// The public host, where servers and peers run.
    pub const PUBLIC: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 70);
    /// The public host's second address ([`NatOptions::second_public_address`]).
    pub const PUBLIC_ALT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 71);
    /// The router's public interface, the one MASQUERADE applies to.
    pub const WAN_IF: &'static str = "wan0";

    /// Builds the namespaces, links, addresses, routes and NAT rule. Panics
    /// with a clear message when anything fails (after deleting what was
    /// already made).
    pub fn build(options: NatOptions) -> Nat {
        reap_stale();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let base = format!("sl{}n{}", std::process::id(), n);
        let nat = Nat {
            private: Netns {
                name: format!("{base}p"),
            },
            router: Netns {
                name: format!("{base}r"),
            },
            public: Netns {
                name: format!("{base}u"),
            },
            random_fully: options.random_fully,
        };
        // From here on, a panic drops `nat`, which deletes what exists.
        for ns in [&nat.private, &nat.router, &nat.public] {
            ip(&["netns", "add", &ns.name]);
            ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
            write_etc(&ns.name);
        }
        let (p, r, u) = (&nat.private.name, &nat.router.name, &nat.public.name);
        // Private host eth0 <-> router lan0.
        ip(&[
            "-n", p, "link", "add", "eth0", "type", "veth", "peer", "name", "lan0", "netns", r,
        ]);
        // Router wan0 <-> public host eth0.
        ip(&[
            "-n", r, "link", "add", "wan0", "type", "veth", "peer", "name", "eth0", "netns", u,
        ]);
        ip(&["-n", p, "addr", "add", "198.51.100.10/26", "dev", "eth0"]);
        ip(&["-n", r, "addr", "add", "198.51.100.1/26", "dev", "lan0"]);
        ip(&["-n", r, "addr", "add", "198.51.100.65/26", "dev", "wan0"]);
        ip(&["-n", u, "addr", "add", "198.51.100.70/26", "dev", "eth0"]);
        if options.second_public_address {
            ip(&["-n", u, "addr", "add", "198.51.100.71/26", "dev", "eth0"]);
        }
        ip(&["-n", p, "link", "set", "eth0", "up"]);
        ip(&["-n", r, "link", "set", "lan0", "up"]);
        ip(&["-n", r, "link", "set", "wan0", "up"]);
        ip(&["-n", u, "link", "set", "eth0", "up"]);
        ip(&["-n", p, "route", "add", "default", "via", "198.51.100.1"]);
        nat.router
            .run_cmd("sysctl", &["-q", "-w", "net.ipv4.ip_forward=1"]);
        nat.install_masquerade(options.random_fully);
        nat
    }

    /// Replaces the router's NAT rule by a MASQUERADE with or without
    /// `--random-fully`. Existing conntrack entries keep their mapping: call
    /// [`Nat::flush_conntrack`] to make the change apply to them too.
    pub fn set_random_fully(&mut self, random_fully: bool) {
        self.router
            .run_cmd("iptables", &["-t", "nat", "-F", "POSTROUTING"]);
        self.install_masquerade(random_fully);
    }

    /// Whether the current rule uses `--random-fully`.
    pub fn random_fully(&self) -> bool {
        self.random_fully
    }

    fn install_masquerade(&self, random_fully: bool) {
        let mut args = vec![
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-o",
            Self::WAN_IF,
            "-j",
            "MASQUERADE",
        ];
        if random_fully {
            args.push("--random-fully");
        }
        self.router.run_cmd("iptables", &args);
    }

    /// `iptables -t nat -S POSTROUTING` in the router, for diagnostics.
    pub fn rules(&self) -> String {
        self.router
            .run_cmd("iptables", &["-t", "nat", "-S", "POSTROUTING"])
    }

    /// Sets the router's `net.netfilter.nf_conntrack_udp_timeout` (seconds
    /// an unreplied/one-way UDP mapping lives).
    pub fn set_udp_timeout(&self, seconds: u32) {
        self.set_sysctl("net.netfilter.nf_conntrack_udp_timeout", seconds);
    }

    /// Sets the router's `net.netfilter.nf_conntrack_udp_timeout_stream`
    /// (seconds a UDP mapping that saw traffic both ways lives).
    pub fn set_udp_timeout_stream(&self, seconds: u32) {
        self.set_sysctl("net.netfilter.nf_conntrack_udp_timeout_stream", seconds);
    }

    /// Reads a numeric sysctl in the router namespace.
    pub fn router_sysctl(&self, key: &str) -> u32 {
        let out = self.router.run_cmd("sysctl", &["-n", key]);
        out.trim()
            .parse()
            .unwrap_or_else(|e| panic!("sysctl {key} = {out:?}: {e}"))
    }

    fn set_sysctl(&self, key: &str, value: u32) {
        self.router
            .run_cmd("sysctl", &["-q", "-w", &format!("{key}={value}")]);
    }

    /// `conntrack -F` in the router: forgets every mapping, so the next
    /// packet from the private side gets a fresh one (a "NAT reboot").
    pub fn flush_conntrack(&self) {
        self.router.run_cmd("conntrack", &["-F"]);
    }

    /// `conntrack -L -p udp` in the router, for diagnostics.
    pub fn conntrack_udp(&self) -> String {
        self.router.run_cmd("conntrack", &["-L", "-p", "udp"])
    }
}

impl Drop for Nat {
    fn drop(&mut self) {
        for ns in [&self.private, &self.router, &self.public] {
            // Errors are ignored: a namespace that a failed build never
            // created is simply absent.
            delete_netns(&ns.name);
        }
    }
}

/// The `/etc/netns/NAME/` files of the "Name resolution" section.
fn write_etc(name: &str) {
    let dir = std::path::PathBuf::from(format!("/etc/netns/{name}"));
    let made = std::fs::create_dir_all(&dir)
        .and_then(|_| std::fs::write(dir.join("resolv.conf"), "nameserver 127.0.0.1\n"))
        .and_then(|_| std::fs::write(dir.join("nsswitch.conf"), "hosts: files dns\n"));
    if let Err(e) = made {
        panic!("writing {dir:?}: {e} (the NAT test harness needs root)");
    }
}

/// Deletes a namespace and its `/etc/netns` files; errors are ignored (a
/// failed build may not have made them).
fn delete_netns(name: &str) {
    let _ = Command::new("ip")
        .args(["netns", "del", name])
        .stderr(std::process::Stdio::null())
        .status();
    let _ = std::fs::remove_dir_all(format!("/etc/netns/{name}"));
}

/// Lists the names of the machine's named namespaces (`ip netns list`).
pub fn netns_names() -> Vec<String> {
    let out = ip(&["netns", "list"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// The PID in a name of our scheme (`sl<pid>n<counter>{p,r,u}`).
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("sl")?;
    let (pid, rest) = rest.split_once('n')?;
    let counter = rest.strip_suffix(['p', 'r', 'u'])?;
    if counter.is_empty() || !counter.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// Deletes namespaces left by test processes that no longer exist.
fn reap_stale() {
    for name in netns_names() {
        if let Some(pid) = owner_pid(&name)
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            delete_netns(&name);
        }
    }
}
