//! `patchbay import-matterbridge`: a matterbridge config → an equivalent patchbay config.
//!
//! Guarantees:
//! - the output is a config `patchbay check` accepts: each account is built with patchbay's
//!   own connector factory (a key it refuses is left out and reported; Matrix accounts are
//!   checked only in builds with the Matrix connector), each room is checked against its
//!   connector's room grammar, and a gateway left with nothing to relay is left out;
//! - every matterbridge setting that is not carried over, or carried over with a difference,
//!   is reported with its key path and the reason ([`Findings`]), except those set to their
//!   off value (`""`, `false`, `0`, `[]`), which change nothing.
//!
//! Layout (all pure but [`run`]):
//! - `source`: reading matterbridge's TOML as matterbridge does (keys without case, the
//!   account → `[general]` fallback), remembering which keys were read;
//! - `protocols` and `accounts`: accounts, per protocol, checked through the registry;
//! - `gateways`: `[[gateway]]` / `[[samechannelgateway]]` → `[[route]]` with room settings;
//! - `nick`: `RemoteNickFormat` → `nick_format`;
//! - `unsupported`: why a setting has no patchbay equivalent;
//! - `report`, `emit`: the findings and the output text.

mod accounts;
mod emit;
mod gateways;
mod nick;
mod protocols;
mod report;
mod source;
mod unsupported;

pub use report::{Finding, Findings, Outcome};

use std::path::{Path, PathBuf};

use crate::connectors::Registry;
use emit::{TableOut, Val};
use source::drop_read;

/// An import's result: the patchbay config text and what did not carry over.
#[derive(Debug)]
pub struct Imported {
    pub config: String,
    pub findings: Findings,
}

/// Why a file could not be imported at all.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not TOML", path.display())]
    Toml {
        path: PathBuf,
        source: toml::de::Error,
    },
}

/// Read `path`, print the patchbay config on standard output and the findings on standard
/// error.
pub fn run(path: &Path, registry: &Registry) -> Result<(), ImportError> {
    let text = std::fs::read_to_string(path).map_err(|source| ImportError::Read {
        path: path.to_owned(),
        source,
    })?;
    let imported = convert(&text, registry).map_err(|source| ImportError::Toml {
        path: path.to_owned(),
        source,
    })?;
    print!("{}", imported.config);
    eprint!("{}", imported.findings);
    Ok(())
}

/// Convert matterbridge config text. `registry` holds the connectors the accounts are checked
/// with (those of this build).
pub fn convert(source: &str, registry: &Registry) -> Result<Imported, toml::de::Error> {
    let mut findings = Findings::default();
    let file = source::read(source, &mut findings)?;

    let mut planned: Vec<accounts::Planned> = Vec::new();
    for account in &file.accounts {
        let taken: Vec<String> = planned.iter().map(|p| p.pb.clone()).collect();
        match protocols::plan(account, &file.general, &taken, &mut findings) {
            Some(p) => planned.push(p),
            None => drop_read(&account.section),
        }
    }

    let pending = gateways::admit(&file, &mut planned, registry, &mut findings);
    for account in &mut planned {
        if account.rooms.is_empty() {
            let reason = if account.used {
                "none of its gateway entries could be carried over (see them); left out"
            } else {
                "no enabled gateway uses this account (matterbridge does not start it either); left out"
            };
            findings.skip(&account.mb_id, reason);
            account.alive = false;
            continue;
        }
        account.check(registry, &mut findings);
    }
    let mut routes = gateways::routes(pending, &mut planned, &mut findings);
    for api in planned.iter().filter(|p| p.alive && p.protocol == "api") {
        let short = api.pb.split_once('.').map_or(api.pb.as_str(), |(_, n)| n);
        findings.change(
            &api.mb_id,
            format!("clients use patchbay's API: POST /api/{short}/ROOM/messages, GET /api/{short}/stream (WebSocket); see docs/api.openapi.json"),
        );
    }

    // An account left out is reported once, as a whole, not key by key.
    for account in &file.accounts {
        let id = account.id();
        if !planned.iter().any(|p| p.alive && p.mb_id == id) {
            drop_read(&account.section);
        }
        // What was found about an account no enabled gateway names is noise.
        let named = file.gateways.iter().filter(|g| g.enable).any(|g| {
            g.members
                .iter()
                .any(|m| m.account.eq_ignore_ascii_case(&id))
        });
        if !named {
            findings.forget_keys_of(&id);
        }
    }
    for section in file.sections() {
        for (key, value) in section.unread() {
            if !is_off(value) {
                findings.skip(
                    &format!("{}.{key}", section.path),
                    unsupported::reason(&key),
                );
            }
        }
    }

    let mut general = TableOut::new("general");
    hoist_nick_format(&mut general, &mut routes);
    let http = http_listener(&planned, &mut findings);
    let mut tables = vec![general, http];
    for account in planned.iter().filter(|p| p.alive) {
        tables.extend(account.tables());
    }
    tables.extend(routes.into_iter().flatten());
    let config = emit::render(
        "Made by `patchbay import-matterbridge`; what was not carried over is listed on its\nstandard error. Check it with `patchbay check --config FILE`.",
        &tables,
    );
    Ok(Imported { config, findings })
}

/// `[http]`: one listener for every API account, at the first one's `BindAddress`.
fn http_listener(planned: &[accounts::Planned], findings: &mut Findings) -> TableOut {
    let mut http = TableOut::new("http");
    let mut first: Option<(std::net::SocketAddr, String)> = None;
    for api in planned.iter().filter(|p| p.alive && p.protocol == "api") {
        match (&first, &api.listen) {
            (None, Some(listen)) => first = Some(listen.clone()),
            (Some((addr, key)), Some((other, from))) if other != addr => findings.change(
                from,
                format!(
                    "patchbay has one HTTP listener; this account is served on {addr} (from {key})"
                ),
            ),
            _ => {}
        }
    }
    match first {
        Some((addr, _)) => http.set("listen", Val::str(addr.to_string())),
        None => {
            if let Some(api) = planned.iter().find(|p| p.alive && p.protocol == "api") {
                findings.change(
                    &api.mb_id,
                    "no `BindAddress` to take the HTTP listener from: set `[http] listen` before running",
                );
            }
        }
    }
    http
}

/// A value that is matterbridge's "unset" and changes nothing when left out.
fn is_off(value: &toml::Value) -> bool {
    match value {
        toml::Value::String(s) => s.is_empty(),
        toml::Value::Boolean(b) => !b,
        toml::Value::Integer(i) => *i == 0,
        toml::Value::Array(items) => items.is_empty(),
        toml::Value::Table(table) => table.values().all(is_off),
        _ => false,
    }
}

/// One nick format every route shares goes into `[general]` (and not at all when it is
/// patchbay's default `{nick}`).
fn hoist_nick_format(general: &mut TableOut, routes: &mut [Vec<TableOut>]) {
    let formats: Vec<Option<&Val>> = routes
        .iter()
        .map(|tables| tables.first().and_then(|t| t.get("nick_format")))
        .collect();
    let Some(Some(first)) = formats.first().copied() else {
        return;
    };
    if !formats.iter().all(|f| *f == Some(first)) {
        return;
    }
    let first = first.clone();
    for tables in routes.iter_mut() {
        if let Some(route) = tables.first_mut() {
            route.remove("nick_format");
        }
    }
    if first != Val::str("{nick}") {
        general.set("nick_format", first);
    }
}
