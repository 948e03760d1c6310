//! The config file: accounts, routes, gateway settings.
//!
//! Loading reports every problem it finds at once, each with the file, line, column and key it
//! is about and what would be right. Accounts are `[PROTOCOL.NAME]` tables handed whole to the
//! protocol's connector factory; routes are `[[route]]` tables; `[general]` and `[http]` are
//! the gateway's own.

mod account;
mod admin;
mod bus;
mod diagnostic;
mod expand;
mod schema;

pub use diagnostic::{Diagnostic, Diagnostics};

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use patchbay_sdk::Kind;
use regex::Regex;
use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::connectors::Registry;
use crate::router::{Direction, KindSet, NickFormat, RateLimit, RoomKey, Route, Settings};
pub use account::Account;
pub use admin::Admin;
pub use bus::{Bus, NatsBus, Site};
use diagnostic::{Collector, closest};
use expand::join;
use schema::{GeneralTable, HttpTable, RouteTable, SettingsTable};

/// A loaded, validated config.
pub struct Config {
    pub file: PathBuf,
    pub general: General,
    pub http: Option<Http>,
    /// The engine: embedded unless `[bus]` says otherwise.
    pub bus: Bus,
    /// The admin API: `None` when `[admin]` sets no token (the API is off).
    pub admin: Option<Admin>,
    pub accounts: Vec<Account>,
    pub routes: Vec<Route>,
    /// What still works but should change (a key spelled by its old name): `patchbay check`
    /// prints these, the gateway logs them when it starts.
    pub warnings: Vec<Diagnostic>,
}

impl Config {
    /// Log each warning, for a gateway starting or reloading on this config: the operator
    /// who never runs `check` learns from the log what to change.
    pub fn log_warnings(&self) {
        for warning in &self.warnings {
            tracing::warn!("{warning}");
        }
    }
}

/// Gateway-wide settings.
#[derive(Clone, Debug)]
pub struct General {
    pub data_dir: PathBuf,
    pub gateway_id: String,
    pub retention: Duration,
    pub shutdown_timeout: Duration,
}

/// The shared HTTP listener.
#[derive(Clone, Debug)]
pub struct Http {
    pub listen: std::net::SocketAddr,
}

/// What the command line or the environment sets over the file, so that several instances
/// can share one config file (see `patchbay run --help`).
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<std::net::SocketAddr>,
    /// This instance's id (the nats engine).
    pub instance: Option<String>,
    /// This instance's site (the nats engine with `[bus.sites]`).
    pub site: Option<String>,
}

/// Read and validate a config file.
pub fn load(path: &Path, registry: &Registry) -> Result<Config, Diagnostics> {
    load_with(path, registry, &Overrides::default())
}

/// Read and validate a config file, with `overrides` over what it says.
pub fn load_with(
    path: &Path,
    registry: &Registry,
    overrides: &Overrides,
) -> Result<Config, Diagnostics> {
    let source = std::fs::read_to_string(path).map_err(|err| {
        Diagnostics(vec![Diagnostic {
            file: path.to_owned(),
            line: 0,
            column: 0,
            key: String::new(),
            message: format!("cannot read the config file: {err}"),
        }])
    })?;
    parse_with(path, &source, registry, overrides)
}

/// Validate config text as if read from `path`.
pub fn parse(path: &Path, source: &str, registry: &Registry) -> Result<Config, Diagnostics> {
    parse_with(path, source, registry, &Overrides::default())
}

