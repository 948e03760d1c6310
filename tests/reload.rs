//! Hot reload through the binary (SIGHUP), with a real InspIRCd: routes added, changed and
//! removed while an IRC user keeps talking; accounts added, changed and removed beside an
//! IRC account that must never reconnect; a broken file refused with `check`'s own words.

mod support;

#[path = "../connectors/irc/tests/support/mod.rs"]
mod irc;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use irc::{IrcServer, TestClient, available};
use support::{Gateway, run_failing, wait_until, write_config};

const WAIT: Duration = Duration::from_secs(30);

/// The file at each step. `copy` (#a → #b) and `irc.other` come and go; `screen`'s nick
/// format changes; `irc.net` and `console.screen` stay as they are.
fn config(port: u16, copy: bool, screen_format: &str, other: Option<&str>, extra: &str) -> String {
    let mut text = format!(
        "[general]\ndata_dir = \"data\"\n\n\
         [console.screen]\ninput = \"none\"\noutput = \"stdout\"\n\n\
         [irc.net]\nserver = \"127.0.0.1\"\nport = {port}\nnick = \"pb\"\n\
         channels = [\"#a\", \"#b\"]\nflood_control = false\n\
         reconnect_min_secs = 0.5\nreconnect_max_secs = 2\n\n"
    );
    if let Some(nick) = other {
        let flood_off = "flood_control = false\n";
        text.push_str(&irc::account("other", port, nick, "#b", flood_off));
    }
    text.push_str(&format!(
        "[[route]]\nname = \"screen\"\nin = [\"irc.net/#a\"]\nout = [\"console.screen/lobby\"]\n\
         nick_format = \"{screen_format}\"\n{extra}\n"
    ));
    if copy {
        text.push_str(
            "[[route]]\nname = \"copy\"\nin = [\"irc.net/#a\"]\nout = [\"irc.net/#b\"]\n\
             nick_format = \"{nick}\"\n",
        );
    }
    text
}

/// How many times the gateway has logged `needle` so far.
fn logged(gateway: &Gateway, needle: &str) -> usize {
    gateway.log().matches(needle).count()
}

/// Write `text` as the config, SIGHUP, and wait for the gateway to log the outcome (the
/// `n`-th reload); returns how many messages had been sent when the reload was done.
fn reload(gateway: &Gateway, text: &str, n: usize, sent: &AtomicU64) -> u64 {
    std::fs::write(&gateway.config, text).expect("write the config");
    gateway.hangup();
    wait_until(WAIT, "the reload's outcome in the log", || {
        logged(gateway, "config reloaded") + logged(gateway, "config reload refused") >= n
    });
    sent.load(Ordering::SeqCst)
}

/// What `patchbay check` says about `path`, without its `error: ` prefix.
fn check_errors(path: &Path) -> String {
    let stderr = run_failing(&["check"], path);
    stderr
        .strip_prefix("error: ")
        .unwrap_or(&stderr)
        .trim_end()
        .to_owned()
}

