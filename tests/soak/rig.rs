//! The moving parts: a source per side sending numbered lines at its own pace (pausable), a
//! destination per room read back, and the waits the fault schedule synchronises on — each
//! polls what a user was shown, with a timeout, never a fixed sleep.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, OwnedMutexGuard};
use tokio_util::sync::CancellationToken;

use super::clients::{ChatUser, Http, IrcUser, MatrixUser, Seen, snapshot};
use super::tally::{self, SentLog};

/// How a side says a line.
pub enum Voice {
    Irc(Arc<IrcUser>),
    Matrix(Arc<MatrixUser>, String),
    Chat(Arc<ChatUser>),
    Hook(Arc<Http>),
    Api(Arc<Http>),
}

impl Voice {
    /// Say `text` once; whether the source accepted it (written to the server, stored by
    /// Synapse, 202 from the gateway).
    async fn say(&self, key: &str, text: &str) -> bool {
        match self {
            Voice::Irc(u) => u.say(text).await,
            Voice::Matrix(u, room) => u.say(room, key, text).await,
            Voice::Chat(u) => u.say(text).await,
            Voice::Hook(h) => h.hook(text).await,
            Voice::Api(h) => h.api(key, text).await,
        }
    }

    /// Whether a refused line is retried until accepted (the client keeps it), or given up.
    fn retries(&self) -> bool {
        matches!(self, Voice::Matrix(..) | Voice::Hook(_) | Voice::Api(_))
    }
}

/// One side's traffic.
pub struct Source {
    pub side: String,
    pub voice: Voice,
    pub every: Duration,
    pub sent: SentLog,
    /// Held by the driver for each line; whoever holds it pauses the side.
    turn: Arc<Mutex<()>>,
}

impl Source {
    pub fn new(side: &str, voice: Voice, every: Duration) -> Arc<Source> {
        Arc::new(Source {
            side: side.to_owned(),
            voice,
            every,
            sent: SentLog::default(),
            turn: Arc::new(Mutex::new(())),
        })
    }

    /// Stop this side between two lines (until the guard is dropped).
    pub async fn pause(&self) -> OwnedMutexGuard<()> {
        self.turn.clone().lock_owned().await
    }

    /// Say an uncounted line (`warm <side> <k>`), for readiness probes; it does not wait
    /// for the side's turn (a probe runs while the side is paused).
    pub async fn say_warm(&self, k: usize) -> (String, bool) {
        let text = format!("warm {} {k} end", self.side);
        let said = self
            .voice
            .say(&format!("warm-{}-{k}", self.side), &text)
            .await;
        (text, said)
    }

    /// A terminal whose session ended logs in again, as a person would.
    async fn revive(&self) {
        if let Voice::Chat(user) = &self.voice {
            eprintln!("soak: {}'s session ended; logging in again", user.name);
            user.reconnect().await;
        }
    }

    /// Send `soak <side> <n>` for n = 0, 1, ... until `stop`; `outage` marks lines said while
    /// the gateway is down.
    pub async fn drive(self: Arc<Self>, stop: CancellationToken, outage: Arc<AtomicBool>) {
        let mut n = 0u64;
        while !stop.is_cancelled() {
            {
                let _turn = self.turn.lock().await;
                if stop.is_cancelled() {
                    break;
                }
                let text = format!("soak {} {n}", self.side);
                let key = format!("soak-{}-{n}", self.side);
                loop {
                    let during = outage.load(Ordering::SeqCst);
                    if self.voice.say(&key, &text).await {
                        if let Ok(mut sent) = self.sent.lock() {
                            sent.lines.push(n);
                            if during {
                                sent.in_outage.insert(n);
                            }
                        }
                        break;
                    }
                    if !self.voice.retries() || stop.is_cancelled() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                n += 1;
            }
            tokio::time::sleep(self.every).await;
        }
    }
}

/// Where a room's shown texts come from.
pub enum Shown {
    Seen(Seen),
    Chat(Arc<ChatUser>),
    File(PathBuf),
}

impl Shown {
    pub async fn texts(&self) -> Vec<String> {
        match self {
            Shown::Seen(seen) => snapshot(seen),
            Shown::Chat(user) => user.lines().await,
            Shown::File(path) => std::fs::read_to_string(path)
                .unwrap_or_default()
                .lines()
                .map(str::to_owned)
                .collect(),
        }
    }
}

/// One destination room.
pub struct Dest {
    pub name: String,
    /// The side whose own lines this room is the source of (not relayed back to it).
    pub own: Option<String>,
    pub shown: Shown,
    /// Lines one fault may double here: one delivery per room, one run for SSH chat.
    pub per_fault: usize,
    /// Faults that touched this room (its server's restarts and stalls).
    pub faults: usize,
}

pub type Sources = BTreeMap<String, SentLog>;

pub fn sent_logs(sources: &[Arc<Source>]) -> Sources {
    sources
        .iter()
        .map(|s| (s.side.clone(), s.sent.clone()))
        .collect()
}

/// Wait until `dest` showed every line the sources had accepted so far.
pub async fn drain(dest: &Dest, sources: &[Arc<Source>], timeout: Duration) {
    let logs = sent_logs(sources);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let shown = dest.shown.texts().await;
        let missing = tally::missing(dest.own.as_deref(), &shown, &logs);
        if missing == 0 {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            let row = tally::count(&dest.name, dest.own.as_deref(), &shown, &logs);
            panic!(
                "{} still misses {missing} lines after {timeout:?}: {:?}",
                dest.name,
                row.lost_ids.iter().take(20).collect::<Vec<_>>()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Wait until `dest` showed every line the given sources had accepted (the console as the
/// witness that the gateway accepted them).
pub async fn accepted(witness: &Dest, of: &[Arc<Source>], timeout: Duration) {
    drain(witness, of, timeout).await;
}

/// Say warm lines from `source` until the witness shows one: the side is bridged end to end.
pub async fn probe(witness: &Dest, source: &Source, timeout: Duration) {
    // Unique over the whole run: a Matrix transaction id is never reused.
    static PROBES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let (text, said) = source.say_warm(PROBES.fetch_add(1, Ordering::SeqCst)).await;
        if !said {
            source.revive().await;
        }
        let round = tokio::time::Instant::now() + Duration::from_secs(4);
        while tokio::time::Instant::now() < round {
            if witness
                .shown
                .texts()
                .await
                .iter()
                .any(|l| l.contains(&text))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} never got through to {} within {timeout:?} (its last line {}; \
             PATCHBAY_SOAK_KEEP=1 keeps the gateway's log)",
            source.side,
            witness.name,
            if said {
                "was written"
            } else {
                "could not be written"
            }
        );
    }
}
