//! The rich-text model: what every protocol's formatting is converted through.
//!
//! A [`RichText`] is a list of [`Block`]s (paragraphs, code blocks, quotes, lists); paragraphs hold
//! styled [`Span`]s (bold, italic, underline, strike, colour) that are plain text, inline code, a
//! link or a mention. Each connector parses its dialect into this model and renders out of it, so
//! IRC colour codes can become Matrix HTML without either connector knowing the other.
//!
//! This module holds the model and the plain-text view; [`markdown`] converts to and from
//! CommonMark. Protocol-specific converters (mIRC codes, Matrix HTML, ANSI) live with their
//! connectors.

pub mod markdown;

use serde::{Deserialize, Serialize};

/// Formatted text.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RichText {
    pub blocks: Vec<Block>,
}

/// A block of text.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "block", rename_all = "snake_case")]
pub enum Block {
    /// Running text; a `\n` inside a span is a line break.
    Paragraph { spans: Vec<Span> },
    /// Preformatted text, shown as is.
    Code {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lang: Option<String>,
        code: String,
    },
    /// Quoted text.
    Quote { blocks: Vec<Block> },
    /// A list; each item is a list of blocks.
    List {
        ordered: bool,
        items: Vec<Vec<Block>>,
    },
}

/// A run of text with one style.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Span {
    pub text: String,
    #[serde(default, skip_serializing_if = "Style::is_plain")]
    pub style: Style,
    #[serde(default, skip_serializing_if = "SpanKind::is_text")]
    pub kind: SpanKind,
}

/// What a span is, beyond its style.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SpanKind {
    #[default]
    Text,
    /// Inline code.
    Code,
    /// A link; the span's text is what is shown.
    Link { url: String },
    /// A mention of a user; `id` is the user's id on the source network.
    Mention { id: String },
}

impl SpanKind {
    fn is_text(&self) -> bool {
        matches!(self, SpanKind::Text)
    }
}

/// How a span looks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Style {
    #[serde(default, skip_serializing_if = "is_false")]
    pub bold: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub italic: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub underline: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub strike: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<Color>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background: Option<Color>,
}

/// The marker of a list item: `1. ` (counting from one) in an ordered list, `- ` otherwise.
/// Every text rendering of a list (plain, Markdown, mIRC) writes it before the item's first
/// line and indents the item's other lines by its width, so that they line up under the text.
pub struct ListMarker {
    marker: String,
    indent: String,
}

impl ListMarker {
    /// The marker of the item at `index` (from 0).
    pub fn new(ordered: bool, index: usize) -> Self {
        let marker = if ordered {
            format!("{}. ", index + 1)
        } else {
            "- ".to_owned()
        };
        let indent = " ".repeat(marker.len());
        ListMarker { marker, indent }
    }

