//! The shared HTTP listener through the binary: `/healthz` and `/metrics`.

mod support;

use std::time::Duration;

use support::{Gateway, LOBBY, free_port, http_get, wait_for_port, wait_until};

/// The listener on `port`, the tables `extra`, and [`LOBBY`].
fn config(port: u16, extra: &str) -> String {
    format!("[http]\nlisten = \"127.0.0.1:{port}\"\n{extra}\n{LOBBY}")
}

#[test]
fn healthz_and_metrics_report_connectors_and_deliveries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut gateway = Gateway::start(dir.path(), &config(port, ""));
    wait_for_port(port, Duration::from_secs(20));
    wait_until(Duration::from_secs(20), "healthz 200", || {
        http_get(port, "/healthz").0 == 200
    });
    assert_eq!(http_get(port, "/healthz").1, r#"{"status":"ok"}"#);

    gateway.type_line("hi");
    gateway.expect("[console.screen/lobby] <alice> hi");
    // The delivery is counted just after the console printed it.
    wait_until(Duration::from_secs(10), "the delivery counted", || {
        http_get(port, "/metrics")
            .1
            .contains("patchbay_deliveries_total{")
    });
    let (status, metrics) = http_get(port, "/metrics");
    assert_eq!(status, 200);
    for line in [
        "patchbay_events_accepted_total{account=\"console.you\"} 1",
        "patchbay_deliveries_total{account=\"console.screen\",route=\"lobby\"} 1",
        "patchbay_delivery_latency_seconds_count 1",
        "patchbay_connector_up{account=\"console.screen\"} 1",
        "patchbay_connector_up{account=\"console.you\"} 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing {line:?} in:\n{metrics}"
        );
    }
    assert!(gateway.stop());
}

#[test]
fn healthz_names_the_connectors_that_are_not_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    // An IRC account whose server is not there: it keeps trying, and is not up.
    let closed = free_port();
    let extra =
        format!("\n[irc.nowhere]\nserver = \"127.0.0.1\"\nport = {closed}\nnick = \"pb\"\n");
    let gateway = Gateway::start(dir.path(), &config(port, &extra));
    wait_for_port(port, Duration::from_secs(20));
    // The console comes up a moment after the listener opens: wait for it, and the IRC
    // account must stay reported all along.
    let mut last = String::new();
    wait_until(Duration::from_secs(20), "the console up", || {
        let (status, body) = http_get(port, "/healthz");
        assert_eq!(status, 503, "{body}");
        let json: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(json["status"], "degraded");
        assert!(json["not_up"]["irc.nowhere"].is_string(), "{body}");
        last = body;
        json["not_up"].get("console.you").is_none()
    });
    assert!(last.contains("irc.nowhere"), "{last}");
    assert!(gateway.stop());
}
