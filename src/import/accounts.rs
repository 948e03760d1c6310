//! matterbridge accounts → patchbay accounts.
//!
//! IRC, Matrix, sshchat and API accounts become accounts of the same protocol; Slack, Discord
//! and Mattermost accounts become outbound webhook accounts when they have a `WebhookURL`
//! (their bot APIs are not patchbay connectors, so their channels only receive). Every other
//! protocol is left out, said so once per account. The per-protocol key mapping lives in
//! `protocols.rs`; this file holds what every account shares: names, the settings routes read,
//! the rooms gateways add, and the final check through patchbay's own connector factories.

use std::path::PathBuf;

use regex::Regex;

use super::emit::{TableOut, Val};
use super::report::Findings;
use super::source::AccountView;
use crate::connectors::Registry;
use patchbay_sdk::factory::AccountInfo;

/// Rewrite rules: `(regex, replacement)` in order.
pub type Rules = Vec<(String, String)>;

/// What routes need to know of an account: matterbridge's routing settings, resolved with the
/// `[general]` fallback. Each comes with the key it was read from, for reports.
#[derive(Clone, Debug, Default)]
pub struct Routing {
    pub nick_format: Option<(String, String)>,
    pub label: String,
    pub ignore_nicks: Vec<String>,
    pub ignore_text: Vec<String>,
    pub rewrite: Option<(Rules, String)>,
    pub show_join_part: bool,
    pub no_send_join_part: Option<String>,
}

/// How an account's rooms are written into its table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoomStyle {
    /// `channels = ["#a", { name = "#b", key = "k" }]`.
    IrcChannels,
    /// `rooms = ["#a:server"]`.
    MatrixRooms,
    /// ssh-chat's one room, `#main`.
    SshChat,
    /// Any room name; nothing to list.
    Api,
    /// `[webhook.NAME.rooms.ROOM] url = ...` when the room has its own URL.
    Webhook,
}

/// One account on its way into the patchbay config.
#[derive(Debug)]
pub struct Planned {
    /// The account as the matterbridge file names it (`irc.libera`).
    pub mb_id: String,
    /// `PROTOCOL.NAME` in patchbay.
    pub pb: String,
    pub protocol: &'static str,
    /// The account's keys, in order.
    pub keys: Vec<(String, Val)>,
    /// Which matterbridge key each patchbay key came from, for reporting a refused one.
    pub origin: Vec<(String, String)>,
    /// Keys the account cannot do without: refusing one of them drops the account.
    pub required: &'static [&'static str],
    pub style: RoomStyle,
    /// IRC channel keys and webhook URLs per room, in the order gateways added them.
    pub rooms: Vec<(String, Option<String>)>,
    /// Whether events from this account reach patchbay (outbound webhooks: no).
    pub feeds: bool,
    pub routing: Routing,
    /// False once the account is dropped; its rooms leave every route.
    pub alive: bool,
    /// Whether an enabled gateway names the account.
    pub used: bool,
    /// API accounts: the `[http]` listener matterbridge's `BindAddress` asks for, and that key.
    pub listen: Option<(std::net::SocketAddr, String)>,
}

impl Planned {
    pub fn new(mb_id: &str, pb: String, protocol: &'static str, style: RoomStyle) -> Self {
        Planned {
            mb_id: mb_id.to_owned(),
            pb,
            protocol,
            keys: Vec::new(),
            origin: Vec::new(),
            required: &[],
            style,
            rooms: Vec::new(),
            feeds: true,
            routing: Routing::default(),
            alive: true,
            used: false,
            listen: None,
        }
    }

