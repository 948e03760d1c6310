//! mIRC formatting codes ↔ the sdk's [`RichText`].
//!
//! IRC formatting is a stream of toggles: `^B` bold, `^]` italic, `^_` underline, `^^` strike,
//! `^Q` monospace, `^C fg[,bg]` palette colour, `^D RRGGBB[,RRGGBB]` hex colour, `^V` reverse
//! (dropped), `^O` reset. Parsing turns runs of one state into styled spans; rendering emits the
//! toggles between spans. Palette colours map to 24-bit colours and back to the nearest palette
//! entry, so a colour survives IRC → IRC unchanged.

use patchbay_sdk::RichText;
use patchbay_sdk::text::{Block, Color, ListMarker, Span, SpanKind, Style};

pub const BOLD: char = '\x02';
pub const COLOR: char = '\x03';
pub const HEX_COLOR: char = '\x04';
pub const RESET: char = '\x0f';
pub const MONOSPACE: char = '\x11';
pub const REVERSE: char = '\x16';
pub const ITALIC: char = '\x1d';
pub const STRIKE: char = '\x1e';
pub const UNDERLINE: char = '\x1f';

/// The 16 standard mIRC colours.
const PALETTE: [(u8, u8, u8); 16] = [
    (0xff, 0xff, 0xff), // 0 white
    (0x00, 0x00, 0x00), // 1 black
    (0x00, 0x00, 0x7f), // 2 blue
    (0x00, 0x93, 0x00), // 3 green
    (0xff, 0x00, 0x00), // 4 red
    (0x7f, 0x00, 0x00), // 5 brown
    (0x9c, 0x00, 0x9c), // 6 purple
    (0xfc, 0x7f, 0x00), // 7 orange
    (0xff, 0xff, 0x00), // 8 yellow
    (0x00, 0xfc, 0x00), // 9 light green
    (0x00, 0x93, 0x93), // 10 cyan
    (0x00, 0xff, 0xff), // 11 light cyan
    (0x00, 0x00, 0xfc), // 12 light blue
    (0xff, 0x00, 0xff), // 13 pink
    (0x7f, 0x7f, 0x7f), // 14 grey
    (0xd2, 0xd2, 0xd2), // 15 light grey
];

/// The colour of a palette index; indexes past the 16 standard ones have no defined colour here.
pub fn palette_color(index: u8) -> Option<Color> {
    PALETTE
        .get(usize::from(index))
        .map(|&(r, g, b)| Color { r, g, b })
}

/// The palette index nearest to `color`.
pub fn nearest_palette(color: Color) -> u8 {
    let dist = |&(r, g, b): &(u8, u8, u8)| {
        let d = |a: u8, b: u8| (i32::from(a) - i32::from(b)).pow(2);
        d(r, color.r) + d(g, color.g) + d(b, color.b)
    };
    PALETTE
        .iter()
        .enumerate()
        .min_by_key(|(_, c)| dist(c))
        .map(|(i, _)| i as u8)
        .unwrap_or(1)
}

/// The formatting state at one point of a line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct State {
    pub style: Style,
    pub monospace: bool,
}

/// One piece of a formatted line: a format code (kept whole) or a character of text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Atom<'a> {
    Code(&'a str),
    Char(char),
}

