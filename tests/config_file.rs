//! The account config file, the account-choosing flags and password
//! sources, through the public API of `sipline::cli::config`.

use std::path::{Path, PathBuf};

use clap::Parser;
use sipline::cli::args::CodecArg;
use sipline::cli::config::{
    self, Account, AccountArgs, AccountOverrides, Config, ConfigError, ConfigWarning, FieldProblem,
    PasswordSource, Secret, Transport,
};

const TWO_ACCOUNTS: &str = r#"# sipline test config
[defaults]
codecs = ["pcma"]
expires = 300

[contacts]
bob = "sip:bob@example.com"

[[account]]
name = "alice"
aor = "sip:alice@example.com"
realm = "example.com"
outbound_proxy = "sip:proxy.example.com;lr"
password_file = "alice.pass"

[[account]]
name = "work"
aor = "sips:a.smith@pbx.example.org:5061"
username = "asmith"
registrar = "sips:registrar.example.org"
transport = "UDP"
expires = 3600
codecs = ["pcmu", "pcma"]
register = false
password_env = "SIPLINE_TEST_WORK_PASSWORD"
"#;

/// Writes `text` as `config.toml` in a fresh directory.
fn write_config(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).expect("write config");
    (dir, path)
}

fn load_text(text: &str) -> (tempfile::TempDir, PathBuf, Result<Config, ConfigError>) {
    let (dir, path) = write_config(text);
    let r = config::load(Some(&path));
    (dir, path, r)
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn account<'a>(cfg: &'a Config, name: &str) -> &'a Account {
    cfg.accounts
        .iter()
        .find(|a| a.name == name)
        .expect("account present")
}

#[test]
fn two_accounts_load_in_file_order_with_fields_and_defaults() {
    let (dir, _path, cfg) = load_text(TWO_ACCOUNTS);
    let cfg = cfg.expect("valid config");
    let names: Vec<&str> = cfg.accounts.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["alice", "work"]);
    assert_eq!(cfg.contacts["bob"], "sip:bob@example.com");

    let alice = account(&cfg, "alice");
    assert_eq!(alice.aor, "sip:alice@example.com");
    assert_eq!(alice.username, "alice", "username defaults to the AOR user");
    assert_eq!(alice.realm.as_deref(), Some("example.com"));
    assert_eq!(
        alice.registrar, "sip:example.com",
        "registrar defaults to the AOR domain"
    );
    assert_eq!(
        alice.outbound_proxy.as_deref(),
        Some("sip:proxy.example.com;lr")
    );
    assert_eq!(alice.transport, Transport::Udp);
    assert_eq!(alice.expires, 300, "expires from [defaults]");
    assert_eq!(
        alice.codecs,
        Some(vec![CodecArg::Pcma]),
        "codecs from [defaults]"
    );
    assert!(alice.register, "register defaults to true");
    assert_eq!(
        alice.password,
        PasswordSource::File(dir.path().join("alice.pass")),
        "a relative password_file is taken from the config file's directory"
    );

    let work = account(&cfg, "work");
    assert_eq!(work.username, "asmith");
    assert_eq!(work.registrar, "sips:registrar.example.org");
    assert_eq!(work.realm, None);
    assert_eq!(work.expires, 3600);
    assert_eq!(work.codecs, Some(vec![CodecArg::Pcmu, CodecArg::Pcma]));
    assert!(!work.register);
    assert_eq!(
        work.password,
        PasswordSource::Env("SIPLINE_TEST_WORK_PASSWORD".into())
    );
}

#[test]
fn account_without_defaults_gets_expires_600_and_no_codecs() {
    let (_d, _p, cfg) = load_text("[[account]]\nname = \"a\"\naor = \"sip:a@b.example:5070\"\n");
    let cfg = cfg.expect("valid config");
    let a = &cfg.accounts[0];
    assert_eq!(a.expires, 600);
    assert_eq!(a.codecs, None);
    assert_eq!(a.registrar, "sip:b.example:5070", "the AOR's port is kept");
    assert_eq!(a.password, PasswordSource::Prompt);
}

