//! HTTP Digest authentication for SIP (RFC 3261 §22, RFC 7616, RFC 8760).
//!
//! This module owns what a UAC needs to answer `401`/`407` challenges:
//! parsing `WWW-Authenticate` / `Proxy-Authenticate` values into
//! [`Challenge`]s ([`challenges`], [`parse_challenges`]), picking one
//! ([`choose`], [`choose_for`]), computing the `Authorization` /
//! `Proxy-Authorization` value, counting `nc` per nonce, answering later
//! requests pre-emptively and deciding whether a new challenge deserves
//! another attempt ([`DigestClient`]). [`mask_authorization`] and
//! [`mask_message`] hide the response hash before anything is logged.
//!
//! It is sans-IO: the UA keeps one [`DigestClient`] per account and drives it
//! with the challenges it receives; client nonces come from the RNG it passes
//! in. The typical flow for one request is:
//!
//! 1. send it with [`DigestClient::preemptive`] if a realm is cached;
//! 2. on 401/407, [`challenges`] + [`choose_for`], then
//!    [`DigestClient::should_retry`]; on `Retry`/`StaleRetry` resend (new
//!    CSeq) with [`DigestClient::authorize`]; on `GiveUp` report failure;
//! 3. on any other final response call [`DigestClient::on_accepted`].

use std::fmt;
use std::ops::Range;

use md5::Md5;
use sha2::{Digest, Sha256, Sha512_256};

use crate::sip::Headers;

/// Why a challenge cannot be used or an answer cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("the header value holds no challenge")]
    Empty,
    #[error("unexpected {found:?} at byte {at}")]
    Syntax { at: usize, found: Option<char> },
    #[error("quoted string opened at byte {at} is not closed")]
    UnterminatedQuote { at: usize },
    #[error("scheme {scheme:?} is not Digest")]
    NotDigest { scheme: String },
    #[error("the Digest challenge has no {name} parameter")]
    MissingParam { name: &'static str },
    #[error("unsupported digest algorithm {algorithm:?}")]
    UnsupportedAlgorithm { algorithm: String },
    #[error("none of the offered qop values {offered:?} is supported")]
    UnsupportedQop { offered: String },
    #[error("credentials for realm {credentials:?} cannot answer realm {challenge:?}")]
    RealmMismatch {
        challenge: String,
        credentials: String,
    },
    #[error("nonce count exhausted for realm {realm:?}")]
    NonceCountExhausted { realm: String },
}

/// The digest algorithms we support (RFC 7616 §3.3, §6.1; RFC 8760 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Md5,
    Md5Sess,
    Sha256,
    Sha256Sess,
    Sha512_256,
    Sha512_256Sess,
}

impl Algorithm {
    /// Parses an `algorithm=` value, case-insensitively; `None` for an
    /// algorithm we do not implement (e.g. `AKAv1-MD5`).
    pub fn parse(s: &str) -> Option<Algorithm> {
        const NAMES: [(&str, Algorithm); 6] = [
            ("MD5", Algorithm::Md5),
            ("MD5-sess", Algorithm::Md5Sess),
            ("SHA-256", Algorithm::Sha256),
            ("SHA-256-sess", Algorithm::Sha256Sess),
            ("SHA-512-256", Algorithm::Sha512_256),
            ("SHA-512-256-sess", Algorithm::Sha512_256Sess),
        ];
        NAMES
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(s.trim()))
            .map(|(_, a)| *a)
    }

    /// The name as written in headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
            Algorithm::Sha512_256 => "SHA-512-256",
            Algorithm::Sha512_256Sess => "SHA-512-256-sess",
        }
    }

    /// RFC 7616 §3.4.2: the `-sess` variants fold nonce and cnonce into A1.
    pub fn is_sess(self) -> bool {
        matches!(
            self,
            Algorithm::Md5Sess | Algorithm::Sha256Sess | Algorithm::Sha512_256Sess
        )
    }

    /// Our preference: SHA-512-256 > SHA-256 > MD5 (RFC 7616 and RFC 8760
    /// keep MD5 for backward compatibility only).
    pub fn strength(self) -> u8 {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => 1,
            Algorithm::Sha256 | Algorithm::Sha256Sess => 2,
            Algorithm::Sha512_256 | Algorithm::Sha512_256Sess => 3,
        }
    }

    /// `H(data)` as lower-case hex (RFC 7616 §3.4: "the hex representation").
    fn hash(self, data: &[u8]) -> String {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => hex(&Md5::digest(data)),
            Algorithm::Sha256 | Algorithm::Sha256Sess => hex(&Sha256::digest(data)),
            Algorithm::Sha512_256 | Algorithm::Sha512_256Sess => hex(&Sha512_256::digest(data)),
        }
    }

    /// `H(a:b:c...)`.
    fn hash_joined(self, parts: &[&str]) -> String {
        self.hash(parts.join(":").as_bytes())
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Quality of protection (RFC 7616 §3.3 `qop`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Qop {
    /// Authentication only.
    Auth,
    /// Authentication with integrity of the body (its hash goes into A2).
    AuthInt,
}

impl Qop {
    pub fn as_str(self) -> &'static str {
        match self {
            Qop::Auth => "auth",
            Qop::AuthInt => "auth-int",
        }
    }
}

/// One usable Digest challenge (RFC 7616 §3.3, RFC 3261 §22.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    /// RFC 7616 §3.3: the previous nonce was valid but expired; retry with
    /// the new one without asking the user again.
    pub stale: bool,
    /// `MD5` when the challenge names none (RFC 7616 §3.3).
    pub algorithm: Algorithm,
    /// Whether the challenge named the algorithm; only then is it echoed,
    /// so that RFC 2069/2617 servers see what they sent.
    pub algorithm_explicit: bool,
    /// The supported `qop` options offered, in the server's order; empty
    /// when the challenge has no `qop` (RFC 2069 compatibility).
    pub qop: Vec<Qop>,
    /// RFC 7616 §3.4.4: send `H(username ":" realm)` instead of the name.
    pub userhash: bool,
}

impl Challenge {
    /// Parses the first challenge of a `WWW-Authenticate` /
    /// `Proxy-Authenticate` value; see [`parse_challenges`] for rows that
    /// hold several.
    pub fn parse(value: &str) -> Result<Challenge, DigestError> {
        parse_challenges(value)
            .into_iter()
            .next()
            .unwrap_or(Err(DigestError::Empty))
    }

    /// The qop we answer with: `auth` when offered, `auth-int` only when it is
    /// the sole option, none for an RFC 2069 challenge.
    pub fn preferred_qop(&self) -> Option<Qop> {
        if self.qop.contains(&Qop::Auth) {
            Some(Qop::Auth)
        } else {
            self.qop.first().copied()
        }
    }

    fn from_raw(raw: &RawChallenge) -> Result<Challenge, DigestError> {
        if !raw.scheme.eq_ignore_ascii_case("Digest") {
            return Err(DigestError::NotDigest {
                scheme: raw.scheme.clone(),
            });
        }
        let realm = raw
            .get("realm")
            .ok_or(DigestError::MissingParam { name: "realm" })?;
        let nonce = raw
            .get("nonce")
            .ok_or(DigestError::MissingParam { name: "nonce" })?;
        let (algorithm, algorithm_explicit) = match raw.get("algorithm") {
            None => (Algorithm::Md5, false),
            Some(a) => {
                let alg = Algorithm::parse(a).ok_or_else(|| DigestError::UnsupportedAlgorithm {
                    algorithm: a.to_string(),
                })?;
                (alg, true)
            }
        };
        let qop = match raw.get("qop") {
            None => Vec::new(),
            Some(list) => parse_qop_options(list)?,
        };
        let is_true = |name| {
            raw.get(name)
                .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        };
        Ok(Challenge {
            realm: realm.to_string(),
            nonce: nonce.to_string(),
            opaque: raw.get("opaque").map(str::to_string),
            stale: is_true("stale"),
            algorithm,
            algorithm_explicit,
            qop,
            userhash: is_true("userhash"),
        })
    }
}

