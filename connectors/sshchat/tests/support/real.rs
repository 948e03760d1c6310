//! The real servers from `../shared/peers/` (Devzat with its plugin API, ssh-chat), each on
//! free loopback ports with its state in a temporary directory, stopped when dropped.
//!
//! A test that needs one and cannot find it prints why and returns: it is skipped, never
//! passed by pretending. `PATCHBAY_PEERS` overrides where the builds are.

use std::process::Stdio;
use std::time::Duration;

use patchbay_sshchat_testserver::TestUser;
use russh::keys::{Algorithm, PrivateKey};
use tokio::process::{Child, Command};

// Where the builds are, free ports and waiting for a listener: shared with the gateway's
// end-to-end tests through the test server crate.
pub use patchbay_sshchat_testserver::real::{RealDevzat, free_port, log_in, peers_dir, wait_port};

/// A fresh user key: a server may know a user by its key.
pub fn user_key() -> PrivateKey {
    PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).expect("key")
}

/// The real Devzat (`run-devzat.sh`) with its state in a temporary directory of its own.
pub struct Devzat {
    server: RealDevzat,
    _dir: tempfile::TempDir,
}

impl Devzat {
    /// Start Devzat, anti-spam on unless asked otherwise, or `None` (with the reason printed)
    /// when the build is not here.
    pub async fn start(antispam: bool) -> Option<Devzat> {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = RealDevzat::start(dir.path(), antispam).await?;
        Some(Devzat { server, _dir: dir })
    }

    /// The table of the account `relay` on this server over its plugin API with `token`,
    /// reconnecting after 1 to 2 s.
    pub fn plugin_config(&self, token: &str) -> String {
        format!(
            "server = \"{}\"\ndialect = \"devzat\"\nnick = \"relay\"\nreconnect_min_secs = 1\nreconnect_max_secs = 2\nplugin = {{ address = \"{}\", token = \"{token}\" }}\n",
            self.ssh_addr(),
            self.plugin_addr(),
        )
    }
}

impl std::ops::Deref for Devzat {
    type Target = RealDevzat;
    fn deref(&self) -> &RealDevzat {
        &self.server
    }
}

impl std::ops::DerefMut for Devzat {
    fn deref_mut(&mut self) -> &mut RealDevzat {
        &mut self.server
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
