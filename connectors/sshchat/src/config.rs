//! The `[sshchat.NAME]` table.
//!
//! ```toml
//! [sshchat.dvz]
//! server = "chat.example.org:2221"
//! dialect = "devzat"             # or "ssh-chat"
//! nick = "bridge"
//! # key_file = "bridge.key"      # default: <data dir>/id_ed25519, generated once
//! # host_key = "ssh-ed25519 AAAA..."  # default: trust on first use, kept in <data dir>
//! # rooms = ["#main", "#dev"]   # SSH mode: one session per room
//! # plugin = { address = "http://chat.example.org:5556", token = "${DEVZAT_TOKEN}" }
//! ```

use std::path::PathBuf;
use std::time::Duration;

use patchbay_sdk::{AccountInfo, ConfigDuration, ConfigError, Renamed, parse_renamed, read_secret};
use serde::Deserialize;

use crate::dialect::{DEVZAT_NAME_MAX, Dialect, SSH_CHAT_NAME_MAX};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    server: String,
    dialect: Dialect,
    nick: String,
    #[serde(default)]
    key_file: Option<PathBuf>,
    #[serde(default)]
    host_key: Option<String>,
    #[serde(default)]
    plugin: Option<RawPlugin>,
    /// ssh-chat only: log in with keyboard-interactive and no key.
    #[serde(default)]
    anonymous: bool,
    #[serde(default = "default_pty_width")]
    pty_width: u32,
    /// The first wait before reconnecting, doubling after each failure; at least 1 s.
    /// Default 10 s for Devzat (it bans a key that joins more than 6 times a minute), 5 s
    /// for ssh-chat.
    #[serde(default)]
    reconnect_min: Option<ConfigDuration>,
    /// The longest wait before reconnecting. Default 300 s.
    #[serde(default = "default_reconnect_max")]
    reconnect_max: ConfigDuration,
    /// Rooms to mirror over SSH (one session each); the plugin API sees every room.
    #[serde(default = "default_rooms")]
    rooms: Vec<String>,
    /// Carry the hop trace invisibly at the end of relayed messages.
    #[serde(default = "default_true")]
    hop_trace: bool,
}

fn default_true() -> bool {
    true
}

fn default_rooms() -> Vec<String> {
    vec!["#main".to_owned()]
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlugin {
    address: String,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    token_file: Option<PathBuf>,
}

fn default_pty_width() -> u32 {
    1000
}

fn default_reconnect_max() -> ConfigDuration {
    ConfigDuration::secs(300)
}

/// The reconnect waits were whole seconds named `*_secs` until every config wrote durations
/// one way; the old names still read.
pub const RENAMED: &[Renamed] = &[
    Renamed::secs("reconnect_min_secs", "reconnect_min"),
    Renamed::secs("reconnect_max_secs", "reconnect_max"),
];

/// The validated account config.
#[derive(Clone, Debug)]
pub struct Config {
    /// `host:port` of the SSH server. Required in plugin mode too: it names the server in
    /// [`Config::network`], so a plugin account and an SSH account of the same Devzat server
    /// recognise each other's lines.
    pub server: String,
    pub dialect: Dialect,
    pub nick: String,
    /// The client key; generated into the data directory when absent.
    pub key_file: PathBuf,
    /// The server's host key in OpenSSH form; `None` means trust on first use.
    pub host_key: Option<String>,
    /// Where the first-seen host key is recorded.
    pub known_host_file: PathBuf,
    pub plugin: Option<PluginConfig>,
    pub anonymous: bool,
    pub pty_width: u32,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// Rooms with an SSH session of their own (SSH mode).
    pub rooms: Vec<String>,
    /// Write the hop trace invisibly into relayed messages (see [`crate::hops`]).
    pub hop_trace: bool,
}

/// Devzat's gRPC plugin API.
#[derive(Clone)]
pub struct PluginConfig {
    /// `http://host:port` (h2c).
    pub address: String,
    pub token: String,
}

impl std::fmt::Debug for PluginConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginConfig")
            .field("address", &self.address)
            .field("token", &"<redacted>")
            .finish()
    }
}

impl Config {
    /// The server as every account of a gateway names it, whichever way it connects:
    /// `devzat@HOST:PORT` or `ssh-chat@HOST:PORT`, from `server` (the SSH address, also in
    /// plugin mode), the host in lower case. Accounts announce their own names under it.
    pub fn network(&self) -> String {
        let software = match self.dialect {
            Dialect::Devzat => "devzat",
            Dialect::SshChat => "ssh-chat",
        };
        format!("{software}@{}", self.server.to_ascii_lowercase())
    }

