//! IRC relay benchmark through the `patchbay` binary, on loopback.
//!
//! ```text
//! cargo build -p patchbay [--release]
//! cargo run -p patchbay-irc --example irc_bench [--release] -- [PATH/TO/patchbay] [MESSAGES] [BURST]
//! ```
//!
//! Starts InspIRCd on a free port with two channels, `#src` and `#dst`, and a gateway that
//! mirrors them (two IRC accounts, flood control off). Measures:
//! - latency: MESSAGES (default 1000) messages paced 20 ms apart, each timed from the moment
//!   a user sends it in `#src` until a user in `#dst` receives the relayed copy (p50/p99), next
//!   to the baseline of the same measure for two users in one channel (the server's own hop);
//! - throughput: a burst of BURST (default 10000) messages sent at once in `#src`, timed until
//!   the last arrives in `#dst` (lost or duplicated lines are counted);
//! - the gateway's resident memory when idle and after the run;
//! - with `PATCHBAY_BENCH_RUST_LOG` set, the time of each step of a relayed line inside the
//!   gateway (see `steps.rs`).

mod steps;
#[path = "../../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use patchbay_irc::parse;
use support::{IrcServer, TestClient};

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Send `n` paced messages from `from` and time each one's arrival at `to`.
async fn paced_latency(
    from: &mut TestClient,
    to: &mut TestClient,
    src: &str,
    dst: &str,
    tag: &str,
    n: usize,
) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let text = format!("{tag} {i}");
        let sent = Instant::now();
        from.send(&format!("PRIVMSG {src} :{text}")).await;
        let needle = text.clone();
        let dst = dst.to_owned();
        to.expect(&format!("{text} in {dst}"), move |cmd, params, _| {
            cmd == "PRIVMSG"
                && params.first().is_some_and(|t| t.eq_ignore_ascii_case(&dst))
                && params.get(1).is_some_and(|t| t.ends_with(&needle))
        })
        .await;
        out.push(sent.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    out.sort();
    out
}

fn summary(name: &str, sorted: &[Duration]) -> String {
    format!(
        "{name}: n={} p50={:.2} ms p99={:.2} ms max={:.2} ms",
        sorted.len(),
        percentile(sorted, 0.5).as_secs_f64() * 1000.0,
        percentile(sorted, 0.99).as_secs_f64() * 1000.0,
        sorted.last().copied().unwrap_or_default().as_secs_f64() * 1000.0
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let binary = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "target/debug/patchbay".to_owned());
    let messages: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let burst: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(10_000);

    let server = IrcServer::inspircd().await;
    let dir = support::tempdir();
    let plain = "flood_control = false\nanti_highlight = \"\"";
    let config = format!(
        r##"[general]
data_dir = "data"

{a}
{b}
[[route]]
name = "bench"
inout = ["irc.a/#src", "irc.b/#dst"]
nick_format = "{{nick}}"
"##,
        a = support::account("a", server.port, "pba", "#src", plain),
        b = support::account("b", server.port, "pbb", "#dst", plain),
    );
    let config_path = dir.path().join("patchbay.toml");
    std::fs::write(&config_path, config).expect("write config");

    let mut alice = TestClient::connect(server.port, "alice").await;
    alice.join("#src").await;
    let mut bob = TestClient::connect(server.port, "bob").await;
    bob.join("#dst").await;
    bob.join("#src").await;
    // PATCHBAY_BENCH_RUST_LOG sets the gateway's log filter and keeps its log in
    // ./irc_bench-gateway.log, e.g. `warn,patchbay::hop=trace,patchbay_irc::session=trace,
    // patchbay_irc::link=trace` for the timestamps of each step of a relayed line.
    let filter = std::env::var("PATCHBAY_BENCH_RUST_LOG").ok();
    let log_path = match filter {
        Some(_) => std::path::PathBuf::from("irc_bench-gateway.log"),
        None => dir.path().join("patchbay.log"),
    };
    let log = std::fs::File::create(&log_path).expect("log");
    let mut gateway = Command::new(&binary)
        .args(["run", "--config"])
        .arg(&config_path)
        .env("RUST_LOG", filter.as_deref().unwrap_or("warn"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
    let pid = gateway.id();
    alice.expect_join("pba", "#src").await;
    bob.expect_join("pbb", "#dst").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = rss_kib(pid);

    println!("patchbay IRC relay benchmark ({binary}), InspIRCd 3 on loopback");
    let baseline = paced_latency(&mut alice, &mut bob, "#src", "#src", "direct", messages).await;
    println!(
        "{}",
        summary("direct client → client, same channel", &baseline)
    );
    let relayed = paced_latency(&mut alice, &mut bob, "#src", "#dst", "relay", messages).await;
    println!("{}", summary("relayed #src → gateway → #dst", &relayed));

    // Throughput: a burst, flood control off. bob leaves #src so only relayed copies count.
    bob.send("PART #src").await;
    let started = Instant::now();
    for i in 0..burst {
        alice.send(&format!("PRIVMSG #src :burst {i}")).await;
    }
    let sent_in = started.elapsed();
    let mut seen: HashMap<usize, usize> = HashMap::new();
    let mut last_new = Instant::now();
    while seen.len() < burst && last_new.elapsed() < Duration::from_secs(30) {
        let got = tokio::time::timeout(
            Duration::from_secs(30),
            bob.expect("a burst line", |cmd, params, _| {
                cmd == "PRIVMSG" && params.get(1).is_some_and(|t| t.contains("burst "))
            }),
        )
        .await;
        let Ok(p) = got else { break };
        let (_, params) = parse::command_params(&p.message);
        if let Some(n) = params
            .get(1)
            .and_then(|t| t.rsplit(' ').next())
            .and_then(|n| n.parse::<usize>().ok())
        {
            *seen.entry(n).or_default() += 1;
            last_new = Instant::now();
        }
    }
    let elapsed = started.elapsed();
    let duplicates: usize = seen.values().map(|c| c - 1).sum();
    println!(
        "burst of {burst}: sent in {:.2} s, all relayed in {:.2} s ({:.0} msg/s), lost {}, duplicated {}",
        sent_in.as_secs_f64(),
        elapsed.as_secs_f64(),
        seen.len() as f64 / elapsed.as_secs_f64(),
        burst - seen.len(),
        duplicates
    );
    let after = rss_kib(pid);
    println!(
        "gateway RSS: idle {} MiB, after the run {} MiB",
        idle.map_or("?".into(), |k| format!("{:.1}", k as f64 / 1024.0)),
        after.map_or("?".into(), |k| format!("{:.1}", k as f64 / 1024.0)),
    );
    let _ = gateway.kill();
    let _ = gateway.wait();
    if filter.is_some() {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        println!(
            "where a relayed line's time goes (from {}):",
            log_path.display()
        );
        for (step, times) in steps::step_times(&log, "relay ") {
            println!("  → {}", summary(step, &times));
        }
    }
}
