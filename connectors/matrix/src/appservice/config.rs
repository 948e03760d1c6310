//! The `[matrix.NAME]` table with `mode = "appservice"`.
//!
//! ```toml
//! [matrix.home]
//! mode = "appservice"
//! homeserver = "https://matrix.example.org"       # the client API the AS calls
//! server_name = "example.org"                     # the part after `:` in user ids
//! appservice_url = "http://127.0.0.1:8080"        # where the homeserver reaches [http] listen
//! bot_localpart = "patchbay"                      # the bridge bot, @patchbay:example.org
//! ghost_template = "_patchbay_{protocol}_{account}_{nick}"
//! rooms = ["#general:example.org"]
//! ```
//!
//! No password or access token: the tokens are random, made once and kept in the account's
//! data directory (`appservice.json`), and `patchbay matrix-registration` writes them into the
//! registration file the homeserver loads.

use patchbay_sdk::{AccountInfo, ConfigError};

use super::naming::GhostTemplate;
use crate::table::{Raw, check_lists, http_url, refuse_set};

/// The default ghost localpart: the protocol, the account and the author, each escaped.
pub const DEFAULT_GHOST_TEMPLATE: &str = "_patchbay_{protocol}_{account}_{nick}";
/// The default bridge bot's localpart.
pub const DEFAULT_BOT_LOCALPART: &str = "patchbay";
/// Where an account's AS API is served on the listener: this, then the account's name.
const PATH_PREFIX: &str = "/_patchbay/matrix/";

/// A validated appservice-mode account.
#[derive(Clone, Debug)]
pub struct AppServiceConfig {
    /// The homeserver's client-server API base URL (no trailing slash).
    pub homeserver: String,
    /// The homeserver's server name: user ids are `@localpart:server_name`.
    pub server_name: String,
    /// The bridge bot's localpart (the registration's `sender_localpart`); default
    /// [`DEFAULT_BOT_LOCALPART`].
    pub bot_localpart: String,
    /// How a remote author's ghost localpart is made; default [`DEFAULT_GHOST_TEMPLATE`].
    pub ghost_template: GhostTemplate,
    /// The registration's `url`: patchbay's listener as the homeserver reaches it, plus this
    /// account's path prefix (several appservice accounts can share one listener).
    pub url: String,
    /// The path prefix this account's AS API is served under on the listener.
    pub path_prefix: String,
    /// The registration's `id`; default `patchbay-NAME`.
    pub id: String,
    /// Rooms the bot joins at start, by id or alias, as routes name them.
    pub rooms: Vec<String>,
    /// Users whose invites the bot accepts.
    pub invite_from: Vec<String>,
    /// Relay Matrix reactions to other networks; default on.
    pub relay_reactions: bool,
    /// Deliver reactions whose target is unknown here as a short line; default on.
    pub reactions_as_text: bool,
    /// Attachments (and avatars) larger than this are sent as a link (not uploaded); Matrix
    /// files larger than this are not served. Bytes; default 50 MiB.
    pub media_max_bytes: u64,
    /// Where patchbay's listener is reached by people on other networks (no trailing `/`):
    /// Matrix attachments become links `<this><path_prefix>/media/TOKEN/NAME`. Without it
    /// they are only named in the text (`[cat.png]`).
    pub media_public_url: Option<String>,
    /// Media links older than this are forgotten (`media_keep`; default 30 days).
    pub media_keep: std::time::Duration,
}

impl AppServiceConfig {
    /// The bot's full user id.
    pub fn bot_user(&self) -> String {
        format!("@{}:{}", self.bot_localpart, self.server_name)
    }

    pub(crate) fn from_raw(account: &AccountInfo, raw: Raw) -> Result<Self, ConfigError> {
        refuse_set(
            &[
                ("user", raw.user.is_some()),
                ("password", raw.password.is_some()),
                ("password_file", raw.password_file.is_some()),
                ("access_token", raw.access_token.is_some()),
                ("access_token_file", raw.access_token_file.is_some()),
                ("device_name", raw.device_name.is_some()),
                ("store_passphrase", raw.store_passphrase.is_some()),
                ("store_passphrase_file", raw.store_passphrase_file.is_some()),
                ("per_message_profiles", raw.per_message_profiles.is_some()),
            ],
            "is not used with mode = \"appservice\" (bot mode only)",
        )?;
        let homeserver = http_url(&raw.homeserver, "homeserver")?;
        let server_name = raw.server_name.clone().ok_or_else(|| {
            ConfigError::at(
                &[],
                "missing field `server_name` (the homeserver's name in user ids, e.g. example.org)",
            )
        })?;
        if server_name.is_empty()
            || server_name.contains(|c: char| c.is_whitespace() || c == '/' || c == '@')
        {
            return Err(ConfigError::at(
                &["server_name"],
                format!("`{server_name}` is not a server name (e.g. example.org)"),
            ));
        }
        let bot_localpart = raw
            .bot_localpart
            .clone()
            .unwrap_or_else(|| DEFAULT_BOT_LOCALPART.to_owned());
        if !super::naming::is_localpart(&bot_localpart) {
            return Err(ConfigError::at(
                &["bot_localpart"],
                format!(
                    "`{bot_localpart}` is not a Matrix localpart (lowercase a-z, 0-9 and ._=-/+)"
                ),
            ));
        }
        let template = raw
            .ghost_template
            .as_deref()
            .unwrap_or(DEFAULT_GHOST_TEMPLATE);
        let ghost_template = GhostTemplate::parse(template)
            .map_err(|e| ConfigError::at(&["ghost_template"], e.to_string()))?;
        if ghost_template.matches_localpart(&bot_localpart) {
            return Err(ConfigError::at(
                &["bot_localpart"],
                "the bot's localpart must not look like a ghost's (it starts with the template's prefix)",
            ));
        }
        let base = raw.appservice_url.as_deref().ok_or_else(|| {
            ConfigError::at(
                &[],
                "missing field `appservice_url` (patchbay's [http] listener as the homeserver \
                 reaches it, e.g. http://127.0.0.1:8080)",
            )
        })?;
        let base = http_url(base, "appservice_url")?;
        let media_public_url = raw
            .media_public_url
            .as_deref()
            .map(|url| http_url(url, "media_public_url"))
            .transpose()?;
        let name = account
            .account
            .split_once('.')
            .map_or(account.account.as_str(), |(_, name)| name);
        let path_prefix = format!("{PATH_PREFIX}{name}");
        check_lists(&raw)?;
        let media_keep = raw.media_keep();
        Ok(AppServiceConfig {
            homeserver,
            server_name,
            bot_localpart,
            ghost_template,
            url: format!("{base}{path_prefix}"),
            path_prefix,
            id: raw
                .appservice_id
                .clone()
                .unwrap_or_else(|| format!("patchbay-{name}")),
            rooms: raw.rooms,
            invite_from: raw.invite_from,
            relay_reactions: raw.relay_reactions,
            reactions_as_text: raw.reactions_as_text,
            media_max_bytes: raw.media_max_bytes,
            media_public_url,
            media_keep,
        })
    }
}