/// The number in a relayed line ending in `m<N>`.
fn number(line: &str) -> Option<u64> {
    line.rsplit_once(" m")?.1.trim().parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_and_accounts_reload_while_messages_flow_and_irc_net_never_reconnects() {
    if !available("inspircd") {
        return;
    }
    let server = IrcServer::inspircd().await;
    let dir = irc::tempdir();
    let mut alice = TestClient::connect_in(server.port, "alice", "#a").await;
    // bob only watches #b, from before the bridge comes to the end; carol waits for joins.
    let mut bob = TestClient::connect_in(server.port, "bob", "#b").await;
    let mut carol = TestClient::connect_in(server.port, "carol", "#b").await;

    let v1 = config(server.port, false, "{nick}", None, "");
    let mut gateway = Gateway::start(dir.path(), &v1);
    carol.expect_join("pb", "#b").await;
    alice.expect_join("pb", "#a").await;
    // The bridge is in #a before alice starts: nothing she says is missed.
    alice.wait_member("#a", "pb").await;

    // alice talks all along: m0, m1, ... every 20 ms, until told to stop.
    let sent = Arc::new(AtomicU64::new(0));
    let quiet = Arc::new(AtomicBool::new(false));
    let talker = {
        let (sent, quiet) = (Arc::clone(&sent), Arc::clone(&quiet));
        tokio::spawn(async move {
            while !quiet.load(Ordering::SeqCst) {
                let n = sent.load(Ordering::SeqCst);
                alice.send(&format!("PRIVMSG #a :m{n}")).await;
                sent.store(n + 1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            alice
        })
    };
    let until_sent = |n: u64| {
        let sent = Arc::clone(&sent);
        move || sent.load(Ordering::SeqCst) >= n
    };
    let block = |f: &mut dyn FnMut()| tokio::task::block_in_place(f);

    // (a) Route `copy` added, and account irc.other with it.
    block(&mut || wait_until(WAIT, "20 messages sent", until_sent(20)));
    let v2 = config(server.port, true, "{nick}", Some("pbo"), "");
    let after_add = block_ret(|| reload(&gateway, &v2, 1, &sent));
    carol.expect_join("pbo", "#b").await;
    // (b) `screen`'s nick format changed; irc.other changed (its nick): it restarts alone.
    block(&mut || wait_until(WAIT, "20 more sent", until_sent(after_add + 20)));
    let v3 = config(server.port, true, "v2-{nick}", Some("pbn"), "");
    let after_change = block_ret(|| reload(&gateway, &v3, 2, &sent));
    carol.expect_join("pbn", "#b").await;
    // (c) Route `copy` and irc.other removed.
    block(&mut || wait_until(WAIT, "20 more sent", until_sent(after_change + 20)));
    let v4 = config(server.port, false, "v2-{nick}", None, "");
    // Everything up to the last message sent has reached #b before `copy` goes: that one or
    // a later one (carol may have read past it while she waited for pbn's join; #b gets its
    // messages in order).
    let before_remove = sent.load(Ordering::SeqCst);
    carol
        .expect(
            &format!("PRIVMSG #b with m{} or later", before_remove - 1),
            move |cmd, params, _| {
                cmd == "PRIVMSG"
                    && params.first().is_some_and(|t| t == "#b")
                    && params
                        .get(1)
                        .and_then(|text| number(text))
                        .is_some_and(|n| n + 1 >= before_remove)
            },
        )
        .await;
    let after_remove = block_ret(|| reload(&gateway, &v4, 3, &sent));
    // A broken file (an unknown key in a route) is refused whole.
    block(&mut || wait_until(WAIT, "20 more sent", until_sent(after_remove + 20)));
    let broken = config(server.port, true, "{nick}", None, "nick_fromat = \"x\"\n");
    std::fs::write(&gateway.config, &broken).expect("write the broken config");
    let expected = check_errors(&gateway.config);
    assert!(expected.contains("nick_fromat"), "{expected}");
    let after_broken = block_ret(|| reload(&gateway, &broken, 4, &sent));
    block(&mut || wait_until(WAIT, "20 more sent", until_sent(after_broken + 20)));
    quiet.store(true, Ordering::SeqCst);
    let mut alice = talker.await.expect("the talker");
    let total = sent.load(Ordering::SeqCst);
    alice.send("PRIVMSG #a :m-end").await;

    // The console got every message once, in order; the nick format changed once, for good,
    // and every message sent after that reload shows it — the broken file changed nothing.
    let mut screen = Vec::new();
    block(&mut || {
        loop {
            let line = gateway.expect_line(WAIT, |l| l.starts_with("[console.screen/lobby]"));
            if line.ends_with("m-end") {
                break;
            }
            screen.push(line);
        }
    });
    let numbers: Vec<u64> = screen.iter().filter_map(|l| number(l)).collect();
    assert_eq!(numbers, (0..total).collect::<Vec<_>>(), "{screen:#?}");
    let first_new = screen
        .iter()
        .position(|l| l.contains("<v2-alice>"))
        .expect("the new nick format was used");
    assert!(
        screen[first_new..].iter().all(|l| l.contains("<v2-alice>"))
            && screen[..first_new].iter().all(|l| l.contains("<alice>")),
        "the format changed more than once: {screen:#?}"
    );
    assert!(
        first_new as u64 <= after_change,
        "{first_new} > {after_change}"
    );

    // #b got one unbroken run of messages, each once: those accepted while `copy` was in
    // force, which holds every one sent between its reloads and none sent after its removal.
    bob.send("PING :end-of-test").await;
    let seen = std::sync::Mutex::new((Vec::new(), Vec::new()));
    bob.expect("the end of the test", |cmd, params, p| {
        let nick = p
            .source
            .as_ref()
            .map(|s| s.nick.clone())
            .unwrap_or_default();
        let mut seen = seen.lock().expect("not poisoned");
        match cmd {
            "PRIVMSG" => seen.0.push(params.get(1).cloned().unwrap_or_default()),
            "JOIN" | "QUIT" | "PART" => seen.1.push(format!("{cmd} {nick}")),
            _ => {}
        }
        cmd == "PONG" && params.iter().any(|p| p == "end-of-test")
    })
    .await;
    let (seen_b, mut joins_quits) = seen.into_inner().expect("not poisoned");
    let copied: Vec<u64> = seen_b.iter().filter_map(|l| number(l)).collect();
    let (lo, hi) = (
        *copied.first().expect("#b got messages"),
        *copied.last().expect("#b got messages"),
    );
    assert_eq!(copied, (lo..=hi).collect::<Vec<_>>(), "{seen_b:#?}");
    assert!(
        lo <= after_add,
        "#b missed messages sent after `copy` was added: {lo}"
    );
    assert!(
        hi + 1 >= before_remove,
        "#b missed messages before `copy` went: {hi}"
    );
    // (Those in between were in transit during the reload: either side is right.)
    assert!(
        hi < after_remove + 1,
        "#b got messages after `copy` went: {hi}"
    );
    // irc.net never left or came back; irc.other came, restarted with its new nick, went.
    joins_quits.retain(|e| !e.ends_with(" carol"));
    assert_eq!(
        joins_quits,
        ["JOIN pb", "JOIN pbo", "QUIT pbo", "JOIN pbn", "QUIT pbn"],
        "irc.net must join once and never leave; irc.other comes, restarts alone, goes"
    );

    // The reports, and the refusal in check's words.
    let log = strip_ansi(&gateway.log());
    let reports: BTreeMap<usize, &str> = log
        .lines()
        .filter(|l| l.contains("config reloaded"))
        .enumerate()
        .collect();
    assert_eq!(reports.len(), 3, "{log}");
    assert!(
        reports[&0].contains("added=[\"irc.other\"]"),
        "{}",
        reports[&0]
    );
    assert!(
        reports[&1].contains("restarted=[\"irc.other\"]"),
        "{}",
        reports[&1]
    );
    assert!(
        reports[&2].contains("removed=[\"irc.other\"]"),
        "{}",
        reports[&2]
    );
    assert!(
        reports.values().all(|r| r.contains("routes_changed=true")),
        "{reports:#?}"
    );
    assert!(
        log.contains(&format!(
            "config reload refused; the running config stays:\n{expected}"
        )),
        "the refusal differs from check's:\n{expected}\nlog:\n{log}"
    );
    assert!(gateway.stop(), "patchbay did not stop cleanly");
}

/// The log without terminal colours.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Run a blocking closure on this worker without stalling the runtime.
fn block_ret<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// An account removed while its network is down keeps its waiting deliveries (the reload
/// reports them) and delivers them once a reload brings it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_account_keeps_its_waiting_deliveries_until_it_comes_back() {
    if !available("inspircd") {
        return;
    }
    let server = IrcServer::inspircd().await;
    let nobody = irc::free_port();
    let http = irc::free_port();
    let dir = irc::tempdir();
    let text = |port: Option<u16>, extra: &str| {
        let mut text = format!(
            "[general]\ndata_dir = \"data\"\n\n[http]\nlisten = \"127.0.0.1:{http}\"\n\n\
             [console.you]\ninput = \"stdin\"\noutput = \"you.log\"\nroom = \"lobby\"\nnick = \"you\"\n\n\
             [console.screen]\ninput = \"none\"\noutput = \"stdout\"\n\n{extra}\
             [[route]]\nname = \"screen\"\nin = [\"console.you/lobby\"]\nout = [\"console.screen/lobby\"]\n\n"
        );
        if let Some(port) = port {
            let extra = "flood_control = false\nreconnect_min_secs = 0.5\nreconnect_max_secs = 1\n";
            text.push_str(&irc::account("late", port, "late", "#x", extra));
            text.push_str(
                "[[route]]\nname = \"late\"\nin = [\"console.you/lobby\"]\nout = [\"irc.late/#x\"]\n\
                 nick_format = \"{nick}\"\n",
            );
        }
        text
    };
    // irc.late points at a port where nothing listens: its deliveries wait.
    let mut gateway = Gateway::start(dir.path(), &text(Some(nobody), ""));
    let sent = AtomicU64::new(0);
    block_ret(|| {
        for i in 0..3 {
            gateway.type_line(&format!("waiting m{i}"));
            gateway.expect(&format!("[console.screen/lobby] <you> waiting m{i}"));
        }
    });
    block_ret(|| reload(&gateway, &text(None, ""), 1, &sent));
    let log = strip_ansi(&gateway.log());
    let report = log
        .lines()
        .find(|l| l.contains("config reloaded"))
        .expect("a report");
    assert!(report.contains("removed=[\"irc.late\"]"), "{report}");
    assert!(report.contains("waiting_in_removed=3"), "{report}");

    // Back, on a real server: what waited arrives, once each, in order.
    let mut carol = TestClient::connect_in(server.port, "carol", "#x").await;
    block_ret(|| reload(&gateway, &text(Some(server.port), ""), 2, &sent));
    let got = carol
        .collect_privmsgs("#x", "<y\u{200B}ou> waiting m2")
        .await;
    assert_eq!(
        got,
        [
            "<y\u{200B}ou> waiting m0",
            "<y\u{200B}ou> waiting m1",
            "<y\u{200B}ou> waiting m2"
        ]
    );
    assert!(gateway.stop(), "patchbay did not stop cleanly");
}

/// A webhook account added, changed (its token) and removed by reloads: the listener keeps
/// running, and each request is answered by the account as the file says at that moment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_account_is_added_changed_and_removed_on_the_running_listener() {
    let port = irc::free_port();
    let dir = irc::tempdir();
    let text = |token: Option<&str>| {
        let mut text = format!(
            "[general]\ndata_dir = \"data\"\n\n[http]\nlisten = \"127.0.0.1:{port}\"\n\n\
             [console.screen]\ninput = \"none\"\noutput = \"stdout\"\n\n"
        );
        if let Some(token) = token {
            text.push_str(&format!(
                "[webhook.ci]\ntoken = \"{token}\"\n\n[[route]]\nname = \"ci\"\n\
                 in = [\"webhook.ci/builds\"]\nout = [\"console.screen/alerts\"]\n"
            ));
        }
        text
    };
    let mut gateway = Gateway::start(dir.path(), &text(None));
    support::wait_for_port(port, WAIT);
    let post = |token: &'static str, n: u32| async move {
        let body = serde_json::json!({"text": format!("build {n}"), "username": "ci"});
        support::post_json(port, "/hooks/ci/builds", token, &body).await
    };
    assert_eq!(post("one", 0).await, 404);

    let sent = AtomicU64::new(0);
    let up_metric = "patchbay_connector_up{account=\"webhook.ci\"} 1";
    assert!(!support::http_get(port, "/metrics").1.contains(up_metric));
    block_ret(|| reload(&gateway, &text(Some("one")), 1, &sent));
    assert_eq!(post("one", 1).await, 202);
    block_ret(|| gateway.expect("[console.screen/alerts] <ci> build 1"));
    assert!(
        support::http_get(port, "/metrics").1.contains(up_metric),
        "/metrics does not list the added account"
    );

    block_ret(|| reload(&gateway, &text(Some("two")), 2, &sent));
    assert_eq!(post("one", 2).await, 403, "the old token still works");
    assert_eq!(post("two", 3).await, 202);
    block_ret(|| gateway.expect("[console.screen/alerts] <ci> build 3"));

    // A token read from a file: the file's new contents count as a change of the account.
    let token_file = dir.path().join("ci.token");
    std::fs::write(&token_file, "three").expect("write the token file");
    let from_file = text(None).replace(
        "[console.screen]",
        &format!(
            "[webhook.ci]\ntoken_file = \"{}\"\n\n[[route]]\nname = \"ci\"\n\
             in = [\"webhook.ci/builds\"]\nout = [\"console.screen/alerts\"]\n\n[console.screen]",
            token_file.display()
        ),
    );
    block_ret(|| reload(&gateway, &from_file, 3, &sent));
    assert_eq!(post("three", 5).await, 202);
    block_ret(|| gateway.expect("[console.screen/alerts] <ci> build 5"));
    std::fs::write(&token_file, "four").expect("write the token file");
    block_ret(|| reload(&gateway, &from_file, 4, &sent));
    assert_eq!(
        post("three", 6).await,
        403,
        "the old file's token still works"
    );
    assert_eq!(post("four", 7).await, 202);
    block_ret(|| gateway.expect("[console.screen/alerts] <ci> build 7"));

    block_ret(|| reload(&gateway, &text(None), 5, &sent));
    assert_eq!(post("four", 8).await, 404);
    assert_eq!(support::http_get(port, "/healthz").0, 200);
    assert!(
        !support::http_get(port, "/metrics")
            .1
            .contains("patchbay_connector_up{account=\"webhook.ci\"}"),
        "/metrics still lists the removed account"
    );
    let log = strip_ansi(&gateway.log());
    assert_eq!(log.matches("HTTP listener up").count(), 1, "{log}");
    assert!(
        !gateway
            .seen
            .iter()
            .any(|l| ["build 2", "build 4", "build 6", "build 8"]
                .iter()
                .any(|n| l.contains(n))),
        "{:?}",
        gateway.seen
    );
    assert!(gateway.stop(), "patchbay did not stop cleanly");
}

