//! Structure-aware property tests of the screen decoder ([`crate::screen`]) and the line
//! parsers ([`crate::parse`]).
//!
//! The unit tests beside each module feed arbitrary bytes; these draw screens the way the
//! servers do (the test server's `format.rs`: coloured names, Devzat's wrapping after the
//! `name: ` prefix at the terminal's width, the erase over the prompt before each live line,
//! right-aligned timestamps, `cd` moves; ssh-chat's `\r\r\n` lines in bot mode), cut the bytes
//! into packets at random points, and check that
//! - each well-formed chat line comes out as its author and text, in order, and the other
//!   events (joins, parts, moves, emotes, private messages, nick changes) as themselves;
//! - whatever is spliced in (random, truncated or endless escape sequences, invalid UTF-8,
//!   lines far past the length cap), nothing panics and no line carries an escape or a break.

use proptest::collection::vec;
use proptest::prelude::*;

use patchbay_sshchat_testserver::format;

use crate::dialect::Dialect;
use crate::parse::{Line, LineParser, classify_devzat, classify_ssh_chat, is_room_command};
use crate::screen::{Screen, strip_ansi};

/// Our own name in every screen.
const ME: &str = "bot";
/// Devzat's live lines start by moving back over the `bot: ` prompt and erasing it.
const DEVZAT_LEAD: &str = "\x1b[5D\x1b[K";
/// ssh-chat's, over `[bot] `.
const SSH_CHAT_LEAD: &str = "\x1b[6D\x1b[K";

/// Words of chat text: ordinary ones, non-ASCII, and the phrases other line formats are
/// recognised by (a person may type any of them).
fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-zA-Z0-9.,!?'\"()-]{1,9}",
        2 => "[^\\s\\x00-\\x1f\\x7f]{1,6}",
        1 => prop::sample::select(vec![
            "->", "<-", "-->", "<--", "is", "joining", "#dev", "cd", "..", "has", "joined",
            "left.", "the", "chat", "Input", "too", "long.", "Pick", "a", "different", "one:",
            "already", "in", "use", "invalid", "*", "**", "[PM", "from", "alice]", "1m",
            "earlier", "3:04pm", "x:", ":", "é", "✓", "😀", "日本", "is joining #dev",
            "has joined the chat", "Input too long.", "Rate limiting is in effect.",
            "Your username is already in use. Pick a different one:",
        ])
        .prop_map(str::to_owned),
    ]
}

/// Devzat renders Markdown as SGR sequences around words; any of them may wrap a word.
fn styled_word() -> impl Strategy<Value = String> {
    (
        word(),
        prop::sample::select(vec![
            "",
            "",
            "\x1b[1m",
            "\x1b[3m",
            "\x1b[48;5;236m",
            "\x1b[38;5;120m",
            "\x1b[38;2;10;20;30m",
        ]),
    )
        .prop_map(|(w, sgr)| {
            if sgr.is_empty() {
                w
            } else {
                format!("{sgr}{w}\x1b[0m")
            }
        })
}

/// A Devzat name: printable ASCII without spaces, not ours. (`:` is left out: `a: is joining
/// #x` reads both as `a:` leaving and as `a` speaking, and no parser can tell which.)
fn devzat_name() -> impl Strategy<Value = String> {
    "[!-9;-~]{1,27}".prop_filter("not our name", |n| n != ME)
}

/// An ssh-chat name: letters, digits, `_ . -`, up to 16, not ours.
fn ssh_chat_name() -> impl Strategy<Value = String> {
    prop_oneof!["[A-Za-z0-9_.-]{1,16}", "[\\p{L}\\p{N}]{1,8}",]
        .prop_filter("not our name", |n| n != ME)
}

fn room() -> impl Strategy<Value = String> {
    "[a-z0-9_-]{1,12}"
}

/// One thing that happens in a Devzat room.
#[derive(Clone, Debug)]
enum DevzatEvent {
    /// A message at a terminal `width` columns wide, after a right-aligned timestamp when
    /// `stamp` is set.
    Message {
        name: String,
        words: Vec<String>,
        width: usize,
        stamp: Option<String>,
    },
    Join(String),
    Part(String),
    /// ` --> name has joined #room`.
    Arrived(String, String),
    /// `name is joining #room`.
    Leaving(String, String),
    /// `name: cd #room`: bookkeeping, not chat.
    RoomCommand(String, String),
}

