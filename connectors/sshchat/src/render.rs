//! Deliveries → what to type or send. Pure.
//!
//! Both servers read a terminal line: control characters in relayed text could end the line early
//! or move the cursor, so they are removed; Devzat runs a line's first word as a command, so a
//! relayed line starting with a command word gets a zero-width space in front; ssh-chat refuses
//! lines over 1024 bytes, so longer ones are split.

use patchbay_sdk::text::markdown::to_markdown;
use patchbay_sdk::{Delivery, Kind};

use crate::hops::{self, ZWSP};

/// ssh-chat's longest accepted input line, in bytes.
pub const SSH_CHAT_MAX_LINE: usize = 1024;
/// What one Devzat line may grow to at most (the server takes 4096 runes); the pty width lowers
/// it further, see [`devzat_budget`].
pub const DEVZAT_MAX_LINE: usize = 3000;

/// Bytes one typed Devzat line may take: the terminal echoes what is typed after the prompt
/// `name: ` and wraps it at the pty width with a line break, and a wrapped echo would come back
/// as a line that looks like someone else's message. A UTF-8 byte count never undercounts the
/// columns a string takes, so this keeps the echo on one row.
pub fn devzat_budget(pty_width: u32, nick: &str) -> usize {
    // Room for the prompt, a digit or two added on a name clash, and the cursor.
    let budget = (pty_width as usize).saturating_sub(nick.len() + 6);
    budget.clamp(40, DEVZAT_MAX_LINE)
}

/// Devzat's built-in command words (from its command tables). Plugins register more, under
/// names nobody can list in advance, so [`neutralise_devzat`] also treats any command-like first
/// word as one.
const DEVZAT_COMMANDS: &[&str] = &[
    "users", "color", "colour", "exit", "help", "man", "emojis", "bell", "clear", "hang", "tic",
    "devmonk", "cd", "tz", "nick", "su", "prompt", "pronouns", "theme", "rest", "bio", "id",
    "admins", "eg-code", "lsbans", "ban", "unban", "mute", "unmute", "kick", "art", "pwd", "shrug",
    "uname", "uptime", "8ball", "rmdir", "logs", "ls", "cat", "rm", "neofetch", ":q", ":wq",
    "cmds", "plugins", "grant", "revoke", "lstokens",
];

/// A word Devzat could run: a built-in, or shaped like a plugin's command name.
fn is_command_like(word: &str) -> bool {
    let core = word.strip_prefix(':').unwrap_or(word);
    DEVZAT_COMMANDS.contains(&word)
        || (!core.is_empty()
            && word.len() <= 16
            && core
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b)))
}

/// What a delivery becomes: a name to show and the text, or nothing for kinds a plain chat
/// cannot show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// The relayed author's display name (the route-formatted nick).
    pub nick: String,
    /// Markdown text, possibly several lines.
    pub text: String,
    /// The invisible hop trace to end each sent line with (empty when off).
    pub trailer: String,
}

/// Turn a delivery into a name and Markdown text; `None` for kinds with nothing to show
/// (deletes, reactions, topics).
///
/// `markdown`: Devzat renders Markdown, so the text is written as Markdown; ssh-chat shows text
/// as typed, so it gets the plain view.
pub fn outgoing(delivery: &Delivery, markdown: bool) -> Option<Outgoing> {
    let nick = clean(&delivery.nick).replace('\n', " ");
    let body = |kind: &Kind| {
        kind.body()
            .map(|b| {
                if markdown {
                    to_markdown(b)
                } else {
                    b.to_plain()
                }
            })
            .unwrap_or_default()
    };
    let mut text = match &delivery.event.kind {
        Kind::Message { attachments, .. } => {
            let mut text = body(&delivery.event.kind);
            for file in attachments {
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(&file.url);
            }
            text
        }
        Kind::Action { .. } if markdown => format!("_{}_", body(&delivery.event.kind).trim()),
        Kind::Action { .. } => format!("* {}", body(&delivery.event.kind).trim()),
        Kind::Notice { .. } => body(&delivery.event.kind),
        Kind::Edit { .. } => format!("{} (edited)", body(&delivery.event.kind)),
        Kind::Join => "joined".to_owned(),
        Kind::Part { reason } => match reason {
            Some(reason) if !reason.is_empty() => format!("left ({reason})"),
            _ => "left".to_owned(),
        },
        Kind::Nick { new, .. } => format!("is now known as {new}"),
        Kind::Delete { .. } | Kind::Reaction { .. } | Kind::Topic { .. } => return None,
    };
    if let Some(quote) = &delivery.quote {
        let mut short: String = quote.text.replace('\n', " ").chars().take(60).collect();
        if quote.text.chars().count() > 60 {
            short.push('…');
        }
        text = format!("(re {}: {}) {}", quote.author, short, text);
    }
    let text = clean(&text);
    if text.trim().is_empty() {
        return None;
    }
    Some(Outgoing {
        nick,
        text,
        trailer: hops::trailer(&delivery.event.hops),
    })
}

