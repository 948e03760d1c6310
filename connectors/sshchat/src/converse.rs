//! One room session's conversation with the server, as a state machine. Pure: no I/O, and no
//! clock of its own (the session passes in when it wrote a line).
//!
//! The session's loop hands it what it reads ([`Conversation::on_data`]) and the timers it
//! asked for ([`Conversation::on_quiet`], [`Conversation::on_entry_timeout`]), and acts on
//! the [`Step`]s it returns: type a line, take on a name, open the room for deliveries, emit
//! an event, end the session. Everything the session types of its own accord (the answer to
//! Devzat's name prompt, `cd #room`) is a [`Step::Type`] and never a delivery; the server's
//! broadcast of it comes back from one of our own names and is never emitted.
//!
//! What the session wrote and the server has not shown yet is an [`Unshown`]: the server's
//! [`Step::Shown`], [`Step::TooLong`] and [`Step::RateLimited`] are each about its oldest line.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use crate::dialect::{DEVZAT_NAME_MAX, Dialect};
use crate::parse::{Line, LineParser};
use crate::screen::Screen;
use crate::send::Write;

/// What the session must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Type this command of our own (`cd #room`): not a delivery, never relayed. The server
    /// broadcasts it like any line, so its [`Step::Shown`] comes back too.
    Type(String),
    /// Answer Devzat's name prompt with this name (nothing is broadcast).
    Answer(String),
    /// The session goes by this name now: it is one of the account's own.
    Named(String),
    /// The session is in its room: deliveries may be written.
    InRoom,
    /// `cd` was typed: arm the entry timer.
    AwaitEntry,
    /// Something that happened in the room, for the gateway (own names not filtered yet).
    Emit(Line),
    /// The server showed the oldest line we wrote and it has not confirmed yet.
    Shown,
    /// The server refused the oldest line not yet confirmed for its rate: resend it, slow down.
    RateLimited,
    /// The server refused the oldest line not yet confirmed as too long.
    TooLong,
    /// End the session and try again later.
    Retry(String),
}

/// Where the session stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Logged in, waiting for our own join (everything before it is history).
    Joining,
    /// `cd #room` typed, waiting for our arrival there.
    Entering,
    /// In the room.
    InRoom,
}

/// Most names tried at Devzat's name prompt before the session gives up.
const NAME_ATTEMPTS: u32 = 20;

#[derive(Debug)]
pub struct Conversation {
    dialect: Dialect,
    room: String,
    nick: String,
    screen: Screen,
    parser: LineParser,
    phase: Phase,
    name_attempt: u32,
    /// A Devzat message may continue on the next line: release it after a moment of quiet.
    quiet_pending: bool,
}

impl Conversation {
    pub fn new(dialect: Dialect, room: &str, nick: &str) -> Self {
        Conversation {
            dialect,
            room: room.to_owned(),
            nick: nick.to_owned(),
            screen: Screen::new(),
            parser: LineParser::new(dialect, nick),
            phase: Phase::Joining,
            name_attempt: 0,
            quiet_pending: false,
        }
    }

    /// True once deliveries may be written.
    pub fn in_room(&self) -> bool {
        self.phase == Phase::InRoom
    }

    /// True while a held-back message waits for a moment of quiet ([`Self::on_quiet`]).
    pub fn wants_quiet_timer(&self) -> bool {
        self.quiet_pending
    }

    pub fn awaiting_entry(&self) -> bool {
        self.phase == Phase::Entering
    }

    pub fn name(&self) -> &str {
        self.parser.name()
    }

    /// Why the session ended when the server closed it: with the server's last words, when
    /// the unfinished last line holds any.
    pub fn closed_reason(&self) -> String {
        let last = self.screen.partial();
        if last.trim().is_empty() {
            "the server closed the session".to_owned()
        } else {
            format!("the server closed the session: {}", last.trim())
        }
    }

    /// Bytes from the server.
    pub fn on_data(&mut self, bytes: &[u8]) -> Vec<Step> {
        let mut lines = Vec::new();
        for line in self.screen.feed(bytes) {
            lines.extend(self.parser.push(&line));
        }
        // A redrawn prompt after the lines means the server finished a write; without one,
        // wait a moment for continuation lines of a held-back message.
        if self.screen.partial().is_empty() {
            self.quiet_pending = true;
        } else {
            lines.extend(self.parser.flush());
            self.quiet_pending = false;
        }
        self.after(lines)
    }

