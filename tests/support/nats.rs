//! A real nats-server with JetStream on a free loopback port and a store dir of its own.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Gateway, free_port, wait_for_port};

/// Where `tests/install-deps.sh` puts nats-server, or `PATCHBAY_NATS_SERVER`, or the PATH.
pub fn nats_server_binary() -> PathBuf {
    if let Ok(path) = std::env::var("PATCHBAY_NATS_SERVER") {
        return PathBuf::from(path);
    }
    let venv = PathBuf::from("/opt/patchbay-nats-venv/bin/nats-server");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("nats-server")
}

/// A running nats-server; killed on drop.
pub struct NatsServer {
    pub port: u16,
    pub store_dir: PathBuf,
    child: Option<Child>,
}

impl NatsServer {
    /// Start a server with JetStream storing under `dir`.
    pub fn start(dir: &Path) -> NatsServer {
        let port = free_port();
        let mut server = NatsServer {
            port,
            store_dir: dir.join("jetstream"),
            child: None,
        };
        server.spawn();
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let child = Command::new(nats_server_binary())
            .args(["-js", "-a", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .arg("-sd")
            .arg(&self.store_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "cannot start {} ({err}): run tests/install-deps.sh",
                    nats_server_binary().display()
                )
            });
        self.child = Some(child);
        wait_for_port(self.port, Duration::from_secs(20));
    }

    /// SIGKILL the server, then start it again on the same port and store.
    pub fn kill_and_restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
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
    rt.block_on(async {
        reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}/hooks/in/hook"))
            .bearer_auth("tok")
            .json(&serde_json::json!({"text": text, "username": "bot"}))
            .timeout(Duration::from_secs(15))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    })
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

/// A nats-server run from a config file (leaf nodes, hubs), on a port of its own; killed on
/// drop, restartable on the same port.
pub struct ConfServer {
    pub port: u16,
    config: PathBuf,
    child: Option<Child>,
}

impl ConfServer {
    /// Start a server listening on `port` with the rest of its config `body`.
    pub fn start(dir: &Path, name: &str, port: u16, body: &str) -> ConfServer {
        let config = dir.join(format!("{name}.conf"));
        std::fs::write(&config, format!("listen: 127.0.0.1:{port}\n{body}"))
            .expect("nats-server config");
        let mut server = ConfServer {
            port,
            config,
            child: None,
        };
        server.spawn();
        server
    }

    pub fn spawn(&mut self) {
        let child = Command::new(nats_server_binary())
            .arg("-c")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts: run tests/install-deps.sh");
        self.child = Some(child);
        wait_for_port(self.port, Duration::from_secs(20));
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for ConfServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sites joined as leaf nodes of a hub: a hub without JetStream, and one server per site with
/// a JetStream domain named after the site.
pub struct LeafSites {
    pub hub: ConfServer,
    pub sites: BTreeMap<String, ConfServer>,
}

impl LeafSites {
    pub fn start(dir: &Path, names: &[&str]) -> LeafSites {
        let leaf_port = free_port();
        let hub = ConfServer::start(
            dir,
            "hub",
            free_port(),
            &format!("leafnodes {{ listen: 127.0.0.1:{leaf_port} }}\n"),
        );
        let sites = names
            .iter()
            .map(|name| {
                let body = format!(
                    "jetstream {{ store_dir: \"{}\", domain: {name} }}\n\
                     leafnodes {{ remotes: [ {{ url: \"nats-leaf://127.0.0.1:{leaf_port}\" }} ], reconnect: 1 }}\n",
                    dir.join(format!("js-{name}")).display()
                );
                (name.to_string(), ConfServer::start(dir, name, free_port(), &body))
            })
            .collect();
        LeafSites { hub, sites }
    }

    pub fn url(&self, site: &str) -> String {
        self.sites
            .get(site)
            .map(ConfServer::url)
            .expect("a site of the test")
    }
}
