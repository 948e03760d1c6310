//! The normalized event: one envelope, one enum of kinds.
//!
//! Every protocol's traffic is reduced to an [`Event`] before it meets routing, and every
//! destination renders an [`Event`] in its own dialect. References to other messages (the target
//! of an edit, the message a reply answers) are [`MessageRef`]s: a connector names them by its
//! network's own id, the gateway resolves them to gateway ids through its message-id map, and on
//! delivery translates them back into the destination network's ids.

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::sync::lock;
use crate::text::RichText;

/// The gateway-assigned id of an event: a ULID, so ids sort by creation time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(pub ulid::Ulid);

impl EventId {
    /// A fresh id, later than every id made before it in this process.
    pub fn new() -> Self {
        static GENERATOR: Mutex<Option<ulid::Generator>> = Mutex::new(None);
        let mut guard = lock(&GENERATOR);
        let generator = guard.get_or_insert_with(ulid::Generator::new);
        // The generator only fails when 2^80 ids were made in one millisecond.
        EventId(generator.generate().unwrap_or_else(|_| ulid::Ulid::new()))
    }
}

impl Default for EventId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for EventId {
    type Err = ulid::DecodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ulid::Ulid::from_string(s).map(EventId)
    }
}

/// Milliseconds since the Unix epoch, UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn now() -> Self {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Timestamp(ms)
    }
}

/// A reference to another message.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageRef {
    /// An id in the network of whoever holds the event: the source network's id in what a
    /// connector emits, the destination network's id in what a connector is asked to deliver.
    Native(String),
    /// A gateway id, for a message the holder's network has no id for (never delivered there,
    /// or its mapping was pruned).
    Gateway(EventId),
}

/// Where an event came from.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Origin {
    /// The account (`PROTOCOL.NAME`, e.g. `irc.libera`) that saw the event.
    pub account: String,
    /// The room within that account, as the route config names it (e.g. `#rust`).
    pub room: String,
    /// The protocol's own id for the message, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_id: Option<String>,
}

impl Origin {
    /// The room as routes name it: `ACCOUNT/ROOM`.
    pub fn room_key(&self) -> String {
        format!("{}/{}", self.account, self.room)
    }
}

/// Who wrote the event.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Author {
    /// Stable id on the source network (a Matrix user id, an IRC account or nick, a key hash).
    pub id: String,
    /// The name to show.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar: Option<String>,
    /// A bot or a service rather than a person.
    #[serde(default)]
    pub is_bot: bool,
    /// The network's own voice, not a user's: a server's bot (Devzat's `devbot`) or its
    /// bookkeeping. Routes relay such events only where their `kinds` name `system`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_system: bool,
}

impl Author {
    pub fn named(name: impl Into<String>) -> Self {
        let name = name.into();
        Author {
            id: name.clone(),
            name,
            avatar: None,
            is_bot: false,
            is_system: false,
        }
    }
}

/// One step an event took through a gateway: which instance relayed it along which route.
/// Routing never sends an event into a route its trace already holds.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Hop {
    /// The relaying gateway instance.
    pub gateway: String,
    /// The route it was relayed along.
    pub route: String,
}

