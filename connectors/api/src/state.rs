//! What the REST routes, the WebSocket and the connector share: the account's state, the
//! token check, the wait for `run`, and relaying a client's send (the same for a POST and a
//! stream frame). Both HTTP sides import this and neither imports the other.

use std::sync::Arc;

use axum::http::{HeaderMap, header};
use patchbay_sdk::http::{Refusal, until_running};
use patchbay_sdk::{EmitError, Event, EventId, EventSink, HealthEvent, Signal};
use subtle::ConstantTimeEq;
use tokio::sync::{broadcast, watch};

use crate::config::ApiConfig;
use crate::log::{self, Log};
use crate::wire::{Direction, Entry, Send};

/// What the HTTP side and the connector share.
pub struct Shared {
    pub config: ApiConfig,
    /// The sink and the open log, once `run` has been called.
    pub ready: watch::Sender<Option<Ready>>,
    pub live: broadcast::Sender<Arc<Entry>>,
}

#[derive(Clone)]
pub struct Ready {
    pub sink: EventSink,
    pub log: Arc<Log>,
    /// Cancelled when the gateway stops: streams close.
    pub shutdown: tokio_util::sync::CancellationToken,
}

/// Check the bearer token (header, or `?token=` for clients that cannot set headers, such as
/// browsers opening a WebSocket).
pub fn authorize(
    config: &ApiConfig,
    headers: &HeaderMap,
    query_token: Option<&str>,
) -> Result<(), Refusal> {
    let from_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    match from_header.or(query_token) {
        None => Err(Refusal::Unauthenticated("a bearer token is required")),
        Some(given) if bool::from(given.as_bytes().ct_eq(config.token.as_bytes())) => Ok(()),
        Some(_) => Err(Refusal::Forbidden("the token is wrong")),
    }
}

patchbay_sdk::health_events! {
    /// A relayed send could not be appended to the API log.
    struct SentNotLogged<'a> { room: &'a str, error: &'a dyn std::fmt::Display }
        => Signal::SaveFailed, |_| tracing::warn!(%room, "a sent message is missing from the API log: {error}; it was relayed, but the sender's client will not see its own echo: check the account's data dir (writable, disk space)");
}

/// `answer` as it was, its refusal, if it is one, counted for the account once the connector
/// runs (see [`patchbay_sdk::http::counted`]): every handler answers through this.
pub fn counted<T>(shared: &Shared, what: &str, answer: Result<T, Refusal>) -> Result<T, Refusal> {
    let ready = shared.ready.borrow();
    patchbay_sdk::http::counted(answer, ready.as_ref().map(|r| &r.sink), what)
}

/// The sink and log, waiting up to the configured time for `run` to provide them.
pub async fn ready(shared: &Shared) -> Result<Ready, Refusal> {
    until_running(&shared.ready, shared.config.start_wait).await
}

/// What a send became.
pub struct Sent {
    pub id: Option<i64>,
    pub event_id: Option<EventId>,
}

/// Relay a client's send into `room`'s route and log it: 400 for a send that cannot be an
/// event, 503 when the gateway cannot record it.
pub async fn send(shared: &Shared, ready: &Ready, room: &str, send: Send) -> Result<Sent, Refusal> {
    if !shared.config.serves(room) {
        return Err(Refusal::BadRequest(format!(
            "this API does not serve room `{room}`"
        )));
    }
    let inbound = send.into_inbound(room).map_err(Refusal::BadRequest)?;
    let nick = inbound.author.name.clone();
    let copy = inbound.clone();
    let emitted = ready.sink.emit(inbound).await.inspect_err(|err| {
        if let EmitError::Store(_) = err {
            tracing::error!(account = %ready.sink.account(), %room, "a send could not be recorded: {err}");
        }
    })?;
    let Some(event_id) = emitted else {
        return Ok(Sent {
            id: None,
            event_id: None,
        });
    };
    let mut event = Event::from_inbound(ready.sink.account(), copy);
    event.id = event_id;
    let entry = Entry {
        id: 0,
        room: room.to_owned(),
        direction: Direction::Sent,
        nick,
        route: String::new(),
        event,
    };
    // The event is relayed already; a log failure only costs the client its own echo.
    let id = match log::blocking(&ready.log, move |log| log.append(entry)).await {
        Ok(id) => Some(id),
        Err(err) => {
            SentNotLogged { room, error: &err }.emit(&ready.sink);
            None
        }
    };
    Ok(Sent {
        id,
        event_id: Some(event_id),
    })
}
