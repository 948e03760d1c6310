//! Deliveries into a channel or to a nick: join if needed, render, hand the lines to the writer,
//! then learn from the server's echo the id the line got (or why it was refused).
//!
//! A delivery is two halves: [`send`] queues its lines, [`Sent::finish`] waits until they are
//! flushed and echoed. One delivery runs the halves back to back; a run of deliveries into
//! one room queues every run's lines first and then waits for the echoes in order, so a burst
//! costs one round trip to the server per run instead of one per line. That is only done with
//! flood control off ([`run_limit`]): under the token bucket lines leave at its pace anyway, and
//! a long run would wait in the bucket past the gateway's attempt timeout.

use std::time::Duration;

use patchbay_sdk::sync::lock;
use patchbay_sdk::{Delivered, Delivery, DeliveryError};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::config::{IrcConfig, is_channel};
use crate::link::{EchoError, EchoResult, Link, Paced, Shared};
use crate::parse::fold_case;
use crate::render;

/// How long a delivery to a channel we are not in waits before the gateway retries.
const JOIN_RETRY: Duration = Duration::from_secs(2);

/// How long a delivery waits for the join of its channel before answering retryable. A join
/// takes a round trip; this only runs out when the server does not answer the JOIN at all.
pub const JOIN_WAIT: Duration = Duration::from_secs(5);

/// The most deliveries of one room sent ahead of their echoes, with flood control off. Enough
/// to keep the server busy through a round trip; small enough that a refusal (which the
/// server may not tie to one line) touches few lines.
const PIPELINED: usize = 32;

/// How many deliveries of one room a run takes: [`PIPELINED`] with flood control off, else one.
pub fn run_limit(cfg: &IrcConfig) -> usize {
    if cfg.flood.enabled { 1 } else { PIPELINED }
}

/// A delivery whose lines are queued for the writer.
pub struct Sent {
    /// The connection the lines were queued on.
    link: Link,
    /// Fires once the last line is written and flushed.
    flushed: oneshot::Receiver<()>,
    /// The echo to wait for (echo-message), with the label it was tagged with, if any.
    echo: Option<(oneshot::Receiver<EchoResult>, Option<String>)>,
}

/// Queue one delivery's lines on the live connection, joining its channel first if needed.
/// `Ok(None)`: nothing to send (an event this network cannot show), delivered as is.
pub async fn send(shared: &Shared, delivery: &Delivery) -> Result<Option<Sent>, DeliveryError> {
    let link = current_link(shared)?;
    let target = delivery.room.clone();
    let folded = fold_case(&target);
    if is_channel(&target) {
        lock(&shared.rooms)
            .entry(folded.clone())
            .or_insert_with(|| target.clone());
        wait_joined(&link, &target, &folded).await?;
    }
    let (rendered, echo) = {
        let mut state = lock(&link.state);
        let Some(rendered) = render::render(delivery, &shared.cfg.render, &state.me) else {
            return Ok(None);
        };
        let echo = state
            .caps
            .contains("echo-message")
            .then(|| state.expect_echo(&folded, &rendered.payloads[0]));
        (rendered, echo)
    };
    let mut lines = rendered.lines();
    if let (Some((_, Some(label))), Some(first)) = (&echo, lines.first_mut()) {
        *first = format!("@label={label} {first}");
    }
    let count = lines.len();
    let (done_tx, flushed) = oneshot::channel();
    let mut done_tx = Some(done_tx);
    for (i, line) in lines.into_iter().enumerate() {
        let done = if i + 1 == count { done_tx.take() } else { None };
        if link.paced.send(Paced { line, done }).is_err() {
            return Err(DeliveryError::retryable("the connection closed"));
        }
    }
    Ok(Some(Sent {
        link,
        flushed,
        echo,
    }))
}

impl Sent {
    /// Wait until the lines are out and the server answered them.
    pub async fn finish(self, shared: &Shared) -> Result<Delivered, DeliveryError> {
        if self.flushed.await.is_err() {
            return Err(DeliveryError::retryable(
                "the connection closed before the message was sent",
            ));
        }
        let Some((rx, label)) = self.echo else {
            return Ok(Delivered::default());
        };
        let answer = tokio::time::timeout(shared.cfg.echo_timeout, rx).await;
        if let Some(label) = &label {
            lock(&self.link.state).forget_label(label);
        }
        let remote_id = match answer {
            Ok(Ok(Ok(id))) => id,
            Ok(Ok(Err(error))) => return Err(classify(error)),
            // Sent, but no echo in time (or the connection ended after sending): the line went
            // out, so it is delivered without an id rather than sent twice.
            Ok(Err(_)) | Err(_) => None,
        };
        Ok(Delivered { remote_id })
    }
}

