//! Checks the Kamailio test harness (`tests/support/kamailio.rs`) without
//! sipline: plain UDP requests built here with a small RFC 2617 / RFC 8760
//! Digest computation, and SIPp for a proxied, authenticated call.

#[path = "support/kamailio.rs"]
mod kamailio;

use std::net::UdpSocket;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kamailio::{DigestAlgorithm, Kamailio, KamailioOptions};

const USERS: &[(&str, &str)] = &[("alice", "alice-pw"), ("bob", "b0b \"quoted\" pw")];

/// A UDP client talking to Kamailio, one transaction at a time.
struct Client {
    sock: UdpSocket,
    server: String,
    port: u16,
    call_id: String,
}

/// A Digest challenge (RFC 2617 §3.2.1).
#[derive(Debug)]
struct Challenge {
    realm: String,
    nonce: String,
    qop: Option<String>,
    algorithm: Option<String>,
    opaque: Option<String>,
}

impl Client {
    fn new(k: &Kamailio) -> Client {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("a client socket binds");
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("a read timeout can be set");
        let port = sock.local_addr().expect("bound").port();
        Client {
            sock,
            server: k.addr(),
            port,
            call_id: format!("harness-{port}@127.0.0.1"),
        }
    }

    /// Sends `msg`, retransmitting every 500 ms (RFC 3261 §17.1.2.2, no
    /// doubling needed here), until a final response; returns it.
    fn transaction(&self, msg: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut next_send = Instant::now();
        let mut buf = [0u8; 8192];
        while Instant::now() < deadline {
            if Instant::now() >= next_send {
                self.sock
                    .send_to(msg.as_bytes(), &self.server)
                    .expect("sending to 127.0.0.1 works");
                next_send = Instant::now() + Duration::from_millis(500);
            }
            if let Ok((n, _)) = self.sock.recv_from(&mut buf) {
                let resp = String::from_utf8_lossy(&buf[..n]).into_owned();
                if status(&resp) >= 200 {
                    return resp;
                }
            }
        }
        panic!("no final response to:\n{msg}");
    }

    /// A REGISTER for `user` binding `contact`, with an optional
    /// Authorization answering `auth` = (challenge, auth user, password).
    fn register(
        &self,
        k: &Kamailio,
        user: &str,
        cseq: u32,
        contact: &str,
        expires: Option<u32>,
        auth: Option<(&Challenge, &str, &str)>,
    ) -> String {
        let uri = format!("sip:{}", k.domain());
        let mut msg = format!(
            "REGISTER {uri} SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:{port};rport;branch=z9hG4bK-reg-{port}-{cseq}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:{user}@{dom}>;tag=reg{port}\r\n\
             To: <sip:{user}@{dom}>\r\n\
             Call-ID: {cid}\r\n\
             CSeq: {cseq} REGISTER\r\n\
             Contact: <{contact}>\r\n",
            port = self.port,
            dom = k.domain(),
            cid = self.call_id,
        );
        if let Some(e) = expires {
            msg.push_str(&format!("Expires: {e}\r\n"));
        }
        if let Some((ch, auth_user, pw)) = auth {
            msg.push_str(&format!(
                "Authorization: {}\r\n",
                authorization(ch, auth_user, pw, "REGISTER", &uri)
            ));
        }
        msg.push_str("Content-Length: 0\r\n\r\n");
        self.transaction(&msg)
    }

    /// Challenge, answer: the full two-step REGISTER; returns the final
    /// response to the second request.
    fn register_with_password(
        &self,
        k: &Kamailio,
        user: &str,
        pw: &str,
        contact: &str,
        expires: Option<u32>,
    ) -> String {
        let first = self.register(k, user, 1, contact, expires, None);
        assert_eq!(status(&first), 401, "{first}");
        let ch =
            parse_challenge(header(&first, "WWW-Authenticate").expect("401 has WWW-Authenticate"));
        self.register(k, user, 2, contact, expires, Some((&ch, user, pw)))
    }
}

