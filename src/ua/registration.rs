//! Registration of one address of record with a registrar (RFC 3261 §10),
//! sans-IO.
//!
//! [`Registration`] builds REGISTER requests (same Call-ID, increasing
//! CSeq, §10.2.4) and interprets their responses: the granted expiry of
//! *our* binding (§10.2.4, bug 05), the refresh deadline, 423 Interval Too
//! Brief (§10.3) and removal (Expires: 0). The user agent core sends the
//! requests through its transaction layer and answers challenges.

use std::time::{Duration, Instant};

use super::accounts::RegFailure;
use crate::sip::{Method, NameAddr, Request, Response, SipUri, Uri};

/// What to register.
#[derive(Debug, Clone)]
pub struct RegistrationConfig {
    /// Address of record, e.g. `sip:alice@example.com` (To and From).
    pub aor: String,
    /// Request-URI of the REGISTER: the registrar's domain (§10.2).
    pub registrar: String,
    /// Requested expiry in seconds.
    pub expires: u32,
    /// Route set to reach the registrar (an outbound proxy), as name-addrs.
    pub route: Vec<String>,
    /// RFC 5626 §4.1: our instance id (`urn:uuid:…`, the same across
    /// restarts). With it the REGISTER asks for outbound: `+sip.instance`
    /// and `reg-id=1` on the Contact, `Supported: outbound, path`.
    pub instance: Option<String>,
}

/// Where a registration stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegState {
    /// Nothing sent yet.
    Idle,
    /// A REGISTER (adding or refreshing) is outstanding.
    Registering,
    /// Bound until `expires_at`.
    Registered,
    /// A REGISTER with Expires: 0 is outstanding.
    Unregistering,
    /// Bindings removed (or never made).
    Unregistered,
    /// The registrar refused; no more attempts.
    Failed,
}

/// What a response to our REGISTER means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegOutcome {
    /// Our binding is in place for `expires` seconds; `bindings` lists every
    /// contact the registrar reported with its expiry.
    Registered {
        expires: u32,
        bindings: Vec<Binding>,
    },
    /// Bindings removed.
    Unregistered { bindings: Vec<Binding> },
    /// 401/407: the caller answers the challenge and calls [`Registration::resend`].
    Challenged,
    /// 423: retried at once with the registrar's Min-Expires (§10.2.8).
    RetryWithExpires { expires: u32 },
    /// Any other final failure.
    Failed { status: u16, reason: String },
    /// A provisional response: nothing to do.
    Provisional,
}

/// One contact the registrar reported (§10.2.4).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Binding {
    pub contact: String,
    pub expires: Option<u32>,
    /// Whether this is our own binding.
    pub ours: bool,
}

/// The state of one registration.
#[derive(Debug, Clone)]
pub struct Registration {
    cfg: RegistrationConfig,
    call_id: String,
    from_tag: String,
    cseq: u32,
    state: RegState,
    /// Our Contact URI (what we register).
    contact: Option<SipUri>,
    /// A Contact we registered before our public address changed: the next
    /// REGISTER removes it with `expires=0` (RFC 3261 §10.2.2).
    stale: Option<SipUri>,
    /// The registrar supports RFC 5626 outbound (see [`Registration::outbound`]).
    outbound: bool,
    /// The expiry the next REGISTER asks for.
    asking: u32,
    refresh_at: Option<Instant>,
    expires_at: Option<Instant>,
    /// The last REGISTER sent, for re-sending with credentials.
    last: Option<Request>,
}

impl Registration {
    pub fn new(cfg: RegistrationConfig, call_id: String, from_tag: String) -> Registration {
        let asking = cfg.expires;
        Registration {
            cfg,
            call_id,
            from_tag,
            cseq: 0,
            state: RegState::Idle,
            contact: None,
            stale: None,
            outbound: false,
            asking,
            refresh_at: None,
            expires_at: None,
            last: None,
        }
    }

    pub fn state(&self) -> RegState {
        self.state
    }

    pub fn config(&self) -> &RegistrationConfig {
        &self.cfg
    }

    /// When the binding must be refreshed.
    pub fn refresh_at(&self) -> Option<Instant> {
        match self.state {
            RegState::Registered => self.refresh_at,
            _ => None,
        }
    }

