//! The API's JSON shapes (documented in docs/api.openapi.yaml) and the translation of what a
//! client sends into an [`Inbound`] event (pure).

use std::str::FromStr;

use patchbay_sdk::text::markdown::from_markdown;
use patchbay_sdk::{
    Attachment, Author, Event, EventId, Inbound, Kind, MessageRef, RichText, Timestamp,
};
use serde::{Deserialize, Serialize};

/// One line of a room's log: an event delivered to the room, or one a client sent from it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The log's own position: increasing, the cursor for `after`.
    pub id: i64,
    pub room: String,
    pub direction: Direction,
    /// The author's name as the route formats it (the sender's name for `sent`).
    pub nick: String,
    /// The route a delivery came along (empty for `sent`).
    #[serde(default)]
    pub route: String,
    /// The normalized event, with its gateway id.
    pub event: Event,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Relayed to this room from elsewhere in a route.
    Delivered,
    /// Sent into the route by an API client.
    Sent,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Delivered => "delivered",
            Direction::Sent => "sent",
        }
    }
}

/// What a client sends: `POST /api/NAME/ROOM/messages`, or `{"op": "send", "room": ...}` on
/// the stream.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Send {
    /// The room, on the stream (the path names it for POST).
    #[serde(default)]
    pub room: Option<String>,
    /// A client-chosen reference echoed in the stream's ack.
    #[serde(default, rename = "ref")]
    pub reference: Option<String>,
    /// Who speaks.
    pub username: Option<String>,
    #[serde(default)]
    pub avatar: Option<String>,
    /// The kind: message (default), action, notice, edit, delete, reaction.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// Markdown text, for message, action, notice and edit.
    #[serde(default)]
    pub text: Option<String>,
    /// The event an edit, delete or reaction is about: a gateway event id.
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default)]
    pub emoji: Option<String>,
    /// The event this one replies to: a gateway event id.
    #[serde(default)]
    pub reply_to: Option<String>,
    /// Files that go with a message, by URL.
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    /// An idempotency key: a second send with the same id is not relayed again.
    #[serde(default)]
    pub id: Option<String>,
}

/// Markdown, unless it renders to nothing (`#`, `>`): then the text as typed, so that
/// what the client said is what the route shows, never an empty line. Found by the property
/// tests (`proptest-regressions/wire_props.txt`).
fn markdown_or_plain(text: &str) -> RichText {
    let rich = from_markdown(text);
    if rich.is_empty() {
        RichText::plain(text.trim())
    } else {
        rich
    }
}

fn event_id(value: &str, field: &str) -> Result<EventId, String> {
    EventId::from_str(value.trim())
        .map_err(|_| format!("`{field}` must be a gateway event id (26 characters, ULID)"))
}

impl Send {
    /// The event this send becomes in `room`.
    pub fn into_inbound(self, room: &str) -> Result<Inbound, String> {
        let username = self
            .username
            .filter(|u| !u.trim().is_empty())
            .ok_or("`username` is required: who is speaking?")?;
        let kind_name = self.kind.as_deref().unwrap_or("message");
        let text = || -> Result<RichText, String> {
            let text = self.text.as_deref().unwrap_or_default();
            if text.trim().is_empty() {
                return Err(format!("`text` is required for a {kind_name}"));
            }
            Ok(markdown_or_plain(text))
        };
        let target = || -> Result<MessageRef, String> {
            let target = self
                .target
                .as_deref()
                .ok_or(format!("`target` is required for a {kind_name}"))?;
            event_id(target, "target").map(MessageRef::Gateway)
        };
        if !self.attachments.is_empty() && kind_name != "message" {
            return Err(format!("a {kind_name} cannot carry `attachments`"));
        }
        if let Some(bad) = self
            .attachments
            .iter()
            .find(|a| !(a.url.starts_with("https://") || a.url.starts_with("http://")))
        {
            return Err(format!("attachment `{}` is not an http(s) URL", bad.url));
        }
        let kind = match kind_name {
            "message" if !self.attachments.is_empty() => Kind::Message {
                body: match self.text.as_deref() {
                    Some(text) => markdown_or_plain(text),
                    None => RichText::default(),
                },
                attachments: self.attachments.clone(),
            },
            "message" => Kind::Message {
                body: text()?,
                attachments: Vec::new(),
            },
            "action" => Kind::Action { body: text()? },
            "notice" => Kind::Notice { body: text()? },
            "edit" => Kind::Edit {
                target: target()?,
                body: text()?,
            },
            "delete" => Kind::Delete { target: target()? },
            "reaction" => Kind::Reaction {
                target: target()?,
                emoji: self
                    .emoji
                    .clone()
                    .filter(|e| !e.is_empty())
                    .ok_or("`emoji` is required for a reaction")?,
            },
            other => {
                return Err(format!(
                    "`type` {other:?} is not one of message, action, notice, edit, delete, reaction"
                ));
            }
        };
        let reply_to = match &self.reply_to {
            Some(id) => Some(MessageRef::Gateway(event_id(id, "reply_to")?)),
            None => None,
        };
        Ok(Inbound {
            room: room.to_owned(),
            remote_id: self.id,
            author: Author {
                id: username.clone(),
                name: username,
                avatar: self.avatar,
                is_bot: false,
                is_system: false,
            },
            time: Timestamp::now(),
            reply_to,
            hops: Vec::new(),
            is_echo: false,
            kind,
        })
    }
}

