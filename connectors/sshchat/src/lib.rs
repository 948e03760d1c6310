//! patchbay's SSH chat connector: Devzat (over SSH, or its gRPC plugin API) and ssh-chat.
//!
//! - With a plugin token (Devzat only), one gRPC session serves every room: a listener stream
//!   brings each room broadcast in, and `SendMessage` posts relayed messages under the relayed
//!   author's own name ([`plugin`]).
//! - Without one, the bot logs in over SSH like a person: one session per mirrored room, the
//!   screen parsed back into lines ([`screen`], [`parse`]), its sends paced under the servers'
//!   anti-spam limits ([`pacing`]) and merged rather than dropped when a burst comes ([`ssh`]).
//!
//! Building validates the `[sshchat.NAME]` table ([`config`]) and never connects.

pub mod config;
pub mod hops;
pub mod keys;
pub mod pacing;
pub mod parse;
mod plugin;
pub mod render;
pub mod screen;
mod ssh;

/// Devzat's plugin API, compiled from `proto/plugin.proto`.
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("plugin");
}

use std::sync::Arc;

use async_trait::async_trait;
use patchbay_sdk::{
    AccountInfo, ConfigError, Connector, ConnectorContext, ConnectorError, ConnectorFactory,
    Delivered, Delivery, DeliveryError,
};

pub use config::{Config, Dialect};

/// Registers the `sshchat` protocol.
#[derive(Debug, Default)]
pub struct SshChatFactory;

impl ConnectorFactory for SshChatFactory {
    fn protocol(&self) -> &'static str {
        "sshchat"
    }

    fn build(
        &self,
        account: &AccountInfo,
        table: toml::Table,
    ) -> Result<Arc<dyn Connector>, ConfigError> {
        let config = Config::from_table(account, table)?;
        Ok(Arc::new(SshChat::new(config)))
    }

    fn check_room(&self, room: &str) -> Result<(), String> {
        config::check_room(room)
    }
}

/// One account on one SSH chat server.
pub struct SshChat {
    mode: Mode,
}

enum Mode {
    Plugin(plugin::PluginMode),
    Ssh(ssh::SshMode),
}

impl SshChat {
    pub fn new(config: Config) -> Self {
        let config = Arc::new(config);
        let mode = if config.plugin.is_some() {
            Mode::Plugin(plugin::PluginMode::new(config))
        } else {
            Mode::Ssh(ssh::SshMode::new(config))
        };
        SshChat { mode }
    }
}

#[async_trait]
impl Connector for SshChat {
    async fn run(&self, ctx: ConnectorContext) -> Result<(), ConnectorError> {
        match &self.mode {
            Mode::Plugin(plugin) => plugin.run(ctx).await,
            Mode::Ssh(ssh) => ssh.run(ctx).await,
        }
    }

    async fn deliver(&self, delivery: Delivery) -> Result<Delivered, DeliveryError> {
        match &self.mode {
            Mode::Plugin(plugin) => plugin.deliver(delivery).await,
            Mode::Ssh(ssh) => ssh.deliver(delivery).await,
        }
    }
}
