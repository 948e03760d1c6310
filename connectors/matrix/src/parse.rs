//! Matrix room events → [`Inbound`] events (pure).
//!
//! The session hands each timeline event (already decrypted when the room is encrypted)
//! together with what it looked up about the room and the sender; this module decides what the
//! event means for the gateway. Media is returned beside the event, for the session to register
//! a `/media/...` link before the event is emitted.

use matrix_sdk::ruma::events::relation::Replacement;
use matrix_sdk::ruma::events::room::MediaSource;
use matrix_sdk::ruma::events::room::member::MembershipState;
use matrix_sdk::ruma::events::room::message::{
    FormattedBody, MessageFormat, MessageType, Relation, RoomMessageEventContent,
    RoomMessageEventContentWithoutRelation,
};
use matrix_sdk::ruma::events::{AnySyncMessageLikeEvent, AnySyncStateEvent, AnySyncTimelineEvent};
use patchbay_sdk::{Author, Inbound, Kind, MessageRef, RichText, Timestamp};

use crate::html::from_html;

/// What the session knows around one event.
pub struct Context<'a> {
    /// The room as routes name it.
    pub room: &'a str,
    /// The bot's own user id: its events are echoes.
    pub own_user: &'a str,
    /// The sender's display name in the room, if it has one.
    pub display_name: Option<&'a str>,
    /// Whether reactions are relayed at all.
    pub relay_reactions: bool,
}

/// A file attached to a Matrix message, to be served under `/media/...`.
#[derive(Clone, Debug)]
pub struct Media {
    pub source: MediaSource,
    pub name: String,
    pub mime: Option<String>,
    pub size: Option<u64>,
}

/// An event for the gateway, and the attachment it carries (its link is filled in later).
#[derive(Clone, Debug)]
pub struct Parsed {
    pub inbound: Inbound,
    pub media: Option<Media>,
}

/// Interpret one timeline event; `None` for events the gateway does not relay (state events,
/// receipts, redacted messages, unknown types).
pub fn parse_event(event: &AnySyncTimelineEvent, ctx: &Context<'_>) -> Option<Parsed> {
    let event = match event {
        AnySyncTimelineEvent::MessageLike(event) => event,
        AnySyncTimelineEvent::State(state) => {
            return parse_state(state, ctx).map(|inbound| Parsed {
                inbound,
                media: None,
            });
        }
    };
    let sender = event.sender().to_string();
    let author = Author {
        name: ctx
            .display_name
            .filter(|name| !name.trim().is_empty())
            .map(str::to_owned)
            .unwrap_or_else(|| localpart(&sender).to_owned()),
        id: sender.clone(),
        avatar: None,
        is_bot: false,
        is_system: false,
    };
    let base = Inbound {
        room: ctx.room.to_owned(),
        remote_id: Some(event.event_id().to_string()),
        author,
        time: Timestamp(i64::from(event.origin_server_ts().0)),
        reply_to: None,
        hops: Vec::new(),
        is_echo: sender == ctx.own_user,
        kind: Kind::Join,
    };
    match event {
        AnySyncMessageLikeEvent::RoomMessage(message) => {
            let original = message.as_original()?;
            parse_message(&original.content, base)
        }
        AnySyncMessageLikeEvent::RoomRedaction(redaction) => {
            let original = redaction.as_original()?;
            let target = original
                .redacts
                .clone()
                .or_else(|| original.content.redacts.clone())?;
            Some(Parsed {
                inbound: Inbound {
                    kind: Kind::Delete {
                        target: MessageRef::Native(target.to_string()),
                    },
                    ..base
                },
                media: None,
            })
        }
        AnySyncMessageLikeEvent::Sticker(sticker) => {
            // A sticker is an image with its description as the name.
            let original = sticker.as_original()?;
            let content = &original.content;
            let extension = content
                .info
                .mimetype
                .as_deref()
                .and_then(|m| m.strip_prefix("image/"))
                .filter(|sub| sub.chars().all(|c| c.is_ascii_alphanumeric()))
                .unwrap_or("png");
            let media = Media {
                source: MediaSource::from(content.source.clone()),
                name: sanitize_file_name(&format!("{}.{extension}", content.body)),
                mime: content.info.mimetype.clone(),
                size: content.info.size.map(u64::from),
            };
            Some(Parsed {
                inbound: Inbound {
                    kind: Kind::Message {
                        body: RichText::default(),
                        attachments: Vec::new(),
                    },
                    ..base
                },
                media: Some(media),
            })
        }
        AnySyncMessageLikeEvent::Reaction(reaction) if ctx.relay_reactions => {
            let original = reaction.as_original()?;
            let annotation = &original.content.relates_to;
            Some(Parsed {
                inbound: Inbound {
                    kind: Kind::Reaction {
                        target: MessageRef::Native(annotation.event_id.to_string()),
                        emoji: annotation.key.clone(),
                    },
                    ..base
                },
                media: None,
            })
        }
        _ => None,
    }
}

