//! The embedded store: one SQLite file in WAL mode.
//!
//! All writes go through one writer thread that commits whatever has queued up in a single
//! transaction (group commit): many concurrent accepts cost one commit, which is how the
//! gateway records tens of thousands of events a second on a small machine. Reads use a
//! connection of their own; WAL lets them run beside the writer.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use async_trait::async_trait;
use patchbay_sdk::sync::lock;
use patchbay_sdk::{Event, EventId, Quote, Seen, Timestamp};
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};

mod checkpoint;
mod dead;
mod marks;
mod outbox;
mod prune;
mod writer;

use super::{
    Accepted, DeadLetter, NewEvent, Pending, RoomBacklog, RoomOutbox, Store, StoreError, StoreStats,
};
use crate::router::RoomKey;
use checkpoint::{Checkpointer, RestartWanted, WalLimit, WriterLink};
use outbox::{Lanes, SqliteRoom};
use writer::{Command, Feed, run_writer};

/// How many committed deliveries a room's lane queue holds before the lane reads the
/// database instead.
pub const LANE_QUEUE: usize = 4096;

/// SQLite-backed [`Store`]. Cheap to clone: every clone is the same store.
#[derive(Clone)]
pub struct SqliteStore {
    writer: mpsc::UnboundedSender<Command>,
    reader: Arc<Mutex<Connection>>,
    lanes: Arc<Lanes>,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
    checkpointer: Arc<Mutex<Option<Checkpointer>>>,
    /// Counts for [`StoreStats`]: what the hot path costs the database.
    counters: Arc<Counters>,
}

#[derive(Default)]
struct Counters {
    commits: std::sync::atomic::AtomicU64,
    reads: std::sync::atomic::AtomicU64,
}

impl SqliteStore {
    /// Open (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, LANE_QUEUE)
    }

    /// Open the store with lane queues of `lane_queue` deliveries (see [`LANE_QUEUE`]).
    pub fn open_with(path: &Path, lane_queue: usize) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|err| StoreError::Open(format!("{}: {err}", dir.display())))?;
        }
        let writer_conn = open_connection(path)?;
        writer_conn.execute_batch(include_str!("schema.sql"))?;
        marks::migrate(&writer_conn)?;
        prune::migrate(&writer_conn)?;
        // Checkpoints run on their own thread (see `checkpoint`), never inside a commit.
        writer_conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        // Started over in place, the WAL file stays at its high-water mark, about the limit;
        // it is not truncated (`journal_size_limit` unset), which took the writer 50-170 ms
        // each time (see `checkpoint`). Closing the store truncates it.
        let limit = WalLimit::default();
        let restart = RestartWanted::default();
        let (tx, rx) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters::default());
        let link = WriterLink {
            commits: Box::new({
                let counters = Arc::clone(&counters);
                move || counters.commits.load(std::sync::atomic::Ordering::Relaxed)
            }),
            // Weak: the checkpoint thread must not keep the writer's queue open.
            start_over: Box::new({
                let writer = tx.downgrade();
                move || {
                    if let Some(writer) = writer.upgrade() {
                        let _ = writer.send(Command::StartOver);
                    }
                }
            }),
        };
        let checkpointer = Checkpointer::start(path, limit, restart.clone(), link)?;
        let reader = open_connection(path)?;
        let lanes = Arc::new(Lanes::default());
        let feed = Feed {
            lanes: Arc::clone(&lanes),
            capacity: lane_queue.max(1),
            counters: Arc::clone(&counters),
        };
        let thread = std::thread::Builder::new()
            .name("patchbay-store".into())
            .spawn(move || run_writer(writer_conn, rx, feed, restart))
            .map_err(|err| StoreError::Open(format!("cannot start the writer thread: {err}")))?;
        Ok(SqliteStore {
            writer: tx,
            reader: Arc::new(Mutex::new(reader)),
            lanes,
            thread: Arc::new(Mutex::new(Some(thread))),
            checkpointer: Arc::new(Mutex::new(Some(checkpointer))),
            counters,
        })
    }

    /// Up to `limit` deliveries into `room` after `after_seq`, in order.
    pub async fn pending(
        &self,
        room: &RoomKey,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<Pending>, StoreError> {
        let key = room.clone();
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT d.seq, d.route, d.not_before, e.json FROM deliveries d \
                 JOIN events e ON e.seq = d.event_seq \
                 WHERE d.account = ?1 AND d.room = ?2 AND d.seq > ?3 ORDER BY d.seq LIMIT ?4",
            )?;
            let rows = statement.query_map(
                params![key.account, key.room, after_seq, limit as i64],
                |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, Option<i64>>(2)?,
                        row.get::<_, String>(3)?,
                    ))
                },
            )?;
            let mut out = Vec::new();
            for row in rows {
                let (seq, route, not_before, json) = row?;
                out.push(Pending {
                    seq,
                    room: key.clone(),
                    route,
                    not_before: not_before.map(Timestamp),
                    event: Arc::new(serde_json::from_str(&json)?),
                });
            }
            Ok(out)
        })
        .await
    }

    /// A delivery succeeded: remove it from the outbox and map the network's id, if any.
    /// Recorded in order, but returns before it is durable (see [`RoomOutbox::complete`]).
    pub async fn complete(
        &self,
        pending: &Pending,
        remote_id: Option<String>,
    ) -> Result<(), StoreError> {
        let mapping =
            remote_id.map(|remote| (pending.event.id.to_string(), pending.room.clone(), remote));
        self.send(Command::Complete {
            seq: pending.seq,
            mapping,
        })
    }

    /// A delivery failed for good: move it to the dead-letter table.
    pub async fn dead_letter(&self, pending: &Pending, reason: &str) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::DeadLetter {
            pending: Box::new(pending.clone()),
            reason: reason.to_owned(),
            reply,
        })?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    fn send(&self, command: Command) -> Result<(), StoreError> {
        self.writer.send(command).map_err(|_| StoreError::Closed)
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.counters
            .reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let reader = Arc::clone(&self.reader);
        tokio::task::spawn_blocking(move || {
            let conn = lock(&reader);
            f(&conn)
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }
}

/// Whether the store has the index `name`: how the one-time migrations (`marks`, `prune`) tell
/// a store made by an older version.
fn has_index(conn: &Connection, name: &str) -> Result<bool, rusqlite::Error> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?1)",
        params![name],
        |row| row.get(0),
    )
}

fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // In WAL mode, NORMAL keeps every commit across a process crash (what SIGKILL tests); only
    // a power cut can lose the last commits.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // The writer's hot path alone uses about a dozen statements (rusqlite keeps 16 by
    // default); a miss parses the SQL again.
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

#[async_trait]
impl Store for SqliteStore {
    async fn accept_many(&self, run: Vec<NewEvent>) -> Result<Vec<Accepted>, StoreError> {
        // Queued back to back, the run lands in one writer batch (one transaction) unless it
        // is longer than a batch; the writer keeps the queue's order.
        let mut answers = Vec::with_capacity(run.len());
        for NewEvent { event, deliveries } in run {
            let json = serde_json::to_string(&event)?;
            let (reply, answer) = oneshot::channel();
            self.send(Command::Accept {
                event: Box::new(event),
                json,
                deliveries,
                reply,
            })?;
            answers.push(answer);
        }
        let mut accepted = Vec::with_capacity(answers.len());
        for answer in answers {
            accepted.push(answer.await.map_err(|_| StoreError::Closed)??);
        }
        Ok(accepted)
    }

    async fn open_room(&self, room: &RoomKey) -> Result<Box<dyn RoomOutbox>, StoreError> {
        Ok(Box::new(SqliteRoom::open(self.clone(), room)))
    }

    async fn resolve(
        &self,
        room: &RoomKey,
        remote_id: &str,
    ) -> Result<Option<EventId>, StoreError> {
        let (account, room, remote_id) = (
            room.account.clone(),
            room.room.clone(),
            remote_id.to_owned(),
        );
        self.read(move |conn| {
            let id: Option<String> = conn
                .prepare_cached(
                    "SELECT event_id FROM message_map WHERE account = ?1 AND room = ?2 AND remote_id = ?3",
                )?
                .query_row(params![account, room, remote_id], |row| row.get(0))
                .optional()?;
            Ok(id.and_then(|id| id.parse().ok()))
        })
        .await
    }

