//! Appservice mode end to end through the `patchbay` binary, with one real Synapse per test
//! binary that loads the registration files `patchbay matrix-registration` wrote: IRC
//! (InspIRCd), Devzat (the sshchat test server), webhooks and API clients appear in Matrix as
//! ghosts; Matrix edits, redactions, replies and media reach the other side; a gateway killed
//! while Synapse has a transaction outstanding relays each of its events once after the
//! restart; a gateway back after an outage gets what Synapse held at once (its ping); a
//! restart reuses the ghosts.
#![cfg(feature = "matrix")]
#![recursion_limit = "256"]

mod support;

#[path = "../connectors/matrix/tests/support/mod.rs"]
mod mx;

#[path = "../connectors/irc/tests/support/mod.rs"]
mod irc;

#[path = "support/matrix.rs"]
mod matrix;

#[path = "support/appservice.rs"]
mod appservice;

/// The benchmarks (ignored tests), beside the tests so they share this binary's Synapse.
#[path = "support/appservice_bench.rs"]
mod bench;

use appservice::{fixture, ghost_says, member_events, serve_png, slot_with_room, unread_bytes_at};
use matrix::{
    WAIT, alice_and_bot, assert_serves, bot_account, bot_joined, console_line, edit, irc_account,
    irc_with_carol, joined, localpart, public_room, reply,
};
use matrix_sdk::attachment::AttachmentConfig;
use matrix_sdk::ruma::OwnedEventId;
use support::{Gateway, run_ok, write_config};

/// IRC <-> Matrix: carol's lines come from her ghost with her name; a Matrix reply to the
/// ghost's message, an edit and a redaction reach the other side; a nick change renames the
/// ghost; after a restart the same ghost speaks, with no new membership and no registration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_irc_user_is_a_ghost_in_matrix_and_matrix_relations_reach_irc() {
    let (slot, alice, room, alias) = slot_with_room(0, "irc").await;
    let Some((server, mut carol)) = irc_with_carol("inspircd").await else {
        return;
    };
    let config = slot.config(
        &[&alias],
        &format!(
            "{}[console.term]\ninput = \"none\"\noutput = \"stdout\"\n\n\
             [[route]]\nname = \"bridge\"\n\
             inout = [\"matrix.home/{alias}\", \"irc.net/#x\", \"console.term/lobby\"]\n\
             nick_format = \"{{nick}}\"\n\
             kinds = [\"message\", \"action\", \"notice\", \"edit\", \"delete\", \"reaction\", \"nick\"]\n",
            irc_account(server.port)
        ),
    );
    let mut gateway = slot.start(&config, &alice, &room).await;
    carol.expect_join("pb", "#x").await;

    // An IRC line: from carol's own ghost, named carol, without the nick in the text.
    carol.send("PRIVMSG #x :hello from irc").await;
    let ghost = format!("@{}irc_net_carol:localhost", slot.prefix);
    let join = alice
        .wait_for(&room, "carol's ghost to join", |e| joined(e, &ghost))
        .await;
    assert_eq!(join["content"]["displayname"], "carol", "{join}");
    let hello = alice
        .wait_for(&room, "carol's line", ghost_says(slot, "hello from irc"))
        .await;
    assert_eq!(hello["sender"], ghost.as_str(), "{hello}");
    let hello_id: OwnedEventId = hello["event_id"]
        .as_str()
        .and_then(|id| id.try_into().ok())
        .expect("an event id");

    // A Matrix reply to the ghost's message is a reply on IRC, quoting carol.
    reply(&alice, &room, &hello_id, "a reply").await;
    let seen = carol.expect_privmsg("#x", "a reply").await;
    assert!(
        seen.ends_with("[re carol: \"hello from irc\"] a reply"),
        "{seen:?}"
    );

    // An edit made on Matrix reaches IRC as the edited line.
    let original = alice.say(&room, "the colour").await;
    carol.expect_privmsg("#x", "the colour").await;
    edit(&alice, &room, &original, "the color").await;
    let seen = carol.expect_privmsg("#x", "the color").await;
    assert!(seen.ends_with("fixed: the color"), "{seen:?}");

    // A redaction reaches the gateway (the console shows it) and IRC, which cannot take a
    // line back: carol is told it was deleted, and the next line she sees is the one said
    // after it.
    alice
        .room(&room)
        .redact(&original, None, None)
        .await
        .expect("redact");
    console_line(&mut gateway, |l| l.contains("deleted"));
    carol
        .expect("a NOTICE that the line was deleted", |cmd, params, _| {
            cmd == "NOTICE"
                && params.first().is_some_and(|t| t == "#x")
                && params
                    .get(1)
                    .is_some_and(|t| t.ends_with("deleted a message"))
        })
        .await;
    alice.say(&room, "after the redaction").await;
    let local = localpart(&alice);
    let shown = carol
        .collect_privmsgs("#x", &format!("<{local}> after the redaction"))
        .await;
    assert_eq!(shown.len(), 1, "{shown:?}");

    // A Matrix image reaches IRC as a link on the gateway's listener that serves the file.
    let (_, png) = serve_png("unused.png").await;
    alice
        .room(&room)
        .send_attachment(
            "cat.png",
            &mime::IMAGE_PNG,
            png.clone(),
            AttachmentConfig::new(),
        )
        .await
        .expect("upload");
    let seen = carol.expect_privmsg("#x", "cat.png").await;
    let url = seen
        .split(' ')
        .find(|part| part.starts_with("http://"))
        .unwrap_or_else(|| panic!("no link in {seen:?}"))
        .to_owned();
    assert!(
        url.starts_with(&format!(
            "http://127.0.0.1:{}/_patchbay/matrix/home/media/",
            slot.port
        )),
        "{url}"
    );
    assert_serves(&url, &png).await;

    // A nick change renames the ghost, and the new nick speaks as the same ghost.
    carol.send("NICK carol2").await;
    let renamed = alice
        .wait_for(&room, "the ghost's new name", |e| {
            joined(e, &ghost) && e["content"]["displayname"] == "carol2"
        })
        .await;
    assert_eq!(renamed["sender"], ghost.as_str());
    carol.send("PRIVMSG #x :new name").await;
    let line = alice
        .wait_for(&room, "carol2's line", ghost_says(slot, "new name"))
        .await;
    assert_eq!(line["sender"], ghost.as_str(), "{line}");

    // A restart: the same ghost speaks; no membership event, no registration error.
    assert!(tokio::task::block_in_place(|| gateway.stop()));
    let members = member_events(&alice, &room, &ghost).await;
    let gateway = Gateway::start(&slot.dir, &config);
    carol.expect_join("pb", "#x").await;
    carol.send("PRIVMSG #x :after the restart").await;
    let line = alice
        .wait_for(&room, "the line after the restart", |e| {
            e["type"] == "m.room.message" && e["content"]["body"] == "after the restart"
        })
        .await;
    assert_eq!(line["sender"], ghost.as_str(), "{line}");
    assert_eq!(member_events(&alice, &room, &ghost).await, members);
    let log = gateway.log();
    assert!(
        !log.contains("M_USER_IN_USE") && !log.contains("M_EXCLUSIVE"),
        "{log}"
    );
    assert!(tokio::task::block_in_place(|| gateway.stop()));
}

