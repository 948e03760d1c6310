//! patchbay's Matrix connector: a bot account on a homeserver, over matrix-sdk.
//!
//! - [`config`]: the `[matrix.NAME]` table.
//! - [`html`]: Matrix HTML ↔ rich text (pure).
//! - [`parse`]: room events → gateway events (pure).
//! - [`render`]: deliveries → room messages, relations, redactions (pure).
//! - `session`: login with a persisted device, joins, the sync loop.
//! - `deliver`: sending, with idempotent transaction ids and rate-limit handling.
//! - `timeline`: sync responses → emitted events, gap filling, invites.
//! - `media`: `/media/...` links to Matrix attachments on patchbay's HTTP listener.
//!
//! The crate's entry point is [`factory`], which returns a boxed, non-generic factory: the
//! gateway binary never instantiates matrix-sdk code itself, so changes there do not recompile
//! it.
#![recursion_limit = "256"]

pub mod config;
mod deliver;
pub mod html;
mod media;
pub mod parse;
pub mod render;
mod session;
mod timeline;

use std::sync::Arc;

use async_trait::async_trait;
use patchbay_sdk::{
    AccountInfo, ConfigError, Connector, ConnectorContext, ConnectorError, ConnectorFactory,
    Delivered, Delivery, DeliveryError,
};

use crate::config::Config;
use crate::session::Shared;

/// The factory for `[matrix.NAME]` tables.
pub fn factory() -> Arc<dyn ConnectorFactory> {
    Arc::new(MatrixFactory)
}

struct MatrixFactory;

impl ConnectorFactory for MatrixFactory {
    fn protocol(&self) -> &'static str {
        "matrix"
    }

    fn build(
        &self,
        account: &AccountInfo,
        table: toml::Table,
    ) -> Result<Arc<dyn Connector>, ConfigError> {
        let config = Config::from_table(account, table)?;
        Ok(Arc::new(MatrixConnector {
            shared: Arc::new(Shared::new(config, account.data_dir.clone())),
        }))
    }

    fn check_room(&self, room: &str) -> Result<(), String> {
        config::check_room(room)
    }
}

/// One bot account.
struct MatrixConnector {
    shared: Arc<Shared>,
}

#[async_trait]
impl Connector for MatrixConnector {
    async fn run(&self, ctx: ConnectorContext) -> Result<(), ConnectorError> {
        session::run(self.shared.clone(), ctx).await
    }

    async fn deliver(&self, delivery: Delivery) -> Result<Delivered, DeliveryError> {
        deliver::deliver(&self.shared, delivery).await
    }

    /// The `/media/...` links, served only when `media_public_url` says where they are
    /// reachable (without it there is no use for them, and no listener is required).
    fn http_routes(&self) -> Option<axum::Router> {
        self.shared
            .config
            .media_public_url
            .is_some()
            .then(|| media::routes(self.shared.clone()))
    }
}
