//! Accepts gathered into one: the runs that sources hand over while one accept is on its way
//! to JetStream go together in the next.
//!
//! An accept costs round trips, not bytes: every run waits for the server to store its
//! deliveries and its map entries. Sixty-four sources each accepting on their own send
//! sixty-four times the small writes, and each writes the newest-event mark of its room again
//! (`l.<acct>.<room>`) and rings its rooms' bells, which every instance of the site hears.
//! Gathered, the marks and the bells go once per room per gathering (and the marks, with many
//! busy rooms, less often still: see [`super::marks`]). One gathering is on its way at a time: the marks
//! of two could otherwise be noted out of order, and a source's runs follow one another anyway
//! (it waits for its answer).
//!
//! Nothing changes for a source: it is answered once its own events are stored, with the
//! same answers, in order; a failure fails every run of the gathering, each of which its
//! source sends again.

use tokio::sync::{mpsc, oneshot};

use super::{Accepting, accept_now};
use crate::store::{Accepted, NewEvent, StoreError};

/// The most events one gathering takes; the rest wait for the next.
const GATHER_MAX: usize = 1_024;

/// A run waiting to be accepted, and where its answer goes.
struct Waiting {
    run: Vec<NewEvent>,
    answer: oneshot::Sender<Result<Vec<Accepted>, StoreError>>,
}

/// The queue in front of the gathering task.
pub(super) struct Gather {
    queue: mpsc::UnboundedSender<Waiting>,
}

impl Gather {
    /// Start the task that accepts what is queued; it ends when the `Gather` is dropped.
    pub(super) fn start(accepting: Accepting) -> Gather {
        let (queue, waiting) = mpsc::unbounded_channel();
        tokio::spawn(run(accepting, waiting));
        Gather { queue }
    }

    /// Accept `run` with whatever else is waiting.
    pub(super) async fn accept(&self, run: Vec<NewEvent>) -> Result<Vec<Accepted>, StoreError> {
        let (answer, answered) = oneshot::channel();
        self.queue
            .send(Waiting { run, answer })
            .map_err(|_| StoreError::Closed)?;
        answered.await.map_err(|_| StoreError::Closed)?
    }
}

async fn run(accepting: Accepting, mut queue: mpsc::UnboundedReceiver<Waiting>) {
    let mut next: Option<Waiting> = None;
    loop {
        let first = match next.take() {
            Some(first) => first,
            None => match queue.recv().await {
                Some(first) => first,
                None => return,
            },
        };
        let mut gathered = vec![first];
        let mut events = gathered[0].run.len();
        while events < GATHER_MAX {
            match queue.try_recv() {
                Ok(more) if events + more.run.len() > GATHER_MAX => {
                    next = Some(more);
                    break;
                }
                Ok(more) => {
                    events += more.run.len();
                    gathered.push(more);
                }
                Err(_) => break,
            }
        }
        let lengths: Vec<usize> = gathered.iter().map(|w| w.run.len()).collect();
        let mut run = Vec::with_capacity(events);
        let mut answers = Vec::with_capacity(gathered.len());
        for waiting in gathered {
            run.extend(waiting.run);
            answers.push(waiting.answer);
        }
        match accept_now(&accepting, run).await {
            Ok(accepted) => {
                let mut accepted = accepted.into_iter();
                for (answer, length) in answers.into_iter().zip(lengths) {
                    // A source that stopped waiting has gone; its events are stored.
                    let _ = answer.send(Ok(accepted.by_ref().take(length).collect()));
                }
            }
            Err(err) => {
                let message = err.to_string();
                for answer in answers {
                    let _ = answer.send(Err(StoreError::Unavailable(message.clone())));
                }
            }
        }
    }
}
