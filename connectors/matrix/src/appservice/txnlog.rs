//! The ids of transactions already relayed, kept on disk (`<data>/transactions`, one a
//! line, appended before the homeserver gets its 200).
//!
//! The homeserver repeats a transaction until it gets a 200, with the same id; one recorded
//! here is acknowledged at once. Only the newest [`KEEP`] ids are kept: homeservers retry
//! the oldest unacknowledged transaction first, so an id older than that never comes again.
//!
//! This log only spares the gateway work; it is not what keeps a repeat out. Each event of a
//! transaction is stored under its event id, and the gateway records an event whose network
//! id it knows as a duplicate, so a transaction relayed again after a lost line here relays
//! nothing twice. The line is therefore not synced: a write survives the process being
//! killed (it is in the kernel's cache), and only an OS crash can lose it, which also loses
//! the store's last commits (WAL, `synchronous=NORMAL`). An fsync here had cost every
//! transaction a wait for the disk before its 200, and the homeserver sends nothing more to
//! us until it has that answer.

use std::collections::{HashSet, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};

/// How many recent transaction ids are remembered.
const KEEP: usize = 10_000;

pub struct TxnLog {
    path: PathBuf,
    order: VecDeque<String>,
    done: HashSet<String>,
    /// Lines in the file (kept or not).
    lines: usize,
}

impl TxnLog {
    pub fn open(data_dir: &Path) -> std::io::Result<Self> {
        let path = data_dir.join("transactions");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        let mut log = TxnLog {
            path,
            order: VecDeque::new(),
            done: HashSet::new(),
            lines: 0,
        };
        for id in text.lines().filter(|l| !l.is_empty()) {
            log.remember(id.to_owned());
            log.lines += 1;
        }
        Ok(log)
    }

    fn remember(&mut self, id: String) {
        if self.done.insert(id.clone()) {
            self.order.push_back(id);
        }
        while self.order.len() > KEEP {
            if let Some(old) = self.order.pop_front() {
                self.done.remove(&old);
            }
        }
    }

    pub fn contains(&self, id: &str) -> bool {
        self.done.contains(id)
    }

    /// Record `id` (not synced, see the module doc). The file is compacted to the kept ids
    /// when it has grown to twice as many lines.
    pub fn record(&mut self, id: &str) -> std::io::Result<()> {
        // An id is one line: a newline in it (not sent by real servers) is replaced.
        let id = id.replace(['\n', '\r'], " ");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        writeln!(file, "{id}")?;
        self.remember(id);
        self.lines += 1;
        if self.lines > 2 * KEEP {
            let text: String = self.order.iter().map(|id| format!("{id}\n")).collect();
            crate::state::write_private(&self.path, text.as_bytes())?;
            self.lines = self.order.len();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_ids_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = TxnLog::open(dir.path()).expect("open");
        assert!(!log.contains("1"));
        log.record("1").expect("record");
        log.record("2").expect("record");
        let log = TxnLog::open(dir.path()).expect("reopen");
        assert!(log.contains("1") && log.contains("2") && !log.contains("3"));
    }
}
