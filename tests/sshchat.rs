//! End to end through the `patchbay` binary: a console room, a Devzat server over its plugin
//! API and a second Devzat server over SSH, all in one route. The chat servers are the sshchat
//! connector's test server (neither real server can be installed here).

mod support;

use std::path::Path;
use std::time::Duration;

use patchbay_sshchat_testserver::format::visible;
use patchbay_sshchat_testserver::{Options, TestServer, TestUser};
use support::Gateway;

const WAIT: Duration = Duration::from_secs(30);
const TOKEN: &str = "dvz@ZTJlLXRva2Vu";

/// The secret the configs take from the environment, and the log level the tests read.
const ENV: &[(&str, &str)] = &[("DEVZAT_TOKEN", TOKEN), ("RUST_LOG", "info")];

/// Poll `condition` every 100 ms for up to [`WAIT`]; whether it came to hold.
async fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Wait until the file holds a line containing `needle`.
async fn wait_file(path: &Path, needle: &str) -> bool {
    eventually(|| std::fs::read_to_string(path).is_ok_and(|t| t.contains(needle))).await
}

/// Wait up to [`WAIT`] until `user` is shown `line`; on timeout the panic shows the gateway's
/// log, which says why the line did not come.
async fn shown(user: &TestUser, gateway: &Gateway, line: &str) {
    user.wait_line(WAIT, |l| l == line)
        .await
        .unwrap_or_else(|| panic!("never shown {line:?}; log:\n{}", gateway.log()));
}

/// `[sshchat.NAME]`: the bridge on the Devzat `server` over its plugin API, with the token
/// the config takes from `DEVZAT_TOKEN`.
fn over_plugin(name: &str, server: &TestServer) -> String {
    format!(
        "[sshchat.{name}]\nserver = \"{}\"\ndialect = \"devzat\"\nnick = \"bridge\"\n\
         plugin = {{ address = \"{}\", token = \"${{DEVZAT_TOKEN}}\" }}\n",
        server.ssh_addr(),
        server.grpc_url().expect("grpc"),
    )
}

/// `[sshchat.NAME]`: the bridge on the Devzat `server` over SSH, reconnecting after a second;
/// then the lines `more`.
fn over_ssh(name: &str, server: &TestServer, more: &str) -> String {
    format!(
        "[sshchat.{name}]\nserver = \"{}\"\ndialect = \"devzat\"\nnick = \"bridge\"\n\
         reconnect_min_secs = 1\n{more}",
        server.ssh_addr(),
    )
}

