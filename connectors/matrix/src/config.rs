//! The `[matrix.NAME]` table: a bot account on one homeserver.
//!
//! ```toml
//! [matrix.home]
//! homeserver = "https://matrix.example.org"
//! user = "@patchbay:example.org"
//! password_file = "/run/secrets/matrix"   # or password, access_token(_file)
//! rooms = ["#general:example.org", "!abcdef"]
//! invite_from = ["@admin:example.org"]
//! media_public_url = "https://bridge.example.org"
//! ```
//!
//! With `mode = "appservice"` the account is an application service instead (see
//! [`crate::appservice::config`]): no bot login, ghosts for remote authors.

#[cfg(test)]
use std::path::PathBuf;

use patchbay_sdk::{AccountInfo, ConfigError, parse_renamed, read_secret};

pub use crate::table::check_room;
use crate::table::{
    DEFAULT_DEVICE_NAME, ModeName, RENAMED, Raw, check_lists, http_url, is_user_id, refuse_set,
};

/// How the bot proves who it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credentials {
    /// Logs in once and keeps the device it made (`password`, `password_file`).
    Password(String),
    /// Uses the token's own device (`access_token`, `access_token_file`).
    AccessToken(String),
}

/// A validated account config.
#[derive(Clone, Debug)]
pub struct Config {
    /// The homeserver's base URL.
    pub homeserver: String,
    /// The bot's full user id, `@name:server`.
    pub user: String,
    /// The password or the access token.
    pub credentials: Credentials,
    /// The display name of the device created on first login; default `patchbay`.
    pub device_name: String,
    /// Rooms to join and relay, by id (`!x`) or alias (`#x:server`), as routes name them.
    pub rooms: Vec<String>,
    /// Users whose invites the bot accepts.
    pub invite_from: Vec<String>,
    /// Relay Matrix reactions to other networks; default on.
    pub relay_reactions: bool,
    /// Deliver reactions whose target is unknown here (or cannot be annotated) as a short
    /// line; default on.
    pub reactions_as_text: bool,
    /// The base URL under which patchbay's HTTP listener is reachable, for `/media/...` links
    /// (no trailing `/`); without it attachments are only named and no route is served.
    pub media_public_url: Option<String>,
    /// Bytes: attachments larger than this are not served or uploaded; default 50 MiB.
    pub media_max_bytes: u64,
    /// How long a `/media/...` link keeps working; default 30 days.
    pub media_keep: std::time::Duration,
    /// Encrypts the local state and crypto stores when set.
    pub store_passphrase: Option<String>,
    /// Send each relayed message with an MSC4144 per-message profile (the author's name and
    /// avatar), so clients that support it show the remote author instead of the bot; the
    /// bold nick stays in the body for clients that do not. Default off.
    pub per_message_profiles: bool,
}

/// A validated `[matrix.NAME]` table, in one of its two modes.
#[derive(Clone, Debug)]
pub enum AccountConfig {
    Bot(Config),
    AppService(crate::appservice::config::AppServiceConfig),
}

impl AccountConfig {
    pub fn from_table(account: &AccountInfo, table: toml::Table) -> Result<Self, ConfigError> {
        parse_renamed(table, RENAMED, |raw: Raw| match raw.mode {
            ModeName::Bot => Config::from_raw(account, raw).map(AccountConfig::Bot),
            ModeName::Appservice => {
                crate::appservice::config::AppServiceConfig::from_raw(account, raw)
                    .map(AccountConfig::AppService)
            }
        })
    }
}

impl Config {
    /// A bot-mode table.
    pub fn from_table(account: &AccountInfo, table: toml::Table) -> Result<Self, ConfigError> {
        parse_renamed(table, RENAMED, |raw| Self::from_raw(account, raw))
    }

