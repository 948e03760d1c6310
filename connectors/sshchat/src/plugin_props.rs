//! Property tests of what the Devzat plugin API brings in: listener events (`room`, `from`,
//! `msg`, as prost decodes them) into gateway events, [`PluginMode::inbound`].
//!
//! The events are built the way Devzat sends them (a person's line with its Markdown, a system
//! line with an empty `from`: joins, leaves, moves; devbot; `cd` commands; lines another
//! patchbay relayed with their invisible hop trace) with hostile contents spliced in: names
//! with escape codes, empty, huge or with line breaks, rooms without `#`, broken or endless
//! escape sequences, stray trace delimiters, NUL and other control characters. What holds:
//! - nothing panics, whatever the event, and whatever bytes prost is handed;
//! - an event that comes out keeps its room, has an author whose name holds no escape or
//!   control character (an author with no visible name is skipped), and a message body that
//!   is not empty and holds no trace start (a stray trace end is an invisible character like
//!   any other, harmless);
//! - a system line becomes only a join or a leave, and never the bot's own;
//! - devbot's lines are notices from a system bot; `cd` lines are never relayed;
//! - a line we sent comes back as nothing, once.

use proptest::collection::vec;
use proptest::prelude::*;
use prost::Message as _;

use patchbay_sdk::{AccountInfo, Kind};

use super::PluginMode;
use crate::config::Config;
use crate::proto;

/// The account's own name on the server.
const ME: &str = "bridge";

fn mode() -> PluginMode {
    let account = AccountInfo {
        account: "sshchat.props".into(),
        config_dir: "/nonexistent".into(),
        data_dir: "/nonexistent/data".into(),
    };
    let table = format!(
        "server = \"127.0.0.1:1\"\ndialect = \"devzat\"\nnick = \"{ME}\"\n\
         plugin = {{ address = \"127.0.0.1:2\", token = \"t\" }}"
    )
    .parse()
    .expect("test toml");
    let config = Config::from_table(&account, table).expect("a plugin config");
    PluginMode::new(std::sync::Arc::new(config))
}

/// A long run of letters, drawn from a seed: a regex repetition this long overflows the test
/// thread's stack while proptest builds it.
fn long_word(min: usize, max: usize) -> impl Strategy<Value = String> {
    (any::<u64>(), min..max).prop_map(|(seed, len)| {
        let mut state = seed | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                char::from(b'a' + (state % 26) as u8)
            })
            .collect()
    })
}

/// Escape sequences as Devzat writes them around names and Markdown, and broken ones.
fn escape() -> BoxedStrategy<String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "\x1b[1m", "\x1b[0m", "\x1b[3m", "\x1b[38;5;120m", "\x1b[38;2;10;20;30m",
            "\x1b[48;5;236m", "\x1b[39m", "\x1b[5D\x1b[K", "\x1b]0;title\x07",
        ])
        .prop_map(str::to_owned),
        1 => Just("\x1b".to_owned()),
        1 => Just("\x1b[".to_owned()),
        1 => "\x1b\\[[0-9;]{0,40}".prop_map(|s| s),
        1 => "\x1b\\][^\x07]{0,30}".prop_map(|s| s),
    ]
    .boxed()
}

/// A name in `from`: ordinary, coloured, empty, huge, with breaks and control characters.
fn name() -> BoxedStrategy<String> {
    prop_oneof![
        6 => "[a-zA-Z0-9_-]{1,27}",
        2 => ("[a-z]{1,10}", escape(), "[a-z]{0,10}").prop_map(|(a, e, b)| format!("{e}{a}\x1b[39m{b}")),
        1 => Just(String::new()),
        1 => Just(ME.to_owned()),
        1 => Just("devbot".to_owned()),
        1 => "\\PC{1,30}",
        1 => "[a-z]{0,5}[\\r\\n\\t\\x00\\x07\\x7f][a-z]{0,5}",
        1 => long_word(200, 2000),
    ]
    .boxed()
}

/// A room: Devzat's are `#name`, but nothing makes the server say so.
fn room() -> BoxedStrategy<String> {
    prop_oneof![
        6 => Just("#main".to_owned()),
        2 => "#[a-z0-9-]{1,20}",
        1 => "[a-z]{0,10}",
        1 => "\\PC{0,40}",
    ]
    .boxed()
}

/// Words of a line: text, Markdown, escape codes, trace characters, breaks.
fn word() -> BoxedStrategy<String> {
    prop_oneof![
        6 => "[a-zA-Z0-9.,!?'()-]{1,9}",
        2 => "[^\\s\\x00-\\x1f\\x7f]{1,6}",
        1 => prop::sample::select(vec![
            "**", "*", "_", "`", "```", "# ", "> ", "- ", "[x](http://e)", "![i](http://e/i.png)",
            "cd", "#dev", "..", "\u{2063}", "\u{2064}", "\u{200B}", "\u{200C}\u{200D}\u{2060}",
            "\n", "\r\n", "\t", "\0", "joined", "left", "has", "the", "chat", "->", "<-",
        ])
        .prop_map(str::to_owned),
        1 => escape(),
        1 => long_word(1000, 5000),
    ]
    .boxed()
}

