//! A real Synapse homeserver for tests: generated config (SQLite on /dev/shm, no federation,
//! no presence, rate limits raised), started on a free loopback port, stopped when the test
//! process exits (a small shell watchdog kills it), restartable mid-test.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use patchbay_sdk::sync::lock;
use serde_json::{Value, json};
use sha1::Sha1;

pub const SHARED_SECRET: &str = "patchbay-test-registration-secret";

/// The virtualenv tests/install-deps.sh installs Synapse into.
fn venv() -> PathBuf {
    std::env::var_os("PATCHBAY_SYNAPSE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/patchbay-synapse-venv"))
}

pub struct Synapse {
    pub port: u16,
    dir: PathBuf,
    child: Mutex<Option<Child>>,
}

/// How long Synapse waits for the answer to a push (its HTTP client's request timeout) and
/// then backs off before it pushes again: a push the bridge read but had not answered when it
/// was stopped holds back every later push to it this long.
pub const PUSH_TIMEOUT: Duration = Duration::from_secs(60 + 2);

pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

const RATE_LIMITS: &str = r#"
rc_message: {per_second: 10000, burst_count: 10000}
rc_registration: {per_second: 10000, burst_count: 10000}
rc_registration_token_validity: {per_second: 10000, burst_count: 10000}
rc_login:
  address: {per_second: 10000, burst_count: 10000}
  account: {per_second: 10000, burst_count: 10000}
  failed_attempts: {per_second: 10000, burst_count: 10000}
rc_admin_redaction: {per_second: 10000, burst_count: 10000}
rc_joins:
  local: {per_second: 10000, burst_count: 10000}
  remote: {per_second: 10000, burst_count: 10000}
rc_joins_per_room: {per_second: 10000, burst_count: 10000}
rc_3pid_validation: {per_second: 10000, burst_count: 10000}
rc_invites:
  per_room: {per_second: 10000, burst_count: 10000}
  per_user: {per_second: 10000, burst_count: 10000}
  per_issuer: {per_second: 10000, burst_count: 10000}
rc_third_party_invite: {per_second: 10000, burst_count: 10000}
rc_media_create: {per_second: 10000, burst_count: 10000}
rc_key_requests: {per_second: 10000, burst_count: 10000}
rc_room_creation: {per_second: 10000, burst_count: 10000}
rc_reports: {per_second: 10000, burst_count: 10000}
rc_presence:
  per_user: {per_second: 10000, burst_count: 10000}
rc_delayed_event_mgmt: {per_second: 10000, burst_count: 10000}
rc_federation: {window_size: 1000, sleep_limit: 10000, sleep_delay: 1, reject_limit: 10000, concurrent: 100}
"#;

impl Synapse {
    /// Generate a config in a fresh directory under /dev/shm and start the server.
    pub fn start() -> Synapse {
        Synapse::start_in(Synapse::new_dir(), free_port(), &[])
    }

    /// A fresh directory for a server (removed with it, and when the test process ends):
    /// a test may keep files of its own in it before starting the server there, such as
    /// application-service registrations and the bridge data they need.
    pub fn new_dir() -> PathBuf {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_owned()
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("patchbay-synapse-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the synapse dir");
        dir
    }

    /// Start a server in `dir` (from [`Synapse::new_dir`]) on `port`, loading the given
    /// application-service registration files.
    pub fn start_in(dir: PathBuf, port: u16, app_services: &[PathBuf]) -> Synapse {
        let d = dir.display();
        // Benchmarks can ask for Synapse's default rate limits instead of the raised ones.
        let rate_limits = if std::env::var_os("PATCHBAY_SYNAPSE_DEFAULT_LIMITS").is_some() {
            ""
        } else {
            RATE_LIMITS
        };
        let app_services = if app_services.is_empty() {
            String::new()
        } else {
            let files: Vec<String> = app_services
                .iter()
                .map(|p| format!("\"{}\"", p.display()))
                .collect();
            format!("app_service_config_files: [{}]\n", files.join(", "))
        };
        let config = format!(
            r#"server_name: "localhost"
public_baseurl: "http://127.0.0.1:{port}/"
pid_file: "{d}/homeserver.pid"
listeners:
  - port: {port}
    bind_addresses: ["127.0.0.1"]
    type: http
    tls: false
    x_forwarded: false
    resources:
      - names: [client]
        compress: false
database:
  name: sqlite3
  args:
    database: "{d}/homeserver.db"
log_config: "{d}/log.yaml"
media_store_path: "{d}/media_store"
signing_key_path: "{d}/signing.key"
registration_shared_secret: "{SHARED_SECRET}"
enable_registration: false
report_stats: false
macaroon_secret_key: "patchbay-test-macaroon"
form_secret: "patchbay-test-form"
trusted_key_servers: []
suppress_key_server_warning: true
federation_domain_whitelist: []
presence:
  enabled: false
url_preview_enabled: false
max_upload_size: 50M
{app_services}{rate_limits}"#
        );
        std::fs::write(dir.join("homeserver.yaml"), config).expect("write the config");
        // The application-service scheduler at INFO: when a test waits for a push in vain,
        // [`Synapse::appservice_log`] says what Synapse did (sent, failed, backing off).
        let log = format!(
            "version: 1\nformatters:\n  precise:\n    format: '%(asctime)s %(name)s %(levelname)s %(message)s'\n\
             handlers:\n  file:\n    class: logging.FileHandler\n    formatter: precise\n    filename: {d}/homeserver.log\n\
             loggers:\n  synapse.appservice: {{level: INFO}}\n  synapse.rest.client.appservice_ping: {{level: INFO}}\n\
             root:\n  level: WARNING\n  handlers: [file]\ndisable_existing_loggers: false\n"
        );
        std::fs::write(dir.join("log.yaml"), log).expect("write the log config");
        let status = Command::new(venv().join("bin/python"))
            .args(["-m", "synapse.app.homeserver", "-c"])
            .arg(dir.join("homeserver.yaml"))
            .arg("--generate-keys")
            .stdout(Stdio::null())
            .status()
            .expect("run synapse --generate-keys (is tests/install-deps.sh run?)");
        assert!(status.success(), "synapse --generate-keys failed");
        let synapse = Synapse {
            port,
            dir,
            child: Mutex::new(None),
        };
        synapse.resume();
        synapse
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Synapse's application-service scheduler lines about the service `id` (what it sent,
    /// what failed, how long it backs off), for the panic of a test that waited for a push.
    pub fn appservice_log(&self, id: &str) -> String {
        let log = std::fs::read_to_string(self.dir.join("homeserver.log")).unwrap_or_default();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("synapse.appservice") && l.contains(id))
            .collect();
        format!("Synapse on {id}:\n{}", lines.join("\n"))
    }

