//! The people (and programs) in each room: each sends numbered lines and records, in order,
//! every text it was shown. They survive their server's restart by logging in again; what a
//! new session replays from before its login is not counted (see [`ChatUser::reconnect`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use patchbay_irc::parse;
use patchbay_irc::transport::LineReader;
use patchbay_sshchat_testserver::{Dialect, TestUser};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;

/// Texts shown to one observer, in the order shown.
pub type Seen = Arc<Mutex<Vec<String>>>;

pub fn snapshot(seen: &Seen) -> Vec<String> {
    seen.lock().map(|s| s.clone()).unwrap_or_default()
}

fn push(seen: &Seen, text: String) {
    if let Ok(mut seen) = seen.lock() {
        seen.push(text);
    }
}

/// A user in one IRC channel: no capabilities (no echo of its own lines), PRIVMSGs to the
/// channel recorded by a reader task that answers PINGs.
pub struct IrcUser {
    pub nick: String,
    pub channel: String,
    port: u16,
    writer: Arc<tokio::sync::Mutex<Option<OwnedWriteHalf>>>,
    pub seen: Seen,
}

impl IrcUser {
    pub async fn connect(port: u16, nick: &str, channel: &str) -> IrcUser {
        let user = IrcUser {
            nick: nick.to_owned(),
            channel: channel.to_owned(),
            port,
            writer: Arc::new(tokio::sync::Mutex::new(None)),
            seen: Seen::default(),
        };
        user.reconnect().await;
        user
    }

    /// Log in (again), join the channel, and wait for the end of its names list.
    pub async fn reconnect(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            match tokio::time::timeout(Duration::from_secs(10), self.try_connect()).await {
                Ok(Ok(())) => return,
                _ if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                other => panic!("{} could not join {}: {other:?}", self.nick, self.channel),
            }
        }
    }

    async fn try_connect(&self) -> std::io::Result<()> {
        let stream = TcpStream::connect(("127.0.0.1", self.port)).await?;
        let (rd, mut wr) = stream.into_split();
        let hello = format!("NICK {n}\r\nUSER {n} 0 * :{n}\r\n", n = self.nick,);
        wr.write_all(hello.as_bytes()).await?;
        let (joined_tx, joined_rx) = tokio::sync::oneshot::channel::<()>();
        let seen = self.seen.clone();
        let channel = self.channel.clone();
        let (pong_tx, mut pong_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            let mut reader = LineReader::new(rd);
            let mut joined = Some(joined_tx);
            loop {
                let Ok(Some(line)) = reader.next_line().await else {
                    return;
                };
                let Some(bytes) = line else { continue };
                let Ok(p) = parse::parse_line(&bytes, patchbay_irc::encoding_rs::WINDOWS_1252)
                else {
                    continue;
                };
                let (cmd, params) = parse::command_params(&p.message);
                match cmd.as_str() {
                    "PING" => {
                        let token = params.first().cloned().unwrap_or_default();
                        let _ = pong_tx.send(format!("PONG :{token}\r\n"));
                    }
                    // Registered: only now may it join (InspIRCd refuses JOIN before).
                    "001" => {
                        let _ = pong_tx.send(format!("JOIN {channel}\r\n"));
                    }
                    "366" => {
                        if let Some(tx) = joined.take() {
                            let _ = tx.send(());
                        }
                    }
                    "PRIVMSG"
                        if params
                            .first()
                            .is_some_and(|c| c.eq_ignore_ascii_case(&channel)) =>
                    {
                        push(&seen, params.get(1).cloned().unwrap_or_default());
                    }
                    _ => {}
                }
            }
        });
        *self.writer.lock().await = Some(wr);
        // PONGs (registration's included) go out through the same writer; the task ends
        // with the reader.
        let writer = self.writer.clone();
        tokio::spawn(async move {
            while let Some(pong) = pong_rx.recv().await {
                if let Some(w) = writer.lock().await.as_mut() {
                    let _ = w.write_all(pong.as_bytes()).await;
                }
            }
        });
        joined_rx
            .await
            .map_err(|_| std::io::Error::other("closed before the join"))?;
        Ok(())
    }

    /// Say `text` in the channel; whether it was written.
    pub async fn say(&self, text: &str) -> bool {
        let mut writer = self.writer.lock().await;
        let Some(w) = writer.as_mut() else {
            return false;
        };
        let line = format!("PRIVMSG {} :{text}\r\n", self.channel);
        w.write_all(line.as_bytes()).await.is_ok()
    }
}

/// A Matrix user over the client-server API (plain HTTP, no SDK): sends with transaction ids,
/// so a retry after a lost answer posts nothing twice, and reads the room forwards with
/// `/messages` from a token, which survives Synapse's restarts.
pub struct MatrixUser {
    pub id: String,
    url: String,
    token: String,
    http: reqwest::Client,
}

