//! What the bot-mode parts share: the validated config, the logged-in client (while there is
//! one), the configured rooms' ids and the media links. The session owns the client; the
//! timeline, deliveries and the media route read it from here, so no two of them import
//! each other.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use matrix_sdk::ruma::{OwnedRoomId, OwnedRoomOrAliasId, RoomAliasId, RoomId};
use matrix_sdk::{Client, RoomState};
use patchbay_sdk::sync::{read, write};
use tokio::sync::watch;
use tracing::info;

use crate::config::Config;
use crate::media::MediaStore;

/// State shared by the sync loop, deliveries and the media route.
pub struct Shared {
    pub config: Config,
    /// The logged-in client, once there is one.
    pub client: watch::Sender<Option<Client>>,
    pub rooms: RwLock<Rooms>,
    pub media: MediaStore,
}

/// Configured room names ↔ room ids.
#[derive(Default)]
pub struct Rooms {
    pub by_name: HashMap<String, OwnedRoomId>,
    pub by_id: HashMap<OwnedRoomId, String>,
}

impl Shared {
    pub fn new(config: Config, data_dir: PathBuf) -> Self {
        let media = MediaStore::new(data_dir.join("media"));
        Shared {
            config,
            client: watch::channel(None).0,
            rooms: RwLock::new(Rooms::default()),
            media,
        }
    }

    pub fn client(&self) -> Option<Client> {
        self.client.borrow().clone()
    }

    /// The name routes use for a room: the configured name, else its id.
    pub fn room_name(&self, id: &RoomId) -> String {
        let rooms = read(&self.rooms);
        rooms
            .by_id
            .get(id)
            .cloned()
            .unwrap_or_else(|| id.to_string())
    }

    pub fn remember_room(&self, name: &str, id: OwnedRoomId) {
        let mut rooms = write(&self.rooms);
        rooms.by_name.insert(name.to_owned(), id.clone());
        rooms.by_id.insert(id, name.to_owned());
    }

    pub fn known_room(&self, name: &str) -> Option<OwnedRoomId> {
        let rooms = read(&self.rooms);
        rooms.by_name.get(name).cloned()
    }
}

/// Write a file atomically (temp file + rename), readable by the owner only.
pub(crate) fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// Resolve a configured room to its id, joining it if the bot is not in it yet.
pub async fn join_room(
    shared: &Shared,
    client: &Client,
    name: &str,
) -> Result<OwnedRoomId, matrix_sdk::Error> {
    if let Some(id) = shared.known_room(name)
        && client
            .get_room(&id)
            .is_some_and(|room| room.state() == RoomState::Joined)
    {
        return Ok(id);
    }
    let id: OwnedRoomId = if let Ok(alias) = <&RoomAliasId>::try_from(name) {
        client.resolve_room_alias(alias).await?.room_id
    } else {
        OwnedRoomId::try_from(name).map_err(|e| matrix_sdk::Error::UnknownError(Box::new(e)))?
    };
    if !client
        .get_room(&id)
        .is_some_and(|room| room.state() == RoomState::Joined)
    {
        let target = OwnedRoomOrAliasId::from(id.clone());
        client.join_room_by_id_or_alias(&target, &[]).await?;
        info!(room = name, "joined");
    }
    shared.remember_room(name, id.clone());
    Ok(id)
}