/// RFC 7616 §3.3: `qop` is a quoted, comma-separated list of tokens;
/// unknown options are ignored, but at least one must be known.
fn parse_qop_options(list: &str) -> Result<Vec<Qop>, DigestError> {
    let mut out = Vec::new();
    for opt in list.split([',', ' ', '\t']).filter(|o| !o.is_empty()) {
        let qop = if opt.eq_ignore_ascii_case("auth") {
            Qop::Auth
        } else if opt.eq_ignore_ascii_case("auth-int") {
            Qop::AuthInt
        } else {
            continue;
        };
        if !out.contains(&qop) {
            out.push(qop);
        }
    }
    if out.is_empty() {
        return Err(DigestError::UnsupportedQop {
            offered: list.to_string(),
        });
    }
    Ok(out)
}

/// Every challenge of one header value, in order (RFC 7235 §4.1 allows
/// several per row, e.g. `Basic realm="a", Digest realm="b", nonce="n"`).
/// Non-Digest schemes and unsupported algorithms come back as errors so the
/// caller can skip them; a syntax error ends the row.
pub fn parse_challenges(value: &str) -> Vec<Result<Challenge, DigestError>> {
    scan_challenges(value)
        .into_iter()
        .map(|raw| raw.and_then(|r| Challenge::from_raw(&r)))
        .collect()
}

/// The usable Digest challenges of a 401 (`WWW-Authenticate`) or, with
/// `proxy`, a 407 (`Proxy-Authenticate`), over all rows, top to bottom.
/// Other schemes, unknown algorithms and malformed challenges are skipped
/// (RFC 8760 §2.4: a UAC ignores algorithms it does not support).
pub fn challenges(headers: &Headers, proxy: bool) -> Vec<Challenge> {
    let name = if proxy {
        "Proxy-Authenticate"
    } else {
        "WWW-Authenticate"
    };
    let mut out = Vec::new();
    for row in headers.get_all(name) {
        for parsed in parse_challenges(row) {
            match parsed {
                Ok(c) => out.push(c),
                Err(e) => tracing::debug!(error = %e, "skipping an authentication challenge"),
            }
        }
    }
    out
}

/// One challenge per realm, in the order the realms first appear; within a
/// realm the strongest algorithm wins and ties go to the topmost row.
///
/// RFC 8760 §2.4 lets the UAC pick the topmost supported challenge "unless a
/// local policy dictates otherwise"; our policy is the strongest hash, so a
/// server listing MD5 before SHA-256 still gets SHA-256.
pub fn choose_per_realm(challenges: &[Challenge]) -> Vec<&Challenge> {
    let mut best: Vec<&Challenge> = Vec::new();
    for c in challenges {
        match best.iter_mut().find(|b| b.realm == c.realm) {
            Some(b) => {
                if c.algorithm.strength() > b.algorithm.strength() {
                    *b = c;
                }
            }
            None => best.push(c),
        }
    }
    best
}

/// The challenge to answer: the first realm's best challenge
/// (see [`choose_per_realm`]).
pub fn choose(challenges: &[Challenge]) -> Option<&Challenge> {
    choose_per_realm(challenges).into_iter().next()
}

/// Like [`choose`], but only among realms `creds` may answer.
pub fn choose_for<'a>(challenges: &'a [Challenge], creds: &Credentials) -> Option<&'a Challenge> {
    choose_per_realm(challenges)
        .into_iter()
        .find(|c| creds.matches_realm(&c.realm))
}

/// A user's secret for one account. `Debug` never prints the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    /// When set, these credentials answer only challenges of this realm
    /// (RFC 3261 §22.1: credentials belong to a realm).
    pub realm: Option<String>,
}

impl Credentials {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Credentials {
        Credentials {
            username: username.into(),
            password: password.into(),
            realm: None,
        }
    }

    /// Restricts the credentials to one realm.
    pub fn with_realm(mut self, realm: impl Into<String>) -> Credentials {
        self.realm = Some(realm.into());
        self
    }

    /// Whether these credentials may answer a challenge of `realm`.
    pub fn matches_realm(&self, realm: &str) -> bool {
        self.realm.as_deref().is_none_or(|r| r == realm)
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"***")
            .field("realm", &self.realm)
            .finish()
    }
}

/// What to do with a new 401/407 challenge ([`DigestClient::should_retry`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Answer it with [`DigestClient::authorize`].
    Retry,
    /// RFC 7616 §3.3 `stale=true`: our answer was right but the nonce
    /// expired; answer the new nonce with the same credentials.
    StaleRetry,
    /// These credentials were already refused for this realm (or cannot
    /// answer it): stop, never loop on the same failing answer.
    GiveUp,
}

/// At most this many `stale=true` retries in a row for one realm before we
/// stop trusting the server (reset by [`DigestClient::on_accepted`]).
const MAX_STALE_RETRIES: u8 = 3;

/// How our last answer for a realm was produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AttemptKind {
    /// In reply to a challenge: a new non-stale challenge means "refused".
    Challenged,
    /// From the cache: the nonce may simply have expired.
    Preemptive,
}

#[derive(Debug, Clone)]
struct Attempt {
    kind: AttemptKind,
    nonce: String,
}

/// The cache for one realm.
#[derive(Debug, Clone)]
struct RealmState {
    challenge: Challenge,
    creds: Credentials,
    /// The last `nc` sent with `challenge.nonce` (RFC 7616 §3.4).
    nc: u32,
    /// Set by every answer, cleared by [`DigestClient::on_accepted`].
    last_attempt: Option<Attempt>,
    stale_retries: u8,
}

/// The Digest state of one account: the last challenge per realm, nonce
/// counts, and what we answered, so that a refused answer is not repeated.
#[derive(Debug, Clone, Default)]
pub struct DigestClient {
    /// Least recently used first.
    realms: Vec<RealmState>,
}

impl DigestClient {
    pub fn new() -> DigestClient {
        DigestClient::default()
    }

    /// Builds the `Authorization` (or `Proxy-Authorization`) value answering
    /// `challenge` for a request `method uri` with `body` (RFC 7616 §3.4,
    /// RFC 3261 §22.2, §22.3). The challenge is cached for its realm; `nc`
    /// counts on while the nonce stays the same and restarts at 1 with a new
    /// one; each call draws a fresh cnonce from `cnonce_source`.
    pub fn authorize(
        &mut self,
        challenge: &Challenge,
        creds: &Credentials,
        method: &str,
        uri: &str,
        body: &[u8],
        cnonce_source: &mut impl rand::Rng,
    ) -> Result<String, DigestError> {
        if !creds.matches_realm(&challenge.realm) {
            return Err(DigestError::RealmMismatch {
                challenge: challenge.realm.clone(),
                credentials: creds.realm.clone().unwrap_or_default(),
            });
        }
        let state = self.touch(challenge, creds);
        let nc = next_nc(state)?;
        state.last_attempt = Some(Attempt {
            kind: AttemptKind::Challenged,
            nonce: challenge.nonce.clone(),
        });
        let cnonce = new_cnonce(cnonce_source);
        Ok(authorization_value(
            challenge, creds, method, uri, body, &cnonce, nc,
        ))
    }

