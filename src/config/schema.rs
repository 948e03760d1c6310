//! The config file's tables as serde structs. Validation beyond types lives in `mod.rs`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use patchbay_sdk::ConfigDuration;
use serde::Deserialize;
use toml::Spanned;

/// `[general]`: gateway-wide settings and the defaults routes inherit.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneralTable {
    /// Where the store and the connectors' own files live. Default: `data` beside the config.
    pub data_dir: Option<PathBuf>,
    /// This instance's name in hop traces. Default: `patchbay`.
    pub gateway_id: Option<String>,
    /// Default nick format for every route.
    pub nick_format: Option<Spanned<String>>,
    /// Default relayed kinds for every route.
    pub kinds: Option<Vec<Spanned<String>>>,
    /// How long the message-id map keeps a message. Default: 30 days.
    pub retention: Option<ConfigDuration>,
    /// How long shutdown waits for in-flight deliveries. Default: 10 s.
    pub shutdown_timeout: Option<ConfigDuration>,
}

/// `[http]`: the shared listener for webhooks, the API, metrics and health.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpTable {
    pub listen: SocketAddr,
}

/// One `[[route]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteTable {
    pub name: Spanned<String>,
    /// Rooms that mirror each other.
    #[serde(default)]
    pub inout: Vec<Spanned<String>>,
    /// Rooms that only feed the route.
    #[serde(default, rename = "in")]
    pub input: Vec<Spanned<String>>,
    /// Rooms that only receive.
    #[serde(default)]
    pub out: Vec<Spanned<String>>,
    // The route's settings: the same keys as `SettingsTable` (serde cannot flatten them in
    // without losing spans and unknown-key checks).
    pub kinds: Option<Vec<Spanned<String>>>,
    pub nick_format: Option<Spanned<String>>,
    #[serde(default)]
    pub ignore_nicks: Vec<Spanned<String>>,
    #[serde(default)]
    pub ignore_text: Vec<Spanned<String>>,
    #[serde(default)]
    pub rewrite: Vec<RewriteTable>,
    pub rate_limit: Option<Spanned<RateLimitTable>>,
    /// Per-room overrides, keyed by `ACCOUNT/ROOM`.
    #[serde(default)]
    pub room: BTreeMap<Spanned<String>, SettingsTable>,
}

impl RouteTable {
    /// The route-wide settings.
    pub fn take_settings(&mut self) -> SettingsTable {
        SettingsTable {
            kinds: self.kinds.take(),
            nick_format: self.nick_format.take(),
            ignore_nicks: std::mem::take(&mut self.ignore_nicks),
            ignore_text: std::mem::take(&mut self.ignore_text),
            rewrite: std::mem::take(&mut self.rewrite),
            rate_limit: self.rate_limit.take(),
        }
    }
}

/// Settings a route, or one room of it, can set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsTable {
    /// Which kinds of event to relay.
    pub kinds: Option<Vec<Spanned<String>>>,
    /// How relayed authors are named: `{nick}`, `{account}`, `{protocol}`, `{room}`, `{route}`.
    pub nick_format: Option<Spanned<String>>,
    /// Drop events from authors whose name matches one of these regexes.
    #[serde(default)]
    pub ignore_nicks: Vec<Spanned<String>>,
    /// Drop events whose text matches one of these regexes.
    #[serde(default)]
    pub ignore_text: Vec<Spanned<String>>,
    /// Regex replacements applied to relayed text, in order.
    #[serde(default)]
    pub rewrite: Vec<RewriteTable>,
    /// At most `messages` deliveries per `per` into each room; more wait their turn.
    pub rate_limit: Option<Spanned<RateLimitTable>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewriteTable {
    pub pattern: Spanned<String>,
    pub replace: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitTable {
    pub messages: u32,
    pub per: ConfigDuration,
}