/// What a client sends on the stream.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ClientFrame {
    Send(Box<Send>),
    /// An application-level ping for clients that cannot send WebSocket pings.
    Ping,
}

/// What the stream sends.
#[derive(Debug, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    Entry(&'a Entry),
    /// A send was relayed; `id` is its log entry, `event_id` its gateway id.
    Ack {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        id: Option<i64>,
        event_id: Option<String>,
        duplicate: bool,
    },
    Error {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        error: String,
    },
    Pong,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_become_events_and_bad_ones_say_why() {
        let send: Send =
            serde_json::from_str(r#"{"username": "bob", "text": "hi **there**"}"#).expect("parse");
        let inbound = send.into_inbound("lobby").expect("valid");
        assert_eq!(inbound.author.name, "bob");
        assert_eq!(
            inbound.kind.body().map(RichText::to_plain).as_deref(),
            Some("hi there")
        );
        let id = EventId::new();
        let edit: Send = serde_json::from_value(serde_json::json!({
            "username": "bob", "type": "edit", "text": "fixed", "target": id.to_string()
        }))
        .expect("parse");
        assert_eq!(
            edit.into_inbound("lobby").expect("valid").kind.target(),
            Some(&MessageRef::Gateway(id))
        );
        let file: Send = serde_json::from_value(serde_json::json!({
            "username": "bob", "attachments": [{"url": "https://f/a.png", "mime": "image/png"}]
        }))
        .expect("parse");
        match file.into_inbound("lobby").expect("valid").kind {
            Kind::Message { body, attachments } => {
                assert!(body.is_empty());
                assert_eq!(attachments[0].url, "https://f/a.png");
            }
            other => panic!("{other:?}"),
        }
        // Markdown that renders to nothing is sent as typed (a property-test find).
        let hash: Send =
            serde_json::from_str(r##"{"username": "A", "text": "#"}"##).expect("parse");
        assert_eq!(
            hash.into_inbound("r")
                .expect("valid")
                .kind
                .body()
                .map(RichText::to_plain)
                .as_deref(),
            Some("#")
        );
        let cases = [
            (
                r#"{"username": "b", "attachments": [{"url": "file:///etc/passwd"}]}"#,
                "attachment `file:///etc/passwd` is not an http(s) URL",
            ),
            (
                r#"{"text": "x"}"#,
                "`username` is required: who is speaking?",
            ),
            (r#"{"username": "b"}"#, "`text` is required for a message"),
            (
                r#"{"username": "b", "type": "delete", "target": "nope"}"#,
                "`target` must be a gateway event id (26 characters, ULID)",
            ),
            (
                r#"{"username": "b", "type": "shout", "text": "x"}"#,
                "`type` \"shout\" is not one of message, action, notice, edit, delete, reaction",
            ),
        ];
        for (json, want) in cases {
            let send: Send = serde_json::from_str(json).expect("parse");
            assert_eq!(send.into_inbound("r").expect_err(json), want);
        }
    }
}

#[cfg(test)]
#[path = "wire_props.rs"]
mod props;