    /// What goes before the item's line `line` (from 0): the marker, then the indent.
    pub fn lead(&self, line: usize) -> &str {
        if line == 0 {
            &self.marker
        } else {
            &self.indent
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Style {
    /// Bold and nothing else, as a relayed nick is set; built here once so that the connectors
    /// and their tests do not each write their own.
    pub fn bold() -> Self {
        Style {
            bold: true,
            ..Style::default()
        }
    }

    pub fn is_plain(&self) -> bool {
        *self == Style::default()
    }
}

/// A 24-bit colour. Palette-based protocols (IRC, ANSI) map to and from their palettes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Color {
    pub r: u8,
    pub g: u8,
    pub b: u8,
}

impl Span {
    pub fn text(text: impl Into<String>) -> Self {
        Span {
            text: text.into(),
            ..Span::default()
        }
    }

    pub fn styled(text: impl Into<String>, style: Style) -> Self {
        Span {
            text: text.into(),
            style,
            kind: SpanKind::Text,
        }
    }
}

impl RichText {
    /// Unformatted text; line breaks are kept.
    pub fn plain(text: impl Into<String>) -> Self {
        let text = text.into();
        if text.is_empty() {
            return RichText::default();
        }
        RichText {
            blocks: vec![Block::Paragraph {
                spans: vec![Span::text(text)],
            }],
        }
    }

    /// One paragraph of the given spans.
    pub fn from_spans(spans: Vec<Span>) -> Self {
        RichText {
            blocks: vec![Block::Paragraph { spans }],
        }
    }

    /// True when there is no text at all.
    pub fn is_empty(&self) -> bool {
        self.to_plain().trim().is_empty()
    }

    /// The text without formatting: blocks on their own lines, quotes prefixed with `> `,
    /// list items with `- ` or `N. `, links as their text followed by the URL when it differs.
    pub fn to_plain(&self) -> String {
        let mut out = String::new();
        write_plain_blocks(&self.blocks, "", &mut out);
        if out.ends_with('\n') {
            out.pop();
        }
        out
    }

    /// Apply `f` to the text of every span and code block (used by rewrite rules).
    pub fn map_text(&mut self, f: &mut dyn FnMut(&str) -> String) {
        fn walk(blocks: &mut [Block], f: &mut dyn FnMut(&str) -> String) {
            for block in blocks {
                match block {
                    Block::Paragraph { spans } => {
                        for span in spans {
                            span.text = f(&span.text);
                        }
                    }
                    Block::Code { code, .. } => *code = f(code),
                    Block::Quote { blocks } => walk(blocks, f),
                    Block::List { items, .. } => {
                        for item in items {
                            walk(item, f);
                        }
                    }
                }
            }
        }
        walk(&mut self.blocks, f);
    }

    /// Every span of every paragraph, in reading order (for renderers of flat dialects).
    pub fn spans(&self) -> Vec<&Span> {
        fn walk<'a>(blocks: &'a [Block], out: &mut Vec<&'a Span>) {
            for block in blocks {
                match block {
                    Block::Paragraph { spans } => out.extend(spans.iter()),
                    Block::Quote { blocks } => walk(blocks, out),
                    Block::List { items, .. } => items.iter().for_each(|item| walk(item, out)),
                    Block::Code { .. } => {}
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.blocks, &mut out);
        out
    }
}

fn write_plain_blocks(blocks: &[Block], prefix: &str, out: &mut String) {
    for block in blocks {
        match block {
            Block::Paragraph { spans } => {
                let mut line = String::new();
                for span in spans {
                    line.push_str(&span.text);
                    if let SpanKind::Link { url } = &span.kind
                        && url != &span.text
                        && !span.text.is_empty()
                    {
                        line.push_str(" (");
                        line.push_str(url);
                        line.push(')');
                    } else if let SpanKind::Link { url } = &span.kind
                        && span.text.is_empty()
                    {
                        line.push_str(url);
                    }
                }
                push_lines(&line, prefix, out);
            }
            Block::Code { code, .. } => push_lines(code.trim_end_matches('\n'), prefix, out),
            Block::Quote { blocks } => {
                let inner = format!("{prefix}> ");
                write_plain_blocks(blocks, &inner, out);
            }
            Block::List { ordered, items } => {
                for (n, item) in items.iter().enumerate() {
                    let marker = ListMarker::new(*ordered, n);
                    let mut item_text = String::new();
                    write_plain_blocks(item, "", &mut item_text);
                    let item_text = item_text.trim_end_matches('\n');
                    for (i, line) in item_text.split('\n').enumerate() {
                        out.push_str(prefix);
                        out.push_str(marker.lead(i));
                        out.push_str(line);
                        out.push('\n');
                    }
                }
            }
        }
    }
}

fn push_lines(text: &str, prefix: &str, out: &mut String) {
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    for line in text.split('\n') {
        out.push_str(prefix);
        out.push_str(line);
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_view_of_blocks() {
        let text = RichText {
            blocks: vec![
                Block::Paragraph {
                    spans: vec![
                        Span::text("see "),
                        Span {
                            text: "docs".into(),
                            style: Style::default(),
                            kind: SpanKind::Link {
                                url: "https://example.org".into(),
                            },
                        },
                    ],
                },
                Block::Quote {
                    blocks: vec![Block::Paragraph {
                        spans: vec![Span::text("quoted\nlines")],
                    }],
                },
                Block::List {
                    ordered: true,
                    items: vec![
                        vec![Block::Paragraph {
                            spans: vec![Span::text("one")],
                        }],
                        vec![Block::Paragraph {
                            spans: vec![Span::text("two")],
                        }],
                    ],
                },
                Block::Code {
                    lang: None,
                    code: "let x = 1;\n".into(),
                },
            ],
        };
        assert_eq!(
            text.to_plain(),
            "see docs (https://example.org)\n> quoted\n> lines\n1. one\n2. two\nlet x = 1;"
        );
    }

    #[test]
    fn plain_round_trip() {
        assert_eq!(RichText::plain("a\nb").to_plain(), "a\nb");
        assert!(RichText::plain("").is_empty());
        assert!(RichText::plain("  ").is_empty());
    }
}
