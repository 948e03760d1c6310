//! Ownership by leases in a JetStream key-value bucket.
//!
//! Each account has a key `a.<account>` in the bucket `P_leases`, whose entries age out after
//! the lease time. An instance takes an account by creating its key (which fails while anyone
//! holds it) and keeps it by updating it at its revision every quarter lease. It gives the
//! account up (stops it here) as soon as a renewal is refused, and also when it could not
//! renew for half a lease — before the entry can age out and another instance create it —
//! so two instances never run one account at once. A stopping instance deletes its keys, so
//! the others take over at once; a killed one is taken over within a lease and a quarter.
//!
//! A reload changes the accounts competed for: an added one is taken at once where it is free,
//! and a removed one's lease is released once the gateway stopped it here.
//!
//! Instances also write a heartbeat `i.<instance>` every round: `prefer` lists of instances
//! for an account are honoured while one of them is alive.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use patchbay_nats::Bus;
use patchbay_nats::token::{token, untoken};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::Ownership;
use crate::account_states::AccountStates;

/// Accounts held through leases.
pub struct Leases {
    owned: watch::Sender<BTreeSet<String>>,
    /// The accounts competed for: those the config names now that this instance may run.
    wanted: watch::Sender<BTreeSet<String>>,
    /// The accounts this instance's site runs, when instances are grouped by site.
    site: Option<BTreeSet<String>>,
}

/// What the leases keep.
pub struct LeaseSettings {
    pub instance: String,
    /// The accounts the config names.
    pub accounts: Vec<String>,
    /// With sites, the accounts of this instance's site: only those are run here.
    pub site_accounts: Option<BTreeSet<String>>,
    pub lease: Duration,
    pub prefer: BTreeMap<String, Vec<String>>,
}

struct Held {
    revision: u64,
    renewed: Instant,
}

impl Leases {
    /// Start taking and renewing leases until `stop`; then release them. The handle ends
    /// once they are released.
    pub fn start(
        bus: Bus,
        settings: LeaseSettings,
        stop: CancellationToken,
    ) -> (Arc<Leases>, tokio::task::JoinHandle<()>) {
        let (owned, _) = watch::channel(BTreeSet::new());
        let (wanted, _) = watch::channel(BTreeSet::new());
        let leases = Arc::new(Leases {
            owned,
            wanted,
            site: settings.site_accounts.clone(),
        });
        leases.configure(settings.accounts.clone());
        let running = Arc::clone(&leases);
        let handle = tokio::spawn(async move { running.run(bus, settings, stop).await });
        (leases, handle)
    }

    async fn run(&self, bus: Bus, settings: LeaseSettings, stop: CancellationToken) {
        let round = settings.lease / 4;
        let value = bytes_of(&settings.instance);
        let heartbeat = format!("i.{}", token(&settings.instance));
        let mut held: HashMap<String, Held> = HashMap::new();
        let mut wanted = self.wanted.subscribe();
        loop {
            let started = Instant::now();
            let accounts = wanted.borrow_and_update().clone();
            self.give_up_unwanted(&bus, &mut held, &accounts).await;
            if let Ok(Err(err)) =
                tokio::time::timeout(round, bus.lease_put(&heartbeat, value.clone())).await
            {
                tracing::debug!("instance heartbeat: {err}");
            }
            let alive = match tokio::time::timeout(round, bus.lease_entries("i.")).await {
                Ok(Ok(entries)) => entries
                    .into_iter()
                    .filter_map(|(key, _)| untoken(key.strip_prefix("i.")?))
                    .collect(),
                _ => BTreeSet::from([settings.instance.clone()]),
            };
            for account in &accounts {
                let key = format!("a.{}", token(account));
                if let Some(h) = held.get_mut(account) {
                    match tokio::time::timeout(
                        round,
                        bus.lease_renew(&key, value.clone(), h.revision),
                    )
                    .await
                    {
                        Ok(Ok(Some(revision))) => {
                            h.revision = revision;
                            h.renewed = started;
                        }
                        Ok(Ok(None)) => {
                            tracing::warn!(
                                account,
                                "lost the account's lease to another instance, which runs it now; if this repeats, check this instance's link to NATS and that `lease` is longer than a renewal takes"
                            );
                            held.remove(account);
                        }
                        Ok(Err(err)) => tracing::warn!(
                            account,
                            "cannot renew the lease: {err}; check the link to NATS (the account stops here after half a lease without renewal)"
                        ),
                        Err(_) => tracing::warn!(
                            account,
                            "renewing the lease timed out; check the link to NATS (the account stops here after half a lease without renewal)"
                        ),
                    }
                } else if eligible(account, &settings, &alive)
                    && let Ok(Ok(Some(revision))) =
                        tokio::time::timeout(round, bus.lease_take(&key, value.clone())).await
                {
                    held.insert(
                        account.clone(),
                        Held {
                            revision,
                            renewed: started,
                        },
                    );
                }
            }
            // Give up what could not be renewed for half a lease: it may age out soon.
            held.retain(|account, h| {
                let keep = h.renewed.elapsed() < settings.lease / 2;
                if !keep {
                    tracing::warn!(
                        account,
                        "no lease renewal for half a lease; stopping the account here so that another instance can take it over: check this instance's link to NATS"
                    );
                }
                keep
            });
            let now: BTreeSet<String> = held.keys().cloned().collect();
            self.owned.send_if_modified(|owned| {
                let changed = *owned != now;
                *owned = now;
                changed
            });
            tokio::select! {
                _ = tokio::time::sleep(round.saturating_sub(started.elapsed())) => {}
                // A reload changed the accounts: take the added ones now, not a round later.
                _ = wanted.changed() => {}
                _ = stop.cancelled() => break,
            }
        }
        self.owned.send_replace(BTreeSet::new());
        for account in held.keys() {
            let key = format!("a.{}", token(account));
            if let Err(err) = bus.lease_release(&key).await {
                tracing::warn!(account, "cannot release the lease: {err}");
            }
        }
        let _ = bus.lease_release(&heartbeat).await;
    }
}

