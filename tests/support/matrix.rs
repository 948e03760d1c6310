//! What the Matrix tests of the binary share, in bot mode and appservice mode alike: alice and
//! a bot user on a Synapse, public rooms and the wait for a member to join, edits and
//! replies, the tables of a bot-mode account and of an IRC account (with carol in its
//! channel), a console line, and a served link's bytes.
#![allow(dead_code)]

use std::time::Duration;

use matrix_sdk::ruma::events::relation::{InReplyTo, Reply};
use matrix_sdk::ruma::events::room::message::{
    Relation, ReplacementMetadata, RoomMessageEventContent,
};
use matrix_sdk::ruma::{OwnedEventId, OwnedRoomId, RoomId};
use serde_json::Value;

use crate::irc;
use crate::mx::{Synapse, User, bot_table, unique};
use crate::support::Gateway;

/// How long a test waits for the gateway: a console line, a listener, a state it reaches.
pub const WAIT: Duration = Duration::from_secs(60);

/// A new user, alice, and a new bot user (password `password`) for a bot-mode account.
pub async fn alice_and_bot(synapse: &Synapse) -> (User, String) {
    let alice = User::register(synapse, &unique("alice")).await;
    let bot = synapse.register(&unique("bot"), "password").await;
    (alice, bot)
}

/// A public room of `owner`'s with an alias; its id and the alias.
pub async fn public_room(owner: &User, name: &str) -> (OwnedRoomId, String) {
    let alias = unique(name);
    let room = owner.create_room(Some(&alias), &[], false).await;
    (room, format!("#{alias}:localhost"))
}

/// The localpart of `user`'s id: the nick the gateway gives their messages.
pub fn localpart(user: &User) -> String {
    let id = user.id.trim_start_matches('@');
    id.split(':').next().unwrap_or_default().to_owned()
}

pub fn is_member(e: &Value, user: &str) -> bool {
    e["type"] == "m.room.member" && e["state_key"] == user
}

pub fn joined(e: &Value, user: &str) -> bool {
    is_member(e, user) && e["content"]["membership"] == "join"
}

/// Wait until `user` sees `bot` join `room`.
pub async fn bot_joined(user: &User, room: &RoomId, bot: &str) {
    user.wait_for(room, "the bot to join", |e| joined(e, bot))
        .await;
}

/// `user` edits their message `original` in `room` to the plain `text`.
pub async fn edit(user: &User, room: &RoomId, original: &OwnedEventId, text: &str) {
    let edit = RoomMessageEventContent::text_plain(text)
        .make_replacement(ReplacementMetadata::new(original.clone(), None));
    user.send(room, edit).await;
}

/// `user` replies to the message `to` in `room` with the plain `text`.
pub async fn reply(user: &User, room: &RoomId, to: &OwnedEventId, text: &str) {
    let mut reply = RoomMessageEventContent::text_plain(text);
    reply.relates_to = Some(Relation::Reply(Reply::new(InReplyTo::new(to.clone()))));
    user.send(room, reply).await;
}

/// `[matrix.NAME]` in bot mode: `bot` (password `password`) on `synapse`, joining `rooms`,
/// with `extra` at the end of the table.
pub fn bot_account(
    name: &str,
    synapse: &Synapse,
    bot: &str,
    rooms: &[&str],
    extra: &str,
) -> String {
    let rooms: Vec<String> = rooms.iter().map(|r| (*r).to_owned()).collect();
    format!(
        "[matrix.{name}]\n{}\n",
        bot_table(synapse, bot, &rooms, extra)
    )
}

/// `[irc.net]`: the bot `pb` in `#x` on the IRC server on `port`, reconnecting within 2 s.
pub fn irc_account(port: u16) -> String {
    let extra = "anti_highlight = \"\"\nreconnect_min_secs = 0.5\nreconnect_max_secs = 2\n";
    irc::account("net", port, "pb", "#x", extra)
}

/// A real IRC server (`program`: ngircd or inspircd) with carol in `#x`; `None`, said on
/// stderr, where it is not installed (the test is skipped).
pub async fn irc_with_carol(program: &str) -> Option<(irc::IrcServer, irc::TestClient)> {
    if !irc::have(program) {
        eprintln!("skipped: {program} is not installed (run tests/install-deps.sh)");
        return None;
    }
    let server = match program {
        "ngircd" => irc::IrcServer::ngircd().await,
        "inspircd" => irc::IrcServer::inspircd().await,
        other => panic!("no test IRC server {other}"),
    };
    let carol = irc::TestClient::connect_in(server.port, "carol", "#x").await;
    Some((server, carol))
}

/// Wait for a stdout line of the gateway (blocking the test thread, not the runtime).
pub fn console_line(gateway: &mut Gateway, want: impl Fn(&str) -> bool) -> String {
    tokio::task::block_in_place(|| gateway.expect_line(WAIT, want))
}

/// GET `url` (a media link the gateway serves): 200, with exactly `bytes`.
pub async fn assert_serves(url: &str, bytes: &[u8]) {
    let response = matrix_sdk::reqwest::Client::new()
        .get(url)
        .send()
        .await
        .expect("GET the link");
    assert_eq!(response.status().as_u16(), 200, "{url}");
    let body = response.bytes().await.expect("body");
    assert!(body.as_ref() == bytes, "the link serves other bytes");
}