/// Cut a line into atoms, so splitting never breaks a colour code from its digits.
pub fn atoms(text: &str) -> Vec<Atom<'_>> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < text.len() {
        let Some(c) = text[i..].chars().next() else {
            break;
        };
        let start = i;
        i += c.len_utf8();
        match c {
            COLOR => {
                // Up to two digits, then optionally a comma and up to two digits.
                let digits = |from: usize| {
                    let mut n = from;
                    while n < bytes.len() && n < from + 2 && bytes[n].is_ascii_digit() {
                        n += 1;
                    }
                    n
                };
                let end = digits(i);
                if end > i {
                    i = end;
                    if i + 1 < bytes.len() && bytes[i] == b',' && bytes[i + 1].is_ascii_digit() {
                        i = digits(i + 1);
                    }
                }
                out.push(Atom::Code(&text[start..i]));
            }
            HEX_COLOR => {
                let hex = |from: usize| {
                    from + 6 <= bytes.len()
                        && bytes[from..from + 6].iter().all(u8::is_ascii_hexdigit)
                };
                if hex(i) {
                    i += 6;
                    if i + 7 <= bytes.len() && bytes[i] == b',' && hex(i + 1) {
                        i += 7;
                    }
                }
                out.push(Atom::Code(&text[start..i]));
            }
            BOLD | RESET | MONOSPACE | REVERSE | ITALIC | STRIKE | UNDERLINE => {
                out.push(Atom::Code(&text[start..i]))
            }
            other => out.push(Atom::Char(other)),
        }
    }
    out
}

fn parse_hex(s: &str) -> Option<Color> {
    let v = u32::from_str_radix(s, 16).ok()?;
    Some(Color {
        r: (v >> 16) as u8,
        g: (v >> 8) as u8,
        b: v as u8,
    })
}

impl State {
    /// Apply one format code.
    pub fn apply(&mut self, code: &str) {
        let mut chars = code.chars();
        match chars.next() {
            Some(BOLD) => self.style.bold = !self.style.bold,
            Some(ITALIC) => self.style.italic = !self.style.italic,
            Some(UNDERLINE) => self.style.underline = !self.style.underline,
            Some(STRIKE) => self.style.strike = !self.style.strike,
            Some(MONOSPACE) => self.monospace = !self.monospace,
            Some(RESET) => *self = State::default(),
            Some(kind @ (COLOR | HEX_COLOR)) => {
                let rest = &code[1..];
                if rest.is_empty() {
                    self.style.color = None;
                    self.style.background = None;
                    return;
                }
                let parse: fn(&str) -> Option<Color> = if kind == COLOR {
                    |s| s.parse::<u8>().ok().and_then(palette_color)
                } else {
                    parse_hex
                };
                let mut parts = rest.splitn(2, ',');
                self.style.color = parts.next().and_then(parse);
                if let Some(bg) = parts.next() {
                    self.style.background = parse(bg);
                }
            }
            _ => {}
        }
    }

    /// The codes that turn a reset line into this state.
    pub fn codes(&self) -> String {
        let mut out = String::new();
        if self.style.bold {
            out.push(BOLD);
        }
        if self.style.italic {
            out.push(ITALIC);
        }
        if self.style.underline {
            out.push(UNDERLINE);
        }
        if self.style.strike {
            out.push(STRIKE);
        }
        if self.monospace {
            out.push(MONOSPACE);
        }
        match (self.style.color, self.style.background) {
            (None, None) => {}
            (fg, bg) => {
                out.push(COLOR);
                // A background needs a foreground; black is the neutral guess.
                out.push_str(&format!("{:02}", fg.map(nearest_palette).unwrap_or(1)));
                if let Some(bg) = bg {
                    out.push_str(&format!(",{:02}", nearest_palette(bg)));
                }
            }
        }
        out
    }

    pub fn is_plain(&self) -> bool {
        *self == State::default()
    }
}

/// Remove every format code.
pub fn strip(text: &str) -> String {
    atoms(text)
        .into_iter()
        .filter_map(|a| match a {
            Atom::Char(c) => Some(c),
            Atom::Code(_) => None,
        })
        .collect()
}

