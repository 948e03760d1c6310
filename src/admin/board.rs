//! Each account's connector state as an operator wants it: what it is, since when, and how
//! often it changed (a flapping network shows as many changes in little time).
//!
//! The gateway's state channels only hold the current state; the board watches each one from
//! the start (or from when a reload added the account) and keeps the time of the last change.
//! It never blocks a connector: it reads the watch channels, and its lock is held only to copy
//! a record.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::Mutex;

use patchbay_sdk::{ConnectorState, Timestamp};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::AbortHandle;

use crate::account_states::{AccountStates, StateMap};
use crate::metrics::{Metrics, What};
use patchbay_sdk::sync::lock;

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
    /// Start following `states`: a record and a watcher for each account configured, added
    /// and dropped as reloads add and remove accounts. Each change also goes to the live feed
    /// of `metrics`.
    pub fn watch(states: &AccountStates, metrics: Arc<Metrics>) -> Arc<Board> {
        let board = Arc::new(Board::default());
        let mut set = states.subscribe();
        let mut watchers = HashMap::new();
        board.follow(&set.borrow_and_update(), &mut watchers, &metrics);
        let following = Arc::clone(&board);
        tokio::spawn(async move {
            while set.changed().await.is_ok() {
                let now = set.borrow_and_update().clone();
                following.follow(&now, &mut watchers, &metrics);
            }
        });
        board
    }

    /// Bring the records in line with `accounts`: drop those no longer configured, and start
    /// watching the new ones.
    fn follow(
        self: &Arc<Self>,
        accounts: &StateMap,
        watchers: &mut HashMap<String, AbortHandle>,
        metrics: &Arc<Metrics>,
    ) {
        watchers.retain(|name, watcher| {
            let keep = accounts.contains_key(name);
            if !keep {
                watcher.abort();
                self.lock().remove(name);
            }
            keep
        });
        let now = Timestamp::now().0;
        for (name, receiver) in accounts {
            if watchers.contains_key(name) {
                continue;
            }
            let (state, reason) = describe(&receiver.borrow());
            self.lock().insert(
                name.clone(),
                AccountState {
                    name: name.clone(),
                    state,
                    reason,
                    since_ms: now,
                    changes: 0,
                },
            );
            let watcher = tokio::spawn(Arc::clone(self).watch_one(
                name.clone(),
                receiver.clone(),
                Arc::clone(metrics),
            ));
            watchers.insert(name.clone(), watcher.abort_handle());
        }
    }

    /// Keep one account's record current until its state channel closes.
    async fn watch_one(
        self: Arc<Self>,
        name: String,
        mut receiver: watch::Receiver<ConnectorState>,
        metrics: Arc<Metrics>,
    ) {
        while receiver.changed().await.is_ok() {
            let (state, reason) = describe(&receiver.borrow_and_update());
            let now = Timestamp::now().0;
            let changed = {
                let mut accounts = self.lock();
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
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, AccountState>> {
        lock(&self.accounts)
    }

    /// Every account, by name.
    pub fn snapshot(&self) -> Vec<AccountState> {
        self.lock().values().cloned().collect()
    }
}
