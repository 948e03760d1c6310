//! NATS JetStream access for patchbay's scale-out engine.
//!
//! The gateway's JetStream store and its account leases are written against this crate's few
//! non-generic calls, so async-nats compiles here once and never in the gateway crate. It knows
//! nothing of events or routes: it moves bytes between subjects, streams and buckets named
//! under one prefix.
//!
//! - [`options`]: connecting (servers, credentials, TLS) and naming (the prefix).
//! - [`layout`]: the names of subjects, streams and buckets, for one site or several.
//! - [`bus`]: the streams and buckets, publishing with acknowledgements, the key-value calls.
//! - [`room`]: one destination room's outbox as a durable pull consumer, held while it has
//!   deliveries waiting; `doorbell` wakes an idle room when one is stored.
//! - [`token`]: room and account names as subject tokens and bucket keys.
//! - `test_servers` (feature `test-servers`): real nats-servers for this crate's tests and the
//!   gateway's.
//! - `error`: [`BusError`], which every part returns (its own module, so that the parts
//!   `bus` drives need not import `bus`).

pub mod bus;
mod doorbell;
mod error;
mod keeper;
pub mod layout;
pub mod options;
pub mod room;
#[cfg(feature = "test-servers")]
pub mod test_servers;
pub mod token;

pub use bus::{Bus, BusError, Publish};
pub use layout::Layout;
pub use options::{BusOptions, PeerSite, SiteOptions};
pub use room::RoomConsumer;
