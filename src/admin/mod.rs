//! The admin API: what an operator scripts against a running gateway — accounts and their
//! states, routes, the outbox per room, the dead letters (list, retry, discard) and reload.
//!
//! JSON under `/admin/`, described in `docs/api.openapi.json`. It is off unless `[admin]`
//! sets a token, and every request must carry it ([`auth`]); it is served on the `[http]`
//! listener, or on `[admin] listen` when set (an address kept on loopback, say). It changes
//! nothing the gateway would not do itself: a retried dead letter goes to the end of its
//! room's outbox and is delivered by that room's lane, in order, like any other delivery.
//!
//! The status page (`GET /admin/`) is served beside it: the page itself holds no data and is
//! served without the token; it asks the operator for the token once, keeps it in the tab's
//! `sessionStorage` and sends it as `Authorization: Bearer` on each of its calls, the live
//! feed included (read with `fetch`, not `EventSource`, which cannot send the header, and not
//! with the token in a query string, where access logs and proxies would keep it).
//!
//! - [`auth`]: the token check (constant time).
//! - [`api`]: the handlers and their JSON shapes.
//! - [`live`]: edge traffic, recent activity and the live feed (server-sent events).
//! - [`board`]: each account's state with since when and how many times it changed.
//! - [`page`]: the status page's files, embedded in the binary.
//! - [`client`]: the few HTTP calls the `patchbay` command makes to a running gateway.
//! - [`cli`]: `patchbay status`, `dead-letters` and `reload`, through the API or the store.

pub mod api;
pub mod auth;
pub mod board;
pub mod cli;
pub mod client;
pub mod live;
pub mod page;

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post};
use tokio_util::sync::CancellationToken;

use crate::account_states::AccountStates;
use crate::metrics::Metrics;
use crate::reloader::Reloader;
use crate::router::Router;
use crate::store::{Store, StoreError};

/// What the admin API reads and acts on. Cheap to clone.
#[derive(Clone)]
pub struct AdminApi {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) router: Arc<Router>,
    pub(crate) board: Arc<board::Board>,
    /// `None`: the gateway was not started from a config file; reload answers 503.
    pub(crate) reloader: Option<Reloader>,
    pub(crate) started: Instant,
    /// `embedded` or `nats`.
    pub(crate) engine: &'static str,
    /// Edge traffic, last event in and out, the live feed.
    pub(crate) metrics: Arc<Metrics>,
    /// Ends the live feed's streams when the gateway stops, so that they do not hold the
    /// listener's drain.
    pub(crate) stop: CancellationToken,
}

impl AdminApi {
    /// Watch `states` (from now on, on the current runtime) and serve from `store`.
    pub fn new(
        store: Arc<dyn Store>,
        router: Arc<Router>,
        states: &AccountStates,
        reloader: Option<Reloader>,
        engine: &'static str,
        metrics: Arc<Metrics>,
    ) -> AdminApi {
        AdminApi {
            store,
            router,
            board: board::Board::watch(states, Arc::clone(&metrics)),
            reloader,
            started: Instant::now(),
            engine,
            metrics,
            stop: CancellationToken::new(),
        }
    }
}

/// Every admin endpoint: method, path (axum's syntax, which is OpenAPI's) and handler. The
/// router is built from this table and the OpenAPI test reads it, so the two cannot drift.
fn table() -> Vec<(&'static str, &'static str, MethodRouter<AdminApi>)> {
    vec![
        ("GET", "/admin/status", get(api::status)),
        ("GET", "/admin/accounts", get(api::accounts)),
        ("GET", "/admin/routes", get(api::routes)),
        ("GET", "/admin/outbox", get(api::outbox)),
        ("GET", "/admin/dead-letters", get(api::dead_letters)),
        (
            "POST",
            "/admin/dead-letters/{id}/retry",
            post(api::retry_dead_letter),
        ),
        (
            "DELETE",
            "/admin/dead-letters/{id}",
            delete(api::discard_dead_letter),
        ),
        ("POST", "/admin/reload", post(api::reload)),
        ("GET", "/admin/traffic", get(live::traffic)),
        ("GET", "/admin/activity", get(live::activity)),
        ("GET", "/admin/events", get(live::events)),
    ]
}

