//! The bot as an SSH chat user: one session per room, deliveries answered once written.
//!
//! Each mirrored room has its own [`RoomSession`] that connects, authenticates, answers
//! Devzat's in-band name prompt, waits for its own join announcement (everything before it is
//! history), moves to its room (`cd #room`) and then reads lines and writes deliveries. A
//! dropped connection is retried with backoff, and all sessions of the account share one join
//! gate so reconnects never trip Devzat's join-rate ban.
//!
//! Deliveries of a room come in runs ([`SshMode::deliver_run`]): the run goes into the room's
//! [`SendQueue`], the session writes it under the server's line-rate limit (merging a burst
//! into multi-line messages when more waits than the limit lets through), and the run returns
//! as soon as a write carrying its first deliveries is done, with `Ok` for exactly the
//! deliveries written; what was not begun goes back to the gateway, which offers it again
//! with whatever came in meanwhile. Nothing is acknowledged while it is only in memory.
//!
//! The names the sessions go by are the account's own ([`OwnNames`]): their lines are never
//! emitted, and they are announced to the gateway (network `devzat@HOST:PORT` or
//! `ssh-chat@HOST:PORT`) so that another account of the gateway on the same server (the
//! plugin API) drops them too: the bot's `cd #room`, broadcast by Devzat like any line, is
//! never relayed.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use patchbay_sdk::{ConnectorContext, ConnectorError, Delivered, Delivery, DeliveryError};

use crate::config::Config;
use crate::dialect::Dialect;
use crate::keys::{self, HostKeyPolicy};
use crate::pacing::JoinGate;
use crate::render;
use crate::send::Answer;
use crate::session::RoomSession;
use crate::state::{OwnNames, RoomQueue};

/// Most deliveries taken in one run: a burst this long merges into a few lines on either
/// server, and an outbox that holds more hands them over in the next run.
pub const RUN_LIMIT: usize = 64;

pub struct SshMode {
    config: Arc<Config>,
    rooms: HashMap<String, Arc<RoomQueue>>,
    names: Arc<OwnNames>,
}

impl SshMode {
    pub fn new(config: Arc<Config>) -> Self {
        let rooms = config
            .rooms
            .iter()
            .map(|room| (room.clone(), Arc::new(RoomQueue::default())))
            .collect();
        let names = Arc::new(OwnNames::new(config.network()));
        SshMode {
            config,
            rooms,
            names,
        }
    }

    pub async fn run(&self, ctx: ConnectorContext) -> Result<(), ConnectorError> {
        let key = if self.config.anonymous {
            None
        } else {
            let path = self.config.key_file.clone();
            let key = tokio::task::spawn_blocking(move || keys::load_or_generate(&path))
                .await
                .map_err(|err| ConnectorError::with_source("key task failed", err))?
                .map_err(|err| ConnectorError::new(err.to_string()))?;
            Some(Arc::new(key))
        };
        let policy = match &self.config.host_key {
            Some(pinned) => HostKeyPolicy::Pinned(pinned.clone()),
            None => HostKeyPolicy::FirstUse(self.config.known_host_file.clone()),
        };
        let gate = JoinGate::for_server(&self.config.server);
        let live_rooms = Arc::new(AtomicUsize::new(0));
        let emitter = crate::emitter::Emitter::spawn(ctx.sink.clone());
        let mut tasks = tokio::task::JoinSet::new();
        // In the config's order: the sessions log in one at a time, first come first served.
        for room in &self.config.rooms {
            let Some(queue) = self.rooms.get(room) else {
                continue;
            };
            let session = RoomSession {
                config: self.config.clone(),
                room: room.clone(),
                queue: queue.clone(),
                names: self.names.clone(),
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
                    ctx.state.down(err.to_string());
                    tasks.abort_all();
                    return Err(err);
                }
                Err(err) if err.is_cancelled() => {}
                Err(err) => {
                    tasks.abort_all();
                    return Err(ConnectorError::with_source("room session crashed", err));
                }
            }
        }
        Ok(())
    }

    /// The lines to type for one delivery (none for kinds a plain chat cannot show).
    fn lines(&self, delivery: &Delivery) -> Vec<String> {
        let Some(mut out) = render::outgoing(delivery, self.config.dialect == Dialect::Devzat)
        else {
            return Vec::new();
        };
        if !self.config.hop_trace {
            out.trailer.clear();
        }
        match self.config.dialect {
            Dialect::Devzat => render::devzat_lines(
                &out,
                render::devzat_budget(self.config.pty_width, &self.config.nick),
            ),
            Dialect::SshChat => render::ssh_chat_lines(&out),
        }
    }

    /// Deliver a run of one room's deliveries: `Ok` for each one written, in order, returned
    /// once the first write carrying some of them is done (see the module doc).
    pub async fn deliver_run(&self, run: Vec<Delivery>) -> Vec<Result<Delivered, DeliveryError>> {
        let Some(room) = run.first().map(|d| d.room.clone()) else {
            return Vec::new();
        };
        let Some(queue) = self.rooms.get(&room) else {
            return vec![Err(DeliveryError::permanent(format!(
                "{room} is not in this account's `rooms`, so the bot has no session there"
            )))];
        };
        // A run is one room's; should another room's delivery come along, it waits for the
        // next run.
        let rendered: Vec<Vec<String>> = run
            .iter()
            .take_while(|d| d.room == room)
            .map(|d| self.lines(d))
            .collect();
        let pushed = queue.lock().push(&room, rendered);
        let (id, waits) = match pushed {
            Ok(pushed) => pushed,
            Err(err) => return vec![Err(err)],
        };
        queue.notify.notify_one();
        let mut withdraw = Withdraw {
            queue,
            id,
            done: false,
        };
        let mut results = Vec::with_capacity(waits.len());
        for wait in waits {
            let Some(wait) = wait else {
                // Nothing to show (a delete, a reaction): done, nothing written.
                results.push(Ok(Delivered::default()));
                continue;
            };
            let answer: Option<Answer> = wait.await.ok();
            match answer {
                Some(Ok(())) => {
                    results.push(Ok(Delivered::default()));
                    // Something was written: hand back what was not begun, so the gateway
                    // acknowledges this much now and offers the rest with what came since.
                    withdraw.now();
                }
                Some(Err(err)) => {
                    results.push(Err(err));
                    break;
                }
                // Withdrawn: the gateway offers it again.
                None => break,
            }
        }
        results
    }
}

/// Takes a run's deliveries not yet begun out of the queue: once something of the run was
/// written, and whenever `deliver_run` ends early (the gateway gave up waiting), so nothing
/// the gateway will offer again is also written later.
struct Withdraw<'a> {
    queue: &'a RoomQueue,
    id: u64,
    done: bool,
}

impl Withdraw<'_> {
    fn now(&mut self) {
        if !self.done {
            self.queue.lock().withdraw(self.id);
            self.done = true;
        }
    }
}

impl Drop for Withdraw<'_> {
    fn drop(&mut self) {
        self.now();
    }
}
