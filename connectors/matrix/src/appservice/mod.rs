//! Appservice mode: the account is a Matrix application service, and every remote author
//! appears in Matrix rooms as a user of their own (a ghost).
//!
//! Guarantees:
//! - **Nothing lost, nothing twice inbound**: a transaction from the homeserver is answered
//!   200 only after every event of it was durably accepted by the gateway; any failure
//!   answers 5xx and the homeserver sends the same transaction again. Done transaction ids
//!   are kept on disk, so a repeated one (a lost 200, a restart) is acknowledged without
//!   relaying its events again.
//! - **Stable identities**: ghost ids come from the author alone (see [`naming`]) and what was
//!   set up for them is kept on disk (see [`ghosts`]): a restart changes nothing.
//! - **Idempotent outbound**: sends carry transaction ids made from the gateway's event id.
//!
//! Layout:
//! - [`config`]: the table in this mode.
//! - [`naming`]: ghost localparts, escaping, namespace regexes (pure).
//! - [`registration`]: tokens and the registration file.
//! - [`client`]: the calls to the homeserver (as the bot or masquerading as a ghost).
//! - `ghost_store`: the ghost table, kept on disk.
//! - [`ghosts`]: setting ghosts up (register, profile, join).
//! - [`mentions`]: mentions both ways (pure).
//! - [`api`]: the AS API on patchbay's HTTP listener (transactions, queries, ping).
//! - [`deliver`]: deliveries sent as ghosts.
//! - `media`: Matrix attachments as `/media/...` links for other networks.
//!
//! Encrypted rooms are not supported in this mode: the AS has no device or keys, so it
//! cannot read encrypted events (they are skipped with a warning), and what it sends into an
//! encrypted room goes unencrypted. [`check_notes`] says so for `patchbay check`.

pub mod api;
pub mod client;
pub mod config;
pub mod deliver;
mod ghost_store;
pub mod ghosts;
mod media;
pub mod mentions;
pub mod naming;
pub mod registration;
mod txnlog;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock, RwLock};
use std::time::Duration;

use patchbay_sdk::sync::{lock, read, write};
use patchbay_sdk::{
    Backoff, Connection, ConnectorContext, ConnectorError, DeliveryError, Ended, EventSink,
    HealthEvent, Supervisor,
};
use tracing::{debug, info, warn};

use self::client::AsClient;
use self::config::AppServiceConfig;
use self::ghost_store::GhostStore;
use self::registration::{Tokens, load_or_create_tokens};
use self::txnlog::TxnLog;

/// Configured room names ↔ room ids.
#[derive(Default)]
struct Rooms {
    by_name: HashMap<String, String>,
    by_id: HashMap<String, String>,
}

/// State shared by the AS API, deliveries and the run loop.
pub struct AppService {
    pub config: AppServiceConfig,
    data_dir: PathBuf,
    /// Made on first use (by the API or the run loop), once.
    tokens: OnceLock<Tokens>,
    tokens_init: Mutex<()>,
    client: OnceLock<AsClient>,
    /// Where inbound events go; set when the connector runs.
    sink: OnceLock<EventSink>,
    /// True while [`run`] runs, from its first round of joins: transactions are refused (and
    /// so retried by the homeserver) before and after, never taken by a connector that has
    /// stopped nor before the configured rooms are resolved to their ids.
    running: std::sync::atomic::AtomicBool,
    /// Kept in `<data>/rooms.json` too, so that after a restart events are named by the
    /// configured room (alias) from the first transaction on.
    rooms: RwLock<Rooms>,
    pub(crate) ghosts: tokio::sync::Mutex<GhostStore>,
    txns: tokio::sync::Mutex<Option<TxnLog>>,
    /// Display names of Matrix members, `(room id, user id)` → name, from member events.
    members: Mutex<HashMap<(String, String), String>>,
    /// Tokens of Matrix attachments served as links (see `media`).
    pub(crate) media: crate::media::MediaStore,
}

impl Rooms {
    fn load(data_dir: &std::path::Path) -> Self {
        let by_name: HashMap<String, String> = std::fs::read(data_dir.join("rooms.json"))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        let by_id = by_name
            .iter()
            .map(|(name, id)| (id.clone(), name.clone()))
            .collect();
        Rooms { by_name, by_id }
    }
}

impl AppService {
    pub fn new(config: AppServiceConfig, data_dir: PathBuf) -> Self {
        let rooms = RwLock::new(Rooms::load(&data_dir));
        AppService {
            ghosts: tokio::sync::Mutex::new(GhostStore::open(&data_dir)),
            config,
            tokens: OnceLock::new(),
            tokens_init: Mutex::new(()),
            client: OnceLock::new(),
            sink: OnceLock::new(),
            running: std::sync::atomic::AtomicBool::new(false),
            rooms,
            txns: tokio::sync::Mutex::new(None),
            members: Mutex::new(HashMap::new()),
            media: crate::media::MediaStore::new(data_dir.join("media")),
            data_dir,
        }
    }

