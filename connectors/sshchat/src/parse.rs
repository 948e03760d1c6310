//! Screen lines → what happened, for each dialect. Pure: no I/O, no clock.
//!
//! [`classify_devzat`] and [`classify_ssh_chat`] read one [`ScreenLine`] in isolation;
//! [`LineParser`] adds what needs memory: skipping the history replay at join, joining Devzat's
//! wrapped continuation lines to the message they continue, learning the name ssh-chat actually
//! gave us, and dropping our own echoes.

use crate::dialect::{DEVZAT_NAME_MAX, Dialect, SSH_CHAT_NAME_MAX};
use crate::screen::ScreenLine;

/// What one line means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    /// A public message in the room.
    Message {
        from: String,
        text: String,
    },
    /// A line from Devzat's own bot (`devbot`): server news, game moves, anti-spam warnings.
    Devbot {
        text: String,
    },
    /// An emote (`/me`), ssh-chat only.
    Emote {
        from: String,
        text: String,
    },
    Join {
        name: String,
    },
    /// Devzat: someone arrived in this room with `cd`.
    Moved {
        name: String,
        room: String,
    },
    /// Devzat: our own arrival in a room (the answer to our `cd`).
    Entered {
        room: String,
    },
    Part {
        name: String,
    },
    Nick {
        old: String,
        new: String,
    },
    /// A private message to us.
    DirectIn {
        from: String,
        text: String,
    },
    /// A private message we sent (shown to the sender).
    DirectOut {
        to: String,
        text: String,
    },
    /// A right-aligned Devzat timestamp.
    Timestamp,
    /// Devzat asks for another name (taken or invalid).
    NamePrompt,
    /// ssh-chat refused a line because of its rate limit.
    RateLimited,
    /// ssh-chat refused a line over 1024 bytes.
    TooLong,
    /// Anything else the server printed (welcome text, command output, warnings).
    System {
        text: String,
    },
    /// Our own line coming back. `redraw` is set for the copy that confirms it: Devzat's
    /// broadcast that replaces the typed echo, and on ssh-chat (which sends no copy of our
    /// messages in bot mode) the line editor's echo of the Enter. One per line written, in
    /// order, so the session takes it as the confirmation of the oldest line not confirmed.
    Own {
        text: String,
        redraw: bool,
    },
    /// Nothing (a blank line, a prompt).
    Blank,
}

/// The name Devzat's own bot speaks under (no user can take it).
pub const DEVBOT: &str = "devbot";

/// A finished Devzat message: from a person, or from the server's bot.
fn devzat_message(from: String, text: String) -> Line {
    if from == DEVBOT {
        Line::Devbot { text }
    } else {
        Line::Message { from, text }
    }
}

/// A Devzat line that moves its author to another room (`cd`, `cd ..`, `cd #room`). Devzat
/// broadcasts it like any line; the move itself arrives as a leave and a join, so the line is
/// bookkeeping and never emitted as chat (the bot's own `cd #room` least of all).
pub fn is_room_command(text: &str) -> bool {
    let mut words = text.split_whitespace();
    words.next() == Some("cd")
        && match (words.next(), words.next()) {
            (None, _) => true,
            (Some(arg), None) => arg == ".." || arg.starts_with('#'),
            _ => false,
        }
}

fn is_devzat_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= DEVZAT_NAME_MAX
        && name.bytes().all(|b| (33..=126).contains(&b))
}

fn is_ssh_chat_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= SSH_CHAT_NAME_MAX
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '.' || c == '-')
}

/// A right-aligned timestamp: Devzat prints the time since the user joined (`< 1m in`,
/// `5m in`, `1h 3m in`, `2d 1h 5m earlier`) for users without a time zone, and a clock time
/// (`15:04`, `3:04 pm`) for users with one.
fn is_timestamp(line: &str) -> bool {
    let trimmed = line.trim();
    if !line.starts_with("  ") || trimmed.is_empty() || trimmed.len() > 24 {
        return false;
    }
    if let Some(span) = trimmed
        .strip_suffix(" in")
        .or_else(|| trimmed.strip_suffix(" earlier"))
    {
        return span == "< 1m"
            || span.split(' ').all(|part| {
                part.len() >= 2
                    && part.ends_with(['d', 'h', 'm'])
                    && part[..part.len() - 1].bytes().all(|b| b.is_ascii_digit())
            });
    }
    let mut digits = 0;
    let mut colon = false;
    for c in trimmed.chars() {
        match c {
            '0'..='9' => digits += 1,
            ':' => colon = true,
            ' ' | 'a' | 'p' | 'm' | 'A' | 'P' | 'M' => {}
            _ => return false,
        }
    }
    colon && (3..=6).contains(&digits)
}

