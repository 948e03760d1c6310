//! The real Devzat (`run-devzat.sh`) and ssh-chat builds from `../shared/peers/`, on free
//! loopback ports with their state in a directory of their own, killed when dropped. For the
//! sshchat connector's tests and the gateway's end-to-end tests (the soak among them) that
//! need a real server rather than this crate's stand-in; users connect with [`crate::TestUser`].
//!
//! A test that needs it and cannot find it gets `None` (the reason printed) and is skipped,
//! never passed by pretending. `PATCHBAY_PEERS` overrides where the builds are.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Where the peer builds are: `PATCHBAY_PEERS`, else `shared/peers` beside the project.
pub fn peers_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PATCHBAY_PEERS") {
        return PathBuf::from(dir);
    }
    // connectors/sshchat-testserver → the project root → its parent holds `shared/`.
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/peers")
}

/// A free loopback port (bound and released; the server binds it right after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Log a person in to a real server that has just started listening, with a key of their own
/// and a pty. On a loaded machine a fresh loopback connection is now and then reset or
/// refused before the server's handshake runs; such a login is tried again, up to five times
/// 100 ms apart, each retry printed, so that a server that keeps refusing still fails the test.
pub async fn log_in(
    addr: &str,
    name: &str,
    key: &russh::keys::PrivateKey,
) -> std::io::Result<crate::TestUser> {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    let mut tries = 1;
    loop {
        match crate::TestUser::connect_with_key(addr, name, key, true).await {
            Err(e)
                if tries < 5
                    && matches!(
                        e.kind(),
                        ConnectionReset | ConnectionRefused | ConnectionAborted
                    ) =>
            {
                eprintln!("{name} logging in to {addr}: {e}; trying again (try {tries})");
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

/// Wait until `port` accepts connections.
pub async fn wait_port(port: u16, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// A running real Devzat.
pub struct RealDevzat {
    child: Option<Child>,
    state: PathBuf,
    antispam: bool,
    pub port: u16,
    pub plugin_port: u16,
    /// A plugin token the server granted.
    pub token: String,
}

impl RealDevzat {
    /// Start Devzat with its state under `dir`, anti-spam on or off; `None` when the build is
    /// not here.
    pub async fn start(dir: &std::path::Path, antispam: bool) -> Option<RealDevzat> {
        if !peers_dir().join("run-devzat.sh").exists() || !peers_dir().join("devzat").exists() {
            eprintln!("skipped: no real Devzat at {}", peers_dir().display());
            return None;
        }
        let mut server = RealDevzat {
            child: None,
            state: dir.join("devzat-state"),
            antispam,
            port: free_port(),
            plugin_port: free_port(),
            token: String::new(),
        };
        server.launch().await;
        Some(server)
    }

    /// Run the server on its ports with its state, and wait until both ports listen; after
    /// [`RealDevzat::kill`] it comes back with the same host key and token.
    pub async fn launch(&mut self) {
        let mut command = Command::new(peers_dir().join("run-devzat.sh"));
        command
            .arg(self.port.to_string())
            .arg(self.plugin_port.to_string())
            .arg(&self.state)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
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

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.state.join("devzat.log")).unwrap_or_default()
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

    /// A person at a terminal, with a key of their own (Devzat knows a user by its key).
    pub async fn user(&self, name: &str) -> crate::TestUser {
        person(&self.ssh_addr(), name, "Devzat", || self.log()).await
    }
}

/// A fresh user key: a server may know a user by its key.
pub fn user_key() -> russh::keys::PrivateKey {
    russh::keys::PrivateKey::random(&mut rand::rng(), russh::keys::Algorithm::Ed25519)
        .expect("a key")
}

/// [`log_in`] `name` at `addr` with a [`user_key`]; a failed login panics with what the
/// server (`server`) logged.
async fn person(addr: &str, name: &str, server: &str, log: impl Fn() -> String) -> crate::TestUser {
    match log_in(addr, name, &user_key()).await {
        Ok(user) => user,
        Err(e) => panic!("{name} logs in: {e}; {server} logged:\n{}", log()),
    }
}

/// A running real ssh-chat (3 lines per 3 s per user), with its host key and verbose log in
/// a directory of its own.
pub struct RealSshChat {
    child: Option<Child>,
    dir: PathBuf,
    pub port: u16,
}

impl RealSshChat {
    /// Start ssh-chat with a fresh host key under `dir`; `None` when the build is not here.
    pub async fn start(dir: &std::path::Path) -> Option<RealSshChat> {
        if !peers_dir().join("ssh-chat").exists() {
            eprintln!("skipped: no real ssh-chat at {}", peers_dir().display());
            return None;
        }
        let made = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(dir.join("host_key"))
            .status()
            .expect("ssh-keygen runs");
        assert!(made.success(), "ssh-keygen made a host key");
        let mut server = RealSshChat {
            child: None,
            dir: dir.to_owned(),
            port: free_port(),
        };
        server.launch().await;
        Some(server)
    }

    /// Run the server on its port with its host key, its log appended to `ssh-chat.log`, and
    /// wait until it listens.
    pub async fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("ssh-chat.log"))
            .expect("a log file");
        let child = Command::new(peers_dir().join("ssh-chat"))
            .arg(format!("--bind=127.0.0.1:{}", self.port))
            .arg("-v")
            .arg("-i")
            .arg(self.dir.join("host_key"))
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("ssh-chat starts");
        self.child = Some(child);
        assert!(
            wait_port(self.port, Duration::from_secs(30)).await,
            "ssh-chat listens on {}",
            self.port
        );
    }

    pub fn ssh_addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// What the server logged so far (verbose: a failed login shows why).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("ssh-chat.log")).unwrap_or_default()
    }

    /// Kill the server; [`RealSshChat::launch`] starts it again with the same host key.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// A person at a terminal (ssh-chat needs a pty of non-zero size).
    pub async fn user(&self, name: &str) -> crate::TestUser {
        person(&self.ssh_addr(), name, "ssh-chat", || self.log()).await
    }
}
