//! Structure-aware property tests of the IRC parsers ([`crate::parse`], [`crate::mirc`]).
//!
//! `parse.rs` already feeds arbitrary bytes; these build lines the way a server does (IRCv3
//! tags with escaped values, user and server prefixes, commands and numerics, middle and
//! trailing parameters full of control codes and non-ASCII text, invalid UTF-8) and mutate
//! real lines captured from ergo and InspIRCd, so the cases reach the code past the first
//! syntax check. What they hold:
//! - nothing panics, whatever the line;
//! - a rendered line parses back to the same command and parameters, and tag values to the
//!   values before escaping;
//! - a PRIVMSG keeps its target and text through the event and the inbound message;
//! - `mirc::render` then `mirc::parse` keeps the plain text, for any styles and colours;
//! - registration (CAP, SASL, nick-in-use) and ISUPPORT take any sequence of such lines.

use proptest::collection::vec;
use proptest::prelude::*;

use patchbay_sdk::RichText;
use patchbay_sdk::text::{Color, Span, SpanKind, Style};

use crate::catchup::Isupport;
use crate::config::{Formatting, IrcConfig};
use crate::mirc;
use crate::parse::{IrcEvent, command_params, parse_line, to_inbound};
use crate::register::Registration;

fn latin1() -> &'static encoding_rs::Encoding {
    encoding_rs::WINDOWS_1252
}

/// Real lines as servers send them (ergo, InspIRCd, ngircd), the seeds for mutation.
const REAL_LINES: &[&str] = &[
    "@time=2024-03-01T12:34:56.789Z;msgid=Zx8b2k;account=alice :alice!~a@127.0.0.1 PRIVMSG #patchbay :hi \x02there\x02",
    "@batch=hx1;time=2024-03-01T12:00:00.000Z;msgid=q1 :bob!b@h PRIVMSG #c :\x01ACTION waves\x01",
    ":ergo.test 001 pb :Welcome to the ErgoTest IRC Network pb",
    ":ergo.test CAP * LS * :account-notify away-notify batch cap-notify chghost draft/chathistory",
    ":irc.local 005 pb AWAYLEN=200 CASEMAPPING=rfc1459 CHANMODES=IXbeg,k,Hfjl,ACKMNOPQRSTcimnprstz :are supported by this server",
    ":irc.local 433 * pb :Nickname is already in use.",
    ":irc.local NOTICE * :*** Looking up your hostname...",
    "@label=pb3 :ergo.test BATCH +4Fx chathistory #c",
    "@batch=4Fx;draft/chathistory-end :ergo.test BATCH -4Fx",
    ":carol!c@h JOIN #c carolacct :Carol Real",
    ":carol!c@h PART #c :see you",
    ":op!o@h KICK #c carol :\x0304spam\x03",
    ":carol!c@h QUIT :Quit: Ping timeout: 120 seconds",
    ":op!o@h TOPIC #c :\x1dnew\x1d topic \x0312,01blue\x0f",
    ":carol!c@h NICK carol_",
    "PING :irc.local",
    "AUTHENTICATE +",
    "@+draft/reply=Zx8b2k;+draft/react=x :dave!d@h PRIVMSG #c :caf\u{e9} \u{2713} \x04ff8800hex\x04",
];

/// An IRCv3 tag value escaped the way the spec asks (`;` `\s` `\\` `\r` `\n`).
fn escape_tag_value(value: &str) -> String {
    let mut out = String::new();
    for c in value.chars() {
        match c {
            ';' => out.push_str("\\:"),
            ' ' => out.push_str("\\s"),
            '\\' => out.push_str("\\\\"),
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn tag_key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("time".to_owned()),
        Just("msgid".to_owned()),
        Just("account".to_owned()),
        Just("batch".to_owned()),
        Just("label".to_owned()),
        Just("+draft/reply".to_owned()),
        Just("bot".to_owned()),
        Just("draft/chathistory-end".to_owned()),
        "\\+?([a-z]{1,8}\\.[a-z]{2,3}/)?[a-z][a-z0-9-]{0,10}",
    ]
}

/// A tag value: anything a client might write, including the characters that need escapes,
/// and now and then a server-time that may or may not be valid.
fn tag_value() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        1 => Just(None),
        4 => proptest::option::of("[^\\x00]{0,24}"),
        1 => proptest::option::of("20[0-9]{2}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-6][0-9]:[0-6][0-9](\\.[0-9]{1,4})?Z?"),
    ]
}

