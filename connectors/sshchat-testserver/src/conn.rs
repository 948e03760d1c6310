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
pub(crate) struct Who {
    pub(crate) user: String,
    pub(crate) key: String,
    pub(crate) addr: String,
}

/// One session channel, from shell request to close.
async fn run_channel(shared: Arc<Shared>, channel: Channel<Msg>, who: Who) {
    let (mut read, write) = channel.split();
    let mut width: Option<usize> = None;
    let mut term = String::new();
    let mut pty_term_seen: Option<String> = None;
    loop {
        match read.wait().await {
            // ssh-chat takes the terminal type from the pty request over the TERM variable.
            Some(ChannelMsg::RequestPty {
                col_width,
                term: pty_term,
                ..
            }) => {
                width = Some(col_width as usize);
                pty_term_seen = Some(pty_term);
            }
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
    if let Some(pty_term) = pty_term_seen.filter(|t| !t.is_empty()) {
        term = pty_term;
    }
    let (out, out_rx) = mpsc::unbounded_channel();
    let slow_rule = shared.opts.dialect == Dialect::SshChat;
    tokio::spawn(writer(write, out_rx, slow_rule));
    let mut conn = Terminal {
        shared: shared.clone(),
        who,
        out,
        id: None,
        prompt_input: Vec::new(),
        naming: false,
        width: width.unwrap_or(80),
        bot: term == "bot",
        bytes_window: (Instant::now(), 0),
        prompt_cols: 0,
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

pub(crate) struct Terminal {
    pub(crate) shared: Arc<Shared>,
    pub(crate) who: Who,
    pub(crate) out: mpsc::UnboundedSender<Out>,
    pub(crate) id: Option<u64>,
    pub(crate) prompt_input: Vec<u8>,
    /// Devzat is waiting for an answer to its name prompt.
    pub(crate) naming: bool,
    pub(crate) width: usize,
    pub(crate) bot: bool,
    pub(crate) bytes_window: (Instant, usize),
    /// Columns the prompt takes (`name: `), for wrapping the echo; 0 before the join.
    pub(crate) prompt_cols: usize,
}

impl Terminal {
    pub(crate) fn send(&self, bytes: impl Into<Vec<u8>>) {
        let _ = self.out.send(Out::Bytes(bytes.into()));
    }

    pub(crate) fn close(&self, why: &str) {
        self.send(format!("{why}\r\n"));
        let _ = self.out.send(Out::Close);
    }

    pub(crate) fn dialect(&self) -> Dialect {
        self.shared.opts.dialect
    }

    pub(crate) fn touched(&self) {
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
                let name = crate::format::devzat_clean(&self.who.user);
                self.try_devzat_name(&name);
            }
            Dialect::SshChat => self.join_ssh_chat(),
        }
        true
    }

    pub(crate) fn try_devzat_name(&mut self, name: &str) {
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
            asked: self.who.user.clone(),
            room: "#main".into(),
            out: self.out.clone(),
            width: self.width,
            bot: self.bot,
            joined_at: Instant::now(),
            last_shown: Instant::now(),
            recent_lines: Default::default(),
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
        if !chat.history.is_empty() {
            screen.push_str(&crate::format::timestamp_line(
                user.joined_at.elapsed(),
                user.width,
            ));
            screen.push_str("\r\n");
        }
        for (from, text) in &chat.history {
            screen.push_str(&render_message(Dialect::Devzat, &user, from, text, true));
            screen.push_str("\r\n");
        }
        let welcome = match chat.users.len() {
            0 => "Welcome to the chat. There are no more users".to_owned(),
            1 => "Welcome to the chat. There is one more user".to_owned(),
            n => format!("Welcome to the chat. There are {n} more users"),
        };
        screen.push_str(&format!("{ESC}[34m{welcome}{ESC}[0m\r\n"));
        user.send(screen);
        let id = chat.next_id;
        chat.next_id += 1;
        chat.users.insert(id, user);
        self.id = Some(id);
        self.prompt_cols = name.chars().count() + 2;
        chat.system(
            &opts,
            "#main",
            &format!(" --> {name} has joined the chat"),
            None,
        );
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
            None,
        );
        drop(chat);
        self.touched();
    }

    fn leave(&mut self) {
        let Some(id) = self.id.take() else { return };
        let opts = self.shared.opts.clone();
        let mut chat = self.shared.lock();
        let reason = crate::lock(&self.shared.leave_reason).remove(&id);
        if let Some(user) = chat.users.remove(&id) {
            let line = match opts.dialect {
                Dialect::Devzat => {
                    let mut line = format!(
                        " <-- {}",
                        reason.unwrap_or_else(|| format!("{} has left the chat", user.name))
                    );
                    let online = user.joined_at.elapsed();
                    if online > Duration::from_secs(30) {
                        line.push_str(&format!(
                            ". They were online for {}",
                            crate::format::pretty_duration(online)
                        ));
                    }
                    line
                }
                Dialect::SshChat => format!(
                    " * {} left. (After {} seconds)",
                    user.name,
                    user.joined_at.elapsed().as_secs()
                ),
            };
            chat.system(&opts, &user.room, &line, None);
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
                        // Devzat's terminal echoes what is typed, and breaks the echo onto a
                        // new row when it reaches the right edge.
                        if self.dialect() == Dialect::Devzat {
                            self.send(vec![b]);
                            let starts_char = !(0x80..0xc0).contains(&b);
                            if starts_char && self.prompt_cols > 0 {
                                let chars =
                                    String::from_utf8_lossy(&self.prompt_input).chars().count();
                                if (self.prompt_cols + chars).is_multiple_of(self.width.max(1)) {
                                    self.send("\r\n");
                                }
                            }
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
                    let name = crate::format::devzat_clean(&line);
                    self.try_devzat_name(&name);
                    return true;
                }
                let line: String = line.chars().take(4096).collect();
                self.devzat_line(line)
            }
            Dialect::SshChat => self.ssh_chat_line(line),
        }
    }
}
