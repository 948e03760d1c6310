//! `[bus]`: the engine. Absent, patchbay runs the embedded engine (one process, SQLite);
//! `engine = "nats"` shares NATS JetStream between several instances.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::diagnostic::Collector;
use super::schema::HumanDuration;

/// The `[bus]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusTable {
    /// `embedded` (the default) or `nats`.
    pub engine: Spanned<String>,
    /// NATS server URLs, `nats://127.0.0.1:4222`. Required with `engine = "nats"`.
    #[serde(default)]
    pub servers: Vec<String>,
    /// A NATS `.creds` file (JWT + NKey seed).
    pub creds_file: Option<PathBuf>,
    /// A token, or `token_file` to read it from a file.
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    pub user: Option<String>,
    /// The password, or `password_file` to read it from a file.
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    /// A CA certificate (PEM) to trust for the servers; setting it requires TLS.
    pub tls_ca_file: Option<PathBuf>,
    /// A client certificate and key (PEM), for servers that verify clients.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// First part of every stream, bucket and subject name. Default: `patchbay`. Letters,
    /// digits, `-` and `_`.
    pub prefix: Option<Spanned<String>>,
    /// This instance's id. Default: `PATCHBAY_INSTANCE`, `--instance`, or host name + pid.
    pub instance: Option<String>,
    /// How long an account stays with an instance that stopped renewing its lease; another
    /// instance takes it over after that. Default: 5 s.
    pub lease: Option<HumanDuration>,
    /// Instances preferred for an account, in order: `prefer = { "irc.libera" = ["eu-1"] }`.
    /// Another instance takes the account only while none of them is alive.
    #[serde(default)]
    pub prefer: BTreeMap<String, Vec<String>>,
}

/// The engine to run, validated.
#[derive(Clone, Debug)]
pub enum Bus {
    Embedded,
    Nats(Box<NatsBus>),
}

/// `engine = "nats"`, validated.
#[derive(Clone, Debug)]
pub struct NatsBus {
    pub servers: Vec<String>,
    pub creds_file: Option<PathBuf>,
    pub token: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub tls_ca_file: Option<PathBuf>,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    pub prefix: String,
    /// From the file; `None` lets the command line, the environment or the host decide.
    pub instance: Option<String>,
    pub lease: Duration,
    pub prefer: BTreeMap<String, Vec<String>>,
}

/// The lease time when `[bus] lease` is not set.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(5);

impl BusTable {
    pub fn validate(self, config_dir: &Path, errors: &mut Collector<'_>) -> Bus {
        match self.engine.get_ref().as_str() {
            "embedded" => return Bus::Embedded,
            "nats" => {}
            other => {
                errors.error(
                    Some(self.engine.span()),
                    "bus.engine",
                    format!("unknown engine `{other}`: write \"embedded\" or \"nats\""),
                );
                return Bus::Embedded;
            }
        }
        if self.servers.is_empty() {
            errors.error(
                Some(self.engine.span()),
                "bus.servers",
                "the nats engine needs `servers = [\"nats://127.0.0.1:4222\"]`",
            );
        }
        let prefix = match self.prefix {
            Some(prefix) => {
                let ok = !prefix.get_ref().is_empty()
                    && prefix
                        .get_ref()
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if !ok {
                    errors.error(
                        Some(prefix.span()),
                        "bus.prefix",
                        "a prefix is letters, digits, `-` and `_` only (it names streams and subjects)",
                    );
                }
                prefix.into_inner()
            }
            None => "patchbay".into(),
        };
        let resolve = |path: Option<PathBuf>| {
            path.map(|p| {
                if p.is_absolute() {
                    p
                } else {
                    config_dir.join(p)
                }
            })
        };
        let mut secret = |value: Option<String>, file: Option<PathBuf>, key: &str| match (
            value,
            resolve(file),
        ) {
            (Some(_), Some(_)) => {
                errors.error(
                    None,
                    format!("bus.{key}"),
                    format!("set `{key}` or `{key}_file`, not both"),
                );
                None
            }
            (Some(value), None) => Some(value),
            (None, Some(path)) => match std::fs::read_to_string(&path) {
                Ok(text) => Some(text.trim().to_owned()),
                Err(err) => {
                    errors.error(
                        None,
                        format!("bus.{key}_file"),
                        format!("cannot read {}: {err}", path.display()),
                    );
                    None
                }
            },
            (None, None) => None,
        };
        let token = secret(self.token, self.token_file, "token");
        let password = secret(self.password, self.password_file, "password");
        if password.is_some() != self.user.is_some() {
            errors.error(
                None,
                "bus.user",
                "`user` and `password` (or `password_file`) go together",
            );
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            errors.error(
                None,
                "bus.tls_cert_file",
                "`tls_cert_file` and `tls_key_file` go together",
            );
        }
        Bus::Nats(Box::new(NatsBus {
            servers: self.servers,
            creds_file: resolve(self.creds_file),
            token,
            user: self.user,
            password,
            tls_ca_file: resolve(self.tls_ca_file),
            tls_cert_file: resolve(self.tls_cert_file),
            tls_key_file: resolve(self.tls_key_file),
            prefix,
            instance: self.instance,
            lease: self.lease.map_or(DEFAULT_LEASE, |d| d.0),
            prefer: self.prefer,
        }))
    }
}
