//! CommonMark ↔ rich text.
//!
//! Chat users type Markdown on many networks (Devzat renders it, Matrix clients send it as HTML,
//! Discord-style webhooks carry it), so this is the lingua franca converter. Parsing follows chat
//! conventions rather than document ones: a single newline is a line break, not a space.
//! Rendering escapes every character that would otherwise change meaning, so that
//! `from_markdown(&to_markdown(x))` keeps the text of `x`.

use pulldown_cmark::{CodeBlockKind, Event as Md, Options, Parser, Tag, TagEnd};

use super::{Block, ListMarker, RichText, Span, SpanKind, Style};

/// Parse CommonMark (with strikethrough) into rich text.
pub fn from_markdown(source: &str) -> RichText {
    let mut builder = Builder::default();
    for event in Parser::new_ext(source, Options::ENABLE_STRIKETHROUGH) {
        builder.event(event);
    }
    builder.finish()
}

/// A container being filled while parsing.
enum Frame {
    Quote(Vec<Block>),
    List {
        ordered: bool,
        items: Vec<Vec<Block>>,
    },
    Item(Vec<Block>),
}

#[derive(Default)]
struct Builder {
    root: Vec<Block>,
    frames: Vec<Frame>,
    spans: Option<Vec<Span>>,
    style: Style,
    link: Option<String>,
    code: Option<(Option<String>, String)>,
}

impl Builder {
    fn blocks(&mut self) -> &mut Vec<Block> {
        match self.frames.last_mut() {
            Some(Frame::Quote(blocks)) | Some(Frame::Item(blocks)) => blocks,
            // Text directly inside a list (a tight list item) goes into a new item.
            Some(Frame::List { items, .. }) => {
                if items.is_empty() {
                    items.push(Vec::new());
                }
                items.last_mut().map_or(&mut self.root, |item| item)
            }
            None => &mut self.root,
        }
    }

    fn push_span(&mut self, text: &str, kind: SpanKind) {
        let style = self.style;
        let kind = match (&self.link, kind) {
            (Some(url), SpanKind::Text) => SpanKind::Link { url: url.clone() },
            (_, kind) => kind,
        };
        let spans = self.spans.get_or_insert_with(Vec::new);
        if let Some(last) = spans.last_mut()
            && last.style == style
            && last.kind == kind
            && kind != SpanKind::Code
        {
            last.text.push_str(text);
            return;
        }
        spans.push(Span {
            text: text.to_owned(),
            style,
            kind,
        });
    }

    fn close_paragraph(&mut self) {
        if let Some(spans) = self.spans.take()
            && !spans.is_empty()
        {
            self.blocks().push(Block::Paragraph { spans });
        }
    }

    fn event(&mut self, event: Md<'_>) {
        if let Some((_, code)) = &mut self.code {
            match event {
                Md::Text(text) => code.push_str(&text),
                Md::End(TagEnd::CodeBlock) => {
                    if let Some((lang, code)) = self.code.take() {
                        self.blocks().push(Block::Code { lang, code });
                    }
                }
                _ => {}
            }
            return;
        }
        match event {
            Md::Start(Tag::Paragraph) | Md::Start(Tag::Heading { .. }) => self.close_paragraph(),
            Md::End(TagEnd::Paragraph) => self.close_paragraph(),
            Md::End(TagEnd::Heading(_)) => self.close_paragraph(),
            Md::Start(Tag::Strong) => self.style.bold = true,
            Md::End(TagEnd::Strong) => self.style.bold = false,
            Md::Start(Tag::Emphasis) => self.style.italic = true,
            Md::End(TagEnd::Emphasis) => self.style.italic = false,
            Md::Start(Tag::Strikethrough) => self.style.strike = true,
            Md::End(TagEnd::Strikethrough) => self.style.strike = false,
            Md::Start(Tag::Link { dest_url, .. }) | Md::Start(Tag::Image { dest_url, .. }) => {
                self.link = Some(dest_url.to_string());
            }
            Md::End(TagEnd::Link) | Md::End(TagEnd::Image) => self.link = None,
            Md::Start(Tag::CodeBlock(kind)) => {
                self.close_paragraph();
                let lang = match kind {
                    CodeBlockKind::Fenced(lang) if !lang.is_empty() => Some(lang.to_string()),
                    _ => None,
                };
                self.code = Some((lang, String::new()));
            }
            Md::Start(Tag::BlockQuote(_)) => {
                self.close_paragraph();
                self.frames.push(Frame::Quote(Vec::new()));
            }
            Md::Start(Tag::List(start)) => {
                self.close_paragraph();
                self.frames.push(Frame::List {
                    ordered: start.is_some(),
                    items: Vec::new(),
                });
            }
            Md::Start(Tag::Item) => {
                self.close_paragraph();
                self.frames.push(Frame::Item(Vec::new()));
            }
            Md::End(TagEnd::BlockQuote(_)) | Md::End(TagEnd::List(_)) | Md::End(TagEnd::Item) => {
                self.close_paragraph();
                self.close_frame();
            }
            Md::Text(text) => self.push_span(&text, SpanKind::Text),
            Md::Code(code) => self.push_span(&code, SpanKind::Code),
            Md::Html(html) | Md::InlineHtml(html) => self.push_span(&html, SpanKind::Text),
            Md::SoftBreak | Md::HardBreak => self.push_span("\n", SpanKind::Text),
            Md::Rule => {
                self.close_paragraph();
                self.blocks().push(Block::Paragraph {
                    spans: vec![Span::text("---")],
                });
            }
            _ => {}
        }
    }

