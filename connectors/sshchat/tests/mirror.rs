//! Two Devzat servers mirrored by two independent gateways at once (one over the plugin API on
//! one side and SSH on the other, the second the other way round). Without a hop trace each
//! gateway would relay the other's relays forever; with it the loop ends after one round.
//! The gateways here are small stand-ins for the router: they add their hop when relaying and
//! refuse a route their hop already took, as patchbay's router does.

mod support;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use patchbay_sdk::{
    AccountInfo, Connector, ConnectorContext, ConnectorFactory, Delivery, Emit, EmitError, Event,
    EventId, EventSink, Hop, Inbound, StateHandle,
};
use patchbay_sshchat::SshChatFactory;
use patchbay_sshchat_testserver::{Options, TestServer};
use support::{on_ssh_chat, over_plugin, over_ssh};
use tokio_util::sync::CancellationToken;

/// One direction of one gateway's route: events from one account go to the other.
struct Relay {
    gateway: String,
    prefix: String,
    target: OnceLock<Arc<dyn Connector>>,
}

#[async_trait]
impl Emit for Relay {
    async fn emit(&self, account: &str, inbound: Inbound) -> Result<Option<EventId>, EmitError> {
        if inbound.is_echo || !matches!(inbound.kind, patchbay_sdk::Kind::Message { .. }) {
            return Ok(None);
        }
        let mut event = Event::from_inbound(account, inbound);
        let hop = Hop {
            gateway: self.gateway.clone(),
            route: "mirror".into(),
        };
        if event.hops.contains(&hop) {
            return Ok(None);
        }
        event.hops.push(hop);
        let delivery = Delivery {
            room: "#main".into(),
            nick: format!("[{}] {}", self.prefix, event.author.name),
            event,
            route: "mirror".into(),
            quote: None,
        };
        let Some(target) = self.target.get().cloned() else {
            return Ok(None);
        };
        let id = delivery.event.id;
        tokio::spawn(async move {
            for _ in 0..100 {
                if target.deliver(delivery.clone()).await.is_ok() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Ok(Some(id))
    }
}

fn build(table: String, dir: &std::path::Path, name: &str) -> Arc<dyn Connector> {
    let account = AccountInfo {
        account: format!("sshchat.{name}"),
        config_dir: dir.to_owned(),
        data_dir: dir.join(name),
    };
    SshChatFactory
        .build(&account, table.parse().expect("toml"))
        .expect("valid config")
}

fn run(
    connector: &Arc<dyn Connector>,
    relay: Arc<Relay>,
    name: &str,
    dir: &std::path::Path,
    stop: &CancellationToken,
) {
    let (state, _) = StateHandle::new();
    let ctx = ConnectorContext {
        account: format!("sshchat.{name}"),
        sink: EventSink::new(format!("sshchat.{name}"), relay),
        state,
        shutdown: stop.clone(),
        data_dir: dir.join(name),
    };
    let connector = connector.clone();
    tokio::spawn(async move { connector.run(ctx).await });
}

/// One gateway mirroring `#main` of two servers.
fn gateway(
    id: &str,
    (one, one_cfg): (&str, String),
    (two, two_cfg): (&str, String),
    dir: &std::path::Path,
    stop: &CancellationToken,
) {
    let a = build(one_cfg, dir, &format!("{id}-{one}"));
    let b = build(two_cfg, dir, &format!("{id}-{two}"));
    let to_b = Arc::new(Relay {
        gateway: id.into(),
        prefix: one.into(),
        target: OnceLock::new(),
    });
    let to_a = Arc::new(Relay {
        gateway: id.into(),
        prefix: two.into(),
        target: OnceLock::new(),
    });
    let _ = to_b.target.set(b.clone());
    let _ = to_a.target.set(a.clone());
    run(&a, to_b, &format!("{id}-{one}"), dir, stop);
    run(&b, to_a, &format!("{id}-{two}"), dir, stop);
}

#[tokio::test]
async fn two_gateways_on_the_same_rooms_do_not_loop() {
    let mut opts = Options::devzat();
    opts.tokens = vec!["dvz@g1".into(), "dvz@g2".into()];
    let s1 = TestServer::start(opts.clone()).await.expect("s1");
    let s2 = TestServer::start(opts).await.expect("s2");
    let dir = tempfile::tempdir().expect("tempdir");
    let stop = CancellationToken::new();
    gateway(
        "g1",
        ("s1", over_plugin(&s1, "g1", "dvz@g1")),
        ("s2", over_ssh(&s2, "g1bot", "")),
        dir.path(),
        &stop,
    );
    gateway(
        "g2",
        ("s1", over_ssh(&s1, "g2bot", "")),
        ("s2", over_plugin(&s2, "g2", "dvz@g2")),
        dir.path(),
        &stop,
    );
    // Both SSH bots and both listeners are in.
    assert!(
        s1.wait_until(Duration::from_secs(20), |s| s.listeners() == 1
            && s.users().len() == 1)
            .await
    );
    assert!(
        s2.wait_until(Duration::from_secs(20), |s| s.listeners() == 1
            && s.users().len() == 1)
            .await
    );

    let alice = s1.connect_user("alice").await.expect("alice");
    let bob = s2.connect_user("bob").await.expect("bob");
    alice.say("hello from s1").await.expect("say");
    // Each gateway relays it to s2 once, under its per-server prefix.
    bob.wait_line(Duration::from_secs(15), |l| {
        l == "[s1] alice: hello from s1"
    })
    .await
    .expect("g2 relayed it (plugin, native name)");
    bob.wait_line(Duration::from_secs(15), |l| {
        l == "g1bot: [s1] alice: hello from s1"
    })
    .await
    .expect("g1 relayed it (SSH bot)");
    // Let any loop run for a while, then count.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let count = |server: &TestServer| {
        server
            .transcript()
            .iter()
            .filter(|r| r.text.contains("hello from s1"))
            .count()
    };
    let (on_s1, on_s2) = (count(&s1), count(&s2));
    assert!(
        on_s2 <= 2,
        "s2 got it at most once per gateway: {:?}",
        s2.transcript()
    );
    assert!(
        on_s1 <= 3,
        "s1 got at most one round back: {:?}",
        s1.transcript()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        (count(&s1), count(&s2)),
        (on_s1, on_s2),
        "the copies stopped"
    );
    stop.cancel();
    alice.close().await;
    bob.close().await;
}

#[tokio::test]
async fn devzat_over_ssh_mirrors_ssh_chat_both_ways() {
    let dvz = TestServer::start(Options::devzat()).await.expect("devzat");
    let sc = TestServer::start(Options::ssh_chat())
        .await
        .expect("ssh-chat");
    let dir = tempfile::tempdir().expect("tempdir");
    let stop = CancellationToken::new();
    gateway(
        "g",
        ("dvz", over_ssh(&dvz, "bridge", "")),
        ("sc", on_ssh_chat(&sc.ssh_addr(), "")),
        dir.path(),
        &stop,
    );
    assert!(
        dvz.wait_until(Duration::from_secs(20), |s| s.users().len() == 1)
            .await
    );
    assert!(
        sc.wait_until(Duration::from_secs(20), |s| s.users().len() == 1)
            .await
    );
    let alice = dvz.connect_user("alice").await.expect("alice");
    let carol = sc.connect_user("carol").await.expect("carol");
    alice.say("hi **ssh-chat**").await.expect("say");
    carol
        .wait_line(Duration::from_secs(15), |l| {
            l == "bridge: [dvz] alice: hi ssh-chat"
        })
        .await
        .expect("carol sees alice (Markdown rendered to plain text)");
    carol.say("hello devzat").await.expect("say");
    alice
        .wait_line(Duration::from_secs(15), |l| {
            l == "bridge: [sc] carol: hello devzat"
        })
        .await
        .expect("alice sees carol");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let relayed = |s: &TestServer| s.transcript().iter().filter(|r| r.from == "bridge").count();
    assert_eq!(
        (relayed(&dvz), relayed(&sc)),
        (1, 1),
        "one copy each way, no echo loop"
    );
    stop.cancel();
    alice.close().await;
    carol.close().await;
}
