//! Test support: real IRC servers on loopback (InspIRCd, ngircd, ergo), a raw IRC client for the "users", and a
//! collecting sink that stands in for the gateway.
//!
//! Each server writes its config into its own temp dir, runs in the foreground on a free
//! 127.0.0.1 port (pid and log files stay in the temp dir) and is killed on drop.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use patchbay_irc::parse::{self, Parsed};
use patchbay_irc::transport::LineReader;
use patchbay_sdk::{
    AccountInfo, Author, Connector, ConnectorContext, ConnectorFactory, ConnectorState, Delivered,
    Delivery, DeliveryError, Emit, EmitError, Event, EventId, EventSink, Inbound, RichText,
    StateHandle,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

mod ergo;
mod servers;
// Not every test binary starts ergo.
#[allow(unused_imports)]
pub use ergo::*;
pub use servers::*;

pub const TIMEOUT: Duration = Duration::from_secs(20);

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

/// Whether a test can run: `program` is installed. Outside CI a missing server skips the test
/// with a note; in CI (where tests/install-deps.sh ran) it fails it.
pub fn available(program: &str) -> bool {
    if have(program) {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{program} is not installed: run tests/install-deps.sh");
    }
    eprintln!("skipped: {program} is not installed (run tests/install-deps.sh)");
    false
}

/// Whether a program is installed.
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A raw IRC client: the people in the channels.
pub struct TestClient {
    pub nick: String,
    reader: LineReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl TestClient {
    pub async fn try_connect(port: u16, nick: &str, caps: &[&str]) -> std::io::Result<Self> {
        Self::try_connect_full(port, nick, caps, "").await
    }

    pub async fn try_connect_full(
        port: u16,
        nick: &str,
        caps: &[&str],
        password: &str,
    ) -> std::io::Result<Self> {
        let stream = TcpStream::connect(("127.0.0.1", port)).await?;
        let (rd, wr) = stream.into_split();
        let mut client = TestClient {
            nick: nick.to_owned(),
            reader: LineReader::new(rd),
            writer: wr,
        };
        if !caps.is_empty() {
            client.send(&format!("CAP REQ :{}", caps.join(" "))).await;
        }
        if !password.is_empty() {
            client.send(&format!("PASS {password}")).await;
        }
        client.send(&format!("NICK {nick}")).await;
        client.send(&format!("USER {nick} 0 * :{nick}")).await;
        if !caps.is_empty() {
            client.send("CAP END").await;
        }
        loop {
            let Some(line) = client.next_parsed().await else {
                return Err(std::io::Error::other("closed during registration"));
            };
            let (cmd, _) = parse::command_params(&line.message);
            if cmd == "001" {
                return Ok(client);
            }
            if cmd == "433" {
                return Err(std::io::Error::other("nick in use"));
            }
        }
    }

    pub async fn connect(port: u16, nick: &str) -> Self {
        Self::connect_with_caps(port, nick, &[]).await
    }

    pub async fn connect_with_caps(port: u16, nick: &str, caps: &[&str]) -> Self {
        tokio::time::timeout(TIMEOUT, Self::try_connect(port, nick, caps))
            .await
            .expect("test client registers in time")
            .expect("test client registers")
    }

    pub async fn send(&mut self, line: &str) {
        let _ = self
            .writer
            .write_all(format!("{line}\r\n").as_bytes())
            .await;
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        let _ = self.writer.write_all(bytes).await;
    }

    async fn next_parsed(&mut self) -> Option<Parsed> {
        loop {
            let line = self.reader.next_line().await.ok()??;
            let Some(bytes) = line else { continue };
            let Ok(p) = parse::parse_line(&bytes, patchbay_irc::encoding_rs::WINDOWS_1252) else {
                continue;
            };
            let (cmd, params) = parse::command_params(&p.message);
            if cmd == "PING" {
                let token = params.first().cloned().unwrap_or_default();
                self.send(&format!("PONG :{token}")).await;
                continue;
            }
            return Some(p);
        }
    }

    /// Wait for a line matching `pred`.
    pub async fn expect(
        &mut self,
        what: &str,
        pred: impl Fn(&str, &[String], &Parsed) -> bool,
    ) -> Parsed {
        let fut = async {
            loop {
                let Some(p) = self.next_parsed().await else {
                    panic!("connection closed while waiting for {what}");
                };
                let (cmd, params) = parse::command_params(&p.message);
                if pred(&cmd, &params, &p) {
                    return p;
                }
            }
        };
        tokio::time::timeout(TIMEOUT, fut)
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
    }

    pub async fn join(&mut self, channel: &str) {
        self.send(&format!("JOIN {channel}")).await;
        let ch = channel.to_owned();
        self.expect(
            &format!("end of names for {channel}"),
            move |cmd, params, _| {
                cmd == "366" && params.get(1).is_some_and(|c| c.eq_ignore_ascii_case(&ch))
            },
        )
        .await;
    }

    /// Wait for a PRIVMSG to `target` whose text contains `needle`; returns the text.
    pub async fn expect_privmsg(&mut self, target: &str, needle: &str) -> String {
        let t = target.to_owned();
        let n = needle.to_owned();
        let p = self
            .expect(
                &format!("PRIVMSG {target} containing {needle:?}"),
                move |cmd, params, _| {
                    cmd == "PRIVMSG"
                        && params.first().is_some_and(|x| x.eq_ignore_ascii_case(&t))
                        && params.get(1).is_some_and(|x| x.contains(&n))
                },
            )
            .await;
        parse::command_params(&p.message)
            .1
            .get(1)
            .cloned()
            .unwrap_or_default()
    }

    /// Wait until `nick` is in `channel`, whether it joined before or after this client.
    pub async fn wait_member(&mut self, channel: &str, nick: &str) {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            self.send(&format!("NAMES {channel}")).await;
            let ch = channel.to_owned();
            let names = self
                .expect(&format!("NAMES {channel}"), move |cmd, params, _| {
                    cmd == "353" && params.get(2).is_some_and(|c| c.eq_ignore_ascii_case(&ch))
                })
                .await;
            let (_, params) = parse::command_params(&names.message);
            let present = params.get(3).is_some_and(|list| {
                list.split(' ')
                    .any(|n| n.trim_start_matches(['@', '+', '%', '~', '&']) == nick)
            });
            if present {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{nick} never joined {channel}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Wait until `nick` joins `channel` (as seen by this client).
    pub async fn expect_join(&mut self, nick_prefix: &str, channel: &str) {
        let n = nick_prefix.to_owned();
        let ch = channel.to_owned();
        self.expect(
            &format!("{nick_prefix} joining {channel}"),
            move |cmd, params, p| {
                cmd == "JOIN"
                    && params.first().is_some_and(|c| c.eq_ignore_ascii_case(&ch))
                    && p.source.as_ref().is_some_and(|s| s.nick.starts_with(&n))
            },
        )
        .await;
    }
}

/// Stands in for the gateway: records what the connector emits.
#[derive(Default)]
pub struct Collector {
    events: Mutex<Vec<Inbound>>,
    notify: Notify,
}

#[async_trait]
impl Emit for Collector {
    async fn emit(&self, _account: &str, inbound: Inbound) -> Result<Option<EventId>, EmitError> {
        self.events.lock().expect("lock").push(inbound);
        self.notify.notify_waiters();
        Ok(Some(EventId::new()))
    }
}

impl Collector {
    pub fn all(&self) -> Vec<Inbound> {
        self.events.lock().expect("lock").clone()
    }

    /// Plain texts of messages (not echoes) in `room`, in order.
    pub fn texts(&self, room: &str) -> Vec<String> {
        self.all()
            .into_iter()
            .filter(|e| e.room == room && !e.is_echo)
            .filter_map(|e| match e.kind {
                patchbay_sdk::Kind::Message { body, .. } => Some(body.to_plain()),
                _ => None,
            })
            .collect()
    }

    /// Wait until an emitted event satisfies `pred`.
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&Inbound) -> bool) -> Inbound {
        let fut = async {
            loop {
                let notified = self.notify.notified();
                if let Some(e) = self.all().into_iter().find(|e| pred(e)) {
                    return e;
                }
                let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
            }
        };
        tokio::time::timeout(TIMEOUT, fut)
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}; got {:#?}", self.all()))
    }

    /// Wait until `room` has at least `n` messages.
    pub async fn wait_texts(&self, room: &str, n: usize) -> Vec<String> {
        let fut = async {
            loop {
                let notified = self.notify.notified();
                let texts = self.texts(room);
                if texts.len() >= n {
                    return texts;
                }
                let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
            }
        };
        tokio::time::timeout(TIMEOUT * 3, fut)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "timed out waiting for {n} messages in {room}; got {:#?}",
                    self.texts(room)
                )
            })
    }
}

