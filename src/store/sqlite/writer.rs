//! The writer thread: every write to the embedded store, in group commits.
//!
//! Commands queue on one channel; the thread takes whatever has queued (up to [`MAX_BATCH`]),
//! runs it in one transaction, answers each command once that transaction has committed, and
//! hands what it committed to the open rooms' lanes ([`Feed`]).

use std::sync::Arc;

use patchbay_sdk::{Event, Timestamp};
use rusqlite::{Connection, params};
use tokio::sync::{mpsc, oneshot};

use super::checkpoint::RestartWanted;
use super::outbox::Lanes;
use super::{Counters, dead, marks, prune};
use crate::router::RoomKey;
use crate::store::{Accepted, NewDelivery, Pending, StoreError};

/// The most commands one transaction takes.
const MAX_BATCH: usize = 4096;

/// What the store asks of the writer thread.
pub(super) enum Command {
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
    /// Write the start-over row, so that this commit, not an accept, starts the WAL over
    /// (see `checkpoint`).
    StartOver,
    /// Commit what came before, checkpoint, and stop.
    Close { reply: oneshot::Sender<()> },
}

fn now_ms() -> i64 {
    Timestamp::now().0
}

/// Where the writer hands what it committed: the open rooms' lane queues.
pub(super) struct Feed {
    pub(super) lanes: Arc<Lanes>,
    pub(super) capacity: usize,
    pub(super) counters: Arc<Counters>,
}

