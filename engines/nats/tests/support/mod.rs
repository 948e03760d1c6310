//! The engine tests' bus, connected to a real nats-server (`patchbay_nats::test_servers`)
//! once JetStream answers.

#![allow(dead_code)] // Each test binary uses its own part.

use std::time::{Duration, Instant};

use patchbay_nats::{Bus, BusOptions};

pub const WAIT: Duration = Duration::from_secs(30);

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
