//! The live connection as `deliver` sees it, and the writer task that sends its lines.
//!
//! Protocol lines (PONG, JOIN, CAP) go out at once; deliveries go through the flood-control
//! bucket. A delivery's last line carries a `done` signal that fires once it is flushed.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use patchbay_sdk::{EventSink, HealthEvent};
use tokio::io::{AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;
use tracing::trace;

use crate::config::IrcConfig;
use crate::pacing::{LinePaced, TokenBucket};
use crate::render::SelfPrefix;

/// What the connector and its sessions share.
pub struct Shared {
    pub cfg: IrcConfig,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub link: Mutex<Option<Link>>,
    /// Channels deliveries were made to, beyond the configured ones: folded name → the name as
    /// routes spell it. Joined again after a reconnect; inbound events use this spelling.
    pub rooms: Mutex<HashMap<String, String>>,
}

/// A line for the writer; `done` fires once it is written and flushed.
pub struct Paced {
    pub line: String,
    pub done: Option<oneshot::Sender<()>>,
}

/// Why the server refused a sent line (a numeric answering it).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EchoError {
    /// Refused while we are in the channel (moderated, colours forbidden, no such nick):
    /// sending again will not help.
    #[error("{target}: {reason}")]
    Refused { target: String, reason: String },
    /// Refused because we are not in the channel (any more): worth retrying after the rejoin.
    #[error("{target}: {reason}")]
    NotJoined { target: String, reason: String },
}

/// What a delivery learns from the server: its msgid (echo-message), if any, or why it was
/// refused.
pub type EchoResult = Result<Option<String>, EchoError>;

type Waiter = oneshot::Sender<EchoResult>;

/// Who waits for echo-message to give a sent line its id, by (folded target, first line's
/// text), oldest first, each with its place in the order lines were sent: the fallback for
/// servers without labeled-response.
type EchoWaiters = HashMap<(String, String), VecDeque<(u64, Waiter)>>;

/// Handles to the registered connection.
#[derive(Clone)]
pub struct Link {
    pub urgent: mpsc::UnboundedSender<String>,
    pub paced: mpsc::UnboundedSender<Paced>,
    pub state: Arc<Mutex<LinkState>>,
    /// Woken whenever `joined` or `join_refused` changes, for deliveries waiting for a join.
    pub joins: Arc<Notify>,
}

/// What `deliver` needs to know about the live connection.
pub struct LinkState {
    pub me: SelfPrefix,
    pub caps: HashSet<String>,
    /// Joined channels: folded name → name as the server spells it.
    pub joined: HashMap<String, String>,
    /// Channels a delivery asked to join, and when.
    pub join_requested: HashMap<String, Instant>,
    /// Channels the server would not let us join (full, banned, bad key), and why; cleared
    /// when we join or ask again.
    pub join_refused: HashMap<String, String>,
    pub echo_waiters: EchoWaiters,
    /// labeled-response: who waits for the answer to each label, with the folded target and
    /// its place in the order lines were sent.
    pub label_waiters: HashMap<String, (String, u64, Waiter)>,
    /// The place of the next waiter in the order lines were sent; also the number in its
    /// label, so labels are unique per connection.
    pub next_waiter: u64,
}

impl LinkState {
    pub fn new(me: SelfPrefix) -> Self {
        LinkState {
            me,
            caps: HashSet::new(),
            joined: HashMap::new(),
            join_requested: HashMap::new(),
            join_refused: HashMap::new(),
            echo_waiters: HashMap::new(),
            label_waiters: HashMap::new(),
            next_waiter: 1,
        }
    }

    /// Whether sends are matched to their echoes by label.
    pub fn labels(&self) -> bool {
        self.caps.contains("labeled-response") && self.caps.contains("echo-message")
    }

