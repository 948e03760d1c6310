//! The newest event accepted from each room: where a connector without a history mark of its
//! own starts its catch-up ([`Store::last_origin`](crate::store::Store::last_origin)).
//!
//! One row per room in `room_marks`, written once per commit for each room the commit accepted
//! from. Stores before 2026-12-04 found it through an index on `events (account, room, seq)`
//! instead; with many rooms that index cost every commit one dirty page per room it touched
//! (the WAL grew by about 3 KB per event at 100 rooms), so it is gone: [`migrate`] fills the
//! marks from it once and drops it.

use std::collections::HashMap;

use patchbay_sdk::{Event, Seen, Timestamp};
use rusqlite::{Connection, OptionalExtension, params};

use crate::router::RoomKey;

/// The marks one commit writes: the last event accepted per origin room wins.
#[derive(Default)]
pub(super) struct Marks(HashMap<RoomKey, Seen>);

impl Marks {
    pub(super) fn note(&mut self, event: &Event) {
        let origin = &event.origin;
        self.0.insert(
            RoomKey::new(&origin.account, &origin.room),
            Seen {
                time: event.time,
                remote_id: origin.remote_id.clone(),
            },
        );
    }

    /// Write the marks inside the commit's transaction.
    pub(super) fn write(self, conn: &Connection) -> Result<(), rusqlite::Error> {
        let mut upsert = conn.prepare_cached(
            "INSERT OR REPLACE INTO room_marks (account, room, time, remote_id) \
             VALUES (?1, ?2, ?3, ?4)",
        )?;
        for (room, seen) in self.0 {
            upsert.execute(params![
                room.account,
                room.room,
                seen.time.0,
                seen.remote_id
            ])?;
        }
        Ok(())
    }
}

pub(super) fn read(conn: &Connection, room: &RoomKey) -> Result<Option<Seen>, rusqlite::Error> {
    conn.prepare_cached("SELECT time, remote_id FROM room_marks WHERE account = ?1 AND room = ?2")?
        .query_row(params![room.account, room.room], |row| {
            Ok(Seen {
                time: Timestamp(row.get(0)?),
                remote_id: row.get(1)?,
            })
        })
        .optional()
}

/// Marks go with the events they stood for: what the writer's prune ages out.
pub(super) fn prune(conn: &Connection, before: Timestamp) -> Result<usize, rusqlite::Error> {
    conn.prepare_cached("DELETE FROM room_marks WHERE time < ?1")?
        .execute(params![before.0])
}

/// A store from before `room_marks`: fill them from the newest event of each room, then drop
/// the index that found it. Runs once; a store without the index is left alone. A row whose
/// JSON does not read (it cannot be relayed either) gives a mark without a network id rather
/// than a store that does not open.
pub(super) fn migrate(conn: &Connection) -> Result<(), rusqlite::Error> {
    if !super::has_index(conn, "events_by_room")? {
        return Ok(());
    }
    conn.execute_batch(
        "BEGIN IMMEDIATE;
         INSERT OR REPLACE INTO room_marks (account, room, time, remote_id)
             SELECT e.account, e.room, e.time,
                    CASE WHEN json_valid(e.json) THEN json_extract(e.json, '$.origin.remote_id') END
             FROM events e
             JOIN (SELECT MAX(seq) AS seq FROM events GROUP BY account, room) newest
               ON newest.seq = e.seq;
         DROP INDEX events_by_room;
         COMMIT;",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(room: &str, remote_id: Option<&str>, time: i64) -> Event {
        let mut event = crate::store::tests::event("irc.net", room, remote_id, "hi");
        event.time = Timestamp(time);
        event
    }

    /// A store written by a version with the old index opens with each room's newest event
    /// as its mark (an unreadable one too), and without the index.
    #[test]
    fn an_old_store_gets_its_marks_from_its_newest_events() {
        let conn = Connection::open_in_memory().expect("open");
        conn.execute_batch(include_str!("schema.sql"))
            .expect("schema");
        conn.execute_batch("CREATE INDEX events_by_room ON events (account, room, seq);")
            .expect("the old index");
        for (i, (room, remote, time)) in
            [("#a", Some("a1"), 10), ("#b", None, 20), ("#a", None, 30)]
                .into_iter()
                .enumerate()
        {
            let json = serde_json::to_string(&event(room, remote, time)).expect("json");
            conn.execute(
                "INSERT INTO events (id, account, room, time, json) VALUES (?1, 'irc.net', ?2, ?3, ?4)",
                params![format!("e{i}"), room, time, json],
            )
            .expect("insert");
        }
        conn.execute(
            "INSERT INTO events (id, account, room, time, json) VALUES ('e3', 'irc.net', '#b', 40, ?1)",
            params![serde_json::to_string(&event("#b", Some("b2"), 40)).expect("json")],
        )
        .expect("insert");
        conn.execute(
            "INSERT INTO events (id, account, room, time, json) VALUES ('e4', 'irc.net', '#bad', 50, 'not json')",
            [],
        )
        .expect("insert");

        migrate(&conn).expect("migrate");
        let mark = |room: &str| read(&conn, &RoomKey::new("irc.net", room)).expect("read");
        assert_eq!(
            mark("#a").map(|s| (s.time, s.remote_id)),
            Some((Timestamp(30), None))
        );
        assert_eq!(
            mark("#b").map(|s| (s.time, s.remote_id)),
            Some((Timestamp(40), Some("b2".into())))
        );
        assert_eq!(
            mark("#bad").map(|s| (s.time, s.remote_id)),
            Some((Timestamp(50), None))
        );
        assert_eq!(mark("#c").map(|s| s.time), None);
        let index: bool = conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'events_by_room')",
                [],
                |row| row.get(0),
            )
            .expect("query");
        assert!(!index, "the old index is still there");
        migrate(&conn).expect("a second open changes nothing");
    }

    /// Within one commit the last event accepted from a room is its mark.
    #[test]
    fn the_last_event_of_a_commit_is_the_mark() {
        let conn = Connection::open_in_memory().expect("open");
        conn.execute_batch(include_str!("schema.sql"))
            .expect("schema");
        let mut marks = Marks::default();
        marks.note(&event("#a", Some("x"), 1));
        marks.note(&event("#a", Some("y"), 2));
        marks.write(&conn).expect("write");
        let seen = read(&conn, &RoomKey::new("irc.net", "#a")).expect("read");
        assert_eq!(
            seen.map(|s| (s.time, s.remote_id)),
            Some((Timestamp(2), Some("y".into())))
        );
        assert_eq!(prune(&conn, Timestamp(3)).expect("prune"), 1);
    }
}
