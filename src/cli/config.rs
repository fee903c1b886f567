//! Account configuration: the TOML config file, the `--account`/`--aor`
//! command-line overrides, and where passwords come from.
//!
//! This module owns reading and validating the file and choosing the
//! account for one run; it never talks to the network. A command
//! flattens [`AccountArgs`] into its clap arguments and calls
//! [`AccountArgs::select`] (or [`load`] and [`select_account`] when it
//! wants the whole [`Config`]); the password is only read when the
//! caller asks for it with [`Account::resolve_password`] or
//! [`PasswordSource::resolve`].
//!
//! # Where the file is
//!
//! `$XDG_CONFIG_HOME/sipline/config.toml`, or `~/.config/sipline/config.toml`
//! when `XDG_CONFIG_HOME` is unset, empty or relative (XDG Base Directory
//! specification). `--config PATH` names another file. A missing default
//! file is an empty config; a missing file named with `--config` is an
//! error.
//!
//! # Format
//!
//! Every section is optional. Accounts are an array of tables
//! (`[[account]]`), each with a `name`, so that their order is kept and
//! a repeated name is reported instead of silently merged. Unknown keys
//! anywhere are errors.
//!
//! ```toml
//! [defaults]
//! account = "alice"             # used when neither --account nor --aor is given
//! codecs = ["opus", "pcmu", "pcma"]  # for accounts without their own `codecs`
//! expires = 600                 # for accounts without their own `expires`
//! stun = "stun.example.net"     # STUN server (host[:port]) for accounts without their own
//! keepalive = 25                # NAT keep-alive interval (s, 0 = off) likewise
//!
//! [contacts]                    # nickname = URI
//! bob = "sip:bob@example.com"
//!
//! [[account]]
//! name = "alice"                           # required, unique
//! aor = "sip:alice@example.com"            # required: SIP URI with a user part
//! username = "alice"                       # default: the AOR's user part
//! realm = "example.com"                    # default: answer any realm
//! registrar = "sip:example.com:5060"       # default: the AOR without its user part
//! outbound_proxy = "sip:proxy.example.com;lr"
//! transport = "udp"                        # only "udp" for now
//! expires = 600                            # seconds, > 0; default [defaults] or 600
//! codecs = ["pcmu", "pcma"]                # default: [defaults] codecs
//! register = true                          # default true
//! password_file = "alice.pass"             # relative to this file's directory
//! stun = "stun.example.net:3478"           # NAT: STUN server; default [defaults] stun
//! keepalive = 25                           # NAT keep-alive seconds; default [defaults] or 25
//!
//! [[account]]
//! name = "work"
//! aor = "sips:a.smith@pbx.example.org"
//! password_env = "SIPLINE_WORK_PASSWORD"
//! register = false
//! ```
//!
//! # Passwords
//!
//! Each account takes at most one of:
//! - `password_file`: the first line of that file (its line end removed);
//! - `password_env`: the value of that environment variable;
//! - `password`: the password itself. It is accepted so that a
//!   single-file setup works, but [`load_file`] adds a
//!   [`ConfigWarning::ReadablePassword`] when the file can be read by its
//!   group or by others (Unix mode bits `0o077`).
//!
//! With none of them, the password is asked for on the terminal (without
//! echo) when it is needed, and only when stdin is a terminal.
//! A password is never taken from the command line: there is no
//! `--password` flag, only `--password-file`. [`Secret`] hides it from
//! `Debug` and `Display`.
//!
//! # Choosing the account ([`select_account`])
//!
//! 1. `--account NAME` picks that account.
//! 2. Otherwise `--aor URI` builds an account from the flags alone; its
//!    password comes from `--password-file`, else `$SIPLINE_PASSWORD`,
//!    else the terminal.
//! 3. Otherwise `[defaults] account`, else the only account of the file.
//! 4. Otherwise no account (`None`): the phone runs without a registrar.
//!
//! Flags override the chosen account's fields for this run. When `--aor`
//! replaces an account's AOR, a `username` or `registrar` that equals the
//! value derived from the old AOR is derived again from the new one.

use std::collections::BTreeMap;
use std::fmt;
use std::io::IsTerminal;
use std::ops::Range;
use std::path::{Path, PathBuf};

use clap::ValueEnum;
use serde::Deserialize;
use toml::Spanned;

use super::args::CodecArg;
use crate::sip::uri::{SipUri, Uri, UriError};

/// Registration expiry when neither the account nor `[defaults]` sets one.
pub const DEFAULT_EXPIRES: u32 = 600;

/// Environment variable holding the password of an account built from
/// `--aor` when no `--password-file` is given.
pub const PASSWORD_ENV: &str = "SIPLINE_PASSWORD";