/// Remove control characters except line breaks (which callers handle per dialect).
pub fn clean(text: &str) -> String {
    text.replace("\r\n", "\n")
        .chars()
        .filter(|c| *c == '\n' || !c.is_control())
        .collect()
}

/// Put a zero-width space before a first word Devzat would run as a command.
pub fn neutralise_devzat(text: &str) -> String {
    let first = text.split_whitespace().next().unwrap_or("");
    if first.starts_with('=') || first.starts_with('/') || is_command_like(first) {
        format!("{ZWSP}{text}")
    } else {
        text.to_owned()
    }
}

/// ssh-chat runs lines starting with `/`.
pub fn neutralise_ssh_chat(text: &str) -> String {
    if text.starts_with('/') {
        format!("{ZWSP}{text}")
    } else {
        text.to_owned()
    }
}

/// Typed lines for Devzat's terminal: `nick: text`, its line breaks written as Devzat's `\n`
/// escape, cut to `budget` bytes, each piece's first word neutralised and ending with the
/// invisible hop trace.
pub fn devzat_lines(out: &Outgoing, budget: usize) -> Vec<String> {
    let text = out.text.trim_end().replace('\n', "\\n");
    let line = if out.nick.is_empty() {
        text
    } else {
        format!("{}: {}", out.nick, text)
    };
    let room = budget.saturating_sub(out.trailer.len()).max(16);
    let mut pieces = split_bytes(&line, room);
    // Never leave an escape's backslash at the end of a piece and its `n` at the start of the next.
    for i in 0..pieces.len().saturating_sub(1) {
        if pieces[i].ends_with('\\') && !pieces[i].ends_with("\\\\") {
            pieces[i].pop();
            pieces[i + 1].insert(0, '\\');
        }
    }
    pieces
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .map(|p| format!("{}{}", neutralise_devzat(&p), out.trailer))
        .collect()
}

/// Lines for ssh-chat: one per line of text, each `nick: line`, none over 1024 bytes.
pub fn ssh_chat_lines(out: &Outgoing) -> Vec<String> {
    let mut lines = Vec::new();
    for text_line in out.text.lines().filter(|l| !l.trim().is_empty()) {
        let line = if out.nick.is_empty() {
            text_line.to_owned()
        } else {
            format!("{}: {}", out.nick, text_line)
        };
        let budget = SSH_CHAT_MAX_LINE.saturating_sub(out.trailer.len()).max(64);
        for piece in split_bytes(&line, budget) {
            lines.push(format!("{}{}", neutralise_ssh_chat(&piece), out.trailer));
        }
    }
    lines
}

/// Split `text` into pieces of at most `max` bytes (leaving room for a neutralising character),
/// at whitespace where there is some, never inside a character.
pub fn split_bytes(text: &str, max: usize) -> Vec<String> {
    let budget = max.saturating_sub(ZWSP.len_utf8()).max(4);
    let mut pieces = Vec::new();
    let mut rest = text;
    while rest.len() > budget {
        let mut cut = budget;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let window = &rest[..cut];
        let at = match window.rfind(' ') {
            Some(space) if space > budget / 2 => space,
            _ => cut,
        };
        pieces.push(rest[..at].trim_end().to_owned());
        rest = rest[at..].trim_start();
    }
    if !rest.is_empty() {
        pieces.push(rest.to_owned());
    }
    pieces
}

