//! Benchmarks of appservice mode through the binary (ignored tests; run with
//! `cargo test -p patchbay --test matrix_appservice -- --ignored --nocapture bench`): the
//! steady relay latency IRC -> Matrix beside bot mode, and a burst of 200 new remote authors
//! into one room. The figures are in connectors/matrix/README.md.

use crate::appservice::{fixture, slot_with_room};
use crate::matrix::{
    WAIT, alice_and_bot, bot_account, bot_joined, irc_account, irc_with_carol, public_room,
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
