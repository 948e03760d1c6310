//! One account's connection: connect, register (CAP, SASL, nick), join, keep alive, reconnect.
//!
//! [`run`] hands one connection to the sdk's reconnect supervisor. Each connection is a
//! reader loop (this file, with registration in [`crate::register`]) and a writer task that
//! sends protocol lines at once and deliveries through the flood-control bucket. While a
//! connection is registered, [`Link`] is published in [`Shared`] for `deliver` to use; while
//! there is none, deliveries are refused as retryable and wait in the gateway's outbox.
//! What a line means for the bridge (our joins, membership, echoes, history replays, handing
//! events to the gateway in order) is handled in `events.rs`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use patchbay_sdk::sync::lock;
use patchbay_sdk::{
    Backoff, Connection, ConnectorContext, ConnectorError, Ended, HealthEvent, Supervisor,
    Timestamp,
};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tracing::{info, trace};

use crate::catchup::{CatchUps, Isupport};
use crate::history::History;
use crate::link::{EchoError, Link, LinkState, Shared, writer_task};
use crate::numeric::Numeric;
use crate::pacing::TokenBucket;
use crate::parse::{self, IrcEvent, MsgTags, Source, fold_case};
use crate::register::{Registration, Step};
use crate::render::SelfPrefix;
use crate::transport::{self, LineReader, Stream};
use burst::{BURST_MAX, Burst};

mod burst;
mod events;
mod health;

use health::{
    HistoryRefused, HistoryTimedOut, JoinRefused, LongLineSkipped, MalformedLineSkipped,
    MarksNotSaved, MessageRefused,
};

/// Stay connected until shutdown: the sdk's [`Supervisor`] runs [`OneConnection`] again and
/// again, with backoff started over after every connection that registered.
pub async fn run(shared: Arc<Shared>, ctx: ConnectorContext) -> Result<(), ConnectorError> {
    let backoff = Backoff::new(shared.cfg.reconnect_min, shared.cfg.reconnect_max);
    let mut history = History::load(Some(ctx.data_dir.join("irc-history.tsv")));
    for channel in &shared.cfg.channels {
        if history.mark(&channel.name).is_none()
            && let Ok(Some(seen)) = ctx.sink.last_seen(&channel.name).await
        {
            history.seed(&channel.name, seen.time, seen.remote_id);
        }
    }
    let mut connection = OneConnection {
        shared: &shared,
        ctx: &ctx,
        history,
    };
    Supervisor::new(&ctx, backoff).run(&mut connection).await
}

/// One connection of the account, and what outlives it: the history marks.
struct OneConnection<'a> {
    shared: &'a Shared,
    ctx: &'a ConnectorContext,
    history: History,
}

impl Connection for OneConnection<'_> {
    async fn connect_once(&mut self) -> Ended {
        let ended = connect_once(self.shared, self.ctx, &mut self.history).await;
        *lock(&self.shared.link) = None;
        if let Err(e) = self.history.save() {
            MarksNotSaved { error: &e }.emit(&self.ctx.sink);
        }
        ended
    }
}

/// A connection lost for `reason`: [`Ended::Lost`] once registered, else [`Ended::Failed`].
fn lost(reason: String, registered: bool) -> Ended {
    if registered {
        Ended::Lost(reason)
    } else {
        Ended::Failed(reason)
    }
}

/// An open `BATCH`.
struct OpenBatch {
    /// The batch type, lowercased (`chathistory`, `labeled-response`, ...).
    kind: String,
    /// Its first parameter after the type (the channel, for history).
    target: Option<String>,
    /// The label it answers (labeled-response).
    label: Option<String>,
}

/// A live line held while its channel is caught up.
struct Held {
    tags: MsgTags,
    event: IrcEvent,
    source: Source,
    from_me: bool,
}

/// Per-connection state of the reader loop.
struct Session<'a> {
    shared: &'a Shared,
    ctx: &'a ConnectorContext,
    history: &'a mut History,
    reg: Registration,
    link: Link,
    registered: bool,
    /// Open batches by reference.
    batches: HashMap<String, OpenBatch>,
    /// History catch-ups running, with the live lines they hold.
    catchup: CatchUps<Held>,
    /// What the server advertised in `005`.
    isupport: Isupport,
    /// Live lines of channels we are not in yet, by folded channel (with their msgid): a
    /// server may send a channel's traffic just before our own JOIN. Taken at that JOIN.
    early: HashMap<String, Vec<(Option<String>, Held)>>,
    /// Channel members, for quits and nick changes: folded channel → folded nicks.
    members: HashMap<String, HashSet<String>>,
    rejoin_tx: mpsc::UnboundedSender<String>,
    error: Option<String>,
    /// Live lines read in one go, relayed as one run.
    burst: Burst,
}

