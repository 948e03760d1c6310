//! The chat itself: users, rooms, history, bans, plugin listeners, and what every broadcast
//! looks like on each user's terminal.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::format::{self, ESC};
use crate::{Dialect, Options, Record};

/// What a user's connection task is told to do.
#[derive(Debug)]
pub enum Out {
    Bytes(Vec<u8>),
    Close,
}

pub struct User {
    pub name: String,
    /// The name the user logged in with: ssh-chat's prompt keeps showing it when the user was
    /// named `Guest<N>` because it was taken (as the real server does).
    pub asked: String,
    pub room: String,
    pub out: mpsc::UnboundedSender<Out>,
    pub width: usize,
    /// TERM=bot (ssh-chat): no colours, no own echo.
    pub bot: bool,
    pub joined_at: Instant,
    /// When this user last saw a message (Devzat prints a timestamp after a silence).
    pub last_shown: Instant,
    /// Devzat anti-spam: times of recent lines.
    pub recent_lines: VecDeque<Instant>,
    /// ssh-chat's per-connection line limiter (fixed window).
    pub window_start: Instant,
    pub window_count: usize,
    /// What the user has typed so far (redrawn after the prompt).
    pub input: String,
}

impl User {
    pub fn prompt(&self, dialect: Dialect) -> String {
        match dialect {
            Dialect::Devzat => format!("{}: {}", format::colour_name(&self.name), self.input),
            Dialect::SshChat => format!("[{}] {}", self.asked, self.input),
        }
    }

    pub fn prompt_width(&self, dialect: Dialect) -> usize {
        match dialect {
            Dialect::Devzat => self.name.chars().count() + 2 + self.input.chars().count(),
            Dialect::SshChat => self.asked.chars().count() + 3 + self.input.chars().count(),
        }
    }

    pub fn send(&self, bytes: impl Into<Vec<u8>>) {
        let _ = self.out.send(Out::Bytes(bytes.into()));
    }
}

/// A plugin listener.
pub struct Listener {
    pub id: u64,
    pub token: String,
    pub system: bool,
    pub tx: mpsc::Sender<Result<crate::proto::Event, tonic::Status>>,
}

#[derive(Default)]
pub struct Chat {
    pub users: HashMap<u64, User>,
    pub next_id: u64,
    /// (from, text) of recent room messages of `#main`, raw.
    pub history: VecDeque<(String, String)>,
    pub rooms: HashSet<String>,
    pub transcript: Vec<Record>,
    pub joins: HashMap<String, VecDeque<Instant>>,
    pub banned: HashSet<String>,
    pub bans: Vec<String>,
    pub warnings: Vec<String>,
    pub commands: Vec<(String, String)>,
    pub listeners: Vec<Listener>,
    pub middleware_requests: usize,
    pub guest_counter: u64,
    pub rejected_rate: usize,
    pub rejected_long: usize,
}

impl Chat {
    pub fn new() -> Self {
        let mut chat = Chat::default();
        chat.rooms.insert("#main".into());
        chat
    }

    pub fn name_taken(&self, name: &str) -> bool {
        self.named(name).is_some()
    }

    /// The id of the user going by `name`: whom a DM (`=name` or `/msg name`) is for.
    pub fn named(&self, name: &str) -> Option<u64> {
        self.users
            .iter()
            .find(|(_, u)| u.name == name)
            .map(|(id, _)| *id)
    }

    /// Broadcast a user's (or a plugin's) message to a room. `sender` is the user id when a
    /// user typed it; `token` the plugin token when a plugin sent it.
    pub fn message(
        &mut self,
        opts: &Options,
        room: &str,
        from: &str,
        text: &str,
        sender: Option<u64>,
        token: Option<&str>,
    ) {
        self.record(room, from, text);
        if room == "#main" {
            self.history.push_back((from.to_owned(), text.to_owned()));
            while self.history.len() > opts.history() {
                self.history.pop_front();
            }
        }
        let coloured_from = token.is_none();
        let dialect = opts.dialect;
        for (id, user) in self.users.iter_mut() {
            if user.room != room {
                continue;
            }
            let own = Some(*id) == sender;
            if own && dialect == Dialect::SshChat && user.bot {
                // TERM=bot: no own echo.
                continue;
            }
            let line = render_message(dialect, user, from, text, coloured_from);
            let lead = if own && dialect == Dialect::Devzat {
                erase_echo(user, text)
            } else {
                lead(dialect, user)
            };
            let mut bytes = String::new();
            if dialect == Dialect::Devzat && user.last_shown.elapsed() >= opts.timestamp_after {
                bytes.push_str(&lead);
                bytes.push_str(&format::timestamp_line(
                    user.joined_at.elapsed(),
                    user.width,
                ));
                bytes.push_str("\r\n");
                bytes.push_str(&line);
            } else {
                bytes.push_str(&lead);
                bytes.push_str(&line);
            }
            bytes.push_str(line_end(dialect));
            bytes.push_str(&user.prompt(dialect));
            user.last_shown = Instant::now();
            user.send(bytes);
        }
        for listener in &self.listeners {
            if token == Some(listener.token.as_str()) {
                // A token's own messages are not echoed to its listeners.
                continue;
            }
            let event = crate::proto::Event {
                room: room.to_owned(),
                from: format::strip(from),
                msg: text.to_owned(),
            };
            let _ = listener.tx.try_send(Ok(event));
        }
    }

