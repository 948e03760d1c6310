//! The `patchbay` command.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use patchbay::admin::cli::DeadAction;
use patchbay::config::{self, Config};
use patchbay::connectors::Registry;
use tokio_util::sync::CancellationToken;

/// A bridge gateway between chat protocols.
#[derive(Parser)]
#[command(name = "patchbay", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format on standard error.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Write the registration file of a Matrix account in `mode = "appservice"`, for the
    /// homeserver's `app_service_config_files` (the tokens are made once, in its data dir).
    #[cfg(feature = "matrix")]
    MatrixRegistration {
        #[arg(long, short, env = "PATCHBAY_CONFIG")]
        config: PathBuf,
        /// The account, `matrix.NAME`.
        #[arg(long)]
        account: String,
        /// Write the file here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Run the gateway.
    Run {
        /// The config file.
        #[arg(long, short, env = "PATCHBAY_CONFIG")]
        config: PathBuf,
        #[command(flatten)]
        instance: InstanceArgs,
    },
    /// Show the instances, who runs which account, and what waits in the outbox: asked of the
    /// running gateway through the admin API when `[admin]` has a token, else read from the
    /// store.
    Status {
        /// The config file.
        #[arg(long, short, env = "PATCHBAY_CONFIG")]
        config: PathBuf,
        #[command(flatten)]
        instance: InstanceArgs,
    },
    /// List, retry or discard the deliveries that failed for good (through the admin API
    /// while the gateway runs, else in the store).
    DeadLetters {
        /// The config file.
        #[arg(long, short, env = "PATCHBAY_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: DeadLettersAction,
    },
    /// Ask the running gateway to re-read its config file (through the admin API); a config
    /// with errors is refused and they are printed.
    Reload {
        /// The config file.
        #[arg(long, short, env = "PATCHBAY_CONFIG")]
        config: PathBuf,
    },
    /// Validate a config file and show which rooms mirror which.
    Check {
        /// The config file.
        #[arg(long, short, env = "PATCHBAY_CONFIG")]
        config: PathBuf,
    },
    /// Print a patchbay config equivalent to a matterbridge one; what cannot be carried over
    /// is listed on standard error.
    ImportMatterbridge {
        /// The matterbridge.toml file.
        file: PathBuf,
    },
}

#[derive(Subcommand, Clone, Copy)]
enum DeadLettersAction {
    /// Each dead letter with its id, destination, and why it failed.
    List,
    /// Put one back at the end of its room's outbox.
    Retry { id: u64 },
    /// Drop one for good.
    Discard { id: u64 },
}

/// What one instance sets over the shared config file.
#[derive(clap::Args)]
struct InstanceArgs {
    /// This instance's id (the nats engine); default: `[bus] instance`, else host name + pid.
    #[arg(long, env = "PATCHBAY_INSTANCE")]
    instance: Option<String>,
    /// This instance's site (the nats engine with `[bus.sites]`); default: `[bus] site`.
    #[arg(long, env = "PATCHBAY_SITE")]
    site: Option<String>,
    /// The data directory, over `[general] data_dir`.
    #[arg(long, env = "PATCHBAY_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The HTTP listen address, over `[http] listen`.
    #[arg(long, env = "PATCHBAY_HTTP_LISTEN")]
    listen: Option<std::net::SocketAddr>,
}