/// Membership changes (join, leave, kick, ban, display-name change) and topic changes.
fn parse_state(event: &AnySyncStateEvent, ctx: &Context<'_>) -> Option<Inbound> {
    let sender = event.sender().to_string();
    let inbound = |subject: &str, name: Option<&str>, kind: Kind| Inbound {
        room: ctx.room.to_owned(),
        remote_id: Some(event.event_id().to_string()),
        author: Author {
            id: subject.to_owned(),
            name: name
                .filter(|n| !n.trim().is_empty())
                .map_or_else(|| localpart(subject).to_owned(), str::to_owned),
            avatar: None,
            is_bot: false,
            is_system: false,
        },
        time: Timestamp(i64::from(event.origin_server_ts().0)),
        reply_to: None,
        hops: Vec::new(),
        is_echo: subject == ctx.own_user,
        kind,
    };
    match event {
        AnySyncStateEvent::RoomMember(member) => {
            let original = member.as_original()?;
            let subject = original.state_key.as_str();
            let content = &original.content;
            let prev = original.unsigned.prev_content.as_ref();
            let was_joined = prev.is_some_and(|p| p.membership == MembershipState::Join);
            let old_name = prev.and_then(|p| p.displayname.as_deref());
            match content.membership {
                MembershipState::Join if !was_joined => {
                    Some(inbound(subject, content.displayname.as_deref(), Kind::Join))
                }
                MembershipState::Join => {
                    let old = old_name.unwrap_or_else(|| localpart(subject));
                    let new = content
                        .displayname
                        .as_deref()
                        .unwrap_or_else(|| localpart(subject));
                    (old != new).then(|| {
                        inbound(
                            subject,
                            Some(new),
                            Kind::Nick {
                                old: old.to_owned(),
                                new: new.to_owned(),
                            },
                        )
                    })
                }
                MembershipState::Leave | MembershipState::Ban if was_joined => {
                    let reason = content.reason.as_deref().filter(|r| !r.trim().is_empty());
                    let reason = match (&content.membership, subject == sender) {
                        (MembershipState::Ban, _) => Some(match reason {
                            Some(r) => format!("banned by {sender}: {r}"),
                            None => format!("banned by {sender}"),
                        }),
                        (_, false) => Some(match reason {
                            Some(r) => format!("kicked by {sender}: {r}"),
                            None => format!("kicked by {sender}"),
                        }),
                        (_, true) => reason.map(str::to_owned),
                    };
                    Some(inbound(subject, old_name, Kind::Part { reason }))
                }
                _ => None,
            }
        }
        AnySyncStateEvent::RoomTopic(topic) => {
            let original = topic.as_original()?;
            Some(inbound(
                &sender,
                ctx.display_name,
                Kind::Topic {
                    topic: original.content.topic.clone(),
                },
            ))
        }
        _ => None,
    }
}

fn localpart(user_id: &str) -> &str {
    let id = user_id.strip_prefix('@').unwrap_or(user_id);
    id.split_once(':').map_or(id, |(local, _)| local)
}

fn parse_message(content: &RoomMessageEventContent, base: Inbound) -> Option<Parsed> {
    match &content.relates_to {
        Some(Relation::Replacement(Replacement {
            event_id,
            new_content,
            ..
        })) => {
            let (kind, _) = message_kind(new_content_msgtype(new_content), false)?;
            let body = kind.body().cloned().unwrap_or_default();
            Some(Parsed {
                inbound: Inbound {
                    kind: Kind::Edit {
                        target: MessageRef::Native(event_id.to_string()),
                        body,
                    },
                    ..base
                },
                media: None,
            })
        }
        relation => {
            let reply_to = match relation {
                Some(Relation::Reply(reply)) => Some(reply.in_reply_to.event_id.to_string()),
                // A reply inside a thread answers its in_reply_to; a plain thread message
                // continues the thread's root.
                Some(Relation::Thread(thread)) => Some(
                    thread
                        .in_reply_to
                        .as_ref()
                        .filter(|_| !thread.is_falling_back)
                        .map_or(&thread.event_id, |r| &r.event_id)
                        .to_string(),
                ),
                _ => None,
            };
            let (kind, media) = message_kind(&content.msgtype, reply_to.is_some())?;
            Some(Parsed {
                inbound: Inbound {
                    reply_to: reply_to.map(MessageRef::Native),
                    kind,
                    ..base
                },
                media,
            })
        }
    }
}

