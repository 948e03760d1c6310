//! The vocabulary of connector health events: one label value each of
//! `patchbay_connector_events_total`. Its own module because both the emitting side
//! ([`crate::health`]) and the counting side ([`crate::Emit::count`]) name it.

use std::fmt;

/// What a [`HealthEvent`](crate::HealthEvent) counts as: one label value of `patchbay_connector_events_total`.
///
/// The names distinguish who held back: [`RateLimited`](Signal::RateLimited) is the network
/// refusing or slowing us, [`Paced`](Signal::Paced) is the connector's own flood control
/// holding a line or a login before the network would.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Signal {
    /// A connection ended and is tried again after a wait.
    Reconnect,
    /// The network refused or slowed a line for going too fast.
    RateLimited,
    /// The connector's own pacing held a line or a login.
    Paced,
    /// Several waiting deliveries went out as one network message.
    LinesMerged,
    /// A line from the network was dropped unread (malformed, too long).
    LineSkipped,
    /// The network refused a message the connector sent.
    MessageRefused,
    /// The network refused to let the account into a room (for now).
    JoinRefused,
    /// The account was put out of a room it is configured for (kicked, removed).
    Kicked,
    /// Messages from while the account was away could not all be fetched.
    HistoryGap,
    /// An event arrived that the account could not decrypt.
    Undecryptable,
    /// The connector could not save its own state (marks, sync position) to its data dir.
    SaveFailed,
    /// A connector that serves HTTP refused a request (bad token or signature, over the rate
    /// limit, a body it cannot read).
    RequestRefused,
}

impl Signal {
    /// Every signal, in the order `/metrics` and the README list them.
    pub const ALL: [Signal; 12] = [
        Signal::Reconnect,
        Signal::RateLimited,
        Signal::Paced,
        Signal::LinesMerged,
        Signal::LineSkipped,
        Signal::MessageRefused,
        Signal::JoinRefused,
        Signal::Kicked,
        Signal::HistoryGap,
        Signal::Undecryptable,
        Signal::SaveFailed,
        Signal::RequestRefused,
    ];

    /// The `event` label value: snake case, stable (dashboards and alerts name it).
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Reconnect => "reconnect",
            Signal::RateLimited => "rate_limited",
            Signal::Paced => "paced",
            Signal::LinesMerged => "lines_merged",
            Signal::LineSkipped => "line_skipped",
            Signal::MessageRefused => "message_refused",
            Signal::JoinRefused => "join_refused",
            Signal::Kicked => "kicked",
            Signal::HistoryGap => "history_gap",
            Signal::Undecryptable => "undecryptable",
            Signal::SaveFailed => "save_failed",
            Signal::RequestRefused => "request_refused",
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