/// A validated config file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    pub defaults: Defaults,
    /// Nickname → URI (each checked with [`Uri::parse`]).
    pub contacts: BTreeMap<String, String>,
    /// In file order; names are unique.
    pub accounts: Vec<Account>,
    /// Things that are allowed but probably unwanted (not errors).
    pub warnings: Vec<ConfigWarning>,
}

/// The `[defaults]` section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Defaults {
    /// Account used when no `--account` or `--aor` is given; names an
    /// account of the file.
    pub account: Option<String>,
    pub codecs: Option<Vec<CodecArg>>,
    pub expires: Option<u32>,
    /// STUN server for accounts without their own `stun`.
    pub stun: Option<String>,
    /// NAT keep-alive interval (s) for accounts without their own.
    pub keepalive: Option<u32>,
}

/// One SIP account, with the defaults already filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    /// Address of record: a `sip:`/`sips:` URI with a user part.
    pub aor: String,
    /// Digest authentication user name (RFC 3261 §22.4).
    pub username: String,
    /// Only answer challenges for this realm (RFC 3261 §22.1); `None`:
    /// any realm.
    pub realm: Option<String>,
    /// Request-URI of REGISTER (RFC 3261 §10.2: the AOR's domain, no user).
    pub registrar: String,
    /// Loose-routing proxy every request goes through (RFC 3261 §8.1.2).
    pub outbound_proxy: Option<String>,
    pub transport: Transport,
    /// Requested registration expiry in seconds (RFC 3261 §10.2.1), > 0.
    pub expires: u32,
    /// Codecs in order of preference; `None`: the command's default.
    pub codecs: Option<Vec<CodecArg>>,
    /// Whether the phone registers this account.
    pub register: bool,
    pub password: PasswordSource,
    /// STUN server (`host[:port]`) for NAT discovery (RFC 8489).
    pub stun: Option<String>,
    /// NAT keep-alive interval in seconds (0: none; `None`: the default).
    pub keepalive: Option<u32>,
}

/// SIP transport of an account.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Transport {
    #[default]
    Udp,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Transport::Udp => f.write_str("udp"),
        }
    }
}

/// Where an account's password comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// First line of this file.
    File(PathBuf),
    /// Value of this environment variable.
    Env(String),
    /// Written in the config file.
    Literal(Secret),
    /// Asked on the terminal when needed.
    Prompt,
}

/// A password. `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The password itself, for computing a digest response.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Something allowed in a config file but probably unwanted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigWarning {
    #[error(
        "{}: account {account:?} has its password in a file readable by others \
         (mode {mode:o}); use password_file or password_env, or chmod 600",
        path.display()
    )]
    ReadablePassword {
        path: PathBuf,
        account: String,
        mode: u32,
    },
}

/// A 1-based line and column (in characters) in the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// What is wrong with one value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldProblem {
    #[error("{value:?} is not a URI: {source}")]
    BadUri {
        value: String,
        source: Box<UriError>,
    },
    #[error("{value:?} is not a sip: or sips: URI")]
    NotSip { value: String },
    #[error("{value:?} has no user part")]
    NoUser { value: String },
    #[error("must be greater than 0")]
    Zero,
    #[error("transport {value:?} is not supported (only \"udp\")")]
    UnsupportedTransport { value: String },
    #[error("unknown codec {value:?} (known: opus, pcmu, pcma)")]
    UnknownCodec { value: String },
    #[error("must not be empty")]
    Empty,
    #[error("{value:?} is not host[:port]")]
    NotHostPort { value: String },
    #[error("names no account (known: {})", known.join(", "))]
    NoSuchAccount { known: Vec<String> },
}

/// Why the configuration or a password could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {} not found", path.display())]
    NotFound { path: PathBuf },
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Bad TOML, a value of the wrong type or a missing key.
    #[error("{}{}{}: {reason}", path.display(), at(pos), field_suffix(field))]
    Parse {
        path: PathBuf,
        pos: Option<Pos>,
        /// Dotted key, e.g. `account.aor`, when known.
        field: Option<String>,
        /// What the TOML reader said.
        reason: String,
    },
    #[error(
        "{}{}: unknown field `{field}`{}",
        path.display(), at(pos),
        expected.as_ref().map(|e| format!(" ({e})")).unwrap_or_default()
    )]
    UnknownField {
        path: PathBuf,
        pos: Option<Pos>,
        /// Dotted when the table is known, e.g. `account.passwd`.
        field: String,
        /// The reader's list of allowed keys, e.g. "expected one of `name`, `aor`".
        expected: Option<String>,
    },
    /// A value that parsed but makes no sense.
    #[error("{}{}{}: field `{field}`: {problem}", path.display(), at(pos), account_suffix(account))]
    Invalid {
        path: PathBuf,
        pos: Option<Pos>,
        /// `None` for `[defaults]` and `[contacts]`.
        account: Option<String>,
        field: String,
        problem: FieldProblem,
    },
    #[error("{}{}: account {name:?} is defined twice (first at {first})", path.display(), at(pos))]
    DuplicateAccount {
        path: PathBuf,
        name: String,
        pos: Option<Pos>,
        first: Pos,
    },
    #[error(
        "{}{}: account {account:?} has more than one of {}; keep one",
        path.display(), at(pos), fields.join(", ")
    )]
    ConflictingPasswords {
        path: PathBuf,
        pos: Option<Pos>,
        account: String,
        fields: Vec<&'static str>,
    },
    #[error("no account named {name:?} (known: {})", list_or_none(known))]
    UnknownAccount { name: String, known: Vec<String> },
    #[error("{flag} needs --account NAME or --aor URI")]
    FlagNeedsAccount { flag: &'static str },
    #[error("{flag}: {problem}")]
    BadFlag {
        flag: &'static str,
        problem: FieldProblem,
    },
    #[error("cannot read password file {}: {source}", path.display())]
    PasswordFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("password file {} is empty", path.display())]
    EmptyPasswordFile { path: PathBuf },
    #[error("environment variable {var} is not set")]
    PasswordEnvUnset { var: String },
    #[error("no password: give password_file or password_env")]
    NoPassword,
    #[error("cannot read the password from the terminal: {source}")]
    Prompt { source: std::io::Error },
}

