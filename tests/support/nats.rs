//! Gateway instances sharing a JetStream config, and the real nats-servers they run on (the
//! engine's `test_servers`, as its own tests start them).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use super::{Gateway, free_port, wait_for_port};

#[allow(unused_imports)] // Each test binary uses its own part.
pub use patchbay_nats::test_servers::{LeafSites, NatsServer, nats_server_binary};

/// The `[bus]` table of a config on `nats`: its streams and subjects under `prefix`, a lease
/// of 2 s.
pub fn bus(nats: &NatsServer, prefix: &str) -> String {
    format!(
        "[bus]\nengine = \"nats\"\nservers = [\"{}\"]\nprefix = \"{prefix}\"\nlease = \"2s\"\n",
        nats.url()
    )
}

/// `[console.out]`: a console account printing into `dir/out.log`, which [`printed`] reads.
pub fn console_out(dir: &Path) -> String {
    let out = dir.join("out.log");
    format!(
        "[console.out]\ninput = \"none\"\noutput = \"{}\"\n",
        out.display()
    )
}

/// One gateway instance of the shared config.
pub struct Instance {
    pub id: String,
    /// Its HTTP listener.
    pub port: u16,
    pub gateway: Option<Gateway>,
}

/// Start instance `id` of `config`, with its own directory under `dir`, data dir and listener.
pub fn start(dir: &Path, config: &Path, id: &str) -> Instance {
    start_with(dir, config, id, &[])
}

/// [`start`] with more command-line arguments (`--site eu`).
pub fn start_with(dir: &Path, config: &Path, id: &str, more: &[&str]) -> Instance {
    let own = dir.join(id);
    std::fs::create_dir_all(&own).expect("instance dir");
    let port = free_port();
    let data = own.join("data");
    let listen = format!("127.0.0.1:{port}");
    let gateway = Gateway::start_args(
        &own,
        config,
        &[
            "--instance",
            id,
            "--data-dir",
            data.to_str().expect("utf-8 path"),
            "--listen",
            &listen,
        ]
        .into_iter()
        .chain(more.iter().copied())
        .collect::<Vec<_>>(),
    );
    wait_for_port(port, Duration::from_secs(30));
    Instance {
        id: id.to_owned(),
        port,
        gateway: Some(gateway),
    }
}

/// Start instances `ids` of `config` with [`start`], in order.
pub fn start_all(dir: &Path, config: &Path, ids: &[&str]) -> Vec<Instance> {
    ids.iter().map(|id| start(dir, config, id)).collect()
}

/// [`start_all`], then wait until one of the instances runs `account`.
pub fn start_held(dir: &Path, config: &Path, ids: &[&str], account: &str) -> Vec<Instance> {
    let instances = start_all(dir, config, ids);
    let what = format!("an owner for {account}");
    super::wait_until(Duration::from_secs(30), &what, || {
        owner(config, account).is_some()
    });
    instances
}

/// What the console account `console.out` printed into `dir/out.log` from `author`: the texts
/// in order, and how often each was seen.
pub fn printed(dir: &Path, author: &str) -> (Vec<String>, BTreeMap<String, usize>) {
    let text = std::fs::read_to_string(dir.join("out.log")).unwrap_or_default();
    let prefix = format!("[console.out/lobby] <{author}> ");
    let lines: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .map(str::to_owned)
        .collect();
    let mut counts = BTreeMap::new();
    for line in &lines {
        *counts.entry(line.clone()).or_insert(0) += 1;
    }
    (lines, counts)
}

/// `patchbay status` on `config`.
pub fn status(config: &Path) -> String {
    super::run_ok(&["status"], config)
}

/// The instance `patchbay status` says runs `account`.
pub fn owner(config: &Path, account: &str) -> Option<String> {
    let report = status(config);
    report.lines().find_map(|line| {
        line.trim()
            .strip_prefix(&format!("{account}: run by "))
            .and_then(|rest| rest.split([';', ' ']).next())
            .map(str::to_owned)
    })
}

/// POST one message to an instance's hook; the HTTP status (0 when the connection failed).
pub fn post(rt: &tokio::runtime::Runtime, port: u16, text: &str) -> u16 {
    let body = serde_json::json!({"text": text, "username": "bot"});
    rt.block_on(super::post_json(port, "/hooks/in/hook", "tok", &body))
}

/// POST until the gateway accepts (202): a client retrying while the engine is unavailable.
pub fn post_until_accepted(rt: &tokio::runtime::Runtime, port: u16, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if post(rt, port, text) == 202 {
            return;
        }
        assert!(Instant::now() < deadline, "`{text}` was never accepted");
        std::thread::sleep(Duration::from_millis(50));
    }
}
