//! The contract every connector keeps (IRC), checked by the sdk's test kit: building
//! does not connect, a delivery before `run` is answered retryable, and shutdown returns `Ok`
//! promptly, here with the server a silent port that accepts and never registers us.

use patchbay_sdk::testkit::Contract;

patchbay_sdk::contract_tests!(Contract {
    factory: &patchbay_irc::IrcFactory,
    account: "irc.contract",
    room: "#test",
    table: &|port| format!(
        "server = \"127.0.0.1\"\nport = {port}\nnick = \"pb\"\nchannels = [\"#test\"]\n"
    ),
});
