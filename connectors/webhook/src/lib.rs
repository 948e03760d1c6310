//! The webhook connector: notifications in and out over HTTP.
//!
//! Inbound, `POST /hooks/NAME/ROOM` on the gateway's shared listener becomes a message in room
//! `webhook.NAME/ROOM` (Slack- or Discord-style JSON, plain text, or JSON through a template —
//! shipped for GitHub, GitLab, Alertmanager and Grafana), authenticated by bearer token or HMAC
//! signature, answered 202 once the gateway has recorded it. Outbound, a room with a `url`
//! receives each delivery as a POST in Slack, Discord, Mattermost, patchbay JSON or template
//! form; failures the receiver may recover from are retried by the gateway's outbox.
//!
//! - [`config`]: the `[webhook.NAME]` table.
//! - `auth`: tokens and signatures (GitHub, Slack, patchbay's timed one). `replay`: timed
//!   signatures already accepted. `ratelimit`: per-hook token buckets.
//! - `parse`: bodies → messages. `templates`: the shipped and configured templates.
//! - `server`: the inbound route. `render` + `send`: the outbound POST.

pub mod config;

mod auth;
mod parse;
mod ratelimit;
mod render;
mod replay;
mod send;
mod server;
mod templates;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use patchbay_sdk::{
    AccountInfo, ConfigError, Connector, ConnectorContext, ConnectorError, ConnectorFactory,
    Delivered, Delivery, DeliveryError,
};
use tokio::sync::watch;

pub use auth::{PATCHBAY_SIGNATURE, PATCHBAY_TIMESTAMP, sign, sign_timed, verify};
pub use config::WebhookConfig;

use server::Shared;

/// Builds webhook accounts from `[webhook.NAME]` tables.
pub struct WebhookFactory;

impl ConnectorFactory for WebhookFactory {
    fn protocol(&self) -> &'static str {
        "webhook"
    }

    fn build(
        &self,
        account: &AccountInfo,
        table: toml::Table,
    ) -> Result<Arc<dyn Connector>, ConfigError> {
        let config = config::parse(account, table)?;
        Ok(Arc::new(Webhook::new(config)?))
    }

    fn renamed_keys(&self) -> &'static [patchbay_sdk::Renamed] {
        config::RENAMED
    }

    fn check_room(&self, room: &str) -> Result<(), String> {
        if room.is_empty() {
            Err("the room name is empty".into())
        } else if room.contains('/') || room.contains('?') || room.contains('#') {
            Err(format!(
                "`{room}` cannot be a hook name: it is the last segment of /hooks/NAME/ROOM"
            ))
        } else {
            Ok(())
        }
    }
}

/// One webhook account.
pub struct Webhook {
    shared: Arc<Shared>,
    /// The HTTP client for outbound posts; `None` for an account that only takes posts in.
    /// Making one loads and parses the system's root certificates: two such accounts cost an
    /// idle gateway 0.7-1.6 MiB (README, "Memory and fan-out") for clients never used.
    client: Option<reqwest::Client>,
    /// Clients for rooms that trust only their own CA (`tls_ca_file`), by room (`*` for the
    /// account's default).
    pinned: HashMap<String, reqwest::Client>,
}

fn make_client(tls_ca: Option<&[u8]>) -> Result<reqwest::Client, reqwest::Error> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("patchbay/", env!("CARGO_PKG_VERSION")))
        // A redirected POST turns into a GET on most servers: a hook URL that redirects is
        // a configuration mistake, reported as a permanent failure naming the status.
        .redirect(reqwest::redirect::Policy::none());
    if let Some(pem) = tls_ca {
        builder = builder.tls_certs_only(reqwest::Certificate::from_pem_bundle(pem)?);
    }
    builder.build()
}

impl Webhook {
    pub fn new(config: WebhookConfig) -> Result<Self, ConfigError> {
        let posts_out = !config.outbound.is_empty() || config.default_outbound.is_some();
        let client = posts_out
            .then(|| make_client(None))
            .transpose()
            .map_err(|err| ConfigError::at(&[], format!("cannot make an HTTP client: {err}")))?;
        let mut pinned = HashMap::new();
        let rooms = config
            .outbound
            .iter()
            .map(|(room, settings)| (room.as_str(), settings))
            .chain(config.default_outbound.iter().map(|s| ("*", s)));
        for (room, settings) in rooms {
            if let Some(pem) = &settings.tls_ca {
                let pinned_client = make_client(Some(pem)).map_err(|err| {
                    ConfigError::at(&["tls_ca_file"], format!("cannot use the CA: {err}"))
                })?;
                pinned.insert(room.to_owned(), pinned_client);
            }
        }
        let limiter = ratelimit::RateLimiter::new(config.rate_per_minute, config.rate_burst);
        let (sink, _) = watch::channel(None);
        Ok(Webhook {
            shared: Arc::new(Shared {
                config,
                limiter,
                seen: replay::Seen::default(),
                sink,
            }),
            client,
            pinned,
        })
    }

    /// The client for deliveries to `room`; there is one whenever the room has outbound
    /// settings.
    fn client_for(&self, room: &str) -> Option<&reqwest::Client> {
        let key = if self.shared.config.outbound.contains_key(room) {
            room
        } else {
            "*"
        };
        self.pinned.get(key).or(self.client.as_ref())
    }
}

#[async_trait]
impl Connector for Webhook {
    async fn run(&self, ctx: ConnectorContext) -> Result<(), ConnectorError> {
        // The sink stays after shutdown: the gateway then answers `Closed`, a prompt 503.
        self.shared.sink.send_replace(Some(ctx.sink.clone()));
        ctx.state.up();
        ctx.shutdown.cancelled().await;
        Ok(())
    }

    async fn deliver(&self, delivery: Delivery) -> Result<Delivered, DeliveryError> {
        let config = &self.shared.config;
        let Some(settings) = config.outbound(&delivery.room) else {
            return Err(DeliveryError::permanent(format!(
                "webhook room `{}` has no `url` to deliver to (set [webhook.{}.rooms.{}] url = ...)",
                delivery.room, config.name, delivery.room
            )));
        };
        let body = render::render(settings, &config.templates, &delivery)
            .map_err(DeliveryError::permanent)?;
        let Some(body) = body else {
            return Ok(Delivered::default());
        };
        let Some(client) = self.client_for(&delivery.room) else {
            return Err(DeliveryError::permanent(
                "no HTTP client was made for this account (a bug: it has outbound settings)",
            ));
        };
        send::post(client, settings, body).await?;
        Ok(Delivered::default())
    }

    /// Inbound HTTP holds no connection: every instance serves it.
    fn holds_connection(&self) -> bool {
        false
    }

    fn http_routes(&self) -> Option<axum::Router> {
        Some(server::router(Arc::clone(&self.shared)))
    }
}