/// Merge queued lines into as few lines as fit in `max` bytes, joined with `sep`. Used when
/// the rate limit leaves fewer sends than there are lines waiting: nothing is dropped.
pub fn merge(lines: &mut std::collections::VecDeque<String>, sep: &str, max: usize) -> String {
    let mut merged = lines.pop_front().unwrap_or_default();
    while let Some(next) = lines.front() {
        if merged.len() + sep.len() + next.len() > max {
            break;
        }
        merged.push_str(sep);
        merged.push_str(next);
        lines.pop_front();
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use patchbay_sdk::{Author, Event, Inbound, Quote, RichText};
    use proptest::prelude::*;

    fn delivery(nick: &str, text: &str) -> Delivery {
        let inbound = Inbound::message("#main", Author::named("alice"), RichText::plain(text));
        Delivery {
            room: "#main".into(),
            event: Event::from_inbound("irc.net", inbound),
            nick: nick.into(),
            route: "r".into(),
            quote: None,
        }
    }

    #[test]
    fn command_words_are_neutralised() {
        assert_eq!(neutralise_devzat("cd #secret"), format!("{ZWSP}cd #secret"));
        assert_eq!(neutralise_devzat("=bob psst"), format!("{ZWSP}=bob psst"));
        assert_eq!(
            neutralise_devzat("8ball will it?"),
            format!("{ZWSP}8ball will it?")
        );
        // A plugin's command could be any lowercase word.
        assert_eq!(
            neutralise_devzat("weather paris"),
            format!("{ZWSP}weather paris")
        );
        assert_eq!(neutralise_devzat("Hello there"), "Hello there");
        assert_eq!(neutralise_devzat("bob: hi"), "bob: hi");
        assert_eq!(neutralise_devzat("[irc] bob: cd #x"), "[irc] bob: cd #x");
        assert_eq!(neutralise_ssh_chat("/nick x"), format!("{ZWSP}/nick x"));
    }

    #[test]
    fn devzat_line_escapes_breaks_and_strips_controls() {
        let out =
            outgoing(&delivery("[irc] alice", "one\r\ntwo\x1b[2Jthree\x07"), true).expect("text");
        assert_eq!(
            devzat_lines(&out, 1000),
            ["[irc] alice: one\\ntwo\\[2Jthree"]
        );
        let out = outgoing(&delivery("", "clear everything"), true).expect("text");
        assert_eq!(
            devzat_lines(&out, 1000),
            [format!("{ZWSP}clear everything")]
        );
        // A long message is cut under the budget, every piece neutralised on its own.
        let long = format!("{} cd #x", "word ".repeat(30));
        let out = outgoing(&delivery("", &long), true).expect("text");
        let pieces = devzat_lines(&out, 60);
        assert!(pieces.len() > 2 && pieces.iter().all(|p| p.len() <= 60));
        assert_eq!(devzat_budget(1000, "bridge"), 988);
        assert_eq!(devzat_budget(80, "bridge"), 68);
    }

    #[test]
    fn quotes_and_kinds() {
        let mut d = delivery("bob", "agreed");
        d.quote = Some(Quote {
            author: "alice".into(),
            text: "shall we?".into(),
        });
        assert_eq!(
            outgoing(&d, true).expect("text").text,
            "(re alice: shall we?) agreed"
        );
        d.event.kind = patchbay_sdk::Kind::Delete {
            target: patchbay_sdk::MessageRef::Native("x".into()),
        };
        assert_eq!(outgoing(&d, true), None);
    }

    #[test]
    fn ssh_chat_lines_split_long_text_and_lines() {
        let long = "word ".repeat(500);
        let out = outgoing(&delivery("[irc] al", &format!("a\n{long}")), false).expect("text");
        let lines = ssh_chat_lines(&out);
        assert_eq!(lines[0], "[irc] al: a");
        assert!(lines.len() >= 4);
        assert!(lines.iter().all(|l| l.len() <= SSH_CHAT_MAX_LINE));
    }

    #[test]
    fn merge_takes_what_fits() {
        let mut q: std::collections::VecDeque<String> = ["a: 1", "b: 2", "c: 3"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(merge(&mut q, " | ", 11), "a: 1 | b: 2");
        assert_eq!(merge(&mut q, " | ", 11), "c: 3");
        assert!(q.is_empty());
    }

    proptest! {
        #[test]
        fn split_keeps_every_word_and_the_limit(text in "\\PC{0,3000}", max in 8usize..1100) {
            let pieces = split_bytes(&text, max);
            for piece in &pieces {
                prop_assert!(piece.len() <= max);
            }
            let joined: String = pieces.concat().split_whitespace().collect();
            let want: String = text.split_whitespace().collect();
            prop_assert_eq!(joined, want);
        }
    }
}
