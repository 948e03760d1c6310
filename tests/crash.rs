//! Crash safety on the real binary: SIGKILL mid-delivery, restart, and check that every
//! accepted event is delivered and none whose delivery was recorded is delivered again.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use patchbay_sdk::Event;
use support::{Gateway, wait_until};

const MESSAGES: usize = 1500;

fn config(input: &str) -> String {
    format!(
        r#"
[general]
data_dir = "data"

[console.source]
input = "{input}"
output = "source.log"
room = "lobby"
nick = "feeder"

[console.sink]
input = "none"
output = "delivered.log"

[[route]]
name = "r"
inout = ["console.source/lobby"]
out = ["console.sink/lobby"]
# Slow the deliveries down so the kill lands in the middle of them.
rate_limit = {{ messages = 300, per = "1s" }}
"#
    )
}

/// Each delivered message's text and how often it was delivered.
fn delivered(dir: &Path) -> BTreeMap<String, usize> {
    let text = std::fs::read_to_string(dir.join("delivered.log")).unwrap_or_default();
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        if let Some(message) = line.rsplit(' ').next() {
            *counts.entry(message.to_owned()).or_insert(0) += 1;
        }
    }
    counts
}

/// The texts of the accepted events, and of those whose delivery was still in the outbox.
fn store_state(dir: &Path) -> (BTreeSet<String>, BTreeSet<String>) {
    let db = rusqlite::Connection::open(dir.join("data/patchbay.db")).expect("open the store");
    let text_of = |json: String| -> String {
        let event: Event = serde_json::from_str(&json).expect("a stored event");
        event.kind.body().map(|b| b.to_plain()).unwrap_or_default()
    };
    let mut accepted = BTreeSet::new();
    let mut statement = db.prepare("SELECT json FROM events").expect("query");
    for json in statement
        .query_map([], |row| row.get::<_, String>(0))
        .expect("rows")
    {
        accepted.insert(text_of(json.expect("row")));
    }
    let mut pending = BTreeSet::new();
    let mut statement = db
        .prepare("SELECT e.json FROM deliveries d JOIN events e ON e.seq = d.event_seq")
        .expect("query");
    for json in statement
        .query_map([], |row| row.get::<_, String>(0))
        .expect("rows")
    {
        pending.insert(text_of(json.expect("row")));
    }
    (accepted, pending)
}

#[test]
fn sigkill_mid_delivery_loses_nothing_and_repeats_nothing_recorded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut gateway = Gateway::start(dir.path(), &config("stdin"));
    for i in 0..MESSAGES {
        gateway.type_line(&format!("m{i:05}"));
    }
    wait_until(Duration::from_secs(30), "some deliveries", || {
        delivered(dir.path()).len() >= 400
    });
    gateway.kill();

    let before_restart = delivered(dir.path());
    let (accepted, pending) = store_state(dir.path());
    assert!(
        before_restart.len() < MESSAGES && !pending.is_empty(),
        "the kill did not land mid-delivery ({} delivered, {} pending)",
        before_restart.len(),
        pending.len()
    );
    let recorded: BTreeSet<String> = accepted.difference(&pending).cloned().collect();

    // Restart with no new input: the outbox drains.
    let gateway = Gateway::start(dir.path(), &config("none"));
    wait_until(
        Duration::from_secs(60),
        "every accepted event delivered",
        || {
            let now = delivered(dir.path());
            accepted.iter().all(|text| now.contains_key(text))
        },
    );
    assert!(gateway.stop(), "patchbay did not stop cleanly");

    let after = delivered(dir.path());
    for text in &recorded {
        assert_eq!(
            after.get(text),
            Some(&1),
            "{text} was recorded as delivered, then delivered again"
        );
    }
    for (text, count) in &after {
        assert!(
            accepted.contains(text),
            "{text} was delivered but never accepted"
        );
        assert!(*count <= 2, "{text} was delivered {count} times");
    }
    let (_, left) = store_state(dir.path());
    assert!(left.is_empty(), "still in the outbox: {left:?}");
}
