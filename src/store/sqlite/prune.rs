//! Ageing out what `[general] retention` no longer keeps: delivered events, their entries in
//! the message-id map, and the rooms' newest-event marks.
//!
//! Neither `events` nor `message_map` has an index on time. Such an index is written by every
//! accept (and the map's again by every delivery that records a network id) for a query that
//! runs once an hour: two of the nine B-tree pages a one-event accept used to dirty. Instead:
//! - events are walked in the order they were accepted (`seq`), which is the order of their
//!   times but for an event a connector hands over late (a history replay keeps the server's
//!   time). The walk stops at the first event the retention still keeps, so such an event
//!   waits for those accepted before it: kept longer, never pruned early;
//! - a map entry goes with its event, found through the map's by-event index. An event still
//!   waiting for a delivery keeps its entries, as it keeps itself.
//!
//! Stores from before 2026-12-08 had both indexes; [`migrate`] drops them once.

use patchbay_sdk::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};

use super::{has_index, marks};

/// Delete what is older than `before` and no longer waited for; returns the events deleted.
pub(super) fn prune(conn: &Connection, before: Timestamp) -> Result<usize, rusqlite::Error> {
    // Reads the rows to delete and one more: the scan is in rowid order and stops at the
    // first match.
    let kept_from: Option<i64> = conn
        .prepare_cached("SELECT seq FROM events WHERE time >= ?1 ORDER BY seq LIMIT 1")?
        .query_row(params![before.0], |row| row.get(0))
        .optional()?;
    let end = kept_from.unwrap_or(i64::MAX);
    // `NOT IN` reads the outbox once into a list; a `NOT EXISTS` scanned the whole outbox for
    // every old event (28.6 s against 0.02 s for 20,000 old events beside 20,000 waiting
    // deliveries, the writer thread blocked all along).
    conn.prepare_cached(
        "DELETE FROM message_map WHERE event_id IN \
         (SELECT id FROM events WHERE seq < ?1 AND seq NOT IN (SELECT event_seq FROM deliveries))",
    )?
    .execute(params![end])?;
    marks::prune(conn, before)?;
    conn.prepare_cached(
        "DELETE FROM events WHERE seq < ?1 AND seq NOT IN (SELECT event_seq FROM deliveries)",
    )?
    .execute(params![end])
}

/// A store with the time indexes: drop them, and with them the map entries whose event is
/// already gone (the old prune aged the map by when an entry was written, the events by their
/// own time, so some entries outlived their event; nothing would prune them now). Runs once.
pub(super) fn migrate(conn: &Connection) -> Result<(), rusqlite::Error> {
    if !has_index(conn, "events_by_time")? && !has_index(conn, "message_map_by_time")? {
        return Ok(());
    }
    conn.execute_batch(
        "BEGIN IMMEDIATE;
         DELETE FROM message_map WHERE event_id NOT IN (SELECT id FROM events);
         DROP INDEX IF EXISTS events_by_time;
         DROP INDEX IF EXISTS message_map_by_time;
         COMMIT;",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Connection {
        let conn = Connection::open_in_memory().expect("open");
        conn.execute_batch(include_str!("schema.sql"))
            .expect("schema");
        conn
    }

    fn insert_event(conn: &Connection, id: &str, time: i64) -> i64 {
        conn.execute(
            "INSERT INTO events (id, account, room, time, json) VALUES (?1, 'irc.a', '#x', ?2, '{}')",
            params![id, time],
        )
        .expect("event");
        conn.last_insert_rowid()
    }

    fn map(conn: &Connection, remote_id: &str, event_id: &str) {
        conn.execute(
            "INSERT INTO message_map (account, room, remote_id, event_id, origin, time) \
             VALUES ('irc.a', '#x', ?1, ?2, 1, 0)",
            params![remote_id, event_id],
        )
        .expect("map");
    }

    /// One text column of a query's rows, in its order.
    fn texts(conn: &Connection, sql: &str) -> Vec<String> {
        let mut stmt = conn.prepare(sql).expect("prepare");
        stmt.query_map([], |row| row.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    }

    fn mapped(conn: &Connection) -> Vec<String> {
        texts(conn, "SELECT remote_id FROM message_map ORDER BY remote_id")
    }

    fn events(conn: &Connection) -> Vec<String> {
        texts(conn, "SELECT id FROM events ORDER BY seq")
    }

    /// Old events go with their map entries; one still waiting for a delivery keeps both; the
    /// first event inside the retention ends the walk, and an old one accepted after it (a
    /// replayed history) waits for it.
    #[test]
    fn old_events_go_with_their_map_entries_in_accept_order() {
        let conn = store();
        insert_event(&conn, "old", 10);
        map(&conn, "r-old", "old");
        let waiting = insert_event(&conn, "waiting", 20);
        map(&conn, "r-waiting", "waiting");
        conn.execute(
            "INSERT INTO deliveries (event_seq, account, room, route) VALUES (?1, 'irc.b', '#y', 'r')",
            params![waiting],
        )
        .expect("delivery");
        insert_event(&conn, "young", 100);
        map(&conn, "r-young", "young");
        insert_event(&conn, "replayed", 5);
        map(&conn, "r-replayed", "replayed");

        assert_eq!(prune(&conn, Timestamp(50)).expect("prune"), 1);
        assert_eq!(events(&conn), ["waiting", "young", "replayed"]);
        assert_eq!(mapped(&conn), ["r-replayed", "r-waiting", "r-young"]);

        // Once the young event is old too, the replayed one goes with it.
        conn.execute("DELETE FROM deliveries", [])
            .expect("delivered");
        assert_eq!(prune(&conn, Timestamp(200)).expect("prune"), 3);
        assert!(events(&conn).is_empty());
        assert!(mapped(&conn).is_empty());
    }

    /// A store made with the time indexes opens without them and without the map entries that
    /// had outlived their event; a second open changes nothing.
    #[test]
    fn an_old_store_loses_its_time_indexes_and_orphaned_map_entries() {
        let conn = store();
        conn.execute_batch(
            "CREATE INDEX events_by_time ON events (time);
             CREATE INDEX message_map_by_time ON message_map (time);",
        )
        .expect("old indexes");
        insert_event(&conn, "kept", 10);
        map(&conn, "r-kept", "kept");
        map(&conn, "r-orphan", "pruned-before");

        migrate(&conn).expect("migrate");
        let indexes: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name LIKE '%_by_time'",
                [],
                |row| row.get(0),
            )
            .expect("count");
        assert_eq!(indexes, 0);
        assert_eq!(mapped(&conn), ["r-kept"]);

        map(&conn, "r-later", "not-yet-accepted");
        migrate(&conn).expect("a second open changes nothing");
        assert_eq!(mapped(&conn), ["r-kept", "r-later"]);
    }
}
