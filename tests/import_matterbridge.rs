//! `patchbay import-matterbridge`: a table of matterbridge configs (tests/fixtures/matterbridge,
//! written from matterbridge.toml.sample's documented settings). Each row asserts key facts of
//! the patchbay config produced, the exact list of settings reported as not carried over and as
//! carried over with a difference, and that the output passes the validation `patchbay check`
//! runs. `any_config` checks the last on generated matterbridge files (valid accounts with
//! random keys and values on top, gateways over them).

use std::path::{Path, PathBuf};

use patchbay::config;
use patchbay::connectors::Registry;
use patchbay::import::{self, Imported};

/// One row: a fixture and what its import must give.
struct Case {
    fixture: &'static str,
    /// `(path into the output, expected value as TOML)`; array elements by index.
    facts: &'static [(&'static [&'static str], &'static str)],
    /// Paths that must not be in the output.
    absent: &'static [&'static [&'static str]],
    /// Exactly the keys reported as not carried over.
    skipped: &'static [&'static str],
    /// Exactly the keys reported as carried over with a difference.
    changed: &'static [&'static str],
    /// What `patchbay check` counts.
    accounts: usize,
    routes: usize,
}

const CASES: &[Case] = &[
    Case {
        fixture: "irc_matrix.toml",
        facts: &[
            (&["general", "nick_format"], r#""[{protocol}] {nick}""#),
            // matterbridge relays no reactions and no topic changes by default.
            (
                &["general", "kinds"],
                r#"["message", "action", "notice", "edit", "delete"]"#,
            ),
            (&["irc", "libera", "server"], r#""irc.libera.chat""#),
            (&["irc", "libera", "port"], "6697"),
            (&["irc", "libera", "tls"], "true"),
            (
                &["irc", "libera", "sasl"],
                r#"{ mechanism = "plain", username = "bridgebot", password = "sasl-secret" }"#,
            ),
            (&["irc", "libera", "on_connect"], r#"["MODE $nick +B"]"#),
            (
                &["irc", "libera", "channels"],
                r##"[{ name = "#rust", key = "chankey" }]"##,
            ),
            (
                &["matrix", "home", "homeserver"],
                r#""https://matrix.example.org""#,
            ),
            (
                &["matrix", "home", "user"],
                r#""@bridge:matrix.example.org""#,
            ),
            // `${` is doubled so that patchbay does not read it as an environment variable.
            (&["matrix", "home", "password"], r#""matrix-$${not-a-var}""#),
            (&["matrix", "home", "rooms"], r##"["#rust:example.org"]"##),
            (&["route", "0", "name"], r#""main""#),
            (
                &["route", "0", "inout"],
                r##"["irc.libera/#rust", "matrix.home/#rust:example.org"]"##,
            ),
            // IgnoreNicks belongs to the sending account: on IRC's room, where events come from.
            (
                &["route", "0", "room", "irc.libera/#rust", "ignore_nicks"],
                r#"["spammer1", "bot-.*"]"#,
            ),
            // ReplaceMessages of IRC: applied to what is delivered into the Matrix room.
            (
                &[
                    "route",
                    "0",
                    "room",
                    "matrix.home/#rust:example.org",
                    "rewrite",
                ],
                r#"[{ pattern = "cat", replace = "dog" }]"#,
            ),
        ],
        absent: &[
            &["irc", "libera", "password"],
            &["route", "0", "nick_format"],
        ],
        skipped: &["irc.libera.SkipTLSVerify", "matrix.home.HTMLDisable"],
        changed: &["matrix.home.login", "general.RemoteNickFormat"],
        accounts: 2,
        routes: 1,
    },
    Case {
        fixture: "webhooks.toml",
        facts: &[
            (
                &["webhook", "team", "url"],
                r#""https://hooks.slack.com/services/T0/B0/XYZ""#,
            ),
            (&["webhook", "team", "payload"], r#""slack""#),
            (&["webhook", "game", "payload"], r#""discord""#),
            (
                &["webhook", "game", "rooms", "mygame", "url"],
                r#""https://discord.com/api/webhooks/1234/abcd""#,
            ),
            (&["route", "0", "inout"], r##"["irc.oftc/#chat"]"##),
            (
                &["route", "0", "out"],
                r#"["webhook.game/mygame", "webhook.team/general"]"#,
            ),
            (&["route", "0", "ignore_text"], r#"["^!"]"#),
            (
                &["route", "0", "room", "webhook.team/general", "nick_format"],
                r#""{nick} ({protocol})""#,
            ),
            (
                &["route", "0", "room", "irc.oftc/#chat", "nick_format"],
                r#""{nick}""#,
            ),
        ],
        absent: &[&["webhook", "work"], &["mattermost"], &["slack"]],
        skipped: &[
            "discord.game.Token",
            "discord.game.Server",
            "slack.team.Token",
            "gateway \"chat\".inout[2]",
            "mattermost.work",
            "mattermost.work.WebhookBindAddress",
        ],
        changed: &["gateway \"chat\".inout[1]", "irc.oftc.RemoteNickFormat"],
        accounts: 3,
        routes: 1,
    },
    Case {
        fixture: "sshchat_api.toml",
        facts: &[
            (&["http", "listen"], r#""127.0.0.1:4242""#),
            (&["api", "local", "token"], r#""long-enough-token""#),
            (&["sshchat", "chat", "dialect"], r#""ssh-chat""#),
            (&["sshchat", "chat", "server"], r#""chat.example.org:2022""#),
            (&["sshchat", "chat", "rooms"], r##"["#main"]"##),
            (
                &["route", "0", "inout"],
                r##"["irc.net/#lobby", "sshchat.chat/#main"]"##,
            ),
            (
                &["route", "0", "in"],
                r#"["api.local/api", "api.other/api"]"#,
            ),
            (
                &["route", "0", "room", "irc.net/#lobby", "nick_format"],
                r#""{nick}@{account}""#,
            ),
            (
                &["route", "0", "room", "irc.net/#lobby", "kinds"],
                r#"["message", "action", "notice", "edit", "delete", "join", "part"]"#,
            ),
            // The senders into ssh-chat have different labels: `{LABEL}` cannot be written out.
            (
                &["route", "0", "room", "sshchat.chat/#main", "nick_format"],
                r#""({account}) {nick}""#,
            ),
        ],
        absent: &[&["route", "0", "room", "sshchat.chat/#main", "kinds"]],
        skipped: &["sshchat.chat.NoSendJoinPart", "api.local.Buffer"],
        changed: &[
            "api.local",
            "api.other",
            "api.other.BindAddress",
            "irc.net.RemoteNickFormat",
            "sshchat.chat.RemoteNickFormat",
        ],
        accounts: 4,
        routes: 1,
    },
    Case {
        fixture: "unsupported.toml",
        facts: &[
            (&["irc", "a", "flood_burst"], "1"),
            (&["irc", "a", "flood_rate"], "0.769"),
            (&["irc", "a", "ping_interval"], r#""1m 30s""#),
            (&["irc", "a", "formatting"], r#""strip""#),
            // `#tg` went with its gateway: only the same-channel gateway's rooms are joined.
            (&["irc", "a", "channels"], r##"["#one", "#two"]"##),
            (&["irc", "b", "channels"], r##"["#one", "#two"]"##),
            (&["route", "0", "name"], r#""mirror""#),
            (
                &["route", "0", "inout"],
                r##"["irc.a/#one", "irc.a/#two", "irc.b/#one", "irc.b/#two"]"##,
            ),
            (
                &["route", "0", "room", "irc.a/#one", "ignore_text"],
                r#"["^~~"]"#,
            ),
        ],
        absent: &[
            &["irc", "a", "charset"],
            &["irc", "b", "charset"],
            &["general", "nick_format"],
            &["api"],
            &["route", "1"],
        ],
        skipped: &[
            "tengo.InMessage",
            "api.open",
            "irc.a.IgnoreMessages",
            "telegram.secure",
            "xmpp.jabber",
            "gateway \"old\"",
            "gateway \"tg\".inout[1]",
            "irc.a.Charset",
            "gateway \"tg\"",
            "general.LogFile",
            "general.MediaServerUpload",
            "general.StripNick",
            "irc.a.MessageQueue",
            "irc.a.ReplaceNicks",
        ],
        changed: &["irc.a.StripMarkdown"],
        accounts: 2,
        routes: 1,
    },
    Case {
        fixture: "refused.toml",
        facts: &[
            (&["irc", "x", "server"], r#""irc.x.example""#),
            (&["irc", "y", "server"], r#""::1""#),
            (&["irc", "y", "port"], "6667"),
            // `in` and `out` of one room make it `inout`.
            (&["route", "0", "inout"], r##"["irc.x/#same", "irc.y/#y"]"##),
        ],
        // The API account asking for the listener is left out, so there is no `[http]`.
        absent: &[
            &["http"],
            &["sshchat"],
            &["api"],
            &["webhook"],
            &["matrix"],
            &["irc", "x", "port"],
        ],
        skipped: &[
            "discord.d.Token",
            "discord.d",
            "gateway \"g\".out[1].options.WebhookURL",
            "matrix.m.MxID",
            "gateway \"g\".inout[4]",
            "gateway \"g\".inout[0]",
            "api.weak",
            "sshchat.bad",
            "gateway \"g\".inout[2]",
            "gateway \"g\".inout[3]",
        ],
        changed: &["irc.x.RemoteNickFormat", "irc.y.RemoteNickFormat"],
        accounts: 2,
        routes: 1,
    },
    Case {
        fixture: "auth.toml",
        facts: &[
            (&["irc", "libera", "nickserv_password"], r#""ns-secret""#),
            (&["route", "0", "in"], r##"["irc.nosasl/#pb"]"##),
            (
                &["irc", "quakenet", "on_connect"],
                r#"["PRIVMSG Q@CServe.quakenet.org :AUTH pbaccount q-secret", "MODE $nick +x"]"#,
            ),
            (&["matrix", "neo", "user"], r#""@pb:matrix.org""#),
            (&["matrix", "neo", "access_token"], r#""syt_token""#),
            (&["matrix", "neo", "rooms"], r#"["!opaque:matrix.org"]"#),
            (
                &["route", "0", "inout"],
                r##"["irc.libera/#pb", "irc.quakenet/#pb", "matrix.neo/!opaque:matrix.org"]"##,
            ),
        ],
        // `{NOPINGNICK}: ` is patchbay's default `{nick}` everywhere: written nowhere. The
        // account no gateway uses is reported once, not key by key.
        absent: &[
            &["matrix", "neo", "password"],
            &["irc", "unused"],
            &["general", "nick_format"],
            &["route", "0", "nick_format"],
            &["route", "0", "room"],
        ],
        skipped: &[
            "irc.libera.SkipTLSVerify",
            "matrix.neo.Password",
            "irc.unused",
            "irc.nosasl.UseSASL",
        ],
        changed: &["general.RemoteNickFormat"],
        accounts: 4,
        routes: 1,
    },
    Case {
        fixture: "general_fallback.toml",
        facts: &[
            // Every sender has `[general]`'s IgnoreNicks: one rule on the route.
            (&["route", "0", "ignore_nicks"], r#"["^bot"]"#),
            // Into irc.a and irc.b come irc.c (label "c") and another "net": no single label.
            (
                &["route", "0", "room", "irc.a/#x", "nick_format"],
                r#""[{account}] {nick}""#,
            ),
            (
                &["route", "0", "room", "irc.b/#x", "nick_format"],
                r#""[{account}] {nick}""#,
            ),
            (
                &["route", "0", "room", "irc.c/#x", "nick_format"],
                r#""{nick}""#,
            ),
            // Into irc.c come only [general]'s rules; into the others, two different sets.
            (
                &["route", "0", "room", "irc.c/#x", "rewrite"],
                r#"[{ pattern = "foo", replace = "bar" }]"#,
            ),
        ],
        absent: &[
            &["route", "0", "room", "irc.a/#x", "rewrite"],
            &["route", "0", "room", "irc.b/#x", "rewrite"],
            &["route", "0", "nick_format"],
        ],
        skipped: &["general.ReplaceMessages", "irc.c.ReplaceMessages"],
        changed: &["general.RemoteNickFormat"],
        accounts: 3,
        routes: 1,
    },
];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/matterbridge")
        .join(name)
}

/// The connectors `patchbay check` has, with a stand-in for Matrix in builds without it that
/// accepts what the Matrix connector's bot mode takes.
fn registry() -> Registry {
    #[allow(unused_mut)]
    let mut registry = Registry::builtin();
    #[cfg(not(feature = "matrix"))]
    registry.register(std::sync::Arc::new(stand_in::MatrixStandIn));
    registry
}

#[cfg(not(feature = "matrix"))]
mod stand_in {
    use std::sync::Arc;

    use patchbay_sdk::{AccountInfo, ConfigError, Connector, ConnectorFactory};

    pub struct MatrixStandIn;

    impl ConnectorFactory for MatrixStandIn {
        fn protocol(&self) -> &'static str {
            "matrix"
        }

        fn build(
            &self,
            account: &AccountInfo,
            table: toml::Table,
        ) -> Result<Arc<dyn Connector>, ConfigError> {
            const KEYS: &[&str] = &["homeserver", "user", "password", "access_token", "rooms"];
            if let Some(key) = table.keys().find(|k| !KEYS.contains(&k.as_str())) {
                return Err(ConfigError::at(&[key], "unknown field"));
            }
            for key in ["homeserver", "user"] {
                if !table.contains_key(key) {
                    return Err(ConfigError::at(&[key], "missing"));
                }
            }
            if table.contains_key("password") == table.contains_key("access_token") {
                return Err(ConfigError::at(&[], "one of password, access_token"));
            }
            let mut console = toml::Table::new();
            console.insert("input".into(), "none".into());
            patchbay_console::ConsoleFactory.build(account, console)
        }

        fn check_room(&self, room: &str) -> Result<(), String> {
            if room.starts_with(['#', '!']) {
                Ok(())
            } else {
                Err(format!("`{room}` is not a Matrix room"))
            }
        }
    }
}

fn lookup<'a>(value: &'a toml::Value, path: &[&str]) -> Option<&'a toml::Value> {
    path.iter().try_fold(value, |v, segment| match v {
        toml::Value::Table(t) => t.get(*segment),
        toml::Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

fn keys<'a>(findings: impl Iterator<Item = &'a import::Finding>) -> Vec<String> {
    let mut keys: Vec<String> = findings.map(|f| f.key.clone()).collect();
    keys.sort();
    keys.dedup();
    keys
}

fn sorted(keys: &[&str]) -> Vec<String> {
    let mut keys: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
    keys.sort();
    keys
}

fn import(name: &str) -> Imported {
    let source = std::fs::read_to_string(fixture(name)).expect("fixture");
    import::convert(&source, &registry()).expect("TOML")
}

#[test]
fn each_matterbridge_config_of_the_table_imports_as_stated_and_passes_check() {
    for case in CASES {
        let imported = import(case.fixture);
        let output = &imported.config;
        let parsed: toml::Value = toml::from_str(output)
            .unwrap_or_else(|err| panic!("{}: output is not TOML: {err}\n{output}", case.fixture));
        for (path, expected) in case.facts {
            let expected: toml::Table =
                toml::from_str(&format!("v = {expected}")).expect("expected value is TOML");
            assert_eq!(
                lookup(&parsed, path),
                expected.get("v"),
                "{}: {path:?}\n{output}",
                case.fixture
            );
        }
        for path in case.absent {
            assert!(
                lookup(&parsed, path).is_none(),
                "{}: {path:?} should be absent\n{output}",
                case.fixture
            );
        }
        let findings = &imported.findings;
        assert_eq!(
            keys(findings.skipped()),
            sorted(case.skipped),
            "{}: not carried over\n{findings}",
            case.fixture
        );
        assert_eq!(
            keys(findings.changed()),
            sorted(case.changed),
            "{}: changed\n{findings}",
            case.fixture
        );
        for finding in findings.all() {
            assert!(
                finding.reason.len() > 10,
                "{}: {finding:?} needs a reason",
                case.fixture
            );
        }

        // The validation `patchbay check` runs, on the file as it would be saved.
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("patchbay.toml");
        let config = config::parse(&path, output, &registry()).unwrap_or_else(|err| {
            panic!(
                "{}: check refuses the output:\n{err}\n{output}",
                case.fixture
            )
        });
        assert_eq!(config.accounts.len(), case.accounts, "{}", case.fixture);
        assert_eq!(config.routes.len(), case.routes, "{}", case.fixture);
        let warnings: Vec<String> = config.warnings.iter().map(|w| w.to_string()).collect();
        assert!(
            warnings.is_empty(),
            "{}: check warns about the output: {warnings:?}",
            case.fixture
        );
    }
}

#[test]
fn reasons_say_why() {
    let imported = import("irc_matrix.toml");
    let text = imported.findings.to_string();
    assert!(
        text.contains("irc.libera.SkipTLSVerify: patchbay always verifies TLS certificates"),
        "{text}"
    );
    assert!(text.starts_with("not carried over (2):\n"), "{text}");
    assert!(
        text.contains("carried over with a difference (2):\n"),
        "{text}"
    );
    let imported = import("unsupported.toml");
    let reason = |key: &str| {
        imported
            .findings
            .all()
            .iter()
            .find(|f| f.key == key)
            .map(|f| f.reason.clone())
            .unwrap_or_default()
    };
    assert!(reason("telegram.secure").contains("no Telegram connector"));
    assert!(reason("irc.a.Charset").contains("klingon"));
    assert!(reason("gateway \"old\"").contains("`enable` is not true"));
    assert!(reason("irc.a.IgnoreMessages").contains("`(unclosed` is not a regex"));
}

#[test]
fn a_file_that_is_not_toml_is_an_error() {
    let err = import::convert("[irc.x\nServer=", &registry()).expect_err("not TOML");
    assert!(!err.to_string().is_empty());
    let empty = import::convert("", &registry()).expect("empty is fine");
    assert!(empty.findings.all().is_empty());
    config::parse(Path::new("p.toml"), &empty.config, &registry()).expect("valid");
}

#[test]
fn the_command_prints_the_config_on_stdout_and_the_findings_on_stderr() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_patchbay"))
        .args(["import-matterbridge"])
        .arg(fixture("webhooks.toml"))
        .output()
        .expect("run patchbay");
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stdout.contains("[webhook.team]\n"), "{stdout}");
    assert!(!stdout.contains("slack.team.Token"), "{stdout}");
    assert!(stderr.contains("not carried over (6):"), "{stderr}");
    assert!(
        stderr.contains("  slack.team.Token: patchbay has no Slack API connector"),
        "{stderr}"
    );

    let missing = std::process::Command::new(env!("CARGO_BIN_EXE_patchbay"))
        .args(["import-matterbridge", "/nonexistent/matterbridge.toml"])
        .output()
        .expect("run patchbay");
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr)
            .contains("cannot read /nonexistent/matterbridge.toml")
    );
}

#[path = "import_matterbridge/any_config.rs"]
mod any_config;
