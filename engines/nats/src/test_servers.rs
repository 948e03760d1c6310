//! Real nats-servers for tests (feature `test-servers`): the engine's own tests and the
//! gateway's start them the same way, each on free loopback ports with a config file of its
//! own, killed on drop. `tests/install-deps.sh` installs the binary.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to listen.
const LISTEN_WITHIN: Duration = Duration::from_secs(20);

/// `PATCHBAY_NATS_SERVER`, else where `tests/install-deps.sh` puts nats-server, else the PATH.
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

/// A loopback port nobody listens on.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free loopback port")
}

/// A nats-server run from a config file; restartable on the same port and store.
pub struct NatsServer {
    pub port: u16,
    config: PathBuf,
    child: Option<Child>,
}

impl NatsServer {
    /// One server with JetStream on, storing under `dir`.
    pub fn start(dir: &Path) -> NatsServer {
        let store = dir.join("jetstream");
        let body = format!("jetstream {{ store_dir: \"{}\" }}\n", store.display());
        NatsServer::with_config(dir, "nats", free_port(), &body)
    }

    /// A server listening on `port` with the rest of its config `body`, written to
    /// `dir/<name>.conf`.
    pub fn with_config(dir: &Path, name: &str, port: u16, body: &str) -> NatsServer {
        let config = dir.join(format!("{name}.conf"));
        std::fs::write(&config, format!("listen: 127.0.0.1:{port}\n{body}"))
            .expect("nats-server config written");
        let mut server = NatsServer {
            port,
            config,
            child: None,
        };
        server.spawn();
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Start the server (again), and wait until it listens.
    pub fn spawn(&mut self) {
        let child = Command::new(nats_server_binary())
            .arg("-c")
            .arg(&self.config)
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
        let deadline = Instant::now() + LISTEN_WITHIN;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL the server.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGKILL the server, then start it again on the same port and store.
    pub fn kill_and_restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sites joined as leaf nodes of a hub: a hub without JetStream, and one server per site with
/// a JetStream domain named after the site. Stop and spawn the hub to cut and restore the link.
pub struct LeafSites {
    pub hub: NatsServer,
    pub sites: BTreeMap<String, NatsServer>,
}

impl LeafSites {
    pub fn start(dir: &Path, names: &[&str]) -> LeafSites {
        let leaf_port = free_port();
        let hub = NatsServer::with_config(
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
                let server = NatsServer::with_config(dir, name, free_port(), &body);
                (name.to_string(), server)
            })
            .collect();
        LeafSites { hub, sites }
    }

    /// The server of site `name`.
    pub fn site(&self, name: &str) -> &NatsServer {
        self.sites.get(name).expect("a site of the test")
    }

    pub fn url(&self, site: &str) -> String {
        self.site(site).url()
    }
}
