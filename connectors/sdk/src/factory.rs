//! Building connectors from config.
//!
//! Each protocol registers one [`ConnectorFactory`]; the gateway hands it every
//! `[PROTOCOL.NAME]` table of the config file. Building validates and must not connect: it also
//! runs for `patchbay check`.
//!
//! A key that changes its name stays readable under the old one: the factory lists it in
//! [`ConnectorFactory::renamed_keys`], the connector reads its table through
//! [`parse_renamed`], and the gateway warns at each line that still spells it the old way.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::connector::Connector;

/// Builds the connectors of one protocol.
pub trait ConnectorFactory: Send + Sync + 'static {
    /// The protocol's name as config tables spell it (`irc`, `matrix`, `console`).
    fn protocol(&self) -> &'static str;

    /// Validate one account's table and build its connector, without connecting.
    fn build(
        &self,
        account: &AccountInfo,
        table: toml::Table,
    ) -> Result<Arc<dyn Connector>, ConfigError>;

    /// Check a room name as routes write it (`#rust` for IRC). The default accepts any
    /// non-empty name.
    fn check_room(&self, room: &str) -> Result<(), String> {
        if room.is_empty() {
            Err("the room name is empty".into())
        } else {
            Ok(())
        }
    }

    /// `tracing` directives (`target=level`) that keep a dependency's lines quiet when they
    /// repeat in steady state and tell an operator nothing; the binary applies them unless
    /// `RUST_LOG` names the target. The default keeps everything.
    fn quiet_log_directives(&self) -> &'static [&'static str] {
        &[]
    }

    /// Keys this protocol renamed, so that the gateway can warn at each line that still uses
    /// an old name (`patchbay check` prints it, `run` logs it). The connector reads them
    /// itself, through [`parse_renamed`] with the same list. The default renamed nothing.
    fn renamed_keys(&self) -> &'static [Renamed] {
        &[]
    }
}

/// Facts about the account being built.
#[derive(Clone, Debug)]
pub struct AccountInfo {
    /// `PROTOCOL.NAME`.
    pub account: String,
    /// The config file's directory, for resolving relative paths.
    pub config_dir: PathBuf,
    /// The account's own data directory (not created yet).
    pub data_dir: PathBuf,
}

impl AccountInfo {
    /// Resolve a path from the config relative to the config file's directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_owned()
        } else {
            self.config_dir.join(path)
        }
    }
}

/// A problem with an account's table.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    /// The key path within the account's table (`["sasl", "password"]`); empty for the table.
    pub path: Vec<String>,
    /// What is wrong and what would be right.
    pub message: String,
}

impl ConfigError {
    pub fn at(path: &[&str], message: impl Into<String>) -> Self {
        ConfigError {
            path: path.iter().map(|s| (*s).to_owned()).collect(),
            message: message.into(),
        }
    }
}

/// Deserialize an account's table into the connector's config struct, keeping the path of the
/// key that failed so the gateway can point at its line.
pub fn parse_table<T: DeserializeOwned>(table: toml::Table) -> Result<T, ConfigError> {
    let value = toml::Value::Table(table);
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err
            .path()
            .iter()
            .filter_map(|segment| match segment {
                serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                serde_path_to_error::Segment::Seq { index } => Some(index.to_string()),
                _ => None,
            })
            .collect();
        ConfigError {
            path,
            message: err.into_inner().to_string(),
        }
    })
}

/// Read a secret given either inline (already `${VAR}`-expanded by the gateway) or as a
/// `*_file` path; a trailing newline in the file is dropped.
pub fn read_secret(
    account: &AccountInfo,
    inline: Option<String>,
    file: Option<&Path>,
    key: &str,
) -> Result<Option<String>, ConfigError> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(ConfigError::at(
            &[key],
            format!("give either `{key}` or `{key}_file`, not both"),
        )),
        (Some(value), None) => Ok(Some(value)),
        (None, Some(path)) => {
            let path = account.resolve(path);
            std::fs::read_to_string(&path)
                .map(|s| Some(s.trim_end_matches(['\r', '\n']).to_owned()))
                .map_err(|err| {
                    ConfigError::at(
                        &[&format!("{key}_file")],
                        format!("cannot read {}: {err}", path.display()),
                    )
                })
        }
        (None, None) => Ok(None),
    }
}

/// A key given a new name. The old spelling keeps working: its number moves to the new key as
/// the duration it meant (`90` seconds becomes `"1m 30s"`), so a file written for an older
/// patchbay reads the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Renamed {
    /// The tables the key lives in, a dotted path from the account's table where `*` is any
    /// key: `""` is the account's own table, `"rooms.*"` each table under `rooms`.
    pub under: &'static str,
    pub old: &'static str,
    pub new: &'static str,
    /// Seconds in one unit of the old key's number: 1 for `*_secs`, 86 400 for `*_days`.
    pub unit_secs: u32,
}

impl Renamed {
    /// `old` held a number of seconds.
    pub const fn secs(old: &'static str, new: &'static str) -> Self {
        Renamed {
            under: "",
            old,
            new,
            unit_secs: 1,
        }
    }

    /// `old` held a number of days.
    pub const fn days(old: &'static str, new: &'static str) -> Self {
        Renamed {
            unit_secs: 86_400,
            ..Renamed::secs(old, new)
        }
    }

