//! Two sites, each a nats-server with a JetStream domain of its own, joined as leaf nodes of a
//! hub (a third server without JetStream), as `[bus.sites]` runs them. Real nats-server on
//! free loopback ports (`tests/install-deps.sh` installs it).
//!
//! What it shows: a delivery published at one site into the other site's room reaches that
//! room's outbox; with the hub stopped each site still takes deliveries into its own rooms;
//! what was published for the other site meanwhile crosses once, in order, when the hub is
//! back. Counted, not sampled.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use patchbay_nats::test_servers::{LeafSites, NatsServer};
use patchbay_nats::{Bus, BusOptions, PeerSite, Publish, RoomConsumer, SiteOptions};
use support::{WAIT, connect_with, open_room};

fn options(server: &NatsServer, site: &str, peer: &str) -> BusOptions {
    let accounts: BTreeMap<String, String> = [("devzat.eu", "eu"), ("devzat.us", "us")]
        .into_iter()
        .map(|(a, s)| (a.to_owned(), s.to_owned()))
        .collect();
    BusOptions {
        site: Some(SiteOptions {
            name: site.into(),
            peers: vec![PeerSite {
                name: peer.into(),
                domain: Some(peer.into()),
            }],
            accounts,
        }),
        ..support::options(server, "pb", &format!("test {site}"))
    }
}

async fn publish(bus: &Bus, account: &str, texts: &[String]) {
    let messages = texts
        .iter()
        .map(|text| Publish {
            subject: bus.layout().delivery_subject(account, "#main"),
            msg_id: Some(format!("{account}/{text}")),
            payload: text.clone().into_bytes().into(),
        })
        .collect();
    bus.publish_all(messages).await.expect("published");
}

/// Take deliveries from `room` until `last` came; every text in order of arrival, acked.
async fn take_until(room: &mut RoomConsumer, last: &str) -> Vec<String> {
    let mut texts = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let batch = tokio::time::timeout_at(deadline, room.next(64))
            .await
            .unwrap_or_else(|_| panic!("`{last}` never came; got {texts:?}"))
            .expect("pulled");
        for (seq, payload) in batch {
            room.ack(seq).await.expect("acked");
            texts.push(String::from_utf8_lossy(&payload).into_owned());
        }
        if texts.iter().any(|t| t == last) {
            return texts;
        }
    }
}

/// Publish `texts` from `bus` into `account`'s room, and check that `room` takes exactly
/// them, in order, up to the last.
async fn arrive(bus: &Bus, account: &str, room: &mut RoomConsumer, texts: Vec<String>) {
    publish(bus, account, &texts).await;
    let last = texts.last().expect("something to publish");
    assert_eq!(take_until(room, last).await, texts);
}

fn numbered(site: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|n| format!("{site} {n}")).collect()
}

/// The sites' servers connect to the hub a moment after they start: retry the first
/// cross-site publish's effect rather than guess when the leaf link is up.
async fn connect(server: &NatsServer, site: &str, peer: &str) -> Bus {
    connect_with(options(server, site, peer)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_link_keeps_each_site_going_and_what_waited_crosses_once_in_order() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut sites = LeafSites::start(dir.path(), &["eu", "us"]);
    let eu = connect(sites.site("eu"), "eu", "us").await;
    let us = connect(sites.site("us"), "us", "eu").await;
    let mut eu_room = open_room(&eu, "devzat.eu", "#main");
    let mut us_room = open_room(&us, "devzat.us", "#main");

    // Linked: eu -> us crosses, us -> eu crosses.
    arrive(&eu, "devzat.us", &mut us_room, numbered("eu", 0..20)).await;
    arrive(&us, "devzat.eu", &mut eu_room, numbered("us", 0..20)).await;

    // Cut: each site goes on with its own rooms, and accepts for the other.
    sites.hub.stop();
    arrive(&eu, "devzat.eu", &mut eu_room, numbered("eu-local", 0..30)).await;
    arrive(&us, "devzat.us", &mut us_room, numbered("us-local", 0..30)).await;
    let waited_for_us = numbered("eu", 20..70);
    publish(&eu, "devzat.us", &waited_for_us).await;
    let waited_for_eu = numbered("us", 20..70);
    publish(&us, "devzat.eu", &waited_for_eu).await;

    // Back: what waited crosses once, in order, and nothing else comes with it (a marker
    // published after it is the last thing to arrive).
    sites.hub.spawn();
    publish(&eu, "devzat.us", &["eu marker".to_owned()]).await;
    publish(&us, "devzat.eu", &["us marker".to_owned()]).await;
    let mut expected = waited_for_us.clone();
    expected.push("eu marker".into());
    assert_eq!(take_until(&mut us_room, "eu marker").await, expected);
    let mut expected = waited_for_eu.clone();
    expected.push("us marker".into());
    assert_eq!(take_until(&mut eu_room, "us marker").await, expected);
}

/// An idle room wakes for a delivery sourced from the other site by its bell alone: the
/// outbox stream rings once it stored the delivery. The poll behind the bells is set far
/// longer than the test waits, so only the bell can wake the room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_room_wakes_for_a_delivery_from_the_other_site_without_the_poll() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let sites = LeafSites::start(dir.path(), &["eu", "us"]);
    let no_poll = Some(Duration::from_secs(24 * 3600));
    let eu = connect_with(BusOptions {
        poll: no_poll,
        ..options(sites.site("eu"), "eu", "us")
    })
    .await;
    let us = connect_with(BusOptions {
        poll: no_poll,
        ..options(sites.site("us"), "us", "eu")
    })
    .await;
    // Nothing waits for either room: each holds no consumer and waits on its bell.
    let mut us_room = open_room(&us, "devzat.us", "#main");
    let mut eu_room = open_room(&eu, "devzat.eu", "#main");

    arrive(&eu, "devzat.us", &mut us_room, numbered("eu", 0..5)).await;
    // The site's own deliveries ring the same way (this publish rings no bell of its own).
    arrive(&eu, "devzat.eu", &mut eu_room, numbered("eu-local", 0..5)).await;
}