async fn connect_once(shared: &Shared, ctx: &ConnectorContext, history: &mut History) -> Ended {
    let cfg = &shared.cfg;
    let connect = tokio::time::timeout(
        cfg.connect_timeout,
        transport::connect(cfg, shared.tls.as_ref()),
    );
    let stream: Stream = tokio::select! {
        _ = ctx.shutdown.cancelled() => return Ended::Shutdown,
        r = connect => match r {
            Err(_) => return Ended::Failed(format!("connecting to {}:{} timed out", cfg.server, cfg.port)),
            Ok(Err(e)) => return Ended::Failed(e.to_string()),
            Ok(Ok(s)) => s,
        },
    };
    info!(account = %ctx.account, "connected to {}:{}", cfg.server, cfg.port);
    let (rd, wr) = tokio::io::split(stream);
    let mut reader = LineReader::new(rd);
    let (urgent_tx, urgent_rx) = mpsc::unbounded_channel();
    let (paced_tx, paced_rx) = mpsc::unbounded_channel();
    let mut writer = tokio::spawn(writer_task(
        wr,
        urgent_rx,
        paced_rx,
        TokenBucket::new(cfg.flood),
        ctx.sink.clone(),
    ));
    let (rejoin_tx, mut rejoin_rx) = mpsc::unbounded_channel::<String>();
    let link = Link {
        urgent: urgent_tx,
        paced: paced_tx,
        state: Arc::new(Mutex::new(LinkState::new(SelfPrefix {
            nick: cfg.nick.clone(),
            user: cfg.username.clone(),
            host: None,
        }))),
        joins: Arc::new(Notify::new()),
    };
    let mut session = Session {
        shared,
        ctx,
        history,
        reg: Registration::new(cfg),
        link,
        registered: false,
        batches: HashMap::new(),
        catchup: CatchUps::default(),
        isupport: Isupport::default(),
        early: HashMap::new(),
        members: HashMap::new(),
        rejoin_tx,
        error: None,
        burst: Burst::default(),
    };
    for line in session.reg.start() {
        session.send(line);
    }
    let started = Instant::now();
    let mut last_activity = Instant::now();
    let mut ping_sent = false;
    let mut save_tick = tokio::time::interval(Duration::from_secs(2));
    let mut regain_tick = tokio::time::interval(cfg.regain_nick);
    let ended = loop {
        let deadline = if !session.registered {
            started + cfg.connect_timeout.max(Duration::from_secs(5)) * 2
        } else if ping_sent {
            last_activity + cfg.ping_timeout
        } else {
            last_activity + cfg.ping_interval
        };
        tokio::select! {
            _ = ctx.shutdown.cancelled() => {
                session.send("QUIT :patchbay is shutting down".into());
                break Ended::Shutdown;
            }
            result = &mut writer => {
                let reason = match result {
                    Ok(Ok(())) => "the writer stopped".to_owned(),
                    Ok(Err(e)) => format!("write failed: {e}"),
                    Err(e) => format!("writer task failed: {e}"),
                };
                break lost(reason, session.registered);
            }
            line = reader.next_line() => {
                match line {
                    Err(e) => break lost(format!("read failed: {e}"), session.registered),
                    Ok(None) => {
                        let reason = session.error.take().map_or_else(
                            || "the server closed the connection".to_owned(),
                            |e| format!("the server closed the connection: {e}"),
                        );
                        break lost(reason, session.registered);
                    }
                    Ok(Some(None)) => LongLineSkipped.emit(&ctx.sink),
                    Ok(Some(Some(bytes))) => {
                        last_activity = Instant::now();
                        ping_sent = false;
                        if let Some(ended) = session.handle_buffered(bytes, &mut reader).await {
                            break ended;
                        }
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                if !session.registered {
                    break Ended::Failed("registration timed out".into());
                }
                if ping_sent {
                    break Ended::Lost(format!("ping timeout: no reply in {:.0?}", cfg.ping_timeout));
                }
                session.send(format!("PING :{}", Timestamp::now().0));
                ping_sent = true;
            }
            Some(channel) = rejoin_rx.recv() => session.join(&channel),
            // On an alternative nick: try to get the configured one back.
            _ = regain_tick.tick() => {
                if session.registered && fold_case(&session.own_nick()) != fold_case(&cfg.nick) {
                    session.send(format!("NICK {}", cfg.nick));
                }
            }
            _ = save_tick.tick() => {
                for end in session.catchup.expired(std::time::Instant::now()) {
                    HistoryTimedOut.emit(&ctx.sink);
                    session.finish_catch_up(end).await;
                }
                if let Err(e) = session.history.save() {
                    MarksNotSaved { error: &e }.emit(&ctx.sink);
                }
            }
        }
    };
    *lock(&shared.link) = None;
    // Let the writer flush a QUIT, but do not hang on a dead socket.
    let Link { urgent, paced, .. } = session.link;
    drop(urgent);
    drop(paced);
    if matches!(ended, Ended::Shutdown) {
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut writer).await;
    }
    writer.abort();
    ended
}

impl Session<'_> {
    fn send(&self, line: String) {
        let _ = self.link.urgent.send(line);
    }

    fn join(&self, channel: &str) {
        let key = self
            .shared
            .cfg
            .channels
            .iter()
            .find(|c| fold_case(&c.name) == fold_case(channel))
            .and_then(|c| c.key.clone());
        // A delivery waiting for this channel need not ask again.
        lock(&self.link.state)
            .join_requested
            .insert(fold_case(channel), Instant::now());
        match key {
            Some(key) => self.send(format!("JOIN {channel} {key}")),
            None => self.send(format!("JOIN {channel}")),
        }
    }

    fn own_nick(&self) -> String {
        lock(&self.link.state).me.nick.clone()
    }

    fn is_me(&self, nick: &str) -> bool {
        fold_case(nick) == fold_case(&self.own_nick())
    }

    /// The room name routes use for `channel`: the configured spelling if configured.
    fn room_of(&self, channel: &str) -> String {
        let folded = fold_case(channel);
        self.shared
            .cfg
            .channels
            .iter()
            .find(|c| fold_case(&c.name) == folded)
            .map(|c| c.name.clone())
            .or_else(|| lock(&self.shared.rooms).get(&folded).cloned())
            .unwrap_or_else(|| channel.to_owned())
    }

    /// Handle `first` and the whole lines already buffered behind it (up to [`BURST_MAX`]),
    /// relaying what they carry as one run.
    async fn handle_buffered<R>(
        &mut self,
        first: Vec<u8>,
        reader: &mut LineReader<R>,
    ) -> Option<Ended>
    where
        R: tokio::io::AsyncRead + Unpin,
    {
        self.burst.gathering = true;
        let mut ended = self.handle(&first).await;
        while ended.is_none() && self.burst.len() < BURST_MAX && reader.has_line() {
            match reader.next_line().await {
                Ok(Some(Some(bytes))) => ended = self.handle(&bytes).await,
                Ok(Some(None)) => LongLineSkipped.emit(&self.ctx.sink),
                // Not reached with a whole line buffered; the next read reports it.
                Ok(None) | Err(_) => break,
            }
        }
        self.burst.gathering = false;
        self.flush_burst().await;
        ended
    }

    /// Handle one line; `Some` ends the connection.
    async fn handle(&mut self, bytes: &[u8]) -> Option<Ended> {
        let parsed = match parse::parse_line(bytes, self.shared.cfg.charset) {
            Ok(p) => p,
            Err(parse::ParseError::Empty) => return None,
            Err(e) => {
                MalformedLineSkipped { error: &e }.emit(&self.ctx.sink);
                return None;
            }
        };
        let (command, params) = parse::command_params(&parsed.message);
        trace!("< {command} {params:?}");
        if !self.registered {
            match self.reg.handle(&command, &params) {
                Step::Send(lines) => {
                    for line in lines {
                        self.send(line);
                    }
                }
                Step::Fatal(reason) => return Some(Ended::Fatal(reason)),
                Step::Registered { nick } => self.on_registered(nick, &params),
                Step::Nothing => {}
            }
        } else if let Step::Fatal(reason) = self.reg.handle_late(&command, &params) {
            return Some(Ended::Fatal(reason));
        }
        match command.as_str() {
            "PING" => {
                let token = params.first().cloned().unwrap_or_default();
                self.send(format!("PONG :{token}"));
            }
            "ERROR" => self.error = params.first().cloned(),
            "BATCH" => self.on_batch(&params, &parsed.tags).await,
            // labeled-response: the server had nothing to say about one of our lines.
            "ACK" => {
                if let Some(label) = &parsed.tags.label {
                    lock(&self.link.state).answer(Some(label), "", None, Ok(None));
                }
            }
            // A history request failed: stop waiting for its pages.
            "FAIL"
                if params
                    .first()
                    .is_some_and(|c| c.eq_ignore_ascii_case("CHATHISTORY")) =>
            {
                HistoryRefused { params: &params }.emit(&self.ctx.sink);
                let channels: Vec<String> = params
                    .iter()
                    .filter(|p| self.catchup.is_active(p))
                    .cloned()
                    .collect();
                for channel in channels {
                    let end = self.catchup.abort(&channel);
                    self.finish_catch_up(end).await;
                }
            }
            _ => {}
        }
        if let Some(numeric) = Numeric::of(&command) {
            self.on_numeric(numeric, &params, &parsed.tags);
        }
        if self.registered
            && let Some(event) = parsed.event.clone()
        {
            self.on_event(&parsed, event).await;
        }
        None
    }

    /// What a numeric reply means for the session once it is registered (registration's own
    /// numerics are the [`Registration`]'s).
    fn on_numeric(&mut self, numeric: Numeric, params: &[String], tags: &MsgTags) {
        match numeric {
            // nick, tokens..., "are supported by this server".
            Numeric::ISupport if params.len() > 2 => {
                self.isupport.apply(&params[1..params.len() - 1])
            }
            // = #chan :@nick +nick nick
            Numeric::NamReply => {
                if let (Some(channel), Some(names)) = (params.get(2), params.get(3)) {
                    let set = self.members.entry(fold_case(channel)).or_default();
                    for name in names.split(' ').filter(|n| !n.is_empty()) {
                        let nick = name.trim_start_matches(['@', '+', '%', '&', '~', '!']);
                        let nick = nick.split('!').next().unwrap_or(nick);
                        set.insert(fold_case(nick));
                    }
                }
            }
            // Cannot join: full, invite-only, banned, bad key. Try again later.
            Numeric::ChannelIsFull
            | Numeric::InviteOnlyChan
            | Numeric::BannedFromChan
            | Numeric::BadChannelKey
            | Numeric::NeedReggedNick => {
                if let Some(channel) = params.get(1) {
                    let reason = params.last().cloned().unwrap_or_default();
                    JoinRefused {
                        channel,
                        reason: &reason,
                    }
                    .emit(&self.ctx.sink);
                    lock(&self.link.state)
                        .join_refused
                        .insert(fold_case(channel), reason);
                    self.link.joins.notify_waiters();
                    self.schedule_rejoin(
                        channel.clone(),
                        self.shared.cfg.rejoin_delay.max(Duration::from_secs(30)),
                    );
                }
            }
            // No such nick / channel, cannot send to channel: the delivery waiting for its echo
            // fails now instead of timing out. Refused while joined (moderated, colours
            // forbidden) is permanent; not being in the channel is retried after the rejoin.
            Numeric::NoSuchNick | Numeric::NoSuchChannel | Numeric::CannotSendToChan => {
                if let Some(target) = params.get(1).cloned() {
                    let folded = fold_case(&target);
                    let reason = params.last().cloned().unwrap_or_default();
                    MessageRefused {
                        target: &target,
                        reason: &reason,
                    }
                    .emit(&self.ctx.sink);
                    let label = self.label_of(tags);
                    let mut state = lock(&self.link.state);
                    let error = if numeric == Numeric::CannotSendToChan
                        && !state.joined.contains_key(&folded)
                    {
                        EchoError::NotJoined { target, reason }
                    } else {
                        EchoError::Refused { target, reason }
                    };
                    state.refuse(label.as_deref(), &folded, error);
                }
            }
            // Our displayed host changed.
            Numeric::HostHidden => {
                if let Some(host) = params.get(1) {
                    lock(&self.link.state).me.host = Some(host.clone());
                }
            }
            _ => {}
        }
    }

    fn on_registered(&mut self, nick: String, params: &[String]) {
        let cfg = &self.shared.cfg;
        self.registered = true;
        info!(account = %self.ctx.account, "registered as {nick}");
        {
            let mut state = lock(&self.link.state);
            state.me.nick = nick.clone();
            state.caps = self.reg.enabled_caps().clone();
            // RPL_WELCOME often ends with our full mask.
            if let Some(mask) = params.last().and_then(|t| t.rsplit(' ').next())
                && let Some((_, host)) = mask.split_once('@')
            {
                state.me.host = Some(host.to_owned());
            }
        }
        if let Some(password) = self.reg.nickserv_password() {
            self.send(format!(
                "PRIVMSG NickServ :IDENTIFY {} {password}",
                cfg.nick
            ));
        }
        for line in &cfg.on_connect {
            self.send(line.replace("$nick", &nick));
        }
        for channel in &cfg.channels {
            self.join(&channel.name);
        }
        let configured: Vec<String> = cfg.channels.iter().map(|c| fold_case(&c.name)).collect();
        let extra: Vec<String> = lock(&self.shared.rooms)
            .iter()
            .filter(|(folded, _)| !configured.contains(folded))
            .map(|(_, name)| name.clone())
            .collect();
        for channel in extra {
            self.join(&channel);
        }
        *lock(&self.shared.link) = Some(self.link.clone());
        self.ctx.state.up();
    }

    fn schedule_rejoin(&self, channel: String, delay: Duration) {
        let tx = self.rejoin_tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send(channel);
        });
    }
}