    /// A line without a sender (joins, leaves, announcements) to everyone in a room.
    /// `token`: the plugin token that sent it, whose listeners do not get it back.
    pub fn system(&mut self, opts: &Options, room: &str, text: &str, token: Option<&str>) {
        self.record(room, "", text);
        let dialect = opts.dialect;
        for user in self.users.values_mut() {
            if user.room != room {
                continue;
            }
            let bytes = format!(
                "{}{}{}{}",
                lead(dialect, user),
                text,
                line_end(dialect),
                user.prompt(dialect)
            );
            user.send(bytes);
        }
        for listener in self
            .listeners
            .iter()
            .filter(|l| l.system && token != Some(l.token.as_str()))
        {
            let event = crate::proto::Event {
                room: room.to_owned(),
                from: String::new(),
                msg: text.to_owned(),
            };
            let _ = listener.tx.try_send(Ok(event));
        }
    }

    /// A line to one user only.
    pub fn tell(&self, opts: &Options, id: u64, text: &str) {
        if let Some(user) = self.users.get(&id) {
            let dialect = opts.dialect;
            user.send(format!(
                "{}{}{}{}",
                lead(dialect, user),
                text,
                line_end(dialect),
                user.prompt(dialect)
            ));
        }
    }

    fn record(&mut self, room: &str, from: &str, text: &str) {
        self.transcript.push(Record {
            room: room.to_owned(),
            from: format::strip(from),
            text: text.to_owned(),
        });
    }

    /// Count a join for a key (and an address when configured); true when it earns a ban.
    pub fn count_join(&mut self, who: &[String]) -> bool {
        let now = Instant::now();
        let mut ban = false;
        for key in who {
            let times = self.joins.entry(key.clone()).or_default();
            times.push_back(now);
            while times
                .front()
                .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60))
            {
                times.pop_front();
            }
            if times.len() > 6 {
                ban = true;
            }
        }
        if ban {
            for key in who {
                self.banned.insert(key.clone());
                self.bans
                    .push(format!("{key}: more than 6 joins in a minute"));
            }
        }
        ban
    }
}

/// What comes before a live line: Devzat moves left over the prompt and erases it (or, for the
/// sender's own line, moves up over the typed echo and erases it); ssh-chat the same over its
/// prompt.
fn lead(dialect: Dialect, user: &User) -> String {
    format!("{ESC}[{}D{ESC}[K", user.prompt_width(dialect))
}

/// Devzat erases the sender's typed echo row by row: one `ESC[A ESC[2K` per row it took.
fn erase_echo(user: &User, text: &str) -> String {
    let cols = user.name.chars().count() + 2 + text.chars().count();
    let rows = cols.div_ceil(user.width.max(1)).max(1);
    format!("{ESC}[A{ESC}[2K").repeat(rows)
}

pub fn line_end(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Devzat => "\r\n",
        Dialect::SshChat => "\r\r\n",
    }
}

/// One message as `user` sees it.
pub fn render_message(
    dialect: Dialect,
    user: &User,
    from: &str,
    text: &str,
    coloured_from: bool,
) -> String {
    match dialect {
        Dialect::Devzat => {
            let name = if coloured_from {
                format::colour_name(from)
            } else {
                from.to_owned()
            };
            let indent = format::visible_len(from) + 2;
            let body = format::wrap(&format::devzat_markdown(text), indent, user.width);
            format!("{name}: {body}")
        }
        Dialect::SshChat => {
            if user.bot {
                format!("{from}: {text}")
            } else {
                format!("{}: {text}", format::colour_name(from))
            }
        }
    }
}
