//! The outbox against connectors that fail: retries, order, isolation, dead letters, and a
//! lane that overflows back to reading the store.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use patchbay_sdk::{
    Author, Connector, ConnectorContext, ConnectorError, Delivered, Delivery, DeliveryError,
    Inbound, RichText,
};
use tokio::sync::Notify;

use super::DeliveryPolicy;
use crate::gateway::{AccountSpec, Engine};
use crate::router::{Direction, RoomKey, Route, Router, Settings};

/// Records what it is given; fails while `down` (retryably) or for good when `refuse` is set.
#[derive(Default)]
struct Recorder {
    down: AtomicBool,
    refuse: AtomicBool,
    attempts: AtomicUsize,
    got: std::sync::Mutex<Vec<String>>,
    changed: Notify,
}

#[async_trait]
impl Connector for Recorder {
    async fn run(&self, ctx: ConnectorContext) -> Result<(), ConnectorError> {
        ctx.state.up();
        ctx.shutdown.cancelled().await;
        Ok(())
    }

    async fn deliver(&self, delivery: Delivery) -> Result<Delivered, DeliveryError> {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        if self.refuse.load(Ordering::Relaxed) {
            return Err(DeliveryError::permanent("no such room"));
        }
        if self.down.load(Ordering::Relaxed) {
            return Err(DeliveryError::retryable("connection refused"));
        }
        let text = delivery
            .event
            .kind
            .body()
            .map(RichText::to_plain)
            .unwrap_or_default();
        self.got
            .lock()
            .expect("lock")
            .push(format!("{}:{text}", delivery.room));
        self.changed.notify_waiters();
        Ok(Delivered::default())
    }
}

impl Recorder {
    fn got(&self) -> Vec<String> {
        self.got.lock().expect("lock").clone()
    }

    async fn wait_for(&self, count: usize) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let changed = self.changed.notified();
            let got = self.got();
            if got.len() >= count {
                return got;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                panic!("only {} of {count} deliveries arrived: {got:?}", got.len());
            }
        }
    }
}

fn route(name: &str, from: &str, to: &str) -> Route {
    Route {
        name: name.into(),
        members: vec![
            (RoomKey::parse(from).expect("room"), Direction::In),
            (RoomKey::parse(to).expect("room"), Direction::Out),
        ],
        settings: vec![Settings::default(); 2],
    }
}

async fn engine(
    dir: &std::path::Path,
    routes: Vec<Route>,
    dest: Arc<Recorder>,
    lane_queue: usize,
) -> Engine {
    let accounts = vec![
        AccountSpec {
            name: "test.src".into(),
            connector: Arc::new(Recorder::default()),
            data_dir: dir.join("src"),
        },
        AccountSpec {
            name: "test.dst".into(),
            connector: dest,
            data_dir: dir.join("dst"),
        },
    ];
    let policy = DeliveryPolicy {
        retry_first: Duration::from_millis(5),
        retry_max: Duration::from_millis(20),
        lane_queue,
    };
    Engine::start(dir, Router::new("gw", routes), accounts, policy, None)
        .await
        .expect("engine")
}

