//! The one HTTP listener: connectors' routes (webhooks, the API, media), `/healthz` and
//! `/metrics`.
//!
//! The listener is written to hold under hostile clients ([`Limits`]): a client must send a
//! request's head within `header_timeout` (so a slowloris client that trickles header bytes,
//! or an idle keep-alive connection, is closed) and its body within `body_timeout` (answered
//! 408 by the handlers that read bodies); heads over `max_header_bytes` get 431; a client that
//! stops reading what we write is dropped after `write_timeout`; at most `max_connections` are
//! served at once — further ones wait in the kernel's accept queue until one closes, so a burst
//! is served late rather than refused. WebSocket message and frame sizes are the API
//! connector's own limit (`max_body_bytes`). On stop the listener closes first, open
//! connections finish the request in hand (for at most [`DRAIN_TIMEOUT`]), then it returns.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use patchbay_sdk::ConnectorState;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::account_states::AccountStates;
use crate::metrics::Metrics;
use crate::store::Store;

/// What `/healthz` and `/metrics` read.
#[derive(Clone)]
pub struct Status {
    /// The accounts configured now (a reload changes them).
    pub states: AccountStates,
    pub metrics: Arc<Metrics>,
    pub store: Arc<dyn Store>,
}

/// How much a client may take from the listener. The defaults suit a gateway on the open
/// internet taking webhooks and API clients; none of them is a config key yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The whole request head (request line and headers) must arrive within this, counted
    /// from when the server starts waiting for it — which also bounds how long an idle
    /// keep-alive connection holds a slot. Default 10 s.
    pub header_timeout: Duration,
    /// A request body must arrive whole within this, counted from the end of its head; a
    /// handler reading it then answers 408. At the webhook's 1 MiB limit that asks for about
    /// 35 KB/s. Default 30 s.
    pub body_timeout: Duration,
    /// A write to the client that makes no progress for this long (a client that does not
    /// read) closes the connection, WebSockets included. Default 30 s.
    pub write_timeout: Duration,
    /// Connections served at once, WebSocket streams included; more wait to be accepted.
    /// Default 256 (well under the usual 1024 open files).
    pub max_connections: usize,
    /// The largest request head in bytes; larger ones get 431. Default 16 KiB.
    pub max_header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            max_connections: 256,
            max_header_bytes: 16 * 1024,
        }
    }
}

/// How long a stopping listener waits for open connections to finish their request.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the listener pauses after a failed accept (out of file descriptors, say), so a
/// persistent failure does not spin.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// The gateway's own routes (method, path), all GET; the OpenAPI test reads this list.
pub const OWN_ROUTES: [(&str, &str); 2] = [("GET", "/healthz"), ("GET", "/metrics")];

/// The gateway's own routes, merged with the connectors' (and the admin API's, when it shares
/// this listener).
pub fn router(status: Status, connector_routes: Vec<Router>) -> Router {
    let own = Router::new()
        .route(OWN_ROUTES[0].1, get(healthz))
        .route(OWN_ROUTES[1].1, get(metrics))
        .with_state(status);
    connector_routes.into_iter().fold(own, Router::merge)
}

/// Bind `listen`, then return the future that serves `app` with the default [`Limits`] until
/// `stop` is cancelled. Binding first lets a taken port fail the start with a clear error.
pub async fn serve(
    listen: SocketAddr,
    app: Router,
    stop: CancellationToken,
) -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    serve_with(listen, app, stop, Limits::default()).await
}

/// [`serve`] with other limits.
pub async fn serve_with(
    listen: SocketAddr,
    app: Router,
    stop: CancellationToken,
    limits: Limits,
) -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} ([http] listen)"))?;
    tracing::info!(%listen, "HTTP listener up");
    Ok(serve_listener(listener, app, stop, limits))
}

