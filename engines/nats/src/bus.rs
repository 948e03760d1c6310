//! The streams and buckets patchbay keeps in JetStream, and the calls the gateway makes on
//! them.
//!
//! Under a prefix `P` (`patchbay`), on file storage:
//! - streams `P_outbox_<k>` (the shards, see [`crate::layout`]), subjects
//!   `P.out<k>.<account>.<room>`, work-queue retention: one message per delivery still to
//!   make; acknowledging it removes it;
//! - stream `P_dead`, subjects `P.dead.<account>.<room>`: deliveries that failed for good;
//! - bucket `P_map`, entries aged out after the retention: the message-id map;
//! - bucket `P_leases`, entries aged out after the lease time: who runs which account, and
//!   which instances are alive;
//! - bucket `P_names`: who each account is on its network (see [`names`]).

pub mod dead;
mod names;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use bytes::Bytes;
use futures::StreamExt;

use crate::doorbell::Doorbell;
pub use crate::error::BusError;
use crate::keeper::Keeper;
use crate::layout::{Layout, OUTBOX_SHARDS};
use crate::options::BusOptions;
use crate::room::RoomConsumer;

/// One message to publish.
#[derive(Clone, Debug)]
pub struct Publish {
    pub subject: String,
    /// Sent as `Nats-Msg-Id`: a retried publish with the same id is stored once (within the
    /// stream's duplicate window).
    pub msg_id: Option<String>,
    pub payload: Bytes,
}

/// A connection to the JetStream of one site, with patchbay's streams and buckets in place.
#[derive(Clone)]
pub struct Bus {
    client: async_nats::Client,
    js: jetstream::Context,
    layout: Layout,
    map: kv::Store,
    leases: kv::Store,
    names: kv::Store,
    doorbell: Arc<Doorbell>,
    keeper: Arc<Keeper>,
    /// Turns for creating rooms' consumers (see [`RoomConsumer`]).
    attaching: Arc<tokio::sync::Semaphore>,
}

/// How many rooms' consumers an instance creates at once.
const ATTACHING_AT_ONCE: usize = 32;

/// The most consumers the outbox stream may have: rooms with deliveries waiting, at once
/// (idle rooms hold none). nats-server 2.15 defaults to 1,000 per stream.
const MAX_ROOM_CONSUMERS: i32 = 100_000;