/// Synapse has a transaction outstanding at the gateway (stopped, so it cannot answer) when
/// the gateway is SIGKILLed: after the restart, every event of it reaches IRC once, in order.
/// The gateway's listener also refuses a wrong `hs_token`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_with_a_transaction_outstanding_relays_each_event_once() {
    let (slot, alice, room, alias) = slot_with_room(1, "kill").await;
    let Some((server, mut carol)) = irc_with_carol("inspircd").await else {
        return;
    };
    let config = slot.bridged_to_irc(&alias, &irc_account(server.port));
    let gateway = slot.start(&config, &alice, &room).await;
    carol.expect_join("pb", "#x").await;

    let http = matrix_sdk::reqwest::Client::new();
    let status = http
        .put(format!("{}/transactions/forged", slot.api()))
        .bearer_auth("not-the-hs-token")
        .json(&serde_json::json!({"events": []}))
        .send()
        .await
        .expect("PUT a transaction")
        .status();
    assert_eq!(status.as_u16(), 403);

    let local = localpart(&alice);
    alice.say(&room, "m0").await;
    carol.expect_privmsg("#x", "m0").await;

    // Stopped, the gateway takes no request: Synapse's transaction waits unread in its socket.
    let stopped = std::process::Command::new("kill")
        .args(["-STOP", &gateway.pid().to_string()])
        .status()
        .expect("kill -STOP");
    assert!(stopped.success());
    for n in 1..=5 {
        alice.say(&room, format!("m{n}")).await;
    }
    // Synapse pushes m1 into the stopped gateway's socket at once, unless a push the gateway
    // had read was still unanswered when it stopped (the gateway syncs its transaction log
    // after the event is stored, so m0 can reach IRC before its 200): Synapse waits that one
    // out first.
    let outstanding = tokio::task::block_in_place(|| {
        support::holds_within(WAIT + mx::synapse::PUSH_TIMEOUT, || {
            unread_bytes_at(slot.port) > 0
        })
    });
    assert!(
        outstanding,
        "timed out waiting for a transaction outstanding at the gateway; {}",
        fixture().synapse.appservice_log(&slot.appservice_id())
    );
    tokio::task::block_in_place(|| gateway.kill());

    let gateway = Gateway::start(&slot.dir, &config);
    alice.say(&room, "m6").await;
    let mut shown = carol.collect_privmsgs("#x", &format!("<{local}> m6")).await;
    // m0 was sent to IRC just before the stop, perhaps before its delivery was recorded as
    // done: the gateway sends that one again after a crash (at least once, README). It is
    // not part of the transaction, and may show once more, first; nothing else may repeat.
    if shown.first() == Some(&format!("<{local}> m0")) {
        shown.remove(0);
    }
    let expected: Vec<String> = (1..=6).map(|n| format!("<{local}> m{n}")).collect();
    assert_eq!(
        shown, expected,
        "each event of the transaction once, in order"
    );
    assert!(tokio::task::block_in_place(|| gateway.stop()));
}