    /// Wait for the echo of a line to `folded` whose text is `text`: returns the receiver and,
    /// where the server offers labeled-response, the label to tag the line with.
    pub fn expect_echo(
        &mut self,
        folded: &str,
        text: &str,
    ) -> (oneshot::Receiver<EchoResult>, Option<String>) {
        let (tx, rx) = oneshot::channel();
        let seq = self.next_waiter;
        self.next_waiter += 1;
        if self.labels() {
            let label = format!("pb{seq}");
            self.label_waiters
                .insert(label.clone(), (folded.to_owned(), seq, tx));
            (rx, Some(label))
        } else {
            self.echo_waiters
                .entry((folded.to_owned(), text.to_owned()))
                .or_default()
                .push_back((seq, tx));
            (rx, None)
        }
    }

    /// Forget a label whose delivery stopped waiting.
    pub fn forget_label(&mut self, label: &str) {
        self.label_waiters.remove(label);
    }

    /// An answer to our line: by its label where it has one we wait for, else by target and
    /// text (the oldest living waiter: deliveries that gave up are skipped). Returns whether a
    /// waiter was found.
    pub fn answer(
        &mut self,
        label: Option<&str>,
        folded: &str,
        text: Option<&str>,
        result: EchoResult,
    ) -> bool {
        if let Some((_, _, waiter)) = label.and_then(|l| self.label_waiters.remove(l)) {
            let _ = waiter.send(result);
            return true;
        }
        let Some(text) = text else { return false };
        let key = (folded.to_owned(), text.to_owned());
        match self.take_by_text(&key) {
            Some(waiter) => {
                let _ = waiter.send(result);
                true
            }
            None => false,
        }
    }

    /// A refusal of a line to `folded`: the labeled waiter it names, or else the oldest living
    /// waiter for that target. The server answers a client's lines in the order they came,
    /// each with its echo or its refusal, so the oldest line to `folded` still unanswered is
    /// the one refused, even with several lines in flight.
    pub fn refuse(&mut self, label: Option<&str>, folded: &str, error: EchoError) {
        if let Some((_, _, waiter)) = label.and_then(|l| self.label_waiters.remove(l)) {
            let _ = waiter.send(Err(error));
            return;
        }
        // The oldest living waiter for `folded`, whichever map holds it (a delivery that gave
        // up, timed out, answers nothing).
        let by_text = self
            .echo_waiters
            .iter()
            .filter(|((t, _), _)| t == folded)
            .filter_map(|(key, queue)| {
                let (seq, _) = queue.iter().find(|(_, w)| !w.is_closed())?;
                Some((*seq, Oldest::Text(key.clone())))
            });
        let by_label = self
            .label_waiters
            .iter()
            .filter(|(_, (t, _, w))| t == folded && !w.is_closed())
            .map(|(l, (_, seq, _))| (*seq, Oldest::Label(l.clone())));
        let waiter = match by_text.chain(by_label).min_by_key(|(seq, _)| *seq) {
            Some((_, Oldest::Text(key))) => self.take_by_text(&key),
            Some((_, Oldest::Label(label))) => self.label_waiters.remove(&label).map(|(_, _, w)| w),
            None => None,
        };
        if let Some(waiter) = waiter {
            let _ = waiter.send(Err(error));
        }
    }

    /// The oldest living waiter for a (target, text), dropping the dead ones before it.
    fn take_by_text(&mut self, key: &(String, String)) -> Option<Waiter> {
        let queue = self.echo_waiters.get_mut(key)?;
        let mut found = None;
        while let Some((_, waiter)) = queue.pop_front() {
            if !waiter.is_closed() {
                found = Some(waiter);
                break;
            }
        }
        if queue.is_empty() {
            self.echo_waiters.remove(key);
        }
        found
    }
}

/// Where the oldest waiter of a refused line is kept.
enum Oldest {
    Text((String, String)),
    Label(String),
}

/// How many bytes of queued lines the writer gathers before it writes them even though more
/// are waiting.
const WRITE_AT: usize = 16 * 1024;