/// Parse a line with mIRC codes into rich text (one paragraph; monospace runs become inline code).
pub fn parse(text: &str) -> RichText {
    let mut spans: Vec<Span> = Vec::new();
    let mut state = State::default();
    let mut current = String::new();
    let flush = |current: &mut String, state: &State, spans: &mut Vec<Span>| {
        if current.is_empty() {
            return;
        }
        let kind = if state.monospace {
            SpanKind::Code
        } else {
            SpanKind::Text
        };
        let text = std::mem::take(current);
        match spans.last_mut() {
            Some(last) if last.style == state.style && last.kind == kind => {
                last.text.push_str(&text)
            }
            _ => spans.push(Span {
                text,
                style: state.style,
                kind,
            }),
        }
    };
    for atom in atoms(text) {
        match atom {
            Atom::Char(c) => current.push(c),
            Atom::Code(code) => {
                flush(&mut current, &state, &mut spans);
                state.apply(code);
            }
        }
    }
    flush(&mut current, &state, &mut spans);
    if spans.is_empty() {
        return RichText::default();
    }
    RichText::from_spans(spans)
}

/// Render rich text as IRC text with mIRC codes. Lines are separated by `\n`; each line starts
/// unformatted. With `keep_codes` false the plain-text view is returned.
pub fn render(text: &RichText, keep_codes: bool) -> String {
    if !keep_codes {
        return text.to_plain();
    }
    let mut lines: Vec<String> = Vec::new();
    render_blocks(&text.blocks, "", &mut lines);
    lines.join("\n")
}

fn render_blocks(blocks: &[Block], prefix: &str, lines: &mut Vec<String>) {
    for block in blocks {
        match block {
            Block::Paragraph { spans } => {
                let mut line = String::new();
                let mut state = State::default();
                for span in spans {
                    let mut want = State {
                        style: span.style,
                        monospace: matches!(span.kind, SpanKind::Code),
                    };
                    if let SpanKind::Link { .. } = span.kind {
                        want.monospace = false;
                    }
                    let mut text = span.text.clone();
                    if let SpanKind::Link { url } = &span.kind {
                        if text.is_empty() {
                            text = url.clone();
                        } else if text != *url {
                            text = format!("{text} ({url})");
                        }
                    }
                    for (i, piece) in text.split('\n').enumerate() {
                        if i > 0 {
                            if !state.is_plain() {
                                line.push(RESET);
                            }
                            lines.push(format!("{prefix}{line}"));
                            line.clear();
                            state = State::default();
                        }
                        if piece.is_empty() {
                            continue;
                        }
                        let coloured = transition(&mut line, &mut state, want);
                        // `^C04` then `,5` would read as a background: keep the comma text.
                        let mut rest = piece.bytes();
                        if coloured
                            && state.style.background.is_none()
                            && rest.next() == Some(b',')
                            && rest.next().is_some_and(|b| b.is_ascii_digit())
                        {
                            line.push(BOLD);
                            line.push(BOLD);
                        }
                        line.push_str(piece);
                    }
                }
                if !state.is_plain() {
                    line.push(RESET);
                }
                lines.push(format!("{prefix}{line}"));
            }
            Block::Code { code, .. } => {
                for l in code.trim_end_matches('\n').split('\n') {
                    if l.is_empty() {
                        lines.push(prefix.to_owned());
                    } else {
                        lines.push(format!("{prefix}{MONOSPACE}{l}{MONOSPACE}"));
                    }
                }
            }
            Block::Quote { blocks } => render_blocks(blocks, &format!("{prefix}> "), lines),
            Block::List { ordered, items } => {
                for (n, item) in items.iter().enumerate() {
                    let marker = ListMarker::new(*ordered, n);
                    let mut inner = Vec::new();
                    render_blocks(item, "", &mut inner);
                    for (i, l) in inner.iter().enumerate() {
                        lines.push(format!("{prefix}{}{l}", marker.lead(i)));
                    }
                }
            }
        }
    }
}

