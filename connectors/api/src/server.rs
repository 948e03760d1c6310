//! The REST side: `POST /api/NAME/{room}/messages` sends into the route as a named user,
//! `GET /api/NAME/{room}/messages?after=ID` pages through the room's log; both need the token.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use patchbay_sdk::http::{Refusal, read_body};
use serde::Deserialize;

use crate::config::MAX_PAGE;
use crate::log;
use crate::state::{Sent, Shared, authorize, counted, ready, send};
use crate::stream;
use crate::wire::Send;

/// The routes of one API account.
pub fn router(shared: Arc<Shared>) -> Router {
    let name = &shared.config.name;
    Router::new()
        .route(
            &format!("/api/{name}/{{room}}/messages"),
            get(history).post(post_message),
        )
        .route(&format!("/api/{name}/stream"), get(stream::upgrade))
        .with_state(shared)
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

async fn post_message(
    State(shared): State<Arc<Shared>>,
    Path(room): Path<String>,
    Query(query): Query<TokenQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Refusal> {
    let answer = take_message(&shared, &room, query, headers, body).await;
    counted(&shared, &room, answer)
}

async fn take_message(
    shared: &Shared,
    room: &str,
    query: TokenQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Refusal> {
    authorize(&shared.config, &headers, query.token.as_deref())?;
    let bytes = read_body(&headers, body, shared.config.max_body_bytes).await?;
    let message: Send = serde_json::from_slice(&bytes)
        .map_err(|err| Refusal::BadRequest(format!("the body is not a message: {err}")))?;
    let ready = ready(shared).await?;
    Ok(match send(shared, &ready, room, message).await? {
        Sent {
            id,
            event_id: Some(event_id),
        } => (
            StatusCode::ACCEPTED,
            axum::Json(serde_json::json!({ "id": id, "event_id": event_id.to_string() })),
        )
            .into_response(),
        Sent { event_id: None, .. } => (
            StatusCode::OK,
            axum::Json(serde_json::json!({ "duplicate": true })),
        )
            .into_response(),
    })
}

#[derive(Debug, Default, Deserialize)]
struct HistoryQuery {
    token: Option<String>,
    after: Option<String>,
    limit: Option<String>,
    /// The newest N entries instead of a page after `after`.
    last: Option<String>,
}

async fn history(
    State(shared): State<Arc<Shared>>,
    Path(room): Path<String>,
    Query(query): Query<HistoryQuery>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    let answer = read_history(&shared, room.clone(), query, headers).await;
    counted(&shared, &room, answer)
}

async fn read_history(
    shared: &Shared,
    room: String,
    query: HistoryQuery,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    authorize(&shared.config, &headers, query.token.as_deref())?;
    if !shared.config.serves(&room) {
        return Err(Refusal::NotFound(format!(
            "this API does not serve room `{room}`"
        )));
    }
    let page = Page::from_query(&query, shared.config.page_size)?;
    let ready = ready(shared).await?;
    let after = page.after;
    let read = log::blocking(&ready.log, move |log| match page.last {
        Some(count) => log.last(&room, count),
        None => log.after(Some(&room), page.after, page.limit),
    })
    .await;
    match read {
        Ok(entries) => {
            let next = entries.last().map(|e| e.id).unwrap_or(after);
            Ok(axum::Json(serde_json::json!({ "entries": entries, "next": next })).into_response())
        }
        Err(err) => {
            tracing::error!("reading the API log: {err}");
            Err(Refusal::unavailable(err.to_string()))
        }
    }
}

/// A history request's paging, checked (pure).
#[derive(Debug, PartialEq, Eq)]
pub struct Page {
    pub after: i64,
    pub limit: usize,
    /// The newest N entries instead of a page after `after`.
    pub last: Option<usize>,
}

impl Page {
    fn from_query(query: &HistoryQuery, page_size: usize) -> Result<Page, Refusal> {
        let after = match query.after.as_deref().map(str::parse::<i64>) {
            None => 0,
            Some(Ok(after)) if after >= 0 => after,
            Some(_) => {
                return Err(Refusal::BadRequest(
                    "`after` must be an entry id (a whole number, 0 or more)".into(),
                ));
            }
        };
        let limit = match query.limit.as_deref().map(str::parse::<usize>) {
            None => page_size,
            Some(Ok(limit)) if (1..=MAX_PAGE).contains(&limit) => limit,
            Some(_) => {
                return Err(Refusal::BadRequest(format!(
                    "`limit` must be between 1 and {MAX_PAGE}"
                )));
            }
        };
        let last = match query.last.as_deref().map(str::parse::<usize>) {
            None => None,
            Some(Ok(last)) if (1..=MAX_PAGE).contains(&last) && query.after.is_none() => Some(last),
            Some(_) => {
                return Err(Refusal::BadRequest(format!(
                    "`last` must be between 1 and {MAX_PAGE}, without `after`"
                )));
            }
        };
        Ok(Page { after, limit, last })
    }
}

/// How often the log is pruned.
pub const PRUNE_EVERY: Duration = Duration::from_secs(3600);

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn query(after: Option<String>, limit: Option<String>, last: Option<String>) -> HistoryQuery {
        HistoryQuery {
            after,
            limit,
            last,
            ..HistoryQuery::default()
        }
    }

    proptest! {
        /// Any query string values give a page inside the bounds or a 400 naming the field.
        #[test]
        fn history_paging_is_in_bounds_or_refused(
            after in prop::option::of(prop_oneof!["-?[0-9]{1,20}", "[ -~]{0,8}"]),
            limit in prop::option::of(prop_oneof!["[0-9]{1,5}", "[ -~]{0,8}"]),
            last in prop::option::of(prop_oneof!["[0-9]{1,5}", "[ -~]{0,8}"]),
        ) {
            match Page::from_query(&query(after.clone(), limit, last.clone()), 100) {
                Ok(page) => {
                    prop_assert!(page.after >= 0);
                    prop_assert!((1..=MAX_PAGE).contains(&page.limit));
                    if let Some(last) = page.last {
                        prop_assert!((1..=MAX_PAGE).contains(&last));
                        prop_assert!(after.is_none());
                    }
                }
                Err(refusal) => {
                    prop_assert_eq!(refusal.status(), StatusCode::BAD_REQUEST);
                    let why = refusal.to_string();
                    prop_assert!(why.starts_with('`'), "{}", why);
                }
            }
        }
    }

    #[test]
    fn history_defaults_to_the_configured_page() {
        assert_eq!(
            Page::from_query(&query(None, None, None), 100),
            Ok(Page {
                after: 0,
                limit: 100,
                last: None
            })
        );
    }
}
