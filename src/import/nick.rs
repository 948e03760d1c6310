//! `RemoteNickFormat` → `nick_format`. Pure.
//!
//! matterbridge puts its format in front of the text (`[{PROTOCOL}] <{NICK}> ` gives
//! `[irc] <alice> hello`); patchbay's connectors frame the nick themselves (IRC
//! `<nick> text`, SSH chat `nick: text`, Matrix **nick**: text, webhooks' `username`), so the
//! `<…>` or `:` around the nick and the trailing space are dropped and the rest is kept:
//! `[{protocol}] {nick}` shows `<[irc] alice> hello` on IRC.
//!
//! | matterbridge | patchbay |
//! |---|---|
//! | `{NICK}` | `{nick}` |
//! | `{NOPINGNICK}` | `{nick}` (IRC's `anti_highlight` breaks pings already) |
//! | `{PROTOCOL}` | `{protocol}` |
//! | `{BRIDGE}` | `{account}` (`irc.libera`, not `libera`) |
//! | `{GATEWAY}` | `{route}` |
//! | `{CHANNEL}` | `{room}` |
//! | `{LABEL}` | the label itself when every sender into the room has the same one |
//! | `{USERID}`, `{TENGO}` | dropped |

/// What the translation needs to know about the room the format is for.
pub struct NickContext<'a> {
    /// The `Label` of each account whose messages reach this room (`{LABEL}` is the sender's).
    pub labels: &'a [String],
    /// The destination's patchbay protocol (`irc`, `webhook`).
    pub dest_protocol: &'a str,
}

/// A patchbay nick format and how it differs from the matterbridge one.
#[derive(Debug, PartialEq, Eq)]
pub struct Translated {
    pub format: String,
    /// One sentence per difference, for the report.
    pub notes: Vec<String>,
}

/// Translate one matterbridge `RemoteNickFormat`.
pub fn translate(format: &str, ctx: &NickContext<'_>) -> Translated {
    let mut notes = Vec::new();
    let mut text = format.trim_end().to_owned();
    for (framed, bare) in [
        ("<{NICK}>", "{NICK}"),
        ("<{NOPINGNICK}>", "{NOPINGNICK}"),
        ("{NICK}:", "{NICK}"),
        ("{NOPINGNICK}:", "{NOPINGNICK}"),
    ] {
        if let Some(head) = text.strip_suffix(framed) {
            text = format!("{head}{bare}");
            notes.push(format!(
                "patchbay frames the nick itself (IRC `<nick> text`, SSH chat `nick: text`), so `{framed}` became `{bare}`"
            ));
            break;
        }
    }
    if let Some(head) = text.strip_suffix(':')
        && notes.is_empty()
    {
        text = head.trim_end().to_owned();
        notes.push("patchbay's SSH chat and Matrix connectors put `: ` after the nick themselves, so the trailing `:` was dropped".into());
    }

    let mut out = String::new();
    let mut rest = text.as_str();
    while !rest.is_empty() {
        let Some(open) = rest.find('{') else {
            push_literal(&mut out, rest);
            break;
        };
        push_literal(&mut out, &rest[..open]);
        let after = &rest[open..];
        let Some(close) = after.find('}') else {
            push_literal(&mut out, after);
            break;
        };
        let name = &after[1..close];
        match placeholder(name, ctx, &mut notes) {
            Some(replacement) => out.push_str(&replacement),
            None => push_literal(&mut out, &after[..=close]),
        }
        rest = &after[close + 1..];
    }
    if out.trim().is_empty() {
        notes.push(
            "it shows no nick at all; patchbay's connectors need one, so it became `{nick}`".into(),
        );
        out = "{nick}".into();
    }
    Translated { format: out, notes }
}

