//! The `[webhook.NAME]` table and its `[webhook.NAME.rooms.ROOM]` overrides.
//!
//! Account-level keys are defaults for every hook (room) of the account; a room table overrides
//! them for one room. Inbound keys shape how `POST /hooks/NAME/ROOM` is authenticated and read;
//! outbound keys (`url`, `payload`, `sign_*`, `timeout`, `headers`) shape how a delivery to
//! the room is POSTed. A room with no `url` cannot be a destination.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use patchbay_sdk::duration::default_secs;
use patchbay_sdk::{AccountInfo, ConfigDuration, ConfigError, Renamed, parse_renamed, read_secret};
use serde::Deserialize;

use crate::templates::{self, Templates};

/// How an inbound body is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Slack JSON if it has `text`, Discord JSON if it has `content`, else plain text.
    Auto,
    Slack,
    Discord,
    Text,
    Github,
    Gitlab,
    Alertmanager,
    Grafana,
    /// The room's own `template`.
    Template,
}

/// What an inbound hook becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InboundKind {
    Message,
    Notice,
}

/// How an inbound request's HMAC-SHA256 signature is read (with `secret`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureScheme {
    /// `sha256=HEX` of the body in `signature_header`, as GitHub signs: no timestamp, so no
    /// replay protection beyond the sender's delivery id.
    Github,
    /// Slack's signing secret: `X-Slack-Signature: v0=HEX` of `v0:{ts}:{body}` with
    /// `X-Slack-Request-Timestamp: {ts}`; refused outside `signature_max_age`.
    Slack,
    /// patchbay's own timed signature (what a patchbay `sign_secret` sends):
    /// `X-Patchbay-Signature: v1=HEX` of `v1:{ts}:{body}` with `X-Patchbay-Timestamp: {ts}`.
    Patchbay,
}

/// How a delivery is POSTed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Payload {
    Slack,
    Discord,
    Mattermost,
    /// The delivery as patchbay's normalized JSON.
    Json,
    /// The room's own `payload_template`.
    Template,
}

/// Keys a room may override; at account level they are the defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoom {
    token: Option<String>,
    token_file: Option<PathBuf>,
    secret: Option<String>,
    secret_file: Option<PathBuf>,
    signature_header: Option<String>,
    signature_scheme: Option<SignatureScheme>,
    /// How far (either way) a timed signature's timestamp may be from our clock; 1 s at
    /// least. Default [`DEFAULT_SIGNATURE_MAX_AGE`].
    signature_max_age: Option<ConfigDuration>,
    format: Option<Format>,
    template: Option<String>,
    template_file: Option<PathBuf>,
    username: Option<String>,
    avatar_url: Option<String>,
    kind: Option<InboundKind>,
    url: Option<String>,
    payload: Option<Payload>,
    payload_template: Option<String>,
    payload_template_file: Option<PathBuf>,
    content_type: Option<String>,
    sign_secret: Option<String>,
    sign_secret_file: Option<PathBuf>,
    sign_header: Option<String>,
    /// How long one outbound POST may take; above 0. Default [`DEFAULT_TIMEOUT`].
    timeout: Option<ConfigDuration>,
    headers: Option<BTreeMap<String, String>>,
    /// Trust only these CA certificates (PEM) for the `url`: a self-hosted receiver.
    tls_ca_file: Option<PathBuf>,
}

/// The keys only an account sets; the rest of its table is its rooms' defaults ([`RawRoom`]).
#[derive(Debug, Deserialize)]
struct RawAccount {
    /// Hooks without a token or secret are refused unless this is set.
    #[serde(default)]
    allow_unauthenticated: bool,
    #[serde(default = "default_max_body")]
    max_body_bytes: usize,
    /// Requests per minute per hook; 0 turns the limit off.
    #[serde(default = "default_rate")]
    rate_limit_per_minute: u32,
    #[serde(default = "default_burst")]
    rate_limit_burst: u32,
    /// How long a request waits for the gateway to start before 503. Default 10 s.
    #[serde(default = "default_secs::<10>")]
    start_wait: ConfigDuration,
    #[serde(default)]
    rooms: BTreeMap<String, RawRoom>,
}

/// The keys of [`RawAccount`].
const ACCOUNT_KEYS: &[&str] = &[
    "allow_unauthenticated",
    "max_body_bytes",
    "rate_limit_per_minute",
    "rate_limit_burst",
    "start_wait",
    "rooms",
];

/// The durations were numbers of seconds named `*_secs` until every config wrote durations
/// one way; the old names still read, at account level and in each room.
pub const RENAMED: &[Renamed] = &[
    Renamed::secs("start_wait_secs", "start_wait"),
    Renamed::secs("signature_max_age_secs", "signature_max_age"),
    Renamed::secs("signature_max_age_secs", "signature_max_age").under("rooms.*"),
    Renamed::secs("timeout_secs", "timeout"),
    Renamed::secs("timeout_secs", "timeout").under("rooms.*"),
];

