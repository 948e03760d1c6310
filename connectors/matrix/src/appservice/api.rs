//! The application-service API, served on patchbay's shared HTTP listener under the
//! account's prefix (`/_patchbay/matrix/NAME`, which the registration's `url` includes):
//!
//! - `PUT /_matrix/app/v1/transactions/{txnId}`: the homeserver pushes room events. Answered
//!   200 only once every event is durably accepted by the gateway (see the module doc of
//!   [`super`]), all of them in one commit; a repeated id is answered 200 at once.
//! - `GET /_matrix/app/v1/users/{userId}`: 200 for the bot and ghosts that exist, else 404
//!   (a ghost is made by its author's first message, not by a lookup).
//! - `GET /_matrix/app/v1/rooms/{alias}`: 404 (the bridge claims no aliases).
//! - `POST /_matrix/app/v1/ping`: 200.
//!
//! The pre-v1 paths (`/transactions/...` without the prefix) are served too. Every request
//! must carry the `hs_token`, as `Authorization: Bearer` or the legacy `access_token` query:
//! none gets 401, a wrong one 403.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use matrix_sdk::ruma::events::AnySyncTimelineEvent;
use patchbay_sdk::{EmitError, Kind, RichText};
use serde_json::{Value, json};
use tracing::{debug, info, warn};

use super::AppService;
use super::mentions;
use super::txnlog::TxnLog;
use crate::parse::{Context, parse_event};

/// Why a request is not answered 200; each answers for itself.
#[derive(Debug)]
pub enum Refusal {
    /// No `hs_token` at all.
    NoToken,
    /// A token that is not ours.
    BadToken,
    /// The connector is not running yet: the homeserver retries later.
    NotReady,
    /// The body is not a transaction.
    BadJson(String),
    /// The gateway did not accept an event, or the done-id could not be recorded: the
    /// homeserver sends the transaction again.
    NotAccepted(String),
    NotFound,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, errcode, message) = match self {
            Refusal::NoToken => (
                StatusCode::UNAUTHORIZED,
                "M_UNAUTHORIZED",
                "no hs_token".to_owned(),
            ),
            Refusal::BadToken => (
                StatusCode::FORBIDDEN,
                "M_FORBIDDEN",
                "wrong hs_token".to_owned(),
            ),
            Refusal::NotReady => (
                StatusCode::SERVICE_UNAVAILABLE,
                "M_UNKNOWN",
                "the bridge is starting".to_owned(),
            ),
            Refusal::BadJson(m) => (StatusCode::BAD_REQUEST, "M_BAD_JSON", m),
            Refusal::NotAccepted(m) => (StatusCode::INTERNAL_SERVER_ERROR, "M_UNKNOWN", m),
            Refusal::NotFound => (
                StatusCode::NOT_FOUND,
                "M_NOT_FOUND",
                "not a user or room of this bridge".to_owned(),
            ),
        };
        (status, Json(json!({"errcode": errcode, "error": message}))).into_response()
    }
}

type Shared = Arc<AppService>;
type Answer = Result<Json<Value>, Refusal>;

/// The routes, under the account's prefix.
pub fn routes(service: Shared) -> Router {
    let prefix = service.config.path_prefix.clone();
    let mut router = Router::new();
    for base in ["/_matrix/app/v1", ""] {
        router = router
            .route(
                &format!("{prefix}{base}/transactions/{{txn}}"),
                put(transaction),
            )
            .route(&format!("{prefix}{base}/users/{{user}}"), get(user_query))
            .route(&format!("{prefix}{base}/rooms/{{alias}}"), get(room_query));
    }
    router
        .route(&format!("{prefix}/_matrix/app/v1/ping"), post(ping))
        .route(
            &format!("{prefix}/media/{{token}}/{{name}}"),
            get(super::media::serve),
        )
        .with_state(service)
}

/// Check the `hs_token`, in the header or the legacy query parameter.
fn authorise(
    service: &AppService,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
) -> Result<(), Refusal> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| query.get("access_token").map(String::as_str))
        .ok_or(Refusal::NoToken)?;
    let tokens = service
        .tokens()
        .map_err(|e| Refusal::NotAccepted(e.to_string()))?;
    if constant_time_eq(given.as_bytes(), tokens.hs_token.as_bytes()) {
        Ok(())
    } else {
        Err(Refusal::BadToken)
    }
}

/// Compare without an early exit, so timing says nothing about the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn ping(
    State(service): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Answer {
    authorise(&service, &headers, &query)?;
    Ok(Json(json!({})))
}

