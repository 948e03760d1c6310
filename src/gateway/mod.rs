//! The running gateway: store, router, outbox, connectors, and an orderly stop.
//!
//! [`Engine`] wires the parts for any set of connectors (the binary, tests and benches use it);
//! [`run`] starts one from a config file's contents and stops it on a signal.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use patchbay_sdk::{Connector, EventSink, StateHandle, Timestamp};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::account_states::{AccountStates, StateMap};
use crate::config::{Bus, Config};
use crate::delivery::{DeliveryPolicy, Destination, Outbox};
use crate::http;
use crate::intake::Intake;
use crate::metrics::Metrics;
use crate::ownership::leases::{LeaseSettings, Leases};
use crate::ownership::{Ownership, Sole};
pub use crate::reloader::{ReloadRefused, ReloadReport, ReloadRequests, Reloader};
use crate::router::Router;
use crate::store::{JetStreamStore, SqliteStore, Store};
use account::AccountRun;
pub use reload::Reload;

mod account;
mod reload;
mod served;

/// How often old mappings and delivered events are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// One account to run.
pub struct AccountSpec {
    /// `PROTOCOL.NAME`.
    pub name: String,
    pub connector: Arc<dyn Connector>,
    pub data_dir: PathBuf,
}

/// What the gateway keeps its state in and learns its accounts from: the engine.
pub struct Backend {
    pub store: Arc<dyn Store>,
    pub ownership: Arc<dyn Ownership>,
}

impl Backend {
    /// The embedded engine's: the SQLite store in `data_dir`, and every account owned here.
    fn embedded(
        data_dir: &std::path::Path,
        accounts: &[AccountSpec],
        policy: DeliveryPolicy,
    ) -> anyhow::Result<Backend> {
        let db_path = data_dir.join("patchbay.db");
        let store = SqliteStore::open_with(&db_path, policy.lane_queue)
            .with_context(|| format!("opening the store {}", db_path.display()))?;
        Ok(Backend {
            store: Arc::new(store),
            ownership: Arc::new(Sole::new(accounts.iter().map(|a| a.name.clone()))),
        })
    }
}

/// A running gateway.
pub struct Engine {
    pub store: Arc<dyn Store>,
    pub router: Arc<Router>,
    pub metrics: Arc<Metrics>,
    pub intake: Arc<Intake>,
    /// The accounts configured now and their connector states.
    pub states: AccountStates,
    /// Kept for as long as the engine runs: the accounts follow it.
    pub ownership: Arc<dyn Ownership>,
    outbox: Arc<Outbox>,
    stop: CancellationToken,
    intake_closed: CancellationToken,
    tasks: TaskTracker,
    /// How the admin API asks for a reload; None for engines started without a config file
    /// (tests, benches).
    reloader: Option<Reloader>,
    /// Each account's supervisor, so that a reload can stop or restart one account alone.
    running: HashMap<String, Running>,
    /// The connectors' HTTP routes on the listener, if there is one.
    served: Option<served::Served>,
}

/// One account's supervisor task.
struct Running {
    /// Stops this account alone (a child of the engine's stop).
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    /// Kept across a restart, so that whoever watches the account's state goes on seeing it.
    state: StateHandle,
}

impl Engine {
    /// The embedded engine: open the store in `data_dir`, resume its outbox, and start every
    /// account's connector.
    pub async fn start(
        data_dir: &std::path::Path,
        router: Router,
        accounts: Vec<AccountSpec>,
        policy: DeliveryPolicy,
        http: Option<SocketAddr>,
    ) -> anyhow::Result<Engine> {
        let backend = Backend::embedded(data_dir, &accounts, policy)?;
        Self::start_with(backend, router, accounts, policy, http).await
    }

    /// Start on any engine: the accounts run while `backend.ownership` gives them to this
    /// instance.
    pub async fn start_with(
        backend: Backend,
        router: Router,
        accounts: Vec<AccountSpec>,
        policy: DeliveryPolicy,
        http: Option<SocketAddr>,
    ) -> anyhow::Result<Engine> {
        Self::start_inner(backend, router, accounts, policy, http, None, None).await
    }