impl MatrixUser {
    /// Log in as `name` (registered beforehand).
    pub async fn login(url: &str, id: &str, name: &str) -> MatrixUser {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("an HTTP client");
        let body = json!({"type": "m.login.password",
                          "identifier": {"type": "m.id.user", "user": name},
                          "password": "password"});
        let answer: Value = http
            .post(format!("{url}/_matrix/client/v3/login"))
            .json(&body)
            .send()
            .await
            .expect("log in")
            .json()
            .await
            .expect("login JSON");
        let token = answer["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access token: {answer}"))
            .to_owned();
        MatrixUser {
            id: id.to_owned(),
            url: url.to_owned(),
            token,
            http,
        }
    }

    /// A public room with `alias` (local part); its id.
    pub async fn create_room(&self, alias: &str) -> String {
        let body = json!({"preset": "public_chat", "visibility": "public",
                          "room_alias_name": alias});
        let answer: Value = self
            .http
            .post(format!("{}/_matrix/client/v3/createRoom", self.url))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .expect("create a room")
            .json()
            .await
            .expect("createRoom JSON");
        answer["room_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no room id: {answer}"))
            .to_owned()
    }

    /// Send `text` as transaction `txn`; whether Synapse stored it.
    pub async fn say(&self, room: &str, txn: &str, text: &str) -> bool {
        let url = format!(
            "{}/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}",
            self.url
        );
        self.http
            .put(url)
            .bearer_auth(&self.token)
            .json(&json!({"msgtype": "m.text", "body": text}))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }

    /// Read `room` forwards from now on in a background task: every message body not sent by
    /// this user, in the room's order.
    pub async fn watch(self: &Arc<Self>, room: &str) -> Seen {
        let seen = Seen::default();
        let first = format!(
            "{}/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=1",
            self.url
        );
        let answer: Value = self
            .http
            .get(first)
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("read the room")
            .json()
            .await
            .expect("messages JSON");
        let mut from = answer["start"].as_str().expect("a start token").to_owned();
        let user = self.clone();
        let room = room.to_owned();
        let out = seen.clone();
        tokio::spawn(async move {
            loop {
                let url = format!(
                    "{}/_matrix/client/v3/rooms/{room}/messages?dir=f&limit=200&from={from}",
                    user.url
                );
                let page = match user.http.get(url).bearer_auth(&user.token).send().await {
                    Ok(r) if r.status().is_success() => r.json::<Value>().await.ok(),
                    _ => None,
                };
                let Some(page) = page else {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    continue;
                };
                let chunk = page["chunk"].as_array().cloned().unwrap_or_default();
                for event in &chunk {
                    if event["type"] == "m.room.message" && event["sender"] != user.id.as_str() {
                        push(&out, event["content"]["body"].as_str().unwrap_or("").into());
                    }
                }
                if let Some(end) = page["end"].as_str() {
                    from = end.to_owned();
                }
                if chunk.is_empty() {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        });
        seen
    }
}

/// A person at an SSH chat terminal (Devzat or ssh-chat), optionally in another Devzat room.
/// Each session's lines count from the moment its own marker line is shown: what a server
/// replays to a new login (Devzat's and ssh-chat's scrollback) was counted by the session
/// that saw it live.
pub struct ChatUser {
    pub name: String,
    addr: String,
    dialect: Dialect,
    room: Option<String>,
    /// Lines of ended sessions (after their markers).
    kept: Mutex<Vec<String>>,
    session: tokio::sync::Mutex<Option<(TestUser, usize)>>,
    markers: std::sync::atomic::AtomicUsize,
}

impl ChatUser {
    pub async fn connect(addr: &str, name: &str, dialect: Dialect, room: Option<&str>) -> ChatUser {
        let user = ChatUser {
            name: name.to_owned(),
            addr: addr.to_owned(),
            dialect,
            room: room.map(str::to_owned),
            kept: Mutex::new(Vec::new()),
            session: tokio::sync::Mutex::new(None),
            markers: Default::default(),
        };
        user.reconnect().await;
        user
    }

    /// Log in again (after the server restarted), enter the room, and say a marker.
    pub async fn reconnect(&self) {
        let mut session = self.session.lock().await;
        if let Some((old, from)) = session.take() {
            let lines = old.lines();
            if let Ok(mut kept) = self.kept.lock() {
                kept.extend(lines.into_iter().skip(from));
            }
            old.close().await;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
        let user = loop {
            match TestUser::connect(&self.addr, &self.name, self.dialect).await {
                Ok(user) => break user,
                Err(err) if tokio::time::Instant::now() < deadline => {
                    eprintln!("soak: {} could not log in yet: {err}", self.name);
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Err(err) => panic!("{} could not log in: {err}", self.name),
            }
        };
        if let Some(room) = &self.room {
            user.say(&format!("cd {room}")).await.expect("type cd");
        }
        let k = self
            .markers
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let marker = format!("mark {} {k}", self.name);
        user.say(&marker).await.expect("type the marker");
        user.wait_line(Duration::from_secs(20), |l| l.contains(&marker))
            .await
            .unwrap_or_else(|| panic!("{}'s marker was never shown", self.name));
        let from = user
            .lines()
            .iter()
            .position(|l| l.contains(&marker))
            .map_or(0, |i| i + 1);
        *session = Some((user, from));
    }

    /// Type `text`; whether it was written.
    pub async fn say(&self, text: &str) -> bool {
        match self.session.lock().await.as_ref() {
            Some((user, _)) => user.say(text).await.is_ok(),
            None => false,
        }
    }

    /// Every line shown since the first marker, over all sessions.
    pub async fn lines(&self) -> Vec<String> {
        let mut out = self.kept.lock().map(|k| k.clone()).unwrap_or_default();
        if let Some((user, from)) = self.session.lock().await.as_ref() {
            out.extend(user.lines().into_iter().skip(*from));
        }
        out
    }
}

/// The outbound webhook's receiver: records every body it accepts, answers 500 while `failing`.
pub struct Receiver {
    pub port: u16,
    pub seen: Seen,
    pub failing: Arc<std::sync::atomic::AtomicBool>,
    pub refused: Arc<std::sync::atomic::AtomicUsize>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receiver");
        let port = listener.local_addr().expect("receiver address").port();
        let seen = Seen::default();
        let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let refused = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (s, f, r) = (seen.clone(), failing.clone(), refused.clone());
        let app = axum::Router::new().route(
            "/out",
            axum::routing::post(move |body: String| {
                let (s, f, r) = (s.clone(), f.clone(), r.clone());
                async move {
                    if f.load(Ordering::SeqCst) {
                        r.fetch_add(1, Ordering::SeqCst);
                        return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    push(&s, body);
                    axum::http::StatusCode::OK
                }
            }),
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            port,
            seen,
            failing,
            refused,
        }
    }
}

/// HTTP sources and the API's log: an inbound hook and the API's room, posted to until the
/// gateway accepts (202), and the API log read forwards from an entry id.
pub struct Http {
    pub port: u16,
    http: reqwest::Client,
}

pub const HOOK_TOKEN: &str = "soak-hook-token";
pub const API_TOKEN: &str = "soak-api-token";

impl Http {
    pub fn new(port: u16) -> Http {
        Http {
            port,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("an HTTP client"),
        }
    }

    /// POST to the inbound hook once; whether it was accepted.
    pub async fn hook(&self, text: &str) -> bool {
        self.http
            .post(format!("http://127.0.0.1:{}/hooks/hook/in", self.port))
            .bearer_auth(HOOK_TOKEN)
            .json(&json!({"text": text, "username": "hooker"}))
            .send()
            .await
            .is_ok_and(|r| r.status().as_u16() == 202)
    }

    /// POST to the API's room once with an idempotency key; whether it was accepted (a
    /// repeat of an accepted key answers 200).
    pub async fn api(&self, key: &str, text: &str) -> bool {
        self.http
            .post(format!(
                "http://127.0.0.1:{}/api/bots/soak/messages",
                self.port
            ))
            .bearer_auth(API_TOKEN)
            .json(&json!({"text": text, "username": "scripter", "id": key}))
            .send()
            .await
            .is_ok_and(|r| matches!(r.status().as_u16(), 200 | 202))
    }

    /// Read the API's log forwards in a background task: the JSON of every entry delivered to
    /// the room, in the log's order.
    pub fn watch_api(self: &Arc<Self>) -> Seen {
        let seen = Seen::default();
        let out = seen.clone();
        let http = self.clone();
        tokio::spawn(async move {
            let mut after = 0i64;
            loop {
                let url = format!(
                    "http://127.0.0.1:{}/api/bots/soak/messages?after={after}&limit=1000",
                    http.port
                );
                let page = match http.http.get(url).bearer_auth(API_TOKEN).send().await {
                    Ok(r) if r.status().is_success() => r.json::<Value>().await.ok(),
                    _ => None,
                };
                let entries = page
                    .as_ref()
                    .and_then(|p| p["entries"].as_array().cloned())
                    .unwrap_or_default();
                for entry in &entries {
                    if let Some(id) = entry["id"].as_i64() {
                        after = after.max(id);
                    }
                    if entry["direction"] == "delivered" {
                        push(&out, entry.to_string());
                    }
                }
                if entries.is_empty() {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        });
        seen
    }
}
