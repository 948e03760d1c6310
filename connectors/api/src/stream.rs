//! `GET /api/NAME/stream`: a WebSocket carrying the log's entries as they are appended, and
//! the client's sends the other way.
//!
//! Every connected client gets every entry (a broadcast, not a work queue). With `?after=ID`
//! the stream starts with what came after that entry, then goes live without a gap or a
//! repeat; a client that falls behind the broadcast is caught up from the log. The server
//! pings every `ping_interval` and closes a connection silent for two intervals.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use patchbay_sdk::Refusal;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use crate::log;
use crate::state::{self, Ready, Sent, Shared, authorize};
use crate::wire::{ClientFrame, Entry, ServerFrame};

/// Entries read from the log per catch-up query.
const CATCH_UP_PAGE: usize = 500;

#[derive(Deserialize)]
pub struct StreamQuery {
    token: Option<String>,
    after: Option<String>,
    /// Comma-separated rooms to stream (all when absent).
    rooms: Option<String>,
}

pub async fn upgrade(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<StreamQuery>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, Refusal> {
    let answer = open(Arc::clone(&shared), query, headers, upgrade).await;
    state::counted(&shared, "stream", answer)
}

/// Check a stream request and answer it with the upgrade.
async fn open(
    shared: Arc<Shared>,
    query: StreamQuery,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, Refusal> {
    // The token first: a client without it learns nothing else.
    authorize(&shared.config, &headers, query.token.as_deref())?;
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => return Ok(rejection.into_response()),
    };
    let after = match query.after.as_deref().map(str::parse::<i64>) {
        None => None,
        Some(Ok(after)) if after >= 0 => Some(after),
        Some(_) => {
            return Err(Refusal::BadRequest(
                "`after` must be an entry id (a whole number, 0 or more)".into(),
            ));
        }
    };
    let rooms: Option<Vec<String>> = query.rooms.map(|r| {
        r.split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    });
    let ready = state::ready(&shared).await?;
    // Live only: from the log's end as it is before the handshake is answered, so whatever is
    // appended once the client holds its 101 reaches it (from the catch-up if not live).
    let after = match after {
        Some(after) => after,
        None => log::blocking(&ready.log, |log| log.last_id())
            .await
            .map_err(|err| Refusal::unavailable(err.to_string()))?,
    };
    // A client message is a send: it gets the same size limit as a POSTed one, and so does
    // each frame of it. What we send a client that does not read is bounded by `send_frame`'s
    // timeout rather than by a buffer size.
    let limit = shared.config.max_body_bytes;
    Ok(upgrade
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| async move {
            let mut session = Session {
                shared,
                ready,
                rooms,
                last: 0,
            };
            if let Err(reason) = session.run(socket, after).await {
                tracing::debug!("an API stream ended: {reason}");
            }
        }))
}

/// The close frame for a read error: 1009 for a frame or message over the size limit (so the
/// client learns why), none for a connection that is already broken.
fn close_for(err: &axum::Error, limit: usize) -> Option<CloseFrame> {
    let inner = std::error::Error::source(err)?;
    match inner.downcast_ref::<tungstenite::Error>()? {
        tungstenite::Error::Capacity(_) => Some(CloseFrame {
            code: close_code::SIZE,
            reason: format!("a message or frame is over the limit of {limit} bytes").into(),
        }),
        tungstenite::Error::Protocol(_) => Some(CloseFrame {
            code: close_code::PROTOCOL,
            reason: "a WebSocket protocol error".into(),
        }),
        _ => None,
    }
}

