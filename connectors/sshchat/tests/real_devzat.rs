//! Against the real Devzat (`../shared/peers/devzat`): the bridge's own commands never come
//! back through another account, bursts arrive whole under the real anti-spam, and a
//! delivery is answered `Ok` only once its line was written.

mod support;

use std::sync::Arc;
use std::time::Duration;

use patchbay_sdk::Kind;
use patchbay_sdk::testkit::Recorder;
use support::real::Devzat;
use support::{
    WAIT, burst_whole_and_in_order, delivery, heard, relay, shown_ending, shutdown_mid_burst,
    start, start_shared, start_up, text,
};

const LONG: Duration = Duration::from_secs(60);

fn ssh_config(server: &Devzat, rooms: &str) -> String {
    format!(
        "server = \"{}\"\ndialect = \"devzat\"\nnick = \"bridge\"\nrooms = {rooms}\nreconnect_min_secs = 1\nreconnect_max_secs = 2\n",
        server.ssh_addr(),
    )
}

/// An SSH account in `#dev` and a plugin account on the same server. Each connect of the SSH
/// account types `cd #dev` in `#main`, where Devzat broadcasts it (a person there sees it) and
/// the plugin API hears it: the plugin account never emits it. The SSH account's relays into
/// `#dev` reach the plugin API too, under the bot's name: both accounts name the server alike,
/// the SSH account announced that name before typing, and they are dropped as the gateway's own
/// words. Three starts of the SSH account while the plugin listens, then a server restart both
/// come back from.
#[tokio::test]
async fn the_bridges_cd_never_reaches_the_plugin_account_over_reconnects() {
    let Some(mut server) = Devzat::start(false).await else {
        return;
    };
    let shared = Arc::new(Recorder::gateway());
    let mut plugin = start_shared(
        &server.plugin_config(&server.token),
        "sshchat.plugin",
        tempfile::tempdir().expect("dir"),
        shared.clone(),
    );
    let network = format!("devzat@{}", server.ssh_addr());
    for round in 0..4 {
        assert!(plugin.wait_up(LONG).await, "{:?}", *plugin.state.borrow());
        let alice = server.user(&format!("alice{round}")).await;
        alice
            .wait_line(WAIT, |l| l.contains(&format!("alice{round} has joined")))
            .await
            .expect("alice is in #main");
        let mut ssh = start_shared(
            &ssh_config(&server, "[\"#dev\"]"),
            "sshchat.ssh",
            tempfile::tempdir().expect("dir"),
            shared.clone(),
        );
        assert!(ssh.wait_up(LONG).await, "{:?}", *ssh.state.borrow());
        alice
            .wait_line(WAIT, |l| {
                l.starts_with("bridge") && l.ends_with(": cd #dev")
            })
            .await
            .unwrap_or_else(|| panic!("round {round}: Devzat showed the cd: {:?}", alice.lines()));
        if round == 3 {
            // This time the server restarts under both accounts.
            server.restart().await;
            assert!(plugin.wait_up(LONG).await, "{:?}", *plugin.state.borrow());
            assert!(ssh.wait_up(LONG).await, "{:?}", *ssh.state.borrow());
        }
        ssh.deliver(delivery("#dev", "[irc] bob", &format!("relay {round}")))
            .await
            .expect("relayed into #dev");
        let dropped = shared
            .wait_until(WAIT, |c| {
                c.dropped().into_iter().find(|(account, e)| {
                    account == "sshchat.plugin" && text(e).contains(&format!("relay {round}"))
                })
            })
            .await
            .unwrap_or_else(|| panic!("round {round}: the relay heard: {:?}", shared.events()));
        assert!(dropped.1.author.id.starts_with("bridge"), "{dropped:?}");
        let person = server.user(&format!("carol{round}")).await;
        person.say(&format!("hello {round}")).await.expect("say");
        heard(
            &shared,
            &format!("hello {round}"),
            "people still get through",
        )
        .await;
        person.close().await;
        alice.close().await;
        ssh.stop(WAIT).await.expect("stop");
    }
    let leaked: Vec<_> = shared
        .events()
        .into_iter()
        .filter(|e| text(e).contains("cd #") || e.author.id.starts_with("bridge"))
        .collect();
    assert!(leaked.is_empty(), "nothing of the bot relayed: {leaked:?}");
    let announced = shared.announced();
    for account in ["sshchat.ssh", "sshchat.plugin"] {
        assert!(
            announced
                .iter()
                .any(|(a, n, _)| a == account && *n == network),
            "{account} announced {network}: {announced:?}"
        );
    }
    plugin.stop(WAIT).await.expect("stop");
}

