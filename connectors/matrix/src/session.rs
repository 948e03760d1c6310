//! The bot's session: log in (once: the device and its keys persist), join the configured
//! rooms, and sync, emitting every relayable timeline event.
//!
//! The sync position is our own file, written only after every event of a sync response was
//! durably accepted by the gateway, so what was said while patchbay was down is relayed after a
//! restart, and a crash mid-batch replays that batch rather than losing it.
//!
//! Staying connected is the sdk's [`Supervisor`]: a failed login or sync ends one connection
//! and it waits with the shared backoff before the next; the logged-in client outlives a
//! failed sync, so only a refused session logs in again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use matrix_sdk::authentication::matrix::MatrixSession;
use matrix_sdk::config::{RequestConfig, SyncSettings};
use matrix_sdk::ruma::UInt;
use matrix_sdk::ruma::api::client::filter::{FilterDefinition, RoomEventFilter, RoomFilter};
use matrix_sdk::ruma::api::client::sync::sync_events::v3::Filter;
use matrix_sdk::ruma::api::error::ErrorKind;
use matrix_sdk::store::RoomLoadSettings;
use matrix_sdk::{AuthSession, Client, SessionMeta, SessionTokens};
use patchbay_sdk::sync::read;
use patchbay_sdk::{
    Backoff, Connection, ConnectorContext, ConnectorError, EmitError, Ended, HealthEvent,
    Supervisor,
};
use tracing::{debug, info};

use crate::config::Credentials;
use crate::health::{JoinFailed, RemovedFromRoom, SyncPositionNotSaved};
use crate::state::{Shared, join_room, write_private};
use crate::timeline;

