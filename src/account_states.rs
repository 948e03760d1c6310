//! Which accounts the gateway runs now, and each one's connector state.
//!
//! A reload adds and removes accounts while the gateway runs, so whatever reports on them
//! (`/healthz`, `/metrics`, the admin API and status page, the nats engine's state records)
//! reads this registry rather than a list taken at start. It is a watch channel of the
//! account set: readers take the current set when they answer, and a watcher that keeps
//! per-account records (the admin board) learns of each change as it happens.

use std::collections::BTreeMap;

use patchbay_sdk::ConnectorState;
use tokio::sync::watch;

/// Account name (`PROTOCOL.NAME`) -> its connector's state.
pub type StateMap = BTreeMap<String, watch::Receiver<ConnectorState>>;

/// The accounts configured now, with their states. Cheap to clone: clones share one set.
#[derive(Clone)]
pub struct AccountStates {
    set: watch::Sender<StateMap>,
}

impl Default for AccountStates {
    fn default() -> Self {
        AccountStates::new(StateMap::new())
    }
}

impl AccountStates {
    pub fn new(accounts: StateMap) -> AccountStates {
        AccountStates {
            set: watch::Sender::new(accounts),
        }
    }

    /// Add an account (a reload started it), or give a restarted one its state again.
    pub fn insert(&self, account: &str, state: watch::Receiver<ConnectorState>) {
        self.set.send_modify(|set| {
            set.insert(account.to_owned(), state);
        });
    }

    /// Forget an account the config no longer names.
    pub fn remove(&self, account: &str) {
        self.set
            .send_if_modified(|set| set.remove(account).is_some());
    }

    /// The accounts now. The receivers are clones: reading one never holds the set.
    pub fn current(&self) -> StateMap {
        self.set.borrow().clone()
    }

    /// One account's state, if it is configured now.
    pub fn get(&self, account: &str) -> Option<watch::Receiver<ConnectorState>> {
        self.set.borrow().get(account).cloned()
    }

    pub fn len(&self) -> usize {
        self.set.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Follow the set: the receiver sees it change with every insert and remove.
    pub fn subscribe(&self) -> watch::Receiver<StateMap> {
        self.set.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_follower_sees_an_added_account_and_a_removed_one() {
        let states = AccountStates::default();
        let mut follower = states.subscribe();
        let (_handle, state) = patchbay_sdk::StateHandle::new();
        states.insert("irc.net", state);
        follower.changed().await.expect("changed");
        assert!(follower.borrow_and_update().contains_key("irc.net"));
        states.remove("irc.net");
        follower.changed().await.expect("changed");
        assert!(follower.borrow_and_update().is_empty());
        // Removing what is not there is no change.
        states.remove("irc.net");
        assert!(!follower.has_changed().expect("open"));
    }
}