#[test]
fn password_from_file_is_its_first_line_without_line_end() {
    let (dir, _path, cfg) = load_text(TWO_ACCOUNTS);
    std::fs::write(dir.path().join("alice.pass"), "s3cret\r\nsecond line\n").expect("write");
    let cfg = cfg.expect("valid config");
    let pw = account(&cfg, "alice")
        .password
        .resolve_with(no_env)
        .expect("password");
    assert_eq!(pw.expose(), "s3cret");
}

#[test]
fn missing_password_file_is_an_error_naming_it() {
    let (dir, _path, cfg) = load_text(TWO_ACCOUNTS);
    let cfg = cfg.expect("valid config");
    let err = account(&cfg, "alice")
        .password
        .resolve_with(no_env)
        .unwrap_err();
    assert!(matches!(err, ConfigError::PasswordFile { .. }), "{err:?}");
    let want = dir.path().join("alice.pass");
    assert!(err.to_string().contains(&*want.to_string_lossy()), "{err}");
}

#[test]
fn password_from_env_var_uses_the_lookup() {
    let (_d, _p, cfg) = load_text(TWO_ACCOUNTS);
    let cfg = cfg.expect("valid config");
    let src = &account(&cfg, "work").password;
    let env = |k: &str| (k == "SIPLINE_TEST_WORK_PASSWORD").then(|| "w0rk".to_string());
    assert_eq!(src.resolve_with(env).expect("password").expose(), "w0rk");
    let err = src.resolve_with(no_env).unwrap_err();
    assert!(
        matches!(&err, ConfigError::PasswordEnvUnset { var } if var == "SIPLINE_TEST_WORK_PASSWORD"),
        "{err:?}"
    );
}