/// Slack's own advice: a signed request more than five minutes from our clock may be a replay.
const DEFAULT_SIGNATURE_MAX_AGE: Duration = Duration::from_secs(300);
/// `timeout` when neither the room nor the account sets it.
pub(super) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

fn default_max_body() -> usize {
    1024 * 1024
}
fn default_rate() -> u32 {
    120
}
fn default_burst() -> u32 {
    20
}

/// How one hook (room) is authenticated and read.
#[derive(Clone, Debug)]
pub struct InboundSettings {
    pub token: Option<String>,
    pub secret: Option<String>,
    pub signature_header: String,
    pub signature_scheme: SignatureScheme,
    /// How far a timed signature's timestamp may be from the gateway's clock, either way;
    /// also how long an accepted signature is remembered to refuse its replays.
    pub signature_max_age: Duration,
    pub format: Format,
    /// Name of the room's own template in the compiled templates, for `format = "template"`.
    pub template: Option<String>,
    pub username: String,
    pub avatar_url: Option<String>,
    pub kind: InboundKind,
    /// No token, no secret, not open to anyone: inbound requests are refused (the room only
    /// sends out).
    pub closed: bool,
}

/// The hook the module tests start from: no token or secret, GitHub's signature header and
/// scheme with five minutes' leeway, the format guessed, posting as `hook`.
#[cfg(test)]
pub(crate) fn test_hook() -> InboundSettings {
    InboundSettings {
        token: None,
        secret: None,
        signature_header: "X-Hub-Signature-256".into(),
        signature_scheme: SignatureScheme::Github,
        signature_max_age: Duration::from_secs(300),
        format: Format::Auto,
        template: None,
        username: "hook".into(),
        avatar_url: None,
        kind: InboundKind::Message,
        closed: false,
    }
}

/// How deliveries to one room are POSTed.
#[derive(Clone, Debug)]
pub struct OutboundSettings {
    pub url: String,
    pub payload: Payload,
    /// Name of the room's payload template in the compiled templates, for `payload = "template"`.
    pub template: Option<String>,
    pub content_type: String,
    pub sign_secret: Option<String>,
    pub sign_header: String,
    pub timeout: Duration,
    pub headers: BTreeMap<String, String>,
    /// The only CA certificates (PEM) trusted for `url`, when given.
    pub tls_ca: Option<Vec<u8>>,
}

/// A validated `[webhook.NAME]` table.
#[derive(Debug)]
pub struct WebhookConfig {
    /// The account's NAME, the second segment of `/hooks/NAME/ROOM`.
    pub name: String,
    pub defaults: InboundSettings,
    pub inbound: BTreeMap<String, InboundSettings>,
    pub default_outbound: Option<OutboundSettings>,
    pub outbound: BTreeMap<String, OutboundSettings>,
    pub allow_unauthenticated: bool,
    pub max_body_bytes: usize,
    pub rate_per_minute: u32,
    pub rate_burst: u32,
    pub start_wait: Duration,
    pub templates: Arc<Templates>,
}

impl WebhookConfig {
    /// The inbound settings for `room`.
    pub fn inbound(&self, room: &str) -> &InboundSettings {
        self.inbound.get(room).unwrap_or(&self.defaults)
    }

    /// The outbound settings for `room`, if deliveries to it can go anywhere.
    pub fn outbound(&self, room: &str) -> Option<&OutboundSettings> {
        self.outbound.get(room).or(self.default_outbound.as_ref())
    }
}

/// Parse and validate an account's table.
pub fn parse(account: &AccountInfo, table: toml::Table) -> Result<WebhookConfig, ConfigError> {
    parse_renamed(table, RENAMED, |table| check(account, table))
}

