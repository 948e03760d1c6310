//! One account's life in the gateway: its connector and its delivery lanes, started while this
//! instance owns the account and stopped when it loses it.

use std::path::PathBuf;
use std::sync::Arc;

use patchbay_sdk::{Connector, ConnectorContext, EventSink, StateHandle};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::delivery::Outbox;

/// What an account runs with.
pub(super) struct AccountRun {
    pub name: String,
    pub connector: Arc<dyn Connector>,
    pub data_dir: PathBuf,
    pub state: StateHandle,
    pub sink: EventSink,
}

impl AccountRun {
    /// Run the account until `stop`: its connector and lanes while `owned` holds it. An
    /// account that holds no connection (HTTP only) runs its connector all along and only its
    /// lanes follow ownership.
    pub(super) async fn supervise(
        self,
        outbox: Arc<Outbox>,
        mut owned: watch::Receiver<std::collections::BTreeSet<String>>,
        stop: CancellationToken,
    ) {
        let holds = self.connector.holds_connection();
        let connector_tasks = TaskTracker::new();
        if !holds {
            self.spawn_connector(&connector_tasks, stop.clone());
        }
        // The token of what runs while the account is owned.
        let mut running: Option<CancellationToken> = None;
        loop {
            let own = owned.borrow_and_update().contains(&self.name);
            match (own, running.take()) {
                (true, None) => {
                    let token = stop.child_token();
                    tracing::info!(account = %self.name, "running the account on this instance");
                    if let Err(err) = outbox.run_account(&self.name, token.clone()).await {
                        tracing::error!(account = %self.name, "cannot start its deliveries: {err}");
                    }
                    if holds {
                        self.spawn_connector(&connector_tasks, token.clone());
                    }
                    running = Some(token);
                }
                (false, Some(token)) => {
                    tracing::info!(account = %self.name, "the account is no longer held here; stopping it");
                    token.cancel();
                    if holds {
                        connector_tasks.close();
                        connector_tasks.wait().await;
                        connector_tasks.reopen();
                        self.state.down("run by another instance");
                    }
                }
                (_, kept) => running = kept,
            }
            // An ownership that can no longer change keeps what it last said, until stop.
            let changed = async {
                if owned.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                _ = changed => {}
                _ = stop.cancelled() => break,
            }
        }
        if let Some(token) = running {
            token.cancel();
        }
        connector_tasks.close();
        connector_tasks.wait().await;
    }

    fn spawn_connector(&self, tasks: &TaskTracker, shutdown: CancellationToken) {
        let ctx = ConnectorContext {
            account: self.name.clone(),
            sink: self.sink.clone(),
            state: self.state.clone(),
            shutdown,
            data_dir: self.data_dir.clone(),
        };
        let connector = Arc::clone(&self.connector);
        let name = self.name.clone();
        let state = self.state.clone();
        tasks.spawn(async move {
            if let Err(err) = connector.run(ctx).await {
                tracing::error!(account = %name, "the connector stopped: {err}");
                state.down(err.to_string());
            }
        });
    }
}
