//! How to reach the NATS servers, and under which names.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// The `[bus]` table as the gateway validated it.
#[derive(Clone, Debug, Default)]
pub struct BusOptions {
    /// `nats://host:port` URLs; the client picks one and fails over to the others.
    pub servers: Vec<String>,
    /// A `.creds` file (JWT and NKey seed).
    pub creds_file: Option<PathBuf>,
    pub token: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    /// A CA (PEM) to trust for the servers' TLS certificates; setting it requires TLS.
    pub tls_ca_file: Option<PathBuf>,
    /// A client certificate and its key (PEM), for servers that verify clients.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// The first part of every stream, bucket and subject name (`patchbay`).
    pub prefix: String,
    /// This instance's connection name, shown by the server's monitoring.
    pub name: String,
    /// How long an account lease lives without renewal.
    pub lease: Duration,
    /// How long the message-id map keeps an entry.
    pub retention: Duration,
    /// Several sites, each with its own servers and JetStream; `None`: one JetStream for all.
    pub site: Option<SiteOptions>,
    /// How often the outbox is searched for rooms with deliveries waiting, behind the bells
    /// (see [`crate::doorbell`]); `None`: [`crate::doorbell::POLL`]. Tests lengthen it to show
    /// that a room is woken by its bell alone.
    pub poll: Option<Duration>,
}

/// This instance's site among several (see [`crate::layout`] for what crosses between them).
#[derive(Clone, Debug, Default)]
pub struct SiteOptions {
    /// This site's name: part of every subject, stream and bucket name it owns.
    pub name: String,
    /// The other sites, whose exports this site's outbox takes in.
    pub peers: Vec<PeerSite>,
    /// Every account of every site, and its site.
    pub accounts: BTreeMap<String, String>,
}

/// Another site, as this one reaches it.
#[derive(Clone, Debug, Default)]
pub struct PeerSite {
    pub name: String,
    /// Its JetStream domain (sites joined as leaf nodes of a hub); `None` when the sites share
    /// one JetStream.
    pub domain: Option<String>,
}

impl BusOptions {
    pub(crate) async fn connect_options(&self) -> std::io::Result<async_nats::ConnectOptions> {
        let mut options = match &self.creds_file {
            Some(path) => async_nats::ConnectOptions::with_credentials_file(path).await?,
            None => async_nats::ConnectOptions::new(),
        };
        if let Some(token) = &self.token {
            options = options.token(token.clone());
        }
        if let (Some(user), Some(password)) = (&self.user, &self.password) {
            options = options.user_and_password(user.clone(), password.clone());
        }
        if let Some(ca) = &self.tls_ca_file {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert_file, &self.tls_key_file) {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        Ok(options
            .name(&self.name)
            .connection_timeout(Duration::from_secs(5))
            // A server restart must not end the gateway: keep reconnecting, forever.
            .retry_on_initial_connect()
            .max_reconnects(None))
    }
}
