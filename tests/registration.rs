//! Registration, Digest authentication and calls through a real registrar
//! and proxy: Kamailio on 127.0.0.1 (see `tests/support/kamailio.rs`).

#[path = "support/kamailio.rs"]
mod kamailio;
#[path = "support/proc.rs"]
mod proc;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kamailio::{DigestAlgorithm, Kamailio, KamailioOptions};
use proc::{Sipline, read_wav, tone_part, write_tone_wav};
use sipline::media::signal::{dominant_frequency, rms_dbfs, sine};

const SECS: Duration = Duration::from_secs(40);
const DOMAIN: &str = "example.test";

fn options() -> KamailioOptions {
    KamailioOptions {
        domain: DOMAIN.into(),
        ..KamailioOptions::default()
    }
}

fn password_file(dir: &Path, name: &str, password: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("{password}\n")).unwrap();
    p
}

/// The account flags for `user` at the registrar `k`.
fn account_args(k: &Kamailio, user: &str, pw: &Path) -> Vec<String> {
    vec![
        "--aor".into(),
        format!("sip:{user}@{DOMAIN}"),
        "--registrar".into(),
        k.uri(),
        "--password-file".into(),
        pw.to_str().unwrap().into(),
    ]
}

/// Logs every SIP message (masked) on stderr.
fn trace() -> Vec<(String, String)> {
    vec![("RUST_LOG".into(), "sipline=trace".into())]
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn register_once_is_challenged_then_lists_the_binding_and_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    let k = Kamailio::start(&[("alice", "wonder-land")], options());
    let pw = password_file(dir.path(), "pw", "wonder-land");
    let mut args = vec![
        "register".to_string(),
        "--once".into(),
        "--bind".into(),
        "127.0.0.1".into(),
    ];
    args.extend(account_args(&k, "alice", &pw));
    let mut reg = Sipline::spawn("register", &strs(&args), &trace());
    let (code, events) = reg.wait_exit(SECS);
    let stderr = reg.stderr();
    assert_eq!(code, 0, "{events:?}\n{stderr}");
    let registered = events
        .iter()
        .find(|e| e["event"] == "registered")
        .expect("registered event");
    assert!(registered["expires"].as_u64().unwrap() > 0);
    let bindings = registered["bindings"].as_array().unwrap();
    assert_eq!(bindings.len(), 1, "{registered}");
    assert_eq!(bindings[0]["ours"], true);
    assert!(events.iter().any(|e| e["event"] == "unregistered"));
    // The REGISTER was challenged once (401) and answered.
    assert!(stderr.contains("SIP/2.0 401"), "a 401 challenge was seen");
    // Nothing remains at the registrar.
    assert!(
        k.bindings("alice").is_empty(),
        "binding removed: {:?}",
        k.bindings("alice")
    );
    // The password and the Digest response never reach the logs.
    assert!(!stderr.contains("wonder-land"));
    assert!(
        stderr.contains("response=\"***\""),
        "Authorization is traced masked"
    );
    let hex_response = regex_lite_find(&stderr);
    assert!(
        hex_response.is_none(),
        "a response hash leaked: {hex_response:?}"
    );
}

/// Finds `response="<hex>"` with at least 16 hex digits.
fn regex_lite_find(text: &str) -> Option<String> {
    let mut rest = text;
    while let Some(i) = rest.find("response=\"") {
        let after = &rest[i + 10..];
        let hex: String = after
            .chars()
            .take_while(|c| c.is_ascii_hexdigit())
            .collect();
        if hex.len() >= 16 {
            return Some(hex);
        }
        rest = after;
    }
    None
}

#[test]
fn wrong_password_fails_with_the_auth_exit_code_after_one_try() {
    let dir = tempfile::tempdir().unwrap();
    let k = Kamailio::start(&[("alice", "right")], options());
    let pw = password_file(dir.path(), "pw", "wrong");
    let mut args = vec![
        "register".to_string(),
        "--once".into(),
        "--bind".into(),
        "127.0.0.1".into(),
    ];
    args.extend(account_args(&k, "alice", &pw));
    let mut reg = Sipline::spawn("register", &strs(&args), &trace());
    let (code, events) = reg.wait_exit(SECS);
    assert_eq!(code, 9, "authentication failure; {events:?}");
    let failed = events
        .iter()
        .find(|e| e["event"] == "registration_failed")
        .unwrap();
    assert_eq!(failed["kind"], "auth");
    assert_eq!(failed["status"], 401);
    // Distinct REGISTERs (retransmissions share a CSeq).
    let mut cseqs: Vec<String> = reg
        .stderr()
        .split("sent to")
        .skip(1)
        .filter(|m| m.contains("REGISTER sip:"))
        .filter_map(|m| {
            m.lines()
                .find(|l| l.starts_with("CSeq:"))
                .map(str::to_string)
        })
        .collect();
    cseqs.dedup();
    assert_eq!(
        cseqs.len(),
        2,
        "one REGISTER without and one with credentials, no loop: {cseqs:?}"
    );
    assert!(k.bindings("alice").is_empty());
}

