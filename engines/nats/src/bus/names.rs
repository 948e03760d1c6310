//! Bucket `P_names`: who each account is on its network, as its holder announced, so that
//! every instance knows the gateway's own words (see the gateway's intake).
//!
//! One entry per account, keyed by its token, with no age limit: an announcement holds until
//! the account announces again, on whichever instance runs it next.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;

use super::{Bus, BusError};
use crate::token::{token, untoken};

/// How many announcements may wait for the gateway to take them.
const QUEUE: usize = 256;

impl Bus {
    /// Record what `account` announced (the caller's encoding).
    pub async fn names_put(&self, account: &str, value: Bytes) -> Result<(), BusError> {
        self.names
            .put(token(account), value)
            .await
            .map_err(|err| BusError::new("recording an account's names", err))?;
        Ok(())
    }

    /// Every account's last announcement, then each new one, as (account, value), for as long
    /// as the receiver is kept. The watch is started again after a failure.
    pub async fn names_watch(&self) -> Result<mpsc::Receiver<(String, Bytes)>, BusError> {
        let mut watch = self
            .names
            .watch_with_history(">")
            .await
            .map_err(|err| BusError::new("watching the accounts' names", err))?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let names = self.names.clone();
        tokio::spawn(async move {
            loop {
                while let Some(entry) = watch.next().await {
                    let entry = match entry {
                        Ok(entry) => entry,
                        Err(err) => {
                            tracing::debug!("watching the accounts' names: {err}");
                            continue;
                        }
                    };
                    let Some(account) = untoken(&entry.key) else {
                        continue;
                    };
                    if tx.send((account, entry.value)).await.is_err() {
                        return;
                    }
                }
                if tx.is_closed() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                match names.watch_with_history(">").await {
                    Ok(again) => watch = again,
                    Err(err) => tracing::warn!("cannot watch the accounts' names, retrying: {err}"),
                }
            }
        });
        Ok(rx)
    }
}