    /// The key lives in the tables at `under` (see [`Renamed::under`]), not the account's own.
    pub const fn under(self, under: &'static str) -> Self {
        Renamed { under, ..self }
    }

    /// The duration the old key's number meant; `None` for a negative or non-finite number,
    /// or anything else.
    fn duration(&self, value: &toml::Value) -> Option<Duration> {
        let secs = match value {
            toml::Value::Integer(n) => *n as f64,
            toml::Value::Float(x) => *x,
            _ => return None,
        };
        Duration::try_from_secs_f64(secs * f64::from(self.unit_secs)).ok()
    }

    /// The old key's value as the new key reads it: its number as a duration string; what is
    /// no duration stays, for the new key's reader to refuse at the old key's line.
    fn convert(&self, value: toml::Value) -> toml::Value {
        match self.duration(&value) {
            Some(duration) => toml::Value::String(humantime::format_duration(duration).to_string()),
            None => value,
        }
    }
}

/// An old key name found in an account's table.
#[derive(Clone, Debug, PartialEq)]
pub struct Deprecated {
    /// The old key's path within the account's table.
    pub path: Vec<String>,
    pub renamed: Renamed,
    /// What the old key's number means, to spell the replacement; `None` when it is no
    /// duration (reading the table says why).
    pub value: Option<Duration>,
}

impl Deprecated {
    /// What to write instead: "`ping_interval_secs` is deprecated: write `ping_interval = "1m 30s"`".
    pub fn message(&self) -> String {
        let Renamed { old, new, .. } = self.renamed;
        match self.value {
            Some(value) => format!(
                "`{old}` is deprecated: write `{new} = \"{}\"`",
                humantime::format_duration(value)
            ),
            None => format!(
                "`{old}` is deprecated: write `{new}`, a duration like \"30s\", \"5m\" or \"7d\""
            ),
        }
    }
}

/// Every old key name of `renamed` that `table` uses, in the order of `renamed`.
pub fn deprecated_keys(table: &toml::Table, renamed: &[Renamed]) -> Vec<Deprecated> {
    // A copy, so that one walk over the tables (it hands out `&mut`) serves here and in
    // `parse_renamed`; an account's table is small.
    let mut table = table.clone();
    let mut found = Vec::new();
    for rename in renamed {
        for (path, table) in tables_under(&mut table, rename.under) {
            if let Some(value) = table.get(rename.old) {
                found.push(Deprecated {
                    path: path_to(&path, rename.old),
                    renamed: *rename,
                    value: rename.duration(value),
                });
            }
        }
    }
    found
}

/// [`parse_table`] for a connector that renamed keys, then `check` on what it read. Each old
/// key of `renamed` moves to its new name first (its number as a duration); an error about a moved
/// key names the key as the file spells it, so the gateway points at the line that holds it.
/// The old and the new name together are an error naming both.
pub fn parse_renamed<T: DeserializeOwned, C>(
    mut table: toml::Table,
    renamed: &[Renamed],
    check: impl FnOnce(T) -> Result<C, ConfigError>,
) -> Result<C, ConfigError> {
    let mut moved: Vec<(Vec<String>, Vec<String>)> = Vec::new();
    for rename in renamed {
        for (path, table) in tables_under(&mut table, rename.under) {
            let Some(value) = table.remove(rename.old) else {
                continue;
            };
            let old = path_to(&path, rename.old);
            if table.contains_key(rename.new) {
                let (old_key, new_key) = (rename.old, rename.new);
                return Err(ConfigError {
                    path: old,
                    message: format!(
                        "`{old_key}` is the old name of `{new_key}`: give only `{new_key}`"
                    ),
                });
            }
            table.insert(rename.new.to_owned(), rename.convert(value));
            moved.push((old, path_to(&path, rename.new)));
        }
    }
    parse_table(table).and_then(check).map_err(|mut err| {
        if let Some((old, new)) = moved.iter().find(|(_, new)| err.path.starts_with(new)) {
            err.path.splice(..new.len(), old.iter().cloned());
        }
        err
    })
}

fn path_to(tables: &[String], key: &str) -> Vec<String> {
    let mut path = tables.to_vec();
    path.push(key.to_owned());
    path
}

/// The tables at `under` (dotted, `*` for any key) with their paths.
fn tables_under<'t>(
    table: &'t mut toml::Table,
    under: &str,
) -> Vec<(Vec<String>, &'t mut toml::Table)> {
    let segments: Vec<&str> = under.split('.').filter(|s| !s.is_empty()).collect();
    let mut out = Vec::new();
    collect_tables(table, &segments, Vec::new(), &mut out);
    out
}

fn collect_tables<'t>(
    table: &'t mut toml::Table,
    under: &[&str],
    path: Vec<String>,
    out: &mut Vec<(Vec<String>, &'t mut toml::Table)>,
) {
    let Some((first, rest)) = under.split_first() else {
        out.push((path, table));
        return;
    };
    for (key, value) in table.iter_mut() {
        if let toml::Value::Table(child) = value
            && (*first == "*" || first == key)
        {
            collect_tables(child, rest, path_to(&path, key), out);
        }
    }
}

#[cfg(test)]
#[path = "factory_tests.rs"]
mod tests;
