//! The contract every connector keeps (the API), checked by the sdk's test kit: building
//! does not connect, a delivery before `run` is answered retryable, and shutdown returns `Ok`
//! promptly, here with an account that only serves HTTP (the port is unused).

use patchbay_sdk::testkit::Contract;

patchbay_sdk::contract_tests!(Contract {
    factory: &patchbay_api::ApiFactory,
    account: "api.contract",
    room: "lobby",
    table: &|port| format!(
        "token = \"contract-token\"\nrooms = [\"lobby\"]\n# nothing listens for the API on {port}\n"
    ),
});
