//! `[admin]`: the admin API (and the status page). Without a token the admin API is off: an
//! API that changes the outbox must never be open to whoever reaches the listener.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::diagnostic::Collector;

/// The `[admin]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminTable {
    /// The bearer token clients send (`Authorization: Bearer TOKEN`), or `token_file` to read
    /// it from a file (kept out of the config, e.g. a systemd credential). At least 16
    /// characters.
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    /// A listener of its own for the admin API, e.g. `127.0.0.1:9090`, so that it can stay on
    /// loopback while `[http] listen` faces the internet. Default: the `[http]` listener.
    pub listen: Option<SocketAddr>,
}

/// `[admin]`, validated: a token, and where the API is served.
#[derive(Clone)]
pub struct Admin {
    pub token: String,
    /// `None`: on the `[http]` listener.
    pub listen: Option<SocketAddr>,
}

impl std::fmt::Debug for Admin {
    /// Never prints the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("listen", &self.listen)
            .finish_non_exhaustive()
    }
}

/// The shortest token accepted: guessing one must be out of reach.
pub const MIN_TOKEN_CHARS: usize = 16;

impl AdminTable {
    /// `None` when no token is set (the admin API is off) or when the table is wrong (the
    /// errors are recorded).
    pub fn validate(self, config_dir: &Path, errors: &mut Collector<'_>) -> Option<Admin> {
        let token = match (self.token, self.token_file) {
            (Some(_), Some(_)) => {
                errors.error(None, "admin.token", "set `token` or `token_file`, not both");
                return None;
            }
            (Some(token), None) => token,
            (None, Some(file)) => {
                let path = if file.is_absolute() {
                    file
                } else {
                    config_dir.join(file)
                };
                match std::fs::read_to_string(&path) {
                    Ok(text) => text.trim().to_owned(),
                    Err(err) => {
                        errors.error(
                            None,
                            "admin.token_file",
                            format!("cannot read {}: {err}", path.display()),
                        );
                        return None;
                    }
                }
            }
            (None, None) => {
                if self.listen.is_some() {
                    errors.error(
                        None,
                        "admin.listen",
                        "an admin listener needs a token: set `token` or `token_file` in [admin]",
                    );
                }
                return None;
            }
        };
        if token.chars().count() < MIN_TOKEN_CHARS || token.chars().any(char::is_whitespace) {
            errors.error(
                None,
                "admin.token",
                format!(
                    "the admin token must be at least {MIN_TOKEN_CHARS} characters without spaces (e.g. the output of `openssl rand -hex 24`)"
                ),
            );
            return None;
        }
        Some(Admin {
            token,
            listen: self.listen,
        })
    }
}
