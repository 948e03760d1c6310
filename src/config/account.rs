//! `[PROTOCOL.NAME]` tables: each is handed whole to its protocol's factory, and what comes back
//! (an error, or a key the protocol renamed) is placed at the line of the key it is about.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use patchbay_sdk::Connector;
use patchbay_sdk::factory::{AccountInfo, deprecated_keys};
use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeValue, ValueDeserializer};

use super::diagnostic::{self, Collector};
use super::expand::join;
use crate::connectors::Registry;

/// One configured account and its (not yet running) connector.
pub struct Account {
    /// `PROTOCOL.NAME`.
    pub name: String,
    pub connector: Arc<dyn Connector>,
    pub data_dir: PathBuf,
}

/// Build one account's connector, recording an error if its table has one and a warning at
/// each key it still spells by an old name (which reads as before).
pub fn build(
    registry: &Registry,
    protocol: &str,
    name: Spanned<std::borrow::Cow<'_, str>>,
    table: Spanned<DeValue<'_>>,
    data_dir: &Path,
    config_dir: &Path,
    errors: &mut Collector<'_>,
) -> Option<Account> {
    let name_span = name.span();
    let name = name.into_inner();
    let account = format!("{protocol}.{name}");
    if name.is_empty() || name.contains(['/', '.']) || name.chars().any(char::is_whitespace) {
        errors.error(
            Some(name_span),
            &account,
            "an account name is a plain word: no `/`, `.` or spaces",
        );
        return None;
    }
    let factory = registry.get(protocol)?;
    let table_span = table.span();
    let spanned = table.clone();
    let table = match toml::Table::deserialize(ValueDeserializer::from(table)) {
        Ok(table) => table,
        Err(_) => {
            errors.error(
                Some(table_span),
                &account,
                format!("an account is a table: write `[{account}]`"),
            );
            return None;
        }
    };
    let key_of = |path: &[String]| path.iter().fold(account.clone(), |acc, s| join(&acc, s));
    for old in deprecated_keys(&table, factory.renamed_keys()) {
        let segments: Vec<&str> = old.path.iter().map(String::as_str).collect();
        errors.warning(
            span_at(&spanned, &segments),
            key_of(&old.path),
            old.message(),
        );
    }
    let info = AccountInfo {
        account: account.clone(),
        config_dir: config_dir.to_owned(),
        data_dir: data_dir.join("accounts").join(&account),
    };
    match factory.build(&info, table) {
        Ok(connector) => Some(Account {
            name: account,
            connector,
            data_dir: info.data_dir,
        }),
        Err(err) => {
            let segments: Vec<&str> = err.path.iter().map(String::as_str).collect();
            let span = span_at(&spanned, &segments).unwrap_or(table_span);
            errors.error(
                Some(span),
                key_of(&err.path),
                diagnostic::with_suggestion(&err.message),
            );
            None
        }
    }
}

/// The span of the value at `path` inside a table, or of the deepest part of it that exists.
fn span_at(value: &Spanned<DeValue<'_>>, path: &[&str]) -> Option<Range<usize>> {
    let Some((first, rest)) = path.split_first() else {
        return Some(value.span());
    };
    let child = match value.get_ref() {
        DeValue::Table(table) => table
            .iter()
            .find(|(k, _)| k.get_ref() == first)
            .map(|(_, v)| v),
        DeValue::Array(items) => first.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    };
    match child {
        Some(child) => span_at(child, rest),
        None => Some(value.span()),
    }
}
