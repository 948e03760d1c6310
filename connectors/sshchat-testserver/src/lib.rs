//! A test server for patchbay's sshchat connector, reproducing what the Devzat and ssh-chat
//! servers do that a bridge must handle (see shared/protocols/sshchat.md), for the faults and
//! timings the real servers cannot be made to show on demand (a timestamp before every line,
//! fast keepalives, narrow terminals, several plugin tokens). The real builds in
//! `../shared/peers/` are right where the two disagree: the connector's tests of bursts,
//! anti-spam, join bans and its own commands run against them (`connectors/sshchat/tests/real_*.rs`).
//!
//! One [`TestServer`] speaks one dialect on a loopback SSH port (russh) and, for Devzat, serves
//! the gRPC plugin API on a second port (tonic). Tests observe it through its transcript (every
//! room broadcast), its ban and warning logs and the commands it ran, and can connect real SSH
//! users with [`TestUser`]. It can be stopped and restarted on the same ports.

mod chat;
mod client;
mod conn;
pub mod format;
mod lines;
mod plugin;
pub mod real;

/// Devzat's plugin API, compiled from the connector's `proto/plugin.proto`.
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("plugin");
}

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};

pub use client::TestUser;

/// Which server to imitate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Devzat,
    SshChat,
}

/// Knobs; the defaults are the real servers' values.
#[derive(Clone, Debug)]
pub struct Options {
    pub dialect: Dialect,
    /// Plugin tokens the Devzat plugin API accepts.
    pub tokens: Vec<String>,
    /// Server keepalive interval (30 s on both servers).
    pub keepalive: Duration,
    /// Devzat prints a timestamp line before a message after this much silence (a minute).
    pub timestamp_after: Duration,
    /// Count joins per address as well as per key (the real servers do; loopback tests share one
    /// address, so off by default).
    pub join_ban_by_address: bool,
}

impl Options {
    pub fn devzat() -> Self {
        Options {
            dialect: Dialect::Devzat,
            tokens: Vec::new(),
            keepalive: Duration::from_secs(30),
            timestamp_after: Duration::from_secs(60),
            join_ban_by_address: false,
        }
    }

    pub fn ssh_chat() -> Self {
        Options {
            dialect: Dialect::SshChat,
            ..Options::devzat()
        }
    }

    /// Messages replayed at join: Devzat 16 of #main, ssh-chat 20.
    pub fn history(&self) -> usize {
        match self.dialect {
            Dialect::Devzat => 16,
            Dialect::SshChat => 20,
        }
    }
}

/// One room broadcast, as the transcript keeps it (names without colour).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub room: String,
    /// Empty for system lines.
    pub from: String,
    pub text: String,
}

pub(crate) struct Shared {
    pub opts: Options,
    pub chat: Mutex<chat::Chat>,
    pub changed: Notify,
    /// Why a user is leaving, when it is not the plain `has left the chat`.
    pub leave_reason: Mutex<std::collections::HashMap<u64, String>>,
    pub host_key: russh::keys::PrivateKey,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, chat::Chat> {
        lock(&self.chat)
    }
}

/// Take `mutex`, poisoned or not: a session task that panicked holding it left the state as it
/// was, and the test goes on to report what it sees.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Running {
    ssh: russh::server::RunningServerHandle,
    grpc_stop: Option<oneshot::Sender<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// A running test server.
pub struct TestServer {
    shared: Arc<Shared>,
    ssh_addr: SocketAddr,
    grpc_addr: Option<SocketAddr>,
    running: Mutex<Option<Running>>,
}

impl TestServer {
    /// Start on free loopback ports.
    pub async fn start(opts: Options) -> std::io::Result<TestServer> {
        let host_key =
            russh::keys::PrivateKey::random(&mut rand::rng(), russh::keys::Algorithm::Ed25519)
                .map_err(std::io::Error::other)?;
        let shared = Arc::new(Shared {
            opts: opts.clone(),
            chat: Mutex::new(chat::Chat::new()),
            changed: Notify::new(),
            leave_reason: Mutex::new(Default::default()),
            host_key,
        });
        let ssh = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let ssh_addr = ssh.local_addr()?;
        let grpc = if opts.dialect == Dialect::Devzat {
            Some(tokio::net::TcpListener::bind("127.0.0.1:0").await?)
        } else {
            None
        };
        let grpc_addr = grpc.as_ref().map(|l| l.local_addr()).transpose()?;
        let server = TestServer {
            shared,
            ssh_addr,
            grpc_addr,
            running: Mutex::new(None),
        };
        server.serve(ssh, grpc).await;
        Ok(server)
    }

    async fn serve(&self, ssh: tokio::net::TcpListener, grpc: Option<tokio::net::TcpListener>) {
        let (ssh_handle, ssh_task) = conn::serve(self.shared.clone(), ssh).await;
        let mut tasks = vec![ssh_task];
        let mut grpc_stop = None;
        if let Some(listener) = grpc {
            let (stop, task) = plugin::serve(self.shared.clone(), listener);
            grpc_stop = Some(stop);
            tasks.push(task);
        }
        *lock(&self.running) = Some(Running {
            ssh: ssh_handle,
            grpc_stop,
            tasks,
        });
    }

