//! Using an account from the command line: credentials, registering
//! before calls, unregistering on exit, and the registration events.

use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;

use super::config::{Account, AccountArgs, ConfigError};
use super::events::Emitter;
use super::exit::Exit;
use crate::sip::Uri;
use crate::ua::accounts::{RegEvent, RegFailure, RegHandle};
use crate::ua::digest::Credentials;
use crate::ua::driver::RegisterSpec;
use crate::ua::{Phone, PhoneEvent, UaEvent};

/// How long the first registration may take (Timer F is 32 s).
const REGISTER_TIMEOUT: Duration = Duration::from_secs(40);
/// How long removing the binding may take on exit.
pub const UNREGISTER_TIMEOUT: Duration = Duration::from_secs(5);

/// The account chosen by the flags and the config file, if any.
pub fn select(args: &AccountArgs) -> Result<Option<Account>, Exit> {
    args.select().map_err(|e| {
        tracing::error!("{e}");
        config_exit(&e)
    })
}

fn config_exit(e: &ConfigError) -> Exit {
    match e {
        ConfigError::PasswordFile { .. }
        | ConfigError::EmptyPasswordFile { .. }
        | ConfigError::PasswordEnvUnset { .. }
        | ConfigError::NoPassword
        | ConfigError::Prompt { .. } => Exit::AuthFailed,
        _ => Exit::Usage,
    }
}

/// The account's user part (for our Contact).
pub fn aor_user(account: &Account) -> Option<String> {
    Uri::parse(&account.aor).ok()?.as_sip()?.user_unescaped()
}

/// Where calls of this account go first: the outbound proxy, else the
/// registrar (RFC 3261 §8.1.2).
pub fn next_hop(account: &Account) -> String {
    account
        .outbound_proxy
        .clone()
        .unwrap_or_else(|| account.registrar.clone())
}

/// Gives the phone the account's credentials (the password is read now:
/// file, environment or prompt).
pub fn install_credentials(phone: &Phone, account: &Account) -> Result<(), Exit> {
    let secret = account.resolve_password().map_err(|e| {
        tracing::error!("{e}");
        config_exit(&e)
    })?;
    let mut creds = Credentials::new(account.username.clone(), secret.expose().to_string());
    if let Some(r) = &account.realm {
        creds = creds.with_realm(r.clone());
    }
    phone.set_credentials(Some(creds));
    Ok(())
}

/// Prints a registration event.
pub fn emit_registration(emit: &Emitter, account: &Account, event: &RegEvent) {
    let (name, fields, human) = registration_event(account, event);
    emit.emit(name, fields, &human);
}

/// A registration event's name, JSON fields and human text.
pub fn registration_event(
    account: &Account,
    event: &RegEvent,
) -> (&'static str, serde_json::Value, String) {
    let name = match event {
        RegEvent::Registering => "registering",
        RegEvent::Registered { .. } => "registered",
        RegEvent::Refreshed { .. } => "refreshed",
        RegEvent::Unregistered { .. } => "unregistered",
        RegEvent::Failed { .. } => "registration_failed",
    };
    let human = match event {
        RegEvent::Registering => format!("registering {} at {}", account.aor, account.registrar),
        RegEvent::Registered { expires, bindings } | RegEvent::Refreshed { expires, bindings } => {
            let mut s = format!("{name} {} for {expires} s", account.aor);
            for b in bindings {
                s.push_str(&format!(
                    "\n  binding {}{}{}",
                    b.contact,
                    b.expires
                        .map(|e| format!(" expires in {e} s"))
                        .unwrap_or_default(),
                    if b.ours { " (this phone)" } else { "" }
                ));
            }
            s
        }
        RegEvent::Unregistered { bindings } => {
            format!(
                "unregistered {} ({} other binding(s) left)",
                account.aor,
                bindings.len()
            )
        }
        RegEvent::Failed { status, reason, .. } => match status {
            Some(s) => format!("registration of {} failed: {s} {reason}", account.aor),
            None => format!("registration of {} failed: {reason}", account.aor),
        },
    };
    let mut fields = serde_json::to_value(event).unwrap_or_else(|_| json!({}));
    if let Some(m) = fields.as_object_mut() {
        m.insert("account".into(), json!(account.name));
        m.insert("aor".into(), json!(account.aor));
    }
    (name, fields, human)
}

/// The exit code for a failed registration.
pub fn failure_exit(kind: RegFailure) -> Exit {
    match kind {
        RegFailure::Auth => Exit::AuthFailed,
        RegFailure::Timeout | RegFailure::Network => Exit::Network,
        RegFailure::Rejected => Exit::Failed,
    }
}

