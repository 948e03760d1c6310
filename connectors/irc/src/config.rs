//! The `[irc.NAME]` table: what one IRC account connects to and how it renders.
//!
//! [`RawConfig`] is what serde reads (unknown keys are errors); [`IrcConfig::from_table`] checks
//! it, reads secrets and resolves paths, so a connector never starts with a config it would
//! fail on later.

use std::path::PathBuf;
use std::time::Duration;

use patchbay_sdk::duration::default_secs;
use patchbay_sdk::{AccountInfo, ConfigDuration, ConfigError, Renamed, parse_renamed, read_secret};
use serde::Deserialize;

/// How formatting codes are treated in both directions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Formatting {
    /// mIRC codes become rich text and rich text becomes mIRC codes.
    #[default]
    Keep,
    /// Codes are removed from what is read and never written.
    Strip,
}

/// Which SASL mechanism to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SaslMechanism {
    Plain,
    /// Authenticate with the TLS client certificate (CertFP).
    External,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSasl {
    mechanism: SaslMechanism,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    password_file: Option<PathBuf>,
}

/// A channel to join, written either `"#rust"` or `{ name = "#secret", key = "..." }`.
#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "a channel name like \"#rust\", or { name = \"#secret\", key = \"...\" }"
)]
enum RawChannel {
    Name(String),
    Keyed(KeyedChannel),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyedChannel {
    name: String,
    key: Option<String>,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    server: String,
    port: Option<u16>,
    #[serde(default)]
    tls: bool,
    /// An extra CA (or the server's own self-signed certificate), PEM.
    tls_ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM) for CertFP and SASL EXTERNAL.
    tls_client_cert_file: Option<PathBuf>,
    tls_client_key_file: Option<PathBuf>,
    password: Option<String>,
    password_file: Option<PathBuf>,
    nick: String,
    #[serde(default)]
    alt_nicks: Vec<String>,
    username: Option<String>,
    realname: Option<String>,
    sasl: Option<RawSasl>,
    nickserv_password: Option<String>,
    nickserv_password_file: Option<PathBuf>,
    #[serde(default)]
    on_connect: Vec<String>,
    #[serde(default)]
    channels: Vec<RawChannel>,
    /// How long to wait before rejoining after a kick (30 s at least after "cannot join").
    /// Default 5 s.
    #[serde(default = "default_secs::<5>")]
    rejoin_delay: ConfigDuration,
    /// Silence after which the connector sends a PING. Default 60 s.
    #[serde(default = "default_secs::<60>")]
    ping_interval: ConfigDuration,
    /// Silence after which the connection counts as dead and is dropped. Default 120 s.
    #[serde(default = "default_secs::<120>")]
    ping_timeout: ConfigDuration,
    /// How long TCP and TLS may take to connect; registration gets twice this. Default 30 s.
    #[serde(default = "default_secs::<30>")]
    connect_timeout: ConfigDuration,
    /// The first wait before reconnecting; each failure doubles it. Default 1 s.
    #[serde(default = "default_secs::<1>")]
    reconnect_min: ConfigDuration,
    /// The longest wait before reconnecting. Default 300 s.
    #[serde(default = "default_secs::<300>")]
    reconnect_max: ConfigDuration,
    #[serde(default = "default_true")]
    flood_control: bool,
    #[serde(default = "default_flood_burst")]
    flood_burst: u32,
    #[serde(default = "default_flood_rate")]
    flood_rate: f64,
    #[serde(default)]
    formatting: Formatting,
    #[serde(default = "default_anti_highlight")]
    anti_highlight: String,
    #[serde(default)]
    nick_colors: bool,
    #[serde(default = "default_max_lines")]
    max_lines: usize,
    #[serde(default = "default_edit_prefix")]
    edit_prefix: String,
    #[serde(default = "default_quote_chars")]
    reply_quote_chars: usize,
    #[serde(default = "default_charset")]
    charset: String,
    #[serde(default = "default_true")]
    catch_up: bool,
    /// How far back catch-up after an outage reaches. Default one day.
    #[serde(default = "default_secs::<86400>")]
    catch_up_max_age: ConfigDuration,
    /// How long a delivery waits for echo-message to learn its msgid. Default 10 s.
    #[serde(default = "default_secs::<10>")]
    echo_timeout: ConfigDuration,
    /// While on an alternative nick, how often to try the configured one (100 ms at least).
    /// Default 60 s.
    #[serde(default = "default_secs::<60>")]
    regain_nick: ConfigDuration,
}