/// Emit the codes that move `state` to `want`; true when they end with a colour code.
fn transition(line: &mut String, state: &mut State, want: State) -> bool {
    if *state == want {
        return false;
    }
    let colors_dropped = (state.style.color.is_some() && want.style.color.is_none())
        || (state.style.background.is_some() && want.style.background.is_none());
    if colors_dropped {
        line.push(RESET);
        *state = State::default();
    }
    let toggles = [
        (state.style.bold, want.style.bold, BOLD),
        (state.style.italic, want.style.italic, ITALIC),
        (state.style.underline, want.style.underline, UNDERLINE),
        (state.style.strike, want.style.strike, STRIKE),
        (state.monospace, want.monospace, MONOSPACE),
    ];
    for (have, need, code) in toggles {
        if have != need {
            line.push(code);
        }
    }
    if (want.style.color, want.style.background) != (state.style.color, state.style.background)
        && (want.style.color.is_some() || want.style.background.is_some())
    {
        let only_colors = State {
            style: Style {
                color: want.style.color,
                background: want.style.background,
                ..Style::default()
            },
            monospace: false,
        };
        line.push_str(&only_colors.codes());
        *state = want;
        return true;
    }
    *state = want;
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_toggles_and_colours() {
        let rt = parse("a \x02b\x02 \x0304,12red\x03 \x1dit\x0f \x11code\x11");
        let spans = rt.spans();
        assert_eq!(spans[0].text, "a ");
        assert_eq!(spans[1].text, "b");
        assert_eq!(spans[1].style, Style::bold());
        assert_eq!(spans[3].text, "red");
        assert_eq!(spans[3].style.color, palette_color(4));
        assert_eq!(spans[3].style.background, palette_color(12));
        assert!(spans[5].style.italic);
        assert_eq!(spans[7].kind, SpanKind::Code);
        assert_eq!(rt.to_plain(), "a b red it code");
    }

    #[test]
    fn colour_code_digits_are_not_text() {
        // "\x031" then "23" — only two digits belong to the code.
        assert_eq!(strip("\x03123x"), "3x");
        assert_eq!(strip("\x034,x"), ",x");
        assert_eq!(strip("\x04ff0000red\x04"), "red");
        assert_eq!(
            parse("\x04ff0000red").spans()[0].style.color,
            Some(Color { r: 255, g: 0, b: 0 })
        );
    }

    #[test]
    fn render_round_trips_styles() {
        let original =
            "plain \x02bold\x02 \x0303green\x0f \x1funder\x1f \x1estrike\x1e \x11mono\x11";
        let rt = parse(original);
        let rendered = render(&rt, true);
        assert_eq!(parse(&rendered), rt);
        assert_eq!(strip(&rendered), "plain bold green under strike mono");
    }

    #[test]
    fn render_blocks_as_lines() {
        let rt =
            patchbay_sdk::text::markdown::from_markdown("**hi**\n\n> quoted\n\n```\nx = 1\n```");
        let out = render(&rt, true);
        assert_eq!(out, "\x02hi\x0f\n> quoted\n\x11x = 1\x11");
        assert_eq!(render(&rt, false), "hi\n> quoted\nx = 1");
    }

    #[test]
    fn render_keeps_comma_text_after_a_foreground_colour() {
        // Found by `parse_props`: `^C00` then `,0` was read back as a background colour.
        let rt = RichText::from_spans(vec![Span::styled(
            ",0 left",
            Style {
                color: palette_color(0),
                ..Style::default()
            },
        )]);
        let rendered = render(&rt, true);
        assert_eq!(strip(&rendered), ",0 left");
        assert_eq!(parse(&rendered), rt);
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_keeps_text(s in "\\PC*") {
            let rt = parse(&s);
            prop_assert_eq!(rt.to_plain(), strip(&s));
        }

        #[test]
        fn render_parse_keeps_text(words in proptest::collection::vec(("[a-z ]{1,8}", any::<bool>(), any::<bool>(), 0u8..16), 1..6)) {
            let spans: Vec<Span> = words.iter().map(|(t, b, i, c)| Span::styled(t.clone(), Style {
                bold: *b, italic: *i, color: palette_color(*c), ..Style::default()
            })).collect();
            let rt = RichText::from_spans(spans);
            let back = parse(&render(&rt, true));
            prop_assert_eq!(back.to_plain(), rt.to_plain());
        }
    }
}
