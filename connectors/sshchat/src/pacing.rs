//! Staying under the servers' limits: send pacing and join pacing (reconnect backoff is the
//! sdk's [`patchbay_sdk::Backoff`]).
//!
//! - ssh-chat rejects a fourth line within 3 s; Devzat warns at 30 lines in ~15 s and bans at
//!   50. [`Window`] is a sliding window of send times with margin below both.
//! - Devzat bans a key that joins more than 6 times a minute, and a bridge of several rooms
//!   opens one session per room: all sessions of an account share one [`JoinGate`].
//! - Devzat checks a name is free and then takes it in two steps, so two sessions logging in
//!   at once under one name may both get it (and neither can then tell its own lines from the
//!   other's). The gate also lets one session log in at a time per server: the next one starts
//!   once the one before is in its room or gave up.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use patchbay_sdk::{EventSink, HealthEvent, Signal};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::dialect::Dialect;
use patchbay_sdk::sync::lock;

/// At most `max` events in any `per`-long span.
#[derive(Debug)]
pub struct Window {
    max: usize,
    per: Duration,
    times: VecDeque<Instant>,
}

impl Window {
    pub fn new(max: usize, per: Duration) -> Self {
        Window {
            max: max.max(1),
            per,
            times: VecDeque::new(),
        }
    }

    /// Sending pace for chat lines on each server, with margin under its limit.
    pub fn for_lines(dialect: Dialect) -> Self {
        match dialect {
            // 3 lines per 3 s, counted in fixed windows by the server: 3 per 3.5 s here.
            Dialect::SshChat => Window::new(3, Duration::from_millis(3500)),
            // Warning at 30 lines in about 15 s: stay at 20 per 15 s.
            Dialect::Devzat => Window::new(20, Duration::from_secs(15)),
        }
    }

    /// How long to wait before one more event fits (zero when it fits now).
    pub fn wait(&mut self, now: Instant) -> Duration {
        while let Some(first) = self.times.front() {
            if now.duration_since(*first) >= self.per {
                self.times.pop_front();
            } else {
                break;
            }
        }
        if self.times.len() < self.max {
            Duration::ZERO
        } else {
            self.times
                .front()
                .map(|first| self.per.saturating_sub(now.duration_since(*first)))
                .unwrap_or(Duration::ZERO)
        }
    }

    /// Record an event at `now`.
    pub fn record(&mut self, now: Instant) {
        self.times.push_back(now);
        while self.times.len() > self.max {
            self.times.pop_front();
        }
    }

    /// How many events fit now without waiting.
    pub fn free(&mut self, now: Instant) -> usize {
        let _ = self.wait(now);
        self.max.saturating_sub(self.times.len())
    }
}

/// Joins to one server shared by every session in this process: at most 5 per minute. Devzat
/// bans a key *or an address* above 6, so two accounts on the same server share the gate too.
#[derive(Clone, Debug)]
pub struct JoinGate {
    joins: Arc<Mutex<Window>>,
    /// Held by the session logging in now (tokio's mutex is first come, first served).
    turn: Arc<Mutex<()>>,
}

/// A session's turn to log in: the next session's starts when this is dropped.
pub type LoginTurn = tokio::sync::OwnedMutexGuard<()>;

impl Default for JoinGate {
    fn default() -> Self {
        JoinGate {
            joins: Arc::new(Mutex::new(Window::new(5, Duration::from_secs(60)))),
            turn: Arc::new(Mutex::new(())),
        }
    }
}

impl JoinGate {
    /// The gate for `server` (`host:port`), shared by every account that connects there.
    pub fn for_server(server: &str) -> JoinGate {
        static GATES: std::sync::Mutex<Option<std::collections::HashMap<String, JoinGate>>> =
            std::sync::Mutex::new(None);
        let mut gates = lock(&GATES);
        gates
            .get_or_insert_with(Default::default)
            .entry(server.to_owned())
            .or_default()
            .clone()
    }

    /// Wait for this session's turn to log in and until one more join is allowed; count it.
    /// A wait for the join limit is `sink`'s account's [`LoginPaced`].
    pub async fn acquire(&self, sink: &EventSink) -> LoginTurn {
        let turn = self.turn.clone().lock_owned().await;
        loop {
            let wait = {
                let mut window = self.joins.lock().await;
                let now = Instant::now();
                let wait = window.wait(now);
                if wait.is_zero() {
                    window.record(now);
                    return turn;
                }
                wait
            };
            LoginPaced { wait }.emit(sink);
            tokio::time::sleep(wait).await;
        }
    }
}

patchbay_sdk::health_events! {
    /// A login held back by the [`JoinGate`] to stay under the server's join limit.
    pub struct LoginPaced { pub wait: Duration }
        => Signal::Paced, |_| tracing::info!(wait = ?wait, "pacing reconnects under the server's join limit");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink() -> EventSink {
        std::sync::Arc::new(patchbay_sdk::testkit::Recorder::default()).sink("sshchat.test")
    }

    #[tokio::test]
    async fn one_session_logs_in_at_a_time() {
        let gate = JoinGate::default();
        let sink = sink();
        let first = gate.acquire(&sink).await;
        let second = tokio::time::timeout(Duration::from_millis(50), gate.acquire(&sink)).await;
        assert!(second.is_err(), "the second login waits for the first");
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(5), gate.acquire(&sink)).await;
        assert!(second.is_ok(), "and starts once the first is in its room");
    }

    #[test]
    fn window_allows_max_then_waits_for_the_oldest_to_expire() {
        let mut w = Window::new(3, Duration::from_secs(3));
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(w.wait(t0 + Duration::from_millis(i * 10)), Duration::ZERO);
            w.record(t0 + Duration::from_millis(i * 10));
        }
        assert_eq!(w.free(t0 + Duration::from_millis(100)), 0);
        assert_eq!(w.wait(t0 + Duration::from_secs(1)), Duration::from_secs(2));
        assert_eq!(w.wait(t0 + Duration::from_secs(3)), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn join_gate_spaces_the_sixth_join_a_minute_after_the_first() {
        let gate = JoinGate::default();
        let sink = sink();
        let start = Instant::now();
        for _ in 0..5 {
            gate.acquire(&sink).await;
        }
        assert!(start.elapsed() < Duration::from_secs(1));
        gate.acquire(&sink).await;
        assert!(start.elapsed() >= Duration::from_secs(60));
    }
}
