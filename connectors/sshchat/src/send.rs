//! A room's send queue: where deliveries wait for the write that carries them. Pure: no I/O,
//! no clock (the session passes in how many writes the rate limit allows now).
//!
//! Guarantees:
//! - A delivery is answered `Ok` only once the line carrying its last piece was shown: the
//!   session calls [`Write::written`] when the server's broadcast of it came back (bytes on
//!   the socket are not enough: a server drops the input it had not read yet when the
//!   connection closes). Until then it stays in the gateway's outbox, so a crash loses nothing.
//!   A [`Write`] dropped unanswered answers its deliveries with a retryable error.
//! - Pieces are written in the order they were queued, and one delivery's pieces in order.
//! - A run that is withdrawn (its caller took the prefix already written, or gave up) leaves
//!   no piece of a delivery not yet begun: nothing the gateway will offer again is also
//!   written later. A delivery already begun stays and is finished.
//! - When the session ends, every waiting delivery is answered with a retryable error and the
//!   queue is emptied; the outbox holds them for the next session.
//!
//! Only what was shown but not yet answered when the gateway crashed can be doubled: the
//! writes of one run at most (see `ssh.rs`).

use std::collections::VecDeque;

use patchbay_sdk::DeliveryError;
use tokio::sync::oneshot;

/// How one delivery ends: written, or not (and then retried by the gateway).
pub type Answer = Result<(), DeliveryError>;

/// Lines waiting per room before a new run is pushed back to the gateway.
pub const QUEUE_LIMIT: usize = 2000;

/// One typed line (a delivery may need several), and the answer its delivery waits for when it
/// is that delivery's last.
struct Piece {
    /// The run it came in; `None` for a line resent after the server refused it (already
    /// answered, never withdrawn).
    run: Option<u64>,
    /// Which delivery of the run.
    index: usize,
    /// The delivery's first piece: while it is queued, nothing of the delivery was written.
    first: bool,
    text: String,
    /// The deliveries this piece completes (several once a refused merged line is resent).
    done: Vec<oneshot::Sender<Answer>>,
}

/// One write to make: the text to type and the deliveries it completes.
pub struct Write {
    pub text: String,
    /// How many queued pieces it carries (for logs).
    pub pieces: usize,
    done: Vec<oneshot::Sender<Answer>>,
}

impl Write {
    /// The server showed the line: answer its deliveries.
    pub fn written(mut self) {
        for done in self.done.drain(..) {
            let _ = done.send(Ok(()));
        }
    }

    /// The write failed: its deliveries are retried by the gateway.
    pub fn failed(mut self, reason: &str) {
        for done in self.done.drain(..) {
            let _ = done.send(Err(DeliveryError::retryable(reason.to_owned())));
        }
    }

    /// The server refused the line for good (too long): its deliveries are dead letters.
    pub fn refused(mut self, reason: &str) {
        for done in self.done.drain(..) {
            let _ = done.send(Err(DeliveryError::permanent(reason.to_owned())));
        }
    }
}

impl Drop for Write {
    fn drop(&mut self) {
        for done in self.done.drain(..) {
            let _ = done.send(Err(DeliveryError::retryable(
                "the session ended before the server showed the line",
            )));
        }
    }
}

/// How to merge pieces into one line when more wait than the rate limit lets through.
#[derive(Clone, Copy, Debug)]
pub struct Merge<'a> {
    /// What goes between merged pieces (Devzat's `\n` escape, ` | ` on ssh-chat).
    pub separator: &'a str,
    /// The longest merged line, in bytes.
    pub budget: usize,
}

/// The queue itself.
#[derive(Default)]
pub struct SendQueue {
    pieces: VecDeque<Piece>,
    /// True while the session is in its room and writes.
    live: bool,
    next_run: u64,
}

