//! IRC line → event (pure).
//!
//! Bytes from the network are decoded (UTF-8, else the configured fallback charset), parsed with
//! the `irc` crate's protocol types, and reduced to the few [`IrcEvent`]s a bridge cares about,
//! with the IRCv3 tags it uses. Anything malformed is an error value for the caller to log and
//! skip: nothing here panics, whatever the bytes (see the proptest below).

use irc::proto::{Command, Message, Prefix};
use patchbay_sdk::{Author, Inbound, Kind, MessageRef, RichText, Timestamp};

use crate::config::Formatting;
use crate::mirc;

/// Why a line was skipped.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("empty line")]
    Empty,
    #[error("malformed line: {0}")]
    Malformed(String),
}

/// The IRCv3 tags the bridge reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MsgTags {
    /// `time` (server-time).
    pub time: Option<Timestamp>,
    /// `msgid`.
    pub msgid: Option<String>,
    /// `account` (account-tag).
    pub account: Option<String>,
    /// `batch`: the reference of the batch the message belongs to.
    pub batch: Option<String>,
    /// `+draft/reply` / `+reply`: the msgid this message answers.
    pub reply_to: Option<String>,
    /// `bot`: sent by a bot.
    pub bot: bool,
    /// `label` (labeled-response): the label of our command this line answers.
    pub label: Option<String>,
    /// `draft/chathistory-end` on a `BATCH` start: the last page of a history pagination.
    pub history_end: bool,
}

/// Who sent a line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub nick: String,
    pub user: Option<String>,
    pub host: Option<String>,
    /// A server rather than a user.
    pub is_server: bool,
}

/// What a line means for the bridge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IrcEvent {
    Privmsg {
        target: String,
        text: String,
    },
    Action {
        target: String,
        text: String,
    },
    /// A CTCP request other than ACTION (VERSION, PING, ...).
    Ctcp {
        target: String,
        command: String,
    },
    Notice {
        target: String,
        text: String,
    },
    Join {
        channel: String,
        account: Option<String>,
    },
    Part {
        channel: String,
        reason: Option<String>,
    },
    Quit {
        reason: Option<String>,
    },
    Kick {
        channel: String,
        nick: String,
        reason: Option<String>,
    },
    Topic {
        channel: String,
        topic: String,
    },
    Nick {
        new: String,
    },
}

/// A parsed line.
#[derive(Clone, Debug, PartialEq)]
pub struct Parsed {
    pub message: Message,
    pub tags: MsgTags,
    pub source: Option<Source>,
    /// The bridge-relevant meaning, if any; protocol traffic (PING, CAP, numerics) has none.
    pub event: Option<IrcEvent>,
}

/// Decode one line's bytes: UTF-8 when valid, else `fallback` (latin-1 by default).
pub fn decode(raw: &[u8], fallback: &'static encoding_rs::Encoding) -> String {
    match std::str::from_utf8(raw) {
        Ok(s) => s.to_owned(),
        Err(_) => fallback.decode_without_bom_handling(raw).0.into_owned(),
    }
}

fn read_tags(message: &Message) -> MsgTags {
    let mut tags = MsgTags::default();
    for tag in message.tags.iter().flatten() {
        let value = tag.1.clone().filter(|v| !v.is_empty());
        match tag.0.as_str() {
            "time" => tags.time = value.as_deref().and_then(crate::time::parse_server_time),
            "msgid" => tags.msgid = value,
            "account" => tags.account = value,
            "batch" => tags.batch = value,
            "+draft/reply" | "+reply" => tags.reply_to = value,
            "bot" | "draft/bot" => tags.bot = true,
            "label" => tags.label = value,
            "draft/chathistory-end" | "chathistory-end" => tags.history_end = true,
            _ => {}
        }
    }
    tags
}

fn source_of(message: &Message) -> Option<Source> {
    match message.prefix.as_ref()? {
        Prefix::ServerName(name) => Some(Source {
            nick: name.clone(),
            user: None,
            host: None,
            is_server: true,
        }),
        Prefix::Nickname(nick, user, host) => Some(Source {
            nick: nick.clone(),
            user: Some(user.clone()).filter(|u| !u.is_empty()),
            host: Some(host.clone()).filter(|h| !h.is_empty()),
            is_server: false,
        }),
    }
}

fn opt(s: &Option<String>) -> Option<String> {
    s.clone().filter(|s| !s.is_empty())
}

