//! Appservice-mode gateways under test through the binary: one Synapse per test binary,
//! started with the registration files that `patchbay matrix-registration` wrote for
//! [`SLOTS`] gateways. Each slot has its own directory (config and data), HTTP port, bot and
//! ghost prefix, so the tests of the binary run side by side against the same server.
//!
//! The registration names the gateway's URL, so a slot's port is chosen before Synapse
//! starts and every gateway of that slot listens on it. The helpers below are what the tests
//! share: a test's slot and room, ghost predicates, a local image server (what bot mode uses
//! too, such as rooms, members and the IRC account, is in `support/matrix.rs`).
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use matrix_sdk::ruma::{OwnedRoomId, RoomId};
use serde_json::Value;

use crate::matrix::{bot_joined, is_member, public_room};
use crate::mx::{Synapse, User, unique};
use crate::support::Gateway;

pub const SLOTS: usize = 7;

pub struct Slot {
    pub index: usize,
    /// The gateway's working directory: `patchbay.toml` and `data/`.
    pub dir: PathBuf,
    /// The gateway's `[http]` port, where Synapse pushes transactions.
    pub port: u16,
    /// The bridge bot's user id.
    pub bot: String,
    /// Every ghost's localpart starts with this.
    pub prefix: String,
    /// The homeserver's port (chosen before Synapse starts, like the slot's).
    pub homeserver_port: u16,
}

pub struct Fixture {
    pub synapse: Synapse,
    pub slots: Vec<Slot>,
}

impl Slot {
    /// The id of this slot's application-service registration.
    pub fn appservice_id(&self) -> String {
        format!("patchbay-gw-{}", self.index)
    }

    /// The `[http]` and `[matrix.home]` tables; `rooms` are aliases the bot joins at start.
    pub fn tables(&self, rooms: &[&str]) -> String {
        let rooms: Vec<String> = rooms.iter().map(|r| format!("\"{r}\"")).collect();
        format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\n\n\
             [matrix.home]\nmode = \"appservice\"\nhomeserver = \"http://127.0.0.1:{homeserver_port}\"\n\
             server_name = \"localhost\"\nappservice_url = \"http://127.0.0.1:{port}\"\n\
             bot_localpart = \"pbgw{i}\"\nghost_template = \"{prefix}{{protocol}}_{{account}}_{{nick}}\"\n\
             appservice_id = \"{id}\"\nrooms = [{rooms}]\n\
             media_public_url = \"http://127.0.0.1:{port}\"\n\n",
            port = self.port,
            homeserver_port = self.homeserver_port,
            i = self.index,
            id = self.appservice_id(),
            prefix = self.prefix,
            rooms = rooms.join(", "),
        )
    }

    /// A whole config mirroring the room `alias` with `#x` of the IRC account `irc` (its
    /// `[irc.net]` table), authors named by their nick.
    pub fn bridged_to_irc(&self, alias: &str, irc: &str) -> String {
        self.config(
            &[alias],
            &format!(
                "{irc}[[route]]\nname = \"bridge\"\ninout = [\"matrix.home/{alias}\", \"irc.net/#x\"]\n\
                 nick_format = \"{{nick}}\"\n"
            ),
        )
    }

    /// A whole config: `[general]`, the slot's tables, then `rest` (accounts and routes).
    pub fn config(&self, rooms: &[&str], rest: &str) -> String {
        format!(
            "[general]\ndata_dir = \"data\"\n\n{}{rest}",
            self.tables(rooms)
        )
    }

    /// Start the slot's gateway on `config`; once `user` sees its bot join `room`.
    pub async fn start(&self, config: &str, user: &User, room: &RoomId) -> Gateway {
        let gateway = Gateway::start(&self.dir, config);
        bot_joined(user, room, &self.bot).await;
        gateway
    }

    /// The AS tokens the gateway keeps in its data directory.
    pub fn tokens(&self) -> serde_json::Value {
        let path = self.dir.join("data/accounts/matrix.home/appservice.json");
        let bytes = std::fs::read(&path).expect("the tokens file");
        serde_json::from_slice(&bytes).expect("tokens json")
    }

    /// The AS API's base URL on the gateway's listener.
    pub fn api(&self) -> String {
        format!(
            "http://127.0.0.1:{}/_patchbay/matrix/home/_matrix/app/v1",
            self.port
        )
    }
}