/// The duration keys were numbers of seconds named `*_secs` until every config wrote
/// durations one way; the old names still read.
pub const RENAMED: &[Renamed] = &[
    Renamed::secs("rejoin_delay_secs", "rejoin_delay"),
    Renamed::secs("ping_interval_secs", "ping_interval"),
    Renamed::secs("ping_timeout_secs", "ping_timeout"),
    Renamed::secs("connect_timeout_secs", "connect_timeout"),
    Renamed::secs("reconnect_min_secs", "reconnect_min"),
    Renamed::secs("reconnect_max_secs", "reconnect_max"),
    Renamed::secs("catch_up_max_age_secs", "catch_up_max_age"),
    Renamed::secs("echo_timeout_secs", "echo_timeout"),
    Renamed::secs("regain_nick_secs", "regain_nick"),
];

fn default_flood_burst() -> u32 {
    5
}
fn default_flood_rate() -> f64 {
    2.0
}
fn default_anti_highlight() -> String {
    "\u{200B}".into()
}
fn default_max_lines() -> usize {
    25
}
fn default_edit_prefix() -> String {
    "fixed: ".into()
}
fn default_quote_chars() -> usize {
    40
}
fn default_charset() -> String {
    "latin1".into()
}

/// SASL credentials, checked.
#[derive(Clone, Debug)]
pub enum Sasl {
    Plain { username: String, password: String },
    External,
}

/// A channel to join.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Channel {
    pub name: String,
    pub key: Option<String>,
}

/// Token-bucket flood control: `burst` lines at once, then `rate` lines per second.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Flood {
    pub enabled: bool,
    pub burst: u32,
    pub rate: f64,
}

/// How deliveries look on IRC.
#[derive(Clone, Debug)]
pub struct RenderConfig {
    pub formatting: Formatting,
    /// Inserted after the first character of relayed nicks so they do not ping people; empty
    /// to disable.
    pub anti_highlight: String,
    /// Colour relayed nicks by a hash of the name.
    pub nick_colors: bool,
    /// The most IRC lines one delivery may become; the rest is cut with a note.
    pub max_lines: usize,
    /// Put before the new text of an edit.
    pub edit_prefix: String,
    /// How much of a replied-to message to quote.
    pub reply_quote_chars: usize,
}

impl Default for RenderConfig {
    fn default() -> Self {
        RenderConfig {
            formatting: Formatting::Keep,
            anti_highlight: default_anti_highlight(),
            nick_colors: false,
            max_lines: default_max_lines(),
            edit_prefix: default_edit_prefix(),
            reply_quote_chars: default_quote_chars(),
        }
    }
}

/// One IRC account's checked config.
#[derive(Clone, Debug)]
pub struct IrcConfig {
    pub server: String,
    pub port: u16,
    pub tls: bool,
    pub tls_ca_file: Option<PathBuf>,
    pub tls_client_cert: Option<(PathBuf, PathBuf)>,
    pub password: Option<String>,
    pub nick: String,
    pub alt_nicks: Vec<String>,
    pub username: String,
    pub realname: String,
    pub sasl: Option<Sasl>,
    pub nickserv_password: Option<String>,
    pub on_connect: Vec<String>,
    pub channels: Vec<Channel>,
    pub rejoin_delay: Duration,
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    pub connect_timeout: Duration,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    pub flood: Flood,
    pub render: RenderConfig,
    /// Decoder for lines that are not UTF-8.
    pub charset: &'static encoding_rs::Encoding,
    pub catch_up: bool,
    /// How far back catch-up after an outage reaches (`catch_up_max_age`, default one
    /// day): after a longer outage only the last day is relayed, so a bridge that was down for
    /// a week does not flood its rooms with a week of old talk.
    pub catch_up_max_age: Duration,
    /// How long to wait for echo-message to give a sent message its id.
    pub echo_timeout: Duration,
    /// While on an alternative nick, how often to try the configured one again.
    pub regain_nick: Duration,
}

