//! The contract every connector keeps (Matrix), checked by the sdk's test kit: building
//! does not connect, a delivery before `run` is answered retryable, and shutdown returns `Ok`
//! promptly, here with the homeserver a silent port that never answers HTTP.

use std::sync::{Arc, LazyLock};

use patchbay_sdk::ConnectorFactory;
use patchbay_sdk::testkit::Contract;

/// The crate exposes its factory only boxed (it keeps the matrix code out of the binary crate).
static FACTORY: LazyLock<Arc<dyn ConnectorFactory>> = LazyLock::new(patchbay_matrix::factory);

patchbay_sdk::contract_tests!(Contract {
    factory: &**FACTORY,
    account: "matrix.contract",
    room: "#room:localhost",
    table: &|port| format!(
        "homeserver = \"http://127.0.0.1:{port}\"\nuser = \"@bot:localhost\"\npassword = \"password\"\nrooms = [\"#room:localhost\"]\n"
    ),
});
