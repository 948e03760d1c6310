//! The test server's own behaviours, checked through real SSH and gRPC clients, so the
//! connector's tests rest on a server that does what the notes say.

use std::time::Duration;

use patchbay_sshchat_testserver::{Options, TestServer, TestUser, proto};

const WAIT: Duration = Duration::from_secs(10);

/// Wait for `user` to see exactly `line`; `what` names it when it never comes.
async fn sees(user: &TestUser, line: &str, what: &str) {
    user.wait_line(WAIT, |l| l == line).await.expect(what);
}

/// A plugin message to `room`, shown as from `from` (the token's name when `None`).
fn message(room: &str, from: Option<&str>, msg: &str) -> proto::Message {
    proto::Message {
        room: room.into(),
        from: from.map(Into::into),
        msg: msg.into(),
        ephemeral_to: None,
    }
}

#[tokio::test]
async fn devzat_name_prompt_history_join_and_dm() {
    let server = TestServer::start(Options::devzat()).await.expect("server");
    server.say("#main", "old", "before you came");
    let alice = server.connect_user("alice").await.expect("alice");
    sees(&alice, "old: before you came", "history replayed at join").await;
    sees(
        &alice,
        " --> alice has joined the chat",
        "own join announced",
    )
    .await;
    let second = server.connect_user("alice").await.expect("second alice");
    sees(
        &second,
        "Your username is already in use. Pick a different one:",
        "name prompt",
    )
    .await;
    second.say("alice2").await.expect("answer");
    sees(&alice, " --> alice2 has joined the chat", "renamed join").await;
    second.say("=alice psst").await.expect("dm");
    sees(&alice, "alice2 -> psst", "receiver's DM format").await;
    sees(&second, "alice <- psst", "sender's DM format").await;
    assert!(
        server.transcript().iter().all(|r| r.text != "psst"),
        "DMs are not broadcast"
    );
    second.say("cd #side").await.expect("cd");
    sees(&alice, "alice2 is joining #side", "the old room is told").await;
    sees(
        &second,
        " --> alice2 has joined #side",
        "the mover sees its arrival",
    )
    .await;
    sees(
        &alice,
        "alice2: cd #side",
        "cd is broadcast in the room it leaves, as the real Devzat does",
    )
    .await;
    second.say("cd ..").await.expect("cd back");
    sees(&second, " --> alice2 has joined #main", "back in #main").await;
    second.say("exit").await.expect("exit");
    sees(&alice, "alice2: exit", "exit is broadcast").await;
    sees(&alice, " <-- alice2 has left the chat", "leave announced").await;
}

#[tokio::test]
async fn devzat_spam_warning_then_ban() {
    let server = TestServer::start(Options::devzat()).await.expect("server");
    let spammer = server.connect_user("spammer").await.expect("connect");
    spammer
        .wait_line(WAIT, |l| l.contains("has joined"))
        .await
        .expect("joined");
    for i in 0..29 {
        spammer.say(&format!("line {i}")).await.expect("say");
    }
    assert!(
        server
            .wait_until(WAIT, |s| s.transcript().len() >= 30)
            .await
    );
    assert!(server.warnings().is_empty(), "29 lines: no warning yet");
    spammer.say("line 29").await.expect("say");
    assert!(
        server.wait_until(WAIT, |s| !s.warnings().is_empty()).await,
        "warned at 30"
    );
    for i in 30..50 {
        spammer.say(&format!("line {i}")).await.expect("say");
    }
    assert!(
        server.wait_until(WAIT, |s| !s.bans().is_empty()).await,
        "banned at 50"
    );
    // The ban holds for the key: but a new key is a new user.
    assert!(
        server.wait_until(WAIT, |s| s.users().is_empty()).await,
        "disconnected"
    );
}

#[tokio::test]
async fn devzat_join_rate_ban_after_six_joins_a_minute() {
    let server = TestServer::start(Options::devzat()).await.expect("server");
    let key = russh::keys::PrivateKey::random(&mut rand::rng(), russh::keys::Algorithm::Ed25519)
        .expect("key");
    for i in 0..7 {
        let user = TestUser::connect_with_key(&server.ssh_addr(), "hopper", &key, true)
            .await
            .expect("connect");
        if i < 6 {
            user.wait_line(WAIT, |l| l.contains("hopper has joined"))
                .await
                .expect("joined");
        } else {
            user.wait_line(WAIT, |l| l.contains("You are banned"))
                .await
                .expect("the seventh join in a minute is banned");
        }
        user.close().await;
    }
    assert_eq!(server.bans().len(), 1, "{:?}", server.bans());
}

#[tokio::test]
async fn devzat_needs_a_pty() {
    let server = TestServer::start(Options::devzat()).await.expect("server");
    let key = russh::keys::PrivateKey::random(&mut rand::rng(), russh::keys::Algorithm::Ed25519)
        .expect("key");
    let user = TestUser::connect_with_key(&server.ssh_addr(), "nopty", &key, false)
        .await
        .expect("connect");
    user.wait_line(WAIT, |l| l.contains("needs a PTY"))
        .await
        .expect("refused without a pty");
    assert!(server.users().is_empty());
}

