//! Each dialect's rules for an entered line: Devzat's DMs, commands, anti-spam counting and
//! message cut; ssh-chat's echo, length limit, rate limit and slash commands.

use std::time::{Duration, Instant};

use crate::Dialect;
use crate::chat::Out;
use crate::conn::Terminal;

/// Devzat's command words the test server knows (the line is broadcast, then run).
const DEVZAT_COMMANDS: &[&str] = &[
    "cd", "exit", "users", "help", "hang", "shrug", "mute", "clear", "nick", "ls", "pwd", "tz",
    "bio", "emojis", "theme", "color", "rest", "tic", "pronouns", "id", "kick", "ban",
];

/// What Devzat broadcasts for `shrug`.
const SHRUG: &str = "¯\\(ツ)/¯";

impl Terminal {
    pub(crate) fn devzat_line(&mut self, line: String) -> bool {
        let Some(id) = self.id else { return true };
        let opts = self.shared.opts.clone();
        let mut chat = self.shared.lock();
        let Some(user) = chat.users.get_mut(&id) else {
            return true;
        };
        if line.trim().is_empty() {
            user.send(user.prompt(Dialect::Devzat));
            return true;
        }
        // Anti-spam: 30 lines in about 15 s earn a warning, 50 a ban.
        let now = Instant::now();
        user.recent_lines.push_back(now);
        while user
            .recent_lines
            .front()
            .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(15))
        {
            user.recent_lines.pop_front();
        }
        let recent = user.recent_lines.len();
        let name = user.name.clone();
        let room = user.room.clone();
        if recent >= 30 {
            // Every line from the 30th on earns a warning from devbot, broadcast in the room.
            chat.warnings.push(name.clone());
            chat.message(
                &opts,
                &room,
                "devbot",
                &format!("{name}, stop spamming or you could get banned."),
                None,
                None,
            );
        }
        if recent >= 50 {
            chat.banned.insert(self.who.key.clone());
            chat.bans.push(format!("{name}: spamming (one month)"));
            chat.tell(&opts, id, "devbot: anti-spam triggered");
            drop(chat);
            self.touched();
            crate::lock(&self.shared.leave_reason)
                .insert(id, format!("{name} has been banned for spamming"));
            let _ = self.out.send(Out::Close);
            return false;
        }
        let mut text: String = line.clone();
        while text.len() > 5120 {
            text.pop();
        }
        // `=user msg` is a DM: not broadcast.
        if let Some(rest) = text.strip_prefix('=') {
            let (to, msg) = rest.split_once(' ').unwrap_or((rest, ""));
            match chat.named(to) {
                Some(tid) => {
                    chat.commands.push((name.clone(), text.clone()));
                    chat.tell(&opts, id, &format!("{to} <- {msg}"));
                    chat.tell(&opts, tid, &format!("{name} -> \x07{msg}"));
                }
                None => chat.tell(&opts, id, &format!("No such person: {to}")),
            }
            drop(chat);
            self.touched();
            return true;
        }
        // Everything else is broadcast, and run too when its first word names a command.
        let first = text.split_whitespace().next().unwrap_or("");
        // As the real Devzat does: every line is broadcast (and run when its first word names
        // a command), `cd #room`, `cd ..` and `hang` included; `shrug` is shown as the shrug
        // itself; only `clear` and `mute` run without being shown.
        let silent = matches!(first, "mute" | "clear");
        if first == "shrug" {
            chat.message(&opts, &room, &name, SHRUG, Some(id), None);
        } else if !silent {
            chat.message(&opts, &room, &name, &text, Some(id), None);
        }
        let mut keep = true;
        if DEVZAT_COMMANDS.contains(&first) {
            chat.commands.push((name.clone(), text.clone()));
            let arg = text[first.len()..].trim();
            match first {
                "cd" => {
                    let target = if arg.is_empty() || arg == ".." {
                        "#main".to_owned()
                    } else {
                        arg.to_owned()
                    };
                    if !target.starts_with('#') || target.chars().count() > 30 {
                        chat.tell(
                            &opts,
                            id,
                            "devbot: Rooms start with # and are at most 30 characters",
                        );
                    } else if target != room {
                        // The old room is told where we went; the new one sees us arrive.
                        chat.system(&opts, &room, &format!("{name} is joining {target}"), None);
                        chat.rooms.insert(target.clone());
                        if let Some(user) = chat.users.get_mut(&id) {
                            user.room = target.clone();
                        }
                        chat.system(
                            &opts,
                            &target,
                            &format!(" --> {name} has joined {target}"),
                            None,
                        );
                    }
                }
                "users" => {
                    let names: Vec<String> = chat
                        .users
                        .values()
                        .filter(|u| u.room == room)
                        .map(|u| u.name.clone())
                        .collect();
                    chat.tell(&opts, id, &format!("[{}]", names.join(", ")));
                }
                "exit" => keep = false,
                _ => {}
            }
        }
        drop(chat);
        self.touched();
        if !keep {
            let _ = self.out.send(Out::Close);
        }
        keep
    }

    pub(crate) fn ssh_chat_line(&mut self, line: String) -> bool {
        let Some(id) = self.id else { return true };
        let opts = self.shared.opts.clone();
        let mut chat = self.shared.lock();
        let Some(user) = chat.users.get_mut(&id) else {
            return true;
        };
        let name = user.name.clone();
        // The line editor's echo: `[name] text` and a line break, broken onto a new row at the
        // terminal's width (80 columns without a pty).
        let echo: Vec<char> = format!("[{}] {line}", user.asked).chars().collect();
        let rows: Vec<String> = echo
            .chunks(user.width.max(1))
            .map(|row| row.iter().collect())
            .collect();
        // The real server ends the echo with the Enter's line break: the line was read.
        user.send(format!("{}\r\n", rows.join("\r\n")));
        // Every entered line counts against 3 lines per 3 s (fixed windows), even an empty or
        // over-long one; then the length is checked; empty lines are ignored.
        if user.window_start.elapsed() > Duration::from_secs(3) {
            user.window_start = Instant::now();
            user.window_count = 0;
        }
        user.window_count += 1;
        if user.window_count > 3 {
            chat.rejected_rate += 1;
            chat.tell(
                &opts,
                id,
                "-> Message rejected: Rate limiting is in effect.",
            );
            drop(chat);
            self.touched();
            return true;
        }
        if line.len() > 1024 {
            chat.rejected_long += 1;
            chat.tell(&opts, id, "-> Message rejected: Input too long.");
            drop(chat);
            self.touched();
            return true;
        }
        if line.is_empty() {
            return true;
        }
        let mut keep = true;
        if let Some(command) = line.strip_prefix('/') {
            chat.commands.push((name.clone(), line.clone()));
            let (word, arg) = command.split_once(' ').unwrap_or((command, ""));
            match word {
                "me" => {
                    let text = format!("** {name} {arg}");
                    chat.system(&opts, "#main", &text, None);
                }
                "nick" => {
                    let new: String = arg
                        .chars()
                        .filter(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '-'))
                        .take(16)
                        .collect();
                    if new.is_empty() || chat.name_taken(&new) {
                        chat.tell(&opts, id, "-> Error: name is taken or invalid.");
                    } else {
                        if let Some(user) = chat.users.get_mut(&id) {
                            user.name = new.clone();
                            user.asked = new.clone();
                        }
                        chat.system(
                            &opts,
                            "#main",
                            &format!(" * {name} is now known as {new}."),
                            None,
                        );
                    }
                }
                "msg" => {
                    let (to, msg) = arg.split_once(' ').unwrap_or((arg, ""));
                    match chat.named(to) {
                        Some(tid) => chat.tell(&opts, tid, &format!("[PM from {name}] {msg}")),
                        None => chat.tell(&opts, id, "-> Error: user not found."),
                    }
                }
                "exit" | "quit" => keep = false,
                _ => chat.tell(&opts, id, &format!("-> Error: invalid command: /{word}")),
            }
        } else {
            chat.message(&opts, "#main", &name, &line, Some(id), None);
        }
        drop(chat);
        self.touched();
        if !keep {
            let _ = self.out.send(Out::Close);
        }
        keep
    }
}
