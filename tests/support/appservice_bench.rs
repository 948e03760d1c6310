//! Benchmarks of appservice mode through the binary (ignored tests; run with
//! `cargo test -p patchbay --test matrix_appservice -- --ignored --nocapture bench`): the
//! steady relay latency IRC -> Matrix beside bot mode, a burst of 200 new remote authors
//! into one room, and Matrix -> IRC: the answer to a transaction and the relay latency. The figures are in connectors/matrix/README.md.

use crate::appservice::{fixture, slot_with_room};
use crate::matrix::{
    WAIT, alice_and_bot, bot_account, bot_joined, irc_account, irc_with_carol, localpart,
    public_room,
};

/// Benchmark (ignored; `--ignored --nocapture`): the steady relay latency IRC -> Matrix
/// through the binary, appservice mode beside bot mode. One IRC channel is routed to two rooms,
/// one through each mode, and each line's latency is the time from carol's send until the
/// homeserver stamped the relayed event (`origin_server_ts`, same machine clock).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_irc_to_matrix_latency_appservice_beside_bot_mode() {
    let synapse = &fixture().synapse;
    let slot = &fixture().slots[3];
    let (alice, bot) = alice_and_bot(synapse).await;
    let (as_room, as_alias) = public_room(&alice, "as").await;
    let (bot_room, bot_alias) = public_room(&alice, "bot").await;
    let Some((server, mut carol)) = irc_with_carol("inspircd").await else {
        return;
    };
    let config = slot.config(
        &[&as_alias],
        &format!(
            "{}{}[[route]]\nname = \"bench\"\n\
             inout = [\"irc.net/#x\", \"matrix.home/{as_alias}\", \"matrix.bot/{bot_alias}\"]\n\
             nick_format = \"{{nick}}\"\n",
            irc_account(server.port),
            bot_account("bot", synapse, &bot, &[&bot_alias], ""),
        ),
    );
    let gateway = slot.start(&config, &alice, &as_room).await;
    carol.expect_join("pb", "#x").await;
    bot_joined(&alice, &bot_room, &bot).await;
    // A first line sets the ghost up; it is not measured.
    carol.send("PRIVMSG #x :warm up").await;
    for room in [&as_room, &bot_room] {
        alice
            .wait_for(room, "the warm-up line", |e| {
                e["content"]["body"]
                    .as_str()
                    .is_some_and(|b| b.ends_with("warm up"))
            })
            .await;
    }
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default()
    };
    let (mut as_ms, mut bot_ms) = (Vec::new(), Vec::new());
    for n in 0..20 {
        let text = format!("line {n}");
        let sent = now_ms();
        carol.send(&format!("PRIVMSG #x :{text}")).await;
        for (room, out) in [(&as_room, &mut as_ms), (&bot_room, &mut bot_ms)] {
            let event = alice
                .wait_for(room, "a measured line", |e| {
                    e["content"]["body"]
                        .as_str()
                        .is_some_and(|b| b.ends_with(&text))
                })
                .await;
            out.push(event["origin_server_ts"].as_i64().unwrap_or_default() - sent);
        }
    }
    as_ms.sort_unstable();
    bot_ms.sort_unstable();
    println!(
        "IRC -> Matrix through the binary, 20 lines: appservice median {} ms (max {}), \
         bot mode median {} ms (max {})",
        as_ms[as_ms.len() / 2],
        as_ms[as_ms.len() - 1],
        bot_ms[bot_ms.len() / 2],
        bot_ms[bot_ms.len() - 1]
    );
    assert!(tokio::task::block_in_place(|| gateway.stop()));
}

/// Benchmark (ignored): 200 distinct webhook authors posted back to back into one room, each
/// a new ghost (register, display name, join, send): the time until every message is in the
/// room from its own ghost, and how many of the gateway's requests Synapse rate-limited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_200_new_authors_in_a_burst_each_from_their_own_ghost() {
    const AUTHORS: usize = 200;
    let (slot, alice, room, alias) = slot_with_room(4, "burst").await;
    let config = slot.config(
        &[&alias],
        &format!(
            "[webhook.ci]\ntoken = \"hook-token\"\nrate_limit_per_minute = 100000\nrate_limit_burst = 1000\n\n\
             [[route]]\nname = \"hooks\"\nin = [\"webhook.ci/builds\"]\nout = [\"matrix.home/{alias}\"]\n\
             nick_format = \"{{nick}}\"\n"
        ),
    );
    let gateway = slot.start(&config, &alice, &room).await;
    crate::support::wait_for_port(slot.port, WAIT);
    let http = matrix_sdk::reqwest::Client::new();
    let hook = format!("http://127.0.0.1:{}/hooks/ci/builds", slot.port);
    let started = std::time::Instant::now();
    for n in 0..AUTHORS {
        let status = http
            .post(&hook)
            .bearer_auth("hook-token")
            .json(&serde_json::json!({"text": format!("burst {n}"), "username": format!("author-{n}")}))
            .send()
            .await
            .expect("post the hook")
            .status();
        assert_eq!(status.as_u16(), 202);
    }
    let posted = started.elapsed();
    let mut seen = std::collections::HashSet::new();
    while seen.len() < AUTHORS {
        let event = tokio::time::timeout(
            std::time::Duration::from_secs(300),
            alice.wait_for(&room, "a burst line", |e| {
                e["type"] == "m.room.message"
                    && e["content"]["body"]
                        .as_str()
                        .is_some_and(|b| b.starts_with("burst "))
            }),
        )
        .await
        .expect("the burst arrives");
        let body = event["content"]["body"].as_str().unwrap_or_default();
        let n = body.trim_start_matches("burst ");
        let ghost = format!("@{}webhook_ci_author-{n}:localhost", slot.prefix);
        assert_eq!(event["sender"], ghost.as_str(), "{event}");
        seen.insert(n.to_owned());
    }
    let all = started.elapsed();
    let limited = gateway.log().matches("M_LIMIT_EXCEEDED").count();
    println!(
        "{AUTHORS} new authors through the binary: posted in {:.1} s, all in the room from their \
         own ghosts after {:.1} s ({:.0} ms per author); rate-limited requests in the log: {limited}",
        posted.as_secs_f64(),
        all.as_secs_f64(),
        all.as_secs_f64() * 1000.0 / AUTHORS as f64
    );
    assert!(tokio::task::block_in_place(|| gateway.stop()));
}

