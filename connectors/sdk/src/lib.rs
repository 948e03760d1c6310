//! The contract between patchbay's gateway and its connectors.
//!
//! A connector speaks one chat protocol. It turns what it sees into [`Inbound`] events, hands them
//! to the gateway through its [`EventSink`], and renders the [`Delivery`]s the gateway gives it back
//! into its protocol. It knows nothing of routes, of other connectors or of the store: the gateway
//! knows nothing of any protocol. This crate is the only thing both sides share.
//!
//! - [`event`]: the normalized event — envelope and kinds.
//! - [`text`]: the rich-text model and its plain-text and Markdown converters.
//! - [`connector`]: the [`Connector`] trait, the sink a connector emits into, deliveries and
//!   their typed errors, connector state.
//! - [`room`]: addressing — [`RoomKey`], a room of an account; the protocol and name parts
//!   of an account name.
//! - [`factory`]: how a connector is built from its `[PROTOCOL.NAME]` config table, and how
//!   a renamed key keeps reading under its old name.
//! - [`duration`] (pure): [`ConfigDuration`], the one way every config file writes a span of
//!   time (`"90s"`, `"1m 30s"`, `"7d"`: always with its unit).
//! - `http` (feature `http`): `Refusal`, why an HTTP request was not accepted, answering
//!   for itself — shared by every connector that serves HTTP.
//! - `testkit` (feature `testkit`, tests only): a recording sink, building from a config
//!   snippet, waiting with timeouts, and the contract checks every connector runs.
//! - [`health`]: health events — reconnects, rate limits, refusals — each a type whose
//!   `emit` logs it and counts it for the account, in one [`Signal`] vocabulary.
//! - [`backoff`] (pure): exponential backoff with jitter, shared by the gateway and connectors.
//! - [`sync`]: taking a lock, poisoned or not, for the gateway and every connector.
//! - [`supervise`]: staying connected — a connector writes one [`Connection`], the
//!   [`Supervisor`] reconnects it with backoff, reports its state and logs each end.

pub mod backoff;
pub mod connector;
pub mod duration;
pub mod event;
pub mod factory;
pub mod health;
#[cfg(feature = "http")]
pub mod http;
pub mod room;
mod signal;
pub mod supervise;
pub mod sync;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod text;

pub use backoff::Backoff;
pub use connector::{
    Connector, ConnectorContext, ConnectorError, ConnectorState, Delivered, Delivery,
    DeliveryError, Emit, EmitError, EventSink, Quote, Seen, StateHandle,
};
pub use duration::ConfigDuration;
pub use event::{
    Attachment, Author, Event, EventId, Hop, Inbound, Kind, MessageRef, Origin, Timestamp,
};
pub use factory::{
    AccountInfo, ConfigError, ConnectorFactory, Deprecated, Renamed, deprecated_keys,
    parse_renamed, parse_table, read_secret,
};
pub use health::{HealthEvent, Signal};
#[cfg(feature = "http")]
pub use http::Refusal;
pub use room::RoomKey;
pub use supervise::{Connection, Ended, Supervisor};
pub use text::RichText;
