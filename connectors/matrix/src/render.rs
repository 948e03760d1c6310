//! [`Delivery`] → what to send to the room (pure).
//!
//! Messages carry the relayed author's name bold in the formatted body and as a prefix of the
//! plain body. Edits, replies, deletions and reactions use Matrix relations when the gateway
//! knows the target's Matrix id; otherwise they degrade to text (an edit becomes a corrected
//! message, a reply quotes its target, a reaction becomes a short line).

use matrix_sdk::ruma::events::Mentions;
use matrix_sdk::ruma::events::relation::{Annotation, InReplyTo, Reply};
use matrix_sdk::ruma::events::room::message::{
    MessageType, Relation, ReplacementMetadata, RoomMessageEventContent,
};
use matrix_sdk::ruma::{OwnedEventId, OwnedUserId, UserId};
use patchbay_sdk::text::{Block, Span, SpanKind, Style};
use patchbay_sdk::{Attachment, Delivery, DeliveryError, Kind, MessageRef, RichText};

use crate::html::to_html;

/// What a delivery turns into.
#[derive(Debug)]
pub enum Outgoing {
    /// A room message (text, emote or notice; possibly an edit or a reply), or files, each
    /// with its caption (the nick, and the text on the first).
    Message {
        content: Option<Box<RoomMessageEventContent>>,
        attachments: Vec<(Attachment, RichText)>,
    },
    /// An annotation; `fallback` is sent instead when the server refuses it.
    Reaction {
        annotation: Annotation,
        fallback: Option<Box<RoomMessageEventContent>>,
    },
    /// Redact an earlier message.
    Redact(OwnedEventId),
    /// Nothing to do (a deletion of a message this room never saw).
    Nothing,
}

/// What sending a reaction comes to, in both modes: the annotation's result (`sent`) or, when
/// the server refused the annotation for good (a duplicate, say) and there is a `fallback`,
/// the fallback's, the reaction said in words. `fallback` is a send not yet started, so it is
/// only made when needed; this does no I/O of its own.
pub(crate) async fn or_fallback<T>(
    sent: Result<T, DeliveryError>,
    fallback: Option<impl Future<Output = Result<T, DeliveryError>>>,
) -> Result<T, DeliveryError> {
    match (sent, fallback) {
        (Err(DeliveryError::Permanent { .. }), Some(fallback)) => fallback.await,
        (sent, _) => sent,
    }
}

/// Options of the account that shape rendering.
#[derive(Clone, Copy, Debug)]
pub struct RenderOptions {
    pub reactions_as_text: bool,
    /// Put the author's nick in front of the text (bot mode). An application service sends
    /// as the author's ghost, whose display name already says who it is.
    pub nick_in_body: bool,
}

fn native(target: &MessageRef) -> Option<OwnedEventId> {
    match target {
        MessageRef::Native(id) => OwnedEventId::try_from(id.as_str()).ok(),
        MessageRef::Gateway(_) => None,
    }
}

/// Put `nick` (bold) and `separator` in front of `body`.
fn with_nick(nick: &str, separator: &str, body: &RichText) -> RichText {
    let mut blocks = body.blocks.clone();
    let mut head = vec![Span::styled(nick, Style::bold()), Span::text(separator)];
    match blocks.first_mut() {
        Some(Block::Paragraph { spans }) => {
            head.append(spans);
            *spans = head;
        }
        _ => {
            head[1].text = separator.trim_end().to_owned();
            head.retain(|s| !s.text.is_empty());
            blocks.insert(0, Block::Paragraph { spans: head });
        }
    }
    RichText { blocks }
}

