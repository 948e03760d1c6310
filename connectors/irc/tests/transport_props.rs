//! Property tests of the IRC framing, both ways.
//!
//! Inbound, [`LineReader`] cuts the server's byte stream into lines. The cases are streams of
//! lines (text, control codes, NUL, lone CR, invalid UTF-8, 0 bytes to 100 KB, some right at
//! [`MAX_READ_LINE`]) ended by LF or CRLF, handed over in chunks of random sizes, so that a
//! terminator or a multi-byte character falls across a read. What holds:
//! - the reader yields exactly the lines of the stream, in order, without their terminator;
//! - a line longer than the limit is reported as skipped, and the next line is whole again;
//! - a lone CR is not a terminator (servers end lines with LF or CRLF), and a partial line
//!   at the end of the stream is not yielded.
//!
//! Outbound, [`render::render`] and [`render::split_line`] cut long text into several lines.
//! What holds, for any text, relayed nick, own prefix and channel a real server allows:
//! - every line, as the server relays it (`:nick!~user@host PRIVMSG #chan :...\r\n`), fits
//!   in 512 bytes;
//! - no line holds CR, LF or NUL, and every piece is valid UTF-8 (a `String`), so no
//!   character was cut;
//! - the pieces, put back together, give the text back, up to the one space dropped at each
//!   cut; with formatting kept, the plain text survives and each piece closes its formatting.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use proptest::collection::vec;
use proptest::prelude::*;
use tokio::io::{AsyncRead, ReadBuf};

use patchbay_irc::config::{Formatting, RenderConfig};
use patchbay_irc::mirc;
use patchbay_irc::render::{self, MAX_LINE, SelfPrefix};
use patchbay_irc::transport::{LineReader, MAX_READ_LINE};
use patchbay_sdk::{Author, Delivery, Event, Inbound, Kind, RichText};

/// A reader that hands out its data in the given chunk sizes (cycled), like a TCP stream whose
/// segments end anywhere.
struct Chunked {
    data: Vec<u8>,
    pos: usize,
    sizes: Vec<usize>,
    turn: usize,
}

impl AsyncRead for Chunked {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        let size = me.sizes[me.turn % me.sizes.len()].max(1);
        me.turn += 1;
        let end = (me.pos + size)
            .min(me.data.len())
            .min(me.pos + buf.remaining());
        buf.put_slice(&me.data[me.pos..end]);
        me.pos = end;
        Poll::Ready(Ok(()))
    }
}

/// One byte of a line's content: anything but LF, with the awkward ones made likely.
fn content_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        4 => b' '..=b'~',
        1 => Just(b'\r'),
        1 => Just(0u8),
        1 => 1u8..0x20u8,
        1 => 0x80u8..=0xff,
    ]
    .prop_filter("no LF inside a line", |b| *b != b'\n')
}

/// A line's content: mostly short, some UTF-8, some right at the limit, some huge.
fn content() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        30 => vec(content_byte(), 0..300),
        10 => "\\PC{0,80}".prop_map(String::into_bytes),
        4 => (MAX_READ_LINE - 3..MAX_READ_LINE + 3, content_byte())
            .prop_map(|(n, b)| vec![b; n]),
        // Rare: each costs thousands of reads in small chunks.
        1 => (0usize..100_000, content_byte()).prop_map(|(n, b)| vec![b; n]),
    ]
}

fn terminator() -> impl Strategy<Value = &'static [u8]> {
    prop_oneof![Just(&b"\r\n"[..]), Just(&b"\n"[..])]
}

/// What the reader should say for one line: its content without trailing CRs, or nothing
/// (`None`) when the line with its terminator is over the limit.
fn expected(content: &[u8], term: &[u8]) -> Option<Vec<u8>> {
    if content.len() + term.len() > MAX_READ_LINE {
        return None;
    }
    let mut line = content.to_vec();
    while line.last() == Some(&b'\r') {
        line.pop();
    }
    Some(line)
}

fn read_all(data: Vec<u8>, sizes: Vec<usize>) -> Vec<Option<Vec<u8>>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let mut reader = LineReader::new(Chunked {
            data,
            pos: 0,
            sizes,
            turn: 0,
        });
        let mut out = Vec::new();
        while let Some(line) = reader
            .next_line()
            .await
            .expect("reading memory cannot fail")
        {
            out.push(line);
        }
        out
    })
}

fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    vec(
        prop_oneof![1 => 1usize..8, 2 => 8usize..600, 2 => 600usize..40_000],
        1..8,
    )
}

/// A prefix a real server would give us: nick up to NICKLEN 30, user up to USERLEN 12, a
/// hostname up to 63 bytes or unknown.
fn self_prefix() -> impl Strategy<Value = SelfPrefix> {
    (
        "[a-zA-Z\\[\\]`_^{|}][a-zA-Z0-9\\[\\]`_^{|}-]{0,29}",
        "[a-z][a-z0-9]{0,11}",
        proptest::option::of("[a-z0-9.:-]{1,63}"),
    )
        .prop_map(|(nick, user, host)| SelfPrefix { nick, user, host })
}

