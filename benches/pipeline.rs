//! Events per second through router + store + delivery, and the latency from accept to the
//! delivery call.
//!
//! `cargo bench --bench pipeline` runs the criterion throughput group (1, 100 and 10,000
//! routes), then prints p50/p99 latency measured on an idle gateway, then for each table the
//! highest rate and the p50/p99 latency at half that rate (`PATCHBAY_BENCH_HALF_RATE_ROUTES`,
//! default `1,100,10000`, picks the tables).
//!
//! With `PATCHBAY_BENCH_NATS=nats://127.0.0.1:4222` (a `nats-server -js`), the same runs go
//! through the JetStream engine instead, with `PATCHBAY_BENCH_INSTANCES=3` through three
//! instances sharing it (each accepts; each delivers a third of the destination rooms).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use criterion::{BenchmarkId, Criterion, Throughput};
use patchbay::delivery::DeliveryPolicy;
use patchbay::gateway::{AccountSpec, Backend, Engine};
use patchbay::ownership::Sole;
use patchbay::router::{Direction, RoomKey, Route, Router, Settings};
use patchbay::store::JetStreamStore;
use patchbay_sdk::{
    Author, Connector, ConnectorContext, ConnectorError, Delivered, Delivery, DeliveryError,
    Inbound, RichText,
};
use tokio::sync::Notify;

/// How many instances share the JetStream engine (`PATCHBAY_BENCH_INSTANCES`, default 1):
/// each delivers the destination rooms of its own destination account, all accept.
fn instances() -> usize {
    std::env::var("PATCHBAY_BENCH_INSTANCES")
        .ok()
        .and_then(|n| n.parse().ok())
        .filter(|n| *n >= 1)
        .unwrap_or(1)
}

/// The NATS server to bench the JetStream engine against, if one is given.
fn nats_url() -> Option<String> {
    std::env::var("PATCHBAY_BENCH_NATS")
        .ok()
        .filter(|u| !u.is_empty())
}

/// A destination that only counts, and notes when each delivery call came.
#[derive(Default)]
struct Counter {
    delivered: AtomicU64,
    changed: Notify,
    arrivals: std::sync::Mutex<HashMap<String, Instant>>,
    record_arrivals: bool,
}

#[async_trait]
impl Connector for Counter {
    async fn run(&self, ctx: ConnectorContext) -> Result<(), ConnectorError> {
        ctx.state.up();
        ctx.shutdown.cancelled().await;
        Ok(())
    }

    async fn deliver(&self, delivery: Delivery) -> Result<Delivered, DeliveryError> {
        if self.record_arrivals {
            let text = delivery
                .event
                .kind
                .body()
                .map(RichText::to_plain)
                .unwrap_or_default();
            if let Ok(mut arrivals) = self.arrivals.lock() {
                arrivals.insert(text, Instant::now());
            }
        }
        self.delivered.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_waiters();
        Ok(Delivered::default())
    }
}

impl Counter {
    async fn wait_for(&self, total: u64) {
        loop {
            let notified = self.changed.notified();
            if self.delivered.load(Ordering::Relaxed) >= total {
                return;
            }
            let _ = tokio::time::timeout(Duration::from_millis(5), notified).await;
        }
    }
}

struct Bench {
    /// One engine per instance (one without `PATCHBAY_BENCH_INSTANCES`); events are emitted
    /// into all of them in turn.
    engines: Vec<Engine>,
    counter: Arc<Counter>,
    routes: usize,
    _dir: tempfile::TempDir,
}

