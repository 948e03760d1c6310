//! The bot as an SSH chat user: one session per room, screen parsing, paced sending.
//!
//! Each mirrored room has its own task that connects, authenticates, asks for a wide pty
//! (Devzat) or `TERM=bot` (ssh-chat), answers Devzat's in-band name prompt, waits for its own
//! join announcement (everything before it is history), moves to its room (`cd #room`) and then
//! reads lines and sends queued ones. Deliveries are queued per room and written under the
//! server's line-rate limit; when more lines wait than the limit lets through, they are merged
//! into one line rather than dropped. A dropped connection is retried with backoff, and all
//! sessions of the account share one join gate so reconnects never trip Devzat's join-rate ban.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use patchbay_sdk::{
    Author, ConnectorContext, ConnectorError, Delivered, Delivery, DeliveryError, Inbound, Kind,
    RichText,
};
use russh::client;
use russh::keys::PrivateKey;
use russh::{ChannelMsg, Disconnect};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::config::{Config, Dialect};
use crate::keys::{self, HostKeyPolicy};
use crate::login::{Client, End, login};
use crate::pacing::{Backoff, JoinGate, Window};
use crate::parse::{Line, LineParser};
use crate::render;
use crate::screen::Screen;

/// Lines waiting per room before deliveries are pushed back to the gateway.
const QUEUE_LIMIT: usize = 2000;
/// A held-back Devzat message is released after this much quiet (continuation lines come in
/// the same write as the line they continue).
const FLUSH_AFTER: Duration = Duration::from_millis(60);
/// ssh-chat's widest line: 1024 bytes of input after a `[name] ` prompt of up to 19 columns.
const SSH_CHAT_PTY_WIDTH: u32 = 1100;
/// How long to wait for our arrival after `cd #room` before assuming we are in the room.
const ROOM_ENTRY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a delivery waits for its line to be written before it counts as accepted anyway
/// (it stays queued, and is written after a reconnect if need be).
const WRITE_WAIT: Duration = Duration::from_secs(10);

/// Per-room send queue shared between `deliver` and the room's session.
///
/// Counting invariant: `enqueued - written` is the number of lines in `lines`. A delivery that
/// finds the queue empty and the rate limit not reached waits until its line is written (so an
/// accepted message is on the wire in the common case); otherwise it returns at once, so a burst piles up and is
/// merged under the rate limit instead of trickling through one line at a time.
struct RoomQueue {
    lines: Mutex<VecDeque<String>>,
    enqueued: std::sync::atomic::AtomicU64,
    written: tokio::sync::watch::Sender<u64>,
    notify: Notify,
    /// True while the session is in its room and can send.
    live: std::sync::atomic::AtomicBool,
    /// The rate limit was reached at the last write: a new line would wait for it.
    throttled: std::sync::atomic::AtomicBool,
}

impl Default for RoomQueue {
    fn default() -> Self {
        RoomQueue {
            lines: Mutex::new(VecDeque::new()),
            enqueued: Default::default(),
            written: tokio::sync::watch::Sender::new(0),
            notify: Notify::new(),
            live: Default::default(),
            throttled: Default::default(),
        }
    }
}

pub struct SshMode {
    config: Arc<Config>,
    rooms: HashMap<String, Arc<RoomQueue>>,
    /// Names our own sessions go by (one per room session), for echo filtering across rooms.
    own_names: Arc<Mutex<HashSet<String>>>,
}

impl SshMode {
    pub fn new(config: Arc<Config>) -> Self {
        let rooms = config
            .rooms
            .iter()
            .map(|room| (room.clone(), Arc::new(RoomQueue::default())))
            .collect();
        let own_names = Arc::new(Mutex::new(HashSet::from([config.nick.clone()])));
        SshMode {
            config,
            rooms,
            own_names,
        }
    }

