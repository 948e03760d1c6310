//! `[bus]`: the engine. Absent, patchbay runs the embedded engine (one process, SQLite);
//! `engine = "nats"` shares NATS JetStream between several instances.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use patchbay_sdk::ConfigDuration;
use serde::Deserialize;
use toml::Spanned;

use super::diagnostic::Collector;

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
    pub lease: Option<ConfigDuration>,
    /// Instances preferred for an account, in order: `prefer = { "irc.libera" = ["eu-1"] }`.
    /// Another instance takes the account only while none of them is alive.
    #[serde(default)]
    pub prefer: BTreeMap<String, Vec<String>>,
    /// This instance's site, when `sites` names several. Default: `--site` or `PATCHBAY_SITE`.
    pub site: Option<String>,
    /// Several sites, each with its own nats-server(s) and accounts:
    /// `[bus.sites.eu] servers = [...], accounts = ["irc.libera"], domain = "eu"`.
    #[serde(default)]
    pub sites: BTreeMap<Spanned<String>, SiteTable>,
}

/// One `[bus.sites.NAME]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteTable {
    /// The site's own NATS servers; an instance at the site connects to these.
    pub servers: Vec<String>,
    /// The accounts run at this site (every account of the file is at exactly one site).
    #[serde(default)]
    pub accounts: Vec<Spanned<String>>,
    /// The site's JetStream domain (`jetstream { domain: NAME }` in its servers' config):
    /// the sites are leaf nodes of a hub, each with a JetStream of its own. Required: sites
    /// as clusters of one supercluster (one shared JetStream) are not supported yet.
    pub domain: Option<String>,
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
    /// This instance's site (from the file; the command line may set it over).
    pub site: Option<String>,
    /// The sites by name; empty without sites.
    pub sites: BTreeMap<String, Site>,
}

/// One site, validated.
#[derive(Clone, Debug)]
pub struct Site {
    pub servers: Vec<String>,
    pub accounts: Vec<String>,
    /// Where the site's table and each of its accounts are written, for errors.
    pub span: std::ops::Range<usize>,
    pub account_spans: Vec<std::ops::Range<usize>>,
    pub domain: String,
}

impl NatsBus {
    /// The servers this instance connects to: its site's, else `[bus] servers`.
    pub fn servers(&self) -> &[String] {
        match self.site.as_ref().and_then(|site| self.sites.get(site)) {
            Some(site) => &site.servers,
            None => &self.servers,
        }
    }
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
        let sites = validate_sites(self.sites, errors);
        if self.servers.is_empty() && sites.is_empty() {
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
            site: self.site,
            sites,
        }))
    }
}

/// A site name is part of subjects and stream names.
fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn validate_sites(
    tables: BTreeMap<Spanned<String>, SiteTable>,
    errors: &mut Collector<'_>,
) -> BTreeMap<String, Site> {
    let mut sites = BTreeMap::new();
    for (name, table) in tables {
        let key = format!("bus.sites.{}", name.get_ref());
        if !is_name(name.get_ref()) {
            errors.error(
                Some(name.span()),
                &key,
                "a site name is letters, digits, `-` and `_` only (it names streams and subjects)",
            );
        }
        if table.servers.is_empty() {
            errors.error(
                Some(name.span()),
                format!("{key}.servers"),
                "each site needs its servers: `servers = [\"nats://127.0.0.1:4222\"]`",
            );
        }
        let domain = table.domain.unwrap_or_else(|| {
            errors.error(
                Some(name.span()),
                format!("{key}.domain"),
                "each site needs `domain`, the JetStream domain its servers run \
                 (`jetstream { domain: NAME }`, the sites joined as leaf nodes of a hub); \
                 sites as clusters of one supercluster are not supported yet",
            );
            String::new()
        });
        let span = name.span();
        let account_spans = table.accounts.iter().map(Spanned::span).collect();
        sites.insert(
            name.into_inner(),
            Site {
                servers: table.servers,
                span,
                account_spans,
                accounts: table
                    .accounts
                    .into_iter()
                    .map(Spanned::into_inner)
                    .collect(),
                domain,
            },
        );
    }
    sites
}