fn prefix() -> impl Strategy<Value = Option<String>> {
    let nick = "[A-Za-z\\[\\]\\\\`^{}|_][A-Za-z0-9\\[\\]\\\\`^{}|_-]{0,15}";
    proptest::option::of(prop_oneof![
        (nick, "~?[a-z0-9]{0,9}", "[a-z0-9.:-]{1,30}").prop_map(|(n, u, h)| format!("{n}!{u}@{h}")),
        "[a-z]{1,10}(\\.[a-z]{1,6}){1,3}",
        nick.prop_map(|n| n.to_owned()),
    ])
}

/// Commands whose parsed form keeps every parameter as written (the `irc` crate rewrites
/// `USER`, `MODE`, `CAP` and `BATCH` subcommands; those are left to the never-panics properties).
fn command() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "PRIVMSG",
            "NOTICE",
            "JOIN",
            "PART",
            "QUIT",
            "KICK",
            "TOPIC",
            "NICK",
            "PING",
            "PONG",
            "AUTHENTICATE",
            "ACCOUNT",
            "AWAY",
            "CHGHOST",
            "TAGMSG",
        ])
        .prop_map(str::to_owned),
        "[0-9]{3}",
        "[A-Z]{1,10}",
    ]
}

/// A middle parameter: no space, no NUL/CR/LF, not starting with `:`; any other character,
/// mIRC codes and non-ASCII included.
fn middle() -> impl Strategy<Value = String> {
    "[^\\x00\\r\\n :][^\\x00\\r\\n ]{0,15}"
}

/// A trailing parameter's text: anything but NUL/CR/LF, weighted towards formatted chat text.
fn trailing() -> impl Strategy<Value = String> {
    prop_oneof![
        "[^\\x00\\r\\n]{0,80}",
        "([a-z ,.0-9]|\\x02|\\x03[0-9]{0,2}(,[0-9]{0,2})?|\\x04[0-9a-f]{0,6}|\\x0f|\\x11|\\x16|\\x1d|\\x1e|\\x1f|\\x01|é|✓|😀){0,40}",
    ]
}

/// One line, built as a server would write it, with what it should parse to.
#[derive(Debug, Clone)]
struct Built {
    line: String,
    tags: Vec<(String, Option<String>)>,
    command: String,
    params: Vec<String>,
}

fn built_line() -> impl Strategy<Value = Built> {
    (
        vec((tag_key(), tag_value()), 0..5),
        prefix(),
        command(),
        vec(middle(), 0..6),
        proptest::option::of(trailing()),
    )
        .prop_map(|(tags, prefix, command, middles, trailing)| {
            let mut line = String::new();
            if !tags.is_empty() {
                let rendered: Vec<String> = tags
                    .iter()
                    .map(|(k, v)| match v {
                        Some(v) => format!("{k}={}", escape_tag_value(v)),
                        None => k.clone(),
                    })
                    .collect();
                line.push('@');
                line.push_str(&rendered.join(";"));
                line.push(' ');
            }
            if let Some(p) = &prefix {
                line.push(':');
                line.push_str(p);
                line.push(' ');
            }
            line.push_str(&command);
            for m in &middles {
                line.push(' ');
                line.push_str(m);
            }
            let mut params = middles;
            if let Some(t) = trailing {
                line.push_str(" :");
                line.push_str(&t);
                params.push(t);
            }
            Built {
                line,
                tags,
                command,
                params,
            }
        })
}

/// Apply one mutation to a line's bytes: cut, insert, overwrite, duplicate or truncate.
fn mutate(seed: &[u8], ops: &[(u8, usize, Vec<u8>)]) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for (op, at, data) in ops {
        let at = if bytes.is_empty() {
            0
        } else {
            at % (bytes.len() + 1)
        };
        match op % 5 {
            0 => {
                let end = (at + data.len()).min(bytes.len());
                bytes.drain(at..end);
            }
            1 => {
                bytes.splice(at..at, data.iter().copied());
            }
            2 => {
                for (i, b) in data.iter().enumerate() {
                    if let Some(slot) = bytes.get_mut(at + i) {
                        *slot = *b;
                    }
                }
            }
            3 => {
                let copy = bytes[at..].to_vec();
                bytes.splice(at..at, copy);
            }
            _ => bytes.truncate(at),
        }
    }
    bytes
}