impl Bus {
    /// Connect and make sure the streams and buckets exist (creating them the first time).
    /// Keeps reconnecting in the background after a server restart.
    pub async fn connect(options: &BusOptions) -> Result<Bus, BusError> {
        let connect = options
            .connect_options()
            .await
            .map_err(|err| BusError::new("reading the credentials", err))?;
        let client = connect
            .connect(options.servers.clone())
            .await
            .map_err(|err| BusError::new(format!("connecting to {:?}", options.servers), err))?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(Duration::from_secs(10));
        let layout = match &options.site {
            Some(site) => Layout::with_site(&options.prefix, site),
            None => Layout::new(&options.prefix),
        };
        refuse_an_unsharded_outbox(&js, &layout).await?;
        for shard in 0..OUTBOX_SHARDS {
            js.create_or_update_stream(stream::Config {
                name: layout.outbox_stream(shard),
                subjects: vec![layout.outbox_subjects(shard)],
                retention: stream::RetentionPolicy::WorkQueue,
                storage: stream::StorageType::File,
                sources: imports(&layout, options, shard),
                republish: bells_from_the_stream(&layout, options, shard),
                max_consumers: MAX_ROOM_CONSUMERS,
                // The keeper replaces itself (see [`crate::keeper`]).
                allow_rollup: true,
                // A quiet room reads its deliveries without a consumer (see [`crate::room`]).
                allow_direct: true,
                ..Default::default()
            })
            .await
            .map_err(|err| BusError::new("creating the outbox streams", err))?;
        }
        js.get_or_create_stream(stream::Config {
            name: layout.dead_stream(),
            subjects: vec![layout.dead_subjects()],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|err| BusError::new("creating the dead-letter stream", err))?;
        if options.site.is_some() {
            // Kept for the retention, like the map: a site cut off for longer than that
            // loses what waited for it (said in the README).
            js.get_or_create_stream(stream::Config {
                name: layout.export_stream(),
                subjects: vec![layout.export_subjects()],
                storage: stream::StorageType::File,
                max_age: options.retention,
                ..Default::default()
            })
            .await
            .map_err(|err| BusError::new("creating the export stream", err))?;
        }
        let map = bucket(&js, layout.name("map"), options.retention).await?;
        let leases = bucket(&js, layout.name("leases"), options.lease).await?;
        let names = bucket(&js, layout.name("names"), Duration::ZERO).await?;
        let poll = options.poll.unwrap_or(crate::doorbell::POLL);
        let doorbell = Doorbell::start(&client, &js, &layout, poll).await?;
        let keeper = Keeper::start(&js, &layout);
        Ok(Bus {
            doorbell,
            keeper,
            attaching: Arc::new(tokio::sync::Semaphore::new(ATTACHING_AT_ONCE)),
            client,
            js,
            layout,
            map,
            leases,
            names,
        })
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Publish every message and wait until JetStream has stored each. Returns their stream
    /// sequences, in order.
    pub async fn publish_all(&self, messages: Vec<Publish>) -> Result<Vec<u64>, BusError> {
        let mut acks = Vec::with_capacity(messages.len());
        for message in messages {
            if let Some(shard) = self.layout.shard_of_subject(&message.subject) {
                self.keeper.touch(shard);
            }
            let mut headers = async_nats::HeaderMap::new();
            if let Some(id) = &message.msg_id {
                headers.insert("Nats-Msg-Id", id.as_str());
            }
            let ack = self
                .js
                .publish_with_headers(message.subject, headers, message.payload)
                .await
                .map_err(|err| BusError::new("publishing", err))?;
            acks.push(ack);
        }
        let mut seqs = Vec::with_capacity(acks.len());
        for ack in acks {
            let ack = ack
                .await
                .map_err(|err| BusError::new("waiting for a publish acknowledgement", err))?;
            seqs.push(ack.sequence);
        }
        Ok(seqs)
    }

    /// Wake the lane of `room`, just given a delivery (at this site), without waiting for an
    /// answer: a bell lost on the way is made up for by the doorbell's poll.
    pub async fn ring(&self, account: &str, room: &str) {
        if let Some(subject) = self.layout.bell_subject(account, room)
            && let Err(err) = self.client.publish(subject, Bytes::new()).await
        {
            tracing::debug!("ringing a room's bell: {err}");
        }
    }

    /// Record a delivery that failed for good, with why.
    pub async fn dead_letter(
        &self,
        account: &str,
        room: &str,
        reason: &str,
        payload: Bytes,
    ) -> Result<(), BusError> {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            "Patchbay-Reason",
            reason.replace(['\r', '\n'], " ").as_str(),
        );
        self.js
            .publish_with_headers(self.layout.dead_subject(account, room), headers, payload)
            .await
            .map_err(|err| BusError::new("publishing a dead letter", err))?
            .await
            .map_err(|err| BusError::new("storing a dead letter", err))?;
        Ok(())
    }

    /// The outbox of one room, from the oldest delivery still waiting: what an earlier holder
    /// (an instance that died holding it) had in flight is handed out again at once, and its
    /// consumer is replaced when this holder creates one.
    pub fn room_consumer(&self, account: &str, room: &str, max: usize) -> RoomConsumer {
        RoomConsumer::open(
            &self.js,
            &self.layout,
            &self.doorbell,
            &self.attaching,
            account,
            room,
            max,
        )
    }

    /// Deliveries waiting, per outbox subject's (account, room).
    pub async fn outbox_depths(&self) -> Result<Vec<((String, String), u64)>, BusError> {
        let subjects =
            crate::doorbell::waiting_subjects(&self.js, &self.layout, crate::doorbell::ALL_SHARDS)
                .await?;
        Ok(subjects
            .into_iter()
            .filter_map(|(subject, count)| {
                Some((self.layout.parse_outbox_subject(&subject)?, count))
            })
            .collect())
    }

    /// Deliveries in the outbox (every shard, its keeper left out) and messages in the
    /// dead-letter stream.
    pub async fn counts(&self) -> Result<(u64, u64), BusError> {
        let mut outbox = 0;
        for shard in 0..OUTBOX_SHARDS {
            let name = self.layout.outbox_stream(shard);
            let messages = self.messages_in(&name).await?;
            outbox += messages.saturating_sub(self.keepers_in(&name, shard).await?);
        }
        let dead = self.messages_in(&self.layout.dead_stream()).await?;
        Ok((outbox, dead))
    }

    /// 1 when outbox shard `shard` (stream `name`) holds its keeper, else 0.
    async fn keepers_in(&self, name: &str, shard: usize) -> Result<u64, BusError> {
        let stream = self
            .js
            .get_stream_no_info(name)
            .await
            .map_err(|err| BusError::new(format!("reading {name}"), err))?;
        let mut subjects = stream
            .info_with_subjects(self.layout.keeper_subject(shard))
            .await
            .map_err(|err| BusError::new(format!("reading {name}'s subjects"), err))?;
        let mut keepers = 0;
        while let Some(entry) = subjects.next().await {
            let (_, count) =
                entry.map_err(|err| BusError::new(format!("reading {name}'s subjects"), err))?;
            keepers += count as u64;
        }
        Ok(keepers)
    }

    async fn messages_in(&self, name: &str) -> Result<u64, BusError> {
        let mut stream = self
            .js
            .get_stream(name)
            .await
            .map_err(|err| BusError::new(format!("reading {name}"), err))?;
        let info = stream
            .info()
            .await
            .map_err(|err| BusError::new(format!("reading {name}"), err))?;
        Ok(info.state.messages)
    }

    pub async fn map_get(&self, key: &str) -> Result<Option<Bytes>, BusError> {
        self.map
            .get(key)
            .await
            .map_err(|err| BusError::new("reading the message-id map", err))
    }

    pub async fn map_put(&self, key: &str, value: Bytes) -> Result<(), BusError> {
        self.map
            .put(key, value)
            .await
            .map(|_| ())
            .map_err(|err| BusError::new("writing the message-id map", err))
    }

    /// Take `key` if nobody holds it: its revision, or `None` when it is held.
    pub async fn lease_take(&self, key: &str, value: Bytes) -> Result<Option<u64>, BusError> {
        match self.leases.create(key, value).await {
            Ok(revision) => Ok(Some(revision)),
            Err(err) if err.kind() == kv::CreateErrorKind::AlreadyExists => Ok(None),
            Err(err) => Err(BusError::new("taking a lease", err)),
        }
    }

    /// Renew `key` held at `revision`: the new revision, or `None` when it was lost (expired
    /// and taken, or deleted).
    pub async fn lease_renew(
        &self,
        key: &str,
        value: Bytes,
        revision: u64,
    ) -> Result<Option<u64>, BusError> {
        match self.leases.update(key, value, revision).await {
            Ok(revision) => Ok(Some(revision)),
            Err(err) if err.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(None),
            Err(err) => Err(BusError::new("renewing a lease", err)),
        }
    }

    /// Write `key` whatever it held (an instance's heartbeat).
    pub async fn lease_put(&self, key: &str, value: Bytes) -> Result<(), BusError> {
        self.leases
            .put(key, value)
            .await
            .map(|_| ())
            .map_err(|err| BusError::new("writing a heartbeat", err))
    }

    pub async fn lease_release(&self, key: &str) -> Result<(), BusError> {
        self.leases
            .delete(key)
            .await
            .map_err(|err| BusError::new("releasing a lease", err))
    }

    /// Every live entry of the leases bucket whose key starts with `prefix`.
    pub async fn lease_entries(&self, prefix: &str) -> Result<Vec<(String, Bytes)>, BusError> {
        let mut keys = self
            .leases
            .keys()
            .await
            .map_err(|err| BusError::new("listing leases", err))?;
        let mut names = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(|err| BusError::new("listing leases", err))?;
            if key.starts_with(prefix) {
                names.push(key);
            }
        }
        let mut entries = Vec::with_capacity(names.len());
        for key in names {
            if let Some(value) = self
                .leases
                .get(&key)
                .await
                .map_err(|err| BusError::new("reading a lease", err))?
            {
                entries.push((key, value));
            }
        }
        Ok(entries)
    }