    /// An answer for a new request from the cached challenge of `realm`
    /// (`None`: the realm used last), with the next `nc` for its nonce; `None`
    /// when nothing is cached. The server may still answer 401/407 (e.g.
    /// `stale=true`), which [`should_retry`](Self::should_retry) handles.
    pub fn preemptive(
        &mut self,
        realm: Option<&str>,
        method: &str,
        uri: &str,
        body: &[u8],
        cnonce_source: &mut impl rand::Rng,
    ) -> Option<String> {
        let idx = match realm {
            Some(r) => self.realms.iter().position(|s| s.challenge.realm == r)?,
            None => self.realms.len().checked_sub(1)?,
        };
        let state = &mut self.realms[idx];
        let nc = next_nc(state).ok()?;
        state.last_attempt = Some(Attempt {
            kind: AttemptKind::Preemptive,
            nonce: state.challenge.nonce.clone(),
        });
        let cnonce = new_cnonce(cnonce_source);
        Some(authorization_value(
            &state.challenge,
            &state.creds,
            method,
            uri,
            body,
            &cnonce,
            nc,
        ))
    }

    /// Decides whether to answer a new challenge: credentials the server
    /// just rejected are not sent again (RFC 3261 §22), except that
    /// `stale=true` means the answer was right but the nonce expired, so we
    /// answer the new nonce without asking the user (RFC 7616 §3.3).
    pub fn should_retry(&mut self, challenge: &Challenge, creds: &Credentials) -> RetryDecision {
        if !creds.matches_realm(&challenge.realm) {
            return RetryDecision::GiveUp;
        }
        let Some(state) = self
            .realms
            .iter_mut()
            .find(|s| s.challenge.realm == challenge.realm)
        else {
            return RetryDecision::Retry;
        };
        let Some(attempt) = &state.last_attempt else {
            return RetryDecision::Retry;
        };
        if state.creds != *creds {
            // The user changed the credentials: they deserve a try.
            return RetryDecision::Retry;
        }
        if challenge.stale {
            if challenge.nonce == attempt.nonce || state.stale_retries >= MAX_STALE_RETRIES {
                return RetryDecision::GiveUp;
            }
            state.stale_retries += 1;
            return RetryDecision::StaleRetry;
        }
        match attempt.kind {
            // A cached nonce may have expired without the server saying so.
            AttemptKind::Preemptive => RetryDecision::Retry,
            AttemptKind::Challenged => RetryDecision::GiveUp,
        }
    }

    /// The request authorized for `realm` got a final response other than
    /// 401/407: the answer worked, so a later challenge is a fresh one.
    pub fn on_accepted(&mut self, realm: &str) {
        if let Some(s) = self.realms.iter_mut().find(|s| s.challenge.realm == realm) {
            s.last_attempt = None;
            s.stale_retries = 0;
        }
    }

    /// Whether a challenge for `realm` is cached.
    pub fn has_realm(&self, realm: &str) -> bool {
        self.realms.iter().any(|s| s.challenge.realm == realm)
    }

    /// Drops the cache of one realm (e.g. the account's password changed).
    pub fn forget(&mut self, realm: &str) {
        self.realms.retain(|s| s.challenge.realm != realm);
    }

    /// Drops every cached realm.
    pub fn clear(&mut self) {
        self.realms.clear();
    }

    /// The realm's state, updated with `challenge` and `creds` and moved to
    /// the most-recently-used end. A new nonce restarts `nc`.
    fn touch(&mut self, challenge: &Challenge, creds: &Credentials) -> &mut RealmState {
        let state = match self
            .realms
            .iter()
            .position(|s| s.challenge.realm == challenge.realm)
        {
            Some(i) => {
                let mut s = self.realms.remove(i);
                if s.challenge.nonce != challenge.nonce {
                    s.nc = 0;
                }
                s.challenge = challenge.clone();
                s.creds = creds.clone();
                s
            }
            None => RealmState {
                challenge: challenge.clone(),
                creds: creds.clone(),
                nc: 0,
                last_attempt: None,
                stale_retries: 0,
            },
        };
        self.realms.push(state);
        self.realms
            .last_mut()
            .expect("invariant: a state was pushed on the line above")
    }
}

/// The next nonce count (RFC 7616 §3.4: 8 hex digits, so it cannot pass
/// `ffffffff`).
fn next_nc(state: &mut RealmState) -> Result<u32, DigestError> {
    state.nc = state
        .nc
        .checked_add(1)
        .ok_or_else(|| DigestError::NonceCountExhausted {
            realm: state.challenge.realm.clone(),
        })?;
    Ok(state.nc)
}

/// RFC 7616 §3.4: the cnonce is an opaque quoted string; 128 random bits.
fn new_cnonce(rng: &mut impl rand::Rng) -> String {
    format!("{:032x}", rng.random::<u128>())
}

/// The answer to `ch` for one request, with a given cnonce and nonce count
/// (RFC 7616 §3.4.1 – §3.4.4, RFC 2069 when the challenge has no qop).
fn authorization_value(
    ch: &Challenge,
    creds: &Credentials,
    method: &str,
    uri: &str,
    body: &[u8],
    cnonce: &str,
    nc: u32,
) -> String {
    let alg = ch.algorithm;
    let qop = ch.preferred_qop();
    let nc = format!("{nc:08x}");
    // RFC 7616 §3.4.2: A1 = username ":" realm ":" passwd, and for -sess
    // H(that) ":" nonce ":" cnonce. The real name is used even with userhash.
    let mut ha1 = alg.hash_joined(&[&creds.username, &ch.realm, &creds.password]);
    if alg.is_sess() {
        ha1 = alg.hash_joined(&[&ha1, &ch.nonce, cnonce]);
    }
    // RFC 7616 §3.4.3: A2 = Method ":" request-uri [":" H(entity-body)].
    let ha2 = match qop {
        Some(Qop::AuthInt) => alg.hash_joined(&[method, uri, &alg.hash(body)]),
        _ => alg.hash_joined(&[method, uri]),
    };
    // RFC 7616 §3.4.1 with qop; RFC 2069 §2.1.2 (H(HA1:nonce:HA2)) without.
    let response = match qop {
        Some(q) => alg.hash_joined(&[&ha1, &ch.nonce, &nc, cnonce, q.as_str(), &ha2]),
        None => alg.hash_joined(&[&ha1, &ch.nonce, &ha2]),
    };
    // RFC 7616 §3.4.4: username = H(unq(username) ":" unq(realm)).
    let username = if ch.userhash {
        alg.hash_joined(&[&creds.username, &ch.realm])
    } else {
        creds.username.clone()
    };

    let mut out = format!(
        "Digest username={}, realm={}, nonce={}, uri={}, response={}",
        quote(&username),
        quote(&ch.realm),
        quote(&ch.nonce),
        quote(uri),
        quote(&response),
    );
    if ch.algorithm_explicit {
        out.push_str(&format!(", algorithm={alg}"));
    }
    // RFC 2617 forbids cnonce without qop, but -sess cannot be computed
    // without one, so it is sent then too.
    if qop.is_some() || alg.is_sess() {
        out.push_str(&format!(", cnonce={}", quote(cnonce)));
    }
    if let Some(opaque) = &ch.opaque {
        out.push_str(&format!(", opaque={}", quote(opaque)));
    }
    if let Some(q) = qop {
        out.push_str(&format!(", qop={}, nc={nc}", q.as_str()));
    }
    if ch.userhash {
        out.push_str(", userhash=true");
    }
    out
}

/// A quoted-string with `"` and `\` escaped as quoted-pairs (RFC 3261 §25.1).
fn quote(s: &str) -> String {
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

// ---------------------------------------------------------------------------
// Scanning `scheme param=value, ...` rows (RFC 7235 §2.1, §4.1; RFC 3261 §25.1).

/// One `name=value` auth-param.
#[derive(Debug, Clone)]
struct RawParam {
    /// Lower-cased (names are case-insensitive).
    name: String,
    /// Unquoted, quoted-pairs resolved.
    value: String,
    /// Where the value was written (with its quotes), for masking.
    value_span: Range<usize>,
}

/// One challenge or credential as written.
#[derive(Debug, Clone)]
struct RawChallenge {
    scheme: String,
    params: Vec<RawParam>,
}

impl RawChallenge {
    /// The first parameter `name` (lower-case); later duplicates are ignored.
    fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.value.as_str())
    }
}

