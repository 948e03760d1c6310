//! What the session does with a line that means something for the bridge: our own joins and
//! parts, channel membership, echoes of our deliveries, history replays, and handing events
//! to the gateway.
//!
//! Lines of a channel reach the gateway in the server's order. While a channel is being caught
//! up ([`crate::catchup`]), its live lines wait until every replayed page is relayed; a history
//! mark moves only over lines the gateway accepted. A replayed line is relayed as what it is
//! (a message, a join, a part) or not at all: server bookkeeping (ergo's HistServ lines) and our
//! own comings and goings never are.

use std::collections::HashSet;

use patchbay_sdk::HealthEvent;
use patchbay_sdk::sync::lock;

use tracing::{debug, info, warn};

use super::{Held, OpenBatch, Session};
use crate::catchup::{self, PageEnd, Replay};
use crate::parse::{self, IrcEvent, MsgTags, Parsed, Source, fold_case};

/// The most live lines kept per channel before our own JOIN of it arrives (normally a few).
const EARLY_MAX: usize = 1000;

impl Session<'_> {
    /// `BATCH +ref type [target]` / `BATCH -ref`.
    pub(super) async fn on_batch(&mut self, params: &[String], tags: &MsgTags) {
        let Some(reference) = params.first() else {
            return;
        };
        if let Some(id) = reference.strip_prefix('+') {
            let kind = params
                .get(1)
                .cloned()
                .unwrap_or_default()
                .to_ascii_lowercase();
            let target = params.get(2).cloned();
            if kind.contains("chathistory")
                && let Some(target) = &target
            {
                self.catchup
                    .batch_started(id, target, tags.history_end, std::time::Instant::now());
            }
            self.batches.insert(
                id.to_owned(),
                OpenBatch {
                    kind,
                    target,
                    label: tags.label.clone(),
                },
            );
        } else if let Some(id) = reference.strip_prefix('-') {
            self.batches.remove(id);
            match self.catchup.batch_ended(id, std::time::Instant::now()) {
                PageEnd::Next(line) => self.send(line),
                end => self.finish_catch_up(end).await,
            }
        }
    }

    /// A catch-up ended: relay the live lines it held, in order.
    pub(super) async fn finish_catch_up(&mut self, end: PageEnd<Held>) {
        let PageEnd::Done { channel, held } = end else {
            return;
        };
        info!(account = %self.ctx.account, "caught up {channel}; relaying {} live lines held meanwhile", held.len());
        for h in held {
            self.relay(&channel, &h.event, &h.source, &h.tags, h.from_me)
                .await;
        }
    }

    /// The open history batch this line belongs to, if any.
    fn history_batch(&self, tags: &MsgTags) -> Option<(String, &OpenBatch)> {
        let id = tags.batch.as_ref()?;
        let batch = self.batches.get(id)?;
        batch
            .kind
            .contains("chathistory")
            .then(|| (id.clone(), batch))
    }

    pub(super) async fn on_event(&mut self, parsed: &Parsed, event: IrcEvent) {
        let Some(source) = parsed.source.clone() else {
            return;
        };
        if let Some((id, batch)) = self.history_batch(&parsed.tags) {
            let target = batch.target.clone();
            self.on_replayed(parsed, &event, &source, &id, target).await;
            return;
        }
        let from_me = self.is_me(&source.nick);
        match &event {
            IrcEvent::Join { channel, .. } if from_me => {
                self.on_own_join(channel, &source, &parsed.tags).await;
                return;
            }
            IrcEvent::Part { channel, .. } if from_me => {
                self.left(channel);
                return;
            }
            IrcEvent::Kick {
                channel,
                nick,
                reason,
            } if self.is_me(nick) => {
                super::health::Kicked {
                    channel,
                    by: &source.nick,
                    reason: reason.as_deref(),
                }
                .emit(&self.ctx.sink);
                self.left(channel);
                self.schedule_rejoin(channel.clone(), self.shared.cfg.rejoin_delay);
                return;
            }
            IrcEvent::Nick { new } if from_me => {
                lock(&self.link.state).me.nick = new.clone();
            }
            _ => {}
        }
        self.track_members(&source, &event);
        // The channels this event belongs to.
        let channels: Vec<String> = match &event {
            IrcEvent::Privmsg { target, .. }
            | IrcEvent::Action { target, .. }
            | IrcEvent::Notice { target, .. } => {
                if from_me {
                    self.resolve_echo(target, parsed);
                }
                if crate::config::is_channel(target) {
                    vec![target.clone()]
                } else {
                    debug!(account = %self.ctx.account, "ignored a private message from {}", source.nick);
                    Vec::new()
                }
            }
            IrcEvent::Ctcp { command, .. } => {
                if command == "VERSION" && !from_me {
                    self.send(format!("NOTICE {} :\x01VERSION patchbay\x01", source.nick));
                }
                Vec::new()
            }
            IrcEvent::Join { channel, .. }
            | IrcEvent::Part { channel, .. }
            | IrcEvent::Kick { channel, .. }
            | IrcEvent::Topic { channel, .. } => vec![channel.clone()],
            IrcEvent::Quit { .. } | IrcEvent::Nick { .. } => self.channels_of(&source, &event),
        };
        for channel in channels {
            let held = Held {
                tags: parsed.tags.clone(),
                event: event.clone(),
                source: source.clone(),
                from_me,
            };
            let msgid = parsed.tags.msgid.clone();
            let folded = fold_case(&channel);
            if !lock(&self.link.state).joined.contains_key(&folded) {
                let early = self.early.entry(folded).or_default();
                if early.len() < EARLY_MAX {
                    early.push((msgid, held));
                }
                continue;
            }
            if let Some(h) = self.catchup.hold(&channel, msgid, held) {
                self.relay(&channel, &h.event, &h.source, &h.tags, from_me)
                    .await;
            }
        }
    }

    async fn on_own_join(&mut self, channel: &str, source: &Source, tags: &MsgTags) {
        let folded = fold_case(channel);
        {
            let mut state = lock(&self.link.state);
            state.joined.insert(folded.clone(), channel.to_owned());
            state.join_requested.remove(&folded);
            state.join_refused.remove(&folded);
            if let (Some(user), Some(host)) = (&source.user, &source.host) {
                state.me.user = user.clone();
                state.me.host = Some(host.clone());
            }
        }
        // Deliveries waiting for this join may go now.
        self.link.joins.notify_waiters();
        self.members.insert(folded, HashSet::new());
        let had_mark = self.history.mark(channel).map(|m| m.time);
        self.history.joined(channel, tags.time);
        info!(account = %self.ctx.account, "joined {channel}");
        let early = self.early.remove(&fold_case(channel)).unwrap_or_default();
        let early = self.request_history(channel, had_mark, early).await;
        for (_, h) in early {
            self.relay(channel, &h.event, &h.source, &h.tags, h.from_me)
                .await;
        }
    }

    /// A line from a history batch: relayed as what it is, or dropped when it is bookkeeping.
    async fn on_replayed(
        &mut self,
        parsed: &Parsed,
        event: &IrcEvent,
        source: &Source,
        batch: &str,
        target: Option<String>,
    ) {
        let tags = &parsed.tags;
        self.catchup
            .replayed(batch, tags.time, tags.msgid.as_deref());
        let own = self.own_nicks();
        let verdict = catchup::replay_verdict(event, source, |n| own.contains(&fold_case(n)));
        if let Replay::Drop(why) = verdict {
            debug!(account = %self.ctx.account, "dropped a replayed line ({why})");
            return;
        }
        let channel = match event {
            IrcEvent::Privmsg { target, .. }
            | IrcEvent::Action { target, .. }
            | IrcEvent::Notice { target, .. } => Some(target.clone()),
            IrcEvent::Join { channel, .. }
            | IrcEvent::Part { channel, .. }
            | IrcEvent::Kick { channel, .. }
            | IrcEvent::Topic { channel, .. } => Some(channel.clone()),
            IrcEvent::Quit { .. } | IrcEvent::Nick { .. } | IrcEvent::Ctcp { .. } => target,
        };
        let Some(channel) = channel.filter(|c| crate::config::is_channel(c)) else {
            return;
        };
        let from_me = self.is_me(&source.nick);
        if !self.relay(&channel, event, source, tags, from_me).await
            && self.catchup.is_active(&channel)
        {
            // The gateway took nothing more: stop here, so the mark stays before this line and
            // the next catch-up asks for it again.
            let end = self.catchup.abort(&channel);
            self.finish_catch_up(end).await;
        }
    }

    /// Hand an event to the gateway unless the history mark says it was relayed; the mark moves
    /// only when the gateway accepted it. Returns false when the gateway refused it.
    async fn relay(
        &mut self,
        channel: &str,
        event: &IrcEvent,
        source: &Source,
        tags: &MsgTags,
        from_me: bool,
    ) -> bool {
        if !self.history.is_new(channel, tags) {
            debug!(account = %self.ctx.account, "skipped a replayed line in {channel} (already relayed)");
            return true;
        }
        let room = self.room_of(channel);
        let Some(mut inbound) = parse::to_inbound(
            &room,
            event,
            source,
            tags,
            self.shared.cfg.render.formatting,
        ) else {
            return true;
        };
        inbound.is_echo = from_me;
        let Some(inbound) = self.gather(channel, tags, inbound) else {
            return true;
        };
        // Whatever was gathered before this line goes first.
        self.flush_burst().await;
        match self.ctx.sink.emit(inbound).await {
            Ok(_) => {
                self.history.relayed(channel, tags);
                true
            }
            Err(e) => {
                warn!(account = %self.ctx.account, "could not hand an event to the gateway: {e}; this line is not relayed (the gateway is stopping, or its store failed: see its errors)");
                false
            }
        }
    }

    /// Our nick now and every nick we may have had (history may hold our old join or quit).
    fn own_nicks(&self) -> HashSet<String> {
        let mut out: HashSet<String> = self
            .shared
            .cfg
            .nick_candidates()
            .iter()
            .map(|n| fold_case(n))
            .collect();
        out.insert(fold_case(&self.own_nick()));
        out
    }

    /// Ask for what was missed, where the server offers `draft/chathistory`: page by page
    /// with batches, or in one request without them. Returns the `early` lines when no
    /// catch-up took them (they are to be relayed now).
    async fn request_history(
        &mut self,
        channel: &str,
        mark: Option<i64>,
        early: Vec<(Option<String>, Held)>,
    ) -> Vec<(Option<String>, Held)> {
        if !self.shared.cfg.catch_up {
            return early;
        }
        let Some(mark) = mark else { return early };
        let (history, batch) = {
            let caps = &lock(&self.link.state).caps;
            (
                caps.contains("draft/chathistory") || caps.contains("chathistory"),
                caps.contains("batch"),
            )
        };
        if !history {
            return early;
        }
        let after = catchup::first_reference(
            mark,
            patchbay_sdk::Timestamp::now().0,
            self.shared.cfg.catch_up_max_age,
        );
        if !batch {
            let limit = self.isupport.page_size();
            self.send(catchup::request(channel, &after, limit));
            return early;
        }
        let (line, held) = self.catchup.start(
            channel,
            after,
            &self.isupport,
            std::time::Instant::now(),
            early,
        );
        self.send(line);
        for h in held {
            self.relay(channel, &h.event, &h.source, &h.tags, h.from_me)
                .await;
        }
        Vec::new()
    }

    pub(super) fn left(&mut self, channel: &str) {
        let folded = fold_case(channel);
        lock(&self.link.state).joined.remove(&folded);
        self.members.remove(&folded);
    }

    fn track_members(&mut self, source: &Source, event: &IrcEvent) {
        let nick = fold_case(&source.nick);
        match event {
            IrcEvent::Join { channel, .. } => {
                self.members
                    .entry(fold_case(channel))
                    .or_default()
                    .insert(nick);
            }
            IrcEvent::Part { channel, .. } => {
                if let Some(set) = self.members.get_mut(&fold_case(channel)) {
                    set.remove(&nick);
                }
            }
            IrcEvent::Kick {
                channel,
                nick: kicked,
                ..
            } => {
                if let Some(set) = self.members.get_mut(&fold_case(channel)) {
                    set.remove(&fold_case(kicked));
                }
            }
            _ => {}
        }
    }

    /// Channels where `source` was, for quits and nick changes (updating membership).
    fn channels_of(&mut self, source: &Source, event: &IrcEvent) -> Vec<String> {
        let nick = fold_case(&source.nick);
        let joined = lock(&self.link.state).joined.clone();
        let mut out = Vec::new();
        for (folded, set) in self.members.iter_mut() {
            if set.remove(&nick) {
                if let IrcEvent::Nick { new } = event {
                    set.insert(fold_case(new));
                }
                out.push(
                    joined
                        .get(folded)
                        .cloned()
                        .unwrap_or_else(|| folded.clone()),
                );
            }
        }
        out
    }

    /// The label a line answers: its own `label` tag, or that of its labeled-response batch.
    pub(super) fn label_of(&self, tags: &MsgTags) -> Option<String> {
        tags.label.clone().or_else(|| {
            tags.batch
                .as_ref()
                .and_then(|b| self.batches.get(b))
                .and_then(|b| b.label.clone())
        })
    }

    /// Our own line came back (echo-message): the waiting delivery learns its msgid.
    fn resolve_echo(&self, target: &str, parsed: &Parsed) {
        let text = match &parsed.message.command {
            irc::proto::Command::PRIVMSG(_, t) | irc::proto::Command::NOTICE(_, t) => t.clone(),
            _ => return,
        };
        let label = self.label_of(&parsed.tags);
        lock(&self.link.state).answer(
            label.as_deref(),
            &fold_case(target),
            Some(&text),
            Ok(parsed.tags.msgid.clone()),
        );
    }
}
