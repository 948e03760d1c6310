//! One room's SSH session: connect, converse, write deliveries, reconnect. The I/O loop only:
//! what the lines mean and what to answer is [`crate::converse`]'s, which written line the
//! server showed is its [`Unshown`]'s, what to write next is [`crate::send`]'s.
//!
//! The loop reads the channel, hands the bytes to the conversation and acts on its steps;
//! when the room's queue holds lines and the rate limit allows, it takes the next write. A
//! write's deliveries are answered when the server shows the line. When the session ends for
//! any reason, the room's queue is closed and the writes not shown are dropped, so every
//! delivery not shown goes back to the outbox.
//!
//! Stopping: on shutdown nothing more is written, the loop keeps reading until the lines
//! already written are shown (at most [`DRAIN_WAIT`]), then the session disconnects.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use patchbay_sdk::{
    Author, Backoff, Connection, ConnectorContext, ConnectorError, Ended, HealthEvent, Inbound,
    Kind, RichText, Signal, Supervisor,
};
use russh::client;
use russh::keys::PrivateKey;
use russh::{ChannelMsg, Disconnect};
use tokio::time::Instant;

use crate::config::Config;
use crate::converse::{Conversation, SHOW_WAIT, Step, Unshown};
use crate::dialect::Dialect;
use crate::keys::HostKeyPolicy;
use crate::login::{Client, login};
use crate::pacing::{JoinGate, LoginTurn, Window};
use crate::parse::{DEVBOT, Line};
use crate::send::Merge;
use crate::state::{OwnNames, RoomQueue};

/// A held-back Devzat message is released after this much quiet (continuation lines come in
/// the same write as the line they continue).
const FLUSH_AFTER: Duration = Duration::from_millis(60);
/// ssh-chat's widest line: 1024 bytes of input after a `[name] ` prompt of up to 19 columns.
const SSH_CHAT_PTY_WIDTH: u32 = 1100;
/// How long to wait for our arrival after `cd #room` before assuming we are in the room.
const ROOM_ENTRY_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest one session holds the account's login turn before the next may log in (a
/// server that never announces our arrival must not keep the other rooms out).
const LOGIN_TURN_MAX: Duration = Duration::from_secs(15);
/// A session that held this long starts the reconnect backoff again from its minimum.
const HELD: Duration = Duration::from_secs(120);
/// On shutdown, how long to wait for the server to show the lines already written (so their
/// deliveries are answered `Ok` rather than sent again after the restart).
const DRAIN_WAIT: Duration = Duration::from_secs(5);

pub struct RoomSession {
    pub config: Arc<Config>,
    pub room: String,
    pub queue: Arc<RoomQueue>,
    pub names: Arc<OwnNames>,
    pub key: Option<Arc<PrivateKey>>,
    pub policy: HostKeyPolicy,
    pub gate: JoinGate,
    pub ctx: ConnectorContext,
    pub live_rooms: Arc<AtomicUsize>,
    pub total_rooms: usize,
    pub emitter: crate::emitter::Emitter,
}

impl RoomSession {
    /// Stay connected until shutdown: the sdk's [`Supervisor`] runs the session again and
    /// again, as one part of the account (the account is up once every room is).
    pub async fn run_forever(mut self) -> Result<(), ConnectorError> {
        let backoff = Backoff::new(self.config.reconnect_min, self.config.reconnect_max);
        Supervisor::new(&self.ctx, backoff)
            .part(self.room.clone())
            .held(HELD)
            .run(&mut self)
            .await
    }

    /// Open the room's queue for deliveries, or close it (answering what waits with `reason`).
    fn set_live(&self, live: bool, reason: &str) {
        let was = {
            let mut queue = self.queue.lock();
            let was = queue.is_live();
            if live {
                queue.open();
            } else {
                queue.close(reason);
            }
            was
        };
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

    async fn session(&self, turn: LoginTurn) -> Ended {
        // The server announces our arrival to everyone as we log in: our name must be known
        // as ours before (a name prompt's answer is announced before it is typed).
        self.names
            .set(&self.room, &self.config.nick, &self.ctx.sink);
        let handle = tokio::select! {
            result = login(&self.config, self.key.clone(), &self.policy) => match result {
                Ok(handle) => handle,
                Err(end) => return end,
            },
            () = self.ctx.shutdown.cancelled() => return Ended::Shutdown,
        };
        let end = self.converse(&handle, turn).await;
        let _ = handle
            .disconnect(Disconnect::ByApplication, "bye", "en")
            .await;
        end
    }

    async fn open_channel(
        &self,
        handle: &client::Handle<Client>,
    ) -> Result<russh::Channel<client::Msg>, String> {
        let channel = handle
            .channel_open_session()
            .await
            .map_err(|err| format!("open session: {err}"))?;
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
        setup.await.map_err(|err| format!("session setup: {err}"))?;
        Ok(channel)
    }

    fn merge(&self) -> Merge<'static> {
        match self.config.dialect {
            Dialect::Devzat => Merge {
                separator: "\\n",
                budget: crate::render::devzat_budget(self.config.pty_width, &self.config.nick),
            },
            Dialect::SshChat => Merge {
                separator: " | ",
                budget: crate::render::SSH_CHAT_MAX_LINE - 8,
            },
        }
    }

