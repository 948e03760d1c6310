//! A room's outbox against a real nats-server (JetStream on, a temp store dir, a free loopback
//! port; `tests/install-deps.sh` installs it): what a new holder is handed again after the
//! old one stopped mid-stream, counted.

mod support;

use std::time::{Duration, Instant};

use patchbay_nats::test_servers::NatsServer;
use patchbay_nats::{Bus, BusOptions, Publish};
use support::{WAIT, connect_with, open_room, options};

async fn connect(server: &NatsServer, name: &str) -> Bus {
    connect_with(options(server, "t", name)).await
}

async fn publish(bus: &Bus, range: std::ops::Range<usize>) {
    let messages = range
        .map(|n| Publish {
            subject: bus.layout().delivery_subject("irc.a", "#room"),
            msg_id: None,
            payload: format!("d{n}").into_bytes().into(),
        })
        .collect();
    bus.publish_all(messages).await.expect("published");
}

fn text(payload: &[u8]) -> String {
    String::from_utf8_lossy(payload).into_owned()
}

/// The first delivery a holder is handed.
async fn first(bus: &Bus) -> String {
    let mut room = open_room(bus, "irc.a", "#room");
    let batch = tokio::time::timeout(WAIT, room.next(1))
        .await
        .expect("a delivery came")
        .expect("pulled");
    text(&batch[0].1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_holder_gets_at_most_the_last_two_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = NatsServer::start(dir.path());
    let old = connect(&server, "old").await;
    publish(&old, 0..20).await;
    let mut room = open_room(&old, "irc.a", "#room");
    // Ten delivered and acknowledged one after the other, as a lane does; the eleventh
    // handed out and not done when the holder stops.
    let mut taken = Vec::new();
    while taken.len() < 11 {
        for (seq, payload) in room.next(1).await.expect("pulled") {
            taken.push(text(&payload));
            if taken.len() <= 10 {
                room.ack(seq).await.expect("acked");
            }
        }
    }
    assert_eq!(taken, (0..11).map(|n| format!("d{n}")).collect::<Vec<_>>());
    // A new holder replaces the consumer at once, whatever of the old one's last
    // acknowledgement the server has seen: d9 (its acknowledgement unconfirmed) or d10 (in
    // flight) comes first, nothing before.
    let new = connect(&server, "new").await;
    let again = first(&new).await;
    assert!(
        again == "d9" || again == "d10",
        "the new holder started at {again}"
    );
    drop(room);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settled_acknowledgement_is_never_handed_out_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = NatsServer::start(dir.path());
    let old = connect(&server, "old").await;
    publish(&old, 0..5).await;
    let mut room = open_room(&old, "irc.a", "#room");
    let mut done = 0;
    while done < 3 {
        for (seq, _) in room.next(1).await.expect("pulled") {
            room.ack(seq).await.expect("acked");
            done += 1;
        }
    }
    room.settle().await.expect("confirmed");
    let new = connect(&server, "new").await;
    assert_eq!(first(&new).await, "d3");
    drop(room);
}

/// The single outbox stream of a patchbay from before the shards: the bus will not start
/// while it holds deliveries (they would wait there unseen), and removes it once empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbox_from_before_the_shards_is_drained_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = NatsServer::start(dir.path());
    // Connected once, so JetStream is up; then the old stream put back as it was.
    drop(connect(&server, "first").await);
    let client = async_nats::connect(&server.url()).await.expect("connected");
    let js = async_nats::jetstream::new(client);
    let old = js
        .create_stream(async_nats::jetstream::stream::Config {
            name: "t_outbox".into(),
            subjects: vec!["t.out.>".into()],
            retention: async_nats::jetstream::stream::RetentionPolicy::WorkQueue,
            ..Default::default()
        })
        .await
        .expect("old outbox created");
    js.publish("t.out.irc_a.room", "waiting".into())
        .await
        .expect("published")
        .await
        .expect("stored");
    let options = BusOptions {
        servers: vec![server.url()],
        prefix: "t".into(),
        name: "upgraded".into(),
        ..Default::default()
    };
    let refused = Bus::connect(&options)
        .await
        .err()
        .expect("the bus refuses to start")
        .to_string();
    assert!(
        refused.contains("t_outbox") && refused.contains("holds 1 deliveries"),
        "{refused}"
    );
    old.purge().await.expect("purged");
    Bus::connect(&options)
        .await
        .expect("started once it is empty");
    assert!(
        js.get_stream("t_outbox").await.is_err(),
        "the empty old outbox is removed"
    );
}

