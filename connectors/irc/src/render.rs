//! Delivery → IRC lines (pure).
//!
//! A delivery becomes one `PRIVMSG`/`NOTICE` command sent as one or more lines: the text is
//! rendered to mIRC codes (or plain text), every line is prefixed with the relayed nick
//! (anti-highlighted, optionally coloured), and lines longer than the protocol allows are split
//! on UTF-8 and word boundaries with formatting carried across the cut. The byte budget comes
//! from how the server will relay us: `:nick!user@host PRIVMSG #chan :text\r\n` must fit 512.

use patchbay_sdk::{Delivery, Kind};

use crate::config::{Formatting, RenderConfig};
use crate::mirc::{self, Atom, State};

/// The most bytes an IRC line may have, CRLF included.
pub const MAX_LINE: usize = 512;

/// The ctcp wrapper around an action: `\x01ACTION ` ... `\x01`.
const ACTION_OVERHEAD: usize = 9;

/// How the server sees us, for the byte budget. Unknown parts take their usual maximum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelfPrefix {
    pub nick: String,
    pub user: String,
    pub host: Option<String>,
}

impl SelfPrefix {
    /// Length of `:nick!user@host ` as other clients receive it.
    pub fn len(&self) -> usize {
        // A server may prefix the user name with `~` when ident is missing; hosts are at most 63.
        let host = self.host.as_ref().map_or(63, String::len);
        1 + self.nick.len() + 2 + self.user.len() + 1 + host + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

/// The IRC command a delivery is sent with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Privmsg,
    Notice,
}

impl Command {
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Privmsg => "PRIVMSG",
            Command::Notice => "NOTICE",
        }
    }
}

/// What one delivery becomes on IRC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    pub command: Command,
    pub target: String,
    /// The text parameter of each line, CTCP wrapping included.
    pub payloads: Vec<String>,
}

impl Rendered {
    /// The wire lines, without CRLF.
    pub fn lines(&self) -> Vec<String> {
        self.payloads
            .iter()
            .map(|p| format!("{} {} :{}", self.command.as_str(), self.target, p))
            .collect()
    }
}

/// Make a relayed nick not highlight anyone: put `mark` after the first letter or digit of each
/// word. Optionally colour it by a hash of the name.
pub fn decorate_nick(nick: &str, cfg: &RenderConfig) -> String {
    let mut out = String::with_capacity(nick.len() + 8);
    if !cfg.anti_highlight.is_empty() {
        let mut marked_word = false;
        let mut chars = nick.chars().peekable();
        while let Some(c) = chars.next() {
            out.push(c);
            if c.is_whitespace() {
                marked_word = false;
            } else if !marked_word && c.is_alphanumeric() {
                marked_word = true;
                if chars.peek().is_some_and(|n| !n.is_whitespace()) {
                    out.push_str(&cfg.anti_highlight);
                }
            }
        }
    } else {
        out.push_str(nick);
    }
    if cfg.nick_colors && cfg.formatting == Formatting::Keep {
        // Colours readable on both light and dark backgrounds.
        const COLOURS: [u8; 10] = [2, 3, 4, 5, 6, 7, 10, 12, 13, 14];
        let hash = nick.bytes().fold(2166136261u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(16777619)
        });
        let colour = COLOURS[(hash % COLOURS.len() as u32) as usize];
        out = format!("\x03{colour:02}{out}\x03");
    }
    out
}

fn cut_chars(text: &str, max: usize) -> String {
    let text = text.replace(['\r', '\n'], " ");
    if text.chars().count() <= max {
        return text;
    }
    let mut out: String = text.chars().take(max).collect();
    out.push('…');
    out
}

