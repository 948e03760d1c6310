//! End to end through the `patchbay` binary with a real Synapse (started by the Matrix
//! connector's test support): two Matrix rooms and the console mirrored, with formatting,
//! edits, replies and redactions; a gateway restart while users keep talking; an encrypted
//! room mirrored to a plain one; a Matrix image relayed as a link that serves the image.
#![cfg(feature = "matrix")]
#![recursion_limit = "256"]

mod support;

#[path = "../connectors/matrix/tests/support/mod.rs"]
mod mx;

#[path = "../connectors/irc/tests/support/mod.rs"]
mod irc;

#[path = "support/matrix.rs"]
mod matrix;

use matrix::{
    WAIT, alice_and_bot, assert_serves, bot_account, bot_joined, console_line, edit, irc_account,
    irc_with_carol, localpart, public_room, reply,
};
use matrix_sdk::attachment::AttachmentConfig;
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;
use mx::{synapse, unique};
use serde_json::Value;
use support::{Gateway, free_port, wait_for_port};

fn config(bot: &str, rooms: &[&str], extra_account: &str, extra: &str) -> String {
    let mut route: Vec<String> = rooms
        .iter()
        .map(|r| format!("\"matrix.home/{r}\""))
        .collect();
    route.push("\"console.term/lobby\"".into());
    format!(
        "[general]\ndata_dir = \"data\"\n{extra}\n\
         [console.term]\ninput = \"stdin\"\noutput = \"stdout\"\nroom = \"lobby\"\nnick = \"you\"\n\n{}\
         [[route]]\nname = \"mirror\"\ninout = [{}]\nnick_format = \"[{{protocol}}] {{nick}}\"\n",
        bot_account("home", synapse(), bot, rooms, extra_account),
        route.join(", "),
    )
}