/// Everything downstream of a parse that a session does with a line.
fn exercise(bytes: &[u8]) {
    if let Ok(p) = parse_line(bytes, latin1()) {
        let _ = command_params(&p.message);
        if let (Some(event), Some(source)) = (&p.event, &p.source) {
            for formatting in [Formatting::Keep, Formatting::Strip] {
                if let Some(inbound) = to_inbound("#c", event, source, &p.tags, formatting)
                    && let Some(body) = inbound.kind.body()
                {
                    let _ = mirc::render(body, true);
                }
            }
        }
    }
}

/// A config with SASL PLAIN, so every registration branch is reachable.
fn sasl_config() -> IrcConfig {
    crate::config::from_test_table(
        "server = \"s\"\nnick = \"pb\"\n[sasl]\nmechanism = \"plain\"\nusername = \"a\"\npassword = \"p\"",
    )
    .expect("config")
}

/// A line of the registration dialogue, as servers write it, with random parameters.
fn registration_line() -> impl Strategy<Value = String> {
    let caps = "(sasl(=PLAIN,EXTERNAL)?|server-time|message-tags|batch|draft/chathistory|[a-z/=,.-]{1,12}) ?";
    prop_oneof![
        (prop::sample::select(vec!["LS", "LS *", "ACK", "NAK", "NEW", "DEL", "LIST", "XX"]), vec(caps, 0..6))
            .prop_map(|(sub, caps)| format!(":srv CAP pb {sub} :{}", caps.concat())),
        "AUTHENTICATE [+A-Za-z0-9=]{0,10}",
        (prop::sample::select(vec!["001", "433", "432", "900", "903", "904", "905", "906", "907", "908", "005", "376", "422", "465", "ERROR"]),
            vec(middle(), 0..4), trailing())
            .prop_map(|(cmd, m, t)| format!(":srv {cmd} {} :{t}", m.join(" "))),
        vec("(CHATHISTORY|draft/CHATHISTORY|MSGREFTYPES|NETWORK|[A-Z]{1,6})(=[^\\x00\\r\\n :]{0,10})?", 0..6)
            .prop_map(|t| format!(":srv 005 pb {} :are supported by this server", t.join(" "))),
    ]
}

fn color() -> impl Strategy<Value = Option<Color>> {
    prop_oneof![
        Just(None),
        (0u8..16).prop_map(mirc::palette_color),
        any::<(u8, u8, u8)>().prop_map(|(r, g, b)| Some(Color { r, g, b })),
    ]
}

/// Span text as another network hands it over: digits and commas (which follow a colour code
/// on the wire), punctuation, non-ASCII, line breaks; no mIRC control codes (those would be
/// the text's own formatting, not text).
fn span_text() -> impl Strategy<Value = String> {
    "([a-z0-9 ,.:#]|\\n|é|✓|😀|[\\u{80}-\\u{10ffff}]){0,12}"
}