#[test]
fn sha256_challenge_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let k = Kamailio::start(
        &[("alice", "s3cret")],
        KamailioOptions {
            algorithm: DigestAlgorithm::Sha256,
            ..options()
        },
    );
    let pw = password_file(dir.path(), "pw", "s3cret");
    let mut args = vec![
        "register".to_string(),
        "--once".into(),
        "--bind".into(),
        "127.0.0.1".into(),
    ];
    args.extend(account_args(&k, "alice", &pw));
    let mut reg = Sipline::spawn("register", &strs(&args), &[]);
    let (code, events) = reg.wait_exit(SECS);
    assert_eq!(code, 0, "{events:?}\n{}", reg.stderr());
}

#[test]
fn short_granted_expiry_is_refreshed_before_it_lapses() {
    let dir = tempfile::tempdir().unwrap();
    let k = Kamailio::start(
        &[("alice", "pw-a")],
        KamailioOptions {
            max_expires: Some(6),
            min_expires: Some(1),
            ..options()
        },
    );
    let pw = password_file(dir.path(), "pw", "pw-a");
    let mut args = vec!["register".to_string(), "--bind".into(), "127.0.0.1".into()];
    args.extend(account_args(&k, "alice", &pw));
    let mut reg = Sipline::spawn("register", &strs(&args), &[]);
    let registered = reg.wait_event("registered", SECS);
    assert_eq!(registered["expires"], 6, "the registrar's cap is honoured");
    // Over 15 s (2.5 lifetimes) the binding is always there.
    let end = Instant::now() + Duration::from_secs(15);
    while Instant::now() < end {
        let b = k.bindings("alice");
        assert_eq!(b.len(), 1, "binding present at every check");
        std::thread::sleep(Duration::from_millis(700));
    }
    reg.signal("INT");
    let (code, events) = reg.wait_exit(SECS);
    assert_eq!(code, 0);
    let refreshes = events.iter().filter(|e| e["event"] == "refreshed").count();
    assert!(refreshes >= 3, "refreshed every ~4 s: {refreshes}");
    assert!(events.iter().any(|e| e["event"] == "unregistered"));
    assert!(k.bindings("alice").is_empty());
}

#[test]
fn unreachable_registrar_is_a_network_error() {
    let dir = tempfile::tempdir().unwrap();
    let pw = password_file(dir.path(), "pw", "x");
    // A port nothing listens on.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut reg = Sipline::spawn(
        "register",
        &[
            "register",
            "--once",
            "--bind",
            "127.0.0.1",
            "--aor",
            "sip:alice@example.test",
            "--registrar",
            &format!("sip:127.0.0.1:{port}"),
            "--password-file",
            pw.to_str().unwrap(),
        ],
        &[],
    );
    let (code, _) = reg.wait_exit(Duration::from_secs(60));
    assert_eq!(code, 6);
}

