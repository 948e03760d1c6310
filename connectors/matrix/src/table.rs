//! The `[matrix.NAME]` table as written, for both modes: the serde struct, its defaults, and
//! the checks both modes share. Each mode validates it into its own config
//! (`config::Config`, `appservice::config::AppServiceConfig`).

use std::path::PathBuf;

use patchbay_sdk::ConfigError;
use serde::Deserialize;

/// How the account speaks to its homeserver.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ModeName {
    /// One logged-in bot user sends everything (the default).
    #[default]
    Bot,
    /// An application service: remote authors appear as ghost users of their own.
    Appservice,
}

/// The table as written (both modes; each mode refuses the other's keys).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Raw {
    #[serde(default)]
    pub(crate) mode: ModeName,
    pub(crate) homeserver: String,
    pub(crate) user: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) password_file: Option<PathBuf>,
    pub(crate) access_token: Option<String>,
    pub(crate) access_token_file: Option<PathBuf>,
    pub(crate) device_name: Option<String>,
    #[serde(default)]
    pub(crate) rooms: Vec<String>,
    #[serde(default)]
    pub(crate) invite_from: Vec<String>,
    #[serde(default = "yes")]
    pub(crate) relay_reactions: bool,
    #[serde(default = "yes")]
    pub(crate) reactions_as_text: bool,
    pub(crate) media_public_url: Option<String>,
    #[serde(default = "default_media_max_bytes")]
    pub(crate) media_max_bytes: u64,
    #[serde(default = "default_media_keep_days")]
    pub(crate) media_keep_days: u64,
    pub(crate) store_passphrase: Option<String>,
    pub(crate) store_passphrase_file: Option<PathBuf>,
    /// Bot mode: MSC4144 per-message profiles (see [`Config::per_message_profiles`]).
    pub(crate) per_message_profiles: Option<bool>,
    // Appservice mode only (see `appservice::config`).
    pub(crate) server_name: Option<String>,
    pub(crate) bot_localpart: Option<String>,
    pub(crate) ghost_template: Option<String>,
    pub(crate) appservice_url: Option<String>,
    pub(crate) appservice_id: Option<String>,
}

pub(crate) fn default_device_name() -> String {
    "patchbay".into()
}

fn yes() -> bool {
    true
}

fn default_media_keep_days() -> u64 {
    30
}

fn default_media_max_bytes() -> u64 {
    50 * 1024 * 1024
}

/// The URL without a trailing slash, or an error at `key` when it is not http(s).
pub(crate) fn http_url(url: &str, key: &str) -> Result<String, ConfigError> {
    let url = url.trim_end_matches('/').to_owned();
    if url.starts_with("https://") || url.starts_with("http://") {
        Ok(url)
    } else {
        Err(ConfigError::at(
            &[key],
            format!("`{url}` is not an http(s) URL (e.g. https://matrix.example.org)"),
        ))
    }
}

/// Check the rooms and trusted inviters lists shared by both modes.
pub(crate) fn check_lists(raw: &Raw) -> Result<(), ConfigError> {
    for (i, room) in raw.rooms.iter().enumerate() {
        check_room(room).map_err(|message| ConfigError::at(&["rooms", &i.to_string()], message))?;
    }
    for (i, user) in raw.invite_from.iter().enumerate() {
        if !is_user_id(user) {
            return Err(ConfigError::at(
                &["invite_from", &i.to_string()],
                format!("`{user}` is not a full Matrix user id"),
            ));
        }
    }
    Ok(())
}

pub(crate) fn is_user_id(id: &str) -> bool {
    crate::html::is_user_id(id)
}

/// A room as routes and the `rooms` list name it: an id (`!opaque`, with or without
/// `:server`) or an alias (`#name:server`).
pub fn check_room(room: &str) -> Result<(), String> {
    if room.contains(char::is_whitespace) {
        return Err(format!("`{room}` contains whitespace"));
    }
    match room.chars().next() {
        Some('!') if room.len() > 1 => Ok(()),
        Some('#')
            if room
                .split_once(':')
                .is_some_and(|(a, s)| a.len() > 1 && !s.is_empty()) =>
        {
            Ok(())
        }
        Some('#') => Err(format!(
            "`{room}` is not a full room alias (e.g. #general:example.org)"
        )),
        _ => Err(format!(
            "`{room}` is neither a room id (!abc...) nor an alias (#name:server)"
        )),
    }
}