/// Render one delivery for `target`, or `None` when IRC has nothing to show for it (deletes).
pub fn render(delivery: &Delivery, cfg: &RenderConfig, me: &SelfPrefix) -> Option<Rendered> {
    let keep = cfg.formatting == Formatting::Keep;
    // A relayed name is another network's text: a line break in it would end the IRC line.
    let nick = decorate_nick(&delivery.nick.replace(['\r', '\n', '\0'], " "), cfg);
    let event = &delivery.event;
    let (command, action, lead, text) = match &event.kind {
        Kind::Message { body, attachments } => {
            let mut text = mirc::render(body, keep);
            for a in attachments {
                if !text.is_empty() {
                    text.push('\n');
                }
                match &a.name {
                    Some(name) => text.push_str(&format!("{name}: {}", a.url)),
                    None => text.push_str(&a.url),
                }
            }
            (Command::Privmsg, false, format!("<{nick}> "), text)
        }
        Kind::Action { body } => (
            Command::Privmsg,
            true,
            format!("{nick} "),
            mirc::render(body, keep),
        ),
        Kind::Notice { body } => (
            Command::Notice,
            false,
            format!("<{nick}> "),
            mirc::render(body, keep),
        ),
        Kind::Edit { body, .. } => (
            Command::Privmsg,
            false,
            format!("<{nick}> "),
            format!("{}{}", cfg.edit_prefix, mirc::render(body, keep)),
        ),
        // IRC cannot take a line back: say it was deleted, without repeating it (a line
        // deleted as spam is not posted again).
        Kind::Delete { .. } => (
            Command::Notice,
            false,
            String::new(),
            format!("*** {nick} deleted a message"),
        ),
        Kind::Reaction { emoji, .. } => (
            Command::Privmsg,
            true,
            format!("{nick} "),
            match &delivery.quote {
                Some(q) => format!(
                    "reacted {emoji} to {}: \"{}\"",
                    q.author,
                    cut_chars(&q.text, cfg.reply_quote_chars)
                ),
                None => format!("reacted {emoji}"),
            },
        ),
        Kind::Join => (
            Command::Notice,
            false,
            String::new(),
            format!("*** {nick} joined"),
        ),
        Kind::Part { reason } => (
            Command::Notice,
            false,
            String::new(),
            match reason {
                Some(r) if !r.is_empty() => format!("*** {nick} left ({r})"),
                _ => format!("*** {nick} left"),
            },
        ),
        Kind::Topic { topic } => (
            Command::Notice,
            false,
            String::new(),
            format!("*** {nick} set the topic: {topic}"),
        ),
        Kind::Nick { old, new } => (
            Command::Notice,
            false,
            String::new(),
            format!(
                "*** {} is now known as {}",
                decorate_nick(old, cfg),
                decorate_nick(new, cfg)
            ),
        ),
    };
    let mut text = text;
    if let (Some(quote), Some(_)) = (&delivery.quote, &event.reply_to)
        && !matches!(event.kind, Kind::Reaction { .. })
    {
        let short = cut_chars(&quote.text, cfg.reply_quote_chars);
        let author = decorate_nick(&quote.author, cfg);
        text = format!("[re {author}: \"{short}\"] {text}");
    }
    if !keep {
        text = mirc::strip(&text);
    }
    let text = text.replace(['\r', '\0'], "");
    let overhead = me.len()
        + command.as_str().len()
        + 1
        + delivery.room.len()
        + 2
        + 2
        + if action { ACTION_OVERHEAD } else { 0 };
    let budget = MAX_LINE.saturating_sub(overhead);
    // Other networks allow names of any length: one longer than half the line is cut, so that
    // every line still fits and holds text.
    let lead = if lead.len() > budget / 2 {
        let cut = split_line(&lead, (budget / 2).saturating_sub(4).max(1));
        format!("{}… ", cut.first().map_or("", String::as_str))
    } else {
        lead
    };
    let mut payloads = Vec::new();
    for line in text.split('\n') {
        if line.trim().is_empty() {
            continue;
        }
        for chunk in split_line(line, budget.saturating_sub(lead.len()).max(16)) {
            payloads.push(format!("{lead}{chunk}"));
        }
    }
    if payloads.is_empty() {
        return None;
    }
    if payloads.len() > cfg.max_lines {
        let cut = payloads.len() - cfg.max_lines;
        payloads.truncate(cfg.max_lines);
        payloads.push(format!(
            "{lead}[{cut} more line{} cut]",
            if cut == 1 { "" } else { "s" }
        ));
    }
    if action {
        payloads = payloads
            .into_iter()
            .map(|p| format!("\x01ACTION {p}\x01"))
            .collect();
    }
    Some(Rendered {
        command,
        target: delivery.room.clone(),
        payloads,
    })
}