fn parse_with(
    path: &Path,
    source: &str,
    registry: &Registry,
    overrides: &Overrides,
) -> Result<Config, Diagnostics> {
    let mut errors = Collector::new(path, source);
    let mut root = match DeTable::parse(source) {
        Ok(root) => root.into_inner(),
        Err(err) => {
            errors.toml_error(&err, "");
            return Err(Diagnostics(errors.diagnostics));
        }
    };
    expand::expand_env(&mut root, "", &mut errors);
    let config_dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned();

    let mut general_table = GeneralTable::default();
    let mut http = None;
    let mut bus = Bus::Embedded;
    let mut admin = None;
    let mut route_tables = Vec::new();
    let mut account_tables = Vec::new();
    for (key, value) in root {
        let key_span = key.span();
        let key = key.into_inner();
        match key.as_ref() {
            "general" => {
                if let Some(table) = deserialize::<GeneralTable>(value, "general", &mut errors) {
                    general_table = table;
                }
            }
            "http" => {
                http = deserialize::<HttpTable>(value, "http", &mut errors)
                    .map(|t| Http { listen: t.listen });
            }
            "bus" => {
                if let Some(table) = deserialize::<bus::BusTable>(value, "bus", &mut errors) {
                    bus = table.validate(&config_dir, &mut errors);
                }
            }
            "admin" => {
                if let Some(table) = deserialize::<admin::AdminTable>(value, "admin", &mut errors) {
                    admin = table.validate(&config_dir, &mut errors);
                }
            }
            "route" => {
                let span = value.span();
                match value.into_inner() {
                    DeValue::Array(items) => {
                        for (i, item) in items.into_iter().enumerate() {
                            let path = format!("route[{i}]");
                            if let Some(route) = deserialize::<RouteTable>(item, &path, &mut errors)
                            {
                                route_tables.push((path, route));
                            }
                        }
                    }
                    _ => errors.error(
                        Some(span),
                        "route",
                        "routes are an array of tables: write each as `[[route]]`",
                    ),
                }
            }
            protocol if registry.get(protocol).is_some() => {
                let span = value.span();
                match value.into_inner() {
                    DeValue::Table(accounts) => {
                        for (name, table) in accounts {
                            account_tables.push((protocol.to_owned(), name, table));
                        }
                    }
                    _ => errors.error(
                        Some(span),
                        protocol,
                        format!("accounts are tables: write `[{protocol}.NAME]`"),
                    ),
                }
            }
            other => {
                let known: Vec<&str> = ["general", "http", "bus", "admin", "route"]
                    .into_iter()
                    .chain(registry.protocols())
                    .collect();
                let hint = match closest(other, known.iter().copied()) {
                    Some(best) => format!("; did you mean `{best}`?"),
                    None => format!(
                        "; the tables are [general], [http], [bus], [admin], [[route]] and accounts as [PROTOCOL.NAME] with PROTOCOL one of: {}",
                        registry.protocols().collect::<Vec<_>>().join(", ")
                    ),
                };
                errors.error(
                    Some(key_span),
                    other,
                    format!("unknown table `{other}`{hint}"),
                );
            }
        }
    }

    let mut general = general_settings(&general_table, &config_dir);
    if let Some(dir) = &overrides.data_dir {
        general.data_dir = dir.clone();
    }
    if let Some(listen) = overrides.listen {
        http = Some(Http { listen });
    }
    if let Bus::Nats(nats) = &mut bus {
        if let Some(instance) = &overrides.instance {
            nats.instance = Some(instance.clone());
        }
        if let Some(site) = &overrides.site {
            nats.site = Some(site.clone());
        }
    }
    let mut base = Settings::default();
    if let Some(kinds) = &general_table.kinds {
        base.kinds = compile_kinds(kinds, "general.kinds", &mut errors);
    }
    if let Some(format) = &general_table.nick_format {
        base.nick_format = compile_nick_format(format, "general.nick_format", &mut errors);
    }

    // Routes are checked against every account the file names, built or not, so that one
    // broken account table does not also make every route that uses it an error.
    let account_names: Vec<String> = account_tables
        .iter()
        .map(|(protocol, name, _)| format!("{protocol}.{}", name.get_ref()))
        .collect();
    if let Bus::Nats(nats) = &bus {
        let spans: Vec<(String, std::ops::Range<usize>)> = account_tables
            .iter()
            .map(|(protocol, name, _)| (format!("{protocol}.{}", name.get_ref()), name.span()))
            .collect();
        bus::check_sites(nats, &spans, &mut errors);
    }
    let mut accounts = Vec::new();
    for (protocol, name, table) in account_tables {
        if let Some(account) = account::build(
            registry,
            &protocol,
            name,
            table,
            &general.data_dir,
            &config_dir,
            &mut errors,
        ) {
            accounts.push(account);
        }
    }

    let mut routes: Vec<Route> = Vec::new();
    for (path, table) in route_tables {
        let name_span = table.name.span();
        if let Some(route) =
            compile_route(path, table, &base, &account_names, registry, &mut errors)
        {
            if routes.iter().any(|r| r.name == route.name) {
                errors.error(
                    Some(name_span),
                    format!("route \"{}\".name", route.name),
                    format!("two routes are named `{}`", route.name),
                );
            }
            routes.push(route);
        }
    }

    if !errors.diagnostics.is_empty() {
        return Err(Diagnostics(errors.diagnostics));
    }
    Ok(Config {
        file: path.to_owned(),
        general,
        http,
        bus,
        admin,
        accounts,
        routes,
        warnings: errors.warnings,
    })
}

