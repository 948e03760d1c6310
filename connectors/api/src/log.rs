//! The durable log of each API room: what was delivered to it and what clients sent from it,
//! in `api.db` in the account's data directory. Entry ids increase; a client that reconnects
//! asks for what came after the last id it saw. Every append is also broadcast to the live
//! streams, under the same lock, so the stream's order is the log's order.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::broadcast;

use crate::wire::Entry;
use patchbay_sdk::sync::lock;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("the API log failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("an API log entry is not readable: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the API log's worker stopped")]
    Join,
}

/// The log and its live feed.
pub struct Log {
    db: Mutex<Connection>,
    live: broadcast::Sender<Arc<Entry>>,
}

impl Log {
    /// Open (or create) the log at `path`.
    pub fn open(path: &Path, live: broadcast::Sender<Arc<Entry>>) -> Result<Log, LogError> {
        let db = Connection::open(path)?;
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS log (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 room TEXT NOT NULL,
                 direction TEXT NOT NULL,
                 event_id TEXT NOT NULL,
                 at INTEGER NOT NULL,
                 entry TEXT NOT NULL,
                 UNIQUE (room, direction, event_id)
             );
             CREATE INDEX IF NOT EXISTS log_room ON log (room, id);",
        )?;
        Ok(Log {
            db: Mutex::new(db),
            live,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        lock(&self.db)
    }

    /// Record `entry` (its `id` is assigned here) and broadcast it. An entry for the same
    /// event, room and direction is recorded once: a redelivery returns the first one's id.
    pub fn append(&self, mut entry: Entry) -> Result<i64, LogError> {
        let db = self.lock();
        let event_id = entry.event.id.to_string();
        let existing: Option<i64> = db
            .query_row(
                "SELECT id FROM log WHERE room = ?1 AND direction = ?2 AND event_id = ?3",
                params![entry.room, entry.direction.as_str(), event_id],
                |row| row.get(0),
            )
            .optional()?;
        if let Some(id) = existing {
            return Ok(id);
        }
        entry.id = 0;
        let json = serde_json::to_string(&entry)?;
        db.execute(
            "INSERT INTO log (room, direction, event_id, at, entry) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                entry.room,
                entry.direction.as_str(),
                event_id,
                now_ms(),
                json
            ],
        )?;
        entry.id = db.last_insert_rowid();
        // No receivers is fine: nobody is streaming.
        let _ = self.live.send(Arc::new(entry.clone()));
        Ok(entry.id)
    }

    /// Up to `limit` entries after `after`, of `room` or of every room.
    pub fn after(
        &self,
        room: Option<&str>,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Entry>, LogError> {
        let db = self.lock();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut rows = Vec::new();
        let mut push = |row: &rusqlite::Row<'_>| -> rusqlite::Result<()> {
            let id: i64 = row.get(0)?;
            let json: String = row.get(1)?;
            rows.push((id, json));
            Ok(())
        };
        match room {
            Some(room) => {
                let mut statement = db.prepare_cached(
                    "SELECT id, entry FROM log WHERE room = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
                )?;
                let mut query = statement.query(params![room, after, limit])?;
                while let Some(row) = query.next()? {
                    push(row)?;
                }
            }
            None => {
                let mut statement = db.prepare_cached(
                    "SELECT id, entry FROM log WHERE id > ?1 ORDER BY id LIMIT ?2",
                )?;
                let mut query = statement.query(params![after, limit])?;
                while let Some(row) = query.next()? {
                    push(row)?;
                }
            }
        }
        drop(db);
        decode(rows)
    }

    /// The newest `count` entries of `room`, oldest first: where a client without a cursor
    /// starts.
    pub fn last(&self, room: &str, count: usize) -> Result<Vec<Entry>, LogError> {
        let db = self.lock();
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        let mut statement = db.prepare_cached(
            "SELECT id, entry FROM log WHERE room = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let mut rows = statement
            .query_map(params![room, count], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<Result<Vec<(i64, String)>, _>>()?;
        drop(statement);
        drop(db);
        rows.reverse();
        decode(rows)
    }

    /// The last entry id (0 for an empty log).
    pub fn last_id(&self) -> Result<i64, LogError> {
        let db = self.lock();
        Ok(db.query_row("SELECT COALESCE(MAX(id), 0) FROM log", [], |row| row.get(0))?)
    }

    /// Forget entries older than `keep`.
    pub fn prune(&self, keep: Duration) -> Result<usize, LogError> {
        let cutoff = now_ms() - i64::try_from(keep.as_millis()).unwrap_or(i64::MAX / 2);
        let db = self.lock();
        Ok(db.execute("DELETE FROM log WHERE at <= ?1", params![cutoff])?)
    }
}

fn decode(rows: Vec<(i64, String)>) -> Result<Vec<Entry>, LogError> {
    rows.into_iter()
        .map(|(id, json)| {
            let mut entry: Entry = serde_json::from_str(&json)?;
            entry.id = id;
            Ok(entry)
        })
        .collect()
}

/// Run `f` on the log off the async threads.
pub async fn blocking<T: Send + 'static>(
    log: &Arc<Log>,
    f: impl FnOnce(&Log) -> Result<T, LogError> + Send + 'static,
) -> Result<T, LogError> {
    let log = Arc::clone(log);
    tokio::task::spawn_blocking(move || f(&log))
        .await
        .map_err(|_| LogError::Join)?
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Direction;
    use patchbay_sdk::{Author, Event, Inbound, RichText};

    fn entry(room: &str, text: &str) -> Entry {
        let inbound = Inbound::message(room, Author::named("a"), RichText::plain(text));
        Entry {
            id: 0,
            room: room.into(),
            direction: Direction::Delivered,
            nick: "a".into(),
            route: "r".into(),
            event: Event::from_inbound("irc.x", inbound),
        }
    }

    /// The ids of what a read returned, in its order.
    fn ids(read: Result<Vec<Entry>, LogError>) -> Vec<i64> {
        read.expect("read").iter().map(|e| e.id).collect()
    }

    #[test]
    fn appends_once_reads_after_and_survives_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("api.db");
        let (tx, mut rx) = broadcast::channel(16);
        let log = Log::open(&path, tx.clone()).expect("open");
        let first = entry("a", "one");
        let id1 = log.append(first.clone()).expect("append");
        assert_eq!(
            log.append(first).expect("again"),
            id1,
            "a redelivery is one entry"
        );
        let id2 = log.append(entry("b", "two")).expect("append");
        let id3 = log.append(entry("a", "three")).expect("append");
        assert!(id1 < id2 && id2 < id3);
        assert_eq!(rx.try_recv().expect("live").id, id1);
        assert_eq!(rx.try_recv().expect("live").id, id2);
        drop(log);
        let log = Log::open(&path, tx).expect("reopen");
        assert_eq!(ids(log.after(Some("a"), 0, 10)), [id1, id3]);
        let all = log.after(None, id1, 10).expect("read");
        assert_eq!(all.len(), 2);
        assert_eq!(
            all[0].event.kind.body().map(RichText::to_plain).as_deref(),
            Some("two")
        );
        assert_eq!(log.last_id().expect("last"), id3);
        assert_eq!(ids(log.last("a", 1)), [id3]);
        assert_eq!(ids(log.last("a", 5)), [id1, id3]);
        assert_eq!(log.prune(Duration::from_secs(3600)).expect("prune"), 0);
        assert_eq!(log.prune(Duration::ZERO).expect("prune"), 3);
    }
}
