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
//! one left, and the writer's next commit starts the WAL over, from the beginning of the same
//! file. From this thread the restarting checkpoint starved: it must wait for the writer's
//! lock, and a writer with work queued takes the lock again as soon as it commits (the WAL
//! reached 1.6 GB with a 256 MiB limit). The writer waits for that copy and its fsyncs, once
//! per limit's worth of writes: never at the rates chat rooms see, and a bounded file under a
//! flood (15-60 ms every 2-3 s in the core bench's half-rate run). The file is not
//! truncated when the WAL starts over: cutting a file of 300 MB back to the limit had cost the
//! writer another 50-170 ms each time.
//!
//! Starting the WAL over costs one more fsync, of the WAL's new header, and SQLite makes it in
//! the first commit that writes after a checkpoint copied everything: at chat rates the
//! passive checkpoint catches up every time, so one accept every second or two waited for
//! that fsync (0.3-0.5 ms in the IRC bench's paced run, seen with `perf trace`). When a
//! passive checkpoint has copied everything, this thread therefore asks the writer for a
//! start-over commit ([`WriterLink::start_over`]): a one-row write that the idle writer makes
//! at once, so the fsync falls between accepts instead of inside one. And it checkpoints only
//! when the writer has committed since its last look ([`WriterLink::commits`]), so an idle
//! store neither copies nor fsyncs, and the start-over's own row does not start the cycle again.
//!
//! The two requests reach the writer in two ways on purpose. A restart is wanted when the
//! writer is flooded, so it must not queue: the writer's channel then holds thousands of
//! accepts, and a request behind them would wait for all of them while the WAL grows. So it
//! is a flag ([`RestartWanted`]) the writer looks at after every batch. A start-over is wanted
//! when the writer is idle, and must come after whatever was queued before it, so it is a
//! command on the channel ([`WriterLink::start_over`]). Both as commands was tried
//! (2026-12-07) and reverted after a soak run failed.

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

/// The checkpoint thread; stopped by [`Checkpointer::stop`] or by being dropped.
pub(super) struct Checkpointer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// What the checkpoint thread needs from the store's writer thread.
pub(super) struct WriterLink {
    /// How many transactions the writer has committed, start-over commits not counted.
    pub commits: Box<dyn Fn() -> u64 + Send>,
    /// Ask the writer for a start-over commit (see the module doc).
    pub start_over: Box<dyn Fn() + Send>,
}

/// The WAL after a checkpoint: the pages it holds, and how many of them are in the database.
#[derive(Clone, Copy, Debug, PartialEq)]
struct WalState {
    pages: i64,
    copied: i64,
}

/// Run one checkpoint.
fn checkpoint(conn: &rusqlite::Connection, mode: &str) -> rusqlite::Result<WalState> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
        Ok(WalState {
            pages: row.get(1)?,
            copied: row.get(2)?,
        })
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
                Ok(wal) => tracing::debug!(pages = wal.pages, "the WAL starts over"),
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
        writer: WriterLink,
    ) -> Result<Checkpointer, StoreError> {
        let conn = super::open_connection(path)?;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("patchbay-checkpoint".into())
            .spawn(move || {
                let mut looked_at = None;
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(limit.every) {
                    let commits = (writer.commits)();
                    if looked_at.replace(commits) == Some(commits) {
                        continue;
                    }
                    match checkpoint(&conn, "PASSIVE") {
                        Ok(wal) if wal.pages > limit.pages => {
                            restart.0.store(true, Ordering::Release)
                        }
                        Ok(wal) if wal.pages > 0 && wal.copied == wal.pages => {
                            (writer.start_over)()
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

    /// The checkpoint sequence number in a WAL file's header: it changes each time the WAL
    /// starts over.
    fn wal_sequence(wal: &Path) -> Option<u32> {
        let header = std::fs::read(wal).ok()?;
        Some(u32::from_be_bytes(header.get(12..16)?.try_into().ok()?))
    }

    /// A writer that never pauses: the WAL still starts over, in place, and its file stays
    /// near the limit instead of growing with everything written.
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
            .execute_batch("CREATE TABLE t (b BLOB)")
            .expect("table");
        let restart = RestartWanted::default();
        let commits = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let link = WriterLink {
            commits: Box::new({
                let commits = Arc::clone(&commits);
                move || commits.load(Ordering::Relaxed)
            }),
            // This writer commits without pause: the checkpoint never finds everything copied.
            start_over: Box::new(|| {}),
        };
        let mut checkpointer =
            Checkpointer::start(&path, limit, restart.clone(), link).expect("start");
        let wal = dir.path().join("store.db-wal");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let (mut largest, mut written, mut starts) = (0u64, 0u64, 0);
        let mut sequence = wal_sequence(&wal);
        while starts < 3 {
            assert!(
                std::time::Instant::now() < deadline,
                "the WAL never started over ({written} bytes written, file {largest} bytes)"
            );
            // Eight pages a commit, commit after commit.
            writer
                .execute("INSERT INTO t (b) VALUES (zeroblob(32768))", [])
                .expect("insert");
            written += 32768;
            commits.fetch_add(1, Ordering::Relaxed);
            // As the store's writer thread does between two batches.
            restart.serve(&writer);
            let now = wal_sequence(&wal);
            if now != sequence {
                starts += 1;
                sequence = now;
            }
            largest = largest.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
        }
        checkpointer.stop();
        // The limit and what a writer that never pauses adds during one checkpoint, with room
        // for a slow disk; without the restarts the file would hold everything written.
        let bound = (limit.pages as u64) * 4096 + (16 << 20);
        assert!(
            largest <= bound,
            "the WAL file grew to {largest} bytes (bound {bound}) with {written} bytes written"
        );
    }

    /// At chat rates the checkpoint copies everything each time. The WAL must then start over
    /// in a commit of its own while the store is idle, not in the next accept, which would wait
    /// for the new header's fsync.
    #[tokio::test]
    async fn an_idle_store_starts_its_wal_over_before_the_next_accept() {
        use crate::router::RoomKey;
        use crate::store::Store;
        use crate::store::tests::{event, open, to};

        let (dir, store) = open();
        let wal = dir.path().join("store.db-wal");
        let dest = RoomKey::new("irc.b", "#y");
        let accept = |text: &str| store.accept(event("irc.a", "#x", None, text), vec![to(&dest)]);
        accept("one").await.expect("accept");
        let before = wal_sequence(&wal);
        // Nothing more is accepted: the checkpoint (once a second) copies the accept, and the
        // start-over commit follows.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while wal_sequence(&wal) == before {
            assert!(
                std::time::Instant::now() < deadline,
                "the idle store did not start its WAL over within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let started_over = wal_sequence(&wal);
        accept("two").await.expect("accept");
        assert_eq!(
            wal_sequence(&wal),
            started_over,
            "the accept after the start-over started the WAL over again"
        );
    }
}