    pub fn from_table(account: &AccountInfo, table: toml::Table) -> Result<Config, ConfigError> {
        parse_renamed(table, RENAMED, |raw| Self::check(account, raw))
    }

    fn check(account: &AccountInfo, raw: Raw) -> Result<Config, ConfigError> {
        if !valid_server(&raw.server) {
            return Err(ConfigError::at(
                &["server"],
                format!(
                    "`{}` is not host:port (e.g. \"127.0.0.1:2221\")",
                    raw.server
                ),
            ));
        }
        check_nick(raw.dialect, &raw.nick)?;
        if raw.pty_width < 80 {
            return Err(ConfigError::at(
                &["pty_width"],
                "pty_width must be at least 80 columns (wider avoids wrapped lines)",
            ));
        }
        let plugin = match raw.plugin {
            None => None,
            Some(plugin) => {
                if raw.dialect != Dialect::Devzat {
                    return Err(ConfigError::at(
                        &["plugin"],
                        "the plugin API exists only on Devzat servers",
                    ));
                }
                let address = if plugin.address.contains("://") {
                    plugin.address
                } else {
                    format!("http://{}", plugin.address)
                };
                if !address.starts_with("http://") && !address.starts_with("https://") {
                    return Err(ConfigError::at(
                        &["plugin", "address"],
                        "the plugin address must be host:port or http://host:port",
                    ));
                }
                let token =
                    read_secret(account, plugin.token, plugin.token_file.as_deref(), "token")
                        .map_err(|mut err| {
                            err.path.insert(0, "plugin".into());
                            err
                        })?
                        .filter(|t| !t.is_empty())
                        .ok_or_else(|| {
                            ConfigError::at(
                                &["plugin", "token"],
                                "the plugin API needs a token (an admin grants one with `grant`)",
                            )
                        })?;
                Some(PluginConfig { address, token })
            }
        };
        if raw.anonymous && raw.dialect != Dialect::SshChat {
            return Err(ConfigError::at(
                &["anonymous"],
                "anonymous login is an ssh-chat feature; Devzat needs a key",
            ));
        }
        // Devzat bans a key that joins more than 6 times a minute: start backoff at 10 s.
        let default_min = match raw.dialect {
            Dialect::Devzat => ConfigDuration::secs(10),
            Dialect::SshChat => ConfigDuration::secs(5),
        };
        let reconnect_min = raw.reconnect_min.unwrap_or(default_min).get();
        let reconnect_max = raw.reconnect_max.get();
        if reconnect_min < Duration::from_secs(1) || reconnect_min > reconnect_max {
            return Err(ConfigError::at(
                &["reconnect_min"],
                "reconnect_min must be at least 1s and at most reconnect_max",
            ));
        }
        let key_file = match raw.key_file {
            Some(path) => account.resolve(&path),
            None => account.data_dir.join("id_ed25519"),
        };
        if let Some(key) = &raw.host_key
            && russh::keys::PublicKey::from_openssh(key).is_err()
        {
            return Err(ConfigError::at(
                &["host_key"],
                "host_key must be an OpenSSH public key line (\"ssh-ed25519 AAAA...\")",
            ));
        }
        for (i, room) in raw.rooms.iter().enumerate() {
            check_room(room).map_err(|msg| ConfigError::at(&["rooms", &i.to_string()], msg))?;
        }
        if raw.dialect == Dialect::SshChat && raw.rooms.iter().any(|r| r != "#main") {
            return Err(ConfigError::at(
                &["rooms"],
                "ssh-chat has a single room: call it \"#main\"",
            ));
        }
        // One session per room, in the order given (the order they log in).
        let mut rooms: Vec<String> = Vec::with_capacity(raw.rooms.len());
        for room in raw.rooms {
            if !rooms.contains(&room) {
                rooms.push(room);
            }
        }
        Ok(Config {
            rooms,
            hop_trace: raw.hop_trace,
            server: raw.server,
            dialect: raw.dialect,
            nick: raw.nick,
            key_file,
            host_key: raw.host_key,
            known_host_file: account.data_dir.join("known_host"),
            plugin,
            anonymous: raw.anonymous,
            pty_width: raw.pty_width,
            reconnect_min,
            reconnect_max,
        })
    }
}

fn valid_server(server: &str) -> bool {
    match server.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0),
        None => false,
    }
}