/// One SSH account in `#main` and `#dev`: the `#main` session sees the `#dev` session arrive,
/// type `cd #dev` and leave for `#dev`, all under the account's other name, and emits none of
/// it. The test needs the `#main` session in its room before the other types `cd` (a person in
/// `#main` sees the one join before the other's `cd`); the sessions start together, so it
/// starts the account again until that order came (at most four times).
#[tokio::test]
async fn one_account_never_emits_its_other_sessions_arrival_or_commands() {
    let Some(server) = Devzat::start(false).await else {
        return;
    };
    let alice = server.user("alice").await;
    let mut exercised = false;
    for attempt in 0..4 {
        let seen_before = alice.lines().len();
        let bridge = start_up(&ssh_config(&server, "[\"#main\", \"#dev\"]"), LONG).await;
        let cd = alice
            .wait_line(WAIT, |l| {
                l.starts_with("bridge") && l.ends_with(": cd #dev")
            })
            .await;
        let lines: Vec<String> = alice.lines().into_iter().skip(seen_before).collect();
        let mover = cd
            .as_deref()
            .and_then(|l| l.split(':').next())
            .unwrap_or("");
        let cd_at = lines.iter().position(|l| l.ends_with(": cd #dev"));
        let main_join_at = lines
            .iter()
            .position(|l| l.starts_with(" --> bridge") && !l.contains(&format!(" {mover} ")));
        exercised = matches!((main_join_at, cd_at), (Some(j), Some(c)) if j < c);
        alice
            .say(&format!("after the bridge {attempt}"))
            .await
            .expect("say");
        heard(
            &bridge.recorder,
            &format!("after the bridge {attempt}"),
            "alice's line",
        )
        .await;
        let events = bridge.recorder.events();
        assert!(
            events
                .iter()
                .all(|e| !e.author.id.starts_with("bridge") && !text(e).contains("cd #dev")),
            "nothing of the account's own sessions: {events:?}"
        );
        let announced = bridge.recorder.announced();
        let last = announced.last().expect("announced");
        assert_eq!(last.1, format!("devzat@{}", server.ssh_addr()));
        assert_eq!(last.2.len(), 2, "one name per session: {announced:?}");
        bridge.stop(WAIT).await.expect("stop");
        if exercised {
            break;
        }
    }
    assert!(
        exercised,
        "the #main session was in its room before the other's cd"
    );
    alice.close().await;
}

/// A burst of 150 under the real anti-spam (on): every line once and in order, no warning.
#[tokio::test]
async fn a_burst_arrives_whole_in_order_and_without_a_warning() {
    let Some(server) = Devzat::start(true).await else {
        return;
    };
    let watcher = server.user("watcher").await;
    let bridge = start_up(&ssh_config(&server, "[\"#main\"]"), LONG).await;
    burst_whole_and_in_order(&bridge, &watcher, 150).await;
    let lines = watcher.lines();
    assert!(
        lines
            .iter()
            .all(|l| !l.contains("stop spamming") && !l.contains("banned")),
        "{lines:?}"
    );
    watcher.close().await;
    bridge.stop(WAIT).await.expect("stop");
}

/// Shut the connector down in the middle of a burst: the deliveries answered `Ok` are exactly
/// the lines the room shows, in order, and none of the others.
#[tokio::test]
async fn a_shutdown_mid_burst_answers_ok_for_exactly_the_lines_shown() {
    let Some(server) = Devzat::start(true).await else {
        return;
    };
    let watcher = server.user("watcher").await;
    let bridge = start_up(&ssh_config(&server, "[\"#main\"]"), LONG).await;
    shutdown_mid_burst(
        bridge,
        &watcher,
        (400, 100, 30),
        "bridge has left the chat",
        LONG,
    )
    .await;
    watcher.close().await;
}

