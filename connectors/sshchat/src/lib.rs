//! patchbay's SSH chat connector: Devzat (over SSH, or its gRPC plugin API) and ssh-chat.
//!
//! - With a plugin token (Devzat only), one gRPC session serves every room: a listener stream
//!   brings each room broadcast in, and `SendMessage` posts relayed messages under the relayed
//!   author's own name (`plugin`).
//! - Without one, the bot logs in over SSH like a person: one session per mirrored room, the
//!   screen parsed back into lines, its sends paced under the servers' anti-spam limits and
//!   merged rather than dropped when a burst comes, each delivery answered only once the server
//!   showed its line (`ssh`, `session`).
//!
//! Every account announces the names it speaks as under its server's network name
//! ([`Config::network`]), so the gateway never relays the bot's own lines (its `cd #room`,
//! its relays) through another account on the same server. Devzat's `devbot` comes in as
//! notices from a bot.
//!
//! Layout (pure modules marked *pure*):
//! - [`config`]: the `[sshchat.NAME]` table, validated once; building never connects.
//! - [`dialect`] (*pure*): which server software, and its name limits.
//! - [`converse`] (*pure*): one session's conversation as a state machine, bytes in, steps out;
//!   its lines written and not yet shown.
//! - `session`: one room's SSH session, the thin I/O loop around [`converse`] and [`send`].
//! - [`send`] (*pure*): a room's send queue, what to write next, who is answered when.
//! - `state`: what SSH mode's parts share: each room's queue and the account's own names.
//! - `ssh`: SSH mode, its rooms, `deliver_run`.
//! - `plugin`: Devzat's plugin API mode.
//! - [`screen`] (*pure*): terminal output into lines; [`parse`] (*pure*): lines into meanings.
//! - [`render`] (*pure*): deliveries into typed lines; [`hops`] (*pure*): the invisible marks
//!   (hop trace, command-word guard).
//! - [`pacing`]: send window, join gate; [`keys`]: client and host keys; `login`: connect and
//!   authenticate; `emitter`: hands events over without pausing reads. Reconnecting with
//!   backoff is the sdk's [`Supervisor`](patchbay_sdk::Supervisor).
//!
//! Who uses whom (no two modules import each other; lower lines never use upper ones):
//! - `ssh` → `session`, `state`, `render`, `pacing`, `keys`, `emitter`, `send`, `config`
//! - `session` → `converse`, `state`, `send`, `login`, `pacing`, `render`, `hops`, `parse`,
//!   `keys`, `emitter`, `config`
//! - `plugin` → `render`, `hops`, `parse`, `screen`, `emitter`, `config`, `proto`
//! - `converse` → `parse`, `screen`, `send`; `state` → `send`; `login` → `config`, `keys`;
//!   `render` → `hops`
//! - `config`, `parse`, `converse`, `pacing`, `session` and `ssh` → `dialect`
//! - `dialect`, `hops`, `screen`, `send`, `keys` and `emitter` use no other module.

pub mod config;
pub mod converse;
pub mod dialect;
mod emitter;
pub mod hops;
pub mod keys;
mod login;
pub mod pacing;
pub mod parse;
#[cfg(test)]
mod parse_props;
mod plugin;
pub mod render;
pub mod screen;
pub mod send;
mod session;
mod ssh;
mod state;

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

pub use config::Config;
pub use dialect::Dialect;

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

    fn renamed_keys(&self) -> &'static [patchbay_sdk::Renamed] {
        config::RENAMED
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
    Plugin(Box<plugin::PluginMode>),
    Ssh(ssh::SshMode),
}

impl SshChat {
    pub fn new(config: Config) -> Self {
        let config = Arc::new(config);
        let mode = if config.plugin.is_some() {
            Mode::Plugin(Box::new(plugin::PluginMode::new(config)))
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
            Mode::Ssh(ssh) => ssh
                .deliver_run(vec![delivery])
                .await
                .pop()
                .unwrap_or_else(|| Err(DeliveryError::retryable("the delivery was not taken"))),
        }
    }

    fn run_limit(&self) -> usize {
        match &self.mode {
            Mode::Plugin(_) => 1,
            Mode::Ssh(_) => ssh::RUN_LIMIT,
        }
    }

    async fn deliver_run(&self, run: Vec<Delivery>) -> Vec<Result<Delivered, DeliveryError>> {
        match &self.mode {
            Mode::Plugin(plugin) => {
                let mut results = Vec::with_capacity(run.len());
                for delivery in run {
                    let result = plugin.deliver(delivery).await;
                    let failed = result.is_err();
                    results.push(result);
                    if failed {
                        break;
                    }
                }
                results
            }
            Mode::Ssh(ssh) => ssh.deliver_run(run).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gateway builds connectors before its runtime starts: building must not need one.
    #[test]
    fn building_needs_no_runtime_and_never_connects() {
        let account = AccountInfo {
            account: "sshchat.t".into(),
            config_dir: "/nonexistent".into(),
            data_dir: "/nonexistent/data".into(),
        };
        for table in [
            "server = \"127.0.0.1:1\"\ndialect = \"devzat\"\nnick = \"b\"\nplugin = { address = \"127.0.0.1:2\", token = \"t\" }",
            "server = \"127.0.0.1:1\"\ndialect = \"devzat\"\nnick = \"b\"\nrooms = [\"#main\", \"#dev\"]",
            "server = \"127.0.0.1:1\"\ndialect = \"ssh-chat\"\nnick = \"b\"\nanonymous = true",
        ] {
            let table: toml::Table = table.parse().expect("toml");
            SshChatFactory.build(&account, table).expect("builds");
        }
        assert_eq!(SshChatFactory.protocol(), "sshchat");
        assert!(SshChatFactory.check_room("#dev").is_ok());
        assert!(SshChatFactory.check_room("dev").is_err());
    }
}
