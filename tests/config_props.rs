//! Property tests of the config loader ([`patchbay::config::parse`], what `patchbay check` and
//! `patchbay run` read the file with).
//!
//! The documents are built from the real schema: `[general]`, `[http]`, `[bus]`, accounts of
//! every built-in connector kind (console, IRC, Matrix, SSH chat, webhook, API) with random
//! names, and `[[route]]`s between their rooms. Each valid document is then given at most one
//! mistake a person makes: a misspelt key, a value of the wrong type, a value out of range, an
//! account or table name that does not exist, a duplicate route, a zero rate limit, a bad
//! account name, or the file cut off anywhere. What holds:
//! - nothing panics, whatever the text;
//! - a valid document loads, with every account and route in it;
//! - a document with a mistake is refused, and the refusal names the file, the line the mistake
//!   is on and the key it is about, with a message saying what is wrong; and no diagnostic of
//!   it lacks a line (only an unreadable file is a mistake of the whole file).

use std::path::Path;

use proptest::prelude::*;

use patchbay::config::{self, Diagnostics};
use patchbay::connectors::Registry;

const FILE: &str = "/etc/patchbay/patchbay.toml";

/// A value as written in the file.
#[derive(Clone, Debug)]
enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
    List(Vec<String>),
    /// Written as is (inline tables, wrong literals).
    Raw(String),
}

impl Value {
    fn render(&self) -> String {
        match self {
            Value::Str(s) => quote(s),
            Value::Int(i) => i.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::List(items) => format!(
                "[{}]",
                items
                    .iter()
                    .map(|s| quote(s))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Value::Raw(raw) => raw.clone(),
        }
    }

    /// A value of another type than this one.
    fn wrong_type(&self) -> Value {
        match self {
            Value::Str(_) => Value::Int(42),
            Value::Int(_) => Value::Str("forty-two".into()),
            Value::Bool(_) => Value::Str("yes".into()),
            Value::List(_) => Value::Bool(true),
            Value::Raw(_) => Value::Int(7),
        }
    }
}

/// A TOML basic string, escaped.
fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One table of the document.
#[derive(Clone, Debug)]
struct Table {
    /// `[irc.a]`, `[[route]]`, `[general]`.
    header: String,
    /// What a diagnostic about a key of this table starts its key with.
    path: String,
    entries: Vec<(String, Value)>,
}

/// An account: its `PROTOCOL.NAME` and a room of it that routes may name.
#[derive(Clone, Debug)]
struct Account {
    name: String,
    room: String,
}

#[derive(Clone, Debug)]
struct Doc {
    tables: Vec<Table>,
    accounts: usize,
    routes: usize,
}

impl Doc {
    /// The text, and for each (table, entry) the 1-based line it is on; a table's header line
    /// is at entry `usize::MAX`.
    fn render(&self) -> (String, Vec<(usize, usize, usize)>) {
        let mut text = String::from("# built by config_props\n");
        let mut line = 2;
        let mut lines = Vec::new();
        for (t, table) in self.tables.iter().enumerate() {
            text.push_str(&table.header);
            text.push('\n');
            lines.push((t, usize::MAX, line));
            line += 1;
            for (e, (key, value)) in table.entries.iter().enumerate() {
                text.push_str(&format!("{key} = {}\n", value.render()));
                lines.push((t, e, line));
                line += 1;
            }
            text.push('\n');
            line += 1;
        }
        (text, lines)
    }