/// The longest duration a key takes: far beyond any sensible wait, and far from overflowing
/// a deadline computed from it.
const MAX_DURATION: Duration = Duration::from_secs(1_000_000_000);

fn secs(value: ConfigDuration, key: &str) -> Result<Duration, ConfigError> {
    if value.get() < MAX_DURATION {
        Ok(value.get())
    } else {
        Err(ConfigError::at(
            &[key],
            format!("`{key}` must be under 1000000000 seconds (about 31 years), not {value}"),
        ))
    }
}

/// Whether `name` looks like an IRC channel.
pub fn is_channel(name: &str) -> bool {
    name.len() > 1
        && name.starts_with(['#', '&', '+', '!'])
        && !name.contains([' ', ',', '\x07', '\r', '\n', '\0'])
}

fn check_nick(nick: &str, key: &str) -> Result<(), ConfigError> {
    let bad_start = nick.starts_with(|c: char| c.is_ascii_digit() || c == '-');
    if nick.is_empty()
        || bad_start
        || nick.contains([' ', ',', '*', '?', '!', '@', ':', '#', '\r', '\n', '\0'])
    {
        return Err(ConfigError::at(
            &[key],
            format!("`{nick}` is not a valid IRC nick"),
        ));
    }
    Ok(())
}

impl IrcConfig {
    /// Read and check an account's table. Reads secret files; never connects.
    pub fn from_table(account: &AccountInfo, table: toml::Table) -> Result<Self, ConfigError> {
        parse_renamed(table, RENAMED, |raw| Self::check(account, raw))
    }

