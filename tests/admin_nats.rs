//! The admin API and the dead-letter commands on the nats engine, through the binary against
//! a real nats-server: dead letters in `P_dead` listed with their reason, one retried through
//! the API and delivered once, the other discarded from the command line with the gateway
//! stopped (JetStream is read directly); the outbox's oldest waiting delivery per room.

mod support;

#[path = "support/receiver.rs"]
mod receiver;

#[path = "support/admin.rs"]
mod admin;

use std::time::Duration;

use admin::{
    TOKEN, assert_dead_letters, assert_down_room_waits, call, dead_letters, get, type_dead_letters,
};
use support::nats::{NatsServer, bus};
use support::{Gateway, free_port, run_ok, wait_for_port, wait_until};

#[test]
fn dead_letters_on_the_nats_engine_are_listed_retried_and_discarded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nats = NatsServer::start(dir.path());
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (receiver, receiver_addr) = rt.block_on(receiver::start(true));

    let port = free_port();
    let down_port = free_port();
    let config = format!(
        "{}\n{}",
        bus(&nats, "adm"),
        admin::config(port, receiver_addr, Some(down_port))
    );
    let mut gateway = Gateway::start(dir.path(), &config);
    wait_for_port(port, Duration::from_secs(30));
    // The console account runs once this instance holds its lease.
    wait_until(Duration::from_secs(30), "the console account up", || {
        get(&rt, port, "/admin/accounts")
            .as_array()
            .into_iter()
            .flatten()
            .any(|a| a["name"] == "console.you" && a["state"] == "up")
    });
    type_dead_letters(&mut gateway, &rt, port, &["one", "two"]);
    assert_eq!(get(&rt, port, "/admin/status")["engine"], "nats");
    let letters = assert_dead_letters(&rt, port, &["one", "two"]);
    assert_down_room_waits(&rt, port, 2);

    // Retried through the API: back on the room's outbox subject, delivered once.
    receiver.set_broken(false);
    let (first, second) = (
        letters[0]["id"].as_u64().expect("id"),
        letters[1]["id"].as_u64().expect("id"),
    );
    let retry = format!("/admin/dead-letters/{first}/retry");
    assert_eq!(call(&rt, "POST", port, &retry, Some(TOKEN)).0, 200);
    wait_until(Duration::from_secs(30), "the retried delivery", || {
        !receiver.got().is_empty()
    });
    assert_eq!(dead_letters(&rt, port).len(), 1);
    let config_path = gateway.config.clone();
    assert!(gateway.stop(), "clean stop");

    // Stopped: the commands read and change JetStream directly.
    let listed = run_ok(&["dead-letters", "list"], &config_path);
    assert!(listed.starts_with("1 dead letter:"), "{listed}");
    assert!(listed.contains(&format!("  {second}: to webhook.team/chat")));
    let discarded = run_ok(
        &["dead-letters", "discard", &second.to_string()],
        &config_path,
    );
    assert_eq!(discarded, format!("dead letter {second}: discarded\n"));
    assert_eq!(
        run_ok(&["dead-letters", "list"], &config_path),
        "no dead letters\n"
    );
    assert_eq!(receiver.got(), ["one"]);
}
