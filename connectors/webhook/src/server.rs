//! `POST /hooks/NAME/{room}`: size limit → authentication (and the replay check of a timed
//! signature) → rate limit → body → emit → 202. Every refusal is a [`Refusal`].
//!
//! The 202 goes out only after the gateway said the event is durably recorded; until the
//! connector runs (the sink arrives with `run`), requests wait a while and then get 503.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use patchbay_sdk::http::{Refusal, counted, read_body, until_running};
use patchbay_sdk::text::markdown::from_markdown;
use patchbay_sdk::{Author, EmitError, EventSink, Inbound, Kind, RichText};
use serde::Deserialize;
use tokio::sync::watch;

use crate::auth::{self, Proof};
use crate::config::{InboundKind, InboundSettings, WebhookConfig};
use crate::parse::{self, Parsed};
use crate::ratelimit::RateLimiter;
use crate::replay::{Claim, Seen};

/// What the HTTP side and the connector share.
pub struct Shared {
    pub config: WebhookConfig,
    pub limiter: RateLimiter,
    /// Timed signatures accepted inside their window.
    pub seen: Seen,
    /// The gateway's sink, once `run` has been called.
    pub sink: watch::Sender<Option<EventSink>>,
}

/// The routes of one webhook account.
pub fn router(shared: Arc<Shared>) -> Router {
    let path = format!("/hooks/{}/{{room}}", shared.config.name);
    Router::new().route(&path, post(hook)).with_state(shared)
}

#[derive(Deserialize)]
struct HookQuery {
    token: Option<String>,
}

/// A successful answer: `{key: message}` with `status`.
fn answer(status: StatusCode, key: &str, message: impl Into<String>) -> Response {
    let body = serde_json::json!({ key: message.into() });
    (status, axum::Json(body)).into_response()
}

/// The Unix time in seconds, what signature timestamps are compared with.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

async fn hook(
    State(shared): State<Arc<Shared>>,
    Path(room): Path<String>,
    Query(query): Query<HookQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Refusal> {
    let answer = take(&shared, &room, query, headers, body).await;
    counted(answer, shared.sink.borrow().as_ref(), &room)
}

/// Check, parse and emit one hook request.
async fn take(
    shared: &Shared,
    room: &str,
    query: HookQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Refusal> {
    let config = &shared.config;
    let body = read_body(&headers, body, config.max_body_bytes).await?;
    let settings = config.inbound(room);
    let now = unix_now();
    let proof = auth::check(settings, &headers, query.token.as_deref(), &body, now)?;
    if let Err(wait) = shared.limiter.take(room) {
        return Err(Refusal::TooMany {
            message: format!(
                "hook `{room}` takes at most {} requests a minute",
                config.rate_per_minute
            ),
            retry_after: wait,
        });
    }
    let message = match parse::parse(settings, &config.templates, &headers, &body) {
        Ok(Parsed::Message(message)) => message,
        Ok(Parsed::Ignored(why)) => return Ok(answer(StatusCode::OK, "ignored", why)),
        Err(why) => return Err(Refusal::BadRequest(why)),
    };
    // A timed signature is claimed before the event is emitted, so that a copy racing this
    // request is refused, and released if the event is not recorded.
    let claimed = match &proof {
        Proof::Timed { mac, timestamp } => {
            match shared
                .seen
                .claim(room, mac, *timestamp, settings.signature_max_age, now)
            {
                Claim::Fresh => Some(mac.as_slice()),
                Claim::Replayed => return Err(Refusal::Replayed),
                Claim::Full => {
                    return Err(Refusal::unavailable(
                        "too many signed requests inside the signature window",
                    ));
                }
            }
        }
        _ => None,
    };
    let emitted = emit(shared, room, settings, &headers, message, claimed).await;
    if emitted.is_err()
        && let Some(mac) = claimed
    {
        shared.seen.release(room, mac);
    }
    emitted
}

/// Hand the message to the gateway; 202 once it is recorded.
async fn emit(
    shared: &Shared,
    room: &str,
    settings: &InboundSettings,
    headers: &HeaderMap,
    message: parse::Message,
    signature: Option<&[u8]>,
) -> Result<Response, Refusal> {
    let sink = until_running(&shared.sink, shared.config.start_wait).await?;
    // Markdown that renders to nothing (`#`, an empty quote) is relayed as sent, never as an empty line.
    let body = match from_markdown(&message.text) {
        body if body.is_empty() => RichText::plain(message.text.trim()),
        body => body,
    };
    let mut inbound = Inbound::message(
        room.to_owned(),
        Author {
            id: message.username.clone(),
            name: message.username,
            avatar: message.avatar_url,
            is_bot: true,
            is_system: false,
        },
        body.clone(),
    );
    if settings.kind == InboundKind::Notice {
        inbound.kind = Kind::Notice { body };
    }
    // A sender's delivery id makes its redeliveries duplicates the gateway drops; a timed
    // signature does the same for a replay the in-memory set forgot (after a restart).
    inbound.remote_id = [
        "idempotency-key",
        "x-github-delivery",
        "x-gitlab-event-uuid",
    ]
    .iter()
    .find_map(|name| headers.get(*name).and_then(|v| v.to_str().ok()))
    .map(str::to_owned)
    .or_else(|| signature.map(|mac| format!("signature:{}", hex::encode(mac))));
    let id = sink.emit(inbound).await.inspect_err(|err| {
        if let EmitError::Store(_) = err {
            tracing::error!(account = %sink.account(), %room, "a hook could not be recorded: {err}");
        }
    })?;
    let id = id.map(|id| id.to_string()).unwrap_or_default();
    Ok(answer(StatusCode::ACCEPTED, "id", id))
}