/// Devzat's own bot speaks as a bot, in notices: `Server going down!` is not a chat line.
#[tokio::test]
async fn devbot_lines_are_notices_from_a_bot() {
    let Some(mut server) = Devzat::start(false).await else {
        return;
    };
    // Separate collectors: each account must turn devbot's lines into notices on its own.
    let mut ssh = start(&ssh_config(&server, "[\"#main\"]"));
    let mut plugin = start(&server.plugin_config(&server.token));
    assert!(ssh.wait_up(LONG).await && plugin.wait_up(LONG).await);
    // A game's end is announced by devbot in the room.
    let alice = server.user("alice").await;
    alice.say("hang").await.expect("hang");
    let devbot = |c: &Recorder, needle: &str| {
        let found: Vec<_> = c
            .events()
            .into_iter()
            .filter(|e| e.author.id == "devbot" && text(e).contains(needle))
            .collect();
        (!found.is_empty()).then_some(found)
    };
    let mut notices = Vec::new();
    for (mode, bridge) in [("ssh", &ssh), ("plugin", &plugin)] {
        let game = bridge
            .recorder
            .wait_until(WAIT, |c| devbot(c, "game"))
            .await
            .unwrap_or_else(|| panic!("{mode}: devbot's answer: {:?}", bridge.recorder.events()));
        notices.extend(game);
    }
    alice.close().await;
    // `Server going down!` when the server stops.
    server.terminate().await;
    let mut heard_farewell = Vec::new();
    for (mode, bridge) in [("ssh", &ssh), ("plugin", &plugin)] {
        if let Some(going) = bridge
            .recorder
            .wait_until(WAIT, |c| devbot(c, "Server going down"))
            .await
        {
            heard_farewell.push(mode);
            notices.extend(going);
        }
    }
    assert_eq!(
        heard_farewell,
        ["ssh", "plugin"],
        "devbot's farewell heard by both"
    );
    for notice in &notices {
        assert!(notice.author.is_bot, "{notice:?}");
        assert!(matches!(notice.kind, Kind::Notice { .. }), "{notice:?}");
    }
    for bridge in [&ssh, &plugin] {
        let chat_from_devbot: Vec<_> = bridge
            .recorder
            .events()
            .into_iter()
            .filter(|e| e.author.id == "devbot" && !matches!(e.kind, Kind::Notice { .. }))
            .collect();
        assert!(chat_from_devbot.is_empty(), "{chat_from_devbot:?}");
    }
    ssh.stop(WAIT).await.expect("stop");
    plugin.stop(WAIT).await.expect("stop");
}

/// Two rooms, two server restarts, anti-spam on: the sessions come back without tripping the
/// ban on more than 6 joins a minute from one key or address (every test client shares
/// 127.0.0.1), and lines flow again.
#[tokio::test]
async fn reconnects_after_restarts_without_tripping_the_join_ban() {
    let Some(mut server) = Devzat::start(true).await else {
        return;
    };
    let mut bridge = start_up(&ssh_config(&server, "[\"#main\", \"#ops\"]"), LONG).await;
    let connected = |server: &Devzat| server.log().matches("Connected bridge").count();
    for round in 1..=2 {
        server.restart().await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(150);
        // Devzat logs each login; wait for both sessions of this round.
        while connected(&server) < 2 * (round + 1) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "both sessions back after restart {round}: {}",
                server.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    assert!(bridge.wait_up(LONG).await);
    let alice = server.user("alice").await;
    alice.say("back again").await.expect("say");
    bridge
        .recorder
        .wait_for(WAIT, |e| text(e) == "back again")
        .await
        .unwrap_or_else(|| panic!("resumed: {:?}\n{}", alice.lines(), server.log()));
    let log = server.log().to_lowercase();
    assert!(!log.contains("banned"), "{log}");
    alice.close().await;
    bridge.stop(WAIT).await.expect("stop");
}

/// Someone already goes by the bridge's name and spoke before the bridge came: the bot answers
/// Devzat's name prompt, skips the history, and relays what the squatter says next as theirs.
#[tokio::test]
async fn a_taken_name_is_answered_and_history_is_not_relayed() {
    let Some(server) = Devzat::start(true).await else {
        return;
    };
    let squatter = server.user("bridge").await;
    squatter.say("ancient history").await.expect("say");
    shown_ending(&squatter, "bridge: ancient history").await;
    let bridge = start_up(&ssh_config(&server, "[\"#main\"]"), LONG).await;
    let announced = bridge.recorder.announced();
    assert_eq!(
        announced.last().map(|(_, _, names)| names.clone()),
        Some(vec!["bridge1".to_owned()]),
        "the name answered, not the one asked for: {announced:?}"
    );
    relay(&bridge, "#main", "[irc] bob", "hello squatter").await;
    squatter
        .wait_line(WAIT, |l| l == "bridge1: [irc] bob: hello squatter")
        .await
        .unwrap_or_else(|| panic!("shown under the answered name: {:?}", squatter.lines()));
    squatter.say("now").await.expect("say");
    let event = heard(&bridge.recorder, "now", "the squatter's line is relayed").await;
    assert_eq!(event.author.name, "bridge");
    assert!(
        bridge
            .recorder
            .events()
            .iter()
            .all(|e| text(e) != "ancient history"),
        "history skipped"
    );
    squatter.close().await;
    bridge.stop(WAIT).await.expect("stop");
}
