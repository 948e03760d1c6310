//! WAL checkpoints off the commit path.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its threshold (every
//! 1,000 WAL pages), so one accept in a hundred or so would wait for the checkpoint's fsyncs —
//! hundreds of milliseconds on a busy disk. The writer's connection turns it off, and this
//! thread checkpoints from a connection of its own instead, passively (never blocking the
//! writer or a reader), once a second while anything was written. In WAL mode with
//! `synchronous=NORMAL` a commit itself does not fsync; the checkpoint is where the disk is
//! waited for, and now nobody waits for it but this thread.

use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::store::StoreError;

/// How often the WAL is checkpointed.
const EVERY: Duration = Duration::from_secs(1);

/// The checkpoint thread; stopped by [`Checkpointer::stop`] or by being dropped.
pub(super) struct Checkpointer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    pub(super) fn start(path: &Path) -> Result<Checkpointer, StoreError> {
        let conn = super::open_connection(path)?;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("patchbay-checkpoint".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(EVERY) {
                    if let Err(err) =
                        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::warn!("store checkpoint failed (it is tried again): {err}");
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