    /// `turn` is the account's login turn on the server, given back once we are in the room.
    async fn converse(&self, handle: &client::Handle<Client>, turn: LoginTurn) -> Ended {
        let mut turn = Some(turn);
        let turn_until = Instant::now() + LOGIN_TURN_MAX;
        let channel = match self.open_channel(handle).await {
            Ok(channel) => channel,
            Err(reason) => return Ended::Failed(reason),
        };
        let (mut read, write) = channel.split();
        let mut talk = Conversation::new(self.config.dialect, &self.room, &self.config.nick);
        let mut window = Window::for_lines(self.config.dialect);
        let mut quiet_at: Option<Instant> = None;
        let mut entry_deadline: Option<Instant> = None;
        let mut unshown = Unshown::default();
        let merge = self.merge();
        // Set on shutdown: the moment to stop waiting for lines already written.
        let mut draining: Option<Instant> = None;
        loop {
            let now = Instant::now();
            let waiting = talk.in_room() && draining.is_none() && !self.queue.lock().is_empty();
            let send_at = now + window.wait(now);
            let steps = tokio::select! {
                msg = read.wait() => match msg {
                    Some(ChannelMsg::Data { data }) => {
                        let steps = talk.on_data(&data);
                        quiet_at = talk.wants_quiet_timer().then(|| Instant::now() + FLUSH_AFTER);
                        steps
                    }
                    Some(ChannelMsg::ExtendedData { data, .. }) => {
                        tracing::debug!(room = %self.room, text = %String::from_utf8_lossy(&data), "stderr");
                        Vec::new()
                    }
                    Some(ChannelMsg::Eof) | Some(ChannelMsg::Close) | None => {
                        return Ended::Failed(talk.closed_reason());
                    }
                    Some(ChannelMsg::ExitStatus { exit_status }) => {
                        tracing::debug!(room = %self.room, exit_status, "exit status");
                        Vec::new()
                    }
                    Some(_) => Vec::new(),
                },
                () = sleep_until(quiet_at) => {
                    quiet_at = None;
                    talk.on_quiet()
                }
                () = sleep_until(entry_deadline) => {
                    entry_deadline = None;
                    talk.on_entry_timeout()
                }
                () = tokio::time::sleep_until(turn_until), if turn.is_some() => {
                    tracing::warn!(room = %self.room, "not in the room after {}s; letting the next session log in (a slow server or a join limit: this one keeps trying)", LOGIN_TURN_MAX.as_secs());
                    drop(turn.take());
                    Vec::new()
                }
                () = sleep_until(unshown.overdue_at()) => {
                    return Ended::Failed(format!(
                        "the server did not show our line within {}s",
                        SHOW_WAIT.as_secs()
                    ));
                }
                () = self.queue.notify.notified() => Vec::new(),
                () = tokio::time::sleep_until(send_at), if waiting => {
                    let now = Instant::now();
                    let next = self.queue.lock().take(window.free(now), merge);
                    let Some(next) = next else { continue };
                    if let Err(err) = write.data(format!("{}\r", next.text).as_bytes()).await {
                        let reason = format!("write: {err}");
                        next.failed(&reason);
                        return Ended::Failed(reason);
                    }
                    window.record(now);
                    tracing::debug!(room = %self.room, pieces = next.pieces, "wrote a line");
                    if next.pieces > 1 {
                        LinesMerged { room: &self.room, pieces: next.pieces }.emit(&self.ctx.sink);
                    }
                    unshown.wrote(now, next);
                    Vec::new()
                }
                () = self.ctx.shutdown.cancelled(), if draining.is_none() => {
                    draining = Some(Instant::now() + DRAIN_WAIT);
                    Vec::new()
                }
                () = sleep_until(draining) => {
                    tracing::info!(room = %self.room, unshown = unshown.waiting(), "stopping before the server showed every line written");
                    return Ended::Shutdown;
                }
            };
            for step in steps {
                match step {
                    Step::Type(line) => {
                        if let Err(err) = write.data(format!("{line}\r").as_bytes()).await {
                            return Ended::Failed(format!("write: {err}"));
                        }
                        window.record(Instant::now());
                        unshown.typed(Instant::now());
                    }
                    Step::Answer(name) => {
                        if let Err(err) = write.data(format!("{name}\r").as_bytes()).await {
                            return Ended::Failed(format!("write: {err}"));
                        }
                    }
                    Step::Shown => {
                        if !unshown.shown() {
                            tracing::debug!(room = %self.room, "a line of ours shown that this session did not write")
                        }
                    }
                    Step::Named(name) => self.names.set(&self.room, &name, &self.ctx.sink),
                    Step::InRoom => {
                        entry_deadline = None;
                        drop(turn.take());
                        self.set_live(true, "");
                        tracing::info!(account = %self.ctx.account, room = %self.room, name = %talk.name(), "in the room");
                    }
                    Step::AwaitEntry => entry_deadline = Some(Instant::now() + ROOM_ENTRY_TIMEOUT),
                    Step::Emit(line) => self.emit(line).await,
                    Step::RateLimited => {
                        // The server refused a line: send it again rather than lose it, and
                        // slow down for a full window.
                        LineRateLimited { room: &self.room }.emit(&self.ctx.sink);
                        if let Some(text) = unshown.rate_limited() {
                            self.queue.lock().resend_text(text);
                        }
                        for _ in 0..3 {
                            window.record(Instant::now());
                        }
                    }
                    Step::TooLong => {
                        LineTooLong { room: &self.room }.emit(&self.ctx.sink);
                        unshown.too_long();
                    }
                    Step::Retry(reason) => return Ended::Failed(reason),
                }
            }
            if draining.is_some() && unshown.settled() {
                return Ended::Shutdown;
            }
        }
    }