/// Deserialize one table of the file, recording its error if it has one.
fn deserialize<'a, T: Deserialize<'a>>(
    value: Spanned<DeValue<'a>>,
    path: &str,
    errors: &mut Collector<'_>,
) -> Option<T> {
    T::deserialize(ValueDeserializer::from(value))
        .map_err(|err| errors.toml_error(&err, path))
        .ok()
}

fn general_settings(table: &GeneralTable, config_dir: &Path) -> General {
    let data_dir = match &table.data_dir {
        Some(dir) if dir.is_absolute() => dir.clone(),
        Some(dir) => config_dir.join(dir),
        None => config_dir.join("data"),
    };
    General {
        data_dir,
        gateway_id: table
            .gateway_id
            .clone()
            .unwrap_or_else(|| "patchbay".into()),
        retention: table
            .retention
            .map_or(Duration::from_secs(30 * 24 * 3600), |d| d.0),
        shutdown_timeout: table
            .shutdown_timeout
            .map_or(Duration::from_secs(10), |d| d.0),
    }
}

fn compile_route(
    path: String,
    mut table: RouteTable,
    base: &Settings,
    accounts: &[String],
    registry: &Registry,
    errors: &mut Collector<'_>,
) -> Option<Route> {
    let name = table.name.get_ref().trim().to_owned();
    if name.is_empty() {
        errors.error(
            Some(table.name.span()),
            join(&path, "name"),
            "a route needs a name",
        );
    }
    let path = format!("route \"{name}\"");
    let settings = table.take_settings();
    let route_settings = compile_settings(settings, base, &path, errors);

    let mut members: Vec<(RoomKey, Direction)> = Vec::new();
    let mut bad_rooms = false;
    let lists = [
        (&table.inout, Direction::InOut, "inout"),
        (&table.input, Direction::In, "in"),
        (&table.out, Direction::Out, "out"),
    ];
    for (rooms, direction, key) in lists {
        for room in rooms {
            let key_path = format!("{path}.{key}");
            let Some(parsed) = check_room(room, accounts, registry, &key_path, errors) else {
                bad_rooms = true;
                continue;
            };
            if members.iter().any(|(r, _)| *r == parsed) {
                errors.error(
                    Some(room.span()),
                    key_path,
                    format!("`{parsed}` is listed twice in this route"),
                );
                continue;
            }
            members.push((parsed, direction));
        }
    }

    let mut settings = vec![route_settings.clone(); members.len()];
    for (room, overrides) in table.room {
        let key_path = format!("{path}.room.\"{}\"", room.get_ref());
        let position = RoomKey::parse(room.get_ref())
            .and_then(|key| members.iter().position(|(r, _)| *r == key));
        match position {
            Some(i) => {
                settings[i] = compile_settings(overrides, &route_settings, &key_path, errors)
            }
            None => errors.error(
                Some(room.span()),
                key_path,
                "settings for a room the route does not name; list it in `inout`, `in` or `out`",
            ),
        }
    }

    let feeders = members.iter().filter(|(_, d)| d.feeds()).count();
    let receivers = members.iter().filter(|(_, d)| d.receives()).count();
    if !bad_rooms && (feeders == 0 || receivers == 0 || members.len() < 2) {
        errors.error(
            Some(table.name.span()),
            path,
            "this route relays nothing: it needs at least two rooms, one that feeds it (`inout` or `in`) and another that receives (`inout` or `out`)",
        );
    }
    Some(Route {
        name,
        members,
        settings,
    })
}

fn check_room(
    room: &Spanned<String>,
    accounts: &[String],
    registry: &Registry,
    key_path: &str,
    errors: &mut Collector<'_>,
) -> Option<RoomKey> {
    let span = Some(room.span());
    let Some(parsed) = RoomKey::parse(room.get_ref()) else {
        errors.error(
            span,
            key_path,
            format!(
                "`{}` is not a room: write \"ACCOUNT/ROOM\", e.g. \"irc.libera/#rust\"",
                room.get_ref()
            ),
        );
        return None;
    };
    if !accounts.contains(&parsed.account) {
        let hint = match closest(&parsed.account, accounts.iter().map(String::as_str)) {
            Some(best) => format!("did you mean `{best}`?"),
            None if accounts.is_empty() => "no accounts are configured".to_owned(),
            None => format!("the accounts are: {}", accounts.join(", ")),
        };
        errors.error(
            span,
            key_path,
            format!("no account `{}` is configured; {hint}", parsed.account),
        );
        return None;
    }
    if let Some(factory) = registry.get(parsed.protocol())
        && let Err(message) = factory.check_room(&parsed.room)
    {
        errors.error(span, key_path, format!("`{parsed}`: {message}"));
        return None;
    }
    Some(parsed)
}