/// With sites: this instance's site is one of them, and every account of the file is at
/// exactly one site (an account at two would connect twice; at none, never).
pub fn check_sites(
    nats: &NatsBus,
    accounts: &[(String, std::ops::Range<usize>)],
    errors: &mut Collector<'_>,
) {
    if nats.sites.is_empty() {
        if nats.site.is_some() {
            errors.error(
                None,
                "bus.site",
                "`site` needs the sites: add `[bus.sites.NAME]` tables, or remove `site`",
            );
        }
        return;
    }
    let names: Vec<&str> = nats.sites.keys().map(String::as_str).collect();
    let first = nats.sites.values().next().map(|site| site.span.clone());
    match &nats.site {
        None => errors.error(
            first,
            "bus.site",
            format!(
                "which site is this instance? set `[bus] site`, `--site` or PATCHBAY_SITE to one of: {}",
                names.join(", ")
            ),
        ),
        Some(site) if !nats.sites.contains_key(site) => errors.error(
            first,
            "bus.site",
            format!("no site is named `{site}`; the sites are: {}", names.join(", ")),
        ),
        Some(_) => {}
    }
    for (account, span) in accounts {
        let at: Vec<&str> = nats
            .sites
            .iter()
            .filter(|(_, site)| site.accounts.contains(account))
            .map(|(name, _)| name.as_str())
            .collect();
        match at.as_slice() {
            [_] => {}
            [] => errors.error(
                Some(span.clone()),
                account.as_str(),
                format!(
                    "`{account}` is at no site: add it to the `accounts` of one of {}",
                    names.join(", ")
                ),
            ),
            several => errors.error(
                Some(span.clone()),
                account.as_str(),
                format!(
                    "`{account}` is at several sites ({}): an account runs at one site",
                    several.join(", ")
                ),
            ),
        }
    }
    for (name, site) in &nats.sites {
        for (account, span) in site.accounts.iter().zip(&site.account_spans) {
            if !accounts.iter().any(|(known, _)| known == account) {
                errors.error(
                    Some(span.clone()),
                    format!("bus.sites.{name}.accounts"),
                    format!("no account `{account}` in this file"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::tests::errors;
    use crate::config::{Bus, parse};
    use crate::connectors::Registry;

    const SITES: &str = r#"
[bus]
engine = "nats"
site = "eu"

[bus.sites.eu]
servers = ["nats://127.0.0.1:4222"]
domain = "eu"
accounts = ["console.a"]

[bus.sites.us]
servers = ["nats://127.0.0.1:4223"]
domain = "us"
accounts = ["console.b"]

[console.a]
input = "none"
[console.b]
input = "none"
"#;

    #[test]
    fn sites_give_each_instance_its_site_s_servers() {
        let config = parse(Path::new("patchbay.toml"), SITES, &Registry::builtin()).expect("valid");
        let Bus::Nats(nats) = config.bus else {
            panic!("the nats engine")
        };
        assert_eq!(nats.servers(), ["nats://127.0.0.1:4222"]);
        assert_eq!(nats.sites["us"].accounts, ["console.b"]);
    }

    #[test]
    fn an_account_at_no_site_or_two_and_an_unknown_site_are_named() {
        let at_none = SITES.replace("accounts = [\"console.b\"]", "accounts = []");
        assert_eq!(
            errors(&at_none),
            [
                "patchbay.toml:18:10: `console.b`: `console.b` is at no site: add it to the `accounts` of one of eu, us"
            ]
        );
        let at_two = SITES.replace(
            "accounts = [\"console.b\"]",
            "accounts = [\"console.b\", \"console.a\"]",
        );
        assert_eq!(
            errors(&at_two),
            [
                "patchbay.toml:16:10: `console.a`: `console.a` is at several sites (eu, us): an account runs at one site"
            ]
        );
        let unknown = SITES.replace("site = \"eu\"", "site = \"asia\"");
        assert_eq!(
            errors(&unknown),
            ["patchbay.toml:6:12: `bus.site`: no site is named `asia`; the sites are: eu, us"]
        );
        let typo = SITES.replace(
            "accounts = [\"console.b\"]",
            "accounts = [\"console.b\", \"console.c\"]",
        );
        assert_eq!(
            errors(&typo),
            ["patchbay.toml:14:26: `bus.sites.us.accounts`: no account `console.c` in this file"]
        );
        let unnamed = SITES.replace("site = \"eu\"\n", "");
        assert_eq!(
            errors(&unnamed),
            [
                "patchbay.toml:5:12: `bus.site`: which site is this instance? set `[bus] site`, `--site` or PATCHBAY_SITE to one of: eu, us"
            ]
        );
    }
}
