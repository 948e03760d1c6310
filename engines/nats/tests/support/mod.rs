//! The engine tests' nats-server, started from a config file on a free loopback port
//! (`tests/install-deps.sh` installs it), and a bus connected to it once JetStream answers.

#![allow(dead_code)] // Each test binary uses its own part.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use patchbay_nats::{Bus, BusOptions};

pub const WAIT: Duration = Duration::from_secs(30);

fn nats_server() -> PathBuf {
    if let Ok(path) = std::env::var("PATCHBAY_NATS_SERVER") {
        return PathBuf::from(path);
    }
    let venv = PathBuf::from("/opt/patchbay-nats-venv/bin/nats-server");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("nats-server")
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A nats-server run from a config file; killed on drop.
pub struct Server {
    config: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

impl Server {
    pub fn start(dir: &Path, name: &str, port: u16, body: &str) -> Server {
        let config = dir.join(format!("{name}.conf"));
        std::fs::write(&config, format!("listen: 127.0.0.1:{port}\n{body}")).expect("config");
        let mut server = Server {
            config,
            port,
            child: None,
        };
        server.spawn();
        server
    }

    /// One server with JetStream on, its store in `dir`.
    pub fn jetstream(dir: &Path) -> Server {
        let store = dir.join("jetstream");
        Server::start(
            dir,
            "nats",
            free_port(),
            &format!("jetstream {{ store_dir: \"{}\" }}\n", store.display()),
        )
    }

    pub fn spawn(&mut self) {
        let child = Command::new(nats_server())
            .arg("-c")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server: run tests/install-deps.sh");
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
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

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A bus on `options`, retried until JetStream answers (a moment after the port is open; a
/// site's leaf link a moment after that).
pub async fn connect_with(options: BusOptions) -> Bus {
    let site = options
        .site
        .as_ref()
        .map(|s| s.name.clone())
        .unwrap_or_default();
    let deadline = Instant::now() + WAIT;
    loop {
        match Bus::connect(&options).await {
            Ok(bus) => return bus,
            Err(err) => {
                assert!(Instant::now() < deadline, "{site}: {err}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