/// The name of the relayed author: from any network, so any length and any characters.
fn relayed_nick() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z]{1,12}",
        2 => "\\PC{0,40}",
        1 => "\\PC{100,400}",
        1 => ".{0,30}",
    ]
}

/// Text to relay: words, long words, multi-byte characters, mIRC codes, newlines, NUL, CR.
fn relayed_text() -> impl Strategy<Value = String> {
    let word = prop_oneof![
        4 => "[a-z]{1,12}",
        2 => "\\PC{1,20}",
        1 => "[é漢🎉x]{50,400}",
        1 => "[a-z]{300,700}",
        1 => "[\\x02\\x03\\x0f\\x1d\\x1f0-9,]{1,8}",
        1 => "[\\r\\n\\x00\\t]{1,2}",
    ];
    vec(word, 0..60).prop_map(|words| words.join(" "))
}

fn render_config() -> impl Strategy<Value = RenderConfig> {
    (
        prop_oneof![Just(Formatting::Keep), Just(Formatting::Strip)],
        prop_oneof![Just(String::new()), Just("\u{200B}".to_owned())],
        any::<bool>(),
    )
        .prop_map(|(formatting, anti_highlight, nick_colors)| RenderConfig {
            formatting,
            anti_highlight,
            nick_colors,
            max_lines: 10_000,
            ..RenderConfig::default()
        })
}

fn delivery(room: &str, nick: &str, kind: Kind) -> Delivery {
    let mut inbound = Inbound::message("#src", Author::named(nick), RichText::plain(""));
    inbound.kind = kind;
    Delivery {
        room: room.to_owned(),
        event: Event::from_inbound("irc.a", inbound),
        nick: nick.to_owned(),
        route: "r".into(),
        quote: None,
    }
}

/// The line as other clients receive it, for the 512-byte check.
fn as_relayed(me: &SelfPrefix, line: &str) -> String {
    let host = me.host.clone().unwrap_or_else(|| "h".repeat(63));
    format!(":{}!~{}@{} {line}\r\n", me.nick, me.user, host)
}

