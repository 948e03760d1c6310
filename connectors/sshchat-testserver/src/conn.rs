//! The SSH side: accepting logins, the join sequence, reading typed input, and each dialect's
//! rules for it (name prompt, commands, DMs, anti-spam, rate limit, line length).

use std::sync::Arc;
use std::time::{Duration, Instant};

use russh::server::{Auth, Msg, Server as _, Session};
use russh::{Channel, ChannelId, ChannelMsg};
use tokio::sync::mpsc;

use crate::chat::{Out, User, render_message};
use crate::format::ESC;
use crate::{Dialect, Shared};

/// Devzat's command words the test server knows (the line is broadcast, then run).
const DEVZAT_COMMANDS: &[&str] = &[
    "cd", "exit", "users", "help", "hang", "shrug", "mute", "clear", "nick", "ls", "pwd", "tz",
    "bio", "emojis", "theme", "color", "rest", "tic", "pronouns", "id", "kick", "ban",
];

pub async fn serve(
    shared: Arc<Shared>,
    listener: tokio::net::TcpListener,
) -> (
    russh::server::RunningServerHandle,
    tokio::task::JoinHandle<()>,
) {
    let config = russh::server::Config {
        keys: vec![shared.host_key.clone()],
        keepalive_interval: Some(shared.opts.keepalive),
        keepalive_max: 3,
        inactivity_timeout: None,
        auth_rejection_time: Duration::from_millis(10),
        auth_rejection_time_initial: Some(Duration::ZERO),
        nodelay: true,
        ..Default::default()
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut server = Server { shared };
        let running = server.run_on_socket(Arc::new(config), &listener);
        let _ = tx.send(running.handle());
        let _ = running.await;
    });
    let handle = match rx.await {
        Ok(handle) => handle,
        Err(_) => panic!("the SSH server task failed to start"),
    };
    (handle, task)
}

struct Server {
    shared: Arc<Shared>,
}

impl russh::server::Server for Server {
    type Handler = Conn;
    fn new_client(&mut self, addr: Option<std::net::SocketAddr>) -> Conn {
        Conn {
            shared: self.shared.clone(),
            addr: addr.map(|a| a.ip().to_string()).unwrap_or_default(),
            user: String::new(),
            key: None,
        }
    }
}

pub struct Conn {
    shared: Arc<Shared>,
    addr: String,
    user: String,
    key: Option<String>,
}

impl russh::server::Handler for Conn {
    type Error = russh::Error;

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: russh::server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        // Both servers accept any key; the key is the user's identity.
        self.user = user.to_owned();
        self.key = Some(
            key.public_key
                .fingerprint(russh::keys::HashAlg::Sha256)
                .to_string(),
        );
        Ok(Auth::Accept)
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        user: &str,
        _submethods: &str,
        _response: Option<russh::server::Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        // ssh-chat: keyboard-interactive with no questions is an anonymous login.
        if self.shared.opts.dialect == Dialect::SshChat {
            self.user = user.to_owned();
            Ok(Auth::Accept)
        } else {
            Ok(Auth::reject())
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply.accept().await;
        let who = Who {
            user: self.user.clone(),
            key: self.key.clone().unwrap_or_else(|| "anonymous".into()),
            addr: self.addr.clone(),
        };
        tokio::spawn(run_channel(self.shared.clone(), channel, who));
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _w: u32,
        _h: u32,
        _pw: u32,
        _ph: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        _value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }
}

#[derive(Clone, Debug)]
struct Who {
    user: String,
    key: String,
    addr: String,
}

