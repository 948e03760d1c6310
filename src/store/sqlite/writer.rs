//! The writer thread: every write to the embedded store, in group commits.
//!
//! Commands queue on one channel; the thread takes whatever has queued (up to [`MAX_BATCH`]),
//! runs it in one transaction, answers each command once that transaction has committed, and
//! hands what it committed to the open rooms' lanes ([`Feed`]).

use std::sync::Arc;

use patchbay_sdk::{Event, Timestamp};
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};

use super::checkpoint::RestartWanted;
use super::outbox::Lanes;
use super::{Counters, dead, marks};
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