    /// Whether the registrar's last 2xx said it supports outbound (RFC
    /// 5626): the binding is then tied to our flow.
    pub fn outbound(&self) -> bool {
        self.outbound
    }

    /// The Contact we register (or last registered).
    pub fn contact(&self) -> Option<&SipUri> {
        self.contact.as_ref()
    }

    /// When the current binding lapses.
    pub fn expires_at(&self) -> Option<Instant> {
        self.expires_at
    }

    /// A REGISTER adding or refreshing our binding at `contact`; `via` is
    /// our Via value with a fresh branch.
    pub fn register(&mut self, contact: SipUri, via: &str) -> Request {
        if let Some(old) = self.contact.take()
            && old != contact
        {
            self.stale = Some(old);
        }
        self.state = RegState::Registering;
        self.contact = Some(contact);
        let expires = self.asking;
        self.build(via, expires)
    }

    /// A REGISTER removing our binding (Expires: 0, §10.2.2).
    pub fn unregister(&mut self, via: &str) -> Option<Request> {
        self.contact.as_ref()?;
        self.state = RegState::Unregistering;
        Some(self.build(via, 0))
    }

    /// The last REGISTER again with a new CSeq and Via, for answering a
    /// challenge; the caller adds the Authorization header.
    pub fn resend(&mut self, via: &str) -> Option<Request> {
        let last = self.last.as_ref()?;
        let expires = last
            .headers
            .get("Expires")
            .and_then(|e| e.trim().parse().ok())
            .unwrap_or(self.asking);
        Some(self.build(via, expires))
    }

    /// §10.2: To and From carry the AOR, the Request-URI names the
    /// registrar's domain, the Call-ID stays and the CSeq grows (§10.2.4).
    fn build(&mut self, via: &str, expires: u32) -> Request {
        self.cseq += 1;
        let mut req = Request::new(Method::Register, self.cfg.registrar.clone());
        req.headers.push("Via", via);
        req.headers.push("Max-Forwards", "70");
        for r in &self.cfg.route {
            req.headers.push("Route", r.clone());
        }
        req.headers
            .push("From", format!("<{}>;tag={}", self.cfg.aor, self.from_tag));
        req.headers.push("To", format!("<{}>", self.cfg.aor));
        req.headers.push("Call-ID", self.call_id.clone());
        req.headers.push("CSeq", format!("{} REGISTER", self.cseq));
        if let Some(c) = &self.contact {
            let value = match &self.cfg.instance {
                // RFC 5626 §4.2.1: one flow per registration, reg-id 1.
                Some(id) => format!("<{c}>;+sip.instance=\"<{id}>\";reg-id=1"),
                None => format!("<{c}>"),
            };
            req.headers.push("Contact", value);
        }
        if let Some(old) = &self.stale
            && expires > 0
        {
            req.headers.push("Contact", format!("<{old}>;expires=0"));
        }
        if self.cfg.instance.is_some() {
            req.headers.push("Supported", "outbound, path");
        }
        req.headers.push("Expires", expires.to_string());
        req.headers.push("Content-Length", "0");
        self.last = Some(req.clone());
        req
    }

    /// Interprets a response to our last REGISTER.
    pub fn handle_response(&mut self, resp: &Response, now: Instant) -> RegOutcome {
        match resp.status {
            100..=199 => RegOutcome::Provisional,
            200..=299 => self.on_success(resp, now),
            401 | 407 => RegOutcome::Challenged,
            423 => self.on_interval_too_brief(resp),
            status => {
                self.state = RegState::Failed;
                RegOutcome::Failed {
                    status,
                    reason: resp.reason.clone(),
                }
            }
        }
    }

    /// The transaction timed out or the network refused (§10.2.4 leaves the
    /// binding to lapse).
    pub fn handle_failure(&mut self) {
        self.state = RegState::Failed;
    }

