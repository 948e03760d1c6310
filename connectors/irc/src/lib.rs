//! patchbay's IRC connector.
//!
//! One account is one connection to one IRC network. The parts, each with one job:
//! - [`config`]: the `[irc.NAME]` table, checked at build time.
//! - [`transport`]: TCP, TLS (rustls, extra CA, client certificate) and a line reader.
//! - [`register`]: CAP negotiation, SASL PLAIN/EXTERNAL, nick-in-use (pure state machine).
//! - [`link`]: the live connection as `deliver` sees it, and the writer task.
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
use std::time::Duration;

use async_trait::async_trait;
use patchbay_sdk::{
    AccountInfo, ConfigError, Connector, ConnectorContext, ConnectorError, ConnectorFactory,
    Delivered, Delivery, DeliveryError,
};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::config::{IrcConfig, is_channel};
use crate::link::{EchoError, Link, Paced, Shared, lock};
use crate::parse::fold_case;

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

/// How long a delivery to a channel we are not in waits before the gateway retries.
const JOIN_RETRY: Duration = Duration::from_secs(2);

/// How long a delivery waits for the join of its channel before answering retryable. A join
/// takes a round trip; this only runs out when the server does not answer the JOIN at all.
pub const JOIN_WAIT: Duration = Duration::from_secs(5);

/// The gateway's view of a refused line: a channel we are not in is retried after the rejoin,
/// anything else refused is permanent.
fn classify(error: EchoError) -> DeliveryError {
    match error {
        EchoError::NotJoined { .. } => DeliveryError::Retryable {
            reason: error.to_string(),
            retry_after: Some(JOIN_RETRY),
        },
        EchoError::Refused { .. } => DeliveryError::permanent(error.to_string()),
    }
}

/// Wait until the connection is in `target` (asking to join it, at most once per
/// `5 × JOIN_RETRY`), for at most [`JOIN_WAIT`]. A delivery made just after a (re)connect
/// thus goes out as soon as the join completes instead of after the gateway's backoff.
async fn wait_joined(link: &Link, target: &str, folded: &str) -> Result<(), DeliveryError> {
    let deadline = Instant::now() + JOIN_WAIT;
    loop {
        let notified = link.joins.notified();
        tokio::pin!(notified);
        // Registered before looking, so a join between the look and the wait is not missed.
        notified.as_mut().enable();
        {
            let mut state = lock(&link.state);
            if state.joined.contains_key(folded) {
                return Ok(());
            }
            let now = Instant::now();
            let recent = state
                .join_requested
                .get(folded)
                .is_some_and(|t| now.duration_since(*t) < JOIN_RETRY * 5);
            if let Some(reason) = state.join_refused.get(folded) {
                if recent {
                    return Err(DeliveryError::Retryable {
                        reason: format!("cannot join {target}: {reason}"),
                        retry_after: Some(JOIN_RETRY),
                    });
                }
                state.join_refused.remove(folded);
            }
            if !recent {
                state.join_requested.insert(folded.to_owned(), now);
                let _ = link.urgent.send(format!("JOIN {target}"));
            }
        }
        tokio::select! {
            _ = &mut notified => {}
            _ = link.paced.closed() => {
                return Err(DeliveryError::retryable("the connection closed"));
            }
            _ = tokio::time::sleep_until(deadline) => {
                return Err(DeliveryError::Retryable {
                    reason: format!("not in {target} yet"),
                    retry_after: Some(JOIN_RETRY),
                });
            }
        }
    }
}

#[async_trait]
impl Connector for IrcConnector {
    async fn run(&self, ctx: ConnectorContext) -> Result<(), ConnectorError> {
        session::run(self.shared.clone(), ctx).await
    }

    async fn deliver(&self, delivery: Delivery) -> Result<Delivered, DeliveryError> {
        let link = lock(&self.shared.link)
            .clone()
            .ok_or_else(|| DeliveryError::retryable("not connected to the IRC server"))?;
        let target = delivery.room.clone();
        let folded = fold_case(&target);
        if is_channel(&target) {
            lock(&self.shared.rooms)
                .entry(folded.clone())
                .or_insert_with(|| target.clone());
            wait_joined(&link, &target, &folded).await?;
        }
        let (rendered, echo) = {
            let mut state = lock(&link.state);
            let Some(rendered) = render::render(&delivery, &self.shared.cfg.render, &state.me)
            else {
                return Ok(Delivered::default());
            };
            let echo = state
                .caps
                .contains("echo-message")
                .then(|| state.expect_echo(&folded, &rendered.payloads[0]));
            (rendered, echo)
        };
        let mut lines = rendered.lines();
        if let (Some((_, Some(label))), Some(first)) = (&echo, lines.first_mut()) {
            *first = format!("@label={label} {first}");
        }
        let count = lines.len();
        let (done_tx, done_rx) = oneshot::channel();
        let mut done_tx = Some(done_tx);
        for (i, line) in lines.into_iter().enumerate() {
            let done = if i + 1 == count { done_tx.take() } else { None };
            if link.paced.send(Paced { line, done }).is_err() {
                return Err(DeliveryError::retryable("the connection closed"));
            }
        }
        if done_rx.await.is_err() {
            return Err(DeliveryError::retryable(
                "the connection closed before the message was sent",
            ));
        }
        let remote_id = match echo {
            Some((rx, label)) => {
                let answer = tokio::time::timeout(self.shared.cfg.echo_timeout, rx).await;
                if let Some(label) = &label {
                    lock(&link.state).forget_label(label);
                }
                match answer {
                    Ok(Ok(Ok(id))) => id,
                    Ok(Ok(Err(error))) => return Err(classify(error)),
                    // Sent, but no echo in time (or the connection ended after sending): the
                    // line went out, so it is delivered without an id rather than sent twice.
                    Ok(Err(_)) | Err(_) => None,
                }
            }
            None => None,
        };
        Ok(Delivered { remote_id })
    }
}