fn at(pos: &Option<Pos>) -> String {
    pos.map(|p| format!(", {p}")).unwrap_or_default()
}

fn field_suffix(field: &Option<String>) -> String {
    field
        .as_ref()
        .map(|f| format!(" (field `{f}`)"))
        .unwrap_or_default()
}

fn account_suffix(account: &Option<String>) -> String {
    account
        .as_ref()
        .map(|a| format!(": account {a:?}"))
        .unwrap_or_default()
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

// ---------------------------------------------------------------------
// Locating and loading the file

/// The default config file path from an environment lookup:
/// `$XDG_CONFIG_HOME/sipline/config.toml`, else
/// `$HOME/.config/sipline/config.toml`; `None` without either.
pub fn default_path_with(env: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    // XDG Base Directory spec: a relative XDG_CONFIG_HOME is invalid and ignored.
    let base = env("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            env("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(".config"))
        })?;
    Some(base.join("sipline").join("config.toml"))
}

/// [`default_path_with`] over the process environment.
pub fn default_path() -> Option<PathBuf> {
    default_path_with(|k| std::env::var(k).ok())
}

/// Loads `explicit` (which must exist), or else the default file (an
/// empty config when it does not exist or there is no home directory).
pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
    load_with(explicit, |k| std::env::var(k).ok())
}

/// [`load`] with an environment lookup for the default path.
pub fn load_with(
    explicit: Option<&Path>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    match explicit {
        Some(path) => load_file(path),
        None => match default_path_with(env) {
            Some(path) if path.exists() => load_file(&path),
            _ => Ok(Config::default()),
        },
    }
}

/// Reads and validates one file; adds a warning when it holds a literal
/// password and its mode lets its group or others read it.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            ConfigError::NotFound {
                path: path.to_path_buf(),
            }
        } else {
            ConfigError::Read {
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    let mut cfg = parse(&text, path)?;
    if let Some(mode) = group_or_world_readable(path) {
        for a in &cfg.accounts {
            if matches!(a.password, PasswordSource::Literal(_)) {
                cfg.warnings.push(ConfigWarning::ReadablePassword {
                    path: path.to_path_buf(),
                    account: a.name.clone(),
                    mode,
                });
            }
        }
    }
    Ok(cfg)
}

#[cfg(unix)]
fn group_or_world_readable(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then_some(mode)
}

#[cfg(not(unix))]
fn group_or_world_readable(_path: &Path) -> Option<u32> {
    None
}

/// Parses and validates config text. `path` names the file in errors,
/// and relative `password_file` paths are taken from its directory.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let raw: RawFile = toml::from_str(text).map_err(|e| toml_error(&e, text, path))?;
    Validator { text, path }.config(raw)
}

// ---------------------------------------------------------------------
// Raw file shape (serde); no Debug so that a literal password never prints.

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    defaults: RawDefaults,
    #[serde(default)]
    contacts: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    account: Vec<RawAccount>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    account: Option<Spanned<String>>,
    codecs: Option<Vec<Spanned<String>>>,
    expires: Option<Spanned<u32>>,
    stun: Option<Spanned<String>>,
    keepalive: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccount {
    name: Spanned<String>,
    aor: Spanned<String>,
    username: Option<Spanned<String>>,
    realm: Option<Spanned<String>>,
    registrar: Option<Spanned<String>>,
    outbound_proxy: Option<Spanned<String>>,
    transport: Option<Spanned<String>>,
    expires: Option<Spanned<u32>>,
    codecs: Option<Vec<Spanned<String>>>,
    register: Option<bool>,
    password_file: Option<Spanned<String>>,
    password_env: Option<Spanned<String>>,
    password: Option<Spanned<String>>,
    stun: Option<Spanned<String>>,
    keepalive: Option<Spanned<u32>>,
}