/// One session channel, from shell request to close.
async fn run_channel(shared: Arc<Shared>, channel: Channel<Msg>, who: Who) {
    let (mut read, write) = channel.split();
    let mut width: Option<usize> = None;
    let mut term = String::new();
    loop {
        match read.wait().await {
            Some(ChannelMsg::RequestPty { col_width, .. }) => width = Some(col_width as usize),
            Some(ChannelMsg::SetEnv {
                variable_name,
                variable_value,
                ..
            }) if variable_name == "TERM" => term = variable_value,
            Some(ChannelMsg::RequestShell { .. }) | Some(ChannelMsg::Exec { .. }) => break,
            Some(_) => {}
            None => return,
        }
    }
    let (out, out_rx) = mpsc::unbounded_channel();
    let slow_rule = shared.opts.dialect == Dialect::SshChat;
    tokio::spawn(writer(write, out_rx, slow_rule));
    let mut conn = Session_ {
        shared: shared.clone(),
        who,
        out,
        id: None,
        prompt_input: Vec::new(),
        naming: false,
        width: width.unwrap_or(80),
        bot: term == "bot",
        bytes_window: (Instant::now(), 0),
    };
    if !conn.start(width.is_some()) {
        return;
    }
    while let Some(msg) = read.wait().await {
        match msg {
            ChannelMsg::Data { data } if !conn.input(&data) => break,
            ChannelMsg::WindowChange { col_width, .. } => {
                conn.width = col_width as usize;
                if let Some(id) = conn.id
                    && let Some(user) = shared.lock().users.get_mut(&id)
                {
                    user.width = col_width as usize;
                }
            }
            ChannelMsg::Eof | ChannelMsg::Close => break,
            _ => {}
        }
    }
    conn.leave();
}

async fn writer(
    write: russh::ChannelWriteHalf<Msg>,
    mut rx: mpsc::UnboundedReceiver<Out>,
    slow_rule: bool,
) {
    while let Some(out) = rx.recv().await {
        match out {
            Out::Bytes(bytes) => {
                match tokio::time::timeout(Duration::from_secs(5), write.data(&bytes[..])).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => break,
                    // ssh-chat drops a client that stops reading with 5 messages queued.
                    Err(_) if slow_rule && rx.len() >= 5 => break,
                    Err(_) => {}
                }
            }
            Out::Close => break,
        }
    }
    let _ = write.eof().await;
    let _ = write.close().await;
}

#[allow(non_camel_case_types)]
struct Session_ {
    shared: Arc<Shared>,
    who: Who,
    out: mpsc::UnboundedSender<Out>,
    id: Option<u64>,
    prompt_input: Vec<u8>,
    /// Devzat is waiting for an answer to its name prompt.
    naming: bool,
    width: usize,
    bot: bool,
    bytes_window: (Instant, usize),
}

impl Session_ {
    fn send(&self, bytes: impl Into<Vec<u8>>) {
        let _ = self.out.send(Out::Bytes(bytes.into()));
    }

    fn close(&self, why: &str) {
        self.send(format!("{why}\r\n"));
        let _ = self.out.send(Out::Close);
    }

    fn dialect(&self) -> Dialect {
        self.shared.opts.dialect
    }

    fn touched(&self) {
        self.shared.changed.notify_waiters();
    }

    /// Checks at connection, then the name; false when the connection is refused.
    fn start(&mut self, has_pty: bool) -> bool {
        let mut keys = vec![self.who.key.clone()];
        if self.shared.opts.join_ban_by_address {
            keys.push(self.who.addr.clone());
        }
        {
            let mut chat = self.shared.lock();
            if keys.iter().any(|k| chat.banned.contains(k)) {
                drop(chat);
                self.close("**You are banned**. If you feel this was a mistake, contact an admin.");
                return false;
            }
            if self.dialect() == Dialect::Devzat && chat.count_join(&keys) {
                drop(chat);
                self.touched();
                self.close("**You are banned** for joining too often.");
                return false;
            }
        }
        match self.dialect() {
            Dialect::Devzat => {
                if !has_pty {
                    self.close("Sorry, Devzat needs a PTY: connect with `ssh -t`.");
                    return false;
                }
                let name = devzat_clean(&self.who.user);
                self.try_devzat_name(&name);
            }
            Dialect::SshChat => self.join_ssh_chat(),
        }
        true
    }

    fn try_devzat_name(&mut self, name: &str) {
        let taken = self.shared.lock().name_taken(name);
        if name.is_empty() {
            self.naming = true;
            self.send("Your username is invalid. Pick a different one:\r\n> ");
        } else if taken {
            self.naming = true;
            self.send("Your username is already in use. Pick a different one:\r\n> ");
        } else {
            self.naming = false;
            self.join_devzat(name);
        }
    }

    fn new_user(&self, name: &str) -> User {
        User {
            name: name.to_owned(),
            room: "#main".into(),
            out: self.out.clone(),
            width: self.width,
            bot: self.bot,
            joined_at: Instant::now(),
            last_shown: Instant::now(),
            recent_lines: Default::default(),
            warned: false,
            window_start: Instant::now(),
            window_count: 0,
            input: String::new(),
        }
    }