    /// Set a key carried over from the matterbridge key `from`.
    pub fn set(&mut self, key: &str, value: Val, from: &str) {
        match self.keys.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value,
            None => self.keys.push((key.to_owned(), value)),
        }
        self.origin.push((key.to_owned(), from.to_owned()));
    }

    fn remove(&mut self, key: &str) {
        self.keys.retain(|(k, _)| k != key);
    }

    /// Add a room a gateway names; its options (`key`, a per-channel `WebhookURL`) ride along.
    pub fn add_room(&mut self, room: &str, option: Option<String>) {
        match self.rooms.iter_mut().find(|(r, _)| r == room) {
            Some(existing) => {
                if existing.1.is_none() {
                    existing.1 = option;
                }
            }
            None => self.rooms.push((room.to_owned(), option)),
        }
    }

    /// The account's tables as written out: its own, then one per webhook room with a URL.
    pub fn tables(&self) -> Vec<TableOut> {
        let (protocol, name) = self.pb.split_once('.').unwrap_or((self.protocol, &self.pb));
        let header = format!("{}.{}", super::emit::key(protocol), super::emit::key(name));
        let mut main = TableOut::new(header.clone());
        main.entries = self.keys.clone();
        let mut tables = Vec::new();
        match self.style {
            RoomStyle::IrcChannels if !self.rooms.is_empty() => {
                let channels = self
                    .rooms
                    .iter()
                    .map(|(room, key)| match key {
                        Some(key) => Val::Inline(vec![
                            ("name".into(), Val::str(room)),
                            ("key".into(), Val::str(key)),
                        ]),
                        None => Val::str(room),
                    })
                    .collect();
                main.set("channels", Val::List(channels));
            }
            RoomStyle::MatrixRooms if !self.rooms.is_empty() => {
                main.set(
                    "rooms",
                    Val::strs(self.rooms.iter().map(|(r, _)| r.clone())),
                );
            }
            RoomStyle::SshChat => main.set("rooms", Val::strs(["#main"])),
            _ => {}
        }
        let webhook_rooms: Vec<TableOut> = if self.style == RoomStyle::Webhook {
            self.rooms
                .iter()
                .filter_map(|(room, url)| {
                    let url = url.as_ref()?;
                    let mut table =
                        TableOut::new(format!("{header}.rooms.{}", super::emit::key(room)));
                    table.set("url", Val::str(url));
                    Some(table)
                })
                .collect()
        } else {
            Vec::new()
        };
        tables.push(main);
        tables.extend(webhook_rooms);
        tables
    }

    /// The account's table as patchbay's factory receives it.
    fn toml_table(&self) -> toml::Table {
        let mut table = toml::Table::new();
        let tables = self.tables();
        if let Some(main) = tables.first() {
            for (k, v) in &main.entries {
                table.insert(k.clone(), to_toml(v));
            }
        }
        let mut rooms = toml::Table::new();
        for (room, url) in &self.rooms {
            if let (RoomStyle::Webhook, Some(url)) = (self.style, url) {
                let mut t = toml::Table::new();
                t.insert("url".into(), toml::Value::String(url.clone()));
                rooms.insert(room.clone(), toml::Value::Table(t));
            }
        }
        if !rooms.is_empty() {
            table.insert("rooms".into(), toml::Value::Table(rooms));
        }
        table
    }

    /// Build the account with patchbay's own factory, as `patchbay check` will. A refused
    /// optional key is removed and reported; a refused account is dropped and reported.
    /// Protocols this build lacks (Matrix without the `matrix` feature) are not checked here.
    pub fn check(&mut self, registry: &Registry, findings: &mut Findings) {
        let Some(factory) = registry.get(self.protocol) else {
            return;
        };
        let scratch = std::env::temp_dir().join("patchbay-import-check");
        let info = AccountInfo {
            account: self.pb.clone(),
            config_dir: PathBuf::from("."),
            data_dir: scratch.join(&self.pb),
        };
        // Each round removes one refused key; an account has far fewer keys than this.
        for _ in 0..32 {
            let Err(err) = factory.build(&info, self.toml_table()) else {
                return;
            };
            let key = err.path.first().cloned().unwrap_or_default();
            let present = self.keys.iter().any(|(k, _)| *k == key);
            if !present || self.required.contains(&key.as_str()) {
                findings.skip(
                    &self.mb_id,
                    format!("patchbay would refuse the account: {}", err.message),
                );
                self.alive = false;
                return;
            }
            let from = self
                .origin
                .iter()
                .rev()
                .find(|(k, _)| *k == key)
                .map_or_else(|| format!("{}.{key}", self.mb_id), |(_, f)| f.clone());
            findings.skip(&from, format!("patchbay refuses `{key}`: {}", err.message));
            self.remove(&key);
        }
        self.alive = false;
    }
}

