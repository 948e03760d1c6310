//! Intake: what happens to an event a connector emits, up to the moment it is durable.
//!
//! Drop the connector's own echoes; resolve the message references it names by its network's
//! ids into gateway ids; ask the router where the event goes; record the event and its
//! deliveries in one transaction. The store's feed hands them to the outbox from there.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use patchbay_sdk::{Emit, EmitError, Event, EventId, Inbound, MessageRef, Timestamp};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::router::{RoomKey, Router};
use crate::store::{Accepted, NewDelivery, Store};

pub struct Intake {
    pub store: Arc<dyn Store>,
    pub router: Arc<Router>,
    pub metrics: Arc<Metrics>,
    /// Cancelled when the gateway stops taking events.
    pub closed: CancellationToken,
}

#[async_trait]
impl Emit for Intake {
    async fn emit(&self, account: &str, inbound: Inbound) -> Result<Option<EventId>, EmitError> {
        if self.closed.is_cancelled() {
            return Err(EmitError::Closed);
        }
        if inbound.is_echo {
            return Ok(None);
        }
        let mut event = Event::from_inbound(account, inbound);
        let origin = RoomKey::new(&event.origin.account, &event.origin.room);
        let routable = self.resolve_references(&origin, &mut event).await?;
        let targets = if routable {
            self.router.route(&event)
        } else {
            tracing::debug!(room = %origin, event = %event.id, "not relayed: it refers to a message the gateway does not know");
            Vec::new()
        };
        let now = Instant::now();
        let deliveries: Vec<NewDelivery> = targets
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
            .collect();
        let id = event.id;
        match self.store.accept(event, deliveries).await {
            Ok(Accepted::Recorded) => {
                self.metrics.accepted(account);
                Ok(Some(id))
            }
            Ok(Accepted::Duplicate) => Ok(None),
            Err(err) => Err(EmitError::Store(err.to_string())),
        }
    }
}

impl Intake {
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
