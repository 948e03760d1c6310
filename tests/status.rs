//! `patchbay status` on the embedded engine, through the binary: read from the store while
//! the gateway is stopped (the JetStream engine's is in tests/nats.rs).

mod support;

use support::{Gateway, LOBBY, run_ok};

#[test]
fn status_shows_the_embedded_engine_its_accounts_and_what_waits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut gateway = Gateway::start(dir.path(), LOBBY);
    gateway.type_line("hello");
    gateway.expect("[console.screen/lobby] <alice> hello");
    let config = gateway.config.clone();
    assert!(gateway.stop(), "clean stop");

    let report = run_ok(&["status"], &config);
    assert!(report.starts_with("engine: embedded ("), "{report}");
    assert!(
        report.contains("instances: this host (one process)"),
        "{report}"
    );
    assert!(
        report.contains("  console.screen: run by the gateway when it runs; 0 waiting"),
        "{report}"
    );
    assert!(report.contains("outbox:\n  empty\n"), "{report}");
    assert!(report.contains("dead letters: 0"), "{report}");
}
