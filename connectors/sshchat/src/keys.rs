//! The bot's SSH key and the server's host key.
//!
//! Devzat identifies a user by the hash of their public key, and admins allowlist keys or grant
//! them tokens: the bot's key must stay the same across restarts. It is generated once into the
//! data directory, and its fingerprint logged so an admin can act on it.
//!
//! The server's host key is checked against the one in the config, or else against the one seen
//! the first time (trust on first use, recorded in the data directory). A changed key stops the
//! account with an error rather than talk to an impostor.

use std::path::Path;

use russh::keys::{HashAlg, PrivateKey, PublicKey};

/// Key problems; all are fatal for the account.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the key {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("cannot write {path}: {reason}")]
    Write { path: String, reason: String },
    #[error(
        "the server's host key changed: expected {expected}, got {got}; if the server really \
         changed its key, set `host_key` or delete {file}"
    )]
    Mismatch {
        expected: String,
        got: String,
        file: String,
    },
}

/// Load the client key, generating an Ed25519 key there if the file does not exist.
pub fn load_or_generate(path: &Path) -> Result<PrivateKey, KeyError> {
    let shown = path.display().to_string();
    if path.exists() {
        let key = russh::keys::load_secret_key(path, None).map_err(|err| KeyError::Read {
            path: shown.clone(),
            reason: err.to_string(),
        })?;
        tracing::info!(
            key = %shown,
            fingerprint = %key.public_key().fingerprint(HashAlg::Sha256),
            "using the SSH key"
        );
        return Ok(key);
    }
    let key =
        PrivateKey::random(&mut rand::rng(), russh::keys::Algorithm::Ed25519).map_err(|err| {
            KeyError::Write {
                path: shown.clone(),
                reason: format!("key generation failed: {err}"),
            }
        })?;
    let pem = key
        .to_openssh(russh::keys::ssh_key::LineEnding::LF)
        .map_err(|err| KeyError::Write {
            path: shown.clone(),
            reason: err.to_string(),
        })?;
    write_private(path, pem.as_bytes()).map_err(|err| KeyError::Write {
        path: shown.clone(),
        reason: err.to_string(),
    })?;
    let public = key.public_key().to_openssh().unwrap_or_default();
    tracing::info!(
        key = %shown,
        fingerprint = %key.public_key().fingerprint(HashAlg::Sha256),
        public = %public,
        "generated a new SSH key for the bot; give its fingerprint to the server's admin"
    );
    Ok(key)
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// How the server's host key is trusted.
#[derive(Clone, Debug)]
pub enum HostKeyPolicy {
    /// The key given in the config.
    Pinned(String),
    /// The key recorded in this file at first contact.
    FirstUse(std::path::PathBuf),
}

impl HostKeyPolicy {
    /// Check the key the server presented; records it on first use.
    pub fn check(&self, key: &PublicKey) -> Result<(), KeyError> {
        let got = key.to_openssh().unwrap_or_default();
        let got_key = key_part(&got);
        match self {
            HostKeyPolicy::Pinned(expected) => {
                if key_part(expected) == got_key {
                    Ok(())
                } else {
                    Err(KeyError::Mismatch {
                        expected: expected.clone(),
                        got,
                        file: "(the config's host_key)".into(),
                    })
                }
            }
            HostKeyPolicy::FirstUse(file) => match std::fs::read_to_string(file) {
                Ok(known) => {
                    if key_part(known.trim()) == got_key {
                        Ok(())
                    } else {
                        Err(KeyError::Mismatch {
                            expected: known.trim().to_owned(),
                            got,
                            file: file.display().to_string(),
                        })
                    }
                }
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                    if let Some(dir) = file.parent() {
                        std::fs::create_dir_all(dir).map_err(|err| KeyError::Write {
                            path: dir.display().to_string(),
                            reason: err.to_string(),
                        })?;
                    }
                    std::fs::write(file, format!("{got}\n")).map_err(|err| KeyError::Write {
                        path: file.display().to_string(),
                        reason: err.to_string(),
                    })?;
                    tracing::info!(
                        host_key = %got,
                        fingerprint = %key.fingerprint(HashAlg::Sha256),
                        "trusting the server's host key on first use"
                    );
                    Ok(())
                }
                Err(err) => Err(KeyError::Read {
                    path: file.display().to_string(),
                    reason: err.to_string(),
                }),
            },
        }
    }
}

/// `type base64` without the comment.
fn key_part(line: &str) -> String {
    line.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_generated_once_and_host_key_trusted_on_first_use() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/id_ed25519");
        let first = load_or_generate(&path).expect("generate");
        let again = load_or_generate(&path).expect("load");
        assert_eq!(first.public_key(), again.public_key());

        let known = dir.path().join("known_host");
        let policy = HostKeyPolicy::FirstUse(known.clone());
        policy.check(first.public_key()).expect("first use");
        policy.check(first.public_key()).expect("same key");
        let other =
            PrivateKey::random(&mut rand::rng(), russh::keys::Algorithm::Ed25519).expect("key");
        let err = policy.check(other.public_key()).expect_err("changed");
        assert!(err.to_string().contains("host key changed"));

        let pinned = HostKeyPolicy::Pinned(first.public_key().to_openssh().expect("openssh"));
        pinned.check(first.public_key()).expect("pinned");
        assert!(pinned.check(other.public_key()).is_err());
    }
}