    /// The quiet timer fired: release a held-back message.
    pub fn on_quiet(&mut self) -> Vec<Step> {
        self.quiet_pending = false;
        let lines = self.parser.flush();
        self.after(lines)
    }

    /// No arrival was announced after `cd`: assume we are in the room.
    pub fn on_entry_timeout(&mut self) -> Vec<Step> {
        if self.phase != Phase::Entering {
            return Vec::new();
        }
        tracing::warn!(room = %self.room, "no arrival announced after `cd`; assuming the room was entered (if lines from this room never arrive, check that `rooms` names a room the server has)");
        self.phase = Phase::InRoom;
        vec![Step::InRoom]
    }

    fn after(&mut self, lines: Vec<Line>) -> Vec<Step> {
        let mut steps = Vec::new();
        // Our join was announced: take the name, and move to the room.
        if self.parser.is_live() && self.phase == Phase::Joining {
            steps.push(Step::Named(self.parser.name().to_owned()));
            if self.room == "#main" || self.dialect == Dialect::SshChat {
                self.phase = Phase::InRoom;
                steps.push(Step::InRoom);
            } else {
                self.phase = Phase::Entering;
                steps.push(Step::Type(format!("cd {}", self.room)));
                steps.push(Step::AwaitEntry);
            }
        }
        for line in lines {
            match line {
                Line::NamePrompt => {
                    self.name_attempt += 1;
                    if self.name_attempt > NAME_ATTEMPTS {
                        steps.push(Step::Retry("the server refused every name tried".into()));
                        return steps;
                    }
                    let name = alternative_name(&self.nick, self.name_attempt);
                    tracing::info!(room = %self.room, %name, "name taken; answering the prompt");
                    self.parser.rename(&name);
                    steps.push(Step::Named(name.clone()));
                    steps.push(Step::Answer(name));
                }
                // Devzat announces our arrival in the new room: lines after it belong to it.
                Line::Entered { room } if self.phase == Phase::Entering && room == self.room => {
                    self.phase = Phase::InRoom;
                    steps.push(Step::InRoom);
                }
                Line::Own { redraw: true, .. } => steps.push(Step::Shown),
                Line::Entered { .. } | Line::Own { .. } | Line::Blank | Line::Timestamp => {}
                Line::RateLimited => steps.push(Step::RateLimited),
                Line::TooLong => steps.push(Step::TooLong),
                Line::System { text } => {
                    if text.contains("spam") || text.contains("banned") {
                        tracing::warn!(room = %self.room, %text, "anti-spam notice from the server; the bridge slows down on its own: if it repeats, lower the rate of the routes into this room or raise the server's limits");
                    } else {
                        tracing::debug!(room = %self.room, %text, "system line");
                    }
                }
                other if self.phase == Phase::InRoom => steps.push(Step::Emit(other)),
                _ => {}
            }
        }
        steps
    }
}

/// How long the server may take to show a line we wrote before the session is given up as
/// stuck (its deliveries go back to the outbox).
pub const SHOW_WAIT: Duration = Duration::from_secs(20);

/// The lines a session wrote that the server has not shown yet, oldest first.
///
/// Both servers show our lines back one copy per line and in order ([`Step::Shown`]), so each
/// copy confirms the oldest line here: a write of deliveries is answered then
/// ([`Write::written`]), a command of our own is only counted. Lines not shown when the
/// session ends are dropped with it, and their deliveries go back to the outbox (see
/// [`Write`]).
#[derive(Default)]
pub struct Unshown {
    /// When each line was written, and the deliveries it carries (`None`: a command of ours).
    lines: VecDeque<(Instant, Option<Write>)>,
    /// ssh-chat: the text of the line confirmed last, which its rate-limit refusal is about.
    last_shown: Option<String>,
}

impl Unshown {
    /// A command of our own ([`Step::Type`]) was written at `at`.
    pub fn typed(&mut self, at: Instant) {
        self.lines.push_back((at, None));
    }

    /// A write of deliveries was written at `at`.
    pub fn wrote(&mut self, at: Instant, write: Write) {
        self.lines.push_back((at, Some(write)));
    }

    /// [`Step::Shown`]: the oldest line was shown, and its deliveries are answered. False when
    /// no line waits (the server showed one this session did not write).
    pub fn shown(&mut self) -> bool {
        match self.lines.pop_front() {
            Some((_, Some(done))) => {
                self.last_shown = Some(done.text.clone());
                done.written();
                true
            }
            Some((_, None)) => true,
            None => false,
        }
    }