/// Turns a TOML reader error into [`ConfigError::Parse`] or
/// [`ConfigError::UnknownField`], with its byte span as line:column.
fn toml_error(e: &toml::de::Error, text: &str, path: &Path) -> ConfigError {
    let pos = e.span().map(|s| line_col(text, s.start));
    let reason = e.message().trim().to_string();
    // serde's wording: "unknown field `x`, expected one of ...".
    if let Some(rest) = reason.strip_prefix("unknown field `")
        && let Some((name, after)) = rest.split_once('`')
    {
        // Prefer the dotted path (`account.passwd`) when the line shows it.
        let field = pos
            .and_then(|p| key_at_line(text, p.line))
            .filter(|k| k == name || k.ends_with(&format!(".{name}")))
            .unwrap_or_else(|| name.to_string());
        let expected = after.trim_start_matches(',').trim();
        return ConfigError::UnknownField {
            path: path.to_path_buf(),
            pos,
            field,
            expected: (!expected.is_empty()).then(|| expected.to_string()),
        };
    }
    let field = match reason.strip_prefix("missing field `") {
        Some(rest) => rest.split_once('`').map(|(f, _)| f.to_string()),
        None => pos.and_then(|p| key_at_line(text, p.line)),
    };
    ConfigError::Parse {
        path: path.to_path_buf(),
        pos,
        field,
        reason,
    }
}

/// 1-based line and column (counted in characters) of byte `offset`; an
/// offset past the end is the position just after the last character, and
/// one inside a multi-byte character is that character's position.
pub(crate) fn line_col(text: &str, offset: usize) -> Pos {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Pos {
        line: saturate(before.matches('\n').count() + 1),
        column: saturate(before[line_start..].chars().count() + 1),
    }
}

fn saturate(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The dotted key assigned on 1-based `line` (`key = ...`), prefixed with
/// the table header above it, e.g. `account.aor`.
fn key_at_line(text: &str, line: u32) -> Option<String> {
    let line = usize::try_from(line).ok()?;
    let lines: Vec<&str> = text.lines().collect();
    let here = lines.get(line.checked_sub(1)?)?;
    let (key, _) = here.split_once('=')?;
    let key = key.trim();
    let is_key = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
    if !is_key {
        return None;
    }
    let table = lines[..line - 1].iter().rev().find_map(|l| {
        let l = l.trim();
        let inner = l.strip_prefix('[')?;
        let inner = inner.split(']').next()?;
        Some(inner.trim_start_matches('[').trim().to_string())
    });
    Some(match table {
        Some(t) if !t.is_empty() => format!("{t}.{key}"),
        _ => key.to_string(),
    })
}

// ---------------------------------------------------------------------
// Validation

struct Validator<'a> {
    text: &'a str,
    path: &'a Path,
}

