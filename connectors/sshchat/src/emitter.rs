//! Handing events to the gateway without pausing the reading of the server.
//!
//! ssh-chat drops a client that stops reading for 5 s with 5 messages queued, and Devzat's
//! broadcast waits on each plugin listener in turn: a session must keep reading while the
//! gateway records what it emitted. Events therefore go through a queue to a task of their own,
//! in order.

use patchbay_sdk::{EmitError, EventSink, Inbound};
use tokio::sync::mpsc;

/// Events waiting for the gateway before reading pauses after all.
const CAPACITY: usize = 10_000;

#[derive(Clone)]
pub struct Emitter {
    tx: mpsc::Sender<Inbound>,
}

impl Emitter {
    /// Start the task that emits into `sink`; it ends when every `Emitter` clone is dropped.
    pub fn spawn(sink: EventSink) -> Emitter {
        let (tx, mut rx) = mpsc::channel::<Inbound>(CAPACITY);
        tokio::spawn(async move {
            while let Some(inbound) = rx.recv().await {
                match sink.emit(inbound).await {
                    Ok(_) => {}
                    Err(EmitError::Closed) => break,
                    Err(err) => {
                        tracing::warn!(account = %sink.account(), %err, "the gateway did not record an event; it is not relayed (the gateway is stopping, or its store failed: see its errors)");
                    }
                }
            }
        });
        Emitter { tx }
    }

    /// Queue an event for the gateway (waits only when the queue is full).
    pub async fn emit(&self, inbound: Inbound) {
        if self.tx.send(inbound).await.is_err() {
            tracing::debug!("the gateway is shutting down; an event was not handed over");
        }
    }
}
