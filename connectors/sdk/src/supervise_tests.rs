//! The supervisor against a scripted fake connection, on a paused clock: no network, and the
//! waits are checked to the millisecond.

use std::collections::VecDeque;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::watch;

use super::*;
use crate::connector::{Emit, EmitError, EventSink};
use crate::event::{EventId, Inbound};
use crate::health::Signal;
use crate::sync::lock;

/// Counts what the supervisor counts, per (account, signal).
#[derive(Default)]
struct Counted(std::sync::Mutex<Vec<(String, Signal)>>);

#[async_trait]
impl Emit for Counted {
    async fn emit(&self, _: &str, _: Inbound) -> Result<Option<EventId>, EmitError> {
        Ok(None)
    }

    fn count(&self, account: &str, signal: Signal) {
        lock(&self.0).push((account.to_owned(), signal));
    }
}

fn context() -> (ConnectorContext, watch::Receiver<ConnectorState>) {
    let (state, rx) = StateHandle::new();
    let ctx = ConnectorContext {
        account: "fake.test".into(),
        sink: EventSink::new("fake.test", Arc::new(Counted::default())),
        state,
        shutdown: CancellationToken::new(),
        data_dir: std::env::temp_dir(),
    };
    (ctx, rx)
}

/// `Down` for `reason`.
fn down(reason: &str) -> ConnectorState {
    ConnectorState::Down {
        reason: reason.into(),
    }
}

/// The first `Down` state `rx` sees.
async fn first_down(rx: &mut watch::Receiver<ConnectorState>) -> ConnectorState {
    rx.wait_for(|s| matches!(s, ConnectorState::Down { .. }))
        .await
        .expect("state")
        .clone()
}

/// One scripted attempt: get up or not, run this long, then end like this.
struct Attempt {
    up: bool,
    runs: Duration,
    ends: Ended,
}

fn attempt(up: bool, runs_ms: u64, ends: Ended) -> Attempt {
    Attempt {
        up,
        runs: Duration::from_millis(runs_ms),
        ends,
    }
}

/// Plays its script; once it runs out, every further attempt waits for shutdown.
struct Fake {
    script: VecDeque<Attempt>,
    state: StateHandle,
    shutdown: CancellationToken,
    /// When each attempt started, from the test's start.
    starts: Vec<Duration>,
    /// The state each attempt saw as it started.
    seen: Vec<ConnectorState>,
    t0: Instant,
}

impl Fake {
    fn new(ctx: &ConnectorContext, script: Vec<Attempt>) -> Self {
        Fake {
            script: script.into(),
            state: ctx.state.clone(),
            shutdown: ctx.shutdown.clone(),
            starts: Vec::new(),
            seen: Vec::new(),
            t0: Instant::now(),
        }
    }
}

impl Connection for Fake {
    async fn connect_once(&mut self) -> Ended {
        self.starts.push(self.t0.elapsed());
        self.seen.push(self.state.get());
        let Some(next) = self.script.pop_front() else {
            self.shutdown.cancelled().await;
            return Ended::Shutdown;
        };
        if next.up {
            self.state.up();
        }
        tokio::time::sleep(next.runs).await;
        next.ends
    }
}

/// Run `supervisor` over `fake` for `time` of the paused clock, then shut down: what the
/// run returned, and the fake as the run left it.
async fn run_for(
    ctx: &ConnectorContext,
    supervisor: Supervisor,
    mut fake: Fake,
    time: Duration,
) -> (Result<(), ConnectorError>, Fake) {
    let run = tokio::spawn(async move {
        let result = supervisor.run(&mut fake).await;
        (result, fake)
    });
    tokio::time::sleep(time).await;
    ctx.shutdown.cancel();
    run.await.expect("the supervisor task")
}

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

fn failed(reason: &str) -> Ended {
    Ended::Failed(reason.into())
}

fn lost(reason: &str) -> Ended {
    Ended::Lost(reason.into())
}

#[tokio::test(start_paused = true)]
async fn failed_attempts_wait_doubling_up_to_the_ceiling() {
    let (ctx, _rx) = context();
    let fake = Fake::new(
        &ctx,
        (0..5)
            .map(|_| attempt(false, 0, failed("refused")))
            .collect(),
    );
    let supervisor = Supervisor::new(&ctx, Backoff::exact(ms(100), ms(400)));
    let (result, fake) = run_for(&ctx, supervisor, fake, Duration::from_secs(10)).await;
    assert!(result.is_ok());
    // Waits of 100, 200, 400, 400, 400 ms between the six attempts.
    assert_eq!(
        fake.starts,
        vec![ms(0), ms(100), ms(300), ms(700), ms(1100), ms(1500)]
    );
    assert_eq!(fake.seen[0], ConnectorState::Connecting);
    assert!(fake.seen.iter().all(|s| *s == ConnectorState::Connecting));
}

#[tokio::test(start_paused = true)]
async fn each_end_is_reported_down_with_its_reason() {
    let (ctx, mut rx) = context();
    let mut fake = Fake::new(&ctx, vec![attempt(true, 50, lost("the server closed"))]);
    let supervisor = Supervisor::new(&ctx, Backoff::exact(ms(1000), ms(1000)));
    let run = tokio::spawn(async move { supervisor.run(&mut fake).await });
    assert_eq!(first_down(&mut rx).await, down("the server closed"));
    ctx.shutdown.cancel();
    assert!(run.await.expect("the supervisor task").is_ok());
    assert_eq!(ctx.state.get(), down("shut down"));
}

