//! Shared test support: the connector built and run from a config table by the sdk's test
//! kit, recording into a [`Recorder::gateway`] (accounts sharing one drop each other's words, as
//! the gateway does), and helpers to deliver and read what a person sees.
#![allow(dead_code)]

pub mod real;

use std::sync::Arc;
use std::time::Duration;

use patchbay_sdk::testkit::{self, Recorder, Running};
use patchbay_sdk::{AccountInfo, Connector, Delivered, Delivery, DeliveryError, Inbound};
use patchbay_sshchat::SshChatFactory;
use patchbay_sshchat_testserver::{TestServer, TestUser};

// Not every test binary delivers.
#[allow(unused_imports)]
pub use patchbay_sdk::testkit::delivery;

/// The plain text of an event's body.
pub fn text(event: &Inbound) -> String {
    event.kind.body().map(|b| b.to_plain()).unwrap_or_default()
}

/// Wait up to [`WAIT`] for the event whose plain text is `want`; `what` names it on timeout.
pub async fn heard(recorder: &Recorder, want: &str, what: &str) -> Inbound {
    recorder
        .wait_for(WAIT, |e| text(e) == want)
        .await
        .expect(what)
}

/// Wait up to [`WAIT`] for a line `user` is shown that ends with `end`; the line. On timeout
/// the panic shows every line the user was shown.
pub async fn shown_ending(user: &TestUser, end: &str) -> String {
    user.wait_line(WAIT, |l| l.ends_with(end))
        .await
        .unwrap_or_else(|| panic!("never shown a line ending {end:?}: {:?}", user.lines()))
}

/// Deliver `text` from `nick` into `room`, which must succeed.
pub async fn relay(bridge: &Running, room: &str, nick: &str, text: &str) {
    bridge
        .deliver(delivery(room, nick, text))
        .await
        .expect("delivered");
}

/// Deliver a run as the gateway's lane does: hand the rest over again after each answer
/// until every delivery is answered `Ok` or the connector fails one. Returns the answers.
pub async fn deliver_all(
    running: &Running,
    run: Vec<Delivery>,
    limit: usize,
) -> Vec<Result<Delivered, DeliveryError>> {
    deliver_all_to(&*running.connector, run, limit).await
}

/// [`deliver_all`] to a connector a test shares with a task of its own.
pub async fn deliver_all_to(
    connector: &dyn Connector,
    run: Vec<Delivery>,
    limit: usize,
) -> Vec<Result<Delivered, DeliveryError>> {
    let mut left: std::collections::VecDeque<Delivery> = run.into();
    let mut answers = Vec::new();
    while !left.is_empty() {
        let take = left.len().min(limit);
        let batch: Vec<Delivery> = left.iter().take(take).cloned().collect();
        let results = connector.deliver_run(batch).await;
        if results.is_empty() {
            break;
        }
        for result in results {
            left.pop_front();
            let failed = result.is_err();
            answers.push(result);
            if failed {
                return answers;
            }
        }
    }
    answers
}

/// The table of the account `nick` on the Devzat test `server` over SSH, reconnecting after a
/// second; then the lines `more`.
pub fn over_ssh(server: &TestServer, nick: &str, more: &str) -> String {
    format!(
        "server = \"{}\"\ndialect = \"devzat\"\nnick = \"{nick}\"\nreconnect_min_secs = 1\n{more}",
        server.ssh_addr(),
    )
}

/// The table of the account `nick` on the Devzat test `server` over its plugin API with `token`.
pub fn over_plugin(server: &TestServer, nick: &str, token: &str) -> String {
    format!(
        "server = \"{}\"\ndialect = \"devzat\"\nnick = \"{nick}\"\nplugin = {{ address = \"{}\", token = \"{token}\" }}\n",
        server.ssh_addr(),
        server.grpc_url().expect("grpc"),
    )
}

/// The table of the account `bridge` on the ssh-chat server at `addr`, reconnecting after a
/// second; then the lines `more`.
pub fn on_ssh_chat(addr: &str, more: &str) -> String {
    format!(
        "server = \"{addr}\"\ndialect = \"ssh-chat\"\nnick = \"bridge\"\nreconnect_min_secs = 1\n{more}"
    )
}

/// Build the connector from a TOML table (as `[sshchat.test]` would hold) and run it.
pub fn start(table: &str) -> Running {
    let dir = tempfile::tempdir().expect("tempdir");
    start_shared(table, "sshchat.test", dir, Arc::new(Recorder::gateway()))
}