fn stamp() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("< 1m in".to_owned()),
        (1u32..60).prop_map(|m| format!("{m}m in")),
        (1u32..24, 0u32..60).prop_map(|(h, m)| format!("{h}h {m}m in")),
        (1u32..9, 0u32..24, 0u32..60).prop_map(|(d, h, m)| format!("{d}d {h}h {m}m earlier")),
        (1u32..13, 0u32..60).prop_map(|(h, m)| format!("{h}:{m:02}pm")),
    ]
}

/// Devzat events at terminal widths from `widths` (the connector asks for 80 columns or more,
/// `config.rs`; narrower ones only feed the never-panics property).
fn devzat_event(widths: std::ops::Range<usize>) -> impl Strategy<Value = DevzatEvent> {
    prop_oneof![
        6 => (devzat_name(), vec(styled_word(), 1..30), widths, proptest::option::of(stamp()))
            .prop_map(|(name, words, width, stamp)| DevzatEvent::Message { name, words, width, stamp }),
        1 => devzat_name().prop_map(DevzatEvent::Join),
        1 => devzat_name().prop_map(DevzatEvent::Part),
        1 => (devzat_name(), room()).prop_map(|(n, r)| DevzatEvent::Arrived(n, r)),
        1 => (devzat_name(), room()).prop_map(|(n, r)| DevzatEvent::Leaving(n, r)),
        1 => (devzat_name(), prop_oneof![room().prop_map(|r| format!("#{r}")), Just("..".to_owned())])
            .prop_map(|(n, r)| DevzatEvent::RoomCommand(n, r)),
    ]
}

/// The bytes Devzat sends for `event`, and what the parser must report for it.
fn draw_devzat(event: &DevzatEvent) -> (String, Option<Line>) {
    let (body, want) = match event {
        DevzatEvent::Message {
            name,
            words,
            width,
            stamp,
        } => {
            let indent = name.chars().count() + 2;
            let wrapped = format::wrap(&words.join(" "), indent, *width);
            let mut body = String::new();
            if let Some(stamp) = stamp {
                body.push_str(&" ".repeat(width.saturating_sub(stamp.len())));
                body.push_str(stamp);
                body.push_str("\r\n");
            }
            body.push_str(&format!("{}: {wrapped}", format::colour_name(name)));
            // What a reader sees: the wrapped rows without colours, the indent removed.
            let text: Vec<String> = wrapped
                .split("\r\n")
                .enumerate()
                .map(|(i, row)| {
                    let row = format::strip(row);
                    let row = if i == 0 { &row[..] } else { &row[indent..] };
                    row.trim_end().to_owned()
                })
                .collect();
            let text = text.join("\n");
            let want = if is_room_command(&text) {
                None
            } else if name == crate::parse::DEVBOT {
                Some(Line::Devbot { text })
            } else {
                Some(Line::Message {
                    from: name.clone(),
                    text,
                })
            };
            (body, want)
        }
        DevzatEvent::Join(name) => (
            format!(" --> {name} has joined the chat"),
            Some(Line::Join { name: name.clone() }),
        ),
        DevzatEvent::Part(name) => (
            format!(" <-- {name} has left the chat. They were online for 5m"),
            Some(Line::Part { name: name.clone() }),
        ),
        DevzatEvent::Arrived(name, room) => (
            format!(" --> {name} has joined #{room}"),
            Some(Line::Join { name: name.clone() }),
        ),
        DevzatEvent::Leaving(name, room) => (
            format!("{name} is joining #{room}"),
            Some(Line::Part { name: name.clone() }),
        ),
        DevzatEvent::RoomCommand(name, arg) => {
            (format!("{}: cd {arg}", format::colour_name(name)), None)
        }
    };
    (format!("{DEVZAT_LEAD}{body}\r\n{ME}: "), want)
}

