//! Counters and the delivery-latency histogram, rendered in the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use patchbay_sdk::Timestamp;

/// Upper bounds of the latency histogram's buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    accepted: BTreeMap<String, u64>,
    delivered: BTreeMap<(String, String), u64>,
    failed: BTreeMap<(String, String), u64>,
    latency_buckets: [u64; BUCKETS.len()],
    latency_count: u64,
    latency_sum: f64,
}

impl Metrics {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An event from `account` was recorded.
    pub fn accepted(&self, account: &str) {
        *self.inner().accepted.entry(account.to_owned()).or_default() += 1;
    }

    /// A delivery into `account` along `route` succeeded; `since` is when the event happened.
    pub fn delivered(&self, account: &str, route: &str, since: Timestamp) {
        let seconds = ((Timestamp::now().0 - since.0).max(0) as f64) / 1000.0;
        let mut inner = self.inner();
        *inner
            .delivered
            .entry((account.to_owned(), route.to_owned()))
            .or_default() += 1;
        if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
            inner.latency_buckets[i] += 1;
        }
        inner.latency_count += 1;
        inner.latency_sum += seconds;
    }

    /// A delivery into `account` along `route` failed for good.
    pub fn failed(&self, account: &str, route: &str) {
        *self
            .inner()
            .failed
            .entry((account.to_owned(), route.to_owned()))
            .or_default() += 1;
    }

    /// The text exposition, with the gauges the caller read at scrape time.
    pub fn render(&self, outbox: &BTreeMap<String, u64>, up: &BTreeMap<String, bool>) -> String {
        let inner = self.inner();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP patchbay_events_accepted_total Events recorded, by source account."
        );
        let _ = writeln!(out, "# TYPE patchbay_events_accepted_total counter");
        for (account, n) in &inner.accepted {
            let _ = writeln!(
                out,
                "patchbay_events_accepted_total{{account=\"{}\"}} {n}",
                escape(account)
            );
        }
        for (name, help, map) in [
            (
                "patchbay_deliveries_total",
                "Deliveries made, by destination account and route.",
                &inner.delivered,
            ),
            (
                "patchbay_deliveries_failed_total",
                "Deliveries that failed for good (dead letters).",
                &inner.failed,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            for ((account, route), n) in map {
                let _ = writeln!(
                    out,
                    "{name}{{account=\"{}\",route=\"{}\"}} {n}",
                    escape(account),
                    escape(route)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP patchbay_delivery_latency_seconds From the event to its delivery."
        );
        let _ = writeln!(out, "# TYPE patchbay_delivery_latency_seconds histogram");
        let mut cumulative = 0;
        for (bound, n) in BUCKETS.iter().zip(inner.latency_buckets) {
            cumulative += n;
            let _ = writeln!(
                out,
                "patchbay_delivery_latency_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "patchbay_delivery_latency_seconds_bucket{{le=\"+Inf\"}} {}",
            inner.latency_count
        );
        let _ = writeln!(
            out,
            "patchbay_delivery_latency_seconds_sum {}",
            inner.latency_sum
        );
        let _ = writeln!(
            out,
            "patchbay_delivery_latency_seconds_count {}",
            inner.latency_count
        );
        let _ = writeln!(
            out,
            "# HELP patchbay_outbox_depth Deliveries waiting, by destination account."
        );
        let _ = writeln!(out, "# TYPE patchbay_outbox_depth gauge");
        for (account, n) in outbox {
            let _ = writeln!(
                out,
                "patchbay_outbox_depth{{account=\"{}\"}} {n}",
                escape(account)
            );
        }
        let _ = writeln!(
            out,
            "# HELP patchbay_connector_up Whether an account's connector is connected."
        );
        let _ = writeln!(out, "# TYPE patchbay_connector_up gauge");
        for (account, is_up) in up {
            let _ = writeln!(
                out,
                "patchbay_connector_up{{account=\"{}\"}} {}",
                escape(account),
                u8::from(*is_up)
            );
        }
        out
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
