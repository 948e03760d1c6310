//! Reading a matterbridge config the way matterbridge reads it.
//!
//! matterbridge reads its file with viper, so keys match whatever their case (`Server`,
//! `server`), and an account's setting that is not set falls back to the same key in
//! `[general]`. A [`Section`] answers lookups case-insensitively and remembers each key it was
//! asked for, so that every key nobody read can be reported as not carried over. Pure: no I/O.

use std::cell::RefCell;
use std::collections::BTreeSet;

use toml::{Table, Value};

use super::report::Findings;

/// One table of the file (`[irc.libera]`, `[general]`, a gateway entry's `options`).
#[derive(Debug, Default)]
pub struct Section {
    /// Where the table is, as reports name it: `irc.libera`, `general`.
    pub path: String,
    table: Table,
    /// The keys (as written) that a lookup found.
    read: RefCell<BTreeSet<String>>,
}

impl Section {
    pub fn new(path: impl Into<String>, table: Table) -> Self {
        Section {
            path: path.into(),
            table,
            read: RefCell::default(),
        }
    }

    /// Keys no lookup asked for, in key order, with their values.
    pub fn unread(&self) -> Vec<(String, &Value)> {
        let read = self.read.borrow();
        self.table
            .iter()
            .filter(|(k, _)| !read.contains(*k))
            .map(|(k, v)| (k.clone(), v))
            .collect()
    }

    /// The value of `key`, matched as viper does, regardless of case.
    pub fn get(&self, key: &str) -> Option<Found<'_>> {
        let (written, value) = self
            .table
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))?;
        self.read.borrow_mut().insert(written.clone());
        Some(Found {
            key: format!("{}.{written}", self.path),
            value,
        })
    }
}

/// One value found in the file, with the key path reports name it by.
#[derive(Clone, Debug)]
pub struct Found<'a> {
    /// `irc.libera.Nick`, or `general.Nick` when the account fell back to `[general]`.
    pub key: String,
    pub value: &'a Value,
}

/// An account's settings: its own table, then `[general]` (matterbridge's fallback).
pub struct AccountView<'a> {
    pub own: &'a Section,
    pub general: &'a Section,
}

impl<'a> AccountView<'a> {
    /// The account's value for `key`, or `[general]`'s.
    pub fn find(&self, key: &str) -> Option<Found<'a>> {
        // Read `[general]`'s key too when the account overrides it, so that it is not reported
        // as unused: matterbridge would not use it for this account either.
        let fallback = self.general.get(key);
        self.own.get(key).or(fallback)
    }

    /// A string setting; a value of another type is reported and ignored.
    pub fn string(&self, key: &str, findings: &mut Findings) -> Option<(String, String)> {
        let found = self.find(key)?;
        match found.value {
            Value::String(s) => Some((s.clone(), found.key)),
            other => {
                findings.skip(
                    &found.key,
                    format!("expected a string, found {}", kind(other)),
                );
                None
            }
        }
    }

    /// A non-empty string setting (matterbridge treats `""` as unset).
    pub fn text(&self, key: &str, findings: &mut Findings) -> Option<(String, String)> {
        self.string(key, findings).filter(|(s, _)| !s.is_empty())
    }

    /// A boolean setting, false when unset.
    pub fn flag(&self, key: &str, findings: &mut Findings) -> (bool, Option<String>) {
        let Some(found) = self.find(key) else {
            return (false, None);
        };
        match found.value {
            Value::Boolean(b) => (*b, Some(found.key)),
            Value::String(s) if s.eq_ignore_ascii_case("true") => (true, Some(found.key)),
            Value::String(s) if s.eq_ignore_ascii_case("false") => (false, Some(found.key)),
            other => {
                findings.skip(
                    &found.key,
                    format!("expected true or false, found {}", kind(other)),
                );
                (false, None)
            }
        }
    }

    /// An integer setting.
    pub fn int(&self, key: &str, findings: &mut Findings) -> Option<(i64, String)> {
        let found = self.find(key)?;
        match found.value {
            Value::Integer(i) => Some((*i, found.key)),
            Value::String(s) if s.trim().parse::<i64>().is_ok() => {
                s.trim().parse().ok().map(|i| (i, found.key))
            }
            other => {
                findings.skip(
                    &found.key,
                    format!("expected a number, found {}", kind(other)),
                );
                None
            }
        }
    }

    /// A list of strings (a lone string counts as a list of one, as viper reads it).
    pub fn strings(&self, key: &str, findings: &mut Findings) -> Option<(Vec<String>, String)> {
        let found = self.find(key)?;
        match found.value {
            Value::String(s) => Some((vec![s.clone()], found.key)),
            Value::Array(items) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(s) => out.push(s.clone()),
                        other => findings.skip(
                            &format!("{}[{i}]", found.key),
                            format!("expected a string, found {}", kind(other)),
                        ),
                    }
                }
                Some((out, found.key))
            }
            other => {
                findings.skip(
                    &found.key,
                    format!("expected a list of strings, found {}", kind(other)),
                );
                None
            }
        }
    }

    /// A list of `[search, replace]` pairs (`ReplaceMessages`, `ReplaceNicks`).
    pub fn pairs(
        &self,
        key: &str,
        findings: &mut Findings,
    ) -> Option<(Vec<(String, String)>, String)> {
        let found = self.find(key)?;
        let Value::Array(items) = found.value else {
            findings.skip(
                &found.key,
                format!(
                    "expected a list of [search, replace] pairs, found {}",
                    kind(found.value)
                ),
            );
            return None;
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match item.as_array().map(Vec::as_slice) {
                Some([Value::String(search), Value::String(replace)]) => {
                    out.push((search.clone(), replace.clone()))
                }
                _ => findings.skip(
                    &format!("{}[{i}]", found.key),
                    "expected a pair of strings [\"search\", \"replace\"]",
                ),
            }
        }
        Some((out, found.key))
    }
}

