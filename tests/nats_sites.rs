//! Two sites on the nats engine, as `[bus.sites]` runs them: at each site a nats-server with a
//! JetStream domain of its own (leaf nodes of a hub), a real Devzat server and one patchbay
//! instance. The Devzat servers' rooms are mirrored room by room over SSH, so neither server
//! is touched (no plugin, no token). The hub is stopped: each site goes on relaying its own
//! traffic while people talk on both sides; the hub comes back: every line said meanwhile
//! crosses once, in order per room. Counted on the people's screens, not sampled.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use patchbay_sshchat_testserver::TestUser;
use patchbay_sshchat_testserver::real::RealDevzat;
use support::nats::{LeafSites, start_with};

const WAIT: Duration = Duration::from_secs(60);

fn config(dir: &Path, nats: &LeafSites, eu: &RealDevzat, us: &RealDevzat) -> PathBuf {
    let text = format!(
        r##"
[general]
gateway_id = "gw"
nick_format = "{{account}}:{{nick}}"

[bus]
engine = "nats"
prefix = "t"
lease = "2s"

[bus.sites.eu]
servers = ["{eu_nats}"]
domain = "eu"
accounts = ["sshchat.eu", "webhook.in"]

[bus.sites.us]
servers = ["{us_nats}"]
domain = "us"
accounts = ["sshchat.us"]

[sshchat.eu]
server = "{eu_ssh}"
dialect = "devzat"
nick = "bridge"
rooms = ["#main", "#dev"]
key_file = "{eu_key}"

[sshchat.us]
server = "{us_ssh}"
dialect = "devzat"
nick = "bridge"
rooms = ["#main", "#dev"]
key_file = "{us_key}"

[webhook.in]
token = "tok"
rate_limit_per_minute = 0

[[route]]
name = "main"
inout = ["sshchat.eu/#main", "sshchat.us/#main"]

[[route]]
name = "dev"
inout = ["sshchat.eu/#dev", "sshchat.us/#dev"]

[[route]]
name = "notify"
in = ["webhook.in/hook"]
out = ["sshchat.eu/#main", "sshchat.us/#main"]
"##,
        eu_nats = nats.url("eu"),
        us_nats = nats.url("us"),
        eu_ssh = eu.ssh_addr(),
        us_ssh = us.ssh_addr(),
        eu_key = dir.join("eu.key").display(),
        us_key = dir.join("us.key").display(),
    );
    support::write_config(dir, &text)
}

/// POST a notification to an instance's webhook until it is accepted.
async fn notify(port: u16, text: &str) {
    let body = serde_json::json!({"text": text, "username": "ci"});
    support::eventually(&format!("`{text}` accepted"), WAIT, || async {
        support::post_json(port, "/hooks/in/hook", "tok", &body).await == 202
    })
    .await;
}

async fn join(server: &RealDevzat, name: &str, room: &str) -> TestUser {
    let user = server.user(name).await;
    if room != "#main" {
        user.say(&format!("cd {room}")).await.expect("cd");
    }
    user
}

/// The relayed lines `user` saw whose text starts with `tag`, in order of arrival.
fn relayed(user: &TestUser, tag: &str) -> Vec<String> {
    user.lines()
        .iter()
        .filter(|l| l.starts_with("bridge"))
        .filter_map(|l| {
            let (_, text) = l.rsplit_once(": ")?;
            text.starts_with(tag).then(|| text.to_owned())
        })
        .collect()
}

/// Wait until `user` saw the relayed line `last`.
async fn wait_relayed(user: &TestUser, last: &str, what: &str) {
    user.wait_line(WAIT, |l| {
        l.starts_with("bridge") && l.ends_with(&format!(": {last}"))
    })
    .await
    .unwrap_or_else(|| panic!("{what}: `{last}` never came; saw {:?}", user.lines()));
}