fn event_of(message: &Message) -> Option<IrcEvent> {
    let event = match &message.command {
        Command::PRIVMSG(target, text) => {
            if let Some(inner) = text.strip_prefix('\x01') {
                let inner = inner.strip_suffix('\x01').unwrap_or(inner);
                let (command, args) = inner.split_once(' ').unwrap_or((inner, ""));
                if command.eq_ignore_ascii_case("ACTION") {
                    IrcEvent::Action {
                        target: target.clone(),
                        text: args.to_owned(),
                    }
                } else {
                    IrcEvent::Ctcp {
                        target: target.clone(),
                        command: command.to_ascii_uppercase(),
                    }
                }
            } else {
                IrcEvent::Privmsg {
                    target: target.clone(),
                    text: text.clone(),
                }
            }
        }
        Command::NOTICE(target, text) => IrcEvent::Notice {
            target: target.clone(),
            text: text.clone(),
        },
        // extended-join: JOIN #chan account :realname; account `*` means logged out.
        Command::JOIN(channel, account, _) => IrcEvent::Join {
            channel: channel.clone(),
            account: opt(account).filter(|a| a != "*"),
        },
        Command::PART(channel, reason) => IrcEvent::Part {
            channel: channel.clone(),
            reason: opt(reason),
        },
        Command::QUIT(reason) => IrcEvent::Quit {
            reason: opt(reason),
        },
        Command::KICK(channel, nick, reason) => IrcEvent::Kick {
            channel: channel.clone(),
            nick: nick.clone(),
            reason: opt(reason),
        },
        Command::TOPIC(channel, Some(topic)) => IrcEvent::Topic {
            channel: channel.clone(),
            topic: topic.clone(),
        },
        Command::NICK(new) => IrcEvent::Nick { new: new.clone() },
        _ => return None,
    };
    Some(event)
}

/// Parse one line (without or with its CRLF).
pub fn parse_line(
    raw: &[u8],
    fallback: &'static encoding_rs::Encoding,
) -> Result<Parsed, ParseError> {
    let text = decode(raw, fallback);
    let text = text.trim_end_matches(['\r', '\n']);
    if text.trim().is_empty() {
        return Err(ParseError::Empty);
    }
    if text.contains(['\0', '\r', '\n']) {
        return Err(ParseError::Malformed(text.escape_debug().to_string()));
    }
    let message: Message = text
        .parse()
        .map_err(|e: irc::proto::error::ProtocolError| ParseError::Malformed(e.to_string()))?;
    if command_params(&message).0.is_empty() {
        return Err(ParseError::Malformed(format!(
            "no command in {}",
            text.escape_debug()
        )));
    }
    let tags = read_tags(&message);
    let source = source_of(&message);
    let event = event_of(&message);
    // Events from users need a user as source; a bare server prefix cannot join or speak.
    let event = match (&event, &source) {
        (Some(IrcEvent::Notice { .. }), _) => event,
        (Some(_), Some(s)) if !s.is_server || !s.nick.contains('.') => event,
        _ => None,
    };
    Ok(Parsed {
        message,
        tags,
        source,
        event,
    })
}

/// Build the [`Inbound`] for an event seen in `room` (the channel as routes name it), or `None`
/// when the event carries nothing to relay (a CTCP request, an empty text).
pub fn to_inbound(
    room: &str,
    event: &IrcEvent,
    source: &Source,
    tags: &MsgTags,
    formatting: Formatting,
) -> Option<Inbound> {
    let body = |text: &str| match formatting {
        Formatting::Keep => mirc::parse(text),
        Formatting::Strip => RichText::plain(mirc::strip(text)),
    };
    let kind = match event {
        IrcEvent::Privmsg { text, .. } => Kind::Message {
            body: body(text),
            attachments: Vec::new(),
        },
        IrcEvent::Action { text, .. } => Kind::Action { body: body(text) },
        IrcEvent::Notice { text, .. } => Kind::Notice { body: body(text) },
        IrcEvent::Ctcp { .. } => return None,
        IrcEvent::Join { .. } => Kind::Join,
        IrcEvent::Part { reason, .. } => Kind::Part {
            reason: reason.clone(),
        },
        IrcEvent::Quit { reason } => Kind::Part {
            reason: Some(match reason {
                Some(r) => format!("quit: {r}"),
                None => "quit".to_owned(),
            }),
        },
        IrcEvent::Kick { reason, .. } => Kind::Part {
            reason: Some(match reason {
                Some(r) => format!("kicked by {}: {r}", source.nick),
                None => format!("kicked by {}", source.nick),
            }),
        },
        IrcEvent::Topic { topic, .. } => Kind::Topic {
            topic: mirc::strip(topic),
        },
        IrcEvent::Nick { new } => Kind::Nick {
            old: source.nick.clone(),
            new: new.clone(),
        },
    };
    if kind.body().is_some_and(RichText::is_empty) {
        return None;
    }
    // A kick is about the kicked user, not the operator who kicked.
    let name = match event {
        IrcEvent::Kick { nick, .. } => nick.clone(),
        _ => source.nick.clone(),
    };
    let account = match event {
        IrcEvent::Join {
            account: Some(a), ..
        } => Some(a.clone()),
        IrcEvent::Kick { .. } => None,
        _ => tags.account.clone(),
    };
    Some(Inbound {
        room: room.to_owned(),
        remote_id: tags.msgid.clone(),
        author: Author {
            id: account.unwrap_or_else(|| name.clone()),
            name,
            avatar: None,
            is_bot: tags.bot,
            is_system: false,
        },
        time: tags.time.unwrap_or_else(Timestamp::now),
        reply_to: tags.reply_to.clone().map(MessageRef::Native),
        hops: Vec::new(),
        is_echo: false,
        kind,
    })
}

