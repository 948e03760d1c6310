//! Health events: what a connector went through that an operator graphs — reconnects, rate
//! limits, lines merged or skipped, refusals — each one a type whose one
//! [`emit`](HealthEvent::emit) writes its log line and counts it for the account, so the log
//! and `/metrics` can never tell two stories.
//!
//! Two halves, on purpose:
//!
//! - **The vocabulary is here.** [`Signal`] is the closed set of what is counted, with the one
//!   name each has in `/metrics` (`patchbay_connector_events_total{event="reconnect"}`), so
//!   IRC's reconnect and SSH chat's are one series, and a dashboard written for one connector
//!   reads every other.
//! - **The words stay with the connector.** Each event type lives beside the code that
//!   emits it (the supervisor's [`Reconnecting`](crate::supervise::Reconnecting) in
//!   `supervise.rs`, IRC's refused join in the IRC crate's session) and writes its log line
//!   there, in the words, level and fields the call site always used. A line written by one
//!   shared type here would read `patchbay_sdk::…` as its target, and `RUST_LOG` filters
//!   naming the connector's crate would lose it; written by the connector, it keeps its
//!   crate's target, and whatever reads the log by its text keeps working.
//!
//! ## Why the count travels through the [`EventSink`]
//!
//! The count must reach the gateway per account. The sink already does: the gateway builds one
//! per account, bound to the account's name and to the gateway's [`Emit`], and every connector
//! holds it wherever it emits from. So counting is one more [`Emit`] method,
//! [`Emit::count`], with a default that drops the count: the gateway's intake implements it
//! (into its metrics), and no [`ConnectorContext`](crate::ConnectorContext) literal, test
//! collector or `StateHandle::new` caller changes. The [`StateHandle`](crate::StateHandle)
//! would reach the gateway too, but only as a watch channel the gateway reads through
//! `AccountStates`; counts hung on it would need a second registry beside that one, and the
//! handle says whether the account is connected now, which a count of what happened is not.
//! Through the sink, the account name is bound once, by the gateway: a connector cannot count
//! for another account.

use crate::connector::EventSink;
pub use crate::signal::Signal;

/// One notable thing that happened to a connector's account (see the module doc).
pub trait HealthEvent {
    /// What it counts as.
    const SIGNAL: Signal;

    /// Write the event's log line, for `account`. Only [`emit`](HealthEvent::emit) calls it,
    /// so that no line is written without its count.
    fn log(&self, account: &str);

    /// Log the event and count it for the sink's account.
    fn emit(&self, sink: &EventSink) {
        self.log(sink.account());
        sink.count(Self::SIGNAL);
    }
}

/// Declare health events as a table: each entry is the event's struct, then the [`Signal`]
/// it counts as and its log line, written as the tracing call it always was:
///
/// ```
/// use patchbay_sdk::{Signal, health_events};
///
/// health_events! {
///     /// The server refused a line as too long.
///     pub struct LineTooLong<'a> { pub room: &'a str }
///         => Signal::MessageRefused, |_account| tracing::warn!(%room, "refused as too long");
/// }
/// ```
///
/// The log line sees every field by name (bound by reference) and the account as the name
/// given between the bars. Why a macro: every event is the same dozen lines of struct and
/// `impl` around one line that differs, and written out by hand the line that matters is
/// hard to find. The tracing call expands in the connector's own module, so its log line
/// keeps the connector's target (see the module doc). A struct written without fields
/// (`{}`) is declared as a unit struct.
#[macro_export]
macro_rules! health_events {
    ($(
        $(#[$meta:meta])*
        $vis:vis struct $name:ident $(<$lt:lifetime>)? {
            $($(#[$fmeta:meta])* $fvis:vis $field:ident: $ty:ty),* $(,)?
        } => $signal:expr, |$account:pat_param| $log:expr;
    )*) => {$(
        $crate::health_events!(@struct [$(#[$meta])* $vis $name $(<$lt>)?]
            { $($(#[$fmeta])* $fvis $field: $ty),* });

        impl $(<$lt>)? $crate::HealthEvent for $name $(<$lt>)? {
            const SIGNAL: $crate::Signal = $signal;

            fn log(&self, $account: &str) {
                let Self { $($field),* } = self;
                $log;
            }
        }
    )*};
    (@struct [$(#[$meta:meta])* $vis:vis $name:ident] {}) => {
        $(#[$meta])* $vis struct $name;
    };
    (@struct [$(#[$meta:meta])* $vis:vis $name:ident $(<$lt:lifetime>)?] { $($fields:tt)* }) => {
        $(#[$meta])* $vis struct $name $(<$lt>)? { $($fields)* }
    };
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use async_trait::async_trait;

    use super::*;
    use crate::connector::{Emit, EmitError};
    use crate::event::{EventId, Inbound};
    use crate::sync::lock;

    /// Counts per (account, signal), as the gateway keeps them.
    #[derive(Default)]
    struct Counts(Mutex<BTreeMap<(String, Signal), u64>>);

    #[async_trait]
    impl Emit for Counts {
        async fn emit(&self, _: &str, _: Inbound) -> Result<Option<EventId>, EmitError> {
            Ok(None)
        }

        fn count(&self, account: &str, signal: Signal) {
            let mut counts = lock(&self.0);
            *counts.entry((account.to_owned(), signal)).or_default() += 1;
        }
    }

    crate::health_events! {
        struct Skipped<'a> { logged: &'a Mutex<Vec<String>> } => Signal::LineSkipped, |account| {
            let mut logged = lock(logged);
            logged.push(format!("{account}: skipped a line"));
        };
    }

    #[test]
    fn an_emitted_event_is_logged_and_counted_for_its_own_account() {
        let counts = Arc::new(Counts::default());
        let irc = EventSink::new("irc.net", Arc::clone(&counts) as Arc<dyn Emit>);
        let ssh = EventSink::new("sshchat.dz", Arc::clone(&counts) as Arc<dyn Emit>);
        let logged = Mutex::new(Vec::new());
        let event = Skipped { logged: &logged };
        event.emit(&irc);
        event.emit(&irc);
        event.emit(&ssh);
        let counts = lock(&counts.0).clone();
        assert_eq!(
            counts,
            BTreeMap::from([
                (("irc.net".to_owned(), Signal::LineSkipped), 2),
                (("sshchat.dz".to_owned(), Signal::LineSkipped), 1),
            ])
        );
        assert_eq!(
            *lock(&logged),
            [
                "irc.net: skipped a line",
                "irc.net: skipped a line",
                "sshchat.dz: skipped a line"
            ]
        );
    }

    #[test]
    fn a_sink_whose_gateway_does_not_count_still_logs() {
        struct Deaf;
        #[async_trait]
        impl Emit for Deaf {
            async fn emit(&self, _: &str, _: Inbound) -> Result<Option<EventId>, EmitError> {
                Ok(None)
            }
        }
        let sink = EventSink::new("irc.net", Arc::new(Deaf));
        let logged = Mutex::new(Vec::new());
        Skipped { logged: &logged }.emit(&sink);
        assert_eq!(lock(&logged).len(), 1);
    }

    #[test]
    fn every_signal_has_its_own_label() {
        let mut names: Vec<&str> = Signal::ALL.iter().map(|s| s.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Signal::ALL.len());
        assert!(
            names
                .iter()
                .all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        );
    }
}