struct Scanner<'a> {
    s: &'a str,
    pos: usize,
}

/// RFC 7230 §3.2.6 tchar.
fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<char> {
        self.s[self.pos..].chars().next()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    /// Skips LWS; line breaks count too so that unparsed folded rows work.
    fn skip_ws(&mut self) {
        while let Some(c) = self
            .peek()
            .filter(|c| matches!(c, ' ' | '\t' | '\r' | '\n'))
        {
            self.pos += c.len_utf8();
        }
    }

    fn skip_ws_and_commas(&mut self) {
        while let Some(c) = self
            .peek()
            .filter(|c| matches!(c, ' ' | '\t' | '\r' | '\n' | ','))
        {
            self.pos += c.len_utf8();
        }
    }

    /// A token, possibly empty.
    fn token(&mut self) -> &'a str {
        let start = self.pos;
        while let Some(c) = self.peek().filter(|&c| is_tchar(c)) {
            self.pos += c.len_utf8();
        }
        &self.s[start..self.pos]
    }

    /// An unquoted value: lenient, up to whitespace or a comma.
    fn bare_value(&mut self) -> &'a str {
        let start = self.pos;
        while let Some(c) = self
            .peek()
            .filter(|c| !matches!(c, ' ' | '\t' | '\r' | '\n' | ','))
        {
            self.pos += c.len_utf8();
        }
        &self.s[start..self.pos]
    }

    /// A quoted-string starting at the current `"`, with quoted-pairs.
    fn quoted(&mut self) -> Result<String, DigestError> {
        let open = self.pos;
        self.pos += 1;
        let mut out = String::new();
        let mut chars = self.s[self.pos..].char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos += i + 1;
                    return Ok(out);
                }
                '\\' => match chars.next() {
                    Some((_, escaped)) => out.push(escaped),
                    None => break,
                },
                _ => out.push(c),
            }
        }
        Err(DigestError::UnterminatedQuote { at: open })
    }

    fn syntax_error(&self) -> DigestError {
        DigestError::Syntax {
            at: self.pos,
            found: self.peek(),
        }
    }
}

/// Splits a row into challenges. A token followed by `=` is a parameter;
/// a token followed by anything else starts the next challenge, so commas
/// between parameters and between challenges are both fine.
fn scan_challenges(s: &str) -> Vec<Result<RawChallenge, DigestError>> {
    let mut sc = Scanner { s, pos: 0 };
    let mut out = Vec::new();
    loop {
        sc.skip_ws_and_commas();
        if sc.at_end() {
            break;
        }
        let scheme = sc.token();
        if scheme.is_empty() {
            out.push(Err(sc.syntax_error()));
            break;
        }
        let mut ch = RawChallenge {
            scheme: scheme.to_string(),
            params: Vec::new(),
        };
        match scan_params(&mut sc, &mut ch.params) {
            Ok(()) => out.push(Ok(ch)),
            Err(e) => {
                out.push(Err(e));
                break;
            }
        }
    }
    if out.is_empty() {
        out.push(Err(DigestError::Empty));
    }
    out
}

/// The `#auth-param` list after a scheme, up to the end of the row or the
/// next scheme.
fn scan_params(sc: &mut Scanner<'_>, params: &mut Vec<RawParam>) -> Result<(), DigestError> {
    loop {
        sc.skip_ws_and_commas();
        if sc.at_end() {
            return Ok(());
        }
        let name_start = sc.pos;
        let name = sc.token();
        if name.is_empty() {
            return Err(sc.syntax_error());
        }
        sc.skip_ws();
        if sc.peek() != Some('=') {
            // Not a parameter: the next challenge's scheme.
            sc.pos = name_start;
            return Ok(());
        }
        sc.pos += 1;
        sc.skip_ws();
        let value_start = sc.pos;
        let value = if sc.peek() == Some('"') {
            sc.quoted()?
        } else {
            sc.bare_value().to_string()
        };
        params.push(RawParam {
            name: name.to_ascii_lowercase(),
            value,
            value_span: value_start..sc.pos,
        });
    }
}

// ---------------------------------------------------------------------------
// Masking for logs and traces.

/// Parameters whose values never reach a log: the response hash allows an
/// offline guess of the password (RFC 7616 §5), so it is replaced. Nonce,
/// cnonce and nc stay visible because they are what one debugs.
const MASKED_PARAMS: &[&str] = &["response"];

const MASK: &str = "***";

/// An `Authorization` / `Proxy-Authorization` value fit for a log: scheme,
/// username, realm, uri, nonce... are kept and `response` becomes `"***"`.
/// Other schemes (e.g. Basic, whose token is the password) and values we
/// cannot scan keep only the scheme. Surrounding whitespace is preserved.
pub fn mask_authorization(header_value: &str) -> String {
    let scanned = scan_challenges(header_value);
    let all_digest = scanned.iter().all(|r| {
        r.as_ref()
            .is_ok_and(|c| c.scheme.eq_ignore_ascii_case("Digest"))
    });
    if !all_digest {
        return mask_after_scheme(header_value);
    }
    let mut spans: Vec<(Range<usize>, bool)> = scanned
        .iter()
        .flatten()
        .flat_map(|c| &c.params)
        .filter(|p| MASKED_PARAMS.contains(&p.name.as_str()))
        .map(|p| {
            let quoted = header_value[p.value_span.clone()].starts_with('"');
            (p.value_span.clone(), quoted)
        })
        .collect();
    spans.sort_by_key(|(r, _)| std::cmp::Reverse(r.start));
    let mut out = header_value.to_string();
    for (span, quoted) in spans {
        let replacement = if quoted {
            format!("\"{MASK}\"")
        } else {
            MASK.to_string()
        };
        out.replace_range(span, &replacement);
    }
    out
}

/// `Scheme ***` (or just `***` when no scheme can be read), keeping the
/// leading and trailing whitespace of `value`.
fn mask_after_scheme(value: &str) -> String {
    if value.trim().is_empty() {
        return value.to_string();
    }
    let trailing = &value[value.trim_end().len()..];
    let mut sc = Scanner { s: value, pos: 0 };
    sc.skip_ws();
    let separator = if sc.token().is_empty() { "" } else { " " };
    format!("{}{separator}{MASK}{trailing}", &value[..sc.pos])
}

/// A printed SIP message (or any trace text) with the values of every
/// `Authorization` and `Proxy-Authorization` row, continuation lines
/// included, passed through [`mask_authorization`]. Line endings are kept.
pub fn mask_message(text: &str) -> String {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < lines.len() {
        let Some(colon) = credentials_row_colon(lines[i]) else {
            out.push_str(lines[i]);
            i += 1;
            continue;
        };
        // RFC 3261 §7.3.1: lines starting with SP or HTAB continue the row.
        let mut end = i + 1;
        while end < lines.len() && lines[end].starts_with([' ', '\t']) {
            end += 1;
        }
        let row = lines[i..end].concat();
        out.push_str(&row[..=colon]);
        out.push_str(&mask_authorization(&row[colon + 1..]));
        i = end;
    }
    out
}