fn atom_len(atom: &Atom<'_>) -> usize {
    match atom {
        Atom::Code(c) => c.len(),
        Atom::Char(c) => c.len_utf8(),
    }
}

fn push_atoms(out: &mut String, atoms: &[Atom<'_>]) {
    for atom in atoms {
        match atom {
            Atom::Code(c) => out.push_str(c),
            Atom::Char(c) => out.push(*c),
        }
    }
}

/// Split one line of IRC text into chunks of at most `budget` bytes, preferring to cut after a
/// space in the second half of a chunk, never inside a UTF-8 character or a format code. The
/// formatting active at a cut is closed with a reset and re-opened on the next chunk.
pub fn split_line(line: &str, budget: usize) -> Vec<String> {
    let atoms = mirc::atoms(line);
    let mut out = Vec::new();
    let mut start = 0;
    let mut carry = State::default();
    while start < atoms.len() {
        let head = carry.codes();
        let mut len = head.len();
        let mut state = carry;
        let mut end = start;
        // (index after the space, state there, bytes used up to it)
        let mut last_space: Option<(usize, State, usize)> = None;
        while end < atoms.len() {
            let atom = atoms[end];
            // Keep one byte for the reset that may close the chunk.
            if len + atom_len(&atom) + 1 > budget {
                break;
            }
            len += atom_len(&atom);
            if let Atom::Code(code) = atom {
                state.apply(code);
            }
            end += 1;
            if atom == Atom::Char(' ') {
                last_space = Some((end, state, len));
            }
        }
        let mut chunk = head;
        if end == atoms.len() {
            push_atoms(&mut chunk, &atoms[start..end]);
            out.push(chunk);
            break;
        }
        if end == start {
            // The budget cannot hold even one atom: send it alone rather than loop forever.
            end = start + 1;
            if let Atom::Code(code) = atoms[start] {
                state.apply(code);
            }
        }
        // Cut before a space that did not fit, else after the last space in the second half
        // of the chunk, else mid-word; the space at a cut is dropped.
        let (piece_end, next, cut_state) =
            if atoms.get(end) == Some(&Atom::Char(' ')) && end > start {
                (end, end + 1, state)
            } else {
                match last_space {
                    Some((i, st, used)) if used * 2 >= budget && i > start + 1 => (i - 1, i, st),
                    _ => (end, end, state),
                }
            };
        push_atoms(&mut chunk, &atoms[start..piece_end]);
        if !cut_state.is_plain() {
            chunk.push(mirc::RESET);
        }
        out.push(chunk);
        start = next;
        carry = cut_state;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use patchbay_sdk::{Author, Event, Inbound, MessageRef, Quote, RichText};

    fn me() -> SelfPrefix {
        SelfPrefix {
            nick: "pb".into(),
            user: "pb".into(),
            host: Some("127.0.0.1".into()),
        }
    }

    fn delivery(kind: Kind) -> Delivery {
        let mut inbound = Inbound::message("#src", Author::named("alice"), RichText::plain(""));
        inbound.kind = kind;
        Delivery {
            room: "#dst".into(),
            event: Event::from_inbound("irc.a", inbound),
            nick: "alice".into(),
            route: "r".into(),
            quote: None,
        }
    }

    fn msg(text: &str) -> Kind {
        Kind::Message {
            body: RichText::plain(text),
            attachments: vec![],
        }
    }

    #[test]
    fn message_gets_anti_highlighted_nick() {
        let r = render(&delivery(msg("hello")), &RenderConfig::default(), &me()).expect("rendered");
        assert_eq!(r.lines(), vec!["PRIVMSG #dst :<a\u{200B}lice> hello"]);
        let cfg = RenderConfig {
            anti_highlight: String::new(),
            ..RenderConfig::default()
        };
        let r = render(&delivery(msg("hello")), &cfg, &me()).expect("rendered");
        assert_eq!(r.payloads, vec!["<alice> hello"]);
    }

    #[test]
    fn anti_highlight_marks_each_word() {
        let cfg = RenderConfig::default();
        assert_eq!(
            decorate_nick("[irc] bob", &cfg),
            "[i\u{200B}rc] b\u{200B}ob"
        );
        assert_eq!(decorate_nick("x", &cfg), "x");
    }

    #[test]
    fn action_notice_edit_delete() {
        let cfg = RenderConfig {
            anti_highlight: String::new(),
            ..RenderConfig::default()
        };
        let action = Kind::Action {
            body: RichText::plain("waves"),
        };
        let r = render(&delivery(action), &cfg, &me()).expect("action");
        assert_eq!(r.payloads, vec!["\x01ACTION alice waves\x01"]);
        let notice = Kind::Notice {
            body: RichText::plain("n"),
        };
        assert_eq!(
            render(&delivery(notice), &cfg, &me()).expect("n").command,
            Command::Notice
        );
        let edit = Kind::Edit {
            target: MessageRef::Native("x".into()),
            body: RichText::plain("new"),
        };
        assert_eq!(
            render(&delivery(edit), &cfg, &me()).expect("edit").payloads,
            vec!["<alice> fixed: new"]
        );
        let delete = Kind::Delete {
            target: MessageRef::Native("x".into()),
        };
        assert_eq!(
            render(&delivery(delete), &cfg, &me())
                .expect("delete")
                .payloads,
            vec!["*** alice deleted a message"]
        );
    }

    #[test]
    fn reply_quotes_the_original_briefly() {
        let cfg = RenderConfig {
            anti_highlight: String::new(),
            reply_quote_chars: 5,
            ..RenderConfig::default()
        };
        let mut d = delivery(msg("yes"));
        d.event.reply_to = Some(MessageRef::Native("m1".into()));
        d.quote = Some(Quote {
            author: "bob".into(),
            text: "is it true?".into(),
        });
        let r = render(&d, &cfg, &me()).expect("reply");
        assert_eq!(r.payloads, vec!["<alice> [re bob: \"is it…\"] yes"]);
    }

    #[test]
    fn multiline_and_cap() {
        let cfg = RenderConfig {
            anti_highlight: String::new(),
            max_lines: 2,
            ..RenderConfig::default()
        };
        let r = render(&delivery(msg("a\nb\n\nc\nd")), &cfg, &me()).expect("r");
        assert_eq!(
            r.payloads,
            vec!["<alice> a", "<alice> b", "<alice> [2 more lines cut]"]
        );
    }

    #[test]
    fn long_multibyte_lines_fit_and_keep_every_char() {
        let text: String = "é漢🎉x".repeat(300);
        let cfg = RenderConfig {
            anti_highlight: String::new(),
            ..RenderConfig::default()
        };
        let r = render(&delivery(msg(&text)), &cfg, &me()).expect("r");
        let mut joined = String::new();
        for line in r.lines() {
            let wire = format!(":{}!{}@{} {line}\r\n", me().nick, me().user, "127.0.0.1");
            assert!(wire.len() < MAX_LINE, "{} bytes", wire.len());
            joined.push_str(line.split_once(" :<alice> ").expect("prefix").1);
        }
        assert_eq!(joined, text);
    }

    #[test]
    fn split_prefers_spaces_and_carries_formatting() {
        let chunks = split_line("aaaa bbbb cccc", 11);
        assert_eq!(chunks, vec!["aaaa bbbb", "cccc"]);
        let chunks = split_line("\x02bold words here\x02 x", 12);
        assert_eq!(chunks[0], "\x02bold words\x0f");
        assert!(chunks[1].starts_with('\x02'));
        let plain: String = chunks
            .iter()
            .map(|c| mirc::strip(c))
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(plain, "bold words here x");
        // Never cut a colour code from its digits.
        for chunk in split_line(&"\x0304,05xy".repeat(20), 20) {
            assert!(!chunk.ends_with('\x03'));
            assert!(chunk.len() <= 20);
        }
    }

    #[test]
    fn nick_colour_is_stable() {
        let cfg = RenderConfig {
            nick_colors: true,
            anti_highlight: String::new(),
            ..RenderConfig::default()
        };
        let a = decorate_nick("alice", &cfg);
        assert_eq!(a, decorate_nick("alice", &cfg));
        assert!(a.starts_with('\x03') && a.ends_with('\x03'));
        assert_eq!(mirc::strip(&a), "alice");
    }
}