fn compile_settings(
    table: SettingsTable,
    base: &Settings,
    path: &str,
    errors: &mut Collector<'_>,
) -> Settings {
    let mut settings = base.clone();
    if let Some(kinds) = &table.kinds {
        settings.kinds = compile_kinds(kinds, &join(path, "kinds"), errors);
    }
    if let Some(format) = &table.nick_format {
        settings.nick_format = compile_nick_format(format, &join(path, "nick_format"), errors);
    }
    if !table.ignore_nicks.is_empty() {
        settings.ignore_nicks =
            compile_regexes(&table.ignore_nicks, &join(path, "ignore_nicks"), errors);
    }
    if !table.ignore_text.is_empty() {
        settings.ignore_text =
            compile_regexes(&table.ignore_text, &join(path, "ignore_text"), errors);
    }
    if !table.rewrite.is_empty() {
        settings.rewrite = table
            .rewrite
            .iter()
            .filter_map(|rule| {
                compile_regex(&rule.pattern, &join(path, "rewrite.pattern"), errors)
                    .map(|re| (re, rule.replace.clone()))
            })
            .collect();
    }
    if let Some(limit) = &table.rate_limit {
        let (span, limit) = (limit.span(), limit.get_ref());
        if limit.messages == 0 || limit.per.0.is_zero() {
            errors.error(
                Some(span),
                join(path, "rate_limit"),
                "a rate limit needs `messages` and `per` above zero",
            );
        } else {
            settings.rate_limit = Some(RateLimit {
                messages: limit.messages,
                per: limit.per.0,
            });
        }
    }
    settings
}

fn compile_kinds(kinds: &[Spanned<String>], path: &str, errors: &mut Collector<'_>) -> KindSet {
    let mut set = KindSet::empty();
    let mut seen = BTreeSet::new();
    for kind in kinds {
        let name = kind.get_ref();
        seen.insert(name.clone());
        if !set.insert(name) {
            let hint = closest(name, Kind::NAMES)
                .map_or(String::new(), |best| format!("did you mean `{best}`? "));
            errors.error(
                Some(kind.span()),
                path,
                format!(
                    "`{name}` is not a kind of event; {hint}the kinds are {}, and `system` (a server's own messages)",
                    Kind::NAMES.join(", ")
                ),
            );
        }
    }
    set
}

fn compile_nick_format(
    format: &Spanned<String>,
    path: &str,
    errors: &mut Collector<'_>,
) -> NickFormat {
    NickFormat::parse(format.get_ref()).unwrap_or_else(|message| {
        errors.error(Some(format.span()), path, message);
        NickFormat::default()
    })
}

fn compile_regexes(
    patterns: &[Spanned<String>],
    path: &str,
    errors: &mut Collector<'_>,
) -> Vec<Regex> {
    patterns
        .iter()
        .filter_map(|p| compile_regex(p, path, errors))
        .collect()
}

fn compile_regex(
    pattern: &Spanned<String>,
    path: &str,
    errors: &mut Collector<'_>,
) -> Option<Regex> {
    Regex::new(pattern.get_ref())
        .map_err(|err| {
            let detail = err.to_string();
            let last = detail.lines().last().unwrap_or("invalid").trim().to_owned();
            errors.error(
                Some(pattern.span()),
                path,
                format!("`{}` is not a valid regex: {last}", pattern.get_ref()),
            )
        })
        .ok()
}

#[cfg(test)]
mod tests;

/// What `patchbay check` prints: accounts, and for each route where each feeding room's
/// events go.
pub fn describe(config: &Config) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: OK, {} account{}, {} route{}",
        config.file.display(),
        config.accounts.len(),
        if config.accounts.len() == 1 { "" } else { "s" },
        config.routes.len(),
        if config.routes.len() == 1 { "" } else { "s" },
    );
    for route in &config.routes {
        let _ = writeln!(out, "route `{}`:", route.name);
        for (room, direction) in &route.members {
            if !direction.feeds() {
                continue;
            }
            let targets: Vec<String> = route
                .members
                .iter()
                .filter(|(other, d)| d.receives() && other != room)
                .map(|(other, _)| other.to_string())
                .collect();
            let _ = writeln!(out, "  {room} -> {}", targets.join(", "));
        }
    }
    out
}
