//! The engine tests' bus, connected to a real nats-server (`patchbay_nats::test_servers`)
//! once JetStream answers, and its rooms' outboxes.

#![allow(dead_code)] // Each test binary uses its own part.

use std::time::{Duration, Instant};

use patchbay_nats::test_servers::NatsServer;
use patchbay_nats::{Bus, BusOptions, RoomConsumer};

pub const WAIT: Duration = Duration::from_secs(30);

/// The options of a bus named `name` on `server`, under `prefix`: a 5 s lease, an hour's
/// retention.
pub fn options(server: &NatsServer, prefix: &str, name: &str) -> BusOptions {
    BusOptions {
        servers: vec![server.url()],
        prefix: prefix.into(),
        name: name.into(),
        lease: Duration::from_secs(5),
        retention: Duration::from_secs(3600),
        ..Default::default()
    }
}

/// A bus on `options`, retried until JetStream answers (a moment after the port is open; a
/// site's leaf link a moment after that).
pub async fn connect_with(options: BusOptions) -> Bus {
    let site = options
        .site
        .as_ref()
        .map(|s| s.name.clone())
        .unwrap_or_default();
    let deadline = Instant::now() + WAIT;
    loop {
        match Bus::connect(&options).await {
            Ok(bus) => return bus,
            Err(err) => {
                assert!(Instant::now() < deadline, "{site}: {err}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// The outbox of `account`'s `room`, opened on `bus` (64 deliveries handed out at most).
pub fn open_room(bus: &Bus, account: &str, room: &str) -> RoomConsumer {
    bus.room_consumer(account, room, 64)
}