    fn check(account: &AccountInfo, raw: RawConfig) -> Result<Self, ConfigError> {
        if raw.server.trim().is_empty() {
            return Err(ConfigError::at(&["server"], "`server` is empty"));
        }
        check_nick(&raw.nick, "nick")?;
        for alt in &raw.alt_nicks {
            check_nick(alt, "alt_nicks")?;
        }
        let password = read_secret(
            account,
            raw.password,
            raw.password_file.as_deref(),
            "password",
        )?;
        let nickserv_password = read_secret(
            account,
            raw.nickserv_password,
            raw.nickserv_password_file.as_deref(),
            "nickserv_password",
        )?;
        let tls_client_cert = match (raw.tls_client_cert_file, raw.tls_client_key_file) {
            (Some(cert), Some(key)) => Some((account.resolve(&cert), account.resolve(&key))),
            (None, None) => None,
            _ => {
                return Err(ConfigError::at(
                    &["tls_client_cert_file"],
                    "give both `tls_client_cert_file` and `tls_client_key_file`, or neither",
                ));
            }
        };
        if tls_client_cert.is_some() && !raw.tls {
            return Err(ConfigError::at(
                &["tls_client_cert_file"],
                "a client certificate needs `tls = true`",
            ));
        }
        let sasl = match raw.sasl {
            None => None,
            Some(s) => match s.mechanism {
                SaslMechanism::External => {
                    if tls_client_cert.is_none() {
                        return Err(ConfigError::at(
                            &["sasl", "mechanism"],
                            "SASL EXTERNAL needs `tls_client_cert_file` and `tls_client_key_file`",
                        ));
                    }
                    Some(Sasl::External)
                }
                SaslMechanism::Plain => {
                    let password =
                        read_secret(account, s.password, s.password_file.as_deref(), "password")
                            .map_err(|mut e| {
                                e.path.insert(0, "sasl".into());
                                e
                            })?
                            .ok_or_else(|| {
                                ConfigError::at(
                                    &["sasl", "password"],
                                    "SASL PLAIN needs `password` or `password_file`",
                                )
                            })?;
                    Some(Sasl::Plain {
                        username: s.username.unwrap_or_else(|| raw.nick.clone()),
                        password,
                    })
                }
            },
        };
        let mut channels = Vec::new();
        for channel in raw.channels {
            let (name, key) = match channel {
                RawChannel::Name(name) => (name, None),
                RawChannel::Keyed(KeyedChannel { name, key }) => (name, key),
            };
            if !is_channel(&name) {
                return Err(ConfigError::at(
                    &["channels"],
                    format!("`{name}` is not an IRC channel name (it starts with # or &)"),
                ));
            }
            channels.push(Channel { name, key });
        }
        for (i, line) in raw.on_connect.iter().enumerate() {
            if line.contains(['\r', '\n', '\0']) {
                return Err(ConfigError::at(
                    &["on_connect", &i.to_string()],
                    "a command must be one line",
                ));
            }
        }
        if raw.flood_control
            && (raw.flood_rate.is_nan() || raw.flood_rate <= 0.0 || raw.flood_burst == 0)
        {
            return Err(ConfigError::at(
                &["flood_rate"],
                "`flood_rate` must be > 0 and `flood_burst` >= 1 (or set `flood_control = false`)",
            ));
        }
        if raw.max_lines == 0 {
            return Err(ConfigError::at(&["max_lines"], "`max_lines` must be >= 1"));
        }
        let charset =
            encoding_rs::Encoding::for_label(raw.charset.as_bytes()).ok_or_else(|| {
                ConfigError::at(
                    &["charset"],
                    format!(
                        "unknown charset `{}` (try latin1, cp1251, koi8-r)",
                        raw.charset
                    ),
                )
            })?;
        let reconnect_min = secs(raw.reconnect_min, "reconnect_min")?;
        let reconnect_max = secs(raw.reconnect_max, "reconnect_max")?;
        if reconnect_max < reconnect_min {
            return Err(ConfigError::at(
                &["reconnect_max"],
                "`reconnect_max` is less than `reconnect_min`",
            ));
        }
        Ok(IrcConfig {
            port: raw.port.unwrap_or(if raw.tls { 6697 } else { 6667 }),
            server: raw.server,
            tls: raw.tls,
            tls_ca_file: raw.tls_ca_file.map(|p| account.resolve(&p)),
            tls_client_cert,
            password,
            username: raw.username.unwrap_or_else(|| raw.nick.clone()),
            realname: raw.realname.unwrap_or_else(|| "patchbay bridge".to_owned()),
            alt_nicks: raw.alt_nicks,
            nick: raw.nick,
            sasl,
            nickserv_password,
            on_connect: raw.on_connect,
            channels,
            rejoin_delay: secs(raw.rejoin_delay, "rejoin_delay")?,
            ping_interval: secs(raw.ping_interval, "ping_interval")?,
            ping_timeout: secs(raw.ping_timeout, "ping_timeout")?,
            connect_timeout: secs(raw.connect_timeout, "connect_timeout")?,
            reconnect_min,
            reconnect_max,
            flood: Flood {
                enabled: raw.flood_control,
                burst: raw.flood_burst,
                rate: raw.flood_rate,
            },
            render: RenderConfig {
                formatting: raw.formatting,
                anti_highlight: raw.anti_highlight,
                nick_colors: raw.nick_colors,
                max_lines: raw.max_lines,
                edit_prefix: raw.edit_prefix,
                reply_quote_chars: raw.reply_quote_chars,
            },
            charset,
            catch_up: raw.catch_up,
            catch_up_max_age: secs(raw.catch_up_max_age, "catch_up_max_age")?,
            echo_timeout: secs(raw.echo_timeout, "echo_timeout")?,
            regain_nick: secs(raw.regain_nick, "regain_nick")?.max(Duration::from_millis(100)),
        })
    }