/// Installs the account's credentials and, when it registers, registers
/// it (the first step of `call` and `answer` with an account). On failure
/// the phone is shut down and the exit code returned.
pub async fn start(
    phone: Phone,
    events: &mut mpsc::UnboundedReceiver<PhoneEvent>,
    account: Option<&Account>,
    emit: &Emitter,
) -> Result<(Phone, Option<RegHandle>), Exit> {
    let Some(a) = account else {
        return Ok((phone, None));
    };
    let result = match install_credentials(&phone, a) {
        Err(e) => Err(e),
        Ok(()) if !a.register => Ok(None),
        Ok(()) => register(&phone, events, a, emit).await.map(Some),
    };
    match result {
        Ok(reg) => Ok((phone, reg)),
        Err(e) => {
            phone.shutdown().await;
            Err(e)
        }
    }
}

/// What registering `account` asks the phone for.
pub fn spec(account: &Account) -> RegisterSpec {
    RegisterSpec {
        aor: account.aor.clone(),
        registrar: account.registrar.clone(),
        outbound_proxy: account.outbound_proxy.clone(),
        expires: account.expires,
        instance: Some(instance_id(&account.aor)),
    }
}

/// Registers and waits for the outcome, printing the events.
pub async fn register(
    phone: &Phone,
    events: &mut mpsc::UnboundedReceiver<PhoneEvent>,
    account: &Account,
    emit: &Emitter,
) -> Result<RegHandle, Exit> {
    let reg = phone.register(spec(account)).await.map_err(|e| {
        tracing::error!("{e}");
        Exit::Network
    })?;
    let wait = async {
        while let Some(ev) = events.recv().await {
            if let PhoneEvent::Ua(UaEvent::Nat(n)) = &ev {
                super::nat::print(emit, n);
            }
            if let PhoneEvent::Ua(UaEvent::Registration { reg: r, event }) = ev {
                if r != reg {
                    continue;
                }
                emit_registration(emit, account, &event);
                match event {
                    RegEvent::Registered { .. } | RegEvent::Refreshed { .. } => return Ok(reg),
                    RegEvent::Failed { kind, .. } => return Err(failure_exit(kind)),
                    _ => {}
                }
            }
        }
        Err(Exit::Internal)
    };
    match tokio::time::timeout(REGISTER_TIMEOUT, wait).await {
        Ok(r) => r,
        Err(_) => {
            tracing::error!("no answer from the registrar");
            Err(Exit::Network)
        }
    }
}

/// Removes the binding and waits (bounded) for the registrar's answer.
pub async fn unregister(
    phone: &Phone,
    events: &mut mpsc::UnboundedReceiver<PhoneEvent>,
    reg: RegHandle,
    account: &Account,
    emit: &Emitter,
) -> bool {
    if !phone.unregister(reg).await {
        return false;
    }
    let wait = async {
        while let Some(ev) = events.recv().await {
            if let PhoneEvent::Ua(UaEvent::Nat(n)) = &ev {
                super::nat::print(emit, n);
            }
            if let PhoneEvent::Ua(UaEvent::Registration { reg: r, event }) = ev {
                if r != reg {
                    continue;
                }
                emit_registration(emit, account, &event);
                match event {
                    RegEvent::Unregistered { .. } => return true,
                    RegEvent::Failed { .. } => return false,
                    _ => {}
                }
            }
        }
        false
    };
    tokio::time::timeout(UNREGISTER_TIMEOUT, wait)
        .await
        .unwrap_or(false)
}

/// RFC 5626 §4.1: the `+sip.instance` of this device for `aor`, a UUID URN
/// that stays the same across restarts: derived (SHA-256) from the
/// machine's id (`/etc/machine-id`, else the host name) and the AOR, as a
/// version-8 UUID (RFC 9562 §5.8).
pub fn instance_id(aor: &str) -> String {
    let machine = [
        "/etc/machine-id",
        "/var/lib/dbus/machine-id",
        "/etc/hostname",
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok())
    .unwrap_or_default();
    instance_id_from(machine.trim(), aor)
}

/// [`instance_id`] for a given machine id.
pub fn instance_id_from(machine: &str, aor: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"sipline instance\0");
    h.update(machine.as_bytes());
    h.update(b"\0");
    h.update(aor.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x80; // version 8
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 9562 variant
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
mod instance_tests {
    use super::*;

    #[test]
    fn instance_id_is_a_stable_uuid_urn_per_machine_and_aor_rfc5626_4_1() {
        let a = instance_id_from("0123456789abcdef", "sip:alice@example.com");
        assert_eq!(
            a,
            instance_id_from("0123456789abcdef", "sip:alice@example.com")
        );
        assert_ne!(
            a,
            instance_id_from("0123456789abcdef", "sip:bob@example.com")
        );
        assert_ne!(
            a,
            instance_id_from("fedcba9876543210", "sip:alice@example.com")
        );
        let uuid = a.strip_prefix("urn:uuid:").expect("a UUID URN");
        let groups: Vec<usize> = uuid.split('-').map(str::len).collect();
        assert_eq!(groups, vec![8, 4, 4, 4, 12]);
        assert!(uuid.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
        assert_eq!(&uuid[14..15], "8", "version 8");
        assert!("89ab".contains(&uuid[19..20]), "RFC 9562 variant");
    }
}
