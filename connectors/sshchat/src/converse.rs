//! One room session's conversation with the server, as a state machine. Pure: no I/O, no
//! clock.
//!
//! The session's loop hands it what it reads ([`Conversation::on_data`]) and the timers it
//! asked for ([`Conversation::on_quiet`], [`Conversation::on_entry_timeout`]), and acts on
//! the [`Step`]s it returns: type a line, take on a name, open the room for deliveries, emit
//! an event, end the session. Everything the session types of its own accord (the answer to
//! Devzat's name prompt, `cd #room`) is a [`Step::Type`] and never a delivery; the server's
//! broadcast of it comes back from one of our own names and is never emitted.

use crate::dialect::{DEVZAT_NAME_MAX, Dialect};
use crate::parse::{Line, LineParser};
use crate::screen::Screen;

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

    /// The unfinished last line (a prompt, or the server's last words before closing).
    pub fn partial(&self) -> String {
        self.screen.partial()
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
        tracing::warn!(room = %self.room, "no arrival announced after `cd`; assuming the room was entered");
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
                        tracing::warn!(room = %self.room, %text, "anti-spam notice from the server");
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

/// The name to offer when `nick` is taken: `nick1`, `nick2`, ... cut to Devzat's 27 characters.
fn alternative_name(nick: &str, attempt: u32) -> String {
    let suffix = attempt.to_string();
    let keep = DEVZAT_NAME_MAX.saturating_sub(suffix.len());
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
}
