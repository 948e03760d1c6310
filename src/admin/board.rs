//! Each account's connector state as an operator wants it: what it is, since when, and how
//! often it changed (a flapping network shows as many changes in little time).
//!
//! The gateway's state channels only hold the current state; the board watches each one from
//! the start and keeps the time of the last change. It never blocks a connector: it reads the
//! watch channels, and its lock is held only to copy a record.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;

use patchbay_sdk::{ConnectorState, Timestamp};
use serde::Serialize;
use tokio::sync::watch;

use crate::metrics::{Metrics, What};

/// One account's state.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct AccountState {
    pub name: String,
    /// `connecting`, `up` or `down`.
    pub state: &'static str,
    /// Why it is down, as the connector said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When it entered this state, in milliseconds since the Unix epoch.
    pub since_ms: i64,
    /// How many times the state changed since the gateway started (each reconnect is two:
    /// down, then up).
    pub changes: u64,
}

/// Every account's [`AccountState`], kept current by one watcher task per account.
#[derive(Default)]
pub struct Board {
    accounts: Mutex<BTreeMap<String, AccountState>>,
}

fn describe(state: &ConnectorState) -> (&'static str, Option<String>) {
    match state {
        ConnectorState::Connecting => ("connecting", None),
        ConnectorState::Up => ("up", None),
        ConnectorState::Down { reason } => ("down", Some(reason.clone())),
    }
}

impl Board {
    /// Start watching `states`; each watcher ends when its account's state channel closes.
    /// Each change also goes to the live feed of `metrics`.
    pub fn watch(
        states: &BTreeMap<String, watch::Receiver<ConnectorState>>,
        metrics: Arc<Metrics>,
    ) -> Arc<Board> {
        let board = Arc::new(Board::default());
        let now = Timestamp::now().0;
        for (name, receiver) in states {
            let (state, reason) = describe(&receiver.borrow());
            board.lock().insert(
                name.clone(),
                AccountState {
                    name: name.clone(),
                    state,
                    reason,
                    since_ms: now,
                    changes: 0,
                },
            );
            let mut receiver = receiver.clone();
            let board = Arc::clone(&board);
            let name = name.clone();
            let metrics = Arc::clone(&metrics);
            tokio::spawn(async move {
                while receiver.changed().await.is_ok() {
                    let (state, reason) = describe(&receiver.borrow_and_update());
                    let now = Timestamp::now().0;
                    let changed = {
                        let mut accounts = board.lock();
                        match accounts.get_mut(&name) {
                            Some(record) if record.state != state || record.reason != reason => {
                                record.state = state;
                                record.reason = reason.clone();
                                record.since_ms = now;
                                record.changes += 1;
                                true
                            }
                            _ => false,
                        }
                    };
                    if changed {
                        let account = name.clone();
                        metrics.feed.push(
                            now,
                            What::State {
                                account,
                                state,
                                reason,
                            },
                        );
                    }
                }
            });
        }
        board
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, AccountState>> {
        self.accounts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every account, by name.
    pub fn snapshot(&self) -> Vec<AccountState> {
        self.lock().values().cloned().collect()
    }
}
