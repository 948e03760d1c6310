//! Ownership: which accounts this instance runs.
//!
//! An account that holds a network connection must exist once, or its network sees the
//! bridge twice; its outbound lanes must have one owner, or rooms get each delivery twice. With
//! one instance (the embedded engine) this instance owns everything, always. With several
//! (JetStream) each account is held through a lease that only one instance has at a time;
//! [`Ownership::owned`] is the set this instance holds right now, and an account leaves it
//! before another instance can take it.

pub mod leases;

use std::collections::BTreeSet;

use tokio::sync::watch;

/// Where the gateway learns which accounts it runs.
pub trait Ownership: Send + Sync + 'static {
    /// The accounts this instance holds now; changes as leases are taken and lost.
    fn owned(&self) -> watch::Receiver<BTreeSet<String>>;

    /// The accounts the config names now (a reload changed them). An account that is no
    /// longer named leaves [`Ownership::owned`]; call this only once it has stopped here, so
    /// that no other instance can take it while it still runs.
    fn configure(&self, accounts: Vec<String>);
}

/// One instance owns every account.
pub struct Sole {
    owned: watch::Sender<BTreeSet<String>>,
}

impl Sole {
    pub fn new(accounts: impl IntoIterator<Item = String>) -> Self {
        let (owned, _) = watch::channel(accounts.into_iter().collect());
        Sole { owned }
    }
}

impl Ownership for Sole {
    fn owned(&self) -> watch::Receiver<BTreeSet<String>> {
        self.owned.subscribe()
    }

    fn configure(&self, accounts: Vec<String>) {
        let accounts: BTreeSet<String> = accounts.into_iter().collect();
        self.owned.send_if_modified(|owned| {
            let changed = *owned != accounts;
            *owned = accounts;
            changed
        });
    }
}