    fn from_raw(account: &AccountInfo, raw: Raw) -> Result<Self, ConfigError> {
        refuse_set(
            &[
                ("server_name", raw.server_name.is_some()),
                ("bot_localpart", raw.bot_localpart.is_some()),
                ("ghost_template", raw.ghost_template.is_some()),
                ("appservice_url", raw.appservice_url.is_some()),
                ("appservice_id", raw.appservice_id.is_some()),
            ],
            "is only used with mode = \"appservice\"",
        )?;
        let Some(user) = raw.user.clone() else {
            return Err(ConfigError::at(
                &[],
                "missing field `user` (the bot's full user id, e.g. @patchbay:example.org)",
            ));
        };
        let homeserver = http_url(&raw.homeserver, "homeserver")?;
        let media_keep = raw.media_keep();
        check_lists(&raw)?;
        if !is_user_id(&user) {
            return Err(ConfigError::at(
                &["user"],
                format!("`{user}` is not a full Matrix user id (e.g. @patchbay:example.org)"),
            ));
        }
        let password = read_secret(
            account,
            raw.password,
            raw.password_file.as_deref(),
            "password",
        )?;
        let token = read_secret(
            account,
            raw.access_token,
            raw.access_token_file.as_deref(),
            "access_token",
        )?;
        let credentials = match (password, token) {
            (Some(p), None) => Credentials::Password(p),
            (None, Some(t)) => Credentials::AccessToken(t),
            (Some(_), Some(_)) => {
                return Err(ConfigError::at(
                    &["access_token"],
                    "give either `password` or `access_token`, not both",
                ));
            }
            (None, None) => {
                return Err(ConfigError::at(
                    &[],
                    "missing credentials: set `password` (or `password_file`) or `access_token` \
                     (or `access_token_file`)",
                ));
            }
        };
        let media_public_url = raw
            .media_public_url
            .as_deref()
            .map(|url| http_url(url, "media_public_url"))
            .transpose()?;
        let store_passphrase = read_secret(
            account,
            raw.store_passphrase,
            raw.store_passphrase_file.as_deref(),
            "store_passphrase",
        )?;
        Ok(Config {
            homeserver,
            user,
            credentials,
            device_name: raw
                .device_name
                .unwrap_or_else(|| DEFAULT_DEVICE_NAME.to_owned()),
            rooms: raw.rooms,
            invite_from: raw.invite_from,
            relay_reactions: raw.relay_reactions,
            reactions_as_text: raw.reactions_as_text,
            media_public_url,
            media_max_bytes: raw.media_max_bytes,
            media_keep,
            store_passphrase,
            per_message_profiles: raw.per_message_profiles.unwrap_or(false),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::appservice::config::AppServiceConfig;

    fn account() -> AccountInfo {
        AccountInfo {
            account: "matrix.home".into(),
            config_dir: PathBuf::from("/nonexistent"),
            data_dir: PathBuf::from("/nonexistent/data"),
        }
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let table: toml::Table =
            toml::from_str(text).map_err(|e| ConfigError::at(&[], e.to_string()))?;
        Config::from_table(&account(), table)
    }

    #[test]
    fn minimal_table_gets_defaults() {
        let config = parse(
            "homeserver = \"http://127.0.0.1:8008/\"\nuser = \"@bot:localhost\"\npassword = \"pw\"\n\
             rooms = [\"#general:localhost\", \"!abc\"]",
        )
        .expect("valid");
        assert_eq!(config.homeserver, "http://127.0.0.1:8008");
        assert_eq!(config.credentials, Credentials::Password("pw".into()));
        assert_eq!(config.device_name, "patchbay");
        assert!(config.relay_reactions);
        assert_eq!(config.media_max_bytes, 50 * 1024 * 1024);
        assert_eq!(config.media_keep, Duration::from_secs(30 * 86_400));
    }

    #[test]
    fn media_keep_reads_as_a_duration_and_in_days_under_its_old_name() {
        let minimal = "homeserver = \"http://x\"\nuser = \"@b:x\"\npassword = \"p\"\n";
        let config = parse(&format!("{minimal}media_keep = \"12h\"")).expect("valid");
        assert_eq!(config.media_keep, Duration::from_secs(12 * 3600));
        let config = parse(&format!("{minimal}media_keep_days = 2")).expect("valid");
        assert_eq!(config.media_keep, Duration::from_secs(2 * 86_400));
    }

    #[test]
    fn rejects_bad_values_with_their_path() {
        let err = parse("homeserver = \"ftp://x\"\nuser = \"@b:x\"\npassword = \"p\"").unwrap_err();
        assert_eq!(err.path, ["homeserver"]);
        let err = parse("homeserver = \"http://x\"\nuser = \"bot\"\npassword = \"p\"").unwrap_err();
        assert_eq!(err.path, ["user"]);
        let err = parse("homeserver = \"http://x\"\nuser = \"@b:x\"").unwrap_err();
        assert!(err.message.contains("credentials"), "{}", err.message);
        let err = parse(
            "homeserver = \"http://x\"\nuser = \"@b:x\"\npassword = \"p\"\nrooms = [\"general\"]",
        )
        .unwrap_err();
        assert_eq!(err.path, ["rooms", "0"]);
        let err = parse("homeserver = \"http://x\"\nuser = \"@b:x\"\npassword = \"p\"\nroom = 1")
            .unwrap_err();
        assert!(err.message.contains("unknown field"), "{}", err.message);
    }

    #[test]
    fn room_names() {
        assert!(check_room("!opaque").is_ok());
        assert!(check_room("!abc:example.org").is_ok());
        assert!(check_room("#general:example.org").is_ok());
        assert!(check_room("#general").is_err());
        assert!(check_room("general").is_err());
        assert!(check_room("").is_err());
    }

    // Appservice mode, read through the same dispatch on `mode`.

    fn parse_appservice(text: &str) -> Result<AppServiceConfig, ConfigError> {
        let table: toml::Table =
            toml::from_str(text).map_err(|e| ConfigError::at(&[], e.to_string()))?;
        match AccountConfig::from_table(&account(), table)? {
            AccountConfig::AppService(config) => Ok(config),
            AccountConfig::Bot(_) => panic!("bot mode"),
        }
    }

    const MINIMAL: &str = "mode = \"appservice\"\nhomeserver = \"http://127.0.0.1:8008/\"\n\
                           server_name = \"localhost\"\nappservice_url = \"http://127.0.0.1:9000/\"\n";

    #[test]
    fn a_minimal_appservice_table_gets_defaults() {
        let config = parse_appservice(MINIMAL).expect("valid");
        assert_eq!(config.bot_user(), "@patchbay:localhost");
        assert_eq!(config.url, "http://127.0.0.1:9000/_patchbay/matrix/home");
        assert_eq!(config.id, "patchbay-home");
        assert_eq!(config.ghost_template.prefix(), "_patchbay_");
    }

    #[test]
    fn media_links_are_optional_and_check_says_what_the_mode_does_not_do() {
        let config = parse_appservice(MINIMAL).expect("valid");
        assert_eq!(config.media_public_url, None);
        let notes = crate::appservice::check_notes(&config);
        assert!(
            notes[0].contains("does not bridge encrypted rooms"),
            "{notes:?}"
        );
        assert!(
            notes.iter().any(|n| n.contains("media_public_url")),
            "{notes:?}"
        );

        let config = parse_appservice(&format!(
            "{MINIMAL}media_public_url = \"https://b.example/\""
        ))
        .expect("valid");
        assert_eq!(
            config.media_public_url.as_deref(),
            Some("https://b.example")
        );
        let notes = crate::appservice::check_notes(&config);
        assert_eq!(notes.len(), 1, "{notes:?}");
        let err =
            parse_appservice(&format!("{MINIMAL}media_public_url = \"b.example\"")).unwrap_err();
        assert_eq!(err.path, ["media_public_url"]);
    }

    #[test]
    fn bot_keys_are_refused_in_appservice_mode_and_the_reverse() {
        let err = parse_appservice(&format!("{MINIMAL}password = \"x\"")).unwrap_err();
        assert_eq!(err.path, ["password"]);
        let err = parse_appservice(&format!("{MINIMAL}user = \"@a:b\"")).unwrap_err();
        assert_eq!(err.path, ["user"]);
        let err = parse_appservice(&format!("{MINIMAL}ghost_template = \"{{nick}}\"")).unwrap_err();
        assert_eq!(err.path, ["ghost_template"]);
        let err = parse_appservice(&format!("{MINIMAL}bot_localpart = \"Bot\"")).unwrap_err();
        assert_eq!(err.path, ["bot_localpart"]);
        let err =
            parse_appservice(&format!("{MINIMAL}bot_localpart = \"_patchbay_x\"")).unwrap_err();
        assert_eq!(err.path, ["bot_localpart"]);
        let err = parse_appservice(
            "mode = \"appservice\"\nhomeserver = \"http://x\"\nappservice_url = \"http://y\"",
        )
        .unwrap_err();
        assert!(err.message.contains("server_name"), "{}", err.message);
        let bot = "homeserver = \"http://x\"\nuser = \"@b:x\"\npassword = \"p\"\n\
                   server_name = \"x\"";
        let table: toml::Table = toml::from_str(bot).expect("toml");
        let err = AccountConfig::from_table(&account(), table).unwrap_err();
        assert_eq!(err.path, ["server_name"]);
    }
}
