//! The soak test's own launchers for the servers the connectors' support does not restart from
//! here: ergo (restartable on the same port), Devzat (plugin API and SSH) and ssh-chat, from
//! `../shared/peers/`. InspIRCd and Synapse come from the connectors' test support.
//!
//! Every server binds free 127.0.0.1 ports, keeps its state in a temp dir and is killed on drop.

use std::process::Stdio;
use std::time::Duration;

use std::process::{Child, Command};

use super::free_port;

// Where the builds are and waiting for a listener: the test server crate's, shared with the
// other end-to-end tests.
pub use patchbay_sshchat_testserver::real::{peers_dir, wait_port};

/// ergo with in-memory history, restartable on the same port (history is lost with the
/// process, as it is for this build).
pub struct Ergo {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Ergo {
    pub async fn start() -> Ergo {
        let dir = tempfile::tempdir().expect("ergo tempdir");
        let port = free_port();
        let d = dir.path().display();
        let conf = format!(
            r#"network:
    name: Soak
server:
    name: ergo.soak
    listeners:
        "127.0.0.1:{port}": {{}}
    casemapping: "ascii"
    enforce-utf8: true
    lookup-hostnames: false
    max-sendq: 16M
    ip-limits:
        count: false
        throttle: false
accounts:
    authentication-enabled: true
    registration:
        enabled: true
        allow-before-connect: true
        throttling:
            enabled: false
        bcrypt-cost: 4
    login-throttling:
        enabled: false
    nick-reservation:
        enabled: false
    multiclient:
        enabled: false
channels:
    default-modes: +nt
    registration:
        enabled: false
limits:
    nicklen: 32
    identlen: 20
    realnamelen: 150
    channellen: 64
    awaylen: 390
    kicklen: 390
    topiclen: 390
    monitor-entries: 100
    whowas-entries: 100
    chan-list-modes: 100
    registration-messages: 1024
    multiline:
        max-bytes: 4096
        max-lines: 100
fakelag:
    enabled: false
history:
    enabled: true
    channel-length: 8192
    client-length: 256
    autoresize-window: 3d
    autoreplay-on-join: 0
    chathistory-maxmessages: 100
    znc-maxmessages: 2048
    restrictions:
        expire-time: 1w
        query-cutoff: 'none'
        grace-period: 1h
datastore:
    path: {d}/ircd.db
lock-file: {d}/ircd.lock
logging:
    -
        method: stderr
        type: "* -userinput -useroutput"
        level: info
"#
        );
        std::fs::write(dir.path().join("ircd.yaml"), conf).expect("write ircd.yaml");
        let status = std::process::Command::new(peers_dir().join("ergo"))
            .arg("initdb")
            .arg("--conf")
            .arg(dir.path().join("ircd.yaml"))
            .arg("--quiet")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run ergo initdb");
        assert!(status.success(), "ergo initdb failed");
        let mut ergo = Ergo {
            port,
            dir,
            child: None,
        };
        ergo.run().await;
        ergo
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.out")).unwrap_or_default()
    }

    pub async fn run(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.out"))
            .expect("ergo log");
        let before = self.log().len();
        let child = Command::new(peers_dir().join("ergo"))
            .arg("run")
            .arg("--conf")
            .arg(self.dir.path().join("ircd.yaml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("ergo log"))
            .stderr(log)
            .spawn()
            .expect("start ergo");
        self.child = Some(child);
        // Only a listener ergo itself reports is ours.
        let listening = format!("now listening on 127.0.0.1:{}", self.port);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !self.log()[before..].contains(&listening) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "ergo did not listen on {}: {}",
                self.port,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL (history goes with it); [`Ergo::run`] starts it again on the same port.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

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

kill_on_drop!(Ergo, Devzat, SshChat);