impl SendQueue {
    pub fn is_live(&self) -> bool {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    pub fn len(&self) -> usize {
        self.pieces.len()
    }

    /// The session entered its room.
    pub fn open(&mut self) {
        self.live = true;
    }

    /// The session ended: answer every waiting delivery with a retryable error and empty the
    /// queue (the gateway offers them again once a session is back).
    pub fn close(&mut self, reason: &str) {
        self.live = false;
        for piece in self.pieces.drain(..) {
            for done in piece.done {
                let _ = done.send(Err(DeliveryError::retryable(reason.to_owned())));
            }
        }
    }

    /// Queue a run: each delivery as its typed lines (none for a delivery with nothing to
    /// show). Returns the run's id and, per delivery, what to wait for (`None`: nothing to
    /// write, done now).
    #[allow(clippy::type_complexity)]
    pub fn push(
        &mut self,
        room: &str,
        run: Vec<Vec<String>>,
    ) -> Result<(u64, Vec<Option<oneshot::Receiver<Answer>>>), DeliveryError> {
        if !self.live {
            return Err(DeliveryError::retryable(format!("not connected to {room}")));
        }
        let lines: usize = run.iter().map(Vec::len).sum();
        if !self.pieces.is_empty() && self.pieces.len() + lines > QUEUE_LIMIT {
            return Err(DeliveryError::Retryable {
                reason: format!("{} lines already waiting for {room}", self.pieces.len()),
                retry_after: Some(std::time::Duration::from_secs(5)),
            });
        }
        let id = self.next_run;
        self.next_run += 1;
        let mut waits = Vec::with_capacity(run.len());
        for (index, lines) in run.into_iter().enumerate() {
            if lines.is_empty() {
                waits.push(None);
                continue;
            }
            let (tx, rx) = oneshot::channel();
            let last = lines.len() - 1;
            let mut tx = Some(tx);
            for (i, text) in lines.into_iter().enumerate() {
                self.pieces.push_back(Piece {
                    run: Some(id),
                    index,
                    first: i == 0,
                    text,
                    done: if i == last {
                        tx.take().into_iter().collect()
                    } else {
                        Vec::new()
                    },
                });
            }
            waits.push(Some(rx));
        }
        Ok((id, waits))
    }

    /// Take back what of run `id` was not begun: those deliveries' waits end without an
    /// answer, and the gateway offers them again.
    pub fn withdraw(&mut self, id: u64) {
        let untouched: Vec<usize> = self
            .pieces
            .iter()
            .filter(|p| p.run == Some(id) && p.first)
            .map(|p| p.index)
            .collect();
        self.pieces
            .retain(|p| p.run != Some(id) || !untouched.contains(&p.index));
    }

    /// Put a line the server refused for its rate back in front, with the deliveries it
    /// carries: it is written again as it was, never withdrawn.
    pub fn resend(&mut self, mut write: Write) {
        self.pieces.push_front(Piece {
            run: None,
            index: 0,
            first: false,
            text: std::mem::take(&mut write.text),
            done: std::mem::take(&mut write.done),
        });
    }

    /// Put a refused line whose deliveries were already answered back in front.
    pub fn resend_text(&mut self, text: String) {
        self.pieces.push_front(Piece {
            run: None,
            index: 0,
            first: false,
            text,
            done: Vec::new(),
        });
    }

    /// The next write when `free` writes fit under the rate limit now: one piece while the
    /// queue is no longer than that, else as many pieces as fit in one merged line.
    pub fn take(&mut self, free: usize, merge: Merge<'_>) -> Option<Write> {
        let first = self.pieces.pop_front()?;
        let mut text = first.text;
        let mut done = first.done;
        let mut pieces = 1;
        if self.pieces.len() >= free.max(1) {
            while let Some(next) = self.pieces.front() {
                if text.len() + merge.separator.len() + next.text.len() > merge.budget {
                    break;
                }
                let Some(next) = self.pieces.pop_front() else {
                    break;
                };
                text.push_str(merge.separator);
                text.push_str(&next.text);
                done.extend(next.done);
                pieces += 1;
            }
        }
        Some(Write { text, pieces, done })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MERGE: Merge<'static> = Merge {
        separator: " | ",
        budget: 20,
    };

    fn lines(items: &[&[&str]]) -> Vec<Vec<String>> {
        items
            .iter()
            .map(|d| d.iter().map(|s| s.to_string()).collect())
            .collect()
    }

    fn open() -> SendQueue {
        let mut q = SendQueue::default();
        q.open();
        q
    }

    #[test]
    fn nothing_is_queued_while_the_session_is_out_of_its_room() {
        let mut q = SendQueue::default();
        assert!(q.push("#main", lines(&[&["a"]])).is_err());
        q.open();
        q.close("gone");
        assert!(q.push("#main", lines(&[&["a"]])).is_err());
    }

    #[test]
    fn a_delivery_is_answered_only_when_the_write_carrying_its_last_piece_is_done() {
        let mut q = open();
        let (_, mut waits) = q
            .push("#main", lines(&[&["a1", "a2"], &[]]))
            .expect("queued");
        assert!(waits[1].is_none(), "nothing to write: done at once");
        let mut a = waits[0].take().expect("a waits");
        let first = q.take(10, MERGE).expect("a write");
        assert_eq!(first.text, "a1");
        first.written();
        assert!(a.try_recv().is_err(), "not answered after its first piece");
        let second = q.take(10, MERGE).expect("a write");
        assert_eq!(second.text, "a2");
        second.written();
        assert_eq!(a.try_recv().expect("answered"), Ok(()));
    }

    #[test]
    fn more_pieces_than_free_writes_merge_into_lines_within_the_budget() {
        let mut q = open();
        let (_, waits) = q
            .push("#main", lines(&[&["one"], &["two"], &["three"], &["four"]]))
            .expect("queued");
        let write = q.take(1, MERGE).expect("a write");
        assert_eq!(write.text, "one | two | three");
        assert_eq!(write.pieces, 3);
        write.written();
        let answered: Vec<bool> = waits
            .into_iter()
            .map(|w| w.expect("waits").try_recv().is_ok())
            .collect();
        assert_eq!(answered, [true, true, true, false]);
        assert_eq!(q.take(1, MERGE).expect("the rest").text, "four");
    }

    #[test]
    fn withdrawing_keeps_a_begun_delivery_and_drops_the_rest() {
        let mut q = open();
        let (id, mut waits) = q
            .push("#main", lines(&[&["a1", "a2"], &["b"], &["c"]]))
            .expect("queued");
        let other = q.push("#main", lines(&[&["x"]])).expect("queued");
        q.take(10, MERGE).expect("a1").written();
        q.withdraw(id);
        // a2 finishes a; b and c come back to the gateway; x (another run) stays.
        let texts: Vec<String> = std::iter::from_fn(|| q.take(10, MERGE))
            .map(|w| {
                let text = w.text.clone();
                w.written();
                text
            })
            .collect();
        assert_eq!(texts, ["a2", "x"]);
        assert_eq!(waits[0].take().expect("a").try_recv(), Ok(Ok(())));
        assert!(matches!(
            waits[1].take().expect("b").try_recv(),
            Err(oneshot::error::TryRecvError::Closed)
        ));
        drop(other);
    }

    #[test]
    fn closing_answers_every_waiting_delivery_with_a_retryable_error() {
        let mut q = open();
        let (_, waits) = q.push("#main", lines(&[&["a"], &["b"]])).expect("queued");
        let write = q.take(10, MERGE).expect("a");
        q.close("the server closed the session");
        write.failed("write failed");
        for wait in waits {
            let answer = wait.expect("waits").try_recv().expect("answered");
            assert!(matches!(answer, Err(DeliveryError::Retryable { .. })));
        }
        assert!(q.is_empty());
    }

    #[test]
    fn a_line_refused_for_its_rate_is_resent_first_with_its_deliveries() {
        let mut q = open();
        let (id, mut waits) = q.push("#main", lines(&[&["a"], &["b"]])).expect("queued");
        let refused = q.take(10, MERGE).expect("a");
        q.resend(refused);
        q.withdraw(id);
        let again = q.take(10, MERGE).expect("a again");
        assert_eq!(again.text, "a");
        again.written();
        assert_eq!(waits[0].take().expect("a").try_recv(), Ok(Ok(())));
        assert!(q.is_empty(), "b was withdrawn");
    }

    #[test]
    fn a_write_dropped_unanswered_answers_a_retryable_error() {
        let mut q = open();
        let (_, mut waits) = q.push("#main", lines(&[&["a"]])).expect("queued");
        drop(q.take(10, MERGE));
        assert!(matches!(
            waits[0].take().expect("a").try_recv(),
            Ok(Err(DeliveryError::Retryable { .. }))
        ));
    }
}
