//! The numeric replies the connector acts on, by name. Pure.
//!
//! A server answers with three-digit codes; matching on the digits scatters their meaning over
//! comments. Each code the connector reacts to has a variant here named as the RFCs and the
//! IRCv3 specs name it (without the `RPL_`/`ERR_` prefix), and [`Numeric::of`] reads one off
//! a line's command. Codes not listed are not acted on.

/// A numeric reply the connector reacts to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Numeric {
    /// 001 `RPL_WELCOME`: registration is complete; its first parameter is our nick.
    Welcome,
    /// 005 `RPL_ISUPPORT`: what the server supports (case mapping, prefixes, lengths).
    ISupport,
    /// 353 `RPL_NAMREPLY`: who is in a channel.
    NamReply,
    /// 396 `RPL_HOSTHIDDEN`: our displayed host changed.
    HostHidden,
    /// 401 `ERR_NOSUCHNICK`.
    NoSuchNick,
    /// 403 `ERR_NOSUCHCHANNEL`.
    NoSuchChannel,
    /// 404 `ERR_CANNOTSENDTOCHAN`: moderated, colours refused, or not joined.
    CannotSendToChan,
    /// 432 `ERR_ERRONEUSNICKNAME`.
    ErroneousNickname,
    /// 433 `ERR_NICKNAMEINUSE`.
    NicknameInUse,
    /// 436 `ERR_NICKCOLLISION`.
    NickCollision,
    /// 437 `ERR_UNAVAILRESOURCE`: the nick is held for now.
    UnavailResource,
    /// 464 `ERR_PASSWDMISMATCH`: the connection password was refused.
    PasswdMismatch,
    /// 471 `ERR_CHANNELISFULL`.
    ChannelIsFull,
    /// 473 `ERR_INVITEONLYCHAN`.
    InviteOnlyChan,
    /// 474 `ERR_BANNEDFROMCHAN`.
    BannedFromChan,
    /// 475 `ERR_BADCHANNELKEY`.
    BadChannelKey,
    /// 477 `ERR_NEEDREGGEDNICK`: the channel wants a registered account.
    NeedReggedNick,
    /// 900 `RPL_LOGGEDIN`: comes before [`Numeric::SaslSuccess`].
    LoggedIn,
    /// 902 `ERR_NICKLOCKED`: the account is locked.
    NickLocked,
    /// 903 `RPL_SASLSUCCESS`.
    SaslSuccess,
    /// 904 `ERR_SASLFAIL`.
    SaslFail,
    /// 905 `ERR_SASLTOOLONG`.
    SaslTooLong,
    /// 906 `ERR_SASLABORTED`.
    SaslAborted,
    /// 907 `ERR_SASLALREADY`: authenticated already.
    SaslAlready,
    /// 908 `RPL_SASLMECHS`: the mechanisms on offer.
    SaslMechs,
}

/// Each variant and its code, in one table so that the two directions cannot disagree.
const CODES: [(Numeric, &str); 25] = [
    (Numeric::Welcome, "001"),
    (Numeric::ISupport, "005"),
    (Numeric::NamReply, "353"),
    (Numeric::HostHidden, "396"),
    (Numeric::NoSuchNick, "401"),
    (Numeric::NoSuchChannel, "403"),
    (Numeric::CannotSendToChan, "404"),
    (Numeric::ErroneousNickname, "432"),
    (Numeric::NicknameInUse, "433"),
    (Numeric::NickCollision, "436"),
    (Numeric::UnavailResource, "437"),
    (Numeric::PasswdMismatch, "464"),
    (Numeric::ChannelIsFull, "471"),
    (Numeric::InviteOnlyChan, "473"),
    (Numeric::BannedFromChan, "474"),
    (Numeric::BadChannelKey, "475"),
    (Numeric::NeedReggedNick, "477"),
    (Numeric::LoggedIn, "900"),
    (Numeric::NickLocked, "902"),
    (Numeric::SaslSuccess, "903"),
    (Numeric::SaslFail, "904"),
    (Numeric::SaslTooLong, "905"),
    (Numeric::SaslAborted, "906"),
    (Numeric::SaslAlready, "907"),
    (Numeric::SaslMechs, "908"),
];

impl Numeric {
    /// The numeric a line's command is, if the connector acts on it.
    pub fn of(command: &str) -> Option<Numeric> {
        CODES
            .iter()
            .find(|(_, code)| *code == command)
            .map(|(numeric, _)| *numeric)
    }

    /// Its three digits, as the server sends them.
    pub fn code(self) -> &'static str {
        CODES
            .iter()
            .find(|(numeric, _)| *numeric == self)
            .map_or("000", |(_, code)| code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_code_reads_back_as_its_numeric() {
        for (numeric, code) in CODES {
            assert_eq!(Numeric::of(code), Some(numeric));
            assert_eq!(numeric.code(), code);
        }
        assert_eq!(Numeric::of("PRIVMSG"), None);
        assert_eq!(Numeric::of("999"), None);
    }
}