#[tokio::test]
async fn console_and_two_devzat_servers_in_one_route() {
    let mut opts = Options::devzat();
    opts.tokens = vec![TOKEN.into()];
    let plugin_server = TestServer::start(opts).await.expect("devzat one");
    let ssh_server = TestServer::start(Options::devzat())
        .await
        .expect("devzat two");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("console.out");
    let mut gateway = Gateway::start_env(
        dir.path(),
        &format!(
            r#"
[general]
data_dir = "data"
gateway_id = "e2e"

[console.term]
input = "stdin"
output = "{out}"
room = "lobby"
nick = "you"

{one}
{two}

[[route]]
name = "lobby"
inout = ["console.term/lobby", "sshchat.one/#main", "sshchat.two/#main"]
nick_format = "[{{account}}] {{nick}}"
"#,
            out = out.display(),
            one = over_plugin("one", &plugin_server),
            two = over_ssh("two", &ssh_server, ""),
        ),
        ENV,
    );
    assert!(
        plugin_server.wait_until(WAIT, |s| s.listeners() == 1).await,
        "plugin listener registered; log:\n{}",
        gateway.log()
    );
    assert!(
        ssh_server.wait_until(WAIT, |s| s.users().len() == 1).await,
        "SSH bot joined; log:\n{}",
        gateway.log()
    );
    let alice = plugin_server.connect_user("alice").await.expect("alice");
    let bob = ssh_server.connect_user("bob").await.expect("bob");

    // Console -> both Devzat servers.
    gateway.type_line("hello from the console");
    let line = "[console.term] you: hello from the console";
    shown(&alice, &gateway, line).await;
    let line = "bridge: [console.term] you: hello from the console";
    shown(&bob, &gateway, line).await;

    // Devzat one (plugin) -> console and Devzat two, with a per-server prefix.
    alice.say("hi from server one").await.expect("say");
    assert!(
        wait_file(&out, "hi from server one").await,
        "console shows alice"
    );
    let line = "bridge: [sshchat.one] alice: hi from server one";
    shown(&bob, &gateway, line).await;

    // Devzat two (SSH) -> console and Devzat one, under the relayed name.
    bob.say("hi from server two").await.expect("say");
    assert!(
        wait_file(&out, "hi from server two").await,
        "console shows bob"
    );
    shown(&alice, &gateway, "[sshchat.two] bob: hi from server two").await;

    // Nothing echoed back: each text exists once per server.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (server, name) in [(&plugin_server, "one"), (&ssh_server, "two")] {
        for text in [
            "hello from the console",
            "hi from server one",
            "hi from server two",
        ] {
            let copies = server
                .transcript()
                .iter()
                .filter(|r| r.text.contains(text))
                .count();
            assert_eq!(
                copies,
                1,
                "{text:?} on server {name}: {:?}",
                server.transcript()
            );
        }
    }
    let console = std::fs::read_to_string(&out).unwrap_or_default();
    assert_eq!(
        console.matches("hi from server one").count(),
        1,
        "{console}"
    );
    alice.close().await;
    bob.close().await;
}

#[tokio::test]
async fn devzat_over_ssh_survives_a_restart_and_takes_a_burst_of_100() {
    let server = TestServer::start(Options::devzat()).await.expect("devzat");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut gateway = Gateway::start_env(
        dir.path(),
        &format!(
            r#"
[general]
data_dir = "data"

[console.term]
input = "stdin"
output = "{out}"
room = "lobby"
nick = "you"

{dvz}

[[route]]
name = "lobby"
inout = ["console.term/lobby", "sshchat.dvz/#main"]
"#,
            out = dir.path().join("console.out").display(),
            dvz = over_ssh("dvz", &server, ""),
        ),
        ENV,
    );
    assert!(
        server.wait_until(WAIT, |s| s.users().len() == 1).await,
        "bot joined; log:\n{}",
        gateway.log()
    );

    // The server goes away; a line typed meanwhile is kept and delivered after the reconnect.
    server.stop().await;
    assert!(
        eventually(|| gateway.log().contains("the server closed the session")).await,
        "the bridge never saw its session end: {}",
        gateway.log()
    );
    gateway.type_line("typed while the server was down");
    server.restart().await.expect("restart");
    server
        .wait_for(Duration::from_secs(60), |r| {
            r.from == "bridge" && r.text.contains("typed while the server was down")
        })
        .await
        .unwrap_or_else(|| panic!("delivered after the reconnect; log:\n{}", gateway.log()));

    // A burst of 100 lines arrives complete, merged, with no warning or ban.
    for i in 0..100 {
        gateway.type_line(&format!("burst line {i}"));
    }
    let complete = server
        .wait_until(Duration::from_secs(90), |s| {
            // What a person sees: invisible characters removed, merged lines split again.
            let seen: Vec<String> = s
                .transcript()
                .iter()
                .filter(|r| r.from == "bridge")
                .flat_map(|r| {
                    visible(&r.text)
                        .split("\\n")
                        .map(str::to_owned)
                        .collect::<Vec<_>>()
                })
                .collect();
            (0..100).all(|i| seen.contains(&format!("you: burst line {i}")))
        })
        .await;
    assert!(complete, "all 100 arrived");
    assert!(server.warnings().is_empty(), "{:?}", server.warnings());
    assert!(server.bans().is_empty(), "{:?}", server.bans());
}