    /// Start (again) on the same port and database, and wait until it is healthy.
    pub fn resume(&self) {
        let python = venv().join("bin/python");
        let config = self.dir.join("homeserver.yaml");
        // The shell waits for Synapse; a watcher beside it ends Synapse (and removes its
        // directory) once the test process is gone.
        let script = format!(
            "\"{py}\" -m synapse.app.homeserver -c \"{cfg}\" >>\"{dir}/stdout.log\" 2>&1 & child=$!\n\
             echo $child > \"{dir}/child.pid\"\n\
             ( while kill -0 {parent} 2>/dev/null; do sleep 0.5; done; kill -9 $child ) & watcher=$!\n\
             wait $child; kill $watcher 2>/dev/null\n\
             kill -0 {parent} 2>/dev/null || rm -rf \"{dir}\"\n\
             exit 0",
            py = python.display(),
            cfg = config.display(),
            dir = self.dir.display(),
            parent = std::process::id(),
        );
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn synapse");
        *lock(&self.child) = Some(child);
        self.wait_healthy();
    }

    /// Stop the server (SIGKILL: a crash, not a clean shutdown).
    pub fn stop(&self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("child.pid")) {
            let _ = Command::new("kill").args(["-9", pid.trim()]).status();
        }
        if let Some(mut child) = lock(&self.child).take() {
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.dir.join("child.pid"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while http_get(self.port, "/health").is_some() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if http_get(self.port, "/health").is_some_and(|body| body.contains("OK")) {
                return;
            }
            if let Some(child) = lock(&self.child).as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                let log = std::fs::read_to_string(self.dir.join("stdout.log")).unwrap_or_default();
                panic!("synapse exited ({status}) before it was healthy:\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "synapse did not become healthy on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Register a user through the shared-secret admin API; returns the full user id.
    pub async fn register(&self, name: &str, password: &str) -> String {
        let http = matrix_sdk::reqwest::Client::new();
        let url = format!("{}/_synapse/admin/v1/register", self.url());
        let nonce = json_of(http.get(&url).send().await, "a nonce").await;
        let nonce = nonce["nonce"].as_str().expect("nonce").to_owned();
        let mut mac = Hmac::<Sha1>::new_from_slice(SHARED_SECRET.as_bytes()).expect("hmac key");
        for (i, part) in [nonce.as_str(), name, password, "notadmin"]
            .iter()
            .enumerate()
        {
            if i > 0 {
                mac.update(b"\0");
            }
            mac.update(part.as_bytes());
        }
        let digest: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let request = json!({"nonce": nonce, "username": name, "password": password,
                             "admin": false, "mac": digest});
        let post = http.post(&url).header("content-type", "application/json");
        let response = json_of(post.body(request.to_string()).send().await, "register").await;
        response["user_id"]
            .as_str()
            .unwrap_or_else(|| panic!("registration failed: {response}"))
            .to_owned()
    }
}

impl Drop for Synapse {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The JSON body of an answer to an HTTP request (`what`, in a panic when there is none).
pub async fn json_of(
    answer: Result<matrix_sdk::reqwest::Response, matrix_sdk::reqwest::Error>,
    what: &str,
) -> Value {
    let answer = answer.unwrap_or_else(|e| panic!("{what}: {e}"));
    let body = answer
        .bytes()
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{what} is not JSON: {e}"))
}

/// A tiny blocking HTTP GET, for health checks before any runtime exists.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.starts_with("HTTP/1.").then_some(response)
}
