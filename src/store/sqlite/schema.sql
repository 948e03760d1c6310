-- patchbay's embedded store. WAL journal; one writer thread, readers alongside.

-- Every event the gateway accepted, as JSON. No index on time: the prune walks seq (prune.rs).
CREATE TABLE IF NOT EXISTS events (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    id      TEXT NOT NULL UNIQUE,
    account TEXT NOT NULL,
    room    TEXT NOT NULL,
    time    INTEGER NOT NULL,
    json    TEXT NOT NULL
);

-- The newest event accepted from each room, where a connector without a history mark starts
-- (marks.rs: one row per room, rewritten by each commit that accepted from it).
CREATE TABLE IF NOT EXISTS room_marks (
    account   TEXT NOT NULL,
    room      TEXT NOT NULL,
    time      INTEGER NOT NULL,
    remote_id TEXT,
    PRIMARY KEY (account, room)
) WITHOUT ROWID;

-- The outbox: one row per delivery still to make. A row is deleted when its delivery succeeds.
CREATE TABLE IF NOT EXISTS deliveries (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    event_seq  INTEGER NOT NULL REFERENCES events (seq),
    account    TEXT NOT NULL,
    room       TEXT NOT NULL,
    route      TEXT NOT NULL,
    not_before INTEGER
);
CREATE INDEX IF NOT EXISTS deliveries_by_room ON deliveries (account, room, seq);

-- The message-id map: which id each network knows a gateway event by.
-- origin = 1 for the network the event came from, 0 for one it was delivered to.
-- An entry is pruned with its event (prune.rs), through the by-event index.
-- time is when the entry was written, for an operator reading the store; nothing queries it.
CREATE TABLE IF NOT EXISTS message_map (
    account   TEXT NOT NULL,
    room      TEXT NOT NULL,
    remote_id TEXT NOT NULL,
    event_id  TEXT NOT NULL,
    origin    INTEGER NOT NULL,
    time      INTEGER NOT NULL,
    PRIMARY KEY (account, room, remote_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS message_map_by_event ON message_map (event_id, account, room);

-- Deliveries that failed for good, kept for an operator to read.
CREATE TABLE IF NOT EXISTS dead_letters (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    account  TEXT NOT NULL,
    room     TEXT NOT NULL,
    route    TEXT NOT NULL,
    reason   TEXT NOT NULL,
    time     INTEGER NOT NULL,
    json     TEXT NOT NULL
);

-- One row, rewritten when the checkpoint thread finds the WAL copied in full: that commit,
-- made while the writer is idle, starts the WAL over and fsyncs its new header, which an
-- accept would otherwise do (checkpoint.rs). The count is how often it happened.
CREATE TABLE IF NOT EXISTS wal_starts (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    count INTEGER NOT NULL
);