/// One thing that happens in an ssh-chat room (TERM=bot: names uncoloured).
#[derive(Clone, Debug)]
enum SshChatEvent {
    Message(String, Vec<String>),
    Emote(String, Vec<String>),
    Join(String),
    Part(String),
    Nick(String, String),
    Private(String, Vec<String>),
}

fn ssh_chat_event() -> impl Strategy<Value = SshChatEvent> {
    let words = || vec(word(), 1..20);
    prop_oneof![
        6 => (ssh_chat_name(), words()).prop_map(|(n, w)| SshChatEvent::Message(n, w)),
        1 => (ssh_chat_name(), words()).prop_map(|(n, w)| SshChatEvent::Emote(n, w)),
        1 => ssh_chat_name().prop_map(SshChatEvent::Join),
        1 => ssh_chat_name().prop_map(SshChatEvent::Part),
        1 => (ssh_chat_name(), ssh_chat_name()).prop_map(|(o, n)| SshChatEvent::Nick(o, n)),
        1 => (ssh_chat_name(), words()).prop_map(|(n, w)| SshChatEvent::Private(n, w)),
    ]
}

/// The bytes ssh-chat sends for `event`, and what the parser must report for it.
fn draw_ssh_chat(event: &SshChatEvent) -> (String, Line) {
    let (body, want) = match event {
        SshChatEvent::Message(name, words) => (
            format!("{name}: {}", words.join(" ")),
            Line::Message {
                from: name.clone(),
                text: words.join(" "),
            },
        ),
        SshChatEvent::Emote(name, words) => (
            format!("** {name} {}", words.join(" ")),
            Line::Emote {
                from: name.clone(),
                text: words.join(" "),
            },
        ),
        SshChatEvent::Join(name) => (
            format!(" * {name} joined. (Connected: 3)"),
            Line::Join { name: name.clone() },
        ),
        SshChatEvent::Part(name) => (
            format!(" * {name} left. (After 7 seconds)"),
            Line::Part { name: name.clone() },
        ),
        SshChatEvent::Nick(old, new) => (
            format!(" * {old} is now known as {new}."),
            Line::Nick {
                old: old.clone(),
                new: new.clone(),
            },
        ),
        SshChatEvent::Private(name, words) => (
            format!("[PM from {name}] {}", words.join(" ")),
            Line::DirectIn {
                from: name.clone(),
                text: words.join(" "),
            },
        ),
    };
    (format!("{SSH_CHAT_LEAD}{body}\r\r\n[{ME}] "), want)
}

/// Feed `bytes` cut at `cuts` (positions taken modulo the length) through a screen and a
/// parser, as packets arrive; returns what the parser reported.
fn run(dialect: Dialect, bytes: &[u8], cuts: &[usize]) -> Vec<Line> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    at.push(0);
    at.push(bytes.len());
    at.sort_unstable();
    let mut screen = Screen::new();
    let mut parser = LineParser::new(dialect, ME);
    let mut out = Vec::new();
    for pair in at.windows(2) {
        for line in screen.feed(&bytes[pair[0]..pair[1]]) {
            assert!(!line.text.contains(['\n', '\r', '\x1b']), "{line:?}");
            out.extend(parser.push(&line));
        }
    }
    out.extend(parser.flush());
    let _ = screen.partial();
    out
}

/// A piece of terminal noise: whole, truncated or endless escape sequences, invalid UTF-8,
/// stray controls, a line far past the screen's length cap.
fn noise() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::sample::select(vec![
            &b"\x1b"[..], b"\x1b[", b"\x1b[38;5;", b"\x1b[2K", b"\x1b[A", b"\x1b[999D", b"\x1b[H\x1b[2J",
            b"\x1b]0;title", b"\x1b]0;title\x07", b"\x1b]0;t\x1b\\", b"\x1b7", b"\x1bM", b"\r", b"\r\r\n",
            b"\n", b"\x07", b"\x08", b"\t", b"\x7f", b"\xc3", b"\xe2\x9c", b"\xff\xfe", b"\xf0\x9f\x98",
        ])
        .prop_map(<[u8]>::to_vec),
        2 => vec(any::<u8>(), 1..40),
        1 => (1usize..200).prop_map(|n| {
            let mut v = b"\x1b[".to_vec();
            v.extend(b"1;".repeat(n));
            v
        }),
        1 => (60_000usize..70_000, any::<u8>()).prop_map(|(n, b)| vec![b' ' | (b & 0x5f); n]),
    ]
}

