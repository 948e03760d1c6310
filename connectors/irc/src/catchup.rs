//! Paging through `CHATHISTORY AFTER` until the present (pure).
//!
//! After our own JOIN of a channel with a history mark, the session asks the server for what
//! was said after the mark, one page at a time: the first page from the mark's server-time (or
//! from `catch_up_max_age` ago, if the mark is older), each next page from the newest
//! replayed message (by msgid where the server takes msgid references, which is exact, else
//! by its time; a time reference starts a millisecond early, see [`first_reference`]), until
//! the server ends the pagination (an empty batch, or ergo's `draft/chathistory-end`).
//!
//! Guarantees, for the caller that follows the protocol below:
//! - **Order**: live lines of a channel that arrive while its catch-up runs are *held* and
//!   handed back only when the catch-up ends, after every replayed line; so a channel's events
//!   are relayed in the server's order, and a live line never moves the history mark past
//!   replayed lines not yet relayed.
//! - **Once**: a held line that the replay already carried (same msgid) is not handed back.
//! - **Bounded**: pages are as large as the server allows (ISUPPORT `CHATHISTORY=N`), the start
//!   is never older than the configured maximum age, a page that does not move the reference
//!   forward ends the catch-up, and a request the server never answers ends it after
//!   [`PAGE_TIMEOUT`].
//!
//! Protocol for the caller: [`CatchUps::start`] on our JOIN (send the line it returns);
//! [`CatchUps::batch_started`] / [`CatchUps::batch_ended`] on `BATCH +/-`; [`CatchUps::replayed`]
//! for each line inside a history batch; [`CatchUps::hold`] for live lines of a channel that
//! [`CatchUps::is_active`]; [`CatchUps::abort`] when the gateway refuses an event;
//! [`CatchUps::expired`] now and then.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use patchbay_sdk::Timestamp;

use crate::parse::{IrcEvent, Source, fold_case};
use crate::time::format_server_time;

/// How long a page request may go unanswered before the catch-up gives up and releases the
/// held live lines (the server may not know the command or may have answered `FAIL`).
pub const PAGE_TIMEOUT: Duration = Duration::from_secs(10);

/// The page size when the server does not advertise one (`CHATHISTORY=0` means "no limit";
/// asking for 100 at a time keeps each batch small either way).
pub const DEFAULT_PAGE: usize = 100;

/// What the server said about history in ISUPPORT (`005`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Isupport {
    /// `CHATHISTORY=N` / `draft/CHATHISTORY=N`: the most messages one request returns.
    pub chathistory: Option<usize>,
    /// `MSGREFTYPES=...`: the reference kinds the server takes; `None` if not advertised.
    pub msgref_types: Option<Vec<String>>,
}

impl Isupport {
    /// Read the tokens of one `005` line (the parameters between our nick and the trailing
    /// "are supported" text). Unknown or malformed tokens are ignored.
    pub fn apply(&mut self, tokens: &[String]) {
        for token in tokens {
            let (key, value) = token.split_once('=').unwrap_or((token, ""));
            match key.to_ascii_uppercase().as_str() {
                "CHATHISTORY" | "DRAFT/CHATHISTORY" => {
                    if let Ok(n) = value.parse::<usize>() {
                        self.chathistory = Some(n);
                    }
                }
                "MSGREFTYPES" => {
                    self.msgref_types = Some(
                        value
                            .split(',')
                            .filter(|s| !s.is_empty())
                            .map(|s| s.to_ascii_lowercase())
                            .collect(),
                    );
                }
                _ => {}
            }
        }
    }

    /// Messages per page: the server's limit, or [`DEFAULT_PAGE`] when it gave none.
    pub fn page_size(&self) -> usize {
        match self.chathistory {
            Some(n) if n > 0 => n,
            _ => DEFAULT_PAGE,
        }
    }

    /// Whether `msgid=` references may be used (advertised, or nothing advertised).
    pub fn takes_msgid(&self) -> bool {
        self.msgref_types
            .as_ref()
            .is_none_or(|types| types.iter().any(|t| t == "msgid"))
    }
}

/// Where a page starts: after this message, or after this server-time (ms).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reference {
    Msgid(String),
    Time(i64),
}

impl Reference {
    fn param(&self) -> String {
        match self {
            Reference::Msgid(id) => format!("msgid={id}"),
            Reference::Time(t) => format!("timestamp={}", format_server_time(Timestamp(*t))),
        }
    }
}

/// The `CHATHISTORY AFTER` line for one page.
pub fn request(channel: &str, after: &Reference, limit: usize) -> String {
    format!("CHATHISTORY AFTER {channel} {} {limit}", after.param())
}