/// Whether `whole` is `pieces` joined, each joint being nothing or one space.
fn joins_with_optional_spaces(whole: &str, pieces: &[String]) -> bool {
    match pieces.split_first() {
        None => whole.is_empty(),
        Some((first, rest)) => {
            let Some(after) = whole.strip_prefix(first.as_str()) else {
                return false;
            };
            if rest.is_empty() {
                // Spaces at the end of the line may go with the last cut.
                return after.chars().all(|c| c == ' ');
            }
            joins_with_optional_spaces(after, rest)
                || after
                    .strip_prefix(' ')
                    .is_some_and(|a| joins_with_optional_spaces(a, rest))
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_reader_yields_each_line_whatever_the_chunking(
        lines in vec((content(), terminator()), 0..12),
        tail in vec(content_byte(), 0..20),
        sizes in chunk_sizes(),
    ) {
        let mut data = Vec::new();
        for (content, term) in &lines {
            data.extend_from_slice(content);
            data.extend_from_slice(term);
        }
        data.extend_from_slice(&tail);
        let got = read_all(data, sizes);
        let want: Vec<_> = lines.iter().map(|(c, t)| expected(c, t)).collect();
        prop_assert_eq!(got.len(), want.len());
        for (i, (got, want)) in got.iter().zip(&want).enumerate() {
            prop_assert!(got == want, "line {}: got {:?} bytes, want {:?} bytes",
                i, got.as_ref().map(Vec::len), want.as_ref().map(Vec::len));
            if let Some(line) = got {
                prop_assert!(!line.contains(&b'\n'));
                prop_assert!(line.len() < MAX_READ_LINE);
            }
        }
    }

    #[test]
    fn the_reader_takes_any_bytes(
        seed in any::<u64>(),
        len in 0usize..4000,
        framing_only in any::<bool>(),
        sizes in chunk_sizes(),
    ) {
        // Drawn from a seed: proptest's own byte vectors this long are slow to build.
        let mut state = seed | 1;
        let data: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                if framing_only {
                    b"\r\n\0a"[(state % 4) as usize]
                } else {
                    (state >> 24) as u8
                }
            })
            .collect();
        let newlines = data.iter().filter(|b| **b == b'\n').count();
        let got = read_all(data, sizes);
        prop_assert_eq!(got.len(), newlines);
        for line in got.into_iter().flatten() {
            prop_assert!(!line.contains(&b'\n'));
            prop_assert!(!line.ends_with(b"\r"));
        }
    }

    #[test]
    fn every_rendered_line_fits_what_the_server_relays(
        me in self_prefix(),
        room in "#[a-zA-Z0-9_.-]{1,49}",
        nick in relayed_nick(),
        text in relayed_text(),
        cfg in render_config(),
        which in 0usize..3,
    ) {
        let body = RichText::plain(text.clone());
        let kind = match which {
            0 => Kind::Message { body, attachments: vec![] },
            1 => Kind::Action { body },
            _ => Kind::Notice { body },
        };
        // Nothing to show (only spaces and codes) renders to nothing.
        let Some(rendered) = render::render(&delivery(&room, &nick, kind), &cfg, &me) else {
            return Ok(());
        };
        for line in rendered.lines() {
            let wire = as_relayed(&me, &line);
            prop_assert!(wire.len() <= MAX_LINE, "{} bytes: {:?}", wire.len(), wire);
            prop_assert!(!line.contains(['\r', '\n', '\0']), "{:?}", line);
        }
    }

    #[test]
    fn rendered_pieces_give_the_text_back(
        me in self_prefix(),
        room in "#[a-z0-9]{1,49}",
        nick in "[a-z]{1,20}",
        text in vec(prop_oneof![
            4 => "[a-z]{1,12}",
            2 => "[é漢🎉ß]{1,30}",
            1 => "[a-zé漢🎉]{300,900}",
        ], 1..80).prop_map(|w| w.join(" ")),
    ) {
        let cfg = RenderConfig {
            formatting: Formatting::Strip,
            anti_highlight: String::new(),
            max_lines: 10_000,
            ..RenderConfig::default()
        };
        let kind = Kind::Message { body: RichText::plain(text.clone()), attachments: vec![] };
        let rendered = render::render(&delivery(&room, &nick, kind), &cfg, &me)
            .expect("a message with words renders");
        let lead = format!("<{nick}> ");
        let mut pieces = Vec::new();
        for payload in &rendered.payloads {
            let piece = payload.strip_prefix(lead.as_str());
            prop_assert!(piece.is_some(), "every piece starts with the nick: {:?}", payload);
            pieces.push(piece.unwrap_or_default().to_owned());
        }
        prop_assert!(joins_with_optional_spaces(&text, &pieces),
            "pieces {:?} do not give back {:?}", pieces, text);
    }

    #[test]
    fn split_keeps_plain_text_and_closes_formatting(
        text in vec(prop_oneof![
            4 => "[a-z ]{1,12}",
            2 => "[é漢🎉]{1,10}",
            2 => prop_oneof![
                Just("\x02".to_owned()), Just("\x1d".to_owned()), Just("\x1f".to_owned()),
                Just("\x0f".to_owned()), Just("\x03".to_owned()),
                "\x03[0-9]{1,2}(,[0-9]{1,2})?",
            ],
        ], 1..60).prop_map(|w| w.concat()),
        budget in 16usize..200,
    ) {
        let chunks = render::split_line(&text, budget);
        for chunk in &chunks {
            prop_assert!(chunk.len() <= budget, "{} > {}: {:?}", chunk.len(), budget, chunk);
        }
        let plain: Vec<String> = chunks.iter().map(|c| mirc::strip(c)).collect();
        prop_assert!(joins_with_optional_spaces(&mirc::strip(&text), &plain),
            "plain pieces {:?} do not give back {:?}", plain, mirc::strip(&text));
    }
}

/// Cases the properties found, kept.
mod found {
    use super::*;

    fn render_as(nick: &str, text: &str) -> Vec<String> {
        let me = SelfPrefix {
            nick: "pb".into(),
            user: "pb".into(),
            host: None,
        };
        let kind = Kind::Message {
            body: RichText::plain(text),
            attachments: vec![],
        };
        let cfg = RenderConfig {
            anti_highlight: String::new(),
            ..RenderConfig::default()
        };
        render::render(&delivery("#c", nick, kind), &cfg, &me)
            .map(|r| r.lines().iter().map(|l| as_relayed(&me, l)).collect())
            .unwrap_or_default()
    }

    #[test]
    fn a_relayed_name_longer_than_the_line_is_cut_so_lines_fit() {
        let lines = render_as(&"名".repeat(200), &"word ".repeat(200));
        assert!(lines.len() > 1);
        for line in lines {
            assert!(line.len() <= MAX_LINE, "{} bytes", line.len());
            assert!(line.contains("word"));
        }
    }

    #[test]
    fn a_line_break_in_a_relayed_name_cannot_end_the_irc_line() {
        let lines = render_as("eve\r\nQUIT :bye\0", "hi");
        assert_eq!(lines.len(), 1);
        assert!(
            !lines[0]
                .trim_end_matches("\r\n")
                .contains(['\r', '\n', '\0'])
        );
    }
}
