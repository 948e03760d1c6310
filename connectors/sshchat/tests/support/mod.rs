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

// Not every test binary delivers.
#[allow(unused_imports)]
pub use patchbay_sdk::testkit::delivery;

/// The plain text of an event's body.
pub fn text(event: &Inbound) -> String {
    event.kind.body().map(|b| b.to_plain()).unwrap_or_default()
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

/// Build the connector from a TOML table (as `[sshchat.test]` would hold) and run it.
pub fn start(table: &str) -> Running {
    let dir = tempfile::tempdir().expect("tempdir");
    start_shared(table, "sshchat.test", dir, Arc::new(Recorder::gateway()))
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

/// Text as a person sees it: zero-width characters (hop trace, neutralised command words) removed.
pub fn visible(text: &str) -> String {
    text.chars()
        .filter(|c| !patchbay_sshchat_testserver::format::is_zero_width(*c))
        .collect()
}
