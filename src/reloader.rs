//! How SIGHUP and the admin API ask the running gateway to reload its config file, and what
//! they get back. The gateway's run loop serves the requests (`gateway/reload.rs` says what a
//! reload does); this module is only the asking, so that the admin API and the gateway both
//! build on it without importing each other.

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

/// What one reload changed.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadReport {
    /// Accounts the new config names and the old one did not; they were started.
    pub accounts_added: Vec<String>,
    /// Accounts the old config named and the new one does not; they were stopped.
    pub accounts_removed: Vec<String>,
    /// Accounts whose table changed; each was stopped and started again, alone.
    pub accounts_restarted: Vec<String>,
    /// Whether the routing table (routes, filters, nick formats, rate limits) changed.
    pub routes_changed: bool,
    /// Deliveries left waiting in the removed accounts' outboxes; they stay there, and are
    /// delivered should the account come back.
    pub waiting_in_removed: u64,
    /// Settings that changed in the file but apply only at the next start (`[general]`,
    /// `[http]`, `[bus]`), by table.
    pub needs_restart: Vec<String>,
}

/// A config that was not applied: the running one stays. `errors` is exactly what
/// `patchbay check` prints for the file (or why the gateway could not reload at all).
#[derive(Debug, thiserror::Error)]
#[error("{errors}")]
pub struct ReloadRefused {
    pub errors: String,
}

pub(crate) type Reply = oneshot::Sender<Result<ReloadReport, ReloadRefused>>;

/// How SIGHUP and the admin API ask the running gateway to reload its config file.
#[derive(Clone, Debug)]
pub struct Reloader {
    requests: mpsc::Sender<Reply>,
}

/// The gateway's end of a [`Reloader`]: the requests it serves.
pub struct ReloadRequests {
    requests: mpsc::Receiver<Reply>,
}

impl Reloader {
    /// A reloader and the requests end the gateway serves.
    pub fn channel() -> (Reloader, ReloadRequests) {
        // One request waiting is enough: a second one waits for room, and reloads are rare.
        let (tx, rx) = mpsc::channel(4);
        (Reloader { requests: tx }, ReloadRequests { requests: rx })
    }

    /// Re-read the config file and apply it; returns what changed, or why nothing did.
    pub async fn reload(&self) -> Result<ReloadReport, ReloadRefused> {
        let (reply, answer) = oneshot::channel();
        let gone = || ReloadRefused {
            errors: "the gateway is not running (stopping or stopped); nothing was reloaded".into(),
        };
        self.requests.send(reply).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

impl ReloadRequests {
    /// The next request, or None once every [`Reloader`] is gone.
    pub(crate) async fn next(&mut self) -> Option<Reply> {
        self.requests.recv().await
    }
}
