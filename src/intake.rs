//! Intake: what happens to an event a connector emits, up to the moment it is durable.
//!
//! Drop the connector's own echoes; resolve the message references it names by its network's
//! ids into gateway ids; ask the router where the event goes; record the event and its
//! deliveries in one transaction. The store's feed hands them to the outbox from there.
//!
//! The routes are read once per event, at accept: a reload that replaces them while events
//! arrive routes each event wholly by the old table or wholly by the new one, and an accepted
//! event keeps the deliveries computed then (see [`crate::gateway`]'s reload).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use patchbay_sdk::{
    Author, Emit, EmitError, Event, EventId, Inbound, MessageRef, Seen, Signal, Timestamp,
};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::router::{RoomKey, Router};
use crate::store::{Accepted, AccountNames, NewDelivery, NewEvent, Store};
use patchbay_sdk::sync::lock;

pub struct Intake {
    store: Arc<dyn Store>,
    router: Arc<Router>,
    metrics: Arc<Metrics>,
    /// Cancelled when the gateway stops taking events.
    closed: CancellationToken,
    /// Who each account is on its network, as it (or, with a shared store, an account on
    /// another instance) announced.
    own: Arc<OwnNames>,
}

impl Intake {
    pub fn new(
        store: Arc<dyn Store>,
        router: Arc<Router>,
        metrics: Arc<Metrics>,
        closed: CancellationToken,
    ) -> Self {
        Intake {
            store,
            router,
            metrics,
            closed,
            own: Arc::default(),
        }
    }
}

impl Intake {
    /// Learn the names the accounts of the other instances announce (a shared store), from
    /// now on and for as long as the gateway runs.
    pub async fn hear_other_instances(&self) -> Result<(), crate::store::StoreError> {
        let Some(mut shared) = self.store.shared_names().await? else {
            return Ok(());
        };
        let own = Arc::clone(&self.own);
        tokio::spawn(async move {
            while let Some((account, names)) = shared.recv().await {
                own.announce(&account, &names.network, names.names);
            }
        });
        Ok(())
    }
}

/// The names this gateway's accounts speak as, per network (see [`EventSink::announce`]):
/// what one account says must not come back as a relayed message through another account on
/// the same network.
///
/// [`EventSink::announce`]: patchbay_sdk::EventSink::announce
#[derive(Default)]
struct OwnNames {
    /// account -> (network, names)
    accounts: Mutex<HashMap<String, (String, Vec<String>)>>,
}

impl OwnNames {
    fn announce(&self, account: &str, network: &str, names: Vec<String>) {
        let mut accounts = lock(&self.accounts);
        accounts.insert(account.to_owned(), (network.to_owned(), names));
    }

    /// Whether `author`, seen by `account`, is one of this gateway's accounts on the network
    /// `account` is on.
    fn is_own(&self, account: &str, author: &Author) -> bool {
        let accounts = lock(&self.accounts);
        let Some((network, _)) = accounts.get(account) else {
            return false;
        };
        accounts.values().any(|(other, names)| {
            other == network
                && names
                    .iter()
                    .any(|name| *name == author.id || *name == author.name)
        })
    }
}

#[async_trait]
impl Emit for Intake {
    async fn emit(&self, account: &str, inbound: Inbound) -> Result<Option<EventId>, EmitError> {
        Ok(self
            .emit_many(account, vec![inbound])
            .await?
            .pop()
            .flatten())
    }

    async fn emit_many(
        &self,
        account: &str,
        inbounds: Vec<Inbound>,
    ) -> Result<Vec<Option<EventId>>, EmitError> {
        if self.closed.is_cancelled() {
            return Err(EmitError::Closed);
        }
        // The hop's steps at trace level, as in the delivery lane (`patchbay::hop`).
        tracing::trace!(target: "patchbay::hop", account, events = inbounds.len(), "emitted");
        let mut run = Run::with_capacity(inbounds.len());
        for inbound in inbounds {
            if inbound.is_echo {
                run.dropped();
                continue;
            }
            if self.own.is_own(account, &inbound.author) {
                tracing::debug!(account, author = %inbound.author.name, "not relayed: said by one of this gateway's own accounts");
                run.dropped();
                continue;
            }
            let mut event = Event::from_inbound(account, inbound);
            if refers_by_network_id(&event) {
                // It may refer to a message earlier in this run, which must be recorded before
                // its id can be resolved.
                self.record(account, &mut run).await?;
            }
            let deliveries = self.route(&mut event).await?;
            run.push(NewEvent { event, deliveries });
        }
        self.record(account, &mut run).await?;
        tracing::trace!(target: "patchbay::hop", account, "recorded");
        Ok(run.answers)
    }

