//! patchbay's IRC connector.
//!
//! One account is one connection to one IRC network. The parts, each with one job:
//! - [`config`]: the `[irc.NAME]` table, checked at build time.
//! - [`transport`]: TCP, TLS (rustls, extra CA, client certificate) and a line reader.
//! - [`register`]: CAP negotiation, SASL PLAIN/EXTERNAL, nick-in-use (pure state machine).
//! - [`link`]: the live connection as `deliver` sees it, and the writer task.
//! - [`deliver`]: a delivery (or a run of them, pipelined) sent and matched to its echo.
//! - [`session`]: the connection loop: join, rejoin, ping timeout, reconnect with backoff; what
//!   each line means for the bridge (`session/events.rs`).
//! - [`pacing`]: flood control (token bucket that queues, never drops).
//! - [`parse`]: line → event (pure, property-tested on arbitrary bytes).
//! - [`numeric`]: the numeric replies acted on, by name (pure).
//! - [`render`]: delivery → lines, split at the protocol's byte limit (pure).
//! - [`mirc`]: mIRC formatting codes ↔ rich text (pure).
//! - [`time`]: IRCv3 server-time parsing and formatting.
//! - [`history`]: the marks that keep catch-up free of duplicates.
//! - [`catchup`]: paging `CHATHISTORY` to the present in order; what a replay must not relay (pure).
//!
//! The `irc` crate provides the protocol types (message parsing and serialisation); the
//! connection itself is driven here, because its client stops at the first malformed line.

/// The charset decoders `charset` names, re-exported for callers of [`parse::parse_line`].
pub use encoding_rs;

pub mod catchup;
pub mod config;
pub mod deliver;
pub mod history;
pub mod link;
pub mod mirc;
pub mod numeric;
pub mod pacing;
pub mod parse;
#[cfg(test)]
mod parse_props;
pub mod register;
pub mod render;
pub mod session;
pub mod time;
pub mod transport;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use patchbay_sdk::{
    AccountInfo, ConfigError, Connector, ConnectorContext, ConnectorError, ConnectorFactory,
    Delivered, Delivery, DeliveryError,
};

use crate::config::{IrcConfig, is_channel};
use crate::link::Shared;

/// Builds IRC connectors from `[irc.NAME]` tables.
#[derive(Clone, Copy, Debug, Default)]
pub struct IrcFactory;

impl ConnectorFactory for IrcFactory {
    fn protocol(&self) -> &'static str {
        "irc"
    }

    fn build(
        &self,
        account: &AccountInfo,
        table: toml::Table,
    ) -> Result<Arc<dyn Connector>, ConfigError> {
        Ok(Arc::new(IrcConnector::new(account, table)?))
    }

    fn renamed_keys(&self) -> &'static [patchbay_sdk::Renamed] {
        config::RENAMED
    }

    fn check_room(&self, room: &str) -> Result<(), String> {
        if is_channel(room) {
            Ok(())
        } else {
            Err(format!(
                "`{room}` is not an IRC channel (channels start with # or &)"
            ))
        }
    }
}

/// One IRC account.
pub struct IrcConnector {
    shared: Arc<Shared>,
}

impl IrcConnector {
    /// Check the config (reading secrets and certificates) without connecting.
    pub fn new(account: &AccountInfo, table: toml::Table) -> Result<Self, ConfigError> {
        let cfg = IrcConfig::from_table(account, table)?;
        let tls = if cfg.tls {
            Some(
                transport::tls_config(&cfg)
                    .map_err(|e| ConfigError::at(&["tls"], e.to_string()))?,
            )
        } else {
            None
        };
        Ok(IrcConnector {
            shared: Arc::new(Shared {
                cfg,
                tls,
                link: Mutex::new(None),
                rooms: Mutex::new(std::collections::HashMap::new()),
            }),
        })
    }
}

#[async_trait]
impl Connector for IrcConnector {
    async fn run(&self, ctx: ConnectorContext) -> Result<(), ConnectorError> {
        session::run(self.shared.clone(), ctx).await
    }

    async fn deliver(&self, delivery: Delivery) -> Result<Delivered, DeliveryError> {
        deliver::one(&self.shared, &delivery).await
    }

    fn run_limit(&self) -> usize {
        deliver::run_limit(&self.shared.cfg)
    }

    async fn deliver_run(&self, run: Vec<Delivery>) -> Vec<Result<Delivered, DeliveryError>> {
        deliver::run(&self.shared, &run).await
    }
}