/// Mark every key of a section as read: what it belongs to is reported once, as a whole.
pub fn drop_read(section: &Section) {
    for (key, _) in section.unread() {
        let _ = section.get(&key);
    }
}

/// A TOML value's type, for reports.
pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date",
        Value::Array(_) => "a list",
        Value::Table(_) => "a table",
    }
}

/// How a gateway entry takes part: `[[gateway.in]]`, `[[gateway.out]]`, `[[gateway.inout]]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    In,
    Out,
    InOut,
}

/// One `[PROTOCOL.NAME]` table.
#[derive(Debug)]
pub struct MbAccount {
    /// Lower case, as matterbridge compares it (`irc`, `slack`).
    pub protocol: String,
    /// As written.
    pub name: String,
    pub section: Section,
}

impl MbAccount {
    /// `protocol.name`, the way gateways name the account.
    pub fn id(&self) -> String {
        format!("{}.{}", self.protocol, self.name)
    }
}

/// One entry of a gateway: an account's channel and its direction.
#[derive(Debug)]
pub struct MbMember {
    /// `gateway "main".inout[0]`.
    pub path: String,
    pub account: String,
    pub channel: String,
    pub dir: Dir,
    /// The entry's own table (for reporting keys nobody read).
    pub section: Section,
    /// `[gateway.inout.options]`: `key`, `WebhookURL`.
    pub options: Section,
}

/// One `[[gateway]]` (or one expanded `[[samechannelgateway]]`).
#[derive(Debug)]
pub struct MbGateway {
    /// `gateway "main"`.
    pub path: String,
    pub name: String,
    pub enable: bool,
    pub section: Section,
    pub members: Vec<MbMember>,
}

/// A matterbridge config, read.
#[derive(Debug, Default)]
pub struct MbFile {
    pub general: Section,
    pub accounts: Vec<MbAccount>,
    pub gateways: Vec<MbGateway>,
}

impl MbFile {
    /// The account a gateway entry names (matterbridge's names are case-insensitive).
    pub fn account(&self, id: &str) -> Option<&MbAccount> {
        self.accounts
            .iter()
            .find(|a| a.id().eq_ignore_ascii_case(id))
    }

    /// Every table of the file, for reporting keys no part of the import read.
    pub fn sections(&self) -> Vec<&Section> {
        let mut all = vec![&self.general];
        all.extend(self.accounts.iter().map(|a| &a.section));
        for gateway in &self.gateways {
            all.push(&gateway.section);
            for member in &gateway.members {
                all.push(&member.section);
                all.push(&member.options);
            }
        }
        all
    }
}