/// The writer thread: take what has queued, run it in one transaction, answer.
pub(super) fn run_writer(
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

/// What one command came to inside the batch's transaction; answered once it committed.
enum Outcome {
    /// The deliveries' seqs, or `None` for a duplicate.
    Accept(Result<Option<Vec<i64>>, StoreError>),
    Unit(Result<(), StoreError>),
    Count(Result<usize, StoreError>),
    Retried(Result<Option<Pending>, StoreError>),
    /// Nothing to answer (a completion, the close).
    Nothing,
}

/// Why a batch's transaction did not commit.
enum Abort {
    /// An accept failed in a batch run without savepoints: run it again with them.
    AcceptFailed,
    Sql(rusqlite::Error),
}

impl From<rusqlite::Error> for Abort {
    fn from(err: rusqlite::Error) -> Self {
        Abort::Sql(err)
    }
}

/// Run one batch; returns true when the batch asked the writer to stop.
///
/// It runs first without a savepoint per accept: a savepoint makes SQLite copy every page the
/// accept changes, already changed earlier in the transaction, into a sub-journal (a tenth of
/// the writer thread's time in a profile with one busy room). An accept that fails then undoes
/// the whole transaction, and the batch runs again with one savepoint per accept, so that only
/// the failing accept is refused.
fn write_batch(conn: &mut Connection, batch: &mut Vec<Command>, feed: &Feed) -> bool {
    let closing = batch.iter().any(|c| matches!(c, Command::Close { .. }));
    let result = match transact(conn, batch, false) {
        Err(Abort::AcceptFailed) => transact(conn, batch, true),
        other => other,
    };
    let outcomes = match result {
        Ok(outcomes) => {
            // A start-over alone is not counted: the checkpoint thread must not copy its row
            // and ask for another.
            if !batch.iter().all(|c| matches!(c, Command::StartOver)) {
                feed.counters
                    .commits
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            outcomes
        }
        Err(abort) => {
            let err = match abort {
                Abort::Sql(err) => err.to_string(),
                Abort::AcceptFailed => "an accept failed".to_owned(),
            };
            tracing::error!("the store could not commit a batch: {err}");
            for command in batch.drain(..) {
                refuse(command, &err);
            }
            return closing;
        }
    };
    let mut committed = Vec::new();
    let mut answers = Vec::with_capacity(outcomes.len());
    for (command, outcome) in batch.drain(..).zip(outcomes) {
        match (command, outcome) {
            (
                Command::Accept {
                    event,
                    deliveries,
                    reply,
                    ..
                },
                Outcome::Accept(result),
            ) => {
                let answer = result.map(|seqs| match seqs {
                    Some(seqs) => {
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
                        Accepted::Recorded
                    }
                    None => Accepted::Duplicate,
                });
                answers.push(Answer::Accept(reply, answer));
            }
            (Command::DeadLetter { reply, .. }, Outcome::Unit(result)) => {
                answers.push(Answer::Unit(reply, result));
            }
            (
                Command::Prune { reply, .. } | Command::DiscardDead { reply, .. },
                Outcome::Count(result),
            ) => answers.push(Answer::Count(reply, result)),
            (Command::RetryDead { reply, .. }, Outcome::Retried(result)) => {
                let answer = result.map(|retried| match retried {
                    Some(pending) => {
                        committed.push(pending);
                        1
                    }
                    None => 0,
                });
                answers.push(Answer::Count(reply, answer));
            }
            (Command::Close { reply }, _) => answers.push(Answer::Closed(reply)),
            (Command::Complete { .. } | Command::StartOver, _) => {}
            (command, _) => refuse(command, "the writer lost track of a command"),
        }
    }
    if !committed.is_empty() {
        // In commit order, which is seq order: the lanes rely on it. A room nobody has open
        // reads its deliveries from the database when it is opened.
        feed.lanes.push(committed, feed.capacity);
    }
    for answer in answers {
        answer.send();
    }
    closing
}

/// Run the batch's commands in one transaction and commit it; one outcome per command, in
/// order. With `savepoints`, each accept runs in its own and a failing one is refused alone;
/// without, a failing accept aborts the transaction ([`Abort::AcceptFailed`]).
fn transact(
    conn: &mut Connection,
    batch: &[Command],
    savepoints: bool,
) -> Result<Vec<Outcome>, Abort> {
    let mut tx = Transaction::begin(conn)?;
    let mut marks = marks::Marks::default();
    let mut start_over = false;
    let mut outcomes = Vec::with_capacity(batch.len());
    for command in batch {
        let outcome = match command {
            Command::Accept {
                event,
                json,
                deliveries,
                ..
            } => {
                if savepoints {
                    run_cached(&tx, "SAVEPOINT accept")?;
                }
                let result = accept(&tx, event, json, deliveries);
                if savepoints {
                    if result.is_err() {
                        run_cached(&tx, "ROLLBACK TO accept")?;
                    }
                    run_cached(&tx, "RELEASE accept")?;
                } else if result.is_err() {
                    return Err(Abort::AcceptFailed);
                }
                if let Ok(Some(_)) = &result {
                    marks.note(event);
                }
                Outcome::Accept(result.map_err(StoreError::from))
            }
            Command::Complete { seq, mapping } => {
                if let Err(err) = complete(&tx, *seq, mapping.as_ref()) {
                    tracing::error!("cannot record delivery {seq} as done: {err}");
                }
                Outcome::Nothing
            }
            Command::DeadLetter {
                pending, reason, ..
            } => Outcome::Unit(dead_letter(&tx, pending, reason).map_err(StoreError::from)),
            Command::Prune { before, .. } => {
                Outcome::Count(prune::prune(&tx, *before).map_err(StoreError::from))
            }
            Command::RetryDead { id, .. } => Outcome::Retried(dead::retry(&mut tx, *id)),
            Command::DiscardDead { id, .. } => {
                Outcome::Count(dead::discard(&tx, *id).map(usize::from))
            }
            Command::StartOver => {
                start_over = true;
                Outcome::Nothing
            }
            Command::Close { .. } => Outcome::Nothing,
        };
        outcomes.push(outcome);
    }
    marks.write(&tx)?;
    if start_over {
        run_cached(
            &tx,
            "INSERT INTO wal_starts (id, count) VALUES (1, 1) \
             ON CONFLICT (id) DO UPDATE SET count = count + 1",
        )?;
    }
    tx.commit()?;
    Ok(outcomes)
}

/// A batch's write transaction. `BEGIN` and `COMMIT` go through the statement cache:
/// rusqlite's own `Transaction` has SQLite parse them for every batch, which was 7% of the
/// writer thread's time at chat rates (connectors/irc/BENCH.md, 2026-12-07). Dropped without
/// [`Transaction::commit`], it rolls back.
struct Transaction<'c> {
    conn: &'c mut Connection,
    open: bool,
}

impl<'c> Transaction<'c> {
    fn begin(conn: &'c mut Connection) -> Result<Self, rusqlite::Error> {
        run_cached(conn, "BEGIN")?;
        Ok(Transaction { conn, open: true })
    }

    fn commit(mut self) -> Result<(), rusqlite::Error> {
        run_cached(self.conn, "COMMIT")?;
        self.open = false;
        Ok(())
    }
}

impl std::ops::Deref for Transaction<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.conn
    }
}