    /// The nicks to try, in order: the configured one, the alternatives, then `nick_`.
    pub fn nick_candidates(&self) -> Vec<String> {
        let mut out = vec![self.nick.clone()];
        out.extend(self.alt_nicks.iter().cloned());
        if self.alt_nicks.is_empty() {
            out.push(format!("{}_", self.nick));
            out.push(format!("{}__", self.nick));
        }
        out
    }
}

/// An account's table read and checked as the factory does, for the crate's unit tests: its
/// directories do not exist, so a file it names cannot be read.
#[cfg(test)]
pub(crate) fn from_test_table(table: &str) -> Result<IrcConfig, ConfigError> {
    let account = AccountInfo {
        account: "irc.test".into(),
        config_dir: PathBuf::from("/nonexistent"),
        data_dir: PathBuf::from("/nonexistent/data"),
    };
    IrcConfig::from_table(&account, toml::from_str(table).expect("test toml"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use from_test_table as parse;

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse("server = \"irc.example\"\nnick = \"pb\"").expect("valid");
        assert_eq!(c.port, 6667);
        assert_eq!(c.username, "pb");
        assert!(c.flood.enabled);
        assert_eq!(c.nick_candidates(), vec!["pb", "pb_", "pb__"]);
        assert_eq!(c.render.anti_highlight, "\u{200B}");
        assert_eq!(c.catch_up_max_age, Duration::from_secs(86_400));
    }

    #[test]
    fn durations_read_as_strings_and_under_their_old_secs_names() {
        let c = parse(
            "server = \"s\"\nnick = \"pb\"\nping_interval = \"1m 30s\"\nreconnect_min_secs = 0.5",
        )
        .expect("valid");
        assert_eq!(c.ping_interval, Duration::from_secs(90));
        assert_eq!(c.reconnect_min, Duration::from_millis(500));
        let err = parse(
            "server = \"s\"\nnick = \"pb\"\nreconnect_max_secs = 0.1\nreconnect_min = \"1s\"",
        )
        .expect_err("max below min");
        assert_eq!(err.path, ["reconnect_max_secs"]);
        assert_eq!(err.message, "`reconnect_max` is less than `reconnect_min`");
    }

    #[test]
    fn channels_with_and_without_keys() {
        let c = parse(
            "server = \"s\"\nnick = \"pb\"\ntls = true\n\
                 channels = [\"#a\", { name = \"#b\", key = \"k\" }]",
        )
        .expect("valid");
        assert_eq!(c.port, 6697);
        assert_eq!(c.channels[1].key.as_deref(), Some("k"));
    }

    #[test]
    fn errors_name_the_key() {
        let err = parse("server = \"s\"\nnick = \"pb\"\nbogus = 1").expect_err("unknown key");
        assert!(err.message.contains("bogus"), "{err:?}");
        let err =
            parse("server = \"s\"\nnick = \"pb\"\nchannels = [\"rust\"]").expect_err("bad channel");
        assert_eq!(err.path, vec!["channels"]);
        let err = parse("server = \"s\"\nnick = \"pb\"\n[sasl]\nmechanism = \"plain\"")
            .expect_err("no password");
        assert_eq!(err.path, vec!["sasl", "password"]);
        let err = parse("server = \"s\"\nnick = \"pb\"\n[sasl]\nmechanism = \"external\"")
            .expect_err("no cert");
        assert_eq!(err.path, vec!["sasl", "mechanism"]);
        let err = parse("server = \"s\"\nnick = \"1pb\"").expect_err("");
        assert_eq!(err.path, vec!["nick"]);
        let err =
            parse("server = \"s\"\nnick = \"pb\"\ncharset = \"klingon\"").expect_err("charset");
        assert_eq!(err.path, vec!["charset"]);
    }
}