    fn close_frame(&mut self) {
        match self.frames.pop() {
            Some(Frame::Quote(blocks)) => self.blocks().push(Block::Quote { blocks }),
            Some(Frame::List { ordered, items }) => {
                self.blocks().push(Block::List { ordered, items })
            }
            Some(Frame::Item(blocks)) => match self.frames.last_mut() {
                Some(Frame::List { items, .. }) => items.push(blocks),
                _ => self.blocks().extend(blocks),
            },
            None => {}
        }
    }

    fn finish(mut self) -> RichText {
        self.close_paragraph();
        while !self.frames.is_empty() {
            self.close_frame();
        }
        RichText { blocks: self.root }
    }
}

/// Render rich text as CommonMark. Underline and colours have no Markdown form and are dropped.
pub fn to_markdown(text: &RichText) -> String {
    let mut out = String::new();
    render_blocks(&text.blocks, &mut out);
    out.trim_end_matches('\n').to_owned()
}

fn render_blocks(blocks: &[Block], out: &mut String) {
    for (i, block) in blocks.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        match block {
            Block::Paragraph { spans } => {
                out.push_str(&render_spans(spans));
                out.push('\n');
            }
            Block::Code { lang, code } => {
                let fence = "`".repeat(longest_run(code, '`').max(2) + 1);
                out.push_str(&fence);
                out.push_str(lang.as_deref().unwrap_or(""));
                out.push('\n');
                out.push_str(code);
                if !code.ends_with('\n') {
                    out.push('\n');
                }
                out.push_str(&fence);
                out.push('\n');
            }
            Block::Quote { blocks } => {
                let mut inner = String::new();
                render_blocks(blocks, &mut inner);
                for line in inner.trim_end_matches('\n').split('\n') {
                    out.push_str(if line.is_empty() { ">" } else { "> " });
                    out.push_str(line);
                    out.push('\n');
                }
            }
            Block::List { ordered, items } => {
                for (n, item) in items.iter().enumerate() {
                    let marker = ListMarker::new(*ordered, n);
                    let mut inner = String::new();
                    render_blocks(item, &mut inner);
                    for (j, line) in inner.trim_end_matches('\n').split('\n').enumerate() {
                        // A blank line inside the item stays blank, without trailing spaces.
                        if j == 0 || !line.is_empty() {
                            out.push_str(marker.lead(j));
                        }
                        out.push_str(line);
                        out.push('\n');
                    }
                }
            }
        }
    }
}

fn render_spans(spans: &[Span]) -> String {
    let mut out = String::new();
    for span in spans {
        let body = match &span.kind {
            SpanKind::Code => code_span(&span.text),
            SpanKind::Link { url } => {
                format!("[{}]({})", escape(&span.text), link_destination(url))
            }
            SpanKind::Text | SpanKind::Mention { .. } => escape(&span.text),
        };
        out.push_str(&wrap_style(&body, span.style));
    }
    escape_line_starts(&out)
}

/// Put emphasis markers around the non-blank middle of `body`: CommonMark ignores a marker that
/// touches whitespace on its inner side.
fn wrap_style(body: &str, style: Style) -> String {
    let mut open = String::new();
    if style.bold {
        open.push_str("**");
    }
    if style.italic {
        open.push('*');
    }
    if style.strike {
        open.push_str("~~");
    }
    let inner = body.trim();
    if open.is_empty() || inner.is_empty() || inner.contains('\n') {
        return body.to_owned();
    }
    let close: String = open.chars().rev().collect();
    let start = body.len() - body.trim_start().len();
    let end = start + inner.len();
    format!("{}{open}{inner}{close}{}", &body[..start], &body[end..])
}

fn code_span(code: &str) -> String {
    let ticks = "`".repeat(longest_run(code, '`') + 1);
    let pad = if code.starts_with('`') || code.ends_with('`') || code.trim().is_empty() {
        " "
    } else {
        ""
    };
    format!("{ticks}{pad}{code}{pad}{ticks}")
}

fn link_destination(url: &str) -> String {
    if url.contains([' ', '(', ')', '<', '>']) {
        format!("<{}>", url.replace('<', "%3C").replace('>', "%3E"))
    } else {
        url.to_owned()
    }
}