fn check(account: &AccountInfo, mut table: toml::Table) -> Result<WebhookConfig, ConfigError> {
    // Account-only keys come out first; what is left must be room keys (the defaults).
    let mut own = toml::Table::new();
    for key in ACCOUNT_KEYS {
        if let Some(value) = table.remove(*key) {
            own.insert((*key).to_owned(), value);
        }
    }
    let raw: RawAccount = patchbay_sdk::parse_table(own)?;
    let account_room: RawRoom = patchbay_sdk::parse_table(table)?;
    let name = patchbay_sdk::room::name_of(&account.account).to_owned();
    let mut templates = Templates::new();
    let base = Resolver {
        account,
        name: &name,
        parent: None,
        prefix: Vec::new(),
    };
    let defaults = base.inbound(&account_room, &mut templates, "*")?;
    let default_outbound = base.outbound(&account_room, &mut templates, "*")?;
    let mut inbound = BTreeMap::new();
    let mut outbound = BTreeMap::new();
    for (room, table) in &raw.rooms {
        if room.is_empty() || room.contains('/') {
            return Err(ConfigError::at(
                &["rooms", room],
                "a hook's room name must be non-empty and hold no `/`",
            ));
        }
        let resolver = Resolver {
            account,
            name: &name,
            parent: Some(&account_room),
            prefix: vec!["rooms", room],
        };
        let mut settings = resolver.inbound(table, &mut templates, room)?;
        let out = resolver.outbound(table, &mut templates, room)?;
        settings.closed = check_auth(
            &settings,
            raw.allow_unauthenticated,
            out.is_some(),
            &["rooms", room],
        )?;
        inbound.insert(room.clone(), settings);
        if let Some(out) = out {
            outbound.insert(room.clone(), out);
        }
    }
    let mut defaults = defaults;
    defaults.closed = check_auth(
        &defaults,
        raw.allow_unauthenticated,
        default_outbound.is_some() || !outbound.is_empty(),
        &[],
    )?;
    if raw.max_body_bytes == 0 {
        return Err(ConfigError::at(&["max_body_bytes"], "must be above 0"));
    }
    if raw.rate_limit_per_minute > 0 && raw.rate_limit_burst == 0 {
        return Err(ConfigError::at(
            &["rate_limit_burst"],
            "must be at least 1 when rate_limit_per_minute is set",
        ));
    }
    Ok(WebhookConfig {
        name,
        defaults,
        inbound,
        default_outbound,
        outbound,
        allow_unauthenticated: raw.allow_unauthenticated,
        max_body_bytes: raw.max_body_bytes,
        rate_per_minute: raw.rate_limit_per_minute,
        rate_burst: raw.rate_limit_burst,
        start_wait: raw.start_wait.get(),
        templates: Arc::new(templates),
    })
}

/// Whether hooks with these settings are closed to inbound requests (no token, no secret):
/// fine for a room that only sends out, a mistake for one that can do nothing.
fn check_auth(
    settings: &InboundSettings,
    allow_unauthenticated: bool,
    sends_out: bool,
    at: &[&str],
) -> Result<bool, ConfigError> {
    let closed = settings.token.is_none() && settings.secret.is_none() && !allow_unauthenticated;
    if closed && !sends_out {
        return Err(ConfigError::at(
            at,
            "a hook needs `token` (bearer token) or `secret` (HMAC signature), or a `url` to send to; set `allow_unauthenticated = true` to accept anyone",
        ));
    }
    Ok(closed)
}

/// Resolves one room's keys against the account's defaults.
struct Resolver<'a> {
    account: &'a AccountInfo,
    name: &'a str,
    parent: Option<&'a RawRoom>,
    prefix: Vec<&'a str>,
}