    /// [`Engine::start_with`], with the reloader the admin API offers.
    async fn start_inner(
        backend: Backend,
        router: Router,
        accounts: Vec<AccountSpec>,
        policy: DeliveryPolicy,
        http: Option<SocketAddr>,
        reloader: Option<Reloader>,
        admin: Option<crate::config::Admin>,
    ) -> anyhow::Result<Engine> {
        let Backend { store, ownership } = backend;
        let router = Arc::new(router);
        let metrics = Arc::new(Metrics::default());
        let stop = CancellationToken::new();
        let intake_closed = CancellationToken::new();

        let mut destinations = HashMap::new();
        let mut states = StateMap::new();
        let mut handles = Vec::new();
        for account in &accounts {
            let (handle, state) = StateHandle::new();
            destinations.insert(
                account.name.clone(),
                Destination {
                    connector: Arc::clone(&account.connector),
                    state: state.clone(),
                },
            );
            states.insert(account.name.clone(), state);
            handles.push(handle);
        }
        let states = AccountStates::new(states);
        let outbox = Arc::new(Outbox::new(
            Arc::clone(&store),
            Arc::clone(&router),
            destinations,
            policy,
            Arc::clone(&metrics),
        ));
        let intake = Arc::new(Intake::new(
            Arc::clone(&store),
            Arc::clone(&router),
            Arc::clone(&metrics),
            intake_closed.clone(),
        ));
        intake.hear_other_instances().await?;
        outbox
            .report_orphans()
            .await
            .context("reading the outbox")?;

        let tasks = TaskTracker::new();
        let mut running_accounts = HashMap::new();
        let mut routes = Vec::new();
        // The connectors' routes sit behind one fallback, so that a reload can change them.
        let served = served::Served::default();
        let mut serving = HashMap::new();
        for account in &accounts {
            if let Some(r) = account.connector.http_routes() {
                routes.push((account.name.clone(), r.clone()));
                serving.insert(account.name.clone(), r);
            }
        }
        let admin_api = || {
            let engine = store.engine();
            crate::admin::AdminApi::new(
                store.clone(),
                router.clone(),
                &states,
                reloader.clone(),
                engine,
                Arc::clone(&metrics),
            )
        };
        if let Some(r) =
            crate::admin::start(admin.as_ref(), admin_api, http.is_some(), &tasks, &stop).await?
        {
            routes.push(("admin".to_owned(), r));
        }
        match (http, routes.is_empty()) {
            (Some(listen), _) => {
                let status = http::Status {
                    states: states.clone(),
                    metrics: Arc::clone(&metrics),
                    store: Arc::clone(&store),
                };
                for (name, r) in &serving {
                    served.insert(name, r.clone());
                }
                let own = routes
                    .into_iter()
                    .filter(|(name, _)| !serving.contains_key(name))
                    .map(|(_, r)| r);
                let app = http::router(
                    status,
                    std::iter::once(served.router()).chain(own).collect(),
                );
                tasks.spawn(http::serve(listen, app, stop.clone()).await?);
            }
            (None, false) => {
                let names: Vec<String> = routes.into_iter().map(|(name, _)| name).collect();
                anyhow::bail!(
                    "{} serve{} HTTP but no listener is configured: add `[http] listen = \"127.0.0.1:8080\"` to the config",
                    names.join(", "),
                    if names.len() == 1 { "s" } else { "" }
                );
            }
            (None, true) => {}
        }
        for (account, state) in accounts.into_iter().zip(handles) {
            std::fs::create_dir_all(&account.data_dir)
                .with_context(|| format!("creating {}", account.data_dir.display()))?;
            let run = AccountRun {
                sink: EventSink::new(account.name.as_str(), intake.clone()),
                name: account.name.clone(),
                connector: account.connector,
                data_dir: account.data_dir,
                state: state.clone(),
            };
            let own_stop = stop.child_token();
            let task = tasks.spawn(run.supervise(
                Arc::clone(&outbox),
                ownership.owned(),
                own_stop.clone(),
            ));
            let running = Running {
                stop: own_stop,
                task,
                state,
            };
            running_accounts.insert(account.name, running);
        }
        Ok(Engine {
            store,
            router,
            metrics,
            intake,
            states,
            ownership,
            outbox,
            stop,
            intake_closed,
            tasks,
            reloader,
            running: running_accounts,
            served: http.map(|_| served),
        })
    }

    /// How to ask this engine to reload its config file, if it was started from one.
    pub fn reloader(&self) -> Option<Reloader> {
        self.reloader.clone()
    }

    /// Stop one account alone (a reload removed or changed it): its connector, then its lanes
    /// once they finish the delivery in hand, within `timeout`; what waits stays in the outbox.
    /// Returns its state handle, for the account to go on with when it starts again.
    async fn stop_account(&mut self, name: &str, timeout: Duration) -> Option<StateHandle> {
        let running = self.running.remove(name)?;
        tracing::info!(account = %name, "stopping the account (reload)");
        running.stop.cancel();
        if tokio::time::timeout(timeout, running.task).await.is_err() {
            tracing::warn!(account = %name, "the account did not stop within {timeout:?}");
        }
        if !self.outbox.account_stopped(name, timeout).await {
            tracing::warn!(account = %name, "a delivery was still in flight at the timeout");
        }
        self.outbox.remove_destination(name);
        if let Some(served) = &self.served {
            served.remove(name);
        }
        running.state.down("stopped by a reload");
        Some(running.state)
    }