#[tokio::test]
async fn two_devzat_servers_mirrored_room_by_room() {
    let mut opts = Options::devzat();
    opts.tokens = vec![TOKEN.into()];
    let east = TestServer::start(opts).await.expect("east");
    let west = TestServer::start(Options::devzat()).await.expect("west");
    let dir = tempfile::tempdir().expect("tempdir");
    let gateway = Gateway::start_env(
        dir.path(),
        &format!(
            r##"
[general]
data_dir = "data"
nick_format = "{{account}}:{{nick}}"

{east}
{west}

[[route]]
name = "main"
inout = ["sshchat.east/#main", "sshchat.west/#main"]

[[route]]
name = "dev"
inout = ["sshchat.east/#dev", "sshchat.west/#dev"]
"##,
            east = over_plugin("east", &east),
            west = over_ssh("west", &west, "rooms = [\"#main\", \"#dev\"]\n"),
        ),
        ENV,
    );
    assert!(
        west.wait_until(WAIT, |s| s.users().len() == 2).await,
        "one SSH session per room; log:\n{}",
        gateway.log()
    );
    assert!(east.wait_until(WAIT, |s| s.listeners() == 1).await);
    // People in #dev on both sides.
    let ann = east.connect_user("ann").await.expect("ann");
    ann.say("cd #dev").await.expect("cd");
    let wes = west.connect_user("wes").await.expect("wes");
    wes.say("cd #dev").await.expect("cd");
    let mia = west.connect_user("mia").await.expect("mia");
    assert!(
        west.wait_until(WAIT, |s| s
            .users()
            .iter()
            .filter(|(r, _)| r == "#dev")
            .count()
            == 2)
            .await
    );

    ann.say("dev talk from east").await.expect("say");
    let seen = wes
        .wait_line(WAIT, |l| {
            l.ends_with("sshchat.east:ann: dev talk from east")
        })
        .await
        .unwrap_or_else(|| panic!("wes in west #dev sees ann; log:\n{}", gateway.log()));
    assert!(seen.starts_with("bridge"), "{seen}");
    wes.say("dev reply from west").await.expect("say");
    shown(&ann, &gateway, "sshchat.west:wes: dev reply from west").await;
    mia.say("main talk from west").await.expect("say");
    east.wait_for(WAIT, |r| {
        r.room == "#main"
            && r.from == "sshchat.west:mia"
            && visible(&r.text) == "main talk from west"
    })
    .await
    .expect("west #main reaches east #main");

    // Rooms stay apart: nothing of #dev reached #main and the reverse.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for server in [&east, &west] {
        for record in server.transcript() {
            if record.text.contains("dev talk") || record.text.contains("dev reply") {
                assert_eq!(record.room, "#dev", "{record:?}");
            }
            if record.text.contains("main talk") {
                assert_eq!(record.room, "#main", "{record:?}");
            }
        }
    }
}

#[tokio::test]
async fn a_wrong_token_is_reported_clearly() {
    let mut opts = Options::devzat();
    opts.tokens = vec!["dvz@the-right-one".into()];
    let server = TestServer::start(opts).await.expect("devzat");
    let dir = tempfile::tempdir().expect("tempdir");
    let gateway = Gateway::start_env(
        dir.path(),
        &format!(
            r##"
[console.term]
input = "none"
output = "{out}"

{dvz}

[[route]]
name = "r"
inout = ["console.term/lobby", "sshchat.dvz/#main"]
"##,
            out = dir.path().join("out").display(),
            dvz = over_plugin("dvz", &server),
        ),
        ENV,
    );
    eventually(|| gateway.log().contains("refused the plugin token")).await;
    let log = gateway.log();
    assert!(log.contains("refused the plugin token"), "{log}");
    assert!(log.contains("Invalid authorization header"), "{log}");
    assert_eq!(server.listeners(), 0);
}
