//! `POST /hooks/NAME/{room}`: size limit → authentication → rate limit → body → emit → 202.
//!
//! The 202 goes out only after the gateway said the event is durably recorded; until the
//! connector runs (the sink arrives with `run`), requests wait a while and then get 503.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use patchbay_sdk::text::markdown::from_markdown;
use patchbay_sdk::{Author, EmitError, EventSink, Inbound, Kind};
use serde::Deserialize;
use tokio::sync::watch;

use crate::auth::{self, Refusal};
use crate::config::{InboundKind, WebhookConfig};
use crate::parse::{self, Parsed};
use crate::ratelimit::RateLimiter;

/// What the HTTP side and the connector share.
pub struct Shared {
    pub config: WebhookConfig,
    pub limiter: RateLimiter,
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

fn answer(status: StatusCode, key: &str, message: impl Into<String>) -> Response {
    let body = serde_json::json!({ key: message.into() });
    (status, axum::Json(body)).into_response()
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    answer(status, "error", message)
}

fn retry_after(mut response: Response, wait: Duration) -> Response {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    if let Ok(value) = HeaderValue::from_str(&secs.max(1).to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

async fn hook(
    State(shared): State<Arc<Shared>>,
    Path(room): Path<String>,
    Query(query): Query<HookQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let config = &shared.config;
    let limit = config.max_body_bytes;
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is over the limit of {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return too_large();
    }
    let body = match axum::body::to_bytes(body, limit).await {
        Ok(body) => body,
        Err(err) => {
            // to_bytes fails either on the limit or on a broken connection.
            let err = err.into_inner();
            return if err.is::<http_body_util::LengthLimitError>() {
                too_large()
            } else {
                error(
                    StatusCode::BAD_REQUEST,
                    format!("the body could not be read: {err}"),
                )
            };
        }
    };
    let settings = config.inbound(&room);
    match auth::check(settings, &headers, query.token.as_deref(), &body) {
        Ok(()) => {}
        Err(Refusal::Missing(why)) => {
            let mut response = error(StatusCode::UNAUTHORIZED, why);
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"patchbay\""),
            );
            return response;
        }
        Err(Refusal::Wrong(why)) => return error(StatusCode::FORBIDDEN, why),
    }
    if let Err(wait) = shared.limiter.take(&room) {
        return retry_after(
            error(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "hook `{room}` takes at most {} requests a minute",
                    config.rate_per_minute
                ),
            ),
            wait,
        );
    }
    let message = match parse::parse(settings, &config.templates, &headers, &body) {
        Ok(Parsed::Message(message)) => message,
        Ok(Parsed::Ignored(why)) => return answer(StatusCode::OK, "ignored", why),
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    let Some(sink) = wait_for_sink(&shared, config.start_wait).await else {
        return retry_after(
            error(StatusCode::SERVICE_UNAVAILABLE, "the gateway is starting"),
            Duration::from_secs(5),
        );
    };
    let body = from_markdown(&message.text);
    let mut inbound = Inbound::message(
        room.clone(),
        Author {
            id: message.username.clone(),
            name: message.username,
            avatar: message.avatar_url,
            is_bot: true,
        },
        body.clone(),
    );
    if settings.kind == InboundKind::Notice {
        inbound.kind = Kind::Notice { body };
    }
    // A sender's delivery id makes its redeliveries duplicates the gateway drops.
    inbound.remote_id = [
        "idempotency-key",
        "x-github-delivery",
        "x-gitlab-event-uuid",
    ]
    .iter()
    .find_map(|name| headers.get(*name).and_then(|v| v.to_str().ok()))
    .map(str::to_owned);
    match sink.emit(inbound).await {
        Ok(id) => answer(
            StatusCode::ACCEPTED,
            "id",
            id.map(|id| id.to_string()).unwrap_or_default(),
        ),
        Err(EmitError::Closed) => retry_after(
            error(StatusCode::SERVICE_UNAVAILABLE, "the gateway is stopping"),
            Duration::from_secs(5),
        ),
        Err(err @ EmitError::Store(_)) => {
            tracing::error!(account = %sink.account(), %room, "a hook could not be recorded: {err}");
            retry_after(
                error(StatusCode::SERVICE_UNAVAILABLE, err.to_string()),
                Duration::from_secs(5),
            )
        }
    }
}

/// The sink, waiting up to `wait` for `run` to hand it over.
async fn wait_for_sink(shared: &Shared, wait: Duration) -> Option<EventSink> {
    let mut rx = shared.sink.subscribe();
    let ready = tokio::time::timeout(wait, rx.wait_for(|sink| sink.is_some())).await;
    match ready {
        Ok(Ok(sink)) => sink.clone(),
        _ => None,
    }
}