/// Benchmark (ignored): Matrix -> IRC through the binary in appservice mode. First, how long
/// the gateway takes to answer a homeserver's transaction: 300 one-event transactions, then
/// 20 of 50 events, PUT straight to its listener one after another, as Synapse sends them (the
/// next only after the 200), each event relayed to IRC once, in order. Then the relay latency a user sees: 50 lines
/// alice says, each timed from her send until carol reads it on IRC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_matrix_to_irc_transaction_answer_and_latency() {
    const PUTS: usize = 300;
    const BATCHES: usize = 20;
    const LINES: usize = 50;
    let (slot, alice, room, alias) = slot_with_room(6, "mx2irc").await;
    // The gateway's data on disk, as a user's is: the fixture's directories are on tmpfs,
    // where a sync costs nothing.
    let data = slot.dir.join("data");
    let on_disk = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("appservice-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&on_disk);
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(&data)
        .arg(&on_disk)
        .status()
        .expect("cp");
    assert!(copied.success());
    std::fs::remove_dir_all(&data).expect("remove the tmpfs data");
    std::os::unix::fs::symlink(&on_disk, &data).expect("link the data dir");
    let Some((server, mut carol)) = irc_with_carol("inspircd").await else {
        return;
    };
    // Without the IRC side's flood control, which would pace the 300 lines at 2/s.
    let irc = crate::irc::account(
        "net",
        server.port,
        "pb",
        "#x",
        "anti_highlight = \"\"\nflood_control = false\n",
    );
    let config = slot.bridged_to_irc(&alias, &irc);
    let gateway = slot.start(&config, &alice, &room).await;
    carol.expect_join("pb", "#x").await;
    let local = localpart(&alice);
    alice.say(&room, "warm up").await;
    carol.expect_privmsg("#x", "warm up").await;

    let hs_token = slot.tokens()["hs_token"]
        .as_str()
        .expect("the hs_token")
        .to_owned();
    let http = matrix_sdk::reqwest::Client::new();
    // One transaction of `events` numbered from `first`, PUT as Synapse does: its answer time.
    let put = |txn: String, first: usize, events: usize| {
        let events: Vec<_> = (first..first + events)
            .map(|n| {
                serde_json::json!({
                    "type": "m.room.message", "room_id": room.as_str(), "sender": alice.id,
                    "event_id": format!("$bench-{n}"), "origin_server_ts": 0,
                    "content": {"msgtype": "m.text", "body": format!("put {n}")},
                })
            })
            .collect();
        let request = http
            .put(format!("{}/transactions/{txn}", slot.api()))
            .bearer_auth(&hs_token)
            .json(&serde_json::json!({ "events": events }));
        async move {
            let started = std::time::Instant::now();
            let status = request.send().await.expect("PUT a transaction").status();
            assert_eq!(status.as_u16(), 200);
            started.elapsed()
        }
    };
    let mut one = Vec::with_capacity(PUTS);
    for n in 0..PUTS {
        one.push(put(format!("one-{n}"), n, 1).await);
    }
    // Synapse puts up to 100 events in a transaction when it has more than one to send.
    let mut fifty = Vec::with_capacity(BATCHES);
    for b in 0..BATCHES {
        fifty.push(put(format!("fifty-{b}"), PUTS + b * 50, 50).await);
    }
    let total = PUTS + BATCHES * 50;
    let shown = carol
        .collect_privmsgs("#x", &format!("<{local}> put {}", total - 1))
        .await;
    let expected: Vec<String> = (0..total).map(|n| format!("<{local}> put {n}")).collect();
    assert_eq!(shown, expected, "each transaction's events once, in order");

    let mut latencies = Vec::with_capacity(LINES);
    for n in 0..LINES {
        let text = format!("line {n}");
        let started = std::time::Instant::now();
        alice.say(&room, text.as_str()).await;
        carol
            .expect_privmsg("#x", &format!("<{local}> {text}"))
            .await;
        latencies.push(started.elapsed());
    }
    println!(
        "Matrix -> IRC, appservice mode: a one-event transaction answered in {}; \
         a 50-event one in {}; {LINES} lines from alice's send to carol: {}",
        spread(&mut one),
        spread(&mut fifty),
        spread(&mut latencies)
    );
    assert!(tokio::task::block_in_place(|| gateway.stop()));
    let _ = std::fs::remove_dir_all(&on_disk);
}

/// "p50 X ms, p99 Y ms, max Z ms" of `times`.
fn spread(times: &mut [std::time::Duration]) -> String {
    times.sort_unstable();
    let at = |q: f64| {
        let i = ((times.len() as f64 * q) as usize).min(times.len().saturating_sub(1));
        times
            .get(i)
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or_default()
    };
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        at(0.5),
        at(0.99),
        at(1.0)
    )
}