/// The shared server, with every slot's registration (written by the binary) loaded.
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = Synapse::new_dir();
        let homeserver_port = crate::support::free_port();
        let mut slots = Vec::new();
        let mut files = Vec::new();
        for index in 0..SLOTS {
            let slot = Slot {
                index,
                dir: dir.join(format!("gateway-{index}")),
                port: crate::support::free_port(),
                bot: format!("@pbgw{index}:localhost"),
                prefix: format!("_gw{index}_"),
                homeserver_port,
            };
            std::fs::create_dir_all(&slot.dir).expect("the gateway dir");
            let config = slot.dir.join("patchbay.toml");
            let table = slot.config(
                &[],
                "[console.term]\ninput = \"none\"\noutput = \"stdout\"\n\n\
                 [[route]]\nname = \"r\"\ninout = [\"console.term/lobby\", \"matrix.home/#x:localhost\"]\n",
            );
            std::fs::write(&config, table).expect("write the config");
            let file = dir.join(format!("registration-{index}.yaml"));
            let output = Command::new(crate::support::binary())
                .args(["matrix-registration", "--config"])
                .arg(&config)
                .args(["--account", "matrix.home", "--out"])
                .arg(&file)
                .output()
                .expect("run patchbay matrix-registration");
            assert!(
                output.status.success(),
                "matrix-registration failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            files.push(file);
            slots.push(slot);
        }
        let synapse = Synapse::start_in(dir, homeserver_port, &files);
        Fixture { synapse, slots }
    })
}

/// Bytes of the first TCP connection to `port` that arrived and were not read yet: how a test
/// sees that Synapse has a request outstanding at a stopped gateway.
pub fn unread_bytes_at(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let local = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local_address, rem_address, st (01 = established), tx_queue:rx_queue
            let (laddr, state, queues) = (fields.get(1)?, fields.get(3)?, fields.get(4)?);
            if !laddr.ends_with(&local) || *state != "01" {
                return None;
            }
            let rx = queues.split(':').nth(1)?;
            usize::from_str_radix(rx, 16).ok()
        })
        .max()
        .unwrap_or(0)
}

/// A test's share of the fixture: slot `index`, a new user, alice, and her public room `name`
/// (its id and alias).
pub async fn slot_with_room(
    index: usize,
    name: &str,
) -> (&'static Slot, User, OwnedRoomId, String) {
    let fixture = fixture();
    let alice = User::register(&fixture.synapse, &unique("alice")).await;
    let (room, alias) = public_room(&alice, name).await;
    (&fixture.slots[index], alice, room, alias)
}

/// A message whose body is `body`, sent by a ghost of the slot; returns the event.
pub fn ghost_says<'a>(slot: &'a Slot, body: &'a str) -> impl Fn(&Value) -> bool + 'a {
    move |e: &Value| {
        e["type"] == "m.room.message"
            && e["content"]["body"] == body
            && e["sender"]
                .as_str()
                .is_some_and(|s| s.starts_with(&format!("@{}", slot.prefix)))
    }
}

/// The room's member events of `user`, as the server holds them (not as a sync saw them).
pub async fn member_events(user: &User, room: &RoomId, of: &str) -> usize {
    let token = user.client.access_token().expect("a logged-in user");
    let url = format!(
        "{}/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=1000",
        fixture().synapse.url()
    );
    let body: Value = matrix_sdk::reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .expect("messages")
        .json()
        .await
        .expect("messages json");
    body["chunk"]
        .as_array()
        .map(|events| events.iter().filter(|e| is_member(e, of)).count())
        .unwrap_or(0)
}

/// A one-file HTTP server for images; returns the URL of `name`.
pub async fn serve_png(name: &'static str) -> (String, Vec<u8>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let mut png = vec![0x89u8, b'P', b'N', b'G', 13, 10, 26, 10];
    png.extend((0..2000u32).map(|i| (i % 251) as u8));
    let bytes = png.clone();
    let app = axum::Router::new().route(
        &format!("/{name}"),
        axum::routing::get(move || {
            let bytes = bytes.clone();
            async move { ([(axum::http::header::CONTENT_TYPE, "image/png")], bytes) }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://127.0.0.1:{port}/{name}"), png)
}