/// Read the file's tables. Tables patchbay has no use for at all (`[tengo]`) are reported here.
pub fn read(source: &str, findings: &mut Findings) -> Result<MbFile, toml::de::Error> {
    let root: Table = toml::from_str(source)?;
    let mut file = MbFile {
        general: Section::new("general", Table::new()),
        ..MbFile::default()
    };
    for (key, value) in root {
        match (key.to_ascii_lowercase().as_str(), value) {
            ("general", Value::Table(table)) => file.general = Section::new(key, table),
            ("tengo", Value::Table(table)) => {
                for name in table.keys() {
                    findings.skip(
                        &format!("{key}.{name}"),
                        "patchbay runs no Tengo scripts; routes' ignore and rewrite rules cover the common uses",
                    );
                }
            }
            ("gateway", Value::Array(items)) => {
                for (i, item) in items.into_iter().enumerate() {
                    if let Some(gateway) = read_gateway(&key, i, item, false, findings) {
                        file.gateways.push(gateway);
                    }
                }
            }
            ("samechannelgateway", Value::Array(items)) => {
                for (i, item) in items.into_iter().enumerate() {
                    if let Some(gateway) = read_gateway(&key, i, item, true, findings) {
                        file.gateways.push(gateway);
                    }
                }
            }
            (protocol, Value::Table(accounts)) => {
                for (name, table) in accounts {
                    match table {
                        Value::Table(table) => file.accounts.push(MbAccount {
                            protocol: protocol.to_owned(),
                            section: Section::new(format!("{key}.{name}"), table),
                            name,
                        }),
                        other => findings.skip(
                            &format!("{key}.{name}"),
                            format!(
                                "expected an account table [{key}.{name}], found {}",
                                kind(&other)
                            ),
                        ),
                    }
                }
            }
            (_, other) => findings.skip(
                &key,
                format!("not a matterbridge table (found {})", kind(&other)),
            ),
        }
    }
    Ok(file)
}

fn read_gateway(
    key: &str,
    index: usize,
    item: Value,
    same_channel: bool,
    findings: &mut Findings,
) -> Option<MbGateway> {
    let Value::Table(table) = item else {
        findings.skip(&format!("{key}[{index}]"), "expected a table");
        return None;
    };
    let section = Section::new(format!("{key}[{index}]"), table);
    let view = AccountView {
        own: &section,
        general: &Section::default(),
    };
    let name = view.text("name", findings).map(|(n, _)| n);
    let path = match &name {
        Some(name) => format!("{key} {}", quoted(name)),
        None => format!("{key}[{index}]"),
    };
    let enable = view.flag("enable", findings).0;
    let mut members = Vec::new();
    if same_channel {
        let accounts = view.strings("accounts", findings).map(|(a, _)| a);
        let channels = view.strings("channels", findings).map(|(c, _)| c);
        for account in accounts.iter().flatten() {
            for channel in channels.iter().flatten() {
                members.push(MbMember {
                    path: format!(
                        "{path}.accounts {} channel {}",
                        quoted(account),
                        quoted(channel)
                    ),
                    account: account.clone(),
                    channel: channel.clone(),
                    dir: Dir::InOut,
                    section: Section::default(),
                    options: Section::default(),
                });
            }
        }
    } else {
        for (list, dir) in [("in", Dir::In), ("out", Dir::Out), ("inout", Dir::InOut)] {
            let Some(found) = section.get(list) else {
                continue;
            };
            let Value::Array(entries) = found.value else {
                findings.skip(
                    &format!("{path}.{list}"),
                    "expected [[gateway.{list}]] tables",
                );
                continue;
            };
            for (i, entry) in entries.iter().enumerate() {
                let entry_path = format!("{path}.{list}[{i}]");
                let Value::Table(entry) = entry else {
                    findings.skip(&entry_path, "expected a table with `account` and `channel`");
                    continue;
                };
                let entry = Section::new(entry_path.clone(), entry.clone());
                let entry_view = AccountView {
                    own: &entry,
                    general: &Section::default(),
                };
                let account = entry_view.text("account", findings).map(|(a, _)| a);
                let channel = entry_view.string("channel", findings).map(|(c, _)| c);
                let options = match entry.get("options").map(|f| f.value) {
                    Some(Value::Table(options)) => {
                        Section::new(format!("{entry_path}.options"), options.clone())
                    }
                    Some(other) => {
                        findings.skip(
                            &format!("{entry_path}.options"),
                            format!("expected a table, found {}", kind(other)),
                        );
                        Section::default()
                    }
                    None => Section::default(),
                };
                match (account, channel) {
                    (Some(account), Some(channel)) => members.push(MbMember {
                        path: entry_path,
                        account,
                        channel,
                        dir,
                        section: entry,
                        options,
                    }),
                    _ => findings.skip(&entry_path, "an entry needs `account` and `channel`"),
                }
            }
        }
    }
    Some(MbGateway {
        path,
        name: name.unwrap_or_default(),
        enable,
        section,
        members,
    })
}

/// A name in double quotes, for report paths.
pub fn quoted(name: &str) -> String {
    format!("{name:?}")
}