#[tokio::test]
async fn ssh_chat_rate_limit_guest_names_and_long_lines() {
    let server = TestServer::start(Options::ssh_chat())
        .await
        .expect("server");
    let bob = server.connect_user("bob").await.expect("bob");
    let other = server.connect_user("bob").await.expect("second bob");
    bob.wait_line(WAIT, |l| l.starts_with(" * Guest1 joined. (Connected: 2)"))
        .await
        .expect("a clash becomes Guest<N>");
    for i in 0..4 {
        other.say(&format!("quick {i}")).await.expect("say");
    }
    sees(
        &other,
        "-> Message rejected: Rate limiting is in effect.",
        "fourth line in 3 s rejected",
    )
    .await;
    assert!(
        bob.wait_line(WAIT, |l| l == "Guest1: quick 2")
            .await
            .is_some()
    );
    assert!(bob.lines().iter().all(|l| l != "Guest1: quick 3"));
    tokio::time::sleep(Duration::from_millis(3100)).await;
    other.say(&"x".repeat(1025)).await.expect("say");
    other
        .wait_line(WAIT, |l| l.contains("Input too long."))
        .await
        .expect("long line rejected");
    assert_eq!(server.rejections(), (1, 1));
    // TERM=bot: no own echo of messages.
    assert!(
        other
            .lines()
            .iter()
            .all(|l| !l.starts_with("Guest1: quick"))
    );
}

#[tokio::test]
async fn plugin_api_auth_rooms_and_per_token_echo() {
    let mut opts = Options::devzat();
    opts.tokens = vec!["dvz@a".into(), "dvz@b".into()];
    let server = TestServer::start(opts).await.expect("server");
    let url = server.grpc_url().expect("grpc");
    let client = |token: &'static str| {
        let url = url.clone();
        async move {
            let channel = tonic::transport::Endpoint::from_shared(url)
                .expect("url")
                .connect()
                .await
                .expect("connect");
            let header: tonic::metadata::MetadataValue<_> =
                format!("Bearer {token}").parse().expect("header");
            proto::plugin_client::PluginClient::with_interceptor(
                channel,
                move |mut req: tonic::Request<()>| {
                    req.metadata_mut().insert("authorization", header.clone());
                    Ok(req)
                },
            )
        }
    };
    let mut wrong = client("dvz@nope").await;
    let status = wrong
        .send_message(message("#main", None, "x"))
        .await
        .expect_err("wrong token");
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert_eq!(status.message(), "Invalid authorization header");

    let mut a = client("dvz@a").await;
    let status = a
        .send_message(message("#nope", None, "x"))
        .await
        .expect_err("unknown room");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(status.message(), "Room does not exist");

    let listen = |mut c: proto::plugin_client::PluginClient<_>| async move {
        let first = proto::ListenerClientData {
            data: Some(proto::listener_client_data::Data::Listener(
                proto::Listener {
                    system_messages: Some(true),
                    ..Default::default()
                },
            )),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.send(first).await.expect("send");
        let stream = c
            .register_listener(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .expect("listener")
            .into_inner();
        (stream, tx)
    };
    let (mut a_events, _a_keep) = listen(client("dvz@a").await).await;
    let (mut b_events, _b_keep) = listen(client("dvz@b").await).await;
    assert!(server.wait_until(WAIT, |s| s.listeners() == 2).await);
    let alice = server.connect_user("alice").await.expect("alice");
    a.send_message(message("#main", Some("bridge-alice"), "hi"))
        .await
        .expect("send");
    sees(&alice, "bridge-alice: hi", "shown under `from`").await;
    // Token b's listener gets it; token a's does not (it gets the system join line only).
    let mut b_seen = Vec::new();
    while let Ok(Ok(Some(event))) =
        tokio::time::timeout(Duration::from_secs(2), b_events.message()).await
    {
        let done = event.msg == "hi";
        b_seen.push(event);
        if done {
            break;
        }
    }
    assert!(
        b_seen
            .iter()
            .any(|e| e.from == "bridge-alice" && e.msg == "hi"),
        "{b_seen:?}"
    );
    assert!(
        b_seen
            .iter()
            .any(|e| e.from.is_empty() && e.msg == " --> alice has joined the chat")
    );
    while let Ok(Ok(Some(event))) =
        tokio::time::timeout(Duration::from_millis(500), a_events.message()).await
    {
        assert_ne!(event.msg, "hi", "no echo to the sending token");
    }
    // A plugin message's first word runs as a command.
    a.send_message(message("#main", Some("x"), "shrug"))
        .await
        .expect("send");
    assert!(server.commands().iter().any(|(_, l)| l == "shrug"));
}
