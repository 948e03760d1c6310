//! Encrypted rooms against a real Synapse: the bot's device decrypts what it receives and
//! encrypts what it sends, and its keys survive a restart. The human on the other side is a
//! matrix-sdk client with E2EE.
#![recursion_limit = "256"]

mod support;

use support::synapse::json_of;
use support::{User, bot_table, message, start, synapse, unique};

#[tokio::test(flavor = "multi_thread")]
async fn an_encrypted_room_is_relayed_both_ways_across_a_restart() {
    let synapse = synapse();
    let alice = User::register(synapse, &unique("alice")).await;
    let bot_id = synapse.register(&unique("bot"), "password").await;

    let room_id = alice.create_room(None, &[&bot_id], true).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let table = bot_table(synapse, &bot_id, &[room_id.to_string()], "");
    let mut bot = start(&table, dir.path());
    bot.wait_up().await;
    alice
        .wait_joined(&room_id, "the bot to join", &bot_id)
        .await;

    // Matrix (encrypted) -> gateway (clear).
    let room = alice.room(&room_id);
    assert!(
        room.latest_encryption_state()
            .await
            .expect("encryption state")
            .is_encrypted()
    );
    alice.say(&room_id, "a secret").await;
    let inbound = bot
        .next_matching("the decrypted message", |e| !e.is_echo)
        .await;
    assert_eq!(inbound.kind.body().expect("body").to_plain(), "a secret");
    assert_eq!(inbound.room, room_id.as_str());

    // Gateway -> Matrix: encrypted by the bot, decrypted by alice's client.
    let delivery = message(room_id.as_str(), "bob", "hello, encrypted");
    let id = bot.deliver_sent(delivery).await;
    let seen = alice
        .wait_for(&room_id, "the bot's encrypted message", |e| {
            e["event_id"] == id.as_str() && e["type"] == "m.room.message"
        })
        .await;
    assert_eq!(seen["content"]["body"], "[irc] bob: hello, encrypted");
    // On the wire (as the homeserver stores it) the message is ciphertext.
    let raw = matrix_sdk::reqwest::Client::new()
        .get(format!(
            "{}/_matrix/client/v3/rooms/{room_id}/event/{id}",
            synapse.url()
        ))
        .bearer_auth(alice.client.access_token().expect("token"))
        .send()
        .await;
    let raw = json_of(raw, "the raw event").await;
    assert_eq!(raw["type"], "m.room.encrypted", "{raw}");

    // The device and its keys persist: after a restart the bot still decrypts, without a
    // new login.
    bot.stop().await;
    alice.say(&room_id, "said while the bot was away").await;
    let mut bot = start(&table, dir.path());
    bot.wait_up().await;
    let said = bot.next_said("the message said while away").await;
    assert_eq!(said, "said while the bot was away");
    bot.stop().await;
}
