//! The contract every connector keeps (SSH chat), checked by the sdk's test kit: building
//! does not connect, a delivery before `run` is answered retryable, and shutdown returns `Ok`
//! promptly, here with the server a silent port that never answers the SSH handshake.

use patchbay_sdk::testkit::Contract;

patchbay_sdk::contract_tests!(Contract {
    factory: &patchbay_sshchat::SshChatFactory,
    account: "sshchat.contract",
    room: "#main",
    table: &|port| format!(
        "server = \"127.0.0.1:{port}\"\ndialect = \"devzat\"\nnick = \"bridge\"\nrooms = [\"#main\"]\n"
    ),
});