impl Validator<'_> {
    fn pos(&self, span: Range<usize>) -> Option<Pos> {
        Some(line_col(self.text, span.start))
    }

    fn invalid(
        &self,
        span: Range<usize>,
        account: Option<&str>,
        field: impl Into<String>,
        problem: FieldProblem,
    ) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            pos: self.pos(span),
            account: account.map(str::to_string),
            field: field.into(),
            problem,
        }
    }

    fn config(&self, raw: RawFile) -> Result<Config, ConfigError> {
        let defaults = Defaults {
            account: raw.defaults.account.as_ref().map(|a| a.get_ref().clone()),
            codecs: match &raw.defaults.codecs {
                Some(c) => Some(self.codecs(c, None)?),
                None => None,
            },
            expires: match &raw.defaults.expires {
                Some(e) => Some(self.expires(e, None)?),
                None => None,
            },
            stun: match &raw.defaults.stun {
                Some(s) => Some(self.stun(s, None, "defaults.stun")?),
                None => None,
            },
            keepalive: raw.defaults.keepalive.as_ref().map(|k| *k.get_ref()),
        };
        let mut contacts = BTreeMap::new();
        for (nick, uri) in raw.contacts {
            Uri::parse(uri.get_ref()).map_err(|source| {
                self.invalid(
                    uri.span(),
                    None,
                    format!("contacts.{nick}"),
                    FieldProblem::BadUri {
                        value: uri.get_ref().clone(),
                        source: Box::new(source),
                    },
                )
            })?;
            contacts.insert(nick, uri.into_inner());
        }
        let mut accounts: Vec<Account> = Vec::new();
        let mut first_seen: BTreeMap<String, Pos> = BTreeMap::new();
        for ra in raw.account {
            let name = ra.name.get_ref().clone();
            let here = line_col(self.text, ra.name.span().start);
            if let Some(first) = first_seen.get(&name) {
                return Err(ConfigError::DuplicateAccount {
                    path: self.path.to_path_buf(),
                    name,
                    pos: Some(here),
                    first: *first,
                });
            }
            first_seen.insert(name, here);
            accounts.push(self.account(ra, &defaults)?);
        }
        if let Some(wanted) = &raw.defaults.account
            && !accounts.iter().any(|a| &a.name == wanted.get_ref())
        {
            return Err(self.invalid(
                wanted.span(),
                None,
                "defaults.account",
                FieldProblem::NoSuchAccount {
                    known: accounts.iter().map(|a| a.name.clone()).collect(),
                },
            ));
        }
        Ok(Config {
            defaults,
            contacts,
            accounts,
            warnings: Vec::new(),
        })
    }

    fn account(&self, ra: RawAccount, defaults: &Defaults) -> Result<Account, ConfigError> {
        let name = ra.name.get_ref().clone();
        if name.trim().is_empty() {
            return Err(self.invalid(ra.name.span(), None, "name", FieldProblem::Empty));
        }
        let acct = Some(name.as_str());
        let aor =
            parse_aor(ra.aor.get_ref()).map_err(|p| self.invalid(ra.aor.span(), acct, "aor", p))?;
        let registrar = match &ra.registrar {
            Some(r) => {
                parse_sip(r.get_ref()).map_err(|p| self.invalid(r.span(), acct, "registrar", p))?;
                r.get_ref().clone()
            }
            None => registrar_for(&aor),
        };
        let outbound_proxy = match &ra.outbound_proxy {
            Some(p) => {
                parse_sip(p.get_ref())
                    .map_err(|e| self.invalid(p.span(), acct, "outbound_proxy", e))?;
                Some(p.get_ref().clone())
            }
            None => None,
        };
        let transport = match &ra.transport {
            Some(t) => parse_transport(t.get_ref())
                .map_err(|p| self.invalid(t.span(), acct, "transport", p))?,
            None => Transport::Udp,
        };
        let expires = match &ra.expires {
            Some(e) => self.expires(e, acct)?,
            None => defaults.expires.unwrap_or(DEFAULT_EXPIRES),
        };
        let codecs = match &ra.codecs {
            Some(c) => Some(self.codecs(c, acct)?),
            None => defaults.codecs.clone(),
        };
        let username = match &ra.username {
            Some(u) if u.get_ref().is_empty() => {
                return Err(self.invalid(u.span(), acct, "username", FieldProblem::Empty));
            }
            Some(u) => u.get_ref().clone(),
            None => aor_user(&aor),
        };
        let password = self.password(&ra, &name)?;
        let stun = match &ra.stun {
            Some(s) => Some(self.stun(s, acct, "stun")?),
            None => defaults.stun.clone(),
        };
        let keepalive = ra
            .keepalive
            .as_ref()
            .map(|k| *k.get_ref())
            .or(defaults.keepalive);
        Ok(Account {
            stun,
            keepalive,
            aor: ra.aor.into_inner(),
            username,
            realm: ra.realm.map(Spanned::into_inner),
            registrar,
            outbound_proxy,
            transport,
            expires,
            codecs,
            register: ra.register.unwrap_or(true),
            password,
            name,
        })
    }

    fn password(&self, ra: &RawAccount, name: &str) -> Result<PasswordSource, ConfigError> {
        let given: Vec<(&'static str, &Spanned<String>)> = [
            ("password_file", &ra.password_file),
            ("password_env", &ra.password_env),
            ("password", &ra.password),
        ]
        .into_iter()
        .filter_map(|(f, v)| v.as_ref().map(|v| (f, v)))
        .collect();
        match given.as_slice() {
            [] => Ok(PasswordSource::Prompt),
            [(field, value)] => {
                let v = value.get_ref();
                if v.is_empty() && *field != "password" {
                    return Err(self.invalid(
                        value.span(),
                        Some(name),
                        *field,
                        FieldProblem::Empty,
                    ));
                }
                Ok(match *field {
                    "password_file" => PasswordSource::File(self.relative_to_file(v)),
                    "password_env" => PasswordSource::Env(v.clone()),
                    _ => PasswordSource::Literal(Secret::new(v.clone())),
                })
            }
            [_, (_, second), ..] => Err(ConfigError::ConflictingPasswords {
                path: self.path.to_path_buf(),
                pos: self.pos(second.span()),
                account: name.to_string(),
                fields: given.iter().map(|(f, _)| *f).collect(),
            }),
        }
    }

    /// A relative `password_file` is taken from the config file's directory.
    fn relative_to_file(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        match self.path.parent() {
            Some(dir) if p.is_relative() => dir.join(p),
            _ => p.to_path_buf(),
        }
    }

    /// A STUN server: `host[:port]`, not empty.
    fn stun(
        &self,
        s: &Spanned<String>,
        account: Option<&str>,
        field: &str,
    ) -> Result<String, ConfigError> {
        let v = s.get_ref().trim();
        if v.is_empty() {
            return Err(self.invalid(s.span(), account, field, FieldProblem::Empty));
        }
        if v.contains(char::is_whitespace) || v.contains('/') || v.contains('@') {
            let value = v.to_string();
            return Err(self.invalid(
                s.span(),
                account,
                field,
                FieldProblem::NotHostPort { value },
            ));
        }
        Ok(v.to_string())
    }

    fn expires(&self, e: &Spanned<u32>, account: Option<&str>) -> Result<u32, ConfigError> {
        if *e.get_ref() == 0 {
            let field = if account.is_some() {
                "expires"
            } else {
                "defaults.expires"
            };
            return Err(self.invalid(e.span(), account, field, FieldProblem::Zero));
        }
        Ok(*e.get_ref())
    }

    fn codecs(
        &self,
        list: &[Spanned<String>],
        account: Option<&str>,
    ) -> Result<Vec<CodecArg>, ConfigError> {
        let field = if account.is_some() {
            "codecs"
        } else {
            "defaults.codecs"
        };
        list.iter()
            .map(|c| {
                CodecArg::from_str(c.get_ref(), true).map_err(|_| {
                    self.invalid(
                        c.span(),
                        account,
                        field,
                        FieldProblem::UnknownCodec {
                            value: c.get_ref().clone(),
                        },
                    )
                })
            })
            .collect()
    }
}

