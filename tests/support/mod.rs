//! Test support: run the real `patchbay` binary with a config and watch what it prints.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// The binary under test: this build's, or `PATCHBAY_BENCH_BINARY` (how a benchmark runs an
/// earlier build on the same harness, as `benches/memory.rs` does).
pub fn binary() -> PathBuf {
    std::env::var_os("PATCHBAY_BENCH_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_patchbay")))
}

/// `patchbay ARGS --config CONFIG`, run to its end.
pub fn patchbay(args: &[&str], config: &Path) -> Output {
    Command::new(binary())
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("run patchbay")
}

/// [`patchbay`] that must succeed; its standard output.
pub fn run_ok(args: &[&str], config: &Path) -> String {
    let out = patchbay(args, config);
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// [`patchbay`] that must fail; its standard error.
pub fn run_failing(args: &[&str], config: &Path) -> String {
    let out = patchbay(args, config);
    assert!(!out.status.success(), "{args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Two console accounts in one room: `console.you` takes what the test types, as alice (and
/// writes `you.log`); `console.screen` prints to stdout, where the test reads it.
pub const LOBBY: &str = r#"
[console.you]
input = "stdin"
output = "you.log"
nick = "alice"

[console.screen]
input = "none"
output = "stdout"

[[route]]
name = "lobby"
inout = ["console.you/lobby", "console.screen/lobby"]
"#;

/// Write `config` into `dir/patchbay.toml`; its path.
pub fn write_config(dir: &Path, config: &str) -> PathBuf {
    let path = dir.join("patchbay.toml");
    std::fs::write(&path, config).expect("write the config");
    path
}

/// A free TCP port on 127.0.0.1 (bound, then released for the server under test).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A running gateway.
pub struct Gateway {
    pub dir: PathBuf,
    pub config: PathBuf,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Receiver<String>,
    /// Everything seen on stdout so far.
    pub seen: Vec<String>,
}

impl Gateway {
    /// Write `config` into `dir/patchbay.toml` and start `patchbay run` on it.
    pub fn start(dir: &Path, config: &str) -> Gateway {
        Self::start_env(dir, config, &[])
    }

    /// Start `patchbay run` on an existing config file.
    pub fn start_with(dir: &Path, config: &Path) -> Gateway {
        Self::start_args(dir, config, &[])
    }

    /// Start `patchbay run` on an existing config file with more arguments (an instance's
    /// `--instance`, `--data-dir`, `--listen`); its log is `dir/patchbay.log`.
    pub fn start_args(dir: &Path, config: &Path, args: &[&str]) -> Gateway {
        Self::spawn(dir, config, args, &[])
    }

    /// [`Gateway::start`] with more environment variables (the secrets a config names), set
    /// after the defaults (`RUST_LOG`), which they may replace.
    pub fn start_env(dir: &Path, config: &str, env: &[(&str, &str)]) -> Gateway {
        Self::spawn(dir, &write_config(dir, config), &[], env)
    }

    fn spawn(dir: &Path, config: &Path, args: &[&str], env: &[(&str, &str)]) -> Gateway {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("patchbay.log"))
            .expect("open the log");
        let mut child = Command::new(binary())
            .args(["run", "--config"])
            .arg(config)
            .args(args)
            .env("RUST_LOG", "info,patchbay=debug")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start patchbay");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Gateway {
            dir: dir.to_owned(),
            config: config.to_owned(),
            child,
            stdin,
            stdout: rx,
            seen: Vec::new(),
        }
    }

    /// Type a line on the gateway's standard input.
    pub fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        writeln!(stdin, "{line}").expect("write to patchbay's stdin");
        stdin.flush().expect("flush");
    }

    /// Wait for a stdout line that satisfies `want`; panics with what was seen on timeout.
    pub fn expect_line(&mut self, timeout: Duration, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if want(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => panic!(
                    "no matching line within {timeout:?}; stdout so far:\n{}\nlog:\n{}",
                    self.seen.join("\n"),
                    self.log()
                ),
            }
        }
    }

    /// Wait for the exact line `line`.
    pub fn expect(&mut self, line: &str) {
        let wanted = line.to_owned();
        self.expect_line(Duration::from_secs(20), move |l| l == wanted);
    }

    /// The gateway's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("patchbay.log")).unwrap_or_default()
    }

    /// SIGTERM, then wait for the process to exit; returns whether it exited successfully.
    pub fn stop(mut self) -> bool {
        self.signal("TERM");
        self.wait(Duration::from_secs(20))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    fn wait(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        panic!(
            "patchbay did not exit within {timeout:?}; log:\n{}",
            self.log()
        );
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // A failed test shows what the gateway said up to the failure.
            eprintln!(
                "--- gateway log ---\n{}\n--- end of gateway log ---",
                self.log()
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll `condition` until it holds or `timeout` passes (for state outside the process's
/// stdout, such as a file it appends to).
pub fn wait_until(timeout: Duration, what: &str, condition: impl FnMut() -> bool) {
    assert!(
        holds_within(timeout, condition),
        "timed out waiting for {what}"
    );
}

/// Poll `condition` every 20 ms until it holds (true) or `timeout` passes (false): for a
/// wait whose panic must say more than what was waited for.
pub fn holds_within(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !condition() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Poll the async `check` every 50 ms until it holds, up to `timeout` (for state the test
/// asks for, such as the gateway's HTTP API or the bus); on timeout the panic names `what`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A plain HTTP/1.1 GET on loopback; returns the status code and the body.
///
/// A connection reset or refused is tried again (five times, 100 ms apart, each one printed):
/// on a loaded machine another process's outgoing connection can briefly hold the port the
/// test picked, and the request, not the gateway, is then what failed.
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut attempt = 1;
    loop {
        match try_http_get(port, path) {
            Ok(answer) => return answer,
            Err(err) if attempt < 5 && is_transient(&err) => {
                eprintln!("GET {path} on port {port} failed ({err}); trying again");
                attempt += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(err) => panic!("GET {path} on port {port}: {err}"),
        }
    }
}

fn is_transient(err: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        err.kind(),
        ConnectionReset | ConnectionRefused | ConnectionAborted | BrokenPipe
    )
}

fn try_http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// POST `body` as JSON with the bearer `token` to `path` on the gateway's listener at `port`;
/// the answer's status, 0 when none came within 15 s.
pub async fn post_json(port: u16, path: &str, token: &str, body: &serde_json::Value) -> u16 {
    reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}{path}"))
        .bearer_auth(token)
        .json(body)
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

/// Wait until something accepts TCP connections on `port`.
pub fn wait_for_port(port: u16, timeout: Duration) {
    wait_until(timeout, &format!("a listener on port {port}"), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
}
pub mod nats;

impl Gateway {
    /// SIGHUP: the gateway re-reads its config file.
    pub fn hangup(&self) {
        self.signal("HUP");
    }
}