/// The nats engine reloads accounts and routes: an added account is taken by a lease and
/// runs, a changed one restarts where it is held, a removed one stops and gives its lease up,
/// and a route's nick format applies at once.
#[test]
fn the_nats_engine_reloads_accounts_and_routes() {
    use support::nats::{NatsServer, bus, console_out, owner, post, post_until_accepted, printed};
    if !Path::new(&support::nats::nats_server_binary()).exists()
        && !available(&support::nats::nats_server_binary().to_string_lossy())
    {
        return;
    }
    let dir = irc::tempdir();
    let nats = NatsServer::start(dir.path());
    let text = |format: &str, extra: &str| {
        "[general]\ngateway_id = \"gw\"\n\nBUS\n[webhook.in]\ntoken = \"tok\"\nrate_limit_per_minute = 0\n\n\
         CONSOLE\nEXTRA\
         [[route]]\nname = \"notify\"\nin = [\"webhook.in/hook\"]\nout = [\"console.out/lobby\"]\n\
         nick_format = \"FORMAT\"\n"
            .replace("BUS", &bus(&nats, "t"))
            .replace("CONSOLE", &console_out(dir.path()))
            .replace("EXTRA", extra)
            .replace("FORMAT", format)
    };
    // A second console account and a route into it, writing to `file`.
    let extra = |file: &str| {
        format!(
            "[console.extra]\ninput = \"none\"\noutput = \"{}\"\n\n\
             [[route]]\nname = \"extra\"\nin = [\"webhook.in/hook\"]\n\
             out = [\"console.extra/lobby\"]\nnick_format = \"{{nick}}\"\n\n",
            dir.path().join(file).display()
        )
    };
    let lines_in = |file: &str| -> Vec<String> {
        std::fs::read_to_string(dir.path().join(file))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.strip_prefix("[console.extra/lobby] <bot> "))
            .map(str::to_owned)
            .collect()
    };
    let path = write_config(dir.path(), &text("{nick}", ""));
    let instance = support::nats::start_held(dir.path(), &path, &["i1"], "console.out").remove(0);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    post_until_accepted(&rt, instance.port, "m0");
    wait_until(WAIT, "m0 printed", || {
        printed(dir.path(), "bot").0 == ["m0"]
    });
    let gateway = instance.gateway.as_ref().expect("running");
    let sent = AtomicU64::new(0);

    // Added: the instance takes its lease and runs it.
    reload(gateway, &text("{nick}", &extra("extra1.log")), 1, &sent);
    wait_until(WAIT, "i1 holds console.extra", || {
        owner(&path, "console.extra").as_deref() == Some("i1")
    });
    assert_eq!(post(&rt, instance.port, "m1"), 202);
    wait_until(WAIT, "m1 in the added account", || {
        lines_in("extra1.log") == ["m1"]
    });

    // Changed: it restarts here, writing where the file says now.
    reload(gateway, &text("{nick}", &extra("extra2.log")), 2, &sent);
    assert_eq!(post(&rt, instance.port, "m2"), 202);
    wait_until(WAIT, "m2 in the changed account's new file", || {
        lines_in("extra2.log") == ["m2"]
    });
    assert_eq!(lines_in("extra1.log"), ["m1"], "the old output got m2");

    // Removed: it stops and its lease is released.
    reload(gateway, &text("nats-{nick}", ""), 3, &sent);
    let log = strip_ansi(&gateway.log());
    let report = log
        .lines()
        .filter(|l| l.contains("config reloaded"))
        .nth(2)
        .expect("a third report");
    assert!(report.contains("routes_changed=true"), "{report}");
    assert!(report.contains("removed=[\"console.extra\"]"), "{report}");
    wait_until(WAIT, "the removed account's lease released", || {
        logged(gateway, "releasing its lease") == 1
    });
    assert_eq!(post(&rt, instance.port, "m3"), 202);
    wait_until(WAIT, "m3 printed with the new format", || {
        printed(dir.path(), "nats-bot").0 == ["m3"]
    });
    assert_eq!(
        printed(dir.path(), "bot").0,
        ["m0", "m1", "m2"],
        "each message once, in the format of its moment"
    );
    assert_eq!(lines_in("extra2.log"), ["m2"], "the removed account got m3");
}
