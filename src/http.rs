//! The one HTTP listener: connectors' routes (webhooks, the API, media), `/healthz` and
//! `/metrics`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use patchbay_sdk::ConnectorState;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::store::Store;

/// What `/healthz` and `/metrics` read.
#[derive(Clone)]
pub struct Status {
    pub states: BTreeMap<String, watch::Receiver<ConnectorState>>,
    pub metrics: Arc<Metrics>,
    pub store: Arc<dyn Store>,
}

/// The gateway's own routes, merged with the connectors'.
pub fn router(status: Status, connector_routes: Vec<Router>) -> Router {
    let own = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(status);
    connector_routes.into_iter().fold(own, Router::merge)
}

/// Bind `listen`, then return the future that serves `app` until `stop` is cancelled. Binding
/// first lets a taken port fail the start with a clear error.
pub async fn serve(
    listen: SocketAddr,
    app: Router,
    stop: CancellationToken,
) -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} ([http] listen)"))?;
    tracing::info!(%listen, "HTTP listener up");
    Ok(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(err) = served {
            tracing::error!("the HTTP listener failed: {err}");
        }
    })
}

/// 200 when every connector is up; 503 naming those that are not.
async fn healthz(State(status): State<Status>) -> Response {
    let mut down = serde_json::Map::new();
    for (account, state) in &status.states {
        match &*state.borrow() {
            ConnectorState::Up => {}
            ConnectorState::Connecting => {
                down.insert(account.clone(), "connecting".into());
            }
            ConnectorState::Down { reason } => {
                down.insert(account.clone(), format!("down: {reason}").into());
            }
        }
    }
    if down.is_empty() {
        (
            StatusCode::OK,
            axum::Json(serde_json::json!({ "status": "ok" })),
        )
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({ "status": "degraded", "not_up": down })),
        )
            .into_response()
    }
}

async fn metrics(State(status): State<Status>) -> Response {
    let depths = match status.store.outbox_depths().await {
        Ok(depths) => depths,
        Err(err) => {
            tracing::warn!("cannot read outbox depths for /metrics: {err}");
            BTreeMap::new()
        }
    };
    let up: BTreeMap<String, bool> = status
        .states
        .iter()
        .map(|(account, state)| (account.clone(), *state.borrow() == ConnectorState::Up))
        .collect();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        status.metrics.render(&depths, &up),
    )
        .into_response()
}