/// The first page's start: just before the mark's millisecond, unless that is older than
/// `max_age` before `now_ms`. `AFTER timestamp=T` leaves out all of T's millisecond (ergo rounds
/// it up), and server-times have millisecond precision, so lines said in the same millisecond
/// as the last one relayed would be lost; asking from the millisecond before brings them,
/// and the ones already relayed are known by msgid ([`crate::history`]).
pub fn first_reference(mark_ms: i64, now_ms: i64, max_age: Duration) -> Reference {
    let age = i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX);
    Reference::Time(mark_ms.saturating_sub(1).max(now_ms.saturating_sub(age)))
}

/// Whether a msgid can be used as a reference. ergo gives history lines it made up itself
/// (joins and quits turned into HistServ messages) an id with a leading `_` that it cannot
/// look up again.
fn usable_msgid(id: &str) -> bool {
    !id.is_empty() && !id.starts_with('_')
}

/// One channel's catch-up in progress.
#[derive(Debug)]
struct CatchUp<T> {
    /// The channel as the server spells it (for the next request).
    channel: String,
    page_size: usize,
    takes_msgid: bool,
    /// The reference the last request started from.
    after: Reference,
    /// The open batch of the current page, once the server started it.
    batch: Option<String>,
    /// The server marked this page as the last (`draft/chathistory-end`).
    last_page: bool,
    /// Lines in the current page.
    items: usize,
    /// The newest usable msgid and the newest time seen in the current page.
    newest_id: Option<String>,
    newest_time: Option<i64>,
    /// msgids replayed during this catch-up, so held live copies are not relayed again.
    replayed_ids: HashSet<String>,
    held: Vec<(Option<String>, T)>,
    deadline: Instant,
}

/// What to do when a history batch ends.
#[derive(Debug, PartialEq, Eq)]
pub enum PageEnd<T> {
    /// Not a catch-up batch (InspIRCd's replay on join, an unrelated batch).
    Unrelated,
    /// Ask for the next page with this line.
    Next(String),
    /// Caught up: relay these held live lines (of `channel`) now, in order.
    Done { channel: String, held: Vec<T> },
}

/// Every channel's catch-up, by folded channel name. `T` is whatever the caller holds for a
/// live line (the parsed line and its event).
#[derive(Debug)]
pub struct CatchUps<T> {
    active: HashMap<String, CatchUp<T>>,
    /// Open history batches: reference → folded channel.
    batches: HashMap<String, String>,
}

impl<T> Default for CatchUps<T> {
    fn default() -> Self {
        CatchUps {
            active: HashMap::new(),
            batches: HashMap::new(),
        }
    }
}

impl<T> CatchUps<T> {
    /// Start catching up `channel` from `after`; returns the first request line. `early` are
    /// live lines of the channel that came before our own JOIN (servers may send a channel's
    /// traffic a moment before the JOIN itself): they are held like later ones. A catch-up
    /// already running for the channel (a rejoin) is replaced; its held lines are returned,
    /// to be relayed before anything else.
    pub fn start(
        &mut self,
        channel: &str,
        after: Reference,
        isupport: &Isupport,
        now: Instant,
        early: Vec<(Option<String>, T)>,
    ) -> (String, Vec<T>) {
        let page_size = isupport.page_size();
        let line = request(channel, &after, page_size);
        let old = self.active.insert(
            fold_case(channel),
            CatchUp {
                channel: channel.to_owned(),
                page_size,
                takes_msgid: isupport.takes_msgid(),
                after,
                batch: None,
                last_page: false,
                items: 0,
                newest_id: None,
                newest_time: None,
                replayed_ids: HashSet::new(),
                held: early,
                deadline: now + PAGE_TIMEOUT,
            },
        );
        let held = old
            .map(|c| c.held.into_iter().map(|(_, t)| t).collect())
            .unwrap_or_default();
        (line, held)
    }

    pub fn is_active(&self, channel: &str) -> bool {
        self.active.contains_key(&fold_case(channel))
    }

    /// How many catch-ups are running.
    pub fn running(&self) -> usize {
        self.active.len()
    }

    /// Keep a live line of a channel being caught up, to relay once the catch-up ends.
    /// Returns the line back when the channel is not being caught up.
    pub fn hold(&mut self, channel: &str, msgid: Option<String>, line: T) -> Option<T> {
        match self.active.get_mut(&fold_case(channel)) {
            Some(c) => {
                c.held.push((msgid, line));
                None
            }
            None => Some(line),
        }
    }

    /// `BATCH +reference chathistory target`, with whether it carried `draft/chathistory-end`.
    pub fn batch_started(&mut self, reference: &str, target: &str, end_tag: bool, now: Instant) {
        let folded = fold_case(target);
        if let Some(c) = self.active.get_mut(&folded)
            && c.batch.is_none()
        {
            c.batch = Some(reference.to_owned());
            c.last_page = end_tag;
            c.deadline = now + PAGE_TIMEOUT;
            self.batches.insert(reference.to_owned(), folded);
        }
    }