    pub async fn run(&self, ctx: ConnectorContext) -> Result<(), ConnectorError> {
        let key = if self.config.anonymous {
            None
        } else {
            let path = self.config.key_file.clone();
            let key = tokio::task::spawn_blocking(move || keys::load_or_generate(&path))
                .await
                .map_err(|err| ConnectorError(format!("key task failed: {err}")))?
                .map_err(|err| ConnectorError(err.to_string()))?;
            Some(Arc::new(key))
        };
        let policy = match &self.config.host_key {
            Some(pinned) => HostKeyPolicy::Pinned(pinned.clone()),
            None => HostKeyPolicy::FirstUse(self.config.known_host_file.clone()),
        };
        let gate = JoinGate::for_server(&self.config.server);
        let live_rooms = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let emitter = crate::emitter::Emitter::spawn(ctx.sink.clone());
        let mut tasks = tokio::task::JoinSet::new();
        for (room, queue) in &self.rooms {
            let session = RoomSession {
                config: self.config.clone(),
                room: room.clone(),
                queue: queue.clone(),
                own_names: self.own_names.clone(),
                key: key.clone(),
                policy: policy.clone(),
                gate: gate.clone(),
                ctx: ctx.clone(),
                live_rooms: live_rooms.clone(),
                total_rooms: self.rooms.len(),
                emitter: emitter.clone(),
            };
            tasks.spawn(session.run_forever());
        }
        while let Some(result) = tasks.join_next().await {
            match result {
                Ok(Ok(())) => {}
                Ok(Err(err)) => {
                    ctx.state.down(err.0.clone());
                    tasks.abort_all();
                    return Err(err);
                }
                Err(err) if err.is_cancelled() => {}
                Err(err) => {
                    tasks.abort_all();
                    return Err(ConnectorError(format!("room session crashed: {err}")));
                }
            }
        }
        Ok(())
    }

    pub async fn deliver(&self, delivery: Delivery) -> Result<Delivered, DeliveryError> {
        let Some(queue) = self.rooms.get(&delivery.room) else {
            return Err(DeliveryError::permanent(format!(
                "{} is not in this account's `rooms`, so the bot has no session there",
                delivery.room
            )));
        };
        if !queue.live.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(DeliveryError::retryable(format!(
                "not connected to {}",
                delivery.room
            )));
        }
        let Some(mut out) = render::outgoing(&delivery, self.config.dialect == Dialect::Devzat)
        else {
            return Ok(Delivered::default());
        };
        if !self.config.hop_trace {
            out.trailer.clear();
        }
        let lines = match self.config.dialect {
            Dialect::Devzat => render::devzat_lines(
                &out,
                render::devzat_budget(self.config.pty_width, &self.config.nick),
            ),
            Dialect::SshChat => render::ssh_chat_lines(&out),
        };
        let (backlog, target) = {
            let mut queued = queue
                .lines
                .lock()
                .map_err(|_| DeliveryError::retryable("send queue poisoned"))?;
            if queued.len() + lines.len() > QUEUE_LIMIT {
                return Err(DeliveryError::Retryable {
                    reason: format!(
                        "{} lines already waiting for {}",
                        queued.len(),
                        delivery.room
                    ),
                    retry_after: Some(Duration::from_secs(5)),
                });
            }
            let backlog = !queued.is_empty();
            let n = lines.len() as u64;
            queued.extend(lines);
            let target = queue.enqueued.fetch_add(n, Ordering::SeqCst) + n;
            (backlog, target)
        };
        queue.notify.notify_one();
        if !backlog && !queue.throttled.load(Ordering::SeqCst) {
            let mut written = queue.written.subscribe();
            let _ = tokio::time::timeout(WRITE_WAIT, written.wait_for(|w| *w >= target)).await;
        }
        Ok(Delivered::default())
    }
}

struct RoomSession {
    config: Arc<Config>,
    room: String,
    queue: Arc<RoomQueue>,
    own_names: Arc<Mutex<HashSet<String>>>,
    key: Option<Arc<PrivateKey>>,
    policy: HostKeyPolicy,
    gate: JoinGate,
    ctx: ConnectorContext,
    live_rooms: Arc<std::sync::atomic::AtomicUsize>,
    total_rooms: usize,
    emitter: crate::emitter::Emitter,
}

