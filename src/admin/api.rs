//! The admin API's handlers and JSON shapes (documented in docs/api.openapi.json). Times are
//! milliseconds since the Unix epoch (`*_ms`), as everywhere else in patchbay's JSON.

use axum::Json;
use axum::extract::{Path, Query, State};
use patchbay_sdk::Timestamp;
use serde::{Deserialize, Serialize};

use super::board::AccountState;
use super::{AdminApi, AdminError};
use crate::router::Direction;
use crate::store::DeadLetter;

/// The most dead letters one list returns.
pub const MAX_LIST: usize = 1000;

/// `GET /admin/status`: the gateway at a glance.
#[derive(Debug, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    /// `embedded` or `nats`.
    pub engine: String,
    pub uptime_seconds: u64,
    pub accounts: usize,
    pub accounts_up: usize,
    pub routes: usize,
    /// Deliveries waiting in the outbox, every room together.
    pub pending: u64,
    pub dead_letters: u64,
    /// Events the store holds (the message-id map's history, until pruned).
    #[serde(default)]
    pub events: u64,
}

pub async fn status(State(api): State<AdminApi>) -> Result<Json<Status>, AdminError> {
    let stats = api.store.stats().await?;
    let accounts = api.board.snapshot();
    Ok(Json(Status {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        engine: api.engine.to_owned(),
        uptime_seconds: api.started.elapsed().as_secs(),
        accounts: accounts.len(),
        accounts_up: accounts.iter().filter(|a| a.state == "up").count(),
        routes: api.router.routes().len(),
        pending: stats.pending,
        dead_letters: stats.dead_letters,
        events: stats.events,
    }))
}

/// One account in `GET /admin/accounts`.
#[derive(Debug, Serialize)]
pub struct Account {
    #[serde(flatten)]
    pub state: AccountState,
    /// Deliveries waiting for this account, every room together.
    pub waiting: u64,
    /// When an event from it was last recorded, since the gateway started.
    pub last_in_ms: Option<i64>,
    /// When it last took a delivery, since the gateway started.
    pub last_out_ms: Option<i64>,
}

pub async fn accounts(State(api): State<AdminApi>) -> Result<Json<Vec<Account>>, AdminError> {
    let depths = api.store.outbox_depths().await?;
    Ok(Json(
        api.board
            .snapshot()
            .into_iter()
            .map(|state| {
                let (last_in_ms, last_out_ms) = api.metrics.last_in_out(&state.name);
                Account {
                    waiting: depths.get(&state.name).copied().unwrap_or(0),
                    last_in_ms,
                    last_out_ms,
                    state,
                }
            })
            .collect(),
    ))
}

/// One route in `GET /admin/routes`.
#[derive(Debug, Serialize)]
pub struct Route {
    pub name: String,
    pub rooms: Vec<RouteRoom>,
}

#[derive(Debug, Serialize)]
pub struct RouteRoom {
    /// `ACCOUNT/ROOM`.
    pub room: String,
    pub account: String,
    /// `inout`, `in` or `out`.
    pub direction: &'static str,
}

pub async fn routes(State(api): State<AdminApi>) -> Json<Vec<Route>> {
    Json(
        api.router
            .routes()
            .iter()
            .map(|route| Route {
                name: route.name.clone(),
                rooms: route
                    .members
                    .iter()
                    .map(|(room, direction)| RouteRoom {
                        room: room.to_string(),
                        account: room.account.clone(),
                        direction: match direction {
                            Direction::InOut => "inout",
                            Direction::In => "in",
                            Direction::Out => "out",
                        },
                    })
                    .collect(),
            })
            .collect(),
    )
}

/// One destination room in `GET /admin/outbox`.
#[derive(Debug, Serialize)]
pub struct Backlog {
    pub room: String,
    pub account: String,
    pub depth: u64,
    /// When the oldest waiting delivery was accepted.
    pub oldest_waiting_ms: Option<i64>,
    /// How long it has waited, in whole seconds.
    pub oldest_waiting_seconds: Option<u64>,
}

