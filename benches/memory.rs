//! Memory and fan-out of the release binary, end to end against real servers on loopback.
//!
//! `cargo bench --bench memory` builds `patchbay` with the bench (release) profile and runs it
//! four ways, printing one line per figure:
//!
//! 1. **Ten idle accounts, no Matrix**: four IRC accounts on an InspIRCd, two console, two
//!    webhook and two API accounts, all up; RSS after a quiet minute's tenth.
//! 2. **Fan-out**: one webhook post routed into 1,000 console rooms; the time from the post to
//!    the 1,000th delivery written out, over several posts, and the RSS around them.
//! 3. **Backlog**: 100,000 webhook posts (each answered 202: durable) routed to an IRC account
//!    whose server is down; RSS and peak RSS once they all wait in the outbox.
//! 4. **One Matrix account, idle** (with `PATCHBAY_BENCH_MATRIX=1`; needs Synapse from
//!    `tests/install-deps.sh`): the bot logged in and syncing, RSS after it settled.
//!
//! The binary's size is printed first. Figures go into the README's Performance section.

#[path = "../connectors/irc/tests/support/mod.rs"]
mod irc;

#[path = "../tests/support/mod.rs"]
mod support;

#[path = "../connectors/matrix/tests/support/synapse.rs"]
#[allow(dead_code)]
mod synapse;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long an idle gateway is left before its RSS is read: long enough for start-up
/// allocations to settle and the first keep-alives to pass.
const SETTLE: Duration = Duration::from_secs(6);

// The binary measured: the one `cargo bench` built, or `PATCHBAY_BENCH_BINARY` (a build of
// another profile, such as `target/dist/patchbay`), so that profiles compare on one harness.
use support::binary;

/// `VmRSS` or `VmHWM` (peak) of a process, in MiB.
fn memory_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
        .unwrap_or(f64::NAN)
}

/// A gateway process on a config, stopped on drop.
struct Running {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
    dir: PathBuf,
}

impl Running {
    /// Start the binary on `config` and wait until every account is up.
    fn start(config: &str, port: u16) -> Running {
        let running = Running::spawn(config, port);
        running.wait_healthy();
        running
    }

    /// Start the binary on `config`; only its listener is waited for, as an account of it is
    /// meant to stay down.
    fn start_unhealthy(config: &str, port: u16) -> Running {
        let running = Running::spawn(config, port);
        support::wait_for_port(port, Duration::from_secs(60));
        running
    }