/// One delivery: send it and wait for its answer.
pub async fn one(shared: &Shared, delivery: &Delivery) -> Result<Delivered, DeliveryError> {
    match send(shared, delivery).await? {
        Some(sent) => sent.finish(shared).await,
        None => Ok(Delivered::default()),
    }
}

/// A run into one room: every delivery's lines are queued before the first echo is awaited,
/// then the answers are collected in order. Stops sending at the first delivery that cannot be
/// sent; the answers end at the first retryable one (the gateway retries from there). A
/// refused line is permanent and the answers go on past it, since the lines after it were
/// sent and must not be sent again.
pub async fn run(shared: &Shared, run: &[Delivery]) -> Vec<Result<Delivered, DeliveryError>> {
    let mut queued = Vec::with_capacity(run.len());
    let mut unsent = None;
    for delivery in run {
        match send(shared, delivery).await {
            Ok(sent) => queued.push(sent),
            Err(err) => {
                unsent = Some(err);
                break;
            }
        }
    }
    let mut results = Vec::with_capacity(run.len());
    for sent in queued {
        let result = match sent {
            Some(sent) => sent.finish(shared).await,
            None => Ok(Delivered::default()),
        };
        let retry = matches!(result, Err(DeliveryError::Retryable { .. }));
        results.push(result);
        if retry {
            return results;
        }
    }
    results.extend(unsent.map(Err));
    results
}

fn current_link(shared: &Shared) -> Result<Link, DeliveryError> {
    lock(&shared.link)
        .clone()
        .ok_or_else(|| DeliveryError::retryable("not connected to the IRC server"))
}

/// The gateway's view of a refused line: a channel we are not in is retried after the rejoin,
/// anything else refused is permanent.
fn classify(error: EchoError) -> DeliveryError {
    match error {
        EchoError::NotJoined { .. } => DeliveryError::Retryable {
            reason: error.to_string(),
            retry_after: Some(JOIN_RETRY),
        },
        EchoError::Refused { .. } => DeliveryError::permanent(error.to_string()),
    }
}

/// Wait until the connection is in `target` (asking to join it, at most once per
/// `5 × JOIN_RETRY`), for at most [`JOIN_WAIT`]. A delivery made just after a (re)connect
/// thus goes out as soon as the join completes instead of after the gateway's backoff.
async fn wait_joined(link: &Link, target: &str, folded: &str) -> Result<(), DeliveryError> {
    let deadline = Instant::now() + JOIN_WAIT;
    loop {
        let notified = link.joins.notified();
        tokio::pin!(notified);
        // Registered before looking, so a join between the look and the wait is not missed.
        notified.as_mut().enable();
        {
            let mut state = lock(&link.state);
            if state.joined.contains_key(folded) {
                return Ok(());
            }
            let now = Instant::now();
            let recent = state
                .join_requested
                .get(folded)
                .is_some_and(|t| now.duration_since(*t) < JOIN_RETRY * 5);
            if let Some(reason) = state.join_refused.get(folded) {
                if recent {
                    return Err(DeliveryError::Retryable {
                        reason: format!("cannot join {target}: {reason}"),
                        retry_after: Some(JOIN_RETRY),
                    });
                }
                state.join_refused.remove(folded);
            }
            if !recent {
                state.join_requested.insert(folded.to_owned(), now);
                let _ = link.urgent.send(format!("JOIN {target}"));
            }
        }
        tokio::select! {
            _ = &mut notified => {}
            _ = link.paced.closed() => {
                return Err(DeliveryError::retryable("the connection closed"));
            }
            _ = tokio::time::sleep_until(deadline) => {
                return Err(DeliveryError::Retryable {
                    reason: format!("not in {target} yet"),
                    retry_after: Some(JOIN_RETRY),
                });
            }
        }
    }
}