    fn join_devzat(&mut self, name: &str) {
        let opts = self.shared.opts.clone();
        let mut chat = self.shared.lock();
        let user = self.new_user(name);
        let mut screen = format!("{ESC}[H{ESC}[2J");
        for (from, text) in &chat.history {
            screen.push_str(&render_message(Dialect::Devzat, &user, from, text, true));
            screen.push_str("\r\n");
        }
        let others = chat.users.len();
        screen.push_str(&format!(
            "Welcome to the chat. There are {others} more users\r\n"
        ));
        user.send(screen);
        let id = chat.next_id;
        chat.next_id += 1;
        chat.users.insert(id, user);
        self.id = Some(id);
        chat.system(&opts, "#main", &format!(" --> {name} has joined the chat"));
        drop(chat);
        self.touched();
    }

    fn join_ssh_chat(&mut self) {
        let opts = self.shared.opts.clone();
        let mut chat = self.shared.lock();
        let mut name: String = self
            .who
            .user
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '-'))
            .take(16)
            .collect();
        if name.is_empty() || chat.name_taken(&name) {
            // A taken name silently becomes Guest<N>.
            chat.guest_counter += 1;
            name = format!("Guest{}", chat.guest_counter);
        }
        let user = self.new_user(&name);
        let mut screen = String::new();
        if !self.bot {
            screen.push_str("Welcome to the ssh-chat test server.\r\n");
        }
        // History: written plainly, without the erase that precedes live lines.
        for (from, text) in &chat.history {
            screen.push_str(&render_message(Dialect::SshChat, &user, from, text, true));
            screen.push_str("\r\r\n");
        }
        user.send(screen);
        let id = chat.next_id;
        chat.next_id += 1;
        chat.users.insert(id, user);
        self.id = Some(id);
        let connected = chat.users.len();
        chat.system(
            &opts,
            "#main",
            &format!(" * {name} joined. (Connected: {connected})"),
        );
        drop(chat);
        self.touched();
    }

    fn leave(&mut self) {
        let Some(id) = self.id.take() else { return };
        let opts = self.shared.opts.clone();
        let mut chat = self.shared.lock();
        if let Some(user) = chat.users.remove(&id) {
            let line = match opts.dialect {
                Dialect::Devzat => format!(" <-- {} has left the chat", user.name),
                Dialect::SshChat => format!(
                    " * {} left. (After {} seconds)",
                    user.name,
                    user.joined_at.elapsed().as_secs()
                ),
            };
            chat.system(&opts, &user.room, &line);
        }
        drop(chat);
        self.touched();
    }

    /// Typed bytes; false when the connection must close.
    fn input(&mut self, data: &[u8]) -> bool {
        if self.dialect() == Dialect::SshChat {
            // The byte-rate limiter disconnects floods.
            let (start, count) = &mut self.bytes_window;
            if start.elapsed() > Duration::from_secs(10) {
                *start = Instant::now();
                *count = 0;
            }
            *count += data.len();
            if *count > 64 * 1024 {
                self.close("-> Flood detected: disconnecting.");
                return false;
            }
        }
        for &b in data {
            match b {
                b'\r' => {
                    let line = String::from_utf8_lossy(&self.prompt_input).into_owned();
                    self.prompt_input.clear();
                    self.set_input(String::new());
                    if !self.line(line) {
                        return false;
                    }
                }
                // `\n` is dropped silently by both servers.
                b'\n' => {}
                0x7f | 0x08 => {
                    let mut text = String::from_utf8_lossy(&self.prompt_input).into_owned();
                    if text.pop().is_some() {
                        self.prompt_input = text.clone().into_bytes();
                        self.set_input(text);
                        if self.dialect() == Dialect::Devzat {
                            self.send("\x08 \x08");
                        }
                    }
                }
                0x00..=0x1f => {}
                _ => {
                    let limit = match self.dialect() {
                        Dialect::Devzat => 4096 * 4,
                        Dialect::SshChat => 64 * 1024,
                    };
                    if self.prompt_input.len() < limit {
                        self.prompt_input.push(b);
                        // Devzat's terminal echoes what is typed.
                        if self.dialect() == Dialect::Devzat {
                            self.send(vec![b]);
                        }
                    }
                }
            }
        }
        let text = String::from_utf8_lossy(&self.prompt_input).into_owned();
        self.set_input(text);
        true
    }

    fn set_input(&self, text: String) {
        if let Some(id) = self.id
            && let Some(user) = self.shared.lock().users.get_mut(&id)
        {
            user.input = text;
        }
    }

    /// One entered line; false when the connection must close.
    fn line(&mut self, line: String) -> bool {
        match self.dialect() {
            Dialect::Devzat => {
                self.send("\r\n");
                if self.naming {
                    let name = devzat_clean(&line);
                    self.try_devzat_name(&name);
                    return true;
                }
                let line: String = line.chars().take(4096).collect();
                self.devzat_line(line)
            }
            Dialect::SshChat => self.ssh_chat_line(line),
        }
    }

    fn devzat_line(&mut self, line: String) -> bool {
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
        if recent >= 50 {
            chat.banned.insert(self.who.key.clone());
            chat.bans.push(format!("{name}: spamming (one month)"));
            drop(chat);
            self.touched();
            self.close("You have been banned for a month for spamming.");
            return false;
        }
        if recent >= 30 && !user.warned {
            user.warned = true;
            chat.warnings.push(name.clone());
            chat.tell(
                &opts,
                id,
                &format!("{name}, stop spamming or you could get banned."),
            );
        }
        let mut text: String = line.clone();
        while text.len() > 5120 {
            text.pop();
        }
        // `=user msg` is a DM: not broadcast.
        if let Some(rest) = text.strip_prefix('=') {
            let (to, msg) = rest.split_once(' ').unwrap_or((rest, ""));
            let target = chat
                .users
                .iter()
                .find(|(_, u)| u.name == to)
                .map(|(tid, _)| *tid);
            match target {
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
        chat.message(&opts, &room, &name, &text, Some(id), None);
        let first = text.split_whitespace().next().unwrap_or("");
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
                    if target.starts_with('#') && target.chars().count() <= 30 {
                        chat.rooms.insert(target.clone());
                        if let Some(user) = chat.users.get_mut(&id) {
                            user.room = target;
                        }
                    } else {
                        chat.tell(
                            &opts,
                            id,
                            "Rooms start with # and are at most 30 characters",
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

    fn ssh_chat_line(&mut self, line: String) -> bool {
        let Some(id) = self.id else { return true };
        let opts = self.shared.opts.clone();
        let mut chat = self.shared.lock();
        let Some(user) = chat.users.get_mut(&id) else {
            return true;
        };
        let name = user.name.clone();
        // The line editor's echo: `[name] text` and a lone carriage return.
        user.send(format!("[{name}] {line}\r"));
        if line.trim().is_empty() {
            return true;
        }
        if line.len() > 1024 {
            chat.rejected_long += 1;
            chat.tell(&opts, id, "-> Input too long.");
            drop(chat);
            self.touched();
            return true;
        }
        // 3 lines per 3 s per connection, counted in fixed windows.
        let Some(user) = chat.users.get_mut(&id) else {
            return true;
        };
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
        let mut keep = true;
        if let Some(command) = line.strip_prefix('/') {
            chat.commands.push((name.clone(), line.clone()));
            let (word, arg) = command.split_once(' ').unwrap_or((command, ""));
            match word {
                "me" => {
                    let text = format!("** {name} {arg}");
                    chat.system(&opts, "#main", &text);
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
                        }
                        chat.system(&opts, "#main", &format!(" * {name} is now known as {new}."));
                    }
                }
                "msg" => {
                    let (to, msg) = arg.split_once(' ').unwrap_or((arg, ""));
                    let target = chat
                        .users
                        .iter()
                        .find(|(_, u)| u.name == to)
                        .map(|(tid, _)| *tid);
                    match target {
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

/// Devzat's name cleaning: first line only, spaces to `-`, visible ASCII, 27 characters.
fn devzat_clean(name: &str) -> String {
    name.lines()
        .next()
        .unwrap_or("")
        .replace(' ', "-")
        .chars()
        .filter(|c| (33..=126).contains(&(*c as u32)))
        .take(27)
        .collect()
}
