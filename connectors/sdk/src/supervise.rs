//! Staying connected: run one connection after another, with backoff, until shutdown.
//!
//! A connector writes only "one connection" — a [`Connection`]: connect, report
//! [`Up`](crate::ConnectorState::Up) on its [`StateHandle`] once it is usable, run until it
//! ends, and say how it ended as an [`Ended`]. The [`Supervisor`] does the rest, the same way
//! for every connector:
//!
//! - reports [`Connecting`](crate::ConnectorState::Connecting) before each attempt and
//!   [`Down`](crate::ConnectorState::Down) with the reason after it;
//! - logs each ended connection once, with its reason and the next wait, and counts it as the
//!   account's [`Signal::Reconnect`] (the [`Reconnecting`] event): every connector that runs
//!   under a supervisor has its reconnects in `/metrics` without a line of its own;
//! - waits with the shared [`Backoff`], starting from its first wait again after a connection
//!   that was up and lasted at least [`Supervisor::held`];
//! - stops promptly when the shutdown token is cancelled: before connecting and while waiting.
//!   A running connection is not interrupted; it watches the token itself, so it can say goodbye
//!   (IRC's `QUIT`) or wait for lines already written;
//! - returns a [`ConnectorError`] without retrying when the connection says retrying cannot
//!   help ([`Ended::Fatal`], bad credentials say).
//!
//! An account that keeps several connections (one SSH session per room) runs a supervisor per
//! connection with [`Supervisor::part`]: the account's state is then the connector's to
//! aggregate, and the supervisor only reports each part's failures, prefixed with its name.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::connector::{ConnectorContext, ConnectorError, ConnectorState, EventSink, StateHandle};
use crate::health::{HealthEvent, Signal};

/// How one connection ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The shutdown token was cancelled: stop without retrying.
    Shutdown,
    /// The connection never got up (refused, timed out, dropped while logging in): try again
    /// after the next wait.
    Failed(String),
    /// The connection was up, then was lost: try again, from the first wait if it held.
    Lost(String),
    /// Retrying cannot help (bad credentials, a host key that does not match): the account
    /// stays down until the gateway restarts.
    Fatal(String),
}

/// One connection of a connector: what it does between connecting and being disconnected.
pub trait Connection: Send {
    /// Connect, run until the connection ends, and say how it ended. Called again (after a
    /// wait) for every [`Ended::Failed`] or [`Ended::Lost`]. It should end with
    /// [`Ended::Shutdown`] soon after the shutdown token is cancelled.
    fn connect_once(&mut self) -> impl Future<Output = Ended> + Send;
}

/// Runs a [`Connection`] again and again until shutdown or a fatal end (see the module doc).
pub struct Supervisor {
    /// The account, for logs.
    account: String,
    /// The connection's name within the account, when the account has several.
    part: Option<String>,
    state: StateHandle,
    /// Where the account's reconnects are counted.
    sink: EventSink,
    shutdown: CancellationToken,
    backoff: Backoff,
    /// How long a connection that got up must have lasted (from the start of its attempt) for
    /// the backoff to start over; zero: any connection that got up.
    held: Duration,
}

impl Supervisor {
    /// A supervisor for `ctx`'s account, waiting between attempts with `backoff`.
    pub fn new(ctx: &ConnectorContext, backoff: Backoff) -> Self {
        Supervisor {
            account: ctx.account.clone(),
            part: None,
            state: ctx.state.clone(),
            sink: ctx.sink.clone(),
            shutdown: ctx.shutdown.clone(),
            backoff,
            held: Duration::ZERO,
        }
    }

    /// This connection is the part `name` of an account that has several: logs and `Down`
    /// reasons name it, and `Connecting` is never reported (the other parts may be up).
    pub fn part(mut self, name: impl Into<String>) -> Self {
        self.part = Some(name.into());
        self
    }

    /// Start the backoff over only after a connection that was up and lasted at least `held`
    /// (counted from the start of its attempt), so a connection that drops as soon as it is up
    /// still backs off.
    pub fn held(mut self, held: Duration) -> Self {
        self.held = held;
        self
    }

    /// Run `connection` until shutdown (`Ok`) or a fatal end (`Err`).
    pub async fn run<C: Connection>(mut self, connection: &mut C) -> Result<(), ConnectorError> {
        loop {
            if self.shutdown.is_cancelled() {
                return self.stopped();
            }
            if self.part.is_none() {
                self.state.set(ConnectorState::Connecting);
            }
            let started = Instant::now();
            let (reason, was_up) = match connection.connect_once().await {
                Ended::Shutdown => return self.stopped(),
                Ended::Fatal(reason) => {
                    tracing::error!(account = %self.account, part = ?self.part, %reason, "connection failed for good; not reconnecting");
                    self.state.down(self.labelled(&reason));
                    return Err(ConnectorError::new(reason));
                }
                Ended::Failed(reason) => (reason, false),
                Ended::Lost(reason) => (reason, true),
            };
            if was_up && started.elapsed() >= self.held {
                self.backoff.reset();
            }
            let wait = self.backoff.next_wait();
            Reconnecting {
                part: self.part.as_deref(),
                reason: &reason,
                wait,
            }
            .emit(&self.sink);
            self.state.down(self.labelled(&reason));
            tokio::select! {
                () = self.shutdown.cancelled() => return self.stopped(),
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    fn stopped(&self) -> Result<(), ConnectorError> {
        if self.part.is_none() {
            self.state.down("shut down");
        }
        Ok(())
    }

    /// `reason` as the account's `Down` reason: prefixed with the part's name, if any.
    fn labelled(&self, reason: &str) -> String {
        match &self.part {
            Some(part) => format!("{part}: {reason}"),
            None => reason.to_owned(),
        }
    }
}

crate::health_events! {
    /// A connection ended and is tried again after `wait`: the supervisor's log line, and the
    /// account's [`Signal::Reconnect`].
    pub struct Reconnecting<'a> {
        /// The connection's name within the account, when it has several.
        pub part: Option<&'a str>,
        /// How the connection ended.
        pub reason: &'a str,
        /// The backoff's next wait before the next attempt.
        pub wait: Duration,
    } => Signal::Reconnect, |account| tracing::warn!(account = %account, part = ?part, %reason, ?wait, "disconnected; reconnecting after the wait");
}

#[cfg(test)]
#[path = "supervise_tests.rs"]
mod tests;
