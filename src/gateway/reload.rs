//! Hot reload: re-read the config file and apply it to the running gateway.
//!
//! A [`Reloader`] is the handle SIGHUP and the admin API ask through; the gateway's run loop
//! serves the requests one at a time, so two reloads never interleave.
//!
//! What a reload does, in order:
//! 1. Read and validate the whole file, as `patchbay check` does. Any error refuses the
//!    reload whole: nothing changes, and the errors are logged and returned exactly as `check`
//!    prints them.
//! 2. Stop the accounts the file no longer names and those whose table changed, each alone:
//!    its connector stops, its lanes finish the delivery in hand, and what waits stays in the
//!    outbox. Every other account keeps its connection.
//! 3. Put the new routes in force (filters, nick formats, rate limits with them): an event is
//!    routed wholly by the old table or wholly by the new one, at its accept. Events accepted
//!    before keep the deliveries computed then — the outbox holds them — but take the nick
//!    format and rewrites in force when they are delivered. Rooms the new routes deliver to
//!    get their lanes in the running accounts.
//! 4. Start the added accounts and the changed ones again; their lanes take what waits.
//!
//! Nothing is lost or sent twice across a reload: the intake stays open all along, and a
//! room's lane stops before the restarted account opens it again, so each room has one lane
//! at a time. `[general]`, `[http]` and `[bus]` are read at start only; a change to them is
//! reported as needing a restart. On the nats engine each instance reloads its own file: an
//! added account is competed for once an instance names it, a removed one's lease is released
//! once it stopped here, and a changed one restarts on the instance that holds it (its lease
//! stays held meanwhile, so no other instance takes it). An account serving HTTP (webhook, API, Matrix appservice) has its routes
//! swapped on the running listener; without a listener (`[http]` is read at start only) such
//! an account cannot be added.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;

use super::{AccountSpec, Engine};
use crate::config::{self, Config, Overrides};
use crate::connectors::Registry;
use crate::metrics::{GatewayEvent, Metrics};
use crate::reloader::{ReloadRefused, ReloadReport, ReloadRequests, Reloader};

/// What [`super::run`] needs to reload: the handle it hands out, the requests it serves, and
/// how the file was read (the command line's overrides, the connectors known).
pub struct Reload {
    pub reloader: Reloader,
    pub requests: ReloadRequests,
    pub overrides: Overrides,
    pub registry: Registry,
}

impl Reload {
    /// Reloading for a gateway whose file was read with `overrides` and `registry`.
    pub fn new(overrides: Overrides, registry: Registry) -> Reload {
        let (reloader, requests) = Reloader::channel();
        Reload {
            reloader,
            requests,
            overrides,
            registry,
        }
    }
}

/// What the running gateway was started from (or last reloaded), to compare a file with.
pub(super) struct Current {
    general: String,
    http: String,
    bus: String,
    accounts: BTreeMap<String, AccountKey>,
}

/// What makes an account "the same": its table as written in the file, its data dir, and
/// the contents of the files its table reads secrets from.
#[derive(PartialEq)]
struct AccountKey {
    table: Option<toml::Value>,
    data_dir: PathBuf,
    secret_files: Vec<FileDigest>,
}

/// A file an account's table names (a `*_file` key), by path and a digest of its contents
/// (None: unreadable now; the account's build said so, or will).
#[derive(PartialEq)]
struct FileDigest {
    path: PathBuf,
    digest: Option<u64>,
}