fn from_bot<'a>(bot: &'a str, text: &'a str) -> impl Fn(&Value) -> bool + 'a {
    move |e: &Value| {
        e["sender"] == bot
            && e["type"] == "m.room.message"
            && e["content"]["body"]
                .as_str()
                .is_some_and(|b| b.contains(text))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_rooms_and_the_console_mirror_with_relations_across_a_restart() {
    let (alice, bot) = alice_and_bot(synapse()).await;
    let (room_a, a) = public_room(&alice, "a").await;
    let (room_b, b) = public_room(&alice, "b").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(&bot, &[&a, &b], "", "");
    let mut gateway = Gateway::start(dir.path(), &config);
    bot_joined(&alice, &room_a, &bot).await;
    bot_joined(&alice, &room_b, &bot).await;

    // Formatting: Matrix HTML -> Matrix HTML in the other room, and Markdown on the console.
    let original = alice
        .send(
            &room_a,
            RoomMessageEventContent::text_html("hello bold", "hello <strong>bold</strong>"),
        )
        .await;
    let relayed = alice
        .wait_for(&room_b, "the relayed message", from_bot(&bot, "hello bold"))
        .await;
    let local = localpart(&alice);
    assert_eq!(
        relayed["content"]["body"],
        format!("[matrix] {local}: hello bold")
    );
    assert_eq!(
        relayed["content"]["formatted_body"],
        format!("<strong>[matrix] {local}</strong>: hello <strong>bold</strong>")
    );
    let relayed_id = relayed["event_id"].as_str().expect("id").to_owned();
    let line = console_line(&mut gateway, |l| l.contains("hello"));
    assert!(line.contains("hello **bold**"), "{line}");

    // The console -> both Matrix rooms.
    tokio::task::block_in_place(|| gateway.type_line("from the *console*"));
    for room in [&room_a, &room_b] {
        let seen = alice
            .wait_for(room, "the console line", from_bot(&bot, "from the console"))
            .await;
        assert_eq!(
            seen["content"]["formatted_body"],
            "<strong>[console] you</strong>: from the <em>console</em>"
        );
    }

    // An edit in room A edits the relayed copy in room B.
    edit(&alice, &room_a, &original, "hello again").await;
    let edit = alice
        .wait_for(&room_b, "the relayed edit", |e| {
            e["sender"] == bot.as_str() && e["content"]["m.relates_to"]["rel_type"] == "m.replace"
        })
        .await;
    assert_eq!(
        edit["content"]["m.relates_to"]["event_id"],
        relayed_id.as_str()
    );
    assert_eq!(
        edit["content"]["m.new_content"]["body"],
        format!("[matrix] {local}: hello again")
    );

    // The gateway restarts while alice keeps talking: each message is relayed once, and a
    // reply to a message from before the restart still finds its relayed copy.
    assert!(tokio::task::block_in_place(|| gateway.stop()));
    alice.say(&room_a, "while down").await;
    reply(&alice, &room_a, &original, "a reply").await;
    let mut gateway = Gateway::start(dir.path(), &config);
    alice
        .wait_for(
            &room_b,
            "the message said while down",
            from_bot(&bot, "while down"),
        )
        .await;
    let reply = alice
        .wait_for(&room_b, "the relayed reply", from_bot(&bot, "a reply"))
        .await;
    assert_eq!(
        reply["content"]["m.relates_to"]["m.in_reply_to"]["event_id"],
        relayed_id.as_str()
    );
    console_line(&mut gateway, |l| l.contains("while down"));
    console_line(&mut gateway, |l| l.contains("a reply"));

    // A redaction in A redacts the relayed copy in B.
    alice
        .room(&room_a)
        .redact(&original, None, None)
        .await
        .expect("redact");
    alice
        .wait_for(&room_b, "the relayed redaction", |e| {
            e["type"] == "m.room.redaction"
                && (e["redacts"] == relayed_id.as_str()
                    || e["content"]["redacts"] == relayed_id.as_str())
        })
        .await;

    // Exactly once: the next thing relayed into B after the redaction is new, and nothing said
    // before the restart came back.
    alice.say(&room_a, "last").await;
    let next = alice
        .wait_for(&room_b, "the next relayed message", |e| {
            e["sender"] == bot.as_str() && e["type"] == "m.room.message"
        })
        .await;
    assert!(
        next["content"]["body"]
            .as_str()
            .is_some_and(|b| b.ends_with(": last")),
        "{next}"
    );
    assert!(tokio::task::block_in_place(|| gateway.stop()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_room_mirrors_to_a_plain_one_and_images_become_served_links() {
    let (alice, bot) = alice_and_bot(synapse()).await;
    let s_name = unique("secret");
    let secret = alice.create_room(Some(&s_name), &[&bot], true).await;
    let s = format!("#{s_name}:localhost");
    let (plain, p) = public_room(&alice, "plain").await;
    let port = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(
        &bot,
        &[&s, &p],
        &format!("media_public_url = \"http://127.0.0.1:{port}\""),
        &format!("[http]\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    let mut gateway = Gateway::start(dir.path(), &config);
    wait_for_port(port, WAIT);
    bot_joined(&alice, &secret, &bot).await;
    bot_joined(&alice, &plain, &bot).await;

    // Encrypted -> plain, and plain -> encrypted (alice's client decrypts the bot's message).
    alice.say(&secret, "whispered").await;
    alice
        .wait_for(&plain, "the decrypted relay", from_bot(&bot, "whispered"))
        .await;
    alice.say(&plain, "out loud").await;
    alice
        .wait_for(&secret, "the encrypted relay", from_bot(&bot, "out loud"))
        .await;

    // An image from the encrypted room reaches the console as a link that serves it.
    let mut image = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    image.extend((0..3000u32).map(|i| (i % 253) as u8));
    alice
        .room(&secret)
        .send_attachment(
            "cat.png",
            &mime::IMAGE_PNG,
            image.clone(),
            AttachmentConfig::new(),
        )
        .await
        .expect("upload");
    let line = console_line(&mut gateway, |l| l.contains("/media/"));
    let url = line
        .split(['[', ']', ' '])
        .find(|part| part.starts_with("http://") && part.contains("/media/"))
        .unwrap_or_else(|| panic!("no link in {line}"))
        .to_owned();
    assert_serves(&url, &image).await;
    assert!(tokio::task::block_in_place(|| gateway.stop()));
}

/// A Matrix room mirrored with an IRC channel (ngircd): formatting crosses both ways (Matrix
/// HTML <-> mIRC codes), nicks are bold on the Matrix side, and nothing comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_matrix_room_and_an_irc_channel_mirror_with_formatting() {
    let (alice, bot) = alice_and_bot(synapse()).await;
    let (room, alias) = public_room(&alice, "irc").await;
    let Some((irc_server, mut carol)) = irc_with_carol("ngircd").await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "[general]\ndata_dir = \"data\"\n\n{}{}\
         [[route]]\nname = \"bridge\"\ninout = [\"matrix.home/{alias}\", \"irc.net/#x\"]\n\
         nick_format = \"{{nick}}\"\n",
        irc_account(irc_server.port),
        bot_account("home", synapse(), &bot, &[&alias], ""),
    );
    let gateway = Gateway::start(dir.path(), &config);
    carol.expect_join("pb", "#x").await;
    bot_joined(&alice, &room, &bot).await;

    let local = localpart(&alice);
    alice
        .send(
            &room,
            RoomMessageEventContent::text_html("hi **carol**", "hi <strong>carol</strong>"),
        )
        .await;
    let seen = carol.expect_privmsg("#x", "hi").await;
    assert_eq!(
        patchbay_irc::mirc::strip(&seen),
        format!("<{local}> hi carol")
    );
    assert!(seen.contains("\x02carol"), "{seen:?}");

    carol.send("PRIVMSG #x :hello \x1dslanted\x1d world").await;
    let relayed = alice
        .wait_for(&room, "carol's line", from_bot(&bot, "slanted"))
        .await;
    assert_eq!(relayed["content"]["body"], "carol: hello slanted world");
    assert_eq!(
        relayed["content"]["formatted_body"],
        "<strong>carol</strong>: hello <em>slanted</em> world"
    );
    assert!(tokio::task::block_in_place(|| gateway.stop()));
}

/// Synapse is killed mid-stream and restarted: what was said on Matrix just before the crash
/// and what the console said while it was down all arrive, in order, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_synapse_crash_mid_stream_loses_nothing() {
    let synapse = tokio::task::block_in_place(mx::Synapse::start);
    let (alice, bot) = alice_and_bot(&synapse).await;
    let (room, alias) = public_room(&alice, "crash").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "[general]\ndata_dir = \"data\"\n\n\
         [console.term]\ninput = \"stdin\"\noutput = \"stdout\"\nroom = \"lobby\"\nnick = \"you\"\n\n{}\
         [[route]]\nname = \"crash\"\ninout = [\"matrix.home/{alias}\", \"console.term/lobby\"]\n\
         nick_format = \"{{nick}}\"\n",
        bot_account("home", &synapse, &bot, &[&alias], "")
    );
    let mut gateway = Gateway::start(dir.path(), &config);
    bot_joined(&alice, &room, &bot).await;

    alice.say(&room, "m1").await;
    console_line(&mut gateway, |l| l.ends_with("m1"));
    alice.say(&room, "m2 just before").await;
    tokio::task::block_in_place(|| synapse.stop());
    for n in 1..=3 {
        tokio::task::block_in_place(|| gateway.type_line(&format!("c{n} while down")));
    }
    tokio::task::block_in_place(|| synapse.resume());

    console_line(&mut gateway, |l| l.ends_with("m2 just before"));
    for n in 1..=3 {
        let seen = alice
            .wait_for(&room, "a console line said while down", |e| {
                e["sender"] == bot.as_str() && e["type"] == "m.room.message"
            })
            .await;
        assert_eq!(seen["content"]["body"], format!("you: c{n} while down"));
    }
    alice.say(&room, "m3 after").await;
    let next = console_line(&mut gateway, |l| l.contains(": ") || l.contains("> "));
    assert!(
        next.ends_with("m3 after"),
        "relayed twice or out of order: {next}"
    );
    assert!(tokio::task::block_in_place(|| gateway.stop()));
}