/// Why a stream ended other than by a close, the client leaving or shutdown.
#[derive(Debug, thiserror::Error)]
enum StreamError {
    #[error("reading from the client: {0}")]
    Read(#[source] axum::Error),
    #[error("writing to the client: {0}")]
    Write(#[source] axum::Error),
    /// A frame waited [`SEND_TIMEOUT`] for a client that does not read.
    #[error("the client does not read")]
    Slow,
    #[error("the client stopped answering pings")]
    Silent,
    #[error(transparent)]
    Log(#[from] log::LogError),
    #[error("a frame could not be encoded: {0}")]
    Encode(#[from] serde_json::Error),
}

/// How long one frame may wait for a client to read it.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

struct Session {
    shared: Arc<Shared>,
    ready: Ready,
    rooms: Option<Vec<String>>,
    /// The last entry id sent to the client.
    last: i64,
}

type Sink = futures::stream::SplitSink<WebSocket, Message>;

impl Session {
    fn wants(&self, entry: &Entry) -> bool {
        entry.id > self.last
            && self
                .rooms
                .as_ref()
                .is_none_or(|rooms| rooms.contains(&entry.room))
    }

    /// Stream what comes after entry `after`.
    async fn run(&mut self, socket: WebSocket, after: i64) -> Result<(), StreamError> {
        self.last = after;
        // Subscribe before reading the backlog; what both hold is sent once (ids only grow).
        let mut live = self.shared.live.subscribe();
        let (mut tx, mut rx) = socket.split();
        self.catch_up(&mut tx).await?;
        let interval = self.shared.config.ping_interval;
        let mut ping = tokio::time::interval_at(Instant::now() + interval, interval);
        let mut heard = Instant::now();
        let shutdown = self.ready.shutdown.clone();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    let close = CloseFrame { code: close_code::AWAY, reason: "the gateway is stopping".into() };
                    let _ = tx.send(Message::Close(Some(close))).await;
                    return Ok(());
                }
                entry = live.recv() => match entry {
                    Ok(entry) => {
                        if self.wants(&entry) {
                            send_frame(&mut tx, &ServerFrame::Entry(&entry)).await?;
                            self.last = entry.id;
                        }
                    }
                    Err(RecvError::Lagged(_)) => self.catch_up(&mut tx).await?,
                    Err(RecvError::Closed) => return Ok(()),
                },
                message = rx.next() => {
                    let message = match message {
                        Some(Ok(message)) => message,
                        Some(Err(err)) => {
                            if let Some(close) = close_for(&err, self.shared.config.max_body_bytes) {
                                let _ = tokio::time::timeout(
                                    Duration::from_secs(5),
                                    tx.send(Message::Close(Some(close))),
                                ).await;
                            }
                            return Err(StreamError::Read(err));
                        }
                        None => return Ok(()),
                    };
                    heard = Instant::now();
                    match message {
                        Message::Text(text) => self.on_text(&mut tx, &text).await?,
                        Message::Binary(_) => {
                            send_frame(&mut tx, &ServerFrame::Error {
                                reference: None,
                                error: "frames are JSON text".into(),
                            }).await?;
                        }
                        Message::Close(_) => return Ok(()),
                        // Pongs only prove the client is alive; pings are answered by axum.
                        Message::Ping(_) | Message::Pong(_) => {}
                    }
                }
                _ = ping.tick() => {
                    if heard.elapsed() > interval * 2 {
                        let _ = tx.send(Message::Close(None)).await;
                        return Err(StreamError::Silent);
                    }
                    tx.send(Message::Ping(Default::default())).await.map_err(StreamError::Write)?;
                }
            }
        }
    }

    /// Send what the log holds after `self.last`.
    async fn catch_up(&mut self, tx: &mut Sink) -> Result<(), StreamError> {
        loop {
            let after = self.last;
            let page = log::blocking(&self.ready.log, move |log| {
                log.after(None, after, CATCH_UP_PAGE)
            })
            .await?;
            let Some(last) = page.last().map(|e| e.id) else {
                return Ok(());
            };
            for entry in &page {
                if self.wants(entry) {
                    send_frame(tx, &ServerFrame::Entry(entry)).await?;
                }
            }
            self.last = last;
            if page.len() < CATCH_UP_PAGE {
                return Ok(());
            }
        }
    }

    async fn on_text(&mut self, tx: &mut Sink, text: &str) -> Result<(), StreamError> {
        let frame: ClientFrame = match serde_json::from_str(text) {
            Ok(frame) => frame,
            Err(err) => {
                return send_frame(
                    tx,
                    &ServerFrame::Error {
                        reference: None,
                        error: format!("not a frame: {err}"),
                    },
                )
                .await;
            }
        };
        match frame {
            ClientFrame::Ping => send_frame(tx, &ServerFrame::Pong).await,
            ClientFrame::Send(message) => {
                let mut message = *message;
                let reference = message.reference.take();
                let Some(room) = message.room.take() else {
                    return send_frame(
                        tx,
                        &ServerFrame::Error {
                            reference,
                            error: "`room` is required".into(),
                        },
                    )
                    .await;
                };
                let answer = match state::send(&self.shared, &self.ready, &room, message).await {
                    Ok(Sent { id, event_id }) => ServerFrame::Ack {
                        reference,
                        duplicate: event_id.is_none(),
                        id,
                        event_id: event_id.map(|id| id.to_string()),
                    },
                    Err(refusal) => ServerFrame::Error {
                        reference,
                        error: refusal.to_string(),
                    },
                };
                send_frame(tx, &answer).await
            }
        }
    }
}

async fn send_frame(tx: &mut Sink, frame: &ServerFrame<'_>) -> Result<(), StreamError> {
    let json = serde_json::to_string(frame)?;
    tokio::time::timeout(SEND_TIMEOUT, tx.send(Message::Text(Utf8Bytes::from(json))))
        .await
        .map_err(|_| StreamError::Slow)?
        .map_err(StreamError::Write)
}