/// A file that travels with a message.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Attachment {
    /// Where the file can be fetched.
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Kind {
    Message {
        body: RichText,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        attachments: Vec<Attachment>,
    },
    /// `/me does something`.
    Action {
        body: RichText,
    },
    /// A notice: meant to be read, never answered by bots.
    Notice {
        body: RichText,
    },
    Edit {
        target: MessageRef,
        body: RichText,
    },
    Delete {
        target: MessageRef,
    },
    Reaction {
        target: MessageRef,
        emoji: String,
    },
    Join,
    Part {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    Topic {
        topic: String,
    },
    Nick {
        old: String,
        new: String,
    },
}

impl Kind {
    /// The kind's name as config files spell it (`message`, `join`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Message { .. } => "message",
            Kind::Action { .. } => "action",
            Kind::Notice { .. } => "notice",
            Kind::Edit { .. } => "edit",
            Kind::Delete { .. } => "delete",
            Kind::Reaction { .. } => "reaction",
            Kind::Join => "join",
            Kind::Part { .. } => "part",
            Kind::Topic { .. } => "topic",
            Kind::Nick { .. } => "nick",
        }
    }

    /// Every kind name, for config validation.
    pub const NAMES: [&'static str; 10] = [
        "message", "action", "notice", "edit", "delete", "reaction", "join", "part", "topic",
        "nick",
    ];

    /// The text this kind carries, if any.
    pub fn body(&self) -> Option<&RichText> {
        match self {
            Kind::Message { body, .. }
            | Kind::Action { body }
            | Kind::Notice { body }
            | Kind::Edit { body, .. } => Some(body),
            _ => None,
        }
    }

    pub fn body_mut(&mut self) -> Option<&mut RichText> {
        match self {
            Kind::Message { body, .. }
            | Kind::Action { body }
            | Kind::Notice { body }
            | Kind::Edit { body, .. } => Some(body),
            _ => None,
        }
    }

    /// The messages this kind refers to.
    pub fn target_mut(&mut self) -> Option<&mut MessageRef> {
        match self {
            Kind::Edit { target, .. } | Kind::Delete { target } | Kind::Reaction { target, .. } => {
                Some(target)
            }
            _ => None,
        }
    }

    pub fn target(&self) -> Option<&MessageRef> {
        match self {
            Kind::Edit { target, .. } | Kind::Delete { target } | Kind::Reaction { target, .. } => {
                Some(target)
            }
            _ => None,
        }
    }
}

/// What a connector emits: an event as its network saw it, before the gateway gives it an id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inbound {
    /// The room within the emitting account.
    pub room: String,
    /// The network's id for the message, if it has one (used for edits, deletes, replies and
    /// echo detection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_id: Option<String>,
    pub author: Author,
    pub time: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<MessageRef>,
    /// Hops carried in by the network (a message another gateway relayed with its trace).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hops: Vec<Hop>,
    /// The connector recognised this as its own message coming back: the router drops it.
    #[serde(default)]
    pub is_echo: bool,
    pub kind: Kind,
}

impl Inbound {
    /// A plain message from `author` in `room`, timestamped now.
    pub fn message(room: impl Into<String>, author: Author, body: RichText) -> Self {
        Inbound {
            room: room.into(),
            remote_id: None,
            author,
            time: Timestamp::now(),
            reply_to: None,
            hops: Vec::new(),
            is_echo: false,
            kind: Kind::Message {
                body,
                attachments: Vec::new(),
            },
        }
    }
}

/// A normalized event, as the gateway records and routes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub id: EventId,
    pub origin: Origin,
    pub author: Author,
    pub time: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<MessageRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hops: Vec<Hop>,
    #[serde(flatten)]
    pub kind: Kind,
}

impl Event {
    /// Give an inbound event its gateway id and origin.
    pub fn from_inbound(account: &str, inbound: Inbound) -> Self {
        Event {
            id: EventId::new(),
            origin: Origin {
                account: account.to_owned(),
                room: inbound.room,
                remote_id: inbound.remote_id,
            },
            author: inbound.author,
            time: inbound.time,
            reply_to: inbound.reply_to,
            hops: inbound.hops,
            kind: inbound.kind,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_json_round_trips_with_a_flat_kind_tag() {
        let inbound = Inbound::message("#rust", Author::named("alice"), RichText::plain("hi"));
        let event = Event::from_inbound("irc.libera", inbound);
        let json = serde_json::to_value(&event).expect("serialize");
        assert_eq!(json["type"], "message");
        assert_eq!(json["origin"]["account"], "irc.libera");
        let back: Event = serde_json::from_value(json).expect("deserialize");
        assert_eq!(back, event);
    }

    #[test]
    fn event_ids_sort_by_creation() {
        let a = EventId::new();
        let b = EventId::new();
        assert!(a < b);
        assert_eq!(a.to_string().parse::<EventId>().expect("parse"), a);
    }
}