fn parse_sip(s: &str) -> Result<SipUri, FieldProblem> {
    match Uri::parse(s) {
        Ok(Uri::Sip(u)) => Ok(u),
        Ok(_) => Err(FieldProblem::NotSip {
            value: s.to_string(),
        }),
        Err(source) => Err(FieldProblem::BadUri {
            value: s.to_string(),
            source: Box::new(source),
        }),
    }
}

fn parse_aor(s: &str) -> Result<SipUri, FieldProblem> {
    let u = parse_sip(s)?;
    if u.user.is_none() {
        return Err(FieldProblem::NoUser {
            value: s.to_string(),
        });
    }
    Ok(u)
}

fn parse_transport(s: &str) -> Result<Transport, FieldProblem> {
    if s.eq_ignore_ascii_case("udp") {
        Ok(Transport::Udp)
    } else {
        Err(FieldProblem::UnsupportedTransport {
            value: s.to_string(),
        })
    }
}

/// The AOR's user part, unescaped (RFC 3261 §19.1.2).
fn aor_user(aor: &SipUri) -> String {
    aor.user_unescaped().unwrap_or_default()
}

/// RFC 3261 §10.2: the REGISTER Request-URI is the AOR's domain without
/// its user part; the scheme (sip/sips) and any port are kept.
fn registrar_for(aor: &SipUri) -> String {
    let mut r = SipUri::new(None, aor.host.clone(), aor.port);
    r.secure = aor.secure;
    r.to_string()
}

// ---------------------------------------------------------------------
// Passwords

impl PasswordSource {
    /// Reads the password, using the process environment.
    pub fn resolve(&self) -> Result<Secret, ConfigError> {
        self.resolve_with(|k| std::env::var(k).ok())
    }

    /// Reads the password, looking environment variables up with `env`.
    /// A file gives its first line without its line end; `Prompt` asks on
    /// the terminal only when stdin is one.
    pub fn resolve_with(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Secret, ConfigError> {
        self.resolve_prompting(env, "SIP password: ")
    }

    fn resolve_prompting(
        &self,
        env: impl Fn(&str) -> Option<String>,
        prompt: &str,
    ) -> Result<Secret, ConfigError> {
        match self {
            PasswordSource::File(path) => read_password_file(path),
            PasswordSource::Env(var) => env(var)
                .map(Secret::new)
                .ok_or_else(|| ConfigError::PasswordEnvUnset { var: var.clone() }),
            PasswordSource::Literal(s) => Ok(s.clone()),
            PasswordSource::Prompt => prompt_password(prompt),
        }
    }
}

fn read_password_file(path: &Path) -> Result<Secret, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::PasswordFile {
        path: path.to_path_buf(),
        source,
    })?;
    let first = text.split('\n').next().unwrap_or_default();
    let first = first.strip_suffix('\r').unwrap_or(first);
    if first.is_empty() {
        return Err(ConfigError::EmptyPasswordFile {
            path: path.to_path_buf(),
        });
    }
    Ok(Secret::new(first))
}

fn prompt_password(prompt: &str) -> Result<Secret, ConfigError> {
    if !std::io::stdin().is_terminal() {
        return Err(ConfigError::NoPassword);
    }
    rpassword::prompt_password(prompt)
        .map(Secret::new)
        .map_err(|source| ConfigError::Prompt { source })
}

impl Account {
    /// Reads this account's password (prompting with its AOR if needed).
    pub fn resolve_password(&self) -> Result<Secret, ConfigError> {
        self.password.resolve_prompting(
            |k| std::env::var(k).ok(),
            &format!("Password for {}: ", self.aor),
        )
    }
}

