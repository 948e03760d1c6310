//! The contract every connector keeps (webhooks), checked by the sdk's test kit: building
//! does not connect, a delivery before `run` is answered retryable (sent at once: a webhook
//! holds no connection), and shutdown returns `Ok`
//! promptly, here with the room's outbound URL a silent port.

use patchbay_sdk::testkit::Contract;

patchbay_sdk::contract_tests!(Contract {
    factory: &patchbay_webhook::WebhookFactory,
    account: "webhook.contract",
    room: "out",
    table: &|port| format!("timeout_secs = 1\n[rooms.out]\nurl = \"http://127.0.0.1:{port}/in\"\n"),
});