impl Resolver<'_> {
    fn at(&self, key: &str) -> Vec<String> {
        self.prefix
            .iter()
            .map(|s| (*s).to_owned())
            .chain(std::iter::once(key.to_owned()))
            .collect()
    }

    fn error(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            path: self.at(key),
            message: message.into(),
        }
    }

    /// A key given here, else the parent's: a room's keys default to the account's.
    fn inherit<T: Clone>(&self, own: &Option<T>, get: fn(&RawRoom) -> &Option<T>) -> Option<T> {
        own.clone()
            .or_else(|| self.parent.and_then(|p| get(p).clone()))
    }

    /// A secret given here (inline or as a file), else the parent's.
    fn secret(
        &self,
        inline: &Option<String>,
        file: &Option<PathBuf>,
        from_parent: impl Fn(&RawRoom) -> (Option<String>, Option<PathBuf>),
        key: &str,
    ) -> Result<Option<String>, ConfigError> {
        let relocate = |mut err: ConfigError| {
            let mut path = self
                .prefix
                .iter()
                .map(|s| (*s).to_owned())
                .collect::<Vec<_>>();
            path.append(&mut err.path);
            err.path = path;
            err
        };
        if inline.is_some() || file.is_some() {
            return read_secret(self.account, inline.clone(), file.as_deref(), key)
                .map_err(relocate);
        }
        match self.parent {
            Some(parent) => {
                let (inline, file) = from_parent(parent);
                read_secret(self.account, inline, file.as_deref(), key)
            }
            None => Ok(None),
        }
    }

    /// A template given inline or as a file, registered under `name`.
    fn template(
        &self,
        inline: &Option<String>,
        file: &Option<PathBuf>,
        key: &str,
    ) -> Result<Option<String>, ConfigError> {
        match (inline, file) {
            (Some(_), Some(_)) => Err(self.error(
                key,
                format!("give either `{key}` or `{key}_file`, not both"),
            )),
            (Some(source), None) => Ok(Some(source.clone())),
            (None, Some(path)) => {
                let path = self.account.resolve(path);
                std::fs::read_to_string(&path).map(Some).map_err(|err| {
                    self.error(
                        &format!("{key}_file"),
                        format!("cannot read {}: {err}", path.display()),
                    )
                })
            }
            (None, None) => Ok(None),
        }
    }

    /// The template a room uses when `wanted` names the setting that asks for one: its own
    /// `key` (inline or `_file`), else the account's; compiled and registered as `name`.
    fn compiled(
        &self,
        (inline, file): (&Option<String>, &Option<PathBuf>),
        inherited: Option<(&Option<String>, &Option<PathBuf>)>,
        key: &str,
        wanted: Option<&str>,
        name: String,
        templates: &mut Templates,
    ) -> Result<Option<String>, ConfigError> {
        let mut source = self.template(inline, file, key)?;
        if source.is_none()
            && let Some((inline, file)) = inherited
        {
            let account = Resolver {
                account: self.account,
                name: self.name,
                parent: None,
                prefix: Vec::new(),
            };
            source = account.template(inline, file, key)?;
        }
        let Some(setting) = wanted else {
            return Ok(None);
        };
        let Some(source) = source else {
            let (mode, _) = setting.split_once(' ').unwrap_or((setting, ""));
            return Err(self.error(mode, format!("`{setting}` needs `{key}` or `{key}_file`")));
        };
        templates
            .add(&name, source)
            .map_err(|err| self.error(key, err))?;
        Ok(Some(name))
    }

    fn inbound(
        &self,
        raw: &RawRoom,
        templates: &mut Templates,
        room: &str,
    ) -> Result<InboundSettings, ConfigError> {
        let token = self.secret(
            &raw.token,
            &raw.token_file,
            |p| (p.token.clone(), p.token_file.clone()),
            "token",
        )?;
        let secret = self.secret(
            &raw.secret,
            &raw.secret_file,
            |p| (p.secret.clone(), p.secret_file.clone()),
            "secret",
        )?;
        if token.as_deref() == Some("") {
            return Err(self.error("token", "the token is empty"));
        }
        if secret.as_deref() == Some("") {
            return Err(self.error("secret", "the secret is empty"));
        }
        let format = self
            .inherit(&raw.format, |p| &p.format)
            .unwrap_or(Format::Auto);
        let template = self.compiled(
            (&raw.template, &raw.template_file),
            self.parent.map(|p| (&p.template, &p.template_file)),
            "template",
            (format == Format::Template).then_some("format = \"template\""),
            format!("in:{room}"),
            templates,
        )?;
        let signature_header = self
            .inherit(&raw.signature_header, |p| &p.signature_header)
            .unwrap_or_else(|| "X-Hub-Signature-256".to_owned());
        check_header_name(&signature_header).map_err(|m| self.error("signature_header", m))?;
        let signature_scheme = self
            .inherit(&raw.signature_scheme, |p| &p.signature_scheme)
            .unwrap_or(SignatureScheme::Github);
        let max_age = self
            .inherit(&raw.signature_max_age, |p| &p.signature_max_age)
            .map_or(DEFAULT_SIGNATURE_MAX_AGE, ConfigDuration::get);
        if max_age < Duration::from_secs(1) {
            return Err(self.error(
                "signature_max_age",
                "must be a number of seconds, 1 or more",
            ));
        }
        let username = self.inherit(&raw.username, |p| &p.username);
        let username = username.unwrap_or_else(|| match format {
            Format::Github => "GitHub".to_owned(),
            Format::Gitlab => "GitLab".to_owned(),
            Format::Alertmanager => "Alertmanager".to_owned(),
            Format::Grafana => "Grafana".to_owned(),
            _ => self.name.to_owned(),
        });
        Ok(InboundSettings {
            token,
            secret,
            signature_header,
            signature_scheme,
            signature_max_age: max_age,
            format,
            template,
            username,
            avatar_url: self.inherit(&raw.avatar_url, |p| &p.avatar_url),
            kind: self
                .inherit(&raw.kind, |p| &p.kind)
                .unwrap_or(InboundKind::Message),
            closed: false,
        })
    }
}

fn check_header_name(name: &str) -> Result<(), String> {
    axum::http::HeaderName::from_bytes(name.as_bytes())
        .map(|_| ())
        .map_err(|_| format!("`{name}` is not a valid HTTP header name"))
}

/// The shipped templates' names, for error messages.
pub fn shipped() -> &'static [&'static str] {
    templates::SHIPPED
}

/// `Resolver::outbound`: the keys of a room that receives deliveries.
#[path = "config_outbound.rs"]
mod outbound;

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
