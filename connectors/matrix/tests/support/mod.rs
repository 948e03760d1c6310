//! Test support: a shared Synapse per test binary, Matrix users driven by matrix-sdk clients
//! (with E2EE), and the connector run by the sdk's test kit, recording what it emits.
#![allow(dead_code)]

pub mod appservice;
pub mod synapse;

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use matrix_sdk::Client;
use matrix_sdk::config::SyncSettings;
use matrix_sdk::ruma::api::client::room::Visibility;
use matrix_sdk::ruma::api::client::room::create_room::v3::{Request as CreateRoom, RoomPreset};
use matrix_sdk::ruma::events::InitialStateEvent;
use matrix_sdk::ruma::events::reaction::ReactionEventContent;
use matrix_sdk::ruma::events::relation::{Annotation, InReplyTo, Reply};
use matrix_sdk::ruma::events::room::encryption::RoomEncryptionEventContent;
use matrix_sdk::ruma::events::room::message::{Relation, RoomMessageEventContent};
use matrix_sdk::ruma::{EventId, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId};
use patchbay_sdk::testkit;
use patchbay_sdk::{
    AccountInfo, Author, Connector, ConnectorState, Delivered, Delivery, Event, Inbound, Kind,
    RichText,
};
use serde_json::Value;
use tokio::sync::{Mutex, mpsc, watch};
use tokio_util::sync::CancellationToken;

pub use synapse::Synapse;

pub const TIMEOUT: Duration = Duration::from_secs(30);
/// The connector's longest wait between connection attempts, jitter included.
const RECONNECT_LONGEST: Duration = Duration::from_millis(38_400);

/// The Synapse shared by every test of this binary.
pub fn synapse() -> &'static Synapse {
    static SYNAPSE: OnceLock<Synapse> = OnceLock::new();
    SYNAPSE.get_or_init(Synapse::start)
}