impl RoomSession {
    async fn run_forever(self) -> Result<(), ConnectorError> {
        let mut backoff = Backoff::new(self.config.reconnect_min, self.config.reconnect_max);
        loop {
            tokio::select! {
                () = self.gate.acquire() => {}
                () = self.ctx.shutdown.cancelled() => return Ok(()),
            }
            let started = Instant::now();
            let end = self.session().await;
            self.set_live(false);
            match end {
                End::Shutdown => return Ok(()),
                End::Fatal(reason) => {
                    tracing::error!(account = %self.ctx.account, room = %self.room, %reason, "giving up");
                    return Err(ConnectorError(reason));
                }
                End::Retry(reason) => {
                    tracing::warn!(account = %self.ctx.account, room = %self.room, %reason, "session ended");
                    self.ctx.state.down(format!("{}: {reason}", self.room));
                }
            }
            if started.elapsed() > Duration::from_secs(120) {
                backoff.reset();
            }
            let delay = backoff.next_delay();
            tracing::info!(room = %self.room, ?delay, "reconnecting");
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.ctx.shutdown.cancelled() => return Ok(()),
            }
        }
    }

    fn set_live(&self, live: bool) {
        use std::sync::atomic::Ordering;
        let was = self.queue.live.swap(live, Ordering::SeqCst);
        if was == live {
            return;
        }
        if live {
            let n = self.live_rooms.fetch_add(1, Ordering::SeqCst) + 1;
            if n == self.total_rooms {
                self.ctx.state.up();
            }
            self.queue.notify.notify_one();
        } else {
            self.live_rooms.fetch_sub(1, Ordering::SeqCst);
        }
    }

    async fn session(&self) -> End {
        let handle = tokio::select! {
            result = login(&self.config, self.key.clone(), &self.policy) => match result {
                Ok(handle) => handle,
                Err(end) => return end,
            },
            () = self.ctx.shutdown.cancelled() => return End::Shutdown,
        };
        let end = self.converse(&handle).await;
        let _ = handle
            .disconnect(Disconnect::ByApplication, "bye", "en")
            .await;
        end
    }

    async fn converse(&self, handle: &client::Handle<Client>) -> End {
        let channel = match handle.channel_open_session().await {
            Ok(channel) => channel,
            Err(err) => return End::Retry(format!("open session: {err}")),
        };
        let setup = async {
            match self.config.dialect {
                Dialect::Devzat => {
                    channel
                        .request_pty(
                            false,
                            "xterm-256color",
                            self.config.pty_width,
                            50,
                            0,
                            0,
                            &[],
                        )
                        .await?;
                }
                Dialect::SshChat => {
                    // TERM=bot selects ssh-chat's bot mode. A pty whose terminal type is `bot`
                    // does too (the pty's type wins over the variable), and its width keeps the
                    // line editor from wrapping the echo of a 1024-byte line (at the default 80
                    // columns, a wrapped echo row reads like someone else's message).
                    channel.set_env(false, "TERM", "bot").await?;
                    let width = self.config.pty_width.max(SSH_CHAT_PTY_WIDTH);
                    channel
                        .request_pty(false, "bot", width, 50, 0, 0, &[])
                        .await?;
                }
            }
            channel.request_shell(false).await
        };
        if let Err(err) = setup.await {
            return End::Retry(format!("session setup: {err}"));
        }
        let (mut read, write) = channel.split();
        let mut screen = Screen::new();
        let mut parser = LineParser::new(self.config.dialect, &self.config.nick);
        let mut window = Window::for_lines(self.config.dialect);
        let mut in_room = false;
        let mut entry_deadline: Option<Instant> = None;
        let mut flush_at: Option<Instant> = None;
        let mut name_attempt = 0u32;
        let mut last_sent: VecDeque<String> = VecDeque::new();
        let far = Duration::from_secs(3600);
        loop {
            let now = Instant::now();
            let waiting = in_room && self.queue_len() > 0;
            let send_in = if waiting { window.wait(now) } else { far };
            let flush_in = flush_at
                .map(|at| at.saturating_duration_since(now))
                .unwrap_or(far);
            let entry_in = entry_deadline
                .map(|at| at.saturating_duration_since(now))
                .unwrap_or(far);
            let mut out: Vec<Line> = Vec::new();
            tokio::select! {
                msg = read.wait() => match msg {
                    Some(ChannelMsg::Data { data }) => {
                        for line in screen.feed(&data) {
                            out.extend(parser.push(&line));
                        }
                        // A redrawn prompt after the lines means the server finished a write.
                        if screen.partial().is_empty() {
                            flush_at = Some(Instant::now() + FLUSH_AFTER);
                        } else {
                            out.extend(parser.flush());
                            flush_at = None;
                        }
                    }
                    Some(ChannelMsg::ExtendedData { data, .. }) => {
                        tracing::debug!(room = %self.room, text = %String::from_utf8_lossy(&data), "stderr");
                    }
                    Some(ChannelMsg::Eof) | Some(ChannelMsg::Close) | None => {
                        let last = screen.partial();
                        return End::Retry(if last.trim().is_empty() {
                            "the server closed the session".to_owned()
                        } else {
                            format!("the server closed the session: {}", last.trim())
                        });
                    }
                    Some(ChannelMsg::ExitStatus { exit_status }) => {
                        tracing::debug!(room = %self.room, exit_status, "exit status");
                    }
                    Some(_) => {}
                },
                () = tokio::time::sleep(flush_in), if flush_at.is_some() => {
                    flush_at = None;
                    out.extend(parser.flush());
                }
                () = tokio::time::sleep(entry_in), if entry_deadline.is_some() => {
                    tracing::warn!(room = %self.room, "no arrival announced after `cd`; assuming the room was entered");
                    entry_deadline = None;
                    in_room = true;
                    self.set_live(true);
                }
                () = self.queue.notify.notified() => {}
                () = tokio::time::sleep(send_in), if waiting => {
                    let now = Instant::now();
                    let Some((line, count)) = self.next_line(&mut window, now) else { continue };
                    if let Err(err) = write.data(format!("{line}\r").as_bytes()).await {
                        // The merged items now stand as one queued line.
                        self.queue.written.send_modify(|w| *w += count - 1);
                        self.requeue(line);
                        return End::Retry(format!("write: {err}"));
                    }
                    self.queue.written.send_modify(|w| *w += count);
                    window.record(now);
                    self.queue.throttled.store(window.free(now) == 0, Ordering::SeqCst);
                    last_sent.push_back(line);
                    if last_sent.len() > 4 {
                        last_sent.pop_front();
                    }
                }
                () = self.ctx.shutdown.cancelled() => return End::Shutdown,
            }
            // Entering the room once our join is announced.
            if parser.is_live() && !in_room && entry_deadline.is_none() {
                if self.room == "#main" || self.config.dialect == Dialect::SshChat {
                    in_room = true;
                    self.register_name(parser.name());
                    self.set_live(true);
                    tracing::info!(account = %self.ctx.account, room = %self.room, name = %parser.name(), "in the room");
                } else {
                    self.register_name(parser.name());
                    let command = format!("cd {}\r", self.room);
                    if let Err(err) = write.data(command.as_bytes()).await {
                        return End::Retry(format!("write: {err}"));
                    }
                    window.record(Instant::now());
                    entry_deadline = Some(Instant::now() + ROOM_ENTRY_TIMEOUT);
                }
            }
            for line in out {
                match line.clone() {
                    Line::NamePrompt => {
                        name_attempt += 1;
                        if name_attempt > 20 {
                            return End::Retry("the server refused every name tried".into());
                        }
                        let name = alternative_name(&self.config.nick, name_attempt);
                        tracing::info!(room = %self.room, %name, "name taken; answering the prompt");
                        self.register_name(&name);
                        parser.rename(&name);
                        if let Err(err) = write.data(format!("{name}\r").as_bytes()).await {
                            return End::Retry(format!("write: {err}"));
                        }
                    }
                    // Devzat announces our arrival in the new room: lines after it belong
                    // to the room.
                    Line::Entered { room } if entry_deadline.is_some() && room == self.room => {
                        entry_deadline = None;
                        in_room = true;
                        self.set_live(true);
                        tracing::info!(account = %self.ctx.account, room = %self.room, name = %parser.name(), "in the room");
                    }
                    Line::Entered { .. } => {}
                    Line::Own { .. } => {}
                    Line::RateLimited => {
                        // The server refused a line: send it again rather than lose it, and
                        // slow down for a full window.
                        tracing::warn!(room = %self.room, "the server rate-limited a line; resending it");
                        if let Some(line) = last_sent.pop_back() {
                            self.queue.enqueued.fetch_add(1, Ordering::SeqCst);
                            self.requeue(line);
                        }
                        for _ in 0..3 {
                            window.record(Instant::now());
                        }
                    }
                    Line::TooLong => {
                        tracing::warn!(room = %self.room, "the server refused a line as too long")
                    }
                    Line::Message { ref from, ref text }
                        if from == "devbot"
                            && text.contains("stop spamming")
                            && self.is_own(text.split(',').next().unwrap_or("")) =>
                    {
                        // Devzat's anti-spam warning names us: relay it (people see it too) and
                        // say so in the log.
                        tracing::warn!(room = %self.room, %text, "Devzat's anti-spam warned the bot");
                        if in_room {
                            self.emit(line).await;
                        }
                    }
                    Line::System { text } => {
                        if text.contains("spam") || text.contains("banned") {
                            tracing::warn!(room = %self.room, %text, "anti-spam notice from the server");
                        } else {
                            tracing::debug!(room = %self.room, %text, "system line");
                        }
                    }
                    other if in_room => self.emit(other).await,
                    _ => {}
                }
            }
        }
    }

    fn queue_len(&self) -> usize {
        self.queue.lines.lock().map(|q| q.len()).unwrap_or(0)
    }

    /// The next line to write: one queued line, or a merge of several when more are waiting
    /// than the rate limit lets through.
    /// Returns the line and how many queued lines it consumed.
    fn next_line(&self, window: &mut Window, now: Instant) -> Option<(String, u64)> {
        let mut queue = self.queue.lines.lock().ok()?;
        if queue.is_empty() {
            return None;
        }
        let free = window.free(now).max(1);
        if queue.len() <= free {
            return queue.pop_front().map(|line| (line, 1));
        }
        let before = queue.len();
        let merged = match self.config.dialect {
            Dialect::Devzat => render::merge(
                &mut queue,
                "\\n",
                render::devzat_budget(self.config.pty_width, &self.config.nick),
            ),
            Dialect::SshChat => render::merge(&mut queue, " | ", render::SSH_CHAT_MAX_LINE - 8),
        };
        Some((merged, (before - queue.len()) as u64))
    }

    fn requeue(&self, line: String) {
        if let Ok(mut queue) = self.queue.lines.lock() {
            queue.push_front(line);
        }
    }

    fn register_name(&self, name: &str) {
        if let Ok(mut names) = self.own_names.lock() {
            names.insert(name.to_owned());
        }
    }

    fn is_own(&self, name: &str) -> bool {
        self.own_names
            .lock()
            .map(|names| names.contains(name))
            .unwrap_or(false)
    }

    async fn emit(&self, line: Line) {
        let (author, kind) = match line {
            Line::Message { from, text } => (
                from,
                Kind::Message {
                    body: RichText::plain(text),
                    attachments: Vec::new(),
                },
            ),
            Line::Emote { from, text } => (
                from,
                Kind::Action {
                    body: RichText::plain(text),
                },
            ),
            Line::Join { name } => (name, Kind::Join),
            Line::Part { name } => (name, Kind::Part { reason: None }),
            Line::Nick { old, new } => (new.clone(), Kind::Nick { old, new }),
            Line::DirectIn { from, .. } => {
                tracing::info!(room = %self.room, %from, "ignoring a private message to the bot");
                return;
            }
            _ => return,
        };
        if self.is_own(&author) {
            return;
        }
        let mut inbound = Inbound::message(
            self.room.clone(),
            Author::named(author),
            RichText::default(),
        );
        inbound.kind = kind;
        // Another patchbay's relay carries its hop trace invisibly: restore it, drop the marks.
        if let Some(body) = inbound.kind.body_mut() {
            let (text, hops) = crate::hops::extract(&body.to_plain());
            *body = RichText::plain(text);
            inbound.hops = hops;
        }
        self.emitter.emit(inbound).await;
    }
}

/// The name to offer when `nick` is taken: `nick1`, `nick2`, ... cut to Devzat's 27 characters.
fn alternative_name(nick: &str, attempt: u32) -> String {
    let suffix = attempt.to_string();
    let keep = crate::parse::DEVZAT_NAME_MAX.saturating_sub(suffix.len());
    let base: String = nick.chars().take(keep).collect();
    format!("{base}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alternative_names_stay_within_the_limit() {
        assert_eq!(alternative_name("bot", 1), "bot1");
        let long = "x".repeat(27);
        assert_eq!(alternative_name(&long, 12).len(), 27);
    }
}