/// The byte index of the colon when `line` starts an Authorization or
/// Proxy-Authorization row (names are case-insensitive, RFC 3261 §7.3.1).
fn credentials_row_colon(line: &str) -> Option<usize> {
    let colon = line.find(':')?;
    let name = line[..colon].trim_end_matches([' ', '\t']);
    (name.eq_ignore_ascii_case("Authorization") || name.eq_ignore_ascii_case("Proxy-Authorization"))
        .then_some(colon)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::{SipMessage, parse_datagram};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    /// The value of `name` in an Authorization value we built.
    fn param(header: &str, name: &str) -> Option<String> {
        let raw = scan_challenges(header).into_iter().next()?.ok()?;
        raw.get(name).map(str::to_string)
    }

    fn rng() -> StdRng {
        StdRng::seed_from_u64(7)
    }

    fn md5_hex(s: &str) -> String {
        hex(&Md5::digest(s.as_bytes()))
    }

    fn response_headers(file: &[u8]) -> Headers {
        match parse_datagram(file).expect("the bug case parses") {
            SipMessage::Response(r) => r.headers,
            SipMessage::Request(_) => panic!("the bug case is a response"),
        }
    }

    // RFC 7616 §3.9.1 (the same challenge is offered with both algorithms).
    const RFC7616_NONCE: &str = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
    const RFC7616_CNONCE: &str = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
    const RFC7616_OPAQUE: &str = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS";

    fn rfc7616_challenge(algorithm: &str) -> Challenge {
        Challenge::parse(&format!(
            "Digest\r\n realm=\"http-auth@example.org\",\r\n qop=\"auth, auth-int\",\r\n \
             algorithm={algorithm},\r\n nonce=\"{RFC7616_NONCE}\",\r\n opaque=\"{RFC7616_OPAQUE}\""
        ))
        .expect("the RFC 7616 §3.9.1 challenge parses")
    }

    fn mufasa() -> Credentials {
        Credentials::new("Mufasa", "Circle of Life")
    }

    #[test]
    fn rfc7616_3_9_1_md5_response() {
        let ch = rfc7616_challenge("MD5");
        let h = authorization_value(
            &ch,
            &mufasa(),
            "GET",
            "/dir/index.html",
            b"",
            RFC7616_CNONCE,
            1,
        );
        assert_eq!(
            param(&h, "response").as_deref(),
            Some("8ca523f5e9506fed4657c9700eebdbec")
        );
        assert_eq!(
            h,
            "Digest username=\"Mufasa\", realm=\"http-auth@example.org\", \
             nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", uri=\"/dir/index.html\", \
             response=\"8ca523f5e9506fed4657c9700eebdbec\", algorithm=MD5, \
             cnonce=\"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ\", \
             opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\", qop=auth, nc=00000001"
        );
    }

    #[test]
    fn rfc7616_3_9_1_sha256_response() {
        let ch = rfc7616_challenge("SHA-256");
        let h = authorization_value(
            &ch,
            &mufasa(),
            "GET",
            "/dir/index.html",
            b"",
            RFC7616_CNONCE,
            1,
        );
        assert_eq!(
            param(&h, "response").as_deref(),
            Some("753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1")
        );
        assert_eq!(param(&h, "algorithm").as_deref(), Some("SHA-256"));
        assert_eq!(param(&h, "opaque").as_deref(), Some(RFC7616_OPAQUE));
    }

    #[test]
    fn rfc2617_3_5_md5_without_algorithm_param_is_not_echoed() {
        let ch = Challenge::parse(
            "Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", \
             nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", \
             opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
        )
        .unwrap();
        assert_eq!(ch.algorithm, Algorithm::Md5);
        let creds = Credentials::new("Mufasa", "Circle Of Life");
        let h = authorization_value(&ch, &creds, "GET", "/dir/index.html", b"", "0a4f113b", 1);
        assert_eq!(
            param(&h, "response").as_deref(),
            Some("6629fae49393a05397450978507c4ef1")
        );
        assert_eq!(param(&h, "algorithm"), None);
    }

    /// RFC 7616 §3.9.2 (SHA-512-256, userhash). The hex values printed in
    /// that section cannot be reproduced from the inputs it gives with the
    /// §3.4.1 / §3.4.4 formulas, so this test pins the values the formulas
    /// give (computed independently of this code) and recomputes the user
    /// hash by hand.
    #[test]
    fn rfc7616_3_9_2_userhash_sends_hashed_username_and_keeps_real_name_in_a1() {
        let ch = Challenge::parse(
            "Digest realm=\"api@example.org\", qop=\"auth\", algorithm=SHA-512-256, \
             nonce=\"5TsQWLVdgBdmrQ0XsxbDODV+57QdFR34I9HAbC/RVvkK\", \
             opaque=\"HRPCssKJSGjCrkzDg8OhwpzCiGPChXYjwrI2QmXDnsOS\", charset=UTF-8, userhash=true",
        )
        .unwrap();
        assert!(ch.userhash);
        assert_eq!(ch.algorithm, Algorithm::Sha512_256);
        let creds = Credentials::new("J\u{e4}s\u{f8}n Doe", "Secret, or not?");
        let h = authorization_value(
            &ch,
            &creds,
            "GET",
            "/doe.json",
            b"",
            "NTg6RKcb9boFIAS3KrFK9BGeh+iDa/sm6jUMp2wds69v",
            1,
        );
        let by_hand = hex(&Sha512_256::digest(
            "J\u{e4}s\u{f8}n Doe:api@example.org".as_bytes(),
        ));
        assert_eq!(param(&h, "username"), Some(by_hand));
        assert_eq!(
            param(&h, "username").as_deref(),
            Some("793263caabb707a56211940d90411ea4a575adeccb7e360aeb624ed06ece9b0b")
        );
        assert_eq!(
            param(&h, "response").as_deref(),
            Some("3798d4131c277846293534c3edc11bd8a5e4cdcbff78b05db9d95eeb1cec68a5")
        );
        assert_eq!(param(&h, "userhash").as_deref(), Some("true"));
        assert!(!h.contains("J\u{e4}s"), "the real user name never goes out");
    }

    #[test]
    fn auth_int_puts_the_body_hash_into_ha2() {
        let ch = Challenge::parse(
            "Digest realm=\"example.com\", nonce=\"n-int\", qop=\"auth-int\", opaque=\"o\"",
        )
        .unwrap();
        assert_eq!(ch.preferred_qop(), Some(Qop::AuthInt));
        let creds = Credentials::new("alice", "pw");
        let body = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n";
        let uri = "sip:bob@example.com";
        let h = authorization_value(&ch, &creds, "INVITE", uri, body, "c1", 1);

        let ha1 = md5_hex("alice:example.com:pw");
        let body_hash = hex(&Md5::digest(body));
        let ha2 = md5_hex(&format!("INVITE:{uri}:{body_hash}"));
        let expected = md5_hex(&format!("{ha1}:n-int:00000001:c1:auth-int:{ha2}"));
        assert_eq!(param(&h, "response"), Some(expected));
        assert_eq!(param(&h, "qop").as_deref(), Some("auth-int"));
        // A different body gives a different answer.
        let other = authorization_value(&ch, &creds, "INVITE", uri, b"x", "c1", 1);
        assert_ne!(param(&other, "response"), param(&h, "response"));
    }

    #[test]
    fn qop_auth_is_preferred_over_auth_int_when_both_are_offered() {
        let ch = Challenge::parse("Digest realm=r, nonce=n, qop=\"auth-int,auth\"").unwrap();
        assert_eq!(ch.qop, vec![Qop::AuthInt, Qop::Auth]);
        assert_eq!(ch.preferred_qop(), Some(Qop::Auth));
    }

    #[test]
    fn no_qop_answers_rfc2069_style_without_cnonce_or_nc() {
        let ch = Challenge::parse("Digest realm=\"example.com\", nonce=\"abc\"").unwrap();
        assert_eq!(ch.preferred_qop(), None);
        let creds = Credentials::new("alice", "pw");
        let mut client = DigestClient::new();
        let h = client
            .authorize(&ch, &creds, "REGISTER", "sip:example.com", b"", &mut rng())
            .unwrap();
        let ha1 = md5_hex("alice:example.com:pw");
        let ha2 = md5_hex("REGISTER:sip:example.com");
        assert_eq!(
            param(&h, "response"),
            Some(md5_hex(&format!("{ha1}:abc:{ha2}")))
        );
        for absent in ["cnonce", "nc", "qop", "algorithm", "opaque"] {
            assert_eq!(param(&h, absent), None, "{absent} must not be sent");
        }
    }

    #[test]
    fn md5_sess_folds_nonce_and_cnonce_into_ha1() {
        let ch = Challenge::parse("Digest realm=\"r\", nonce=\"n\", algorithm=MD5-sess, qop=auth")
            .unwrap();
        let creds = Credentials::new("u", "p");
        let h = authorization_value(&ch, &creds, "REGISTER", "sip:r", b"", "cn", 1);
        let ha1 = md5_hex(&format!("{}:n:cn", md5_hex("u:r:p")));
        let ha2 = md5_hex("REGISTER:sip:r");
        assert_eq!(
            param(&h, "response"),
            Some(md5_hex(&format!("{ha1}:n:00000001:cn:auth:{ha2}")))
        );
        assert_eq!(param(&h, "algorithm").as_deref(), Some("MD5-sess"));
    }

    #[test]
    fn nc_counts_per_nonce_and_restarts_on_a_new_nonce_with_fresh_cnonces() {
        let creds = Credentials::new("alice", "pw");
        let first = Challenge::parse("Digest realm=\"r\", nonce=\"n1\", qop=auth").unwrap();
        let mut client = DigestClient::new();
        let mut rng = rng();
        let a = client
            .authorize(&first, &creds, "REGISTER", "sip:r", b"", &mut rng)
            .unwrap();
        let b = client
            .authorize(&first, &creds, "REGISTER", "sip:r", b"", &mut rng)
            .unwrap();
        assert_eq!(param(&a, "nc").as_deref(), Some("00000001"));
        assert_eq!(param(&b, "nc").as_deref(), Some("00000002"));
        assert_ne!(param(&a, "cnonce"), param(&b, "cnonce"));
        assert_eq!(param(&a, "cnonce").map(|c| c.len()), Some(32));

        let second = Challenge::parse("Digest realm=\"r\", nonce=\"n2\", qop=auth").unwrap();
        let c = client
            .authorize(&second, &creds, "REGISTER", "sip:r", b"", &mut rng)
            .unwrap();
        assert_eq!(param(&c, "nc").as_deref(), Some("00000001"));
        assert_eq!(param(&c, "nonce").as_deref(), Some("n2"));
    }

    #[test]
    fn preemptive_answers_reuse_the_cached_nonce_with_the_next_nc() {
        let creds = Credentials::new("alice", "pw");
        let ch =
            Challenge::parse("Digest realm=\"r\", nonce=\"n1\", qop=auth, opaque=\"o\"").unwrap();
        let mut client = DigestClient::new();
        let mut rng = rng();
        assert_eq!(
            client.preemptive(None, "INVITE", "sip:b@r", b"", &mut rng),
            None
        );
        client
            .authorize(&ch, &creds, "REGISTER", "sip:r", b"", &mut rng)
            .unwrap();
        let p = client
            .preemptive(Some("r"), "INVITE", "sip:b@r", b"", &mut rng)
            .expect("realm r is cached");
        assert_eq!(param(&p, "nc").as_deref(), Some("00000002"));
        assert_eq!(param(&p, "uri").as_deref(), Some("sip:b@r"));
        assert_eq!(param(&p, "opaque").as_deref(), Some("o"));
        let any = client
            .preemptive(None, "BYE", "sip:b@r", b"", &mut rng)
            .expect("some realm is cached");
        assert_eq!(param(&any, "nc").as_deref(), Some("00000003"));
        assert_eq!(
            client.preemptive(Some("other"), "BYE", "sip:b@r", b"", &mut rng),
            None
        );
    }

    #[test]
    fn stale_challenge_is_retried_with_the_new_nonce() {
        let creds = Credentials::new("alice", "pw");
        let mut client = DigestClient::new();
        let mut rng = rng();
        let first = Challenge::parse("Digest realm=\"r\", nonce=\"n1\", qop=auth").unwrap();
        assert_eq!(client.should_retry(&first, &creds), RetryDecision::Retry);
        client
            .authorize(&first, &creds, "REGISTER", "sip:r", b"", &mut rng)
            .unwrap();

        let stale =
            Challenge::parse("Digest realm=\"r\", nonce=\"n2\", qop=auth, stale=TRUE").unwrap();
        assert!(stale.stale);
        assert_eq!(
            client.should_retry(&stale, &creds),
            RetryDecision::StaleRetry
        );
        let h = client
            .authorize(&stale, &creds, "REGISTER", "sip:r", b"", &mut rng)
            .unwrap();
        assert_eq!(param(&h, "nonce").as_deref(), Some("n2"));
        assert_eq!(param(&h, "nc").as_deref(), Some("00000001"));
    }

    #[test]
    fn stale_with_the_nonce_we_just_used_or_endless_stale_gives_up() {
        let creds = Credentials::new("alice", "pw");
        let mut client = DigestClient::new();
        let mut rng = rng();
        let first = Challenge::parse("Digest realm=r, nonce=n0, stale=true").unwrap();
        client
            .authorize(&first, &creds, "REGISTER", "sip:r", b"", &mut rng)
            .unwrap();
        assert_eq!(client.should_retry(&first, &creds), RetryDecision::GiveUp);

        let mut decisions = Vec::new();
        for i in 1..=5 {
            let ch = Challenge::parse(&format!("Digest realm=r, nonce=n{i}, stale=true")).unwrap();
            let d = client.should_retry(&ch, &creds);
            decisions.push(d);
            if d == RetryDecision::GiveUp {
                break;
            }
            client
                .authorize(&ch, &creds, "REGISTER", "sip:r", b"", &mut rng)
                .unwrap();
        }
        assert_eq!(
            decisions,
            vec![
                RetryDecision::StaleRetry,
                RetryDecision::StaleRetry,
                RetryDecision::StaleRetry,
                RetryDecision::GiveUp
            ]
        );
    }

    #[test]
    fn repeated_non_stale_challenge_gives_up_instead_of_resending_the_same_credentials() {
        let creds = Credentials::new("alice", "wrong");
        let mut client = DigestClient::new();
        let mut rng = rng();
        let first = Challenge::parse("Digest realm=\"r\", nonce=\"n1\", qop=auth").unwrap();
        assert_eq!(client.should_retry(&first, &creds), RetryDecision::Retry);
        client
            .authorize(&first, &creds, "REGISTER", "sip:r", b"", &mut rng)
            .unwrap();
        let again = Challenge::parse("Digest realm=\"r\", nonce=\"n2\", qop=auth").unwrap();
        assert_eq!(client.should_retry(&again, &creds), RetryDecision::GiveUp);
        // Same nonce again: still refused.
        assert_eq!(client.should_retry(&first, &creds), RetryDecision::GiveUp);

        // The user fixes the password: worth one more try.
        let fixed = Credentials::new("alice", "right");
        assert_eq!(client.should_retry(&again, &fixed), RetryDecision::Retry);
    }

    #[test]
    fn a_challenge_after_a_preemptive_answer_or_an_accepted_request_is_answered() {
        let creds = Credentials::new("alice", "pw");
        let mut client = DigestClient::new();
        let mut rng = rng();
        let first = Challenge::parse("Digest realm=\"r\", nonce=\"n1\", qop=auth").unwrap();
        client
            .authorize(&first, &creds, "REGISTER", "sip:r", b"", &mut rng)
            .unwrap();
        client.on_accepted("r");
        // A later request with a cached answer, refused because the nonce
        // expired (server without stale support).
        client
            .preemptive(Some("r"), "REGISTER", "sip:r", b"", &mut rng)
            .unwrap();
        let fresh = Challenge::parse("Digest realm=\"r\", nonce=\"n2\", qop=auth").unwrap();
        assert_eq!(client.should_retry(&fresh, &creds), RetryDecision::Retry);
        client
            .authorize(&fresh, &creds, "REGISTER", "sip:r", b"", &mut rng)
            .unwrap();
        let third = Challenge::parse("Digest realm=\"r\", nonce=\"n3\", qop=auth").unwrap();
        assert_eq!(client.should_retry(&third, &creds), RetryDecision::GiveUp);
    }

    #[test]
    fn credentials_bound_to_a_realm_only_answer_that_realm() {
        let creds = Credentials::new("alice", "pw").with_realm("example.com");
        let other = Challenge::parse("Digest realm=\"evil.example\", nonce=\"n\"").unwrap();
        let mine = Challenge::parse("Digest realm=\"example.com\", nonce=\"n\"").unwrap();
        let mut client = DigestClient::new();
        assert_eq!(client.should_retry(&other, &creds), RetryDecision::GiveUp);
        assert_eq!(
            client.authorize(&other, &creds, "INVITE", "sip:b", b"", &mut rng()),
            Err(DigestError::RealmMismatch {
                challenge: "evil.example".into(),
                credentials: "example.com".into()
            })
        );
        let both = vec![other.clone(), mine.clone()];
        assert_eq!(choose_for(&both, &creds), Some(&mine));
        assert_eq!(choose(&both), Some(&other));
        assert!(Credentials::new("a", "b").matches_realm("anything"));
    }

    #[test]
    fn bug08_sha256_is_chosen_over_md5_from_two_rows() {
        let headers = response_headers(include_bytes!(
            "../../tests/data/bugs/08a-sha256-then-md5.sip"
        ));
        let all = challenges(&headers, false);
        assert_eq!(all.len(), 2);
        let chosen = choose(&all).unwrap();
        assert_eq!(chosen.algorithm, Algorithm::Sha256);
        assert_eq!(chosen.opaque.as_deref(), Some("O1"));
        // Nothing in the Proxy-Authenticate rows of a 401.
        assert!(challenges(&headers, true).is_empty());
    }

    /// Bug 08's mirror case. RFC 8760 §2.4 would take the topmost (MD5);
    /// our local policy, which that section allows, takes the strongest.
    #[test]
    fn bug08_sha256_is_chosen_even_when_md5_is_listed_first() {
        let headers = response_headers(include_bytes!(
            "../../tests/data/bugs/08b-md5-then-sha256.sip"
        ));
        let all = challenges(&headers, false);
        assert_eq!(all[0].algorithm, Algorithm::Md5);
        assert_eq!(choose(&all).unwrap().algorithm, Algorithm::Sha256);
    }

    #[test]
    fn bug08_proxy_authenticate_rows_of_a_407_are_read_with_proxy_true() {
        let headers = response_headers(include_bytes!(
            "../../tests/data/bugs/08c-proxy-407-sha256-md5.sip"
        ));
        assert!(challenges(&headers, false).is_empty());
        let all = challenges(&headers, true);
        assert_eq!(choose(&all).unwrap().algorithm, Algorithm::Sha256);
    }

    #[test]
    fn strongest_algorithm_wins_per_realm_and_unknown_ones_are_skipped() {
        let mut headers = Headers::new();
        headers.push("WWW-Authenticate", "Digest realm=a, nonce=1, algorithm=MD5");
        headers.push(
            "WWW-Authenticate",
            "Digest realm=b, nonce=2, algorithm=SHA-256",
        );
        headers.push(
            "WWW-Authenticate",
            "Digest realm=a, nonce=3, algorithm=SHA-512-256-sess",
        );
        headers.push(
            "WWW-Authenticate",
            "Digest realm=a, nonce=4, algorithm=SHA-256",
        );
        headers.push(
            "WWW-Authenticate",
            "Digest realm=a, nonce=5, algorithm=AKAv1-MD5",
        );
        headers.push(
            "WWW-Authenticate",
            "Digest realm=a, nonce=6, algorithm=SHA-512-256",
        );
        let all = challenges(&headers, false);
        assert_eq!(all.len(), 5, "AKAv1-MD5 is skipped");
        let per_realm = choose_per_realm(&all);
        assert_eq!(per_realm.len(), 2);
        assert_eq!(
            per_realm[0].nonce, "3",
            "strongest, and topmost among equals"
        );
        assert_eq!(per_realm[1].nonce, "2");
        assert_eq!(choose(&all).unwrap().nonce, "3");
    }

    #[test]
    fn bug01_challenge_in_a_401_with_compact_headers_is_found() {
        let headers = response_headers(include_bytes!(
            "../../tests/data/bugs/01-compact-headers-401.sip"
        ));
        let all = challenges(&headers, false);
        assert_eq!(all.len(), 1);
        let ch = &all[0];
        assert_eq!(ch.realm, "example.com");
        assert_eq!(ch.nonce, "n0nce1");
        assert_eq!(ch.algorithm, Algorithm::Md5);
        assert!(ch.algorithm_explicit);
        assert_eq!(ch.qop, vec![Qop::Auth]);
    }

    #[test]
    fn bug03_folded_challenge_parses_and_aka_is_skipped() {
        let headers = response_headers(include_bytes!(
            "../../tests/data/bugs/03-folded-www-authenticate.sip"
        ));
        let row = headers.get("WWW-Authenticate").unwrap();
        let raw = scan_challenges(row)
            .remove(0)
            .expect("the folded row scans");
        assert_eq!(raw.get("realm"), Some("example.com"));
        assert_eq!(raw.get("nonce"), Some("abcdefghijklmnopqrstuvwxyz="));
        assert_eq!(raw.get("opaque"), Some("XYZ:abcdefghijklmnopqrstuvwxyz__"));
        assert_eq!(raw.get("algorithm"), Some("AKAv1-MD5"));
        assert_eq!(raw.get("qop"), Some("auth"));
        assert_eq!(
            Challenge::parse(row),
            Err(DigestError::UnsupportedAlgorithm {
                algorithm: "AKAv1-MD5".into()
            })
        );
        assert!(challenges(&headers, false).is_empty());

        // The same folding with an algorithm we support, still folded
        // (unparsed CRLF + HTAB inside the value).
        let folded = "Digest realm=\"example.com\",\r\n   nonce=\"abc=\",\r\n\talgorithm=MD5,\r\n\tqop=\"auth\"";
        let ch = Challenge::parse(folded).unwrap();
        assert_eq!(
            (ch.nonce.as_str(), ch.qop.as_slice()),
            ("abc=", &[Qop::Auth][..])
        );
    }

    #[test]
    fn params_are_case_insensitive_quoted_pairs_resolved_and_spacing_tolerated() {
        let ch = Challenge::parse(
            "  digest   REALM = \"a \\\"quoted\\\" realm\" ,NONCE=tok/en==,,  \
             Algorithm = sha-256 , QOP=\"AUTH\" , Opaque=\"x,y\", STALE=True ,userHash=TRUE",
        )
        .unwrap();
        assert_eq!(ch.realm, "a \"quoted\" realm");
        assert_eq!(ch.nonce, "tok/en==");
        assert_eq!(ch.algorithm, Algorithm::Sha256);
        assert_eq!(ch.qop, vec![Qop::Auth]);
        assert_eq!(ch.opaque.as_deref(), Some("x,y"));
        assert!(ch.stale && ch.userhash);
        // The realm is quoted back with its quoted-pairs.
        let h = authorization_value(&ch, &Credentials::new("u", "p"), "M", "sip:x", b"", "c", 1);
        assert!(h.contains("realm=\"a \\\"quoted\\\" realm\""), "{h}");
    }

    #[test]
    fn several_challenges_in_one_row_are_split_at_each_scheme() {
        let row = "Basic realm=\"basic\", Digest realm=\"one\", nonce=\"n1\", qop=\"auth\", \
                   Digest realm=\"two\", nonce=\"n2\", algorithm=SHA-256, Negotiate abc==, \
                   Digest realm=\"three\" nonce=\"n3\"";
        let parsed = parse_challenges(row);
        assert_eq!(parsed.len(), 5);
        assert_eq!(
            parsed[0],
            Err(DigestError::NotDigest {
                scheme: "Basic".into()
            })
        );
        let ok: Vec<Challenge> = parsed.into_iter().flatten().collect();
        let realms: Vec<&str> = ok.iter().map(|c| c.realm.as_str()).collect();
        assert_eq!(realms, ["one", "two", "three"]);
        assert_eq!(ok[1].algorithm, Algorithm::Sha256);
        assert_eq!(
            ok[2].nonce, "n3",
            "a missing comma between params is tolerated"
        );
    }

    #[test]
    fn malformed_challenges_are_typed_errors() {
        let cases: &[(&str, DigestError)] = &[
            ("", DigestError::Empty),
            (" , ", DigestError::Empty),
            (
                "Digest nonce=\"n\"",
                DigestError::MissingParam { name: "realm" },
            ),
            (
                "Digest realm=\"r\"",
                DigestError::MissingParam { name: "nonce" },
            ),
            (
                "Digest nonce=n, realm=\"r",
                DigestError::UnterminatedQuote { at: 22 },
            ),
            (
                "Digest realm=\"r\\",
                DigestError::UnterminatedQuote { at: 13 },
            ),
            (
                "Digest realm=r, nonce=n, qop=\"auth-conf\"",
                DigestError::UnsupportedQop {
                    offered: "auth-conf".into(),
                },
            ),
            (
                "Digest realm=r, nonce=n, algorithm=SHA-1",
                DigestError::UnsupportedAlgorithm {
                    algorithm: "SHA-1".into(),
                },
            ),
            (
                "Digest realm=r, =x",
                DigestError::Syntax {
                    at: 16,
                    found: Some('='),
                },
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(
                &Challenge::parse(input),
                &Err(expected.clone()),
                "{input:?}"
            );
        }
    }

    #[test]
    fn every_prefix_of_a_challenge_parses_without_panicking() {
        let full = "Digest realm=\"h\u{e9}llo \\\"x\\\"\", nonce=abc, qop=\"auth,auth-int\", \
                    Digest realm=\"b\", nonce=\"n\", algorithm=SHA-512-256, userhash=true";
        for (i, _) in full.char_indices() {
            let _ = parse_challenges(&full[..i]);
            let _ = mask_authorization(&full[..i]);
            let _ = mask_message(&full[..i]);
        }
        for garbage in [
            "\u{0}",
            "Digest \u{1F600}=1",
            "=",
            "\"",
            "Digest ,,,, ,",
            "a=b=c",
        ] {
            let _ = parse_challenges(garbage);
            let _ = mask_authorization(garbage);
        }
    }

    #[test]
    fn mask_authorization_hides_the_response_but_keeps_the_rest() {
        let creds = Credentials::new("alice", "s3cret-pw");
        let ch = rfc7616_challenge("SHA-256");
        let mut client = DigestClient::new();
        let h = client
            .authorize(&ch, &creds, "REGISTER", "sip:example.com", b"", &mut rng())
            .unwrap();
        let response = param(&h, "response").unwrap();
        let masked = mask_authorization(&h);
        assert!(!masked.contains(&response));
        assert!(!masked.contains("s3cret-pw"));
        assert!(masked.starts_with("Digest username=\"alice\", realm=\"http-auth@example.org\""));
        assert!(masked.contains("uri=\"sip:example.com\""));
        assert!(masked.contains("response=\"***\""));
        assert_eq!(
            mask_authorization("Digest username=u, response=abcdef, nc=00000001"),
            "Digest username=u, response=***, nc=00000001"
        );
    }

    #[test]
    fn mask_authorization_hides_everything_after_other_schemes_or_bad_syntax() {
        // Basic carries base64("alice:pw").
        assert_eq!(
            mask_authorization(" Basic YWxpY2U6cHc=\r\n"),
            " Basic ***\r\n"
        );
        assert_eq!(
            mask_authorization("Digest username=\"a\", response=\"deadbeef"),
            "Digest ***"
        );
        assert_eq!(mask_authorization("\u{1F600} secret"), "***");
    }

    #[test]
    fn mask_message_masks_authorization_rows_including_folded_ones() {
        let creds = Credentials::new("alice", "s3cret-pw");
        let ch = Challenge::parse("Digest realm=\"r\", nonce=\"n\", qop=auth").unwrap();
        let mut client = DigestClient::new();
        let mut rng = rng();
        let a = client
            .authorize(&ch, &creds, "INVITE", "sip:b@r", b"", &mut rng)
            .unwrap();
        let p = client
            .authorize(&ch, &creds, "INVITE", "sip:b@r", b"", &mut rng)
            .unwrap();
        let (r1, r2) = (
            param(&a, "response").unwrap(),
            param(&p, "response").unwrap(),
        );
        let folded = p.replacen(", response=", ",\r\n\tresponse=", 1);
        let msg = format!(
            "INVITE sip:b@r SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
             authorization : {a}\r\nProxy-Authorization: {folded}\r\n\
             X-Note: Authorization: not a credentials row\r\nContent-Length: 0\r\n\r\n"
        );
        let masked = mask_message(&msg);
        assert!(!masked.contains(&r1) && !masked.contains(&r2), "{masked}");
        assert!(!masked.contains("s3cret-pw"));
        assert_eq!(masked.matches("response=\"***\"").count(), 2);
        assert!(
            masked.contains(",\r\n\tresponse=\"***\""),
            "folding is kept"
        );
        assert!(masked.contains("X-Note: Authorization: not a credentials row\r\n"));
        assert_eq!(
            masked.lines().count(),
            msg.lines().count(),
            "line structure is kept"
        );
        assert!(masked.ends_with("Content-Length: 0\r\n\r\n"));
    }

    #[test]
    fn debug_output_never_shows_the_password() {
        let creds = Credentials::new("alice", "s3cret-pw").with_realm("r");
        let printed = format!("{creds:?}");
        assert!(
            printed.contains("alice") && !printed.contains("s3cret-pw"),
            "{printed}"
        );
        let mut client = DigestClient::new();
        let ch = Challenge::parse("Digest realm=\"r\", nonce=\"n\"").unwrap();
        client
            .authorize(&ch, &creds, "INVITE", "sip:b@r", b"", &mut rng())
            .unwrap();
        assert!(!format!("{client:?}").contains("s3cret-pw"));
    }

    #[test]
    fn forget_and_clear_drop_cached_realms() {
        let creds = Credentials::new("alice", "pw");
        let mut client = DigestClient::new();
        let mut rng = rng();
        for realm in ["a", "b"] {
            let ch = Challenge::parse(&format!("Digest realm={realm}, nonce=n")).unwrap();
            client
                .authorize(&ch, &creds, "REGISTER", "sip:x", b"", &mut rng)
                .unwrap();
        }
        assert!(client.has_realm("a") && client.has_realm("b"));
        client.forget("a");
        assert!(!client.has_realm("a"));
        client.clear();
        assert_eq!(
            client.preemptive(None, "REGISTER", "sip:x", b"", &mut rng),
            None
        );
    }
}