/// A name unique within this test run.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}{}x{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// Wait for `future` at most [`TIMEOUT`].
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(TIMEOUT, future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// Timeline events seen by a user, with those of other rooms kept while one room is awaited.
struct Events {
    rx: mpsc::UnboundedReceiver<(OwnedRoomId, Value)>,
    pending: std::collections::VecDeque<(OwnedRoomId, Value)>,
}

/// A human on Matrix: a matrix-sdk client (E2EE-capable) syncing in the background, with every
/// timeline event it sees (decrypted where needed) collected as JSON.
pub struct User {
    pub client: Client,
    pub id: String,
    events: Mutex<Events>,
    stop: CancellationToken,
}

impl Drop for User {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl User {
    pub async fn register(synapse: &Synapse, name: &str) -> User {
        let id = synapse.register(name, "password").await;
        let client = Client::builder()
            .homeserver_url(synapse.url())
            .build()
            .await
            .expect("build a test client");
        client
            .matrix_auth()
            .login_username(name, "password")
            .initial_device_display_name("test")
            .send()
            .await
            .expect("test user login");
        // A first sync so the client knows its rooms, then sync in the background.
        client
            .sync_once(SyncSettings::default())
            .await
            .expect("first sync");
        let (tx, rx) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let syncing = client.clone();
        let stopped = stop.clone();
        tokio::spawn(async move {
            loop {
                let settings = SyncSettings::default().timeout(Duration::from_secs(5));
                let response = tokio::select! {
                    _ = stopped.cancelled() => return,
                    r = syncing.sync_once(settings) => r,
                };
                let Ok(response) = response else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                for (room_id, update) in response.rooms.joined {
                    for event in update.timeline.events {
                        if let Ok(value) = event.raw().deserialize_as::<Value>() {
                            let _ = tx.send((room_id.clone(), value));
                        }
                    }
                }
            }
        });
        User {
            client,
            id,
            events: Mutex::new(Events {
                rx,
                pending: Default::default(),
            }),
            stop,
        }
    }

    /// Wait until an event in `room` matches `predicate`; the room's events before it are
    /// dropped, other rooms' events are kept for later waits.
    pub async fn wait_for(
        &self,
        room: &RoomId,
        what: &str,
        predicate: impl Fn(&Value) -> bool,
    ) -> Value {
        let mut events = self.events.lock().await;
        let events = &mut *events;
        let mut kept = std::collections::VecDeque::new();
        let mut found = None;
        while let Some((room_id, event)) = events.pending.pop_front() {
            if found.is_none() && room_id == room {
                if predicate(&event) {
                    found = Some(event);
                }
            } else {
                kept.push_back((room_id, event));
            }
        }
        events.pending = kept;
        if let Some(event) = found {
            return event;
        }
        within(what, async {
            loop {
                let (room_id, event) = events.rx.recv().await.expect("the sync task ended");
                if room_id != room {
                    events.pending.push_back((room_id, event));
                } else if predicate(&event) {
                    return event;
                }
            }
        })
        .await
    }

    /// Wait until `user` has joined `room`; the membership event.
    pub async fn wait_joined(&self, room: &RoomId, what: &str, user: &str) -> Value {
        self.wait_for(room, what, |e| is_member(e, user, "join"))
            .await
    }

    /// Wait for the event `id` in `room`.
    pub async fn wait_event(&self, room: &RoomId, what: &str, id: &str) -> Value {
        self.wait_for(room, what, |e| e["event_id"] == id).await
    }

    pub fn room(&self, id: &RoomId) -> matrix_sdk::Room {
        self.client
            .get_room(id)
            .expect("the test user knows the room")
    }

    /// Send `content` into `room`; the id the homeserver gave it.
    pub async fn send(&self, room: &RoomId, content: RoomMessageEventContent) -> OwnedEventId {
        let sent = self.room(room).send(content).await.expect("send");
        sent.response.event_id
    }

    /// A room made by this user with `invite` invited: public with the alias `alias` (a
    /// localpart), private without one; `encrypted` turns on encryption from its creation.
    pub async fn create_room(
        &self,
        alias: Option<&str>,
        invite: &[&str],
        encrypted: bool,
    ) -> OwnedRoomId {
        let mut request = CreateRoom::new();
        request.invite = invite
            .iter()
            .map(|id| OwnedUserId::try_from(*id).expect("user id"))
            .collect();
        if let Some(alias) = alias {
            request.room_alias_name = Some(alias.to_owned());
            request.preset = Some(RoomPreset::PublicChat);
            request.visibility = Visibility::Public;
        } else {
            request.preset = Some(RoomPreset::PrivateChat);
        }
        if encrypted {
            let encryption = RoomEncryptionEventContent::with_recommended_defaults();
            request.initial_state =
                vec![InitialStateEvent::with_empty_state_key(encryption).to_raw_any()];
        }
        let created = self.client.create_room(request).await.expect("create room");
        created.room_id().to_owned()
    }

    /// Say `text` (plain) in `room`.
    pub async fn say(&self, room: &RoomId, text: impl Into<String>) -> OwnedEventId {
        self.send(room, RoomMessageEventContent::text_plain(text))
            .await
    }

    /// Answer the event `to` in `room` with `text` (plain), as a reply to it.
    pub async fn reply(&self, room: &RoomId, to: &EventId, text: &str) -> OwnedEventId {
        let mut reply = RoomMessageEventContent::text_plain(text);
        reply.relates_to = Some(Relation::Reply(Reply::new(InReplyTo::new(to.to_owned()))));
        self.send(room, reply).await
    }

    /// React to the event `to` in `room` with `key` (an emoji).
    pub async fn react(&self, room: &RoomId, to: &EventId, key: &str) {
        let reaction = ReactionEventContent::new(Annotation::new(to.to_owned(), key.to_owned()));
        self.room(room).send(reaction).await.expect("react");
    }
}

/// Whether `event` turns `user`'s membership to `membership`.
pub fn is_member(event: &Value, user: &str, membership: &str) -> bool {
    event["type"] == "m.room.member"
        && event["state_key"] == user
        && event["content"]["membership"] == membership
}

/// The connector under test, run by the sdk's test kit, and how far the test has read what it
/// recorded: Matrix tests read the events in order, each once.
pub struct Running {
    pub connector: Arc<dyn Connector>,
    pub state: watch::Receiver<ConnectorState>,
    run: testkit::Running,
    read: usize,
}

impl From<testkit::Running> for Running {
    fn from(run: testkit::Running) -> Self {
        Running {
            connector: Arc::clone(&run.connector),
            state: run.state.clone(),
            run,
            read: 0,
        }
    }
}

/// Build the connector from a TOML table and run it with `data_dir`.
pub fn start(table: &str, data_dir: &Path) -> Running {
    let account = AccountInfo {
        account: "matrix.test".into(),
        config_dir: data_dir.to_owned(),
        data_dir: data_dir.to_owned(),
    };
    let built = testkit::build_in(&*patchbay_matrix::factory(), account, table);
    built.expect("valid config").start().into()
}

impl Running {
    pub async fn wait_up(&mut self) {
        let up = self.run.wait_up(TIMEOUT).await;
        assert!(up, "timed out waiting for the connector to be up");
    }

    /// Wait for `Up` after the homeserver was down: the connector's next attempt may be its
    /// longest reconnect wait away (32 s, +20% jitter), so the wait is that beyond [`TIMEOUT`].
    pub async fn wait_up_after_outage(&mut self) {
        let up = self.run.wait_up(TIMEOUT + RECONNECT_LONGEST).await;
        assert!(up, "timed out waiting for the connector to reconnect");
    }

    /// Deliver `delivery`, waiting at most [`TIMEOUT`]: it must be delivered.
    pub async fn deliver(&self, delivery: Delivery) -> Delivered {
        let delivered = within("a delivery", self.connector.deliver(delivery)).await;
        delivered.expect("delivered")
    }

    /// Deliver `delivery` as [`Running::deliver`] does: the id of the event it became.
    pub async fn deliver_sent(&self, delivery: Delivery) -> String {
        let delivered = self.deliver(delivery).await;
        delivered.remote_id.expect("a remote id")
    }

    /// The next event recorded that matches (those before it are read too).
    pub async fn next_matching(
        &mut self,
        what: &str,
        predicate: impl Fn(&Inbound) -> bool,
    ) -> Inbound {
        let Some(event) = self.next_matching_within(TIMEOUT, predicate).await else {
            panic!("timed out waiting for {what}");
        };
        event
    }

    /// [`Running::next_matching`] waiting at most `timeout`; `None` if none came.
    pub async fn next_matching_within(
        &mut self,
        timeout: Duration,
        predicate: impl Fn(&Inbound) -> bool,
    ) -> Option<Inbound> {
        let read = self.read;
        let found = self.run.recorder.wait_until(timeout, |r| {
            let events = r.events().into_iter().enumerate().skip(read);
            events.into_iter().find(|(_, e)| predicate(e))
        });
        let (at, event) = found.await?;
        self.read = at + 1;
        Some(event)
    }

    /// The plain text of the next event recorded that is not the connector's own echo (those
    /// before it are read too): what someone said on Matrix, as the gateway gets it.
    pub async fn next_said(&mut self, what: &str) -> String {
        let event = self.next_matching(what, |e| !e.is_echo).await;
        event.kind.body().expect("body").to_plain()
    }

    /// How many calls have handed events to the gateway (`emit` and `emit_many` alike).
    pub fn emit_calls(&self) -> usize {
        self.run.recorder.calls()
    }

    /// The next event recorded, if there is one yet.
    pub fn try_next(&mut self) -> Option<Inbound> {
        let next = self.run.recorder.events().into_iter().nth(self.read);
        self.read += usize::from(next.is_some());
        next
    }

    /// Stop the connector and wait until it has returned `Ok`.
    pub async fn stop(self) {
        let stopped = self.run.stop(TIMEOUT).await;
        stopped.expect("the connector stops cleanly");
    }
}

/// What `author` did in `#rust` on `origin` (`PROTOCOL.NAME`), as the gateway hands it over
/// for `room` under the nick `[PROTOCOL] NAME`.
pub fn relayed(origin: &str, room: &str, author: Author, kind: Kind) -> Delivery {
    let protocol = origin.split('.').next().unwrap_or(origin);
    let nick = format!("[{protocol}] {}", author.name);
    let mut inbound = Inbound::message("#rust", author, RichText::plain(""));
    inbound.kind = kind;
    Delivery {
        room: room.to_owned(),
        event: Event::from_inbound(origin, inbound),
        nick,
        route: "main".into(),
        quote: None,
    }
}

/// A plain message.
pub fn text(body: &str) -> Kind {
    Kind::Message {
        body: RichText::plain(body),
        attachments: Vec::new(),
    }
}

/// `body` said by `author` on IRC (`irc.libera/#rust`), as the gateway hands it over.
pub fn message(room: &str, author: &str, body: &str) -> Delivery {
    relayed("irc.libera", room, Author::named(author), text(body))
}

/// The bot's config table.
pub fn bot_table(synapse: &Synapse, user: &str, rooms: &[String], extra: &str) -> String {
    let rooms: Vec<String> = rooms.iter().map(|r| format!("\"{r}\"")).collect();
    format!(
        "homeserver = \"{}\"\nuser = \"{user}\"\npassword = \"password\"\nrooms = [{}]\n{extra}\n",
        synapse.url(),
        rooms.join(", ")
    )
}

/// A bot (password `password`) on `synapse` in a fresh public room of alice's that its config
/// names by alias (`extra` ends the bot's table), up and joined: alice, the bot's id, the
/// room's id and alias, the bot's data directory, and the running bot.
pub async fn bot_room(
    synapse: &Synapse,
    extra: &str,
) -> (
    User,
    String,
    OwnedRoomId,
    String,
    tempfile::TempDir,
    Running,
) {
    let alice = User::register(synapse, &unique("alice")).await;
    let bot_id = synapse.register(&unique("bot"), "password").await;
    let alias_name = unique("room");
    let room_id = alice.create_room(Some(&alias_name), &[], false).await;
    let alias = format!("#{alias_name}:localhost");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut bot = start_bot(synapse, &bot_id, &alias, dir.path(), extra);
    bot.wait_up().await;
    alice
        .wait_joined(&room_id, "the bot to join", &bot_id)
        .await;
    (alice, bot_id, room_id, alias, dir, bot)
}

/// Start the bot `user` in the room `alias` with its data in `data_dir` (again, after a
/// stop); `extra` ends its table.
pub fn start_bot(
    synapse: &Synapse,
    user: &str,
    alias: &str,
    data_dir: &Path,
    extra: &str,
) -> Running {
    start(
        &bot_table(synapse, user, &[alias.to_owned()], extra),
        data_dir,
    )
}
