//! What an IRC connection went through that an operator graphs: each one a
//! [`HealthEvent`](patchbay_sdk::HealthEvent) whose `emit` writes the line the session always
//! logged and counts it in `/metrics` under the sdk's [`Signal`] (see [`patchbay_sdk::health`]).

use std::fmt::Display;

use patchbay_sdk::{Signal, health_events};
use tracing::warn;

use crate::transport::MAX_READ_LINE;

health_events! {
    /// A line from the server longer than [`MAX_READ_LINE`], dropped unread.
    pub struct LongLineSkipped {} => Signal::LineSkipped, |account| warn!(account = %account, "skipped a line longer than {} bytes; an IRC server sends none: if this repeats, check that `server`, `port` and `tls` name an IRC server as it listens", MAX_READ_LINE);

    /// A line from the server that does not parse, dropped.
    pub struct MalformedLineSkipped<'a> { pub error: &'a dyn Display }
        => Signal::LineSkipped, |account| warn!(account = %account, "skipped a malformed line from the server: {error}; nothing else is affected (if it repeats, the server's software and the line are worth a bug report)");

    /// The history marks could not be written to the data dir.
    pub struct MarksNotSaved<'a> { pub error: &'a dyn Display }
        => Signal::SaveFailed, |account| warn!(account = %account, "cannot save history marks: {error}; check that the account's data dir is writable and its disk has room (until then a catch-up after a restart starts from an older mark, and lines it relayed already are skipped by their ids)");

    /// A CHATHISTORY request went unanswered past its deadline; the catch-up stops there.
    pub struct HistoryTimedOut {} => Signal::HistoryGap, |account| warn!(account = %account, "the server did not answer a history request in time; this catch-up stops here, so lines said while the bridge was away may be missing: if it repeats, check the server's load and its CHATHISTORY limits");

    /// The server answered a CHATHISTORY request with `FAIL`; the catch-up stops there.
    pub struct HistoryRefused<'a> {
        /// The `FAIL` line's parameters.
        pub params: &'a [String],
    } => Signal::HistoryGap, |account| warn!(account = %account, "the server refused a history request: {}; this catch-up stops here, so lines said while the bridge was away may be missing: check that the server lets the bridge's account read CHATHISTORY", params.join(" "));

    /// The server would not let the account into a channel (full, invite-only, banned, bad key).
    pub struct JoinRefused<'a> { pub channel: &'a str, pub reason: &'a str }
        => Signal::JoinRefused, |account| warn!(account = %account, "cannot join {channel}: {reason}; trying again later: check the channel's modes (a key goes in `channels` as {{ name, key }}, invite-only needs an invite, a ban needs lifting)");

    /// The server refused a message the account sent (no such target, cannot send to channel).
    pub struct MessageRefused<'a> { pub target: &'a str, pub reason: &'a str }
        => Signal::MessageRefused, |account| warn!(account = %account, "the server refused a message to {target}: {reason}; a delivery refused while joined (moderated, colours forbidden) becomes a dead letter, one refused while not joined is retried after the rejoin: check the channel's modes");

    /// Someone kicked the account out of a configured channel.
    pub struct Kicked<'a> {
        pub channel: &'a str,
        /// Who kicked.
        pub by: &'a str,
        pub reason: Option<&'a str>,
    } => Signal::Kicked, |account| warn!(account = %account, "kicked from {channel} by {}: {}; rejoining after `rejoin_delay`: if it repeats, ask the channel's operators to let the bridge stay, or take the channel out of `channels`", by, reason.unwrap_or(""));
}
