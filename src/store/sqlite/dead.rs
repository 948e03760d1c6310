//! The embedded store's dead letters and backlog: reading them, and the writer's side of
//! retry and discard.
//!
//! A retry runs on the writer thread in a savepoint of its own: the delivery goes back into
//! the outbox (after everything already waiting in its room) and the dead letter goes, both or
//! neither. The new delivery is handed to its room's lane like any committed one. An event
//! pruned since it died is recorded again from the copy the dead letter keeps.

use std::sync::Arc;

use patchbay_sdk::{Event, Timestamp};
use rusqlite::{Connection, OptionalExtension, params};

use crate::router::RoomKey;
use crate::store::{DeadLetter, Pending, RoomBacklog, StoreError};

/// Up to `limit` dead letters, oldest first. A row whose event is unreadable is listed with
/// an empty event rather than hiding the others.
pub(super) fn list(conn: &Connection, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT seq, account, room, route, reason, time, json FROM dead_letters \
         ORDER BY seq LIMIT ?1",
    )?;
    let rows = statement.query_map(params![limit as i64], |row| {
        Ok((
            row.get::<_, i64>(0)?,
            RoomKey::new(row.get::<_, String>(1)?, row.get::<_, String>(2)?),
            row.get::<_, String>(3)?,
            row.get::<_, String>(4)?,
            row.get::<_, i64>(5)?,
            row.get::<_, String>(6)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, room, route, reason, time, json) = row?;
        let event: Event = match serde_json::from_str(&json) {
            Ok(event) => event,
            Err(err) => {
                tracing::warn!(
                    dead_letter = seq,
                    "a dead letter's event is unreadable (written by a newer patchbay?): {err}; it stays in the store, unlisted"
                );
                continue;
            }
        };
        out.push(DeadLetter {
            id: seq as u64,
            room,
            route,
            reason,
            failed_at: Timestamp(time),
            event,
        });
    }
    Ok(out)
}

/// Waiting deliveries per room, with the time of the oldest one's event.
pub(super) fn backlogs(conn: &Connection) -> Result<Vec<RoomBacklog>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT d.account, d.room, COUNT(*), MIN(e.time) FROM deliveries d \
         JOIN events e ON e.seq = d.event_seq GROUP BY d.account, d.room ORDER BY d.account, d.room",
    )?;
    let rows = statement.query_map([], |row| {
        Ok(RoomBacklog {
            room: RoomKey::new(row.get::<_, String>(0)?, row.get::<_, String>(1)?),
            depth: row.get::<_, i64>(2)? as u64,
            oldest: row.get::<_, Option<i64>>(3)?.map(Timestamp),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Move dead letter `id` back into the outbox; the new delivery, or `None` if there is no
/// such dead letter. Runs in a savepoint: on an error nothing changed.
pub(super) fn retry(
    conn: &mut rusqlite::Connection,
    id: u64,
) -> Result<Option<Pending>, StoreError> {
    let sp = conn.savepoint()?;
    let row: Option<(String, String, String, String, String)> = sp
        .prepare_cached(
            "SELECT event_id, account, room, route, json FROM dead_letters WHERE seq = ?1",
        )?
        .query_row(params![id as i64], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
            ))
        })
        .optional()?;
    let Some((event_id, account, room, route, json)) = row else {
        return Ok(None);
    };
    let event: Event = serde_json::from_str(&json)?;
    let known: Option<i64> = sp
        .prepare_cached("SELECT seq FROM events WHERE id = ?1")?
        .query_row(params![event_id], |row| row.get(0))
        .optional()?;
    let event_seq = match known {
        Some(seq) => seq,
        None => {
            sp.prepare_cached(
                "INSERT INTO events (id, account, room, time, json) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                event_id,
                event.origin.account,
                event.origin.room,
                event.time.0,
                json
            ])?;
            sp.last_insert_rowid()
        }
    };
    sp.prepare_cached(
        "INSERT INTO deliveries (event_seq, account, room, route, not_before) \
         VALUES (?1, ?2, ?3, ?4, NULL)",
    )?
    .execute(params![event_seq, account, room, route])?;
    let seq = sp.last_insert_rowid();
    sp.prepare_cached("DELETE FROM dead_letters WHERE seq = ?1")?
        .execute(params![id as i64])?;
    sp.commit()?;
    Ok(Some(Pending {
        seq,
        room: RoomKey::new(account, room),
        route,
        not_before: None,
        event: Arc::new(event),
    }))
}

/// Delete dead letter `id`; whether there was one.
pub(super) fn discard(conn: &Connection, id: u64) -> Result<bool, StoreError> {
    let deleted = conn
        .prepare_cached("DELETE FROM dead_letters WHERE seq = ?1")?
        .execute(params![id as i64])?;
    Ok(deleted > 0)
}