/// Read one Devzat line.
pub fn classify_devzat(line: &str) -> Line {
    if line.trim().is_empty() {
        return Line::Blank;
    }
    // A message first: its text may look like any other line (`alice: -> hi` is not a private
    // message from `alice:`). No other format has a name then `: ` at the start of the line.
    if let Some((name, text)) = line.split_once(": ")
        && is_devzat_name(name)
    {
        return Line::Message {
            from: name.to_owned(),
            text: text.to_owned(),
        };
    }
    if line.contains("Pick a different one:")
        && (line.contains("already in use") || line.contains("invalid"))
    {
        return Line::NamePrompt;
    }
    if let Some(rest) = line.strip_prefix(" --> ")
        && let Some((name, place)) = rest.split_once(" has joined ")
        && is_devzat_name(name)
    {
        // ` --> NAME has joined the chat` at login, ` --> NAME has joined #room` after `cd`.
        return match place.strip_prefix('#') {
            Some(_) => Line::Moved {
                name: name.to_owned(),
                room: place.to_owned(),
            },
            None => Line::Join {
                name: name.to_owned(),
            },
        };
    }
    if let Some(rest) = line.strip_prefix(" <-- ")
        && let Some((name, _why)) = rest.split_once(' ')
        && is_devzat_name(name)
    {
        // ` <-- NAME has left the chat[. They were online for 5m]`, `... has been banned ...`.
        return Line::Part {
            name: name.to_owned(),
        };
    }
    if let Some((name, room)) = line.split_once(" is joining #")
        && is_devzat_name(name)
        && !room.contains(' ')
    {
        // Someone left this room for another one.
        return Line::Part {
            name: name.to_owned(),
        };
    }
    if is_timestamp(line) {
        return Line::Timestamp;
    }
    if let Some((name, text)) = line.split_once(" -> ")
        && is_devzat_name(name)
    {
        return Line::DirectIn {
            from: name.to_owned(),
            text: text.to_owned(),
        };
    }
    if let Some((name, text)) = line.split_once(" <- ")
        && is_devzat_name(name)
    {
        return Line::DirectOut {
            to: name.to_owned(),
            text: text.to_owned(),
        };
    }
    if let Some(name) = line.strip_suffix(':')
        && is_devzat_name(name)
    {
        // A message whose text is empty, or a bare prompt.
        return Line::Blank;
    }
    Line::System {
        text: line.trim().to_owned(),
    }
}

/// Read one ssh-chat line (TERM=bot: no colours, no own echo).
pub fn classify_ssh_chat(line: &str) -> Line {
    if line.trim().is_empty() {
        return Line::Blank;
    }
    if let Some(rest) = line.strip_prefix(" * ") {
        if let Some((name, _)) = rest.split_once(" joined.")
            && is_ssh_chat_name(name)
        {
            return Line::Join {
                name: name.to_owned(),
            };
        }
        if let Some((name, _)) = rest.split_once(" left.")
            && is_ssh_chat_name(name)
        {
            return Line::Part {
                name: name.to_owned(),
            };
        }
        if let Some((old, new)) = rest.split_once(" is now known as ") {
            let new = new.strip_suffix('.').unwrap_or(new);
            return Line::Nick {
                old: old.to_owned(),
                new: new.to_owned(),
            };
        }
        return Line::System {
            text: rest.to_owned(),
        };
    }
    if let Some(rest) = line.strip_prefix("-> ") {
        if rest.contains("Rate limiting is in effect") {
            return Line::RateLimited;
        }
        if rest.contains("Input too long") {
            return Line::TooLong;
        }
        return Line::System {
            text: rest.to_owned(),
        };
    }
    if let Some(rest) = line.strip_prefix("[PM from ")
        && let Some((name, text)) = rest.split_once("] ")
    {
        return Line::DirectIn {
            from: name.to_owned(),
            text: text.to_owned(),
        };
    }
    if let Some(rest) = line.strip_prefix("** ")
        && let Some((name, text)) = rest.split_once(' ')
        && is_ssh_chat_name(name)
    {
        return Line::Emote {
            from: name.to_owned(),
            text: text.to_owned(),
        };
    }
    if let Some((name, text)) = line.split_once(": ")
        && is_ssh_chat_name(name)
    {
        return Line::Message {
            from: name.to_owned(),
            text: text.to_owned(),
        };
    }
    // After the chat formats: a person may write these words too.
    if line.contains("Input too long.") {
        return Line::TooLong;
    }
    if line.starts_with('[') && line.ends_with(']') {
        // A bare prompt left on a line.
        return Line::Blank;
    }
    Line::System {
        text: line.trim().to_owned(),
    }
}

/// Where a session stands in the join sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// History replay: nothing here is new.
    Replay,
    /// Our own join was announced; everything from here on is live.
    Live,
}

/// Stateful reader of one session's lines.
#[derive(Debug)]
pub struct LineParser {
    dialect: Dialect,
    /// The name we asked for, then the one the server gave us.
    name: String,
    /// The name we asked for (ssh-chat's prompt keeps showing it).
    asked: String,
    /// ssh-chat may rename us on a clash (`Guest<N>`): true once the join told us our name.
    name_known: bool,
    phase: Phase,
    /// A Devzat message waiting for possible continuation lines (wrapped or multi-line).
    pending: Option<(String, String)>,
    /// Devzat drew a timestamp over our typed echo: the next own line is the server's copy
    /// (after a minute of silence it writes `ESC[A ESC[2K`, the timestamp, then the line).
    redraw_next: bool,
}