/// A message's command and parameters as strings (numerics as three digits), for the
/// protocol handling that needs no typed form.
pub fn command_params(message: &Message) -> (String, Vec<String>) {
    let line = String::from(&message.command);
    let (head, trailing) = match line.split_once(" :") {
        Some((head, trailing)) => (head, Some(trailing)),
        None => (line.as_str(), None),
    };
    let mut words = head.split(' ').filter(|w| !w.is_empty());
    let command = words.next().unwrap_or("").to_ascii_uppercase();
    let mut params: Vec<String> = words.map(str::to_owned).collect();
    if let Some(t) = trailing {
        params.push(t.to_owned());
    }
    (command, params)
}

/// IRC's case-insensitive form of a nick or channel (rfc1459 casemapping).
pub fn fold_case(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '[' => '{',
            ']' => '}',
            '\\' => '|',
            '~' => '^',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn latin1() -> &'static encoding_rs::Encoding {
        encoding_rs::WINDOWS_1252
    }

    #[test]
    fn privmsg_with_tags() {
        let p = parse_line(
            b"@time=2024-03-01T12:34:56.789Z;msgid=abc;account=al :alice!a@h PRIVMSG #c :hi \x02there\x02\r\n",
            latin1(),
        )
        .expect("parses");
        assert_eq!(p.tags.msgid.as_deref(), Some("abc"));
        assert_eq!(p.tags.time, Some(Timestamp(1_709_296_496_789)));
        let source = p.source.expect("source");
        assert_eq!(source.nick, "alice");
        let event = p.event.expect("event");
        let inbound =
            to_inbound("#c", &event, &source, &p.tags, Formatting::Keep).expect("inbound");
        assert_eq!(inbound.author.id, "al");
        assert_eq!(inbound.author.name, "alice");
        assert_eq!(inbound.remote_id.as_deref(), Some("abc"));
        let body = inbound.kind.body().expect("body");
        assert_eq!(body.to_plain(), "hi there");
        assert!(body.spans()[1].style.bold);
        let stripped = to_inbound("#c", &event, &source, &p.tags, Formatting::Strip).expect("in");
        assert_eq!(stripped.kind.body().expect("b").spans().len(), 1);
    }

    #[test]
    fn action_ctcp_and_notice() {
        let p = parse_line(b":bob!b@h PRIVMSG #c :\x01ACTION waves\x01", latin1()).expect("ok");
        assert_eq!(
            p.event,
            Some(IrcEvent::Action {
                target: "#c".into(),
                text: "waves".into()
            })
        );
        let p = parse_line(b":bob!b@h PRIVMSG pb :\x01VERSION\x01", latin1()).expect("ok");
        assert!(
            matches!(p.event, Some(IrcEvent::Ctcp { ref command, .. }) if command == "VERSION")
        );
        let p = parse_line(b":bob!b@h NOTICE #c :note", latin1()).expect("ok");
        assert!(matches!(p.event, Some(IrcEvent::Notice { .. })));
    }

    #[test]
    fn membership_events() {
        let ev = |line: &[u8]| {
            parse_line(line, latin1())
                .expect("ok")
                .event
                .expect("event")
        };
        assert_eq!(
            ev(b":bob!b@h JOIN #c"),
            IrcEvent::Join {
                channel: "#c".into(),
                account: None
            }
        );
        assert_eq!(
            ev(b":bob!b@h JOIN #c bobacct :Bob"),
            IrcEvent::Join {
                channel: "#c".into(),
                account: Some("bobacct".into())
            }
        );
        assert!(
            matches!(ev(b":bob!b@h PART #c :bye"), IrcEvent::Part { reason: Some(r), .. } if r == "bye")
        );
        assert!(matches!(
            ev(b":bob!b@h QUIT :Ping timeout"),
            IrcEvent::Quit { .. }
        ));
        assert!(
            matches!(ev(b":op!o@h KICK #c bob :spam"), IrcEvent::Kick { ref nick, .. } if nick == "bob")
        );
        assert!(matches!(
            ev(b":op!o@h TOPIC #c :new topic"),
            IrcEvent::Topic { .. }
        ));
        assert!(
            matches!(ev(b":bob!b@h NICK robert"), IrcEvent::Nick { ref new } if new == "robert")
        );
    }

    #[test]
    fn kick_is_about_the_kicked_user() {
        let p = parse_line(b":op!o@h KICK #c bob :spam", latin1()).expect("ok");
        let inbound = to_inbound(
            "#c",
            p.event.as_ref().expect("e"),
            p.source.as_ref().expect("s"),
            &p.tags,
            Formatting::Keep,
        )
        .expect("inbound");
        assert_eq!(inbound.author.name, "bob");
        assert_eq!(
            inbound.kind,
            Kind::Part {
                reason: Some("kicked by op: spam".into())
            }
        );
    }

    #[test]
    fn latin1_fallback_and_bad_lines() {
        let p = parse_line(b":bob!b@h PRIVMSG #c :caf\xe9", latin1()).expect("ok");
        assert_eq!(
            p.event,
            Some(IrcEvent::Privmsg {
                target: "#c".into(),
                text: "café".into()
            })
        );
        let cp1251 = encoding_rs::Encoding::for_label(b"cp1251").expect("label");
        let p = parse_line(b":bob!b@h PRIVMSG #c :\xcf\xf0\xe8\xe2\xe5\xf2", cp1251).expect("ok");
        assert!(matches!(p.event, Some(IrcEvent::Privmsg { ref text, .. }) if text == "Привет"));
        assert_eq!(parse_line(b"\r\n", latin1()), Err(ParseError::Empty));
        assert!(parse_line(b":only-a-prefix", latin1()).is_err());
    }

    #[test]
    fn command_params_of_protocol_lines() {
        let params =
            |line: &[u8]| command_params(&parse_line(line, latin1()).expect("parses").message);
        assert_eq!(
            params(b":srv CAP * LS * :sasl server-time"),
            (
                "CAP".into(),
                vec![
                    "*".into(),
                    "LS".into(),
                    "*".into(),
                    "sasl server-time".into()
                ]
            )
        );
        assert_eq!(
            params(b":srv 433 * pb :Nickname is already in use"),
            (
                "433".into(),
                vec!["*".into(), "pb".into(), "Nickname is already in use".into()]
            )
        );
        assert_eq!(
            params(b"AUTHENTICATE +"),
            ("AUTHENTICATE".into(), vec!["+".into()])
        );
        let (cmd, p) = params(b":srv BATCH +x1 chathistory #c");
        assert_eq!(cmd, "BATCH");
        assert_eq!(p[0], "+x1");
        assert!(p[1].eq_ignore_ascii_case("chathistory"));
    }

    #[test]
    fn fold_case_is_rfc1459() {
        assert_eq!(fold_case("#Rust[x]"), "#rust{x}");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(p) = parse_line(&bytes, latin1())
                && let (Some(event), Some(source)) = (&p.event, &p.source)
            {
                let _ = to_inbound("#c", event, source, &p.tags, Formatting::Keep);
            }
        }

        #[test]
        fn irc_shaped_lines_never_panic(
            tags in "(@[a-z+/=;\\\\ .:-]{0,40} )?",
            prefix in "(:[a-zA-Z0-9!@.\\[\\]-]{0,20} )?",
            command in "(PRIVMSG|NOTICE|JOIN|PART|QUIT|KICK|TOPIC|NICK|PING|CAP|001|433|BATCH|[A-Z]{1,6})",
            args in "( [#a-z:\x01\x02\x03 0-9,]{0,30}){0,4}",
        ) {
            let line = format!("{tags}{prefix}{command}{args}");
            if let Ok(p) = parse_line(line.as_bytes(), latin1())
                && let (Some(event), Some(source)) = (&p.event, &p.source)
            {
                let _ = to_inbound("#c", event, source, &p.tags, Formatting::Keep);
            }
        }
    }
}
