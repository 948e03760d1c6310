//! The contract every connector keeps (webhooks), checked by the sdk's test kit: building
//! does not connect, a delivery before `run` is answered retryable (sent at once: a webhook
//! holds no connection), and shutdown returns `Ok`
//! promptly, here with the room's outbound URL a silent port.

use patchbay_sdk::testkit::Contract;

fn table(port: u16) -> String {
    format!("timeout_secs = 1\n[rooms.out]\nurl = \"http://127.0.0.1:{port}/in\"\n")
}

fn contract() -> Contract<'static> {
    Contract {
        factory: &patchbay_webhook::WebhookFactory,
        account: "webhook.contract",
        room: "out",
        table: &table,
    }
}

#[test]
fn building_does_not_connect() {
    contract().building_does_not_connect();
}

/// An outbound webhook holds no connection, so it may POST before `run`; the silent server
/// makes the answer a retryable timeout.
#[tokio::test]
async fn a_delivery_before_run_is_retryable() {
    contract().deliver_before_up_is_retryable().await;
}

#[tokio::test]
async fn shutdown_returns_cleanly() {
    contract().shutdown_returns_cleanly().await;
}