async fn user_query(
    State(service): State<Shared>,
    Path(user): Path<String>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Answer {
    authorise(&service, &headers, &query)?;
    let known =
        user == service.config.bot_user() || service.ghosts.lock().await.get(&user).is_some();
    if known {
        Ok(Json(json!({})))
    } else {
        Err(Refusal::NotFound)
    }
}

async fn room_query(
    State(service): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Answer {
    authorise(&service, &headers, &query)?;
    Err(Refusal::NotFound)
}

async fn transaction(
    State(service): State<Shared>,
    Path(txn): Path<String>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Answer {
    authorise(&service, &headers, &query)?;
    let body: Value = serde_json::from_slice(&body).map_err(|e| Refusal::BadJson(e.to_string()))?;
    let sink = service
        .sink
        .get()
        .filter(|_| service.is_running())
        .ok_or(Refusal::NotReady)?;
    // One transaction at a time: the homeserver sends them in order, and the done-ids must
    // be checked and recorded without another request in between.
    let mut txns = service.txns.lock().await;
    if txns.is_none() {
        *txns =
            Some(TxnLog::open(&service.data_dir).map_err(|e| Refusal::NotAccepted(e.to_string()))?);
    }
    let Some(log) = txns.as_mut() else {
        return Err(Refusal::NotReady);
    };
    if log.contains(&txn) {
        debug!(%txn, "a repeated transaction; already relayed");
        return Ok(Json(json!({})));
    }
    let events = body["events"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let mut inbounds = Vec::with_capacity(events.len());
    for event in events {
        inbounds.extend(handle_event(&service, event).await);
    }
    // The whole transaction in one run: the gateway commits it at once, not event by event.
    // If it fails, the homeserver sends the transaction again, and the events of it already
    // recorded are duplicates by their event ids.
    if !inbounds.is_empty() {
        match sink.emit_many(inbounds).await {
            Ok(_) => {}
            Err(EmitError::Closed) => return Err(Refusal::NotReady),
            Err(EmitError::Store(reason)) => return Err(Refusal::NotAccepted(reason)),
        }
    }
    log.record(&txn)
        .map_err(|e| Refusal::NotAccepted(format!("cannot record the transaction: {e}")))?;
    Ok(Json(json!({})))
}

/// What one pushed event means: an event to emit, or `None` (our own, not relayable,
/// malformed — logged and skipped).
async fn handle_event(service: &Shared, raw: &Value) -> Option<patchbay_sdk::Inbound> {
    let room_id = raw["room_id"].as_str()?.to_owned();
    let sender = raw["sender"].as_str().unwrap_or_default().to_owned();
    let kind = raw["type"].as_str().unwrap_or_default();
    let bot = service.config.bot_user();
    if kind == "m.room.member" {
        let subject = raw["state_key"].as_str().unwrap_or_default();
        let content = &raw["content"];
        let membership = content["membership"].as_str().unwrap_or_default();
        if subject == bot && membership == "invite" {
            accept_invite(service, &room_id, &sender);
            return None;
        }
        if service.is_own(subject) {
            // A ghost kicked or banned by a moderator: joined again (or refused) on its
            // next message.
            if subject != bot && matches!(membership, "leave" | "ban") {
                super::ghosts::forget_room(service, subject, &room_id).await;
            }
            return None;
        }
        let name = (membership == "join")
            .then(|| content["displayname"].as_str())
            .flatten();
        service.remember_member(&room_id, subject, name);
    } else if service.is_own(&sender) {
        return None;
    }
    if kind == "m.room.encrypted" {
        warn!(
            room = %room_id,
            "an encrypted event skipped: appservice mode cannot read encrypted rooms; bridge this \
             room with a bot-mode account (which keeps E2EE) instead"
        );
        return None;
    }
    let event: AnySyncTimelineEvent = match serde_json::from_value(raw.clone()) {
        Ok(event) => event,
        Err(e) => {
            debug!(room = %room_id, error = %e, "skipping an event that does not parse");
            return None;
        }
    };
    let room_name = service.room_name(&room_id);
    let display_name = if kind == "m.room.member" {
        None
    } else {
        service.member_name(&room_id, &sender).await
    };
    let context = Context {
        room: &room_name,
        own_user: &bot,
        display_name: display_name.as_deref(),
        relay_reactions: service.config.relay_reactions,
    };
    let parsed = parse_event(&event, &context)?;
    let mut inbound = parsed.inbound;
    if let Some(media) = parsed.media
        && let Kind::Message { body, attachments } = &mut inbound.kind
    {
        match super::media::link(service, &media) {
            Some(attachment) => attachments.push(attachment),
            // No link to give (no media_public_url): at least say what was sent.
            None if body.is_empty() => *body = RichText::plain(format!("[{}]", media.name)),
            None => {}
        }
    }
    let ghosts = service.ghosts.lock().await;
    let nick_of = |id: &str| ghosts.get(id).map(|g| g.nick.clone());
    if let Some(body) = inbound.kind.body_mut() {
        mentions::to_remote(body, &nick_of);
    }
    Some(inbound)
}

/// Join a room the bot is invited to, when the inviter is trusted or the room configured.
fn accept_invite(service: &Shared, room_id: &str, inviter: &str) {
    let configured = service.config.rooms.iter().any(|r| r == room_id);
    if !configured && !service.config.invite_from.iter().any(|u| u == inviter) {
        debug!(room = %room_id, %inviter, "ignoring an invite from an untrusted user");
        return;
    }
    // Not awaited: the join is answered by the homeserver that is waiting for this
    // transaction's answer.
    let service = service.clone();
    let room_id = room_id.to_owned();
    let inviter = inviter.to_owned();
    tokio::spawn(async move {
        match service.client() {
            Ok(client) => match client.join(None, &room_id).await {
                Ok(_) => info!(room = %room_id, %inviter, "accepted an invite"),
                Err(e) => {
                    warn!(room = %room_id, error = %e, "cannot accept the invite; invite the bot again, or add the room to `rooms`")
                }
            },
            Err(e) => {
                warn!(error = %e, "cannot accept an invite; invite the bot again, or add the room to `rooms`")
            }
        }
    });
}