// ---------------------------------------------------------------------
// Command line

/// Flags choosing or adjusting the account for one run.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct AccountOverrides {
    /// Use this account of the config file.
    #[arg(long, value_name = "NAME")]
    pub account: Option<String>,
    /// Address of record, e.g. sip:alice@example.com (without --account:
    /// an account made from the flags alone).
    #[arg(long, value_name = "URI")]
    pub aor: Option<String>,
    /// Authentication user name (default: the AOR's user part).
    #[arg(long, value_name = "NAME")]
    pub username: Option<String>,
    /// Registrar URI (default: the AOR's domain).
    #[arg(long, value_name = "URI")]
    pub registrar: Option<String>,
    /// Outbound proxy URI, e.g. "sip:proxy.example.com;lr".
    #[arg(long, value_name = "URI")]
    pub outbound_proxy: Option<String>,
    /// Read the password from the first line of this file (without it:
    /// $SIPLINE_PASSWORD, then a prompt).
    #[arg(long, value_name = "PATH")]
    pub password_file: Option<PathBuf>,
    /// Requested registration expiry in seconds.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u32).range(1..))]
    pub expires: Option<u32>,
}

/// Account flags for commands that register or call through a
/// registrar: `#[command(flatten)]` this. There is deliberately no
/// `--password` flag.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct AccountArgs {
    /// Config file (default: $XDG_CONFIG_HOME/sipline/config.toml or
    /// ~/.config/sipline/config.toml).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub overrides: AccountOverrides,
    #[command(flatten)]
    pub nat: super::nat::NatArgs,
}

impl AccountArgs {
    /// Loads the config file and picks the account; warnings about the
    /// file are logged.
    pub fn select(&self) -> Result<Option<Account>, ConfigError> {
        let cfg = load(self.config.as_deref())?;
        for w in &cfg.warnings {
            tracing::warn!("{w}");
        }
        select_account(&cfg, &self.overrides)
    }
}

/// Picks the account for this run (see the module doc, "Choosing the
/// account"), using the process environment for `SIPLINE_PASSWORD`.
pub fn select_account(cfg: &Config, o: &AccountOverrides) -> Result<Option<Account>, ConfigError> {
    select_account_with(cfg, o, |k| std::env::var(k).ok())
}

/// [`select_account`] with an environment lookup.
pub fn select_account_with(
    cfg: &Config,
    o: &AccountOverrides,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<Account>, ConfigError> {
    let base = if let Some(name) = &o.account {
        Some(find_account(cfg, name)?.clone())
    } else if let Some(aor) = &o.aor {
        return ad_hoc_account(cfg, aor, o, env).map(Some);
    } else if let Some(name) = &cfg.defaults.account {
        Some(find_account(cfg, name)?.clone())
    } else if let [only] = cfg.accounts.as_slice() {
        Some(only.clone())
    } else {
        None
    };
    match base {
        Some(account) => apply_overrides(account, o).map(Some),
        None => match first_flag(o) {
            Some(flag) => Err(ConfigError::FlagNeedsAccount { flag }),
            None => Ok(None),
        },
    }
}

fn find_account<'a>(cfg: &'a Config, name: &str) -> Result<&'a Account, ConfigError> {
    cfg.accounts
        .iter()
        .find(|a| a.name == name)
        .ok_or_else(|| ConfigError::UnknownAccount {
            name: name.to_string(),
            known: cfg.accounts.iter().map(|a| a.name.clone()).collect(),
        })
}

/// The first account-changing flag given (used when there is no account).
fn first_flag(o: &AccountOverrides) -> Option<&'static str> {
    [
        ("--username", o.username.is_some()),
        ("--registrar", o.registrar.is_some()),
        ("--outbound-proxy", o.outbound_proxy.is_some()),
        ("--password-file", o.password_file.is_some()),
        ("--expires", o.expires.is_some()),
    ]
    .into_iter()
    .find_map(|(f, given)| given.then_some(f))
}

