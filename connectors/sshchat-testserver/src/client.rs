//! A person at a terminal, for tests: a real SSH login that types lines and reads what the
//! screen shows.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client;
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg};
use russh::{ChannelMsg, ChannelWriteHalf};
use tokio::sync::Notify;

use crate::Dialect;

struct Trusting;

impl client::Handler for Trusting {
    type Error = russh::Error;
    async fn check_server_key(
        &mut self,
        _key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

/// A connected test user.
pub struct TestUser {
    handle: client::Handle<Trusting>,
    write: ChannelWriteHalf<client::Msg>,
    lines: Arc<Mutex<Vec<String>>>,
    changed: Arc<Notify>,
    reader: tokio::task::JoinHandle<()>,
}

impl TestUser {
    /// Log in with a fresh key: a pty for Devzat; for ssh-chat TERM=bot and a pty of type
    /// `bot` (the real ssh-chat needs a pty of non-zero size from every client).
    pub async fn connect(addr: &str, name: &str, dialect: Dialect) -> std::io::Result<TestUser> {
        let key = PrivateKey::random(&mut rand::rng(), russh::keys::Algorithm::Ed25519)
            .map_err(std::io::Error::other)?;
        match dialect {
            Dialect::Devzat => TestUser::connect_with_key(addr, name, &key, true).await,
            Dialect::SshChat => TestUser::connect_as(addr, name, &key, Some("bot")).await,
        }
    }

    /// Log in with a given key; with a pty, or else without one and with TERM=bot.
    pub async fn connect_with_key(
        addr: &str,
        name: &str,
        key: &PrivateKey,
        pty: bool,
    ) -> std::io::Result<TestUser> {
        TestUser::connect_as(addr, name, key, pty.then_some("xterm-256color")).await
    }

    /// Log in with a given key and a pty of terminal type `pty` (`bot`: ssh-chat's bot mode,
    /// 1100 columns so that no echo wraps), or without a pty and with TERM=bot.
    pub async fn connect_as(
        addr: &str,
        name: &str,
        key: &PrivateKey,
        pty: Option<&str>,
    ) -> std::io::Result<TestUser> {
        // A transport error keeps its kind, so that a caller can tell a reset from a refusal.
        let io = |e: russh::Error| match e {
            russh::Error::IO(e) => e,
            other => std::io::Error::other(other.to_string()),
        };
        let key = key.clone();
        let config = Arc::new(client::Config::default());
        let mut handle = client::connect(config, addr, Trusting).await.map_err(io)?;
        let ok = handle
            .authenticate_publickey(name, PrivateKeyWithHashAlg::new(Arc::new(key), None))
            .await
            .map_err(io)?;
        if !ok.success() {
            return Err(std::io::Error::other("login refused"));
        }
        let channel = handle.channel_open_session().await.map_err(io)?;
        match pty {
            Some(term) => {
                if term == "bot" {
                    channel.set_env(false, "TERM", "bot").await.map_err(io)?;
                }
                let width = if term == "bot" { 1100 } else { 200 };
                channel
                    .request_pty(false, term, width, 50, 0, 0, &[])
                    .await
                    .map_err(io)?;
            }
            None => channel.set_env(false, "TERM", "bot").await.map_err(io)?,
        }
        channel.request_shell(false).await.map_err(io)?;
        let (mut read, write) = channel.split();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let changed = Arc::new(Notify::new());
        let reader = {
            let lines = lines.clone();
            let changed = changed.clone();
            tokio::spawn(async move {
                let mut buf: Vec<u8> = Vec::new();
                while let Some(msg) = read.wait().await {
                    if let ChannelMsg::Data { data } = msg {
                        for &b in data.iter() {
                            if b == b'\n' {
                                let raw = String::from_utf8_lossy(&buf).into_owned();
                                buf.clear();
                                let after = raw.rsplit("\x1b[K").next().unwrap_or("");
                                let text = crate::format::strip(after);
                                // What a person sees: zero-width characters take no room.
                                let text: String = text
                                    .trim_end_matches(['\r', ' '])
                                    .chars()
                                    .filter(|c| !crate::format::is_zero_width(*c))
                                    .collect();
                                if let Ok(mut lines) = lines.lock() {
                                    lines.push(text);
                                }
                                changed.notify_waiters();
                            } else {
                                buf.push(b);
                            }
                        }
                    }
                }
                changed.notify_waiters();
            })
        };
        Ok(TestUser {
            handle,
            write,
            lines,
            changed,
            reader,
        })
    }

    /// Type a line and press Enter.
    pub async fn say(&self, text: &str) -> std::io::Result<()> {
        self.write
            .data(format!("{text}\r").as_bytes())
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
    }

    /// Every line seen so far (ANSI removed, text after the last erase).
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Wait for a line matching `pred`.
    pub async fn wait_line(
        &self,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            if let Some(line) = self.lines().into_iter().find(|l| pred(l)) {
                return Some(line);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }

    /// Log out.
    pub async fn close(self) {
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
        self.reader.abort();
    }
}
