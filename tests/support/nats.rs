//! A real nats-server with JetStream on a free loopback port and a store dir of its own.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, wait_for_port};

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