#[test]
fn call_through_the_proxy_with_a_challenged_invite_carries_audio_and_bye_ends_both() {
    let dir = tempfile::tempdir().unwrap();
    let k = Kamailio::start(&[("alice", "pw-alice"), ("bob", "pw-bob")], options());
    let pw_a = password_file(dir.path(), "a", "pw-alice");
    let pw_b = password_file(dir.path(), "b", "pw-bob");
    let out = dir.path().join("bob.wav");
    let tone = dir.path().join("tone.wav");
    write_tone_wav(&tone, 1000.0, 16_000, 1, 5.0, 0.5);
    let mut bob_args = vec![
        "answer".to_string(),
        "--bind".into(),
        "127.0.0.1".into(),
        "--local-port".into(),
        "0".into(),
        "--count".into(),
        "1".into(),
        "--null-audio".into(),
        "--record".into(),
        out.to_str().unwrap().into(),
    ];
    bob_args.extend(account_args(&k, "bob", &pw_b));
    let mut bob = Sipline::spawn("bob", &strs(&bob_args), &[]);
    bob.wait_event("registered", SECS);
    bob.wait_event("listening", SECS);
    let mut alice_args = vec![
        "call".to_string(),
        format!("sip:bob@{DOMAIN}"),
        "--bind".into(),
        "127.0.0.1".into(),
        "--null-audio".into(),
        "--play".into(),
        tone.to_str().unwrap().into(),
        "--duration".into(),
        "3".into(),
    ];
    alice_args.extend(account_args(&k, "alice", &pw_a));
    let mut alice = Sipline::spawn("alice", &strs(&alice_args), &trace());
    let (code, events) = alice.wait_exit(SECS);
    let stderr = alice.stderr();
    assert_eq!(code, 0, "{events:?}\n{stderr}\n{}", k.log());
    assert!(
        stderr.contains("SIP/2.0 407"),
        "the INVITE was challenged by the proxy"
    );
    assert!(stderr.contains("Proxy-Authorization"), "and answered");
    let ended = events.iter().find(|e| e["event"] == "ended").unwrap();
    assert_eq!(ended["reason"]["kind"], "local_hangup");
    let (code, events) = bob.wait_exit(SECS);
    assert_eq!(code, 0, "{events:?}\n{}", bob.stderr());
    let ended = events.iter().find(|e| e["event"] == "ended").unwrap();
    assert_eq!(
        ended["reason"]["kind"], "remote_hangup",
        "BYE came through the proxy"
    );
    // Audio arrived.
    let (samples, rate) = read_wav(&out);
    let part = tone_part(&samples, rate);
    assert!(part.len() > rate as usize);
    let f = dominant_frequency(part, rate);
    assert!((f - 1000.0).abs() < 20.0, "dominant {f} Hz");
    let want = rms_dbfs(&sine(1000.0, 0.5, 8000, 8000));
    assert!((rms_dbfs(part) - want).abs() < 3.0);
    // Both removed their bindings on exit.
    assert!(k.bindings("alice").is_empty() && k.bindings("bob").is_empty());
}

#[test]
fn interval_too_brief_is_retried_with_min_expires() {
    let dir = tempfile::tempdir().unwrap();
    let k = Kamailio::start(
        &[("alice", "pw-a")],
        KamailioOptions {
            min_expires: Some(120),
            ..options()
        },
    );
    let pw = password_file(dir.path(), "pw", "pw-a");
    let mut args = vec![
        "register".to_string(),
        "--once".into(),
        "--bind".into(),
        "127.0.0.1".into(),
        "--expires".into(),
        "30".into(),
    ];
    args.extend(account_args(&k, "alice", &pw));
    let mut reg = Sipline::spawn("register", &strs(&args), &trace());
    let (code, events) = reg.wait_exit(SECS);
    assert_eq!(code, 0, "{events:?}\n{}", reg.stderr());
    assert!(
        reg.stderr().contains("SIP/2.0 423"),
        "the registrar said 423 first"
    );
    let registered = events.iter().find(|e| e["event"] == "registered").unwrap();
    assert_eq!(registered["expires"], 120);
}

#[test]
fn callee_hangs_up_through_the_proxy_and_both_end() {
    let dir = tempfile::tempdir().unwrap();
    let k = Kamailio::start(&[("alice", "pw-alice"), ("bob", "pw-bob")], options());
    let pw_a = password_file(dir.path(), "a", "pw-alice");
    let pw_b = password_file(dir.path(), "b", "pw-bob");
    let mut bob_args = vec![
        "answer".to_string(),
        "--bind".into(),
        "127.0.0.1".into(),
        "--local-port".into(),
        "0".into(),
        "--count".into(),
        "1".into(),
        "--null-audio".into(),
        "--duration".into(),
        "2".into(),
    ];
    bob_args.extend(account_args(&k, "bob", &pw_b));
    let mut bob = Sipline::spawn("bob", &strs(&bob_args), &trace());
    bob.wait_event("listening", SECS);
    let mut alice_args = vec![
        "call".to_string(),
        format!("sip:bob@{DOMAIN}"),
        "--bind".into(),
        "127.0.0.1".into(),
        "--null-audio".into(),
    ];
    alice_args.extend(account_args(&k, "alice", &pw_a));
    let mut alice = Sipline::spawn("alice", &strs(&alice_args), &[]);
    let (code, events) = alice.wait_exit(SECS);
    assert_eq!(code, 0, "{events:?}\n{}", alice.stderr());
    let ended = events.iter().find(|e| e["event"] == "ended").unwrap();
    assert_eq!(ended["reason"]["kind"], "remote_hangup");
    let (code, events) = bob.wait_exit(SECS);
    assert_eq!(code, 0, "{events:?}");
    let ended = events.iter().find(|e| e["event"] == "ended").unwrap();
    assert_eq!(ended["reason"]["kind"], "local_hangup");
    // Bob's BYE followed the route set: it went to the proxy with a Route header.
    let bye = bob
        .stderr()
        .split("sent to")
        .skip(1)
        .find(|m| m.contains("BYE sip:"))
        .map(str::to_string)
        .expect("bob sent a BYE");
    assert!(
        bye.starts_with(&format!(" {}:", k.addr())),
        "BYE sent to the proxy: {bye}"
    );
    assert!(bye.contains("Route:"), "with the Record-Route set: {bye}");
}

