//! What the status page shows of the recent past: traffic on each route edge, the recent
//! activity, and the live feed as server-sent events (`GET /admin/events`).
//!
//! The feed never holds the gateway back: each stream reads its own broadcast receiver, and a
//! stream that falls more than [`FEED_LAG`](crate::metrics::FEED_LAG) activities behind (its
//! client reads slowly) skips ahead and says so with a `skipped` event carrying how many it
//! lost. A client that stops reading altogether is closed by the listener's write timeout.
//! Streams end when the gateway stops.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::AdminApi;
use crate::metrics::{Activity, EdgeCount, FEED_KEEP, TRAFFIC_MINUTES};

/// `GET /admin/traffic`.
#[derive(Debug, Serialize)]
pub struct Traffic {
    /// How far back the counts go.
    pub window_minutes: usize,
    /// Each edge with deliveries or failures in the window.
    pub edges: Vec<EdgeCount>,
}

pub async fn traffic(State(api): State<AdminApi>) -> Json<Traffic> {
    Json(Traffic {
        window_minutes: TRAFFIC_MINUTES,
        edges: api.metrics.traffic(),
    })
}

#[derive(Debug, Deserialize)]
pub struct AfterQuery {
    /// Only activities with a greater `seq`.
    pub after: Option<u64>,
}

/// `GET /admin/activity`: the kept activities, oldest first.
#[derive(Debug, Serialize)]
pub struct Recent {
    /// How many the gateway keeps.
    pub keep: usize,
    pub activities: Vec<Arc<Activity>>,
}

pub async fn activity(
    State(api): State<AdminApi>,
    Query(query): Query<AfterQuery>,
) -> Json<Recent> {
    Json(Recent {
        keep: FEED_KEEP,
        activities: api.metrics.feed.recent(query.after),
    })
}

/// `GET /admin/events`: the kept activities after `after`, then each new one as it happens.
/// Each SSE event is named by the activity's kind, carries its `seq` as id and its JSON as
/// data.
pub async fn events(
    State(api): State<AdminApi>,
    Query(query): Query<AfterQuery>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let (backlog, live) = api.metrics.feed.subscribe(query.after);
    let feed = Feed {
        backlog: backlog.into(),
        live,
        stop: api.stop.clone(),
    };
    Sse::new(futures::stream::unfold(feed, Feed::next)).keep_alive(KeepAlive::default())
}

/// One stream's position in the feed.
struct Feed {
    backlog: VecDeque<Arc<Activity>>,
    live: broadcast::Receiver<Arc<Activity>>,
    stop: CancellationToken,
}

impl Feed {
    /// The next SSE event, or `None` to end the stream.
    async fn next(mut self) -> Option<(Result<SseEvent, Infallible>, Feed)> {
        if let Some(activity) = self.backlog.pop_front() {
            return Some((Ok(to_sse(&activity)), self));
        }
        let received = tokio::select! {
            received = self.live.recv() => received,
            _ = self.stop.cancelled() => return None,
        };
        let event = match received {
            Ok(activity) => to_sse(&activity),
            Err(broadcast::error::RecvError::Lagged(skipped)) => SseEvent::default()
                .event("skipped")
                .data(skipped.to_string()),
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok(event), self))
    }
}

fn to_sse(activity: &Activity) -> SseEvent {
    let kind = match activity.what {
        crate::metrics::What::Delivered { .. } => "delivered",
        crate::metrics::What::DeadLettered { .. } => "dead_lettered",
        crate::metrics::What::State { .. } => "state",
    };
    // An activity is plain strings and numbers: it always serializes.
    let data = serde_json::to_string(activity).unwrap_or_else(|_| "{}".to_owned());
    SseEvent::default()
        .id(activity.seq.to_string())
        .event(kind)
        .data(data)
}