#[test]
fn literal_password_in_a_world_readable_file_warns() {
    let text = "[[account]]\nname = \"a\"\naor = \"sip:a@b.example\"\npassword = \"lit\"\n";
    let (_d, path) = write_config(text);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let cfg = config::load(Some(&path)).expect("valid config");
        assert!(
            matches!(&cfg.warnings[..], [ConfigWarning::ReadablePassword { account, mode: 0o644, .. }] if account == "a"),
            "{:?}",
            cfg.warnings
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    let cfg = config::load(Some(&path)).expect("valid config");
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    let pw = cfg.accounts[0]
        .password
        .resolve_with(no_env)
        .expect("literal");
    assert_eq!(pw.expose(), "lit");
}

#[test]
fn two_password_sources_in_one_account_are_an_error() {
    let text = "[[account]]\nname = \"a\"\naor = \"sip:a@b.example\"\npassword_env = \"X\"\npassword = \"lit\"\n";
    let (_d, path, r) = load_text(text);
    let err = r.unwrap_err();
    match &err {
        ConfigError::ConflictingPasswords {
            account, fields, ..
        } => {
            assert_eq!(account, "a");
            assert_eq!(fields, &["password_env", "password"]);
        }
        other => panic!("unexpected {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(&*path.to_string_lossy()) && msg.contains("line 5"),
        "{msg}"
    );
}

#[test]
fn debug_of_account_and_secret_never_shows_the_password() {
    let text = "[[account]]\nname = \"a\"\naor = \"sip:a@b.example\"\npassword = \"hunter2-zz\"\n";
    let (_d, _p, cfg) = load_text(text);
    let cfg = cfg.expect("valid config");
    let shown = format!("{cfg:?} {:?} {:#?}", cfg.accounts[0], cfg.accounts[0]);
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("***"));
    let s = Secret::new("hunter2-zz");
    assert_eq!(format!("{s:?}"), "***");
    assert_eq!(format!("{s}"), "***");
}

#[test]
fn missing_default_file_is_an_empty_config() {
    let dir = tempfile::tempdir().expect("temp dir");
    let home = dir.path().to_string_lossy().into_owned();
    let path =
        config::default_path_with(|k| (k == "HOME").then(|| home.clone())).expect("a default path");
    assert_eq!(path, dir.path().join(".config/sipline/config.toml"));
    assert!(!path.exists());
    let cfg = config::load_with(None, |k| (k == "HOME").then(|| home.clone()))
        .expect("a missing default file is no error");
    assert_eq!(cfg, Config::default());
    // Once it exists, it is read.
    std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
    std::fs::write(&path, "[contacts]\nbob = \"sip:bob@b.example\"\n").expect("write");
    let cfg = config::load_with(None, |k| (k == "HOME").then(|| home.clone())).expect("valid");
    assert_eq!(cfg.contacts.len(), 1);
}

#[test]
fn default_path_prefers_absolute_xdg_config_home() {
    let env = |k: &str| match k {
        "XDG_CONFIG_HOME" => Some("/x/cfg".to_string()),
        "HOME" => Some("/home/u".to_string()),
        _ => None,
    };
    assert_eq!(
        config::default_path_with(env),
        Some(PathBuf::from("/x/cfg/sipline/config.toml"))
    );
    let relative = |k: &str| match k {
        "XDG_CONFIG_HOME" => Some("rel".to_string()),
        "HOME" => Some("/home/u".to_string()),
        _ => None,
    };
    assert_eq!(
        config::default_path_with(relative),
        Some(PathBuf::from("/home/u/.config/sipline/config.toml"))
    );
    assert_eq!(config::default_path_with(no_env), None);
}

#[test]
fn missing_explicit_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("nope.toml");
    let err = config::load(Some(&path)).unwrap_err();
    assert!(matches!(err, ConfigError::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
}

#[test]
fn malformed_toml_names_file_line_column_and_field() {
    // Line 7 lacks its closing quote.
    let text = "[defaults]\ncodecs = [\"pcmu\"]\n\n[[account]]\nname = \"alice\"\n\naor = \"sip:alice@example.com\nexpires = 60\n";
    let (_d, path, r) = load_text(text);
    let err = r.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&*path.to_string_lossy()), "{msg}");
    assert!(msg.contains("line 7"), "{msg}");
    assert!(msg.contains("column"), "{msg}");
    match &err {
        ConfigError::Parse { pos, field, .. } => {
            assert_eq!(pos.map(|p| p.line), Some(7));
            assert_eq!(field.as_deref(), Some("account.aor"));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn wrong_value_type_names_line_and_field() {
    let text = "[[account]]\nname = \"a\"\naor = \"sip:a@b.example\"\nexpires = \"soon\"\n";
    let (_d, _p, r) = load_text(text);
    let err = r.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("line 4") && msg.contains("account.expires"),
        "{msg}"
    );
}

#[test]
fn missing_aor_is_an_error_naming_the_field() {
    let (_d, _p, r) = load_text("[[account]]\nname = \"a\"\n");
    let err = r.unwrap_err();
    assert!(
        matches!(&err, ConfigError::Parse { field: Some(f), .. } if f == "aor"),
        "{err:?}"
    );
}

#[test]
fn unknown_field_is_an_error_naming_it() {
    let text = "[[account]]\nname = \"a\"\naor = \"sip:a@b.example\"\npasswd = \"x\"\n";
    let (_d, path, r) = load_text(text);
    let err = r.unwrap_err();
    match &err {
        ConfigError::UnknownField { field, pos, .. } => {
            assert_eq!(field, "account.passwd");
            assert_eq!(pos.map(|p| p.line), Some(4));
        }
        other => panic!("unexpected {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("passwd") && msg.contains(&*path.to_string_lossy()),
        "{msg}"
    );
}

#[test]
fn unknown_top_level_section_is_an_error_naming_it() {
    let (_d, _p, r) = load_text("[default]\ncodecs = []\n");
    let err = r.unwrap_err();
    assert!(
        matches!(&err, ConfigError::UnknownField { field, .. } if field == "default"),
        "{err:?}"
    );
}

#[test]
fn bad_uri_names_account_field_and_line() {
    let text = "[[account]]\nname = \"a\"\naor = \"sip:a@b.example\"\n\n[[account]]\nname = \"bad\"\naor = \"sip:x@example.com\"\nregistrar = \"sip:exa mple.com\"\n";
    let (_d, path, r) = load_text(text);
    let err = r.unwrap_err();
    match &err {
        ConfigError::Invalid {
            account,
            field,
            pos,
            problem,
            ..
        } => {
            assert_eq!(account.as_deref(), Some("bad"));
            assert_eq!(field, "registrar");
            assert_eq!(pos.map(|p| p.line), Some(8));
            assert!(
                matches!(problem, FieldProblem::BadUri { .. }),
                "{problem:?}"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("\"bad\"")
            && msg.contains("registrar")
            && msg.contains(&*path.to_string_lossy()),
        "{msg}"
    );
}

#[test]
fn aor_without_user_or_not_sip_is_rejected() {
    for (aor, want_user_problem) in [("sip:example.com", true), ("tel:+15551234", false)] {
        let text = format!("[[account]]\nname = \"a\"\naor = \"{aor}\"\n");
        let (_d, _p, r) = load_text(&text);
        match r.unwrap_err() {
            ConfigError::Invalid { field, problem, .. } => {
                assert_eq!(field, "aor");
                assert_eq!(
                    matches!(problem, FieldProblem::NoUser { .. }),
                    want_user_problem
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn bad_outbound_proxy_names_the_field() {
    let text = "[[account]]\nname = \"a\"\naor = \"sip:a@b.example\"\noutbound_proxy = \"proxy.example.com\"\n";
    let (_d, _p, r) = load_text(text);
    let err = r.unwrap_err();
    assert!(
        matches!(&err, ConfigError::Invalid { field, .. } if field == "outbound_proxy"),
        "{err:?}"
    );
}

#[test]
fn zero_expiry_unsupported_transport_and_unknown_codec_are_errors() {
    let cases = [
        ("expires = 0", "expires"),
        ("transport = \"tcp\"", "transport"),
        ("codecs = [\"pcmu\", \"g729\"]", "codecs"),
    ];
    for (line, want_field) in cases {
        let text = format!("[[account]]\nname = \"a\"\naor = \"sip:a@b.example\"\n{line}\n");
        let (_d, _p, r) = load_text(&text);
        let err = r.unwrap_err();
        match &err {
            ConfigError::Invalid {
                account,
                field,
                pos,
                ..
            } => {
                assert_eq!(account.as_deref(), Some("a"));
                assert_eq!(field, want_field);
                assert_eq!(pos.map(|p| p.line), Some(4));
            }
            other => panic!("{line}: unexpected {other:?}"),
        }
        assert!(err.to_string().contains(want_field), "{err}");
    }
}

#[test]
fn duplicate_account_names_are_an_error() {
    let text = "[[account]]\nname = \"a\"\naor = \"sip:a@b.example\"\n[[account]]\nname = \"a\"\naor = \"sip:c@b.example\"\n";
    let (_d, _p, r) = load_text(text);
    match r.unwrap_err() {
        ConfigError::DuplicateAccount {
            name, pos, first, ..
        } => {
            assert_eq!(name, "a");
            assert_eq!(pos.map(|p| p.line), Some(5));
            assert_eq!(first.line, 2);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn defaults_account_must_name_an_account() {
    let text =
        "[defaults]\naccount = \"zed\"\n[[account]]\nname = \"a\"\naor = \"sip:a@b.example\"\n";
    let (_d, _p, r) = load_text(text);
    let err = r.unwrap_err();
    assert!(
        matches!(&err, ConfigError::Invalid { field, problem: FieldProblem::NoSuchAccount { known }, .. }
            if field == "defaults.account" && known == &["a"]),
        "{err:?}"
    );
}

#[test]
fn bad_contact_uri_names_the_contact() {
    let (_d, _p, r) = load_text("[contacts]\nbob = \"sip:bob@\"\n");
    let err = r.unwrap_err();
    assert!(
        matches!(&err, ConfigError::Invalid { field, .. } if field == "contacts.bob"),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------
// Choosing the account

fn two_accounts() -> (tempfile::TempDir, Config) {
    let (dir, _p, cfg) = load_text(TWO_ACCOUNTS);
    (dir, cfg.expect("valid config"))
}

#[test]
fn account_flag_picks_that_account() {
    let (_d, cfg) = two_accounts();
    let o = AccountOverrides {
        account: Some("work".into()),
        ..Default::default()
    };
    let a = config::select_account_with(&cfg, &o, no_env)
        .expect("ok")
        .expect("some");
    assert_eq!(a, *account(&cfg, "work"));
}

#[test]
fn unknown_account_flag_lists_the_known_ones() {
    let (_d, cfg) = two_accounts();
    let o = AccountOverrides {
        account: Some("home".into()),
        ..Default::default()
    };
    let err = config::select_account_with(&cfg, &o, no_env).unwrap_err();
    match &err {
        ConfigError::UnknownAccount { name, known } => {
            assert_eq!(name, "home");
            assert_eq!(known, &["alice", "work"]);
        }
        other => panic!("unexpected {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("home") && msg.contains("alice, work"), "{msg}");
}

#[test]
fn flags_override_the_chosen_account() {
    let (_d, cfg) = two_accounts();
    let o = AccountOverrides {
        account: Some("alice".into()),
        username: Some("alice2".into()),
        outbound_proxy: Some("sip:other.example.com;lr".into()),
        password_file: Some(PathBuf::from("/run/pw")),
        expires: Some(120),
        ..Default::default()
    };
    let a = config::select_account_with(&cfg, &o, no_env)
        .expect("ok")
        .expect("some");
    assert_eq!(a.username, "alice2");
    assert_eq!(
        a.outbound_proxy.as_deref(),
        Some("sip:other.example.com;lr")
    );
    assert_eq!(a.password, PasswordSource::File(PathBuf::from("/run/pw")));
    assert_eq!(a.expires, 120);
    assert_eq!(
        a.realm.as_deref(),
        Some("example.com"),
        "untouched fields stay"
    );
}

#[test]
fn aor_flag_on_an_account_rederives_derived_username_and_registrar() {
    let (_d, cfg) = two_accounts();
    let o = AccountOverrides {
        account: Some("alice".into()),
        aor: Some("sip:carol@other.example".into()),
        ..Default::default()
    };
    let a = config::select_account_with(&cfg, &o, no_env)
        .expect("ok")
        .expect("some");
    assert_eq!(a.aor, "sip:carol@other.example");
    assert_eq!(a.username, "carol");
    assert_eq!(a.registrar, "sip:other.example");
    // Explicit values are kept.
    let o = AccountOverrides {
        account: Some("work".into()),
        aor: Some("sip:carol@other.example".into()),
        ..Default::default()
    };
    let w = config::select_account_with(&cfg, &o, no_env)
        .expect("ok")
        .expect("some");
    assert_eq!(w.username, "asmith");
    assert_eq!(w.registrar, "sips:registrar.example.org");
}

#[test]
fn aor_flag_alone_builds_an_ad_hoc_account() {
    let (_d, cfg) = two_accounts();
    let o = AccountOverrides {
        aor: Some("sip:dave@example.net".into()),
        registrar: Some("sip:reg.example.net:5080".into()),
        ..Default::default()
    };
    let a = config::select_account_with(&cfg, &o, no_env)
        .expect("ok")
        .expect("some");
    assert_eq!(a.aor, "sip:dave@example.net");
    assert_eq!(a.username, "dave");
    assert_eq!(a.registrar, "sip:reg.example.net:5080");
    assert_eq!(a.expires, 300, "[defaults] still apply");
    assert_eq!(a.codecs, Some(vec![CodecArg::Pcma]));
    assert!(a.register);
    assert_eq!(
        a.password,
        PasswordSource::Prompt,
        "no file, no env: prompt"
    );

    let env = |k: &str| (k == config::PASSWORD_ENV).then(|| "pw".to_string());
    let a = config::select_account_with(&cfg, &o, env)
        .expect("ok")
        .expect("some");
    assert_eq!(a.password, PasswordSource::Env("SIPLINE_PASSWORD".into()));

    let o = AccountOverrides {
        password_file: Some(PathBuf::from("pw.txt")),
        ..o
    };
    let a = config::select_account_with(&cfg, &o, env)
        .expect("ok")
        .expect("some");
    assert_eq!(a.password, PasswordSource::File(PathBuf::from("pw.txt")));
}

#[test]
fn no_flags_pick_the_default_account_or_the_only_one_or_none() {
    let none = AccountOverrides::default();
    let (_d, cfg) = two_accounts();
    assert_eq!(
        config::select_account_with(&cfg, &none, no_env).expect("ok"),
        None
    );

    let (_d, _p, r) = load_text(&format!(
        "[defaults]\naccount = \"work\"\n{}",
        &TWO_ACCOUNTS[TWO_ACCOUNTS.find("[[account]]").expect("has accounts")..]
    ));
    let cfg = r.expect("valid config");
    let a = config::select_account_with(&cfg, &none, no_env)
        .expect("ok")
        .expect("some");
    assert_eq!(a.name, "work");

    let (_d, _p, r) = load_text("[[account]]\nname = \"solo\"\naor = \"sip:s@b.example\"\n");
    let cfg = r.expect("valid config");
    let a = config::select_account_with(&cfg, &none, no_env)
        .expect("ok")
        .expect("some");
    assert_eq!(a.name, "solo");

    assert_eq!(
        config::select_account_with(&Config::default(), &none, no_env).expect("ok"),
        None
    );
}

#[test]
fn override_flag_without_any_account_is_an_error() {
    let o = AccountOverrides {
        username: Some("x".into()),
        ..Default::default()
    };
    let err = config::select_account_with(&Config::default(), &o, no_env).unwrap_err();
    assert!(
        matches!(err, ConfigError::FlagNeedsAccount { flag: "--username" }),
        "{err:?}"
    );
}

#[test]
fn bad_override_uris_name_the_flag() {
    let (_d, cfg) = two_accounts();
    let cases: [(AccountOverrides, &str); 3] = [
        (
            AccountOverrides {
                aor: Some("sip:nouser.example".into()),
                ..Default::default()
            },
            "--aor",
        ),
        (
            AccountOverrides {
                account: Some("alice".into()),
                registrar: Some("not a uri".into()),
                ..Default::default()
            },
            "--registrar",
        ),
        (
            AccountOverrides {
                account: Some("alice".into()),
                outbound_proxy: Some("mailto:x@y".into()),
                ..Default::default()
            },
            "--outbound-proxy",
        ),
    ];
    for (o, want) in cases {
        let err = config::select_account_with(&cfg, &o, no_env).unwrap_err();
        assert!(
            matches!(&err, ConfigError::BadFlag { flag, .. } if *flag == want),
            "{want}: {err:?}"
        );
        assert!(err.to_string().starts_with(want), "{err}");
    }
}

// ---------------------------------------------------------------------
// clap flags

#[derive(Debug, Parser)]
struct TestCli {
    #[command(flatten)]
    account: AccountArgs,
}

#[test]
fn account_args_parse_every_flag() {
    let cli = TestCli::try_parse_from([
        "t",
        "--config",
        "/c.toml",
        "--account",
        "alice",
        "--aor",
        "sip:a@b.example",
        "--username",
        "u",
        "--registrar",
        "sip:b.example",
        "--outbound-proxy",
        "sip:p.example;lr",
        "--password-file",
        "/pw",
        "--expires",
        "90",
    ])
    .expect("parses");
    let a = cli.account;
    assert_eq!(a.config.as_deref(), Some(Path::new("/c.toml")));
    assert_eq!(
        a.overrides,
        AccountOverrides {
            account: Some("alice".into()),
            aor: Some("sip:a@b.example".into()),
            username: Some("u".into()),
            registrar: Some("sip:b.example".into()),
            outbound_proxy: Some("sip:p.example;lr".into()),
            password_file: Some(PathBuf::from("/pw")),
            expires: Some(90),
        }
    );
}

#[test]
fn there_is_no_password_flag_and_zero_expires_is_refused() {
    assert!(TestCli::try_parse_from(["t", "--password", "x"]).is_err());
    assert!(TestCli::try_parse_from(["t", "--expires", "0"]).is_err());
}

#[test]
fn account_args_select_reads_the_named_config() {
    let (_d, path) = write_config(TWO_ACCOUNTS);
    let args = AccountArgs {
        config: Some(path),
        overrides: AccountOverrides {
            account: Some("alice".into()),
            ..Default::default()
        },
        nat: Default::default(),
    };
    let a = args.select().expect("ok").expect("some");
    assert_eq!(a.name, "alice");
}

#[test]
fn stun_and_keepalive_come_from_the_account_then_defaults_then_flags_win() {
    use sipline::cli::nat::NatArgs;
    use std::time::Duration;
    let text = r#"
[defaults]
stun = "stun.example.net"
keepalive = 15

[[account]]
name = "home"
aor = "sip:alice@example.com"
password_env = "X"

[[account]]
name = "office"
aor = "sip:alice@example.org"
stun = "198.51.100.70:3479"
keepalive = 0
password_env = "X"
"#;
    let (_d, _p, cfg) = load_text(text);
    let cfg = cfg.expect("valid config");
    let home = account(&cfg, "home");
    assert_eq!(home.stun.as_deref(), Some("stun.example.net"));
    assert_eq!(home.keepalive, Some(15));
    let office = account(&cfg, "office");
    assert_eq!(office.stun.as_deref(), Some("198.51.100.70:3479"));
    assert_eq!(office.keepalive, Some(0));

    let none = NatArgs::default();
    let o = none.options(Some(office));
    assert_eq!(o.stun.as_deref(), Some("198.51.100.70:3479"));
    assert_eq!(o.keepalive, Duration::ZERO, "0 turns keep-alives off");
    let flags = NatArgs {
        stun: Some("stun.example.com:3478".into()),
        keepalive: Some(5),
    };
    let o = flags.options(Some(home));
    assert_eq!(o.stun.as_deref(), Some("stun.example.com:3478"));
    assert_eq!(o.keepalive, Duration::from_secs(5));
    // No account, no flags: no STUN, keep-alives every 25 s.
    let o = none.options(None);
    assert_eq!(o.stun, None);
    assert_eq!(o.keepalive, Duration::from_secs(25));
}

#[test]
fn a_stun_server_that_is_not_host_port_is_refused_with_its_field() {
    for (value, empty) in [("", true), ("user@stun.example.net", false), ("a b", false)] {
        let text = format!(
            "[[account]]\nname = \"a\"\naor = \"sip:a@example.com\"\nstun = \"{value}\"\npassword_env = \"X\"\n"
        );
        let (_d, _p, r) = load_text(&text);
        match r {
            Err(ConfigError::Invalid { field, problem, .. }) => {
                assert_eq!(field, "stun", "{value:?}");
                assert_eq!(matches!(problem, FieldProblem::Empty), empty, "{value:?}");
            }
            other => panic!("{value:?}: unexpected {other:?}"),
        }
    }
}