/// The files `table` names in `*_file` keys, at any depth, resolved as the connectors resolve
/// them (relative to the config file's directory).
fn secret_files(table: Option<&toml::Value>, config_dir: &Path) -> Vec<FileDigest> {
    fn walk(value: &toml::Value, key: &str, config_dir: &Path, out: &mut Vec<FileDigest>) {
        match value {
            toml::Value::String(path) if key.ends_with("_file") => {
                let path = config_dir.join(path);
                let digest = std::fs::read(&path).ok().map(|bytes| {
                    let mut hasher = std::hash::DefaultHasher::new();
                    bytes.hash(&mut hasher);
                    hasher.finish()
                });
                out.push(FileDigest { path, digest });
            }
            toml::Value::Table(table) => {
                for (key, value) in table {
                    walk(value, key, config_dir, out);
                }
            }
            toml::Value::Array(items) => {
                for item in items {
                    walk(item, key, config_dir, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Some(table) = table {
        walk(table, "", config_dir, &mut out);
    }
    out
}

impl Current {
    /// The state of `config`, whose file is read again for the accounts' tables as written,
    /// and the secret files they name for their contents.
    pub(super) fn of(config: &Config) -> Current {
        let config_dir = config.file.parent().unwrap_or(Path::new("."));
        let raw: Option<toml::Table> = std::fs::read_to_string(&config.file)
            .ok()
            .and_then(|text| text.parse().ok());
        let table_of = |name: &str| {
            let (protocol, account) = name.split_once('.')?;
            raw.as_ref()?.get(protocol)?.get(account).cloned()
        };
        Current {
            general: format!("{:?}", config.general),
            http: format!("{:?}", config.http),
            bus: format!("{:?}", config.bus),
            accounts: config
                .accounts
                .iter()
                .map(|a| {
                    let table = table_of(&a.name);
                    let key = AccountKey {
                        secret_files: secret_files(table.as_ref(), config_dir),
                        table,
                        data_dir: a.data_dir.clone(),
                    };
                    (a.name.clone(), key)
                })
                .collect(),
        }
    }
}

/// How the file is read again.
pub(super) struct Source {
    pub file: PathBuf,
    pub overrides: Overrides,
    pub registry: Registry,
    /// How long a stopping account's lanes may take to finish the delivery in hand.
    pub stop_timeout: std::time::Duration,
}

/// Serve reload requests until `stop`.
pub(super) async fn serve(
    engine: &mut Engine,
    mut requests: ReloadRequests,
    source: Source,
    mut current: Current,
    stop: &CancellationToken,
) {
    loop {
        let reply = tokio::select! {
            _ = stop.cancelled() => return,
            request = requests.next() => match request {
                Some(reply) => reply,
                None => return stop.cancelled().await,
            },
        };
        let result = reload(engine, &source, &mut current).await;
        Reloaded(&result).emit(&engine.metrics);
        // The asker may have gone (a timed-out API call); the log has the outcome.
        let _ = reply.send(result);
    }
}

/// A reload's outcome: logged, and counted in `patchbay_reloads_total` by outcome.
struct Reloaded<'a>(&'a Result<ReloadReport, ReloadRefused>);

impl GatewayEvent for Reloaded<'_> {
    fn log(&self) {
        match self.0 {
            Ok(report) => tracing::info!(
                added = ?report.accounts_added,
                removed = ?report.accounts_removed,
                restarted = ?report.accounts_restarted,
                routes_changed = report.routes_changed,
                waiting_in_removed = report.waiting_in_removed,
                needs_restart = ?report.needs_restart,
                "config reloaded"
            ),
            Err(refused) => tracing::error!(
                "config reload refused; the running config stays:\n{}",
                refused.errors
            ),
        }
    }

    fn count(&self, metrics: &Metrics) {
        metrics.reloaded(self.0.is_ok());
    }
}

async fn reload(
    engine: &mut Engine,
    source: &Source,
    current: &mut Current,
) -> Result<ReloadReport, ReloadRefused> {
    let config = config::load_with(&source.file, &source.registry, &source.overrides).map_err(
        |diagnostics| ReloadRefused {
            errors: diagnostics.to_string(),
        },
    )?;
    config.log_warnings();
    let new = Current::of(&config);
    let removed: Vec<String> = current
        .accounts
        .keys()
        .filter(|name| !new.accounts.contains_key(*name))
        .cloned()
        .collect();
    let added: Vec<String> = new
        .accounts
        .keys()
        .filter(|name| !current.accounts.contains_key(*name))
        .cloned()
        .collect();
    let restarted: Vec<String> = new
        .accounts
        .iter()
        .filter(|(name, key)| current.accounts.get(*name).is_some_and(|old| old != *key))
        .map(|(name, _)| name.clone())
        .collect();
    let starting: Vec<&String> = added.iter().chain(&restarted).collect();
    let serving: Vec<&String> = config
        .accounts
        .iter()
        .filter(|a| starting.contains(&&a.name) && a.connector.http_routes().is_some())
        .map(|a| &a.name)
        .collect();
    if !serving.is_empty() && !engine.serves_http() {
        return Err(ReloadRefused {
            errors: format!(
                "{serving:?} serve HTTP but no listener runs: add `[http] listen` to the \
                 config and restart patchbay"
            ),
        });
    }
    let mut needs_restart = Vec::new();
    for (table, old, now) in [
        ("[general]", &current.general, &new.general),
        ("[http]", &current.http, &new.http),
        ("[bus]", &current.bus, &new.bus),
    ] {
        if old != now {
            needs_restart.push(table.to_owned());
        }
    }
    if !needs_restart.is_empty() {
        tracing::warn!(
            ?needs_restart,
            "these tables changed and apply at the next start only: restart patchbay to use them"
        );
    }

    for name in &removed {
        engine.stop_account(name, source.stop_timeout).await;
        engine.states.remove(name);
    }
    let mut states = BTreeMap::new();
    for name in &restarted {
        if let Some(state) = engine.stop_account(name, source.stop_timeout).await {
            states.insert(name.clone(), state);
        }
    }
    let depths = engine.store.room_depths().await.unwrap_or_default();
    let waiting_in_removed = depths
        .iter()
        .filter(|(room, _)| removed.contains(&room.account))
        .map(|(_, depth)| depth)
        .sum();
    if waiting_in_removed > 0 {
        tracing::warn!(
            waiting_in_removed,
            "deliveries wait for removed accounts; they stay in the outbox: add the accounts back and reload to deliver them (`patchbay status` lists the rooms)"
        );
    }
    let routes_changed = engine.router.replace(config.routes);
    engine.outbox.routes_changed();
    for account in config.accounts {
        if starting.contains(&&account.name) {
            let spec = AccountSpec {
                name: account.name,
                connector: account.connector,
                data_dir: account.data_dir,
            };
            let state = states.remove(&spec.name);
            if let Err(err) = engine.start_account(spec, state) {
                tracing::error!("{err:#}");
            }
        }
    }
    // Only now that the removed accounts stopped here may their leases go to another instance.
    engine
        .ownership
        .configure(new.accounts.keys().cloned().collect());
    *current = new;
    Ok(ReloadReport {
        accounts_added: added,
        accounts_removed: removed,
        accounts_restarted: restarted,
        routes_changed,
        waiting_in_removed,
        needs_restart,
    })
}