/// [`start`], then wait up to `wait` until it is up; the panic says what state it was in.
pub async fn start_up(table: &str, wait: Duration) -> Running {
    let mut bridge = start(table);
    assert!(bridge.wait_up(wait).await, "{:?}", *bridge.state.borrow());
    bridge
}

/// Run account `account` in `dir` recording into `recorder`, which other accounts may share.
pub fn start_shared(
    table: &str,
    account: &str,
    dir: tempfile::TempDir,
    recorder: Arc<Recorder>,
) -> Running {
    let account = AccountInfo {
        account: account.into(),
        config_dir: dir.path().to_owned(),
        data_dir: dir.path().join("data"),
    };
    let built = testkit::build_in(&SshChatFactory, account, table).expect("config is valid");
    let built = testkit::Built {
        dir: Some(dir),
        ..built
    };
    built.start_recording(recorder)
}

pub const WAIT: Duration = Duration::from_secs(15);

/// The numbers of `flood: message N` lines in the order a screen shows them.
pub fn flood_numbers(lines: &[String]) -> Vec<usize> {
    let mut seen = Vec::new();
    for line in lines {
        for (at, _) in line.match_indices("flood: message ") {
            let digits: String = line[at + "flood: message ".len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if let Ok(n) = digits.parse() {
                seen.push(n);
            }
        }
    }
    seen
}

/// `n` deliveries into `#main`, `flood: message 0` to `N-1`, each followed by `pad`.
pub fn flood(n: usize, pad: &str) -> Vec<Delivery> {
    (0..n)
        .map(|i| delivery("#main", "[irc] flood", &format!("message {i}{pad}")))
        .collect()
}

/// Deliver a burst of `n` short lines and check that `watcher` sees every one once and in
/// order; returns how long the deliveries took. Written once because each real server's test
/// asserts the same, under that server's own rate limit.
pub async fn burst_whole_and_in_order(bridge: &Running, watcher: &TestUser, n: usize) -> Duration {
    let started = std::time::Instant::now();
    let answers = deliver_all(bridge, flood(n, ""), bridge.connector.run_limit()).await;
    let elapsed = started.elapsed();
    assert_eq!(answers.len(), n);
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    watcher
        .wait_line(WAIT, |l| l.contains(&format!("flood: message {}", n - 1)))
        .await
        .unwrap_or_else(|| panic!("the last line arrived: {:?}", watcher.lines()));
    let numbers = flood_numbers(&watcher.lines());
    assert_eq!(numbers, (0..n).collect::<Vec<_>>(), "each once, in order");
    let bridge_lines = watcher
        .lines()
        .iter()
        .filter(|l| l.starts_with("bridge: "))
        .count();
    eprintln!("{n} deliveries in {elapsed:?}, in {bridge_lines} messages from the bridge");
    elapsed
}

/// Shut `bridge` down in the middle of a burst of `n` long lines (padded to `pad` columns,
/// so a merged line holds few and the burst takes many paced writes), once `watcher` sees
/// line `cut_at`: the deliveries answered `Ok` must be exactly the lines shown, in order,
/// once `watcher` sees the line containing `left` (the server shows the bridge leaving once it
/// has read everything the bridge wrote). `long` bounds each wait.
pub async fn shutdown_mid_burst(
    bridge: Running,
    watcher: &TestUser,
    (n, pad, cut_at): (usize, usize, usize),
    left: &str,
    long: Duration,
) {
    let connector = bridge.connector.clone();
    let limit = connector.run_limit();
    let run = flood(n, &format!(" {}", "x".repeat(pad)));
    let runner = tokio::spawn(async move {
        let answers = deliver_all_to(&*connector, run, limit).await;
        answers.iter().filter(|a| a.is_ok()).count()
    });
    let cut = format!("flood: message {cut_at} ");
    if watcher
        .wait_line(long, |l| l.contains(&cut))
        .await
        .is_none()
    {
        panic!("the burst started: {:?}", watcher.lines());
    }
    bridge.shutdown.cancel();
    let oks = tokio::time::timeout(long, runner)
        .await
        .expect("the run ends after the shutdown")
        .expect("runner");
    assert!(oks < n, "the shutdown came mid-burst ({oks} of {n})");
    watcher
        .wait_line(long, |l| l.contains(left))
        .await
        .unwrap_or_else(|| panic!("the bridge left: {:?}", watcher.lines()));
    let numbers = flood_numbers(&watcher.lines());
    assert_eq!(
        numbers,
        (0..oks).collect::<Vec<_>>(),
        "Ok for exactly the lines shown"
    );
    eprintln!("{oks} of {n} answered Ok and shown before the shutdown");
    let _ = tokio::time::timeout(WAIT, bridge.task).await;
}