/// Serve `app` on a listener bound already (a test's port 0, say) until `stop` is cancelled:
/// accept while a connection slot is free, serve each connection on its own task, then close
/// the listener and drain.
pub async fn serve_listener(
    listener: TcpListener,
    app: Router,
    stop: CancellationToken,
    limits: Limits,
) {
    let app = app.layer(axum::middleware::map_request_with_state(
        limits.body_timeout,
        body_deadline,
    ));
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let connections = TaskTracker::new();
    loop {
        // The slot first: while every slot is taken, connections wait in the accept queue.
        let slot = tokio::select! {
            _ = stop.cancelled() => break,
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(err) => {
                    tracing::warn!("the HTTP listener could not accept a connection: {err}; it keeps listening (if the error is about open files, raise the process's file limit, e.g. LimitNOFILE)");
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(ACCEPT_PAUSE) => continue,
                    }
                }
            },
        };
        // Small JSON answers go out at once rather than after Nagle's delay.
        let _ = stream.set_nodelay(true);
        connections.spawn(serve_connection(
            stream,
            slot,
            app.clone(),
            limits,
            stop.clone(),
        ));
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "the HTTP listener stopped with connections still open after {DRAIN_TIMEOUT:?}"
        );
    }
}

/// Serve one connection (HTTP/1.1, with upgrades for WebSockets) until it closes; on `stop`,
/// finish the request in hand and close.
async fn serve_connection(
    stream: TcpStream,
    slot: OwnedSemaphorePermit,
    app: Router,
    limits: Limits,
    stop: CancellationToken,
) {
    let io = TokioIo::new(Guarded::new(stream, slot, limits.write_timeout));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(limits.max_header_bytes);
    let connection = builder
        .serve_connection(io, TowerToHyperService::new(app))
        .with_upgrades();
    let mut connection = std::pin::pin!(connection);
    let mut stopping = false;
    let served = loop {
        tokio::select! {
            served = connection.as_mut() => break served,
            _ = stop.cancelled(), if !stopping => {
                connection.as_mut().graceful_shutdown();
                stopping = true;
            }
        }
    };
    if let Err(err) = served {
        // Timeouts, resets and malformed requests: the client's doing, not worth a warning.
        tracing::debug!("an HTTP connection ended: {err}");
    }
}

/// Give the request's body a deadline of `timeout` from now (the end of its head).
async fn body_deadline(State(timeout): State<Duration>, request: Request) -> Request {
    request.map(|body| Body::new(Deadline::new(body, timeout)))
}

/// A request body that fails with [`io::ErrorKind::TimedOut`] once its deadline passes before
/// it ended; handlers map that error to 408.
struct Deadline {
    inner: Body,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl Deadline {
    fn new(inner: Body, timeout: Duration) -> Self {
        Deadline {
            inner,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }
}

impl HttpBody for Deadline {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            let timeout = self.timeout;
            let late = io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the request body did not arrive within {timeout:?}"),
            );
            return Poll::Ready(Some(Err(late.into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A client connection holding its slot (released when the connection, or the WebSocket it
/// was upgraded to, is dropped), whose writes fail once stalled for `write_timeout`.
struct Guarded {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
    write_timeout: Duration,
    /// Running while a write is pending; reset by any progress.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl Guarded {
    fn new(stream: TcpStream, slot: OwnedSemaphorePermit, write_timeout: Duration) -> Self {
        Guarded {
            stream,
            _slot: slot,
            write_timeout,
            stalled: None,
        }
    }

    /// Pass a write's result through, timing how long it stays pending.
    fn watch<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.stalled = None;
            return poll;
        }
        let timeout = self.write_timeout;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if stalled.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client read nothing for {timeout:?}"),
            )));
        }
        Poll::Pending
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.watch(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.stream).poll_flush(cx);
        self.watch(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.stream).poll_shutdown(cx);
        self.watch(cx, poll)
    }
}

/// 200 when every connector is up; 503 naming those that are not.
async fn healthz(State(status): State<Status>) -> Response {
    let mut down = serde_json::Map::new();
    for (account, state) in &status.states.current() {
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
            tracing::warn!(
                "cannot read outbox depths for /metrics: {err}; this scrape has no outbox gauges (check the store)"
            );
            BTreeMap::new()
        }
    };
    let up: BTreeMap<String, bool> = status
        .states
        .current()
        .iter()
        .map(|(account, state)| (account.clone(), *state.borrow() == ConnectorState::Up))
        .collect();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        status.metrics.render(&depths, &up),
    )
        .into_response()
}
