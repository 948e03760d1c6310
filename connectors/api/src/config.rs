//! The `[api.NAME]` table.

use std::path::PathBuf;
use std::time::Duration;

use patchbay_sdk::duration::default_secs;
use patchbay_sdk::{AccountInfo, ConfigDuration, ConfigError, Renamed, parse_renamed, read_secret};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    token: Option<String>,
    token_file: Option<PathBuf>,
    /// Only these rooms are served (any room when empty).
    #[serde(default)]
    rooms: Vec<String>,
    #[serde(default = "default_max_body")]
    max_body_bytes: usize,
    /// How often the server pings a WebSocket client; a client silent for two intervals is
    /// closed. At least 50 ms; default 30 s.
    #[serde(default = "default_secs::<30>")]
    ping_interval: ConfigDuration,
    /// How long the log keeps entries for catching up. Default 7 days.
    #[serde(default = "default_secs::<604800>")]
    history: ConfigDuration,
    /// Entries per `GET .../messages` page when the client does not say.
    #[serde(default = "default_page")]
    page_size: usize,
    /// How long a request waits for the gateway to start before 503. Default 10 s.
    #[serde(default = "default_secs::<10>")]
    start_wait: ConfigDuration,
}

/// The durations were numbers, `*_secs` and `history_days`, until every config wrote them one
/// way; the old names still read.
pub const RENAMED: &[Renamed] = &[
    Renamed::secs("ping_interval_secs", "ping_interval"),
    Renamed::days("history_days", "history"),
    Renamed::secs("start_wait_secs", "start_wait"),
];

fn default_max_body() -> usize {
    64 * 1024
}
fn default_page() -> usize {
    100
}

/// The most entries one page may hold.
pub const MAX_PAGE: usize = 1000;

/// A validated `[api.NAME]` table.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// The account's NAME, the second segment of `/api/NAME/...`.
    pub name: String,
    pub token: String,
    pub rooms: Vec<String>,
    pub max_body_bytes: usize,
    pub ping_interval: Duration,
    pub history: Duration,
    pub page_size: usize,
    pub start_wait: Duration,
}

impl ApiConfig {
    /// Whether `room` is served.
    pub fn serves(&self, room: &str) -> bool {
        self.rooms.is_empty() || self.rooms.iter().any(|r| r == room)
    }
}

/// The shortest ping interval: a faster one would be most of the traffic.
const MIN_PING: Duration = Duration::from_millis(50);

pub fn parse(account: &AccountInfo, table: toml::Table) -> Result<ApiConfig, ConfigError> {
    parse_renamed(table, RENAMED, |raw| check(account, raw))
}

fn check(account: &AccountInfo, raw: Raw) -> Result<ApiConfig, ConfigError> {
    let token =
        read_secret(account, raw.token, raw.token_file.as_deref(), "token")?.ok_or_else(|| {
            ConfigError::at(
                &[],
                "the API needs `token` (or `token_file`): clients send it as a bearer token",
            )
        })?;
    if token.len() < 8 {
        return Err(ConfigError::at(
            &["token"],
            "the token is too short to guard anything (8 characters at least)",
        ));
    }
    for (i, room) in raw.rooms.iter().enumerate() {
        if room.is_empty() || room.contains('/') {
            return Err(ConfigError::at(
                &["rooms", &i.to_string()],
                "a room name must be non-empty and hold no `/`",
            ));
        }
    }
    if raw.max_body_bytes == 0 {
        return Err(ConfigError::at(&["max_body_bytes"], "must be above 0"));
    }
    if raw.page_size == 0 || raw.page_size > MAX_PAGE {
        return Err(ConfigError::at(
            &["page_size"],
            format!("must be between 1 and {MAX_PAGE}"),
        ));
    }
    if raw.ping_interval.get() < MIN_PING {
        return Err(ConfigError::at(
            &["ping_interval"],
            format!("must be at least {}", ConfigDuration(MIN_PING)),
        ));
    }
    let name = patchbay_sdk::room::name_of(&account.account).to_owned();
    Ok(ApiConfig {
        name,
        token,
        rooms: raw.rooms,
        max_body_bytes: raw.max_body_bytes,
        ping_interval: raw.ping_interval.get(),
        history: raw.history.get(),
        page_size: raw.page_size,
        start_wait: raw.start_wait.get(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(source: &str) -> Result<ApiConfig, ConfigError> {
        let dir = std::env::temp_dir();
        let info = AccountInfo {
            account: "api.bots".into(),
            config_dir: dir.clone(),
            data_dir: dir,
        };
        parse(&info, toml::from_str(source).expect("TOML"))
    }

    #[test]
    fn defaults_and_mistakes() {
        let config = build("token = \"long-enough\"").expect("valid");
        assert_eq!(config.name, "bots");
        assert!(config.serves("anything"));
        assert_eq!(config.page_size, 100);
        let only = build("token = \"long-enough\"\nrooms = [\"a\"]").expect("valid");
        assert!(only.serves("a") && !only.serves("b"));
        let error = |source: &str| {
            let err = build(source).expect_err("invalid");
            (err.path, err.message)
        };
        assert_eq!(
            error(""),
            (
                vec![],
                "the API needs `token` (or `token_file`): clients send it as a bearer token".into()
            )
        );
        assert_eq!(error("token = \"short\"").0, ["token"]);
        assert_eq!(
            error("token = \"long-enough\"\nrooms = [\"ok\", \"a/b\"]").0,
            ["rooms", "1"]
        );
        assert_eq!(
            error("token = \"long-enough\"\npage_size = 5000"),
            (
                vec!["page_size".into()],
                "must be between 1 and 1000".into()
            )
        );
        assert_eq!(
            error("token = \"long-enough\"\nping_interval_secs = 0").0,
            ["ping_interval_secs"]
        );
        assert_eq!(error("token = \"long-enough\"\nbogus = 1").0, ["bogus"]);
        assert_eq!(
            error("token = \"long-enough\"\nping_interval = \"10ms\""),
            (vec!["ping_interval".into()], "must be at least 50ms".into())
        );
    }

    #[test]
    fn durations_read_as_strings_and_under_their_old_names() {
        let config = build("token = \"long-enough\"\nhistory_days = 2\nping_interval = \"1m\"")
            .expect("valid");
        assert_eq!(config.history, Duration::from_secs(2 * 86_400));
        assert_eq!(config.ping_interval, Duration::from_secs(60));
        let config = build("token = \"long-enough\"").expect("valid");
        assert_eq!(config.history, Duration::from_secs(7 * 86_400));
        assert_eq!(config.start_wait, Duration::from_secs(10));
    }
}