impl std::ops::DerefMut for Transaction<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        self.conn
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        // A failed COMMIT leaves the transaction open, as does an error before it.
        if self.open
            && !self.conn.is_autocommit()
            && let Err(err) = self.conn.execute_batch("ROLLBACK")
        {
            tracing::error!("the store could not roll a batch back: {err}");
        }
    }
}

/// An answer to send once the batch's transaction has committed.
enum Answer {
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

impl Answer {
    fn send(self) {
        match self {
            Answer::Accept(tx, result) => {
                let _ = tx.send(result);
            }
            Answer::Unit(tx, result) => {
                let _ = tx.send(result);
            }
            Answer::Count(tx, result) => {
                let _ = tx.send(result);
            }
            Answer::Closed(tx) => {
                let _ = tx.send(());
            }
        }
    }
}

/// Answer a command of a batch that did not commit with the reason.
fn refuse(command: Command, err: &str) {
    let failed = || StoreError::Commit(err.to_owned());
    match command {
        Command::Accept { reply, .. } => {
            let _ = reply.send(Err(failed()));
        }
        Command::DeadLetter { reply, .. } => {
            let _ = reply.send(Err(failed()));
        }
        Command::Prune { reply, .. }
        | Command::RetryDead { reply, .. }
        | Command::DiscardDead { reply, .. } => {
            let _ = reply.send(Err(failed()));
        }
        Command::Close { reply } => {
            let _ = reply.send(());
        }
        Command::Complete { .. } | Command::StartOver => {}
    }
}

/// Run a statement without parameters or rows through the connection's statement cache:
/// each accept's savepoint is three such statements, and rusqlite's `Savepoint` parses its
/// SQL anew on every call (which showed in the writer thread's profile at one savepoint per
/// event).
fn run_cached(conn: &Connection, sql: &str) -> Result<(), rusqlite::Error> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

/// Record an event and its deliveries; returns the deliveries' seqs, or `None` for a duplicate.
fn accept(
    conn: &Connection,
    event: &Event,
    json: &str,
    deliveries: &[NewDelivery],
) -> Result<Option<Vec<i64>>, rusqlite::Error> {
    let origin = &event.origin;
    let id = event.id.to_string();
    // The map entry first: a network id already known makes the insert a no-op, which is the
    // duplicate check without a read of its own.
    if let Some(remote_id) = &origin.remote_id
        && !map_entry(
            conn,
            MapEntry::Origin,
            (&origin.account, &origin.room),
            remote_id,
            &id,
        )?
    {
        return Ok(None);
    }
    conn.prepare_cached(
        "INSERT INTO events (id, account, room, time, json) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![id, origin.account, origin.room, event.time.0, json])?;
    let event_seq = conn.last_insert_rowid();
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
    mapping: Option<&(String, RoomKey, String)>,
) -> Result<(), rusqlite::Error> {
    conn.prepare_cached("DELETE FROM deliveries WHERE seq = ?1")?
        .execute(params![seq])?;
    if let Some((event_id, room, remote_id)) = mapping {
        map_entry(
            conn,
            MapEntry::Delivered,
            (&room.account, &room.room),
            remote_id,
            event_id,
        )?;
    }
    Ok(())
}

/// Which side of a relay a message-id map entry records.
#[derive(Clone, Copy)]
enum MapEntry {
    /// The id on the network the event came from. One already there is the same network
    /// message again (a replayed history, a reconnect's overlap): left alone, and the accept
    /// is a duplicate.
    Origin,
    /// The id a delivery was given. Replaces an entry already there, as a completion always
    /// has: the newest record of what that id stands for wins.
    Delivered,
}

/// Write a map entry; returns whether it was written (`Origin` entries only may not be).
fn map_entry(
    conn: &Connection,
    entry: MapEntry,
    (account, room): (&str, &str),
    remote_id: &str,
    event_id: &str,
) -> Result<bool, rusqlite::Error> {
    let sql = match entry {
        MapEntry::Origin => {
            "INSERT OR IGNORE INTO message_map (account, room, remote_id, event_id, origin, time) \
             VALUES (?1, ?2, ?3, ?4, 1, ?5)"
        }
        MapEntry::Delivered => {
            "INSERT OR REPLACE INTO message_map (account, room, remote_id, event_id, origin, time) \
             VALUES (?1, ?2, ?3, ?4, 0, ?5)"
        }
    };
    let written =
        conn.prepare_cached(sql)?
            .execute(params![account, room, remote_id, event_id, now_ms()])?;
    Ok(written > 0)
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