    /// [`Step::TooLong`]: the server refused the oldest line for good; its deliveries are dead
    /// letters.
    pub fn too_long(&mut self) {
        if let Some((_, Some(refused))) = self.lines.pop_front() {
            refused.refused("the server refused the line as too long");
        }
    }

    /// [`Step::RateLimited`]: the line to write again, if any. ssh-chat refuses after the echo
    /// that confirmed the line, so it is the one shown last, and its delivery was answered: the
    /// one case where a line lives only in memory (the pacing keeps it rare).
    pub fn rate_limited(&mut self) -> Option<String> {
        self.last_shown.take()
    }

    /// When the oldest line has waited [`SHOW_WAIT`]: the session is stuck then.
    pub fn overdue_at(&self) -> Option<Instant> {
        self.lines.front().map(|(at, _)| *at + SHOW_WAIT)
    }

    /// True when no delivery waits to be shown (commands of ours may): a stopping session
    /// may disconnect without sending anything twice.
    pub fn settled(&self) -> bool {
        self.lines.iter().all(|(_, write)| write.is_none())
    }

    /// How many lines wait to be shown (for logs).
    pub fn waiting(&self) -> usize {
        self.lines.len()
    }
}

/// The name to offer when `nick` is taken: `nick1`, `nick2`, ... cut to Devzat's 27 characters.
fn alternative_name(nick: &str, attempt: u32) -> String {
    let suffix = attempt.to_string();
    let keep = DEVZAT_NAME_MAX.saturating_sub(suffix.len());
    let base: String = nick.chars().take(keep).collect();
    format!("{base}{suffix}")
}

#[cfg(test)]
mod tests {
    use patchbay_sdk::DeliveryError;
    use tokio::sync::oneshot;

    use super::*;
    use crate::send::{Answer, Merge, SendQueue};

    #[test]
    fn alternative_names_stay_within_the_limit() {
        assert_eq!(alternative_name("bot", 1), "bot1");
        let long = "x".repeat(27);
        assert_eq!(alternative_name(&long, 12).len(), 27);
    }

    /// What the real Devzat shows a bot that logs in while `bridge` is taken, answers the
    /// prompt, and moves to `#dev` (its `cd #dev` is broadcast like any line).
    #[test]
    fn devzat_login_answers_the_prompt_then_types_cd_and_enters_the_room() {
        let mut c = Conversation::new(Dialect::Devzat, "#dev", "bridge");
        let steps = c.on_data(b"Your username is already in use. Pick a different one:\r\n> ");
        assert_eq!(
            steps,
            [
                Step::Named("bridge1".into()),
                Step::Answer("bridge1".into())
            ]
        );
        let steps = c.on_data(
            b"\x1b[H\x1b[2J  < 1m earlier\r\nalice: old\r\n --> bridge1 has joined the chat\x07\r\nbridge1: ",
        );
        assert_eq!(
            steps,
            [
                Step::Named("bridge1".into()),
                Step::Type("cd #dev".into()),
                Step::AwaitEntry
            ]
        );
        assert!(c.awaiting_entry());
        let steps = c.on_data(
            b"bridge1: cd #dev\r\n\x1b[A\x1b[2Kbridge1: cd #dev\r\n --> bridge1 has joined #dev\x07\r\nbridge1: ",
        );
        assert_eq!(steps, [Step::Shown, Step::InRoom]);
        let mut steps = c.on_data(b"\x1b[9D\x1b[Kdave: hi\r\nbridge1: ");
        steps.extend(c.on_quiet());
        assert_eq!(
            steps,
            [Step::Emit(Line::Message {
                from: "dave".into(),
                text: "hi".into()
            })]
        );
    }

    #[test]
    fn nothing_before_the_room_is_entered_is_emitted_and_the_timeout_opens_it() {
        let mut c = Conversation::new(Dialect::Devzat, "#dev", "bridge");
        c.on_data(b" --> bridge has joined the chat\r\nbridge: ");
        let mut steps = c.on_data(b"\x1b[8D\x1b[Kalice: still in main\r\nbridge: ");
        steps.extend(c.on_quiet());
        assert!(steps.is_empty(), "{steps:?}");
        assert_eq!(c.on_entry_timeout(), [Step::InRoom]);
        assert!(c.on_entry_timeout().is_empty());
    }

