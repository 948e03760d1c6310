//! Counters and the delivery-latency histogram, rendered in the Prometheus text format; and
//! what the status page shows of the recent past: each route edge's traffic over the last
//! [`TRAFFIC_MINUTES`], each account's last event in and out, and a feed of recent activity.
//!
//! Everything here is bounded and never waits for a reader. The feed keeps the last
//! [`FEED_KEEP`] activities for a page that opens, and hands new ones to live readers through
//! a broadcast channel of [`FEED_LAG`] slots: a reader that falls behind (a slow browser on an
//! SSE stream) loses the oldest and is told how many it skipped; the gateway never blocks on
//! it and holds no more for it. Edge traffic is kept per minute, and edges idle for the whole
//! window are dropped, so memory follows the routes in use, not the traffic.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::Mutex;

use patchbay_sdk::sync::lock;
use patchbay_sdk::{Event, RoomKey, Signal, Timestamp};
use serde::Serialize;

mod feed;
pub use feed::{Activity, FEED_KEEP, FEED_LAG, Feed, Relay, What};

/// Something the gateway itself went through that is both logged and counted (a delivery
/// retried or dead-lettered, a reload applied or refused): its one [`emit`](GatewayEvent::emit)
/// does both, as a connector's [`patchbay_sdk::HealthEvent`] does, so the log and `/metrics`
/// cannot disagree. Each type lives beside the code it reports on, so its log line keeps
/// that module's target.
pub trait GatewayEvent {
    /// Write the event's log line (or, for an event that repeats, the lines worth reading).
    fn log(&self);
    /// Add it to the metrics.
    fn count(&self, metrics: &Metrics);

    fn emit(&self, metrics: &Metrics) {
        self.log();
        self.count(metrics);
    }
}

/// How far back edge traffic is counted, in whole minutes.
pub const TRAFFIC_MINUTES: usize = 15;

/// Upper bounds of the latency histogram's buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
    /// Recent activity, for the status page's live feed.
    pub feed: Feed,
}

#[derive(Default)]
struct Inner {
    accepted: BTreeMap<String, u64>,
    delivered: BTreeMap<(String, String), u64>,
    failed: BTreeMap<(String, String), u64>,
    latency_buckets: [u64; BUCKETS.len()],
    latency_count: u64,
    latency_sum: f64,
    /// Per (route, origin room, destination room).
    edges: HashMap<EdgeKey, EdgeTraffic>,
    /// The minute edges were last pruned in.
    pruned_minute: i64,
    /// When each account last had an event recorded, and last took a delivery (ms).
    last_in: BTreeMap<String, i64>,
    last_out: BTreeMap<String, i64>,
    /// Delivery attempts that failed and are tried again, by destination account.
    retried: BTreeMap<String, u64>,
    /// Reloads by outcome: `applied`, `refused`.
    reloads: BTreeMap<&'static str, u64>,
    /// Connectors' health events (reconnects, rate limits, ...), per account and signal.
    connector_events: BTreeMap<(String, Signal), u64>,
}

impl Metrics {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    /// An event from `account` was recorded.
    pub fn accepted(&self, account: &str) {
        let now = Timestamp::now().0;
        let mut inner = self.inner();
        *inner.accepted.entry(account.to_owned()).or_default() += 1;
        inner.last_in.insert(account.to_owned(), now);
    }

    /// `account`'s connector went through `signal` (it logged it already: see
    /// [`patchbay_sdk::health`]).
    pub fn connector_event(&self, account: &str, signal: Signal) {
        *self
            .inner()
            .connector_events
            .entry((account.to_owned(), signal))
            .or_default() += 1;
    }

    /// A delivery into one of `account`'s rooms failed and will be tried again.
    pub fn retried(&self, account: &str) {
        *self.inner().retried.entry(account.to_owned()).or_default() += 1;
    }

    /// A config reload was applied, or refused (the running config stayed).
    pub fn reloaded(&self, applied: bool) {
        let outcome = if applied { "applied" } else { "refused" };
        *self.inner().reloads.entry(outcome).or_default() += 1;
    }