/// Why logging in, or staying logged in, failed.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("cannot open the client store: {0}")]
    Store(#[source] matrix_sdk::ClientBuildError),
    #[error("cannot restore the saved session: {0}")]
    Restore(#[source] matrix_sdk::Error),
    #[error("login refused for {user}: {source}")]
    Refused {
        user: String,
        source: matrix_sdk::Error,
    },
    #[error("login failed: {0}")]
    Login(#[source] matrix_sdk::Error),
    #[error("bad user id: {0}")]
    UserId(#[source] matrix_sdk::ruma::IdParseError),
    /// The client that asks who an access token belongs to could not be made.
    #[error("cannot ask who the access token is: {0}")]
    ProbeBuild(#[source] matrix_sdk::ClientBuildError),
    #[error("cannot ask who the access token is: {0}")]
    ProbeSession(#[source] matrix_sdk::Error),
    #[error("the access token was refused: {0}")]
    TokenRefused(#[source] matrix_sdk::HttpError),
    #[error("whoami failed: {0}")]
    Whoami(#[source] matrix_sdk::HttpError),
    #[error("the access token has no device; log in with a password")]
    NoDevice,
    #[error("cannot use the access token: {0}")]
    UseToken(#[source] matrix_sdk::Error),
    #[error("cannot encode the session: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("cannot save the session: {0}")]
    Save(#[source] std::io::Error),
    /// A password account's session is gone (logged out elsewhere, token revoked): it logs
    /// in again on a new device.
    #[error("the session was refused: {0}")]
    SessionRefused(#[source] matrix_sdk::Error),
    /// An access-token account's session is gone: only the operator can give a new token.
    #[error("the homeserver no longer accepts the session ({source}); remove {} to log in again", path.display())]
    SessionGone {
        path: PathBuf,
        source: matrix_sdk::Error,
    },
    #[error("sync failed: {0}")]
    Sync(#[source] matrix_sdk::Error),
    /// Not acknowledged: the batch is synced again from the old position.
    #[error("the gateway could not record events; retrying the batch: {0}")]
    Record(#[source] EmitError),
}

impl SessionError {
    /// How the connection ended: for good when trying again cannot help, else lost (it had
    /// synced: `up`) or failed (it had not).
    fn ended(&self, up: bool) -> Ended {
        use SessionError::*;
        let reason = self.to_string();
        match self {
            Restore(_)
            | Refused { .. }
            | UserId(_)
            | TokenRefused(_)
            | NoDevice
            | UseToken(_)
            | Encode(_)
            | Save(_)
            | SessionGone { .. } => Ended::Fatal(reason),
            Store(_) | Login(_) | ProbeBuild(_) | ProbeSession(_) | Whoami(_)
            | SessionRefused(_) | Sync(_) | Record(_) => {
                if up {
                    Ended::Lost(reason)
                } else {
                    Ended::Failed(reason)
                }
            }
        }
    }
}

fn session_path(dir: &Path) -> PathBuf {
    dir.join("session.json")
}

fn token_path(dir: &Path) -> PathBuf {
    dir.join("sync-token")
}

/// How often matrix-sdk retries a request itself before the error reaches us.
const REQUEST_RETRIES: usize = 2;
/// How long one request may take; above [`SYNC_WAIT`], so a long poll is not cut short.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the homeserver may hold a sync open when nothing happens (the long poll).
const SYNC_WAIT: Duration = Duration::from_secs(30);
/// Events per room in a sync's timeline; older ones are fetched as a gap (see `timeline`).
const TIMELINE_LIMIT: u32 = 100;

/// The first wait before connecting again; it doubles after every failed attempt.
const RECONNECT_FIRST: Duration = Duration::from_millis(500);
/// The longest wait between attempts.
const RECONNECT_MAX: Duration = Duration::from_secs(32);

/// Stay connected until shutdown: the sdk's [`Supervisor`] runs [`OneConnection`] again and
/// again, with its backoff started over after every connection that synced.
pub async fn run(shared: Arc<Shared>, ctx: ConnectorContext) -> Result<(), ConnectorError> {
    let dir = ctx.data_dir.clone();
    std::fs::create_dir_all(&dir)
        .map_err(|e| ConnectorError::with_source(format!("cannot create {}", dir.display()), e))?;
    let pruned = shared.media.prune(shared.config.media_keep);
    if pruned > 0 {
        info!(links = pruned, "expired media links forgotten");
    }
    let mut connection = OneConnection {
        shared: &shared,
        ctx: &ctx,
        client: None,
        sync: SyncPosition::default(),
    };
    let backoff = Backoff::new(RECONNECT_FIRST, RECONNECT_MAX);
    let result = Supervisor::new(&ctx, backoff).run(&mut connection).await;
    shared.client.send_replace(None);
    result
}

/// One connection of the account, and what outlives it: the logged-in client (a failed sync
/// is retried on the same session) and where the sync stands.
struct OneConnection<'a> {
    shared: &'a Shared,
    ctx: &'a ConnectorContext,
    client: Option<Client>,
    sync: SyncPosition,
}

/// Where the sync loop of a session stands; made afresh at each login.
#[derive(Default)]
struct SyncPosition {
    /// The saved `next_batch`; `None` before the very first sync of the account.
    token: Option<String>,
    /// Configured rooms not joined yet (tried again every round).
    pending_joins: Vec<String>,
    /// No sync of this session has succeeded yet.
    first: bool,
}

impl Connection for OneConnection<'_> {
    async fn connect_once(&mut self) -> Ended {
        let client = match &self.client {
            Some(client) => client.clone(),
            None => {
                let login = tokio::select! {
                    _ = self.ctx.shutdown.cancelled() => return Ended::Shutdown,
                    result = login(self.shared, &self.ctx.data_dir) => result,
                };
                let client = match login {
                    Ok(client) => client,
                    Err(e) => return e.ended(false),
                };
                self.sync = SyncPosition {
                    token: std::fs::read_to_string(token_path(&self.ctx.data_dir))
                        .ok()
                        .map(|t| t.trim().to_owned())
                        .filter(|t| !t.is_empty()),
                    pending_joins: self.shared.config.rooms.clone(),
                    first: true,
                };
                self.shared.client.send_replace(Some(client.clone()));
                self.client = Some(client.clone());
                client
            }
        };
        let mut up = false;
        let Err(e) = sync_loop(self.shared, &client, self.ctx, &mut self.sync, &mut up).await
        else {
            return Ended::Shutdown;
        };
        if let SessionError::SessionRefused(_) = e {
            // A password account logs in again on a new device; the sync position is kept,
            // so nothing said meanwhile is skipped.
            self.shared.client.send_replace(None);
            self.client = None;
            drop(client);
            let dir = &self.ctx.data_dir;
            let _ = std::fs::remove_file(session_path(dir));
            let _ = std::fs::remove_dir_all(dir.join("store"));
        }
        e.ended(up)
    }
}

/// Build the client on the persisted stores and restore the saved session, or log in and save
/// it.
async fn login(shared: &Shared, dir: &Path) -> Result<Client, SessionError> {
    let config = &shared.config;
    let saved: Option<MatrixSession> = std::fs::read(session_path(dir))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    let store = dir.join("store");
    if saved.is_none() && store.exists() {
        // A store without a session belongs to a device we cannot use any more.
        let _ = std::fs::remove_dir_all(&store);
    }
    let client = Client::builder()
        .homeserver_url(&config.homeserver)
        .sqlite_store(&store, config.store_passphrase.as_deref())
        .request_config(
            RequestConfig::new()
                .retry_limit(REQUEST_RETRIES)
                .timeout(REQUEST_TIMEOUT),
        )
        .build()
        .await
        .map_err(SessionError::Store)?;
    if let Some(session) = saved {
        client
            .matrix_auth()
            .restore_session(session, RoomLoadSettings::default())
            .await
            .map_err(SessionError::Restore)?;
        info!(user = %config.user, "matrix session restored");
        return Ok(client);
    }
    let session = match &config.credentials {
        Credentials::Password(password) => {
            let response = client
                .matrix_auth()
                .login_username(&config.user, password)
                .initial_device_display_name(&config.device_name)
                .send()
                .await
                .map_err(|e| match e.client_api_error_kind() {
                    Some(ErrorKind::Forbidden) | Some(ErrorKind::InvalidUsername) => {
                        SessionError::Refused {
                            user: config.user.clone(),
                            source: e,
                        }
                    }
                    _ => SessionError::Login(e),
                })?;
            MatrixSession::from(&response)
        }
        Credentials::AccessToken(token) => {
            let probe = Client::builder()
                .homeserver_url(&config.homeserver)
                .build()
                .await
                .map_err(SessionError::ProbeBuild)?;
            let tokens = SessionTokens {
                access_token: token.clone(),
                refresh_token: None,
            };
            // whoami needs a session: restore a provisional one to ask who the token is.
            let whoami = probe
                .matrix_auth()
                .restore_session(
                    MatrixSession {
                        meta: SessionMeta {
                            user_id: config
                                .user
                                .as_str()
                                .try_into()
                                .map_err(SessionError::UserId)?,
                            device_id: "PROBE".into(),
                        },
                        tokens: tokens.clone(),
                    },
                    RoomLoadSettings::default(),
                )
                .await
                .map_err(SessionError::ProbeSession);
            whoami?;
            let who = probe
                .whoami()
                .await
                .map_err(|e| match e.client_api_error_kind() {
                    Some(ErrorKind::UnknownToken(_)) => SessionError::TokenRefused(e),
                    _ => SessionError::Whoami(e),
                })?;
            let device_id = who.device_id.ok_or(SessionError::NoDevice)?;
            let session = MatrixSession {
                meta: SessionMeta {
                    user_id: who.user_id,
                    device_id,
                },
                tokens,
            };
            client
                .restore_session(AuthSession::Matrix(session.clone()))
                .await
                .map_err(SessionError::UseToken)?;
            session
        }
    };
    let json = serde_json::to_vec(&session).map_err(SessionError::Encode)?;
    write_private(&session_path(dir), &json).map_err(SessionError::Save)?;
    info!(user = %config.user, device = %session.meta.device_id, "matrix login, new device");
    Ok(client)
}

fn sync_filter() -> Filter {
    let mut timeline = RoomEventFilter::default();
    timeline.limit = Some(UInt::from(TIMELINE_LIMIT));
    let mut room = RoomFilter::default();
    room.timeline = timeline;
    let mut definition = FilterDefinition::default();
    definition.room = room;
    Filter::FilterDefinition(definition)
}

/// Sync round after round from `position` until a sync fails (`Err`) or shutdown (`Ok`); `up`
/// is set once a sync succeeded.
async fn sync_loop(
    shared: &Shared,
    client: &Client,
    ctx: &ConnectorContext,
    position: &mut SyncPosition,
    up: &mut bool,
) -> Result<(), SessionError> {
    let dir = &ctx.data_dir;
    let SyncPosition {
        token,
        pending_joins,
        first,
    } = position;
    loop {
        // Join what is not joined yet (retried on every round until it works). On a first
        // start, only after the initial sync has marked where relaying begins, so nothing said
        // after the join is taken for history.
        let mut still_pending = Vec::new();
        let joins = if token.is_none() {
            Vec::new()
        } else {
            std::mem::take(pending_joins)
        };
        still_pending.append(pending_joins);
        for name in joins {
            if let Err(e) = join_room(shared, client, &name).await {
                JoinFailed {
                    room: &name,
                    error: &e,
                }
                .emit(&ctx.sink);
                still_pending.push(name);
            }
        }
        *pending_joins = still_pending;

        let mut settings = SyncSettings::default().filter(sync_filter());
        settings = match &token {
            Some(token) => settings.token(token.clone()),
            None => settings,
        };
        if !*first || token.is_none() {
            settings = settings.timeout(if *first { Duration::ZERO } else { SYNC_WAIT });
        }
        let response = tokio::select! {
            _ = ctx.shutdown.cancelled() => return Ok(()),
            response = client.sync_once(settings) => response,
        };
        let response = match response {
            Ok(response) => response,
            Err(e) => {
                if let Some(ErrorKind::UnknownToken(_)) = e.client_api_error_kind() {
                    if matches!(shared.config.credentials, Credentials::Password(_)) {
                        return Err(SessionError::SessionRefused(e));
                    }
                    return Err(SessionError::SessionGone {
                        path: session_path(dir),
                        source: e,
                    });
                }
                return Err(SessionError::Sync(e));
            }
        };
        *up = true;
        ctx.state.up();
        if token.is_none() {
            // First start: history from before the bot existed is not relayed.
            debug!("initial sync done");
        } else {
            match timeline::process(shared, client, ctx, &response, token.as_deref()).await {
                Ok(()) => {}
                Err(EmitError::Closed) => return Ok(()),
                Err(e) => return Err(SessionError::Record(e)),
            }
        }
        timeline::accept_invites(shared, client, &response).await;
        // A configured room the bot was removed from (kicked) is joined again; a ban makes
        // that fail, and it is retried every round with a warning.
        for room_id in response.rooms.left.keys() {
            let rooms = read(&shared.rooms);
            if let Some(name) = rooms.by_id.get(room_id)
                && shared.config.rooms.contains(name)
                && !pending_joins.contains(name)
            {
                RemovedFromRoom { room: name }.emit(&ctx.sink);
                pending_joins.push(name.clone());
            }
        }
        if let Err(e) = write_private(&token_path(dir), response.next_batch.as_bytes()) {
            SyncPositionNotSaved { error: &e }.emit(&ctx.sink);
        }
        *token = Some(response.next_batch.clone());
        *first = false;
    }
}