fn new_content_msgtype(content: &RoomMessageEventContentWithoutRelation) -> &MessageType {
    &content.msgtype
}

/// Rich text from a plain body and an optional formatted body.
fn rich_text(body: &str, formatted: Option<&FormattedBody>, is_reply: bool) -> RichText {
    if let Some(formatted) = formatted
        && formatted.format == MessageFormat::Html
    {
        let text = from_html(&formatted.body);
        if !text.blocks.is_empty() || body.trim().is_empty() {
            return text;
        }
    }
    let body = if is_reply {
        strip_reply_fallback(body)
    } else {
        body
    };
    RichText::plain(body)
}

/// Older clients prefix a reply's plain body with `> <@user> quoted` lines and a blank line.
fn strip_reply_fallback(body: &str) -> &str {
    if !body.starts_with("> <") {
        return body;
    }
    let mut rest = body;
    // A fallback may be all there is (an empty reply): its last line then has no `\n`.
    while rest.starts_with("> ") || rest.starts_with(">\n") || rest == ">" {
        rest = rest.find('\n').map_or("", |line_end| &rest[line_end + 1..]);
    }
    rest.strip_prefix('\n').unwrap_or(rest)
}

/// The four media message types share their field names but not their types.
macro_rules! media {
    ($c:expr, $is_reply:expr) => {
        media_message(
            &$c.body,
            $c.filename.as_deref(),
            $c.formatted.as_ref(),
            &$c.source,
            $c.info.as_ref().and_then(|i| i.mimetype.clone()),
            $c.info.as_ref().and_then(|i| i.size).map(u64::from),
            $is_reply,
        )
    };
}

/// The kind a message type maps to, and its media.
fn message_kind(msgtype: &MessageType, is_reply: bool) -> Option<(Kind, Option<Media>)> {
    let message = |body: RichText| Kind::Message {
        body,
        attachments: Vec::new(),
    };
    Some(match msgtype {
        MessageType::Text(text) => (
            message(rich_text(&text.body, text.formatted.as_ref(), is_reply)),
            None,
        ),
        MessageType::Emote(emote) => (
            Kind::Action {
                body: rich_text(&emote.body, emote.formatted.as_ref(), is_reply),
            },
            None,
        ),
        MessageType::Notice(notice) => (
            Kind::Notice {
                body: rich_text(&notice.body, notice.formatted.as_ref(), is_reply),
            },
            None,
        ),
        MessageType::Image(c) => media!(c, is_reply),
        MessageType::File(c) => media!(c, is_reply),
        MessageType::Video(c) => media!(c, is_reply),
        MessageType::Audio(c) => media!(c, is_reply),
        MessageType::Location(location) => {
            (message(rich_text(&location.body, None, is_reply)), None)
        }
        other => {
            let body = other.body();
            let body = if is_reply {
                strip_reply_fallback(body)
            } else {
                body
            };
            if body.trim().is_empty() {
                return None;
            }
            (message(RichText::plain(body)), None)
        }
    })
}

/// A media message: the body is a caption when a separate filename is given, else the
/// filename itself.
fn media_message(
    body: &str,
    filename: Option<&str>,
    formatted: Option<&FormattedBody>,
    source: &MediaSource,
    mime: Option<String>,
    size: Option<u64>,
    is_reply: bool,
) -> (Kind, Option<Media>) {
    let (name, caption) = match filename {
        Some(name) if name != body => (name.to_owned(), rich_text(body, formatted, is_reply)),
        _ => (body.to_owned(), RichText::default()),
    };
    let media = Media {
        source: source.clone(),
        name: sanitize_file_name(&name),
        mime,
        size,
    };
    let body = if caption.blocks.is_empty() {
        RichText::default()
    } else {
        caption
    };
    (
        Kind::Message {
            body,
            attachments: Vec::new(),
        },
        Some(media),
    )
}

/// The file name to upload an attachment under: its own name, else the last part of its URL
/// (without a query), made safe; `file` when neither gives one.
pub(crate) fn attachment_file_name(attachment: &patchbay_sdk::Attachment) -> String {
    attachment
        .name
        .clone()
        .or_else(|| {
            attachment
                .url
                .rsplit('/')
                .next()
                .map(|s| s.split('?').next().unwrap_or(s).to_owned())
        })
        .map(|n| sanitize_file_name(&n))
        .unwrap_or_else(|| "file".into())
}

/// A file name safe to put in a URL path segment and a Content-Disposition header.
pub fn sanitize_file_name(name: &str) -> String {
    let cleaned: String = name
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or(name)
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    let cleaned = cleaned.trim_start_matches('.').to_owned();
    if cleaned.is_empty() {
        "file".to_owned()
    } else {
        cleaned
    }
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