impl InstanceArgs {
    fn overrides(&self) -> config::Overrides {
        config::Overrides {
            data_dir: self.data_dir.clone(),
            listen: self.listen,
            instance: self.instance.clone(),
            site: self.site.clone(),
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    // Several dependencies use rustls; should two crypto providers ever be compiled in, rustls
    // would panic at the first TLS connection unless the process names one. Name it up front.
    if rustls::crypto::aws_lc_rs::default_provider()
        .install_default()
        .is_err()
    {
        tracing::debug!("a TLS crypto provider was already installed");
    }
    let registry = Registry::builtin();
    let no_overrides = config::Overrides::default();
    let result = match cli.command {
        #[cfg(feature = "matrix")]
        Command::MatrixRegistration {
            config,
            account,
            out,
        } => matrix_registration(&config, &account, out.as_deref(), &registry),
        Command::Check { config } => check(&config, &registry),
        Command::Run { config, instance } => run(&config, &instance.overrides(), &registry),
        Command::Status { config, instance } => admin_command(
            &config,
            &instance.overrides(),
            &registry,
            |config| async move { patchbay::admin::cli::status(&config).await },
        ),
        Command::DeadLetters { config, action } => {
            let action = match action {
                DeadLettersAction::List => DeadAction::List,
                DeadLettersAction::Retry { id } => DeadAction::Retry(id),
                DeadLettersAction::Discard { id } => DeadAction::Discard(id),
            };
            match config {
                Some(config) => {
                    admin_command(&config, &no_overrides, &registry, |config| async move {
                        patchbay::admin::cli::dead_letters(&config, action).await
                    })
                }
                None => Err(anyhow::anyhow!(
                    "which config? give --config FILE (or set PATCHBAY_CONFIG)"
                )),
            }
        }
        Command::Reload { config } => {
            admin_command(&config, &no_overrides, &registry, |config| async move {
                patchbay::admin::cli::reload(&config).await
            })
        }
        Command::ImportMatterbridge { file } => {
            patchbay::import::run(&file, &registry).map_err(anyhow::Error::from)
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn load(path: &std::path::Path, registry: &Registry) -> anyhow::Result<Config> {
    load_with(path, &config::Overrides::default(), registry)
}

fn load_with(
    path: &std::path::Path,
    overrides: &config::Overrides,
    registry: &Registry,
) -> anyhow::Result<Config> {
    config::load_with(path, registry, overrides)
        .map_err(|diagnostics| anyhow::anyhow!("{diagnostics}"))
}

/// Run one of the admin commands on the config at `path` and print what it says.
fn admin_command<F, Fut>(
    path: &std::path::Path,
    overrides: &config::Overrides,
    registry: &Registry,
    command: F,
) -> anyhow::Result<()>
where
    F: FnOnce(Config) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<String>>,
{
    let config = load_with(path, overrides, registry)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    print!("{}", runtime.block_on(command(config))?);
    Ok(())
}

fn check(path: &std::path::Path, registry: &Registry) -> anyhow::Result<()> {
    let config = load(path, registry)?;
    // Warnings alone leave the file valid: check still succeeds.
    for warning in &config.warnings {
        println!("warning: {warning}");
    }
    print!("{}", patchbay::config::describe(&config));
    // What valid settings still do not do, from each connector (an appservice's encryption).
    for account in &config.accounts {
        for note in account.connector.check_notes() {
            println!("note: {}: {note}", account.name);
        }
    }
    Ok(())
}

/// The account's data directory is where the validated config puts it.
#[cfg(feature = "matrix")]
fn matrix_registration(
    path: &std::path::Path,
    account: &str,
    out: Option<&std::path::Path>,
    registry: &Registry,
) -> anyhow::Result<()> {
    let config = load(path, registry)?;
    let found = config
        .accounts
        .iter()
        .find(|a| a.name == account)
        .with_context(|| format!("no account `{account}` in {}", path.display()))?;
    let yaml = patchbay_matrix::write_registration(path, account, &found.data_dir)?;
    match out {
        Some(out) => {
            std::fs::write(out, yaml).with_context(|| format!("cannot write {}", out.display()))?
        }
        None => print!("{yaml}"),
    }
    Ok(())
}

fn run(
    path: &std::path::Path,
    overrides: &config::Overrides,
    registry: &Registry,
) -> anyhow::Result<()> {
    let config = load_with(path, overrides, registry)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(async move {
        let stop = CancellationToken::new();
        tokio::spawn(stop_on_signal(stop.clone()));
        let reload = patchbay::gateway::Reload::new(overrides.clone(), registry.clone());
        tokio::spawn(reload_on_hangup(reload.reloader.clone(), stop.clone()));
        patchbay::gateway::run(config, stop, Some(reload)).await
    });
    // A blocking read of standard input (the console connector) cannot be cancelled; do not
    // wait for it.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    result
}

/// Cancel `stop` on SIGINT or SIGTERM.
async fn stop_on_signal(stop: CancellationToken) {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(err) => {
                    tracing::warn!("cannot listen for SIGTERM: {err}");
                    let _ = interrupt.await;
                    stop.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    stop.cancel();
}

/// Reload the config file on each SIGHUP until `stop`; the outcome is logged by the gateway.
async fn reload_on_hangup(reloader: patchbay::gateway::Reloader, stop: CancellationToken) {
    #[cfg(unix)]
    {
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            Ok(signal) => signal,
            Err(err) => {
                tracing::warn!("cannot listen for SIGHUP; reload through the admin API: {err}");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                got = hangup.recv() => if got.is_none() { return },
            }
            tracing::info!("SIGHUP: reloading the config file");
            // The gateway logs what changed or why the file was refused.
            let _ = reloader.reload().await;
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (reloader, stop);
    }
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Dependencies' lines the connectors say repeat in steady state stay quiet unless
    // RUST_LOG names their target.
    for directive in Registry::builtin().quiet_log_directives() {
        let target = directive.split('=').next().unwrap_or_default();
        let named = std::env::var("RUST_LOG").is_ok_and(|v| v.contains(target));
        if let (false, Ok(directive)) = (named, directive.parse()) {
            filter = filter.add_directive(directive);
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