    /// `event`, along `route`, was delivered into `room`.
    pub fn delivered(&self, room: &RoomKey, route: &str, event: &Event) {
        let now = Timestamp::now().0;
        let latency_ms = (now - event.time.0).max(0);
        let seconds = latency_ms as f64 / 1000.0;
        {
            let mut inner = self.inner();
            *inner
                .delivered
                .entry((room.account.clone(), route.to_owned()))
                .or_default() += 1;
            if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
                inner.latency_buckets[i] += 1;
            }
            inner.latency_count += 1;
            inner.latency_sum += seconds;
            inner.last_out.insert(room.account.clone(), now);
            inner.count_edge(edge_key(room, route, event), now, true);
        }
        let relay = Relay::of(room, route, event);
        self.feed.push(now, What::Delivered { relay, latency_ms });
    }

    /// `event`, along `route`, failed for good in `room` (it is now a dead letter).
    pub fn failed(&self, room: &RoomKey, route: &str, event: &Event, reason: &str) {
        let now = Timestamp::now().0;
        {
            let mut inner = self.inner();
            *inner
                .failed
                .entry((room.account.clone(), route.to_owned()))
                .or_default() += 1;
            inner.count_edge(edge_key(room, route, event), now, false);
        }
        let relay = Relay::of(room, route, event);
        let reason = feed::preview(reason, feed::REASON_CHARS);
        self.feed.push(now, What::DeadLettered { relay, reason });
    }

    /// Each edge with traffic in the last [`TRAFFIC_MINUTES`], by route, origin, destination.
    pub fn traffic(&self) -> Vec<EdgeCount> {
        let now = Timestamp::now().0;
        let minute = now / 60_000;
        let inner = self.inner();
        let mut edges: Vec<EdgeCount> = inner
            .edges
            .iter()
            .filter_map(|((route, from, to), traffic)| {
                let (delivered, failed) = traffic.window(minute);
                let per_minute = delivered.to_vec();
                let (delivered, failed): (u64, u64) = (
                    delivered.iter().map(|n| u64::from(*n)).sum(),
                    failed.iter().map(|n| u64::from(*n)).sum(),
                );
                (delivered + failed > 0).then(|| EdgeCount {
                    route: route.clone(),
                    from: from.clone(),
                    to: to.clone(),
                    delivered,
                    failed,
                    per_minute,
                    last_ms: traffic.last_ms,
                })
            })
            .collect();
        edges.sort_by(|a, b| (&a.route, &a.from, &a.to).cmp(&(&b.route, &b.from, &b.to)));
        edges
    }

    /// When `account` last had an event recorded and last took a delivery (ms since the epoch).
    pub fn last_in_out(&self, account: &str) -> (Option<i64>, Option<i64>) {
        let inner = self.inner();
        (
            inner.last_in.get(account).copied(),
            inner.last_out.get(account).copied(),
        )
    }

    /// The text exposition, with the gauges the caller read at scrape time.
    pub fn render(&self, outbox: &BTreeMap<String, u64>, up: &BTreeMap<String, bool>) -> String {
        let inner = self.inner();
        let mut out = String::new();
        by_account(
            &mut out,
            ("patchbay_events_accepted_total", "counter"),
            "Events recorded, by source account.",
            &inner.accepted,
        );
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
            family(&mut out, name, "counter", help);
            for ((account, route), n) in map {
                sample(&mut out, name, &[("account", account), ("route", route)], n);
            }
        }
        by_account(
            &mut out,
            ("patchbay_delivery_retries_total", "counter"),
            "Delivery attempts that failed and are tried again, by destination account.",
            &inner.retried,
        );
        let name = "patchbay_delivery_latency_seconds";
        family(
            &mut out,
            name,
            "histogram",
            "From the event to its delivery.",
        );
        let bucket = "patchbay_delivery_latency_seconds_bucket";
        let mut cumulative = 0;
        for (bound, n) in BUCKETS.iter().zip(inner.latency_buckets) {
            cumulative += n;
            sample(&mut out, bucket, &[("le", &bound.to_string())], cumulative);
        }
        sample(&mut out, bucket, &[("le", "+Inf")], inner.latency_count);
        sample(&mut out, &format!("{name}_sum"), &[], inner.latency_sum);
        sample(&mut out, &format!("{name}_count"), &[], inner.latency_count);
        by_account(
            &mut out,
            ("patchbay_outbox_depth", "gauge"),
            "Deliveries waiting, by destination account.",
            outbox,
        );
        let up = up
            .iter()
            .map(|(account, is_up)| (account, u8::from(*is_up)));
        by_account(
            &mut out,
            ("patchbay_connector_up", "gauge"),
            "Whether an account's connector is connected.",
            up,
        );
        let name = "patchbay_reloads_total";
        let help = "Config reloads, by outcome (applied, refused).";
        family(&mut out, name, "counter", help);
        for (outcome, n) in &inner.reloads {
            sample(&mut out, name, &[("outcome", outcome)], n);
        }
        let name = "patchbay_connector_events_total";
        let help = "What connectors went through (reconnects, rate limits, refusals), by account and event.";
        family(&mut out, name, "counter", help);
        for ((account, signal), n) in &inner.connector_events {
            let signal = signal.to_string();
            sample(
                &mut out,
                name,
                &[("account", account), ("event", &signal)],
                n,
            );
        }
        out
    }
}