    fn on_success(&mut self, resp: &Response, now: Instant) -> RegOutcome {
        self.stale = None;
        // RFC 5626 §4.2.1: a registrar doing outbound says so in the 2xx.
        self.outbound = self.cfg.instance.is_some()
            && ["Require", "Supported"].iter().any(|h| {
                resp.headers
                    .get_all(h)
                    .flat_map(|v| v.split(','))
                    .any(|t| t.trim().eq_ignore_ascii_case("outbound"))
            });
        let bindings = self.bindings(resp);
        if self.state == RegState::Unregistering {
            self.state = RegState::Unregistered;
            self.refresh_at = None;
            self.expires_at = None;
            return RegOutcome::Unregistered { bindings };
        }
        let expires = self.granted_expiry(resp, &bindings);
        if expires == 0 {
            // The registrar removed (or never made) our binding.
            self.state = RegState::Failed;
            return RegOutcome::Failed {
                status: resp.status,
                reason: "no binding granted".into(),
            };
        }
        self.state = RegState::Registered;
        self.expires_at = Some(now + Duration::from_secs(u64::from(expires)));
        self.refresh_at = Some(now + refresh_delay(expires));
        RegOutcome::Registered { expires, bindings }
    }

    /// §10.2.8: retry with the Min-Expires the registrar asks for.
    fn on_interval_too_brief(&mut self, resp: &Response) -> RegOutcome {
        let min = resp
            .headers
            .get("Min-Expires")
            .and_then(|v| v.trim().parse::<u32>().ok());
        match min {
            Some(m) if m > self.asking => {
                self.asking = m;
                RegOutcome::RetryWithExpires { expires: m }
            }
            _ => {
                self.state = RegState::Failed;
                RegOutcome::Failed {
                    status: 423,
                    reason: resp.reason.clone(),
                }
            }
        }
    }

    /// Every Contact in the response with its expiry, marking ours
    /// (URI comparison, §19.1.4, reduced to user, host and port).
    fn bindings(&self, resp: &Response) -> Vec<Binding> {
        let default = resp
            .headers
            .get("Expires")
            .and_then(|v| v.trim().parse::<u32>().ok());
        resp.headers
            .name_addrs("Contact")
            .unwrap_or_default()
            .into_iter()
            .map(|na| Binding {
                ours: self.is_ours(&na),
                expires: na
                    .params
                    .value("expires")
                    .and_then(|v| v.parse().ok())
                    .or(default),
                contact: na.uri.to_string(),
            })
            .collect()
    }

    fn is_ours(&self, na: &NameAddr) -> bool {
        let (Some(mine), Uri::Sip(theirs)) = (&self.contact, &na.uri) else {
            return false;
        };
        mine.user_unescaped() == theirs.user_unescaped()
            && mine.host == theirs.host
            && mine.port.unwrap_or(5060) == theirs.port.unwrap_or(5060)
    }

    /// §10.2.4: the `expires` parameter of our own Contact wins over the
    /// Expires header, which wins over what we asked for (bug 05: other
    /// devices' bindings are ignored).
    fn granted_expiry(&self, resp: &Response, bindings: &[Binding]) -> u32 {
        if let Some(e) = bindings.iter().find(|b| b.ours).and_then(|b| b.expires) {
            return e;
        }
        resp.headers
            .get("Expires")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(self.asking)
    }
}

/// Refresh at half the granted time for long expiries, 30 s early for
/// shorter ones, and never sooner than 5 s after the last success unless
/// the binding itself is shorter.
pub fn refresh_delay(expires: u32) -> Duration {
    let e = u64::from(expires);
    let secs = if e >= 120 {
        e / 2
    } else if e > 40 {
        e - 30
    } else {
        (e * 3 / 4).max(1)
    };
    Duration::from_secs(secs)
}

/// RFC 5626 §4.5 style back-off for a registration that must stay up
/// (`sipline register`): after a failure that may pass (no answer, a
/// network error, 408 or a 5xx), try again after 30 s, doubling with each
/// failure in a row up to 5 min; a Retry-After from the registrar (RFC 3261
/// §21.5.4, §20.33) sets the wait instead. Refused credentials and other
/// final 4xx–6xx answers are not retried. Sans-IO: the caller passes the
/// time and sleeps until the instant returned.
#[derive(Debug, Clone, Default)]
pub struct RetryBackoff {
    /// Failures since the last success.
    failures: u32,
}

impl RetryBackoff {
    /// The wait after the first failure.
    pub const BASE: Duration = Duration::from_secs(30);
    /// The longest wait.
    pub const MAX: Duration = Duration::from_secs(300);