// Regressions found by the properties below, kept as plain cases.

#[test]
fn a_devzat_message_starting_with_an_arrow_is_a_message_not_a_private_one() {
    // `!: -> 0` was read as a private message from `!:`.
    assert_eq!(
        classify_devzat("alice: -> see above"),
        Line::Message {
            from: "alice".into(),
            text: "-> see above".into()
        }
    );
    assert_eq!(
        classify_devzat("ann: is joining #dev later"),
        Line::Message {
            from: "ann".into(),
            text: "is joining #dev later".into()
        }
    );
    assert_eq!(
        classify_devzat("alice -> psst"),
        Line::DirectIn {
            from: "alice".into(),
            text: "psst".into()
        }
    );
}

#[test]
fn an_ssh_chat_line_quoting_the_too_long_error_is_chat() {
    // `** A Input too long.` was taken for the server refusing our line.
    assert_eq!(
        classify_ssh_chat("** alice Input too long."),
        Line::Emote {
            from: "alice".into(),
            text: "Input too long.".into()
        }
    );
    assert_eq!(
        classify_ssh_chat("alice: Input too long. again"),
        Line::Message {
            from: "alice".into(),
            text: "Input too long. again".into()
        }
    );
    assert_eq!(
        classify_ssh_chat("-> Message rejected: Input too long."),
        Line::TooLong
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn devzat_live_lines_parse_to_their_author_and_text(
        events in vec(devzat_event(80..1200), 1..12),
        cuts in vec(any::<usize>(), 0..20),
    ) {
        let mut bytes = format!(" --> {ME} has joined the chat\r\n{ME}: ");
        let mut want = Vec::new();
        for event in &events {
            let (drawn, line) = draw_devzat(event);
            bytes.push_str(&drawn);
            want.extend(line);
        }
        prop_assert_eq!(run(Dialect::Devzat, bytes.as_bytes(), &cuts), want, "screen {:?}", bytes);
    }

    #[test]
    fn ssh_chat_live_lines_parse_to_their_author_and_text(
        events in vec(ssh_chat_event(), 1..12),
        cuts in vec(any::<usize>(), 0..20),
    ) {
        let mut bytes = format!("\x1b[K * {ME} joined. (Connected: 2)\r\r\n[{ME}] ");
        let mut want = Vec::new();
        for event in &events {
            let (drawn, line) = draw_ssh_chat(event);
            bytes.push_str(&drawn);
            want.push(line);
        }
        prop_assert_eq!(run(Dialect::SshChat, bytes.as_bytes(), &cuts), want, "screen {:?}", bytes);
    }

}

proptest! {
    // Fewer cases: one in eight splices is a 60 000-byte line.
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn real_screens_with_noise_spliced_in_never_panic(
        devzat in vec(devzat_event(1..300), 0..8),
        ssh_chat in vec(ssh_chat_event(), 0..8),
        splices in vec((any::<usize>(), noise()), 1..6),
        cuts in vec(any::<usize>(), 0..20),
    ) {
        let mut bytes = format!(" --> {ME} has joined the chat\r\n").into_bytes();
        for event in &devzat {
            bytes.extend(draw_devzat(event).0.into_bytes());
        }
        for event in &ssh_chat {
            bytes.extend(draw_ssh_chat(event).0.into_bytes());
        }
        for (at, noise) in &splices {
            let at = at % (bytes.len() + 1);
            bytes.splice(at..at, noise.iter().copied());
        }
        for dialect in [Dialect::Devzat, Dialect::SshChat] {
            let _ = run(dialect, &bytes, &cuts);
        }
        let text = String::from_utf8_lossy(&bytes);
        let stripped = strip_ansi(&text);
        prop_assert!(!stripped.contains('\x1b'));
        for line in stripped.lines().take(50) {
            let _ = classify_devzat(line);
            let _ = classify_ssh_chat(line);
        }
    }
}