/// A metric family's `# HELP` and `# TYPE` lines.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A family with one sample per account: (`name`, `kind`), then its help and samples.
fn by_account<'a, V: std::fmt::Display>(
    out: &mut String,
    (name, kind): (&str, &str),
    help: &str,
    samples: impl IntoIterator<Item = (&'a String, V)>,
) {
    family(out, name, kind, help);
    for (account, value) in samples {
        sample(out, name, &[("account", account)], value);
    }
}

/// One sample: `name{label="value",…} value`, the label values escaped.
fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
    out.push_str(name);
    for (i, (label, text)) in labels.iter().enumerate() {
        out.push(if i == 0 { '{' } else { ',' });
        let _ = write!(out, "{label}=\"{}\"", escape(text));
    }
    if !labels.is_empty() {
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

impl Inner {
    /// Count one delivery (or failure) on an edge in minute `now`; once a minute, drop the
    /// edges idle for the whole window.
    fn count_edge(&mut self, key: EdgeKey, now_ms: i64, delivered: bool) {
        let minute = now_ms / 60_000;
        if minute != self.pruned_minute {
            self.pruned_minute = minute;
            let horizon = now_ms - (TRAFFIC_MINUTES as i64) * 60_000;
            self.edges.retain(|_, edge| edge.last_ms >= horizon);
        }
        let edge = self.edges.entry(key).or_insert_with(|| EdgeTraffic {
            newest_minute: minute,
            delivered: [0; TRAFFIC_MINUTES],
            failed: [0; TRAFFIC_MINUTES],
            last_ms: now_ms,
        });
        edge.advance(minute);
        let slot = if delivered {
            &mut edge.delivered[TRAFFIC_MINUTES - 1]
        } else {
            &mut edge.failed[TRAFFIC_MINUTES - 1]
        };
        *slot = slot.saturating_add(1);
        edge.last_ms = edge.last_ms.max(now_ms);
    }
}

/// (route, origin `ACCOUNT/ROOM`, destination `ACCOUNT/ROOM`).
type EdgeKey = (String, String, String);

fn edge_key(room: &RoomKey, route: &str, event: &Event) -> EdgeKey {
    (
        route.to_owned(),
        format!("{}/{}", event.origin.account, event.origin.room),
        room.to_string(),
    )
}

/// One edge's counts per minute; the last slot is `newest_minute`, the first the oldest.
#[derive(Clone, Copy)]
struct EdgeTraffic {
    newest_minute: i64,
    delivered: [u32; TRAFFIC_MINUTES],
    failed: [u32; TRAFFIC_MINUTES],
    last_ms: i64,
}

impl EdgeTraffic {
    /// Move the window so that its last slot is `minute`, emptying the minutes passed.
    fn advance(&mut self, minute: i64) {
        let passed = (minute - self.newest_minute).clamp(0, TRAFFIC_MINUTES as i64) as usize;
        if passed > 0 {
            for counts in [&mut self.delivered, &mut self.failed] {
                counts.rotate_left(passed);
                counts[TRAFFIC_MINUTES - passed..].fill(0);
            }
            self.newest_minute = minute;
        }
    }

    /// The window as of `minute` (delivered, failed), without changing it.
    fn window(&self, minute: i64) -> ([u32; TRAFFIC_MINUTES], [u32; TRAFFIC_MINUTES]) {
        let mut copy = *self;
        copy.advance(minute);
        (copy.delivered, copy.failed)
    }
}

/// One edge in [`Metrics::traffic`].
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct EdgeCount {
    pub route: String,
    /// Where the events came from, `ACCOUNT/ROOM`.
    pub from: String,
    /// Where they were delivered, `ACCOUNT/ROOM`.
    pub to: String,
    /// Deliveries in the window.
    pub delivered: u64,
    /// Dead letters in the window.
    pub failed: u64,
    /// Deliveries per minute, oldest first; the last is the current minute.
    pub per_minute: Vec<u32>,
    /// The last delivery or failure, in ms since the epoch.
    pub last_ms: i64,
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use patchbay_sdk::{Author, EventId, Kind, Origin, RichText};

    fn event(text: &str) -> Event {
        Event {
            id: EventId::new(),
            origin: Origin {
                account: "irc.net".into(),
                room: "#lobby".into(),
                remote_id: None,
            },
            author: Author::named("alice"),
            time: Timestamp::now(),
            reply_to: None,
            hops: Vec::new(),
            kind: Kind::Message {
                body: RichText::plain(text),
                attachments: Vec::new(),
            },
        }
    }

    #[test]
    fn a_delivery_counts_on_its_edge_and_reaches_the_feed() {
        let metrics = Metrics::default();
        let room = RoomKey::new("console.you", "lobby");
        let (_, mut live) = metrics.feed.subscribe(None);
        metrics.delivered(&room, "lobby", &event("hello\nthere"));
        metrics.delivered(&room, "lobby", &event("again"));
        metrics.failed(&room, "lobby", &event("nope"), "answered 400");
        let traffic = metrics.traffic();
        assert_eq!(traffic.len(), 1);
        let edge = &traffic[0];
        assert_eq!(
            (
                edge.from.as_str(),
                edge.to.as_str(),
                edge.delivered,
                edge.failed
            ),
            ("irc.net/#lobby", "console.you/lobby", 2, 1)
        );
        assert_eq!(edge.per_minute.len(), TRAFFIC_MINUTES);
        assert_eq!(edge.per_minute.last(), Some(&2));
        let first = live.try_recv().expect("the first activity");
        let json = serde_json::to_value(&*first).expect("json");
        assert_eq!(json["kind"], "delivered");
        assert_eq!(json["preview"], "hello there");
        assert_eq!(json["room"], "console.you/lobby");
        assert_eq!(json["author"], "alice");
        assert!(metrics.last_in_out("console.you").1.is_some());
    }

    #[test]
    fn connector_events_render_as_one_counter_family_by_account_and_event() {
        let metrics = Metrics::default();
        metrics.connector_event("irc.net", Signal::Reconnect);
        metrics.connector_event("irc.net", Signal::Reconnect);
        metrics.connector_event("sshchat.dz", Signal::RateLimited);
        let text = metrics.render(&BTreeMap::new(), &BTreeMap::new());
        let family: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("patchbay_connector_events_total"))
            .collect();
        assert_eq!(
            family,
            [
                "# HELP patchbay_connector_events_total What connectors went through (reconnects, rate limits, refusals), by account and event.",
                "# TYPE patchbay_connector_events_total counter",
                "patchbay_connector_events_total{account=\"irc.net\",event=\"reconnect\"} 2",
                "patchbay_connector_events_total{account=\"sshchat.dz\",event=\"rate_limited\"} 1",
            ]
        );
    }

    #[test]
    fn retries_and_reloads_are_counted_by_account_and_by_outcome() {
        let metrics = Metrics::default();
        metrics.retried("irc.net");
        metrics.retried("irc.net");
        metrics.reloaded(true);
        metrics.reloaded(false);
        metrics.reloaded(true);
        let text = metrics.render(&BTreeMap::new(), &BTreeMap::new());
        for line in [
            "# TYPE patchbay_delivery_retries_total counter",
            "patchbay_delivery_retries_total{account=\"irc.net\"} 2",
            "# TYPE patchbay_reloads_total counter",
            "patchbay_reloads_total{outcome=\"applied\"} 2",
            "patchbay_reloads_total{outcome=\"refused\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in:\n{text}"
            );
        }
    }

    #[test]
    fn edge_windows_forget_old_minutes() {
        let mut edge = EdgeTraffic {
            newest_minute: 100,
            delivered: [1; TRAFFIC_MINUTES],
            failed: [0; TRAFFIC_MINUTES],
            last_ms: 0,
        };
        let (delivered, _) = edge.window(103);
        assert_eq!(delivered.iter().sum::<u32>(), (TRAFFIC_MINUTES - 3) as u32);
        assert_eq!(delivered[TRAFFIC_MINUTES - 1], 0);
        edge.advance(100 + TRAFFIC_MINUTES as i64 + 5);
        assert_eq!(edge.delivered, [0; TRAFFIC_MINUTES]);
    }
}
