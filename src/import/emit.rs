//! The patchbay config as text: tables in a fixed, readable order (general, http, accounts,
//! routes), each key written once. Pure.
//!
//! Every string is written with `${` doubled to `$${`, because patchbay expands `${VAR}` in
//! config strings and a matterbridge value means its text literally.

use std::fmt::Write;

/// A value in the output.
#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    List(Vec<Val>),
    /// An inline table, `{ name = "#a", key = "k" }`.
    Inline(Vec<(String, Val)>),
}

impl Val {
    pub fn str(text: impl Into<String>) -> Val {
        Val::Str(text.into())
    }

    pub fn strs<I: IntoIterator<Item = S>, S: Into<String>>(items: I) -> Val {
        Val::List(items.into_iter().map(|s| Val::Str(s.into())).collect())
    }
}

/// One `[header]` (or `[[header]]`) and its keys.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TableOut {
    /// The dotted header as written, keys already quoted where needed.
    pub header: String,
    /// `[[header]]`: one element of an array of tables.
    pub array: bool,
    pub entries: Vec<(String, Val)>,
}

impl TableOut {
    pub fn new(header: impl Into<String>) -> Self {
        TableOut {
            header: header.into(),
            ..TableOut::default()
        }
    }

    /// Set `key` (replacing an earlier value).
    pub fn set(&mut self, key: &str, value: Val) {
        match self.entries.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value,
            None => self.entries.push((key.to_owned(), value)),
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<Val> {
        let i = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.remove(i).1)
    }

    pub fn get(&self, key: &str) -> Option<&Val> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

/// A key as TOML writes it: bare when it can be, else quoted.
pub fn key(name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare { name.to_owned() } else { string(name) }
}

/// A TOML basic string for `text`, with `${` protected from patchbay's expansion.
fn quoted_value(text: &str) -> String {
    string(&text.replace("${", "$${"))
}

fn string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

fn value(val: &Val) -> String {
    match val {
        Val::Str(s) => quoted_value(s),
        Val::Int(i) => i.to_string(),
        Val::Float(f) => toml::Value::Float(*f).to_string(),
        Val::Bool(b) => b.to_string(),
        Val::List(items) => {
            let items: Vec<String> = items.iter().map(value).collect();
            format!("[{}]", items.join(", "))
        }
        Val::Inline(entries) => {
            let entries: Vec<String> = entries
                .iter()
                .map(|(k, v)| format!("{} = {}", key(k), value(v)))
                .collect();
            format!("{{ {} }}", entries.join(", "))
        }
    }
}

/// Write tables, a blank line between them; a comment, when given, goes first.
pub fn render(header_comment: &str, tables: &[TableOut]) -> String {
    let mut out = String::new();
    for line in header_comment.lines() {
        let _ = writeln!(out, "# {line}");
    }
    for table in tables {
        if table.entries.is_empty() && !table.array {
            continue;
        }
        if !out.is_empty() {
            out.push('\n');
        }
        if table.array {
            let _ = writeln!(out, "[[{}]]", table.header);
        } else {
            let _ = writeln!(out, "[{}]", table.header);
        }
        for (k, v) in &table.entries {
            let _ = writeln!(out, "{} = {}", key(k), value(v));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_and_keep_dollar_braces_literal() {
        let mut table = TableOut::new("irc.x");
        table.set("nick", Val::str("a\"b"));
        table.set("password", Val::str("p${HOME}"));
        table.set(
            "channels",
            Val::List(vec![Val::Inline(vec![("name".into(), Val::str("#a"))])]),
        );
        let text = render("", &[table]);
        let parsed: toml::Table = toml::from_str(&text).expect("valid TOML");
        assert_eq!(parsed["irc"]["x"]["nick"].as_str(), Some("a\"b"));
        assert_eq!(parsed["irc"]["x"]["password"].as_str(), Some("p$${HOME}"));
        assert_eq!(key("irc.libera/#a"), "\"irc.libera/#a\"");
    }
}
