//! Building connectors from config.
//!
//! Each protocol registers one [`ConnectorFactory`]; the gateway hands it every
//! `[PROTOCOL.NAME]` table of the config file. Building validates and must not connect: it also
//! runs for `patchbay check`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

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
