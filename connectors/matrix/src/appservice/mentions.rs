//! Mentions both ways (pure).
//!
//! - Outbound: a remote line naming a bridged nick (`bob: hi` on IRC) gets a mention span of
//!   bob's ghost, which the HTML writer turns into a pill and `m.mentions` into a notification.
//! - Inbound: a pill of a ghost in Matrix HTML becomes the plain remote nick, which is how the
//!   other network writes a mention.

use patchbay_sdk::RichText;
use patchbay_sdk::text::{Block, Span, SpanKind};

/// A ghost that can be mentioned: its remote nick, user id and Matrix display name.
pub struct Mentionable<'a> {
    pub nick: &'a str,
    pub user: &'a str,
    pub display_name: &'a str,
}

fn paragraphs(blocks: &mut [Block], f: &mut dyn FnMut(&mut Vec<Span>)) {
    for block in blocks {
        match block {
            Block::Paragraph { spans } => f(spans),
            Block::Quote { blocks } => paragraphs(blocks, f),
            Block::List { items, .. } => items.iter_mut().for_each(|item| paragraphs(item, f)),
            Block::Code { .. } => {}
        }
    }
}

/// Replace mentions of ghosts by their remote nick: `nick_of` gives the nick of a ghost user
/// id, `None` for anyone else (whose mention stays).
pub fn to_remote(text: &mut RichText, nick_of: &dyn Fn(&str) -> Option<String>) {
    paragraphs(&mut text.blocks, &mut |spans| {
        for span in spans.iter_mut() {
            if let SpanKind::Mention { id } = &span.kind
                && let Some(nick) = nick_of(id)
            {
                span.text = nick;
                span.kind = SpanKind::Text;
            }
        }
    });
}

/// Characters IRC allows in nicks: a nick is only found with none of them on either side.
fn is_nick_char(c: char) -> bool {
    c.is_alphanumeric() || "-_[]\\`^{}|".contains(c)
}

/// The first whole-word, ASCII-case-insensitive occurrence of `nick` in `text`.
fn find_word(text: &str, nick: &str) -> Option<usize> {
    let lower = text.to_ascii_lowercase();
    let needle = nick.to_ascii_lowercase();
    let mut from = 0;
    while let Some(found) = lower[from..].find(&needle) {
        let start = from + found;
        let end = start + needle.len();
        let before = text[..start].chars().next_back();
        let after = text[end..].chars().next();
        if !before.is_some_and(is_nick_char) && !after.is_some_and(is_nick_char) {
            return Some(start);
        }
        from = start + lower[start..].chars().next().map_or(1, char::len_utf8);
    }
    None
}

/// Turn whole-word occurrences of the ghosts' nicks in plain text into mentions of them.
/// Nicks shorter than two characters are left alone (too many false hits).
pub fn to_pills(text: &mut RichText, ghosts: &[Mentionable<'_>]) {
    let ghosts: Vec<&Mentionable<'_>> = ghosts
        .iter()
        .filter(|g| g.nick.chars().count() >= 2)
        .collect();
    if ghosts.is_empty() {
        return;
    }
    paragraphs(&mut text.blocks, &mut |spans| {
        let mut out = Vec::with_capacity(spans.len());
        for span in spans.drain(..) {
            if span.kind != SpanKind::Text {
                out.push(span);
                continue;
            }
            let mut rest = span.text.as_str();
            loop {
                let hit = ghosts
                    .iter()
                    .filter_map(|g| find_word(rest, g.nick).map(|at| (at, *g)))
                    .min_by_key(|(at, g)| (*at, usize::MAX - g.nick.len()));
                let Some((at, ghost)) = hit else {
                    if !rest.is_empty() {
                        out.push(Span {
                            text: rest.to_owned(),
                            ..span.clone()
                        });
                    }
                    break;
                };
                if at > 0 {
                    out.push(Span {
                        text: rest[..at].to_owned(),
                        ..span.clone()
                    });
                }
                out.push(Span {
                    text: ghost.display_name.to_owned(),
                    style: span.style,
                    kind: SpanKind::Mention {
                        id: ghost.user.to_owned(),
                    },
                });
                rest = &rest[at + ghost.nick.len()..];
            }
        }
        *spans = out;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bob() -> Mentionable<'static> {
        Mentionable {
            nick: "bob",
            user: "@_pb_bob:x",
            display_name: "[irc] bob",
        }
    }

    #[test]
    fn a_named_nick_becomes_a_pill() {
        let mut text = RichText::plain("bob: look, Bob! not bobby");
        to_pills(&mut text, &[bob()]);
        let spans = text.spans();
        let kinds: Vec<(&str, bool)> = spans
            .iter()
            .map(|s| (s.text.as_str(), matches!(s.kind, SpanKind::Mention { .. })))
            .collect();
        assert_eq!(
            kinds,
            [
                ("[irc] bob", true),
                (": look, ", false),
                ("[irc] bob", true),
                ("! not bobby", false)
            ]
        );
    }

    #[test]
    fn a_ghost_pill_becomes_the_plain_nick() {
        let mut text = RichText::from_spans(vec![
            Span {
                text: "[irc] bob".into(),
                style: Default::default(),
                kind: SpanKind::Mention {
                    id: "@_pb_bob:x".into(),
                },
            },
            Span::text(": hi "),
            Span {
                text: "Carol".into(),
                style: Default::default(),
                kind: SpanKind::Mention {
                    id: "@carol:x".into(),
                },
            },
        ]);
        to_remote(&mut text, &|id| {
            (id == "@_pb_bob:x").then(|| "bob".to_owned())
        });
        assert_eq!(text.to_plain(), "bob: hi Carol");
        assert!(matches!(text.spans()[2].kind, SpanKind::Mention { .. }));
    }
}
