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
use patchbay_sdk::{Event, EventId, Quote, Seen, Timestamp};
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};

mod checkpoint;
mod dead;
mod marks;
mod outbox;

use super::{
    Accepted, DeadLetter, NewDelivery, NewEvent, Pending, RoomBacklog, RoomOutbox, Store,
    StoreError, StoreStats,
};
use crate::router::RoomKey;
use checkpoint::{Checkpointer, RestartWanted, WalLimit};
use outbox::{Lanes, SqliteRoom};

/// The most commands one transaction takes.
const MAX_BATCH: usize = 4096;

enum Command {
    Accept {
        event: Box<Event>,
        json: String,
        deliveries: Vec<NewDelivery>,
        reply: oneshot::Sender<Result<Accepted, StoreError>>,
    },
    Complete {
        seq: i64,
        mapping: Option<(String, RoomKey, String)>,
    },
    DeadLetter {
        pending: Box<Pending>,
        reason: String,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    Prune {
        before: Timestamp,
        reply: oneshot::Sender<Result<usize, StoreError>>,
    },
    /// Dead letter `id` back into its room's outbox (see [`dead::retry`]); answers 1 if done.
    RetryDead {
        id: u64,
        reply: oneshot::Sender<Result<usize, StoreError>>,
    },
    DiscardDead {
        id: u64,
        reply: oneshot::Sender<Result<usize, StoreError>>,
    },
    /// Commit what came before, checkpoint, and stop.
    Close { reply: oneshot::Sender<()> },
}

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
        // Checkpoints run on their own thread (see `checkpoint`), never inside a commit.
        writer_conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let limit = WalLimit::default();
        // The commit after the WAL starts over truncates it to the limit.
        writer_conn.pragma_update(None, "journal_size_limit", limit.bytes())?;
        let restart = RestartWanted::default();
        let checkpointer = Checkpointer::start(path, limit, restart.clone())?;
        let reader = open_connection(path)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let lanes = Arc::new(Lanes::default());
        let counters = Arc::new(Counters::default());
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
            let conn = reader.lock().unwrap_or_else(|p| p.into_inner());
            f(&conn)
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }
}

fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // In WAL mode, NORMAL keeps every commit across a process crash (what SIGKILL tests); only
    // a power cut can lose the last commits.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

fn now_ms() -> i64 {
    Timestamp::now().0
}

/// Where the writer hands what it committed: the open rooms' lane queues.
struct Feed {
    lanes: Arc<Lanes>,
    capacity: usize,
    counters: Arc<Counters>,
}

/// The writer thread: take what has queued, run it in one transaction, answer.
fn run_writer(
    mut conn: Connection,
    mut rx: mpsc::UnboundedReceiver<Command>,
    feed: Feed,
    restart: RestartWanted,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        // The hop's steps at trace level, as in intake and the lanes (`patchbay::hop`).
        tracing::trace!(target: "patchbay::hop", "writer woke");
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(command) => batch.push(command),
                Err(_) => break,
            }
        }
        let closing = write_batch(&mut conn, &mut batch, &feed);
        tracing::trace!(target: "patchbay::hop", "writer committed");
        if closing {
            break;
        }
        restart.serve(&conn);
    }
    if let Err(err) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
        tracing::warn!("store checkpoint at close failed: {err}");
    }
}

/// An answer to send once the batch's transaction has committed.
enum Reply {
    Accept(
        oneshot::Sender<Result<Accepted, StoreError>>,
        Result<Accepted, StoreError>,
    ),
    Unit(
        oneshot::Sender<Result<(), StoreError>>,
        Result<(), StoreError>,
    ),
    Count(
        oneshot::Sender<Result<usize, StoreError>>,
        Result<usize, StoreError>,
    ),
    Closed(oneshot::Sender<()>),
}