fn to_toml(val: &Val) -> toml::Value {
    match val {
        Val::Str(s) => toml::Value::String(s.clone()),
        Val::Int(i) => toml::Value::Integer(*i),
        Val::Float(f) => toml::Value::Float(*f),
        Val::Bool(b) => toml::Value::Boolean(*b),
        Val::List(items) => toml::Value::Array(items.iter().map(to_toml).collect()),
        Val::Inline(entries) => toml::Value::Table(
            entries
                .iter()
                .map(|(k, v)| (k.clone(), to_toml(v)))
                .collect(),
        ),
    }
}

/// A patchbay account name from a matterbridge one: a plain word, unique among `taken`.
pub fn account_name(protocol: &str, mb_protocol: &str, name: &str, taken: &[String]) -> String {
    let plain: String = name
        .chars()
        .map(|c| {
            if c == '/' || c == '.' || c.is_whitespace() {
                '_'
            } else {
                c
            }
        })
        .collect();
    let plain = if plain.is_empty() {
        "account".to_owned()
    } else {
        plain
    };
    let mut candidate = format!("{protocol}.{plain}");
    if taken.contains(&candidate) {
        candidate = format!("{protocol}.{mb_protocol}_{plain}");
    }
    let base = candidate.clone();
    let mut n = 2;
    while taken.contains(&candidate) {
        candidate = format!("{base}{n}");
        n += 1;
    }
    candidate
}

/// Read the settings routes use, for any account (matterbridge reads them for every protocol).
pub fn routing(view: &AccountView<'_>, findings: &mut Findings) -> Routing {
    let mut routing = Routing {
        nick_format: view.string("RemoteNickFormat", findings),
        label: view
            .string("Label", findings)
            .map(|(l, _)| l)
            .unwrap_or_default(),
        ..Routing::default()
    };
    // matterbridge splits both lists at whitespace and reads each word as a regex.
    for (key, into) in [
        ("IgnoreNicks", &mut routing.ignore_nicks),
        ("IgnoreMessages", &mut routing.ignore_text),
    ] {
        if let Some((text, from)) = view.string(key, findings) {
            for word in text.split_whitespace() {
                match Regex::new(word) {
                    Ok(_) => into.push(word.to_owned()),
                    Err(err) => findings.skip(&from, not_a_regex(word, &err)),
                }
            }
        }
    }
    if let Some((pairs, from)) = view.pairs("ReplaceMessages", findings) {
        let mut kept = Vec::new();
        for (search, replace) in pairs {
            match Regex::new(&search) {
                Ok(_) => kept.push((search, replace)),
                Err(err) => findings.skip(&from, not_a_regex(&search, &err)),
            }
        }
        if !kept.is_empty() {
            routing.rewrite = Some((kept, from));
        }
    }
    routing.show_join_part = view.flag("ShowJoinPart", findings).0;
    if let (true, Some(from)) = view.flag("NoSendJoinPart", findings) {
        routing.no_send_join_part = Some(from);
    }
    routing
}

fn not_a_regex(pattern: &str, err: &regex::Error) -> String {
    let detail = err.to_string();
    let last = detail.lines().last().unwrap_or("invalid").trim().to_owned();
    format!("`{pattern}` is not a regex patchbay accepts ({last}); it was left out")
}