fn span() -> impl Strategy<Value = Span> {
    (
        span_text(),
        any::<(bool, bool, bool, bool)>(),
        color(),
        color(),
        0u8..4,
        "https://[a-z]{1,8}\\.example/[a-z0-9]{0,6}",
    )
        .prop_map(
            |(text, (bold, italic, underline, strike), fg, bg, kind, url)| Span {
                text,
                style: Style {
                    bold,
                    italic,
                    underline,
                    strike,
                    color: fg,
                    background: bg,
                },
                kind: match kind {
                    0 | 1 => SpanKind::Text,
                    2 => SpanKind::Code,
                    _ => SpanKind::Link { url },
                },
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn built_lines_parse_back_to_their_command_params_and_tags(b in built_line()) {
        let parsed = parse_line(b.line.as_bytes(), latin1());
        let p = match parsed {
            Ok(p) => p,
            Err(e) => return Err(TestCaseError::fail(format!("{:?} refused: {e}", b.line))),
        };
        let (command, params) = command_params(&p.message);
        prop_assert_eq!(command, b.command.to_ascii_uppercase());
        prop_assert_eq!(params, b.params.clone());
        // The last value of a key wins, as in the spec; empty values read as absent.
        let last = |key: &str| {
            b.tags
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .and_then(|(_, v)| v.clone())
                .filter(|v| !v.is_empty())
        };
        for (key, got) in [
            ("msgid", &p.tags.msgid),
            ("account", &p.tags.account),
            ("label", &p.tags.label),
            ("batch", &p.tags.batch),
        ] {
            if b.tags.iter().any(|(k, _)| k == key) {
                prop_assert_eq!(got, &last(key), "tag {}", key);
            }
        }
        exercise(b.line.as_bytes());
    }

    #[test]
    fn a_privmsg_keeps_its_target_and_text(
        nick in "[a-z][a-z0-9_]{0,12}",
        target in "#[^\\x00\\r\\n ,:\\x07]{1,20}",
        text in trailing(),
    ) {
        let line = format!(":{nick}!u@host PRIVMSG {target} :{text}");
        let p = parse_line(line.as_bytes(), latin1()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let event = p.event.clone();
        match event {
            Some(IrcEvent::Privmsg { target: t, text: got }) => {
                prop_assert!(!text.starts_with('\x01'));
                prop_assert_eq!(&t, &target);
                prop_assert_eq!(&got, &text);
                let source = p.source.as_ref().expect("a user prefix gives a source");
                match to_inbound("#c", &IrcEvent::Privmsg { target: t, text: got }, source, &p.tags, Formatting::Keep) {
                    Some(inbound) => {
                        prop_assert_eq!(&inbound.author.name, &nick);
                        let body = inbound.kind.body().expect("a message has a body");
                        prop_assert_eq!(body.to_plain(), mirc::strip(&text));
                    }
                    None => prop_assert!(mirc::strip(&text).trim().is_empty()),
                }
            }
            Some(IrcEvent::Action { target: t, .. } | IrcEvent::Ctcp { target: t, .. }) => {
                prop_assert!(text.starts_with('\x01'));
                prop_assert_eq!(t, target);
            }
            other => prop_assert!(false, "unexpected event {:?}", other),
        }
    }

    #[test]
    fn built_lines_with_invalid_utf8_never_panic(
        b in built_line(),
        junk in vec(prop_oneof![0x80u8..=0xff, Just(0xc3), Just(0xe2), Just(0xf0)], 1..6),
        at in any::<usize>(),
    ) {
        let mut bytes = b.line.into_bytes();
        let at = at % (bytes.len() + 1);
        bytes.splice(at..at, junk);
        exercise(&bytes);
        bytes.extend_from_slice(b"\r\n");
        exercise(&bytes);
    }

    #[test]
    fn mutated_real_lines_never_panic(
        seed in prop::sample::select(REAL_LINES),
        ops in vec((any::<u8>(), any::<usize>(), vec(prop_oneof![
            any::<u8>(),
            prop::sample::select(b" :@;=!\\\x01\x02\x03\x04\r\n\0,".to_vec()),
        ], 0..8)), 1..5),
    ) {
        exercise(seed.as_bytes());
        exercise(&mutate(seed.as_bytes(), &ops));
    }

    #[test]
    fn registration_and_isupport_take_any_server_dialogue(
        lines in vec(prop_oneof![
            4 => registration_line().prop_map(String::into_bytes),
            1 => (prop::sample::select(REAL_LINES), vec((any::<u8>(), any::<usize>(), vec(any::<u8>(), 0..6)), 1..3))
                .prop_map(|(seed, ops)| mutate(seed.as_bytes(), &ops)),
        ], 1..16),
        late_from in 0usize..16,
    ) {
        let mut reg = Registration::new(&sasl_config());
        let _ = reg.start();
        let mut isupport = Isupport::default();
        for (i, raw) in lines.iter().enumerate() {
            let Ok(p) = parse_line(raw, latin1()) else { continue };
            let (command, params) = command_params(&p.message);
            if command == "005" && params.len() > 2 {
                isupport.apply(&params[1..params.len() - 1]);
            }
            let _ = if i >= late_from { reg.handle_late(&command, &params) } else { reg.handle(&command, &params) };
        }
        let _ = (isupport.page_size(), isupport.takes_msgid(), reg.enabled_caps().len());
    }

    #[test]
    fn mirc_render_then_parse_keeps_the_plain_text(spans in vec(span(), 1..8)) {
        let rt = RichText::from_spans(spans);
        let rendered = mirc::render(&rt, true);
        let back = mirc::parse(&rendered);
        prop_assert_eq!(back.to_plain(), rt.to_plain(), "rendered as {:?}", rendered);
        prop_assert_eq!(mirc::strip(&rendered), rt.to_plain());
    }

    #[test]
    fn mirc_parse_of_formatted_text_never_panics_and_renders_back_to_its_text(text in trailing()) {
        let rt = mirc::parse(&text);
        prop_assert_eq!(rt.to_plain(), mirc::strip(&text));
        let again = mirc::parse(&mirc::render(&rt, true));
        prop_assert_eq!(again.to_plain(), rt.to_plain());
    }
}