/// Whether this instance may take `account` now: it has no preferred instances, this is one,
/// or none of them is alive.
fn eligible(account: &str, settings: &LeaseSettings, alive: &BTreeSet<String>) -> bool {
    match settings.prefer.get(account) {
        None => true,
        Some(preferred) => {
            preferred.contains(&settings.instance) || !preferred.iter().any(|p| alive.contains(p))
        }
    }
}

fn bytes_of(text: &str) -> bytes::Bytes {
    bytes::Bytes::copy_from_slice(text.as_bytes())
}

impl Leases {
    /// Release the leases of accounts the config no longer names: they leave the owned set
    /// first (the gateway stopped them already), then their keys are deleted, so that an
    /// instance that still names them takes them at once.
    async fn give_up_unwanted(
        &self,
        bus: &Bus,
        held: &mut HashMap<String, Held>,
        wanted: &BTreeSet<String>,
    ) {
        let unwanted: Vec<String> = held
            .keys()
            .filter(|account| !wanted.contains(*account))
            .cloned()
            .collect();
        if unwanted.is_empty() {
            return;
        }
        for account in &unwanted {
            held.remove(account);
        }
        self.owned
            .send_modify(|owned| owned.retain(|a| wanted.contains(a)));
        for account in unwanted {
            tracing::info!(
                account,
                "the config no longer names the account; releasing its lease"
            );
            if let Err(err) = bus.lease_release(&format!("a.{}", token(&account))).await {
                tracing::warn!(
                    account,
                    "cannot release the lease: {err}; it ages out within a lease"
                );
            }
        }
    }
}

impl Ownership for Leases {
    fn owned(&self) -> watch::Receiver<BTreeSet<String>> {
        self.owned.subscribe()
    }

    fn configure(&self, accounts: Vec<String>) {
        let wanted: BTreeSet<String> = accounts
            .into_iter()
            .filter(|a| self.site.as_ref().is_none_or(|site| site.contains(a)))
            .collect();
        self.wanted.send_if_modified(|now| {
            let changed = *now != wanted;
            *now = wanted;
            changed
        });
    }
}

/// Write the state of each account this instance runs into the leases bucket (`s.<account>`,
/// aged out with the leases) every `every`, until `stop`: `patchbay status` reads it.
pub fn publish_states(
    bus: Bus,
    states: AccountStates,
    owned: watch::Receiver<BTreeSet<String>>,
    every: Duration,
    stop: CancellationToken,
) {
    tokio::spawn(async move {
        loop {
            let held: Vec<String> = owned.borrow().iter().cloned().collect();
            for account in held {
                let Some(state) = states.get(&account) else {
                    continue;
                };
                let text = match &*state.borrow() {
                    patchbay_sdk::ConnectorState::Up => "up".to_owned(),
                    patchbay_sdk::ConnectorState::Connecting => "connecting".to_owned(),
                    patchbay_sdk::ConnectorState::Down { reason } => format!("down: {reason}"),
                };
                let key = format!("s.{}", token(&account));
                if let Ok(Err(err)) =
                    tokio::time::timeout(every, bus.lease_put(&key, bytes_of(&text))).await
                {
                    tracing::debug!(account, "cannot publish the account's state: {err}");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.cancelled() => return,
            }
        }
    });
}

/// Who runs what, as the leases bucket says (for `patchbay status`).
pub async fn holders(bus: &Bus) -> Result<Holders, patchbay_nats::BusError> {
    let instances = bus
        .lease_entries("i.")
        .await?
        .into_iter()
        .filter_map(|(key, _)| untoken(key.strip_prefix("i.")?))
        .collect();
    let accounts: BTreeMap<String, String> = bus
        .lease_entries("a.")
        .await?
        .into_iter()
        .filter_map(|(key, value)| {
            Some((
                untoken(key.strip_prefix("a.")?)?,
                String::from_utf8(value.to_vec()).ok()?,
            ))
        })
        .collect();
    let states = bus
        .lease_entries("s.")
        .await?
        .into_iter()
        .filter_map(|(key, value)| {
            Some((
                untoken(key.strip_prefix("s.")?)?,
                String::from_utf8(value.to_vec()).ok()?,
            ))
        })
        .collect();
    Ok(Holders {
        instances,
        accounts,
        states,
    })
}

/// What the leases bucket says of the instances.
pub struct Holders {
    /// The instances alive (with a fresh heartbeat).
    pub instances: Vec<String>,
    /// account -> the instance holding it.
    pub accounts: BTreeMap<String, String>,
    /// account -> its connection state, as its holder last wrote it.
    pub states: BTreeMap<String, String>,
}
