//! The API connector: scripts and custom clients join routes over HTTP and WebSocket.
//!
//! Each `[api.NAME]` account serves, on the gateway's shared listener and behind its token:
//! `POST /api/NAME/ROOM/messages` (send into the route as a named user),
//! `GET /api/NAME/ROOM/messages?after=ID` (what the room saw since an entry, so a client that
//! reconnects catches up), and `GET /api/NAME/stream` (a WebSocket of normalized events both
//! ways, where every client gets every event). The account keeps a durable log of what was
//! delivered to and sent from its rooms in its data directory. The JSON shapes are in
//! docs/api.openapi.yaml.
//!
//! - [`config`]: the `[api.NAME]` table. `wire`: the JSON shapes.
//! - `log`: the SQLite log and its live broadcast.
//! - `state`: what the connector and both HTTP sides share (the sink, the log, sending).
//! - `server`: the REST routes. `stream`: the WebSocket.

pub mod config;

mod log;
mod server;
mod state;
mod stream;
mod wire;

use std::sync::Arc;

use async_trait::async_trait;
use patchbay_sdk::{
    AccountInfo, ConfigError, Connector, ConnectorContext, ConnectorError, ConnectorFactory,
    Delivered, Delivery, DeliveryError, HealthEvent, Signal,
};
use tokio::sync::{broadcast, watch};

pub use config::ApiConfig;
pub use wire::{Direction, Entry};

use state::{Ready, Shared};

/// How many entries a stream may fall behind before it catches up from the log instead.
const LIVE_BUFFER: usize = 1024;

/// Builds API accounts from `[api.NAME]` tables.
pub struct ApiFactory;

impl ConnectorFactory for ApiFactory {
    fn protocol(&self) -> &'static str {
        "api"
    }

    fn build(
        &self,
        account: &AccountInfo,
        table: toml::Table,
    ) -> Result<Arc<dyn Connector>, ConfigError> {
        let config = config::parse(account, table)?;
        Ok(Arc::new(Api::new(config)))
    }

    fn renamed_keys(&self) -> &'static [patchbay_sdk::Renamed] {
        config::RENAMED
    }

    fn check_room(&self, room: &str) -> Result<(), String> {
        if room.is_empty() || room.contains(['/', '?', '#']) {
            Err(format!(
                "`{room}` cannot be an API room: it is a segment of /api/NAME/ROOM/messages"
            ))
        } else {
            Ok(())
        }
    }
}

/// One API account.
pub struct Api {
    shared: Arc<Shared>,
}

impl Api {
    pub fn new(config: ApiConfig) -> Self {
        let (ready, _) = watch::channel(None);
        let (live, _) = broadcast::channel(LIVE_BUFFER);
        Api {
            shared: Arc::new(Shared {
                config,
                ready,
                live,
            }),
        }
    }

    fn log(&self) -> Option<Arc<log::Log>> {
        self.shared
            .ready
            .borrow()
            .as_ref()
            .map(|r| Arc::clone(&r.log))
    }
}

#[async_trait]
impl Connector for Api {
    async fn run(&self, ctx: ConnectorContext) -> Result<(), ConnectorError> {
        let path = ctx.data_dir.join("api.db");
        let live = self.shared.live.clone();
        let open = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || log::Log::open(&path, live)).await
        };
        let log = open
            .unwrap_or(Err(log::LogError::Join))
            .map(Arc::new)
            .map_err(|err| {
                ConnectorError::with_source(
                    format_args!("cannot open the API log {}", path.display()),
                    err,
                )
            })?;
        // Ready stays set after shutdown: sends then get the gateway's `Closed`, a prompt 503.
        self.shared.ready.send_replace(Some(Ready {
            sink: ctx.sink.clone(),
            log: Arc::clone(&log),
            shutdown: ctx.shutdown.clone(),
        }));
        ctx.state.up();
        let keep = self.shared.config.history;
        loop {
            match log::blocking(&log, move |log| log.prune(keep)).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(account = %ctx.account, "pruned {n} API log entries"),
                Err(err) => PruneFailed { error: &err }.emit(&ctx.sink),
            }
            tokio::select! {
                _ = ctx.shutdown.cancelled() => break,
                _ = tokio::time::sleep(server::PRUNE_EVERY) => {}
            }
        }
        Ok(())
    }

    async fn deliver(&self, delivery: Delivery) -> Result<Delivered, DeliveryError> {
        let Some(log) = self.log() else {
            return Err(DeliveryError::retryable(
                "the API connector is not running yet",
            ));
        };
        if !self.shared.config.serves(&delivery.room) {
            return Err(DeliveryError::permanent(format!(
                "this API does not serve room `{}`",
                delivery.room
            )));
        }
        let entry = Entry {
            id: 0,
            room: delivery.room,
            direction: Direction::Delivered,
            nick: delivery.nick,
            route: delivery.route,
            event: delivery.event,
        };
        log::blocking(&log, move |log| log.append(entry))
            .await
            .map_err(|err| DeliveryError::retryable(err.to_string()))?;
        // Clients name messages by gateway event id, so there is no network id to record.
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

patchbay_sdk::health_events! {
    /// The API log could not be pruned; tried again at the next prune.
    struct PruneFailed<'a> { error: &'a dyn std::fmt::Display }
        => Signal::SaveFailed, |account| tracing::warn!(account = %account, "pruning the API log: {error}; tried again at the next prune: check the account's data dir (writable, disk space)");
}
