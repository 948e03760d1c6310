//! patchbay's Matrix connector: a bot account on a homeserver, over matrix-sdk, or (with
//! `mode = "appservice"`) an application service whose ghosts stand for remote authors.
//!
//! - `table`: the `[matrix.NAME]` table as written, its defaults and shared checks.
//! - [`config`]: the table validated in bot mode, or dispatched to the appservice's.
//! - [`appservice`]: appservice mode (its own layout is in its module doc).
//! - [`html`]: Matrix HTML ↔ rich text (pure).
//! - [`parse`]: room events → gateway events (pure).
//! - [`render`]: deliveries → room messages, relations, redactions (pure).
//! - `state`: what the bot-mode parts share (config, client, room ids, media links).
//! - `session`: login with a persisted device, joins, the sync loop.
//! - `deliver`: sending, with idempotent transaction ids and rate-limit handling.
//! - `timeline`: sync responses → emitted events, gap filling, invites.
//! - `media`: the records of `/media/...` links to Matrix attachments (both modes).
//! - `media_route`: bot mode's `/media/...` route on patchbay's HTTP listener.
//!
//! The crate's entry point is [`factory`], which returns a boxed, non-generic factory: the
//! gateway binary never instantiates matrix-sdk code itself, so changes there do not recompile
//! it.
#![recursion_limit = "256"]

pub mod appservice;
pub mod config;
mod deliver;
mod health;
pub mod html;
mod media;
mod media_route;
pub mod parse;
pub mod render;
mod session;
mod state;
mod table;
mod timeline;

#[cfg(test)]
mod parse_props;

use std::sync::Arc;

use async_trait::async_trait;
use patchbay_sdk::{
    AccountInfo, ConfigError, Connector, ConnectorContext, ConnectorError, ConnectorFactory,
    Delivered, Delivery, DeliveryError,
};

use crate::appservice::AppService;
use crate::config::AccountConfig;
use crate::state::Shared;

pub use crate::appservice::registration::{RegistrationError, write_registration};

/// Log directives the gateway adds to its filter (unless `RUST_LOG` names the target).
/// matrix-sdk's room-key backup task warns "Trying to backup room keys but no backup key was
/// found" after every sync: the bot keeps no server-side key backup (its keys live in its own
/// store), so the line says nothing an operator can act on, and it came ~140 times in minutes.
pub const QUIET_LOG_DIRECTIVES: &[&str] = &["matrix_sdk_crypto::backups=error"];

/// The factory for `[matrix.NAME]` tables.
pub fn factory() -> Arc<dyn ConnectorFactory> {
    Arc::new(MatrixFactory)
}

struct MatrixFactory;

impl ConnectorFactory for MatrixFactory {
    fn protocol(&self) -> &'static str {
        "matrix"
    }

    fn quiet_log_directives(&self) -> &'static [&'static str] {
        QUIET_LOG_DIRECTIVES
    }

    fn renamed_keys(&self) -> &'static [patchbay_sdk::Renamed] {
        table::RENAMED
    }

    fn build(
        &self,
        account: &AccountInfo,
        table: toml::Table,
    ) -> Result<Arc<dyn Connector>, ConfigError> {
        let data_dir = account.data_dir.clone();
        Ok(Arc::new(match AccountConfig::from_table(account, table)? {
            AccountConfig::Bot(config) => {
                MatrixConnector::Bot(Arc::new(Shared::new(config, data_dir)))
            }
            AccountConfig::AppService(config) => {
                MatrixConnector::AppService(Arc::new(AppService::new(config, data_dir)))
            }
        }))
    }

    fn check_room(&self, room: &str) -> Result<(), String> {
        config::check_room(room)
    }
}

/// One account, in one of the two modes.
enum MatrixConnector {
    Bot(Arc<Shared>),
    AppService(Arc<AppService>),
}

#[async_trait]
impl Connector for MatrixConnector {
    async fn run(&self, ctx: ConnectorContext) -> Result<(), ConnectorError> {
        match self {
            MatrixConnector::Bot(shared) => session::run(shared.clone(), ctx).await,
            MatrixConnector::AppService(service) => appservice::run(service.clone(), ctx).await,
        }
    }

    async fn deliver(&self, delivery: Delivery) -> Result<Delivered, DeliveryError> {
        match self {
            MatrixConnector::Bot(shared) => deliver::deliver(shared, delivery).await,
            MatrixConnector::AppService(service) => {
                appservice::deliver::deliver(service, delivery).await
            }
        }
    }

    /// Bot mode: the `/media/...` links, served only when `media_public_url` says where they
    /// are reachable (without it there is no use for them, and no listener is required).
    /// Appservice mode: the AS API, which the homeserver pushes events to.
    fn http_routes(&self) -> Option<axum::Router> {
        match self {
            MatrixConnector::Bot(shared) => shared
                .config
                .media_public_url
                .is_some()
                .then(|| media_route::routes(shared.clone())),
            MatrixConnector::AppService(service) => Some(appservice::api::routes(service.clone())),
        }
    }

    fn check_notes(&self) -> Vec<String> {
        match self {
            MatrixConnector::Bot(_) => Vec::new(),
            MatrixConnector::AppService(service) => appservice::check_notes(&service.config),
        }
    }
}
