//! The soak test (issue 14): one gateway binary with every connector at once — IRC on ergo and
//! InspIRCd, Matrix on Synapse, Devzat over its plugin API and over SSH, ssh-chat, an inbound
//! and an outbound webhook, the API, and a console as the witness of what was accepted — all
//! mirrored by one route, traffic from every side, and faults on a schedule: the outbound
//! receiver answering 500, the gateway SIGKILLed and restarted on its data dir, InspIRCd
//! SIGSTOPped, and each server restarted in turn. At the end every room is counted line by line:
//! nothing accepted is lost, nothing is doubled beyond the documented in-flight bound, and each
//! source's lines keep their order in every room.
//!
//! `cargo test --test soak` runs one round of faults (about two minutes on two cores);
//! `cargo test --release --test soak -- --minutes N` repeats rounds for N minutes and prints
//! the table the README quotes. Without a server it needs, it says so and passes (in CI it fails).

#![recursion_limit = "256"]

mod support;

#[path = "../connectors/irc/tests/support/mod.rs"]
mod irc;
// The Matrix tests' Synapse, of which the soak uses only the server itself.
#[path = "../connectors/matrix/tests/support/synapse.rs"]
#[allow(dead_code)]
mod synapse;

#[path = "soak/clients.rs"]
mod clients;
#[path = "soak/rig.rs"]
mod rig;
#[path = "soak/tally.rs"]
mod tally;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use rig::drain;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(90);
/// Lines of one SSH chat run (the connector's `run_limit`): what one fault may double there.
const SSH_RUN: usize = 64;

fn main() {
    let minutes = minutes_from_args();
    if !servers_available() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(soak(minutes));
    // Background readers and pollers end with the process.
    runtime.shutdown_timeout(Duration::from_secs(1));
}

/// `--minutes N` (or `PATCHBAY_SOAK_MINUTES`): repeat rounds of faults for N minutes; without
/// it, one round. Other arguments (cargo's test filters) are ignored.
fn minutes_from_args() -> Option<f64> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let text = args
        .iter()
        .position(|a| a == "--minutes")
        .map(|i| args.get(i + 1).cloned().unwrap_or_default())
        .or_else(|| {
            args.iter()
                .find_map(|a| a.strip_prefix("--minutes="))
                .map(str::to_owned)
        })
        .or_else(|| std::env::var("PATCHBAY_SOAK_MINUTES").ok())?;
    match text.parse::<f64>() {
        Ok(m) if m > 0.0 => Some(m),
        _ => panic!("--minutes wants a positive number, not {text:?}"),
    }
}

/// Every server the soak needs is here; else it says which is not and is skipped (failed in CI).
fn servers_available() -> bool {
    let peers = patchbay_sshchat_testserver::real::peers_dir();
    let mut missing = Vec::new();
    for file in ["ergo", "devzat", "run-devzat.sh", "ssh-chat"] {
        if !peers.join(file).exists() {
            missing.push(peers.join(file).display().to_string());
        }
    }
    if !irc::have("inspircd") {
        missing.push("inspircd".into());
    }
    let venv = std::env::var_os("PATCHBAY_SYNAPSE_VENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/opt/patchbay-synapse-venv".into());
    if !venv.join("bin/python").exists() {
        missing.push(format!("Synapse in {}", venv.display()));
    }
    if missing.is_empty() {
        return true;
    }
    let why = format!(
        "soak skipped: missing {} (run tests/install-deps.sh)",
        missing.join(", ")
    );
    if std::env::var_os("CI").is_some() {
        panic!("{why}");
    }
    eprintln!("{why}");
    false
}

/// The lines both IRC accounts add to [`irc::account`].
const IRC_EXTRA: &str = "flood_control = false\nreconnect_min_secs = 0.5\nreconnect_max_secs = 2";