    /// The tokens, read or made on first use.
    pub fn tokens(&self) -> Result<&Tokens, registration::RegistrationError> {
        if let Some(tokens) = self.tokens.get() {
            return Ok(tokens);
        }
        let _guard = lock(&self.tokens_init);
        if let Some(tokens) = self.tokens.get() {
            return Ok(tokens);
        }
        let tokens = load_or_create_tokens(&self.data_dir)?;
        Ok(self.tokens.get_or_init(|| tokens))
    }

    /// The homeserver client (needs the tokens).
    pub fn client(&self) -> Result<&AsClient, DeliveryError> {
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        let tokens = self
            .tokens()
            .map_err(|e| DeliveryError::retryable(e.to_string()))?;
        Ok(self
            .client
            .get_or_init(|| AsClient::new(&self.config.homeserver, &tokens.as_token)))
    }

    /// Whether the connector runs (see the `running` field).
    pub(crate) fn is_running(&self) -> bool {
        self.running.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// True for the bot and for every user of the ghost namespace: their events are ours.
    pub fn is_own(&self, user: &str) -> bool {
        let Some((local, server)) = user.strip_prefix('@').and_then(|u| u.split_once(':')) else {
            return false;
        };
        server == self.config.server_name
            && (local == self.config.bot_localpart
                || self.config.ghost_template.matches_localpart(local))
    }

    /// The name routes use for a room: the configured name, else its id.
    pub fn room_name(&self, id: &str) -> String {
        let rooms = read(&self.rooms);
        rooms
            .by_id
            .get(id)
            .cloned()
            .unwrap_or_else(|| id.to_owned())
    }

    fn remember_room(&self, name: &str, id: &str) {
        let mut rooms = write(&self.rooms);
        if rooms.by_name.get(name).map(String::as_str) == Some(id) {
            return;
        }
        rooms.by_name.insert(name.to_owned(), id.to_owned());
        rooms.by_id.insert(id.to_owned(), name.to_owned());
        let json = serde_json::to_vec(&rooms.by_name).unwrap_or_default();
        if let Err(e) = crate::state::write_private(&self.data_dir.join("rooms.json"), &json) {
            warn!(error = %e, "cannot save the room table; check the account's data dir (writable, disk space): until then the bot looks its rooms up again at the next start");
        }
    }

    /// Join a room as the bot (again: a kicked bot comes back) and remember its id.
    async fn join_room(&self, name: &str) -> Result<String, DeliveryError> {
        let id = self
            .client()?
            .join(None, name)
            .await
            .map_err(|e| e.classify())?;
        self.remember_room(name, &id);
        Ok(id)
    }

    /// The room id of a room as routes name it, joining it as the bot if needed.
    pub async fn room_id(&self, name: &str) -> Result<String, DeliveryError> {
        if let Some(id) = read(&self.rooms).by_name.get(name) {
            return Ok(id.clone());
        }
        self.join_room(name).await
    }

    fn remember_member(&self, room: &str, user: &str, name: Option<&str>) {
        let mut members = lock(&self.members);
        let key = (room.to_owned(), user.to_owned());
        match name {
            Some(name) => members.insert(key, name.to_owned()),
            None => members.remove(&key),
        };
    }

    /// A Matrix member's display name, from the member events seen or asked of the server.
    async fn member_name(&self, room: &str, user: &str) -> Option<String> {
        let cached = lock(&self.members)
            .get(&(room.to_owned(), user.to_owned()))
            .cloned();
        if cached.is_some() {
            return cached;
        }
        let name = self.client().ok()?.member_name(room, user).await.ok()??;
        self.remember_member(room, user, Some(&name));
        Some(name)
    }
}

/// What `patchbay check` says about an account in this mode: what it does not do, plainly,
/// so an operator learns it before the users do.
pub fn check_notes(config: &AppServiceConfig) -> Vec<String> {
    let mut notes = vec![
        "appservice mode does not bridge encrypted rooms: the application service has no \
         device or keys, so encrypted messages there are skipped (a warning each) and what it \
         sends into them goes unencrypted; use a bot-mode account for encrypted rooms"
            .to_owned(),
    ];
    if config.media_public_url.is_none() {
        notes.push(
            "Matrix attachments reach other networks by name only (`[cat.png]`): set \
             `media_public_url` to patchbay's listener as people reach it to send links"
                .to_owned(),
        );
    }
    notes
}

/// Run the account: check the homeserver knows us, join the configured rooms (retrying
/// what fails), then serve until shutdown. Events arrive through [`api`], not from here.
pub async fn run(
    service: std::sync::Arc<AppService>,
    ctx: ConnectorContext,
) -> Result<(), ConnectorError> {
    std::fs::create_dir_all(&ctx.data_dir).map_err(|e| {
        ConnectorError::with_source(format!("cannot create {}", ctx.data_dir.display()), e)
    })?;
    service
        .tokens()
        .map_err(|e| ConnectorError::new(e.to_string()))?;
    let _ = service.sink.set(ctx.sink.clone());
    let pruned = service.media.prune(service.config.media_keep);
    if pruned > 0 {
        info!(links = pruned, "expired media links forgotten");
    }
    let result = serve(&service, &ctx).await;
    service
        .running
        .store(false, std::sync::atomic::Ordering::SeqCst);
    result
}

/// How often a running account asks whether the homeserver still knows it.
const RECHECK: Duration = Duration::from_secs(60);
/// How soon configured rooms that could not be joined are tried again.
const JOIN_RETRY: Duration = Duration::from_secs(1);
/// The first wait after the homeserver did not answer; it doubles after every failure.
const RECONNECT_FIRST: Duration = Duration::from_millis(500);
/// The longest wait between attempts.
const RECONNECT_MAX: Duration = Duration::from_secs(32);

/// Stay "connected" until shutdown: the sdk's [`Supervisor`] runs [`Serving`] again whenever
/// the homeserver stops answering or forgets the application service.
async fn serve(service: &AppService, ctx: &ConnectorContext) -> Result<(), ConnectorError> {
    let mut serving = Serving {
        service,
        ctx,
        pending: service.config.rooms.clone(),
    };
    let backoff = Backoff::new(RECONNECT_FIRST, RECONNECT_MAX);
    Supervisor::new(ctx, backoff).run(&mut serving).await
}

/// One stretch of the homeserver answering: events arrive through [`api`]; this checks the
/// registration now and then, and joins the configured rooms not joined yet.
struct Serving<'a> {
    service: &'a AppService,
    ctx: &'a ConnectorContext,
    /// Configured rooms not joined yet; kept across connections.
    pending: Vec<String>,
}