#[tokio::test(start_paused = true)]
async fn a_connection_that_held_starts_the_backoff_over() {
    let (ctx, _rx) = context();
    let fake = Fake::new(
        &ctx,
        vec![
            attempt(false, 0, failed("refused")),
            attempt(false, 0, failed("refused")),
            // Up, but dropped before it held: the backoff goes on doubling.
            attempt(true, 100, lost("dropped")),
            // Up for longer than `held`: the next wait is the first one again.
            attempt(true, 5000, lost("dropped")),
        ],
    );
    let supervisor = Supervisor::new(&ctx, Backoff::exact(ms(100), ms(10_000))).held(ms(1000));
    let (result, fake) = run_for(&ctx, supervisor, fake, Duration::from_secs(60)).await;
    assert!(result.is_ok());
    // 0: fails, wait 100; 100: fails, wait 200; 300: up 100 ms, wait 400; 800: up 5 s, wait
    // 100 (reset); 5900.
    assert_eq!(
        fake.starts,
        vec![ms(0), ms(100), ms(300), ms(800), ms(5900)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_fatal_end_is_returned_without_a_retry() {
    let (ctx, _rx) = context();
    let mut fake = Fake::new(
        &ctx,
        vec![
            attempt(false, 0, failed("refused")),
            attempt(false, 0, Ended::Fatal("bad password".into())),
            attempt(false, 0, failed("never reached")),
        ],
    );
    let result = Supervisor::new(&ctx, Backoff::exact(ms(100), ms(100)))
        .run(&mut fake)
        .await;
    let err = result.expect_err("a fatal end is an error");
    assert_eq!(err.to_string(), "bad password");
    assert_eq!(fake.starts.len(), 2, "no attempt after the fatal one");
    assert_eq!(fake.script.len(), 1);
    assert_eq!(ctx.state.get(), down("bad password"));
}

#[tokio::test(start_paused = true)]
async fn shutdown_during_a_wait_stops_at_once() {
    let (ctx, _rx) = context();
    let mut fake = Fake::new(&ctx, vec![attempt(false, 0, failed("refused"))]);
    let supervisor = Supervisor::new(&ctx, Backoff::exact(Duration::from_secs(3600), ms(0)));
    let stop = ctx.shutdown.clone();
    let t0 = Instant::now();
    let run = tokio::spawn(async move { supervisor.run(&mut fake).await });
    tokio::time::sleep(ms(10)).await;
    stop.cancel();
    assert!(run.await.expect("the supervisor task").is_ok());
    assert!(t0.elapsed() < ms(20), "stopped after {:?}", t0.elapsed());
}

#[tokio::test(start_paused = true)]
async fn shutdown_before_the_first_attempt_never_connects() {
    let (ctx, _rx) = context();
    let mut fake = Fake::new(&ctx, vec![attempt(true, 0, lost("x"))]);
    ctx.shutdown.cancel();
    let result = Supervisor::new(&ctx, Backoff::exact(ms(1), ms(1)))
        .run(&mut fake)
        .await;
    assert!(result.is_ok());
    assert!(fake.starts.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_part_names_itself_in_down_reasons_and_leaves_connecting_alone() {
    let (ctx, mut rx) = context();
    ctx.state.up();
    let mut fake = Fake::new(&ctx, vec![attempt(false, 0, failed("refused"))]);
    let supervisor = Supervisor::new(&ctx, Backoff::exact(ms(100), ms(100))).part("#general");
    let run = tokio::spawn(async move {
        let result = supervisor.run(&mut fake).await;
        (result, fake)
    });
    assert_eq!(first_down(&mut rx).await, down("#general: refused"));
    ctx.shutdown.cancel();
    let (result, fake) = run.await.expect("the supervisor task");
    assert!(result.is_ok());
    // The first attempt saw the account up (another part's doing), never `Connecting`.
    assert_eq!(fake.seen[0], ConnectorState::Up);
    assert!(!fake.seen.contains(&ConnectorState::Connecting));
    // Shutting down is the connector's to report for the whole account.
    assert!(
        matches!(ctx.state.get(), ConnectorState::Down { reason } if reason.contains("refused"))
    );
}

#[tokio::test(start_paused = true)]
async fn each_retried_end_counts_as_a_reconnect_of_the_account_and_a_fatal_one_does_not() {
    let (mut ctx, _rx) = context();
    let counted = Arc::new(Counted::default());
    ctx.sink = EventSink::new("fake.test", Arc::clone(&counted) as Arc<dyn Emit>);
    let mut fake = Fake::new(
        &ctx,
        vec![
            attempt(false, 0, failed("refused")),
            attempt(true, 10, lost("the server closed")),
            attempt(false, 0, Ended::Fatal("bad password".into())),
        ],
    );
    let result = Supervisor::new(&ctx, Backoff::exact(ms(100), ms(100)))
        .run(&mut fake)
        .await;
    assert!(result.is_err());
    let counted = lock(&counted.0).clone();
    assert_eq!(
        counted,
        [
            ("fake.test".to_owned(), Signal::Reconnect),
            ("fake.test".to_owned(), Signal::Reconnect)
        ]
    );
}
