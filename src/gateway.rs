//! The running gateway: store, router, outbox, connectors, and an orderly stop.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use patchbay_sdk::{ConnectorContext, ConnectorState, EventSink, StateHandle, Timestamp};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::delivery::{Destination, Outbox, RetryPolicy};
use crate::intake::Intake;
use crate::metrics::Metrics;
use crate::router::Router;
use crate::store::{SqliteStore, Store};

/// How often old mappings and delivered events are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Run the gateway until `stop` is cancelled, then stop in order: no new events, in-flight
/// deliveries finished (up to the configured timeout), the store closed cleanly.
pub async fn run(config: Config, stop: CancellationToken) -> anyhow::Result<()> {
    let db_path = config.general.data_dir.join("patchbay.db");
    let sqlite = Arc::new(
        SqliteStore::open(&db_path)
            .with_context(|| format!("opening the store {}", db_path.display()))?,
    );
    let store: Arc<dyn Store> = sqlite.clone();
    let router = Arc::new(Router::new(
        config.general.gateway_id.clone(),
        config.routes,
    ));
    let metrics = Arc::new(Metrics::default());

    let connectors_stop = CancellationToken::new();
    let deliveries_stop = CancellationToken::new();
    let mut destinations = HashMap::new();
    let mut states: BTreeMap<String, watch::Receiver<ConnectorState>> = BTreeMap::new();
    let mut handles = Vec::new();
    for account in &config.accounts {
        let (handle, state) = StateHandle::new();
        destinations.insert(
            account.name.clone(),
            Destination {
                connector: Arc::clone(&account.connector),
                state: state.clone(),
            },
        );
        states.insert(account.name.clone(), state);
        handles.push(handle);
    }
    let outbox = Arc::new(Outbox::new(
        Arc::clone(&store),
        Arc::clone(&router),
        destinations,
        RetryPolicy::default(),
        Arc::clone(&metrics),
        deliveries_stop.clone(),
    ));
    let intake_closed = CancellationToken::new();
    let intake = Arc::new(Intake {
        store: Arc::clone(&store),
        router: Arc::clone(&router),
        outbox: Arc::clone(&outbox),
        metrics: Arc::clone(&metrics),
        closed: intake_closed.clone(),
    });
    outbox.resume().await.context("reading the outbox")?;

    let tasks = TaskTracker::new();
    for (account, state) in config.accounts.iter().zip(handles) {
        std::fs::create_dir_all(&account.data_dir)
            .with_context(|| format!("creating {}", account.data_dir.display()))?;
        let ctx = ConnectorContext {
            account: account.name.clone(),
            sink: EventSink::new(account.name.as_str(), intake.clone()),
            state: state.clone(),
            shutdown: connectors_stop.clone(),
            data_dir: account.data_dir.clone(),
        };
        let connector = Arc::clone(&account.connector);
        let name = account.name.clone();
        tasks.spawn(async move {
            if let Err(err) = connector.run(ctx).await {
                tracing::error!(account = %name, "the connector stopped: {err}");
                state.down(err.to_string());
            }
        });
    }
    tasks.spawn(prune_periodically(
        Arc::clone(&store),
        config.general.retention,
        stop.clone(),
    ));
    tracing::info!(
        accounts = config.accounts.len(),
        routes = router.routes().len(),
        store = %db_path.display(),
        "patchbay is running"
    );
    let _ = (&metrics, &states);

    stop.cancelled().await;
    tracing::info!("stopping: no new events; finishing deliveries in flight");
    intake_closed.cancel();
    connectors_stop.cancel();
    deliveries_stop.cancel();
    if !outbox.drain(config.general.shutdown_timeout).await {
        tracing::warn!(
            "some deliveries were still in flight at the shutdown timeout; they stay in the outbox"
        );
    }
    tasks.close();
    if tokio::time::timeout(Duration::from_secs(5), tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("some connectors did not stop within 5s");
    }
    sqlite.close().await;
    tracing::info!("stopped");
    Ok(())
}

async fn prune_periodically(store: Arc<dyn Store>, retention: Duration, stop: CancellationToken) {
    loop {
        let before = Timestamp(Timestamp::now().0 - retention.as_millis() as i64);
        match store.prune(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!("pruned {n} events older than the retention"),
            Err(err) => tracing::warn!("pruning the store failed: {err}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(PRUNE_EVERY) => {}
            _ = stop.cancelled() => return,
        }
    }
}