pub async fn outbox(State(api): State<AdminApi>) -> Result<Json<Vec<Backlog>>, AdminError> {
    let now = Timestamp::now().0;
    Ok(Json(
        api.store
            .room_backlogs()
            .await?
            .into_iter()
            .map(|b| Backlog {
                room: b.room.to_string(),
                account: b.room.account.clone(),
                depth: b.depth,
                oldest_waiting_ms: b.oldest.map(|t| t.0),
                oldest_waiting_seconds: b.oldest.map(|t| ((now - t.0).max(0) / 1000) as u64),
            })
            .collect(),
    ))
}

/// One dead letter in `GET /admin/dead-letters`.
#[derive(Debug, Serialize)]
pub struct Dead {
    pub id: u64,
    /// The destination room, `ACCOUNT/ROOM`.
    pub room: String,
    pub route: String,
    /// Why the destination refused it.
    pub reason: String,
    pub failed_at_ms: i64,
    pub event_id: String,
    /// Where it came from, `ACCOUNT/ROOM`.
    pub origin: String,
    pub author: String,
    /// The text as plain text (empty for kinds without one).
    pub text: String,
    /// The whole normalized event.
    pub event: patchbay_sdk::Event,
}

impl From<DeadLetter> for Dead {
    fn from(dead: DeadLetter) -> Self {
        Dead {
            id: dead.id,
            room: dead.room.to_string(),
            route: dead.route,
            reason: dead.reason,
            failed_at_ms: dead.failed_at.0,
            event_id: dead.event.id.to_string(),
            origin: format!("{}/{}", dead.event.origin.account, dead.event.origin.room),
            author: dead.event.author.name.clone(),
            text: dead
                .event
                .kind
                .body()
                .map(|b| b.to_plain())
                .unwrap_or_default(),
            event: dead.event,
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    /// At most this many, oldest first. Default and maximum: [`MAX_LIST`].
    pub limit: Option<usize>,
}

pub async fn dead_letters(
    State(api): State<AdminApi>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<Dead>>, AdminError> {
    let limit = query.limit.unwrap_or(MAX_LIST).min(MAX_LIST);
    let list = api.store.dead_letters(limit).await?;
    Ok(Json(list.into_iter().map(Dead::from).collect()))
}

/// The answer to a retry or a discard.
#[derive(Debug, Serialize)]
pub struct Done {
    pub id: u64,
    /// `retried` (back in its room's outbox) or `discarded`.
    pub outcome: &'static str,
}

fn parse_id(id: &str) -> Result<u64, AdminError> {
    id.parse()
        .map_err(|_| AdminError::BadRequest(format!("`{id}` is not a dead letter id (a number)")))
}

pub async fn retry_dead_letter(
    State(api): State<AdminApi>,
    Path(id): Path<String>,
) -> Result<Json<Done>, AdminError> {
    let id = parse_id(&id)?;
    if !api.store.retry_dead_letter(id).await? {
        return Err(AdminError::NotFound(format!("no dead letter {id}")));
    }
    tracing::info!(
        dead_letter = id,
        "a dead letter was put back into its room's outbox"
    );
    Ok(Json(Done {
        id,
        outcome: "retried",
    }))
}

pub async fn discard_dead_letter(
    State(api): State<AdminApi>,
    Path(id): Path<String>,
) -> Result<Json<Done>, AdminError> {
    let id = parse_id(&id)?;
    if !api.store.discard_dead_letter(id).await? {
        return Err(AdminError::NotFound(format!("no dead letter {id}")));
    }
    tracing::info!(dead_letter = id, "a dead letter was discarded");
    Ok(Json(Done {
        id,
        outcome: "discarded",
    }))
}

pub async fn reload(
    State(api): State<AdminApi>,
) -> Result<Json<crate::reloader::ReloadReport>, AdminError> {
    let reloader = api.reloader.as_ref().ok_or(AdminError::NoReload)?;
    match reloader.reload().await {
        Ok(report) => Ok(Json(report)),
        Err(refused) => Err(AdminError::ReloadRefused(refused.errors)),
    }
}
