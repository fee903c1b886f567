//! sipline behind a real NAT (`tests/support/netns.rs`: a private
//! namespace, a router namespace doing iptables MASQUERADE, a public
//! namespace), with Kamailio as registrar and proxy, coturn as STUN server
//! and a second sipline as the public peer, all on the public side.
//!
//! What is checked (issue "NAT traversal", docs/nat.md):
//! - the binding at Kamailio names the NAT's public address and port, once
//!   learnt by STUN on the SIP socket (RFC 8489) and once by rport alone
//!   (RFC 3581), the stale private binding removed;
//! - calls both ways through Kamailio carry audio both ways;
//! - keep-alives hold the NAT binding: with a 10 s UDP conntrack timeout an
//!   incoming call still arrives after 60 s idle;
//! - after a NAT "reboot" (conntrack flushed, new ports with
//!   `--random-fully`) sipline notices, registers the new address and is
//!   reachable again.
//!
//! Needs root (network namespaces); nothing here is skipped.

#[path = "support/kamailio.rs"]
mod kamailio;
#[path = "support/netns.rs"]
mod netns;
#[path = "support/proc.rs"]
mod proc;

use std::net::{SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use kamailio::{Kamailio, KamailioOptions};
use netns::{Nat, NatOptions, Netns};
use proc::{Sipline, read_wav, tone_part, write_tone_wav};
use serde_json::Value;
use sipline::media::signal::dominant_frequency;

const SECS: Duration = Duration::from_secs(40);
const SIP_PORT: u16 = 5060;
const STUN_PORT: u16 = 3478;

fn public_ip() -> String {
    Nat::PUBLIC.to_string()
}

fn nat_public() -> String {
    Nat::ROUTER_PUBLIC.to_string()
}

/// Kamailio on the public host, users alice and bob; `stun`: it answers
/// STUN on its SIP port (RFC 5626 §4.4.2 keep-alives).
fn kamailio(nat: &Nat, stun: bool) -> Kamailio {
    Kamailio::start(
        &[("alice", "pw-alice"), ("bob", "pw-bob")],
        KamailioOptions {
            domain: public_ip(),
            listen: Some(SocketAddr::V4(SocketAddrV4::new(Nat::PUBLIC, SIP_PORT))),
            netns: Some(nat.public.name.clone()),
            stun,
            ..KamailioOptions::default()
        },
    )
}

/// coturn as a plain STUN server on the public host; stopped on drop.
struct Coturn {
    child: Child,
    log: PathBuf,
}

impl Coturn {
    fn start(ns: &Netns, dir: &Path) -> Coturn {
        let log = dir.join("turnserver.log");
        let child = ns
            .command("turnserver")
            .args([
                "-n",
                "--stun-only",
                "--no-cli",
                "--no-tls",
                "--no-dtls",
                "-f",
            ])
            .args(["-L", &public_ip(), "-p", &STUN_PORT.to_string()])
            .arg("--simple-log")
            .arg("--log-file")
            .arg(&log)
            .arg("--pidfile")
            .arg(dir.join("turnserver.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("turnserver runs (apt-get install coturn)");
        let c = Coturn { child, log };
        c.wait_ready(ns);
        c
    }

    /// Sends Binding requests from the public host until one is answered.
    fn wait_ready(&self, ns: &Netns) {
        use sipline::nat::stun::{BindingClient, DEFAULT_RTO};
        let server = SocketAddr::V4(SocketAddrV4::new(Nat::PUBLIC, STUN_PORT));
        let sock = ns.bind_udp(SocketAddr::V4(SocketAddrV4::new(Nat::PUBLIC, 0)));
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut n = 0u8;
        while Instant::now() < deadline {
            n = n.wrapping_add(1);
            let mut c = BindingClient::new(server, [n; 12], DEFAULT_RTO, Instant::now());
            let (dest, req) = c.poll_transmit().expect("a request is due");
            let _ = sock.send_to(&req, dest);
            let mut buf = [0u8; 1500];
            if let Ok((len, from)) = sock.recv_from(&mut buf) {
                c.handle_datagram(&buf[..len], from);
                if let Some(Ok(_)) = c.result() {
                    return;
                }
            }
        }
        panic!(
            "coturn does not answer STUN; its log:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn password_file(dir: &Path, name: &str, password: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, format!("{password}\n")).unwrap();
    p.to_str().unwrap().to_string()
}

/// The account flags of `user` at the public Kamailio.
fn account(dir: &Path, user: &str) -> Vec<String> {
    vec![
        "--aor".into(),
        format!("sip:{user}@{}", public_ip()),
        "--registrar".into(),
        format!("sip:{}:{SIP_PORT}", public_ip()),
        "--password-file".into(),
        password_file(dir, user, &format!("pw-{user}")),
    ]
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn stun_flag() -> Vec<String> {
    vec!["--stun".into(), format!("{}:{STUN_PORT}", public_ip())]
}

/// Waits until an event satisfies `pred`; panics with the events and the
/// log otherwise.
fn wait_for(
    s: &mut Sipline,
    timeout: Duration,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = s.seen_events().iter().find(|v| pred(v)) {
            return v.clone();
        }
        if Instant::now() >= deadline {
            let seen = s.seen_events().to_vec();
            panic!(
                "{}: no {what} within {timeout:?}; events {seen:?}\nstderr:\n{}",
                s.name,
                s.stderr()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until alice's binding at Kamailio is exactly one Contact on the
/// NAT's public address; returns that Contact.
fn public_binding(k: &Kamailio, nat: &Nat, not: Option<&str>) -> String {
    let b = k.wait_bindings("alice", SECS, |b| {
        b.len() == 1 && b[0].0.contains(&nat_public()) && Some(b[0].0.as_str()) != not
    });
    assert!(
        b.len() == 1 && b[0].0.contains(&nat_public()) && Some(b[0].0.as_str()) != not,
        "alice's bindings {b:?} (want one on {}, not {not:?})\nconntrack:\n{}\n{}",
        nat_public(),
        nat.conntrack_udp(),
        k.log()
    );
    b[0].0.clone()
}

/// `sipline answer` for alice in the private namespace.
fn alice_answer(nat: &Nat, dir: &Path, extra: &[String]) -> Sipline {
    let mut args = vec![
        "answer".to_string(),
        "--local-port".into(),
        "0".into(),
        "--null-audio".into(),
    ];
    args.extend(account(dir, "alice"));
    args.extend_from_slice(extra);
    let mut alice = Sipline::spawn_in_netns(&nat.private.name, "alice", &strs(&args), &[]);
    alice.wait_event("registered", SECS);
    alice.wait_event("listening", SECS);
    alice
}

/// Bob on the public host calls alice by her AOR through Kamailio; returns
/// bob's exit code and events.
fn bob_calls_alice(nat: &Nat, dir: &Path, extra: &[String]) -> (i32, Vec<Value>, String) {
    let mut args = vec![
        "call".to_string(),
        format!("sip:alice@{}", public_ip()),
        "--null-audio".into(),
        "--timeout".into(),
        "20".into(),
    ];
    args.extend(account(dir, "bob"));
    args.extend_from_slice(extra);
    let mut bob = Sipline::spawn_in_netns(&nat.public.name, "bob", &strs(&args), &[]);
    let (code, events) = bob.wait_exit(Duration::from_secs(60));
    (code, events, bob.stderr())
}

#[test]
fn registration_behind_nat_learns_the_public_address_from_rport_alone() {
    let dir = tempfile::tempdir().unwrap();
    let nat = Nat::build(NatOptions::default());
    let k = kamailio(&nat, false);
    let mut args = vec!["register".to_string(), "--keepalive".into(), "0".into()];
    args.extend(account(dir.path(), "alice"));
    let mut alice = Sipline::spawn_in_netns(&nat.private.name, "alice", &strs(&args), &[]);
    // The first REGISTER names the private address; the 200 OK's Via
    // (RFC 3581 rport/received) tells the public one.
    let changed = wait_for(&mut alice, SECS, "nat_changed from rport", |v| {
        v["event"] == "nat_changed" && v["source"] == "rport"
    });
    let public: SocketAddr = changed["current"].as_str().unwrap().parse().unwrap();
    assert_eq!(public.ip(), Nat::ROUTER_PUBLIC);
    assert!(
        alice.seen_events().iter().all(|v| v["event"] != "nat"),
        "no STUN without --stun"
    );
    // Re-registered with the public Contact; the private one removed.
    let contact = public_binding(&k, &nat, None);
    assert_eq!(contact, format!("sip:alice@{public}"));
    assert!(
        nat.conntrack_udp()
            .contains(&format!("dport={}", public.port())),
        "MASQUERADE kept the port: the mapping is {public}\n{}",
        nat.conntrack_udp()
    );
    alice.signal("TERM");
    let (code, _) = alice.wait_exit(SECS);
    assert_eq!(code, 0, "{}", alice.stderr());
    assert!(k.bindings("alice").is_empty(), "unregistered on exit");
}

#[test]
fn registration_behind_nat_uses_the_address_found_by_stun_from_the_first_register() {
    let dir = tempfile::tempdir().unwrap();
    let nat = Nat::build(NatOptions::default());
    let _stun = Coturn::start(&nat.public, dir.path());
    let k = kamailio(&nat, false);
    let mut args = vec!["register".to_string(), "--keepalive".into(), "0".into()];
    args.extend(account(dir.path(), "alice"));
    args.extend(stun_flag());
    let mut alice = Sipline::spawn_in_netns(&nat.private.name, "alice", &strs(&args), &[]);
    let found = alice.wait_event("nat", SECS);
    assert_eq!(found["behind_nat"], true, "{found}");
    let local: SocketAddr = found["local"].as_str().unwrap().parse().unwrap();
    let public: SocketAddr = found["public"].as_str().unwrap().parse().unwrap();
    assert_eq!(local.ip(), Nat::PRIVATE);
    assert_eq!(public.ip(), Nat::ROUTER_PUBLIC);
    assert_eq!(public.port(), local.port(), "MASQUERADE keeps ports");
    alice.wait_event("registered", SECS);
    assert_eq!(
        public_binding(&k, &nat, None),
        format!("sip:alice@{public}")
    );
    // The first REGISTER already carried it: rport had nothing to correct.
    assert!(
        alice
            .seen_events()
            .iter()
            .all(|v| !(v["event"] == "nat_changed" && v["source"] == "rport")),
        "no correction by rport needed: {:?}",
        alice.seen_events()
    );
}

/// A call between alice (behind the NAT, STUN on) and bob (public), each
/// playing a tone and recording the other: both recordings hold the
/// other's tone.
fn call_with_audio_both_ways(alice_calls: bool) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let nat = Nat::build(NatOptions::default());
    let _stun = Coturn::start(&nat.public, d);
    let k = kamailio(&nat, false);
    let (tone_a, tone_b) = (d.join("a.wav"), d.join("b.wav"));
    write_tone_wav(&tone_a, 700.0, 8000, 1, 4.0, 0.5);
    write_tone_wav(&tone_b, 1300.0, 8000, 1, 4.0, 0.5);
    let (rec_a, rec_b) = (d.join("rec-a.wav"), d.join("rec-b.wav"));
    let audio = |play: &Path, rec: &Path| -> Vec<String> {
        vec![
            "--null-audio".into(),
            "--play".into(),
            play.to_str().unwrap().into(),
            "--record".into(),
            rec.to_str().unwrap().into(),
            "--codecs".into(),
            "pcmu".into(),
        ]
    };
    let answerer = |ns: &Netns, user: &str, extra: Vec<String>| {
        let mut args = vec![
            "answer".to_string(),
            "--local-port".into(),
            "0".into(),
            "--count".into(),
            "1".into(),
        ];
        args.extend(account(d, user));
        args.extend(extra);
        let mut s = Sipline::spawn_in_netns(&ns.name, user, &strs(&args), &[]);
        s.wait_event("registered", SECS);
        s.wait_event("listening", SECS);
        s
    };
    let caller = |ns: &Netns, user: &str, target: &str, extra: Vec<String>| {
        let mut args = vec![
            "call".to_string(),
            format!("sip:{target}@{}", public_ip()),
            "--duration".into(),
            "3".into(),
        ];
        args.extend(account(d, user));
        args.extend(extra);
        Sipline::spawn_in_netns(&ns.name, user, &strs(&args), &[])
    };
    let mut alice_extra = audio(&tone_a, &rec_a);
    alice_extra.extend(stun_flag());
    let bob_extra = audio(&tone_b, &rec_b);
    let (mut first, mut second) = if alice_calls {
        let bob = answerer(&nat.public, "bob", bob_extra);
        let alice = caller(&nat.private, "alice", "bob", alice_extra);
        (alice, bob)
    } else {
        let alice = answerer(&nat.private, "alice", alice_extra);
        let bob = caller(&nat.public, "bob", "alice", bob_extra);
        (bob, alice)
    };
    let (code, first_events) = first.wait_exit(Duration::from_secs(60));
    assert_eq!(code, 0, "{first_events:?}\n{}\n{}", first.stderr(), k.log());
    let (code, second_events) = second.wait_exit(SECS);
    assert_eq!(code, 0, "{second_events:?}\n{}", second.stderr());
    // Alice's SDP named the NAT's public address (STUN on her RTP socket).
    let bob_events = if alice_calls {
        second_events
    } else {
        first_events
    };
    let media = bob_events
        .iter()
        .find(|e| e["event"] == "media")
        .expect("bob negotiated media");
    let remote: SocketAddr = media["remote_rtp"].as_str().unwrap().parse().unwrap();
    assert_eq!(remote.ip(), Nat::ROUTER_PUBLIC, "{media}");
    for (rec, want, who) in [(&rec_a, 1300.0, "alice"), (&rec_b, 700.0, "bob")] {
        let (samples, rate) = read_wav(rec);
        let part = tone_part(&samples, rate);
        assert!(
            part.len() > rate as usize,
            "{who} heard at least a second of tone ({} samples)\nconntrack:\n{}",
            part.len(),
            nat.conntrack_udp()
        );
        let f = dominant_frequency(part, rate);
        assert!((f - want).abs() < 20.0, "{who} heard {f} Hz, want {want}");
    }
}

#[test]
fn public_peer_calls_the_natted_phone_by_its_aor_with_audio_both_ways() {
    call_with_audio_both_ways(false);
}

#[test]
fn natted_phone_calls_the_public_peer_with_audio_both_ways() {
    call_with_audio_both_ways(true);
}

#[test]
fn keepalives_hold_the_nat_binding_so_a_call_arrives_after_a_minute_idle() {
    let dir = tempfile::tempdir().unwrap();
    let nat = Nat::build(NatOptions::default());
    nat.set_udp_timeout(10);
    nat.set_udp_timeout_stream(10);
    let k = kamailio(&nat, false);
    let ka = vec!["--keepalive".to_string(), "5".into()];
    let mut alice = alice_answer(&nat, dir.path(), &ka);
    public_binding(&k, &nat, None);
    // A minute with no SIP traffic but the keep-alives: six times the
    // NAT's timeout.
    std::thread::sleep(Duration::from_secs(60));
    let (code, events, stderr) =
        bob_calls_alice(&nat, dir.path(), &["--duration".into(), "1".into()]);
    assert_eq!(
        code,
        0,
        "bob's call: {events:?}\n{stderr}\nconntrack:\n{}\n{}",
        nat.conntrack_udp(),
        k.log()
    );
    assert!(events.iter().any(|e| e["event"] == "answered"));
    alice.wait_event("incoming", SECS);
}

#[test]
fn without_keepalives_the_nat_forgets_the_phone() {
    // The control of the test above: the same NAT timeout and idle time
    // without keep-alives loses the mapping, so the call cannot arrive.
    let dir = tempfile::tempdir().unwrap();
    let nat = Nat::build(NatOptions::default());
    nat.set_udp_timeout(10);
    nat.set_udp_timeout_stream(10);
    let k = kamailio(&nat, false);
    let ka = vec!["--keepalive".to_string(), "0".into()];
    let mut alice = alice_answer(&nat, dir.path(), &ka);
    public_binding(&k, &nat, None);
    std::thread::sleep(Duration::from_secs(25));
    let (code, events, _) = bob_calls_alice(&nat, dir.path(), &["--duration".into(), "1".into()]);
    assert_ne!(code, 0, "the call should not get through: {events:?}");
    assert!(alice.seen_events().iter().all(|v| v["event"] != "incoming"));
}

#[test]
fn after_the_nat_reboots_with_new_ports_the_phone_reregisters_and_is_reachable() {
    let dir = tempfile::tempdir().unwrap();
    let mut nat = Nat::build(NatOptions::default());
    // The registrar answers STUN on its SIP port, so the keep-alives are
    // STUN Binding requests whose answers show the mapping (RFC 5626
    // §4.4.2).
    let k = kamailio(&nat, true);
    let ka = vec!["--keepalive".to_string(), "3".into()];
    let mut alice = alice_answer(&nat, dir.path(), &ka);
    let before = public_binding(&k, &nat, None);
    let old = before.trim_start_matches("sip:alice@").to_string();
    // Let a keep-alive see the mapping first, so the reboot shows up as a
    // change of what the keep-alives see.
    let deadline = Instant::now() + SECS;
    while !alice.stderr().contains("NAT keep-alive to") {
        assert!(
            Instant::now() < deadline,
            "no STUN keep-alive answered:\n{}",
            alice.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The NAT "reboots": every mapping is forgotten and new ones get
    // random ports.
    nat.set_random_fully(true);
    nat.flush_conntrack();
    let changed = wait_for(
        &mut alice,
        SECS,
        "nat_changed away from the old address",
        |v| v["event"] == "nat_changed" && v["previous"] == old.as_str(),
    );
    let current = changed["current"].as_str().unwrap().to_string();
    assert_ne!(old, current, "{changed}");
    let seen = alice.seen_events().to_vec();
    assert!(
        seen.iter().any(|v| v["event"] == "nat_mapping_changed"
            && v["previous"] == old.as_str()
            && v["current"] == current.as_str()),
        "a keep-alive noticed the new mapping: {seen:?}"
    );
    let after = public_binding(&k, &nat, Some(&before));
    assert_eq!(after, format!("sip:alice@{current}"));
    let (code, events, stderr) =
        bob_calls_alice(&nat, dir.path(), &["--duration".into(), "1".into()]);
    assert_eq!(code, 0, "bob's call: {events:?}\n{stderr}\n{}", k.log());
    alice.wait_event("incoming", SECS);
}

#[test]
fn the_interactive_phone_takes_stun_from_the_config_and_is_reachable_behind_nat() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let nat = Nat::build(NatOptions::default());
    let _stun = Coturn::start(&nat.public, d);
    let k = kamailio(&nat, false);
    std::fs::write(d.join("alice.pass"), "pw-alice\n").unwrap();
    let config = d.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[defaults]\nstun = \"{ip}:{STUN_PORT}\"\nkeepalive = 5\n\n\
             [[account]]\nname = \"alice\"\naor = \"sip:alice@{ip}\"\n\
             registrar = \"sip:{ip}:{SIP_PORT}\"\npassword_file = \"alice.pass\"\n",
            ip = public_ip()
        ),
    )
    .unwrap();
    let script = [
        "wait-for registered",
        "wait-for incoming",
        "answer",
        "wait-for ended",
    ];
    let mut args = vec![
        "--local-port".to_string(),
        "0".into(),
        "--null-audio".into(),
        "--config".into(),
        config.to_str().unwrap().into(),
    ];
    for c in script {
        args.push("-e".into());
        args.push(c.into());
    }
    let env = [(
        "XDG_DATA_HOME".to_string(),
        d.join("data").to_string_lossy().into_owned(),
    )];
    let mut phone = Sipline::spawn_in_netns(&nat.private.name, "phone", &strs(&args), &env);
    let found = phone.wait_event("nat", SECS);
    assert_eq!(found["behind_nat"], true, "{found}");
    let public = found["public"].as_str().unwrap().to_string();
    assert_eq!(
        public_binding(&k, &nat, None),
        format!("sip:alice@{public}")
    );
    let (code, events, stderr) = bob_calls_alice(&nat, d, &["--duration".into(), "1".into()]);
    assert_eq!(code, 0, "bob's call: {events:?}\n{stderr}\n{}", k.log());
    let (code, events) = phone.wait_exit(SECS);
    assert_eq!(code, 0, "{events:?}\n{}", phone.stderr());
}

#[test]
fn after_the_nat_reboots_the_stun_server_keepalive_notices_and_rport_corrects_the_port() {
    // The common setup: the registrar does not speak STUN (CRLF keeps its
    // flow open), a STUN server is configured. After the reboot with
    // --random-fully each destination gets its own random port, so the
    // STUN server's answer only says "changed"; the REGISTER it triggers
    // learns the port the registrar sees from rport.
    let dir = tempfile::tempdir().unwrap();
    let mut nat = Nat::build(NatOptions::default());
    let _stun = Coturn::start(&nat.public, dir.path());
    let k = kamailio(&nat, false);
    let mut extra = vec!["--keepalive".to_string(), "3".into()];
    extra.extend(stun_flag());
    let mut alice = alice_answer(&nat, dir.path(), &extra);
    let before = public_binding(&k, &nat, None);
    let old = before.trim_start_matches("sip:alice@").to_string();
    nat.set_random_fully(true);
    nat.flush_conntrack();
    wait_for(&mut alice, SECS, "nat_mapping_changed", |v| {
        v["event"] == "nat_mapping_changed" && v["previous"] == old.as_str()
    });
    // The binding ends on the port the registrar sees: the last public
    // address alice learnt (from rport, unless by chance both random ports
    // are equal).
    let deadline = Instant::now() + SECS;
    let latest = loop {
        let latest = alice
            .seen_events()
            .iter()
            .rfind(|v| v["event"] == "nat_changed")
            .map(|v| v["current"].as_str().unwrap().to_string())
            .expect("a nat_changed event");
        let b = k.bindings("alice");
        if b.len() == 1 && b[0].0 == format!("sip:alice@{latest}") && latest != old {
            break latest;
        }
        assert!(
            Instant::now() < deadline,
            "bindings {b:?}, latest address {latest}\n{}",
            nat.conntrack_udp()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let port = latest.rsplit(':').next().unwrap();
    assert!(
        nat.conntrack_udp()
            .contains(&format!("sport={SIP_PORT} dport={port}")),
        "the flow to Kamailio uses that port:\n{}",
        nat.conntrack_udp()
    );
    let (code, events, stderr) =
        bob_calls_alice(&nat, dir.path(), &["--duration".into(), "1".into()]);
    assert_eq!(code, 0, "bob's call: {events:?}\n{stderr}\n{}", k.log());
    alice.wait_event("incoming", SECS);
}