fn ad_hoc_account(
    cfg: &Config,
    aor: &str,
    o: &AccountOverrides,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Account, ConfigError> {
    let uri = parse_aor(aor).map_err(|problem| ConfigError::BadFlag {
        flag: "--aor",
        problem,
    })?;
    let password = match &o.password_file {
        Some(p) => PasswordSource::File(p.clone()),
        None if env(PASSWORD_ENV).is_some() => PasswordSource::Env(PASSWORD_ENV.to_string()),
        None => PasswordSource::Prompt,
    };
    let account = Account {
        name: aor.to_string(),
        aor: aor.to_string(),
        username: aor_user(&uri),
        realm: None,
        registrar: registrar_for(&uri),
        outbound_proxy: None,
        transport: Transport::Udp,
        expires: cfg.defaults.expires.unwrap_or(DEFAULT_EXPIRES),
        codecs: cfg.defaults.codecs.clone(),
        register: true,
        password,
        stun: cfg.defaults.stun.clone(),
        keepalive: cfg.defaults.keepalive,
    };
    // The AOR is already set; the other flags apply as to any account.
    let rest = AccountOverrides {
        aor: None,
        ..o.clone()
    };
    apply_overrides(account, &rest)
}

fn apply_overrides(mut a: Account, o: &AccountOverrides) -> Result<Account, ConfigError> {
    if let Some(aor) = &o.aor {
        let new = parse_aor(aor).map_err(|problem| ConfigError::BadFlag {
            flag: "--aor",
            problem,
        })?;
        if let Ok(old) = parse_aor(&a.aor) {
            if a.username == aor_user(&old) {
                a.username = aor_user(&new);
            }
            if a.registrar == registrar_for(&old) {
                a.registrar = registrar_for(&new);
            }
        }
        a.aor = aor.clone();
    }
    if let Some(u) = &o.username {
        if u.is_empty() {
            return Err(ConfigError::BadFlag {
                flag: "--username",
                problem: FieldProblem::Empty,
            });
        }
        a.username = u.clone();
    }
    if let Some(r) = &o.registrar {
        parse_sip(r).map_err(|problem| ConfigError::BadFlag {
            flag: "--registrar",
            problem,
        })?;
        a.registrar = r.clone();
    }
    if let Some(p) = &o.outbound_proxy {
        parse_sip(p).map_err(|problem| ConfigError::BadFlag {
            flag: "--outbound-proxy",
            problem,
        })?;
        a.outbound_proxy = Some(p.clone());
    }
    if let Some(p) = &o.password_file {
        a.password = PasswordSource::File(p.clone());
    }
    if let Some(e) = o.expires {
        if e == 0 {
            return Err(ConfigError::BadFlag {
                flag: "--expires",
                problem: FieldProblem::Zero,
            });
        }
        a.expires = e;
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_of_first_byte_is_line_1_column_1() {
        assert_eq!(line_col("abc", 0), Pos { line: 1, column: 1 });
    }

    #[test]
    fn line_col_counts_newlines_before_the_offset() {
        let t = "a = 1\nbb = 2\nccc = 3\n";
        assert_eq!(line_col(t, 6), Pos { line: 2, column: 1 });
        assert_eq!(line_col(t, 9), Pos { line: 2, column: 4 });
        assert_eq!(line_col(t, 14), Pos { line: 3, column: 2 });
    }

    #[test]
    fn line_col_of_a_newline_is_on_the_line_it_ends() {
        let t = "a\nb = \"x\n";
        assert_eq!(line_col(t, 1), Pos { line: 1, column: 2 });
        assert_eq!(line_col(t, 8), Pos { line: 2, column: 7 });
    }

    #[test]
    fn line_col_counts_columns_in_characters_not_bytes() {
        let t = "n = \"é€\" x";
        // 'x' is at byte 4+1+2+3+1+1 = 12, character column 10.
        assert_eq!(
            line_col(t, 12),
            Pos {
                line: 1,
                column: 10
            }
        );
    }

    #[test]
    fn line_col_inside_a_multibyte_character_is_that_character() {
        let t = "€x";
        assert_eq!(line_col(t, 1), Pos { line: 1, column: 1 });
        assert_eq!(line_col(t, 2), Pos { line: 1, column: 1 });
        assert_eq!(line_col(t, 3), Pos { line: 1, column: 2 });
    }

    #[test]
    fn line_col_past_the_end_is_just_after_the_last_character() {
        assert_eq!(line_col("ab\ncd", 99), Pos { line: 2, column: 3 });
        assert_eq!(line_col("", 5), Pos { line: 1, column: 1 });
    }

    #[test]
    fn line_col_treats_crlf_as_one_line_end() {
        let t = "a\r\nb";
        assert_eq!(line_col(t, 3), Pos { line: 2, column: 1 });
    }

    #[test]
    fn key_at_line_prefixes_the_table_header() {
        let t = "[defaults]\nexpires = 1\n[[account]]\nname = \"a\"\naor = \"x\n";
        assert_eq!(key_at_line(t, 2).as_deref(), Some("defaults.expires"));
        assert_eq!(key_at_line(t, 5).as_deref(), Some("account.aor"));
        assert_eq!(key_at_line(t, 3), None);
        assert_eq!(key_at_line(t, 99), None);
    }

    #[test]
    fn registrar_defaults_to_the_aor_domain_and_port_without_user() {
        let u = parse_aor("sips:alice@Example.com:5061;transport=tcp").unwrap();
        assert_eq!(registrar_for(&u), "sips:example.com:5061");
    }

    #[test]
    fn secret_prints_stars() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        assert_eq!(s.expose(), "hunter2");
    }
}
