//! The phone with accounts from a config file against Kamailio on
//! 127.0.0.1: every account registers, a contact is dialled by name
//! through the proxy, `reg` shows the state, and quitting removes the
//! bindings.

#[path = "support/kamailio.rs"]
mod kamailio;
#[path = "support/proc.rs"]
mod proc;

use std::time::Duration;

use kamailio::{Kamailio, KamailioOptions};
use proc::Sipline;
use serde_json::Value;

const SECS: Duration = Duration::from_secs(40);
const DOMAIN: &str = "example.test";

fn of<'a>(events: &'a [Value], name: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == name).collect()
}

#[test]
fn phone_registers_every_account_dials_a_contact_by_name_and_unregisters_on_quit() {
    let dir = tempfile::tempdir().unwrap();
    let k = Kamailio::start(
        &[("alice", "pw-alice"), ("bob", "pw-bob")],
        KamailioOptions {
            domain: DOMAIN.into(),
            ..KamailioOptions::default()
        },
    );
    std::fs::write(dir.path().join("alice.pass"), "pw-alice\n").unwrap();
    std::fs::write(dir.path().join("bob.pass"), "pw-bob\n").unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[defaults]\naccount = \"alice\"\n\n\
             [contacts]\nbobby = \"sip:bob@{DOMAIN}\"\n\n\
             [[account]]\nname = \"alice\"\naor = \"sip:alice@{DOMAIN}\"\n\
             registrar = \"{reg}\"\npassword_file = \"alice.pass\"\n\n\
             [[account]]\nname = \"bob\"\naor = \"sip:bob@{DOMAIN}\"\n\
             registrar = \"{reg}\"\npassword_file = \"bob.pass\"\n",
            reg = k.uri()
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let script = [
        "wait-for registered",
        "wait-for registered",
        "reg",
        // alice (the first account) calls the contact "bobby": bob's AOR,
        // which rings this phone's second account through the proxy.
        "call bobby",
        "wait-for incoming",
        "answer",
        "wait-for answered",
        "wait-for answered",
        "calls",
        "hangup 1",
        "wait-for ended",
        "wait-for ended",
        "reg off",
        "wait-for unregistered",
        "wait-for unregistered",
        "reg refresh",
        "wait-for registered",
        "wait-for registered",
    ];
    let mut args = vec![
        "--bind",
        "127.0.0.1",
        "--local-port",
        "0",
        "--null-audio",
        "--config",
        config.to_str().unwrap(),
    ];
    for c in &script {
        args.push("-e");
        args.push(c);
    }
    let env = [(
        "XDG_DATA_HOME".to_string(),
        data.to_string_lossy().into_owned(),
    )];
    let mut phone = Sipline::spawn("phone", &args, &env);
    let (code, events) = phone.wait_exit(SECS);
    assert_eq!(code, 0, "{events:?}\n{}\n{}", phone.stderr(), k.log());
    let listening = of(&events, "listening");
    assert_eq!(listening.len(), 2, "one SIP socket per account");
    assert_eq!(listening[0]["account"], "alice");
    assert_eq!(listening[1]["account"], "bob");
    let reg = &of(&events, "reg")[0]["accounts"];
    assert_eq!(reg[0]["account"], "alice");
    assert!(reg[0]["state"].as_str().unwrap().starts_with("registered"));
    assert!(reg[1]["state"].as_str().unwrap().starts_with("registered"));
    assert_eq!(
        of(&events, "calling")[0]["uri"],
        format!("sip:bob@{DOMAIN}")
    );
    let incoming = of(&events, "incoming")[0];
    assert_eq!(incoming["line"], 1, "bob's account got the call");
    assert!(
        incoming["uri"]
            .as_str()
            .unwrap()
            .starts_with(&format!("sip:alice@{DOMAIN}"))
    );
    let calls = &of(&events, "calls")[0]["calls"];
    assert_eq!(calls.as_array().unwrap().len(), 2);
    assert_eq!(of(&events, "ended").len(), 2);
    // reg off, then quit, removed both bindings; reg refresh in between
    // registered them again.
    assert_eq!(of(&events, "unregistered").len(), 4, "{events:?}");
    assert_eq!(of(&events, "registered").len(), 4, "{events:?}");
    assert!(k.bindings("alice").is_empty() && k.bindings("bob").is_empty());
}