    fn spawn(config: &str, port: u16) -> Running {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("patchbay.toml");
        std::fs::write(&path, config).expect("write the config");
        let log = std::fs::File::create(dir.path().join("patchbay.log")).expect("log file");
        let child = Command::new(binary())
            .args(["run", "--config"])
            .arg(&path)
            .current_dir(dir.path())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start patchbay");
        let root = dir.path().to_owned();
        Running {
            child,
            port,
            _dir: dir,
            dir: root,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn rss(&self) -> f64 {
        memory_mib(self.pid(), "VmRSS:")
    }

    /// The RSS as its parts: anonymous (heap, stacks) and file-backed (the binary's own pages
    /// that ran or were read, shared with the page cache), and the thread count, each thread
    /// holding a stack.
    fn split(&self) -> String {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()));
        let threads = status
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("Threads:").map(|n| n.trim().to_owned()))
            .unwrap_or_default();
        format!(
            "{:.1} MiB anonymous + {:.1} MiB file-backed, mostly the binary's code; {threads} threads; {}",
            memory_mib(self.pid(), "RssAnon:"),
            memory_mib(self.pid(), "RssFile:"),
            self.mappings()
        )
    }

    /// The file-backed RSS by where it is mapped from (`/proc/PID/smaps`): the binary's code,
    /// its read-only data (with the relocation tables and symbols the loader reads), its
    /// written data, and every other file (the C library, the loader, SQLite's `-shm` maps).
    fn mappings(&self) -> String {
        let smaps = std::fs::read_to_string(format!("/proc/{}/smaps", self.pid()));
        let binary = std::fs::canonicalize(binary()).unwrap_or_else(|_| binary());
        let binary = binary.to_string_lossy();
        let (mut code, mut read_only, mut written, mut other) = (0u64, 0u64, 0u64, 0u64);
        let mut current: Option<(bool, String)> = None;
        for line in smaps.unwrap_or_default().lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.first().is_some_and(|f| f.contains('-')) && fields.len() >= 5 {
                let path = fields.get(5).copied().unwrap_or_default();
                current = path
                    .starts_with('/')
                    .then(|| (path == binary, fields[1].to_owned()));
            } else if let (Some("Rss:"), Some((ours, perms))) = (fields.first().copied(), &current)
            {
                let kib: u64 = fields.get(1).and_then(|k| k.parse().ok()).unwrap_or(0);
                match (*ours, perms.as_str()) {
                    (true, p) if p.contains('x') => code += kib,
                    (true, p) if p.contains('w') => written += kib,
                    (true, _) => read_only += kib,
                    (false, _) => other += kib,
                }
            }
        }
        let mib = |kib: u64| kib as f64 / 1024.0;
        format!(
            "file-backed: binary code {:.1}, binary read-only {:.1}, binary data {:.1}, other files {:.1} MiB",
            mib(code),
            mib(read_only),
            mib(written),
            mib(other)
        )
    }

    fn peak(&self) -> f64 {
        memory_mib(self.pid(), "VmHWM:")
    }

    /// Until `/healthz` says every account is up (at most a minute).
    fn wait_healthy(&self) {
        support::wait_for_port(self.port, Duration::from_secs(60));
        let what = format!("every account up (log in {})", self.dir.display());
        support::wait_until(Duration::from_secs(60), &what, || {
            support::http_get(self.port, "/healthz").0 == 200
        });
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of one `/metrics` line that starts with `prefix`.
fn metric(port: u16, prefix: &str) -> Option<f64> {
    support::http_get(port, "/metrics")
        .1
        .lines()
        .find(|l| l.starts_with(prefix))?
        .rsplit(' ')
        .next()?
        .parse()
        .ok()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn ten_idle_accounts() {
    let server = irc::IrcServer::inspircd().await;
    let port = irc::free_port();
    let mut config =
        format!("[general]\ndata_dir = \"data\"\n\n[http]\nlisten = \"127.0.0.1:{port}\"\n\n");
    for n in 1..=4 {
        let (name, nick) = (format!("n{n}"), format!("idle{n}"));
        config.push_str(&irc::account(&name, server.port, &nick, "#idle", ""));
    }
    for n in 1..=2 {
        config.push_str(&format!(
            "[console.c{n}]\ninput = \"none\"\noutput = \"c{n}.log\"\n\n\
             [webhook.w{n}]\ntoken = \"hook-token-{n}\"\n\n\
             [api.a{n}]\ntoken = \"api-token-{n}\"\n\n"
        ));
    }
    config.push_str(
        "[[route]]\nname = \"idle\"\ninout = [\"irc.n1/#idle\", \"irc.n2/#idle\", \
         \"irc.n3/#idle\", \"irc.n4/#idle\", \"api.a1/idle\", \"api.a2/idle\"]\n\n\
         [[route]]\nname = \"hooks\"\nin = [\"webhook.w1/ci\", \"webhook.w2/ci\"]\n\
         out = [\"console.c1/ci\", \"console.c2/ci\"]\n",
    );
    let gateway = Running::start(&config, port);
    let up = gateway.rss();
    tokio::time::sleep(SETTLE).await;
    println!(
        "ten idle accounts (4 IRC, 2 console, 2 webhook, 2 API): RSS {:.1} MiB once up, {:.1} MiB after {}s idle ({})",
        up,
        gateway.rss(),
        SETTLE.as_secs(),
        gateway.split()
    );
}

/// Post `text` to `webhook.in/<room>` on `port`; the HTTP status.
async fn post(client: &reqwest::Client, port: u16, room: &str, text: &str) -> u16 {
    client
        .post(format!("http://127.0.0.1:{port}/hooks/in/{room}"))
        .bearer_auth("bench-token")
        .json(&serde_json::json!({"text": text, "username": "bench"}))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

async fn fan_out_and_backlog() {
    const ROOMS: usize = 1000;
    const POSTS: usize = 5;
    const BACKLOG: u64 = 100_000;
    let port = irc::free_port();
    let down = irc::free_port();
    let rooms: Vec<String> = (0..ROOMS)
        .map(|n| format!("\"console.fan/r{n}\""))
        .collect();
    let config = format!(
        "[general]\ndata_dir = \"data\"\n\n[http]\nlisten = \"127.0.0.1:{port}\"\n\n\
         [webhook.in]\ntoken = \"bench-token\"\nrate_limit_per_minute = 0\n\n\
         [console.fan]\ninput = \"none\"\noutput = \"fan.log\"\n\n\
         [irc.down]\nserver = \"127.0.0.1\"\nport = {down}\nnick = \"down\"\nchannels = [\"#ops\"]\n\n\
         [[route]]\nname = \"fanout\"\nin = [\"webhook.in/alert\"]\nout = [{}]\n\n\
         [[route]]\nname = \"backlog\"\nin = [\"webhook.in/jobs\"]\nout = [\"irc.down/#ops\"]\n",
        rooms.join(", ")
    );
    // The IRC account is down by design; wait for the listener rather than for health.
    let gateway = Running::start_unhealthy(&config, port);
    let client = reqwest::Client::new();
    let log = gateway.dir.join("fan.log");

    let before = gateway.rss();
    let mut times = Vec::new();
    for n in 0..POSTS {
        let text = format!("alert {n}");
        let sent = Instant::now();
        assert_eq!(post(&client, port, "alert", &text).await, 202);
        let needle = format!("> {text}\n");
        loop {
            let written = std::fs::read_to_string(&log).unwrap_or_default();
            if written.matches(&needle).count() == ROOMS {
                break;
            }
            assert!(sent.elapsed() < Duration::from_secs(60), "fan-out stalled");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        times.push(sent.elapsed());
    }
    times.sort();
    println!(
        "fan-out, one post into {ROOMS} rooms ({POSTS} posts): to the last delivery written p50 {:.1} ms, max {:.1} ms; RSS {:.1} MiB before, {:.1} MiB after",
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 1.0)),
        before,
        gateway.rss()
    );

    let before = gateway.rss();
    let accepted = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..32u64 {
        let client = client.clone();
        let accepted = Arc::clone(&accepted);
        tasks.push(tokio::spawn(async move {
            for n in (t..BACKLOG).step_by(32) {
                let text = format!("job {n} finished with a line of text like a CI bot's");
                if post(&client, port, "jobs", &text).await == 202 {
                    accepted.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("poster");
    }
    let took = started.elapsed();
    let waiting = metric(port, "patchbay_outbox_depth{account=\"irc.down\"}").unwrap_or(0.0);
    println!(
        "backlog: {} of {BACKLOG} posts accepted in {:.1} s ({:.0}/s), {waiting} waiting for the down IRC account; RSS {:.1} MiB before, {:.1} MiB after ({}), peak {:.1} MiB",
        accepted.load(Ordering::Relaxed),
        took.as_secs_f64(),
        BACKLOG as f64 / took.as_secs_f64(),
        before,
        gateway.rss(),
        gateway.split(),
        gateway.peak()
    );
}

async fn one_matrix_account() {
    let synapse = tokio::task::block_in_place(synapse::Synapse::start);
    let bot = synapse.register("membench", "password").await;
    let port = irc::free_port();
    let config = format!(
        "[general]\ndata_dir = \"data\"\n\n[http]\nlisten = \"127.0.0.1:{port}\"\n\n\
         [matrix.home]\nhomeserver = \"{}\"\nuser = \"{bot}\"\npassword = \"password\"\nrooms = []\n\n\
         [console.c]\ninput = \"none\"\noutput = \"c.log\"\n\n\
         [[route]]\nname = \"m\"\nin = [\"console.c/x\"]\nout = [\"console.c/y\"]\n",
        synapse.url()
    );
    let gateway = Running::start(&config, port);
    let up = gateway.rss();
    tokio::time::sleep(SETTLE * 2).await;
    println!(
        "one Matrix account (bot mode, E2EE store) and a console, idle: RSS {:.1} MiB once up, {:.1} MiB after {}s ({})",
        up,
        gateway.rss(),
        (SETTLE * 2).as_secs(),
        gateway.split()
    );
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument picks scenarios by name.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wanted = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f));
    let size = std::fs::metadata(binary()).map(|m| m.len()).unwrap_or(0);
    println!(
        "binary: {} ({:.1} MiB)",
        binary().display(),
        size as f64 / 1048576.0
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        if wanted("idle") {
            ten_idle_accounts().await;
        }
        if wanted("fanout") || wanted("backlog") {
            fan_out_and_backlog().await;
        }
        if wanted("matrix") && std::env::var_os("PATCHBAY_BENCH_MATRIX").is_some() {
            one_matrix_account().await;
        }
    });
}