pub async fn writer_task<W: AsyncWrite>(
    mut wr: WriteHalf<W>,
    mut urgent: mpsc::UnboundedReceiver<String>,
    mut paced: mpsc::UnboundedReceiver<Paced>,
    mut bucket: TokenBucket,
    sink: EventSink,
) -> std::io::Result<()> {
    let mut acks: Vec<oneshot::Sender<()>> = Vec::new();
    // Lines queued together go out in one write: a pipelined run is one syscall, not two per
    // line.
    let mut out: Vec<u8> = Vec::with_capacity(4096);
    loop {
        let line = tokio::select! {
            biased;
            Some(line) = urgent.recv() => line,
            Some(p) = paced.recv() => {
                let wait = bucket.take().await;
                if !wait.is_zero() {
                    LinePaced { wait }.emit(&sink);
                }
                if let Some(done) = p.done {
                    acks.push(done);
                }
                p.line
            }
            else => break,
        };
        // A line never carries CR, LF or NUL: cut there rather than send two commands.
        let clean = line.split(['\r', '\n', '\0']).next().unwrap_or("");
        trace!("> {clean}");
        out.extend_from_slice(clean.as_bytes());
        out.extend_from_slice(b"\r\n");
        let idle = urgent.is_empty() && paced.is_empty();
        if idle || out.len() >= WRITE_AT {
            wr.write_all(&out).await?;
            out.clear();
        }
        if idle {
            wr.flush().await?;
            for ack in acks.drain(..) {
                let _ = ack.send(());
            }
        }
    }
    wr.write_all(&out).await?;
    wr.flush().await?;
    let _ = wr.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(caps: &[&str]) -> LinkState {
        let mut s = LinkState::new(SelfPrefix {
            nick: "pb".into(),
            user: "pb".into(),
            host: None,
        });
        s.caps = caps.iter().map(|c| (*c).to_owned()).collect();
        s
    }

    #[test]
    fn labels_find_an_echo_whatever_its_text() {
        let mut s = state(&["echo-message", "labeled-response"]);
        let (mut rx1, l1) = s.expect_echo("#c", "<bob> colour");
        let (mut rx2, l2) = s.expect_echo("#c", "<bob> colour");
        let (l1, l2) = (l1.expect("label"), l2.expect("label"));
        assert_ne!(l1, l2);
        // The server rewrote the text; the label still names the delivery, out of order too.
        assert!(s.answer(Some(&l2), "#c", Some("<bob> color"), Ok(Some("id2".into()))));
        assert_eq!(rx2.try_recv(), Ok(Ok(Some("id2".into()))));
        assert!(rx1.try_recv().is_err());
        s.refuse(
            Some(&l1),
            "#c",
            EchoError::Refused {
                target: "#c".into(),
                reason: "moderated".into(),
            },
        );
        assert!(matches!(rx1.try_recv(), Ok(Err(EchoError::Refused { .. }))));
        assert!(s.label_waiters.is_empty());
    }

    #[test]
    fn without_labels_echoes_match_by_text_oldest_first() {
        let mut s = state(&["echo-message"]);
        let (mut rx1, l1) = s.expect_echo("#c", "hi");
        let (mut rx2, _) = s.expect_echo("#c", "hi");
        let (mut rx3, _) = s.expect_echo("#c", "there");
        assert_eq!(l1, None);
        assert!(!s.answer(None, "#c", Some("other"), Ok(None)));
        assert!(s.answer(None, "#c", Some("hi"), Ok(Some("a".into()))));
        assert_eq!(rx1.try_recv(), Ok(Ok(Some("a".into()))));
        // A refusal without a label fails the oldest waiter for that target, whatever its
        // text: the server answers lines in order.
        s.refuse(
            None,
            "#c",
            EchoError::NotJoined {
                target: "#c".into(),
                reason: "not on channel".into(),
            },
        );
        assert!(matches!(
            rx2.try_recv(),
            Ok(Err(EchoError::NotJoined { .. }))
        ));
        assert!(rx3.try_recv().is_err());
        assert!(s.answer(None, "#c", Some("there"), Ok(Some("b".into()))));
        assert_eq!(rx3.try_recv(), Ok(Ok(Some("b".into()))));
        assert!(s.echo_waiters.is_empty());
    }
}