impl Connection for Serving<'_> {
    async fn connect_once(&mut self) -> Ended {
        let mut up = false;
        // Whether the homeserver has reached us at the registered url this connection.
        let mut reached = false;
        loop {
            if let Err(ended) = self.check(up).await {
                return ended;
            }
            let mut still = Vec::new();
            for name in std::mem::take(&mut self.pending) {
                match self.service.join_room(&name).await {
                    Ok(id) => info!(room = %name, %id, "joined"),
                    Err(e) => {
                        crate::health::JoinFailed {
                            room: &name,
                            error: &e,
                        }
                        .emit(&self.ctx.sink);
                        still.push(name);
                    }
                }
            }
            self.pending = still;
            self.service
                .running
                .store(true, std::sync::atomic::Ordering::SeqCst);
            self.ctx.state.up();
            if !reached {
                reached = self.ping(up).await;
            }
            up = true;
            let wait = if self.pending.is_empty() {
                RECHECK
            } else {
                JOIN_RETRY
            };
            tokio::select! {
                _ = self.ctx.shutdown.cancelled() => return Ended::Shutdown,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

impl Serving<'_> {
    /// Have the homeserver call our ping at the registered url ([`AsClient::ping`]), so that
    /// it sends what it held for us while we were away now rather than after its backoff, and
    /// so that a url it cannot reach is said at start, not found out from missing messages.
    /// Whether it is done: reached, or a homeserver without the ping (not asked again).
    async fn ping(&self, again: bool) -> bool {
        let Ok(client) = self.service.client() else {
            return false;
        };
        let config = &self.service.config;
        let transaction = format!("patchbay-{}", patchbay_sdk::Timestamp::now().0);
        match client.ping(&config.id, &transaction).await {
            Ok(took) => {
                info!(url = %config.url, round_trip_ms = took.as_millis() as u64, "the homeserver reaches this gateway");
                true
            }
            Err(e) if e.errcode() == Some("M_UNRECOGNIZED") => {
                debug!(error = %e, "the homeserver has no application service ping");
                true
            }
            Err(e) if !again => {
                warn!(url = %config.url, error = %e, "the homeserver could not ping this gateway, so Matrix messages may not arrive: check that `appservice_url` is this listener as the homeserver reaches it, and that the homeserver loaded the registration `patchbay matrix-registration` writes now; asking again");
                false
            }
            Err(e) => {
                debug!(error = %e, "the homeserver still cannot reach this gateway");
                false
            }
        }
    }

    /// Whether the homeserver answers and knows the `as_token` as our bot; how the connection
    /// ended when not.
    async fn check(&self, up: bool) -> Result<(), Ended> {
        let ended = |reason| {
            if up {
                Ended::Lost(reason)
            } else {
                Ended::Failed(reason)
            }
        };
        let client = self.service.client().map_err(|e| ended(e.to_string()))?;
        let bot = self.service.config.bot_user();
        match client.whoami().await {
            Ok(user) if user == bot => Ok(()),
            Ok(user) => Err(Ended::Fatal(format!(
                "the as_token belongs to {user}, not {bot}"
            ))),
            Err(e) if e.errcode() == Some("M_UNKNOWN_TOKEN") => Err(ended(format!(
                "the homeserver does not know this application service ({e}): add the \
                 file `patchbay matrix-registration` writes to its app_service_config_files"
            ))),
            Err(e) => Err(ended(format!("homeserver unreachable: {e}"))),
        }
    }
}