    #[test]
    fn a_twenty_first_name_prompt_ends_the_session() {
        let mut c = Conversation::new(Dialect::Devzat, "#main", "bridge");
        let prompt = b"Your username is already in use. Pick a different one:\r\n> ";
        for _ in 0..NAME_ATTEMPTS {
            assert!(
                !c.on_data(prompt)
                    .iter()
                    .any(|s| matches!(s, Step::Retry(_)))
            );
        }
        assert!(matches!(c.on_data(prompt).last(), Some(Step::Retry(_))));
    }
    #[test]
    fn a_closed_session_says_the_servers_last_words() {
        let mut c = Conversation::new(Dialect::SshChat, "#main", "bridge");
        assert_eq!(c.closed_reason(), "the server closed the session");
        c.on_data(b"welcome\r\n  Kicked: flooding ");
        assert_eq!(
            c.closed_reason(),
            "the server closed the session: Kicked: flooding"
        );
    }

    /// Writes of the deliveries `texts`, one line each, and what each delivery waits for.
    fn writes(texts: &[&str]) -> (Vec<Write>, Vec<oneshot::Receiver<Answer>>) {
        let mut queue = SendQueue::default();
        queue.open();
        let run = texts.iter().map(|t| vec![t.to_string()]).collect();
        let (_, waits) = queue.push("#main", run).expect("queued");
        let merge = Merge {
            separator: " | ",
            budget: 100,
        };
        let writes = texts
            .iter()
            .map(|_| queue.take(texts.len(), merge).expect("a write"))
            .collect();
        (writes, waits.into_iter().flatten().collect())
    }

    #[test]
    fn each_line_shown_answers_the_oldest_write_and_own_commands_answer_nothing() {
        let (writes, mut waits) = writes(&["one", "two"]);
        let t0 = Instant::now();
        let mut unshown = Unshown::default();
        unshown.typed(t0);
        for (i, write) in writes.into_iter().enumerate() {
            unshown.wrote(t0 + Duration::from_secs(i as u64 + 1), write);
        }
        assert_eq!(unshown.overdue_at(), Some(t0 + SHOW_WAIT));
        assert!(unshown.shown(), "our `cd` shown");
        assert!(
            waits[0].try_recv().is_err(),
            "a command answers no delivery"
        );
        assert_eq!(
            unshown.overdue_at(),
            Some(t0 + Duration::from_secs(1) + SHOW_WAIT)
        );
        assert!(unshown.shown());
        assert_eq!(waits[0].try_recv().expect("answered"), Ok(()));
        assert!(waits[1].try_recv().is_err(), "`two` is not shown yet");
        assert!(!unshown.settled());
        assert!(unshown.shown());
        assert_eq!(waits[1].try_recv().expect("answered"), Ok(()));
        assert!(unshown.settled());
        assert_eq!(unshown.overdue_at(), None);
        assert!(!unshown.shown(), "nothing left to show");
    }

    #[test]
    fn a_line_refused_as_too_long_is_a_dead_letter_and_the_next_still_waits() {
        let (writes, mut waits) = writes(&["long", "short"]);
        let mut unshown = Unshown::default();
        for write in writes {
            unshown.wrote(Instant::now(), write);
        }
        unshown.too_long();
        assert!(matches!(
            waits[0].try_recv(),
            Ok(Err(DeliveryError::Permanent { .. }))
        ));
        assert!(waits[1].try_recv().is_err());
        assert_eq!(unshown.waiting(), 1);
    }

    #[test]
    fn a_rate_limit_refusal_resends_the_line_shown_last_once() {
        let (writes, _waits) = writes(&["hello"]);
        let mut unshown = Unshown::default();
        assert_eq!(unshown.rate_limited(), None);
        for write in writes {
            unshown.wrote(Instant::now(), write);
        }
        unshown.shown();
        assert_eq!(unshown.rate_limited().as_deref(), Some("hello"));
        assert_eq!(unshown.rate_limited(), None);
    }

    #[test]
    fn a_stopping_session_waits_only_for_deliveries_and_unanswered_ones_retry() {
        let (writes, mut waits) = writes(&["one"]);
        let mut unshown = Unshown::default();
        unshown.typed(Instant::now());
        assert!(unshown.settled(), "only our own command is unshown");
        for write in writes {
            unshown.wrote(Instant::now(), write);
        }
        assert!(!unshown.settled());
        drop(unshown);
        assert!(matches!(
            waits[0].try_recv(),
            Ok(Err(DeliveryError::Retryable { .. }))
        ));
    }
}