/// A registrar on 127.0.0.1 that answers the `n`th REGISTER (from 0) with
/// `answer(n)`: a status line plus extra headers, e.g. `"503 Busy\r\nRetry-After: 1"`;
/// a 200 echoes the Contact with `expires=60`. Returns its port.
fn fake_registrar(answer: fn(usize) -> &'static str) -> u16 {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    sock.set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        let mut n = 0;
        while let Ok((len, from)) = sock.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..len]).to_string();
            if !text.starts_with("REGISTER ") {
                continue;
            }
            let header = |name: &str| -> Vec<String> {
                text.lines()
                    .filter(|l| {
                        l.split_once(':')
                            .is_some_and(|(h, _)| h.trim().eq_ignore_ascii_case(name))
                    })
                    .map(|l| l.to_string())
                    .collect()
            };
            let first = answer(n);
            n += 1;
            let removal = header("Expires").iter().any(|l| l.ends_with(" 0"));
            let mut resp = format!("SIP/2.0 {first}\r\n");
            for name in ["Via", "From", "Call-ID", "CSeq"] {
                for l in header(name) {
                    resp.push_str(&format!("{l}\r\n"));
                }
            }
            for l in header("To") {
                resp.push_str(&format!("{l};tag=reg1\r\n"));
            }
            if first.starts_with("200") && !removal {
                for l in header("Contact") {
                    resp.push_str(&format!("{l};expires=60\r\n"));
                }
            }
            resp.push_str("Content-Length: 0\r\n\r\n");
            let _ = sock.send_to(resp.as_bytes(), from);
        }
    });
    port
}

fn register_at(port: u16, pw: &Path) -> Sipline {
    Sipline::spawn(
        "register",
        &[
            "register",
            "--bind",
            "127.0.0.1",
            "--aor",
            "sip:alice@example.test",
            "--registrar",
            &format!("sip:127.0.0.1:{port}"),
            "--password-file",
            pw.to_str().unwrap(),
        ],
        &[],
    )
}

#[test]
fn a_503_with_retry_after_is_retried_then_the_registration_holds() {
    let dir = tempfile::tempdir().unwrap();
    let pw = password_file(dir.path(), "pw", "x");
    let port = fake_registrar(|n| {
        if n == 0 {
            "503 Service Unavailable\r\nRetry-After: 1"
        } else {
            "200 OK"
        }
    });
    let mut reg = register_at(port, &pw);
    let failed = reg.wait_event("registration_failed", SECS);
    assert_eq!(failed["status"], 503);
    assert_eq!(failed["retry_after"], 1);
    let retry = reg.wait_event("registration_retry", SECS);
    assert_eq!(retry["retry_in_s"], 1.0);
    reg.wait_event("registered", SECS);
    reg.signal("INT");
    let (code, events) = reg.wait_exit(SECS);
    assert_eq!(code, 0, "{events:?}\n{}", reg.stderr());
    assert!(events.iter().any(|e| e["event"] == "unregistered"));
}

#[test]
fn a_definitive_4xx_ends_the_long_running_register_without_retrying() {
    let dir = tempfile::tempdir().unwrap();
    let pw = password_file(dir.path(), "pw", "x");
    let port = fake_registrar(|_| "403 Forbidden");
    let mut reg = register_at(port, &pw);
    let (code, events) = reg.wait_exit(SECS);
    assert_eq!(code, 4, "{events:?}\n{}", reg.stderr());
    assert!(!events.iter().any(|e| e["event"] == "registration_retry"));
}

#[test]
fn long_running_register_keeps_retrying_after_the_registrar_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let pw = password_file(dir.path(), "pw", "x");
    // A port nothing listens on: Timer F (32 s) runs out.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut reg = register_at(port, &pw);
    let failed = reg.wait_event("registration_failed", Duration::from_secs(60));
    assert_eq!(failed["kind"], "timeout");
    let retry = reg.wait_event("registration_retry", SECS);
    assert_eq!(retry["retry_in_s"], 30.0);
    // Still running, waiting to try again.
    std::thread::sleep(Duration::from_secs(1));
    reg.signal("INT");
    let (code, events) = reg.wait_exit(SECS);
    assert_eq!(code, 130, "interrupted while not registered: {events:?}");
}
