//! `patchbay status`: who runs which account and what waits in the outbox, read from the
//! engine's store directly (the gateway need not be running).

use std::fmt::Write as _;

use anyhow::Context;

use crate::config::{Bus, Config};
use crate::store::{JetStreamStore, SqliteStore, Store};

/// The report `patchbay status` prints.
pub async fn report(config: &Config) -> anyhow::Result<String> {
    let mut out = String::new();
    let (store, holders): (Box<dyn Store>, Option<_>) = match &config.bus {
        Bus::Embedded => {
            let path = config.general.data_dir.join("patchbay.db");
            if !path.exists() {
                anyhow::bail!(
                    "no store at {}: the gateway has not run with this config yet",
                    path.display()
                );
            }
            let _ = writeln!(out, "engine: embedded ({})", path.display());
            let store = SqliteStore::open(&path)
                .with_context(|| format!("opening the store {}", path.display()))?;
            (Box::new(store), None)
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
            let _ = writeln!(
                out,
                "engine: nats ({}, prefix {})",
                nats.servers.join(", "),
                nats.prefix
            );
            (Box::new(JetStreamStore::new(bus)), Some(holders))
        }
    };
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