    /// Emit a line as an event, unless one of the account's own sessions said it.
    async fn emit(&self, line: Line) {
        let (author, kind) = match line {
            Line::Message { from, text } => (
                Author::named(from),
                Kind::Message {
                    body: RichText::plain(text),
                    attachments: Vec::new(),
                },
            ),
            Line::Emote { from, text } => (
                Author::named(from),
                Kind::Action {
                    body: RichText::plain(text),
                },
            ),
            Line::Devbot { text } => {
                if text.contains("stop spamming")
                    && self.names.contains(text.split(',').next().unwrap_or(""))
                {
                    // Devzat's anti-spam warning names us: bookkeeping for the log only.
                    tracing::warn!(room = %self.room, %text, "Devzat's anti-spam warned the bot; the bridge slows down on its own: if it repeats, lower the rate of the routes into this room or turn the server's anti-spam off for the bot");
                    return;
                }
                // The server's own bot: a notice from a bot, which routes relay only when asked.
                let mut author = Author::named(DEVBOT);
                author.is_bot = true;
                author.is_system = true;
                (
                    author,
                    Kind::Notice {
                        body: RichText::plain(text),
                    },
                )
            }
            Line::Join { name } => (Author::named(name), Kind::Join),
            Line::Part { name } => (Author::named(name), Kind::Part { reason: None }),
            Line::Nick { old, new } => (Author::named(new.clone()), Kind::Nick { old, new }),
            Line::DirectIn { from, .. } => {
                tracing::info!(room = %self.room, %from, "ignoring a private message to the bot");
                return;
            }
            _ => return,
        };
        // Our own lines never come back on ssh-chat (bot mode), and its name for us is a guess
        // when the name asked for was taken: there, only joins, parts and renames are ours.
        let chat = matches!(kind, Kind::Message { .. } | Kind::Action { .. });
        let filter = !(chat && self.config.dialect == Dialect::SshChat);
        if filter && self.names.contains(&author.id) {
            return;
        }
        let mut inbound = Inbound::message(self.room.clone(), author, RichText::default());
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

impl Connection for RoomSession {
    /// One session, after the account's join gate lets it in. The session's own ends say
    /// `Failed`; it counts as `Lost` when the room was live (the session had entered it).
    async fn connect_once(&mut self) -> Ended {
        let turn = tokio::select! {
            turn = self.gate.acquire(&self.ctx.sink) => turn,
            () = self.ctx.shutdown.cancelled() => return Ended::Shutdown,
        };
        let end = self.session(turn).await;
        let was_up = self.queue.lock().is_live();
        let reason = match &end {
            Ended::Shutdown => "the connector is stopping",
            Ended::Fatal(reason) | Ended::Failed(reason) | Ended::Lost(reason) => reason,
        };
        self.set_live(false, reason);
        match end {
            Ended::Failed(reason) if was_up => Ended::Lost(reason),
            end => end,
        }
    }
}

patchbay_sdk::health_events! {
    /// The server refused a line for going too fast; it is sent again after a full window.
    struct LineRateLimited<'a> { room: &'a str }
        => Signal::RateLimited, |_| tracing::warn!(room = %room, "the server rate-limited a line; resending it more slowly (if this repeats, lower the routes' rate into this room)");

    /// The server refused a line as too long.
    struct LineTooLong<'a> { room: &'a str }
        => Signal::MessageRefused, |_| tracing::warn!(room = %room, "the server refused a line as too long; its deliveries become dead letters (the status page and `patchbay dead-letters list` show them): shorten what the routes into this room send, e.g. with a rewrite");

    /// More deliveries waited than the send window lets through: `pieces` of them went out as
    /// one line. Counted, so that an operator sees how often the anti-spam limit shapes the
    /// relay; its log line is at debug, beside "wrote a line".
    struct LinesMerged<'a> { room: &'a str, pieces: usize }
        => Signal::LinesMerged, |_| tracing::debug!(room = %room, pieces = *pieces, "merged waiting deliveries into one line");
}

/// Sleep until `at`, or forever when there is nothing to wait for.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