    /// Stop serving: every session is closed, the ports are released.
    pub async fn stop(&self) {
        let running = lock(&self.running).take();
        if let Some(running) = running {
            running.ssh.shutdown("server restarting".into());
            if let Some(stop) = running.grpc_stop {
                let _ = stop.send(());
            }
            {
                let mut chat = self.shared.lock();
                for user in chat.users.values() {
                    let _ = user.out.send(chat::Out::Close);
                }
                chat.users.clear();
                // A stopping server ends every listener stream.
                for listener in chat.listeners.drain(..) {
                    let _ = listener
                        .tx
                        .try_send(Err(tonic::Status::unavailable("server shutting down")));
                }
            }
            for task in running.tasks {
                task.abort();
                let _ = task.await;
            }
        }
    }

    /// Start again on the same ports (history, bans and transcript are kept, as a restarted
    /// server with persistent state would).
    pub async fn restart(&self) -> std::io::Result<()> {
        self.stop().await;
        let ssh = bind_again(self.ssh_addr).await?;
        let grpc = match self.grpc_addr {
            Some(addr) => Some(bind_again(addr).await?),
            None => None,
        };
        self.serve(ssh, grpc).await;
        Ok(())
    }

    pub fn ssh_addr(&self) -> String {
        self.ssh_addr.to_string()
    }

    /// `http://127.0.0.1:PORT` of the plugin API (Devzat only).
    pub fn grpc_url(&self) -> Option<String> {
        self.grpc_addr.map(|a| format!("http://{a}"))
    }

    /// The host key in OpenSSH form, for pinning.
    pub fn host_key(&self) -> String {
        self.shared
            .host_key
            .public_key()
            .to_openssh()
            .unwrap_or_default()
    }

    /// Every room broadcast so far.
    pub fn transcript(&self) -> Vec<Record> {
        self.shared.lock().transcript.clone()
    }

    /// Wait until the transcript has a record matching `pred`, up to `timeout`.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(&Record) -> bool,
    ) -> Option<Record> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.changed.notified();
            if let Some(found) = self.shared.lock().transcript.iter().find(|r| pred(r)) {
                return Some(found.clone());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }

    /// Wait until `check` holds over the server's observable state.
    pub async fn wait_until(&self, timeout: Duration, check: impl Fn(&TestServer) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.changed.notified();
            if check(self) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return check(self);
            }
        }
    }

    /// Names of the users connected, per room.
    pub fn users(&self) -> Vec<(String, String)> {
        let chat = self.shared.lock();
        let mut users: Vec<(String, String)> = chat
            .users
            .values()
            .map(|u| (u.room.clone(), u.name.clone()))
            .collect();
        users.sort();
        users
    }

    /// Bans handed out (anti-spam, join rate), one line each.
    pub fn bans(&self) -> Vec<String> {
        self.shared.lock().bans.clone()
    }

    /// Anti-spam warnings handed out.
    pub fn warnings(&self) -> Vec<String> {
        self.shared.lock().warnings.clone()
    }

    /// Commands the server ran: (who, line).
    pub fn commands(&self) -> Vec<(String, String)> {
        self.shared.lock().commands.clone()
    }

    /// Lines ssh-chat refused: (rate-limited, too long).
    pub fn rejections(&self) -> (usize, usize) {
        let chat = self.shared.lock();
        (chat.rejected_rate, chat.rejected_long)
    }

    /// How many plugin listeners asked to be middleware.
    pub fn middleware_requests(&self) -> usize {
        self.shared.lock().middleware_requests
    }

    /// How many plugin listeners are registered now.
    pub fn listeners(&self) -> usize {
        self.shared.lock().listeners.len()
    }

    /// Post a message into a room as a local user would (no SSH session needed).
    pub fn say(&self, room: &str, from: &str, text: &str) {
        {
            let mut chat = self.shared.lock();
            chat.rooms.insert(room.to_owned());
            chat.message(&self.shared.opts, room, from, text, None, None);
        }
        self.shared.changed.notify_waiters();
    }

    /// Connect a real SSH user (with a pty for Devzat, TERM=bot for ssh-chat).
    pub async fn connect_user(&self, name: &str) -> std::io::Result<TestUser> {
        TestUser::connect(&self.ssh_addr(), name, self.shared.opts.dialect).await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Ok(mut running) = self.running.lock()
            && let Some(running) = running.take()
        {
            running.ssh.shutdown("test over".into());
            for task in running.tasks {
                task.abort();
            }
        }
    }
}

async fn bind_again(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let mut last = None;
    for _ in 0..50 {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        match socket.bind(addr) {
            Ok(()) => return socket.listen(64),
            Err(err) => last = Some(err),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("bind failed")))
}
