//! The soak test's own launchers for the servers the connectors' support does not restart from
//! here: Devzat (plugin API and SSH) and ssh-chat, from `../shared/peers/`. ergo, InspIRCd and
//! Synapse come from the connectors' test support.
//!
//! Every server binds free 127.0.0.1 ports, keeps its state in a temp dir and is killed on drop.

use std::process::Stdio;
use std::time::Duration;

use std::process::{Child, Command};

use super::free_port;

// Where the builds are and waiting for a listener: the test server crate's, shared with the
// other end-to-end tests.
pub use patchbay_sshchat_testserver::real::{peers_dir, wait_port};

/// The real Devzat with its plugin API (`run-devzat.sh`), anti-spam off: every test client
/// and the bridge share 127.0.0.1, and the soak reconnects many times.
pub struct Devzat {
    pub port: u16,
    pub plugin_port: u16,
    pub token: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Devzat {
    pub async fn start() -> Devzat {
        let mut server = Devzat {
            port: free_port(),
            plugin_port: free_port(),
            token: String::new(),
            dir: tempfile::tempdir().expect("devzat tempdir"),
            child: None,
        };
        server.launch().await;
        server
    }

    pub async fn launch(&mut self) {
        let state = self.dir.path().join("state");
        let child = Command::new(peers_dir().join("run-devzat.sh"))
            .arg(self.port.to_string())
            .arg(self.plugin_port.to_string())
            .arg(&state)
            .env("DEVZAT_NO_ANTISPAM", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run-devzat.sh starts");
        self.child = Some(child);
        assert!(
            wait_port(self.port, Duration::from_secs(30)).await,
            "Devzat listens on {}",
            self.port
        );
        assert!(
            wait_port(self.plugin_port, Duration::from_secs(30)).await,
            "Devzat's plugin API listens on {}",
            self.plugin_port
        );
        // The script writes the token it granted before it becomes the server.
        let token = std::fs::read_to_string(state.join("plugin-token")).expect("the plugin token");
        self.token = token.trim().to_owned();
    }

    /// SIGKILL; [`Devzat::launch`] starts it again on the same ports and state (host key,
    /// token).
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The real ssh-chat (rate limit: 3 lines per 3 s per user).
pub struct SshChat {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl SshChat {
    pub async fn start() -> SshChat {
        let dir = tempfile::tempdir().expect("ssh-chat tempdir");
        let made = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(dir.path().join("host_key"))
            .status()
            .expect("ssh-keygen runs");
        assert!(made.success(), "ssh-keygen made a host key");
        let mut server = SshChat {
            port: free_port(),
            dir,
            child: None,
        };
        server.launch().await;
        server
    }

    pub async fn launch(&mut self) {
        let child = Command::new(peers_dir().join("ssh-chat"))
            .arg(format!("--bind=127.0.0.1:{}", self.port))
            .arg("-i")
            .arg(self.dir.path().join("host_key"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ssh-chat starts");
        self.child = Some(child);
        assert!(
            wait_port(self.port, Duration::from_secs(30)).await,
            "ssh-chat listens on {}",
            self.port
        );
    }

    /// SIGKILL; [`SshChat::launch`] starts it again with the same host key.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

macro_rules! kill_on_drop {
    ($($server:ty),+) => {$(
        impl Drop for $server {
            fn drop(&mut self) {
                if let Some(mut child) = self.child.take() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
    )+};
}

kill_on_drop!(Devzat, SshChat);
