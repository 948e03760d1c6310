//! patchbay: a bridge gateway between chat protocols.
//!
//! Connectors (one crate each under `connectors/`) turn what they see into normalized events;
//! the gateway records each event with one delivery per destination room its routes name, in
//! one transaction, and drains those deliveries into the destination connectors with retries.
//!
//! - [`admin`]: the admin API (token-protected JSON) and the commands that use it.
//! - [`config`]: the config file, validated with errors that point at file, line and key.
//! - [`router`]: routes, directions, filters, nick formats, rate limits.
//! - [`intake`]: from an emitted event to a durable one.
//! - [`store`]: events, outbox, message-id map, dead letters (SQLite).
//! - [`delivery`]: one lane per destination room, in order, with backoff.
//! - [`ownership`]: which accounts this instance runs (all of them, or those it holds a
//!   lease on when instances share JetStream).
//! - [`gateway`]: wiring it all and stopping in order, and what a reload does.
//! - [`reloader`]: how SIGHUP and the admin API ask for a reload.
//! - [`status`]: the `patchbay status` report, for either engine.
//! - [`account_states`]: the accounts running now and their states, for every reader.
//! - [`http`]: the shared listener: connectors' routes, `/healthz`, `/metrics`.
//! - [`import`]: a matterbridge config turned into a patchbay one.

pub mod account_states;
pub mod admin;
pub mod config;
pub mod connectors;
pub mod delivery;
pub mod gateway;
pub mod http;
pub mod import;
pub mod intake;
pub mod metrics;
pub mod ownership;
pub mod reloader;
pub mod router;
pub mod status;
pub mod store;