/// The Matrix users a text mentions, for `m.mentions`.
fn mentions(text: &RichText) -> Vec<OwnedUserId> {
    text.spans()
        .into_iter()
        .filter_map(|span| match &span.kind {
            SpanKind::Mention { id } => UserId::parse(id.as_str()).ok(),
            _ => None,
        })
        .collect()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum MsgType {
    Text,
    Emote,
    Notice,
}

fn content(kind: MsgType, text: &RichText) -> RoomMessageEventContent {
    let plain = text.to_plain();
    let html = to_html(text);
    let content = match kind {
        MsgType::Text => RoomMessageEventContent::text_html(plain, html),
        MsgType::Emote => RoomMessageEventContent::emote_html(plain, html),
        MsgType::Notice => RoomMessageEventContent::notice_html(plain, html),
    };
    content.add_mentions(Mentions::with_user_ids(mentions(text)))
}

/// A short notice line with the nick in bold.
fn notice_line(nick: &str, rest: &str) -> Box<RoomMessageEventContent> {
    let text = RichText::from_spans(vec![Span::styled(nick, Style::bold()), Span::text(rest)]);
    Box::new(content(MsgType::Notice, &text))
}

/// Turn a delivery into what to send.
pub fn render(delivery: &Delivery, options: RenderOptions) -> Outgoing {
    let nick = delivery.nick.as_str();
    let prefixed = |nick: &str, separator: &str, body: &RichText| {
        if options.nick_in_body {
            with_nick(nick, separator, body)
        } else {
            body.clone()
        }
    };
    let event = &delivery.event;
    let (msgtype, body, attachments) = match &event.kind {
        Kind::Message { body, attachments } => (MsgType::Text, body, attachments.clone()),
        Kind::Action { body } => (MsgType::Emote, body, Vec::new()),
        Kind::Notice { body } => (MsgType::Notice, body, Vec::new()),
        Kind::Edit { target, body } => {
            let text = prefixed(nick, ": ", body);
            let edit = content(MsgType::Text, &text);
            let content = match native(target) {
                Some(id) => edit.make_replacement(ReplacementMetadata::new(id, None)),
                // The original never reached this room: send the corrected text.
                None if options.nick_in_body => {
                    content(MsgType::Text, &with_nick(&format!("* {nick}"), ": ", body))
                }
                None => content(MsgType::Text, &with_nick("*", " ", body)),
            };
            return Outgoing::Message {
                content: Some(Box::new(content)),
                attachments: Vec::new(),
            };
        }
        Kind::Delete { target } => {
            return native(target).map_or(Outgoing::Nothing, Outgoing::Redact);
        }
        Kind::Reaction { target, emoji } => {
            let line = match &delivery.quote {
                Some(quote) => format!(" reacted {emoji} to {}: {}", quote.author, quote.text),
                None => format!(" reacted {emoji}"),
            };
            let fallback = options.reactions_as_text.then(|| notice_line(nick, &line));
            return match native(target) {
                Some(id) => Outgoing::Reaction {
                    annotation: Annotation::new(id, emoji.clone()),
                    fallback,
                },
                None => Outgoing::Message {
                    content: fallback,
                    attachments: Vec::new(),
                },
            };
        }
        Kind::Join => return line(nick, " joined"),
        Kind::Part { reason } => {
            return match reason.as_deref().filter(|r| !r.is_empty()) {
                Some(reason) => line(nick, &format!(" left ({reason})")),
                None => line(nick, " left"),
            };
        }
        Kind::Topic { topic } => return line(nick, &format!(" changed the topic to: {topic}")),
        Kind::Nick { old, new } => return line(old, &format!(" is now known as {new}")),
    };
    let reply_target = event.reply_to.as_ref().and_then(native);
    let mut text = match msgtype {
        MsgType::Emote => prefixed(nick, " ", body),
        _ => prefixed(nick, ": ", body),
    };
    if reply_target.is_none()
        && event.reply_to.is_some()
        && let Some(quote) = &delivery.quote
    {
        // The replied-to message is not known here: quote it.
        let quoted = Block::Quote {
            blocks: vec![Block::Paragraph {
                spans: vec![
                    Span::styled(quote.author.clone(), Style::bold()),
                    Span::text(format!(": {}", quote.text)),
                ],
            }],
        };
        text.blocks.insert(0, quoted);
    }
    if !attachments.is_empty() {
        let nick_only = prefixed(nick, "", &RichText::default());
        let attachments = attachments
            .into_iter()
            .enumerate()
            .map(|(i, file)| {
                let caption = if i == 0 && !body.is_empty() {
                    text.clone()
                } else {
                    nick_only.clone()
                };
                (file, caption)
            })
            .collect();
        return Outgoing::Message {
            content: None,
            attachments,
        };
    }
    let content = Some({
        let mut content = content(msgtype, &text);
        if let Some(id) = reply_target {
            content.relates_to = Some(Relation::Reply(Reply::new(InReplyTo::new(id))));
        }
        Box::new(content)
    });
    Outgoing::Message {
        content,
        attachments: Vec::new(),
    }
}

/// Homeservers refuse events over 64 KiB; stay well below.
const MAX_EVENT_BYTES: usize = 60_000;
/// The size of one part when an oversized text is split.
const PART_BYTES: usize = 30_000;

/// Make `content` fit in Matrix events: as is when it fits, else its plain body alone, split
/// into parts at line (or character) boundaries. The first part keeps a reply relation.
pub fn fit(content: RoomMessageEventContent) -> Vec<RoomMessageEventContent> {
    let size = serde_json::to_vec(&content).map_or(usize::MAX, |json| json.len());
    if size <= MAX_EVENT_BYTES {
        return vec![content];
    }
    let (body, make): (&str, fn(String) -> RoomMessageEventContent) = match &content.msgtype {
        MessageType::Emote(emote) => (&emote.body, RoomMessageEventContent::emote_plain),
        MessageType::Notice(notice) => (&notice.body, RoomMessageEventContent::notice_plain),
        other => (other.body(), RoomMessageEventContent::text_plain),
    };
    let reply = match &content.relates_to {
        Some(Relation::Reply(reply)) => Some(reply.clone()),
        _ => None,
    };
    let mut parts = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let mut end = rest.len().min(PART_BYTES);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        if end < rest.len()
            && let Some(newline) = rest[..end].rfind('\n')
            && newline > PART_BYTES / 2
        {
            end = newline + 1;
        }
        parts.push(make(rest[..end].trim_end_matches('\n').to_owned()));
        rest = &rest[end..];
    }
    if let (Some(first), Some(reply)) = (parts.first_mut(), reply) {
        first.relates_to = Some(Relation::Reply(reply));
    }
    parts
}

fn line(nick: &str, rest: &str) -> Outgoing {
    Outgoing::Message {
        content: Some(notice_line(nick, rest)),
        attachments: Vec::new(),
    }
}

#[cfg(test)]
#[path = "render_tests.rs"]
mod tests;
