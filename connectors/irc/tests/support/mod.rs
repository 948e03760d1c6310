//! Test support: real IRC servers on loopback (InspIRCd, ngircd, ergo), a raw IRC client for the
//! "users", and the connector run by the sdk's test kit, recording into its `Recorder`.
//!
//! Each server writes its config into its own temp dir, runs in the foreground on a free
//! 127.0.0.1 port (pid and log files stay in the temp dir) and is killed on drop.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use patchbay_irc::parse::{self, Parsed};
use patchbay_irc::transport::LineReader;
pub use patchbay_sdk::testkit::{self, Recorder, Running};
use patchbay_sdk::{
    AccountInfo, Connector, ConnectorState, Delivered, Delivery, Inbound, Kind, RichText,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

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

/// `require!("ngircd", ...)` returns from the test unless every program named is installed
/// (see [`available`], which the caller has in scope).
#[allow(unused_macros)]
macro_rules! require {
    ($($program:expr),+) => {
        $(if !available($program) {
            return;
        })+
    };
}
#[allow(unused_imports)]
pub(crate) use require;

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

/// Run `cmd` with no stdin and its stdout and stderr both appended to the file at `path`:
/// how each server here keeps its log across restarts.
pub fn logging_to<'a>(cmd: &'a mut Command, path: &Path) -> &'a mut Command {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("server log");
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
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

    /// Whether a client can register on `port` now (given 5 s), quitting at once: how a
    /// started server is known to be ready.
    pub async fn probe(port: u16, password: &str) -> bool {
        let probe = Self::try_connect_full(port, "probe", &[], password);
        match tokio::time::timeout(Duration::from_secs(5), probe).await {
            Ok(Ok(mut client)) => {
                client.send("QUIT :probe done").await;
                true
            }
            _ => false,
        }
    }

    pub async fn connect(port: u16, nick: &str) -> Self {
        Self::connect_with_caps(port, nick, &[]).await
    }

    /// [`TestClient::connect`], then [`TestClient::join`] `channel`.
    pub async fn connect_in(port: u16, nick: &str, channel: &str) -> Self {
        Self::connect_in_with_caps(port, nick, &[], channel).await
    }

    /// [`TestClient::connect_with_caps`], then [`TestClient::join`] `channel`.
    pub async fn connect_in_with_caps(port: u16, nick: &str, caps: &[&str], channel: &str) -> Self {
        let mut client = Self::connect_with_caps(port, nick, caps).await;
        client.join(channel).await;
        client
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

    /// Every PRIVMSG text to `target` this client sees, in order, up to and including `last`:
    /// what a user in the channel was shown.
    pub async fn collect_privmsgs(&mut self, target: &str, last: &str) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let t = target.to_owned();
            let p = self
                .expect(&format!("PRIVMSG {target}"), move |cmd, params, _| {
                    cmd == "PRIVMSG" && params.first().is_some_and(|x| x.eq_ignore_ascii_case(&t))
                })
                .await;
            let text = parse::command_params(&p.message)
                .1
                .get(1)
                .cloned()
                .unwrap_or_default();
            let done = text == last;
            out.push(text);
            if done {
                return out;
            }
        }
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

/// Plain texts of messages (not echoes) in `room`, in order: what the gateway relays.
pub fn texts(recorder: &Recorder, room: &str) -> Vec<String> {
    recorder
        .events()
        .into_iter()
        .filter(|e| e.room == room && !e.is_echo)
        .filter_map(|e| match e.kind {
            Kind::Message { body, .. } => Some(body.to_plain()),
            _ => None,
        })
        .collect()
}

/// Wait until `room` has at least `n` messages; their texts.
pub async fn wait_texts(recorder: &Recorder, room: &str, n: usize) -> Vec<String> {
    let texts = recorder
        .wait_until(TIMEOUT * 3, |r| {
            Some(texts(r, room)).filter(|t| t.len() >= n)
        })
        .await;
    texts.unwrap_or_else(|| {
        panic!(
            "timed out waiting for {n} messages in {room}; got {:#?}",
            self::texts(recorder, room)
        )
    })
}

/// The table of the account `nick` in `channel` on the loopback server at `port`; then the
/// lines `extra`.
pub fn table(port: u16, nick: &str, channel: &str, extra: &str) -> String {
    format!(
        "server = \"127.0.0.1\"\nport = {port}\nnick = \"{nick}\"\nchannels = [\"{channel}\"]\n\
         {extra}\n"
    )
}

/// `[irc.NAME]` holding [`table`]: an IRC account of the gateway's config, as its end-to-end
/// tests and benches write one.
pub fn account(name: &str, port: u16, nick: &str, channel: &str, extra: &str) -> String {
    format!("[irc.{name}]\n{}", table(port, nick, channel, extra))
}

/// The [`table`] of the account `pb` in `channel`, reconnecting after 0.3 to 2 s; then the
/// lines `extra`. Each server's tests start from it.
pub fn config(port: u16, channel: &str, extra: &str) -> String {
    let reconnect = "reconnect_min_secs = 0.3\nreconnect_max_secs = 2";
    table(port, "pb", channel, &format!("{reconnect}\n{extra}"))
}

/// Wait for the event whose plain text is `text`: the connector emitted that line.
pub async fn heard(recorder: &Recorder, text: &str) -> Inbound {
    recorder
        .wait_for(TIMEOUT, |e| {
            e.kind.body().is_some_and(|b| b.to_plain() == text)
        })
        .await
        .unwrap_or_else(|| panic!("never heard {text:?}: {:#?}", recorder.events()))
}

/// Wait until the connector is down for a reason `why` accepts; `what` names it on timeout.
pub async fn expect_down(bridge: &mut Running, what: &str, why: impl Fn(&str) -> bool) {
    let down = bridge
        .wait_state(
            TIMEOUT,
            |s| matches!(s, ConnectorState::Down { reason } if why(reason)),
        )
        .await;
    assert!(down, "{what}");
}

/// Build a connector from a TOML table body and run it as `irc.test`, with `data_dir` as its
/// config and data directory.
pub fn start_connector(toml_body: &str, data_dir: &Path) -> Running {
    let account = AccountInfo {
        account: "irc.test".into(),
        config_dir: data_dir.to_path_buf(),
        data_dir: data_dir.to_path_buf(),
    };
    testkit::build_in(&patchbay_irc::IrcFactory, account, toml_body)
        .expect("test config is valid")
        .start()
}

/// [`start_connector`], then wait until it is up.
pub async fn start_up(toml_body: &str, data_dir: &Path) -> Running {
    let mut bridge = start_connector(toml_body, data_dir);
    assert!(bridge.wait_up(TIMEOUT).await, "the connector is up");
    bridge
}

/// A delivery of `body` from `nick` into `room`, as the gateway would make it.
pub fn delivery(room: &str, nick: &str, body: RichText) -> Delivery {
    let mut delivery = testkit::delivery(room, nick, "");
    delivery.event.kind = Kind::Message {
        body,
        attachments: Vec::new(),
    };
    delivery
}

/// Deliver like the gateway's worker: retry retryable errors until it succeeds.
pub async fn deliver(connector: &Arc<dyn Connector>, d: Delivery) -> Delivered {
    testkit::deliver_retrying(&**connector, d, TIMEOUT * 3)
        .await
        .unwrap_or_else(|e| panic!("not delivered: {e}"))
}

/// [`deliver`] a plain `text` from bob into `room`.
pub async fn relay(bridge: &Running, room: &str, text: impl Into<String>) -> Delivered {
    deliver(
        &bridge.connector,
        delivery(room, "bob", RichText::plain(text)),
    )
    .await
}
