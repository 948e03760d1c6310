//! Bot mode with `per_message_profiles = true` (MSC4144) against a real Synapse.

mod support;

use support::{bot_room, message, synapse};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relayed_message_carries_its_authors_profile_and_keeps_the_nick_fallback() {
    let synapse = synapse();
    let (alice, bot_id, room_id, alias, _dir, bot) =
        bot_room(synapse, "per_message_profiles = true").await;
    bot.deliver(message(&alias, "bob", "hi")).await;
    let seen = alice
        .wait_for(&room_id, "the relayed line", |e| {
            e["type"] == "m.room.message" && e["sender"] == bot_id.as_str()
        })
        .await;
    let profile = &seen["content"]["com.beeper.per_message_profile"];
    assert_eq!(profile["displayname"], "[irc] bob", "{seen}");
    assert_eq!(profile["id"], "irc.libera/bob");
    assert_eq!(profile["has_fallback"], true);
    assert_eq!(seen["content"]["body"], "[irc] bob: hi");
    bot.stop().await;
}