    /// A line inside history batch `reference` (counted whether or not it is relayed).
    pub fn replayed(&mut self, reference: &str, time: Option<Timestamp>, msgid: Option<&str>) {
        let Some(c) = self
            .batches
            .get(reference)
            .and_then(|f| self.active.get_mut(f))
        else {
            return;
        };
        c.items += 1;
        if let Some(t) = time {
            c.newest_time = Some(c.newest_time.map_or(t.0, |n| n.max(t.0)));
        }
        if let Some(id) = msgid {
            c.replayed_ids.insert(id.to_owned());
            if usable_msgid(id) {
                c.newest_id = Some(id.to_owned());
            }
        }
    }

    /// `BATCH -reference`: ask for the next page, or finish.
    pub fn batch_ended(&mut self, reference: &str, now: Instant) -> PageEnd<T> {
        let Some(folded) = self.batches.remove(reference) else {
            return PageEnd::Unrelated;
        };
        let Some(c) = self.active.get_mut(&folded) else {
            return PageEnd::Unrelated;
        };
        let next = if c.takes_msgid {
            c.newest_id.clone().map(Reference::Msgid)
        } else {
            None
        }
        // By time only without a usable msgid: from the millisecond before the newest line,
        // as in [`first_reference`].
        .or(c.newest_time.map(|t| Reference::Time(t.saturating_sub(1))));
        let more = !c.last_page && c.items > 0;
        match next {
            Some(next) if more && next != c.after => {
                let line = request(&c.channel, &next, c.page_size);
                c.after = next;
                c.batch = None;
                c.items = 0;
                c.newest_id = None;
                c.newest_time = None;
                c.deadline = now + PAGE_TIMEOUT;
                PageEnd::Next(line)
            }
            _ => self.finish(&folded),
        }
    }

    /// End a channel's catch-up now (the server failed the request, or the gateway refused a
    /// replayed line): the held lines, in order, minus those the replay carried.
    pub fn finish(&mut self, folded: &str) -> PageEnd<T> {
        let Some(c) = self.active.remove(folded) else {
            return PageEnd::Unrelated;
        };
        self.batches.retain(|_, f| f != folded);
        let held = c
            .held
            .into_iter()
            .filter(|(id, _)| id.as_ref().is_none_or(|id| !c.replayed_ids.contains(id)))
            .map(|(_, t)| t)
            .collect();
        PageEnd::Done {
            channel: c.channel,
            held,
        }
    }

    /// Give up on `channel` (by any spelling): see [`CatchUps::finish`].
    pub fn abort(&mut self, channel: &str) -> PageEnd<T> {
        self.finish(&fold_case(channel))
    }

    /// The catch-ups whose server has not answered in time, finished.
    pub fn expired(&mut self, now: Instant) -> Vec<PageEnd<T>> {
        let late: Vec<String> = self
            .active
            .iter()
            .filter(|(_, c)| c.deadline <= now)
            .map(|(f, _)| f.clone())
            .collect();
        late.iter().map(|f| self.finish(f)).collect()
    }

    /// Whether a line in batch `reference` belongs to a running catch-up.
    pub fn owns_batch(&self, reference: &str) -> bool {
        self.batches.contains_key(reference)
    }
}

/// What to do with a line replayed from history.
#[derive(Debug, PartialEq, Eq)]
pub enum Replay {
    /// Relay it as what it is (a message, or a join/part/quit the routes may relay).
    Relay,
    /// Server bookkeeping or our own comings and goings: never relayed.
    Drop(&'static str),
}

/// The nick ergo replays joins, parts and quits under when the client did not ask for
/// `draft/event-playback` ("alice joined the channel", "pb quit (...)").
pub const HISTSERV: &str = "HistServ";

/// Decide about one replayed line. `is_own` tells whether a nick is (or was) our bot.
pub fn replay_verdict(event: &IrcEvent, source: &Source, is_own: impl Fn(&str) -> bool) -> Replay {
    let bookkeeping = matches!(
        event,
        IrcEvent::Privmsg { .. } | IrcEvent::Notice { .. } | IrcEvent::Action { .. }
    ) && source.nick.eq_ignore_ascii_case(HISTSERV);
    if bookkeeping {
        return Replay::Drop("history bookkeeping from HistServ");
    }
    match event {
        IrcEvent::Ctcp { .. } => Replay::Drop("a CTCP request"),
        IrcEvent::Join { .. }
        | IrcEvent::Part { .. }
        | IrcEvent::Quit { .. }
        | IrcEvent::Nick { .. }
            if is_own(&source.nick) =>
        {
            Replay::Drop("our own join, part or quit")
        }
        IrcEvent::Kick { nick, .. } if is_own(nick) => Replay::Drop("our own kick"),
        _ => Replay::Relay,
    }
}

#[cfg(test)]
#[path = "catchup_tests.rs"]
mod tests;