    async fn last_seen(&self, account: &str, room: &str) -> Result<Option<Seen>, EmitError> {
        self.store
            .last_origin(&RoomKey::new(account, room))
            .await
            .map_err(|err| EmitError::Store(err.to_string()))
    }

    /// A connector's health event, counted for `/metrics`; its log line is written already.
    fn count(&self, account: &str, signal: Signal) {
        self.metrics.connector_event(account, signal);
    }

    fn announce(&self, account: &str, network: &str, names: Vec<String>) {
        tracing::debug!(account, network, ?names, "account announced its names");
        self.own.announce(account, network, names.clone());
        let (store, account) = (Arc::clone(&self.store), account.to_owned());
        let names = AccountNames {
            network: network.to_owned(),
            names,
        };
        tokio::spawn(async move {
            if let Err(err) = store.share_names(&account, &names).await {
                tracing::warn!(
                    account,
                    "cannot tell the other instances this account's names: {err}; until it announces again (at its next connect) they may relay its lines back: check the link to NATS"
                );
            }
        });
    }
}

/// A run of emitted events on its way into the store: the answers so far, and the events
/// not yet recorded with where their answers go.
struct Run {
    answers: Vec<Option<EventId>>,
    waiting: Vec<NewEvent>,
    slots: Vec<usize>,
}

impl Run {
    fn with_capacity(n: usize) -> Self {
        Run {
            answers: Vec::with_capacity(n),
            waiting: Vec::new(),
            slots: Vec::new(),
        }
    }

    /// An event dropped on purpose (an echo, the gateway's own words).
    fn dropped(&mut self) {
        self.answers.push(None);
    }

    fn push(&mut self, new: NewEvent) {
        self.slots.push(self.answers.len());
        self.answers.push(Some(new.event.id));
        self.waiting.push(new);
    }
}

/// Whether the event names a message by its network's id (a reply, an edit, a deletion, a
/// reaction), which intake must resolve against what is recorded.
fn refers_by_network_id(event: &Event) -> bool {
    matches!(event.reply_to, Some(MessageRef::Native(_)))
        || matches!(event.kind.target(), Some(MessageRef::Native(_)))
}

impl Intake {
    /// Record the run's waiting events in one go; a duplicate's answer becomes `None`.
    async fn record(&self, account: &str, run: &mut Run) -> Result<(), EmitError> {
        if run.waiting.is_empty() {
            return Ok(());
        }
        tracing::trace!(target: "patchbay::hop", account, events = run.waiting.len(), "routed");
        let accepted = self
            .store
            .accept_many(std::mem::take(&mut run.waiting))
            .await
            .map_err(|err| EmitError::Store(err.to_string()))?;
        for (slot, accepted) in run.slots.drain(..).zip(accepted) {
            match accepted {
                Accepted::Recorded => self.metrics.accepted(account),
                Accepted::Duplicate => run.answers[slot] = None,
            }
        }
        Ok(())
    }

    /// Resolve the event's references and compute its deliveries with the current routes.
    async fn route(&self, event: &mut Event) -> Result<Vec<NewDelivery>, EmitError> {
        let origin = RoomKey::new(&event.origin.account, &event.origin.room);
        let targets = if self.resolve_references(&origin, event).await? {
            self.router.route(event)
        } else {
            tracing::debug!(room = %origin, event = %event.id, "not relayed: it refers to a message the gateway does not know");
            Vec::new()
        };
        let now = Instant::now();
        Ok(targets
            .iter()
            .map(|target| NewDelivery {
                room: target.room.clone(),
                route: target.route.clone(),
                not_before: target.not_before.map(|at| {
                    Timestamp(
                        Timestamp::now().0 + at.saturating_duration_since(now).as_millis() as i64,
                    )
                }),
            })
            .collect())
    }

    /// Replace network ids by gateway ids. A reply to an unknown message is relayed as a plain
    /// message; an edit, deletion or reaction of an unknown message is not relayed (returns
    /// false).
    async fn resolve_references(
        &self,
        origin: &RoomKey,
        event: &mut Event,
    ) -> Result<bool, EmitError> {
        let store_error = |err: crate::store::StoreError| EmitError::Store(err.to_string());
        if let Some(MessageRef::Native(remote)) = &event.reply_to {
            event.reply_to = self
                .store
                .resolve(origin, remote)
                .await
                .map_err(store_error)?
                .map(MessageRef::Gateway);
        }
        if let Some(target) = event.kind.target_mut()
            && let MessageRef::Native(remote) = target
        {
            match self
                .store
                .resolve(origin, remote)
                .await
                .map_err(store_error)?
            {
                Some(id) => *target = MessageRef::Gateway(id),
                None => return Ok(false),
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
#[path = "intake_tests.rs"]
mod tests;
