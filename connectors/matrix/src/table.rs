//! The `[matrix.NAME]` table as written, for both modes: the serde struct, its defaults, and
//! the checks both modes share. Each mode validates it into its own config
//! (`config::Config`, `appservice::config::AppServiceConfig`).

use std::path::PathBuf;

use patchbay_sdk::{ConfigDuration, ConfigError, Renamed};
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

/// The table as written (both modes; each mode refuses the other's keys). The README's
/// config section shows the same keys; what each means and its default is here.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Raw {
    /// `bot` (the default) or `appservice`.
    #[serde(default)]
    pub(crate) mode: ModeName,
    /// The homeserver's client-server API base URL, http(s); a trailing `/` is dropped.
    pub(crate) homeserver: String,
    /// Bot mode, required: the bot's full user id, `@name:server`.
    pub(crate) user: Option<String>,
    /// Bot mode: the bot's password (or `password_file`, the file holding it); exactly one
    /// of the password and the access token is given.
    pub(crate) password: Option<String>,
    pub(crate) password_file: Option<PathBuf>,
    /// Bot mode: an access token with a device (or `access_token_file`), instead of a
    /// password.
    pub(crate) access_token: Option<String>,
    pub(crate) access_token_file: Option<PathBuf>,
    /// Bot mode: the display name of the device made at the first login; default
    /// [`DEFAULT_DEVICE_NAME`].
    pub(crate) device_name: Option<String>,
    /// Rooms to join and relay, by id (`!x`) or alias (`#x:server`), as routes name them;
    /// default none.
    #[serde(default)]
    pub(crate) rooms: Vec<String>,
    /// Full user ids whose invites the bot accepts; default none (configured rooms only).
    #[serde(default)]
    pub(crate) invite_from: Vec<String>,
    /// Relay Matrix reactions to other networks; default on.
    #[serde(default = "yes")]
    pub(crate) relay_reactions: bool,
    /// Deliver reactions whose target is unknown here (or cannot be annotated) as a short
    /// line; default on.
    #[serde(default = "yes")]
    pub(crate) reactions_as_text: bool,
    /// patchbay's HTTP listener as people on other networks reach it: Matrix attachments
    /// become `/media/...` links under it. Default none: attachments are only named.
    pub(crate) media_public_url: Option<String>,
    /// Bytes: larger attachments are relayed as a link instead of uploaded, and larger
    /// Matrix files are not served; default [`DEFAULT_MEDIA_MAX_BYTES`].
    #[serde(default = "default_media_max_bytes")]
    pub(crate) media_max_bytes: u64,
    /// How long a `/media/...` link keeps working; default [`DEFAULT_MEDIA_KEEP`].
    #[serde(default = "default_media_keep")]
    pub(crate) media_keep: ConfigDuration,
    /// Bot mode: encrypts the local state and crypto stores (or `store_passphrase_file`);
    /// default none (not encrypted).
    pub(crate) store_passphrase: Option<String>,
    pub(crate) store_passphrase_file: Option<PathBuf>,
    /// Bot mode: send MSC4144 per-message profiles (the author's name and avatar); default
    /// off.
    pub(crate) per_message_profiles: Option<bool>,
    /// Appservice mode, required: the homeserver's name in user ids (`example.org`).
    pub(crate) server_name: Option<String>,
    /// Appservice mode: the bridge bot's localpart; default `DEFAULT_BOT_LOCALPART`
    /// (`appservice::config`).
    pub(crate) bot_localpart: Option<String>,
    /// Appservice mode: how ghost localparts are made; default `DEFAULT_GHOST_TEMPLATE`
    /// (`appservice::config`).
    pub(crate) ghost_template: Option<String>,
    /// Appservice mode, required: patchbay's HTTP listener as the homeserver reaches it.
    pub(crate) appservice_url: Option<String>,
    /// Appservice mode: the registration's `id`; default `patchbay-NAME`.
    pub(crate) appservice_id: Option<String>,
}

/// `device_name` when it is not set.
pub(crate) const DEFAULT_DEVICE_NAME: &str = "patchbay";
/// `media_max_bytes` when it is not set: 50 MiB.
pub(crate) const DEFAULT_MEDIA_MAX_BYTES: u64 = 50 * 1024 * 1024;
/// `media_keep` when it is not set: 30 days.
pub(crate) const DEFAULT_MEDIA_KEEP: ConfigDuration = ConfigDuration::secs(30 * 86_400);

/// `media_keep` was a number of days, `media_keep_days`, until every config wrote durations
/// one way; the old name still reads.
pub(crate) const RENAMED: &[Renamed] = &[Renamed::days("media_keep_days", "media_keep")];

fn yes() -> bool {
    true
}

fn default_media_keep() -> ConfigDuration {
    DEFAULT_MEDIA_KEEP
}

fn default_media_max_bytes() -> u64 {
    DEFAULT_MEDIA_MAX_BYTES
}

impl Raw {
    /// How long a media link keeps working (`media_keep`).
    pub(crate) fn media_keep(&self) -> std::time::Duration {
        self.media_keep.get()
    }
}

/// An error at the first of `keys` that is set (`true`): `why` says which mode uses it.
pub(crate) fn refuse_set(keys: &[(&str, bool)], why: &str) -> Result<(), ConfigError> {
    match keys.iter().find(|(_, set)| *set) {
        Some((key, _)) => Err(ConfigError::at(&[key], format!("`{key}` {why}"))),
        None => Ok(()),
    }
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
