//! Connecting and logging in: host-key check, public-key or anonymous authentication.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use patchbay_sdk::Ended;
use russh::client;
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};

use crate::config::Config;
use crate::keys::{HostKeyPolicy, KeyError};

/// The SSH client handler: checks the host key, nothing else.
pub struct Client {
    policy: HostKeyPolicy,
    error: Arc<Mutex<Option<KeyError>>>,
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            PublicKeyOrCertificate::Certificate(cert) => cert.public_key().clone().into(),
        };
        match self.policy.check(&key) {
            Ok(()) => Ok(true),
            Err(err) => {
                if let Ok(mut slot) = self.error.lock() {
                    *slot = Some(err);
                }
                Ok(false)
            }
        }
    }
}

/// Connect and authenticate: with the key, or (ssh-chat) anonymously with keyboard-interactive
/// and no answers. A host key that fails the check or a refused login is fatal; anything else
/// is retried ([`Ended::Failed`]).
pub async fn login(
    config: &Config,
    key: Option<Arc<PrivateKey>>,
    policy: &HostKeyPolicy,
) -> Result<client::Handle<Client>, Ended> {
    let mut ssh_config = client::Config {
        keepalive_interval: Some(Duration::from_secs(30)),
        keepalive_max: 3,
        nodelay: true,
        ..Default::default()
    };
    ssh_config.inactivity_timeout = None;
    let key_error = Arc::new(Mutex::new(None));
    let handler = Client {
        policy: policy.clone(),
        error: key_error.clone(),
    };
    let connect = client::connect(Arc::new(ssh_config), config.server.as_str(), handler);
    let mut handle = match tokio::time::timeout(Duration::from_secs(20), connect).await {
        Ok(Ok(handle)) => handle,
        Ok(Err(err)) => {
            if let Some(key_err) = key_error.lock().ok().and_then(|mut e| e.take()) {
                return Err(Ended::Fatal(key_err.to_string()));
            }
            return Err(Ended::Failed(format!(
                "connect to {}: {err}",
                config.server
            )));
        }
        Err(_) => {
            return Err(Ended::Failed(format!(
                "connect to {} timed out",
                config.server
            )));
        }
    };
    let user = config.nick.clone();
    let authenticated = match &key {
        Some(key) => {
            let hash = handle
                .best_supported_rsa_hash()
                .await
                .ok()
                .flatten()
                .flatten();
            handle
                .authenticate_publickey(user, PrivateKeyWithHashAlg::new(key.clone(), hash))
                .await
                .map(|r| r.success())
        }
        None => {
            match handle
                .authenticate_keyboard_interactive_start(user, None)
                .await
            {
                Ok(client::KeyboardInteractiveAuthResponse::Success) => Ok(true),
                Ok(client::KeyboardInteractiveAuthResponse::InfoRequest { prompts, .. }) => {
                    let answers = vec![String::new(); prompts.len()];
                    handle
                        .authenticate_keyboard_interactive_respond(answers)
                        .await
                        .map(|r| matches!(r, client::KeyboardInteractiveAuthResponse::Success))
                }
                Ok(_) => Ok(false),
                Err(err) => Err(err),
            }
        }
    };
    match authenticated {
        Ok(true) => Ok(handle),
        Ok(false) => Err(Ended::Fatal(format!(
            "{} refused the bot's login (key or anonymous login not accepted)",
            config.server
        ))),
        Err(err) => Err(Ended::Failed(format!("authentication: {err}"))),
    }
}