/// Completions are written behind the deliveries: wait until the outbox shows `pending`.
async fn wait_for_pending(engine: &Engine, pending: u64) -> crate::store::StoreStats {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let stats = engine.store.stats().await.expect("stats");
        if stats.pending == pending {
            return stats;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "outbox never reached {pending}: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn say(engine: &Engine, room: &str, text: &str) {
    engine
        .sink("test.src")
        .emit(Inbound::message(
            room,
            Author::named("al"),
            RichText::plain(text),
        ))
        .await
        .expect("emit");
}

#[tokio::test]
async fn a_destination_that_was_down_gets_everything_in_order_once() {
    for lane_queue in [4096, 4] {
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = Arc::new(Recorder::default());
        dest.down.store(true, Ordering::Relaxed);
        let engine = engine(
            dir.path(),
            vec![route("r", "test.src/a", "test.dst/b")],
            dest.clone(),
            lane_queue,
        )
        .await;
        for i in 0..50 {
            say(&engine, "a", &format!("m{i:02}")).await;
        }
        assert!(dest.got().is_empty());
        dest.down.store(false, Ordering::Relaxed);
        let got = dest.wait_for(50).await;
        let expected: Vec<String> = (0..50).map(|i| format!("b:m{i:02}")).collect();
        assert_eq!(got, expected, "lane queue {lane_queue}");
        assert!(
            dest.attempts.load(Ordering::Relaxed) > 50,
            "it was never retried"
        );
        wait_for_pending(&engine, 0).await;
        engine.stop(Duration::from_secs(5)).await;
    }
}

#[tokio::test]
async fn one_dead_room_never_delays_another() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dead = Arc::new(Recorder::default());
    dead.down.store(true, Ordering::Relaxed);
    let live = Arc::new(Recorder::default());
    let accounts = vec![
        AccountSpec {
            name: "test.src".into(),
            connector: Arc::new(Recorder::default()),
            data_dir: dir.path().join("src"),
        },
        AccountSpec {
            name: "test.dead".into(),
            connector: dead.clone(),
            data_dir: dir.path().join("dead"),
        },
        AccountSpec {
            name: "test.live".into(),
            connector: live.clone(),
            data_dir: dir.path().join("live"),
        },
    ];
    let routes = vec![
        route("r1", "test.src/a", "test.dead/x"),
        route("r2", "test.src/a", "test.live/y"),
    ];
    let engine = Engine::start(
        dir.path(),
        Router::new("gw", routes),
        accounts,
        DeliveryPolicy::default(),
        None,
    )
    .await
    .expect("engine");
    for i in 0..20 {
        say(&engine, "a", &format!("m{i}")).await;
    }
    assert_eq!(live.wait_for(20).await.len(), 20);
    assert!(dead.got().is_empty());
    // The dead room's deliveries wait in the outbox.
    wait_for_pending(&engine, 20).await;
    engine.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn permanent_failures_become_dead_letters_and_the_lane_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = Arc::new(Recorder::default());
    dest.refuse.store(true, Ordering::Relaxed);
    let engine = engine(
        dir.path(),
        vec![route("r", "test.src/a", "test.dst/b")],
        dest.clone(),
        4096,
    )
    .await;
    say(&engine, "a", "refused").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while engine.store.stats().await.expect("stats").dead_letters < 1 {
        assert!(tokio::time::Instant::now() < deadline, "no dead letter");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    dest.refuse.store(false, Ordering::Relaxed);
    say(&engine, "a", "accepted").await;
    assert_eq!(dest.wait_for(1).await, ["b:accepted"]);
    let stats = wait_for_pending(&engine, 0).await;
    assert_eq!(stats.dead_letters, 1);
    engine.stop(Duration::from_secs(5)).await;
}

/// The CI-safe guard of the hot path (issue 12): in steady state a delivery never reads the
/// store back, and a burst from many sources is committed in far fewer transactions than it
/// has events (group commit), completions included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_reads_nothing_back_and_commits_in_fewer_transactions_than_events() {
    const EVENTS: usize = 1000;
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = Arc::new(Recorder::default());
    let engine = Arc::new(
        engine(
            dir.path(),
            vec![route("r", "test.src/a", "test.dst/b")],
            dest.clone(),
            4096,
        )
        .await,
    );
    // Warm up: the lane has read the store once, caught up, and now takes from memory.
    say(&engine, "a", "warm-up").await;
    dest.wait_for(1).await;
    let before = engine.store.stats().await.expect("stats");
    let mut tasks = Vec::new();
    for t in 0..50 {
        let engine = Arc::clone(&engine);
        tasks.push(tokio::spawn(async move {
            for i in (t..EVENTS).step_by(50) {
                say(&engine, "a", &format!("m{i}")).await;
            }
        }));
    }
    for task in tasks {
        task.await.expect("source");
    }
    assert_eq!(dest.wait_for(EVENTS + 1).await.len(), EVENTS + 1);
    let after = engine.store.stats().await.expect("stats");
    // The only read in between is `before` itself.
    assert_eq!(after.reads, before.reads + 1, "the hot path read the store");
    let commits = after.commits - before.commits;
    assert!(
        (commits as usize) < EVENTS,
        "{commits} transactions for {EVENTS} events and their completions"
    );
    match Arc::try_unwrap(engine) {
        Ok(engine) => engine.stop(Duration::from_secs(5)).await,
        Err(_) => panic!("the engine is still shared"),
    }
}