fn lines(tag: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{tag} {i:02}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_devzat_sites_keep_relaying_when_cut_and_catch_up_once_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (Some(eu_devzat), Some(us_devzat)) = (
        RealDevzat::start(&dir.path().join("eu"), false).await,
        RealDevzat::start(&dir.path().join("us"), false).await,
    ) else {
        return;
    };
    let mut nats = LeafSites::start(dir.path(), &["eu", "us"]);
    let config = config(dir.path(), &nats, &eu_devzat, &us_devzat);
    let eu = start_with(dir.path(), &config, "eu-1", &["--site", "eu"]);
    let us = start_with(dir.path(), &config, "us-1", &["--site", "us"]);

    // Each instance's account is in both its rooms before anyone talks.
    for (instance, site) in [(&eu, "eu"), (&us, "us")] {
        let log = || {
            instance
                .gateway
                .as_ref()
                .map(|g| g.log())
                .unwrap_or_default()
        };
        support::wait_until(WAIT, &format!("sshchat.{site} in #main and #dev"), || {
            log().matches("in the room").count() >= 2
        });
    }
    let alice = join(&eu_devzat, "alice", "#main").await;
    let bob = join(&us_devzat, "bob", "#main").await;
    let dana = join(&eu_devzat, "dana", "#dev").await;
    let carl = join(&us_devzat, "carl", "#dev").await;

    // Linked.
    alice.say("linked eu").await.expect("say");
    wait_relayed(&bob, "linked eu", "eu -> us #main").await;
    bob.say("linked us").await.expect("say");
    wait_relayed(&alice, "linked us", "us -> eu #main").await;
    carl.say("linked dev").await.expect("say");
    wait_relayed(&dana, "linked dev", "us -> eu #dev").await;

    // Cut. Each site goes on relaying its own traffic: a notification posted at each site
    // reaches that site's room.
    nats.hub.stop();
    notify(eu.port, "local eu").await;
    wait_relayed(&alice, "local eu", "eu webhook -> eu #main while cut").await;
    notify(us.port, "local us").await;
    wait_relayed(&bob, "local us", "us webhook -> us #main while cut").await;
    let (from_alice, from_bob, from_carl) = (
        lines("cut eu", 15),
        lines("cut us", 15),
        lines("cut dev", 10),
    );
    for i in 0..15 {
        alice.say(&from_alice[i]).await.expect("say");
        bob.say(&from_bob[i]).await.expect("say");
        if let Some(line) = from_carl.get(i) {
            carl.say(line).await.expect("say");
        }
    }
    notify(eu.port, "local eu 2").await;
    wait_relayed(&alice, "local eu 2", "eu webhook while cut").await;

    // Back: what waited crosses once, in order per room; a marker said after it comes last.
    nats.hub.spawn();
    alice.say("marker eu").await.expect("say");
    bob.say("marker us").await.expect("say");
    carl.say("marker dev").await.expect("say");
    wait_relayed(&bob, "marker eu", "eu -> us after the cut").await;
    wait_relayed(&alice, "marker us", "us -> eu after the cut").await;
    wait_relayed(&dana, "marker dev", "us -> eu #dev after the cut").await;

    let mut want = from_alice.clone();
    want.push("marker eu".into());
    assert_eq!(
        relayed(&bob, "cut eu")
            .into_iter()
            .chain(relayed(&bob, "marker eu"))
            .collect::<Vec<_>>(),
        want,
        "us #main: alice's lines once, in order"
    );
    let mut want = from_bob.clone();
    want.push("marker us".into());
    assert_eq!(
        relayed(&alice, "cut us")
            .into_iter()
            .chain(relayed(&alice, "marker us"))
            .collect::<Vec<_>>(),
        want,
        "eu #main: bob's lines once, in order"
    );
    assert_eq!(
        relayed(&dana, "cut dev"),
        from_carl,
        "eu #dev: carl's lines once, in order"
    );
    // The notifications crossed too, once each, and rooms stayed apart.
    assert_eq!(relayed(&bob, "local eu"), ["local eu", "local eu 2"]);
    assert_eq!(relayed(&alice, "local us"), ["local us"]);
    assert!(relayed(&dana, "cut eu").is_empty() && relayed(&carl, "cut us").is_empty());
    drop((eu, us));
}

/// The nats-server configs of the example topology (`config/nats/`) are valid for the server
/// the tests run.
#[test]
fn the_example_server_configs_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/nats");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("config/nats") {
        let path = entry.expect("entry").path();
        let out = std::process::Command::new(support::nats::nats_server_binary())
            .arg("-t")
            .arg("-c")
            .arg(&path)
            .output()
            .expect("run nats-server -t");
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        checked += 1;
    }
    assert_eq!(checked, 3, "hub and two sites");
}
