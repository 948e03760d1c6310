//! The real servers from `../shared/peers/` (Devzat with its plugin API, ssh-chat), each on
//! free loopback ports with its state in a temporary directory, stopped when dropped.
//!
//! A test that needs one and cannot find it prints why and returns: it is skipped, never
//! passed by pretending. `PATCHBAY_PEERS` overrides where the builds are.

use std::process::Stdio;
use std::time::Duration;

use patchbay_sshchat_testserver::TestUser;
use russh::keys::{Algorithm, PrivateKey};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

// Where the builds are, free ports and waiting for a listener: shared with the gateway's
// end-to-end tests through the test server crate.
pub use patchbay_sshchat_testserver::real::{free_port, log_in, peers_dir, wait_port};

/// A fresh user key: Devzat knows a user by its key.
pub fn user_key() -> PrivateKey {
    PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).expect("key")
}

/// The real Devzat (`run-devzat.sh`), anti-spam on unless asked otherwise.
pub struct Devzat {
    child: Option<Child>,
    dir: tempfile::TempDir,
    pub port: u16,
    pub plugin_port: u16,
    pub token: String,
    antispam: bool,
}

impl Devzat {
    /// Start Devzat, or `None` (with the reason printed) when the build is not here.
    pub async fn start(antispam: bool) -> Option<Devzat> {
        let script = peers_dir().join("run-devzat.sh");
        if !script.exists() || !peers_dir().join("devzat").exists() {
            eprintln!("skipped: no real Devzat at {}", peers_dir().display());
            return None;
        }
        let mut server = Devzat {
            child: None,
            dir: tempfile::tempdir().expect("tempdir"),
            port: free_port(),
            plugin_port: free_port(),
            token: String::new(),
            antispam,
        };
        server.launch().await;
        Some(server)
    }

    async fn launch(&mut self) {
        let mut command = Command::new(peers_dir().join("run-devzat.sh"));
        command
            .arg(self.port.to_string())
            .arg(self.plugin_port.to_string())
            .arg(self.dir.path().join("state"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if self.antispam {
            command.env_remove("DEVZAT_NO_ANTISPAM");
        } else {
            command.env("DEVZAT_NO_ANTISPAM", "1");
        }
        let mut child = command.spawn().expect("run-devzat.sh starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let token = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("the token within 20 s")
            .expect("stdout readable")
            .expect("a token line");
        self.token = token.trim().to_owned();
        self.child = Some(child);
        assert!(
            wait_port(self.port, Duration::from_secs(20)).await,
            "Devzat listens on {}",
            self.port
        );
        assert!(
            wait_port(self.plugin_port, Duration::from_secs(20)).await,
            "Devzat's plugin API listens on {}",
            self.plugin_port
        );
    }

    pub fn ssh_addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn plugin_addr(&self) -> String {
        format!("127.0.0.1:{}", self.plugin_port)
    }

    /// Kill the server (as a crash would).
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Stop the server as an admin would (SIGTERM): Devzat says `Server going down!` first.
    pub async fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status();
            }
            if tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
    }

    /// Kill and start again on the same ports with the same state (host key, token).
    pub async fn restart(&mut self) {
        self.kill().await;
        self.launch().await;
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("state/devzat.log")).unwrap_or_default()
    }

    /// A person at a terminal, with a key of their own.
    pub async fn user(&self, name: &str) -> TestUser {
        log_in(&self.ssh_addr(), name, &user_key())
            .await
            .expect("a user logs in")
    }
}

/// The real ssh-chat.
pub struct SshChat {
    child: Child,
    dir: tempfile::TempDir,
    pub port: u16,
}

impl SshChat {
    pub async fn start() -> Option<SshChat> {
        let bin = peers_dir().join("ssh-chat");
        if !bin.exists() {
            eprintln!("skipped: no real ssh-chat at {}", peers_dir().display());
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("host_key");
        let made = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .status()
            .expect("ssh-keygen runs");
        assert!(made.success(), "ssh-keygen made a host key");
        let port = free_port();
        // Its verbose log, shown when a login fails.
        let log = std::fs::File::create(dir.path().join("ssh-chat.log")).expect("a log file");
        let child = Command::new(&bin)
            .arg(format!("--bind=127.0.0.1:{port}"))
            .arg("-v")
            .arg("-i")
            .arg(&key)
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("ssh-chat starts");
        assert!(
            wait_port(port, Duration::from_secs(20)).await,
            "ssh-chat listens on {port}"
        );
        Some(SshChat { child, dir, port })
    }

    pub fn ssh_addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A person at a terminal (ssh-chat needs a pty of non-zero size).
    pub async fn user(&self, name: &str) -> TestUser {
        match log_in(&self.ssh_addr(), name, &user_key()).await {
            Ok(user) => user,
            Err(e) => panic!("{name} logs in: {e}; ssh-chat logged:\n{}", self.log()),
        }
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("ssh-chat.log")).unwrap_or_default()
    }

    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }
}
