//! What a Matrix session went through that an operator graphs: each one a
//! [`HealthEvent`](patchbay_sdk::HealthEvent) whose `emit` writes the line the session always
//! logged and counts it in `/metrics` under the sdk's [`Signal`] (see [`patchbay_sdk::health`]).

use std::fmt::Display;

use patchbay_sdk::{Signal, health_events};
use tracing::warn;

health_events! {
    /// A configured room could not be joined this round; it is tried again the next.
    pub struct JoinFailed<'a> { pub room: &'a str, pub error: &'a dyn Display }
        => Signal::JoinRefused, |_| warn!(room = %room, error = %error, "cannot join the room yet; trying again: check that the room exists and lets the bot in (an invite, or a public room)");

    /// The bot was removed from a configured room (kicked); it joins again.
    pub struct RemovedFromRoom<'a> { pub room: &'a str }
        => Signal::Kicked, |_| warn!(room = %room, "removed from a configured room; joining again (take the room out of `rooms` to leave it for good)");

    /// The sync position could not be written to the data dir.
    pub struct SyncPositionNotSaved<'a> { pub error: &'a dyn Display }
        => Signal::SaveFailed, |_| warn!(error = %error, "cannot save the sync position; check the account's data dir (writable, disk space): after a restart the sync starts from the last saved one, and events seen twice are skipped by their ids");

    /// A limited timeline's gap could not be filled from `/messages`: its messages are lost.
    pub struct GapNotFilled<'a> { pub room: &'a dyn Display, pub error: &'a dyn Display }
        => Signal::HistoryGap, |_| warn!(room = %room, error = %error, "cannot fill a sync gap; the messages in it are not relayed: if this repeats, check the homeserver's health and its rate limits for the bot");

    /// An encrypted event the bot has no key for: not relayed.
    pub struct Undecryptable<'a> { pub room: &'a str, pub event: &'a dyn Display }
        => Signal::Undecryptable, |_| warn!(room = %room, event = %event, "could not decrypt an event; it is not relayed: the sender's client has not shared the room key with the bot's device (verify the bot's device, or ask the sender to re-share keys)");
}