    async fn native_id(&self, id: EventId, room: &RoomKey) -> Result<Option<String>, StoreError> {
        let (account, room) = (room.account.clone(), room.room.clone());
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT remote_id FROM message_map WHERE event_id = ?1 AND account = ?2 AND room = ?3 \
                     ORDER BY origin DESC LIMIT 1",
                )?
                .query_row(params![id.to_string(), account, room], |row| row.get(0))
                .optional()?)
        })
        .await
    }

    async fn quote(&self, id: EventId) -> Result<Option<Quote>, StoreError> {
        self.read(move |conn| {
            let json: Option<String> = conn
                .prepare_cached("SELECT json FROM events WHERE id = ?1")?
                .query_row(params![id.to_string()], |row| row.get(0))
                .optional()?;
            let Some(json) = json else { return Ok(None) };
            let event: Event = serde_json::from_str(&json)?;
            Ok(Some(Quote {
                author: event.author.name.clone(),
                text: event.kind.body().map(|b| b.to_plain()).unwrap_or_default(),
            }))
        })
        .await
    }

    async fn last_origin(&self, room: &RoomKey) -> Result<Option<Seen>, StoreError> {
        let room = room.clone();
        self.read(move |conn| Ok(marks::read(conn, &room)?)).await
    }

    async fn rooms_with_pending(&self) -> Result<Vec<RoomKey>, StoreError> {
        self.read(|conn| {
            let mut statement =
                conn.prepare_cached("SELECT DISTINCT account, room FROM deliveries")?;
            let rows = statement.query_map([], |row| {
                Ok(RoomKey::new(
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                ))
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn prune(&self, before: Timestamp) -> Result<usize, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Prune { before, reply })?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn room_depths(&self) -> Result<std::collections::BTreeMap<RoomKey, u64>, StoreError> {
        self.read(|conn| {
            let mut statement = conn.prepare_cached(
                "SELECT account, room, COUNT(*) FROM deliveries GROUP BY account, room",
            )?;
            let rows = statement.query_map([], |row| {
                Ok((
                    RoomKey::new(row.get::<_, String>(0)?, row.get::<_, String>(1)?),
                    row.get::<_, i64>(2)? as u64,
                ))
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    fn engine(&self) -> &'static str {
        "embedded"
    }

    async fn room_backlogs(&self) -> Result<Vec<RoomBacklog>, StoreError> {
        self.read(dead::backlogs).await
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
        self.read(move |conn| dead::list(conn, limit)).await
    }

    async fn retry_dead_letter(&self, id: u64) -> Result<bool, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::RetryDead { id, reply })?;
        Ok(answer.await.map_err(|_| StoreError::Closed)?? > 0)
    }

    async fn discard_dead_letter(&self, id: u64) -> Result<bool, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::DiscardDead { id, reply })?;
        Ok(answer.await.map_err(|_| StoreError::Closed)?? > 0)
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        use std::sync::atomic::Ordering::Relaxed;
        let (commits, reads) = (
            self.counters.commits.load(Relaxed),
            self.counters.reads.load(Relaxed),
        );
        self.read(move |conn| {
            let count = |sql: &str| -> Result<u64, rusqlite::Error> {
                conn.query_row(sql, [], |row| row.get::<_, i64>(0))
                    .map(|n| n as u64)
            };
            Ok(StoreStats {
                events: count("SELECT COUNT(*) FROM events")?,
                pending: count("SELECT COUNT(*) FROM deliveries")?,
                dead_letters: count("SELECT COUNT(*) FROM dead_letters")?,
                commits,
                reads,
            })
        })
        .await
    }

    /// Write out everything queued, checkpoint the WAL and stop the writer. Later writes fail
    /// with [`StoreError::Closed`].
    async fn close(&self) {
        let checkpointer = lock(&self.checkpointer).take();
        if let Some(mut checkpointer) = checkpointer {
            let _ = tokio::task::spawn_blocking(move || checkpointer.stop()).await;
        }
        let (reply, done) = oneshot::channel();
        if self.writer.send(Command::Close { reply }).is_ok() {
            let _ = done.await;
        }
        let handle = lock(&self.thread).take();
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
    }
}
