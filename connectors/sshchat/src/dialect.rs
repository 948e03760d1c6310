//! Which server software is on the other end, and the name limits it enforces. Pure.
//!
//! Its own module because both the config (checking `nick`) and the parsers (recognising
//! names on the screen) need it, and neither should import the other for it.

use serde::Deserialize;

/// Which server software is on the other end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum Dialect {
    #[serde(rename = "devzat")]
    Devzat,
    #[serde(rename = "ssh-chat")]
    SshChat,
}

/// Devzat's longest user name.
pub const DEVZAT_NAME_MAX: usize = 27;
/// ssh-chat's longest user name.
pub const SSH_CHAT_NAME_MAX: usize = 16;