/// A connector running against a test server, with its own collector.
pub struct Running {
    pub connector: Arc<dyn Connector>,
    pub events: Arc<Collector>,
    pub state: watch::Receiver<ConnectorState>,
    pub shutdown: CancellationToken,
    pub handle: tokio::task::JoinHandle<Result<(), patchbay_sdk::ConnectorError>>,
}

pub fn account(data_dir: &Path) -> AccountInfo {
    AccountInfo {
        account: "irc.test".into(),
        config_dir: data_dir.to_path_buf(),
        data_dir: data_dir.to_path_buf(),
    }
}

/// Build and run a connector from a TOML table body.
pub fn start_connector(toml_body: &str, data_dir: &Path) -> Running {
    let table: toml::Table = toml::from_str(toml_body).expect("test config parses");
    let connector = patchbay_irc::IrcFactory
        .build(&account(data_dir), table)
        .expect("test config is valid");
    let events = Arc::new(Collector::default());
    let (state_handle, state) = StateHandle::new();
    let shutdown = CancellationToken::new();
    let ctx = ConnectorContext {
        account: "irc.test".into(),
        sink: EventSink::new("irc.test", events.clone()),
        state: state_handle,
        shutdown: shutdown.clone(),
        data_dir: PathBuf::from(data_dir),
    };
    let c = connector.clone();
    let handle = tokio::spawn(async move { c.run(ctx).await });
    Running {
        connector,
        events,
        state,
        shutdown,
        handle,
    }
}