fn check_nick(dialect: Dialect, nick: &str) -> Result<(), ConfigError> {
    let ok = match dialect {
        Dialect::Devzat => {
            !nick.is_empty()
                && nick.len() <= DEVZAT_NAME_MAX
                && nick.bytes().all(|b| (33..=126).contains(&b))
        }
        Dialect::SshChat => {
            !nick.is_empty()
                && nick.len() <= SSH_CHAT_NAME_MAX
                && nick
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        }
    };
    if ok {
        Ok(())
    } else {
        let rule = match dialect {
            Dialect::Devzat => "1 to 27 visible ASCII characters, no spaces",
            Dialect::SshChat => "1 to 16 letters, digits, `_`, `.` or `-`",
        };
        Err(ConfigError::at(
            &["nick"],
            format!("`{nick}` is not a valid name here: use {rule}"),
        ))
    }
}

/// Check a room name as routes write it.
pub fn check_room(room: &str) -> Result<(), String> {
    if !room.starts_with('#') || room.len() < 2 {
        return Err(format!(
            "`{room}` is not a room: Devzat rooms start with `#` (`#main`); ssh-chat has only `#main`"
        ));
    }
    if room.chars().count() > 30 {
        return Err(format!("`{room}` is longer than Devzat's 30 characters"));
    }
    if room.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("`{room}` contains spaces or control characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> AccountInfo {
        AccountInfo {
            account: "sshchat.test".into(),
            config_dir: PathBuf::from("/etc/patchbay"),
            data_dir: PathBuf::from("/var/lib/patchbay/sshchat.test"),
        }
    }

    fn table(text: &str) -> toml::Table {
        text.parse().expect("test toml")
    }

    #[test]
    fn minimal_devzat_config_gets_defaults() {
        let cfg = Config::from_table(
            &account(),
            table("server = \"127.0.0.1:2221\"\ndialect = \"devzat\"\nnick = \"bridge\""),
        )
        .expect("valid");
        assert_eq!(cfg.dialect, Dialect::Devzat);
        assert_eq!(cfg.reconnect_min, Duration::from_secs(10));
        assert_eq!(cfg.pty_width, 1000);
        assert!(cfg.key_file.ends_with("sshchat.test/id_ed25519"));
        assert!(cfg.plugin.is_none());
    }

    #[test]
    fn plugin_needs_a_token_and_devzat() {
        let err = Config::from_table(
            &account(),
            table(
                "server = \"h:1\"\ndialect = \"devzat\"\nnick = \"b\"\nplugin = { address = \"h:5556\" }",
            ),
        )
        .expect_err("no token");
        assert_eq!(err.path, ["plugin", "token"]);
        let cfg = Config::from_table(
            &account(),
            table("server = \"h:1\"\ndialect = \"devzat\"\nnick = \"b\"\nplugin = { address = \"h:5556\", token = \"dvz@x\" }"),
        )
        .expect("valid");
        let plugin = cfg.plugin.expect("plugin");
        assert_eq!(plugin.address, "http://h:5556");
        assert!(!format!("{plugin:?}").contains("dvz@x"));
        let err = Config::from_table(
            &account(),
            table("server = \"h:1\"\ndialect = \"ssh-chat\"\nnick = \"b\"\nplugin = { address = \"h:5556\", token = \"t\" }"),
        )
        .expect_err("ssh-chat has no plugins");
        assert_eq!(err.path, ["plugin"]);
    }

    #[test]
    fn bad_values_point_at_their_key() {
        let cases = [
            (
                "server = \"nohost\"\ndialect = \"devzat\"\nnick = \"b\"",
                "server",
            ),
            (
                "server = \"h:1\"\ndialect = \"irc\"\nnick = \"b\"",
                "dialect",
            ),
            (
                "server = \"h:1\"\ndialect = \"ssh-chat\"\nnick = \"has space\"",
                "nick",
            ),
            (
                "server = \"h:1\"\ndialect = \"devzat\"\nnick = \"b\"\nhost_key = \"nope\"",
                "host_key",
            ),
            (
                "server = \"h:1\"\ndialect = \"devzat\"\nnick = \"b\"\ncolour = 1",
                "colour",
            ),
        ];
        for (text, key) in cases {
            let err = Config::from_table(&account(), table(text)).expect_err(text);
            assert!(
                err.path.first().map(String::as_str) == Some(key) || err.message.contains(key),
                "{text}: {err:?}"
            );
        }
    }

    #[test]
    fn rooms() {
        assert!(check_room("#main").is_ok());
        assert!(check_room("main").is_err());
        assert!(check_room("#a-room-name-that-is-far-too-long-for-devzat").is_err());
    }
}