    /// Start one account (a reload added or changed it); it runs while the ownership gives it
    /// to this instance, and an account started before goes on with its state handle.
    fn start_account(
        &mut self,
        account: AccountSpec,
        state: Option<StateHandle>,
    ) -> anyhow::Result<()> {
        let routes = account.connector.http_routes();
        match (&routes, &self.served) {
            (Some(routes), Some(served)) => served.insert(&account.name, routes.clone()),
            (Some(_), None) => anyhow::bail!(
                "{} serves HTTP but no listener is configured: add `[http] listen` and restart",
                account.name
            ),
            (None, _) => {}
        }
        std::fs::create_dir_all(&account.data_dir)
            .with_context(|| format!("creating {}", account.data_dir.display()))?;
        let (state, watch) = match (state, self.states.get(&account.name)) {
            (Some(state), Some(watch)) => (state, watch),
            _ => StateHandle::new(),
        };
        self.states.insert(&account.name, watch.clone());
        self.outbox.add_destination(
            &account.name,
            Destination {
                connector: Arc::clone(&account.connector),
                state: watch,
            },
        );
        let run = AccountRun {
            sink: EventSink::new(account.name.as_str(), self.intake.clone()),
            name: account.name.clone(),
            connector: account.connector,
            data_dir: account.data_dir,
            state: state.clone(),
        };
        // It runs once the ownership gives it to this instance: at once on the embedded
        // engine, when its lease is taken (or still held, for a restart) on the nats engine.
        let own_stop = self.stop.child_token();
        let task = self.tasks.spawn(run.supervise(
            Arc::clone(&self.outbox),
            self.ownership.owned(),
            own_stop.clone(),
        ));
        let running = Running {
            stop: own_stop,
            task,
            state,
        };
        self.running.insert(account.name, running);
        Ok(())
    }

    /// Whether the HTTP listener runs (accounts that serve HTTP can be added).
    fn serves_http(&self) -> bool {
        self.served.is_some()
    }

    /// Where events for `account` can be emitted from outside a connector (tests, benches).
    pub fn sink(&self, account: &str) -> EventSink {
        EventSink::new(account, self.intake.clone())
    }

    /// Prune the store every hour, until the engine stops.
    pub fn prune_every_hour(&self, retention: Duration) {
        let store = Arc::clone(&self.store);
        let stop = self.stop.clone();
        self.tasks.spawn(async move {
            loop {
                let before = Timestamp(Timestamp::now().0 - retention.as_millis() as i64);
                match store.prune(before).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!("pruned {n} events older than the retention"),
                    Err(err) => tracing::warn!("pruning the store failed: {err}; it is tried again at the next prune (check the data dir's disk)"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(PRUNE_EVERY) => {}
                    _ = stop.cancelled() => return,
                }
            }
        });
    }

    /// Stop in order: no new events; connectors and lanes told to stop; in-flight deliveries
    /// finished within `timeout` (the rest stay in the outbox); the store closed cleanly.
    pub async fn stop(self, timeout: Duration) {
        self.intake_closed.cancel();
        self.stop.cancel();
        if !self.outbox.drain(timeout).await {
            tracing::warn!(
                "some deliveries were still in flight at the shutdown timeout; they stay in the outbox"
            );
        }
        self.tasks.close();
        if tokio::time::timeout(Duration::from_secs(5), self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("some connectors did not stop within 5s");
        }
        self.store.close().await;
    }
}