fn config(p: &Ports) -> String {
    format!(
        r##"
[general]
data_dir = "data"

[http]
listen = "127.0.0.1:{http}"

{ergo}
{insp}
[matrix.home]
homeserver = "{matrix}"
user = "{bot}"
password = "password"
rooms = ["{room}"]

[sshchat.dzp]
server = "127.0.0.1:{dz}"
dialect = "devzat"
nick = "pbp"
reconnect_min_secs = 1
reconnect_max_secs = 2
plugin = {{ address = "127.0.0.1:{dz_plugin}", token = "{token}" }}

[sshchat.dzs]
server = "127.0.0.1:{dz}"
dialect = "devzat"
nick = "pbs"
rooms = ["#soak"]
reconnect_min_secs = 1
reconnect_max_secs = 2

[sshchat.chat]
server = "127.0.0.1:{chat}"
dialect = "ssh-chat"
nick = "pbc"
reconnect_min_secs = 1
reconnect_max_secs = 2

[webhook.hook]
token = "{hook_token}"
rate_limit_per_minute = 0

[webhook.out.rooms.recv]
url = "http://127.0.0.1:{receiver}/out"
payload = "json"

[api.bots]
token = "{api_token}"

[console.log]
input = "none"
output = "console.log"

[[route]]
name = "soak"
inout = ["irc.ergo/#soak", "irc.insp/#soak", "matrix.home/{room}", "sshchat.dzp/#main",
         "sshchat.dzs/#soak", "sshchat.chat/#main", "api.bots/soak"]
in = ["webhook.hook/in"]
out = ["webhook.out/recv", "console.log/lobby"]
nick_format = "{{nick}}"

# The plugin account announces the names it sends under as its own: a relayed `dora` would
# make the gateway drop the real dora's lines in #soak (see the README's soak section).
[route.room."sshchat.dzp/#main"]
nick_format = "{{nick}}@{{protocol}}"
"##,
        http = p.http,
        ergo = irc::account("ergo", p.ergo, "pbe", "#soak", IRC_EXTRA),
        insp = irc::account("insp", p.insp, "pbi", "#soak", IRC_EXTRA),
        matrix = p.matrix,
        bot = p.bot,
        room = p.room,
        dz = p.dz,
        dz_plugin = p.dz_plugin,
        token = p.token,
        chat = p.chat,
        receiver = p.receiver,
        hook_token = clients::HOOK_TOKEN,
        api_token = clients::API_TOKEN,
    )
}

/// Where the gateway finds everything (gates in front of the servers it reaches over TCP).
struct Ports {
    http: u16,
    ergo: u16,
    insp: u16,
    matrix: String,
    bot: String,
    room: String,
    dz: u16,
    dz_plugin: u16,
    token: String,
    chat: u16,
    receiver: u16,
}

/// Faults injected, for the summary.
#[derive(Default)]
struct Faults {
    gateway_kills: usize,
    receiver_500s: usize,
    stalls: usize,
    restarts: Vec<&'static str>,
}

#[path = "soak/schedule.rs"]
mod schedule;

async fn soak(minutes: Option<f64>) {
    let started = Instant::now();
    let mut world = schedule::World::start().await;
    eprintln!("soak: servers and gateway up in {:?}", started.elapsed());
    world.probe_all().await;
    let stop = CancellationToken::new();
    let outage = Arc::new(AtomicBool::new(false));
    world.outage = outage.clone();
    let drivers: Vec<_> = world
        .sources
        .iter()
        .map(|s| tokio::spawn(s.clone().drive(stop.clone(), outage.clone())))
        .collect();
    let traffic = Instant::now();
    let until = minutes.map(|m| Duration::from_secs_f64(m * 60.0));
    loop {
        world.round().await;
        let more = until.is_some_and(|u| traffic.elapsed() + Duration::from_secs(60) < u);
        if !more {
            break;
        }
    }
    world.traffic(Duration::from_secs(3)).await;
    stop.cancel();
    for driver in drivers {
        let _ = driver.await;
    }
    let talked = traffic.elapsed();
    let drained = Instant::now();
    for dest in &world.dests {
        drain(dest, &world.sources, WAIT * 2).await;
    }
    eprintln!(
        "soak: {talked:?} of traffic, every room complete {:?} after it stopped",
        drained.elapsed()
    );
    world.check(talked).await;
    world.finish();
}