impl Running {
    pub async fn wait_state(&mut self, what: &str, pred: impl Fn(&ConnectorState) -> bool) {
        let fut = async {
            loop {
                if pred(&self.state.borrow_and_update()) {
                    return;
                }
                if self.state.changed().await.is_err() {
                    panic!("connector stopped while waiting for {what}");
                }
            }
        };
        tokio::time::timeout(TIMEOUT, fut)
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}: {:?}", self.state.borrow()));
    }

    pub async fn wait_up(&mut self) {
        self.wait_state("up", |s| *s == ConnectorState::Up).await;
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(TIMEOUT, self.handle).await;
    }
}

/// A delivery of `text` from `nick` into `room`, as the gateway would make it.
pub fn delivery(room: &str, nick: &str, body: RichText) -> Delivery {
    let inbound = Inbound::message("#elsewhere", Author::named(nick), body);
    Delivery {
        room: room.into(),
        event: Event::from_inbound("test.src", inbound),
        nick: nick.into(),
        route: "test".into(),
        quote: None,
    }
}

/// Deliver like the gateway's worker: retry retryable errors until it succeeds.
pub async fn deliver(connector: &Arc<dyn Connector>, d: Delivery) -> Delivered {
    let fut = async {
        loop {
            match connector.deliver(d.clone()).await {
                Ok(done) => return done,
                Err(DeliveryError::Retryable { retry_after, .. }) => {
                    tokio::time::sleep(
                        retry_after
                            .unwrap_or(Duration::from_millis(200))
                            .min(Duration::from_millis(500)),
                    )
                    .await;
                }
                Err(e) => panic!("delivery failed permanently: {e}"),
            }
        }
    };
    tokio::time::timeout(TIMEOUT * 3, fut)
        .await
        .expect("delivered in time")
}