/// The patchbay text for one matterbridge placeholder; `None` for text in braces that
/// matterbridge does not replace either (it stays literal).
fn placeholder(name: &str, ctx: &NickContext<'_>, notes: &mut Vec<String>) -> Option<String> {
    let text = match name {
        "NICK" => "{nick}".to_owned(),
        "NOPINGNICK" => {
            if ctx.dest_protocol != "irc" {
                notes.push(
                    "`{NOPINGNICK}` became `{nick}`: no zero-width space is put into nicks outside IRC"
                        .into(),
                );
            }
            "{nick}".to_owned()
        }
        "PROTOCOL" => "{protocol}".to_owned(),
        "BRIDGE" => {
            notes.push(
                "`{BRIDGE}` became `{account}`, which shows the whole account (`irc.libera`, not `libera`)"
                    .into(),
            );
            "{account}".to_owned()
        }
        "GATEWAY" => "{route}".to_owned(),
        "CHANNEL" => "{room}".to_owned(),
        "LABEL" => {
            let first = ctx.labels.first().cloned().unwrap_or_default();
            if ctx.labels.iter().all(|l| *l == first) {
                let mut literal = String::new();
                push_literal(&mut literal, &first);
                literal
            } else {
                notes.push(format!(
                    "`{{LABEL}}` differs between the senders ({}); patchbay's nick format belongs to the destination, so it became `{{account}}`",
                    ctx.labels
                        .iter()
                        .map(|l| format!("{l:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
                "{account}".to_owned()
            }
        }
        "USERID" => {
            notes.push("`{USERID}` was dropped: patchbay's nick formats have no user id".into());
            String::new()
        }
        "TENGO" => {
            notes.push("`{TENGO}` was dropped: patchbay runs no Tengo scripts".into());
            String::new()
        }
        _ => return None,
    };
    Some(text)
}

/// Literal text, with patchbay's brace escapes.
fn push_literal(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '{' => out.push_str("{{"),
            '}' => out.push_str("}}"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn irc(format: &str) -> Translated {
        translate(
            format,
            &NickContext {
                labels: &[],
                dest_protocol: "irc",
            },
        )
    }

    #[test]
    fn the_sample_format_loses_its_frame_and_keeps_the_protocol() {
        let t = irc("[{PROTOCOL}] <{NICK}> ");
        assert_eq!(t.format, "[{protocol}] {nick}");
        assert_eq!(t.notes.len(), 1, "{:?}", t.notes);
    }

    #[test]
    fn every_placeholder_has_a_translation() {
        let t = irc("{BRIDGE}/{GATEWAY}/{CHANNEL}/{NOPINGNICK}{USERID}: ");
        assert_eq!(t.format, "{account}/{route}/{room}/{nick}");
        assert_eq!(t.notes.len(), 3, "{:?}", t.notes);
    }

    #[test]
    fn a_label_shared_by_every_sender_is_written_out() {
        let labels = ["L{1}".to_owned(), "L{1}".to_owned()];
        let ctx = NickContext {
            labels: &labels,
            dest_protocol: "matrix",
        };
        assert_eq!(
            translate("({LABEL}) {NICK}:", &ctx).format,
            "(L{{1}}) {nick}"
        );
        let labels = ["a".to_owned(), "b".to_owned()];
        let ctx = NickContext {
            labels: &labels,
            dest_protocol: "matrix",
        };
        let t = translate("{LABEL} {NICK}", &ctx);
        assert_eq!(t.format, "{account} {nick}");
        assert!(t.notes[0].contains("\"a\", \"b\""), "{:?}", t.notes);
    }

    #[test]
    fn unknown_braces_stay_literal_and_an_empty_result_shows_the_nick() {
        assert_eq!(irc("{nick} {X").format, "{{nick}} {{X");
        assert_eq!(irc("} {TENGO}").format, "}} ");
        let t = irc("{TENGO}");
        assert_eq!(t.format, "{nick}");
        assert_eq!(t.notes.len(), 2);
    }

    #[test]
    fn every_translation_is_a_valid_patchbay_format() {
        for format in [
            "{",
            "}",
            "{{}}",
            "<{NICK}>",
            "a{LABEL}b",
            "{NICK}{",
            "}{NICK}{",
        ] {
            let t = irc(format);
            assert!(
                crate::router::NickFormat::parse(&t.format).is_ok(),
                "{format:?} -> {:?}",
                t.format
            );
        }
    }
}