/// The admin endpoints as (method, path).
pub fn endpoints() -> Vec<(&'static str, &'static str)> {
    table().into_iter().map(|(m, p, _)| (m, p)).collect()
}

/// The admin API's routes, each behind the token and never cached; and the status page's
/// files, which hold no data, without it.
pub fn router(api: AdminApi, token: &str) -> axum::Router {
    let routes = table()
        .into_iter()
        .fold(axum::Router::new(), |router, (_, path, handler)| {
            router.route(path, handler)
        });
    routes
        .route_layer(axum::middleware::from_fn_with_state(
            auth::Token::new(token),
            auth::require,
        ))
        .layer(axum::middleware::map_response(no_store))
        .with_state(api)
        .merge(page::router())
}

/// What the API answers is live and behind a token: no cache may keep it.
async fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .entry(header::CACHE_CONTROL)
        .or_insert(header::HeaderValue::from_static("no-store"));
    response
}

/// Why an admin request was not served; each answers for itself as `{"error": "..."}`.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("this needs the admin token: send `Authorization: Bearer TOKEN` ([admin] token)")]
    Unauthorized,
    #[error("wrong admin token")]
    Forbidden,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("the store did not answer: {0}")]
    Store(#[from] StoreError),
    /// The new config has errors; the running one stays. The text is `patchbay check`'s.
    #[error("{0}")]
    ReloadRefused(String),
    #[error("this gateway cannot reload: it was not started from a config file")]
    NoReload,
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let status = match &self {
            AdminError::Unauthorized => StatusCode::UNAUTHORIZED,
            AdminError::Forbidden => StatusCode::FORBIDDEN,
            AdminError::NotFound(_) => StatusCode::NOT_FOUND,
            AdminError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AdminError::Store(_) | AdminError::NoReload => StatusCode::SERVICE_UNAVAILABLE,
            AdminError::ReloadRefused(_) => StatusCode::UNPROCESSABLE_ENTITY,
        };
        let body = match &self {
            AdminError::ReloadRefused(errors) => {
                serde_json::json!({ "error": "the config was refused; the running one stays", "errors": errors })
            }
            other => serde_json::json!({ "error": other.to_string() }),
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// Serve the admin API as `[admin]` says: on its own listener (spawned on `tasks` until
/// `stop`), or returned to be merged into the `[http]` listener's routes. Says at startup
/// where it is, or that it is off.
pub async fn start(
    admin: Option<&crate::config::Admin>,
    api: impl FnOnce() -> AdminApi,
    shared_listener: bool,
    tasks: &tokio_util::task::TaskTracker,
    stop: &tokio_util::sync::CancellationToken,
) -> anyhow::Result<Option<axum::Router>> {
    let Some(admin) = admin else {
        tracing::info!("admin API off: [admin] sets no token");
        return Ok(None);
    };
    let mut api = api();
    api.stop = stop.clone();
    let routes = router(api, &admin.token);
    match admin.listen {
        Some(listen) => {
            let serve = crate::http::serve(listen, routes, stop.clone())
                .await
                .map_err(|err| anyhow::anyhow!("{err:#} (the admin listener, [admin] listen)"))?;
            tasks.spawn(serve);
            tracing::info!(%listen, "admin API on its own listener; the status page at http://{listen}/admin/");
            Ok(None)
        }
        None if shared_listener => {
            tracing::info!("admin API on the [http] listener, under /admin/ (the status page too)");
            Ok(Some(routes))
        }
        None => {
            tracing::warn!(
                "admin API off: it has no listener; set [http] listen, or [admin] listen for one of its own"
            );
            Ok(None)
        }
    }
}
