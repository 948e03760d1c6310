//! The ghost table: what is known about each ghost, kept in `<data>/ghosts.json` and
//! rewritten atomically after every change (see [`super::ghosts`] for setting ghosts up).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use patchbay_sdk::DeliveryError;
use serde::{Deserialize, Serialize};
use tracing::warn;

/// One ghost.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Ghost {
    /// The remote author's plain name (what a Matrix pill of this ghost becomes elsewhere).
    pub nick: String,
    /// The display name set on Matrix (the route's nick format).
    #[serde(default)]
    pub display_name: Option<String>,
    /// The avatar URL the source gave, once uploaded and set.
    #[serde(default)]
    pub avatar_source: Option<String>,
    /// Rooms (ids) the ghost has joined.
    #[serde(default)]
    pub rooms: BTreeSet<String>,
}

/// The persisted table.
#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    /// User id → ghost.
    ghosts: BTreeMap<String, Ghost>,
    /// `account|author id` → user id.
    keys: BTreeMap<String, String>,
}

/// All ghosts of one account.
pub struct GhostStore {
    path: PathBuf,
    file: File,
}

impl GhostStore {
    /// Read the table (an unreadable one is logged and started afresh: ghosts that exist are
    /// found again, registration of an existing user is not an error).
    pub fn open(data_dir: &Path) -> Self {
        let path = data_dir.join("ghosts.json");
        let file = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                warn!(path = %path.display(), error = %e, "unreadable ghost table; starting afresh: ghosts are found again by their user ids and get their names and avatars again as they speak (move the file aside to keep it for a bug report)");
                File::default()
            }),
            Err(_) => File::default(),
        };
        GhostStore { path, file }
    }

    fn save(&self) -> Result<(), DeliveryError> {
        let json = serde_json::to_vec(&self.file)
            .map_err(|e| DeliveryError::retryable(format!("cannot encode the ghosts: {e}")))?;
        crate::state::write_private(&self.path, &json).map_err(|e| {
            DeliveryError::retryable(format!("cannot save {}: {e}", self.path.display()))
        })
    }

    pub fn user_for_key(&self, key: &str) -> Option<&str> {
        self.file.keys.get(key).map(String::as_str)
    }

    pub fn get(&self, user: &str) -> Option<&Ghost> {
        self.file.ghosts.get(user)
    }

    /// Every ghost, by user id.
    pub fn all(&self) -> impl Iterator<Item = (&String, &Ghost)> {
        self.file.ghosts.iter()
    }

    /// Let `key` name the ghost `user` too (a renamed author).
    pub fn alias(&mut self, key: String, user: &str) -> Result<(), DeliveryError> {
        if self.file.keys.get(&key).map(String::as_str) != Some(user) {
            self.file.keys.insert(key, user.to_owned());
            self.save()?;
        }
        Ok(())
    }

    /// Record a ghost just registered, under the key of the author it stands for.
    pub(super) fn add(
        &mut self,
        user: &str,
        ghost: Ghost,
        key: String,
    ) -> Result<(), DeliveryError> {
        self.file.ghosts.insert(user.to_owned(), ghost);
        self.file.keys.insert(key, user.to_owned());
        self.save()
    }

    pub(super) fn update(
        &mut self,
        user: &str,
        f: impl FnOnce(&mut Ghost),
    ) -> Result<(), DeliveryError> {
        if let Some(ghost) = self.file.ghosts.get_mut(user) {
            f(ghost);
        }
        self.save()
    }
}