impl LineParser {
    pub fn new(dialect: Dialect, name: &str) -> Self {
        LineParser {
            dialect,
            name: name.to_owned(),
            asked: name.to_owned(),
            name_known: dialect == Dialect::Devzat,
            phase: Phase::Replay,
            pending: None,
            redraw_next: false,
        }
    }

    /// Our name on the server as far as we know it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Devzat asked for another name and we answered with `name`.
    pub fn rename(&mut self, name: &str) {
        self.name = name.to_owned();
    }

    /// True once our own join was seen (and, on ssh-chat, told us our name): lines after it are
    /// live.
    pub fn is_live(&self) -> bool {
        self.phase == Phase::Live && self.name_known
    }

    /// Read one line; returns the live events it completes (with a Devzat message held back
    /// until the next line shows whether it continues).
    pub fn push(&mut self, screen: &ScreenLine) -> Vec<Line> {
        match self.dialect {
            Dialect::Devzat => self.push_devzat(screen),
            Dialect::SshChat => self.push_ssh_chat(screen),
        }
    }

    /// No more lines for now: release a held-back message.
    pub fn flush(&mut self) -> Vec<Line> {
        self.pending
            .take()
            .map(|(from, text)| devzat_message(from, text))
            .into_iter()
            .collect()
    }

    fn push_devzat(&mut self, screen: &ScreenLine) -> Vec<Line> {
        let line = &screen.text;
        // A continuation line is indented by the width of the `name: ` prefix it continues.
        if let Some((from, text)) = &mut self.pending {
            let indent = from.chars().count() + 2;
            let leading = line.chars().take_while(|c| *c == ' ').count();
            if leading == indent && line.len() > indent && !screen.replaces_previous {
                text.push('\n');
                text.push_str(&line[indent..]);
                return Vec::new();
            }
        }
        let mut out = self.flush();
        let parsed = classify_devzat(line);
        if self.phase == Phase::Replay {
            match &parsed {
                Line::Join { name } if *name == self.name => self.phase = Phase::Live,
                Line::NamePrompt => out.push(Line::NamePrompt),
                _ => {}
            }
            return out;
        }
        match parsed {
            Line::Message { from, text } => {
                if from == self.name {
                    let redraw = screen.replaces_previous || std::mem::take(&mut self.redraw_next);
                    out.push(Line::Own { text, redraw });
                } else if is_room_command(&text) {
                    // Someone moving rooms: the leave or join that follows says so.
                } else {
                    self.pending = Some((from, text));
                }
            }
            Line::Moved { name, room } => out.push(if name == self.name {
                Line::Entered { room }
            } else {
                Line::Join { name }
            }),
            Line::Timestamp => self.redraw_next = screen.replaces_previous,
            Line::DirectOut { .. } | Line::Blank => {}
            Line::Join { ref name } | Line::Part { ref name } if *name == self.name => {}
            other => out.push(other),
        }
        out
    }

    fn push_ssh_chat(&mut self, screen: &ScreenLine) -> Vec<Line> {
        let parsed = classify_ssh_chat(&screen.text);
        if self.phase == Phase::Replay {
            // History is written without the erase that precedes live lines.
            if !screen.erased {
                return Vec::new();
            }
            self.phase = Phase::Live;
        }
        // The line editor's echo of a line we typed, `[name] text`, ended by the Enter: the
        // server read the line, and handles it before reading the next one. In bot mode
        // ssh-chat sends no copy of our own messages, so this is the confirmation. The prompt
        // shows the name asked for even when the server gave `Guest<N>`.
        let echoed = |name: &str| {
            screen
                .text
                .strip_prefix('[')
                .and_then(|r| r.strip_prefix(name))
                .and_then(|r| r.strip_prefix("] "))
                .filter(|rest| !rest.trim().is_empty())
        };
        if self.name_known
            && let Some(rest) = echoed(&self.asked).or_else(|| echoed(&self.name))
        {
            let rest = rest.to_owned();
            return vec![Line::Own {
                text: rest.trim_start().to_owned(),
                redraw: true,
            }];
        }
        if !self.name_known
            && let Line::Join { name } = &parsed
            && (*name == self.name || name.starts_with("Guest"))
        {
            // Our own join: the name we asked for, or `Guest<N>` when it was taken.
            self.name = name.clone();
            self.name_known = true;
            return Vec::new();
        }
        match parsed {
            // No copy of our own messages comes in bot mode, so a message under our name is
            // someone else's: the one whose name was taken, when we are `Guest<N>` and took
            // their join for ours.
            Line::Join { ref name } | Line::Part { ref name } if *name == self.name => Vec::new(),
            Line::Nick { ref old, ref new } if *old == self.name => {
                self.name = new.clone();
                Vec::new()
            }
            Line::Blank | Line::Timestamp => Vec::new(),
            other => vec![other],
        }
    }
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
