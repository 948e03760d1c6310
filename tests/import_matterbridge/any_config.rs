//! Whatever a matterbridge file holds, the import gives a config `patchbay check` accepts.

use super::*;
use proptest::prelude::*;

const PROTOCOLS: &[&str] = &[
    "irc",
    "matrix",
    "sshchat",
    "api",
    "slack",
    "discord",
    "mattermost",
    "telegram",
];
const KEYS: &[&str] = &[
    "Server",
    "Nick",
    "UseTLS",
    "Password",
    "Token",
    "MxID",
    "Login",
    "WebhookURL",
    "BindAddress",
    "NickServNick",
    "NickServPassword",
    "UseSASL",
    "Charset",
    "PingDelay",
    "MessageDelay",
    "RejoinDelay",
    "RunCommands",
    "RemoteNickFormat",
    "Label",
    "IgnoreNicks",
    "IgnoreMessages",
    "ReplaceMessages",
    "ShowJoinPart",
    "NoSendJoinPart",
    "StripMarkdown",
    "ColorNicks",
    "UserName",
    "RealName",
];
const TEXTS: &[&str] = &[
    "",
    "pb",
    "a b",
    "#x",
    "x",
    "irc.example:6667",
    "[::1]:6697",
    "chat.example:2022",
    "https://h.example",
    "http://h.example/hook",
    "ftp://h",
    "@u:h.example",
    "u",
    "long-enough-token",
    "short",
    "127.0.0.1:4242",
    ":4242",
    "{NICK}",
    "<{NICK}> ",
    "{LABEL}{BRIDGE}}{",
    "${HOME}",
    "(bad",
    "^~~ bad(",
    "1m",
    "soon",
    "koi8-r",
    "klingon",
    "Q@CServe.quakenet.org",
    "nickserv",
];
const CHANNELS: &[&str] = &[
    "#x",
    "#y",
    "x",
    "",
    "a/b?c#",
    "#r:h.example",
    "!id:h.example",
    "api",
    "ID:1",
];

fn value() -> impl Strategy<Value = toml::Value> {
    prop_oneof![
        prop::sample::select(TEXTS).prop_map(|s| toml::Value::String(s.to_owned())),
        any::<bool>().prop_map(toml::Value::Boolean),
        (-5i64..5000).prop_map(toml::Value::Integer),
        prop::collection::vec(prop::sample::select(TEXTS), 0..3).prop_map(|v| {
            toml::Value::Array(v.into_iter().map(|s| s.to_owned().into()).collect())
        }),
        (prop::sample::select(TEXTS), prop::sample::select(TEXTS)).prop_map(|(a, b)| {
            toml::Value::Array(vec![toml::Value::Array(vec![a.into(), b.into()])])
        }),
    ]
}

/// Keys that make an account of `protocol` valid, before random keys are added on top.
fn base(protocol: &str) -> &'static [(&'static str, &'static str)] {
    match protocol {
        "irc" => &[("Server", "irc.example:6667"), ("Nick", "pb")],
        "matrix" => &[
            ("Server", "https://h.example"),
            ("MxID", "@u:h.example"),
            ("Password", "pw"),
        ],
        "sshchat" => &[("Server", "chat.example:2022"), ("Nick", "pb")],
        "api" => &[
            ("Token", "long-enough-token"),
            ("BindAddress", "127.0.0.1:4242"),
        ],
        "slack" | "discord" | "mattermost" => &[("WebhookURL", "https://h.example/hook")],
        _ => &[("Token", "t")],
    }
}

/// A room of the protocol's grammar.
fn channel(protocol: &str) -> &'static str {
    match protocol {
        "irc" => "#x",
        "matrix" => "#r:h.example",
        _ => "x",
    }
}

type Account = (usize, String, Vec<(&'static str, toml::Value)>);
type Member = (
    &'static str,
    usize,
    Option<&'static str>,
    Option<&'static str>,
);

fn account() -> impl Strategy<Value = Account> {
    (
        0..PROTOCOLS.len(),
        "[a-b]",
        prop::collection::vec((prop::sample::select(KEYS), value()), 0..4),
    )
}

fn member() -> impl Strategy<Value = Member> {
    (
        prop::sample::select(&["in", "out", "inout"][..]),
        0usize..8,
        prop::option::weighted(0.3, prop::sample::select(CHANNELS)),
        prop::option::weighted(0.3, prop::sample::select(TEXTS)),
    )
}

fn file() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(account(), 1..6),
        prop::collection::vec(
            (
                prop::bool::weighted(0.9),
                prop::collection::vec(member(), 0..6),
            ),
            0..3,
        ),
        prop::collection::vec((prop::sample::select(KEYS), value()), 0..3),
    )
        .prop_map(|(accounts, gateways, general)| {
            let mut root = toml::Table::new();
            let mut ids = Vec::new();
            for (protocol, name, keys) in &accounts {
                let protocol = PROTOCOLS[*protocol];
                let mut table: toml::Table = base(protocol)
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), toml::Value::from(*v)))
                    .collect();
                for (k, v) in keys {
                    table.insert((*k).to_owned(), v.clone());
                }
                let entry = root
                    .entry(protocol)
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                if let toml::Value::Table(t) = entry {
                    t.insert(name.clone(), table.into());
                }
                ids.push((protocol, format!("{protocol}.{name}")));
            }
            root.insert(
                "general".into(),
                toml::Value::Table(
                    general
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect(),
                ),
            );
            let gateways: Vec<toml::Value> = gateways
                .into_iter()
                .enumerate()
                .map(|(i, (enable, members))| {
                    let mut gateway = toml::Table::new();
                    gateway.insert("name".into(), format!("g{}", i % 2).into());
                    gateway.insert("enable".into(), enable.into());
                    for (dir, account, channel, option) in members {
                        let (protocol, id) = &ids[account % ids.len()];
                        let mut entry = toml::Table::new();
                        entry.insert("account".into(), id.clone().into());
                        let channel = channel.unwrap_or(self::channel(protocol));
                        entry.insert("channel".into(), channel.into());
                        if let Some(option) = option {
                            let mut options = toml::Table::new();
                            options.insert("key".into(), option.into());
                            options.insert("WebhookURL".into(), option.into());
                            entry.insert("options".into(), options.into());
                        }
                        let list = gateway
                            .entry(dir)
                            .or_insert_with(|| toml::Value::Array(Vec::new()));
                        if let toml::Value::Array(items) = list {
                            items.push(entry.into());
                        }
                    }
                    gateway.into()
                })
                .collect();
            root.insert("gateway".into(), toml::Value::Array(gateways));
            toml::to_string(&root).unwrap_or_default()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn every_import_passes_check(source in file()) {
        let imported = import::convert(&source, &registry()).expect("generated TOML");
        let checked = config::parse(Path::new("/nonexistent/patchbay.toml"), &imported.config, &registry());
        prop_assert!(
            checked.is_ok(),
            "{}\n--- gives ---\n{}\n--- which check refuses ---\n{}",
            source,
            imported.config,
            checked.err().map(|e| e.to_string()).unwrap_or_default()
        );
    }
}