fn longest_run(text: &str, c: char) -> usize {
    let mut longest = 0;
    let mut run = 0;
    for ch in text.chars() {
        if ch == c {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    longest
}

/// Backslash-escape the characters that mean something inline.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        if matches!(
            ch,
            '\\' | '*' | '_' | '`' | '[' | ']' | '<' | '>' | '&' | '~' | '!' | '|'
        ) {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// Escape what would start a block at the beginning of a line (`#`, `-`, `+`, `=`, `1.`), and
/// keep leading spaces from turning a line into a code block.
fn escape_line_starts(rendered: &str) -> String {
    let mut out = String::with_capacity(rendered.len());
    for (i, line) in rendered.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let trimmed = line.trim_start_matches(' ');
        let mut chars = trimmed.chars();
        let first = chars.next();
        let needs_escape = match first {
            Some('#' | '-' | '+' | '=') => true,
            Some(c) if c.is_ascii_digit() => {
                let rest = trimmed.trim_start_matches(|c: char| c.is_ascii_digit());
                rest.starts_with('.') || rest.starts_with(')')
            }
            _ => false,
        };
        if needs_escape {
            if let Some(c) = first
                && c.is_ascii_digit()
            {
                let digits = trimmed.len()
                    - trimmed
                        .trim_start_matches(|c: char| c.is_ascii_digit())
                        .len();
                out.push_str(&trimmed[..digits]);
                out.push('\\');
                out.push_str(&trimmed[digits..]);
            } else {
                out.push('\\');
                out.push_str(trimmed);
            }
        } else {
            out.push_str(trimmed);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_inline_styles() {
        let text = from_markdown("hi **bold** *it* ~~gone~~ `code` [docs](https://x.org)");
        let spans = text.spans();
        assert_eq!(spans[1].text, "bold");
        assert!(spans[1].style.bold);
        assert!(spans[3].style.italic);
        assert!(spans[5].style.strike);
        assert_eq!(spans[7].kind, SpanKind::Code);
        assert_eq!(
            spans[9].kind,
            SpanKind::Link {
                url: "https://x.org".into()
            }
        );
    }

    #[test]
    fn single_newlines_are_line_breaks() {
        assert_eq!(from_markdown("one\ntwo").to_plain(), "one\ntwo");
    }

    #[test]
    fn parses_blocks() {
        let text = from_markdown("> quoted\n\n- a\n- b\n\n```rust\nfn x() {}\n```");
        assert_eq!(text.to_plain(), "> quoted\n- a\n- b\nfn x() {}");
        assert!(matches!(&text.blocks[2], Block::Code { lang: Some(l), .. } if l == "rust"));
    }

    #[test]
    fn renders_styles_and_escapes() {
        let text = RichText::from_spans(vec![
            Span::text("2*3 = 6 and "),
            Span::styled(" loud ", Style::bold()),
            Span::text("# not a heading"),
        ]);
        let md = to_markdown(&text);
        assert_eq!(md, r"2\*3 = 6 and  **loud** # not a heading");
        assert_eq!(from_markdown(&md).to_plain(), text.to_plain());
    }

    #[test]
    fn renders_line_start_markers_literally() {
        for line in [
            "# title",
            "- item",
            "1. first",
            "+ plus",
            "> quote",
            "    indented",
        ] {
            let md = to_markdown(&RichText::plain(line));
            assert_eq!(
                from_markdown(&md).to_plain(),
                line.trim_start(),
                "via {md:?}"
            );
        }
    }

    fn word() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9\\\\*_`\\[\\]<>&~!|#+=.()-]{1,8}"
    }

    fn span() -> impl Strategy<Value = Span> {
        (
            prop::collection::vec(word(), 1..4),
            any::<(bool, bool, bool)>(),
            0..3u8,
        )
            .prop_map(|(words, (b, i, s), kind)| Span {
                text: words.join(" "),
                style: Style {
                    bold: b,
                    italic: i,
                    strike: s,
                    ..Style::default()
                },
                kind: match kind {
                    0 => SpanKind::Text,
                    1 => SpanKind::Code,
                    _ => SpanKind::Link {
                        url: "https://example.org/a_b".into(),
                    },
                },
            })
    }

    fn normalize(text: &str) -> String {
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    proptest! {
        #[test]
        fn markdown_round_trip_keeps_the_text(spans in prop::collection::vec(span(), 1..6)) {
            let mut separated = Vec::new();
            for span in spans {
                if !separated.is_empty() {
                    separated.push(Span::text(" "));
                }
                separated.push(span);
            }
            let text = RichText::from_spans(separated);
            let md = to_markdown(&text);
            let back = from_markdown(&md);
            prop_assert_eq!(normalize(&back.to_plain()), normalize(&text.to_plain()), "markdown: {}", md);
        }

        #[test]
        fn markdown_round_trip_keeps_styles(words in prop::collection::vec("[a-z]{1,6}", 1..5), b: bool, i: bool) {
            let style = Style { bold: b, italic: i, ..Style::default() };
            let text = RichText::from_spans(vec![Span::styled(words.join(" "), style)]);
            let back = from_markdown(&to_markdown(&text));
            for span in back.spans() {
                prop_assert_eq!(span.style, style);
            }
        }
    }
}
