//! The contract every connector keeps (the API), checked by the sdk's test kit: building
//! does not connect, a delivery before `run` is answered retryable, and shutdown returns `Ok`
//! promptly, here with an account that only serves HTTP (the port is unused).

use patchbay_sdk::testkit::Contract;

fn table(port: u16) -> String {
    format!(
        "token = \"contract-token\"\nrooms = [\"lobby\"]\n# nothing listens for the API on {port}\n"
    )
}

fn contract() -> Contract<'static> {
    Contract {
        factory: &patchbay_api::ApiFactory,
        account: "api.contract",
        room: "lobby",
        table: &table,
    }
}

#[test]
fn building_does_not_connect() {
    contract().building_does_not_connect();
}

#[tokio::test]
async fn a_delivery_before_run_is_retryable() {
    contract().deliver_before_up_is_retryable().await;
}

#[tokio::test]
async fn shutdown_returns_cleanly() {
    contract().shutdown_returns_cleanly().await;
}