/// A Devzat user and a webhook post each appear in Matrix from a ghost of their own, named by
/// the route; the webhook's ghost wears the avatar the post names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devzat_users_and_webhook_posts_are_ghosts_the_webhook_with_its_avatar() {
    use patchbay_sshchat_testserver::{Options, TestServer};
    let (slot, alice, room, alias) = slot_with_room(2, "dvz").await;
    let devzat = TestServer::start(Options::devzat()).await.expect("devzat");
    let (avatar, _) = serve_png("avatar.png").await;
    let config = slot.config(
        &[&alias],
        &format!(
            "[sshchat.dvz]\nserver = \"{ssh}\"\ndialect = \"devzat\"\nnick = \"bridge\"\n\
             reconnect_min_secs = 1\n\n\
             [webhook.ci]\ntoken = \"hook-token\"\n\n\
             [api.bots]\ntoken = \"api-token\"\n\n\
             [[route]]\nname = \"chat\"\ninout = [\"matrix.home/{alias}\", \"sshchat.dvz/#main\"]\n\
             nick_format = \"{{nick}}\"\n\n\
             [[route]]\nname = \"hooks\"\nin = [\"webhook.ci/builds\", \"api.bots/lobby\"]\nout = [\"matrix.home/{alias}\"]\n\
             nick_format = \"[ci] {{nick}}\"\n",
            ssh = devzat.ssh_addr(),
        ),
    );
    let gateway = slot.start(&config, &alice, &room).await;
    assert!(
        devzat.wait_until(WAIT, |s| s.users().len() == 1).await,
        "the bridge joined Devzat; log:\n{}",
        gateway.log()
    );

    devzat.say("#main", "dora", "hi from devzat");
    let ghost = format!("@{}sshchat_dvz_dora:localhost", slot.prefix);
    let join = alice
        .wait_for(&room, "dora's ghost to join", |e| joined(e, &ghost))
        .await;
    assert_eq!(join["content"]["displayname"], "dora", "{join}");
    let line = alice
        .wait_for(&room, "dora's line", ghost_says(slot, "hi from devzat"))
        .await;
    assert_eq!(line["sender"], ghost.as_str(), "{line}");

    support::wait_for_port(slot.port, WAIT);
    let build =
        serde_json::json!({"text": "build 7 passed", "username": "ci-bot", "icon_url": avatar});
    let status = support::post_json(slot.port, "/hooks/ci/builds", "hook-token", &build).await;
    assert_eq!(status, 202);
    let hook_prefix = format!("@{}webhook_ci_", slot.prefix);
    let join = alice
        .wait_for(&room, "the webhook's ghost to join", |e| {
            e["type"] == "m.room.member"
                && e["content"]["membership"] == "join"
                && e["state_key"]
                    .as_str()
                    .is_some_and(|s| s.starts_with(&hook_prefix))
        })
        .await;
    assert_eq!(join["content"]["displayname"], "[ci] ci-bot", "{join}");
    let avatar_url = join["content"]["avatar_url"].as_str().unwrap_or_default();
    assert!(avatar_url.starts_with("mxc://localhost/"), "{join}");
    let line = alice
        .wait_for(
            &room,
            "the webhook's line",
            ghost_says(slot, "build 7 passed"),
        )
        .await;
    assert_eq!(line["sender"], join["state_key"], "{line}");

    // An API client's attachment is uploaded as its ghost: an image in the room, not a link.
    let (shot, _) = serve_png("shot.png").await;
    let message = serde_json::json!({"username": "deploybot",
        "attachments": [{"url": shot, "name": "shot.png", "mime": "image/png"}]});
    let status =
        support::post_json(slot.port, "/api/bots/lobby/messages", "api-token", &message).await;
    assert!((200..300).contains(&status), "{status}");
    let api_prefix = format!("@{}api_bots_", slot.prefix);
    let image = alice
        .wait_for(&room, "the API client's image", |e| {
            e["type"] == "m.room.message" && e["content"]["msgtype"] == "m.image"
        })
        .await;
    assert!(
        image["sender"]
            .as_str()
            .is_some_and(|s| s.starts_with(&api_prefix)),
        "{image}"
    );
    assert_eq!(image["content"]["body"], "shot.png", "{image}");
    let mxc = image["content"]["url"].as_str().unwrap_or_default();
    assert!(mxc.starts_with("mxc://localhost/"), "{image}");
    assert!(tokio::task::block_in_place(|| gateway.stop()));
}

