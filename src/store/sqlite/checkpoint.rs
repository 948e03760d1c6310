//! WAL checkpoints off the commit path.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its threshold (every
//! 1,000 WAL pages), so one accept in a hundred or so would wait for the checkpoint's fsyncs —
//! hundreds of milliseconds on a busy disk. The writer's connection turns it off, and this
//! thread checkpoints from a connection of its own instead, passively (never blocking the
//! writer or a reader), once a second while anything was written. In WAL mode with
//! `synchronous=NORMAL` a commit itself does not fsync; the checkpoint is where the disk is
//! waited for, and now nobody waits for it but this thread.
//!
//! A passive checkpoint never catches up with a writer that never pauses: it copies what was
//! in the WAL when it began while the writer appends more, and SQLite starts the WAL over only
//! once all of it was copied. Under sustained load (the core bench) the WAL grew without end,
//! 5 GB by the end of the bench. So when a passive checkpoint leaves more than
//! [`WalLimit::pages`] in the WAL, this thread raises [`RestartWanted`], and the writer thread,
//! between two batches, runs a restarting checkpoint itself: it copies the little the passive
//! one left, and the writer's next commit starts the WAL over (truncated to the limit). From
//! this thread the restarting checkpoint starved: it must wait for the writer's lock, and a
//! writer with work queued takes the lock again as soon as it commits (the WAL reached 1.6 GB
//! with a 256 MiB limit). The writer waits for that copy and one fsync, once per limit's worth
//! of writes: never at the rates chat rooms see, and a bounded file under a flood.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::store::StoreError;

/// How often the WAL is checkpointed, and the size past which it is started over.
#[derive(Clone, Copy, Debug)]
pub(super) struct WalLimit {
    pub every: Duration,
    pub pages: i64,
}

impl Default for WalLimit {
    /// Once a second; 256 MiB of 4 KiB pages.
    fn default() -> Self {
        WalLimit {
            every: Duration::from_secs(1),
            pages: 65_536,
        }
    }
}

impl WalLimit {
    /// What `journal_size_limit` is set to on the writer's connection, in bytes.
    pub(super) fn bytes(&self) -> i64 {
        self.pages * 4096
    }
}

/// The checkpoint thread; stopped by [`Checkpointer::stop`] or by being dropped.
pub(super) struct Checkpointer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// Run one checkpoint; returns how many pages the WAL holds after it.
fn checkpoint(conn: &rusqlite::Connection, mode: &str) -> rusqlite::Result<i64> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
        row.get(1)
    })
}

/// The checkpoint thread's request that the writer start the WAL over (see the module doc).
#[derive(Clone, Default)]
pub(super) struct RestartWanted(Arc<AtomicBool>);

impl RestartWanted {
    /// On the writer's connection, between two transactions: start the WAL over if asked.
    pub(super) fn serve(&self, conn: &rusqlite::Connection) {
        if self.0.swap(false, Ordering::AcqRel) {
            match checkpoint(conn, "RESTART") {
                Ok(pages) => tracing::debug!(pages, "the WAL starts over"),
                Err(err) => {
                    tracing::warn!("store checkpoint (restart) failed (it is asked again): {err}")
                }
            }
        }
    }
}

impl Checkpointer {
    pub(super) fn start(
        path: &Path,
        limit: WalLimit,
        restart: RestartWanted,
    ) -> Result<Checkpointer, StoreError> {
        let conn = super::open_connection(path)?;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("patchbay-checkpoint".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(limit.every) {
                    match checkpoint(&conn, "PASSIVE") {
                        Ok(pages) if pages > limit.pages => {
                            restart.0.store(true, Ordering::Release)
                        }
                        Ok(_) => {}
                        Err(err) => {
                            tracing::warn!("store checkpoint failed (it is tried again): {err}")
                        }
                    }
                }
            })
            .map_err(|err| {
                StoreError::Open(format!("cannot start the checkpoint thread: {err}"))
            })?;
        Ok(Checkpointer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Stop the thread and wait for it (at most one checkpoint's time).
    pub(super) fn stop(&mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that never pauses: the WAL still starts over, and its file stays near the
    /// limit instead of growing with everything written.
    #[test]
    fn the_wal_stays_bounded_under_writes_that_never_pause() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("store.db");
        let limit = WalLimit {
            every: Duration::from_millis(50),
            pages: 64,
        };
        let writer = super::super::open_connection(&path).expect("open");
        writer
            .pragma_update(None, "wal_autocheckpoint", 0)
            .expect("no automatic checkpoint");
        writer
            .pragma_update(None, "journal_size_limit", limit.bytes())
            .expect("journal_size_limit");
        writer
            .execute_batch("CREATE TABLE t (b BLOB)")
            .expect("table");
        let restart = RestartWanted::default();
        let mut checkpointer = Checkpointer::start(&path, limit, restart.clone()).expect("start");
        let wal = dir.path().join("store.db-wal");
        let size = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let (mut largest, mut last) = (0u64, 0u64);
        // The WAL's size each time it was cut back (the commit after a restart truncates it).
        let mut cut_back = Vec::new();
        while cut_back.len() < 3 {
            assert!(
                std::time::Instant::now() < deadline,
                "the WAL never started over (largest {largest} bytes)"
            );
            // Eight pages a commit, commit after commit.
            writer
                .execute("INSERT INTO t (b) VALUES (zeroblob(32768))", [])
                .expect("insert");
            // As the store's writer thread does between two batches.
            restart.serve(&writer);
            let now = size();
            if now < last {
                cut_back.push(now);
            }
            largest = largest.max(now);
            last = now;
        }
        checkpointer.stop();
        // The limit, and the commit that cut it back.
        let bound = limit.bytes() as u64 + 2 * (32768 + 8 * 24);
        assert!(
            largest > bound,
            "the WAL never outgrew its limit: nothing to tell ({largest})"
        );
        assert!(
            cut_back.iter().all(|&s| s <= bound),
            "the WAL was not cut back to {bound} bytes: {cut_back:?} (largest {largest})"
        );
    }
}
