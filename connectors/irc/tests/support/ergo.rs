//! ergo, the IRCv3 reference server (`draft/chathistory`, `draft/event-playback`,
//! `labeled-response`), from `../shared/peers/ergo` relative to the project root; and a proxy
//! that rewrites what a server sends, for tests of servers that change our text.
//!
//! ergo keeps history in memory here (the peer build has no database backend), so history
//! lasts as long as the process: right for catch-up after a *bridge* restart.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use super::{TIMEOUT, TestClient, free_port, logging_to, tempdir};

/// Where the ergo binary is: `PATCHBAY_ERGO` if set, else `../shared/peers/ergo` beside the
/// project root, else `ergo` on the PATH.
pub fn ergo_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PATCHBAY_ERGO") {
        return Some(PathBuf::from(p));
    }
    // From the IRC crate (connectors/irc) or from the workspace root, whichever compiles this.
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for relative in ["../../../shared/peers/ergo", "../shared/peers/ergo"] {
        let peers = manifest.join(relative);
        if peers.is_file() {
            return Some(peers);
        }
    }
    super::have("ergo").then(|| PathBuf::from("ergo"))
}

/// Whether an ergo test can run. Without the binary the test says so and is skipped (in CI,
/// where it must be there, it fails).
pub fn ergo_available() -> bool {
    if ergo_binary().is_some() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("ergo is missing: expected at ../shared/peers/ergo (see its README)");
    }
    eprintln!(
        "skipped: ergo is missing (expected at ../shared/peers/ergo relative to the project root, \
         or set PATCHBAY_ERGO)"
    );
    false
}

/// A running ergo on a free loopback port, killed on drop; [`Ergo::kill`] and [`Ergo::run`]
/// restart it on the same port (its history goes with the process).
pub struct Ergo {
    pub port: u16,
    pub dir: tempfile::TempDir,
    binary: PathBuf,
    child: Option<Child>,
}

impl Ergo {
    /// ergo with history on (`chathistory_max` messages per CHATHISTORY request), fakelag,
    /// connection limits and login throttling off.
    pub async fn start(chathistory_max: usize) -> Ergo {
        let binary = ergo_binary().expect("ergo_available() was checked");
        let dir = tempdir();
        let port = free_port();
        let d = dir.path().display().to_string();
        let conf = format!(
            r#"network:
    name: PatchbayTest
server:
    name: ergo.test
    listeners:
        "127.0.0.1:{port}": {{}}
    casemapping: "ascii"
    enforce-utf8: true
    lookup-hostnames: false
    max-sendq: 16M
    ip-limits:
        count: false
        throttle: false
    relaymsg:
        enabled: true
        separators: "/"
        available-to-chanops: true
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
    chathistory-maxmessages: {chathistory_max}
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
        let path = dir.path().join("ircd.yaml");
        std::fs::write(&path, conf).expect("write ircd.yaml");
        let status = Command::new(&binary)
            .arg("initdb")
            .arg("--conf")
            .arg(&path)
            .arg("--quiet")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run ergo initdb");
        assert!(status.success(), "ergo initdb failed");
        let mut ergo = Ergo {
            port,
            dir,
            binary,
            child: None,
        };
        ergo.run().await;
        ergo
    }

    /// Start the process (again, after [`Ergo::kill`]) and wait until it takes clients.
    pub async fn run(&mut self) {
        let d = self.dir.path();
        let before = self.log().len();
        let mut command = Command::new(&self.binary);
        command.arg("run").arg("--conf").arg(d.join("ircd.yaml"));
        let child = logging_to(&mut command, &d.join("server.out"))
            .spawn()
            .expect("start ergo");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        // The port was free when chosen, but another test may have bound it since: only a
        // listener ergo itself reports is ours (else a probe could reach someone else's server).
        let listening = format!("now listening on 127.0.0.1:{}", self.port);
        while !self.log()[before..].contains(&listening) {
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || tokio::time::Instant::now() > deadline {
                panic!("ergo did not listen on {}: {}", self.port, self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        while !TestClient::probe(self.port, "").await {
            if tokio::time::Instant::now() > deadline {
                panic!("ergo did not accept a client: {}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.out")).unwrap_or_default()
    }
}

impl Ergo {
    /// SIGKILL (history goes with it); [`Ergo::run`] starts it again on the same port.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Ergo {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP proxy in front of a server that replaces `from` with `to` in every line the server
/// sends: a server that rewrites text (as some strip colours or censor words).
pub struct Rewriter {
    pub port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Rewriter {
    pub async fn new(upstream: u16, from: &str, to: &str) -> Rewriter {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind rewriter");
        let port = listener.local_addr().expect("addr").port();
        let (from, to) = (from.to_owned(), to.to_owned());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (from, to) = (from.clone(), to.clone());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                        return;
                    };
                    let (mut client_rd, mut client_wr) = client.into_split();
                    let (server_rd, mut server_wr) = server.into_split();
                    let up = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut client_rd, &mut server_wr).await;
                    });
                    let mut lines = BufReader::new(server_rd);
                    let mut line = Vec::new();
                    while let Ok(n) = lines.read_until(b'\n', &mut line).await {
                        if n == 0 {
                            break;
                        }
                        let text = String::from_utf8_lossy(&line).replace(&from, &to);
                        if client_wr.write_all(text.as_bytes()).await.is_err() {
                            break;
                        }
                        line.clear();
                    }
                    up.abort();
                });
            }
        });
        Rewriter { port, task }
    }
}

impl Drop for Rewriter {
    fn drop(&mut self) {
        self.task.abort();
    }
}