fn status(resp: &str) -> u16 {
    resp.strip_prefix("SIP/2.0 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// The first header named `name` (case-insensitive, no compact forms).
fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Parses `Digest k=v, k="v", ...` (RFC 2617 §3.2.1).
fn parse_challenge(value: &str) -> Challenge {
    let rest = value.strip_prefix("Digest ").expect("a Digest challenge");
    let mut params = Vec::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let (k, after) = s.split_once('=').expect("param has '='");
        let after = after.trim_start();
        let (v, tail) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"').expect("closing quote");
            (q[..end].to_string(), &q[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        params.push((k.trim().to_ascii_lowercase(), v));
        s = tail.trim_start().trim_start_matches(',').trim_start();
    }
    let get = |n: &str| params.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    Challenge {
        realm: get("realm").expect("realm"),
        nonce: get("nonce").expect("nonce"),
        qop: get("qop"),
        algorithm: get("algorithm"),
        opaque: get("opaque"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hash(alg: &str, data: &str) -> String {
    use md5::Digest as _;
    match alg {
        "SHA-256" => hex(&sha2::Sha256::digest(data.as_bytes())),
        _ => hex(&md5::Md5::digest(data.as_bytes())),
    }
}

/// RFC 2617 §3.2.2 (RFC 8760 for SHA-256): the Authorization value, with
/// qop=auth when offered.
fn authorization(ch: &Challenge, user: &str, pw: &str, method: &str, uri: &str) -> String {
    let alg = ch.algorithm.clone().unwrap_or_else(|| "MD5".to_string());
    let ha1 = hash(&alg, &format!("{user}:{}:{pw}", ch.realm));
    let ha2 = hash(&alg, &format!("{method}:{uri}"));
    let cnonce = "0a4f113b";
    let nc = "00000001";
    let mut v = format!(
        "Digest username=\"{user}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", algorithm={alg}",
        ch.realm, ch.nonce
    );
    let response = if ch
        .qop
        .as_deref()
        .is_some_and(|q| q.split(',').any(|t| t.trim() == "auth"))
    {
        v.push_str(&format!(", qop=auth, nc={nc}, cnonce=\"{cnonce}\""));
        hash(
            &alg,
            &format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", ch.nonce),
        )
    } else {
        hash(&alg, &format!("{ha1}:{}:{ha2}", ch.nonce))
    };
    v.push_str(&format!(", response=\"{response}\""));
    if let Some(o) = &ch.opaque {
        v.push_str(&format!(", opaque=\"{o}\""));
    }
    v
}

fn pw(user: &str) -> &'static str {
    USERS
        .iter()
        .find(|(u, _)| *u == user)
        .expect("known user")
        .1
}

#[test]
fn register_without_credentials_gets_401_with_a_digest_qop_auth_challenge() {
    let k = Kamailio::start(USERS, KamailioOptions::default());
    let c = Client::new(&k);
    let resp = c.register(
        &k,
        "alice",
        1,
        &format!("sip:alice@127.0.0.1:{}", c.port),
        None,
        None,
    );
    assert_eq!(status(&resp), 401, "{resp}");
    let ch = parse_challenge(header(&resp, "WWW-Authenticate").expect("401 has WWW-Authenticate"));
    assert_eq!(ch.realm, k.realm());
    assert!(!ch.nonce.is_empty());
    assert_eq!(ch.qop.as_deref(), Some("auth"));
    assert_eq!(ch.algorithm.as_deref(), Some("MD5"));
    assert!(k.bindings("alice").is_empty());
}

#[test]
fn register_with_the_right_digest_gets_200_and_the_binding_is_listed() {
    let k = Kamailio::start(USERS, KamailioOptions::default());
    let c = Client::new(&k);
    let contact = format!("sip:alice@127.0.0.1:{}", c.port);
    let resp = c.register_with_password(&k, "alice", pw("alice"), &contact, Some(600));
    assert_eq!(status(&resp), 200, "{resp}");
    let echoed = header(&resp, "Contact").expect("200 lists the bindings");
    assert!(
        echoed.contains(&contact) && echoed.contains("expires="),
        "{echoed}"
    );
    let b = k.bindings("alice");
    assert_eq!(b.len(), 1, "{b:?}");
    assert_eq!(b[0].0, contact);
    assert!((590..=600).contains(&b[0].1), "{b:?}");
}

#[test]
fn password_with_quotes_and_the_domain_name_work_as_realm() {
    let opts = KamailioOptions {
        domain: "example.test".to_string(),
        ..Default::default()
    };
    let k = Kamailio::start(USERS, opts);
    let c = Client::new(&k);
    let contact = format!("sip:bob@127.0.0.1:{}", c.port);
    let resp = c.register_with_password(&k, "bob", pw("bob"), &contact, None);
    assert_eq!(status(&resp), 200, "{resp}");
    let b = k.bindings("bob");
    assert_eq!(b.len(), 1, "{b:?}");
    assert!(
        (3590..=3600).contains(&b[0].1),
        "default expires applies: {b:?}"
    );
}

#[test]
fn wrong_password_is_challenged_again() {
    let k = Kamailio::start(USERS, KamailioOptions::default());
    let c = Client::new(&k);
    let contact = format!("sip:alice@127.0.0.1:{}", c.port);
    let resp = c.register_with_password(&k, "alice", "not-the-password", &contact, None);
    assert_eq!(status(&resp), 401, "{resp}");
    assert!(header(&resp, "WWW-Authenticate").is_some());
    assert!(k.bindings("alice").is_empty());
}

#[test]
fn unknown_user_is_challenged_again() {
    let k = Kamailio::start(USERS, KamailioOptions::default());
    let c = Client::new(&k);
    let contact = format!("sip:mallory@127.0.0.1:{}", c.port);
    let resp = c.register_with_password(&k, "mallory", "guess", &contact, None);
    assert_eq!(status(&resp), 401, "{resp}");
}

#[test]
fn auth_user_other_than_the_to_user_is_forbidden() {
    let k = Kamailio::start(USERS, KamailioOptions::default());
    let c = Client::new(&k);
    let contact = format!("sip:bob@127.0.0.1:{}", c.port);
    let first = c.register(&k, "bob", 1, &contact, None, None);
    let ch = parse_challenge(header(&first, "WWW-Authenticate").expect("challenge"));
    let resp = c.register(
        &k,
        "bob",
        2,
        &contact,
        None,
        Some((&ch, "alice", pw("alice"))),
    );
    assert_eq!(status(&resp), 403, "{resp}");
    assert!(k.bindings("bob").is_empty());
}

#[test]
fn expires_bounds_give_423_below_the_minimum_and_cap_at_the_maximum() {
    let opts = KamailioOptions {
        min_expires: Some(60),
        max_expires: Some(300),
        ..Default::default()
    };
    let k = Kamailio::start(USERS, opts);
    let c = Client::new(&k);
    let contact = format!("sip:alice@127.0.0.1:{}", c.port);
    let brief = c.register_with_password(&k, "alice", pw("alice"), &contact, Some(10));
    assert_eq!(status(&brief), 423, "{brief}");
    assert_eq!(header(&brief, "Min-Expires"), Some("60"), "{brief}");

    let c = Client::new(&k);
    let long = c.register_with_password(&k, "alice", pw("alice"), &contact, Some(7200));
    assert_eq!(status(&long), 200, "{long}");
    let b = k.bindings("alice");
    assert!(b.len() == 1 && (290..=300).contains(&b[0].1), "{b:?}");
}

#[test]
fn register_with_expires_zero_removes_the_binding() {
    let k = Kamailio::start(USERS, KamailioOptions::default());
    let c = Client::new(&k);
    let contact = format!("sip:alice@127.0.0.1:{}", c.port);
    let resp = c.register_with_password(&k, "alice", pw("alice"), &contact, None);
    assert_eq!(status(&resp), 200, "{resp}");
    assert_eq!(k.bindings("alice").len(), 1);
    let c = Client::new(&k);
    let resp = c.register_with_password(&k, "alice", pw("alice"), &contact, Some(0));
    assert_eq!(status(&resp), 200, "{resp}");
    let b = k.wait_bindings("alice", Duration::from_secs(3), |b| b.is_empty());
    assert!(b.is_empty(), "{b:?}");
}

#[test]
fn sha256_digest_is_offered_and_accepted() {
    let opts = KamailioOptions {
        algorithm: DigestAlgorithm::Sha256,
        ..Default::default()
    };
    let k = Kamailio::start(USERS, opts);
    let c = Client::new(&k);
    let contact = format!("sip:alice@127.0.0.1:{}", c.port);
    let first = c.register(&k, "alice", 1, &contact, None, None);
    let ch = parse_challenge(header(&first, "WWW-Authenticate").expect("challenge"));
    assert_eq!(ch.algorithm.as_deref(), Some("SHA-256"));
    let resp = c.register(
        &k,
        "alice",
        2,
        &contact,
        None,
        Some((&ch, "alice", pw("alice"))),
    );
    assert_eq!(status(&resp), 200, "{resp}");
    assert_eq!(k.bindings("alice").len(), 1);
}

fn sipp_output(child: std::process::Child) -> (bool, String) {
    let out = child.wait_with_output().expect("sipp can be waited for");
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), s)
}

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free port")
        .port()
}

#[test]
fn invite_from_alice_is_proxy_authenticated_and_reaches_bob_at_a_sipp_uas() {
    let k = Kamailio::start(USERS, KamailioOptions::default());
    let uas_port = free_port();
    let uas = Command::new("sipp")
        .args(["-sn", "uas", "-i", "127.0.0.1", "-p", &uas_port.to_string()])
        .args(["-m", "1", "-nostdin", "-timeout", "10", "-timeout_error"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sipp runs (apt-get install sip-tester)");

    // bob's binding points at the SIPp UAS.
    let c = Client::new(&k);
    let bob_contact = format!("sip:bob@127.0.0.1:{uas_port}");
    let resp = c.register_with_password(&k, "bob", pw("bob"), &bob_contact, None);
    assert_eq!(status(&resp), 200, "{resp}");

    let scenario =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/kamailio/uac_auth_call.xml");
    let uac = Command::new("sipp")
        .arg(k.addr())
        .arg("-sf")
        .arg(&scenario)
        .args(["-i", "127.0.0.1", "-p", &free_port().to_string()])
        .args([
            "-s",
            "bob",
            "-au",
            "alice",
            "-ap",
            pw("alice"),
            "-key",
            "caller",
            "alice",
        ])
        .args(["-m", "1", "-nostdin", "-timeout", "10", "-timeout_error"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sipp runs");
    let (uac_ok, uac_out) = sipp_output(uac);
    let (uas_ok, uas_out) = sipp_output(uas);
    assert!(
        uac_ok,
        "SIPp UAC failed:\n{uac_out}\n---- kamailio ----\n{}",
        k.log()
    );
    assert!(
        uas_ok,
        "SIPp UAS failed:\n{uas_out}\n---- kamailio ----\n{}",
        k.log()
    );
    let log = k.log();
    assert!(
        log.contains("challenging INVITE"),
        "the first INVITE was challenged:\n{log}"
    );
}

#[test]
fn invite_to_a_user_without_binding_gets_404() {
    let k = Kamailio::start(
        USERS,
        KamailioOptions {
            auth_invite: false,
            ..Default::default()
        },
    );
    let c = Client::new(&k);
    let msg = format!(
        "INVITE sip:bob@127.0.0.1:{kp} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bK-inv-{p}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@127.0.0.1>;tag=a{p}\r\n\
         To: <sip:bob@127.0.0.1>\r\n\
         Call-ID: inv-{p}@127.0.0.1\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:alice@127.0.0.1:{p}>\r\n\
         Content-Length: 0\r\n\r\n",
        kp = k.port(),
        p = c.port
    );
    let resp = c.transaction(&msg);
    assert_eq!(status(&resp), 404, "{resp}");
}