    /// Flush what is buffered; used at stop.
    pub async fn flush(&self) {
        let _ = self.client.flush().await;
    }
}

/// The outbox of a patchbay from before the shards, if it is still there: removed when empty;
/// when it holds deliveries, the bus does not start (they would wait there unseen).
async fn refuse_an_unsharded_outbox(
    js: &jetstream::Context,
    layout: &Layout,
) -> Result<(), BusError> {
    let name = layout.unsharded_outbox_stream();
    let Ok(mut old) = js.get_stream(&name).await else {
        return Ok(());
    };
    let info = old
        .info()
        .await
        .map_err(|err| BusError::new(format!("reading {name}"), err))?;
    if info.state.messages > 0 {
        return Err(BusError::new(
            "opening the outbox",
            format!(
                "stream {name} of an earlier patchbay still holds {} deliveries: run that \
                 version until `patchbay status` shows them delivered, then start this one",
                info.state.messages
            ),
        ));
    }
    js.delete_stream(&name)
        .await
        .map_err(|err| BusError::new(format!("removing the empty stream {name}"), err))?;
    tracing::info!("removed {name}, the empty outbox of an earlier patchbay");
    Ok(())
}

/// What outbox shard `shard` of this site takes in from the other sites' exports (none
/// without sites).
fn imports(layout: &Layout, options: &BusOptions, shard: usize) -> Option<Vec<stream::Source>> {
    let site = options.site.as_ref()?;
    let sources = site
        .peers
        .iter()
        .filter_map(|peer| {
            let (filter, into) = layout.import_from(&peer.name, shard)?;
            Some(stream::Source {
                name: layout.name_of(Some(&peer.name), "export"),
                filter_subject: None,
                subject_transforms: vec![stream::SubjectTransform {
                    source: filter,
                    destination: into,
                }],
                // Another domain's stream is reached through its API prefix (leaf nodes).
                external: peer.domain.as_ref().map(|domain| stream::External {
                    api_prefix: format!("$JS.{domain}.API"),
                    delivery_prefix: None,
                }),
                ..Default::default()
            })
        })
        .collect();
    Some(sources)
}

/// With other sites, the outbox stream rings a room's bell itself once it stored a delivery
/// (republished, headers only): a delivery sourced from another site is stored by the server,
/// not by an instance of this site, so no instance here could ring for it, and the other site's
/// instance would ring before the delivery arrived. `None` on one site, whose accepting
/// instance rings (one bell per room per run, not one per delivery).
fn bells_from_the_stream(
    layout: &Layout,
    options: &BusOptions,
    shard: usize,
) -> Option<stream::Republish> {
    let site = options.site.as_ref()?;
    if site.peers.is_empty() {
        return None;
    }
    Some(stream::Republish {
        source: layout.outbox_subjects(shard),
        destination: layout.bell_subjects(),
        headers_only: true,
    })
}

async fn bucket(
    js: &jetstream::Context,
    name: String,
    max_age: Duration,
) -> Result<kv::Store, BusError> {
    match js.get_key_value(&name).await {
        Ok(store) => Ok(store),
        Err(_) => js
            .create_key_value(kv::Config {
                bucket: name.clone(),
                history: 1,
                max_age,
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|err| BusError::new(format!("creating the bucket {name}"), err)),
    }
}
