//! `sipline nat-check` against coturn through the namespace NAT of
//! `tests/support/netns.rs`: the report must match the NAT the test built.

#[path = "support/coturn.rs"]
mod coturn;
#[path = "support/netns.rs"]
mod netns;

use std::net::{IpAddr, SocketAddr};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use coturn::Coturn;
use netns::{Nat, NatOptions, Netns};
use serde_json::Value;

/// Runs `sipline --json nat-check <args>` inside `ns`, with a generous
/// deadline (the filtering tests wait 3 s for each unanswered request).
fn nat_check(ns: &Netns, args: &[&str]) -> (Output, Option<Value>) {
    let mut child = ns
        .command(env!("CARGO_BIN_EXE_sipline"))
        .args(["--json", "-v", "nat-check"])
        .args(args)
        .env("XDG_CONFIG_HOME", "/nonexistent/sipline-test-config")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the sipline binary runs");
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().expect("wait works").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("nat-check did not end within 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("output is collected");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let report = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["event"] == "nat_check");
    (out, report)
}

fn show(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn addr(v: &Value) -> SocketAddr {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{v} is an address"))
}

fn rfc5780_server(nat: &Nat) -> Coturn {
    Coturn::start(
        &nat.public,
        &[IpAddr::V4(Nat::PUBLIC), IpAddr::V4(Nat::PUBLIC_ALT)],
    )
}

#[test]
fn masquerade_is_reported_as_endpoint_independent_mapping_with_port_dependent_filtering() {
    let nat = Nat::build(NatOptions {
        second_public_address: true,
        ..NatOptions::default()
    });
    let server = rfc5780_server(&nat);
    let (out, report) = nat_check(&nat.private, &["--stun", &server.addr().to_string()]);
    assert!(out.status.success(), "{}", show(&out));
    let r = report.unwrap_or_else(|| panic!("a nat_check event: {}", show(&out)));
    let local = addr(&r["local"]);
    let public = addr(&r["public"]);
    assert_eq!(local.ip(), IpAddr::V4(Nat::PRIVATE), "{r}");
    assert_eq!(public.ip(), IpAddr::V4(Nat::ROUTER_PUBLIC), "{r}");
    // MASQUERADE keeps a free source port.
    assert_eq!(public.port(), local.port(), "{r}");
    assert_eq!(r["behind_nat"], true, "{r}");
    assert_eq!(r["other_address"], "198.51.100.71:3479", "{r}");
    assert_eq!(r["mapping"], "endpoint-independent", "{r}");
    // Linux conntrack lets in only replies from the exact address and port
    // a packet went to.
    assert_eq!(r["filtering"], "address-and-port-dependent", "{r}");
    assert!(r["advice"].as_str().unwrap().contains("no relay"), "{r}");
}

#[test]
fn masquerade_random_fully_is_reported_as_a_symmetric_nat() {
    let nat = Nat::build(NatOptions {
        second_public_address: true,
        random_fully: true,
    });
    let server = rfc5780_server(&nat);
    let (out, report) = nat_check(&nat.private, &["--stun", &server.addr().to_string()]);
    assert!(out.status.success(), "{}", show(&out));
    let r = report.unwrap_or_else(|| panic!("a nat_check event: {}", show(&out)));
    assert_eq!(
        addr(&r["public"]).ip(),
        IpAddr::V4(Nat::ROUTER_PUBLIC),
        "{r}"
    );
    assert_eq!(r["behind_nat"], true, "{r}");
    // Every new conntrack entry (each destination address and port) gets a
    // random public port: the mapping depends on address and port.
    assert_eq!(r["mapping"], "address-and-port-dependent", "{r}");
    assert_eq!(r["filtering"], "address-and-port-dependent", "{r}");
    assert!(r["advice"].as_str().unwrap().contains("relay"), "{r}");
}

#[test]
fn without_nat_the_public_address_is_the_local_one() {
    // sipline runs on the public host itself, next to the server.
    let nat = Nat::build(NatOptions {
        second_public_address: true,
        ..NatOptions::default()
    });
    let server = rfc5780_server(&nat);
    let (out, report) = nat_check(&nat.public, &["--stun", &server.addr().to_string()]);
    assert!(out.status.success(), "{}", show(&out));
    let r = report.unwrap_or_else(|| panic!("a nat_check event: {}", show(&out)));
    assert_eq!(r["local"], r["public"], "{r}");
    assert_eq!(addr(&r["local"]).ip(), IpAddr::V4(Nat::PUBLIC), "{r}");
    assert_eq!(r["behind_nat"], false, "{r}");
    assert_eq!(r["mapping"], "none", "{r}");
    // Nothing filters on the path.
    assert_eq!(r["filtering"], "endpoint-independent", "{r}");
    assert!(r["advice"].as_str().unwrap().starts_with("No NAT"), "{r}");
}

#[test]
fn a_server_with_one_address_gives_the_public_address_and_says_why_it_cannot_tell_more() {
    let nat = Nat::build(NatOptions::default());
    let server = Coturn::start(&nat.public, &[IpAddr::V4(Nat::PUBLIC)]);
    let (out, report) = nat_check(&nat.private, &["--stun", &server.addr().to_string()]);
    assert!(out.status.success(), "{}", show(&out));
    let r = report.unwrap_or_else(|| panic!("a nat_check event: {}", show(&out)));
    assert_eq!(
        addr(&r["public"]).ip(),
        IpAddr::V4(Nat::ROUTER_PUBLIC),
        "{r}"
    );
    assert_eq!(r["behind_nat"], true, "{r}");
    assert_eq!(r["mapping"], "unknown", "{r}");
    assert_eq!(r["filtering"], "unknown", "{r}");
    assert!(
        r["notes"][0].as_str().unwrap().contains("OTHER-ADDRESS"),
        "{r}"
    );
}

#[test]
fn the_human_report_names_addresses_behaviour_and_advice() {
    let nat = Nat::build(NatOptions {
        second_public_address: true,
        ..NatOptions::default()
    });
    let server = rfc5780_server(&nat);
    let out = nat
        .private
        .command(env!("CARGO_BIN_EXE_sipline"))
        .args(["nat-check", "--stun", "198.51.100.70"])
        .env("XDG_CONFIG_HOME", "/nonexistent/sipline-test-config")
        .output()
        .expect("sipline runs");
    drop(server);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", show(&out));
    for want in [
        "Local address:   198.51.100.10:",
        "Public address:  198.51.100.65:",
        "Behind a NAT:    yes",
        "Mapping:         endpoint-independent",
        "Filtering:       address-and-port-dependent",
        "Advice:",
    ] {
        assert!(text.contains(want), "{want:?} in:\n{text}");
    }
}

#[test]
fn an_unreachable_or_unresolvable_server_is_a_network_error() {
    let nat = Nat::build(NatOptions::default());
    // Nothing listens at this public address.
    let (out, report) = nat_check(&nat.private, &["--stun", "198.51.100.80"]);
    assert_eq!(out.status.code(), Some(6), "{}", show(&out));
    assert!(report.is_none());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no answer from the STUN server 198.51.100.80:3478"),
        "{stderr}"
    );
    // Inside the namespaces names resolve only from /etc/hosts and a
    // resolv.conf naming the namespace's own loopback (netns.rs).
    let (out, _) = nat_check(&nat.private, &["--stun", "stun.example.invalid:3478"]);
    assert_eq!(out.status.code(), Some(6), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot resolve the STUN server stun.example.invalid"),
        "{stderr}"
    );
    // A bad argument is a usage error.
    let (out, _) = nat_check(&nat.private, &["--stun", "host:0"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let (out, _) = nat_check(&nat.private, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--stun"));
}