fn text() -> BoxedStrategy<String> {
    vec(word(), 0..30).prop_map(|w| w.join(" ")).boxed()
}

/// The system lines Devzat sends with an empty `from`, and hostile ones.
fn system_text() -> BoxedStrategy<String> {
    prop_oneof![
        2 => (name(), room()).prop_map(|(n, r)| format!("{n} has joined the chat {r}")),
        1 => name().prop_map(|n| format!("{n} has joined the chat")),
        1 => name().prop_map(|n| format!("{n} has left the chat")),
        1 => (name(), room()).prop_map(|(n, r)| format!("{n} is joining {r}")),
        1 => (escape(), name()).prop_map(|(e, n)| format!("{e}{n}\x1b[0m has left the chat")),
        2 => text(),
    ]
    .boxed()
}

fn event() -> BoxedStrategy<proto::Event> {
    prop_oneof![
        4 => (room(), name(), text()).prop_map(|(room, from, msg)| proto::Event { room, from, msg }),
        2 => (room(), system_text()).prop_map(|(room, msg)| proto::Event { room, from: String::new(), msg }),
        1 => (room(), name(), prop::sample::select(vec!["cd", "cd ..", "cd #dev", "  cd   #x  "]))
            .prop_map(|(room, from, msg)| proto::Event { room, from, msg: msg.to_owned() }),
        1 => (room(), text()).prop_map(|(room, msg)| proto::Event { room, from: "devbot".into(), msg }),
    ]
    .boxed()
}

fn check(mode: &PluginMode, event: proto::Event) -> Result<(), TestCaseError> {
    let (room, from, msg) = (event.room.clone(), event.from.clone(), event.msg.clone());
    let Some(inbound) = mode.inbound(event) else {
        return Ok(());
    };
    prop_assert_eq!(&inbound.room, &room);
    let name = &inbound.author.name;
    prop_assert!(!name.is_empty(), "an author without a name from {:?}", from);
    prop_assert!(
        !name.chars().any(char::is_control),
        "control characters in the author {:?} (from {:?})",
        name,
        from
    );
    prop_assert!(
        !crate::parse::is_room_command(&msg),
        "relayed a cd line: {:?}",
        msg
    );
    let stripped_from = crate::screen::strip_ansi(&from);
    if stripped_from.is_empty() {
        prop_assert!(
            matches!(inbound.kind, Kind::Join | Kind::Part { .. }),
            "a system line became {:?}",
            inbound.kind
        );
        prop_assert_ne!(name.as_str(), ME, "our own join or leave relayed");
        return Ok(());
    }
    match &inbound.kind {
        Kind::Notice { body } => {
            prop_assert_eq!(stripped_from.as_str(), crate::parse::DEVBOT);
            prop_assert!(inbound.author.is_system && inbound.author.is_bot);
            prop_assert!(!body.to_plain().contains('\x1b'));
        }
        Kind::Message { body, .. } => {
            prop_assert_ne!(stripped_from.as_str(), crate::parse::DEVBOT);
            prop_assert!(!body.is_empty());
            let plain = body.to_plain();
            prop_assert!(
                !plain.contains('\u{2063}'),
                "a trace delimiter left in {:?}",
                plain
            );
        }
        other => prop_assert!(false, "a chat line became {:?}", other),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn any_listener_event_comes_out_well_formed_or_not_at_all(event in event()) {
        check(&mode(), event)?;
    }

    #[test]
    fn any_bytes_prost_decodes_come_out_well_formed_or_not_at_all(
        bytes in prop_oneof![
            vec(any::<u8>(), 0..300),
            event().prop_map(|e| e.encode_to_vec()),
            (event(), vec(any::<u8>(), 0..8), 0usize..200).prop_map(|(e, junk, at)| {
                let mut b = e.encode_to_vec();
                let at = at.min(b.len());
                b.splice(at..at, junk);
                b
            }),
        ],
    ) {
        if let Ok(event) = proto::Event::decode(bytes.as_slice()) {
            check(&mode(), event)?;
        }
    }

    #[test]
    fn a_line_we_sent_comes_back_as_nothing_once(
        room in room(),
        from in "[a-z]{1,12}",
        msg in "[a-z]{1,9}( [a-z]{1,9}){0,5}",
    ) {
        let mode = mode();
        mode.remember(&room, &from, &msg);
        let event = || proto::Event { room: room.clone(), from: from.clone(), msg: msg.clone() };
        prop_assert!(mode.inbound(event()).is_none(), "our own line came back");
        prop_assert!(mode.inbound(event()).is_some(), "the same line said again is someone's");
    }
}

/// Cases the properties found, kept.
mod found {
    use super::*;

    fn said(from: &str, msg: &str) -> Option<patchbay_sdk::Inbound> {
        mode().inbound(proto::Event {
            room: "#main".into(),
            from: from.into(),
            msg: msg.into(),
        })
    }

    #[test]
    fn an_author_of_only_a_line_break_is_skipped() {
        assert!(said("\n", "hi").is_none());
        assert!(said("\x1b[1m\r\n\x1b[0m", "hi").is_none());
    }

    #[test]
    fn control_characters_are_dropped_from_an_author() {
        let inbound = said("ali\nce\x07", "hi").expect("a message");
        assert_eq!(inbound.author.name, "alice");
    }
}