/// The state of the outbox shard that holds `irc.a`'s `#room`, read through a client of its
/// own.
async fn room_shard(server: &NatsServer, bus: &Bus) -> async_nats::jetstream::stream::State {
    let client = async_nats::connect(&server.url()).await.expect("connected");
    let name = format!("t_outbox_{:x}", bus.layout().outbox_shard("irc.a", "#room"));
    let mut stream = async_nats::jetstream::new(client)
        .get_stream(name)
        .await
        .expect("stream");
    stream.info().await.expect("stream info").state.clone()
}

/// A busy outbox shard holds a keeper beside its deliveries (so the server's newest block
/// file never empties): the count of waiting deliveries leaves it out, the room's holder is
/// handed the deliveries only, and the keeper stays when they are done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shards_keeper_is_neither_counted_nor_handed_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = NatsServer::start(dir.path());
    let bus = connect(&server, "one").await;
    publish(&bus, 0..3).await;
    let deadline = Instant::now() + WAIT;
    while room_shard(&server, &bus).await.messages < 4 {
        assert!(
            Instant::now() < deadline,
            "no keeper came beside the deliveries"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        room_shard(&server, &bus).await.messages,
        4,
        "one keeper, three deliveries"
    );
    assert_eq!(bus.counts().await.expect("counted").0, 3);
    let mut room = open_room(&bus, "irc.a", "#room");
    let mut taken = Vec::new();
    take(&mut room, &mut taken, 3).await;
    assert_eq!(taken, ["d0", "d1", "d2"]);
    while bus.counts().await.expect("counted").0 > 0 {
        assert!(Instant::now() < deadline, "the deliveries were not removed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        room_shard(&server, &bus).await.messages,
        1,
        "the keeper stays"
    );
}

/// Take deliveries from `room`, acknowledging each as a lane does, until `taken` holds `n`.
async fn take(room: &mut patchbay_nats::RoomConsumer, taken: &mut Vec<String>, n: usize) {
    while taken.len() < n {
        let batch = tokio::time::timeout(WAIT, room.next(64))
            .await
            .expect("a delivery came")
            .expect("pulled");
        for (seq, payload) in batch {
            taken.push(text(&payload));
            room.ack(seq).await.expect("acked");
        }
    }
    room.settle().await.expect("confirmed");
}

/// A quiet room's deliveries are read and removed without a consumer; a room that keeps
/// finding more creates one, and every delivery is handed out once, in order, across the
/// switch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_room_needs_no_consumer_and_a_busy_one_gets_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = NatsServer::start(dir.path());
    let bus = connect(&server, "one").await;
    let mut room = open_room(&bus, "irc.a", "#room");
    let mut taken = Vec::new();
    publish(&bus, 0..1).await;
    take(&mut room, &mut taken, 1).await;
    assert_eq!(
        bus.counts().await.expect("counted").0,
        0,
        "removed once done"
    );
    assert_eq!(
        room_shard(&server, &bus).await.consumer_count,
        0,
        "read without a consumer"
    );
    publish(&bus, 1..40).await;
    take(&mut room, &mut taken, 40).await;
    assert_eq!(taken, (0..40).map(|n| format!("d{n}")).collect::<Vec<_>>());
    assert_eq!(
        room_shard(&server, &bus).await.consumer_count,
        1,
        "a busy room has its consumer"
    );
    let deadline = Instant::now() + WAIT;
    while bus.counts().await.expect("counted").0 > 0 {
        assert!(Instant::now() < deadline, "the deliveries were not removed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
