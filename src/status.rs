//! `patchbay status`: who runs which account and what waits in the outbox. Asked of the
//! running gateway through the admin API when the config has one ([`crate::admin::cli`]);
//! otherwise read from the engine's store directly (the gateway need not be running).

use std::fmt::Write as _;

use anyhow::Context;

use crate::config::{Bus, Config};
use crate::ownership::leases::Holders;
use crate::store::{JetStreamStore, SqliteStore, Store};

/// The engine's store, opened from outside the gateway.
pub struct Opened {
    pub store: Box<dyn Store>,
    /// Who holds which account (the nats engine).
    pub holders: Option<Holders>,
    /// `engine: ...`, the report's first line.
    pub engine: String,
}

/// Open the store a config's gateway uses, from outside it. The embedded store must exist
/// already (the gateway has run): opening it would otherwise create an empty one.
pub async fn open(config: &Config) -> anyhow::Result<Opened> {
    match &config.bus {
        Bus::Embedded => {
            let path = config.general.data_dir.join("patchbay.db");
            if !path.exists() {
                anyhow::bail!(
                    "no store at {}: the gateway has not run with this config yet",
                    path.display()
                );
            }
            let store = SqliteStore::open(&path)
                .with_context(|| format!("opening the store {}", path.display()))?;
            Ok(Opened {
                store: Box::new(store),
                holders: None,
                engine: format!("engine: embedded ({})", path.display()),
            })
        }
        Bus::Nats(nats) => {
            let instance = crate::gateway::instance_id(Some("patchbay-status"));
            let options = crate::gateway::bus_options(nats, &instance, &config.general);
            let bus = tokio::time::timeout(
                std::time::Duration::from_secs(10),
                patchbay_nats::Bus::connect(&options),
            )
            .await
            .context("no answer from the nats servers within 10s")?
            .context("reading the nats engine")?;
            let holders = crate::ownership::leases::holders(&bus).await?;
            Ok(Opened {
                store: Box::new(JetStreamStore::new(bus)),
                holders: Some(holders),
                engine: format!(
                    "engine: nats ({}, prefix {})",
                    nats.servers.join(", "),
                    nats.prefix
                ),
            })
        }
    }
}

/// The report `patchbay status` prints, read from the store.
pub async fn report(config: &Config) -> anyhow::Result<String> {
    let mut out = String::new();
    let Opened {
        store,
        holders,
        engine,
    } = open(config).await?;
    let _ = writeln!(out, "{engine}");
    match &holders {
        Some(holders) => {
            let mut instances = holders.instances.clone();
            instances.sort();
            let _ = writeln!(out, "instances: {}", list(&instances));
        }
        None => {
            let _ = writeln!(out, "instances: this host (one process)");
        }
    }
    let depths = store.room_depths().await?;
    let _ = writeln!(out, "accounts:");
    for account in &config.accounts {
        let state = match &holders {
            Some(holders) => match holders.accounts.get(&account.name) {
                Some(instance) => match holders.states.get(&account.name) {
                    Some(state) => format!("run by {instance} ({state})"),
                    None => format!("run by {instance}"),
                },
                None => "not run by any instance".to_owned(),
            },
            None => "run by the gateway when it runs".to_owned(),
        };
        let waiting: u64 = depths
            .iter()
            .filter(|(room, _)| room.account == account.name)
            .map(|(_, n)| n)
            .sum();
        let _ = writeln!(out, "  {}: {state}; {waiting} waiting", account.name);
    }
    let _ = writeln!(out, "outbox:");
    if depths.is_empty() {
        let _ = writeln!(out, "  empty");
    }
    for (room, depth) in &depths {
        let _ = writeln!(out, "  {room}: {depth} waiting");
    }
    let stats = store.stats().await?;
    let _ = writeln!(out, "dead letters: {}", stats.dead_letters);
    store.close().await;
    Ok(out)
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none alive".into()
    } else {
        items.join(", ")
    }
}