async fn start(routes: usize, record_arrivals: bool) -> Bench {
    let dir = tempfile::tempdir().expect("tempdir");
    let instances = if nats_url().is_some() { instances() } else { 1 };
    let dst = |i: usize| format!("bench.dst{}", i % instances);
    let table: Vec<Route> = (0..routes)
        .map(|i| Route {
            name: format!("r{i}"),
            members: vec![
                (
                    RoomKey::new("bench.src", format!("room{i}")),
                    Direction::InOut,
                ),
                (RoomKey::new(dst(i), format!("room{i}")), Direction::InOut),
            ],
            settings: vec![Settings::default(); 2],
        })
        .collect();
    let counter = Arc::new(Counter {
        record_arrivals,
        // Room for every arrival of a half-rate run: growing the map means rehashing it
        // inside a delivery call, a stall of the harness that the latency would count.
        arrivals: std::sync::Mutex::new(HashMap::with_capacity(if record_arrivals {
            1 << 20
        } else {
            0
        })),
        ..Counter::default()
    });
    let accounts = |instance: usize| -> Vec<AccountSpec> {
        let own = dir.path().join(format!("i{instance}"));
        std::iter::once(AccountSpec {
            name: "bench.src".into(),
            connector: Arc::new(Counter::default()),
            data_dir: own.join("src"),
        })
        .chain((0..instances).map(|k| AccountSpec {
            name: dst(k),
            connector: counter.clone(),
            data_dir: own.join(dst(k)),
        }))
        .collect()
    };
    let mut engines = Vec::new();
    match nats_url() {
        None => engines.push(
            Engine::start(
                dir.path(),
                Router::new("bench", table),
                accounts(0),
                DeliveryPolicy::default(),
                None,
            )
            .await
            .expect("start the engine"),
        ),
        Some(url) => {
            // A fresh prefix per run: nothing left over from the last one.
            let prefix = format!("bench{}", std::process::id() ^ routes as u32);
            for instance in 0..instances {
                let options = patchbay_nats::BusOptions {
                    servers: vec![url.clone()],
                    prefix: prefix.clone(),
                    name: format!("bench {instance}"),
                    lease: Duration::from_secs(5),
                    retention: Duration::from_secs(3600),
                    ..Default::default()
                };
                let bus = patchbay_nats::Bus::connect(&options)
                    .await
                    .expect("connect to nats");
                // Every instance accepts; each delivers its own destination account.
                let backend = Backend {
                    store: Arc::new(JetStreamStore::new(bus)),
                    ownership: Arc::new(Sole::new(["bench.src".to_owned(), dst(instance)])),
                };
                let engine = Engine::start_with(
                    backend,
                    Router::new("bench", table.clone()),
                    accounts(instance),
                    DeliveryPolicy::default(),
                    None,
                )
                .await
                .expect("start the engine");
                engines.push(engine);
            }
        }
    }
    Bench {
        engines,
        counter,
        routes,
        _dir: dir,
    }
}

fn inbound(room: usize, text: String) -> Inbound {
    Inbound::message(
        format!("room{room}"),
        Author::named("bench"),
        RichText::plain(text),
    )
}

/// Emit `count` events from `tasks` concurrent sources and wait until all are delivered.
async fn burst(bench: &Bench, count: u64, tasks: u64) -> Duration {
    let start = Instant::now();
    let target = bench.counter.delivered.load(Ordering::Relaxed) + count;
    let mut handles = Vec::new();
    for t in 0..tasks {
        let sink = bench.engines[t as usize % bench.engines.len()].sink("bench.src");
        let routes = bench.routes as u64;
        handles.push(tokio::spawn(async move {
            let mut i = t;
            while i < count {
                let room = (i % routes) as usize;
                if let Err(err) = sink.emit(inbound(room, format!("m{i}"))).await {
                    panic!("emit failed: {err}");
                }
                i += tasks;
            }
        }));
    }
    for handle in handles {
        handle.await.expect("emitter");
    }
    bench.counter.wait_for(target).await;
    start.elapsed()
}

fn throughput(c: &mut Criterion, runtime: &tokio::runtime::Runtime) {
    let mut group = c.benchmark_group("durable events through router, store and delivery");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(1));
    let tables: &[usize] = &[1, 100, 10_000];
    for &routes in tables {
        let bench = runtime.block_on(start(routes, false));
        group.bench_function(BenchmarkId::new("routes", routes), |b| {
            b.to_async(runtime)
                .iter_custom(|iters| burst(&bench, iters, 64));
        });
        runtime.block_on(stop(bench));
    }
    group.finish();
}

/// p50/p99 from the emit call to the delivery call, one event at a time on an idle gateway.
fn latency(runtime: &tokio::runtime::Runtime) {
    const EVENTS: usize = 2000;
    runtime.block_on(async {
        let bench = start(1, true).await;
        let sink = bench.engines[0].sink("bench.src");
        let mut samples = Vec::with_capacity(EVENTS);
        for i in 0..EVENTS {
            let text = format!("lat{i}");
            let sent = Instant::now();
            sink.emit(inbound(0, text.clone())).await.expect("emit");
            bench.counter.wait_for(i as u64 + 1).await;
            let arrived = bench
                .counter
                .arrivals
                .lock()
                .ok()
                .and_then(|a| a.get(&text).copied())
                .expect("arrival noted");
            samples.push(arrived.duration_since(sent));
        }
        samples.sort();
        let pick = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize];
        println!(
            "latency accept -> delivery call over {EVENTS} events (idle gateway): p50 {:?}, p99 {:?}, max {:?}",
            pick(0.50),
            pick(0.99),
            samples[samples.len() - 1]
        );
        stop(bench).await;
    });
}