/// Run one batch; returns true when the batch asked the writer to stop.
fn write_batch(conn: &mut Connection, batch: &mut Vec<Command>, feed: &Feed) -> bool {
    let mut replies = Vec::with_capacity(batch.len());
    let mut committed = Vec::new();
    let mut marks = marks::Marks::default();
    let mut closing = false;
    let result = (|| -> Result<(), rusqlite::Error> {
        let mut tx = conn.transaction()?;
        for command in batch.drain(..) {
            match command {
                Command::Accept {
                    event,
                    json,
                    deliveries,
                    reply,
                } => {
                    let mut sp = tx.savepoint()?;
                    let result = accept(&sp, &event, &json, &deliveries);
                    let result = match result {
                        Ok(Some(seqs)) => {
                            sp.commit()?;
                            marks.note(&event);
                            let event: Arc<Event> = Arc::from(event);
                            for (seq, delivery) in seqs.into_iter().zip(deliveries) {
                                committed.push(Pending {
                                    seq,
                                    room: delivery.room,
                                    route: delivery.route,
                                    not_before: delivery.not_before,
                                    event: Arc::clone(&event),
                                });
                            }
                            Ok(Accepted::Recorded)
                        }
                        Ok(None) => {
                            sp.rollback()?;
                            Ok(Accepted::Duplicate)
                        }
                        Err(err) => {
                            sp.rollback()?;
                            Err(StoreError::from(err))
                        }
                    };
                    replies.push(Reply::Accept(reply, result));
                }
                Command::Complete { seq, mapping } => {
                    if let Err(err) = complete(&tx, seq, mapping) {
                        tracing::error!("cannot record delivery {seq} as done: {err}");
                    }
                }
                Command::DeadLetter {
                    pending,
                    reason,
                    reply,
                } => {
                    let result = dead_letter(&tx, &pending, &reason).map_err(StoreError::from);
                    replies.push(Reply::Unit(reply, result));
                }
                Command::Prune { before, reply } => {
                    let result = prune(&tx, before).map_err(StoreError::from);
                    replies.push(Reply::Count(reply, result));
                }
                Command::RetryDead { id, reply } => {
                    let result = dead::retry(&mut tx, id).map(|retried| match retried {
                        Some(pending) => {
                            committed.push(pending);
                            1
                        }
                        None => 0,
                    });
                    replies.push(Reply::Count(reply, result));
                }
                Command::DiscardDead { id, reply } => {
                    let result = dead::discard(&tx, id).map(usize::from);
                    replies.push(Reply::Count(reply, result));
                }
                Command::Close { reply } => {
                    closing = true;
                    replies.push(Reply::Closed(reply));
                }
            }
        }
        marks.write(&tx)?;
        tx.commit()
    })();
    let failure = result.err().map(|err| err.to_string());
    if let Some(err) = &failure {
        tracing::error!("the store could not commit a batch: {err}");
    } else {
        feed.counters
            .commits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    if failure.is_none() && !committed.is_empty() {
        // In commit order, which is seq order: the lanes rely on it. A room nobody has open
        // reads its deliveries from the database when it is opened.
        feed.lanes.push(committed, feed.capacity);
    }
    let failed = || StoreError::Commit(failure.clone().unwrap_or_default());
    for reply in replies {
        match reply {
            Reply::Accept(tx, result) => {
                let _ = tx.send(if failure.is_some() {
                    Err(failed())
                } else {
                    result
                });
            }
            Reply::Unit(tx, result) => {
                let _ = tx.send(if failure.is_some() {
                    Err(failed())
                } else {
                    result
                });
            }
            Reply::Count(tx, result) => {
                let _ = tx.send(if failure.is_some() {
                    Err(failed())
                } else {
                    result
                });
            }
            Reply::Closed(tx) => {
                let _ = tx.send(());
            }
        }
    }
    closing
}

/// Record an event and its deliveries; returns the deliveries' seqs, or `None` for a duplicate.
fn accept(
    conn: &Connection,
    event: &Event,
    json: &str,
    deliveries: &[NewDelivery],
) -> Result<Option<Vec<i64>>, rusqlite::Error> {
    let origin = &event.origin;
    if let Some(remote_id) = &origin.remote_id {
        let known: Option<i64> = conn
            .prepare_cached(
                "SELECT 1 FROM message_map WHERE account = ?1 AND room = ?2 AND remote_id = ?3",
            )?
            .query_row(params![origin.account, origin.room, remote_id], |row| {
                row.get(0)
            })
            .optional()?;
        if known.is_some() {
            return Ok(None);
        }
    }
    let id = event.id.to_string();
    conn.prepare_cached(
        "INSERT INTO events (id, account, room, time, json) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![id, origin.account, origin.room, event.time.0, json])?;
    let event_seq = conn.last_insert_rowid();
    if let Some(remote_id) = &origin.remote_id {
        conn.prepare_cached(
            "INSERT INTO message_map (account, room, remote_id, event_id, origin, time) \
             VALUES (?1, ?2, ?3, ?4, 1, ?5)",
        )?
        .execute(params![
            origin.account,
            origin.room,
            remote_id,
            id,
            now_ms()
        ])?;
    }
    let mut insert = conn.prepare_cached(
        "INSERT INTO deliveries (event_seq, account, room, route, not_before) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    let mut seqs = Vec::with_capacity(deliveries.len());
    for delivery in deliveries {
        insert.execute(params![
            event_seq,
            delivery.room.account,
            delivery.room.room,
            delivery.route,
            delivery.not_before.map(|t| t.0)
        ])?;
        seqs.push(conn.last_insert_rowid());
    }
    Ok(Some(seqs))
}

fn complete(
    conn: &Connection,
    seq: i64,
    mapping: Option<(String, RoomKey, String)>,
) -> Result<(), rusqlite::Error> {
    conn.prepare_cached("DELETE FROM deliveries WHERE seq = ?1")?
        .execute(params![seq])?;
    if let Some((event_id, room, remote_id)) = mapping {
        conn.prepare_cached(
            "INSERT OR REPLACE INTO message_map (account, room, remote_id, event_id, origin, time) \
             VALUES (?1, ?2, ?3, ?4, 0, ?5)",
        )?
        .execute(params![
            room.account,
            room.room,
            remote_id,
            event_id,
            now_ms()
        ])?;
    }
    Ok(())
}

fn dead_letter(conn: &Connection, pending: &Pending, reason: &str) -> Result<(), rusqlite::Error> {
    let json = serde_json::to_string(&*pending.event).unwrap_or_default();
    conn.prepare_cached(
        "INSERT INTO dead_letters (event_id, account, room, route, reason, time, json) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        pending.event.id.to_string(),
        pending.room.account,
        pending.room.room,
        pending.route,
        reason,
        now_ms(),
        json
    ])?;
    conn.prepare_cached("DELETE FROM deliveries WHERE seq = ?1")?
        .execute(params![pending.seq])?;
    Ok(())
}

fn prune(conn: &Connection, before: Timestamp) -> Result<usize, rusqlite::Error> {
    conn.prepare_cached("DELETE FROM message_map WHERE time < ?1")?
        .execute(params![before.0])?;
    marks::prune(conn, before)?;
    // `NOT IN` reads the outbox once into a list; the `NOT EXISTS` it replaces scanned the
    // whole outbox for every old event (28.6 s against 0.02 s for 20,000 old events beside
    // 20,000 waiting deliveries, the writer thread blocked all along).
    conn.prepare_cached(
        "DELETE FROM events WHERE time < ?1 \
         AND seq NOT IN (SELECT event_seq FROM deliveries)",
    )?
    .execute(params![before.0])
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
        let checkpointer = self
            .checkpointer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(mut checkpointer) = checkpointer {
            let _ = tokio::task::spawn_blocking(move || checkpointer.stop()).await;
        }
        let (reply, done) = oneshot::channel();
        if self.writer.send(Command::Close { reply }).is_ok() {
            let _ = done.await;
        }
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
    }
}