/// `patchbay check` on an appservice account says what the mode does not do.
#[test]
fn check_says_what_appservice_mode_does_not_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(
        dir.path(),
        "[http]\nlisten = \"127.0.0.1:8080\"\n\n\
         [matrix.home]\nmode = \"appservice\"\nhomeserver = \"http://127.0.0.1:8008\"\n\
         server_name = \"example.org\"\nappservice_url = \"http://127.0.0.1:8080\"\n\
         rooms = [\"#general:example.org\"]\n\n\
         [console.term]\ninput = \"none\"\noutput = \"stdout\"\n\n\
         [[route]]\nname = \"r\"\ninout = [\"matrix.home/#general:example.org\", \"console.term/lobby\"]\n",
    );
    let stdout = run_ok(&["check"], &config);
    let notes: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("note: matrix.home: "))
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.contains("does not bridge encrypted rooms")
                && n.contains("use a bot-mode account")),
        "{stdout}"
    );
    assert!(
        notes.iter().any(|n| n.contains("media_public_url")),
        "{stdout}"
    );
}

/// Steady state in bot mode logs nothing again and again: after several syncs (each message
/// comes with one), matrix-sdk's "no backup key was found" warning is not in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bot_mode_syncs_do_not_repeat_the_key_backup_warning() {
    let synapse = &fixture().synapse;
    let (alice, bot) = alice_and_bot(synapse).await;
    let (room, alias) = public_room(&alice, "quiet").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "[general]\ndata_dir = \"data\"\n\n\
         [console.term]\ninput = \"none\"\noutput = \"stdout\"\n\n{}\
         [[route]]\nname = \"r\"\ninout = [\"matrix.bot/{alias}\", \"console.term/lobby\"]\n",
        bot_account("bot", synapse, &bot, &[&alias], "")
    );
    let mut gateway = Gateway::start(dir.path(), &config);
    bot_joined(&alice, &room, &bot).await;
    for n in 0..5 {
        alice.say(&room, format!("tick {n}")).await;
        console_line(&mut gateway, |l| l.ends_with(&format!("tick {n}")));
    }
    assert!(tokio::task::block_in_place(|| gateway.stop()));
    let log = std::fs::read_to_string(dir.path().join("patchbay.log")).unwrap_or_default();
    assert!(!log.contains("no backup key was found"), "{log}");
}

/// A gateway down long enough for Synapse to back off: what was said meanwhile arrives as soon
/// as the gateway is back (its ping at start has Synapse send what it holds), not when
/// Synapse's backoff, grown to 16 s by then, would try next. While the gateway is down the
/// test holds its port and closes each of Synapse's tries unanswered, so it counts them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_was_said_while_the_gateway_was_down_arrives_as_soon_as_it_is_back() {
    let (slot, alice, room, alias) = slot_with_room(5, "down").await;
    let config = slot.config(
        &[&alias],
        &format!(
            "[console.term]\ninput = \"none\"\noutput = \"stdout\"\n\n\
             [[route]]\nname = \"r\"\ninout = [\"matrix.home/{alias}\", \"console.term/lobby\"]\n"
        ),
    );
    let mut gateway = slot.start(&config, &alice, &room).await;
    alice.say(&room, "before the stop").await;
    console_line(&mut gateway, |line| line.contains("before the stop"));
    assert!(tokio::task::block_in_place(|| gateway.stop()));

    let held = tokio::net::TcpListener::bind(("127.0.0.1", slot.port))
        .await
        .expect("hold the gateway's port");
    alice.say(&room, "while it was down").await;
    // Synapse's send, then its tries 2, 4 and 8 s after each failure: the next is 16 s away.
    for attempt in 1..=4 {
        let accepted = tokio::time::timeout(WAIT, held.accept()).await;
        let Ok(Ok((connection, _))) = accepted else {
            panic!("Synapse's try {attempt} to send the transaction did not come");
        };
        drop(connection);
    }
    drop(held);

    let mut gateway = Gateway::start(&slot.dir, &config);
    tokio::task::block_in_place(|| {
        gateway.expect_line(std::time::Duration::from_secs(12), |line| {
            line.contains("while it was down")
        })
    });
    assert!(
        gateway
            .log()
            .contains("the homeserver reaches this gateway"),
        "the gateway's ping of the homeserver is logged"
    );
    assert!(tokio::task::block_in_place(|| gateway.stop()));
}