    /// When to register again after a failure at `now`, or `None` when the
    /// failure is final.
    pub fn on_failure(
        &mut self,
        kind: RegFailure,
        status: Option<u16>,
        retry_after: Option<u32>,
        now: Instant,
    ) -> Option<Instant> {
        let passing = match kind {
            RegFailure::Timeout | RegFailure::Network => true,
            RegFailure::Rejected => status.is_some_and(|s| s == 408 || (500..600).contains(&s)),
            RegFailure::Auth => false,
        };
        if !passing {
            return None;
        }
        let doubled = Self::BASE.saturating_mul(1 << self.failures.min(16));
        self.failures = self.failures.saturating_add(1);
        let wait = match retry_after {
            Some(secs) => Duration::from_secs(u64::from(secs.max(1))),
            None => doubled.min(Self::MAX),
        };
        Some(now + wait)
    }

    /// The registration succeeded: the next failure waits [`Self::BASE`] again.
    pub fn on_success(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::{Host, SipMessage, parse_datagram};

    fn reg() -> Registration {
        Registration::new(
            RegistrationConfig {
                aor: "sip:alice@example.com".into(),
                registrar: "sip:example.com".into(),
                expires: 3600,
                route: vec![],
                instance: None,
            },
            "reg-callid-2@192.0.2.10".into(),
            "reg-tag".into(),
        )
    }

    fn contact() -> SipUri {
        SipUri::new(
            Some("alice"),
            Host::Ipv4("192.0.2.10".parse().unwrap()),
            Some(5060),
        )
    }

    fn response(text: &str) -> Response {
        match parse_datagram(text.replace('\n', "\r\n").as_bytes()).unwrap() {
            SipMessage::Response(r) => r,
            _ => panic!("a response"),
        }
    }

    const BUG05: &str = "SIP/2.0 200 OK
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-reg-2;received=192.0.2.10
From: <sip:alice@example.com>;tag=reg-tag
To: <sip:alice@example.com>;tag=srv-1
Call-ID: reg-callid-2@192.0.2.10
CSeq: 2 REGISTER
Contact: <sip:alice@203.0.113.9:5060>;expires=3000
Contact: <sip:alice@192.0.2.10:5060>
Expires: 60
Content-Length: 0

";

    #[test]
    fn our_binding_without_param_takes_the_expires_header_bug05() {
        let mut r = reg();
        let t0 = Instant::now();
        r.register(contact(), "SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK1");
        match r.handle_response(&response(BUG05), t0) {
            RegOutcome::Registered { expires, bindings } => {
                assert_eq!(expires, 60, "not the other device's 3000");
                assert_eq!(bindings.len(), 2);
                assert!(bindings[1].ours && !bindings[0].ours);
            }
            o => panic!("unexpected {o:?}"),
        }
        // Refreshed 30 s early: well before 60 s.
        assert_eq!(r.refresh_at(), Some(t0 + Duration::from_secs(30)));
    }

    #[test]
    fn our_contact_expires_param_wins_over_the_header_rfc3261_10_2_4() {
        let mut r = reg();
        r.register(contact(), "SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK1");
        let resp = BUG05.replace(
            "Contact: <sip:alice@192.0.2.10:5060>\n",
            "Contact: <sip:alice@192.0.2.10:5060>;expires=1800\n",
        );
        match r.handle_response(&response(&resp), Instant::now()) {
            RegOutcome::Registered { expires, .. } => assert_eq!(expires, 1800),
            o => panic!("unexpected {o:?}"),
        }
    }

    #[test]
    fn without_any_expiry_the_requested_one_applies() {
        let mut r = reg();
        r.register(contact(), "SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK1");
        let resp = BUG05
            .replace("Expires: 60\n", "")
            .replace("Contact: <sip:alice@203.0.113.9:5060>;expires=3000\n", "");
        match r.handle_response(&response(&resp), Instant::now()) {
            RegOutcome::Registered { expires, .. } => assert_eq!(expires, 3600),
            o => panic!("unexpected {o:?}"),
        }
    }

    #[test]
    fn call_id_stays_and_cseq_grows_across_refreshes_rfc3261_10_2_4() {
        let mut r = reg();
        let a = r.register(contact(), "SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK1");
        let b = r.resend("SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK2").unwrap();
        let c = r.register(contact(), "SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK3");
        let d = r
            .unregister("SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK4")
            .unwrap();
        let seqs: Vec<u32> = [&a, &b, &c, &d]
            .iter()
            .map(|m| m.headers.cseq().unwrap().seq)
            .collect();
        assert_eq!(seqs, vec![1, 2, 3, 4]);
        assert!(
            [&a, &b, &c, &d]
                .iter()
                .all(|m| m.headers.call_id().unwrap() == "reg-callid-2@192.0.2.10")
        );
        assert_eq!(d.headers.get("Expires"), Some("0"));
        assert_eq!(a.uri, "sip:example.com");
        assert_eq!(
            a.headers.to_addr().unwrap().uri.to_string(),
            "sip:alice@example.com"
        );
    }

    #[test]
    fn interval_too_brief_retries_with_min_expires_rfc3261_10_2_8() {
        let mut r = reg();
        r.register(contact(), "SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK1");
        let resp = response(
            "SIP/2.0 423 Interval Too Brief\nVia: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK1\nFrom: <sip:alice@example.com>;tag=reg-tag\nTo: <sip:alice@example.com>;tag=x\nCall-ID: reg-callid-2@192.0.2.10\nCSeq: 1 REGISTER\nMin-Expires: 7200\nContent-Length: 0\n\n",
        );
        assert_eq!(
            r.handle_response(&resp, Instant::now()),
            RegOutcome::RetryWithExpires { expires: 7200 }
        );
        let again = r.register(contact(), "SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK2");
        assert_eq!(again.headers.get("Expires"), Some("7200"));
    }

    #[test]
    fn new_contact_removes_the_stale_binding_rfc3261_10_2_2() {
        let mut r = reg();
        r.register(contact(), "SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK1");
        let ok = response(
            "SIP/2.0 200 OK\nVia: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK1\nFrom: <sip:alice@example.com>;tag=reg-tag\nTo: <sip:alice@example.com>;tag=x\nCall-ID: reg-callid-2@192.0.2.10\nCSeq: 1 REGISTER\nContact: <sip:alice@192.0.2.10:5060>;expires=3600\nContent-Length: 0\n\n",
        );
        assert!(matches!(
            r.handle_response(&ok, Instant::now()),
            RegOutcome::Registered { .. }
        ));
        let public = SipUri::new(
            Some("alice"),
            Host::Ipv4("198.51.100.65".parse().unwrap()),
            Some(40000),
        );
        let moved = r.register(public.clone(), "SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK2");
        let contacts: Vec<&str> = moved.headers.get_all("Contact").collect();
        assert_eq!(
            contacts,
            vec![
                "<sip:alice@198.51.100.65:40000>",
                "<sip:alice@192.0.2.10:5060>;expires=0"
            ]
        );
        let ok2 = response(
            "SIP/2.0 200 OK\nVia: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK2\nFrom: <sip:alice@example.com>;tag=reg-tag\nTo: <sip:alice@example.com>;tag=x\nCall-ID: reg-callid-2@192.0.2.10\nCSeq: 2 REGISTER\nContact: <sip:alice@198.51.100.65:40000>;expires=3600\nContent-Length: 0\n\n",
        );
        assert!(matches!(
            r.handle_response(&ok2, Instant::now()),
            RegOutcome::Registered { expires: 3600, .. }
        ));
        let refresh = r.register(public, "SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK3");
        assert_eq!(refresh.headers.get_all("Contact").count(), 1);
    }

    #[test]
    fn outbound_register_carries_instance_reg_id_and_supported_rfc5626_4_2_1() {
        let mut cfg = reg().config().clone();
        cfg.instance = Some("urn:uuid:00000000-0000-8000-8000-000000000001".into());
        let mut r = Registration::new(cfg, "c@x".into(), "t".into());
        let req = r.register(contact(), "SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK1");
        assert_eq!(
            req.headers.get("Contact"),
            Some(
                "<sip:alice@192.0.2.10:5060>;+sip.instance=\"<urn:uuid:00000000-0000-8000-8000-000000000001>\";reg-id=1"
            )
        );
        assert_eq!(req.headers.get("Supported"), Some("outbound, path"));
        // A registrar without outbound: a plain registration.
        let plain = response(
            "SIP/2.0 200 OK\nVia: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK1\nFrom: <sip:alice@example.com>;tag=t\nTo: <sip:alice@example.com>;tag=x\nCall-ID: c@x\nCSeq: 1 REGISTER\nContact: <sip:alice@192.0.2.10:5060>;expires=3600\nContent-Length: 0\n\n",
        );
        assert!(matches!(
            r.handle_response(&plain, Instant::now()),
            RegOutcome::Registered { expires: 3600, .. }
        ));
        assert!(!r.outbound());
        let req = r.register(contact(), "SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK2");
        let with_ob = response(&format!(
            "SIP/2.0 200 OK\nVia: {}\nFrom: <sip:alice@example.com>;tag=t\nTo: <sip:alice@example.com>;tag=x\nCall-ID: c@x\nCSeq: 2 REGISTER\nRequire: outbound\nContact: <sip:alice@192.0.2.10:5060>;expires=3600\nContent-Length: 0\n\n",
            req.headers.get("Via").unwrap()
        ));
        r.handle_response(&with_ob, Instant::now());
        assert!(r.outbound(), "Require: outbound in the 2xx");
    }

    #[test]
    fn without_an_instance_no_outbound_headers() {
        let mut r = reg();
        let req = r.register(contact(), "SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK1");
        assert_eq!(
            req.headers.get("Contact"),
            Some("<sip:alice@192.0.2.10:5060>")
        );
        assert_eq!(req.headers.get("Supported"), None);
    }

    #[test]
    fn refresh_happens_well_before_expiry() {
        assert_eq!(refresh_delay(3600), Duration::from_secs(1800));
        assert_eq!(refresh_delay(60), Duration::from_secs(30));
        assert_eq!(refresh_delay(30), Duration::from_secs(22));
        assert_eq!(
            refresh_delay(1),
            Duration::from_secs(1).max(Duration::from_secs(0))
        );
    }
}

#[cfg(test)]
mod backoff_tests {
    use super::*;