    fn line_of(&self, table: usize, entry: usize) -> usize {
        let (_, lines) = self.render();
        lines
            .iter()
            .find(|(t, e, _)| *t == table && *e == entry)
            .map_or(0, |(.., l)| *l)
    }
}

fn s(v: &str) -> Value {
    Value::Str(v.to_owned())
}

/// A valid account of `protocol` named `name`, and a room of it.
fn account(protocol: usize, name: &str, nick: &str) -> (Table, Account) {
    let (proto, entries, room): (&str, Vec<(&str, Value)>, &str) = match protocol {
        0 => (
            "console",
            vec![("input", s("none")), ("nick", s(nick))],
            "lobby",
        ),
        1 => (
            "irc",
            vec![
                ("server", s("127.0.0.1")),
                ("port", Value::Int(6667)),
                ("tls", Value::Bool(false)),
                ("nick", s(nick)),
                ("channels", Value::List(vec!["#a".into(), "#b".into()])),
            ],
            "#a",
        ),
        2 => (
            "matrix",
            vec![
                ("homeserver", s("http://127.0.0.1:8008")),
                ("user", s(&format!("@{nick}:localhost"))),
                ("password", s("pässword \"quoted\"")),
                ("rooms", Value::List(vec!["#a:localhost".into()])),
            ],
            "#a:localhost",
        ),
        3 => (
            "sshchat",
            vec![
                ("server", s("127.0.0.1:2221")),
                ("dialect", s("devzat")),
                ("nick", s(nick)),
                ("rooms", Value::List(vec!["#main".into()])),
            ],
            "#main",
        ),
        4 => ("webhook", vec![("token", s("tøken-lång-enough"))], "builds"),
        _ => ("api", vec![("token", s("a-long-api-token"))], "lobby"),
    };
    let full = format!("{proto}.{name}");
    (
        Table {
            header: format!("[{full}]"),
            path: full.clone(),
            entries: entries
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        },
        Account {
            name: full,
            room: room.to_owned(),
        },
    )
}

fn general(gateway_id: String, with_kinds: bool) -> Table {
    let mut entries = vec![
        ("data_dir".to_owned(), s("data")),
        ("gateway_id".to_owned(), Value::Str(gateway_id)),
        ("retention".to_owned(), s("7d")),
        ("nick_format".to_owned(), s("[{protocol}] {nick}")),
    ];
    if with_kinds {
        entries.push((
            "kinds".to_owned(),
            Value::List(vec!["message".into(), "action".into(), "join".into()]),
        ));
    }
    Table {
        header: "[general]".into(),
        path: "general".into(),
        entries,
    }
}

fn route(name: &str, rooms: Vec<String>) -> Table {
    Table {
        header: "[[route]]".into(),
        path: "route".into(),
        entries: vec![
            ("name".to_owned(), s(name)),
            ("inout".to_owned(), Value::List(rooms)),
        ],
    }
}

/// A valid document.
fn doc() -> impl Strategy<Value = Doc> {
    (
        proptest::collection::vec((0usize..6, "[a-z][a-z0-9_-]{0,8}", "[a-z]{1,8}"), 1..7),
        "[^$\\p{C}]{1,20}",
        any::<bool>(),
        any::<bool>(),
        proptest::collection::vec(
            (
                proptest::collection::vec(any::<prop::sample::Index>(), 2..4),
                "[a-z][a-z0-9 -]{0,10}",
            ),
            0..4,
        ),
    )
        .prop_map(|(accounts, gateway_id, with_http, with_bus, routes)| {
            let mut tables = vec![general(gateway_id, !with_bus)];
            if with_http {
                tables.push(Table {
                    header: "[http]".into(),
                    path: "http".into(),
                    entries: vec![("listen".into(), s("127.0.0.1:8080"))],
                });
            }
            if with_bus {
                tables.push(Table {
                    header: "[bus]".into(),
                    path: "bus".into(),
                    entries: vec![("engine".into(), s("embedded"))],
                });
            }
            let mut made: Vec<Account> = Vec::new();
            for (protocol, name, nick) in accounts {
                let (table, acct) = account(protocol, &name, &nick);
                if made.iter().any(|a| a.name == acct.name) {
                    continue;
                }
                tables.push(table);
                made.push(acct);
            }
            let account_count = made.len();
            let mut route_names: Vec<String> = Vec::new();
            for (picks, name) in routes {
                let mut rooms: Vec<String> = Vec::new();
                for pick in picks {
                    let a = pick.get(&made);
                    let room = format!("{}/{}", a.name, a.room);
                    if !rooms.contains(&room) {
                        rooms.push(room);
                    }
                }
                let name = name.trim().to_owned();
                if rooms.len() < 2 || name.is_empty() || route_names.contains(&name) {
                    continue;
                }
                route_names.push(name.clone());
                tables.push(route(&name, rooms));
            }
            Doc {
                tables,
                accounts: account_count,
                routes: route_names.len(),
            }
        })
}

/// A mistake to make in a valid document.
#[derive(Clone, Debug)]
enum Mistake {
    /// Double a letter of a key.
    Typo(prop::sample::Index, prop::sample::Index),
    /// Give a key a value of another type.
    WrongType(prop::sample::Index),
    /// An IRC port past 65535, a listen address past it, a duration that is none.
    OutOfRange(prop::sample::Index),
    /// A route names an account that is not in the file.
    UnknownAccount,
    /// A table nobody knows: `[genral]`, `[ircc.x]`.
    UnknownTable(prop::sample::Index),
    /// A second route with the name of the first.
    DuplicateRoute,
    /// `rate_limit = { messages = 0, ... }` on a route.
    ZeroRateLimit,
    /// A kind of event that does not exist.
    UnknownKind,
    /// An account name with a dot or a space.
    BadAccountName,
}

fn mistake() -> impl Strategy<Value = Mistake> {
    prop_oneof![
        3 => (any::<prop::sample::Index>(), any::<prop::sample::Index>()).prop_map(|(a, b)| Mistake::Typo(a, b)),
        3 => any::<prop::sample::Index>().prop_map(Mistake::WrongType),
        2 => any::<prop::sample::Index>().prop_map(Mistake::OutOfRange),
        1 => Just(Mistake::UnknownAccount),
        1 => any::<prop::sample::Index>().prop_map(Mistake::UnknownTable),
        1 => Just(Mistake::DuplicateRoute),
        1 => Just(Mistake::ZeroRateLimit),
        1 => Just(Mistake::UnknownKind),
        1 => Just(Mistake::BadAccountName),
    ]
}

/// Make the mistake; `None` when this document has no place for it. Returns the line the
/// diagnostic must name and a part of the key it must name.
fn make(doc: &mut Doc, mistake: &Mistake) -> Option<(usize, String)> {
    let sites: Vec<(usize, usize)> = doc
        .tables
        .iter()
        .enumerate()
        .flat_map(|(t, table)| (0..table.entries.len()).map(move |e| (t, e)))
        .collect();
    let first_route = doc.tables.iter().position(|t| t.header == "[[route]]");
    match mistake {
        Mistake::Typo(site, at) => {
            let (t, e) = *site.get(&sites);
            let key = &mut doc.tables[t].entries[e].0;
            let chars: Vec<char> = key.chars().collect();
            let i = at.index(chars.len());
            let mut typo: String = chars[..=i].iter().collect();
            typo.extend(&chars[i..]);
            *key = typo;
            Some((doc.line_of(t, e), doc.tables[t].path.clone()))
        }
        Mistake::WrongType(site) => {
            let (t, e) = *site.get(&sites);
            let value = &mut doc.tables[t].entries[e].1;
            *value = value.wrong_type();
            Some((doc.line_of(t, e), doc.tables[t].path.clone()))
        }
        Mistake::OutOfRange(pick) => {
            let candidates: Vec<(usize, usize, Value)> = doc
                .tables
                .iter()
                .enumerate()
                .flat_map(|(t, table)| {
                    table
                        .entries
                        .iter()
                        .enumerate()
                        .filter_map(move |(e, (k, _))| {
                            match (table.path.split('.').next(), k.as_str()) {
                                (Some("irc"), "port") => Some((t, e, Value::Int(70_000))),
                                (Some("http"), "listen") => Some((t, e, s("127.0.0.1:99999"))),
                                (Some("general"), "retention") => Some((t, e, s("-3d"))),
                                (Some("sshchat"), "dialect") => Some((t, e, s("telnet"))),
                                (Some("matrix"), "homeserver") => Some((t, e, s("not a url"))),
                                _ => None,
                            }
                        })
                })
                .collect();
            if candidates.is_empty() {
                return None;
            }
            let (t, e, value) = pick.get(&candidates).clone();
            doc.tables[t].entries[e].1 = value;
            Some((doc.line_of(t, e), doc.tables[t].path.clone()))
        }
        Mistake::UnknownAccount => {
            let t = first_route?;
            let Value::List(rooms) = &mut doc.tables[t].entries[1].1 else {
                return None;
            };
            rooms[0] = "irc.nosuchaccount/#x".into();
            Some((doc.line_of(t, 1), "inout".into()))
        }
        Mistake::UnknownTable(pick) => {
            let header = pick
                .get(&["[genral]", "[ircc.x]", "[routes]", "[[rute]]", "[htttp]"])
                .to_string();
            let key = header
                .trim_matches(['[', ']'])
                .split('.')
                .next()?
                .to_owned();
            doc.tables.push(Table {
                header,
                path: key.clone(),
                entries: vec![("x".into(), Value::Int(1))],
            });
            Some((doc.line_of(doc.tables.len() - 1, usize::MAX), key))
        }
        Mistake::DuplicateRoute => {
            let t = first_route?;
            let copy = doc.tables[t].clone();
            doc.tables.push(copy);
            let line = doc.line_of(doc.tables.len() - 1, 0);
            Some((line, "route".into()))
        }
        Mistake::ZeroRateLimit => {
            let t = first_route?;
            doc.tables[t].entries.push((
                "rate_limit".into(),
                Value::Raw("{ messages = 0, per = \"1s\" }".into()),
            ));
            let e = doc.tables[t].entries.len() - 1;
            Some((doc.line_of(t, e), "rate_limit".into()))
        }
        Mistake::UnknownKind => {
            let t = doc.tables.iter().position(|t| t.path == "general")?;
            // A second `kinds` would be a duplicate key: replace the one there is.
            let entries = &mut doc.tables[t].entries;
            entries.retain(|(k, _)| k != "kinds");
            entries.push(("kinds".into(), Value::List(vec!["mesage".into()])));
            let e = entries.len() - 1;
            Some((doc.line_of(t, e), "kinds".into()))
        }
        Mistake::BadAccountName => {
            doc.tables.push(Table {
                header: "[webhook.\"bad name.x\"]".into(),
                path: "webhook".into(),
                entries: vec![("token".into(), s("a-long-hook-token"))],
            });
            Some((
                doc.line_of(doc.tables.len() - 1, usize::MAX),
                "webhook".into(),
            ))
        }
    }
}

fn parse(text: &str) -> Result<config::Config, Diagnostics> {
    config::parse(Path::new(FILE), text, &Registry::builtin())
}

/// What every refusal holds, whatever the mistake.
fn check_refusal(text: &str, diagnostics: &Diagnostics) -> Result<(), TestCaseError> {
    prop_assert!(!diagnostics.0.is_empty(), "refused without a reason");
    for d in &diagnostics.0 {
        prop_assert_eq!(d.file.as_path(), Path::new(FILE));
        prop_assert!(d.line > 0, "no line in {}\n--- for ---\n{}", d, text);
        prop_assert!(!d.message.trim().is_empty(), "no message in {:?}", d);
        prop_assert!(d.to_string().starts_with(FILE), "{}", d);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn a_valid_document_loads_with_every_account_and_route(doc in doc()) {
        let (text, _) = doc.render();
        match parse(&text) {
            Ok(config) => {
                prop_assert_eq!(config.accounts.len(), doc.accounts);
                prop_assert_eq!(config.routes.len(), doc.routes);
            }
            Err(diagnostics) => prop_assert!(false, "{}\n--- for ---\n{}", diagnostics, text),
        }
    }

    #[test]
    fn a_mistake_is_named_by_file_line_and_key(mut doc in doc(), mistake in mistake()) {
        let Some((line, key)) = make(&mut doc, &mistake) else {
            return Ok(());
        };
        let (text, _) = doc.render();
        let diagnostics = match parse(&text) {
            Ok(_) => {
                return Err(TestCaseError::fail(format!("{mistake:?} was accepted:\n{text}")));
            }
            Err(diagnostics) => diagnostics,
        };
        check_refusal(&text, &diagnostics)?;
        prop_assert!(
            diagnostics.0.iter().any(|d| d.line == line && d.key.contains(&key)),
            "{:?}: no diagnostic names line {} and key `{}`:\n{}\n--- for ---\n{}",
            mistake, line, key, diagnostics, text
        );
    }

    #[test]
    fn a_document_cut_anywhere_loads_or_is_refused_with_lines(doc in doc(), at in any::<prop::sample::Index>()) {
        let (text, _) = doc.render();
        let mut cut = at.index(text.len() + 1);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let text = &text[..cut];
        if let Err(diagnostics) = parse(text) {
            check_refusal(text, &diagnostics)?;
        }
    }

    #[test]
    fn any_text_loads_or_is_refused_without_panicking(
        text in prop_oneof![
            "\\PC{0,200}",
            "(\\[{1,2}[a-z.\"]{0,10}\\]{0,2}\n|[a-z_\"]{1,8} ?= ?(\"[^\"\n]{0,10}\"?|[0-9-]{1,6}|\\[|\\{|true|x)\n){0,20}",
        ],
    ) {
        if let Err(diagnostics) = parse(&text) {
            for d in &diagnostics.0 {
                prop_assert_eq!(d.file.as_path(), Path::new(FILE));
            }
        }
    }
}

/// Cases the properties found, kept: mistakes reported without a line.
mod found {
    use super::*;

    const ACCOUNTS: &str = "[console.a]\ninput = \"none\"\n[console.b]\ninput = \"none\"\n";

    fn only_diagnostic(text: &str) -> config::Diagnostic {
        let diagnostics = parse(text).err().expect("refused");
        assert_eq!(diagnostics.0.len(), 1, "{diagnostics}");
        diagnostics.0[0].clone()
    }

    #[test]
    fn a_second_route_of_the_same_name_is_named_by_its_line() {
        let route = "[[route]]\nname = \"r\"\ninout = [\"console.a/x\", \"console.b/x\"]\n";
        let d = only_diagnostic(&format!("{ACCOUNTS}{route}{route}"));
        assert_eq!((d.line, d.key.as_str()), (9, "route \"r\".name"), "{d}");
    }

    #[test]
    fn a_zero_rate_limit_is_named_by_its_line() {
        let route = "[[route]]\nname = \"r\"\ninout = [\"console.a/x\", \"console.b/x\"]\n\
                     rate_limit = { messages = 0, per = \"1s\" }\n";
        let d = only_diagnostic(&format!("{ACCOUNTS}{route}"));
        assert_eq!(d.line, 8, "{d}");
        assert!(d.key.ends_with("rate_limit"), "{d}");
    }
}
