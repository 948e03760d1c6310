//! What a lane reports of a delivery that did not simply succeed: each a [`GatewayEvent`]
//! whose `emit` writes the line the lane always logged and counts it in `/metrics`.

use std::time::Duration;

use crate::metrics::{GatewayEvent, Metrics};
use crate::store::Pending;

/// An attempt at `pending` failed and is tried again after `wait`. Every retry is counted
/// (`patchbay_delivery_retries_total`); the log shows the first and then each power of two
/// of `attempts`, so a destination down for hours writes a few dozen lines, not thousands.
pub(super) struct DeliveryRetried<'a> {
    pub pending: &'a Pending,
    /// Attempts so far at this run, this one included.
    pub attempts: u32,
    pub wait: Duration,
    pub reason: &'a str,
}

impl GatewayEvent for DeliveryRetried<'_> {
    fn log(&self) {
        let DeliveryRetried {
            pending,
            attempts,
            wait,
            reason,
        } = self;
        if *attempts <= 1 || attempts.is_power_of_two() {
            tracing::warn!(
                room = %pending.room, event = %pending.event.id, attempts,
                "delivery failed, retrying in {:.1}s: {reason}", wait.as_secs_f64()
            );
        }
    }

    fn count(&self, metrics: &Metrics) {
        metrics.retried(&self.pending.room.account);
    }
}

/// `pending` failed for good and moves to the dead letters
/// (`patchbay_deliveries_failed_total`, and the status page's feed).
pub(super) struct DeadLettered<'a> {
    pub pending: &'a Pending,
    pub reason: &'a str,
}

impl GatewayEvent for DeadLettered<'_> {
    fn log(&self) {
        let DeadLettered { pending, reason } = self;
        tracing::error!(
            room = %pending.room, event = %pending.event.id, route = %pending.route,
            "delivery failed for good, moved to the dead letters: {reason}"
        );
    }

    fn count(&self, metrics: &Metrics) {
        let pending = self.pending;
        metrics.failed(&pending.room, &pending.route, &pending.event, self.reason);
    }
}
