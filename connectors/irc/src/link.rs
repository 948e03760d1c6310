//! The live connection as `deliver` sees it, and the writer task that sends its lines.
//!
//! Protocol lines (PONG, JOIN, CAP) go out at once; deliveries go through the flood-control
//! bucket. A delivery's last line carries a `done` signal that fires once it is flushed.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::trace;

use crate::config::IrcConfig;
use crate::pacing::TokenBucket;
use crate::render::SelfPrefix;

/// What the connector and its sessions share.
pub struct Shared {
    pub cfg: IrcConfig,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub link: Mutex<Option<Link>>,
    /// Channels deliveries were made to, beyond the configured ones: folded name → the name as
    /// routes spell it. Joined again after a reconnect; inbound events use this spelling.
    pub rooms: Mutex<HashMap<String, String>>,
}

/// A line for the writer; `done` fires once it is written and flushed.
pub struct Paced {
    pub line: String,
    pub done: Option<oneshot::Sender<()>>,
}

/// What a delivery learns from the server: its msgid (echo-message), or why it was refused
/// (`Err((reason, retryable))`).
pub type EchoResult = Result<Option<String>, (String, bool)>;

/// Who waits for echo-message to give a sent line its id, by (folded target, first line's text).
type EchoWaiters = HashMap<(String, String), VecDeque<oneshot::Sender<EchoResult>>>;

/// Handles to the registered connection.
#[derive(Clone)]
pub struct Link {
    pub urgent: mpsc::UnboundedSender<String>,
    pub paced: mpsc::UnboundedSender<Paced>,
    pub state: Arc<Mutex<LinkState>>,
}

/// What `deliver` needs to know about the live connection.
pub struct LinkState {
    pub me: SelfPrefix,
    pub caps: HashSet<String>,
    /// Joined channels: folded name → name as the server spells it.
    pub joined: HashMap<String, String>,
    /// Channels a delivery asked to join, and when.
    pub join_requested: HashMap<String, Instant>,
    pub echo_waiters: EchoWaiters,
}

pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub async fn writer_task<W: AsyncWrite>(
    mut wr: WriteHalf<W>,
    mut urgent: mpsc::UnboundedReceiver<String>,
    mut paced: mpsc::UnboundedReceiver<Paced>,
    mut bucket: TokenBucket,
) -> std::io::Result<()> {
    let mut acks: Vec<oneshot::Sender<()>> = Vec::new();
    loop {
        let line = tokio::select! {
            biased;
            Some(line) = urgent.recv() => line,
            Some(p) = paced.recv() => {
                bucket.take().await;
                if let Some(done) = p.done {
                    acks.push(done);
                }
                p.line
            }
            else => break,
        };
        // A line never carries CR, LF or NUL: cut there rather than send two commands.
        let clean = line.split(['\r', '\n', '\0']).next().unwrap_or("");
        trace!("> {clean}");
        wr.write_all(clean.as_bytes()).await?;
        wr.write_all(b"\r\n").await?;
        if urgent.is_empty() && paced.is_empty() {
            wr.flush().await?;
            for ack in acks.drain(..) {
                let _ = ack.send(());
            }
        }
    }
    wr.flush().await?;
    let _ = wr.shutdown().await;
    Ok(())
}
