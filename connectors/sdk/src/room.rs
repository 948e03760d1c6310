//! Addressing: which room of which account, and the parts of an account's name.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A room as routes name it: `ACCOUNT/ROOM`, split at the first `/` (`irc.libera/#rust`).
///
/// The gateway keys its outbox lanes, the message-id map and its metrics by it; a connector
/// sees only the `room` part of its own rooms.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RoomKey {
    /// The account, `PROTOCOL.NAME`.
    pub account: String,
    /// The room within the account, as the account's protocol spells it.
    pub room: String,
}

impl RoomKey {
    pub fn new(account: impl Into<String>, room: impl Into<String>) -> Self {
        RoomKey {
            account: account.into(),
            room: room.into(),
        }
    }

    /// Split `ACCOUNT/ROOM` at the first `/`.
    pub fn parse(text: &str) -> Option<Self> {
        let (account, room) = text.split_once('/')?;
        if account.is_empty() || room.is_empty() {
            return None;
        }
        Some(RoomKey::new(account, room))
    }

    /// The protocol part of the account (`irc` of `irc.libera`).
    pub fn protocol(&self) -> &str {
        protocol_of(&self.account)
    }
}

impl fmt::Display for RoomKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.account, self.room)
    }
}

/// The protocol part of an account name (`irc` of `irc.libera`).
pub fn protocol_of(account: &str) -> &str {
    account.split('.').next().unwrap_or(account)
}

/// The name part of an account name (`libera` of `irc.libera`), as the account's own paths
/// spell it (`/hooks/NAME/ROOM`); the whole of a name without a protocol.
pub fn name_of(account: &str) -> &str {
    account.split_once('.').map_or(account, |(_, name)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_room_key_splits_at_the_first_slash() {
        let key = RoomKey::parse("matrix.home/#a/b:example.org").expect("parse");
        assert_eq!(key.account, "matrix.home");
        assert_eq!(key.room, "#a/b:example.org");
        assert_eq!(key.protocol(), "matrix");
        assert_eq!(key.to_string(), "matrix.home/#a/b:example.org");
        assert_eq!(RoomKey::parse("/x"), None);
        assert_eq!(RoomKey::parse("irc.a/"), None);
    }

    #[test]
    fn an_account_splits_into_protocol_and_name_at_the_first_dot() {
        assert_eq!(protocol_of("webhook.ci.eu"), "webhook");
        assert_eq!(name_of("webhook.ci.eu"), "ci.eu");
        assert_eq!(name_of("console"), "console");
    }
}