/// Run the gateway a config describes until `stop` is cancelled, reloading the file when
/// `reload`'s reloader asks.
pub async fn run(
    config: Config,
    stop: CancellationToken,
    reload: Option<Reload>,
) -> anyhow::Result<()> {
    config.log_warnings();
    let current = reload::Current::of(&config);
    let (reloader, requests) = match reload {
        Some(r) => {
            let source = reload::Source {
                file: config.file.clone(),
                overrides: r.overrides,
                registry: r.registry,
                stop_timeout: config.general.shutdown_timeout,
            };
            (Some(r.reloader), Some((r.requests, source)))
        }
        None => (None, None),
    };
    let router = Router::new(config.general.gateway_id.clone(), config.routes);
    let names: Vec<String> = config.accounts.iter().map(|a| a.name.clone()).collect();
    let accounts: Vec<AccountSpec> = config
        .accounts
        .into_iter()
        .map(|a| AccountSpec {
            name: a.name,
            connector: a.connector,
            data_dir: a.data_dir,
        })
        .collect();
    let policy = DeliveryPolicy::default();
    let http = config.http.map(|h| h.listen);
    let admin = config.admin.clone();
    let leases_stop = CancellationToken::new();
    let mut leases_task = None;
    let engine = match &config.bus {
        Bus::Embedded => {
            let backend = Backend::embedded(&config.general.data_dir, &accounts, policy)?;
            Engine::start_inner(backend, router, accounts, policy, http, reloader, admin).await?
        }
        Bus::Nats(nats) => {
            let instance = instance_id(nats.instance.as_deref());
            let bus = patchbay_nats::Bus::connect(&bus_options(nats, &instance, &config.general))
                .await
                .context("starting the nats engine ([bus])")?;
            let settings = LeaseSettings {
                instance: instance.clone(),
                accounts: names,
                site_accounts: site_accounts(nats),
                lease: nats.lease,
                prefer: nats.prefer.clone(),
            };
            let (leases, task) = Leases::start(bus.clone(), settings, leases_stop.clone());
            leases_task = Some(task);
            tracing::info!(%instance, site = ?nats.site, servers = ?nats.servers(), "nats engine: accounts follow their leases");
            let backend = Backend {
                store: Arc::new(JetStreamStore::new(bus.clone())),
                ownership: leases,
            };
            let engine =
                Engine::start_inner(backend, router, accounts, policy, http, reloader, admin)
                    .await?;
            crate::ownership::leases::publish_states(
                bus,
                engine.states.clone(),
                engine.ownership.owned(),
                nats.lease / 4,
                leases_stop.clone(),
            );
            engine
        }
    };
    engine.prune_every_hour(config.general.retention);
    tracing::info!(
        accounts = engine.states.len(),
        routes = engine.router.routes().len(),
        data_dir = %config.general.data_dir.display(),
        "patchbay is running"
    );
    let mut engine = engine;
    match requests {
        Some((requests, source)) => {
            reload::serve(&mut engine, requests, source, current, &stop).await
        }
        None => stop.cancelled().await,
    }
    tracing::info!("stopping: no new events; finishing deliveries in flight");
    engine.stop(config.general.shutdown_timeout).await;
    // Only now that no account runs here may another instance take them.
    leases_stop.cancel();
    if let Some(task) = leases_task {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// This instance's id: the config's or command line's, else `PATCHBAY_INSTANCE`, else host
/// name and process id.
pub fn instance_id(configured: Option<&str>) -> String {
    if let Some(id) = configured.filter(|id| !id.is_empty()) {
        return id.to_owned();
    }
    if let Ok(id) = std::env::var("PATCHBAY_INSTANCE")
        && !id.is_empty()
    {
        return id;
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".into());
    format!("{host}-{}", std::process::id())
}

/// The nats crate's options from the validated `[bus]` table.
pub fn bus_options(
    nats: &crate::config::NatsBus,
    instance: &str,
    general: &crate::config::General,
) -> patchbay_nats::BusOptions {
    patchbay_nats::BusOptions {
        servers: nats.servers().to_vec(),
        creds_file: nats.creds_file.clone(),
        token: nats.token.clone(),
        user: nats.user.clone(),
        password: nats.password.clone(),
        tls_ca_file: nats.tls_ca_file.clone(),
        tls_cert_file: nats.tls_cert_file.clone(),
        tls_key_file: nats.tls_key_file.clone(),
        prefix: nats.prefix.clone(),
        name: format!("patchbay {instance}"),
        lease: nats.lease,
        retention: general.retention,
        site: site_options(nats),
        poll: None,
    }
}

/// This instance's site among `[bus.sites]`, as the nats crate takes it.
fn site_options(nats: &crate::config::NatsBus) -> Option<patchbay_nats::SiteOptions> {
    let name = nats.site.clone().filter(|_| !nats.sites.is_empty())?;
    nats.sites.get(&name)?;
    Some(patchbay_nats::SiteOptions {
        peers: nats
            .sites
            .iter()
            .filter(|(peer, _)| **peer != name)
            .map(|(peer, site)| patchbay_nats::PeerSite {
                name: peer.clone(),
                domain: Some(site.domain.clone()),
            })
            .collect(),
        accounts: nats
            .sites
            .iter()
            .flat_map(|(site, s)| s.accounts.iter().map(move |a| (a.clone(), site.clone())))
            .collect(),
        name,
    })
}

/// The accounts this instance's site runs; None without sites (it may run any).
fn site_accounts(nats: &crate::config::NatsBus) -> Option<std::collections::BTreeSet<String>> {
    let site = nats.sites.get(nats.site.as_ref()?)?;
    Some(site.accounts.iter().cloned().collect())
}