/// Accept -> delivery latency under load: the table's highest rate first (a burst from 64
/// sources), then events paced at half that rate from 64 sources for [`PACED_FOR`], each
/// event's emit call to its delivery call. The aim: p99 under 5 ms at half of
/// 20,000/s with three instances.
fn half_rate(runtime: &tokio::runtime::Runtime) {
    const BURST: u64 = 5_000;
    const SOURCES: u64 = 64;
    const PACED_FOR: Duration = Duration::from_secs(5);
    const PACER_GRAIN: Duration = Duration::from_micros(200);
    let tables: Vec<usize> = std::env::var("PATCHBAY_BENCH_HALF_RATE_ROUTES")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 100, 10_000]);
    for routes in tables {
        runtime.block_on(async {
            let bench = start(routes, true).await;
            // Warm: every room's lane has seen a delivery.
            burst(&bench, routes.max(SOURCES as usize) as u64, SOURCES).await;
            let took = burst(&bench, BURST, SOURCES).await;
            let max_rate = BURST as f64 / took.as_secs_f64();
            let rate = max_rate / 2.0;
            let total = (rate * PACED_FOR.as_secs_f64()) as u64;
            let target = bench.counter.delivered.load(Ordering::Relaxed) + total;
            // Event i is emitted at i / rate, through source i % SOURCES, whether or not the
            // ones before it were accepted (a source that waited for its last accept would
            // hide a stall from the figures: only its one waiting event would count it). One
            // thread releases the events at their times, within PACER_GRAIN, and a task per
            // event emits it. (Paced by tokio's timer, whose wheel turns once a millisecond,
            // each millisecond's events went out together: a burst of rate / 1,000 at once.)
            let sinks: Arc<Vec<_>> = Arc::new(
                (0..SOURCES as usize)
                    .map(|t| bench.engines[t % bench.engines.len()].sink("bench.src"))
                    .collect(),
            );
            let handle = tokio::runtime::Handle::current();
            let began = Instant::now();
            let pacer = std::thread::spawn(move || {
                let mut emits = Vec::with_capacity(total as usize);
                for i in 0..total {
                    let at = began + Duration::from_secs_f64(i as f64 / rate);
                    // Not due yet: sleep until it is, and at least a grain, so that the
                    // thread wakes a few thousand times a second, not once an event.
                    if let Some(wait) = at.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait.max(PACER_GRAIN));
                    }
                    let sinks = Arc::clone(&sinks);
                    // Timed from its release: a wait for a worker to run the task counts too.
                    let released = Instant::now();
                    emits.push(handle.spawn(async move {
                        let text = format!("h{i}");
                        let event = inbound((i % routes as u64) as usize, text.clone());
                        if let Err(err) = sinks[(i % SOURCES) as usize].emit(event).await {
                            panic!("emit failed: {err}");
                        }
                        (text, released, released.elapsed())
                    }));
                }
                emits
            });
            let emits = tokio::task::spawn_blocking(move || pacer.join())
                .await
                .expect("the pacer's join")
                .expect("the pacer");
            let mut sent = Vec::with_capacity(emits.len());
            for emit in emits {
                sent.push(emit.await.expect("an emit"));
            }
            bench.counter.wait_for(target).await;
            let paced_took = began.elapsed();
            let mut samples: Vec<Duration> = {
                let arrivals = bench.counter.arrivals.lock().expect("arrivals");
                sent.iter()
                    .map(|(text, at, _)| arrivals.get(text).expect("arrival noted").duration_since(*at))
                    .collect()
            };
            samples.sort();
            let pick = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize];
            // The accept alone (the emit call until the event is durable): where in the hop
            // the tail is.
            let mut accepts: Vec<Duration> = sent.iter().map(|(_, _, took)| *took).collect();
            accepts.sort();
            let accept = |q: f64| accepts[((accepts.len() as f64 - 1.0) * q) as usize];
            println!(
                "half rate, {routes} routes: highest {max_rate:.0} events/s; at {:.0} events/s ({total} events over {:.1} s) accept -> delivery call p50 {:?}, p99 {:?}, max {:?}; of it the accept p50 {:?}, p99 {:?}",
                total as f64 / paced_took.as_secs_f64(),
                paced_took.as_secs_f64(),
                pick(0.50),
                pick(0.99),
                samples[samples.len() - 1],
                accept(0.50),
                accept(0.99),
            );
            stop(bench).await;
        });
    }
}

async fn stop(bench: Bench) {
    for engine in bench.engines {
        engine.stop(Duration::from_secs(5)).await;
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut criterion = Criterion::default().configure_from_args();
    throughput(&mut criterion, &runtime);
    criterion.final_summary();
    latency(&runtime);
    half_rate(&runtime);
}