    #[test]
    fn retries_double_from_30_s_to_a_5_min_cap_and_reset_on_success_rfc5626_4_5() {
        let t0 = Instant::now();
        let mut b = RetryBackoff::default();
        let secs = |at: Option<Instant>, now: Instant| at.map(|t| (t - now).as_secs());
        let mut waits = Vec::new();
        for _ in 0..6 {
            waits.push(secs(b.on_failure(RegFailure::Timeout, None, None, t0), t0));
        }
        let want = [30, 60, 120, 240, 300, 300].map(Some);
        assert_eq!(waits, want);
        b.on_success();
        assert_eq!(
            secs(b.on_failure(RegFailure::Network, None, None, t0), t0),
            Some(30)
        );
    }

    #[test]
    fn a_5xx_or_408_is_retried_and_retry_after_sets_the_wait_rfc3261_21_5_4() {
        let t0 = Instant::now();
        let mut b = RetryBackoff::default();
        let at = b.on_failure(RegFailure::Rejected, Some(503), Some(7), t0);
        assert_eq!(at, Some(t0 + Duration::from_secs(7)));
        let at = b.on_failure(RegFailure::Rejected, Some(503), Some(0), t0);
        assert_eq!(at, Some(t0 + Duration::from_secs(1)), "never a busy loop");
        let at = b.on_failure(RegFailure::Rejected, Some(500), None, t0);
        assert_eq!(
            at,
            Some(t0 + Duration::from_secs(120)),
            "third failure in a row"
        );
        assert!(
            b.on_failure(RegFailure::Rejected, Some(408), None, t0)
                .is_some()
        );
    }

    #[test]
    fn refused_credentials_and_final_4xx_are_not_retried() {
        let t0 = Instant::now();
        let mut b = RetryBackoff::default();
        assert_eq!(b.on_failure(RegFailure::Auth, Some(401), None, t0), None);
        for status in [403, 404, 488, 603] {
            assert_eq!(
                b.on_failure(RegFailure::Rejected, Some(status), None, t0),
                None,
                "{status}"
            );
        }
        assert_eq!(b.on_failure(RegFailure::Rejected, None, None, t0), None);
    }
}
