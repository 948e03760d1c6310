//! Appservice-mode bridges under test: one Synapse per test binary, started with the
//! registrations of [`SLOTS`] bridges (each its own id, bot, ghost prefix, listener port and
//! data directory), so that each test can run its own bridge against the same server.
//!
//! A slot's listening socket stays open for the whole run: a bridge that restarts serves on
//! a clone of it, and the homeserver's requests meanwhile wait in the backlog.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use matrix_sdk::ruma::OwnedRoomId;
use patchbay_sdk::AccountInfo;
use patchbay_sdk::sync::lock;
use patchbay_sdk::testkit::{self, Recorder};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{Running, Synapse, User, unique};

pub const SLOTS: usize = 4;

pub struct Slot {
    pub index: usize,
    pub port: u16,
    listener: TcpListener,
    pub data_dir: PathBuf,
    /// The bot's user id.
    pub bot: String,
    /// Every ghost's localpart starts with this.
    pub prefix: String,
    pub id: String,
}

pub struct Fixture {
    pub synapse: Synapse,
    pub slots: Vec<Slot>,
}

impl Slot {
    fn account(&self) -> AccountInfo {
        AccountInfo {
            account: format!("matrix.test{}", self.index),
            config_dir: self.data_dir.clone(),
            data_dir: self.data_dir.clone(),
        }
    }

    /// The bridge's table; `extra` adds lines (rooms, invite_from).
    pub fn table(&self, homeserver_port: u16, extra: &str) -> String {
        format!(
            "mode = \"appservice\"\nhomeserver = \"http://127.0.0.1:{homeserver_port}\"\n\
             server_name = \"localhost\"\nappservice_url = \"http://127.0.0.1:{port}\"\n\
             bot_localpart = \"pbbot{i}\"\nghost_template = \"{prefix}{{protocol}}_{{account}}_{{nick}}\"\n\
             appservice_id = \"{id}\"\n{extra}\n",
            port = self.port,
            i = self.index,
            prefix = self.prefix,
            id = self.id,
        )
    }

    /// The AS's tokens, as the bridge keeps them.
    pub fn tokens(&self) -> Value {
        let bytes = std::fs::read(self.data_dir.join("appservice.json")).expect("tokens file");
        serde_json::from_slice(&bytes).expect("tokens json")
    }

    /// The AS API's base URL on the bridge's listener.
    pub fn api(&self) -> String {
        format!(
            "http://127.0.0.1:{}/_patchbay/matrix/test{}/_matrix/app/v1",
            self.port, self.index
        )
    }
}

/// The shared server with every slot's registration loaded.
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = Synapse::new_dir();
        let homeserver_port = super::synapse::free_port();
        let mut slots = Vec::new();
        let mut files = Vec::new();
        for index in 0..SLOTS {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind a bridge port");
            let port = listener.local_addr().expect("addr").port();
            let slot = Slot {
                index,
                port,
                listener,
                data_dir: dir.join(format!("bridge-{index}")),
                bot: format!("@pbbot{index}:localhost"),
                prefix: format!("_pb{index}_"),
                id: format!("patchbay-test-{index}"),
            };
            let table: toml::Table =
                toml::from_str(&slot.table(homeserver_port, "")).expect("table");
            let yaml = patchbay_matrix::appservice::registration::registration_for_table(
                &slot.account(),
                table,
            )
            .expect("registration");
            let file = dir.join(format!("registration-{index}.yaml"));
            std::fs::write(&file, yaml).expect("write the registration");
            files.push(file);
            slots.push(slot);
        }
        let synapse = Synapse::start_in(dir, homeserver_port, &files);
        Fixture { synapse, slots }
    })
}

/// A running bridge: the connector, and its routes served on the slot's port.
pub struct Bridge {
    pub running: Running,
    server: tokio::task::JoinHandle<()>,
    stop_server: CancellationToken,
}

/// Build the slot's connector from its table and run it, serving its routes.
pub fn start_bridge(slot: &Slot, synapse: &Synapse, extra: &str) -> Bridge {
    start_bridge_refusing(slot, synapse, extra, None)
}

/// Alice, a running bridge whose bot she trusts, and a private room of hers the bot joined.
pub async fn setup(slot: &Slot) -> (User, Bridge, OwnedRoomId) {
    setup_refusing(slot, None).await
}

/// [`setup`] with a gateway that refuses the first event reading `refuse` once.
pub async fn setup_refusing(slot: &Slot, refuse: Option<&str>) -> (User, Bridge, OwnedRoomId) {
    let synapse = &fixture().synapse;
    let alice = User::register(synapse, &unique("alice")).await;
    let trust = format!("invite_from = [\"{}\"]", alice.id);
    let mut bridge = start_bridge_refusing(slot, synapse, &trust, refuse);
    bridge.running.wait_up().await;
    let room_id = alice.create_room(None, &[&slot.bot], false).await;
    alice
        .wait_joined(&room_id, "the bot to accept the invite", &slot.bot)
        .await;
    (alice, bridge, room_id)
}

/// A gateway whose store refuses the first event whose text is `refuse`, once, then hands
/// every event to its recorder.
struct Refusing {
    recorder: Arc<Recorder>,
    refuse: std::sync::Mutex<Option<String>>,
}

#[async_trait::async_trait]
impl patchbay_sdk::Emit for Refusing {
    async fn emit(
        &self,
        account: &str,
        inbound: patchbay_sdk::Inbound,
    ) -> Result<Option<patchbay_sdk::EventId>, patchbay_sdk::EmitError> {
        let text = inbound.kind.body().map(|b| b.to_plain());
        {
            let mut refuse = lock(&self.refuse);
            if refuse.is_some() && *refuse == text {
                *refuse = None;
                return Err(patchbay_sdk::EmitError::Store("the disk is full".into()));
            }
        }
        self.recorder.emit(account, inbound).await
    }
}

/// [`start_bridge`] with a gateway that refuses the first event reading `refuse` once.
pub fn start_bridge_refusing(
    slot: &Slot,
    synapse: &Synapse,
    extra: &str,
    refuse: Option<&str>,
) -> Bridge {
    let table = slot.table(synapse.port, extra);
    let built = testkit::build_in(&*patchbay_matrix::factory(), slot.account(), &table)
        .expect("valid config");
    let router = built.connector.http_routes().expect("the AS API routes");
    let listener = slot.listener.try_clone().expect("clone the listener");
    listener.set_nonblocking(true).expect("nonblocking");
    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
    let stop_server = CancellationToken::new();
    let stopping = stop_server.clone();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move { stopping.cancelled().await })
            .await;
    });
    let recorder = Arc::new(Recorder::default());
    let running = match refuse {
        Some(text) => {
            let store = Arc::new(Refusing {
                recorder: Arc::clone(&recorder),
                refuse: std::sync::Mutex::new(Some(text.to_owned())),
            });
            built.start_behind(store, recorder)
        }
        None => built.start_recording(recorder),
    };
    Bridge {
        running: running.into(),
        server,
        stop_server,
    }
}

impl Bridge {
    /// Stop the connector and its server.
    pub async fn stop(self) {
        self.running.stop().await;
        // Graceful: kept-alive connections are closed too, so no request reaches the old
        // connector once a new one runs.
        self.stop_server.cancel();
        let mut server = self.server;
        if tokio::time::timeout(std::time::Duration::from_secs(10), &mut server)
            .await
            .is_err()
        {
            server.abort();
        }
    }
}
