//! Benchmark (ignored by default; `cargo test -p patchbay-matrix --test burst -- --ignored
//! --nocapture`): 200 distinct remote authors in a burst into one room, each through its own
//! new ghost, and the steady relay latency in appservice mode beside bot mode, against the
//! test Synapse. Figures are printed; the test asserts only that every message arrived from
//! the right sender.

mod support;

use std::time::{Duration, Instant};

use matrix_sdk::ruma::OwnedRoomId;
use patchbay_sdk::{Connector, Delivery, DeliveryError};
use support::appservice::{fixture, start_bridge};
use support::{User, bot_table, message, start, unique, within};

const AUTHORS: usize = 200;
const LATENCY_SAMPLES: usize = 20;

/// Deliver as the gateway would: retry what is retryable, after the server's delay. Returns
/// how many attempts were rate limited.
async fn deliver(connector: &dyn Connector, delivery: Delivery) -> usize {
    let mut limited = 0;
    loop {
        match connector.deliver(delivery.clone()).await {
            Ok(_) => return limited,
            Err(DeliveryError::Retryable {
                reason,
                retry_after,
            }) => {
                if reason.contains("rate limited") {
                    limited += 1;
                }
                tokio::time::sleep(retry_after.unwrap_or(Duration::from_millis(200))).await;
            }
            Err(e) => panic!("delivery failed: {e}"),
        }
    }
}

/// The median of the time from handing a delivery over until Alice sees it.
async fn latency(
    connector: &dyn Connector,
    alice: &User,
    room_id: &OwnedRoomId,
    tag: &str,
) -> Duration {
    let mut samples = Vec::new();
    for n in 0..LATENCY_SAMPLES {
        let body = format!("{tag} latency {n}");
        let started = Instant::now();
        deliver(connector, message(room_id.as_str(), "steady", &body)).await;
        alice
            .wait_for(room_id, "a latency sample", |e| {
                e["content"]["body"]
                    .as_str()
                    .is_some_and(|b| b.ends_with(&body))
            })
            .await;
        samples.push(started.elapsed());
    }
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run with --ignored --nocapture"]
async fn two_hundred_authors_in_a_burst_and_steady_latency() {
    let fx = fixture();
    let slot = &fx.slots[0];
    let alice = User::register(&fx.synapse, &unique("alice")).await;
    let mut bridge = start_bridge(slot, &fx.synapse, "");
    bridge.running.wait_up().await;
    let room_id = alice.create_room(Some(&unique("burst")), &[], false).await;
    let room = room_id.to_string();
    let connector = bridge.running.connector.clone();

    // The burst: every message is a new author, so a new ghost (register, name, join, send).
    let started = Instant::now();
    let sender = {
        let connector = connector.clone();
        let room = room.clone();
        tokio::spawn(async move {
            let mut limited = 0;
            for n in 0..AUTHORS {
                let author = format!("author{n}");
                limited +=
                    deliver(&*connector, message(&room, &author, &format!("burst {n}"))).await;
            }
            limited
        })
    };
    let mut senders = std::collections::HashSet::new();
    for n in 0..AUTHORS {
        let body = format!("burst {n}");
        let event = alice
            .wait_for(&room_id, "a burst message", |e| {
                e["type"] == "m.room.message" && e["content"]["body"] == body.as_str()
            })
            .await;
        let sender = event["sender"].as_str().unwrap_or_default().to_owned();
        assert_eq!(
            sender,
            format!("@{}irc_libera_author{n}:localhost", slot.prefix)
        );
        senders.insert(sender);
    }
    let burst = started.elapsed();
    let limited = within("the sender", sender).await.expect("sender task");
    assert_eq!(senders.len(), AUTHORS);
    println!(
        "appservice burst: {AUTHORS} new authors in {:.1} s ({:.0} ms per author), {limited} rate-limited attempts",
        burst.as_secs_f64(),
        burst.as_secs_f64() * 1000.0 / AUTHORS as f64
    );

    // Steady latency, appservice: an existing ghost.
    deliver(&*connector, message(&room, "steady", "warm up")).await;
    let appservice = latency(&*connector, &alice, &room_id, "as").await;

    // Steady latency, bot mode, same server, same room.
    let bot_id = fx.synapse.register(&unique("bot"), "password").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut bot = start(
        &bot_table(&fx.synapse, &bot_id, std::slice::from_ref(&room), ""),
        dir.path(),
    );
    bot.wait_up().await;
    deliver(&*bot.connector, message(&room, "steady", "warm up")).await;
    let bot_mode = latency(&*bot.connector, &alice, &room_id, "bot").await;
    println!(
        "steady relay latency (median of {LATENCY_SAMPLES}, delivery handed over -> seen by a Matrix client): appservice {} ms, bot mode {} ms",
        appservice.as_millis(),
        bot_mode.as_millis()
    );
    bot.stop().await;
    bridge.stop().await;
}
